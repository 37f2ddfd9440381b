//! Measuring the rollout's gates. Status-based gates read the live snapshot
//! (stale data is a provider error, never a pass); metric gates query
//! CloudWatch for exactly their statistic over the soak so far.

use std::time::{Duration, SystemTime};

use crate::aws::Clients;
use crate::aws::cloudwatch::{SeriesKey, metric_series};
use crate::aws::elb::arn_suffix;
use crate::engine::Measurement;
use crate::live::HealthProbe;
use crate::runbook::{Check, GateKind, Metric, Runbook, Stat};
use crate::status::{CheckOutcome, Snapshot, View};

fn fresh<'a, T>(v: &'a View<T>, what: &str) -> Result<&'a T, Measurement> {
    match (&v.value, v.stale, &v.error) {
        (Some(x), false, _) => Ok(x),
        (_, _, Some(e)) => Err(Measurement::Error(format!("{what}: {e}"))),
        _ => Err(Measurement::Error(format!("{what} not read yet"))),
    }
}

/// A gate judged on the live snapshot; `None` for metric gates.
pub fn from_snapshot(rb: &Runbook, g: &GateKind, snap: &Snapshot) -> Option<Measurement> {
    Some(match g {
        GateKind::AlarmOk { alarms } => {
            let states = match fresh(&snap.alarms, "alarms") {
                Ok(s) => s,
                Err(m) => return Some(m),
            };
            let mut missing_data = false;
            for name in alarms {
                match states.iter().find(|a| &a.name == name).map(|a| a.state.as_str()) {
                    Some("OK") => {}
                    Some("INSUFFICIENT_DATA") => missing_data = true,
                    Some(state) => return Some(Measurement::Fail(format!("alarm {name} is {state}"))),
                    None => return Some(Measurement::Error(format!("alarm {name} was not read"))),
                }
            }
            if missing_data { Measurement::NoData } else { Measurement::Pass }
        }
        GateKind::HealthyTargets { environment, min } => {
            let Some(env) = snap.environment(environment) else {
                return Some(Measurement::Error(format!("no {environment}")));
            };
            match fresh(&env.aws, environment) {
                Err(m) => m,
                Ok(aws) => {
                    let healthy: usize = aws.target_groups.iter().map(|tg| tg.healthy).sum();
                    if healthy >= *min as usize {
                        Measurement::Pass
                    } else {
                        Measurement::Fail(format!("{healthy} healthy targets in {environment}, need {min}"))
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
            let mut no_data = aws.instances.is_empty();
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
        GateKind::Metric { .. } | GateKind::Compare { .. } => return None,
    })
}

fn aggregate(stat: Stat, points: &[(i64, f64)]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let vals = points.iter().map(|p| p.1);
    Some(match stat {
        Stat::Sum | Stat::SampleCount => vals.sum(),
        Stat::Average => vals.sum::<f64>() / points.len() as f64,
        Stat::Minimum => vals.fold(f64::INFINITY, f64::min),
        // A percentile over periods: the worst period's, to stay on the safe side.
        Stat::Maximum | Stat::Percentile(_) => vals.fold(f64::NEG_INFINITY, f64::max),
    })
}

/// A metric or compare gate: one GetMetricData over `[since, now]`.
pub async fn metric(clients: &Clients, g: &GateKind, snap: &Snapshot, rb: &Runbook, since: SystemTime) -> Measurement {
    let key = |env: &str, metric: Metric, stat: Stat| -> Option<SeriesKey> {
        let aws = snap.environment(env)?.aws.value.as_ref()?;
        let tg = aws.target_groups.first()?;
        let lb = aws.load_balancer.as_ref().map(|l| arn_suffix(&l.arn));
        Some(SeriesKey {
            environment: env.to_string(),
            target_group: arn_suffix(&tg.arn),
            load_balancer: lb,
            metric,
            stat,
        })
    };
    let window = SystemTime::now().duration_since(since).unwrap_or(Duration::ZERO).max(Duration::from_secs(60));
    let keys: Vec<SeriesKey> = match g {
        GateKind::Metric { environment, metric, stat, .. } => key(environment, *metric, *stat).into_iter().collect(),
        GateKind::Compare { metric, stat, .. } => {
            [&rb.rollout.to, &rb.rollout.from].iter().filter_map(|e| key(e, *metric, *stat)).collect()
        }
        _ => return Measurement::Error("not a metric gate".into()),
    };
    if keys.is_empty() {
        return Measurement::Error("the target groups of the gate's environment are not known yet".into());
    }
    let series = match metric_series(&clients.cloudwatch, &keys, window, 60).await {
        Ok(s) => s,
        Err(e) => return Measurement::Error(e.to_string()),
    };
    let since_s = since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64 - 60).unwrap_or(0);
    let value = |i: usize| -> Option<f64> {
        let pts: Vec<(i64, f64)> = series.get(i)?.points.iter().filter(|p| p.0 >= since_s).copied().collect();
        aggregate(keys[i].stat, &pts)
    };
    match g {
        GateKind::Metric { metric, max, environment, .. } => match value(0) {
            None => Measurement::NoData,
            Some(v) if v <= *max => Measurement::Pass,
            Some(v) => Measurement::Fail(format!("{environment} {} = {v:.3} > {max}", metric.cloudwatch_name())),
        },
        GateKind::Compare { metric, factor, .. } => match (value(0), value(1)) {
            (Some(new), Some(old)) if new <= factor * old => Measurement::Pass,
            (Some(new), Some(old)) => Measurement::Fail(format!(
                "{} new side {new:.3} > {factor} × old side {old:.3}",
                metric.cloudwatch_name()
            )),
            _ => Measurement::NoData,
        },
        _ => unreachable!("matched above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_per_statistic_and_empty_is_no_value() {
        let p = [(0, 1.0), (60, 3.0), (120, 2.0)];
        assert_eq!(aggregate(Stat::Sum, &p), Some(6.0));
        assert_eq!(aggregate(Stat::Average, &p), Some(2.0));
        assert_eq!(aggregate(Stat::Minimum, &p), Some(1.0));
        assert_eq!(aggregate(Stat::Maximum, &p), Some(3.0));
        assert_eq!(aggregate(Stat::Percentile(99.0), &p), Some(3.0));
        assert_eq!(aggregate(Stat::Sum, &[]), None, "no data is not zero");
    }
}
