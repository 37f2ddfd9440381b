//! The sandbox against real moto, redis-server and app servers on loopback.
//! Each test starts its own sandbox (its own moto), so state never leaks.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_sees_what_the_demo_runbook_names() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let aws = &sb.clients;

    let resp = aws.ec2.describe_instances().send().await.unwrap();
    let mut names: Vec<String> = resp
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, ["prod-web-1", "prod-web-2", "staging-web-1", "staging-web-2"]);
    for i in resp.reservations().iter().flat_map(|r| r.instances()) {
        let url = i
            .tags()
            .iter()
            .find(|t| t.key() == Some("cutover:health-url"))
            .and_then(|t| t.value())
            .expect("health-url tag");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    }

    let tgs = aws.elb.describe_target_groups().send().await.unwrap();
    let mut tg_names: Vec<&str> = tgs.target_groups().iter().filter_map(|t| t.target_group_name()).collect();
    tg_names.sort();
    assert_eq!(tg_names, ["demo-prod-web", "demo-staging-web"]);
    for tg in tgs.target_groups() {
        let health =
            aws.elb.describe_target_health().target_group_arn(tg.target_group_arn().unwrap()).send().await.unwrap();
        assert_eq!(health.target_health_descriptions().len(), 2, "{:?}", tg.target_group_name());
        assert_eq!(tg.health_check_path(), Some("/health"));
    }

    let zones = aws.route53.list_hosted_zones_by_name().dns_name("demo.cutover.test").send().await.unwrap();
    let zone = zones.hosted_zones().first().expect("zone").id().to_string();
    let sets = aws.route53.list_resource_record_sets().hosted_zone_id(&zone).send().await.unwrap();
    let weights: BTreeMap<String, i64> = sets
        .resource_record_sets()
        .iter()
        .filter_map(|r| Some((r.set_identifier()?.to_string(), r.weight()?)))
        .collect();
    assert_eq!(weights, BTreeMap::from([("prod".to_string(), 100), ("staging".to_string(), 0)]));

    let alarms = aws.cloudwatch.describe_alarms().send().await.unwrap();
    let mut alarm_names: Vec<&str> = alarms.metric_alarms().iter().filter_map(|a| a.alarm_name()).collect();
    alarm_names.sort();
    assert_eq!(alarm_names, ["demo-prod-5xx", "demo-staging-5xx"]);

    let pids = sb.pids();
    assert_eq!(pids.len(), 3, "moto + two redis-servers");
    sb.down().await;
    for pid in pids {
        assert!(process_gone(pid), "process {pid} survived down()");
    }
}

async fn health_of(sb: &cutover::sandbox::Sandbox, name: &str) -> (u16, serde_json::Value) {
    let inst = sb.world.instances.iter().find(|i| i.name == name).unwrap();
    let resp = reqwest::Client::new().get(&inst.health_url).timeout(Duration::from_secs(5)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_security_group_instance_really_cannot_reach_redis_until_the_rule_exists() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-2").await;
    for name in ["prod-web-1", "prod-web-2", "staging-web-1"] {
        let (status, body) = health_of(&sb, name).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["redis"]["ok"], true, "{name}: {body}");
    }
    let (status, body) = health_of(&sb, "staging-web-2").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["redis"]["ok"], false);
    assert!(body["redis"]["error"].as_str().unwrap().contains("timed out"), "{body}");
    // Its load balancer sees the 503 as an ALB would (moto calls it healthy).
    assert_eq!(
        staging_target_health(&sb).await,
        [
            ("staging-web-1".to_string(), "healthy".to_string(), String::new()),
            ("staging-web-2".to_string(), "unhealthy".to_string(), "Target.ResponseCodeMismatch".to_string())
        ]
    );

    // The fix the analysis names: allow 6379 from staging-batch on staging-redis.
    sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
    eventually(Duration::from_secs(10), "staging-web-2 to reach Redis", || async {
        let (status, body) = health_of(&sb, "staging-web-2").await;
        (status == 200 && body["redis"]["ok"] == true).then_some(())
    })
    .await;
    assert!(staging_target_health(&sb).await.iter().all(|(_, state, _)| state == "healthy"));
    sb.down().await;
}

