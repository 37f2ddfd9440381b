//! The cockpit's state and `update`: plain code, no I/O, no terminal. Side
//! effects come back as `Command`s for the event loop to carry out.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::app::{ActionResult, App, CheckRun, Control, Overlay, PendingChange};
use super::keys::KeyAction;
use super::pane::Pane;
use crate::live;
use crate::runbook::ItemKind;
use crate::status::Snapshot;
use crate::store::checklist::{Edit as ChecklistEdit, NoteOver, item_key};
use crate::time::rfc3339;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ask every worker to poll now.
    Refresh,
    /// Write a checklist change to the store (off the loop; other cockpits see it).
    EditChecklist(crate::store::checklist::Edit),
    /// A checklist change refused here under --read-only: the loop audits
    /// it, as every refused change is.
    ChecklistRefused(crate::store::checklist::Edit),
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
    /// `authority::authorise` refuse it too, which writes the audit line.
    Refused {
        action: String,
    },
    /// An item refused here by its time gate (`not_before`): the loop
    /// audits the refusal with this reason, as `cutover run` does.
    GateRefused {
        key: String,
        refusal: String,
    },
}

// Each event is moved once, from the loop into `update`; boxing `Live` buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Live(live::LiveEvent),
    /// The clock moved (ages are computed against it).
    Tick(SystemTime),
    /// The clock read at a key: only `now` moves (a run asked for by the
    /// key takes readings begun after it); the screen is redrawn on a tick.
    Clock(SystemTime),
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
    /// A checklist change written (the checklist as written), or why not.
    /// A checklist edit's answer, and when it came.
    ChecklistSaved(Result<crate::store::checklist::ChecklistState, String>, std::time::Instant),
    /// The audit lines time-gated items wait on, read from a shared store.
    GateAudit(Result<Vec<crate::store::audit::AuditLine>, String>),
}

