//! `cutover run` for checklist actions against the sandbox. Effects are read
//! back through the AWS SDK or observed through the instances themselves.

mod common;

use std::time::Duration;

use common::*;
use cutover::sandbox::Sandbox;

async fn health_ok(sb: &Sandbox, name: &str) -> bool {
    let url = &sb.world.instances.iter().find(|i| i.name == name).unwrap().health_url;
    reqwest::get(url).await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizing_the_named_rule_heals_the_wrong_security_group_instance_and_the_rollback_undoes_it() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-east-2").await;
    let dir = tempfile::tempdir().unwrap();
    let blocked = |snap: &cutover::status::Snapshot| {
        snap.environment("staging")
            .unwrap()
            .aws
            .value
            .as_ref()
            .unwrap()
            .instances
            .iter()
            .filter(|i| i.sg_paths.values().any(|p| !p.is_allowed()))
            .count()
    };
    assert_eq!(blocked(&first_snapshot(&rb, &sb).await), 1);

    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", "validate/redis-ingress", "--dry-run"])
            .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "step: allow 6379 from {} on {}",
            sb.world.groups["staging-batch"], sb.world.groups["staging-redis"]
        )),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was sent"));
    assert!(!health_ok(&sb, "staging-web-2").await, "a dry run changes nothing");

    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", "validate/redis-ingress", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    // The next poll sees the path open, and the instance really reaches Redis.
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(blocked(&snap), 0);
    eventually(Duration::from_secs(10), "staging-web-2's /health", || async {
        health_ok(&sb, "staging-web-2").await.then_some(())
    })
    .await;

    // Running it again is a no-op, not a duplicate rule.
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", "validate/redis-ingress", "--yes"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing to do"), "{out}");

    // The rollback revokes exactly what cutover added.
    let (code, out) = run_cutover_all(
        &sb,
        &rb,
        dir.path(),
        &["run", "runbooks/demo.toml", "validate/redis-ingress", "--rollback", "--yes"],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(blocked(&first_snapshot(&rb, &sb).await), 1);
    let staging_app_rule =
        sb.clients.ec2.describe_security_groups().group_ids(&sb.world.groups["staging-redis"]).send().await.unwrap();
    let sources: Vec<String> = staging_app_rule.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| p.user_id_group_pairs().iter().filter_map(|u| u.group_id().map(str::to_string)))
        .collect();
    assert_eq!(sources, vec![sb.world.groups["staging-app"].clone()], "the runbook's own rule is untouched");
    let stages: Vec<String> = std::fs::read_to_string(dir.path().join("cutover/demo.audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, ["intent", "applied", "intent", "applied"]);
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stickiness_registration_and_stopping_instances_do_what_they_say() {
    let rb = runbook("staging-parity.toml");
    let sb = sandbox(&rb, "eu-west-3").await;
    let dir = tempfile::tempdir().unwrap();
    let p = "runbooks/staging-parity.toml";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/sticky", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let tg = &sb.world.target_groups["staging"][0].arn;
    let attrs = sb.clients.elb.describe_target_group_attributes().target_group_arn(tg).send().await.unwrap();
    let get =
        |k: &str| attrs.attributes().iter().find(|a| a.key() == Some(k)).and_then(|a| a.value()).map(str::to_string);
    assert_eq!(
        (get("stickiness.enabled"), get("stickiness.type"), get("stickiness.lb_cookie.duration_seconds")),
        (Some("true".into()), Some("lb_cookie".into()), Some("86400".into()))
    );

    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--rollback", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    // Deregistered targets stay listed as draining for the group's delay
    // (300 s), as AWS lists them; registering them again within it is the
    // rollback's usual moment, and must register them, not call them there.
    let states = || async {
        let health = sb.clients.elb.describe_target_health().target_group_arn(tg).send().await.unwrap();
        let state = |d: &aws_sdk::elasticloadbalancingv2::types::TargetHealthDescription| {
            d.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_string()).unwrap_or_default()
        };
        health.target_health_descriptions().iter().map(state).collect::<Vec<_>>()
    };
    assert_eq!(states().await, ["draining", "draining"], "deregistered");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("already registered"), "{out}");
    let now = states().await;
    assert!(now.len() == 2 && !now.iter().any(|s| s == "draining"), "registered again: {now:?}");
    // AWS registers running instances only: a stopped one is left out, and said.
    let stopped = sb.world.instances.iter().find(|i| i.environment == "staging").unwrap().id.clone();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--rollback", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    sb.clients.ec2.stop_instances().instance_ids(&stopped).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("not registered, not running: {stopped} stopped")), "{out}");
    assert_eq!(states().await.iter().filter(|s| *s != "draining").count(), 1, "the running one registered");
    // Run again with a stopped spare: nothing to do, and said so.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("every running instance of staging is already registered (not running, so not registered: ")
            && out.contains(&format!("{stopped} stopped")),
        "{out}"
    );
    // Every instance stopped and none registered: the group would serve nothing.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--rollback", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let all: Vec<String> =
        sb.world.instances.iter().filter(|i| i.environment == "staging").map(|i| i.id.clone()).collect();
    sb.clients.ec2.stop_instances().set_instance_ids(Some(all.clone())).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("refused: target group shop-staging-web would hold no target"), "{out}");
    sb.clients.ec2.start_instances().set_instance_ids(Some(all)).send().await.unwrap();
    sb.down().await;

    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ca-central-1").await;
    let (code, _) = run_cutover_all(
        &sb,
        &rb,
        dir.path(),
        &["--read-only", "run", "runbooks/demo.toml", "decommission/stop-old", "--yes"],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(health_ok(&sb, "prod-web-1").await, "read-only stopped nothing");
    // Old production still has its weight: stopping it would take its traffic down.
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "refused: Route53 still sends production traffic (its weighted CNAME record `prod` of app.demo.cutover.test has weight 100), and stopping its instances would take that traffic down"
        ),
        "{out}"
    );
    assert!(health_ok(&sb, "prod-web-1").await, "nothing stopped while it had weight");
    // Every record at 0: Route53 then shares traffic equally, so production has some.
    set_weights_as_another_client(&sb, &rb, &[("prod", 0), ("staging", 0)]).await;
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("every weighted CNAME record of app.demo.cutover.test has weight 0, and Route53 then sends each of them an equal share"),
        "{out}"
    );
    assert!(out.contains("put the weight on another record first"), "{out}");
    assert!(health_ok(&sb, "prod-web-1").await, "nothing stopped while it had an equal share");
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "100", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    // Resolvers hold the answer from before the shift (its equal share) for
    // the records' TTL (10 s) past INSYNC: not stopped until then.
    let stop_old = ["run", "runbooks/demo.toml", "decommission/stop-old", "--yes"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop_old).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "resolvers may still send production traffic: its share was taken by shift_weights to 100% (INSYNC at "
        ) && out.contains("they keep the answer from before for its TTL of 10 s, until "),
        "{out}"
    );
    assert_eq!(instance_states(&sb, "production").await, ["running", "running"], "nothing stopped yet");
    // The TTL by AWS's clock, read from `Date`s of whole seconds: up to two more.
    tokio::time::sleep(Duration::from_secs(13)).await;
    // Still targets of its load balancer: refused until drained out of it.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop_old).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("in demo-prod-web (healthy)") && out.contains("deregister them first"), "{out}");
    let delay = aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute::builder()
        .key("deregistration_delay.timeout_seconds")
        .value("0")
        .build();
    let prod_tg = &sb.world.target_groups["production"][0].arn;
    sb.clients.elb.modify_target_group_attributes().target_group_arn(prod_tg).attributes(delay).send().await.unwrap();
    let deregister = ["run", "runbooks/demo.toml", "decommission/deregister-old", "--yes"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &deregister).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &stop_old).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(instance_states(&sb, "production").await, ["stopped", "stopped"]);
    eventually(Duration::from_secs(10), "the stopped app to stop answering", || async {
        (!health_ok(&sb, "prod-web-1").await).then_some(())
    })
    .await;
    // Its weight back onto instances stopped and out of their group would send every user to 503s:
    // refused, whether typed as a shift or planned as a dry run; the shift's refusal is audited.
    for extra in ["--yes", "--dry-run"] {
        let lines = tmux::audit_lines(dir.path(), &rb.name).len();
        let (code, out) =
            run_cutover_all(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "0", extra]).await;
        assert_eq!(code, Some(2), "{extra}: {out}");
        assert!(
            out.contains("refused: raising production's weight from 0 to 100 would send that traffic to target group demo-prod-web, which has no target in service (none registered)")
                && out.contains("start or register healthy instances first; nothing was changed"),
            "{extra}: {out}"
        );
        let audited = tmux::audit_lines(dir.path(), &rb.name);
        let new: Vec<(&str, &str)> = audited[lines..]
            .iter()
            .map(|l| (l["action"].as_str().unwrap_or_default(), l["stage"].as_str().unwrap_or_default()))
            .collect();
        let expected: &[(&str, &str)] = if extra == "--yes" { &[("shift_weights to 0%", "refused")] } else { &[] };
        assert_eq!(new, expected, "{extra}: {:?}", &audited[lines..]);
        if extra == "--yes" {
            let detail = audited.last().unwrap()["detail"].as_str().unwrap_or_default().to_string();
            assert!(detail.contains("would send that traffic to target group demo-prod-web"), "{detail}");
        }
    }
    // Both sides at 0 beside a record the runbook does not list, at 100: an
    // even split raises production's share from nothing to a quarter, onto
    // stopped instances. Refused too (judged on the two weights alone, 0/0
    // to 50/50 raised neither side's share, and was sent).
    let ttl = rb.dns.ttl;
    upsert_records_as_another_client(&sb, &rb, &[("prod", 0, ttl), ("staging", 0, ttl), ("maint", 100, ttl)]).await;
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "50", "--dry-run"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("refused: raising production's weight from 0 to 50 would send that traffic to target group demo-prod-web, which has no target in service (none registered)"),
        "{out}"
    );
    upsert_records_as_another_client(&sb, &rb, &[("staging", 100, ttl), ("maint", 0, ttl)]).await;
    let (code, out) = run_cutover_all(
        &sb,
        &rb,
        dir.path(),
        &["run", "runbooks/demo.toml", "decommission/stop-old", "--rollback", "--yes"],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(instance_states(&sb, "production").await, ["running", "running"]);
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &[&deregister[..3], &["--rollback", "--yes"]].concat()).await;
    assert_eq!(code, Some(0), "registered again: {out}");
    // At once, its apps maybe not answering yet: traffic going back to the
    // old side is never held back by their health checks.
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "0", "--yes"]).await;
    assert_eq!(code, Some(0), "started again, production takes its weight back: {out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", "validate/redis"]).await;
    assert_eq!(code, Some(2));
    assert!(out.contains("is not an action"), "{out}");
    sb.down().await;
}

