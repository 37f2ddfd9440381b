//! Shifting the weighted records: both sides in one change batch, then wait
//! until Route53 reports INSYNC.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::PlanError;
use crate::aws::route53::{WeightChange, WeightedRecord, change_insync, weighted_group, zone_id};
use crate::aws::{AwsError, Clients};
use crate::engine::Weights;
use crate::runbook::Runbook;
use crate::store::audit::Stage;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Side {
    pub environment: String,
    /// The record of the runbook's first type.
    pub record: WeightedRecord,
    /// The side's records of the group's other types (AAAA beside A),
    /// always given the same weight in the same batch.
    pub others: Vec<WeightedRecord>,
}

impl Side {
    /// Its record of each type, the runbook's first type first.
    pub fn records(&self) -> impl Iterator<Item = &WeightedRecord> {
        std::iter::once(&self.record).chain(self.others.iter())
    }
}

/// A record of the weighted group beside the two sides of a shift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherRecord {
    /// The runbook's environment whose record it is; None: not listed.
    pub environment: Option<String>,
    #[serde(flatten)]
    pub record: WeightedRecord,
}

/// The TTL Route53 gives an alias's answers: an alias has none of its own
/// and takes its target's, fixed at 60 s for an ELB load balancer or an S3
/// website (Route53 FAQ, DNS failover). An alias to a record of the same
/// zone takes that record's, which is not read: counted as this too.
pub const ALIAS_TTL: u32 = 60;

/// A weight change, fully planned from what Route53 says now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftPlan {
    pub zone_id: String,
    pub name: String,
    pub record_type: String,
    pub from: Side,
    pub to: Side,
    /// The new weights (from, to).
    pub weights: Weights,
    /// The group's records (of every type) beside the two sides': another
    /// environment's of the runbook (`Some` its name) or one it does not
    /// list. Untouched, they keep their share of the traffic, so every
    /// share this plan judges counts them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<OtherRecord>,
    /// What could not be checked before it (`raised_sides_serve`), shown
    /// with it in the confirm popup and by `cutover run`.
    #[serde(skip)]
    pub unchecked: Vec<String>,
}

impl ShiftPlan {
    /// Each type's weights before (from, to) where the group's types weigh
    /// the sides otherwise; None where the first type's pair speaks for all.
    pub fn before_by_type(&self) -> Option<std::collections::BTreeMap<String, Weights>> {
        self.types_differ()?;
        // Both sides' records are in the group's order of types (`plan`).
        Some(
            self.from
                .records()
                .zip(self.to.records())
                .map(|(f, t)| (f.record_type.clone(), (f.weight, t.weight)))
                .collect(),
        )
    }
    /// The weights before, as the audit has them (`weights_before`): a
    /// share this change takes on one type alone (AAAA, with A already at
    /// 0) is then on record, and a stop waits out its TTL.
    pub fn before(&self) -> serde_json::Value {
        let first = (self.from.record.weight, self.to.record.weight);
        weights_before((&self.from.environment, &self.to.environment), first, self.before_by_type().as_ref())
    }
    pub fn after(&self) -> serde_json::Value {
        serde_json::json!({ &self.from.environment: self.weights.0, &self.to.environment: self.weights.1 })
    }
    /// Every record with its new weight.
    fn changes(&self) -> impl Iterator<Item = (&WeightedRecord, u8)> {
        self.from.records().map(|r| (r, self.weights.0)).chain(self.to.records().map(|r| (r, self.weights.1)))
    }
    pub fn is_noop(&self) -> bool {
        self.changes().all(|(r, w)| r.weight == w)
    }
    /// Why the group's record types (A and AAAA) give the sides other
    /// weights, if they do: the first type's pair then speaks for one kind
    /// of client only.
    pub fn types_differ(&self) -> Option<String> {
        let by_type: Vec<(&str, Vec<Option<u8>>)> = self
            .from
            .records()
            .map(|r| {
                let t = r.record_type.as_str();
                let of = |s: &Side| s.records().find(|x| x.record_type == t).map(|x| x.weight);
                (t, vec![of(&self.from), of(&self.to)])
            })
            .collect();
        crate::analysis::weights::types_differ(&[&self.from.environment, &self.to.environment], &by_type)
    }

    /// The group's types: `A`, or `A+AAAA`.
    fn types(&self) -> String {
        if self.from.others.is_empty() {
            return self.record_type.clone();
        }
        self.from.records().map(|r| r.record_type.as_str()).collect::<Vec<_>>().join("+")
    }
    /// What resolvers may hold an answer other than the `to` side's for:
    /// the largest TTL of every other record of the group (the `from`
    /// side's, and a third environment's or an unlisted one's, whose share
    /// a step beside them can lower too), an alias's being its target's
    /// (`ALIAS_TTL`). Once those answers expire the `to` side has at least
    /// its new share (its own answers, however long held, only add to it):
    /// what a soak must wait before judging it.
    pub fn lowered_ttl(&self) -> Option<u32> {
        let ttl = |r: &WeightedRecord| r.ttl.or(r.alias_target.as_ref().map(|_| ALIAS_TTL));
        self.from.records().chain(self.others.iter().map(|o| &o.record)).filter_map(ttl).max()
    }
    /// `production (prod) 100 → 70, staging (staging) 0 → 30`; a group
    /// whose types weigh the sides otherwise says so.
    pub fn describe(&self) -> String {
        let differ = self.types_differ().map(|why| format!(" ({why}; every type gets the new weights)"));
        let base = format!(
            "{} ({}) {} → {}, {} ({}) {} → {} on {} {}",
            self.from.environment,
            self.from.record.set_identifier,
            self.from.record.weight,
            self.weights.0,
            self.to.environment,
            self.to.record.set_identifier,
            self.to.record.weight,
            self.weights.1,
            self.name,
            self.types()
        );
        base + &differ.unwrap_or_default() + &self.others_share().unwrap_or_default()
    }

