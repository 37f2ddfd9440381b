//! The validated runbook. Everything here has been checked: names resolve,
//! weights are in range, steps increase to 100, durations parsed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    /// Path the runbook was read from, for messages and state-file names.
    pub source: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub region: Option<String>,
    /// Marks the target account as production: the cockpit shows a red border.
    pub production: bool,
    /// When set, cutover refuses to act in any other account.
    pub account_id: Option<String>,
    pub environments: BTreeMap<String, Environment>,
    pub dns: Dns,
    pub rollout: Rollout,
    pub alarms: Vec<Alarm>,
    pub phases: Vec<Phase>,
    pub sandbox: Option<SandboxSpec>,
    pub notify: Option<Notify>,
    /// `[parity] allow`: the differences between the sides that are expected.
    pub parity_allow: Vec<ParityAllowance>,
    /// `[team]`: the shared state, when the team uses one.
    pub team: Option<Team>,
}

/// `[team]`: where the team's shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    /// `s3://bucket/prefix`.
    pub state: String,
    pub lease: std::time::Duration,
    pub region: Option<String>,
}

/// How long a lease lasts unrenewed, without `[team] lease`.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// `[notify]`: where posts about the rollout and each change go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notify {
    /// The environment variable holding the webhook URL.
    pub webhook_url_env: String,
}

impl Runbook {
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.get(name)
    }

    /// Every Redis endpoint with the environment it belongs to.
    pub fn redis_endpoints(&self) -> impl Iterator<Item = (&Environment, &RedisEndpoint)> {
        self.environments.values().flat_map(|e| e.redis.iter().map(move |r| (e, r)))
    }

    /// Whether any check item reads the sides' shapes (parity and readiness).
    pub fn reads_shapes(&self) -> bool {
        self.phases
            .iter()
            .flat_map(|p| &p.items)
            .any(|i| matches!(&i.kind, ItemKind::Check { check } if check.reads_shapes()))
    }

    pub fn redis_endpoint(&self, name: &str) -> Option<&RedisEndpoint> {
        self.redis_endpoints().map(|(_, r)| r).find(|r| r.name == name)
    }

    /// The checklist item `item` of phase `phase`, with its phase.
    pub fn item(&self, phase: &str, item: &str) -> Option<(&Phase, &Item)> {
        let p = self.phases.iter().find(|p| p.id == phase)?;
        Some((p, p.items.iter().find(|i| i.id == item)?))
    }

    /// The item a `phase/item` key names; None when the key has no `/` or no
    /// such item exists.
    pub fn item_by_key(&self, key: &str) -> Option<(&Phase, &Item)> {
        let (phase, item) = key.split_once('/')?;
        self.item(phase, item)
    }
    /// How a side is reached, as written (unset keys fall back at run time
    /// to `[runbook]` and the global flags).
    pub fn access(&self, side: &Side) -> Access {
        match side {
            Side::Dns => self.dns.access.clone(),
            Side::Environment(e) => self.environment(e).map(|e| e.access.clone()).unwrap_or_default(),
        }
    }

    /// The account a side must be in: its own `account_id`, else its
    /// role's, else `[runbook]`'s.
    pub fn side_account(&self, side: &Side) -> Option<String> {
        let a = self.access(side);
        a.account_id
            .or_else(|| a.role_arn.as_deref().and_then(role_account).map(str::to_string))
            .or_else(|| self.account_id.clone())
    }

    /// Where a rollout's gates read AWS: each environment they name (its
    /// two sides, each gate's, each `alarm_ok` alarm's and its declared
    /// children's), and `None` for an
    /// alarm naming no environment (read with the runbook's own credentials).
    pub fn gate_readers(&self) -> std::collections::BTreeSet<Option<String>> {
        let mut out: std::collections::BTreeSet<Option<String>> =
            [Some(self.rollout.from.clone()), Some(self.rollout.to.clone())].into();
        for g in &self.rollout.gates {
            match &g.kind {
                GateKind::HealthyTargets { environment, .. }
                | GateKind::HttpHealth { environment }
                | GateKind::RedisReachable { environment }
                | GateKind::Metric { environment, .. } => {
                    out.insert(Some(environment.clone()));
                }
                GateKind::AlarmOk { alarms, .. } => {
                    // A composite's declared children too: read in their own
                    // environments, they decide whether it can see its side.
                    let named = self.alarms.iter().filter(|a| alarms.contains(&a.name));
                    let children = alarms.iter().flat_map(|n| metric_alarms_under(&self.alarms, n));
                    out.extend(named.chain(children).map(|a| a.environment.clone()));
                }
                GateKind::RedisHitRate { .. } | GateKind::Compare { .. } => {}
            }
        }
        out
    }

    /// Every side: the DNS side, then each environment.
    pub fn sides(&self) -> Vec<Side> {
        std::iter::once(Side::Dns).chain(self.environments.keys().map(|e| Side::Environment(e.clone()))).collect()
    }

    /// Whether any side has access keys of its own (a multi-account or
    /// multi-region runbook).
    pub fn has_side_access(&self) -> bool {
        self.sides().iter().any(|s| self.access(s) != Access::default())
    }
}

/// The account of an IAM role ARN (`arn:aws:iam::123456789012:role/name`).
pub fn role_account(arn: &str) -> Option<&str> {
    let rest =
        ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"].iter().find_map(|p| arn.strip_prefix(p))?;
    let (account, role) = rest.split_once(":role/")?;
    let name_ok = !role.is_empty() && role.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c));
    (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) && name_ok).then_some(account)
}

