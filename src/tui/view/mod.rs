//! `render(&App, &mut Frame)`: draws, nothing else.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

mod alarms;
mod checklist;
mod log;
mod overlay;
mod parity;
mod redis;
mod targets;
mod traffic;

use super::app::App;
use super::layout;
use super::pane::Pane;
use super::theme::Theme;
use crate::status::View;

fn hhmmss(t: std::time::SystemTime) -> String {
    let s = crate::time::rfc3339(t);
    s.get(11..19).unwrap_or("--:--:--").to_string()
}

/// ` 3s ago`, `STALE`, `—`: a source's age for a pane title, counted to
/// the clock now (paused, the readings stay as they were and grow older).
fn age<T>(app: &App, v: &View<T>) -> Span<'static> {
    let th = &app.theme;
    match (&v.error, age_now(app, v)) {
        (Some(_), _) => Span::styled(" STALE (e: why) ", Style::new().fg(Color::Black).bg(th.warn)),
        (None, Some(a)) => Span::styled(format!(" {a:.0}s ago "), th.dim_style()),
        (None, None) => Span::styled(" waiting… ", th.dim_style()),
    }
}

fn state_style(th: &Theme, state: &str) -> Style {
    match state {
        "healthy" | "OK" | "running" => Style::new().fg(th.ok),
        "unhealthy" | "unhealthy.draining" | "ALARM" | "MISSING" => {
            Style::new().fg(th.bad).add_modifier(Modifier::BOLD)
        }
        // `unavailable`: AWS cannot tell (Elb.InternalError), which is no rest state.
        "initial" | "draining" | "unavailable" | "INSUFFICIENT_DATA" | "pending" => Style::new().fg(th.warn),
        "unused" | "stopped" => Style::new().fg(th.idle),
        _ => Style::new(),
    }
}

/// A reading's age counted to the clock now, not to the last snapshot
/// (paused, the snapshot stays as it was).
fn age_now<T>(app: &App, v: &View<T>) -> Option<f64> {
    let read = v.updated_at.as_deref().and_then(crate::time::parse_rfc3339);
    read.map(|t| app.now.duration_since(t).unwrap_or_default().as_secs_f64()).or(v.age_seconds)
}

fn env_age(app: &App) -> Vec<Span<'static>> {
    let th = &app.theme;
    let stale = app.snap.environments.iter().find(|e| e.aws.stale);
    let oldest = app
        .snap
        .environments
        .iter()
        .filter_map(|e| age_now(app, &e.aws))
        .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
    let mut spans = match (stale, oldest) {
        (Some(_), _) => vec![Span::styled(" STALE (e: why) ", Style::new().fg(Color::Black).bg(th.warn))],
        (None, Some(a)) => vec![Span::styled(format!(" {a:.0}s ago "), th.dim_style())],
        _ => return vec![Span::styled(" waiting… ", th.dim_style())],
    };
    // The age is only the others': an environment with neither a reading
    // nor an error yet is not in it, so the title must not look complete.
    let unread: Vec<&str> = app
        .snap
        .environments
        .iter()
        .filter(|e| e.aws.value.is_none() && e.aws.error.is_none())
        .map(|e| e.name.as_str())
        .collect();
    if !unread.is_empty() {
        spans.push(Span::styled(format!(" {} waiting… ", unread.join(", ")), Style::new().fg(th.warn)));
    }
    spans
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
    // Every side read with these credentials: readings of another account
    // than the runbook's are no evidence of its sides.
    if let (Some(i), Some(want)) = (&app.snap.identity.value, &app.rb.account_id)
        && app.snap.sides.is_empty()
        && &i.account != want
    {
        account.push_str(&format!(" WRONG: the runbook's is {want}"));
    }
    // A runbook over several accounts or regions: each side's account and region.
    if !app.snap.sides.is_empty() {
        account = app
            .snap
            .sides
            .iter()
            .map(|s| {
                let acct = s.identity.value.as_ref().map_or("?", |i| i.account.as_str());
                let wrong = if s.account_ok == Some(false) { "!" } else { "" };
                format!("{} {acct}{wrong} {}", s.name, s.region.as_deref().unwrap_or("?"))
            })
            .collect::<Vec<_>>()
            .join(" · ");
    }
    // Keys in the environment cannot be renewed: say when the first run out,
    // and on which side (RFC 3339 times in UTC sort as text).
    let expiring = app
        .snap
        .sides
        .iter()
        .filter_map(|s| Some((s.identity.value.as_ref()?.expires_at.as_deref()?, s.name.as_str())))
        .min();
    match (expiring, app.snap.identity.value.as_ref().and_then(|i| i.expires_at.as_deref())) {
        (Some((at, side)), _) if app.snap.sides.len() > 1 => {
            account.push_str(&format!(" │ {side}'s keys expire {}", at.get(11..19).unwrap_or(at)))
        }
        (_, Some(at)) => account.push_str(&format!(" │ keys expire {}", at.get(11..19).unwrap_or(at))),
        _ => {}
    }
    // The badges first: a runbook over several accounts lists each side's
    // account and region, which pushed them off the right of the screen.
    let mut spans = vec![Span::styled(" cutover ", Style::new().bold().fg(Color::Black).bg(th.accent)), Span::raw(" ")];
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
    spans.extend(shared_state_stale(app));
    spans.push(Span::raw(format!(
        "{} │ {account} │ {} │ profile {} ",
        app.rb.name,
        app.region,
        app.header.profile.as_deref().unwrap_or("default")
    )));
    if !app.filter.is_empty() {
        spans.push(Span::styled(format!(" filter: {} ", app.filter), Style::new().fg(Color::Black).bg(th.info)));
        spans.push(Span::raw(" "));
    }
    spans.extend(team_spans(app));
    spans.push(Span::styled(format!("{}Z", hhmmss(app.now)), th.dim_style()));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Team mode: the shared state's badge when it cannot be read (changes
