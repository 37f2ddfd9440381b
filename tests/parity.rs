//! `cutover diff` against the sandbox: drift planted with the SDK, as another
//! client would, is reported with both sides' values (exit 1); the same
//! differences allowed in `[parity]`, with reasons, do not count (exit 0).

mod common;

use aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute;

const RUNBOOK: &str = "runbooks/staging-to-production.toml";

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with `{needle}` in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_drift_is_reported_with_both_values_and_allowed_differences_do_not_count() {
    let rb = common::runbook("staging-to-production.toml");
    let sb = common::sandbox(&rb, "ap-southeast-2").await;
    let state = tempfile::tempdir().unwrap();

    // As rehearsed, the sides differ only where the runbook says why.
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", RUNBOOK]).await;
    assert_eq!(code, Some(0), "a fresh sandbox has no drift:\n{out}{err}");
    assert!(line_with(&out, "redis.keys").contains("allowed: "), "{out}");

    // A region holding none of the runbook's load balancers: bad input, as for `status`.
    let (code, out, err) =
        common::run_cutover(&sb, &rb, state.path(), &["--region", "eu-central-2", "diff", RUNBOOK]).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.starts_with("refused: none of runbook") && err.contains("is in region eu-central-2"), "{err}");

    // A Redis that cannot be read is not known equal: listed, and exit 1.
    let mut cmd = common::cutover_command(&sb, &rb, state.path(), &["diff", RUNBOOK]);
    cmd.env("STAGING_REDIS_URL", "redis://127.0.0.1:9/0"); // nothing listens on port 9
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(line_with(&stdout, "not compared").starts_with("not compared: staging-cache (staging): "), "{stdout}");

    // Plant three drifts, each on one side only.
    let elb = &sb.clients.elb;
    let tg = |env: &str| sb.world.target_groups[env][0].arn.clone();
    elb.modify_target_group().target_group_arn(tg("staging")).health_check_interval_seconds(10).send().await.unwrap();
    let sticky = [
        ("stickiness.enabled", "true"),
        ("stickiness.type", "lb_cookie"),
        ("stickiness.lb_cookie.duration_seconds", "86400"),
    ];
    elb.modify_target_group_attributes()
        .target_group_arn(tg("production"))
        .set_attributes(Some(
            sticky.iter().map(|(k, v)| TargetGroupAttribute::builder().key(*k).value(*v).build()).collect(),
        ))
        .send()
        .await
        .unwrap();
    move_staging_web_2_to_its_own_group(&sb).await;

    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", RUNBOOK]).await;
    assert_eq!(code, Some(1), "drift exits 1:\n{out}{err}");
    let interval = line_with(&out, "target_group.health_check.interval");
    assert!(interval.contains("30") && interval.contains("10") && interval.ends_with("DRIFT"), "{interval}");
    let stickiness = line_with(&out, "target_group.stickiness");
    assert!(
        stickiness.contains("lb_cookie 86400s") && stickiness.contains("off") && stickiness.ends_with("DRIFT"),
        "{stickiness}"
    );
    let groups = line_with(&out, "staging-web-2 security groups");
    assert!(
        groups.contains("is staging-debug") && groups.contains("siblings' staging-app") && groups.ends_with("DRIFT"),
        "{groups}"
    );
    assert!(out.trim_end().ends_with("3 drift, 1 allowed"), "{out}");

    // The same differences allowed, with reasons: no drift.
    let allowed = state.path().join("allowed.toml");
    let text = std::fs::read_to_string(RUNBOOK).unwrap().replace(
        "[parity]\nallow = [\n",
        "[parity]\nallow = [\n  { what = \"target_group.health_check.interval\", reason = \"staging probes faster while it warms\" },\n  { what = \"target_group.stickiness\", reason = \"production pins sessions until its Redis is copied\" },\n  { what = \"instances.alike\", reason = \"staging-web-2 is being debugged\" },\n",
    );
    std::fs::write(&allowed, text).unwrap();
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", &allowed.display().to_string()]).await;
    assert_eq!(code, Some(0), "allowed differences do not count:\n{out}{err}");
    assert!(
        line_with(&out, "target_group.stickiness")
            .ends_with("allowed: production pins sessions until its Redis is copied"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("no drift (4 allowed differences)"), "{out}");

    // --json carries both values and the verdict.
    let (code, out, _) = common::run_cutover(&sb, &rb, state.path(), &["diff", "--json", RUNBOOK]).await;
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["drift"], 3, "{v}");
    let d = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["what"] == "target_group.health_check.interval")
        .unwrap();
    assert_eq!(
        (d["from_value"].as_str(), d["to_value"].as_str(), &d["allowed"]),
        (Some("30"), Some("10"), &serde_json::Value::Null)
    );
    sb.down().await;
}

