//! Traffic generator: reads the live Route53 weights, sends requests to each
//! side in proportion (split by the sandbox's own Route53 rule, which skips a
//! record whose health check fails or whose alias's load balancer has a
//! routed target group with no healthy target), through its
//! load balancer as an ALB routes them (`InService`: the target group's
//! healthy targets, failing open to its unhealthy ones, a 503 of its own
//! with none), and publishes to moto the metrics an ALB would, under the
//! dimension sets AWS uses. A side with no load balancer gets its requests
//! at its instances, those passing /health first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk::cloudwatch::types::builders::MetricDatumBuilder;
use aws_sdk::cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use tokio::sync::watch;

use super::provision::{ProvisionedInstance, World};
use super::rules::{WeightedRecord, alb_alias_healthy, health_check_healthy, route53_shares};
use crate::aws::SideClients;
use crate::runbook::{Metric, Runbook};

#[derive(Debug, Clone)]
pub struct TrafficConfig {
    pub requests_per_tick: u32,
    pub tick: Duration,
    pub health_every: Duration,
    pub publish_every: Duration,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            requests_per_tick: 10,
            tick: Duration::from_secs(1),
            health_every: Duration::from_secs(3),
            publish_every: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Window {
    requests: u64,
    target_5xx: u64,
    /// The load balancer's own 5xx (no target answered), per availability zone.
    elb_5xx: BTreeMap<String, u64>,
    /// Each request's response time, in seconds.
    latencies: Vec<f64>,
    healthy_samples: Vec<f64>,
    unhealthy_samples: Vec<f64>,
}

/// An environment's target group as its load balancer routes to it, by the
/// sandbox's own reading of AWS's rules (ELB documentation, "Health checks
/// for your target groups"): requests go only to `healthy` targets; with
/// none, to every `unhealthy` one (fail open); never to an `unused`,
/// `initial` or `draining` one (a zone the load balancer does not enable, a
/// stopped instance, a deregistered target); with no target to send to, the
/// load balancer answers 503 itself.
#[derive(Debug, Clone, Default, PartialEq)]
struct InService {
    /// The instance ids requests go to, in order.
    targets: Vec<String>,
    healthy: usize,
    unhealthy: usize,
    /// The load balancer's zones, where its own 503s are counted.
    zones: Vec<String>,
}

impl InService {
    /// From each registered target's id and state, as DescribeTargetHealth gives them.
    fn of(states: &[(String, String)], zones: Vec<String>) -> Self {
        let ids = |state: &str| states.iter().filter(|(_, s)| s == state).map(|(id, _)| id.clone()).collect::<Vec<_>>();
        let (healthy, unhealthy) = (ids("healthy"), ids("unhealthy"));
        let (h, u) = (healthy.len(), unhealthy.len());
        let targets = if healthy.is_empty() { unhealthy } else { healthy };
        Self { targets, healthy: h, unhealthy: u, zones }
    }
}

/// The registered targets of `group` with their states, and the zones of
/// its load balancer `lb`, asked as any client would: through the proxy,
/// which answers target health as an ALB (moto calls every running target
/// healthy).
async fn in_service(clients: &crate::aws::Clients, group: &str, lb: &str) -> Result<InService, String> {
    let health = clients
        .elb
        .describe_target_health()
        .target_group_arn(group)
        .send()
        .await
        .map_err(|e| elb_error("DescribeTargetHealth", &e))?;
    let states: Vec<(String, String)> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let id = d.target()?.id()?.to_string();
            let state = d.target_health()?.state()?.as_str().to_string();
            Some((id, state))
        })
        .collect();
    let found = clients
        .elb
        .describe_load_balancers()
        .load_balancer_arns(lb)
        .send()
        .await
        .map_err(|e| elb_error("DescribeLoadBalancers", &e))?;
    let zones = found
        .load_balancers()
        .iter()
        .flat_map(|l| l.availability_zones())
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    Ok(InService::of(&states, zones))
}