    /// The weights of the group's other records of `record_type`.
    pub fn other_weights(&self, record_type: &str) -> Vec<u8> {
        self.others.iter().filter(|o| o.record.record_type == record_type).map(|o| o.record.weight).collect()
    }

    /// What the group's other records leave the sides, when one carries
    /// weight: the new weights are not the sides' shares then. Each type on
    /// its own, as Route53 answers them.
    fn others_share(&self) -> Option<String> {
        let dual = !self.from.others.is_empty();
        let each: Vec<String> = self
            .from
            .records()
            .map(|r| r.record_type.as_str())
            .filter_map(|t| {
                let kept: Vec<&OtherRecord> =
                    self.others.iter().filter(|o| o.record.record_type == t && o.record.weight > 0).collect();
                if kept.is_empty() {
                    return None;
                }
                let weights: Vec<u8> =
                    [self.weights.0, self.weights.1].into_iter().chain(self.other_weights(t)).collect();
                let s = crate::analysis::weights::shares(&weights);
                let names: Vec<String> = kept
                    .iter()
                    .map(|o| {
                        let whose = match &o.environment {
                            Some(env) => format!("{env}'s record"),
                            None => "not in the runbook".to_string(),
                        };
                        format!("`{}` at {} ({whose})", o.record.set_identifier, o.record.weight)
                    })
                    .collect();
                Some(format!(
                    "{}{} {} unchanged: {} will get {:.1}% of the traffic, {} {:.1}%",
                    if dual { format!("{t}: ") } else { String::new() },
                    names.join(", "),
                    if kept.len() == 1 { "stays" } else { "stay" },
                    self.to.environment,
                    s[1] * 100.0,
                    self.from.environment,
                    s[0] * 100.0
                ))
            })
            .collect();
        (!each.is_empty()).then(|| format!("; {}", each.join("; ")))
    }

    /// The batch to send: every changed record as read, with its new weight.
    pub fn weight_change(&self) -> WeightChange<'_> {
        WeightChange { zone_id: &self.zone_id, name: &self.name, records: self.changes().collect() }
    }

    /// The batch as JSON, for --dry-run.
    pub fn batch_json(&self) -> serde_json::Value {
        self.weight_change().to_json()
    }

    /// Whether both plans hold the same records, field for field, as read.
    fn same_records(&self, other: &ShiftPlan) -> bool {
        let read = |p: &ShiftPlan| p.changes().map(|(r, _)| r.as_read(&p.name).ok()).collect::<Vec<_>>();
        read(self) == read(other)
    }
}

/// Weights as the audit has them: `{from: weight, to: weight}`, or, for
/// the weights before a change where the group's types weighed the sides
/// otherwise, each type's `{type: {from: weight, to: weight}}` (`by_type`).
pub fn weights_before(
    (from, to): (&str, &str),
    first: Weights,
    by_type: Option<&std::collections::BTreeMap<String, Weights>>,
) -> serde_json::Value {
    let pair = |w: &Weights| serde_json::json!({ from: w.0, to: w.1 });
    match by_type {
        None => pair(&first),
        Some(each) => each.iter().map(|(t, w)| (t.clone(), pair(w))).collect(),
    }
}

/// Plans putting `to_weights` on the records; refuses anything unsafe before
/// a single byte is sent.
pub async fn plan(clients: &Clients, rb: &Runbook, weights: Weights) -> Result<ShiftPlan, PlanError> {
    let aws = PlanError::Aws;
    let zone = zone_id(&clients.route53, &rb.dns.zone).await.map_err(aws)?;
    let types = rb.dns.types();
    let records = weighted_group(&clients.route53, &zone, &rb.dns.record, &types).await.map_err(aws)?;
    let side = |env: &str| -> Result<Side, String> {
        let id = rb.dns.set_identifiers.get(env).ok_or_else(|| format!("environment {env} has no set identifier"))?;
        let mut found = Vec::new();
        for t in &types {
            let record =
                records.iter().find(|r| &r.set_identifier == id && &r.record_type == t).cloned().ok_or_else(|| {
                    let dual = if types.len() > 1 {
                        format!(" (the group is {}: every side needs a record of each type)", types.join(" and "))
                    } else {
                        String::new()
                    };
                    format!(
                        "no weighted record {} {t} with set identifier `{id}` in zone {zone}{dual}; create it first",
                        rb.dns.record
                    )
                })?;
            found.push(record);
        }
        let record = found.remove(0);
        Ok(Side { environment: env.to_string(), record, others: found })
    };
    let (from, to) =
        (side(&rb.rollout.from).map_err(PlanError::Refused)?, side(&rb.rollout.to).map_err(PlanError::Refused)?);
    // Route53 wants one TTL across a group's plain records; an alias has none
    // of its own, so a plain record weighted against an alias is fine.
    for (f, t) in from.records().zip(to.records()) {
        if let (Some(a), Some(b)) = (f.ttl, t.ttl)
            && a != b
        {
            return Err(PlanError::Refused(format!(
                "the weighted records' TTLs differ ({} has {a} s, {} has {b} s); Route53 needs the same TTL on every record of the group: make them equal first",
                f.set_identifier, t.set_identifier
            )));
        }
    }
    // Every record but the two sides': a third environment of the runbook
    // (dr, say) takes its share as one it does not list does.
    let sides = [&from.record.set_identifier, &to.record.set_identifier];
    let others = records
        .iter()
        .filter(|r| !sides.contains(&&r.set_identifier))
        .map(|r| OtherRecord {
            environment: rb.dns.environment_of(&r.set_identifier).map(str::to_string),
            record: r.clone(),
        })
        .collect();
    Ok(ShiftPlan {
        zone_id: zone,
        name: rb.dns.record.clone(),
        record_type: types[0].clone(),
        from,
        to,
        weights,
        others,
        unchecked: Vec::new(),
    })
}

