//! Running the rollout: the engine driven by live gate measurements, every
//! weight change through `shift`, audited, and the state written atomically
//! after every change so a restart (even after kill -9) resumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::shift;
use crate::audit::{AuditLine, AuditLog};
use crate::aws::Clients;
use crate::engine::{Engine, EngineState, Input, Output, Phase, Plan, Weights};
use crate::live::Session;
use crate::live::workers::WorkerContext;
use crate::runbook::Runbook;
use crate::status::probe::ProbePolicy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub runbook: String,
    /// Changes when the steps, soak, TTL or gates change.
    pub plan_hash: String,
    pub engine: EngineState,
    /// The weights cutover last sent.
    pub applied: Option<Weights>,
    /// A change sent but not yet seen INSYNC.
    pub pending_change: Option<String>,
    pub updated_at: String,
}

pub fn state_path(name: &str) -> PathBuf {
    crate::paths::state_dir().join(format!("{name}.rollout.json"))
}

fn lock_path(name: &str) -> PathBuf {
    crate::paths::state_dir().join(format!("{name}.rollout.lock"))
}

/// What another process (`cutover abort`, `pause`, `promote`, the cockpit)
/// asks a running rollout to do, through a file it reads every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Abort,
    Pause,
    Promote,
}

impl Request {
    /// In the order a rollout acts on them: abort wins.
    pub const ALL: [Request; 3] = [Request::Abort, Request::Pause, Request::Promote];

    pub fn path(self, name: &str) -> PathBuf {
        let what = match self {
            Request::Abort => "abort",
            Request::Pause => "pause",
            Request::Promote => "promote",
        };
        crate::paths::state_dir().join(format!("{name}.{what}-request"))
    }