/// The target group an environment's load balancer sends its requests to
/// (its first, which carries its metrics) and that load balancer's ARN.
fn balanced<'w>(world: &'w World, env: &str) -> Option<(&'w str, &'w str)> {
    let tg = world.target_groups.get(env)?.first()?;
    Some((tg.arn.as_str(), tg.load_balancer_arn.as_deref()?))
}

/// Splits `n` requests by share with largest-remainder rounding.
pub fn split(n: u32, shares: &[f64]) -> Vec<u32> {
    let raw: Vec<f64> = shares.iter().map(|s| s * f64::from(n)).collect();
    let mut out: Vec<u32> = raw.iter().map(|r| r.floor() as u32).collect();
    let mut left = n.saturating_sub(out.iter().sum());
    let mut order: Vec<usize> = (0..raw.len()).collect();
    order.sort_by(|&a, &b| (raw[b] - raw[b].floor()).total_cmp(&(raw[a] - raw[a].floor())));
    for i in order {
        if left == 0 {
            break;
        }
        if shares[i] > 0.0 {
            out[i] += 1;
            left -= 1;
        }
    }
    out
}

pub async fn run(rb: Runbook, world: World, aws: SideClients, cfg: TrafficConfig, mut shutdown: watch::Receiver<bool>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().expect("reqwest client");
    // Route53's checkers take a redirect's status as it is, never following it.
    let checker = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client");
    let sides: Vec<(String, String)> = rb.dns.set_identifiers.iter().map(|(e, s)| (e.clone(), s.clone())).collect();
    // Instances of sides without a load balancer: whether each passes /health.
    let mut healthy: BTreeMap<String, bool> = BTreeMap::new();
    // Sides with a load balancer: where it sends requests, as last read.
    let mut routes: BTreeMap<String, InService> = BTreeMap::new();
    let mut windows: BTreeMap<String, Window> = BTreeMap::new();
    let mut rr: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_health = Instant::now() - cfg.health_every;
    let mut last_publish = Instant::now();
    let mut last_shares: Vec<f64> = Vec::new();
    // The weighted records as last read, and Route53's view of their health:
    // by health check id, and by the load balancer an alias names.
    let mut records: Option<BTreeMap<String, LiveRecord>> = None;
    let mut checks: BTreeMap<String, HeldCheck> = BTreeMap::new();
    let mut aliases: BTreeMap<String, Held> = BTreeMap::new();
    // A load balancer's DNS name (`lb_dns_key`) → its environment and ARN.
    let mut lb_names: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut tick = tokio::time::interval(cfg.tick);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match live_records(&aws.dns().route53, &world.zone_id, &rb.dns.record, &rb.dns.record_type).await {
            Ok(r) => records = Some(r),
            Err(e) => tracing::warn!(error = %e, "traffic: cannot read weights; keeping the last split"),
        }
        if last_health.elapsed() >= cfg.health_every {
            last_health = Instant::now();
            for (env, _) in &sides {
                let w = windows.entry(env.clone()).or_default();
                if let Some((group, lb)) = balanced(&world, env) {
                    match in_service(aws.environment(env), group, lb).await {
                        Ok(s) => {
                            w.healthy_samples.push(s.healthy as f64);
                            w.unhealthy_samples.push(s.unhealthy as f64);
                            routes.insert(env.clone(), s);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, env, "traffic: cannot read target health; keeping the last")
                        }
                    }
                    continue;
                }
                for inst in world.instances.iter().filter(|i| &i.environment == env) {
                    let ok = http.get(&inst.health_url).send().await.map(|r| r.status().is_success()).unwrap_or(false);
                    healthy.insert(inst.id.clone(), ok);
                }
            }
            let live = records.as_ref().map(|r| r.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
            if lb_names.is_empty() && live.iter().any(|r| r.evaluated_alias.is_some()) {
                lb_names = load_balancer_names(&world, &aws).await;
            }
            // Each check and each load balancer once a round, however many
            // records share it: one reading a round is what the threshold counts.
            let ids: std::collections::BTreeSet<&String> =
                live.iter().filter_map(|r| r.health_check.as_ref()).collect();
            for id in ids {
                match health_check_reading(&aws.dns().route53, &checker, id).await {
                    Ok(r) => checks.entry(id.clone()).or_default().read(&r),
                    Err(e) => tracing::warn!(error = %e, id, "traffic: cannot read a health check; keeping the last"),
                }
            }
            // An alias to no load balancer of the sandbox's: AWS would not
            // have taken it; counted healthy.
            let keys: std::collections::BTreeSet<String> =
                live.iter().filter_map(|r| r.evaluated_alias.as_deref()).map(lb_dns_key).collect();
            for key in keys {
                let Some((env, arn)) = lb_names.get(&key) else { continue };
                match alias_target_healthy(aws.environment(env), arn).await {
                    Ok(ok) => aliases.entry(key).or_default().read(ok, ALIAS_THRESHOLD),
                    Err(e) => {
                        tracing::warn!(error = %e, env, "traffic: cannot read an alias's target health; keeping the last")
                    }
                }
            }
        }
        if let Some(records) = &records {
            let healthy = |r: &LiveRecord| {
                let check = r.health_check.as_ref().and_then(|id| checks.get(id)).is_none_or(HeldCheck::healthy);
                let alias =
                    r.evaluated_alias.as_deref().and_then(|d| aliases.get(&lb_dns_key(d))).is_none_or(|h| h.healthy);
                check && alias
            };
            let weighted = |r: Option<&LiveRecord>| match r {
                Some(r) => WeightedRecord { weight: Some(r.weight), healthy: healthy(r) },
                None => WeightedRecord { weight: None, healthy: false },
            };
            // Records the runbook does not list take their share as on
            // AWS: the requests split to them reach neither side.
            let unlisted = records.iter().filter(|(id, _)| !sides.iter().any(|(_, s)| s == *id));
            let weighted: Vec<WeightedRecord> = sides
                .iter()
                .map(|(_, id)| weighted(records.get(id)))
                .chain(unlisted.map(|(_, r)| weighted(Some(r))))
                .collect();
            last_shares = route53_shares(&weighted);
        }
        let counts = split(cfg.requests_per_tick, &last_shares);
        for ((env, _), count) in sides.iter().zip(counts) {
            if count == 0 {
                continue;
            }
            let pool: Vec<&ProvisionedInstance> = match routes.get(env) {
                Some(s) => s.targets.iter().filter_map(|id| world.instances.iter().find(|i| &i.id == id)).collect(),
                None if balanced(&world, env).is_some() => continue, // not read yet
                None => {
                    let members: Vec<_> = world.instances.iter().filter(|i| &i.environment == env).collect();
                    let up: Vec<_> =
                        members.iter().filter(|i| healthy.get(&i.id).copied().unwrap_or(false)).copied().collect();
                    if up.is_empty() { members } else { up }
                }
            };
            for _ in 0..count {
                let n = rr.entry(env.clone()).or_default();
                *n += 1;
                let Some(inst) = pool.get(*n % pool.len().max(1)).copied() else {
                    // No target in service: the load balancer answers 503 from
                    // one of its zones; no RequestCount, which counts only
                    // requests a target was chosen for.
                    let zones = routes.get(env).map(|s| s.zones.as_slice()).unwrap_or_default();
                    if let Some(zone) = zones.get(*n % zones.len().max(1)) {
                        *windows.entry(env.clone()).or_default().elb_5xx.entry(zone.clone()).or_default() += 1;
                    }
                    continue;
                };
                let url = format!("http://127.0.0.1:{}/", inst.app_port);
                let started = Instant::now();
                let result = http.get(&url).send().await;
                let secs = started.elapsed().as_secs_f64();
                let w = windows.entry(env.clone()).or_default();
                w.requests += 1;
                match result {
                    Ok(r) if r.status().is_server_error() => w.target_5xx += 1,
                    Ok(_) => {}
                    // Nothing answered: the load balancer itself returns 502/503.
                    Err(_) => *w.elb_5xx.entry(inst.zone.clone()).or_default() += 1,
                }
                w.latencies.push(secs);
            }
        }
        if last_publish.elapsed() >= cfg.publish_every {
            last_publish = Instant::now();
            for (env, w) in std::mem::take(&mut windows) {
                publish(&aws, &world, &env, &w).await;
            }
        }
    }
}