/// A target just registered is `initial` (Elb.RegistrationInProgress)
/// until its health checks pass, the group's interval × healthy threshold
/// (moto: healthy at once; the proxy keeps it so for `registration_ms`),
/// and its load balancer sends it nothing: a shift raising a side whose
/// targets are all `initial` is refused, saying to wait, and goes once
/// they have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_onto_targets_still_initial_after_their_registration_is_refused_until_they_pass() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-central-2").await;
    let dir = tempfile::tempdir().unwrap();
    let tg = sb.world.target_groups["staging"][0].arn.clone();
    let elb = &sb.clients.elb;
    let health = elb.describe_target_health().target_group_arn(&tg).send().await.unwrap();
    let targets: Vec<_> = health.target_health_descriptions().iter().filter_map(|d| d.target().cloned()).collect();
    assert_eq!(targets.len(), 2, "{health:?}");
    // Taken out of the group and registered again, as a deregistration's rollback does.
    elb.deregister_targets().target_group_arn(&tg).set_targets(Some(targets.clone())).send().await.unwrap();
    let window = Duration::from_secs(10);
    sb.faults.registration_ms.store(window.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    elb.register_targets().target_group_arn(&tg).set_targets(Some(targets)).send().await.unwrap();
    let registered = std::time::Instant::now();
    let shift = ["shift", "runbooks/demo.toml", "--to", "50", "--dry-run"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &shift).await;
    assert!(registered.elapsed() < window, "judged within the window");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(
            "refused: raising staging's weight from 0 to 50 would send that traffic to target group \
             demo-staging-web, which has no target in service ("
        ) && out.contains(" initial (Elb.RegistrationInProgress)")
            && out.contains("wait until its `initial` targets pass their health checks"),
        "{out}"
    );
    tokio::time::sleep(window.saturating_sub(registered.elapsed())).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &shift).await;
    assert_eq!(code, Some(0), "their checks passed: {out}");
    sb.down().await;
}