/// One place cutover reads and changes: the hosted zone's account, or an
/// environment's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Dns,
    Environment(String),
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Side::Dns => f.write_str("[dns]"),
            Side::Environment(e) => write!(f, "[environments.{e}]"),
        }
    }
}

/// How cutover reaches a side, as the runbook says. Every key is optional:
/// `account_id` and `region` default to `[runbook]`'s, `profile` to
/// `--profile`; with `role_arn` the role is assumed from those credentials.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub label: String,
    pub load_balancer: Option<String>,
    pub target_groups: Vec<String>,
    pub instances: InstanceSelector,
    pub redis: Vec<RedisEndpoint>,
    /// Redis endpoints this environment's instances use (their own by default;
    /// name another environment's for a shared Redis).
    pub uses_redis: Vec<String>,
    /// Instance tag holding the instance's health URL.
    pub health_url_tag: String,
    /// Health URL per instance, keyed by instance id or Name tag.
    pub health_urls: BTreeMap<String, String>,
    /// Template with `{instance_id}`, `{name}` or `{private_ip}`.
    pub health_url_template: Option<String>,
    /// The account, region and credentials of this environment.
    pub access: Access,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InstanceSelector {
    Tags(BTreeMap<String, String>),
    Ids(Vec<String>),
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisEndpoint {
    pub name: String,
    pub environment: String,
    /// URL as written; `url_env`, when set in the environment, wins.
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// Name of the variable holding the password; never the password.
    pub password_env: Option<String>,
    /// Name of the variable holding the sentinels' own password (a
    /// `redis+sentinel://` URL whose sentinels ask for one).
    pub sentinel_password_env: Option<String>,
    /// The port security-group rules must open (6379 unless the URL says otherwise).
    pub port: u16,
    /// A Sentinel endpoint's: the port security-group rules must open to its
    /// sentinels (its URL's sentinels' port, or `sentinel_port`). None: not
    /// known to be one (a `url_env` endpoint that gives no `sentinel_port`).
    pub sentinel_port: Option<u16>,
    pub security_groups: Vec<String>,
    /// Its ElastiCache replication group, when it is one: parity and
    /// `redis_persistence` then read what ElastiCache says of it.
    pub elasticache: Option<String>,
}

pub use crate::analysis::parity::ParityAllowance;

pub const DEFAULT_HEALTH_URL_TAG: &str = "cutover:health-url";

#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    pub zone: String,
    pub record: String,
    /// The first of `record_types` (the one shown where only one fits).
    pub record_type: String,
    /// Every type of the weighted group, changed together in one batch
    /// (`A` and `AAAA` for a dual-stack load balancer).
    pub record_types: Vec<String>,
    pub ttl: u32,
    /// Environment name to its record's set identifier.
    pub set_identifiers: BTreeMap<String, String>,
    /// Weights before the cutover (0–255); the abort target when no step passed.
    pub initial_weights: BTreeMap<String, u8>,
    /// The account, region and credentials of the hosted zone.
    pub access: Access,
}

impl Dns {
    /// Every type of the weighted group: `record_types`, or `record_type`
    /// alone when none is listed (records made up in tests).
    pub fn types(&self) -> Vec<String> {
        if self.record_types.is_empty() { vec![self.record_type.clone()] } else { self.record_types.clone() }
    }

    /// The address types a group at the record's name may also hold that
    /// the runbook does not list (AAAA beside its A): Route53 answers them
    /// all the same, and no shift moves them. None beside a CNAME, which
    /// stands alone at its name.
    pub fn unlisted_types(&self) -> Vec<String> {
        let types = self.types();
        if types.iter().any(|t| t == "CNAME") {
            return Vec::new();
        }
        ["A", "AAAA"].iter().map(|t| t.to_string()).filter(|t| !types.contains(t)).collect()
    }

    /// The environment whose weighted record `set_identifier` is, if any.
    pub fn environment_of(&self, set_identifier: &str) -> Option<&str> {
        self.set_identifiers.iter().find(|(_, id)| *id == set_identifier).map(|(env, _)| env.as_str())
    }

