//! `cutover shift` against the sandbox's moto. Weights are read back through
//! the AWS SDK, never through cutover.

mod common;

use common::*;

fn audit(state: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("cutover/demo.audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shift_to_30_leaves_70_30_and_audits_before_and_after() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-east-1").await;
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(
            "account 123456789012 region us-east-1: shift production (prod) 100 → 70, staging (staging) 0 → 30"
        ),
        "{out}"
    );
    assert!(out.contains("INSYNC after"), "{out}");
    assert_eq!(weights(&sb).await, w(70, 30));
    let lines = audit(dir.path());
    let stages: Vec<&str> = lines.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["intent", "applied", "insync"]);
    for l in &lines {
        assert_eq!(l["before"], serde_json::json!({"production": 100, "staging": 0}));
        assert_eq!(l["after"], serde_json::json!({"production": 70, "staging": 30}));
        assert_eq!(l["operator"], "on-call");
        assert_eq!(l["account"], "123456789012");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("cutover/demo.audit.jsonl")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // status knows the change cutover made, and that it is INSYNC.
    let (_, json, _) = run_cutover(&sb, &rb, dir.path(), &["status", "runbooks/demo.toml", "--json"]).await;
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["last_change"]["status"], "INSYNC", "{}", j["last_change"]);
    assert_eq!(j["last_change"]["action"], "shift_weights to 30%");
    // The audit command prints it, and as a postmortem timeline.
    let (code, md, _) = run_cutover(&sb, &rb, dir.path(), &["audit", "runbooks/demo.toml", "--markdown"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(md.lines().filter(|l| l.starts_with("| 20")).count(), 3, "{md}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_read_only_and_missing_yes_change_nothing_and_say_so() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-west-1").await;
    let dir = tempfile::tempdir().unwrap();

    let (code, out, _) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "30", "--dry-run"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("dry run: nothing was sent"), "{out}");
    assert!(out.contains("\"Weight\": 70") && out.contains("\"Weight\": 30"), "{out}");
    assert_eq!(weights(&sb).await, w(100, 0));

    let (code, _, err) =
        run_cutover(&sb, &rb, dir.path(), &["--read-only", "shift", "runbooks/demo.toml", "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(2));
    assert_eq!(err.trim(), "refused: --read-only forbids changing weights; nothing was changed");
    assert_eq!(weights(&sb).await, w(100, 0));
    let lines = audit(dir.path());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["stage"], "refused");

    let (code, _, err) = run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "30"]).await;
    assert_eq!(code, Some(2));
    assert!(err.starts_with("refused: changing weights needs --yes"), "{err}");
    assert_eq!(weights(&sb).await, w(100, 0));

    let (code, _, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "150", "--yes"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("150 is not in 0..=100"), "{err}");
    assert_eq!(weights(&sb).await, w(100, 0));

    // A target group the runbook names that is gone from beside staging's
    // load balancer: whether staging can serve is unknown, so refused (not
    // let through as NOT CHECKED, which is for a group that cannot be read).
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml"))
        .unwrap()
        .replace(r#"target_groups = ["demo-staging-web"]"#, r#"target_groups = ["demo-staging-gone"]"#);
    let gone = dir.path().join("demo.toml");
    std::fs::write(&gone, text).unwrap();
    let (code, _, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", gone.to_str().unwrap(), "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("refused: staging's target groups (demo-staging-gone) are not found beside its load balancer"),
        "{err}"
    );
    assert_eq!(weights(&sb).await, w(100, 0));
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unequal_ttls_are_refused_before_anything_is_sent() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-2").await;
    upsert_records_as_another_client(&sb, &rb, &[("staging", 0, 300)]).await;
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(2));
    assert!(err.starts_with("refused: the weighted records' TTLs differ (prod has 10 s, staging has 300 s)"), "{err}");
    assert_eq!(weights(&sb).await, w(100, 0));
    // Nothing sent; the refused attempt is on record.
    let lines = audit(dir.path());
    let stages: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["action"].as_str().unwrap_or(""), l["stage"].as_str().unwrap_or(""))).collect();
    assert_eq!(stages, [("shift_weights to 30%", "refused")], "{lines:?}");
    sb.down().await;
}

/// AWS answers `unavailable` (Elb.InternalError) when it cannot tell a
/// target's health (moto never does; the sandbox does when told). A shift
/// raising that side is not refused, since a weight change must stay
/// possible, but says its targets were NOT CHECKED: never counted as in
/// service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_whose_target_health_aws_cannot_tell_is_not_checked_never_in_service() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-south-1").await;
    let staging = sb.world.instances.iter().filter(|i| i.environment == "staging").map(|i| i.id.clone());
    sb.faults.unavailable_targets.lock().unwrap().extend(staging);
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains(
            "NOT CHECKED: whether staging has a target in service to take the share this raises (target group \
             demo-staging-web: AWS says its targets' health is unavailable)"
        ),
        "{out}{err}"
    );
    assert_eq!(weights(&sb).await, w(70, 30));
    sb.down().await;
}

