//! `cutover rollout` and `cutover abort` against the sandbox, with the demo
//! runbook's waits shortened. Weights are read back through the AWS SDK.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cutover::runbook::Runbook;
use cutover::sandbox::Sandbox;

/// The demo runbook with a 5 s soak, 1 s gates and a 1 s TTL.
fn fast_runbook(dir: &Path) -> (Runbook, PathBuf) {
    fast_runbook_with(dir, |t| t)
}

/// `fast_runbook`, then `edit` on its text.
fn fast_runbook_with(dir: &Path, edit: impl FnOnce(String) -> String) -> (Runbook, PathBuf) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let text = edit(
        text.replace("soak = \"30s\"", "soak = \"5s\"")
            .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
            .replace("ttl = 10\n", "ttl = 1\n"),
    );
    let path = dir.join("fast.toml");
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

/// `cutover rollout --yes` in the background.
fn spawn_rollout(sb: &Sandbox, rb: &Runbook, state: &Path, path: &Path) -> tokio::process::Child {
    tokio::process::Command::from(cutover_command(sb, rb, state, &["rollout", path.to_str().unwrap(), "--yes"]))
        .spawn()
        .unwrap()
}

fn audit(state: &Path) -> Vec<serde_json::Value> {
    common::tmux::audit_lines(state, "demo")
}

fn rollout_state(state: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(state.join("cutover/demo.rollout.json")).ok()?).ok()
}

/// Waits until the saved state is soaking step `step` (0-based).
async fn until_soaking(state: &Path, step: u64) {
    let start = Instant::now();
    loop {
        if let Some(s) = rollout_state(state)
            && s["engine"]["step"] == step
            && s["engine"]["phase"]["phase"] == "soaking"
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never soaked step {step}: {:?}", rollout_state(state));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The demo runbook's 5xx alarm on staging goes to ALARM.
async fn staging_5xx_alarm_fires(sb: &Sandbox, reason: &str) {
    sb.clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name("demo-staging-5xx")
        .state_value(aws_sdk::cloudwatch::types::StateValue::Alarm)
        .state_reason(reason)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rollout_reaches_100_with_every_gate_passing_and_every_step_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "us-east-1").await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rollout complete: staging has 100%"), "{out}");
    assert_eq!(weights(&sb).await, w(0, 100));
    let lines = audit(dir.path());
    let steps: Vec<String> =
        lines.iter().map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap())).collect();
    let mut want = Vec::new();
    for (i, p) in [10, 25, 50, 100].iter().enumerate() {
        for stage in ["intent", "applied", "insync"] {
            want.push(format!("rollout step {}/4 ({p}%) [{stage}]", i + 1));
        }
    }
    assert_eq!(steps, want);
    assert_eq!(rollout_state(dir.path()).unwrap()["engine"]["phase"]["phase"], "done");
    // Running it again does nothing and says so.
    let lines_before = audit(dir.path()).len();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already complete"), "{out}");
    assert_eq!(audit(dir.path()).len(), lines_before);
    // An abort has no step to go back to: refused, never "weights set back
    // to 0/100".
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("refused: the rollout is complete (100% on staging); nothing to abort"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would refuse: the rollout is complete; nothing to abort"), "{out}");
    assert_eq!(weights(&sb).await, w(0, 100));
    assert_eq!(rollout_state(dir.path()).unwrap()["engine"]["phase"]["phase"], "done");
    sb.down().await;
}

/// A sandbox rehearsal and the real run keep their state in one folder
/// (`$XDG_STATE_HOME/cutover`), as do two accounts' runbooks of one name.
/// A completed rollout saved by a run in another account is never this
/// account's: its "complete" would end the real rollout with nothing sent,
/// and its abort would be refused with the traffic on the new side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_saved_by_a_run_in_another_account_is_not_taken_for_this_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ca-central-1").await;
    let p = path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let file = dir.path().join("cutover/demo.rollout.json");
    let mut state = rollout_state(dir.path()).unwrap();
    assert_eq!(state["account"], "123456789012", "the account whose records it changed: {state}");
    // As a rehearsal (or another account) left it; then the real run.
    state["account"] = serde_json::json!("111122223333");
    std::fs::write(&file, serde_json::to_vec(&state).unwrap()).unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "0", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let changes = sb.faults.changes.load(std::sync::atomic::Ordering::SeqCst);
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("would refuse: the saved rollout state was written by a rollout in account 111122223333"),
        "{out}"
    );
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "never \"already complete\": {out}");
    assert!(out.contains("not in account 123456789012, where this one changes the records"), "{out}");
    assert!(out.contains("--restart"), "{out}");
    assert_eq!(sb.faults.changes.load(std::sync::atomic::Ordering::SeqCst), changes, "nothing sent");
    assert_eq!(weights(&sb).await, w(100, 0));
    // An abort goes to the initial weights, never refused as complete.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "50", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rollback target: 100/0, the initial weights (the saved rollout state was written"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0));
    assert_eq!(rollout_state(dir.path()).unwrap()["account"], "123456789012", "now this account's: {out}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_during_a_soak_rolls_back_to_the_last_good_step_and_the_audit_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "us-west-2").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    staging_5xx_alarm_fires(&sb, "test: 5xx above threshold").await;
    let set_at = Instant::now();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(set_at.elapsed() < Duration::from_secs(5), "aborted within a few gate intervals: {:?}", set_at.elapsed());
    assert!(text.contains("rollout ABORTED and rolled back: gate 1 (alarms demo-staging-5xx) failed 1 time(s): alarm demo-staging-5xx is ALARM"), "{text}");
    assert_eq!(weights(&sb).await, w(90, 10), "back to step 1, the last good one");
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!(last["action"], "rollout abort");
    assert!(last["detail"].as_str().unwrap().contains("demo-staging-5xx is ALARM"), "{last}");
    sb.down().await;
}

/// The demo runbook's 5xx alarm on staging is set to `state`.
async fn staging_5xx_alarm_is(sb: &Sandbox, state: aws_sdk::cloudwatch::types::StateValue, reason: &str) {
    sb.clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name("demo-staging-5xx")
        .state_value(state)
        .state_reason(reason)
        .send()
        .await
        .unwrap();
}

/// The fast runbook whose alarm gate (gate 1) waits through 50 errors in a
/// row (its readings fail while alarms are throttled), with `more` fields.
fn alarm_gate_waits_out_throttling(dir: &Path, more: &str) -> (Runbook, PathBuf) {
    fast_runbook_with(dir, |t| {
        let gate = "alarms = [\"demo-staging-5xx\"]\n";
        t.replacen(gate, &format!("{gate}consecutive_error_limit = 50\n{more}"), 1)
    })
}

/// While no reading of the alarms gets through, the staging 5xx alarm goes
/// to ALARM and back `times` times, each OK held `ok_for`.
async fn alarm_off_and_back_unread(sb: &Sandbox, times: usize, ok_for: Duration) {
    use aws_sdk::cloudwatch::types::StateValue;
    use std::sync::atomic::Ordering;
    sb.faults.cloudwatch.throttle_alarm_reads.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..times {
        staging_5xx_alarm_is(sb, StateValue::Alarm, "test: 5xx above threshold for a minute").await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        staging_5xx_alarm_is(sb, StateValue::Ok, "test: 5xx back under the threshold").await;
        tokio::time::sleep(ok_for).await;
    }
    sb.faults.cloudwatch.throttle_alarm_reads.store(false, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_that_went_off_and_back_between_two_readings_still_fails_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = alarm_gate_waits_out_throttling(dir.path(), "");
    let sb = fixed_sandbox(&rb, "af-south-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    alarm_off_and_back_unread(&sb, 1, Duration::from_millis(500)).await;
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("rollout ABORTED and rolled back: gate 1 (alarms demo-staging-5xx) failed 1 time(s): alarm demo-staging-5xx went to ALARM at "), "{text}");
    assert!(text.contains("and left it before a reading saw it (its history says)"), "{text}");
    assert_eq!(weights(&sb).await, w(90, 10), "back to step 1, the last good one");
    sb.down().await;
}

/// A rollout paused mid-soak stands with the step's weights live, and no
/// one reads its gates. An ALARM while it stood, over more than a minute
/// before it resumed, judged those weights: the resumed soak counts it, as
/// a reading would, even after a resume that died before reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_that_went_off_and_back_while_the_rollout_was_paused_fails_the_resumed_step() {
    use aws_sdk::cloudwatch::types::StateValue;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"10m\""));
    let sb = fixed_sandbox(&rb, "eu-west-1").await;
    let p = path.to_str().unwrap();
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 0).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["pause", p, "--reason", "lunch"]).await;
    assert_eq!(code, Some(0), "{out}");
    let paused = child.wait_with_output().await.unwrap();
    assert_eq!(paused.status.code(), Some(3), "{}", String::from_utf8_lossy(&paused.stdout));
    assert_eq!(weights(&sb).await, w(90, 10));
    // While it stands: an ALARM, and back to OK before anyone resumes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    staging_5xx_alarm_is(&sb, StateValue::Alarm, "test: 5xx above threshold while paused").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    staging_5xx_alarm_is(&sb, StateValue::Ok, "test: 5xx back under the threshold").await;
    // Resumed over a minute later: past the minute read before any soak.
    // The first resume dies before any gate has read the alarms: the pause
    // is still the next run's to read.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let mut killed = cutover_command(&sb, &rb, dir.path(), &["rollout", p, "--yes"]);
    killed.env("CUTOVER_CRASH_AT", "rollout:begun");
    let out = killed.output().unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", String::from_utf8_lossy(&out.stdout));
    let saved = rollout_state(dir.path()).unwrap();
    assert_eq!(saved["engine"]["phase"]["phase"], "soaking", "resumed before it died: {saved}");
    assert!(saved["engine"]["paused_at"].is_object(), "the pause kept until read: {saved}");
    let (code, out) =
        tokio::time::timeout(Duration::from_secs(120), run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]))
            .await
            .expect("the resumed step is judged, not soaked for 10 minutes");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rollout ABORTED and rolled back: gate 1 (alarms demo-staging-5xx) failed 1 time(s): alarm demo-staging-5xx went to ALARM at "), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0), "no step passed: back to the initial weights");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_alarm_history_cannot_be_read_is_refused_before_anything_is_sent_and_its_dry_run_says_so() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-southeast-6").await;
    sb.faults.cloudwatch.deny_alarm_history.store(true, Ordering::SeqCst);
    let changes = sb.faults.changes.load(Ordering::SeqCst);
    // The dry run says so, and exits as the run would.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "would refuse: the history of alarm demo-staging-5xx cannot be read (DescribeAlarmHistory: AccessDenied"
        ),
        "{out}"
    );
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "refused: the history of alarm demo-staging-5xx cannot be read (DescribeAlarmHistory: AccessDenied"
        ),
        "{out}"
    );
    assert!(out.contains("grant cloudwatch:DescribeAlarmHistory on all alarms"), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0), "nothing sent");
    assert_eq!(sb.faults.changes.load(Ordering::SeqCst), changes, "no change sent");
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!((last["action"].as_str(), last["stage"].as_str()), (Some("rollout start"), Some("refused")), "{last}");
    sb.down().await;
}

