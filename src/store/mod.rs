//! Durable state: the audit log, checklist ticks and notes, and the rollout's
//! saved state, lock and requests. Below everything that acts, so every layer
//! above reads and writes it through here.

pub mod audit;
pub mod checklist;
pub mod rollout;

/// Who is operating: `CUTOVER_OPERATOR`, else `USER`, else `unknown`.
pub fn operator() -> String {
    ["CUTOVER_OPERATOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}
