//! `--read-only` blocks every mutating path: every checklist action kind (and
//! every rollback), weight shifts, rollout start, abort, pause and promote are
//! refused headless, and AWS and Redis are left exactly as they were.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use cutover::runbook::ItemKind;
use cutover::sandbox::Sandbox;

/// The demo runbook plus a phase with one item of every action kind.
const EVERY_ACTION: &str = r#"
[[phases]]
id = "every"
title = "One of every action"

[[phases.items]]
id = "shift"
title = "shift"
kind = "action"
action = "shift_weights"
to = 50
rollback = { action = "shift_weights", to = 0 }

[[phases.items]]
id = "register"
title = "register"
kind = "action"
action = "register_targets"
environment = "staging"
rollback = { action = "deregister_targets", environment = "staging" }

[[phases.items]]
id = "deregister"
title = "deregister"
kind = "action"
action = "deregister_targets"
environment = "production"

[[phases.items]]
id = "sticky"
title = "sticky"
kind = "action"
action = "set_stickiness"
environment = "staging"
duration = "1h"
rollback = { action = "disable_stickiness", environment = "staging" }

[[phases.items]]
id = "unsticky"
title = "unsticky"
kind = "action"
action = "disable_stickiness"
environment = "production"

[[phases.items]]
id = "revoke"
title = "revoke"
kind = "action"
action = "revoke_redis_ingress"
environment = "staging"

[[phases.items]]
id = "start"
title = "start"
kind = "action"
action = "start_instances"
environment = "staging"

[[phases.items]]
id = "images"
title = "images"
kind = "action"
action = "create_image"
environment = "production"

[[phases.items]]
id = "redis-snapshot"
title = "redis snapshot"
kind = "action"
action = "snapshot_redis"
redis = "prod-cache"

[[phases.items]]
id = "terminate"
title = "terminate"
kind = "action"
action = "terminate_instances"
environment = "production"
not_before = { after = "decommission/stop-old", wait = "1s" }

[[phases.items]]
id = "groups"
title = "groups"
kind = "action"
action = "delete_security_groups"
environment = "production"
security_groups = ["prod-redis"]
"#;

/// Everything a mutation could touch, as text: records, groups, target
/// groups and their attributes, instances, and Redis key counts.
async fn world(sb: &Sandbox) -> String {
    let c = &sb.clients;
    let records = c.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    let groups = c.ec2.describe_security_groups().send().await.unwrap();
    let instances = c.ec2.describe_instances().send().await.unwrap();
    let tgs = c.elb.describe_target_groups().send().await.unwrap();
    let images = c.ec2.describe_images().owners("self").send().await.unwrap();
    let snapshots = c.elasticache.describe_snapshots().send().await.unwrap();
    let mut out = format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n",
        records.resource_record_sets(),
        groups.security_groups(),
        images.images(),
        snapshots.snapshots()
    );
    for r in instances.reservations() {
        for i in r.instances() {
            out += &format!("{:?} {:?}\n", i.instance_id(), i.state().and_then(|s| s.name()));
        }
    }
    for tg in tgs.target_groups() {
        let arn = tg.target_group_arn().unwrap();
        let health = c.elb.describe_target_health().target_group_arn(arn).send().await.unwrap();
        let attrs = c.elb.describe_target_group_attributes().target_group_arn(arn).send().await.unwrap();
        out += &format!("{arn} {:?} {:?}\n", health.target_health_descriptions(), attrs.attributes());
    }
    // The copy's target; the source's count moves with the sandbox's own traffic.
    for (name, url) in sb.env_vars(&runbook("demo.toml")).iter().filter(|(k, _)| k.contains("STAGING_REDIS")) {
        let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let n: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        out += &format!("{name} {n} keys\n");
    }
    out
}

