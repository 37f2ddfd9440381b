//! Creates in moto what a runbook names: network, security groups, instances,
//! load balancers, target groups, the weighted records and the alarms.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk::cloudwatch::types::{ComparisonOperator, Dimension, StateValue, Statistic};
use aws_sdk::ec2::types::{IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair};
use aws_sdk::elasticloadbalancingv2::types::{Action as ElbAction, ActionTypeEnum, ProtocolEnum, TargetDescription};
use aws_sdk::route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};

use crate::aws::{Clients, Reach, SideClients};
use crate::runbook::{InstanceSelector, Metric, Runbook, SandboxSpec, Side, Stat};

/// Port the target groups send traffic to (what AWS sees; not a loopback port).
pub const TARGET_PORT: i32 = 8080;

#[derive(Debug, Clone)]
pub struct ProvisionedInstance {
    pub name: String,
    pub environment: String,
    pub id: String,
    /// The full availability-zone name (`eu-west-1a`).
    pub zone: String,
    pub private_ip: Option<String>,
    pub health_url: String,
    pub app_port: u16,
    pub redis: String,
}

#[derive(Debug, Clone)]
pub struct ProvisionedTargetGroup {
    pub name: String,
    pub arn: String,
    pub load_balancer_arn: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct World {
    /// The VPC of the first environment's side (the only one when every
    /// environment is in one account and region).
    pub vpc_id: String,
    /// Security-group name → the environment whose side (account and
    /// region) holds it.
    pub group_environment: BTreeMap<String, String>,
    pub groups: BTreeMap<String, String>,
    pub instances: Vec<ProvisionedInstance>,
    /// Environment → its load balancer's ARN.
    pub load_balancers: BTreeMap<String, String>,
    /// Environment → its target groups (the first carries its metrics).
    pub target_groups: BTreeMap<String, Vec<ProvisionedTargetGroup>>,
    pub zone_id: String,
    /// Redis endpoint → the network interface standing for its node (an
    /// ElastiCache node has one in the endpoint's groups), for an endpoint
    /// whose groups hold no sandbox instance.
    pub redis_interfaces: BTreeMap<String, String>,
}

// The dimension sets below are the sandbox's own copy of what AWS publishes
// (written apart from cutover's table in `aws::cloudwatch`, which they check):
// the load balancer's own codes per `LoadBalancer` and per `AvailabilityZone,
// LoadBalancer`; target metrics per `TargetGroup, LoadBalancer` and per
// `LoadBalancer`; host counts per `TargetGroup, LoadBalancer`. A target group
// behind no load balancer serves no traffic and has no metrics.
/// The dimension value AWS gives a load balancer or target group ARN: what
/// follows `loadbalancer/` (`app/name/id`), or `targetgroup/name/id`.
/// The sandbox's own, so a mistake in cutover's shows as missing metrics.
fn arn_suffix(arn: &str) -> String {
    match arn.find(":loadbalancer/") {
        Some(i) => arn[i + ":loadbalancer/".len()..].to_string(),
        None => arn.rsplit(':').next().unwrap_or(arn).to_string(),
    }
}

impl World {
    fn dimension(name: &str, value: impl Into<String>) -> Dimension {
        Dimension::builder().name(name).value(value).build()
    }

    /// `LoadBalancer` of an environment.
    pub fn load_balancer_dimensions(&self, env: &str) -> Option<Vec<Dimension>> {
        let lb = self.load_balancers.get(env)?;
        Some(vec![Self::dimension("LoadBalancer", arn_suffix(lb))])
    }

    /// `AvailabilityZone, LoadBalancer` of an environment, for one zone.
    pub fn zone_dimensions(&self, env: &str, zone: &str) -> Option<Vec<Dimension>> {
        let lb = self.load_balancers.get(env)?;
        Some(vec![Self::dimension("AvailabilityZone", zone), Self::dimension("LoadBalancer", arn_suffix(lb))])
    }

