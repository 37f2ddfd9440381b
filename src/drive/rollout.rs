//! Running the rollout: the engine driven by live gate measurements, every
//! weight change through `shift`, audited, and the state written atomically
//! after every change so a restart (even after kill -9) resumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::shift::{self, ShiftPlan};
use crate::aws::{Clients, SideClients};
use crate::engine::plan_hash;
use crate::engine::{Engine, EngineState, InFlight, Input, Output, RolloutPhase, RolloutPlan, RolloutState, Weights};
use crate::live::Session;
use crate::live::probe::ProbePolicy;
use crate::live::workers::WorkerContext;
use crate::runbook::Runbook;
use crate::store::audit::{AuditLine, AuditLog, Stage};
use crate::store::backend::Version;
use crate::store::lease::{Lease, Refusal};
use crate::store::rollout::{Request, RequestNote, SaveError, is_running, load_versioned, save_state, state_location};

/// The rollout's saved state, if it has one.
pub fn load_state(name: &str) -> Result<Option<RolloutState>, String> {
    crate::store::rollout::load_state(name)
}

/// Why a rollout command did not do its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutError {
    /// Nothing was done: the saved state or the live weights must be
    /// reconciled first, or nothing runs to act on (exit 2).
    Refused(String),
    /// AWS, a file or the running rollout failed (exit 1).
    Failed(String),
}

impl std::fmt::Display for RolloutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RolloutError::Refused(m) | RolloutError::Failed(m) => f.write_str(m),
        }
    }
}

/// A failure (exit 1): AWS, a file or the running rollout.
fn failed(message: String) -> RolloutError {
    RolloutError::Failed(message)
}

impl From<super::PlanError> for RolloutError {
    fn from(e: super::PlanError) -> Self {
        match e {
            super::PlanError::Refused(_) => RolloutError::Refused(e.to_string()),
            _ => RolloutError::Failed(e.to_string()),
        }
    }
}

/// Why a change of the weights was not made.
#[derive(Debug)]
enum SendError {
    /// Route53 throttled it or was not reached, and nothing of it is live
    /// (the records read back as they were, or could not be read): the same
    /// change may be sent again.
    NotTaken(String),
    Failed(String),
    /// Not sent, by a check a person must answer (a rollback onto a side
    /// with nothing in service): a refusal, exit 2.
    Refused(String),
}

impl SendError {
    /// The same error, its message naming the action it stopped.
    fn of(self, action: &str) -> Self {
        match self {
            SendError::NotTaken(m) => SendError::NotTaken(format!("{action}: {m}")),
            SendError::Failed(m) => SendError::Failed(format!("{action}: {m}")),
            SendError::Refused(m) => SendError::Refused(format!("{action}: {m}")),
        }
    }
}

impl From<String> for SendError {
    fn from(message: String) -> Self {
        SendError::Failed(message)
    }
}

impl From<super::PlanError> for SendError {
    fn from(e: super::PlanError) -> Self {
        match &e {
            super::PlanError::Aws(aws) if aws.is_transient() => SendError::NotTaken(e.to_string()),
            _ => SendError::Failed(e.to_string()),
        }
    }
}

impl From<SendError> for String {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotTaken(m) | SendError::Failed(m) | SendError::Refused(m) => m,
        }
    }
}

/// How long a rollback is sent again while Route53 throttles it or cannot be
/// reached. AWS's advice for PriorRequestNotComplete: wait, in intervals of
/// increasing duration, and try again.
const ROLLBACK_RETRY_FOR: Duration = Duration::from_secs(300);

/// The audit's name for the batch that confirms live weights a rollout
/// adopted between its steps (`--adopt-live`): neither a step nor an abort.
const ADOPTION: &str = "rollout adopt-live";

impl From<RolloutError> for String {
    fn from(e: RolloutError) -> Self {
        e.to_string()
    }
}

/// What `cutover rollout` would do now: lines to show, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub lines: Vec<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It would start or resume.
    Go,
    /// Another rollout of this runbook runs now.
    Running,
    /// The rollout changed since the saved state (`--restart`).
    PlanChanged,
    /// The live weights are not the ones the state expects (`--adopt-live`).
    LiveWeightsDiffer { live: Weights, expected: Weights },
    /// The rollout is complete.
    Complete,
    /// The group's record types weigh the sides differently (set them
    /// alike with `cutover shift`).
    TypesDiffer,
    /// The live weights are not the ones a person confirmed (`--expect-live`).
    NotAsConfirmed { live: Weights, confirmed: Weights },
    /// A lease left by a holder that stopped renewing it (`--take-over`).
    LeaseLeft,
    /// A side the gates read is reached in another account than the
    /// runbook's for it, or its account cannot be told.
    GatesReadElsewhere,
    /// An `alarm_ok` gate's alarm history cannot be read by the
    /// credentials that read the alarm.
    AlarmHistoryUnreadable,
    /// This machine's clock is too far from AWS's for the gates to judge
    /// the soak's minutes, or AWS's clock cannot be read.
    ClockDiffers,
    /// The saved state was written by a rollout in another account (a
    /// sandbox rehearsal's): `--restart`.
    StateOfAnotherAccount,
    /// Keys in the environment expire before the rollout could end, or
    /// when they expire cannot be read.
    CredentialsExpire,
}

impl Verdict {
    /// Whether `cutover rollout` would be refused (exit 2) as things stand.
    pub fn refused(&self) -> bool {
        !matches!(self, Verdict::Go | Verdict::Complete)
    }
}

/// What a rollout, or its abort, runs with; `actor` is the authorisation
/// (`authority::authorise`) every change it sends is made under.
#[derive(Clone)]
pub struct Context {
    pub rb: Runbook,
    /// Each side's clients: the weights are read and changed through `[dns]`'s.
    pub clients: SideClients,
    pub actor: crate::authority::Actor,
    pub vars: BTreeMap<String, String>,
    pub adopt_live: bool,
    /// `--expect-live`: the live weights a person confirmed (the cockpit's
    /// "adopt and start"): refused, nothing sent, when they are others now.
    pub expect_live: Option<Weights>,
    pub restart: bool,
    /// `--take-over`: resume a rollout whose holder stopped renewing its lease.
    pub take_over: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    Aborted(String),
    Paused(String),
}

struct Runner<'a> {
    cx: &'a Context,
    engine: Engine,
    state: RolloutState,
    log: AuditLog,
    say: &'a mut (dyn FnMut(&str) + Send),
    /// The live weights a rollback moved away from (for its audit line).
    rolled_back_from: Option<Weights>,
    /// Held for the whole run; proved ours (fenced) before every send.
    lease: Lease,
    /// The saved state's version: every save replaces only that one.
    version: Option<Version>,
    /// The store is shared (S3): writes cost, so unchanged states are not rewritten.
    shared: bool,
    /// The last state saved, without its time.
    last_saved: Option<Vec<u8>>,
    /// A rollback an earlier run left in flight was confirmed as this run
    /// began: that abort is finished, never a fresh start.
    rollback_confirmed: bool,
    /// When this process last sent a step's weights: an alarm's ALARM
    /// before it judged other weights.
    shifted_at: Option<SystemTime>,
}

impl<'a> Runner<'a> {
    /// A run of `cx`'s rollout from `state`, holding `lease`; `version`: the
    /// saved state's, which every save replaces.
    fn new(
        cx: &'a Context,
        engine: Engine,
        state: RolloutState,
        say: &'a mut (dyn FnMut(&str) + Send),
        lease: Lease,
        version: Option<Version>,
    ) -> Self {
        Runner {
            cx,
            engine,
            state,
            log: AuditLog::for_runbook(&cx.rb.name),
            say,
            rolled_back_from: None,
            lease,
            version,
            shared: crate::store::backend::current().shared(),
            last_saved: None,
            rollback_confirmed: false,
            shifted_at: None,
        }
    }
}