fn check<'a>(snap: &'a cutover::status::Snapshot, item: &str) -> &'a cutover::status::CheckResult {
    snap.checks.iter().find(|c| c.item == item).unwrap_or_else(|| panic!("no check item {item}"))
}

fn outcome(snap: &cutover::status::Snapshot, item: &str) -> (cutover::status::CheckOutcome, String) {
    let c = check(snap, item);
    (c.outcome, c.detail.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_and_parity_checks_follow_what_aws_and_redis_say() {
    use cutover::status::CheckOutcome::{Fail, Pass};
    let rb = common::runbook("staging-to-production.toml");
    let sb = common::sandbox(&rb, "ap-southeast-4").await;

    // As provisioned: the same shape both sides, an alarm on staging's 5xx,
    // but HTTP only and a Redis that keeps nothing across a restart.
    let snap = common::first_snapshot(&rb, &sb).await;
    assert_eq!(outcome(&snap, "parity"), (Pass, "no drift (1 allowed differences)".into()));
    assert_eq!(outcome(&snap, "instances-alike").0, Pass, "{:?}", outcome(&snap, "instances-alike"));
    assert_eq!(outcome(&snap, "alarm-on-5xx"), (Pass, "staging-5xx".into()));
    assert_eq!(
        outcome(&snap, "tls"),
        (Fail, "shop-staging-alb has no HTTPS or TLS listener (listeners: 80 HTTP)".into())
    );
    let (o, detail) = outcome(&snap, "redis-persistence");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.contains("staging-cache: AOF off and no RDB save schedule"), "{detail}");
    assert_eq!(
        outcome(&snap, "autoscaling-group"),
        (Fail, "no Auto Scaling group is attached to shop-staging-web".into())
    );

    // Fixed as an operator would: an HTTPS listener with a certificate, AOF on.
    let lb = &sb.world.load_balancers["staging"];
    let tg = &sb.world.target_groups["staging"][0].arn;
    let cert = common::import_certificate(&sb, &["www.example.com"], 365).await;
    let cert = cert.as_str();
    sb.clients
        .elb
        .create_listener()
        .load_balancer_arn(lb)
        .protocol(aws_sdk::elasticloadbalancingv2::types::ProtocolEnum::Https)
        .port(443)
        .certificates(aws_sdk::elasticloadbalancingv2::types::Certificate::builder().certificate_arn(cert).build())
        .default_actions(
            aws_sdk::elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk::elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                .target_group_arn(tg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let redis = redis::Client::open(sb.redis_urls["staging-cache"].as_str()).unwrap();
    let mut c = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("appendonly").arg("yes").query_async(&mut c).await.unwrap();
    // An Auto Scaling group for staging, empty for now, behind its target group.
    let asg = &sb.clients.autoscaling;
    asg.create_launch_configuration()
        .launch_configuration_name("staging-web")
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("shop-staging-asg")
        .launch_configuration_name("staging-web")
        .min_size(0)
        .max_size(2)
        .desired_capacity(0)
        .availability_zones(format!("{}a", sb.region))
        .target_group_arns(tg)
        .send()
        .await
        .unwrap();
    // Staging's 5xx alarm deleted by another client.
    sb.clients.cloudwatch.delete_alarms().alarm_names("staging-5xx").send().await.unwrap();
    // One instance moved to another group: unlike its sibling.
    move_staging_web_2_to_its_own_group(&sb).await;

    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "tls");
    assert_eq!(o, Pass, "{detail}");
    assert!(detail.starts_with(&format!("HTTPS on 443 covering www.example.com: {cert} (until ")), "{detail}");
    assert!(detail.ends_with(", imported)"), "{detail}");
    let (o, detail) = outcome(&snap, "redis-persistence");
    assert_eq!(o, Pass, "{detail}");
    assert!(detail.starts_with("staging-cache: AOF on"), "{detail}");
    // Attached, but holding no instance: it replaces none that fails.
    assert_eq!(
        outcome(&snap, "autoscaling-group"),
        (
            Fail,
            "holding no instance, so replacing none: shop-staging-web: shop-staging-asg (min 0, max 2, desired 0)"
                .into()
        )
    );
    let expected = "staging: staging-web-2 security groups is staging-debug, its siblings' staging-app";
    assert_eq!(outcome(&snap, "instances-alike"), (Fail, expected.into()));
    let (o, detail) = outcome(&snap, "parity");
    assert_eq!(o, Fail);
    assert!(detail.contains(expected), "{detail}");
    assert!(detail.contains("load_balancer.listeners (load balancer): 80 HTTP → 80 HTTP, 443 HTTPS"), "{detail}");
    assert!(detail.contains("autoscaling (Auto Scaling groups): none → yes"), "{detail}");
    assert!(
        detail.contains("alarms (metrics watched): HTTPCode_Target_5XX_Count, TargetResponseTime → TargetResponseTime"),
        "{detail}"
    );
    assert_eq!(
        outcome(&snap, "alarm-on-5xx"),
        (Fail, "no alarm watches staging's 5xx (its alarms: staging-latency)".into())
    );
    assert!(
        detail.contains("redis.persistence (prod-cache / staging-cache): AOF off, RDB off → AOF on, RDB off"),
        "{detail}"
    );
    // Holding an instance, but with Launch and ReplaceUnhealthy suspended
    // (left so after a manual intervention): it replaces none that fails.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("shop-staging-asg")
        .desired_capacity(1)
        .send()
        .await
        .unwrap();
    asg.suspend_processes()
        .auto_scaling_group_name("shop-staging-asg")
        .scaling_processes("Launch")
        .scaling_processes("ReplaceUnhealthy")
        .send()
        .await
        .unwrap();
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "autoscaling-group");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.starts_with("shop-staging-asg has Launch, ReplaceUnhealthy suspended"), "{detail}");
    asg.resume_processes().auto_scaling_group_name("shop-staging-asg").send().await.unwrap();
    // Resumed, but on EC2 health alone (AWS's default): an instance whose
    // app fails the target group's check is never replaced.
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "autoscaling-group");
    assert_eq!(o, Fail, "{detail}");
    assert!(
        detail.starts_with(
            "shop-staging-asg does not count its target groups' health checks (HealthCheckType EC2, no ELB)"
        ),
        "{detail}"
    );
    asg.update_auto_scaling_group()
        .auto_scaling_group_name("shop-staging-asg")
        .health_check_type("ELB")
        .health_check_grace_period(300)
        .send()
        .await
        .unwrap();
    let snap = common::first_snapshot(&rb, &sb).await;
    assert_eq!(outcome(&snap, "autoscaling-group").0, Pass, "resumed, on ELB health");
    sb.down().await;
}

