//! The cockpit: a full-screen terminal UI over the live workers.
//! Workers feed one channel; `state::update` folds events into `App`;
//! `view::render` draws it. The loop never awaits I/O between frames.

pub mod app;
pub mod keys;
pub mod layout;
pub mod pane;
pub mod rows;
pub mod state;
pub mod theme;
pub mod view;

use std::io::{Stdout, stdout};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::live::workers::{self, WorkerContext};
use crate::runbook::Side;
use app::{App, Header};
use state::{Command, Event};

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, DisableMouseCapture, crossterm::cursor::Show);
}

/// Restores the terminal when dropped, whatever the way out.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// A panic on the screen's thread restores the terminal before its message
/// is printed. A panic elsewhere (a worker) goes to the log only: the worker
/// reports its sources failed and carries on, and the screen stays intact.
fn install_panic_hook(log_file: Option<PathBuf>) {
    let previous = std::panic::take_hook();
    let ui = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != ui {
            tracing::error!("panic in a background task: {info}");
            return;
        }
        restore_terminal();
        previous(info);
        if let Some(log) = &log_file {
            eprintln!("cutover crashed; the terminal was restored. Log: {}", log.display());
        }
    }));
}

/// What the loop needs to plan and apply checklist actions.
pub struct ActionContext {
    pub clients: crate::aws::SideClients,
    /// Global flags (--profile, --region) for a rollout started from the cockpit.
    pub global_args: Vec<String>,
    /// The workers' variables (a sandbox's endpoint and Redis URLs): they win
    /// over the process environment when planning, and a rollout started from
    /// the cockpit gets them.
    pub vars: std::collections::BTreeMap<String, String>,
    /// --read-only: `authority::authorise` refuses (and audits) every change.
    pub read_only: bool,
}

pub struct TuiOptions {
    pub profile: Option<String>,
    /// `--state`, passed on to a rollout started from the cockpit.
    pub state: Option<String>,
    pub read_only: bool,
    pub log_file: Option<PathBuf>,
}

/// Runs the cockpit until the user quits. Returns an error message for the
/// caller to print after the terminal is restored.
pub async fn run(mut ctx: WorkerContext, region: String, opts: TuiOptions) -> Result<(), String> {
    // The Parity pane shows the sides' shapes whether or not a check needs them.
    ctx.read_shapes = true;
    ctx.publish_readings = !opts.read_only;
    let rb = (*ctx.rb).clone();
    let keymap = keys::Keymap::load()?;
    let theme = theme::Theme::load()?;
    // In team mode a store that does not answer yet leaves AWS and Redis to
    // watch: the checklist is marked unread until the team poll reads it.
    let (checklist, checklist_unread) = match crate::store::checklist::load(&rb.name) {
        Ok((c, _)) => (c, None),
        Err(e) if crate::store::backend::current().shared() => (Default::default(), Some(e)),
        Err(e) => return Err(e),
    };
    let checklist_at = crate::store::checklist::location(&rb.name);
    let mut app = App::new(
        rb,
        region,
        Header { profile: opts.profile.clone(), read_only: opts.read_only },
        keymap,
        checklist,
        crate::store::operator(),
        SystemTime::now(),
    );
    app.theme = theme;
    app.log(format!("checklist ticks and notes: {checklist_at}"));
    if let Some(e) = &checklist_unread {
        app.log(format!("the shared checklist cannot be read yet: {e}"));
    }
    app.checklist_unread = checklist_unread;

    let (action_clients, action_vars) = (ctx.clients.clone(), ctx.vars.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let workers = workers::spawn(Arc::new(ctx), tx);

    install_panic_hook(opts.log_file.clone());
    enable_raw_mode().map_err(|e| format!("cannot use this terminal: {e}"))?;
    let _guard = TerminalGuard;
    execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)
        .map_err(|e| format!("cannot use this terminal: {e}"))?;
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(stdout())).map_err(|e| format!("cannot use this terminal: {e}"))?;
    let size = terminal.size().map_err(|e| e.to_string())?;
    app.size = (size.width, size.height);
    let input = EventStream::new().map(|r| r.map_err(|e| e.to_string()));
    let mut global_args = vec!["--region".to_string(), app.region.clone()];
    if let Some(p) = &opts.profile {
        global_args.extend(["--profile".to_string(), p.clone()]);
    }
    if let Some(s) = &opts.state {
        global_args.extend(["--state".to_string(), s.clone()]);
    }
    let actions = ActionContext { clients: action_clients, global_args, vars: action_vars, read_only: opts.read_only };
    let services = Services { workers: &workers, actions: Some(&actions) };
    let ended = event_loop(&mut terminal, &mut app, input, rx, services, |_| {}).await;
    drop(workers);
    // A read-only cockpit never announced itself.
    if crate::store::backend::current().shared() && !opts.read_only {
        let name = app.rb.name.clone();
        let _ = tokio::task::spawn_blocking(move || {
            crate::store::team::withdraw(&name, &crate::store::lease::Holder::me())
        })
        .await;
    }
    ended
}