/// Old production selected by `App = demo` alone, a tag staging's instances
/// carry too: stop-old would stop staging, now serving every request. The
/// runbook is refused where the selector stands (one set of tags within the
/// other); and the action itself, reading the instances, refuses naming the
/// instances both select (tags added since get there past validation), and
/// nothing is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_selector_also_selects_the_other_sides_instances_is_refused() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "sa-east-1").await;
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let broad = text.replace(
        r#"instances = { tags = { App = "demo", Environment = "production" } }"#,
        r#"instances = { tags = { App = "demo" } }"#,
    );
    assert_ne!(broad, text);
    let path = dir.path().join("broad.toml");
    std::fs::write(&path, &broad).unwrap();
    let p = path.to_str().unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["validate", p]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("the instance tags of `staging` and `production` are one within the other"), "{out}");
    // Past validation: a tag of production's own selector that staging's
    // instances get later (tagged by hand), so both select them.
    let tiered = broad.replace(
        r#"instances = { tags = { App = "demo" } }"#,
        r#"instances = { tags = { App = "demo", Tier = "web" } }"#,
    );
    std::fs::write(&path, tiered).unwrap();
    let all: Vec<String> = sb.world.instances.iter().map(|i| i.id.clone()).collect();
    let tier = aws_sdk::ec2::types::Tag::builder().key("Tier").value("web").build();
    sb.clients.ec2.create_tags().set_resources(Some(all)).tags(tier).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["shift", p, "--to", "100", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "decommission/stop-old", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}");
    for i in sb.world.instances.iter().filter(|i| i.environment == "staging") {
        assert!(out.contains(&format!("{} ({})", i.id, i.name)), "{}: {out}", i.name);
    }
    assert!(out.contains("selected by both production and staging"), "{out}");
    for name in ["staging-web-1", "prod-web-1"] {
        assert!(health_ok(&sb, name).await, "{name} still answers: nothing stopped");
    }
    sb.down().await;
}

