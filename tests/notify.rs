//! Webhook notifications (`[notify]`): the sandbox's receiver, which answers
//! as a Slack incoming webhook does, hears of a shift, an abort and each step
//! of a rollout; a webhook that never answers does not hold up an abort.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cutover::runbook::Runbook;

/// The demo runbook (whose `[notify]` the sandbox points at its receiver)
/// with a 5 s soak, 1 s gates and a 1 s TTL.
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

/// The index of the first post containing every one of `parts`.
fn position(texts: &[String], parts: &[&str]) -> usize {
    texts
        .iter()
        .position(|t| parts.iter().all(|p| t.contains(p)))
        .unwrap_or_else(|| panic!("no post with {parts:?} in:\n{}", texts.join("\n")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_hears_of_a_shift_an_abort_and_every_step_of_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let p = path.to_str().unwrap();
    let sb = fixed_sandbox(&rb, "eu-west-3").await;
    assert!(sb.env_vars(&rb).contains(&("DEMO_WEBHOOK_URL".to_string(), sb.webhook.url.clone())));

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "10", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    // Posted before the command exits: nothing is waited for by hand here.
    let texts = sb.webhook.texts();
    let shift = position(&texts, &["cutover demo: shift_weights to 10% applied by on-call", "staging 10"]);

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", p, "--yes", "--reason", "checking p99"]).await;
    assert_eq!(code, Some(0), "{out}");
    let texts = sb.webhook.texts();
    let abort = position(&texts, &["cutover demo: rollout abort done by on-call", "checking p99"]);
    assert!(shift < abort, "{texts:?}");

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let texts = sb.webhook.texts();
    let started = position(&texts, &["rollout started by on-call: production → staging in steps 10%, 25%, 50%, 100%"]);
    assert!(abort < started, "{texts:?}");
    let mut last = started;
    for (i, percent) in [10, 25, 50, 100].iter().enumerate() {
        let step = format!("rollout step {}/4 ({percent}%)", i + 1);
        let applied = position(&texts, &[&step, "applied by on-call"]);
        let reached = position(&texts, &[&step, "reached (INSYNC)"]);
        assert!(last < applied && applied < reached, "step {} out of order: {texts:?}", i + 1);
        // Its intent is audited but not posted: one post per change applied, one when reached.
        let about_step = texts.iter().filter(|t| t.contains(&format!("{step} "))).count();
        assert_eq!(about_step, 2, "posts about {step}: {texts:?}");
        last = reached;
    }
    let completed = position(&texts, &["cutover demo: rollout completed: 100% of the traffic on staging"]);
    assert!(last < completed, "{texts:?}");
    eprintln!("posts:\n{}", texts.join("\n"));
    sb.down().await;
}

/// A webhook that accepts connections and never answers.
fn hanging_webhook() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, accepted)
}

/// Runs `cutover abort` (with `webhook` as CUTOVER_WEBHOOK_URL when given) and
/// returns how long it took until its `done` audit line was on disk, and to exit.
async fn timed_abort(
    sb: &cutover::sandbox::Sandbox,
    rb: &Runbook,
    state: &Path,
    path: &str,
    webhook: Option<&str>,
) -> (Duration, Duration) {
    let audit = state.join("cutover/demo.audit.jsonl");
    let done_lines = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"rollout abort\"") && l.contains("\"done\""))
            .count()
    };
    let before = done_lines();
    let mut command = cutover_command(sb, rb, state, &["abort", path, "--yes"]);
    if let Some(url) = webhook {
        command.env(cutover::notify::URL_OVERRIDE, url);
    }
    let start = Instant::now();
    let child = tokio::process::Command::from(command).spawn().unwrap();
    let mut done_after = None;
    let wait = tokio::spawn(child.wait_with_output());
    while !wait.is_finished() {
        if done_after.is_none() && done_lines() > before {
            done_after = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exited = start.elapsed();
    let out = wait.await.unwrap().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (done_after.unwrap_or(exited), exited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_does_not_hold_up_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "eu-north-1").await;
    let (url, accepted) = hanging_webhook();

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "10", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (baseline_done, baseline_exit) = timed_abort(&sb, &rb, dir.path(), p, None).await;

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "10", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (done, exited) = timed_abort(&sb, &rb, dir.path(), p, Some(&url)).await;
    eprintln!(
        "abort: rolled back after {baseline_done:?} and exited after {baseline_exit:?} with the receiver; {done:?} and {exited:?} with a hanging webhook"
    );
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the abort never tried the webhook");
    // Each attempt may wait 5 s and there are 3: a change waiting for even one
    // would show. The rollback lands as fast as with a webhook that answers.
    assert!(
        done < baseline_done + Duration::from_millis(1500),
        "rolled back after {done:?} with a hanging webhook, {baseline_done:?} without"
    );
    // At exit, queued posts get at most 2 s.
    assert!(
        exited < done + Duration::from_millis(3500),
        "exited {exited:?} after starting, {done:?} after the rollback (baseline exit {baseline_exit:?})"
    );
    // The posts it gave up on at exit are said, never dropped silently.
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("notifications not delivered at exit"), "{log}");
    let weights =
        sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    let staging = weights.resource_record_sets().iter().find(|r| r.set_identifier() == Some("staging")).unwrap();
    assert_eq!(staging.weight(), Some(0), "rolled back to the initial weights");
    sb.down().await;
}

/// The webhook URL is a secret (a Slack URL carries its token): a webhook
/// that cannot be reached is logged without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_is_logged_without_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "eu-south-2").await;
    // A port nothing listens on: each attempt is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/T000/B000/s3cr3t-token", closed.local_addr().unwrap());
    drop(closed);
    let mut command = cutover_command(&sb, &rb, dir.path(), &["shift", p, "--to", "10", "--yes"]);
    command.env(cutover::notify::URL_OVERRIDE, &url);
    let out = tokio::process::Command::from(command).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("webhook unreachable"), "the failure is logged: {log}");
    let shown = format!("{log}{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!shown.contains("s3cr3t-token"), "the webhook's URL leaked: {shown}");
    sb.down().await;
}

/// A webhook URL that is not one (the scheme left off when pasted) posted
/// nothing, said only in the log, while the team waited for posts: the
/// command now stops before doing anything, naming the variable, not the
/// URL (a secret).
#[test]
fn a_webhook_url_that_is_not_one_stops_the_command_before_it_changes_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_STATE_HOME", dir.path())
        .env("CUTOVER_OPERATOR", "ana")
        .env("CUTOVER_WEBHOOK_URL", "hooks.slack.com/services/T0/B0/s3cr3t-token")
        .args(["--log-file", &dir.path().join("log").display().to_string()])
        .args(["tick", "runbooks/demo.toml", "prepare/backup"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("$CUTOVER_WEBHOOK_URL is set but is not an http(s) URL"), "{err}");
    assert!(!err.contains("s3cr3t-token"), "the URL is a secret: {err}");
    assert!(!dir.path().join("cutover/demo.progress.json").exists(), "nothing ticked");
}
