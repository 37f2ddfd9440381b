//! What the cockpit shows, derived purely from `LiveState` and the runbook:
//! every value with its age and staleness, the analyses (security-group
//! paths, AZs not enabled), and the runbook's checks evaluated.

pub mod checks;
pub mod text;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::analysis::parity::Parity;
use crate::analysis::reachability::SgPath;
use crate::analysis::weights::{AlbHealth, RoutedGroup};
use crate::aws::cloudwatch::{AlarmState, Series};
use crate::aws::ec2::Instance;
use crate::aws::elb::{LoadBalancer, Target, TargetGroupAttributes};
use crate::aws::sts::Identity;
use crate::live::fetch::{AliasHealth, SideWeight};
use crate::live::{HealthProbe, LiveState, RedisInfo, Sourced};
use crate::runbook::{RedisEndpoint, Runbook};
use crate::time::rfc3339;
pub use checks::{CheckOutcome, CheckResult};

/// Bumped on any incompatible change to the JSON of `cutover status --json`.
pub const SCHEMA_VERSION: u32 = 1;

/// A value as shown: the last good one, when, and whether the latest poll failed.
#[derive(Debug, Clone, Serialize)]
pub struct View<T> {
    pub value: Option<T>,
    pub updated_at: Option<String>,
    pub age_seconds: Option<f64>,
    /// The latest poll failed; `value` (if any) is the last good one.
    pub stale: bool,
    pub error: Option<String>,
}

impl<T> View<T> {
    fn of<S>(src: Option<&Sourced<S>>, now: SystemTime, map: impl FnOnce(&S) -> T) -> View<T> {
        match src {
            None => View { value: None, updated_at: None, age_seconds: None, stale: false, error: None },
            Some(s) => View {
                value: s.value.as_ref().map(map),
                updated_at: s.updated_at.map(rfc3339),
                age_seconds: s.updated_at.map(|t| now.duration_since(t).unwrap_or(Duration::ZERO).as_secs_f64()),
                stale: s.is_stale(),
                error: s.error.clone(),
            },
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.value.is_some() && !self.stale
    }
}

/// Each side of `rb` as the workers found it.
fn side_views(rb: &Runbook, live: &LiveState, now: SystemTime) -> Vec<SideView> {
    rb.sides()
        .iter()
        .map(|side| {
            let found = live.sides.get(side);
            let identity = View::of(found.map(|(_, i)| i), now, Clone::clone);
            let account_id = rb.side_account(side);
            let account_ok = match (&account_id, &identity.value) {
                (Some(want), Some(i)) => Some(&i.account == want),
                _ => None,
            };
            SideView {
                name: match &side {
                    crate::runbook::Side::Dns => "dns".to_string(),
                    crate::runbook::Side::Environment(e) => e.clone(),
                },
                side: side.to_string(),
                account_id,
                region: found.map(|(r, _)| r.region.clone()),
                via: found.map(|(r, _)| r.via.clone()),
                identity,
                account_ok,
            }
        })
        .collect()
}

/// A metric datapoint older than this (seconds) is not shown as the current
/// value: ALB metrics arrive a few minutes late, and a count metric
/// publishes nothing for a minute without requests or errors.
pub const CURRENT_WITHIN: i64 = 5 * 60;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub schema: u32,
    pub runbook: String,
    pub region: String,
    pub generated_at: String,
    pub identity: View<Identity>,
    /// Each side's account, region, credentials and identity; empty for a
    /// runbook whose sides have no access keys of their own.
    pub sides: Vec<SideView>,
    pub traffic: View<Vec<SideWeight>>,
    pub last_change: Option<crate::live::fetch::LastChange>,
    pub rollout: Option<crate::live::fetch::RolloutView>,
    /// Why the rollout's state could not be read: the rollout is then
    /// unknown, not absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_unread: Option<String>,
    /// Why the audit log could not be read: the last change is then unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_unread: Option<String>,
    /// A dual-stack group whose record types weigh the sides differently
    /// (`traffic` is the first type's): how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_types_differ: Option<String>,
    /// A dual-stack group's records of its other types that the runbook
    /// does not list and that carry weight: who else gets those answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_unlisted_other_types: Option<String>,
    pub environments: Vec<EnvironmentView>,
    pub redis: Vec<RedisView>,
    pub alarms: View<Vec<AlarmState>>,
    pub metrics: View<Vec<Series>>,
    /// Every environment's shape, read only when a parity or readiness check
    /// needs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shapes: Option<View<crate::live::parity::Shapes>>,
    /// The rollout's two sides compared (`analysis::parity::Parity`), as old
    /// as the shapes it was found in; read when `shapes` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parity: Option<View<Parity>>,
    /// Each alarm read whose OK says nothing (`checks::alarm_blind`): its
    /// name and why. An `alarm_ok` gate on it is an error, its check unknown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blind_alarms: BTreeMap<String, String>,
    pub checks: Vec<CheckResult>,
}