    /// Whether `set_identifier` is one of the runbook's weighted records.
    pub fn lists(&self, set_identifier: &str) -> bool {
        self.set_identifiers.values().any(|id| id == set_identifier)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub from: String,
    pub to: String,
    /// Percent of traffic on `to` at each step; increasing, ending at 100.
    pub steps: Vec<u8>,
    pub soak: Duration,
    /// How long the last step holds with its gates running; ZERO: the soak.
    pub bake: Duration,
    pub gate_interval: Duration,
    pub gates: Vec<Gate>,
}

impl Rollout {
    /// How long past each soak's end its alarm gates hold the step: the
    /// longest `lag` of an `alarm_ok` gate, zero without one.
    pub fn alarm_lag(&self) -> Duration {
        let lags = self.gates.iter().filter_map(|g| match &g.kind {
            GateKind::AlarmOk { lag, .. } => Some(*lag),
            _ => None,
        });
        lags.max().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub kind: GateKind,
    pub interval: Duration,
    /// Failed measurements (in total) that abort the rollout.
    pub failure_limit: u32,
    /// Provider errors in a row that pause the rollout for a human.
    pub consecutive_error_limit: u32,
    pub no_data: NoDataPolicy,
    /// Metric and compare gates: how long after the soak a gate may wait for
    /// datapoints covering its end (CloudWatch's lag); `None` is the default,
    /// [`DEFAULT_SETTLE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle: Option<Duration>,
}

/// How long a metric gate waits, at most, past the soak for datapoints
/// covering its end: ALB datapoints arrive one to three minutes late.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(180);

/// How far an alarm's state lags the requests it judges, unless a gate says:
/// ALB datapoints arrive one to three minutes late, and CloudWatch evaluates
/// an alarm once a minute after that.
pub const DEFAULT_ALARM_LAG: Duration = Duration::from_secs(240);

impl Gate {
    /// The wait for a reading covering the soak's end; `None` for gates that
    /// read live state, which has no lag.
    pub fn settle(&self) -> Option<Duration> {
        match &self.kind {
            GateKind::Metric { .. } | GateKind::Compare { .. } => Some(self.settle.unwrap_or(DEFAULT_SETTLE)),
            // The alarms read `lag` past the soak's end come on a later poll:
            // as long as a poll may take before it counts as stalled.
            GateKind::AlarmOk { lag, .. } => Some(*lag + (self.interval * 3).max(Duration::from_secs(60))),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GateKind {
    AlarmOk {
        alarms: Vec<String>,
        /// What an alarm in INSUFFICIENT_DATA counts as.
        #[serde(skip_serializing_if = "InsufficientData::is_default")]
        insufficient_data: InsufficientData,
        /// How far the alarms' state lags the requests it judges: a state
        /// read at t covers the requests until t − lag.
        lag: Duration,
    },
    HealthyTargets {
        environment: String,
        min: u32,
    },
    HttpHealth {
        environment: String,
    },
    RedisReachable {
        environment: String,
    },
    /// The Redis hit rate between two readings is at least `min_percent`,
    /// over at least `min_lookups` lookups (fewer: no data).
    RedisHitRate {
        redis: String,
        min_percent: f64,
        min_lookups: u64,
    },
    Metric {
        environment: String,
        metric: Metric,
        stat: Stat,
        max: f64,
        /// A percentile over fewer requests than this is no data.
        #[serde(skip_serializing_if = "Option::is_none")]
        min_requests: Option<u64>,
    },
    /// The new side's rate must stay within `factor` times the old side's.
    Compare {
        metric: Metric,
        stat: Stat,
        factor: f64,
        /// Fewer requests than this on either side over the soak is no
        /// data: a rate or percentile of a few requests is noise.
        #[serde(skip_serializing_if = "Option::is_none")]
        min_requests: Option<u64>,
    },
}

/// What an `alarm_ok` gate makes of an alarm in INSUFFICIENT_DATA (a new
/// alarm, or a healthy one on a sparse metric).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InsufficientData {
    /// No data: waits while the soak runs, then the gate's `no_data` policy.
    #[default]
    Wait,
    Pass,
    Fail,
}

impl InsufficientData {
    pub fn is_default(&self) -> bool {
        *self == InsufficientData::Wait
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    Fail,
    Pause,
    Pass,
}

/// The ALB metrics cutover reads (namespace AWS/ApplicationELB).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    RequestCount,
    #[serde(rename = "HTTPCode_Target_5XX_Count")]
    Target5xx,
    #[serde(rename = "HTTPCode_ELB_5XX_Count")]
    Elb5xx,
    TargetResponseTime,
    HealthyHostCount,
    #[serde(rename = "UnHealthyHostCount")]
    UnhealthyHostCount,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::RequestCount,
        Metric::Target5xx,
        Metric::Elb5xx,
        Metric::TargetResponseTime,
        Metric::HealthyHostCount,
        Metric::UnhealthyHostCount,
    ];

    pub fn cloudwatch_name(self) -> &'static str {
        match self {
            Metric::RequestCount => "RequestCount",
            Metric::Target5xx => "HTTPCode_Target_5XX_Count",
            Metric::Elb5xx => "HTTPCode_ELB_5XX_Count",
            Metric::TargetResponseTime => "TargetResponseTime",
            Metric::HealthyHostCount => "HealthyHostCount",
            Metric::UnhealthyHostCount => "UnHealthyHostCount",
        }
    }

    pub fn from_cloudwatch_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.cloudwatch_name() == name)
    }
}

/// A CloudWatch statistic: the five basic ones or a percentile (`p99`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub enum Stat {
    Sum,
    Average,
    Minimum,
    Maximum,
    SampleCount,
    Percentile(f64),
}