/// Whether each side's share of the traffic grows from weights `old` to
/// `new` (from, to), beside the group's `others` records (the runbook does
/// not list them; unchanged). Route53 splits by each record's share of the
/// group's total, and equally among every record when every weight is 0.
pub fn raises_share(old: Weights, new: Weights, others: &[u8]) -> (bool, bool) {
    let rest: u32 = others.iter().map(|&w| u32::from(w)).sum();
    let total = |w: Weights| u32::from(w.0) + u32::from(w.1) + rest;
    let records = 2 + others.len() as u32;
    let share = |w: u8, total: u32| if total == 0 { (1, records) } else { (u32::from(w), total) };
    let grows = |o: u8, n: u8| {
        let ((a, b), (c, d)) = (share(n, total(new)), share(o, total(old)));
        a * d > c * b
    };
    (grows(old.0, new.0), grows(old.1, new.1))
}

/// The plan of a shift to `weights` with the sides it raises judged, as
/// the send judges them (`raised_sides_serve`, groups not found refused).
/// A refusal is audited `refused` as `action` by `who` (a dry run gives
/// none: it changes nothing).
pub async fn plan_judged(
    sides: &crate::aws::SideClients,
    rb: &Runbook,
    weights: Weights,
    audit: Option<(&crate::authority::Actor, &str)>,
) -> Result<ShiftPlan, PlanError> {
    let judged = async {
        let mut p = plan(sides.dns(), rb, weights).await?;
        p.unchecked = raised_sides_serve(sides, rb, &p, true).await?;
        Ok(p)
    }
    .await;
    if let (Err(PlanError::Refused(why)), Some((who, action))) = (&judged, audit) {
        let line = who.audit_line(&rb.name, action.to_string(), Stage::Refused, Default::default(), why.clone());
        if let Err(e) = crate::store::audit::AuditLog::for_runbook(&rb.name).append(&line) {
            return Err(PlanError::Refused(format!("{why} (and the refusal could not be audited: {e})")));
        }
    }
    judged
}

