//! `cutover report --html`: a postmortem of a runbook's window in one
//! self-contained HTML file (inline CSS and SVG; no script, no network
//! reference). Pure: the caller reads the audit log and CloudWatch and hands
//! the lines and series over; this module decides what to ask for and draws.

mod plot;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::aws::cloudwatch::{Series, SeriesKey};
use crate::runbook::{GateKind, Metric, Runbook, Stat};
use crate::store::audit::{AuditLine, Stage};

pub use plot::{PALETTE, THRESHOLD_COLOUR, colour_hex};

/// What CloudWatch knows an environment's ALB by: the ARN suffixes that are
/// the values of the LoadBalancer and TargetGroup dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct SideDimensions {
    pub environment: String,
    pub load_balancer: Option<String>,
    /// The runbook's target groups, in its order.
    pub target_groups: Vec<String>,
}

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    /// Oldest first: (seconds since the epoch, value).
    pub points: Vec<(i64, f64)>,
    /// Index into [`PALETTE`].
    pub colour: usize,
    /// A limit drawn for comparison (thin), not a reading.
    pub threshold: bool,
    /// A value held until the next point (the weights): no point markers.
    pub step: bool,
}

/// One plot over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// The `id` of its HTML section (`weights`, `requests`, `gate-1`…).
    pub id: String,
    pub title: String,
    /// What the y axis counts.
    pub unit: String,
    pub curves: Vec<Curve>,
    /// Said under the plot: how to read it, or why something is missing.
    pub notes: Vec<String>,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub runbook: String,
    pub title: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub period_secs: i32,
    /// The audit lines in the window, oldest first.
    pub lines: Vec<AuditLine>,
    /// Weights, requests, 5xx, latency, then one per gate.
    pub plots: Vec<Plot>,
    /// Gates with no numeric reading to plot, and why.
    pub unplotted_gates: Vec<String>,
    /// Said at the top: what could not be read.
    pub notes: Vec<String>,
}

fn epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The window the audit covers: its first line's time to its last's. None
/// without a line whose time parses.
pub fn audit_window(lines: &[AuditLine]) -> Option<(SystemTime, SystemTime)> {
    let times: Vec<SystemTime> = lines.iter().filter_map(|l| crate::time::parse_rfc3339(&l.time)).collect();
    Some((*times.iter().min()?, *times.iter().max()?))
}

/// The lines whose time falls in `[start, end]`, oldest first.
pub fn lines_in(lines: &[AuditLine], start: SystemTime, end: SystemTime) -> Vec<AuditLine> {
    let mut out: Vec<(SystemTime, AuditLine)> = lines
        .iter()
        .filter_map(|l| Some((crate::time::parse_rfc3339(&l.time)?, l.clone())))
        .filter(|(t, _)| *t >= start && *t <= end)
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, l)| l).collect()
}

/// Each environment's weight.
type Weights = BTreeMap<String, f64>;

/// A line that moved weights: Route53 accepted it (`applied`) or reports it
/// everywhere (`insync`), with every environment's weight before and after.
fn weights_of(line: &AuditLine, sides: &[String]) -> Option<(Weights, Weights)> {
    if !matches!(line.stage, Stage::Applied | Stage::InSync) {
        return None;
    }
    let flat = |v: &serde_json::Value| -> Option<Weights> {
        let o = v.as_object()?;
        sides.iter().map(|s| Some((s.clone(), o.get(s)?.as_f64()?))).collect()
    };
    // A dual-stack group whose types weighed the sides otherwise has each
    // type's (`ShiftPlan::before`); the curve follows the first type by
    // name (A before AAAA).
    let read = |v: &serde_json::Value| flat(v).or_else(|| v.as_object()?.values().find_map(flat));
    Some((read(&line.before)?, read(&line.after)?))
}

