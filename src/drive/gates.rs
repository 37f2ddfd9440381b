//! Measuring the rollout's gates. Status-based gates read the live snapshot
//! (stale data is a provider error, never a pass); metric gates query
//! CloudWatch for exactly their statistic over the soak so far.

use std::time::{Duration, SystemTime};

use crate::aws::SideClients;
use crate::aws::cloudwatch::{AlarmState, Dimensions, SeriesKey, Total, metric_totals_by_side, query_dimensions};
use crate::aws::elb::arn_suffix;
use crate::engine::Measurement;
use crate::live::{HealthProbe, LiveState};
use crate::runbook::{Check, GateKind, InsufficientData, Metric, Runbook, Stat};
use crate::status::{CheckOutcome, Snapshot, View};

fn fresh<'a, T>(v: &'a View<T>, what: &str) -> Result<&'a T, Measurement> {
    match (&v.value, v.stale, &v.error) {
        (Some(x), false, _) => Ok(x),
        (_, _, Some(e)) => Err(Measurement::Error(format!("{what}: {e}"))),
        _ => Err(Measurement::Error(format!("{what} not read yet"))),
    }
}

/// When every source a snapshot gate reads has last reported (success or
/// error): the gate is judged again only on a newer reading, so one failed
/// poll is one error, not one per gate interval until the next poll. `None`
/// for metric gates (each query is its own reading) or before any report.
pub fn reading(state: &LiveState, g: &GateKind) -> Option<SystemTime> {
    let env = |name: &str| state.environments.get(name);
    let health_of = |name: &str| -> Vec<Option<SystemTime>> {
        let ids = env(name).and_then(|e| e.value.as_ref()).map(|d| d.instances.iter().map(|i| i.id.clone()));
        ids.into_iter().flatten().map(|id| state.health.get(&id).and_then(|h| h.last_outcome())).collect()
    };
    let times: Vec<Option<SystemTime>> = match g {
        GateKind::AlarmOk { .. } => vec![state.alarms.last_outcome()],
        GateKind::HealthyTargets { environment, .. } => vec![env(environment).and_then(|e| e.last_outcome())],
        GateKind::HttpHealth { environment } => {
            let mut t = health_of(environment);
            t.push(env(environment).and_then(|e| e.last_outcome()));
            t
        }
        GateKind::RedisReachable { environment } => {
            let mut t = health_of(environment);
            t.push(env(environment).and_then(|e| e.last_outcome()));
            t.extend(state.redis.values().map(|r| r.last_outcome()));
            t
        }
        GateKind::RedisHitRate { redis, .. } => vec![state.redis.get(redis).and_then(|r| r.last_outcome())],
        GateKind::Metric { .. } | GateKind::Compare { .. } => return None,
    };
    // The oldest source bounds the reading; one never polled does not hold the others back.
    times.into_iter().flatten().min()
}

/// What a snapshot gate's reading covers: for an alarm gate, the requests
/// until `lag` before its alarms were read (the state read at the soak's end
/// has not judged the soak's last minutes yet). `None` for gates on live
/// state, which has no lag, and metric gates (their query says).
pub fn snapshot_covers(state: &LiveState, g: &GateKind) -> Option<SystemTime> {
    match g {
        GateKind::AlarmOk { lag, .. } => state.alarms.updated_at.and_then(|t| t.checked_sub(*lag)),
        _ => None,
    }
}

/// What a gate needs this tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    Wait,
    Measure,
    /// No new reading of its sources for this long: an error, never a wait
    /// without end.
    Stalled(Duration),
}

/// Its interval not over: wait. A reading it has not judged (or a metric
/// gate, whose query is the reading): measure. The same reading for
/// 3 × interval, at least 60 s: its sources are stuck or backing off.
pub fn due(
    interval: Duration,
    since_measured: Option<Duration>,
    reading: Option<SystemTime>,
    judged: Option<SystemTime>,
) -> Due {
    let Some(since) = since_measured else { return Due::Measure };
    if since < interval {
        return Due::Wait;
    }
    if reading.is_none() || reading != judged {
        return Due::Measure;
    }
    if since >= (interval * 3).max(Duration::from_secs(60)) { Due::Stalled(since) } else { Due::Wait }
}

/// A failure when the rollout's `to` side has a weight but gets no traffic
/// (its health check fails, or its alias target has no healthy target): no
/// gate may pass a side that receives nothing. An error when whether it
/// does is unknown.
pub fn to_side_gets_no_traffic(rb: &Runbook, snap: &Snapshot) -> Option<Measurement> {
    let to = &rb.rollout.to;
    // Unread or stale, the weights and health may be from before the step's
    // shift: no evidence either way.
    let sides = match fresh(&snap.traffic, &format!("whether {to} gets traffic (Route53)")) {
        Ok(sides) => sides,
        Err(m) => return Some(m),
    };
    let side = sides.iter().find(|s| s.is(to))?;
    // Gone, it gets nothing; an error, not a failure, since no rollback can
    // be planned over a missing record (the rollout pauses for a person).
    if side.weight.is_none() {
        return Some(Measurement::Error(format!(
            "{to} gets no traffic: its weighted record `{}` is not in Route53",
            side.set_identifier
        )));
    }
    if let Some(unknown) = &side.traffic_unknown {
        // A side that may get nothing passes no gate: its quiet is no evidence.
        return Some(Measurement::Error(format!("cannot tell whether {to} gets traffic: {unknown}")));
    }
    let why = side.no_traffic.as_ref()?;
    Some(Measurement::Fail(format!("{to} gets no traffic at weight {}: {why}", side.weight.unwrap_or(0))))
}

