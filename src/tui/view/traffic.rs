//! The Traffic pane: each side's weight, share and record.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{age, pane_block, selected_style};
use crate::tui::app::App;
use crate::tui::pane::Pane;

pub(super) fn traffic(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let v = &app.snap.traffic;
    let block = pane_block(app, Pane::Traffic, vec![age(app, v)]);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines = Vec::new();
    for (i, s) in v.value.iter().flatten().enumerate() {
        // A health check's verdict, and a side that gets another share than
        // its weight: said first, the bar takes what room is left.
        let tail = vec![
            match s.health_check.as_ref().map(|h| h.healthy) {
                Some(Some(true)) => Span::styled(" hc ok", Style::new().fg(th.ok)),
                Some(Some(false)) => Span::styled(" hc FAIL", Style::new().fg(th.bad)),
                Some(None) => Span::styled(" hc ?", th.dim_style()),
                None => Span::raw(""),
            },
            match (&s.no_traffic, &s.traffic_unknown) {
                (None, Some(_)) => Span::styled(" gets ?", Style::new().fg(th.warn)),
                // None of its share (its health fails), or more than its
                // weight gives it (the others' does).
                (Some(_), _) | (None, None) if s.no_traffic.is_some() || crate::live::fetch::share_differs(s) => {
                    Span::styled(
                        format!(" gets {:.0}%", s.effective_share_percent),
                        Style::new().fg(th.bad).add_modifier(ratatui::style::Modifier::BOLD),
                    )
                }
                _ => Span::raw(""),
            },
        ];
        let tail_width: usize = tail.iter().map(|t| t.width()).sum();
        let bar_width = (inner.width as usize).saturating_sub(34 + tail_width);
        let filled = ((s.share_percent / 100.0) * bar_width as f64).round() as usize;
        let style = if v.stale { th.dim_style() } else { Style::new() };
        let mut spans = vec![
            Span::raw(format!("{:<11.11} ", s.holder())),
            Span::raw(format!("w {:>3} ", s.weight.map_or("—".into(), |w| w.to_string()))),
            Span::styled(
                "█".repeat(filled),
                Style::new().fg(match (&s.environment, i) {
                    (None, _) => th.warn,
                    (Some(_), 0) => th.info,
                    (Some(_), _) => th.ok,
                }),
            ),
            Span::styled("░".repeat(bar_width.saturating_sub(filled)), th.dim_style()),
            Span::raw(format!(" {:>5.1}% ttl {}", s.share_percent, s.ttl.map_or("—".into(), |t| format!("{t}s")))),
        ];
        spans.extend(tail);
        lines.push(Line::from(spans).style(style.patch(selected_style(app, Pane::Traffic, i))));
    }
    if lines.is_empty() {
        lines.push(Line::styled(v.error.clone().unwrap_or_else(|| "reading Route53…".into()), th.dim_style()));
    }
    let unlisted = v.value.as_deref().and_then(crate::live::fetch::unlisted_records);
    for why in [unlisted, app.snap.traffic_unlisted_other_types.clone()].into_iter().flatten().rev() {
        lines.insert(0, Line::styled(why, Style::new().fg(th.bad).add_modifier(ratatui::style::Modifier::BOLD)));
    }
    // The bars are the first type's: another type split otherwise is said first.
    if let Some(why) = &app.snap.traffic_types_differ {
        lines.insert(
            0,
            Line::styled(
                format!("WEIGHTS DIFFER BY TYPE: {why}"),
                Style::new().fg(th.bad).add_modifier(ratatui::style::Modifier::BOLD),
            ),
        );
    }
    if inner.height as usize > lines.len() {
        // Unknown, not absent: "no rollout" here would hide a running one.
        let rollout = match (&app.snap.rollout_unread, &app.snap.rollout) {
            (Some(why), _) => format!("rollout UNKNOWN: cannot read {why}"),
            (None, None) => "no rollout".to_string(),
            (None, Some(r)) => format!("rollout {}", r.describe()),
        };
        let change = match (&app.snap.audit_unread, &app.snap.last_change) {
            (Some(why), _) => format!("  last change UNKNOWN: cannot read {why}"),
            (None, None) => String::new(),
            (None, Some(c)) => {
                let age = crate::time::age_of(&c.submitted_at, app.now).map_or(String::new(), |a| format!(" {a} ago"));
                format!("  last change {}{age}", c.status)
            }
        };
        let unread = app.snap.rollout_unread.is_some() || app.snap.audit_unread.is_some();
        let style = if unread { Style::new().fg(th.warn) } else { th.dim_style() };
        lines.push(Line::styled(format!("{rollout}{change}"), style));
    }
    f.render_widget(Paragraph::new(lines), inner);
}
