//! CloudWatch as AWS answers it, rehearsed in the sandbox: percentiles over a
//! whole soak (the sandbox computes them from the raw values it publishes,
//! since moto has none), and alarms that start in INSUFFICIENT_DATA, are
//! evaluated from the published metrics, and may be composite.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use cutover::drive::gates;
use cutover::engine::Measurement;
use cutover::runbook::{GateKind, Runbook};
use cutover::sandbox::Sandbox;

/// The demo runbook with `extra` (gates, then alarms) inserted before its
/// first `[[alarms]]`, and `edit` applied to the whole text.
fn demo_text(extra: &str, edit: impl FnOnce(String) -> String) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let (head, alarms) = text.split_at(text.find("[[alarms]]").unwrap());
    edit(format!("{head}{extra}\n{alarms}"))
}

fn parse(text: &str) -> Runbook {
    cutover::runbook::parse("test.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The last gate of the demo runbook with `gate` (one `[[rollout.gates]]`) added.
fn gate(gate: &str) -> GateKind {
    parse(&demo_text(gate, |t| t)).rollout.gates.last().unwrap().kind.clone()
}

fn p99_gate(environment: &str, max: f64, more: &str) -> GateKind {
    gate(&format!(
        "[[rollout.gates]]\nkind = \"metric\"\nenvironment = \"{environment}\"\nmetric = \"TargetResponseTime\"\n\
         stat = \"p99\"\nmax = {max}\n{more}\n"
    ))
}

/// Publishes TargetResponseTime of `environment`'s target group as raw
/// (value, count) pairs at `at`, as an ALB would.
async fn put_latency(sb: &Sandbox, environment: &str, at: SystemTime, values: &[(f64, f64)]) {
    use aws_sdk::cloudwatch::types::{MetricDatum, StandardUnit};
    let datum = MetricDatum::builder()
        .metric_name("TargetResponseTime")
        .set_dimensions(sb.world.target_group_dimensions(environment))
        .timestamp(at.into())
        .set_values(Some(values.iter().map(|v| v.0).collect()))
        .set_counts(Some(values.iter().map(|v| v.1).collect()))
        .unit(StandardUnit::Seconds)
        .build();
    sb.clients.cloudwatch.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.unwrap();
}

async fn put_target_5xx(sb: &Sandbox, environment: &str, n: f64) {
    use aws_sdk::cloudwatch::types::{MetricDatum, StandardUnit};
    let datum = MetricDatum::builder()
        .metric_name("HTTPCode_Target_5XX_Count")
        .set_dimensions(sb.world.target_group_dimensions(environment))
        .value(n)
        .unit(StandardUnit::Count)
        .build();
    sb.clients.cloudwatch.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p99_gate_judges_the_whole_window_and_reports_its_requests() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-1").await;
    let snap = first_snapshot(&rb, &sb).await;
    let now = SystemTime::now();
    let since = now - Duration::from_secs(170);
    // Staging has weight 0, so no traffic of its own: one slow request alone
    // in its minute, then 300 fast ones two minutes later.
    put_latency(&sb, "staging", now - Duration::from_secs(150), &[(0.5, 1.0)]).await;
    put_latency(&sb, "staging", now - Duration::from_secs(30), &[(0.02, 300.0)]).await;
    let whole = gates::metric(&sb.sides, &p99_gate("staging", 0.1, ""), &snap, &rb, since).await;
    assert_eq!(whole, Measurement::Pass, "p99 of 301 requests, one of them slow, is the fast one");
    let strict = gates::metric(&sb.sides, &p99_gate("staging", 0.01, ""), &snap, &rb, since).await;
    assert!(
        matches!(&strict, Measurement::Fail(m) if m.contains("p99 = 0.020") && m.contains("301 requests")),
        "the value and its request count: {strict:?}"
    );
    // Production's percentile comes from the traffic the sandbox sends.
    let prod = p99_gate("production", 0.1, "");
    let from = SystemTime::now();
    eventually(Duration::from_secs(30), "a p99 of production's traffic", || async {
        match gates::metric(&sb.sides, &prod, &snap, &rb, from).await {
            Measurement::Pass => Some(()),
            Measurement::NoData => None,
            other => panic!("production's p99 gate: {other:?}"),
        }
    })
    .await;
    // Too few requests for a percentile: no data, whatever the value.
    let few = gates::metric(&sb.sides, &p99_gate("staging", 0.01, "min_requests = 1000"), &snap, &rb, since).await;
    assert_eq!(few, Measurement::NoData);
    let enough = gates::metric(&sb.sides, &p99_gate("staging", 0.1, "min_requests = 301"), &snap, &rb, since).await;
    assert_eq!(enough, Measurement::Pass);
    sb.down().await;
}

/// A count of staging's target group, 30 s ago (inside a gate's window).
async fn put_staging_count(sb: &Sandbox, metric: &str, n: f64) {
    put_count(sb, sb.world.target_group_dimensions("staging"), metric, n).await;
}

/// A count under `dimensions`, 30 s ago.
async fn put_count(sb: &Sandbox, dimensions: Option<Vec<aws_sdk::cloudwatch::types::Dimension>>, metric: &str, n: f64) {
    use aws_sdk::cloudwatch::types::{MetricDatum, StandardUnit};
    let datum = MetricDatum::builder()
        .metric_name(metric)
        .set_dimensions(dimensions)
        .timestamp((SystemTime::now() - Duration::from_secs(30)).into())
        .value(n)
        .unit(StandardUnit::Count)
        .build();
    sb.clients.cloudwatch.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.unwrap();
}

/// An ALB publishes no 5xx count for a minute without any: a 5xx gate on a
/// side that served requests and published none passes (none served), and
/// on a side that served nothing is no data, never a pass: quiet from a
/// side that gets no requests is no evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_gate_passes_on_no_datapoint_only_when_the_side_served_requests() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-2").await;
    let snap = first_snapshot(&rb, &sb).await;
    let since = SystemTime::now() - Duration::from_secs(120);
    let five_xx = gate(
        "[[rollout.gates]]\nkind = \"metric\"\nenvironment = \"staging\"\nmetric = \"HTTPCode_Target_5XX_Count\"\nmax = 0\n",
    );
    // Staging has weight 0: no requests, no 5xx.
    assert_eq!(gates::metric(&sb.sides, &five_xx, &snap, &rb, since).await, Measurement::NoData);
    put_staging_count(&sb, "RequestCount", 120.0).await;
    assert_eq!(gates::metric(&sb.sides, &five_xx, &snap, &rb, since).await, Measurement::Pass, "120 requests, no 5xx");
    put_staging_count(&sb, "HTTPCode_Target_5XX_Count", 3.0).await;
    let m = gates::metric(&sb.sides, &five_xx, &snap, &rb, since).await;
    assert!(matches!(&m, Measurement::Fail(why) if why.contains("= 3.000")), "{m:?}");
    sb.down().await;
}

/// A metric gate reads one target group's series. Staging's load balancer
/// also routing requests (a second listener) to a group the runbook does not
/// list: that group's 5xx would go unseen, so the gate is an error, never a
/// pass (listing both, `validate` refuses a gate on a metric per group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_gate_on_a_side_whose_requests_go_to_another_group_too_is_an_error() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-west-1").await;
    let since = SystemTime::now() - Duration::from_secs(120);
    let five_xx = gate(
        "[[rollout.gates]]\nkind = \"metric\"\nenvironment = \"staging\"\nmetric = \"HTTPCode_Target_5XX_Count\"\nmax = 0\n",
    );
    put_staging_count(&sb, "RequestCount", 120.0).await;
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::metric(&sb.sides, &five_xx, &snap, &rb, since).await, Measurement::Pass, "120 requests, no 5xx");
    route_a_second_listener_to_a_new_group(&sb, "demo-staging-alb", "demo-staging-api").await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::metric(&sb.sides, &five_xx, &snap, &rb, since).await;
    assert!(
        matches!(&m, Measurement::Error(w) if w.contains("routes requests to target group demo-staging-api, which staging's target_groups do not list")),
        "{m:?}"
    );
    sb.down().await;
}