/// Each staging target's name, state and reason, as DescribeTargetHealth gives them.
async fn staging_target_health(sb: &cutover::sandbox::Sandbox) -> Vec<(String, String, String)> {
    let tg = &sb.world.target_groups["staging"][0].arn;
    let health = sb.clients.elb.describe_target_health().target_group_arn(tg).send().await.unwrap();
    let mut out: Vec<(String, String, String)> = health
        .target_health_descriptions()
        .iter()
        .map(|d| {
            let id = d.target().and_then(|t| t.id()).unwrap_or_default();
            let name = sb.world.instances.iter().find(|i| i.id == id).map_or(id.to_string(), |i| i.name.clone());
            let th = d.target_health();
            let state = th.and_then(|h| h.state()).map(|s| s.as_str().to_string()).unwrap_or_default();
            let reason = th.and_then(|h| h.reason()).map(|r| r.as_str().to_string()).unwrap_or_default();
            (name, state, reason)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_instance_stops_answering_and_comes_back_when_started() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-3").await;
    let inst = sb.world.instances.iter().find(|i| i.name == "prod-web-1").unwrap().clone();
    let http = reqwest::Client::new();
    assert!(http.get(&inst.health_url).send().await.unwrap().status().is_success());
    sb.clients.ec2.stop_instances().instance_ids(&inst.id).send().await.unwrap();
    eventually(Duration::from_secs(10), "the stopped instance to refuse connections", || async {
        http.get(&inst.health_url).timeout(Duration::from_secs(1)).send().await.err().map(|_| ())
    })
    .await;
    sb.clients.ec2.start_instances().instance_ids(&inst.id).send().await.unwrap();
    eventually(Duration::from_secs(10), "the started instance to answer", || async {
        http.get(&inst.health_url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    sb.down().await;
}

/// EC2 takes seconds to minutes to stop, start or terminate an instance
/// (moto: at once). With a window set, the proxy shows it `stopping`,
/// `pending` or `shutting-down` meanwhile, in DescribeInstances and in the
/// call's reply, and refuses what AWS refuses (IncorrectInstanceState: a
/// start of one stopping, a stop of one pending, either of one shutting
/// down or terminated, which moto would bring back); its app serves only
/// while it is `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_pass_through_the_states_aws_shows_and_serve_only_while_running() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-north-1").await;
    let ec2 = &sb.clients.ec2;
    let inst = sb.world.instances.iter().find(|i| i.name == "prod-web-1").unwrap().clone();
    let other = sb.world.instances.iter().find(|i| i.name == "prod-web-2").unwrap().id.clone();
    let http = reqwest::Client::new();
    let answers = || async {
        http.get(&inst.health_url).timeout(Duration::from_secs(1)).send().await.is_ok_and(|r| r.status().is_success())
    };
    let state_of = |id: String| async move {
        let r = ec2.describe_instances().instance_ids(id).send().await.unwrap();
        r.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
    };
    let window = Duration::from_secs(6);
    sb.faults.instance_transition_ms.store(window.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
    assert!(answers().await);

    let stopped = ec2.stop_instances().instance_ids(&inst.id).send().await.unwrap();
    let change = &stopped.stopping_instances()[0];
    let name = |s: Option<&aws_sdk::ec2::types::InstanceState>| s.unwrap().name().unwrap().as_str().to_string();
    assert_eq!((name(change.previous_state()), name(change.current_state())), ("running".into(), "stopping".into()));
    assert_eq!(state_of(inst.id.clone()).await, "stopping");
    let err = ec2.start_instances().instance_ids(&inst.id).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("IncorrectInstanceState"), "a stopping instance is not started: {err:?}");
    eventually(Duration::from_secs(10), "the stopping instance to refuse connections", || async {
        (!answers().await).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the instance to be stopped", || async {
        (state_of(inst.id.clone()).await == "stopped").then_some(())
    })
    .await;

    let started = ec2.start_instances().instance_ids(&inst.id).send().await.unwrap();
    let change = &started.starting_instances()[0];
    assert_eq!((name(change.previous_state()), name(change.current_state())), ("stopped".into(), "pending".into()));
    assert_eq!(state_of(inst.id.clone()).await, "pending");
    assert!(!answers().await, "a pending instance is still booting");
    let err = ec2.stop_instances().instance_ids(&inst.id).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("IncorrectInstanceState"), "a pending instance is not stopped: {err:?}");
    eventually(Duration::from_secs(15), "the started instance to run and answer", || async {
        (state_of(inst.id.clone()).await == "running" && answers().await).then_some(())
    })
    .await;

    ec2.terminate_instances().instance_ids(&other).send().await.unwrap();
    assert_eq!(state_of(other.clone()).await, "shutting-down");
    eventually(Duration::from_secs(10), "the instance to be terminated", || async {
        (state_of(other.clone()).await == "terminated").then_some(())
    })
    .await;
    let stop = format!("{:?}", ec2.stop_instances().instance_ids(&other).send().await.unwrap_err());
    let start = format!("{:?}", ec2.start_instances().instance_ids(&other).send().await.unwrap_err());
    for err in [stop, start] {
        assert!(err.contains("IncorrectInstanceState"), "{err}");
    }
    assert_eq!(state_of(other.clone()).await, "terminated", "never brought back");
    sb.down().await;
}

async fn request_sum(sb: &cutover::sandbox::Sandbox, env: &str, since: aws_smithy_types::DateTime) -> f64 {
    use aws_sdk::cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
    let dims = sb.world.target_group_dimensions(env).unwrap();
    let q = MetricDataQuery::builder()
        .id("r")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/ApplicationELB")
                        .metric_name("RequestCount")
                        .set_dimensions(Some(dims))
                        .build(),
                )
                .period(60)
                .stat("Sum")
                .build(),
        )
        .build();
    let end = aws_smithy_types::DateTime::from_secs(since.secs() + 3600);
    let r = sb
        .clients
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(q)
        .start_time(since)
        .end_time(end)
        .send()
        .await
        .unwrap();
    r.metric_data_results().iter().flat_map(|m| m.values()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_generator_metrics_follow_the_weights() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-1").await;
    let start = aws_smithy_types::DateTime::from_secs(
        aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs() - 5,
    );
    eventually(Duration::from_secs(20), "production requests to be published", || async {
        (request_sum(&sb, "production", start).await > 0.0).then_some(())
    })
    .await;
    assert_eq!(request_sum(&sb, "staging", start).await, 0.0, "staging gets no traffic at weight 0");

    set_weights_as_another_client(&sb, &rb, &[("prod", 50), ("staging", 50)]).await;
    // Counted from one publishing period (5 s) after the shift, so no window
    // counted holds requests sent before it: about half each (10 requests
    // a second, split with largest remainders).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = (request_sum(&sb, "production", start).await, request_sum(&sb, "staging", start).await);
    let (prod, staging) = eventually(Duration::from_secs(40), "60 requests published after the shift", || async {
        let p = request_sum(&sb, "production", start).await - before.0;
        let s = request_sum(&sb, "staging", start).await - before.1;
        (p + s >= 60.0).then_some((p, s))
    })
    .await;
    let share = staging / (prod + staging);
    assert!((0.4..=0.6).contains(&share), "staging got {staging} of {} requests at 50/50", prod + staging);
    sb.down().await;
}

/// Upserts every record of `set_id` (each type) after `change` has edited it.
async fn edit_records(
    sb: &cutover::sandbox::Sandbox,
    rb: &cutover::runbook::Runbook,
    set_id: &str,
    change: impl Fn(&mut aws_sdk::route53::types::ResourceRecordSet),
) {
    use aws_sdk::route53::types::{Change, ChangeAction};
    let changes: Vec<Change> = group_records(sb, rb)
        .await
        .into_iter()
        .filter(|r| r.set_identifier() == Some(set_id))
        .map(|mut r| {
            change(&mut r);
            Change::builder().action(ChangeAction::Upsert).resource_record_set(r).build().unwrap()
        })
        .collect();
    assert!(!changes.is_empty(), "{set_id} has records");
    send_changes_as_another_client(sb, changes).await;
}

/// The requests a load balancer took for `env`: those it sent a target
/// (`RequestCount` of its target group) and those it answered 503 itself
/// with no target to send to (`HTTPCode_ELB_5XX_Count` per LoadBalancer).
async fn taken(sb: &cutover::sandbox::Sandbox, env: &str, since: aws_smithy_types::DateTime) -> f64 {
    let lb = &sb.world.load_balancers[env];
    let suffix = lb.split_once(":loadbalancer/").map(|(_, s)| s).unwrap();
    let dims = vec![aws_sdk::cloudwatch::types::Dimension::builder().name("LoadBalancer").value(suffix).build()];
    request_sum(sb, env, since).await + alb_metric_sum(sb, "HTTPCode_ELB_5XX_Count", dims).await
}

async fn taken_each(sb: &cutover::sandbox::Sandbox, envs: &[&str], since: aws_smithy_types::DateTime) -> Vec<f64> {
    let mut out = Vec::new();
    for env in envs {
        out.push(taken(sb, env, since).await);
    }
    out
}

/// Each side's requests in a window that starts once every request sent
/// before it is published (one 5 s publishing period) and ends when
/// `at_least` more are counted in all.
async fn window(
    sb: &cutover::sandbox::Sandbox,
    envs: &[&str],
    at_least: f64,
    since: aws_smithy_types::DateTime,
) -> Vec<f64> {
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = taken_each(sb, envs, since).await;
    eventually(Duration::from_secs(60), &format!("{at_least} more requests published"), || async {
        let now = taken_each(sb, envs, since).await;
        let got: Vec<f64> = now.iter().zip(&before).map(|(n, b)| n - b).collect();
        (got.iter().sum::<f64>() >= at_least).then_some(got)
    })
    .await
}

/// Waits for Route53's new answer to be in force: a publishing period in
/// which `quiet` took no request while `busy` took at least 10 (health
/// changes after three readings 3 s apart, a health check's default
/// FailureThreshold).
async fn until_quiet(sb: &cutover::sandbox::Sandbox, quiet: &str, busy: &[&str], since: aws_smithy_types::DateTime) {
    eventually(Duration::from_secs(90), &format!("{quiet} to take no request"), || async {
        let (q, b) = (taken(sb, quiet, since).await, taken_each(sb, busy, since).await);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (q2, b2) = (taken(sb, quiet, since).await, taken_each(sb, busy, since).await);
        let grew: f64 = b2.iter().zip(&b).map(|(n, b)| n - b).sum();
        (q2 == q && (busy.is_empty() || grew >= 10.0)).then_some(())
    })
    .await;
}

/// Route53 answers with a record only while it counts it healthy: a record
/// whose health check fails gets nothing beside a healthy one above 0, and a
/// healthy record at 0 gets everything once every record above 0 fails. The
/// sandbox's traffic follows that rule of its own, so a gate that passes a
/// side Route53 sends nothing shows as a disagreement with what it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_goes_only_to_records_route53_counts_healthy() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-central-1").await;
    let start = aws_smithy_types::DateTime::from_secs(
        aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs() - 5,
    );
    let sides = ["production", "staging"];
    set_weights_as_another_client(&sb, &rb, &[("prod", 50), ("staging", 50)]).await;
    let got = window(&sb, &sides, 40.0, start).await;
    assert!(got[1] > 0.0, "staging gets its half while healthy: {got:?}");
    // staging-web-2's /health answers 503 (its Redis path is blocked).
    let port = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap().app_port;
    let hc = loopback_health_check(&sb, port, "staging-web-2").await;
    edit_records(&sb, &rb, "staging", |r| r.health_check_id = Some(hc.clone())).await;
    until_quiet(&sb, "staging", &["production"], start).await;
    let got = window(&sb, &sides, 40.0, start).await;
    assert_eq!(got[1], 0.0, "staging's health check fails: Route53 sends it nothing at 50/50 ({got:?})");

    // Production at 0 and healthy, staging above 0 and failing: production
    // answers every query.
    set_weights_as_another_client(&sb, &rb, &[("prod", 0), ("staging", 100)]).await;
    edit_records(&sb, &rb, "staging", |r| r.health_check_id = Some(hc.clone())).await;
    until_quiet(&sb, "staging", &["production"], start).await;
    let got = window(&sb, &sides, 40.0, start).await;
    assert_eq!(got[1], 0.0, "the only record above 0 fails: the healthy one at 0 answers ({got:?})");
    // Disabled, Route53 counts the check healthy whatever it finds: staging
    // answers alone again.
    sb.clients.route53.update_health_check().health_check_id(&hc).disabled(true).send().await.unwrap();
    until_quiet(&sb, "production", &["staging"], start).await;
    sb.down().await;
}

/// An alias evaluating target health to a load balancer whose target group
/// has no healthy target gets nothing: no request sent a target, and none
/// answered 503 by the load balancer itself (the sandbox reads its
/// listeners' groups through the proxy, as Route53 judges them); it gets its
/// share again once a target is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_to_a_load_balancer_with_no_healthy_target_gets_no_traffic() {
    let rb = runbook("single-box-to-alb.toml");
    let sb = sandbox(&rb, "ap-south-1").await;
    let start = aws_smithy_types::DateTime::from_secs(
        aws_smithy_types::DateTime::from(std::time::SystemTime::now()).secs() - 5,
    );
    edit_records(&sb, &rb, "alb", |r| r.weight = Some(50)).await;
    let got = window(&sb, &["alb"], 10.0, start).await;
    assert!(got[0] >= 10.0, "the alias gets traffic while a target is healthy: {got:?}");
    let tg = &sb.world.target_groups["alb"][0].arn;
    let targets = registered_targets(&sb, "alb");
    let deregister = sb.clients.elb.deregister_targets().target_group_arn(tg).set_targets(Some(targets.clone()));
    deregister.send().await.unwrap();
    until_quiet(&sb, "alb", &[], start).await;
    // Two more publishing periods: still nothing (the box serves it all).
    let before = taken(&sb, "alb", start).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(taken(&sb, "alb", start).await, before, "no healthy target: Route53 sends the alias nothing");
    sb.clients.elb.register_targets().target_group_arn(tg).set_targets(Some(targets)).send().await.unwrap();
    let got = window(&sb, &["alb"], 10.0, start).await;
    assert!(got[0] >= 10.0, "a healthy target again: the alias gets its share back ({got:?})");
    sb.down().await;
}

