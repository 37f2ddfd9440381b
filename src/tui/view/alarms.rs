//! The Alarms & metrics pane.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{age, pane_block, selected_style, state_style};
use crate::tui::app::App;
use crate::tui::pane::Pane;

pub(super) fn sparkline(points: &[(i64, f64)], width: usize) -> String {
    if points.is_empty() {
        return "no data".into();
    }
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<f64> = points.iter().rev().take(width).rev().map(|p| p.1).collect();
    let max = vals.iter().cloned().fold(0.0f64, f64::max);
    vals.iter().map(|v| if max <= 0.0 { '▁' } else { BARS[((v / max) * 7.0).round() as usize] }).collect()
}
pub(super) fn alarms(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let block = pane_block(app, Pane::Alarms, vec![age(th, &app.snap.alarms)]);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines = Vec::new();
    for (i, a) in app.snap.alarms.value.iter().flatten().enumerate() {
        lines.push(
            Line::from(vec![
                Span::raw(format!("{:<24.24} ", a.name)),
                Span::styled(a.state.clone(), state_style(th, &a.state)),
            ])
            .style(selected_style(app, Pane::Alarms, i)),
        );
    }
    let spark_w = inner.width.saturating_sub(30) as usize;
    for s in app.snap.metrics.value.iter().flatten() {
        use crate::runbook::Metric;
        let label = match s.metric {
            Metric::RequestCount => "requests",
            Metric::Target5xx => "5xx",
            // The load balancer's own 5xx: a side whose targets refuse connections.
            Metric::Elb5xx => "lb 5xx",
            Metric::TargetResponseTime => "latency",
            _ => continue,
        };
        let missing = if s.error.is_some() { "n/a" } else { "—" };
        let last = s.points.last().map_or(missing.into(), |p| {
            if s.metric == Metric::TargetResponseTime {
                format!("{:.0}ms", p.1 * 1000.0)
            } else {
                format!("{:.0}", p.1)
            }
        });
        lines.push(Line::from(vec![
            Span::raw(format!("{:<10.10} {:<8} ", s.environment, label)),
            Span::styled(sparkline(&s.points, spark_w), Style::new().fg(th.accent)),
            Span::raw(format!(" {last}")),
        ]));
    }
    if app.snap.metrics.stale {
        lines.push(Line::styled("metrics STALE (e: why)", Style::new().fg(th.warn)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}
