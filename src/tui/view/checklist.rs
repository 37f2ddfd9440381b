//! The Checklist pane: phases and items, ticks, runs and the detail line.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{hhmmss, pane_block, selected_style, window};
use crate::drive::not_before::{self, Window};
use crate::runbook::ItemKind;
use crate::status::CheckOutcome;
use crate::store::checklist::item_key;
use crate::tui::app::{App, CheckRun};
use crate::tui::pane::Pane;
use crate::tui::rows::{self, ChecklistRow};

pub(super) fn checklist(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let rows = rows::checklist(app);
    let unread = app.checklist_unread.as_ref().map(|e| {
        Span::styled(
            format!(" NOT READ, ticks unknown: {e} "),
            Style::new().bold().fg(ratatui::style::Color::White).bg(th.bad),
        )
    });
    let block = pane_block(app, Pane::Checklist, unread.into_iter().collect());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [list, detail] = Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(inner);
    let sel = app.selected(Pane::Checklist);
    let item_of = |phase: &str, item: &str| app.rb.item(phase, item);
    let live = |key: &str| app.snap.checks.iter().find(|c| item_key(&c.phase, &c.item) == key);
    let done = |phase: &crate::runbook::Phase| {
        phase
            .items
            .iter()
            .filter(|i| {
                let key = item_key(&phase.id, &i.id);
                match &i.kind {
                    ItemKind::Manual => app.checklist.ticks.contains_key(&key),
                    ItemKind::Check { .. } => live(&key).is_some_and(|c| c.outcome == CheckOutcome::Pass),
                    ItemKind::Action { .. } => false,
                }
            })
            .count()
    };
    let lines: Vec<Line> = window(rows.len(), sel, list.height as usize)
        .map(|i| {
            let line = match &rows[i] {
                ChecklistRow::Phase { phase } => {
                    let p = app.rb.phases.iter().find(|x| &x.id == phase).expect("row of a known phase");
                    let (d, n) = (done(p), p.items.len());
                    let gauge: String = (0..10).map(|k| if k * n < d * 10 { '▰' } else { '▱' }).collect();
                    Line::from(vec![
                        Span::styled(format!("{} ", p.title), Style::new().bold()),
                        Span::styled(gauge, Style::new().fg(th.accent)),
                        Span::raw(format!(" {d}/{n}")),
                    ])
                }
                ChecklistRow::Item { phase, item } => {
                    let Some((_, it)) = item_of(phase, item) else { return Line::raw("?") };
                    let key = item_key(phase, item);
                    let (mark, style) = match &it.kind {
                        ItemKind::Manual => match app.checklist.ticks.get(&key) {
                            Some(t) => {
                                (format!("[x] {} {}", t.by, t.at.get(11..16).unwrap_or("")), Style::new().fg(th.ok))
                            }
                            None => ("[ ] manual".to_string(), Style::new()),
                        },
                        ItemKind::Check { .. } => match (app.runs.get(&key), live(&key)) {
                            (Some(CheckRun::Running { .. }), _) => ("… running".to_string(), Style::new().fg(th.warn)),
                            (Some(CheckRun::Done { outcome, .. }), Some(c)) if live_over(*outcome, c.outcome) => {
                                if c.outcome == CheckOutcome::Fail {
                                    ("✘ live: FAIL now".to_string(), Style::new().fg(th.bad).bold())
                                } else {
                                    ("✔ passed, live ?".to_string(), Style::new().fg(th.warn))
                                }
                            }
                            (Some(CheckRun::Done { outcome: CheckOutcome::Pass, at, .. }), _) => {
                                (format!("✔ passed {}", hhmmss(*at)), Style::new().fg(th.ok))
                            }
                            (Some(CheckRun::Done { outcome: CheckOutcome::Fail, at, .. }), _) => {
                                (format!("✘ FAILED {}", hhmmss(*at)), Style::new().fg(th.bad).bold())
                            }
                            (Some(CheckRun::Done { at, .. }), _) => {
                                (format!("? unknown {}", hhmmss(*at)), Style::new().fg(th.warn))
                            }
                            (None, Some(c)) => (
                                match c.outcome {
                                    CheckOutcome::Pass => "· live: pass",
                                    CheckOutcome::Fail => "· live: FAIL",
                                    CheckOutcome::Unknown => "· live: ?",
                                }
                                .to_string(),
                                match c.outcome {
                                    CheckOutcome::Pass => th.dim_style().fg(th.ok),
                                    CheckOutcome::Fail => th.dim_style().fg(th.bad),
                                    CheckOutcome::Unknown => th.dim_style(),
                                },
                            ),
                            (None, None) => ("· pending".to_string(), th.dim_style()),
                        },
                        ItemKind::Action { .. } if app.action_progress.contains_key(&key) => {
                            let (d, n, _) = &app.action_progress[&key];
                            let n = (*n).max(1);
                            let gauge: String = (0..10).map(|k| if k * n < d * 10 { '▰' } else { '▱' }).collect();
                            (format!("{gauge} {}%", d * 100 / n), Style::new().fg(th.warn))
                        }
                        ItemKind::Action { .. } => match (app.action_results.get(&key), app.gate_window(it)) {
                            // Its time is on the detail line: the mark's 18 columns cut it.
                            (Some(r), _) if r.rollback && r.ok => {
                                ("↶ rolled back".to_string(), Style::new().fg(th.warn))
                            }
                            (Some(r), _) if r.rollback => {
                                ("✘ rollback FAILED".to_string(), Style::new().fg(th.bad).bold())
                            }
                            (Some(r), _) if r.ok => (format!("✔ done {}", hhmmss(r.at)), Style::new().fg(th.ok)),
                            (Some(r), _) => (format!("✘ FAILED {}", hhmmss(r.at)), Style::new().fg(th.bad).bold()),
                            (None, Some(Window::Waiting { opens, .. })) => {
                                (format!("⧗ {}", not_before::left(opens, app.now)), Style::new().fg(th.warn))
                            }
                            (None, Some(Window::NotStarted)) => ("⧗ waiting".to_string(), th.dim_style()),
                            (None, _) => ("» action".to_string(), Style::new().fg(th.info)),
                        },
                    };
                    let note = if app.checklist.notes.contains_key(&key) { " ✎" } else { "" };
                    Line::from(vec![
                        Span::styled(format!("  {mark:<18.18} "), style),
                        Span::raw(format!("{}{note}", it.title)),
                    ])
                }
            };
            line.patch_style(selected_style(app, Pane::Checklist, i))
        })
        .collect();
    f.render_widget(Paragraph::new(lines), list);
    let text = match rows.get(sel) {
        Some(ChecklistRow::Item { phase, item }) => detail_line(app, phase, item, list.width),
        _ => String::new(),
    };
    f.render_widget(Paragraph::new(text).style(th.dim_style()).wrap(Wrap { trim: true }), detail);
}

