//! ELBv2: load balancers, target groups, their attributes and targets' health.

use serde::Serialize;

use super::{AwsError, AwsResult, sdk_error};
use crate::analysis::weights::{AlbHealth, RoutedGroup, alb_healthy};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub id: String,
    pub port: Option<u16>,
    /// The AZ AWS reports for the target, when it does.
    pub availability_zone: Option<String>,
    /// initial, healthy, unhealthy, unhealthy.draining, unused, draining, unavailable.
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetGroupAttributes {
    pub stickiness_enabled: Option<bool>,
    pub stickiness_type: Option<String>,
    pub stickiness_duration_seconds: Option<u32>,
    pub deregistration_delay_seconds: Option<u32>,
    /// A DNS failover threshold other than AWS's default (one healthy
    /// target, no percentage), as set: `count 2`, `percentage 50`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_failover_threshold: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    pub name: String,
    pub arn: String,
    pub load_balancer_arns: Vec<String>,
    pub health_check_path: Option<String>,
    pub health_check_interval_seconds: Option<u32>,
    pub attributes: TargetGroupAttributes,
    pub targets: Vec<Target>,
}

impl TargetGroup {
    pub fn healthy(&self) -> usize {
        self.targets.iter().filter(|t| t.state == "healthy").count()
    }
}

/// The resource part of an ELB ARN (`app/name/id`, `targetgroup/name/id`):
/// the value of CloudWatch's LoadBalancer and TargetGroup dimensions.
pub fn arn_suffix(arn: &str) -> String {
    arn.split_once(":loadbalancer/")
        .map(|(_, s)| s.to_string())
        .or_else(|| arn.rsplit_once(':').map(|(_, s)| s.to_string()))
        .unwrap_or_else(|| arn.to_string())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadBalancer {
    pub name: String,
    pub arn: String,
    pub dns_name: String,
    /// Availability zones enabled on the load balancer.
    pub zones: Vec<String>,
    /// Its VPC: the environment's, where the runbook's group names are looked up.
    pub vpc_id: Option<String>,
    /// The target groups it routes to: Route53 judges an alias to it by all
    /// of them.
    pub routes_to: Routing,
    /// Its listeners, each with its default action and rules: where a
    /// request for a given host goes.
    pub listeners: Listeners,
}

/// A load balancer's listeners, as far as they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listeners {
    /// Not asked (a region check needs only the load balancer).
    #[default]
    NotRead,
    Read(Vec<ListenerRouting>),
    /// Why they could not be read.
    Unread(String),
}

impl Listeners {
    /// One HTTP listener on port 80 forwarding every request to `arns` by
    /// default: the plainest load balancer (fakes and examples).
    pub fn forwarding_to(arns: Vec<String>) -> Listeners {
        Listeners::Read(vec![ListenerRouting {
            port: 80,
            protocol: "HTTP".into(),
            default: ListenerAction::Forward(arns),
            rules: Vec::new(),
        }])
    }
}

/// One listener: its default action and its rules in priority order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerRouting {
    pub port: u16,
    pub protocol: String,
    pub default: ListenerAction,
    pub rules: Vec<ListenerRule>,
}

/// A listener rule other than the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerRule {
    pub priority: String,
    /// Its host-header values (empty: no host condition).
    pub hosts: Vec<String>,
    /// Its other conditions (`path-pattern /api/*`): only some requests match.
    pub other_conditions: Vec<String>,
    pub action: ListenerAction,
}

/// What a listener or rule does with a request (its final action; an
/// authenticate action before it is left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerAction {
    /// To these target groups (ARNs).
    Forward(Vec<String>),
    Redirect(String),
    FixedResponse(String),
    Other(String),
}

impl std::fmt::Display for ListenerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenerAction::Forward(arns) => {
                let names: Vec<String> = arns.iter().map(|a| target_group_name_of(a)).collect();
                write!(f, "forwards to {}", names.join(", "))
            }
            ListenerAction::Redirect(to) => write!(f, "redirects to {to}"),
            ListenerAction::FixedResponse(code) => write!(f, "answers a fixed {code}"),
            ListenerAction::Other(kind) => write!(f, "does {kind}"),
        }
    }
}

/// Where requests for a host go on a load balancer, as its listeners say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequests {
    /// A listener sends every request for the host to a listed group.
    Forwarded,
    /// No listener does: why, and what each does instead.
    Elsewhere(String),
}