/// A count of `env`'s load balancer, 30 s ago (inside a gate's window).
async fn put_load_balancer_count(sb: &Sandbox, env: &str, metric: &str, n: f64) {
    put_count(sb, sb.world.load_balancer_dimensions(env), metric, n).await;
}

/// AWS publishes `HTTPCode_ELB_5XX_Count` and `RequestCount` per load
/// balancer only, so a compare gate on it rates the errors of every host the
/// load balancer serves. Staging's also serving another group's requests
/// would dilute the new side's rate with them: the gate is an error, as a
/// per-group metric's is, never a pass on the diluted rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_gate_on_load_balancer_5xx_whose_load_balancer_serves_another_group_is_an_error() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-central-2").await;
    let since = SystemTime::now() - Duration::from_secs(120);
    let compare = gate("[[rollout.gates]]\nkind = \"compare\"\nmetric = \"HTTPCode_ELB_5XX_Count\"\nfactor = 2\n");
    // Staging 5 of 1,000 requests, production 3 of 1,000: within 2×.
    put_load_balancer_count(&sb, "staging", "RequestCount", 1000.0).await;
    put_load_balancer_count(&sb, "staging", "HTTPCode_ELB_5XX_Count", 5.0).await;
    put_load_balancer_count(&sb, "production", "RequestCount", 1000.0).await;
    put_load_balancer_count(&sb, "production", "HTTPCode_ELB_5XX_Count", 3.0).await;
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::metric(&sb.sides, &compare, &snap, &rb, since).await, Measurement::Pass);
    route_a_second_listener_to_a_new_group(&sb, "demo-staging-alb", "demo-staging-api").await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::metric(&sb.sides, &compare, &snap, &rb, since).await;
    assert!(
        matches!(&m, Measurement::Error(w) if w.contains("load balancer demo-staging-alb also routes requests to target group demo-staging-api, which staging's target_groups do not list: AWS counts HTTPCode_ELB_5XX_Count and RequestCount per load balancer only")),
        "{m:?}"
    );
    sb.down().await;
}

/// The ProStudio success criterion, p99 of TargetResponseTime under 100 ms,
/// as a gate of a shortened demo rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_gated_on_p99_under_100_ms_completes() {
    let dir = tempfile::tempdir().unwrap();
    let text = demo_text("", |t| {
        t.replace("soak = \"30s\"", "soak = \"5s\"")
            .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
            .replace("ttl = 10\n", "ttl = 1\n")
            .replace("stat = \"Average\"\nmax = 0.1", "stat = \"p99\"\nmax = 0.1")
    });
    assert!(text.contains("stat = \"p99\"\nmax = 0.1"));
    let path = dir.path().join("p99.toml");
    std::fs::write(&path, &text).unwrap();
    let rb = cutover::runbook::parse(&path.display().to_string(), &text).unwrap();
    let sb = fixed_sandbox(&rb, "us-east-2").await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", path.to_str().unwrap(), "--yes"]).await;
    sb.down().await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rollout complete: staging has 100%"), "{out}");
}