/// Staging's weighted CNAME pointed at `value`, as another client would.
async fn point_staging_at(sb: &cutover::sandbox::Sandbox, rb: &cutover::runbook::Runbook, value: &str) {
    use aws_sdk::route53::types::{Change, ChangeAction, ResourceRecord, ResourceRecordSet, RrType};
    let set = ResourceRecordSet::builder()
        .name(&rb.dns.record)
        .r#type(RrType::Cname)
        .set_identifier("staging")
        .weight(0)
        .ttl(10)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder().action(ChangeAction::Upsert).resource_record_set(set).build().unwrap();
    send_changes_as_another_client(sb, vec![change]).await;
}

/// A record sends its share where it points. Staging's record copied from
/// production's (at production's load balancer) would hand production the
/// share a shift gives staging while staging's own targets pass every
/// check: refused, naming both. A name of one's own, which may lead to
/// staging's load balancer, is shifted with a NOT CHECKED line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_pointing_at_another_load_balancer_is_refused_and_one_elsewhere_is_not_checked() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-northeast-2").await;
    let prod = &sb.world.load_balancers["production"];
    let lbs = sb.clients.elb.describe_load_balancers().load_balancer_arns(prod).send().await.unwrap();
    let prod_dns = lbs.load_balancers()[0].dns_name().unwrap().to_string();
    point_staging_at(&sb, &rb, &prod_dns).await;
    let dir = tempfile::tempdir().unwrap();
    let shift = ["shift", "runbooks/demo.toml", "--to", "30", "--yes"];
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &shift).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "refused: raising staging's weight from 0 to 30 would send that traffic to another load balancer: its \
             CNAME record points at {prod_dns}, not at demo-staging-alb ("
        )),
        "{err}"
    );
    assert_eq!(weights(&sb).await, w(100, 0));

    point_staging_at(&sb, &rb, "staging-origin.example.test").await;
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &shift).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains(
            "NOT CHECKED: whether the share this raises reaches staging's targets (its CNAME record points at \
             staging-origin.example.test, not at load balancer demo-staging-alb ("
        ),
        "{out}{err}"
    );
    assert_eq!(weights(&sb).await, w(70, 30));
    sb.down().await;
}

/// With no target passing its health check an ALB fails open and sends the
/// share to the unhealthy ones, each answering as its check does (a broken
/// deploy): raising the rollout's `to` side onto them is refused, naming
/// each target's state. Traffic going back is not held back, but says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_side_whose_every_target_fails_its_health_check_is_refused() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ca-central-1").await;
    // staging-web-2 cannot reach Redis already; staging-web-1 fails too once it asks a password.
    let redis = redis::Client::open(sb.redis_urls["staging-cache"].as_str()).unwrap();
    let mut c = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("rotated").query_async(&mut c).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "30", "--yes"]).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.starts_with(
            "refused: raising staging's weight from 0 to 30 would send that traffic to target group demo-staging-web, \
             none of whose targets passes its health check (i-"
        ) && err.contains("its load balancer fails open and sends the share to the unhealthy ones"),
        "{err}"
    );
    assert_eq!(err.matches(" unhealthy (Target.ResponseCodeMismatch)").count(), 2, "{err}");
    assert_eq!(weights(&sb).await, w(100, 0));
    // Back the other way, production failing alike: a rollback (`shift
    // --to 0`) is never held back by it, and says so.
    reweight_as_another_client(&sb, &rb, &[("prod", 0), ("staging", 100)]).await;
    let redis = redis::Client::open(sb.redis_urls["prod-cache"].as_str()).unwrap();
    let mut c = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("rotated").query_async(&mut c).await.unwrap();
    let (code, out, err) =
        run_cutover(&sb, &rb, dir.path(), &["shift", "runbooks/demo.toml", "--to", "0", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains(
            "NOT CHECKED: whether production can serve the share this raises (target group demo-prod-web, none \
             of whose targets passes its health check (i-"
        ),
        "{out}{err}"
    );
    assert_eq!(weights(&sb).await, w(100, 0));
    sb.down().await;
}

/// A checklist item's weight shift is on record as `applied` (with its
/// change id) once Route53 accepts it, before the INSYNC wait: a run
/// stopped during that wait (Ctrl-C, a closed cockpit) leaves the share it
/// took in the audit, so a later stop of that side waits out the
/// resolvers' TTL instead of finding only an intent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checklist_shift_is_audited_applied_before_its_insync_wait() {
    use std::sync::atomic::Ordering;
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "sa-east-1").await;
    let dir = tempfile::tempdir().unwrap();
    let p = "runbooks/demo.toml";
    let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &["shift", p, "--to", "50", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    sb.faults.pending_ms.store(60_000, Ordering::SeqCst);
    let mut child = cutover_command(&sb, &rb, dir.path(), &["run", p, "traffic/rollout", "--rollback", "--yes"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let action = "shift_weights to 0% (traffic/rollout)";
    let start = std::time::Instant::now();
    let applied = loop {
        let lines = audit(dir.path());
        if let Some(l) = lines.iter().find(|l| l["action"] == action && l["stage"] == "applied") {
            break l.clone();
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "no applied line while PENDING: {lines:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(child.try_wait().unwrap().is_none(), "still waiting for INSYNC");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(applied["change"].as_str().is_some_and(|c| !c.is_empty()), "with its change id: {applied}");
    assert_eq!(applied["after"], serde_json::json!({"production": 100, "staging": 0}), "{applied}");
    assert_eq!(weights(&sb).await, w(100, 0));
    sb.faults.pending_ms.store(0, Ordering::SeqCst);
    sb.down().await;
}