/// A gate judges AWS's datapoints over a soak timed by this machine's
/// clock: with this clock a minute behind AWS's it would judge the minute
/// before the step and never the soak's last. A clock further off than
/// allowed (by the Date of AWS's answers) refuses the rollout before
/// anything is sent, and stops a running one from judging: it pauses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_off_from_aws_refuses_a_rollout_and_pauses_a_running_one_without_advancing() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"90s\""));
    let sb = fixed_sandbox(&rb, "eu-west-1").await;
    let changes = sb.faults.changes.load(Ordering::SeqCst);
    sb.faults.clock_ahead_ms.store(60_000, Ordering::SeqCst);
    let p = path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("would refuse: this machine's clock is at least "), "{out}");
    assert!(out.contains("s behind AWS's"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("refused: this machine's clock is at least "), "{out}");
    assert!(out.contains("timedatectl set-ntp true"), "how to fix it: {out}");
    assert_eq!(sb.faults.changes.load(Ordering::SeqCst), changes, "no change sent");
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!((last["action"].as_str(), last["stage"].as_str()), (Some("rollout start"), Some("refused")), "{last}");
    // In step; then, mid-soak, AWS's clock a minute behind this one.
    sb.faults.clock_ahead_ms.store(0, Ordering::SeqCst);
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 0).await;
    sb.faults.clock_ahead_ms.store(-60_000, Ordering::SeqCst);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("paused in time");
    let text = String::from_utf8_lossy(&out.as_ref().unwrap().stdout).to_string();
    assert_eq!(out.unwrap().status.code(), Some(3), "paused for a person, never passed: {text}");
    assert!(text.contains("cannot judge: this machine's clock is at least"), "{text}");
    assert!(text.contains("s ahead of AWS's"), "{text}");
    let state = rollout_state(dir.path()).unwrap();
    assert_eq!(state["engine"]["step"], 0, "never advanced: {state}");
    assert_eq!(state["engine"]["phase"]["phase"], "paused");
    assert_eq!(weights(&sb).await, w(90, 10), "step 1 only");
    sb.down().await;
}

/// Step 2's ChangeResourceRecordSets held by the sandbox for `hold_ms`
/// (Route53 finishing a request whose client gave up), the rollout run
/// until it stops; returns its output, once the step has landed, and its
/// step 2 audit lines' stages.
async fn step_2_landing_late(
    sb: &Sandbox,
    (rb, path): (&Runbook, &Path),
    state: &Path,
    hold_ms: u64,
) -> (Option<i32>, String, Vec<String>) {
    use std::sync::atomic::Ordering;
    let child = spawn_rollout(sb, rb, state, path);
    until_soaking(state, 0).await;
    sb.faults.hold_changes_ms.store(hold_ms, Ordering::SeqCst);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the rollout ends within 120 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    sb.faults.hold_changes_ms.store(0, Ordering::SeqCst);
    // The step is still in the saved state, whether it has landed yet or not.
    let kept = rollout_state(state).map(|s| s["in_flight"]["step"].clone());
    assert_eq!(kept, Some(serde_json::json!(1)), "step 2 kept in flight: {text}");
    // Landed by now, whatever the rollout said.
    let start = Instant::now();
    while weights(sb).await != w(75, 25) {
        assert!(start.elapsed() < Duration::from_secs(30), "the held step never landed: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stages = audit(state)
        .iter()
        .filter(|l| l["action"].as_str().is_some_and(|a| a.contains("step 2")))
        .map(|l| l["stage"].as_str().unwrap().to_string())
        .collect();
    (out.status.code(), text, stages)
}

/// The next run after `step_2_landing_late` confirms the step it kept in
/// flight, gates it and completes.
async fn the_next_run_confirms_step_2_and_completes(sb: &Sandbox, (rb, path): (&Runbook, &Path), state: &Path) {
    let (code, again) = run_cutover_all(sb, rb, state, &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("is live but its change was never recorded"), "{again}");
    assert!(again.contains("step 2/4 passed"), "step 2 gated: {again}");
    assert_eq!(weights(sb).await, w(0, 100));
}

/// A step whose ChangeResourceRecordSets Route53 finishes after the SDK gave
/// up (every attempt timed out) lands a moment after the call failed. The
/// rollout reads the records back while they read unchanged, as `cutover
/// shift` does: never "weights are unchanged" with the step live a second
/// later, ungated, audited as failed and forgotten by the saved state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_lands_after_its_call_gave_up_is_read_back_as_live_and_the_next_run_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"8s\""));
    let sb = fixed_sandbox(&rb, "us-west-1").await;
    let (code, text, stages) = step_2_landing_late(&sb, (&rb, &path), dir.path(), 14_000).await;
    assert!(!text.contains("weights are unchanged"), "said unchanged although step 2 is live: {text}");
    assert!(text.contains("read back: the new weights are live"), "{text}");
    assert_ne!(code, Some(0), "{text}");
    assert_eq!(stages.last().map(String::as_str), Some("applied"), "{stages:?}");
    the_next_run_confirms_step_2_and_completes(&sb, (&rb, &path), dir.path()).await;
    sb.down().await;
}

/// As above, but the step lands only after the rollout stopped reading it
/// back (30 s): the rollout cannot tell, so it never says the weights are
/// unchanged, and keeps the step in flight for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_lands_after_the_rollout_stopped_reading_it_back_is_kept_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"8s\""));
    let sb = fixed_sandbox(&rb, "eu-west-2").await;
    let (code, text, stages) = step_2_landing_late(&sb, (&rb, &path), dir.path(), 50_000).await;
    assert!(!text.contains("weights are unchanged"), "{text}");
    assert!(
        text.contains("the call got no answer (")
            && text.contains("read back: the records are still unchanged, but Route53 may yet apply it")
            && text.contains("kept in flight: `cutover rollout` confirms it if it landed, or sends it again"),
        "{text}"
    );
    assert_ne!(code, Some(0), "{text}");
    assert_eq!(stages.last().map(String::as_str), Some("failed"), "{stages:?}");
    the_next_run_confirms_step_2_and_completes(&sb, (&rb, &path), dir.path()).await;
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alarm_between_readings_counts_one_failure_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = alarm_gate_waits_out_throttling(dir.path(), "failure_limit = 3\n");
    let sb = fixed_sandbox(&rb, "ap-east-2").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    // Two ALARMs, further apart than one evaluation, neither read.
    alarm_off_and_back_unread(&sb, 2, Duration::from_secs(6)).await;
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Under its limit of 3: counted twice, once each, and the rollout goes on.
    assert_eq!(out.status.code(), Some(0), "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.contains(") failed (")).collect();
    assert_eq!(failed.len(), 2, "{text}");
    assert!(
        failed[0].contains("gate 1 (alarms demo-staging-5xx) failed (1/3): alarm demo-staging-5xx went to ALARM at "),
        "{text}"
    );
    assert!(failed[1].contains("failed (2/3): alarm demo-staging-5xx went to ALARM at "), "{text}");
    assert_eq!(weights(&sb).await, w(0, 100));
    sb.down().await;
}

/// The weights back at step 1 (90/10), and the abort's audit stages, each
/// attempt's.
async fn rolled_back_to_step_1(sb: &Sandbox, state: &Path, audited: &[&str]) {
    assert_eq!(weights(sb).await, w(90, 10), "back to step 1, the last good one");
    let stages: Vec<String> = audit(state)
        .iter()
        .filter(|l| l["action"] == "rollout abort")
        .map(|l| l["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, audited, "each attempt audited");
}

/// Route53 refusing the rollback (PriorRequestNotComplete, past the SDK's
/// own three attempts) does not leave the traffic on the failing step: the
/// rollback is planned, audited and sent again, waiting longer each time,
/// until it is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_route53_refuses_is_sent_again_until_it_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-southeast-3").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    sb.faults.refuse_changes.store(4, std::sync::atomic::Ordering::SeqCst);
    staging_5xx_alarm_fires(&sb, "test: 5xx above threshold").await;
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output()).await.expect("ended").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(sb.faults.changes_refused.load(std::sync::atomic::Ordering::SeqCst), 4, "{text}{err}");
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        text.contains("rollout abort: the change was not accepted: ChangeResourceRecordSets: PriorRequestNotComplete"),
        "{text}{err}"
    );
    assert!(text.contains("weights are unchanged; sending it again in 2 s"), "{text}{err}");
    assert!(text.contains("rollout ABORTED and rolled back"), "{text}{err}");
    rolled_back_to_step_1(&sb, dir.path(), &["intent", "failed", "intent", "applied", "insync", "done"]).await;
    sb.down().await;
}