/// Whether `pattern` (a host-header value: `*` any run, `?` one character,
/// no case) matches `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    fn glob(p: &[u8], h: &[u8]) -> bool {
        match (p.first(), h.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], h) || (!h.is_empty() && glob(p, &h[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &h[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob(&p[1..], &h[1..]),
            _ => false,
        }
    }
    glob(pattern.trim_end_matches('.').as_bytes(), host.trim_end_matches('.').as_bytes())
}

impl ListenerRouting {
    /// What the listener does with every request for `host`: the first
    /// rule that takes them all (a host condition matching it, nothing
    /// else), else its default; with the rules that take some of them.
    fn for_host(&self, host: &str) -> (&ListenerAction, Vec<&ListenerRule>) {
        let mut some = Vec::new();
        for r in &self.rules {
            let host_ok = r.hosts.is_empty() || r.hosts.iter().any(|p| host_matches(p, host));
            if !host_ok {
                continue;
            }
            if r.other_conditions.is_empty() {
                return (&r.action, some);
            }
            some.push(r);
        }
        (&self.default, some)
    }
}

impl LoadBalancer {
    /// Whether requests for `host` reach the `listed` target groups (ARNs):
    /// a listener whose rule for every request of that host, or whose
    /// default, forwards there. A group reached only through a rule for
    /// another host or path (a `maintenance` default answering 503, say)
    /// may get none of the traffic Route53 sends this load balancer.
    pub fn requests_for(&self, host: &str, listed: &[&str]) -> Result<HostRequests, String> {
        let listeners = match &self.listeners {
            Listeners::Read(l) => l,
            Listeners::NotRead => return Err("its listeners were not read".into()),
            Listeners::Unread(e) => return Err(format!("its listeners could not be read ({e})")),
        };
        // Every listener clients may use for the host: which one they do
        // is not known, so one answering otherwise (a test listener's
        // forward elsewhere, a 503) is as likely as the one that forwards.
        // A redirect only sends them to another listener.
        let mut said = Vec::new();
        let mut forwarded = 0;
        for l in listeners {
            let (action, some) = l.for_host(host);
            match action {
                ListenerAction::Forward(arns) if arns.iter().any(|a| listed.contains(&a.as_str())) => {
                    forwarded += 1;
                    continue;
                }
                ListenerAction::Redirect(_) if some.is_empty() => continue,
                _ => {}
            }
            let partly: Vec<String> = some
                .iter()
                .map(|r| format!("rule {} ({}) {}", r.priority, r.other_conditions.join(", "), r.action))
                .collect();
            said.push(format!(
                "{} {} {}{}",
                l.protocol,
                l.port,
                action,
                if partly.is_empty() { String::new() } else { format!(" (but {})", partly.join("; ")) }
            ));
        }
        if said.is_empty() && forwarded > 0 {
            return Ok(HostRequests::Forwarded);
        }
        if listeners.is_empty() {
            said.push("it has no listener".into());
        } else if said.is_empty() {
            said.push("every listener redirects".into());
        }
        Ok(HostRequests::Elsewhere(format!(
            "not every listener of load balancer {} sends every request for {host} to a listed target group: {}",
            self.name,
            said.join("; ")
        )))
    }
}

/// The target groups a load balancer routes to, as far as they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Not asked (a region check needs only the load balancer).
    #[default]
    NotRead,
    /// Each one's ARN.
    Groups(Vec<String>),
    /// Why they could not be read.
    Unread(String),
}

impl LoadBalancer {
    /// The ARNs of the target groups it routes to, or why they are unknown.
    pub fn routed_groups(&self) -> Result<&[String], String> {
        match &self.routes_to {
            Routing::Groups(arns) => Ok(arns),
            Routing::NotRead => Err("the target groups it routes to were not read".into()),
            Routing::Unread(e) => Err(format!("the target groups it routes to could not be read ({e})")),
        }
    }