async fn alarm_state(sb: &Sandbox, name: &str) -> String {
    use aws_sdk::cloudwatch::types::AlarmType;
    let r = sb
        .clients
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .unwrap();
    let metric = r.metric_alarms().iter().find(|a| a.alarm_name() == Some(name)).and_then(|a| a.state_value().cloned());
    let composite =
        r.composite_alarms().iter().find(|a| a.alarm_name() == Some(name)).and_then(|a| a.state_value().cloned());
    metric.or(composite).map_or("MISSING".to_string(), |s| s.as_str().to_string())
}

async fn until_state(sb: &Sandbox, name: &str, state: &str) {
    eventually(Duration::from_secs(30), &format!("{name} to be {state}"), || async {
        (alarm_state(sb, name).await == state).then_some(())
    })
    .await;
}

const LATENCY_ALARM: &str = "[[alarms]]\nname = \"demo-staging-latency\"\nenvironment = \"staging\"\n\
                             metric = \"TargetResponseTime\"\nstat = \"p99\"\nthreshold = 0.5\nperiod = \"1m\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_alarms_start_insufficient_are_evaluated_and_gates_choose_what_insufficient_means() {
    let rb = parse(&demo_text(LATENCY_ALARM, |t| t));
    let sb = sandbox(&rb, "eu-north-1").await;
    // Staging has no traffic: a new alarm on its latency has nothing to judge.
    assert_eq!(alarm_state(&sb, "demo-staging-latency").await, "INSUFFICIENT_DATA", "as AWS, not moto's OK");
    // A 5xx alarm that treats missing data as not breaching is OK without 5xx.
    until_state(&sb, "demo-prod-5xx", "OK").await;
    let snap = first_snapshot(&rb, &sb).await;
    let alarm_gate = |more: &str| {
        gate(&format!(
            "[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-latency\"]\n{more}\n{LATENCY_ALARM}"
        ))
    };
    let judge = |g: GateKind| gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert_eq!(judge(alarm_gate("")), Measurement::NoData, "default: no data, the gate's no_data policy decides");
    assert_eq!(judge(alarm_gate("insufficient_data = \"wait\"")), Measurement::NoData);
    assert!(
        matches!(judge(alarm_gate("insufficient_data = \"pass\"")), Measurement::PassWithoutData(m) if m.contains("demo-staging-latency is INSUFFICIENT_DATA"))
    );
    assert!(
        matches!(judge(alarm_gate("insufficient_data = \"fail\"")), Measurement::Fail(m) if m.contains("INSUFFICIENT_DATA"))
    );
    // Slow staging requests: the evaluator computes p99 from the raw values.
    put_latency(&sb, "staging", SystemTime::now(), &[(0.9, 20.0)]).await;
    until_state(&sb, "demo-staging-latency", "ALARM").await;
    // And 5xx above the threshold set the 5xx alarm.
    put_target_5xx(&sb, "staging", 10.0).await;
    until_state(&sb, "demo-staging-5xx", "ALARM").await;
    sb.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_alarm_is_read_and_follows_its_children() {
    let composite = "[[alarms]]\nname = \"demo-staging-any\"\n\
                     rule = \"ALARM(\\\"demo-staging-5xx\\\") OR ALARM(\\\"demo-prod-5xx\\\")\"\n";
    let rb = parse(&demo_text(composite, |t| t));
    let sb = sandbox(&rb, "sa-east-1").await;
    until_state(&sb, "demo-staging-any", "OK").await;
    let g = gate(&format!("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-any\"]\n{composite}"));
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::from_snapshot(&rb, &g, &snap).unwrap(), Measurement::Pass);
    put_target_5xx(&sb, "staging", 10.0).await;
    until_state(&sb, "demo-staging-5xx", "ALARM").await;
    until_state(&sb, "demo-staging-any", "ALARM").await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert!(matches!(&m, Measurement::Fail(w) if w.contains("demo-staging-any is ALARM")), "{m:?}");
    sb.down().await;
}

/// A composite's rule reads a child without data as not in ALARM, so a
/// composite over a new alarm is OK with nothing judged: its gate takes
/// that child as the gate's `insufficient_data` says (by default no data,
/// never a pass), and its check is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_over_an_alarm_without_data_is_no_evidence() {
    let composite = format!(
        "{LATENCY_ALARM}[[alarms]]\nname = \"demo-staging-any\"\n\
         rule = \"ALARM(\\\"demo-staging-latency\\\") OR ALARM(\\\"demo-staging-5xx\\\")\"\n"
    );
    let rb = parse(&demo_text(&composite, |t| t));
    let sb = sandbox(&rb, "ap-south-1").await;
    until_state(&sb, "demo-staging-any", "OK").await;
    assert_eq!(alarm_state(&sb, "demo-staging-latency").await, "INSUFFICIENT_DATA");
    let snap = first_snapshot(&rb, &sb).await;
    let judge = |more: &str| {
        let g = gate(&format!(
            "[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-any\"]\n{more}\n{composite}"
        ));
        gates::from_snapshot(&rb, &g, &snap).unwrap()
    };
    assert_eq!(judge(""), Measurement::NoData, "a composite OK over a child without data passed its gate");
    let without = "alarm demo-staging-latency (under composite demo-staging-any) is INSUFFICIENT_DATA";
    let taken = judge("insufficient_data = \"pass\"");
    assert!(matches!(&taken, Measurement::PassWithoutData(w) if w.contains(without)), "{taken:?}");
    let failed = judge("insufficient_data = \"fail\"");
    assert!(matches!(&failed, Measurement::Fail(w) if w.contains(without)), "{failed:?}");
    let check = cutover::runbook::Check::AlarmOk { alarm: "demo-staging-any".into() };
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
    assert!(detail.contains("demo-staging-latency, which it rests on, is INSUFFICIENT_DATA"), "{detail}");
    sb.down().await;
}