/// The loop: draw, then wait for input, live data or the clock, fold it in,
/// carry out the commands. `drawn` is told after every frame (benchmarks).
/// What the loop works with besides the screen and the app.
pub struct Services<'a> {
    pub workers: &'a workers::Workers,
    /// None: actions are refused (benchmarks).
    pub actions: Option<&'a ActionContext>,
}

pub async fn event_loop<B: ratatui::backend::Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: impl futures::Stream<Item = Result<TermEvent, String>> + Unpin,
    mut rx: tokio::sync::mpsc::Receiver<crate::live::LiveEvent>,
    services: Services<'_>,
    mut drawn: impl FnMut(&App),
) -> Result<(), String> {
    let Services { workers, actions } = services;
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    let mut audit_seen = (None, None);
    // Planning and applying run off the loop; their results come back here.
    let (action_tx, mut action_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (name, operator) = (app.rb.name.clone(), app.operator.clone());
    let mut edits = EditSaver::start(
        move |edit| crate::store::checklist::apply_audited(&name, &operator, std::slice::from_ref(&edit)),
        action_tx.clone(),
    );
    loop {
        reload_gate_audit(app, &mut audit_seen, &action_tx);
        terminal.draw(|f| view::render(app, f)).map_err(|e| format!("cannot draw: {e}"))?;
        drawn(app);
        let commands = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => {
                    // The clock at the key, not at the last tick: a check run
                    // on fresh data takes readings begun after this.
                    let mut cmds = state::update(app, Event::Clock(SystemTime::now()));
                    cmds.extend(state::update(app, Event::Key(k)));
                    cmds
                }
                Some(Ok(TermEvent::Mouse(m))) => state::update(app, Event::Mouse(m)),
                Some(Ok(TermEvent::Resize(w, h))) => state::update(app, Event::Resize(w, h)),
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => return Err(format!("terminal input failed: {e}")),
                None => vec![Command::Quit],
            },
            Some(ev) = rx.recv() => {
                let mut cmds = state::update(app, Event::Live(ev));
                // Fold whatever else has arrived before drawing again.
                while let Ok(ev) = rx.try_recv() {
                    cmds.extend(state::update(app, Event::Live(ev)));
                }
                cmds
            }
            _ = clock.tick() => state::update(app, Event::Tick(SystemTime::now())),
            Some(ev) = action_rx.recv() => state::update(app, ev),
        };
        for c in commands {
            match c {
                Command::Refresh => workers.refresh_now(),
                Command::EditChecklist(edit) => {
                    app.checklist_edits += 1;
                    edits.save(edit);
                }
                Command::ChecklistRefused(edit) => {
                    let (name, operator) = (app.rb.name.clone(), app.operator.clone());
                    tokio::task::spawn_blocking(move || {
                        crate::store::checklist::audit_refused(&name, &operator, &[edit], "--read-only")
                    });
                }
                Command::Quit => app.quit = true,
                Command::PlanAction { .. }
                | Command::PlanShift { .. }
                | Command::PlanRollout { .. }
                | Command::PauseRollout
                | Command::Refused { .. }
                | Command::GateRefused { .. }
                | Command::Apply { .. } => match actions {
                    Some(cx) => spawn_change(app, cx, c, action_tx.clone()),
                    None => app.log("changes are not available here; nothing was changed"),
                },
            }
        }
        if app.quit {
            edits.finish().await;
            return Ok(());
        }
    }
}