impl Runner<'_> {
    fn persist(&mut self) -> Result<(), String> {
        self.state.engine = self.engine.state.clone();
        if let Some(why) = self.lease.lost() {
            return Err(format!("{why}; stopping without sending anything more"));
        }
        // In a shared store a write is a paid request: the soak's every-second
        // save is skipped when nothing but the time would change.
        let unchanged = RolloutState { updated_at: String::new(), ..self.state.clone() };
        let same = serde_json::to_vec(&unchanged).ok();
        if self.shared && same.is_some() && same == self.last_saved {
            return Ok(());
        }
        self.state.updated_at = crate::time::rfc3339(SystemTime::now());
        // A shared store that fails for a moment is asked again while the
        // lease holds: a rollback decided must not be dropped for one request.
        let mut tries = 0;
        loop {
            match save_state(&self.state.runbook, &self.state, &mut self.version) {
                Ok(()) => break,
                Err(SaveError::Unavailable(e)) if self.shared && tries < 10 && self.lease.lost().is_none() => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "saving the rollout state; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.last_saved = same;
        Ok(())
    }

    fn audit(
        &self,
        action: &str,
        stage: Stage,
        before: Option<Weights>,
        after: Weights,
        detail: String,
    ) -> Result<(), String> {
        let before = before.map_or(serde_json::Value::Null, |w| self.weights_json(w));
        self.audit_weighed(action, stage, before, after, detail)
    }

    /// As `audit`, with `before` as the audit has weights: each type's
    /// where they differ (`ShiftPlan::before`).
    fn audit_weighed(
        &self,
        action: &str,
        stage: Stage,
        before: serde_json::Value,
        after: Weights,
        detail: String,
    ) -> Result<(), String> {
        self.log.append(&self.audit_line(action, stage, before, after, detail))
    }

    /// As `audit`, naming the Route53 change the line is about.
    fn audit_change(
        &self,
        action: &str,
        stage: Stage,
        (before, after): (serde_json::Value, Weights),
        change: &str,
        detail: String,
    ) -> Result<(), String> {
        let ahead = self.cx.clients.clock_read().map(|r| r.ahead_ms);
        self.log
            .append(&self.audit_line(action, stage, before, after, detail).with_change(change).with_aws_ahead_ms(ahead))
    }

    /// The `insync` line of the change `flight` sent; a step's says which
    /// step of the rollout it is (notifications pick steps reached by it).
    fn audit_insync(&self, flight: &InFlight, change: &str, detail: String) -> Result<(), String> {
        let line =
            self.audit_line(&self.flight_action(flight), Stage::InSync, self.before_of(flight), flight.weights, detail);
        let line = match flight.step {
            Some(s) => line.with_step(s + 1, self.engine.plan.steps.len()),
            None => line,
        };
        let ahead = self.cx.clients.clock_read().map(|r| r.ahead_ms);
        self.log.append(&line.with_change(change).with_aws_ahead_ms(ahead))
    }

    /// `before` as the audit has weights: `{environment: weight}`, or
    /// each type's (`ShiftPlan::before`).
    fn audit_line(
        &self,
        action: &str,
        stage: Stage,
        before: serde_json::Value,
        after: Weights,
        detail: String,
    ) -> AuditLine {
        let values = (before, self.weights_json(after));
        self.cx.actor.audit_line(&self.cx.rb.name, action.into(), stage, values, detail)
    }

    /// `{from: weight, to: weight}`, as the audit has them.
    fn weights_json(&self, w: Weights) -> serde_json::Value {
        shift::weights_before((&self.cx.rb.rollout.from, &self.cx.rb.rollout.to), w, None)
    }

    /// The weights `flight` moves away from, as the audit has them: each
    /// type's where they differed (`ShiftPlan::before`).
    fn before_of(&self, flight: &InFlight) -> serde_json::Value {
        let sides = (self.cx.rb.rollout.from.as_str(), self.cx.rb.rollout.to.as_str());
        shift::weights_before(sides, flight.before, flight.before_by_type.as_ref())
    }

    /// Sets the weights and waits for INSYNC; feeds the engine.
    async fn set_weights(&mut self, weights: Weights, step: Option<usize>) -> Result<Vec<Output>, SendError> {
        if step.is_some() {
            crate::crashpoint::here("step:before-plan");
        }
        // An abort asked since the loop last looked comes before any pause.
        if let Some(out) = self.abort_asked(step)? {
            return Ok(out);
        }
        let plan = match shift::plan(self.cx.clients.dns(), &self.cx.rb, weights).await {
            Ok(p) => p,
            Err(e) => return Err(SendError::from(e).of(&self.action(step))),
        };
        if step.is_none() {
            let live = (plan.from.record.weight, plan.to.record.weight);
            if let Some(why) =
                rollback_raises(&self.cx.rb.rollout.to, live, weights, &plan.other_weights(&plan.record_type))
            {
                let refused = format!(
                    "rollback refused: {why}; the runbook's steps or initial weights changed since the saved \
                     state, or the weights were lowered by hand. Nothing sent; set the weights with `cutover \
                     shift` if they must move"
                );
                // Audited as every attempt is: an abort that moved nothing.
                self.audit(&self.action(None), Stage::Refused, Some(live), weights, refused.clone())?;
                return Err(SendError::Refused(refused));
            }
            // A rollback onto a side with nothing in service (old
            // production stopped, its targets deregistered) would send the
            // share it raises to 503s: worse than the failing step it undoes.
            // Not sent; a person decides. Only a sure refusal holds it back:
            // a side that cannot be read is rolled back onto, as a weight
            // change must stay possible in an emergency.
            match shift::raised_sides_serve(&self.cx.clients, &self.cx.rb, &plan, false).await {
                Ok(unchecked) => unchecked.iter().for_each(|line| (self.say)(line)),
                Err(super::PlanError::Refused(why)) => {
                    let refused = format!(
                        "rollback to {}/{} NOT sent: {why}. The weights stay {}/{}; once {} can serve again, \
                         `cutover abort` sends it; to move the traffic elsewhere, `cutover shift`",
                        weights.0, weights.1, live.0, live.1, self.cx.rb.rollout.from
                    );
                    self.audit(&self.action(None), Stage::Refused, Some(live), weights, refused.clone())?;
                    return Err(SendError::Refused(refused));
                }
                Err(e) => (self.say)(&format!(
                    "NOT CHECKED: whether {} can take the share this rollback raises ({e})",
                    self.cx.rb.rollout.from
                )),
            }
            self.rolled_back_from = Some(live);
        }
        // Weights changed by someone else since this rollout's last change
        // (the loop sees them during a soak; these came between its last
        // look and this step): the step is never planned over them.
        if step.is_some() && self.state.in_flight.is_none() {
            let applied = self.state.applied.unwrap_or(self.engine.plan.initial);
            // The first record type's pair, as every reading of the live
            // weights takes them; a group whose types weigh the sides
            // otherwise (an AAAA pair edited alone) is said first.
            let live = (plan.from.record.weight, plan.to.record.weight);
            let outside = match plan.types_differ() {
                Some(why) => Some(types_differ_pause(&why)),
                None => (live != applied).then(|| changed_outside(&self.cx.rb, live, applied)),
            };
            if let Some(outside) = outside {
                if let Err(lost) = self.lease.check() {
                    return Err(SendError::Failed(format!("{lost}; this process stops without sending anything more")));
                }
                let reason = format!("{}: not sent: {outside}", self.action(step));
                (self.say)(&reason);
                return self.paused_not_sent(reason);
            }
        }
        // A step onto a side with no target in service would send its share
        // to 503s for a whole soak before a gate could see it: paused for a
        // person before it is sent (`cutover rollout` resumes the step).
        if step.is_some() {
            match shift::raised_sides_serve(&self.cx.clients, &self.cx.rb, &plan, true).await {
                Ok(unchecked) => unchecked.iter().for_each(|line| (self.say)(line)),
                Err(e) => return self.paused_not_sent(format!("{}: not sent: {e}", self.action(step))),
            }
        }
        if plan.is_noop() && self.state.in_flight.is_none() {
            // Nothing in flight: these weights were seen INSYNC, or are the initial ones.
            let line = format!("{}: weights already {}/{}", self.action(step), weights.0, weights.1);
            (self.say)(&line);
            self.state.applied = Some(weights);
            let out = self.confirmed(step, "(already applied)");
            self.persist()?;
            return Ok(out);
        }
        // An abort asked for since the loop last looked (while this step was
        // planned and checked) comes before it: the step is not sent.
        if let Some(out) = self.abort_asked(step)? {
            return Ok(out);
        }
        // With a change still in flight, even the same weights are sent: this
        // change's INSYNC confirms that one's.
        let confirming = plan.is_noop().then_some("an earlier change is still in flight");
        self.send(&plan, step, confirming, false).await
    }

    /// Pauses for a step not sent, for `reason`. Never a step silently not
    /// sent: a phase that takes no pause stops the run.
    fn paused_not_sent(&mut self, reason: String) -> Result<Vec<Output>, SendError> {
        let out = pause_for(&mut self.engine, &reason);
        if self.engine.state.phase != RolloutPhase::Paused {
            return Err(SendError::Failed(reason));
        }
        Ok(out)
    }

    /// A forward step's abort asked for since the loop last looked: taken,
    /// and the engine's outputs for it (the rollback), so the step is not
    /// sent. None for a rollback or when none waits.
    fn abort_asked(&mut self, step: Option<usize>) -> Result<Option<Vec<Output>>, SendError> {
        // Only where the engine takes an abort (a forward step is Shifting):
        // a request taken and then ignored would be lost.
        let active =
            !matches!(self.engine.state.phase, RolloutPhase::Idle | RolloutPhase::Aborted | RolloutPhase::Done);
        if step.is_none() || !active {
            return Ok(None);
        }
        let asked = Request::Abort.take_one(&self.cx.rb.name).map_err(|e| {
            SendError::Failed(format!("{}: not sent: cannot tell whether an abort waits ({e})", self.action(step)))
        })?;
        let Some(RequestNote { text, .. }) = asked else { return Ok(None) };
        let line = format!("{}: not sent: an abort was asked for", self.action(step));
        (self.say)(&line);
        Ok(Some(self.engine.handle(Input::Abort { reason: text.trim().to_string() }, SystemTime::now())))
    }

    /// Rolls back to `weights`, sending the change again while it is not
    /// taken (throttled, Route53 not reached): the traffic must come back.
    /// Each attempt is planned from the live records, fenced and audited as
    /// any send; a failure of another kind ends the run at once.
    async fn roll_back(&mut self, weights: Weights) -> Result<Vec<Output>, RolloutError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_secs(2);
        loop {
            match self.set_weights(weights, None).await {
                Ok(out) => return Ok(out),
                Err(SendError::NotTaken(why)) if started.elapsed() + pause < ROLLBACK_RETRY_FOR => {
                    (self.say)(&format!("{why}; sending it again in {} s", pause.as_secs()));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                Err(SendError::NotTaken(why)) => {
                    return Err(failed(format!(
                        "{why}; the rollback was sent again for {} s and never taken: roll back by hand (`cutover abort` again, or `cutover shift`)",
                        started.elapsed().as_secs()
                    )));
                }
                Err(SendError::Refused(why)) => return Err(RolloutError::Refused(why)),
                Err(e) => return Err(failed(e.into())),
            }
        }
    }

    fn action(&self, step: Option<usize>) -> String {
        let steps = &self.engine.plan.steps;
        match step {
            Some(s) => match steps.get(s) {
                Some(percent) => format!("rollout step {}/{} ({percent}%)", s + 1, steps.len()),
                // Sent under steps the runbook no longer has (an abort after it changed).
                None => format!("rollout step {} (of an earlier plan)", s + 1),
            },
            None => "rollout abort".to_string(),
        }
    }

    /// What the audit calls the batch `flight` sends.
    fn flight_action(&self, flight: &InFlight) -> String {
        if flight.adopted && flight.step.is_none() { ADOPTION.to_string() } else { self.action(flight.step) }
    }

    /// Feeds the engine a step's change as applied and INSYNC, as far as its
    /// phase still waits for them.
    fn confirmed(&mut self, step: Option<usize>, change: &str) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(s) = step else { return out };
        if self.engine.state.step != s {
            return out;
        }
        if self.engine.state.phase == RolloutPhase::Shifting {
            out.extend(
                self.engine.handle(Input::ShiftApplied { step: s, change_id: change.into() }, SystemTime::now()),
            );
        }
        if self.engine.state.phase == RolloutPhase::WaitingInsync {
            out.extend(self.engine.handle(Input::InSync { step: s }, SystemTime::now()));
        }
        out
    }

    /// Sends `plan` and waits for INSYNC. `confirming` (why) sends it even
    /// when it changes nothing: its INSYNC proves an earlier change whose id
    /// was lost has reached every Route53 server (a zone's changes apply in order).
    ///
    /// The order of writes, and why a crash (kill -9) in each window is safe:
    /// 1. audit `intent`. Crash: nothing sent, state as before; the next run sends again.
    /// 2. state: `in_flight` (weights, no change id). Crash: the next run reads
    ///    the live weights: the old ones, nothing was sent (audited `failed`,
    ///    then sent again); the new ones, it was sent, and a confirming change
    ///    is sent and waited for (`reconcile`).
    /// 3. the lease checked again (a stall since the fence), then
    ///    ChangeResourceRecordSets. Crash: as 2; the id is lost, the live weights tell.
    ///    An error or no reply: the records are read back (a step's again
    ///    while unchanged, up to 30 s: a timed-out call may land late); the
    ///    new weights live, `in_flight` stays (as a crash here); a call with
    ///    no reply (timed out) read back unchanged stays too, as it may
    ///    still land: the next run confirms it or sends it again; else it is
    ///    cleared (an earlier change taken into this send stays) and the run
    ///    ends with what is live (someone else's change is never
    ///    overwritten). A rollback not taken (`not_sent`) is sent again by
    ///    `roll_back`.
    /// 4. audit `applied` with the change id. Crash: as 2.
    /// 5. state: `in_flight` with the change id, `applied`, engine ShiftApplied.
    ///    Crash: the next run waits for that change's INSYNC and audits it.
    /// 6. GetChange until INSYNC, then audit `insync`. Crash: as 5; an
    ///    `insync` line already written is not written twice.
    /// 7. state: no `in_flight`, engine InSync.
    async fn send(
        &mut self,
        plan: &ShiftPlan,
        step: Option<usize>,
        confirming: Option<&str>,
        adopted: bool,
    ) -> Result<Vec<Output>, SendError> {
        let weights = plan.weights;
        // Confirming a send of its own whose id was lost (a crash after it),
        // or one that timed out and may have landed behind an earlier change
        // (`may_land`), its lines keep what that send moved away from: the fresh plan's
        // records already hold these weights, and a share taken would else
        // not be on record. Weights adopted from outside keep the plan's.
        let ours = |f: &&InFlight| !f.adopted && f.step == step && f.weights == weights;
        let resent = confirming.and_then(|_| {
            let unsent = self.state.in_flight.as_ref().filter(|f| f.change.is_none()).filter(ours);
            unsent.or(self.state.may_land.as_ref().filter(ours))
        });
        let (before, before_by_type) = match resent {
            Some(f) => (f.before, f.before_by_type.clone()),
            // Each type's where they differ: a share taken on AAAA alone is on record.
            None => ((plan.from.record.weight, plan.to.record.weight), plan.before_by_type()),
        };
        let flight = |change: Option<String>| InFlight {
            before,
            before_by_type: before_by_type.clone(),
            weights,
            step,
            change,
            adopted,
        };
        let action = self.flight_action(&flight(None));
        let before_json = self.before_of(&flight(None));
        let point = if step.is_some() { "step" } else { "rollback" };
        let what = match confirming {
            Some(why) => format!("{} (confirming: {why})", plan.describe()),
            None => plan.describe(),
        };
        // An abort does not wait for an earlier step's change: its own INSYNC,
        // applied after that one, confirms both.
        // Fencing: a holder that lost its lease (taken over after it stalled)
        // learns it here, before writing or sending anything, and stops.
        self.lease.fence().map_err(|why| format!("{action}: not sent: {why}; stopping"))?;
        crate::crashpoint::here(&format!("{point}:fenced"));
        // Read before this send's intent is written (it looks for the latest
        // intent), and kept in the state should the intent not be written.
        let earlier = self.state.in_flight.clone().and_then(|mut f| {
            f.change = f.change.clone().or_else(|| self.recorded_change(&f));
            f.change.is_some().then_some(f)
        });
        // Nothing is sent without its intent on record; a store that fails
        // for a while (S3 SlowDown) leaves nothing live, so a rollback is
        // tried again rather than dropped.
        self.audit_weighed(&action, Stage::Intent, before_json.clone(), weights, what.clone())
            .map_err(|e| SendError::NotTaken(format!("{action}: not sent: its intent could not be audited ({e})")))?;
        crate::crashpoint::here(&format!("{point}:after-intent"));
        self.state.in_flight = Some(flight(None));
        // Its intent is on record: so is why it was not sent.
        if let Err(why) = self.persist() {
            let _ =
                self.audit_weighed(&action, Stage::Failed, before_json.clone(), weights, format!("not sent: {why}"));
            return Err(SendError::Failed(format!("{action}: not sent: {why}")));
        }
        crate::crashpoint::here(&format!("{point}:after-in-flight-write"));
        // Fenced again right before the send: the writes above may have
        // stalled (a slow store, this process stopped) past the lease, and
        // Route53's DELETE match misses a taker's weights that came back to
        // the ones this holder read (its abort of this very step).
        if let Err(why) = self.lease.check() {
            let _ =
                self.audit_weighed(&action, Stage::Failed, before_json.clone(), weights, format!("not sent: {why}"));
            return Err(SendError::Failed(format!("{action}: not sent: {why}; stopping")));
        }
        if step.is_some() {
            self.shifted_at = Some(SystemTime::now());
        }
        let change = match shift::apply(self.cx.clients.dns(), &self.cx.actor, plan).await {
            Ok(c) => {
                self.state.may_land = None;
                c
            }
            Err(e) => {
                // A rollback changing nothing (confirming) reads back as live
                // whatever became of it: a throttled or timed-out one is sent again.
                let back = if step.is_none() && confirming.is_some() && e.is_transient() {
                    shift::ReadBack::Unchanged
                } else if step.is_some() {
                    // Read again while unchanged, as `cutover shift` does: a
                    // step whose call timed out may land a moment later.
                    shift::read_back_after(self.cx.clients.dns(), &self.cx.rb, plan, &e).await
                } else {
                    // A rollback is sent again within seconds (`roll_back`),
                    // kept in flight while it may land: read once.
                    shift::read_back(self.cx.clients.dns(), &self.cx.rb, plan).await
                };
                let ours = flight(None);
                return Err(self.not_sent(&action, e, back, (ours, confirming.is_some()), earlier));
            }
        };
        crate::crashpoint::here(&format!("{point}:after-send"));
        // Sent: whatever the audit log does now, the change stands; it is
        // waited for and said so, and the run stops after it if unrecorded.
        let unrecorded = self
            .audit_change(&action, Stage::Applied, (before_json, weights), &change, format!("change {change}"))
            .err();
        crate::crashpoint::here(&format!("{point}:after-applied-audit"));
        self.state.applied = Some(weights);
        self.state.in_flight = Some(flight(Some(change.clone())));
        let mut out = Vec::new();
        if let Some(s) = step
            && self.engine.state.phase == RolloutPhase::Shifting
        {
            out.extend(
                self.engine.handle(Input::ShiftApplied { step: s, change_id: change.clone() }, SystemTime::now()),
            );
        }
        let live = |e: String| SendError::Failed(format!("{action}: {what} is live as {change}; {e}"));
        self.persist().map_err(live)?;
        crate::crashpoint::here(&format!("{point}:after-state-write"));
        (self.say)(&format!("{action}: {what} sent as {change}"));
        match self.await_insync(&change, step).await.map_err(live)? {
            Some(more) => out.extend(more),
            None => (self.say)(&format!("{action}: abort asked for while waiting for INSYNC")),
        }
        if let Some(e) = unrecorded {
            return Err(SendError::Failed(format!(
                "{action}: {what} is live as {change}, but the audit log could not record it ({e}); stopping: note it by hand"
            )));
        }
        if let Some(f @ InFlight { change: Some(c), .. }) = &earlier
            && !self.insync_audited(c)
        {
            let detail = format!("change {c} INSYNC (the later change {change} applied after it is INSYNC)");
            self.audit_insync(f, c, detail)?;
        }
        Ok(out)
    }

    /// A send that failed (window 3 of `send`), as read back: what stays in
    /// flight, the audit line, and whether it may be sent again.
    fn not_sent(
        &mut self,
        action: &str,
        e: crate::aws::AwsError,
        back: shift::ReadBack,
        (ours, confirming): (InFlight, bool),
        earlier: Option<InFlight>,
    ) -> SendError {
        let (before, weights) = (self.before_of(&ours), ours.weights);
        if let shift::ReadBack::Live = back {
            // Applied, its reply lost: in flight with no change id, as after
            // a crash in window 3; the next run (a rollback: its next send)
            // confirms it. A rollback's error may be of any kind here: the
            // SDK's retry of a change that landed is refused (InvalidChangeBatch).
            let detail = shift::failed_send_message(&e, &back);
            let _ = self.audit_weighed(action, Stage::Applied, before, weights, format!("{detail}; change id unknown"));
            if ours.step.is_none() && (e.is_transient() || !confirming) {
                return SendError::NotTaken(format!("{action}: {detail}; it is confirmed by sending it again"));
            }
            return SendError::Failed(format!(
                "{action}: {detail}; run `cutover rollout` again: it confirms the change (INSYNC) and carries on"
            ));
        }
        let taken_again =
            matches!(back, shift::ReadBack::Unchanged | shift::ReadBack::Unreadable(_)) && e.is_transient();
        // Not applied, or someone else's change is live: an earlier change
        // taken into this send stays in flight for its INSYNC. A send that
        // timed out (or a rollback that confirmed nothing) may still land:
        // kept in flight with no id, so the next run (a rollback: its next
        // send) confirms it if it did, and sends it again if it did not.
        let may_land = e.kind == crate::aws::AwsErrorKind::Unreachable || confirming;
        let kept = taken_again && may_land;
        let step = ours.step;
        // Kept behind an earlier change, it is saved beside it: confirmed
        // later (by this run or, after a crash, the next), its lines must
        // still say what it moved from.
        self.state.may_land = (kept && earlier.is_some()).then(|| ours.clone());
        self.state.in_flight = if kept { earlier.or(Some(ours)) } else { earlier };
        let saved = self.persist();
        let mut message = shift::failed_send_message(&e, &back);
        if kept && step.is_some() {
            message.push_str("; kept in flight: `cutover rollout` confirms it if it landed, or sends it again");
        }
        let _ = self.audit_weighed(action, Stage::Failed, before, weights, message.clone());
        let message = format!("{action}: {message}");
        match saved {
            Err(why) => SendError::Failed(format!("{message}; {why}")),
            Ok(()) if taken_again => SendError::NotTaken(message),
            Ok(()) => SendError::Failed(message),
        }
    }

    /// Steps 6 and 7 of `send`: None when an abort cut a forward step's wait short.
    async fn await_insync(&mut self, change: &str, step: Option<usize>) -> Result<Option<Vec<Output>>, String> {
        let point = if step.is_some() { "step" } else { "rollback" };
        // A forward step's wait gives way to an abort; a rollback's does not.
        let name = self.cx.rb.name.clone();
        let first_poll = std::sync::atomic::AtomicBool::new(true);
        let interrupt = move || {
            // Once per wait, so `@N` counts changes, not polls.
            if first_poll.swap(false, std::sync::atomic::Ordering::SeqCst) {
                crate::crashpoint::here(&format!("{point}:during-insync"));
            }
            step.is_some() && Request::Abort.waiting(&name).ok().flatten().is_some()
        };
        let took =
            match shift::wait_insync_or(self.cx.clients.dns(), change, Duration::from_secs(300), &interrupt).await? {
                shift::Waited::InSync(took) => took,
                shift::Waited::Interrupted => return Ok(None),
            };
        if let Some(f) = self.state.in_flight.clone()
            && !self.insync_audited(change)
        {
            let detail = format!("change {change} INSYNC after {:.1} s", took.as_secs_f64());
            self.audit_insync(&f, change, detail)?;
        }
        crate::crashpoint::here(&format!("{point}:after-insync-audit"));
        self.state.in_flight = None;
        let out = self.confirmed(step, change);
        self.persist()?;
        Ok(Some(out))
    }

    /// The id of an in-flight change whose `applied` line reached the audit
    /// but whose state write did not (a crash between steps 4 and 5 of `send`).
    fn recorded_change(&self, flight: &InFlight) -> Option<String> {
        let action = self.flight_action(flight);
        let lines = self.log.read().ok()?;
        let last_intent = lines.iter().rposition(|l| l.action == action && l.stage == Stage::Intent)?;
        let (from, to) = (&self.cx.rb.rollout.from, &self.cx.rb.rollout.to);
        let after = serde_json::json!({ from: flight.weights.0, to: flight.weights.1 });
        lines[last_intent..]
            .iter()
            .find(|l| l.action == action && l.stage == Stage::Applied && l.after == after)
            .and_then(|l| l.change.clone())
    }

    /// Whether the audit already holds this change's `insync` line (a crash
    /// between writing it and the state).
    /// Looked for after the change's latest `applied` line only: an id may
    /// come back again (moto gives every change the same one).
    fn insync_audited(&self, change: &str) -> bool {
        let ours = |l: &AuditLine, stage: Stage| l.stage == stage && l.change.as_deref() == Some(change);
        let Ok(lines) = self.log.read() else { return false };
        let since = lines.iter().rposition(|l| ours(l, Stage::Applied)).map_or(0, |i| i + 1);
        lines[since..].iter().any(|l| ours(l, Stage::InSync))
    }

    /// Sends the in-flight weights again and waits for that change's INSYNC:
    /// Route53 applies a zone's changes in order, so it confirms the earlier one.
    async fn confirm_by_resending(&mut self, flight: &InFlight, why: &str) -> Result<Vec<Output>, String> {
        self.state.in_flight = Some(InFlight { change: None, ..flight.clone() });
        let plan = shift::plan(self.cx.clients.dns(), &self.cx.rb, flight.weights).await.map_err(|e| e.to_string())?;
        Ok(self.send(&plan, flight.step, Some(why), flight.adopted).await?)
    }

    /// Settles a change an earlier run left in flight, before anything else
    /// is decided from the live weights (see `send` for each window).
    /// `live` is what Route53 holds now; returns the engine's outputs.
    async fn reconcile(&mut self, live: Weights) -> Result<Vec<Output>, String> {
        let Some(mut flight) = self.state.in_flight.clone() else { return Ok(Vec::new()) };
        let action = self.flight_action(&flight);
        if flight.change.is_none() {
            flight.change = self.recorded_change(&flight);
            self.state.in_flight = Some(flight.clone());
        }
        // A rollback of cutover's own (not weights adopted) that reached Route53.
        let rollback = flight.step.is_none() && !flight.adopted;
        if let Some(change) = &flight.change {
            self.rollback_confirmed = rollback;
            (self.say)(&format!("{action}: confirming change {change}, sent before an interruption"));
            self.state.applied = Some(flight.weights);
            return Ok(self.await_insync(change, flight.step).await?.unwrap_or_default());
        }
        let previous = self.state.applied.unwrap_or(self.engine.plan.initial);
        if live == flight.weights {
            (self.say)(&format!(
                "{action}: {}/{} is live but its change was never recorded (interrupted after sending); sending a confirming change",
                live.0, live.1
            ));
            self.rollback_confirmed = rollback;
            return self.confirm_by_resending(&flight, "the first send's change id was lost to an interruption").await;
        }
        if live == previous {
            // Interrupted before the send, or sent with no answer and never applied.
            let detail = "an earlier run's send never took effect (interrupted before Route53 accepted it, or its \
                          call got no answer and it was not applied); the weights are unchanged"
                .to_string();
            self.audit(&action, Stage::Failed, Some(live), flight.weights, detail)?;
            self.state.in_flight = None;
            self.persist()?;
            (self.say)(&format!("{action}: an earlier run's send of it never took effect; it is sent again"));
        }
        // Anything else: someone changed the weights; the live-weights check decides.
        Ok(Vec::new())
    }
}