/// A rollback Route53 applied but whose reply never came (the SDK timed out)
/// is read back as live and confirmed by sending it again: the run waits for
/// that change's INSYNC and ends rolled back, never told to run again by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_applied_whose_reply_is_lost_is_confirmed_by_sending_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-east-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    sb.faults.drop_change_replies.store(true, std::sync::atomic::Ordering::SeqCst);
    staging_5xx_alarm_fires(&sb, "test: 5xx above threshold").await;
    // The first send's reply is lost; every later one is answered.
    let changes_before = sb.faults.changes.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    while sb.faults.changes.load(std::sync::atomic::Ordering::SeqCst) == changes_before {
        assert!(started.elapsed() < Duration::from_secs(30), "the rollback was never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sb.faults.drop_change_replies.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.expect("ended").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{text}{err}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("read back: the new weights are live"), "{all}");
    assert!(all.contains("it is confirmed by sending it again"), "{all}");
    assert!(text.contains("rollout ABORTED and rolled back"), "{all}");
    assert!(!all.contains("run `cutover rollout` again"), "{all}");
    rolled_back_to_step_1(&sb, dir.path(), &["intent", "applied", "intent", "applied", "insync", "done"]).await;
    sb.down().await;
}

/// The bake: the last step (100%) holds for the bake with its gates running;
/// a gate failing during it rolls back to the last good step, as a soak's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_failing_during_the_bake_rolls_back_to_the_last_good_step() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"\n", "soak = \"5s\"\nbake = \"5m\"\n"));
    assert_eq!(rb.rollout.bake, Duration::from_secs(300));
    let sb = fixed_sandbox(&rb, "eu-south-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 3).await;
    assert_eq!(weights(&sb).await, w(0, 100), "the last step is live while it bakes");
    // Past a soak's length, it is still baking, not complete.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let s = rollout_state(dir.path()).unwrap();
    assert_eq!((&s["engine"]["step"], &s["engine"]["phase"]["phase"]), (&3.into(), &"soaking".into()), "{s}");
    staging_5xx_alarm_fires(&sb, "test: 5xx during the bake").await;
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("baking for 300s at 100%: every gate keeps running"), "{text}");
    assert!(
        text.contains("rollout ABORTED and rolled back: gate 1 (alarms demo-staging-5xx) failed 1 time(s): alarm demo-staging-5xx is ALARM"),
        "{text}"
    );
    assert!(!text.contains("rollout complete"), "{text}");
    assert_eq!(weights(&sb).await, w(50, 50), "back to step 3 (50%), the last good one");
    assert_eq!(rollout_state(dir.path()).unwrap()["engine"]["phase"]["phase"], "aborted");
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!(last["action"], "rollout abort");
    assert!(last["detail"].as_str().unwrap().contains("demo-staging-5xx is ALARM"), "{last}");
    sb.down().await;
}

/// A `redis_hit_rate` gate below its minimum aborts the rollout as any
/// failing gate does: misses made with GET of absent keys during the soak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_hit_rate_gate_below_its_minimum_aborts_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| {
        let (head, rest) = t.split_once("[[rollout.gates]]").unwrap();
        let alarms = &rest[rest.find("[[alarms]]").unwrap()..];
        format!(
            "{head}[[rollout.gates]]\nkind = \"redis_hit_rate\"\nredis = \"staging-cache\"\nmin_hit_rate = 90\nno_data = \"pause\"\n\n{alarms}"
        )
    });
    let sb = fixed_sandbox(&rb, "ap-northeast-3").await;
    // One hit in four lookups, all the time (each four in one MULTI, so
    // every reading falls between them): 25%.
    let url = sb.redis_urls["staging-cache"].clone();
    let lookups = tokio::spawn(async move {
        let mut c = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SET").arg("session:present").arg("1").query_async(&mut c).await.unwrap();
        loop {
            let mut four = redis::pipe();
            four.atomic();
            for key in ["session:present", "session:absent-1", "session:absent-2", "session:absent-3"] {
                four.cmd("GET").arg(key);
            }
            let _: Vec<Option<String>> = four.query_async(&mut c).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    lookups.abort();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("rollout ABORTED and rolled back: gate 1 (staging-cache hit rate ≥ 90%) failed 1 time(s): staging-cache: hit rate 25.0% ("),
        "{out}"
    );
    assert_eq!(weights(&sb).await, w(100, 0), "no step passed: back to the initial weights");
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!(last["action"], "rollout abort");
    assert!(last["detail"].as_str().unwrap().contains("hit rate 25.0%"), "{last}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_soak_then_restart_resumes_the_same_step_without_duplicate_audit_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "eu-central-1").await;
    let mut child =
        cutover_command(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).spawn().unwrap();
    until_soaking(dir.path(), 1).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(weights(&sb).await, w(75, 25), "killed in step 2's soak");
    let before = audit(dir.path()).len();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("resuming step 2 of 4"), "{out}");
    assert_eq!(weights(&sb).await, w(0, 100));
    let lines = audit(dir.path());
    assert!(lines.len() > before);
    let intents = |step: &str| {
        lines.iter().filter(|l| l["stage"] == "intent" && l["action"].as_str().unwrap().starts_with(step)).count()
    };
    assert_eq!(intents("rollout step 2/4"), 1, "step 2 was not sent twice");
    assert_eq!(intents("rollout step 3/4"), 1);
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_from_another_shell_rolls_a_running_rollout_back() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-south-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 2).await;
    // No manual shift under a running rollout's feet.
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", path.to_str().unwrap(), "--to", "10", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("a rollout of demo is running"), "{out}");
    let (code, out) = run_cutover_all(
        &sb,
        &rb,
        dir.path(),
        &["abort", path.to_str().unwrap(), "--yes", "--reason", "p99 looks wrong"],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the running rollout rolled back to 75/25"), "{out}");
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(weights(&sb).await, w(75, 25), "back to step 2, the last good one");
    assert_eq!(audit(dir.path()).last().unwrap()["detail"], "p99 looks wrong");
    sb.down().await;
}

/// An abort asked from a copy of the runbook whose steps changed since the
/// running rollout started: that rollout rolls back by its own plan (to its
/// last good step), and the abort says so, sending no second rollback to
/// the changed runbook's initial weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_from_a_changed_runbook_confirms_the_running_rollouts_own_rollback() {
    let dir = tempfile::tempdir().unwrap();
    // A 20 s soak: the abort (a process of its own, which checks account,
    // region and lease first) lands within step 3's soak, or, on a machine
    // busy enough (two full runs), within step 4's: the running rollout's
    // own last good step either way, never the changed runbook's.
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"20s\""));
    let sb = fixed_sandbox(&rb, "ca-west-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 2).await;
    let changed = dir.path().join("changed.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("steps = [10, 25, 50, 100]", "steps = [30, 60, 100]");
    std::fs::write(&changed, text).unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", changed.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let said = "the running rollout rolled back by its own plan (the runbook changed since it started) to ";
    let to = out.split_once(said).map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default().to_string());
    // Its own steps 2 (25%) or 3 (50%); the changed runbook's would be 70/30 or 40/60, or 100/0.
    let want = match to.as_deref() {
        Some("75/25") => w(75, 25),
        Some("50/50") => w(50, 50),
        other => panic!("rolled back to {other:?}, not the running rollout's own last good step: {out}"),
    };
    let _ = child.wait_with_output().await.unwrap();
    assert_eq!(weights(&sb).await, want, "its last good step, and no second rollback");
    // Read with the changed runbook, the saved state's step is no step of
    // its: "step 3/3 (100%)" named weights the rollout never sent.
    let (_, out) = run_cutover_all(&sb, &rb, dir.path(), &["status", changed.to_str().unwrap()]).await;
    assert!(out.contains("of a rollout plan changed since it was saved (not this runbook's steps)"), "{out}");
    sb.down().await;
}

/// The `to` side's record deleted by someone else during a soak: no gate
/// can judge it and no rollback can be planned over it, so the rollout
/// pauses for a person, sending nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_deleted_during_a_soak_pauses_the_rollout() {
    use aws_sdk::route53::types::{Change, ChangeAction};
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"15s\""));
    let sb = fixed_sandbox(&rb, "me-south-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    let listed = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    let staging = listed.resource_record_sets().iter().find(|r| r.set_identifier() == Some("staging")).unwrap();
    let delete = Change::builder().action(ChangeAction::Delete).resource_record_set(staging.clone()).build().unwrap();
    send_changes_as_another_client(&sb, vec![delete]).await;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("paused in time");
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "paused for a person: {text}");
    assert!(text.contains("staging's weighted record was removed from Route53 outside this rollout; paused"), "{text}");
    let intents = audit(dir.path()).iter().filter(|l| l["stage"] == "intent").count();
    assert_eq!(intents, 2, "steps 1 and 2 only: nothing sent after the record went");
    sb.down().await;
}