/// Saves the cockpit's checklist edits off the loop (a slow or frozen store
/// must not freeze the screen), one at a time in the order they were made:
/// a tick then an untick saved side by side could land the other way round.
struct EditSaver {
    queue: Option<tokio::sync::mpsc::UnboundedSender<crate::store::checklist::Edit>>,
    worker: tokio::task::JoinHandle<()>,
}

/// How long quitting waits for edits still being saved.
const SAVE_ON_QUIT: Duration = Duration::from_secs(15);

impl EditSaver {
    /// `save` runs each edit (blocking), and its answer goes to `answers`.
    fn start(
        save: impl Fn(crate::store::checklist::Edit) -> Result<crate::store::checklist::ChecklistState, String>
        + Send
        + Sync
        + 'static,
        answers: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> EditSaver {
        let (queue, mut edits) = tokio::sync::mpsc::unbounded_channel::<crate::store::checklist::Edit>();
        let save = Arc::new(save);
        let worker = tokio::spawn(async move {
            while let Some(edit) = edits.recv().await {
                let save = save.clone();
                let saved = tokio::task::spawn_blocking(move || save(edit))
                    .await
                    .unwrap_or_else(|e| Err(format!("the save stopped: {e}")));
                let _ = answers.send(Event::ChecklistSaved(saved, std::time::Instant::now()));
            }
        });
        EditSaver { queue: Some(queue), worker }
    }

    fn save(&self, edit: crate::store::checklist::Edit) {
        if let Some(q) = &self.queue {
            let _ = q.send(edit);
        }
    }

    /// Waits (a while) for the edits still queued to be saved.
    async fn finish(&mut self) {
        self.queue = None;
        if tokio::time::timeout(SAVE_ON_QUIT, &mut self.worker).await.is_err() {
            tracing::warn!("checklist edits still unsaved after {} s on quit", SAVE_ON_QUIT.as_secs());
        }
    }
}

/// Rereads the audit lines time-gated items wait on when the log's length
/// changed since `seen` (an action finished here or elsewhere).
/// In a shared store the log is read off the loop every 5 s instead (a
/// slow S3 must not freeze the screen), and comes back as an event.
fn reload_gate_audit(
    app: &mut App,
    (seen, last_shared): &mut (Option<u64>, Option<std::time::Instant>),
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) {
    let afters: Vec<String> = app
        .rb
        .phases
        .iter()
        .flat_map(|p| &p.items)
        .filter_map(|i| i.not_before.as_ref().map(|nb| format!(" ({})", nb.after)))
        .collect();
    if afters.is_empty() {
        return;
    }
    let log = crate::store::audit::AuditLog::for_runbook(&app.rb.name);
    let Some(len) = log.local_len() else {
        if last_shared.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            *last_shared = Some(std::time::Instant::now());
            let tx = tx.clone();
            tokio::task::spawn_blocking(move || {
                let lines = log
                    .read()
                    .map(|l| l.into_iter().filter(|l| afters.iter().any(|a| l.action.ends_with(a))).collect());
                let _ = tx.send(Event::GateAudit(lines));
            });
        }
        return;
    };
    if *seen == Some(len) {
        return;
    }
    *seen = Some(len);
    match log.read() {
        Ok(lines) => {
            app.gate_audit = lines.into_iter().filter(|l| afters.iter().any(|a| l.action.ends_with(a))).collect()
        }
        Err(e) => app.log(format!("time gates: {e}")),
    }
}

