//! The live read path and `cutover status`, against the sandbox's real moto,
//! redis-servers and app servers. Values are compared with what the AWS SDK
//! reads straight from moto, never with cutover's own reading.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::time::{Duration, Instant};

use common::*;
use cutover::live::HealthProbe;
use cutover::status::{CheckOutcome, snapshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_equals_what_the_sdk_reads() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-east-1").await;
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_cutover(&sb, &rb, dir.path(), &["status", "runbooks/demo.toml", "--json"]).await;
    assert_eq!(code, Some(1), "demo has failing blocking checks; stderr: {stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(j["schema"], 1);
    assert_eq!(j["region"], "us-east-1");
    assert_eq!(j["identity"]["value"]["account"], "123456789012");

    // Weights.
    let sets = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    let sdk_weights: BTreeMap<String, i64> = sets
        .resource_record_sets()
        .iter()
        .filter_map(|r| Some((r.set_identifier()?.to_string(), r.weight()?)))
        .collect();
    let json_weights: BTreeMap<String, i64> = j["traffic"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["set_identifier"].as_str().unwrap().to_string(), s["weight"].as_i64().unwrap()))
        .collect();
    assert_eq!(json_weights, sdk_weights);

    // Targets: (target group, id, state) from DescribeTargetHealth.
    let mut sdk_targets = BTreeSet::new();
    for tg in sb.clients.elb.describe_target_groups().send().await.unwrap().target_groups() {
        let h = sb
            .clients
            .elb
            .describe_target_health()
            .target_group_arn(tg.target_group_arn().unwrap())
            .send()
            .await
            .unwrap();
        for d in h.target_health_descriptions() {
            sdk_targets.insert((
                tg.target_group_name().unwrap().to_string(),
                d.target().unwrap().id().unwrap().to_string(),
                d.target_health().unwrap().state().unwrap().as_str().to_string(),
            ));
        }
    }
    let mut json_targets = BTreeSet::new();
    let mut json_instances = BTreeSet::new();
    for env in j["environments"].as_array().unwrap() {
        let aws = &env["aws"];
        assert_eq!(aws["stale"], false);
        for tg in aws["value"]["target_groups"].as_array().unwrap() {
            for t in tg["targets"].as_array().unwrap() {
                json_targets.insert((
                    tg["name"].as_str().unwrap().to_string(),
                    t["id"].as_str().unwrap().to_string(),
                    t["state"].as_str().unwrap().to_string(),
                ));
            }
        }
        for i in aws["value"]["instances"].as_array().unwrap() {
            json_instances.insert((
                i["id"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
                i["availability_zone"].as_str().unwrap().to_string(),
                i["private_ip"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(json_targets, sdk_targets);

    // Instances from DescribeInstances.
    let sdk_instances: BTreeSet<_> = sb
        .clients
        .ec2
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap().to_string(),
                i.state().unwrap().name().unwrap().as_str().to_string(),
                i.placement().unwrap().availability_zone().unwrap().to_string(),
                i.private_ip_address().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(json_instances, sdk_instances);

    let failing: BTreeSet<String> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| format!("{}/{}", c["phase"].as_str().unwrap(), c["item"].as_str().unwrap()))
        .collect();
    // staging-web-2 cannot reach Redis: its /health says 503, and its load
    // balancer marks it unhealthy (the targets check), as an ALB would.
    let expected = ["validate/targets", "validate/redis", "validate/key-counts", "traffic/http"];
    assert_eq!(failing, expected.into_iter().map(String::from).collect::<BTreeSet<String>>());
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_security_group_instance_fails_the_path_with_the_rule_named_and_others_pass() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-west-2").await;
    let snap = first_snapshot(&rb, &sb).await;
    let g = &sb.world.groups;
    let mut seen = Vec::new();
    for env in &snap.environments {
        for i in &env.aws.value.as_ref().unwrap().instances {
            let name = i.instance.name.clone().unwrap();
            seen.push(name.clone());
            let path = i.sg_paths.values().next().expect("one Redis endpoint per environment");
            let Some(HealthProbe::Answered { redis_ok, .. }) = &i.health.value else {
                panic!("{name}: {:?}", i.health)
            };
            if name == "staging-web-2" {
                let want = format!(
                    "BLOCKED: {} (staging-redis) allows 6379 from {} (staging-app); instance {} has only {} (staging-batch); fix: allow 6379 from {} (staging-batch) on {} (staging-redis)",
                    g["staging-redis"],
                    g["staging-app"],
                    i.instance.id,
                    g["staging-batch"],
                    g["staging-batch"],
                    g["staging-redis"]
                );
                assert_eq!(path.describe(), want);
                assert_eq!(*redis_ok, Some(false));
            } else {
                assert!(path.is_allowed(), "{name}: {}", path.describe());
                assert_eq!(*redis_ok, Some(true), "{name}");
            }
        }
    }
    // Every instance judged, the blocked one among them (a loop over none
    // would pass).
    seen.sort();
    let mut all: Vec<String> = sb.world.instances.iter().map(|i| i.name.clone()).collect();
    all.sort();
    assert_eq!(seen, all);
    assert!(seen.iter().any(|n| n == "staging-web-2"), "{seen:?}");
    sb.down().await;
}

/// A load balancer whose listener answers a fixed 503 by default, its target
/// group reached only through a rule for another host: DescribeTargetGroups
/// still lists the group as routed, its targets are healthy, yet requests
/// for the weighted record never reach them. The targets check is unknown
/// and the healthy_targets gate an error (both passed), until a rule for
/// the record's own host forwards to the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reached_only_through_another_hosts_rule_is_no_evidence_for_the_records_requests() {
    use aws_sdk::elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, FixedResponseActionConfig, HostHeaderConditionConfig, RuleCondition,
    };
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-1").await;
    let elb = &sb.clients.elb;
    let lb = elb.describe_load_balancers().names("demo-prod-alb").send().await.unwrap().load_balancers()[0].clone();
    let listener =
        elb.describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send().await.unwrap().listeners()
            [0]
        .clone();
    let listener_arn = listener.listener_arn().unwrap().to_string();
    let tg_arn = listener.default_actions()[0].target_group_arn().unwrap().to_string();
    let check = cutover::runbook::Check::TargetsHealthy { environment: "production".into() };
    let gate = cutover::runbook::GateKind::HealthyTargets { environment: "production".into(), min: 1 };
    let passes = || async {
        let snap = first_snapshot(&rb, &sb).await;
        (cutover::status::checks::evaluate_one(&rb, &snap, &check).0 == CheckOutcome::Pass).then_some(())
    };
    eventually(Duration::from_secs(60), "production's targets check to pass", passes).await;

    let fixed = FixedResponseActionConfig::builder().status_code("503").content_type("text/plain").build();
    let answer_503 = Action::builder().r#type(ActionTypeEnum::FixedResponse).fixed_response_config(fixed).build();
    elb.modify_listener().listener_arn(&listener_arn).default_actions(answer_503).send().await.unwrap();
    let host = |name: &str| {
        RuleCondition::builder()
            .field("host-header")
            .host_header_config(HostHeaderConditionConfig::builder().values(name).build())
            .build()
    };
    let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg_arn).build();
    let rule = elb
        .create_rule()
        .listener_arn(&listener_arn)
        .priority(10)
        .conditions(host("preview.demo.cutover.test"))
        .actions(forward)
        .send()
        .await
        .unwrap()
        .rules()[0]
        .clone();
    let snap = first_snapshot(&rb, &sb).await;
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, CheckOutcome::Unknown, "{detail}");
    assert!(
        detail.starts_with(
            "not every listener of load balancer demo-prod-alb sends every request for app.demo.cutover.test to a \
             listed target group: HTTP 80 answers a fixed 503"
        ),
        "{detail}"
    );
    let m = cutover::drive::gates::from_snapshot(&rb, &gate, &snap);
    assert!(matches!(&m, Some(cutover::engine::Measurement::Error(w)) if w.contains("answers a fixed 503")), "{m:?}");

    // A rule for the record's own host (a wildcard) sends its requests there.
    elb.modify_rule().rule_arn(rule.rule_arn().unwrap()).conditions(host("*.DEMO.cutover.test")).send().await.unwrap();
    let snap = first_snapshot(&rb, &sb).await;
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, CheckOutcome::Pass, "{detail}");
    sb.down().await;
}

