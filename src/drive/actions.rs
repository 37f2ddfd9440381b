//! Checklist actions: each planned from live data into concrete steps, shown
//! as before → after, then applied. Planning reads; only `apply` writes.

use serde_json::json;

use super::{PlanError, shift};
use crate::analysis::reachability::SgPath;
use crate::analysis::weights::{AlbHealth, RoutedGroup};
use crate::aws::ec2::{self, GroupIngress};
use crate::aws::{Clients, SideClients, elb};
use crate::live::fetch::{self, EnvironmentData};
use crate::runbook::{Action, Runbook};
use crate::store::audit::Stage;

#[derive(Debug, Clone)]
pub enum Step {
    AuthorizeIngress {
        group_id: String,
        port: u16,
        from_group_id: String,
        description: String,
    },
    RevokeIngress {
        group_id: String,
        port: u16,
        from_group_id: String,
        description: String,
    },
    /// `port` None: the target group's own port.
    Register {
        target_group_arn: String,
        instance_ids: Vec<String>,
        port: Option<i32>,
    },
    /// Each target as registered: its instance and port (AWS matches both;
    /// a target named by id alone is looked for on the group's port).
    Deregister {
        target_group_arn: String,
        targets: Vec<(String, Option<u16>)>,
    },
    SetAttributes {
        target_group_arn: String,
        attributes: Vec<(String, String)>,
    },
    Stop {
        instance_ids: Vec<String>,
    },
    Start {
        instance_ids: Vec<String>,
    },
    Shift(Box<shift::ShiftPlan>),
    CopyRedis(Box<RedisCopy>),
    /// An AMI of each instance, tagged with the runbook and item, waited on until available.
    CreateImages {
        instance_ids: Vec<String>,
        no_reboot: bool,
    },
    /// A snapshot of an ElastiCache replication group, waited on until available.
    SnapshotRedis {
        endpoint: String,
        replication_group: String,
    },
    /// Stopped instances terminated; `amis`: the AMI cutover took of each, if any.
    Terminate {
        instance_ids: Vec<String>,
        amis: std::collections::BTreeMap<String, String>,
    },
    /// Security groups nothing uses, deleted: (id, name).
    DeleteGroups {
        groups: Vec<(String, String)>,
    },
}

/// How long an AMI or a snapshot may take to become available before the
/// step is called failed (it goes on in AWS; the error names it).
const BACKUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// The tags cutover puts on what it creates: the runbook and the item.
fn backup_tags(runbook: &str, item: &str) -> Vec<(String, String)> {
    vec![("cutover:runbook".into(), runbook.into()), ("cutover:item".into(), item.into())]
}

/// `copy_redis`: the endpoints resolved from the runbook (URLs redacted in Debug).
#[derive(Debug, Clone)]
pub struct RedisCopy {
    pub from_name: String,
    pub to_name: String,
    pub from: crate::redis::url::Endpoint,
    pub to: crate::redis::url::Endpoint,
    pub pattern: Option<String>,
    /// An interrupted copy of the pair found when planned: its checkpoint's
    /// last write (RFC 3339) and the keys it had copied. A resume meets the
    /// keys the interrupted run wrote after it, so the confirmation says how
    /// it treats them, and a checkpoint other than this one when applied is
    /// refused.
    pub resume: Option<(String, u64)>,
}

