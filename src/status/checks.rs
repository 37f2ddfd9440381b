//! The runbook's check items, evaluated on a snapshot. Stale or missing data
//! gives `unknown`, never `pass`.

use std::time::Duration;

use serde::Serialize;

use super::{EnvironmentAws, Snapshot, View};
use crate::analysis::parity::{Difference, RedisRead, SideShape};
use crate::live::HealthProbe;
use crate::runbook::{Check, ItemKind, Runbook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Pass,
    Fail,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub phase: String,
    pub item: String,
    pub title: String,
    pub check: String,
    pub blocking: bool,
    pub outcome: CheckOutcome,
    pub detail: String,
}

type Verdict = (CheckOutcome, String);

fn pass(detail: impl Into<String>) -> Verdict {
    (CheckOutcome::Pass, detail.into())
}
fn fail(detail: impl Into<String>) -> Verdict {
    (CheckOutcome::Fail, detail.into())
}
fn unknown(detail: impl Into<String>) -> Verdict {
    (CheckOutcome::Unknown, detail.into())
}

/// The value if fresh, or why the check cannot be decided.
fn fresh<'a, T>(v: &'a View<T>, what: &str) -> Result<&'a T, Verdict> {
    match (&v.value, v.stale, &v.error) {
        (Some(x), false, _) => Ok(x),
        (_, _, Some(e)) => Err(unknown(format!("{what} unavailable: {e}"))),
        _ => Err(unknown(format!("{what} not read yet"))),
    }
}

fn env_aws<'a>(snap: &'a Snapshot, env: &str) -> Result<&'a EnvironmentAws, Verdict> {
    let e = snap.environment(env).ok_or_else(|| unknown(format!("environment {env} not in snapshot")))?;
    fresh(&e.aws, &format!("AWS data of {env}"))
}

fn targets_healthy(rb: &Runbook, snap: &Snapshot, env: &str) -> Verdict {
    let aws = match env_aws(snap, env) {
        Ok(aws) => aws,
        Err(v) => return v,
    };
    // Judged where the requests go: a group the load balancer routes to but
    // the runbook leaves out could be answering them with 503s.
    match aws.routing_gap(env, &rb.dns.record) {
        Err(super::RoutingGap::Unknown(why)) => unknown(why),
        Err(super::RoutingGap::NotRouted(why)) => fail(why),
        Ok(()) => judge_targets(env, &aws.target_groups),
    }
}

/// Every target healthy, in every target group: a group without targets
/// answers its listener rule with 503 however healthy the others are.
fn judge_targets(env: &str, groups: &[super::TargetGroupView]) -> Verdict {
    let targets: Vec<_> = groups.iter().flat_map(|tg| tg.targets.iter().map(move |t| (tg, t))).collect();
    if targets.is_empty() {
        return fail(format!("{env} has no registered targets"));
    }
    let empty: Vec<&str> = groups.iter().filter(|tg| tg.targets.is_empty()).map(|tg| tg.name.as_str()).collect();
    if !empty.is_empty() {
        return fail(format!("no targets registered in {} (its requests get 503)", empty.join(", ")));
    }
    let bad: Vec<String> = targets
        .iter()
        .filter(|(_, t)| t.target.state != "healthy")
        .map(|(tg, t)| {
            format!(
                "{} in {} is {} ({})",
                t.target.id,
                tg.name,
                t.target.state,
                t.target.reason.as_deref().unwrap_or("-")
            )
        })
        .collect();
    if bad.is_empty() { pass(format!("{} targets healthy", targets.len())) } else { fail(bad.join("; ")) }
}

fn zones_enabled(snap: &Snapshot, env: &str) -> Verdict {
    let aws = match env_aws(snap, env) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let targets: Vec<_> = aws.target_groups.iter().flat_map(|tg| tg.targets.iter()).collect();
    if targets.is_empty() {
        // No target in a disabled AZ because there is no target at all.
        return fail(format!("{env} has no targets: no AZ to check"));
    }
    if let Some(t) = targets.iter().find(|t| t.zone_enabled == Some(false)) {
        return fail(t.explanation.clone().unwrap_or_else(|| format!("{}: AZ not enabled", t.target.id)));
    }
    if targets.iter().any(|t| t.zone_enabled.is_none()) {
        return unknown("a target's AZ or the load balancer's zones are unknown");
    }
    pass(format!("every target's AZ is enabled ({} targets)", targets.len()))
}

fn each_instance(snap: &Snapshot, env: &str, judge: impl Fn(&super::InstanceView) -> Verdict) -> Verdict {
    let aws = match env_aws(snap, env) {
        Ok(a) => a,
        Err(v) => return v,
    };
    if aws.instances.is_empty() {
        return fail(format!("{env} has no instances"));
    }
    let verdicts: Vec<(String, Verdict)> = aws
        .instances
        .iter()
        .map(|i| (i.instance.name.clone().unwrap_or_else(|| i.instance.id.clone()), judge(i)))
        .collect();
    let of = |o: CheckOutcome| {
        verdicts.iter().filter(|(_, v)| v.0 == o).map(|(n, v)| format!("{n}: {}", v.1)).collect::<Vec<_>>()
    };
    let (failed, unknown_) = (of(CheckOutcome::Fail), of(CheckOutcome::Unknown));
    if !failed.is_empty() {
        fail(failed.join("; "))
    } else if !unknown_.is_empty() {
        unknown(unknown_.join("; "))
    } else {
        pass(format!("{} instances", verdicts.len()))
    }
}

fn http_ok(snap: &Snapshot, env: &str) -> Verdict {
    each_instance(snap, env, |i| match fresh(&i.health, "/health") {
        Err(v) => v,
        Ok(HealthProbe::Answered { status, .. }) if (200..300).contains(status) => pass("200"),
        Ok(HealthProbe::Answered { status, .. }) => fail(format!("/health answered {status}")),
        Ok(HealthProbe::Failed { error, .. }) => fail(format!("/health failed: {error}")),
        Ok(HealthProbe::NotProbed { reason }) => unknown(reason.clone()),
    })
}

fn redis_reachable(snap: &Snapshot, rb: &Runbook, env: &str) -> Verdict {
    let Some(environment) = rb.environment(env) else { return unknown(format!("no environment {env}")) };
    let used = &environment.uses_redis;
    // Sentinels found at run time (a `url_env` URL) whose port the runbook does not give.
    let mut unchecked = Vec::new();
    for name in used {
        if let Some(r) = snap.redis.iter().find(|r| &r.name == name) {
            let info = match fresh(&r.view, &format!("cutover's own PING of {name}")) {
                Ok(info) => info,
                Err(v) => return if r.view.error.is_some() { fail(v.1) } else { v },
            };
            // One server (or a Sentinel's master) that is a replica answers
            // PING and reads, and refuses every write (READONLY): a URL
            // naming a node that failed over, or a new Redis still
            // replicating from the old. A cluster's clients find its primaries.
            if info.nodes.is_empty() && info.role == "slave" {
                return fail(format!(
                    "cutover's own reading of {name}: it is a replica (role:slave), which refuses writes; point its \
                     URL at the primary, or end the replication (REPLICAOF NO ONE) if it is the new primary"
                ));
            }
            // A cluster: every node, replicas too (a down replica is one failover from an outage).
            let down: Vec<String> = info
                .nodes
                .iter()
                .filter(|n| !n.is_up())
                .map(|n| format!("{}: {}", n.describe(), n.error.as_deref().unwrap_or_default()))
                .collect();
            if !down.is_empty() {
                return fail(format!("cutover's own PING of {name}'s nodes: {}", down.join("; ")));
            }
            // Sentinel: every sentinel the URL names (clients ask them for the
            // master), each naming the master reached and able to fail it over.
            let wrong: Vec<String> = info
                .sentinels
                .iter()
                .filter_map(|s| s.error.as_ref().map(|e| format!("sentinel {}: {e}", s.addr)))
                .collect();
            if !wrong.is_empty() {
                return fail(format!("cutover's own reading of {name}'s sentinels: {}", wrong.join("; ")));
            }
            if !info.sentinels.is_empty() && rb.redis_endpoint(name).is_some_and(|ep| ep.sentinel_port.is_none()) {
                unchecked.push(format!(
                    "{name} is found through sentinels, and their security-group path is not checked: give \
                     sentinel_port (the port they listen on) in its runbook entry"
                ));
            }
        }
    }
    let verdict = each_instance(snap, env, instance_reaches_redis);
    match verdict.0 {
        CheckOutcome::Pass if !unchecked.is_empty() => unknown(unchecked.join("; ")),
        _ => verdict,
    }
}