/// One side (`[dns]` or `[environments.NAME]`) as reached.
#[derive(Debug, Clone, Serialize)]
pub struct SideView {
    /// `[dns]` or `[environments.NAME]`, as the runbook writes it.
    pub side: String,
    /// `dns`, or the environment's name: what the cockpit's header shows.
    pub name: String,
    /// The account the runbook says it is in (None: not said).
    pub account_id: Option<String>,
    pub region: Option<String>,
    /// How its credentials are got.
    pub via: Option<String>,
    pub identity: View<Identity>,
    /// Whether the identity is in `account_id` (None: unknown or not said).
    pub account_ok: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub name: String,
    pub label: String,
    pub aws: View<EnvironmentAws>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentAws {
    pub load_balancer: Option<LoadBalancer>,
    pub target_groups: Vec<TargetGroupView>,
    pub instances: Vec<InstanceView>,
}

/// Why an environment's target groups are not the ones its load balancer
/// routes requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingGap {
    /// It routes to a group the runbook does not list (its targets are not
    /// read, and its share of the requests could be getting 503s), or its
    /// routing was not read: unknown.
    Unknown(String),
    /// A listed group gets no requests (a listener rule missing): a failure.
    NotRouted(String),
}

impl EnvironmentAws {
    /// Whether the runbook's target groups are exactly the ones its load
    /// balancer routes requests to (any are, without a load balancer), and
    /// requests for `host` (the weighted record's name) reach them.
    pub fn routing_gap(&self, env: &str, host: &str) -> Result<(), RoutingGap> {
        let Some(lb) = &self.load_balancer else { return Ok(()) };
        let listed: Vec<(&str, &str)> =
            self.target_groups.iter().map(|tg| (tg.name.as_str(), tg.arn.as_str())).collect();
        routing_gap(lb, &listed, env, host)
    }

    /// Whether the side's load balancer routes requests to no group its
    /// `target_groups` do not list (another service's), as a rate of its
    /// own 5xx needs: Err saying which, or why that cannot be told.
    pub fn serves_only_listed(&self, env: &str) -> Result<(), String> {
        let Some(lb) = &self.load_balancer else { return Ok(()) };
        let listed: Vec<(&str, &str)> =
            self.target_groups.iter().map(|tg| (tg.name.as_str(), tg.arn.as_str())).collect();
        match unlisted_groups(lb, &listed)? {
            unlisted if unlisted.is_empty() => Ok(()),
            unlisted => Err(format!(
                "load balancer {} also routes requests to target group {}, which {env}'s target_groups do not \
                 list: AWS counts HTTPCode_ELB_5XX_Count and RequestCount per load balancer only, so that group's \
                 requests would dilute {env}'s rate; bound {env}'s load balancer 5xx with a `metric` gate (a count) \
                 instead",
                lb.name,
                unlisted.join(", ")
            )),
        }
    }
}