/// A Redis that is a replica answers PING, reads, and a PING-only /health,
/// and refuses every write: a new Redis still replicating from the old one
/// fails `redis_reachable`, named as such, never passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_a_replica_fails_redis_reachable() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-east-1").await;
    let (prod, staging) = (&sb.redis_urls["prod-cache"], &sb.redis_urls["staging-cache"]);
    let port = |url: &str| url.rsplit(':').next().unwrap().split('/').next().unwrap().to_string();
    let mut c = redis::Client::open(staging.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    // staging-web-2's path opened first, so the check passes before.
    let dir = tempfile::tempdir().unwrap();
    let args = ["run", "runbooks/demo.toml", "validate/redis-ingress", "--yes"];
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &args).await;
    assert_eq!(code, Some(0), "{out}");
    let check = cutover::runbook::Check::RedisReachable { environment: "staging".into() };
    let passes = || async {
        let snap = first_snapshot(&rb, &sb).await;
        (cutover::status::checks::evaluate_one(&rb, &snap, &check).0 == CheckOutcome::Pass).then_some(())
    };
    eventually(Duration::from_secs(60), "staging's redis_reachable to pass", passes).await;
    let _: () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(port(prod)).query_async(&mut c).await.unwrap();
    let snap = first_snapshot(&rb, &sb).await;
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    let _: () = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async(&mut c).await.unwrap();
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    assert!(detail.contains("staging-cache: it is a replica (role:slave), which refuses writes"), "{detail}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_instance_shows_unused_invalid_state_on_the_next_poll() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-central-1").await;
    let mut session = session(&rb, &sb);
    session.first_round(&rb, Duration::from_secs(30)).await;
    let staging_check =
        |snap: &cutover::status::Snapshot| snap.checks.iter().find(|c| c.item == "targets").unwrap().outcome;
    let before = staging_check(&snapshot(&rb, &session.state, &sb.region, std::time::SystemTime::now()));
    let id = sb.world.instances.iter().find(|i| i.name == "prod-web-1").unwrap().id.clone();
    sb.clients.ec2.stop_instances().instance_ids(&id).send().await.unwrap();
    session.workers.refresh_now();
    let start = Instant::now();
    loop {
        session.run_until(tokio::time::Instant::now() + Duration::from_millis(500)).await;
        let snap = snapshot(&rb, &session.state, &sb.region, std::time::SystemTime::now());
        let prod = snap.environment("production").unwrap().aws.value.as_ref().unwrap();
        let t = prod.target_groups[0].targets.iter().find(|t| t.target.id == id).unwrap();
        if t.target.state == "unused" {
            assert_eq!(t.target.reason.as_deref(), Some("Target.InvalidState"));
            let inst = prod.instances.iter().find(|i| i.instance.id == id).unwrap();
            assert_eq!(inst.instance.state, "stopped");
            assert_eq!(staging_check(&snap), before, "the check is about staging, which is untouched");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "stopped target never showed unused");
    }
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_changed_by_another_client_appear_on_the_next_poll() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-south-1").await;
    let mut session = session(&rb, &sb);
    session.first_round(&rb, Duration::from_secs(30)).await;
    set_weights_as_another_client(&sb, &rb, &[("prod", 70), ("staging", 30)]).await;
    let start = Instant::now();
    loop {
        session.run_until(tokio::time::Instant::now() + Duration::from_millis(500)).await;
        let sides = session.state.traffic.value.as_ref().unwrap().sides.clone();
        let got: Vec<(String, Option<u8>, f64)> =
            sides.iter().map(|s| (s.set_identifier.clone(), s.weight, s.share_percent)).collect();
        if got == [("prod".to_string(), Some(70), 70.0), ("staging".to_string(), Some(30), 30.0)] {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(12), "weights never updated: {got:?}");
    }
    sb.down().await;
}

