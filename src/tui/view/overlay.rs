//! The popups: help, errors, palette, filter, note, confirm, shift.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{centered, popup, popup_block};
use crate::tui::app::{App, Overlay};

pub(super) fn overlay(f: &mut Frame, app: &App, area: Rect) {
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help(f, app, area),
        Overlay::Errors => errors(f, app, area),
        Overlay::Palette { input, selected } => palette(f, app, area, input, *selected),
        Overlay::Filter { input } => filter(f, app, area, input),
        Overlay::ShiftTo { input } => shift_to(f, app, area, input),
        Overlay::Confirm { key } => confirm(f, app, area, key, None),
        Overlay::ConfirmName { key, input } => confirm(f, app, area, key, Some(input)),
        Overlay::Note { key, input, .. } => note(f, app, area, key, input),
    }
}

fn help(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let mut lines =
        vec![Line::styled(format!("Keys in the {} pane (any key closes)", app.focus.title()), th.dim_style())];
    for b in app.keymap.by_priority(app.focus) {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>12}  ", app.keymap.keys_of(b.action)), Style::new().fg(th.accent)),
            Span::raw(b.help),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(format!("{:>12}  ", "ctrl-c"), Style::new().fg(th.accent)),
        Span::raw("quit from anywhere"),
    ]));
    lines.push(Line::from(vec![
        Span::styled(format!("{:>12}  ", "esc"), Style::new().fg(th.accent)),
        Span::raw("close a popup or leave zoom"),
    ]));
    let h = lines.len() as u16 + 2;
    popup(f, th, centered(area, 66, h), "help", lines);
}

fn errors(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let mut lines = Vec::new();
    let mut add = |what: &str, e: &Option<String>| {
        if let Some(e) = e {
            lines.push(Line::from(vec![Span::styled(format!("{what}: "), Style::new().bold()), Span::raw(e.clone())]));
        }
    };
    add("identity", &app.snap.identity.error);
    add("traffic", &app.snap.traffic.error);
    for e in &app.snap.environments {
        add(&format!("{} (AWS)", e.name), &e.aws.error);
    }
    for r in &app.snap.redis {
        add(&format!("Redis {}", r.name), &r.view.error);
    }
    add("alarms", &app.snap.alarms.error);
    add("metrics", &app.snap.metrics.error);
    for m in app.snap.metrics.value.iter().flatten().filter(|m| m.error.is_some()) {
        add(&format!("{} {} ({})", m.environment, m.metric.cloudwatch_name(), m.stat), &m.error);
    }
    if let Some(p) = &app.snap.parity {
        add("the two sides (parity)", &p.error);
    }
    if lines.is_empty() {
        lines.push(Line::raw("no source is failing"));
    }
    popup(
        f,
        th,
        centered(area, area.width.saturating_sub(6), lines.len() as u16 * 2 + 2),
        "errors behind stale values",
        lines,
    );
}

fn palette(f: &mut Frame, app: &App, area: Rect, input: &str, selected: usize) {
    let th = &app.theme;
    let entries = app.palette_entries(input);
    let mut lines = vec![Line::from(vec![
        Span::styled(": ", Style::new().fg(th.accent)),
        Span::raw(input.to_string()),
        Span::styled("▏", Style::new().fg(th.accent)),
    ])];
    for (i, (_, label)) in entries.iter().enumerate().take(12) {
        let style = if i == selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        lines.push(Line::styled(format!("  {label}"), style));
    }
    if entries.is_empty() {
        lines.push(Line::styled("  no command matches", th.dim_style()));
    }
    popup(f, th, centered(area, 50, 16), "command palette (enter runs, esc closes)", lines);
}

fn filter(f: &mut Frame, app: &App, area: Rect, input: &str) {
    let th = &app.theme;
    let r = Rect::new(area.x, area.bottom().saturating_sub(1), area.width, 1);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" / ", Style::new().fg(Color::Black).bg(th.info)),
            Span::raw(format!(" {input}▏  (enter applies, esc cancels, empty clears)")),
        ])),
        r,
    );
}

fn shift_to(f: &mut Frame, app: &App, area: Rect, input: &str) {
    let th = &app.theme;
    let r = Rect::new(area.x, area.bottom().saturating_sub(1), area.width, 1);
    f.render_widget(Clear, r);
    let to = &app.rb.rollout.to;
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" shift ", Style::new().fg(Color::Black).bg(th.warn)),
            Span::raw(format!(" {to} to {input}▏%  (enter plans it for confirmation, esc cancels)")),
        ])),
        r,
    );
}

/// The account and region a change to `side` is made in, as read: the
/// side's own when the runbook reaches its sides apart (an unread one is
/// `?`, never another side's), else the cockpit's.
fn where_applied(app: &App, side: &crate::runbook::Side) -> String {
    let name = side.to_string();
    match app.snap.sides.iter().find(|s| s.side == name) {
        Some(s) => format!(
            "{name} account {}, {}",
            s.identity.value.as_ref().map_or("?", |i| i.account.as_str()),
            s.region.as_deref().unwrap_or("?")
        ),
        None => {
            format!("account {}, {}", app.snap.identity.value.as_ref().map_or("?", |i| i.account.as_str()), app.region)
        }
    }
}

