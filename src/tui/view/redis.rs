//! The Redis pane: each instance's paths to its Redis, three ways.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{env_age, pane_block, selected_style, window};
use crate::live::HealthProbe;
use crate::status::View;
use crate::tui::app::App;
use crate::tui::pane::Pane;
use crate::tui::rows::{self};
use crate::tui::theme::Theme;

pub(super) fn health_cell(th: &Theme, h: &View<HealthProbe>) -> (String, Style) {
    match &h.value {
        None => ("…".into(), th.dim_style()),
        Some(HealthProbe::NotProbed { .. }) => ("not probed".into(), th.dim_style()),
        Some(HealthProbe::Answered { status, redis_ok, .. }) => match redis_ok {
            Some(true) => (format!("{status} redis ok"), Style::new().fg(th.ok)),
            Some(false) => (format!("{status} redis DOWN"), Style::new().fg(th.bad).bold()),
            None => (format!("{status}"), Style::new()),
        },
        Some(HealthProbe::Failed { .. }) => ("unreachable".into(), Style::new().fg(th.bad).bold()),
    }
}
pub(super) fn redis(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let rows = rows::redis(app);
    let block = pane_block(app, Pane::Redis, env_age(app));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [head, list, detail, counts] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(3), Constraint::Length(1)])
            .areas(inner);
    f.render_widget(
        Paragraph::new(format!(
            "{:<15} {:<13} {:<8} {:<15} {}",
            "instance", "endpoint", "sg path", "own /health", "PING"
        ))
        .style(th.dim_style()),
        head,
    );
    let sel = app.selected(Pane::Redis);
    let lines: Vec<Line> = window(rows.len(), sel, list.height as usize)
        .map(|i| {
            let r = &rows[i];
            let path = &r.instance.sg_paths[r.endpoint];
            let (sg, sg_style) = if path.is_allowed() {
                ("ok".to_string(), Style::new().fg(th.ok))
            } else if matches!(path, crate::analysis::reachability::SgPath::Blocked { .. }) {
                ("BLOCKED".to_string(), Style::new().fg(th.bad).bold())
            } else {
                ("?".to_string(), Style::new().fg(th.warn))
            };
            let (h, h_style) = health_cell(th, &r.instance.health);
            let ping =
                app.snap.redis.iter().find(|x| x.name == r.endpoint).map_or(("—".to_string(), th.dim_style()), |x| {
                    match (&x.view.value, r.node) {
                        (Some(_), Some(n)) if !x.view.stale => match n.ping_ms.filter(|_| n.is_up()) {
                            Some(ms) => (format!("{ms:.1} ms {}", n.describe()), Style::new().fg(th.ok)),
                            None => (format!("FAIL {}", n.describe()), Style::new().fg(th.bad).bold()),
                        },
                        (Some(info), None) if !x.view.stale => {
                            (format!("{:.1} ms", info.ping_ms), Style::new().fg(th.ok))
                        }
                        (Some(_), _) => ("stale".into(), Style::new().fg(th.warn)),
                        (None, _) if x.view.error.is_some() => ("FAIL".into(), Style::new().fg(th.bad).bold()),
                        (None, _) => ("…".into(), th.dim_style()),
                    }
                });
            Line::from(vec![
                Span::raw(format!(
                    "{:<15.15} {:<13.13} ",
                    r.instance.instance.name.as_deref().unwrap_or(&r.instance.instance.id),
                    r.endpoint
                )),
                Span::styled(format!("{sg:<8} "), sg_style),
                Span::styled(format!("{h:<15.15} "), h_style),
                Span::styled(ping.0, ping.1),
            ])
            .style(selected_style(app, Pane::Redis, i))
        })
        .collect();
    f.render_widget(Paragraph::new(lines), list);
    if let Some(r) = rows.get(sel) {
        let mut why = Vec::new();
        if let Some(n) = r.node
            && let Some(e) = &n.error
        {
            why.push(format!("{}: {e}", n.describe()));
        }
        let path = &r.instance.sg_paths[r.endpoint];
        if !path.is_allowed() {
            why.push(format!("sg path: {}", path.describe()));
        }
        match &r.instance.health.value {
            Some(HealthProbe::Answered { redis_ok: Some(false), redis_error, .. }) => {
                why.push(format!("/health: {}", redis_error.as_deref().unwrap_or("Redis down")))
            }
            Some(HealthProbe::Failed { error, .. }) => why.push(format!("/health: {error}")),
            Some(HealthProbe::NotProbed { reason }) => why.push(reason.clone()),
            _ => {}
        }
        let text = if why.is_empty() { "all three paths ok".to_string() } else { why.join(" · ") };
        f.render_widget(Paragraph::new(text).style(th.dim_style()).wrap(Wrap { trim: true }), detail);
    }
    let counts_line: Vec<String> = app
        .snap
        .redis
        .iter()
        .map(|r| match &r.view.value {
            Some(i) => format!("{} {} keys ({} exp)", r.name, i.keys, i.expiring_keys),
            None => format!("{} —", r.name),
        })
        .collect();
    f.render_widget(Paragraph::new(counts_line.join("  │  ")), counts);
}
