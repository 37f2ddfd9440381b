//! Checklist ticks and notes that survive a restart: which manual items were ticked,
//! by whom, when, and notes. One JSON object per runbook in the store (locally
//! a file in the XDG state dir, written atomically with mode 0600), changed
//! only over the version read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Cond, StoreError, Version};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// The AWS account the ticker's credentials were for, when known: a
    /// sandbox rehearsal's tick (moto's account), kept in the same local
    /// folder, never opens a real run's time gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistState {
    /// `phase/item` → who ticked it and when.
    #[serde(default)]
    pub ticks: BTreeMap<String, Tick>,
    /// `phase/item` → a note.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

pub fn item_key(phase: &str, item: &str) -> String {
    format!("{phase}/{item}")
}

const ITEM: &str = "progress.json";

/// One change to the checklist, by intent: a tick says "ticked", never
/// "toggle", so a change that loses a race is decided again on what won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Tick {
        key: String,
        by: String,
        at: String,
        account: Option<String>,
    },
    Untick {
        key: String,
    },
    /// None removes the note.
    Note {
        key: String,
        text: Option<String>,
        over: NoteOver,
    },
}

/// What a note is written over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteOver {
    /// Whatever note is there (`cutover tick --note`: the writer read none).
    Any,
    /// The note the writer saw when it began editing (None: no note). The
    /// edit is refused when the stored note has changed since, so a
    /// teammate's newer note is never erased unseen.
    Seen(Option<String>),
}

impl Edit {
    /// The item's key.
    pub fn key(&self) -> &str {
        match self {
            Edit::Tick { key, .. } | Edit::Untick { key } | Edit::Note { key, .. } => key,
        }
    }

    /// What the edit does, as the audit says it.
    pub fn describe(&self) -> String {
        match self {
            Edit::Tick { key, .. } => format!("tick {key}"),
            Edit::Untick { key } => format!("untick {key}"),
            Edit::Note { key, text: Some(t), .. } => format!("note on {key}: {t}"),
            Edit::Note { key, text: None, .. } => format!("remove the note on {key}"),
        }
    }

    fn apply(&self, s: &mut ChecklistState) -> Result<(), String> {
        // A note already as this edit leaves it erases nothing: this edit's
        // own write that landed with its answer lost, read back after a
        // teammate's.
        if let Edit::Note { key, over: NoteOver::Seen(seen), text } = self
            && s.notes.get(key) != seen.as_ref()
            && s.notes.get(key) != text.as_ref()
        {
            let now = s.notes.get(key).map_or("none".to_string(), |n| format!("\"{n}\""));
            return Err(format!(
                "the note on {key} was changed by someone else since it was opened (now: {now}); nothing was \
                 saved: open it again and add to what is there"
            ));
        }
        match self {
            Edit::Tick { key, by, at, account } => {
                s.ticks.insert(key.clone(), Tick { by: by.clone(), at: at.clone(), account: account.clone() });
            }
            Edit::Untick { key } => {
                s.ticks.remove(key);
            }
            Edit::Note { key, text: Some(t), .. } => {
                s.notes.insert(key.clone(), t.clone());
            }
            Edit::Note { key, text: None, .. } => {
                s.notes.remove(key);
            }
        }
        Ok(())
    }
}

/// Where the ticks are, for messages.
pub fn location(runbook: &str) -> String {
    super::backend::location(runbook, ITEM)
}

/// The ticks and notes and the version read; none yet is an empty
/// checklist, a damaged one an error naming it.
pub fn load(runbook: &str) -> Result<(ChecklistState, Option<Version>), String> {
    load_on(&*super::backend::current(), runbook)
}

fn load_on(backend: &dyn Backend, runbook: &str) -> Result<(ChecklistState, Option<Version>), String> {
    let got = backend.get(runbook, ITEM).map_err(|e| format!("{}: {e}", location(runbook)))?;
    let Some(o) = got else { return Ok((ChecklistState::default(), None)) };
    let s = serde_json::from_slice(&o.body).map_err(|e| {
        // Unknown fields are refused so an older cutover never writes back
        // a newer one's file without them; moving it away loses every tick.
        format!(
            "{}: cannot read checklist progress ({e}); written by a newer cutover (upgrade this one) or damaged \
             (fix it by hand: it holds the team's ticks and notes); nothing was changed",
            location(runbook)
        )
    })?;
    Ok((s, Some(o.version)))
}

