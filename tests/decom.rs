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
    runbook_edited(dir, phases, |t| t)
}

/// As `runbook_with_phases`, the text edited by `edit` before it is written.
fn runbook_edited(dir: &Path, phases: &str, edit: impl Fn(String) -> String) -> (Runbook, PathBuf) {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/staging-to-production.toml"))
            .unwrap();
    let text = edit(text);
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

/// Every request to staging: old production carries no traffic, as before
/// any decommission (its actions are refused while it does). Shifted long
/// ago (not in this state's audit, so no resolver's TTL is waited out), and
/// its instances drained out of their target group.
async fn traffic_off_production(sb: &Sandbox, rb: &Runbook, _state: &Path, _path: &str) {
    reweight_as_another_client(sb, rb, &[("production", 0), ("staging", 100)]).await;
    drained_out_of_target_groups(sb, "production").await;
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

    traffic_off_production(&sb, &rb, dir.path(), p).await;
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
    let before = audit_lines(dir.path(), &rb.name).len();
    tmux.keys(&["Enter"]);
    tmux.wait_for("the refusal", Duration::from_secs(10), |s| {
        s.contains("refused: decommission/start-again may not run before 40s")
    });
    assert!(!tmux.screen().contains("confirm a change"), "no popup opened");
    // Audited as `cutover run` audits it: the time gate's reason, not --read-only.
    let refused = eventually(Duration::from_secs(10), "the cockpit's refusal audited", || async {
        audit_lines(dir.path(), &rb.name).get(before).cloned()
    })
    .await;
    assert_eq!(
        (refused["stage"].as_str(), refused["action"].as_str()),
        (Some("refused"), Some("start_instances production (decommission/start-again)")),
        "{refused}"
    );
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "refused: decommission/start-again may not run before 40s after decommission/stop-old finished ("
        ) && detail.contains("s left, it opens at 20"),
        "{detail}"
    );
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
    assert_eq!(gated_stages, ["refused", "refused", "refused", "intent", "applied"], "{stages:#?}");
    sb.down().await;
}

const BACKUPS: &str = r#"
[[phases]]
id = "backup"
title = "Backups of old production"

[[phases.items]]
id = "images"
title = "An AMI of each old production instance"
kind = "action"
action = "create_image"
environment = "production"
no_reboot = true

[[phases.items]]
id = "redis"
title = "A snapshot of old production's ElastiCache"
kind = "action"
action = "snapshot_redis"
redis = "prod-cache"
"#;

/// The runbook with prod-cache an ElastiCache replication group.
fn with_elasticache(dir: &Path, phases: &str) -> (Runbook, PathBuf) {
    runbook_edited(dir, phases, |t| t.replace(r#"["prod-redis"] }"#, r#"["prod-redis"], elasticache = "prod-cache" }"#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_create_image_and_snapshot_redis_wait_until_available_tagged_and_audited() {
    use common::tmux::audit_lines;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = with_elasticache(dir.path(), BACKUPS);
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "il-central-1").await;
    let production: std::collections::BTreeSet<String> =
        sb.world.instances.iter().filter(|i| i.environment == "production").map(|i| i.id.clone()).collect();
    assert_eq!(production.len(), 2);

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "backup/images", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("without rebooting, wait until available"), "{out}");
    assert!(out.contains("dry run: nothing was sent"), "{out}");
    let images = sb.clients.ec2.describe_images().owners("self").send().await.unwrap();
    assert!(images.images().is_empty(), "a dry run creates nothing");

    // The first CreateImage's reply is lost after AWS took it: the SDK sends
    // it again, which AWS refuses (the AMI's name is taken). The AMI made is
    // found by its name: one per instance, the run not failed.
    *sb.faults.lose_replies.lock().unwrap() = Some(("CreateImage".into(), 1));
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "backup/images", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(*sb.faults.lose_replies.lock().unwrap(), Some(("CreateImage".into(), 0)), "the reply was lost");
    // The proxy keeps new AMIs pending (as AWS does): the run waited through it.
    assert!(out.contains("progress 0/2: 0 of 2 AMIs available"), "{out}");
    assert!(out.contains("progress 2/2: 2 of 2 AMIs available"), "{out}");
    let images = sb.clients.ec2.describe_images().owners("self").send().await.unwrap();
    assert_eq!(images.images().len(), 2, "one AMI per instance: {:?}", images.images());
    let mut of_instance = std::collections::BTreeMap::new();
    for i in images.images() {
        let tag = |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
        assert_eq!(i.state().map(|s| s.as_str()), Some("available"), "{i:?}");
        assert_eq!(tag("cutover:runbook").as_deref(), Some("staging-to-production"), "{i:?}");
        assert_eq!(tag("cutover:item").as_deref(), Some("backup/images"), "{i:?}");
        of_instance.insert(tag("cutover:instance").unwrap(), i.image_id().unwrap().to_string());
    }
    assert_eq!(of_instance.keys().cloned().collect::<std::collections::BTreeSet<_>>(), production);
    let audit = audit_lines(dir.path(), &rb.name);
    let stages: Vec<&str> = audit.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["intent", "applied"], "{audit:#?}");
    let applied = audit[1]["detail"].as_str().unwrap();
    for (instance, ami) in &of_instance {
        assert!(applied.contains(&format!("{ami} of {instance}")), "the audit names each AMI: {applied}");
    }

    // Its reply lost too: the SDK's retry finds the name taken, and the
    // snapshot made is waited on, not a second one taken.
    *sb.faults.lose_replies.lock().unwrap() = Some(("CreateSnapshot".into(), 1));
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "backup/redis", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(*sb.faults.lose_replies.lock().unwrap(), Some(("CreateSnapshot".into(), 0)), "the reply was lost");
    assert!(out.contains("creating"), "waited while the snapshot was creating: {out}");
    let snaps = sb.clients.elasticache.describe_snapshots().send().await.unwrap();
    let manual: Vec<_> =
        snaps.snapshots().iter().filter(|s| s.snapshot_name().is_some_and(|n| n.starts_with("cutover-"))).collect();
    assert_eq!(manual.len(), 1, "{snaps:?}");
    assert_eq!(manual[0].snapshot_status(), Some("available"));
    assert_eq!(manual[0].replication_group_id(), Some("prod-cache"));
    let audit = audit_lines(dir.path(), &rb.name);
    let last = audit.last().unwrap();
    assert_eq!(last["stage"], "applied");
    assert!(last["detail"].as_str().unwrap().contains(manual[0].snapshot_name().unwrap()), "{last}");
    sb.down().await;
}

