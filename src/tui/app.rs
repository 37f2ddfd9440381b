//! The cockpit's state as data: what `update` changes and `render` draws.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::keys::{KeyAction, Keymap};
use super::pane::Pane;
use crate::drive::actions::ActionPlan;
use crate::drive::shift::ShiftPlan;
use crate::live::{self, LiveState};
use crate::runbook::Runbook;
use crate::status::{CheckOutcome, Snapshot, snapshot};
use crate::store::checklist::{ChecklistState, item_key};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Errors,
    Palette {
        input: String,
        selected: usize,
    },
    Filter {
        input: String,
    },
    Note {
        key: String,
        input: String,
        /// The note when the box opened: saved only over that one.
        seen: Option<String>,
    },
    /// A planned change waiting for y / n; the plan is `App::pending_change`.
    Confirm {
        key: String,
    },
    /// A planned change with no rollback, waiting for its environment's name
    /// to be typed (y is not enough); the plan is `App::pending_change`.
    ConfirmName {
        key: String,
        input: String,
    },
    /// Typing the percent of traffic for the rollout's `to` side.
    ShiftTo {
        input: String,
    },
}

/// Rollout controls that change traffic, so they are confirmed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Start or resume `cutover rollout` as its own process.
    Start,
    /// The live weights differ from the rollout's state: continue from them
    /// (`cutover rollout --adopt-live`).
    AdoptAndStart,
    /// Skip the rest of the current step's soak.
    Promote,
    /// Roll back to the last good step.
    Abort,
}

impl Control {
    /// The control's own name, and the key it is planned, applied and
    /// answered under: each is its own operation, so one's answer never
    /// clears another's quit guard.
    pub fn action(self) -> &'static str {
        match self {
            Control::Start | Control::AdoptAndStart => "rollout start",
            Control::Promote => "rollout promote",
            Control::Abort => "rollout abort",
        }
    }
}

/// The key a pause's answer comes under: not a rollout control's, since a
/// pause is asked while an abort or promote may still be applied.
pub const PAUSE_KEY: &str = "rollout pause";

/// A change planned from live data, shown in the confirm popup.
#[derive(Debug, Clone)]
pub enum PendingChange {
    Item(ActionPlan),
    /// An item with nothing left to do whose last run stopped before its
    /// end: confirming records it applied (which starts a time gate
    /// after it), so a look at it writes nothing.
    FoundDone(ActionPlan),
    Shift(Box<ShiftPlan>),
    /// `step`: the step (from 0) shown, and when its soak began, for a
    /// promote: only that soak is skipped. `live`: the live weights shown, for an adopt: only those are.
    Rollout {
        control: Control,
        lines: Vec<String>,
        step: Option<(usize, Option<std::time::SystemTime>)>,
        live: Option<(u8, u8)>,
    },
}

/// What the confirm popup shows.
pub struct Summary {
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub details: Vec<String>,
}

impl PendingChange {
    /// The side it is made on: an item's own (its environment's account and
    /// region), Route53's for weights and rollouts.
    pub fn side(&self) -> crate::runbook::Side {
        match self {
            PendingChange::Item(p) | PendingChange::FoundDone(p) => p.side.clone(),
            PendingChange::Shift(_) | PendingChange::Rollout { .. } => crate::runbook::Side::Dns,
        }
    }

    /// Why there is nothing to confirm, if so.
    pub fn noop(&self) -> Option<String> {
        match self {
            PendingChange::Item(p) => p.noop.clone(),
            PendingChange::Shift(p) if p.is_noop() => Some(format!("the records already have {}", p.after())),
            _ => None,
        }
    }

    pub fn summary(&self) -> Summary {
        match self {
            PendingChange::Item(p) => Summary {
                name: p.name.clone(),
                before: Some(p.before.to_string()),
                after: Some(p.after.to_string()),
                details: p.steps.iter().map(|s| s.describe()).chain(p.steps.iter().flat_map(unchecked)).collect(),
            },
            PendingChange::FoundDone(p) => Summary {
                name: format!("{}: record it as applied?", p.name),
                before: Some(p.before.to_string()),
                after: Some(p.after.to_string()),
                details: vec![
                    format!("nothing to do: {}", p.noop.clone().unwrap_or_default()),
                    "its last run stopped before its end: nothing is sent; confirming writes its `applied` line \
                     (a time gate after this item starts from it)"
                        .into(),
                ],
            },
            PendingChange::Shift(p) => Summary {
                name: format!("shift weights: {} to {}%", p.to.environment, p.weights.1),
                before: Some(p.before().to_string()),
                after: Some(p.after().to_string()),
                details: [p.describe(), "both records in one change batch, then a wait for INSYNC".into()]
                    .into_iter()
                    .chain(p.unchecked.iter().cloned())
                    .collect(),
            },
            PendingChange::Rollout { control, lines, .. } => {
                let (name, last) = match control {
                    Control::Start => {
                        ("start the gated rollout", "runs as its own process: quitting the cockpit does not stop it")
                    }
                    Control::AdoptAndStart => (
                        "the live weights differ from the rollout's: adopt them and continue?",
                        "runs `cutover rollout --adopt-live` as its own process",
                    ),
                    Control::Promote => {
                        ("promote: skip the rest of this step's soak", "the gates' remaining evidence is skipped")
                    }
                    Control::Abort => ("ABORT the rollout and roll back", "the weights go back to the target above"),
                };
                let mut details = lines.clone();
                details.push(last.into());
                Summary { name: name.into(), before: None, after: None, details }
            }
        }
    }
}

