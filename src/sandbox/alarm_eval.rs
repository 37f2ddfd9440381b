//! The sandbox's own alarm evaluator (moto never evaluates alarms). Every
//! round it reads each metric alarm's definition from moto, asks for its
//! statistic over its last `EvaluationPeriods` periods (through the proxy, so
//! percentiles and late datapoints behave as on AWS), and judges it by its
//! threshold, comparison, `DatapointsToAlarm` and `TreatMissingData`. A new
//! verdict is written with SetAlarmState; a state someone else set stays
//! until the evaluator's verdict changes. Composite alarms (kept by the
//! proxy) follow their rule over the other alarms' states.
//!
//! Deliberately not cutover's code: the rehearsal must not grade cutover with
//! its own answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk::cloudwatch::types::{
    ComparisonOperator, Metric as CwMetric, MetricAlarm, MetricDataQuery, MetricStat, StateValue,
};
use tokio::sync::watch;

use super::aws_proxy::AwsFaults;

/// What one alarm's data says, given its missing-data treatment.
/// `values`: the evaluated periods, oldest first, `None` where missing.
/// `current`: the alarm's state now (for `ignore`).
pub fn verdict(
    values: &[Option<f64>],
    breaches: impl Fn(f64) -> bool,
    datapoints_to_alarm: usize,
    treat_missing: &str,
    current: &str,
) -> String {
    let present = values.iter().flatten().count();
    if present == 0 {
        return match treat_missing {
            "notBreaching" => "OK",
            "breaching" => "ALARM",
            "ignore" => current,
            _ => "INSUFFICIENT_DATA",
        }
        .to_string();
    }
    let m = datapoints_to_alarm.max(1);
    let missing = values.len() - present;
    let mut breaching = values.iter().flatten().filter(|v| breaches(**v)).count();
    if treat_missing == "breaching" {
        breaching += missing;
    }
    if breaching >= m {
        return "ALARM".into();
    }
    // CloudWatch's rule against a premature alarm, from the other side: the
    // oldest breaching datapoint at least M periods old, with every later
    // one breaching or missing, is an alarm even with fewer than M real
    // datapoints (`- X - -` for 3 of 3); `ignore` keeps the state instead.
    if missing > 0 && matches!(treat_missing, "missing" | "ignore") {
        let oldest = values.iter().position(|v| v.is_some_and(&breaches));
        if let Some(i) = oldest
            && values.len() - i >= m
            && values[i + 1..].iter().all(|v| v.is_none_or(&breaches))
        {
            return if treat_missing == "ignore" { current } else { "ALARM" }.to_string();
        }
    }
    "OK".into()
}

fn compare(op: Option<&ComparisonOperator>, threshold: f64) -> impl Fn(f64) -> bool {
    let op = op.cloned();
    move |v| match op {
        Some(ComparisonOperator::GreaterThanOrEqualToThreshold) => v >= threshold,
        Some(ComparisonOperator::LessThanThreshold) => v < threshold,
        Some(ComparisonOperator::LessThanOrEqualToThreshold) => v <= threshold,
        _ => v > threshold,
    }
}

/// A composite rule over alarm states: `ALARM("a") OR (OK(b) AND NOT …)`,
/// `TRUE`, `FALSE`. `None` when it cannot be read.
pub fn rule_holds(rule: &str, states: &BTreeMap<String, String>) -> Option<bool> {
    let mut p = Rule { rest: rule.trim(), states };
    let v = p.or()?;
    p.rest.trim().is_empty().then_some(v)
}

struct Rule<'a> {
    rest: &'a str,
    states: &'a BTreeMap<String, String>,
}