/// Targets registered on a port other than the group's (a port override):
/// AWS matches a target by id and port, and answers success for one it does
/// not have, so a deregistration by id alone left them in service while the
/// audit said applied. Each is deregistered on the port it was registered on,
/// and registered again on that port: on the group's own it would fail its
/// health checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_registered_on_another_port_than_the_groups_are_deregistered_and_registered_again_on_it() {
    use aws_sdk::elasticloadbalancingv2::types::TargetDescription;
    let rb = runbook("staging-parity.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let dir = tempfile::tempdir().unwrap();
    let p = "runbooks/staging-parity.toml";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let tg = &sb.world.target_groups["staging"][0].arn;
    let listed = || async {
        let h = sb.clients.elb.describe_target_health().target_group_arn(tg).send().await.unwrap();
        // Draining ones (deregistered, the delay not over) are no longer targets.
        let draining = |d: &&aws_sdk::elasticloadbalancingv2::types::TargetHealthDescription| {
            d.target_health().and_then(|h| h.state()).is_some_and(|s| s.as_str() == "draining")
        };
        h.target_health_descriptions()
            .iter()
            .filter(|d| !draining(d))
            .map(|d| (d.target().unwrap().id().unwrap().to_string(), d.target().unwrap().port()))
            .collect::<Vec<_>>()
    };
    // The first moved to port 9090 by another client; the other left on the group's port.
    let registered = listed().await;
    assert_eq!(registered.len(), 2, "{registered:?}");
    let group_port = registered[1].1;
    assert_ne!(group_port, Some(9090));
    let (id, port) = &registered[0];
    let at = |p: Option<i32>| TargetDescription::builder().id(id).set_port(p).build();
    sb.clients.elb.deregister_targets().target_group_arn(tg).targets(at(*port)).send().await.unwrap();
    sb.clients.elb.register_targets().target_group_arn(tg).targets(at(Some(9090))).send().await.unwrap();
    let moved = vec![(registered[0].0.clone(), Some(9090)), registered[1].clone()];
    let sorted = |mut v: Vec<(String, Option<i32>)>| {
        v.sort();
        v
    };
    assert_eq!(sorted(listed().await), sorted(moved.clone()));
    // No deregistration delay: nothing is left listed draining, on its port, to register like.
    let delay = aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute::builder()
        .key("deregistration_delay.timeout_seconds")
        .value("0")
        .build();
    sb.clients.elb.modify_target_group_attributes().target_group_arn(tg).attributes(delay).send().await.unwrap();
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--rollback", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("{id}:9090")), "the plan names each target's port: {out}");
    assert_eq!(listed().await, [], "every target deregistered");
    // Registered again: each where it was.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "shape/register", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("register {id} on port 9090 in")), "{out}");
    assert_eq!(sorted(listed().await), sorted(moved), "each registered on the port it was deregistered from");
    sb.down().await;
}

