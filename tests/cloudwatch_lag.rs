//! ALB datapoints arrive minutes late. A step must not pass before the
//! datapoints covering its soak have arrived: 5xx served at the end of a soak
//! must still abort the rollout when their datapoints show up late.
//!
//! Its own test binary: the sandbox's lag is read from the environment.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// HTTPCode_Target_5XX_Count of `environment`'s target group over the last
/// ten minutes, summed, asked for with the test's own literal dimensions.
async fn visible_5xx(sb: &cutover::sandbox::Sandbox, environment: &str) -> f64 {
    let dims = sb.world.target_group_dimensions(environment).unwrap_or_default();
    alb_metric_sum(sb, "HTTPCode_Target_5XX_Count", dims).await
}

/// The demo runbook in two steps (50%, 100%) with `gate` alone and its 5xx
/// alarm's period `period`, rolled out until step 1 soaks; then staging
/// serves 5xx (7, as an ALB counts them). The rollout runs on.
async fn step_1_serves_5xx(
    gate: &str,
    period: &str,
    region: &str,
) -> (tempfile::TempDir, cutover::sandbox::Sandbox, tokio::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let (head, rest) = text.split_once("[[rollout.gates]]").unwrap();
    let alarms =
        rest[rest.find("[[alarms]]").unwrap()..].replacen("period = \"1m\"", &format!("period = \"{period}\""), 1);
    let head = head
        .replace("steps = [10, 25, 50, 100]", "steps = [50, 100]")
        .replace("soak = \"30s\"", "soak = \"5s\"")
        .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
        .replace("ttl = 10\n", "ttl = 1\n");
    let text = format!("{head}{gate}{alarms}");
    let path = dir.path().join("late.toml");
    std::fs::write(&path, &text).unwrap();
    let rb = cutover::runbook::parse(&path.display().to_string(), &text).unwrap();
    let sb = sandbox(&rb, region).await;
    let child = tokio::process::Command::from(cutover_command(
        &sb,
        &rb,
        dir.path(),
        &["rollout", path.to_str().unwrap(), "--yes"],
    ))
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let state = dir.path().join("cutover/demo.rollout.json");
    eventually(Duration::from_secs(60), "step 1 to soak", || async {
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        (s["engine"]["phase"]["phase"] == "soaking").then_some(())
    })
    .await;
    let datum = aws_sdk::cloudwatch::types::MetricDatum::builder()
        .metric_name("HTTPCode_Target_5XX_Count")
        .set_dimensions(sb.world.target_group_dimensions("staging"))
        .value(7.0)
        .build();
    sb.clients.cloudwatch.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.unwrap();
    (dir, sb, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waits_for_the_datapoints_covering_its_soak_and_late_5xx_abort_it() {
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("CUTOVER_SANDBOX_METRICS_LAG", "20s") };
    // The load balancer's own 5xx bounded too, as a runbook must beside its targets'.
    let metric_gate = "[[rollout.gates]]\nkind = \"metric\"\nenvironment = \"staging\"\n\
                       metric = \"HTTPCode_Target_5XX_Count\"\nstat = \"Sum\"\nmax = 0\nno_data = \"pass\"\n\n\
                       [[rollout.gates]]\nkind = \"metric\"\nenvironment = \"staging\"\n\
                       metric = \"HTTPCode_ELB_5XX_Count\"\nstat = \"Sum\"\nmax = 0\nno_data = \"pass\"\n\n";
    let (_dir, sb, child) = step_1_serves_5xx(metric_gate, "1m", "us-west-1").await;
    let served = Instant::now();
    assert_eq!(visible_5xx(&sb, "staging").await, 0.0, "the datapoint is not visible at once, as on AWS");
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let visible = visible_5xx(&sb, "staging").await;
    sb.down().await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the 5xx of step 1's soak arrive late, and must still abort it ({visible} visible now): {text}"
    );
    assert!(text.contains("staging HTTPCode_Target_5XX_Count Sum = 7.000"), "the gate saw the late 5xx: {text}");
    assert!(served.elapsed() >= Duration::from_secs(20), "not before the datapoints arrived: {:?}", served.elapsed());
}

/// An alarm judges a request only once its datapoint has arrived and the
/// alarm was evaluated after: a state read at the soak's end has not judged
/// the soak's last minutes. A step passes only on OK states read `lag` past
/// its end, so 5xx served late in a soak still turn the alarm and abort it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_gate_judges_a_step_on_states_read_its_lag_past_the_soak_so_late_5xx_abort_it() {
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("CUTOVER_SANDBOX_METRICS_LAG", "20s") };
    // A 3-minute period holds the late datapoint in the alarm's window once
    // it arrives (at most a minute plus the lag after it was served).
    let alarm_gate = "[[rollout.gates]]\nkind = \"alarm_ok\"\nalarms = [\"demo-staging-5xx\"]\nlag = \"90s\"\n\n";
    let (_dir, sb, child) = step_1_serves_5xx(alarm_gate, "3m", "eu-north-1").await;
    let served = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let final_weights = weights(&sb).await;
    sb.down().await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the alarm turns on step 1's 5xx only after they arrive; the step must not pass before: {text}"
    );
    assert!(text.contains("alarm demo-staging-5xx is ALARM"), "the gate saw the alarm turn: {text}");
    assert!(served.elapsed() >= Duration::from_secs(20), "not before the datapoints arrived: {:?}", served.elapsed());
    assert_eq!(final_weights, w(100, 0), "no step passed: back to the initial weights");
}

/// A window begun after the last datapoint that has arrived holds none: the
/// sandbox answers it empty, as AWS would, never with what moto holds in the
/// second its window would span (a 5xx put just after a soak began was then
/// read at once, a gate judging data AWS would not have shown yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_begun_since_the_last_arrival_shows_no_datapoint() {
    use aws_sdk::cloudwatch::primitives::DateTime;
    use aws_sdk::cloudwatch::types::{Metric, MetricDataQuery, MetricDatum, MetricStat};
    use std::time::{SystemTime, UNIX_EPOCH};
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("CUTOVER_SANDBOX_METRICS_LAG", "20s") };
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-west-2").await;
    // Half past a whole second, and a window from a tenth before it.
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let at = UNIX_EPOCH + Duration::from_millis(secs * 1000 + 500);
    let dims = sb.world.target_group_dimensions("staging");
    let datum = MetricDatum::builder()
        .metric_name("HTTPCode_Target_5XX_Count")
        .set_dimensions(dims.clone())
        .value(7.0)
        .timestamp(DateTime::from(at))
        .build();
    sb.clients.cloudwatch.put_metric_data().namespace("AWS/ApplicationELB").metric_data(datum).send().await.unwrap();
    let metric =
        Metric::builder().namespace("AWS/ApplicationELB").metric_name("HTTPCode_Target_5XX_Count").set_dimensions(dims);
    let stat = MetricStat::builder().metric(metric.build()).period(60).stat("Sum").build();
    let query = MetricDataQuery::builder().id("e").metric_stat(stat).build();
    let out = sb
        .clients
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from(at - Duration::from_millis(100)))
        .end_time(DateTime::from(SystemTime::now() + Duration::from_secs(60)))
        .send()
        .await
        .unwrap();
    let values: Vec<f64> = out.metric_data_results().iter().flat_map(|r| r.values().to_vec()).collect();
    sb.down().await;
    assert!(values.is_empty(), "a datapoint not arrived yet was shown: {values:?}");
}