/// One instance's way to its Redis endpoints: each security-group path,
/// and what its own /health says of Redis.
fn instance_reaches_redis(i: &super::InstanceView) -> Verdict {
    use crate::analysis::reachability::SgPath;
    let paths = i
        .sg_paths
        .iter()
        .map(|(ep, p)| (ep.clone(), p))
        .chain(i.sentinel_paths.iter().map(|(ep, p)| (format!("{ep}'s sentinels"), p)));
    // A path not judged (a group unread) is not known blocked: unknown,
    // unless something else shows Redis unreachable.
    let mut unjudged = Vec::new();
    for (to, path) in paths {
        match path {
            SgPath::Allowed { .. } => {}
            SgPath::Blocked { .. } => return fail(format!("security-group path to {to}: {}", path.describe())),
            SgPath::Unknown { .. } => unjudged.push(format!("security-group path to {to}: {}", path.describe())),
        }
    }
    let health = instance_health_of_redis(i);
    match health.0 {
        CheckOutcome::Fail => health,
        _ if !unjudged.is_empty() => unknown(unjudged.join("; ")),
        _ => health,
    }
}

/// What an instance's own /health says of Redis.
fn instance_health_of_redis(i: &super::InstanceView) -> Verdict {
    match fresh(&i.health, "/health") {
        Err(v) => v,
        Ok(HealthProbe::Answered { redis_ok: Some(true), .. }) => pass("ok"),
        Ok(HealthProbe::Answered { redis_ok: Some(false), redis_error, .. }) => {
            fail(format!("/health reports Redis down: {}", redis_error.as_deref().unwrap_or("?")))
        }
        Ok(HealthProbe::Answered { .. }) => unknown("/health does not report Redis"),
        Ok(HealthProbe::Failed { error, .. }) => fail(format!("/health failed: {error}")),
        Ok(HealthProbe::NotProbed { reason }) => unknown(reason.clone()),
    }
}

fn stickiness(snap: &Snapshot, env: &str, secs: u64) -> Verdict {
    let aws = match env_aws(snap, env) {
        Ok(a) => a,
        Err(v) => return v,
    };
    if aws.target_groups.is_empty() {
        return fail(format!("{env} has no target groups"));
    }
    let bad: Vec<String> = aws
        .target_groups
        .iter()
        .filter_map(|tg| {
            let a = &tg.attributes;
            let ok = a.stickiness_enabled == Some(true)
                && a.stickiness_type.as_deref() == Some("lb_cookie")
                && a.stickiness_duration_seconds.map(u64::from) == Some(secs);
            (!ok).then(|| {
                format!(
                    "{}: enabled={:?} type={} duration={}s (want lb_cookie {secs}s)",
                    tg.name,
                    a.stickiness_enabled.unwrap_or(false),
                    a.stickiness_type.as_deref().unwrap_or("-"),
                    a.stickiness_duration_seconds.map_or("-".to_string(), |d| d.to_string())
                )
            })
        })
        .collect();
    if bad.is_empty() { pass(format!("lb_cookie {secs}s")) } else { fail(bad.join("; ")) }
}

/// Why an alarm cannot see what it is meant to, if so: its ALB metric
/// under dimensions AWS never publishes it with, a count's statistic or
/// comparison that never goes off, or (declared in the
/// runbook for an environment) another load balancer or target group than
/// that environment's. Its OK then says nothing of the side.
pub fn alarm_blind(rb: &Runbook, snap: &Snapshot, a: &crate::aws::cloudwatch::AlarmState) -> Option<String> {
    if let Some(why) = &a.blind {
        return Some(format!("alarm {}: {why}", a.name));
    }
    let env = rb.alarms.iter().find(|d| d.name == a.name)?.environment.as_deref()?;
    if a.watches.is_empty() {
        return None;
    }
    let Some(aws) = snap.environment(env).and_then(|e| e.aws.value.as_ref()) else {
        return Some(format!("alarm {}: {env} is not read yet, so whose requests it watches is unknown", a.name));
    };
    let suffix = crate::aws::elb::arn_suffix;
    let lbs = own_load_balancers(aws.load_balancer.as_ref().map(|lb| lb.arn.as_str()), &aws.target_groups);
    let tgs: Vec<String> = aws.target_groups.iter().map(|tg| suffix(&tg.arn)).collect();
    let foreign = foreign_dimensions(&a.watches, &lbs, &tgs);
    (!foreign.is_empty()).then(|| {
        format!(
            "alarm {} is declared for {env} but watches {}, not {env}'s load balancer and target groups: it cannot \
             see {env}'s failures; point its dimensions at {env}'s, or correct its environment",
            a.name,
            foreign.join(", ")
        )
    })
}

/// The load balancers (ARN suffixes) whose requests are an environment's:
/// its own (`lb`), or, without one in the runbook, those its target groups
/// serve (none, for a single box: any is another's).
fn own_load_balancers(lb: Option<&str>, target_groups: &[super::TargetGroupView]) -> Vec<String> {
    let suffix = crate::aws::elb::arn_suffix;
    match lb {
        Some(arn) => vec![suffix(arn)],
        None => target_groups.iter().flat_map(|tg| &tg.load_balancer_arns).map(|arn| suffix(arn)).collect(),
    }
}

/// The `LoadBalancer` and `TargetGroup` dimensions of `watches` naming
/// another load balancer than one of `lbs`, or another target group than
/// one of `tgs` (ARN suffixes), as `Name=value`.
fn foreign_dimensions(watches: &[(String, String)], lbs: &[String], tgs: &[String]) -> Vec<String> {
    watches
        .iter()
        .filter(|(n, v)| match n.as_str() {
            "LoadBalancer" => !lbs.contains(v),
            _ => !tgs.contains(v),
        })
        .map(|(n, v)| format!("{n}={v}"))
        .collect()
}

/// Why `alarm`, or a metric alarm a composite `alarm` is built of (as the
/// runbook declares it), cannot see its side: the composite's OK rests on them.
/// Also why the runbook's word on what they are built of may be wrong: a
/// composite whose rule on AWS is not the runbook's rests on alarms cutover
/// did not look at.
pub fn alarm_or_children_blind(
    rb: &Runbook,
    snap: &Snapshot,
    states: &[crate::aws::cloudwatch::AlarmState],
    alarm: &str,
) -> Option<String> {
    let under = crate::runbook::alarms_under(&rb.alarms, alarm);
    let read: Vec<_> = under.iter().filter_map(|a| Some((*a, states.iter().find(|s| s.name == a.name)?))).collect();
    // The alarm itself missing is its callers' failure; one under it is
    // no alarm the composite's OK can rest on.
    let missing = read.iter().find(|(a, s)| a.name != alarm && s.state == "MISSING").map(|(a, s)| {
        format!(
            "alarm {}, which composite {alarm} rests on, does not exist where cutover reads it ({}): the \
             composite's OK says nothing of it",
            a.name, s.reason
        )
    });
    read.iter()
        .find_map(|(a, s)| declared_unlike_aws(a, s))
        .or(missing)
        .or_else(|| read.iter().find_map(|(_, s)| alarm_blind(rb, snap, s)))
}