/// Route53 answers with the records at weight 0 once every record above 0 is
/// unhealthy. Production at 0 beside staging at 100 whose health check fails
/// gets every user, so stopping it is refused (and while the check cannot be
/// read, too); once staging's check passes, stop-old goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_at_weight_0_that_route53_falls_back_to_is_not_taken_out_of_service() {
    use aws_sdk::route53::types::{Change, ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-6").await;
    let dir = tempfile::tempdir().unwrap();
    let set_records = |records: [(&'static str, i64, Option<String>); 2]| {
        let changes = records
            .into_iter()
            .map(|(id, w, check)| {
                let set = ResourceRecordSet::builder()
                    .name(&rb.dns.record)
                    .r#type(RrType::from(rb.dns.record_type.as_str()))
                    .set_identifier(id)
                    .weight(w)
                    .ttl(i64::from(rb.dns.ttl))
                    .set_health_check_id(check)
                    .resource_records(ResourceRecord::builder().value(format!("{id}.example.test")).build().unwrap())
                    .build()
                    .unwrap();
                Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().unwrap()
            })
            .collect();
        send_changes_as_another_client(&sb, changes)
    };
    // staging-web-2's /health answers 503 until its Redis path is opened.
    let port = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap().app_port;
    let hc = loopback_health_check(&sb, port, "staging-web-2").await;
    set_records([("prod", 0, None), ("staging", 100, Some(hc.clone()))]).await;
    let stop_old = ["run", "runbooks/demo.toml", "decommission/stop-old"];
    drained_out_of_target_groups(&sb, "production").await;
    for extra in ["--yes", "--dry-run"] {
        let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &[&stop_old[..], &[extra]].concat()).await;
        assert_eq!(code, Some(2), "{extra}: {out}");
        assert!(
            out.contains(
                "Route53 still sends production traffic although its weighted CNAME record `prod` of app.demo.cutover.test has weight 0: every record weighted above 0 is unhealthy (`staging`: health check "
            ) && out.contains(" fails (0 of 1 checkers healthy: Failure: HTTP Status Code 503)")
                && out.contains("so stopping its instances would take that traffic down; make `staging` healthy first"),
            "{extra}: {out}"
        );
    }
    assert_eq!(instance_states(&sb, "production").await, ["running", "running"], "nothing stopped");
    // The check's status unreadable: unknown, so refused as well.
    sb.faults.deny_health_check_status.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &[&stop_old[..], &["--yes"]].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("whether Route53 still sends production traffic is unknown: its weighted CNAME record `prod` of app.demo.cutover.test has weight 0")
            && out.contains("every record weighted above 0 (`staging`) is unhealthy, and cutover cannot tell whether they are (`staging`: health check ")
            && out.contains("could not be judged (")
            && out.contains("AccessDenied"),
        "{out}"
    );
    sb.faults.deny_health_check_status.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(instance_states(&sb, "production").await, ["running", "running"], "nothing stopped");
    // production's own record failing its check too: Route53 sends it
    // nothing either way (with every record unhealthy it answers by weight),
    // so the plan goes through.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prod_check = loopback_health_check(&sb, closed, "closed-port").await;
    set_records([("prod", 0, Some(prod_check)), ("staging", 100, Some(hc.clone()))]).await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &[&stop_old[..], &["--dry-run"]].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    set_records([("prod", 0, None), ("staging", 100, Some(hc.clone()))]).await;
    // staging healthy again: Route53 answers with it alone.
    sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
    eventually(Duration::from_secs(30), "staging-web-2's /health to pass", || async {
        health_ok(&sb, "staging-web-2").await.then_some(())
    })
    .await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &[&stop_old[..], &["--yes"]].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stop_instances production (decommission/stop-old)"), "{out}");
    assert_eq!(instance_states(&sb, "production").await, ["stopped", "stopped"]);
    sb.down().await;
}