    /// Route53's verdict on an alias to it evaluating target health, from
    /// the runbook's target groups (each one's ARN and counts): those it
    /// routes to count, and one it routes to that they miss leaves it unknown.
    pub fn alias_health(&self, listed: &[(&str, RoutedGroup<'_>)]) -> AlbHealth {
        let routed = match self.routed_groups() {
            Ok(arns) => arns,
            Err(why) => return AlbHealth::Unknown(why),
        };
        let counted: Vec<RoutedGroup<'_>> =
            listed.iter().filter(|(arn, _)| routed.iter().any(|r| r == arn)).map(|(_, g)| *g).collect();
        let unlisted: Vec<String> = routed
            .iter()
            .filter(|r| !listed.iter().any(|(arn, _)| arn == r))
            .map(|a| target_group_name_of(a))
            .collect();
        alb_healthy(&counted, &unlisted)
    }
}

/// A target group's name, from its ARN (`…:targetgroup/NAME/ID`); the ARN
/// itself when it has no such shape.
pub fn target_group_name_of(arn: &str) -> String {
    arn.split(':').next_back().and_then(|r| r.split('/').nth(1)).unwrap_or(arn).to_string()
}

/// What cutover reads from ELBv2. Narrow on purpose: tests fake it for the
/// target states moto never produces (initial, unhealthy, Target.NotInUse).
pub trait LoadBalancing: Send + Sync {
    fn load_balancer(&self, name_or_arn: &str) -> impl Future<Output = AwsResult<LoadBalancer>> + Send;
    fn target_groups(&self, names_or_arns: &[String]) -> impl Future<Output = AwsResult<Vec<TargetGroup>>> + Send;
}

impl LoadBalancing for aws_sdk::elasticloadbalancingv2::Client {
    async fn load_balancer(&self, name_or_arn: &str) -> AwsResult<LoadBalancer> {
        load_balancer_routing(self, name_or_arn).await
    }
    async fn target_groups(&self, names_or_arns: &[String]) -> AwsResult<Vec<TargetGroup>> {
        target_groups(self, names_or_arns).await
    }
}

pub async fn load_balancer(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    name_or_arn: &str,
) -> AwsResult<LoadBalancer> {
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
        vpc_id: lb.vpc_id().map(str::to_string),
        routes_to: Routing::NotRead,
        listeners: Listeners::NotRead,
    })
}

/// As [`load_balancer`], with the target groups it routes to read too
/// (every page); a failure there other than throttling is kept in
/// `routes_to`, not returned, so the rest of a reading stands.
pub async fn load_balancer_routing(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    name_or_arn: &str,
) -> AwsResult<LoadBalancer> {
    let mut lb = load_balancer(elb, name_or_arn).await?;
    let mut arns = Vec::new();
    let mut pages = elb.describe_target_groups().load_balancer_arn(&lb.arn).into_paginator().send();
    lb.routes_to = loop {
        match pages.next().await.map(|p| p.map_err(|e| sdk_error("DescribeTargetGroups", e))) {
            None => break Routing::Groups(arns),
            Some(Ok(page)) => {
                arns.extend(page.target_groups().iter().filter_map(|t| t.target_group_arn().map(str::to_string)))
            }
            // moto answers TargetGroupNotFound for a load balancer routing
            // to none, where AWS answers an empty list.
            Some(Err(e)) if e.message.starts_with("TargetGroupNotFound") => break Routing::Groups(arns),
            // Throttled: the reading fails, so its worker backs off.
            Some(Err(e)) if e.kind == super::AwsErrorKind::Throttled => return Err(e),
            Some(Err(e)) => break Routing::Unread(e.to_string()),
        }
    };
    lb.listeners = match listener_routing(elb, &lb.arn).await {
        Ok(l) => Listeners::Read(l),
        Err(e) if e.kind == super::AwsErrorKind::Throttled => return Err(e),
        Err(e) => Listeners::Unread(e.to_string()),
    };
    Ok(lb)
}

/// A rule's host-header values, and its other conditions as they read:
/// a path of `/*` or `*` takes every request, so it is no condition; a host
/// given as a regular expression matches some hosts only, so it is one.
fn conditions(all: &[aws_sdk::elasticloadbalancingv2::types::RuleCondition]) -> (Vec<String>, Vec<String>) {
    let (mut hosts, mut other) = (Vec::new(), Vec::new());
    for c in all {
        let field = c.field().unwrap_or("?");
        match field {
            "host-header" => {
                let config = c.host_header_config();
                let values = config.map(|h| h.values().to_vec()).filter(|v| !v.is_empty());
                let regex = config.map(|h| h.regex_values().to_vec()).unwrap_or_default();
                let regex = if regex.is_empty() { c.regex_values().to_vec() } else { regex };
                if let Some(v) = values.or_else(|| (!c.values().is_empty()).then(|| c.values().to_vec())) {
                    hosts.extend(v);
                }
                // A regex matches some hosts only: the rule takes some requests.
                if !regex.is_empty() || hosts.is_empty() {
                    other.push(format!("host-header matching {}", regex.join(" or ")).trim().to_string());
                }
            }
            "path-pattern" => {
                let config = c.path_pattern_config().map(|p| p.values().to_vec()).filter(|v| !v.is_empty());
                let values = config.unwrap_or_else(|| c.values().to_vec());
                if values.is_empty() || !values.iter().all(|v| v == "*" || v == "/*") {
                    other.push(format!("path-pattern {}", values.join(" ")).trim().to_string());
                }
            }
            _ => other.push(format!("{field} {}", c.values().join(" ")).trim().to_string()),
        }
    }
    (hosts, other)
}

