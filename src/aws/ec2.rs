//! EC2: instances and security groups.

use std::collections::BTreeMap;

use aws_sdk::ec2::types::Filter;
use serde::Serialize;

use super::{AwsError, AwsResult, sdk_error};
use crate::analysis::reachability::{GroupRule, PrefixList, SecurityGroup};
use crate::runbook::InstanceSelector;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: String,
    pub name: Option<String>,
    /// pending, running, stopping, stopped, shutting-down, terminated.
    pub state: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// Informational only: cutover never connects to it.
    pub private_ip: Option<String>,
    /// Its IPv6 addresses (every network interface's), if it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_addresses: Vec<String>,
    pub vpc_id: Option<String>,
    pub security_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Every private address of its interfaces (IPv4 and IPv6) and each
    /// prefix delegated to them (a CIDR): what an `ip` target group may
    /// name it, or a task or pod on it, by.
    #[serde(skip)]
    pub target_addresses: Vec<String>,
}

impl Instance {
    /// The instance as the security-group path analysis sees it.
    pub fn source(&self) -> crate::analysis::reachability::Source<'_> {
        crate::analysis::reachability::Source {
            instance_id: &self.id,
            private_ip: self.private_ip.as_deref(),
            ipv6_addresses: &self.ipv6_addresses,
            security_groups: &self.security_groups,
        }
    }
}

pub async fn describe_instances(ec2: &aws_sdk::ec2::Client, selector: &InstanceSelector) -> AwsResult<Vec<Instance>> {
    let mut out = describe_instances_with_terminated(ec2, selector).await?;
    out.retain(|i| i.state != "terminated");
    Ok(out)
}