/// The runbook's lease for `purpose`: a second holder is refused (exit 2)
/// naming the first; an unreadable shared state refuses too.
pub fn take_lease(
    rb: &Runbook,
    purpose: &str,
    take_over: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Lease, RolloutError> {
    let duration = crate::store::lease::duration_for(rb);
    // A take-over watches the lease for a whole lease: off the async threads.
    crate::store::off_async(|| crate::store::lease::acquire(&rb.name, purpose, duration, take_over, say)).map_err(|e| {
        match e {
            Refusal::Locked(m) => failed(format!("another cutover rollout of {} is running: {m}", rb.name)),
            e => RolloutError::Refused(format!("refused: {e}; nothing was changed")),
        }
    })
}

/// The live weights (from, to), read from Route53: the first record type's.
pub async fn live_weights(clients: &Clients, rb: &Runbook) -> Result<Weights, String> {
    Ok(live_reading(clients, rb).await?.0)
}

/// The live weights, as `live_weights`, with how the group's record types
/// (A and AAAA) weigh the sides differently, if they do, from one reading.
async fn live_reading(clients: &Clients, rb: &Runbook) -> Result<(Weights, Option<String>), String> {
    let p = shift::plan(clients, rb, (0, 0)).await?;
    Ok(((p.from.record.weight, p.to.record.weight), p.types_differ()))
}

/// What a step waits after INSYNC: resolvers hold the answers whose share
/// it lowers for the TTL their live records carry (an alias's: its target's
/// 60 s), so the larger of that and the runbook's `ttl`.
/// Returns the wait and the words for it.
pub fn step_ttl(runbook: u32, live: Option<u32>) -> (Duration, String) {
    match live {
        Some(l) if l > runbook => (
            Duration::from_secs(u64::from(l)),
            format!("TTL {l} s (the live records' TTL; the runbook says {runbook} s)"),
        ),
        _ => (Duration::from_secs(u64::from(runbook)), format!("TTL {runbook} s")),
    }
}

/// The live TTL of the records a step may lower (every one but the `to`
/// side's), an alias's counted as its target's (None: unreadable: the first
/// read of the rollout reports that).
async fn live_ttl(clients: &Clients, rb: &Runbook) -> Option<u32> {
    shift::plan(clients, rb, (0, 0)).await.ok().and_then(|p| p.lowered_ttl())
}

/// What a step's change takes to be INSYNC, at least, for the shortest
/// duration of a rollout (Route53 usually propagates within a minute).
pub const INSYNC_ALLOWANCE: Duration = Duration::from_secs(30);

/// The shortest a rollout can take: steps × (INSYNC + TTL + soak), the last
/// step's soak being its bake when that is longer.
pub fn shortest_duration(rb: &Runbook) -> Duration {
    let per_step =
        INSYNC_ALLOWANCE + Duration::from_secs(u64::from(rb.dns.ttl)) + rb.rollout.soak + rb.rollout.alarm_lag();
    per_step * rb.rollout.steps.len() as u32 + rb.rollout.bake.saturating_sub(rb.rollout.soak)
}

/// Refuses a rollout that would outlast credentials nothing can refresh
/// (keys in the environment with an expiry): it would stop halfway.
pub fn credentials_outlast(rb: &Runbook, clients: &SideClients, now: SystemTime) -> Result<(), String> {
    if let Some(e) = rb.sides().iter().find_map(|s| clients.side(s).fixed_keys.as_ref()?.unreadable_expiry.clone()) {
        return Err(format!(
            "refused: the credentials in the environment (AWS_ACCESS_KEY_ID) cannot be refreshed and when they expire \
             is unknown: {e}; give it as RFC 3339 (2026-12-05T18:00:00Z), unset it for keys that never expire, or use \
             refreshable credentials (--profile); nothing was changed"
        ));
    }
    let fixed: Vec<(crate::runbook::Side, SystemTime)> = rb
        .sides()
        .into_iter()
        .filter_map(|s| {
            let at = clients.side(&s).fixed_keys.as_ref()?.expires_at?;
            Some((s, at))
        })
        .collect();
    let Some(at) = fixed.iter().map(|(_, at)| *at).min() else { return Ok(()) };
    let need = shortest_duration(rb);
    let left = at.duration_since(now).unwrap_or_default();
    if left >= need {
        return Ok(());
    }
    let fmt = crate::runbook::duration::format_duration;
    let sides: Vec<String> = fixed.iter().map(|(s, _)| s.to_string()).collect();
    Err(format!(
        "refused: the rollout takes at least {} ({} steps × (INSYNC ~{} + TTL {} s + soak {}{}){}) but the credentials in the environment (AWS_ACCESS_KEY_ID, used for {}) expire in {} ({}) and cannot be refreshed; use refreshable credentials (a profile with SSO, credential_process or a role: --profile, or `profile` per side), or get keys that last longer; nothing was changed",
        fmt(need),
        rb.rollout.steps.len(),
        fmt(INSYNC_ALLOWANCE),
        rb.dns.ttl,
        fmt(rb.rollout.soak),
        match rb.rollout.alarm_lag() {
            lag if lag.is_zero() => String::new(),
            lag => format!(" + the alarms' lag {}", fmt(lag)),
        },
        if rb.rollout.bake > rb.rollout.soak {
            format!(", the last baking {}", fmt(rb.rollout.bake))
        } else {
            String::new()
        },
        sides.join(", "),
        fmt(Duration::from_secs(left.as_secs())),
        aws_smithy_types::DateTime::from(at).fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_default()
    ))
}

/// The words to pause on when a side's credentials have expired (AWS
/// answers ExpiredToken): AWS is up, the credentials need renewing. Each
/// side is asked for 3 s at most: an AWS that does not answer is not an
/// expiry, and must not hold the rollout up.
async fn expired_credentials(rb: &Runbook, clients: &SideClients) -> Option<String> {
    let sides = rb.sides();
    for (clients, idx) in clients.group(&sides) {
        let asked = tokio::time::timeout(Duration::from_secs(3), crate::aws::sts::identity(clients)).await;
        if let Ok(Err(e)) = asked
            && e.kind == crate::aws::AwsErrorKind::Expired
        {
            let names: Vec<String> = idx.iter().map(|&i| sides[i].to_string()).collect();
            return Some(format!(
                "the credentials of {} expired ({e}); AWS itself answers. Get fresh credentials (or refreshable ones: SSO, credential_process, a role profile), then run `cutover rollout` to resume, or `cutover abort` to roll back",
                names.join(", ")
            ));
        }
    }
    None
}

/// Stops a task when dropped (on every way out of the rollout loop).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Pauses the engine for `reason` (a pause from a phase that cannot pause
/// says nothing).
/// Why the live weights, read after `since`, are not the ones this rollout
/// applied, if they are not (nothing in flight).
fn weights_moved_outside(runner: &Runner<'_>, live: &crate::live::LiveState, since: SystemTime) -> Option<String> {
    let applied = runner.state.applied?;
    if runner.state.in_flight.is_some() || live.traffic.updated_at? <= since {
        return None;
    }
    let traffic = live.traffic.value.as_ref()?;
    let rb = &runner.cx.rb;
    // The pair read is the first type's: another type moved is a change too.
    if let Some(why) = &traffic.types_differ {
        return Some(types_differ_pause(why));
    }
    let sides = &traffic.sides;
    let weight = |env: &str| sides.iter().find(|s| s.is(env)).map(|s| s.weight);
    let (from, to) = (weight(&rb.rollout.from)?, weight(&rb.rollout.to)?);
    // A record gone is a change outside this rollout too: no rollback can be
    // planned over it, so it pauses for a person rather than fail a gate.
    let (Some(from), Some(to)) = (from, to) else {
        let gone = if from.is_none() { &rb.rollout.from } else { &rb.rollout.to };
        return Some(format!(
            "{gone}'s weighted record was removed from Route53 outside this rollout; paused, nothing sent (put it \
             back, then run the rollout again, or abort)"
        ));
    };
    let seen = (from, to);
    (seen != applied).then(|| changed_outside(rb, seen, applied))
}

/// A dual-stack group split otherwise by type (`why`): what a person may do.
fn types_differ_pause(why: &str) -> String {
    format!(
        "{why}; paused, nothing sent (set every type alike with `cutover shift`, which sets them together, then run \
         the rollout again; or abort)"
    )
}

/// Weights `live` that are not the `applied` ones this rollout set: what
/// happened and what a person may do.
fn changed_outside(rb: &Runbook, live: Weights, applied: Weights) -> String {
    format!(
        "the weights were changed outside this rollout: {}/{} live ({} / {}), {}/{} applied by it; paused, nothing \
         sent (run the rollout again to adopt or refuse them, or abort)",
        live.0, live.1, rb.rollout.from, rb.rollout.to, applied.0, applied.1
    )
}

/// Why a rollback from `live` to `target` is refused, if it is: it would
/// give the new side `to` a larger share of the traffic. A rollback's step
/// read against a runbook whose steps changed, or weights lowered by hand
/// since, would. Shares, not weights: 255/30 gives less than 75/25, and
/// 0/0 is an equal split to Route53.
pub fn rollback_raises(to: &str, live: Weights, target: Weights, others: &[u8]) -> Option<String> {
    let share = |w: Weights| crate::analysis::weights::shares(&[[w.0, w.1].as_slice(), others].concat())[1] * 100.0;
    shift::raises_share(live, target, others).1.then(|| {
        format!(
            "it would raise {to}'s share of the traffic from {:.1}% (live {}/{}) to {:.1}% ({}/{})",
            share(live),
            live.0,
            live.1,
            share(target),
            target.0,
            target.1
        )
    })
}

fn pause_for(engine: &mut Engine, reason: &str) -> Vec<Output> {
    let outputs = engine.handle(Input::Pause, SystemTime::now());
    if engine.state.phase == RolloutPhase::Paused {
        engine.state.reason = Some(reason.to_string());
    }
    outputs
        .into_iter()
        .map(|o| match o {
            Output::Paused(_) => Output::Paused(reason.to_string()),
            o => o,
        })
        .collect()
}

pub async fn run(cx: &Context, say: &mut (dyn FnMut(&str) + Send)) -> Result<Outcome, RolloutError> {
    let rb = &cx.rb;
    let Some(Begun { mut runner, mut outputs, live, expected }) = begin(cx, say).await? else {
        return Ok(Outcome::Done);
    };
    let mut ctx = WorkerContext::new(rb.clone(), cx.clients.clone(), ProbePolicy::from_env());
    ctx.vars.extend(cx.vars.clone());
    ctx.use_shared_readings = false;
    ctx.intervals.traffic = Duration::from_secs(2);
    ctx.intervals.environment = Duration::from_secs(3);
    ctx.intervals.health = Duration::from_secs(2);
    ctx.intervals.redis = Duration::from_secs(2);
    ctx.intervals.alarms = rb.rollout.gate_interval.min(Duration::from_secs(15));
    let mut session = Session::start(Arc::new(ctx));
    session.first_round(rb, Duration::from_secs(30)).await;

    let now = SystemTime::now;
    // Live weights taken over (--adopt-live with weights other than the
    // expected ones) stand in for an interrupted rollback; else it is finished.
    let adopted = cx.adopt_live && live != expected;
    // A soak this process resumes afresh: an ALARM while no one read the
    // alarms (since the interrupted run last saved its soak) counts against it.
    let interrupted_soak = runner.engine.state.phase.soaking_since().map(|since| {
        let saved = crate::time::parse_rfc3339(&runner.state.updated_at);
        saved.map_or(since, |t| t.max(since))
    });
    // A step whose weights stood live through a pause, not judged since (a
    // run resumed and interrupted before its gates read the alarms counts
    // too): an ALARM then, which no reading saw, counts against the step.
    let paused = match (runner.engine.state.phase, runner.engine.state.paused_from.as_deref()) {
        // Paused before the step's weights were sent: the step before's stood.
        (RolloutPhase::Paused, Some(RolloutPhase::Shifting) | None) => None,
        _ => runner.engine.state.paused_at.map(|at| (runner.engine.state.step, at)),
    };
    if let Some(outcome) = before_the_loop(&mut runner, live, adopted, &mut outputs).await? {
        return Ok(outcome);
    }
    runner.persist().map_err(failed)?;
    // Begun or resumed and saved so, before any gate has read anything.
    crate::crashpoint::here("rollout:begun");
    let mut last_measured: Vec<Option<SystemTime>> = vec![None; rb.rollout.gates.len()];
    let mut last_reading: Vec<Option<SystemTime>> = vec![None; rb.rollout.gates.len()];
    let mut hit_baselines = HitBaselines::default();
    let mut episodes = Episodes {
        resumed: interrupted_soak.zip(runner.engine.state.phase.soaking_since()).map(|(old, new)| (new, old)),
        paused,
        ..Default::default()
    };
    let mut quiet = std::collections::BTreeSet::new();
    // A watcher asks every 5 s, beside the loop, whether a side's
    // credentials expired.
    let (expired_tx, expired_rx) = tokio::sync::watch::channel(None::<String>);
    let watcher = {
        let (rb, clients) = (rb.clone(), cx.clients.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if let Some(reason) = expired_credentials(&rb, &clients).await {
                    let _ = expired_tx.send(Some(reason));
                }
            }
        })
    };
    let _stop_watcher = AbortOnDrop(watcher);
    loop {
        if let Some(outcome) = carry_out(&mut runner, &mut outputs, expected, &mut quiet).await? {
            return Ok(outcome);
        }
        session.run_until(tokio::time::Instant::now() + Duration::from_secs(1)).await;
        if let Some(why) = runner.lease.lost() {
            return Err(failed(format!("{why}; this process stops without sending anything more")));
        }
        let taken = match Request::take(&rb.name) {
            Ok(t) => t,
            Err(e) => {
                // An abort may be waiting unseen: nothing moves on this round.
                (runner.say)(&format!("cannot read the requests ({e}); holding until they can be read"));
                continue;
            }
        };
        if let Some((request, note)) = taken {
            let stale = stale_promote(&note, &runner.engine.state);
            let text = note.text;
            outputs = match request {
                Request::Abort => runner.engine.handle(Input::Abort { reason: text }, now()),
                Request::Pause => {
                    (runner.say)(&format!("pause asked for: {text}"));
                    runner.engine.handle(Input::Pause, now())
                }
                // Confirmed for a step that has since passed: the step now
                // running was never shown, and its gates are not skipped.
                Request::Promote if let Some(stale) = stale => {
                    let why = format!("promote ignored: {stale} ({text})");
                    (runner.say)(&why);
                    let w = runner.engine.plan.weights_at(runner.engine.state.step);
                    runner.audit("rollout promote", Stage::Refused, Some(w), w, why).map_err(failed)?;
                    Vec::new()
                }
                Request::Promote => {
                    let step = runner.engine.state.step;
                    let out = runner.engine.handle(Input::Promote, now());
                    if runner.engine.state.step != step || runner.engine.state.phase == RolloutPhase::Done {
                        let w = runner.engine.plan.weights_at(step);
                        let detail = format!("step {} promoted (rest of its soak skipped): {text}", step + 1);
                        runner.audit("rollout promote", Stage::Done, Some(w), w, detail).map_err(failed)?;
                    }
                    out
                }
            };
            runner.persist().map_err(failed)?;
            continue;
        }
        // Credentials that expired pause the rollout for a person, with that
        // reason: never an abort, never "AWS is down".
        let expired = expired_rx.borrow().clone();
        if let Some(reason) = expired {
            outputs = pause_for(&mut runner.engine, &reason);
            if !outputs.is_empty() {
                continue;
            }
        }
        // Weights moved by someone else (a colleague's abort without team
        // mode, the console) leave this step unmeasured and must never be
        // overwritten blind: pause for a person; the next run adopts or
        // refuses them.
        if let RolloutPhase::Soaking { since, .. } = runner.engine.state.phase
            && let Some(why) = weights_moved_outside(&runner, &session.state, since)
        {
            // Moved by the holder that took this lease over while this
            // process stood still: it stops, as any fenced-off holder does.
            if let Err(lost) = runner.lease.check() {
                return Err(failed(format!("{lost}; this process stops without sending anything more")));
            }
            (runner.say)(&why);
            outputs = pause_for(&mut runner.engine, &why);
            runner.persist().map_err(failed)?;
            continue;
        }
        outputs = runner.engine.handle(Input::Tick, now());
        if let RolloutPhase::Soaking { since, .. } = runner.engine.state.phase {
            let mut kept = Kept {
                last_measured: &mut last_measured,
                last_reading: &mut last_reading,
                hit_baselines: &mut hit_baselines,
                episodes: &mut episodes,
            };
            let more = measure_gates(&mut runner, &session, since, &mut kept).await;
            outputs.extend(more);
            runner.persist().map_err(failed)?;
            crate::crashpoint::here("soak");
        } else if !outputs.is_empty() {
            runner.persist().map_err(failed)?;
        }
    }
}