/// The load balancer's listeners with their default actions and rules,
/// every page of each.
async fn listener_routing(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    lb_arn: &str,
) -> AwsResult<Vec<ListenerRouting>> {
    use aws_sdk::elasticloadbalancingv2::types::{Action, ActionTypeEnum};
    // The final action: an authenticate action only comes before it.
    let action = |actions: &[Action]| {
        let mut sorted: Vec<&Action> = actions.iter().collect();
        sorted.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
        let Some(a) = sorted.into_iter().next_back() else { return ListenerAction::Other("nothing".into()) };
        match a.r#type() {
            Some(ActionTypeEnum::Forward) => {
                let mut arns: Vec<String> = a.target_group_arn().map(str::to_string).into_iter().collect();
                if let Some(fc) = a.forward_config() {
                    for t in fc.target_groups() {
                        if let Some(arn) = t.target_group_arn().filter(|arn| !arns.iter().any(|x| x == arn)) {
                            // A group weighted 0 gets nothing.
                            if t.weight() != Some(0) {
                                arns.push(arn.to_string());
                            }
                        }
                    }
                }
                ListenerAction::Forward(arns)
            }
            Some(ActionTypeEnum::Redirect) => ListenerAction::Redirect(a.redirect_config().map_or("?".into(), |r| {
                format!("{}:{}", r.protocol().unwrap_or("#{protocol}"), r.port().unwrap_or("#{port}"))
            })),
            Some(ActionTypeEnum::FixedResponse) => ListenerAction::FixedResponse(
                a.fixed_response_config().and_then(|f| f.status_code()).unwrap_or("?").to_string(),
            ),
            other => ListenerAction::Other(other.map_or("?".into(), |t| t.as_str().to_string())),
        }
    };
    let mut out = Vec::new();
    let mut pages = elb.describe_listeners().load_balancer_arn(lb_arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeListeners", e))?;
        for l in page.listeners() {
            let mut rules = Vec::new();
            // Only an ALB's HTTP and HTTPS listeners have rules (a Gateway
            // load balancer's answers DescribeRules with ListenerNotFound).
            let has_rules = matches!(l.protocol().map(|p| p.as_str()), Some("HTTP" | "HTTPS"));
            if let Some(arn) = l.listener_arn().filter(|_| has_rules) {
                let mut pages = elb.describe_rules().listener_arn(arn).into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| sdk_error("DescribeRules", e))?;
                    for r in page.rules().iter().filter(|r| r.is_default() != Some(true)) {
                        let (hosts, other_conditions) = conditions(r.conditions());
                        rules.push(ListenerRule {
                            priority: r.priority().unwrap_or("?").to_string(),
                            hosts,
                            other_conditions,
                            action: action(r.actions()),
                        });
                    }
                }
            }
            rules.sort_by_key(|r| r.priority.parse::<u32>().unwrap_or(u32::MAX));
            out.push(ListenerRouting {
                port: l.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                protocol: l.protocol().map_or_else(|| "?".into(), |p| p.as_str().to_string()),
                default: action(l.default_actions()),
                rules,
            });
        }
    }
    Ok(out)
}

fn attributes(attrs: &[aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute]) -> TargetGroupAttributes {
    let get = |k: &str| attrs.iter().find(|a| a.key() == Some(k)).and_then(|a| a.value()).map(str::to_string);
    TargetGroupAttributes {
        stickiness_enabled: get("stickiness.enabled").map(|v| v == "true"),
        stickiness_type: get("stickiness.type"),
        stickiness_duration_seconds: get("stickiness.lb_cookie.duration_seconds").and_then(|v| v.parse().ok()),
        deregistration_delay_seconds: get("deregistration_delay.timeout_seconds").and_then(|v| v.parse().ok()),
        dns_failover_threshold: {
            let count = get("target_group_health.dns_failover.minimum_healthy_targets.count")
                .filter(|v| v != "1")
                .map(|v| format!("count {v}"));
            let percentage = get("target_group_health.dns_failover.minimum_healthy_targets.percentage")
                .filter(|v| v != "off")
                .map(|v| format!("percentage {v}"));
            match [count, percentage].into_iter().flatten().collect::<Vec<_>>() {
                set if set.is_empty() => None,
                set => Some(set.join(", ")),
            }
        },
    }
}