impl Stat {
    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "Sum" => Stat::Sum,
            "Average" => Stat::Average,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            "SampleCount" => Stat::SampleCount,
            p => {
                let v: f64 = p.strip_prefix('p')?.parse().ok()?;
                if !(v > 0.0 && v < 100.0) {
                    return None;
                }
                Stat::Percentile(v)
            }
        })
    }

    pub fn cloudwatch_name(self) -> String {
        match self {
            Stat::Sum => "Sum".into(),
            Stat::Average => "Average".into(),
            Stat::Minimum => "Minimum".into(),
            Stat::Maximum => "Maximum".into(),
            Stat::SampleCount => "SampleCount".into(),
            Stat::Percentile(p) => format!("p{p}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alarm {
    pub name: String,
    pub environment: Option<String>,
    /// What the sandbox creates the alarm on; real alarms are only read.
    pub metric: Metric,
    pub stat: Stat,
    pub threshold: f64,
    pub period: Duration,
    /// Periods the sandbox's alarm evaluates (CloudWatch's EvaluationPeriods).
    pub evaluation_periods: u32,
    /// CloudWatch's TreatMissingData: `missing` (default), `notBreaching`,
    /// `breaching` or `ignore`.
    pub treat_missing_data: String,
    /// A composite alarm's rule (`ALARM("a") OR ALARM("b")`); the metric
    /// fields are then unused.
    pub rule: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub id: String,
    pub title: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: String,
    pub title: String,
    pub kind: ItemKind,
    pub rollback: Option<Action>,
    pub note: Option<String>,
    /// Whether `cutover status` fails when this check fails.
    pub blocking: bool,
    /// The item may not run before this time gate opens.
    pub not_before: Option<NotBefore>,
}

/// An action item's time gate: refused until `wait` has passed since the
/// item `after` finished (its tick, or its action's last step applied).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotBefore {
    /// `phase/item`; a manual or action item of the runbook.
    pub after: String,
    pub wait: Duration,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ItemKind {
    Manual,
    Check { check: Check },
    Action { action: Action },
}

/// The fewest lookups a `redis_hit_rate` rate is judged on when the
/// runbook does not say: 3 hits of 3 is no evidence of a 90% hit rate.
pub const DEFAULT_MIN_LOOKUPS: u64 = 100;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    TargetsHealthy {
        environment: String,
    },
    RedisReachable {
        environment: String,
    },
    Stickiness {
        environment: String,
        duration: Duration,
    },
    AlarmOk {
        alarm: String,
    },
    HttpOk {
        environment: String,
    },
    KeyCountsMatch {
        from_redis: String,
        to_redis: String,
        tolerance: u64,
    },
    ZonesEnabled {
        environment: String,
    },
    /// No drift between the rollout's sides (`cutover diff` exits 0).
    Parity,
    /// Every instance of the environment has the same security groups, type and AMI.
    InstancesAlike {
        environment: String,
    },
    /// The load balancer has HTTPS on 443 whose certificates covering the
    /// record are issued and valid a while yet.
    HttpsListener {
        environment: String,
    },
    /// A metric alarm watches the environment's 5xx (target or load balancer).
    AlarmOn5xx {
        environment: String,
    },
    /// Every Redis the environment uses persists its data (AOF or RDB snapshots).
    RedisPersistence {
        environment: String,
    },
    /// An Auto Scaling group is attached to one of the environment's target groups.
    AutoscalingGroup {
        environment: String,
    },
    /// The Redis hit rate between two readings is at least `min_percent`,
    /// over at least `min_lookups` lookups (fewer: no data).
    RedisHitRate {
        redis: String,
        min_percent: f64,
        min_lookups: u64,
    },
}

impl Check {
    /// Whether the check reads the sides' shapes (`live::parity`).
    pub fn reads_shapes(&self) -> bool {
        matches!(
            self,
            Check::Parity
                | Check::InstancesAlike { .. }
                | Check::HttpsListener { .. }
                | Check::AlarmOn5xx { .. }
                | Check::RedisPersistence { .. }
                | Check::AutoscalingGroup { .. }
        )
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Put `to` percent of traffic on the rollout's target side.
    ShiftWeights {
        to: u8,
    },
    /// Run the gated rollout through every step.
    Rollout,
    RegisterTargets {
        environment: String,
    },
    DeregisterTargets {
        environment: String,
    },
    SetStickiness {
        environment: String,
        duration: Duration,
    },
    DisableStickiness {
        environment: String,
    },
    AuthorizeRedisIngress {
        environment: String,
    },
    RevokeRedisIngress {
        environment: String,
    },
    CopyRedis {
        from_redis: String,
        to_redis: String,
        pattern: Option<String>,
    },
    StopInstances {
        environment: String,
    },
    StartInstances {
        environment: String,
    },
    /// An AMI of each of the environment's instances, waited on until available.
    CreateImage {
        environment: String,
        /// Without rebooting the instances (AWS reboots by default).
        no_reboot: bool,
    },
    /// A snapshot of an ElastiCache Redis endpoint, waited on until available.
    SnapshotRedis {
        redis: String,
    },
    /// Terminates the environment's instances, only once every one is
    /// stopped; no rollback exists (confirmed by typing the environment's name).
    TerminateInstances {
        environment: String,
    },
    /// Deletes security groups that nothing uses any more; no rollback exists.
    DeleteSecurityGroups {
        environment: String,
        /// Names (in the environment's VPC) or ids.
        security_groups: Vec<String>,
    },
}

impl Action {
    /// The action's kind as the runbook spells it (`shift_weights`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::ShiftWeights { .. } => "shift_weights",
            Action::Rollout => "rollout",
            Action::RegisterTargets { .. } => "register_targets",
            Action::DeregisterTargets { .. } => "deregister_targets",
            Action::SetStickiness { .. } => "set_stickiness",
            Action::DisableStickiness { .. } => "disable_stickiness",
            Action::AuthorizeRedisIngress { .. } => "authorize_redis_ingress",
            Action::RevokeRedisIngress { .. } => "revoke_redis_ingress",
            Action::CopyRedis { .. } => "copy_redis",
            Action::StopInstances { .. } => "stop_instances",
            Action::StartInstances { .. } => "start_instances",
            Action::CreateImage { .. } => "create_image",
            Action::SnapshotRedis { .. } => "snapshot_redis",
            Action::TerminateInstances { .. } => "terminate_instances",
            Action::DeleteSecurityGroups { .. } => "delete_security_groups",
        }
    }

    /// The side whose account the action changes: the weights' (`[dns]`),
    /// or the environment's (for `copy_redis`, the target endpoint's).
    pub fn side(&self, rb: &Runbook) -> Side {
        match self {
            Action::ShiftWeights { .. } | Action::Rollout => Side::Dns,
            Action::RegisterTargets { environment }
            | Action::DeregisterTargets { environment }
            | Action::SetStickiness { environment, .. }
            | Action::DisableStickiness { environment }
            | Action::AuthorizeRedisIngress { environment }
            | Action::RevokeRedisIngress { environment }
            | Action::StopInstances { environment }
            | Action::StartInstances { environment }
            | Action::CreateImage { environment, .. }
            | Action::TerminateInstances { environment }
            | Action::DeleteSecurityGroups { environment, .. } => Side::Environment(environment.clone()),
            Action::CopyRedis { to_redis: redis, .. } | Action::SnapshotRedis { redis } => {
                rb.redis_endpoint(redis).map_or(Side::Dns, |r| Side::Environment(r.environment.clone()))
            }
        }
    }

    /// The kind and its arguments, as shown and audited (`shift_weights to 30%`).
    pub fn summary(&self) -> String {
        let kind = self.kind();
        match self {
            Action::ShiftWeights { to } => format!("{kind} to {to}%"),
            Action::Rollout => kind.into(),
            Action::SetStickiness { environment, duration } => {
                format!("{kind} {environment} {}", super::duration::format_duration(*duration))
            }
            Action::CopyRedis { from_redis, to_redis, .. } => format!("{kind} {from_redis} → {to_redis}"),
            Action::RegisterTargets { environment }
            | Action::DeregisterTargets { environment }
            | Action::DisableStickiness { environment }
            | Action::AuthorizeRedisIngress { environment }
            | Action::RevokeRedisIngress { environment }
            | Action::StopInstances { environment }
            | Action::StartInstances { environment } => format!("{kind} {environment}"),
            Action::CreateImage { environment, no_reboot } => {
                format!("{kind} {environment}{}", if *no_reboot { " (no reboot)" } else { "" })
            }
            Action::SnapshotRedis { redis } => format!("{kind} {redis}"),
            Action::TerminateInstances { environment } => format!("{kind} {environment}"),
            Action::DeleteSecurityGroups { environment, security_groups } => {
                format!("{kind} {environment} {}", security_groups.join(", "))
            }
        }
    }

    /// The name a person types to confirm an action that cannot be undone
    /// (its environment's); None for the others.
    pub fn confirm_name(&self) -> Option<&str> {
        match self {
            Action::TerminateInstances { environment } | Action::DeleteSecurityGroups { environment, .. } => {
                Some(environment)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SandboxSpec {
    pub seed_keys: u32,
    /// Availability-zone suffixes (`a`, `b`) each environment's ALB is enabled in.
    pub load_balancer_zones: BTreeMap<String, Vec<String>>,
    pub security_groups: Vec<SandboxGroup>,
    pub instances: Vec<SandboxInstance>,
    /// Environments whose weighted record the sandbox creates as an alias to
    /// their load balancer (DNS name and canonical zone as AWS returns them).
    pub alias_records: Vec<String>,
    /// Redis endpoints the sandbox runs as a Redis Cluster, by name.
    pub redis_clusters: BTreeMap<String, SandboxCluster>,
    /// Redis endpoints the sandbox runs as a Sentinel group, by name.
    pub redis_sentinels: BTreeMap<String, SandboxSentinels>,
}

/// A Sentinel group on loopback: a master named as its endpoint, one
/// replica, and `sentinels` sentinels watching it with `quorum`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SandboxSentinels {
    pub sentinels: usize,
    pub quorum: u32,
}

impl Default for SandboxSentinels {
    fn default() -> Self {
        Self { sentinels: 3, quorum: 2 }
    }
}

/// A Redis Cluster on loopback: `shards` primaries, one replica each with `replicas`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SandboxCluster {
    pub shards: usize,
    pub replicas: bool,
}

impl Default for SandboxCluster {
    fn default() -> Self {
        Self { shards: 3, replicas: false }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SandboxGroup {
    pub name: String,
    pub ingress: Vec<Ingress>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ingress {
    pub port: u16,
    /// A security-group name of the sandbox or an IPv4 CIDR.
    pub from: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SandboxInstance {
    pub name: String,
    pub environment: String,
    pub zone: String,
    pub security_groups: Vec<String>,
    /// The Redis endpoint the app uses; the environment's first by default.
    pub redis: String,
}

/// Short words for a gate, for logs and the cockpit.
pub fn gate_label(g: &GateKind) -> String {
    match g {
        GateKind::AlarmOk { alarms, .. } => format!("alarms {}", alarms.join(", ")),
        GateKind::HealthyTargets { environment, min } => format!("≥{min} healthy in {environment}"),
        GateKind::HttpHealth { environment } => format!("/health of {environment}"),
        GateKind::RedisReachable { environment } => format!("Redis from {environment}"),
        GateKind::RedisHitRate { redis, min_percent, .. } => format!("{redis} hit rate ≥ {min_percent}%"),
        GateKind::Metric { environment, metric, stat, max, .. } => {
            format!("{environment} {} {} ≤ {max}", metric.cloudwatch_name(), stat.cloudwatch_name())
        }
        GateKind::Compare { metric, stat, factor, .. } => {
            format!("{} {} ≤ {factor}× old side", metric.cloudwatch_name(), stat.cloudwatch_name())
        }
    }
}

/// The metric alarms `name` rests on: itself, or a composite's children at
/// any depth (each once; a cycle is cut).
pub fn metric_alarms_under<'a>(alarms: &'a [Alarm], name: &str) -> Vec<&'a Alarm> {
    alarms_under(alarms, name).into_iter().filter(|a| a.rule.as_deref().and_then(alarm_rule_names).is_none()).collect()
}

/// Every declared alarm `name` rests on, itself first: a composite, the
/// composites under it and their metric alarms (each once; a cycle is cut).
pub fn alarms_under<'a>(alarms: &'a [Alarm], name: &str) -> Vec<&'a Alarm> {
    walk_alarms(alarms, name, &|_, _| true)
}

/// Alarm `name`, then each child of a composite that `follows(rule,
/// child)`, depth first, each once (a cycle is cut).
fn walk_alarms<'a>(alarms: &'a [Alarm], name: &str, follows: &dyn Fn(&str, &str) -> bool) -> Vec<&'a Alarm> {
    fn walk<'a>(
        alarms: &'a [Alarm],
        name: &str,
        follows: &dyn Fn(&str, &str) -> bool,
        seen: &mut Vec<String>,
        out: &mut Vec<&'a Alarm>,
    ) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_string());
        let Some(a) = alarms.iter().find(|a| a.name == name) else { return };
        out.push(a);
        let Some(rule) = a.rule.as_deref() else { return };
        for child in alarm_rule_names(rule).unwrap_or_default() {
            if follows(rule, &child) {
                walk(alarms, &child, follows, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(alarms, name, follows, &mut Vec::new(), &mut out);
    out
}

/// The declared alarms whose ALARM alone sets off alarm `name`, every other
/// alarm OK: itself, and through a composite each child whose ALARM makes
/// its rule hold (`ALARM(a) OR ALARM(b)`: both; `ALARM(a) AND ALARM(b)`:
/// neither, as one in ALARM says nothing of the composite), each once.
pub fn alarms_setting_off<'a>(alarms: &'a [Alarm], name: &str) -> Vec<&'a Alarm> {
    walk_alarms(alarms, name, &|rule, child| alarm_rule_holds_with_alone(rule, child) == Some(true))
}

