//! The runbook as written: serde structs that keep the source span of every
//! value validation may complain about. `validate` turns this into `model`.

//!
//! These types are also the source of `cutover schema` (schemars): a doc
//! comment on a field is its description in the JSON Schema.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use toml::Spanned;

/// A value with its byte span in the runbook. A newtype over `toml::Spanned`
/// only so that the schema can see through it (to `T`); serde does already.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct S<T>(Spanned<T>);

impl<T> S<T> {
    pub fn get_ref(&self) -> &T {
        self.0.get_ref()
    }

    pub fn span(&self) -> std::ops::Range<usize> {
        self.0.span()
    }
}

impl std::borrow::Borrow<str> for S<String> {
    fn borrow(&self) -> &str {
        self.0.get_ref()
    }
}

impl<T: JsonSchema> JsonSchema for S<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A cutover runbook: one migration between AWS environments (see README, "Runbook format").
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cutover runbook")]
pub struct RawRunbook {
    /// Name, region and account of the migration.
    pub runbook: S<RawHeader>,
    /// One table per side (at least two); the table's name is used everywhere else.
    pub environments: S<BTreeMap<S<String>, S<RawEnvironment>>>,
    /// The weighted DNS record whose weights move the traffic.
    pub dns: S<RawDns>,
    /// The gated rollout: from which side to which, in which steps, behind which gates.
    pub rollout: S<RawRollout>,
    /// CloudWatch alarms the gates and checks read (and the sandbox creates).
    #[serde(default)]
    pub alarms: Vec<S<RawAlarm>>,
    /// The checklist, phase by phase.
    #[serde(default)]
    pub phases: Vec<S<RawPhase>>,
    /// What `cutover sandbox up` creates to rehearse the runbook.
    pub sandbox: Option<S<RawSandbox>>,
    /// Where to post what the rollout and each change did (a Slack-compatible webhook).
    pub notify: Option<S<RawNotify>>,
    /// The differences between the two sides that are expected (`cutover diff`).
    pub parity: Option<S<RawParity>>,
    /// Team mode: the rollout's state, lease, requests, checklist and audit in S3, shared by everyone.
    pub team: Option<S<RawTeam>>,
}

/// `[team]`: where a team shares the cutover's state.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Team")]
pub struct RawTeam {
    /// `s3://bucket/prefix`: the bucket (it must exist) and a prefix for this team's objects.
    pub state: S<String>,
    /// How long the rollout's lease lasts unrenewed (default `30s`; renewed every sixth of it).
    pub lease: Option<S<String>>,
    /// The bucket's region (default: the runbook's).
    pub region: Option<S<String>>,
}

/// `[parity]`: the differences between the sides that are expected.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Parity")]
pub struct RawParity {
    /// Each expected difference, with why.
    #[serde(default)]
    pub allow: Vec<S<RawAllow>>,
}

