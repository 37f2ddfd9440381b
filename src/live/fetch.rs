//! One fetch per source. Each returns domain data or an error string; none
//! panics, and each is bounded in time by the SDK or its own timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analysis::hit_rate::LookupCounters;
use crate::analysis::reachability::{
    Addresses, Destination, GroupNames, SecurityGroup, SgPath, Source, both_ways, egress_path, ingress_path,
};
use crate::analysis::weights::shares;
use crate::aws::ec2::Instance;
use crate::aws::elb::{LoadBalancer, LoadBalancing, TargetGroup};
use crate::aws::{AwsResult, Clients, SideClients};

use crate::redis::info_field;
use crate::redis::url::Endpoint;
use crate::runbook::{Environment, RedisEndpoint, Runbook, Side};
use crate::store::audit::Stage;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideWeight {
    /// None: a record of the weighted group that the runbook does not list
    /// (a `maint` record); it takes its share of the traffic all the same.
    pub environment: Option<String>,
    pub set_identifier: String,
    /// None when the record does not exist.
    pub weight: Option<u8>,
    /// Share of traffic Route53 gives it (all-zero weights split equally).
    pub share_percent: f64,
    pub ttl: Option<u32>,
    pub values: Vec<String>,
    /// The record's health check, with what Route53's checkers say.
    pub health_check: Option<crate::aws::route53::HealthCheckState>,
    /// An alias record's target (an ALB).
    pub alias_target: Option<crate::aws::route53::Alias>,
    /// The share it really gets: none while Route53 counts it unhealthy (a
    /// failing health check, or an alias evaluating target health with no
    /// healthy target), whatever its weight, unless every side is unhealthy.
    pub effective_share_percent: f64,
    /// Why it gets no traffic although its weight gives it a share (above
    /// 0, or 0 in a group all at 0).
    pub no_traffic: Option<String>,
    /// Why cutover cannot tell whether Route53 counts it healthy: its health
    /// check's status unread, or its alias target's health unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_unknown: Option<String>,
}

impl SideWeight {
    /// Whether this is `environment`'s record.
    pub fn is(&self, environment: &str) -> bool {
        self.environment.as_deref() == Some(environment)
    }

    /// Whose record it is, to show: its environment, or that the runbook
    /// does not list it.
    pub fn holder(&self) -> &str {
        self.environment.as_deref().unwrap_or("not listed")
    }
}

/// What a person must know of the group's records the runbook does not
/// list, when one carries weight: the shares shown count them, and neither
/// a shift nor a rollout changes them.
pub fn unlisted_records(sides: &[SideWeight]) -> Option<String> {
    let weighted: Vec<String> = sides
        .iter()
        .filter(|s| s.environment.is_none() && s.weight.is_some_and(|w| w > 0))
        .map(|s| format!("`{}` (weight {}, {:.1}%)", s.set_identifier, s.weight.unwrap_or(0), s.share_percent))
        .collect();
    (!weighted.is_empty()).then(|| {
        format!(
            "NOT IN THE RUNBOOK: Route53 also sends traffic to {}, a weighted record the runbook does not list; \
             the shares count it, and no shift or rollout changes it (set its weight to 0 or delete it, or list it \
             under [dns] set_identifiers)",
            weighted.join(", ")
        )
    })
}

/// Records of a dual-stack group's other types (AAAA beside A) that the
/// runbook does not list and that carry weight: what they take of that
/// type's answers, as Route53 shares each type on its own.
fn unlisted_beyond_first_type(
    rb: &Runbook,
    types: &[String],
    all: &[crate::aws::route53::WeightedRecord],
) -> Option<String> {
    let each: Vec<String> = types
        .iter()
        .skip(1)
        .flat_map(|t| {
            let of_type: Vec<_> = all.iter().filter(|r| &r.record_type == t).collect();
            let weights: Vec<u8> = of_type.iter().map(|r| r.weight).collect();
            let shares = shares(&weights);
            of_type
                .into_iter()
                .zip(shares)
                .filter(|(r, _)| r.weight > 0 && !rb.dns.lists(&r.set_identifier))
                .map(|(r, s)| format!("{t} `{}` (weight {}, {:.1}%)", r.set_identifier, r.weight, s * 100.0))
                .collect::<Vec<_>>()
        })
        .collect();
    (!each.is_empty()).then(|| {
        format!(
            "NOT IN THE RUNBOOK: Route53 also answers {} for records the runbook does not list; no shift or rollout \
             changes them (set their weight to 0 or delete them, or list them under [dns] set_identifiers)",
            each.join(", ")
        )
    })
}

/// Weighted records of a type the runbook does not list at all (AAAA beside
/// its A): each record's weight and share of that type's answers, whose
/// side it is, as no shift or rollout moves them.
fn of_unlisted_types(
    rb: &Runbook,
    unlisted: &[String],
    others: &[crate::aws::route53::WeightedRecord],
) -> Option<String> {
    let each: Vec<String> = unlisted
        .iter()
        .filter_map(|t| {
            let of_type: Vec<_> = others.iter().filter(|r| &r.record_type == t).collect();
            let weights: Vec<u8> = of_type.iter().map(|r| r.weight).collect();
            let records: Vec<String> = of_type
                .iter()
                .zip(shares(&weights))
                .map(|(r, s)| {
                    let side = rb.dns.environment_of(&r.set_identifier).unwrap_or("not listed");
                    format!("`{}` ({side}, weight {}, {:.1}%)", r.set_identifier, r.weight, s * 100.0)
                })
                .collect();
            (!records.is_empty()).then(|| format!("{t} {}", records.join(", ")))
        })
        .collect();
    (!each.is_empty()).then(|| {
        format!(
            "NOT IN THE RUNBOOK: Route53 also answers {} for {}, a record type the runbook's [dns] type does not \
             list, so no shift or rollout moves it and its clients stay where it sends them (list it: type = \
             [\"A\", \"AAAA\"])",
            each.join("; "),
            rb.dns.record
        )
    })
}

/// What cutover knows of an alias side's target health, as Route53 judges it
/// with EvaluateTargetHealth.
#[derive(Debug, Clone, PartialEq)]
pub enum AliasHealth {
    Known(bool),
    /// Why cutover cannot tell: its load balancer unread or stale, or a
    /// target that is not the load balancer the runbook names for it.
    Unknown(String),
}

/// Whether Route53 sends `s` another share than its weight gives it (the
/// others' health fails, or its own): what a display must say beside the weight.
pub fn share_differs(s: &SideWeight) -> bool {
    s.traffic_unknown.is_none() && (s.effective_share_percent - s.share_percent).abs() >= 0.05
}

/// Sets each side's effective share. `alias_target_health(environment)`
/// says whether an alias side's target has a healthy target.
pub fn apply_health(sides: &mut [SideWeight], alias_target_health: impl Fn(&str) -> AliasHealth) {
    let alias_target_health = |s: &SideWeight| match &s.environment {
        Some(env) => alias_target_health(env),
        None => {
            AliasHealth::Unknown("the runbook does not list this record, so cutover does not read its target".into())
        }
    };
    let why: Vec<Option<String>> = sides
        .iter()
        .map(|s| {
            if let Some(hc) = &s.health_check
                && hc.healthy == Some(false)
            {
                return Some(format!("health check {} fails ({})", hc.id, hc.status));
            }
            match &s.alias_target {
                Some(a) if a.evaluate_target_health && alias_target_health(s) == AliasHealth::Known(false) => {
                    Some(format!("its alias target {} has no healthy target (EvaluateTargetHealth)", a.dns_name))
                }
                _ => None,
            }
        })
        .collect();
    let sides_ids: Vec<String> = sides.iter().map(|s| s.set_identifier.clone()).collect();
    let present: Vec<usize> = (0..sides.len()).filter(|&i| sides[i].weight.is_some()).collect();
    let weight = |i: usize| sides[i].weight.unwrap_or(0);
    // Each side's share, the sides `down(i)` says taken as unhealthy.
    let shares_given = |down: &dyn Fn(usize) -> bool| -> Vec<f64> {
        // Route53 answers as if all were healthy when none is.
        let all_down = present.iter().all(|&i| down(i));
        let up: Vec<usize> = present.iter().copied().filter(|&i| all_down || !down(i)).collect();
        let total: u32 = up.iter().map(|&i| u32::from(weight(i))).sum();
        (0..sides.len())
            .map(|i| match (up.contains(&i), total) {
                (false, _) => 0.0,
                (true, 0) => 100.0 / up.len() as f64,
                (true, _) => f64::from(weight(i)) * 100.0 / f64::from(total),
            })
            .collect()
    };
    let effective = shares_given(&|i| why[i].is_some());
    // A side whose health cutover cannot tell may be down to Route53, and
    // then others get what it would: whether one of them gets anything at
    // all (a side at 0 behind a side above 0) rests on it too.
    let unknown: Vec<(usize, String)> = present
        .iter()
        .filter(|&&i| why[i].is_none())
        .filter_map(|&i| unknown_health(&sides[i], &alias_target_health).map(|w| (i, w)))
        .collect();
    let mut rests_on: Vec<bool> = vec![unknown.len() > 10; sides.len()];
    if unknown.len() <= 10 {
        for mask in 1u32..(1 << unknown.len()) {
            let down = |i: usize| {
                why[i].is_some() || unknown.iter().enumerate().any(|(b, (j, _))| *j == i && mask & (1 << b) != 0)
            };
            for (i, share) in shares_given(&down).into_iter().enumerate() {
                rests_on[i] |= (share > 0.0) != (effective[i] > 0.0);
            }
        }
    }
    let all_zero = present.iter().all(|&i| sides[i].weight == Some(0));
    for (i, s) in sides.iter_mut().enumerate() {
        let w = s.weight.unwrap_or(0);
        s.effective_share_percent = effective[i];
        // A weight of 0 in a group all at 0 is a share all the same.
        let has_share = w > 0 || all_zero;
        let up = effective[i] > 0.0;
        s.no_traffic = if up || !has_share { None } else { why[i].clone() };
        // Its own health unknown was found above (a side without a record has none to judge).
        let own = unknown.iter().find(|(j, _)| *j == i).map(|(_, why)| why.clone());
        s.traffic_unknown = match (&why[i], own) {
            (Some(_), _) => None,
            (None, Some(own)) => Some(own),
            (None, None) if rests_on[i] => {
                let others: Vec<String> = unknown
                    .iter()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, why)| format!("`{}` ({why})", sides_ids[*j]))
                    .collect();
                Some(format!(
                    "whether Route53 sends it any traffic rests on the health of {}, which cutover cannot tell",
                    others.join(", ")
                ))
            }
            (None, None) => None,
        };
    }
}

