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
    /// A send that timed out and may still land, kept out of `in_flight`
    /// because an earlier change holds that place: the send that confirms
    /// it (this run's, or the next's) keeps on its lines what it moved
    /// from. Absent in states saved before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_land: Option<InFlight>,
    pub updated_at: String,
    /// The rollout's `from` and `to` environments when it started: what its
    /// weights' two numbers are the weights of. Absent in states saved
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<(String, String)>,
    /// The account whose records the rollout changes (the `[dns]` side's,
    /// as STS named it): a state another account's run saved in the same
    /// folder (a sandbox rehearsal's, a namesake runbook's) is not this
    /// rollout's. Absent in states saved before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// Weights on their way to Route53, written to the state before the send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The live weights it moves away from (for the audit).
    pub before: Weights,
    /// Each record type's, where a dual-stack group's types weighed the
    /// sides otherwise (`before` is then the first type's): the audit's
    /// `insync` line says what its `applied` line said. Absent in states
    /// saved before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_by_type: Option<std::collections::BTreeMap<String, Weights>>,
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
    /// Why this state is not the rollout of a run in `account`, if it is
    /// not: saved by a run in another account.
    pub fn of_another_account(&self, account: Option<&str>) -> Option<String> {
        match (self.account.as_deref(), account) {
            (Some(saved), Some(now)) if saved != now => Some(format!(
                "the saved rollout state was written by a rollout in account {saved} (a sandbox rehearsal's, or a \
                 namesake runbook's in another account), not in account {now}, where this one changes the records"
            )),
            _ => None,
        }
    }

    /// Why an abort cannot roll back from this state under `rb`'s rollout,
    /// if it cannot: saved under another plan whose sides are not `rb`'s (or
    /// not known), its weights' two numbers may belong to other
    /// environments, and the initial weights could send the traffic to the
    /// very side being aborted.
    pub fn sides_unlike(&self, rb: &Runbook) -> Option<String> {
        if self.plan_hash == plan_hash(rb) {
            return None;
        }
        match &self.sides {
            Some((from, to)) if *from == rb.rollout.from && *to == rb.rollout.to => None,
            Some((from, to)) => Some(format!(
                "this rollout moved traffic from {from} to {to}, and the runbook's rollout now goes from {} to {}",
                rb.rollout.from, rb.rollout.to
            )),
            None => Some(
                "the runbook's rollout changed since this rollout started, and which environments its weights \
                 were of was not saved"
                    .to_string(),
            ),
        }
    }

    pub fn new(rb: &Runbook, plan: &RolloutPlan) -> Self {
        RolloutState {
            runbook: rb.name.clone(),
            plan_hash: plan_hash(rb),
            engine: EngineState::new(plan.gates.len()),
            applied: None,
            in_flight: None,
            may_land: None,
            updated_at: String::new(),
            sides: Some((rb.rollout.from.clone(), rb.rollout.to.clone())),
            account: None,
        }
    }
}

/// A hash of the plan's JSON, stable across builds.
pub fn plan_hash(rb: &Runbook) -> String {
    let body = serde_json::json!({"steps": rb.rollout.steps, "soak": rb.rollout.soak.as_millis() as u64, "bake": rb.rollout.bake.as_millis() as u64, "ttl": rb.dns.ttl, "gates": rb.rollout.gates, "from": rb.rollout.from, "to": rb.rollout.to});
    format!("{:016x}", crate::hash::fnv1a(body.to_string().as_bytes()))
}