/// Why an alarm gate's states do not cover its soak, if they do not: a
/// metric alarm under it whose period on AWS is longer than the runbook
/// declares. The gate's default `lag` is counted from the declared periods,
/// so such an alarm may not yet have judged the soak's last minutes.
fn longer_than_declared(rb: &Runbook, alarms: &[String], states: &[AlarmState]) -> Option<String> {
    alarms.iter().flat_map(|n| crate::runbook::metric_alarms_under(&rb.alarms, n)).find_map(|declared| {
        let state = states.iter().find(|s| s.name == declared.name)?;
        if state.state == "MISSING" {
            return Some(format!("alarm {} does not exist on AWS ({})", declared.name, state.reason));
        }
        let Some(actual) = state.period_seconds else {
            // A metric alarm always has one (its own, or its metrics'): one
            // not read leaves the soak's coverage unknown.
            return Some(format!(
                "alarm {} has no period cutover could read on AWS (a composite where the runbook declares a metric \
                 alarm?): whether it has judged the soak's last minutes is unknown",
                declared.name
            ));
        };
        if u64::from(actual) > declared.period.as_secs() {
            return Some(format!(
                "alarm {} has a period of {actual} s on AWS, longer than the runbook's {} s: it may not yet have \
                 judged the soak's last minutes; declare period = \"{actual}s\" under its [[alarms]] (the gate's \
                 default lag grows with it)",
                declared.name,
                declared.period.as_secs()
            ));
        }
        // M of N: it goes off on M breaching periods, so errors from the
        // soak's last minutes set it off M periods later.
        let m = state.datapoints_to_alarm.unwrap_or(1);
        let (on_aws, in_runbook) =
            (u64::from(actual) * u64::from(m), declared.period.as_secs() * u64::from(declared.evaluation_periods));
        (on_aws > in_runbook).then(|| {
            format!(
                "alarm {} goes off on {m} breaching periods of {actual} s on AWS ({on_aws} s), more than the \
                 runbook's {} of {} s: it may not yet have judged the soak's last minutes; declare \
                 evaluation_periods = {m} under its [[alarms]] (the gate's default lag grows with it)",
                declared.name,
                declared.evaluation_periods,
                declared.period.as_secs()
            )
        })
    })
}

/// A gate judged on the live snapshot; `None` for metric gates. Every gate
/// fails while the `to` side gets no traffic.
pub fn from_snapshot(rb: &Runbook, g: &GateKind, snap: &Snapshot) -> Option<Measurement> {
    if let Some(m) = to_side_gets_no_traffic(rb, snap) {
        return Some(m);
    }
    Some(match g {
        GateKind::AlarmOk { alarms, insufficient_data, .. } => {
            let states = match fresh(&snap.alarms, "alarms") {
                Ok(s) => s,
                Err(m) => return Some(m),
            };
            // Alarms without data: named, or under a named composite that is
            // OK (its rule reads a child without data as not in ALARM, so
            // its OK says nothing of that child).
            let mut insufficient = Vec::new();
            // An alarm that cannot see the side (or a composite built of
            // one) is no evidence when OK; one in ALARM still fails below.
            let blind = alarms.iter().find_map(|n| crate::status::checks::alarm_or_children_blind(rb, snap, states, n));
            let state_of = |name: &str| states.iter().find(|a| a.name == name).map(|a| a.state.as_str());
            for name in alarms {
                match state_of(name) {
                    Some("OK") => insufficient.extend(
                        crate::runbook::alarms_under(&rb.alarms, name)
                            .into_iter()
                            .filter(|c| &c.name != name && state_of(&c.name) == Some("INSUFFICIENT_DATA"))
                            .map(|c| format!("{} (under composite {name})", c.name)),
                    ),
                    Some("INSUFFICIENT_DATA") => insufficient.push(name.clone()),
                    Some(state) => return Some(Measurement::Fail(format!("alarm {name} is {state}"))),
                    None => return Some(Measurement::Error(format!("alarm {name} was not read"))),
                }
            }
            // Each alarm once.
            let mut seen = std::collections::BTreeSet::new();
            insufficient.retain(|n| seen.insert(n.split(" (under ").next().unwrap_or(n).to_string()));
            let insufficient = match insufficient.as_slice() {
                [] => None,
                [one] => Some(format!("alarm {one} is INSUFFICIENT_DATA")),
                many => Some(format!("alarms {} are INSUFFICIENT_DATA", many.join(", "))),
            };
            if let (Some(what), InsufficientData::Fail) = (&insufficient, insufficient_data) {
                return Some(Measurement::Fail(format!("{what} (insufficient_data = \"fail\")")));
            }
            if let Some(why) = longer_than_declared(rb, alarms, states).or(blind) {
                return Some(Measurement::Error(why));
            }
            match (insufficient, insufficient_data) {
                (None, _) => Measurement::Pass,
                (Some(what), InsufficientData::Pass) => {
                    Measurement::PassWithoutData(format!("{what} (insufficient_data = \"pass\")"))
                }
                (Some(_), _) => Measurement::NoData,
            }
        }
        GateKind::HealthyTargets { environment, min } => {
            let Some(env) = snap.environment(environment) else {
                return Some(Measurement::Error(format!("no {environment}")));
            };
            match fresh(&env.aws, environment) {
                Err(m) => m,
                Ok(aws) => {
                    // The listed groups must be those requests go to: one the
                    // load balancer routes to but the runbook leaves out is unread.
                    match aws.routing_gap(environment, &rb.dns.record) {
                        Err(crate::status::RoutingGap::Unknown(why)) => return Some(Measurement::Error(why)),
                        Err(crate::status::RoutingGap::NotRouted(why)) => return Some(Measurement::Fail(why)),
                        Ok(()) => {}
                    }
                    let groups = &aws.target_groups;
                    // Each target once, however many groups hold it, and only
                    // where it gets traffic: not in an AZ the load balancer
                    // leaves out, whatever its health check says. One instance
                    // in two groups on two ports is one machine; on two ports
                    // of one group (containers) it is two targets.
                    let outside = groups
                        .iter()
                        .flat_map(|tg| &tg.targets)
                        .filter(|t| t.target.state == "healthy" && t.zone_enabled == Some(false))
                        .count();
                    let mut ports_by_id: std::collections::BTreeMap<&str, usize> = Default::default();
                    for tg in groups {
                        let mut in_group: std::collections::BTreeMap<&str, std::collections::BTreeSet<Option<u16>>> =
                            Default::default();
                        for t in
                            tg.targets.iter().filter(|t| t.target.state == "healthy" && t.zone_enabled != Some(false))
                        {
                            in_group.entry(t.target.id.as_str()).or_default().insert(t.target.port);
                        }
                        for (id, ports) in in_group {
                            let most = ports_by_id.entry(id).or_default();
                            *most = (*most).max(ports.len());
                        }
                    }
                    let healthy: usize = ports_by_id.values().sum();
                    // Pooled, one group's targets would hide another's
                    // having none: its share of the requests gets 503s.
                    let bare = groups.iter().find(|tg| {
                        !tg.targets.iter().any(|t| t.target.state == "healthy" && t.zone_enabled != Some(false))
                    });
                    if let Some(tg) = bare {
                        Measurement::Fail(format!("target group {} of {environment} has no healthy target", tg.name))
                    } else if healthy >= *min as usize {
                        Measurement::Pass
                    } else {
                        let outside = match outside {
                            0 => String::new(),
                            n => format!(" ({n} more healthy in an AZ the load balancer does not enable)"),
                        };
                        Measurement::Fail(format!("{healthy} healthy targets in {environment}, need {min}{outside}"))
                    }
                }
            }
        }
        GateKind::HttpHealth { environment } => {
            let Some(env) = snap.environment(environment) else {
                return Some(Measurement::Error(format!("no {environment}")));
            };
            let aws = match fresh(&env.aws, environment) {
                Ok(a) => a,
                Err(m) => return Some(m),
            };
            // None found: nothing answers /health (as the http_ok check says).
            if aws.instances.is_empty() {
                return Some(Measurement::Fail(format!("no instance of {environment} found to answer /health")));
            }
            let mut no_data = false;
            for i in &aws.instances {
                match fresh(&i.health, "/health") {
                    Err(m) => return Some(m),
                    Ok(HealthProbe::NotProbed { .. }) => no_data = true,
                    Ok(p) if p.is_success() => {}
                    Ok(_) => {
                        return Some(Measurement::Fail(format!(
                            "{} /health is not 2xx",
                            i.instance.name.as_deref().unwrap_or(&i.instance.id)
                        )));
                    }
                }
            }
            if no_data { Measurement::NoData } else { Measurement::Pass }
        }
        GateKind::RedisReachable { environment } => {
            let check = Check::RedisReachable { environment: environment.clone() };
            match crate::status::checks::evaluate_one(rb, snap, &check) {
                (CheckOutcome::Pass, _) => Measurement::Pass,
                (CheckOutcome::Fail, d) => Measurement::Fail(d),
                (CheckOutcome::Unknown, d) => Measurement::Error(d),
            }
        }
        GateKind::RedisHitRate { redis, min_percent, min_lookups } => match redis_info(snap, redis) {
            Err(m) => m,
            Ok(info) => hit_measurement(redis, info.lookups.as_ref(), *min_percent, *min_lookups),
        },
        GateKind::Metric { .. } | GateKind::Compare { .. } => return None,
    })
}