/// Weights set by someone else during a soak (a colleague's rollback from
/// the console, an abort without team mode): the step is no longer what the
/// gates measure, so the rollout pauses for a person and never writes over
/// them with its next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_changed_outside_a_running_rollout_pause_it_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"15s\""));
    let sb = fixed_sandbox(&rb, "eu-central-2").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    set_weights_as_another_client(&sb, &rb, &[("prod", 100), ("staging", 0)]).await;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("paused in time");
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "paused for a person: {text}");
    assert!(text.contains("the weights were changed outside this rollout: 100/0 live"), "{text}");
    let state = rollout_state(dir.path()).unwrap();
    assert_eq!(
        (state["engine"]["step"].as_u64(), state["engine"]["phase"]["phase"].as_str()),
        (Some(1), Some("paused"))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(weights(&sb).await, w(100, 0), "the colleague's weights stand");
    let intents = audit(dir.path()).iter().filter(|l| l["stage"] == "intent").count();
    assert_eq!(intents, 2, "steps 1 and 2 only: nothing sent over the colleague's change");
    // Adopted, they go up again one gated step at a time: step 1 (10%)
    // first, never straight back to step 2's 25%.
    let mut adopt = tokio::process::Command::from(cutover_command(
        &sb,
        &rb,
        dir.path(),
        &["rollout", path.to_str().unwrap(), "--yes", "--adopt-live"],
    ))
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    until_soaking(dir.path(), 0).await;
    assert_eq!(weights(&sb).await, w(90, 10));
    adopt.kill().await.unwrap();
    // The adopted weights were confirmed by a batch the audit names for
    // what it is: no abort was asked, and none is recorded.
    let actions: Vec<String> = audit(dir.path())
        .iter()
        .filter(|l| l["stage"] == "intent")
        .map(|l| format!("{} {}", l["action"].as_str().unwrap(), l["after"]))
        .collect();
    assert_eq!(
        actions,
        [
            "rollout step 1/4 (10%) {\"production\":90,\"staging\":10}",
            "rollout step 2/4 (25%) {\"production\":75,\"staging\":25}",
            "rollout adopt-live {\"production\":100,\"staging\":0}",
            "rollout step 1/4 (10%) {\"production\":90,\"staging\":10}",
        ]
    );
    sb.down().await;
}

/// An abort reads the last good step from the saved state; against a runbook
/// whose steps changed since, that step's number names other weights (more
/// for the new side than it has live, or the very weights live, a rollback
/// that moves nothing). It rolls back to the runbook's initial weights, and
/// says why. With `from` and `to` swapped as well, those numbers are other
/// environments' weights: refused, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_the_steps_changed_rolls_back_to_the_initial_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"20s\""));
    let sb = fixed_sandbox(&rb, "eu-south-2").await;
    let mut child =
        cutover_command(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).spawn().unwrap();
    until_soaking(dir.path(), 1).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(weights(&sb).await, w(75, 25), "killed in step 2's soak; step 1 (10%) passed");
    // A colleague's copy of the runbook: step 1 is now 30%; and first, the
    // sides swapped too (its initial weights give staging everything).
    let text = std::fs::read_to_string(&path).unwrap().replace("steps = [10, 25, 50, 100]", "steps = [30, 60, 100]");
    let swapped = text
        .replace("from = \"production\"\nto = \"staging\"", "from = \"staging\"\nto = \"production\"")
        .replace(
            "initial_weights = { production = 100, staging = 0 }",
            "initial_weights = { production = 0, staging = 100 }",
        )
        // A gate on the side the traffic now moves to, as validation asks.
        .replace(
            "kind = \"healthy_targets\"\nenvironment = \"staging\"",
            "kind = \"healthy_targets\"\nenvironment = \"production\"",
        );
    assert_ne!(swapped, text);
    std::fs::write(&path, swapped).unwrap();
    let refused = "this rollout moved traffic from production to staging, and the runbook's rollout now goes from \
                   staging to production, so an abort cannot tell which weights to go back to";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("would refuse: {refused}")), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("refused: {refused}; nothing was changed")), "{out}");
    assert_eq!(weights(&sb).await, w(75, 25), "nothing sent");
    std::fs::write(&path, text).unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("rollback target: 100/0, the initial weights (the runbook's rollout changed since it started)"),
        "{out}"
    );
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("the runbook's rollout changed since this rollout started: rolling back to its initial weights"),
        "{out}"
    );
    assert_eq!(weights(&sb).await, w(100, 0), "rolled back to the initial weights");
    sb.down().await;
}

/// `cutover rollout --yes`, stopped (SIGSTOP) as it is about to plan step 2
/// (its second forward step): after step 1's soak, before reading the
/// records step 2 is planned from.
async fn rollout_stopped_before_step_2(sb: &Sandbox, rb: &Runbook, state: &Path, path: &Path) -> tokio::process::Child {
    let mut command = cutover_command(sb, rb, state, &["rollout", path.to_str().unwrap(), "--yes"]);
    command.env("CUTOVER_STOP_AT", "step:before-plan@2");
    let child = tokio::process::Command::from(command).kill_on_drop(true).spawn().unwrap();
    let pid = child.id().unwrap();
    eventually(Duration::from_secs(60), "the rollout stopped before step 2", || async {
        process_stopped(pid).then_some(())
    })
    .await;
    child
}

/// A step whose intent is audited but whose state cannot be saved after
/// (another writer changed it meanwhile) is not sent, and the audit says
/// so: the intent had no line after it, which reads as a send that may
/// have gone out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_state_cannot_be_saved_after_its_intent_is_audited_as_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "mx-central-1").await;
    let mut command = cutover_command(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]);
    command.env("CUTOVER_STOP_AT", "step:after-intent");
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    eventually(Duration::from_secs(60), "the rollout stopped after step 1's intent", || async {
        process_stopped(pid).then_some(())
    })
    .await;
    // Another writer's state in place of this process's.
    let file = dir.path().join("cutover/demo.rollout.json");
    let mut other = rollout_state(dir.path()).expect("a saved state");
    other["updated_at"] = serde_json::json!("2026-01-01T00:00:00Z");
    other["operator"] = serde_json::json!("someone else");
    std::fs::write(&file, serde_json::to_vec_pretty(&other).unwrap()).unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ended").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert_eq!(weights(&sb).await, w(100, 0), "nothing sent: {said}");
    let lines: Vec<(String, String)> = audit(dir.path())
        .iter()
        .map(|l| {
            (l["action"].as_str().unwrap_or_default().to_string(), l["stage"].as_str().unwrap_or_default().to_string())
        })
        .filter(|(a, _)| a.starts_with("rollout step 1/"))
        .collect();
    let stages: Vec<&str> = lines.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(stages, ["intent", "failed"], "{lines:?}\n{said}");
    sb.down().await;
}

/// `cutover abort --yes` in the background, once it has asked the running
/// rollout (its request is on disk); it then waits for the rollback.
async fn abort_asked_in_background(sb: &Sandbox, rb: &Runbook, state: &Path, path: &Path) -> tokio::process::Child {
    let abort = tokio::process::Command::from(cutover_command(
        sb,
        rb,
        state,
        &["abort", path.to_str().unwrap(), "--yes", "--reason", "p99 looks wrong"],
    ))
    .kill_on_drop(true)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    eventually(Duration::from_secs(30), "the abort asked", || async {
        state.join("cutover/demo.abort-request").exists().then_some(())
    })
    .await;
    abort
}

fn intents(state: &Path) -> Vec<String> {
    audit(state).iter().filter(|l| l["stage"] == "intent").map(|l| l["action"].as_str().unwrap().to_string()).collect()
}

/// A rollout that dies just as an abort is asked of it (here: stopped in
/// step 2's soak, then killed): the abort, waiting for a rollback nobody
/// would send, waited out its six minutes and failed. It takes the freed
/// lease and carries the abort out itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_asked_of_a_rollout_that_then_dies_is_carried_out_by_the_abort() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"30s\""));
    let sb = fixed_sandbox(&rb, "ap-south-2").await;
    let mut child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGSTOP) };
    assert_eq!(weights(&sb).await, w(75, 25), "in step 2's soak");
    let abort = abort_asked_in_background(&sb, &rb, dir.path(), &path).await;
    child.kill().await.unwrap();
    let asked = tokio::time::timeout(Duration::from_secs(30), abort.wait_with_output()).await.expect("ended").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&asked.stdout), String::from_utf8_lossy(&asked.stderr));
    assert_eq!(asked.status.code(), Some(0), "{said}");
    assert!(said.contains("the rollout ended without rolling back: this abort carries it out"), "{said}");
    assert_eq!(weights(&sb).await, w(90, 10), "rolled back to step 1, the last good");
    assert_eq!(rollout_state(dir.path()).unwrap()["engine"]["phase"]["phase"], "aborted");
    assert!(!dir.path().join("cutover/demo.abort-request").exists(), "not left to abort the next rollout");
    sb.down().await;
}

