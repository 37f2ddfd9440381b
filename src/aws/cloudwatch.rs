//! CloudWatch: alarm states, and ALB metrics for every target group in one
//! GetMetricData call.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk::cloudwatch::primitives::DateTime;
use aws_sdk::cloudwatch::types::{AlarmType, Dimension, Metric as CwMetric, MetricDataQuery, MetricStat, StateValue};
use serde::Serialize;

use super::{AwsResult, SideClients, sdk_error};
use crate::runbook::{Metric, Runbook, Side, Stat};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlarmState {
    pub name: String,
    /// OK, ALARM, INSUFFICIENT_DATA, or MISSING when no such alarm exists.
    pub state: String,
    pub reason: String,
    /// A metric alarm's period as AWS has it: how much later than a request
    /// it may judge it (a composite: none of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// A metric alarm's breaching periods that set it off as AWS has them
    /// (`DatapointsToAlarm`, else `EvaluationPeriods`): errors starting now
    /// set it off this many periods later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<u32>,
    /// A metric alarm on an ALB metric: its `LoadBalancer` and `TargetGroup`
    /// dimensions (ARN suffixes), whose requests it watches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<(String, String)>,
    /// Why its OK says nothing of its metric: an ALB metric under a dimension
    /// set AWS never publishes it with reads no data, and a count compared
    /// in a way that never goes off ([`never_fires`]) never fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blind: Option<String>,
    /// A composite alarm's rule as AWS has it (`None`: a metric alarm, or
    /// no such alarm). Its children are the alarms this rule names, which
    /// need not be the ones the runbook declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// When its state last changed, by AWS's clock
    /// (`StateTransitionedTimestamp`, else `StateUpdatedTimestamp`, which
    /// also moves on other updates): a change after a reading means it left
    /// that state since, maybe for ALARM and back, which only its history
    /// tells.
    #[serde(skip)]
    pub state_changed: Option<SystemTime>,
}

/// Whether AWS publishes `metric` under exactly these dimensions.
fn published_with(metric: Metric, dims: &[(&str, &str)]) -> bool {
    published_dimensions(metric).iter().any(|set| {
        let names = set.names();
        names.len() == dims.len() && dims.iter().all(|(n, _)| names.contains(n))
    })
}

/// What a metric alarm on an ALB metric watches, and whether AWS publishes
/// its metric under its dimensions at all.
fn elb_watch(
    namespace: Option<&str>,
    metric: Option<&str>,
    dims: &[Dimension],
) -> (Vec<(String, String)>, Option<String>) {
    if namespace != Some("AWS/ApplicationELB") {
        return (Vec::new(), None);
    }
    let dims: Vec<(&str, &str)> = dims.iter().filter_map(|d| Some((d.name()?, d.value()?))).collect();
    if let Some((_, zone)) = dims.iter().find(|(n, _)| *n == "AvailabilityZone") {
        let why = format!("its dimensions name one availability zone ({zone}), so it sees only that zone's requests");
        return (Vec::new(), Some(why));
    }
    let watches = dims
        .iter()
        .filter(|(n, _)| matches!(*n, "LoadBalancer" | "TargetGroup"))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let blind = metric.and_then(|name| {
        let m = Metric::from_cloudwatch_name(name)?;
        (!published_with(m, &dims)).then(|| {
            let given: Vec<&str> = dims.iter().map(|(n, _)| *n).collect();
            let sets: Vec<String> = published_dimensions(m).iter().map(|s| s.names().join(", ")).collect();
            format!(
                "its metric {name} has dimensions {{{}}}, which AWS never publishes it under ({}), so it reads no \
                 data whatever the side does",
                given.join(", "),
                sets.iter().map(|s| format!("{{{s}}}")).collect::<Vec<_>>().join(" or ")
            )
        })
    });
    (watches, blind.map(|why| format!("{why}; give it a dimension set AWS publishes")))
}

/// Why a metric alarm on an ALB request count never goes off when that count
/// rises, if so. AWS publishes a count only when it is not zero, and its
/// Minimum, Maximum and Average are then always 1 ("CloudWatch metrics for
/// your Application Load Balancer", each count's Statistics line), as is any
/// percentile of it: compared above a threshold of 1 or more, such an alarm
/// stays OK through any flood of requests or errors. A 5xx alarm that goes
/// off below its threshold goes off on few errors, not on many.
pub fn never_fires(
    namespace: Option<&str>,
    metric: Option<&str>,
    statistic: Option<&str>,
    comparison: Option<&str>,
    threshold: Option<f64>,
) -> Option<String> {
    if namespace != Some("AWS/ApplicationELB") {
        return None;
    }
    let name = metric?;
    let errors = match Metric::from_cloudwatch_name(name)? {
        Metric::Target5xx | Metric::Elb5xx => true,
        Metric::RequestCount => false,
        // In seconds: a threshold over a minute is one written in
        // milliseconds (1000 for 1 s), as `metric` gates refuse, and an
        // alarm on it stays OK through any slowness that matters.
        Metric::TargetResponseTime => {
            let (comparison, threshold, statistic) = (comparison?, threshold?, statistic?);
            let above = matches!(comparison, "GreaterThanThreshold" | "GreaterThanOrEqualToThreshold");
            let summed = matches!(statistic, "Sum" | "SampleCount");
            return (above && !summed && threshold > 60.0).then(|| {
                format!(
                    "its threshold {threshold} on {name} is in seconds, as CloudWatch gives it: over a minute, so \
                     it never goes off on a slow response; a threshold in milliseconds? write 0.1 for 100 ms"
                )
            });
        }
        _ => return None,
    };
    let (comparison, threshold) = (comparison?, threshold?);
    if errors && matches!(comparison, "LessThanThreshold" | "LessThanOrEqualToThreshold") {
        return Some(format!(
            "it goes off when {name} is below its threshold ({comparison} {threshold}), so more errors never set it \
             off; compare with GreaterThanThreshold"
        ));
    }
    let statistic = statistic?;
    // Percentiles, trimmed and winsorized means of values all 1 are 1 too.
    let of_values =
        ["p", "tm", "wm"].iter().any(|k| statistic.strip_prefix(k).is_some_and(|n| n.parse::<f64>().is_ok()));
    let always_one = matches!(statistic, "Average" | "Minimum" | "Maximum" | "IQM") || of_values;
    let goes_off_at_one = match comparison {
        "GreaterThanThreshold" => 1.0 > threshold,
        "GreaterThanOrEqualToThreshold" => 1.0 >= threshold,
        _ => return None,
    };
    (always_one && !goes_off_at_one).then(|| {
        format!(
            "its statistic {statistic} of {name} is always 1 (AWS publishes the count only when it is not zero), so \
             {comparison} {threshold} never holds however many requests fail; use Sum"
        )
    })
}

/// Why an alarm reading an ALB metric in `unit` sees no datapoint, if it
/// does not: CloudWatch answers a unit the metric is not published in with
/// none ("CloudWatch metrics for your Application Load Balancer": counts in
/// `Count`, `TargetResponseTime` in `Seconds`). PutMetricAlarm documents
/// such an alarm as stuck in INSUFFICIENT_DATA; with `notBreaching` it stays
/// OK through any number of errors.
fn unit_unpublished(
    namespace: Option<&str>,
    metric: Option<&str>,
    unit: Option<&aws_sdk::cloudwatch::types::StandardUnit>,
) -> Option<String> {
    let unit = unit?.as_str();
    if namespace != Some("AWS/ApplicationELB") {
        return None;
    }
    let name = metric?;
    let published = match Metric::from_cloudwatch_name(name)? {
        Metric::TargetResponseTime => "Seconds",
        _ => "Count",
    };
    (unit != published).then(|| {
        format!(
            "its unit {unit} is not the one AWS publishes {name} in ({published}): it reads no datapoint, so it \
             never goes off; leave its unit out"
        )
    })
}