/// that need the lease are refused then).
fn shared_state_stale(app: &App) -> Vec<Span<'static>> {
    let team = &app.live.team;
    let Some(e) = team.error.as_ref().filter(|_| team.has_reported()) else { return Vec::new() };
    let age = team.updated_at.map_or("never read".to_string(), |t| {
        format!("{} s old", app.now.duration_since(t).unwrap_or_default().as_secs())
    });
    let style = Style::new().bold().fg(Color::White).bg(app.theme.bad);
    vec![Span::styled(format!(" SHARED STATE STALE ({age}): {e} "), style), Span::raw(" ")]
}

/// Team mode: who holds the lease and who else has the runbook open.
fn team_spans(app: &App) -> Vec<Span<'static>> {
    let th = &app.theme;
    let team = &app.live.team;
    if !team.has_reported() {
        return Vec::new();
    }
    let mut spans = vec![Span::styled(" TEAM ", Style::new().bold().fg(Color::Black).bg(th.info)), Span::raw(" ")];
    if let Some(v) = &team.value {
        let lease = match &v.lease {
            Some(l) if !l.expired(app.now) => format!("lease {}@{} ({}) ", l.holder.operator, l.holder.host, l.purpose),
            Some(l) => format!("lease EXPIRED ({}@{}) ", l.holder.operator, l.holder.host),
            None => "no lease ".to_string(),
        };
        spans.push(Span::raw(lease));
        let others: Vec<String> = v
            .present
            .iter()
            .map(|p| {
                let ago = p.seen.map_or(String::new(), |t| {
                    format!(" {}s", app.now.duration_since(t).unwrap_or_default().as_secs())
                });
                format!("{}@{}{ago}", p.operator, p.host)
            })
            .collect();
        if !others.is_empty() {
            spans.push(Span::raw(format!("│ also here: {} ", others.join(", "))));
        }
    }
    spans
}

fn footer(f: &mut Frame, app: &App, area: Rect) {
    use super::keys::KeyAction as A;
    let mut spans = Vec::new();
    let bindings = app.keymap.by_priority(app.focus);
    for b in bindings {
        if matches!(
            b.action,
            super::keys::KeyAction::FocusTargets
                | super::keys::KeyAction::FocusRedis
                | super::keys::KeyAction::FocusAlarms
                | super::keys::KeyAction::FocusChecklist
                | super::keys::KeyAction::FocusLog
                | super::keys::KeyAction::FocusParity
                | super::keys::KeyAction::Up
                | super::keys::KeyAction::PrevPane
        ) {
            continue;
        }
        let key = app.keymap.keys_of(b.action);
        let key = if matches!(b.action, super::keys::KeyAction::FocusTraffic) {
            format!("1-{}", Pane::ALL.len())
        } else {
            key
        };
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

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

fn popup_block<'a>(th: &Theme, title: &str) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .title(format!(" {title} "))
        .border_style(Style::new().fg(th.accent))
}

fn popup(f: &mut Frame, th: &Theme, area: Rect, title: &str, lines: Vec<Line>) {
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(popup_block(th, title)).wrap(Wrap { trim: false }), area);
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
    for (pane, rect) in layout::panes(area, app.focus, app.zoomed, &super::rows::content(app)) {
        match pane {
            Pane::Traffic => traffic::traffic(f, app, rect),
            Pane::Targets => targets::targets(f, app, rect),
            Pane::Redis => redis::redis(f, app, rect),
            Pane::Alarms => alarms::alarms(f, app, rect),
            Pane::Checklist => checklist::checklist(f, app, rect),
            Pane::Log => log::log(f, app, rect),
            Pane::Parity => parity::parity_pane(f, app, rect),
        }
    }
    footer(f, app, foot);
    overlay::overlay(f, app, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target state AWS gives is drawn for what it means: one leaving
    /// while failing its checks is bad, one AWS cannot judge never at rest.
    #[test]
    fn target_states_are_drawn_for_what_they_mean() {
        let th = Theme::default();
        assert_eq!(state_style(&th, "unhealthy.draining"), state_style(&th, "unhealthy"));
        assert_eq!(state_style(&th, "unavailable"), state_style(&th, "initial"));
        assert_ne!(state_style(&th, "unavailable"), state_style(&th, "unused"));
    }
}