/// Weights changed by hand in the moment between step 1's soak and step 2
/// (after the loop's last look at the live weights): step 2 was planned
/// from the records as they were then, so its DELETE matched and it went
/// out over the change. Now it is not sent, and the rollout pauses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_changed_just_before_a_step_are_never_sent_over() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-northeast-3").await;
    let child = rollout_stopped_before_step_2(&sb, &rb, dir.path(), &path).await;
    assert_eq!(weights(&sb).await, w(90, 10), "step 1 applied");
    set_weights_as_another_client(&sb, &rb, &[("prod", 100), ("staging", 0)]).await;
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGCONT) };
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ended").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "paused for a person: {text}");
    assert!(
        text.contains(
            "rollout step 2/4 (25%): not sent: the weights were changed outside this rollout: 100/0 live (production / staging), 90/10 applied by it; paused"
        ),
        "{text}"
    );
    assert_eq!(weights(&sb).await, w(100, 0), "the hand change stands");
    assert_eq!(intents(dir.path()), ["rollout step 1/4 (10%)"], "step 2 never sent");
    sb.down().await;
}

/// An abort asked for while a step is being planned: the step is not sent.
/// It went out first, and only its INSYNC wait saw the abort and rolled it
/// back (seconds of the next step's share on a side someone had just
/// judged bad).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_asked_while_a_step_is_planned_sends_no_step() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-northeast-2").await;
    let child = rollout_stopped_before_step_2(&sb, &rb, dir.path(), &path).await;
    let abort = abort_asked_in_background(&sb, &rb, dir.path(), &path).await;
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGCONT) };
    let asked = tokio::time::timeout(Duration::from_secs(60), abort.wait_with_output()).await.expect("ended").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&asked.stdout), String::from_utf8_lossy(&asked.stderr));
    assert_eq!(asked.status.code(), Some(0), "{said}");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ended").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rollout step 2/4 (25%): not sent: an abort was asked for"), "{text}");
    assert_eq!(weights(&sb).await, w(90, 10), "at step 1, the last good");
    assert_eq!(intents(dir.path()), ["rollout step 1/4 (10%)"], "step 2 never sent");
    sb.down().await;
}

/// An aborted rollout whose weights were lowered by hand since its rollback,
/// then adopted: it starts again at the first step above the live share,
/// one gated step at a time. It started at the step after its last good
/// one, whatever the live weights (aborted at 50%, lowered to 0%: 100% in
/// one batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_rollout_adopting_lowered_weights_goes_up_one_step_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"15s\""));
    let sb = fixed_sandbox(&rb, "ap-southeast-4").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ended").unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(weights(&sb).await, w(90, 10), "rolled back to step 1, the last good");
    set_weights_as_another_client(&sb, &rb, &[("prod", 100), ("staging", 0)]).await;
    let mut adopt = tokio::process::Command::from(cutover_command(
        &sb,
        &rb,
        dir.path(),
        &["rollout", path.to_str().unwrap(), "--yes", "--adopt-live"],
    ))
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let start = Instant::now();
    let step = loop {
        if let Some(s) = rollout_state(dir.path())
            && s["engine"]["phase"]["phase"] == "soaking"
        {
            break s["engine"]["step"].as_u64();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never soaked: {:?}", rollout_state(dir.path()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((step, weights(&sb).await), (Some(0), w(90, 10)), "step 1 (10%) first, not step 2 (25%)");
    adopt.kill().await.unwrap();
    sb.down().await;
}

/// A rollback that would raise the new side (the weights were lowered by
/// hand below the last good step since) is refused, exit 2, and audited
/// `refused` like every attempt, so the webhook tells the team that the
/// abort moved nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_would_raise_the_new_side_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"15s\""));
    let sb = fixed_sandbox(&rb, "ap-southeast-5").await;
    let p = path.to_str().unwrap();
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ended").unwrap();
    assert_eq!(weights(&sb).await, w(90, 10), "rolled back to step 1, the last good");
    set_weights_as_another_client(&sb, &rb, &[("prod", 100), ("staging", 0)]).await;
    let changes = sb.faults.changes.load(std::sync::atomic::Ordering::SeqCst);
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--yes"]).await;
    assert_eq!(code, Some(2), "a refusal: {out}");
    assert!(out.contains("rollback refused"), "{out}");
    assert_eq!(sb.faults.changes.load(std::sync::atomic::Ordering::SeqCst), changes, "nothing sent");
    assert_eq!(weights(&sb).await, w(100, 0));
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!((last["action"].as_str(), last["stage"].as_str()), (Some("rollout abort"), Some("refused")), "{last}");
    assert!(last["detail"].as_str().unwrap().contains("rollback refused"), "{last}");
    sb.down().await;
}

/// A rollback is judged by the share it gives the new side, not by its raw
/// weight: initial weights of 255/20 give staging 7.3%, less than step 1's
/// 90/10, though 20 is more than 10. Refusing it (as a guard on raw weights
/// did) left the traffic on the failing side with every abort refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_to_initial_weights_on_another_scale_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| {
        t.replace("soak = \"5s\"", "soak = \"60s\"").replace(
            "initial_weights = { production = 100, staging = 0 }",
            "initial_weights = { production = 255, staging = 20 }",
        )
    });
    let sb = fixed_sandbox(&rb, "eu-central-2").await;
    assert_eq!(weights(&sb).await, w(255, 20), "the sandbox starts at the initial weights");
    let mut child =
        cutover_command(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).spawn().unwrap();
    until_soaking(dir.path(), 0).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(weights(&sb).await, w(90, 10), "killed in step 1's soak");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(255, 20), "rolled back to the initial weights");
    sb.down().await;
}

/// An abort asked for just as a rollout began (its asker saw the lease of
/// one that had just ended) ends the new run: never taken and dropped for a
/// start forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_waiting_when_a_rollout_starts_ends_it_with_nothing_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "il-central-1").await;
    std::fs::create_dir_all(dir.path().join("cutover")).unwrap();
    std::fs::write(dir.path().join("cutover/demo.abort-request"), "alice: p99 looks wrong").unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("an abort was waiting (alice: p99 looks wrong): not starting"), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0), "nothing sent");
    assert!(!dir.path().join("cutover/demo.abort-request").exists(), "acted on once");
    sb.down().await;
}

/// A rollout killed in step 2's soak (75/25), then an abort killed after
/// its intent, before its rollback was sent: the weights stay 75/25.
async fn rollout_killed_in_step_2_then_its_abort_before_the_rollback(sb: &Sandbox, rb: &Runbook, dir: &Path, p: &str) {
    rollout_killed_in_step_2_then_its_abort_at(sb, rb, dir, p, "rollback:after-intent").await;
    assert_eq!(weights(sb).await, w(75, 25), "nothing sent");
}

/// The audit after the `before`-th intent: no intent of step 2 (the step
/// aborted), and the abort audited done.
fn abort_done_and_step_2_not_sent_again(dir: &Path, before: usize) {
    let lines = audit(dir);
    let after: Vec<&serde_json::Value> = lines.iter().filter(|l| l["stage"] == "intent").skip(before).collect();
    assert!(
        after.iter().all(|l| !l["action"].as_str().unwrap_or_default().starts_with("rollout step 2/4")),
        "step 2 sent again: {after:?}"
    );
    assert!(lines.iter().any(|l| l["action"] == "rollout abort" && l["stage"] == "done"), "{lines:?}");
}

/// As above, the abort killed at `point`.
async fn rollout_killed_in_step_2_then_its_abort_at(sb: &Sandbox, rb: &Runbook, dir: &Path, p: &str, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = cutover_command(sb, rb, dir, &["rollout", p, "--yes"]).spawn().unwrap();
    until_soaking(dir, 1).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(weights(sb).await, w(75, 25), "killed in step 2's soak; step 1 (10%) passed");
    let mut abort = cutover_command(sb, rb, dir, &["abort", p, "--yes"]);
    abort.env("CUTOVER_CRASH_AT", point);
    let status = abort.status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the abort died at {point}");
}

/// An abort killed after Route53 accepted its rollback (before its change
/// was confirmed or the abort audited done), then `cutover rollout`: it
/// confirms the rollback, audits the abort done and stops (exit 1). It
/// confirmed the rollback, then started afresh and sent the aborted step 2
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_run_after_a_rollback_killed_once_sent_confirms_it_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"20s\""));
    let sb = fixed_sandbox(&rb, "ap-southeast-5").await;
    let p = path.to_str().unwrap();
    rollout_killed_in_step_2_then_its_abort_at(&sb, &rb, dir.path(), p, "rollback:after-send").await;
    assert_eq!(weights(&sb).await, w(90, 10), "the rollback reached Route53");
    let intents = |dir: &Path| audit(dir).iter().filter(|l| l["stage"] == "intent").count();
    let before = intents(dir.path());
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would finish the interrupted rollback to 90/10"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled back; nothing else was sent"), "{out}");
    assert_eq!(weights(&sb).await, w(90, 10), "left rolled back");
    abort_done_and_step_2_not_sent_again(dir.path(), before);
    sb.down().await;
}

/// An abort killed before its rollback reached Route53, then another abort
/// left waiting: the next `cutover rollout` finishes the rollback. It said
/// "an abort was waiting: not starting; nothing sent", took the request,
/// and left the aborted step's weights live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_abort_finishes_a_rollback_an_earlier_abort_left_unsent() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"20s\""));
    let sb = fixed_sandbox(&rb, "me-central-1").await;
    let p = path.to_str().unwrap();
    rollout_killed_in_step_2_then_its_abort_before_the_rollback(&sb, &rb, dir.path(), p).await;
    std::fs::write(dir.path().join("cutover/demo.abort-request"), "bob: still 5xx").unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("finishing the interrupted rollback to 90/10"), "{out}");
    assert_eq!(weights(&sb).await, w(90, 10), "rolled back to step 1, the last good");
    assert!(!dir.path().join("cutover/demo.abort-request").exists(), "acted on once");
    sb.down().await;
}

