//! The rollout engine: steps, gates and abort, as plain code. No I/O and no
//! clock: callers feed it inputs (with the time) and carry out its outputs.
//!
//! A step: set the weights → wait until Route53 reports INSYNC → wait one TTL
//! (resolvers still hold the old answer) → soak, evaluating the gates. A step
//! passes when the soak time is over and every gate's latest reading during
//! it was a pass, with no error since (an empty result is never a success: a
//! gate that passed once and then read no data or failed under its limit is
//! not passing now). Then the next step; after 100%, done.
//!
//! Gates: a failed measurement counts toward the gate's failure limit, which
//! aborts; a provider error counts toward its consecutive-error limit, which
//! pauses for a human (it never advances and never passes); no data waits
//! while the soak runs (metrics lag) and, once the soak time is over, follows
//! the gate's policy (fail, pause or pass). Abort returns the weights to the
//! last step whose gates all passed (or the initial weights) and keeps the
//! plan: `Start` again retries from the step that failed.

mod saved;
pub use saved::{InFlight, RolloutState, plan_hash};

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::analysis::weights::weights_for_percent;
use crate::runbook::{Gate, NoDataPolicy, Runbook};

/// Weights as (from side, to side).
pub type Weights = (u8, u8);

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    pub steps: Vec<u8>,
    pub soak: Duration,
    /// How long the last step holds, its gates running; ZERO: the soak.
    pub bake: Duration,
    pub ttl: Duration,
    pub gates: Vec<GateSpec>,
    /// Weights before the rollout; where an abort with no good step returns.
    pub initial: Weights,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GateSpec {
    pub name: String,
    pub failure_limit: u32,
    pub consecutive_error_limit: u32,
    pub no_data: NoDataPolicy,
    /// Gates on CloudWatch datapoints, or on alarms judging them late: a soak
    /// ends only once a passing reading covers its end (the runner says what
    /// its reading covers), waiting at most this long past it; then the
    /// `no_data` policy decides. `None`: the gate reads live state, which has
    /// no lag.
    pub settle: Option<Duration>,
}

impl RolloutPlan {
    /// The runbook's plan, validated before anything is changed.
    pub fn from_runbook(rb: &Runbook) -> Result<RolloutPlan, String> {
        let r = &rb.rollout;
        if r.steps.is_empty() || r.steps.last() != Some(&100) {
            return Err("the rollout's steps must end at 100".into());
        }
        if r.steps.windows(2).any(|w| w[0] >= w[1]) || r.steps.iter().any(|s| *s == 0 || *s > 100) {
            return Err("the rollout's steps must increase, from 1 to 100".into());
        }
        let initial = (
            rb.dns.initial_weights.get(&r.from).copied().unwrap_or(100),
            rb.dns.initial_weights.get(&r.to).copied().unwrap_or(0),
        );
        Ok(RolloutPlan {
            steps: r.steps.clone(),
            soak: r.soak,
            bake: r.bake,
            ttl: Duration::from_secs(u64::from(rb.dns.ttl)),
            gates: r.gates.iter().enumerate().map(|(i, g)| GateSpec::of(i, g)).collect(),
            initial,
        })
    }

    /// How long `step` must hold: the soak, or for the last step the bake
    /// when it is longer.
    pub fn hold(&self, step: usize) -> Duration {
        if step + 1 == self.steps.len() { self.soak.max(self.bake) } else { self.soak }
    }

    pub fn weights_at(&self, step: usize) -> Weights {
        weights_for_percent(self.steps.get(step).copied().unwrap_or(0))
    }
}

