//! Parity between the rollout's two sides: what their load balancers, target
//! groups, instances, security groups, alarms and Redis look like, compared
//! field by field. Each difference is expected (the runbook allows it, with a
//! reason) or drift. Security-group rules are compared by role (load
//! balancer → app, app → Redis), so two sides with different group ids but
//! the same shape compare equal.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::reachability::SecurityGroup;

/// A certificate a listener serves, as ACM tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Certificate {
    pub arn: String,
    /// Its domain name, then its other subject alternative names.
    pub names: Vec<String>,
    /// `ISSUED`, `EXPIRED`, `REVOKED`, `PENDING_VALIDATION`…
    pub status: Option<String>,
    /// `AMAZON_ISSUED`, `IMPORTED` or `PRIVATE` (a private CA's, which
    /// public clients do not trust).
    pub kind: Option<String>,
    /// When it starts and stops being valid (RFC 3339).
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// Why ACM did not tell: its names are then unknown, never covering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Certificate {
    /// Whether one of its names covers `host`: the same name, or a wildcard
    /// (`*.example.com`) standing for exactly one label (`www.example.com`,
    /// never `example.com` or `a.b.example.com`).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            match n.strip_prefix("*.") {
                Some(rest) => {
                    host.split_once('.').is_some_and(|(label, host_rest)| !label.is_empty() && host_rest == rest)
                }
                None => n == host,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub port: u16,
    /// HTTP, HTTPS, TCP, TLS…
    pub protocol: String,
    /// The default certificate's ARN (HTTPS and TLS listeners).
    pub certificate: Option<String>,
    /// Every certificate it serves (the default first, then those chosen by
    /// SNI), with what ACM says of each.
    pub certificates: Vec<Certificate>,
    pub ssl_policy: Option<String>,
    /// The default actions' types in their order (`forward`, `redirect`,
    /// `authenticate-oidc then fixed-response`…).
    pub default_action: String,
    /// A redirect's or fixed response's target (`HTTPS:443`, `404`); a
    /// forward's target group is side-specific and left out.
    pub default_action_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadBalancerShape {
    pub name: String,
    pub arn: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    pub zones: Vec<String>,
    pub security_groups: Vec<String>,
    pub vpc_id: Option<String>,
    pub idle_timeout_seconds: Option<u32>,
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroupShape {
    pub name: String,
    pub arn: String,
    /// How the load balancer reaches its targets: `HTTP`, `HTTPS`…, and the port.
    pub protocol: Option<String>,
    pub port: Option<u16>,
    /// How the health check reaches them: its protocol, and its port
    /// (`traffic-port`: the targets' own).
    pub health_check_protocol: Option<String>,
    pub health_check_port: Option<String>,
    pub health_check_path: Option<String>,
    pub health_check_interval_seconds: Option<u32>,
    pub health_check_timeout_seconds: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    /// The HTTP codes a healthy target answers (`200`, `200-299`).
    pub matcher: Option<String>,
    /// `lb_cookie`, `app_cookie`, `source_ip`…; None when stickiness is off.
    pub stickiness: Option<String>,
    pub stickiness_duration_seconds: Option<u32>,
    pub deregistration_delay_seconds: Option<u32>,
    /// `round_robin`, `least_outstanding_requests`, `weighted_random`.
    pub algorithm: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceShape {
    pub id: String,
    pub name: Option<String>,
    pub instance_type: String,
    pub image_id: Option<String>,
    pub zone: String,
    /// Whether IMDSv2 is required (`HttpTokens=required`); None: not reported.
    pub imdsv2_required: Option<bool>,
    pub public_ip: Option<String>,
    /// Security-group ids.
    pub security_groups: Vec<String>,
    /// pending, running, stopping, stopped, shutting-down (terminated ones
    /// are left out): a stopped instance is no capacity.
    pub state: String,
}

impl InstanceShape {
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.id.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisShape {
    pub name: String,
    pub version: String,
    /// From INFO (every version answers it, ElastiCache too).
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<String>,
    pub aof_enabled: Option<bool>,
    /// The RDB `save` schedule (`3600 1 300 100`); empty when snapshots are
    /// off; None when the server refuses `CONFIG GET save` (ElastiCache).
    pub rdb_save: Option<String>,
    /// Its last RDB save failed (INFO `rdb_last_bgsave_status:err`: a full
    /// disk, a directory gone): the schedule saves nothing now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rdb_save_failed: bool,
    /// Its last AOF write failed (INFO `aof_last_write_status:err`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aof_write_failed: bool,
    pub keys: u64,
    /// Settings the server would not tell (`save`), so never compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// What ElastiCache says of it, when the runbook names its replication group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elasticache: Option<ElastiCacheShape>,
    /// A cluster whose primaries disagree on a compared setting: its parity
    /// path (`redis.maxmemory`) → each value with how many primaries hold
    /// it. Parity compares that, never one primary's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub primaries_differ: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ElastiCacheShape {
    pub replication_group: String,
    pub node_type: Option<String>,
    pub engine_version: Option<String>,
    /// Days automatic snapshots are kept; 0 means none are taken.
    pub snapshot_retention_days: Option<u32>,
    pub transit_encryption: Option<bool>,
    /// `preferred` (plain connections still taken) or `required`.
    pub transit_encryption_mode: Option<String>,
    pub at_rest_encryption: Option<bool>,
    pub auth_token: Option<bool>,
    /// Its RBAC user groups (`UserGroupIds`): authentication by user, with
    /// `auth_token` off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
    /// `enabled`, `disabled`, `enabling` or `disabling`: whether a replica
    /// takes over when the primary fails.
    pub automatic_failover: Option<String>,
    /// `enabled` or `disabled`: replicas kept in other zones than the primary's.
    pub multi_az: Option<String>,
    /// Shards (node groups): 1 unless cluster mode is on.
    pub shards: Option<usize>,
    /// Nodes, primaries and replicas (member clusters).
    pub nodes: Option<usize>,
    pub cluster_mode: Option<bool>,
}

/// A Redis setting as parity shows it; None: not read.
type ShownSetting = fn(&RedisShape) -> Option<String>;

/// The Redis settings parity compares one by one, by path.
const COMPARED_SETTINGS: [(&str, ShownSetting); 3] = [
    ("redis.version", RedisShape::version_shown),
    ("redis.maxmemory", RedisShape::memory_limit),
    ("redis.persistence", RedisShape::persistence_shown),
];

impl RedisShape {
    /// A cluster from its primaries' shapes: keys summed, the rest the
    /// least persistent primary's (one shard that loses its keys on a
    /// restart is the cluster's risk), and each compared setting the
    /// primaries disagree on in `primaries_differ`. None: no primaries.
    pub fn of_cluster(primaries: Vec<RedisShape>) -> Option<RedisShape> {
        let mut differ = BTreeMap::new();
        for (path, read) in COMPARED_SETTINGS {
            let mut held: BTreeMap<String, usize> = BTreeMap::new();
            for p in &primaries {
                *held.entry(read(p).unwrap_or_else(|| "not readable".into())).or_default() += 1;
            }
            if held.len() > 1 {
                let each: Vec<String> = held
                    .into_iter()
                    .map(|(v, n)| format!("{v} on {n} {}", if n == 1 { "primary" } else { "primaries" }))
                    .collect();
                differ.insert(path.to_string(), each.join("; "));
            }
        }
        let keys = primaries.iter().map(|p| p.keys).sum();
        let mut unreadable: Vec<String> = primaries.iter().flat_map(|p| p.unreadable.iter().cloned()).collect();
        unreadable.sort();
        unreadable.dedup();
        // Fails first, then unknown, then persistent.
        let rank = |p: &RedisShape| match p.persistent() {
            Some(false) => 0,
            None => 1,
            Some(true) => 2,
        };
        let weakest = primaries.into_iter().min_by_key(rank)?;
        Some(RedisShape { keys, unreadable, primaries_differ: differ, ..weakest })
    }

    fn version_shown(&self) -> Option<String> {
        Some(self.version.clone())
    }

    /// maxmemory and its policy as parity shows them; None: not read.
    pub fn memory_limit(&self) -> Option<String> {
        Some(format!("{} {}", self.maxmemory?, self.maxmemory_policy.clone()?))
    }

    /// AOF and the RDB schedule as parity shows them; None: not read.
    pub fn persistence_shown(&self) -> Option<String> {
        let aof = if self.aof_enabled? { "AOF on" } else { "AOF off" };
        let rdb = match self.rdb_save.as_deref()? {
            "" => "RDB off".to_string(),
            s => format!("RDB save {s}"),
        };
        Some(format!("{aof}, {rdb}"))
    }

    /// What parity compares for the setting at `path`: the primaries'
    /// values when they disagree, else `one`.
    fn compared(&self, path: &str, one: Option<String>) -> Option<String> {
        self.primaries_differ.get(path).cloned().or(one)
    }

    /// Whether the data survives a restart: ElastiCache snapshots retained,
    /// AOF on, or an RDB schedule; AOF or RDB only while its last write
    /// or save worked.
    pub fn persistent(&self) -> Option<bool> {
        let aof = self.aof_enabled.map(|on| on && !self.aof_write_failed);
        if let Some(days) = self.elasticache.as_ref().and_then(|e| e.snapshot_retention_days) {
            return Some(days > 0 || aof == Some(true));
        }
        let rdb = self.rdb_save.as_deref().map(|s| !s.trim().is_empty() && !self.rdb_save_failed);
        match (aof, rdb) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            // Configured but failing: nothing is saved, whatever CONFIG hides.
            _ if self.aof_write_failed || self.rdb_save_failed => Some(false),
            _ => None,
        }
    }

    /// What is configured to persist but failing now, one phrase each.
    pub fn persistence_failing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.aof_enabled == Some(true) && self.aof_write_failed {
            out.push("its last AOF write failed (aof_last_write_status:err)");
        }
        if self.rdb_save.as_deref().is_none_or(|s| !s.trim().is_empty()) && self.rdb_save_failed {
            out.push("its last RDB save failed (rdb_last_bgsave_status:err)");
        }
        out
    }
}

/// An Auto Scaling group attached to one of a side's target groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoScalingShape {
    pub name: String,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub desired: Option<u32>,
    /// The side's target groups it sends instances to.
    pub target_group_arns: Vec<String>,
    /// Its suspended processes (`Launch`, `ReplaceUnhealthy`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suspended: Vec<String>,
    /// HealthCheckType as AWS has it: `EC2` (the default), or with `ELB`
    /// among them (`ELB`, `EC2,ELB`) when a target group's health check
    /// counts too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_type: Option<String>,
}