/// As [`describe_instances`], terminated instances included (EC2 lists them
/// for about an hour after).
pub async fn describe_instances_with_terminated(
    ec2: &aws_sdk::ec2::Client,
    selector: &InstanceSelector,
) -> AwsResult<Vec<Instance>> {
    let mut req = ec2.describe_instances();
    match selector {
        InstanceSelector::Tags(tags) => {
            for (k, v) in tags {
                req = req.filters(Filter::builder().name(format!("tag:{k}")).values(v).build());
            }
        }
        InstanceSelector::Ids(ids) => {
            req = req.set_instance_ids(Some(ids.clone()));
        }
    }
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeInstances", e))?;
        for r in page.reservations() {
            for i in r.instances() {
                let tags: BTreeMap<String, String> =
                    i.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
                out.push(Instance {
                    id: i.instance_id().unwrap_or_default().to_string(),
                    name: tags.get("Name").cloned(),
                    state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
                    instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                    availability_zone: i
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .unwrap_or_default()
                        .to_string(),
                    private_ip: i.private_ip_address().map(str::to_string),
                    ipv6_addresses: ipv6_addresses(i),
                    vpc_id: i.vpc_id().map(str::to_string),
                    security_groups: i
                        .security_groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                    tags,
                    target_addresses: target_addresses(i),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(out)
}

fn ipv6_addresses(i: &aws_sdk::ec2::types::Instance) -> Vec<String> {
    let mut out: Vec<String> = i.ipv6_address().map(str::to_string).into_iter().collect();
    for a in i.network_interfaces().iter().flat_map(|n| n.ipv6_addresses()).filter_map(|a| a.ipv6_address()) {
        if !out.iter().any(|o| o == a) {
            out.push(a.to_string());
        }
    }
    out
}

fn target_addresses(i: &aws_sdk::ec2::types::Instance) -> Vec<String> {
    let mut out: Vec<String> = i.private_ip_address().map(str::to_string).into_iter().collect();
    out.extend(ipv6_addresses(i));
    for n in i.network_interfaces() {
        let v4 = n.private_ip_addresses().iter().filter_map(|a| a.private_ip_address());
        let p4 = n.ipv4_prefixes().iter().filter_map(|p| p.ipv4_prefix());
        let p6 = n.ipv6_prefixes().iter().filter_map(|p| p.ipv6_prefix());
        out.extend(v4.chain(p4).chain(p6).map(str::to_string));
    }
    out.sort();
    out.dedup();
    out
}

/// The VPC group names are looked up in, and how it is known (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    /// `the VPC of staging's load balancer demo-staging-alb`.
    pub how: String,
}

/// Looks groups up by id (`sg-…`) or by name; every one must exist. Names
/// are looked up in `vpc` only; without one, a name held by groups of several
/// VPCs is an error (which one is meant cannot be told).
pub async fn describe_security_groups(
    ec2: &aws_sdk::ec2::Client,
    ids_or_names: &[String],
    vpc: Option<&Vpc>,
) -> AwsResult<Vec<SecurityGroup>> {
    if ids_or_names.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, names): (Vec<String>, Vec<String>) = ids_or_names.iter().cloned().partition(|s| s.starts_with("sg-"));
    let mut out = Vec::new();
    for (by_id, values) in [(true, ids), (false, names)] {
        if values.is_empty() {
            continue;
        }
        let mut req = ec2.describe_security_groups();
        req = if by_id {
            req.set_group_ids(Some(values.clone()))
        } else {
            let req = req.filters(Filter::builder().name("group-name").set_values(Some(values.clone())).build());
            match vpc {
                Some(v) => req.filters(Filter::builder().name("vpc-id").values(&v.id).build()),
                None => req,
            }
        };
        let resp = req.send().await.map_err(|e| sdk_error("DescribeSecurityGroups", e))?;
        if !by_id && vpc.is_none() {
            for v in &values {
                let mut vpcs: Vec<&str> = resp
                    .security_groups()
                    .iter()
                    .filter(|g| g.group_name() == Some(v))
                    .filter_map(|g| g.vpc_id())
                    .collect();
                vpcs.sort();
                vpcs.dedup();
                if vpcs.len() > 1 {
                    return Err(AwsError::not_found(
                        "DescribeSecurityGroups",
                        format!(
                            "security group `{v}` names groups in {}, and the environment's VPC is not known (no load balancer, and its instances name no single VPC); name the group by id (sg-…)",
                            vpcs.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut lists: BTreeMap<String, Result<Vec<String>, String>> = BTreeMap::new();
        // Collected first: an iterator of closures held across the await would
        // make the future not Send.
        let named = |outbound: bool| -> Vec<String> {
            resp.security_groups()
                .iter()
                .flat_map(|g| if outbound { g.ip_permissions_egress() } else { g.ip_permissions() })
                .flat_map(|p| p.prefix_list_ids())
                .filter_map(|p| p.prefix_list_id().map(str::to_string))
                .collect()
        };
        // An inbound rule's list decides paths into the group: not read, the
        // groups are not. An outbound one's (often an AWS service's, such as
        // S3's) is kept as not read, which leaves only paths it might open unknown.
        for (outbound, ids) in [(false, named(false)), (true, named(true))] {
            for id in ids {
                // Read once: an inbound list's failure has already returned.
                if lists.contains_key(&id) {
                    continue;
                }
                let read = prefix_list_cidrs(ec2, &id).await;
                if let (Err(e), false) = (&read, outbound) {
                    return Err(e.clone());
                }
                lists.insert(id, read.map_err(|e| e.to_string()));
            }
        }
        for g in resp.security_groups() {
            out.push(SecurityGroup {
                id: g.group_id().unwrap_or_default().to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
                ingress: g.ip_permissions().iter().map(|p| group_rule(p, &lists)).collect(),
                egress: g.ip_permissions_egress().iter().map(|p| group_rule(p, &lists)).collect(),
            });
        }
        for v in &values {
            if !out.iter().any(|g| if by_id { &g.id == v } else { &g.name == v }) {
                let where_ = match (by_id, vpc) {
                    (false, Some(vpc)) => format!("in {} ({})", vpc.id, vpc.how),
                    _ => "in this region".to_string(),
                };
                return Err(AwsError::not_found(
                    "DescribeSecurityGroups",
                    format!("security group `{v}` does not exist {where_}"),
                ));
            }
        }
    }
    Ok(out)
}

/// One permission as the analysis reads it, its prefix lists' CIDRs from `lists`.
fn group_rule(
    p: &aws_sdk::ec2::types::IpPermission,
    lists: &BTreeMap<String, Result<Vec<String>, String>>,
) -> GroupRule {
    GroupRule {
        protocol: p.ip_protocol().unwrap_or("-1").to_string(),
        from_port: p.from_port().and_then(|v| u16::try_from(v).ok()),
        to_port: p.to_port().and_then(|v| u16::try_from(v).ok()),
        groups: p.user_id_group_pairs().iter().filter_map(|u| u.group_id().map(str::to_string)).collect(),
        cidrs: p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()))
            .map(str::to_string)
            .collect(),
        prefix_lists: p
            .prefix_list_ids()
            .iter()
            .filter_map(|l| l.prefix_list_id())
            .map(|id| match lists.get(id) {
                Some(Ok(cidrs)) => PrefixList { id: id.to_string(), cidrs: cidrs.clone(), unread: None },
                Some(Err(e)) => PrefixList { id: id.to_string(), cidrs: Vec::new(), unread: Some(e.clone()) },
                None => PrefixList { id: id.to_string(), cidrs: Vec::new(), unread: Some("not read".into()) },
            })
            .collect(),
    }
}

/// The addresses of the network interfaces in each of `group_ids` (group id
/// → addresses), as clients reach them: an interface's private IPv4
/// addresses, or its IPv6 ones when it has no IPv4 (an IPv6-only ElastiCache
/// node). Where traffic to that group goes: an ElastiCache node, an instance
/// running Redis.
pub async fn interface_addresses(
    ec2: &aws_sdk::ec2::Client,
    group_ids: &[String],
) -> AwsResult<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = group_ids.iter().map(|g| (g.clone(), Vec::new())).collect();
    if group_ids.is_empty() {
        return Ok(out);
    }
    let filter = Filter::builder().name("group-id").set_values(Some(group_ids.to_vec())).build();
    let mut pages = ec2.describe_network_interfaces().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        for n in page.map_err(|e| sdk_error("DescribeNetworkInterfaces", e))?.network_interfaces() {
            let v4: Vec<String> =
                n.private_ip_addresses().iter().filter_map(|a| a.private_ip_address()).map(str::to_string).collect();
            let addresses = if v4.is_empty() {
                n.ipv6_addresses().iter().filter_map(|a| a.ipv6_address()).map(str::to_string).collect()
            } else {
                v4
            };
            for g in n.groups().iter().filter_map(|g| g.group_id()) {
                if let Some(list) = out.get_mut(g) {
                    list.extend(addresses.iter().cloned());
                }
            }
        }
    }
    for list in out.values_mut() {
        list.sort();
        list.dedup();
    }
    Ok(out)
}

/// The CIDRs a managed prefix list holds now (every page).
async fn prefix_list_cidrs(ec2: &aws_sdk::ec2::Client, id: &str) -> AwsResult<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = ec2.get_managed_prefix_list_entries().prefix_list_id(id).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("GetManagedPrefixListEntries", e))?;
        out.extend(page.entries().iter().filter_map(|e| e.cidr()).map(str::to_string));
    }
    Ok(out)
}

/// A TCP ingress rule from one security group, told apart by its description
/// (cutover tags the rules it adds with one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIngress {
    pub group_id: String,
    pub port: u16,
    pub from_group_id: String,
    pub description: String,
}

