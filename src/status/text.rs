//! Plain-text rendering of a snapshot, for `cutover demo` (until the TUI) and
//! `cutover status`.

use std::fmt::Write;

use super::*;

fn err(e: &impl std::fmt::Display) -> String {
    format!("UNAVAILABLE ({e})")
}

pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let who = match &s.identity {
        Ok(i) => format!("account {} ({})", i.account, i.arn),
        Err(e) => err(e),
    };
    let _ = writeln!(o, "runbook {}  region {}  {}", s.runbook, s.region, who);
    let _ = writeln!(o, "\nTRAFFIC");
    match &s.traffic {
        Ok(sides) => {
            for w in sides {
                let weight = w.weight.map_or("missing".to_string(), |w| w.to_string());
                let bar = "#".repeat((w.share_percent / 5.0).round() as usize);
                let _ = writeln!(
                    o,
                    "  {:<12} {:<10} weight {:>7}  {:>5.1}%  {:<20} ttl {}",
                    w.environment,
                    w.set_identifier,
                    weight,
                    w.share_percent,
                    bar,
                    w.ttl.map_or("-".into(), |t| format!("{t}s"))
                );
            }
        }
        Err(e) => {
            let _ = writeln!(o, "  {}", err(e));
        }
    }
    for env in &s.environments {
        let _ = writeln!(o, "\n{} ({})", env.name.to_uppercase(), env.label);
        match &env.target_groups {
            Ok(tgs) => {
                for tg in tgs {
                    let _ = writeln!(o, "  target group {}  {}/{} healthy", tg.name, tg.healthy(), tg.targets.len());
                    for t in &tg.targets {
                        let _ = writeln!(
                            o,
                            "    {:<22} {:<10} {} {}",
                            t.id,
                            t.state,
                            t.reason.as_deref().unwrap_or(""),
                            t.description.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(o, "  target groups {}", err(e));
            }
        }
        match &env.instances {
            Ok(list) => {
                for iv in list {
                    let i = &iv.instance;
                    let health = match &iv.health {
                        HealthView::NotProbed { reason } => reason.clone(),
                        HealthView::Answered { status, latency_ms, redis_ok, redis_error, .. } => {
                            let r = match redis_ok {
                                Some(true) => "redis ok".to_string(),
                                Some(false) => format!("redis DOWN: {}", redis_error.as_deref().unwrap_or("?")),
                                None => "redis n/a".to_string(),
                            };
                            format!("/health {status} in {latency_ms:.0} ms, {r}")
                        }
                        HealthView::Failed { error, .. } => format!("/health failed: {error}"),
                    };
                    let _ = writeln!(
                        o,
                        "  {:<16} {:<20} {:<8} {:<11} {}",
                        i.name.as_deref().unwrap_or("-"),
                        i.id,
                        i.state,
                        i.availability_zone,
                        health
                    );
                    for (ep, path) in &iv.sg_paths {
                        let v = match path {
                            SgPath::Allowed { via } => format!("ok ({via})"),
                            SgPath::Blocked { reason, .. } => format!("BLOCKED: {reason}"),
                            SgPath::Unknown { reason } => format!("unknown: {reason}"),
                        };
                        let _ = writeln!(o, "      sg path to {ep}: {v}");
                    }
                    if let Some(z) = &iv.zone_not_enabled {
                        let _ = writeln!(o, "      {z}");
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(o, "  instances {}", err(e));
            }
        }
    }
    let _ = writeln!(o, "\nREDIS (cockpit's own connection)");
    for r in &s.redis {
        match &r.result {
            Ok(i) => {
                let _ = writeln!(
                    o,
                    "  {:<16} {:<12} PING {:.1} ms  v{} {}  keys {} ({} expiring)  mem {} KiB",
                    r.name,
                    r.environment,
                    i.ping_ms,
                    i.version,
                    i.role,
                    i.keys,
                    i.expiring_keys,
                    i.used_memory / 1024
                );
            }
            Err(e) => {
                let _ = writeln!(o, "  {:<16} {:<12} {}", r.name, r.environment, err(e));
            }
        }
    }
    let _ = writeln!(o, "\nALARMS");
    match &s.alarms {
        Ok(list) => {
            for a in list {
                let _ = writeln!(o, "  {:<24} {}", a.name, a.state);
            }
        }
        Err(e) => {
            let _ = writeln!(o, "  {}", err(e));
        }
    }
    o
}