/// The fresh INFO reading of `redis`, or the measurement saying why not.
fn redis_info<'a>(snap: &'a Snapshot, redis: &str) -> Result<&'a crate::live::RedisInfo, Measurement> {
    let r =
        snap.redis.iter().find(|r| r.name == redis).ok_or_else(|| Measurement::Error(format!("no Redis {redis}")))?;
    fresh(&r.view, &format!("INFO of {redis}"))
}

/// A hit-rate gate's measurement of `lookups` (None: not known).
fn hit_measurement(
    redis: &str,
    lookups: Option<&crate::analysis::hit_rate::Lookups>,
    min_percent: f64,
    min_lookups: u64,
) -> Measurement {
    use crate::analysis::hit_rate::{HitRate, judge};
    match judge(redis, lookups, min_percent, min_lookups) {
        HitRate::Pass(_) => Measurement::Pass,
        HitRate::Fail(d) => Measurement::Fail(d),
        HitRate::NoData(_) => Measurement::NoData,
    }
}

/// The counters a `redis_hit_rate` gate was last measured at (when they
/// were read): its next measurement judges every lookup since, not only
/// those of the last poll (2 s of a 30 s interval).
#[derive(Debug, Clone, PartialEq)]
pub struct HitBaseline {
    pub read_at: SystemTime,
    pub counters: Vec<crate::analysis::hit_rate::LookupCounters>,
}

/// A `redis_hit_rate` gate over the lookups since `baseline` (its last
/// measurement in this soak), or over the last poll's without one, with the
/// baseline for its next measurement. None for any other gate.
pub fn hit_rate_since(
    g: &GateKind,
    state: &LiveState,
    snap: &Snapshot,
    baseline: Option<&HitBaseline>,
) -> Option<(Measurement, Option<HitBaseline>)> {
    let GateKind::RedisHitRate { redis, min_percent, min_lookups } = g else { return None };
    let info = match redis_info(snap, redis) {
        Ok(info) => info,
        Err(m) => return Some((m, baseline.cloned())),
    };
    // Never no data, which a `no_data` policy could pass.
    if let Some(why) = crate::analysis::hit_rate::not_this_databases(redis, info.db, &info.other_dbs) {
        return Some((Measurement::Error(why), baseline.cloned()));
    }
    let current = state
        .redis
        .get(redis)
        .and_then(|s| s.updated_at)
        .filter(|_| !info.lookup_counters.is_empty())
        .map(|read_at| HitBaseline { read_at, counters: info.lookup_counters.clone() });
    let lookups = match (baseline, &current) {
        (Some(b), Some(c)) => {
            let seconds = c.read_at.duration_since(b.read_at).unwrap_or_default().as_secs_f64();
            crate::analysis::hit_rate::Lookups::between_servers(&b.counters, &c.counters, seconds)
        }
        // The soak's first measurement, or counters unknown at the last.
        (None, _) => info.lookups,
        // Counters not all known now: the lookups since are unknown.
        (Some(_), None) => None,
    };
    let m = hit_measurement(redis, lookups.as_ref(), *min_percent, *min_lookups);
    // Counters unknown now, or too few lookups since the baseline: the last
    // ones stay, so the next reading covers the whole interval since (the
    // lookups of a quiet cache add up until there are enough to judge).
    let too_few = lookups.is_some_and(|l| l.too_few(*min_lookups));
    let next = match baseline {
        Some(b) if too_few => Some(b.clone()),
        _ => current.or_else(|| baseline.cloned()),
    };
    Some((m, next))
}

