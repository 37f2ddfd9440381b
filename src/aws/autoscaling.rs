//! EC2 Auto Scaling: the groups that send instances to a side's target groups.

use super::{AwsResult, sdk_error};
use crate::analysis::parity::AutoScalingShape;

/// Every Auto Scaling group (DescribeAutoScalingGroups, every page; AWS
/// returns at most 100 a page) attached to one of `target_group_arns`, by
/// `TargetGroupARNs` or as a traffic source.
pub async fn groups_behind(
    client: &aws_sdk::autoscaling::Client,
    target_group_arns: &[String],
) -> AwsResult<Vec<AutoScalingShape>> {
    let mut out = Vec::new();
    if target_group_arns.is_empty() {
        return Ok(out);
    }
    let mut pages = client.describe_auto_scaling_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeAutoScalingGroups", e))?;
        for g in page.auto_scaling_groups() {
            let mut attached: Vec<String> = g
                .target_group_arns()
                .iter()
                .map(String::as_str)
                .chain(g.traffic_sources().iter().filter_map(|t| t.identifier()))
                .filter(|arn| target_group_arns.iter().any(|t| t == arn))
                .map(str::to_string)
                .collect();
            attached.sort();
            attached.dedup();
            if !attached.is_empty() {
                out.push(AutoScalingShape {
                    name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    min: g.min_size().and_then(|v| u32::try_from(v).ok()),
                    max: g.max_size().and_then(|v| u32::try_from(v).ok()),
                    desired: g.desired_capacity().and_then(|v| u32::try_from(v).ok()),
                    target_group_arns: attached,
                    suspended: g
                        .suspended_processes()
                        .iter()
                        .filter_map(|p| p.process_name())
                        .map(str::to_string)
                        .collect(),
                    health_check_type: g.health_check_type().map(str::to_string),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// An instance an Auto Scaling group holds, and its lifecycle state there
/// (`InService`, `Standby`, `Pending`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub instance_id: String,
    pub group: String,
    pub lifecycle_state: String,
}

/// Which of `instance_ids` a group holds (DescribeAutoScalingInstances, at
/// most 50 ids a call, every page): asked of Auto Scaling itself, since the
/// `aws:autoscaling:groupName` tag stays on an instance put in Standby.
pub async fn holding(client: &aws_sdk::autoscaling::Client, instance_ids: &[String]) -> AwsResult<Vec<Held>> {
    let mut out = Vec::new();
    for ids in instance_ids.chunks(50) {
        let mut pages =
            client.describe_auto_scaling_instances().set_instance_ids(Some(ids.to_vec())).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("DescribeAutoScalingInstances", e))?;
            out.extend(page.auto_scaling_instances().iter().map(|i| Held {
                instance_id: i.instance_id().unwrap_or_default().to_string(),
                group: i.auto_scaling_group_name().unwrap_or_default().to_string(),
                lifecycle_state: i.lifecycle_state().unwrap_or_default().to_string(),
            }));
        }
    }
    Ok(out)
}
