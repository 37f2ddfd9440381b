//! The CloudWatch the sandbox's proxy adds in front of moto (see `aws_proxy`):
//! - it records every datapoint PutMetricData sends through it, and answers
//!   GetMetricData queries for percentiles (`p99`) from the raw values
//!   (`Values`/`Counts`), by nearest rank, as moto cannot; every other query
//!   goes to moto;
//! - datapoints stay invisible for a configurable lag, as ALB datapoints
//!   arrive minutes late: a minute's datapoints appear together, `lag` after
//!   the minute ended (the end of every query is moved back accordingly);
//! - composite alarms (moto answers PutCompositeAlarm with 500): kept here,
//!   served by DescribeAlarms when it asks for them (`AlarmTypes`), their
//!   state set by the sandbox's alarm evaluator (`alarm_eval`);
//! - DescribeAlarmHistory (moto keeps a history it never answers): every
//!   state change made through the proxy, a metric alarm's (SetAlarmState)
//!   or a composite's, answered as AWS pages it; and DescribeAlarms can be
//!   throttled, so a reader misses what happens between its readings.
//!
//! CloudWatch speaks awsQuery: form-encoded requests, XML answers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

/// CloudWatch's API version, which tells its requests from other services'.
const VERSION: &str = "Version=2010-08-01";
const XMLNS: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";

/// One recorded datum: raw values with their counts.
#[derive(Debug, Clone)]
struct Datum {
    namespace: String,
    name: String,
    /// Sorted (name, value) pairs.
    dimensions: Vec<(String, String)>,
    at: SystemTime,
    values: Vec<(f64, f64)>,
    /// As put (`Seconds`, `Count`); None when none was given.
    unit: Option<String>,
}

/// A composite alarm the sandbox keeps itself.
#[derive(Debug, Clone)]
pub struct Composite {
    pub name: String,
    pub rule: String,
    pub description: String,
    pub state: String,
    pub reason: String,
    pub updated: SystemTime,
}

/// One change of an alarm's state, as its history keeps it.
#[derive(Debug, Clone)]
struct StateChange {
    name: String,
    composite: bool,
    at: SystemTime,
    old: String,
    new: String,
    reason: String,
}

/// The last change through the proxy of the metric alarm `named`.
fn last_metric_change(history: &[StateChange], named: impl Fn(&str) -> bool) -> Option<&StateChange> {
    history.iter().rev().find(|c| !c.composite && named(&c.name))
}

#[derive(Debug, Default)]
pub struct CloudWatchState {
    /// Datapoints newer than now − lag are not returned (milliseconds).
    pub lag_ms: AtomicU64,
    data: Mutex<Vec<Datum>>,
    composites: Mutex<BTreeMap<String, Composite>>,
    /// Metric names whose GetMetricData results come back `InternalError`
    /// with no datapoints, as AWS answers a query it failed (moto never does).
    failing: Mutex<std::collections::BTreeSet<String>>,
    /// At most this many alarms a DescribeAlarms page whatever MaxRecords
    /// asks (0: MaxRecords rules): AWS may answer fewer than asked, with a
    /// NextToken, and a reader must follow it.
    alarm_page_cap: AtomicU64,
    /// Every state change made through the proxy, oldest first.
    history: Mutex<Vec<StateChange>>,
    /// DescribeAlarms answered `Throttling` (the SDK's retries too), as AWS
    /// answers a reader over its rate.
    pub throttle_alarm_reads: AtomicBool,
    /// DescribeAlarmHistory refused (AccessDenied), as for credentials
    /// without `cloudwatch:DescribeAlarmHistory`.
    pub deny_alarm_history: AtomicBool,
}

/// What the proxy does with a request.
pub enum Handling {
    /// Send this body to moto, then pass the answer to `finish`.
    Forward(Vec<u8>, Finish),
    /// Answer this XML without asking moto.
    Answer(String),
    /// Refuse the request as AWS does (400): this error document.
    Refuse(String),
}

/// What to add to moto's answer.
pub enum Finish {
    Nothing,
    /// Percentile results to put into GetMetricData's answer.
    MetricResults(String),
    /// SetAlarmState taken by moto: the change goes into the history.
    StateSet {
        name: String,
        state: String,
        reason: String,
    },
    /// DescribeAlarms' answer as AWS pages it (moto answers every alarm at
    /// once): the composite alarms to put in, then the alarms from `offset`,
    /// at most `max`, with a NextToken when more are left.
    Alarms {
        composites: String,
        offset: usize,
        max: usize,
    },
}

/// DescribeAlarms' page size when MaxRecords is not given. AWS documents
/// only the range (1 to 100); 50 is what its other CloudWatch lists use.
const ALARMS_PAGE: usize = 50;

/// DescribeAlarmHistory's page size when MaxRecords is not given (AWS
/// documents only the range, 1 to 100).
const HISTORY_PAGE: usize = 50;

type Form = Vec<(String, String)>;

fn get<'a>(form: &'a Form, key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `prefix.member.N.rest` grouped by N, in order.
fn members(form: &Form, prefix: &str) -> BTreeMap<u32, Form> {
    let mut out: BTreeMap<u32, Form> = BTreeMap::new();
    let head = format!("{prefix}.member.");
    for (k, v) in form {
        if let Some(rest) = k.strip_prefix(&head)
            && let Some((n, field)) = rest.split_once('.').or(Some((rest, "")))
            && let Ok(n) = n.parse::<u32>()
        {
            out.entry(n).or_default().push((field.to_string(), v.clone()));
        }
    }
    out
}

