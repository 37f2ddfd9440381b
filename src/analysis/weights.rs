//! Route53 weighted-record arithmetic.

/// Share of traffic (0.0–1.0) each record gets. When every weight is 0,
/// Route53 splits traffic equally.
pub fn shares(weights: &[u8]) -> Vec<f64> {
    let total: u32 = weights.iter().map(|&w| u32::from(w)).sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if total == 0 {
        return vec![1.0 / weights.len() as f64; weights.len()];
    }
    weights.iter().map(|&w| f64::from(w) / f64::from(total)).collect()
}

/// Weights that put `percent` of traffic on the new side: (old, new).
pub fn weights_for_percent(percent: u8) -> (u8, u8) {
    let p = percent.min(100);
    (100 - p, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_shares() {
        assert_eq!(shares(&[90, 10]), vec![0.9, 0.1]);
        assert_eq!(shares(&[255, 0]), vec![1.0, 0.0]);
        assert_eq!(shares(&[1, 3]), vec![0.25, 0.75]);
    }

    #[test]
    fn all_zero_splits_equally() {
        assert_eq!(shares(&[0, 0]), vec![0.5, 0.5]);
        assert_eq!(shares(&[0, 0, 0, 0]), vec![0.25; 4]);
        assert!(shares(&[]).is_empty());
    }

    #[test]
    fn percent_to_weights() {
        assert_eq!(weights_for_percent(30), (70, 30));
        assert_eq!(weights_for_percent(0), (100, 0));
        assert_eq!(weights_for_percent(100), (0, 100));
        assert_eq!(weights_for_percent(200), (0, 100));
    }
}