/// What a step's planning could not check (a shift's raised side unread).
fn unchecked(step: &crate::drive::actions::Step) -> Vec<String> {
    match step {
        crate::drive::actions::Step::Shift(p) => p.unchecked.clone(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckRun {
    /// Waiting for every source to report again after `since`.
    Running {
        since: SystemTime,
    },
    Done {
        outcome: CheckOutcome,
        detail: String,
        at: SystemTime,
    },
}

/// How the last change applied to an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionResult {
    pub ok: bool,
    pub at: SystemTime,
    /// It was the item's rollback: its row must not say the action is done.
    pub rollback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    pub text: String,
}

pub struct Header {
    pub profile: Option<String>,
    pub read_only: bool,
}

pub struct App {
    pub rb: Arc<Runbook>,
    pub region: String,
    pub header: Header,
    pub live: LiveState,
    /// Live events held back while paused.
    pub pending: Vec<live::LiveEvent>,
    pub paused: bool,
    pub now: SystemTime,
    pub size: (u16, u16),
    pub focus: Pane,
    /// The Parity pane is open, in the Log's place (`layout::Content`).
    pub parity_open: bool,
    pub zoomed: bool,
    pub selected: BTreeMap<Pane, usize>,
    pub overlay: Overlay,
    pub filter: String,
    pub keymap: Keymap,
    pub theme: super::theme::Theme,
    pub checklist: ChecklistState,
    /// The checklist as the store last gave it: what the pane goes back to
    /// when an edit shown at once is not saved.
    pub checklist_stored: ChecklistState,
    /// Checklist changes written but not yet answered: the team's view
    /// waits for them rather than showing the state from before.
    pub checklist_edits: usize,
    /// When the last answer to a checklist edit came: a team poll begun
    /// before it may not hold that edit, so its checklist is not shown.
    pub checklist_saved_at: Option<std::time::Instant>,
    /// Why the shared checklist has not been read yet (the store did not
    /// answer when the cockpit opened): its ticks are unknown, not none.
    pub checklist_unread: Option<String>,
    pub operator: String,
    pub runs: BTreeMap<String, CheckRun>,
    pub log: VecDeque<LogLine>,
    pub quit: bool,
    pub pending_change: Option<PendingChange>,
    /// Outcome of the last action or rollback applied per item.
    pub action_results: BTreeMap<String, ActionResult>,
    /// Items whose last plan asked for was their rollback (`b`).
    pub rollback_planned: std::collections::BTreeSet<String>,
    /// The keys in `applying` whose change is an item's rollback.
    pub rolling_back: std::collections::BTreeSet<String>,
    /// How far each running action (a Redis copy) has got: (done, total, line).
    pub action_progress: BTreeMap<String, (u64, u64, String)>,
    /// The changes confirmed and not yet finished, by key: quitting stops them.
    pub applying: std::collections::BTreeSet<String>,
    /// Quit was pressed once while a change was being applied: the next
    /// press quits anyway.
    pub quit_asked: bool,
    /// Derived from `live` after every change; what render draws.
    pub snap: Snapshot,
    /// The audit lines time-gated items wait on (`drive::not_before`),
    /// reloaded by the loop when the audit log grows.
    pub gate_audit: Vec<crate::store::audit::AuditLine>,
}

const LOG_LINES: usize = 500;

impl App {
    pub fn new(
        rb: Runbook,
        region: String,
        header: Header,
        keymap: Keymap,
        checklist: ChecklistState,
        operator: String,
        now: SystemTime,
    ) -> App {
        let live = LiveState::default();
        let snap = snapshot(&rb, &live, &region, now);
        App {
            rb: Arc::new(rb),
            region,
            header,
            live,
            pending: Vec::new(),
            paused: false,
            now,
            size: (80, 24),
            focus: Pane::Traffic,
            parity_open: false,
            zoomed: false,
            selected: BTreeMap::new(),
            overlay: Overlay::None,
            filter: String::new(),
            keymap,
            theme: super::theme::Theme::default(),
            checklist_stored: checklist.clone(),
            checklist_unread: None,
            checklist,
            checklist_edits: 0,
            checklist_saved_at: None,
            operator,
            runs: BTreeMap::new(),
            log: VecDeque::new(),
            quit: false,
            pending_change: None,
            action_results: BTreeMap::new(),
            rollback_planned: Default::default(),
            rolling_back: Default::default(),
            action_progress: BTreeMap::new(),
            applying: Default::default(),
            quit_asked: false,
            snap,
            gate_audit: Vec::new(),
        }
    }

    pub fn log(&mut self, text: impl Into<String>) {
        self.log.push_back(LogLine { at: self.now, text: text.into() });
        while self.log.len() > LOG_LINES {
            self.log.pop_front();
        }
    }

    /// The window of a time-gated item, None when it has no gate.
    pub fn gate_window(&self, it: &crate::runbook::Item) -> Option<crate::drive::not_before::Window> {
        let nb = it.not_before.as_ref()?;
        // Counted as the action will count it: lines of its side's account
        // (the runbook's, else the one these credentials are for).
        let account = self.snap.identity.value.as_ref().map(|i| i.account.as_str());
        Some(crate::drive::not_before::window_in(&self.rb, nb, &self.checklist, &self.gate_audit, self.now, account))
    }

    pub(super) fn resnap(&mut self) {
        self.snap = snapshot(&self.rb, &self.live, &self.region, self.now);
    }

    pub fn selected(&self, pane: Pane) -> usize {
        self.selected.get(&pane).copied().unwrap_or(0)
    }

    /// Palette entries: every action of the focused pane, from the key table.
    pub fn palette_entries(&self, input: &str) -> Vec<(KeyAction, String)> {
        let q = input.to_ascii_lowercase();
        self.keymap
            .for_pane(self.focus)
            .into_iter()
            .filter(|b| !matches!(b.action, KeyAction::Palette))
            .map(|b| (b.action, format!("{} ({})", b.help, self.keymap.keys_of(b.action))))
            .filter(|(_, label)| q.split_whitespace().all(|w| label.to_ascii_lowercase().contains(w)))
            .collect()
    }

    pub(super) fn check_finished(&mut self) {
        let waiting: Vec<(String, SystemTime)> = self
            .runs
            .iter()
            .filter_map(|(k, r)| match r {
                CheckRun::Running { since } => Some((k.clone(), *since)),
                CheckRun::Done { .. } => None,
            })
            .collect();
        for (key, since) in waiting {
            // A check on the sides' shapes waits for them too: polled every
            // 60 s, they would otherwise judge it on a reading from before.
            let shapes = self.rb.item_by_key(&key).is_some_and(
                |(_, i)| matches!(&i.kind, crate::runbook::ItemKind::Check { check } if check.reads_shapes()),
            );
            let shapes_fresh = |l: &LiveState| {
                l.shapes.updated_at.is_some_and(|a| a >= since) || l.shapes.error_at.is_some_and(|a| a >= since)
            };
            if !reported_since(&self.live, since) || (shapes && !shapes_fresh(&self.live)) {
                continue;
            }
            let Some(result) = self.snap.checks.iter().find(|c| item_key(&c.phase, &c.item) == key) else { continue };
            let (outcome, detail) = (result.outcome, result.detail.clone());
            let word = match outcome {
                CheckOutcome::Pass => "passed",
                CheckOutcome::Fail => "FAILED",
                CheckOutcome::Unknown => "could not be decided",
            };
            self.log(format!("check {key} {word}: {detail}"));
            self.runs.insert(key, CheckRun::Done { outcome, detail, at: self.now });
        }
    }
}

/// Every AWS, health and Redis source has reported after `t`: the health of
/// each instance still listed (one terminated or replaced is probed no more).
fn reported_since(live: &LiveState, t: SystemTime) -> bool {
    let after = |at: Option<SystemTime>| at.is_some_and(|a| a >= t);
    let s = |u: Option<SystemTime>, e: Option<SystemTime>| after(u) || after(e);
    let listed: std::collections::BTreeSet<&str> = live
        .environments
        .values()
        .filter_map(|e| e.value.as_ref())
        .flat_map(|d| d.instances.iter().map(|i| i.id.as_str()))
        .collect();
    s(live.traffic.updated_at, live.traffic.error_at)
        && live.environments.values().all(|x| s(x.updated_at, x.error_at))
        && live.health.iter().filter(|(id, _)| listed.contains(id.as_str())).all(|(_, x)| s(x.updated_at, x.error_at))
        && live.redis.values().all(|x| s(x.updated_at, x.error_at))
        && s(live.alarms.updated_at, live.alarms.error_at)
}
