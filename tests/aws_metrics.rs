//! ALB metrics as AWS publishes them: the load balancer's own codes
//! (`HTTPCode_ELB_*`) exist per load balancer, never per target group. The
//! sandbox publishes them that way, so a gate asking for them per target
//! group would get no data and, with `no_data = "pass"`, pass while the load
//! balancer answers 502/503.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use cutover::engine::Measurement;
use cutover::runbook::{GateKind, Metric, Runbook, Stat};
use cutover::sandbox::Sandbox;

/// Stops every instance of `environment`: no target answers, so the load
/// balancer itself returns 5xx (the traffic generator counts each refused
/// connection as one `HTTPCode_ELB_5XX_Count`).
async fn stop_environment(sb: &Sandbox, environment: &str) {
    let ids: Vec<String> =
        sb.world.instances.iter().filter(|i| i.environment == environment).map(|i| i.id.clone()).collect();
    assert!(!ids.is_empty(), "{environment} has instances");
    sb.clients.ec2.stop_instances().set_instance_ids(Some(ids)).send().await.unwrap();
}

/// The sum of `HTTPCode_ELB_5XX_Count` per `LoadBalancer` of `environment`,
/// asked for with the test's own literal dimensions (not cutover's table).
async fn elb_5xx_per_load_balancer(sb: &Sandbox, environment: &str) -> f64 {
    let arn = &sb.world.load_balancers[environment];
    let suffix = arn.split_once(":loadbalancer/").map(|(_, s)| s).unwrap();
    let dims = vec![aws_sdk::cloudwatch::types::Dimension::builder().name("LoadBalancer").value(suffix).build()];
    alb_metric_sum(sb, "HTTPCode_ELB_5XX_Count", dims).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_on_the_load_balancers_own_5xx_see_them_and_fail() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-central-1").await;
    let snap = first_snapshot(&rb, &sb).await;
    let since = SystemTime::now();
    // Half the traffic on staging, whose every instance then stops.
    set_weights_as_another_client(&sb, &rb, &[("prod", 50), ("staging", 50)]).await;
    stop_environment(&sb, "staging").await;
    eventually(Duration::from_secs(30), "the sandbox to publish staging's ELB 5xx per LoadBalancer", || async {
        (elb_5xx_per_load_balancer(&sb, "staging").await > 0.0).then_some(())
    })
    .await;

    // A metric gate with no_data = "pass": no data would let the rollout on.
    let gate = GateKind::Metric {
        environment: "staging".into(),
        metric: Metric::Elb5xx,
        stat: Stat::Sum,
        max: 0.0,
        min_requests: None,
    };
    let metric = cutover::drive::gates::metric(&sb.sides, &gate, &snap, &rb, since).await;
    // Compare: staging's ELB 5xx per request against production's (none).
    let compare = GateKind::Compare { metric: Metric::Elb5xx, stat: Stat::Sum, factor: 2.0, min_requests: None };
    let compared = cutover::drive::gates::metric(&sb.sides, &compare, &snap, &rb, since).await;
    let seen = format!("metric gate: {metric:?}; compare gate: {compared:?}");
    assert!(
        matches!(&metric, Measurement::Fail(m) if m.contains("staging HTTPCode_ELB_5XX_Count")),
        "the ALB returns 5xx, so the metric gate must fail; {seen}"
    );
    assert!(
        // Per request while staging's requests were still counted; once
        // every instance stopped, 5xx with none counted fail on their own.
        matches!(&compared, Measurement::Fail(m) if m.contains("HTTPCode_ELB_5XX_Count per request")
            || m.contains("HTTPCode_ELB_5XX_Count: new side") && m.contains("with no request counted")),
        "staging fails nearly every request, production none: the compare gate must fail; {seen}"
    );
    sb.down().await;
}

/// The demo runbook with one gate, on staging's `HTTPCode_ELB_5XX_Count`
/// with `no_data = "pass"`, two steps, a 40 s soak and a 1 s TTL.
fn elb_5xx_gate_only(dir: &Path) -> (Runbook, PathBuf) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let (head, rest) = text.split_once("[[rollout.gates]]").unwrap();
    let alarms = &rest[rest.find("[[alarms]]").unwrap()..];
    let head = head
        .replace("steps = [10, 25, 50, 100]", "steps = [50, 100]")
        .replace("soak = \"30s\"", "soak = \"40s\"")
        .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
        .replace("ttl = 10\n", "ttl = 1\n");
    let gate = "[[rollout.gates]]\nkind = \"metric\"\nenvironment = \"staging\"\n\
                metric = \"HTTPCode_ELB_5XX_Count\"\nstat = \"Sum\"\nmax = 0\nno_data = \"pass\"\n\n";
    let text = format!("{head}{gate}{alarms}");
    let path = dir.join("elb5xx.toml");
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