impl AutoScalingShape {
    /// Whether it replaces an instance its target groups find unhealthy:
    /// only with ELB among its health check types (EC2 alone looks at the
    /// instance's status checks, never at the load balancer's); `None`
    /// when its types were not read.
    pub fn replaces_unhealthy_targets(&self) -> Option<bool> {
        Some(self.health_check_types()?.contains(&"ELB"))
    }

    /// Its health check types as a set: sorted, each once, EC2 left out
    /// (AWS always checks it, named or not). `None` when not read.
    pub fn health_check_types(&self) -> Option<Vec<&str>> {
        let mut types: Vec<&str> = self
            .health_check_type
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "EC2")
            .collect();
        types.sort_unstable();
        types.dedup();
        Some(types)
    }
}

/// A metric alarm that watches one of a side's load balancer or target groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchingAlarm {
    pub name: String,
    /// The side's ALB metrics it watches: its own metric, or each metric a
    /// metric-math alarm (`Metrics`) reads of the side.
    pub metrics: Vec<String>,
    /// ActionsEnabled: false, the alarm changes state and tells no one.
    pub actions_enabled: bool,
    /// Its ALARM actions that tell a person: SNS topics, Systems Manager
    /// OpsItems and incidents, Lambda functions. An Auto Scaling policy or
    /// an EC2 action tells no one; none, and the alarm tells no one either.
    pub notifying_actions: usize,
    /// Why it never goes off whatever its metric does, or is left unjudged
    /// by CloudWatch, if so (a count's Average compared above 1, a period
    /// under a minute on an ALB metric, an `EvaluationState`).
    pub never_fires: Option<String>,
    /// How it judges its own metric (`Sum > 5, 1 of 1 × 60 s`); None for a
    /// metric-math alarm (its expression is not compared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judges: Option<String>,
}

impl WatchingAlarm {
    /// Why it notifies no one when it goes off, if it does not.
    pub fn silent(&self) -> Option<&'static str> {
        if !self.actions_enabled {
            Some("its actions are disabled")
        } else if self.notifying_actions == 0 {
            Some("it has no alarm action that notifies anyone (an Auto Scaling or EC2 action tells no one)")
        } else {
            None
        }
    }
}

/// Everything compared of one side, as read live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideShape {
    pub environment: String,
    pub load_balancer: Option<LoadBalancerShape>,
    pub target_groups: Vec<TargetGroupShape>,
    /// Auto Scaling groups attached to the side's target groups.
    pub autoscaling_groups: Vec<AutoScalingShape>,
    pub instances: Vec<InstanceShape>,
    /// Every group the side's load balancer, instances and Redis are in.
    pub groups: Vec<SecurityGroup>,
    /// Ids of the groups of the side's Redis endpoints.
    pub redis_groups: Vec<String>,
    pub alarms: Vec<WatchingAlarm>,
    /// Redis endpoints the side's instances use, in the runbook's order.
    pub redis: Vec<RedisRead>,
}

/// One Redis as read, or why it could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum RedisRead {
    /// Boxed: a shape is some 260 bytes, a failure 48.
    Ok(Box<RedisShape>),
    Failed {
        name: String,
        error: String,
    },
}

impl SideShape {
    /// What could not be read, so was not compared: `prod-cache: timed out`.
    /// The load balancer's security-group ids.
    fn load_balancer_groups(&self) -> BTreeSet<&str> {
        self.load_balancer.iter().flat_map(|l| l.security_groups.iter()).map(String::as_str).collect()
    }

    /// The instances' security-group ids.
    fn app_groups(&self) -> BTreeSet<&str> {
        self.instances.iter().flat_map(|i| i.security_groups.iter()).map(String::as_str).collect()
    }

    pub fn unread(&self) -> Vec<String> {
        let env = &self.environment;
        let mut out: Vec<String> = self
            .redis
            .iter()
            .map(|r| match r {
                RedisRead::Failed { name, error } => format!("{name} ({env}): {error}"),
                RedisRead::Ok(shape) => {
                    // ElastiCache refuses CONFIG: its snapshot retention,
                    // compared (`redis.snapshot_retention`), stands for the
                    // RDB schedule, as it does for `redis_persistence`.
                    let unread: Vec<&str> = shape
                        .unreadable
                        .iter()
                        .map(String::as_str)
                        .filter(|u| shape.elasticache.is_none() || !u.starts_with("save "))
                        .collect();
                    match unread.is_empty() {
                        true => String::new(),
                        false => format!("{} ({env}): {} not readable", shape.name, unread.join(", ")),
                    }
                }
            })
            .filter(|l| !l.is_empty())
            .collect();
        // Nothing to compare is not "no difference".
        if self.instances.is_empty() {
            out.push(format!("{env}: no instance matches the runbook's selector; instances not compared"));
        }
        if !self.redis.is_empty() && self.redis_groups.is_empty() {
            out.push(format!("{env}: its Redis endpoints name no security_groups; the app → Redis rules not compared"));
        }
        // Outbound rules are compared for the load balancer's and the app's groups only.
        let compared: BTreeSet<&str> = self.load_balancer_groups().union(&self.app_groups()).copied().collect();
        let mut lists: Vec<String> = self
            .groups
            .iter()
            .filter(|g| compared.contains(g.id.as_str()))
            .flat_map(|g| g.egress.iter().flat_map(|r| &r.prefix_lists).map(move |pl| (g, pl)))
            .filter_map(|(g, pl)| {
                pl.unread.as_ref().map(|e| format!("{env}: prefix list {} of {}'s outbound rules: {e}", pl.id, g.name))
            })
            .collect();
        lists.sort();
        lists.dedup();
        out.extend(lists);
        for l in self.load_balancer.iter().flat_map(|lb| &lb.listeners) {
            for cert in &l.certificates {
                if let Some(e) = &cert.error {
                    out.push(format!(
                        "{env}: certificate {} of listener {} {}: {e}; its listener's certificates not compared",
                        cert.arn, l.port, l.protocol
                    ));
                }
            }
        }
        out
    }
}

/// One difference between the sides (or, for `instances.alike.*`, between an
/// instance and its siblings on one side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// A path from [`PATHS`], the key `[parity] allow` names.
    pub what: String,
    /// Which listener, target group, Redis or instance it is about.
    pub subject: String,
    /// Set for a difference inside one side: that side's environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// The `from` side's value (for `within`: the siblings' value).
    pub from_value: String,
    /// The `to` side's value (for `within`: the odd instance's value).
    pub to_value: String,
    /// The runbook's reason when this difference is expected.
    pub allowed: Option<String>,
}

impl Difference {
    pub fn is_drift(&self) -> bool {
        self.allowed.is_none()
    }
}

/// Every path a difference may have, with what it compares.
pub const PATHS: [(&str, &str); 46] = [
    ("load_balancer", "whether each side has a load balancer"),
    ("load_balancer.scheme", "internet-facing or internal"),
    ("load_balancer.zones", "availability zones enabled"),
    ("load_balancer.idle_timeout", "idle timeout (seconds)"),
    ("load_balancer.listeners", "listener ports and protocols"),
    ("load_balancer.listener.certificate", "a listener's default certificate"),
    ("load_balancer.listener.ssl_policy", "a listener's SSL policy"),
    ("load_balancer.listener.default_action", "a listener's default action"),
    ("target_groups", "how many target groups"),
    ("target_group.protocol", "protocol and port the targets are reached on"),
    ("target_group.health_check.port", "health-check protocol and port"),
    ("target_group.health_check.path", "health-check path"),
    ("target_group.health_check.interval", "health-check interval (seconds)"),
    ("target_group.health_check.timeout", "health-check timeout (seconds)"),
    ("target_group.health_check.healthy_threshold", "healthy threshold"),
    ("target_group.health_check.unhealthy_threshold", "unhealthy threshold"),
    ("target_group.health_check.matcher", "HTTP codes counted healthy"),
    ("target_group.stickiness", "stickiness type and duration"),
    ("target_group.deregistration_delay", "deregistration delay (seconds)"),
    ("target_group.algorithm", "load-balancing algorithm"),
    ("autoscaling", "whether an Auto Scaling group feeds the target groups"),
    ("autoscaling.size", "the Auto Scaling groups' min, max and desired capacity"),
    ("autoscaling.health_check", "the Auto Scaling groups' health check types (ELB: the target group's check counts)"),
    ("instances.count", "how many instances"),
    ("instances.type", "instance types"),
    ("instances.ami", "AMIs"),
    ("instances.zones", "availability-zone spread (each zone's share of the instances)"),
    ("instances.state", "instances not running, per state"),
    ("instances.imdsv2", "IMDSv2 required"),
    ("instances.public_ip", "public IP addresses"),
    ("instances.alike", "an instance unlike its siblings (groups, type, AMI)"),
    (
        "security_groups",
        "inbound rules by role (load balancer, app, redis), and the outbound rules of the load balancer's and the app's",
    ),
    ("alarms", "metrics the side's alarms watch"),
    ("alarms.notify", "metrics whose alarms tell someone when they go off"),
    ("alarms.thresholds", "how the side's alarms judge each metric (statistic, comparison, threshold, periods)"),
    ("redis", "how many Redis endpoints each side uses"),
    ("redis.version", "Redis version"),
    ("redis.maxmemory", "maxmemory and its policy"),
    ("redis.persistence", "AOF and RDB snapshots"),
    ("redis.keys", "key count"),
    ("redis.node_type", "ElastiCache node type and engine version"),
    ("redis.snapshot_retention", "ElastiCache snapshot retention (days)"),
    ("redis.failover", "ElastiCache automatic failover and Multi-AZ"),
    ("redis.nodes", "ElastiCache cluster mode, shards and nodes"),
    ("redis.encryption", "ElastiCache encryption in transit and at rest"),
    ("redis.auth", "ElastiCache AUTH token"),
];