/// The target groups named (names or ARNs), in the order given, every page
/// read; one not found is an error naming it.
async fn described_target_groups(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    names_or_arns: &[String],
) -> AwsResult<Vec<aws_sdk::elasticloadbalancingv2::types::TargetGroup>> {
    let (arns, names): (Vec<String>, Vec<String>) = names_or_arns.iter().cloned().partition(|s| s.starts_with("arn:"));
    let mut found = Vec::new();
    for (by_arn, values) in [(true, arns), (false, names)] {
        if values.is_empty() {
            continue;
        }
        let req = elb.describe_target_groups();
        let req = if by_arn { req.set_target_group_arns(Some(values)) } else { req.set_names(Some(values)) };
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            found.extend(page.map_err(|e| sdk_error("DescribeTargetGroups", e))?.target_groups().to_vec());
        }
    }
    names_or_arns
        .iter()
        .map(|wanted| {
            found
                .iter()
                .find(|t| {
                    t.target_group_arn() == Some(wanted.as_str()) || t.target_group_name() == Some(wanted.as_str())
                })
                .cloned()
                .ok_or_else(|| {
                    AwsError::not_found("DescribeTargetGroups", format!("target group `{wanted}` not found"))
                })
        })
        .collect()
}

/// Target groups by name or ARN (one DescribeTargetGroups for all of them),
/// each with its attributes and its targets' health, in the order asked.
pub async fn target_groups(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    names_or_arns: &[String],
) -> AwsResult<Vec<TargetGroup>> {
    if names_or_arns.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for tg in &described_target_groups(elb, names_or_arns).await? {
        let arn = tg.target_group_arn().unwrap_or_default().to_string();
        let health = elb
            .describe_target_health()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetHealth", e))?;
        let attrs = elb
            .describe_target_group_attributes()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetGroupAttributes", e))?;
        let targets = health.target_health_descriptions().iter().map(target_of).collect();
        out.push(TargetGroup {
            name: tg.target_group_name().unwrap_or_default().to_string(),
            arn,
            load_balancer_arns: tg.load_balancer_arns().to_vec(),
            health_check_path: tg.health_check_path().map(str::to_string),
            health_check_interval_seconds: tg.health_check_interval_seconds().and_then(|v| u32::try_from(v).ok()),
            attributes: attributes(attrs.attributes()),
            targets,
        });
    }
    Ok(out)
}

fn target_of(d: &aws_sdk::elasticloadbalancingv2::types::TargetHealthDescription) -> Target {
    let t = d.target();
    let h = d.target_health();
    Target {
        id: t.and_then(|t| t.id()).unwrap_or_default().to_string(),
        port: t.and_then(|t| t.port()).and_then(|p| u16::try_from(p).ok()),
        availability_zone: t.and_then(|t| t.availability_zone()).map(str::to_string),
        state: h.and_then(|h| h.state()).map_or_else(|| "unknown".into(), |s| s.as_str().to_string()),
        reason: h.and_then(|h| h.reason()).map(|r| r.as_str().to_string()),
        description: h.and_then(|h| h.description()).map(str::to_string),
    }
}

/// One target of a group, as a registration of one of the instances asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub target_group: String,
    pub target: Target,
}

/// The targets of every target group of the region (every page) that may
/// hold one of `instances` (`(id, its VPC, its addresses)`), matched by
/// instance id, or for an `ip` group by an address or delegated prefix of
/// the instance: a group the runbook does not name routes to it as well
/// as one it does. A group serving no load balancer is left out (its
/// targets are `unused`), and so is one deleted while read.
pub async fn registrations(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    instances: &[(&str, Option<&str>, &[String])],
) -> AwsResult<Vec<(usize, Registration)>> {
    use aws_sdk::elasticloadbalancingv2::types::TargetTypeEnum;
    let mut out = Vec::new();
    if instances.is_empty() {
        return Ok(out);
    }
    let mut groups = Vec::new();
    let mut pages = elb.describe_target_groups().into_paginator().send();
    while let Some(page) = pages.next().await {
        groups.extend(page.map_err(|e| sdk_error("DescribeTargetGroups", e))?.target_groups().to_vec());
    }
    // An instance is a target by id only of a group in its own VPC; an
    // `ip` group of another VPC may still hold its address (zone `all`).
    let may_hold = |tg: &aws_sdk::elasticloadbalancingv2::types::TargetGroup| {
        !tg.load_balancer_arns().is_empty()
            && (tg.target_type() == Some(&TargetTypeEnum::Ip)
                || instances.iter().any(|(_, vpc, _)| vpc.is_none() || *vpc == tg.vpc_id()))
    };
    for tg in groups.into_iter().filter(may_hold) {
        let arn = tg.target_group_arn().unwrap_or_default();
        let health = match elb.describe_target_health().target_group_arn(arn).send().await {
            Ok(h) => h,
            Err(e) => match sdk_error("DescribeTargetHealth", e) {
                gone if gone.kind == super::AwsErrorKind::NotFound => continue,
                e => return Err(e),
            },
        };
        for target in health.target_health_descriptions().iter().map(target_of) {
            // An address is an instance's within its VPC, or from a peered
            // one (zone `all`), whose ranges cannot overlap.
            let outside = target.availability_zone.as_deref() == Some("all");
            let found = instances.iter().position(|(id, vpc, addresses)| {
                *id == target.id
                    || ((outside || vpc.is_some() && *vpc == tg.vpc_id())
                        && crate::analysis::reachability::names_address(addresses, &target.id))
            });
            if let Some(i) = found {
                out.push((i, Registration { target_group: tg.target_group_name().unwrap_or(arn).to_string(), target }));
            }
        }
    }
    Ok(out)
}

