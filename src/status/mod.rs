//! One snapshot of everything the cockpit shows, gathered from AWS, Redis and
//! the instances' health URLs. Each section carries its own error so one
//! failing source never hides the others.

pub mod probe;
pub mod text;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::analysis::reachability::{GroupNames, SgPath, Source, sg_path_named};
use crate::analysis::weights::shares;
use crate::aws::ec2::Instance;
use crate::aws::elb::{LoadBalancer, TargetGroup};
use crate::aws::{AwsError, Clients};
use crate::runbook::Runbook;
use probe::ProbePolicy;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub runbook: String,
    pub region: String,
    pub identity: Result<Identity, AwsError>,
    pub traffic: Result<Vec<SideWeight>, AwsError>,
    pub environments: Vec<EnvironmentView>,
    pub redis: Vec<RedisView>,
    pub alarms: Result<Vec<AlarmView>, AwsError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideWeight {
    pub environment: String,
    pub set_identifier: String,
    /// None when the record does not exist.
    pub weight: Option<u8>,
    pub share_percent: f64,
    pub ttl: Option<u32>,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub name: String,
    pub label: String,
    pub load_balancer: Option<Result<LoadBalancer, AwsError>>,
    pub target_groups: Result<Vec<TargetGroup>, AwsError>,
    pub instances: Result<Vec<InstanceView>, AwsError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    pub health: HealthView,
    /// Per Redis endpoint the environment uses: the security-group path.
    pub sg_paths: BTreeMap<String, SgPath>,
    /// AZ not enabled on the environment's load balancer.
    pub zone_not_enabled: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HealthView {
    NotProbed {
        reason: String,
    },
    Answered {
        url: String,
        status: u16,
        latency_ms: f64,
        redis_ok: Option<bool>,
        redis_error: Option<String>,
        body: String,
    },
    Failed {
        url: String,
        error: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisView {
    pub name: String,
    pub environment: String,
    pub result: Result<RedisInfo, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisInfo {
    pub ping_ms: f64,
    pub version: String,
    pub role: String,
    pub used_memory: u64,
    pub keys: u64,
    pub expiring_keys: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlarmView {
    pub name: String,
    /// OK, ALARM, INSUFFICIENT_DATA, or MISSING when it does not exist.
    pub state: String,
    pub reason: String,
}

pub struct Collector {
    pub clients: Clients,
    pub http: reqwest::Client,
    pub policy: ProbePolicy,
    /// Variables that win over the process environment (the sandbox's Redis URLs).
    pub vars: BTreeMap<String, String>,
}

impl Collector {
    pub fn new(clients: Clients, policy: ProbePolicy) -> Self {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().expect("reqwest client");
        Self { clients, http, policy, vars: BTreeMap::new() }
    }

    pub fn with_vars(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.vars.extend(vars);
        self
    }

    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned().or_else(|| std::env::var(name).ok()).filter(|v| !v.is_empty())
    }

    pub async fn collect(&self, rb: &Runbook) -> Snapshot {
        let (identity, traffic, environments, redis, alarms) = tokio::join!(
            self.identity(),
            self.traffic(rb),
            self.environments(rb),
            self.redis_views(rb),
            self.alarms(rb)
        );
        Snapshot {
            runbook: rb.name.clone(),
            region: self.clients.region.clone(),
            identity,
            traffic,
            environments,
            redis,
            alarms,
        }
    }

    async fn identity(&self) -> Result<Identity, AwsError> {
        let r = self
            .clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| crate::aws::sdk_error("GetCallerIdentity", e))?;
        Ok(Identity { account: r.account().unwrap_or_default().into(), arn: r.arn().unwrap_or_default().into() })
    }

    async fn traffic(&self, rb: &Runbook) -> Result<Vec<SideWeight>, AwsError> {
        let zone = crate::aws::route53::zone_id(&self.clients.route53, &rb.dns.zone).await?;
        let records =
            crate::aws::route53::weighted_records(&self.clients.route53, &zone, &rb.dns.record, &rb.dns.record_type)
                .await?;
        let found: Vec<(String, String, Option<&crate::aws::route53::WeightedRecord>)> = rb
            .dns
            .set_identifiers
            .iter()
            .map(|(env, id)| (env.clone(), id.clone(), records.iter().find(|r| &r.set_identifier == id)))
            .collect();
        let present: Vec<u8> = found.iter().filter_map(|(_, _, r)| r.map(|r| r.weight)).collect();
        let mut sh = shares(&present).into_iter();
        Ok(found
            .into_iter()
            .map(|(environment, set_identifier, r)| SideWeight {
                environment,
                set_identifier,
                weight: r.map(|r| r.weight),
                share_percent: if r.is_some() { sh.next().unwrap_or(0.0) * 100.0 } else { 0.0 },
                ttl: r.and_then(|r| r.ttl),
                values: r.map(|r| r.values.clone()).unwrap_or_default(),
            })
            .collect())
    }

    async fn environments(&self, rb: &Runbook) -> Vec<EnvironmentView> {
        let mut out = Vec::new();
        for env in rb.environments.values() {
            let lb = match &env.load_balancer {
                Some(name) => Some(crate::aws::elb::load_balancer(&self.clients.elb, name).await),
                None => None,
            };
            let tgs = crate::aws::elb::target_groups(&self.clients.elb, &env.target_groups).await;
            let instances = match crate::aws::ec2::describe_instances(&self.clients.ec2, &env.instances).await {
                Ok(list) => Ok(self.instance_views(rb, env, list, lb.as_ref().and_then(|l| l.as_ref().ok())).await),
                Err(e) => Err(e),
            };
            out.push(EnvironmentView {
                name: env.name.clone(),
                label: env.label.clone(),
                load_balancer: lb,
                target_groups: tgs,
                instances,
            });
        }
        out
    }

    async fn instance_views(
        &self,
        rb: &Runbook,
        env: &crate::runbook::Environment,
        list: Vec<Instance>,
        lb: Option<&LoadBalancer>,
    ) -> Vec<InstanceView> {
        let mut all_groups: Vec<String> = rb.redis_endpoints().flat_map(|(_, r)| r.security_groups.clone()).collect();
        all_groups.sort();
        all_groups.dedup();
        let groups = crate::aws::ec2::describe_security_groups(&self.clients.ec2, &all_groups).await;
        // Names of every group a message may mention: endpoint groups, their
        // rules' sources and the instances' own groups.
        let mut mentioned: Vec<String> = list.iter().flat_map(|i| i.security_groups.clone()).collect();
        if let Ok(gs) = &groups {
            mentioned.extend(gs.iter().flat_map(|g| g.ingress.iter().flat_map(|r| r.groups.clone())));
        }
        mentioned.sort();
        mentioned.dedup();
        let mut names: GroupNames = match crate::aws::ec2::describe_security_groups(&self.clients.ec2, &mentioned).await
        {
            Ok(gs) => gs.into_iter().map(|g| (g.id, g.name)).collect(),
            Err(_) => GroupNames::new(),
        };
        if let Ok(gs) = &groups {
            names.extend(gs.iter().map(|g| (g.id.clone(), g.name.clone())));
        }
        let probes = futures::future::join_all(list.iter().map(|i| self.probe(env, i))).await;
        list.into_iter()
            .zip(probes)
            .map(|(instance, health)| {
                let sg_paths = rb
                    .redis_endpoints()
                    .filter(|(_, r)| env.uses_redis.contains(&r.name))
                    .map(|(_, r)| {
                        let verdict = match &groups {
                            Ok(gs) => {
                                let mine: Vec<_> = gs.iter().filter(|g| r.security_groups.iter().any(|s| s == &g.id || s == &g.name)).cloned().collect();
                                let src = Source { instance_id: &instance.id, private_ip: instance.private_ip.as_deref(), security_groups: &instance.security_groups };
                                sg_path_named(&src, &mine, r.port, &names)
                            }
                            Err(e) => SgPath::Unknown { reason: e.to_string() },
                        };
                        (r.name.clone(), verdict)
                    })
                    .collect();
                let zone_not_enabled = lb.filter(|lb| !lb.zones.contains(&instance.availability_zone)).map(|lb| format!("AZ {} is not enabled on load balancer {} (enabled: {}); the target gets no traffic (Target.NotInUse)", instance.availability_zone, lb.name, lb.zones.join(", ")));
                InstanceView { instance, health, sg_paths, zone_not_enabled }
            })
            .collect()
    }

    async fn probe(&self, env: &crate::runbook::Environment, inst: &Instance) -> HealthView {
        let url = match probe::health_url(env, inst, self.policy) {
            Ok(u) => u,
            Err(reason) => return HealthView::NotProbed { reason },
        };
        let started = Instant::now();
        match self.http.get(&url).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                let body = resp.text().await.unwrap_or_default();
                let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
                let redis = json.as_ref().and_then(|j| j.get("redis"));
                HealthView::Answered {
                    url,
                    status,
                    latency_ms,
                    redis_ok: redis.and_then(|r| r.get("ok")).and_then(|v| v.as_bool()),
                    redis_error: redis.and_then(|r| r.get("error")).and_then(|v| v.as_str()).map(str::to_string),
                    body: body.chars().take(200).collect(),
                }
            }
            Err(e) => HealthView::Failed {
                url,
                error: if e.is_timeout() {
                    "timed out".into()
                } else if e.is_connect() {
                    "connection refused or unreachable".into()
                } else {
                    e.to_string()
                },
            },
        }
    }

    async fn redis_views(&self, rb: &Runbook) -> Vec<RedisView> {
        let eps: Vec<_> = rb.redis_endpoints().collect();
        futures::future::join_all(eps.into_iter().map(|(env, ep)| async move {
            let result = match redis_url(ep, |v| self.var(v)) {
                Ok(url) => redis_info(&url).await,
                Err(e) => Err(e),
            };
            RedisView { name: ep.name.clone(), environment: env.name.clone(), result }
        }))
        .await
    }

    async fn alarms(&self, rb: &Runbook) -> Result<Vec<AlarmView>, AwsError> {
        if rb.alarms.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = rb.alarms.iter().map(|a| a.name.clone()).collect();
        let resp = self
            .clients
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(names.clone()))
            .send()
            .await
            .map_err(|e| crate::aws::sdk_error("DescribeAlarms", e))?;
        Ok(names
            .into_iter()
            .map(|n| match resp.metric_alarms().iter().find(|a| a.alarm_name() == Some(n.as_str())) {
                Some(a) => AlarmView {
                    name: n,
                    state: a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    reason: a.state_reason().unwrap_or_default().to_string(),
                },
                None => AlarmView { name: n, state: "MISSING".into(), reason: "no such alarm in this region".into() },
            })
            .collect())
    }
}