pub fn is_path(what: &str) -> bool {
    PATHS.iter().any(|(p, _)| *p == what)
}

/// The rules of each role's groups, with group ids replaced by the role they
/// play on this side: `tcp 6379 from app`, `all traffic to 0.0.0.0/0`.
/// Outbound rules of the load balancer's and the app's groups only: Redis
/// starts no connection, and its answers pass whatever its outbound rules say
/// (security groups are stateful).
pub fn role_rules(side: &SideShape) -> BTreeMap<&'static str, BTreeSet<String>> {
    let (lb, app) = (side.load_balancer_groups(), side.app_groups());
    let redis: BTreeSet<&str> = side.redis_groups.iter().map(String::as_str).collect();
    let name_of = |id: &str| side.groups.iter().find(|g| g.id == id).map_or(id.to_string(), |g| g.name.clone());
    let role_of = |id: &str| -> String {
        let mut roles = Vec::new();
        if lb.contains(id) {
            roles.push("load balancer");
        }
        if app.contains(id) {
            roles.push("app");
        }
        if redis.contains(id) {
            roles.push("redis");
        }
        if roles.is_empty() { format!("group {}", name_of(id)) } else { roles.join("+") }
    };
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for (role, ids) in [("load balancer", &lb), ("app", &app), ("redis", &redis)] {
        let rules = out.entry(role).or_default();
        for g in side.groups.iter().filter(|g| ids.contains(g.id.as_str())) {
            let inbound = g.ingress.iter().map(|r| ("from", r));
            let outbound = g.egress.iter().filter(|_| role != "redis").map(|r| ("to", r));
            for (way, r) in inbound.chain(outbound) {
                let proto = match r.protocol.as_str() {
                    "-1" | "all" => "all traffic".to_string(),
                    // ICMP keeps its type in FromPort and its code in ToPort
                    // (-1: any), not a port range: type 3 (path MTU discovery)
                    // and type 8 (echo) must not read alike.
                    p @ ("icmp" | "1" | "icmpv6" | "58") => {
                        let name = if matches!(p, "icmp" | "1") { "icmp" } else { "icmpv6" };
                        match (r.from_port, r.to_port) {
                            (None, _) => format!("{name} every type"),
                            (Some(t), None) => format!("{name} type {t} every code"),
                            (Some(t), Some(c)) => format!("{name} type {t} code {c}"),
                        }
                    }
                    p => match (r.from_port, r.to_port) {
                        (Some(f), Some(t)) if f == t => format!("{p} {f}"),
                        (Some(f), Some(t)) => format!("{p} {f}-{t}"),
                        _ => p.to_string(),
                    },
                };
                let peers = r.groups.iter().map(|id| role_of(id)).chain(r.cidrs.iter().cloned()).chain(
                    r.prefix_lists.iter().map(|p| match &p.unread {
                        // Its id differs across accounts; said so, as a value no other side has.
                        Some(_) => format!("prefix list {} (not read)", p.id),
                        None => format!("prefix list {}", p.cidrs.join(" ")),
                    }),
                );
                for s in peers {
                    rules.insert(format!("{proto} {way} {s}"));
                }
            }
        }
    }
    out
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)
}

/// `t3.micro, t3.small`: the distinct values, sorted (how many instances
/// is `instances.count`'s business).
fn tally<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let distinct: BTreeSet<&str> = values.collect();
    if distinct.is_empty() {
        return "none".into();
    }
    distinct.into_iter().collect::<Vec<_>>().join(", ")
}

/// `eu-west-1a: 3, eu-west-1b: 1`: each distinct value with how many have it.
fn counted<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *n.entry(v).or_default() += 1;
    }
    if n.is_empty() {
        return "none".into();
    }
    n.into_iter().map(|(v, k)| format!("{v}: {k}")).collect::<Vec<_>>().join(", ")
}

/// `eu-west-1a: 75%, eu-west-1b: 25%`: each distinct value with its share.
fn shares<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *n.entry(v).or_default() += 1;
    }
    let total: usize = n.values().sum();
    if total == 0 {
        return "none".into();
    }
    n.into_iter().map(|(v, k)| format!("{v}: {}%", (k * 100 + total / 2) / total)).collect::<Vec<_>>().join(", ")
}

/// One `[parity] allow` entry: the differences of a parity path it expects,
/// narrowed by what is given, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParityAllowance {
    /// A parity path (`target_group.stickiness`).
    pub what: String,
    /// Only the difference about this subject (a target group pair, a role's
    /// groups, an instance), as `cutover diff` names it.
    pub subject: Option<String>,
    /// Only while the `from` side's value is exactly this.
    pub from: Option<String>,
    /// Only while the `to` side's value is exactly this: a further change
    /// there is drift again.
    pub to: Option<String>,
    pub reason: String,
}

impl ParityAllowance {
    /// Whether this allowance expects the difference `what` about `subject`,
    /// `from` → `to`.
    pub fn expects(&self, what: &str, subject: &str, from: &str, to: &str) -> bool {
        let given = |want: &Option<String>, value: &str| want.as_deref().is_none_or(|w| w == value);
        self.what == what && given(&self.subject, subject) && given(&self.from, from) && given(&self.to, to)
    }
}

/// The reason of the first allowance that expects the difference, if any.
fn allowance(allow: &[ParityAllowance], what: &str, subject: &str, from: &str, to: &str) -> Option<String> {
    allow.iter().find(|a| a.expects(what, subject, from, to)).map(|a| a.reason.clone())
}

/// Adds differences, pairing each with its allowance.
struct Collector<'a> {
    allow: &'a [ParityAllowance],
    /// The name clients use, which certificates are judged by.
    record: Option<&'a str>,
    out: Vec<Difference>,
}

impl Collector<'_> {
    fn cmp(&mut self, what: &str, subject: &str, from: String, to: String) {
        if from != to {
            debug_assert!(is_path(what), "{what} is not a parity path");
            let allowed = allowance(self.allow, what, subject, &from, &to);
            self.out.push(Difference {
                what: what.into(),
                subject: subject.into(),
                within: None,
                from_value: from,
                to_value: to,
                allowed,
            });
        }
    }
}

/// The rollout's two sides compared: what `cutover diff`, the `parity` check
/// and the cockpit's Parity pane show, computed once by [`Parity::of`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parity {
    /// The `from` side's environment.
    pub from: String,
    /// The `to` side's environment.
    pub to: String,
    pub differences: Vec<Difference>,
    /// What could not be read (a Redis down): not compared, so not known equal.
    pub not_compared: Vec<String>,
}

impl Parity {
    /// `record`: the name clients use (`[dns] record`), which each side's
    /// certificates must cover once it serves them.
    pub fn of(from: &SideShape, to: &SideShape, allow: &[ParityAllowance], record: &str) -> Parity {
        Parity {
            from: from.environment.clone(),
            to: to.environment.clone(),
            differences: compare_serving(from, to, allow, Some(record)),
            not_compared: from.unread().into_iter().chain(to.unread()).collect(),
        }
    }

    pub fn drift(&self) -> usize {
        self.differences.iter().filter(|d| d.is_drift()).count()
    }

    pub fn allowed(&self) -> usize {
        self.differences.len() - self.drift()
    }
}

/// Every difference between `from` and `to`, and between each instance and
/// its siblings on one side. `allow`: the runbook's expected differences.
pub fn compare(from: &SideShape, to: &SideShape, allow: &[ParityAllowance]) -> Vec<Difference> {
    compare_serving(from, to, allow, None)
}

