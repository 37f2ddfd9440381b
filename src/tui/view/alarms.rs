//! The Alarms & metrics pane.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{age, pane_block, selected_style, state_style};
use crate::tui::app::App;
use crate::tui::pane::Pane;

/// The metrics' period (the workers ask GetMetricData for one minute).
const PERIOD: i64 = 60;

use crate::status::CURRENT_WITHIN;

/// Exactly `width` columns, one a minute, `newest` (the newest datapoint of
/// any series) at the right, so the columns line up across series: a minute
/// without a datapoint (none: CloudWatch publishes no count for a minute
/// without any) is blank, so gaps are not squeezed out.
pub(super) fn sparkline(points: &[(i64, f64)], width: usize, newest: i64) -> String {
    // No datapoint at all: blank columns, and the value says "no data".
    if points.is_empty() {
        return " ".repeat(width);
    }
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let newest = minute_of(newest);
    let minute = |i: usize| newest - PERIOD * (width - 1 - i) as i64;
    let cols: Vec<Option<f64>> =
        (0..width).map(|i| points.iter().rev().find(|p| minute_of(p.0) == minute(i)).map(|p| p.1)).collect();
    let max = cols.iter().flatten().cloned().fold(0.0f64, f64::max);
    cols.iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if max <= 0.0 => '▁',
            Some(v) => BARS[((v / max) * 7.0).round() as usize],
        })
        .collect()
}

fn minute_of(t: i64) -> i64 {
    t.div_euclid(PERIOD) * PERIOD
}

/// How many minute columns the sparklines take: from the oldest datapoint
/// of any series to the newest, at most `room`.
fn columns(series: &[&crate::aws::cloudwatch::Series], newest: i64, room: usize) -> usize {
    let oldest = series.iter().flat_map(|s| s.points.first()).map(|p| minute_of(p.0)).min().unwrap_or(newest);
    room.min(usize::try_from((minute_of(newest) - oldest) / PERIOD + 1).unwrap_or(1))
}

/// The newest datapoint as the current value, or, when it is older than
/// [`CURRENT_WITHIN`], with its age, since it says nothing of now.
/// How a series' last value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Current,
    /// Older than [`CURRENT_WITHIN`]: its age is said.
    Old,
    /// The series' reading failed: what points came back are partial.
    Failed,
}

fn last_value(points: &[(i64, f64)], now: i64, failed: bool, show: impl Fn(f64) -> String) -> (String, Last) {
    match points.last() {
        // A failed reading's points may stop short (GetMetricData's
        // InternalError comes with what it had): never a current value.
        _ if failed => ("n/a".to_string(), Last::Failed),
        None => ("no data".to_string(), Last::Current),
        Some(&(t, v)) if now - t > CURRENT_WITHIN => (format!("{} {}m ago", show(v), (now - t) / 60), Last::Old),
        Some(&(_, v)) => (show(v), Last::Current),
    }
}

pub(super) fn alarms(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    // The metrics' failure is in the title, not on a line under their rows:
    // the pane is sized to its rows and cut that line off. Both failing,
    // the one STALE says it of the whole pane.
    let title = match (app.snap.metrics.stale, app.snap.alarms.stale) {
        (true, false) => {
            vec![Span::styled(" metrics STALE ", Style::new().fg(Color::Black).bg(th.warn)), age(app, &app.snap.alarms)]
        }
        _ => vec![age(app, &app.snap.alarms)],
    };
    let block = pane_block(app, Pane::Alarms, title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines = Vec::new();
    for (i, a) in app.snap.alarms.value.iter().flatten().enumerate() {
        // An OK that cannot see its side is never a green OK.
        let blind = app.snap.blind_alarms.get(&a.name).filter(|_| a.state == "OK");
        let state = match blind {
            Some(_) => Span::styled("OK, blind", Style::new().fg(th.warn).add_modifier(ratatui::style::Modifier::BOLD)),
            None => Span::styled(a.state.clone(), state_style(th, &a.state)),
        };
        lines.push(Line::from(vec![Span::raw(format!("{:<24.24} ", a.name)), state]).style(selected_style(
            app,
            Pane::Alarms,
            i,
        )));
        if let Some(why) = blind {
            lines.push(Line::styled(format!("  {why}"), th.dim_style()));
        }
    }
    use crate::runbook::Metric;
    let now = app.now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let label = |m: Metric| match m {
        Metric::RequestCount => Some("requests"),
        Metric::Target5xx => Some("5xx"),
        // The load balancer's own 5xx: a side whose targets refuse connections.
        Metric::Elb5xx => Some("lb 5xx"),
        Metric::TargetResponseTime => Some("latency"),
        _ => None,
    };
    let shown: Vec<_> = app.snap.metrics.value.iter().flatten().filter(|s| label(s.metric).is_some()).collect();
    let newest = shown.iter().flat_map(|s| s.points.last()).map(|p| p.0).max().unwrap_or(now);
    let lasts: Vec<(String, Last)> = shown
        .iter()
        .map(|s| {
            let latency = s.metric == Metric::TargetResponseTime;
            last_value(&s.points, now, s.error.is_some(), |v| match latency {
                true => format!("{:.0}ms", v * 1000.0),
                false => format!("{v:.0}"),
            })
        })
        .collect();
    // Room for the widest value (an aged one is longer), so none is cut off.
    let widest = lasts.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    let room = (inner.width as usize).saturating_sub(20 + 1 + widest).max(1);
    let width = columns(&shown, newest, room);
    for (s, (last, shade)) in shown.iter().zip(lasts) {
        lines.push(Line::from(vec![
            Span::raw(format!("{:<10.10} {:<8} ", s.environment, label(s.metric).unwrap_or_default())),
            Span::styled(sparkline(&s.points, width, newest), Style::new().fg(th.accent)),
            Span::raw(" "),
            Span::styled(
                last,
                match shade {
                    Last::Current => Style::new(),
                    Last::Old => th.dim_style(),
                    Last::Failed => Style::new().fg(th.warn),
                },
            ),
        ]));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_without_a_datapoint_is_a_gap_and_an_old_value_says_its_age() {
        let now = 10_000 * 60 + 30;
        let m = |ago: i64| (10_000 - ago) * 60;
        // Datapoints 1, 2 and 4 minutes ago: minute 3 is a gap, and so is
        // the newest minute when another series has a datapoint there.
        let points = [(m(4), 10.0), (m(2), 5.0), (m(1), 10.0)];
        assert_eq!(sparkline(&points, 5, m(0)), "█ ▅█ ");
        assert_eq!(sparkline(&points, 4, m(1) + 59), "█ ▅█");
        assert_eq!(sparkline(&points, 3, m(1)), " ▅█", "the minutes up to the newest");
        assert_eq!(sparkline(&points, 7, m(0)), "  █ ▅█ ", "as wide as asked, so rows line up");
        assert_eq!(sparkline(&[], 4, m(0)), "    ", "as wide as the others, so rows line up");
        let show = |v: f64| format!("{v:.0}");
        assert_eq!(last_value(&points, now, false, show), ("10".to_string(), Last::Current));
        let old = [(m(14), 57.0)];
        assert_eq!(last_value(&old, now, false, show), ("57 14m ago".to_string(), Last::Old));
        assert_eq!(last_value(&[], now, false, show), ("no data".to_string(), Last::Current));
        assert_eq!(last_value(&[], now, true, show), ("n/a".to_string(), Last::Failed));
        // Partial points of a failed reading are no current value.
        assert_eq!(last_value(&points, now, true, show), ("n/a".to_string(), Last::Failed));
    }
}