    /// `TargetGroup, LoadBalancer` of an environment's first target group.
    pub fn target_group_dimensions(&self, env: &str) -> Option<Vec<Dimension>> {
        let tg = self.target_groups.get(env)?.first()?;
        let lb = tg.load_balancer_arn.as_ref()?;
        Some(vec![Self::dimension("TargetGroup", arn_suffix(&tg.arn)), Self::dimension("LoadBalancer", arn_suffix(lb))])
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn is_arn(s: &str) -> bool {
    s.starts_with("arn:")
}

/// One side's network: its clients (account and region), VPC and subnets.
struct SideNet {
    clients: Clients,
    vpc_id: String,
    /// Zone suffix (`a`) → subnet id.
    subnets: BTreeMap<String, String>,
}

/// The side (account and region) holding a sandbox security group: that of
/// the environments whose instances or Redis use it, which must be one; a
/// group nothing uses goes with the first environment.
fn group_sides(rb: &Runbook, sb: &SandboxSpec, aws: &SideClients) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let first = rb.environments.keys().next().cloned().unwrap_or_default();
    for g in &sb.security_groups {
        let mut users: Vec<String> = sb
            .instances
            .iter()
            .filter(|i| i.security_groups.contains(&g.name))
            .map(|i| i.environment.clone())
            .chain(
                rb.redis_endpoints().filter(|(_, r)| r.security_groups.contains(&g.name)).map(|(e, _)| e.name.clone()),
            )
            .collect();
        users.dedup();
        let reach = |e: &String| aws.reach(&Side::Environment(e.clone()));
        if let Some(other) = users.iter().find(|e| reach(e) != reach(&users[0])) {
            bail!(
                "security group `{}` is used by environments `{}` and `{other}`, which are in different accounts or regions; declare one group per side",
                g.name,
                users[0]
            );
        }
        out.insert(g.name.clone(), users.first().cloned().unwrap_or_else(|| first.clone()));
    }
    Ok(out)
}

/// `app_ports` maps instance name to the loopback port its app listens on.
/// Each environment's resources are created through its side's clients (its
/// account and region), the hosted zone and records through `[dns]`'s.
pub async fn provision(
    rb: &Runbook,
    sb: &SandboxSpec,
    aws: &SideClients,
    app_ports: &BTreeMap<String, u16>,
) -> Result<World> {
    let mut world = World::default();
    let env_side = |env: &str| aws.reach(&Side::Environment(env.to_string()));

    // One VPC per side, with a subnet per zone its instances and load balancers use.
    let mut nets: BTreeMap<Reach, SideNet> = BTreeMap::new();
    let mut zones: BTreeMap<Reach, BTreeSet<String>> = BTreeMap::new();
    for env in rb.environments.values() {
        let z = zones.entry(env_side(&env.name)).or_default();
        z.extend(sb.instances.iter().filter(|i| i.environment == env.name).map(|i| i.zone.clone()));
        if env.load_balancer.is_some() {
            z.extend(sb.load_balancer_zones.get(&env.name).cloned().unwrap_or_else(|| vec!["a".into(), "b".into()]));
        }
    }
    for env in rb.environments.keys() {
        let key = env_side(env);
        if nets.contains_key(&key) {
            continue;
        }
        let clients = aws.environment(env).clone();
        let vpc = clients.ec2.create_vpc().cidr_block("10.42.0.0/16").send().await.wrap_err("CreateVpc")?;
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).ok_or_else(|| eyre!("CreateVpc returned no id"))?.to_string();
        if world.vpc_id.is_empty() {
            world.vpc_id = vpc_id.clone();
        }
        let mut subnets = BTreeMap::new();
        for (i, z) in zones.get(&key).into_iter().flatten().enumerate() {
            let s = clients
                .ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(format!("10.42.{}.0/24", i + 1))
                .availability_zone(format!("{}{z}", clients.region))
                .send()
                .await
                .wrap_err("CreateSubnet")?;
            subnets.insert(z.clone(), s.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string());
        }
        nets.insert(key, SideNet { clients, vpc_id, subnets });
    }
    let net = |env: &str| -> Result<&SideNet> { nets.get(&env_side(env)).ok_or_else(|| eyre!("no side for {env}")) };