/// An abort killed before its rollback reached Route53, then `cutover
/// rollout` with no abort waiting: it finishes the rollback, audits the
/// abort done and stops there (exit 1). It finished the rollback and then
/// sent the step that had been aborted again, as a fresh start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_run_after_an_unsent_rollback_finishes_it_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"20s\""));
    let sb = fixed_sandbox(&rb, "ap-southeast-1").await;
    let p = path.to_str().unwrap();
    rollout_killed_in_step_2_then_its_abort_before_the_rollback(&sb, &rb, dir.path(), p).await;
    let intents = |dir: &Path| audit(dir).iter().filter(|l| l["stage"] == "intent").count();
    let before = intents(dir.path());
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would finish the interrupted rollback to 90/10"), "{out}");
    // --adopt-live adopts nothing here (the live weights are the ones expected).
    let adopt = ["rollout", p, "--yes", "--adopt-live", "--dry-run"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &adopt).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would finish the interrupted rollback to 90/10"), "--adopt-live: {out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("finishing the interrupted rollback to 90/10"), "{out}");
    assert_eq!(weights(&sb).await, w(90, 10), "rolled back to step 1, the last good, and left there");
    abort_done_and_step_2_not_sent_again(dir.path(), before);
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "eu-north-1").await;
    let p = path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["--read-only", "rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("refused: --read-only forbids a rollout"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p]).await;
    assert_eq!(code, Some(2), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["--read-only", "abort", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    // Weights changed behind the rollout's back: refused without --adopt-live.
    set_weights_as_another_client(&sb, &rb, &[("prod", 60), ("staging", 40)]).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("the live weights are 60/40 but the rollout expects 100/0"), "{out}");
    assert_eq!(weights(&sb).await, w(60, 40));
    // Adopting weights a person confirmed (the cockpit's "adopt and start")
    // that someone changed since: refused, nothing sent.
    let args = ["rollout", p, "--yes", "--adopt-live", "--expect-live", "70/30"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &args).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("the live weights are 60/40 now, not the 70/30 that were confirmed (someone changed them since)"),
        "{out}"
    );
    assert_eq!(weights(&sb).await, w(60, 40));
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes", "--expect-live", "70"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("`70` is not FROM/TO weights (e.g. 70/30, each 0 to 255)"), "{out}");
    // Every refused start is audited (the --read-only ones by
    // `authority::authorise`), a bad argument is not an attempt; nothing was sent.
    let lines: Vec<String> = audit(dir.path())
        .iter()
        .map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        ["rollout start [refused]", "rollout abort [refused]", "rollout start [refused]", "rollout start [refused]"]
    );
    let details: Vec<String> = audit(dir.path()).iter().map(|l| l["detail"].as_str().unwrap().to_string()).collect();
    assert!(details[2].contains("the live weights are 60/40 but the rollout expects 100/0"), "{details:?}");
    assert!(details[3].contains("not the 70/30 that were confirmed"), "{details:?}");
    sb.down().await;
}

/// The fast runbook with one gate: the staging alarm, with `policy` for no data.
fn alarm_gate_only(dir: &Path, policy: &str) -> (Runbook, PathBuf) {
    fast_runbook_with(dir, |t| {
        let (head, rest) = t.split_once("[[rollout.gates]]").unwrap();
        let alarms = &rest[rest.find("[[alarms]]").unwrap()..];
        format!(
            "{head}[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-5xx\"]\nlag = \"3s\"\nno_data = \"{policy}\"\n\n{alarms}"
        )
    })
}

/// Runs the one-gate rollout with its alarm in INSUFFICIENT_DATA (moto never
/// evaluates alarms, so it stays there): (exit code, output).
async fn rollout_without_data(policy: &str, region: &str) -> (Option<i32>, String, BTreeMap<String, i64>) {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = alarm_gate_only(dir.path(), policy);
    let sb = sandbox(&rb, region).await;
    sb.clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name("demo-staging-5xx")
        .state_value(aws_sdk::cloudwatch::types::StateValue::InsufficientData)
        .state_reason("test: no datapoints")
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    assert!(out.contains("no data yet"), "no data waits while the soak runs: {out}");
    // It waited out the soak (5 s) before following the policy.
    assert!(started.elapsed() >= Duration::from_secs(5), "{:?}", started.elapsed());
    let live = weights(&sb).await;
    sb.down().await;
    (code, out, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_without_data_and_policy_pass_lets_the_rollout_complete() {
    let (code, out, live) = rollout_without_data("pass", "ca-central-1").await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rollout complete: staging has 100%"), "{out}");
    assert_eq!(live, w(0, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_without_data_and_policy_fail_aborts_to_the_initial_weights() {
    let (code, out, live) = rollout_without_data("fail", "sa-east-1").await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "rollout ABORTED and rolled back: gate 1 (alarms demo-staging-5xx) failed 1 time(s): no data (policy: fail)"
        ),
        "{out}"
    );
    assert_eq!(live, w(100, 0), "no step passed: back to the initial weights");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_without_data_and_policy_pause_stops_for_a_person_without_moving() {
    let (code, out, live) = rollout_without_data("pause", "ap-southeast-2").await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("rollout PAUSED for a person: gate 1 (alarms demo-staging-5xx): no data; a person must decide (policy: pause)"), "{out}");
    assert_eq!(live, w(90, 10), "held at step 1: neither advanced nor rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_pause_from_another_shell_and_dry_runs_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A soak long enough that only a promotion moves the rollout on.
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"10m\""));
    let sb = fixed_sandbox(&rb, "eu-west-3").await;
    let p = path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["pause", p]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no rollout of demo is running"), "{out}");
    // A rollout in another region than the runbook's: refused and audited,
    // as every start refused is.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["--region", "us-west-2", "rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("load balancers (demo-prod-alb, demo-staging-alb) is in region us-west-2"), "{out}");
    let lines = audit(dir.path());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((&lines[0]["action"], &lines[0]["stage"]), (&"rollout start".into(), &"refused".into()), "{lines:?}");
    std::fs::remove_file(dir.path().join("cutover/demo.audit.jsonl")).unwrap();
    // Dry run before anything: the plan and the first batch, nothing sent.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would start at step 1 of 4"), "{out}");
    assert!(out.contains(r#""Weight":90"#) && out.contains(r#""Weight":10"#), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0));
    // Weights a person confirmed that are not the live ones: refused, as the run would be.
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run", "--expect-live", "70/30"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("would refuse: the live weights are 100/0, not the 70/30 given to --expect-live"), "{out}");
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run", "--expect-live", "100/0"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would start at step 1 of 4"), "{out}");
    assert!(rollout_state(dir.path()).is_none(), "a dry run writes no state");

    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 0).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["promote", p]).await;
    assert_eq!(code, Some(2), "promote needs --yes: {out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["promote", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("promoted: the rollout moved on to step 2"), "{out}");
    until_soaking(dir.path(), 1).await;
    assert_eq!(weights(&sb).await, w(75, 25));
    // A promote confirmed for step 1 (a popup left open) that reaches the
    // rollout at step 2 skips nothing: step 2's soak was never shown.
    let request = dir.path().join("cutover/demo.promote-request");
    std::fs::write(&request, r#"{"text":"promoted from the cockpit by ana","step":0}"#).unwrap();
    common::eventually(Duration::from_secs(10), "the stale promote taken", || async {
        (!request.exists()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = rollout_state(dir.path()).unwrap();
    assert_eq!(
        (&state["engine"]["step"], &state["engine"]["phase"]["phase"]),
        (&1.into(), &"soaking".into()),
        "{state}"
    );
    assert_eq!(weights(&sb).await, w(75, 25));
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["pause", p, "--reason", "checking p99"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the rollout paused at step 2"), "{out}");
    let done = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&done.stdout);
    assert_eq!(done.status.code(), Some(3), "{text}");
    assert!(text.contains("pause asked for: checking p99"), "{text}");
    assert!(
        text.contains(
            "promote ignored: promoting step 1 was confirmed, but the rollout is at step 2 now (promoted from the \
             cockpit by ana)"
        ),
        "{text}"
    );
    assert_eq!(weights(&sb).await, w(75, 25), "a pause moves no weight");

    // Dry runs while paused: they say what would happen and change nothing.
    let lines = audit(dir.path()).len();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("saved state: step 2 of 4, paused"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rollback target: 90/10, step 1 (10%)"), "{out}");
    assert!(out.contains("production (prod) 75 → 90, staging (staging) 25 → 10"), "{out}");
    assert_eq!(weights(&sb).await, w(75, 25));
    assert_eq!(audit(dir.path()).len(), lines, "dry runs write no audit line");

    // The promotion is audited; the abort's line says what it moved away from.
    let promote = audit(dir.path()).into_iter().find(|l| l["action"] == "rollout promote").expect("promote audited");
    assert!(promote["detail"].as_str().unwrap().contains("step 1 promoted"), "{promote}");
    let ignored = audit(dir.path()).into_iter().find(|l| l["action"] == "rollout promote" && l["stage"] == "refused");
    assert!(
        ignored
            .as_ref()
            .is_some_and(|l| l["detail"].as_str().unwrap().starts_with("promote ignored: promoting step 1")),
        "{ignored:?}"
    );
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--yes", "--reason", "enough"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(90, 10));
    let last = audit(dir.path()).last().unwrap().clone();
    assert_eq!(last["action"], "rollout abort");
    assert_eq!(last["before"], serde_json::json!({"production": 75, "staging": 25}), "{last}");
    assert_eq!(last["after"], serde_json::json!({"production": 90, "staging": 10}), "{last}");
    sb.down().await;
}

/// Fault injection: AWS (moto) frozen for 30 s in the middle of a soak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_down_during_a_soak_pauses_without_advancing_and_a_restart_resumes_the_step() {
    let dir = tempfile::tempdir().unwrap();
    // A soak longer than the outage: only the gates' error limit can end it.
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"90s\""));
    let sb = fixed_sandbox(&rb, "me-central-1").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 0).await;
    let thaw = freeze(sb.moto_pid().expect("the sandbox started moto"));
    let frozen_at = Instant::now();
    // Each failed reading takes the SDK's 12 s operation timeout: three in a row take about a minute.
    let out = tokio::time::timeout(Duration::from_secs(150), child.wait_with_output()).await.expect("paused in time");
    let out = out.unwrap();
    let paused_after = frozen_at.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "paused for a person, never passed: {text}");
    assert!(text.contains("errors in a row, cannot judge"), "{text}");
    let why = text.lines().find(|l| l.contains("errors in a row")).unwrap_or("").trim().to_string();
    let state = rollout_state(dir.path()).unwrap();
    assert_eq!(state["engine"]["step"], 0, "never advanced: {state}");
    assert_eq!(state["engine"]["phase"]["phase"], "paused");
    // The outage goes on to 30 s; then AWS comes back.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(frozen_at.elapsed())).await;
    let outage = frozen_at.elapsed();
    drop(thaw);
    assert_eq!(weights(&sb).await, w(90, 10), "no weight moved while AWS was down");
    let lines = audit(dir.path());
    let pause = lines.last().unwrap();
    assert_eq!(pause["action"], "rollout pause", "{pause}");
    // Recovery: the restart resumes the same step with a fresh soak.
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 0).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path.to_str().unwrap(), "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(weights(&sb).await, w(100, 0));
    let intents = audit(dir.path()).iter().filter(|l| l["stage"] == "intent").count();
    assert_eq!(intents, 2, "step 1 once, the rollback once: nothing sent twice");
    // Every file cutover left is private to its user.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("cutover")).unwrap() {
        let entry = entry.unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&entry.metadata().unwrap().permissions());
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", entry.path().display());
        files.push(entry.file_name().to_string_lossy().into_owned());
    }
    files.sort();
    assert!(files.len() >= 3, "state, audit and lock at least: {files:?}");
    sb.down().await;
    record(
        "aws-down",
        format!(
            "A rollout soaking step 1 (90/10) with moto frozen (SIGSTOP) paused itself after {:.0} s (exit 3: \
             \"{why}\"), never advancing; after {:.0} s down the weights read back 90/10; once AWS answered, a \
             restart resumed step 1 with a fresh soak, and an abort returned 100/0: {intents} changes sent in all, \
             none twice",
            paused_after.as_secs_f64(),
            outage.as_secs_f64()
        ),
    );
    record(
        "file-modes",
        format!(
            "All {} files in the state directory after a rollout, a pause, a restart and an abort ({}) have no group \
             or other permission bits",
            files.len(),
            files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        ),
    );
}