pub async fn register_targets(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    target_group_arn: &str,
    instance_ids: &[String],
    port: Option<i32>,
) -> AwsResult<()> {
    use aws_sdk::elasticloadbalancingv2::types::TargetDescription;
    let targets = instance_ids.iter().map(|id| TargetDescription::builder().id(id).set_port(port).build()).collect();
    elb.register_targets()
        .target_group_arn(target_group_arn)
        .set_targets(Some(targets))
        .send()
        .await
        .map_err(|e| sdk_error("RegisterTargets", e))?;
    Ok(())
}

/// Each target by id and port: AWS matches both, and answers success for
/// a target it does not have (an id alone is looked for on the group's port).
pub async fn deregister_targets(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    target_group_arn: &str,
    targets: &[(String, Option<u16>)],
) -> AwsResult<()> {
    use aws_sdk::elasticloadbalancingv2::types::TargetDescription;
    let targets = targets
        .iter()
        .map(|(id, port)| TargetDescription::builder().id(id).set_port(port.map(i32::from)).build())
        .collect();
    elb.deregister_targets()
        .target_group_arn(target_group_arn)
        .set_targets(Some(targets))
        .send()
        .await
        .map_err(|e| sdk_error("DeregisterTargets", e))?;
    Ok(())
}

pub async fn set_target_group_attributes(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    target_group_arn: &str,
    attributes: &[(String, String)],
) -> AwsResult<()> {
    use aws_sdk::elasticloadbalancingv2::types::TargetGroupAttribute;
    let attrs = attributes.iter().map(|(k, v)| TargetGroupAttribute::builder().key(k).value(v).build()).collect();
    elb.modify_target_group_attributes()
        .target_group_arn(target_group_arn)
        .set_attributes(Some(attrs))
        .send()
        .await
        .map_err(|e| sdk_error("ModifyTargetGroupAttributes", e))?;
    Ok(())
}