/// Each side's weight over the window, as a step line: the weight before the
/// first change from `start`, then each applied or insync line's `after`
/// from its time on, held to `end`.
pub fn weight_curves(lines: &[AuditLine], sides: &[String], start: SystemTime, end: SystemTime) -> Vec<Curve> {
    let changes: Vec<(i64, Weights, Weights)> = lines
        .iter()
        .filter_map(|l| {
            let t = epoch(crate::time::parse_rfc3339(&l.time)?);
            let (before, after) = weights_of(l, sides)?;
            Some((t, before, after))
        })
        .collect();
    sides
        .iter()
        .enumerate()
        .map(|(i, side)| {
            let mut points = Vec::new();
            if let Some((_, before, _)) = changes.first() {
                points.push((epoch(start), before[side]));
            }
            for (t, _, after) in &changes {
                // A vertical step where the weight changed, one point where it held.
                if let Some(&(_, last)) = points.last()
                    && last != after[side]
                {
                    points.push((*t, last));
                }
                points.push((*t, after[side]));
            }
            if let Some(&(_, last)) = points.last() {
                points.push((epoch(end), last));
            }
            Curve { label: side.clone(), points, colour: i, threshold: false, step: true }
        })
        .collect()
}

/// A series the report reads, and what it is for.
fn key(d: &SideDimensions, tg: Option<&str>, metric: Metric, stat: Stat) -> SeriesKey {
    SeriesKey::new(&d.environment, tg, d.load_balancer.as_deref(), metric, stat)
}

fn first_tg(d: &SideDimensions) -> Option<&str> {
    d.target_groups.first().map(String::as_str)
}

/// The series each side's traffic plots read: requests, target 5xx and
/// latency (average and p99) through each of its target groups (a second
/// group's errors are the side's too), and the load balancer's own 5xx.
fn traffic_keys(d: &SideDimensions) -> Vec<(String, SeriesKey)> {
    let groups: Vec<Option<&str>> = match d.target_groups.is_empty() {
        true => vec![None],
        false => d.target_groups.iter().map(|t| Some(t.as_str())).collect(),
    };
    let mut out = Vec::new();
    for (plot, m, s) in [
        ("requests", Metric::RequestCount, Stat::Sum),
        ("5xx", Metric::Target5xx, Stat::Sum),
        ("5xx", Metric::Elb5xx, Stat::Sum),
        ("latency", Metric::TargetResponseTime, Stat::Average),
        ("latency", Metric::TargetResponseTime, Stat::Percentile(99.0)),
    ] {
        // Published per load balancer only: one series.
        let tgs = if m == Metric::Elb5xx { &groups[..1] } else { &groups[..] };
        out.extend(tgs.iter().map(|tg| (plot.to_string(), key(d, *tg, m, s))));
    }
    out
}

/// A traffic curve's label: the side, and its target group when it has
/// several (ARN suffix `targetgroup/NAME/ID`: the name).
fn traffic_label(d: &SideDimensions, k: &SeriesKey) -> String {
    let group = match (&k.target_group, d.target_groups.len() > 1, k.metric) {
        (Some(tg), true, m) if m != Metric::Elb5xx => {
            format!(" {}", tg.split('/').nth(1).unwrap_or(tg))
        }
        _ => String::new(),
    };
    format!("{}{group} {} {}", d.environment, k.metric.cloudwatch_name(), k.stat.cloudwatch_name())
}

fn is_count(m: Metric) -> bool {
    matches!(m, Metric::RequestCount | Metric::Target5xx | Metric::Elb5xx)
}

/// A side's reading for a `compare` gate: the series, divided by the
/// side's requests when it is a count.
struct Rate {
    value: SeriesKey,
    per_request: Option<SeriesKey>,
}

/// What a gate's plot needs from CloudWatch, and how it is drawn.
enum GateSpec {
    /// One reading against a fixed limit.
    Limit { label: String, keys: Vec<SeriesKey>, limit: f64, limit_label: String },
    /// The new side's rate against `factor` times the old side's.
    Compare { new: Box<Rate>, old: Box<Rate>, factor: f64 },
    /// No numeric reading: why.
    Unplotted(String),
}

