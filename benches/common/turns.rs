//! Ratios taken turn by turn: this machine's speed drifts within a run, so
//! each turn's row is compared with the same turn's reference.

/// The ratios in turn order, and their median: "0.41, 0.36, 0.47 (median 0.41×)".
pub fn turn_by_turn(ratios: &[f64]) -> String {
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!("{} (median {:.2}×)", shown.join(", "), sorted[sorted.len() / 2])
}