/// A weighted record as the sandbox reads it from Route53.
#[derive(Debug, Clone, PartialEq)]
struct LiveRecord {
    weight: u8,
    health_check: Option<String>,
    /// An alias's target DNS name, when it evaluates target health.
    evaluated_alias: Option<String>,
}

/// Each weighted record of `name` and `record_type` in the zone, by set
/// identifier: the whole zone listed page by page (the sandbox's zones are
/// small), not cutover's reader, which starts at the record and stops past
/// it, so a mistake there shows as a disagreement.
async fn live_records(
    route53: &aws_sdk::route53::Client,
    zone_id: &str,
    name: &str,
    record_type: &str,
) -> Result<BTreeMap<String, LiveRecord>, String> {
    let wanted = |n: &str| n.trim_end_matches('.').eq_ignore_ascii_case(name.trim_end_matches('.'));
    let mut out = BTreeMap::new();
    let mut next: Option<(String, aws_sdk::route53::types::RrType, Option<String>)> = None;
    loop {
        let mut ask = route53.list_resource_record_sets().hosted_zone_id(zone_id);
        if let Some((n, t, id)) = next.take() {
            ask = ask.start_record_name(n).start_record_type(t).set_start_record_identifier(id);
        }
        let page = ask.send().await.map_err(|e| format!("ListResourceRecordSets: {e}"))?;
        for r in page.resource_record_sets() {
            if wanted(r.name())
                && r.r#type().as_str() == record_type
                && let (Some(id), Some(w)) = (r.set_identifier(), r.weight())
            {
                let weight = u8::try_from(w).map_err(|_| format!("weight {w} of {id}"))?;
                let evaluated_alias =
                    r.alias_target().filter(|a| a.evaluate_target_health()).map(|a| a.dns_name().to_string());
                let health_check = r.health_check_id().map(str::to_string);
                out.insert(id.to_string(), LiveRecord { weight, health_check, evaluated_alias });
            }
        }
        if !page.is_truncated() {
            return Ok(out);
        }
        let (Some(n), Some(t)) = (page.next_record_name(), page.next_record_type()) else {
            return Err("ListResourceRecordSets: truncated with no next record".to_string());
        };
        next = Some((n.to_string(), t.clone(), page.next_record_identifier().map(str::to_string)));
    }
}