/// moto cannot report initial, unhealthy or Target.NotInUse targets, so ELB
/// is faked through cutover's narrow `LoadBalancing` trait. EC2 stays real.
struct FakeElb {
    zones: Vec<String>,
    targets: Vec<cutover::aws::elb::Target>,
}

impl cutover::aws::elb::LoadBalancing for FakeElb {
    async fn load_balancer(&self, name: &str) -> cutover::aws::AwsResult<cutover::aws::elb::LoadBalancer> {
        Ok(cutover::aws::elb::LoadBalancer {
            name: name.into(),
            arn: format!("arn:aws:elasticloadbalancing:us-east-2:123456789012:loadbalancer/app/{name}/1"),
            dns_name: "x".into(),
            zones: self.zones.clone(),
            vpc_id: None,
            // Each load balancer routes to its environment's group (demo-staging-alb to demo-staging-web).
            routes_to: cutover::aws::elb::Routing::Groups(vec![format!(
                "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/{}/1",
                name.replace("-alb", "-web")
            )]),
            listeners: cutover::aws::elb::Listeners::forwarding_to(vec![format!(
                "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/{}/1",
                name.replace("-alb", "-web")
            )]),
        })
    }
    async fn target_groups(&self, names: &[String]) -> cutover::aws::AwsResult<Vec<cutover::aws::elb::TargetGroup>> {
        Ok(names
            .iter()
            .map(|n| cutover::aws::elb::TargetGroup {
                name: n.clone(),
                arn: format!("arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/{n}/1"),
                load_balancer_arns: vec![],
                health_check_path: Some("/health".into()),
                health_check_interval_seconds: Some(30),
                attributes: Default::default(),
                targets: self.targets.clone(),
            })
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_in_use_initial_and_unhealthy_targets_are_shown_with_reasons_and_the_az_explanation() {
    use cutover::aws::elb::Target;
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-east-2").await;
    let id = |n: &str| sb.world.instances.iter().find(|i| i.name == n).unwrap().id.clone();
    let target = |id: String, state: &str, reason: &str, az: Option<&str>| Target {
        id,
        port: Some(8080),
        availability_zone: az.map(str::to_string),
        state: state.into(),
        reason: Some(reason.into()),
        description: Some(format!("{state} for the test")),
    };
    let fake = FakeElb {
        zones: vec!["us-east-2a".into()],
        targets: vec![
            target(id("staging-web-1"), "unhealthy", "Target.ResponseCodeMismatch", None),
            // staging-web-2 really sits in us-east-2b (moto), which the fake ALB does not enable.
            target(id("staging-web-2"), "unused", "Target.NotInUse", None),
            target("i-0000000000000000f".into(), "initial", "Elb.InitialHealthChecking", Some("us-east-2a")),
        ],
    };
    let env = rb.environment("staging").unwrap();
    let data =
        cutover::live::fetch::environment_with(&fake, &cutover::aws::SideClients::one(sb.clients.clone()), &rb, env)
            .await
            .unwrap();
    let mut live = cutover::live::LiveState::default();
    cutover::live::update(
        &mut live,
        cutover::live::LiveEvent::now(cutover::live::Update::Environment {
            environment: "staging".into(),
            result: Ok(data),
        }),
    );
    let snap = snapshot(&rb, &live, "us-east-2", std::time::SystemTime::now());
    let tg = &snap.environment("staging").unwrap().aws.value.as_ref().unwrap().target_groups[0];
    assert_eq!((tg.healthy, tg.total), (0, 3));
    let t = |n: usize| &tg.targets[n];
    assert_eq!(t(0).zone_enabled, Some(true));
    assert_eq!(t(1).zone_enabled, Some(false));
    assert_eq!(
        t(1).explanation.as_deref(),
        Some(
            "AZ us-east-2b is not enabled on load balancer demo-staging-alb (enabled: us-east-2a); the target gets no traffic"
        )
    );
    assert_eq!(t(2).target.state, "initial");

    let check = |item: &str| snap.checks.iter().find(|c| c.item == item).unwrap().clone();
    let targets = check("targets");
    assert_eq!(targets.outcome, CheckOutcome::Fail);
    assert!(targets.detail.contains("is unhealthy (Target.ResponseCodeMismatch)"), "{}", targets.detail);
    assert!(targets.detail.contains("is unused (Target.NotInUse)"), "{}", targets.detail);
    assert!(targets.detail.contains("is initial (Elb.InitialHealthChecking)"), "{}", targets.detail);
    let zones = check("zones");
    assert_eq!(zones.outcome, CheckOutcome::Fail);
    assert!(zones.detail.starts_with("AZ us-east-2b is not enabled"), "{}", zones.detail);

    let text = cutover::status::text::render(&snap);
    assert!(text.contains("unused     Target.NotInUse"), "{text}");
    assert!(text.contains("AZ us-east-2b is not enabled on load balancer demo-staging-alb"), "{text}");
    sb.down().await;
}

#[test]
fn moto_frozen_mid_watch_goes_stale_with_the_error_redis_stays_live_and_it_recovers() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rb = runbook("demo.toml");
    let sb = rt.block_on(sandbox(&rb, "eu-west-3"));
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(Some(
        cutover_command(
            &sb,
            &rb,
            dir.path(),
            &["status", "runbooks/demo.toml", "--json", "--watch", "--interval", "1"],
        )
        .spawn()
        .unwrap(),
    ));
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = child.get().stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).expect("each line is JSON")).is_err() {
                return;
            }
        }
    });
    let wait_for = |what: &str, limit: Duration, pred: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let start = Instant::now();
        loop {
            let left = limit.checked_sub(start.elapsed()).unwrap_or_else(|| panic!("timed out waiting for {what}"));
            let v = rx.recv_timeout(left).unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if pred(&v) {
                return v;
            }
        }
    };
    let environments = |v: &serde_json::Value| v["environments"].as_array().unwrap().clone();
    let aws_fresh = |v: &serde_json::Value| {
        v["traffic"]["stale"] == false
            && v["traffic"]["value"].is_array()
            && environments(v).len() == 2
            && environments(v).iter().all(|e| e["aws"]["stale"] == false)
    };
    wait_for("a fresh snapshot", Duration::from_secs(30), &aws_fresh);

    let thaw = freeze(sb.moto_pid().expect("the sandbox started moto"));
    let frozen_at = Instant::now();
    let stale = wait_for("AWS values to go stale", Duration::from_secs(60), &|v| {
        v["traffic"]["stale"] == true
            && environments(v).len() == 2
            && environments(v).iter().all(|e| e["aws"]["stale"] == true)
    });
    assert!(stale["traffic"]["value"].is_array(), "the last good weights are kept");
    assert!(!stale["redis"].as_array().unwrap().is_empty(), "{}", stale["redis"]);
    assert!(stale["traffic"]["error"].as_str().unwrap().contains("ListResourceRecordSets"), "{}", stale["traffic"]);
    for r in stale["redis"].as_array().unwrap() {
        assert_eq!(r["stale"], false, "Redis is not behind moto: {r}");
    }
    let checks = stale["checks"].as_array().unwrap();
    let targets = checks.iter().find(|c| c["item"] == "targets").unwrap();
    assert_eq!(targets["outcome"], "unknown", "stale data never passes a check: {targets}");

    let stale_after = frozen_at.elapsed();
    // Down for 30 s in all, as the scenario says: no snapshot meanwhile is fresh.
    let mut while_down = 0;
    while frozen_at.elapsed() < Duration::from_secs(30) {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(500)) {
            assert!(!aws_fresh(&v), "a snapshot taken while AWS was down showed AWS fresh: {v}");
            while_down += 1;
        }
    }
    assert!(while_down >= 5, "`--watch` kept printing while AWS was down: {while_down} snapshots");
    let down_for = frozen_at.elapsed();
    drop(thaw);
    let thawed_at = Instant::now();
    wait_for("AWS values to be fresh again", Duration::from_secs(60), &aws_fresh);
    let fresh_after = thawed_at.elapsed();
    unsafe { libc::kill(child.get().id() as i32, libc::SIGINT) };
    let out = child.take().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    record(
        "aws-down",
        format!(
            "`status --watch` with moto frozen (SIGSTOP) for {:.0} s: every AWS value went STALE within {:.0} s, \
             keeping the last weights with the error (`{}`), and none of the {while_down} snapshots after that showed \
             AWS fresh; Redis stayed live; the targets check became unknown, never a pass; fresh again {:.0} s \
             after AWS came back",
            down_for.as_secs_f64(),
            stale_after.as_secs_f64(),
            clip(stale["traffic"]["error"].as_str().unwrap_or(""), 100),
            fresh_after.as_secs_f64(),
        ),
    );
    rt.block_on(sb.down());
}