/// What `begin` hands the loop: the runner, what it must do first, the live
/// weights and the weights the rollout expects live.
struct Begun<'a> {
    runner: Runner<'a>,
    outputs: Vec<Output>,
    live: Weights,
    expected: Weights,
}

/// Whether the history of each alarm an `alarm_ok` gate reads can be read:
/// without it an ALARM between two readings goes unseen, and the gate
/// stops at the first state change of the soak (found out then, mid-step).
async fn alarm_history_readable(rb: &Runbook, clients: &SideClients) -> Result<(), String> {
    let mut names: Vec<&String> = rb
        .rollout
        .gates
        .iter()
        .flat_map(|g| match &g.kind {
            crate::runbook::GateKind::AlarmOk { alarms, .. } => alarms.as_slice(),
            _ => &[],
        })
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        if let Err(e) = crate::aws::cloudwatch::state_changes_by_side(clients, rb, name, SystemTime::now()).await {
            return Err(format!(
                "refused: the history of alarm {name} cannot be read ({e}); an alarm_ok gate reads it to find an \
                 ALARM between two readings: grant cloudwatch:DescribeAlarmHistory on all alarms (\"*\") to the \
                 credentials that read it; nothing was sent"
            ));
        }
    }
    Ok(())
}

/// Whether this machine's clock is near enough AWS's for the gates: by the
/// latest answer from AWS, or a fresh one when none came yet.
async fn clock_agrees(clients: &SideClients) -> Result<(), String> {
    if clients.clock_differs().is_none() && clients.clock_read().is_none() {
        // Only to read AWS's clock: an error leaves it unread, said below.
        let _ = crate::aws::sts::identity(clients.runbook()).await;
    }
    if let Some(why) = clients.clock_differs() {
        return Err(format!("refused: {why}; nothing was sent"));
    }
    if clients.clock_read().is_none() {
        return Err(format!(
            "refused: AWS's clock cannot be read (its answers carried no Date header, or STS did not answer): the \
             gates judge AWS's datapoints over soaks timed by this machine's clock, which must be within {} s of \
             AWS's; nothing was sent",
            crate::aws::CLOCK_SKEW_ALLOWED.as_secs()
        ));
    }
    Ok(())
}

