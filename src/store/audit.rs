//! The audit log: one JSON object per line, appended (O_APPEND), fsynced line
//! by line, mode 0600. A line that `append` returned Ok for is on disk.

use std::path::PathBuf;

use super::backend::Backend;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLine {
    pub time: String,
    pub operator: String,
    pub account: Option<String>,
    pub region: String,
    pub runbook: String,
    pub action: String,
    pub stage: Stage,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub detail: String,
    /// Route53's id of the change this line is about (`applied`, `insync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// Which step of its run an action's `applied` line is: the run has
    /// finished only once its last step is applied. On a rollout's `insync`
    /// line, which of its steps was reached. None on lines of one-change
    /// runs and on lines written before steps were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepOf>,
    /// AWS's clock minus the writer's when it wrote the line, in
    /// milliseconds, at least and at most (from the `Date` of AWS's latest
    /// answer; on `insync` lines): `time` by AWS's clock, so a teammate on
    /// another machine, with another clock, can wait from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_ahead_ms: Option<(i64, i64)>,
}

/// Step `number` (from 1) of a run of `of` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOf {
    pub number: usize,
    pub of: usize,
}

impl StepOf {
    pub fn is_last(self) -> bool {
        self.number >= self.of
    }
}

impl AuditLine {
    /// The line, naming the Route53 change it is about.
    pub fn with_change(self, id: &str) -> Self {
        AuditLine { change: Some(id.to_string()), ..self }
    }

    /// The line, saying which step of its run it is.
    pub fn with_step(self, number: usize, of: usize) -> Self {
        AuditLine { step: Some(StepOf { number, of }), ..self }
    }

    /// The line, with how far AWS's clock was ahead of the writer's.
    pub fn with_aws_ahead_ms(self, ahead_ms: Option<(i64, i64)>) -> Self {
        AuditLine { aws_ahead_ms: ahead_ms, ..self }
    }
}

/// What became of the `intent` line at `i`, by its writer's own account:
/// the stage of that writer's next line about the same action that
/// concludes it (`applied`, `insync`, `failed`, or a copy's `interrupted`,
/// part of it done). None where it said
/// nothing of it before its next intent: it died between the send and its
/// `applied` line, or is sending now, so the change may be live.
pub fn conclusion(lines: &[AuditLine], i: usize) -> Option<Stage> {
    let intent = &lines[i];
    lines[i + 1..]
        .iter()
        .filter(|l| l.operator == intent.operator && l.action == intent.action)
        .map(|l| l.stage)
        .find(|s| matches!(s, Stage::Intent | Stage::Applied | Stage::InSync | Stage::Failed | Stage::Interrupted))
        .filter(|s| *s != Stage::Intent)
}

/// Where a change stands in its life, as the audit records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// About to be sent; written before anything is.
    Intent,
    /// Accepted by AWS (or written to Redis).
    Applied,
    /// Route53 reports the change on every server.
    InSync,
    Failed,
    /// Refused before anything was sent: --read-only, another account.
    Refused,
    /// A Redis copy stopped part-way; its checkpoint resumes it.
    Interrupted,
    /// A rollout paused for a person (a gate's errors, a request).
    Paused,
    /// A rollout control carried out: an abort rolled back, a promote skipped a soak.
    Done,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Intent => "intent",
            Stage::Applied => "applied",
            Stage::InSync => "insync",
            Stage::Failed => "failed",
            Stage::Refused => "refused",
            Stage::Interrupted => "interrupted",
            Stage::Paused => "paused",
            Stage::Done => "done",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl AuditLine {
    /// The webhook's text for this line: changes applied, rollout steps
    /// reached, pauses, aborts and promotions done, failures; None for the
    /// rest (intents, refusals, other INSYNC confirmations).
    pub fn notification(&self) -> Option<String> {
        let weights = |v: &serde_json::Value| match v.as_object() {
            Some(o) => o.iter().map(|(k, w)| format!("{k} {w}")).collect::<Vec<_>>().join(" / "),
            None => v.to_string(),
        };
        let change = if self.before.is_null() && self.after.is_null() {
            String::new()
        } else {
            format!(" [{} → {}]", weights(&self.before), weights(&self.after))
        };
        let (who, what, detail) = (&self.operator, &self.action, &self.detail);
        let text = match self.stage {
            Stage::Applied => format!("{what} applied by {who}{change}: {detail}"),
            // A rollout step's INSYNC says which step it is; other changes' are quiet.
            Stage::InSync if self.step.is_some() => format!("{what} reached (INSYNC): {detail}"),
            Stage::Paused => format!("rollout paused: {detail}"),
            Stage::Done => format!("{what} done by {who}{change}: {detail}"),
            Stage::Failed => format!("{what} FAILED{change}: {detail}"),
            Stage::Intent | Stage::InSync | Stage::Refused | Stage::Interrupted => return None,
        };
        Some(format!("cutover {}: {text}", self.runbook))
    }
}