/// Regression: with AWS unreachable from the start, `status --json` still
/// prints every value (the AWS ones with their error, Redis live) and exits 1.
/// A region check that could not run must not stop the read path; only one
/// that ran and found none of the runbook's load balancers refuses.
#[test]
fn status_with_moto_frozen_from_the_start_prints_every_value_and_exits_1() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rb = runbook("demo.toml");
    let sb = rt.block_on(sandbox(&rb, "ca-central-1"));
    let dir = tempfile::tempdir().unwrap();
    let thaw = freeze(sb.moto_pid().expect("the sandbox started moto"));
    let frozen_at = Instant::now();
    let out = cutover_command(&sb, &rb, dir.path(), &["status", "runbooks/demo.toml", "--json"]).output().unwrap();
    let took = frozen_at.elapsed();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    drop(thaw);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert!(j["traffic"]["value"].is_null(), "nothing was ever read from Route53: {}", j["traffic"]);
    assert!(j["traffic"]["error"].as_str().unwrap().contains("cannot reach AWS"), "{}", j["traffic"]);
    assert_eq!(j["environments"].as_array().unwrap().len(), 2, "{}", j["environments"]);
    for e in j["environments"].as_array().unwrap() {
        assert!(e["aws"]["error"].is_string(), "each environment's AWS view carries its error: {e}");
    }
    let redis = j["redis"].as_array().unwrap();
    assert!(!redis.is_empty());
    for r in redis {
        assert_eq!(r["stale"], false, "Redis is not behind moto: {r}");
        assert!(r["value"].is_object(), "Redis answered: {r}");
    }
    let targets = j["checks"].as_array().unwrap().iter().find(|c| c["item"] == "targets").unwrap();
    assert_eq!(targets["outcome"], "unknown", "a check on data never read is unknown, never a pass: {targets}");
    record(
        "aws-down",
        format!(
            "`status --json` with moto frozen (SIGSTOP) before it started: printed the whole snapshot in {:.0} s, \
             every AWS value failed with its error (`{}`), all {} Redis endpoints live, exit 1",
            took.as_secs_f64(),
            clip(j["traffic"]["error"].as_str().unwrap_or(""), 100),
            redis.len(),
        ),
    );
    rt.block_on(sb.down());
}