/// cutover judges a composite by the children the runbook's rule names.
/// One whose rule on AWS names others may rest on an alarm cutover never
/// looked at: here one that reads nothing, so the composite stays OK while
/// staging serves 5xx. Its gate is an error and its check unknown until the
/// two rules are one; the same rule written AWS's other ways (unquoted,
/// spaced, a child by its ARN) is the runbook's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_whose_rule_on_aws_is_not_the_runbooks_passes_no_gate() {
    // A composite, and one over it: a difference under it is the outer's too.
    let composite = "[[alarms]]\nname = \"demo-staging-any\"\n\
                     rule = \"ALARM(\\\"demo-staging-5xx\\\") OR ALARM(\\\"demo-prod-5xx\\\")\"\n\
                     [[alarms]]\nname = \"demo-any\"\nrule = \"ALARM(\\\"demo-staging-any\\\")\"\n";
    let rb = parse(&demo_text(composite, |t| t));
    let sb = sandbox(&rb, "ca-central-1").await;
    until_state(&sb, "demo-any", "OK").await;
    let gate_on =
        |alarm: &str| gate(&format!("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"{alarm}\"]\n{composite}"));
    let (g, outer) = (gate_on("demo-staging-any"), gate_on("demo-any"));
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::from_snapshot(&rb, &g, &snap).unwrap(), Measurement::Pass);
    assert_eq!(gates::from_snapshot(&rb, &outer, &snap).unwrap(), Measurement::Pass);
    let cw = &sb.clients.cloudwatch;
    // A child gone from AWS, the composite still OK: no alarm its OK rests on.
    let prod = cw.describe_alarms().alarm_names("demo-prod-5xx").send().await.unwrap().metric_alarms()[0].clone();
    cw.delete_alarms().alarm_names("demo-prod-5xx").send().await.unwrap();
    let snap = first_snapshot(&rb, &sb).await;
    for alarm in ["demo-staging-any", "demo-any"] {
        let check = cutover::runbook::Check::AlarmOk { alarm: alarm.into() };
        let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
        assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
        assert!(detail.starts_with("alarm demo-prod-5xx, which composite "), "{detail}");
        assert!(detail.contains(" rests on, does not exist where cutover reads it"), "{detail}");
    }
    cw.put_metric_alarm()
        .alarm_name("demo-prod-5xx")
        .set_namespace(prod.namespace().map(str::to_string))
        .set_metric_name(prod.metric_name().map(str::to_string))
        .set_dimensions(Some(prod.dimensions().to_vec()))
        .set_statistic(prod.statistic().cloned())
        .set_period(prod.period())
        .set_evaluation_periods(prod.evaluation_periods())
        .set_threshold(prod.threshold())
        .set_comparison_operator(prod.comparison_operator().cloned())
        .set_treat_missing_data(prod.treat_missing_data().map(str::to_string))
        .set_alarm_actions(Some(prod.alarm_actions().to_vec()))
        .send()
        .await
        .unwrap();
    until_state(&sb, "demo-prod-5xx", "OK").await;
    let staging = cw.describe_alarms().alarm_names("demo-staging-5xx").send().await.unwrap().metric_alarms()[0].clone();
    // On AWS the composite now rests on an alarm the runbook does not
    // declare: the ELB's own 5xx per target group, which AWS never publishes.
    cw.put_metric_alarm()
        .alarm_name("demo-staging-elb-5xx")
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_ELB_5XX_Count")
        .set_dimensions(Some(staging.dimensions().to_vec()))
        .statistic(aws_sdk::cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(aws_sdk::cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .unwrap();
    let put_rule = |rule: String| cw.put_composite_alarm().alarm_name("demo-staging-any").alarm_rule(rule).send();
    put_rule(r#"ALARM("demo-staging-elb-5xx")"#.into()).await.unwrap();
    put_target_5xx(&sb, "staging", 10.0).await;
    until_state(&sb, "demo-staging-5xx", "ALARM").await;
    until_state(&sb, "demo-staging-any", "OK").await;
    until_state(&sb, "demo-any", "OK").await;
    let snap = first_snapshot(&rb, &sb).await;
    let differs = r#"composite alarm demo-staging-any's rule on AWS is `ALARM("demo-staging-elb-5xx")`, not the runbook's `ALARM("demo-staging-5xx") OR ALARM("demo-prod-5xx")`"#;
    for g in [&g, &outer] {
        let m = gates::from_snapshot(&rb, g, &snap).unwrap();
        assert!(matches!(&m, Measurement::Error(w) if w.contains(differs)), "{m:?}");
    }
    for alarm in ["demo-staging-any", "demo-any"] {
        let check = cutover::runbook::Check::AlarmOk { alarm: alarm.into() };
        let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
        assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
        assert!(detail.contains(differs), "{detail}");
    }
    // The runbook's rule again, a child by its ARN, the other unquoted and
    // spaced: no difference, and the composite follows staging's 5xx.
    let arn = staging.alarm_arn().unwrap();
    assert!(arn.ends_with(":alarm:demo-staging-5xx"), "{arn}");
    put_rule(format!("ALARM({arn})  OR ALARM( demo-prod-5xx )")).await.unwrap();
    until_state(&sb, "demo-staging-any", "ALARM").await;
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(snap.blind_alarms.get("demo-staging-any"), None, "{:?}", snap.blind_alarms);
    assert_eq!(snap.blind_alarms.get("demo-any"), None, "{:?}", snap.blind_alarms);
    let m = gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert!(matches!(&m, Measurement::Fail(w) if w.contains("demo-staging-any is ALARM")), "{m:?}");
    // The composite over it follows, as on AWS (the sandbox judged a rule
    // naming a composite as never in ALARM).
    until_state(&sb, "demo-any", "ALARM").await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::from_snapshot(&rb, &outer, &snap).unwrap();
    assert!(matches!(&m, Measurement::Fail(w) if w.contains("demo-any is ALARM")), "{m:?}");
    sb.down().await;
}

/// AWS finds a composite's children in the composite's own account and
/// region. Staging declared in the runbook's region, run with another
/// (`--region`, as the sandbox runs it): the composite is read there, its
/// child staging's 5xx in staging's, another alarm than the one the
/// composite follows. The composite is no evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_whose_child_is_read_in_another_region_passes_no_gate() {
    let composite = "[[alarms]]\nname = \"demo-staging-any\"\n\
                     rule = \"ALARM(\\\"demo-staging-5xx\\\") OR ALARM(\\\"demo-prod-5xx\\\")\"\n";
    let rb = parse(&demo_text(composite, |t| {
        t.replacen("region = \"eu-west-1\"", "region = \"eu-south-1\"", 1).replacen(
            "label = \"Staging (promoted)\"",
            "label = \"Staging (promoted)\"\nregion = \"eu-south-1\"",
            1,
        )
    }));
    let sb = sandbox(&rb, "il-central-1").await;
    let states = cutover::aws::cloudwatch::alarm_states_by_side(&sb.sides, &rb).await.unwrap();
    let state = |n: &str| states.iter().find(|s| s.name == n).unwrap().clone();
    assert_eq!(state("demo-prod-5xx").blind, None);
    let why = state("demo-staging-any").blind.unwrap_or_default();
    assert!(why.starts_with("its child demo-staging-5xx is declared for staging, which is read in another"), "{why}");
    let check = cutover::runbook::Check::AlarmOk { alarm: "demo-staging-any".into() };
    let snap = first_snapshot(&rb, &sb).await;
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
    assert!(detail.contains("its child demo-staging-5xx is declared for staging"), "{detail}");
    sb.down().await;
}

/// An alarm that cannot see the side says nothing by being OK: its ALB
/// metric under dimensions AWS never publishes it with (an ELB 5xx count
/// per target group reads no data, and `notBreaching` keeps it OK), or
/// another environment's target group than the one it is declared for.
/// Its gate is an error and its check unknown, never a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_that_cannot_see_its_side_passes_no_gate() {
    let composite = "[[alarms]]\nname = \"demo-staging-any\"\n\
                     rule = \"ALARM(\\\"demo-staging-5xx\\\") OR ALARM(\\\"demo-prod-5xx\\\")\"\n";
    let rb = parse(&demo_text(composite, |t| t));
    let sb = sandbox(&rb, "eu-south-2").await;
    until_state(&sb, "demo-staging-5xx", "OK").await;
    until_state(&sb, "demo-staging-any", "OK").await;
    let g = gate("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-5xx\"]\n");
    // The composite's OK rests on its children: one blind, it proves nothing either.
    let over = gate(&format!("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-any\"]\n{composite}"));
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::from_snapshot(&rb, &g, &snap).unwrap(), Measurement::Pass);
    assert_eq!(gates::from_snapshot(&rb, &over, &snap).unwrap(), Measurement::Pass);
    let cw = &sb.clients.cloudwatch;
    let old = cw.describe_alarms().alarm_names("demo-staging-5xx").send().await.unwrap().metric_alarms()[0].clone();
    let put_as = |metric: &str, dims: Vec<aws_sdk::cloudwatch::types::Dimension>, stat| {
        cw.put_metric_alarm()
            .alarm_name("demo-staging-5xx")
            .namespace("AWS/ApplicationELB")
            .metric_name(metric)
            .set_dimensions(Some(dims))
            .set_statistic(stat)
            .period(60)
            .evaluation_periods(1)
            .threshold(5.0)
            .set_comparison_operator(old.comparison_operator().cloned())
            .treat_missing_data("notBreaching")
            .send()
    };
    let put = |metric: &str, dims| put_as(metric, dims, old.statistic().cloned());
    // The ELB's own 5xx, per target group: AWS publishes it per load balancer only.
    put("HTTPCode_ELB_5XX_Count", old.dimensions().to_vec()).await.unwrap();
    until_state(&sb, "demo-staging-5xx", "OK").await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert!(
        matches!(&m, Measurement::Error(w) if w.contains("alarm demo-staging-5xx: its metric HTTPCode_ELB_5XX_Count has dimensions {TargetGroup, LoadBalancer}, which AWS never publishes it under ({LoadBalancer})")),
        "{m:?}"
    );
    let m = gates::from_snapshot(&rb, &over, &snap).unwrap();
    assert!(matches!(&m, Measurement::Error(w) if w.starts_with("alarm demo-staging-5xx: its metric")), "{m:?}");
    let check = cutover::runbook::Check::AlarmOk { alarm: "demo-staging-5xx".into() };
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
    // Production's target group under the alarm declared for staging.
    let prod_tg = &sb.world.target_groups["production"][0].arn;
    let prod_dims: Vec<_> = old
        .dimensions()
        .iter()
        .map(|d| match d.name() {
            Some("TargetGroup") => aws_sdk::cloudwatch::types::Dimension::builder()
                .name("TargetGroup")
                // The test's own reading of the ARN: `targetgroup/name/id`.
                .value(prod_tg.rsplit(':').next().unwrap())
                .build(),
            _ => d.clone(),
        })
        .collect();
    put("HTTPCode_Target_5XX_Count", prod_dims).await.unwrap();
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert!(
        matches!(&m, Measurement::Error(w) if w.contains("alarm demo-staging-5xx is declared for staging but watches TargetGroup=targetgroup/demo-prod-web/")),
        "{m:?}"
    );
    // Put back as it was: a pass again.
    put("HTTPCode_Target_5XX_Count", old.dimensions().to_vec()).await.unwrap();
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::from_snapshot(&rb, &g, &snap).unwrap(), Measurement::Pass);
    // Its own side, but the Average of a count: always 1 on AWS, never above 5.
    let average = Some(aws_sdk::cloudwatch::types::Statistic::Average);
    put_as("HTTPCode_Target_5XX_Count", old.dimensions().to_vec(), average).await.unwrap();
    let snap = first_snapshot(&rb, &sb).await;
    for g in [&g, &over] {
        let m = gates::from_snapshot(&rb, g, &snap).unwrap();
        assert!(
            matches!(&m, Measurement::Error(w) if w.contains("alarm demo-staging-5xx: its statistic Average of HTTPCode_Target_5XX_Count is always 1")),
            "{m:?}"
        );
    }
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
    sb.down().await;
}