impl GroupIngress {
    fn permission(&self) -> aws_sdk::ec2::types::IpPermission {
        aws_sdk::ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(self.port))
            .to_port(i32::from(self.port))
            .user_id_group_pairs(
                aws_sdk::ec2::types::UserIdGroupPair::builder()
                    .group_id(&self.from_group_id)
                    .description(&self.description)
                    .build(),
            )
            .build()
    }
}

pub async fn authorize_ingress(ec2: &aws_sdk::ec2::Client, rule: &GroupIngress) -> AwsResult<()> {
    ec2.authorize_security_group_ingress()
        .group_id(&rule.group_id)
        .ip_permissions(rule.permission())
        .send()
        .await
        .map_err(|e| sdk_error("AuthorizeSecurityGroupIngress", e))?;
    Ok(())
}

/// Whether AWS found the rule: for a VPC group it answers success for a
/// rule the group does not hold, naming it in `UnknownIpPermissions`.
pub async fn revoke_ingress(ec2: &aws_sdk::ec2::Client, rule: &GroupIngress) -> AwsResult<bool> {
    let out = ec2
        .revoke_security_group_ingress()
        .group_id(&rule.group_id)
        .ip_permissions(rule.permission())
        .send()
        .await
        .map_err(|e| sdk_error("RevokeSecurityGroupIngress", e))?;
    Ok(out.unknown_ip_permissions().is_empty())
}