/// A group named like the endpoint's in another VPC (another team's, with a
/// rule open to everyone) must never decide staging's path: names are looked
/// up in staging's VPC only, and a name found in no group of it is an error
/// naming that VPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_the_same_name_in_another_vpc_never_decides_the_path() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ca-central-1").await;
    let ec2 = &sb.clients.ec2;
    let other = ec2.create_vpc().cidr_block("10.99.0.0/16").send().await.unwrap();
    let other_vpc = other.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut decoys = Vec::new();
    for name in ["staging-redis", "shared-redis"] {
        decoys.push(a_group_open_to_everyone(ec2, name, &other_vpc).await);
    }
    let real = sb.world.groups["staging-redis"].clone();

    let env = rb.environment("staging").unwrap();
    let data =
        cutover::live::fetch::environment(&cutover::aws::SideClients::one(sb.clients.clone()), &rb, env).await.unwrap();
    let ids: Vec<String> = data.redis_groups["staging-cache"].iter().map(|g| g.id.clone()).collect();
    println!("staging-cache's groups: {ids:?} (staging's VPC {}, decoy {})", sb.world.vpc_id, decoys[0]);
    assert_eq!(ids, std::slice::from_ref(&real), "only the group in staging's VPC");

    let snap = first_snapshot(&rb, &sb).await;
    let staging = snap.environment("staging").unwrap().aws.value.as_ref().unwrap();
    let web2 = staging.instances.iter().find(|i| i.instance.name.as_deref() == Some("staging-web-2")).unwrap();
    let path = &web2.sg_paths["staging-cache"];
    println!("staging-web-2: {}", path.describe());
    let cutover::analysis::reachability::SgPath::Blocked { fix: Some(fix), .. } = path else {
        panic!("staging-web-2 must stay blocked: {}", path.describe())
    };
    assert_eq!(fix.group_id, real, "the fix goes on staging's own group");

    // A name that only another VPC holds is an error naming staging's VPC.
    let mut rb2 = rb.clone();
    let env2 = rb2.environments.get_mut("staging").unwrap();
    env2.redis[0].security_groups = vec!["shared-redis".into()];
    let env2 = rb2.environment("staging").unwrap();
    let got = cutover::live::fetch::environment(&cutover::aws::SideClients::one(sb.clients.clone()), &rb2, env2).await;
    let err = match got {
        Ok(d) => panic!("a group of another VPC was used: {:?}", d.redis_groups["staging-cache"]),
        Err(e) => e.to_string(),
    };
    println!("{err}");
    assert!(err.contains("shared-redis") && err.contains(&sb.world.vpc_id), "{err}");
    sb.down().await;
}

/// A Redis another environment declares (a shared one) is protected by
/// groups in that environment's VPC. Staging's own VPC holds a namesake open
/// to everyone: it must never decide staging's path, nor take the rule that
/// authorize_redis_ingress adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_redis_groups_are_looked_up_in_its_owners_vpc_never_a_namesake_in_the_users() {
    use aws_sdk::ec2::types::{ResourceType, Tag, TagSpecification};
    use cutover::analysis::reachability::SgPath;
    let mut rb = runbook("demo.toml");
    let sb = sandbox(&rb, "sa-east-1").await;
    let ec2 = &sb.clients.ec2;
    // The owner, "legacy": one instance in a VPC of its own, and its Redis's group there.
    let vpc = ec2.create_vpc().cidr_block("10.98.0.0/16").send().await.unwrap();
    let legacy_vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&legacy_vpc)
        .cidr_block("10.98.1.0/24")
        .availability_zone("sa-east-1a")
        .send()
        .await
        .unwrap();
    let tag = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key("Environment").value("legacy").build())
        .build();
    ec2.run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet.subnet().unwrap().subnet_id().unwrap())
        .tag_specifications(tag)
        .send()
        .await
        .unwrap();
    let create = ec2.create_security_group().group_name("legacy-redis").description("legacy's Redis");
    let real = create.vpc_id(&legacy_vpc).send().await.unwrap().group_id().unwrap().to_string();
    let namesake = a_group_open_to_everyone(ec2, "legacy-redis", &sb.world.vpc_id).await;
    // Its node's interface, in its group as on AWS.
    let legacy_subnet = subnet.subnet().unwrap().subnet_id().unwrap();
    ec2.create_network_interface().subnet_id(legacy_subnet).groups(&real).send().await.unwrap();

    let mut legacy = rb.environments["staging"].clone();
    legacy.name = "legacy".into();
    legacy.load_balancer = None;
    legacy.target_groups = vec![];
    legacy.instances =
        cutover::runbook::InstanceSelector::Tags(BTreeMap::from([("Environment".into(), "legacy".into())]));
    let mut cache = legacy.redis[0].clone();
    cache.name = "legacy-cache".into();
    cache.environment = "legacy".into();
    cache.security_groups = vec!["legacy-redis".into()];
    legacy.redis = vec![cache];
    legacy.uses_redis = vec!["legacy-cache".into()];
    rb.environments.insert("legacy".into(), legacy);
    rb.environments.get_mut("staging").unwrap().uses_redis.push("legacy-cache".into());

    let sides = cutover::aws::SideClients::one(sb.clients.clone());
    let staging = rb.environment("staging").unwrap();
    let data = cutover::live::fetch::environment(&sides, &rb, staging).await.unwrap();
    let ids: Vec<&str> = data.redis_groups["legacy-cache"].iter().map(|g| g.id.as_str()).collect();
    println!("legacy-cache's groups seen from staging: {ids:?} (legacy's {real}, namesake {namesake})");
    assert_eq!(ids, [real.as_str()], "the group in legacy's VPC, not staging's namesake");
    for i in &data.instances {
        let src = i.source();
        let path = cutover::analysis::reachability::sg_path_named(
            &src,
            &data.redis_groups["legacy-cache"],
            6379,
            &data.group_names,
        );
        assert!(matches!(path, SgPath::Blocked { .. }), "{}: {}", i.id, path.describe());
    }

    // The rule authorize would add goes on legacy's group.
    let action = cutover::runbook::Action::AuthorizeRedisIngress { environment: "staging".into() };
    let plan = cutover::drive::actions::plan(&sides, &rb, &action).await.unwrap_or_else(|e| panic!("{e}"));
    let targets: BTreeSet<String> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            cutover::drive::actions::Step::AuthorizeIngress { group_id, .. } => Some(group_id.clone()),
            _ => None,
        })
        .collect();
    println!("authorize: {:?}", plan.steps.iter().map(|s| s.describe()).collect::<Vec<_>>());
    assert!(targets.contains(&real) && !targets.contains(&namesake), "{targets:?}");

    // Legacy's side cannot be read (its load balancer gone): staging's own
    // data stands, legacy-cache's path is not judged, and a revoke, which
    // must see every group a rule of cutover's may be on, refuses.
    rb.environments.get_mut("legacy").unwrap().load_balancer = Some("legacy-alb-gone".into());
    let data = cutover::live::fetch::environment(&sides, &rb, rb.environment("staging").unwrap()).await.unwrap();
    let e = &data.redis_groups_unread["legacy-cache"];
    assert!(e.starts_with("read through legacy's side: DescribeLoadBalancers: LoadBalancerNotFound"), "{e}");
    assert!(!data.redis_groups.contains_key("legacy-cache") && !data.instances.is_empty());
    let snap = first_snapshot(&rb, &sb).await;
    let staging = snap.environment("staging").unwrap().aws.value.as_ref().unwrap();
    for i in &staging.instances {
        let path = &i.sg_paths["legacy-cache"];
        assert!(matches!(path, SgPath::Unknown { .. }), "{}", path.describe());
    }
    let revoke = cutover::runbook::Action::RevokeRedisIngress { environment: "staging".into() };
    let err = cutover::drive::actions::plan(&sides, &rb, &revoke).await.map(|p| p.before).unwrap_err().to_string();
    println!("{err}");
    assert!(err.contains("legacy-cache's security groups could not be read") && err.contains("nothing was changed"));
    sb.down().await;
}