/// A `redis_hit_rate` gate as a rollout measures it: as every gate of
/// [`from_snapshot`], no pass while the `to` side gets no traffic (a cache
/// the other side shares keeps its hit rate then); else
/// [`hit_rate_since`]. None for any other gate.
pub fn hit_rate_gate(
    rb: &Runbook,
    g: &GateKind,
    state: &LiveState,
    snap: &Snapshot,
    baseline: Option<&HitBaseline>,
) -> Option<(Measurement, Option<HitBaseline>)> {
    let (m, next) = hit_rate_since(g, state, snap, baseline)?;
    Some((to_side_gets_no_traffic(rb, snap).unwrap_or(m), next))
}

/// A metric gate's reading: the measurement, and the time its environment's
/// datapoints reach so far (the end of the newest minute of requests), which
/// the engine needs before it lets a soak end on them.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReading {
    pub measurement: Measurement,
    pub covers: Option<SystemTime>,
}

/// A metric or compare gate: one GetMetricData over `[since, now]`.
pub async fn metric(
    clients: &SideClients,
    g: &GateKind,
    snap: &Snapshot,
    rb: &Runbook,
    since: SystemTime,
) -> Measurement {
    metric_reading(clients, g, snap, rb, since).await.measurement
}

/// A metric or compare gate over `[since, now]`, each statistic over the
/// whole window as one period (a percentile over every request of the soak,
/// never the worst minute's), with the sample count it rests on.
pub async fn metric_reading(
    clients: &SideClients,
    g: &GateKind,
    snap: &Snapshot,
    rb: &Runbook,
    since: SystemTime,
) -> MetricReading {
    let error = |e: String| MetricReading { measurement: Measurement::Error(e), covers: None };
    let key = |env: &str, metric: Metric, stat: Stat| -> Option<SeriesKey> {
        let aws = snap.environment(env)?.aws.value.as_ref()?;
        let tg = aws.target_groups.first().map(|tg| arn_suffix(&tg.arn));
        let lb = aws.load_balancer.as_ref().map(|l| arn_suffix(&l.arn));
        Some(SeriesKey::new(env, tg.as_deref(), lb.as_deref(), metric, stat))
    };
    // A metric per target group is read for the one group a side lists
    // (validate refuses more): a side whose load balancer routes requests
    // to another too would have that group's unseen, its 5xx and latency
    // with them. A rate of the load balancer's own 5xx (a compare gate's)
    // is over all its requests, so another service's would dilute it.
    let one_group = |env: &str, metric: Metric, rate: bool| -> Result<(), String> {
        let Some(aws) = snap.environment(env).and_then(|e| e.aws.value.as_ref()) else { return Ok(()) };
        if rate && metric == Metric::Elb5xx {
            return aws.serves_only_listed(env);
        }
        if query_dimensions(metric) != Dimensions::TargetGroupLoadBalancer {
            return Ok(());
        }
        match aws.routing_gap(env, &rb.dns.record) {
            Err(crate::status::RoutingGap::Unknown(why) | crate::status::RoutingGap::NotRouted(why)) => Err(why),
            Ok(()) => Ok(()),
        }
    };
    let sides_read = match g {
        GateKind::Metric { environment, metric, .. } => one_group(environment, *metric, false),
        GateKind::Compare { metric, .. } => {
            one_group(&rb.rollout.to, *metric, true).and_then(|()| one_group(&rb.rollout.from, *metric, true))
        }
        _ => Ok(()),
    };
    if let Err(why) = sides_read {
        return error(why);
    }
    let mut keys: Vec<SeriesKey> = match g {
        GateKind::Metric { environment, metric, stat, .. } => match key(environment, *metric, *stat) {
            Some(k) => vec![k],
            None => return error(format!("{environment} has not been read from AWS yet")),
        },
        GateKind::Compare { metric, stat, .. } => {
            let (new, old) = (&rb.rollout.to, &rb.rollout.from);
            // Counts are compared as rates per request, so both sides' sums.
            let stat = if is_count(*metric) { Stat::Sum } else { *stat };
            let side =
                |env: &str| key(env, *metric, stat).ok_or_else(|| format!("{env} has not been read from AWS yet"));
            let keys = || -> Result<Vec<SeriesKey>, String> { compare_keys(side(new)?, side(old)?) };
            match keys() {
                Ok(keys) => keys,
                Err(e) => return error(e),
            }
        }
        _ => return error("not a metric gate".into()),
    };
    // What the data covers: each environment's requests, which an ALB
    // publishes every minute traffic flows (5xx counts only when there are some).
    let measured = keys.len();
    let envs: Vec<SeriesKey> = keys[..measured.min(2)].to_vec();
    for k in envs {
        let requests = SeriesKey { metric: Metric::RequestCount, stat: Stat::Sum, ..k };
        keys.push(requests.with_dimensions(query_dimensions(Metric::RequestCount)));
    }
    let (totals, covers) = match metric_totals_by_side(clients, &keys, since, SystemTime::now()).await {
        Ok(t) => t,
        Err(e) => return error(e.to_string()),
    };
    // A series that could not be asked for, or was not answered whole, is an
    // error, never "no data": the requests' too, which tell a side's missing
    // 5xx count from zero.
    if let Some(e) = totals.iter().find_map(|t| t.error.as_ref()) {
        return error(e.clone());
    }
    let covers = covered_by_judged_side(&covers[measured..]);
    let measurement = match g {
        GateKind::Metric { metric, max, environment, stat, min_requests } => {
            let Total { value, samples, .. } = &totals[0];
            let n = samples.unwrap_or(0.0);
            let what = if *metric == Metric::TargetResponseTime { "requests" } else { "samples" };
            // An ALB publishes no count for a minute without any: none
            // while requests were served is 0; none without requests is no
            // data (a side that got nothing has shown nothing).
            let requests = totals.get(1).and_then(|t| t.value).filter(|r| *r > 0.0);
            let value = match (value, is_count(*metric), requests) {
                (None, true, Some(_)) => Some(0.0),
                (v, _, _) => *v,
            };
            match value {
                None => Measurement::NoData,
                Some(_) if min_requests.is_some_and(|m| n < m as f64) => Measurement::NoData,
                Some(v) if v <= *max => Measurement::Pass,
                Some(v) => Measurement::Fail(format!(
                    "{environment} {} {} = {v:.3} over {n} {what} > {max}",
                    metric.cloudwatch_name(),
                    stat.cloudwatch_name()
                )),
            }
        }
        GateKind::Compare { metric, factor, min_requests, .. } => {
            let value = |i: usize| totals.get(i).and_then(|t| t.value);
            let side = |i: usize| Side { value: value(i), requests: value(i + 2) };
            compare(*metric, *factor, *min_requests, side(0), side(1))
        }
        _ => unreachable!("matched above"),
    };
    MetricReading { measurement, covers }
}

