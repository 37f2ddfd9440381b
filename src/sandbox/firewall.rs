//! Makes security groups real on loopback: each app instance reaches its Redis
//! through a proxy that forwards only while moto's current rules admit the
//! instance. A refused connection is accepted and never answered, so the app
//! times out as it would behind a security group that drops its packets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::rules::{Group, Knock, Permission, lets_out, reaches};

/// An instance as the sandbox sees it in moto.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveInstance {
    pub id: String,
    /// pending, running, stopping, stopped, …
    pub state: String,
    pub private_ip: Option<String>,
    pub ipv6_addresses: Vec<String>,
    /// Security-group ids.
    pub security_groups: Vec<String>,
}

/// A network interface in a sandbox group (one a test made, as ElastiCache
/// makes one per node): where traffic to its groups goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveInterface {
    pub security_groups: Vec<String>,
    /// Private IPv4 addresses.
    pub addresses: Vec<String>,
}

/// What moto says now: every sandbox security group, instance and interface.
#[derive(Debug, Clone, Default)]
pub struct LiveWorld {
    pub groups: Vec<Group>,
    pub instances: Vec<LiveInstance>,
    pub interfaces: Vec<LiveInterface>,
}

pub struct ProxySpec {
    pub instance_id: String,
    pub endpoint_group_ids: Vec<String>,
    /// The port the security-group rules must open (the AWS-side port).
    pub rule_port: u16,
    pub upstream: SocketAddr,
}

/// Whether moto's current rules let the instance reach the endpoint, by the
/// sandbox's own rules (never cutover's analysis, which tests check).
pub fn admits(world: &LiveWorld, spec: &ProxySpec) -> bool {
    let Some(inst) = world.instances.iter().find(|i| i.id == spec.instance_id) else {
        return false;
    };
    let groups: Vec<Group> = world.groups.iter().filter(|g| spec.endpoint_group_ids.contains(&g.id)).cloned().collect();
    // The sandbox's Redis stands for a node at a private IPv4 address (the
    // interfaces in its groups have no other): AWS sees the instance's
    // connection come from its own IPv4 address, so an IPv6 rule admits
    // nothing here.
    let knock = Knock {
        security_groups: &inst.security_groups,
        private_ip: inst.private_ip.as_deref(),
        ipv6_addresses: &[],
        port: spec.rule_port,
    };
    // AWS needs both: the instance's groups let the traffic out, the endpoint's let it in.
    let own: Vec<Group> = world.groups.iter().filter(|g| inst.security_groups.contains(&g.id)).cloned().collect();
    let addresses: Vec<String> = world
        .interfaces
        .iter()
        .filter(|n| n.security_groups.iter().any(|g| spec.endpoint_group_ids.contains(g)))
        .flat_map(|n| n.addresses.iter().cloned())
        .filter(|a| inst.private_ip.as_ref() != Some(a))
        .collect();
    reaches(&groups, &knock) && lets_out(&own, &spec.endpoint_group_ids, &addresses, spec.rule_port)
}

/// Reads the groups and instances from EC2 with the SDK alone.
pub async fn read_live(ec2: &aws_sdk::ec2::Client, group_ids: &[String], instance_ids: &[String]) -> Result<LiveWorld> {
    let mut world = LiveWorld::default();
    if !group_ids.is_empty() {
        let resp = ec2
            .describe_security_groups()
            .set_group_ids(Some(group_ids.to_vec()))
            .send()
            .await
            .wrap_err("DescribeSecurityGroups")?;
        // Each managed prefix list a permission names, read once: its entries now.
        let mut lists: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        // Collected first: closures held across the await would make the task not Send.
        let named: Vec<String> = resp
            .security_groups()
            .iter()
            .flat_map(|g| g.ip_permissions().iter().chain(g.ip_permissions_egress()))
            .flat_map(|p| p.prefix_list_ids())
            .filter_map(|l| l.prefix_list_id().map(str::to_string))
            .collect();
        for id in &named {
            if lists.contains_key(id) {
                continue;
            }
            let mut cidrs = Vec::new();
            let mut pages = ec2.get_managed_prefix_list_entries().prefix_list_id(id).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.wrap_err_with(|| format!("GetManagedPrefixListEntries {id}"))?;
                cidrs.extend(page.entries().iter().filter_map(|e| e.cidr()).map(str::to_string));
            }
            lists.insert(id.to_string(), cidrs);
        }
        for g in resp.security_groups() {
            let permission = |p: &aws_sdk::ec2::types::IpPermission| Permission {
                protocol: p.ip_protocol().unwrap_or_default().to_string(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                peer_groups: p.user_id_group_pairs().iter().filter_map(|u| u.group_id()).map(str::to_string).collect(),
                cidrs: p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).map(str::to_string).collect(),
                ipv6_cidrs: p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()).map(str::to_string).collect(),
                prefix_list_cidrs: p
                    .prefix_list_ids()
                    .iter()
                    .filter_map(|l| l.prefix_list_id())
                    .flat_map(|id| lists[id].iter().cloned())
                    .collect(),
            };
            let inbound = g.ip_permissions().iter().map(permission).collect();
            let outbound = g.ip_permissions_egress().iter().map(permission).collect();
            world.groups.push(Group { id: g.group_id().unwrap_or_default().to_string(), inbound, outbound });
        }
        let in_groups =
            aws_sdk::ec2::types::Filter::builder().name("group-id").set_values(Some(group_ids.to_vec())).build();
        let resp =
            ec2.describe_network_interfaces().filters(in_groups).send().await.wrap_err("DescribeNetworkInterfaces")?;
        for n in resp.network_interfaces() {
            world.interfaces.push(LiveInterface {
                security_groups: n.groups().iter().filter_map(|g| g.group_id()).map(str::to_string).collect(),
                addresses: n
                    .private_ip_addresses()
                    .iter()
                    .filter_map(|a| a.private_ip_address())
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    if !instance_ids.is_empty() {
        let resp = ec2
            .describe_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .wrap_err("DescribeInstances")?;
        for i in resp.reservations().iter().flat_map(|r| r.instances()) {
            world.instances.push(LiveInstance {
                id: i.instance_id().unwrap_or_default().to_string(),
                state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
                private_ip: i.private_ip_address().map(str::to_string),
                ipv6_addresses: i
                    .network_interfaces()
                    .iter()
                    .flat_map(|n| n.ipv6_addresses())
                    .filter_map(|a| a.ipv6_address())
                    .map(str::to_string)
                    .collect(),
                security_groups: i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_string).collect(),
            });
        }
    }
    Ok(world)
}

/// Serves the proxy until the task is aborted.
pub async fn serve(listener: TcpListener, spec: ProxySpec, world: watch::Receiver<LiveWorld>) {
    let spec = Arc::new(spec);
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let allowed = admits(&world.borrow(), &spec);
        let spec = spec.clone();
        tokio::spawn(async move {
            if allowed {
                if let Ok(mut upstream) = TcpStream::connect(spec.upstream).await {
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            } else {
                // Drop semantics: hold the socket silently until the client gives up.
                let mut client = client;
                let mut sink = tokio::io::sink();
                let _ = tokio::time::timeout(Duration::from_secs(60), tokio::io::copy(&mut client, &mut sink)).await;
            }
        });
    }
}