/// The rule from staging-app on staging-redis is replaced by one naming a
/// managed prefix list holding both staging instances' addresses: the path
/// is open through the list, and the action plans no redundant rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_naming_a_managed_prefix_list_admits_the_addresses_it_holds() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-north-1").await;
    let pl = replace_staging_redis_rule_with_a_prefix_list(&sb).await;

    let snap = first_snapshot(&rb, &sb).await;
    let staging = snap.environment("staging").unwrap().aws.value.as_ref().unwrap();
    assert_eq!(staging.instances.len(), 2, "both staging instances judged");
    for i in &staging.instances {
        let path = &i.sg_paths["staging-cache"];
        println!("{}: {}", i.instance.name.clone().unwrap(), path.describe());
        assert!(path.is_allowed() && path.describe().contains(&pl), "{}", path.describe());
    }
    let action = cutover::runbook::Action::AuthorizeRedisIngress { environment: "staging".into() };
    let plan = cutover::drive::actions::plan(&sb.sides, &rb, &action).await.unwrap();
    let steps: Vec<String> = plan.steps.iter().map(|s| s.describe()).collect();
    println!("authorize_redis_ingress plans: {steps:?}");
    assert!(steps.is_empty(), "a redundant rule: {steps:?}");
    sb.down().await;
}

/// staging-web-2 (staging-batch, never allowed by group) gets an IPv6 address
/// and staging-redis a rule for exactly that address (Ipv6Ranges). Redis's
/// node is at an IPv4 address, so the instance connects from its IPv4 one,
/// which no rule admits: the path stays blocked, saying so, the group rule
/// is still planned, and the sandbox's firewall agrees (its /health fails on
/// Redis). The path was judged open through the IPv6 rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_range_holding_the_instances_ipv6_address_does_not_open_its_path_to_an_ipv4_node() {
    use aws_sdk::ec2::types::{IpPermission, Ipv6Range};
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-northeast-3").await;
    let ec2 = &sb.clients.ec2;
    let assoc = ec2
        .associate_vpc_cidr_block()
        .vpc_id(&sb.world.vpc_id)
        .amazon_provided_ipv6_cidr_block(true)
        .send()
        .await
        .unwrap();
    let block = assoc.ipv6_cidr_block_association().unwrap().ipv6_cidr_block().unwrap().to_string();
    let net: std::net::Ipv6Addr = block.split('/').next().unwrap().parse().unwrap();
    let addr = std::net::Ipv6Addr::from(u128::from(net) + 7).to_string();
    let web2 = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap().clone();
    let d = ec2.describe_instances().instance_ids(&web2.id).send().await.unwrap();
    let eni = d.reservations()[0].instances()[0].network_interfaces()[0].network_interface_id().unwrap().to_string();
    ec2.assign_ipv6_addresses().network_interface_id(&eni).ipv6_addresses(&addr).send().await.unwrap();
    let rule = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(6379)
        .to_port(6379)
        .ipv6_ranges(Ipv6Range::builder().cidr_ipv6(format!("{addr}/128")).build())
        .build();
    ec2.authorize_security_group_ingress()
        .group_id(&sb.world.groups["staging-redis"])
        .ip_permissions(rule)
        .send()
        .await
        .unwrap();

    let snap = first_snapshot(&rb, &sb).await;
    let staging = snap.environment("staging").unwrap().aws.value.as_ref().unwrap();
    let path = &staging.instances.iter().find(|i| i.instance.id == web2.id).unwrap().sg_paths["staging-cache"];
    println!("staging-web-2 ({addr}): {}", path.describe());
    assert!(!path.is_allowed(), "{}", path.describe());
    assert!(path.describe().contains("the endpoint is reached over IPv4"), "{}", path.describe());
    let action = cutover::runbook::Action::AuthorizeRedisIngress { environment: "staging".into() };
    let plan = cutover::drive::actions::plan(&sb.sides, &rb, &action).await.unwrap();
    let steps: Vec<String> = plan.steps.iter().map(|s| s.describe()).collect();
    println!("authorize_redis_ingress plans: {steps:?}");
    assert_eq!(steps.len(), 1, "the group rule that opens it: {steps:?}");
    // The sandbox's own firewall: still no way in (several health checks).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = reqwest::get(&web2.health_url).await.unwrap();
    assert!(!r.status().is_success(), "staging-web-2 reached Redis over an IPv6 rule to an IPv4 node");
    sb.down().await;
}