    world.group_environment = group_sides(rb, sb, aws)?;
    for g in &sb.security_groups {
        let n = net(&world.group_environment[&g.name])?;
        let r = n
            .clients
            .ec2
            .create_security_group()
            .group_name(&g.name)
            .description(format!("cutover sandbox: {}", g.name))
            .vpc_id(&n.vpc_id)
            .send()
            .await
            .wrap_err_with(|| format!("CreateSecurityGroup {}", g.name))?;
        world.groups.insert(g.name.clone(), r.group_id().unwrap_or_default().to_string());
    }
    for g in &sb.security_groups {
        let n = net(&world.group_environment[&g.name])?;
        for rule in &g.ingress {
            let mut perm = IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(rule.port))
                .to_port(i32::from(rule.port));
            perm = match world.groups.get(&rule.from) {
                Some(src) => perm.user_id_group_pairs(UserIdGroupPair::builder().group_id(src).build()),
                None => perm.ip_ranges(IpRange::builder().cidr_ip(&rule.from).build()),
            };
            n.clients
                .ec2
                .authorize_security_group_ingress()
                .group_id(&world.groups[&g.name])
                .ip_permissions(perm.build())
                .send()
                .await
                .wrap_err_with(|| format!("AuthorizeSecurityGroupIngress on {}", g.name))?;
        }
    }