/// Refuses a plan that raises the share of a side with a target group
/// holding no target in service: its load balancer answers 503 for that share
/// of users (old production after stop-old, say, or a side still warming
/// up). A side without target groups is judged by its instances: none
/// running, refused. Taking share away from a side is never refused: it is how one is left.
/// A side whose groups cannot be read (another region, a role allowed
/// Route53 only) is not held back, since a weight change must stay possible
/// in an emergency: Ok carries what was not checked, for the operator.
/// Groups or instances the runbook names that are not found refuse too when
/// `unfound_refuses`; a rollback passes false, as only a side seen unable to
/// serve holds it back (a group recreated under another name still serves).
pub async fn raised_sides_serve(
    sides: &crate::aws::SideClients,
    rb: &Runbook,
    plan: &ShiftPlan,
    unfound_refuses: bool,
) -> Result<Vec<String>, PlanError> {
    let mut unchecked = Vec::new();
    // Each record type on its own (Route53 answers A and AAAA apart), so a
    // hand-edited AAAA pair with other weights than the A pair is judged
    // too: a side's record of the first type whose share grows.
    let pairs: Vec<_> = plan.from.records().zip(plan.to.records()).collect();
    // The side's record whose share grows, and the other side's of its type.
    let raised_record = |from: bool| {
        pairs.iter().find_map(|(f, t)| {
            let grows = raises_share((f.weight, t.weight), plan.weights, &plan.other_weights(&f.record_type));
            match from {
                true => grows.0.then_some((*f, *t)),
                false => grows.1.then_some((*t, *f)),
            }
        })
    };
    let (w_from, w_to) = plan.weights;
    let raised = [(&plan.from, w_from, w_to, raised_record(true)), (&plan.to, w_to, w_from, raised_record(false))];
    for (side, weight, new_other, records) in raised {
        let Some((record, other)) = records else { continue };
        let name = &side.environment;
        // `production's weight from 0 to 100`, `production's AAAA weight …`
        // in a dual-stack group, or its share when only the other side's
        // weight moves.
        let of_type = match side.others.is_empty() {
            true => String::new(),
            false => format!("{} ", record.record_type),
        };
        let whose = if record.weight != weight {
            format!("{name}'s {of_type}weight from {} to {weight}", record.weight)
        } else {
            // Beside the records the runbook does not list, as Route53 splits.
            let others = plan.other_weights(&record.record_type);
            let share =
                |w: u8, o: u8| crate::analysis::weights::shares(&[[w, o].as_slice(), &others].concat())[0] * 100.0;
            let (was, will) = (share(weight, other.weight), share(weight, new_other));
            // One decimal where whole percents would read the same.
            let digits = usize::from(format!("{was:.0}") == format!("{will:.0}"));
            format!(
                "{name}'s {of_type}share of the traffic from {was:.digits$}% to {will:.digits$}% (its weight stays {weight})"
            )
        };
        let Some(env) = rb.environment(name) else { continue };
        let reached = crate::runbook::Side::Environment(name.clone());
        let clients = sides.side(&reached);
        // Read in another account than the side's, a namesake's load
        // balancer could answer for it: not checked, never passed.
        if rb.has_side_access() {
            // Only a proven mismatch: an STS error (throttling) must not turn
            // a refusal the target health would give into a printed line.
            let how = sides.reach(&reached).describe();
            let want = rb.side_account(&reached);
            let wrong = match crate::authority::other_account(clients, want.as_deref()).await {
                Ok(Some(found)) => {
                    Some(format!("its credentials ({how}) are for account {found}, not {}", want.unwrap_or_default()))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(environment = %name, error = %e, "account not told before raising its weight");
                    None
                }
            };
            if let Some(why) = wrong {
                tracing::warn!(environment = %name, why, "target health not read before raising its weight");
                unchecked.push(format!("NOT CHECKED: whether {name} can take the share this raises ({why})"));
                continue;
            }
        }
        // Without target groups (a box its record names directly), its
        // instances serve: one must be running.
        if env.target_groups.is_empty() {
            let found = crate::aws::ec2::describe_instances_with_terminated(&clients.ec2, &env.instances).await;
            let states = |found: &[crate::aws::ec2::Instance]| {
                found.iter().map(|i| format!("{} {}", i.id, i.state)).collect::<Vec<_>>().join(", ")
            };
            let here = || async {
                matches!(
                    crate::authority::environment_region_check(sides, rb, name, &clients.region).await,
                    crate::authority::RegionCheck::Here
                )
            };
            match found {
                Ok(found) if found.iter().any(|i| i.state == "running") => {}
                Ok(found) if !found.is_empty() => {
                    let fix = match found.iter().all(|i| i.state == "terminated") {
                        true => "launch a replacement and correct the runbook's instance selector",
                        false => "start them, or wait until they run",
                    };
                    return Err(PlanError::Refused(format!(
                        "raising {whose} would send that traffic to its instances, none of which is running ({}); {fix}",
                        states(&found)
                    )));
                }
                // Found nowhere in the region the runbook's load balancers
                // are in (it names some): gone (terminated over an hour
                // ago), not elsewhere.
                Ok(_)
                    if unfound_refuses
                        && rb.environments.values().any(|e| e.load_balancer.is_some())
                        && here().await =>
                {
                    return Err(PlanError::Refused(format!(
                        "raising {whose} would send that traffic to its instances, but its instance selector finds none in {}; correct the runbook, or start the box it names",
                        clients.region
                    )));
                }
                Err(e)
                    if unfound_refuses
                        && e.kind == crate::aws::AwsErrorKind::NotFound
                        && rb.environments.values().any(|e| e.load_balancer.is_some())
                        && here().await =>
                {
                    return Err(PlanError::Refused(format!(
                        "raising {whose} would send that traffic to its instances, which are not found ({e}); correct the runbook"
                    )));
                }
                // Another region, or instances outside EC2.
                found => {
                    let why = found.err().map_or("its instance selector finds none".to_string(), |e| e.to_string());
                    tracing::warn!(environment = %name, error = %why, "instances not read before raising its weight");
                    unchecked.push(format!(
                        "NOT CHECKED: whether {name} has an instance running to take the share this raises ({why})"
                    ));
                }
            }
            continue;
        }
        let groups = match crate::aws::elb::target_groups(&clients.elb, &env.target_groups).await {
            Ok(groups) => groups,
            // Not found where the environment's own load balancer is: the
            // runbook names a group that is gone, not another region.
            Err(e)
                if unfound_refuses
                    && e.kind == crate::aws::AwsErrorKind::NotFound
                    && env.load_balancer.is_some()
                    && matches!(
                        crate::authority::environment_region_check(sides, rb, name, &clients.region).await,
                        crate::authority::RegionCheck::Here
                    ) =>
            {
                return Err(PlanError::Refused(format!(
                    "{name}'s target groups ({}) are not found beside its load balancer ({e}), so whether it can take the share this raises is unknown; correct the runbook",
                    env.target_groups.join(", ")
                )));
            }
            Err(e) => {
                tracing::warn!(environment = %name, error = %e, "target health not read before raising its weight");
                unchecked.push(format!(
                    "NOT CHECKED: whether {name} has a target in service to take the share this raises ({e})"
                ));
                continue;
            }
        };
        // With every target unhealthy an ALB fails open and routes to all of
        // them; unused (stopped, an AZ not enabled), initial, draining or none
        // registered, it has nothing to route to. `unavailable` is AWS not
        // knowing (Elb.InternalError: an instance group's checks cannot be
        // disabled): neither in service nor out, so not checked.
        let in_service = |t: &crate::aws::elb::Target| matches!(t.state.as_str(), "healthy" | "unhealthy");
        let unknown = |t: &crate::aws::elb::Target| t.state == "unavailable";
        // A group surely out of service is refused first, whatever another
        // group AWS cannot judge says.
        let states = |g: &crate::aws::elb::TargetGroup| match g.targets.is_empty() {
            true => "none registered".to_string(),
            false => g
                .targets
                .iter()
                .map(|t| {
                    let reason = t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                    format!("{} {}{reason}", t.id, t.state)
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some(g) = groups.iter().find(|g| !g.targets.iter().any(|t| in_service(t) || unknown(t))) {
            // Just registered (or started), a target is `initial` until its
            // health checks pass: waiting, not registering, is the way.
            let fix = match g.targets.iter().any(|t| t.state == "initial") {
                true => {
                    "wait until its `initial` targets pass their health checks (the group's interval × healthy \
                         threshold after they were registered), then run this again"
                }
                false => "start or register healthy instances first",
            };
            return Err(PlanError::Refused(format!(
                "raising {whose} would send that traffic to target group {}, which has no target in service ({}); {fix}",
                g.name,
                states(g)
            )));
        }
        // No healthy target: the load balancer fails open and sends the
        // share to the unhealthy ones (the others get nothing), each
        // answering as its check does: a broken deploy. Traffic going back
        // to the rollout's `from` side (a rollback, `shift --to 0`) is not
        // held back by it (it may be that side's dependency failing, while
        // its apps serve).
        let forward = unfound_refuses && *name == rb.rollout.to;
        let unhealthy_only = |g: &&crate::aws::elb::TargetGroup| {
            !g.targets.iter().any(|t| t.state == "healthy") && g.targets.iter().any(|t| t.state == "unhealthy")
        };
        if let Some(g) = groups.iter().filter(unhealthy_only).find(|g| g.targets.iter().any(unknown)) {
            unchecked.push(format!(
                "NOT CHECKED: whether {name} can serve the share this raises (target group {}: no target passes its \
                 health check, and AWS cannot tell some targets' health: {})",
                g.name,
                states(g)
            ));
        }
        if let Some(g) = groups.iter().filter(unhealthy_only).find(|g| !g.targets.iter().any(unknown)) {
            let why = format!(
                "target group {}, none of whose targets passes its health check ({}): its load balancer fails open \
                 and sends the share to the unhealthy ones",
                g.name,
                states(g)
            );
            if forward {
                return Err(PlanError::Refused(format!(
                    "raising {whose} would send that traffic to {why}; make them pass their health check first"
                )));
            }
            unchecked.push(format!("NOT CHECKED: whether {name} can serve the share this raises ({why})"));
        }
        if let Some(g) = groups.iter().find(|g| !g.targets.iter().any(in_service)) {
            tracing::warn!(environment = %name, group = %g.name, "target health unavailable before raising its weight");
            unchecked.push(format!(
                "NOT CHECKED: whether {name} has a target in service to take the share this raises (target group {}: \
                 AWS says its targets' health is unavailable)",
                g.name
            ));
        }
        // Targets in service serve nothing their load balancer does not
        // route to them: a listener answering a fixed 503, or forwarding to
        // a new empty group, as the gates judge it.
        let Some(lb_name) = &env.load_balancer else { continue };
        let listed: Vec<(&str, &str)> = groups.iter().map(|g| (g.name.as_str(), g.arn.as_str())).collect();
        match crate::aws::elb::load_balancer_routing(&clients.elb, lb_name).await {
            // Not a refusal: a listed group no listener forwards to leaves
            // the side unknown, not seen unable to serve (it may serve
            // through a group the runbook does not list), and a rollback or
            // a `shift --to 0` must stay possible.
            Ok(lb) => {
                // Its targets answering says nothing of a record sending the
                // share elsewhere (one copied from the other side's, or
                // left on a retired load balancer).
                for r in side.records() {
                    match record_reaches(r, &lb) {
                        Reaches::Yes => {}
                        // Certain to miss the side: refused even going back,
                        // except for the rollout's own rollback.
                        Reaches::Another(why) if unfound_refuses => {
                            return Err(PlanError::Refused(format!(
                                "raising {whose} would send that traffic to {why}; point {name}'s record at its own \
                                 load balancer, or name in the runbook the one it points at"
                            )));
                        }
                        Reaches::Another(why) | Reaches::Unknown(why) => unchecked.push(format!(
                            "NOT CHECKED: whether the share this raises reaches {name}'s targets ({why})"
                        )),
                    }
                }
                if let Err(crate::status::RoutingGap::NotRouted(why) | crate::status::RoutingGap::Unknown(why)) =
                    crate::status::routing_gap(&lb, &listed, name, &rb.dns.record)
                {
                    unchecked.push(format!("NOT CHECKED: whether {name}'s targets get the share this raises ({why})"))
                }
            }
            Err(e) => {
                tracing::warn!(environment = %name, error = %e, "routing not read before raising its weight");
                unchecked.push(format!(
                    "NOT CHECKED: whether {name}'s load balancer routes the share this raises to its targets ({e})"
                ));
            }
        }
    }
    Ok(unchecked)
}

impl ShiftPlan {
    /// Of the NOT CHECKED lines of a check made again, those the plan as
    /// confirmed did not show (the check passed then; a read fails now).
    pub fn unchecked_anew(&self, lines: Vec<String>) -> Vec<String> {
        lines.into_iter().filter(|l| !self.unchecked.contains(l)).collect()
    }
}

/// An intent's detail with the NOT CHECKED lines it goes ahead without.
pub fn with_unchecked(detail: String, unchecked: &[String]) -> String {
    match unchecked.is_empty() {
        true => detail,
        false => format!("{detail}; {}", unchecked.join("; ")),
    }
}

/// Whether a side's record sends its share to the side's load balancer.
enum Reaches {
    Yes,
    /// Surely not: another load balancer's name.
    Another(String),
    /// Not known: addresses, or a name of one's own that may lead to it.
    Unknown(String),
}

fn record_reaches(r: &crate::aws::route53::WeightedRecord, lb: &crate::aws::elb::LoadBalancer) -> Reaches {
    use crate::analysis::weights::{alias_names, is_load_balancer_name};
    let dns = lb.dns_name.trim_end_matches('.');
    match r.points_at() {
        Some(t) if alias_names(t, dns) => Reaches::Yes,
        Some(t) if is_load_balancer_name(t) => Reaches::Another(format!(
            "another load balancer: its {} record points at {}, not at {} ({dns})",
            r.record_type,
            t.trim_end_matches('.'),
            lb.name
        )),
        Some(t) => Reaches::Unknown(format!(
            "its {} record points at {}, not at load balancer {} ({dns})",
            r.record_type,
            t.trim_end_matches('.'),
            lb.name
        )),
        None => Reaches::Unknown(format!(
            "its {} record holds addresses ({}), not load balancer {}'s name: a load balancer's addresses change, so \
             a record for one is an alias",
            r.record_type,
            r.values.join(", "),
            lb.name
        )),
    }
}

/// What the records say after a ChangeResourceRecordSets that failed or
/// got no reply (it may still have been applied).
#[derive(Debug, Clone, PartialEq)]
pub enum ReadBack {
    /// The new weights are live: the change was applied.
    Live,
    /// Every record exactly as it was read: nothing was applied.
    Unchanged,
    /// Someone else changed the records: planned again from them.
    Changed(Box<ShiftPlan>),
    /// The records could not be read.
    Unreadable(String),
}

/// Reads the records back after a failed send of `sent`.
pub async fn read_back(clients: &Clients, rb: &Runbook, sent: &ShiftPlan) -> ReadBack {
    match plan(clients, rb, sent.weights).await {
        Ok(p) if p.is_noop() => ReadBack::Live,
        Ok(p) if p.same_records(sent) => ReadBack::Unchanged,
        Ok(p) => ReadBack::Changed(Box::new(p)),
        Err(e) => ReadBack::Unreadable(e.to_string()),
    }
}

/// How long a send that got no answer (timed out, throttled) is read back
/// while the records read unchanged: Route53 finishes a request whose
/// client gave up, so a first read may come before it lands.
pub const SETTLE: Duration = Duration::from_secs(30);

/// As [`read_back`] after the send failed with `e`: where no answer may
/// hide a change still being processed, read again (2, 4, 8, 16 s apart)
/// until the records move or [`SETTLE`] has passed.
pub async fn read_back_after(clients: &Clients, rb: &Runbook, sent: &ShiftPlan, e: &AwsError) -> ReadBack {
    let started = Instant::now();
    let mut wait = Duration::from_secs(2);
    loop {
        let back = read_back(clients, rb, sent).await;
        if back != ReadBack::Unchanged || !e.is_transient() || started.elapsed() + wait > SETTLE {
            return back;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// Route53 refused the batch as a whole (a DELETE that no longer matches).
pub fn refused_batch(e: &AwsError) -> bool {
    e.message.starts_with("InvalidChangeBatch")
}

/// What to tell about a send that failed (anything but `ReadBack::Live`).
pub fn failed_send_message(e: &AwsError, back: &ReadBack) -> String {
    match back {
        // No reply; or the SDK's retry of a change already applied, refused.
        ReadBack::Live => format!("the call failed ({e}), but read back: the new weights are live (it was applied)"),
        // No reply: Route53 may have taken it and apply it later still.
        ReadBack::Unchanged if e.kind == crate::aws::AwsErrorKind::Unreachable => format!(
            "the call got no answer ({e}); read back: the records are still unchanged, but Route53 may yet apply it: \
             read the weights again before acting on them"
        ),
        ReadBack::Unchanged => {
            format!("the change was not accepted: {e}; read back: the records are unchanged; weights are unchanged")
        }
        ReadBack::Changed(p) if refused_batch(e) => format!(
            "the records changed since they were read; re-planned from the live records: {}; nothing was sent over them (Route53 refused the batch: {e}); check who changed them, then run again",
            p.describe()
        ),
        ReadBack::Changed(p) => format!(
            "the change failed ({e}) and the records are neither as read nor as planned; read back: {}",
            p.before()
        ),
        ReadBack::Unreadable(r) => format!(
            "the change failed ({e}) and the records could not be read back ({r}): it may or may not be live; check `cutover status` before anything else"
        ),
    }
}

/// Sends the batch; returns the change id. Only under an authorised `Actor`.
pub async fn apply(clients: &Clients, _who: &crate::authority::Actor, plan: &ShiftPlan) -> Result<String, AwsError> {
    plan.weight_change().send(&clients.route53, &format!("cutover: {}", plan.describe())).await
}

/// How a wait for INSYNC ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Waited {
    InSync(Duration),
    /// `interrupt` said stop (an abort was asked for); the change still applies.
    Interrupted,
}

/// GetChange failures in a row that end the wait with the error, well before
/// the time limit: the change was accepted, but its progress cannot be seen.
const GET_CHANGE_ERRORS: u32 = 5;

/// Polls GetChange until INSYNC (every second, backing off to 5 s), or `limit`.
pub async fn wait_insync(clients: &Clients, change_id: &str, limit: Duration) -> Result<Duration, String> {
    match wait_insync_or(clients, change_id, limit, &|| false).await? {
        Waited::InSync(took) => Ok(took),
        Waited::Interrupted => Err(format!("waiting for change {change_id} was interrupted")),
    }
}

/// As `wait_insync`, and stops early when `interrupt` returns true (checked
/// every 200 ms).
pub async fn wait_insync_or(
    clients: &Clients,
    change_id: &str,
    limit: Duration,
    interrupt: &(dyn Fn() -> bool + Sync),
) -> Result<Waited, String> {
    let start = Instant::now();
    let mut every = Duration::from_secs(1);
    let mut errors = 0;
    loop {
        match change_insync(&clients.route53, change_id).await {
            Ok(true) => return Ok(Waited::InSync(start.elapsed())),
            Ok(false) => errors = 0,
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, errors, "GetChange failed");
                if errors >= GET_CHANGE_ERRORS {
                    return Err(format!(
                        "cannot see whether change {change_id} is INSYNC: {errors} GetChange calls failed in a row ({e}); the change was accepted and will still apply"
                    ));
                }
            }
        }
        if start.elapsed() >= limit {
            return Err(format!("change {change_id} still PENDING after {} s", limit.as_secs()));
        }
        let until = Instant::now() + every;
        while Instant::now() < until {
            if interrupt() {
                return Ok(Waited::Interrupted);
            }
            tokio::time::sleep(Duration::from_millis(200).min(until - Instant::now())).await;
        }
        every = (every * 2).min(Duration::from_secs(5));
    }
}

/// Carries out a confirmed shift: refused under a running rollout or when
/// the side it raises can no longer serve (read again under the lease), the
/// intent audited before anything is sent, then applied and INSYNC audited.
pub async fn execute(
    sides: &crate::aws::SideClients,
    rb: &Runbook,
    who: &crate::authority::Actor,
    plan: &ShiftPlan,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<String, PlanError> {
    let clients = sides.dns();
    let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
    let percent = plan.weights.1;
    let line = |stage: Stage, detail: String| {
        who.audit_line(&rb.name, format!("shift_weights to {percent}%"), stage, (plan.before(), plan.after()), detail)
    };
    if plan.is_noop() {
        return Ok("nothing to change: the records already have these weights".into());
    }
    // Never under a running rollout's feet.
    let lease = crate::store::lease::acquire(
        &rb.name,
        "shift_weights",
        crate::store::lease::duration_for(rb),
        false,
        &mut |_| {},
    )
    .map_err(|e| {
        let refusal = match e {
            crate::store::lease::Refusal::Unavailable(m) => {
                format!("the shared state cannot be read ({m}); nothing was changed")
            }
            e => format!(
                "a rollout of {} is running or holds the lease ({e}); use `cutover abort` or wait; nothing was changed",
                rb.name
            ),
        };
        // The attempt is on the timeline too (a store that cannot be read
        // may not take the line either).
        let _ = log.append(&line(Stage::Refused, format!("refused: {refusal}")));
        PlanError::Refused(refusal)
    })?;
    crate::crashpoint::here("shift:leased");
    // Read again under the lease: the plan may have waited in a confirm
    // popup while the side it raises was stopped (a stop takes the lease too).
    let unchecked_now = match raised_sides_serve(sides, rb, plan, true).await {
        Ok(lines) => plan.unchecked_anew(lines),
        Err(e) => {
            let e = match e {
                PlanError::Refused(m) => m,
                other => other.to_string(),
            };
            let refusal = format!("{e}; nothing was changed");
            log.append(&line(Stage::Refused, format!("refused: {refusal}")))
                .map_err(|e| PlanError::Failed(format!("{e}; nothing was changed")))?;
            return Err(PlanError::Refused(refusal));
        }
    };
    for l in &unchecked_now {
        say(l);
    }
    // Fenced, as a rollout's send is: a holder stalled past its lease (a
    // laptop asleep in the popup) whose lease another took over (an abort
    // rolling back) learns it here and sends nothing over that rollback.
    if let Err(why) = crate::store::off_async(|| lease.fence()) {
        let refusal = format!("the lease was lost ({why}); nothing was changed");
        let _ = log.append(&line(Stage::Refused, format!("refused: {refusal}")));
        return Err(PlanError::Refused(refusal));
    }
    // The intent is on disk before anything is sent, with what its last
    // check could not see.
    log.append(&line(Stage::Intent, with_unchecked(plan.describe(), &unchecked_now)))
        .map_err(|e| PlanError::Failed(format!("{e}; nothing was changed")))?;
    // Again right before the send: the intent's write may have stalled.
    if let Err(why) = crate::store::off_async(|| lease.check()) {
        let message = format!("not sent: the lease was lost ({why}); nothing was changed");
        let _ = log.append(&line(Stage::Failed, message.clone()));
        return Err(PlanError::Failed(message));
    }
    let change = match apply(clients, who, plan).await {
        Ok(id) => id,
        Err(e) => {
            // No reply is not "not applied": read the records back.
            let back = read_back_after(clients, rb, plan, &e).await;
            if back == ReadBack::Live {
                let detail = failed_send_message(&e, &back);
                let said = format!(
                    "{}: {detail}; INSYNC not confirmed (the change id was lost): `cutover status` shows the records",
                    plan.describe()
                );
                return match log.append(&line(Stage::Applied, format!("{detail}; change id unknown"))) {
                    Ok(()) => Ok(with_unchecked(said, &unchecked_now)),
                    Err(e) => Err(PlanError::Failed(unaudited(&said, &e))),
                };
            }
            let message = failed_send_message(&e, &back);
            let _ = log.append(&line(Stage::Failed, message.clone()));
            return Err(PlanError::Failed(message));
        }
    };
    crate::crashpoint::here("shift:after-send");
    // Sent: whatever the audit log does now, the change stands, and is
    // waited for and said so.
    let ahead = clients.clock.latest().map(|r| r.ahead_ms);
    let applied = line(Stage::Applied, format!("change {change}")).with_change(&change).with_aws_ahead_ms(ahead);
    let unrecorded = log.append(&applied).err();
    say(&format!("change {change} sent; waiting for INSYNC"));
    match wait_insync(clients, &change, Duration::from_secs(300)).await {
        Ok(took) => {
            let detail = format!("change {change} INSYNC after {:.1} s", took.as_secs_f64());
            // Tried whatever became of the applied line: the store may be back.
            let ahead = clients.clock.latest().map(|r| r.ahead_ms);
            let insync = log.append(&line(Stage::InSync, detail).with_change(&change).with_aws_ahead_ms(ahead)).err();
            let unrecorded = unrecorded.or(insync);
            let said = format!("{} INSYNC after {:.1} s", plan.describe(), took.as_secs_f64());
            match unrecorded {
                None => Ok(with_unchecked(
                    format!("{said}; resolvers may serve the old answer for one TTL more"),
                    &unchecked_now,
                )),
                Some(e) => Err(PlanError::Failed(unaudited(&said, &e))),
            }
        }
        Err(e) => {
            let _ = log.append(&line(Stage::Failed, e.clone()));
            let accepted =
                if e.contains("will still apply") { "" } else { "; the change was accepted and will still apply" };
            let message = format!("{e}{accepted}");
            Err(PlanError::Failed(match unrecorded {
                None => message,
                Some(store) => unaudited(&message, &store),
            }))
        }
    }
}

/// What stands, said although the audit log could not record it.
fn unaudited(said: &str, error: &str) -> String {
    format!("{said}; the change is live, but the audit log could not record it ({error}): note it by hand")
}

#[cfg(test)]
mod tests {
    use super::{ALIAS_TTL, ShiftPlan, Side, raises_share};
    use crate::aws::route53::{Alias, WeightedRecord};

    fn record(id: &str, ttl: Option<u32>) -> WeightedRecord {
        WeightedRecord {
            set_identifier: id.into(),
            record_type: "A".into(),
            weight: 50,
            ttl,
            values: vec![],
            health_check_id: None,
            alias_target: ttl.is_none().then(|| Alias {
                hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
                dns_name: format!("{id}.eu-west-1.elb.amazonaws.com."),
                evaluate_target_health: true,
            }),
            read: None,
        }
    }

    fn plan(from: Option<u32>, to: Option<u32>) -> ShiftPlan {
        let side = |env: &str, ttl| Side { environment: env.into(), record: record(env, ttl), others: vec![] };
        ShiftPlan {
            zone_id: "Z1".into(),
            name: "app.example.com".into(),
            record_type: "A".into(),
            from: side("old", from),
            to: side("new", to),
            weights: (50, 50),
            others: vec![],
            unchecked: vec![],
        }
    }

    /// A step waits for the answers of the side it lowers: an alias's are
    /// held for its load balancer's 60 s, however short the runbook's TTL
    /// (an alias was counted as no TTL, and steps soaked on the old split).
    #[test]
    fn a_step_waits_the_ttl_of_the_records_it_may_lower_an_alias_counting_its_targets() {
        assert_eq!(plan(None, Some(5)).lowered_ttl(), Some(ALIAS_TTL));
        assert_eq!(plan(Some(5), None).lowered_ttl(), Some(5), "the raised side's answers only add to it");
        assert_eq!(plan(Some(300), Some(5)).lowered_ttl(), Some(300));
        assert_eq!(plan(None, None).lowered_ttl(), Some(ALIAS_TTL));
        // A third record beside them (a dr record at 100 as a step raises
        // both sides) holds its answers as long.
        let mut beside = plan(Some(5), Some(5));
        beside.others.push(super::OtherRecord { environment: Some("dr".into()), record: record("dr", Some(300)) });
        assert_eq!(beside.lowered_ttl(), Some(300));
    }

    /// Shares, not raw weights: (90, 90) → (10, 90) takes `to` from half to
    /// nine tenths though its weight stays; (0, 0) → (50, 50) is still an
    /// equal split; (100, 0) → (0, 100) raises `to` only.
    #[test]
    fn a_side_is_raised_when_its_share_of_the_traffic_grows() {
        assert_eq!(raises_share((90, 90), (10, 90), &[]), (false, true));
        assert_eq!(raises_share((100, 50), (50, 50), &[]), (false, true));
        assert_eq!(raises_share((0, 0), (50, 50), &[]), (false, false));
        // Beside a record the runbook does not list, kept at its weight.
        assert_eq!(raises_share((0, 0), (50, 50), &[100]), (true, true), "0% to 25% each");
        assert_eq!(raises_share((10, 10), (80, 20), &[255]), (true, true), "to: 3.6% to 5.6%");
        assert_eq!(raises_share((0, 0), (0, 0), &[0, 0]), (false, false), "a fourth each, still");
        assert_eq!(raises_share((0, 0), (1, 0), &[0]), (true, false));
        assert_eq!(raises_share((0, 0), (100, 0), &[]), (true, false));
        assert_eq!(raises_share((100, 0), (0, 100), &[]), (false, true));
        assert_eq!(raises_share((30, 70), (0, 0), &[]), (true, false));
        assert_eq!(raises_share((70, 30), (70, 30), &[]), (false, false));
    }

    /// A dual-stack plan's `before`: one pair while the types agree, each
    /// type's once they differ, in the order both sides hold them; a
    /// rollout's `insync` line writes it from its saved state alike.
    #[test]
    fn before_is_each_types_weights_only_where_the_types_differ() {
        let mut p = plan(Some(5), Some(5));
        let aaaa = |env: &str, weight| WeightedRecord { record_type: "AAAA".into(), weight, ..record(env, Some(5)) };
        p.from.others = vec![aaaa("old", 50)];
        p.to.others = vec![aaaa("new", 50)];
        assert_eq!(p.before(), serde_json::json!({"old": 50, "new": 50}));
        assert_eq!(p.before_by_type(), None);
        p.from.others = vec![aaaa("old", 100)];
        p.to.others = vec![aaaa("new", 0)];
        let each = serde_json::json!({"A": {"old": 50, "new": 50}, "AAAA": {"old": 100, "new": 0}});
        assert_eq!(p.before(), each);
        let saved = p.before_by_type();
        assert_eq!(super::weights_before(("old", "new"), (50, 50), saved.as_ref()), each);
    }
}
