//! The runbook as written: serde structs that keep the source span of every
//! value validation may complain about. `validate` turns this into `model`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunbook {
    pub runbook: S<RawHeader>,
    pub environments: S<BTreeMap<S<String>, S<RawEnvironment>>>,
    pub dns: S<RawDns>,
    pub rollout: S<RawRollout>,
    #[serde(default)]
    pub alarms: Vec<S<RawAlarm>>,
    #[serde(default)]
    pub phases: Vec<S<RawPhase>>,
    pub sandbox: Option<S<RawSandbox>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: S<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub region: Option<S<String>>,
    #[serde(default)]
    pub production: bool,
    pub account_id: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub label: Option<String>,
    pub load_balancer: Option<S<String>>,
    #[serde(default)]
    pub target_groups: Vec<S<String>>,
    pub instances: S<RawInstanceSelector>,
    #[serde(default)]
    pub redis: Vec<S<RawRedis>>,
    pub uses_redis: Option<Vec<S<String>>>,
    pub health_url_tag: Option<S<String>>,
    #[serde(default)]
    pub health_urls: BTreeMap<S<String>, S<String>>,
    pub health_url_template: Option<S<String>>,
    pub account_id: Option<S<String>>,
    pub region: Option<S<String>>,
    pub profile: Option<S<String>>,
    pub role_arn: Option<S<String>>,
    pub external_id: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstanceSelector {
    pub tags: Option<BTreeMap<String, String>>,
    pub ids: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub name: S<String>,
    pub url: Option<S<String>>,
    pub url_env: Option<S<String>>,
    pub password_env: Option<S<String>>,
    pub port: Option<S<i64>>,
    #[serde(default)]
    pub security_groups: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub zone: S<String>,
    pub record: S<String>,
    /// `"A"`, or a list of types read and changed together (`["A", "AAAA"]`).
    #[serde(rename = "type")]
    pub record_type: S<toml::Value>,
    pub ttl: S<i64>,
    pub set_identifiers: S<BTreeMap<S<String>, S<String>>>,
    pub initial_weights: Option<S<BTreeMap<S<String>, S<i64>>>>,
    pub account_id: Option<S<String>>,
    pub region: Option<S<String>>,
    pub profile: Option<S<String>>,
    pub role_arn: Option<S<String>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    pub from: S<String>,
    pub to: S<String>,
    pub steps: S<Vec<S<i64>>>,
    pub soak: S<String>,
    pub gate_interval: Option<S<String>>,
    #[serde(default)]
    pub gates: Vec<S<RawGate>>,
}

/// One gate. Flat on purpose: the `kind` decides which fields apply, and the
/// validator names any field that does not, with its location.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub kind: S<String>,
    pub environment: Option<S<String>>,
    pub alarms: Option<Vec<S<String>>>,
    pub min: Option<S<i64>>,
    pub metric: Option<S<String>>,
    pub stat: Option<S<String>>,
    pub max: Option<S<f64>>,
    pub factor: Option<S<f64>>,
    pub interval: Option<S<String>>,
    pub failure_limit: Option<S<i64>>,
    pub consecutive_error_limit: Option<S<i64>>,
    pub no_data: Option<S<String>>,
    pub min_requests: Option<S<i64>>,
    pub insufficient_data: Option<S<String>>,
    pub settle: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlarm {
    pub name: S<String>,
    pub environment: Option<S<String>>,
    pub metric: Option<S<String>>,
    pub stat: Option<S<String>>,
    pub threshold: Option<f64>,
    pub period: Option<S<String>>,
    pub evaluation_periods: Option<S<i64>>,
    pub treat_missing_data: Option<S<String>>,
    pub rule: Option<S<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPhase {
    pub id: S<String>,
    pub title: S<String>,
    #[serde(default)]
    pub items: Vec<S<RawItem>>,
}

/// A checklist item; like gates, flat, validated by `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawItem {
    pub id: S<String>,
    pub title: S<String>,
    pub kind: S<String>,
    pub check: Option<S<String>>,
    pub action: Option<S<String>>,
    pub environment: Option<S<String>>,
    pub alarm: Option<S<String>>,
    pub to: Option<S<i64>>,
    pub duration: Option<S<String>>,
    pub from_redis: Option<S<String>>,
    pub to_redis: Option<S<String>>,
    #[serde(rename = "match")]
    pub pattern: Option<S<String>>,
    pub tolerance: Option<S<i64>>,
    pub rollback: Option<S<RawRollback>>,
    pub note: Option<String>,
    pub blocking: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollback {
    pub action: S<String>,
    pub environment: Option<S<String>>,
    pub alarm: Option<S<String>>,
    pub to: Option<S<i64>>,
    pub duration: Option<S<String>>,
    pub from_redis: Option<S<String>>,
    pub to_redis: Option<S<String>>,
    #[serde(rename = "match")]
    pub pattern: Option<S<String>>,
    pub tolerance: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    pub seed_keys: Option<S<i64>>,
    #[serde(default)]
    pub load_balancer_zones: BTreeMap<S<String>, Vec<S<String>>>,
    #[serde(default)]
    pub security_groups: Vec<S<RawSandboxGroup>>,
    #[serde(default)]
    pub instances: Vec<S<RawSandboxInstance>>,
    /// Environments whose weighted record is an alias to their load balancer.
    pub alias_records: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandboxGroup {
    pub name: S<String>,
    #[serde(default)]
    pub ingress: Vec<S<RawIngress>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngress {
    pub port: S<i64>,
    pub from: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandboxInstance {
    pub name: S<String>,
    pub environment: S<String>,
    pub zone: S<String>,
    pub security_groups: Vec<S<String>>,
    pub redis: Option<S<String>>,
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
                }
            }
        }
    };
}
params_of!(RawItem);
params_of!(RawRollback);