/// The group-to-group ingress rules of `group_ids` whose description is
/// `description`.
pub async fn ingress_described(
    ec2: &aws_sdk::ec2::Client,
    group_ids: Vec<String>,
    description: &str,
) -> AwsResult<Vec<GroupIngress>> {
    let resp = ec2
        .describe_security_groups()
        .set_group_ids(Some(group_ids))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeSecurityGroups", e))?;
    let mut out = Vec::new();
    for g in resp.security_groups() {
        for perm in g.ip_permissions() {
            for pair in perm.user_id_group_pairs().iter().filter(|u| u.description() == Some(description)) {
                out.push(GroupIngress {
                    group_id: g.group_id().unwrap_or_default().into(),
                    port: perm.from_port().and_then(|v| u16::try_from(v).ok()).unwrap_or(0),
                    from_group_id: pair.group_id().unwrap_or_default().into(),
                    description: description.into(),
                });
            }
        }
    }
    Ok(out)
}

/// The instances of `ids` with termination protection on
/// (DescribeInstanceAttribute `disableApiTermination`, one call each: the
/// attribute is not in DescribeInstances).
pub async fn termination_protected(ec2: &aws_sdk::ec2::Client, ids: &[String]) -> AwsResult<Vec<String>> {
    let mut out = Vec::new();
    for id in ids {
        let r = ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk::ec2::types::InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeInstanceAttribute", e))?;
        if r.disable_api_termination().and_then(|b| b.value()).unwrap_or(false) {
            out.push(id.clone());
        }
    }
    Ok(out)
}

pub async fn stop_instances(ec2: &aws_sdk::ec2::Client, ids: &[String]) -> AwsResult<()> {
    ec2.stop_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error("StopInstances", e))?;
    Ok(())
}

pub async fn start_instances(ec2: &aws_sdk::ec2::Client, ids: &[String]) -> AwsResult<()> {
    ec2.start_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error("StartInstances", e))?;
    Ok(())
}

/// Instances' shapes for parity (DescribeInstances, every page): type, AMI,
/// zone, IMDSv2, public IP and groups; terminated ones left out.
pub async fn instance_shapes(
    ec2: &aws_sdk::ec2::Client,
    selector: &InstanceSelector,
) -> AwsResult<Vec<crate::analysis::parity::InstanceShape>> {
    use aws_sdk::ec2::types::{HttpTokensState, InstanceStateName};
    let mut req = ec2.describe_instances();
    match selector {
        InstanceSelector::Tags(tags) => {
            for (k, v) in tags {
                req = req.filters(Filter::builder().name(format!("tag:{k}")).values(v).build());
            }
        }
        InstanceSelector::Ids(ids) => req = req.set_instance_ids(Some(ids.clone())),
    }
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeInstances", e))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            if i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Terminated) {
                continue;
            }
            out.push(crate::analysis::parity::InstanceShape {
                id: i.instance_id().unwrap_or_default().to_string(),
                name: i.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value()).map(str::to_string),
                instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                image_id: i.image_id().map(str::to_string),
                zone: i.placement().and_then(|p| p.availability_zone()).unwrap_or_default().to_string(),
                imdsv2_required: i
                    .metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| *t == HttpTokensState::Required),
                public_ip: i.public_ip_address().map(str::to_string),
                security_groups: i.security_groups().iter().filter_map(|g| g.group_id().map(str::to_string)).collect(),
                state: i.state().and_then(|s| s.name()).map_or("unknown", |n| n.as_str()).to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// An AMI as DescribeImages reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    /// pending, available, invalid, deregistered, transient, failed, error, disabled.
    pub state: String,
    /// Why it failed, when it did (StateReason).
    pub reason: Option<String>,
    /// When it was created (RFC 3339, as AWS says it).
    pub created: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// CreateImage of one instance, tagging the image (moto, unlike AWS, cannot
