//! After a criterion run: each bench's median and spread, and its ratio to
//! the named baseline of the same run. Criterion's own lines give each bench
//! alone (and, with `--baseline NAME`, its change against a saved run); the
//! ratio between two benches of one run it does not print. Read from the
//! estimates criterion saves for every bench (`<criterion>/<id>/new/estimates.json`,
//! the file critcmp reads too); a bench not run now (filtered out,
//! `--discard-baseline`, a smoke run) is left out rather than shown stale.

use std::path::PathBuf;
use std::time::SystemTime;

#[derive(serde::Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(serde::Deserialize)]
struct Estimates {
    median: Estimate,
    median_abs_dev: Estimate,
    mean: Estimate,
    std_dev: Estimate,
}

/// Where criterion writes: `$CRITERION_HOME`, else `criterion/` in the
/// target folder this binary was built in (`<target>/<profile>/deps/<bench>`),
/// as criterion finds it.
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    Some(std::env::current_exe().ok()?.ancestors().nth(3)?.join("criterion"))
}

/// The estimates of bench `id` (its path under criterion's folder, e.g.
/// `render/cutover_render`) if this run wrote them.
fn estimates(id: &str, run_start: SystemTime) -> Option<Estimates> {
    let path = criterion_home()?.join(id).join("new/estimates.json");
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if written < run_start {
        return None;
    }
    serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
}

fn format_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.3} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

/// Prints one row per bench of `rows` (its id and, if it has one, the id
/// of its baseline in the same run): median, median absolute deviation,
/// mean ± standard deviation, and the ratio of medians to its baseline.
pub fn print(run_start: SystemTime, rows: &[(&str, Option<&str>)]) {
    let mut lines = Vec::new();
    for (id, baseline) in rows {
        let Some(e) = estimates(id, run_start) else { continue };
        let ratio = baseline
            .and_then(|b| Some((b, estimates(b, run_start)?)))
            .map(|(b, base)| format!("{:.2}× {b}", e.median.point_estimate / base.median.point_estimate))
            .unwrap_or_default();
        lines.push(format!(
            "{id:<44} {:>11} {:>11} {:>11} ± {:<11} {ratio}",
            format_ns(e.median.point_estimate),
            format_ns(e.median_abs_dev.point_estimate),
            format_ns(e.mean.point_estimate),
            format_ns(e.std_dev.point_estimate),
        ));
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("{:<44} {:>11} {:>11} {:>11}   {:<11} median vs baseline", "", "median", "MAD", "mean", "std dev");
    for l in lines {
        println!("{l}");
    }
}
