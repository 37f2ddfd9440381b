//! CloudWatch: alarm states, and ALB metrics for every target group in one
//! GetMetricData call.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric as CwMetric, MetricDataQuery, MetricStat};
use serde::Serialize;

use super::{AwsResult, sdk_error};
use crate::runbook::{Metric, Stat};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmState {
    pub name: String,
    /// OK, ALARM, INSUFFICIENT_DATA, or MISSING when no such alarm exists.
    pub state: String,
    pub reason: String,
}

pub async fn alarm_states(cw: &aws_sdk_cloudwatch::Client, names: &[String]) -> AwsResult<Vec<AlarmState>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let resp = cw
        .describe_alarms()
        .set_alarm_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeAlarms", e))?;
    Ok(names
        .iter()
        .map(|n| match resp.metric_alarms().iter().find(|a| a.alarm_name() == Some(n.as_str())) {
            Some(a) => AlarmState {
                name: n.clone(),
                state: a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default(),
                reason: a.state_reason().unwrap_or_default().to_string(),
            },
            None => {
                AlarmState { name: n.clone(), state: "MISSING".into(), reason: "no such alarm in this region".into() }
            }
        })
        .collect())
}

/// Which series to fetch: one per (target group, metric, statistic).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesKey {
    pub environment: String,
    /// ARN suffixes: TargetGroup, and LoadBalancer when known.
    pub target_group: String,
    pub load_balancer: Option<String>,
    pub metric: Metric,
    pub stat: Stat,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub environment: String,
    pub metric: Metric,
    pub stat: String,
    /// Oldest first: (seconds since the epoch, value).
    pub points: Vec<(i64, f64)>,
}

/// The series cutover shows for each environment with an ALB.
pub fn default_series(environment: &str, target_group: &str, load_balancer: Option<&str>) -> Vec<SeriesKey> {
    [
        (Metric::RequestCount, Stat::Sum),
        (Metric::Target5xx, Stat::Sum),
        (Metric::Elb5xx, Stat::Sum),
        (Metric::TargetResponseTime, Stat::Average),
        (Metric::HealthyHostCount, Stat::Average),
        (Metric::UnhealthyHostCount, Stat::Average),
    ]
    .into_iter()
    .map(|(metric, stat)| SeriesKey {
        environment: environment.to_string(),
        target_group: target_group.to_string(),
        load_balancer: load_balancer.map(str::to_string),
        metric,
        stat,
    })
    .collect()
}

/// Every series over the last `window`, in one GetMetricData call (pages
/// followed; 500 queries at most per call).
pub async fn metric_series(
    cw: &aws_sdk_cloudwatch::Client,
    keys: &[SeriesKey],
    window: Duration,
    period_secs: i32,
) -> AwsResult<Vec<Series>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let queries: Vec<MetricDataQuery> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut dims = vec![Dimension::builder().name("TargetGroup").value(&k.target_group).build()];
            if let Some(lb) = &k.load_balancer {
                dims.push(Dimension::builder().name("LoadBalancer").value(lb).build());
            }
            let metric = CwMetric::builder()
                .namespace("AWS/ApplicationELB")
                .metric_name(k.metric.cloudwatch_name())
                .set_dimensions(Some(dims))
                .build();
            MetricDataQuery::builder()
                .id(format!("q{i}"))
                .metric_stat(
                    MetricStat::builder().metric(metric).period(period_secs).stat(k.stat.cloudwatch_name()).build(),
                )
                .build()
        })
        .collect();
    let now = SystemTime::now();
    let mut points: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let resp = cw
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from(now - window))
            .end_time(DateTime::from(now + Duration::from_secs(60)))
            .set_next_token(next.clone())
            .send()
            .await
            .map_err(|e| sdk_error("GetMetricData", e))?;
        for r in resp.metric_data_results() {
            let entry = points.entry(r.id().unwrap_or_default().to_string()).or_default();
            entry.extend(r.timestamps().iter().map(|t| t.secs()).zip(r.values().iter().copied()));
        }
        next = resp.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    Ok(keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut pts = points.remove(&format!("q{i}")).unwrap_or_default();
            pts.sort_by_key(|p| p.0);
            Series { environment: k.environment.clone(), metric: k.metric, stat: k.stat.cloudwatch_name(), points: pts }
        })
        .collect())
}