fn gate_spec(rb: &Runbook, g: &GateKind, dims: &[SideDimensions]) -> Vec<GateSpec> {
    let side = |env: &str| dims.iter().find(|d| d.environment == env);
    match g {
        GateKind::Metric { environment, metric, stat, max, .. } => match side(environment) {
            Some(d) => vec![GateSpec::Limit {
                label: format!("{environment} {} {}", metric.cloudwatch_name(), stat.cloudwatch_name()),
                keys: vec![key(d, first_tg(d), *metric, *stat)],
                limit: *max,
                limit_label: format!("max {max}"),
            }],
            None => vec![GateSpec::Unplotted(format!("{environment} has no load balancer to read"))],
        },
        GateKind::HealthyTargets { environment, min } => match side(environment) {
            // The gate counts healthy targets over every target group.
            Some(d) if !d.target_groups.is_empty() => vec![GateSpec::Limit {
                label: format!("{environment} HealthyHostCount (every target group)"),
                keys: d
                    .target_groups
                    .iter()
                    .map(|tg| key(d, Some(tg), Metric::HealthyHostCount, Stat::Average))
                    .collect(),
                limit: f64::from(*min),
                limit_label: format!("min {min}"),
            }],
            _ => vec![GateSpec::Unplotted(format!("{environment} has no target group to read"))],
        },
        GateKind::Compare { metric, stat, factor, .. } => {
            let (Some(new), Some(old)) = (side(&rb.rollout.to), side(&rb.rollout.from)) else {
                return vec![GateSpec::Unplotted("a side has no load balancer to read".into())];
            };
            // Counts compare as rates per request, as the gate does.
            let read = |d: &SideDimensions| {
                Box::new(if is_count(*metric) {
                    Rate {
                        value: key(d, first_tg(d), *metric, Stat::Sum),
                        per_request: Some(key(d, first_tg(d), Metric::RequestCount, Stat::Sum)),
                    }
                } else {
                    Rate { value: key(d, first_tg(d), *metric, *stat), per_request: None }
                })
            };
            vec![GateSpec::Compare { new: read(new), old: read(old), factor: *factor }]
        }
        GateKind::AlarmOk { alarms, .. } => alarms
            .iter()
            .map(|name| match rb.alarms.iter().find(|a| &a.name == name) {
                Some(a) if a.rule.is_none() => match a.environment.as_deref().and_then(side) {
                    Some(d) => GateSpec::Limit {
                        label: format!(
                            "alarm {name}: {} {} {}",
                            d.environment,
                            a.metric.cloudwatch_name(),
                            a.stat.cloudwatch_name()
                        ),
                        keys: vec![key(d, first_tg(d), a.metric, a.stat)],
                        limit: a.threshold,
                        limit_label: format!("alarm threshold {} per {} s", a.threshold, a.period.as_secs()),
                    },
                    None => GateSpec::Unplotted(format!("alarm {name} names no environment of the runbook")),
                },
                Some(_) => GateSpec::Unplotted(format!("alarm {name} is a composite alarm (its rule has no reading)")),
                None => GateSpec::Unplotted(format!("alarm {name} is not described in the runbook's [[alarms]]")),
            })
            .collect(),
        GateKind::HttpHealth { .. } | GateKind::RedisReachable { .. } | GateKind::RedisHitRate { .. } => {
            vec![GateSpec::Unplotted("it reads live state, not a metric; its failures are in the timeline".into())]
        }
    }
}

fn gate_title(i: usize, g: &GateKind) -> String {
    let what = match g {
        GateKind::AlarmOk { alarms, .. } => format!("alarm_ok {}", alarms.join(", ")),
        GateKind::HealthyTargets { environment, min } => format!("healthy_targets {environment} ≥ {min}"),
        GateKind::HttpHealth { environment } => format!("http_health {environment}"),
        GateKind::RedisReachable { environment } => format!("redis_reachable {environment}"),
        GateKind::RedisHitRate { redis, min_percent, .. } => format!("redis_hit_rate {redis} ≥ {min_percent}%"),
        GateKind::Metric { environment, metric, stat, max, .. } => {
            format!("metric {environment} {} {} ≤ {max}", metric.cloudwatch_name(), stat.cloudwatch_name())
        }
        GateKind::Compare { metric, stat, factor, .. } => {
            format!("compare {} {} within {factor}× the old side's", metric.cloudwatch_name(), stat.cloudwatch_name())
        }
    };
    format!("gate {}: {what}", i + 1)
}

fn all_specs(rb: &Runbook, dims: &[SideDimensions]) -> Vec<Vec<GateSpec>> {
    rb.rollout.gates.iter().map(|g| gate_spec(rb, &g.kind, dims)).collect()
}