/// A runbook's audit log in the process's store: a JSON-lines file
/// locally, one object per line in a shared store (appends never conflict).
#[derive(Clone)]
pub struct AuditLog {
    runbook: String,
    log: String,
    backend: std::sync::Arc<dyn Backend>,
}

impl AuditLog {
    /// `$XDG_STATE_HOME/cutover/<runbook>.audit.jsonl`, or the shared store's.
    pub fn for_runbook(name: &str) -> Self {
        Self { runbook: name.to_string(), log: "audit.jsonl".into(), backend: super::backend::current() }
    }

    /// A log in one local file.
    pub fn at(path: PathBuf) -> Self {
        let dir = path.parent().map(PathBuf::from);
        let log = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        Self { runbook: String::new(), log, backend: std::sync::Arc::new(super::backend::LocalFiles { dir }) }
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        if self.backend.shared() {
            format!("{}/{}/audit/", self.backend.describe(), self.runbook)
        } else {
            super::backend::LocalFiles { dir: Some(self.backend.describe().into()) }
                .path(&self.runbook, &self.log)
                .display()
                .to_string()
        }
    }

    /// The local file's length (cheap to ask every frame); None in a shared store.
    pub fn local_len(&self) -> Option<u64> {
        if self.backend.shared() {
            return None;
        }
        Some(std::fs::metadata(self.describe()).map_or(0, |m| m.len()))
    }

    pub fn append(&self, line: &AuditLine) -> Result<(), String> {
        let body = serde_json::to_vec(line).map_err(|e| e.to_string())?;
        self.backend
            .append(&self.runbook, &self.log, &body)
            .map_err(|e| format!("{}: cannot write the audit log: {e}", self.describe()))?;
        // Every change is audited, so the webhook hears of each one from here.
        if let Some(text) = line.notification() {
            crate::notify::post(text);
        }
        Ok(())
    }

    /// Every line, in order; a torn line (a crash mid-write, never
    /// acknowledged) is skipped, not fatal.
    pub fn read(&self) -> Result<Vec<AuditLine>, String> {
        let entries = self
            .backend
            .entries(&self.runbook, &self.log)
            .map_err(|e| format!("{}: cannot read the audit log: {e}", self.describe()))?;
        let mut out = Vec::new();
        for (at, bytes) in entries {
            match serde_json::from_slice(&bytes) {
                Ok(line) => out.push(line),
                Err(_) if serde_json::from_slice::<serde_json::Value>(&bytes).is_err_and(|e| e.is_eof()) => {}
                Err(e) => return Err(format!("{at}: damaged audit line: {e}")),
            }
        }
        Ok(out)
    }
}