    /// Leaves the request (the text says who and why) for the rollout.
    pub fn ask(self, name: &str, text: &str) -> Result<(), String> {
        let path = self.path(name);
        crate::paths::write_atomic(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The most urgent waiting request, removed as it is taken.
    pub fn take(name: &str) -> Option<(Request, String)> {
        Request::ALL.into_iter().find_map(|r| {
            let text = std::fs::read_to_string(r.path(name)).ok()?;
            let _ = std::fs::remove_file(r.path(name));
            Some((r, text.trim().to_string()))
        })
    }
}

/// Where `cutover abort` asks a running rollout to abort.
pub fn abort_request_path(name: &str) -> PathBuf {
    Request::Abort.path(name)
}

/// True while a `cutover rollout` of this runbook holds its lock.
pub fn is_running(name: &str) -> Result<bool, String> {
    Ok(RolloutLock::try_take(name)?.is_none())
}

/// FNV-1a over the plan's JSON: stable across builds, unlike std's hasher.
pub fn plan_hash(rb: &Runbook) -> String {
    let body = serde_json::json!({"steps": rb.rollout.steps, "soak": rb.rollout.soak.as_millis() as u64, "ttl": rb.dns.ttl, "gates": rb.rollout.gates, "from": rb.rollout.from, "to": rb.rollout.to});
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

pub fn load_state(name: &str) -> Result<Option<RolloutState>, String> {
    let path = state_path(name);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{}: damaged rollout state ({e}); move it away to start over", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn save_state(s: &RolloutState) -> Result<(), String> {
    let path = state_path(&s.runbook);
    let body = serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?;
    crate::paths::write_atomic(&path, &body)
        .map_err(|e| format!("{}: cannot save the rollout state: {e}", path.display()))
}

/// An exclusive lock held while a rollout runs (released when dropped).
pub struct RolloutLock {
    /// Keeps the descriptor, and with it the flock, alive.
    _file: std::fs::File,
}

impl RolloutLock {
    /// None when another process holds it.
    pub fn try_take(name: &str) -> Result<Option<RolloutLock>, String> {
        Ok(crate::paths::try_lock(&lock_path(name))?.map(|f| RolloutLock { _file: f }))
    }
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

impl From<String> for RolloutError {
    fn from(m: String) -> Self {
        RolloutError::Failed(m)
    }
}

impl From<&str> for RolloutError {
    fn from(m: &str) -> Self {
        RolloutError::Failed(m.to_string())
    }
}

impl From<super::PlanError> for RolloutError {
    fn from(e: super::PlanError) -> Self {
        match e {
            super::PlanError::Refused(_) => RolloutError::Refused(e.to_string()),
            _ => RolloutError::Failed(e.to_string()),
        }
    }
}

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
}

#[derive(Clone)]
pub struct Context {
    pub rb: Runbook,
    pub clients: Clients,
    pub region: String,
    pub account: String,
    pub vars: BTreeMap<String, String>,
    pub adopt_live: bool,
    pub restart: bool,
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
}

impl Runner<'_> {
    fn persist(&mut self) -> Result<(), String> {
        self.state.engine = self.engine.state.clone();
        self.state.updated_at = crate::status::rfc3339(SystemTime::now());
        save_state(&self.state)
    }

    fn audit(
        &self,
        action: &str,
        stage: &str,
        before: Option<Weights>,
        after: Weights,
        detail: String,
    ) -> Result<(), String> {
        let (from, to) = (&self.cx.rb.rollout.from, &self.cx.rb.rollout.to);
        let w = |w: Weights| serde_json::json!({ from: w.0, to: w.1 });
        self.log.append(&AuditLine {
            time: crate::status::rfc3339(SystemTime::now()),
            operator: crate::progress::operator(),
            account: Some(self.cx.account.clone()),
            region: self.cx.region.clone(),
            runbook: self.cx.rb.name.clone(),
            action: action.into(),
            stage: stage.into(),
            before: before.map_or(serde_json::Value::Null, w),
            after: w(after),
            detail,
        })
    }

    /// Sends weights and waits for INSYNC; feeds the engine.
    async fn set_weights(&mut self, weights: Weights, step: Option<usize>) -> Result<Vec<Output>, String> {
        let plan = shift::plan(&self.cx.clients, &self.cx.rb, weights).await?;
        let before = (plan.from.record.weight, plan.to.record.weight);
        if step.is_none() {
            self.rolled_back_from = Some(before);
        }
        let action = match step {
            Some(s) => {
                format!("rollout step {}/{} ({}%)", s + 1, self.engine.plan.steps.len(), self.engine.plan.steps[s])
            }
            None => "rollout abort".to_string(),
        };
        let mut out = Vec::new();
        if plan.is_noop() {
            (self.say)(&format!("{action}: weights already {}/{}", weights.0, weights.1));
            self.state.applied = Some(weights);
            if let Some(s) = step {
                out.extend(
                    self.engine.handle(
                        Input::ShiftApplied { step: s, change_id: "(already applied)".into() },
                        SystemTime::now(),
                    ),
                );
                out.extend(self.engine.handle(Input::InSync { step: s }, SystemTime::now()));
            }
            self.persist()?;
            return Ok(out);
        }
        self.audit(&action, "intent", Some(before), weights, plan.describe())?;
        let change = match shift::apply(&self.cx.clients, &plan).await {
            Ok(c) => c,
            Err(e) => {
                let _ = self.audit(&action, "failed", Some(before), weights, e.to_string());
                return Err(format!("{action}: the change was not accepted: {e}; weights unchanged"));
            }
        };
        self.state.applied = Some(weights);
        self.state.pending_change = Some(change.clone());
        self.audit(&action, "applied", Some(before), weights, format!("change {change}"))?;
        if let Some(s) = step {
            out.extend(
                self.engine.handle(Input::ShiftApplied { step: s, change_id: change.clone() }, SystemTime::now()),
            );
        }
        self.persist()?;
        (self.say)(&format!("{action}: {} sent as {change}", plan.describe()));
        // A forward step's wait gives way to an abort; a rollback's does not.
        let name = self.cx.rb.name.clone();
        let interrupt = move || step.is_some() && abort_request_path(&name).exists();
        let took = match shift::wait_insync_or(&self.cx.clients, &change, Duration::from_secs(300), &interrupt).await? {
            shift::Waited::InSync(took) => took,
            shift::Waited::Interrupted => {
                (self.say)(&format!("{action}: abort asked for while waiting for INSYNC"));
                return Ok(out);
            }
        };
        self.audit(
            &action,
            "insync",
            Some(before),
            weights,
            format!("change {change} INSYNC after {:.1} s", took.as_secs_f64()),
        )?;
        self.state.pending_change = None;
        if let Some(s) = step {
            out.extend(self.engine.handle(Input::InSync { step: s }, SystemTime::now()));
        }
        self.persist()?;
        Ok(out)
    }
}

/// The live weights (from, to), read from Route53.
pub async fn live_weights(clients: &Clients, rb: &Runbook) -> Result<Weights, String> {
    let p = shift::plan(clients, rb, (0, 0)).await?;
    Ok((p.from.record.weight, p.to.record.weight))
}

pub async fn run(cx: &Context, say: &mut (dyn FnMut(&str) + Send)) -> Result<Outcome, RolloutError> {
    let rb = &cx.rb;
    let plan = Plan::from_runbook(rb)?;
    let _lock = RolloutLock::try_take(&rb.name)?.ok_or_else(|| {
        format!("another cutover rollout of {} is running (lock {})", rb.name, lock_path(&rb.name).display())
    })?;
    let hash = plan_hash(rb);
    let existing = load_state(&rb.name)?;
    let mut state = match existing {
        Some(s) if s.plan_hash != hash && !cx.restart => {
            return Err(RolloutError::Refused(format!(
                "the runbook's rollout (steps, soak, TTL or gates) changed since this rollout started ({}); rerun with --restart to start over from the live weights",
                state_path(&rb.name).display()
            )));
        }
        Some(s) if s.plan_hash == hash && !cx.restart => s,
        _ => RolloutState {
            runbook: rb.name.clone(),
            plan_hash: hash,
            engine: EngineState::new(plan.gates.len()),
            applied: None,
            pending_change: None,
            updated_at: String::new(),
        },
    };
    if state.engine.phase == Phase::Done {
        say("this rollout is already complete (--restart runs it again)");
        return Ok(Outcome::Done);
    }
    let live = live_weights(&cx.clients, rb).await?;
    let expected = state.applied.unwrap_or(plan.initial);
    let mut engine = Engine { plan, state: state.engine.clone() };
    if live != expected {
        if !cx.adopt_live {
            return Err(RolloutError::Refused(format!(
                "the live weights are {}/{} but the rollout expects {}/{} (someone changed them, or the rollout was interrupted mid-change); check, then rerun with --adopt-live to continue from the live weights",
                live.0, live.1, expected.0, expected.1
            )));
        }
        say(&format!("adopting the live weights {}/{}", live.0, live.1));
        state.applied = Some(live);
        // Continue from what the live weights mean, never from a phase they contradict.
        let active = !matches!(engine.state.phase, Phase::Idle | Phase::Aborted | Phase::Done);
        if active && live != engine.plan.weights_at(engine.state.step) {
            engine.state.phase = if live == engine.rollback_weights() { Phase::Aborted } else { Phase::Shifting };
        }
    }
    let mut runner = Runner { cx, engine, state, log: AuditLog::for_runbook(&rb.name), say, rolled_back_from: None };

    let mut ctx = WorkerContext::new(rb.clone(), cx.clients.clone(), ProbePolicy::from_env());
    ctx.vars.extend(cx.vars.clone());
    ctx.intervals.traffic = Duration::from_secs(2);
    ctx.intervals.environment = Duration::from_secs(3);
    ctx.intervals.health = Duration::from_secs(2);
    ctx.intervals.redis = Duration::from_secs(2);
    ctx.intervals.alarms = rb.rollout.gate_interval.min(Duration::from_secs(15));
    let mut session = Session::start(Arc::new(ctx));
    session.first_round(rb, Duration::from_secs(30)).await;

    let now = SystemTime::now;
    // An abort asked for while no rollout ran is acted on first, not dropped;
    // a pause or promote left from then is stale and dropped.
    for r in [Request::Pause, Request::Promote] {
        let _ = std::fs::remove_file(r.path(&rb.name));
    }
    if let Ok(reason) = std::fs::read_to_string(abort_request_path(&rb.name)) {
        let _ = std::fs::remove_file(abort_request_path(&rb.name));
        if !matches!(runner.engine.state.phase, Phase::Idle | Phase::Aborted | Phase::Done) {
            let out = runner.engine.handle(Input::Abort { reason: reason.trim().to_string() }, now());
            runner.persist()?;
            for o in out {
                if let Output::SetWeights { weights, step: None } = o {
                    runner.set_weights(weights, None).await?;
                    runner.audit("rollout abort", "done", runner.rolled_back_from, weights, reason.trim().into())?;
                }
            }
            return Ok(Outcome::Aborted(reason.trim().to_string()));
        }
    }
    // An abort interrupted before its rollback reached Route53 is finished first.
    if runner.engine.state.phase == Phase::Aborted && live != runner.engine.rollback_weights() && !cx.adopt_live {
        let target = runner.engine.rollback_weights();
        let line = format!("finishing the interrupted rollback to {}/{}", target.0, target.1);
        (runner.say)(&line);
        runner.set_weights(target, None).await?;
    }
    // A paused rollout resumes where it paused.
    let mut outputs = match runner.engine.state.phase {
        Phase::Paused => runner.engine.handle(Input::Resume, now()),
        _ => Vec::new(),
    };
    outputs.extend(match runner.engine.state.phase {
        Phase::Idle | Phase::Aborted | Phase::Done => runner.engine.handle(Input::Start, now()),
        Phase::Paused => Vec::new(),
        Phase::Shifting | Phase::RollingBack => {
            let step = runner.engine.state.step;
            vec![Output::SetWeights { weights: runner.engine.plan.weights_at(step), step: Some(step) }]
        }
        Phase::WaitingInsync => {
            let step = runner.engine.state.step;
            if let Some(change) = runner.state.pending_change.clone() {
                shift::wait_insync(&cx.clients, &change, Duration::from_secs(300)).await?;
            }
            runner.engine.handle(Input::InSync { step }, now())
        }
        Phase::WaitingTtl { .. } => {
            let line = format!("resuming step {} of {}", runner.engine.state.step + 1, runner.engine.plan.steps.len());
            (runner.say)(&line);
            Vec::new()
        }
        Phase::Soaking { .. } => {
            // Measurements from before the interruption are not evidence now.
            runner.engine.start_soak(now());
            let (step, steps) = (runner.engine.state.step + 1, runner.engine.plan.steps.len());
            (runner.say)(&format!("resuming step {step} of {steps} with a fresh soak"));
            Vec::new()
        }
    });
    runner.persist()?;
    let mut last_measured: Vec<Option<SystemTime>> = vec![None; rb.rollout.gates.len()];
    let mut last_reading: Vec<Option<SystemTime>> = vec![None; rb.rollout.gates.len()];
    let mut quiet = std::collections::BTreeSet::new();
    loop {
        while !outputs.is_empty() {
            let mut next = Vec::new();
            for o in std::mem::take(&mut outputs) {
                match o {
                    Output::SetWeights { weights, step } => {
                        if step.is_none() {
                            // The abort decision is on disk before its rollback is sent.
                            runner.persist()?;
                        }
                        next.extend(runner.set_weights(weights, step).await?)
                    }
                    Output::Log(line) => {
                        // "no data yet" is said once per gate and step, not every interval.
                        if !line.ends_with("no data yet") || quiet.insert((runner.engine.state.step, line.clone())) {
                            (runner.say)(&line);
                        }
                    }
                    Output::Paused(reason) => {
                        runner.persist()?;
                        runner.audit(
                            "rollout pause",
                            "paused",
                            runner.state.applied,
                            runner.state.applied.unwrap_or(expected),
                            reason.clone(),
                        )?;
                        return Ok(Outcome::Paused(reason));
                    }
                    Output::Aborted { reason, weights } => {
                        runner.persist()?;
                        runner.audit("rollout abort", "done", runner.rolled_back_from, weights, reason.clone())?;
                        return Ok(Outcome::Aborted(reason));
                    }
                    Output::Done => {
                        runner.persist()?;
                        let calls = cx.clients.calls.total();
                        let steps = runner.engine.plan.steps.len() as u64;
                        (runner.say)(&format!(
                            "{calls} AWS calls in this run, {} per step (shifts, INSYNC waits, live polling and gates)",
                            calls / steps.max(1)
                        ));
                        return Ok(Outcome::Done);
                    }
                }
            }
            outputs = next;
        }
        session.run_until(tokio::time::Instant::now() + Duration::from_secs(1)).await;
        if let Some((request, text)) = Request::take(&rb.name) {
            outputs = match request {
                Request::Abort => runner.engine.handle(Input::Abort { reason: text }, now()),
                Request::Pause => {
                    (runner.say)(&format!("pause asked for: {text}"));
                    runner.engine.handle(Input::Pause, now())
                }
                Request::Promote => {
                    let step = runner.engine.state.step;
                    let out = runner.engine.handle(Input::Promote, now());
                    if runner.engine.state.step != step || runner.engine.state.phase == Phase::Done {
                        let w = runner.engine.plan.weights_at(step);
                        let detail = format!("step {} promoted (rest of its soak skipped): {text}", step + 1);
                        runner.audit("rollout promote", "done", Some(w), w, detail)?;
                    }
                    out
                }
            };
            runner.persist()?;
            continue;
        }
        outputs = runner.engine.handle(Input::Tick, now());
        if let Phase::Soaking { since, .. } = runner.engine.state.phase {
            let snap = crate::status::snapshot(rb, &session.state, &cx.region, now());
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
                let m = match (due, super::gates::from_snapshot(rb, &g.kind, &snap)) {
                    (Due::Stalled(d), _) => crate::engine::Measurement::Error(format!(
                        "no new reading of its sources for {} s (a poll is stuck or backing off)",
                        d.as_secs()
                    )),
                    (_, Some(m)) => m,
                    (_, None) => super::gates::metric(&cx.clients, &g.kind, &snap, rb, since).await,
                };
                if matches!(m, crate::engine::Measurement::Fail(_) | crate::engine::Measurement::Error(_)) {
                    (runner.say)(&format!("gate {} ({}): {m:?}", i + 1, crate::runbook::gate_label(&g.kind)));
                }
                outputs.extend(runner.engine.handle(Input::Measure { gate: i, result: m }, now()));
                if runner.engine.state.phase == Phase::Aborted || runner.engine.state.phase == Phase::Paused {
                    break;
                }
            }
            runner.persist()?;
        } else if !outputs.is_empty() {
            runner.persist()?;
        }
    }
}

/// `cutover abort`: asks a running rollout to abort, or, when none runs,
/// sets the weights back itself. Returns what it did.
pub async fn abort(cx: &Context, reason: &str, say: &mut (dyn FnMut(&str) + Send)) -> Result<String, RolloutError> {
    let rb = &cx.rb;
    let Some(_lock) = RolloutLock::try_take(&rb.name)? else {
        crate::paths::write_atomic(&abort_request_path(&rb.name), reason.as_bytes()).map_err(|e| e.to_string())?;
        say("a rollout is running: asked it to abort; waiting for its rollback");
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(Some(s)) = load_state(&rb.name)
                && s.engine.phase == Phase::Aborted
                && s.pending_change.is_none()
                && !abort_request_path(&rb.name).exists()
            {
                // Done only when the live weights are the rollback's, not merely
                // when the decision is on disk.
                let target = Engine { plan: Plan::from_runbook(rb)?, state: s.engine.clone() }.rollback_weights();
                let live = live_weights(&cx.clients, rb).await?;
                if live == target && s.applied == Some(target) {
                    return Ok(format!("the running rollout rolled back to {}/{}", live.0, live.1));
                }
            }
        }
        return Err(
            "the running rollout did not confirm its rollback within 120 s; check `cutover status` and the audit log"
                .into(),
        );
    };
    let plan = Plan::from_runbook(rb)?;
    let mut state = load_state(&rb.name)?.unwrap_or(RolloutState {
        runbook: rb.name.clone(),
        plan_hash: plan_hash(rb),
        engine: EngineState::new(plan.gates.len()),
        applied: None,
        pending_change: None,
        updated_at: String::new(),
    });
    let mut engine = Engine { plan, state: state.engine.clone() };
    let target = engine.rollback_weights();
    // The decision is on disk before the rollback is sent: an interrupted
    // abort is finished by the next `cutover rollout`, never forgotten.
    engine.state.phase = Phase::Aborted;
    engine.state.reason = Some(reason.to_string());
    state.engine = engine.state.clone();
    let mut runner = Runner { cx, engine, state, log: AuditLog::for_runbook(&rb.name), say, rolled_back_from: None };
    runner.persist()?;
    runner.set_weights(target, None).await?;
    runner.persist()?;
    runner.audit("rollout abort", "done", runner.rolled_back_from, target, reason.to_string())?;
    Ok(format!("weights set back to {}/{}", target.0, target.1))
}