#[test]
fn sigkill_of_cutover_leaves_no_child_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, env_file) = spawn_sandbox_up(dir.path(), "sa-east-1", std::process::Stdio::null());
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("export AWS_ENDPOINT_URL=http://127.0.0.1:"), "{env}");
    assert!(env.contains("export DEMO_STAGING_REDIS_URL=redis://127.0.0.1:"), "{env}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    let kids = children_of(child.get().id());
    assert_eq!(kids.len(), 3, "moto + two redis-servers, got {kids:?}");
    child.get().kill().unwrap();
    child.get().wait().unwrap();
    let start = std::time::Instant::now();
    while !kids.iter().all(|&p| process_gone(p)) {
        assert!(start.elapsed() < Duration::from_secs(10), "children survived SIGKILL: {kids:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_tears_the_sandbox_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, env_file) = spawn_sandbox_up(dir.path(), "ca-central-1", std::process::Stdio::piped());
    let kids = children_of(child.get().id());
    assert_eq!(kids.len(), 3);
    // The webhook receiver answers as Slack's does, and `sandbox up` shows what it got.
    let env = std::fs::read_to_string(&env_file).unwrap();
    let url =
        env.lines().find_map(|l| l.strip_prefix("export DEMO_WEBHOOK_URL=")).expect("the webhook in the env file");
    assert!(post_json(url, r#"{"text": "rehearsal check"}"#).starts_with("HTTP/1.1 200"));
    assert!(post_json(url, r#"{"message": "no text"}"#).starts_with("HTTP/1.1 400"));
    unsafe { libc::kill(child.get().id() as i32, libc::SIGTERM) };
    let out = child.take().wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sandbox stopped"));
    assert!(stdout.contains("\nwebhook: rehearsal check\n"), "{stdout}");
    assert_eq!(stdout.matches("webhook: ").count(), 1, "{stdout}");
    assert!(kids.iter().all(|&p| process_gone(p)), "children left: {kids:?}");
}

/// A bare HTTP/1.1 POST of `body` to `url` (http://127.0.0.1:PORT/PATH); the reply as text.
fn post_json(url: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn instance_views(snap: &cutover::status::Snapshot) -> Vec<&cutover::status::InstanceView> {
    snap.environments.iter().flat_map(|e| e.aws.value.as_ref().expect("AWS data read").instances.iter()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_runbook_rehearses_in_the_sandbox() {
    use cutover::live::HealthProbe;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for (i, name) in names.iter().enumerate() {
        let rb = runbook(name);
        let sb = sandbox(&rb, ["us-east-2", "us-west-1", "us-west-2", "eu-north-1", "eu-south-1", "me-south-1"][i % 6])
            .await;
        let snap = first_snapshot(&rb, &sb).await;
        let weights: BTreeMap<String, u8> =
            snap.traffic.value.as_ref().unwrap().iter().map(|w| (w.holder().to_string(), w.weight.unwrap())).collect();
        assert_eq!(weights, rb.dns.initial_weights, "{name}");
        let views = instance_views(&snap);
        assert_eq!(views.len(), rb.sandbox.as_ref().unwrap().instances.len(), "{name}");
        for v in &views {
            assert!(matches!(v.health.value, Some(HealthProbe::Answered { .. })), "{name}: {:?}", v.health);
        }
        for r in &snap.redis {
            assert!(r.view.is_fresh(), "{name}: {r:?}");
        }
        if name == "staging-parity.toml" {
            let targets: Vec<_> = snap
                .environments
                .iter()
                .flat_map(|e| e.aws.value.as_ref().unwrap().target_groups.iter().flat_map(|tg| tg.targets.iter()))
                .collect();
            let unused: Vec<_> = targets.iter().filter(|t| t.zone_enabled == Some(false)).collect();
            assert_eq!(unused.len(), 1, "one staging target sits in an AZ the ALB does not enable");
            assert!(unused[0].explanation.as_deref().unwrap().contains("is not enabled on load balancer"));
            let blocked: Vec<_> = views.iter().filter(|v| v.sg_paths.values().any(|p| !p.is_allowed())).collect();
            assert_eq!(blocked.len(), 1, "one instance's security group is not allowed into Redis");
            let Some(HealthProbe::Answered { status, redis_ok, .. }) = &blocked[0].health.value else { unreachable!() };
            assert_eq!((*status, *redis_ok), (503, Some(false)));
            let reason = blocked[0].sg_paths.values().next().unwrap().describe();
            assert!(reason.contains("fix: allow 6379 from"), "{reason}");
        }
        sb.down().await;
    }
}

/// The sandbox's own referee honours rules naming a managed prefix list:
/// staging-web-2 (staging-batch, never allowed by group) reaches Redis once
/// staging-redis's rule names a list holding its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_naming_a_prefix_list_really_lets_its_addresses_reach_redis() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-1").await;
    let (status, _) = health_of(&sb, "staging-web-2").await;
    assert_eq!(status, 503, "blocked before");
    let pl = replace_staging_redis_rule_with_a_prefix_list(&sb).await;
    println!("staging-redis now allows 6379 from {pl} only");
    eventually(Duration::from_secs(15), "both staging instances to reach Redis through the prefix list", || async {
        let mut ok = true;
        for name in ["staging-web-1", "staging-web-2"] {
            let (status, body) = health_of(&sb, name).await;
            ok &= status == 200 && body["redis"]["ok"] == true;
        }
        ok.then_some(())
    })
    .await;
    sb.down().await;
}