/// The URL of a Redis endpoint: `url_env` when set, else `url`; the password
/// comes from `password_env`. `var` looks variables up.
pub fn redis_url(ep: &crate::runbook::RedisEndpoint, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut url = ep.url_env.as_ref().and_then(|v| var(v)).or_else(|| ep.url.clone()).ok_or_else(|| {
        format!("no URL: set {} or give url in the runbook", ep.url_env.as_deref().unwrap_or("url_env"))
    })?;
    if let Some(name) = &ep.password_env {
        let pw = var(name).ok_or_else(|| format!("password variable {name} is not set"))?;
        let mut u = reqwest::Url::parse(&url).map_err(|e| format!("bad Redis URL: {e}"))?;
        u.set_password(Some(&pw)).map_err(|_| "cannot set a password on this URL".to_string())?;
        url = u.to_string();
    }
    Ok(url)
}

fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':'))).map(str::trim)
}

/// PING latency, version, role, memory and key counts of one Redis.
pub async fn redis_info(url: &str) -> Result<RedisInfo, String> {
    let work = async {
        let client = redis::Client::open(url).map_err(|e| redact(&e.to_string()))?;
        let mut c = client.get_multiplexed_async_connection().await.map_err(|e| redact(&e.to_string()))?;
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(|e| e.to_string())?;
        let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
        let info: String = redis::cmd("INFO").query_async(&mut c).await.map_err(|e| e.to_string())?;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.map_err(|e| e.to_string())?;
        let db = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.path().trim_start_matches('/').parse::<u32>().ok())
            .unwrap_or(0);
        let expiring_keys = info_field(&info, &format!("db{db}"))
            .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("expires=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(RedisInfo {
            ping_ms,
            version: info_field(&info, "redis_version").unwrap_or("?").to_string(),
            role: info_field(&info, "role").unwrap_or("?").to_string(),
            used_memory: info_field(&info, "used_memory").and_then(|v| v.parse().ok()).unwrap_or(0),
            keys,
            expiring_keys,
        })
    };
    tokio::time::timeout(Duration::from_secs(2), work).await.unwrap_or_else(|_| Err("timed out after 2 s".into()))
}

/// Removes any password a message may echo back from a URL.
fn redact(s: &str) -> String {
    match s.find("://") {
        Some(i) => match s[i + 3..].find('@') {
            Some(at) if !s[i + 3..i + 3 + at].contains(' ') => format!("{}://***@{}", &s[..i], &s[i + 3 + at + 1..]),
            _ => s.to_string(),
        },
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_keyspace() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\nused_memory:1024\r\n# Keyspace\r\ndb0:keys=10,expires=4,avg_ttl=1\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "db0"), Some("keys=10,expires=4,avg_ttl=1"));
        assert_eq!(info_field(info, "nope"), None);
    }

    #[test]
    fn redaction_hides_userinfo() {
        assert_eq!(redact("redis://:s3cret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact("no url here"), "no url here");
    }
}