/// As [`compare`], listener certificates judged by whether they cover
/// `record` (None: compared by ARN, which always differs across accounts).
pub fn compare_serving(
    from: &SideShape,
    to: &SideShape,
    allow: &[ParityAllowance],
    record: Option<&str>,
) -> Vec<Difference> {
    let mut c = Collector { allow, record, out: Vec::new() };
    load_balancers(&mut c, from.load_balancer.as_ref(), to.load_balancer.as_ref());
    target_groups(&mut c, from, to);
    autoscaling(&mut c, from, to);
    instances(&mut c, from, to);
    for side in [from, to] {
        for mut d in instances_alike(side) {
            d.allowed = allowance(allow, &d.what, &d.subject, &d.from_value, &d.to_value);
            c.out.push(d);
        }
    }
    let (rf, rt) = (role_rules(from), role_rules(to));
    for role in ["load balancer", "app", "redis"] {
        let show = |r: &BTreeMap<&str, BTreeSet<String>>| {
            let v: Vec<&str> = r.get(role).into_iter().flatten().map(String::as_str).collect();
            if v.is_empty() { "no rules".to_string() } else { v.join("; ") }
        };
        c.cmp("security_groups", &format!("{role} groups"), show(&rf), show(&rt));
    }
    let metrics = |s: &SideShape| {
        let m: BTreeSet<&str> = s.alarms.iter().flat_map(|a| a.metrics.iter().map(String::as_str)).collect();
        if m.is_empty() { "none".to_string() } else { m.into_iter().collect::<Vec<_>>().join(", ") }
    };
    c.cmp("alarms", "metrics watched", metrics(from), metrics(to));
    // Watched alike is not paged alike: a copy with its actions disabled,
    // or without an SNS action, changes state and tells no one.
    let told = |s: &SideShape| {
        let m: BTreeSet<&str> = s
            .alarms
            .iter()
            .filter(|a| a.silent().is_none() && a.never_fires.is_none())
            .flat_map(|a| a.metrics.iter().map(String::as_str))
            .collect();
        if m.is_empty() { "none".to_string() } else { m.into_iter().collect::<Vec<_>>().join(", ") }
    };
    c.cmp("alarms.notify", "metrics whose alarms notify", told(from), told(to));
    // Watched alike is not judged alike: `> 10 per minute` on one side and
    // `> 100000 a day` on the other see different failures.
    let judged = |s: &SideShape| {
        let m: BTreeSet<String> = s
            .alarms
            .iter()
            .flat_map(|a| a.metrics.iter().map(move |m| (m, a.judges.as_ref())))
            .filter_map(|(m, j)| Some(format!("{m}: {}", j?)))
            .collect();
        if m.is_empty() { "none".to_string() } else { m.into_iter().collect::<Vec<_>>().join("; ") }
    };
    c.cmp("alarms.thresholds", "how alarms judge their metrics", judged(from), judged(to));
    redis(&mut c, from, to);
    c.out
}

fn load_balancers(c: &mut Collector, from: Option<&LoadBalancerShape>, to: Option<&LoadBalancerShape>) {
    let (f, t) = match (from, to) {
        (None, None) => return,
        (Some(f), Some(t)) => (f, t),
        _ => {
            let name = |l: Option<&LoadBalancerShape>| l.map_or("none".to_string(), |l| l.name.clone());
            return c.cmp("load_balancer", "load balancer", name(from), name(to));
        }
    };
    c.cmp("load_balancer.scheme", "load balancer", f.scheme.clone(), t.scheme.clone());
    let zones = |l: &LoadBalancerShape| {
        let mut z = l.zones.clone();
        z.sort();
        z.join(", ")
    };
    c.cmp("load_balancer.zones", "load balancer", zones(f), zones(t));
    c.cmp("load_balancer.idle_timeout", "load balancer", opt(&f.idle_timeout_seconds), opt(&t.idle_timeout_seconds));
    let ports = |l: &LoadBalancerShape| {
        let mut v: Vec<(u16, &str)> = l.listeners.iter().map(|x| (x.port, x.protocol.as_str())).collect();
        v.sort();
        let s: Vec<String> = v.iter().map(|(p, proto)| format!("{p} {proto}")).collect();
        if s.is_empty() { "none".to_string() } else { s.join(", ") }
    };
    c.cmp("load_balancer.listeners", "load balancer", ports(f), ports(t));
    for lf in &f.listeners {
        let Some(lt) = t.listeners.iter().find(|l| l.port == lf.port && l.protocol == lf.protocol) else { continue };
        let subject = format!("listener {} {}", lf.port, lf.protocol);
        let certificate = |l: &Listener| match c.record {
            Some(record) if !l.certificates.is_empty() => serving(l, record),
            _ => opt(&l.certificate),
        };
        // A certificate ACM did not describe may or may not cover the name:
        // not compared (the side lists it as such), never a match. The other
        // side's own fault (a certificate not covering it, or not issued)
        // is still a drift.
        let unread = |l: &Listener| c.record.is_some() && l.certificates.iter().any(|x| x.error.is_some());
        let fine = |l: &Listener| c.record.is_some_and(|r| certificate(l) == format!("covers {r}"));
        let compared = match (unread(lf), unread(lt)) {
            (false, false) => Some((certificate(lf), certificate(lt))),
            (true, false) if !fine(lt) => Some(("not read".to_string(), certificate(lt))),
            (false, true) if !fine(lf) => Some((certificate(lf), "not read".to_string())),
            _ => None,
        };
        if let Some((cf, ct)) = compared {
            c.cmp("load_balancer.listener.certificate", &subject, cf, ct);
        }
        c.cmp("load_balancer.listener.ssl_policy", &subject, opt(&lf.ssl_policy), opt(&lt.ssl_policy));
        let action = |l: &Listener| match &l.default_action_target {
            Some(target) => format!("{} {target}", l.default_action),
            None => l.default_action.clone(),
        };
        c.cmp("load_balancer.listener.default_action", &subject, action(lf), action(lt));
    }
}

/// What a listener's certificates are for `record`: `covers
/// www.example.com` (by an issued one), with the status when none covering
/// it is issued, or `does not cover …` with the names they hold. (A listener
/// with a certificate ACM did not describe is not compared at all.)
fn serving(l: &Listener, record: &str) -> String {
    let covering: Vec<&Certificate> = l.certificates.iter().filter(|c| c.covers(record)).collect();
    if covering.iter().any(|c| c.status.as_deref() == Some("ISSUED")) {
        return format!("covers {record}");
    }
    if let Some(c) = covering.first() {
        return format!("covers {record}, {}", c.status.as_deref().unwrap_or("status unknown"));
    }
    let names: Vec<&str> = l.certificates.iter().flat_map(|c| c.names.iter().map(String::as_str)).collect();
    format!("does not cover {record} ({})", names.join(", "))
}

