//! Decommissioning against the sandbox: time-gated items (`not_before`),
//! refused early from the command line and the cockpit, allowed after the
//! wait. Effects are read back through the AWS SDK.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cutover::runbook::Runbook;
use cutover::sandbox::Sandbox;

/// staging-to-production with its checklist replaced by `phases`, written
/// to `dir`: the runbook and its path.
fn runbook_with_phases(dir: &Path, phases: &str) -> (Runbook, PathBuf) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/staging-to-production.toml"))
            .unwrap();
    let (head, rest) = text.split_once("\n[[phases]]").unwrap();
    let sandbox = &rest[rest.find("\n[sandbox]").unwrap()..];
    let path = dir.join("decom.toml");
    std::fs::write(&path, format!("{head}\n{phases}\n{sandbox}")).unwrap();
    (cutover::runbook::load(&path).unwrap_or_else(|e| panic!("{e}")), path)
}

/// The states of an environment's sandbox instances, by name.
async fn states(sb: &Sandbox, env: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in sb.world.instances.iter().filter(|i| i.environment == env) {
        let r = sb.clients.ec2.describe_instances().instance_ids(&i.id).send().await.unwrap();
        let state = r.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string();
        out.push((i.name.clone(), state));
    }
    out
}

async fn all_in(sb: &Sandbox, env: &str, state: &str) -> bool {
    states(sb, env).await.iter().all(|(_, s)| s == state)
}

const GATED: &str = r#"
[[phases]]
id = "decommission"
title = "Decommission old production"

[[phases.items]]
id = "stop-old"
title = "Stop the old production instances"
kind = "action"
action = "stop_instances"
environment = "production"
rollback = { action = "start_instances", environment = "production" }

[[phases.items]]
id = "start-again"
title = "Start old production again once the window has passed"
kind = "action"
action = "start_instances"
environment = "production"
not_before = { after = "decommission/stop-old", wait = "WAIT" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_time_gate_refuses_early_counts_down_in_the_cockpit_and_opens_after_the_wait() {
    use common::tmux::{Tmux, audit_lines, cockpit_script};
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), &GATED.replace("WAIT", "40s"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ap-south-2").await;
    let gated = "decommission/start-again";

    // Before stop-old has run at all: refused, nothing planned or sent.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, gated, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("may not run before 40s after decommission/stop-old finished, and it has not"), "{out}");
    let audit = audit_lines(dir.path(), &rb.name);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(
        (audit[0]["stage"].as_str(), audit[0]["action"].as_str()),
        (Some("refused"), Some("start_instances production (decommission/start-again)"))
    );

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(30), "old production stopped", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    let stopped_at = Instant::now();

    // Inside the window: refused with the time left and when it opens.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, gated, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("refused: decommission/start-again may not run before 40s after decommission/stop-old finished ("),
        "{out}"
    );
    assert!(out.contains("s left, it opens at 20"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(all_in(&sb, "production", "stopped").await, "nothing started");

    // The cockpit counts down on the item, and Enter on it is refused.
    let marker = dir.path().join("exited");
    let script = cockpit_script(&sb, &rb, dir.path(), &["tui", p], &marker);
    let tmux = Tmux { socket: format!("cutover-decom-{}", std::process::id()) };
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "200", "-y", "50", &format!("sh {}", script.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Rows: 0 the phase, 1 stop-old, 2 start-again.
    tmux.keys(&["5", "j", "j"]);
    let screen = tmux.wait_for("the countdown", Duration::from_secs(30), |s| {
        s.contains("⧗ ") && s.contains("not before 40s after decommission/stop-old:")
    });
    let countdown = |s: &str| -> u64 {
        let after = &s[s.find("⧗ ").unwrap() + "⧗ ".len()..];
        let text: String = after.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        cutover::runbook::duration::parse_duration(&text).unwrap_or_else(|e| panic!("{e}: {s}")).as_secs()
    };
    let left = countdown(&screen);
    assert!(left > 0 && left <= 40, "{left}: {screen}");
    // It counts down.
    tmux.wait_for("the countdown to move", Duration::from_secs(10), |s| s.contains("⧗ ") && countdown(s) < left);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the refusal", Duration::from_secs(10), |s| {
        s.contains("refused: decommission/start-again may not run before 40s")
    });
    assert!(!tmux.screen().contains("confirm a change"), "no popup opened");
    tmux.keys(&["q"]);

    // Once the window has passed, it runs; the instances come back.
    let wait = Duration::from_secs(41).saturating_sub(stopped_at.elapsed());
    tokio::time::sleep(wait).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, gated, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(30), "old production running", || async {
        all_in(&sb, "production", "running").await.then_some(())
    })
    .await;
    let stages: Vec<(String, String)> = audit_lines(dir.path(), &rb.name)
        .iter()
        .map(|l| (l["action"].as_str().unwrap().to_string(), l["stage"].as_str().unwrap().to_string()))
        .collect();
    let gated_stages: Vec<&str> =
        stages.iter().filter(|(a, _)| a.ends_with(&format!("({gated})"))).map(|(_, s)| s.as_str()).collect();
    assert_eq!(gated_stages, ["refused", "refused", "intent", "applied"], "{stages:#?}");
    sb.down().await;
}
