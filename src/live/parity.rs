//! Reads both sides of the rollout for parity: each side's load balancer,
//! target groups, instances, security groups, alarms and Redis, as
//! `analysis::parity` compares them.

use std::collections::BTreeMap;

use crate::analysis::parity::{RedisRead, SideShape, WatchingAlarm};
use crate::aws::elb::arn_suffix;
use crate::aws::{AwsError, SideClients};
use crate::runbook::{Environment, Runbook, Side};

/// Every environment's shape, by name.
pub type Shapes = BTreeMap<String, SideShape>;

/// Reads every environment of the runbook (the rollout's two sides, and any
/// other). `var` looks variables up (Redis URLs).
/// Each side read through its own account and region.
pub async fn shapes(
    clients: &SideClients,
    rb: &Runbook,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Shapes, AwsError> {
    let mut out = Shapes::new();
    for env in rb.environments.values() {
        out.insert(env.name.clone(), side(clients, rb, env, &var).await?);
    }
    Ok(out)
}

async fn side(
    sides: &SideClients,
    rb: &Runbook,
    env: &Environment,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<SideShape, AwsError> {
    let clients = sides.environment(&env.name);
    let mut load_balancer = match &env.load_balancer {
        Some(name) => Some(crate::aws::elb::load_balancer_shape(&clients.elb, name).await?),
        None => None,
    };
    // What each certificate covers and until when (ACM, in the side's account).
    for l in load_balancer.iter_mut().flat_map(|lb| lb.listeners.iter_mut()) {
        for c in l.certificates.iter_mut().filter(|c| c.error.is_none()) {
            *c = crate::aws::acm::certificate(&clients.acm, &c.arn).await;
        }
    }
    let target_groups = crate::aws::elb::target_group_shapes(&clients.elb, &env.target_groups).await?;
    let tg_arns: Vec<String> = target_groups.iter().map(|t| t.arn.clone()).collect();
    let autoscaling_groups = crate::aws::autoscaling::groups_behind(&clients.autoscaling, &tg_arns).await?;
    let instances = crate::aws::ec2::instance_shapes(&clients.ec2, &env.instances).await?;
    let endpoints: Vec<_> = env.uses_redis.iter().filter_map(|n| rb.redis_endpoint(n)).collect();
    // Another environment's endpoint (a shared Redis): its names in its VPC.
    let (own, shared): (Vec<_>, Vec<_>) = endpoints.iter().copied().partition(|r| r.environment == env.name);
    let mut redis_named: Vec<String> = own.iter().flat_map(|r| r.security_groups.clone()).collect();
    redis_named.sort();
    redis_named.dedup();
    // The runbook names Redis groups by id or name; names are looked up in
    // the side's VPC (its load balancer's, else its instances' one VPC), as
    // `status` does: looked up everywhere, a group of that name in the other
    // side's VPC alone would be read as this side's.
    let vpc = match load_balancer.as_ref().and_then(|l| l.vpc_id.clone()) {
        Some(id) => Some(crate::aws::ec2::Vpc { id, how: format!("the VPC of {}'s load balancer", env.name) }),
        None if redis_named.iter().any(|n| !n.starts_with("sg-")) => {
            let instances = crate::aws::ec2::describe_instances(&clients.ec2, &env.instances).await?;
            crate::live::fetch::environment_vpc(env, None, &instances)
        }
        None => None,
    };
    let mut redis_groups: Vec<String> =
        crate::aws::ec2::describe_security_groups(&clients.ec2, &redis_named, vpc.as_ref())
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect();
    let mut ids: Vec<String> = load_balancer.iter().flat_map(|l| l.security_groups.clone()).collect();
    ids.extend(instances.iter().flat_map(|i| i.security_groups.clone()));
    ids.extend(redis_groups.iter().cloned());
    ids.sort();
    ids.dedup();
    let mut groups = crate::aws::ec2::describe_security_groups(&clients.ec2, &ids, None).await?;
    // A shared Redis's groups, read through its owner's side (another
    // account's cannot be described through this one's), and the groups its
    // rules name as sources, described there too.
    let mut theirs: Vec<(&crate::aws::Clients, Vec<String>)> = Vec::new();
    for (owner_name, endpoints) in crate::live::fetch::by_owner(&shared) {
        let owner = sides.environment(owner_name);
        let elsewhere = !sides.same_reach(&Side::Environment(env.name.clone()), &Side::Environment(owner_name.into()));
        for g in crate::live::fetch::owner_groups(sides, rb, owner_name, &endpoints).await? {
            if !redis_groups.contains(&g.id) {
                redis_groups.push(g.id.clone());
            }
            if elsewhere {
                let named: Vec<String> = g.ingress.iter().flat_map(|r| r.groups.iter().cloned()).collect();
                theirs.push((owner, named));
            }
            if !groups.iter().any(|o| o.id == g.id) {
                groups.push(g);
            }
        }
    }
    ids.extend(redis_groups.iter().cloned());
    ids.sort();
    ids.dedup();
    // Groups the rules name as sources (a bastion's) compare by name, not by
    // an id that differs between the sides' VPCs. One that cannot be read (in
    // a peered account) keeps its id: a difference shown, never one hidden.
    let mut sources: Vec<String> = groups
        .iter()
        .flat_map(|g| g.ingress.iter().flat_map(|r| r.groups.iter().cloned()))
        .filter(|id| !ids.contains(id))
        .collect();
    sources.sort();
    sources.dedup();
    for (owner, named) in theirs {
        let named: Vec<String> = named.into_iter().filter(|id| sources.contains(id)).collect();
        if let Ok(found) = crate::aws::ec2::describe_security_groups(&owner.ec2, &named, None).await {
            sources.retain(|id| !found.iter().any(|g| &g.id == id));
            groups.extend(found);
        }
    }
    if !sources.is_empty() {
        groups
            .extend(crate::aws::ec2::describe_security_groups(&clients.ec2, &sources, None).await.unwrap_or_default());
    }
    let lbs: Vec<String> = load_balancer.iter().map(|l| arn_suffix(&l.arn)).collect();
    let tgs: Vec<String> = target_groups.iter().map(|t| arn_suffix(&t.arn)).collect();
    let mut alarms: Vec<WatchingAlarm> = if lbs.is_empty() && tgs.is_empty() {
        Vec::new()
    } else {
        crate::aws::cloudwatch::alarms_watching(&clients.cloudwatch, &lbs, &tgs).await?
    };
    alarms.sort_by(|a, b| a.name.cmp(&b.name));
    let mut redis = Vec::new();
    for ep in endpoints {
        let mut read = match crate::live::fetch::redis_endpoint(ep, "Redis", var) {
            Ok(e) => crate::live::fetch::redis_shape(&ep.name, &e).await,
            Err(e) => Err(e),
        };
        if let (Ok(shape), Some(group)) = (&mut read, &ep.elasticache) {
            // Read where it lives: a shared Redis's group is its owner's.
            let owner = sides.environment(&ep.environment);
            shape.elasticache = Some(crate::aws::elasticache::replication_group(&owner.elasticache, group).await?);
        }
        redis.push(match read {
            Ok(shape) => RedisRead::Ok(Box::new(shape)),
            Err(error) => RedisRead::Failed { name: ep.name.clone(), error },
        });
    }
    Ok(SideShape {
        environment: env.name.clone(),
        load_balancer,
        target_groups,
        autoscaling_groups,
        instances,
        groups,
        redis_groups,
        alarms,
        redis,
    })
}
