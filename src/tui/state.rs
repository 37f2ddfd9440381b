//! The cockpit's state and `update`: plain code, no I/O, no terminal. Side
//! effects come back as `Command`s for the event loop to carry out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::keys::{Action, Keymap};
use crate::drive::actions::ActionPlan;
use crate::drive::shift::ShiftPlan;
use crate::live::{self, LiveState};
use crate::progress::{Progress, item_key};
use crate::runbook::{ItemKind, Runbook};
use crate::status::{CheckOutcome, Snapshot, rfc3339, snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pane {
    Traffic,
    Targets,
    Redis,
    Alarms,
    Checklist,
    Log,
}

impl Pane {
    pub const ALL: [Pane; 6] = [Pane::Traffic, Pane::Targets, Pane::Redis, Pane::Alarms, Pane::Checklist, Pane::Log];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Traffic => "Traffic",
            Pane::Targets => "Targets",
            Pane::Redis => "Redis",
            Pane::Alarms => "Alarms & metrics",
            Pane::Checklist => "Checklist",
            Pane::Log => "Log",
        }
    }

    fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

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
    },
    /// A planned change waiting for y / n; the plan is `App::pending_change`.
    Confirm {
        key: String,
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

/// A change planned from live data, shown in the confirm popup.
#[derive(Debug, Clone)]
pub enum PendingChange {
    Item(ActionPlan),
    Shift(Box<ShiftPlan>),
    Rollout { control: Control, lines: Vec<String> },
}

/// What the confirm popup shows.
pub struct Summary {
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub details: Vec<String>,
}

impl PendingChange {
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
                details: p.steps.iter().map(|s| s.describe()).collect(),
            },
            PendingChange::Shift(p) => Summary {
                name: format!("shift weights: {} to {}%", p.to.environment, p.weights.1),
                before: Some(p.before().to_string()),
                after: Some(p.after().to_string()),
                details: vec![p.describe(), "both records in one change batch, then a wait for INSYNC".into()],
            },
            PendingChange::Rollout { control, lines } => {
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ask every worker to poll now.
    Refresh,
    SaveProgress,
    Quit,
    /// Plan an item's action (or its rollback) from live data, off the loop.
    PlanAction {
        key: String,
        rollback: bool,
    },
    /// Plan setting the rollout's `to` side to `percent`, off the loop.
    PlanShift {
        percent: u8,
    },
    /// Plan a rollout control (checks and preview), off the loop.
    PlanRollout {
        control: Control,
    },
    /// Ask the running rollout to pause (safe: no confirmation).
    PauseRollout,
    /// Apply the change the person confirmed (`App::pending_change`), off the loop.
    Apply {
        key: String,
    },
    /// A change refused here under --read-only: the loop has
    /// `drive::authorise` refuse it too, which writes the audit line.
    Refused {
        action: String,
    },
}

// Each event is moved once, from the loop into `update`; boxing `Live` buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Live(live::Event),
    /// The clock moved (ages are computed against it).
    Tick(SystemTime),
    Planned {
        key: String,
        result: Result<PendingChange, String>,
    },
    ActionDone {
        key: String,
        result: Result<String, String>,
    },
    /// A running action's progress (a Redis copy): done of total, and a line.
    ActionProgress {
        key: String,
        done: u64,
        total: u64,
        line: String,
    },
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
    pub pending: Vec<live::Event>,
    pub paused: bool,
    pub now: SystemTime,
    pub size: (u16, u16),
    pub focus: Pane,
    pub zoomed: bool,
    pub selected: BTreeMap<Pane, usize>,
    pub overlay: Overlay,
    pub filter: String,
    pub keymap: Keymap,
    pub theme: super::theme::Theme,
    pub progress: Progress,
    pub operator: String,
    pub runs: BTreeMap<String, CheckRun>,
    pub log: VecDeque<LogLine>,
    pub quit: bool,
    pub pending_change: Option<PendingChange>,
    /// Outcome of the last action run per item: (succeeded, when).
    pub action_results: BTreeMap<String, (bool, SystemTime)>,
    /// Progress of running actions: (done, total, line).
    pub action_progress: BTreeMap<String, (u64, u64, String)>,
    /// Derived from `live` after every change; what render draws.
    pub snap: Snapshot,
}