/// An AMI that AWS fails (the proxy's fault: `failed`, with AWS's
/// StateReason) fails the step: the instance and AMI named, the audit's last
/// line `failed`, and the item not finished, so what waits on it stays shut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_a_failed_image_fails_the_step_naming_instance_and_ami_and_finishes_nothing() {
    use common::tmux::audit_lines;
    let dir = tempfile::tempdir().unwrap();
    let waiting = "\n[[phases.items]]\nid = \"after-images\"\ntitle = \"Start production once its AMIs exist\"\nkind = \"action\"\naction = \"start_instances\"\nenvironment = \"production\"\nnot_before = { after = \"backup/images\", wait = \"1s\" }\n";
    let (rb, path) = with_elasticache(dir.path(), &format!("{BACKUPS}{waiting}"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ap-southeast-3").await;
    let production: Vec<String> =
        sb.world.instances.iter().filter(|i| i.environment == "production").map(|i| i.id.clone()).collect();
    sb.faults.fail_new_images.store(true, std::sync::atomic::Ordering::SeqCst);

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "backup/images", "--yes"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("progress 0/2: 0 of 2 AMIs available"), "waited while pending: {out}");
    let images = sb.clients.ec2.describe_images().owners("self").send().await.unwrap();
    let amis: Vec<String> = images.images().iter().map(|i| i.image_id().unwrap().to_string()).collect();
    assert_eq!(amis.len(), 2, "{images:?}");
    let failed = out.lines().find(|l| l.contains("step 1 of 1 failed: AMI ")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        failed.contains(" is failed (The instance was terminated or rebooted during AMI creation.)")
            && amis.iter().any(|a| failed.contains(&format!("AMI {a} of i-")))
            && production.iter().all(|i| failed.contains(&format!(" of {i}"))),
        "the instance and AMI, and every AMI made: {failed}"
    );
    assert!(!out.contains("AMIs available:"), "no success said: {out}");
    // The item has no rollback: none is offered.
    assert!(
        failed.ends_with("the item has no rollback: undo what was applied by hand, or run it again to finish")
            && !out.contains("--rollback"),
        "{out}"
    );
    let audit = audit_lines(dir.path(), &rb.name);
    let stages: Vec<&str> = audit.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["intent", "failed"], "{audit:#?}");
    assert!(audit[1]["detail"].as_str().unwrap().contains(" is failed ("), "{}", audit[1]);

    // Not finished: the item that waits on it is still refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "backup/after-images", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("after backup/images finished, and it has not"), "{out}");
    sb.down().await;
}

const DECOMMISSION: &str = r#"
[[phases]]
id = "decommission"
title = "Decommission old production"

[[phases.items]]
id = "images"
title = "An AMI of each old production instance"
kind = "action"
action = "create_image"
environment = "production"
no_reboot = true

