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
    let after = world(&sb).await;
    assert!(after == before, "AWS and Redis are exactly as they were:\n{}", diff_lines(&before, &after));
    sb.down().await;
    record(
        "read-only",
        format!(
            "Headless with `--read-only`: {} commands (every action kind of the runbook format: {}; every rollback; \
             shift, rollout, abort, pause, promote; `redis copy` under each conflict policy) each refused with exit \
             2, and AWS and the target Redis read back byte for byte as before ({} lines compared)",
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