/// Why the runbook's alarm is not the one on AWS, if so: a composite whose
/// rule there is another, or a composite on one side and a metric alarm on
/// the other. cutover judges a composite by the children the runbook's rule
/// names, so either way the OK may rest on an alarm it never looked at (one
/// that cannot see its side). An alarm not on AWS is said where it is read.
fn declared_unlike_aws(
    declared: &crate::runbook::Alarm,
    on_aws: &crate::aws::cloudwatch::AlarmState,
) -> Option<String> {
    if on_aws.state == "MISSING" {
        return None;
    }
    let name = &declared.name;
    match (declared.rule.as_deref(), on_aws.rule.as_deref()) {
        (None, None) => None,
        (Some(mine), Some(theirs)) => match crate::runbook::same_alarm_rule(mine, theirs) {
            Some(true) => None,
            Some(false) => Some(format!(
                "composite alarm {name}'s rule on AWS is `{theirs}`, not the runbook's `{mine}`: its OK may rest on \
                 alarms cutover does not look at; copy the rule on AWS into its [[alarms]] rule, declaring each \
                 alarm it names"
            )),
            // AWS's own is the one that may not read (AT_LEAST, say): the runbook's was validated.
            None => Some(format!(
                "composite alarm {name}'s rule on AWS, `{theirs}`, is not one cutover can read, so which alarms its \
                 OK rests on is unknown; write it with ALARM, OK, INSUFFICIENT_DATA, AND, OR, NOT and parentheses, \
                 as the runbook's `{mine}`"
            )),
        },
        (None, Some(theirs)) => Some(format!(
            "alarm {name} is a composite alarm on AWS (rule `{theirs}`), but the runbook declares a metric alarm: \
             its OK rests on alarms cutover does not look at; declare it with that rule, and each alarm it names"
        )),
        (Some(mine), None) => Some(format!(
            "alarm {name} is a metric alarm on AWS, but the runbook declares a composite (rule `{mine}`): its OK \
             rests on a metric cutover does not look at; declare it as the metric alarm it is"
        )),
    }
}

fn alarm_ok(rb: &Runbook, snap: &Snapshot, alarm: &str) -> Verdict {
    let alarms = match fresh(&snap.alarms, "alarms") {
        Ok(a) => a,
        Err(v) => return v,
    };
    // In ALARM it fails whatever else; OK is evidence only if it can see.
    match alarms.iter().find(|a| a.name == alarm) {
        Some(a) if a.state != "OK" => fail(format!("{} {}", a.state, a.reason)),
        Some(_) if let Some(why) = alarm_or_children_blind(rb, snap, alarms, alarm) => unknown(why),
        // A composite's rule reads a child without data as not in ALARM.
        Some(_)
            if let Some(child) = crate::runbook::alarms_under(&rb.alarms, alarm).into_iter().find(|c| {
                c.name != alarm && alarms.iter().any(|a| a.name == c.name && a.state == "INSUFFICIENT_DATA")
            }) =>
        {
            unknown(format!(
                "OK, but alarm {}, which it rests on, is INSUFFICIENT_DATA: its OK says nothing of it",
                child.name
            ))
        }
        Some(_) => pass("OK"),
        None => unknown(format!("alarm {alarm} not read")),
    }
}

fn key_counts(snap: &Snapshot, from: &str, to: &str, tolerance: u64) -> Verdict {
    let get = |n: &str| snap.redis.iter().find(|r| r.name == n);
    let (Some(a), Some(b)) = (get(from), get(to)) else { return unknown("Redis endpoints not in snapshot") };
    let (a, b) = match (fresh(&a.view, from), fresh(&b.view, to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(v), _) | (_, Err(v)) => return v,
    };
    for (name, info) in [(from, a), (to, b)] {
        if let Some(why) = info.master_unconfirmed() {
            return unknown(format!("{name}'s count may not be its master's: {why}"));
        }
    }
    use crate::analysis::key_counts::{KeyCounts, Side, judge};
    fn side<'a>(name: &'a str, r: &'a crate::live::RedisInfo, age_seconds: Option<f64>) -> Side<'a> {
        Side {
            name,
            keys: r.keys,
            db: r.db,
            run_ids: &r.run_ids,
            other_dbs: &r.other_dbs,
            age_seconds,
            replication: r.replication_id.as_deref().map(|id| (id, r.role == "slave")),
        }
    }
    let (a_age, b_age) = (get(from).and_then(|r| r.view.age_seconds), get(to).and_then(|r| r.view.age_seconds));
    match judge(&side(from, a, a_age), &side(to, b, b_age), tolerance) {
        KeyCounts::Pass(d) => pass(d),
        KeyCounts::Fail(d) => fail(d),
    }
}

/// The hit rate between the last two INFO readings; no lookups in that
/// interval is no reading (unknown), never a pass.
fn redis_hit_rate(snap: &Snapshot, redis: &str, min_percent: f64, min_lookups: u64) -> Verdict {
    use crate::analysis::hit_rate::{HitRate, judge};
    let Some(r) = snap.redis.iter().find(|r| r.name == redis) else {
        return unknown(format!("Redis {redis} not in snapshot"));
    };
    let info = match fresh(&r.view, &format!("INFO of {redis}")) {
        Ok(i) => i,
        Err(v) => return v,
    };
    if let Some(why) = crate::analysis::hit_rate::not_this_databases(redis, info.db, &info.other_dbs) {
        return unknown(why);
    }
    match judge(redis, info.lookups.as_ref(), min_percent, min_lookups) {
        HitRate::Pass(d) => pass(d),
        HitRate::Fail(d) => fail(d),
        HitRate::NoData(d) => unknown(d),
    }
}

fn shapes(snap: &Snapshot) -> Result<&crate::live::parity::Shapes, Verdict> {
    match &snap.shapes {
        Some(v) => fresh(v, "the sides' shapes"),
        None => Err(unknown("the sides' shapes are not read")),
    }
}

fn side<'a>(snap: &'a Snapshot, env: &str) -> Result<&'a SideShape, Verdict> {
    shapes(snap)?.get(env).ok_or_else(|| unknown(format!("environment {env} not read")))
}

/// One line per difference: `what (which): from → to`.
fn described(d: &Difference) -> String {
    match &d.within {
        Some(env) => format!("{env}: {} is {}, its siblings' {}", d.subject, d.to_value, d.from_value),
        None => format!("{} ({}): {} → {}", d.what, d.subject, d.from_value, d.to_value),
    }
}

/// From the snapshot's comparison, the one the Parity pane shows.
fn parity(snap: &Snapshot, rb: &Runbook) -> Verdict {
    let (from, to) = (&rb.rollout.from, &rb.rollout.to);
    let parity = match &snap.parity {
        Some(v) if v.value.is_none() && v.error.is_none() && v.updated_at.is_some() => {
            return unknown(format!("{from} or {to} not read"));
        }
        Some(v) => match fresh(v, "the sides' shapes") {
            Ok(p) => p,
            Err(v) => return v,
        },
        None => return unknown("the sides' shapes are not read"),
    };
    let drift: Vec<String> = parity.differences.iter().filter(|d| d.is_drift()).map(described).collect();
    if !drift.is_empty() {
        fail(drift.join("; "))
    } else if !parity.not_compared.is_empty() {
        unknown(format!("not compared: {}", parity.not_compared.join("; ")))
    } else {
        pass(format!("no drift ({} allowed differences)", parity.allowed()))
    }
}

