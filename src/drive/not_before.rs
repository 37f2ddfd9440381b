//! Time-gated items (`not_before`): an action that may not run before a wait
//! has passed since another item finished. "Finished" is what cutover
//! records: a manual item's tick, or the last step of an action's latest run
//! applied (a run that failed, or was rolled back after, has not finished).

use std::time::{Duration, SystemTime};

use crate::runbook::{Item, ItemKind, NotBefore, Runbook};
use crate::store::audit::{AuditLine, Stage};
use crate::store::checklist::ChecklistState;

/// Where an item's time gate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// The wait has passed since `after` finished.
    Open,
    /// `after` finished at `finished`; the gate opens at `opens`.
    Waiting { finished: SystemTime, opens: SystemTime },
    /// `after` has not finished: the wait has not begun.
    NotStarted,
}

impl Window {
    /// `47h59m12s left (opens 2026-12-03T19:00:00Z)`, `open`, or why the wait has not begun.
    pub fn describe(&self, nb: &NotBefore, now: SystemTime) -> String {
        match self {
            Window::Open => "open".into(),
            Window::Waiting { opens, .. } => {
                format!("{} left (opens {})", left(*opens, now), crate::time::rfc3339(*opens))
            }
            Window::NotStarted => format!("{} has not finished", nb.after),
        }
    }
}

/// Whole seconds until `opens`, as runbooks write durations (`1h2m3s`).
pub fn left(opens: SystemTime, now: SystemTime) -> String {
    let secs = opens.duration_since(now).unwrap_or(Duration::ZERO).as_secs();
    crate::runbook::duration::format_duration(Duration::from_secs(secs.max(1)))
}

/// When the item `key` finished, if it has: its tick (manual), or its
/// action's latest run (intent → every step applied), unless that run
/// stopped before its last step, failed, or its rollback ran after it.
pub fn finished_at(rb: &Runbook, key: &str, checklist: &ChecklistState, audit: &[AuditLine]) -> Option<SystemTime> {
    let (_, item) = rb.item_by_key(key)?;
    match &item.kind {
        ItemKind::Manual => crate::time::parse_rfc3339(&checklist.ticks.get(key)?.at),
        ItemKind::Action { .. } => {
            let (last, forward) = latest_run_line(item, key, audit)?;
            let done = forward && ends_run(last);
            done.then(|| crate::time::parse_rfc3339(&last.time)).flatten()
        }
        ItemKind::Check { .. } => None,
    }
}

/// The latest line of a run of action item `item` (`key`) or of its
/// rollback that says where that run got (intent, applied, insync, failed,
/// done), and whether it is of the item's own action (not its rollback).
pub fn latest_run_line<'a>(item: &Item, key: &str, audit: &'a [AuditLine]) -> Option<(&'a AuditLine, bool)> {
    let ItemKind::Action { action } = &item.kind else { return None };
    let forward = format!("{} ({key})", action.summary());
    let undo = item.rollback.as_ref().map(|r| format!("{} ({key})", r.summary()));
    let last = audit.iter().rev().find(|l| {
        (l.action == forward || undo.as_deref() == Some(l.action.as_str()))
            && matches!(l.stage, Stage::Intent | Stage::Applied | Stage::InSync | Stage::Failed | Stage::Done)
    })?;
    Some((last, last.action == forward))
}

/// Whether `line` ends the run it belongs to: a run of several steps ends
/// with its last step applied, not its first.
pub fn ends_run(line: &AuditLine) -> bool {
    matches!(line.stage, Stage::Applied | Stage::InSync | Stage::Done) && line.step.is_none_or(|s| s.is_last())
}

/// The window of a gate, from what the checklist and audit say.
pub fn window(
    rb: &Runbook,
    nb: &NotBefore,
    checklist: &ChecklistState,
    audit: &[AuditLine],
    now: SystemTime,
) -> Window {
    match finished_at(rb, &nb.after, checklist, audit) {
        None => Window::NotStarted,
        Some(finished) => {
            let opens = finished + nb.wait;
            if now >= opens { Window::Open } else { Window::Waiting { finished, opens } }
        }
    }
}

