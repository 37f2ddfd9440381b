//! ELBv2: target groups, their targets' health, attributes and load balancer zones.

use serde::Serialize;

use super::{AwsError, AwsResult, sdk_error};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub id: String,
    pub port: Option<u16>,
    /// The AZ AWS reports for the target, when it does.
    pub availability_zone: Option<String>,
    /// initial, healthy, unhealthy, unused, draining, unavailable.
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    pub name: String,
    pub arn: String,
    pub load_balancer_arns: Vec<String>,
    pub targets: Vec<Target>,
}

impl TargetGroup {
    pub fn healthy(&self) -> usize {
        self.targets.iter().filter(|t| t.state == "healthy").count()
    }
    /// `targetgroup/name/id`, the CloudWatch dimension value.
    pub fn arn_suffix(&self) -> String {
        arn_suffix(&self.arn)
    }
}

/// The resource part of an ELB ARN (`app/name/id`, `targetgroup/name/id`).
pub fn arn_suffix(arn: &str) -> String {
    arn.split_once(":loadbalancer/")
        .map(|(_, s)| s.to_string())
        .or_else(|| arn.rsplit_once(':').map(|(_, s)| s.to_string()))
        .unwrap_or_else(|| arn.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadBalancer {
    pub name: String,
    pub arn: String,
    pub dns_name: String,
    pub zones: Vec<String>,
}

pub async fn load_balancer(elb: &aws_sdk_elasticloadbalancingv2::Client, name_or_arn: &str) -> AwsResult<LoadBalancer> {
    let mut req = elb.describe_load_balancers();
    req = if name_or_arn.starts_with("arn:") { req.load_balancer_arns(name_or_arn) } else { req.names(name_or_arn) };
    let resp = req.send().await.map_err(|e| sdk_error("DescribeLoadBalancers", e))?;
    let lb = resp.load_balancers().first().ok_or_else(|| {
        AwsError::not_found("DescribeLoadBalancers", format!("load balancer `{name_or_arn}` not found"))
    })?;
    Ok(LoadBalancer {
        name: lb.load_balancer_name().unwrap_or_default().to_string(),
        arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        zones: lb.availability_zones().iter().filter_map(|z| z.zone_name().map(str::to_string)).collect(),
    })
}

/// Target groups by name or ARN, each with its targets' health.
pub async fn target_groups(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    names_or_arns: &[String],
) -> AwsResult<Vec<TargetGroup>> {
    let mut out = Vec::new();
    for tg_ref in names_or_arns {
        let mut req = elb.describe_target_groups();
        req = if tg_ref.starts_with("arn:") { req.target_group_arns(tg_ref) } else { req.names(tg_ref) };
        let resp = req.send().await.map_err(|e| sdk_error("DescribeTargetGroups", e))?;
        let tg = resp
            .target_groups()
            .first()
            .ok_or_else(|| AwsError::not_found("DescribeTargetGroups", format!("target group `{tg_ref}` not found")))?;
        let arn = tg.target_group_arn().unwrap_or_default().to_string();
        let health = elb
            .describe_target_health()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetHealth", e))?;
        let targets = health
            .target_health_descriptions()
            .iter()
            .map(|d| {
                let t = d.target();
                let h = d.target_health();
                Target {
                    id: t.and_then(|t| t.id()).unwrap_or_default().to_string(),
                    port: t.and_then(|t| t.port()).and_then(|p| u16::try_from(p).ok()),
                    availability_zone: t.and_then(|t| t.availability_zone()).map(str::to_string),
                    state: h
                        .and_then(|h| h.state())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    reason: h.and_then(|h| h.reason()).map(|r| r.as_str().to_string()),
                    description: h.and_then(|h| h.description()).map(str::to_string),
                }
            })
            .collect();
        out.push(TargetGroup {
            name: tg.target_group_name().unwrap_or_default().to_string(),
            arn,
            load_balancer_arns: tg.load_balancer_arns().to_vec(),
            targets,
        });
    }
    Ok(out)
}