/// Why a percentile alarm stays as it was while its side gets few requests:
/// with `EvaluateLowSampleCountPercentile = ignore` AWS leaves its state
/// unchanged in a period with fewer samples than 10/(1-p) (1,000 for p99),
/// as at a rollout's first steps (CloudWatch User Guide, "Percentile-based
/// alarms and low data samples"). Its OK says nothing of them.
fn ignores_low_samples(a: &aws_sdk::cloudwatch::types::MetricAlarm) -> Option<String> {
    let percentile = |s: &str| s.strip_prefix(['p', 'P']).is_some_and(|n| n.parse::<f64>().is_ok());
    if a.namespace().is_some_and(|n| n != "AWS/ApplicationELB") {
        return None;
    }
    let stat = a
        .extended_statistic()
        .filter(|s| percentile(s))
        .or_else(|| a.metrics().iter().filter_map(|q| q.metric_stat()?.stat()).find(|s| percentile(s)))?;
    (a.evaluate_low_sample_count_percentile() == Some("ignore")).then(|| {
        format!(
            "its {stat} is left unevaluated (its state unchanged) in any period with too few requests for that \
             percentile (EvaluateLowSampleCountPercentile = ignore), as at a rollout's first steps; set it to evaluate"
        )
    })
}

/// [`never_fires`] of a metric alarm with its own metric (metric math is
/// judged only by the units its metrics are read in), or one that ignores
/// the few requests of a rollout's first steps ([`ignores_low_samples`]).
fn alarm_never_fires(a: &aws_sdk::cloudwatch::types::MetricAlarm) -> Option<String> {
    ignores_low_samples(a)
        .or_else(|| unit_unpublished(a.namespace(), a.metric_name(), a.unit()))
        .or_else(|| {
            a.metrics().iter().filter_map(|q| q.metric_stat()).find_map(|st| {
                let m = st.metric()?;
                unit_unpublished(m.namespace(), m.metric_name(), st.unit())
            })
        })
        .or_else(|| {
            never_fires(
                a.namespace(),
                a.metric_name(),
                a.statistic().map(|s| s.as_str()).or(a.extended_statistic()),
                a.comparison_operator().map(|c| c.as_str()),
                a.threshold(),
            )
        })
}

/// Why a metric alarm's state is not CloudWatch's fresh judgement of its
/// data, if so: its evaluation state (DescribeAlarms' `EvaluationState`)
/// says it could not be evaluated (EVALUATION_ERROR, a fault in its own
/// set-up; EVALUATION_FAILURE, CloudWatch's own trouble, when AWS advises
/// watching by hand) or judged part of its data (PARTIAL_DATA). Its OK
/// then says nothing of the side. A state cutover does not know is taken
/// the same way: a gate rests on no judgement it cannot read.
fn unevaluated(a: &aws_sdk::cloudwatch::types::MetricAlarm) -> Option<String> {
    let state = a.evaluation_state()?.as_str();
    Some(match state {
        "" => return None,
        "EVALUATION_ERROR" => {
            "CloudWatch cannot evaluate it (EVALUATION_ERROR: a fault in its set-up, which its state \
                               reason names), so its state is no judgement of its data"
                .into()
        }
        "EVALUATION_FAILURE" => {
            "CloudWatch failed to evaluate it (EVALUATION_FAILURE, a CloudWatch issue: AWS advises \
                                 watching by hand until it clears), so its state is no judgement of its data"
                .into()
        }
        "PARTIAL_DATA" => "CloudWatch evaluates it on part of its data only (PARTIAL_DATA: its query matches over \
                           10,000 metrics)"
            .into(),
        other => format!(
            "its evaluation state is {other}, which cutover does not know: its state is not taken as a judgement"
        ),
    })
}

/// Why a metric alarm on an ALB metric judges periods shorter than a
/// minute, if it does: the load balancer publishes its metrics every 60
/// seconds, and CloudWatch does not evaluate such an alarm on the
/// evaluations that fall between them (PutMetricAlarm, `Period`), so one
/// with `notBreaching` reads OK most of the time whatever the side does.
fn sub_minute_on_alb(a: &aws_sdk::cloudwatch::types::MetricAlarm) -> Option<String> {
    let own = (a.namespace() == Some("AWS/ApplicationELB")).then(|| a.period()).flatten();
    let queried = a.metrics().iter().filter_map(|q| {
        let st = q.metric_stat()?;
        (st.metric()?.namespace() == Some("AWS/ApplicationELB")).then(|| st.period()).flatten()
    });
    let period = own.into_iter().chain(queried).filter(|p| *p < 60).min()?;
    Some(format!(
        "it judges periods of {period} s, and the load balancer publishes its metrics once a minute: most of its \
         evaluations see no data; give it a period of 60 s or more"
    ))
}

pub async fn alarm_states(cw: &aws_sdk::cloudwatch::Client, names: &[String]) -> AwsResult<Vec<AlarmState>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // Composite alarms come back only when asked for by type. AlarmNames
    // takes at most 100 names, and the answer comes in pages: an alarm on a
    // page not read would be MISSING, a failure.
    let (mut metric_alarms, mut composite_alarms) = (Vec::new(), Vec::new());
    for batch in names.chunks(100) {
        let mut next: Option<String> = None;
        loop {
            let resp = cw
                .describe_alarms()
                .set_alarm_names(Some(batch.to_vec()))
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .max_records(100)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeAlarms", e))?;
            metric_alarms.extend(resp.metric_alarms().iter().cloned());
            composite_alarms.extend(resp.composite_alarms().iter().cloned());
            match resp.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
    }
    let read =
        |name: Option<&str>, state: Option<&StateValue>, reason: Option<&str>, changed: Option<&DateTime>| AlarmState {
            name: name.unwrap_or_default().to_string(),
            state: state.map(|s| s.as_str().to_string()).unwrap_or_default(),
            reason: reason.unwrap_or_default().to_string(),
            state_changed: changed.and_then(|t| SystemTime::try_from(*t).ok()),
            ..Default::default()
        };
    let metric = metric_alarms.iter().map(|a| {
        // Its own metric, or (metric math) each metric its queries read:
        // one it cannot see makes the whole expression blind.
        let (mut watches, mut blind) = elb_watch(a.namespace(), a.metric_name(), a.dimensions());
        for m in a.metrics().iter().filter_map(|q| q.metric_stat().and_then(|s| s.metric())) {
            let (w, b) = elb_watch(m.namespace(), m.metric_name(), m.dimensions());
            watches.extend(w);
            blind = blind.or(b);
        }
        watches.sort();
        watches.dedup();
        let blind = blind.or_else(|| alarm_never_fires(a)).or_else(|| sub_minute_on_alb(a)).or_else(|| unevaluated(a));
        // An alarm on metric math has no Period of its own: each metric it
        // reads has one (PutMetricAlarm), and the longest sets its pace.
        let query_periods = a.metrics().iter().filter_map(|q| q.metric_stat().and_then(|m| m.period()).or(q.period()));
        let period_seconds = a.period().or(query_periods.max()).and_then(|p| u32::try_from(p).ok());
        let datapoints_to_alarm =
            a.datapoints_to_alarm().or(a.evaluation_periods()).and_then(|n| u32::try_from(n).ok());
        AlarmState {
            period_seconds,
            datapoints_to_alarm,
            watches,
            blind,
            ..read(
                a.alarm_name(),
                a.state_value(),
                a.state_reason(),
                a.state_transitioned_timestamp().or(a.state_updated_timestamp()),
            )
        }
    });
    // A composite without a rule read is still one: an empty rule is one
    // cutover cannot read, never a metric alarm's none.
    let composite = composite_alarms.iter().map(|a| AlarmState {
        rule: Some(a.alarm_rule().unwrap_or_default().to_string()),
        ..read(
            a.alarm_name(),
            a.state_value(),
            a.state_reason(),
            a.state_transitioned_timestamp().or(a.state_updated_timestamp()),
        )
    });
    let found: Vec<AlarmState> = metric.chain(composite).collect();
    Ok(names
        .iter()
        .map(|n| match found.iter().find(|a| &a.name == n) {
            Some(a) => a.clone(),
            None => AlarmState {
                name: n.clone(),
                state: "MISSING".into(),
                reason: "no such alarm in this region".into(),
                ..Default::default()
            },
        })
        .collect())
}