    for inst in &sb.instances {
        let env = rb.environment(&inst.environment).ok_or_else(|| eyre!("unknown environment {}", inst.environment))?;
        let port = *app_ports.get(&inst.name).ok_or_else(|| eyre!("no port for {}", inst.name))?;
        let health_url = format!("http://127.0.0.1:{port}/health");
        let mut tags =
            vec![tag("Name", &inst.name), tag(&env.health_url_tag, &health_url), tag("cutover:sandbox", "true")];
        if let InstanceSelector::Tags(sel) = &env.instances {
            tags.extend(sel.iter().map(|(k, v)| tag(k, v)));
        }
        let sg_ids: Vec<String> = inst.security_groups.iter().map(|g| world.groups[g].clone()).collect();
        let n = net(&inst.environment)?;
        let r = n
            .clients
            .ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk::ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&n.subnets[&inst.zone])
            .set_security_group_ids(Some(sg_ids))
            .tag_specifications(
                TagSpecification::builder().resource_type(ResourceType::Instance).set_tags(Some(tags)).build(),
            )
            .send()
            .await
            .wrap_err_with(|| format!("RunInstances {}", inst.name))?;
        let i = r.instances().first().ok_or_else(|| eyre!("RunInstances returned no instance"))?;
        world.instances.push(ProvisionedInstance {
            name: inst.name.clone(),
            environment: inst.environment.clone(),
            id: i.instance_id().unwrap_or_default().to_string(),
            zone: format!("{}{}", n.clients.region, inst.zone),
            private_ip: i.private_ip_address().map(str::to_string),
            health_url,
            app_port: port,
            redis: inst.redis.clone(),
        });
    }

    // Each managed Redis's node has a network interface in its groups, as
    // on AWS; a Redis whose groups hold an instance runs on it (its own
    // interface is there).
    let mut node_subnets: BTreeMap<Reach, String> = BTreeMap::new();
    for (env, r) in rb.redis_endpoints() {
        let ids: Vec<String> = r.security_groups.iter().filter_map(|g| world.groups.get(g).cloned()).collect();
        let on_instance = sb.instances.iter().any(|i| i.security_groups.iter().any(|g| r.security_groups.contains(g)));
        if ids.is_empty() || on_instance || world.redis_interfaces.contains_key(&r.name) {
            continue;
        }
        let n = net(&env.name)?;
        // A side with no instance or load balancer has no subnet yet: one
        // for its caches, made once.
        let subnet = match n.subnets.values().next().or(node_subnets.get(&env_side(&env.name))) {
            Some(s) => s.clone(),
            None => n
                .clients
                .ec2
                .create_subnet()
                .vpc_id(&n.vpc_id)
                .cidr_block("10.42.250.0/24")
                .availability_zone(format!("{}a", n.clients.region))
                .send()
                .await
                .wrap_err("CreateSubnet for the Redis nodes")?
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_string(),
        };
        node_subnets.entry(env_side(&env.name)).or_insert_with(|| subnet.clone());
        let eni = n
            .clients
            .ec2
            .create_network_interface()
            .subnet_id(&subnet)
            .set_groups(Some(ids))
            .description(format!("ElastiCache {} (cutover sandbox)", r.name))
            .send()
            .await
            .wrap_err_with(|| format!("CreateNetworkInterface for Redis {}", r.name))?;
        let id = eni.network_interface().and_then(|e| e.network_interface_id()).unwrap_or_default();
        world.redis_interfaces.insert(r.name.clone(), id.to_string());
    }

    let mut lb_dns: BTreeMap<String, String> = BTreeMap::new();
    for env in rb.environments.values() {
        let n = net(&env.name)?;
        let aws = &n.clients;
        let mut lb_arn = None;
        if let Some(lb) = &env.load_balancer {
            if is_arn(lb) {
                bail!("the sandbox creates load balancers by name; `{lb}` in environment `{}` is an ARN", env.name);
            }
            let zs = sb.load_balancer_zones.get(&env.name).cloned().unwrap_or_else(|| vec!["a".into(), "b".into()]);
            let r = aws
                .elb
                .create_load_balancer()
                .name(lb)
                .set_subnets(Some(zs.iter().map(|z| n.subnets[z].clone()).collect()))
                .send()
                .await
                .wrap_err_with(|| format!("CreateLoadBalancer {lb}"))?;
            let l = r.load_balancers().first().ok_or_else(|| eyre!("CreateLoadBalancer returned nothing"))?;
            lb_arn = l.load_balancer_arn().map(str::to_string);
            if let Some(arn) = &lb_arn {
                world.load_balancers.insert(env.name.clone(), arn.clone());
            }
            lb_dns.insert(env.name.clone(), l.dns_name().unwrap_or_default().to_string());
        }
        let members: Vec<&ProvisionedInstance> = world.instances.iter().filter(|i| i.environment == env.name).collect();
        let mut tgs = Vec::new();
        for (index, tg) in env.target_groups.iter().enumerate() {
            if is_arn(tg) {
                bail!("the sandbox creates target groups by name; `{tg}` in environment `{}` is an ARN", env.name);
            }
            let r = aws
                .elb
                .create_target_group()
                .name(tg)
                .protocol(ProtocolEnum::Http)
                .port(TARGET_PORT)
                .vpc_id(&n.vpc_id)
                .health_check_path("/health")
                .health_check_interval_seconds(30)
                .send()
                .await
                .wrap_err_with(|| format!("CreateTargetGroup {tg}"))?;
            let arn = r
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn())
                .ok_or_else(|| eyre!("CreateTargetGroup returned nothing"))?
                .to_string();
            if !members.is_empty() {
                let targets = members
                    .iter()
                    .map(|i| TargetDescription::builder().id(&i.id).port(TARGET_PORT).build())
                    .collect::<Vec<_>>();
                aws.elb
                    .register_targets()
                    .target_group_arn(&arn)
                    .set_targets(Some(targets))
                    .send()
                    .await
                    .wrap_err("RegisterTargets")?;
            }
            if index == 0
                && let Some(lb) = &lb_arn
            {
                aws.elb
                    .create_listener()
                    .load_balancer_arn(lb)
                    .protocol(ProtocolEnum::Http)
                    .port(80)
                    .default_actions(
                        ElbAction::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&arn).build(),
                    )
                    .send()
                    .await
                    .wrap_err("CreateListener")?;
            }
            tgs.push(ProvisionedTargetGroup { name: tg.clone(), arn, load_balancer_arn: lb_arn.clone() });
        }
        world.target_groups.insert(env.name.clone(), tgs);
    }

    let dns = &rb.dns;
    let zone = aws
        .dns()
        .route53
        .create_hosted_zone()
        .name(&dns.zone)
        .caller_reference(format!("cutover-sandbox-{}-{}", std::process::id(), rand_suffix()))
        .send()
        .await
        .wrap_err("CreateHostedZone")?;
    world.zone_id =
        zone.hosted_zone().map(|z| z.id().trim_start_matches("/hostedzone/").to_string()).unwrap_or_default();
    // An alias points at the load balancer's DNS name and canonical zone as
    // DescribeLoadBalancers gives them, as an operator would copy them.
    let mut aliases: BTreeMap<String, (String, String)> = BTreeMap::new();
    for env in &sb.alias_records {
        let arn = world.load_balancers.get(env).ok_or_else(|| eyre!("environment {env} has no load balancer"))?;
        let elb = &aws.environment(env).elb;
        let r = elb.describe_load_balancers().load_balancer_arns(arn).send().await.wrap_err("DescribeLoadBalancers")?;
        let lb = r.load_balancers().first().ok_or_else(|| eyre!("DescribeLoadBalancers: no {arn}"))?;
        let zone = lb.canonical_hosted_zone_id().ok_or_else(|| eyre!("{arn} has no CanonicalHostedZoneId"))?;
        aliases.insert(env.clone(), (zone.to_string(), lb.dns_name().unwrap_or_default().to_string()));
    }
    let mut changes = Vec::new();
    for (i, (env, set_id)) in dns.set_identifiers.iter().enumerate() {
        for rtype in &dns.record_types {
            let weight = i64::from(dns.initial_weights.get(env).copied().unwrap_or(0));
            let set = ResourceRecordSet::builder()
                .name(&dns.record)
                .r#type(RrType::from(rtype.as_str()))
                .set_identifier(set_id)
                .weight(weight);
            let set = match aliases.get(env) {
                Some((zone, dns_name)) => set.alias_target(
                    AliasTarget::builder()
                        .hosted_zone_id(zone)
                        .dns_name(dns_name)
                        .evaluate_target_health(true)
                        .build()?,
                ),
                None => {
                    let value = match rtype.as_str() {
                        "CNAME" => lb_dns
                            .get(env)
                            .cloned()
                            .unwrap_or_else(|| format!("{env}.{}", dns.zone.trim_end_matches('.'))),
                        "AAAA" => format!("2001:db8::{}", i + 1),
                        _ => format!("192.0.2.{}", i + 1),
                    };
                    set.ttl(i64::from(dns.ttl)).resource_records(ResourceRecord::builder().value(value).build()?)
                }
            };
            changes.push(Change::builder().action(ChangeAction::Upsert).resource_record_set(set.build()?).build()?);
        }
    }
    aws.dns()
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(&world.zone_id)
        .change_batch(
            ChangeBatch::builder().set_changes(Some(changes)).comment("cutover sandbox: initial weights").build()?,
        )
        .send()
        .await
        .wrap_err("ChangeResourceRecordSets")?;

    for a in rb.alarms.iter().filter(|a| a.rule.is_none()) {
        // An environment's alarm lives in its account and region.
        let side = a.environment.as_deref().map_or(aws.runbook(), |e| aws.environment(e));
        let cw = &side.cloudwatch;
        let mut req = cw
            .put_metric_alarm()
            .alarm_name(&a.name)
            .alarm_description(&a.description)
            .namespace("AWS/ApplicationELB")
            .metric_name(a.metric.cloudwatch_name())
            .period(a.period.as_secs() as i32)
            .evaluation_periods(a.evaluation_periods as i32)
            .treat_missing_data(&a.treat_missing_data)
            .threshold(a.threshold)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            // As a real alarm does: it tells someone (a topic nothing reads here).
            .alarm_actions(format!("arn:aws:sns:{}:123456789012:cutover-sandbox-pager", side.region));
        req = match a.stat {
            Stat::Percentile(_) => req.extended_statistic(a.stat.cloudwatch_name()),
            s => req.statistic(Statistic::from(s.cloudwatch_name().as_str())),
        };
        if let Some(env) = a.environment.as_deref() {
            // An alarm on a dimension set AWS does not publish would never see data.
            let dims = match a.metric {
                Metric::Elb5xx => world.load_balancer_dimensions(env),
                Metric::RequestCount
                | Metric::Target5xx
                | Metric::TargetResponseTime
                | Metric::HealthyHostCount
                | Metric::UnhealthyHostCount => world.target_group_dimensions(env),
            };
            req = req.set_dimensions(dims);
        }
        req.send().await.wrap_err_with(|| format!("PutMetricAlarm {}", a.name))?;
        // As on AWS, a new alarm has judged nothing yet (moto says OK).
        cw.set_alarm_state()
            .alarm_name(&a.name)
            .state_value(StateValue::InsufficientData)
            .state_reason("Unchecked: Initial alarm creation")
            .send()
            .await
            .wrap_err_with(|| format!("SetAlarmState {}", a.name))?;
    }
    // Composite alarms: the sandbox's proxy keeps them (moto cannot).
    for a in &rb.alarms {
        if let Some(rule) = &a.rule {
            aws.runbook()
                .cloudwatch
                .put_composite_alarm()
                .alarm_name(&a.name)
                .alarm_description(&a.description)
                .alarm_rule(rule)
                .send()
                .await
                .wrap_err_with(|| format!("PutCompositeAlarm {}", a.name))?;
        }
    }
    // ElastiCache replication groups the runbook names: metadata only (moto
    // keeps it); the data lives in the endpoint's local redis-server.
    for (_, ep) in rb.redis_endpoints() {
        if let Some(group) = &ep.elasticache {
            let side = aws.environment(&ep.environment);
            let r = side
                .elasticache
                .create_replication_group()
                .replication_group_id(group)
                .replication_group_description(format!("cutover sandbox: {}", ep.name))
                .engine("redis")
                .engine_version("7.1")
                .cache_node_type("cache.t4g.small")
                // A primary and a replica in another zone, as production runs
                // (moto makes the replica from ReplicasPerNodeGroup only).
                .replicas_per_node_group(1)
                .automatic_failover_enabled(true)
                .multi_az_enabled(true)
                .snapshot_retention_limit(1)
                .transit_encryption_enabled(true)
                .transit_encryption_mode(aws_sdk::elasticache::types::TransitEncryptionMode::Required)
                .at_rest_encryption_enabled(true)
                .send()
                .await
                .wrap_err_with(|| format!("CreateReplicationGroup {group}"))?;
            // AWS creates the group's member clusters; moto only names them.
            let members = r.replication_group().map(|g| g.member_clusters().to_vec()).unwrap_or_default();
            for member in members {
                side.elasticache
                    .create_cache_cluster()
                    .cache_cluster_id(&member)
                    .replication_group_id(group)
                    .engine("redis")
                    .engine_version("7.1")
                    .cache_node_type("cache.t4g.small")
                    .num_cache_nodes(1)
                    .send()
                    .await
                    .wrap_err_with(|| format!("CreateCacheCluster {member}"))?;
            }
        }
    }
    Ok(world)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
