//! `cutover diff` against the sandbox: drift planted with the SDK, as another
//! client would, is reported with both sides' values (exit 1); the same
//! differences allowed in `[parity]`, with reasons, do not count (exit 0).

mod common;

use aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute;

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
    let ec2 = &sb.clients.ec2;
    let odd = ec2
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
    ec2.modify_instance_attribute().instance_id(&web2.id).groups(&odd).send().await.unwrap();

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