/// Ok when `item` (`key`) has no time gate or its gate is open; else the
/// refusal. Reads the runbook's checklist progress and audit log. `account`
/// is the one the caller's credentials are for: the lines of the item it
/// waits for count only when written in the account that item's side is
/// in (the runbook's, else this one), so a rehearsal's on the sandbox
/// (moto's account, the same runbook name, the same local log) never opens
/// the window of a real one.
pub fn check(rb: &Runbook, key: &str, item: &Item, now: SystemTime, account: Option<&str>) -> Result<(), String> {
    let Some(nb) = &item.not_before else { return Ok(()) };
    let (checklist, _) = crate::store::checklist::load(&rb.name)?;
    let audit = crate::store::audit::AuditLog::for_runbook(&rb.name).read()?;
    refusal(key, nb, &window_in(rb, nb, &checklist, &audit, now, account), now).map_or(Ok(()), Err)
}

/// [`window`] over the lines written in the account that `nb`'s item's
/// side is in (the runbook's, else `account`, the caller's): what [`check`]
/// enforces, and so what a display of the gate must show.
pub fn window_in(
    rb: &Runbook,
    nb: &NotBefore,
    checklist: &ChecklistState,
    audit: &[AuditLine],
    now: SystemTime,
    account: Option<&str>,
) -> Window {
    let side = rb.item_by_key(&nb.after).and_then(|(_, it)| match &it.kind {
        ItemKind::Action { action } => Some(action.side(rb)),
        _ => None,
    });
    let want = side.and_then(|s| rb.side_account(&s)).or_else(|| account.map(str::to_string));
    match want {
        Some(want) => {
            let theirs: Vec<AuditLine> =
                audit.iter().filter(|l| l.account.as_deref().is_none_or(|a| a == want)).cloned().collect();
            // A tick is made where its ticker's credentials are (the
            // cockpit's `[dns]` side, the CLI's runbook side): one in any
            // account the runbook reaches counts, a rehearsal's does not.
            let mut ticks = checklist.clone();
            let ours = |a: &str| a == want || account == Some(a) || runbook_accounts(rb).iter().any(|r| r == a);
            ticks.ticks.retain(|_, t| t.account.as_deref().is_none_or(ours));
            window(rb, nb, &ticks, &theirs, now)
        }
        None => window(rb, nb, checklist, audit, now),
    }
}

/// The accounts a runbook names: its own and each side's.
fn runbook_accounts(rb: &Runbook) -> Vec<String> {
    let sides = std::iter::once(crate::runbook::Side::Dns)
        .chain(rb.environments.keys().map(|e| crate::runbook::Side::Environment(e.clone())));
    rb.account_id.iter().cloned().chain(sides.filter_map(|s| rb.side_account(&s))).collect()
}

