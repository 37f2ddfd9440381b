//! The rollout as saved between runs: the engine's state, the weights last
//! sent and a change in flight. Plain data; `store::rollout` keeps it.

use serde::{Deserialize, Serialize};

use super::{EngineState, RolloutPlan, Weights};
use crate::runbook::Runbook;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub runbook: String,
    /// Changes when the steps, soak, bake, TTL or gates change.
    pub plan_hash: String,
    pub engine: EngineState,
    /// The weights cutover last sent.
    pub applied: Option<Weights>,
    /// A change about to be sent, or sent and not yet seen INSYNC; see
    /// `Runner::send` for the order of writes around it.
    #[serde(default)]
    pub in_flight: Option<InFlight>,
    pub updated_at: String,
}

/// Weights on their way to Route53, written to the state before the send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The live weights it moves away from (for the audit).
    pub before: Weights,
    pub weights: Weights,
    /// The rollout step (0-based) they belong to; None for a rollback.
    pub step: Option<usize>,
    /// Route53's change id, once it accepted the batch.
    pub change: Option<String>,
    /// A confirming batch of live weights set outside the rollout and
    /// adopted (`--adopt-live`), not a rollback, when `step` is None: the
    /// audit names it so. Absent in states saved before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
}

impl RolloutState {
    pub fn new(rb: &Runbook, plan: &RolloutPlan) -> Self {
        RolloutState {
            runbook: rb.name.clone(),
            plan_hash: plan_hash(rb),
            engine: EngineState::new(plan.gates.len()),
            applied: None,
            in_flight: None,
            updated_at: String::new(),
        }
    }
}

/// A hash of the plan's JSON, stable across builds.
pub fn plan_hash(rb: &Runbook) -> String {
    let body = serde_json::json!({"steps": rb.rollout.steps, "soak": rb.rollout.soak.as_millis() as u64, "bake": rb.rollout.bake.as_millis() as u64, "ttl": rb.dns.ttl, "gates": rb.rollout.gates, "from": rb.rollout.from, "to": rb.rollout.to});
    format!("{:016x}", crate::hash::fnv1a(body.to_string().as_bytes()))
}