/// What changed between two snapshots that a person should see in the log:
/// weights, target states, alarm states, sources failing and recovering.
pub fn transitions(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let weights = |s: &Snapshot| {
        s.traffic.value.as_ref().map(|v| {
            v.iter()
                .map(|w| {
                    format!(
                        "{} {}",
                        w.environment.clone().unwrap_or_else(|| format!("{} (not listed)", w.set_identifier)),
                        w.weight.map_or("—".into(), |x| x.to_string())
                    )
                })
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

fn move_selection(app: &mut App, delta: isize) {
    let n = app.row_count(app.focus);
    let cur = app.selected(app.focus) as isize;
    let next = if n == 0 { 0 } else { (cur + delta).clamp(0, n as isize - 1) as usize };
    app.selected.insert(app.focus, next);
}

fn perform(app: &mut App, action: KeyAction) -> Vec<Command> {
    let focus = |app: &mut App, p: Pane| {
        // The Parity pane and the Log share a place: the one focused last shows.
        match p {
            Pane::Parity => app.parity_open = true,
            Pane::Log => app.parity_open = false,
            _ => {}
        }
        app.focus = p;
    };
    match action {
        KeyAction::NextPane => focus(app, Pane::ALL[(app.focus.index() + 1) % Pane::ALL.len()]),
        KeyAction::PrevPane => focus(app, Pane::ALL[(app.focus.index() + Pane::ALL.len() - 1) % Pane::ALL.len()]),
        KeyAction::FocusTraffic => focus(app, Pane::Traffic),
        KeyAction::FocusTargets => focus(app, Pane::Targets),
        KeyAction::FocusRedis => focus(app, Pane::Redis),
        KeyAction::FocusAlarms => focus(app, Pane::Alarms),
        KeyAction::FocusChecklist => focus(app, Pane::Checklist),
        KeyAction::FocusLog => focus(app, Pane::Log),
        KeyAction::FocusParity => focus(app, Pane::Parity),
        KeyAction::Down => move_selection(app, 1),
        KeyAction::Up => move_selection(app, -1),
        KeyAction::Zoom => app.zoomed = !app.zoomed,
        KeyAction::Filter => app.overlay = Overlay::Filter { input: app.filter.clone() },
        KeyAction::Help => app.overlay = Overlay::Help,
        KeyAction::ShowErrors => app.overlay = Overlay::Errors,
        KeyAction::Palette => app.overlay = Overlay::Palette { input: String::new(), selected: 0 },
        KeyAction::Pause => toggle_pause(app),
        KeyAction::Refresh => {
            app.log("refresh requested");
            return vec![Command::Refresh];
        }
        KeyAction::Quit => return quit(app),
        KeyAction::RunCheck | KeyAction::Rollback => return run_item(app, action == KeyAction::Rollback),
        KeyAction::Tick => return tick(app),
        KeyAction::ShiftWeights
        | KeyAction::StartRollout
        | KeyAction::PauseRollout
        | KeyAction::PromoteRollout
        | KeyAction::AbortRollout => return traffic_key(app, action),
        KeyAction::Note => {
            let Some((phase, item)) = app.selected_item() else { return Vec::new() };
            let key = item_key(&phase, &item);
            let seen = app.checklist.notes.get(&key).cloned();
            let input = seen.clone().unwrap_or_default();
            app.overlay = Overlay::Note { key, input, seen };
        }
    }
    Vec::new()
}

/// Pauses the refresh (the screen holds still) or resumes it, applying what
/// arrived meanwhile.
fn toggle_pause(app: &mut App) {
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

/// Runs the selected checklist item (or its rollback): plans an action, or
/// runs a check on fresh data.
fn run_item(app: &mut App, rollback: bool) -> Vec<Command> {
    let Some((phase, item)) = app.selected_item() else { return Vec::new() };
    let Some(it) = app.rb.item(&phase, &item).map(|(_, i)| i.clone()) else { return Vec::new() };
    let key = item_key(&phase, &item);
    if rollback && it.rollback.is_none() {
        app.log(format!("{key} names no rollback"));
        return Vec::new();
    }
    if rollback || matches!(it.kind, ItemKind::Action { .. }) {
        if app.header.read_only {
            app.log(format!("refused: read-only; {key} was not planned or run"));
            let a = if rollback { it.rollback.clone() } else { item_action_of(&it) };
            let name = a.map_or_else(|| "action".to_string(), |a| a.summary());
            return vec![Command::Refused { action: format!("{name} ({key})") }];
        }
        if !rollback
            && let (Some(nb), Some(w)) = (&it.not_before, app.gate_window(&it))
            && let Some(refusal) = crate::drive::not_before::refusal(&key, nb, &w, app.now)
        {
            app.log(refusal.clone());
            return vec![Command::GateRefused { key, refusal }];
        }
        if !rollback && matches!(it.kind, ItemKind::Action { action: crate::runbook::Action::Rollout }) {
            return perform(app, KeyAction::StartRollout);
        }
        let what = if rollback { "the rollback of " } else { "" };
        app.log(format!("planning {what}{key} from live data…"));
        // The plan comes back under the item's key alone: which it was is kept here.
        match rollback {
            true => app.rollback_planned.insert(key.clone()),
            false => app.rollback_planned.remove(&key),
        };
        return vec![Command::PlanAction { key, rollback }];
    }
    if !matches!(it.kind, ItemKind::Check { .. }) {
        app.log(format!("{key} is a manual item: Space ticks it"));
        return Vec::new();
    }
    app.runs.insert(key.clone(), CheckRun::Running { since: app.now });
    app.log(format!("check {key} running: waiting for fresh data"));
    vec![Command::Refresh]
}

/// Ticks or unticks a manual item.
fn tick(app: &mut App) -> Vec<Command> {
    let Some((phase, item)) = app.selected_item() else { return Vec::new() };
    let manual = app.rb.item(&phase, &item).is_some_and(|(_, i)| matches!(i.kind, ItemKind::Manual));
    if !manual {
        app.log(format!("{phase}/{item} is not a manual item; only manual items are ticked by hand"));
        return Vec::new();
    }
    let key = item_key(&phase, &item);
    // Unread, an item ticked by a teammate shows unticked: a tick would
    // land over theirs, and an untick is unknowable.
    if let Some(e) = &app.checklist_unread {
        let line = format!("{key}: not changed: the shared checklist is not read yet ({e}); try again once it is");
        app.log(line);
        return Vec::new();
    }
    let (by, at) = (app.operator.clone(), rfc3339(app.now));
    let account = app.snap.identity.value.as_ref().map(|i| i.account.clone());
    if app.header.read_only {
        app.log("refused: read-only; the checklist is not changed from this cockpit");
        let edit = match app.checklist.ticks.contains_key(&key) {
            true => ChecklistEdit::Untick { key },
            false => ChecklistEdit::Tick { key, by, at, account },
        };
        return vec![Command::ChecklistRefused(edit)];
    }
    let ticked = app.checklist.toggle(&key, &by, &at, account.as_deref());
    app.log(format!("{key} {} by {by}", if ticked { "ticked" } else { "unticked" }));
    // The edit says what the person meant, so it lands right over anyone else's.
    let edit = if ticked { ChecklistEdit::Tick { key, by, at, account } } else { ChecklistEdit::Untick { key } };
    vec![Command::EditChecklist(edit)]
}

/// The keys that change traffic: shift, and the rollout's controls.
fn traffic_key(app: &mut App, action: KeyAction) -> Vec<Command> {
    if app.header.read_only {
        app.log("refused: read-only; weights and rollouts are not changed from this cockpit");
        let action = match action {
            KeyAction::ShiftWeights => "shift_weights",
            KeyAction::StartRollout => "rollout start",
            KeyAction::PauseRollout => "rollout pause",
            KeyAction::PromoteRollout => "rollout promote",
            _ => "rollout abort",
        };
        return vec![Command::Refused { action: action.into() }];
    }
    let control = match action {
        KeyAction::ShiftWeights => {
            app.overlay = Overlay::ShiftTo { input: String::new() };
            return Vec::new();
        }
        KeyAction::PauseRollout => {
            app.log("asking the running rollout to pause…");
            return vec![Command::PauseRollout];
        }
        KeyAction::StartRollout => Control::Start,
        KeyAction::PromoteRollout => Control::Promote,
        _ => Control::Abort,
    };
    app.log(format!("planning {} from live data…", control_name(control)));
    vec![Command::PlanRollout { control }]
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
        return quit(app);
    }
    match std::mem::replace(&mut app.overlay, Overlay::None) {
        // Any key closes help and errors.
        Overlay::None | Overlay::Help | Overlay::Errors => {}
        Overlay::Confirm { key: item } => match key.code {
            KeyCode::Char('y') => return apply_confirmed(app, item),
            KeyCode::Char('n') | KeyCode::Esc => {
                app.pending_change = None;
                app.log(format!("{item}: cancelled, nothing was changed"));
            }
            _ => app.overlay = Overlay::Confirm { key: item },
        },
        Overlay::ConfirmName { key: item, mut input } => {
            let name = match &app.pending_change {
                Some(PendingChange::Item(plan)) => plan.confirm_name().map(str::to_string),
                _ => None,
            };
            match (edit(&mut input, key.code), name) {
                (Edit::Submit, Some(name)) if input.trim() == name => return apply_confirmed(app, item),
                (Edit::Submit, Some(name)) => {
                    app.log(format!("{item}: `{}` is not `{name}`; type the environment's name", input.trim()));
                    app.overlay = Overlay::ConfirmName { key: item, input: String::new() };
                }
                (Edit::Cancel, _) | (_, None) => {
                    app.pending_change = None;
                    app.log(format!("{item}: cancelled, nothing was changed"));
                }
                _ => app.overlay = Overlay::ConfirmName { key: item, input },
            }
        }
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
        Overlay::Note { key: item, mut input, seen } => match edit(&mut input, key.code) {
            Edit::Submit => {
                let text = input.trim().to_string();
                if app.header.read_only {
                    app.log("refused: read-only; notes are not changed from this cockpit");
                    let text = Some(text).filter(|t| !t.is_empty());
                    return vec![Command::ChecklistRefused(ChecklistEdit::Note {
                        key: item,
                        text,
                        over: NoteOver::Seen(seen),
                    })];
                }
                if text.is_empty() {
                    app.checklist.notes.remove(&item);
                } else {
                    app.checklist.notes.insert(item.clone(), text.clone());
                }
                app.log(format!("note on {item}: {text}"));
                let text = Some(text).filter(|t| !t.is_empty());
                let edit = ChecklistEdit::Note { key: item, text, over: NoteOver::Seen(seen) };
                return vec![Command::EditChecklist(edit)];
            }
            Edit::Cancel => {}
            Edit::Changed | Edit::Other => app.overlay = Overlay::Note { key: item, input, seen },
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

/// Applies the confirmed change, unless one under the same key is still
/// being applied: answers come back by key, so the second one's answer (a
/// copy refused on its lock) would clear the first's quit guard and row.
fn apply_confirmed(app: &mut App, item: String) -> Vec<Command> {
    let Some(change) = app.pending_change.as_ref() else { return Vec::new() };
    let name = change.summary().name;
    if app.applying.contains(&item) {
        app.pending_change = None;
        app.log(format!(
            "{item}: {name} was not applied: the change confirmed before under {item} is still being applied; \
             plan it again once that has finished"
        ));
        return Vec::new();
    }
    // The plan shown says which it is (its name is its action's): Enter and
    // `b` pressed in turn may come back in either order. Only when the
    // action and its rollback read alike does the last key asked decide.
    if let PendingChange::Item(plan) = change {
        let it = app.rb.item_by_key(&item).map(|(_, it)| it);
        let named = |a: Option<&crate::runbook::Action>| a.is_some_and(|a| a.summary() == plan.name);
        let forward = it.and_then(|it| match &it.kind {
            ItemKind::Action { action } => Some(action),
            _ => None,
        });
        let rollback = match (named(forward), named(it.and_then(|it| it.rollback.as_ref()))) {
            (false, true) => true,
            (true, false) => false,
            _ => app.rollback_planned.contains(&item),
        };
        if rollback {
            app.rolling_back.insert(item.clone());
        }
    }
    app.log(format!("applying {name} ({item})"));
    app.applying.insert(item.clone());
    vec![Command::Apply { key: item }]
}

/// The key a planned change is confirmed and applied under: a rollout
/// control's own, whatever key it was planned under.
fn operation_key(key: String, change: &PendingChange) -> String {
    match change {
        PendingChange::Rollout { control, .. } => control.action().to_string(),
        _ => key,
    }
}

/// Quits, unless a confirmed change is still being applied: quitting would
/// stop it part-way with only its intent audited, so the first press warns
/// and a second one quits anyway.
fn quit(app: &mut App) -> Vec<Command> {
    if !app.applying.is_empty() && !app.quit_asked {
        app.quit_asked = true;
        let keys = app.applying.iter().cloned().collect::<Vec<_>>().join(", ");
        app.log(format!(
            "{keys} is still being applied: quitting now stops it part-way, with only its intent in the audit log. \
             Wait for it to finish, or press quit again to quit anyway"
        ));
        return Vec::new();
    }
    app.quit = true;
    vec![Command::Quit]
}

pub fn update(app: &mut App, event: Event) -> Vec<Command> {
    match event {
        Event::Key(key) => {
            if app.overlay != Overlay::None {
                return overlay_key(app, key);
            }
            if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
                return quit(app);
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
            let content = super::rows::content(app);
            let rects = super::layout::panes(Rect::new(0, 0, app.size.0, app.size.1), app.focus, app.zoomed, &content);
            let hit = rects.iter().find(|(_, r)| r.contains(pos)).map(|(p, _)| *p);
            match (m.kind, hit) {
                (MouseEventKind::Down(MouseButton::Left), Some(p)) => app.focus = p,
                (MouseEventKind::ScrollDown, Some(p)) => {
                    app.focus = p;
                    move_selection(app, 1);
                }
                (MouseEventKind::ScrollUp, Some(p)) => {
                    app.focus = p;
                    move_selection(app, -1);
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
            let shared = match &ev.update {
                // A poll begun before an edit's answer came may not hold it.
                live::Update::Team(Ok(view)) if app.checklist_saved_at.is_none_or(|s| view.read_at >= s) => {
                    Some(view.checklist.clone())
                }
                _ => None,
            };
            live::update(&mut app.live, ev);
            if let Some(c) = shared {
                app.checklist_unread = None;
                if app.checklist_edits == 0 && c != app.checklist {
                    app.log("checklist changed by the team (shared state)");
                    app.checklist = c.clone();
                }
                app.checklist_stored = c;
            }
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
                // Never over another window: a key typed there (the `y` of
                // a note) would confirm a change the person has not read.
                Ok(_) if app.overlay != Overlay::None => app.log(format!(
                    "{key}: planned while another window was open, so it is not shown and nothing was changed; \
                     press its key again to review it"
                )),
                Ok(change) => {
                    let key = operation_key(key, &change);
                    let typed = matches!(&change, PendingChange::Item(plan) if plan.confirm_name().is_some());
                    app.pending_change = Some(change);
                    app.overlay = if typed {
                        Overlay::ConfirmName { key, input: String::new() }
                    } else {
                        Overlay::Confirm { key }
                    };
                }
                Err(e) => app.log(format!("{key}: cannot plan: {e}")),
            }
            Vec::new()
        }
        Event::ActionDone { key, result } => {
            let ok = result.is_ok();
            let rollback = app.rolling_back.remove(&key);
            let what = if rollback { " rollback" } else { "" };
            match result {
                Ok(s) => app.log(format!("{key}{what}: {s}")),
                Err(e) => app.log(format!("{key}{what} FAILED: {e}")),
            }
            app.action_progress.remove(&key);
            app.applying.remove(&key);
            // A warning was about what was applying then, not what comes next.
            if app.applying.is_empty() {
                app.quit_asked = false;
            }
            app.action_results.insert(key, ActionResult { ok, at: app.now, rollback });
            vec![Command::Refresh]
        }
        Event::GateAudit(result) => {
            match result {
                Ok(lines) => app.gate_audit = lines,
                Err(e) => app.log(format!("time gates: {e}")),
            }
            Vec::new()
        }
        Event::ChecklistSaved(result, at) => {
            app.checklist_edits = app.checklist_edits.saturating_sub(1);
            app.checklist_saved_at = app.checklist_saved_at.max(Some(at));
            match result {
                Ok(c) => {
                    // A later edit still on its way answers with the newer state.
                    if app.checklist_edits == 0 {
                        app.checklist = c.clone();
                    }
                    app.checklist_stored = c;
                }
                // The pane showed the edit at once; unsaved, it must not stay
                // there as done. A later edit's answer brings the store's state.
                Err(e) if app.checklist_edits == 0 => {
                    app.checklist = app.checklist_stored.clone();
                    app.log(format!("checklist NOT saved: {e}; the pane shows the saved checklist again"));
                }
                Err(e) => app.log(format!("checklist NOT saved: {e}")),
            }
            Vec::new()
        }
        Event::ActionProgress { key, done, total, line } => {
            app.action_progress.insert(key, (done, total, line));
            Vec::new()
        }
        Event::Clock(now) => {
            app.now = now;
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