/// tag the snapshots on creation, so only the image is tagged). Returns the
/// new image's id; it starts `pending`.
pub async fn create_image(
    ec2: &aws_sdk::ec2::Client,
    instance_id: &str,
    name: &str,
    no_reboot: bool,
    tags: &[(String, String)],
) -> AwsResult<String> {
    use aws_sdk::ec2::types::{ResourceType, Tag, TagSpecification};
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Image)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
        .build();
    let out = ec2
        .create_image()
        .instance_id(instance_id)
        .name(name)
        .description(format!("{name} (cutover)"))
        .no_reboot(no_reboot)
        .tag_specifications(spec)
        .send()
        .await
        .map_err(|e| sdk_error("CreateImage", e))?;
    out.image_id().map(str::to_string).ok_or_else(|| AwsError::not_found("CreateImage", "no image id in the reply"))
}

/// The id of the caller's own AMI of this name, if there is one (AMI names
/// are unique in an account and region).
pub async fn image_named(ec2: &aws_sdk::ec2::Client, name: &str) -> AwsResult<Option<String>> {
    let found = ec2
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values(name).build())
        .send()
        .await
        .map_err(|e| sdk_error("DescribeImages", e))?;
    Ok(found.images().first().and_then(|i| i.image_id()).map(str::to_string))
}

/// DescribeImages of the caller's own images, by id or by tags (every page).
pub async fn describe_images(
    ec2: &aws_sdk::ec2::Client,
    ids: &[String],
    tags: &[(String, String)],
) -> AwsResult<Vec<Image>> {
    let mut req = ec2.describe_images().owners("self");
    if !ids.is_empty() {
        req = req.set_image_ids(Some(ids.to_vec()));
    }
    for (k, v) in tags {
        req = req.filters(Filter::builder().name(format!("tag:{k}")).values(v).build());
    }
    let mut out = Vec::new();
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeImages", e))?;
        for i in page.images() {
            out.push(Image {
                id: i.image_id().unwrap_or_default().to_string(),
                state: i.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                reason: i.state_reason().and_then(|r| r.message()).map(str::to_string),
                created: i.creation_date().map(str::to_string),
                tags: i.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect(),
            });
        }
    }
    Ok(out)
}

/// TerminateInstances. AWS accepts it at once (`shutting-down`, then `terminated`).
pub async fn terminate_instances(ec2: &aws_sdk::ec2::Client, ids: &[String]) -> AwsResult<()> {
    ec2.terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error("TerminateInstances", e))?;
    Ok(())
}

/// A security group found by name or id, with its VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupFound {
    pub id: String,
    pub name: String,
    pub vpc_id: Option<String>,
    /// As the runbook names it (a name or an id).
    pub asked: String,
}