/// An alarm gate's default lag is counted from the periods the runbook
/// declares; an alarm whose period on AWS is longer may not have judged the
/// soak's last minutes when read, so its gate is an error (never a pass)
/// until the runbook declares it, through a composite too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_whose_period_on_aws_is_longer_than_declared_makes_its_gate_an_error() {
    let composite = "[[alarms]]\nname = \"demo-staging-any\"\n\
                     rule = \"ALARM(\\\"demo-staging-5xx\\\") OR ALARM(\\\"demo-prod-5xx\\\")\"\n";
    let rb = parse(&demo_text(composite, |t| t));
    let sb = sandbox(&rb, "ap-southeast-3").await;
    until_state(&sb, "demo-staging-any", "OK").await;
    let g = gate(&format!("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-any\"]\n{composite}"));
    let snap = first_snapshot(&rb, &sb).await;
    assert_eq!(gates::from_snapshot(&rb, &g, &snap).unwrap(), Measurement::Pass);
    // Another client lengthens the child's period to 5 minutes.
    let cw = &sb.clients.cloudwatch;
    let old = cw.describe_alarms().alarm_names("demo-staging-5xx").send().await.unwrap().metric_alarms()[0].clone();
    cw.put_metric_alarm()
        .alarm_name("demo-staging-5xx")
        .namespace(old.namespace().unwrap())
        .metric_name(old.metric_name().unwrap())
        .set_dimensions(Some(old.dimensions().to_vec()))
        .set_statistic(old.statistic().cloned())
        .period(300)
        .evaluation_periods(old.evaluation_periods().unwrap())
        .threshold(old.threshold().unwrap())
        .set_comparison_operator(old.comparison_operator().cloned())
        .set_treat_missing_data(old.treat_missing_data().map(str::to_string))
        .send()
        .await
        .unwrap();
    // The gate on a fresh snapshot is an error saying `why`.
    let an_error = async |rb: &Runbook, why: &str| {
        let snap = first_snapshot(rb, &sb).await;
        let m = gates::from_snapshot(rb, &g, &snap).unwrap();
        assert!(matches!(&m, Measurement::Error(w) if w.contains(why)), "{m:?}");
        snap
    };
    let snap = an_error(&rb, "demo-staging-5xx has a period of 300 s on AWS, longer than the runbook's 60 s").await;
    // Declared, the gate reads it again.
    let declared = parse(&demo_text(composite, |t| {
        t.replacen(
            "period = \"1m\"\ndescription = \"Staging serves 5xx\"",
            "period = \"5m\"\ndescription = \"Staging serves 5xx\"",
            1,
        )
    }));
    let m = gates::from_snapshot(&declared, &g, &snap).unwrap();
    assert!(!matches!(&m, Measurement::Error(_)), "{m:?}");
    // Rebuilt on metric math (5xx per request, the usual shape), the alarm
    // has no Period of its own: AWS keeps it in each metric it reads.
    let metric = |name: &str, period: i32| {
        use aws_sdk::cloudwatch::types::{Metric, MetricDataQuery, MetricStat};
        let m = Metric::builder()
            .namespace("AWS/ApplicationELB")
            .metric_name(name)
            .set_dimensions(Some(old.dimensions().to_vec()))
            .build();
        let stat = MetricStat::builder().metric(m).period(period).stat("Sum").build();
        MetricDataQuery::builder().id(name.to_lowercase().replace('_', "")).metric_stat(stat).return_data(false).build()
    };
    let ratio = aws_sdk::cloudwatch::types::MetricDataQuery::builder()
        .id("ratio")
        .expression("httpcodetarget5xxcount / requestcount")
        .return_data(true)
        .build();
    cw.put_metric_alarm()
        .alarm_name("demo-staging-5xx")
        .metrics(metric("HTTPCode_Target_5XX_Count", 600))
        .metrics(metric("RequestCount", 600))
        .metrics(ratio)
        .evaluation_periods(1)
        .threshold(0.01)
        .set_comparison_operator(old.comparison_operator().cloned())
        .set_treat_missing_data(old.treat_missing_data().map(str::to_string))
        .send()
        .await
        .unwrap();
    an_error(&declared, "demo-staging-5xx has a period of 600 s on AWS, longer than the runbook's 300 s").await;
    // Its period as declared, but three breaching periods to go off (3 of
    // 3, DatapointsToAlarm unset): errors from the soak's last minutes set
    // it off three periods later, past the lag counted for one.
    let three_of = |datapoints: Option<i32>| {
        cw.put_metric_alarm()
            .alarm_name("demo-staging-5xx")
            .namespace(old.namespace().unwrap())
            .metric_name(old.metric_name().unwrap())
            .set_dimensions(Some(old.dimensions().to_vec()))
            .set_statistic(old.statistic().cloned())
            .period(300)
            .evaluation_periods(3)
            .set_datapoints_to_alarm(datapoints)
            .threshold(old.threshold().unwrap())
            .set_comparison_operator(old.comparison_operator().cloned())
            .set_treat_missing_data(old.treat_missing_data().map(str::to_string))
            .send()
    };
    three_of(None).await.unwrap();
    let snap = an_error(
        &declared,
        "demo-staging-5xx goes off on 3 breaching periods of 300 s on AWS (900 s), more than the runbook's 1 of 300 s",
    )
    .await;
    let with_gate = format!("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-any\"]\n{composite}");
    let three = parse(&demo_text(&with_gate, |t| {
        t.replacen(
            "period = \"1m\"\ndescription = \"Staging serves 5xx\"",
            "period = \"5m\"\nevaluation_periods = 3\ndescription = \"Staging serves 5xx\"",
            1,
        )
    }));
    let m = gates::from_snapshot(&three, &g, &snap).unwrap();
    assert!(!matches!(&m, Measurement::Error(_)), "{m:?}");
    // Declared, the gate's default lag waits the three periods.
    let lag = three.rollout.gates.iter().rev().find_map(|g| match &g.kind {
        cutover::runbook::GateKind::AlarmOk { lag, .. } => Some(*lag),
        _ => None,
    });
    assert_eq!(lag, Some(Duration::from_secs(900 + 180)), "three 5-minute periods and 3 minutes");
    // One breaching period of three (1 of 3) is as quick as one of one.
    three_of(Some(1)).await.unwrap();
    let snap = first_snapshot(&declared, &sb).await;
    let m = gates::from_snapshot(&declared, &g, &snap).unwrap();
    assert!(!matches!(&m, Measurement::Error(_)), "{m:?}");
    sb.down().await;
}