/// How many readings in a row it takes Route53 to change its mind about an
/// alias's target health: undocumented; a health check's own default
/// `FailureThreshold`, so a side that stops serving answers errors for a few
/// readings before its traffic goes elsewhere, as on AWS.
const ALIAS_THRESHOLD: u32 = 3;

/// A health reading as Route53 holds it: it changes only after `threshold`
/// readings in a row say otherwise (a health check's `FailureThreshold`).
/// New, it is healthy (Route53 counts a new check healthy until it has
/// failed enough times).
#[derive(Debug, Clone, Copy)]
struct Held {
    healthy: bool,
    against: u32,
}

impl Default for Held {
    fn default() -> Self {
        Self { healthy: true, against: 0 }
    }
}

impl Held {
    fn read(&mut self, healthy: bool, threshold: u32) {
        if healthy == self.healthy {
            self.against = 0;
            return;
        }
        self.against += 1;
        if self.against >= threshold.max(1) {
            *self = Self { healthy, against: 0 };
        }
    }
}

/// A Route53 health check as its checkers find it now, and how Route53
/// reads that: its config from GetHealthCheck (moto), one real check by the
/// sandbox's own checker (as the proxy answers GetHealthCheckStatus; other
/// types pass, as moto says them to).
struct CheckReading {
    passes: bool,
    failure_threshold: u32,
    disabled: bool,
    inverted: bool,
}