fn list(form: &Form, prefix: &str) -> Vec<String> {
    members(form, prefix).into_values().filter_map(|m| get(&m, "").map(str::to_string)).collect()
}

fn dimensions(form: &Form, prefix: &str) -> Vec<(String, String)> {
    let mut dims: Vec<(String, String)> = members(form, prefix)
        .into_values()
        .filter_map(|m| Some((get(&m, "Name")?.to_string(), get(&m, "Value")?.to_string())))
        .collect();
    dims.sort();
    dims
}

fn time(s: &str) -> Option<SystemTime> {
    SystemTime::try_from(DateTime::from_str(s, Format::DateTime).ok()?).ok()
}

fn iso(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `pNN` or `pNN.N`: the percentile asked for.
fn percentile(stat: &str) -> Option<f64> {
    let p: f64 = stat.strip_prefix('p')?.parse().ok()?;
    (p > 0.0 && p <= 100.0).then_some(p)
}

/// Nearest rank: the smallest value with at least ⌈p/100 × n⌉ values at or
/// below it, counting each value `count` times.
pub fn nearest_rank(values: &[(f64, f64)], p: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, f64)> = values.iter().copied().filter(|v| v.1 > 0.0).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n: f64 = sorted.iter().map(|v| v.1).sum();
    if n <= 0.0 {
        return None;
    }
    let rank = (p / 100.0 * n).ceil().max(1.0);
    let mut seen = 0.0;
    for (v, c) in &sorted {
        seen += c;
        if seen >= rank {
            return Some(*v);
        }
    }
    sorted.last().map(|v| v.0)
}

impl CloudWatchState {
    pub fn lag(&self) -> Duration {
        Duration::from_millis(self.lag_ms.load(Ordering::SeqCst))
    }