/// One expected difference between the sides.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ParityAllow")]
pub struct RawAllow {
    /// A parity path, such as `target_group.stickiness` (`cutover diff` lists them).
    pub what: S<String>,
    /// Only the difference about this subject, as `cutover diff` names it
    /// (`demo-prod-web / demo-staging-web`, `app groups`, `staging-web-2 security groups`).
    pub subject: Option<S<String>>,
    /// Only while the `from` side's value is exactly this, as `cutover diff`
    /// shows it (for `instances.alike.*`: the other instances' value).
    pub from: Option<S<String>>,
    /// Only while the `to` side's value is exactly this, as `cutover diff`
    /// shows it (for `instances.alike.*`: the odd instance's): a further
    /// change there is drift again.
    pub to: Option<S<String>>,
    /// Why the difference is expected (required).
    pub reason: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Notify")]
pub struct RawNotify {
    /// The environment variable holding the webhook's URL (never the URL itself:
    /// it is a secret); `CUTOVER_WEBHOOK_URL` overrides it.
    pub webhook_url_env: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Header")]
pub struct RawHeader {
    /// Letters, digits, `-`, `_` (1–64); names the state files.
    pub name: S<String>,
    /// Shown by `plan` and the cockpit.
    pub title: Option<String>,
    /// Shown by `plan` and the cockpit.
    pub description: Option<String>,
    /// Default AWS region (`--region` wins).
    pub region: Option<S<String>>,
    /// The target account is production (red border in the cockpit).
    #[serde(default)]
    pub production: bool,
    /// 12 digits, quoted: cutover refuses to act in any other account.
    pub account_id: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Environment")]
pub struct RawEnvironment {
    /// Display name.
    pub label: Option<String>,
    /// ALB name or ARN; optional (a single box has none).
    pub load_balancer: Option<S<String>>,
    /// Target group names or ARNs.
    #[serde(default)]
    pub target_groups: Vec<S<String>>,
    /// This side's instances: `{ tags = { Key = "value" } }` or `{ ids = ["i-…"] }`, exactly one.
    pub instances: S<RawInstanceSelector>,
    /// This side's Redis endpoints.
    #[serde(default)]
    pub redis: Vec<S<RawRedis>>,
    /// Redis endpoints the instances use (default: the side's own); name another side's for a shared Redis.
    pub uses_redis: Option<Vec<S<String>>>,
    /// Instance tag holding the health URL (default `cutover:health-url`).
    pub health_url_tag: Option<S<String>>,
    /// Health URL per instance id or `Name` tag.
    #[serde(default)]
    pub health_urls: BTreeMap<S<String>, S<String>>,
    /// Health URL with `{instance_id}`, `{name}` or `{private_ip}`.
    pub health_url_template: Option<S<String>>,
    /// The AWS account this side must be in (12 digits); default: its role's, else `[runbook]`'s.
    pub account_id: Option<S<String>>,
    /// The region of this side; default: `--region`, else `[runbook]`'s.
    pub region: Option<S<String>>,
    /// The AWS profile whose credentials reach this side; default: `--profile`.
    pub profile: Option<S<String>>,
    /// An IAM role to assume (from the profile's credentials) to reach this side.
    pub role_arn: Option<S<String>>,
    /// The external id the role's trust policy asks for (with `role_arn` only).
    pub external_id: Option<S<String>>,
}

/// Exactly one of `tags` and `ids`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "InstanceSelector")]
pub struct RawInstanceSelector {
    /// Instances carrying all of these tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Instance ids (`i-…`).
    pub ids: Option<Vec<S<String>>>,
}

/// A Redis endpoint: `url` and/or `url_env`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisEndpoint")]
pub struct RawRedis {
    /// Unique in the runbook.
    pub name: S<String>,
    /// `redis://` or `rediss://`, never with a password in it.
    pub url: Option<S<String>>,
    /// The environment variable holding the URL (wins over `url` when set).
    pub url_env: Option<S<String>>,
    /// The environment variable holding the password (the master's, with Sentinel).
    pub password_env: Option<S<String>>,
    /// The environment variable holding the sentinels' own password (their
    /// `requirepass`), for a `redis+sentinel://` URL whose sentinels ask for one.
    pub sentinel_password_env: Option<S<String>>,
    /// The port security-group rules must open (default: the URL's, else
    /// 6379; required with `url_env` and `security_groups` but no `url`).
    pub port: Option<S<i64>>,
    /// The port security-group rules must open to the sentinels of a
    /// Sentinel endpoint (default: the port of the sentinels its `url`
    /// names, 26379 where none is given). Give it for a Sentinel endpoint
    /// whose URL is in `url_env`: the path to its sentinels is checked then.
    pub sentinel_port: Option<S<i64>>,
    /// Security group ids or names protecting the endpoint, for the path analysis.
    #[serde(default)]
    pub security_groups: Vec<S<String>>,
    pub elasticache: Option<S<String>>,
}

/// What `type` takes (for the schema only: validation reads a `toml::Value`).
#[derive(JsonSchema)]
#[schemars(untagged, inline)]
#[allow(dead_code)]
enum RecordTypes {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dns")]
pub struct RawDns {
    /// Hosted zone name or id (`Z…`).
    pub zone: S<String>,
    /// The weighted record, inside the zone.
    pub record: S<String>,
    /// `"A"`, `"AAAA"` or `"CNAME"`, or a list of types read and changed together (`["A", "AAAA"]`).
    #[serde(rename = "type")]
    #[schemars(with = "RecordTypes")]
    pub record_type: S<toml::Value>,
    /// Seconds; a step waits the larger of this and the live records' TTL.
    pub ttl: S<i64>,
    /// Environment → set identifier (unique); both rollout sides need one.
    pub set_identifiers: S<BTreeMap<S<String>, S<String>>>,
    /// Environment → weight 0–255 before the cutover (default: `from` 100, `to` 0).
    pub initial_weights: Option<S<BTreeMap<S<String>, S<i64>>>>,
    /// The AWS account this side must be in (12 digits); default: its role's, else `[runbook]`'s.
    pub account_id: Option<S<String>>,
    /// The region of this side; default: `--region`, else `[runbook]`'s.
    pub region: Option<S<String>>,
    /// The AWS profile whose credentials reach this side; default: `--profile`.
    pub profile: Option<S<String>>,
    /// An IAM role to assume (from the profile's credentials) to reach this side.
    pub role_arn: Option<S<String>>,
    /// The external id the role's trust policy asks for (with `role_arn` only).
    pub external_id: Option<S<String>>,
}

/// The access keys `[environments.NAME]` and `[dns]` share, borrowed.
pub struct RawAccess<'a> {
    pub account_id: Option<&'a S<String>>,
    pub region: Option<&'a S<String>>,
    pub profile: Option<&'a S<String>>,
    pub role_arn: Option<&'a S<String>>,
    pub external_id: Option<&'a S<String>>,
}

macro_rules! access_of {
    ($t:ty) => {
        impl $t {
            pub fn access(&self) -> RawAccess<'_> {
                RawAccess {
                    account_id: self.account_id.as_ref(),
                    region: self.region.as_ref(),
                    profile: self.profile.as_ref(),
                    role_arn: self.role_arn.as_ref(),
                    external_id: self.external_id.as_ref(),
                }
            }
        }
    };
}
access_of!(RawEnvironment);
access_of!(RawDns);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rollout")]
pub struct RawRollout {
    /// The environment traffic leaves.
    pub from: S<String>,
    /// The environment traffic goes to.
    pub to: S<String>,
    /// Percent on `to` at each step: increasing, 1–100, ending at 100.
    pub steps: S<Vec<S<i64>>>,
    /// Time each step must hold (a duration: `30s`, `5m`, `1h30m`; not 0).
    pub soak: S<String>,
    /// How long the last step (100%) holds with every gate still running
    /// before the rollout is complete (a duration: `24h`); default: the soak.
    pub bake: Option<S<String>>,
    /// Default interval of the gates (a duration; default `30s`).
    pub gate_interval: Option<S<String>>,
    /// Gates every step must pass.
    #[serde(default)]
    pub gates: Vec<S<RawGate>>,
}

/// One gate. Flat on purpose: the `kind` decides which fields apply, and the
/// validator names any field that does not, with its location.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Gate")]
pub struct RawGate {
    /// What the gate measures.
    #[schemars(transform = gate_kinds)]
    pub kind: S<String>,
    /// The environment measured (`healthy_targets`, `http_health`, `redis_reachable`, `metric`).
    pub environment: Option<S<String>>,
    /// `redis_hit_rate`: the Redis endpoint measured.
    pub redis: Option<S<String>>,
    /// `redis_hit_rate`: the least hit rate, in percent (above 1, at most 100), over the interval between two readings.
    pub min_hit_rate: Option<S<f64>>,
    /// `redis_hit_rate`: the fewest lookups a rate is judged on (default 100); fewer is no data.
    pub min_lookups: Option<S<i64>>,
    /// `alarm_ok`: alarms declared under `[[alarms]]`.
    pub alarms: Option<Vec<S<String>>>,
    /// `healthy_targets`: at least this many healthy targets.
    pub min: Option<S<i64>>,
    /// `metric`, `compare`: the load balancer metric.
    #[schemars(transform = metric_names)]
    pub metric: Option<S<String>>,
    /// `metric`, `compare`: `Sum` (default), `Average`, `Minimum`, `Maximum`, `SampleCount` or a percentile such as `p99`.
    pub stat: Option<S<String>>,
    /// `metric`: the statistic over the soak must be at most this.
    pub max: Option<S<f64>>,
    /// `compare`: the `to` side's value must be at most `factor` × the `from` side's.
    pub factor: Option<S<f64>>,
    /// How often the gate measures (a duration, not 0; default: `gate_interval`;
    /// `metric`, `compare`: shorter than `settle`).
    pub interval: Option<S<String>>,
    /// Failed measurements in total that abort (default 1).
    pub failure_limit: Option<S<i64>>,
    /// Provider errors in a row that pause for a human (default 3).
    pub consecutive_error_limit: Option<S<i64>>,
    /// What a measurement without data counts as (default `pause`).
    #[schemars(transform = no_data_policies)]
    pub no_data: Option<S<String>>,
    /// `metric` with a percentile: fewer samples than this is no data.
    pub min_requests: Option<S<i64>>,
    /// `alarm_ok`: what an alarm in INSUFFICIENT_DATA counts as (default `wait`).
    #[schemars(transform = insufficient_data_choices)]
    pub insufficient_data: Option<S<String>>,
    /// `metric`, `compare`: how long past the soak to wait for datapoints (a duration from `1m` to `1h`; default `3m`).
    pub settle: Option<S<String>>,
    /// `alarm_ok`: how far the alarms' state lags the requests it judges (a duration; default `4m`); a step passes only on OK states read this long past its soak's end.
    pub lag: Option<S<String>>,
}

/// A CloudWatch alarm: a metric alarm (what the sandbox creates it on) or a
/// composite one (`rule`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Alarm")]
pub struct RawAlarm {
    /// The CloudWatch alarm's exact name.
    pub name: S<String>,
    /// The environment whose load balancer the alarm watches.
    pub environment: Option<S<String>>,
    /// The metric (default `HTTPCode_Target_5XX_Count`).
    #[schemars(transform = metric_names)]
    pub metric: Option<S<String>>,
    /// The statistic (default `Sum`).
    pub stat: Option<S<String>>,
    /// The alarm fires above this (default 0; `TargetResponseTime`: seconds, at most 60).
    pub threshold: Option<S<f64>>,
    /// `10s`, `30s` or whole minutes (default `1m`).
    pub period: Option<S<String>>,
    /// Periods evaluated (default 1).
    pub evaluation_periods: Option<S<i64>>,
    /// CloudWatch's TreatMissingData (default `missing`).
    #[schemars(transform = missing_data_treatments)]
    pub treat_missing_data: Option<S<String>>,
    /// A composite alarm's rule, naming alarms declared here: `ALARM("a") OR OK("b")`.
    pub rule: Option<S<String>>,
    /// Free text.
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Phase")]
pub struct RawPhase {
    /// Unique in the runbook; `cutover run` names items as `phase/item`.
    pub id: S<String>,
    /// Shown by `plan` and the cockpit.
    pub title: S<String>,
    /// The phase's checklist items.
    #[serde(default)]
    pub items: Vec<S<RawItem>>,
}

/// A checklist item; like gates, flat, validated by `kind`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Item")]
pub struct RawItem {
    /// Unique in its phase.
    pub id: S<String>,
    /// Shown by `plan` and the cockpit.
    pub title: S<String>,
    /// `manual` (a person ticks it), `check` or `action`.
    #[schemars(transform = item_kinds)]
    pub kind: S<String>,
    /// A `check` item's check.
    #[schemars(transform = check_kinds)]
    pub check: Option<S<String>>,
    /// An `action` item's action.
    #[schemars(transform = action_kinds)]
    pub action: Option<S<String>>,
    /// The environment the check or action works on.
    pub environment: Option<S<String>>,
    /// `alarm_ok` check: an alarm declared under `[[alarms]]`.
    pub alarm: Option<S<String>>,
    /// `shift_weights`: percent on the rollout's `to` side, 0–100.
    pub to: Option<S<i64>>,
    /// `stickiness`, `set_stickiness`: a duration, 1s–7d.
    pub duration: Option<S<String>>,
    /// `key_counts_match`, `copy_redis`: the source Redis endpoint's name.
    pub from_redis: Option<S<String>>,
    /// `key_counts_match`, `copy_redis`: the target Redis endpoint's name.
    pub to_redis: Option<S<String>>,
    /// `copy_redis`: only keys matching this glob.
    #[serde(rename = "match")]
    pub pattern: Option<S<String>>,
    /// `key_counts_match`: keys the counts may differ by (default 0).
    pub tolerance: Option<S<i64>>,
    /// `create_image`: take the image without rebooting the instance (default false: AWS reboots for a consistent file system).
    pub no_reboot: Option<S<bool>>,
    /// `snapshot_redis`: the Redis endpoint (one with `elasticache`) to snapshot; `redis_hit_rate`: the endpoint measured.
    pub redis: Option<S<String>>,
    /// `redis_hit_rate`: the least hit rate, in percent (above 1, at most 100), over the interval between two readings.
    pub min_hit_rate: Option<S<f64>>,
    /// `redis_hit_rate`: the fewest lookups a rate is judged on (default 100); fewer is no data.
    pub min_lookups: Option<S<i64>>,
    /// `delete_security_groups`: the groups (names in the environment's VPC, or ids) to delete.
    pub security_groups: Option<S<Vec<S<String>>>>,
    /// Manual and action items: the action that undoes this one.
    pub rollback: Option<S<RawRollback>>,
    /// Free text shown with the item.
    pub note: Option<String>,
    /// `status` fails when this check fails (default true).
    pub blocking: Option<bool>,
    /// Action items: refused until `wait` has passed since the item `after` finished.
    pub not_before: Option<S<RawNotBefore>>,
}

/// A time gate: `{ after = "decommission/stop-old", wait = "48h" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NotBefore")]
pub struct RawNotBefore {
    /// The item (`phase/item`, a manual or action item) whose finish starts the wait.
    pub after: S<String>,
    /// How long after it finished this item may run (`48h`, `30m`).
    pub wait: S<String>,
}

/// An item's rollback: an `action` and its keys.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rollback")]
pub struct RawRollback {
    /// The action that undoes the item.
    #[schemars(transform = action_kinds)]
    pub action: S<String>,
    /// The environment the action works on.
    pub environment: Option<S<String>>,
    /// An alarm declared under `[[alarms]]`.
    pub alarm: Option<S<String>>,
    /// `shift_weights`: percent on the rollout's `to` side, 0–100.
    pub to: Option<S<i64>>,
    /// `set_stickiness`: a duration, 1s–7d.
    pub duration: Option<S<String>>,
    /// `copy_redis`: the source Redis endpoint's name.
    pub from_redis: Option<S<String>>,
    /// `copy_redis`: the target Redis endpoint's name.
    pub to_redis: Option<S<String>>,
    /// `copy_redis`: only keys matching this glob.
    #[serde(rename = "match")]
    pub pattern: Option<S<String>>,
    /// Keys the counts may differ by.
    pub tolerance: Option<S<i64>>,
    /// `create_image`: without rebooting the instance.
    pub no_reboot: Option<S<bool>>,
    /// `snapshot_redis`: the Redis endpoint to snapshot.
    pub redis: Option<S<String>>,
    /// The least hit rate, in percent.
    pub min_hit_rate: Option<S<f64>>,
    /// The fewest lookups a hit rate is judged on.
    pub min_lookups: Option<S<i64>>,
    /// `delete_security_groups`: the groups to delete.
    pub security_groups: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sandbox")]
pub struct RawSandbox {
    /// Keys seeded into the `from` side's Redis (default 200).
    pub seed_keys: Option<S<i64>>,
    /// Environment → AZ letters its ALB enables (default `["a", "b"]`).
    #[serde(default)]
    pub load_balancer_zones: BTreeMap<S<String>, Vec<S<String>>>,
    /// Security groups the sandbox creates.
    #[serde(default)]
    pub security_groups: Vec<S<RawSandboxGroup>>,
    /// Instances the sandbox creates (and serves `/health` for).
    #[serde(default)]
    pub instances: Vec<S<RawSandboxInstance>>,
    /// Environments whose weighted record is an alias to their load balancer.
    pub alias_records: Option<S<Vec<S<String>>>>,
    /// Redis endpoints the sandbox runs as a Redis Cluster: endpoint name →
    /// `{ shards, replicas }` (a `redis+cluster://` endpoint is one by itself).
    #[serde(default)]
    pub redis_clusters: BTreeMap<S<String>, S<RawSandboxCluster>>,
    /// Redis endpoints the sandbox runs as a Sentinel group (a master, one
    /// replica and the sentinels watching it, the master named as the
    /// endpoint): endpoint name → `{ sentinels, quorum }` (a
    /// `redis+sentinel://` endpoint is one by itself).
    #[serde(default)]
    pub redis_sentinels: BTreeMap<S<String>, S<RawSandboxSentinels>>,
}

/// A Sentinel group the sandbox starts for an endpoint.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SandboxRedisSentinels")]
pub struct RawSandboxSentinels {
    /// Sentinels, 1 to 5 (default 3).
    pub sentinels: Option<S<i64>>,
    /// Sentinels that must agree the master is down, 1 to `sentinels`
    /// (default: a majority of them).
    pub quorum: Option<S<i64>>,
}

/// A Redis Cluster the sandbox starts for an endpoint.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SandboxRedisCluster")]
pub struct RawSandboxCluster {
    /// Primaries, 3 to 8 (default 3).
    pub shards: Option<S<i64>>,
    /// Replicas per primary, 0 or 1 (default 0).
    pub replicas: Option<S<i64>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SandboxSecurityGroup")]
pub struct RawSandboxGroup {
    /// The group's name.
    pub name: S<String>,
    /// Inbound rules: `{ port, from }`.
    #[serde(default)]
    pub ingress: Vec<S<RawIngress>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SandboxIngress")]
pub struct RawIngress {
    /// The port opened.
    pub port: S<i64>,
    /// A sandbox security group's name or a CIDR.
    pub from: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SandboxInstance")]
pub struct RawSandboxInstance {
    /// The instance's `Name` tag.
    pub name: S<String>,
    /// The environment it belongs to.
    pub environment: S<String>,
    /// The AZ letter (`a`, `b`, …).
    pub zone: S<String>,
    /// Sandbox security groups it is in.
    pub security_groups: Vec<S<String>>,
    /// The Redis endpoint it uses (default: the environment's first used endpoint).
    pub redis: Option<S<String>>,
}

// The schema lists the names validation accepts, from the same constants, so
// that an editor offers them; validation still explains a wrong one.
fn one_of(schema: &mut Schema, names: &[&str]) {
    schema.insert("enum".into(), names.into());
}
fn gate_kinds(schema: &mut Schema) {
    one_of(schema, &super::kinds::GATES);
}
fn item_kinds(schema: &mut Schema) {
    one_of(schema, &super::kinds::ITEM_KINDS);
}
fn check_kinds(schema: &mut Schema) {
    one_of(schema, &super::kinds::CHECKS);
}
fn action_kinds(schema: &mut Schema) {
    one_of(schema, &super::kinds::ACTIONS);
}
fn metric_names(schema: &mut Schema) {
    let names: Vec<&str> = super::model::Metric::ALL.iter().map(|m| m.cloudwatch_name()).collect();
    one_of(schema, &names);
}
fn no_data_policies(schema: &mut Schema) {
    one_of(schema, &super::kinds::NO_DATA_POLICIES);
}
fn insufficient_data_choices(schema: &mut Schema) {
    one_of(schema, &super::kinds::INSUFFICIENT_DATA_CHOICES);
}
fn missing_data_treatments(schema: &mut Schema) {
    one_of(schema, &super::kinds::TREATMENTS);
}

/// The parameter fields that items and rollbacks share, borrowed.
pub struct Params<'a> {
    pub environment: Option<&'a S<String>>,
    pub alarm: Option<&'a S<String>>,
    pub to: Option<&'a S<i64>>,
    pub duration: Option<&'a S<String>>,
    pub from_redis: Option<&'a S<String>>,
    pub to_redis: Option<&'a S<String>>,
    pub pattern: Option<&'a S<String>>,
    pub tolerance: Option<&'a S<i64>>,
    pub no_reboot: Option<&'a S<bool>>,
    pub redis: Option<&'a S<String>>,
    pub min_hit_rate: Option<&'a S<f64>>,
    pub min_lookups: Option<&'a S<i64>>,
    pub security_groups: Option<&'a S<Vec<S<String>>>>,
}

macro_rules! params_of {
    ($t:ty) => {
        impl $t {
            pub fn params(&self) -> Params<'_> {
                Params {
                    environment: self.environment.as_ref(),
                    alarm: self.alarm.as_ref(),
                    to: self.to.as_ref(),
                    duration: self.duration.as_ref(),
                    from_redis: self.from_redis.as_ref(),
                    to_redis: self.to_redis.as_ref(),
                    pattern: self.pattern.as_ref(),
                    tolerance: self.tolerance.as_ref(),
                    no_reboot: self.no_reboot.as_ref(),
                    redis: self.redis.as_ref(),
                    min_hit_rate: self.min_hit_rate.as_ref(),
                    min_lookups: self.min_lookups.as_ref(),
                    security_groups: self.security_groups.as_ref(),
                }
            }
        }
    };
}
params_of!(RawItem);
params_of!(RawRollback);
