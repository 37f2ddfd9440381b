//! `cutover plan`: the runbook as a person reads it before the window.

use std::fmt::Write;

use crate::runbook::duration::format_duration;
use crate::runbook::*;
use crate::status::checks::check_name;

pub fn render_plan(rb: &Runbook) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{} ({})", rb.title, rb.name);
    if !rb.description.is_empty() {
        let _ = writeln!(o, "{}", rb.description);
    }
    if rb.production {
        let _ =
            writeln!(o, "PRODUCTION account{}", rb.account_id.as_ref().map(|a| format!(" {a}")).unwrap_or_default());
    }
    if rb.has_side_access() {
        let _ = writeln!(o, "\nAccounts and regions");
        for line in side_mapping(rb) {
            let _ = writeln!(o, "  {line}");
        }
    }
    let _ = writeln!(o, "\nEnvironments");
    for e in rb.environments.values() {
        let sel = match &e.instances {
            InstanceSelector::Tags(t) => t.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            InstanceSelector::Ids(ids) => ids.join(","),
        };
        let _ = writeln!(
            o,
            "  {:<14} {}  lb={}  target groups=[{}]  instances={}  redis=[{}]",
            e.name,
            e.label,
            e.load_balancer.as_deref().unwrap_or("-"),
            e.target_groups.join(", "),
            sel,
            e.redis.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let d = &rb.dns;
    let _ = writeln!(o, "\nDNS  {} {} in {} (TTL {}s)", d.record, d.record_types.join("+"), d.zone, d.ttl);
    let _ = writeln!(
        o,
        "  a step waits the larger of this TTL and the live records' (what resolvers hold; read when the rollout starts)"
    );
    for (env, id) in &d.set_identifiers {
        let w = d.initial_weights.get(env).map_or("-".into(), |w| w.to_string());
        let _ = writeln!(o, "  {env:<14} set identifier {id:<16} initial weight {w}");
    }
    let r = &rb.rollout;
    let ttl = std::time::Duration::from_secs(u64::from(d.ttl));
    let last = r.steps.len().saturating_sub(1);
    let hold = |i: usize| if i == last { r.soak.max(r.bake) } else { r.soak };
    let alarm_lag = r.alarm_lag();
    let total: std::time::Duration = (0..r.steps.len()).map(|i| hold(i) + alarm_lag + ttl).sum();
    let _ = writeln!(o, "\nRollout  {} → {}", r.from, r.to);
    for (i, s) in r.steps.iter().enumerate() {
        let _ = writeln!(
            o,
            "  step {}: {} {}% / {} {}%  then {} {}",
            i + 1,
            r.from,
            100 - s,
            r.to,
            s,
            if hold(i) > r.soak { "bake" } else { "soak" },
            format_duration(hold(i))
        );
    }
    let lag = if alarm_lag.is_zero() { String::new() } else { " + the alarms' lag".to_string() };
    let _ = writeln!(o, "  at least {} in all (soak or bake{lag} + one TTL per step)", format_duration(total));
    for g in &r.gates {
        let what = match &g.kind {
            GateKind::AlarmOk { alarms, lag, .. } => {
                format!("alarms OK: {}, read {} past each soak's end", alarms.join(", "), format_duration(*lag))
            }
            GateKind::HealthyTargets { environment, min } => format!("≥ {min} healthy targets in {environment}"),
            GateKind::HttpHealth { environment } => format!("/health 200 on every {environment} instance"),
            GateKind::RedisReachable { environment } => format!("Redis reachable from every {environment} instance"),
            GateKind::RedisHitRate { redis, min_percent, min_lookups } => {
                format!("{redis} hit rate ≥ {min_percent}% between two readings, over {min_lookups} lookups or more")
            }
            GateKind::Metric { environment, metric, stat, max, .. } => {
                format!("{environment} {} {} ≤ {max}", metric.cloudwatch_name(), stat.cloudwatch_name())
            }
            GateKind::Compare { metric, stat, factor, min_requests } => {
                let least = min_requests.map(|n| format!(", on {n} requests or more a side")).unwrap_or_default();
                format!(
                    "{} {} of {} ≤ {factor}× {}{least}",
                    metric.cloudwatch_name(),
                    stat.cloudwatch_name(),
                    r.to,
                    r.from
                )
            }
        };
        let no_data = match g.no_data {
            NoDataPolicy::Fail => "fail",
            NoDataPolicy::Pause => "pause",
            NoDataPolicy::Pass => "pass",
        };
        let _ = writeln!(
            o,
            "  gate: {what}  (every {}, abort after {} failure(s), pause after {} error(s) in a row, no data → {no_data})",
            format_duration(g.interval),
            g.failure_limit,
            g.consecutive_error_limit
        );
    }
    for (i, p) in rb.phases.iter().enumerate() {
        let _ = writeln!(o, "\nPhase {}: {} ({})", i + 1, p.title, p.id);
        for it in &p.items {
            let kind = match &it.kind {
                ItemKind::Manual => "manual".to_string(),
                ItemKind::Check { check } => format!("check {}", check_name(check)),
                ItemKind::Action { action } => format!("action {}", action.summary()),
            };
            let rb = it.rollback.as_ref().map(|a| format!("  (rollback: {})", a.summary())).unwrap_or_default();
            let gate = it
                .not_before
                .as_ref()
                .map(|nb| {
                    format!("  (not before {} after {})", crate::runbook::duration::format_duration(nb.wait), nb.after)
                })
                .unwrap_or_default();
            let _ = writeln!(o, "  [ ] {:<18} {:<28} {}{rb}{gate}", it.id, kind, it.title);
        }
    }
    o
}

/// Each side's account, region and credentials as the runbook says them,
/// with the defaults that fill what it leaves out.
pub fn side_mapping(rb: &Runbook) -> Vec<String> {
    rb.sides()
        .iter()
        .map(|side| {
            let a = rb.access(side);
            let account = rb.side_account(side).unwrap_or_else(|| "any".into());
            let region = match (&a.region, &rb.region) {
                (Some(r), _) => r.clone(),
                (None, Some(r)) => format!("{r} (the runbook's; --region overrides)"),
                (None, None) => "--region or the standard chain".into(),
            };
            let mut via = vec![a.profile.map_or("--profile or the standard chain".into(), |p| format!("profile {p}"))];
            if let Some(role) = &a.role_arn {
                let x = if a.external_id.is_some() { " with an external id" } else { "" };
                via.push(format!("then role {role}{x}"));
            }
            format!("{:<24} account {account}  region {region}  via {}", side.to_string(), via.join(", "))
        })
        .collect()
}