/// Every series the report reads, each once.
pub fn wanted_keys(rb: &Runbook, dims: &[SideDimensions]) -> Vec<SeriesKey> {
    let mut keys: Vec<SeriesKey> = dims.iter().flat_map(traffic_keys).map(|(_, k)| k).collect();
    for spec in all_specs(rb, dims).into_iter().flatten() {
        match spec {
            GateSpec::Limit { keys: k, .. } => keys.extend(k),
            GateSpec::Compare { new, old, .. } => {
                keys.extend([new.value, old.value].into_iter().chain(new.per_request).chain(old.per_request))
            }
            GateSpec::Unplotted(_) => {}
        }
    }
    let mut unique: Vec<SeriesKey> = Vec::new();
    for k in keys {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    unique
}

/// The series read for `k` (the caller's answer to [`wanted_keys`]).
fn series_for<'a>(fetched: &'a [(SeriesKey, Series)], k: &SeriesKey) -> Option<&'a Series> {
    fetched.iter().find(|(key, _)| key == k).map(|(_, s)| s)
}

/// Points of several series added by timestamp (target groups of one side).
fn summed(series: &[&Series]) -> Vec<(i64, f64)> {
    let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
    for s in series {
        for (t, v) in &s.points {
            *by_time.entry(*t).or_default() += v;
        }
    }
    by_time.into_iter().collect()
}

/// `num / den` at every timestamp both have, with a non-zero denominator.
fn ratio(num: &[(i64, f64)], den: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let den: BTreeMap<i64, f64> = den.iter().copied().collect();
    num.iter().filter_map(|(t, n)| Some((*t, n / den.get(t).filter(|d| **d > 0.0)?))).collect()
}

fn flat(label: String, value: f64, start: SystemTime, end: SystemTime, colour: usize) -> Curve {
    Curve { label, points: vec![(epoch(start), value), (epoch(end), value)], colour, threshold: true, step: false }
}

/// Errors of the series a plot reads (a series that could not be asked for).
fn errors(series: &[Option<&Series>]) -> Vec<String> {
    series.iter().flatten().filter_map(|s| s.error.clone()).collect()
}