/// DescribeAlarms takes at most 100 names and answers in pages (moto takes
/// any number and answers at once; the sandbox answers as AWS). Every
/// alarm asked for is read, however many: one on a later page is never
/// MISSING (a false failure that aborts a rollout), and 120 names are no
/// ValidationError.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_are_read_whatever_their_number_in_batches_and_pages() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-northeast-3").await;
    let cw = &sb.clients.cloudwatch;
    let names: Vec<String> = (0..60).map(|i| format!("filler-{i:03}")).collect();
    for n in &names {
        cw.put_metric_alarm()
            .alarm_name(n)
            .namespace("AWS/ApplicationELB")
            .metric_name("RequestCount")
            .statistic(aws_sdk::cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(aws_sdk::cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .unwrap();
    }
    let read = cutover::aws::cloudwatch::alarm_states(cw, &names).await.unwrap();
    let missing: Vec<&str> = read.iter().filter(|a| a.state == "MISSING").map(|a| a.name.as_str()).collect();
    assert!(missing.is_empty(), "60 alarms that exist read as MISSING: {missing:?}");
    // AWS may answer fewer than MaxRecords, with a NextToken: 25 a page.
    sb.faults.cloudwatch.cap_alarm_pages(25);
    let read = cutover::aws::cloudwatch::alarm_states(cw, &names).await.unwrap();
    let missing: Vec<&str> = read.iter().filter(|a| a.state == "MISSING").map(|a| a.name.as_str()).collect();
    assert!(missing.is_empty(), "alarms on pages two and three read as MISSING: {missing:?}");
    let absent: Vec<String> = (0..60).map(|i| format!("absent-{i:03}")).collect();
    let asked: Vec<String> = names.iter().chain(&absent).cloned().collect();
    let read = cutover::aws::cloudwatch::alarm_states(cw, &asked).await.unwrap();
    assert_eq!(read.len(), 120);
    for a in &read {
        assert_eq!(a.state == "MISSING", a.name.starts_with("absent-"), "{a:?}");
    }
    sb.down().await;
}

/// An alarm whose `Unit` is not the one its ALB metric is published in
/// reads no datapoint (PutMetricAlarm: "stuck"); with `notBreaching` it
/// stays OK while the side serves 5xx. The sandbox's evaluator reads the
/// alarm's unit as AWS does. Its gate is an error and its check unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_with_a_unit_its_metric_is_not_published_in_passes_no_gate() {
    use aws_sdk::cloudwatch::types::StandardUnit;
    let rb = parse(&demo_text("", |t| t));
    let sb = sandbox(&rb, "ap-southeast-1").await;
    until_state(&sb, "demo-staging-5xx", "OK").await;
    let g = gate("[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-5xx\"]\n");
    let cw = &sb.clients.cloudwatch;
    let old = cw.describe_alarms().alarm_names("demo-staging-5xx").send().await.unwrap().metric_alarms()[0].clone();
    let put_in = |unit: StandardUnit| {
        cw.put_metric_alarm()
            .alarm_name("demo-staging-5xx")
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_Target_5XX_Count")
            .set_dimensions(Some(old.dimensions().to_vec()))
            .set_statistic(old.statistic().cloned())
            .unit(unit)
            .period(60)
            .evaluation_periods(1)
            .threshold(5.0)
            .set_comparison_operator(old.comparison_operator().cloned())
            .treat_missing_data("notBreaching")
            .send()
    };
    // In its published unit the alarm sees staging's 5xx and goes off.
    put_in(StandardUnit::Count).await.unwrap();
    put_target_5xx(&sb, "staging", 10.0).await;
    until_state(&sb, "demo-staging-5xx", "ALARM").await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert!(matches!(&m, Measurement::Fail(w) if w.contains("demo-staging-5xx is ALARM")), "{m:?}");
    // In percent it reads nothing: OK through the same 5xx. moto sets an
    // alarm it is given OK at once, so wait for the evaluator's own OK, on
    // no datapoint.
    put_in(StandardUnit::Percent).await.unwrap();
    put_target_5xx(&sb, "staging", 10.0).await;
    eventually(Duration::from_secs(30), "the evaluator to judge the alarm in percent", || async {
        let r = cw.describe_alarms().alarm_names("demo-staging-5xx").send().await.unwrap();
        let a = r.metric_alarms()[0].clone();
        let evaluated = a.state_reason().is_some_and(|r| r.starts_with("sandbox evaluator: [-]"));
        (evaluated && a.state_value().map(|s| s.as_str()) == Some("OK")).then_some(())
    })
    .await;
    let snap = first_snapshot(&rb, &sb).await;
    let m = gates::from_snapshot(&rb, &g, &snap).unwrap();
    assert!(
        matches!(&m, Measurement::Error(w) if w.contains("alarm demo-staging-5xx: its unit Percent is not the one AWS publishes HTTPCode_Target_5XX_Count in (Count)")),
        "{m:?}"
    );
    let check = cutover::runbook::Check::AlarmOk { alarm: "demo-staging-5xx".into() };
    let (outcome, detail) = cutover::status::checks::evaluate_one(&rb, &snap, &check);
    assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
    // A p99 latency alarm (percentiles are the sandbox's own, not moto's)
    // in Milliseconds: TargetResponseTime is published in Seconds.
    let latency_in = |unit: StandardUnit| {
        cw.put_metric_alarm()
            .alarm_name("demo-staging-slow")
            .namespace("AWS/ApplicationELB")
            .metric_name("TargetResponseTime")
            .set_dimensions(Some(old.dimensions().to_vec()))
            .extended_statistic("p99")
            .unit(unit)
            .period(60)
            .evaluation_periods(1)
            .threshold(0.5)
            .comparison_operator(aws_sdk::cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .send()
    };
    let evaluated = |state: &'static str, values: &'static str| {
        let cw = cw.clone();
        async move {
            let r = cw.describe_alarms().alarm_names("demo-staging-slow").send().await.unwrap();
            let a = r.metric_alarms()[0].clone();
            let by_evaluator = a.state_reason().is_some_and(|r| r.starts_with(values));
            (by_evaluator && a.state_value().map(|s| s.as_str()) == Some(state)).then_some(())
        }
    };
    latency_in(StandardUnit::Seconds).await.unwrap();
    put_latency(&sb, "staging", SystemTime::now(), &[(2.0, 10.0)]).await;
    eventually(Duration::from_secs(30), "the p99 alarm in seconds to go off", || {
        evaluated("ALARM", "sandbox evaluator: [2]")
    })
    .await;
    latency_in(StandardUnit::Milliseconds).await.unwrap();
    put_latency(&sb, "staging", SystemTime::now(), &[(2.0, 10.0)]).await;
    eventually(Duration::from_secs(30), "the p99 alarm in milliseconds to read nothing", || {
        evaluated("OK", "sandbox evaluator: [-]")
    })
    .await;
    let states = cutover::aws::cloudwatch::alarm_states(cw, &["demo-staging-slow".to_string()]).await.unwrap();
    let blind = states[0].blind.clone().unwrap_or_default();
    assert!(
        blind.contains("its unit Milliseconds is not the one AWS publishes TargetResponseTime in (Seconds)"),
        "{blind}"
    );
    sb.down().await;
}