/// Pages of alarm history read for one alarm at most: a thousand state
/// changes since a soak began is an alarm that cannot be judged.
const HISTORY_PAGES: usize = 10;

/// An alarm history cutover cannot judge (a reply it cannot read, too
/// many changes): no request to try again.
fn history_error(message: String) -> super::AwsError {
    super::AwsError { operation: "DescribeAlarmHistory".into(), kind: super::AwsErrorKind::Other, message }
}

/// One change of an alarm's state, from its history (by AWS's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub at: SystemTime,
    pub old: String,
    pub new: String,
}

/// Reads one page of alarm `name`'s state changes (metric or composite).
async fn history_page(
    cw: &aws_sdk::cloudwatch::Client,
    name: &str,
    (start, end): (Option<SystemTime>, Option<SystemTime>),
    ascending: bool,
    next: Option<String>,
) -> AwsResult<(Vec<StateChange>, Option<String>)> {
    use aws_sdk::cloudwatch::types::{HistoryItemType, ScanBy};
    // Without AlarmTypes only a metric alarm's history comes back.
    let resp = cw
        .describe_alarm_history()
        .alarm_name(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .history_item_type(HistoryItemType::StateUpdate)
        .set_start_date(start.map(DateTime::from))
        .set_end_date(end.map(DateTime::from))
        .scan_by(if ascending { ScanBy::TimestampAscending } else { ScanBy::TimestampDescending })
        .max_records(100)
        .set_next_token(next)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeAlarmHistory", e))?;
    let mut changes = Vec::new();
    for item in resp.alarm_history_items() {
        let data = item.history_data().unwrap_or_default();
        let json = serde_json::from_str::<serde_json::Value>(data).unwrap_or_default();
        let state = |which: &str| json[which]["stateValue"].as_str().map(str::to_string);
        let at = item.timestamp().and_then(|t| SystemTime::try_from(*t).ok());
        // An item that cannot be read may be an ALARM: never skipped.
        let (Some(old), Some(new), Some(at)) = (state("oldState"), state("newState"), at) else {
            return Err(history_error(format!("a state change of alarm {name} that cannot be read: {data:?}")));
        };
        changes.push(StateChange { at, old, new });
    }
    let next = resp.next_token().filter(|t| !t.is_empty()).map(str::to_string);
    Ok((changes, next))
}

/// Alarm `name`'s state changes from `from` on, oldest first (AWS keeps
/// its history for weeks). When the first left ALARM, the change that put
/// it in ALARM before `from` comes first: that ALARM lasted into the window.
pub async fn state_changes_since(
    cw: &aws_sdk::cloudwatch::Client,
    name: &str,
    from: SystemTime,
) -> AwsResult<Vec<StateChange>> {
    let mut changes = Vec::new();
    let mut next = None;
    for _ in 0..HISTORY_PAGES {
        let (page, more) = history_page(cw, name, (Some(from), None), true, next).await?;
        changes.extend(page);
        next = more;
        if next.is_none() {
            break;
        }
    }
    if next.is_some() {
        let times = HISTORY_PAGES * 100;
        return Err(history_error(format!("alarm {name} changed state more than {times} times since the soak began")));
    }
    if changes.first().is_some_and(|c| c.old == "ALARM") {
        let (before, _) = history_page(cw, name, (None, Some(from)), false, None).await?;
        if let Some(entered) = before.into_iter().find(|c| c.new == "ALARM" && c.old != "ALARM") {
            changes.insert(0, entered);
        }
    }
    Ok(changes)
}

/// [`state_changes_since`] for alarm `name` of `rb`, read where its state is.
pub async fn state_changes_by_side(
    sides: &SideClients,
    rb: &Runbook,
    name: &str,
    from: SystemTime,
) -> AwsResult<Vec<StateChange>> {
    let side = rb.alarms.iter().find(|a| a.name == name).and_then(|a| a.environment.clone()).map(Side::Environment);
    let clients = match &side {
        Some(s) => sides.side(s),
        None => sides.runbook(),
    };
    state_changes_since(&clients.cloudwatch, name, from).await
}

/// A dimension set of the AWS/ApplicationELB namespace. The per-zone variants
/// (`AvailabilityZone, …`) are left out: cutover never reads per zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dimensions {
    /// `LoadBalancer`: the whole load balancer.
    LoadBalancer,
    /// `TargetGroup, LoadBalancer`: one target group behind one load balancer.
    TargetGroupLoadBalancer,
}

impl Dimensions {
    /// The dimension names, as CloudWatch spells them.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Dimensions::LoadBalancer => &["LoadBalancer"],
            Dimensions::TargetGroupLoadBalancer => &["TargetGroup", "LoadBalancer"],
        }
    }
}

/// The dimension sets AWS publishes `metric` under; the first is the one
/// cutover queries it with. CloudWatch answers a query on any other set with
/// no data and no error, so a gate on it would never see a failure.
///
/// From "CloudWatch metrics for your Application Load Balancer"
/// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html>,
/// each metric's Dimensions line and "Metric dimensions for Application Load
/// Balancers"): the load balancer's own codes (`HTTPCode_ELB_*`) exist per
/// `LoadBalancer` only, never per target group; target codes, latency and
/// requests per `TargetGroup, LoadBalancer` and per `LoadBalancer`; host
/// counts per `TargetGroup, LoadBalancer` only.
pub fn published_dimensions(metric: Metric) -> &'static [Dimensions] {
    use Dimensions::*;
    match metric {
        Metric::Elb5xx => &[LoadBalancer],
        Metric::RequestCount | Metric::Target5xx | Metric::TargetResponseTime => {
            &[TargetGroupLoadBalancer, LoadBalancer]
        }
        Metric::HealthyHostCount | Metric::UnhealthyHostCount => &[TargetGroupLoadBalancer],
    }
}

/// The dimension set cutover queries `metric` with.
pub fn query_dimensions(metric: Metric) -> Dimensions {
    published_dimensions(metric).first().copied().unwrap_or(Dimensions::TargetGroupLoadBalancer)
}

/// Which series to fetch: one per (environment, metric, statistic).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesKey {
    pub environment: String,
    /// ARN suffixes, when known.
    pub target_group: Option<String>,
    pub load_balancer: Option<String>,
    pub metric: Metric,
    pub stat: Stat,
    /// One of the sets AWS publishes `metric` under.
    pub dimensions: Dimensions,
}

