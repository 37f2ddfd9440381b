//! Team mode against the sandbox: two "machines" (two state folders, two
//! operators, two host names) sharing one S3 bucket in moto. What is shared
//! is read back with the S3 SDK; weights with the Route53 SDK.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use cutover::runbook::Runbook;
use cutover::sandbox::Sandbox;

/// A process-unique bucket: moto's buckets are global to its server.
fn bucket(test: &str) -> String {
    format!("team-{test}-{}", std::process::id())
}

/// The demo runbook with short waits, in team mode on `bucket`, with a 6 s
/// lease, and `extra` appended (phases, say).
fn team_runbook(dir: &Path, bucket: &str, extra: &str) -> (Runbook, PathBuf) {
    team_runbook_edited(dir, bucket, extra, |t| t)
}

/// As `team_runbook`, its text then edited by `edit` (a longer lease or soak).
fn team_runbook_edited(dir: &Path, bucket: &str, extra: &str, edit: impl Fn(String) -> String) -> (Runbook, PathBuf) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let text = text
        .replace("soak = \"30s\"", "soak = \"5s\"")
        .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
        .replace("ttl = 10\n", "ttl = 1\n")
        .replace(
            "[notify]",
            &format!("{extra}\n[team]\nstate = \"s3://{bucket}/cutover\"\nlease = \"6s\"\n\n[notify]"),
        );
    let text = edit(text);
    let path = dir.join("team.toml");
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

/// One machine: its own state folder, operator and host name.
struct Machine {
    state: tempfile::TempDir,
    operator: &'static str,
    host: &'static str,
}

impl Machine {
    fn new(operator: &'static str, host: &'static str) -> Machine {
        Machine { state: tempfile::tempdir().unwrap(), operator, host }
    }

    fn command(&self, sb: &Sandbox, rb: &Runbook, args: &[&str]) -> std::process::Command {
        let mut c = cutover_command(sb, rb, self.state.path(), args);
        c.env("CUTOVER_OPERATOR", self.operator).env("CUTOVER_HOST", self.host);
        c
    }

    async fn run(&self, sb: &Sandbox, rb: &Runbook, args: &[&str]) -> (Option<i32>, String) {
        let out = tokio::process::Command::from(self.command(sb, rb, args)).output().await.unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    fn spawn(&self, sb: &Sandbox, rb: &Runbook, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::from(self.command(sb, rb, args)).kill_on_drop(true).spawn().unwrap()
    }
}

async fn s3(sb: &Sandbox) -> aws_sdk::s3::Client {
    let config = cutover::aws::sandbox_config(&sb.endpoint, &sb.region).await;
    aws_sdk::s3::Client::from_conf(aws_sdk::s3::config::Builder::from(&config).force_path_style(true).build())
}

/// Every object in the bucket: key → body.
async fn objects(sb: &Sandbox, bucket: &str) -> std::collections::BTreeMap<String, String> {
    let s3 = s3(sb).await;
    let mut out = std::collections::BTreeMap::new();
    let list = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    for o in list.contents() {
        let key = o.key().unwrap().to_string();
        let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
        out.insert(key, String::from_utf8_lossy(&body.into_bytes()).into_owned());
    }
    out
}

/// The team's audit, in key (time) order, as JSON.
async fn team_audit(sb: &Sandbox, bucket: &str) -> Vec<serde_json::Value> {
    objects(sb, bucket)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with("cutover/demo/audit/"))
        .map(|(_, v)| serde_json::from_str(&v).unwrap())
        .collect()
}

async fn shared_state(sb: &Sandbox, bucket: &str) -> Option<serde_json::Value> {
    let s3 = s3(sb).await;
    let o = s3.get_object().bucket(bucket).key("cutover/demo/rollout.json").send().await.ok()?;
    serde_json::from_slice(&o.body.collect().await.ok()?.into_bytes()).ok()
}

async fn until_soaking(sb: &Sandbox, bucket: &str, step: u64) {
    eventually(Duration::from_secs(120), &format!("the shared state soaking step {step}"), || async {
        let s = shared_state(sb, bucket).await?;
        (s["engine"]["step"] == step && s["engine"]["phase"]["phase"] == "soaking").then_some(())
    })
    .await;
}