/// A start refused, audited as every attempt is (a lease another holds is
/// said by `take_lease`, not audited: another run is no attempt of this one's).
fn refused_start(cx: &Context, why: String) -> RolloutError {
    let line =
        cx.actor.audit_line(&cx.rb.name, "rollout start".into(), Stage::Refused, Default::default(), why.clone());
    match AuditLog::for_runbook(&cx.rb.name).append(&line) {
        Ok(()) => RolloutError::Refused(why),
        Err(e) => failed(format!("{why} (and the refusal could not be audited: {e})")),
    }
}

/// The lock, the plan with the live TTL, the saved state (or a new one), a
/// change an earlier run left in flight settled, and live weights set
/// outside the rollout adopted (or refused); None when the rollout is
/// already complete.
async fn begin<'a>(cx: &'a Context, say: &'a mut (dyn FnMut(&str) + Send)) -> Result<Option<Begun<'a>>, RolloutError> {
    let rb = &cx.rb;
    let mut plan = RolloutPlan::from_runbook(rb).map_err(failed)?;
    // Before the lease and any send: gates judged in the wrong account pass
    // on a namesake, and gates blind to their alarms' history miss an ALARM.
    let refused = match crate::authority::gates_read_in_their_accounts(rb, &cx.clients).await {
        Err(why) => Some(why),
        Ok(()) => match alarm_history_readable(rb, &cx.clients).await {
            Err(why) => Some(why),
            Ok(()) => clock_agrees(&cx.clients).await.err(),
        },
    };
    if let Some(why) = refused {
        return Err(refused_start(cx, why));
    }
    let lease = take_lease(rb, "rollout", cx.take_over, &mut |m| say(m))?;
    let (ttl, words) = step_ttl(rb.dns.ttl, live_ttl(cx.clients.dns(), rb).await);
    plan.ttl = ttl;
    say(&format!("each step waits {words} after INSYNC, for resolvers"));
    let hash = plan_hash(rb);
    let (existing, version) = load_versioned::<RolloutState>(&rb.name).map_err(failed)?;
    // Another account's state says nothing of this one's records: its
    // "complete" would end this rollout with nothing sent.
    if let Some(why) = existing.as_ref().and_then(|s| s.of_another_account(cx.actor.account())).filter(|_| !cx.restart)
    {
        return Err(refused_start(
            cx,
            format!(
                "{}: {why}; nothing was sent. Rerun with --restart to start over from the live weights, or move it away",
                state_location(&rb.name)
            ),
        ));
    }
    let state = match existing {
        Some(s) if s.plan_hash != hash && !cx.restart => {
            return Err(refused_start(
                cx,
                format!(
                    "the runbook's rollout (steps, soak, TTL or gates) changed since this rollout started ({}); rerun with --restart to start over from the live weights",
                    state_location(&rb.name)
                ),
            ));
        }
        // The hash covers `from` and `to`: a state saved before its sides
        // were kept has this runbook's.
        Some(s) if s.plan_hash == hash && !cx.restart => {
            RolloutState { sides: Some((rb.rollout.from.clone(), rb.rollout.to.clone())), ..s }
        }
        _ => RolloutState::new(rb, &plan),
    };
    let state = RolloutState { account: cx.actor.account().map(String::from).or(state.account.clone()), ..state };
    if let Some(why) = state.engine.misfit(&plan) {
        return Err(refused_start(
            cx,
            format!(
                "{}: the saved rollout state does not fit the runbook's rollout ({why}): it was edited or damaged; \
             nothing was sent. Move it away, or rerun with --restart to start over from the live weights",
                state_location(&rb.name)
            ),
        ));
    }
    if state.engine.phase == RolloutPhase::Done {
        say("this rollout is already complete (--restart runs it again)");
        return Ok(None);
    }
    let engine = Engine { plan, state: state.engine.clone() };
    let mut runner = Runner::new(cx, engine, state, say, lease, version);
    // A change an earlier run left in flight is settled first: confirmed
    // INSYNC and audited, or found never sent.
    let (live, types_differ) = live_reading(cx.clients.dns(), rb).await.map_err(failed)?;
    // Before anything is settled or sent: the weights a person confirmed.
    if let Some(confirmed) = cx.expect_live
        && live != confirmed
    {
        return Err(refused_start(
            cx,
            format!(
                "the live weights are {}/{} now, not the {}/{} that were confirmed (someone changed them since); nothing \
             was sent: look again, then start the rollout",
                live.0, live.1, confirmed.0, confirmed.1
            ),
        ));
    }
    let mut outputs = runner.reconcile(live).await.map_err(failed)?;
    let (live, types_differ) = if outputs.is_empty() && runner.state.in_flight.is_none() {
        (live, types_differ)
    } else {
        live_reading(cx.clients.dns(), rb).await.map_err(failed)?
    };
    // The pair read is the first record type's: a group whose types weigh
    // the sides otherwise is neither resumed nor adopted over.
    if let Some(why) = types_differ {
        return Err(refused_start(
            cx,
            format!(
                "{why}; nothing was sent: set every type alike with `cutover shift` (it sets them together), then run \
             the rollout again"
            ),
        ));
    }
    let expected = runner.state.applied.unwrap_or(runner.engine.plan.initial);
    if live != expected {
        if !cx.adopt_live {
            return Err(refused_start(
                cx,
                format!(
                    "the live weights are {}/{} but the rollout expects {}/{} (someone changed them, or the rollout was interrupted mid-change); check, then rerun with --adopt-live to continue from the live weights",
                    live.0, live.1, expected.0, expected.1
                ),
            ));
        }
        (runner.say)(&format!("adopting the live weights {}/{}", live.0, live.1));
        // Continue from what the live weights mean, never from a phase they contradict.
        let engine = &mut runner.engine;
        let active = !matches!(engine.state.phase, RolloutPhase::Idle | RolloutPhase::Aborted | RolloutPhase::Done);
        let at_step = active && live == engine.plan.weights_at(engine.state.step);
        // The first step above the live share (0/0 is an equal split), in
        // integers: p% > to/total.
        let (to, total) = match u32::from(live.0) + u32::from(live.1) {
            0 => (1, 2),
            t => (u32::from(live.1), t),
        };
        let first_above = engine.plan.steps.iter().position(|&p| u32::from(p) * total > to * 100);
        // Live weights below the saved steps (lowered by hand) go up again
        // one gated step at a time, never straight back; and a rollback
        // never aims above them.
        let lower_last_good = |engine: &mut Engine| {
            if let Some(first_above) = first_above {
                engine.state.last_good =
                    engine.state.last_good.and_then(|g| first_above.checked_sub(1).map(|m| g.min(m)));
            }
        };
        if active && !at_step {
            engine.state.phase = if live == engine.rollback_weights() {
                RolloutPhase::Aborted
            } else {
                if let Some(first_above) = first_above
                    && first_above < engine.state.step
                {
                    engine.state.step = first_above;
                    lower_last_good(engine);
                }
                RolloutPhase::Shifting
            };
        } else if !active {
            // A start goes to the step after the last good one.
            lower_last_good(engine);
        }
        // Weights someone else set are confirmed INSYNC before anything builds on them.
        let step = at_step.then_some(runner.engine.state.step);
        let adopted =
            InFlight { before: expected, before_by_type: None, weights: live, step, change: None, adopted: true };
        outputs.extend(
            runner
                .confirm_by_resending(&adopted, "adopting live weights set outside this rollout")
                .await
                .map_err(failed)?,
        );
    }
    Ok(Some(Begun { runner, outputs, live, expected }))
}

/// Before the loop: an abort asked for while no rollout ran, a rollback an
/// interruption cut short, a paused rollout resumed, and the first outputs
/// of whatever phase the saved state is in. Some when that ended the run.
async fn before_the_loop(
    runner: &mut Runner<'_>,
    live: Weights,
    adopted: bool,
    outputs: &mut Vec<Output>,
) -> Result<Option<Outcome>, RolloutError> {
    let cx = runner.cx;
    let rb = &cx.rb;
    let now = SystemTime::now;
    // An abort asked for while no rollout ran is acted on first, not dropped;
    // a pause or promote left from then is stale and dropped.
    for r in [Request::Pause, Request::Promote] {
        r.withdraw(&rb.name);
    }
    let waiting = Request::Abort
        .take_one(&rb.name)
        .map_err(|e| failed(format!("cannot tell whether an abort waits ({e}); nothing was changed, try again")))?;
    if let Some(RequestNote { text: reason, .. }) = &waiting
        && !matches!(runner.engine.state.phase, RolloutPhase::Idle | RolloutPhase::Aborted | RolloutPhase::Done)
    {
        {
            let out = runner.engine.handle(Input::Abort { reason: reason.trim().to_string() }, now());
            runner.persist().map_err(failed)?;
            for o in out {
                if let Output::SetWeights { weights, step: None } = o {
                    runner.roll_back(weights).await?;
                    runner
                        .audit("rollout abort", Stage::Done, runner.rolled_back_from, weights, reason.trim().into())
                        .map_err(failed)?;
                }
            }
            return Ok(Some(Outcome::Aborted(reason.trim().to_string())));
        }
    }
    // An abort asked for as this run began (a colleague who saw the lease
    // of a rollout that had just ended) is never dropped for a start
    // forward: this run ends, nothing sent.
    if let Some(RequestNote { text: reason, .. }) = &waiting
        && matches!(runner.engine.state.phase, RolloutPhase::Idle | RolloutPhase::Aborted)
    {
        let reason = reason.trim().to_string();
        // An earlier abort cut short before its rollback reached Route53 is
        // what this one asks for too: finished, never taken as done.
        let target = runner.engine.rollback_weights();
        if runner.engine.state.phase == RolloutPhase::Aborted && live != target {
            (runner.say)(&format!("finishing the interrupted rollback to {}/{}", target.0, target.1));
            runner.roll_back(target).await?;
            runner.persist().map_err(failed)?;
            runner
                .audit("rollout abort", Stage::Done, runner.rolled_back_from, target, reason.clone())
                .map_err(failed)?;
            return Ok(Some(Outcome::Aborted(reason)));
        }
        (runner.say)(&format!(
            "an abort was waiting ({reason}): not starting; nothing sent. Run the rollout again to start it"
        ));
        return Ok(Some(Outcome::Aborted(reason)));
    }
    // An abort interrupted before its rollback reached Route53, or before
    // its change was confirmed, is finished, audited and reported, and the
    // run ends there: sending the step that failed again, as a fresh start
    // would, undoes the abort unseen.
    let target = runner.engine.rollback_weights();
    if runner.engine.state.phase == RolloutPhase::Aborted && (live != target || runner.rollback_confirmed) && !adopted {
        if live != target {
            (runner.say)(&format!("finishing the interrupted rollback to {}/{}", target.0, target.1));
            runner.roll_back(target).await?;
        }
        runner.persist().map_err(failed)?;
        let reason = runner.engine.state.reason.clone().unwrap_or_else(|| "an earlier abort".into());
        runner.audit("rollout abort", Stage::Done, runner.rolled_back_from, target, reason.clone()).map_err(failed)?;
        (runner.say)("rolled back; nothing else was sent. Run the rollout again to start it");
        return Ok(Some(Outcome::Aborted(reason)));
    }
    // A paused rollout resumes where it paused.
    if runner.engine.state.phase == RolloutPhase::Paused {
        outputs.extend(runner.engine.handle(Input::Resume, now()));
    }
    let steps: Vec<String> = runner.engine.plan.steps.iter().map(|s| format!("{s}%")).collect();
    let (operator, to) = (cx.actor.operator(), &rb.rollout.to);
    crate::notify::post(match runner.engine.state.phase {
        RolloutPhase::Idle | RolloutPhase::Aborted | RolloutPhase::Done => {
            format!(
                "cutover {}: rollout started by {operator}: {} → {to} in steps {}",
                rb.name,
                rb.rollout.from,
                steps.join(", ")
            )
        }
        _ => format!(
            "cutover {}: rollout resumed by {operator} at step {} of {}",
            rb.name,
            runner.engine.state.step + 1,
            steps.len()
        ),
    });
    outputs.extend(match runner.engine.state.phase {
        RolloutPhase::Idle | RolloutPhase::Aborted | RolloutPhase::Done => runner.engine.handle(Input::Start, now()),
        RolloutPhase::Paused => Vec::new(),
        RolloutPhase::Shifting | RolloutPhase::RollingBack => {
            let step = runner.engine.state.step;
            vec![Output::SetWeights { weights: runner.engine.plan.weights_at(step), step: Some(step) }]
        }
        // Reconciled above: no change of this step is in flight any more.
        RolloutPhase::WaitingInsync => runner.engine.handle(Input::InSync { step: runner.engine.state.step }, now()),
        RolloutPhase::WaitingTtl { .. } => {
            let line = format!("resuming step {} of {}", runner.engine.state.step + 1, runner.engine.plan.steps.len());
            (runner.say)(&line);
            Vec::new()
        }
        RolloutPhase::Soaking { .. } => {
            // Measurements from before the interruption are not evidence now.
            runner.engine.start_soak(now());
            let (step, steps) = (runner.engine.state.step + 1, runner.engine.plan.steps.len());
            (runner.say)(&format!("resuming step {step} of {steps} with a fresh soak"));
            Vec::new()
        }
    });
    Ok(None)
}

