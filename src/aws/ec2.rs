//! EC2: instances and security groups.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use serde::Serialize;

use super::{AwsError, AwsResult, sdk_error};
use crate::analysis::reachability::{IngressRule, SecurityGroup};
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
    pub security_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

pub async fn describe_instances(ec2: &aws_sdk_ec2::Client, selector: &InstanceSelector) -> AwsResult<Vec<Instance>> {
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
                    security_groups: i
                        .security_groups()
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                    tags,
                });
            }
        }
    }
    out.retain(|i| i.state != "terminated");
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Looks groups up by id (`sg-…`) or by name; every one must exist.
pub async fn describe_security_groups(
    ec2: &aws_sdk_ec2::Client,
    ids_or_names: &[String],
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
            req.filters(Filter::builder().name("group-name").set_values(Some(values.clone())).build())
        };
        let resp = req.send().await.map_err(|e| sdk_error("DescribeSecurityGroups", e))?;
        for g in resp.security_groups() {
            out.push(SecurityGroup {
                id: g.group_id().unwrap_or_default().to_string(),
                name: g.group_name().unwrap_or_default().to_string(),
                ingress: g
                    .ip_permissions()
                    .iter()
                    .map(|p| IngressRule {
                        protocol: p.ip_protocol().unwrap_or("-1").to_string(),
                        from_port: p.from_port().and_then(|v| u16::try_from(v).ok()),
                        to_port: p.to_port().and_then(|v| u16::try_from(v).ok()),
                        groups: p
                            .user_id_group_pairs()
                            .iter()
                            .filter_map(|u| u.group_id().map(str::to_string))
                            .collect(),
                        cidrs: p.ip_ranges().iter().filter_map(|r| r.cidr_ip().map(str::to_string)).collect(),
                    })
                    .collect(),
            });
        }
        for v in &values {
            if !out.iter().any(|g| if by_id { &g.id == v } else { &g.name == v }) {
                return Err(AwsError::not_found(
                    "DescribeSecurityGroups",
                    format!("security group `{v}` does not exist in this region"),
                ));
            }
        }
    }
    Ok(out)
}