/// A compared field of a target group: its path and how it is shown.
type TargetGroupField = (&'static str, fn(&TargetGroupShape) -> String);

fn target_groups(c: &mut Collector, from: &SideShape, to: &SideShape) {
    c.cmp("target_groups", "target groups", from.target_groups.len().to_string(), to.target_groups.len().to_string());
    for (f, t) in from.target_groups.iter().zip(&to.target_groups) {
        let subject = format!("{} / {}", f.name, t.name);
        let fields: [TargetGroupField; 11] = [
            ("target_group.protocol", |g| format!("{} {}", opt(&g.protocol), opt(&g.port))),
            ("target_group.health_check.port", |g| {
                format!("{} {}", opt(&g.health_check_protocol), opt(&g.health_check_port))
            }),
            ("target_group.health_check.path", |g| opt(&g.health_check_path)),
            ("target_group.health_check.interval", |g| opt(&g.health_check_interval_seconds)),
            ("target_group.health_check.timeout", |g| opt(&g.health_check_timeout_seconds)),
            ("target_group.health_check.healthy_threshold", |g| opt(&g.healthy_threshold)),
            ("target_group.health_check.unhealthy_threshold", |g| opt(&g.unhealthy_threshold)),
            ("target_group.health_check.matcher", |g| opt(&g.matcher)),
            ("target_group.stickiness", |g| match &g.stickiness {
                None => "off".to_string(),
                Some(kind) => match g.stickiness_duration_seconds {
                    Some(d) => format!("{kind} {d}s"),
                    None => kind.clone(),
                },
            }),
            ("target_group.deregistration_delay", |g| opt(&g.deregistration_delay_seconds)),
            ("target_group.algorithm", |g| opt(&g.algorithm)),
        ];
        for (what, value) in fields {
            c.cmp(what, &subject, value(f), value(t));
        }
    }
}

fn autoscaling(c: &mut Collector, from: &SideShape, to: &SideShape) {
    let (f, t) = (&from.autoscaling_groups, &to.autoscaling_groups);
    let has = |g: &[AutoScalingShape]| if g.is_empty() { "none".to_string() } else { "yes".to_string() };
    c.cmp("autoscaling", "Auto Scaling groups", has(f), has(t));
    if f.is_empty() || t.is_empty() {
        return;
    }
    let sizes = |g: &[AutoScalingShape]| {
        g.iter()
            .map(|g| format!("min {} max {} desired {}", opt(&g.min), opt(&g.max), opt(&g.desired)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    c.cmp("autoscaling.size", "Auto Scaling groups", sizes(f), sizes(t));
    // As sets: `EC2,ELB` is `ELB` (EC2 is always checked), `EBS,ELB` is `ELB,EBS`.
    let checks = |g: &[AutoScalingShape]| {
        g.iter()
            .map(|g| match g.health_check_types() {
                None => "(not read)".to_string(),
                Some(t) if t.is_empty() => "EC2".to_string(),
                Some(t) => format!("EC2,{}", t.join(",")),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    c.cmp("autoscaling.health_check", "Auto Scaling groups", checks(f), checks(t));
}

fn instances(c: &mut Collector, from: &SideShape, to: &SideShape) {
    let (f, t) = (&from.instances, &to.instances);
    c.cmp("instances.count", "instances", f.len().to_string(), t.len().to_string());
    c.cmp(
        "instances.type",
        "instances",
        tally(f.iter().map(|i| i.instance_type.as_str())),
        tally(t.iter().map(|i| i.instance_type.as_str())),
    );
    c.cmp(
        "instances.ami",
        "instances",
        tally(f.iter().map(|i| i.image_id.as_deref().unwrap_or("-"))),
        tally(t.iter().map(|i| i.image_id.as_deref().unwrap_or("-"))),
    );
    // Shares, not only the zones: 3 in one zone and 1 in another is not the
    // spread of 2 and 2 (and 3 and 3 is, the size being `instances.count`'s);
    // 4 instances of which 2 are stopped are not 4 running.
    c.cmp(
        "instances.zones",
        "instances",
        shares(f.iter().map(|i| i.zone.as_str())),
        shares(t.iter().map(|i| i.zone.as_str())),
    );
    let idle = |side: &[InstanceShape]| {
        let idle: Vec<&str> = side.iter().filter(|i| i.state != "running").map(|i| i.state.as_str()).collect();
        if idle.is_empty() { "all running".to_string() } else { counted(idle.into_iter()) }
    };
    c.cmp("instances.state", "instances", idle(f), idle(t));
    let imds = |i: &InstanceShape| match i.imdsv2_required {
        Some(true) => "required",
        Some(false) => "optional",
        None => "unknown",
    };
    c.cmp("instances.imdsv2", "instances", tally(f.iter().map(imds)), tally(t.iter().map(imds)));
    let public = |i: &InstanceShape| if i.public_ip.is_some() { "public IP" } else { "no public IP" };
    c.cmp("instances.public_ip", "instances", tally(f.iter().map(public)), tally(t.iter().map(public)));
}

/// What instances are compared on, and how it is shown.
type Aspect<'a> = (&'static str, Box<dyn Fn(&InstanceShape) -> String + 'a>);

/// Each instance unlike the most common value among its siblings (security
/// groups, type, AMI): the ChatMRPT failure, one instance unlike the other.
pub fn instances_alike(side: &SideShape) -> Vec<Difference> {
    let names = |ids: &[String]| {
        let mut v: Vec<String> = ids
            .iter()
            .map(|id| side.groups.iter().find(|g| &g.id == id).map_or(id.clone(), |g| g.name.clone()))
            .collect();
        v.sort();
        v.join(", ")
    };
    let aspects: [Aspect; 3] = [
        ("security groups", Box::new(|i: &InstanceShape| names(&i.security_groups))),
        ("type", Box::new(|i: &InstanceShape| i.instance_type.clone())),
        ("AMI", Box::new(|i: &InstanceShape| i.image_id.clone().unwrap_or_else(|| "-".into()))),
    ];
    let mut out = Vec::new();
    for (aspect, value) in &aspects {
        let values: Vec<String> = side.instances.iter().map(value).collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &values {
            *counts.entry(v).or_default() += 1;
        }
        // The most common value; a tie goes to the first instance's.
        let Some(common) =
            values.iter().max_by_key(|v| (counts[v.as_str()], std::cmp::Reverse(values.iter().position(|x| x == *v))))
        else {
            continue;
        };
        for (i, v) in side.instances.iter().zip(&values) {
            if v != common {
                out.push(Difference {
                    what: "instances.alike".into(),
                    subject: format!("{} {aspect}", i.label()),
                    within: Some(side.environment.clone()),
                    from_value: common.clone(),
                    to_value: v.clone(),
                    allowed: None,
                });
            }
        }
    }
    out
}

fn redis_name(r: &RedisRead) -> &str {
    match r {
        RedisRead::Ok(shape) => &shape.name,
        RedisRead::Failed { name, .. } => name,
    }
}

fn redis(c: &mut Collector, from: &SideShape, to: &SideShape) {
    c.cmp("redis", "Redis endpoints used", from.redis.len().to_string(), to.redis.len().to_string());
    // A Redis both sides use is the same data: not compared with itself. The
    // others pair in the runbook's order.
    let shared = |r: &&RedisRead| {
        from.redis.iter().any(|f| redis_name(f) == redis_name(r))
            && to.redis.iter().any(|t| redis_name(t) == redis_name(r))
    };
    let own_from: Vec<&RedisRead> = from.redis.iter().filter(|r| !shared(r)).collect();
    let own_to: Vec<&RedisRead> = to.redis.iter().filter(|r| !shared(r)).collect();
    for (f, t) in own_from.into_iter().zip(own_to) {
        let (RedisRead::Ok(f), RedisRead::Ok(t)) = (f, t) else { continue };
        let subject = format!("{} / {}", f.name, t.name);
        // A setting one side would not tell is listed as not compared
        // (`unread`), never as equal. A cluster's primaries that disagree
        // show every value, one that would not tell as `not readable`: a
        // difference, since part of that side is unknown.
        for (path, read) in COMPARED_SETTINGS {
            if let (Some(fv), Some(tv)) = (f.compared(path, read(f)), t.compared(path, read(t))) {
                c.cmp(path, &subject, fv, tv);
            }
        }
        c.cmp("redis.keys", &subject, f.keys.to_string(), t.keys.to_string());
        let (ef, et) = (f.elasticache.as_ref(), t.elasticache.as_ref());
        if ef.is_none() && et.is_none() {
            continue;
        }
        let yes_no = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        let node = |e: Option<&ElastiCacheShape>| match e {
            None => "not ElastiCache".to_string(),
            Some(e) => format!("{} {}", opt(&e.node_type), opt(&e.engine_version)),
        };
        c.cmp("redis.node_type", &subject, node(ef), node(et));
        let retention = |e: Option<&ElastiCacheShape>| e.map_or("-".to_string(), |e| opt(&e.snapshot_retention_days));
        c.cmp("redis.snapshot_retention", &subject, retention(ef), retention(et));
        let failover = |e: Option<&ElastiCacheShape>| {
            e.map_or("-".to_string(), |e| {
                format!("failover {}, Multi-AZ {}", opt(&e.automatic_failover), opt(&e.multi_az))
            })
        };
        c.cmp("redis.failover", &subject, failover(ef), failover(et));
        let nodes = |e: Option<&ElastiCacheShape>| {
            e.map_or("-".to_string(), |e| {
                let mode = match e.cluster_mode {
                    Some(true) => "cluster mode on",
                    Some(false) => "cluster mode off",
                    None => "cluster mode -",
                };
                format!("{mode}, {} shards, {} nodes", opt(&e.shards), opt(&e.nodes))
            })
        };
        c.cmp("redis.nodes", &subject, nodes(ef), nodes(et));
        let encryption = |e: Option<&ElastiCacheShape>| {
            e.map_or("-".to_string(), |e| {
                let mode = e.transit_encryption_mode.as_deref().map_or(String::new(), |m| format!(" ({m})"));
                format!("in transit {}{mode}, at rest {}", yes_no(e.transit_encryption), yes_no(e.at_rest_encryption))
            })
        };
        c.cmp("redis.encryption", &subject, encryption(ef), encryption(et));
        // By how clients authenticate: an AUTH token, RBAC users, or not at
        // all (each side's user groups have their own names).
        let auth = |e: Option<&ElastiCacheShape>| {
            e.map_or("-".to_string(), |e| match (e.user_groups.is_empty(), e.auth_token) {
                (true, token) => yes_no(token).to_string(),
                (false, Some(true)) => "on, and RBAC user groups".to_string(),
                (false, _) => "RBAC user groups".to_string(),
            })
        };
        c.cmp("redis.auth", &subject, auth(ef), auth(et));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::reachability::{GroupRule, PrefixList};

    fn group(id: &str, name: &str, port: u16, from: &[&str]) -> SecurityGroup {
        SecurityGroup {
            id: id.into(),
            name: name.into(),
            ingress: if from.is_empty() {
                vec![]
            } else {
                vec![GroupRule {
                    protocol: "tcp".into(),
                    from_port: Some(port),
                    to_port: Some(port),
                    groups: from.iter().map(|s| s.to_string()).collect(),
                    cidrs: vec![],
                    prefix_lists: vec![],
                }]
            },
            egress: vec![],
        }
    }

    fn instance(name: &str, zone: &str, groups: &[&str]) -> InstanceShape {
        InstanceShape {
            id: format!("i-{name}"),
            name: Some(name.into()),
            instance_type: "t3.micro".into(),
            image_id: Some("ami-1".into()),
            zone: zone.into(),
            imdsv2_required: Some(true),
            public_ip: None,
            security_groups: groups.iter().map(|s| s.to_string()).collect(),
            state: "running".into(),
        }
    }

    /// A side named `p` (prefix of every id): ALB in lb group, two app
    /// instances, Redis admitting the app group.
    fn side(p: &str) -> SideShape {
        let id = |s: &str| format!("sg-{p}-{s}");
        SideShape {
            environment: p.into(),
            load_balancer: Some(LoadBalancerShape {
                name: format!("{p}-alb"),
                arn: format!("arn:{p}"),
                scheme: "internet-facing".into(),
                zones: vec!["eu-west-1a".into(), "eu-west-1b".into()],
                security_groups: vec![id("lb")],
                vpc_id: None,
                idle_timeout_seconds: Some(60),
                listeners: vec![Listener {
                    port: 443,
                    protocol: "HTTPS".into(),
                    certificate: Some("arn:cert".into()),
                    certificates: vec![],
                    ssl_policy: Some("ELBSecurityPolicy-TLS13-1-2-2021-06".into()),
                    default_action: "forward".into(),
                    default_action_target: None,
                }],
            }),
            target_groups: vec![TargetGroupShape {
                name: format!("{p}-web"),
                arn: format!("arn:tg:{p}"),
                protocol: Some("HTTP".into()),
                port: Some(80),
                health_check_protocol: Some("HTTP".into()),
                health_check_port: Some("traffic-port".into()),
                health_check_path: Some("/health".into()),
                health_check_interval_seconds: Some(30),
                health_check_timeout_seconds: Some(5),
                healthy_threshold: Some(3),
                unhealthy_threshold: Some(2),
                matcher: Some("200".into()),
                stickiness: Some("lb_cookie".into()),
                stickiness_duration_seconds: Some(86400),
                deregistration_delay_seconds: Some(300),
                algorithm: Some("round_robin".into()),
            }],
            autoscaling_groups: vec![],
            instances: vec![
                instance(&format!("{p}-web-1"), "eu-west-1a", &[&id("app")]),
                instance(&format!("{p}-web-2"), "eu-west-1b", &[&id("app")]),
            ],
            groups: vec![
                group(&id("lb"), &format!("{p}-lb"), 443, &[]),
                group(&id("app"), &format!("{p}-app"), 8080, &[&id("lb")]),
                group(&id("redis"), &format!("{p}-redis"), 6379, &[&id("app")]),
            ],
            redis_groups: vec![id("redis")],
            alarms: vec![WatchingAlarm {
                name: format!("{p}-5xx"),
                metrics: vec!["HTTPCode_Target_5XX_Count".into()],
                actions_enabled: true,
                notifying_actions: 1,
                never_fires: None,
                judges: Some("Sum > 5, 1 of 1 × 60 s".into()),
            }],
            redis: vec![RedisRead::Ok(Box::new(RedisShape {
                unreadable: Vec::new(),
                name: format!("{p}-cache"),
                version: "7.2.4".into(),
                maxmemory: Some(0),
                maxmemory_policy: Some("noeviction".into()),
                aof_enabled: Some(true),
                rdb_save: Some("3600 1".into()),
                rdb_save_failed: false,
                aof_write_failed: false,
                keys: 200,
                elasticache: None,
                primaries_differ: BTreeMap::new(),
            }))],
        }
    }

    /// (what, from value, to value) of each difference.
    fn what_from_to(d: &[Difference]) -> Vec<(&str, &str, &str)> {
        d.iter().map(|d| (d.what.as_str(), d.from_value.as_str(), d.to_value.as_str())).collect()
    }

    #[test]
    fn same_shape_with_other_ids_and_names_compares_equal() {
        let d = compare(&side("prod"), &side("staging"), &[]);
        assert_eq!(d, vec![], "only ids and names differ");
        let rules = role_rules(&side("prod"));
        assert_eq!(rules["redis"], BTreeSet::from(["tcp 6379 from app".to_string()]));
        assert_eq!(rules["app"], BTreeSet::from(["tcp 8080 from load balancer".to_string()]));
    }

    #[test]
    fn a_redis_only_one_side_uses_is_drift_and_a_setting_not_read_is_never_equal() {
        let (from, mut to) = (side("prod"), side("staging"));
        let mut extra = to.redis[0].clone();
        if let RedisRead::Ok(r) = &mut extra {
            r.name = "staging-sessions".into();
        }
        to.redis.push(extra);
        let d = compare(&from, &to, &[]);
        let got = what_from_to(&d);
        assert_eq!(got, vec![("redis", "1", "2")]);

        // Neither side tells its RDB schedule (ElastiCache refuses CONFIG): not "equal".
        let (mut from, mut to) = (side("prod"), side("staging"));
        for s in [&mut from, &mut to] {
            if let RedisRead::Ok(r) = &mut s.redis[0] {
                r.rdb_save = None;
                r.unreadable.push("save (ERR unknown command 'CONFIG')".into());
            }
        }
        assert_eq!(compare(&from, &to, &[]), vec![]);
        assert_eq!(to.unread(), ["staging-cache (staging): save (ERR unknown command 'CONFIG') not readable"]);
        // Named as ElastiCache: its snapshot retention, compared, stands for
        // the schedule, so the parity check can pass; nothing else is excused.
        if let RedisRead::Ok(r) = &mut to.redis[0] {
            r.elasticache = Some(ElastiCacheShape {
                replication_group: "staging-cache".into(),
                snapshot_retention_days: Some(1),
                ..Default::default()
            });
        }
        assert_eq!(to.unread(), Vec::<String>::new());
        if let RedisRead::Ok(r) = &mut to.redis[0] {
            r.unreadable.push("maxmemory (INFO gave no answer)".into());
        }
        assert_eq!(to.unread(), ["staging-cache (staging): maxmemory (INFO gave no answer) not readable"]);
    }

    /// Targets reached on another port, or checked on one the app does not
    /// answer: every other field alike, and the groups would not serve alike.
    #[test]
    fn target_group_ports_and_health_check_ports_are_compared() {
        let (from, mut to) = (side("prod"), side("staging"));
        to.target_groups[0].port = Some(8080);
        to.target_groups[0].health_check_port = Some("8081".into());
        let d = compare(&from, &to, &[]);
        assert_eq!(
            what_from_to(&d),
            vec![
                ("target_group.protocol", "HTTP 80", "HTTP 8080"),
                ("target_group.health_check.port", "HTTP traffic-port", "HTTP 8081"),
            ]
        );
    }

    #[test]
    fn a_certificate_covers_its_names_and_one_label_under_a_wildcard() {
        let cert = |names: &[&str]| Certificate {
            arn: "arn:aws:acm:eu-west-1:1:certificate/x".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            status: Some("ISSUED".into()),
            ..Default::default()
        };
        let wildcard = cert(&["*.example.com"]);
        assert!(wildcard.covers("www.example.com") && wildcard.covers("WWW.Example.com."));
        assert!(!wildcard.covers("example.com") && !wildcard.covers("a.b.example.com"));
        assert!(!wildcard.covers("www.example.com.evil") && !wildcard.covers(".example.com"));
        let both = cert(&["example.com", "www.example.com"]);
        assert!(both.covers("example.com") && both.covers("www.example.com") && !both.covers("api.example.com"));
    }

    /// Certificates of two accounts never share an ARN: judged by the record
    /// they must cover, not by ARN, so an allowance is not needed (and cannot
    /// hide a side that does not cover it).
    #[test]
    fn listener_certificates_are_compared_by_the_record_they_cover() {
        let serve = |p: &str, names: &[&str], status: &str| {
            let mut s = side(p);
            let l = &mut s.load_balancer.as_mut().unwrap().listeners[0];
            l.certificate = Some(format!("arn:aws:acm:eu-west-1:1:certificate/{p}"));
            l.certificates = vec![Certificate {
                arn: format!("arn:aws:acm:eu-west-1:1:certificate/{p}"),
                names: names.iter().map(|n| n.to_string()).collect(),
                status: Some(status.into()),
                ..Default::default()
            }];
            s
        };
        let none: Vec<ParityAllowance> = Vec::new();
        let www = Some("www.example.com");
        let d = compare_serving(
            &serve("prod", &["www.example.com"], "ISSUED"),
            &serve("staging", &["*.example.com"], "ISSUED"),
            &none,
            www,
        );
        assert_eq!(d, vec![], "both cover it");
        let d = compare_serving(
            &serve("prod", &["www.example.com"], "ISSUED"),
            &serve("staging", &["staging.example.com"], "ISSUED"),
            &none,
            www,
        );
        assert_eq!(
            what_from_to(&d),
            vec![(
                "load_balancer.listener.certificate",
                "covers www.example.com",
                "does not cover www.example.com (staging.example.com)"
            )]
        );
        let d = compare_serving(
            &serve("prod", &["www.example.com"], "ISSUED"),
            &serve("staging", &["www.example.com"], "EXPIRED"),
            &none,
            www,
        );
        assert_eq!(d[0].to_value, "covers www.example.com, EXPIRED");
        let mut unread = serve("staging", &[], "ISSUED");
        unread.load_balancer.as_mut().unwrap().listeners[0].certificates[0].error = Some("denied".into());
        let d = compare_serving(&serve("prod", &["www.example.com"], "ISSUED"), &unread, &none, www);
        assert_eq!(d, vec![], "neither a drift nor a match: not compared");
        // The readable side's own fault is still named.
        let d = compare_serving(&serve("prod", &["other.example.com"], "ISSUED"), &unread, &none, www);
        assert_eq!(
            what_from_to(&d),
            vec![(
                "load_balancer.listener.certificate",
                "does not cover www.example.com (other.example.com)",
                "not read"
            )]
        );
        assert_eq!(
            unread.unread(),
            [
                "staging: certificate arn:aws:acm:eu-west-1:1:certificate/staging of listener 443 HTTPS: denied; its listener's certificates not compared"
            ]
        );
        let p = Parity::of(&serve("prod", &["www.example.com"], "ISSUED"), &unread, &none, "www.example.com");
        assert_eq!((p.drift(), p.not_compared.len()), (0, 1), "the parity check is then not a pass");
    }

    /// One replica less, or no failover: alike in every setting Redis itself
    /// tells, and a primary lost is then an outage.
    #[test]
    fn elasticache_nodes_and_failover_are_compared() {
        let ha = |nodes: usize, failover: &str| ElastiCacheShape {
            replication_group: "g".into(),
            node_type: Some("cache.r7g.large".into()),
            engine_version: Some("7.1".into()),
            snapshot_retention_days: Some(1),
            transit_encryption: Some(true),
            transit_encryption_mode: Some("required".into()),
            at_rest_encryption: Some(true),
            auth_token: Some(false),
            user_groups: vec![],
            automatic_failover: Some(failover.into()),
            multi_az: Some(failover.into()),
            shards: Some(1),
            nodes: Some(nodes),
            cluster_mode: Some(false),
        };
        let with = |p: &str, e: ElastiCacheShape| {
            let mut s = side(p);
            if let RedisRead::Ok(r) = &mut s.redis[0] {
                r.elasticache = Some(e);
            }
            s
        };
        let alike = compare(&with("prod", ha(3, "enabled")), &with("staging", ha(3, "enabled")), &[]);
        assert_eq!(alike, vec![]);
        // Users authenticated on one side, anyone on the other.
        let rbac = ElastiCacheShape { user_groups: vec!["app-users".into()], ..ha(3, "enabled") };
        let d = compare(&with("prod", rbac.clone()), &with("staging", ha(3, "enabled")), &[]);
        assert_eq!(what_from_to(&d), vec![("redis.auth", "RBAC user groups", "off")]);
        let renamed = ElastiCacheShape { user_groups: vec!["staging-users".into()], ..rbac.clone() };
        assert_eq!(compare(&with("prod", rbac), &with("staging", renamed), &[]), vec![], "each side's own groups");
        let d = compare(&with("prod", ha(3, "enabled")), &with("staging", ha(1, "disabled")), &[]);
        assert_eq!(
            what_from_to(&d),
            vec![
                ("redis.failover", "failover enabled, Multi-AZ enabled", "failover disabled, Multi-AZ disabled"),
                ("redis.nodes", "cluster mode off, 1 shards, 3 nodes", "cluster mode off, 1 shards, 1 nodes"),
            ]
        );
    }

    #[test]
    fn a_side_with_no_instances_or_no_redis_groups_says_what_was_not_compared() {
        let mut s = side("staging");
        s.instances.clear();
        s.redis_groups.clear();
        assert_eq!(
            s.unread(),
            [
                "staging: no instance matches the runbook's selector; instances not compared",
                "staging: its Redis endpoints name no security_groups; the app → Redis rules not compared",
            ]
        );
    }

    #[test]
    fn an_app_group_that_lets_less_out_on_one_side_is_drift() {
        let (mut from, mut to) = (side("prod"), side("staging"));
        let everything = GroupRule::all_traffic("0.0.0.0/0");
        from.groups[1].egress = vec![everything.clone()];
        to.groups[1].egress =
            vec![GroupRule { protocol: "tcp".into(), from_port: Some(443), to_port: Some(443), ..everything }];
        let d = compare(&from, &to, &[]);
        assert_eq!(
            what_from_to(&d),
            vec![(
                "security_groups",
                "all traffic to 0.0.0.0/0; tcp 8080 from load balancer",
                "tcp 443 to 0.0.0.0/0; tcp 8080 from load balancer"
            )]
        );
    }

    #[test]
    fn an_outbound_prefix_list_that_cannot_be_read_is_not_compared() {
        let mut s = side("staging");
        let unread = PrefixList { id: "pl-s3".into(), cidrs: vec![], unread: Some("AccessDenied".into()) };
        s.groups[1].egress = vec![GroupRule {
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            groups: vec![],
            cidrs: vec![],
            prefix_lists: vec![unread],
        }];
        assert_eq!(s.unread(), ["staging: prefix list pl-s3 of staging-app's outbound rules: AccessDenied"]);
        assert_eq!(role_rules(&s)["app"].iter().next().unwrap(), "tcp 443 to prefix list pl-s3 (not read)");
    }

    /// ICMP's type and code (in FromPort and ToPort, -1 any) read as such:
    /// a side that lost type 3 (path MTU discovery) for type 8 differs.
    #[test]
    fn icmp_rules_differ_by_type_and_code() {
        let icmp = |t: Option<u16>, c: Option<u16>| {
            let mut s = side("staging");
            s.groups[1].ingress = vec![GroupRule {
                protocol: "icmp".into(),
                from_port: t,
                to_port: c,
                groups: vec![],
                cidrs: vec!["10.0.0.0/16".into()],
                prefix_lists: vec![],
            }];
            role_rules(&s)["app"].iter().find(|r| r.starts_with("icmp")).cloned().unwrap()
        };
        assert_eq!(icmp(Some(3), None), "icmp type 3 every code from 10.0.0.0/16");
        assert_eq!(icmp(Some(8), None), "icmp type 8 every code from 10.0.0.0/16");
        assert_eq!(icmp(Some(3), Some(4)), "icmp type 3 code 4 from 10.0.0.0/16");
        assert_eq!(icmp(None, None), "icmp every type from 10.0.0.0/16");
    }

    #[test]
    fn each_drift_is_reported_with_both_values() {
        let (from, mut to) = (side("prod"), side("staging"));
        to.target_groups[0].health_check_interval_seconds = Some(10);
        to.target_groups[0].stickiness = None;
        to.load_balancer.as_mut().unwrap().listeners[0].certificate = None;
        if let RedisRead::Ok(r) = &mut to.redis[0] {
            r.aof_enabled = Some(false);
        }
        // Redis admits a CIDR instead of the app group.
        to.groups[2].ingress[0].groups.clear();
        to.groups[2].ingress[0].cidrs.push("10.0.0.0/8".into());
        let d = compare(&from, &to, &[]);
        let got = what_from_to(&d);
        assert_eq!(
            got,
            vec![
                ("load_balancer.listener.certificate", "arn:cert", "-"),
                ("target_group.health_check.interval", "30", "10"),
                ("target_group.stickiness", "lb_cookie 86400s", "off"),
                ("security_groups", "tcp 6379 from app", "tcp 6379 from 10.0.0.0/8"),
                ("redis.persistence", "AOF on, RDB save 3600 1", "AOF off, RDB save 3600 1"),
            ]
        );
        assert!(d.iter().all(Difference::is_drift));
        for x in &d {
            assert!(is_path(&x.what), "{} is a documented path", x.what);
        }
    }

    #[test]
    fn an_allowed_difference_carries_its_reason_and_is_not_drift() {
        let (from, mut to) = (side("prod"), side("staging"));
        to.instances.push(instance("staging-web-3", "eu-west-1c", &["sg-staging-app"]));
        let allow = vec![
            allow("instances.count", "staging is sized up for the launch"),
            allow("instances.zones", "a third instance"),
        ];
        let d = compare(&from, &to, &allow);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[1].to_value, "eu-west-1a: 33%, eu-west-1b: 33%, eu-west-1c: 33%");
        assert!(d.iter().all(|d| !d.is_drift()));
        assert_eq!(d[0].allowed.as_deref(), Some("staging is sized up for the launch"));
    }

    fn allow(what: &str, reason: &str) -> ParityAllowance {
        ParityAllowance { what: what.into(), subject: None, from: None, to: None, reason: reason.into() }
    }

    /// An allowance pinned to the `to` side's value expects that difference
    /// only: staging's app group letting SSH in from the office is expected,
    /// the same group then opened to everyone is drift again. One narrowed
    /// to another subject expects nothing here.
    #[test]
    fn an_allowance_narrowed_by_value_or_subject_expects_only_that_difference() {
        let (from, mut to) = (side("prod"), side("staging"));
        let ssh = |cidr: &str| GroupRule {
            protocol: "tcp".into(),
            from_port: Some(22),
            to_port: Some(22),
            groups: vec![],
            cidrs: vec![cidr.into()],
            prefix_lists: vec![],
        };
        to.groups[1].ingress.push(ssh("203.0.113.0/24"));
        let office = "tcp 22 from 203.0.113.0/24; tcp 8080 from load balancer";
        let pinned = ParityAllowance {
            subject: Some("app groups".into()),
            to: Some(office.into()),
            ..allow("security_groups", "the office reaches staging over SSH")
        };
        let d = compare(&from, &to, std::slice::from_ref(&pinned));
        assert_eq!(what_from_to(&d), vec![("security_groups", "tcp 8080 from load balancer", office)]);
        assert_eq!(d[0].allowed.as_deref(), Some("the office reaches staging over SSH"));
        let both_pinned = ParityAllowance { from: Some("tcp 8080 from load balancer".into()), ..pinned.clone() };
        assert!(!compare(&from, &to, &[both_pinned])[0].is_drift(), "both sides as pinned");

        to.groups[1].ingress.push(ssh("0.0.0.0/0"));
        let d = compare(&from, &to, std::slice::from_ref(&pinned));
        assert_eq!(d.len(), 1);
        assert!(d[0].is_drift(), "a further change to the pinned value is drift: {d:?}");
        // Unpinned, the path's allowance would have hidden it.
        assert!(!compare(&from, &to, &[allow("security_groups", "anything goes")])[0].is_drift());

        let elsewhere =
            ParityAllowance { subject: Some("redis groups".into()), ..allow("security_groups", "redis only") };
        assert!(compare(&from, &to, &[elsewhere])[0].is_drift(), "an allowance for another subject");
        let from_pinned = ParityAllowance { from: Some("nothing".into()), ..allow("security_groups", "stale") };
        assert!(compare(&from, &to, &[from_pinned])[0].is_drift(), "the from side no longer as pinned");
    }

    /// The same metrics watched on both sides, but the copy's alarm has its
    /// actions disabled (or only an Auto Scaling action): it goes off and
    /// pages no one, which is drift.
    #[test]
    fn an_alarm_copy_that_tells_no_one_is_drift() {
        let (from, mut to) = (side("prod"), side("staging"));
        assert!(compare(&from, &to, &[]).iter().all(|d| d.what != "alarms.notify"));
        to.alarms[0].actions_enabled = false;
        let d = compare(&from, &to, &[]);
        assert!(what_from_to(&d).contains(&("alarms.notify", "HTTPCode_Target_5XX_Count", "none")), "{d:?}");
        to.alarms[0].actions_enabled = true;
        to.alarms[0].notifying_actions = 0;
        let d = compare(&from, &to, &[]);
        assert!(what_from_to(&d).contains(&("alarms.notify", "HTTPCode_Target_5XX_Count", "none")), "{d:?}");
        assert!(!what_from_to(&d).iter().any(|x| x.0 == "alarms"), "the metrics watched are alike: {d:?}");
    }

    /// The same metric watched on both sides, judged otherwise: a threshold
    /// a thousand times higher (or over a day) sees other failures.
    #[test]
    fn an_alarm_copy_with_another_threshold_or_period_is_drift() {
        let (from, mut to) = (side("prod"), side("staging"));
        assert!(compare(&from, &to, &[]).iter().all(|d| d.what != "alarms.thresholds"));
        to.alarms[0].judges = Some("Sum > 100000, 1 of 1 × 86400 s".into());
        let d = compare(&from, &to, &[]);
        let t = d.iter().find(|d| d.what == "alarms.thresholds").expect("drift");
        assert_eq!(
            (t.from_value.as_str(), t.to_value.as_str()),
            (
                "HTTPCode_Target_5XX_Count: Sum > 5, 1 of 1 × 60 s",
                "HTTPCode_Target_5XX_Count: Sum > 100000, 1 of 1 × 86400 s"
            )
        );
        assert!(!what_from_to(&d).iter().any(|x| x.0 == "alarms"), "the metrics watched are alike: {d:?}");
    }

    /// Stopped instances are no capacity, and two in one zone and one in
    /// another is not the reverse: both are drift though count and zones
    /// match; a side twice the size with the same spread is only a count.
    #[test]
    fn stopped_instances_and_a_lopsided_zone_spread_are_drift() {
        let (mut from, mut to) = (side("prod"), side("staging"));
        for (side, zones) in [(&mut from, ["a", "a", "b"]), (&mut to, ["a", "b", "b"])] {
            side.instances = zones
                .iter()
                .enumerate()
                .map(|(n, z)| instance(&format!("w{n}"), &format!("eu-west-1{z}"), &[]))
                .collect();
        }
        to.instances[0].state = "stopped".into();
        let d = compare(&from, &to, &[]);
        let got = what_from_to(&d);
        assert!(
            got.contains(&("instances.zones", "eu-west-1a: 67%, eu-west-1b: 33%", "eu-west-1a: 33%, eu-west-1b: 67%")),
            "{got:?}"
        );
        assert!(got.contains(&("instances.state", "all running", "stopped: 1")), "{got:?}");
        let (from, mut to) = (side("prod"), side("staging"));
        to.instances.extend(from.instances.iter().map(|i| InstanceShape { id: format!("{}-2", i.id), ..i.clone() }));
        let whats: Vec<String> = compare(&from, &to, &[]).into_iter().map(|d| d.what).collect();
        assert!(
            whats.contains(&"instances.count".to_string()) && !whats.contains(&"instances.zones".to_string()),
            "{whats:?}"
        );
    }

    #[test]
    fn an_auto_scaling_group_on_one_side_only_is_drift_and_sizes_compare_when_both_have_one() {
        let (mut from, mut to) = (side("prod"), side("staging"));
        let group = |desired| AutoScalingShape {
            name: "g".into(),
            min: Some(2),
            max: Some(6),
            desired: Some(desired),
            target_group_arns: vec![],
            suspended: vec![],
            health_check_type: Some("ELB".into()),
        };
        to.autoscaling_groups.push(group(2));
        let d = compare(&from, &to, &[]);
        let got = what_from_to(&d);
        assert_eq!(got, vec![("autoscaling", "none", "yes")]);
        from.autoscaling_groups.push(group(4));
        let d = compare(&from, &to, &[]);
        let got = what_from_to(&d);
        assert_eq!(got, vec![("autoscaling.size", "min 2 max 6 desired 4", "min 2 max 6 desired 2")]);
        // The new side's group checks EC2 health only: drift too.
        to.autoscaling_groups[0] = AutoScalingShape { health_check_type: Some("EC2".into()), ..group(4) };
        let got = what_from_to(&compare(&from, &to, &[]))
            .into_iter()
            .map(|(w, f, t)| (w.to_string(), f.to_string(), t.to_string()))
            .collect::<Vec<_>>();
        assert_eq!(got, vec![("autoscaling.health_check".to_string(), "EC2,ELB".to_string(), "EC2".to_string())]);
        // The same types written otherwise are no drift (EC2 is always checked).
        for (one, other) in [("EC2,ELB", "ELB"), ("ELB,EBS", "EBS, ELB"), ("EC2", "EC2")] {
            from.autoscaling_groups[0] = AutoScalingShape { health_check_type: Some(one.into()), ..group(4) };
            to.autoscaling_groups[0] = AutoScalingShape { health_check_type: Some(other.into()), ..group(4) };
            assert_eq!(what_from_to(&compare(&from, &to, &[])), vec![], "{one} / {other}");
        }
    }

    #[test]
    fn an_instance_unlike_its_siblings_is_named_with_both_values() {
        let from = side("prod");
        let mut to = side("staging");
        to.instances.push(instance("staging-web-3", "eu-west-1a", &["sg-staging-app"]));
        to.instances[1].security_groups = vec!["sg-other".into()];
        to.instances[1].instance_type = "t3.large".into();
        to.groups.push(group("sg-other", "default", 22, &[]));
        let d: Vec<Difference> = compare(&from, &to, &[]).into_iter().filter(|d| d.what == "instances.alike").collect();
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].within.as_deref(), Some("staging"));
        assert_eq!(d[0].subject, "staging-web-2 security groups");
        assert_eq!((d[0].from_value.as_str(), d[0].to_value.as_str()), ("staging-app", "default"));
        assert_eq!((d[1].from_value.as_str(), d[1].to_value.as_str()), ("t3.micro", "t3.large"));
        // Narrowed to the odd instance by its subject: that one only.
        let one = ParityAllowance {
            subject: Some("staging-web-2 security groups".into()),
            to: Some("default".into()),
            ..allow("instances.alike", "staging-web-2 runs the batch")
        };
        let d: Vec<Difference> =
            compare(&from, &to, &[one]).into_iter().filter(|d| d.what == "instances.alike").collect();
        assert_eq!(d.iter().map(Difference::is_drift).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn a_clusters_primaries_that_disagree_show_every_value_never_one_primarys() {
        let from = side("prod");
        let RedisRead::Ok(single) = &from.redis[0] else { unreachable!() };
        let single: &RedisShape = single;
        let mut primaries = vec![single.clone(), single.clone(), single.clone()];
        primaries[1].version = "7.0.15".into();
        // Refused CONFIG GET save, as fetch reads it: no schedule, and why.
        primaries[2].rdb_save = None;
        primaries[2].unreadable.push("save (NOPERM)".into());
        let cluster = RedisShape::of_cluster(primaries).unwrap();
        assert_eq!(cluster.keys, 600);
        assert_eq!(cluster.unreadable, ["save (NOPERM)"]);
        // All persistent (AOF on): the first of them stands for the typed fields.
        assert_eq!((cluster.version.as_str(), cluster.persistent()), ("7.2.4", Some(true)));
        let mut to = side("staging");
        to.redis[0] = RedisRead::Ok(Box::new(RedisShape { name: "staging-cache".into(), ..cluster }));
        let d = compare(&from, &to, &[]);
        let got = what_from_to(&d);
        assert_eq!(
            got,
            vec![
                ("redis.version", "7.2.4", "7.0.15 on 1 primary; 7.2.4 on 2 primaries"),
                (
                    "redis.persistence",
                    "AOF on, RDB save 3600 1",
                    "AOF on, RDB save 3600 1 on 2 primaries; not readable on 1 primary"
                ),
                ("redis.keys", "200", "600"),
            ]
        );
        // Primaries that agree list nothing; none make no cluster.
        assert!(RedisShape::of_cluster(vec![single.clone(), single.clone()]).unwrap().primaries_differ.is_empty());
        assert_eq!(RedisShape::of_cluster(vec![]), None);
    }

    #[test]
    fn a_shared_redis_is_not_compared_with_itself_and_persistence_reads_aof_or_rdb() {
        let from = side("prod");
        let mut to = side("staging");
        to.redis = from.redis.clone();
        if let RedisRead::Ok(r) = &mut to.redis[0] {
            r.keys = 5;
        }
        assert!(compare(&from, &to, &[]).iter().all(|d| !d.what.starts_with("redis")));
        let mut r = RedisShape {
            unreadable: Vec::new(),
            name: "r".into(),
            version: "7".into(),
            maxmemory: None,
            maxmemory_policy: None,
            aof_enabled: Some(false),
            rdb_save: Some(String::new()),
            rdb_save_failed: false,
            aof_write_failed: false,
            keys: 0,
            elasticache: None,
            primaries_differ: BTreeMap::new(),
        };
        assert_eq!(r.persistent(), Some(false));
        r.rdb_save = Some("900 1".into());
        assert_eq!(r.persistent(), Some(true));
        // Configured, but its saves fail: nothing is kept.
        r.rdb_save_failed = true;
        assert_eq!(r.persistent(), Some(false));
        assert_eq!(r.persistence_failing(), ["its last RDB save failed (rdb_last_bgsave_status:err)"]);
        r.aof_enabled = Some(true);
        assert_eq!(r.persistent(), Some(true), "AOF still writes");
        r.aof_write_failed = true;
        assert_eq!(r.persistent(), Some(false));
        assert_eq!(r.persistence_failing().len(), 2);
        r.rdb_save = None;
        assert_eq!(r.persistent(), Some(false), "failing whatever CONFIG hides");
        r.rdb_save_failed = false;
        assert_eq!(r.persistent(), Some(false), "AOF failing, RDB not told");
        r.rdb_save = Some("900 1".into());
        assert_eq!(r.persistent(), Some(true), "RDB saves while AOF fails");
        r.aof_write_failed = false;
        r.rdb_save = None;
        r.aof_enabled = None;
        assert_eq!(r.persistent(), None);
        // ElastiCache refuses CONFIG: its snapshot retention decides.
        r.elasticache = Some(ElastiCacheShape {
            replication_group: "g".into(),
            node_type: Some("cache.t4g.small".into()),
            engine_version: Some("7.1".into()),
            snapshot_retention_days: Some(0),
            transit_encryption: Some(true),
            transit_encryption_mode: None,
            at_rest_encryption: Some(true),
            auth_token: Some(false),
            user_groups: vec![],
            automatic_failover: None,
            multi_az: None,
            shards: None,
            nodes: None,
            cluster_mode: None,
        });
        assert_eq!(r.persistent(), Some(false));
        (r.aof_enabled, r.aof_write_failed) = (Some(true), true);
        assert_eq!(r.persistent(), Some(false), "AOF on but failing, no snapshots");
        r.aof_write_failed = false;
        assert_eq!(r.persistent(), Some(true));
        r.aof_enabled = Some(false);
        r.elasticache.as_mut().unwrap().snapshot_retention_days = Some(7);
        assert_eq!(r.persistent(), Some(true));
    }
}