impl SeriesKey {
    /// A series asked for with the metric's own dimension set.
    pub fn new(
        environment: &str,
        target_group: Option<&str>,
        load_balancer: Option<&str>,
        metric: Metric,
        stat: Stat,
    ) -> SeriesKey {
        SeriesKey {
            environment: environment.to_string(),
            target_group: target_group.map(str::to_string),
            load_balancer: load_balancer.map(str::to_string),
            metric,
            stat,
            dimensions: query_dimensions(metric),
        }
    }

    /// The same series asked for over another dimension set (a rate's
    /// denominator must count the same requests as its numerator).
    pub fn with_dimensions(mut self, dimensions: Dimensions) -> SeriesKey {
        self.dimensions = dimensions;
        self
    }

    /// The CloudWatch dimensions, or why this series cannot be asked for
    /// honestly: a set AWS does not publish, or a value not known.
    pub fn cloudwatch_dimensions(&self) -> Result<Vec<Dimension>, String> {
        let name = self.metric.cloudwatch_name();
        if !published_dimensions(self.metric).contains(&self.dimensions) {
            return Err(format!(
                "AWS does not publish {name} per {}; such a query would always be empty",
                self.dimensions.names().join(", ")
            ));
        }
        self.dimensions
            .names()
            .iter()
            .map(|&dim| {
                let value = match dim {
                    "TargetGroup" => self.target_group.as_deref(),
                    _ => self.load_balancer.as_deref(),
                };
                let what = if dim == "TargetGroup" { "target group" } else { "load balancer" };
                value.map(|v| Dimension::builder().name(dim).value(v).build()).ok_or_else(|| {
                    format!(
                        "{name} exists only per {}, and the {what} of {} is not known",
                        self.dimensions.names().join(", "),
                        self.environment
                    )
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub environment: String,
    pub metric: Metric,
    pub stat: String,
    /// The dimension names the series was asked for with.
    pub dimensions: Vec<String>,
    /// Oldest first: (seconds since the epoch, value).
    pub points: Vec<(i64, f64)>,
    /// Why the series was not asked for (`points` empty, which is not "no
    /// data"), or why its reading failed (GetMetricData's status not
    /// `Complete`: `points` may stop short).
    pub error: Option<String>,
}

/// The series cutover shows for each environment with an ALB.
pub fn default_series(environment: &str, target_group: Option<&str>, load_balancer: Option<&str>) -> Vec<SeriesKey> {
    [
        (Metric::RequestCount, Stat::Sum),
        (Metric::Target5xx, Stat::Sum),
        (Metric::Elb5xx, Stat::Sum),
        (Metric::TargetResponseTime, Stat::Average),
        (Metric::HealthyHostCount, Stat::Average),
        (Metric::UnhealthyHostCount, Stat::Average),
    ]
    .into_iter()
    .map(|(metric, stat)| SeriesKey::new(environment, target_group, load_balancer, metric, stat))
    .collect()
}

/// Every series over the last `window`, in one GetMetricData call (pages
/// followed; 500 queries at most per call). A series that cannot be asked for
/// honestly is not sent: it comes back with its `error` and no points.
pub async fn metric_series(
    cw: &aws_sdk::cloudwatch::Client,
    keys: &[SeriesKey],
    window: Duration,
    period_secs: i32,
) -> AwsResult<Vec<Series>> {
    let now = SystemTime::now();
    metric_series_between(cw, keys, now - window, now + Duration::from_secs(60), period_secs).await
}

/// GetMetricData takes at most this many queries in one call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// A period that plots `[start, end)` in at most about `points` datapoints a
/// series and that CloudWatch answers for data that old (GetMetricData,
/// MetricStat.Period): a multiple of 60 s while the start is less than 15
/// days before `now`, of 300 s up to 63 days, of 3600 s beyond; another
/// period returns no datapoints there.
pub fn plot_period(start: SystemTime, end: SystemTime, now: SystemTime, points: u64) -> i32 {
    const DAY: u64 = 86_400;
    let age = now.duration_since(start).unwrap_or_default().as_secs();
    let unit = match age {
        a if a < 15 * DAY => 60,
        a if a < 63 * DAY => 300,
        _ => 3600,
    };
    let span = end.duration_since(start).unwrap_or_default().as_secs().max(1);
    let period = span.div_ceil(points.max(1)).div_ceil(unit).max(1) * unit;
    i32::try_from(period).unwrap_or(i32::MAX / 3600 * 3600)
}

/// Every series in `[start, end)` at `period_secs`: one GetMetricData call per
/// 500 queries, pages followed. A series that cannot be asked for honestly is
/// not sent: it comes back with its `error` and no points.
pub async fn metric_series_between(
    cw: &aws_sdk::cloudwatch::Client,
    keys: &[SeriesKey],
    start: SystemTime,
    end: SystemTime,
    period_secs: i32,
) -> AwsResult<Vec<Series>> {
    let dimensions: Vec<Result<Vec<Dimension>, String>> = keys.iter().map(SeriesKey::cloudwatch_dimensions).collect();
    let queries: Vec<MetricDataQuery> = keys
        .iter()
        .zip(&dimensions)
        .enumerate()
        .filter_map(|(i, (k, dims))| {
            let dims = dims.as_ref().ok()?.clone();
            Some(stat_query(format!("q{i}"), k, dims, k.stat.cloudwatch_name(), period_secs))
        })
        .collect();
    let mut points = BTreeMap::new();
    for chunk in queries.chunks(MAX_QUERIES_PER_CALL) {
        points.extend(data_points(cw, chunk, start, end).await?);
    }
    Ok(keys
        .iter()
        .zip(dimensions)
        .enumerate()
        .map(|(i, (k, dims))| {
            let answer = points.remove(&format!("q{i}")).unwrap_or_default();
            let mut pts = answer.points;
            pts.sort_by_key(|p| p.0);
            Series {
                environment: k.environment.clone(),
                metric: k.metric,
                stat: k.stat.cloudwatch_name(),
                dimensions: k.dimensions.names().iter().map(|n| n.to_string()).collect(),
                points: pts,
                error: dims.err().or(answer.failed),
            }
        })
        .collect())
}

/// One statistic over a whole window, with what it was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Total {
    /// The statistic over the window; `None`: no datapoint in it.
    pub value: Option<f64>,
    /// Samples behind it (for TargetResponseTime: requests); `None` with no data.
    pub samples: Option<f64>,
    /// Why the series was not asked for (see [`SeriesKey::cloudwatch_dimensions`]).
    pub error: Option<String>,
}

/// The window `[start, end)` as CloudWatch takes it: the start rounded down to
/// the minute, an end at least a second later (CloudWatch refuses a
/// StartTime equal to EndTime, as a gate measured in the first second of a
/// minute would ask), and one period, a multiple of 60 s, spanning it.
pub fn whole_window(start: SystemTime, end: SystemTime) -> (SystemTime, SystemTime, i32) {
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let start_s = secs(start) / 60 * 60;
    let span = secs(end).saturating_sub(start_s).max(1);
    let period = span.div_ceil(60) * 60;
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(start_s);
    let end = if secs(end) > start_s { end } else { start + Duration::from_secs(1) };
    (start, end, i32::try_from(period).unwrap_or(i32::MAX / 60 * 60))
}

fn stat_query(id: String, key: &SeriesKey, dims: Vec<Dimension>, stat: String, period: i32) -> MetricDataQuery {
    let metric = CwMetric::builder()
        .namespace("AWS/ApplicationELB")
        .metric_name(key.metric.cloudwatch_name())
        .set_dimensions(Some(dims))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(MetricStat::builder().metric(metric).period(period).stat(stat).build())
        .build()
}

/// What GetMetricData answered for one query: its datapoints, or why they
/// are not the whole answer.
#[derive(Debug, Default)]
struct Answer {
    points: Vec<(i64, f64)>,
    /// Its last page's status when not `Complete` (`InternalError`,
    /// `Forbidden`, `PartialData` with no page left), or no result at all.
    failed: Option<String>,
}

/// Every query's datapoints in `[start, end)`, by query id: one GetMetricData
/// call, its pages followed. A result whose last status is not `Complete`
/// (AWS: "InternalError indicates that an error occurred"; a call over its
/// limits still answers "as much as possible") or that never came back is
/// `failed`: read as no data, a failed 5xx series would pass a gate as zero.
/// No queries, no call.
async fn data_points(
    cw: &aws_sdk::cloudwatch::Client,
    queries: &[MetricDataQuery],
    start: SystemTime,
    end: SystemTime,
) -> AwsResult<BTreeMap<String, Answer>> {
    let mut answers: BTreeMap<String, Answer> = BTreeMap::new();
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    let mut messages: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    while !queries.is_empty() {
        let resp = cw
            .get_metric_data()
            .set_metric_data_queries(Some(queries.to_vec()))
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .set_next_token(next.clone())
            .send()
            .await
            .map_err(|e| sdk_error("GetMetricData", e))?;
        let said = |m: &[aws_sdk::cloudwatch::types::MessageData]| {
            m.iter().map(|m| format!("{}: {}", m.code().unwrap_or("?"), m.value().unwrap_or(""))).collect::<Vec<_>>()
        };
        messages.extend(said(resp.messages()));
        for r in resp.metric_data_results() {
            let id = r.id().unwrap_or_default().to_string();
            let entry = answers.entry(id.clone()).or_default();
            entry.points.extend(r.timestamps().iter().map(|t| t.secs()).zip(r.values().iter().copied()));
            let code = r.status_code().map_or("no status", |c| c.as_str());
            let extra = said(r.messages());
            status
                .insert(id, if extra.is_empty() { code.to_string() } else { format!("{code} ({})", extra.join("; ")) });
        }
        next = resp.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    let also = if messages.is_empty() { String::new() } else { format!("; the call said: {}", messages.join("; ")) };
    for q in queries {
        let id = q.id().unwrap_or_default();
        let answer = answers.entry(id.to_string()).or_default();
        answer.failed = match status.get(id).map(String::as_str) {
            Some("Complete") => None,
            Some(code) => Some(format!("GetMetricData answered {code} for this series{also}")),
            None => Some(format!("GetMetricData returned no result for this series{also}")),
        };
    }
    Ok(answers)
}

/// Every key's statistic over the whole window `[start, end)`, as one period
/// (a percentile over the soak, not the worst minute's), with its sample
/// count; and, per key, when its newest one-minute datapoint ends (what the
/// data covers so far: ALB datapoints arrive minutes late). One call.
pub async fn metric_totals(
    cw: &aws_sdk::cloudwatch::Client,
    keys: &[SeriesKey],
    start: SystemTime,
    end: SystemTime,
) -> AwsResult<(Vec<Total>, Vec<Option<SystemTime>>)> {
    let (start, end, period) = whole_window(start, end);
    let dimensions: Vec<Result<Vec<Dimension>, String>> = keys.iter().map(SeriesKey::cloudwatch_dimensions).collect();
    let mut queries = Vec::new();
    for (i, (k, dims)) in keys.iter().zip(&dimensions).enumerate() {
        let Ok(dims) = dims else { continue };
        queries.push(stat_query(format!("v{i}"), k, dims.clone(), k.stat.cloudwatch_name(), period));
        queries.push(stat_query(format!("n{i}"), k, dims.clone(), "SampleCount".into(), 60));
    }
    let mut points = data_points(cw, &queries, start, end).await?;
    let mut totals = Vec::new();
    let mut covers = Vec::new();
    for (i, dims) in dimensions.into_iter().enumerate() {
        let values = points.remove(&format!("v{i}")).unwrap_or_default();
        let minutes = points.remove(&format!("n{i}")).unwrap_or_default();
        let failed = values.failed.or(minutes.failed);
        let (values, minutes) = (values.points, minutes.points);
        let samples = (!minutes.is_empty()).then(|| minutes.iter().map(|p| p.1).sum());
        // One period spans the window: more than one value would be a second
        // period past `end`, which cannot hold data.
        totals.push(Total { value: values.first().map(|p| p.1), samples, error: dims.err().or(failed) });
        let newest = minutes.iter().map(|p| p.0).max();
        covers.push(newest.map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64 + 60)));
    }
    Ok((totals, covers))
}

/// Whether a metric with these dimensions is one of the side's: an ALB
/// metric whose every `LoadBalancer` and `TargetGroup` dimension is the
/// side's. One in common is not enough: on a load balancer both sides share,
/// `{TargetGroup=old, LoadBalancer=shared}` watches the old side only.
///
/// A metric cutover knows must also carry a dimension set AWS publishes it
/// under: on any other (`HTTPCode_ELB_5XX_Count` per target group, a metric
/// of one AZ) the alarm reads no data, or a part of the side's, and never
/// sees the side's failures.
fn watches_side(
    namespace: Option<&str>,
    metric: Option<&str>,
    dims: &[(&str, &str)],
    load_balancers: &[String],
    target_groups: &[String],
) -> bool {
    let published = metric.and_then(Metric::from_cloudwatch_name).is_none_or(|m| published_with(m, dims));
    let mut named = dims.iter().filter(|(n, _)| matches!(*n, "LoadBalancer" | "TargetGroup")).peekable();
    namespace == Some("AWS/ApplicationELB")
        && published
        && named.peek().is_some()
        && named.all(|(n, v)| match *n {
            "LoadBalancer" => load_balancers.iter().any(|l| l == v),
            _ => target_groups.iter().any(|t| t == v),
        })
}

/// Metric alarms in the AWS/ApplicationELB namespace whose load-balancer
/// and target-group dimensions are all `load_balancers` or `target_groups`
/// (ARN suffixes, the dimension values): what a side watches. DescribeAlarms, every page (AWS returns at
/// most 100 alarms per page).
pub async fn alarms_watching(
    cw: &aws_sdk::cloudwatch::Client,
    load_balancers: &[String],
    target_groups: &[String],
) -> AwsResult<Vec<crate::analysis::parity::WatchingAlarm>> {
    let mut out = Vec::new();
    let mut pages = cw.describe_alarms().alarm_types(AlarmType::MetricAlarm).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeAlarms", e))?;
        for a in page.metric_alarms() {
            let of_side =
                |namespace: Option<&str>, metric: Option<&str>, dims: &[aws_sdk::cloudwatch::types::Dimension]| {
                    let dims: Vec<(&str, &str)> = dims.iter().filter_map(|d| Some((d.name()?, d.value()?))).collect();
                    watches_side(namespace, metric, &dims, load_balancers, target_groups)
                };
            // Its own metric, or (a metric-math alarm) each metric its queries read.
            let mut metrics: Vec<String> = Vec::new();
            if of_side(a.namespace(), a.metric_name(), a.dimensions()) {
                metrics.extend(a.metric_name().map(str::to_string));
            }
            for m in a.metrics().iter().filter_map(|q| q.metric_stat()).filter_map(|s| s.metric()) {
                if of_side(m.namespace(), m.metric_name(), m.dimensions()) {
                    metrics.extend(m.metric_name().map(str::to_string));
                }
            }
            metrics.sort();
            metrics.dedup();
            if !metrics.is_empty() {
                out.push(crate::analysis::parity::WatchingAlarm {
                    name: a.alarm_name().unwrap_or_default().to_string(),
                    metrics,
                    actions_enabled: a.actions_enabled().unwrap_or(true),
                    notifying_actions: a.alarm_actions().iter().filter(|arn| notifies(arn)).count(),
                    // As an alarm gate reads it: one CloudWatch leaves
                    // unjudged tells no one either.
                    never_fires: alarm_never_fires(a).or_else(|| sub_minute_on_alb(a)).or_else(|| unevaluated(a)),
                    judges: judges(a),
                });
            }
        }
    }
    Ok(out)
}

/// How a metric alarm judges its own metric, for parity: statistic,
/// comparison, threshold, and M of N periods (`Sum > 5, 1 of 1 × 60 s`).
/// None for a metric-math alarm, whose expression is not compared.
fn judges(a: &aws_sdk::cloudwatch::types::MetricAlarm) -> Option<String> {
    a.metric_name()?;
    let stat = a.statistic().map(|s| s.as_str().to_string()).or(a.extended_statistic().map(str::to_string))?;
    let op = match a.comparison_operator()?.as_str() {
        "GreaterThanThreshold" => ">",
        "GreaterThanOrEqualToThreshold" => ">=",
        "LessThanThreshold" => "<",
        "LessThanOrEqualToThreshold" => "<=",
        other => other,
    };
    let n = a.evaluation_periods().unwrap_or(1);
    let m = a.datapoints_to_alarm().unwrap_or(n);
    let threshold = a.threshold().map_or_else(|| "?".to_string(), |t| t.to_string());
    Some(format!("{stat} {op} {threshold}, {m} of {n} × {} s", a.period().unwrap_or(0)))
}

/// Whether an alarm action tells a person: an SNS topic, a Systems Manager
/// OpsItem or incident, a Lambda function; not an Auto Scaling policy
/// (`arn:aws:autoscaling:`) or an EC2 action (`arn:aws:automate:`).
fn notifies(arn: &str) -> bool {
    let service = arn.split(':').nth(2).unwrap_or_default();
    matches!(service, "sns" | "ssm" | "ssm-incidents" | "lambda")
}

/// The side a series is read through: its environment's.
fn key_side(k: &SeriesKey) -> Side {
    Side::Environment(k.environment.clone())
}

/// [`metric_series`] with each series read in its environment's account and
/// region (one call per distinct side), in the order of `keys`.
pub async fn metric_series_by_side(
    sides: &SideClients,
    keys: &[SeriesKey],
    window: Duration,
    period_secs: i32,
) -> AwsResult<Vec<Series>> {
    let mut out: Vec<Option<Series>> = vec![None; keys.len()];
    for (clients, idx) in sides.group(&keys.iter().map(key_side).collect::<Vec<_>>()) {
        let part: Vec<SeriesKey> = idx.iter().map(|&i| keys[i].clone()).collect();
        for (i, s) in idx.into_iter().zip(metric_series(&clients.cloudwatch, &part, window, period_secs).await?) {
            out[i] = Some(s);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// [`metric_series_between`] with each series read in its environment's
/// account and region (one call per distinct side), in the order of `keys`.
pub async fn metric_series_between_by_side(
    sides: &SideClients,
    keys: &[SeriesKey],
    start: SystemTime,
    end: SystemTime,
    period_secs: i32,
) -> AwsResult<Vec<Series>> {
    let mut out: Vec<Option<Series>> = vec![None; keys.len()];
    for (clients, idx) in sides.group(&keys.iter().map(key_side).collect::<Vec<_>>()) {
        let part: Vec<SeriesKey> = idx.iter().map(|&i| keys[i].clone()).collect();
        let got = metric_series_between(&clients.cloudwatch, &part, start, end, period_secs).await?;
        for (i, s) in idx.into_iter().zip(got) {
            out[i] = Some(s);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// [`metric_totals`] with each key read in its environment's account and
/// region, in the order of `keys`.
pub async fn metric_totals_by_side(
    sides: &SideClients,
    keys: &[SeriesKey],
    start: SystemTime,
    end: SystemTime,
) -> AwsResult<(Vec<Total>, Vec<Option<SystemTime>>)> {
    let mut totals: Vec<Option<Total>> = vec![None; keys.len()];
    let mut covers: Vec<Option<SystemTime>> = vec![None; keys.len()];
    for (clients, idx) in sides.group(&keys.iter().map(key_side).collect::<Vec<_>>()) {
        let part: Vec<SeriesKey> = idx.iter().map(|&i| keys[i].clone()).collect();
        let (t, c) = metric_totals(&clients.cloudwatch, &part, start, end).await?;
        for ((i, t), c) in idx.into_iter().zip(t).zip(c) {
            totals[i] = Some(t);
            covers[i] = c;
        }
    }
    Ok((totals.into_iter().flatten().collect(), covers))
}

/// The state of every alarm of `rb`, each read in its environment's account
/// and region (an alarm naming no environment in the runbook's).
pub async fn alarm_states_by_side(sides: &SideClients, rb: &Runbook) -> AwsResult<Vec<AlarmState>> {
    let alarm_sides: Vec<Option<Side>> =
        rb.alarms.iter().map(|a| a.environment.clone().map(Side::Environment)).collect();
    let mut states = Vec::new();
    let (scoped, unscoped): (Vec<usize>, Vec<usize>) = (0..rb.alarms.len()).partition(|&i| alarm_sides[i].is_some());
    if !unscoped.is_empty() {
        let names: Vec<String> = unscoped.iter().map(|&i| rb.alarms[i].name.clone()).collect();
        states.extend(alarm_states(&sides.runbook().cloudwatch, &names).await?);
    }
    let scoped_sides: Vec<Side> = scoped.iter().filter_map(|&i| alarm_sides[i].clone()).collect();
    for (clients, idx) in sides.group(&scoped_sides) {
        let names: Vec<String> = idx.iter().map(|&j| rb.alarms[scoped[j]].name.clone()).collect();
        states.extend(alarm_states(&clients.cloudwatch, &names).await?);
    }
    // AWS finds a composite's children in the composite's own account and
    // region, where cutover reads the composite (the runbook's clients). A
    // child declared for an environment reached otherwise (validate refuses
    // its own role, profile or region; `--region` can still part them) is
    // read elsewhere: another alarm than the one the composite follows.
    for composite in rb.alarms.iter().filter(|a| a.rule.is_some()) {
        let children = composite.rule.as_deref().and_then(crate::runbook::alarm_rule_names).unwrap_or_default();
        let apart = children.iter().find_map(|c| {
            let env = rb.alarms.iter().find(|a| &a.name == c)?.environment.as_ref()?;
            (!sides.reached_as_runbook(&Side::Environment(env.clone()))).then_some((c, env))
        });
        if let Some((child, env)) = apart
            && let Some(s) = states.iter_mut().find(|s| s.name == composite.name && s.blind.is_none())
        {
            s.blind = Some(format!(
                "its child {child} is declared for {env}, which is read in another account or region than the \
                 composite (AWS finds a composite's children in its own), so cutover would judge another alarm \
                 than the one it follows; declare {child} without `environment`, or give no --region that parts \
                 {env} from the runbook's"
            ));
        }
    }
    states.sort_by_key(|s| rb.alarms.iter().position(|a| a.name == s.name));
    Ok(states)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_alarm_watches_a_side_only_when_each_of_its_alb_dimensions_is_the_sides() {
        let (lbs, new_tg) = (["app/shared/1".to_string()], ["targetgroup/new/2".to_string()]);
        let ns = Some("AWS/ApplicationELB");
        let m = Some("HTTPCode_Target_5XX_Count");
        let watches = |dims: &[(&str, &str)]| super::watches_side(ns, m, dims, &lbs, &new_tg);
        assert!(!watches(&[("TargetGroup", "targetgroup/old/1"), ("LoadBalancer", "app/shared/1")]), "the old side's");
        assert!(watches(&[("TargetGroup", "targetgroup/new/2"), ("LoadBalancer", "app/shared/1")]));
        assert!(watches(&[("LoadBalancer", "app/shared/1")]), "the shared load balancer's own: both sides'");
        assert!(!watches(&[("AvailabilityZone", "eu-west-1a")]), "no ALB dimension names the side");
        assert!(!super::watches_side(Some("AWS/EC2"), m, &[("LoadBalancer", "app/shared/1")], &lbs, &new_tg));
    }

    /// An alarm on a dimension set AWS does not publish its metric under
    /// reads no data (or one AZ's): it never sees the side's failures.
    #[test]
    fn an_alarm_watches_a_side_only_on_a_dimension_set_aws_publishes_its_metric_under() {
        let (lbs, tgs) = (["app/new/1".to_string()], ["targetgroup/new/2".to_string()]);
        let ns = Some("AWS/ApplicationELB");
        let both = [("TargetGroup", "targetgroup/new/2"), ("LoadBalancer", "app/new/1")];
        let watches = |metric: &str, dims: &[(&str, &str)]| super::watches_side(ns, Some(metric), dims, &lbs, &tgs);
        assert!(!watches("HTTPCode_ELB_5XX_Count", &both), "the load balancer's own 5xx exist per LoadBalancer only");
        assert!(watches("HTTPCode_ELB_5XX_Count", &both[1..]));
        assert!(!watches("HTTPCode_Target_5XX_Count", &both[..1]), "never per target group alone");
        assert!(watches("HTTPCode_Target_5XX_Count", &both));
        let one_zone = [("AvailabilityZone", "eu-west-1a"), ("LoadBalancer", "app/new/1")];
        assert!(!watches("HTTPCode_Target_5XX_Count", &one_zone), "one AZ's 5xx are a part of the side's");
        assert!(watches("HTTPCode_Target_4XX_Count", &both), "a metric cutover does not know: its dimensions decide");
    }

    /// An alarm CloudWatch could not evaluate (or judged on part of its
    /// data) keeps its last state: its OK is no judgement, so it is blind.
    #[test]
    fn an_alarm_whose_evaluation_failed_is_no_evidence() {
        use aws_sdk::cloudwatch::types::{EvaluationState, MetricAlarm};
        let alarm = |state: Option<&str>| {
            let a = MetricAlarm::builder().alarm_name("5xx").namespace("AWS/ApplicationELB").period(60);
            match state {
                Some(s) => a.evaluation_state(EvaluationState::from(s)).build(),
                None => a.build(),
            }
        };
        assert_eq!(super::unevaluated(&alarm(None)), None);
        for (state, says) in [
            ("EVALUATION_FAILURE", "AWS advises watching by hand"),
            ("EVALUATION_ERROR", "a fault in its set-up"),
            ("PARTIAL_DATA", "part of its data"),
            ("SOMETHING_NEW", "which cutover does not know"),
        ] {
            let why = super::unevaluated(&alarm(Some(state))).unwrap_or_default();
            assert!(why.contains(says), "{state}: {why}");
        }
    }

    /// An ALB publishes once a minute: an alarm judging 10 s periods sees no
    /// data in five evaluations of six (with notBreaching, OK through 5xx).
    #[test]
    fn an_alarm_judging_sub_minute_periods_of_an_alb_metric_is_blind() {
        use aws_sdk::cloudwatch::types::{Metric as CwMetric, MetricAlarm, MetricDataQuery, MetricStat};
        let own = |ns: &str, period: i32| {
            MetricAlarm::builder().namespace(ns).metric_name("HTTPCode_Target_5XX_Count").period(period).build()
        };
        let why = super::sub_minute_on_alb(&own("AWS/ApplicationELB", 10)).unwrap_or_default();
        assert!(why.starts_with("it judges periods of 10 s"), "{why}");
        assert_eq!(super::sub_minute_on_alb(&own("AWS/ApplicationELB", 60)), None);
        assert_eq!(super::sub_minute_on_alb(&own("Custom/App", 10)), None, "high-resolution metrics of one's own");
        let math = MetricAlarm::builder()
            .metrics(
                MetricDataQuery::builder()
                    .id("e")
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                CwMetric::builder().namespace("AWS/ApplicationELB").metric_name("RequestCount").build(),
                            )
                            .period(30)
                            .stat("Sum")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert!(super::sub_minute_on_alb(&math).is_some(), "a metric-math alarm reading one");
    }

    #[test]
    fn a_counts_average_or_a_5xx_alarm_below_its_threshold_never_fires() {
        let elb = Some("AWS/ApplicationELB");
        let judge = |metric: &str, stat: &str, op: &str, threshold: f64| {
            super::never_fires(elb, Some(metric), Some(stat), Some(op), Some(threshold))
        };
        let gt = "GreaterThanThreshold";
        // Sum counts the errors: it fires.
        assert_eq!(judge("HTTPCode_Target_5XX_Count", "Sum", gt, 5.0), None);
        // Average, Minimum, Maximum and percentiles of a count are 1.
        for stat in ["Average", "Minimum", "Maximum", "p99", "tm90", "wm99", "IQM"] {
            let why = judge("HTTPCode_Target_5XX_Count", stat, gt, 5.0).unwrap_or_default();
            assert!(why.contains(&format!("its statistic {stat} of HTTPCode_Target_5XX_Count is always 1")), "{why}");
            assert!(why.ends_with("use Sum"), "{why}");
        }
        assert!(judge("HTTPCode_ELB_5XX_Count", "Average", gt, 1.0).is_some(), "1 > 1 never holds");
        assert!(judge("RequestCount", "Maximum", "GreaterThanOrEqualToThreshold", 1.5).is_some());
        // Compared below 1, any datapoint sets it off: it fires.
        assert_eq!(judge("HTTPCode_Target_5XX_Count", "Average", gt, 0.5), None);
        assert_eq!(judge("HTTPCode_ELB_5XX_Count", "Maximum", "GreaterThanOrEqualToThreshold", 1.0), None);
        // A 5xx alarm going off below its threshold goes off on few errors.
        let why = judge("HTTPCode_ELB_5XX_Count", "Sum", "LessThanThreshold", 5.0).unwrap_or_default();
        assert!(why.starts_with("it goes off when HTTPCode_ELB_5XX_Count is below its threshold"), "{why}");
        // A request count below a threshold is a traffic drop: not judged.
        assert_eq!(judge("RequestCount", "Sum", "LessThanThreshold", 5.0), None);
        // Latency, host counts and other namespaces are not counts of requests.
        assert_eq!(judge("TargetResponseTime", "Average", gt, 5.0), None);
        // Latency is in seconds: a threshold over a minute is milliseconds by mistake.
        for stat in ["Average", "p99", "Maximum"] {
            let why = judge("TargetResponseTime", stat, gt, 1000.0).unwrap_or_default();
            assert!(why.contains("its threshold 1000 on TargetResponseTime is in seconds"), "{stat}: {why}");
        }
        assert_eq!(judge("TargetResponseTime", "p99", gt, 60.0), None, "a minute is a slow response");
        assert_eq!(judge("TargetResponseTime", "SampleCount", gt, 1000.0), None, "a count of requests");
        assert_eq!(judge("TargetResponseTime", "p99", "LessThanThreshold", 1000.0), None);
        assert_eq!(judge("HealthyHostCount", "Minimum", "LessThanThreshold", 2.0), None);
        assert_eq!(
            super::never_fires(Some("AWS/EC2"), Some("RequestCount"), Some("Average"), Some(gt), Some(5.0)),
            None
        );
    }

    /// A p99 alarm told to ignore periods with few samples keeps its OK
    /// while a canary step's 300 requests a minute answer in 4 s.
    #[test]
    fn a_percentile_alarm_that_ignores_few_samples_never_fires_on_a_first_step() {
        use aws_sdk::cloudwatch::types::{ComparisonOperator, MetricAlarm};
        let p99 = |low: Option<&str>| {
            MetricAlarm::builder()
                .namespace("AWS/ApplicationELB")
                .metric_name("TargetResponseTime")
                .extended_statistic("p99")
                .comparison_operator(ComparisonOperator::GreaterThanThreshold)
                .threshold(1.0)
                .set_evaluate_low_sample_count_percentile(low.map(str::to_string))
                .build()
        };
        let why = super::alarm_never_fires(&p99(Some("ignore"))).unwrap_or_default();
        assert!(why.contains("its p99 is left unevaluated") && why.ends_with("set it to evaluate"), "{why}");
        assert_eq!(super::alarm_never_fires(&p99(Some("evaluate"))), None);
        assert_eq!(super::alarm_never_fires(&p99(None)), None, "AWS's default evaluates");
        let average = MetricAlarm::builder()
            .namespace("AWS/ApplicationELB")
            .metric_name("TargetResponseTime")
            .statistic(aws_sdk::cloudwatch::types::Statistic::Average)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .threshold(1.0)
            .evaluate_low_sample_count_percentile("ignore")
            .build();
        assert_eq!(super::alarm_never_fires(&average), None, "the setting is for percentiles only");
    }

    #[test]
    fn only_actions_that_tell_a_person_notify() {
        assert!(super::notifies("arn:aws:sns:eu-west-1:123456789012:oncall"));
        assert!(super::notifies("arn:aws:ssm:eu-west-1:123456789012:opsitem:Severity#CATEGORY=Availability"));
        assert!(super::notifies("arn:aws:lambda:eu-west-1:123456789012:function:page"));
        assert!(!super::notifies(
            "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:1:autoScalingGroupName/web:policyName/out"
        ));
        assert!(!super::notifies("arn:aws:automate:eu-west-1:ec2:reboot"));
    }

    use super::*;

    #[test]
    fn every_metric_is_queried_with_a_dimension_set_aws_publishes() {
        use Dimensions::*;
        let queried: Vec<(Metric, Dimensions)> = Metric::ALL.iter().map(|&m| (m, query_dimensions(m))).collect();
        assert_eq!(
            queried,
            [
                (Metric::RequestCount, TargetGroupLoadBalancer),
                (Metric::Target5xx, TargetGroupLoadBalancer),
                (Metric::Elb5xx, LoadBalancer),
                (Metric::TargetResponseTime, TargetGroupLoadBalancer),
                (Metric::HealthyHostCount, TargetGroupLoadBalancer),
                (Metric::UnhealthyHostCount, TargetGroupLoadBalancer),
            ]
        );
        // The load balancer's own codes never exist per target group.
        assert!(!published_dimensions(Metric::Elb5xx).contains(&TargetGroupLoadBalancer));
        // A rate of ELB 5xx needs the load balancer's requests.
        assert!(published_dimensions(Metric::RequestCount).contains(&LoadBalancer));
        assert!(!published_dimensions(Metric::HealthyHostCount).contains(&LoadBalancer));
    }

    #[test]
    fn the_whole_window_is_one_period_of_whole_minutes_from_the_minute_it_starts() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(whole_window(t(6000), t(6001)), (t(6000), t(6001), 60));
        assert_eq!(whole_window(t(6030), t(6035)), (t(6000), t(6035), 60), "rounded down to the minute");
        assert_eq!(whole_window(t(6030), t(6090)), (t(6000), t(6090), 120), "90 s from the minute: two minutes");
        assert_eq!(whole_window(t(6000), t(6300)), (t(6000), t(6300), 300));
        assert_eq!(whole_window(t(6000), t(6000)), (t(6000), t(6001), 60), "never an empty period");
        // Asked in the first second of a minute: never an end equal to the start.
        let early = t(6000) + Duration::from_millis(400);
        assert_eq!(whole_window(early, early), (t(6000), t(6001), 60));
    }

    #[test]
    fn plot_periods_are_the_multiples_cloudwatch_answers_for_data_that_old() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let day = 86_400;
        let now = t(100 * day);
        // An hour, 15 days old at most: whole minutes, about 240 points.
        assert_eq!(plot_period(t(99 * day), t(99 * day + 3600), now, 240), 60);
        assert_eq!(plot_period(t(99 * day), t(99 * day + 6 * 3600), now, 240), 120);
        assert_eq!(plot_period(t(99 * day), t(99 * day + 10), now, 240), 60, "never under a minute");
        // 20 days ago: multiples of 5 minutes; 70 days ago: of an hour.
        assert_eq!(plot_period(t(80 * day), t(80 * day + 3600), now, 240), 300);
        assert_eq!(plot_period(t(30 * day), t(30 * day + 3600), now, 240), 3600);
        assert_eq!(plot_period(t(30 * day), t(40 * day), now, 240), 3600);
        assert_eq!(plot_period(t(30 * day), t(60 * day), now, 240), 3 * 3600, "30 days in 240 points");
    }

    fn names(dims: &[Dimension]) -> Vec<(&str, &str)> {
        dims.iter().map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default())).collect()
    }

    #[test]
    fn series_dimensions_follow_the_table() {
        let tg = Some("targetgroup/web/1");
        let lb = Some("app/alb/2");
        let elb = SeriesKey::new("new", tg, lb, Metric::Elb5xx, Stat::Sum).cloudwatch_dimensions().unwrap();
        assert_eq!(names(&elb), [("LoadBalancer", "app/alb/2")], "no TargetGroup on the ALB's own codes");
        let target = SeriesKey::new("new", tg, lb, Metric::Target5xx, Stat::Sum).cloudwatch_dimensions().unwrap();
        assert_eq!(names(&target), [("TargetGroup", "targetgroup/web/1"), ("LoadBalancer", "app/alb/2")]);
        let requests = SeriesKey::new("new", tg, lb, Metric::RequestCount, Stat::Sum)
            .with_dimensions(Dimensions::LoadBalancer)
            .cloudwatch_dimensions()
            .unwrap();
        assert_eq!(names(&requests), [("LoadBalancer", "app/alb/2")]);
    }

    #[test]
    fn a_series_aws_would_answer_empty_is_an_error_not_a_query() {
        let tg = Some("targetgroup/web/1");
        let no_lb = SeriesKey::new("new", tg, None, Metric::Elb5xx, Stat::Sum).cloudwatch_dimensions();
        assert!(matches!(&no_lb, Err(e) if e.contains("load balancer of new is not known")), "{no_lb:?}");
        let no_lb = SeriesKey::new("new", tg, None, Metric::Target5xx, Stat::Sum).cloudwatch_dimensions();
        assert!(no_lb.is_err(), "TargetGroup alone is not published: {no_lb:?}");
        let per_tg = SeriesKey::new("new", tg, Some("app/alb/2"), Metric::Elb5xx, Stat::Sum)
            .with_dimensions(Dimensions::TargetGroupLoadBalancer)
            .cloudwatch_dimensions();
        assert!(matches!(&per_tg, Err(e) if e.contains("does not publish")), "{per_tg:?}");
    }
}
