//! `--read-only` blocks every mutating path: every checklist action kind (and
//! every rollback), weight shifts, rollout start, abort, pause and promote are
//! refused headless, and AWS and Redis are left exactly as they were.

mod common;

use std::path::Path;

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
"#;

/// Everything a mutation could touch, as text: records, groups, target
/// groups and their attributes, instances, and Redis key counts.
async fn world(sb: &Sandbox) -> String {
    let c = &sb.clients;
    let records = c.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    let groups = c.ec2.describe_security_groups().send().await.unwrap();
    let instances = c.ec2.describe_instances().send().await.unwrap();
    let tgs = c.elb.describe_target_groups().send().await.unwrap();
    let mut out = format!("{:?}\n{:?}\n", records.resource_record_sets(), groups.security_groups());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_every_mutation_headless_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let (head, tail) = text.split_once("[sandbox]").unwrap();
    let path = dir.path().join("every.toml");
    std::fs::write(&path, format!("{head}{EVERY_ACTION}\n[sandbox]{tail}")).unwrap();
    let rb = cutover::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sb = sandbox(&rb, "af-south-1").await;
    let p = path.to_str().unwrap();
    let before = world(&sb).await;

    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for phase in &rb.phases {
        for item in &phase.items {
            let key = format!("{}/{}", phase.id, item.id);
            if let ItemKind::Action { action } = &item.kind {
                kinds.insert(cutover::cli::plan::action_name(action).split(' ').next().unwrap().to_string());
                commands.push(vec!["run".into(), p.into(), key.clone(), "--yes".into()]);
            }
            if let Some(rollback) = &item.rollback {
                kinds.insert(cutover::cli::plan::action_name(rollback).split(' ').next().unwrap().to_string());
                commands.push(vec!["run".into(), p.into(), key, "--rollback".into(), "--yes".into()]);
            }
        }
    }
    // Every action kind the runbook format has is among them.
    for k in cutover::runbook::ACTION_KINDS {
        assert!(kinds.contains(k), "no item runs {k}: {kinds:?}");
    }
    for c in [
        &["shift", p, "--to", "30", "--yes"][..],
        &["rollout", p, "--yes"],
        &["abort", p, "--yes"],
        &["pause", p],
        &["promote", p, "--yes"],
    ] {
        commands.push(c.iter().map(|s| s.to_string()).collect());
    }
    let vars: std::collections::BTreeMap<String, String> = sb.env_vars(&rb).into_iter().collect();
    let (from, to) = (&vars["DEMO_PROD_REDIS_URL"], &vars["DEMO_STAGING_REDIS_URL"]);
    for policy in ["fail", "replace", "skip"] {
        commands.push(
            ["redis", "copy", "--from", from, "--to", to, "--on-conflict", policy, "--yes"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
    }
    for c in &commands {
        let mut args = vec!["--read-only"];
        args.extend(c.iter().map(String::as_str));
        let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &args).await;
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        // `run` never runs the gated rollout item, read-only or not: it points to `cutover rollout`.
        let rollout_item = c.iter().any(|a| a == "traffic/rollout") && !c.iter().any(|a| a == "--rollback");
        let why = if rollout_item { "run the gated rollout with `cutover rollout`" } else { "read-only" };
        assert!(err.contains(why), "{args:?} says why: {err}");
    }
    // Every refusal is audited, by `drive::authorise`: one `refused` line per
    // command (`run` of the rollout item, not its rollback, is refused as bad
    // input before that).
    let audited = common::tmux::audit_lines(dir.path(), &rb.name);
    let runbook_commands = commands.iter().filter(|c| {
        c[0] != "redis" && (!c.iter().any(|a| a == "traffic/rollout") || c.iter().any(|a| a == "--rollback"))
    });
    let want: Vec<&str> = runbook_commands
        .map(|c| match c[0].as_str() {
            "shift" => "shift_weights to 30%",
            "rollout" => "rollout start",
            "abort" => "rollout abort",
            "pause" => "rollout pause",
            "promote" => "rollout promote",
            _ => "",
        })
        .collect();
    let got: Vec<String> = audited
        .iter()
        .map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap()))
        .collect();
    assert_eq!(audited.len(), want.len(), "one audit line per refused command: {got:#?}");
    for (line, want) in audited.iter().zip(&want) {
        assert_eq!(line["stage"], "refused", "{line}");
        assert_eq!(line["detail"], "--read-only", "{line}");
        assert!(line["action"].as_str().unwrap().starts_with(want), "{want}: {line}");
    }
    let redis_audit = std::fs::read_to_string(dir.path().join("cutover/redis.audit.jsonl")).unwrap_or_default();
    let redis_refused = redis_audit.lines().filter(|l| l.contains("\"stage\":\"refused\"")).count();
    assert_eq!(redis_refused, 3, "each `redis copy` refusal audited: {redis_audit}");
    let after = world(&sb).await;
    assert!(after == before, "AWS and Redis are exactly as they were:\n{}", diff_lines(&before, &after));
    sb.down().await;
    record(
        "read-only",
        format!(
            "Headless with `--read-only`: {} commands (every action kind of the runbook format: {}; every rollback; \
             shift, rollout, abort, pause, promote; `redis copy` under each conflict policy) each refused with exit \
             2 and audited as `refused`, and AWS and the target Redis read back byte for byte as before ({} lines \
             compared)",
            commands.len(),
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
    tmux.wait_for("the live screen", Duration::from_secs(60), |s| s.contains("READ-ONLY") && s.contains("4/4 healthy"));
    // (keys, the audited action)
    let presses: Vec<(Vec<&str>, &str)> = vec![
        (vec!["w"], "shift_weights"),
        (vec!["R"], "rollout start"),
        (vec!["X"], "rollout abort"),
        (vec!["+"], "rollout promote"),
        (vec!["P"], "rollout pause"),
        // Checklist rows: 6 validate/redis-ingress, 8 validate/copy, 11 traffic/rollout, 15 decommission/stop-old.
        (vec!["5", "j", "j", "j", "j", "j", "j", "Enter"], "authorize_redis_ingress staging (validate/redis-ingress)"),
        (vec!["b"], "revoke_redis_ingress staging (validate/redis-ingress)"),
        (vec!["j", "j", "Enter"], "copy_redis"),
        (vec!["j", "j", "j", "Enter"], "rollout (traffic/rollout)"),
        (vec!["j", "j", "j", "j", "Enter"], "stop_instances production (decommission/stop-old)"),
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
    tmux.keys(&["q"]);
    let start = Instant::now();
    while !marker.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "cutover did not exit; screen:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
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