fn instances_alike(snap: &Snapshot, env: &str) -> Verdict {
    let shape = match side(snap, env) {
        Ok(s) => s,
        Err(v) => return v,
    };
    if shape.instances.is_empty() {
        return fail(format!("{env} has no instances"));
    }
    let odd: Vec<String> = crate::analysis::parity::instances_alike(shape).iter().map(described).collect();
    if odd.is_empty() {
        pass(format!("{} instances alike (security groups, type, AMI)", shape.instances.len()))
    } else {
        fail(odd.join("; "))
    }
}

/// A certificate must stay valid this long past the check: a cutover, its
/// soak and its rollback window should not meet an expiry.
const CERTIFICATE_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// HTTPS (or an NLB's TLS) on 443, where clients of the record come, whose
/// certificates that cover the record's name are all ISSUED, already valid
/// and valid for another [`CERTIFICATE_MARGIN`] (the load balancer may
/// present any of them), and not a private CA's on an internet-facing load
/// balancer. A certificate ACM did not describe may be the one presented:
/// not checked, never a pass.
fn https_listener(snap: &Snapshot, rb: &Runbook, env: &str) -> Verdict {
    let shape = match side(snap, env) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let Some(lb) = &shape.load_balancer else { return fail(format!("{env} has no load balancer")) };
    let Some(now) = crate::time::parse_rfc3339(&snap.generated_at) else {
        return unknown(format!("the snapshot's time `{}` cannot be read", snap.generated_at));
    };
    judge_https(lb, &rb.dns.record, now)
}

/// [`https_listener`] of a load balancer as read, at `now`, for `record`.
fn judge_https(lb: &crate::analysis::parity::LoadBalancerShape, record: &str, now: std::time::SystemTime) -> Verdict {
    use crate::analysis::parity::Certificate;
    let secure: Vec<_> = lb.listeners.iter().filter(|l| l.protocol == "HTTPS" || l.protocol == "TLS").collect();
    if secure.is_empty() {
        let have: Vec<String> = lb.listeners.iter().map(|l| format!("{} {}", l.port, l.protocol)).collect();
        return fail(format!(
            "{} has no HTTPS or TLS listener (listeners: {})",
            lb.name,
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        ));
    }
    let Some(l) = secure.iter().find(|l| l.port == 443) else {
        let ports: Vec<String> = secure.iter().map(|l| format!("{} {}", l.port, l.protocol)).collect();
        return fail(format!(
            "{}'s HTTPS and TLS listeners are on {} only, and clients of {record} come to 443",
            lb.name,
            ports.join(", "),
        ));
    };
    let what = format!("{}'s {} listener on 443", lb.name, l.protocol);
    if l.certificates.is_empty() {
        return fail(format!("{what} has no certificate"));
    }
    if let Some(c) = l.certificates.iter().find(|c| c.error.is_some()) {
        return unknown(format!(
            "certificate {} of {what} not checked: {}",
            c.arn,
            c.error.as_deref().unwrap_or_default()
        ));
    }
    let time = |t: &Option<String>| t.as_deref().and_then(crate::time::parse_rfc3339);
    let fault = |c: &Certificate| -> Option<String> {
        let (from, until) = (time(&c.not_before), time(&c.not_after));
        let shown = |t: &Option<String>| t.clone().unwrap_or_default();
        match c.status.as_deref() {
            Some("ISSUED") => {}
            other => return Some(format!("is {}", other.unwrap_or("of a status ACM does not tell"))),
        }
        if c.kind.as_deref() == Some("PRIVATE") && lb.scheme == "internet-facing" {
            return Some("is a private CA's, which the internet's clients do not trust".into());
        }
        match (from, until) {
            (Some(f), _) if f > now => Some(format!("is valid only from {}", shown(&c.not_before))),
            (_, None) => Some("has no expiry ACM tells".into()),
            (_, Some(t)) if t <= now => Some(format!("expired at {}", shown(&c.not_after))),
            (_, Some(t)) if t <= now + CERTIFICATE_MARGIN => Some(format!(
                "expires at {}, within {} days",
                shown(&c.not_after),
                CERTIFICATE_MARGIN.as_secs() / 86_400
            )),
            _ => None,
        }
    };
    let covering: Vec<&Certificate> = l.certificates.iter().filter(|c| c.covers(record)).collect();
    if covering.is_empty() {
        let names: Vec<&str> = l.certificates.iter().flat_map(|c| c.names.iter().map(String::as_str)).collect();
        return fail(format!(
            "no certificate of {what} covers {record} (they are for {}): clients would refuse it once it serves them",
            names.join(", ")
        ));
    }
    let faults: Vec<String> = covering
        .iter()
        .filter_map(|c| fault(c).map(|why| format!("certificate {} for {record} {why}", c.arn)))
        .collect();
    if !faults.is_empty() {
        return fail(format!("{what}: {} (it may present any certificate that covers the name)", faults.join("; ")));
    }
    let shown: Vec<String> = covering
        .iter()
        .map(|c| {
            let imported = if c.kind.as_deref() == Some("IMPORTED") { ", imported" } else { "" };
            format!("{} ({}{imported})", c.arn, c.not_after.as_deref().map_or(String::new(), |t| format!("until {t}")))
        })
        .collect();
    pass(format!("{} on 443 covering {record}: {}", l.protocol, shown.join(", ")))
}