/// The groups among `ids_or_names` that exist (names in `vpc` when given);
/// a name held in several VPCs is an error, as in `describe_security_groups`.
pub async fn groups_found(
    ec2: &aws_sdk::ec2::Client,
    ids_or_names: &[String],
    vpc: Option<&Vpc>,
) -> AwsResult<Vec<GroupFound>> {
    let mut out = Vec::new();
    let mut req = ec2.describe_security_groups();
    if let Some(v) = vpc {
        req = req.filters(Filter::builder().name("vpc-id").values(&v.id).build());
    }
    // Every group of the VPC (or account), paged: an id that no longer exists
    // must not fail the whole call as GroupIds would.
    let mut pages = req.into_paginator().send();
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        all.extend(page.map_err(|e| sdk_error("DescribeSecurityGroups", e))?.security_groups().to_vec());
    }
    for asked in ids_or_names {
        let hits: Vec<_> =
            all.iter().filter(|g| g.group_id() == Some(asked) || g.group_name() == Some(asked)).collect();
        if hits.len() > 1 {
            return Err(AwsError::not_found(
                "DescribeSecurityGroups",
                format!("security group name `{asked}` is used in several VPCs; name it by id (sg-…)"),
            ));
        }
        if let Some(g) = hits.first() {
            out.push(GroupFound {
                id: g.group_id().unwrap_or_default().to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
                vpc_id: g.vpc_id().map(str::to_string),
                asked: asked.clone(),
            });
        }
    }
    Ok(out)
}

/// What still uses a security group, each as words: network interfaces
/// (instances, load balancers, caches all have one in AWS), instances that
/// are not terminated, and other groups' rules naming it (AWS refuses to
/// delete a group another group's rule references).
pub async fn group_users(ec2: &aws_sdk::ec2::Client, group: &GroupFound) -> AwsResult<Vec<String>> {
    let mut users = Vec::new();
    let by_group = |name: &str| Filter::builder().name(name).values(&group.id).build();
    let mut terminated = std::collections::BTreeSet::new();
    let mut instances = ec2.describe_instances().filters(by_group("instance.group-id")).into_paginator().send();
    while let Some(page) = instances.next().await {
        for r in page.map_err(|e| sdk_error("DescribeInstances", e))?.reservations() {
            for i in r.instances() {
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default();
                let id = i.instance_id().unwrap_or("?").to_string();
                if state == "terminated" {
                    terminated.insert(id);
                } else {
                    users.push(format!("instance {id} ({state})"));
                }
            }
        }
    }
    let mut enis = ec2.describe_network_interfaces().filters(by_group("group-id")).into_paginator().send();
    while let Some(page) = enis.next().await {
        for n in page.map_err(|e| sdk_error("DescribeNetworkInterfaces", e))?.network_interfaces() {
            let instance = n.attachment().and_then(|a| a.instance_id());
            // A terminated instance's interface that goes with it (DeleteOnTermination,
            // the default for its primary one) is being deleted: AWS says so if not yet.
            let going = n.attachment().is_some_and(|a| a.delete_on_termination() != Some(false))
                && instance.is_some_and(|i| terminated.contains(i));
            if !going {
                let on = match (instance, n.description().filter(|d| !d.is_empty())) {
                    (Some(i), _) => format!(" of {i}"),
                    // An ElastiCache node's says whose it is.
                    (None, Some(d)) => format!(" ({d})"),
                    (None, None) => String::new(),
                };
                users.push(format!("network interface {}{on}", n.network_interface_id().unwrap_or("?")));
            }
        }
    }
    let mut req = ec2.describe_security_groups();
    if let Some(v) = &group.vpc_id {
        req = req.filters(Filter::builder().name("vpc-id").values(v).build());
    }
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        for g in page.map_err(|e| sdk_error("DescribeSecurityGroups", e))?.security_groups() {
            let names_it = g
                .ip_permissions()
                .iter()
                .chain(g.ip_permissions_egress())
                .flat_map(|p| p.user_id_group_pairs())
                .any(|pair| pair.group_id() == Some(group.id.as_str()));
            if names_it && g.group_id() != Some(group.id.as_str()) {
                users.push(format!(
                    "a rule of group {} ({})",
                    g.group_name().unwrap_or("?"),
                    g.group_id().unwrap_or("?")
                ));
            }
        }
    }
    Ok(users)
}

pub async fn delete_security_group(ec2: &aws_sdk::ec2::Client, id: &str) -> AwsResult<()> {
    ec2.delete_security_group().group_id(id).send().await.map_err(|e| sdk_error("DeleteSecurityGroup", e))?;
    Ok(())
}