/// `apply` of one item's `edits` in order, audited once before and after
/// (intent, then applied or failed), as every change to shared state is:
/// the CLI's `tick` and the cockpit's ticks and notes.
pub fn apply_audited(runbook: &str, operator: &str, edits: &[Edit]) -> Result<ChecklistState, String> {
    use super::audit::{AuditLog, Stage};
    let Some(first) = edits.first() else { return load(runbook).map(|(s, _)| s) };
    let what = describe(edits);
    let line = |stage, detail| audit_line(runbook, operator, first.key(), stage, detail);
    let log = AuditLog::for_runbook(runbook);
    log.append(&line(Stage::Intent, what.clone())).map_err(|e| format!("{e}; nothing was changed"))?;
    // One write for every edit: a tick and its note are saved together or
    // not at all, never a tick saved under an audit line saying it failed.
    let saved = match apply(runbook, edits) {
        Ok(s) => s,
        Err(m) => {
            let _ = log.append(&line(Stage::Failed, format!("{what}: {m}")));
            return Err(m);
        }
    };
    log.append(&line(Stage::Applied, what.clone()))
        .map_err(|e| format!("{what} was saved, but its audit line could not be written: {e}"))?;
    Ok(saved)
}

/// Audits `edits` refused (`--read-only`); nothing is changed.
pub fn audit_refused(runbook: &str, operator: &str, edits: &[Edit], why: &str) {
    let Some(first) = edits.first() else { return };
    let detail = format!("{}: {why}", describe(edits));
    let line = audit_line(runbook, operator, first.key(), super::audit::Stage::Refused, detail);
    let _ = super::audit::AuditLog::for_runbook(runbook).append(&line);
}

/// What `edits` do, as the audit and the CLI say it.
pub fn describe(edits: &[Edit]) -> String {
    edits.iter().map(Edit::describe).collect::<Vec<_>>().join("; ")
}

fn audit_line(
    runbook: &str,
    operator: &str,
    key: &str,
    stage: super::audit::Stage,
    detail: String,
) -> super::audit::AuditLine {
    super::audit::AuditLine {
        time: crate::time::rfc3339(std::time::SystemTime::now()),
        operator: operator.to_string(),
        account: None,
        region: String::new(),
        runbook: runbook.to_string(),
        action: format!("checklist {key}"),
        stage,
        before: serde_json::Value::Null,
        after: serde_json::Value::Null,
        detail,
        change: None,
        step: None,
        aws_ahead_ms: None,
    }
}

/// Applies `edits` over the latest ticks, in one write: read, change, write
/// only over the version read; a write that loses re-reads and applies
/// again, so two people's edits both land. Returns the state written.
pub fn apply(runbook: &str, edits: &[Edit]) -> Result<ChecklistState, String> {
    apply_on(&*super::backend::current(), runbook, edits)
}