/// The groups `lb` routes requests to that `listed` (name, ARN) does not hold.
fn unlisted_groups(lb: &LoadBalancer, listed: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let routed = lb.routed_groups().map_err(|why| format!("load balancer {}: {why}", lb.name))?;
    Ok(routed
        .iter()
        .filter(|arn| !listed.iter().any(|(_, a)| a == *arn))
        .map(|arn| crate::aws::elb::target_group_name_of(arn))
        .collect())
}

fn unlisted_message(lb: &LoadBalancer, unlisted: &[String], env: &str) -> String {
    format!(
        "load balancer {} routes requests to target group {}, which {env}'s target_groups do not list, so its \
         targets are not read; add it to target_groups",
        lb.name,
        unlisted.join(", ")
    )
}

/// Whether `lb` routes requests for `host` to the groups listed for `env`
/// (name, ARN), and to no group unlisted: what the gates demand of a side,
/// and a shift of the side it raises.
pub fn routing_gap(lb: &LoadBalancer, listed: &[(&str, &str)], env: &str, host: &str) -> Result<(), RoutingGap> {
    let routed = lb.routed_groups().map_err(|why| RoutingGap::Unknown(format!("load balancer {}: {why}", lb.name)))?;
    let unlisted = unlisted_groups(lb, listed).map_err(RoutingGap::Unknown)?;
    // A listed group without requests fails whatever else is routed.
    let idle: Vec<&str> =
        listed.iter().filter(|(_, arn)| !routed.iter().any(|r| r == arn)).map(|(name, _)| *name).collect();
    if !idle.is_empty() {
        return Err(RoutingGap::NotRouted(format!(
            "load balancer {} routes no requests to {env}'s target group {} (no listener rule forwards to it): \
                 add the rule, or take the group out of target_groups",
            lb.name,
            idle.join(", ")
        )));
    }
    if !unlisted.is_empty() {
        return Err(RoutingGap::Unknown(unlisted_message(lb, &unlisted, env)));
    }
    // Routed by some rule is not routed the record's requests: a
    // default answering 503 with the group behind another host's rule
    // gets it none of the traffic Route53 sends here.
    let listed: Vec<&str> = listed.iter().map(|(_, arn)| *arn).collect();
    match lb.requests_for(host, &listed) {
        Ok(crate::aws::elb::HostRequests::Forwarded) => Ok(()),
        Ok(crate::aws::elb::HostRequests::Elsewhere(why)) => Err(RoutingGap::Unknown(format!(
            "{why}; whether {env}'s targets get the record's requests is unknown (cutover judges rules by the \
                 record's own name: one for a name clients use instead, a CNAME to it, leaves this unknown)"
        ))),
        Err(why) => Err(RoutingGap::Unknown(format!("load balancer {}: {why}", lb.name))),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetGroupView {
    pub name: String,
    pub arn: String,
    /// The load balancers it serves: whose requests an alarm on them watches.
    #[serde(skip)]
    pub load_balancer_arns: Vec<String>,
    pub healthy: usize,
    pub total: usize,
    pub health_check_path: Option<String>,
    pub health_check_interval_seconds: Option<u32>,
    pub attributes: TargetGroupAttributes,
    pub targets: Vec<TargetView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    #[serde(flatten)]
    pub target: Target,
    /// Whether the target's AZ is enabled on the load balancer (None: unknown).
    pub zone_enabled: Option<bool>,
    /// Why the target gets no traffic, in words, when cutover can tell.
    pub explanation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    pub health: View<HealthProbe>,
    /// Per Redis endpoint the environment uses: the security-group path.
    pub sg_paths: BTreeMap<String, SgPath>,
    /// Per Sentinel endpoint the environment uses: the security-group path
    /// to its sentinels (at the runbook's `sentinel_port`), which clients
    /// ask for the master before they reach it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sentinel_paths: BTreeMap<String, SgPath>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisView {
    pub name: String,
    pub environment: String,
    #[serde(flatten)]
    pub view: View<RedisInfo>,
}

fn zone_explanation(t: &Target, az: Option<&str>, lb: Option<&LoadBalancer>) -> (Option<bool>, Option<String>) {
    let enabled = match (az, lb) {
        // An IP target outside the load balancer's VPC is registered in
        // `all` zones (RegisterTargets): every enabled zone sends it traffic.
        (Some("all"), Some(_)) => Some(true),
        (Some(az), Some(lb)) => Some(lb.zones.iter().any(|z| z == az)),
        _ => None,
    };
    let explanation = match (enabled, lb, az) {
        (Some(false), Some(lb), Some(az)) => Some(format!(
            "AZ {az} is not enabled on load balancer {} (enabled: {}); the target gets no traffic{}",
            lb.name,
            lb.zones.join(", "),
            if t.reason.as_deref() == Some("Target.NotInUse") { "" } else { " (AWS will report Target.NotInUse)" }
        )),
        _ if t.reason.as_deref() == Some("Target.NotInUse") => Some(
            "the target group is not used by any listener, or the target's AZ is not enabled on the load balancer"
                .to_string(),
        ),
        _ => None,
    };
    (enabled, explanation)
}

pub fn snapshot(rb: &Runbook, live: &LiveState, region: &str, now: SystemTime) -> Snapshot {
    let environments: Vec<EnvironmentView> = rb
        .environments
        .values()
        .map(|env| {
            let aws = View::of(live.environments.get(&env.name), now, |d| {
                let by_id: BTreeMap<&str, &Instance> = d.instances.iter().map(|i| (i.id.as_str(), i)).collect();
                let target_groups = d
                    .target_groups
                    .iter()
                    .map(|tg| TargetGroupView {
                        name: tg.name.clone(),
                        arn: tg.arn.clone(),
                        load_balancer_arns: tg.load_balancer_arns.clone(),
                        healthy: tg.healthy(),
                        total: tg.targets.len(),
                        health_check_path: tg.health_check_path.clone(),
                        health_check_interval_seconds: tg.health_check_interval_seconds,
                        attributes: tg.attributes.clone(),
                        targets: tg
                            .targets
                            .iter()
                            .map(|t| {
                                let az = t
                                    .availability_zone
                                    .as_deref()
                                    .or_else(|| by_id.get(t.id.as_str()).map(|i| i.availability_zone.as_str()));
                                let (zone_enabled, explanation) = zone_explanation(t, az, d.load_balancer.as_ref());
                                TargetView { target: t.clone(), zone_enabled, explanation }
                            })
                            .collect(),
                    })
                    .collect();
                let instances = d
                    .instances
                    .iter()
                    .map(|i| {
                        let src = i.source();
                        let path_at = |name: &String, port: fn(&RedisEndpoint) -> Option<u16>| {
                            let port = port(rb.redis_endpoint(name)?)?;
                            Some((name.clone(), d.redis_path(&src, name, port)))
                        };
                        let used = &env.uses_redis;
                        InstanceView {
                            instance: i.clone(),
                            health: View::of(live.health.get(&i.id), now, Clone::clone),
                            sg_paths: used.iter().filter_map(|n| path_at(n, |ep| Some(ep.port))).collect(),
                            sentinel_paths: used.iter().filter_map(|n| path_at(n, |ep| ep.sentinel_port)).collect(),
                        }
                    })
                    .collect();
                EnvironmentAws { load_balancer: d.load_balancer.clone(), target_groups, instances }
            });
            EnvironmentView { name: env.name.clone(), label: env.label.clone(), aws }
        })
        .collect();
    let redis = rb
        .redis_endpoints()
        .map(|(env, ep)| RedisView {
            name: ep.name.clone(),
            environment: env.name.clone(),
            view: View::of(live.redis.get(&ep.name), now, Clone::clone),
        })
        .collect();
    // The cockpit reads them for its Parity pane even when no check needs them.
    let reads_shapes = rb.reads_shapes() || live.shapes.has_reported();
    let mut snap = Snapshot {
        schema: SCHEMA_VERSION,
        runbook: rb.name.clone(),
        region: region.to_string(),
        generated_at: rfc3339(now),
        identity: View::of(Some(&live.identity), now, Clone::clone),
        sides: if rb.has_side_access() { side_views(rb, live, now) } else { Vec::new() },
        traffic: View::of(Some(&live.traffic), now, |t| t.sides.clone()),
        last_change: live.traffic.value.as_ref().and_then(|t| t.last_change.clone()),
        rollout: live.traffic.value.as_ref().and_then(|t| t.rollout.clone()),
        // Read with the weights: while they are unread, so is the rollout.
        rollout_unread: match &live.traffic.value {
            Some(t) => t.rollout_unread.clone(),
            None => Some("its state (read with the weights, not read yet)".into()),
        },
        audit_unread: live.traffic.value.as_ref().and_then(|t| t.audit_unread.clone()),
        traffic_types_differ: live.traffic.value.as_ref().and_then(|t| t.types_differ.clone()),
        traffic_unlisted_other_types: live.traffic.value.as_ref().and_then(|t| t.unlisted_other_types.clone()),
        environments,
        redis,
        alarms: View::of(Some(&live.alarms), now, Clone::clone),
        metrics: View::of(Some(&live.metrics), now, Clone::clone),
        shapes: reads_shapes.then(|| View::of(Some(&live.shapes), now, Clone::clone)),
        parity: reads_shapes.then(|| parity_view(rb, &live.shapes, now)),
        blind_alarms: BTreeMap::new(),
        checks: Vec::new(),
    };
    // An alias evaluating target health gets no traffic while its load
    // balancer has no healthy target.
    let lb_dns = |env: &str| -> Option<(String, String)> {
        let aws = snap.environment(env)?.aws.value.as_ref()?;
        let lb = aws.load_balancer.as_ref()?;
        Some((lb.name.clone(), lb.dns_name.trim_end_matches('.').to_ascii_lowercase()))
    };
    let names_lb = crate::analysis::weights::alias_names;
    // Whatever cutover cannot judge is unknown, never healthy: an alias to a
    // load balancer the runbook does not name would let every gate pass
    // while the side it names gets nothing.
    let target_health = |env: &str| -> AliasHealth {
        let Some(target) =
            snap.traffic.value.iter().flatten().find(|s| s.is(env)).and_then(|s| s.alias_target.as_ref())
        else {
            return AliasHealth::Unknown("not an alias".into());
        };
        let target = target.dns_name.as_str();
        let Some(lb_name) = rb.environments.get(env).and_then(|e| e.load_balancer.as_deref()) else {
            return AliasHealth::Unknown(format!(
                "environment {env} names no load_balancer; name the load balancer it points at, and its target_groups"
            ));
        };
        let Some(view) = snap.environment(env).map(|e| &e.aws) else {
            return AliasHealth::Unknown(format!("environment {env} not read"));
        };
        let Some(aws) = view.value.as_ref() else {
            return AliasHealth::Unknown(match &view.error {
                Some(e) => format!("load balancer {lb_name} could not be read: {e}"),
                None => format!("load balancer {lb_name} not read yet"),
            });
        };
        // A stale reading is no judge of health now.
        if view.stale {
            return AliasHealth::Unknown(format!("the reading of load balancer {lb_name} is stale"));
        }
        let Some(lb) = aws.load_balancer.as_ref() else {
            return AliasHealth::Unknown(format!("load balancer {lb_name} not read yet"));
        };
        let dns = lb.dns_name.trim_end_matches('.').to_ascii_lowercase();
        if !names_lb(target, &dns) {
            let other = rb
                .environments
                .keys()
                .filter(|o| o.as_str() != env)
                .find_map(|o| lb_dns(o).filter(|(_, d)| names_lb(target, d)).map(|(name, _)| (o.clone(), name)));
            return AliasHealth::Unknown(match other {
                Some((o, name)) => format!(
                    "it is {o}'s load balancer {name}, not {env}'s {lb_name}: the weight given to {env} goes to {o}; \
                     point the alias at {lb_name}"
                ),
                None => format!(
                    "it is not {env}'s load balancer {lb_name} ({dns}); point the alias at it, or name in the runbook \
                     the load balancer it points at"
                ),
            });
        }
        if aws.target_groups.is_empty() {
            return AliasHealth::Unknown(format!(
                "environment {env} names no target_groups, so load balancer {lb_name}'s health is not read; list them"
            ));
        }
        let listed: Vec<(&str, RoutedGroup<'_>)> = aws
            .target_groups
            .iter()
            .map(|tg| {
                let g = RoutedGroup {
                    name: &tg.name,
                    healthy: tg.healthy,
                    registered: tg.total,
                    dns_failover_threshold: tg.attributes.dns_failover_threshold.as_deref(),
                };
                (tg.arn.as_str(), g)
            })
            .collect();
        match lb.alias_health(&listed) {
            AlbHealth::Healthy => AliasHealth::Known(true),
            AlbHealth::Unhealthy(_) => AliasHealth::Known(false),
            AlbHealth::Unknown(why) => AliasHealth::Unknown(format!("load balancer {lb_name}: {why}")),
        }
    };
    let by_env: std::collections::BTreeMap<String, AliasHealth> = snap
        .traffic
        .value
        .iter()
        .flatten()
        .filter_map(|s| s.environment.clone())
        .map(|env| {
            let health = target_health(&env);
            (env, health)
        })
        .collect();
    if let Some(sides) = snap.traffic.value.as_mut() {
        crate::live::fetch::apply_health(sides, |env| {
            by_env.get(env).cloned().unwrap_or_else(|| AliasHealth::Unknown(format!("environment {env} not read")))
        });
    }
    let alarms = snap.alarms.value.clone().unwrap_or_default();
    snap.blind_alarms = alarms
        .iter()
        .filter_map(|a| Some((a.name.clone(), checks::alarm_or_children_blind(rb, &snap, &alarms, &a.name)?)))
        .collect();
    snap.checks = checks::evaluate(rb, &snap);
    snap
}

/// The rollout's `from` and `to` shapes compared, with the shapes' age; no
/// value until both sides have been read.
fn parity_view(rb: &Runbook, shapes: &Sourced<crate::live::parity::Shapes>, now: SystemTime) -> View<Parity> {
    let v = View::of(Some(shapes), now, |s| match (s.get(&rb.rollout.from), s.get(&rb.rollout.to)) {
        (Some(from), Some(to)) => Some(Parity::of(from, to, &rb.parity_allow, &rb.dns.record)),
        _ => None,
    });
    View {
        value: v.value.flatten(),
        updated_at: v.updated_at,
        age_seconds: v.age_seconds,
        stale: v.stale,
        error: v.error,
    }
}

impl Snapshot {
    pub fn environment(&self, name: &str) -> Option<&EnvironmentView> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Every blocking check passes.
    pub fn blocking_checks_pass(&self) -> bool {
        self.checks.iter().filter(|c| c.blocking).all(|c| c.outcome == CheckOutcome::Pass)
    }
}

#[cfg(test)]
mod tests {
    /// An IP target outside the VPC, registered in `all` zones as AWS
    /// requires, is in an enabled zone: a healthy one is counted.
    #[test]
    fn a_target_in_all_zones_is_in_an_enabled_zone() {
        let lb = crate::aws::elb::LoadBalancer {
            name: "alb".into(),
            zones: vec!["eu-west-1a".into(), "eu-west-1b".into()],
            ..Default::default()
        };
        let t = crate::aws::elb::Target {
            id: "10.9.0.5".into(),
            port: Some(80),
            availability_zone: Some("all".into()),
            state: "healthy".into(),
            reason: None,
            description: None,
        };
        assert_eq!(super::zone_explanation(&t, Some("all"), Some(&lb)), (Some(true), None));
        let (enabled, why) = super::zone_explanation(&t, Some("eu-west-1c"), Some(&lb));
        assert_eq!(enabled, Some(false));
        assert!(why.unwrap().starts_with("AZ eu-west-1c is not enabled on load balancer alb"));
    }
}