impl Rule<'_> {
    fn eat(&mut self, word: &str) -> bool {
        let r = self.rest.trim_start();
        match r.strip_prefix(word) {
            Some(after) if !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') || word == "(" => {
                self.rest = after;
                true
            }
            _ => false,
        }
    }

    fn or(&mut self) -> Option<bool> {
        let mut v = self.and()?;
        while self.eat("OR") {
            let r = self.and()?;
            v = v || r;
        }
        Some(v)
    }

    fn and(&mut self) -> Option<bool> {
        let mut v = self.not()?;
        while self.eat("AND") {
            let r = self.not()?;
            v = v && r;
        }
        Some(v)
    }

    fn not(&mut self) -> Option<bool> {
        if self.eat("NOT") {
            return Some(!self.not()?);
        }
        self.atom()
    }

    fn atom(&mut self) -> Option<bool> {
        if self.eat("(") {
            let v = self.or()?;
            self.rest = self.rest.trim_start().strip_prefix(')')?;
            return Some(v);
        }
        if self.eat("TRUE") {
            return Some(true);
        }
        if self.eat("FALSE") {
            return Some(false);
        }
        for state in ["INSUFFICIENT_DATA", "ALARM", "OK"] {
            if self.eat(state) {
                let r = self.rest.trim_start().strip_prefix('(')?;
                let close = r.find(')')?;
                let name = r[..close].trim().trim_matches('"');
                // AWS takes a child's ARN as well as its name.
                let name = match name.strip_prefix("arn:") {
                    Some(arn) => arn.split_once(":alarm:").map_or(name, |(_, n)| n),
                    None => name,
                };
                self.rest = &r[close + 1..];
                return Some(self.states.get(name).map(String::as_str) == Some(state));
            }
        }
        None
    }
}

/// One alarm's periods, oldest first, ending now.
async fn periods(cw: &aws_sdk::cloudwatch::Client, a: &MetricAlarm) -> Result<Vec<Option<f64>>, String> {
    let period = a.period().unwrap_or(60).max(10);
    let n = a.evaluation_periods().unwrap_or(1).max(1);
    let stat = a.extended_statistic().map(str::to_string).or(a.statistic().map(|s| s.as_str().to_string()));
    let metric = CwMetric::builder()
        .set_namespace(a.namespace().map(str::to_string))
        .set_metric_name(a.metric_name().map(str::to_string))
        .set_dimensions(Some(a.dimensions().to_vec()))
        .build();
    let query = MetricDataQuery::builder()
        .id("a")
        // Its unit too, as AWS reads it: one the metric is not published in finds nothing.
        .metric_stat(
            MetricStat::builder().metric(metric).period(period).set_stat(stat).set_unit(a.unit().cloned()).build(),
        )
        .build();
    let end = SystemTime::now();
    // AWS refuses an alarm looking back over a week; moto takes any.
    let range = u64::from(period.unsigned_abs()).saturating_mul(u64::from(n.unsigned_abs()));
    if range > 604_800 {
        return Err(format!("period × evaluation periods is {range} s, over CloudWatch's week"));
    }
    let start = end - Duration::from_secs(range);
    let r = cw
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(start.into())
        .end_time(end.into())
        .send()
        .await
        .map_err(|e| aws_sdk::cloudwatch::error::DisplayErrorContext(e).to_string())?;
    let mut out = vec![None; n as usize];
    let start_s = start.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    for res in r.metric_data_results() {
        for (t, v) in res.timestamps().iter().zip(res.values()) {
            let i = (t.secs() - start_s).div_euclid(i64::from(period));
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                *slot = Some(*v);
            }
        }
    }
    Ok(out)
}

/// The evaluator: one round now, then one every `every` until shutdown.
pub struct Evaluator {
    /// One client per account and region holding alarms.
    cws: Vec<aws_sdk::cloudwatch::Client>,
    proxy: Arc<AwsFaults>,
    /// Its own last verdict per alarm.
    last: BTreeMap<String, String>,
}

impl Evaluator {
    pub fn new(cws: Vec<aws_sdk::cloudwatch::Client>, proxy: Arc<AwsFaults>) -> Self {
        Self { cws, proxy, last: BTreeMap::new() }
    }