/// What a kill at a crash point must leave: the live weights (prod, staging)
/// and what the state says is in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
enum InFlightLeft {
    Nothing,
    /// Written before the send: no change id.
    NoChangeId,
    /// Route53 accepted it and the state holds its id.
    ChangeId,
}

/// Every crash point of a weight change, in a forward step and in a rollback,
/// and the soak: what a kill there leaves. Step points die in step 2 of 2
/// (50% → 100%); rollback points in the rollback from 100% to step 1's 50%.
const CRASHES: &[(&str, (i64, i64), InFlightLeft)] = &[
    ("step:after-intent@2", (50, 50), InFlightLeft::Nothing),
    ("step:after-in-flight-write@2", (50, 50), InFlightLeft::NoChangeId),
    ("step:after-send@2", (0, 100), InFlightLeft::NoChangeId),
    ("step:after-applied-audit@2", (0, 100), InFlightLeft::NoChangeId),
    ("step:after-state-write@2", (0, 100), InFlightLeft::ChangeId),
    ("step:during-insync@2", (0, 100), InFlightLeft::ChangeId),
    ("step:after-insync-audit@2", (0, 100), InFlightLeft::ChangeId),
    ("soak@2", (50, 50), InFlightLeft::Nothing),
    ("rollback:after-intent", (0, 100), InFlightLeft::Nothing),
    ("rollback:after-in-flight-write", (0, 100), InFlightLeft::NoChangeId),
    ("rollback:after-send", (50, 50), InFlightLeft::NoChangeId),
    ("rollback:after-applied-audit", (50, 50), InFlightLeft::NoChangeId),
    ("rollback:after-state-write", (50, 50), InFlightLeft::ChangeId),
    ("rollback:during-insync", (50, 50), InFlightLeft::ChangeId),
    ("rollback:after-insync-audit", (50, 50), InFlightLeft::ChangeId),
];

/// Fault injection, made certain: `cutover rollout` dies (SIGKILL to itself,
/// through `CUTOVER_CRASH_AT`, read only by debug builds) at every boundary
/// between its writes, each in its own run, with Route53 changes PENDING for
/// 1.5 s so a kill lands inside an INSYNC wait. After each kill the state and
/// audit parse and say exactly what was in flight, and the live weights are
/// the ones that boundary implies. The next run (`rollout`, or `abort` for a
/// rollback) reconciles without `--adopt-live`: every change Route53 accepted
/// is confirmed INSYNC and audited before the rollout moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_at_every_crash_point_is_reconciled_by_the_next_run() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| {
        t.replace("steps = [10, 25, 50, 100]", "steps = [50, 100]").replace("soak = \"5s\"", "soak = \"3s\"")
    });
    assert_eq!(CRASHES.len(), cutover::crashpoint::POINTS.len(), "every crash point is exercised");
    for p in cutover::crashpoint::POINTS {
        assert!(CRASHES.iter().any(|(c, ..)| c.split('@').next() == Some(*p)), "{p} is exercised");
    }
    let sb = fixed_sandbox(&rb, "sa-east-1").await;
    // Route53 as AWS: a change is PENDING for a while before INSYNC.
    sb.faults.pending_ms.store(1_500, std::sync::atomic::Ordering::SeqCst);
    let p = path.to_str().unwrap();
    let mut sent_then_killed = 0;
    for (i, &(point, live_after, left)) in CRASHES.iter().enumerate() {
        set_weights_as_another_client(&sb, &rb, &[("prod", 100), ("staging", 0)]).await;
        let state = dir.path().join(format!("state-{i}"));
        let command = |args: &[&str], crash: Option<&str>| {
            let mut c = cutover_command(&sb, &rb, &state, args);
            if let Some(point) = crash {
                c.env("CUTOVER_CRASH_AT", point);
            }
            tokio::process::Command::from(c)
        };
        let rollback = point.starts_with("rollback:");
        let mut child = command(&["rollout", p, "--yes"], Some(point)).kill_on_drop(true).spawn().unwrap();
        if rollback {
            // At 100%, soaking the last step: ask for an abort, as `cutover abort` would.
            until_soaking(&state, 1).await;
            std::fs::write(state.join("cutover/demo.abort-request"), "crash test").unwrap();
        }
        let status = tokio::time::timeout(Duration::from_secs(90), child.wait()).await.expect("died in time").unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: the run must die at its crash point, not {status}");

        // What the kill left.
        let live = weights(&sb).await;
        assert_eq!(live, w(live_after.0, live_after.1), "{point}: live weights");
        let saved = rollout_state(&state).unwrap_or_else(|| panic!("{point}: state parses"));
        let in_flight = &saved["in_flight"];
        let found = match (in_flight.is_null(), in_flight["change"].is_null()) {
            (true, _) => InFlightLeft::Nothing,
            (false, true) => InFlightLeft::NoChangeId,
            (false, false) => InFlightLeft::ChangeId,
        };
        assert_eq!(found, left, "{point}: in flight {in_flight}");
        let log = cutover::store::audit::AuditLog::at(state.join("cutover/demo.audit.jsonl"));
        log.read().unwrap_or_else(|e| panic!("{point}: audit {e}"));
        // Route53 had accepted the change this point is about: its weights are live.
        if live == if rollback { w(50, 50) } else { w(0, 100) } {
            sent_then_killed += 1;
        }

        // The next run reconciles on its own: no --adopt-live.
        let args: &[&str] = if rollback { &["abort", p, "--yes"] } else { &["rollout", p, "--yes"] };
        let out = command(args, None).output().await.unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{point}: the next run completes: {text}");
        assert_eq!(weights(&sb).await, if rollback { w(50, 50) } else { w(0, 100) }, "{point}: {text}");
        let saved = rollout_state(&state).unwrap();
        assert!(saved["in_flight"].is_null(), "{point}: nothing left in flight: {saved}");

        // Every change Route53 accepted was confirmed INSYNC in the audit, once.
        let lines = audit(&state);
        for l in lines.iter().filter(|l| l["stage"] == "applied") {
            let change = l["detail"].as_str().unwrap().trim_start_matches("change ");
            let insync = lines
                .iter()
                .filter(|m| {
                    m["stage"] == "insync"
                        && m["detail"].as_str().unwrap().starts_with(&format!("change {change} INSYNC"))
                })
                .count();
            assert_eq!(insync, 1, "{point}: change {change} confirmed INSYNC once: {lines:#?}");
        }
        for step in ["rollout step 1/2 (50%)", "rollout step 2/2 (100%)"] {
            assert!(lines.iter().any(|l| l["action"] == step && l["stage"] == "insync"), "{point}: {step}: {lines:#?}");
        }
        // The step that took production's share is on record as taking it (a
        // box's stop waits on that line), also where the next run confirmed
        // a send whose id the kill lost: its lines keep what that send moved from.
        if !rollback {
            assert!(
                lines.iter().any(|l| l["action"] == "rollout step 2/2 (100%)"
                    && l["stage"] == "insync"
                    && l["before"]["production"] == 50
                    && l["after"]["production"] == 0),
                "{point}: {lines:#?}"
            );
        }
        if rollback {
            assert!(
                lines.iter().any(|l| l["action"] == "rollout abort" && l["stage"] == "insync"),
                "{point}: {lines:#?}"
            );
        }
    }
    sb.down().await;
    assert_eq!(sent_then_killed, 10, "kills that landed after Route53 accepted a change");
    record(
        "sigkill",
        format!(
            "A rollout killed (SIGKILL) at each of its {} crash points, each in its own run, with Route53 changes \
             PENDING for 1.5 s: {sent_then_killed} kills landed after Route53 had accepted a change. After every \
             kill the state named exactly what was in flight and the live weights were those the point implies; \
             the next run, without --adopt-live, confirmed every accepted change INSYNC once in the audit and \
             completed (to 0/100, or the rollback to 50/50)",
            CRASHES.len()
        ),
    );
}