/// Whether a composite rule holds with alarm `child` in ALARM and every
/// other alarm it names OK; `None` when the rule cannot be read.
pub fn alarm_rule_holds_with_alone(rule: &str, child: &str) -> Option<bool> {
    let tokens = alarm_rule_tokens(rule)?;
    let state = |want: &str, n: &str| Some(want == if n == child { "ALARM" } else { "OK" });
    let mut p = RuleEval { tokens: &tokens, at: 0, state: &state };
    let v = p.or()?;
    (p.at == tokens.len()).then_some(v?)
}

/// Whether a composite rule holds with the alarms `in_alarm` names in
/// ALARM and every other alarm it names OK; `None` when the rule cannot be
/// read.
pub fn alarm_rule_holds_with(rule: &str, in_alarm: &dyn Fn(&str) -> bool) -> Option<bool> {
    let tokens = alarm_rule_tokens(rule)?;
    let state = |want: &str, n: &str| Some(want == if in_alarm(n) { "ALARM" } else { "OK" });
    let mut p = RuleEval { tokens: &tokens, at: 0, state: &state };
    let v = p.or()?;
    (p.at == tokens.len()).then_some(v?)
}

/// The alarm names a composite alarm rule refers to, or `None` when the rule
/// cannot be read: `ALARM("a") OR (OK(b) AND NOT INSUFFICIENT_DATA("c"))`;
/// also `TRUE` and `FALSE`.
pub fn alarm_rule_names(rule: &str) -> Option<Vec<String>> {
    let names = alarm_rule_tokens(rule)?.into_iter().filter_map(|t| match t {
        RuleToken::State(_, name) => Some(name.to_string()),
        RuleToken::Symbol(_) => None,
    });
    Some(names.collect())
}

