//! The cockpit: a full-screen terminal UI over the live workers.
//! Workers feed one channel; `state::update` folds events into `App`;
//! `view::render` draws it. The loop never awaits I/O between frames.

pub mod keys;
pub mod layout;
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
use state::{App, Command, Event, Header};

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

fn install_panic_hook(log_file: Option<PathBuf>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
        if let Some(log) = &log_file {
            eprintln!("cutover crashed; the terminal was restored. Log: {}", log.display());
        }
    }));
}

/// What the loop needs to plan and apply checklist actions.
pub struct ActionContext {
    pub clients: crate::aws::Clients,
    /// Variables that win over the process environment (a sandbox's Redis URLs).
    pub vars: std::collections::BTreeMap<String, String>,
}

pub struct TuiOptions {
    pub profile: Option<String>,
    pub read_only: bool,
    pub log_file: Option<PathBuf>,
}

/// Runs the cockpit until the user quits. Returns an error message for the
/// caller to print after the terminal is restored.
pub async fn run(ctx: WorkerContext, region: String, opts: TuiOptions) -> Result<(), String> {
    let rb = (*ctx.rb).clone();
    let keymap = keys::Keymap::load()?;
    let theme = theme::Theme::load()?;
    let progress_path = crate::progress::path_for(&rb.name);
    let progress = crate::progress::Progress::load(&progress_path)?;
    let mut app = App::new(
        rb,
        region,
        Header { profile: opts.profile.clone(), read_only: opts.read_only },
        keymap,
        progress,
        crate::progress::operator(),
        SystemTime::now(),
    );
    app.theme = theme;
    app.log(format!("checklist progress: {}", progress_path.display()));

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
    let actions = ActionContext { clients: action_clients, vars: action_vars };
    let services = Services { workers: &workers, progress_path: &progress_path, actions: Some(&actions) };
    event_loop(&mut terminal, &mut app, input, rx, services, |_| {}).await?;
    drop(workers);
    Ok(())
}

/// The loop: draw, then wait for input, live data or the clock, fold it in,
/// carry out the commands. `drawn` is told after every frame (benchmarks).
/// What the loop works with besides the screen and the app.
pub struct Services<'a> {
    pub workers: &'a workers::Workers,
    pub progress_path: &'a std::path::Path,
    /// None: actions are refused (benchmarks).
    pub actions: Option<&'a ActionContext>,
}

pub async fn event_loop<B: ratatui::backend::Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: impl futures::Stream<Item = Result<TermEvent, String>> + Unpin,
    mut rx: tokio::sync::mpsc::Receiver<crate::live::Event>,
    services: Services<'_>,
    mut drawn: impl FnMut(&App),
) -> Result<(), String> {
    let Services { workers, progress_path, actions } = services;
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    // Planning and applying run off the loop; their results come back here.
    let (action_tx, mut action_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    loop {
        terminal.draw(|f| view::render(app, f)).map_err(|e| format!("cannot draw: {e}"))?;
        drawn(app);
        let commands = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => state::update(app, Event::Key(k)),
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
                Command::SaveProgress => {
                    if let Err(e) = app.progress.save(progress_path) {
                        app.log(e);
                    }
                }
                Command::Quit => app.quit = true,
                Command::PlanAction { key, rollback } => {
                    let Some(cx) = actions else {
                        let _ = action_tx
                            .send(Event::ActionPlanned { key, result: Err("actions are not available here".into()) });
                        continue;
                    };
                    let (clients, rb, tx) = (cx.clients.clone(), app.rb.clone(), action_tx.clone());
                    let vars = cx.vars.clone();
                    tokio::spawn(async move {
                        let result = match item_action(&rb, &key, rollback) {
                            Ok(a) => crate::drive::actions::plan_with_vars(&clients, &rb, &a, &vars).await,
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(Event::ActionPlanned { key, result });
                    });
                }
                Command::ApplyAction { key } => {
                    let (Some(cx), Some(plan)) = (actions, app.pending_action.take()) else { continue };
                    let Some(identity) = app.snap.identity.value.clone() else {
                        app.log(format!("{key}: refused: the account is not known yet; nothing was changed"));
                        continue;
                    };
                    let who = crate::drive::actions::Actor {
                        account: identity.account,
                        region: app.region.clone(),
                        operator: app.operator.clone(),
                    };
                    let (clients, rb, tx) = (cx.clients.clone(), app.rb.clone(), action_tx.clone());
                    tokio::spawn(async move {
                        let (progress_tx, progress_key) = (tx.clone(), key.clone());
                        let mut say = move |l: &str| {
                            if let Some((done, total, line)) = crate::drive::actions::parse_progress(l) {
                                let (key, line) = (progress_key.clone(), line.to_string());
                                let _ = progress_tx.send(Event::ActionProgress { key, done, total, line });
                            }
                        };
                        let result = crate::drive::actions::execute(&clients, &rb, &who, &key, &plan, &mut say).await;
                        let _ = tx.send(Event::ActionDone { key, result });
                    });
                }
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}

/// The action of `phase/item`, or its rollback.
fn item_action(rb: &crate::runbook::Runbook, key: &str, rollback: bool) -> Result<crate::runbook::Action, String> {
    let (phase, item) = key.split_once('/').ok_or("not phase/item")?;
    let it = rb
        .phases
        .iter()
        .find(|p| p.id == phase)
        .and_then(|p| p.items.iter().find(|i| i.id == item))
        .ok_or("no such item")?;
    if rollback {
        return it.rollback.clone().ok_or_else(|| "no rollback".to_string());
    }
    match &it.kind {
        crate::runbook::ItemKind::Action { action } => Ok(action.clone()),
        _ => Err("not an action".into()),
    }
}