/// Runs `work` off the loop and sends the event it ends with. If it panics,
/// `on_panic` turns the message into its outcome, so the item never stays
/// "planning…" or "applying…" with nothing said.
fn spawn_outcome<F>(
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
    work: F,
    on_panic: impl FnOnce(String) -> Event + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Event> + Send + 'static,
{
    use futures::FutureExt;
    tokio::spawn(async move {
        let event = match std::panic::AssertUnwindSafe(work).catch_unwind().await {
            Ok(e) => e,
            Err(p) => on_panic(crate::live::workers::panic_message(&*p)),
        };
        let _ = tx.send(event);
    })
}

/// A planning task's panic as its outcome: nothing was sent.
fn planning_panicked(key: &str) -> impl FnOnce(String) -> Event + Send + 'static {
    let key = key.to_string();
    move |m| Event::Planned { key, result: Err(format!("internal error while planning ({m}); nothing was changed")) }
}

/// `authority::authorise` for a change from the cockpit: refused (and audited)
/// under --read-only or in another account than that of the side it changes.
async fn authorise(
    rb: &crate::runbook::Runbook,
    clients: &crate::aws::SideClients,
    side: Side,
    read_only: bool,
    action: &str,
) -> Result<crate::authority::Actor, String> {
    let scope = crate::authority::Scope::Runbook { rb, clients, side };
    crate::authority::authorise(scope, read_only, action, "changes from this cockpit").await.map_err(String::from)
}