/// staging-app's outbound rules are cut to HTTPS alone (its default "all
/// traffic to 0.0.0.0/0" revoked): staging-web-1, let in by staging-redis,
/// can no longer get out to it. The path is blocked with the outbound rule
/// named, authorize refuses (its inbound rule would open nothing), and the
/// sandbox's firewall agrees: its /health fails on Redis. An outbound rule
/// naming staging-redis on 6379 opens the path again, through that rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_groups_let_nothing_out_to_redis_is_blocked_whatever_the_endpoint_allows() {
    use aws_sdk::ec2::types::{IpPermission, UserIdGroupPair};
    use cutover::analysis::reachability::SgPath;
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-2").await;
    let ec2 = &sb.clients.ec2;
    let (app, redis) = (sb.world.groups["staging-app"].clone(), sb.world.groups["staging-redis"].clone());
    let_only_this_out(ec2, &app, tcp_with(443, "0.0.0.0/0")).await;
    let web1 = sb.world.instances.iter().find(|i| i.name == "staging-web-1").unwrap().clone();

    let path = staging_path(&rb, &sb, &web1.id, "staging-cache").await;
    let SgPath::Blocked { reason, fix: None } = &path else { panic!("expected blocked, got {}", path.describe()) };
    let node = node_address(&sb, "staging-cache").await;
    assert_eq!(
        reason,
        &format!(
            "out: no outbound rule lets 6379 out to {node} (in the endpoint's groups {redis} (staging-redis)) from instance {}'s groups: {app} (staging-app); fix by hand: allow 6379 out to {redis} (staging-redis) on {app} (staging-app)",
            web1.id
        )
    );
    let action = cutover::runbook::Action::AuthorizeRedisIngress { environment: "staging".into() };
    let err = cutover::drive::actions::plan(&sb.sides, &rb, &action).await.map(|p| p.steps.len()).unwrap_err();
    println!("authorize: {err}");
    assert!(
        err.to_string()
            .contains(&format!("{} → staging-cache on port 6379 is closed and no rule here opens it", web1.id)),
        "{err}"
    );
    health_becomes(&web1.health_url, false, "the sandbox's firewall to stop staging-web-1 reaching Redis").await;

    let to_redis = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(6379)
        .to_port(6379)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&redis).build())
        .build();
    ec2.authorize_security_group_egress().group_id(&app).ip_permissions(to_redis).send().await.unwrap();
    let path = staging_path(&rb, &sb, &web1.id, "staging-cache").await;
    assert!(path.is_allowed(), "{}", path.describe());
    assert!(
        path.describe().ends_with(&format!("; {app} (staging-app) lets 6379 out to {redis} (staging-redis))")),
        "{}",
        path.describe()
    );
    health_becomes(&web1.health_url, true, "staging-web-1 to reach Redis again").await;
    sb.down().await;
}

/// Groups a runbook names for a Redis that hold no network interface (on
/// AWS each ElastiCache node has one in its groups) are likely not the
/// endpoint's: their rules prove nothing of it, and the path is unknown.
/// It showed ok ("the endpoint taken as IPv4") whenever they let the
/// instance in and its own groups let everything out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_that_hold_no_network_interface_prove_no_path_to_the_redis() {
    use cutover::analysis::reachability::SgPath;
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-central-2").await;
    let web1 = sb.world.instances.iter().find(|i| i.name == "staging-web-1").unwrap().clone();
    let path = staging_path(&rb, &sb, &web1.id, "staging-cache").await;
    let node = node_address(&sb, "staging-cache").await;
    assert!(path.is_allowed() && path.describe().contains(&format!("(holds {node})")), "{}", path.describe());
    let made = &sb.world.redis_interfaces["staging-cache"];
    sb.clients.ec2.delete_network_interface().network_interface_id(made).send().await.unwrap();
    let path = staging_path(&rb, &sb, &web1.id, "staging-cache").await;
    let SgPath::Unknown { reason } = &path else { panic!("expected unknown, got {}", path.describe()) };
    assert!(reason.contains("no network interface is in staging-cache's security groups"), "{reason}");
    sb.down().await;
}

/// The address of the interface the sandbox made for `endpoint`'s node.
async fn node_address(sb: &cutover::sandbox::Sandbox, endpoint: &str) -> String {
    let id = &sb.world.redis_interfaces[endpoint];
    let found = sb.clients.ec2.describe_network_interfaces().network_interface_ids(id).send().await.unwrap();
    found.network_interfaces()[0].private_ip_address().unwrap().to_string()
}