/// Carries out the engine's outputs (and what they lead to) until none is
/// left; Some when one ended the run: a pause, an abort or the last step.
async fn carry_out(
    runner: &mut Runner<'_>,
    outputs: &mut Vec<Output>,
    expected: Weights,
    quiet: &mut std::collections::BTreeSet<(usize, String)>,
) -> Result<Option<Outcome>, RolloutError> {
    let cx = runner.cx;
    let (rb, to) = (&cx.rb, &cx.rb.rollout.to);
    while !outputs.is_empty() {
        let mut next = Vec::new();
        for o in std::mem::take(outputs) {
            match o {
                Output::SetWeights { weights, step } => {
                    if step.is_none() {
                        // The abort decision is on disk before its rollback is sent.
                        runner.persist().map_err(failed)?;
                    }
                    next.extend(match step {
                        Some(_) => runner.set_weights(weights, step).await.map_err(|e| failed(e.into()))?,
                        None => runner.roll_back(weights).await?,
                    })
                }
                Output::Log(line) => {
                    // "no data yet" is said once per gate and step, not every interval.
                    if !line.ends_with("no data yet") || quiet.insert((runner.engine.state.step, line.clone())) {
                        (runner.say)(&line);
                    }
                }
                Output::Paused(reason) => {
                    runner.persist().map_err(failed)?;
                    runner
                        .audit(
                            "rollout pause",
                            Stage::Paused,
                            runner.state.applied,
                            runner.state.applied.unwrap_or(expected),
                            reason.clone(),
                        )
                        .map_err(failed)?;
                    return Ok(Some(Outcome::Paused(reason)));
                }
                Output::Aborted { reason, weights } => {
                    runner.persist().map_err(failed)?;
                    runner
                        .audit("rollout abort", Stage::Done, runner.rolled_back_from, weights, reason.clone())
                        .map_err(failed)?;
                    return Ok(Some(Outcome::Aborted(reason)));
                }
                Output::Done => {
                    runner.persist().map_err(failed)?;
                    crate::notify::post(format!("cutover {}: rollout completed: 100% of the traffic on {to}", rb.name));
                    let calls = cx.clients.calls_total();
                    let steps = runner.engine.plan.steps.len() as u64;
                    (runner.say)(&format!(
                        "{calls} AWS calls in this run, {} per step (shifts, INSYNC waits, live polling and gates)",
                        calls / steps.max(1)
                    ));
                    return Ok(Some(Outcome::Done));
                }
            }
        }
        *outputs = next;
    }
    Ok(None)
}

/// Each `redis_hit_rate` gate's counters at its last measurement, for the
/// soak that began at `soak`: a new soak starts from none.
#[derive(Default)]
struct HitBaselines {
    soak: Option<SystemTime>,
    by_gate: std::collections::BTreeMap<usize, super::gates::HitBaseline>,
}

/// The ALARMs the alarm gates counted, the soak this process resumed
/// afresh: `(its since, when the interrupted run last saved its soak)`,
/// the step it resumed from a pause with that step's weights live:
/// `(step, when it paused)`, and the alarm gates that have read the
/// alarms' history from then.
#[derive(Default)]
struct Episodes {
    counted: super::alarm_episodes::AlarmEpisodes,
    resumed: Option<(SystemTime, SystemTime)>,
    paused: Option<(usize, SystemTime)>,
    read_since_pause: std::collections::BTreeSet<usize>,
}

/// What the gates keep from one round to the next.
struct Kept<'a> {
    last_measured: &'a mut [Option<SystemTime>],
    last_reading: &'a mut [Option<SystemTime>],
    hit_baselines: &'a mut HitBaselines,
    episodes: &'a mut Episodes,
}

/// An alarm gate's reading `m`, or a failure for each ALARM between
/// readings that its alarms' history tells (read for alarms whose state
/// changed since `from`); an error when that history cannot be read, or
/// does not show the reading's change yet, and tells no ALARM. With
/// whether the history since `from` was read through.
async fn with_alarm_history(
    cx: &Context,
    gate: usize,
    alarms: &[String],
    (states, read_at): (&[crate::aws::cloudwatch::AlarmState], SystemTime),
    from: SystemTime,
    counted: &mut super::alarm_episodes::AlarmEpisodes,
    m: crate::engine::Measurement,
) -> (Vec<crate::engine::Measurement>, bool) {
    use crate::engine::Measurement;
    match m {
        Measurement::Fail(_) => {
            counted.saw(gate, states, alarms, read_at);
            return (vec![m], false);
        }
        Measurement::Error(_) => return (vec![m], false),
        Measurement::Pass | Measurement::PassWithoutData(_) | Measurement::NoData => {}
    }
    let mut found = Vec::new();
    let mut unread = None;
    for (name, changed) in counted.to_read(gate, states, alarms, from) {
        match crate::aws::cloudwatch::state_changes_by_side(&cx.clients, &cx.rb, &name, from).await {
            Ok(changes) => {
                let (new, caught_up) = counted.count_unseen(gate, &name, (from, changed), &changes);
                found.extend(new.into_iter().map(|t| (name.clone(), t)));
                if !caught_up {
                    // What it did since its last change seen is unknown yet: no pass on it.
                    unread.get_or_insert(format!(
                        "alarm {name} changed state at {} during the soak, and its history does not show that \
                         change yet",
                        crate::time::rfc3339(changed)
                    ));
                }
            }
            Err(e) => {
                unread.get_or_insert(format!(
                    "alarm {name} changed state at {} during the soak, and whether it was in ALARM since cannot be \
                     read: {e}",
                    crate::time::rfc3339(changed)
                ));
            }
        }
    }
    // An ALARM found outweighs another alarm's history not read.
    let read = unread.is_none();
    let measured = match (super::alarm_episodes::unseen_alarms(&found), unread) {
        (fails, _) if !fails.is_empty() => fails,
        (_, Some(why)) => vec![Measurement::Error(why)],
        (_, None) => vec![m],
    };
    (measured, read)
}

/// One round of the gates during a soak: each gate due is measured (from
/// the live snapshot, or CloudWatch over the soak since `since`) and fed to
/// the engine; stops at the first that aborts or pauses.
async fn measure_gates(
    runner: &mut Runner<'_>,
    session: &Session,
    since: SystemTime,
    kept: &mut Kept<'_>,
) -> Vec<Output> {
    let Kept { last_measured, last_reading, hit_baselines, episodes } = kept;
    if hit_baselines.soak != Some(since) {
        **hit_baselines = HitBaselines { soak: Some(since), by_gate: Default::default() };
    }
    let paused = episodes.paused.filter(|(step, _)| *step == runner.engine.state.step).map(|(_, at)| at);
    let history_from = super::alarm_episodes::history_from(since, runner.shifted_at, episodes.resumed, paused);
    let (cx, now) = (runner.cx, SystemTime::now);
    let rb = &cx.rb;
    let mut outputs = Vec::new();
    let snap = crate::status::snapshot(rb, &session.state, cx.actor.region(), now());
    // By AWS's latest answer: a clock that moved off since the start. Only
    // the gates on AWS's timestamps are blind then; one on live state still
    // fails, and rolls back.
    let clock_differs = cx.clients.clock_differs();
    let on_aws_time = |g: &crate::runbook::GateKind| {
        use crate::runbook::GateKind::*;
        matches!(g, Metric { .. } | Compare { .. } | AlarmOk { .. })
    };
    for (i, g) in rb.rollout.gates.iter().enumerate() {
        use super::gates::Due;
        let reading = super::gates::reading(&session.state, &g.kind);
        let since_measured = last_measured[i].map(|t| now().duration_since(t).unwrap_or_default());
        let due = super::gates::due(g.interval, since_measured, reading, last_reading[i]);
        if due == Due::Wait {
            continue;
        }
        last_measured[i] = Some(now());
        last_reading[i] = reading;
        let hit_rate = super::gates::hit_rate_gate(rb, &g.kind, &session.state, &snap, hit_baselines.by_gate.get(&i));
        let snapshot_gate = match hit_rate {
            Some((m, next)) => {
                match next {
                    Some(b) => hit_baselines.by_gate.insert(i, b),
                    None => hit_baselines.by_gate.remove(&i),
                };
                Some(m)
            }
            None => super::gates::from_snapshot(rb, &g.kind, &snap),
        };
        let (measured, covers) = match (due, snapshot_gate) {
            _ if let Some(why) = clock_differs.as_ref().filter(|_| on_aws_time(&g.kind)) => {
                (vec![crate::engine::Measurement::Error(format!("cannot judge: {why}"))], None)
            }
            (Due::Stalled(d), _) => (
                vec![crate::engine::Measurement::Error(format!(
                    "no new reading of its sources for {} s (a poll is stuck or backing off)",
                    d.as_secs()
                ))],
                None,
            ),
            (_, Some(m)) => {
                let measured = match (&g.kind, snap.alarms.value.as_deref()) {
                    (crate::runbook::GateKind::AlarmOk { alarms, .. }, Some(states)) => {
                        // When the poll began: the states are at least that recent.
                        let read_at = snap.alarms.updated_at.as_deref().and_then(crate::time::parse_rfc3339);
                        let states = (states, read_at.unwrap_or(std::time::UNIX_EPOCH));
                        let (measured, read) =
                            with_alarm_history(cx, i, alarms, states, history_from, &mut episodes.counted, m).await;
                        if read && paused.is_some() {
                            episodes.read_since_pause.insert(i);
                            // Every alarm gate has read the pause: counted, and kept
                            // in the counters saved from now on.
                            let alarm_gates = rb
                                .rollout
                                .gates
                                .iter()
                                .enumerate()
                                .filter(|(_, g)| matches!(g.kind, crate::runbook::GateKind::AlarmOk { .. }));
                            if alarm_gates.map(|(j, _)| j).all(|j| episodes.read_since_pause.contains(&j)) {
                                runner.engine.state.paused_at = None;
                            }
                        }
                        measured
                    }
                    _ => vec![m],
                };
                (measured, super::gates::snapshot_covers(&session.state, &g.kind))
            }
            (_, None) => {
                let r = super::gates::metric_reading(&cx.clients, &g.kind, &snap, rb, since).await;
                (vec![r.measurement], r.covers)
            }
        };
        if measured.iter().any(|m| matches!(m, crate::engine::Measurement::Error(_)))
            && let Some(reason) = expired_credentials(rb, &cx.clients).await
        {
            outputs.extend(pause_for(&mut runner.engine, &reason));
            break;
        }
        for m in measured {
            // A pass the runbook chose in place of data is said too: no one should take it for a reading.
            let said = match &m {
                crate::engine::Measurement::Fail(_) | crate::engine::Measurement::Error(_) => Some(format!("{m:?}")),
                crate::engine::Measurement::PassWithoutData(why) => {
                    Some(format!("taken as a pass without data: {why}"))
                }
                _ => None,
            };
            if let Some(said) = said {
                (runner.say)(&format!("gate {} ({}): {said}", i + 1, crate::runbook::gate_label(&g.kind)));
            }
            outputs.extend(runner.engine.handle(Input::MeasureCovering { gate: i, result: m, covers }, now()));
            if matches!(runner.engine.state.phase, RolloutPhase::Aborted | RolloutPhase::Paused) {
                return outputs;
            }
        }
    }
    outputs
}