/// Staging is stopped once step 1 (50/50) soaks: before it, the rollout
/// would not send the step at all (no target in service; tests/rollout.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_gated_on_elb_5xx_aborts_when_the_new_side_refuses_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = elb_5xx_gate_only(dir.path());
    let sb = sandbox(&rb, "ap-south-1").await;
    let rollout = tokio::process::Command::from(cutover_command(
        &sb,
        &rb,
        dir.path(),
        &["rollout", path.to_str().unwrap(), "--yes"],
    ))
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let state = dir.path().join("cutover/demo.rollout.json");
    eventually(Duration::from_secs(60), "step 1 to soak", || async {
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        (s["engine"]["step"] == 0 && s["engine"]["phase"]["phase"] == "soaking").then_some(())
    })
    .await;
    stop_environment(&sb, "staging").await;
    let done = tokio::time::timeout(Duration::from_secs(240), rollout.wait_with_output())
        .await
        .expect("the rollout ends within 240 s")
        .unwrap();
    let (code, out) = (
        done.status.code(),
        format!("{}{}", String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr)),
    );
    let sets = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    let staging = sets.resource_record_sets().iter().find(|r| r.set_identifier() == Some("staging")).unwrap().weight();
    sb.down().await;
    assert_eq!(code, Some(1), "the rollout must abort, not complete: {out}");
    assert!(out.contains("staging HTTPCode_ELB_5XX_Count"), "{out}");
    assert_eq!(staging, Some(0), "rolled back to the initial weights");
}

/// The demo with staging's load balancer in zone a only, and both staging
/// instances allowed into Redis: staging-web-2 (zone b) is `unused`.
fn staging_in_one_zone() -> Runbook {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    for old in ["staging = [\"a\", \"b\"]", "security_groups = [\"staging-batch\"]"] {
        assert!(text.contains(old), "demo.toml has {old}");
    }
    let text = text
        .replace("staging = [\"a\", \"b\"]", "staging = [\"a\"]")
        .replace("security_groups = [\"staging-batch\"]", "security_groups = [\"staging-app\"]");
    cutover::runbook::parse("staging-in-one-zone.toml", &text).unwrap()
}

/// The requests an app has served, by its own counter in its Redis.
async fn served(sb: &Sandbox, redis: &str, app: &str) -> i64 {
    let client = redis::Client::open(sb.redis_urls[redis].as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET").arg(format!("hits:{app}")).query_async::<Option<i64>>(&mut c).await.unwrap().unwrap_or(0)
}

/// An ALB sends requests only to targets in service: never to one in a zone
/// it does not enable (`unused`), never to one deregistered, and with none
/// left it answers 503 itself. A sandbox that sent traffic to every running
/// instance would let a rollout onto a side with no target pass its 5xx gates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_balancer_sends_requests_only_to_targets_in_service() {
    let rb = staging_in_one_zone();
    let sb = sandbox(&rb, "eu-north-1").await;
    set_weights_as_another_client(&sb, &rb, &[("prod", 50), ("staging", 50)]).await;
    eventually(Duration::from_secs(30), "staging-web-1 to serve requests", || async {
        (served(&sb, "staging-cache", "staging-web-1").await >= 10).then_some(())
    })
    .await;
    assert_eq!(served(&sb, "staging-cache", "staging-web-2").await, 0, "a target in a zone the ALB does not enable");

    let web_1 = sb.world.instances.iter().find(|i| i.name == "staging-web-1").unwrap().id.clone();
    let group = &sb.world.target_groups["staging"][0].arn;
    let target = aws_sdk::elasticloadbalancingv2::types::TargetDescription::builder().id(&web_1).build();
    sb.clients.elb.deregister_targets().target_group_arn(group).targets(target).send().await.unwrap();
    eventually(Duration::from_secs(30), "staging's load balancer to answer 503 itself", || async {
        (elb_5xx_per_load_balancer(&sb, "staging").await > 0.0).then_some(())
    })
    .await;
    let before = served(&sb, "staging-cache", "staging-web-1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(served(&sb, "staging-cache", "staging-web-1").await, before, "a deregistered target gets no request");
    assert_eq!(served(&sb, "staging-cache", "staging-web-2").await, 0, "nor does an unused one, failing open");
    sb.down().await;
}

/// GetMetricData answers a query it failed with `StatusCode` InternalError
/// and no datapoints (moto never does; the sandbox does when told). Read as
/// "no 5xx datapoint while requests flowed", that is zero errors and the
/// gate passes: it must be an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_series_cloudwatch_failed_to_answer_is_an_error_never_zero() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "sa-east-1").await;
    let snap = first_snapshot(&rb, &sb).await;
    let since = SystemTime::now();
    set_weights_as_another_client(&sb, &rb, &[("prod", 50), ("staging", 50)]).await;
    let gate = GateKind::Metric {
        environment: "staging".into(),
        metric: Metric::Target5xx,
        stat: Stat::Sum,
        max: 0.0,
        min_requests: None,
    };
    let healthy = eventually(Duration::from_secs(30), "staging's requests to be published", || async {
        let m = cutover::drive::gates::metric(&sb.sides, &gate, &snap, &rb, since).await;
        matches!(m, Measurement::Pass).then_some(m)
    })
    .await;
    sb.faults.cloudwatch.fail_metric("HTTPCode_Target_5XX_Count");
    let failed = cutover::drive::gates::metric(&sb.sides, &gate, &snap, &rb, since).await;
    assert!(
        matches!(&failed, Measurement::Error(e) if e.contains("InternalError")),
        "before: {healthy:?}; with the 5xx series failed: {failed:?}"
    );
    sb.down().await;
}