/// Whether two composite alarm rules are one rule as written, whatever
/// their spacing and quotes, a child named or given by its ARN (AWS takes
/// either: PutCompositeAlarm's `AlarmRule`); `None` when either cannot be
/// read. Two rules written differently that mean the same (`a OR b`, `b OR
/// a`) are not one: cutover does not reason about the logic.
pub fn same_alarm_rule(one: &str, other: &str) -> Option<bool> {
    // An alarm's ARN ends `:alarm:` and its name (names may hold colons).
    fn named(t: RuleToken<'_>) -> RuleToken<'_> {
        match t {
            RuleToken::State(f, n) if n.starts_with("arn:") => {
                RuleToken::State(f, n.split_once(":alarm:").map_or(n, |(_, name)| name))
            }
            t => t,
        }
    }
    let one: Vec<RuleToken<'_>> = alarm_rule_tokens(one)?.into_iter().map(named).collect();
    let other: Vec<RuleToken<'_>> = alarm_rule_tokens(other)?.into_iter().map(named).collect();
    Some(one == other)
}

/// Whether a composite alarm rule can be in ALARM for some states of the
/// alarms it names (each ALARM, OK or INSUFFICIENT_DATA): `None` when the
/// rule cannot be read (terms without an operator between them too). A
/// rule that never can (`ALARM("a") AND FALSE`, the usual way to mute a
/// composite) keeps its alarm OK whatever its children say. For a rule
/// naming more than eight alarms (3^8 states are tried at most) only its
/// constants are judged.
pub fn alarm_rule_can_alarm(rule: &str) -> Option<bool> {
    let tokens = alarm_rule_tokens(rule)?;
    let mut names: Vec<&str> = tokens
        .iter()
        .filter_map(|t| match t {
            RuleToken::State(_, n) => Some(*n),
            RuleToken::Symbol(_) => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    // The rule's value with each alarm's state given, or (None) unknown.
    let value = |state: &dyn Fn(&str, &str) -> Option<bool>| {
        let mut p = RuleEval { tokens: &tokens, at: 0, state };
        let v = p.or()?;
        (p.at == tokens.len()).then_some(v)
    };
    // Its constants alone: a grammar error shows whatever the states, and
    // `(…) AND FALSE` is muted whatever its alarms say, however many.
    match value(&|_, _| None)? {
        Some(false) => return Some(false),
        Some(true) => return Some(true),
        None if names.len() > 8 => return Some(true),
        None => {}
    }
    let states = ["ALARM", "OK", "INSUFFICIENT_DATA"];
    let mut assign = vec![0usize; names.len()];
    loop {
        let state =
            |want: &str, n: &str| Some(states[names.iter().position(|x| *x == n).map_or(1, |i| assign[i])] == want);
        if value(&state)? == Some(true) {
            return Some(true);
        }
        // The next assignment, counting in base 3.
        let Some(i) = assign.iter().position(|&a| a < 2) else { return Some(false) };
        assign[i] += 1;
        assign[..i].iter_mut().for_each(|a| *a = 0);
    }
}

/// A composite rule read by its grammar (OR of ANDs of NOT-able terms), in
/// three values: a term's `state` is None when unknown, and the rule's value
/// is None when its known parts do not decide it.
struct RuleEval<'t, 'a> {
    tokens: &'t [RuleToken<'a>],
    at: usize,
    state: &'t dyn Fn(&str, &str) -> Option<bool>,
}

impl RuleEval<'_, '_> {
    fn symbol(&mut self, s: &str) -> bool {
        let hit = self.tokens.get(self.at) == Some(&RuleToken::Symbol(s));
        self.at += usize::from(hit);
        hit
    }

    fn or(&mut self) -> Option<Option<bool>> {
        let mut v = self.and()?;
        while self.symbol("OR") {
            let r = self.and()?;
            v = match (v, r) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
        }
        Some(v)
    }

    fn and(&mut self) -> Option<Option<bool>> {
        let mut v = self.not()?;
        while self.symbol("AND") {
            let r = self.not()?;
            v = match (v, r) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
        }
        Some(v)
    }

    fn not(&mut self) -> Option<Option<bool>> {
        if self.symbol("NOT") {
            return self.not().map(|v| v.map(|b| !b));
        }
        if self.symbol("(") {
            let v = self.or()?;
            return self.symbol(")").then_some(v);
        }
        if self.symbol("TRUE") {
            return Some(Some(true));
        }
        if self.symbol("FALSE") {
            return Some(Some(false));
        }
        match self.tokens.get(self.at)? {
            RuleToken::State(want, name) => {
                self.at += 1;
                Some((self.state)(want, name))
            }
            RuleToken::Symbol(_) => None,
        }
    }
}

/// One token of a composite alarm rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RuleToken<'a> {
    /// `(`, `)`, `AND`, `OR`, `NOT`, `TRUE` or `FALSE`.
    Symbol(&'a str),
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA` of an alarm, its name unquoted.
    State(&'a str, &'a str),
}

/// A composite alarm rule's tokens, or `None` when it cannot be read (an
/// empty rule too).
fn alarm_rule_tokens(rule: &str) -> Option<Vec<RuleToken<'_>>> {
    let mut tokens = Vec::new();
    let mut depth = 0i32;
    let mut rest = rule.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('(') {
            depth += 1;
            tokens.push(RuleToken::Symbol("("));
            rest = r;
        } else if let Some(r) = rest.strip_prefix(')') {
            depth -= 1;
            if depth < 0 {
                return None;
            }
            tokens.push(RuleToken::Symbol(")"));
            rest = r;
        } else {
            let word_len = rest.find(|c: char| !(c.is_ascii_alphabetic() || c == '_')).unwrap_or(rest.len());
            let (word, r) = rest.split_at(word_len);
            match word {
                "AND" | "OR" | "NOT" | "TRUE" | "FALSE" => {
                    tokens.push(RuleToken::Symbol(word));
                    rest = r;
                }
                "ALARM" | "OK" | "INSUFFICIENT_DATA" => {
                    let r = r.trim_start().strip_prefix('(')?.trim_start();
                    // Quoted, a name runs to its closing quote (and may hold
                    // parentheses); bare, to the `)`, holding no quote or `(`.
                    let (name, after) = match r.strip_prefix('"') {
                        Some(quoted) => {
                            let end = quoted.find('"')?;
                            (&quoted[..end], &quoted[end + 1..])
                        }
                        None => {
                            let end = r.find(')')?;
                            (r[..end].trim_end(), &r[end..])
                        }
                    };
                    if name.is_empty() || (!r.starts_with('"') && name.contains(['"', '('])) {
                        return None;
                    }
                    tokens.push(RuleToken::State(word, name));
                    rest = after.trim_start().strip_prefix(')')?;
                }
                _ => return None,
            }
        }
        rest = rest.trim_start();
    }
    (depth == 0 && !tokens.is_empty()).then_some(tokens)
}

#[cfg(test)]
mod rule_tests {
    use super::{alarm_rule_can_alarm, alarm_rule_names, same_alarm_rule};

    #[test]
    fn a_rule_that_can_never_be_in_alarm_is_told() {
        assert_eq!(alarm_rule_can_alarm(r#"ALARM("a") OR (OK(b) AND NOT INSUFFICIENT_DATA("c"))"#), Some(true));
        assert_eq!(alarm_rule_can_alarm(r#"ALARM("a") AND FALSE"#), Some(false));
        assert_eq!(alarm_rule_can_alarm(r#"ALARM("a") AND OK("a")"#), Some(false));
        assert_eq!(alarm_rule_can_alarm(r#"NOT (ALARM("a") OR NOT ALARM("a"))"#), Some(false));
        assert_eq!(alarm_rule_can_alarm(r#"OK("a") AND NOT ALARM("b")"#), Some(true), "OK itself may hold");
        assert_eq!(alarm_rule_can_alarm("TRUE"), Some(true));
        // Terms without an operator, an operator without a term: unreadable.
        assert_eq!(alarm_rule_can_alarm(r#"ALARM("x") ALARM("y")"#), None);
        assert_eq!(alarm_rule_can_alarm(r#"ALARM("x") AND"#), None);
        assert_eq!(alarm_rule_can_alarm(r#"(ALARM("x"))"#), Some(true));
        // Nine alarms and more: too many to try every state, but muted by a constant all the same.
        let nine = (1..=9).map(|i| format!("ALARM(\"a{i}\")")).collect::<Vec<_>>().join(" OR ");
        assert_eq!(alarm_rule_can_alarm(&format!("({nine}) AND FALSE")), Some(false));
        assert_eq!(alarm_rule_can_alarm(&format!("NOT (TRUE OR {nine})")), Some(false));
        assert_eq!(alarm_rule_can_alarm(&nine), Some(true));
        assert_eq!(alarm_rule_can_alarm(&format!("({nine}) AND OK(\"a1\")")), Some(true), "taken as able");
    }

    #[test]
    fn composite_rules_name_their_children() {
        assert_eq!(
            alarm_rule_names(r#"ALARM("a-1") OR (OK(b) AND NOT INSUFFICIENT_DATA("c"))"#),
            Some(vec!["a-1".to_string(), "b".to_string(), "c".to_string()])
        );
        assert_eq!(alarm_rule_names("TRUE"), Some(vec![]));
        assert_eq!(alarm_rule_names("ALARM(a"), None);
        assert_eq!(alarm_rule_names("ALARM(a))"), None);
        assert_eq!(alarm_rule_names("MAYBE(a)"), None);
        assert_eq!(alarm_rule_names(" "), None);
    }

    #[test]
    fn one_rule_is_one_whatever_its_spacing_quotes_and_arns() {
        let rule = r#"ALARM("a-1") OR (OK(b) AND NOT INSUFFICIENT_DATA("c:d"))"#;
        let same = "ALARM(a-1)  OR ( OK( \"b\" ) AND NOT INSUFFICIENT_DATA(arn:aws:cloudwatch:eu-west-1:123456789012:alarm:c:d))";
        assert_eq!(same_alarm_rule(rule, same), Some(true));
        assert_eq!(same_alarm_rule(rule, rule), Some(true));
        // Another child, another state, another operator, the logic reordered.
        for other in [
            r#"ALARM("a-1") OR (OK(b) AND NOT INSUFFICIENT_DATA("e"))"#,
            r#"ALARM("a-1") OR (ALARM(b) AND NOT INSUFFICIENT_DATA("c:d"))"#,
            r#"ALARM("a-1") AND (OK(b) AND NOT INSUFFICIENT_DATA("c:d"))"#,
            r#"(OK(b) AND NOT INSUFFICIENT_DATA("c:d")) OR ALARM("a-1")"#,
            r#"ALARM("a-1")"#,
        ] {
            assert_eq!(same_alarm_rule(rule, other), Some(false), "{other}");
        }
        // A function cutover does not read (AWS's AT_LEAST): not judged.
        assert_eq!(same_alarm_rule(rule, "AT_LEAST(2, ALARM, (a-1, b, c:d))"), None);
        // A quoted name holding `) OR ALARM(` is one name, never two children.
        let two = r#"ALARM("x") OR ALARM("y")"#;
        assert_eq!(alarm_rule_names(r#"ALARM("x) OR ALARM(y")"#), Some(vec!["x) OR ALARM(y".to_string()]));
        assert_eq!(same_alarm_rule(two, r#"ALARM("x) OR ALARM(y")"#), Some(false));
        // Spaces inside quotes are the name's own; a quote or `(` in a bare name is not read.
        assert_eq!(same_alarm_rule(two, r#"ALARM(" x") OR ALARM("y")"#), Some(false));
        assert_eq!(alarm_rule_names(r#"ALARM(x"y)"#), None);
        assert_eq!(alarm_rule_names("ALARM(a(b)"), None);
        assert_eq!(alarm_rule_names(r#"ALARM("api (5xx)")"#), Some(vec!["api (5xx)".to_string()]));
        assert_eq!(alarm_rule_names(r#"ALARM("x" y)"#), None);
    }
}