/// `cutover abort`: asks a running rollout to abort, or, when none runs,
/// sets the weights back itself. Returns what it did.
pub async fn abort(cx: &Context, reason: &str, say: &mut (dyn FnMut(&str) + Send)) -> Result<String, RolloutError> {
    let rb = &cx.rb;
    // A lease whose holder stopped renewing it is taken: rolling back needs
    // no one's leave. Expired by its holder's clock, that holder may still be
    // alive with a clock behind ours: it is asked first, and the lease taken
    // only if it stays unrenewed for a whole lease by this machine's clock.
    let duration = crate::store::lease::duration_for(rb);
    let refused = |e: Refusal| RolloutError::Refused(format!("refused: {e}; nothing was changed"));
    let mut asked = false;
    let lease = match crate::store::lease::acquire(&rb.name, "rollout abort", duration, false, &mut |_| {}) {
        Ok(l) => Some(l),
        Err(Refusal::Held(_) | Refusal::Locked(_) | Refusal::Renewed(_)) => None,
        Err(Refusal::Expired(_) | Refusal::ClockAhead(_)) => {
            Request::Abort.ask(&rb.name, &RequestNote::new(reason)).map_err(failed)?;
            asked = true;
            say("asked a rollout that may still run to abort");
            let taken = crate::store::off_async(|| {
                crate::store::lease::acquire(&rb.name, "rollout abort", duration, true, &mut |m| say(m))
            });
            match taken {
                Ok(l) => {
                    // Ours to carry out now; left behind, it would abort the next rollout.
                    Request::Abort.withdraw(&rb.name);
                    Some(l)
                }
                Err(Refusal::Held(_) | Refusal::Locked(_) | Refusal::Renewed(_)) => None,
                Err(e) => {
                    Request::Abort.withdraw(&rb.name);
                    return Err(refused(e));
                }
            }
        }
        Err(e) => return Err(refused(e)),
    };
    let lease = match lease {
        Some(lease) => lease,
        None => {
            if !asked {
                Request::Abort.ask(&rb.name, &RequestNote::new(reason)).map_err(failed)?;
            }
            say("a rollout is running: asked it to abort; waiting for its rollback");
            match wait_for_rollback(cx, duration, say).await? {
                Ok(done) => return Ok(done),
                Err(lease) => lease,
            }
        }
    };
    let plan = RolloutPlan::from_runbook(rb).map_err(failed)?;
    let (saved, version) = load_versioned::<RolloutState>(&rb.name).map_err(failed)?;
    // Another account's state (a rehearsal's) knows no good step of this
    // one's: the rollback goes to the initial weights.
    let RollbackBasis { mut state, engine: from, initial } = rollback_basis(saved, rb, &plan, cx.actor.account());
    state.account = cx.actor.account().map(String::from).or(state.account);
    let mut engine = Engine { plan, state: from };
    // A completed rollout has no step to go back to: moving traffic back is
    // a new decision, never reported as a rollback.
    if engine.state.phase == RolloutPhase::Done {
        Request::Abort.withdraw(&rb.name);
        return Err(RolloutError::Refused(format!(
            "refused: the rollout is complete ({}% on {}); nothing to abort and nothing was changed. To move \
             traffic back, set the weights with `cutover shift`",
            engine.plan.steps.last().copied().unwrap_or(100),
            rb.rollout.to
        )));
    }
    // Saved under another plan with other sides: no weights are known safe.
    if let Some(why) = state.sides_unlike(rb) {
        Request::Abort.withdraw(&rb.name);
        return Err(RolloutError::Refused(format!(
            "refused: {why}, so an abort cannot tell which weights to go back to; nothing was changed. Set the \
             weights with `cutover shift`"
        )));
    }
    match initial {
        Some(Initial::Elsewhere(why)) => say(&format!("{why}: rolling back to the initial weights")),
        Some(Initial::PlanChanged) => {
            say("the runbook's rollout changed since this rollout started: rolling back to its initial weights")
        }
        Some(Initial::Misfit(why)) => say(&format!(
            "the saved rollout state does not fit the runbook's rollout ({why}): rolling back to its initial weights"
        )),
        None => {}
    }
    let target = engine.rollback_weights();
    // The decision is on disk before the rollback is sent: an interrupted
    // abort is finished by the next `cutover rollout`, never forgotten.
    engine.state.phase = RolloutPhase::Aborted;
    engine.state.reason = Some(reason.to_string());
    state.engine = engine.state.clone();
    let mut runner = Runner::new(cx, engine, state, say, lease, version);
    runner.persist().map_err(failed)?;
    // A rollback an earlier run left in flight is settled first; a forward
    // step's is confirmed by this rollback's own INSYNC (see `send`).
    if runner.state.in_flight.as_ref().is_some_and(|f| f.step.is_none()) {
        let live = live_weights(cx.clients.dns(), rb).await.map_err(failed)?;
        runner.reconcile(live).await.map_err(failed)?;
    }
    runner.roll_back(target).await?;
    runner.persist().map_err(failed)?;
    runner.audit("rollout abort", Stage::Done, runner.rolled_back_from, target, reason.to_string()).map_err(failed)?;
    Ok(format!("weights set back to {}/{}", target.0, target.1))
}

/// Waits for the running rollout to carry out the abort asked of it: Ok
/// with what it did, once the live weights are its rollback's. A rollout
/// that ends without that (it paused, failed or died as it was asked, with
/// the request taken or not) leaves the lease: this abort takes it and
/// carries the abort out itself (Err with the lease), never waiting out
/// its limit for a rollback nobody will send.
async fn wait_for_rollback(
    cx: &Context,
    duration: Duration,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<Result<String, Lease>, RolloutError> {
    let rb = &cx.rb;
    let start = std::time::Instant::now();
    // Long enough for a rollback Route53 does not take at first.
    let limit = ROLLBACK_RETRY_FOR + Duration::from_secs(60);
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(Some(s)) = load_state(&rb.name)
            && s.engine.phase == RolloutPhase::Aborted
            && s.in_flight.is_none()
            && !Request::Abort.pending(&rb.name)
        {
            // Done only when the live weights are the rollback's, not merely
            // when the decision is on disk.
            let live = live_weights(cx.clients.dns(), rb).await.map_err(failed)?;
            if s.plan_hash == plan_hash(rb) {
                let target = Engine { plan: RolloutPlan::from_runbook(rb).map_err(failed)?, state: s.engine.clone() }
                    .rollback_weights();
                if live == target && s.applied == Some(target) {
                    return Ok(Ok(format!("the running rollout rolled back to {}/{}", live.0, live.1)));
                }
            } else if let Some(applied) = s.applied
                && !is_running(&rb.name).unwrap_or(true)
            {
                // Run under another plan (this runbook changed since), it
                // rolled back by its own: its weights, in its sides' order.
                // Its target is not this plan's to compute, so only once it
                // has ended: saved Aborted, it had decided the abort, and the
                // weights it last sent were still the failed step's.
                let (from, to) = (&rb.rollout.from, &rb.rollout.to);
                let mine = match &s.sides {
                    Some((f, t)) if f == from && t == to => Some(applied),
                    Some((f, t)) if f == to && t == from => Some((applied.1, applied.0)),
                    _ => None,
                };
                if mine == Some(live) {
                    return Ok(Ok(format!(
                        "the running rollout rolled back by its own plan (the runbook changed since it started) to \
                         {}/{}",
                        live.0, live.1
                    )));
                }
            }
        }
        if is_running(&rb.name).unwrap_or(true) {
            continue;
        }
        // Completed before it took the request: abort() refuses it. (A
        // request taken, by a run that then stopped on it, is not this.)
        if let Ok(Some(s)) = load_state(&rb.name)
            && s.engine.phase == RolloutPhase::Done
            && Request::Abort.pending(&rb.name)
        {
            Request::Abort.withdraw(&rb.name);
            return Err(RolloutError::Refused(format!(
                "refused: the rollout completed before it could take the abort ({}% on {}); nothing was changed. \
                 To move traffic back, set the weights with `cutover shift`",
                rb.rollout.steps.last().copied().unwrap_or(100),
                rb.rollout.to
            )));
        }
        let taken = match crate::store::lease::acquire(&rb.name, "rollout abort", duration, false, &mut |_| {}) {
            Ok(l) => Some(l),
            // Its holder died: taken once it stays unrenewed a whole lease.
            Err(Refusal::Expired(_) | Refusal::ClockAhead(_)) => crate::store::off_async(|| {
                crate::store::lease::acquire(&rb.name, "rollout abort", duration, true, &mut |m| say(m))
            })
            .ok(),
            // Another run took it first (and the request with it): wait for that one.
            Err(_) => None,
        };
        if let Some(lease) = taken {
            Request::Abort.withdraw(&rb.name);
            say("the rollout ended without rolling back: this abort carries it out");
            return Ok(Err(lease));
        }
    }
    Err(failed(format!(
        "the running rollout did not confirm its rollback within {} s; check `cutover status` and the audit log",
        limit.as_secs()
    )))
}

/// Why a promote confirmed for one step's soak is not for the rollout's
/// state now, if so: another step, or the same step's soak begun again.
fn stale_promote(note: &RequestNote, now: &crate::engine::EngineState) -> Option<String> {
    let asked = note.step?;
    if asked != now.step {
        return Some(format!(
            "promoting step {} was confirmed, but the rollout is at step {} now",
            asked + 1,
            now.step + 1
        ));
    }
    let seen = note.soak_since?;
    (now.phase.soaking_since() != Some(seen)).then(|| {
        format!(
            "promoting step {}'s soak was confirmed, but that soak has ended and the step is {} again (after a pause \
             or a retry)",
            asked + 1,
            now.phase.name()
        )
    })
}

/// Asks the running rollout to pause or promote, and waits (up to `limit`)
/// until its saved state shows it did. Refused when none runs, and a
/// promote confirmed for `step` (from 0) when the rollout has moved on.
pub async fn request(
    _who: &crate::authority::Actor,
    name: &str,
    req: Request,
    note: RequestNote,
    limit: Duration,
) -> Result<String, RolloutError> {
    let verb = if req == Request::Pause { "pause" } else { "promote" };
    if !is_running(name).map_err(failed)? {
        let saved = load_state(name)
            .map_err(failed)?
            .map_or("no saved state".to_string(), |s| format!("saved phase {}", s.engine.phase.name()));
        return Err(RolloutError::Refused(format!(
            "refused: no rollout of {name} is running ({saved}); nothing to {verb}. Start or resume one with `cutover rollout`"
        )));
    }
    let before = load_state(name).map_err(failed)?.map(|s| s.engine);
    if let Some(stale) = before.as_ref().and_then(|b| stale_promote(&note, b)).filter(|_| req == Request::Promote) {
        return Err(RolloutError::Refused(format!(
            "refused: {stale}; nothing was promoted: look at the rollout now and promote it if you mean to"
        )));
    }
    req.ask(name, &note).map_err(failed)?;
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let taken = !req.pending(name);
        let Some(now) = load_state(name).map_err(failed)?.map(|s| s.engine) else { continue };
        let moved = before.as_ref().is_none_or(|b| b.step != now.step || b.phase != now.phase);
        match req {
            Request::Pause if now.phase == RolloutPhase::Paused => {
                return Ok(format!(
                    "the rollout paused at step {}; `cutover rollout` resumes it, `cutover abort` rolls back",
                    now.step + 1
                ));
            }
            Request::Promote
                if taken
                    && (now.phase == RolloutPhase::Done || before.as_ref().is_some_and(|b| b.step != now.step)) =>
            {
                return Ok(match now.phase {
                    RolloutPhase::Done => "promoted: the last step passed; the rollout is complete".to_string(),
                    _ => format!("promoted: the rollout moved on to step {}", now.step + 1),
                });
            }
            Request::Promote if taken && !moved && start.elapsed() > Duration::from_secs(3) => {
                return Err(RolloutError::Failed(format!(
                    "the rollout did not promote: it is {}, not in a step it can skip",
                    now.phase.name()
                )));
            }
            _ => {}
        }
    }
    req.withdraw(name);
    Err(RolloutError::Failed(format!(
        "the rollout did not {verb} within {} s (it acts on requests between waits); the request was withdrawn: check `cutover status` and try again",
        limit.as_secs()
    )))
}

/// Why an abort goes back to the initial weights rather than a saved step.
enum Initial {
    /// The saved state was written in another account (this reason).
    Elsewhere(String),
    /// Saved under other steps: its step numbers name other weights now.
    PlanChanged,
    /// Edited or damaged (this misfit): no step in it is known good.
    Misfit(String),
}

/// The state an abort rolls back from, and its engine state with any step
/// it cannot trust dropped: `abort` and its preview decide it alike.
struct RollbackBasis {
    state: RolloutState,
    engine: EngineState,
    initial: Option<Initial>,
}

/// `saved` (None: none) as an abort by a caller in `account` reads it.
fn rollback_basis(
    saved: Option<RolloutState>,
    rb: &Runbook,
    plan: &RolloutPlan,
    account: Option<&str>,
) -> RollbackBasis {
    let elsewhere = saved.as_ref().and_then(|s| s.of_another_account(account));
    let state = saved.filter(|_| elsewhere.is_none()).unwrap_or_else(|| RolloutState::new(rb, plan));
    let mut engine = state.engine.clone();
    let initial = if let Some(why) = elsewhere {
        Some(Initial::Elsewhere(why))
    } else if state.plan_hash != plan_hash(rb) {
        engine.last_good = None;
        Some(Initial::PlanChanged)
    } else if let Some(why) = engine.misfit(plan) {
        engine = EngineState { phase: engine.phase, ..EngineState::new(plan.gates.len()) };
        Some(Initial::Misfit(why))
    } else {
        None
    };
    RollbackBasis { state, engine, initial }
}