fn alarm_on_5xx(snap: &Snapshot, env: &str) -> Verdict {
    let shape = match side(snap, env) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let watches_5xx = |a: &&crate::analysis::parity::WatchingAlarm| {
        a.metrics.iter().any(|m| m == "HTTPCode_Target_5XX_Count" || m == "HTTPCode_ELB_5XX_Count")
    };
    // An alarm that never goes off, or notifies no one when it does, is not an alarm.
    let (firing, never): (Vec<_>, Vec<_>) =
        shape.alarms.iter().filter(watches_5xx).partition(|a| a.never_fires.is_none());
    let (paging, silent): (Vec<_>, Vec<_>) = firing.into_iter().partition(|a| a.silent().is_none());
    if !paging.is_empty() {
        return pass(paging.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "));
    }
    // Each alarm on the side's 5xx, and why it does not count.
    let mut why: Vec<String> =
        never.iter().map(|a| format!("{}: {}", a.name, a.never_fires.as_deref().unwrap_or_default())).collect();
    why.extend(silent.iter().map(|a| format!("{}: {}", a.name, a.silent().unwrap_or_default())));
    if !why.is_empty() {
        let (what, fix) = if silent.is_empty() {
            ("can go off", "")
        } else if never.is_empty() {
            ("notifies anyone", "; enable its actions and give it an alarm action")
        } else {
            ("goes off and notifies anyone", "")
        };
        return fail(format!("no alarm on {env}'s 5xx {what} ({}){fix}", why.join("; ")));
    }
    let others: Vec<&str> = shape.alarms.iter().map(|a| a.name.as_str()).collect();
    fail(format!(
        "no alarm watches {env}'s 5xx (its alarms: {})",
        if others.is_empty() { "none".to_string() } else { others.join(", ") }
    ))
}

fn redis_persistence(snap: &Snapshot, env: &str) -> Verdict {
    let shape = match side(snap, env) {
        Ok(s) => s,
        Err(v) => return v,
    };
    if shape.redis.is_empty() {
        return fail(format!("{env} uses no Redis"));
    }
    let mut verdicts = Vec::new();
    for r in &shape.redis {
        verdicts.push(match r {
            RedisRead::Failed { name, error } => unknown(format!("{name} could not be read: {error}")),
            RedisRead::Ok(r) => match r.persistent() {
                Some(true) if r.elasticache.as_ref().and_then(|e| e.snapshot_retention_days).is_some_and(|d| d > 0) => {
                    let days = r.elasticache.as_ref().and_then(|e| e.snapshot_retention_days).unwrap_or_default();
                    pass(format!(
                        "{}: ElastiCache snapshots kept {days} day{}",
                        r.name,
                        if days == 1 { "" } else { "s" }
                    ))
                }
                // A cluster's primaries that persist in different ways: each way.
                Some(true) if r.primaries_differ.contains_key("redis.persistence") => {
                    pass(format!("{}: every primary persists: {}", r.name, r.primaries_differ["redis.persistence"]))
                }
                Some(true) => pass(format!(
                    "{}: {}{}",
                    r.name,
                    if r.aof_enabled == Some(true) { "AOF on" } else { "AOF off" },
                    r.rdb_save
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .map_or(String::new(), |s| format!(", RDB save {s}"))
                )),
                Some(false) if r.elasticache.is_some() => fail(format!(
                    "{}: ElastiCache keeps no snapshots (retention 0 days) and {}",
                    r.name,
                    if r.aof_enabled == Some(true) { "its last AOF write failed" } else { "AOF is off" }
                )),
                Some(false) if !r.persistence_failing().is_empty() => fail(format!(
                    "{}: {}, so nothing is being saved: a restart loses what the failing saves missed",
                    r.name,
                    r.persistence_failing().join(" and ")
                )),
                Some(false) => fail(format!("{}: AOF off and no RDB save schedule: a restart loses every key", r.name)),
                None => unknown(format!("{}: persistence not readable (CONFIG GET refused)", r.name)),
            },
        });
    }
    let of = |o: CheckOutcome| verdicts.iter().filter(|v| v.0 == o).map(|v| v.1.clone()).collect::<Vec<_>>();
    let (failed, unknown_) = (of(CheckOutcome::Fail), of(CheckOutcome::Unknown));
    if !failed.is_empty() {
        fail(failed.join("; "))
    } else if !unknown_.is_empty() {
        unknown(unknown_.join("; "))
    } else {
        pass(of(CheckOutcome::Pass).join("; "))
    }
}

fn autoscaling_group(snap: &Snapshot, env: &str) -> Verdict {
    let shape = match side(snap, env) {
        Ok(s) => s,
        Err(v) => return v,
    };
    if shape.target_groups.is_empty() {
        return fail(format!("{env} has no target groups"));
    }
    judge_autoscaling(&shape.target_groups, &shape.autoscaling_groups)
}

/// Each target group has an Auto Scaling group attached, and one holding
/// instances: a group at desired (or max) 0 replaces none that fails.
fn judge_autoscaling(
    target_groups: &[crate::analysis::parity::TargetGroupShape],
    groups: &[crate::analysis::parity::AutoScalingShape],
) -> Verdict {
    let bare: Vec<&str> = target_groups
        .iter()
        .filter(|tg| !groups.iter().any(|g| g.target_group_arns.contains(&tg.arn)))
        .map(|tg| tg.name.as_str())
        .collect();
    if !bare.is_empty() {
        return fail(format!("no Auto Scaling group is attached to {}", bare.join(", ")));
    }
    let n = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    let shown = |g: &crate::analysis::parity::AutoScalingShape| {
        format!("{} (min {}, max {}, desired {})", g.name, n(g.min), n(g.max), n(g.desired))
    };
    // Each target group needs a group that holds instances; an extra empty
    // group beside it (a spare kept at 0) replaces nothing but harms nothing.
    let holds = |g: &&crate::analysis::parity::AutoScalingShape| g.max != Some(0) && g.desired != Some(0);
    let empty: Vec<String> = target_groups
        .iter()
        .filter_map(|tg| {
            let attached: Vec<_> = groups.iter().filter(|g| g.target_group_arns.contains(&tg.arn)).collect();
            (!attached.iter().any(holds))
                .then(|| format!("{}: {}", tg.name, attached.into_iter().map(shown).collect::<Vec<_>>().join(", ")))
        })
        .collect();
    if !empty.is_empty() {
        return fail(format!("holding no instance, so replacing none: {}", empty.join("; ")));
    }
    // Each of these, suspended (often left so after a manual intervention),
    // stops the group replacing an instance that fails or putting a new one
    // behind the target group.
    const REPLACING: [&str; 5] = ["Launch", "Terminate", "HealthCheck", "ReplaceUnhealthy", "AddToLoadBalancer"];
    let stuck: Vec<String> = groups
        .iter()
        .filter(|g| holds(g))
        .filter_map(|g| {
            // In one order, whichever order AWS lists them in.
            let off: Vec<&str> = REPLACING.into_iter().filter(|p| g.suspended.iter().any(|s| s == p)).collect();
            (!off.is_empty()).then(|| {
                format!(
                    "{} has {} suspended, so it replaces no instance that fails (`aws autoscaling resume-processes \
                     --auto-scaling-group-name {}`)",
                    g.name,
                    off.join(", "),
                    g.name
                )
            })
        })
        .collect();
    if !stuck.is_empty() {
        return fail(stuck.join("; "));
    }
    // EC2 health alone: an instance whose app fails the target group's
    // check keeps its place in the group, unhealthy and never replaced.
    let blind: Vec<String> = groups
        .iter()
        .filter(|g| holds(g) && g.replaces_unhealthy_targets() == Some(false))
        .map(|g| {
            // The types it has, kept, with ELB added.
            let mut with_elb: Vec<&str> = g.health_check_types().unwrap_or_default();
            with_elb.push("ELB");
            format!(
                "{} does not count its target groups' health checks (HealthCheckType {}, no ELB), so an instance \
                 failing one stays in service, unhealthy, and is never replaced (`aws autoscaling \
                 update-auto-scaling-group --auto-scaling-group-name {} --health-check-type {} \
                 --health-check-grace-period 300`)",
                g.name,
                g.health_check_type.as_deref().unwrap_or_default(),
                g.name,
                with_elb.join(",")
            )
        })
        .collect();
    if !blind.is_empty() {
        return fail(blind.join("; "));
    }
    let unread: Vec<&str> = groups
        .iter()
        .filter(|g| holds(g) && g.replaces_unhealthy_targets().is_none())
        .map(|g| g.name.as_str())
        .collect();
    if !unread.is_empty() {
        return unknown(format!(
            "the health check types of {} were not read, so whether they replace an instance their target groups \
             find unhealthy is unknown",
            unread.join(", ")
        ));
    }
    pass(groups.iter().map(shown).collect::<Vec<_>>().join(", "))
}

pub fn check_name(c: &Check) -> &'static str {
    match c {
        Check::TargetsHealthy { .. } => "targets_healthy",
        Check::RedisReachable { .. } => "redis_reachable",
        Check::Stickiness { .. } => "stickiness",
        Check::AlarmOk { .. } => "alarm_ok",
        Check::HttpOk { .. } => "http_ok",
        Check::KeyCountsMatch { .. } => "key_counts_match",
        Check::ZonesEnabled { .. } => "zones_enabled",
        Check::Parity => "parity",
        Check::InstancesAlike { .. } => "instances_alike",
        Check::HttpsListener { .. } => "https_listener",
        Check::AlarmOn5xx { .. } => "alarm_on_5xx",
        Check::RedisPersistence { .. } => "redis_persistence",
        Check::AutoscalingGroup { .. } => "autoscaling_group",
        Check::RedisHitRate { .. } => "redis_hit_rate",
    }
}

