//! The cockpit: a full-screen terminal UI over the live workers.
//! Workers feed one channel; `state::update` folds events into `App`;
//! `view::render` draws it. The loop never awaits I/O between frames.

pub mod keys;
pub mod layout;
pub mod rows;
pub mod state;
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
    app.log(format!("checklist progress: {}", progress_path.display()));

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
    event_loop(&mut terminal, &mut app, input, rx, &workers, &progress_path, |_| {}).await?;
    drop(workers);
    Ok(())
}

/// The loop: draw, then wait for input, live data or the clock, fold it in,
/// carry out the commands. `drawn` is told after every frame (benchmarks).
pub async fn event_loop<B: ratatui::backend::Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: impl futures::Stream<Item = Result<TermEvent, String>> + Unpin,
    mut rx: tokio::sync::mpsc::Receiver<crate::live::Event>,
    workers: &workers::Workers,
    progress_path: &std::path::Path,
    mut drawn: impl FnMut(&App),
) -> Result<(), String> {
    let mut clock = tokio::time::interval(Duration::from_secs(1));
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
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}