/// What `cutover rollout` would do now, without doing any of it: the plan,
/// the live weights, the saved state and the next change batch.
pub async fn preview(
    rb: &Runbook,
    clients: &SideClients,
    adopt_live: bool,
    expect_live: Option<Weights>,
    (restart, take_over): (bool, bool),
) -> Result<Preview, RolloutError> {
    let sides = clients;
    let clients = clients.dns();
    let plan = RolloutPlan::from_runbook(rb).map_err(failed)?;
    let (_, ttl) = step_ttl(rb.dns.ttl, live_ttl(clients, rb).await);
    let bake = if plan.bake > plan.soak { format!(", bake {} s at 100%", plan.bake.as_secs()) } else { String::new() };
    let mut out = vec![format!(
        "plan: {} (soak {} s{bake}, {ttl}, {} gate(s))",
        plan.steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → "),
        plan.soak.as_secs(),
        plan.gates.len()
    )];
    out.extend(plan.gates.iter().map(|g| format!("  {}", g.name)));
    let (live, types_differ) = live_reading(clients, rb).await.map_err(failed)?;
    out.push(format!("live weights: {} {} / {} {}", rb.rollout.from, live.0, rb.rollout.to, live.1));
    // In the run's order: the credentials' expiry, the gates' accounts and
    // their alarms' history, the clock, the lease, the saved state, then the live weights.
    if let Err(why) = credentials_outlast(rb, sides, SystemTime::now()) {
        out.push(format!("would refuse: {}", why.strip_prefix("refused: ").unwrap_or(&why)));
        return Ok(Preview { lines: out, verdict: Verdict::CredentialsExpire });
    }
    if let Err(why) = crate::authority::gates_read_in_their_accounts(rb, sides).await {
        out.push(format!("would refuse: {}", why.strip_prefix("refused: ").unwrap_or(&why)));
        return Ok(Preview { lines: out, verdict: Verdict::GatesReadElsewhere });
    }
    if let Err(why) = alarm_history_readable(rb, sides).await {
        out.push(format!("would refuse: {}", why.strip_prefix("refused: ").unwrap_or(&why)));
        return Ok(Preview { lines: out, verdict: Verdict::AlarmHistoryUnreadable });
    }
    if let Err(why) = clock_agrees(sides).await {
        out.push(format!("would refuse: {}", why.strip_prefix("refused: ").unwrap_or(&why)));
        return Ok(Preview { lines: out, verdict: Verdict::ClockDiffers });
    }
    if is_running(&rb.name).map_err(failed)? {
        out.push("a rollout of this runbook is running now: `cutover rollout` would be refused".into());
        return Ok(Preview { lines: out, verdict: Verdict::Running });
    }
    // A lease left unrenewed (its holder died) is taken only with --take-over.
    if !take_over && let Some(left) = crate::store::lease::holder(&rb.name).map_err(|e| failed(e.to_string()))? {
        out.push(format!(
            "would refuse: the runbook's lease is still written by {}, which stopped renewing it (or whose clock \
             differs); --take-over takes it once it stays unrenewed for a whole lease",
            left.holder
        ));
        return Ok(Preview { lines: out, verdict: Verdict::LeaseLeft });
    }
    let saved = load_state(&rb.name).map_err(failed)?;
    if !restart && let Some(saved) = &saved {
        let account = crate::aws::sts::identity(clients).await.ok().map(|i| i.account);
        if let Some(why) = saved.of_another_account(account.as_deref()) {
            out.push(format!("would refuse: {why}; --restart starts over from the live weights"));
            return Ok(Preview { lines: out, verdict: Verdict::StateOfAnotherAccount });
        }
    }
    if saved.as_ref().is_some_and(|s| s.plan_hash == plan_hash(rb) && s.engine.phase == RolloutPhase::Done) && !restart
    {
        out.push("would do nothing: the rollout is complete".into());
        return Ok(Preview { lines: out, verdict: Verdict::Complete });
    }
    if let Some(confirmed) = expect_live.filter(|c| *c != live) {
        out.push(format!(
            "would refuse: the live weights are {}/{}, not the {}/{} given to --expect-live",
            live.0, live.1, confirmed.0, confirmed.1
        ));
        return Ok(Preview { lines: out, verdict: Verdict::NotAsConfirmed { live, confirmed } });
    }
    if let Some(why) = types_differ {
        out.push(format!("would refuse: {why}; set every type alike with `cutover shift` first"));
        return Ok(Preview { lines: out, verdict: Verdict::TypesDiffer });
    }
    let state = match saved {
        Some(s) if s.plan_hash != plan_hash(rb) && !restart => {
            out.push("would refuse: the rollout changed since the saved state; --restart starts over".into());
            return Ok(Preview { lines: out, verdict: Verdict::PlanChanged });
        }
        Some(s) if !restart && let Some(why) = s.engine.misfit(&plan) => {
            out.push(format!(
                "would refuse: the saved rollout state does not fit the runbook's rollout ({why}); --restart starts \
                 over"
            ));
            return Ok(Preview { lines: out, verdict: Verdict::PlanChanged });
        }
        Some(s) if !restart => {
            out.push(format!(
                "saved state: step {} of {}, {}",
                s.engine.step + 1,
                plan.steps.len(),
                s.engine.phase.name()
            ));
            Some(s)
        }
        _ => {
            out.push("saved state: none; the rollout starts at step 1".into());
            None
        }
    };
    let mut expected = state.as_ref().and_then(|s| s.applied).unwrap_or(plan.initial);
    // A rollback of an earlier run's that would be confirmed ends the run too.
    let mut rollback_confirmed = false;
    if let Some(f) = state.as_ref().and_then(|s| s.in_flight.as_ref()) {
        let change = f.change.as_deref().unwrap_or("whose id was lost");
        if f.change.is_some() || live == f.weights {
            rollback_confirmed = f.step.is_none() && !f.adopted;
            out.push(format!(
                "would first confirm the change an interrupted run left in flight ({}/{}, change {change}) and audit it",
                f.weights.0, f.weights.1
            ));
            expected = f.weights;
        } else if live == expected {
            out.push(format!(
                "an interrupted run never sent {}/{}: would audit that and send it again",
                f.weights.0, f.weights.1
            ));
        }
    }
    if live != expected && !adopt_live {
        out.push(format!(
            "would refuse: the live weights {}/{} differ from the expected {}/{} (--adopt-live continues from the live ones)",
            live.0, live.1, expected.0, expected.1
        ));
        return Ok(Preview { lines: out, verdict: Verdict::LiveWeightsDiffer { live, expected } });
    }
    let engine = Engine { plan: plan.clone(), state: state.map_or(EngineState::new(plan.gates.len()), |s| s.engine) };
    let target = engine.rollback_weights();
    if engine.state.phase == RolloutPhase::Aborted
        && (live != target || rollback_confirmed)
        && !(adopt_live && live != expected)
    {
        out.push(format!(
            "would finish the interrupted rollback to {}/{} ({}) and stop there; run it again to start",
            target.0,
            target.1,
            engine.state.reason.as_deref().unwrap_or("an earlier abort")
        ));
        return Ok(Preview { lines: out, verdict: Verdict::Go });
    }
    let next = match engine.state.phase {
        RolloutPhase::Done => {
            out.push("would do nothing: the rollout is complete".into());
            return Ok(Preview { lines: out, verdict: Verdict::Complete });
        }
        RolloutPhase::Idle | RolloutPhase::Aborted => engine.state.last_good.map_or(0, |s| s + 1),
        _ => engine.state.step,
    };
    let weights = plan.weights_at(next);
    let sp = shift::plan(clients, rb, weights).await?;
    out.push(format!("would start at step {} of {}: {}", next + 1, plan.steps.len(), sp.describe()));
    if !sp.is_noop() {
        out.push(format!("change batch: {}", sp.batch_json()));
    }
    // As `set_weights` judges the step when it comes to send it.
    match shift::raised_sides_serve(sides, rb, &sp, true).await {
        Ok(unchecked) => out.extend(unchecked),
        Err(e) => out.push(format!("would pause before sending step {}: {e}", next + 1)),
    }
    Ok(Preview { lines: out, verdict: Verdict::Go })
}

/// What `cutover abort` would do now, without doing it.
pub async fn abort_preview(rb: &Runbook, sides: &SideClients) -> Result<Vec<String>, RolloutError> {
    let clients = sides.dns();
    let plan = RolloutPlan::from_runbook(rb).map_err(failed)?;
    let saved = load_state(&rb.name).map_err(failed)?;
    let account = crate::aws::sts::identity(clients).await.ok().map(|i| i.account);
    let RollbackBasis { state, engine: from, initial } = rollback_basis(saved, rb, &plan, account.as_deref());
    let unlike = state.sides_unlike(rb);
    let engine = Engine { plan: plan.clone(), state: from };
    let target = engine.rollback_weights();
    let why = match (engine.state.last_good, initial) {
        (Some(s), _) if s < plan.steps.len() => {
            format!("step {} ({}%), the last whose gates all passed", s + 1, plan.steps[s])
        }
        (_, Some(Initial::Elsewhere(why))) => format!("the initial weights ({why})"),
        (_, Some(Initial::Misfit(why))) => {
            format!("the initial weights (the saved rollout state does not fit the runbook's rollout: {why})")
        }
        (_, Some(Initial::PlanChanged)) => {
            "the initial weights (the runbook's rollout changed since it started)".to_string()
        }
        _ => "the initial weights (no step passed yet)".to_string(),
    };
    let mut out = vec![format!("rollback target: {}/{}, {why}", target.0, target.1)];
    if engine.state.phase == RolloutPhase::Done {
        out.push(format!(
            "would refuse: the rollout is complete; nothing to abort (to move traffic back, set the weights with \
             `cutover shift`); {} keeps 100%",
            rb.rollout.to
        ));
        return Ok(out);
    }
    if let Some(why) = unlike {
        // Its target would be the very weights it warns of: not shown.
        return Ok(vec![format!(
            "would refuse: {why}, so an abort cannot tell which weights to go back to (set the weights with \
             `cutover shift`); a rollout still running rolls back by its own plan when asked"
        )]);
    }
    // Both ways the rollback is planned from the live records.
    let sp = shift::plan(clients, rb, target).await?;
    if is_running(&rb.name).map_err(failed)? {
        // Its steps go on passing until it reads the request: the target
        // shown is the one now, and the popup must not promise more.
        out.push(
            "a rollout is running: `cutover abort` would ask it to roll back and wait for INSYNC; it goes back to \
             the last step whose gates all passed when it reads the request, so a step that passes before then \
             is the target instead"
                .into(),
        );
        // It judges the side it raises as this process would.
        if let Err(super::PlanError::Refused(why)) = shift::raised_sides_serve(sides, rb, &sp, false).await {
            out.push(format!("it would not send the rollback now: {why}"));
        }
    } else {
        let live = (sp.from.record.weight, sp.to.record.weight);
        if let Some(why) = rollback_raises(&rb.rollout.to, live, target, &sp.other_weights(&sp.record_type)) {
            out.push(format!("would refuse: {why}"));
            return Ok(out);
        }
        // As the rollback itself judges the side it raises.
        match shift::raised_sides_serve(sides, rb, &sp, false).await {
            Ok(unchecked) => out.extend(unchecked),
            Err(super::PlanError::Refused(why)) => {
                out.push(format!("would refuse: {why}"));
                return Ok(out);
            }
            Err(e) => {
                out.push(format!("NOT CHECKED: whether {} can take the share this raises ({e})", rb.rollout.from))
            }
        }
        out.push(format!("would set {}", sp.describe()));
        if !sp.is_noop() {
            out.push(format!("change batch: {}", sp.batch_json()));
        }
    }
    Ok(out)
}

/// Starts `cutover rollout <runbook> --yes` as its own process, with the
/// cockpit's endpoint and Redis variables in `env` (a sandbox's live only in
/// the cockpit's memory: without them the rollout would talk to real AWS), in its own
/// process group, so it outlives the cockpit and ignores its Ctrl-C), with
/// output appended to `<state>/<runbook>.rollout.out`. Returns (pid, output).
pub fn spawn_detached(
    _who: &crate::authority::Actor,
    rb: &Runbook,
    global: &[String],
    extra: &[&str],
    env: &BTreeMap<String, String>,
) -> Result<(u32, PathBuf), String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the cutover binary: {e}"))?;
    let out_path = crate::paths::state_dir().join(format!("{}.rollout.out", rb.name));
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&out_path)
            .map_err(|e| format!("{}: {e}", out_path.display()))
    };
    let child = std::process::Command::new(exe)
        .args(global)
        .arg("rollout")
        .arg(&rb.source)
        .arg("--yes")
        .args(extra)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the rollout: {e}"))?;
    let pid = child.id();
    // Reaped when it ends; if the cockpit quits first, init adopts it.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok((pid, out_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_is_refused_only_when_it_raises_the_new_sides_share() {
        // 255/30 is 10.5%: a rollback to it from 75/25 lowers staging's share.
        assert_eq!(rollback_raises("staging", (75, 25), (255, 30), &[]), None);
        assert_eq!(rollback_raises("staging", (75, 25), (100, 0), &[]), None);
        assert_eq!(rollback_raises("staging", (75, 25), (75, 25), &[]), None);
        // 0/0 is an equal split to Route53: 50%, more than 10%.
        assert_eq!(
            rollback_raises("staging", (90, 10), (0, 0), &[]).as_deref(),
            Some("it would raise staging's share of the traffic from 10.0% (live 90/10) to 50.0% (0/0)")
        );
        assert!(rollback_raises("staging", (75, 25), (70, 30), &[]).is_some());
        assert!(rollback_raises("staging", (200, 40), (75, 25), &[]).is_some(), "16.7% to 25%");
        assert!(rollback_raises("staging", (10, 10), (80, 20), &[255]).is_some(), "3.6% to 5.6%, beside 255");
    }

    /// A promote is for the soak it was confirmed in: another step, or the
    /// same step soaking again (after a pause and resume, or a retry after
    /// a rollback), is not what the person saw.
    #[test]
    fn a_promote_is_stale_once_its_step_or_its_soak_has_changed() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let soaking = |step: usize, since: u64| EngineState {
            step,
            phase: RolloutPhase::Soaking { since: t(since), until: t(since + 300) },
            ..EngineState::new(1)
        };
        let note = RequestNote { text: "ana".into(), step: Some(1), soak_since: Some(t(100)) };
        assert_eq!(stale_promote(&note, &soaking(1, 100)), None);
        assert_eq!(
            stale_promote(&note, &soaking(2, 500)).as_deref(),
            Some("promoting step 2 was confirmed, but the rollout is at step 3 now")
        );
        let again = stale_promote(&note, &soaking(1, 400)).unwrap_or_default();
        assert!(again.starts_with("promoting step 2's soak was confirmed, but that soak has ended"), "{again}");
        let waiting = EngineState { step: 1, phase: RolloutPhase::WaitingTtl { until: t(700) }, ..EngineState::new(1) };
        assert!(stale_promote(&note, &waiting).is_some(), "a retry of the step, not yet soaking");
        // Confirmed outside a soak (no start to compare), or with no step at all (an older version): the step decides.
        let no_soak = RequestNote { soak_since: None, ..note.clone() };
        assert_eq!(stale_promote(&no_soak, &waiting), None);
        assert_eq!(stale_promote(&RequestNote::new("old"), &soaking(3, 900)), None);
    }
}