/// Plans or applies a change off the loop; the result comes back as an event.
/// Each is authorised first (`authority::authorise`), planning and applying alike.
fn spawn_change(app: &mut App, cx: &ActionContext, command: Command, tx: tokio::sync::mpsc::UnboundedSender<Event>) {
    use crate::drive::rollout;
    use crate::store::rollout::{Request, RequestNote};
    use app::PendingChange;
    let (clients, rb) = (cx.clients.clone(), app.rb.clone());
    let (read_only, vars) = (cx.read_only, cx.vars.clone());
    let planned = |key: &str, result: Result<PendingChange, String>| Event::Planned { key: key.to_string(), result };
    match command {
        Command::Refused { action } => {
            // The screen refused it already; this writes its audit line.
            tokio::spawn(async move {
                match authorise(&rb, &clients, Side::Dns, true, &action).await {
                    Ok(_) => tracing::error!(action, "authorise granted a change refused under --read-only"),
                    Err(e) if e.contains("could not be audited") => tracing::warn!(action, "{e}"),
                    Err(_) => {}
                }
            });
        }
        Command::GateRefused { key, refusal } => {
            // Authorised as the change would be (another account is refused,
            // and audited, there); then the gate's refusal with its reason.
            tokio::spawn(async move {
                let Ok(action) = item_action(&rb, &key, false) else { return };
                let name = format!("{} ({key})", action.summary());
                let Ok(who) = authorise(&rb, &clients, action.side(&rb), read_only, &name).await else { return };
                let line =
                    who.audit_line(&rb.name, name, crate::store::audit::Stage::Refused, Default::default(), refusal);
                if let Err(e) = crate::store::audit::AuditLog::for_runbook(&rb.name).append(&line) {
                    tracing::warn!(key, "the time gate's refusal could not be audited: {e}");
                }
            });
        }
        Command::PlanAction { key, rollback } => {
            let on_panic = planning_panicked(&key);
            spawn_outcome(tx, plan_action(rb, clients, key, rollback, read_only, vars), on_panic);
        }
        Command::PlanShift { percent } => {
            spawn_outcome(
                tx,
                async move {
                    let action = format!("shift_weights to {percent}%");
                    let result = match authorise(&rb, &clients, Side::Dns, read_only, &action).await {
                        Ok(who) => {
                            let weights = crate::analysis::weights::weights_for_percent(percent);
                            crate::drive::shift::plan_judged(&clients, &rb, weights, Some((&who, &action)))
                                .await
                                .map(|p| PendingChange::Shift(Box::new(p)))
                                .map_err(String::from)
                        }
                        Err(e) => Err(e),
                    };
                    planned("weights", result)
                },
                planning_panicked("weights"),
            );
        }
        Command::PlanRollout { control } => {
            spawn_outcome(
                tx,
                async move {
                    let result = match authorise(&rb, &clients, Side::Dns, read_only, control.action()).await {
                        Ok(actor) => {
                            let rcx = rollout::Context {
                                rb: (*rb).clone(),
                                clients,
                                actor,
                                vars,
                                adopt_live: false,
                                expect_live: None,
                                restart: false,
                                take_over: false,
                            };
                            plan_rollout(&rcx, control).await
                        }
                        Err(e) => Err(e),
                    };
                    planned(control.action(), result)
                },
                planning_panicked(control.action()),
            );
        }
        Command::PauseRollout => {
            let text = format!("paused from the cockpit by {}", app.operator);
            spawn_outcome(
                tx,
                async move {
                    let result = match authorise(&rb, &clients, Side::Dns, read_only, "rollout pause").await {
                        Ok(who) => rollout::request(
                            &who,
                            &rb.name,
                            Request::Pause,
                            RequestNote::new(text),
                            Duration::from_secs(30),
                        )
                        .await
                        .map_err(String::from),
                        Err(e) => Err(e),
                    };
                    Event::ActionDone { key: app::PAUSE_KEY.into(), result }
                },
                |m| Event::ActionDone { key: app::PAUSE_KEY.into(), result: Err(format!("internal error ({m})")) },
            );
        }
        Command::Apply { key } => {
            let Some(change) = app.pending_change.take() else { return };
            let global = cx.global_args.clone();
            let operator = app.operator.clone();
            let progress_tx = tx.clone();
            let panic_key = key.clone();
            let on_panic = move |m: String| Event::ActionDone {
                key: panic_key,
                result: Err(format!(
                    "internal error while applying ({m}); the change may be partly made: check the live values and \
                     the audit log"
                )),
            };
            let change_cx = ChangeCx { rb, clients, read_only, vars, global, operator };
            let work = apply_change(change_cx, change, key, progress_tx);
            spawn_outcome(tx, work, on_panic);
        }
        Command::Refresh | Command::EditChecklist(_) | Command::ChecklistRefused(_) | Command::Quit => {}
    }
}

/// What applying a change from the cockpit needs, off the loop.
struct ChangeCx {
    rb: std::sync::Arc<crate::runbook::Runbook>,
    clients: crate::aws::SideClients,
    read_only: bool,
    vars: std::collections::BTreeMap<String, String>,
    /// Global flags for a rollout started from here.
    global: Vec<String>,
    operator: String,
}