/// The whole report: the audit lines of the window (already cut to it) and
/// the series fetched for [`wanted_keys`].
pub fn build(
    rb: &Runbook,
    dims: &[SideDimensions],
    lines: Vec<AuditLine>,
    fetched: &[(SeriesKey, Series)],
    (start, end): (SystemTime, SystemTime),
    period_secs: i32,
) -> Report {
    let sides: Vec<String> = rb.environments.keys().cloned().collect();
    let per = format!("per {period_secs} s");
    let mut plots = vec![Plot {
        id: "weights".into(),
        title: "Route53 weight of each side".into(),
        unit: "weight (%)".into(),
        // Weights are audited for the rollout's pair only.
        curves: weight_curves(&lines, &[rb.rollout.from.clone(), rb.rollout.to.clone()], start, end),
        notes: vec!["From the audit log: each applied and insync line's weights after the change.".into()],
    }];
    for (id, title, unit) in [
        ("requests", "Requests per side", format!("requests {per}")),
        ("5xx", "5xx per side (targets' and the load balancer's own)", format!("responses {per}")),
        ("latency", "Target response time per side (average and p99)", "seconds".into()),
    ] {
        let mut curves = Vec::new();
        let mut read = Vec::new();
        for (i, d) in dims.iter().enumerate() {
            let side = sides.iter().position(|s| *s == d.environment).unwrap_or(i);
            for (n, (_, k)) in traffic_keys(d).into_iter().filter(|(p, _)| p == id).enumerate() {
                let s = series_for(fetched, &k);
                read.push(s);
                curves.push(Curve {
                    label: traffic_label(d, &k),
                    points: s.map(|s| s.points.clone()).unwrap_or_default(),
                    // Each side keeps its colour; its second series a lighter one.
                    colour: side + n * sides.len(),
                    threshold: false,
                    step: false,
                });
            }
        }
        let mut notes = errors(&read);
        if curves.iter().all(|c| c.points.is_empty()) {
            notes.push("CloudWatch holds no datapoint for these series in the window.".into());
        }
        plots.push(Plot { id: id.into(), title: title.into(), unit, curves, notes });
    }
    let mut unplotted = Vec::new();
    for (i, (gate, specs)) in rb.rollout.gates.iter().zip(all_specs(rb, dims)).enumerate() {
        let title = gate_title(i, &gate.kind);
        let mut curves = Vec::new();
        let mut notes = Vec::new();
        for spec in specs {
            match spec {
                GateSpec::Limit { label, keys, limit, limit_label } => {
                    let read: Vec<Option<&Series>> = keys.iter().map(|k| series_for(fetched, k)).collect();
                    notes.extend(errors(&read));
                    let colour = curves.len();
                    curves.push(Curve {
                        label,
                        points: summed(&read.iter().flatten().copied().collect::<Vec<_>>()),
                        colour,
                        threshold: false,
                        step: false,
                    });
                    curves.push(flat(limit_label, limit, start, end, plot::THRESHOLD_COLOUR));
                }
                GateSpec::Compare { new, old, factor } => {
                    let rate = |rate: &Rate| {
                        let v = series_for(fetched, &rate.value);
                        let r = rate.per_request.as_ref().map(|k| series_for(fetched, k));
                        let points = match (v, r) {
                            (Some(v), Some(Some(r))) => ratio(&v.points, &r.points),
                            (Some(v), None) => v.points.clone(),
                            _ => Vec::new(),
                        };
                        (points, errors(&[v, r.flatten()]))
                    };
                    let ((new_points, e1), (old_points, e2)) = (rate(&new), rate(&old));
                    notes.extend(e1.into_iter().chain(e2));
                    let per_request = if new.per_request.is_some() { " per request" } else { "" };
                    curves.push(Curve {
                        label: format!("{}{per_request}", rb.rollout.to),
                        points: new_points,
                        colour: 0,
                        threshold: false,
                        step: false,
                    });
                    curves.push(Curve {
                        label: format!("{factor}× {}{per_request}", rb.rollout.from),
                        points: old_points.iter().map(|(t, v)| (*t, v * factor)).collect(),
                        colour: plot::THRESHOLD_COLOUR,
                        threshold: true,
                        step: false,
                    });
                }
                GateSpec::Unplotted(why) => notes.push(why),
            }
        }
        if curves.is_empty() {
            unplotted.push(format!("{title}: {}", notes.join("; ")));
            continue;
        }
        if curves.iter().filter(|c| !c.threshold).all(|c| c.points.is_empty()) {
            notes.push("CloudWatch holds no datapoint for this reading in the window.".into());
        }
        notes.push(format!(
            "Each point is one period ({per}); the gate itself judges a whole soak as one period, so a point \
             above the line is a minute to look at, not by itself a failed gate."
        ));
        plots.push(Plot { id: format!("gate-{}", i + 1), title, unit: "reading".into(), curves, notes });
    }
    Report {
        runbook: rb.name.clone(),
        title: rb.title.clone(),
        start,
        end,
        period_secs,
        lines,
        plots,
        unplotted_gates: unplotted,
        notes: Vec::new(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn json_cell(v: &serde_json::Value) -> String {
    if v.is_null() { String::new() } else { escape(&v.to_string()) }
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1000px}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}\
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
.note{color:#555;font-size:.9em}svg{display:block}";

/// The report as one HTML page: every plot an inline `<svg>`, the data behind
/// it in a table, and the audit timeline (plot and table, numbered alike).
pub fn html(r: &Report) -> Result<String, String> {
    let (start, end) = (crate::time::rfc3339(r.start), crate::time::rfc3339(r.end));
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str(&format!(
        "<title>cutover report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&r.runbook)
    ));
    o.push_str(&format!("<h1>cutover report: {} — {}</h1>\n", escape(&r.runbook), escape(&r.title)));
    let accounts: Vec<String> = {
        let mut a: Vec<String> =
            r.lines.iter().map(|l| format!("{} {}", l.account.as_deref().unwrap_or("?"), l.region)).collect();
        a.sort();
        a.dedup();
        a
    };
    o.push_str(&format!(
        "<p>Window {start} → {end} (UTC); CloudWatch periods of {} s; {} audit lines; account and region: {}.</p>\n",
        r.period_secs,
        r.lines.len(),
        escape(&accounts.join(", "))
    ));
    for n in &r.notes {
        o.push_str(&format!("<p class=\"note\">{}</p>\n", escape(n)));
    }
    // Whole periods: a datapoint stands at its period's start, which may be
    // before the window's.
    let period = i64::from(r.period_secs.max(1));
    let x0 = epoch(r.start).div_euclid(period) * period;
    let x1 = (epoch(r.end).div_euclid(period) + 1) * period;
    for p in &r.plots {
        o.push_str(&format!("<section id=\"{}\">\n<h2>{}</h2>\n", escape(&p.id), escape(&p.title)));
        o.push_str(&plot::svg_curves(p, (x0, x1))?);
        for n in &p.notes {
            o.push_str(&format!("<p class=\"note\">{}</p>\n", escape(n)));
        }
        o.push_str("<details><summary>Data</summary>\n<table class=\"data\"><tr><th>series</th><th>time (UTC)</th><th>value</th></tr>\n");
        for c in &p.curves {
            for (t, v) in &c.points {
                let at =
                    crate::time::rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((*t).max(0) as u64));
                o.push_str(&format!("<tr><td>{}</td><td>{at}</td><td>{v}</td></tr>\n", escape(&c.label)));
            }
        }
        o.push_str("</table>\n</details>\n</section>\n");
    }
    if !r.unplotted_gates.is_empty() {
        o.push_str("<section id=\"unplotted-gates\">\n<h2>Gates without a plot</h2>\n<ul>\n");
        for g in &r.unplotted_gates {
            o.push_str(&format!("<li>{}</li>\n", escape(g)));
        }
        o.push_str("</ul>\n</section>\n");
    }
    o.push_str("<section id=\"timeline\">\n<h2>Audit timeline</h2>\n");
    o.push_str(&plot::svg_timeline(&r.lines, (x0, x1))?);
    o.push_str(
        "<p class=\"note\">One marker per audit line, numbered as in the table, on the lane of its stage.</p>\n",
    );
    o.push_str("<table><tr><th>#</th><th>time (UTC)</th><th>operator</th><th>account</th><th>action</th><th>stage</th><th>before</th><th>after</th><th>detail</th></tr>\n");
    for (i, l) in r.lines.iter().enumerate() {
        o.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            i + 1,
            escape(&l.time),
            escape(&l.operator),
            escape(l.account.as_deref().unwrap_or("?")),
            escape(&l.action),
            l.stage,
            json_cell(&l.before),
            json_cell(&l.after),
            escape(&l.detail)
        ));
    }
    o.push_str("</table>\n</section>\n</body>\n</html>\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(secs: u64, stage: Stage, before: serde_json::Value, after: serde_json::Value) -> AuditLine {
        AuditLine {
            time: crate::time::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            operator: "ana".into(),
            account: Some("123456789012".into()),
            region: "eu-west-1".into(),
            runbook: "demo".into(),
            action: "rollout step".into(),
            stage,
            before,
            after,
            detail: String::new(),
            change: None,
            step: None,
            aws_ahead_ms: None,
        }
    }

    #[test]
    fn weights_step_at_each_applied_and_insync_line_and_ignore_the_rest() {
        let w = |p: u8, s: u8| serde_json::json!({"production": p, "staging": s});
        let lines = vec![
            line(1000, Stage::Intent, w(100, 0), w(90, 10)),
            line(1001, Stage::Applied, w(100, 0), w(90, 10)),
            line(1005, Stage::InSync, w(100, 0), w(90, 10)),
            line(1010, Stage::Paused, serde_json::Value::Null, serde_json::Value::Null),
            line(1020, Stage::Applied, w(90, 10), w(50, 50)),
        ];
        let sides = vec!["production".to_string(), "staging".to_string()];
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let curves = weight_curves(&lines, &sides, t(1000), t(1030));
        assert_eq!(curves[1].label, "staging");
        assert_eq!(
            curves[1].points,
            [(1000, 0.0), (1001, 0.0), (1001, 10.0), (1005, 10.0), (1020, 10.0), (1020, 50.0), (1030, 50.0)]
        );
        assert_eq!(curves[0].points.last(), Some(&(1030, 50.0)));
        assert!(weight_curves(&lines[3..4], &sides, t(1000), t(1030))[0].points.is_empty(), "no change, no line");
        // A dual-stack shift whose types weighed the sides otherwise has each
        // type's before: the change is plotted, on A's. It was dropped.
        let by_type = serde_json::json!({"A": w(90, 10), "AAAA": w(100, 0)});
        let dual = [line(1001, Stage::Applied, by_type, w(50, 50))];
        let curves = weight_curves(&dual, &sides, t(1000), t(1030));
        assert_eq!(curves[1].points, [(1000, 10.0), (1001, 10.0), (1001, 50.0), (1030, 50.0)]);
    }

    /// A third environment (one no weight is audited for) left the plot
    /// empty: every line lacked its weight.
    #[test]
    fn the_weight_plot_follows_the_rollout_pair_whatever_other_environments_there_are() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks/demo.toml")).unwrap();
        let third = "[environments.legacy]\ninstances = { tags = { Environment = \"legacy\" } }\n\n[dns]";
        let rb =
            crate::runbook::parse("demo.toml", &text.replacen("[dns]", third, 1)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rb.environments.len(), 3);
        let w = |p: u8, s: u8| serde_json::json!({"production": p, "staging": s});
        let lines = vec![line(1001, Stage::Applied, w(100, 0), w(90, 10))];
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let report = build(&rb, &[], lines, &[], (t(1000), t(1030)), 60);
        let weights = &report.plots[0];
        assert_eq!(weights.id, "weights");
        let staging = weights.curves.iter().find(|c| c.label == "staging").expect("a staging curve");
        assert_eq!(staging.points, [(1000, 0.0), (1001, 0.0), (1001, 10.0), (1030, 10.0)]);
    }

    #[test]
    fn the_window_is_the_audit_s_first_to_last_line_and_lines_are_cut_to_it() {
        let n = serde_json::Value::Null;
        let lines = vec![line(2000, Stage::Done, n.clone(), n.clone()), line(1000, Stage::Intent, n.clone(), n)];
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(audit_window(&lines), Some((t(1000), t(2000))));
        assert_eq!(audit_window(&[]), None);
        let cut = lines_in(&lines, t(0), t(1500));
        assert_eq!(cut.iter().map(|l| l.stage).collect::<Vec<_>>(), [Stage::Intent]);
    }

    /// A side with two target groups: its second group's requests, errors
    /// and latency are the side's too, each named; the load balancer's own
    /// 5xx is one series.
    #[test]
    fn each_target_group_of_a_side_is_plotted_and_named() {
        let d = SideDimensions {
            environment: "staging".into(),
            load_balancer: Some("app/staging-alb/1".into()),
            target_groups: vec!["targetgroup/web/1".into(), "targetgroup/api/2".into()],
        };
        let keys = traffic_keys(&d);
        let labels: Vec<String> = keys.iter().filter(|(p, _)| p == "5xx").map(|(_, k)| traffic_label(&d, k)).collect();
        assert_eq!(
            labels,
            [
                "staging web HTTPCode_Target_5XX_Count Sum",
                "staging api HTTPCode_Target_5XX_Count Sum",
                "staging HTTPCode_ELB_5XX_Count Sum"
            ]
        );
        assert_eq!(keys.iter().filter(|(p, _)| p == "requests").count(), 2);
        assert_eq!(keys.iter().filter(|(p, _)| p == "latency").count(), 4);
        let one = SideDimensions { target_groups: vec!["targetgroup/web/1".into()], ..d };
        let labels: Vec<String> = traffic_keys(&one).iter().map(|(_, k)| traffic_label(&one, k)).collect();
        assert_eq!(labels[0], "staging RequestCount Sum", "one group: the side's name alone");
    }

    #[test]
    fn a_rate_needs_a_non_zero_denominator_at_the_same_time() {
        assert_eq!(ratio(&[(60, 2.0), (120, 1.0), (180, 5.0)], &[(60, 4.0), (120, 0.0)]), [(60, 0.5)]);
    }
}
