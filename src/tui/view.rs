//! `render(&App, &mut Frame)`: draws, nothing else.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::layout;
use super::rows::{self, ChecklistRow};
use super::state::{App, CheckRun, Overlay, Pane};
use super::theme::Theme;
use crate::live::HealthProbe;
use crate::progress::item_key;
use crate::runbook::ItemKind;
use crate::status::{CheckOutcome, View};

fn hhmmss(t: std::time::SystemTime) -> String {
    let s = crate::status::rfc3339(t);
    s.get(11..19).unwrap_or("--:--:--").to_string()
}

/// ` 3s`, `STALE`, `—`: a source's age for a pane title.
fn age<T>(th: &Theme, v: &View<T>) -> Span<'static> {
    match (&v.error, v.age_seconds) {
        (Some(_), _) => Span::styled(" STALE (e: why) ", Style::new().fg(Color::Black).bg(th.warn)),
        (None, Some(a)) => Span::styled(format!(" {a:.0}s ago "), th.dim_style()),
        (None, None) => Span::styled(" waiting… ", th.dim_style()),
    }
}

fn state_style(th: &Theme, state: &str) -> Style {
    match state {
        "healthy" | "OK" | "running" => Style::new().fg(th.ok),
        "unhealthy" | "ALARM" | "MISSING" => Style::new().fg(th.bad).add_modifier(Modifier::BOLD),
        "initial" | "draining" | "INSUFFICIENT_DATA" | "pending" => Style::new().fg(th.warn),
        "unused" | "unavailable" | "stopped" => Style::new().fg(th.idle),
        _ => Style::new(),
    }
}

fn pane_block<'a>(app: &App, pane: Pane, extra: Vec<Span<'a>>) -> Block<'a> {
    let th = &app.theme;
    let n = Pane::ALL.iter().position(|p| *p == pane).unwrap_or(0) + 1;
    let focused = app.focus == pane;
    let border = if app.rb.production {
        Style::new().fg(th.bad)
    } else if focused {
        Style::new().fg(th.accent)
    } else {
        th.dim_style()
    };
    let mut title =
        vec![Span::styled(format!(" {n} {} ", pane.title()), if focused { Style::new().bold() } else { Style::new() })];
    title.extend(extra);
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(border)
        .title(Line::from(title))
}

fn selected_style(app: &App, pane: Pane, i: usize) -> Style {
    if app.focus == pane && app.selected(pane) == i {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    }
}

/// Keeps the selected row visible in `height` lines.
fn window(len: usize, selected: usize, height: usize) -> std::ops::Range<usize> {
    if height == 0 || len <= height {
        return 0..len;
    }
    let start = selected.saturating_sub(height - 1).min(len - height);
    start..start + height
}