/// The confirm popup; `typed`: the name typed so far, for a change with no rollback.
/// What is said about the change and the y / n line always show: a change
/// batch (JSON over many rows) goes last and is cut short with `…` when the
/// screen cannot hold it, where it used to push the warnings after it and the
/// y / n line out of the popup.
fn confirm(f: &mut Frame, app: &App, area: Rect, key: &str, typed: Option<&str>) {
    let th = &app.theme;
    let Some(change) = &app.pending_change else { return };
    let summary = change.summary();
    let mut head = vec![Line::from(vec![
        Span::styled(format!("{} ", summary.name), Style::new().bold()),
        Span::raw(format!("({key}) in {}", where_applied(app, &change.side()))),
    ])];
    if let Some(b) = summary.before {
        head.push(Line::from(vec![Span::styled("before ", th.dim_style()), Span::raw(b)]));
    }
    if let Some(a) = summary.after {
        head.push(Line::from(vec![Span::styled("after  ", th.dim_style()), Span::raw(a)]));
    }
    let (batches, said): (Vec<&String>, Vec<&String>) =
        summary.details.iter().partition(|d| d.starts_with("change batch:"));
    for d in said {
        head.push(Line::raw(format!("  • {d}")));
    }
    let batches: Vec<String> = batches.iter().map(|d| format!("  • {d}")).collect();
    let mut tail = vec![Line::raw("")];
    let name = match &app.pending_change {
        Some(crate::tui::app::PendingChange::Item(plan)) => plan.confirm_name(),
        _ => None,
    };
    match (typed, name) {
        (Some(input), Some(name)) => {
            tail.push(Line::styled(
                "NO ROLLBACK EXISTS: this cannot be undone",
                Style::new().fg(th.bad).add_modifier(Modifier::BOLD),
            ));
            tail.push(Line::from(vec![
                Span::raw(format!("type {name} and press enter to apply (audited); esc cancels: ")),
                Span::styled(format!("{input}▏"), Style::new().bold()),
            ]));
        }
        _ => tail.push(Line::from(vec![
            Span::styled(" y ", Style::new().fg(Color::Black).bg(th.ok)),
            Span::raw(" apply (audited)   "),
            Span::styled(" n / esc ", Style::new().fg(Color::Black).bg(Color::Gray)),
            Span::raw(" cancel"),
        ])),
    }
    let title = if app.rb.production { "CONFIRM A CHANGE TO PRODUCTION" } else { "confirm a change" };
    let w = area.width.saturating_sub(8).min(110);
    let width = usize::from(w.saturating_sub(2)).max(1);
    let rows = |lines: &[Line]| lines.iter().map(|l| wrapped_rows(&line_text(l), width)).sum::<usize>();
    let batch_rows: usize = batches.iter().map(|b| wrapped_rows(b, width)).sum();
    // Borders, and air below as before.
    let wanted = rows(&head) + batch_rows + rows(&tail) + 6;
    let rect = centered(area, w, u16::try_from(wanted).unwrap_or(u16::MAX).min(area.height));
    f.render_widget(Clear, rect);
    let block = popup_block(th, title);
    let inner = block.inner(rect);
    f.render_widget(block, rect);
    let tail_h = u16::try_from(rows(&tail)).unwrap_or(u16::MAX).min(inner.height);
    let room = inner.height - tail_h;
    let left = usize::from(room).saturating_sub(rows(&head));
    if batch_rows <= left {
        head.extend(batches.into_iter().map(Line::raw));
    } else if left > 0 {
        // The rows left, less one for the `…` that says it is cut.
        let mut text = batches.join(" ");
        let mut keep = (left - 1) * width;
        while keep > 0 && wrapped_rows(&text.chars().take(keep).collect::<String>(), width) > left - 1 {
            keep = keep.saturating_sub(width.div_ceil(2));
        }
        text = text.chars().take(keep).collect();
        if !text.is_empty() {
            head.push(Line::raw(text));
        }
        head.push(Line::styled("  … (the batch is cut here: the screen is too small for all of it)", th.dim_style()));
    }
    // The y / n line right under the text, and always inside the popup.
    let head_h = u16::try_from(rows(&head)).unwrap_or(u16::MAX).min(room);
    let head_at = Rect { height: head_h, ..inner };
    let tail_at = Rect { y: inner.y + head_h, height: tail_h, ..inner };
    f.render_widget(Paragraph::new(head).wrap(Wrap { trim: false }), head_at);
    f.render_widget(Paragraph::new(tail).wrap(Wrap { trim: false }), tail_at);
}

fn line_text(line: &Line) -> String {
    line.spans.iter().map(|s| s.content.as_ref()).collect()
}

/// The rows `text` takes wrapped at word boundaries in `width` columns (a
/// word longer than a row is broken): the popup's height is counted from them.
fn wrapped_rows(text: &str, width: usize) -> usize {
    let (mut rows, mut col) = (1, 0);
    for word in text.split(' ') {
        let n = word.chars().count();
        let need = if col == 0 { n } else { col + 1 + n };
        if need <= width {
            col = need;
        } else if n <= width {
            rows += 1;
            col = n;
        } else {
            // Broken over rows, begun on a new one.
            rows += usize::from(col > 0) + (n - 1) / width;
            col = n - (n - 1) / width * width;
        }
    }
    rows
}

fn note(f: &mut Frame, app: &App, area: Rect, key: &str, input: &str) {
    let th = &app.theme;
    let lines = vec![
        Line::styled(format!("note on {key} (enter saves, empty removes, esc cancels)"), th.dim_style()),
        Line::raw(format!("{input}▏")),
    ];
    popup(f, th, centered(area, 60, 4), "note", lines);
}
