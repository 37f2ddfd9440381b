//! The Parity pane: the rollout's two sides side by side, as `cutover diff`
//! compares them (`Snapshot::parity`, the one comparison); drift first.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{age, pane_block, selected_style};
use crate::tui::app::App;
use crate::tui::pane::Pane;
use crate::tui::rows::{ParityRow, parity};

pub(super) fn parity_pane(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    // Most telling first: where the pane is narrow, the title's end is cut.
    let mut extra = Vec::new();
    let view = app.snap.parity.as_ref();
    let value = view.and_then(|v| v.value.as_ref());
    if let Some(p) = value {
        let drift = p.drift();
        let stale = view.is_some_and(|v| v.stale);
        // "No drift" in green only of a fresh, whole comparison.
        extra.push(if drift > 0 {
            Span::styled(format!(" {drift} drift "), Style::new().fg(th.bad).add_modifier(Modifier::BOLD))
        } else if !p.not_compared.is_empty() {
            Span::styled(format!(" no drift seen, {} not compared ", p.not_compared.len()), Style::new().fg(th.warn))
        } else if stale {
            Span::styled(" no drift when last read ", Style::new().fg(th.warn))
        } else {
            Span::styled(" no drift ", Style::new().fg(th.ok))
        });
    }
    if let Some(v) = view {
        extra.push(age(app, v));
    }
    if let Some(p) = value {
        extra.push(Span::styled(format!("{} allowed ", p.allowed()), th.dim_style()));
    }
    let block = pane_block(app, Pane::Parity, extra);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(p) = view.and_then(|v| v.value.as_ref()) else {
        let why = match view.and_then(|v| v.error.as_deref()) {
            Some(e) => format!("the two sides could not be read: {e}"),
            None => "reading both sides… (every 60 s; r reads them now)".to_string(),
        };
        f.render_widget(Paragraph::new(Line::styled(why, th.dim_style())), inner);
        return;
    };
    let rows = parity(app);
    if rows.is_empty() {
        let text = if app.filter.is_empty() && p.not_compared.is_empty() {
            format!("no differences: {} and {} alike", p.from, p.to)
        } else if app.filter.is_empty() {
            format!("no differences seen; not compared: {}", p.not_compared.join("; "))
        } else {
            "no difference matches the filter".to_string()
        };
        f.render_widget(Paragraph::new(Line::styled(text, Style::new().fg(th.ok))), inner);
        return;
    }
    let dim = th.dim_style();
    // The sides once, above the rows: each row's values read `from → to`.
    let [head, inner] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Length(1),
        ratatui::layout::Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(Line::styled(format!("{} → {}", p.from, p.to), dim)), head);
    // Each row's lines, then a window that keeps the selected row whole.
    let mut lines: Vec<Line> = Vec::new();
    let mut selected_at = (0, 0);
    let sel = app.selected(Pane::Parity).min(rows.len() - 1);
    for (i, row) in rows.iter().enumerate() {
        let start = lines.len();
        let style = selected_style(app, Pane::Parity, i);
        match row {
            ParityRow::Difference(d) => {
                let verdict = match &d.allowed {
                    None => Span::styled("DRIFT   ", Style::new().fg(th.bad).add_modifier(Modifier::BOLD)),
                    Some(_) => Span::styled("allowed ", Style::new().fg(th.ok)),
                };
                lines.push(Line::from(vec![verdict, Span::raw(format!("{}  {}", d.what, d.subject))]).style(style));
                let values = match &d.within {
                    // One instance unlike its siblings on one side.
                    Some(env) => vec![
                        Span::styled(format!("  in {env}: "), dim),
                        Span::raw(d.to_value.clone()),
                        Span::styled(", its siblings ", dim),
                        Span::raw(d.from_value.clone()),
                    ],
                    // Too long for one line (a cluster's primaries that
                    // disagree): a line per side, so the `to` value is
                    // never the part cut off.
                    None if 2 + d.from_value.chars().count() + 3 + d.to_value.chars().count()
                        > inner.width as usize =>
                    {
                        let pad = p.from.chars().count().max(p.to.chars().count()) + 1;
                        lines.push(Line::from(vec![
                            Span::styled(format!("  {:pad$} ", format!("{}:", p.from)), dim),
                            Span::raw(d.from_value.clone()),
                        ]));
                        vec![
                            Span::styled(format!("  {:pad$} ", format!("{}:", p.to)), dim),
                            Span::raw(d.to_value.clone()),
                        ]
                    }
                    None => vec![
                        Span::raw(format!("  {}", d.from_value)),
                        Span::styled(" → ", dim),
                        Span::raw(d.to_value.clone()),
                    ],
                };
                lines.push(Line::from(values));
                if let Some(reason) = &d.allowed {
                    lines.push(Line::styled(format!("  why: {reason}"), dim));
                }
            }
            ParityRow::NotCompared(n) => {
                lines.push(
                    Line::from(vec![Span::styled("unread  ", Style::new().fg(th.warn)), Span::raw(n.to_string())])
                        .style(style),
                );
            }
        }
        if i == sel {
            selected_at = (start, lines.len());
        }
    }
    let h = inner.height as usize;
    let skip = selected_at.1.saturating_sub(h).min(selected_at.0);
    f.render_widget(Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()), inner);
}