fn apply_on(backend: &dyn Backend, runbook: &str, edits: &[Edit]) -> Result<ChecklistState, String> {
    // The state this process last sent: a write whose reply was lost and
    // that the SDK sent again is refused (412) although it landed, and a
    // note edited over the one seen would then read as someone else's.
    let mut sent: Option<ChecklistState> = None;
    for attempt in 0..40u32 {
        let (s, version) = load_on(backend, runbook)?;
        if sent.as_ref() == Some(&s) {
            return Ok(s);
        }
        let s = edited(s, edits)?;
        let body = serde_json::to_vec_pretty(&s).map_err(|e| e.to_string())?;
        match backend.put(runbook, ITEM, &body, Cond::replacing(version.as_ref())) {
            Ok(_) => return Ok(s),
            Err(StoreError::Conflict) => {
                sent = Some(s);
                // Spread the retries of writers that collided.
                let ms = 5 + fastrand::u64(0..(20 * u64::from(attempt + 1)).min(400));
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            Err(e) => {
                // No answer is not "not written": what is there says.
                if let Ok((now, _)) = load_on(backend, runbook)
                    && now == s
                {
                    return Ok(now);
                }
                return Err(format!("{}: cannot save checklist progress: {e}", location(runbook)));
            }
        }
    }
    Err(format!("{}: the checklist kept changing under 40 attempts; nothing was lost, try again", location(runbook)))
}

/// `s` with every edit applied in order, or the first one's refusal.
fn edited(mut s: ChecklistState, edits: &[Edit]) -> Result<ChecklistState, String> {
    for edit in edits {
        edit.apply(&mut s)?;
    }
    Ok(s)
}

impl ChecklistState {
    /// Ticks an unticked item or unticks a ticked one; returns the new state.
    pub fn toggle(&mut self, key: &str, by: &str, at: &str, account: Option<&str>) -> bool {
        if self.ticks.remove(key).is_some() {
            false
        } else {
            let account = account.map(str::to_string);
            self.ticks.insert(key.to_string(), Tick { by: by.to_string(), at: at.to_string(), account });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggle_twice_unticks() {
        let mut p = ChecklistState::default();
        assert!(p.toggle("a/b", "x", "t", None));
        assert!(!p.toggle("a/b", "x", "t", None));
        assert!(p.ticks.is_empty());
    }

    #[test]
    fn edits_say_what_they_mean_whatever_was_there() {
        let mut s = ChecklistState::default();
        let tick = Edit::Tick { key: "a/b".into(), by: "ana".into(), at: "t".into(), account: None };
        tick.apply(&mut s).unwrap();
        tick.apply(&mut s).unwrap();
        assert_eq!(s.ticks.len(), 1, "ticking a ticked item leaves it ticked");
        Edit::Note { key: "a/b".into(), text: Some("done".into()), over: NoteOver::Any }.apply(&mut s).unwrap();
        Edit::Untick { key: "a/b".into() }.apply(&mut s).unwrap();
        Edit::Untick { key: "a/b".into() }.apply(&mut s).unwrap();
        assert!(s.ticks.is_empty());
        assert_eq!(s.notes["a/b"], "done");
    }

    /// A note edited over the one its writer saw: refused once someone else
    /// changed it (their words would be erased unseen), taken otherwise.
    #[test]
    fn a_note_changed_since_it_was_opened_is_not_written_over() {
        let mut s = ChecklistState::default();
        let bob = Edit::Note { key: "a/b".into(), text: Some("DO NOT proceed".into()), over: NoteOver::Seen(None) };
        bob.apply(&mut s).unwrap();
        let ana = Edit::Note { key: "a/b".into(), text: None, over: NoteOver::Seen(None) };
        let e = ana.apply(&mut s).unwrap_err();
        assert!(e.contains("changed by someone else since it was opened (now: \"DO NOT proceed\")"), "{e}");
        assert_eq!(s.notes["a/b"], "DO NOT proceed");
        let ana = Edit::Note {
            key: "a/b".into(),
            text: Some("DO NOT proceed; ok now".into()),
            over: NoteOver::Seen(Some("DO NOT proceed".into())),
        };
        ana.apply(&mut s).unwrap();
        assert_eq!(s.notes["a/b"], "DO NOT proceed; ok now");
    }

    /// A note written over none, whose write landed with its reply lost:
    /// saved, not "changed by someone else (now: its own words)".
    #[test]
    fn a_note_saved_whose_reply_was_lost_is_saved() {
        for refuse in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let files = super::super::backend::LocalFiles { dir: Some(dir.path().to_path_buf()) };
            let store = super::super::testing::Unsure::new(files, 1, refuse, 0);
            let note =
                Edit::Note { key: "a/b".into(), text: Some("backup verified".into()), over: NoteOver::Seen(None) };
            let saved = apply_on(&store, "demo", &[note]).unwrap_or_else(|e| panic!("refuse {refuse}: {e}"));
            assert_eq!(saved.notes["a/b"], "backup verified");
            assert_eq!(load_on(&store, "demo").unwrap().0, saved);
        }
        // A teammate's tick lands before it is read back: the note there is
        // this edit's own, so it is saved, never "changed by someone else".
        let dir = tempfile::tempdir().unwrap();
        let files = super::super::backend::LocalFiles { dir: Some(dir.path().to_path_buf()) };
        let store = super::super::testing::Unsure::new(files, 1, true, 0);
        *store.after_lost_put.lock().unwrap() = Some(Box::new(|files| {
            let tick = Edit::Tick { key: "c/d".into(), by: "bob".into(), at: "t".into(), account: None };
            apply_on(files, "demo", &[tick]).unwrap();
        }));
        let note = Edit::Note { key: "a/b".into(), text: Some("backup verified".into()), over: NoteOver::Seen(None) };
        let saved = apply_on(&store, "demo", &[note]).unwrap();
        assert_eq!((saved.notes["a/b"].as_str(), saved.ticks.len()), ("backup verified", 1));
        assert_eq!(load_on(&store, "demo").unwrap().0, saved);
    }

    /// A tick with a note that is refused leaves nothing: `apply` writes
    /// what this gives, once (each edit was written on its own, and a
    /// failed note left the tick saved under a `failed` audit line).
    #[test]
    fn edits_are_applied_together_or_not_at_all() {
        let mut s = ChecklistState::default();
        s.notes.insert("a/b".into(), "DO NOT proceed".into());
        let tick = Edit::Tick { key: "a/b".into(), by: "ana".into(), at: "t".into(), account: None };
        let note = Edit::Note { key: "a/b".into(), text: Some("ok".into()), over: NoteOver::Seen(None) };
        let e = edited(s.clone(), &[tick.clone(), note]).unwrap_err();
        assert!(e.contains("changed by someone else"), "{e}");
        let ok = Edit::Note { key: "a/b".into(), text: Some("ok".into()), over: NoteOver::Any };
        let both = edited(s, &[tick, ok]).unwrap();
        assert_eq!((both.ticks.len(), both.notes["a/b"].as_str()), (1, "ok"));
    }
}
