//! Checklist actions: each planned from live data into concrete steps, shown
//! as before → after, then applied. Planning reads; only `apply` writes.

use serde_json::json;

use super::{PlanError, shift};
use crate::analysis::reachability::{SgPath, Source, sg_path_named};
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
    Deregister {
        target_group_arn: String,
        instance_ids: Vec<String>,
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
}

/// `copy_redis`: the endpoints resolved from the runbook (URLs redacted in Debug).
#[derive(Debug, Clone)]
pub struct RedisCopy {
    pub from_name: String,
    pub to_name: String,
    pub from: crate::redis::url::Endpoint,
    pub to: crate::redis::url::Endpoint,
    pub pattern: Option<String>,
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
            Step::Deregister { target_group_arn, instance_ids } => {
                format!("deregister {} from {target_group_arn}", instance_ids.join(", "))
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
            Step::CopyRedis(c) => format!(
                "copy keys{} from {} ({}) to {} ({}) with their TTLs; stop if the target has one of them",
                c.pattern.as_deref().map(|p| format!(" matching {p}")).unwrap_or_default(),
                c.from_name,
                c.from,
                c.to_name,
                c.to
            ),
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
}

async fn env_data(clients: &Clients, rb: &Runbook, env: &str) -> Result<EnvironmentData, PlanError> {
    let e = rb.environment(env).ok_or_else(|| PlanError::Refused(format!("no environment {env}")))?;
    fetch::environment(clients, rb, e).await.map_err(|e| PlanError::Aws(e.to_string()))
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
    // Read and planned in the account and region of the side it changes.
    let clients = clients.side(&side);
    let mut p = ActionPlan { name, steps: Vec::new(), before: json!(null), after: json!(null), noop: None, side };
    match action {
        Action::AuthorizeRedisIngress { environment } => {
            plan_authorize_ingress(clients, rb, environment, &mut p).await?
        }
        Action::RevokeRedisIngress { environment } => plan_revoke_ingress(clients, rb, environment, &mut p).await?,
        Action::RegisterTargets { environment } => plan_targets(clients, rb, environment, true, &mut p).await?,
        Action::DeregisterTargets { environment } => plan_targets(clients, rb, environment, false, &mut p).await?,
        Action::SetStickiness { environment, duration } => {
            plan_stickiness(clients, rb, environment, Some(*duration), &mut p).await?
        }
        Action::DisableStickiness { environment } => plan_stickiness(clients, rb, environment, None, &mut p).await?,
        Action::StopInstances { environment } => plan_instances(clients, rb, environment, true, &mut p).await?,
        Action::StartInstances { environment } => plan_instances(clients, rb, environment, false, &mut p).await?,
        Action::ShiftWeights { to } => plan_shift(clients, rb, *to, &mut p).await?,
        Action::Rollout => return Err(PlanError::Refused("run the gated rollout with `cutover rollout`".into())),
        Action::CopyRedis { from_redis, to_redis, pattern } => {
            plan_copy(rb, vars, from_redis, to_redis, pattern.as_deref(), &mut p).await?
        }
    }
    Ok(p)
}

/// The ingress rules that open every instance's path to its Redis.
async fn plan_authorize_ingress(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(clients, rb, environment).await?;
    let env = rb.environment(environment).ok_or_else(|| PlanError::Refused("no environment".into()))?;
    let mut before = Vec::new();
    for i in &d.instances {
        let src = Source {
            instance_id: &i.id,
            private_ip: i.private_ip.as_deref(),
            ipv6_addresses: &i.ipv6_addresses,
            security_groups: &i.security_groups,
        };
        for name in &env.uses_redis {
            let Some(ep) = rb.redis_endpoint(name) else { continue };
            let groups = d.redis_groups.get(name).cloned().unwrap_or_default();
            let path = sg_path_named(&src, &groups, ep.port, &d.group_names);
            before.push(json!({"instance": i.id, "endpoint": name, "path": path.describe()}));
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
    p.before = json!(before);
    p.after = json!(p.steps.iter().map(Step::describe).collect::<Vec<_>>());
    if p.steps.is_empty() {
        p.noop = Some(format!("every instance of {environment} already reaches its Redis through the security groups"));
    }
    Ok(())
}

/// Only what cutover itself added for this runbook and environment.
async fn plan_revoke_ingress(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(clients, rb, environment).await?;
    let want = tag(rb, environment);
    let ids: Vec<String> = d.redis_groups.values().flatten().map(|g| g.id.clone()).collect();
    let rules = ec2::ingress_described(&clients.ec2, ids, &want).await.map_err(|e| PlanError::Aws(e.to_string()))?;
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
    }
    Ok(())
}

/// The environment's instances registered in (or deregistered from) its target groups.
async fn plan_targets(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    register: bool,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(clients, rb, environment).await?;
    let mut before = serde_json::Map::new();
    for tg in &d.target_groups {
        let registered: Vec<String> = tg.targets.iter().map(|t| t.id.clone()).collect();
        before.insert(tg.name.clone(), json!(registered));
        let mine: Vec<String> = d.instances.iter().filter(|i| i.state != "terminated").map(|i| i.id.clone()).collect();
        let ids: Vec<String> = if register {
            mine.into_iter().filter(|id| !registered.contains(id)).collect()
        } else {
            mine.into_iter().filter(|id| registered.contains(id)).collect()
        };
        if ids.is_empty() {
            continue;
        }
        // Like the targets already there, or the group's own port.
        let port = tg.targets.first().and_then(|t| t.port).map(i32::from);
        p.steps.push(if register {
            Step::Register { target_group_arn: tg.arn.clone(), instance_ids: ids, port }
        } else {
            Step::Deregister { target_group_arn: tg.arn.clone(), instance_ids: ids }
        });
    }
    p.before = json!(before);
    p.after = json!(p.steps.iter().map(Step::describe).collect::<Vec<_>>());
    if p.steps.is_empty() {
        p.noop = Some(format!(
            "every instance of {environment} is already {}",
            if register { "registered" } else { "deregistered" }
        ));
    }
    Ok(())
}

/// lb_cookie stickiness of `duration` on the environment's target groups, or none.
async fn plan_stickiness(
    clients: &Clients,
    rb: &Runbook,
    environment: &str,
    duration: Option<std::time::Duration>,
    p: &mut ActionPlan,
) -> Result<(), PlanError> {
    let d = env_data(clients, rb, environment).await?;
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
    let list = crate::aws::ec2::describe_instances(&clients.ec2, &e.instances)
        .await
        .map_err(|e| PlanError::Aws(e.to_string()))?;
    p.before =
        json!(list.iter().map(|i| (i.id.clone(), i.state.clone())).collect::<std::collections::BTreeMap<_, _>>());
    let ids: Vec<String> = list
        .iter()
        .filter(|i| if stop { i.state == "running" || i.state == "pending" } else { i.state == "stopped" })
        .map(|i| i.id.clone())
        .collect();
    p.after = json!(
        ids.iter()
            .map(|id| (id.clone(), if stop { "stopped" } else { "running" }))
            .collect::<std::collections::BTreeMap<_, _>>()
    );
    if ids.is_empty() {
        p.noop = Some(format!("no instance of {environment} to {}", if stop { "stop" } else { "start" }));
    } else {
        p.steps.push(if stop { Step::Stop { instance_ids: ids } } else { Step::Start { instance_ids: ids } });
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
        let url = fetch::redis_url(ep, |v| vars.get(v).cloned().or_else(|| std::env::var(v).ok()))?;
        crate::redis::url::Endpoint::parse(role, &url, None, None)
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
    p.steps.push(Step::CopyRedis(Box::new(RedisCopy {
        from_name: from_redis.to_string(),
        to_name: to_redis.to_string(),
        from,
        to,
        pattern: pattern.map(str::to_string),
    })));
    Ok(())
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

/// Applies one step; a long one (a Redis copy) reports progress to `say`.
pub async fn apply(
    clients: &Clients,
    who: &crate::authority::Actor,
    step: &Step,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String, String> {
    match step {
        Step::AuthorizeIngress { group_id, port, from_group_id, description }
        | Step::RevokeIngress { group_id, port, from_group_id, description } => {
            let rule = GroupIngress {
                group_id: group_id.clone(),
                port: *port,
                from_group_id: from_group_id.clone(),
                description: description.clone(),
            };
            if matches!(step, Step::AuthorizeIngress { .. }) {
                ec2::authorize_ingress(&clients.ec2, &rule).await
            } else {
                ec2::revoke_ingress(&clients.ec2, &rule).await
            }
            .map_err(|e| e.to_string())?;
        }
        Step::Register { target_group_arn, instance_ids, port } => {
            elb::register_targets(&clients.elb, target_group_arn, instance_ids, *port)
                .await
                .map_err(|e| e.to_string())?;
        }
        Step::Deregister { target_group_arn, instance_ids } => {
            elb::deregister_targets(&clients.elb, target_group_arn, instance_ids).await.map_err(|e| e.to_string())?;
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
        Step::CopyRedis(c) => return copy_redis(who, c, say).await,
        Step::Shift(p) => {
            let change = shift::apply(clients, who, p).await.map_err(|e| e.to_string())?;
            // Accepted is applied: a slow INSYNC is reported, not called a failure.
            return Ok(match shift::wait_insync(clients, &change, std::time::Duration::from_secs(300)).await {
                Ok(_) => format!("change {change} INSYNC"),
                Err(e) => format!("change {change} accepted; {e}"),
            });
        }
    }
    Ok("done".into())
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
) -> Result<String, String> {
    let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
    let line = |stage: Stage, detail: String| {
        let values = (plan.before.clone(), plan.after.clone());
        who.audit_line(&rb.name, format!("{} ({item})", plan.name), stage, values, detail)
    };
    // A weight change never goes under a running rollout's feet.
    let _lock = match plan.steps.iter().any(|s| matches!(s, Step::Shift(_))) {
        true => Some(crate::store::rollout::RolloutLock::try_take(&rb.name)?.ok_or_else(|| {
            format!("refused: a rollout of {} is running; use `cutover abort` or wait; nothing was changed", rb.name)
        })?),
        false => None,
    };
    log.append(&line(Stage::Intent, plan.steps.iter().map(Step::describe).collect::<Vec<_>>().join("; ")))
        .map_err(|e| format!("{e}; nothing was changed"))?;
    let clients = clients.side(&plan.side);
    for (i, s) in plan.steps.iter().enumerate() {
        match apply(clients, who, s, &mut *say).await {
            Ok(detail) => {
                log.append(&line(Stage::Applied, format!("{}: {detail}", s.describe())))?;
                say(Report::Done(&s.describe()));
            }
            Err(e) => {
                let _ = log.append(&line(Stage::Failed, format!("{}: {e}", s.describe())));
                let applied = plan.steps[..i].iter().map(Step::describe).collect::<Vec<_>>();
                return Err(format!(
                    "step {} of {} failed: {e}; applied before it: {}; run the item's rollback to undo",
                    i + 1,
                    plan.steps.len(),
                    if applied.is_empty() { "nothing".to_string() } else { applied.join("; ") }
                ));
            }
        }
    }
    Ok(format!("{} done", plan.name))
}

/// Copies with `--on-conflict fail` semantics: checks every key first and
/// writes nothing if the target has one. An interrupted copy of the same pair
/// (a checkpoint) is resumed instead.
async fn copy_redis(
    who: &crate::authority::Actor,
    c: &RedisCopy,
    say: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String, String> {
    use crate::redis::copy::{self, CopyOptions};
    let path = crate::redis::checkpoint::path_for(&c.from.server_id(), &c.to.server_id(), c.pattern.as_deref());
    let _lock = crate::redis::checkpoint::CopyLock::try_take(&path)?
        .ok_or_else(|| format!("a copy from {} to {} is already running; nothing was written", c.from, c.to))?;
    let resume = crate::redis::checkpoint::load(&path)?;
    // A resume overwrites from its cursor on: only a copy begun with `fail` may be finished here.
    if let Some(cp) = resume.as_ref().filter(|cp| cp.on_conflict != crate::redis::OnConflict::Fail) {
        return Err(format!(
            "an interrupted `cutover redis copy --on-conflict {}` of this pair is waiting to be resumed; finish it with that command and --resume (this action copies only with `fail`); nothing was written",
            cp.on_conflict.name()
        ));
    }
    let opts = CopyOptions {
        from: c.from.clone(),
        to: c.to.clone(),
        pattern: c.pattern.clone(),
        on_conflict: crate::redis::OnConflict::Fail,
        mode: crate::redis::Mode::Auto,
        chunk_threshold: 32 << 20,
        scan_count: 1000,
        pipeline: 4,
        rate: None,
        checkpoint: Some(path),
        checkpoint_every: std::time::Duration::from_millis(500),
        resume,
        stop: Default::default(),
        after_scan: None,
    };
    let (mut conns, pf) = copy::preflight(&opts).await.map_err(|e| e.message().to_string())?;
    if opts.resume.is_none() {
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
    Ok(format!(
        "copied {} keys ({} skipped as expired) in {:.1} s; {}",
        r.total.copied, r.total.skipped_expired, r.seconds, pf.mode_reason
    ))
}