/// Refuses `cmd` under `--read-only` (exit 2, the reason said) and checks
/// that it would have changed something: a `run` item's dry run (without
/// `--read-only`) plans a change, not "nothing to do".
async fn refused(sb: &Sandbox, rb: &cutover::runbook::Runbook, state: &Path, cmd: &[String]) {
    let strs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    if strs[0] == "run" {
        let dry: Vec<&str> = strs.iter().map(|a| if *a == "--yes" { "--dry-run" } else { a }).collect();
        let scratch = tempfile::tempdir().unwrap();
        let (code, out, err) = run_cutover(sb, rb, scratch.path(), &dry).await;
        // An action taking a side out of service is refused by its own guard
        // while Route53 sends that side traffic (both sides do here: 90/10);
        // --read-only must refuse it all the same, and first.
        // So is a shift onto a side with no target in service (one of
        // staging's is stopped here).
        let guarded = code == Some(2) && (err.contains("Route53 still sends") || err.contains("no target in service"));
        assert!(code == Some(0) || guarded, "{dry:?}: {out}{err}");
        assert!(!out.contains("nothing to do"), "{strs:?} would change nothing from this state: {out}");
    }
    let mut args = vec!["--read-only"];
    args.extend(&strs);
    let (code, out, err) = run_cutover(sb, rb, state, &args).await;
    assert_eq!(code, Some(2), "{args:?}: {out}{err}");
    assert!(err.contains("read-only"), "{args:?} says why: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_every_mutation_headless_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let (head, tail) = text.split_once("[sandbox]").unwrap();
    // prod-cache an ElastiCache replication group, for snapshot_redis.
    let head = head.replacen(r#"["prod-redis"] }"#, r#"["prod-redis"], elasticache = "prod-cache" }"#, 1);
    let path = dir.path().join("every.toml");
    std::fs::write(&path, format!("{head}{EVERY_ACTION}\n[sandbox]{tail}")).unwrap();
    let rb = cutover::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sb = sandbox(&rb, "af-south-1").await;
    let p = path.to_str().unwrap();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let mut refusals = 0;

    // Pause and promote act on a running rollout: start one (one alarm gate,
    // a long soak, the same runbook name) and refuse both while it soaks.
    let gated = dir.path().join("gated.toml");
    let (rollout_head, rest) = text.split_once("[[rollout.gates]]").unwrap();
    let alarms = &rest[rest.find("[[alarms]]").unwrap()..];
    std::fs::write(
        &gated,
        format!(
            "{}[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-5xx\"]\nlag = \"3s\"\nno_data = \"pass\"\n\n{alarms}",
            rollout_head.replace("soak = \"30s\"", "soak = \"10m\"").replace("ttl = 10\n", "ttl = 1\n")
        ),
    )
    .unwrap();
    let g = gated.to_str().unwrap();
    let mut rollout = KillOnDrop(Some(cutover_command(&sb, &rb, &state, &["rollout", g, "--yes"]).spawn().unwrap()));
    let state_file = state.join("cutover/demo.rollout.json");
    let soaking = || {
        std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["engine"]["phase"]["phase"] == "soaking")
    };
    eventually(Duration::from_secs(60), "the rollout to soak step 1", || async { soaking().then_some(()) }).await;
    let before = world(&sb).await;
    for c in [s(&["pause", g]), s(&["promote", g, "--yes"])] {
        refused(&sb, &rb, &state, &c).await;
        refusals += 1;
    }
    for req in ["pause", "promote"] {
        assert!(!state.join(format!("cutover/demo.{req}-request")).exists(), "no {req} request was left");
    }
    assert!(soaking(), "the rollout still soaks its step");
    assert!(rollout.get().try_wait().unwrap().is_none(), "the rollout still runs");
    assert_eq!(before, world(&sb).await, "nothing changed while the rollout soaked");
    let mut killed = rollout.take();
    killed.kill().unwrap();
    killed.wait().unwrap();

    // A state from which every other change would change something: weights
    // off the initial ones (step 1 of the rollout above left 90/10), one
    // staging target deregistered, one staging and one production instance
    // stopped, the other production instance deregistered, both sides
    // sticky, and the rollout's state saved mid-soak.
    let staging = sb.world.instances.iter().filter(|i| i.environment == "staging").collect::<Vec<_>>();
    let tg = |env: &str| sb.world.target_groups[env][0].arn.clone();
    // Deregistered targets drain for 50 minutes, so no reading below sees one end.
    for env in ["production", "staging"] {
        let delay = aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute::builder()
            .key("deregistration_delay.timeout_seconds")
            .value("3000")
            .build();
        sb.clients
            .elb
            .modify_target_group_attributes()
            .target_group_arn(tg(env))
            .attributes(delay)
            .send()
            .await
            .unwrap();
    }
    sb.clients
        .elb
        .deregister_targets()
        .target_group_arn(tg("staging"))
        .targets(
            aws_sdk::elasticloadbalancingv2::types::TargetDescription::builder().id(&staging[0].id).port(8080).build(),
        )
        .send()
        .await
        .unwrap();
    sb.clients.ec2.stop_instances().instance_ids(&staging[1].id).send().await.unwrap();
    // Production's Redis node gone (its interface deleted): its group could be deleted.
    let node = &sb.world.redis_interfaces["prod-cache"];
    sb.clients.ec2.delete_network_interface().network_interface_id(node).send().await.unwrap();
    // One production instance stopped too: stopping the others and starting it both change something.
    let production = sb.world.instances.iter().find(|i| i.environment == "production").unwrap();
    sb.clients.ec2.stop_instances().instance_ids(&production.id).send().await.unwrap();
    // The running one out of its group: deregistering (the stopped one) and
    // registering again (the running one) both change something.
    let running = sb.world.instances.iter().find(|i| i.environment == "production" && i.id != production.id).unwrap();
    sb.clients
        .elb
        .deregister_targets()
        .target_group_arn(tg("production"))
        .targets(
            aws_sdk::elasticloadbalancingv2::types::TargetDescription::builder().id(&running.id).port(8080).build(),
        )
        .send()
        .await
        .unwrap();
    // Both sides sticky for 24 h: setting 1 h and disabling it both change something.
    for env in ["production", "staging"] {
        let attr = |k: &str, v: &str| {
            aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute::builder().key(k).value(v).build()
        };
        sb.clients
            .elb
            .modify_target_group_attributes()
            .target_group_arn(tg(env))
            .attributes(attr("stickiness.enabled", "true"))
            .attributes(attr("stickiness.type", "lb_cookie"))
            .attributes(attr("stickiness.lb_cookie.duration_seconds", "86400"))
            .send()
            .await
            .unwrap();
    }

    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut later: Vec<Vec<String>> = Vec::new();
    let mut when_all_stopped: Vec<Vec<String>> = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for phase in &rb.phases {
        for item in &phase.items {
            let key = format!("{}/{}", phase.id, item.id);
            if let ItemKind::Action { action } = &item.kind {
                let kind = action.kind().to_string();
                let cmd = s(&["run", p, &key, "--yes"]);
                match kind.as_str() {
                    // The gated rollout runs as `cutover rollout` (below), never through `run`.
                    "rollout" => {}
                    // Needs a rule cutover added: after the authorize item has been refused.
                    "revoke_redis_ingress" => later.push(cmd),
                    // Terminates only stopped instances: after every production instance is stopped.
                    "terminate_instances" => when_all_stopped.push(cmd),
                    _ => commands.push(cmd),
                }
                kinds.insert(kind);
            }
            if let Some(rollback) = &item.rollback {
                let kind = rollback.kind().to_string();
                let cmd = s(&["run", p, &key, "--rollback", "--yes"]);
                if kind == "revoke_redis_ingress" {
                    later.push(cmd)
                } else {
                    commands.push(cmd)
                }
                kinds.insert(kind);
            }
        }
    }
    // Every action kind the runbook format has is among them.
    for k in cutover::runbook::ACTION_KINDS {
        assert!(kinds.contains(k), "no item runs {k}: {kinds:?}");
    }
    for c in [&["shift", p, "--to", "30", "--yes"][..], &["rollout", p, "--yes", "--restart"], &["abort", p, "--yes"]] {
        commands.push(s(c));
    }
    let vars: std::collections::BTreeMap<String, String> = sb.env_vars(&rb).into_iter().collect();
    let (from, to) = (&vars["DEMO_PROD_REDIS_URL"], &vars["DEMO_STAGING_REDIS_URL"]);
    for policy in ["fail", "replace", "skip"] {
        commands.push(s(&["redis", "copy", "--from", from, "--to", to, "--on-conflict", policy, "--yes"]));
    }
    let before = world(&sb).await;
    for c in &commands {
        refused(&sb, &rb, &state, c).await;
    }
    let after = world(&sb).await;
    assert!(after == before, "AWS and Redis are exactly as they were:\n{}", diff_lines(&before, &after));

    // A rule cutover added (through another state dir), so revoking it would change something.
    let setup = dir.path().join("setup");
    let (code, out, err) = run_cutover(&sb, &rb, &setup, &["run", p, "validate/redis-ingress", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let before = world(&sb).await;
    for c in &later {
        refused(&sb, &rb, &state, c).await;
    }
    let after = world(&sb).await;
    assert!(after == before, "AWS is exactly as it was:\n{}", diff_lines(&before, &after));
    commands.extend(later);

    // Every production instance stopped, so terminating them would change something.
    for i in sb.world.instances.iter().filter(|i| i.environment == "production") {
        sb.clients.ec2.stop_instances().instance_ids(&i.id).send().await.unwrap();
    }
    let before = world(&sb).await;
    for c in &when_all_stopped {
        refused(&sb, &rb, &state, c).await;
    }
    let after = world(&sb).await;
    assert!(after == before, "AWS is exactly as it was:\n{}", diff_lines(&before, &after));
    commands.extend(when_all_stopped);
    refusals += commands.len();

    // Every refusal is audited, by `authority::authorise`: one `refused` line per
    // command, beside the lines of the rollout that ran.
    let audited: Vec<serde_json::Value> =
        common::tmux::audit_lines(&state, &rb.name).into_iter().filter(|l| l["stage"] == "refused").collect();
    let redis_audit = std::fs::read_to_string(state.join("cutover/redis.audit.jsonl")).unwrap_or_default();
    let redis_refused = redis_audit.lines().filter(|l| l.contains("\"stage\":\"refused\"")).count();
    assert_eq!(redis_refused, 3, "each `redis copy` refusal audited: {redis_audit}");
    assert_eq!(audited.len() + redis_refused, refusals, "one `refused` line per refused command: {audited:#?}");
    for line in &audited {
        assert_eq!(line["detail"], "--read-only", "{line}");
    }
    sb.down().await;
    record(
        "read-only",
        format!(
            "Headless with `--read-only`: {refusals} commands (every action kind of the runbook format: {}; every \
             rollback; shift, rollout, abort; pause and promote while a rollout soaked; `redis copy` under each \
             conflict policy), each started from a state in which it would have changed something (a `run` item's \
             dry run planned a change), each refused with exit 2 and audited as `refused`; AWS and the target \
             Redis read back byte for byte as before ({} lines compared) and the running rollout kept soaking",
            kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            before.lines().count()
        ),
    );
}

fn diff_lines(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("- {x}\n+ {y}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `--read-only` in the cockpit, in a real terminal against the sandbox:
/// every key and popup that changes something (w, R, X, +, P, Enter on each
/// checklist action, b on a rollback) says it is refused and writes a
/// `refused` audit line, and AWS and Redis are left as they were.
#[test]
fn read_only_in_the_cockpit_refuses_and_audits_every_change() {
    use common::tmux::{Tmux, audit_lines, cockpit_script};
    use std::time::{Duration, Instant};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = runbook("demo.toml");
    let sb = rt.block_on(sandbox(&rb, "eu-south-1"));
    let before = rt.block_on(world(&sb));
    let marker = dir.path().join("exited");
    let script = cockpit_script(&sb, &rb, dir.path(), &["--read-only", "tui", "runbooks/demo.toml"], &marker);
    let tmux = Tmux { socket: format!("cutover-read-only-{}", std::process::id()) };
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "200", "-y", "50", &format!("sh {}", script.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.wait_for("the live screen", Duration::from_secs(60), |s| s.contains("READ-ONLY") && s.contains("3/4 healthy"));
    // (keys, the audited action)
    let presses: Vec<(Vec<&str>, &str)> = vec![
        (vec!["w"], "shift_weights"),
        (vec!["R"], "rollout start"),
        (vec!["X"], "rollout abort"),
        (vec!["+"], "rollout promote"),
        (vec!["P"], "rollout pause"),
        // Checklist rows: 6 validate/redis-ingress, 8 validate/copy, 11 traffic/rollout, 16 decommission/stop-old.
        (vec!["5", "j", "j", "j", "j", "j", "j", "Enter"], "authorize_redis_ingress staging (validate/redis-ingress)"),
        (vec!["b"], "revoke_redis_ingress staging (validate/redis-ingress)"),
        (vec!["j", "j", "Enter"], "copy_redis"),
        (vec!["j", "j", "j", "Enter"], "rollout (traffic/rollout)"),
        (vec!["j", "j", "j", "j", "j", "Enter"], "stop_instances production (decommission/stop-old)"),
    ];
    for (i, (keys, action)) in presses.iter().enumerate() {
        tmux.keys(keys);
        let start = Instant::now();
        let audit = loop {
            let audit = audit_lines(dir.path(), &rb.name);
            if audit.len() > i || start.elapsed() > Duration::from_secs(15) {
                break audit;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(audit.len(), i + 1, "one audit line per refusal, after {keys:?}: {audit:#?}");
        assert_eq!(audit[i]["stage"], "refused", "{}", audit[i]);
        assert_eq!(audit[i]["detail"], "--read-only", "{}", audit[i]);
        assert!(audit[i]["action"].as_str().unwrap().starts_with(action), "{action}: {}", audit[i]);
        assert!(tmux.screen().contains("refused: read-only"), "the refusal on screen after {keys:?}");
    }
    let s = tmux.screen();
    assert!(!s.contains("confirm a change") && !s.contains("shift weights:"), "no popup opened:\n{s}");
    tmux.quit(&marker);
    let after = rt.block_on(world(&sb));
    assert!(after == before, "AWS and Redis are exactly as they were:\n{}", diff_lines(&before, &after));
    rt.block_on(sb.down());
    record(
        "read-only",
        format!(
            "The cockpit with `--read-only` in a real terminal: {} changes (w, R, X, +, P, Enter on each of the 4 \
             checklist actions, b on a rollback) each refused on screen with one `refused` audit line, and AWS and \
             Redis read back as before",
            presses.len()
        ),
    );
}