async fn health_check_reading(
    route53: &aws_sdk::route53::Client,
    checker: &reqwest::Client,
    id: &str,
) -> Result<CheckReading, String> {
    let check =
        route53.get_health_check().health_check_id(id).send().await.map_err(|e| format!("GetHealthCheck: {e}"))?;
    let config = check.health_check().and_then(|c| c.health_check_config()).ok_or("GetHealthCheck: no config")?;
    let kind = config.r#type().as_str();
    let passes = if kind.starts_with("HTTP") || kind == "TCP" {
        let port = config.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(80);
        let (ip, path) = (config.ip_address().unwrap_or_default(), config.resource_path().unwrap_or("/"));
        super::aws_proxy::checker_report(checker, kind, ip, port, path, config.search_string())
            .await
            .starts_with("Success")
    } else {
        true
    };
    Ok(CheckReading {
        passes,
        failure_threshold: config.failure_threshold().and_then(|t| u32::try_from(t).ok()).unwrap_or(3),
        disabled: config.disabled().unwrap_or(false),
        inverted: config.inverted().unwrap_or(false),
    })
}

/// A health check as Route53 holds it: its checkers' result held over its
/// `FailureThreshold`; `Disabled` and `Inverted` as last read, which take
/// effect at once.
#[derive(Debug, Default)]
struct HeldCheck {
    passes: Held,
    disabled: bool,
    inverted: bool,
}

impl HeldCheck {
    fn read(&mut self, r: &CheckReading) {
        self.passes.read(r.passes, r.failure_threshold);
        (self.disabled, self.inverted) = (r.disabled, r.inverted);
    }

    fn healthy(&self) -> bool {
        health_check_healthy(self.disabled, self.inverted, usize::from(self.passes.healthy), 1)
    }
}

/// Whether a load balancer, as the target of an alias evaluating target
/// health, is healthy: each target group its listeners (default actions and
/// rules) forward to, read through the proxy, which answers target health
/// as an ALB would.
async fn alias_target_healthy(clients: &crate::aws::Clients, lb: &str) -> Result<bool, String> {
    use aws_sdk::elasticloadbalancingv2::types::Action;
    let elb = &clients.elb;
    let forwarded = |a: &Action| -> Vec<String> {
        let single = a.target_group_arn().map(str::to_string);
        let weighted = a.forward_config().map(|f| f.target_groups()).unwrap_or_default();
        single.into_iter().chain(weighted.iter().filter_map(|t| t.target_group_arn().map(str::to_string))).collect()
    };
    let listeners =
        elb.describe_listeners().load_balancer_arn(lb).send().await.map_err(|e| elb_error("DescribeListeners", &e))?;
    let mut groups = std::collections::BTreeSet::new();
    for l in listeners.listeners() {
        groups.extend(l.default_actions().iter().flat_map(forwarded));
        let Some(arn) = l.listener_arn() else { continue };
        let rules = elb.describe_rules().listener_arn(arn).send().await.map_err(|e| elb_error("DescribeRules", &e))?;
        groups.extend(rules.rules().iter().flat_map(|r| r.actions()).flat_map(forwarded));
    }
    let mut counts = Vec::new();
    for g in groups {
        let h = elb
            .describe_target_health()
            .target_group_arn(&g)
            .send()
            .await
            .map_err(|e| elb_error("DescribeTargetHealth", &e))?;
        let states: Vec<&str> = h
            .target_health_descriptions()
            .iter()
            .filter_map(|d| d.target_health()?.state())
            .map(|s| s.as_str())
            .collect();
        counts.push((states.len(), states.iter().filter(|s| **s == "healthy").count()));
    }
    Ok(alb_alias_healthy(&counts))
}

fn elb_error<E: std::error::Error + 'static>(what: &str, e: &E) -> String {
    format!("{what}: {}", aws_sdk::elasticloadbalancingv2::error::DisplayErrorContext(e))
}