/// A postmortem timeline in Markdown.
pub fn markdown(runbook: &str, lines: &[AuditLine]) -> String {
    let mut o = format!(
        "# Cutover timeline: {runbook}\n\n| time (UTC) | operator | account | action | stage | before | after | detail |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for l in lines {
        let cell = |v: &serde_json::Value| if v.is_null() { String::new() } else { v.to_string().replace('|', "\\|") };
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l.time,
            l.operator,
            l.account.as_deref().unwrap_or("?"),
            l.action,
            l.stage,
            cell(&l.before),
            cell(&l.after),
            l.detail.replace('|', "\\|")
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn line(stage: Stage) -> AuditLine {
        AuditLine {
            time: "2026-11-22T05:00:00Z".into(),
            operator: "ana".into(),
            account: Some("123456789012".into()),
            region: "eu-west-1".into(),
            runbook: "demo".into(),
            action: "shift_weights".into(),
            stage,
            before: serde_json::json!({"prod": 100, "staging": 0}),
            after: serde_json::json!({"prod": 70, "staging": 30}),
            detail: String::new(),
            change: None,
            step: None,
            aws_ahead_ms: None,
        }
    }

    #[test]
    fn notifications_say_what_changed_and_skip_intents_and_refusals() {
        let mut applied = line(Stage::Applied);
        applied.detail = "change C1".into();
        assert_eq!(
            applied.notification().as_deref(),
            Some("cutover demo: shift_weights applied by ana [prod 100 / staging 0 → prod 70 / staging 30]: change C1")
        );
        for quiet in [Stage::Intent, Stage::Refused, Stage::InSync] {
            assert_eq!(line(quiet).notification(), None, "{quiet}");
        }
        let mut step = line(Stage::InSync);
        step.action = "rollout step 2/4 (25%)".into();
        assert_eq!(step.notification(), None, "an INSYNC that names no step is quiet");
        let step = step.with_step(2, 4);
        assert!(step.notification().is_some_and(|t| t.contains("rollout step 2/4 (25%) reached (INSYNC)")));
        let mut paused = line(Stage::Paused);
        paused.detail = "gate 1 has no data".into();
        assert_eq!(paused.notification().as_deref(), Some("cutover demo: rollout paused: gate 1 has no data"));
        assert!(line(Stage::Failed).notification().is_some_and(|t| t.contains("shift_weights FAILED")));
    }

    #[test]
    fn appends_lines_in_order_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::at(dir.path().join("a/demo.audit.jsonl"));
        log.append(&line(Stage::Intent)).unwrap();
        log.append(&line(Stage::Applied)).unwrap();
        let back = log.read().unwrap();
        assert_eq!(back.iter().map(|l| l.stage).collect::<Vec<_>>(), [Stage::Intent, Stage::Applied]);
        assert_eq!(
            std::fs::metadata(dir.path().join("a/demo.audit.jsonl")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_damaged_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::at(dir.path().join("x.jsonl"));
        log.append(&line(Stage::Intent)).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(log.describe()).unwrap();
        f.write_all(b"{\"time\":\"2026").unwrap();
        assert_eq!(log.read().unwrap().len(), 1);
        std::fs::write(log.describe(), "garbage\n{}\n").unwrap();
        assert!(log.read().unwrap_err().contains("x.jsonl:1: damaged audit line"));
    }

    #[test]
    fn a_line_appended_after_a_torn_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::at(dir.path().join("t.jsonl"));
        log.append(&line(Stage::Intent)).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(log.describe()).unwrap();
        f.write_all(b"{\"time\":\"2026").unwrap();
        log.append(&line(Stage::Applied)).unwrap();
        let back = log.read().unwrap();
        assert_eq!(back.iter().map(|l| l.stage).collect::<Vec<_>>(), [Stage::Intent, Stage::Applied]);
    }

    #[test]
    fn stages_are_written_as_documented_and_the_change_id_is_its_own_field() {
        let l = line(Stage::InSync).with_change("C123");
        let json: serde_json::Value = serde_json::to_value(&l).unwrap();
        assert_eq!(json["stage"], "insync");
        assert_eq!(json["change"], "C123");
        assert!(serde_json::to_value(line(Stage::Intent)).unwrap().get("change").is_none());
        let back: AuditLine = serde_json::from_value(json).unwrap();
        assert_eq!((back.stage, back.change.as_deref()), (Stage::InSync, Some("C123")));
    }

    #[test]
    fn markdown_timeline_has_a_row_per_line() {
        let md = markdown("demo", &[line(Stage::Intent), line(Stage::InSync)]);
        assert!(md.starts_with("# Cutover timeline: demo"));
        assert_eq!(md.lines().filter(|l| l.starts_with("| 2026")).count(), 2);
        assert!(md.contains("{\"prod\":100,\"staging\":0}"));
    }
}