    pub fn set_lag(&self, lag: Duration) {
        self.lag_ms.store(lag.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers DescribeAlarms at most `n` alarms a page.
    pub fn cap_alarm_pages(&self, n: u64) {
        self.alarm_page_cap.store(n, Ordering::SeqCst);
    }

    /// Makes every GetMetricData result for metric `name` an `InternalError`.
    pub fn fail_metric(&self, name: &str) {
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
    }

    /// The composite alarms, by name.
    pub fn composites(&self) -> BTreeMap<String, Composite> {
        self.composites.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets a composite alarm's state (the evaluator's verdict).
    pub fn set_composite_state(&self, name: &str, state: &str, reason: &str) {
        let mut all = self.composites.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = all.get_mut(name)
            && c.state != state
        {
            self.changed(name, true, &c.state, state, reason);
            c.state = state.to_string();
            c.reason = reason.to_string();
            c.updated = SystemTime::now();
        }
    }

    /// A state change into the history; the same state again is none, as
    /// on AWS.
    fn changed(&self, name: &str, composite: bool, old: &str, new: &str, reason: &str) {
        if old == new {
            return;
        }
        self.history.lock().unwrap_or_else(|e| e.into_inner()).push(StateChange {
            name: name.to_string(),
            composite,
            at: SystemTime::now(),
            old: old.to_string(),
            new: new.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Each metric alarm of a DescribeAlarms answer with the time its state
    /// last changed through the proxy (`StateTransitionedTimestamp`, which
    /// AWS sends; moto's `StateUpdatedTimestamp` moves on a SetAlarmState of
    /// the state it already has, which changes nothing on AWS).
    fn with_transitions(&self, xml: &str) -> String {
        let (members, span) = top_members(xml, "MetricAlarms");
        let Some((start, end)) = span else { return xml.to_string() };
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let close = "</StateUpdatedTimestamp>";
        let rebuilt: String = members
            .iter()
            .map(|m| {
                let name = m.split_once("<AlarmName>").and_then(|(_, r)| r.split_once("</AlarmName>")).map(|(n, _)| n);
                // As the answer writes it: escaped.
                let last = name.and_then(|n| last_metric_change(&history, |c| escape(c) == n));
                match (last, m.find(close)) {
                    (Some(c), Some(i)) => {
                        let (head, tail) = m.split_at(i + close.len());
                        format!("{head}<StateTransitionedTimestamp>{}</StateTransitionedTimestamp>{tail}", iso(c.at))
                    }
                    _ => m.to_string(),
                }
            })
            .collect();
        format!("{}{rebuilt}{}", &xml[..start], &xml[end..])
    }

    /// A metric alarm's state set through SetAlarmState: its state before is
    /// the last the history has, else INSUFFICIENT_DATA (a new alarm's on
    /// AWS, which the sandbox sets each alarm it makes to).
    fn state_set(&self, name: &str, state: &str, reason: &str) {
        let old = {
            let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            last_metric_change(&history, |c| c == name).map(|c| c.new.clone())
        };
        self.changed(name, false, old.as_deref().unwrap_or("INSUFFICIENT_DATA"), state, reason);
    }

    /// DescribeAlarmHistory as AWS answers it: one alarm's or all, metric
    /// alarms only unless `AlarmTypes` asks for composites, between
    /// `StartDate` and `EndDate`, newest first unless `ScanBy` says
    /// otherwise, in pages.
    fn describe_alarm_history(&self, form: &Form) -> Handling {
        let types = list(form, "AlarmTypes");
        let (metric, composite) = match types.is_empty() {
            true => (true, false),
            false => (types.iter().any(|t| t == "MetricAlarm"), types.iter().any(|t| t == "CompositeAlarm")),
        };
        let name = get(form, "AlarmName");
        let kind = get(form, "HistoryItemType");
        let (start, end) = (get(form, "StartDate").and_then(time), get(form, "EndDate").and_then(time));
        let mut items: Vec<StateChange> = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|c| name.is_none_or(|n| c.name == n))
            .filter(|c| if c.composite { composite } else { metric })
            .filter(|_| kind.is_none_or(|k| k == "StateUpdate"))
            .filter(|c| start.is_none_or(|t| c.at >= t) && end.is_none_or(|t| c.at <= t))
            .cloned()
            .collect();
        if get(form, "ScanBy") != Some("TimestampAscending") {
            items.reverse();
        }
        let max = get(form, "MaxRecords").and_then(|m| m.parse().ok()).unwrap_or(HISTORY_PAGE).clamp(1, 100);
        let offset: usize =
            get(form, "NextToken").and_then(|t| t.strip_prefix("sandbox-history-")?.parse().ok()).unwrap_or(0);
        let members: String = items
            .iter()
            .skip(offset)
            .take(max)
            .map(|c| {
                let data = serde_json::json!({
                    "version": "1.0",
                    "oldState": { "stateValue": c.old },
                    "newState": { "stateValue": c.new, "stateReason": c.reason },
                });
                format!(
                    "<member><AlarmName>{n}</AlarmName><AlarmType>{t}</AlarmType><Timestamp>{at}</Timestamp><HistoryItemType>StateUpdate</HistoryItemType><HistorySummary>Alarm updated from {old} to {new}</HistorySummary><HistoryData>{d}</HistoryData></member>",
                    n = escape(&c.name),
                    t = if c.composite { "CompositeAlarm" } else { "MetricAlarm" },
                    at = iso(c.at),
                    old = c.old,
                    new = c.new,
                    d = escape(&data.to_string())
                )
            })
            .collect();
        let next = match offset + max < items.len() {
            true => format!("<NextToken>sandbox-history-{}</NextToken>", offset + max),
            false => String::new(),
        };
        Handling::Answer(format!(
            "<DescribeAlarmHistoryResponse xmlns=\"{XMLNS}\"><DescribeAlarmHistoryResult><AlarmHistoryItems>{members}</AlarmHistoryItems>{next}</DescribeAlarmHistoryResult><ResponseMetadata><RequestId>sandbox-history</RequestId></ResponseMetadata></DescribeAlarmHistoryResponse>"
        ))
    }

    /// How the proxy treats `body`; `None` when it is no CloudWatch request
    /// this module changes.
    pub fn handle(&self, body: &[u8]) -> Option<Handling> {
        let text = std::str::from_utf8(body).ok()?;
        if !text.contains(VERSION) {
            return None;
        }
        let form: Form = url::form_urlencoded::parse(body).into_owned().collect();
        match get(&form, "Action")? {
            "PutMetricData" => {
                self.record(&form);
                None
            }
            "GetMetricData" => Some(self.get_metric_data(form)),
            "PutCompositeAlarm" => Some(self.put_composite(&form)),
            "DescribeAlarms" if self.throttle_alarm_reads.load(Ordering::SeqCst) => Some(Handling::Refuse(format!(
                "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>sandbox-throttled</RequestId></ErrorResponse>"
            ))),
            "DescribeAlarms" => Some(self.describe_alarms(form)),
            "DescribeAlarmHistory" if self.deny_alarm_history.load(Ordering::SeqCst) => {
                Some(Handling::Refuse(format!(
                    "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: cloudwatch:DescribeAlarmHistory</Message></Error><RequestId>sandbox-denied</RequestId></ErrorResponse>"
                )))
            }
            "DescribeAlarmHistory" => Some(self.describe_alarm_history(&form)),
            "SetAlarmState" => {
                let field = |k: &str| get(&form, k).unwrap_or_default().to_string();
                let set = Finish::StateSet {
                    name: field("AlarmName"),
                    state: field("StateValue"),
                    reason: field("StateReason"),
                };
                Some(Handling::Forward(body.to_vec(), set))
            }
            _ => None,
        }
    }

    fn record(&self, form: &Form) {
        let namespace = get(form, "Namespace").unwrap_or_default().to_string();
        let now = SystemTime::now();
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        // A sandbox runs for hours at most: keep three.
        data.retain(|d| now.duration_since(d.at).unwrap_or_default() < Duration::from_secs(3 * 3600));
        for m in members(form, "MetricData").into_values() {
            let num = |s: Option<&str>| s.and_then(|v| v.parse::<f64>().ok());
            let raw: Vec<f64> = list(&m, "Values").iter().filter_map(|v| v.parse().ok()).collect();
            let counts: Vec<f64> = list(&m, "Counts").iter().filter_map(|v| v.parse().ok()).collect();
            let values: Vec<(f64, f64)> = if !raw.is_empty() {
                raw.iter().enumerate().map(|(i, v)| (*v, counts.get(i).copied().unwrap_or(1.0))).collect()
            } else if let Some(v) = num(get(&m, "Value")) {
                vec![(v, 1.0)]
            } else {
                // A statistic set has no raw values: no percentile from it, as on AWS.
                continue;
            };
            data.push(Datum {
                namespace: namespace.clone(),
                name: get(&m, "MetricName").unwrap_or_default().to_string(),
                dimensions: dimensions(&m, "Dimensions"),
                at: get(&m, "Timestamp").and_then(time).unwrap_or(now),
                values,
                unit: get(&m, "Unit").map(str::to_string),
            });
        }
    }

    /// The end of any query: what has arrived by now. With a lag, as an
    /// ALB's: a minute's datapoints arrive together, `lag` after it ended, so
    /// the visible data ends at the start of the minute `now − lag` is in.
    fn visible_end(&self, end: SystemTime) -> SystemTime {
        let now = SystemTime::now();
        let lag = self.lag();
        if lag.is_zero() {
            return end.min(now);
        }
        let secs = (now - lag).duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        end.min(SystemTime::UNIX_EPOCH + Duration::from_secs(secs / 60 * 60))
    }

    /// What AWS refuses in a GetMetricData that moto takes: more than 500
    /// queries, and a period that is not 1, 5, 10, 30 or a multiple of 60
    /// seconds (GetMetricData, MetricDataQueries and MetricStat.Period).
    fn refusal(form: &Form) -> Option<String> {
        let queries = members(form, "MetricDataQueries");
        let error = |code: &str, message: String| {
            Some(format!(
                "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>sandbox-validation</RequestId></ErrorResponse>",
                escape(&message)
            ))
        };
        if queries.len() > 500 {
            return error(
                "ValidationError",
                format!(
                    "1 validation error detected: Value with {} members at 'metricDataQueries' failed to satisfy constraint: Member must have length less than or equal to 500",
                    queries.len()
                ),
            );
        }
        for (n, q) in &queries {
            let Some(period) = get(q, "MetricStat.Period") else { continue };
            let ok = period.parse::<i64>().is_ok_and(|p| [1, 5, 10, 30].contains(&p) || (p >= 60 && p % 60 == 0));
            if !ok {
                return error(
                    "InvalidParameterValue",
                    format!("The parameter MetricDataQueries.member.{n}.MetricStat.Period must be a multiple of 60."),
                );
            }
        }
        None
    }

    fn get_metric_data(&self, form: Form) -> Handling {
        if let Some(xml) = Self::refusal(&form) {
            return Handling::Refuse(xml);
        }
        let start = get(&form, "StartTime").and_then(time);
        let end = get(&form, "EndTime").and_then(time);
        let (Some(start), Some(end)) = (start, end) else {
            return Handling::Forward(encode(&form), Finish::Nothing);
        };
        let visible = self.visible_end(end);
        let queries = members(&form, "MetricDataQueries");
        let mut ours = String::new();
        let mut rest: Form =
            form.iter().filter(|(k, _)| !k.starts_with("MetricDataQueries.") && k != "EndTime").cloned().collect();
        // moto keeps every datapoint before EndTime; hide the lagging ones.
        // EndTime must stay after StartTime: an empty window is a second long.
        let moto_end = if visible > start { visible } else { start + Duration::from_secs(1) };
        rest.push(("EndTime".into(), iso(moto_end)));
        let mut forwarded = 0;
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for q in queries.into_values() {
            let name = get(&q, "MetricStat.Metric.MetricName").unwrap_or_default();
            if failing.contains(name) {
                ours.push_str(&format!(
                    "<member><Id>{}</Id><Label>{}</Label><StatusCode>InternalError</StatusCode><Timestamps/><Values/></member>",
                    escape(get(&q, "Id").unwrap_or_default()),
                    escape(name)
                ));
                continue;
            }
            match get(&q, "MetricStat.Stat").and_then(percentile) {
                Some(p) => ours.push_str(&self.percentile_result(&q, p, start, end, visible)),
                // Nothing has arrived since `start`: no datapoint, never what
                // moto holds in the second its window would take.
                None if visible <= start => ours.push_str(&format!(
                    "<member><Id>{}</Id><Label>{}</Label><StatusCode>Complete</StatusCode><Timestamps/><Values/></member>",
                    escape(get(&q, "Id").unwrap_or_default()),
                    escape(name)
                )),
                None => {
                    forwarded += 1;
                    rest.extend(q.into_iter().map(|(k, v)| (format!("MetricDataQueries.member.{forwarded}.{k}"), v)));
                }
            }
        }
        if forwarded == 0 {
            return Handling::Answer(format!(
                "<GetMetricDataResponse xmlns=\"{XMLNS}\"><GetMetricDataResult><MetricDataResults>{ours}</MetricDataResults><Messages/></GetMetricDataResult><ResponseMetadata><RequestId>sandbox-percentiles</RequestId></ResponseMetadata></GetMetricDataResponse>"
            ));
        }
        Handling::Forward(encode(&rest), if ours.is_empty() { Finish::Nothing } else { Finish::MetricResults(ours) })
    }

    /// One query's `<member>`: its percentile per period from `start`, as moto
    /// buckets the others (periods with no value are left out).
    fn percentile_result(&self, q: &Form, p: f64, start: SystemTime, end: SystemTime, visible: SystemTime) -> String {
        let id = get(q, "Id").unwrap_or_default();
        let namespace = get(q, "MetricStat.Metric.Namespace").unwrap_or_default();
        let name = get(q, "MetricStat.Metric.MetricName").unwrap_or_default();
        let dims = dimensions(q, "MetricStat.Metric.Dimensions");
        let period = Duration::from_secs(get(q, "MetricStat.Period").and_then(|v| v.parse().ok()).unwrap_or(60).max(1));
        // A unit asked for finds only data put in it, as on AWS.
        let unit = get(q, "MetricStat.Unit");
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<&Datum> = data
            .iter()
            .filter(|d| d.namespace == namespace && d.name == name && d.dimensions == dims)
            .filter(|d| unit.is_none_or(|u| d.unit.as_deref() == Some(u)))
            .filter(|d| d.at >= start && d.at < visible)
            .collect();
        let (mut stamps, mut values) = (String::new(), String::new());
        let mut from = start;
        while from <= end {
            let to = from + period;
            let bucket: Vec<(f64, f64)> =
                matching.iter().filter(|d| d.at >= from && d.at < to).flat_map(|d| d.values.iter().copied()).collect();
            if let Some(v) = nearest_rank(&bucket, p) {
                stamps.push_str(&format!("<member>{}</member>", iso(from)));
                values.push_str(&format!("<member>{v}</member>"));
            }
            from = to;
        }
        format!(
            "<member><Id>{}</Id><Label>{}</Label><StatusCode>Complete</StatusCode><Timestamps>{stamps}</Timestamps><Values>{values}</Values></member>",
            escape(id),
            escape(name)
        )
    }

    fn put_composite(&self, form: &Form) -> Handling {
        let name = get(form, "AlarmName").unwrap_or_default().to_string();
        let composite = Composite {
            name: name.clone(),
            rule: get(form, "AlarmRule").unwrap_or_default().to_string(),
            description: get(form, "AlarmDescription").unwrap_or_default().to_string(),
            state: "INSUFFICIENT_DATA".into(),
            reason: "Unchecked: Initial alarm creation".into(),
            updated: SystemTime::now(),
        };
        self.composites.lock().unwrap_or_else(|e| e.into_inner()).insert(name, composite);
        Handling::Answer(format!(
            "<PutCompositeAlarmResponse xmlns=\"{XMLNS}\"><ResponseMetadata><RequestId>sandbox-composite</RequestId></ResponseMetadata></PutCompositeAlarmResponse>"
        ))
    }

    /// Composite alarms come back only when `AlarmTypes` asks for them; at
    /// most 100 names are taken, and the answer comes in pages.
    fn describe_alarms(&self, form: Form) -> Handling {
        let names = list(&form, "AlarmNames");
        if names.len() > 100 {
            return Handling::Refuse(format!(
                "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>1 validation error detected: Value with {} members at 'alarmNames' failed to satisfy constraint: Member must have length less than or equal to 100</Message></Error><RequestId>sandbox-validation</RequestId></ErrorResponse>",
                names.len()
            ));
        }
        let max = get(&form, "MaxRecords").and_then(|m| m.parse().ok()).unwrap_or(ALARMS_PAGE).clamp(1, 100);
        let max = match self.alarm_page_cap.load(Ordering::SeqCst) {
            0 => max,
            cap => max.min(cap as usize),
        };
        let offset = get(&form, "NextToken").and_then(|t| t.strip_prefix("sandbox-page-")?.parse().ok()).unwrap_or(0);
        let page = |composites: String| Finish::Alarms { composites, offset, max };
        let rest: Form = form.iter().filter(|(k, _)| k != "NextToken" && k != "MaxRecords").cloned().collect();
        let body = encode(&rest);
        if !list(&form, "AlarmTypes").iter().any(|t| t == "CompositeAlarm") {
            return Handling::Forward(body, page(String::new()));
        }
        let prefix = get(&form, "AlarmNamePrefix");
        let state = get(&form, "StateValue");
        let xml: String = self
            .composites()
            .values()
            .filter(|c| names.is_empty() || names.contains(&c.name))
            .filter(|c| prefix.is_none_or(|p| c.name.starts_with(p)))
            .filter(|c| state.is_none_or(|s| c.state == s))
            .map(|c| {
                format!(
                    "<member><AlarmName>{n}</AlarmName><AlarmArn>arn:aws:cloudwatch:sandbox:123456789012:alarm:{n}</AlarmArn><AlarmDescription>{d}</AlarmDescription><AlarmRule>{r}</AlarmRule><ActionsEnabled>true</ActionsEnabled><StateValue>{s}</StateValue><StateReason>{why}</StateReason><StateUpdatedTimestamp>{t}</StateUpdatedTimestamp><StateTransitionedTimestamp>{t}</StateTransitionedTimestamp></member>",
                    n = escape(&c.name),
                    d = escape(&c.description),
                    r = escape(&c.rule),
                    s = c.state,
                    why = escape(&c.reason),
                    t = iso(c.updated)
                )
            })
            .collect();
        Handling::Forward(body, page(xml))
    }
}

fn encode(form: &Form) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish().into_bytes()
}

/// Puts `members` into the list `tag` of an XML answer (empty, self-closed
/// or missing), before `close` when missing.
pub(super) fn insert_members(xml: &str, tag: &str, members: &str, close: &str) -> String {
    let open = format!("<{tag}>");
    if let Some(i) = xml.find(&open) {
        let at = i + open.len();
        return format!("{}{members}{}", &xml[..at], &xml[at..]);
    }
    let empty = format!("<{tag}/>");
    if xml.contains(&empty) {
        return xml.replacen(&empty, &format!("<{tag}>{members}</{tag}>"), 1);
    }
    match xml.find(close) {
        Some(i) => format!("{}<{tag}>{members}</{tag}>{}", &xml[..i], &xml[i..]),
        None => xml.to_string(),
    }
}

impl Finish {
    /// moto's answer with what the sandbox adds.
    pub fn apply(self, cloudwatch: &CloudWatchState, xml: String) -> String {
        match self {
            Finish::Nothing => xml,
            Finish::StateSet { name, state, reason } => {
                cloudwatch.state_set(&name, &state, &reason);
                xml
            }
            Finish::MetricResults(m) => insert_members(&xml, "MetricDataResults", &m, "</GetMetricDataResult>"),
            Finish::Alarms { composites, offset, max } => {
                let xml = match composites.is_empty() {
                    true => xml,
                    false => insert_members(&xml, "CompositeAlarms", &composites, "</DescribeAlarmsResult>"),
                };
                cloudwatch.with_transitions(&page_alarms(&xml, offset, max))
            }
        }
    }
}

/// The `<member>` elements directly inside the list `tag` of `xml` (each
/// may hold members of its own: dimensions, metrics), and the list's span.
fn top_members<'a>(xml: &'a str, tag: &str) -> (Vec<&'a str>, Option<(usize, usize)>) {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let Some(start) = xml.find(&open).map(|i| i + open.len()) else { return (Vec::new(), None) };
    let Some(end) = xml[start..].find(&close).map(|i| start + i) else { return (Vec::new(), None) };
    // Nested lists carry members too; only depth 1 is an alarm. A list of
    // the same name cannot nest inside an alarm, so `end` is this list's.
    let (mut out, mut depth, mut from, mut at) = (Vec::new(), 0usize, 0usize, start);
    while let Some(i) = xml[at..end].find("member>").map(|i| at + i) {
        let closing = xml[..i].ends_with("</");
        let opening = xml[..i].ends_with('<');
        if opening {
            if depth == 0 {
                from = i - 1;
            }
            depth += 1;
        } else if closing {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                out.push(&xml[from..i + "member>".len()]);
            }
        }
        at = i + "member>".len();
    }
    (out, Some((start, end)))
}

/// `xml` (a whole DescribeAlarms answer) cut to the alarms from `offset`,
/// at most `max`, metric alarms first, with a NextToken when more are left.
fn page_alarms(xml: &str, offset: usize, max: usize) -> String {
    let (metric, metric_span) = top_members(xml, "MetricAlarms");
    let (composite, composite_span) = top_members(xml, "CompositeAlarms");
    let total = metric.len() + composite.len();
    let keep = |i: usize| i >= offset && i < offset + max;
    let kept_metric: String = metric.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, m)| *m).collect();
    let kept_composite: String =
        composite.iter().enumerate().filter(|(i, _)| keep(metric.len() + i)).map(|(_, m)| *m).collect();
    // Rebuilt from the back so the earlier span stays where it was.
    let mut spans: Vec<((usize, usize), String)> = [(composite_span, kept_composite), (metric_span, kept_metric)]
        .into_iter()
        .filter_map(|(s, k)| Some((s?, k)))
        .collect();
    spans.sort_by_key(|((a, _), _)| std::cmp::Reverse(*a));
    let mut out = xml.to_string();
    for ((a, b), kept) in spans {
        out.replace_range(a..b, &kept);
    }
    if offset + max < total {
        out = out.replacen(
            "</DescribeAlarmsResult>",
            &format!("<NextToken>sandbox-page-{}</NextToken></DescribeAlarmsResult>", offset + max),
            1,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_come_in_pages_of_whole_alarms_with_a_token_while_more_are_left() {
        let alarm = |n: u32| {
            format!(
                "<member><AlarmName>a{n}</AlarmName><Dimensions><member><Name>LoadBalancer</Name></member></Dimensions></member>"
            )
        };
        let metric: String = (0..3).map(alarm).collect();
        let xml = format!(
            "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms>{metric}</MetricAlarms><CompositeAlarms><member><AlarmName>c</AlarmName></member></CompositeAlarms></DescribeAlarmsResult></DescribeAlarmsResponse>"
        );
        let names = |page: &str| {
            page.split("<AlarmName>").skip(1).map(|s| s.split('<').next().unwrap().to_string()).collect::<Vec<_>>()
        };
        let first = page_alarms(&xml, 0, 2);
        assert_eq!(names(&first), ["a0", "a1"]);
        assert!(first.contains("<NextToken>sandbox-page-2</NextToken>"), "{first}");
        assert_eq!(first.matches("<Name>LoadBalancer</Name>").count(), 2, "each alarm whole: {first}");
        let last = page_alarms(&xml, 2, 2);
        assert_eq!(names(&last), ["a2", "c"]);
        assert!(!last.contains("NextToken"), "{last}");
        assert_eq!(names(&page_alarms(&xml, 0, 100)), ["a0", "a1", "a2", "c"]);
    }

    #[test]
    fn nearest_rank_counts_each_value_as_often_as_given() {
        let fast_and_one_slow = [(0.02, 300.0), (0.5, 1.0)];
        assert_eq!(nearest_rank(&fast_and_one_slow, 99.0), Some(0.02), "rank 298 of 301");
        assert_eq!(nearest_rank(&fast_and_one_slow, 100.0), Some(0.5));
        assert_eq!(nearest_rank(&[(3.0, 1.0), (1.0, 1.0), (2.0, 1.0)], 50.0), Some(2.0));
        assert_eq!(nearest_rank(&[(0.5, 1.0)], 99.0), Some(0.5), "one request is its own p99");
        assert_eq!(nearest_rank(&[], 99.0), None);
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
    }

    #[test]
    fn get_metric_data_is_refused_as_aws_refuses_it() {
        let cw = CloudWatchState::default();
        let request = |queries: u32, period: &str| {
            let mut pairs: Vec<(String, String)> = vec![
                ("Action".into(), "GetMetricData".into()),
                ("Version".into(), "2010-08-01".into()),
                ("StartTime".into(), "2026-11-22T05:00:00Z".into()),
                ("EndTime".into(), "2026-11-22T06:00:00Z".into()),
            ];
            for n in 1..=queries {
                pairs.push((format!("MetricDataQueries.member.{n}.Id"), format!("q{n}")));
                pairs.push((format!("MetricDataQueries.member.{n}.MetricStat.Period"), period.into()));
            }
            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish()
        };
        let refused = |body: String| match cw.handle(body.as_bytes()) {
            Some(Handling::Refuse(xml)) => Some(xml),
            _ => None,
        };
        assert!(refused(request(500, "60")).is_none(), "500 queries are allowed");
        assert!(refused(request(501, "60")).is_some_and(|x| x.contains("<Code>ValidationError</Code>")));
        assert!(refused(request(1, "90")).is_some_and(|x| x.contains("MetricStat.Period must be a multiple of 60")));
        assert!(refused(request(1, "45")).is_some());
        for ok in ["1", "30", "120", "3600"] {
            assert!(refused(request(1, ok)).is_none(), "period {ok}");
        }
    }

    #[test]
    fn percentile_queries_are_answered_from_raw_values_and_the_rest_forwarded() {
        let cw = CloudWatchState::default();
        let now_s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(now_s - 600);
        let put = form(&[
            ("Action", "PutMetricData"),
            ("Version", "2010-08-01"),
            ("Namespace", "AWS/ApplicationELB"),
            ("MetricData.member.1.MetricName", "TargetResponseTime"),
            ("MetricData.member.1.Dimensions.member.1.Name", "LoadBalancer"),
            ("MetricData.member.1.Dimensions.member.1.Value", "app/a/1"),
            ("MetricData.member.1.Timestamp", &iso(t0 + Duration::from_secs(10))),
            ("MetricData.member.1.Values.member.1", "0.02"),
            ("MetricData.member.1.Values.member.2", "0.5"),
            ("MetricData.member.1.Counts.member.1", "300"),
            ("MetricData.member.1.Counts.member.2", "1"),
        ]);
        assert!(cw.handle(&put).is_none(), "PutMetricData goes on to moto");
        let query = |stat: &str, n: u32| {
            vec![
                (format!("MetricDataQueries.member.{n}.Id"), format!("q{n}")),
                (format!("MetricDataQueries.member.{n}.MetricStat.Metric.Namespace"), "AWS/ApplicationELB".into()),
                (format!("MetricDataQueries.member.{n}.MetricStat.Metric.MetricName"), "TargetResponseTime".into()),
                (
                    format!("MetricDataQueries.member.{n}.MetricStat.Metric.Dimensions.member.1.Name"),
                    "LoadBalancer".into(),
                ),
                (format!("MetricDataQueries.member.{n}.MetricStat.Metric.Dimensions.member.1.Value"), "app/a/1".into()),
                (format!("MetricDataQueries.member.{n}.MetricStat.Period"), "120".into()),
                (format!("MetricDataQueries.member.{n}.MetricStat.Stat"), stat.into()),
            ]
        };
        let mut pairs: Vec<(String, String)> = vec![
            ("Action".into(), "GetMetricData".into()),
            ("Version".into(), "2010-08-01".into()),
            ("StartTime".into(), iso(t0)),
            ("EndTime".into(), iso(t0 + Duration::from_secs(120))),
        ];
        pairs.extend(query("SampleCount", 1));
        pairs.extend(query("p99", 2));
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let Some(Handling::Forward(sent, finish)) = cw.handle(body.as_bytes()) else { panic!("mixed: forwarded") };
        let sent: Form = url::form_urlencoded::parse(&sent).into_owned().collect();
        assert_eq!(get(&sent, "MetricDataQueries.member.1.MetricStat.Stat"), Some("SampleCount"));
        assert_eq!(get(&sent, "MetricDataQueries.member.2.Id"), None, "the percentile is not sent to moto");
        let moto = "<GetMetricDataResponse><GetMetricDataResult><MetricDataResults><member><Id>q1</Id></member></MetricDataResults></GetMetricDataResult></GetMetricDataResponse>";
        let answer = finish.apply(&cw, moto.to_string());
        assert!(answer.contains("<Id>q2</Id>"), "{answer}");
        assert!(answer.contains("<Values><member>0.02</member></Values>"), "{answer}");
        assert!(answer.contains("<Id>q1</Id>"), "{answer}");
    }

    #[test]
    fn alarm_history_holds_each_change_taken_and_answers_as_aws_in_pages() {
        let cw = CloudWatchState::default();
        let set = |name: &str, state: &str| {
            let body = form(&[
                ("Action", "SetAlarmState"),
                ("Version", "2010-08-01"),
                ("AlarmName", name),
                ("StateValue", state),
                ("StateReason", "test"),
            ]);
            let Some(Handling::Forward(_, finish)) = cw.handle(&body) else { panic!("forwarded to moto") };
            finish.apply(&cw, "<SetAlarmStateResponse/>".into());
        };
        // One refused by moto never reaches `apply`: no change.
        let refused = form(&[
            ("Action", "SetAlarmState"),
            ("Version", "2010-08-01"),
            ("AlarmName", "gone"),
            ("StateValue", "ALARM"),
        ]);
        assert!(matches!(cw.handle(&refused), Some(Handling::Forward(..))));
        for state in ["ALARM", "ALARM", "OK", "ALARM"] {
            set("a", state);
        }
        set("b", "OK");
        let put = form(&[
            ("Action", "PutCompositeAlarm"),
            ("Version", "2010-08-01"),
            ("AlarmName", "c"),
            ("AlarmRule", "ALARM(a)"),
        ]);
        cw.handle(&put);
        cw.set_composite_state("c", "ALARM", "rule holds");
        let history = |pairs: &[(&str, &str)]| {
            let mut all = vec![("Action", "DescribeAlarmHistory"), ("Version", "2010-08-01")];
            all.extend_from_slice(pairs);
            let Some(Handling::Answer(xml)) = cw.handle(&form(&all)) else { panic!("answered by the sandbox") };
            xml
        };
        let count = |xml: &str| xml.matches("<member>").count();
        let a = history(&[("AlarmName", "a"), ("ScanBy", "TimestampAscending")]);
        assert_eq!(count(&a), 3, "the same state again is no change: {a}");
        let first = a.find("Alarm updated from INSUFFICIENT_DATA to ALARM").unwrap();
        assert!(first < a.find("Alarm updated from ALARM to OK").unwrap(), "oldest first when asked: {a}");
        assert!(a.contains("&quot;newState&quot;:{&quot;stateReason&quot;:&quot;test&quot;,&quot;stateValue&quot;:&quot;ALARM&quot;}"), "{a}");
        assert!(!history(&[("AlarmName", "gone")]).contains("<member>"));
        assert_eq!(count(&history(&[])), 4, "metric alarms only, unless asked for composites");
        let both = [("AlarmTypes.member.1", "MetricAlarm"), ("AlarmTypes.member.2", "CompositeAlarm")];
        let all = history(&both);
        assert_eq!(count(&all), 5, "{all}");
        assert!(
            all.find("<AlarmName>c</AlarmName>").unwrap() < all.find("<AlarmName>b</AlarmName>").unwrap(),
            "newest first: {all}"
        );
        assert!(all.contains("<AlarmType>CompositeAlarm</AlarmType>"), "{all}");
        let page = history(&[both[0], both[1], ("MaxRecords", "2")]);
        assert_eq!(count(&page), 2);
        assert!(page.contains("<NextToken>sandbox-history-2</NextToken>"), "{page}");
        let last = history(&[both[0], both[1], ("MaxRecords", "2"), ("NextToken", "sandbox-history-4")]);
        assert_eq!(count(&last), 1);
        assert!(!last.contains("NextToken"), "{last}");
        let future = history(&[("StartDate", "2999-01-01T00:00:00Z")]);
        assert!(!future.contains("<member>"), "{future}");
        assert!(!history(&[("HistoryItemType", "Action")]).contains("<member>"));
        let moto = "<DescribeAlarmsResult><MetricAlarms><member><AlarmName>a</AlarmName><StateValue>ALARM</StateValue><StateUpdatedTimestamp>2030-01-01T00:00:00Z</StateUpdatedTimestamp></member><member><AlarmName>gone</AlarmName><StateUpdatedTimestamp>2030-01-01T00:00:00Z</StateUpdatedTimestamp></member></MetricAlarms></DescribeAlarmsResult>";
        let read = cw.with_transitions(moto);
        assert_eq!(
            read.matches("<StateTransitionedTimestamp>").count(),
            1,
            "only an alarm changed through the proxy: {read}"
        );
        assert!(read.contains("2030-01-01T00:00:00Z</StateUpdatedTimestamp><StateTransitionedTimestamp>"), "{read}");
        cw.throttle_alarm_reads.store(true, Ordering::SeqCst);
        let read = form(&[("Action", "DescribeAlarms"), ("Version", "2010-08-01")]);
        assert!(matches!(cw.handle(&read), Some(Handling::Refuse(x)) if x.contains("<Code>Throttling</Code>")));
    }

    #[test]
    fn composite_alarms_are_kept_and_listed_only_when_asked_for() {
        let cw = CloudWatchState::default();
        let put = form(&[
            ("Action", "PutCompositeAlarm"),
            ("Version", "2010-08-01"),
            ("AlarmName", "any"),
            ("AlarmRule", "ALARM(\"a\") OR ALARM(\"b\")"),
        ]);
        assert!(matches!(cw.handle(&put), Some(Handling::Answer(_))));
        let plain = form(&[("Action", "DescribeAlarms"), ("Version", "2010-08-01"), ("AlarmNames.member.1", "any")]);
        let Some(Handling::Forward(_, Finish::Alarms { composites, .. })) = cw.handle(&plain) else {
            panic!("forwarded")
        };
        assert!(composites.is_empty(), "metric alarms only: {composites}");
        let typed = form(&[
            ("Action", "DescribeAlarms"),
            ("Version", "2010-08-01"),
            ("AlarmNames.member.1", "any"),
            ("AlarmTypes.member.1", "CompositeAlarm"),
        ]);
        let Some(Handling::Forward(_, finish)) = cw.handle(&typed) else { panic!("forwarded") };
        let xml =
            finish.apply(&cw, "<DescribeAlarmsResult><MetricAlarms/><CompositeAlarms/></DescribeAlarmsResult>".into());
        assert!(xml.contains("<AlarmName>any</AlarmName>"), "{xml}");
        assert!(xml.contains("<StateValue>INSUFFICIENT_DATA</StateValue>"), "{xml}");
    }
}