/// How far a gate's data reaches: the newest request datapoint of the side
/// it judges, first in `covers` (a metric gate's environment, a compare
/// gate's new side). The old side's newer minute says nothing of the new
/// side's (each load balancer publishes on its own schedule), and at the
/// last step the old side, at weight 0, stops publishing partway.
fn covered_by_judged_side(covers: &[Option<SystemTime>]) -> Option<SystemTime> {
    covers.first().copied().flatten()
}

/// The series a compare gate reads: the new and the old side's metric, then
/// for counts each side's requests over the same dimensions as its metric (a
/// target group's requests for target codes, the load balancer's for its own
/// codes), so the rate is a share of the requests it counts.
fn compare_keys(new: SeriesKey, old: SeriesKey) -> Result<Vec<SeriesKey>, String> {
    if new.dimensions == Dimensions::LoadBalancer
        && new.load_balancer.is_some()
        && new.load_balancer == old.load_balancer
    {
        return Err(format!(
            "both sides are behind load balancer {}, and AWS publishes {} only per load balancer: the sides \
             cannot be told apart; gate each side with a `metric` gate instead",
            new.load_balancer.as_deref().unwrap_or_default(),
            new.metric.cloudwatch_name()
        ));
    }
    let counts = is_count(new.metric);
    let mut keys = vec![new, old];
    if counts {
        let requests: Vec<SeriesKey> =
            keys.iter().map(|k| SeriesKey { metric: Metric::RequestCount, stat: Stat::Sum, ..k.clone() }).collect();
        keys.extend(requests);
    }
    Ok(keys)
}

/// Metrics that count events; compared as a rate per request.
fn is_count(m: Metric) -> bool {
    matches!(m, Metric::Target5xx | Metric::Elb5xx)
}

/// One side of a compare gate over the soak: the metric and its requests.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Side {
    value: Option<f64>,
    requests: Option<f64>,
}

/// The new side must stay within `factor` × the old side. Counts become rates
/// per request; a side that served requests but published no 5xx datapoint
/// had none (ALBs publish no zero). A side with no requests cannot be judged.
fn compare(metric: Metric, factor: f64, min_requests: Option<u64>, new: Side, old: Side) -> Measurement {
    let name = metric.cloudwatch_name();
    // RequestCount counts only requests a target was chosen for: with none
    // in service the load balancer answers 503 itself, counted in its 5xx
    // alone. Errors without a request beside them are every request failing,
    // not a rate that cannot be told.
    // (A target's 5xx always has its request counted: only the load
    // balancer's own can stand alone.)
    if metric == Metric::Elb5xx
        && let Some(errors) = new.value.filter(|v| *v > 0.0)
        && new.requests.is_none_or(|r| r <= 0.0)
    {
        return Measurement::Fail(format!(
            "{name}: new side {errors} with no request counted (the load balancer answered them before \
             choosing a target: none in service)"
        ));
    }
    // A rate or percentile of a few requests is noise: 0 errors in 20
    // requests passes beside 1% with no evidence of it.
    if let Some(least) = min_requests
        && [new, old].iter().any(|s| s.requests.unwrap_or(0.0) < least as f64)
    {
        return Measurement::NoData;
    }
    let (new_v, old_v, unit) = if is_count(metric) {
        let rate = |s: Side| match s.requests {
            Some(r) if r > 0.0 => Some(s.value.unwrap_or(0.0) / r),
            _ => None,
        };
        (rate(new), rate(old), " per request")
    } else {
        (new.value, old.value, "")
    };
    match (new_v, old_v) {
        (Some(n), Some(o)) if n <= factor * o => Measurement::Pass,
        (Some(n), Some(o)) => Measurement::Fail(format!("{name}{unit}: new side {n:.4} > {factor} × old side {o:.4}")),
        _ => Measurement::NoData,
    }
}

#[cfg(test)]
mod tests {
    /// A compare gate's data reaches the soak's end when the new side's
    /// does: the old side's newer minute stood in for the new side's, and
    /// the old side's last datapoint (at weight 0) must not hold it back.
    #[test]
    fn a_compare_gates_data_reaches_as_far_as_its_new_sides() {
        let t = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(super::covered_by_judged_side(&[Some(t(60)), Some(t(120))]), Some(t(60)));
        assert_eq!(super::covered_by_judged_side(&[Some(t(120)), Some(t(60))]), Some(t(120)));
        assert_eq!(super::covered_by_judged_side(&[None, Some(t(120))]), None, "the new side without requests");
        assert_eq!(super::covered_by_judged_side(&[]), None);
    }

    use super::*;