[[phases.items]]
id = "stop-old"
title = "Stop the old production instances"
kind = "action"
action = "stop_instances"
environment = "production"
rollback = { action = "start_instances", environment = "production" }

[[phases.items]]
id = "terminate"
title = "Terminate old production after the window"
kind = "action"
action = "terminate_instances"
environment = "production"
not_before = { after = "decommission/stop-old", wait = "20s" }

[[phases.items]]
id = "app-group"
title = "Delete old production's app group"
kind = "action"
action = "delete_security_groups"
environment = "production"
security_groups = ["prod-app"]

[[phases.items]]
id = "redis-group"
title = "Delete old production's Redis group"
kind = "action"
action = "delete_security_groups"
environment = "production"
security_groups = ["prod-redis"]
"#;

/// Whether a security group of this name still exists.
async fn group_exists(sb: &Sandbox, name: &str) -> bool {
    let all = sb.clients.ec2.describe_security_groups().send().await.unwrap();
    all.security_groups().iter().any(|g| g.group_name() == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_terminate_needs_stopped_instances_the_window_and_the_typed_name_and_groups_go_only_unused() {
    use common::tmux::audit_lines;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), DECOMMISSION);
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ap-southeast-5").await;
    traffic_off_production(&sb, &rb, dir.path(), p).await;
    let run = |args: Vec<&'static str>| {
        let (sb, rb, dir) = (&sb, &rb, dir.path());
        async move {
            let mut all = vec!["run", p];
            all.extend(args);
            run_cutover_all(sb, rb, dir, &all).await
        }
    };
    let confirm = ["--yes", "--confirm-name", "production"];
    let prod: Vec<String> =
        sb.world.instances.iter().filter(|i| i.environment == "production").map(|i| i.id.clone()).collect();

    let (code, out) = run(vec!["decommission/images", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");

    // Groups in use are refused, naming what uses them.
    let (code, out) = run([&["decommission/app-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("security groups still in use: prod-app"), "{out}");
    for id in &prod {
        assert!(out.contains(&format!("instance {id} (running)")), "{id}: {out}");
    }
    assert!(out.contains("a rule of group prod-redis"), "{out}");
    assert!(group_exists(&sb, "prod-app").await);

    // Before the stop: the window has not begun.
    let (code, out) = run([&["decommission/terminate"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("decommission/stop-old finished, and it has not"), "{out}");
    let (code, out) = run(vec!["decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(30), "old production stopped", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    let stopped_at = Instant::now();
    let (code, out) = run([&["decommission/terminate"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("s left, it opens at"), "{out}");

    tokio::time::sleep(Duration::from_secs(21).saturating_sub(stopped_at.elapsed())).await;
    // Another client starts one instance again: only stopped instances are terminated.
    sb.clients.ec2.start_instances().instance_ids(&prod[0]).send().await.unwrap();
    let (code, out) = run([&["decommission/terminate"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("only stopped instances are terminated:") && out.contains(&prod[0]), "{out}");
    sb.clients.ec2.stop_instances().instance_ids(&prod[0]).send().await.unwrap();
    eventually(Duration::from_secs(30), "old production stopped again", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    // Started again while the confirmed plan waits (a popup left open): the
    // instances are read again right before the terminate, which is refused.
    let args = ["run", p, "decommission/terminate", "--yes", "--confirm-name", "production"];
    let start = async {
        sb.clients.ec2.start_instances().instance_ids(&prod[1]).send().await.unwrap();
    };
    let (code, out) = run_cutover_changed_at(&sb, &rb, dir.path(), &args, "action:confirmed", start).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("the instances changed since the plan was confirmed: ") && out.contains(&prod[1]), "{out}");
    assert!(!states(&sb, "production").await.iter().any(|(_, s)| s == "terminated"), "nothing terminated: {out}");
    sb.clients.ec2.stop_instances().instance_ids(&prod[1]).send().await.unwrap();
    eventually(Duration::from_secs(30), "old production stopped once more", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    // Lines of the stop item that name nothing it stopped (hand-edited, or
    // of a version that did not keep them) vouch for no instance: every one
    // is refused, never every one let through.
    let log = dir.path().join(format!("cutover/{}.audit.jsonl", rb.name));
    let kept = std::fs::read_to_string(&log).unwrap();
    let blanked: Vec<String> = kept
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["action"] == "stop_instances production (decommission/stop-old)" {
                v["after"] = serde_json::json!({});
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&log, blanked.join("\n") + "\n").unwrap();
    let (code, out) = run(vec!["decommission/terminate", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not stopped by decommission/stop-old") && out.contains(&prod[0]), "{out}");
    std::fs::write(&log, kept).unwrap();
    // One more under the same tags, launched and stopped outside the stop
    // item (a standby): its window never ran, so nothing is terminated.
    let tags = rb.environments["production"].instances.clone();
    let cutover::runbook::InstanceSelector::Tags(tags) = tags else { panic!("production selects by tags") };
    let mut spec =
        aws_sdk::ec2::types::TagSpecification::builder().resource_type(aws_sdk::ec2::types::ResourceType::Instance);
    for (k, v) in &tags {
        spec = spec.tags(aws_sdk::ec2::types::Tag::builder().key(k).value(v).build());
    }
    let launched = sb
        .clients
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(spec.build())
        .send()
        .await
        .unwrap();
    let standby = launched.instances()[0].instance_id().unwrap().to_string();
    sb.clients.ec2.stop_instances().instance_ids(&standby).send().await.unwrap();
    let (code, out) = run([&["decommission/terminate"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{standby} was not stopped by decommission/stop-old")), "{out}");
    assert!(all_in(&sb, "production", "stopped").await, "nothing terminated");
    sb.clients.ec2.terminate_instances().instance_ids(&standby).send().await.unwrap();
    // Termination protection on one: AWS would terminate the others and
    // refuse it (half the action, ending failed); refused before, nothing sent.
    let protect = |on: bool| {
        sb.clients
            .ec2
            .modify_instance_attribute()
            .instance_id(&prod[0])
            .disable_api_termination(aws_sdk::ec2::types::AttributeBooleanValue::builder().value(on).build())
            .send()
    };
    protect(true).await.unwrap();
    let (code, out) = run([&["decommission/terminate"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{} has termination protection", prod[0])), "{out}");
    assert!(all_in(&sb, "production", "stopped").await, "nothing terminated: {out}");
    protect(false).await.unwrap();

    // --yes alone, or the wrong name, is not enough.
    let (code, out) = run(vec!["decommission/terminate", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("NO ROLLBACK") && out.contains("confirm with --confirm-name production"), "{out}");
    let (code, out) = run(vec!["decommission/terminate", "--yes", "--confirm-name", "staging"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("(`staging` was given)"), "{out}");
    assert!(all_in(&sb, "production", "stopped").await, "nothing terminated");

    let (code, out) = run([&["decommission/terminate"][..], &confirm].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(all_in(&sb, "production", "terminated").await, "{:?}", states(&sb, "production").await);
    // The audit names each instance with the AMI taken of it.
    let images = sb.clients.ec2.describe_images().owners("self").send().await.unwrap();
    let ami_of = |id: &str| {
        images
            .images()
            .iter()
            .find(|i| i.tags().iter().any(|t| t.key() == Some("cutover:instance") && t.value() == Some(id)))
            .and_then(|i| i.image_id())
            .unwrap()
            .to_string()
    };
    let audit = audit_lines(dir.path(), &rb.name);
    let applied = audit
        .iter()
        .find(|l| l["stage"] == "applied" && l["action"] == "terminate_instances production (decommission/terminate)")
        .unwrap_or_else(|| panic!("{audit:#?}"));
    for id in &prod {
        assert_eq!(applied["before"][id]["ami"], ami_of(id), "{applied}");
        assert!(applied["detail"].as_str().unwrap().contains(&format!("{} of {id}", ami_of(id))), "{applied}");
    }

    // prod-redis holds its Redis node's interface until that Redis is
    // deleted (on AWS, its ElastiCache cluster); then it is used by
    // nothing and goes. Then prod-app, whose users are gone.
    let (code, out) = run([&["decommission/redis-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    let node = sb.world.redis_interfaces["prod-cache"].clone();
    assert!(out.contains(&format!("is used by network interface {node} (ElastiCache ")), "{out}");
    assert!(group_exists(&sb, "prod-redis").await);
    sb.clients.ec2.delete_network_interface().network_interface_id(&node).send().await.unwrap();
    let (code, out) = run([&["decommission/redis-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!group_exists(&sb, "prod-redis").await);
    assert!(group_exists(&sb, "prod-app").await);
    let (code, out) = run([&["decommission/app-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!group_exists(&sb, "prod-app").await);
    let (code, out) = run([&["decommission/app-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to do: none of prod-app exists"), "{out}");

    // Its load balancer deleted too: nothing left tells its VPC, and a group
    // of the same name in another VPC is never taken for its own.
    let lb = rb.environments["production"].load_balancer.clone().unwrap();
    let found = sb.clients.elb.describe_load_balancers().names(&lb).send().await.unwrap();
    let arn = found.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    sb.clients.elb.delete_load_balancer().load_balancer_arn(arn).send().await.unwrap();
    let other = sb.clients.ec2.create_vpc().cidr_block("10.9.0.0/16").send().await.unwrap();
    let other = other.vpc().unwrap().vpc_id().unwrap();
    let namesake = sb
        .clients
        .ec2
        .create_security_group()
        .group_name("prod-redis")
        .description("another team's")
        .vpc_id(other)
        .send()
        .await
        .unwrap();
    let namesake = namesake.group_id().unwrap();
    let (code, out) = run([&["decommission/redis-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("nothing tells production's VPC any more"), "{out}");
    assert!(out.contains(&format!("`prod-redis` in {other}")), "{out}");
    // Its id is not offered: pasted into the runbook, it would be deleted.
    assert!(!out.contains(namesake), "{out}");
    assert!(group_exists(&sb, "prod-redis").await, "the other VPC's group stays");
    // Gone everywhere: nothing to do, as before.
    let (code, out) = run([&["decommission/app-group"][..], &confirm].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to do: none of prod-app exists"), "{out}");
    sb.down().await;
}

/// An instance of old production that an Auto Scaling group holds: stopping
/// it would have the group replace it (terminating it and its disks, the
/// rollback window's instance gone), so stop-old is refused naming the
/// instance, its group and the way out, and nothing is stopped. Put in
/// Standby (no longer health-checked), it is stopped with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_stop_refuses_instances_an_auto_scaling_group_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), &GATED.replace("WAIT", "40s"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "me-south-1").await;
    traffic_off_production(&sb, &rb, dir.path(), p).await;
    let asg = &sb.clients.autoscaling;
    asg.create_launch_configuration()
        .launch_configuration_name("prod-web")
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    let tag = |k: &str, v: &str| {
        aws_sdk::autoscaling::types::Tag::builder()
            .key(k)
            .value(v)
            .propagate_at_launch(true)
            .resource_id("prod-asg")
            .resource_type("auto-scaling-group")
            .build()
    };
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("prod-asg")
        .launch_configuration_name("prod-web")
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .availability_zones(format!("{}a", sb.region))
        .tags(tag("App", "shop"))
        .tags(tag("Environment", "production"))
        .send()
        .await
        .unwrap();
    let held = asg.describe_auto_scaling_groups().auto_scaling_group_names("prod-asg").send().await.unwrap();
    let held = held.auto_scaling_groups()[0].instances()[0].instance_id().unwrap().to_string();
    let state_of = |id: String| {
        let ec2 = sb.clients.ec2.clone();
        async move {
            let r = ec2.describe_instances().instance_ids(id).send().await.unwrap();
            r.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
        }
    };
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "{held} (group prod-asg, InService) held by an Auto Scaling group, which replaces an instance stopped by a new one"
        )),
        "{out}"
    );
    assert!(out.contains("enter-standby"), "the way out is said: {out}");
    assert!(all_in(&sb, "production", "running").await, "nothing stopped: {:?}", states(&sb, "production").await);
    assert_eq!(state_of(held.clone()).await, "running", "the group's instance was not stopped");
    // In Standby the group no longer health-checks it: it may be stopped.
    asg.enter_standby()
        .auto_scaling_group_name("prod-asg")
        .instance_ids(&held)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(30), "old production stopped, the Standby instance too", || async {
        (all_in(&sb, "production", "stopped").await && state_of(held.clone()).await == "stopped").then_some(())
    })
    .await;
    sb.down().await;
}

/// A stop killed after AWS took it but before its `applied` line was
/// written leaves the audit at `intent`: the item would never count as
/// finished, and what waits on it (a termination's window) would wait for
/// ever. Run again, the stop finds nothing to do and records it applied,
/// so the window opens from then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_a_stop_killed_before_its_audit_is_recorded_done_when_run_again() {
    use common::tmux::audit_lines;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), &GATED.replace("WAIT", "1s"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "eu-south-1").await;
    traffic_off_production(&sb, &rb, dir.path(), p).await;
    let mut killed = cutover_command(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]);
    killed.env("CUTOVER_CRASH_AT", "action:after-apply");
    let out = killed.output().unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", String::from_utf8_lossy(&out.stdout));
    eventually(Duration::from_secs(30), "old production stopped", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    let stop = |l: &serde_json::Value| l["action"] == "stop_instances production (decommission/stop-old)";
    let stages = || -> Vec<String> {
        audit_lines(dir.path(), &rb.name).iter().filter(|l| stop(l)).map(|l| l["stage"].to_string()).collect()
    };
    assert_eq!(stages(), ["\"intent\""]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gated = "decommission/start-again";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, gated, "--dry-run"]).await;
    assert!(out.contains("has not"), "the window has not started: {code:?} {out}");
    // A look without --yes records nothing (it opened the gated item's window).
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to do") && !out.contains("recorded as applied"), "{out}");
    assert_eq!(stages(), ["\"intent\""]);
    // Run again: nothing to do, recorded as done.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("recorded as applied: found done when run again"), "{out}");
    assert_eq!(stages(), ["\"intent\"", "\"applied\""]);
    // And again: nothing more recorded.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("recorded as applied"), "{out}");
    assert_eq!(stages().len(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, gated, "--yes"]).await;
    assert_eq!(code, Some(0), "the window opened from the record: {out}");
    sb.down().await;
}

/// AWS takes seconds to minutes to stop an instance, and starts a stopped
/// one only (one `stopping`: IncorrectInstanceState; moto stops it at
/// once, the proxy keeps it `stopping` for a window). A stop's rollback run
/// while its instances still stop is refused, saying what to wait for and
/// how, never "nothing to do" (they would then stop, the rollback having
/// done nothing); once they are stopped, it starts them. A stop while they
/// are `pending` is refused likewise (AWS stops a running instance), and
/// the start run again then has nothing to do: they are on their way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_a_stops_rollback_while_its_instances_are_still_stopping_is_refused_then_starts_them() {
    use common::tmux::audit_lines;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), &GATED.replace("WAIT", "1h"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "af-south-1").await;
    traffic_off_production(&sb, &rb, dir.path(), p).await;
    sb.faults.instance_transition_ms.store(20_000, std::sync::atomic::Ordering::SeqCst);
    let stop = ["run", p, "decommission/stop-old", "--yes"];
    let rollback = ["run", p, "decommission/stop-old", "--rollback", "--yes"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(all_in(&sb, "production", "stopping").await, "{:?}", states(&sb, "production").await);

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &rollback).await;
    assert_eq!(code, Some(2), "refused, not a rollback that starts nothing: {out}");
    assert!(
        out.contains(
            " of production are stopping, and AWS starts a stopped instance only: wait until they are stopped \
             (`aws ec2 wait instance-stopped --instance-ids "
        ) && out.contains("then run this again; nothing was changed"),
        "{out}"
    );
    let last = audit_lines(dir.path(), &rb.name).pop().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["stage"].as_str()),
        (Some("start_instances production (decommission/stop-old)"), Some("refused")),
        "{last}"
    );
    assert!(all_in(&sb, "production", "stopping").await, "nothing started: {:?}", states(&sb, "production").await);
    // The stop run again meanwhile: AWS took it, and nothing is left to send.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to do: no instance of production to stop (") && out.contains(" stopping"), "{out}");

    eventually(Duration::from_secs(40), "old production stopped", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &rollback).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(all_in(&sb, "production", "pending").await, "{:?}", states(&sb, "production").await);
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            " of production are pending, and AWS stops a running instance only: wait until they are running \
             (`aws ec2 wait instance-running --instance-ids "
        ),
        "{out}"
    );
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &rollback).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to do: no instance of production to start (") && out.contains(" pending"), "{out}");
    eventually(Duration::from_secs(40), "old production running again", || async {
        all_in(&sb, "production", "running").await.then_some(())
    })
    .await;
    sb.down().await;
}

/// Old production's load balancer deleted (its own security group can only
/// go after it): its actions are not refused as "another region", since the
/// runbook's other load balancer, reached the same way, is here, nor for
/// targets of a group that no load balancer uses any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_old_productions_actions_go_on_once_its_load_balancer_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), &GATED.replace("WAIT", "1h"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ca-west-1").await;
    // Still registered in its group, which then serves no load balancer:
    // its targets are `unused`, and the stop is not held back by them.
    reweight_as_another_client(&sb, &rb, &[("production", 0), ("staging", 100)]).await;
    let prod = rb.environments["production"].load_balancer.clone().unwrap();
    let found = sb.clients.elb.describe_load_balancers().names(&prod).send().await.unwrap();
    let arn = found.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    sb.clients.elb.delete_load_balancer().load_balancer_arn(arn).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(30), "old production stopped", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    sb.down().await;
}

/// A finished stop written in another account (a rehearsal on the sandbox,
/// whose lines share the runbook's name and this machine's local log; moto
/// answers as account 123456789012, here as another) never opens the time
/// gate of the item that waits for it: only lines of the account that
/// item's side is in count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_a_stop_recorded_in_another_account_opens_no_time_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), &GATED.replace("WAIT", "1s"));
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "us-east-1").await;
    let an_hour_ago = cutover::time::rfc3339(std::time::SystemTime::now() - Duration::from_secs(3600));
    let line = serde_json::json!({
        "time": an_hour_ago, "operator": "rehearsal", "account": "999999999999", "region": "eu-west-1",
        "runbook": rb.name, "action": "stop_instances production (decommission/stop-old)", "stage": "applied",
        "before": {}, "after": {}, "detail": "stopped in a rehearsal",
    });
    let log = dir.path().join(format!("cutover/{}.audit.jsonl", rb.name));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, format!("{line}\n")).unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/start-again", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("after decommission/stop-old finished, and it has not"), "{out}");
    sb.down().await;
}

/// The same for a manual item: a tick made in a rehearsal (moto's account,
/// the same runbook name, the same local checklist) does not count; one
/// made here records this account and opens the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_a_tick_made_in_another_account_opens_no_time_gate() {
    let dir = tempfile::tempdir().unwrap();
    let phases = "\n[[phases]]\nid = \"decommission\"\ntitle = \"Decommission\"\n\n[[phases.items]]\nid = \"sign-off\"\n\
                  title = \"Old production is no longer needed\"\nkind = \"manual\"\n\n[[phases.items]]\nid = \"start-again\"\n\
                  title = \"Start old production again\"\nkind = \"action\"\naction = \"start_instances\"\n\
                  environment = \"production\"\nnot_before = { after = \"decommission/sign-off\", wait = \"1s\" }\n";
    let (rb, path) = runbook_with_phases(dir.path(), phases);
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "us-east-2").await;
    let an_hour_ago = cutover::time::rfc3339(std::time::SystemTime::now() - Duration::from_secs(3600));
    let ticks = serde_json::json!({"ticks": {"decommission/sign-off": {
        "by": "rehearsal", "at": an_hour_ago, "account": "999999999999"}}, "notes": {}});
    let file = dir.path().join(format!("cutover/{}.progress.json", rb.name));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, ticks.to_string()).unwrap();
    let run = ["run", p, "decommission/start-again", "--yes"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &run).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("after decommission/sign-off finished, and it has not"), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["tick", p, "decommission/sign-off", "--undo"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["tick", p, "decommission/sign-off"]).await;
    assert_eq!(code, Some(0), "{out}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["ticks"]["decommission/sign-off"]["account"], "123456789012", "{saved}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &run).await;
    assert_eq!(code, Some(0), "the window is open (and the instances run: nothing to do): {out}");
    sb.down().await;
}

const DRAINED_FIRST: &str = r#"
[[phases]]
id = "decommission"
title = "Decommission old production"

[[phases.items]]
id = "deregister-old"
title = "Take old production out of its target group"
kind = "action"
action = "deregister_targets"
environment = "production"
rollback = { action = "register_targets", environment = "production" }

[[phases.items]]
id = "stop-old"
title = "Stop the old production instances"
kind = "action"
action = "stop_instances"
environment = "production"
rollback = { action = "start_instances", environment = "production" }

[[phases.items]]
id = "images"
title = "An AMI of each old production instance, rebooting it"
kind = "action"
action = "create_image"
environment = "production"
"#;

/// Old production at weight 0 is still a target of its load balancer:
/// clients kept alive on it, and callers of its own name, still send it
/// requests, and stopping (or rebooting for an AMI) would fail them. So
/// stop-old (and an AMI taken rebooting them) is refused while
/// any instance is a target of any group in any state but `unused`: one
/// the runbook does not name behind another listener, an `ip` group holding
/// its address, and its own group while deregistered targets still drain.
/// Read again right before the stop is sent: registered again meanwhile,
/// refused and audited, nothing stopped. Once drained, it stops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decom_stop_waits_until_no_load_balancer_can_send_the_instances_requests() {
    use aws_sdk::elasticloadbalancingv2::types::{
        Action as ElbAction, ActionTypeEnum, ProtocolEnum, TargetDescription, TargetGroupAttribute, TargetTypeEnum,
    };
    use common::tmux::audit_lines;
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = runbook_with_phases(dir.path(), DRAINED_FIRST);
    let p = path.to_str().unwrap();
    let sb = sandbox(&rb, "ap-southeast-2").await;
    reweight_as_another_client(&sb, &rb, &[("production", 0), ("staging", 100)]).await;
    let prod: Vec<String> =
        sb.world.instances.iter().filter(|i| i.environment == "production").map(|i| i.id.clone()).collect();
    let stop = ["run", p, "decommission/stop-old", "--yes"];
    let deregister = ["run", p, "decommission/deregister-old", "--yes"];
    let reregister = ["run", p, "decommission/deregister-old", "--rollback", "--yes"];

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(2), "{out}");
    for id in &prod {
        assert!(out.contains(&format!("{id} in shop-prod-web (healthy)")), "{out}");
    }
    assert!(out.contains("still targets of a load balancer") && out.contains("deregister them first"), "{out}");
    assert!(all_in(&sb, "production", "running").await, "nothing stopped: {:?}", states(&sb, "production").await);
    // An AMI taken rebooting them would fail those requests too.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/images", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{} in shop-prod-web (healthy)", prod[0])), "{out}");
    assert!(out.contains("and rebooting them for their AMIs would fail those requests"), "{out}");

    // A group the runbook does not name, behind a second listener, with the
    // first instance; an `ip` group behind a third, with the second's address.
    let elb = &sb.clients.elb;
    let (admin, _) = route_a_second_listener_to_a_new_group(&sb, "shop-prod-alb", "shop-prod-admin").await;
    let first = TargetDescription::builder().id(&prod[0]).port(8080).build();
    elb.register_targets().target_group_arn(&admin).targets(first.clone()).send().await.unwrap();
    let lb = elb.describe_load_balancers().names("shop-prod-alb").send().await.unwrap().load_balancers()[0].clone();
    let tasks = elb
        .create_target_group()
        .name("shop-prod-tasks")
        .target_type(TargetTypeEnum::Ip)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(lb.vpc_id().unwrap())
        .send()
        .await
        .unwrap();
    let tasks = tasks.target_groups()[0].target_group_arn().unwrap().to_string();
    let forward = ElbAction::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tasks).build();
    let lb_arn = lb.load_balancer_arn().unwrap();
    elb.create_listener()
        .load_balancer_arn(lb_arn)
        .protocol(ProtocolEnum::Http)
        .port(8082)
        .default_actions(forward)
        .send()
        .await
        .unwrap();
    let described = sb.clients.ec2.describe_instances().instance_ids(&prod[1]).send().await.unwrap();
    let address = described.reservations()[0].instances()[0].private_ip_address().unwrap().to_string();
    let second = TargetDescription::builder().id(&address).port(8080).build();
    elb.register_targets().target_group_arn(&tasks).targets(second.clone()).send().await.unwrap();
    // Its own group drains for ten minutes.
    let delay = |s: &str| TargetGroupAttribute::builder().key("deregistration_delay.timeout_seconds").value(s).build();
    let web = &sb.world.target_groups["production"][0].arn;
    elb.modify_target_group_attributes().target_group_arn(web).attributes(delay("600")).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &deregister).await;
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{} in shop-prod-admin (healthy)", prod[0])), "{out}");
    assert!(out.contains(&format!("{} (as {address}) in shop-prod-tasks (healthy)", prod[1])), "{out}");
    assert!(out.contains(&format!("{} in shop-prod-web (draining)", prod[0])), "{out}");
    assert!(out.contains("deregister them first"), "{out}");
    assert!(all_in(&sb, "production", "running").await, "nothing stopped");

    // Out of both at once; its own group still drains: refused, waiting.
    for (group, target) in [(&admin, first.clone()), (&tasks, second)] {
        elb.modify_target_group_attributes().target_group_arn(group).attributes(delay("0")).send().await.unwrap();
        elb.deregister_targets().target_group_arn(group).targets(target).send().await.unwrap();
    }
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{} in shop-prod-web (draining)", prod[0])), "{out}");
    assert!(!out.contains("shop-prod-admin") && !out.contains("shop-prod-tasks"), "{out}");
    assert!(out.contains("wait until their draining ends"), "{out}");
    assert!(all_in(&sb, "production", "running").await, "nothing stopped");

    // Registered again and out at once (no delay now): drained. Registered
    // again by someone while the stop is confirmed: refused when applied.
    elb.modify_target_group_attributes().target_group_arn(web).attributes(delay("0")).send().await.unwrap();
    for args in [&reregister[..], &deregister[..]] {
        let (code, out) = run_cutover_all(&sb, &rb, dir.path(), args).await;
        assert_eq!(code, Some(0), "{out}");
    }
    let back_in = async {
        elb.register_targets().target_group_arn(&admin).targets(first.clone()).send().await.unwrap();
    };
    let (code, out) = run_cutover_changed_at(&sb, &rb, dir.path(), &stop, "action:confirmed", back_in).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("{} in shop-prod-admin (healthy)", prod[0])), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    let stops = || -> Vec<String> {
        let lines = audit_lines(dir.path(), &rb.name);
        let stop = |l: &&serde_json::Value| l["action"] == "stop_instances production (decommission/stop-old)";
        lines.iter().filter(stop).map(|l| l["stage"].as_str().unwrap().to_string()).collect()
    };
    // Each refusal audited, the three at planning and the one when applied.
    assert_eq!(stops(), ["refused"; 4], "no intent, nothing sent");
    assert!(all_in(&sb, "production", "running").await, "nothing stopped");

    elb.deregister_targets().target_group_arn(&admin).targets(first).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(stops(), ["refused", "refused", "refused", "refused", "intent", "applied"]);
    eventually(Duration::from_secs(30), "old production stopped", || async {
        all_in(&sb, "production", "stopped").await.then_some(())
    })
    .await;
    sb.down().await;
}