/// Why Route53's view of a side's health is unknown to cutover, if it is.
fn unknown_health(s: &SideWeight, alias_target_health: &impl Fn(&SideWeight) -> AliasHealth) -> Option<String> {
    if let Some(hc) = s.health_check.as_ref().filter(|hc| hc.healthy.is_none()) {
        return Some(format!("its health check {} could not be judged ({})", hc.id, hc.status));
    }
    match (&s.alias_target, alias_target_health(s)) {
        (Some(a), AliasHealth::Unknown(why)) if a.evaluate_target_health => {
            Some(format!("the health of its alias target {} is unknown (EvaluateTargetHealth): {why}", a.dns_name))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficData {
    pub zone_id: String,
    pub sides: Vec<SideWeight>,
    /// The last weight change cutover made for this runbook, when known.
    pub last_change: Option<LastChange>,
    /// The rollout, when one has state: step (1-based), steps, phase.
    pub rollout: Option<RolloutView>,
    /// Why the rollout's state could not be read (a store timeout, a
    /// damaged file): then `rollout` is unknown, not absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_unread: Option<String>,
    /// Why the audit log could not be read: then `last_change` is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_unread: Option<String>,
    /// Read by another machine of the team and shared through the store
    /// (team mode): who read it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_by: Option<SharedBy>,
    /// A dual-stack group whose record types weigh the sides differently
    /// (`sides` are the first type's): how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types_differ: Option<String>,
    /// A dual-stack group's records of its other types (AAAA) that the
    /// runbook does not list and that carry weight there: who else gets
    /// those answers (`sides` count the first type's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlisted_other_types: Option<String>,
}

/// Who read a shared reading, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedBy {
    pub reader: String,
    pub read_at: std::time::SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastChange {
    pub change_id: String,
    pub action: String,
    /// RFC 3339, from the audit log.
    pub submitted_at: String,
    /// PENDING or INSYNC (GetChange), or why it is unknown.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub step: usize,
    pub steps: usize,
    pub percent: u8,
    pub phase: String,
    pub reason: Option<String>,
    /// Saved under another version of the runbook's rollout (its steps
    /// edited since): `step` numbers the saved plan's steps, `steps` and
    /// `percent` are this runbook's and say nothing of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan_changed: bool,
}

impl RolloutView {
    /// `step 2/4 (25%) soaking`, or the saved step alone when the plan changed since.
    pub fn describe(&self) -> String {
        if self.plan_changed {
            format!(
                "step {} of a rollout plan changed since it was saved (not this runbook's steps) {}",
                self.step, self.phase
            )
        } else {
            format!("step {}/{} ({}%) {}", self.step, self.steps, self.percent, self.phase)
        }
    }
}

/// The last change cutover sent for `rb`, from its audit log; GetChange asked
/// only while it is not yet known INSYNC.
async fn last_change(clients: &Clients, lines: Option<Vec<crate::store::audit::AuditLine>>) -> Option<LastChange> {
    let lines = lines?;
    let applied = lines.iter().rev().find(|l| l.stage == Stage::Applied && l.change.is_some())?;
    let change_id = applied.change.clone()?;
    let insync = lines.iter().any(|l| l.stage == Stage::InSync && l.change.as_deref() == Some(change_id.as_str()));
    let status = if insync {
        "INSYNC".to_string()
    } else {
        match crate::aws::route53::change_insync(&clients.route53, &change_id).await {
            Ok(true) => "INSYNC".to_string(),
            Ok(false) => "PENDING".to_string(),
            Err(e) => format!("unknown ({e})"),
        }
    };
    Some(LastChange { change_id, action: applied.action.clone(), submitted_at: applied.time.clone(), status })
}

fn rollout_view(rb: &Runbook) -> Result<Option<RolloutView>, String> {
    let Some(s) = crate::store::rollout::load_state::<crate::engine::RolloutState>(&rb.name)
        .map_err(|e| format!("the rollout's state: {e}"))?
    else {
        return Ok(None);
    };
    Ok(Some(rollout_view_of(rb, s)))
}

/// A saved rollout state as `rb` shows it: its step and percent, unless the
/// plan changed since it was saved.
pub fn rollout_view_of(rb: &Runbook, s: crate::engine::RolloutState) -> RolloutView {
    let plan_changed = s.plan_hash != crate::engine::plan_hash(rb);
    RolloutView {
        step: s.engine.step.saturating_add(1),
        steps: rb.rollout.steps.len(),
        percent: if plan_changed { 0 } else { rb.rollout.steps.get(s.engine.step).copied().unwrap_or(0) },
        phase: s.engine.phase.name().to_string(),
        reason: s.engine.reason,
        plan_changed,
    }
}

/// The runbook's weighted records. `zone_id` caches the zone lookup.
pub async fn traffic(clients: &Clients, rb: &Runbook, zone_id: &mut Option<String>) -> AwsResult<TrafficData> {
    let zone = match zone_id {
        Some(z) => z.clone(),
        None => {
            let z = crate::aws::route53::zone_id(&clients.route53, &rb.dns.zone).await?;
            *zone_id = Some(z.clone());
            z
        }
    };
    let types = rb.dns.types();
    let all = crate::aws::route53::weighted_group(&clients.route53, &zone, &rb.dns.record, &types).await?;
    let of_type = |t: &str| all.iter().filter(|r| r.record_type == t).cloned().collect::<Vec<_>>();
    let records = of_type(&rb.dns.record_type);
    // The rollout's two sides, as a shift sets them (another side's
    // records are not cutover's to align).
    let names = [rb.rollout.from.as_str(), rb.rollout.to.as_str()];
    let by_type: Vec<(&str, Vec<Option<u8>>)> = types
        .iter()
        .map(|t| {
            let rs = of_type(t);
            let weight = |env: &str| {
                let id = rb.dns.set_identifiers.get(env)?;
                rs.iter().find(|r| &r.set_identifier == id).map(|r| r.weight)
            };
            (t.as_str(), names.iter().map(|e| weight(e)).collect())
        })
        .collect();
    let types_differ = crate::analysis::weights::types_differ(&names, &by_type);
    // AAAA beside an A runbook's records: IPv6 clients go where they say.
    let unlisted = rb.dns.unlisted_types();
    let others = crate::aws::route53::weighted_group(&clients.route53, &zone, &rb.dns.record, &unlisted).await?;
    let unlisted_other_types =
        [unlisted_beyond_first_type(rb, &types, &all), of_unlisted_types(rb, &unlisted, &others)]
            .into_iter()
            .flatten()
            .reduce(|a, b| format!("{a}; {b}"));
    let mut sides = sides(rb, &records);
    for s in &mut sides {
        if let Some(hc) = &mut s.health_check {
            *hc = crate::aws::route53::health_check_state(&clients.route53, &hc.id).await?;
        }
    }
    // Alias target health is judged with the environments' data (status).
    apply_health(&mut sides, |_| AliasHealth::Unknown("its load balancer's targets not read yet".into()));
    // The store may be S3: read off the async threads, which a slow S3 must not hold.
    let held = rb.clone();
    let (lines, rollout) = tokio::task::spawn_blocking(move || {
        let lines =
            crate::store::audit::AuditLog::for_runbook(&held.name).read().map_err(|e| format!("the audit log: {e}"));
        (lines, rollout_view(&held))
    })
    .await
    .unwrap_or_else(|e| (Err(format!("the audit log: {e}")), Err(format!("the rollout's state: {e}"))));
    let (rollout, rollout_unread) = match rollout {
        Ok(r) => (r, None),
        Err(e) => (None, Some(e)),
    };
    let audit_unread = lines.as_ref().err().cloned();
    let last_change = last_change(clients, lines.ok()).await;
    Ok(TrafficData {
        zone_id: zone,
        sides,
        last_change,
        rollout,
        rollout_unread,
        audit_unread,
        shared_by: None,
        types_differ,
        unlisted_other_types,
    })
}

/// Each side's record and share, then the group's records the runbook does
/// not list: Route53 shares the traffic among every record of the group, so
/// the shares count each record that exists.
pub fn sides(rb: &Runbook, records: &[crate::aws::route53::WeightedRecord]) -> Vec<SideWeight> {
    let found: Vec<_> = rb
        .dns
        .set_identifiers
        .iter()
        .map(|(env, id)| (Some(env.clone()), id.clone(), records.iter().find(|r| &r.set_identifier == id)))
        .chain(
            records
                .iter()
                .filter(|r| !rb.dns.lists(&r.set_identifier))
                .map(|r| (None, r.set_identifier.clone(), Some(r))),
        )
        .collect();
    let present: Vec<u8> = found.iter().filter_map(|(_, _, r)| r.map(|r| r.weight)).collect();
    let mut sh = shares(&present).into_iter();
    found
        .into_iter()
        .map(|(env, id, r)| (env, id, r, if r.is_some() { sh.next().unwrap_or(0.0) * 100.0 } else { 0.0 }))
        .map(|(environment, set_identifier, r, share)| SideWeight {
            environment,
            set_identifier,
            weight: r.map(|r| r.weight),
            share_percent: share,
            ttl: r.and_then(|r| r.ttl),
            values: r.map(|r| r.values.clone()).unwrap_or_default(),
            health_check: r.and_then(|r| r.health_check_id.clone()).map(|id| crate::aws::route53::HealthCheckState {
                id,
                healthy: None,
                status: "not read".into(),
            }),
            alias_target: r.and_then(|r| r.alias_target.clone()),
            effective_share_percent: if r.is_some() { share } else { 0.0 },
            no_traffic: None,
            traffic_unknown: None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentData {
    pub load_balancer: Option<LoadBalancer>,
    pub target_groups: Vec<TargetGroup>,
    pub instances: Vec<Instance>,
    /// Security groups of each Redis endpoint the environment uses.
    pub redis_groups: BTreeMap<String, Vec<SecurityGroup>>,
    /// Endpoints whose groups another environment owns and reaches with
    /// other credentials or another region (endpoint → owner): read through
    /// the owner's side, so judged, but never changed from this one's.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redis_groups_elsewhere: BTreeMap<String, String>,
    /// A shared Redis whose groups its owner's side could not read (endpoint
    /// → the error): its path is not judged, and nothing changes its rules
    /// meanwhile; the environment's own data still stands.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redis_groups_unread: BTreeMap<String, String>,
    /// Addresses of the network interfaces in each endpoint's groups, where
    /// the instances' outbound rules must let traffic go.
    pub redis_addresses: BTreeMap<String, Vec<String>>,
    /// Endpoints whose interfaces could not be read (endpoint → the error).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redis_addresses_unread: BTreeMap<String, String>,
    /// The instances' own security groups, as described: their outbound rules.
    pub instance_groups: Vec<SecurityGroup>,
    /// Why the instances' groups could not be read, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_groups_unread: Option<String>,
    /// Names of every group a message may mention.
    pub group_names: GroupNames,
}

impl EnvironmentData {
    /// The security-group path from `src` to `endpoint` on `port`, out of
    /// the instance's groups and into the endpoint's; unknown when the
    /// endpoint's groups could not be read.
    pub fn redis_path(&self, src: &Source, endpoint: &str, port: u16) -> SgPath {
        if let Some(e) = self.redis_groups_unread.get(endpoint) {
            return SgPath::Unknown { reason: format!("{endpoint}'s security groups could not be read: {e}") };
        }
        let groups = self.redis_groups.get(endpoint).map_or(&[][..], Vec::as_slice);
        // On AWS each ElastiCache node (an instance running Redis likewise)
        // has a network interface in its groups: groups that hold none are
        // likely not the endpoint's, and their rules prove nothing of it.
        if let (Addresses::Found([]), false) = (self.redis_addresses_of(endpoint), groups.is_empty()) {
            let names: Vec<String> =
                groups.iter().map(|g| crate::analysis::reachability::label(&g.id, &self.group_names)).collect();
            return SgPath::Unknown {
                reason: format!(
                    "no network interface is in {endpoint}'s security groups ({}): each ElastiCache node, or \
                     the instance running Redis, has one in its groups, so these are likely not the groups \
                     {endpoint} uses; check its security groups in AWS and name them in the runbook",
                    names.join(", ")
                ),
            };
        }
        let ingress = self.redis_ingress(src, endpoint, groups, port);
        if matches!(ingress, SgPath::Unknown { .. }) {
            return ingress;
        }
        both_ways(ingress, self.redis_egress(src, endpoint, port))
    }

    /// Whether `groups` (the endpoint's, or what a change would leave of
    /// them) let `src` in on `port`, over the family the endpoint's
    /// addresses are reached on.
    pub fn redis_ingress(&self, src: &Source, endpoint: &str, groups: &[SecurityGroup], port: u16) -> SgPath {
        ingress_path(src, groups, port, self.redis_addresses_of(endpoint), &self.group_names)
    }

    fn redis_addresses_of(&self, endpoint: &str) -> Addresses<'_> {
        match self.redis_addresses_unread.get(endpoint) {
            Some(e) => Addresses::Unread(e),
            None => Addresses::Found(self.redis_addresses.get(endpoint).map_or(&[][..], Vec::as_slice)),
        }
    }

    /// Whether `src`'s own groups let its traffic out to `endpoint` on `port`.
    pub fn redis_egress(&self, src: &Source, endpoint: &str, port: u16) -> SgPath {
        if let Some(e) = &self.instance_groups_unread {
            return SgPath::Unknown {
                reason: format!("instance {}'s security groups could not be read: {e}", src.instance_id),
            };
        }
        let groups = self.redis_groups.get(endpoint).map_or(&[][..], Vec::as_slice);
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let addresses = self.redis_addresses_of(endpoint);
        egress_path(
            src,
            &self.instance_groups,
            Destination { group_ids: &group_ids, addresses },
            port,
            &self.group_names,
        )
    }
}

/// Everything AWS says about one environment, read through its side's
/// clients (and a shared Redis's through its owner's).
pub async fn environment(sides: &SideClients, rb: &Runbook, env: &Environment) -> AwsResult<EnvironmentData> {
    environment_with(&sides.environment(&env.name).elb, sides, rb, env).await
}

/// As [`environment`], with ELBv2 read through `elb` (a test's fake for the
/// target states moto never produces).
pub async fn environment_with(
    elb: &impl LoadBalancing,
    sides: &SideClients,
    rb: &Runbook,
    env: &Environment,
) -> AwsResult<EnvironmentData> {
    let clients = sides.environment(&env.name);
    let ec2 = &clients.ec2;
    let load_balancer = match &env.load_balancer {
        Some(name) => Some(elb.load_balancer(name).await?),
        None => None,
    };
    let target_groups = elb.target_groups(&env.target_groups).await?;
    let instances = crate::aws::ec2::describe_instances(ec2, &env.instances).await?;
    let used: Vec<&RedisEndpoint> = env.uses_redis.iter().filter_map(|n| rb.redis_endpoint(n)).collect();
    // A group name means the group of that name in the VPC of the endpoint's
    // own environment: another environment's VPC may hold a namesake.
    let (own, shared): (Vec<&RedisEndpoint>, Vec<&RedisEndpoint>) =
        used.iter().partition(|r| r.environment == env.name);
    let mut wanted: Vec<String> = own.iter().flat_map(|r| r.security_groups.clone()).collect();
    wanted.sort();
    wanted.dedup();
    let vpc = environment_vpc(env, load_balancer.as_ref(), &instances);
    let own_groups = crate::aws::ec2::describe_security_groups(ec2, &wanted, vpc.as_ref()).await?;
    let named = |r: &RedisEndpoint, found: &[SecurityGroup]| -> Vec<SecurityGroup> {
        found.iter().filter(|g| r.security_groups.iter().any(|s| s == &g.id || s == &g.name)).cloned().collect()
    };
    let mut redis_groups: BTreeMap<String, Vec<SecurityGroup>> =
        own.iter().map(|r| (r.name.clone(), named(r, &own_groups))).collect();
    let mut redis_addresses = BTreeMap::new();
    let mut redis_addresses_unread = BTreeMap::new();
    // Where each endpoint's interfaces are, read where its groups are: a
    // failure leaves them unread (paths they decide unknown), not the
    // environment.
    let addresses = |ec2, endpoints: Vec<(String, Vec<String>)>| async move {
        let ids: Vec<String> = endpoints.iter().flat_map(|(_, ids)| ids.clone()).collect();
        let by_group = crate::aws::ec2::interface_addresses(ec2, &ids).await.map_err(|e| e.to_string());
        endpoints
            .into_iter()
            .map(|(name, ids)| {
                let found = by_group.as_ref().map_err(Clone::clone).map(|by_group| {
                    let mut all: Vec<String> =
                        ids.iter().flat_map(|g| by_group.get(g).cloned().unwrap_or_default()).collect();
                    all.sort();
                    all.dedup();
                    all
                });
                (name, found)
            })
            .collect::<Vec<_>>()
    };
    let mut keep = |read: Vec<(String, Result<Vec<String>, String>)>| {
        for (name, found) in read {
            match found {
                Ok(all) => {
                    redis_addresses.insert(name, all);
                }
                Err(e) => {
                    redis_addresses_unread.insert(name, e);
                }
            }
        }
    };
    let ids_of = |r: &RedisEndpoint, groups: &BTreeMap<String, Vec<SecurityGroup>>| {
        (r.name.clone(), groups.get(&r.name).map(|gs| gs.iter().map(|g| g.id.clone()).collect()).unwrap_or_default())
    };
    keep(addresses(ec2, own.iter().map(|r| ids_of(r, &redis_groups)).collect()).await);
    let mut groups = own_groups;
    let mut redis_groups_elsewhere = BTreeMap::new();
    let mut redis_groups_unread = BTreeMap::new();
    for (owner, theirs) in by_owner(&shared) {
        if !sides.same_reach(&Side::Environment(env.name.clone()), &Side::Environment(owner.to_string())) {
            redis_groups_elsewhere.extend(theirs.iter().map(|r| (r.name.clone(), owner.to_string())));
        }
        let found = match owner_groups(sides, rb, owner, &theirs).await {
            Ok(found) => found,
            Err(e) => {
                let e = format!("read through {owner}'s side: {e}");
                redis_groups_unread.extend(theirs.iter().map(|r| (r.name.clone(), e.clone())));
                continue;
            }
        };
        redis_groups.extend(theirs.iter().map(|r| (r.name.clone(), named(r, &found))));
        let owner_ec2 = &sides.environment(owner).ec2;
        keep(addresses(owner_ec2, theirs.iter().map(|r| ids_of(r, &redis_groups)).collect()).await);
        groups.extend(found.into_iter().filter(|g| !groups.iter().any(|o| o.id == g.id)).collect::<Vec<_>>());
    }
    // Names are a nicety: a group we may not describe is shown by id. The
    // instances' own groups are asked apart from the groups rules name, one
    // of which (in a shared Redis owner's account) would fail the whole call.
    let known = |ids: &[String], names: &GroupNames| -> Vec<String> {
        let mut ids: Vec<String> =
            ids.iter().filter(|id| !groups.iter().any(|g| &g.id == *id) && !names.contains_key(*id)).cloned().collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut group_names: GroupNames = GroupNames::new();
    let own: Vec<String> = instances.iter().flat_map(|i| i.security_groups.clone()).collect();
    // The instances' groups whole, for their outbound rules: those not read
    // already as an endpoint's.
    let mut instance_groups: Vec<SecurityGroup> = groups.iter().filter(|g| own.contains(&g.id)).cloned().collect();
    let mut instance_groups_unread = None;
    let unread: Vec<String> = known(&own, &GroupNames::new());
    match crate::aws::ec2::describe_security_groups(ec2, &unread, None).await {
        Ok(gs) => {
            group_names.extend(gs.iter().map(|g| (g.id.clone(), g.name.clone())));
            instance_groups.extend(gs);
        }
        Err(e) => instance_groups_unread = Some(e.to_string()),
    }
    let sources: Vec<String> = groups.iter().flat_map(|g| g.ingress.iter().flat_map(|r| r.groups.clone())).collect();
    let mut owners: Vec<&str> = redis_groups_elsewhere.values().map(String::as_str).collect();
    owners.sort();
    owners.dedup();
    // Names of the rules' sources: here, then those left through each owner's side.
    let mut asks = vec![(ec2, &sources)];
    asks.extend(owners.into_iter().map(|o| (&sides.environment(o).ec2, &sources)));
    for (client, ids) in asks {
        let ids = known(ids, &group_names);
        if let Ok(gs) = crate::aws::ec2::describe_security_groups(client, &ids, None).await {
            group_names.extend(gs.into_iter().map(|g| (g.id, g.name)));
        }
    }
    group_names.extend(groups.iter().map(|g| (g.id.clone(), g.name.clone())));
    Ok(EnvironmentData {
        load_balancer,
        target_groups,
        instances,
        redis_groups,
        redis_groups_elsewhere,
        redis_groups_unread,
        redis_addresses,
        redis_addresses_unread,
        instance_groups,
        instance_groups_unread,
        group_names,
    })
}

/// Shared Redis endpoints by the environment that declares them, so each
/// owner's side (and VPC) is read once.
pub(crate) fn by_owner<'a>(shared: &[&'a RedisEndpoint]) -> BTreeMap<&'a str, Vec<&'a RedisEndpoint>> {
    let mut out: BTreeMap<&str, Vec<&RedisEndpoint>> = BTreeMap::new();
    for r in shared {
        out.entry(r.environment.as_str()).or_default().push(r);
    }
    out
}

/// The security groups of `endpoints`, Redis endpoints `owner` declares
/// (a shared Redis another environment uses), read where they are: through
/// `owner`'s side (its account and region), names in `owner`'s VPC.
pub(crate) async fn owner_groups(
    sides: &SideClients,
    rb: &Runbook,
    owner: &str,
    endpoints: &[&RedisEndpoint],
) -> AwsResult<Vec<SecurityGroup>> {
    let mut names: Vec<String> = endpoints.iter().flat_map(|r| r.security_groups.clone()).collect();
    names.sort();
    names.dedup();
    let Some(owner_env) = rb.environment(owner) else { return Ok(Vec::new()) };
    let clients = sides.environment(owner);
    let vpc = if names.iter().any(|n| !n.starts_with("sg-")) {
        let load_balancer = match &owner_env.load_balancer {
            Some(name) => Some(clients.elb.load_balancer(name).await?),
            None => None,
        };
        let instances = crate::aws::ec2::describe_instances(&clients.ec2, &owner_env.instances).await?;
        environment_vpc(owner_env, load_balancer.as_ref(), &instances)
    } else {
        None
    };
    crate::aws::ec2::describe_security_groups(&clients.ec2, &names, vpc.as_ref()).await.map_err(|mut e| {
        e.message = format!("{owner}'s groups of its Redis: {}", e.message);
        e
    })
}

/// The environment's VPC, where the security groups its runbook names are
/// looked up: its load balancer's, else the one VPC all its instances are in
/// (None when it has neither, or its instances span several VPCs).
pub fn environment_vpc(
    env: &Environment,
    load_balancer: Option<&LoadBalancer>,
    instances: &[Instance],
) -> Option<crate::aws::ec2::Vpc> {
    if let Some(lb) = load_balancer
        && let Some(id) = &lb.vpc_id
    {
        return Some(crate::aws::ec2::Vpc {
            id: id.clone(),
            how: format!("the VPC of {}'s load balancer {}", env.name, lb.name),
        });
    }
    let mut vpcs: Vec<&str> = instances.iter().filter_map(|i| i.vpc_id.as_deref()).collect();
    vpcs.sort();
    vpcs.dedup();
    match vpcs.as_slice() {
        [one] => {
            Some(crate::aws::ec2::Vpc { id: one.to_string(), how: format!("the VPC of {}'s instances", env.name) })
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HealthProbe {
    NotProbed {
        reason: String,
    },
    Answered {
        url: String,
        status: u16,
        latency_ms: f64,
        /// What the body says of Redis, when it says.
        redis_ok: Option<bool>,
        redis_error: Option<String>,
        body: String,
    },
    Failed {
        url: String,
        error: String,
    },
}

impl HealthProbe {
    pub fn is_success(&self) -> bool {
        matches!(self, HealthProbe::Answered { status, .. } if (200..300).contains(status))
    }
}

/// The client `/health` is probed with: 2 s, no proxy, and no redirect
/// followed. An ALB's health check does not follow one either, and a 301
/// to the public name (or a 302 to a maintenance page answering 200) is not
/// the instance saying it is healthy; nor may a probe held to loopback be
/// sent elsewhere.
pub fn health_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("building an HTTP client without TLS settings cannot fail")
}

/// One instance's `/health` at `url` (from [`super::probe::health_urls`]),
/// or why it is not probed.
pub async fn health(http: &reqwest::Client, url: Result<String, String>) -> HealthProbe {
    let url = match url {
        Ok(u) => u,
        Err(reason) => return HealthProbe::NotProbed { reason },
    };
    let started = Instant::now();
    match http.get(&url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let body = resp.text().await.unwrap_or_default();
            let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
            let redis = json.as_ref().and_then(|j| j.get("redis"));
            HealthProbe::Answered {
                url,
                status,
                latency_ms,
                redis_ok: redis.and_then(|r| r.get("ok")).and_then(|v| v.as_bool()),
                redis_error: redis.and_then(|r| r.get("error")).and_then(|v| v.as_str()).map(str::to_string),
                body: body.chars().take(200).collect(),
            }
        }
        Err(e) => {
            let error = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "connection refused or unreachable".to_string()
            } else {
                e.to_string()
            };
            HealthProbe::Failed { url, error }
        }
    }
}

/// A Redis endpoint of the runbook, ready to connect: its URL from
/// `url_env` when set, else `url`; the password from `password_env`, the
/// sentinels' from `sentinel_password_env`. `role` names it in messages;
/// `var` looks variables up.
pub fn redis_endpoint(
    ep: &RedisEndpoint,
    role: &'static str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Endpoint, String> {
    let url = ep.url_env.as_ref().and_then(|v| var(v)).or_else(|| ep.url.clone()).ok_or_else(|| {
        format!("no URL: set {} or give url in the runbook", ep.url_env.as_deref().unwrap_or("url_env"))
    })?;
    let set =
        |name: &str| var(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("password variable {name} is not set"));
    let password = match &ep.password_env {
        Some(name) => Some((name.as_str(), Some(set(name)?))),
        None => None,
    };
    let e = Endpoint::parse(role, &url, password, None)?.from_runbook();
    match &ep.sentinel_password_env {
        Some(name) => e.with_sentinel_password(set(name)?),
        None => Ok(e),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisInfo {
    pub ping_ms: f64,
    pub version: String,
    pub role: String,
    pub used_memory: u64,
    pub keys: u64,
    pub expiring_keys: u64,
    /// Cumulative `keyspace_hits` and `keyspace_misses` (INFO stats) of the
    /// server the URL reaches, summed over every node of a cluster; None
    /// when INFO does not say (or a node of the cluster did not).
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
    /// The same counters server by server, each with its `run_id`: what
    /// `lookups` is computed from. Empty when they are not all known.
    #[serde(skip)]
    pub lookup_counters: Vec<crate::analysis::hit_rate::LookupCounters>,
    /// Lookups since the previous reading (`live::update` sets it): what a
    /// hit rate is judged on.
    pub lookups: Option<crate::analysis::hit_rate::Lookups>,
    /// A cluster endpoint: every node it reports (primaries and replicas,
    /// failed ones too), each PINGed by cutover. Empty for one server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodePing>,
    /// A `redis+sentinel://` endpoint: each sentinel its URL names, as
    /// cutover reads it. Empty for any other endpoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<SentinelPing>,
    /// The database the URL names (0 for a cluster).
    pub db: u32,
    /// The server's `run_id`, or each primary's of a cluster: two endpoints
    /// sharing one are the same server.
    pub run_ids: Vec<String>,
    /// The server's databases other than the URL's that hold keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_dbs: Vec<crate::analysis::key_counts::DbKeys>,
    /// One server's replication id (INFO `master_replid`): a replica shares
    /// its primary's. None for a cluster, or when INFO does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_id: Option<String>,
}

/// One sentinel of a `redis+sentinel://` endpoint: cutover's own PING of
/// it, and what it says of the master (`SENTINEL get-master-addr-by-name`,
/// `SENTINEL CKQUORUM`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentinelPing {
    /// `host:port`, as the URL names it.
    pub addr: String,
    /// None when it did not answer.
    pub ping_ms: Option<f64>,
    /// The sentinels it counts usable, itself included (its CKQUORUM answer).
    pub usable: Option<u32>,
    /// What is wrong with it: no answer, no such master, another master
    /// named than the one cutover reached, or a group that cannot reach its
    /// quorum or the majority that authorises a failover.
    pub error: Option<String>,
    /// It named the master cutover reached (`get-master-addr-by-name`).
    pub names_master: bool,
    /// The sentinels of the group as it counts them (`num-other-sentinels`
    /// + 1 in `SENTINEL MASTER`); None when it did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

impl SentinelPing {
    pub fn is_up(&self) -> bool {
        self.error.is_none()
    }
}

impl RedisInfo {
    /// Why what was read of a Sentinel endpoint may not be its master's:
    /// half or fewer of the group's sentinels (those its URL lists, or those
    /// they count, whichever is more) named the server cutover reached. One
    /// cut off from its peers names the master they failed over from, which
    /// may still answer, with its old keys. None for any other endpoint.
    pub fn master_unconfirmed(&self) -> Option<String> {
        if self.sentinels.is_empty() {
            return None;
        }
        let named = self.sentinels.iter().filter(|s| s.names_master).count();
        let counted = self.sentinels.iter().filter_map(|s| s.group).max().unwrap_or(0) as usize;
        let group = crate::redis::url::sentinel_group(self.sentinels.len(), counted);
        (named * 2 <= group).then(|| {
            format!(
                "only {named} of the group's {group} sentinels named the master it was read on: half or fewer may \
                 name one the others have failed over from"
            )
        })
    }
}

/// One node of a cluster endpoint and cutover's own PING of it, at the
/// address the cluster reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePing {
    #[serde(flatten)]
    pub node: crate::redis::cluster::Node,
    /// None when it did not answer.
    pub ping_ms: Option<f64>,
    /// Why it counts as down: no answer, or the cluster marks it failed.
    pub error: Option<String>,
}

impl NodePing {
    pub fn is_up(&self) -> bool {
        self.error.is_none()
    }

    /// `primary 127.0.0.1:7000 (0-5460)`.
    pub fn describe(&self) -> String {
        let role = if self.node.primary { "primary" } else { "replica" };
        format!("{role} {} ({})", self.node.addr, self.node.slots)
    }
}

/// How long one node of a cluster gets to answer (all are asked at once,
/// inside the endpoint's 2 s).
const NODE_PING_TIMEOUT: Duration = Duration::from_millis(700);

/// PINGs every node the cluster behind `seed` reports, all at once, and
/// reads each node's lookup counters: every node's that answered, or none
/// (empty) when a node the cluster does not mark failed gave none, since a
/// client may read from any node and a rate without one is not the cluster's.
async fn ping_nodes(
    ep: &crate::redis::url::Endpoint,
    seed: &mut redis::aio::MultiplexedConnection,
) -> Result<(Vec<NodePing>, Vec<LookupCounters>), String> {
    let nodes = crate::redis::cluster::nodes(ep, seed).await?;
    let probes = futures::future::join_all(nodes.iter().map(|n| async move {
        let ping = async {
            let mut c = ep.open_at(&n.addr).await?;
            let started = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(|e| ep.scrub(&e.to_string()))?;
            Ok::<_, String>((c, started.elapsed().as_secs_f64() * 1000.0))
        };
        // One budget for both questions, so a slow node still costs the
        // endpoint's reading no more than it did.
        let deadline = tokio::time::Instant::now() + NODE_PING_TIMEOUT;
        let ping = tokio::time::timeout_at(deadline, ping)
            .await
            .unwrap_or_else(|_| Err(format!("no answer to PING within {} ms", NODE_PING_TIMEOUT.as_millis())));
        let counters = match &ping {
            // Two sections, two commands: `INFO server stats` needs Redis 7.
            Ok((c, _)) => {
                let mut c = c.clone();
                let mut p = redis::pipe();
                p.cmd("INFO").arg("server").cmd("INFO").arg("stats");
                let info = p.query_async::<(String, String)>(&mut c);
                match tokio::time::timeout_at(deadline, info).await {
                    Ok(Ok((server, stats))) => lookup_counters(&format!("{server}\r\n{stats}")),
                    _ => None,
                }
            }
            Err(_) => None,
        };
        (ping.map(|(_, ms)| ms), counters)
    }))
    .await;
    let mut all_counters = Some(Vec::new());
    let pings = nodes
        .into_iter()
        .zip(probes)
        .map(|(node, (ping, counters))| {
            match (counters, node.failed && ping.is_err()) {
                (Some(c), _) => all_counters.iter_mut().for_each(|all| all.push(c.clone())),
                // Down and marked failed: it serves nobody.
                (None, true) => {}
                (None, false) => all_counters = None,
            }
            let error = match (&ping, node.failed) {
                (Err(e), true) => Some(format!("{e}; the cluster marks it failed")),
                (Err(e), false) => Some(e.clone()),
                (Ok(_), true) => Some("answers PING, but the cluster marks it failed".to_string()),
                (Ok(_), false) => None,
            };
            NodePing { node, ping_ms: ping.ok(), error }
        })
        .collect();
    Ok((pings, all_counters.unwrap_or_default()))
}

/// A server's lookup counters from its INFO (server and stats sections).
fn lookup_counters(info: &str) -> Option<LookupCounters> {
    Some(LookupCounters {
        run_id: info_field(info, "run_id").unwrap_or_default().to_string(),
        hits: info_field(info, "keyspace_hits")?.parse().ok()?,
        misses: info_field(info, "keyspace_misses")?.parse().ok()?,
    })
}

/// Reads each sentinel of `ep` at once, each within `NODE_PING_TIMEOUT`
/// and in one round trip; `master` is the address cutover reached through them.
async fn read_sentinels(ep: &Endpoint, master: &str) -> Vec<SentinelPing> {
    let Some(group) = ep.sentinel() else { return Vec::new() };
    let name = group.master.as_str();
    futures::future::join_all(group.sentinels.iter().map(|addr| async move {
        let read = async {
            // The deadline below bounds it all, and says so in its own words.
            let mut c = ep.sentinel_connection(addr, 2 * NODE_PING_TIMEOUT).await.map_err(|e| ep.scrub(&e))?;
            let started = Instant::now();
            let mut p = redis::pipe();
            p.ignore_errors()
                .cmd("PING")
                .cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(name)
                .cmd("SENTINEL")
                .arg("MASTER")
                .arg(name)
                // SLAVES: every version has it (REPLICAS came with 5.0).
                .cmd("SENTINEL")
                .arg("SLAVES")
                .arg(name)
                .cmd("INFO")
                .arg("sentinel")
                .cmd("SENTINEL")
                .arg("CKQUORUM")
                .arg(name);
            let replies: Vec<redis::RedisResult<redis::Value>> =
                p.query_async(&mut c).await.map_err(|e| ep.scrub(&e.to_string()))?;
            Ok::<_, String>((started.elapsed().as_secs_f64() * 1000.0, replies))
        };
        let (ping_ms, usable, error, names_master, group) = match tokio::time::timeout(NODE_PING_TIMEOUT, read).await {
            Err(_) => (None, None, Some(format!("no answer within {} ms", NODE_PING_TIMEOUT.as_millis())), false, None),
            Ok(Err(e)) => (None, None, Some(e), false, None),
            Ok(Ok((ms, replies))) => {
                let answers = SentinelAnswers::of(replies, |e| ep.scrub(e));
                let names = matches!(&answers.named, Ok(Some(a)) if a == master);
                let group = answers.master.as_ref().ok().and_then(|fields| {
                    let n = fields.iter().find(|(k, _)| k == "num-other-sentinels")?;
                    n.1.parse::<u32>().ok().map(|n| n + 1)
                });
                let (usable, wrong) = judge_sentinel(name, master, answers);
                (Some(ms), usable, (!wrong.is_empty()).then(|| wrong.join("; ")), names, group)
            }
        };
        SentinelPing { addr: addr.clone(), ping_ms, usable, error, names_master, group }
    }))
    .await
}

/// What one sentinel said of the master `name`; an answer it refused is
/// its error, scrubbed.
#[derive(Debug)]
struct SentinelAnswers {
    ping: Result<(), String>,
    /// `host:port` (get-master-addr-by-name); None when it knows no such master.
    named: Result<Option<String>, String>,
    /// Its `SENTINEL MASTER` fields (`flags`, `num-slaves`, …).
    master: Result<Vec<(String, String)>, String>,
    /// Each replica's `SENTINEL REPLICAS` fields.
    replicas: Result<Vec<Vec<(String, String)>>, String>,
    /// Its `INFO sentinel` text.
    info: Result<String, String>,
    /// CKQUORUM's answer, or its error code and text.
    quorum: Result<String, (Option<String>, String)>,
}

impl SentinelAnswers {
    /// From the six replies of `read_sentinels`' pipeline, in its order.
    fn of(replies: Vec<redis::RedisResult<redis::Value>>, scrub: impl Fn(&str) -> String) -> Self {
        let mut it = replies.into_iter();
        let mut next = || it.next().unwrap_or_else(|| Ok(redis::Value::Nil));
        let err = |e: redis::RedisError| scrub(&e.to_string());
        let fields = |v: &redis::Value| -> Vec<(String, String)> {
            redis::from_redis_value::<Vec<String>>(v.clone())
                .unwrap_or_default()
                .chunks(2)
                .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
                .collect()
        };
        let ping = next().map(|_| ()).map_err(err);
        let named = next().map_err(err).map(|v| {
            redis::from_redis_value::<Option<(String, u16)>>(v).ok().flatten().map(|(h, p)| format!("{h}:{p}"))
        });
        let master = next().map_err(err).map(|v| fields(&v));
        let replicas = next().map_err(err).map(|v| match v {
            redis::Value::Array(rs) => rs.iter().map(fields).collect(),
            _ => Vec::new(),
        });
        let info = next().map_err(err).map(|v| redis::from_redis_value::<String>(v).unwrap_or_default());
        // "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach …"
        let quorum = next().map(|v| redis::from_redis_value::<String>(v).unwrap_or_default()).map_err(|e| {
            let said = match (e.code(), e.detail()) {
                (Some(code), Some(detail)) => format!("{code} {detail}"),
                _ => e.to_string(),
            };
            (e.code().map(str::to_string), scrub(&said))
        });
        Self { ping, named, master, replicas, info, quorum }
    }
}

/// What is wrong with one sentinel of the group watching master `name`,
/// which cutover reached at `reached`, and how many sentinels it counts
/// usable. Wrong: it knows no such master or names another; it sees the
/// master down, or a failover under way; it knows no replica it could
/// promote (up, linked to the master, priority above 0); it is in TILT
/// mode (it acts on no failure); or the group cannot reach its quorum or
/// the majority that authorises a failover (CKQUORUM, which counts
/// sentinels only). A refused question is wrong too: unasked is not ok.
fn judge_sentinel(name: &str, reached: &str, a: SentinelAnswers) -> (Option<u32>, Vec<String>) {
    let mut wrong = Vec::new();
    if let Err(e) = &a.ping {
        wrong.push(format!("PING: {e}"));
    }
    match &a.named {
        Err(e) => wrong.push(format!("cannot ask it for the master: {e}")),
        Ok(None) => wrong.push(format!("knows no master named {name:?}")),
        Ok(Some(addr)) if addr != reached => {
            wrong.push(format!("names {addr} as master {name}, not {reached}, where the other sentinels sent cutover"))
        }
        Ok(Some(_)) => {}
    }
    let field = |fields: &[(String, String)], key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    match &a.master {
        Err(e) => wrong.push(format!("cannot ask it about the master: {e}")),
        Ok(fields) if field(fields, "flags").is_none() => {
            wrong.push("gave no flags for the master (an answer cutover cannot read)".to_string())
        }
        Ok(fields) => {
            let flags = field(fields, "flags").unwrap_or_default();
            let flag = |f: &str| flags.split(',').any(|x| x == f);
            if flag("s_down") || flag("o_down") {
                wrong.push(format!("sees the master down (flags {flags})"));
            }
            if flag("failover_in_progress") || flag("promoted") {
                wrong.push(format!("a failover is under way (flags {flags})"));
            }
        }
    }
    match &a.replicas {
        Err(e) => wrong.push(format!("cannot ask it about the replicas: {e}")),
        Ok(replicas) => {
            // Sentinel's own choice (sentinelSelectSlave): not down or
            // disconnected, answering its PING within 5 s, priority above 0,
            // INFO read (0: never) within 3 × 10 s, and cut off from the
            // master for no more than 10 × down-after. Flags unread: not one.
            let ms = |r: &[(String, String)], key: &str| field(r, key).and_then(|v| v.parse::<i64>().ok());
            let promotable = replicas.iter().any(|r| {
                let Some(flags) = field(r, "flags") else { return false };
                !flags.split(',').any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
                    && field(r, "slave-priority").or_else(|| field(r, "replica-priority")).as_deref() != Some("0")
                    && ms(r, "last-ok-ping-reply").is_none_or(|t| t <= 5_000)
                    && ms(r, "info-refresh").is_none_or(|t| t > 0 && t <= 30_000)
                    && match (ms(r, "master-link-down-time"), ms(r, "down-after-milliseconds")) {
                        (Some(down), Some(after)) => down <= 10 * after,
                        _ => true,
                    }
            });
            if !promotable {
                let seen: Vec<String> = replicas
                    .iter()
                    .map(|r| {
                        format!(
                            "{}:{} {} link {} for {} ms priority {}",
                            field(r, "ip").unwrap_or_default(),
                            field(r, "port").unwrap_or_default(),
                            field(r, "flags").unwrap_or_default(),
                            field(r, "master-link-status").unwrap_or_else(|| "?".into()),
                            ms(r, "master-link-down-time").unwrap_or(0).max(0),
                            field(r, "slave-priority")
                                .or_else(|| field(r, "replica-priority"))
                                .unwrap_or_else(|| "?".into())
                        )
                    })
                    .collect();
                wrong.push(if seen.is_empty() {
                    "knows no replica to promote: a failover has nowhere to go".to_string()
                } else {
                    format!("knows no replica it could promote ({})", seen.join(", "))
                });
            }
        }
    }
    match &a.info {
        Err(e) => wrong.push(format!("INFO sentinel: {e}")),
        Ok(info) if info_field(info, "sentinel_tilt") == Some("1") => {
            wrong.push("is in TILT mode: it acts on no failure until it leaves it".to_string())
        }
        Ok(_) => {}
    }
    // "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
    let usable = match &a.quorum {
        Ok(text) => text.split_whitespace().nth(1).and_then(|n| n.parse().ok()),
        Err((Some(code), said)) if code == "NOQUORUM" => {
            wrong.push(format!("the group cannot fail the master over: {said}"));
            None
        }
        Err((_, said)) => {
            wrong.push(format!("cannot ask it whether the group can fail the master over (CKQUORUM): {said}"));
            None
        }
    };
    (usable, wrong)
}

/// A connection to the Redis endpoint `ep`, its database and the address
/// reached: with Sentinel, the master its sentinels name now; in a cluster,
/// the first node of the URL that answers.
async fn open_redis(ep: &Endpoint) -> Result<(redis::aio::MultiplexedConnection, u32, String), String> {
    if let Some(nodes) = ep.cluster_nodes() {
        // The first node of the URL that answers at once: one stopped node
        // must not take the whole endpoint (and its other nodes' rows) with it.
        let mut failures = Vec::new();
        for addr in nodes {
            match tokio::time::timeout(NODE_PING_TIMEOUT, ep.open_at(addr)).await {
                Ok(Ok(c)) => return Ok((c, ep.db(), addr.clone())),
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push(format!("{addr}: no answer within {} ms", NODE_PING_TIMEOUT.as_millis())),
            }
        }
        return Err(failures.join("; "));
    }
    let (c, addr) = ep.open().await?;
    Ok((c, ep.db(), addr))
}

/// PING latency, version, role, memory and key counts of one Redis.
pub async fn redis_info(ep: &Endpoint) -> Result<RedisInfo, String> {
    let ep = &ep.clone().with_sentinel_timeout(NODE_PING_TIMEOUT);
    let work = async {
        let (c, db, reached) = open_redis(ep).await?;
        // The sentinels are read while the server is: the 2 s covers both.
        let (sentinels, info) = tokio::join!(read_sentinels(ep, &reached), server_info(ep, c, db));
        Ok(RedisInfo { sentinels, ..info? })
    };
    tokio::time::timeout(Duration::from_secs(2), work).await.unwrap_or_else(|_| Err("timed out after 2 s".into()))
}

/// `redis_info` of the server behind `c` (every primary's keys when it is
/// a cluster node), its database `db`; no sentinels.
async fn server_info(
    ep: &Endpoint,
    mut c: redis::aio::MultiplexedConnection,
    mut db: u32,
) -> Result<RedisInfo, String> {
    let scrub = |e: redis::RedisError| ep.scrub(&e.to_string());
    let started = Instant::now();
    let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(scrub)?;
    let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
    let info: String = redis::cmd("INFO").query_async(&mut c).await.map_err(scrub)?;
    let mut keys: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.map_err(scrub)?;
    let (_, mut expiring_keys) = crate::redis::keyspace(&info, db);
    let mut run_ids: Vec<String> =
        info_field(&info, "run_id").filter(|id| !id.is_empty()).map(str::to_string).into_iter().collect();
    let mut other_dbs = crate::redis::other_dbs(&info, db);
    let mut replication_id = info_field(&info, "master_replid").filter(|id| !id.is_empty()).map(str::to_string);
    let mut nodes = Vec::new();
    let mut counters: Vec<LookupCounters> = lookup_counters(&info).into_iter().collect();
    if info_field(&info, "cluster_enabled") == Some("1") {
        // A cluster node holds only its shard's keys: count every primary's.
        (nodes, counters) = ping_nodes(ep, &mut c).await?;
        let cluster = crate::redis::cluster::Cluster::connect(ep, c.clone()).await?;
        ((keys, expiring_keys), run_ids) = cluster.key_counts_and_run_ids().await?;
        other_dbs.clear();
        replication_id = None;
        db = 0;
    }
    Ok(RedisInfo {
        ping_ms,
        version: info_field(&info, "redis_version").unwrap_or("?").to_string(),
        role: info_field(&info, "role").unwrap_or("?").to_string(),
        used_memory: info_field(&info, "used_memory").and_then(|v| v.parse().ok()).unwrap_or(0),
        keys,
        expiring_keys,
        nodes,
        sentinels: Vec::new(),
        db,
        run_ids,
        other_dbs,
        replication_id,
        keyspace_hits: (!counters.is_empty()).then(|| counters.iter().map(|c| c.hits).sum()),
        keyspace_misses: (!counters.is_empty()).then(|| counters.iter().map(|c| c.misses).sum()),
        lookup_counters: counters,
        lookups: None,
    })
}

/// What parity compares of one Redis: version and key count (INFO, DBSIZE),
/// memory limit and persistence (CONFIG GET; a server that refuses CONFIG,
/// as ElastiCache does, leaves those unknown, AOF then read from INFO). A
/// cluster is read on every primary (`RedisShape::of_cluster`).
pub async fn redis_shape(name: &str, ep: &Endpoint) -> Result<crate::analysis::parity::RedisShape, String> {
    let ep = &ep.clone().with_sentinel_timeout(NODE_PING_TIMEOUT);
    let scrub = move |e: redis::RedisError| ep.scrub(&e.to_string());
    let scrub = &scrub;
    let work = async {
        let (mut c, _, _) = open_redis(ep).await?;
        let info: String = redis::cmd("INFO").query_async(&mut c).await.map_err(scrub)?;
        if info_field(&info, "cluster_enabled") != Some("1") {
            return shape_of(name, &info, &mut c, scrub).await;
        }
        let cluster = crate::redis::cluster::Cluster::connect(ep, c.clone()).await?;
        // Asked at once (connected one by one): the 2 s budget covers them all.
        let primaries =
            futures::future::try_join_all(cluster.primaries().await?.into_iter().map(|(_, mut p)| async move {
                let info: String = redis::cmd("INFO").query_async(&mut p).await.map_err(scrub)?;
                shape_of(name, &info, &mut p, scrub).await
            }))
            .await?;
        crate::analysis::parity::RedisShape::of_cluster(primaries).ok_or_else(|| "a cluster without primaries".into())
    };
    tokio::time::timeout(Duration::from_secs(2), work).await.unwrap_or_else(|_| Err("timed out after 2 s".into()))
}

/// The shape of the server behind `c`, whose INFO is `info` (a cluster
/// node's DBSIZE counts its shard only).
async fn shape_of(
    name: &str,
    info: &str,
    c: &mut redis::aio::MultiplexedConnection,
    scrub: &impl Fn(redis::RedisError) -> String,
) -> Result<crate::analysis::parity::RedisShape, String> {
    let keys: u64 = redis::cmd("DBSIZE").query_async(c).await.map_err(scrub)?;
    // maxmemory, its policy and AOF are in INFO on every version (and on
    // ElastiCache, which refuses CONFIG). The RDB schedule is only in
    // CONFIG; one parameter per call, as Redis before 7 requires.
    let mut unreadable = Vec::new();
    let rdb_save = match redis::cmd("CONFIG").arg("GET").arg("save").query_async::<Vec<String>>(c).await {
        Ok(pair) if pair.len() == 2 => Some(pair[1].clone()),
        Ok(_) => {
            unreadable.push("save (CONFIG GET gave no answer)".to_string());
            None
        }
        Err(e) => {
            unreadable.push(format!("save ({})", scrub(e)));
            None
        }
    };
    let maxmemory = info_field(info, "maxmemory").and_then(|v| v.parse().ok());
    let maxmemory_policy = info_field(info, "maxmemory_policy").map(str::to_string);
    let aof_enabled = info_field(info, "aof_enabled").map(|v| v == "1");
    for (what, known) in [
        ("maxmemory", maxmemory.is_some()),
        ("maxmemory_policy", maxmemory_policy.is_some()),
        ("aof_enabled", aof_enabled.is_some()),
    ] {
        if !known {
            unreadable.push(format!("{what} (not in INFO)"));
        }
    }
    Ok(crate::analysis::parity::RedisShape {
        name: name.to_string(),
        version: info_field(info, "redis_version").unwrap_or("?").to_string(),
        maxmemory,
        maxmemory_policy,
        aof_enabled,
        rdb_save,
        rdb_save_failed: info_field(info, "rdb_last_bgsave_status") == Some("err"),
        aof_write_failed: info_field(info, "aof_last_write_status") == Some("err"),
        keys,
        elasticache: None,
        unreadable,
        primaries_differ: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::{SentinelAnswers, judge_sentinel};

    fn fields(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A sentinel of a healthy group of three, naming the master at m:6379.
    fn healthy() -> SentinelAnswers {
        SentinelAnswers {
            ping: Ok(()),
            named: Ok(Some("m:6379".into())),
            master: Ok(fields(&[("flags", "master"), ("num-slaves", "1")])),
            replicas: Ok(vec![fields(&[
                ("ip", "r"),
                ("port", "6379"),
                ("flags", "slave"),
                ("master-link-status", "ok"),
                ("slave-priority", "100"),
            ])]),
            info: Ok("# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\n".into()),
            quorum: Ok("OK 3 usable Sentinels. Quorum and failover authorization can be reached".into()),
        }
    }

    fn judged(a: SentinelAnswers) -> (Option<u32>, Vec<String>) {
        judge_sentinel("mymaster", "m:6379", a)
    }

    /// A /health that redirects (to the public name, or to a maintenance
    /// page answering 200) is judged on its own answer: the 302.
    #[tokio::test]
    async fn a_health_probe_never_follows_a_redirect() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            while let Ok(Ok((mut s, _))) =
                tokio::time::timeout(std::time::Duration::from_millis(500), listener.accept()).await
            {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let path = String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).unwrap_or("").to_string();
                let reply = if path == "/health" {
                    format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/ok\r\nContent-Length: 0\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string()
                };
                let _ = s.write_all(reply.as_bytes()).await;
                paths.push(path);
            }
            paths
        });
        let resp = super::health_client().get(format!("http://127.0.0.1:{port}/health")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        assert_eq!(server.await.unwrap(), ["/health"], "the redirect was not followed");
    }

    #[test]
    fn a_sentinel_is_wrong_unless_its_group_could_fail_the_master_over_now() {
        assert_eq!(judged(healthy()), (Some(3), vec![]));
        // A replica cut off from the master for `down` ms, with down-after 5 s.
        let replica = |flags: &str, down: &str, priority: &str| {
            fields(&[
                ("ip", "r"),
                ("port", "6379"),
                ("flags", flags),
                ("info-refresh", "4000"),
                ("master-link-down-time", down),
                ("master-link-status", if down == "0" { "ok" } else { "err" }),
                ("down-after-milliseconds", "5000"),
                ("slave-priority", priority),
            ])
        };
        for (a, says) in [
            (
                SentinelAnswers { named: Ok(Some("old:6379".into())), ..healthy() },
                "names old:6379 as master mymaster, not m:6379",
            ),
            (SentinelAnswers { named: Ok(None), ..healthy() }, "knows no master named \"mymaster\""),
            (
                SentinelAnswers { master: Ok(fields(&[("flags", "s_down,master")])), ..healthy() },
                "sees the master down (flags s_down,master)",
            ),
            (
                SentinelAnswers { master: Ok(fields(&[("flags", "master,failover_in_progress")])), ..healthy() },
                "a failover is under way",
            ),
            (SentinelAnswers { replicas: Ok(vec![]), ..healthy() }, "knows no replica to promote"),
            (
                SentinelAnswers { replicas: Ok(vec![replica("s_down,slave,disconnected", "0", "100")]), ..healthy() },
                "knows no replica it could promote (r:6379 s_down,slave,disconnected link ok for 0 ms priority 100)",
            ),
            (
                SentinelAnswers { replicas: Ok(vec![replica("slave", "50001", "100")]), ..healthy() },
                "knows no replica it could promote (r:6379 slave link err for 50001 ms priority 100)",
            ),
            (
                SentinelAnswers { replicas: Ok(vec![replica("slave", "0", "0")]), ..healthy() },
                "knows no replica it could promote (r:6379 slave link ok for 0 ms priority 0)",
            ),
            (
                SentinelAnswers {
                    replicas: Ok(vec![
                        [&replica("slave", "0", "100")[..3], &fields(&[("info-refresh", "30001")])].concat(),
                    ]),
                    ..healthy()
                },
                "knows no replica it could promote",
            ),
            (
                SentinelAnswers {
                    replicas: Ok(vec![
                        [&replica("slave", "0", "100")[..], &fields(&[("last-ok-ping-reply", "5001")])].concat(),
                    ]),
                    ..healthy()
                },
                "knows no replica it could promote",
            ),
            (
                SentinelAnswers { replicas: Ok(vec![fields(&[("ip", "r")])]), ..healthy() },
                "knows no replica it could promote",
            ),
            (SentinelAnswers { master: Ok(vec![]), ..healthy() }, "gave no flags for the master"),
            (SentinelAnswers { info: Ok("sentinel_tilt:1\r\n".into()), ..healthy() }, "is in TILT mode"),
            (
                SentinelAnswers {
                    quorum: Err((Some("NOQUORUM".into()), "NOQUORUM 1 usable Sentinels. Not enough …".into())),
                    ..healthy()
                },
                "the group cannot fail the master over: NOQUORUM 1 usable Sentinels",
            ),
            (
                SentinelAnswers { quorum: Err((Some("NOPERM".into()), "NOPERM no permission".into())), ..healthy() },
                "cannot ask it whether the group can fail the master over (CKQUORUM): NOPERM",
            ),
            (SentinelAnswers { master: Err("NOPERM x".into()), ..healthy() }, "cannot ask it about the master: NOPERM"),
        ] {
            let (_, wrong) = judged(a);
            assert_eq!(wrong.len(), 1, "{says}: {wrong:?}");
            assert!(wrong[0].starts_with(says), "{says}: {wrong:?}");
        }
        // One replica it could promote is enough; one cut off for less than
        // 10 × down-after still is one, as Sentinel itself would pick it.
        let two = SentinelAnswers {
            replicas: Ok(vec![replica("s_down,slave", "0", "100"), replica("slave", "50000", "100")]),
            ..healthy()
        };
        assert_eq!(judged(two).1, Vec::<String>::new());
    }

    fn unread() -> AliasHealth {
        AliasHealth::Unknown("not read yet".into())
    }

    fn side(env: &str, weight: u8, healthy: Option<bool>) -> SideWeight {
        SideWeight {
            environment: Some(env.into()),
            set_identifier: env.into(),
            weight: Some(weight),
            health_check: healthy.map(|h| crate::aws::route53::HealthCheckState {
                id: format!("hc-{env}"),
                healthy: Some(h),
                status: "Failure: HTTP Status Code 503".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_unhealthy_side_gets_nothing_unless_every_side_is_unhealthy() {
        let mut s = vec![side("old", 70, None), side("new", 30, Some(false))];
        apply_health(&mut s, |_| unread());
        assert_eq!((s[0].effective_share_percent, s[1].effective_share_percent), (100.0, 0.0));
        assert!(s[1].no_traffic.as_deref().is_some_and(|w| w.contains("hc-new")), "{:?}", s[1].no_traffic);
        // All unhealthy: Route53 answers as if all were healthy.
        let mut s = vec![side("old", 70, Some(false)), side("new", 30, Some(false))];
        apply_health(&mut s, |_| unread());
        assert_eq!((s[0].effective_share_percent, s[1].effective_share_percent), (70.0, 30.0));
        assert!(s.iter().all(|s| s.no_traffic.is_none()));
        // The healthy side at weight 0 alone: it gets everything.
        let mut s = vec![side("old", 0, Some(true)), side("new", 30, Some(false))];
        apply_health(&mut s, |_| unread());
        assert_eq!((s[0].effective_share_percent, s[1].effective_share_percent), (100.0, 0.0));
        // An alias evaluating target health with no healthy target.
        let mut s = vec![side("old", 50, None), side("new", 50, None)];
        s[1].alias_target = Some(crate::aws::route53::Alias {
            hosted_zone_id: "Z".into(),
            dns_name: "alb.example".into(),
            evaluate_target_health: true,
        });
        apply_health(&mut s, |env| if env == "new" { AliasHealth::Known(false) } else { unread() });
        assert_eq!(s[1].effective_share_percent, 0.0);
        // A side at weight 0 is not "without traffic despite its weight".
        let mut s = vec![side("old", 100, None), side("new", 0, Some(false))];
        apply_health(&mut s, |_| unread());
        assert_eq!(s[1].no_traffic, None);
        // Unless every weight is 0: an even share, lost to its failing check.
        let mut s = vec![side("old", 0, None), side("new", 0, Some(false))];
        apply_health(&mut s, |_| unread());
        assert!(s[1].no_traffic.as_deref().is_some_and(|w| w.contains("hc-new")), "{:?}", s[1].no_traffic);
    }

    /// Health cutover could not read is unknown, never "gets traffic".
    #[test]
    fn a_side_whose_health_cannot_be_read_is_unknown() {
        let mut s = vec![side("old", 50, Some(true)), side("new", 50, Some(true))];
        s[1].health_check.as_mut().unwrap().healthy = None;
        apply_health(&mut s, |_| unread());
        assert_eq!(s[0].traffic_unknown, None);
        assert!(s[1].traffic_unknown.as_deref().is_some_and(|w| w.contains("health check hc-new could not be judged")));
        let mut s = vec![side("old", 50, None), side("new", 50, None)];
        s[1].alias_target = Some(crate::aws::route53::Alias {
            hosted_zone_id: "Z".into(),
            dns_name: "alb.example".into(),
            evaluate_target_health: true,
        });
        apply_health(&mut s, |_| unread());
        assert!(s[1].traffic_unknown.as_deref().is_some_and(|w| w.contains("alias target alb.example")));
        apply_health(&mut s, |_| AliasHealth::Known(true));
        assert_eq!(s[1].traffic_unknown, None);
        apply_health(&mut s, |_| AliasHealth::Known(false));
        assert_eq!((s[1].traffic_unknown.as_deref(), s[1].no_traffic.is_some()), (None, true), "known: none");
    }

    /// A side at 0 behind one above 0 whose health cannot be read: were
    /// that one down, Route53 would send it everything, so whether it gets
    /// any traffic is unknown too, never a definite 0%.
    #[test]
    fn a_side_whose_traffic_rests_on_anothers_unknown_health_is_unknown() {
        let mut s = vec![side("old", 0, None), side("new", 100, Some(true))];
        s[1].health_check.as_mut().unwrap().healthy = None;
        apply_health(&mut s, |_| unread());
        assert_eq!(s[0].effective_share_percent, 0.0);
        let why = s[0].traffic_unknown.as_deref().unwrap_or_default();
        assert!(why.contains("rests on the health of `new`") && why.contains("hc-new could not be judged"), "{why}");
        // Known healthy: old gets nothing, and that is known.
        s[1].health_check.as_mut().unwrap().healthy = Some(true);
        apply_health(&mut s, |_| unread());
        assert_eq!((s[0].traffic_unknown.as_deref(), s[0].effective_share_percent), (None, 0.0));
        // Above 0 itself, old gets traffic whatever new's health is.
        let mut s = vec![side("old", 10, None), side("new", 90, Some(true))];
        s[1].health_check.as_mut().unwrap().healthy = None;
        apply_health(&mut s, |_| unread());
        assert_eq!(s[0].traffic_unknown, None);
    }

    use super::*;

    #[test]
    fn a_runbook_endpoint_prefers_its_url_variable_and_takes_its_passwords_from_variables() {
        let ep = RedisEndpoint {
            name: "c".into(),
            environment: "e".into(),
            url: Some("redis://fallback:6379/0".into()),
            url_env: Some("C_URL".into()),
            password_env: Some("C_PW".into()),
            sentinel_password_env: None,
            sentinel_port: None,
            port: 6379,
            security_groups: vec![],
            elasticache: None,
        };
        let vars = |k: &str| match k {
            "C_URL" => Some("redis://127.0.0.1:7000/0".to_string()),
            "C_PW" => Some("master-pw".to_string()),
            "C_SENTINEL_PW" => Some("sentinels-pw".to_string()),
            _ => None,
        };
        let e = redis_endpoint(&ep, "Redis", vars).unwrap();
        assert_eq!(e.redacted(), "redis://:***@127.0.0.1:7000/0");
        assert_eq!(redis_endpoint(&ep, "Redis", |_| None).unwrap_err(), "password variable C_PW is not set");
        let sentinel = RedisEndpoint {
            url: Some("redis+sentinel://s1:26379,s2:26379/mymaster/0".into()),
            url_env: None,
            sentinel_password_env: Some("C_SENTINEL_PW".into()),
            ..ep.clone()
        };
        let e = redis_endpoint(&sentinel, "Redis", vars).unwrap();
        assert_eq!(e.redacted(), "redis+sentinel://:***@s1:26379,s2:26379/mymaster/0");
        assert_eq!(e.scrub("master-pw and sentinels-pw"), "*** and ***");
        let plain = RedisEndpoint { sentinel_password_env: Some("C_SENTINEL_PW".into()), ..ep };
        assert!(
            redis_endpoint(&plain, "Redis", vars)
                .unwrap_err()
                .starts_with("a sentinel password is for a redis+sentinel:// URL")
        );
    }
}