impl GateSpec {
    fn of(i: usize, g: &Gate) -> GateSpec {
        GateSpec {
            name: format!("gate {} ({})", i + 1, crate::runbook::gate_label(&g.kind)),
            failure_limit: g.failure_limit,
            consecutive_error_limit: g.consecutive_error_limit,
            no_data: g.no_data,
            settle: g.settle(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    Pass,
    /// A pass the runbook chose to stand in for a reading without data (an
    /// alarm in INSUFFICIENT_DATA under `insufficient_data = "pass"`). It
    /// never clears a failing reading: it waits, then a person decides.
    PassWithoutData(String),
    Fail(String),
    NoData,
    /// The provider (AWS, Redis, HTTP) could not be asked.
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start, or retry after an abort.
    Start,
    Tick,
    /// The weights of `step` were sent (change id for GetChange).
    ShiftApplied {
        step: usize,
        change_id: String,
    },
    /// The change of `step` is INSYNC.
    InSync {
        step: usize,
    },
    Measure {
        gate: usize,
        result: Measurement,
    },
    /// A measurement from datapoints that reach `covers` (the end of the
    /// newest one the provider has published so far).
    MeasureCovering {
        gate: usize,
        result: Measurement,
        covers: Option<SystemTime>,
    },
    Pause,
    Resume,
    /// Skip the rest of the current soak (a person confirmed it).
    Promote,
    Abort {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send these weights (both records, one change batch); `step` None is a rollback.
    SetWeights {
        weights: Weights,
        step: Option<usize>,
    },
    Log(String),
    /// Stopped for a human; Resume continues, Abort rolls back.
    Paused(String),
    Aborted {
        reason: String,
        weights: Weights,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum RolloutPhase {
    Idle,
    Shifting,
    WaitingInsync,
    WaitingTtl { until: SystemTime },
    Soaking { since: SystemTime, until: SystemTime },
    Paused,
    RollingBack,
    Aborted,
    Done,
}

impl RolloutPhase {
    /// When the soak began, while soaking.
    pub fn soaking_since(&self) -> Option<SystemTime> {
        match self {
            RolloutPhase::Soaking { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// The phase as people read it (and as `status --json` writes it).
    pub fn name(&self) -> &'static str {
        match self {
            RolloutPhase::Idle => "idle",
            RolloutPhase::Shifting => "shifting",
            RolloutPhase::WaitingInsync => "waiting_insync",
            RolloutPhase::WaitingTtl { .. } => "waiting_ttl",
            RolloutPhase::Soaking { .. } => "soaking",
            RolloutPhase::Paused => "paused",
            RolloutPhase::RollingBack => "rolling_back",
            RolloutPhase::Aborted => "aborted",
            RolloutPhase::Done => "done",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateCounters {
    pub passes: u32,
    pub failures: u32,
    pub consecutive_errors: u32,
    /// The furthest a passing reading's datapoints reached in this soak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<SystemTime>,
    /// Its latest reading was a pass (a no-data policy's pass too); a
    /// failure under the limit, or no data, since then clears it. A state
    /// saved before this field reads false: the next pass sets it.
    #[serde(default)]
    pub passing: bool,
    /// Its latest reading on data was a failure (under the limit): only a
    /// pass on data clears it, never a no-data policy's pass (nor a
    /// `PassWithoutData`), which stands in for data that did not come, not
    /// for data that failed. Such a gate
    /// whose data stops coming pauses for a person.
    #[serde(default)]
    pub failing: bool,
    /// When its latest pass was read. A gate on live state passes a soak
    /// only on a pass read in the soak's second half: one read at its start
    /// (an interval as long as the soak) says nothing of the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_at: Option<SystemTime>,
    /// When its `no_data = "fail"` policy last counted a failure for the
    /// data covering the soak's end that did not come: the next is counted
    /// a settle time later. A failure stands in for no data, never for a
    /// reading: the soak still needs a pass covering its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data_failed_at: Option<SystemTime>,
}

/// Everything the engine knows; serializable so a restart resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub phase: RolloutPhase,
    /// The step being rolled out.
    pub step: usize,
    /// The last step whose gates all passed.
    pub last_good: Option<usize>,
    pub counters: Vec<GateCounters>,
    /// Why it paused or aborted.
    pub reason: Option<String>,
    /// What to do on Resume: the phase it paused in.
    pub paused_from: Option<Box<RolloutPhase>>,
    /// When this step's weights began to stand live unjudged (it paused
    /// after they were sent): kept through the resume, so a run interrupted
    /// before its gates read the alarms' history from then still reads it,
    /// until they have (`Runner` clears it) or other weights are sent.
    /// Absent in states saved before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<SystemTime>,
}

impl EngineState {
    pub fn new(gates: usize) -> Self {
        Self {
            phase: RolloutPhase::Idle,
            step: 0,
            last_good: None,
            counters: vec![GateCounters::default(); gates],
            reason: None,
            paused_from: None,
            paused_at: None,
        }
    }

    /// Why this state (read from a file someone may have edited, under the
    /// same plan hash) does not fit `plan`, if it does not: a step or last
    /// good step past its steps, or counters for another number of gates,
    /// which the engine would index out of bounds or send as 0%.
    pub fn misfit(&self, plan: &RolloutPlan) -> Option<String> {
        let steps = plan.steps.len();
        if self.step >= steps {
            return Some(format!("it is at step {} of a plan with {steps}", self.step.saturating_add(1)));
        }
        if let Some(g) = self.last_good.filter(|g| *g >= steps) {
            return Some(format!("its last good step is {} of a plan with {steps}", g.saturating_add(1)));
        }
        (self.counters.len() != plan.gates.len()).then(|| {
            format!("it counts readings for {} gates of a plan with {}", self.counters.len(), plan.gates.len())
        })
    }
}

pub struct Engine {
    pub plan: RolloutPlan,
    pub state: EngineState,
}

impl Engine {
    pub fn new(plan: RolloutPlan) -> Self {
        let state = EngineState::new(plan.gates.len());
        Self { plan, state }
    }

    /// The weights an abort returns to now.
    /// A last good step the plan no longer has (the runbook changed) falls
    /// back to the initial weights: never a weight the plan does not contain.
    pub fn rollback_weights(&self) -> Weights {
        match self.state.last_good {
            Some(s) if s < self.plan.steps.len() => self.plan.weights_at(s),
            _ => self.plan.initial,
        }
    }

    fn shift_to(&mut self, step: usize) -> Vec<Output> {
        self.state.step = step;
        self.state.phase = RolloutPhase::Shifting;
        self.state.counters = vec![GateCounters::default(); self.plan.gates.len()];
        let w = self.plan.weights_at(step);
        vec![
            Output::Log(format!("step {}/{}: shifting to {}/{}", step + 1, self.plan.steps.len(), w.0, w.1)),
            Output::SetWeights { weights: w, step: Some(step) },
        ]
    }

    fn abort(&mut self, reason: String) -> Vec<Output> {
        let weights = self.rollback_weights();
        self.state.phase = RolloutPhase::Aborted;
        self.state.reason = Some(reason.clone());
        self.state.paused_from = None;
        vec![Output::SetWeights { weights, step: None }, Output::Aborted { reason, weights }]
    }

    fn pause(&mut self, reason: String) -> Vec<Output> {
        self.state.paused_from = Some(Box::new(self.state.phase));
        self.state.phase = RolloutPhase::Paused;
        self.state.reason = Some(reason.clone());
        vec![Output::Paused(reason)]
    }

    fn step_passed(&mut self) -> Vec<Output> {
        let step = self.state.step;
        self.state.last_good = Some(step);
        let mut out = vec![Output::Log(format!(
            "step {}/{} passed at {}%",
            step + 1,
            self.plan.steps.len(),
            self.plan.steps[step]
        ))];
        if step + 1 == self.plan.steps.len() {
            self.state.phase = RolloutPhase::Done;
            out.push(Output::Done);
        } else {
            out.extend(self.shift_to(step + 1));
        }
        out
    }

    /// A new soak window; gate counters start from zero.
    pub fn start_soak(&mut self, now: SystemTime) {
        self.state.phase = RolloutPhase::Soaking { since: now, until: now + self.plan.hold(self.state.step) };
        self.state.counters = vec![GateCounters::default(); self.plan.gates.len()];
    }

    fn soak_complete(&self, now: SystemTime, since: SystemTime, until: SystemTime) -> bool {
        // A gate whose latest reading was an error is not known to pass now;
        // a gate on lagging datapoints must have passed on data reaching the
        // end, and one on live state on a reading from the soak's second half.
        let second_half = since + until.duration_since(since).unwrap_or_default() / 2;
        now >= until
            && self.state.counters.iter().zip(&self.plan.gates).all(|(c, g)| {
                c.passes > 0
                    && c.passing
                    && c.consecutive_errors == 0
                    && match g.settle {
                        Some(_) => c.covered >= Some(until),
                        None => c.passed_at >= Some(second_half),
                    }
            })
    }

    /// Gates whose datapoints did not reach the soak's end within their
    /// settle time: their `no_data` policy decides, once.
    fn settle_over(&mut self, now: SystemTime, until: SystemTime) -> Vec<Output> {
        let mut out = Vec::new();
        for (i, spec) in self.plan.gates.clone().iter().enumerate() {
            let Some(settle) = spec.settle else { continue };
            let c = &mut self.state.counters[i];
            if now < c.no_data_failed_at.unwrap_or(until) + settle || c.covered >= Some(until) {
                continue;
            }
            let why = format!("no reading covering the soak's end within {} s", settle.as_secs());
            // Decided: a pass or a person stands in for the data that never
            // came; a failure is counted and the wait for it goes on.
            if spec.no_data == NoDataPolicy::Fail {
                c.no_data_failed_at = Some(now);
            } else {
                c.covered = Some(until);
            }
            match spec.no_data {
                // Data that came and failed is not outweighed by data that did not come.
                NoDataPolicy::Pass if c.failing => {
                    out.extend(self.pause(format!(
                        "{}: {why}, and its latest reading failed, so the no-data policy does not pass it; a \
                         person must decide",
                        spec.name
                    )));
                    return out;
                }
                NoDataPolicy::Pass => {
                    c.passes += 1;
                    c.passing = true;
                    out.push(Output::Log(format!("{}: {why} (policy: pass)", spec.name)));
                }
                NoDataPolicy::Fail => {
                    c.failures += 1;
                    c.passing = false;
                    let failures = c.failures;
                    if failures >= spec.failure_limit {
                        out.extend(
                            self.abort(format!("{} failed {failures} time(s): {why} (policy: fail)", spec.name)),
                        );
                        return out;
                    }
                    out.push(Output::Log(format!("{} failed ({failures}/{}): {why}", spec.name, spec.failure_limit)));
                }
                NoDataPolicy::Pause => {
                    out.extend(self.pause(format!("{}: {why}; a person must decide (policy: pause)", spec.name)));
                    return out;
                }
            }
        }
        out
    }

    /// A reading without data whose pass would stand in for a failing one:
    /// data that came and failed is not outweighed by data that did not. A
    /// wait within the settle time, then a person decides.
    fn failing_without_data(
        &mut self,
        gate: usize,
        spec: &GateSpec,
        until: SystemTime,
        now: SystemTime,
        what: &str,
        passer: &str,
    ) -> Vec<Output> {
        self.state.counters[gate].passing = false;
        if now < until + spec.settle.unwrap_or_default() {
            return vec![Output::Log(format!("{}: its latest reading failed; {what} since", spec.name))];
        }
        self.pause(format!(
            "{}: {what}, and its latest reading failed, so {passer} does not pass it; a person must decide",
            spec.name
        ))
    }

    fn measure(
        &mut self,
        gate: usize,
        result: Measurement,
        now: SystemTime,
        covers: Option<SystemTime>,
    ) -> Vec<Output> {
        let Some(spec) = self.plan.gates.get(gate).cloned() else {
            return vec![Output::Log(format!("measurement for unknown gate {gate} ignored"))];
        };
        let RolloutPhase::Soaking { until, .. } = self.state.phase else {
            return vec![Output::Log(format!("{}: measurement outside a soak ignored", spec.name))];
        };
        if let Measurement::NoData = result {
            if now < until {
                // Passing once is not passing now: the soak waits for a pass.
                self.state.counters[gate].passing = false;
                return vec![Output::Log(format!("{}: no data yet", spec.name))];
            }
            // Datapoints arrive late: no data is only final once data
            // covering the soak's end has arrived, or the settle time is over.
            if let Some(settle) = spec.settle
                && covers < Some(until)
                && now < until + settle
            {
                self.state.counters[gate].passing = false;
                return vec![Output::Log(format!(
                    "{}: no data yet; waiting up to {} s for a reading covering the soak's end",
                    spec.name,
                    settle.as_secs()
                ))];
            }
        }
        let result = match result {
            Measurement::NoData => match spec.no_data {
                NoDataPolicy::Pass if self.state.counters[gate].failing => {
                    return self.failing_without_data(gate, &spec, until, now, "no data", "the no-data policy");
                }
                NoDataPolicy::Pass => Measurement::Pass,
                NoDataPolicy::Fail => Measurement::Fail("no data (policy: fail)".into()),
                NoDataPolicy::Pause => {
                    return self.pause(format!("{}: no data; a person must decide (policy: pause)", spec.name));
                }
            },
            Measurement::PassWithoutData(why) if self.state.counters[gate].failing => {
                return self.failing_without_data(gate, &spec, until, now, &why, "the runbook's choice");
            }
            Measurement::PassWithoutData(_) => Measurement::Pass,
            r => r,
        };
        let c = &mut self.state.counters[gate];
        match result {
            Measurement::Pass => {
                c.passes += 1;
                c.passing = true;
                c.passed_at = Some(now);
                c.consecutive_errors = 0;
                // A no-data policy's pass was turned away above while failing.
                c.failing = false;
                // A pass on data reaching `covers` (a no-data policy's pass too).
                if covers > c.covered {
                    c.covered = covers;
                }
                Vec::new()
            }
            Measurement::Fail(why) => {
                c.failures += 1;
                c.passing = false;
                c.failing = true;
                c.consecutive_errors = 0;
                let failures = c.failures;
                if failures >= spec.failure_limit {
                    self.abort(format!("{} failed {failures} time(s): {why}", spec.name))
                } else {
                    vec![Output::Log(format!("{} failed ({failures}/{}): {why}", spec.name, spec.failure_limit))]
                }
            }
            Measurement::Error(why) => {
                c.consecutive_errors += 1;
                if c.consecutive_errors >= spec.consecutive_error_limit {
                    let n = c.consecutive_errors;
                    self.pause(format!("{}: {n} errors in a row, cannot judge: {why}", spec.name))
                } else {
                    vec![Output::Log(format!(
                        "{} could not be measured ({}/{}): {why}",
                        spec.name, c.consecutive_errors, spec.consecutive_error_limit
                    ))]
                }
            }
            Measurement::NoData | Measurement::PassWithoutData(_) => unreachable!("mapped above"),
        }
    }

    pub fn handle(&mut self, input: Input, now: SystemTime) -> Vec<Output> {
        use RolloutPhase::*;
        let was_paused = self.state.phase == Paused;
        let out = self.transition(input, now);
        match self.state.phase {
            // The earliest pause not judged yet: a second one keeps it.
            Paused if !was_paused => self.state.paused_at = self.state.paused_at.or(Some(now)),
            // Other weights, or none: what stood during the pause was not these.
            Idle | Shifting | RollingBack | Aborted | Done => self.state.paused_at = None,
            _ => {}
        }
        out
    }

    fn transition(&mut self, input: Input, now: SystemTime) -> Vec<Output> {
        use RolloutPhase::*;
        match (self.state.phase, input) {
            (Idle | Aborted, Input::Start) => {
                // A retry starts again at the step after the last good one.
                let next = self.state.last_good.map_or(0, |s| s + 1);
                self.state.reason = None;
                if next >= self.plan.steps.len() {
                    self.state.phase = Done;
                    return vec![Output::Done];
                }
                self.shift_to(next)
            }
            (Shifting, Input::ShiftApplied { step, change_id }) if step == self.state.step => {
                self.state.phase = WaitingInsync;
                vec![Output::Log(format!("change {change_id} sent; waiting for INSYNC"))]
            }
            (WaitingInsync, Input::InSync { step }) if step == self.state.step => {
                self.state.phase = WaitingTtl { until: now + self.plan.ttl };
                vec![Output::Log(format!("INSYNC; waiting one TTL ({}s) for resolvers", self.plan.ttl.as_secs()))]
            }
            (WaitingTtl { until }, Input::Tick) if now >= until => {
                self.start_soak(now);
                let hold = self.plan.hold(self.state.step);
                if hold > self.plan.soak {
                    vec![Output::Log(format!("baking for {}s at 100%: every gate keeps running", hold.as_secs()))]
                } else {
                    vec![Output::Log(format!("soaking for {}s", hold.as_secs()))]
                }
            }
            (Soaking { since, until }, Input::Tick) if self.soak_complete(now, since, until) => self.step_passed(),
            (Soaking { until, .. }, Input::Tick) if now >= until => self.settle_over(now, until),
            (Soaking { .. }, Input::Measure { gate, result }) => self.measure(gate, result, now, None),
            (Soaking { .. }, Input::MeasureCovering { gate, result, covers }) => {
                self.measure(gate, result, now, covers)
            }
            (Soaking { .. } | WaitingTtl { .. } | WaitingInsync | Shifting, Input::Promote) => {
                vec![Output::Log("promoted: rest of the step skipped by a person".into())]
                    .into_iter()
                    .chain(self.step_passed())
                    .collect()
            }
            (Shifting | WaitingInsync | WaitingTtl { .. } | Soaking { .. }, Input::Pause) => {
                self.pause("paused by a person".into())
            }
            (Paused, Input::Resume) => {
                let from = self.state.paused_from.take().map_or(Soaking { since: now, until: now }, |p| *p);
                self.state.reason = None;
                for c in &mut self.state.counters {
                    c.consecutive_errors = 0;
                }
                // A soak resumes with a fresh window and fresh counters: what
                // happened before the pause is not evidence now.
                match from {
                    Soaking { .. } => self.start_soak(now),
                    other => self.state.phase = other,
                }
                vec![Output::Log("resumed".into())]
            }
            (Shifting | WaitingInsync | WaitingTtl { .. } | Soaking { .. } | Paused, Input::Abort { reason }) => {
                self.abort(reason)
            }
            (_, Input::Tick) => Vec::new(),
            (phase, input) => vec![Output::Log(format!("ignored {input:?} while {phase:?}"))],
        }
    }
}

#[cfg(test)]
mod tests;