/// Plans an item's action (or its rollback) from live data, authorised first.
async fn plan_action(
    rb: std::sync::Arc<crate::runbook::Runbook>,
    clients: crate::aws::SideClients,
    key: String,
    rollback: bool,
    read_only: bool,
    vars: std::collections::BTreeMap<String, String>,
) -> Event {
    use app::PendingChange;
    let result = match item_action(&rb, &key, rollback) {
        Ok(a) => {
            let action = format!("{} ({key})", a.summary());
            match authorise(&rb, &clients, a.side(&rb), read_only, &action).await {
                Ok(who) => match crate::drive::actions::plan_with_vars(&clients, &rb, &a, &vars).await {
                    // Found done after a run that stopped before `applied`:
                    // recorded only once confirmed (a look writes nothing).
                    Ok(plan) if plan.noop.is_some() => match crate::drive::actions::found_done(&rb, &key, &plan) {
                        Ok(Some(_)) => Ok(PendingChange::FoundDone(plan)),
                        Ok(None) => Ok(PendingChange::Item(plan)),
                        Err(e) => Err(e),
                    },
                    Ok(plan) => Ok(PendingChange::Item(plan)),
                    Err(e) => match crate::drive::actions::audit_plan_refused(&rb, &who, action, &e) {
                        Ok(()) => Err(String::from(e)),
                        Err(unaudited) => Err(unaudited),
                    },
                },
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    Event::Planned { key, result }
}

/// Applies the change a person confirmed, authorised first: an item's steps,
/// a shift, or a rollout control. A Redis copy's progress goes to `progress_tx`.
async fn apply_change(
    cx: ChangeCx,
    change: app::PendingChange,
    key: String,
    progress_tx: tokio::sync::mpsc::UnboundedSender<Event>,
) -> Event {
    use crate::drive::rollout;
    use crate::store::rollout::{Request, RequestNote};
    use app::{Control, PendingChange};
    let ChangeCx { rb, clients, read_only, vars, global, operator } = cx;
    let (action, side) = match &change {
        PendingChange::Item(plan) | PendingChange::FoundDone(plan) => {
            (format!("{} ({key})", plan.name), plan.side.clone())
        }
        PendingChange::Shift(plan) => (format!("shift_weights to {}%", plan.weights.1), Side::Dns),
        PendingChange::Rollout { control, .. } => (control.action().to_string(), Side::Dns),
    };
    let who = match authorise(&rb, &clients, side, read_only, &action).await {
        Ok(who) => who,
        Err(e) => return Event::ActionDone { key, result: Err(e) },
    };
    let progress_key = key.clone();
    let mut report = move |r: crate::drive::actions::Report<'_>| {
        if let crate::drive::actions::Report::Progress { done, total, line } = r {
            let (key, line) = (progress_key.clone(), line.to_string());
            let _ = progress_tx.send(Event::ActionProgress { key, done, total, line });
        }
    };
    // The cockpit's log gets the outcome; a shift's own lines are not shown.
    let mut say = |m: &str| tracing::info!("{m}");
    let result = match change {
        PendingChange::Item(plan) => {
            crate::drive::actions::execute(&clients, &rb, &who, &key, &plan, &mut report).await.map_err(String::from)
        }
        // Planned a while ago (the popup waited): read again, and recorded
        // only if still done, since the record opens time gates after it.
        PendingChange::FoundDone(_) => match item_action(&rb, &key, false) {
            Err(e) => Err(e),
            Ok(a) => match crate::drive::actions::plan_with_vars(&clients, &rb, &a, &vars).await {
                Err(e) => Err(format!("not recorded: {}", String::from(e))),
                Ok(again) if again.noop.is_none() => Err(format!(
                    "not recorded: it is no longer done ({}); plan it again",
                    again.steps.iter().map(|s| s.describe()).collect::<Vec<_>>().join("; ")
                )),
                Ok(again) => crate::drive::actions::record_found_done(&rb, &who, &key, &again).map(|d| {
                    d.map_or_else(|| "nothing to record any more".to_string(), |d| format!("recorded as applied: {d}"))
                }),
            },
        },
        PendingChange::Shift(plan) => {
            crate::drive::shift::execute(&clients, &rb, &who, &plan, &mut say).await.map_err(String::from)
        }
        PendingChange::Rollout { control: c @ (Control::Start | Control::AdoptAndStart), live, .. } => {
            // Only the weights the popup showed are adopted: changed since,
            // the rollout refuses and sends nothing.
            let confirmed = live.map(|(f, t)| format!("{f}/{t}"));
            let extra: Vec<&str> = match (c, &confirmed) {
                (Control::AdoptAndStart, Some(w)) => vec!["--adopt-live", "--expect-live", w],
                (Control::AdoptAndStart, None) => vec!["--adopt-live"],
                _ => vec![],
            };
            rollout::spawn_detached(&who, &rb, &global, &extra, &vars)
                .map(|(pid, out)| format!("rollout started as process {pid}; its output: {}", out.display()))
        }
        PendingChange::Rollout { control: Control::Promote, step, .. } => {
            let text = format!("promoted from the cockpit by {operator}");
            let note = RequestNote { text, step: step.map(|s| s.0), soak_since: step.and_then(|s| s.1) };
            rollout::request(&who, &rb.name, Request::Promote, note, Duration::from_secs(30))
                .await
                .map_err(String::from)
        }
        PendingChange::Rollout { control: Control::Abort, .. } => {
            let rcx = rollout::Context {
                rb: (*rb).clone(),
                clients: clients.clone(),
                actor: who,
                vars: vars.clone(),
                adopt_live: false,
                expect_live: None,
                restart: false,
                take_over: false,
            };
            let reason = format!("aborted from the cockpit by {operator}");
            rollout::abort(&rcx, &reason, &mut say).await.map_err(String::from)
        }
    };
    Event::ActionDone { key, result }
}

/// Checks a rollout control against what runs now, and previews it; a start
/// whose state the live weights contradict becomes the question whether to
/// adopt them.
async fn plan_rollout(
    cx: &crate::drive::rollout::Context,
    control: app::Control,
) -> Result<app::PendingChange, String> {
    use crate::drive::rollout::{self, Verdict};
    use app::{Control, PendingChange};
    let name = &cx.rb.name;
    // Whether one runs is asked where needed, once: with a crashed holder's
    // expired lease in team mode each ask watches it for seconds.
    let running = || crate::store::rollout::is_running(name);
    match control {
        // The preview says when one runs (Verdict::Running).
        Control::Start | Control::AdoptAndStart => {
            let shell = "; use `cutover rollout` in a shell to decide";
            let refusal = |p: &rollout::Preview| {
                p.lines
                    .iter()
                    .find(|l| l.starts_with("would") || l.contains("would be refused"))
                    .cloned()
                    .unwrap_or_default()
            };
            let p = rollout::preview(&cx.rb, &cx.clients, false, None, (false, false)).await?;
            match p.verdict {
                Verdict::Go => {
                    Ok(PendingChange::Rollout { control: Control::Start, lines: p.lines, step: None, live: None })
                }
                Verdict::LiveWeightsDiffer { live, expected } => {
                    let mut a = rollout::preview(&cx.rb, &cx.clients, true, None, (false, false)).await?;
                    if a.verdict != Verdict::Go {
                        return Err(format!("{}{shell}", refusal(&a)));
                    }
                    let why = format!(
                        "the live weights {}/{} differ from the expected {}/{} (--adopt-live continues from the live ones)",
                        live.0, live.1, expected.0, expected.1
                    );
                    a.lines.insert(0, why);
                    Ok(PendingChange::Rollout {
                        control: Control::AdoptAndStart,
                        lines: a.lines,
                        step: None,
                        live: Some(live),
                    })
                }
                Verdict::Running => {
                    Err("a rollout of this runbook is already running (P pauses, + promotes, X aborts)".into())
                }
                Verdict::PlanChanged
                | Verdict::Complete
                | Verdict::TypesDiffer
                | Verdict::NotAsConfirmed { .. }
                | Verdict::LeaseLeft
                | Verdict::GatesReadElsewhere
                | Verdict::AlarmHistoryUnreadable
                | Verdict::ClockDiffers
                | Verdict::StateOfAnotherAccount
                | Verdict::CredentialsExpire => Err(format!("{}{shell}", refusal(&p))),
            }
        }
        Control::Promote if !running()? => Err("no rollout is running; nothing to promote".into()),
        Control::Promote => {
            let s = rollout::load_state(name)?.ok_or("the running rollout has saved no state yet")?;
            let step = Some((s.engine.step, s.engine.phase.soaking_since()));
            // A plan edited since: its step numbers name other weights here.
            let line = crate::live::fetch::rollout_view_of(&cx.rb, s).describe();
            Ok(PendingChange::Rollout { control, lines: vec![line], step, live: None })
        }
        Control::Abort => Ok(PendingChange::Rollout {
            control,
            lines: rollout::abort_preview(&cx.rb, &cx.clients).await?,
            step: None,
            live: None,
        }),
    }
}

/// The action of `phase/item`, or its rollback.
fn item_action(rb: &crate::runbook::Runbook, key: &str, rollback: bool) -> Result<crate::runbook::Action, String> {
    let (_, it) = rb.item_by_key(key).ok_or("no such item")?;
    if rollback {
        return it.rollback.clone().ok_or_else(|| "no rollback".to_string());
    }
    match &it.kind {
        crate::runbook::ItemKind::Action { action } => Ok(action.clone()),
        _ => Err("not an action".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edits are saved in the order they were made, one at a time: a tick
    /// whose save is slow is not overtaken by the untick after it (saved
    /// side by side, the store ended ticked); quitting waits for the queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checklist_edits_are_saved_in_order_and_before_quitting() {
        use crate::store::checklist::{ChecklistState, Edit};
        let stored = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let kept = stored.clone();
        let mut saver = EditSaver::start(
            move |edit| {
                let what = match &edit {
                    Edit::Tick { .. } => {
                        // A slow store for the first edit.
                        std::thread::sleep(Duration::from_millis(300));
                        "tick"
                    }
                    Edit::Untick { .. } => "untick",
                    _ => "other",
                };
                kept.lock().unwrap().push(what.to_string());
                Ok(ChecklistState::default())
            },
            tx,
        );
        let key = "prepare/backup".to_string();
        saver.save(Edit::Tick { key: key.clone(), by: "me".into(), at: "2026-12-06T18:00:00Z".into(), account: None });
        saver.save(Edit::Untick { key: key.clone() });
        saver.save(Edit::Tick { key: key.clone(), by: "me".into(), at: "2026-12-06T18:00:01Z".into(), account: None });
        saver.finish().await;
        assert_eq!(*stored.lock().unwrap(), ["tick", "untick", "tick"], "in order, and all before quitting");
        let mut answers = Vec::new();
        while let Ok(Event::ChecklistSaved(r, at)) = rx.try_recv() {
            answers.push((r.is_ok(), at));
        }
        assert_eq!(answers.len(), 3, "one answer each");
        assert!(answers.windows(2).all(|w| w[0].1 <= w[1].1), "answered in order");
    }

    #[tokio::test]
    async fn a_panicking_planning_or_apply_task_still_ends_with_an_outcome() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let key = "validate/redis-ingress";
        let plan = async {
            panic!("injected planning panic");
            #[allow(unreachable_code)]
            Event::Tick(std::time::SystemTime::now())
        };
        spawn_outcome(tx.clone(), plan, planning_panicked(key)).await.unwrap();
        match rx.recv().await {
            Some(Event::Planned { key: k, result: Err(e) }) => {
                assert_eq!(k, key);
                assert!(e.contains("injected planning panic") && e.contains("nothing was changed"), "{e}");
            }
            _ => panic!("expected the planning to end with its error"),
        }
        let apply = async {
            panic!("injected apply panic");
            #[allow(unreachable_code)]
            Event::Tick(std::time::SystemTime::now())
        };
        let on_panic = |m: String| Event::ActionDone { key: "weights".into(), result: Err(m) };
        spawn_outcome(tx, apply, on_panic).await.unwrap();
        assert!(
            matches!(rx.recv().await, Some(Event::ActionDone { result: Err(m), .. }) if m.contains("injected apply"))
        );
        crate::reliability::record(
            "terminal",
            "A planning task and an apply task that panic each still send their outcome (\"cannot plan: internal \
             error …; nothing was changed\", or a FAILED line), so no item is left \"planning…\" without an answer",
        );
    }
}