/// A load balancer's shape for parity: scheme, zones, groups, idle timeout
/// (DescribeLoadBalancerAttributes) and every listener (DescribeListeners,
/// every page; an HTTPS or TLS listener's default certificate comes with it).
pub async fn load_balancer_shape(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    name_or_arn: &str,
) -> AwsResult<crate::analysis::parity::LoadBalancerShape> {
    use crate::analysis::parity::{Listener, LoadBalancerShape};
    let mut req = elb.describe_load_balancers();
    req = if name_or_arn.starts_with("arn:") { req.load_balancer_arns(name_or_arn) } else { req.names(name_or_arn) };
    let resp = req.send().await.map_err(|e| sdk_error("DescribeLoadBalancers", e))?;
    let lb = resp.load_balancers().first().ok_or_else(|| {
        AwsError::not_found("DescribeLoadBalancers", format!("load balancer `{name_or_arn}` not found"))
    })?;
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    let attrs = elb
        .describe_load_balancer_attributes()
        .load_balancer_arn(&arn)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeLoadBalancerAttributes", e))?;
    let idle_timeout_seconds = attrs
        .attributes()
        .iter()
        .find(|a| a.key() == Some("idle_timeout.timeout_seconds"))
        .and_then(|a| a.value())
        .and_then(|v| v.parse().ok());
    let mut listeners = Vec::new();
    let mut pages = elb.describe_listeners().load_balancer_arn(&arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeListeners", e))?;
        for l in page.listeners() {
            // Authenticate actions come first and the last one says what
            // the listener does: the chain is its shape, the last its target.
            let mut chain: Vec<_> = l.default_actions().iter().collect();
            chain.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
            let action = chain.last();
            let target = action.and_then(|a| {
                a.redirect_config()
                    .map(|r| format!("{}:{}", r.protocol().unwrap_or("#{protocol}"), r.port().unwrap_or("#{port}")))
                    .or_else(|| a.fixed_response_config().and_then(|f| f.status_code()).map(str::to_string))
            });
            let certificate = l.certificates().iter().find_map(|c| c.certificate_arn()).map(str::to_string);
            // DescribeListeners names the default certificate only; an ALB
            // picks among the others by SNI.
            let mut certificates: Vec<String> = certificate.iter().cloned().collect();
            let mut unread_sni = None;
            if let Some(listener_arn) = l.listener_arn().filter(|_| certificate.is_some()) {
                let mut pages = elb.describe_listener_certificates().listener_arn(listener_arn).into_paginator().send();
                while let Some(page) = pages.next().await {
                    match page {
                        Ok(page) => {
                            for arn in page.certificates().iter().filter_map(|c| c.certificate_arn()) {
                                if !certificates.iter().any(|c| c == arn) {
                                    certificates.push(arn.to_string());
                                }
                            }
                        }
                        // Those chosen by SNI unknown: said as a certificate not read.
                        Err(e) => {
                            unread_sni = Some(sdk_error("DescribeListenerCertificates", e).to_string());
                            break;
                        }
                    }
                }
            }
            listeners.push(Listener {
                port: l.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                protocol: l.protocol().map_or_else(|| "?".into(), |p| p.as_str().to_string()),
                certificate,
                certificates: certificates
                    .into_iter()
                    .map(|arn| crate::analysis::parity::Certificate { arn, ..Default::default() })
                    .chain(unread_sni.map(|e| crate::analysis::parity::Certificate {
                        // Named by its listener: two sides' unread lists never compare equal.
                        arn: format!("(the certificates {} chooses by SNI)", l.listener_arn().unwrap_or("?")),
                        error: Some(e),
                        ..Default::default()
                    }))
                    .collect(),
                ssl_policy: l.ssl_policy().map(str::to_string),
                default_action: if chain.is_empty() {
                    "none".into()
                } else {
                    chain.iter().map(|a| a.r#type().map_or("?", |t| t.as_str())).collect::<Vec<_>>().join(" then ")
                },
                default_action_target: target,
            });
        }
    }
    listeners.sort_by_key(|l| l.port);
    Ok(LoadBalancerShape {
        name: lb.load_balancer_name().unwrap_or_default().to_string(),
        arn,
        scheme: lb.scheme().map_or_else(|| "?".into(), |s| s.as_str().to_string()),
        zones: lb.availability_zones().iter().filter_map(|z| z.zone_name().map(str::to_string)).collect(),
        security_groups: lb.security_groups().to_vec(),
        vpc_id: lb.vpc_id().map(str::to_string),
        idle_timeout_seconds,
        listeners,
    })
}

/// Target groups' shapes for parity, in the order asked: health check
/// (DescribeTargetGroups, every page) and attributes
/// (DescribeTargetGroupAttributes).
pub async fn target_group_shapes(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    names_or_arns: &[String],
) -> AwsResult<Vec<crate::analysis::parity::TargetGroupShape>> {
    use crate::analysis::parity::TargetGroupShape;
    let mut out = Vec::new();
    for tg in &described_target_groups(elb, names_or_arns).await? {
        let arn = tg.target_group_arn().unwrap_or_default().to_string();
        let attrs = elb
            .describe_target_group_attributes()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetGroupAttributes", e))?;
        let get = |k: &str| {
            attrs.attributes().iter().find(|a| a.key() == Some(k)).and_then(|a| a.value()).map(str::to_string)
        };
        let secs = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
        let stickiness = get("stickiness.enabled").filter(|v| v == "true").map(|_| get("stickiness.type"));
        let stickiness = stickiness.map(|t| t.unwrap_or_else(|| "lb_cookie".into()));
        let duration_key = match stickiness.as_deref() {
            Some("app_cookie") => Some("stickiness.app_cookie.duration_seconds"),
            Some("lb_cookie") => Some("stickiness.lb_cookie.duration_seconds"),
            _ => None,
        };
        out.push(TargetGroupShape {
            name: tg.target_group_name().unwrap_or_default().to_string(),
            arn,
            protocol: tg.protocol().map(|p| p.as_str().to_string()),
            port: tg.port().and_then(|p| u16::try_from(p).ok()),
            health_check_protocol: tg.health_check_protocol().map(|p| p.as_str().to_string()),
            health_check_port: tg.health_check_port().map(str::to_string),
            health_check_path: tg.health_check_path().map(str::to_string),
            health_check_interval_seconds: secs(tg.health_check_interval_seconds()),
            health_check_timeout_seconds: secs(tg.health_check_timeout_seconds()),
            healthy_threshold: secs(tg.healthy_threshold_count()),
            unhealthy_threshold: secs(tg.unhealthy_threshold_count()),
            matcher: tg.matcher().and_then(|m| m.http_code().or(m.grpc_code())).map(str::to_string),
            stickiness_duration_seconds: duration_key.and_then(get).and_then(|v| v.parse().ok()),
            stickiness,
            deregistration_delay_seconds: get("deregistration_delay.timeout_seconds").and_then(|v| v.parse().ok()),
            algorithm: get("load_balancing.algorithm.type"),
        });
    }
    Ok(out)
}

/// The load balancers (every page) whose security groups include `group_id`, by name.
pub async fn load_balancers_using(
    elb: &aws_sdk::elasticloadbalancingv2::Client,
    group_id: &str,
) -> AwsResult<Vec<String>> {
    let mut out = Vec::new();
    let mut pages = elb.describe_load_balancers().into_paginator().send();
    while let Some(page) = pages.next().await {
        for lb in page.map_err(|e| sdk_error("DescribeLoadBalancers", e))?.load_balancers() {
            if lb.security_groups().iter().any(|g| g == group_id) {
                out.push(lb.load_balancer_name().unwrap_or_default().to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_values_match_as_aws_matches_them() {
        assert!(host_matches("app.example.org", "APP.example.org."));
        assert!(host_matches("*.example.org", "app.example.org"));
        assert!(host_matches("ap?.example.org", "app.example.org"));
        assert!(!host_matches("*.example.org", "example.org"));
        assert!(!host_matches("preview.example.org", "app.example.org"));
    }

    /// The first rule taking every request of the host decides; a rule
    /// with another condition takes some only, and is said.
    #[test]
    fn requests_for_a_host_go_where_its_first_whole_rule_or_the_default_sends_them() {
        let rule = |priority: &str, hosts: &[&str], other: &[&str], action: ListenerAction| ListenerRule {
            priority: priority.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            other_conditions: other.iter().map(|o| o.to_string()).collect(),
            action,
        };
        let to = |tg: &str| ListenerAction::Forward(vec![format!("arn:tg/{tg}")]);
        let lb = |rules: Vec<ListenerRule>, default: ListenerAction| LoadBalancer {
            name: "green-alb".into(),
            listeners: Listeners::Read(vec![ListenerRouting { port: 443, protocol: "HTTPS".into(), default, rules }]),
            ..LoadBalancer::default()
        };
        let fixed = || ListenerAction::FixedResponse("503".into());
        let listed = ["arn:tg/web"];
        let host = "app.example.org";
        assert_eq!(lb(vec![], to("web")).requests_for(host, &listed), Ok(HostRequests::Forwarded));
        let by_host = lb(vec![rule("5", &["app.example.org"], &[], to("web"))], fixed());
        assert_eq!(by_host.requests_for(host, &listed), Ok(HostRequests::Forwarded));
        // An earlier rule for every request sends them elsewhere.
        let first = lb(vec![rule("1", &[], &[], fixed()), rule("5", &[host], &[], to("web"))], to("web"));
        assert!(
            matches!(first.requests_for(host, &listed), Ok(HostRequests::Elsewhere(w)) if w.contains("HTTPS 443 answers a fixed 503"))
        );
        // Only a path, or only another host, to the group: elsewhere, saying what.
        let path = lb(vec![rule("5", &[host], &["path-pattern /api/*"], to("web"))], fixed());
        let Ok(HostRequests::Elsewhere(why)) = path.requests_for(host, &listed) else { panic!() };
        assert!(why.contains("(but rule 5 (path-pattern /api/*) forwards to web)"), "{why}");
        let other = lb(vec![rule("5", &["preview.example.org"], &[], to("web"))], fixed());
        assert!(matches!(other.requests_for(host, &listed), Ok(HostRequests::Elsewhere(_))));
        // A host given as a regular expression takes some hosts only; a
        // path of /* takes every request.
        let regex = lb(vec![rule("1", &[], &["host-header matching ^admin\\."], to("web"))], fixed());
        assert!(matches!(regex.requests_for(host, &listed), Ok(HostRequests::Elsewhere(_))));
        // Every listener but a redirecting one: a test listener answering
        // 503 is as likely as the one forwarding.
        let two = |second: ListenerAction| LoadBalancer {
            listeners: Listeners::Read(vec![
                ListenerRouting { port: 443, protocol: "HTTPS".into(), default: to("web"), rules: vec![] },
                ListenerRouting { port: 80, protocol: "HTTP".into(), default: second, rules: vec![] },
            ]),
            ..LoadBalancer::default()
        };
        assert_eq!(
            two(ListenerAction::Redirect("HTTPS:443".into())).requests_for(host, &listed),
            Ok(HostRequests::Forwarded)
        );
        let Ok(HostRequests::Elsewhere(why)) = two(fixed()).requests_for(host, &listed) else { panic!() };
        assert!(why.ends_with(": HTTP 80 answers a fixed 503"), "{why}");
        // Unread listeners are no evidence.
        let unread = LoadBalancer { listeners: Listeners::Unread("AccessDenied".into()), ..LoadBalancer::default() };
        assert!(unread.requests_for(host, &listed).is_err());
    }
}