fn steps_applied(audit: &[serde_json::Value]) -> Vec<String> {
    audit
        .iter()
        .filter(|l| l["stage"] == "applied" && l["action"].as_str().unwrap().starts_with("rollout step"))
        .map(|l| l["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_machines_rollout_is_refused_naming_the_holder_and_its_abort_rolls_the_first_back() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("abort");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = fixed_sandbox(&rb, "us-west-1").await;
    let (a, b) = (Machine::new("ana", "laptop-a"), Machine::new("bob", "laptop-b"));
    let p = path.to_str().unwrap();
    let rollout = a.spawn(&sb, &rb, &["rollout", p, "--yes"]);
    until_soaking(&sb, &bucket, 1).await;

    let (code, out) = b.run(&sb, &rb, &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("lease is held by ana@laptop-a"), "names the holder: {out}");
    assert!(out.contains("for rollout, until"), "and when it expires: {out}");
    // A shift under the rollout's feet: refused, and the attempt is on the timeline.
    let (code, out) = b.run(&sb, &rb, &["shift", p, "--to", "50", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("is running or holds the lease"), "{out}");
    let audit = team_audit(&sb, &bucket).await;
    let refused = audit.iter().find(|l| l["action"] == "shift_weights to 50%").expect("the refused shift audited");
    assert_eq!((&refused["stage"], &refused["operator"]), (&serde_json::json!("refused"), &serde_json::json!("bob")));

    let (code, out) = b.run(&sb, &rb, &["abort", p, "--yes", "--reason", "bob saw 5xx"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("asked it to abort"), "{out}");
    assert!(out.contains("the running rollout rolled back to 90/10"), "{out}");
    println!("B's abort, until A's rollback was INSYNC: {}", out.lines().last().unwrap_or(""));
    let ended = rollout.wait_with_output().await.unwrap();
    assert_eq!(ended.status.code(), Some(1), "A's rollout ends aborted");
    assert_eq!(weights(&sb).await, w(90, 10), "back to step 1, read with the SDK");
    let audit = team_audit(&sb, &bucket).await;
    let abort = audit.iter().rev().find(|l| l["action"] == "rollout abort").expect("the abort audited");
    assert_eq!(abort["operator"], "ana", "A's process rolled back: {abort}");
    assert!(abort["detail"].as_str().unwrap().contains("bob saw 5xx"), "{abort}");
    assert!(!std::fs::exists(a.state.path().join("cutover/demo.rollout.json")).unwrap(), "nothing local");

    // Nothing secret is written to the bucket.
    let secrets = [sb.redis_urls.values().cloned().collect::<Vec<_>>(), vec![sb.webhook.url.clone()]].concat();
    for (key, body) in objects(&sb, &bucket).await {
        for s in &secrets {
            assert!(!body.contains(s.as_str()), "{key} holds a secret ({s}):\n{body}");
        }
        assert!(!body.contains("redis://"), "{key}:\n{body}");
    }
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_holder_is_taken_over_after_expiry_at_the_same_step_and_fenced_off_when_it_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("takeover");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = fixed_sandbox(&rb, "eu-west-3").await;
    let (a, b) = (Machine::new("ana", "laptop-a"), Machine::new("bob", "laptop-b"));
    let p = path.to_str().unwrap();
    let rollout_a = a.spawn(&sb, &rb, &["rollout", p, "--yes"]);
    until_soaking(&sb, &bucket, 1).await;
    let pid = rollout_a.id().unwrap() as i32;
    // The laptop lid closes: A stops, its lease stops being renewed.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();

    let (code, out) = b.run(&sb, &rb, &["rollout", p, "--yes", "--take-over"]).await;
    assert_eq!(code, Some(2), "a live lease is never taken: {out}");
    assert!(out.contains("ana@laptop-a"), "{out}");
    let left = Duration::from_secs(8).saturating_sub(stopped.elapsed());
    tokio::time::sleep(left).await;
    let (code, out) = b.run(&sb, &rb, &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "an expired lease needs --take-over: {out}");
    assert!(out.contains("--take-over"), "{out}");

    let rollout_b = b.spawn(&sb, &rb, &["rollout", p, "--yes", "--take-over"]);
    eventually(Duration::from_secs(30), "B's lease", || async {
        let o = objects(&sb, &bucket).await;
        o.get("cutover/demo/lease.json").filter(|l| l.contains("laptop-b")).map(|_| ())
    })
    .await;
    // A wakes: it finds its lease gone and stops without sending anything.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let ended_a = rollout_a.wait_with_output().await.unwrap();
    let text_a = String::from_utf8_lossy(&ended_a.stderr).into_owned();
    assert_ne!(ended_a.status.code(), Some(0), "{text_a}");
    assert!(text_a.contains("lost the runbook's lease") || text_a.contains("changed under this process"), "{text_a}");
    // A restarted later is refused, naming B.
    let (code, out) = a.run(&sb, &rb, &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("bob@laptop-b"), "{out}");

    let ended_b = rollout_b.wait_with_output().await.unwrap();
    let text_b = String::from_utf8_lossy(&ended_b.stdout).into_owned();
    assert_eq!(ended_b.status.code(), Some(0), "{text_b}");
    assert!(text_b.contains("resuming step 2 of 4"), "B resumed at A's step: {text_b}");
    assert_eq!(weights(&sb).await, w(0, 100));
    let audit = team_audit(&sb, &bucket).await;
    let applied = steps_applied(&audit);
    assert_eq!(
        applied,
        ["rollout step 1/4 (10%)", "rollout step 2/4 (25%)", "rollout step 3/4 (50%)", "rollout step 4/4 (100%)"],
        "each step sent once, across both machines"
    );
    let by: Vec<&str> =
        audit.iter().filter(|l| l["stage"] == "applied").map(|l| l["operator"].as_str().unwrap()).collect();
    assert_eq!(by, ["ana", "ana", "bob", "bob"]);
    sb.down().await;
}

/// A holder frozen between writing its intent and sending it, whose lease
/// an abort then took: the abort left the weights as that holder had read
/// them, so Route53's DELETE match would let its stale step through. It is
/// fenced again right before the send and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_frozen_just_before_its_send_sends_nothing_after_an_abort_took_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("frozen");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = fixed_sandbox(&rb, "eu-central-1").await;
    let (a, b) = (Machine::new("ana", "laptop-a"), Machine::new("bob", "laptop-b"));
    let p = path.to_str().unwrap();
    let mut command = a.command(&sb, &rb, &["rollout", p, "--yes"]);
    command.env("CUTOVER_STOP_AT", "step:after-in-flight-write");
    let rollout_a = tokio::process::Command::from(command).kill_on_drop(true).spawn().unwrap();
    let pid = rollout_a.id().unwrap();
    eventually(Duration::from_secs(60), "A stopped before sending step 1", || async {
        process_stopped(pid).then_some(())
    })
    .await;
    assert_eq!(weights(&sb).await, w(100, 0), "step 1 not sent yet");
    // A's lease runs out unrenewed; bob's abort takes it and rolls back to
    // 100/0, the weights A read.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (code, out) = b.run(&sb, &rb, &["abort", p, "--yes", "--reason", "bob saw 5xx"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0));
    // A wakes: its lease is gone, and nothing of its step is sent.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let ended_a = tokio::time::timeout(Duration::from_secs(30), rollout_a.wait_with_output()).await.unwrap().unwrap();
    let text_a = format!("{}{}", String::from_utf8_lossy(&ended_a.stdout), String::from_utf8_lossy(&ended_a.stderr));
    assert_eq!(ended_a.status.code(), Some(1), "{text_a}");
    assert!(text_a.contains("rollout step 1/4 (10%): not sent: "), "{text_a}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(weights(&sb).await, w(100, 0), "the abort stands: {text_a}");
    let audit = team_audit(&sb, &bucket).await;
    let by_ana: Vec<String> = audit
        .iter()
        .filter(|l| l["operator"] == "ana")
        .map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(by_ana, ["rollout step 1/4 (10%) [intent]", "rollout step 1/4 (10%) [failed]"], "{audit:?}");
    sb.down().await;
}

/// A shift whose holder stalls after taking the lease (a laptop asleep)
/// while an abort from another machine takes the lease over and rolls
/// back: the shift, woken, is fenced and sends nothing over the rollback
/// (it held its lease unused and sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_that_lost_its_lease_while_stalled_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("shift-fenced");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = fixed_sandbox(&rb, "us-west-2").await;
    let (a, b) = (Machine::new("ana", "laptop-a"), Machine::new("bob", "laptop-b"));
    let p = path.to_str().unwrap();
    let mut command = a.command(&sb, &rb, &["shift", p, "--to", "50", "--yes"]);
    command.env("CUTOVER_STOP_AT", "shift:leased");
    let shift_a = tokio::process::Command::from(command).kill_on_drop(true).spawn().unwrap();
    let pid = shift_a.id().unwrap();
    eventually(Duration::from_secs(60), "A stopped holding the lease", || async { process_stopped(pid).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (code, out) = b.run(&sb, &rb, &["abort", p, "--yes", "--reason", "bob rolls back"]).await;
    assert_eq!(code, Some(0), "{out}");
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let ended = tokio::time::timeout(Duration::from_secs(30), shift_a.wait_with_output()).await.unwrap().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&ended.stdout), String::from_utf8_lossy(&ended.stderr));
    assert_eq!(ended.status.code(), Some(2), "{text}");
    assert!(text.contains("the lease was lost ("), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(weights(&sb).await, w(100, 0), "nothing sent over the rollback: {text}");
    sb.down().await;
}

/// S3 has no append: each audit line is its own object, under a key that
/// names its writer and sequence, written only if absent. A write that
/// landed with its reply lost is sent again by the SDK and refused (412):
/// that was taken for someone else's key and the line written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_line_whose_reply_was_lost_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("audit-once");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = sandbox(&rb, "me-central-1").await;
    let ana = Machine::new("ana", "laptop-a");
    *sb.faults.lose_s3_put_replies.lock().unwrap() = Some(("/audit/".into(), 2));
    let (code, out) = ana.run(&sb, &rb, &["tick", path.to_str().unwrap(), "prepare/backup"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(*sb.faults.lose_s3_put_replies.lock().unwrap(), Some(("/audit/".into(), 0)), "both replies lost");
    let lines: Vec<String> = team_audit(&sb, &bucket)
        .await
        .iter()
        .filter(|l| l["action"] == "checklist prepare/backup")
        .map(|l| l["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines, ["intent", "applied"], "each line once");
    sb.down().await;
}

/// A soaking rollout whose abort (asked from another machine) stops it at
/// crashpoint `point`; S3 then slows down for six seconds (long enough for
/// an append to give up, short of a state save's ten tries). The sandbox,
/// the bucket, the rollout's exit code and output, and its state folder.
async fn a_rollback_through_slow_s3(
    region: &str,
    name: &str,
    point: &str,
) -> (Sandbox, String, Option<i32>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(name);
    let (rb, path) = team_runbook_edited(dir.path(), &bucket, "", |t| {
        t.replace("lease = \"6s\"", "lease = \"15s\"").replace("soak = \"5s\"", "soak = \"10m\"")
    });
    let sb = fixed_sandbox(&rb, region).await;
    let (a, b) = (Machine::new("ana", "bastion"), Machine::new("bob", "laptop-b"));
    let p = path.to_str().unwrap();
    let mut command = a.command(&sb, &rb, &["rollout", p, "--yes"]);
    command.env("CUTOVER_STOP_AT", point);
    let rollout = tokio::process::Command::from(command).kill_on_drop(true).spawn().unwrap();
    let pid = rollout.id().unwrap();
    until_soaking(&sb, &bucket, 0).await;
    let _abort = tokio::process::Command::from(b.command(&sb, &rb, &["abort", p, "--yes", "--reason", "bob saw 5xx"]))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(60), &format!("the rollout stopped at {point}"), || async {
        process_stopped(pid).then_some(())
    })
    .await;
    sb.faults.s3_slow_down.store(true, std::sync::atomic::Ordering::SeqCst);
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    tokio::time::sleep(Duration::from_secs(6)).await;
    sb.faults.s3_slow_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = tokio::time::timeout(Duration::from_secs(120), rollout.wait_with_output()).await.unwrap().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (sb, bucket, out.status.code(), text, dir)
}

/// S3 slowing down just as a running rollout rolls back: for a while its
/// intent cannot be audited. Nothing is sent without it, and the rollback,
/// decided, is tried again until the store answers, never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_whose_intent_cannot_be_audited_for_a_while_is_sent_once_it_can() {
    let (sb, bucket, code, text, _dir) =
        a_rollback_through_slow_s3("ap-southeast-3", "audit-down", "rollback:fenced").await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("rollout abort: not sent: its intent could not be audited"), "{text}");
    assert!(text.contains("rollout ABORTED and rolled back"), "{text}");
    assert_eq!(weights(&sb).await, w(100, 0));
    let by_ana: Vec<String> = team_audit(&sb, &bucket)
        .await
        .iter()
        .filter(|l| l["operator"] == "ana" && l["action"] == "rollout abort")
        .map(|l| l["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(by_ana.first().map(String::as_str), Some("intent"), "{by_ana:?}");
    assert!(by_ana.iter().any(|s| s == "applied"), "the rollback sent by the rollout itself: {by_ana:?}");
    sb.down().await;
}

/// A rollback Route53 took, whose applied line S3 then refused: the run
/// ended with a bare store error. It says the rollback is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_sent_but_not_audited_says_it_is_live() {
    let (sb, _, code, text, _dir) =
        a_rollback_through_slow_s3("af-south-1", "rollback-unaudited", "rollback:after-send").await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("rollout abort: ") && text.contains(" is live as "), "{text}");
    assert!(text.contains("the audit log could not record it"), "{text}");
    assert_eq!(weights(&sb).await, w(100, 0));
    sb.down().await;
}

/// A shift Route53 took, whose audit lines S3 then refused: it said only
/// "cannot write the audit log". It says the change is live, and waits for
/// INSYNC all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_whose_audit_cannot_be_written_after_the_send_says_it_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("unaudited");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = fixed_sandbox(&rb, "us-east-2").await;
    let p = path.to_str().unwrap();
    let mut command = Machine::new("ana", "laptop-a").command(&sb, &rb, &["shift", p, "--to", "30", "--yes"]);
    command.env("CUTOVER_STOP_AT", "shift:after-send");
    let shift = tokio::process::Command::from(command).kill_on_drop(true).spawn().unwrap();
    let pid = shift.id().unwrap();
    eventually(Duration::from_secs(60), "the shift sent, its applied line not yet written", || async {
        process_stopped(pid).then_some(())
    })
    .await;
    sb.faults.s3_slow_down.store(true, std::sync::atomic::Ordering::SeqCst);
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    let out = tokio::time::timeout(Duration::from_secs(120), shift.wait_with_output()).await.unwrap().unwrap();
    sb.faults.s3_slow_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("INSYNC after"), "waited for: {text}");
    assert!(text.contains("the change is live, but the audit log could not record it"), "{text}");
    assert_eq!(weights(&sb).await, w(70, 30));
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_ticks_from_ten_processes_at_once_all_land_with_who_and_when() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("ticks");
    let items: String = (0..50)
        .map(|i| format!("[[phases.items]]\nid = \"r{i:02}\"\ntitle = \"Review {i}\"\nkind = \"manual\"\n\n"))
        .collect();
    let extra = format!("[[phases]]\nid = \"review\"\ntitle = \"Reviews\"\n\n{items}");
    let (rb, path) = team_runbook(dir.path(), &bucket, &extra);
    let sb = sandbox(&rb, "ap-south-1").await;
    let p = path.to_str().unwrap().to_string();
    let machines: Vec<Machine> = (0..10).map(|_| Machine::new("reviewer", "desk")).collect();
    let mut tasks = Vec::new();
    for (m, machine) in machines.iter().enumerate() {
        let mut cmds = Vec::new();
        for k in 0..5 {
            let item = format!("review/r{:02}", m * 5 + k);
            let mut c = machine.command(&sb, &rb, &["tick", &p, &item]);
            c.env("CUTOVER_OPERATOR", format!("reviewer-{m}"));
            cmds.push(c);
        }
        tasks.push(tokio::spawn(async move {
            for c in cmds {
                let out = tokio::process::Command::from(c).output().await.unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (code, out) = machines[0].run(&sb, &rb, &["checklist", &p, "--json"]).await;
    assert_eq!(code, Some(0), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reviews: Vec<&serde_json::Value> =
        doc["items"].as_array().unwrap().iter().filter(|i| i["phase"] == "review").collect();
    assert_eq!(reviews.len(), 50);
    for (n, r) in reviews.iter().enumerate() {
        assert_eq!(r["ticked"]["by"], format!("reviewer-{}", n / 5), "{r}");
        assert!(r["ticked"]["at"].as_str().unwrap().starts_with("20"), "{r}");
    }
    // Untick and a note, from another machine; a check is not ticked by hand.
    let other = Machine::new("bob", "laptop-b");
    let (code, out) = other.run(&sb, &rb, &["tick", &p, "review/r07", "--undo", "--note", "needs a second look"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = other.run(&sb, &rb, &["tick", &p, "validate/targets"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a manual item"), "{out}");
    // --undo on a check with a note: refused whole, never the note alone with --undo dropped.
    let (code, out) = other.run(&sb, &rb, &["tick", &p, "validate/targets", "--undo", "--note", "x"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a manual item"), "{out}");
    let (code, out) = other.run(&sb, &rb, &["--read-only", "tick", &p, "review/r08", "--undo"]).await;
    assert_eq!(code, Some(2), "{out}");
    let (_, out) = machines[3].run(&sb, &rb, &["checklist", &p]).await;
    assert!(out.contains("[ ] review/r07") && out.contains("note: needs a second look"), "{out}");
    assert!(out.contains("[x] review/r08  Review 8 (ticked by reviewer-1"), "{out}");
    let audit = team_audit(&sb, &bucket).await;
    assert_eq!(audit.iter().filter(|l| l["stage"] == "applied").count(), 51, "every tick audited once");
    assert_eq!(audit.iter().filter(|l| l["stage"] == "refused").count(), 1);
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slowing_down_refuses_what_needs_the_lease_and_changes_nothing_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("slowdown");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = sandbox(&rb, "ca-central-1").await;
    let m = Machine::new("ana", "laptop-a");
    let p = path.to_str().unwrap();
    sb.faults.s3_slow_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, out) = m.run(&sb, &rb, &["shift", p, "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("SlowDown") && out.contains("nothing was changed"), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0), "nothing was sent");
    let (code, out) = m.run(&sb, &rb, &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("shared state cannot be read"), "{out}");
    let (code, out) = m.run(&sb, &rb, &["tick", p, "prepare/backup"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("SlowDown"), "{out}");
    sb.faults.s3_slow_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let (code, out) = m.run(&sb, &rb, &["shift", p, "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(weights(&sb).await, w(70, 30));
    assert!(
        objects(&sb, &bucket).await.keys().all(|k| k != "cutover/demo/lease.json"),
        "the shift's lease was released"
    );

    // `--state local` would take a lease the team never sees: refused, but for reading.
    let (code, out) = m.run(&sb, &rb, &["--state", "local", "shift", p, "--to", "50", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("would take a lease no one else sees"), "{out}");
    assert_eq!(weights(&sb).await, w(70, 30));
    let (code, out) = m.run(&sb, &rb, &["--state", "local", "--read-only", "checklist", p]).await;
    assert_eq!(code, Some(0), "{out}");
    // So would another bucket or prefix (a CUTOVER_STATE left from a rehearsal).
    let elsewhere = format!("s3://{bucket}/elsewhere");
    for other in [elsewhere.as_str(), "s3://no-such-bucket-here/x"] {
        let (code, out) = m.run(&sb, &rb, &["--state", other, "shift", p, "--to", "50", "--yes"]).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("would keep a lease, requests, ticks and an audit log the team never sees"), "{out}");
        let (code, out) = m.run(&sb, &rb, &["--state", other, "tick", p, "prepare/backup"]).await;
        assert_eq!(code, Some(2), "{out}");
    }
    assert_eq!(weights(&sb).await, w(70, 30));
    assert!(objects(&sb, &bucket).await.keys().all(|k| !k.contains("elsewhere")), "nothing written there");
    // A bucket that does not exist is a clear error, not a wait.
    let started = Instant::now();
    let (code, out) = m.run(&sb, &rb, &["--state", "s3://no-such-bucket-here/x", "--read-only", "checklist", p]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NoSuchBucket"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_rides_out_s3_slowing_down_mid_soak_and_completes_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("ride");
    let (rb, path) = team_runbook_edited(dir.path(), &bucket, "", |t| t.replace("lease = \"6s\"", "lease = \"15s\""));
    let sb = fixed_sandbox(&rb, "ap-northeast-2").await;
    let p = path.to_str().unwrap();
    let rollout = Machine::new("ana", "bastion").spawn(&sb, &rb, &["rollout", p, "--yes"]);
    until_soaking(&sb, &bucket, 1).await;
    // Four seconds of SlowDown: state saves, renewals, fences and request
    // reads fail and are retried; the lease (15 s) is never lost.
    sb.faults.s3_slow_down.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    sb.faults.s3_slow_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = rollout.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(weights(&sb).await, w(0, 100));
    let applied = steps_applied(&team_audit(&sb, &bucket).await);
    assert_eq!(applied.len(), 4, "{applied:?}");
    sb.down().await;
}

/// Route53 and S3 requests per second of the whole team over `window`.
async fn rates(sb: &Sandbox, window: Duration) -> (f64, f64) {
    let count = |svc: &str| sb.faults.by_service.lock().unwrap().get(svc).copied().unwrap_or(0);
    let (r0, s0, start) = (count("route53"), count("s3"), Instant::now());
    tokio::time::sleep(window).await;
    let secs = start.elapsed().as_secs_f64();
    ((count("route53") - r0) as f64 / secs, (count("s3") - s0) as f64 / secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_watchers_in_team_mode_spend_less_than_one_route53_request_a_second_during_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("budget");
    // A long soak, and the default 30 s lease: the steady rates of a real window.
    let (rb, path) = team_runbook_edited(dir.path(), &bucket, "", |t| {
        t.replace("soak = \"5s\"", "soak = \"10m\"").replace("lease = \"6s\"\n", "")
    });
    let sb = fixed_sandbox(&rb, "eu-north-1").await;
    let p = path.to_str().unwrap();
    let _rollout = Machine::new("ana", "bastion").spawn(&sb, &rb, &["rollout", p, "--yes"]);
    until_soaking(&sb, &bucket, 0).await;
    let window = Duration::from_secs(20);
    let (r, s) = rates(&sb, window).await;
    println!("team: rollout alone: {r:.2} Route53/s, {:.0} S3/min", s * 60.0);
    let s3_by_verb = || {
        let c = sb.faults.by_service.lock().unwrap();
        ["GET", "PUT", "LIST", "DELETE"].map(|v| c.get(&format!("s3 {v}")).copied().unwrap_or(0))
    };
    let before = s3_by_verb();
    // Each watcher is `status --watch`: the cockpit's own workers, no screen.
    let mut watchers = Vec::new();
    let mut measured = Vec::new();
    for n in [1usize, 5, 10] {
        while watchers.len() < n {
            let m = Machine::new("watcher", "desk");
            let mut c = m.command(&sb, &rb, &["status", p, "--watch", "--interval", "5"]);
            c.env("CUTOVER_OPERATOR", format!("watcher-{}", watchers.len())).stdout(std::process::Stdio::null());
            watchers.push((tokio::process::Command::from(c).kill_on_drop(true).spawn().unwrap(), m));
        }
        // Their first round (the zone's id, once each) is not the steady rate.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let (r, s) = rates(&sb, window).await;
        println!("team: rollout and {n} watcher(s): {r:.2} Route53/s, {:.0} S3/min", s * 60.0);
        measured.push((n, r));
    }
    let after = s3_by_verb();
    println!(
        "team: S3 requests by verb over the watchers' rounds (GET, PUT, LIST, DELETE): {:?}",
        [0, 1, 2, 3].map(|i| after[i] - before[i])
    );
    for (n, r) in measured {
        assert!(r < 1.0, "{n} watchers: {r:.2} Route53 requests/s");
    }
    drop(watchers);
    sb.down().await;
}

/// A watcher allowed only to read, or one whose `[dns]` credentials are in
/// another account than the runbook names, reads the team's weights but
/// publishes none: its reading would show every teammate another
/// account's weights (or nothing it may write) as live. The same watcher
/// with write access publishes, so the test can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_or_wrong_account_watcher_publishes_no_weights_for_the_team_and_a_read_only_one_no_presence() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("publish");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = sandbox(&rb, "ap-southeast-1").await;
    let p = path.to_str().unwrap();
    let published = || async {
        objects(&sb, &bucket).await.into_keys().filter(|k| k.ends_with("readings/traffic.json")).collect::<Vec<_>>()
    };
    let watch = |args: &[&str]| {
        let m = Machine::new("watcher", "desk");
        let mut c = m.command(&sb, &rb, args);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        (tokio::process::Command::from(c).kill_on_drop(true).spawn().unwrap(), m)
    };
    let read_only = watch(&["--read-only", "status", p, "--watch", "--interval", "1"]);
    // [dns] said to be in another account than the sandbox's.
    let other = dir.path().join("other-account.toml");
    let text =
        std::fs::read_to_string(&path).unwrap().replacen("ttl = 1\n", "ttl = 1\naccount_id = \"999999999999\"\n", 1);
    std::fs::write(&other, text).unwrap();
    let wrong = watch(&["status", other.to_str().unwrap(), "--watch", "--interval", "1"]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(published().await, Vec::<String>::new());
    // Nor does the read-only one announce itself: presence is shared state too.
    let pid = read_only.0.id().unwrap();
    let announced: Vec<String> = objects(&sb, &bucket).await.into_keys().filter(|k| k.contains("presence/")).collect();
    assert!(!announced.iter().any(|k| k.ends_with(&format!("@{pid}"))), "{announced:?}");
    assert!(!announced.is_empty(), "the other watcher announced itself: {announced:?}");
    drop((read_only, wrong));
    let _writer = watch(&["status", p, "--watch", "--interval", "1"]);
    eventually(Duration::from_secs(30), "a watcher with write access to publish", || async {
        (!published().await.is_empty()).then_some(())
    })
    .await;
    sb.down().await;
}

/// A cockpit in tmux for `machine` (its own socket, state and host name).
fn cockpit(sb: &Sandbox, rb: &Runbook, path: &str, m: &Machine, socket: &str) -> common::tmux::Tmux {
    let marker = m.state.path().join("exit");
    let script = common::tmux::cockpit_script(sb, rb, m.state.path(), &["tui", path], &marker);
    let text = std::fs::read_to_string(&script)
        .unwrap()
        .replace("CUTOVER_OPERATOR=e2e", &format!("CUTOVER_OPERATOR={} CUTOVER_HOST={}", m.operator, m.host));
    std::fs::write(&script, text).unwrap();
    let tmux = common::tmux::Tmux { socket: format!("{socket}-{}", std::process::id()) };
    let command = format!("sh {}", script.display());
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "200", "-y", "48", &command]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_in_one_cockpit_shows_in_the_other_and_a_frozen_s3_is_shown_stale_while_aws_stays_live_even_in_one_opened_then()
 {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("cockpits");
    let (rb, path) = team_runbook(dir.path(), &bucket, "");
    let sb = sandbox(&rb, "sa-east-1").await;
    let p = path.to_str().unwrap();
    let (a, b) = (Machine::new("ana", "laptop-a"), Machine::new("bob", "laptop-b"));
    let ta = cockpit(&sb, &rb, p, &a, "team-a");
    let tb = cockpit(&sb, &rb, p, &b, "team-b");
    for t in [&ta, &tb] {
        t.wait_for("the targets", Duration::from_secs(60), |s| s.contains("3/4 healthy"));
    }
    ta.wait_for("bob in A's header", Duration::from_secs(30), |s| s.contains("TEAM") && s.contains("bob@laptop-b"));
    tb.wait_for("ana in B's header", Duration::from_secs(30), |s| s.contains("ana@laptop-a"));

    // Checklist row 3 is prepare/backup, a manual item: ticked in A, seen in B.
    ta.keys(&["5", "j", "j", "j", "Space"]);
    ta.wait_for("the tick in A", Duration::from_secs(10), |s| s.contains("[x] ana"));
    tb.wait_for("A's tick in B", Duration::from_secs(15), |s| s.contains("[x] ana"));
    let (_, out) = b.run(&sb, &rb, &["checklist", p, "--json"]).await;
    assert!(out.contains("\"by\": \"ana\""), "{out}");

    // S3 stops answering: the shared state goes stale, the weights stay live.
    sb.faults.s3_frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = tb.wait_for("the stale badge", Duration::from_secs(40), |s| s.contains("SHARED STATE STALE"));
    assert!(s.contains("3/4 healthy"), "AWS still shown:\n{s}");
    // A cockpit opened while S3 stands still watches AWS all the same, its
    // checklist marked unread (no tick shown is no tick known).
    let c = Machine::new("cai", "laptop-c");
    let tc = cockpit(&sb, &rb, p, &c, "team-c");
    let s = tc.wait_for("C open, its checklist unread", Duration::from_secs(90), |s| {
        s.contains("3/4 healthy") && s.contains("NOT READ, ticks unknown")
    });
    assert!(!s.contains("[x] ana"), "{s}");
    let before = sb.faults.by_service.lock().unwrap().get("route53").copied().unwrap_or(0);
    eventually(Duration::from_secs(30), "Route53 read directly while S3 is frozen", || async {
        let now = sb.faults.by_service.lock().unwrap().get("route53").copied().unwrap_or(0);
        (now > before + 1).then_some(())
    })
    .await;
    sb.faults.s3_frozen.store(false, std::sync::atomic::Ordering::SeqCst);
    tb.wait_for("the badge gone", Duration::from_secs(60), |s| !s.contains("SHARED STATE STALE") && s.contains("TEAM"));
    tc.wait_for("C's checklist read", Duration::from_secs(60), |s| !s.contains("NOT READ") && s.contains("[x] ana"));
    for t in [&ta, &tb, &tc] {
        t.keys(&["q"]);
    }
    sb.down().await;
}

/// The checkpoint object of the one Redis copy in the bucket: (key, keys copied).
async fn copy_checkpoint(sb: &Sandbox, bucket: &str) -> Option<(String, u64)> {
    objects(sb, bucket).await.into_iter().find_map(|(k, v)| {
        let copied = (k.starts_with("cutover/redis-copy/") && k.ends_with(".json"))
            .then(|| serde_json::from_str::<serde_json::Value>(&v).ok())??["counters"]["copied"]
            .as_u64()?;
        Some((k, copied))
    })
}

/// `scripts/demo --team`'s setup: the plain demo runbook, the team's store
/// given by `--state` (the sandbox creates its bucket). A Redis copy begun on
/// one machine is refused on another while it runs, naming it, and resumes
/// there from the checkpoint in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_copy_begun_on_one_machine_resumes_on_another_from_the_checkpoint_in_the_bucket() {
    use redis::AsyncCommands;
    const N: u64 = 8_000;
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket("copy");
    let state = format!("s3://{bucket}/cutover");
    let rb = runbook("demo.toml");
    let opts = cutover::sandbox::SandboxOptions {
        region: "eu-west-2".into(),
        moto_endpoint: None,
        traffic: Default::default(),
        team_state: Some(state.clone()),
    };
    let sb = Sandbox::up(&rb, opts).await.unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let src = cutover::sandbox::process::start_redis(dir.path(), "src").await.unwrap();
    let dst = cutover::sandbox::process::start_redis(dir.path(), "dst").await.unwrap();
    let (src_url, dst_url) = (format!("redis://127.0.0.1:{}/0", src.port), format!("redis://127.0.0.1:{}/0", dst.port));
    let mut s = redis::Client::open(src_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut p = redis::pipe();
    for i in 0..N {
        p.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
        if i % 2 == 0 {
            p.cmd("EXPIRE").arg(format!("k:{i}")).arg(3600).ignore();
        }
    }
    let _: () = p.query_async(&mut s).await.unwrap();

    let (a, b) = (Machine::new("ana", "laptop-a"), Machine::new("bob", "laptop-b"));
    let args =
        ["--state", &state, "redis", "copy", "--from", &src_url, "--to", &dst_url, "--yes", "--scan-count", "100"];
    let copy_a = a.spawn(&sb, &rb, &[&args[..], &["--rate", "500"]].concat());
    let pid = copy_a.id().unwrap() as i32;
    eventually(Duration::from_secs(60), "A's checkpoint in the bucket past a quarter", || async {
        copy_checkpoint(&sb, &bucket).await.filter(|(_, copied)| *copied >= N / 4)
    })
    .await;

    let (code, out) = b.run(&sb, &rb, &[&args[..], &["--resume"]].concat()).await;
    assert_eq!(code, Some(2), "one copy of a pair at a time, across machines: {out}");
    assert!(out.contains("already running") && out.contains("ana@laptop-a"), "names the copy running: {out}");

    // A stops (Ctrl-C): its place stays in the bucket, its lock is released.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let ended_a = copy_a.wait_with_output().await.unwrap();
    assert_eq!(ended_a.status.code(), Some(1), "{}", String::from_utf8_lossy(&ended_a.stderr));
    let (key, copied_by_a) = copy_checkpoint(&sb, &bucket).await.expect("the checkpoint stays in the bucket");
    assert!(copied_by_a < N, "A was stopped part-way: {copied_by_a}");
    for m in [&a, &b] {
        // Only the lock that keeps a local and a team copy of the pair apart on one machine.
        let local: Vec<_> = std::fs::read_dir(m.state.path().join("cutover/redis-copy"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(local.iter().all(|f| f.ends_with(".lock")), "no checkpoint on a laptop: {local:?}");
    }

    let (code, out) = b.run(&sb, &rb, &[&args[..], &["--resume", "--json"]].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("resuming at SCAN cursor"), "B goes on from A's place: {out}");
    let mut d = redis::Client::open(dst_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut d).await.unwrap();
    assert_eq!(size, N, "every key once");
    let ttl: i64 = d.ttl("k:0").await.unwrap();
    assert!(ttl > 3000, "TTLs kept: {ttl}");
    let ttl: i64 = d.ttl("k:1").await.unwrap();
    assert_eq!(ttl, -1, "no TTL where there was none");
    let left: Vec<String> = objects(&sb, &bucket).await.into_keys().filter(|k| k.contains("redis-copy/")).collect();
    assert!(left.is_empty(), "the finished copy leaves no checkpoint or lock: {left:?} (was {key})");
    let ends: Vec<(String, String)> = objects(&sb, &bucket)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with("cutover/redis/audit/"))
        .map(|(_, v)| serde_json::from_str::<serde_json::Value>(&v).unwrap())
        .filter(|l| l["stage"] == "applied" || l["stage"] == "interrupted")
        .map(|l| (l["operator"].as_str().unwrap().to_string(), l["stage"].as_str().unwrap().to_string()))
        .collect();
    let want = [("ana", "interrupted"), ("bob", "applied")].map(|(o, s)| (o.to_string(), s.to_string()));
    assert_eq!(ends, want, "the team's audit says who stopped it and who finished it");
    sb.down().await;
}