/// A rule cutover added for one environment can be what another one reaches
/// a shared Redis through: a production instance in the group staging's
/// rule names (a base group both share) found its path open, so nothing was
/// added for it. Revoking staging's rule would cut production off: refused,
/// naming the instance, nothing revoked; so is a revoke planned before the
/// instance moved, whose plan waited in its popup meanwhile. Once it has a
/// rule of its own, the revoke goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_environments_ingress_never_cuts_another_environment_off_its_redis() {
    let rb = runbook("staging-parity.toml");
    let sb = sandbox(&rb, "ap-south-2").await;
    let dir = tempfile::tempdir().unwrap();
    let p = "runbooks/staging-parity.toml";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "redis/redis-ingress", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    // prod-web-1 moved into staging-batch alone, which only staging's new rule lets in.
    let (batch, shared) = (&sb.world.groups["staging-batch"], &sb.world.groups["shared-redis"]);
    let web1 = sb.world.instances.iter().find(|i| i.name == "prod-web-1").unwrap().id.clone();
    let revoke = ["run", p, "redis/redis-ingress", "--rollback", "--yes"];
    let moved = async {
        sb.clients.ec2.modify_instance_attribute().instance_id(&web1).groups(batch).send().await.unwrap();
    };
    // Planned with nothing to cut; the move comes while the plan waits.
    let (code, out) = run_cutover_changed_at(&sb, &rb, dir.path(), &revoke, "action:confirmed", moved).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("would cut production's {web1} (prod-web-1) from shared-cache on port 6379")),
        "{out}"
    );
    let sources = || async {
        let g = sb.clients.ec2.describe_security_groups().group_ids(shared).send().await.unwrap();
        let mut s: Vec<String> = g.security_groups()[0]
            .ip_permissions()
            .iter()
            .flat_map(|p| p.user_id_group_pairs().iter().filter_map(|u| u.group_id().map(str::to_string)))
            .collect();
        s.sort();
        s
    };
    let before = sources().await;
    assert!(before.contains(batch), "nothing revoked: {before:?}");
    let refused = tmux::audit_lines(dir.path(), &rb.name);
    assert!(refused.last().is_some_and(|l| l["stage"] == "refused"), "{refused:#?}");
    // Planned now, it is refused before any popup.
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &revoke).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("would cut production's {web1} (prod-web-1) from shared-cache on port 6379")),
        "{out}"
    );
    assert_eq!(sources().await, before, "nothing revoked");
    // Given a rule of its own (by hand), production no longer needs staging's.
    sb.clients
        .ec2
        .authorize_security_group_ingress()
        .group_id(shared)
        .ip_permissions(
            aws_sdk::ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(6379)
                .to_port(6379)
                .ip_ranges(aws_sdk::ec2::types::IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (code, out) =
        run_cutover_all(&sb, &rb, dir.path(), &["run", p, "redis/redis-ingress", "--rollback", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!sources().await.contains(batch), "staging's rule revoked");
    sb.down().await;
}

/// A revoke whose rule someone removed by hand while its plan waited in the
/// popup: AWS answers success for a rule a VPC group does not hold (naming
/// it in `UnknownIpPermissions`; the sandbox answers so, where moto
/// refuses), and cutover says nothing was there to revoke, never "revoked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_whose_rule_is_already_gone_says_nothing_was_there_to_revoke() {
    let rb = runbook("staging-parity.toml");
    let sb = sandbox(&rb, "ap-east-1").await;
    let dir = tempfile::tempdir().unwrap();
    let p = "runbooks/staging-parity.toml";
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["run", p, "redis/redis-ingress", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (batch, shared) = (&sb.world.groups["staging-batch"], &sb.world.groups["shared-redis"]);
    // The rule as the group holds it (with cutover's description).
    let g = sb.clients.ec2.describe_security_groups().group_ids(shared).send().await.unwrap();
    let rule = g.security_groups()[0]
        .ip_permissions()
        .iter()
        .find(|p| p.user_id_group_pairs().iter().any(|u| u.group_id() == Some(batch.as_str())))
        .cloned()
        .unwrap_or_else(|| panic!("{g:#?}"));
    let pairs = rule.user_id_group_pairs().iter().filter(|u| u.group_id() == Some(batch.as_str())).cloned();
    let rule = aws_sdk::ec2::types::IpPermission::builder()
        .set_ip_protocol(rule.ip_protocol().map(str::to_string))
        .set_from_port(rule.from_port())
        .set_to_port(rule.to_port())
        .set_user_id_group_pairs(Some(pairs.collect()))
        .build();
    let by_hand = async {
        let out =
            sb.clients.ec2.revoke_security_group_ingress().group_id(shared).ip_permissions(rule).send().await.unwrap();
        assert!(out.unknown_ip_permissions().is_empty(), "removed by hand: {out:?}");
    };
    let revoke = ["run", p, "redis/redis-ingress", "--rollback", "--yes"];
    let (code, out) = run_cutover_changed_at(&sb, &rb, dir.path(), &revoke, "action:confirmed", by_hand).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("done: revoke 6379 from "), "{out}");
    assert!(out.contains(": not there (removed since the plan): nothing to revoke"), "{out}");
    let lines = tmux::audit_lines(dir.path(), &rb.name);
    let applied = lines.last().unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(applied["stage"], "applied", "{lines:#?}");
    assert!(applied["detail"].as_str().is_some_and(|d| d.contains("nothing to revoke")), "{applied}");
    sb.down().await;
}
