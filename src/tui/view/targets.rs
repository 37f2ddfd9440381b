//! The Targets pane: every target of every group, with its reason and AZ.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{env_age, pane_block, selected_style, state_style, window};
use crate::tui::app::App;
use crate::tui::pane::Pane;
use crate::tui::rows::{self};

pub(super) fn targets(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let rows = rows::targets(app);
    let healthy = rows.iter().filter(|r| r.target.target.state == "healthy").count();
    let mut extra = vec![Span::raw(format!(" {healthy}/{} healthy ", rows.len()))];
    extra.extend(env_age(app));
    let block = pane_block(app, Pane::Targets, extra);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [list, detail] = Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(inner);
    let stale = app.snap.environments.iter().any(|e| e.aws.stale);
    let sel = app.selected(Pane::Targets);
    let lines: Vec<Line> = window(rows.len(), sel, list.height as usize)
        .map(|i| {
            let r = &rows[i];
            let t = &r.target.target;
            let warn = if r.target.zone_enabled == Some(false) { "⚠ " } else { "" };
            Line::from(vec![
                Span::raw(format!("{:<10.10} {:<15.15} ", r.environment, r.name.unwrap_or(&t.id))),
                Span::styled(format!("{warn}{:<9}", t.state), state_style(th, &t.state)),
                Span::raw(format!(" {}", t.reason.as_deref().unwrap_or(""))),
            ])
            .style(if stale { th.dim_style() } else { Style::new() }.patch(selected_style(
                app,
                Pane::Targets,
                i,
            )))
        })
        .collect();
    let empty = lines.is_empty();
    f.render_widget(Paragraph::new(lines), list);
    let text = match rows.get(sel) {
        Some(r) => {
            let t = &r.target.target;
            let mut s = format!("{} in {} port {}", t.id, r.group, t.port.map_or("—".into(), |p| p.to_string()));
            if let Some(d) = &t.description {
                s.push_str(&format!(": {d}"));
            }
            if let Some(x) = &r.target.explanation {
                s = format!("{x}. {s}");
            }
            s
        }
        None if empty => "no targets yet".into(),
        None => String::new(),
    };
    f.render_widget(Paragraph::new(text).style(th.dim_style()).wrap(Wrap { trim: true }), detail);
}
