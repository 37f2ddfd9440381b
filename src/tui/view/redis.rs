//! The Redis pane: each instance's paths to its Redis, three ways.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{env_age, pane_block, selected_style, window};
use crate::analysis::reachability::SgPath;
use crate::live::HealthProbe;
use crate::live::fetch::RedisInfo;
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
            // The master's port, and a Sentinel endpoint's sentinels' too.
            let paths: Vec<&SgPath> = [r.instance.sg_paths.get(r.endpoint), r.instance.sentinel_paths.get(r.endpoint)]
                .into_iter()
                .flatten()
                .collect();
            let unchecked = sentinels_unchecked(app, r);
            let (sg, sg_style) = if paths.iter().all(|p| p.is_allowed()) && !unchecked {
                // Never a green ok read before the environment's reads began failing.
                match aws_stale(app, r) {
                    Some(_) => ("stale".to_string(), Style::new().fg(th.warn)),
                    None => ("ok".to_string(), Style::new().fg(th.ok)),
                }
            } else if paths.iter().any(|p| matches!(p, SgPath::Blocked { .. })) {
                ("BLOCKED".to_string(), Style::new().fg(th.bad).bold())
            } else {
                ("?".to_string(), Style::new().fg(th.warn))
            };
            let (h, h_style) = health_cell(th, &r.instance.health);
            let ping =
                app.snap.redis.iter().find(|x| x.name == r.endpoint).map_or(("—".to_string(), th.dim_style()), |x| {
                    match (&x.view.value, r.node) {
                        (Some(info), Some(n)) if !x.view.stale => {
                            // The pane is narrow: the part of the address that tells the nodes apart.
                            let addrs: Vec<&str> = info.nodes.iter().map(|n| n.node.addr.as_str()).collect();
                            let i = info.nodes.iter().position(|m| std::ptr::eq(m, n)).unwrap_or(0);
                            let label = distinct_parts(&addrs).swap_remove(i);
                            match n.ping_ms.filter(|_| n.is_up()) {
                                Some(ms) => (format!("{ms:.1} ms {label}"), Style::new().fg(th.ok)),
                                None => (format!("FAIL {label}"), Style::new().fg(th.bad).bold()),
                            }
                        }
                        (Some(info), None) if !x.view.stale && !info.sentinels.is_empty() => {
                            // The master's PING, and how many sentinels are as they
                            // should be (s:3/3); the column is narrow, the detail says more.
                            let n = info.sentinels.len();
                            match info.sentinels.iter().filter(|s| s.is_up()).count() {
                                up if up == n => (format!("{:.1} ms s:{up}/{n}", info.ping_ms), Style::new().fg(th.ok)),
                                up => (format!("{:.1} ms s:{up}/{n}!", info.ping_ms), Style::new().fg(th.bad).bold()),
                            }
                        }
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
        let endpoint = app.snap.redis.iter().find(|x| x.name == r.endpoint).map(|x| &x.view);
        let text = paths_summary(r, endpoint, aws_stale(app, r));
        f.render_widget(Paragraph::new(text).style(th.dim_style()).wrap(Wrap { trim: true }), detail);
    }
    let counts_line: Vec<String> = app
        .snap
        .redis
        .iter()
        .map(|r| match &r.view.value {
            Some(i) if r.view.stale => format!("{} {} keys ({} exp), stale", r.name, i.keys, i.expiring_keys),
            Some(i) => format!("{} {} keys ({} exp)", r.name, i.keys, i.expiring_keys),
            None => format!("{} —", r.name),
        })
        .collect();
    f.render_widget(Paragraph::new(counts_line.join("  │  ")), counts);
}

/// Why the row's security-group path is not of now, if it is not: its
/// environment's AWS reading is stale (the last one failed).
fn aws_stale(app: &App, r: &rows::RedisRow<'_>) -> Option<String> {
    let aws = &app.snap.environment(r.environment)?.aws;
    aws.stale.then(|| aws.error.clone().unwrap_or_else(|| "no reason given".into()))
}

/// A Sentinel endpoint (its reading found sentinels) whose sentinels'
/// security-group path the runbook gives no port to check.
fn sentinels_unchecked(app: &App, r: &rows::RedisRow<'_>) -> bool {
    let found = app.snap.redis.iter().find(|x| x.name == r.endpoint).and_then(|x| x.view.value.as_ref());
    found.is_some_and(|i| !i.sentinels.is_empty()) && !r.instance.sentinel_paths.contains_key(r.endpoint)
}

/// The part of each address that tells it from the others: their common
/// prefix and suffix cut at a `.` or `:` (`127.0.0.1:7000` → `:7000`;
/// `c-0001-001.c.x.cache.amazonaws.com:6379` → `c-0001-001`).
pub fn distinct_parts(addrs: &[&str]) -> Vec<String> {
    let common = |a: &[char], b: &[char]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let chars: Vec<Vec<char>> = addrs.iter().map(|a| a.chars().collect()).collect();
    if chars.len() < 2 {
        return addrs.iter().map(|a| a.to_string()).collect();
    }
    let sep = |c: &char| *c == '.' || *c == ':';
    let prefix = chars.iter().map(|c| common(&chars[0], c)).min().unwrap_or(0);
    // Back to the last separator inside the prefix, which stays (`:7000`).
    let start = chars[0][..prefix].iter().rposition(sep).unwrap_or(0);
    let rev: Vec<Vec<char>> = chars.iter().map(|c| c.iter().rev().copied().collect()).collect();
    let suffix = rev.iter().map(|r| common(&rev[0], r)).min().unwrap_or(0);
    // Forward to the first separator inside the suffix, which goes.
    let cut = rev[0][..suffix].iter().rposition(sep).map_or(0, |i| i + 1);
    let parts: Vec<String> = chars
        .iter()
        .map(|c| {
            let end = c.len().saturating_sub(cut).max(start);
            c[start..end].iter().collect()
        })
        .collect();
    if parts.iter().any(String::is_empty) { addrs.iter().map(|a| a.to_string()).collect() } else { parts }
}

/// The detail line of a row: what is wrong on each of its three paths (the
/// security-group path, the instance's own /health, cutover's own PING of
/// `endpoint`, with each of its sentinels), else "all three paths ok": said
/// only when each path was read, is fresh and is ok. A cluster node's row
/// names its node first.
fn paths_summary(r: &rows::RedisRow<'_>, endpoint: Option<&View<RedisInfo>>, aws_stale: Option<String>) -> String {
    let (mut said, mut wrong) = (Vec::new(), Vec::new());
    if let Some(n) = r.node {
        let line = match (&n.error, n.ping_ms) {
            (Some(e), _) => format!("{}: {e}", n.describe()),
            (None, Some(ms)) => format!("{}: PING {ms:.1} ms", n.describe()),
            (None, None) => n.describe(),
        };
        if n.is_up() { said.push(line) } else { wrong.push(line) }
    }
    match endpoint {
        // Never read: nothing to go stale.
        Some(View { value: None, error: Some(e), .. }) => wrong.push(format!("PING: {e}")),
        Some(v) if v.stale => wrong.push(format!(
            "PING: stale, the last reading failed ({})",
            v.error.as_deref().unwrap_or("no reason given")
        )),
        Some(View { value: Some(info), .. }) => {
            let n = info.sentinels.len();
            let bad: Vec<String> = info
                .sentinels
                .iter()
                .filter_map(|s| Some(format!("sentinel {}: {}", s.addr, s.error.as_ref()?)))
                .collect();
            if n > 0 && bad.is_empty() {
                said.push(format!("sentinels {n}/{n}: each names the master and can fail it over"));
            }
            wrong.extend(bad);
        }
        _ => wrong.push("PING: not read yet".into()),
    }
    let path = &r.instance.sg_paths[r.endpoint];
    if let Some(why) = aws_stale {
        wrong.push(format!("sg path: stale, the last reading of {} failed ({why})", r.environment));
    }
    if !path.is_allowed() {
        wrong.push(format!("sg path: {}", path.describe()));
    }
    if let Some(path) = r.instance.sentinel_paths.get(r.endpoint).filter(|p| !p.is_allowed()) {
        wrong.push(format!("sg path to the sentinels: {}", path.describe()));
    }
    let sentinels_found = endpoint.and_then(|v| v.value.as_ref()).is_some_and(|i| !i.sentinels.is_empty());
    if sentinels_found && !r.instance.sentinel_paths.contains_key(r.endpoint) {
        wrong.push("sg path to the sentinels: not checked (give sentinel_port in the runbook)".into());
    }
    let health = &r.instance.health;
    match &health.value {
        Some(HealthProbe::Answered { redis_ok: Some(true), .. }) => {}
        Some(HealthProbe::Answered { redis_ok: Some(false), redis_error, .. }) => {
            wrong.push(format!("/health: {}", redis_error.as_deref().unwrap_or("Redis down")))
        }
        Some(HealthProbe::Answered { status, .. }) => {
            wrong.push(format!("/health answered {status} without a word on Redis"))
        }
        Some(HealthProbe::Failed { error, .. }) => wrong.push(format!("/health: {error}")),
        Some(HealthProbe::NotProbed { reason }) => wrong.push(reason.clone()),
        None => wrong.push(match &health.error {
            Some(e) => format!("/health: {e}"),
            None => "/health: not read yet".into(),
        }),
    }
    if health.stale && health.value.is_some() {
        wrong.push(format!(
            "/health: stale, the last probe failed ({})",
            health.error.as_deref().unwrap_or("no reason given")
        ));
    }
    if wrong.is_empty() {
        said.push("all three paths ok".into());
    }
    said.extend(wrong);
    said.join(" · ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_labels_keep_what_tells_the_nodes_apart() {
        assert_eq!(
            super::distinct_parts(&["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7013"]),
            [":7000", ":7001", ":7013"]
        );
        let ec = ["c-0001-001.c.x.cache.amazonaws.com:6379", "c-0002-001.c.x.cache.amazonaws.com:6379"];
        assert_eq!(super::distinct_parts(&ec), ["c-0001-001", "c-0002-001"]);
        assert_eq!(super::distinct_parts(&["10.0.1.5:6379", "10.0.2.5:6379"]), [".1", ".2"]);
        assert_eq!(super::distinct_parts(&["a:1"]), ["a:1"]);
        assert_eq!(super::distinct_parts(&["a:1", "a:1"]), ["a:1", "a:1"]);
    }
}