/// Whether a check's row shows its `live` outcome over the one `recorded`
/// by a run: a live failure over anything but a failure (a run recorded
/// earlier is no pass once the live reading fails), and no live reading
/// over a recorded pass.
fn live_over(recorded: CheckOutcome, live: CheckOutcome) -> bool {
    (live == CheckOutcome::Fail && recorded != CheckOutcome::Fail)
        || (live == CheckOutcome::Unknown && recorded == CheckOutcome::Pass)
}

/// The selected item's detail: its whole title when the list cuts it, a
/// running copy's progress, the check's last detail, its note and rollback.
fn detail_line(app: &App, phase: &str, item: &str, list_width: u16) -> String {
    let key = item_key(phase, item);
    let mut parts = Vec::new();
    // A title the list cuts is shown whole here.
    if let Some((_, it)) = app.rb.item(phase, item)
        && it.title.chars().count() + 21 > usize::from(list_width)
    {
        parts.push(it.title.clone());
    }
    if let Some((_, _, line)) = app.action_progress.get(&key) {
        parts.push(line.clone());
    }
    match app.action_results.get(&key) {
        Some(r) if r.rollback && r.ok => parts.push(format!("rolled back at {}", hhmmss(r.at))),
        Some(r) if r.rollback => parts.push(format!("rollback FAILED at {}", hhmmss(r.at))),
        _ => {}
    }
    let live = app.snap.checks.iter().find(|c| item_key(&c.phase, &c.item) == key);
    match (app.runs.get(&key), live) {
        // The row shows the live reading over the one recorded: both here.
        (Some(CheckRun::Done { outcome, at, detail }), Some(c)) if live_over(*outcome, c.outcome) => {
            parts.push(format!("live now: {}", c.detail));
            let was = if *outcome == CheckOutcome::Pass { "passed" } else { "unknown" };
            parts.push(format!("{was} when run at {}: {detail}", hhmmss(*at)));
        }
        (Some(CheckRun::Done { detail, .. }), _) => parts.push(detail.clone()),
        (_, Some(c)) => parts.push(c.detail.clone()),
        _ => {}
    }
    if let Some((_, it)) = app.rb.item(phase, item)
        && let (Some(nb), Some(w)) = (&it.not_before, app.gate_window(it))
    {
        let wait = crate::runbook::duration::format_duration(nb.wait);
        parts.push(format!("not before {wait} after {}: {}", nb.after, w.describe(nb, app.now)));
    }
    if let Some(n) = app.checklist.notes.get(&key) {
        parts.push(format!("note: {n}"));
    }
    if let Some((_, it)) = app.rb.item(phase, item)
        && let Some(rb) = &it.rollback
    {
        parts.push(format!("rollback: {}", rb.summary()));
    }
    parts.join(" · ")
}