impl Step {
    pub fn describe(&self) -> String {
        match self {
            Step::AuthorizeIngress { group_id, port, from_group_id, .. } => {
                format!("allow {port} from {from_group_id} on {group_id}")
            }
            Step::RevokeIngress { group_id, port, from_group_id, .. } => {
                format!("revoke {port} from {from_group_id} on {group_id}")
            }
            Step::Register { target_group_arn, instance_ids, port } => {
                let port = port.map_or("the group's port".to_string(), |p| format!("port {p}"));
                format!("register {} on {port} in {target_group_arn}", instance_ids.join(", "))
            }
            Step::Deregister { target_group_arn, targets } => {
                let named: Vec<String> =
                    targets.iter().map(|(id, port)| port.map_or(id.clone(), |p| format!("{id}:{p}"))).collect();
                format!("deregister {} from {target_group_arn}", named.join(", "))
            }
            Step::SetAttributes { target_group_arn, attributes } => {
                format!(
                    "set {} on {target_group_arn}",
                    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
                )
            }
            Step::Stop { instance_ids } => format!("stop {}", instance_ids.join(", ")),
            Step::Start { instance_ids } => format!("start {}", instance_ids.join(", ")),
            Step::Shift(p) => format!("shift {}", p.describe()),
            Step::CreateImages { instance_ids, no_reboot } => format!(
                "create an AMI of {}{}, wait until available",
                instance_ids.join(", "),
                if *no_reboot { " without rebooting" } else { " (each instance reboots)" }
            ),
            Step::SnapshotRedis { endpoint, replication_group } => {
                format!("snapshot {endpoint} (ElastiCache {replication_group}), wait until available")
            }
            Step::Terminate { instance_ids, amis } => format!(
                "terminate {} (no rollback)",
                instance_ids
                    .iter()
                    .map(|id| match amis.get(id) {
                        Some(ami) => format!("{id} (AMI {ami})"),
                        None => format!("{id} (no AMI taken by cutover)"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::DeleteGroups { groups } => format!(
                "delete security groups {} (no rollback)",
                groups.iter().map(|(id, name)| format!("{name} ({id})")).collect::<Vec<_>>().join(", ")
            ),
            Step::CopyRedis(c) => {
                let what = format!(
                    "keys{} from {} ({}) to {} ({}) with their TTLs",
                    c.pattern.as_deref().map(|p| format!(" matching {p}")).unwrap_or_default(),
                    c.from_name,
                    c.from,
                    c.to_name,
                    c.to
                );
                match &c.resume {
                    None => format!("copy {what}; stop if the target has one of them"),
                    Some((updated, copied)) => format!(
                        "resume the interrupted copy of {what} from its checkpoint of {updated} ({copied} keys \
                         copied): from there on, a key already on the target is left as it is if it holds the \
                         source's value (the interrupted run may have written it), and otherwise stops the copy"
                    ),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ActionPlan {
    pub name: String,
    pub steps: Vec<Step>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    /// Said when there is nothing to do.
    pub noop: Option<String>,
    /// The side whose clients plan and apply it (`Action::side`).
    pub side: crate::runbook::Side,
    /// The environment it takes out of service, and how: checked for
    /// Route53 traffic when planned and again right before it is applied.
    pub out_of_service: Option<(String, &'static str)>,
}

impl ActionPlan {
    /// The name a person must type to confirm it (its environment's) when it
    /// cannot be undone: it terminates instances or deletes groups.
    pub fn confirm_name(&self) -> Option<&str> {
        let gone = self.steps.iter().any(|s| matches!(s, Step::Terminate { .. } | Step::DeleteGroups { .. }));
        match &self.side {
            crate::runbook::Side::Environment(e) if gone => Some(e),
            _ => None,
        }
    }
}

async fn env_data(sides: &SideClients, rb: &Runbook, env: &str) -> Result<EnvironmentData, PlanError> {
    let e = rb.environment(env).ok_or_else(|| PlanError::Refused(format!("no environment {env}")))?;
    fetch::environment(sides, rb, e).await.map_err(PlanError::Aws)
}

fn tag(rb: &Runbook, env: &str) -> String {
    format!("cutover: {}/{env}", rb.name)
}

pub async fn plan(clients: &SideClients, rb: &Runbook, action: &Action) -> Result<ActionPlan, PlanError> {
    plan_with_vars(clients, rb, action, &std::collections::BTreeMap::new()).await
}

/// As `plan`; `vars` win over the process environment (a sandbox's Redis URLs).
pub async fn plan_with_vars(
    clients: &SideClients,
    rb: &Runbook,
    action: &Action,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<ActionPlan, PlanError> {
    let name = action.summary();
    let side = action.side(rb);
    let out_of_service = out_of_service(action).map(|(e, what)| (e.to_string(), what));
    // A runbook whose selectors overlap is said first: waiting fixes nothing there.
    if let Some(environment) = instances_changed(action) {
        selects_its_own(clients, rb, environment).await?;
    }
    if let Some((environment, what)) = &out_of_service {
        carries_no_traffic(clients, rb, environment, what).await?;
    }
    let sides = clients;
    // Read and planned in the account and region of the side it changes.
    let clients = clients.side(&side);
    let mut p = ActionPlan {
        name,
        steps: Vec::new(),
        before: json!(null),
        after: json!(null),
        noop: None,
        side,
        out_of_service,
    };
    match action {
        Action::AuthorizeRedisIngress { environment } => plan_authorize_ingress(sides, rb, environment, &mut p).await?,
        Action::RevokeRedisIngress { environment } => {
            plan_revoke_ingress(sides, clients, rb, environment, &mut p).await?
        }
        Action::RegisterTargets { environment } => plan_targets(sides, rb, environment, true, &mut p).await?,
        Action::DeregisterTargets { environment } => plan_targets(sides, rb, environment, false, &mut p).await?,
        Action::SetStickiness { environment, duration } => {
            plan_stickiness(sides, rb, environment, Some(*duration), &mut p).await?
        }
        Action::DisableStickiness { environment } => plan_stickiness(sides, rb, environment, None, &mut p).await?,
        Action::StopInstances { environment } => plan_instances(clients, rb, environment, true, &mut p).await?,
        Action::StartInstances { environment } => plan_instances(clients, rb, environment, false, &mut p).await?,
        Action::ShiftWeights { to } => plan_shift(clients, rb, *to, &mut p).await?,
        Action::Rollout => return Err(PlanError::Refused("run the gated rollout with `cutover rollout`".into())),
        Action::CopyRedis { from_redis, to_redis, pattern } => {
            plan_copy(rb, vars, from_redis, to_redis, pattern.as_deref(), &mut p).await?
        }
        Action::CreateImage { environment, no_reboot } => {
            plan_images(clients, rb, environment, *no_reboot, &mut p).await?
        }
        Action::SnapshotRedis { redis } => plan_snapshot(clients, rb, redis, &mut p).await?,
        Action::TerminateInstances { environment } => plan_terminate(clients, rb, environment, &mut p).await?,
        Action::DeleteSecurityGroups { environment, security_groups } => {
            plan_delete_groups(clients, rb, environment, security_groups, &mut p).await?
        }
    }
    if let Some(Step::Shift(sp)) = p.steps.first_mut() {
        sp.unchecked = shift::raised_sides_serve(sides, rb, sp, true).await?;
    }
    Ok(p)
}

/// The environment an action takes out of service, and how: stopped,
/// rebooted, cut off from its targets or its Redis.
fn out_of_service(action: &Action) -> Option<(&str, &'static str)> {
    match action {
        Action::StopInstances { environment } => Some((environment, "stopping its instances")),
        Action::TerminateInstances { environment } => Some((environment, "terminating its instances")),
        Action::DeregisterTargets { environment } => Some((environment, "deregistering its targets")),
        Action::RevokeRedisIngress { environment } => Some((environment, "cutting its instances off from Redis")),
        Action::CreateImage { environment, no_reboot: false } => {
            Some((environment, "rebooting its instances for their AMIs"))
        }
        _ => None,
    }
}

/// The environment whose instances an action stops, images, terminates or
/// takes out of its target groups, found by its selector. Starting and
/// registering are left out: they restore, and are the others' rollbacks.
fn instances_changed(action: &Action) -> Option<&str> {
    match action {
        Action::StopInstances { environment }
        | Action::TerminateInstances { environment }
        | Action::CreateImage { environment, .. }
        | Action::DeregisterTargets { environment } => Some(environment),
        _ => None,
    }
}

/// Refuses an action on `environment`'s instances when another environment
/// in the same account and region selects one of them too: the runbook's
/// selectors do not tell the sides apart (EC2 tag filters match any instance
/// carrying those tags, whatever else it carries), so the action would stop,
/// image or deregister the other side's instances. Accounts are the ones the
/// runbook declares; undeclared, only sides reached the same way compare.
async fn selects_its_own(clients: &SideClients, rb: &Runbook, environment: &str) -> Result<(), PlanError> {
    use crate::runbook::{InstanceSelector, Side};
    let here = Side::Environment(environment.to_string());
    let Some(env) = rb.environment(environment) else { return Ok(()) };
    let ec2 = &clients.side(&here).ec2;
    let mine = ec2::describe_instances(ec2, &env.instances).await.map_err(PlanError::Aws)?;
    let mine: std::collections::BTreeMap<&str, &ec2::Instance> =
        mine.iter().filter(|i| i.state != "terminated").map(|i| (i.id.as_str(), i)).collect();
    for other in rb.environments.values().filter(|o| o.name != environment) {
        let there = Side::Environment(other.name.clone());
        let same_account = match (rb.side_account(&here), rb.side_account(&there)) {
            (Some(a), Some(b)) => a == b,
            _ => clients.same_reach(&here, &there),
        };
        if !same_account || clients.side(&here).region != clients.side(&there).region {
            continue;
        }
        // Ids need no call: an id long gone would fail a DescribeInstances of them all.
        let theirs: Vec<String> = match &other.instances {
            InstanceSelector::Ids(ids) => ids.clone(),
            selector => ec2::describe_instances(ec2, selector)
                .await
                .map_err(|e| {
                    PlanError::Refused(format!(
                        "cannot tell whether {} also selects {environment}'s instances: {e}",
                        other.name
                    ))
                })?
                .into_iter()
                .map(|i| i.id)
                .collect(),
        };
        let both: Vec<String> = theirs
            .iter()
            .filter_map(|id| mine.get(id.as_str()))
            .map(|i| i.name.as_ref().map_or(i.id.clone(), |n| format!("{} ({n})", i.id)))
            .collect();
        if !both.is_empty() {
            return Err(PlanError::Refused(format!(
                "{} selected by both {environment} and {}: the runbook's instance selectors do not tell the sides \
                 apart, and this would reach the other side's instances; give each environment a tag only its own \
                 instances carry (or list its instance ids), then run this again",
                both.join(", "),
                other.name
            )));
        }
    }
    Ok(())
}

/// Refuses an action that takes `environment` out of service while Route53
/// still sends it traffic. Route53 answers each record type (A, AAAA) from
/// that type's records alone, so each type is judged on its own: the
/// environment's record of that type weighted above 0; every record of that
/// type at 0 (Route53 then shares traffic equally among them); or every
/// record above 0 unhealthy to Route53, which then answers with the records
/// at 0 (a failed-over new side sends everyone back to the old one). What
/// cannot be read refuses too. An environment with no set identifier in
/// `[dns]` is not one of the weighted records: nothing to read.
async fn carries_no_traffic(sides: &SideClients, rb: &Runbook, environment: &str, what: &str) -> Result<(), PlanError> {
    let Some(id) = rb.dns.set_identifiers.get(environment) else { return Ok(()) };
    let dns = sides.dns();
    // The records are read through [dns]: in another account (a mistyped
    // role) a zone of the same name may show a weight of 0 while the real
    // one still sends this environment its traffic.
    let how = sides.reach(&crate::runbook::Side::Dns).describe();
    let account = crate::aws::sts::identity(dns).await.map_err(|e| {
        PlanError::Refused(format!(
            "whether Route53 still sends {environment} traffic is unknown: {}; {what} waits until it can be read",
            crate::authority::unknown_account(rb, &crate::runbook::Side::Dns, &how, &e)
        ))
    })?;
    if let Some(refusal) = crate::authority::account_mismatch(rb, &crate::runbook::Side::Dns, &account.account, &how) {
        return Err(PlanError::Refused(format!(
            "whether Route53 still sends {environment} traffic cannot be read: {}",
            refusal.trim_start_matches("refused: ")
        )));
    }
    let unread = |e: crate::aws::AwsError| {
        PlanError::Refused(format!(
            "whether Route53 still sends {environment} traffic is unknown: the weighted records of {} could \
             not be read ({e}); {what} waits until they can be",
            rb.dns.record
        ))
    };
    let zone = crate::aws::route53::zone_id(&dns.route53, &rb.dns.zone).await.map_err(unread)?;
    let types = rb.dns.types();
    // A type the runbook does not list (AAAA beside its A) answers clients
    // all the same, and no shift moves it: its weight here is traffic,
    // judged as a listed type's (health included).
    let unlisted = rb.dns.unlisted_types();
    let records =
        crate::aws::route53::weighted_group(&dns.route53, &zone, &rb.dns.record, &[&types[..], &unlisted[..]].concat())
            .await
            .map_err(unread)?;
    for t in types.iter().chain(&unlisted) {
        let of_type: Vec<_> = records.iter().filter(|r| &r.record_type == t).collect();
        let Some(mine) = of_type.iter().find(|r| &r.set_identifier == id) else { continue };
        // How to put its weight elsewhere: a type the runbook does not list is listed first.
        let shift = match unlisted.contains(t) {
            true => format!(
                "list {t} in [dns] type (type = [\"A\", \"AAAA\"]; no shift moves a type the runbook does not list) \
                 and shift its weight to 0 (`cutover shift`)"
            ),
            false => "shift its weight to 0 first (`cutover shift`)".to_string(),
        };
        let (record, w) = (&rb.dns.record, mine.weight);
        if w > 0 {
            return Err(PlanError::Refused(format!(
                "Route53 still sends {environment} traffic (its weighted {t} record `{id}` of {record} has weight \
                 {w}), and {what} would take that traffic down; {shift}, then run this again"
            )));
        }
        if of_type.iter().all(|r| r.weight == 0) {
            return Err(PlanError::Refused(format!(
                "Route53 still sends {environment} traffic (every weighted {t} record of {record} has weight 0, \
                 and Route53 then sends each of them an equal share), and {what} would take that traffic down; \
                 put the weight on another record first ({}), then run this again",
                if unlisted.contains(t) {
                    format!("list {t} in [dns] type, then `cutover shift`")
                } else {
                    "`cutover shift`".into()
                }
            )));
        }
        // One healthy record above 0 is enough: asked in turn, so plain
        // records (always healthy) cost no read.
        let (mut unhealthy, mut unknown) = (Vec::new(), Vec::new());
        let mut served = false;
        for r in of_type.iter().filter(|r| r.weight > 0) {
            match record_health(sides, rb, r).await {
                RecordHealth::Healthy => {
                    served = true;
                    break;
                }
                RecordHealth::Unhealthy(why) => unhealthy.push(why),
                RecordHealth::Unknown(why) => unknown.push(why),
            }
        }
        if served {
            continue;
        }
        // Unhealthy itself, it gets nothing either way: Route53 picks a
        // healthy record at 0, or with none healthy answers by weight.
        if unknown.is_empty()
            && let RecordHealth::Unhealthy(_) = record_health(sides, rb, mine).await
        {
            continue;
        }
        let above: Vec<String> =
            of_type.iter().filter(|r| r.weight > 0).map(|r| format!("`{}`", r.set_identifier)).collect();
        if !unknown.is_empty() {
            unknown.extend(unhealthy);
            return Err(PlanError::Refused(format!(
                "whether Route53 still sends {environment} traffic is unknown: its weighted {t} record `{id}` of \
                 {record} has weight 0, but Route53 answers with the records at 0 when every record weighted above \
                 0 ({}) is unhealthy, and cutover cannot tell whether they are ({}); {what} waits until it can",
                above.join(", "),
                unknown.join("; ")
            )));
        }
        return Err(PlanError::Refused(format!(
            "Route53 still sends {environment} traffic although its weighted {t} record `{id}` of {record} has \
             weight 0: every record weighted above 0 is unhealthy ({}), and Route53 then answers with the records \
             at 0, so {what} would take that traffic down; make {} healthy first, then run this again",
            unhealthy.join("; "),
            above.join(", ")
        )));
    }
    // Resolvers keep an answer for its TTL after Route53's servers change:
    // a side whose share was taken a moment ago still gets the clients
    // holding the answer from before.
    let ttl = records.iter().map(|r| r.ttl.unwrap_or(crate::drive::shift::ALIAS_TTL)).max().unwrap_or(0);
    let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
    let lines = crate::store::off_async(|| log.read()).map_err(|e| {
        PlanError::Refused(format!(
            "whether resolvers still send {environment} traffic is unknown: the audit log, which says when its share \
             was last taken, could not be read ({e}); {what} waits until it can be"
        ))
    })?;
    // Now by AWS's clock, at the earliest, when this machine has read it; a
    // line whose writer did not know AWS's clock is judged as it was
    // written, and now is never moved later for it.
    let ahead_least = sides.clock_read().map_or(0, |r| r.ahead_ms.0);
    let Some(until) = share_taken_until(&lines, environment, ttl) else { return Ok(()) };
    let now = shifted_ms(std::time::SystemTime::now(), if until.by_aws { ahead_least } else { ahead_least.min(0) });
    if let Some(left) = until.at.duration_since(now).ok().filter(|d| !d.is_zero()) {
        return Err(PlanError::Refused(format!(
            "resolvers may still send {environment} traffic: its share was taken by {} ({}), and they keep the \
             answer from before for its TTL of {ttl} s, until {}; {what} waits until then (another {} s)",
            until.action,
            until.when,
            crate::time::rfc3339(until.at),
            left.as_secs().max(1)
        )));
    }
    Ok(())
}

/// When the clients' resolvers let go of the last answer that gave an
/// environment a share: the change that took it (from the audit log).
struct ShareTaken {
    action: String,
    /// When Route53's servers had it, in words.
    when: String,
    at: std::time::SystemTime,
    /// `at` is by AWS's clock (its line says how far its writer's was off).
    by_aws: bool,
}

/// The last audited weight change that took `environment`'s share (its
/// weight above 0 before, or every weight 0, which shares alike; 0 after
/// with another above 0), and until when resolvers may hold the answer from
/// before: `ttl` after its INSYNC, or after its send plus a minute where
/// INSYNC is not on record (Route53 propagates in under a minute), or
/// after its intent plus a minute where its writer never said whether it
/// was sent (it died between the send and its `applied` line).
fn share_taken_until(lines: &[crate::store::audit::AuditLine], environment: &str, ttl: u32) -> Option<ShareTaken> {
    use crate::store::audit::Stage;
    let weights = |v: &serde_json::Value| -> Option<Vec<(String, u64)>> {
        v.as_object()?.iter().map(|(k, w)| Some((k.clone(), w.as_u64()?))).collect()
    };
    // `{environment: weight}`, or each type's where the types differed
    // (`ShiftPlan::before`): the share is had if any type gave it one.
    let by_type = |v: &serde_json::Value| -> Option<Vec<Vec<(String, u64)>>> {
        weights(v).map(|w| vec![w]).or_else(|| v.as_object()?.values().map(weights).collect())
    };
    let weight_of = |ws: &[(String, u64)]| ws.iter().find(|(k, _)| k == environment).map(|(_, w)| *w);
    let shares = |ws: &Vec<(String, u64)>| weight_of(ws).is_some_and(|w| w > 0 || ws.iter().all(|(_, w)| *w == 0));
    let took = |l: &crate::store::audit::AuditLine| {
        let (Some(before), Some(after)) = (by_type(&l.before), by_type(&l.after)) else { return false };
        before.iter().any(shares) && !after.iter().any(shares)
    };
    let ttl = std::time::Duration::from_secs(u64::from(ttl));
    // An INSYNC by its writer's clock, moved to AWS's at the latest where
    // the writer read how far they were apart: a teammate's clock a minute
    // behind would else let a stop through a minute early.
    let by_aws = |l: &crate::store::audit::AuditLine| {
        Some(shifted_ms(crate::time::parse_rfc3339(&l.time)?, l.aws_ahead_ms.map_or(0, |(_, most)| most)))
    };
    let minute = std::time::Duration::from_secs(60);
    let sent = lines.iter().rposition(|l| matches!(l.stage, Stage::Applied | Stage::InSync) && took(l)).and_then(|i| {
        let line = &lines[i];
        let insync = match line.stage {
            Stage::InSync => Some(line),
            _ => lines[i..].iter().find(|l| l.stage == Stage::InSync && l.change.is_some() && l.change == line.change),
        };
        let (at, when, known) = match insync {
            Some(l) => (by_aws(l)? + ttl, format!("INSYNC at {}", l.time), l.aws_ahead_ms.is_some()),
            None => (
                by_aws(line)? + minute + ttl,
                format!("applied as of {}, INSYNC not on record in a line of its own", line.time),
                line.aws_ahead_ms.is_some(),
            ),
        };
        Some(ShareTaken { action: line.action.clone(), when, at, by_aws: known })
    });
    // An intent its writer never concluded (no `applied`, `insync` or
    // `failed` of its own before its next intent) may have been sent: the
    // process died between the send and its `applied` line, or is sending
    // now. Its share is taken as of the intent, as an `applied` line's is.
    let maybe_sent = (0..lines.len())
        .rev()
        .find(|&i| {
            lines[i].stage == Stage::Intent && took(&lines[i]) && crate::store::audit::conclusion(lines, i).is_none()
        })
        .and_then(|i| {
            let line = &lines[i];
            Some(ShareTaken {
                action: line.action.clone(),
                when: format!("intended at {}; whether it was sent is not on record", line.time),
                at: by_aws(line)? + minute + ttl,
                by_aws: line.aws_ahead_ms.is_some(),
            })
        });
    // The later of the two: each alone may be what resolvers hold.
    match (sent, maybe_sent) {
        (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// `t` moved by `ms` (later when positive).
fn shifted_ms(t: std::time::SystemTime, ms: i64) -> std::time::SystemTime {
    let d = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { t + d } else { t.checked_sub(d).unwrap_or(t) }
}

/// Route53's view of a record's health when it picks the records to answer with.
enum RecordHealth {
    Healthy,
    Unhealthy(String),
    /// Why cutover cannot tell.
    Unknown(String),
}

/// Healthy unless its health check fails or, as an alias evaluating target
/// health, its load balancer has no healthy target (the rule the live
/// traffic pane applies); whatever cannot be read is unknown, never healthy.
async fn record_health(sides: &SideClients, rb: &Runbook, r: &crate::aws::route53::WeightedRecord) -> RecordHealth {
    let id = &r.set_identifier;
    if let Some(hc) = &r.health_check_id {
        let state = match crate::aws::route53::health_check_state(&sides.dns().route53, hc).await {
            Ok(state) => state,
            Err(e) => return RecordHealth::Unknown(format!("`{id}`: health check {hc} not read ({e})")),
        };
        match state.healthy {
            Some(false) => {
                return RecordHealth::Unhealthy(format!("`{id}`: health check {hc} fails ({})", state.status));
            }
            None => {
                return RecordHealth::Unknown(format!(
                    "`{id}`: health check {hc} could not be judged ({})",
                    state.status
                ));
            }
            Some(true) => {}
        }
    }
    let Some(alias) = r.alias_target.as_ref().filter(|a| a.evaluate_target_health) else {
        return RecordHealth::Healthy;
    };
    let target = &alias.dns_name;
    let unknown =
        |why: String| RecordHealth::Unknown(format!("`{id}`: an alias to {target} evaluating target health, {why}"));
    let Some((name, env)) = rb
        .dns
        .set_identifiers
        .iter()
        .find(|(_, s)| *s == id)
        .and_then(|(name, _)| rb.environment(name).map(|env| (name, env)))
    else {
        return unknown("and no environment of the runbook has that record".into());
    };
    let Some(lb_name) = env.load_balancer.as_deref() else {
        return unknown(format!("and {name} names no load_balancer"));
    };
    if env.target_groups.is_empty() {
        return unknown(format!("and {name} names no target_groups"));
    }
    let elb = &sides.environment(name).elb;
    let lb = match elb::load_balancer_routing(elb, lb_name).await {
        Ok(lb) => lb,
        Err(e) => return unknown(format!("and load balancer {lb_name} could not be read ({e})")),
    };
    if !crate::analysis::weights::alias_names(target, &lb.dns_name) {
        return unknown(format!("which is not {name}'s load balancer {lb_name}"));
    }
    let groups = match elb::target_groups(elb, &env.target_groups).await {
        Ok(groups) => groups,
        Err(e) => return unknown(format!("and {name}'s target groups could not be read ({e})")),
    };
    let listed: Vec<(&str, RoutedGroup<'_>)> = groups
        .iter()
        .map(|g| {
            let routed = RoutedGroup {
                name: &g.name,
                healthy: g.healthy(),
                registered: g.targets.len(),
                dns_failover_threshold: g.attributes.dns_failover_threshold.as_deref(),
            };
            (g.arn.as_str(), routed)
        })
        .collect();
    match lb.alias_health(&listed) {
        AlbHealth::Healthy => RecordHealth::Healthy,
        AlbHealth::Unhealthy(why) => {
            RecordHealth::Unhealthy(format!("`{id}`: an alias to {lb_name} evaluating target health, whose {why}"))
        }
        AlbHealth::Unknown(why) => unknown(format!("and load balancer {lb_name}: {why}")),
    }
}

/// The ingress rules that open every instance's path to its Redis.
async fn plan_authorize_ingress(
    sides: &SideClients,
    rb: &Runbook,
    environment: &str,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(sides, rb, environment).await?;
    let env = rb.environment(environment).ok_or_else(|| PlanError::Refused("no environment".into()))?;
    let mut before = Vec::new();
    // Paths closed whose rule belongs to another side (a shared Redis reached
    // with other credentials or region): never changed from this one.
    let mut elsewhere: Vec<String> = Vec::new();
    // Paths that cannot be judged: no rule proves them open or closed.
    let mut unjudged: Vec<String> = Vec::new();
    for i in &d.instances {
        let src = i.source();
        for name in &env.uses_redis {
            let Some(ep) = rb.redis_endpoint(name) else { continue };
            // The master's port, and a Sentinel endpoint's sentinels' (clients ask them first).
            for port in [Some(ep.port), ep.sentinel_port].into_iter().flatten() {
                let path = d.redis_path(&src, name, port);
                before.push(json!({"instance": i.id, "endpoint": name, "port": port, "path": path.describe()}));
                if let SgPath::Unknown { reason } = &path {
                    unjudged.push(format!("{} → {name} on port {port}: {reason}", i.id));
                    continue;
                }
                if let SgPath::Blocked { fix: None, reason } = &path {
                    unjudged.push(format!(
                        "{} → {name} on port {port} is closed and no rule here opens it: {reason}",
                        i.id
                    ));
                    continue;
                }
                if let Some(owner) = d.redis_groups_elsewhere.get(name) {
                    if !path.is_allowed() {
                        elsewhere.push(format!("{} → {name} on port {port} ({owner}'s groups)", i.id));
                    }
                    continue;
                }
                if let SgPath::Blocked { fix: Some(f), .. } = path {
                    let dup = p.steps.iter().any(|s| matches!(s, Step::AuthorizeIngress { group_id, from_group_id, port, .. } if *group_id == f.group_id && *from_group_id == f.from_group_id && *port == f.port));
                    if !dup {
                        p.steps.push(Step::AuthorizeIngress {
                            group_id: f.group_id,
                            port: f.port,
                            from_group_id: f.from_group_id,
                            description: tag(rb, environment),
                        });
                    }
                }
            }
        }
    }
    // Said before anything is changed: the plan would leave these closed.
    if !elsewhere.is_empty() {
        return Err(PlanError::Refused(format!(
            "closed: {}; the rule belongs on a group of another environment, reached with other credentials or \
             another region, which {environment}'s authorize never changes: add it in that environment's account \
             and region, then run this again; nothing was changed",
            elsewhere.join(", ")
        )));
    }
    // Rules added for some paths would leave these as they are, unsaid;
    // and nothing to add is no proof every path is open.
    if !unjudged.is_empty() {
        return Err(PlanError::Refused(format!("not judged: {}; nothing was changed", unjudged.join(", "))));
    }
    p.before = json!(before);
    p.after = json!(p.steps.iter().map(Step::describe).collect::<Vec<_>>());
    if p.steps.is_empty() {
        p.noop = Some(format!("every instance of {environment} already reaches its Redis through the security groups"));
    }
    Ok(())
}

/// Only what cutover itself added for this runbook and environment.
async fn plan_revoke_ingress(
    sides: &SideClients,
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(sides, rb, environment).await?;
    let want = tag(rb, environment);
    // A group not read may hold a rule cutover added: a revoke must see them
    // all (those of a side reached otherwise it never touches).
    if let Some((name, e)) = d.redis_groups_unread.iter().find(|(n, _)| !d.redis_groups_elsewhere.contains_key(*n)) {
        return Err(PlanError::Refused(format!(
            "{name}'s security groups could not be read ({e}), and a rule cutover added for {environment} may be \
             there; nothing was changed: run this again once they can be read"
        )));
    }
    // Groups another side owns and reaches are not this side's to read or change.
    let ids: Vec<String> = d
        .redis_groups
        .iter()
        .filter(|(name, _)| !d.redis_groups_elsewhere.contains_key(*name))
        .flat_map(|(_, groups)| groups.iter().map(|g| g.id.clone()))
        .collect();
    // No group is not every group (DescribeSecurityGroups with no id lists them all).
    let rules = if ids.is_empty() {
        Vec::new()
    } else {
        ec2::ingress_described(&clients.ec2, ids, &want).await.map_err(PlanError::Aws)?
    };
    p.steps.extend(rules.into_iter().map(|r| Step::RevokeIngress {
        group_id: r.group_id,
        port: r.port,
        from_group_id: r.from_group_id,
        description: r.description,
    }));
    p.before = json!(p.steps.iter().map(|s| s.describe().replacen("revoke", "allowed:", 1)).collect::<Vec<_>>());
    p.after = json!([]);
    if p.steps.is_empty() {
        p.noop = Some(format!("no ingress rule added by cutover for {environment} exists"));
        return Ok(());
    }
    cuts_no_other(sides, rb, environment, &p.steps).await
}

/// Refuses `revokes` while they would cut another environment's instance
/// off its Redis ([`paths_cut`]).
async fn cuts_no_other(
    sides: &SideClients,
    rb: &Runbook,
    environment: &str,
    revokes: &[Step],
) -> Result<(), PlanError> {
    let cut = paths_cut(sides, rb, environment, revokes).await?;
    if !cut.is_empty() {
        return Err(PlanError::Refused(format!(
            "revoking what cutover added for {environment} would cut {}: {} through the same rule (a group both \
             environments share, so the other's own authorize found the path open and added nothing); give them a \
             rule of their own, or move them out of that group, then run this again",
            cut.join("; "),
            if cut.len() == 1 { "it reaches its Redis" } else { "they reach their Redis" }
        )));
    }
    Ok(())
}

/// Each path of another environment's instance to its Redis that the
/// `revokes` would close, described: in the same account and region (a rule
/// cannot name another account's instances' groups otherwise).
async fn paths_cut(
    sides: &SideClients,
    rb: &Runbook,
    environment: &str,
    revokes: &[Step],
) -> Result<Vec<String>, PlanError> {
    use crate::runbook::Side;
    let mine = Side::Environment(environment.to_string());
    let mut cut = Vec::new();
    for (other, env) in rb.environments.iter().filter(|(o, e)| o.as_str() != environment && !e.uses_redis.is_empty()) {
        if !sides.same_reach(&mine, &Side::Environment(other.clone())) {
            continue;
        }
        let d = env_data(sides, rb, other).await.map_err(|e| {
            PlanError::Refused(format!(
                "whether {other}'s instances reach their Redis through the rules to revoke cannot be read ({e}); \
                 nothing was changed"
            ))
        })?;
        for name in &env.uses_redis {
            let Some(ep) = rb.redis_endpoint(name) else { continue };
            // Rules in another account or region are none of the revoked ones.
            if !sides.same_reach(&mine, &Side::Environment(ep.environment.clone())) {
                continue;
            }
            if let Some(e) = d.redis_groups_unread.get(name) {
                return Err(PlanError::Refused(format!(
                    "whether {other}'s instances reach {name} through the rules to revoke cannot be read ({e}); \
                     nothing was changed"
                )));
            }
            let groups = d.redis_groups.get(name).cloned().unwrap_or_default();
            let mut after = groups.clone();
            for s in revokes {
                if let Step::RevokeIngress { group_id, port, from_group_id, .. } = s {
                    after = crate::analysis::reachability::without_rule(&after, group_id, *port, from_group_id);
                }
            }
            // A stopped instance connects to nothing until started (its
            // start is an action of its own, planned then).
            for i in d.instances.iter().filter(|i| matches!(i.state.as_str(), "running" | "pending")) {
                let src = i.source();
                for port in [Some(ep.port), ep.sentinel_port].into_iter().flatten() {
                    let now = d.redis_ingress(&src, name, &groups, port);
                    // A path the instance's own outbound rules already shut is
                    // not cut by the revoke; one they may leave open (unknown) is.
                    let shut = matches!(d.redis_egress(&src, name, port), SgPath::Blocked { .. });
                    if !shut && now.is_allowed() && !d.redis_ingress(&src, name, &after, port).is_allowed() {
                        let who = i.name.as_deref().map_or(i.id.clone(), |n| format!("{} ({n})", i.id));
                        cut.push(format!("{other}'s {who} from {name} on port {port} ({})", now.describe()));
                    }
                }
            }
        }
    }
    Ok(cut)
}

/// The environment's instances registered in (or deregistered from) its target groups.
async fn plan_targets(
    sides: &SideClients,
    rb: &Runbook,
    environment: &str,
    register: bool,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(sides, rb, environment).await?;
    let mut before = serde_json::Map::new();
    // Instances AWS would not register (it takes running ones only), and
    // the groups that would then hold no target at all.
    let mut not_running: Vec<String> = Vec::new();
    let mut left_empty: Vec<&str> = Vec::new();
    // A draining target is on its way out (the deregistration delay): no
    // longer registered, so a rollback within the delay registers it again.
    let draining = |t: &&crate::aws::elb::Target| t.state == "draining" || t.state == "unhealthy.draining";
    // Where each instance was last deregistered from, on which port: a
    // registration puts it back there (a port override of 9090 in a group
    // on 8080 registered on 8080 would fail its health checks).
    let last_ports = if register {
        ports_last_deregistered(rb, environment).map_err(PlanError::Refused)?
    } else {
        Default::default()
    };
    for tg in &d.target_groups {
        // Each target as AWS lists it, its port kept: a later registration reads it back from the audit.
        let listed: Vec<serde_json::Value> =
            tg.targets.iter().map(|t| json!({"id": t.id, "port": t.port, "state": t.state})).collect();
        before.insert(tg.name.clone(), json!(listed));
        let in_group: Vec<&crate::aws::elb::Target> = tg.targets.iter().filter(|t| !draining(t)).collect();
        let registered: Vec<&str> = in_group.iter().map(|t| t.id.as_str()).collect();
        let mine: Vec<&crate::aws::ec2::Instance> = d.instances.iter().filter(|i| i.state != "terminated").collect();
        if !register {
            // Every target of the environment's instances, on whatever port it was registered.
            let targets: Vec<(String, Option<u16>)> =
                in_group.iter().filter(|t| mine.iter().any(|i| i.id == t.id)).map(|t| (t.id.clone(), t.port)).collect();
            if !targets.is_empty() {
                p.steps.push(Step::Deregister { target_group_arn: tg.arn.clone(), targets });
            }
            continue;
        }
        let (ids, idle): (Vec<&crate::aws::ec2::Instance>, Vec<&crate::aws::ec2::Instance>) =
            mine.into_iter().filter(|i| !registered.contains(&i.id.as_str())).partition(|i| i.state == "running");
        not_running.extend(idle.iter().map(|i| format!("{} {} ({})", i.id, i.state, tg.name)));
        if ids.is_empty() {
            if in_group.is_empty() && !idle.is_empty() {
                left_empty.push(&tg.name);
            }
            continue;
        }
        // Where cutover last deregistered it from; else like the targets already there, or the group's own port.
        let usual = in_group.first().copied().or(tg.targets.first()).and_then(|t| t.port);
        let mut by_port: std::collections::BTreeMap<Option<u16>, Vec<String>> = Default::default();
        for i in ids {
            let port = last_ports.get(&(tg.name.clone(), i.id.clone())).copied().or(usual);
            by_port.entry(port).or_default().push(i.id.clone());
        }
        for (port, instance_ids) in by_port {
            let port = port.map(i32::from);
            p.steps.push(Step::Register { target_group_arn: tg.arn.clone(), instance_ids, port });
        }
    }
    // A group left with no target serves nothing: refused, not "done".
    if !left_empty.is_empty() {
        return Err(PlanError::Refused(format!(
            "target group {} would hold no target: {environment}'s instances to register are not running ({}), \
             and AWS registers running instances only; start them first",
            left_empty.join(", "),
            not_running.join(", ")
        )));
    }
    p.before = json!(before);
    let mut after: Vec<String> = p.steps.iter().map(Step::describe).collect();
    if !not_running.is_empty() {
        after.push(format!("not registered, not running: {}", not_running.join(", ")));
    }
    p.after = json!(after);
    if p.steps.is_empty() {
        let also = match not_running.is_empty() {
            true => String::new(),
            false => format!(" (not running, so not registered: {})", not_running.join(", ")),
        };
        p.noop = Some(format!(
            "every {}instance of {environment} is already {}{also}",
            if register && !also.is_empty() { "running " } else { "" },
            if register { "registered" } else { "deregistered" }
        ));
    }
    Ok(())
}

/// The port each of `environment`'s targets was on when cutover last
/// deregistered it, by (target group name, instance id): read from the
/// `before` of the newest applied `deregister_targets` of the environment
/// (an item's action or a rollback). Lines written before ports were kept
/// name none.
fn ports_last_deregistered(
    rb: &Runbook,
    environment: &str,
) -> Result<std::collections::BTreeMap<(String, String), u16>, String> {
    let deregister = Action::DeregisterTargets { environment: environment.to_string() };
    let names: std::collections::BTreeSet<String> = rb
        .phases
        .iter()
        .flat_map(|ph| ph.items.iter().map(move |it| (ph, it)))
        .filter(|(_, it)| {
            matches!(&it.kind, crate::runbook::ItemKind::Action { action } if *action == deregister)
                || it.rollback.as_ref() == Some(&deregister)
        })
        .map(|(ph, it)| format!("{} ({}/{})", deregister.summary(), ph.id, it.id))
        .collect();
    if names.is_empty() {
        return Ok(Default::default());
    }
    let lines = crate::store::audit::AuditLog::for_runbook(&rb.name).read()?;
    let mut ports = std::collections::BTreeMap::new();
    // Oldest first, so the newest deregistration's port stands.
    for l in lines.iter().filter(|l| l.stage == Stage::Applied && names.contains(&l.action)) {
        let Some(groups) = l.before.as_object() else { continue };
        for (group, targets) in groups {
            for t in targets.as_array().into_iter().flatten() {
                if let (Some(id), Some(port)) =
                    (t["id"].as_str(), t["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
                {
                    ports.insert((group.clone(), id.to_string()), port);
                }
            }
        }
    }
    Ok(ports)
}

/// lb_cookie stickiness of `duration` on the environment's target groups, or none.
async fn plan_stickiness(
    sides: &SideClients,
    rb: &Runbook,
    environment: &str,
    duration: Option<std::time::Duration>,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(sides, rb, environment).await?;
    let want: Vec<(String, String)> = match duration {
        Some(duration) => vec![
            ("stickiness.enabled".into(), "true".into()),
            ("stickiness.type".into(), "lb_cookie".into()),
            ("stickiness.lb_cookie.duration_seconds".into(), duration.as_secs().to_string()),
        ],
        _ => vec![("stickiness.enabled".into(), "false".into())],
    };
    let mut before = serde_json::Map::new();
    for tg in &d.target_groups {
        let a = &tg.attributes;
        before.insert(tg.name.clone(), json!({"enabled": a.stickiness_enabled, "type": a.stickiness_type, "duration_seconds": a.stickiness_duration_seconds}));
        let same = match duration {
            Some(duration) => {
                a.stickiness_enabled == Some(true)
                    && a.stickiness_type.as_deref() == Some("lb_cookie")
                    && a.stickiness_duration_seconds.map(u64::from) == Some(duration.as_secs())
            }
            _ => a.stickiness_enabled != Some(true),
        };
        if !same {
            p.steps.push(Step::SetAttributes { target_group_arn: tg.arn.clone(), attributes: want.clone() });
        }
    }
    p.before = json!(before);
    p.after = json!(want.iter().cloned().collect::<std::collections::BTreeMap<_, _>>());
    if p.steps.is_empty() {
        p.noop = Some(format!("the target groups of {environment} already have these attributes"));
    }
    Ok(())
}

/// The environment's instances stopped (or started).
async fn plan_instances(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    stop: bool,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let e = rb.environment(environment).ok_or_else(|| PlanError::Refused("no environment".into()))?;
    let list = crate::aws::ec2::describe_instances(&clients.ec2, &e.instances).await.map_err(PlanError::Aws)?;
    p.before =
        json!(list.iter().map(|i| (i.id.clone(), i.state.clone())).collect::<std::collections::BTreeMap<_, _>>());
    // AWS stops a running instance and starts a stopped one, and an
    // instance takes seconds to minutes to get there: one still on its way
    // is refused, never passed over (a stop's rollback run while it settles
    // would start nothing, and the instances would then stop).
    let (on_the_way, to, aws_does, wait) = match stop {
        true => ("pending", "running", "stops a running instance only", "instance-running"),
        false => ("stopping", "stopped", "starts a stopped instance only", "instance-stopped"),
    };
    let moving: Vec<&str> = list.iter().filter(|i| i.state == on_the_way).map(|i| i.id.as_str()).collect();
    if !moving.is_empty() {
        let (is, they) = if moving.len() == 1 { ("is", "it is") } else { ("are", "they are") };
        return Err(PlanError::Refused(format!(
            "{} of {environment} {is} {on_the_way}, and AWS {aws_does}: wait until {they} {to} (`aws ec2 wait \
             {wait} --instance-ids {}`), then run this again",
            moving.join(", "),
            moving.join(" ")
        )));
    }
    let ids: Vec<String> =
        list.iter().filter(|i| i.state == if stop { "running" } else { "stopped" }).map(|i| i.id.clone()).collect();
    if stop {
        in_no_autoscaling_group(clients, &ids, true).await?;
        let stopping: Vec<&ec2::Instance> = list.iter().filter(|i| ids.contains(&i.id)).collect();
        no_load_balancer_sends_to(clients, &stopping, "stopping them").await?;
    }
    p.after = json!(
        ids.iter()
            .map(|id| (id.clone(), if stop { "stopped" } else { "running" }))
            .collect::<std::collections::BTreeMap<_, _>>()
    );
    if ids.is_empty() {
        let states: Vec<String> = list.iter().map(|i| format!("{} {}", i.id, i.state)).collect();
        let states = if states.is_empty() { String::new() } else { format!(" ({})", states.join(", ")) };
        p.noop = Some(format!("no instance of {environment} to {}{states}", if stop { "stop" } else { "start" }));
    } else {
        p.steps.push(if stop { Step::Stop { instance_ids: ids } } else { Step::Start { instance_ids: ids } });
    }
    Ok(())
}

/// Refuses to stop instances a load balancer may still send requests to:
/// a target of any group in the region (by instance id, or by address in
/// an `ip` group) in any state but `unused`. Route53 at weight 0 stops new
/// lookups only: clients kept alive on the load balancer, and whatever
/// calls its own DNS name, still reach it, and an ALB whose targets are all
/// unhealthy sends to them all (fail-open). A `draining` target still
/// finishes requests in flight. Deregistering first (`deregister_targets`)
/// and waiting out the group's deregistration delay is the way.
async fn no_load_balancer_sends_to(
    clients: &Clients,
    instances: &[&ec2::Instance],
    doing: &str,
) -> Result<(), PlanError> {
    let asked: Vec<(&str, Option<&str>, &[String])> =
        instances.iter().map(|i| (i.id.as_str(), i.vpc_id.as_deref(), i.target_addresses.as_slice())).collect();
    let found = elb::registrations(&clients.elb, &asked).await.map_err(|e| {
        PlanError::Refused(format!("cannot tell whether a load balancer still sends requests to these instances: {e}"))
    })?;
    // `unused` is no routing, but for an instance still starting: its
    // target (Target.InvalidState) is in service once it runs.
    let served: Vec<(&elb::Registration, String)> = found
        .iter()
        .filter(|(i, r)| {
            r.target.state != "unused"
                || instances[*i].state == "pending" && r.target.reason.as_deref() == Some("Target.InvalidState")
        })
        .map(|(i, r)| {
            let id = &instances[*i].id;
            let who = if *id == r.target.id { id.clone() } else { format!("{id} (as {})", r.target.id) };
            (r, format!("{who} in {} ({})", r.target_group, r.target.state))
        })
        .collect();
    if served.is_empty() {
        return Ok(());
    }
    let draining_only = served.iter().all(|(r, _)| r.target.state == "draining");
    let served: Vec<String> = served.into_iter().map(|(_, s)| s).collect();
    let way = if draining_only {
        "wait until their draining ends (the group's deregistration delay), then run this again"
    } else {
        "deregister them first (`deregister_targets`, or `aws elbv2 deregister-targets` for a group the runbook \
         does not name), wait until their draining ends, then run this again"
    };
    Err(PlanError::Refused(format!(
        "still targets of a load balancer: {}; it sends them requests from clients kept alive on it and from \
         callers of its own name whatever Route53 answers, and {doing} would fail those requests; {way}",
        served.join(", ")
    )))
}

/// Refuses to stop or terminate instances an Auto Scaling group holds: it
/// counts a stopped instance unhealthy and replaces it (terminating it and
/// its disks: the rollback window's instances are gone), and replaces a
/// terminated one with a new instance of the old side. An instance in
/// Standby is not health-checked, so it may be stopped (`stop`), never
/// terminated: only one detached from its group is.
async fn in_no_autoscaling_group(clients: &Clients, ids: &[String], stop: bool) -> Result<(), PlanError> {
    if ids.is_empty() {
        return Ok(());
    }
    let held = crate::aws::autoscaling::holding(&clients.autoscaling, ids).await.map_err(|e| {
        PlanError::Refused(format!("cannot tell whether an Auto Scaling group holds these instances: {e}"))
    })?;
    let held: Vec<String> = held
        .iter()
        .filter(|h| !(stop && h.lifecycle_state == "Standby"))
        .map(|h| format!("{} (group {}, {})", h.instance_id, h.group, h.lifecycle_state))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    let (done, way_out) = if stop {
        (
            "stopped",
            "put them in Standby (`aws autoscaling enter-standby --should-decrement-desired-capacity`) or detach \
             them (`aws autoscaling detach-instances --should-decrement-desired-capacity`)",
        )
    } else {
        ("terminated", "detach them (`aws autoscaling detach-instances --should-decrement-desired-capacity`)")
    };
    Err(PlanError::Refused(format!(
        "{} held by an Auto Scaling group, which replaces an instance {done} by a new one (and terminates a \
         stopped one); {way_out} first, then run this again",
        held.join(", ")
    )))
}

/// An AMI of each of the environment's instances; each must be running or
/// stopped (CreateImage refuses the states between).
async fn plan_images(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    no_reboot: bool,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let e = rb.environment(environment).ok_or_else(|| PlanError::Refused("no environment".into()))?;
    let list = ec2::describe_instances(&clients.ec2, &e.instances).await.map_err(PlanError::Aws)?;
    p.before =
        json!(list.iter().map(|i| (i.id.clone(), i.state.clone())).collect::<std::collections::BTreeMap<_, _>>());
    if let Some(i) = list.iter().find(|i| i.state != "running" && i.state != "stopped") {
        return Err(PlanError::Refused(format!(
            "{} of {environment} is {}; an AMI is taken of a running or stopped instance: wait and run it again",
            i.id, i.state
        )));
    }
    if !no_reboot {
        let running: Vec<&ec2::Instance> = list.iter().filter(|i| i.state == "running").collect();
        no_load_balancer_sends_to(clients, &running, "rebooting them for their AMIs").await?;
    }
    let ids: Vec<String> = list.iter().map(|i| i.id.clone()).collect();
    p.after = json!(ids.iter().map(|id| (id.clone(), "AMI available")).collect::<std::collections::BTreeMap<_, _>>());
    if ids.is_empty() {
        p.noop = Some(format!("{environment} has no instance to take an AMI of"));
    } else {
        p.steps.push(Step::CreateImages { instance_ids: ids, no_reboot });
    }
    Ok(())
}

/// A snapshot of the endpoint's ElastiCache replication group, which must be `available`.
async fn plan_snapshot(clients: &Clients, rb: &Runbook, redis: &str, p: &mut ActionPlan) -> Result<(), PlanError> {
    let ep = rb.redis_endpoint(redis).ok_or_else(|| PlanError::Refused(format!("no Redis endpoint {redis}")))?;
    let group = ep.elasticache.clone().ok_or_else(|| {
        PlanError::Refused(format!("{redis} is not an ElastiCache replication group (no `elasticache` in the runbook)"))
    })?;
    let shape =
        crate::aws::elasticache::replication_group(&clients.elasticache, &group).await.map_err(PlanError::Aws)?;
    p.before =
        json!({ redis: { "replication_group": group, "snapshot_retention_days": shape.snapshot_retention_days } });
    p.after = json!({ redis: "+ a manual snapshot, available" });
    p.steps.push(Step::SnapshotRedis { endpoint: redis.to_string(), replication_group: group });
    Ok(())
}

/// The environment's instances terminated: refused unless every one is
/// stopped. Each is shown with the newest available AMI cutover took of it
/// for this runbook (its tags), which the audit then records.
async fn plan_terminate(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let e = rb.environment(environment).ok_or_else(|| PlanError::Refused("no environment".into()))?;
    let list = ec2::describe_instances(&clients.ec2, &e.instances).await.map_err(PlanError::Aws)?;
    // One shutting down is being terminated already (by whoever sent it):
    // gone, as a terminated one is.
    let list: Vec<ec2::Instance> = list.into_iter().filter(|i| i.state != "shutting-down").collect();
    let running: Vec<String> =
        list.iter().filter(|i| i.state != "stopped").map(|i| format!("{} is {}", i.id, i.state)).collect();
    if !running.is_empty() {
        // One stopping gets to `stopped` on its own: waiting is the way.
        let way = match list.iter().all(|i| matches!(i.state.as_str(), "stopped" | "stopping")) {
            true => {
                "wait until they are stopped (one stuck in `stopping` for more than 10 minutes may be stopped with \
                     `aws ec2 stop-instances --force`), then run this again"
            }
            false => "stop them first (stop_instances) and wait out the rollback window",
        };
        return Err(PlanError::Refused(format!(
            "only stopped instances are terminated: {}; {way}",
            running.join(", ")
        )));
    }
    let ids: Vec<String> = list.iter().map(|i| i.id.clone()).collect();
    // Only what the stop item the window runs from stopped: the selector also
    // finds what it never touched (a standby fleet under the same tags,
    // stopped before; an instance launched and stopped since), which the
    // rollback window never covered.
    // A stop item whose lines name nothing stopped nothing it can vouch for:
    // every instance is then one it never stopped, never all of them.
    if let Some((stop_key, stopped)) = stopped_by_its_stop(rb, environment).map_err(PlanError::Refused)? {
        let other: Vec<&String> = ids.iter().filter(|id| !stopped.contains(*id)).collect();
        if !other.is_empty() {
            return Err(PlanError::Refused(format!(
                "{} {} not stopped by {stop_key}, whose window this waits out; only what it stopped is \
                 terminated: start them and run {stop_key} again (its window starts over; a stop names only \
                 what it stops), or leave them out of {environment}'s instance selector",
                other.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                if other.len() == 1 { "was" } else { "were" }
            )));
        }
    }
    in_no_autoscaling_group(clients, &ids, false).await?;
    // AWS terminates the others and refuses these (TerminateInstances with
    // one protected instance terminates those in other zones, then fails):
    // half an action, reported as failed.
    let protected = ec2::termination_protected(&clients.ec2, &ids).await.map_err(PlanError::Aws)?;
    if !protected.is_empty() {
        return Err(PlanError::Refused(format!(
            "{} {} termination protection (DisableApiTermination), and AWS would refuse {} and terminate the \
             others in other Availability Zones, half the action; nothing was changed: turn it off on purpose \
             (aws ec2 modify-instance-attribute --no-disable-api-termination) and run this again, or leave {} out \
             of {environment}'s instance selector",
            protected.join(", "),
            if protected.len() == 1 { "has" } else { "have" },
            if protected.len() == 1 { "it" } else { "them" },
            if protected.len() == 1 { "it" } else { "them" },
        )));
    }
    let tags = [("cutover:runbook".to_string(), rb.name.clone())];
    let images = ec2::describe_images(&clients.ec2, &[], &tags).await.map_err(PlanError::Aws)?;
    let mut amis = std::collections::BTreeMap::new();
    for i in &list {
        // RFC 3339 times in one format sort as they happened: the newest last.
        let newest = images
            .iter()
            .filter(|img| img.state == "available" && img.tags.get("cutover:instance") == Some(&i.id))
            .max_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        if let Some(img) = newest {
            amis.insert(i.id.clone(), img.id.clone());
        }
    }
    p.before = json!(
        list.iter()
            .map(|i| (i.id.clone(), json!({"state": i.state, "ami": amis.get(&i.id)})))
            .collect::<serde_json::Map<_, _>>()
    );
    p.after = json!(list.iter().map(|i| (i.id.clone(), "terminated")).collect::<std::collections::BTreeMap<_, _>>());
    if list.is_empty() {
        p.noop = Some(format!("no instance of {environment} is left to terminate"));
    } else {
        p.steps.push(Step::Terminate { instance_ids: list.iter().map(|i| i.id.clone()).collect(), amis });
    }
    Ok(())
}

/// The stop item a `terminate_instances` of `environment` waits for (its
/// `not_before`), and every instance its runs' intent and applied lines
/// say it stopped. None: no such item.
fn stopped_by_its_stop(
    rb: &Runbook,
    environment: &str,
) -> Result<Option<(String, std::collections::BTreeSet<String>)>, String> {
    let terminate = rb.phases.iter().flat_map(|ph| &ph.items).find(|it| {
        matches!(&it.kind, crate::runbook::ItemKind::Action { action: Action::TerminateInstances { environment: e } } if e == environment)
    });
    let Some(stop_key) = terminate.and_then(|it| it.not_before.as_ref()).map(|nb| nb.after.clone()) else {
        return Ok(None);
    };
    let Some((_, stop)) = rb.item_by_key(&stop_key) else { return Ok(None) };
    let crate::runbook::ItemKind::Action { action } = &stop.kind else { return Ok(None) };
    let name = format!("{} ({stop_key})", action.summary());
    let lines = crate::store::audit::AuditLog::for_runbook(&rb.name).read()?;
    Ok(Some((stop_key, stopped_in(&lines, &name))))
}

/// Every instance the lines of the stop action `name` say it stopped: its
/// `applied` lines', and its intents' but where their run failed (nothing
/// stopped: such an intent vouched for instances someone else stopped
/// later, and they were terminated outside any rollback window). An intent
/// left alone (its run died after the send) may have stopped them.
fn stopped_in(lines: &[crate::store::audit::AuditLine], name: &str) -> std::collections::BTreeSet<String> {
    (0..lines.len())
        .filter(|&i| lines[i].action == name)
        .filter(|&i| match lines[i].stage {
            Stage::Applied => true,
            Stage::Intent => crate::store::audit::conclusion(lines, i) != Some(Stage::Failed),
            _ => false,
        })
        .filter_map(|i| lines[i].after.as_object())
        .flat_map(|after| after.keys().cloned())
        .collect()
}

/// What `plan_terminate` found, read again right before the terminate: each
/// instance still there and stopped, none in an Auto Scaling group.
async fn still_terminable(clients: &Clients, ids: &[String]) -> Result<(), PlanError> {
    let selector = crate::runbook::InstanceSelector::Ids(ids.to_vec());
    let list = ec2::describe_instances(&clients.ec2, &selector).await.map_err(PlanError::Aws)?;
    let changed: Vec<String> = ids
        .iter()
        .filter_map(|id| match list.iter().find(|i| &i.id == id) {
            Some(i) if i.state == "stopped" => None,
            Some(i) => Some(format!("{id} is {}", i.state)),
            None => Some(format!("{id} is no longer found")),
        })
        .collect();
    if !changed.is_empty() {
        return Err(PlanError::Refused(format!(
            "the instances changed since the plan was confirmed: {}; only stopped instances are \
             terminated, plan it again",
            changed.join(", ")
        )));
    }
    let protected = ec2::termination_protected(&clients.ec2, ids).await.map_err(PlanError::Aws)?;
    if !protected.is_empty() {
        return Err(PlanError::Refused(format!(
            "termination protection was turned on since the plan was confirmed ({}): AWS would refuse those and \
             terminate the others in other Availability Zones; nothing was changed, plan it again",
            protected.join(", ")
        )));
    }
    in_no_autoscaling_group(clients, ids, false).await
}

/// What a stop's or a reboot's plan found of its instances, read again
/// before it is sent: no load balancer sends the running ones requests, and
/// (for a stop) no Auto Scaling group holds them.
async fn still_out_of_service(clients: &Clients, ids: &[String], stop: bool) -> Result<(), PlanError> {
    let selector = crate::runbook::InstanceSelector::Ids(ids.to_vec());
    let list = ec2::describe_instances(&clients.ec2, &selector).await.map_err(PlanError::Aws)?;
    let up: Vec<&ec2::Instance> = list.iter().filter(|i| i.state == "running" || i.state == "pending").collect();
    let doing = if stop { "stopping them" } else { "rebooting them for their AMIs" };
    no_load_balancer_sends_to(clients, &up, doing).await?;
    match stop {
        true => in_no_autoscaling_group(clients, ids, true).await,
        false => Ok(()),
    }
}

/// The named groups deleted: refused, naming what uses each, while anything
/// does (a network interface, an instance, a load balancer, another group's rule).
async fn plan_delete_groups(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    names: &[String],
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let e = rb.environment(environment).ok_or_else(|| PlanError::Refused("no environment".into()))?;
    let aws = |e: crate::aws::AwsError| PlanError::Aws(e);
    // The environment's VPC, where names are looked up (its load balancer may be gone by now).
    // Gone is fine; unread is not: names would then be looked up region-wide.
    let lb = match &e.load_balancer {
        Some(name) => match elb::load_balancer(&clients.elb, name).await {
            Ok(lb) => Some(lb),
            Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound => None,
            Err(e) => return Err(aws(e)),
        },
        None => None,
    };
    let instances = ec2::describe_instances(&clients.ec2, &e.instances).await.map_err(aws)?;
    let vpc = fetch::environment_vpc(e, lb.as_ref(), &instances);
    let found = ec2::groups_found(&clients.ec2, names, vpc.as_ref()).await.map_err(aws)?;
    // With no VPC to look in, a name is found region-wide: possibly another
    // VPC's namesake, once this environment's own group is gone. Ids are
    // the same wherever they are found.
    let by_name: Vec<String> = found
        .iter()
        .filter(|g| vpc.is_none() && g.asked != g.id)
        .map(|g| format!("`{}` in {}", g.asked, g.vpc_id.as_deref().unwrap_or("no VPC")))
        .collect();
    if !by_name.is_empty() {
        return Err(PlanError::Refused(format!(
            "nothing tells {environment}'s VPC any more (no load balancer of it left, and its instances are in \
             no VPC or several), and a group of that name found elsewhere may be another VPC's: {}; check in \
             the console whether it is {environment}'s, and if so delete it there or name it by its id in the \
             runbook",
            by_name.join(", ")
        )));
    }
    if let Some(g) = found.iter().find(|g| g.name == "default") {
        return Err(PlanError::Refused(format!("{} is a VPC's default group, which cannot be deleted", g.id)));
    }
    let mut before = serde_json::Map::new();
    let mut in_use = Vec::new();
    for asked in names {
        let Some(g) = found.iter().find(|g| &g.asked == asked) else {
            before.insert(asked.clone(), json!("not found (already deleted?)"));
            continue;
        };
        let mut users = ec2::group_users(&clients.ec2, g).await.map_err(aws)?;
        users.extend(
            elb::load_balancers_using(&clients.elb, &g.id)
                .await
                .map_err(aws)?
                .into_iter()
                .map(|n| format!("load balancer {n}")),
        );
        before.insert(asked.clone(), json!({"id": g.id, "used_by": users}));
        if !users.is_empty() {
            in_use.push(format!("{} ({}) is used by {}", g.name, g.id, users.join(", ")));
        }
    }
    p.before = json!(before);
    if !in_use.is_empty() {
        return Err(PlanError::Refused(format!(
            "security groups still in use: {}; detach or delete what uses them first",
            in_use.join("; ")
        )));
    }
    let groups: Vec<(String, String)> = found.iter().map(|g| (g.id.clone(), g.name.clone())).collect();
    p.after = json!(groups.iter().map(|(_, n)| (n.clone(), "deleted")).collect::<std::collections::BTreeMap<_, _>>());
    if groups.is_empty() {
        p.noop = Some(format!("none of {} exists", names.join(", ")));
    } else {
        p.steps.push(Step::DeleteGroups { groups });
    }
    Ok(())
}

/// `to` percent on the rollout's `to` side.
async fn plan_shift(clients: &Clients, rb: &Runbook, to: u8, p: &mut ActionPlan) -> Result<(), PlanError> {
    let sp = shift::plan(clients, rb, crate::analysis::weights::weights_for_percent(to)).await?;
    p.before = sp.before();
    p.after = sp.after();
    if sp.is_noop() {
        p.noop = Some("the records already have these weights".into());
    } else {
        p.steps.push(Step::Shift(Box::new(sp)));
    }
    Ok(())
}

/// A copy of one Redis endpoint's keys into another's.
async fn plan_copy(
    rb: &Runbook,
    vars: &std::collections::BTreeMap<String, String>,
    from_redis: &str,
    to_redis: &str,
    pattern: Option<&str>,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let endpoint = |role: &'static str, name: &str| -> Result<crate::redis::url::Endpoint, String> {
        let ep = rb.redis_endpoint(name).ok_or_else(|| format!("no Redis endpoint {name} in the runbook"))?;
        fetch::redis_endpoint(ep, role, |v| vars.get(v).cloned().or_else(|| std::env::var(v).ok()))
    };
    let (from, to) = (
        endpoint("source", from_redis).map_err(PlanError::Refused)?,
        endpoint("target", to_redis).map_err(PlanError::Refused)?,
    );
    // Summed over the shards of a cluster.
    let (sk, se) = crate::redis::copy::endpoint_counts(&from).await.map_err(PlanError::Redis)?;
    let (tk, te) = crate::redis::copy::endpoint_counts(&to).await.map_err(PlanError::Redis)?;
    p.before = json!({
        from_redis: {"keys": sk, "expiring": se}, to_redis: {"keys": tk, "expiring": te},
    });
    p.after = json!({ to_redis: format!("+ the keys of {from_redis}{}", pattern.map(|p| format!(" matching {p}")).unwrap_or_default()) });
    let resume = planned_resume(&from, &to, pattern).map_err(PlanError::Refused)?;
    p.steps.push(Step::CopyRedis(Box::new(RedisCopy {
        from_name: from_redis.to_string(),
        to_name: to_redis.to_string(),
        from,
        to,
        pattern: pattern.map(str::to_string),
        resume,
    })));
    Ok(())
}

/// The interrupted copy of the pair that `copy_redis` would resume, as its
/// confirmation names it; Err when it is one this action does not finish.
fn planned_resume(
    from: &crate::redis::url::Endpoint,
    to: &crate::redis::url::Endpoint,
    pattern: Option<&str>,
) -> Result<Option<(String, u64)>, String> {
    use crate::redis::checkpoint;
    let place = checkpoint::place_for(&from.server_id(), &to.server_id(), pattern);
    let Some(cp) = checkpoint::load(&place)? else { return Ok(None) };
    if cp.on_conflict != crate::redis::OnConflict::Fail {
        return Err(not_ours(&cp));
    }
    Ok(Some((cp.updated.clone(), cp.counters.copied)))
}

/// Why a checkpoint of a copy begun with another conflict policy is not
/// finished here.
fn not_ours(cp: &crate::redis::checkpoint::Checkpoint) -> String {
    format!(
        "an interrupted `cutover redis copy --on-conflict {}` of this pair is waiting to be resumed; finish it with \
         that command and --resume (this action copies only with `fail`); nothing was written",
        cp.on_conflict.name()
    )
}

/// What a running action reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// A step is done.
    Done(&'a str),
    /// A long step's progress (a Redis copy): `done` of about `total`.
    Progress { done: u64, total: u64, line: &'a str },
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Report::Done(step) => write!(f, "done: {step}"),
            Report::Progress { done, total, line } => write!(f, "progress {done}/{total}: {line}"),
        }
    }
}

/// Applies one step of `item` (`phase/item`) of `runbook`; a long one (a
/// Redis copy, a backup) reports progress to `say`. What to audit as
/// applied, and Route53's change id for a shift (its INSYNC is waited for
/// after the `applied` line).
pub async fn apply(
    clients: &Clients,
    who: &crate::authority::Actor,
    (rb, item): (&Runbook, &str),
    step: &Step,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<(String, Option<String>), String> {
    let runbook = rb.name.as_str();
    match step {
        Step::CreateImages { instance_ids, no_reboot } => {
            return create_images(clients, (runbook, item), instance_ids, *no_reboot, say).await.map(|d| (d, None));
        }
        Step::SnapshotRedis { endpoint, replication_group } => {
            return snapshot_redis(clients, (runbook, item), endpoint, replication_group, say).await.map(|d| (d, None));
        }
        Step::AuthorizeIngress { group_id, port, from_group_id, description }
        | Step::RevokeIngress { group_id, port, from_group_id, description } => {
            let rule = GroupIngress {
                group_id: group_id.clone(),
                port: *port,
                from_group_id: from_group_id.clone(),
                description: description.clone(),
            };
            if matches!(step, Step::AuthorizeIngress { .. }) {
                ec2::authorize_ingress(&clients.ec2, &rule).await.map_err(|e| e.to_string())?;
                return Ok(("added".into(), None));
            }
            if !ec2::revoke_ingress(&clients.ec2, &rule).await.map_err(|e| e.to_string())? {
                return revoked_nothing(clients, &rule, step).await;
            }
            return Ok(("revoked".into(), None));
        }
        Step::Register { target_group_arn, instance_ids, port } => {
            elb::register_targets(&clients.elb, target_group_arn, instance_ids, *port)
                .await
                .map_err(|e| e.to_string())?;
        }
        Step::Deregister { target_group_arn, targets } => {
            elb::deregister_targets(&clients.elb, target_group_arn, targets).await.map_err(|e| e.to_string())?;
        }
        Step::SetAttributes { target_group_arn, attributes } => {
            elb::set_target_group_attributes(&clients.elb, target_group_arn, attributes)
                .await
                .map_err(|e| e.to_string())?;
        }
        Step::Stop { instance_ids } => {
            ec2::stop_instances(&clients.ec2, instance_ids).await.map_err(|e| e.to_string())?;
        }
        Step::Start { instance_ids } => {
            ec2::start_instances(&clients.ec2, instance_ids).await.map_err(|e| e.to_string())?;
        }
        Step::Terminate { instance_ids, amis } => {
            if let Err(e) = ec2::terminate_instances(&clients.ec2, instance_ids).await {
                // TerminateInstances may end some and fail on others (or its
                // reply may be lost): what they are now is said.
                let selector = crate::runbook::InstanceSelector::Ids(instance_ids.clone());
                let now = match ec2::describe_instances_with_terminated(&clients.ec2, &selector).await {
                    Ok(list) => {
                        let gone: Vec<String> = list
                            .iter()
                            .filter(|i| matches!(i.state.as_str(), "shutting-down" | "terminated"))
                            .map(|i| format!("{} {}", i.id, i.state))
                            .collect();
                        match gone.is_empty() {
                            true => "none of them is terminating".to_string(),
                            false => format!("terminating or terminated even so: {}", gone.join(", ")),
                        }
                    }
                    Err(r) => format!("what became of them could not be read ({r})"),
                };
                return Err(format!("{e}; {now}"));
            }
            let amis: Vec<String> = amis.iter().map(|(i, a)| format!("{a} of {i}")).collect();
            return Ok((
                format!(
                    "terminated {}; AMIs kept: {}",
                    instance_ids.join(", "),
                    if amis.is_empty() { "none".to_string() } else { amis.join(", ") }
                ),
                None,
            ));
        }
        Step::DeleteGroups { groups } => {
            for (i, (id, name)) in groups.iter().enumerate() {
                if let Err(e) = ec2::delete_security_group(&clients.ec2, id).await {
                    let done: Vec<&str> = groups[..i].iter().map(|(_, n)| n.as_str()).collect();
                    return Err(format!(
                        "{name} ({id}): {e}; deleted before it: {}",
                        if done.is_empty() { "none".to_string() } else { done.join(", ") }
                    ));
                }
            }
            return Ok((
                format!(
                    "deleted {}",
                    groups.iter().map(|(id, n)| format!("{n} ({id})")).collect::<Vec<_>>().join(", ")
                ),
                None,
            ));
        }
        Step::CopyRedis(c) => return copy_redis(who, c, say).await.map(|d| (d, None)),
        Step::Shift(p) => return send_shift(clients, who, rb, p).await,
    }
    Ok(("done".into(), None))
}

/// A revoke AWS answered without finding the rule (its `UnknownIpPermissions`):
/// gone since the plan, nothing to revoke; still there (a rule AWS did not
/// match as sent), an error, never "revoked".
async fn revoked_nothing(
    clients: &Clients,
    rule: &GroupIngress,
    step: &Step,
) -> Result<(String, Option<String>), String> {
    let rules =
        ec2::ingress_described(&clients.ec2, vec![rule.group_id.clone()], &rule.description).await.map_err(|e| {
            format!("AWS found no rule to revoke for {}, and whether it is there cannot be read: {e}", step.describe())
        })?;
    if rules.contains(rule) {
        return Err(format!(
            "AWS found no rule matching {} and revoked nothing, yet {} still holds it; nothing was changed",
            step.describe(),
            rule.group_id
        ));
    }
    Ok(("not there (removed since the plan): nothing to revoke".into(), None))
}

/// A weight shift sent: what to audit as applied, and Route53's change id
/// when it answered (the INSYNC wait comes after the `applied` line).
async fn send_shift(
    clients: &Clients,
    who: &crate::authority::Actor,
    rb: &Runbook,
    p: &shift::ShiftPlan,
) -> Result<(String, Option<String>), String> {
    match shift::apply(clients, who, p).await {
        Ok(change) => Ok((format!("change {change} accepted"), Some(change))),
        // No reply is not "not applied": read the records back, as
        // `cutover shift` does, so "failed" never hides live weights.
        Err(e) => {
            let back = shift::read_back_after(clients, rb, p, &e).await;
            let message = shift::failed_send_message(&e, &back);
            match back {
                shift::ReadBack::Live => Ok((format!("{message}; change id unknown, INSYNC not confirmed"), None)),
                _ => Err(message),
            }
        }
    }
}

/// Audits a plan refused (`PlanError::Refused`: a check said no before
/// anything was planned to send) as `refused` under `action` (`name
/// (item)`), as every attempt is; any other error is not an attempt.
pub fn audit_plan_refused(
    rb: &Runbook,
    who: &crate::authority::Actor,
    action: String,
    e: &super::PlanError,
) -> Result<(), String> {
    let super::PlanError::Refused(why) = e else { return Ok(()) };
    let line = who.audit_line(&rb.name, action, Stage::Refused, Default::default(), why.clone());
    crate::store::audit::AuditLog::for_runbook(&rb.name)
        .append(&line)
        .map_err(|err| format!("{} (and the refusal could not be audited: {err})", e.nothing_changed()))
}

/// Records `applied` for an item's forward action found already done (a
/// plan with nothing to do) whose latest run stopped after its `intent` or
/// before its last step's `applied` (killed before it was written): what it
/// meant to do holds, and
/// an item waiting on it (a termination's window after the stop) would
/// otherwise wait for ever. The window then runs from now, later than the
/// real finish. Returns what it recorded, if it did.
pub fn record_found_done(
    rb: &Runbook,
    who: &crate::authority::Actor,
    item: &str,
    plan: &ActionPlan,
) -> Result<Option<String>, String> {
    if plan.noop.is_none() || forward_item(rb, item, plan).is_none() {
        return Ok(None);
    }
    let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
    let lines = log.read()?;
    let Some(detail) = found_done_in(rb, item, plan, &lines) else { return Ok(None) };
    let action = format!("{} ({item})", plan.name);
    // What the run found done moved from, as its intent said: the plan's
    // `before` is the state after it (a shift's share taken would vanish).
    let intent = lines.iter().rev().find(|l| l.action == action && l.stage == Stage::Intent);
    let before = intent.map_or_else(|| plan.before.clone(), |l| l.before.clone());
    log.append(&who.audit_line(&rb.name, action, Stage::Applied, (before, plan.after.clone()), detail.clone()))?;
    Ok(Some(detail))
}

/// What `record_found_done` would record for a plan with nothing to do,
/// if anything: the last run of the item stopped after its intent (or a
/// step before its last), and the plan finds the change made.
pub fn found_done(rb: &Runbook, item: &str, plan: &ActionPlan) -> Result<Option<String>, String> {
    if plan.noop.is_none() || forward_item(rb, item, plan).is_none() {
        return Ok(None);
    }
    let lines = crate::store::audit::AuditLog::for_runbook(&rb.name).read()?;
    Ok(found_done_in(rb, item, plan, &lines))
}

/// `found_done` on the audit's `lines`.
fn found_done_in(
    rb: &Runbook,
    item: &str,
    plan: &ActionPlan,
    lines: &[crate::store::audit::AuditLine],
) -> Option<String> {
    let why = plan.noop.as_ref()?;
    let it = forward_item(rb, item, plan)?;
    let Some((last, true)) = super::not_before::latest_run_line(it, item, lines) else { return None };
    let stopped = match (last.stage, last.step) {
        (Stage::Intent, _) => "its intent".to_string(),
        (Stage::Applied | Stage::InSync, Some(s)) if !s.is_last() => format!("step {} of {}", s.number, s.of),
        _ => return None,
    };
    Some(format!("found done when run again ({why}): the run before stopped after {stopped}"))
}

/// Item `item` when `plan` is its own action, not its rollback.
fn forward_item<'a>(rb: &'a Runbook, item: &str, plan: &ActionPlan) -> Option<&'a crate::runbook::Item> {
    let (_, it) = rb.item_by_key(item)?;
    matches!(&it.kind, crate::runbook::ItemKind::Action { action } if action.summary() == plan.name).then_some(it)
}

/// What a person can do after a step of `plan` (item `item`) failed: its
/// rollback only where one exists, and never for what cannot be undone.
fn recovery(rb: &Runbook, item: &str, plan: &ActionPlan) -> String {
    if plan.confirm_name().is_some() {
        return "what was applied cannot be undone; run it again to finish once the cause is fixed".into();
    }
    match forward_item(rb, item, plan) {
        Some(it) if it.rollback.is_some() => {
            format!("run the item's rollback to undo (`cutover run {} {item} --rollback --yes`)", rb.source)
        }
        Some(_) => "the item has no rollback: undo what was applied by hand, or run it again to finish".into(),
        None => "this was the item's rollback: run it again to finish once the cause is fixed".into(),
    }
}

/// Why `execute` did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteError {
    /// Refused before anything was sent: a running rollout, a time gate not
    /// yet open, traffic back on the side (exit 2; nothing to undo).
    Refused(String),
    /// A step failed (what was applied before it is said), or the audit
    /// could not be written.
    Failed(String),
}

impl std::fmt::Display for ExecuteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecuteError::Refused(m) | ExecuteError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<String> for ExecuteError {
    fn from(message: String) -> Self {
        ExecuteError::Failed(message)
    }
}

impl From<ExecuteError> for String {
    fn from(e: ExecuteError) -> Self {
        e.to_string()
    }
}

/// Applies a confirmed plan step by step, audited: intent before anything is
/// sent, then each step. `say` hears each step done. A failed step stops and
/// the error says what was applied and how to undo it.
pub async fn execute(
    clients: &SideClients,
    rb: &Runbook,
    who: &crate::authority::Actor,
    item: &str,
    plan: &ActionPlan,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String, ExecuteError> {
    // Where a plan waits in a confirm popup: tests change the world here.
    crate::crashpoint::here("action:confirmed");
    let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
    let line = |stage: Stage, detail: String| {
        let values = (plan.before.clone(), plan.after.clone());
        who.audit_line(&rb.name, format!("{} ({item})", plan.name), stage, values, detail)
    };
    // A weight change never goes under a running rollout's feet; nor does a
    // side taken out of service: held, no shift of cutover's can put traffic
    // back on it between the check below and the steps.
    let lock = match plan.steps.iter().any(|s| matches!(s, Step::Shift(_))) || plan.out_of_service.is_some() {
        true => Some(
            crate::store::lease::acquire(&rb.name, &plan.name, crate::store::lease::duration_for(rb), false, &mut |_| {})
                .map_err(|e| {
                    let refusal = format!(
                        "refused: a rollout of {} is running or holds the lease ({e}); use `cutover abort` or wait; nothing was changed",
                        rb.name
                    );
                    // The attempt is on the timeline too.
                    let _ = log.append(&line(Stage::Refused, refusal.clone()));
                    ExecuteError::Refused(refusal)
                })?,
        ),
        false => None,
    };
    // The item's own action waits for its time gate (its rollback never does).
    if let Some(it) = forward_item(rb, item, plan)
        && let Err(refusal) = super::not_before::check(rb, item, it, std::time::SystemTime::now(), who.account())
    {
        log.append(&line(Stage::Refused, refusal.clone()))?;
        return Err(ExecuteError::Refused(refusal));
    }
    // The traffic read again: the plan may have waited in a confirm popup
    // while someone shifted weight back onto this environment.
    if let Some((environment, what)) = &plan.out_of_service
        && !plan.steps.is_empty()
        && let Err(e) = carries_no_traffic(clients, rb, environment, what).await
    {
        let refusal = format!("{e}; nothing was changed");
        log.append(&line(Stage::Refused, refusal.clone()))?;
        return Err(ExecuteError::Refused(refusal));
    }
    // Likewise the side a shift raises: it may have been stopped meanwhile.
    let mut unchecked_now = Vec::new();
    if let Some(Step::Shift(sp)) = plan.steps.first() {
        match shift::raised_sides_serve(clients, rb, sp, true).await {
            Ok(lines) => unchecked_now = sp.unchecked_anew(lines),
            Err(e) => {
                let refusal = format!("{e}; nothing was changed");
                log.append(&line(Stage::Refused, refusal.clone()))?;
                return Err(ExecuteError::Refused(refusal));
            }
        }
    }
    // Terminating cannot be undone: what the plan found (every instance
    // stopped, none in an Auto Scaling group) is read again, as someone may
    // have started one (the rollback) while the popup waited.
    if let Some(Step::Terminate { instance_ids, .. }) = plan.steps.iter().find(|s| matches!(s, Step::Terminate { .. }))
        && let Err(e) = still_terminable(clients.side(&plan.side), instance_ids).await
    {
        let refusal = format!("{e}; nothing was changed");
        log.append(&line(Stage::Refused, refusal.clone()))?;
        return Err(ExecuteError::Refused(refusal));
    }
    // A stop or a reboot likewise: its instances may have been registered
    // again (the deregistration rolled back) while the popup waited.
    let taken_down = plan.steps.iter().find_map(|s| match s {
        Step::Stop { instance_ids } => Some((instance_ids, true)),
        Step::CreateImages { instance_ids, no_reboot: false } => Some((instance_ids, false)),
        _ => None,
    });
    if let Some((instance_ids, stop)) = taken_down
        && let Err(e) = still_out_of_service(clients.side(&plan.side), instance_ids, stop).await
    {
        let refusal = format!("{e}; nothing was changed");
        log.append(&line(Stage::Refused, refusal.clone()))?;
        return Err(ExecuteError::Refused(refusal));
    }
    // A revoke likewise: another environment's instance may have come to
    // reach its Redis through the rule (moved into the group, started).
    if let crate::runbook::Side::Environment(environment) = &plan.side
        && plan.steps.iter().any(|s| matches!(s, Step::RevokeIngress { .. }))
        && let Err(e) = cuts_no_other(clients, rb, environment, &plan.steps).await
    {
        let refusal = e.nothing_changed();
        log.append(&line(Stage::Refused, refusal.clone()))?;
        return Err(ExecuteError::Refused(refusal));
    }
    let steps = plan.steps.iter().map(Step::describe).collect::<Vec<_>>().join("; ");
    log.append(&line(Stage::Intent, shift::with_unchecked(steps, &unchecked_now)))
        .map_err(|e| format!("{e}; nothing was changed"))?;
    let clients = clients.side(&plan.side);
    for (i, s) in plan.steps.iter().enumerate() {
        // Fenced before each step, as a rollout's send is: a lease lost (an
        // image that took an hour while the holder stalled, then another took
        // it over to roll back) stops the steps that rest on it.
        // Step `i` stopped: `why` audited, then said with what was applied before it.
        let stopped = |why: String, said: &str| {
            let _ = log.append(&line(Stage::Failed, format!("{}: {why}", s.describe())));
            let applied = plan.steps[..i].iter().map(Step::describe).collect::<Vec<_>>();
            ExecuteError::Failed(format!(
                "step {} of {} {said}{why}; applied before it: {}; {}",
                i + 1,
                plan.steps.len(),
                if applied.is_empty() { "nothing".to_string() } else { applied.join("; ") },
                recovery(rb, item, plan)
            ))
        };
        if let Some(lease) = &lock
            && let Err(why) = crate::store::off_async(|| lease.fence())
        {
            return Err(stopped(format!("not started: the lease was lost ({why})"), ""));
        }
        match apply(clients, who, (rb, item), s, &mut *say).await {
            Ok((detail, change)) => {
                crate::crashpoint::here("action:after-apply");
                let applied = line(Stage::Applied, format!("{}: {detail}", s.describe()));
                let applied = match &change {
                    // A weight change's time is waited from (the TTL after it): by AWS's clock.
                    Some(c) => applied.with_change(c).with_aws_ahead_ms(clients.clock.latest().map(|r| r.ahead_ms)),
                    None => applied,
                };
                if let Err(e) = log.append(&applied.with_step(i + 1, plan.steps.len())) {
                    // Applied: said so, and nothing more is sent unrecorded.
                    let done = plan.steps[..=i].iter().map(Step::describe).collect::<Vec<_>>();
                    return Err(ExecuteError::Failed(format!(
                        "step {} of {} is applied, but the audit log could not record it ({e}); stopped before the \
                         rest; applied: {}; {}",
                        i + 1,
                        plan.steps.len(),
                        done.join("; "),
                        recovery(rb, item, plan)
                    )));
                }
                // A shift is on record as applied before its INSYNC wait: a
                // run stopped during the wait still leaves the share it took
                // (a stop of that side waits out the resolvers' TTL on it).
                // Accepted is applied: a slow INSYNC is said, not a failure.
                let mut done = s.describe();
                // What AWS did with a rule is said: a revoke may find none.
                if matches!(s, Step::AuthorizeIngress { .. } | Step::RevokeIngress { .. }) {
                    done = format!("{done}: {detail}");
                }
                if let Some(change) = change {
                    match shift::wait_insync(clients, &change, std::time::Duration::from_secs(300)).await {
                        Ok(_) => {
                            // No step: a shift is an action's only step, and an
                            // INSYNC with one is a rollout step's (it notifies).
                            let insync = line(Stage::InSync, format!("{}: change {change} INSYNC", s.describe()))
                                .with_aws_ahead_ms(clients.clock.latest().map(|r| r.ahead_ms));
                            if let Err(e) = log.append(&insync.with_change(&change)) {
                                tracing::warn!(error = %e, "the INSYNC of an applied shift could not be audited");
                            }
                        }
                        Err(e) => done = format!("{done} (change {change} accepted; {e})"),
                    }
                }
                say(Report::Done(&done));
            }
            Err(e) => return Err(stopped(e.to_string(), "failed: ")),
        }
    }
    Ok(shift::with_unchecked(format!("{} done", plan.name), &unchecked_now))
}

/// Copies with `--on-conflict fail` semantics: checks every key first and
/// writes nothing if the target has one. An interrupted copy of the same pair
/// (a checkpoint) is resumed instead.
async fn copy_redis(
    who: &crate::authority::Actor,
    c: &RedisCopy,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String, String> {
    use crate::redis::checkpoint;
    use crate::redis::copy::{self, CopyOptions};
    let place = checkpoint::place_for(&c.from.server_id(), &c.to.server_id(), c.pattern.as_deref());
    let what = format!("redis copy {} → {}", c.from, c.to);
    let lock =
        checkpoint::CopyLock::try_take(&place, &what, &mut |m| say(Report::Progress { done: 0, total: 0, line: m }))?;
    let lock = lock
        .map_err(|by| format!("a copy from {} to {} is already running ({by}); nothing was written", c.from, c.to))?;
    let resume = checkpoint::load(&place)?;
    // A resume keeps the policy its copy began with: only one begun with `fail` may be finished here.
    if let Some(cp) = resume.as_ref().filter(|cp| cp.on_conflict != crate::redis::OnConflict::Fail) {
        return Err(not_ours(cp));
    }
    // Only what was confirmed: a fresh copy that stops on a key the target
    // has, or the resume of the checkpoint it named.
    let found = resume.as_ref().map(|cp| (cp.updated.clone(), cp.counters.copied));
    if found.as_ref().map(|f| &f.0) != c.resume.as_ref().map(|r| &r.0) {
        let was = |r: Option<&(String, u64)>| match r {
            Some((updated, copied)) => format!("the resume of a checkpoint of {updated} ({copied} keys copied)"),
            None => "a fresh copy".to_string(),
        };
        return Err(format!(
            "the copy's checkpoint changed since the plan was confirmed ({} was confirmed, it would now be {}); \
             nothing was written: plan it again",
            was(c.resume.as_ref()),
            was(found.as_ref())
        ));
    }
    let opts = CopyOptions {
        from: c.from.clone(),
        to: c.to.clone(),
        pattern: c.pattern.clone(),
        on_conflict: crate::redis::OnConflict::Fail,
        mode: crate::redis::Mode::Auto,
        chunk_threshold: Some(32 << 20),
        scan_count: 1000,
        pipeline: 4,
        rate: None,
        checkpoint: Some(place),
        checkpoint_every: checkpoint::interval(),
        lease: lock.lease(),
        resume,
        stop: Default::default(),
        after_scan: None,
        run_by: copy::RunBy::ChecklistAction,
    };
    let (mut conns, pf) = copy::preflight(&opts).await.map_err(|e| e.message().to_string())?;
    // Nothing left to scan as found now (a source or target that changed
    // since starts a scan over).
    let resumed = opts.resume.as_ref().map(|cp| pf.resume_of(cp));
    let resumed_done = resumed.as_ref().is_some_and(|r| r.places.iter().all(|p| p.done));
    // Why a resume starts over, and the failovers followed: each rewrote keys.
    let mut notes: Vec<String> = pf.source_notes.clone();
    notes.extend(resumed.map(|r| r.why).unwrap_or_default());
    // An empty target has nothing to conflict with (as `cutover redis copy`):
    // a key that appears on it during the copy still stops the copy.
    if opts.resume.is_none() && !conns.target_empty(&opts.to).await? {
        let found = copy::find_conflicts(&opts, &mut conns).await?;
        if found.count > 0 {
            return Err(format!(
                "{} keys already exist on the target (first: {}); nothing was written. \
                 To overwrite or keep them use `cutover redis copy --on-conflict replace|skip`",
                found.count,
                found.first.join(", ")
            ));
        }
    }
    // At most one progress line a second.
    let mut last: Option<std::time::Instant> = None;
    let progress = |p: &crate::redis::progress::CopyProgress| {
        if p.finished || last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
            say(Report::Progress { done: p.total.done(), total: p.estimate.max(p.total.done()), line: &p.line() });
            last = Some(std::time::Instant::now());
        }
    };
    let r = copy::copy(who, &opts, conns, &pf, progress).await.map_err(|e| e.message().to_string())?;
    notes.extend(r.followed.iter().cloned());
    let twice = match r.total.seen_twice {
        0 => String::new(),
        n => format!(", {n} already on the target as on the source (SCAN returned them twice)"),
    };
    let temporary = match r.total.skipped_temporary {
        0 => String::new(),
        n => format!("; {}", copy::temporary_left(n)),
    };
    // A checkpoint left by a copy that had scanned everything: nothing was read now.
    let finished_before = if resumed_done {
        " (an earlier run had copied them all and stopped before removing its checkpoint)"
    } else {
        ""
    };
    let notes: String = notes.iter().map(|n| format!("; {n}")).collect();
    Ok(format!(
        "copied {} keys ({} skipped as expired{twice}){finished_before} in {:.1} s; {}{temporary}{notes}",
        r.total.copied, r.total.skipped_expired, r.seconds, pf.mode_reason
    ))
}

/// How long a new AMI or snapshot may be not found: EC2 and ElastiCache
/// reads are eventually consistent, and a describe right after a create can
/// answer NotFound (AWS: retry with backoff). Beyond it, not found is gone.
const BACKUP_UNSEEN: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits between polls of a backup: 1 s, doubling to 15 s; Err once
/// `BACKUP_LIMIT` has passed since `start`.
async fn backup_pause(what: &str, start: std::time::Instant, pause: &mut std::time::Duration) -> Result<(), String> {
    if start.elapsed() >= BACKUP_LIMIT {
        return Err(format!(
            "{what} not available after {}; it goes on in AWS: check it there",
            crate::runbook::duration::format_duration(BACKUP_LIMIT)
        ));
    }
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(std::time::Duration::from_secs(15));
    Ok(())
}

/// CreateImage of each instance, then DescribeImages until every image is
/// `available` (AWS: `pending` first, for minutes). A failed image, or one
/// that cannot be created, stops the step naming the images made so far.
async fn create_images(
    clients: &Clients,
    (runbook, item): (&str, &str),
    instance_ids: &[String],
    no_reboot: bool,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String, String> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut made: Vec<(String, String)> = Vec::new();
    let listed = |made: &[(String, String)]| {
        if made.is_empty() {
            "none".to_string()
        } else {
            made.iter().map(|(i, a)| format!("{a} of {i}")).collect::<Vec<_>>().join(", ")
        }
    };
    for id in instance_ids {
        // AMI names are unique per account and region: the instance and the time make it so.
        let name = format!("cutover {runbook} {item} {id} {stamp}");
        let mut tags = backup_tags(runbook, item);
        tags.push(("cutover:instance".into(), id.clone()));
        tags.push(("Name".into(), name.clone()));
        match ec2::create_image(&clients.ec2, id, &name, no_reboot, &tags).await {
            Ok(ami) => made.push((id.clone(), ami)),
            // A reply lost after AWS took the request (the SDK's retry then
            // finds the name taken): the AMI exists under its name, and a
            // run again would take another and reboot the instance again.
            Err(e) => match made_anyway(clients, &name, &e).await {
                Some(ami) => made.push((id.clone(), ami)),
                None => {
                    return Err(format!(
                        "{e}; no AMI named `{name}` found (if one appears, it was made all the same); AMIs \
                         created before it: {}",
                        listed(&made)
                    ));
                }
            },
        }
    }
    let ids: Vec<String> = made.iter().map(|(_, a)| a.clone()).collect();
    let total = ids.len() as u64;
    let (start, mut pause) = (std::time::Instant::now(), std::time::Duration::from_secs(1));
    loop {
        let images = match ec2::describe_images(&clients.ec2, &ids, &[]).await {
            Ok(images) => images,
            // Just created, not listed yet: as pending.
            Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound && start.elapsed() < BACKUP_UNSEEN => {
                say(Report::Progress {
                    done: 0,
                    total,
                    line: &format!("0 of {total} AMIs available (not listed yet)"),
                });
                backup_pause("the AMIs", start, &mut pause)
                    .await
                    .map_err(|e| format!("{e}; AMIs created: {}", listed(&made)))?;
                continue;
            }
            Err(e) => return Err(format!("{e}; AMIs created: {}", listed(&made))),
        };
        // pending → available; anything else (failed, error, invalid, deregistered) is the end of it.
        if let Some(bad) = images.iter().find(|i| !matches!(i.state.as_str(), "pending" | "available")) {
            let of = made.iter().find(|(_, a)| *a == bad.id).map_or("?", |(i, _)| i.as_str());
            return Err(format!(
                "AMI {} of {of} is {}{}; AMIs created: {}",
                bad.id,
                bad.state,
                bad.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
                listed(&made)
            ));
        }
        let available = images.iter().filter(|i| i.state == "available").count() as u64;
        let line = format!("{available} of {total} AMIs available");
        say(Report::Progress { done: available, total, line: &line });
        if available == total {
            return Ok(format!("AMIs available: {}", listed(&made)));
        }
        backup_pause("the AMIs", start, &mut pause)
            .await
            .map_err(|e| format!("{e}; AMIs created: {}", listed(&made)))?;
    }
}

/// The AMI a CreateImage that failed with `error` made all the same: the
/// one AWS names when it says the name is taken (a retry of a request it
/// had taken), else found by its name, asked at once and, when the request
/// may have landed (no answer, throttled), while AWS's reads may not list
/// it yet (`BACKUP_UNSEEN`).
async fn made_anyway(clients: &Clients, name: &str, error: &crate::aws::AwsError) -> Option<String> {
    use crate::aws::AwsErrorKind::{Throttled, Unreachable};
    let taken = error.message.contains("InvalidAMIName.Duplicate");
    // "AMI name … is already in use by AMI ami-…".
    if taken && let Some(ami) = error.message.split_whitespace().last().filter(|w| w.starts_with("ami-")) {
        return Some(ami.trim_end_matches('.').to_string());
    }
    let landed = taken || matches!(error.kind, Unreachable | Throttled);
    let (start, mut pause) = (std::time::Instant::now(), std::time::Duration::from_secs(1));
    loop {
        if let Ok(Some(ami)) = ec2::image_named(&clients.ec2, name).await {
            return Some(ami);
        }
        if !landed || start.elapsed() >= BACKUP_UNSEEN {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(15));
    }
}

/// CreateSnapshot of the replication group, then DescribeSnapshots until it
/// is `available` (AWS: `creating` first).
async fn snapshot_redis(
    clients: &Clients,
    (runbook, item): (&str, &str),
    endpoint: &str,
    replication_group: &str,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String, String> {
    use crate::aws::elasticache;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    // Snapshot names: letters, digits and hyphens, starting with a letter.
    let safe: String =
        runbook.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let name = format!("cutover-{safe}-{replication_group}-{stamp}");
    let created =
        elasticache::create_snapshot(&clients.elasticache, replication_group, &name, &backup_tags(runbook, item)).await;
    let mut status = match created {
        Ok(status) => Some(status),
        // A reply lost after AWS took it (the SDK's retry then finds the
        // name taken): the snapshot exists under its name, and is waited on.
        Err(e) if e.message.contains("SnapshotAlreadyExistsFault") => None,
        Err(e) => match elasticache::snapshot_status(&clients.elasticache, &name).await {
            Ok(Some(status)) if status != "failed" => Some(status),
            Ok(Some(status)) => return Err(format!("{e}; snapshot {name} was made all the same, and is {status}")),
            _ => return Err(format!("{e}; no snapshot named {name} found (if one appears, it was made all the same)")),
        },
    };
    let (start, mut pause) = (std::time::Instant::now(), std::time::Duration::from_secs(1));
    loop {
        match status.as_deref() {
            Some("available") => {
                say(Report::Progress { done: 1, total: 1, line: &format!("snapshot {name} available") });
                return Ok(format!("snapshot {name} of {endpoint} available"));
            }
            Some("creating") => {
                say(Report::Progress { done: 0, total: 1, line: &format!("snapshot {name} creating") });
            }
            Some(other) => return Err(format!("snapshot {name} of {endpoint} is {other}, not available")),
            // Just created, not listed yet: as creating.
            None if start.elapsed() < BACKUP_UNSEEN => {
                say(Report::Progress {
                    done: 0,
                    total: 1,
                    line: &format!("snapshot {name} creating (not listed yet)"),
                });
            }
            None => {
                return Err(format!("snapshot {name} of {endpoint} is gone (its creation failed, or it was deleted)"));
            }
        }
        backup_pause(&format!("snapshot {name}"), start, &mut pause).await?;
        status = elasticache::snapshot_status(&clients.elasticache, &name).await.map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{AuditLine, Stage};

    fn line(stage: Stage, time: &str, before: serde_json::Value, after: serde_json::Value) -> AuditLine {
        AuditLine {
            time: time.into(),
            operator: "ana".into(),
            account: None,
            region: "eu-west-1".into(),
            runbook: "demo".into(),
            action: "shift_weights to 100%".into(),
            stage,
            before,
            after,
            detail: String::new(),
            change: Some("C1".into()),
            step: None,
            aws_ahead_ms: None,
        }
    }

    /// Resolvers hold the answer from before a change for its TTL: the
    /// share of a side taken by the last weight change is gone TTL after its
    /// INSYNC (after its send plus a minute when INSYNC is not on record).
    /// Every weight at 0 shares alike, so 0/0 → 0/100 takes a share too.
    #[test]
    fn a_share_taken_lasts_a_ttl_past_its_insync() {
        use serde_json::json;
        let at = |t: &str| crate::time::parse_rfc3339(t).unwrap();
        let took = |lines: &[AuditLine]| share_taken_until(lines, "production", 10).map(|s| s.at);
        let sent = line(
            Stage::Applied,
            "2026-12-06T18:00:00Z",
            json!({"production": 100, "staging": 0}),
            json!({"production": 0, "staging": 100}),
        );
        let insync = AuditLine { stage: Stage::InSync, time: "2026-12-06T18:00:20Z".into(), ..sent.clone() };
        assert_eq!(took(&[sent.clone(), insync.clone()]), Some(at("2026-12-06T18:00:30Z")));
        // Written on a machine whose clock was a minute behind AWS's: its
        // INSYNC was a minute later by AWS's clock, which the wait keeps to.
        let behind = AuditLine { aws_ahead_ms: Some((60_000, 61_000)), ..insync.clone() };
        assert_eq!(took(&[sent.clone(), behind]), Some(at("2026-12-06T18:01:31Z")));
        let ahead = AuditLine { aws_ahead_ms: Some((-30_000, -29_000)), ..insync.clone() };
        assert_eq!(took(&[sent.clone(), ahead]), Some(at("2026-12-06T18:00:01Z")));
        // Its INSYNC not on record: its send, by AWS's clock, plus a minute.
        let sent_behind = AuditLine { aws_ahead_ms: Some((60_000, 61_000)), ..sent.clone() };
        assert_eq!(took(std::slice::from_ref(&sent_behind)), Some(at("2026-12-06T18:02:11Z")));
        assert_eq!(took(std::slice::from_ref(&sent)), Some(at("2026-12-06T18:01:10Z")), "no INSYNC: a minute more");
        let even = line(
            Stage::InSync,
            "2026-12-06T18:05:00Z",
            json!({"production": 0, "staging": 0}),
            json!({"production": 0, "staging": 100}),
        );
        assert_eq!(took(&[sent.clone(), insync.clone(), even]), Some(at("2026-12-06T18:05:10Z")));
        // Raising it, or a change leaving it at 0 beside another above 0, takes nothing.
        let raised = line(
            Stage::InSync,
            "2026-12-06T18:00:20Z",
            json!({"production": 0, "staging": 100}),
            json!({"production": 10, "staging": 90}),
        );
        assert_eq!(took(&[raised]), None);
        let kept = line(
            Stage::InSync,
            "2026-12-06T18:00:20Z",
            json!({"production": 0, "staging": 90}),
            json!({"production": 0, "staging": 100}),
        );
        assert_eq!(took(&[kept]), None);
        // A group whose types weighed the sides otherwise has each type's on
        // record: the AAAA share taken is a share taken, though A had none.
        let by_type = line(
            Stage::InSync,
            "2026-12-06T18:07:00Z",
            json!({"A": {"production": 0, "staging": 100}, "AAAA": {"production": 100, "staging": 0}}),
            json!({"production": 0, "staging": 100}),
        );
        let by_type = AuditLine { change: Some("C2".into()), ..by_type };
        assert_eq!(took(&[sent.clone(), insync.clone(), by_type]), Some(at("2026-12-06T18:07:10Z")));
        let neither = line(
            Stage::InSync,
            "2026-12-06T18:07:00Z",
            json!({"A": {"production": 0, "staging": 100}, "AAAA": {"production": 0, "staging": 90}}),
            json!({"production": 0, "staging": 100}),
        );
        assert_eq!(took(&[neither]), None);
        // Lines of other actions (no weights) are not weight changes.
        let other = line(Stage::Applied, "2026-12-06T18:09:00Z", json!({"instances": ["i-1"]}), json!(null));
        assert_eq!(took(&[sent, insync, other]), Some(at("2026-12-06T18:00:30Z")));
    }

    /// A stop vouches for what its lines say it stopped: an intent whose
    /// run failed stopped nothing (it vouched for what someone else stopped
    /// later); one left alone (the run died after its send) may have.
    #[test]
    fn a_stop_vouches_for_its_applied_lines_and_unfailed_intents() {
        use serde_json::json;
        let name = "stop_instances old (retire/stop)";
        let stop = |stage: Stage, time: &str, ids: &[&str]| AuditLine {
            action: name.into(),
            change: None,
            ..line(
                stage,
                time,
                json!(null),
                json!(ids.iter().map(|i| (i.to_string(), json!("stopped"))).collect::<serde_json::Map<_, _>>()),
            )
        };
        let ids = |lines: &[AuditLine]| stopped_in(lines, name).into_iter().collect::<Vec<_>>();
        let failed_run = [
            stop(Stage::Intent, "2026-12-06T18:00:00Z", &["i-a", "i-b"]),
            stop(Stage::Failed, "2026-12-06T18:00:01Z", &["i-a", "i-b"]),
            stop(Stage::Intent, "2026-12-06T19:00:00Z", &["i-a"]),
            stop(Stage::Applied, "2026-12-06T19:00:01Z", &["i-a"]),
        ];
        assert_eq!(ids(&failed_run), ["i-a"]);
        let died = [stop(Stage::Intent, "2026-12-06T18:00:00Z", &["i-a", "i-b"])];
        assert_eq!(ids(&died), ["i-a", "i-b"]);
        let other = AuditLine { action: "start_instances old (retire/start)".into(), ..died[0].clone() };
        assert!(ids(&[other]).is_empty());
    }

    /// A writer that died between its send and its `applied` line left its
    /// intent alone: the change may be live, so its share is taken as of
    /// the intent plus a minute, as an `applied` line's would be. An intent
    /// its writer concluded (applied, insync or failed before its next
    /// intent) is not counted again.
    #[test]
    fn an_intent_never_concluded_takes_the_share_as_of_its_time() {
        use serde_json::json;
        let at = |t: &str| crate::time::parse_rfc3339(t).unwrap();
        let took = |lines: &[AuditLine]| share_taken_until(lines, "production", 10).map(|s| s.at);
        let intent = line(
            Stage::Intent,
            "2026-12-06T18:00:00Z",
            json!({"production": 100, "staging": 0}),
            json!({"production": 0, "staging": 100}),
        );
        assert_eq!(took(std::slice::from_ref(&intent)), Some(at("2026-12-06T18:01:10Z")));
        let failed = AuditLine { stage: Stage::Failed, time: "2026-12-06T18:00:02Z".into(), ..intent.clone() };
        assert_eq!(took(&[intent.clone(), failed]), None, "a failed send took nothing");
        // Its run came back and confirmed it with a change whose weights
        // were already live (before = after): the first intent still counts.
        let confirming = |stage: Stage, time: &str| {
            let w = json!({"production": 0, "staging": 100});
            AuditLine { time: time.into(), ..line(stage, time, w.clone(), w) }
        };
        let again = [
            intent.clone(),
            confirming(Stage::Intent, "2026-12-06T18:03:00Z"),
            confirming(Stage::Applied, "2026-12-06T18:03:01Z"),
            confirming(Stage::InSync, "2026-12-06T18:03:20Z"),
        ];
        assert_eq!(took(&again), Some(at("2026-12-06T18:01:10Z")));
        // Another operator's (or another action's) lines conclude nothing of it.
        let theirs = AuditLine {
            operator: "bo".into(),
            stage: Stage::Failed,
            time: "2026-12-06T18:00:02Z".into(),
            ..intent.clone()
        };
        assert_eq!(took(&[intent.clone(), theirs]), Some(at("2026-12-06T18:01:10Z")));
        // A later INSYNC of its own, or an earlier one, is the later of the two.
        let applied = AuditLine { stage: Stage::Applied, time: "2026-12-06T18:00:01Z".into(), ..intent.clone() };
        let insync = AuditLine { stage: Stage::InSync, time: "2026-12-06T18:00:40Z".into(), ..intent.clone() };
        assert_eq!(took(&[intent.clone(), applied, insync.clone()]), Some(at("2026-12-06T18:00:50Z")));
        let older = AuditLine { time: "2026-12-06T17:00:00Z".into(), ..insync };
        let later_intent = AuditLine { time: "2026-12-06T18:10:00Z".into(), ..intent };
        assert_eq!(took(&[older, later_intent]), Some(at("2026-12-06T18:11:10Z")));
    }
}
