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
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let text = text
        .replace("soak = \"30s\"", "soak = \"5s\"")
        .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
        .replace("ttl = 10\n", "ttl = 1\n");
    let path = dir.join("fast.toml");
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

async fn weights(sb: &Sandbox) -> BTreeMap<String, i64> {
    let sets = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    sets.resource_record_sets().iter().filter_map(|r| Some((r.set_identifier()?.to_string(), r.weight()?))).collect()
}

fn w(prod: i64, staging: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([("prod".to_string(), prod), ("staging".to_string(), staging)])
}

/// `cutover rollout --yes` in the background.
fn spawn_rollout(sb: &Sandbox, rb: &Runbook, state: &Path, path: &Path) -> tokio::process::Child {
    tokio::process::Command::from(cutover_command(sb, rb, state, &["rollout", path.to_str().unwrap(), "--yes"]))
        .spawn()
        .unwrap()
}

fn audit(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("cutover/demo.audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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

async fn fixed_sandbox(rb: &Runbook, region: &str) -> Sandbox {
    let sb = sandbox(rb, region).await;
    // The Redis gate needs every staging instance to reach Redis: apply the fix first.
    sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
    // As an operator would: wait until the fixed instance really reaches Redis.
    let url = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap().health_url.clone();
    eventually(Duration::from_secs(15), "staging-web-2 to reach Redis", || async {
        reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    sb
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
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_during_a_soak_rolls_back_to_the_last_good_step_and_the_audit_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let sb = fixed_sandbox(&rb, "us-west-2").await;
    let child = spawn_rollout(&sb, &rb, dir.path(), &path);
    until_soaking(dir.path(), 1).await;
    sb.clients
        .cloudwatch
        .set_alarm_state()
        .alarm_name("demo-staging-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test: 5xx above threshold")
        .send()
        .await
        .unwrap();
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
    assert!(audit(dir.path()).is_empty());
    sb.down().await;
}