/// Asks the running rollout to pause or promote, and waits (up to `limit`)
/// until its saved state shows it did. Refused when none runs.
pub async fn request(name: &str, req: Request, text: &str, limit: Duration) -> Result<String, RolloutError> {
    let verb = if req == Request::Pause { "pause" } else { "promote" };
    if !is_running(name)? {
        let saved =
            load_state(name)?.map_or("no saved state".to_string(), |s| format!("saved phase {:?}", s.engine.phase));
        return Err(RolloutError::Refused(format!(
            "refused: no rollout of {name} is running ({saved}); nothing to {verb}. Start or resume one with `cutover rollout`"
        )));
    }
    let before = load_state(name)?.map(|s| s.engine);
    req.ask(name, text)?;
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let taken = !req.path(name).exists();
        let Some(now) = load_state(name)?.map(|s| s.engine) else { continue };
        let moved = before.as_ref().is_none_or(|b| b.step != now.step || b.phase != now.phase);
        match req {
            Request::Pause if now.phase == Phase::Paused => {
                return Ok(format!(
                    "the rollout paused at step {}; `cutover rollout` resumes it, `cutover abort` rolls back",
                    now.step + 1
                ));
            }
            Request::Promote
                if taken && (now.phase == Phase::Done || before.as_ref().is_some_and(|b| b.step != now.step)) =>
            {
                return Ok(match now.phase {
                    Phase::Done => "promoted: the last step passed; the rollout is complete".to_string(),
                    _ => format!("promoted: the rollout moved on to step {}", now.step + 1),
                });
            }
            Request::Promote if taken && !moved && start.elapsed() > Duration::from_secs(3) => {
                return Err(RolloutError::Failed(format!(
                    "the rollout did not promote: it is {:?}, not in a step it can skip",
                    now.phase
                )));
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_file(req.path(name));
    Err(RolloutError::Failed(format!(
        "the rollout did not {verb} within {} s (it acts on requests between waits); the request was withdrawn: check `cutover status` and try again",
        limit.as_secs()
    )))
}

/// What `cutover rollout` would do now, without doing any of it: the plan,
/// the live weights, the saved state and the next change batch.
pub async fn preview(cx: &Context) -> Result<Preview, RolloutError> {
    let rb = &cx.rb;
    let plan = Plan::from_runbook(rb)?;
    let mut out = vec![format!(
        "plan: {} (soak {} s, TTL {} s, {} gate(s))",
        plan.steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → "),
        plan.soak.as_secs(),
        plan.ttl.as_secs(),
        plan.gates.len()
    )];
    out.extend(plan.gates.iter().map(|g| format!("  {}", g.name)));
    let live = live_weights(&cx.clients, rb).await?;
    out.push(format!("live weights: {} {} / {} {}", rb.rollout.from, live.0, rb.rollout.to, live.1));
    if is_running(&rb.name)? {
        out.push("a rollout of this runbook is running now: `cutover rollout` would be refused".into());
        return Ok(Preview { lines: out, verdict: Verdict::Running });
    }
    let saved = load_state(&rb.name)?;
    let state = match saved {
        Some(s) if s.plan_hash != plan_hash(rb) && !cx.restart => {
            out.push("would refuse: the rollout changed since the saved state; --restart starts over".into());
            return Ok(Preview { lines: out, verdict: Verdict::PlanChanged });
        }
        Some(s) if !cx.restart => {
            out.push(format!("saved state: step {} of {}, {:?}", s.engine.step + 1, plan.steps.len(), s.engine.phase));
            Some(s)
        }
        _ => {
            out.push("saved state: none; the rollout starts at step 1".into());
            None
        }
    };
    let expected = state.as_ref().and_then(|s| s.applied).unwrap_or(plan.initial);
    if live != expected && !cx.adopt_live {
        out.push(format!(
            "would refuse: the live weights {}/{} differ from the expected {}/{} (--adopt-live continues from the live ones)",
            live.0, live.1, expected.0, expected.1
        ));
        return Ok(Preview { lines: out, verdict: Verdict::LiveWeightsDiffer { live, expected } });
    }
    let engine = Engine { plan: plan.clone(), state: state.map_or(EngineState::new(plan.gates.len()), |s| s.engine) };
    let next = match engine.state.phase {
        Phase::Done => {
            out.push("would do nothing: the rollout is complete".into());
            return Ok(Preview { lines: out, verdict: Verdict::Complete });
        }
        Phase::Idle | Phase::Aborted => engine.state.last_good.map_or(0, |s| s + 1),
        _ => engine.state.step,
    };
    let weights = plan.weights_at(next);
    let sp = shift::plan(&cx.clients, rb, weights).await?;
    out.push(format!("would start at step {} of {}: {}", next + 1, plan.steps.len(), sp.describe()));
    if !sp.is_noop() {
        out.push(format!("change batch: {}", sp.batch_json()));
    }
    Ok(Preview { lines: out, verdict: Verdict::Go })
}

/// What `cutover abort` would do now, without doing it.
pub async fn abort_preview(cx: &Context) -> Result<Vec<String>, RolloutError> {
    let rb = &cx.rb;
    let plan = Plan::from_runbook(rb)?;
    let state = load_state(&rb.name)?;
    let engine = Engine { plan: plan.clone(), state: state.map_or(EngineState::new(plan.gates.len()), |s| s.engine) };
    let target = engine.rollback_weights();
    let why = match engine.state.last_good {
        Some(s) if s < plan.steps.len() => {
            format!("step {} ({}%), the last whose gates all passed", s + 1, plan.steps[s])
        }
        _ => "the initial weights (no step passed yet)".to_string(),
    };
    let mut out = vec![format!("rollback target: {}/{}, {why}", target.0, target.1)];
    if is_running(&rb.name)? {
        out.push("a rollout is running: `cutover abort` would ask it to roll back and wait for INSYNC".into());
    } else {
        let sp = shift::plan(&cx.clients, rb, target).await?;
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