fn header(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let mut account =
        app.snap.identity.value.as_ref().map_or("account ?".to_string(), |i| format!("account {}", i.account));
    // A runbook over several accounts or regions: each side's account and region.
    if !app.snap.sides.is_empty() {
        account = app
            .snap
            .sides
            .iter()
            .map(|s| {
                let name = s.side.trim_start_matches("[environments.").trim_start_matches('[').trim_end_matches(']');
                let acct = s.identity.value.as_ref().map_or("?", |i| i.account.as_str());
                let wrong = if s.account_ok == Some(false) { "!" } else { "" };
                format!("{name} {acct}{wrong} {}", s.region.as_deref().unwrap_or("?"))
            })
            .collect::<Vec<_>>()
            .join(" · ");
    }
    // Keys in the environment cannot be renewed: say when they run out.
    if let Some(at) = app.snap.identity.value.as_ref().and_then(|i| i.expires_at.as_deref()) {
        account.push_str(&format!(" │ keys expire {}", at.get(11..19).unwrap_or(at)));
    }
    let mut spans = vec![
        Span::styled(" cutover ", Style::new().bold().fg(Color::Black).bg(th.accent)),
        Span::raw(format!(
            " {} │ {account} │ {} │ profile {} ",
            app.rb.name,
            app.region,
            app.header.profile.as_deref().unwrap_or("default")
        )),
    ];
    if app.rb.production {
        spans.push(Span::styled(" PRODUCTION ", Style::new().bold().fg(Color::White).bg(th.bad)));
        spans.push(Span::raw(" "));
    }
    if app.header.read_only {
        spans.push(Span::styled(" READ-ONLY ", Style::new().bold().fg(Color::Black).bg(th.ok)));
        spans.push(Span::raw(" "));
    }
    if app.paused {
        spans.push(Span::styled(" PAUSED (p) ", Style::new().bold().fg(Color::Black).bg(th.warn)));
        spans.push(Span::raw(" "));
    }
    if !app.filter.is_empty() {
        spans.push(Span::styled(format!(" filter: {} ", app.filter), Style::new().fg(Color::Black).bg(th.info)));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(format!("{}Z", hhmmss(app.now)), th.dim_style()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn footer(f: &mut Frame, app: &App, area: Rect) {
    use super::keys::Action as A;
    let mut spans = Vec::new();
    let bindings = app.keymap.by_priority(app.focus);
    for b in bindings {
        if matches!(
            b.action,
            super::keys::Action::FocusTargets
                | super::keys::Action::FocusRedis
                | super::keys::Action::FocusAlarms
                | super::keys::Action::FocusChecklist
                | super::keys::Action::FocusLog
                | super::keys::Action::Up
                | super::keys::Action::PrevPane
        ) {
            continue;
        }
        let key = app.keymap.keys_of(b.action);
        let key = if matches!(b.action, super::keys::Action::FocusTraffic) { "1-6".to_string() } else { key };
        let label = match b.action {
            A::FocusTraffic => "panes",
            A::Pause => "freeze",
            A::ShiftWeights => "shift",
            A::StartRollout => "rollout",
            A::PauseRollout => "pause",
            A::PromoteRollout => "promote",
            A::AbortRollout => "abort",
            _ => b.help.split_whitespace().next().unwrap_or(""),
        };
        spans.push(Span::styled(format!(" {key} "), Style::new().fg(Color::Black).bg(Color::Gray)));
        spans.push(Span::raw(format!(" {label} ")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn traffic(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let v = &app.snap.traffic;
    let block = pane_block(app, Pane::Traffic, vec![age(th, v)]);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines = Vec::new();
    let bar_width = inner.width.saturating_sub(34) as usize;
    for (i, s) in v.value.iter().flatten().enumerate() {
        let filled = ((s.share_percent / 100.0) * bar_width as f64).round() as usize;
        let style = if v.stale { th.dim_style() } else { Style::new() };
        lines.push(
            Line::from(vec![
                Span::raw(format!("{:<11.11} ", s.environment)),
                Span::raw(format!("w {:>3} ", s.weight.map_or("—".into(), |w| w.to_string()))),
                Span::styled("█".repeat(filled), Style::new().fg(if i == 0 { th.info } else { th.ok })),
                Span::styled("░".repeat(bar_width.saturating_sub(filled)), th.dim_style()),
                Span::raw(format!(" {:>5.1}% ttl {}", s.share_percent, s.ttl.map_or("—".into(), |t| format!("{t}s")))),
                // A health check's verdict, and a side that gets nothing whatever its weight.
                match s.health_check.as_ref().map(|h| h.healthy) {
                    Some(Some(true)) => Span::styled(" hc ok", Style::new().fg(th.ok)),
                    Some(Some(false)) => Span::styled(" hc FAIL", Style::new().fg(th.bad)),
                    Some(None) => Span::styled(" hc ?", th.dim_style()),
                    None => Span::raw(""),
                },
                match &s.no_traffic {
                    Some(_) => Span::styled(
                        format!(" gets {:.0}%", s.effective_share_percent),
                        Style::new().fg(th.bad).add_modifier(ratatui::style::Modifier::BOLD),
                    ),
                    None => Span::raw(""),
                },
            ])
            .style(style.patch(selected_style(app, Pane::Traffic, i))),
        );
    }
    if lines.is_empty() {
        lines.push(Line::styled(v.error.clone().unwrap_or_else(|| "reading Route53…".into()), th.dim_style()));
    }
    if inner.height as usize > lines.len() {
        let rollout = app.snap.rollout.as_ref().map_or("no rollout".to_string(), |r| {
            format!("rollout step {}/{} ({}%) {}", r.step, r.steps, r.percent, r.phase)
        });
        let change = app.snap.last_change.as_ref().map_or(String::new(), |c| {
            let age = crate::status::age_of(&c.submitted_at, app.now).map_or(String::new(), |a| format!(" {a} ago"));
            format!("  last change {}{age}", c.status)
        });
        lines.push(Line::styled(format!("{rollout}{change}"), th.dim_style()));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn env_age(app: &App) -> Vec<Span<'static>> {
    let th = &app.theme;
    let stale = app.snap.environments.iter().find(|e| e.aws.stale);
    let oldest = app
        .snap
        .environments
        .iter()
        .filter_map(|e| e.aws.age_seconds)
        .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
    match (stale, oldest) {
        (Some(_), _) => vec![Span::styled(" STALE (e: why) ", Style::new().fg(Color::Black).bg(th.warn))],
        (None, Some(a)) => vec![Span::styled(format!(" {a:.0}s ago "), th.dim_style())],
        _ => vec![Span::styled(" waiting… ", th.dim_style())],
    }
}

fn targets(f: &mut Frame, app: &App, area: Rect) {
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

fn health_cell(th: &Theme, h: &View<HealthProbe>) -> (String, Style) {
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

fn redis(f: &mut Frame, app: &App, area: Rect) {
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
                    match &x.view.value {
                        Some(info) if !x.view.stale => (format!("{:.1} ms", info.ping_ms), Style::new().fg(th.ok)),
                        Some(_) => ("stale".into(), Style::new().fg(th.warn)),
                        None if x.view.error.is_some() => ("FAIL".into(), Style::new().fg(th.bad).bold()),
                        None => ("…".into(), th.dim_style()),
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

fn sparkline(points: &[(i64, f64)], width: usize) -> String {
    if points.is_empty() {
        return "no data".into();
    }
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<f64> = points.iter().rev().take(width).rev().map(|p| p.1).collect();
    let max = vals.iter().cloned().fold(0.0f64, f64::max);
    vals.iter().map(|v| if max <= 0.0 { '▁' } else { BARS[((v / max) * 7.0).round() as usize] }).collect()
}

fn alarms(f: &mut Frame, app: &App, area: Rect) {
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

fn checklist(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let rows = rows::checklist(app);
    let block = pane_block(app, Pane::Checklist, Vec::new());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [list, detail] = Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(inner);
    let sel = app.selected(Pane::Checklist);
    let item_of = |phase: &str, item: &str| {
        app.rb.phases.iter().find(|p| p.id == phase).and_then(|p| p.items.iter().find(|i| i.id == item).map(|i| (p, i)))
    };
    let live = |key: &str| app.snap.checks.iter().find(|c| item_key(&c.phase, &c.item) == key);
    let done = |phase: &crate::runbook::Phase| {
        phase
            .items
            .iter()
            .filter(|i| {
                let key = item_key(&phase.id, &i.id);
                match &i.kind {
                    ItemKind::Manual => app.progress.ticks.contains_key(&key),
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
                        ItemKind::Manual => match app.progress.ticks.get(&key) {
                            Some(t) => {
                                (format!("[x] {} {}", t.by, t.at.get(11..16).unwrap_or("")), Style::new().fg(th.ok))
                            }
                            None => ("[ ] manual".to_string(), Style::new()),
                        },
                        ItemKind::Check { .. } => match (app.runs.get(&key), live(&key)) {
                            (Some(CheckRun::Running { .. }), _) => ("… running".to_string(), Style::new().fg(th.warn)),
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
                        ItemKind::Action { .. } => match app.action_results.get(&key) {
                            Some((true, at)) => (format!("✔ done {}", hhmmss(*at)), Style::new().fg(th.ok)),
                            Some((false, at)) => (format!("✘ FAILED {}", hhmmss(*at)), Style::new().fg(th.bad).bold()),
                            None => ("» action".to_string(), Style::new().fg(th.info)),
                        },
                    };
                    let note = if app.progress.notes.contains_key(&key) { " ✎" } else { "" };
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
        Some(ChecklistRow::Item { phase, item }) => {
            let key = item_key(phase, item);
            let mut parts = Vec::new();
            if let Some((_, _, line)) = app.action_progress.get(&key) {
                parts.push(line.clone());
            }
            if let Some(CheckRun::Done { detail, .. }) = app.runs.get(&key) {
                parts.push(detail.clone());
            } else if let Some(c) = live(&key) {
                parts.push(c.detail.clone());
            }
            if let Some(n) = app.progress.notes.get(&key) {
                parts.push(format!("note: {n}"));
            }
            if let Some((_, it)) = item_of(phase, item)
                && let Some(rb) = &it.rollback
            {
                parts.push(format!("rollback: {}", crate::cli::plan::action_name(rb)));
            }
            parts.join(" · ")
        }
        _ => String::new(),
    };
    f.render_widget(Paragraph::new(text).style(th.dim_style()).wrap(Wrap { trim: true }), detail);
}

fn log(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    let block = pane_block(app, Pane::Log, Vec::new());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let h = inner.height as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .skip(app.log.len().saturating_sub(h))
        .map(|l| {
            Line::from(vec![Span::styled(format!("{} ", hhmmss(l.at)), th.dim_style()), Span::raw(l.text.clone())])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

fn popup(f: &mut Frame, th: &Theme, area: Rect, title: &str, lines: Vec<Line>) {
    f.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .title(format!(" {title} "))
        .border_style(Style::new().fg(th.accent));
    f.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

fn overlay(f: &mut Frame, app: &App, area: Rect) {
    let th = &app.theme;
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => {
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
        Overlay::Errors => {
            let mut lines = Vec::new();
            let mut add = |what: &str, e: &Option<String>| {
                if let Some(e) = e {
                    lines.push(Line::from(vec![
                        Span::styled(format!("{what}: "), Style::new().bold()),
                        Span::raw(e.clone()),
                    ]));
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
        Overlay::Palette { input, selected } => {
            let entries = app.palette_entries(input);
            let mut lines = vec![Line::from(vec![
                Span::styled(": ", Style::new().fg(th.accent)),
                Span::raw(input.clone()),
                Span::styled("▏", Style::new().fg(th.accent)),
            ])];
            for (i, (_, label)) in entries.iter().enumerate().take(12) {
                let style = if i == *selected { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
                lines.push(Line::styled(format!("  {label}"), style));
            }
            if entries.is_empty() {
                lines.push(Line::styled("  no command matches", th.dim_style()));
            }
            popup(f, th, centered(area, 50, 16), "command palette (enter runs, esc closes)", lines);
        }
        Overlay::Filter { input } => {
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
        Overlay::ShiftTo { input } => {
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
        Overlay::Confirm { key } => {
            let Some(change) = &app.pending_change else { return };
            let summary = change.summary();
            let account = app.snap.identity.value.as_ref().map_or("?".to_string(), |i| i.account.clone());
            let mut lines = vec![Line::from(vec![
                Span::styled(format!("{} ", summary.name), Style::new().bold()),
                Span::raw(format!("({key}) in account {account}, {}", app.region)),
            ])];
            if let Some(b) = summary.before {
                lines.push(Line::from(vec![Span::styled("before ", th.dim_style()), Span::raw(b)]));
            }
            if let Some(a) = summary.after {
                lines.push(Line::from(vec![Span::styled("after  ", th.dim_style()), Span::raw(a)]));
            }
            for d in &summary.details {
                lines.push(Line::raw(format!("  • {d}")));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled(" y ", Style::new().fg(Color::Black).bg(th.ok)),
                Span::raw(" apply (audited)   "),
                Span::styled(" n / esc ", Style::new().fg(Color::Black).bg(Color::Gray)),
                Span::raw(" cancel"),
            ]));
            let title = if app.rb.production { "CONFIRM A CHANGE TO PRODUCTION" } else { "confirm a change" };
            let h = (lines.len() as u16 + 6).min(area.height);
            popup(f, th, centered(area, area.width.saturating_sub(8).min(110), h), title, lines);
        }
        Overlay::Note { key, input } => {
            let lines = vec![
                Line::styled(format!("note on {key} (enter saves, empty removes, esc cancels)"), th.dim_style()),
                Line::raw(format!("{input}▏")),
            ];
            popup(f, th, centered(area, 60, 4), "note", lines);
        }
    }
}

pub fn render(app: &App, f: &mut Frame) {
    let area = f.area();
    if area.width < 40 || area.height < 12 {
        f.render_widget(
            Paragraph::new(format!("cutover needs at least 40×12; this terminal is {}×{}", area.width, area.height))
                .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let (h, _, foot) = layout::frame(area);
    header(f, app, h);
    for (pane, rect) in layout::panes(area, app.focus, app.zoomed) {
        match pane {
            Pane::Traffic => traffic(f, app, rect),
            Pane::Targets => targets(f, app, rect),
            Pane::Redis => redis(f, app, rect),
            Pane::Alarms => alarms(f, app, rect),
            Pane::Checklist => checklist(f, app, rect),
            Pane::Log => log(f, app, rect),
        }
    }
    footer(f, app, foot);
    overlay(f, app, area);
}