pub fn evaluate_one(rb: &Runbook, snap: &Snapshot, check: &Check) -> Verdict {
    match check {
        Check::TargetsHealthy { environment } => targets_healthy(rb, snap, environment),
        Check::RedisReachable { environment } => redis_reachable(snap, rb, environment),
        Check::Stickiness { environment, duration } => stickiness(snap, environment, duration.as_secs()),
        Check::AlarmOk { alarm } => alarm_ok(rb, snap, alarm),
        Check::HttpOk { environment } => http_ok(snap, environment),
        Check::KeyCountsMatch { from_redis, to_redis, tolerance } => key_counts(snap, from_redis, to_redis, *tolerance),
        Check::ZonesEnabled { environment } => zones_enabled(snap, environment),
        Check::Parity => parity(snap, rb),
        Check::InstancesAlike { environment } => instances_alike(snap, environment),
        Check::HttpsListener { environment } => https_listener(snap, rb, environment),
        Check::AlarmOn5xx { environment } => alarm_on_5xx(snap, environment),
        Check::RedisPersistence { environment } => redis_persistence(snap, environment),
        Check::AutoscalingGroup { environment } => autoscaling_group(snap, environment),
        Check::RedisHitRate { redis, min_percent, min_lookups } => {
            redis_hit_rate(snap, redis, *min_percent, *min_lookups)
        }
    }
}

/// Where a check reads AWS: each environment's side (None: the runbook's
/// own credentials, an alarm declared for no environment). Redis checks
/// read no AWS account.
fn aws_readers(rb: &Runbook, check: &Check) -> Vec<Option<String>> {
    match check {
        Check::TargetsHealthy { environment }
        | Check::RedisReachable { environment }
        | Check::Stickiness { environment, .. }
        | Check::HttpOk { environment }
        | Check::ZonesEnabled { environment }
        | Check::InstancesAlike { environment }
        | Check::HttpsListener { environment }
        | Check::AlarmOn5xx { environment }
        | Check::RedisPersistence { environment }
        | Check::AutoscalingGroup { environment } => vec![Some(environment.clone())],
        // Parity compares the rollout's two sides only.
        Check::Parity => vec![Some(rb.rollout.from.clone()), Some(rb.rollout.to.clone())],
        Check::AlarmOk { alarm } => {
            let under = crate::runbook::alarms_under(&rb.alarms, alarm);
            let mut out: Vec<Option<String>> = under.iter().map(|a| a.environment.clone()).collect();
            if under.is_empty() {
                out.push(None);
            }
            out
        }
        Check::KeyCountsMatch { .. } | Check::RedisHitRate { .. } => Vec::new(),
    }
}

/// Readings taken in another account than the runbook names for where they
/// were read (a profile for the wrong account, or a staging account with the
/// same names as production's): they say nothing of the runbook's sides.
fn read_in_another_account(rb: &Runbook, snap: &Snapshot, reader: Option<&str>) -> Option<String> {
    use crate::runbook::{Access, Side};
    // Without any side's own access every side is read as the runbook is:
    // the identity shown. Else the side's own, and for the runbook's own
    // credentials a side that has none of its own.
    let side = match reader {
        Some(e) => Some(Side::Environment(e.to_string())),
        None if snap.sides.is_empty() => None,
        None => Some(rb.sides().into_iter().find(|s| rb.access(s) == Access::default())?),
    };
    let (want, identity) = match &side {
        Some(side) if !snap.sides.is_empty() => {
            let want = rb.side_account(side)?;
            match snap.sides.iter().find(|v| v.side == side.to_string()) {
                Some(view) => (want, &view.identity),
                None => {
                    return Some(format!(
                        "no reading says which account {side} was read in (the runbook says {want}): its readings \
                         may be another account's"
                    ));
                }
            }
        }
        Some(side) => (rb.side_account(side)?, &snap.identity),
        None => (rb.account_id.clone()?, &snap.identity),
    };
    // Unknown is not "the same": a staging account with production's names
    // would pass every check.
    let Some(got) = identity.value.as_ref().map(|i| &i.account) else {
        let why = identity.error.clone().unwrap_or_else(|| "not read yet".into());
        return Some(format!(
            "which account these readings were made in is not known (STS GetCallerIdentity: {why}); the runbook \
             says {want}: they may be another account's"
        ));
    };
    (got != &want).then(|| {
        let whose = reader.map_or("the runbook's own credentials".to_string(), |e| format!("environment {e}"));
        format!("read in account {got}, not {want} as the runbook says for {whose}: its readings are not of the runbook's resources; use that account's credentials (--profile)")
    })
}