    /// Judges every alarm of every account once, then the composites.
    pub async fn round(&mut self) {
        let mut states: BTreeMap<String, String> = BTreeMap::new();
        for cw in self.cws.clone() {
            self.round_in(&cw, &mut states).await;
        }
        // A rule may name another composite: judged again until nothing
        // changes (at most once per composite, as rules cannot loop on AWS).
        let composites: Vec<_> = self.proxy.cloudwatch.composites().into_values().collect();
        let mut judged: BTreeMap<String, (&str, String)> = BTreeMap::new();
        for _ in 0..=composites.len() {
            let mut changed = false;
            for c in &composites {
                let verdict = match rule_holds(&c.rule, &states) {
                    Some(true) => ("ALARM", format!("rule holds: {}", c.rule)),
                    Some(false) => ("OK", format!("rule does not hold: {}", c.rule)),
                    None => ("INSUFFICIENT_DATA", format!("cannot read rule: {}", c.rule)),
                };
                if states.get(&c.name).map(String::as_str) != Some(verdict.0) {
                    states.insert(c.name.clone(), verdict.0.to_string());
                    changed = true;
                }
                judged.insert(c.name.clone(), verdict);
            }
            if !changed {
                break;
            }
        }
        for (name, (state, reason)) in judged {
            self.proxy.cloudwatch.set_composite_state(&name, state, &reason);
        }
    }

    /// Judges the metric alarms of one account and region.
    async fn round_in(&mut self, cw: &aws_sdk::cloudwatch::Client, states: &mut BTreeMap<String, String>) {
        // Every page: the proxy answers in pages, as AWS does.
        let mut pages = cw.describe_alarms().into_paginator().send();
        let mut alarms = Vec::new();
        let mut failed = None;
        while let Some(page) = pages.next().await {
            match page {
                Ok(r) => alarms.extend(r.metric_alarms().iter().cloned()),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let alarms = match failed {
            None => alarms,
            Some(e) => {
                let e = aws_sdk::cloudwatch::error::DisplayErrorContext(e);
                tracing::warn!(error = %e, "alarm evaluator: DescribeAlarms");
                return;
            }
        };
        for a in &alarms {
            let name = a.alarm_name().unwrap_or_default().to_string();
            let current = a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default();
            let values = match periods(cw, a).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(alarm = %name, error = %e, "alarm evaluator: GetMetricData");
                    states.insert(name, current);
                    continue;
                }
            };
            let n = values.len();
            let m = a.datapoints_to_alarm().map_or(n, |m| m.max(1) as usize);
            let treat = a.treat_missing_data().unwrap_or("missing");
            let breaches = compare(a.comparison_operator(), a.threshold().unwrap_or(0.0));
            let state = verdict(&values, breaches, m, treat, &current);
            let mut now_state = current.clone();
            if self.last.get(&name) != Some(&state) {
                let shown: Vec<String> = values.iter().map(|v| v.map_or("-".into(), |v| format!("{v}"))).collect();
                let reason = format!("sandbox evaluator: [{}] (treat missing data: {treat})", shown.join(", "));
                let set = cw
                    .set_alarm_state()
                    .alarm_name(&name)
                    .state_value(StateValue::from(state.as_str()))
                    .state_reason(reason)
                    .send()
                    .await;
                match set {
                    Ok(_) => {
                        self.last.insert(name.clone(), state.clone());
                        now_state = state;
                    }
                    Err(e) => {
                        let e = aws_sdk::cloudwatch::error::DisplayErrorContext(e);
                        tracing::warn!(alarm = %name, error = %e, "alarm evaluator: SetAlarmState");
                    }
                }
            }
            states.insert(name, now_state);
        }
    }