/// Fault injection: a rollout whose every AWS call goes through a throttling
/// proxy. With every tenth call throttled it moves on as planned (the SDK's
/// retries absorb it); with every call throttled during a soak it pauses,
/// never advancing; when the throttling eases, a restart completes, and no
/// step was sent twice. (At every third call, three polls in a row sometimes
/// fail after the SDK's three attempts, and the rollout rightly pauses.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_during_a_rollout_never_advances_blind_and_a_restart_completes() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook_with(dir.path(), |t| t.replace("soak = \"5s\"", "soak = \"20s\""));
    let sb = fixed_sandbox(&rb, "ap-northeast-3").await;
    // The sandbox's own proxy throttles (a second one in front of it would
    // answer the alarms' history from a record of its own, which is empty):
    // every caller in the account is throttled alike, the sandbox's too.
    let counts = sb.faults.clone();
    // Every tenth call throttled once: a retry goes through, so the SDK
    // surely absorbs it (with retries throttled too, a call sometimes ran
    // out of attempts and the first step never soaked in time).
    counts.retries_pass.store(true, Ordering::SeqCst);
    counts.every.store(10, Ordering::SeqCst);
    let through_proxy = |args: &[&str]| tokio::process::Command::from(cutover_command(&sb, &rb, dir.path(), args));
    let p = path.to_str().unwrap();
    let child = through_proxy(&["rollout", p, "--yes"]).spawn().unwrap();
    until_soaking(dir.path(), 1).await;
    assert_eq!(weights(&sb).await, w(75, 25), "two steps taken with every tenth call throttled");
    let throttled_before = counts.throttled.load(Ordering::SeqCst);
    assert!(throttled_before > 0, "the proxy throttled the rollout's calls");

    // Now every call: the soak cannot be judged, so the rollout stops for a person.
    counts.retries_pass.store(false, Ordering::SeqCst);
    counts.every.store(1, Ordering::SeqCst);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.expect("paused in time");
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "paused, never passed: {text}");
    assert!(text.contains("errors in a row, cannot judge"), "{text}");
    let why = text.lines().find(|l| l.contains("errors in a row")).unwrap_or("").trim().to_string();
    assert!(why.contains("Throttling") || why.contains("Rate exceeded") || text.contains("Throttling"), "{text}");
    let state = rollout_state(dir.path()).unwrap();
    assert_eq!(state["engine"]["step"], 1, "never advanced: {state}");

    // Throttling eases to every tenth call: a restart resumes step 2 and completes.
    counts.every.store(10, Ordering::SeqCst);
    counts.retries_pass.store(true, Ordering::SeqCst);
    assert_eq!(weights(&sb).await, w(75, 25), "no weight moved while throttled");
    let out = through_proxy(&["rollout", p, "--yes"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(weights(&sb).await, w(0, 100));
    let lines = audit(dir.path());
    for step in ["1/4 (10%)", "2/4 (25%)", "3/4 (50%)", "4/4 (100%)"] {
        let action = format!("rollout step {step}");
        let intents = lines.iter().filter(|l| l["action"] == action.as_str() && l["stage"] == "intent").count();
        assert_eq!(intents, 1, "{action} sent once: {lines:?}");
        assert!(lines.iter().any(|l| l["action"] == action.as_str() && l["stage"] == "insync"), "{action}");
    }
    let (seen, throttled) = (counts.seen.load(Ordering::SeqCst), counts.throttled.load(Ordering::SeqCst));
    sb.down().await;
    record(
        "throttling",
        format!(
            "A rollout through the proxy with every tenth call throttled took its steps as planned; with every \
             call throttled during step 2's soak it paused (exit 3: \"{}\"), weights held at 75/25; eased back to \
             every tenth call, a restart completed to 0/100 with each of the 4 steps sent once and INSYNC \
             ({throttled} of {seen} calls through the proxy throttled, the sandbox's own included)",
            why
        ),
    );
}

/// A step that would raise staging's share while none of its targets is in
/// service (both instances stopped) pauses the rollout before it is sent:
/// nothing sent, the pause audited with the reason, exit 3. With the
/// instances started again, the same command resumes the step and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_onto_a_side_with_no_target_in_service_pauses_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "ap-southeast-7").await;
    let p = path.to_str().unwrap();
    let staging: Vec<String> =
        sb.world.instances.iter().filter(|i| i.name.starts_with("staging-")).map(|i| i.id.clone()).collect();
    sb.clients.ec2.stop_instances().set_instance_ids(Some(staging.clone())).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would pause before sending step 1: refused: raising staging's weight from 0 to 10"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains(
            "rollout step 1/4 (10%): not sent: refused: raising staging's weight from 0 to 10 would send that traffic to target group demo-staging-web, which has no target in service (i-"
        ),
        "{out}"
    );
    assert_eq!(weights(&sb).await, w(100, 0), "nothing sent");
    let lines: Vec<String> = audit(dir.path())
        .iter()
        .map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, ["rollout pause [paused]"]);
    assert_eq!(rollout_state(dir.path()).unwrap()["engine"]["phase"]["phase"], "paused");

    sb.clients.ec2.start_instances().set_instance_ids(Some(staging)).send().await.unwrap();
    for i in sb.world.instances.iter().filter(|i| i.name.starts_with("staging-")) {
        eventually(Duration::from_secs(20), &format!("{} to answer /health", i.name), || async {
            reqwest::get(&i.health_url).await.ok()?.status().is_success().then_some(())
        })
        .await;
    }
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(0, 100));
    sb.down().await;
}

/// A rollback onto a side with nothing in service would send the share it
/// raises to 503s, worse than the failing step it undoes: not sent, said,
/// audited as refused, and sent by `cutover abort` once that side serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_onto_a_side_with_no_target_in_service_is_not_sent_until_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "us-east-2").await;
    let p = path.to_str().unwrap();
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    let production: Vec<String> =
        sb.world.instances.iter().filter(|i| i.name.starts_with("prod-")).map(|i| i.id.clone()).collect();
    assert!(!production.is_empty(), "the demo has production instances");
    sb.clients.ec2.stop_instances().set_instance_ids(Some(production.clone())).send().await.unwrap();
    staging_5xx_alarm_fires(&sb, "test: 5xx above threshold").await;
    let out = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "a refusal, not 'rolled back': {text}");
    assert!(
        text.contains(
            "rollback to 90/10 NOT sent: raising production's weight from 75 to 90 would send that traffic to target \
             group demo-prod-web, which has no target in service (i-"
        ),
        "{text}"
    );
    assert!(
        text.contains("The weights stay 75/25; once production can serve again, `cutover abort` sends it"),
        "{text}"
    );
    assert_eq!(weights(&sb).await, w(75, 25), "nothing sent");
    let refused: Vec<_> =
        audit(dir.path()).into_iter().filter(|l| l["action"] == "rollout abort" && l["stage"] == "refused").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(rollout_state(dir.path()).unwrap()["engine"]["phase"]["phase"], "aborted", "the decision is kept");

    // The preview says the same; once production serves, the abort sends it.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("would refuse: raising production's weight from 75 to 90"), "{out}");
    sb.clients.ec2.start_instances().set_instance_ids(Some(production)).send().await.unwrap();
    for i in sb.world.instances.iter().filter(|i| i.name.starts_with("prod-")) {
        eventually(Duration::from_secs(20), &format!("{} to answer /health", i.name), || async {
            reqwest::get(&i.health_url).await.ok()?.status().is_success().then_some(())
        })
        .await;
    }
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(90, 10), "back to step 1 once production serves");
    sb.down().await;
}
