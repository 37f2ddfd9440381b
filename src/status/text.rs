//! Plain-text rendering of a snapshot for `cutover status` and `cutover demo`.

use std::fmt::Write;

use super::*;

/// `12s ago`, `STALE (error)`, or `not read yet`.
fn age<T>(v: &View<T>) -> String {
    let when = v.age_seconds.map(|a| format!("{a:.0}s ago")).unwrap_or_else(|| "never".into());
    match (&v.error, v.value.is_some()) {
        (Some(e), true) => format!("STALE, last good {when}: {e}"),
        (Some(e), false) => format!("UNAVAILABLE: {e}"),
        (None, true) => when,
        (None, false) => "not read yet".into(),
    }
}

fn health_line(h: &View<HealthProbe>) -> String {
    let Some(p) = &h.value else { return age(h) };
    let s = match p {
        HealthProbe::NotProbed { reason } => reason.clone(),
        HealthProbe::Answered { status, latency_ms, redis_ok, redis_error, .. } => {
            let r = match redis_ok {
                Some(true) => "redis ok".to_string(),
                Some(false) => format!("redis DOWN: {}", redis_error.as_deref().unwrap_or("?")),
                None => "redis not reported".to_string(),
            };
            format!("/health {status} in {latency_ms:.0} ms, {r}")
        }
        HealthProbe::Failed { error, .. } => format!("/health failed: {error}"),
    };
    if h.stale { format!("{s} [{}]", age(h)) } else { s }
}

/// One side: where it is, how it is reached, and whether that is its account.
pub fn side_line(side: &super::SideView) -> String {
    let got = match &side.identity.value {
        Some(i) => format!("account {} ({})", i.account, i.arn),
        None => format!("account unknown: {}", age(&side.identity)),
    };
    let verdict = match (side.account_ok, &side.account_id) {
        (Some(false), Some(want)) => format!("  WRONG ACCOUNT: the runbook says {want}"),
        _ => String::new(),
    };
    format!(
        "{:<24} {got}  region {}  via {}{verdict}",
        side.side,
        side.region.as_deref().unwrap_or("?"),
        side.via.as_deref().unwrap_or("?")
    )
}

pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let who = match &s.identity.value {
        Some(i) => format!(
            "account {} ({}){}",
            i.account,
            i.arn,
            i.expires_at.as_ref().map(|t| format!(", keys in the environment expire at {t}")).unwrap_or_default()
        ),
        None => format!("account unknown: {}", age(&s.identity)),
    };
    let _ = writeln!(o, "runbook {}  region {}  {}  at {}", s.runbook, s.region, who, s.generated_at);
    for side in &s.sides {
        let _ = writeln!(o, "  {}", side_line(side));
    }

    let _ = writeln!(o, "\nTRAFFIC  ({})", age(&s.traffic));
    if let Some(why) = &s.traffic_types_differ {
        let _ = writeln!(o, "  WEIGHTS DIFFER BY TYPE: {why}; the weights below are the first type's");
    }
    if let Some(c) = &s.last_change {
        let _ = writeln!(o, "  last change {} ({}) at {}: {}", c.change_id, c.action, c.submitted_at, c.status);
    }
    if let Some(why) = &s.rollout_unread {
        let _ = writeln!(o, "  rollout UNKNOWN: cannot read {why}");
    }
    if let Some(why) = &s.audit_unread {
        let _ = writeln!(o, "  last change UNKNOWN: cannot read {why}");
    }
    if let Some(r) = &s.rollout {
        let what = if r.plan_changed {
            r.describe()
        } else {
            format!("step {}/{} ({}%): {}", r.step, r.steps, r.percent, r.phase)
        };
        let _ = writeln!(o, "  rollout {what}{}", r.reason.as_ref().map(|x| format!(" ({x})")).unwrap_or_default());
    }
    for w in s.traffic.value.iter().flatten() {
        let weight = w.weight.map_or("missing".to_string(), |w| w.to_string());
        let bar = "#".repeat((w.share_percent / 5.0).round() as usize);
        let ttl = w.ttl.map_or("-".into(), |t| format!("{t}s"));
        let _ = writeln!(
            o,
            "  {:<12} {:<10} weight {:>7}  {:>5.1}%  {:<20} ttl {ttl}",
            w.holder(),
            w.set_identifier,
            weight,
            w.share_percent,
            bar
        );
        if let Some(hc) = &w.health_check {
            let verdict = match hc.healthy {
                Some(true) => "healthy",
                Some(false) => "FAILING",
                None => "unknown",
            };
            let _ = writeln!(o, "  {:<12} health check {} {verdict}: {}", "", hc.id, hc.status);
        }
        if let Some(why) = &w.no_traffic {
            let _ = writeln!(o, "  {:<12} gets {:.1}% of the traffic: {why}", "", w.effective_share_percent);
        } else if crate::live::fetch::share_differs(w) {
            let _ = writeln!(
                o,
                "  {:<12} gets {:.1}% of the traffic: Route53 answers only with records whose health does not fail",
                "", w.effective_share_percent
            );
        }
        if let Some(why) = &w.traffic_unknown {
            let _ = writeln!(o, "  {:<12} whether it gets traffic is unknown: {why}", "");
        }
    }
    if let Some(why) = s.traffic.value.as_deref().and_then(crate::live::fetch::unlisted_records) {
        let _ = writeln!(o, "  {why}");
    }
    if let Some(why) = &s.traffic_unlisted_other_types {
        let _ = writeln!(o, "  {why}");
    }

    for env in &s.environments {
        let _ = writeln!(o, "\n{} ({})  AWS {}", env.name.to_uppercase(), env.label, age(&env.aws));
        let Some(aws) = &env.aws.value else { continue };
        if let Some(lb) = &aws.load_balancer {
            let _ = writeln!(o, "  load balancer {}  zones {}", lb.name, lb.zones.join(", "));
        }
        for tg in &aws.target_groups {
            let a = &tg.attributes;
            let sticky = match (a.stickiness_enabled, &a.stickiness_type, a.stickiness_duration_seconds) {
                (Some(true), Some(t), Some(d)) => format!("sticky {t} {d}s"),
                _ => "not sticky".into(),
            };
            let _ = writeln!(o, "  target group {}  {}/{} healthy  {sticky}", tg.name, tg.healthy, tg.total);
            for t in &tg.targets {
                let tt = &t.target;
                let _ = writeln!(
                    o,
                    "    {:<22} {:<10} {} {}",
                    tt.id,
                    tt.state,
                    tt.reason.as_deref().unwrap_or(""),
                    tt.description.as_deref().unwrap_or("")
                );
                if let Some(x) = &t.explanation {
                    let _ = writeln!(o, "      {x}");
                }
            }
        }
        for iv in &aws.instances {
            let i = &iv.instance;
            let _ = writeln!(
                o,
                "  {:<16} {:<20} {:<8} {:<11} {}",
                i.name.as_deref().unwrap_or("-"),
                i.id,
                i.state,
                i.availability_zone,
                health_line(&iv.health)
            );
            for (ep, path) in &iv.sg_paths {
                let _ = writeln!(o, "      sg path to {ep}: {}", path.describe());
            }
            for (ep, path) in &iv.sentinel_paths {
                let _ = writeln!(o, "      sg path to {ep}'s sentinels: {}", path.describe());
            }
            for ep in iv.sg_paths.keys().filter(|ep| !iv.sentinel_paths.contains_key(*ep)) {
                let found = s.redis.iter().find(|r| &r.name == ep).and_then(|r| r.view.value.as_ref());
                if found.is_some_and(|i| !i.sentinels.is_empty()) {
                    let _ = writeln!(
                        o,
                        "      sg path to {ep}'s sentinels: not checked (give sentinel_port in the runbook)"
                    );
                }
            }
        }
    }

    let _ = writeln!(o, "\nREDIS (cutover's own connection)");
    for r in &s.redis {
        match &r.view.value {
            Some(i) => {
                let stale = if r.view.stale { format!("  [{}]", age(&r.view)) } else { String::new() };
                let _ = writeln!(
                    o,
                    "  {:<16} {:<12} PING {:.1} ms  v{} {}  keys {} ({} expiring)  mem {} KiB{stale}",
                    r.name,
                    r.environment,
                    i.ping_ms,
                    i.version,
                    i.role,
                    i.keys,
                    i.expiring_keys,
                    i.used_memory / 1024
                );
                for n in &i.nodes {
                    let ping = match (n.ping_ms, &n.error) {
                        (_, Some(e)) => format!("FAIL {e}"),
                        (Some(ms), None) => format!("PING {ms:.1} ms"),
                        (None, None) => "?".to_string(),
                    };
                    let _ = writeln!(o, "    node {:<44} {ping}", n.describe());
                }
                for s in &i.sentinels {
                    let said = match (s.ping_ms, &s.error, s.usable) {
                        (_, Some(e), _) => format!("FAIL {e}"),
                        (Some(ms), None, Some(n)) => format!("PING {ms:.1} ms  names the master  {n} usable sentinels"),
                        (Some(ms), None, None) => format!("PING {ms:.1} ms  names the master  quorum reachable"),
                        (None, None, _) => "?".to_string(),
                    };
                    let _ = writeln!(o, "    sentinel {:<40} {said}", s.addr);
                }
            }
            None => {
                let _ = writeln!(o, "  {:<16} {:<12} {}", r.name, r.environment, age(&r.view));
            }
        }
    }

    let _ = writeln!(o, "\nALARMS  ({})", age(&s.alarms));
    for a in s.alarms.value.iter().flatten() {
        // An OK that cannot see its side is not shown as a plain OK.
        match s.blind_alarms.get(&a.name).filter(|_| a.state == "OK") {
            Some(why) => {
                let _ = writeln!(o, "  {:<24} OK, blind: {why}", a.name);
            }
            None => {
                let _ = writeln!(o, "  {:<24} {}", a.name, a.state);
            }
        }
    }

    let _ = writeln!(o, "\nMETRICS, last 15 min  ({})", age(&s.metrics));
    let now = crate::time::parse_rfc3339(&s.generated_at)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    for series in s.metrics.value.iter().flatten() {
        let values = match (&series.error, series.points.last()) {
            (Some(e), _) => format!("not read: {e}"),
            (None, None) => "no data".to_string(),
            (None, Some(last)) => {
                let total: f64 = series.points.iter().map(|p| p.1).sum();
                // An old datapoint says nothing of now: its age is said.
                let latest = match now - last.0 {
                    old if old > super::CURRENT_WITHIN => format!("{:.3} ({}m ago)", last.1, old / 60),
                    _ => format!("{:.3}", last.1),
                };
                format!("latest {latest:<10} points {:<3} sum {total:.3}", series.points.len())
            }
        };
        let _ = writeln!(
            o,
            "  {:<12} {:<28} {:<8} {values}",
            series.environment,
            series.metric.cloudwatch_name(),
            series.stat
        );
    }

    let _ = writeln!(o, "\nCHECKS");
    for c in &s.checks {
        let mark = match c.outcome {
            CheckOutcome::Pass => "pass",
            CheckOutcome::Fail => "FAIL",
            CheckOutcome::Unknown => "????",
        };
        let blocking = if c.blocking { "" } else { " (not blocking)" };
        let _ = writeln!(o, "  [{mark}] {}/{} {}{blocking}: {}", c.phase, c.item, c.title, c.detail);
    }
    o
}