/// The path of staging's instance `id` to `endpoint`, as the first snapshot shows it.
async fn staging_path(
    rb: &cutover::runbook::Runbook,
    sb: &cutover::sandbox::Sandbox,
    id: &str,
    endpoint: &str,
) -> cutover::analysis::reachability::SgPath {
    let snap = first_snapshot(rb, sb).await;
    let staging = snap.environment("staging").unwrap().aws.value.as_ref().unwrap();
    let path = staging.instances.iter().find(|i| i.instance.id == id).unwrap().sg_paths[endpoint].clone();
    println!("{id} → {endpoint}: {}", path.describe());
    path
}

/// staging-app lets 6379 out only to 10.42.1.0/24. Where staging-redis has
/// no network interface (its node's, which the sandbox makes, deleted),
/// nothing says whether that holds the endpoint, nor whether these are its
/// groups at all: the path is unknown, not open (and the sandbox's
/// firewall, which then knows no address of it either, lets nothing out). An interface in staging-redis
/// inside that range (as ElastiCache gives each node) opens it, and the
/// firewall agrees; one outside blocks it, and the firewall agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrow_outbound_rule_is_judged_on_the_addresses_of_the_endpoints_interfaces() {
    use aws_sdk::ec2::types::Filter;
    use cutover::analysis::reachability::SgPath;
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-4").await;
    let ec2 = &sb.clients.ec2;
    let (app, redis) = (sb.world.groups["staging-app"].clone(), sb.world.groups["staging-redis"].clone());
    let_only_this_out(ec2, &app, tcp_with(6379, "10.42.1.0/24")).await;
    let web1 = sb.world.instances.iter().find(|i| i.name == "staging-web-1").unwrap().clone();
    let made = &sb.world.redis_interfaces["staging-cache"];
    ec2.delete_network_interface().network_interface_id(made).send().await.unwrap();
    let path_now = || staging_path(&rb, &sb, &web1.id, "staging-cache");
    let path = path_now().await;
    let SgPath::Unknown { reason } = &path else { panic!("expected unknown, got {}", path.describe()) };
    assert!(
        reason.contains(&format!(
            "no network interface is in staging-cache's security groups ({redis} (staging-redis)): each ElastiCache \
             node, or the instance running Redis, has one in its groups, so these are likely not the groups"
        )),
        "{reason}"
    );
    let health = |ok: bool, what: &'static str| health_becomes(&web1.health_url, ok, what);
    health(false, "the sandbox's firewall to let nothing out to a Redis with no address").await;

    let vpc = sb.world.vpc_id.clone();
    let subnet = |cidr: &'static str| {
        let vpc = vpc.clone();
        async move {
            let s = ec2
                .describe_subnets()
                .filters(Filter::builder().name("vpc-id").values(vpc).build())
                .filters(Filter::builder().name("cidr-block").values(cidr).build())
                .send()
                .await
                .unwrap();
            s.subnets()[0].subnet_id().unwrap().to_string()
        }
    };
    let node = |subnet: String| {
        let redis = redis.clone();
        async move {
            let n = ec2.create_network_interface().subnet_id(subnet).groups(redis).send().await.unwrap();
            let n = n.network_interface().unwrap();
            (n.network_interface_id().unwrap().to_string(), n.private_ip_address().unwrap().to_string())
        }
    };
    let (inside, inside_ip) = node(subnet("10.42.1.0/24").await).await;
    let path = path_now().await;
    assert!(path.is_allowed(), "{}", path.describe());
    assert!(
        path.describe().contains(&format!("lets 6379 out to 10.42.1.0/24 (holds {inside_ip})")),
        "{}",
        path.describe()
    );
    health(true, "the sandbox's firewall to let staging-web-1 out to the node inside the range").await;
    // A role that may not list interfaces: the narrow rule proves nothing, and the error says why.
    sb.faults.deny_network_interfaces.store(true, std::sync::atomic::Ordering::SeqCst);
    let path = path_now().await;
    sb.faults.deny_network_interfaces.store(false, std::sync::atomic::Ordering::SeqCst);
    let SgPath::Unknown { reason } = &path else { panic!("expected unknown, got {}", path.describe()) };
    assert!(
        reason.contains(
            "the endpoint's network interfaces could not be read (DescribeNetworkInterfaces: UnauthorizedOperation"
        ),
        "{reason}"
    );

    ec2.delete_network_interface().network_interface_id(&inside).send().await.unwrap();
    let (_, outside_ip) = node(subnet("10.42.2.0/24").await).await;
    let path = path_now().await;
    let SgPath::Blocked { reason, fix: None } = &path else { panic!("expected blocked, got {}", path.describe()) };
    assert!(reason.contains(&format!("no outbound rule lets 6379 out to {outside_ip}")), "{reason}");
    health(false, "the sandbox's firewall to let nothing out to the node outside the range").await;
    sb.down().await;
}

/// A rollout's state that cannot be read (here a damaged file) makes the
/// rollout UNKNOWN in `status`, with the reason, never "no rollout": a
/// running rollout would be hidden behind a fresh-looking traffic reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_state_that_cannot_be_read_is_unknown_never_no_rollout() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-2").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cutover")).unwrap();
    std::fs::write(dir.path().join("cutover/demo.rollout.json"), "{ \"engine\": ").unwrap();
    let (_, stdout, stderr) = run_cutover(&sb, &rb, dir.path(), &["status", "runbooks/demo.toml"]).await;
    assert!(stdout.contains("rollout UNKNOWN: cannot read the rollout's state: "), "{stdout}{stderr}");
    assert!(!stdout.contains("last change UNKNOWN"), "the audit log was read: {stdout}");
    let (_, stdout, stderr) = run_cutover(&sb, &rb, dir.path(), &["status", "runbooks/demo.toml", "--json"]).await;
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert!(j["rollout_unread"].as_str().is_some_and(|w| w.starts_with("the rollout's state: ")), "{j:#}");
    assert!(j["audit_unread"].is_null(), "{j:#}");
    assert!(j["rollout"].is_null(), "{j:#}");
    sb.down().await;
}