/// Why `key` may not run yet: what it waits for, the time left and when
/// it opens; None when the window is open.
pub fn refusal(key: &str, nb: &NotBefore, w: &Window, now: SystemTime) -> Option<String> {
    let wait = crate::runbook::duration::format_duration(nb.wait);
    match w {
        Window::Open => None,
        Window::Waiting { finished, opens } => Some(format!(
            "refused: {key} may not run before {wait} after {} finished ({}): {} left, it opens at {}; nothing was changed",
            nb.after,
            crate::time::rfc3339(*finished),
            left(*opens, now),
            crate::time::rfc3339(*opens)
        )),
        Window::NotStarted => Some(format!(
            "refused: {key} may not run before {wait} after {} finished, and it has not (not ticked, or its action \
             has no finished run in the audit log); nothing was changed",
            nb.after
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNBOOK: &str = include_str!("../../tests/runbooks/minimal.toml");

    fn runbook() -> Runbook {
        let extra = r#"
[[phases.items]]
id = "stop"
title = "stop"
kind = "action"
action = "stop_instances"
environment = "blue"
rollback = { action = "start_instances", environment = "blue" }

[[phases.items]]
id = "ticked"
title = "ticked"
kind = "manual"

[[phases.items]]
id = "later"
title = "later"
kind = "action"
action = "stop_instances"
environment = "green"
not_before = { after = "traffic/stop", wait = "48h" }
"#;
        crate::runbook::parse("t.toml", &format!("{RUNBOOK}{extra}")).unwrap()
    }

    fn line(rb: &Runbook, action: &str, stage: Stage, time: &str) -> AuditLine {
        let key = "traffic/stop";
        AuditLine {
            time: time.into(),
            operator: "ana".into(),
            account: None,
            region: "r".into(),
            runbook: rb.name.clone(),
            action: format!("{action} ({key})"),
            stage,
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
            detail: String::new(),
            change: None,
            step: None,
            aws_ahead_ms: None,
        }
    }

    fn at(t: &str) -> SystemTime {
        crate::time::parse_rfc3339(t).unwrap()
    }

    #[test]
    fn the_last_applied_step_of_the_latest_run_starts_the_wait() {
        let rb = runbook();
        let key = "traffic/stop";
        let nb = rb.item_by_key("traffic/later").unwrap().1.not_before.clone().expect("later has a gate");
        assert_eq!(nb.after, key);
        let none = ChecklistState::default();
        let stop = "stop_instances blue";
        let ran = vec![
            line(&rb, stop, Stage::Intent, "2026-12-01T10:00:00Z"),
            line(&rb, stop, Stage::Applied, "2026-12-01T10:00:05Z"),
        ];
        assert_eq!(finished_at(&rb, key, &none, &ran), Some(at("2026-12-01T10:00:05Z")));
        assert_eq!(
            window(&rb, &nb, &none, &ran, at("2026-12-03T10:00:04Z")),
            Window::Waiting { finished: at("2026-12-01T10:00:05Z"), opens: at("2026-12-03T10:00:05Z") }
        );
        assert_eq!(window(&rb, &nb, &none, &ran, at("2026-12-03T10:00:05Z")), Window::Open);
        assert_eq!(window(&rb, &nb, &none, &[], at("2027-01-01T00:00:00Z")), Window::NotStarted);
        // A later run that failed, or the rollback after it: not finished.
        let mut failed = ran.clone();
        failed.push(line(&rb, stop, Stage::Intent, "2026-12-02T10:00:00Z"));
        failed.push(line(&rb, stop, Stage::Failed, "2026-12-02T10:00:01Z"));
        assert_eq!(finished_at(&rb, key, &none, &failed), None);
        let mut undone = ran.clone();
        undone.push(line(&rb, "start_instances blue", Stage::Applied, "2026-12-02T10:00:00Z"));
        assert_eq!(finished_at(&rb, key, &none, &undone), None);
        // Refusals and other items' lines do not count.
        let mut refused = ran.clone();
        refused.push(line(&rb, stop, Stage::Refused, "2026-12-02T11:00:00Z"));
        refused.push(line(&rb, "stop_instances green", Stage::Applied, "2026-12-02T11:00:00Z"));
        assert_eq!(finished_at(&rb, key, &none, &refused), Some(at("2026-12-01T10:00:05Z")));
    }

    /// A run of three steps (three target groups, three rules) killed after
    /// its first: the wait has not begun, as the other two were never sent.
    #[test]
    fn a_run_of_several_steps_finishes_with_its_last() {
        let rb = runbook();
        let (key, stop, none) = ("traffic/stop", "stop_instances blue", ChecklistState::default());
        let mut ran = vec![
            line(&rb, stop, Stage::Intent, "2026-12-01T10:00:00Z"),
            line(&rb, stop, Stage::Applied, "2026-12-01T10:00:05Z").with_step(1, 3),
        ];
        assert_eq!(finished_at(&rb, key, &none, &ran), None, "killed after step 1 of 3");
        ran.push(line(&rb, stop, Stage::Applied, "2026-12-01T10:00:06Z").with_step(2, 3));
        assert_eq!(finished_at(&rb, key, &none, &ran), None, "after step 2 of 3");
        ran.push(line(&rb, stop, Stage::Applied, "2026-12-01T10:00:09Z").with_step(3, 3));
        assert_eq!(finished_at(&rb, key, &none, &ran), Some(at("2026-12-01T10:00:09Z")));
        // A later run of one step finishes with it.
        ran.push(line(&rb, stop, Stage::Intent, "2026-12-02T10:00:00Z"));
        ran.push(line(&rb, stop, Stage::Applied, "2026-12-02T10:00:01Z").with_step(1, 1));
        assert_eq!(finished_at(&rb, key, &none, &ran), Some(at("2026-12-02T10:00:01Z")));
        // Serialised, the step is kept; a line written before steps were counted reads as none.
        let back: AuditLine = serde_json::from_str(&serde_json::to_string(&ran[1]).unwrap()).unwrap();
        assert_eq!(back.step, Some(crate::store::audit::StepOf { number: 1, of: 3 }));
        let old = serde_json::to_value(&ran[0]).unwrap();
        assert!(old.get("step").is_none(), "{old}");
    }

    #[test]
    fn a_manual_item_finishes_when_ticked() {
        let rb = runbook();
        let key = "traffic/ticked";
        let mut ticks = ChecklistState::default();
        assert_eq!(finished_at(&rb, key, &ticks, &[]), None);
        ticks.toggle(key, "ana", "2026-12-01T10:00:00Z", None);
        assert_eq!(finished_at(&rb, key, &ticks, &[]), Some(at("2026-12-01T10:00:00Z")));
    }

    /// A tick made in a sandbox rehearsal (moto's account) in the same
    /// local folder never opens the window of a run in a real account.
    #[test]
    fn a_tick_in_another_account_opens_no_window() {
        let rb = runbook();
        let key = "traffic/ticked";
        let nb = NotBefore { after: key.into(), wait: Duration::from_secs(3600) };
        let now = at("2026-12-01T10:30:00Z");
        let mut ticks = ChecklistState::default();
        ticks.toggle(key, "ana", "2026-12-01T10:00:00Z", Some("123456789012"));
        let waiting = Window::Waiting { finished: at("2026-12-01T10:00:00Z"), opens: at("2026-12-01T11:00:00Z") };
        assert_eq!(window_in(&rb, &nb, &ticks, &[], now, Some("123456789012")), waiting);
        assert_eq!(window_in(&rb, &nb, &ticks, &[], now, Some("210987654321")), Window::NotStarted);
        // Made in another account the runbook names (the cockpit's `[dns]`
        // side, acting in an environment's account): it counts.
        let mut named = rb.clone();
        named.account_id = Some("123456789012".into());
        assert_eq!(window_in(&named, &nb, &ticks, &[], now, Some("210987654321")), waiting);
        // A tick from before accounts were kept counts, as its audit lines do.
        ticks.ticks.get_mut(key).unwrap().account = None;
        assert_eq!(window_in(&rb, &nb, &ticks, &[], now, Some("210987654321")), waiting);
    }

    #[test]
    fn describe_says_the_time_left_and_when_it_opens() {
        let nb = NotBefore { after: "d/stop".into(), wait: Duration::from_secs(3600) };
        let w = Window::Waiting { finished: at("2026-12-01T10:00:00Z"), opens: at("2026-12-01T11:00:00Z") };
        assert_eq!(w.describe(&nb, at("2026-12-01T10:15:30Z")), "44m30s left (opens 2026-12-01T11:00:00Z)");
        assert_eq!(Window::NotStarted.describe(&nb, at("2026-12-01T10:15:30Z")), "d/stop has not finished");
    }
}