    #[test]
    fn a_gate_is_measured_on_new_readings_and_a_stalled_source_is_an_error() {
        let (s, t) = (Duration::from_secs, |n: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(n)));
        let i = s(5);
        assert_eq!(due(i, None, t(1), None), Due::Measure, "first time");
        assert_eq!(due(i, Some(s(2)), t(2), t(1)), Due::Wait, "interval not over");
        assert_eq!(due(i, Some(s(5)), t(2), t(1)), Due::Measure, "a new reading");
        assert_eq!(due(i, Some(s(5)), None, None), Due::Measure, "a metric gate queries each time");
        assert_eq!(due(i, Some(s(30)), t(1), t(1)), Due::Wait, "the same reading: wait for the next poll");
        assert_eq!(due(i, Some(s(60)), t(1), t(1)), Due::Stalled(s(60)), "no new reading for 60 s");
        assert_eq!(due(s(30), Some(s(60)), t(1), t(1)), Due::Wait, "3 × a 30 s interval is 90 s");
        assert_eq!(due(s(30), Some(s(90)), t(1), t(1)), Due::Stalled(s(90)));
    }

    #[test]
    fn a_gate_has_a_new_reading_only_when_every_source_it_reads_reported_again() {
        use crate::aws::ec2::Instance;
        use crate::live::fetch::EnvironmentData;
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let instance = Instance {
            id: "i-1".into(),
            name: None,
            state: "running".into(),
            instance_type: "t3.micro".into(),
            availability_zone: "a".into(),
            private_ip: None,
            ipv6_addresses: vec![],
            target_addresses: vec![],
            vpc_id: None,
            security_groups: vec![],
            tags: Default::default(),
        };
        let data = EnvironmentData {
            load_balancer: None,
            target_groups: vec![],
            instances: vec![instance],
            redis_groups: Default::default(),
            redis_groups_elsewhere: Default::default(),
            redis_groups_unread: Default::default(),
            redis_addresses: Default::default(),
            redis_addresses_unread: Default::default(),
            instance_groups: Default::default(),
            instance_groups_unread: None,
            group_names: Default::default(),
        };
        let mut st = LiveState::default();
        let targets = GateKind::HealthyTargets { environment: "new".into(), min: 1 };
        let http = GateKind::HttpHealth { environment: "new".into() };
        let metric = GateKind::Metric {
            environment: "new".into(),
            metric: Metric::Target5xx,
            stat: Stat::Sum,
            max: 0.0,
            min_requests: None,
        };
        assert_eq!(reading(&st, &targets), None, "nothing reported yet");
        st.environments.entry("new".into()).or_default().apply::<String>(t(10), Ok(data));
        assert_eq!(reading(&st, &targets), Some(t(10)));
        // A failed poll is a new reading (one error), kept until the next poll.
        st.environments.get_mut("new").unwrap().apply::<String>(t(13), Err("Throttling".into()));
        assert_eq!(reading(&st, &targets), Some(t(13)));
        // /health reports every 2 s, the environment every 3 s: the older bounds the reading.
        st.health.entry("i-1".into()).or_default().apply::<String>(t(14), Err("refused".into()));
        assert_eq!(reading(&st, &http), Some(t(13)));
        st.health.get_mut("i-1").unwrap().apply::<String>(t(16), Err("refused".into()));
        assert_eq!(reading(&st, &http), Some(t(13)), "no new environment poll yet");
        assert_eq!(reading(&st, &metric), None, "a metric query is its own reading");
    }

    /// One instance in two target groups is one healthy target, and one in
    /// an AZ the load balancer does not enable gets no traffic: neither
    /// makes up for a target that is down.
    #[test]
    fn healthy_targets_counts_each_target_once_and_only_where_it_gets_traffic() {
        use crate::aws::elb::{LoadBalancer, Target, TargetGroup};
        use crate::live::fetch::EnvironmentData;
        let rb = crate::runbook::parse("m.toml", include_str!("../../tests/runbooks/minimal.toml")).unwrap();
        let target = |id: &str, az: &str, state: &str| Target {
            id: id.into(),
            port: Some(80),
            availability_zone: Some(az.into()),
            state: state.into(),
            reason: None,
            description: None,
        };
        let group = |name: &str, targets: Vec<Target>| TargetGroup {
            name: name.into(),
            arn: format!("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/{name}/1"),
            load_balancer_arns: vec![],
            health_check_path: None,
            health_check_interval_seconds: None,
            attributes: Default::default(),
            targets,
        };
        let routed_snapshot = |groups: Vec<TargetGroup>, routes_to: &[&str]| {
            let arns: Vec<String> = routes_to
                .iter()
                .map(|n| format!("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/{n}/1"))
                .collect();
            let (routes_to, listeners) =
                (crate::aws::elb::Routing::Groups(arns.clone()), crate::aws::elb::Listeners::forwarding_to(arns));
            let data = EnvironmentData {
                load_balancer: Some(LoadBalancer {
                    name: "green-alb".into(),
                    arn: "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/green-alb/1".into(),
                    dns_name: "green.example".into(),
                    zones: vec!["eu-west-1a".into()],
                    vpc_id: None,
                    routes_to,
                    listeners,
                }),
                target_groups: groups,
                instances: vec![],
                redis_groups: Default::default(),
                redis_groups_elsewhere: Default::default(),
                redis_groups_unread: Default::default(),
                redis_addresses: Default::default(),
                redis_addresses_unread: Default::default(),
                instance_groups: Default::default(),
                instance_groups_unread: None,
                group_names: Default::default(),
            };
            let now = SystemTime::now();
            let mut st = LiveState::default();
            st.environments.entry("green".into()).or_default().apply::<String>(now, Ok(data));
            // Route53 read: green at weight 10, no health check.
            let record = |id: &str, weight: u8| crate::aws::route53::WeightedRecord {
                set_identifier: id.into(),
                record_type: "A".into(),
                weight,
                ..Default::default()
            };
            let traffic = crate::live::fetch::TrafficData {
                zone_id: "Z1".into(),
                sides: crate::live::fetch::sides(&rb, &[record("blue", 90), record("green", 10)]),
                last_change: None,
                rollout: None,
                rollout_unread: None,
                audit_unread: None,
                shared_by: None,
                types_differ: None,
                unlisted_other_types: None,
            };
            st.traffic.apply::<String>(now, Ok(traffic));
            crate::status::snapshot(&rb, &st, "eu-west-1", now)
        };
        // The load balancer routes to every group given.
        let snapshot_of = |groups: Vec<TargetGroup>| {
            let names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
            routed_snapshot(groups, &names.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let judge = |groups: Vec<TargetGroup>, min: u32| {
            let gate = GateKind::HealthyTargets { environment: "green".into(), min };
            from_snapshot(&rb, &gate, &snapshot_of(groups)).unwrap()
        };
        let both = || vec![target("i-1", "eu-west-1a", "healthy"), target("i-2", "eu-west-1a", "unhealthy")];
        assert_eq!(
            judge(vec![group("web", both()), group("api", both())], 2),
            Measurement::Fail("1 healthy targets in green, need 2".into()),
            "i-1 twice is one target"
        );
        let outside = vec![target("i-1", "eu-west-1a", "healthy"), target("i-3", "eu-west-1b", "healthy")];
        assert_eq!(
            judge(vec![group("web", outside)], 2),
            Measurement::Fail(
                "1 healthy targets in green, need 2 (1 more healthy in an AZ the load balancer does not enable)".into()
            )
        );
        // One instance in two groups on two ports is one machine: one target.
        let on_port = |port: u16| vec![Target { port: Some(port), ..target("i-1", "eu-west-1a", "healthy") }];
        assert_eq!(
            judge(vec![group("web", on_port(80)), group("api", on_port(8080))], 2),
            Measurement::Fail("1 healthy targets in green, need 2".into()),
            "i-1 on 80 in web and on 8080 in api is one target"
        );
        // Two ports of one instance in one group are two targets (containers on one host).
        let containers = [on_port(32768), on_port(32769)].concat();
        assert_eq!(judge(vec![group("web", containers.clone()), group("api", on_port(8080))], 2), Measurement::Pass);
        let two = vec![target("i-1", "eu-west-1a", "healthy"), target("i-2", "eu-west-1a", "healthy")];
        assert_eq!(judge(vec![group("web", two.clone()), group("api", two.clone())], 2), Measurement::Pass);
        assert_eq!(
            judge(vec![group("web", two.clone()), group("api", vec![target("i-9", "eu-west-1a", "unhealthy")])], 2),
            Measurement::Fail("target group api of green has no healthy target".into()),
            "enough in web does not make up for none in api"
        );
        // Only the groups the load balancer routes to count, and one it
        // routes to that the runbook leaves out is unread: an error.
        let gate = GateKind::HealthyTargets { environment: "green".into(), min: 2 };
        let one = vec![target("i-1", "eu-west-1a", "healthy")];
        let routed = |routes_to: &[&str]| {
            let groups = vec![group("web", one.clone()), group("old-web", two.clone())];
            from_snapshot(&rb, &gate, &routed_snapshot(groups, routes_to)).unwrap()
        };
        assert_eq!(
            routed(&["web"]),
            Measurement::Fail(
                "load balancer green-alb routes no requests to green's target group old-web (no listener rule \
                 forwards to it): add the rule, or take the group out of target_groups"
                    .into()
            ),
            "old-web's healthy targets do not count, and a listed group without requests is a failure"
        );
        assert_eq!(
            routed(&["web", "old-web", "api"]),
            Measurement::Error(
                "load balancer green-alb routes requests to target group api, which green's target_groups do not \
                 list, so its targets are not read; add it to target_groups"
                    .into()
            )
        );
        assert!(
            matches!(routed(&[]), Measurement::Fail(w) if w.contains("routes no requests to green's target group web, old-web")),
            "routed to none"
        );
        // No instance found: nothing answers /health, a failure (never no data).
        let http = GateKind::HttpHealth { environment: "green".into() };
        assert_eq!(
            from_snapshot(&rb, &http, &snapshot_of(vec![group("web", two)])).unwrap(),
            Measurement::Fail("no instance of green found to answer /health".into())
        );
    }

    #[test]
    fn compare_divides_each_count_by_the_requests_over_the_same_dimensions() {
        let side = |env: &str, lb: &str, metric: Metric| {
            SeriesKey::new(env, Some(&format!("targetgroup/{env}/1")), Some(lb), metric, Stat::Sum)
        };
        let keys =
            compare_keys(side("new", "app/a/1", Metric::Elb5xx), side("old", "app/b/2", Metric::Elb5xx)).unwrap();
        let shape: Vec<(&str, Metric, Dimensions)> =
            keys.iter().map(|k| (k.environment.as_str(), k.metric, k.dimensions)).collect();
        assert_eq!(
            shape,
            [
                ("new", Metric::Elb5xx, Dimensions::LoadBalancer),
                ("old", Metric::Elb5xx, Dimensions::LoadBalancer),
                ("new", Metric::RequestCount, Dimensions::LoadBalancer),
                ("old", Metric::RequestCount, Dimensions::LoadBalancer),
            ],
            "the load balancer's 5xx over the load balancer's requests"
        );
        let keys =
            compare_keys(side("new", "app/a/1", Metric::Target5xx), side("old", "app/b/2", Metric::Target5xx)).unwrap();
        assert!(keys.iter().all(|k| k.dimensions == Dimensions::TargetGroupLoadBalancer), "{keys:?}");
        let latency = compare_keys(
            side("new", "app/a/1", Metric::TargetResponseTime),
            side("old", "app/b/2", Metric::TargetResponseTime),
        )
        .unwrap();
        assert_eq!(latency.len(), 2, "latency is compared as it is, without requests");
    }

    #[test]
    fn compare_of_the_load_balancers_own_codes_on_one_shared_load_balancer_is_an_error() {
        let side =
            |env: &str| SeriesKey::new(env, Some("targetgroup/x/1"), Some("app/shared/1"), Metric::Elb5xx, Stat::Sum);
        let shared = compare_keys(side("new"), side("old"));
        assert!(matches!(&shared, Err(e) if e.contains("cannot be told apart")), "{shared:?}");
        // Target codes exist per target group, so a shared load balancer is fine for them.
        let target = |env: &str| {
            SeriesKey::new(
                env,
                Some(&format!("targetgroup/{env}/1")),
                Some("app/shared/1"),
                Metric::Target5xx,
                Stat::Sum,
            )
        };
        assert!(compare_keys(target("new"), target("old")).is_ok());
    }

    fn side(value: Option<f64>, requests: Option<f64>) -> Side {
        Side { value, requests }
    }

    #[test]
    fn compare_counts_as_rates_per_request() {
        // 10 errors in 1,000 requests (1%) against 50 in 10,000 (0.5%).
        let new = side(Some(10.0), Some(1000.0));
        let old = side(Some(50.0), Some(10000.0));
        assert_eq!(compare(Metric::Target5xx, 2.0, None, new, old), Measurement::Pass, "1% ≤ 2 × 0.5%");
        assert!(
            matches!(compare(Metric::Target5xx, 1.5, None, new, old), Measurement::Fail(m) if m.contains("per request"))
        );
        // Totals alone would have passed: 10 ≤ 1.5 × 50.
    }

    #[test]
    fn compare_treats_a_side_with_requests_but_no_5xx_datapoints_as_zero() {
        let clean = side(None, Some(1000.0));
        assert_eq!(compare(Metric::Target5xx, 1.0, None, clean, side(Some(3.0), Some(1000.0))), Measurement::Pass);
        assert!(matches!(
            compare(Metric::Target5xx, 10.0, None, side(Some(1.0), Some(1000.0)), clean),
            Measurement::Fail(_)
        ));
        assert_eq!(compare(Metric::Target5xx, 1.0, None, clean, clean), Measurement::Pass, "0 ≤ 0");
    }

    #[test]
    fn compare_without_requests_on_either_side_is_no_data() {
        let some = side(Some(1.0), Some(100.0));
        assert_eq!(compare(Metric::Target5xx, 1.0, None, side(None, None), some), Measurement::NoData);
        assert_eq!(compare(Metric::Target5xx, 1.0, None, some, side(Some(0.0), Some(0.0))), Measurement::NoData);
    }

    #[test]
    fn compare_fails_load_balancer_errors_on_the_new_side_without_a_request_counted() {
        // 503s the load balancer answered with no target in service: no RequestCount.
        for requests in [None, Some(0.0)] {
            let m = compare(Metric::Elb5xx, 2.0, None, side(Some(40.0), requests), side(None, Some(1000.0)));
            assert!(matches!(&m, Measurement::Fail(w) if w.contains("40 with no request counted")), "{m:?}");
        }
        // None on the new side and none counted stays no data.
        assert_eq!(
            compare(Metric::Elb5xx, 2.0, None, side(Some(0.0), None), side(None, Some(10.0))),
            Measurement::NoData
        );
    }

    /// 0 errors in 20 requests beside 1%: no evidence, not a pass; a p99
    /// of 20 requests is their worst, not a percentile.
    #[test]
    fn compare_on_fewer_requests_than_its_minimum_is_no_data() {
        let (few, many) = (side(None, Some(20.0)), side(Some(100.0), Some(10_000.0)));
        assert_eq!(compare(Metric::Target5xx, 1.0, None, few, many), Measurement::Pass, "without a minimum");
        assert_eq!(compare(Metric::Target5xx, 1.0, Some(500), few, many), Measurement::NoData);
        assert_eq!(compare(Metric::Target5xx, 1.0, Some(500), many, few), Measurement::NoData, "either side");
        let enough = side(None, Some(500.0));
        assert_eq!(compare(Metric::Target5xx, 1.0, Some(500), enough, many), Measurement::Pass);
        let (fast, slow) = (side(Some(0.05), Some(20.0)), side(Some(0.2), Some(10_000.0)));
        assert_eq!(compare(Metric::TargetResponseTime, 1.2, Some(100), fast, slow), Measurement::NoData);
        // Errors the load balancer answered alone fail whatever the minimum.
        let refused = compare(Metric::Elb5xx, 2.0, Some(500), side(Some(40.0), None), many);
        assert!(matches!(refused, Measurement::Fail(_)), "{refused:?}");
    }

    #[test]
    fn compare_latency_on_the_statistic_itself() {
        let (fast, slow) = (side(Some(0.05), None), side(Some(0.2), None));
        assert_eq!(compare(Metric::TargetResponseTime, 1.2, None, fast, slow), Measurement::Pass);
        assert!(matches!(compare(Metric::TargetResponseTime, 1.2, None, slow, fast), Measurement::Fail(_)));
        assert_eq!(compare(Metric::TargetResponseTime, 1.2, None, fast, side(None, None)), Measurement::NoData);
    }

    /// An alarm gate's reading covers the requests until `lag` before its
    /// alarms were last read well; a failed poll moves nothing.
    #[test]
    fn an_alarm_reading_covers_the_requests_until_its_lag_before_it_was_read() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let alarm = GateKind::AlarmOk {
            alarms: vec!["5xx".into()],
            insufficient_data: InsufficientData::Wait,
            lag: Duration::from_secs(240),
        };
        let mut st = LiveState::default();
        assert_eq!(snapshot_covers(&st, &alarm), None, "not read yet");
        st.alarms.apply::<String>(t(1000), Ok(Vec::new()));
        assert_eq!(snapshot_covers(&st, &alarm), Some(t(760)));
        st.alarms.apply::<String>(t(1010), Err("Throttling".into()));
        assert_eq!(snapshot_covers(&st, &alarm), Some(t(760)), "an error is no newer reading");
        let live = GateKind::HealthyTargets { environment: "new".into(), min: 1 };
        assert_eq!(snapshot_covers(&st, &live), None, "live state has no lag");
    }
}