pub fn evaluate(rb: &Runbook, snap: &Snapshot) -> Vec<CheckResult> {
    rb.phases
        .iter()
        .flat_map(|p| p.items.iter().map(move |i| (p, i)))
        .filter_map(|(p, item)| {
            let ItemKind::Check { check } = &item.kind else { return None };
            let (outcome, detail) =
                match aws_readers(rb, check).iter().find_map(|r| read_in_another_account(rb, snap, r.as_deref())) {
                    Some(why) => unknown(why),
                    None => evaluate_one(rb, snap, check),
                };
            Some(CheckResult {
                phase: p.id.clone(),
                item: item.id.clone(),
                title: item.title.clone(),
                check: check_name(check).to_string(),
                blocking: item.blocking,
                outcome,
                detail,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::parity::{AutoScalingShape, TargetGroupShape};

    /// An environment without a load balancer of its own (a single box, or
    /// target groups only) judges a `LoadBalancer` dimension by the load
    /// balancers its target groups serve: with none, any is another's.
    #[test]
    fn an_alarms_load_balancer_is_foreign_unless_the_environments_own_or_its_groups() {
        let w = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        let mine = ["app/box-alb/1".to_string()];
        let tgs = ["targetgroup/web/2".to_string()];
        assert_eq!(foreign_dimensions(&w(&[("LoadBalancer", "app/box-alb/1")]), &mine, &tgs), Vec::<String>::new());
        assert_eq!(
            foreign_dimensions(&w(&[("LoadBalancer", "app/other/9")]), &mine, &tgs),
            ["LoadBalancer=app/other/9"]
        );
        assert_eq!(
            foreign_dimensions(&w(&[("LoadBalancer", "app/other/9")]), &[], &[]),
            ["LoadBalancer=app/other/9"],
            "no load balancer at all: any is another's"
        );
        assert_eq!(
            foreign_dimensions(&w(&[("TargetGroup", "targetgroup/other/3")]), &mine, &tgs),
            ["TargetGroup=targetgroup/other/3"]
        );
        // Whose load balancers: its own, else its groups'; a single box none.
        let arn = |s: &str| format!("arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/{s}");
        let served = super::super::TargetGroupView {
            load_balancer_arns: vec![arn("app/box-alb/1")],
            ..target_group("web", &["healthy"])
        };
        assert_eq!(own_load_balancers(Some(&arn("app/own/5")), std::slice::from_ref(&served)), ["app/own/5"]);
        assert_eq!(own_load_balancers(None, &[served]), mine);
        assert_eq!(own_load_balancers(None, &[target_group("web", &["healthy"])]), Vec::<String>::new());
    }

    fn target_group(name: &str, states: &[&str]) -> super::super::TargetGroupView {
        let targets: Vec<super::super::TargetView> = states
            .iter()
            .enumerate()
            .map(|(i, state)| super::super::TargetView {
                target: crate::aws::elb::Target {
                    id: format!("i-{name}-{i}"),
                    port: Some(80),
                    state: state.to_string(),
                    reason: None,
                    availability_zone: None,
                    description: None,
                },
                zone_enabled: Some(true),
                explanation: None,
            })
            .collect();
        super::super::TargetGroupView {
            name: name.into(),
            arn: format!("arn:{name}"),
            load_balancer_arns: vec![],
            healthy: states.iter().filter(|s| **s == "healthy").count(),
            total: states.len(),
            health_check_path: None,
            health_check_interval_seconds: None,
            attributes: Default::default(),
            targets,
        }
    }

    /// A security-group path that could not be judged (a group unread
    /// under throttling) is unknown, never a failure: a `redis_reachable`
    /// gate measuring a failure rolls a healthy rollout back. A blocked
    /// path, or /health saying Redis is down, still fails.
    #[test]
    fn an_unjudged_security_group_path_is_unknown_and_a_blocked_one_fails() {
        use crate::analysis::reachability::SgPath;
        let instance = |path: SgPath, redis_ok: bool| super::super::InstanceView {
            instance: crate::aws::ec2::Instance {
                id: "i-1".into(),
                name: None,
                state: "running".into(),
                instance_type: "t3.small".into(),
                availability_zone: "eu-west-1a".into(),
                private_ip: None,
                ipv6_addresses: Vec::new(),
                target_addresses: vec![],
                vpc_id: None,
                security_groups: Vec::new(),
                tags: Default::default(),
            },
            health: View {
                value: Some(HealthProbe::Answered {
                    url: "http://127.0.0.1:1/health".into(),
                    status: if redis_ok { 200 } else { 503 },
                    latency_ms: 1.0,
                    redis_ok: Some(redis_ok),
                    redis_error: (!redis_ok).then(|| "connection refused".into()),
                    body: String::new(),
                }),
                updated_at: None,
                age_seconds: Some(1.0),
                stale: false,
                error: None,
            },
            sg_paths: [("cache".to_string(), path)].into(),
            sentinel_paths: Default::default(),
        };
        let unread = || SgPath::Unknown { reason: "security group sg-1 not read: Throttling".into() };
        let (outcome, why) = instance_reaches_redis(&instance(unread(), true));
        assert_eq!(outcome, CheckOutcome::Unknown, "{why}");
        assert!(why.contains("sg-1 not read"), "{why}");
        let (outcome, why) = instance_reaches_redis(&instance(unread(), false));
        assert_eq!(outcome, CheckOutcome::Fail, "/health says Redis is down: {why}");
        let blocked = SgPath::Blocked { reason: "no ingress on 6379".into(), fix: None };
        assert_eq!(instance_reaches_redis(&instance(blocked, true)).0, CheckOutcome::Fail);
        let allowed = SgPath::Allowed { via: "sg-1 → sg-2".into() };
        assert_eq!(instance_reaches_redis(&instance(allowed, true)).0, CheckOutcome::Pass);
    }

    /// The runbook's alarm against AWS's: a composite with another rule,
    /// one AWS has in a form cutover cannot read, or a composite on one side
    /// and a metric alarm on the other is never the alarm declared.
    #[test]
    fn an_alarm_on_aws_unlike_the_runbooks_is_said() {
        use crate::aws::cloudwatch::AlarmState;
        let declared = |rule: Option<&str>| crate::runbook::Alarm {
            name: "any".into(),
            environment: None,
            metric: crate::runbook::Metric::Target5xx,
            stat: crate::runbook::Stat::Sum,
            threshold: 0.0,
            period: std::time::Duration::from_secs(60),
            evaluation_periods: 1,
            treat_missing_data: "missing".into(),
            rule: rule.map(str::to_string),
            description: String::new(),
        };
        let on_aws = |state: &str, rule: Option<&str>| AlarmState {
            name: "any".into(),
            state: state.into(),
            rule: rule.map(str::to_string),
            ..Default::default()
        };
        let rule = r#"ALARM("a") OR ALARM("b")"#;
        let judge =
            |d: Option<&str>, state: &str, a: Option<&str>| declared_unlike_aws(&declared(d), &on_aws(state, a));
        assert_eq!(judge(Some(rule), "OK", Some("ALARM(a) OR ALARM(b)")), None);
        assert_eq!(judge(None, "OK", None), None);
        assert_eq!(judge(Some(rule), "MISSING", None), None, "said where it is read");
        let said = |d: Option<&str>, a: Option<&str>| judge(d, "OK", a).unwrap_or_default();
        assert!(said(Some(rule), Some("ALARM(a)")).contains("rule on AWS is `ALARM(a)`, not the runbook's"));
        assert!(said(Some(rule), Some("AT_LEAST(1, ALARM, (a, b))")).contains("is not one cutover can read"));
        assert!(said(Some(rule), Some("")).contains("is not one cutover can read"));
        assert!(said(None, Some(rule)).contains("is a composite alarm on AWS"));
        assert!(said(Some(rule), None).contains("is a metric alarm on AWS"));
    }

    /// The https_listener judgement on a load balancer as read: the port,
    /// the protocol (an NLB's TLS counts), every covering certificate's
    /// status, validity and issuer, and an unread one never a pass.
    #[test]
    fn https_judges_every_certificate_that_covers_the_record() {
        use crate::analysis::parity::{Certificate, Listener, LoadBalancerShape};
        let now = crate::time::parse_rfc3339("2026-12-05T12:00:00Z").unwrap();
        let cert = |arn: &str, name: &str, kind: &str, from: &str, until: &str| Certificate {
            arn: arn.into(),
            names: vec![name.into()],
            status: Some("ISSUED".into()),
            kind: Some(kind.into()),
            not_before: Some(from.into()),
            not_after: Some(until.into()),
            error: None,
        };
        let good = cert("a:good", "*.example.com", "AMAZON_ISSUED", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let lb = |port: u16, protocol: &str, scheme: &str, certificates: Vec<Certificate>| LoadBalancerShape {
            name: "alb".into(),
            arn: "arn:alb".into(),
            scheme: scheme.into(),
            zones: vec![],
            security_groups: vec![],
            vpc_id: None,
            idle_timeout_seconds: None,
            listeners: vec![Listener {
                port,
                protocol: protocol.into(),
                certificate: certificates.first().map(|c| c.arn.clone()),
                certificates,
                ssl_policy: None,
                default_action: "forward".into(),
                default_action_target: None,
            }],
        };
        let judge = |l: LoadBalancerShape| judge_https(&l, "www.example.com", now);
        assert_eq!(judge(lb(443, "HTTPS", "internet-facing", vec![good.clone()])).0, CheckOutcome::Pass);
        assert_eq!(judge(lb(443, "TLS", "internet-facing", vec![good.clone()])).0, CheckOutcome::Pass, "an NLB");
        let v = judge(lb(8443, "HTTPS", "internet-facing", vec![good.clone()]));
        assert_eq!(
            v,
            (
                CheckOutcome::Fail,
                "alb's HTTPS and TLS listeners are on 8443 HTTPS only, and clients of www.example.com come to 443"
                    .into()
            )
        );
        let private = cert("a:private", "www.example.com", "PRIVATE", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let v = judge(lb(443, "HTTPS", "internet-facing", vec![good.clone(), private.clone()]));
        assert_eq!(v.0, CheckOutcome::Fail, "{}", v.1);
        assert!(v.1.contains("a:private for www.example.com is a private CA's"), "{}", v.1);
        assert_eq!(judge(lb(443, "HTTPS", "internal", vec![private])).0, CheckOutcome::Pass, "inside the VPC");
        let early = cert("a:early", "www.example.com", "IMPORTED", "2026-12-24T00:00:00Z", "2027-12-24T00:00:00Z");
        let v = judge(lb(443, "HTTPS", "internet-facing", vec![early]));
        assert!(v.0 == CheckOutcome::Fail && v.1.contains("is valid only from 2026-12-24T00:00:00Z"), "{}", v.1);
        let mut revoked = good.clone();
        revoked.status = Some("REVOKED".into());
        let v = judge(lb(443, "HTTPS", "internet-facing", vec![revoked]));
        assert!(v.0 == CheckOutcome::Fail && v.1.contains("a:good for www.example.com is REVOKED"), "{}", v.1);
        let unread = Certificate {
            arn: "arn:aws:iam::1:server-certificate/x".into(),
            error: Some("not ACM".into()),
            ..Default::default()
        };
        let v = judge(lb(443, "HTTPS", "internet-facing", vec![good.clone(), unread]));
        assert_eq!(v.0, CheckOutcome::Unknown, "it may be the one presented: {}", v.1);
        let mut apex = good;
        apex.names = vec!["example.com".into()];
        assert_eq!(judge(lb(443, "HTTPS", "internet-facing", vec![apex])).0, CheckOutcome::Fail);
    }

    /// A target group without targets answers 503, however healthy the others are.
    #[test]
    fn targets_healthy_fails_on_a_target_group_without_targets() {
        let web = target_group("web-green", &["healthy", "healthy"]);
        assert_eq!(judge_targets("green", std::slice::from_ref(&web)).0, CheckOutcome::Pass);
        let v = judge_targets("green", &[web.clone(), target_group("api-green", &[])]);
        assert_eq!(v.0, CheckOutcome::Fail, "{}", v.1);
        assert!(v.1.contains("no targets registered in api-green"), "{}", v.1);
        let v = judge_targets("green", &[web, target_group("api-green", &["unhealthy"])]);
        assert_eq!(v.0, CheckOutcome::Fail, "{}", v.1);
    }

    /// Every target group needs a group attached, and one that can hold an instance.
    #[test]
    fn autoscaling_group_fails_on_a_bare_target_group_or_a_group_scaled_to_zero() {
        let tg = |name: &str| TargetGroupShape {
            name: name.into(),
            arn: format!("arn:{name}"),
            protocol: None,
            port: None,
            health_check_protocol: None,
            health_check_port: None,
            health_check_path: None,
            health_check_interval_seconds: None,
            health_check_timeout_seconds: None,
            healthy_threshold: None,
            unhealthy_threshold: None,
            matcher: None,
            stickiness: None,
            stickiness_duration_seconds: None,
            deregistration_delay_seconds: None,
            algorithm: None,
        };
        let group = |max: u32, desired: u32, tgs: &[&str]| AutoScalingShape {
            name: "green-asg".into(),
            min: Some(0),
            max: Some(max),
            desired: Some(desired),
            target_group_arns: tgs.iter().map(|t| format!("arn:{t}")).collect(),
            suspended: vec![],
            health_check_type: Some("ELB".into()),
        };
        let both = [tg("web"), tg("api")];
        let v = judge_autoscaling(&both, &[group(4, 2, &["web", "api"])]);
        assert_eq!(v.0, CheckOutcome::Pass, "{}", v.1);
        let v = judge_autoscaling(&both, &[group(4, 2, &["web"])]);
        assert_eq!(v, (CheckOutcome::Fail, "no Auto Scaling group is attached to api".to_string()));
        let v = judge_autoscaling(&both, &[group(0, 0, &["web", "api"])]);
        assert_eq!(v.0, CheckOutcome::Fail, "{}", v.1);
        assert!(
            v.1.starts_with("holding no instance, so replacing none: web: green-asg (min 0, max 0, desired 0)"),
            "{}",
            v.1
        );
        assert_eq!(judge_autoscaling(&both, &[group(4, 0, &["web", "api"])]).0, CheckOutcome::Fail);
        // A spare group kept at 0 beside one holding instances harms nothing;
        // a target group whose only group is empty still fails.
        let spare = AutoScalingShape { name: "green-spare".into(), ..group(0, 0, &["web"]) };
        let v = judge_autoscaling(&both, &[group(4, 2, &["web", "api"]), spare.clone()]);
        assert_eq!(v.0, CheckOutcome::Pass, "{}", v.1);
        let v = judge_autoscaling(
            &both,
            &[group(4, 2, &["web"]), AutoScalingShape { target_group_arns: vec!["arn:api".into()], ..spare }],
        );
        assert_eq!(
            v,
            (
                CheckOutcome::Fail,
                "holding no instance, so replacing none: api: green-spare (min 0, max 0, desired 0)".into()
            )
        );
        // One holding instances but not replacing them: Launch or
        // ReplaceUnhealthy suspended. Scaling on a schedule suspended is no matter.
        let stuck = AutoScalingShape {
            suspended: vec!["ScheduledActions".into(), "ReplaceUnhealthy".into(), "Launch".into()],
            ..group(4, 2, &["web", "api"])
        };
        assert_eq!(
            judge_autoscaling(&both, &[stuck]),
            (
                CheckOutcome::Fail,
                "green-asg has Launch, ReplaceUnhealthy suspended, so it replaces no instance that fails (`aws \
                 autoscaling resume-processes --auto-scaling-group-name green-asg`)"
                    .into()
            )
        );
        let scheduled = AutoScalingShape { suspended: vec!["ScheduledActions".into()], ..group(4, 2, &["web", "api"]) };
        assert_eq!(judge_autoscaling(&both, &[scheduled]).0, CheckOutcome::Pass);
        // EC2 health alone (AWS's default) replaces no instance its target
        // group finds unhealthy; ELB among several types does.
        let checked = |types: Option<&str>| AutoScalingShape {
            health_check_type: types.map(str::to_string),
            ..group(4, 2, &["web", "api"])
        };
        for (types, fix) in [("EC2", "ELB"), ("EC2,EBS", "EBS,ELB"), ("VPC_LATTICE", "VPC_LATTICE,ELB")] {
            let v = judge_autoscaling(&both, &[checked(Some(types))]);
            assert_eq!(v.0, CheckOutcome::Fail, "{types:?}: {}", v.1);
            let said =
                format!("green-asg does not count its target groups' health checks (HealthCheckType {types}, no ELB)");
            assert!(v.1.starts_with(&said), "{}", v.1);
            assert!(v.1.contains(&format!("--health-check-type {fix} ")), "the types it has are kept: {}", v.1);
        }
        let v = judge_autoscaling(&both, &[checked(None)]);
        assert_eq!(v.0, CheckOutcome::Unknown, "not read: {}", v.1);
        for types in ["ELB", "EC2,ELB", "ELB, EBS"] {
            assert_eq!(judge_autoscaling(&both, &[checked(Some(types))]).0, CheckOutcome::Pass, "{types}");
        }
        // A spare kept at 0 replaces nothing either way: no matter.
        let spare = AutoScalingShape { name: "green-spare".into(), ..checked(Some("EC2")) };
        let spare = AutoScalingShape { min: Some(0), max: Some(0), desired: Some(0), ..spare };
        assert_eq!(judge_autoscaling(&both, &[checked(Some("ELB")), spare]).0, CheckOutcome::Pass);
    }
}
