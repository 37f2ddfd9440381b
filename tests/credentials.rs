//! Credentials that expire while a rollout runs, for real: the sandbox's
//! proxy hands out keys of an assumed role that it refuses with AWS's
//! `ExpiredToken` after N seconds (moto never expires a session).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use cutover::runbook::Runbook;
use cutover::sandbox::Sandbox;

/// The demo runbook with 1 s gates, a 1 s TTL and the given soak.
fn demo_with_soak(dir: &Path, soak: &str) -> (Runbook, PathBuf) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let text = text
        .replace("soak = \"30s\"", &format!("soak = \"{soak}\""))
        .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
        .replace("ttl = 10\n", "ttl = 1\n");
    let path = dir.join("demo-soak.toml");
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

fn audit(state: &Path) -> Vec<serde_json::Value> {
    common::tmux::audit_lines(state, "demo")
}

/// Keys from the sandbox lasting `seconds`, as `cutover sandbox credentials` prints them.
async fn short_keys(sb: &Sandbox, dir: &Path, seconds: u64) -> serde_json::Value {
    let (code, out, err) =
        run_cutover(sb, &runbook("demo.toml"), dir, &["sandbox", "credentials", "--seconds", &seconds.to_string()])
            .await;
    assert_eq!(code, Some(0), "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `cutover` on keys in the environment: `keys` instead of the sandbox's own.
fn on_keys(sb: &Sandbox, rb: &Runbook, dir: &Path, keys: &serde_json::Value, args: &[&str]) -> std::process::Command {
    let mut c = cutover_command(sb, rb, dir, args);
    c.env("AWS_ACCESS_KEY_ID", keys["AccessKeyId"].as_str().unwrap())
        .env("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"].as_str().unwrap())
        .env("AWS_SESSION_TOKEN", keys["SessionToken"].as_str().unwrap());
    c
}

async fn output(c: std::process::Command) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::from(c).output().await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_on_60_second_credentials_from_a_credential_process_refreshes_them_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    // Four steps of a 20 s soak: well over the credentials' 60 s.
    let (rb, path) = demo_with_soak(dir.path(), "20s");
    let sb = fixed_sandbox(&rb, "us-east-1").await;
    let config = dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile short]\ncredential_process = {} sandbox credentials --seconds 60\n",
            env!("CARGO_BIN_EXE_cutover")
        ),
    )
    .unwrap();
    let mut c =
        cutover_command(&sb, &rb, dir.path(), &["--profile", "short", "rollout", path.to_str().unwrap(), "--yes"]);
    // The sandbox's own keys stay in the environment: the profile named wins.
    c.env("AWS_CONFIG_FILE", &config).env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("no-credentials"));
    let started = std::time::Instant::now();
    let (code, out, err) = output(c).await;
    let took = started.elapsed();
    println!("{out}{err}");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rollout complete: staging has 100%"), "{out}");
    assert_eq!(weights(&sb).await, w(0, 100));
    assert!(took > Duration::from_secs(60), "the rollout outlasted its first credentials: {took:?}");
    let issued = sb.faults.credentials_issued.load(Ordering::SeqCst);
    assert!(issued >= 2, "refreshed quietly: {issued} sets of credentials issued in {took:?}");
    assert_eq!(sb.faults.expired_refused.load(Ordering::SeqCst), 0, "no request went out on expired keys");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_the_environment_that_expire_before_the_rollout_could_end_are_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo_with_soak(dir.path(), "30s");
    let sb = sandbox(&rb, "us-east-1").await;
    let keys = short_keys(&sb, dir.path(), 90).await;
    let expires = keys["Expiration"].as_str().unwrap().to_string();
    let path = path.to_str().unwrap();

    // status shows when they expire.
    let mut c = on_keys(&sb, &rb, dir.path(), &keys, &["status", path, "--json"]);
    c.env("AWS_CREDENTIAL_EXPIRATION", &expires);
    let (code, json, err) = output(c).await;
    assert_ne!(code, Some(2), "{json}{err}");
    let j: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}{err}"));
    assert_eq!(j["identity"]["value"]["expires_at"], expires.as_str(), "{}", j["identity"]);

    // 4 steps × (INSYNC 30 s + TTL 1 s + soak 30 s + alarm lag 3 s) = 4m16s, more than 90 s.
    let mut c = on_keys(&sb, &rb, dir.path(), &keys, &["rollout", path, "--yes"]);
    c.env("AWS_CREDENTIAL_EXPIRATION", &expires);
    let (code, out, err) = output(c).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("refused: the rollout takes at least 4m16s (4 steps × (INSYNC ~30s + TTL 1 s + soak 30s + the alarms' lag 3s))")
            && err.contains("cannot be refreshed; use refreshable credentials")
            && err.contains(&format!("({expires})")),
        "{err}"
    );
    assert_eq!(weights(&sb).await, w(100, 0), "nothing was changed");
    // Refused, and audited as every start refused is.
    let lines = audit(dir.path());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((&lines[0]["action"], &lines[0]["stage"]), (&"rollout start".into(), &"refused".into()), "{lines:?}");
    assert!(lines[0]["detail"].as_str().unwrap().contains("cannot be refreshed"), "{lines:?}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_expire_mid_soak_pause_the_rollout_and_abort_with_fresh_ones_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = demo_with_soak(dir.path(), "2m");
    let sb = fixed_sandbox(&rb, "us-east-1").await;
    let path = path.to_str().unwrap();
    // 25 s keys whose expiry cutover is not told: they expire anyway.
    let keys = short_keys(&sb, dir.path(), 25).await;
    let (code, out, err) = output(on_keys(&sb, &rb, dir.path(), &keys, &["rollout", path, "--yes"])).await;
    println!("{out}{err}");
    assert_eq!(code, Some(3), "paused for a person: {out}{err}");
    assert!(out.contains("rollout PAUSED for a person: the credentials of [dns], [environments.production], [environments.staging] expired (GetCallerIdentity: ExpiredToken"), "{out}");
    assert!(!out.contains("cannot reach AWS") && !out.contains("ABORTED"), "{out}");
    assert!(sb.faults.expired_refused.load(Ordering::SeqCst) > 0, "AWS refused the expired keys");
    assert_eq!(weights(&sb).await, w(90, 10), "paused in step 1, nothing rolled back blindly");
    let pause = audit(dir.path()).into_iter().last().unwrap();
    assert_eq!((pause["action"].as_str(), pause["stage"].as_str()), (Some("rollout pause"), Some("paused")), "{pause}");
    assert!(pause["detail"].as_str().unwrap().contains("expired"), "{pause}");

    // Fresh credentials (the sandbox's own): abort rolls back.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["abort", path, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0));
    sb.down().await;
}