    pub async fn run(mut self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            self.round().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_data_follows_the_alarms_treatment() {
        let above = |v: f64| v > 5.0;
        let none = [None, None];
        assert_eq!(verdict(&none, above, 2, "missing", "OK"), "INSUFFICIENT_DATA");
        assert_eq!(verdict(&none, above, 2, "notBreaching", "ALARM"), "OK");
        assert_eq!(verdict(&none, above, 2, "breaching", "OK"), "ALARM");
        assert_eq!(verdict(&none, above, 2, "ignore", "ALARM"), "ALARM");
        assert_eq!(verdict(&[None, Some(9.0)], above, 2, "breaching", "OK"), "ALARM", "missing counts as breaching");
        assert_eq!(verdict(&[None, Some(9.0)], above, 2, "notBreaching", "OK"), "OK", "1 of 2 needed");
        assert_eq!(verdict(&[Some(9.0), Some(9.0)], above, 2, "missing", "OK"), "ALARM");
        assert_eq!(verdict(&[Some(1.0)], above, 1, "missing", "ALARM"), "OK");
    }

    /// The rows of CloudWatch's "alarms and missing data" tables (the last
    /// three of five periods; 0 not breaching, X breaching, - missing), in
    /// order MISSING, IGNORE (from OK), BREACHING, NOT BREACHING.
    #[test]
    fn missing_data_follows_cloudwatchs_tables() {
        let above = |v: f64| v > 5.0;
        let row = |points: &str| -> Vec<Option<f64>> {
            points
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| (c != '-').then_some(if c == 'X' { 9.0 } else { 1.0 }))
                .collect()
        };
        let states = |points: &str, m: usize| {
            ["missing", "ignore", "breaching", "notBreaching"].map(|t| verdict(&row(points), above, m, t, "OK"))
        };
        // Datapoints to Alarm and Evaluation Periods 3.
        assert_eq!(states("0 X X", 3), ["OK", "OK", "OK", "OK"]);
        assert_eq!(states("0 - -", 3), ["OK", "OK", "OK", "OK"]);
        assert_eq!(states("- - -", 3), ["INSUFFICIENT_DATA", "OK", "ALARM", "OK"]);
        assert_eq!(states("X X X", 3), ["ALARM", "ALARM", "ALARM", "ALARM"]);
        assert_eq!(states("X - -", 3), ["ALARM", "OK", "ALARM", "OK"], "a premature alarm's other side");
        // The text's own case: `- - - - X` does not go to ALARM at once.
        assert_eq!(states("- - X", 3)[0], "OK");
        // 2 out of 3.
        assert_eq!(states("X 0 X", 2), ["ALARM", "ALARM", "ALARM", "ALARM"]);
        assert_eq!(states("X 0 -", 2), ["OK", "OK", "ALARM", "OK"]);
        assert_eq!(states("- - 0", 2), ["OK", "OK", "ALARM", "OK"]);
        assert_eq!(states("- X -", 2), ["ALARM", "OK", "ALARM", "OK"]);
        assert_eq!(verdict(&row("- X -"), above, 2, "ignore", "INSUFFICIENT_DATA"), "INSUFFICIENT_DATA", "kept");
    }

    #[test]
    fn composite_rules_over_states() {
        let states: BTreeMap<String, String> =
            [("a", "OK"), ("b", "ALARM"), ("c", "INSUFFICIENT_DATA")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(rule_holds(r#"ALARM("a") OR ALARM("b")"#, &states), Some(true));
        assert_eq!(rule_holds(r#"ALARM(a) AND ALARM(b)"#, &states), Some(false));
        assert_eq!(rule_holds(r#"NOT OK(a) OR (INSUFFICIENT_DATA("c") AND TRUE)"#, &states), Some(true));
        assert_eq!(rule_holds(r#"ALARM("missing")"#, &states), Some(false));
        assert_eq!(rule_holds("ALARM(arn:aws:cloudwatch:eu-west-1:123456789012:alarm:b)", &states), Some(true));
        assert_eq!(rule_holds("ALARM(a", &states), None);
        assert_eq!(rule_holds("OKAY(a)", &states), None);
    }
}
