//! `cutover diff`: the rollout's two sides compared live, side by side.
//! Exit 0 without drift, 1 with drift (or when AWS or a Redis cannot be read),
//! 2 on bad input.

use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;

use super::{Failure, GlobalArgs};
use crate::analysis::parity::SideShape;
use crate::analysis::parity::{Difference, Parity};
use crate::runbook::Runbook;

/// Bumped on any incompatible change to the JSON of `cutover diff --json`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub schema: u32,
    pub runbook: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub drift: usize,
    pub allowed: usize,
    pub differences: &'a [Difference],
    /// What could not be read (a Redis down): not compared, so not known equal.
    pub not_compared: &'a [String],
    /// Both sides as read: what the differences were found in.
    pub sides: [&'a SideShape; 2],
}

pub fn run(rb: Runbook, g: &GlobalArgs, json: bool) -> Result<u8, Failure> {
    super::runtime()?.block_on(async {
        // Read-only: each environment is read through its own side; the region
        // check below refuses a runbook whose load balancers are elsewhere.
        let acting = super::acting(&rb, g, &crate::runbook::Side::Environment(rb.rollout.to.clone())).await?;
        if let super::RegionCheck::Elsewhere(m) = super::region_check(&acting.clients, &rb, &acting.region).await {
            return Err(Failure::bad_input(m));
        }
        let shapes =
            crate::live::parity::shapes(&acting.clients, &rb, |v| std::env::var(v).ok().filter(|v| !v.is_empty()))
                .await
                .map_err(|e| Failure { status: 1, message: format!("cannot read the two sides: {e}") })?;
        let (from, to) = (&shapes[&rb.rollout.from], &shapes[&rb.rollout.to]);
        let parity = Parity::of(from, to, &rb.parity_allow, &rb.dns.record);
        let (differences, not_compared, drift) = (&parity.differences, &parity.not_compared, parity.drift());
        if json {
            let report = Report {
                schema: SCHEMA_VERSION,
                runbook: &rb.name,
                from: &rb.rollout.from,
                to: &rb.rollout.to,
                drift,
                allowed: parity.allowed(),
                differences,
                not_compared,
                sides: [from, to],
            };
            let body = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure { status: 1, message: format!("cannot write JSON: {e}") })?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{body}");
        } else {
            let _ = write!(std::io::stdout().lock(), "{}", render(&rb, differences, not_compared));
        }
        Ok(u8::from(drift > 0 || !not_compared.is_empty()))
    })
}

/// The differences as a table: what, which, the `from` side's value, the
/// `to` side's, and whether it is drift or allowed (with the reason).
pub fn render(rb: &Runbook, differences: &[Difference], not_compared: &[String]) -> String {
    let (from, to) = (&rb.rollout.from, &rb.rollout.to);
    let mut out = String::new();
    let _ = writeln!(out, "Parity of {}: {from} → {to}", rb.name);
    let verdict = |d: &Difference| match &d.allowed {
        None => "DRIFT".to_string(),
        Some(reason) => format!("allowed: {reason}"),
    };
    let across: Vec<&Difference> = differences.iter().filter(|d| d.within.is_none()).collect();
    if !across.is_empty() {
        let head = ["WHAT", "WHICH", from.as_str(), to.as_str()];
        let rows: Vec<[&str; 4]> = across
            .iter()
            .map(|d| [d.what.as_str(), d.subject.as_str(), d.from_value.as_str(), d.to_value.as_str()])
            .collect();
        let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).chain([head[c].chars().count()]).max();
        let w: Vec<usize> = (0..4).map(|c| width(c).unwrap_or(0)).collect();
        let line = |r: [&str; 4], last: &str| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {last}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            )
            .trim_end()
            .to_string()
        };
        let _ = writeln!(out, "{}", line(head, ""));
        for (r, d) in rows.iter().zip(&across) {
            let _ = writeln!(out, "{}", line(*r, &verdict(d)));
        }
    }
    for d in differences.iter().filter(|d| d.within.is_some()) {
        let _ = writeln!(
            out,
            "{}: {} is {}, its siblings' {}  {}",
            d.within.as_deref().unwrap_or("?"),
            d.subject,
            d.to_value,
            d.from_value,
            verdict(d)
        );
    }
    for n in not_compared {
        let _ = writeln!(out, "not compared: {n}");
    }
    let drift = differences.iter().filter(|d| d.is_drift()).count();
    let _ = match (differences.len(), drift) {
        (0, _) => writeln!(out, "no differences"),
        (_, 0) => writeln!(out, "no drift ({} allowed differences)", differences.len()),
        (n, d) => writeln!(out, "{d} drift, {} allowed", n - d),
    };
    out
}