const LOG_LINES: usize = 500;

impl App {
    pub fn new(
        rb: Runbook,
        region: String,
        header: Header,
        keymap: Keymap,
        progress: Progress,
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
            zoomed: false,
            selected: BTreeMap::new(),
            overlay: Overlay::None,
            filter: String::new(),
            keymap,
            theme: super::theme::Theme::default(),
            progress,
            operator,
            runs: BTreeMap::new(),
            log: VecDeque::new(),
            quit: false,
            pending_change: None,
            action_results: BTreeMap::new(),
            action_progress: BTreeMap::new(),
            snap,
        }
    }

    pub fn log(&mut self, text: impl Into<String>) {
        self.log.push_back(LogLine { at: self.now, text: text.into() });
        while self.log.len() > LOG_LINES {
            self.log.pop_front();
        }
    }

    fn resnap(&mut self) {
        self.snap = snapshot(&self.rb, &self.live, &self.region, self.now);
    }

    pub fn selected(&self, pane: Pane) -> usize {
        self.selected.get(&pane).copied().unwrap_or(0)
    }

    /// Rows a pane can select, after the filter.
    pub fn row_count(&self, pane: Pane) -> usize {
        match pane {
            Pane::Traffic => self.snap.traffic.value.as_ref().map_or(0, Vec::len),
            Pane::Targets => super::rows::targets(self).len(),
            Pane::Redis => super::rows::redis(self).len(),
            Pane::Alarms => self.snap.alarms.value.as_ref().map_or(0, Vec::len),
            Pane::Checklist => super::rows::checklist(self).len(),
            Pane::Log => self.log.len(),
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let n = self.row_count(self.focus);
        let cur = self.selected(self.focus) as isize;
        let next = if n == 0 { 0 } else { (cur + delta).clamp(0, n as isize - 1) as usize };
        self.selected.insert(self.focus, next);
    }

    /// The checklist item under the cursor: (phase id, item id).
    pub fn selected_item(&self) -> Option<(String, String)> {
        let rows = super::rows::checklist(self);
        match rows.get(self.selected(Pane::Checklist))? {
            super::rows::ChecklistRow::Item { phase, item } => Some((phase.clone(), item.clone())),
            super::rows::ChecklistRow::Phase { .. } => None,
        }
    }

    /// Palette entries: every action of the focused pane, from the key table.
    pub fn palette_entries(&self, input: &str) -> Vec<(Action, String)> {
        let q = input.to_ascii_lowercase();
        self.keymap
            .for_pane(self.focus)
            .into_iter()
            .filter(|b| !matches!(b.action, Action::Palette))
            .map(|b| (b.action, format!("{} ({})", b.help, self.keymap.keys_of(b.action))))
            .filter(|(_, label)| q.split_whitespace().all(|w| label.to_ascii_lowercase().contains(w)))
            .collect()
    }

    fn check_finished(&mut self) {
        let waiting: Vec<(String, SystemTime)> = self
            .runs
            .iter()
            .filter_map(|(k, r)| match r {
                CheckRun::Running { since } => Some((k.clone(), *since)),
                CheckRun::Done { .. } => None,
            })
            .collect();
        for (key, since) in waiting {
            if !reported_since(&self.live, since) {
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

/// What changed between two snapshots that a person should see in the log:
/// weights, target states, alarm states, sources failing and recovering.
pub fn transitions(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let weights = |s: &Snapshot| {
        s.traffic.value.as_ref().map(|v| {
            v.iter()
                .map(|w| format!("{} {}", w.environment, w.weight.map_or("—".into(), |x| x.to_string())))
                .collect::<Vec<_>>()
                .join(" / ")
        })
    };
    if let (Some(a), Some(b)) = (weights(old), weights(new))
        && a != b
    {
        out.push(format!("weights changed: {a} → {b}"));
    }
    // Per environment, only once it had data: its first reading is not news.
    for (o, n) in old.environments.iter().zip(&new.environments) {
        let targets = |v: &Option<crate::status::EnvironmentAws>| -> Option<BTreeMap<String, String>> {
            let a = v.as_ref()?;
            Some(
                a.target_groups
                    .iter()
                    .flat_map(|tg| tg.targets.iter())
                    .map(|t| {
                        let state = format!("{} {}", t.target.state, t.target.reason.as_deref().unwrap_or(""));
                        (t.target.id.clone(), state.trim().to_string())
                    })
                    .collect(),
            )
        };
        let (Some(ta), Some(tb)) = (targets(&o.aws.value), targets(&n.aws.value)) else { continue };
        for (id, state) in &tb {
            match ta.get(id) {
                Some(prev) if prev != state => out.push(format!("target {id}: {prev} → {state}")),
                None => out.push(format!("target {id} registered: {state}")),
                _ => {}
            }
        }
        for id in ta.keys().filter(|id| !tb.contains_key(*id)) {
            out.push(format!("target {id} deregistered"));
        }
    }
    let alarms = |s: &Snapshot| -> BTreeMap<String, String> {
        s.alarms.value.iter().flatten().map(|a| (a.name.clone(), a.state.clone())).collect()
    };
    let (aa, ab) = (alarms(old), alarms(new));
    for (name, state) in &ab {
        if let Some(prev) = aa.get(name)
            && prev != state
        {
            out.push(format!("alarm {name}: {prev} → {state}"));
        }
    }
    let mut sources: Vec<(String, Option<String>, Option<String>)> = vec![
        ("traffic".into(), old.traffic.error.clone(), new.traffic.error.clone()),
        ("alarms".into(), old.alarms.error.clone(), new.alarms.error.clone()),
        ("metrics".into(), old.metrics.error.clone(), new.metrics.error.clone()),
    ];
    for (o, n) in old.environments.iter().zip(&new.environments) {
        sources.push((format!("{} AWS", n.name), o.aws.error.clone(), n.aws.error.clone()));
    }
    for (o, n) in old.redis.iter().zip(&new.redis) {
        sources.push((format!("Redis {}", n.name), o.view.error.clone(), n.view.error.clone()));
    }
    for (what, before, after) in sources {
        match (before, after) {
            (None, Some(e)) => out.push(format!("{what} failing, showing last good values: {e}")),
            (Some(_), None) => out.push(format!("{what} recovered")),
            _ => {}
        }
    }
    out
}

/// Every AWS, health and Redis source has reported after `t`.
fn reported_since(live: &LiveState, t: SystemTime) -> bool {
    let after = |at: Option<SystemTime>| at.is_some_and(|a| a >= t);
    let s = |u: Option<SystemTime>, e: Option<SystemTime>| after(u) || after(e);
    s(live.traffic.updated_at, live.traffic.error_at)
        && live.environments.values().all(|x| s(x.updated_at, x.error_at))
        && live.health.values().all(|x| s(x.updated_at, x.error_at))
        && live.redis.values().all(|x| s(x.updated_at, x.error_at))
        && s(live.alarms.updated_at, live.alarms.error_at)
}

fn perform(app: &mut App, action: Action) -> Vec<Command> {
    let focus = |app: &mut App, p: Pane| app.focus = p;
    match action {
        Action::NextPane => focus(app, Pane::ALL[(app.focus.index() + 1) % Pane::ALL.len()]),
        Action::PrevPane => focus(app, Pane::ALL[(app.focus.index() + Pane::ALL.len() - 1) % Pane::ALL.len()]),
        Action::FocusTraffic => focus(app, Pane::Traffic),
        Action::FocusTargets => focus(app, Pane::Targets),
        Action::FocusRedis => focus(app, Pane::Redis),
        Action::FocusAlarms => focus(app, Pane::Alarms),
        Action::FocusChecklist => focus(app, Pane::Checklist),
        Action::FocusLog => focus(app, Pane::Log),
        Action::Down => app.move_selection(1),
        Action::Up => app.move_selection(-1),
        Action::Zoom => app.zoomed = !app.zoomed,
        Action::Filter => app.overlay = Overlay::Filter { input: app.filter.clone() },
        Action::Help => app.overlay = Overlay::Help,
        Action::ShowErrors => app.overlay = Overlay::Errors,
        Action::Palette => app.overlay = Overlay::Palette { input: String::new(), selected: 0 },
        Action::Pause => {
            app.paused = !app.paused;
            if app.paused {
                app.log("refresh paused: the screen holds still; new data waits");
            } else {
                let held = std::mem::take(&mut app.pending);
                let n = held.len();
                let before = app.snap.clone();
                for ev in held {
                    live::update(&mut app.live, ev);
                }
                app.resnap();
                app.log(format!("refresh resumed ({n} updates applied)"));
                for line in transitions(&before, &app.snap) {
                    app.log(line);
                }
                app.check_finished();
            }
        }
        Action::Refresh => {
            app.log("refresh requested");
            return vec![Command::Refresh];
        }
        Action::Quit => {
            app.quit = true;
            return vec![Command::Quit];
        }
        Action::RunCheck | Action::Rollback => {
            let Some((phase, item)) = app.selected_item() else { return Vec::new() };
            let found =
                app.rb.phases.iter().find(|p| p.id == phase).and_then(|p| p.items.iter().find(|i| i.id == item));
            let Some(it) = found.cloned() else { return Vec::new() };
            let key = item_key(&phase, &item);
            let rollback = action == Action::Rollback;
            if rollback && it.rollback.is_none() {
                app.log(format!("{key} names no rollback"));
                return Vec::new();
            }
            if rollback || matches!(it.kind, ItemKind::Action { .. }) {
                if app.header.read_only {
                    app.log(format!("refused: read-only; {key} was not planned or run"));
                    let a = if rollback { it.rollback.clone() } else { item_action_of(&it) };
                    let name = a.map_or_else(|| "action".to_string(), |a| crate::cli::plan::action_name(&a));
                    return vec![Command::Refused { action: format!("{name} ({key})") }];
                }
                if !rollback && matches!(it.kind, ItemKind::Action { action: crate::runbook::Action::Rollout }) {
                    return perform(app, Action::StartRollout);
                }
                let what = if rollback { "the rollback of " } else { "" };
                app.log(format!("planning {what}{key} from live data…"));
                return vec![Command::PlanAction { key, rollback }];
            }
            if !matches!(it.kind, ItemKind::Check { .. }) {
                app.log(format!("{key} is a manual item: Space ticks it"));
                return Vec::new();
            }
            app.runs.insert(key.clone(), CheckRun::Running { since: app.now });
            app.log(format!("check {key} running: waiting for fresh data"));
            return vec![Command::Refresh];
        }
        Action::Tick => {
            let Some((phase, item)) = app.selected_item() else { return Vec::new() };
            let manual = app
                .rb
                .phases
                .iter()
                .find(|p| p.id == phase)
                .and_then(|p| p.items.iter().find(|i| i.id == item))
                .is_some_and(|i| matches!(i.kind, ItemKind::Manual));
            if !manual {
                app.log(format!("{phase}/{item} is not a manual item; only manual items are ticked by hand"));
                return Vec::new();
            }
            let key = item_key(&phase, &item);
            let (by, at) = (app.operator.clone(), rfc3339(app.now));
            let ticked = app.progress.toggle(&key, &by, &at);
            app.log(format!("{key} {} by {by}", if ticked { "ticked" } else { "unticked" }));
            return vec![Command::SaveProgress];
        }
        Action::ShiftWeights
        | Action::StartRollout
        | Action::PauseRollout
        | Action::PromoteRollout
        | Action::AbortRollout => {
            if app.header.read_only {
                app.log("refused: read-only; weights and rollouts are not changed from this cockpit");
                let action = match action {
                    Action::ShiftWeights => "shift_weights",
                    Action::StartRollout => "rollout start",
                    Action::PauseRollout => "rollout pause",
                    Action::PromoteRollout => "rollout promote",
                    _ => "rollout abort",
                };
                return vec![Command::Refused { action: action.into() }];
            }
            let control = match action {
                Action::ShiftWeights => {
                    app.overlay = Overlay::ShiftTo { input: String::new() };
                    return Vec::new();
                }
                Action::PauseRollout => {
                    app.log("asking the running rollout to pause…");
                    return vec![Command::PauseRollout];
                }
                Action::StartRollout => Control::Start,
                Action::PromoteRollout => Control::Promote,
                _ => Control::Abort,
            };
            app.log(format!("planning {} from live data…", control_name(control)));
            return vec![Command::PlanRollout { control }];
        }
        Action::Note => {
            let Some((phase, item)) = app.selected_item() else { return Vec::new() };
            let key = item_key(&phase, &item);
            let input = app.progress.notes.get(&key).cloned().unwrap_or_default();
            app.overlay = Overlay::Note { key, input };
        }
    }
    Vec::new()
}

/// The action of a checklist item, if it is one.
fn item_action_of(it: &crate::runbook::Item) -> Option<crate::runbook::Action> {
    match &it.kind {
        ItemKind::Action { action } => Some(action.clone()),
        _ => None,
    }
}

fn control_name(c: Control) -> &'static str {
    match c {
        Control::Start | Control::AdoptAndStart => "the rollout start",
        Control::Promote => "the promotion",
        Control::Abort => "the abort",
    }
}

/// What a key does to a text input.
enum Edit {
    Submit,
    Cancel,
    /// Typed or erased a character.
    Changed,
    Other,
}

fn edit(input: &mut String, code: KeyCode) -> Edit {
    match code {
        KeyCode::Enter => Edit::Submit,
        KeyCode::Esc => Edit::Cancel,
        KeyCode::Backspace => {
            input.pop();
            Edit::Changed
        }
        KeyCode::Char(c) => {
            input.push(c);
            Edit::Changed
        }
        _ => Edit::Other,
    }
}

/// Keys while an overlay is open; text overlays take characters.
fn overlay_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        app.quit = true;
        return vec![Command::Quit];
    }
    match std::mem::replace(&mut app.overlay, Overlay::None) {
        // Any key closes help and errors.
        Overlay::None | Overlay::Help | Overlay::Errors => {}
        Overlay::Confirm { key: item } => match key.code {
            KeyCode::Char('y') => {
                if let Some(change) = &app.pending_change {
                    let line = format!("applying {} ({item})", change.summary().name);
                    app.log(line);
                    return vec![Command::Apply { key: item }];
                }
            }
            KeyCode::Char('n') | KeyCode::Esc => {
                app.pending_change = None;
                app.log(format!("{item}: cancelled, nothing was changed"));
            }
            _ => app.overlay = Overlay::Confirm { key: item },
        },
        Overlay::ShiftTo { mut input } => match edit(&mut input, key.code) {
            Edit::Submit => match input.trim().parse::<u8>() {
                Ok(percent) if percent <= 100 => {
                    let to = app.rb.rollout.to.clone();
                    app.log(format!("planning {to} to {percent}% from live data…"));
                    return vec![Command::PlanShift { percent }];
                }
                _ => app.log(format!("`{}` is not a percent from 0 to 100; nothing was planned", input.trim())),
            },
            Edit::Cancel => {}
            Edit::Changed | Edit::Other => app.overlay = Overlay::ShiftTo { input },
        },
        Overlay::Filter { mut input } => match edit(&mut input, key.code) {
            Edit::Submit => {
                app.filter = input.trim().to_string();
                app.selected.clear();
                let line = if app.filter.is_empty() {
                    "filter cleared".to_string()
                } else {
                    format!("filter: {}", app.filter)
                };
                app.log(line);
            }
            Edit::Cancel => {}
            Edit::Changed | Edit::Other => app.overlay = Overlay::Filter { input },
        },
        Overlay::Note { key: item, mut input } => match edit(&mut input, key.code) {
            Edit::Submit => {
                let text = input.trim().to_string();
                if text.is_empty() {
                    app.progress.notes.remove(&item);
                } else {
                    app.progress.notes.insert(item.clone(), text.clone());
                }
                app.log(format!("note on {item}: {text}"));
                return vec![Command::SaveProgress];
            }
            Edit::Cancel => {}
            Edit::Changed | Edit::Other => app.overlay = Overlay::Note { key: item, input },
        },
        Overlay::Palette { mut input, selected } => {
            let last = |input: &str| app.palette_entries(input).len().saturating_sub(1);
            let selected = match key.code {
                KeyCode::Down => (selected + 1).min(last(&input)),
                KeyCode::Up => selected.saturating_sub(1),
                _ => match edit(&mut input, key.code) {
                    Edit::Submit => {
                        return match app.palette_entries(&input).get(selected) {
                            Some((action, _)) => perform(app, *action),
                            None => Vec::new(),
                        };
                    }
                    Edit::Cancel => return Vec::new(),
                    Edit::Changed => 0,
                    Edit::Other => selected,
                },
            };
            app.overlay = Overlay::Palette { input, selected };
        }
    }
    Vec::new()
}

pub fn update(app: &mut App, event: Event) -> Vec<Command> {
    match event {
        Event::Key(key) => {
            if app.overlay != Overlay::None {
                return overlay_key(app, key);
            }
            if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
                app.quit = true;
                return vec![Command::Quit];
            }
            if key.code == KeyCode::Esc {
                if app.zoomed {
                    app.zoomed = false;
                }
                return Vec::new();
            }
            match app.keymap.action_for(&key, app.focus) {
                Some(action) => perform(app, action),
                None => Vec::new(),
            }
        }
        Event::Mouse(m) => {
            let pos = Position { x: m.column, y: m.row };
            let rects = super::layout::panes(Rect::new(0, 0, app.size.0, app.size.1), app.focus, app.zoomed);
            let hit = rects.iter().find(|(_, r)| r.contains(pos)).map(|(p, _)| *p);
            match (m.kind, hit) {
                (MouseEventKind::Down(MouseButton::Left), Some(p)) => app.focus = p,
                (MouseEventKind::ScrollDown, Some(p)) => {
                    app.focus = p;
                    app.move_selection(1);
                }
                (MouseEventKind::ScrollUp, Some(p)) => {
                    app.focus = p;
                    app.move_selection(-1);
                }
                _ => {}
            }
            Vec::new()
        }
        Event::Resize(w, h) => {
            app.size = (w, h);
            Vec::new()
        }
        Event::Live(ev) => {
            if app.paused {
                app.pending.push(ev);
                return Vec::new();
            }
            let before = app.snap.clone();
            live::update(&mut app.live, ev);
            app.resnap();
            for line in transitions(&before, &app.snap) {
                app.log(line);
            }
            app.check_finished();
            Vec::new()
        }
        Event::Planned { key, result } => {
            match result {
                Ok(change) if change.noop().is_some() => {
                    app.log(format!("{key}: nothing to do: {}", change.noop().unwrap_or_default()))
                }
                Ok(change) => {
                    app.pending_change = Some(change);
                    app.overlay = Overlay::Confirm { key };
                }
                Err(e) => app.log(format!("{key}: cannot plan: {e}")),
            }
            Vec::new()
        }
        Event::ActionDone { key, result } => {
            let ok = result.is_ok();
            match result {
                Ok(s) => app.log(format!("{key}: {s}")),
                Err(e) => app.log(format!("{key} FAILED: {e}")),
            }
            app.action_progress.remove(&key);
            app.action_results.insert(key, (ok, app.now));
            vec![Command::Refresh]
        }
        Event::ActionProgress { key, done, total, line } => {
            app.action_progress.insert(key, (done, total, line));
            Vec::new()
        }
        Event::Tick(now) => {
            app.now = now;
            if !app.paused {
                app.resnap();
            }
            Vec::new()
        }
    }
}