/// Each of the sandbox's load balancers by DNS name (`lb_dns_key`): its
/// environment and ARN. Empty when they cannot be read (tried again later).
async fn load_balancer_names(world: &World, aws: &SideClients) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for (env, arn) in &world.load_balancers {
        match aws.environment(env).elb.describe_load_balancers().load_balancer_arns(arn).send().await {
            Ok(found) => out.extend(
                found
                    .load_balancers()
                    .iter()
                    .filter_map(|l| Some((lb_dns_key(l.dns_name()?), (env.clone(), arn.clone())))),
            ),
            Err(e) => {
                tracing::warn!(error = %elb_error("DescribeLoadBalancers", &e), env, "traffic: cannot read a load balancer's name");
                return BTreeMap::new();
            }
        }
    }
    out
}

/// A load balancer's DNS name as an alias names it: any case, a trailing
/// dot, `dualstack.` in front (Route53 accepts each).
fn lb_dns_key(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.strip_prefix("dualstack.").map(str::to_string).unwrap_or(name)
}

/// Distinct values one PutMetricData datum may carry.
const MAX_VALUES: usize = 150;

/// Response times to the tenth of a millisecond, each with how often it
/// occurred, in increasing order.
fn latency_counts(latencies: &[f64]) -> Vec<(f64, f64)> {
    let mut counts: BTreeMap<u64, f64> = BTreeMap::new();
    for l in latencies {
        *counts.entry((l * 10_000.0).round() as u64).or_default() += 1.0;
    }
    counts.into_iter().map(|(k, n)| (k as f64 / 10_000.0, n)).collect()
}

fn datum(metric: Metric, dims: &[Dimension], unit: StandardUnit) -> MetricDatumBuilder {
    MetricDatum::builder().metric_name(metric.cloudwatch_name()).set_dimensions(Some(dims.to_vec())).unit(unit)
}

/// A count as an ALB publishes it: each request or error is a sample of 1, so
/// the Sum and SampleCount are the count and the Average, Minimum and Maximum
/// are 1 (AWS's ELB metrics documentation). `None` for 0: an ALB publishes a
/// count only when it is not zero.
fn count(metric: Metric, dims: &[Dimension], n: u64) -> Option<MetricDatum> {
    let n = n as f64;
    let ones = StatisticSet::builder().sample_count(n).sum(n).minimum(1.0).maximum(1.0).build();
    (n > 0.0).then(|| datum(metric, dims, StandardUnit::Count).statistic_values(ones).build())
}

/// One window of an environment as an ALB reports it, under the dimension
/// sets AWS publishes each metric with (see `World`). Nothing without a load
/// balancer: AWS has no metrics for a target group no load balancer uses.
fn datums(world: &World, env: &str, w: &Window) -> Vec<MetricDatum> {
    let Some(per_lb) = world.load_balancer_dimensions(env) else { return Vec::new() };
    let per_tg = world.target_group_dimensions(env);
    let mut data = Vec::new();
    // Target metrics: per target group and per load balancer.
    for dims in per_tg.iter().chain([&per_lb]) {
        data.extend(count(Metric::RequestCount, dims, w.requests));
        data.extend(count(Metric::Target5xx, dims, w.target_5xx));
        // Raw values with counts, as an ALB's are: percentiles need them.
        for chunk in latency_counts(&w.latencies).chunks(MAX_VALUES) {
            let (values, counts): (Vec<f64>, Vec<f64>) = chunk.iter().copied().unzip();
            data.push(
                datum(Metric::TargetResponseTime, dims, StandardUnit::Seconds)
                    .set_values(Some(values))
                    .set_counts(Some(counts))
                    .build(),
            );
        }
    }
    // The load balancer's own codes: per load balancer and per zone, never per target group.
    let elb_5xx: u64 = w.elb_5xx.values().sum();
    data.extend(count(Metric::Elb5xx, &per_lb, elb_5xx));
    for (zone, n) in &w.elb_5xx {
        if let Some(dims) = world.zone_dimensions(env, zone) {
            data.extend(count(Metric::Elb5xx, &dims, *n));
        }
    }
    // Host counts: per target group only.
    if let Some(dims) = &per_tg {
        for (metric, samples) in
            [(Metric::HealthyHostCount, &w.healthy_samples), (Metric::UnhealthyHostCount, &w.unhealthy_samples)]
        {
            if !samples.is_empty() {
                let avg = samples.iter().sum::<f64>() / samples.len() as f64;
                data.push(datum(metric, dims, StandardUnit::Count).value(avg).build());
            }
        }
    }
    data
}