/// Staging's HTTPS listener serves a certificate for staging.example.com
/// only: once the record points at it, browsers refuse www.example.com. Then
/// one for www.example.com that expires within days, then a wildcard that
/// covers it for a year (chosen by SNI beside the default).
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_does_not_cover_the_record_or_expires_soon_fails_the_https_check() {
    use aws_sdk::elasticloadbalancingv2::types::{Action, ActionTypeEnum, Certificate, ProtocolEnum};
    use cutover::status::CheckOutcome::{Fail, Pass};
    let rb = common::runbook("staging-to-production.toml");
    let sb = common::sandbox(&rb, "ap-southeast-3").await;
    let staging_only = common::import_certificate(&sb, &["staging.example.com"], 365).await;
    let listener = sb
        .clients
        .elb
        .create_listener()
        .load_balancer_arn(&sb.world.load_balancers["staging"])
        .protocol(ProtocolEnum::Https)
        .port(443)
        .certificates(Certificate::builder().certificate_arn(&staging_only).build())
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&sb.world.target_groups["staging"][0].arn)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let listener = listener.listeners()[0].listener_arn().unwrap().to_string();
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "tls");
    println!("{detail}");
    assert_eq!(o, Fail, "{detail}");
    assert_eq!(
        detail,
        "no certificate of shop-staging-alb's HTTPS listener on 443 covers www.example.com (they are for \
         staging.example.com): clients would refuse it once it serves them"
    );

    let add = |arn: String| {
        sb.clients
            .elb
            .add_listener_certificates()
            .listener_arn(&listener)
            .certificates(Certificate::builder().certificate_arn(arn).build())
            .send()
    };
    let soon = common::import_certificate(&sb, &["www.example.com"], 3).await;
    add(soon.clone()).await.unwrap();
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "tls");
    println!("{detail}");
    assert_eq!(o, Fail, "{detail}");
    let head = format!("shop-staging-alb's HTTPS listener on 443: certificate {soon} for www.example.com expires at ");
    let tail = ", within 7 days (it may present any certificate that covers the name)";
    assert!(detail.starts_with(&head) && detail.ends_with(tail), "{detail}");

    // A wildcard valid for a year beside it: the ALB may still present the
    // one that expires, so it still fails; without it, it passes.
    let wildcard = common::import_certificate(&sb, &["*.example.com"], 365).await;
    add(wildcard.clone()).await.unwrap();
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "tls");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.contains(&soon) && !detail.contains(&wildcard), "{detail}");
    sb.clients
        .elb
        .remove_listener_certificates()
        .listener_arn(&listener)
        .certificates(Certificate::builder().certificate_arn(&soon).build())
        .send()
        .await
        .unwrap();
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "tls");
    println!("{detail}");
    assert_eq!(o, Pass, "{detail}");
    assert!(detail.starts_with(&format!("HTTPS on 443 covering www.example.com: {wildcard} (until ")), "{detail}");
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn elasticache_settings_are_compared_and_its_snapshots_count_as_persistence() {
    use cutover::status::CheckOutcome::{Fail, Pass};
    // staging-to-production with both Redis endpoints named as ElastiCache
    // replication groups, which the sandbox creates alike in moto.
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("elasticache.toml");
    let text = std::fs::read_to_string(RUNBOOK)
        .unwrap()
        .replace(r#"["prod-redis"] }"#, r#"["prod-redis"], elasticache = "prod-cache" }"#)
        .replace(r#"["staging-redis"] }"#, r#"["staging-redis"], elasticache = "staging-cache" }"#);
    std::fs::write(&path, text).unwrap();
    let rb = cutover::runbook::load(&path).unwrap();
    assert_eq!(rb.redis_endpoint("staging-cache").unwrap().elasticache.as_deref(), Some("staging-cache"));
    let sb = common::sandbox(&rb, "ca-west-1").await;
    let runbook = path.display().to_string();

    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", &runbook]).await;
    assert_eq!(code, Some(0), "alike:\n{out}{err}");
    let (_, out, _) = common::run_cutover(&sb, &rb, state.path(), &["diff", "--json", &runbook]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = &v["sides"][1]["redis"][0]["elasticache"];
    assert_eq!(
        (&e["replication_group"], &e["node_type"], &e["engine_version"], &e["snapshot_retention_days"]),
        (&"staging-cache".into(), &"cache.t4g.small".into(), &"7.1".into(), &1.into()),
        "{e}"
    );
    assert_eq!((&e["transit_encryption"], &e["at_rest_encryption"]), (&true.into(), &true.into()), "{e}");
    assert_eq!(
        (&e["automatic_failover"], &e["multi_az"], &e["shards"], &e["nodes"], &e["transit_encryption_mode"]),
        (&"enabled".into(), &"enabled".into(), &1.into(), &2.into(), &"required".into()),
        "{e}"
    );
    // The sandbox's redis-server keeps nothing itself; ElastiCache's snapshots count.
    let snap = common::first_snapshot(&rb, &sb).await;
    assert_eq!(outcome(&snap, "redis-persistence"), (Pass, "staging-cache: ElastiCache snapshots kept 1 day".into()));

    // Another client turns staging's snapshots off.
    sb.clients
        .elasticache
        .modify_replication_group()
        .replication_group_id("staging-cache")
        .snapshot_retention_limit(0)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", &runbook]).await;
    assert_eq!(code, Some(1), "drift:\n{out}{err}");
    let line = line_with(&out, "redis.snapshot_retention");
    assert!(line.contains("prod-cache / staging-cache") && line.ends_with("DRIFT"), "{line}");
    let values: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(values[values.len() - 3..values.len() - 1], ["1", "0"], "{line}");
    let snap = common::first_snapshot(&rb, &sb).await;
    let (o, detail) = outcome(&snap, "redis-persistence");
    assert_eq!(o, Fail);
    assert_eq!(detail, "staging-cache: ElastiCache keeps no snapshots (retention 0 days) and AOF is off");

    // And its failover off: a primary lost is then an outage, not a promotion.
    sb.clients
        .elasticache
        .modify_replication_group()
        .replication_group_id("staging-cache")
        .automatic_failover_enabled(false)
        .multi_az_enabled(false)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", &runbook]).await;
    assert_eq!(code, Some(1), "drift:\n{out}{err}");
    let line = line_with(&out, "redis.failover");
    println!("{line}");
    assert!(
        line.contains("failover enabled, Multi-AZ enabled") && line.contains("failover disabled, Multi-AZ disabled"),
        "{line}"
    );
    assert!(line.ends_with("DRIFT"), "{line}");

    // Production's clients authenticate as RBAC users (a user group, no AUTH
    // token); staging lets anyone in. A group of its own, as
    // ModifyReplicationGroup on moto does not take user groups.
    let ec = &sb.clients.elasticache;
    let made = ec
        .create_replication_group()
        .replication_group_id("prod-cache-rbac")
        .replication_group_description("production, its users authenticated")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t4g.small")
        .replicas_per_node_group(1)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .snapshot_retention_limit(1)
        .transit_encryption_enabled(true)
        .at_rest_encryption_enabled(true)
        .user_group_ids("prod-app-users")
        .send()
        .await
        .unwrap();
    // AWS creates the member clusters; moto only names them (as the sandbox does).
    for member in made.replication_group().unwrap().member_clusters() {
        ec.create_cache_cluster()
            .cache_cluster_id(member)
            .replication_group_id("prod-cache-rbac")
            .engine("redis")
            .engine_version("7.1")
            .cache_node_type("cache.t4g.small")
            .num_cache_nodes(1)
            .send()
            .await
            .unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(r#"elasticache = "prod-cache""#, r#"elasticache = "prod-cache-rbac""#)).unwrap();
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", &runbook]).await;
    assert_eq!(code, Some(1), "drift:\n{out}{err}");
    let all = format!("{out}{err}");
    let line = line_with(&all, "redis.auth");
    assert!(line.contains("RBAC user groups") && line.contains("off") && line.ends_with("DRIFT"), "{line}");
    sb.down().await;
}

/// The ChatMRPT failure, planted: staging-web-2 in a group of its own, made
/// by hand, unlike its sibling's.
async fn move_staging_web_2_to_its_own_group(sb: &cutover::sandbox::Sandbox) {
    let odd = sb
        .clients
        .ec2
        .create_security_group()
        .group_name("staging-debug")
        .description("a group one instance was launched in by hand")
        .vpc_id(&sb.world.vpc_id)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let web2 = sb.world.instances.iter().find(|i| i.name == "staging-web-2").unwrap();
    sb.clients.ec2.modify_instance_attribute().instance_id(&web2.id).groups(&odd).send().await.unwrap();
}

/// `alarm_on_5xx` counts only an alarm that tells someone when it goes off,
/// and reads metric-math alarms (their `Metrics` queries) as well.
#[tokio::test(flavor = "multi_thread")]
async fn alarm_on_5xx_counts_only_alarms_that_notify_someone_and_reads_metric_math_alarms() {
    use aws_sdk::cloudwatch::types::{ComparisonOperator, Metric, MetricDataQuery, MetricStat};
    use cutover::status::CheckOutcome::{Fail, Pass};
    let rb = common::runbook("staging-to-production.toml");
    let sb = common::sandbox(&rb, "ap-east-2").await;
    let cw = &sb.clients.cloudwatch;
    assert_eq!(outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx"), (Pass, "staging-5xx".into()));

    // Its actions disabled by another client: it pages no one.
    cw.disable_alarm_actions().alarm_names("staging-5xx").send().await.unwrap();
    let (o, detail) = outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx");
    assert_eq!(o, Fail, "{detail}");
    assert!(
        detail.contains("no alarm on staging's 5xx notifies anyone (staging-5xx: its actions are disabled)"),
        "{detail}"
    );

    // In its place a metric-math alarm on staging's 5xx rate, which pages.
    cw.delete_alarms().alarm_names("staging-5xx").send().await.unwrap();
    let dims = sb.world.target_group_dimensions("staging").unwrap();
    let query = |id: &str, metric: &str| {
        let m = Metric::builder()
            .namespace("AWS/ApplicationELB")
            .metric_name(metric)
            .set_dimensions(Some(dims.clone()))
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(m).period(60).stat("Sum").build())
            .return_data(false)
            .build()
    };
    let put = |actions: bool| {
        cw.put_metric_alarm()
            .alarm_name("staging-5xx-rate")
            .metrics(query("errors", "HTTPCode_Target_5XX_Count"))
            .metrics(query("requests", "RequestCount"))
            .metrics(
                MetricDataQuery::builder().id("rate").expression("100 * errors / requests").return_data(true).build(),
            )
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .set_alarm_actions(actions.then(|| vec!["arn:aws:sns:ap-east-2:123456789012:oncall".to_string()]))
            .send()
    };
    // Without an alarm action it tells no one either.
    put(false).await.unwrap();
    let (o, detail) = outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.contains("staging-5xx-rate: it has no alarm action"), "{detail}");
    put(true).await.unwrap();
    assert_eq!(outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx"), (Pass, "staging-5xx-rate".into()));

    // An alarm whose only action scales a group tells no one; one on the load
    // balancer's own 5xx per target group reads a series AWS never publishes.
    cw.delete_alarms().alarm_names("staging-5xx-rate").send().await.unwrap();
    let plain = |name: &str, metric: &str, action: &str| {
        cw.put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/ApplicationELB")
            .metric_name(metric)
            .set_dimensions(Some(dims.clone()))
            .statistic(aws_sdk::cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(0.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .alarm_actions(action)
            .send()
    };
    let scaling = "arn:aws:autoscaling:ap-east-2:123456789012:scalingPolicy:1:autoScalingGroupName/web:policyName/out";
    plain("staging-5xx-scales", "HTTPCode_Target_5XX_Count", scaling).await.unwrap();
    let (o, detail) = outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.contains("staging-5xx-scales: it has no alarm action that notifies anyone"), "{detail}");
    cw.delete_alarms().alarm_names("staging-5xx-scales").send().await.unwrap();
    plain("staging-elb-5xx-per-target-group", "HTTPCode_ELB_5XX_Count", "arn:aws:sns:ap-east-2:123456789012:oncall")
        .await
        .unwrap();
    let (o, detail) = outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.starts_with("no alarm watches staging's 5xx"), "{detail}");

    // One that pages, on staging's 5xx, but on their Average: always 1 on
    // AWS, so never above its threshold of 5.
    cw.delete_alarms().alarm_names("staging-elb-5xx-per-target-group").send().await.unwrap();
    let averaged = |stat: aws_sdk::cloudwatch::types::Statistic, period: i32| {
        cw.put_metric_alarm()
            .alarm_name("staging-5xx-averaged")
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_Target_5XX_Count")
            .set_dimensions(Some(dims.clone()))
            .statistic(stat)
            .period(period)
            .evaluation_periods(1)
            .threshold(5.0)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .alarm_actions("arn:aws:sns:ap-east-2:123456789012:oncall")
            .send()
    };
    averaged(aws_sdk::cloudwatch::types::Statistic::Average, 60).await.unwrap();
    let (o, detail) = outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx");
    assert_eq!(o, Fail, "{detail}");
    assert!(
        detail.starts_with("no alarm on staging's 5xx can go off (staging-5xx-averaged: its statistic Average of"),
        "{detail}"
    );
    // Their Sum over 10 s: the load balancer publishes once a minute, and
    // CloudWatch leaves the evaluations between unjudged (an alarm gate
    // calls it blind; so does this check).
    averaged(aws_sdk::cloudwatch::types::Statistic::Sum, 10).await.unwrap();
    let (o, detail) = outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx");
    assert_eq!(o, Fail, "{detail}");
    assert!(detail.contains("staging-5xx-averaged: it judges periods of 10 s"), "{detail}");
    averaged(aws_sdk::cloudwatch::types::Statistic::Sum, 60).await.unwrap();
    assert_eq!(outcome(&common::first_snapshot(&rb, &sb).await, "alarm-on-5xx"), (Pass, "staging-5xx-averaged".into()));
    sb.down().await;
}

/// The cockpit's Parity pane (key 7) at 80×24 on the sandbox: as rehearsed,
/// no drift and the allowed difference with the runbook's reason; a drift
/// planted with the SDK (staging's health-check interval) shows after a
/// refresh (`r`), with both sides' values, marked DRIFT and counted in the
/// title.
#[test]
fn the_cockpits_parity_pane_shows_a_drift_planted_with_the_sdk_with_both_values() {
    use common::tmux::{Tmux, cockpit_script};
    use std::time::Duration;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rb = common::runbook("staging-to-production.toml");
    let sb = rt.block_on(common::sandbox(&rb, "ca-west-1"));
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("exited");
    let script = cockpit_script(&sb, &rb, dir.path(), &["tui", RUNBOOK], &marker);
    let tmux = Tmux { socket: format!("cutover-parity-{}", std::process::id()) };
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", &format!("sh {}", script.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Live values on screen first: the cockpit reads keys by then.
    tmux.wait_for("the cockpit's live values", Duration::from_secs(60), |s| {
        s.lines().any(|l| l.contains("1 Traffic") && l.contains("s ago")) && s.contains("6 Log")
    });
    tmux.keys(&["7"]);
    let s = tmux.wait_for("the first comparison", Duration::from_secs(60), |s| {
        s.lines().any(|l| l.contains("7 Parity") && l.contains("no drift")) && s.contains("production → staging")
    });
    assert!(!s.contains("6 Log"), "the Parity pane is in the Log's place:\n{s}");
    tmux.keys(&["z"]);
    tmux.wait_for("the allowed difference and its reason", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.contains("allowed") && l.contains("redis.keys")) && s.contains("why: staging's Redis fills")
    });

    let tg = sb.world.target_groups["staging"][0].arn.clone();
    rt.block_on(sb.clients.elb.modify_target_group().target_group_arn(tg).health_check_interval_seconds(10).send())
        .unwrap();
    tmux.keys(&["r"]);
    let s = tmux.wait_for("the planted drift", Duration::from_secs(30), |s| {
        s.contains("target_group.health_check.interval") && s.contains("1 drift")
    });
    let lines: Vec<&str> = s.lines().collect();
    let at = lines.iter().position(|l| l.contains("target_group.health_check.interval")).unwrap();
    assert!(lines[at].contains("DRIFT"), "{s}");
    assert!(lines[at - 1].contains("production → staging"), "the sides, from → to: {s}");
    let values = lines[at + 1];
    assert!(values.contains("30") && values.contains(" → 10"), "both values, production's then staging's: {values}");
    let title = lines.iter().find(|l| l.contains("7 Parity")).unwrap();
    assert!(title.contains("1 drift") && title.contains("1 allowed"), "{title}");

    assert_eq!(tmux.quit(&marker), "exit=0");
    rt.block_on(sb.down());
}

/// A listener that authenticates first does what its last action says:
/// production authenticates, then forwards; staging authenticates, then
/// answers 503. Compared by their first action (both `authenticate-oidc`)
/// the two looked alike.
#[tokio::test(flavor = "multi_thread")]
async fn listeners_that_authenticate_first_are_compared_by_every_action() {
    use aws_sdk::elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, AuthenticateOidcActionConfig, FixedResponseActionConfig,
    };
    let rb = common::runbook("staging-to-production.toml");
    let sb = common::sandbox(&rb, "ap-south-2").await;
    let state = tempfile::tempdir().unwrap();
    let elb = &sb.clients.elb;
    let oidc = || {
        Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(1)
            .authenticate_oidc_config(
                AuthenticateOidcActionConfig::builder()
                    .issuer("https://idp.example.com")
                    .authorization_endpoint("https://idp.example.com/authorize")
                    .token_endpoint("https://idp.example.com/token")
                    .user_info_endpoint("https://idp.example.com/userinfo")
                    .client_id("cutover")
                    .client_secret("secret")
                    .build(),
            )
            .build()
    };
    for env in ["production", "staging"] {
        let listeners = elb.describe_listeners().load_balancer_arn(&sb.world.load_balancers[env]).send().await.unwrap();
        let then = if env == "production" {
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .order(2)
                .target_group_arn(&sb.world.target_groups[env][0].arn)
                .build()
        } else {
            Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .order(2)
                .fixed_response_config(FixedResponseActionConfig::builder().status_code("503").build())
                .build()
        };
        for l in listeners.listeners() {
            elb.modify_listener()
                .listener_arn(l.listener_arn().unwrap())
                .default_actions(oidc())
                .default_actions(then.clone())
                .send()
                .await
                .unwrap();
        }
    }
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", RUNBOOK]).await;
    assert_eq!(code, Some(1), "drift exits 1:\n{out}{err}");
    let action = line_with(&out, "default_action");
    assert!(
        action.contains("authenticate-oidc then forward")
            && action.contains("authenticate-oidc then fixed-response 503")
            && action.ends_with("DRIFT"),
        "{action}"
    );
    sb.down().await;
}

/// A side without a load balancer names its Redis group by name: looked up
/// in the VPC of its instances, never in every VPC, where a group of that
/// name elsewhere alone would be read as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_without_a_load_balancer_finds_its_redis_group_in_its_instances_vpc_only() {
    let rb = common::runbook("single-box-to-alb.toml");
    let sb = common::sandbox(&rb, "us-west-1").await;
    let state = tempfile::tempdir().unwrap();
    // `box-only` exists, in another VPC alone.
    let ec2 = &sb.clients.ec2;
    let vpc = ec2.create_vpc().cidr_block("10.77.0.0/16").send().await.unwrap();
    let other = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
    ec2.create_security_group().group_name("box-only").description("elsewhere").vpc_id(&other).send().await.unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/single-box-to-alb.toml"),
    )
    .unwrap()
    .replace("security_groups = [\"single-box\"]", "security_groups = [\"box-only\"]");
    // Its sandbox section declares the groups it builds, which `box-only` is not.
    let text = text.split("\n[sandbox]").next().unwrap().to_string();
    assert!(text.contains("\"box-only\""));
    let path = state.path().join("single-box-to-alb.toml");
    std::fs::write(&path, &text).unwrap();
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", path.to_str().unwrap()]).await;
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("security group `box-only` does not exist in vpc-")
            && format!("{out}{err}").contains("the VPC of single-box's instances"),
        "{out}{err}"
    );
    sb.down().await;
}