/// Publishes an environment's window in its own account and region.
async fn publish(aws: &SideClients, world: &World, env: &str, w: &Window) {
    let data = datums(world, env, w);
    if data.is_empty() {
        return;
    }
    if let Err(e) = aws
        .environment(env)
        .cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .set_metric_data(Some(data))
        .send()
        .await
    {
        tracing::warn!(error = %aws_sdk::cloudwatch::error::DisplayErrorContext(&e), "traffic: PutMetricData failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::provision::ProvisionedTargetGroup;

    fn world() -> World {
        let lb = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/alb/1".to_string();
        let tg = ProvisionedTargetGroup {
            name: "web".into(),
            arn: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/2".into(),
            load_balancer_arn: Some(lb.clone()),
        };
        World {
            load_balancers: BTreeMap::from([("new".to_string(), lb)]),
            target_groups: BTreeMap::from([("new".to_string(), vec![tg])]),
            ..World::default()
        }
    }

    /// Metric name → the dimension sets it was published under, as name=value lists.
    fn published(data: &[MetricDatum]) -> BTreeMap<String, Vec<Vec<String>>> {
        let mut out: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        for d in data {
            let dims = d
                .dimensions()
                .iter()
                .map(|x| format!("{}={}", x.name().unwrap_or_default(), x.value().unwrap_or_default()))
                .collect();
            out.entry(d.metric_name().unwrap_or_default().to_string()).or_default().push(dims);
        }
        out
    }

    #[test]
    fn each_metric_is_published_under_the_dimension_sets_aws_uses() {
        let w = Window {
            requests: 10,
            target_5xx: 1,
            elb_5xx: BTreeMap::from([("eu-west-1a".to_string(), 2), ("eu-west-1b".to_string(), 1)]),
            latencies: vec![0.01, 0.02, 0.01],
            healthy_samples: vec![2.0],
            unhealthy_samples: vec![0.0],
        };
        let (tg, lb) = ("TargetGroup=targetgroup/web/2", "LoadBalancer=app/alb/1");
        let per_target = vec![vec![tg.to_string(), lb.to_string()], vec![lb.to_string()]];
        let per_tg = vec![vec![tg.to_string(), lb.to_string()]];
        let expected = BTreeMap::from([
            ("RequestCount".to_string(), per_target.clone()),
            ("HTTPCode_Target_5XX_Count".to_string(), per_target.clone()),
            ("TargetResponseTime".to_string(), per_target),
            (
                "HTTPCode_ELB_5XX_Count".to_string(),
                vec![
                    vec![lb.to_string()],
                    vec!["AvailabilityZone=eu-west-1a".to_string(), lb.to_string()],
                    vec!["AvailabilityZone=eu-west-1b".to_string(), lb.to_string()],
                ],
            ),
            ("HealthyHostCount".to_string(), per_tg.clone()),
            ("UnHealthyHostCount".to_string(), per_tg),
        ]);
        assert_eq!(published(&datums(&world(), "new", &w)), expected);
        let total: Vec<f64> = datums(&world(), "new", &w)
            .iter()
            .filter(|d| d.metric_name() == Some("HTTPCode_ELB_5XX_Count") && d.dimensions().len() == 1)
            .filter_map(|d| d.statistic_values().and_then(StatisticSet::sum))
            .collect();
        assert_eq!(total, [3.0], "the load balancer's count sums its zones");
        let counts = ["RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"];
        for d in datums(&world(), "new", &w).iter().filter(|d| counts.contains(&d.metric_name().unwrap_or_default())) {
            let set = d.statistic_values().unwrap_or_else(|| panic!("a count as a statistic set: {d:?}"));
            assert!(d.value().is_none(), "{d:?}");
            assert_eq!((set.minimum(), set.maximum()), (Some(1.0), Some(1.0)), "each request a sample of 1: {d:?}");
            assert_eq!(set.sum(), set.sample_count(), "{d:?}");
        }
        let quiet = Window { healthy_samples: vec![2.0], ..Window::default() };
        let names: Vec<_> =
            datums(&world(), "new", &quiet).iter().filter_map(|d| d.metric_name().map(str::to_string)).collect();
        assert_eq!(names, ["HealthyHostCount"], "no count is published for none");
    }

    #[test]
    fn response_times_are_published_as_raw_values_with_counts() {
        let w = Window { requests: 4, latencies: vec![0.012, 0.01204, 0.3, 0.012], ..Window::default() };
        let data = datums(&world(), "new", &w);
        let trt: Vec<&MetricDatum> = data.iter().filter(|d| d.metric_name() == Some("TargetResponseTime")).collect();
        assert_eq!(trt.len(), 2, "per target group and per load balancer");
        for d in trt {
            assert_eq!(d.values(), [0.012, 0.3]);
            assert_eq!(d.counts(), [3.0, 1.0]);
            assert!(d.statistic_values().is_none());
        }
        let many: Vec<f64> = (0..400).map(|i| f64::from(i) / 1000.0).collect();
        let w = Window { requests: 400, latencies: many, ..Window::default() };
        let data = datums(&world(), "new", &w);
        let per_lb: Vec<&MetricDatum> = data
            .iter()
            .filter(|d| d.metric_name() == Some("TargetResponseTime") && d.dimensions().len() == 1)
            .collect();
        assert_eq!(per_lb.len(), 3, "at most 150 values a datum");
        assert_eq!(per_lb.iter().map(|d| d.counts().iter().sum::<f64>()).sum::<f64>(), 400.0);
    }

    #[test]
    fn no_load_balancer_means_no_metrics() {
        let w = Window { requests: 10, ..Window::default() };
        assert!(datums(&world(), "old", &w).is_empty());
        let mut orphan = world();
        orphan.load_balancers.clear();
        assert!(datums(&orphan, "new", &w).is_empty());
    }

    #[test]
    fn an_alb_routes_to_healthy_targets_fails_open_to_unhealthy_ones_and_never_to_others() {
        let of = |states: &[(&str, &str)]| {
            let states: Vec<(String, String)> = states.iter().map(|(i, s)| (i.to_string(), s.to_string())).collect();
            InService::of(&states, vec!["eu-west-1a".into()])
        };
        let mixed = of(&[("i-1", "healthy"), ("i-2", "unhealthy"), ("i-3", "unused"), ("i-4", "healthy")]);
        assert_eq!((mixed.targets, mixed.healthy, mixed.unhealthy), (vec!["i-1".into(), "i-4".into()], 2, 1));
        let open = of(&[("i-1", "unhealthy"), ("i-2", "draining"), ("i-3", "unhealthy"), ("i-4", "initial")]);
        assert_eq!((open.targets, open.healthy, open.unhealthy), (vec!["i-1".into(), "i-3".into()], 0, 2));
        for none in [&[("i-1", "unused"), ("i-2", "draining"), ("i-3", "initial")][..], &[]] {
            assert_eq!(of(none).targets, Vec::<String>::new(), "{none:?}: the load balancer answers 503 itself");
        }
    }

    #[test]
    fn split_follows_shares_and_sums_to_n() {
        assert_eq!(split(10, &[0.9, 0.1]), vec![9, 1]);
        assert_eq!(split(10, &[1.0, 0.0]), vec![10, 0]);
        assert_eq!(split(10, &[0.5, 0.5]), vec![5, 5]);
        assert_eq!(split(10, &[0.75, 0.25]).iter().sum::<u32>(), 10);
        assert_eq!(split(3, &[0.5, 0.5]).iter().sum::<u32>(), 3);
        // A side at share 0 never gets a rounding leftover.
        assert_eq!(split(7, &[1.0, 0.0]), vec![7, 0]);
        assert!(split(5, &[]).is_empty());
    }
}
