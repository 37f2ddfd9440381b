//! Security-group path from an instance to a Redis endpoint: does an
//! outbound rule of one of the instance's groups let the traffic out, and an
//! inbound rule of one of the endpoint's groups let it in? AWS needs both.

use std::net::IpAddr;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub ingress: Vec<GroupRule>,
    /// Outbound rules (a new group's default lets everything out).
    pub egress: Vec<GroupRule>,
}

/// One permission of a security group: a protocol and ports, from (inbound)
/// or to (outbound) its peers: groups, CIDRs and prefix lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRule {
    /// `tcp`, `udp`, `icmp` or `-1` (all).
    pub protocol: String,
    pub from_port: Option<u16>,
    pub to_port: Option<u16>,
    /// Peer security-group ids: an inbound rule's sources, an outbound one's destinations.
    pub groups: Vec<String>,
    /// Peer CIDRs: IPv4 (`IpRanges`) and IPv6 (`Ipv6Ranges`) alike; each
    /// only ever matches an address of its own family.
    pub cidrs: Vec<String>,
    /// Peer managed prefix lists (`PrefixListIds`) with the CIDRs they hold.
    pub prefix_lists: Vec<PrefixList>,
}

/// A managed prefix list as a rule's peer: its CIDRs count like the rule's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixList {
    pub id: String,
    pub cidrs: Vec<String>,
    /// Why its entries could not be read (then `cidrs` is empty): a path
    /// the list might open is unknown, never blocked on its account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

impl GroupRule {
    /// Every protocol and port, to or from `cidr`: what AWS gives a new
    /// group as its outbound rule (`0.0.0.0/0`).
    pub fn all_traffic(cidr: &str) -> GroupRule {
        GroupRule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            groups: Vec::new(),
            cidrs: vec![cidr.into()],
            prefix_lists: Vec::new(),
        }
    }

    fn covers_tcp_port(&self, port: u16) -> bool {
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => match (self.from_port, self.to_port) {
                (Some(f), Some(t)) => f <= port && port <= t,
                _ => true,
            },
            _ => false,
        }
    }
}

/// The instance as the analysis sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source<'a> {
    pub instance_id: &'a str,
    pub private_ip: Option<&'a str>,
    /// The instance's IPv6 addresses, if it has any.
    pub ipv6_addresses: &'a [String],
    pub security_groups: &'a [String],
}

impl Source<'_> {
    fn addresses(&self) -> impl Iterator<Item = &str> {
        self.private_ip.into_iter().chain(self.ipv6_addresses.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SgPath {
    /// The rules that let the traffic out of the instance and into the endpoint.
    Allowed { via: String },
    /// Why not, naming the rule that is missing.
    Blocked { reason: String, fix: Option<MissingRule> },
    /// Not judged: the endpoint names no security groups, or some group,
    /// prefix list or address a rule depends on could not be read.
    Unknown { reason: String },
}

impl SgPath {
    pub fn is_allowed(&self) -> bool {
        matches!(self, SgPath::Allowed { .. })
    }

    /// One line for people: `ok (…)`, `BLOCKED: …` or `unknown: …`.
    pub fn describe(&self) -> String {
        match self {
            SgPath::Allowed { via } => format!("ok ({via})"),
            SgPath::Blocked { reason, .. } => format!("BLOCKED: {reason}"),
            SgPath::Unknown { reason } => format!("unknown: {reason}"),
        }
    }
}

/// The ingress rule that would open the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingRule {
    pub group_id: String,
    pub port: u16,
    pub from_group_id: String,
}

/// Whether `ip` is one of `addresses` (each an address or a CIDR prefix),
/// compared as addresses, not as text (`::1` is `0:0::1`).
pub fn names_address(addresses: &[String], ip: &str) -> bool {
    let Ok(wanted) = ip.parse::<IpAddr>() else { return false };
    addresses.iter().any(|a| match a.contains('/') {
        true => cidr_contains(a, ip),
        false => a.parse::<IpAddr>() == Ok(wanted),
    })
}

/// Whether `ip` lies in `cidr`. IPv4 and IPv6 never match each other (an
/// IPv4-mapped IPv6 range is IPv6); anything unparsable contains nothing.
fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let (Some((net, bits)), Ok(ip)) = (cidr.split_once('/'), ip.parse::<IpAddr>()) else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            (u32::from(net) & mask) == (u32::from(ip) & mask)
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            (u128::from(net) & mask) == (u128::from(ip) & mask)
        }
        _ => false,
    }
}

/// Group ids to names, for messages (`sg-0a00 (staging-redis)`).
pub type GroupNames = std::collections::BTreeMap<String, String>;

/// `groups` as they would be with `group_id`'s rule allowing TCP `port`
/// from `from_group_id` revoked (that source taken out of a rule of exactly
/// that port; a rule left with no source goes).
pub fn without_rule(groups: &[SecurityGroup], group_id: &str, port: u16, from_group_id: &str) -> Vec<SecurityGroup> {
    let mut out = groups.to_vec();
    for g in out.iter_mut().filter(|g| g.id == group_id) {
        for r in g.ingress.iter_mut() {
            if r.protocol == "tcp" && r.from_port == Some(port) && r.to_port == Some(port) {
                r.groups.retain(|s| s != from_group_id);
            }
        }
        g.ingress.retain(|r| !(r.groups.is_empty() && r.cidrs.is_empty() && r.prefix_lists.is_empty()));
    }
    out
}

/// Decides whether any of `endpoint_groups` admits `source` on TCP `port`.
pub fn sg_path(source: &Source, endpoint_groups: &[SecurityGroup], port: u16) -> SgPath {
    sg_path_named(source, endpoint_groups, port, &GroupNames::new())
}

/// As `sg_path_named`, judged on the instance's addresses of the family it
/// reaches the endpoint over: an IPv4 endpoint sees the instance's IPv4
/// address, an IPv6 one its IPv6 addresses, so a rule of the other family
/// admits nothing (a rule naming the instance's group admits either). An
/// endpoint whose addresses are not known is taken as IPv4, as `egress_path`
/// takes it; one with addresses of both families must admit both.
pub fn ingress_path(
    source: &Source,
    endpoint_groups: &[SecurityGroup],
    port: u16,
    to: Addresses,
    names: &GroupNames,
) -> SgPath {
    let mine: Vec<&str> = source.addresses().collect();
    let theirs: Vec<&str> = match to {
        Addresses::Found(all) => all.iter().map(String::as_str).filter(|a| !mine.contains(a)).collect(),
        Addresses::Unread(_) => Vec::new(),
    };
    // Judged as seen from the instance's addresses of one family.
    let judged = |ipv6: bool| {
        let (family, only) = match ipv6 {
            false => ("IPv4", Source { ipv6_addresses: &[], ..source.clone() }),
            true => ("IPv6", Source { private_ip: None, ..source.clone() }),
        };
        // The family is said where the instance has an address of the other.
        let dual = if ipv6 { source.private_ip.is_some() } else { !source.ipv6_addresses.is_empty() };
        match sg_path_named(&only, endpoint_groups, port, names) {
            SgPath::Blocked { reason, fix } if dual => {
                let from: Vec<&str> = only.addresses().collect();
                let from = if from.is_empty() { "none".to_string() } else { from.join(", ") };
                let reason = format!(
                    "{reason} (the endpoint is reached over {family}; the instance's {family} addresses: {from})"
                );
                SgPath::Blocked { reason, fix }
            }
            other => other,
        }
    };
    let (v4, v6) = (theirs.iter().any(|a| !a.contains(':')), theirs.iter().any(|a| a.contains(':')));
    match (v4, v6) {
        (true, false) => judged(false),
        (false, true) => judged(true),
        // Interfaces of both families in the endpoint's groups, which need
        // not all be its nodes: a path one family admits and the other not
        // is unknown.
        (true, true) => match (judged(false), judged(true)) {
            (SgPath::Allowed { via: a }, SgPath::Allowed { via: b }) if a == b => SgPath::Allowed { via: a },
            (SgPath::Allowed { via: a }, SgPath::Allowed { via: b }) => SgPath::Allowed { via: format!("{a}; {b}") },
            (SgPath::Blocked { .. }, SgPath::Blocked { reason, fix }) => SgPath::Blocked { reason, fix },
            (SgPath::Unknown { reason }, _) | (_, SgPath::Unknown { reason }) => SgPath::Unknown { reason },
            (four, six) => SgPath::Unknown {
                reason: format!(
                    "the endpoint's groups hold interfaces of both families, which may not all be its nodes: over \
                     IPv4 {}; over IPv6 {}",
                    four.describe(),
                    six.describe()
                ),
            },
        },
        // No address: taken as IPv4, as `egress_path` takes it, unless it
        // could not be read or the instance has no IPv4 address: then a
        // rule admitting its IPv6 address leaves the path unknown, not
        // blocked (a failed read is no failed path).
        (false, false) => {
            let as_v4 = judged(false);
            let unsure = matches!(to, Addresses::Unread(_)) || source.private_ip.is_none();
            match (&as_v4, unsure, sg_path_named(source, endpoint_groups, port, names)) {
                (SgPath::Blocked { .. }, true, SgPath::Allowed { via }) => {
                    let why = match to {
                        Addresses::Unread(e) => format!("its network interfaces could not be read ({e})"),
                        Addresses::Found(_) => "no network interface of its was found".to_string(),
                    };
                    SgPath::Unknown {
                        reason: format!(
                            "whether the endpoint is reached over IPv4 (which no rule admits) or IPv6 ({via}) is \
                             unknown: {why}"
                        ),
                    }
                }
                _ => as_v4,
            }
        }
    }
}

/// A group for messages: `sg-0a00 (staging-redis)`, or its id alone where
/// `names` does not know it.
pub fn label(id: &str, names: &GroupNames) -> String {
    match names.get(id) {
        Some(n) if !n.is_empty() => format!("{id} ({n})"),
        _ => id.to_string(),
    }
}

/// As `sg_path`, naming groups in messages where `names` knows them.
pub fn sg_path_named(source: &Source, endpoint_groups: &[SecurityGroup], port: u16, names: &GroupNames) -> SgPath {
    let label = |id: &str| label(id, names);
    if endpoint_groups.is_empty() {
        return SgPath::Unknown {
            reason: "the Redis endpoint names no security groups; add security_groups to it in the runbook".into(),
        };
    }
    let open_rules = || {
        endpoint_groups.iter().flat_map(|g| g.ingress.iter().filter(|r| r.covers_tcp_port(port)).map(move |r| (g, r)))
    };
    for (g, rule) in open_rules() {
        if let Some(src) = rule.groups.iter().find(|sg| source.security_groups.contains(sg)) {
            return SgPath::Allowed { via: format!("{} allows {port} from {}", label(&g.id), label(src)) };
        }
        for ip in source.addresses() {
            if let Some(c) = rule.cidrs.iter().find(|c| cidr_contains(c, ip)) {
                return SgPath::Allowed { via: format!("{} allows {port} from {c} ({ip})", label(&g.id)) };
            }
            for pl in &rule.prefix_lists {
                if let Some(c) = pl.cidrs.iter().find(|c| cidr_contains(c, ip)) {
                    return SgPath::Allowed {
                        via: format!("{} allows {port} from prefix list {} ({c} holds {ip})", label(&g.id), pl.id),
                    };
                }
            }
        }
    }
    let allowed: Vec<String> = open_rules()
        .flat_map(|(g, r)| {
            r.groups
                .iter()
                .map(|s| label(s))
                .chain(r.cidrs.iter().cloned())
                .chain(r.prefix_lists.iter().map(|pl| format!("prefix list {}", pl.id)))
                .map(|s| format!("{} allows {port} from {s}", label(&g.id)))
                .collect::<Vec<_>>()
        })
        .collect();
    let has = if source.security_groups.is_empty() {
        "no security groups".to_string()
    } else {
        format!("only {}", source.security_groups.iter().map(|g| label(g)).collect::<Vec<_>>().join(", "))
    };
    let what = if allowed.is_empty() {
        format!(
            "no rule of {} opens port {port}",
            endpoint_groups.iter().map(|g| label(&g.id)).collect::<Vec<_>>().join(", ")
        )
    } else {
        allowed.join(", ")
    };
    let fix = source.security_groups.first().map(|from| MissingRule {
        group_id: endpoint_groups[0].id.clone(),
        port,
        from_group_id: from.clone(),
    });
    let hint = fix
        .as_ref()
        .map(|f| format!("; fix: allow {} from {} on {}", f.port, label(&f.from_group_id), label(&f.group_id)))
        .unwrap_or_default();
    SgPath::Blocked { reason: format!("{what}; instance {} has {has}{hint}", source.instance_id), fix }
}

/// Where the instance's traffic to an endpoint goes: the endpoint's groups,
/// and the addresses of the network interfaces in them.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub group_ids: &'a [String],
    pub addresses: Addresses<'a>,
}

/// The addresses traffic to an endpoint's groups goes to, as read.
#[derive(Debug, Clone, Copy)]
pub enum Addresses<'a> {
    /// One per interface in the groups, as a client reaches it: its private
    /// IPv4 address, or its IPv6 one when it has no IPv4 (an IPv6-only
    /// ElastiCache node). Empty: no interface found.
    Found(&'a [String]),
    /// DescribeNetworkInterfaces failed: why.
    Unread(&'a str),
}

/// Whether an outbound rule of one of the instance's groups (`instance_groups`,
/// as described) lets TCP `port` out to `to`: one naming an endpoint group
/// (AWS then lets out to every interface in it), or CIDRs and prefix lists
/// holding every address of the endpoint's interfaces (the instance's own
/// excepted: it does not pass its own groups to reach itself). Those
/// interfaces may be more than the endpoint's nodes (a group shared with a
/// database, other instances): every one held proves the way open, none held
/// proves it shut, and some held proves nothing, so that is unknown. Where those
/// addresses are not known the endpoint is taken as IPv4, as ElastiCache's
/// are by default, and only a rule to every IPv4 address (`0.0.0.0/0`)
/// proves the way out, saying so. Blocked carries no fix: cutover adds
/// inbound rules only; the reason names the rule to add by hand.
pub fn egress_path(
    source: &Source,
    instance_groups: &[SecurityGroup],
    to: Destination,
    port: u16,
    names: &GroupNames,
) -> SgPath {
    let label = |id: &str| label(id, names);
    let own: Vec<&SecurityGroup> = instance_groups.iter().filter(|g| source.security_groups.contains(&g.id)).collect();
    if let Some(missing) = source.security_groups.iter().find(|id| !own.iter().any(|g| &g.id == *id)) {
        return SgPath::Unknown {
            reason: format!(
                "instance {}'s group {} was not read, so its outbound rules are not judged",
                source.instance_id,
                label(missing)
            ),
        };
    }
    let blocked = |reason: String| SgPath::Blocked { reason, fix: None };
    if own.is_empty() {
        return blocked(format!(
            "instance {} has no security groups, so nothing lets its traffic out",
            source.instance_id
        ));
    }
    let rules = || own.iter().flat_map(|g| g.egress.iter().filter(|r| r.covers_tcp_port(port)).map(move |r| (*g, r)));
    for (g, r) in rules() {
        if let Some(d) = r.groups.iter().find(|d| to.group_ids.contains(d)) {
            return SgPath::Allowed { via: format!("{} lets {port} out to {}", label(&g.id), label(d)) };
        }
    }
    // Every CIDR a rule lets the port out to, with its group: own or in a prefix list.
    let cidrs = || {
        rules().flat_map(|(g, r)| {
            r.cidrs.iter().map(move |c| (g, c.clone(), None)).chain(
                r.prefix_lists.iter().flat_map(move |pl| pl.cidrs.iter().map(move |c| (g, c.clone(), Some(&pl.id)))),
            )
        })
    };
    let says = |g: &SecurityGroup, c: &str, list: Option<&String>| match list {
        Some(l) => format!("{} lets {port} out to prefix list {l} ({c})", label(&g.id)),
        None => format!("{} lets {port} out to {c}", label(&g.id)),
    };
    let theirs = own.iter().map(|g| label(&g.id)).collect::<Vec<_>>().join(", ");
    let fix = match to.group_ids.first() {
        Some(e) => format!("; fix by hand: allow {port} out to {} on {}", label(e), label(&own[0].id)),
        None => String::new(),
    };
    // A rule whose prefix list could not be read may hold what is missing:
    // the path is then unknown, not blocked.
    let unread_list = || {
        rules().flat_map(|(_, r)| &r.prefix_lists).find_map(|pl| {
            pl.unread.as_ref().map(|e| format!("prefix list {} of an outbound rule could not be read: {e}", pl.id))
        })
    };
    let found = match to.addresses {
        Addresses::Found(all) => {
            let mine: Vec<&str> = source.addresses().collect();
            let theirs: Vec<&String> = all.iter().filter(|a| !mine.contains(&a.as_str())).collect();
            (!theirs.is_empty()).then_some(theirs)
        }
        Addresses::Unread(_) => None,
    };
    match found {
        Some(addresses) => {
            // Each rule that lets out, with the addresses it holds.
            let mut via: Vec<(String, Vec<&str>)> = Vec::new();
            let mut not_out = Vec::new();
            for a in addresses {
                match cidrs().find(|(_, c, _)| cidr_contains(c, a)) {
                    Some((g, c, list)) => {
                        let rule = says(g, &c, list);
                        match via.iter_mut().find(|(r, _)| *r == rule) {
                            Some((_, held)) => held.push(a),
                            None => via.push((rule, vec![a])),
                        }
                    }
                    None => not_out.push(a.as_str()),
                }
            }
            if not_out.is_empty() {
                let via: Vec<String> =
                    via.into_iter().map(|(r, held)| format!("{r} (holds {})", held.join(", "))).collect();
                return SgPath::Allowed { via: via.join(", ") };
            }
            if let Some(why) = unread_list() {
                return SgPath::Unknown { reason: why };
            }
            let groups = to.group_ids.iter().map(|g| label(g)).collect::<Vec<_>>().join(", ");
            if !via.is_empty() {
                let held: Vec<String> =
                    via.into_iter().map(|(r, held)| format!("{r} (holds {})", held.join(", "))).collect();
                return SgPath::Unknown {
                    reason: format!(
                        "{}, but no outbound rule lets {port} out to {} (interfaces in the endpoint's groups {groups}, which may not all be its nodes)",
                        held.join(", "),
                        not_out.join(", ")
                    ),
                };
            }
            blocked(format!(
                "no outbound rule lets {port} out to {} (in the endpoint's groups {groups}) from instance {}'s groups: {theirs}{fix}",
                not_out.join(", "),
                source.instance_id,
            ))
        }
        None => {
            let why = match to.addresses {
                Addresses::Unread(e) => format!("the endpoint's network interfaces could not be read ({e})"),
                Addresses::Found([]) => "no network interface was found in the endpoint's groups".to_string(),
                Addresses::Found(_) => {
                    "no network interface besides the instance's own was found in the endpoint's groups".to_string()
                }
            };
            if let Some((g, c, list)) =
                cidrs().find(|(_, c, _)| cidr_contains(c, "0.0.0.0") && cidr_contains(c, "255.255.255.255"))
            {
                return SgPath::Allowed { via: format!("{} (the endpoint taken as IPv4: {why})", says(g, &c, list)) };
            }
            if let Some(why) = unread_list() {
                return SgPath::Unknown { reason: why };
            }
            let narrow: Vec<String> = cidrs().map(|(g, c, list)| says(g, &c, list)).collect();
            if narrow.is_empty() {
                blocked(format!(
                    "no outbound rule lets {port} out of instance {}'s groups: {theirs}{fix}",
                    source.instance_id
                ))
            } else {
                SgPath::Unknown {
                    reason: format!("{}, and {why} to say whether that holds the endpoint", narrow.join(", ")),
                }
            }
        }
    }
}

/// The whole path: `ingress` (the endpoint's groups letting the instance in)
/// joined with `egress` (its own letting the traffic out). A path blocked
/// either way keeps the inbound fix only when the way out is open, since
/// adding that rule opens nothing otherwise.
pub fn both_ways(ingress: SgPath, egress: SgPath) -> SgPath {
    match (ingress, egress) {
        (SgPath::Allowed { via }, SgPath::Allowed { via: out }) => SgPath::Allowed { via: format!("{via}; {out}") },
        (ingress, SgPath::Allowed { .. }) => ingress,
        (SgPath::Allowed { .. }, SgPath::Blocked { reason, .. }) => {
            SgPath::Blocked { reason: format!("out: {reason}"), fix: None }
        }
        (SgPath::Allowed { .. }, SgPath::Unknown { reason }) => SgPath::Unknown { reason: format!("out: {reason}") },
        (SgPath::Blocked { reason, .. }, out) => {
            SgPath::Blocked { reason: format!("{reason}; out: {}", out.describe()), fix: None }
        }
        (SgPath::Unknown { reason }, _) => SgPath::Unknown { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, rules: Vec<GroupRule>) -> SecurityGroup {
        SecurityGroup { id: id.into(), name: id.into(), ingress: rules, egress: Vec::new() }
    }
    fn tcp(from: u16, to: u16, groups: &[&str], cidrs: &[&str]) -> GroupRule {
        GroupRule {
            protocol: "tcp".into(),
            from_port: Some(from),
            to_port: Some(to),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            prefix_lists: Vec::new(),
        }
    }
    fn src<'a>(sgs: &'a [String], ip: Option<&'a str>, v6: &'a [String]) -> Source<'a> {
        Source { instance_id: "i-1", private_ip: ip, ipv6_addresses: v6, security_groups: sgs }
    }

    #[test]
    fn group_reference_allows() {
        let sgs = vec!["sg-app".to_string()];
        let src =
            Source { instance_id: "i-1", private_ip: Some("10.0.1.5"), ipv6_addresses: &[], security_groups: &sgs };
        let p = sg_path(&src, &[group("sg-redis", vec![tcp(6379, 6379, &["sg-app"], &[])])], 6379);
        assert_eq!(p, SgPath::Allowed { via: "sg-redis allows 6379 from sg-app".into() });
    }

    #[test]
    fn cidr_covering_the_ip_allows_and_one_outside_does_not() {
        let sgs = vec!["sg-x".to_string()];
        let src =
            Source { instance_id: "i-1", private_ip: Some("10.0.1.5"), ipv6_addresses: &[], security_groups: &sgs };
        assert!(sg_path(&src, &[group("sg-r", vec![tcp(6379, 6379, &[], &["10.0.0.0/16"])])], 6379).is_allowed());
        assert!(!sg_path(&src, &[group("sg-r", vec![tcp(6379, 6379, &[], &["10.1.0.0/16"])])], 6379).is_allowed());
        assert!(sg_path(&src, &[group("sg-r", vec![tcp(6379, 6379, &[], &["0.0.0.0/0"])])], 6379).is_allowed());
        assert!(sg_path(&src, &[group("sg-r", vec![tcp(6379, 6379, &[], &["10.0.1.5/32"])])], 6379).is_allowed());
    }

    #[test]
    fn wrong_port_range_or_protocol_blocks() {
        let sgs = vec!["sg-app".to_string()];
        let src = Source { instance_id: "i-1", private_ip: None, ipv6_addresses: &[], security_groups: &sgs };
        assert!(!sg_path(&src, &[group("sg-r", vec![tcp(6380, 6390, &["sg-app"], &[])])], 6379).is_allowed());
        let mut udp = tcp(6379, 6379, &["sg-app"], &[]);
        udp.protocol = "udp".into();
        assert!(!sg_path(&src, &[group("sg-r", vec![udp])], 6379).is_allowed());
        let mut all = tcp(0, 0, &["sg-app"], &[]);
        all.protocol = "-1".into();
        all.from_port = None;
        all.to_port = None;
        assert!(sg_path(&src, &[group("sg-r", vec![all])], 6379).is_allowed());
    }

    #[test]
    fn blocked_names_the_rule_that_exists_and_the_fix() {
        let sgs = vec!["sg-0c33".to_string()];
        let src =
            Source { instance_id: "i-9", private_ip: Some("10.0.2.9"), ipv6_addresses: &[], security_groups: &sgs };
        let p = sg_path(&src, &[group("sg-0a00", vec![tcp(6379, 6379, &["sg-0b21"], &[])])], 6379);
        match p {
            SgPath::Blocked { reason, fix } => {
                assert_eq!(
                    reason,
                    "sg-0a00 allows 6379 from sg-0b21; instance i-9 has only sg-0c33; fix: allow 6379 from sg-0c33 on sg-0a00"
                );
                assert_eq!(
                    fix,
                    Some(MissingRule { group_id: "sg-0a00".into(), port: 6379, from_group_id: "sg-0c33".into() })
                );
            }
            other => panic!("expected blocked, got {other:?}"),
        }
    }

    #[test]
    fn messages_name_groups_when_known() {
        let sgs = vec!["sg-0c33".to_string()];
        let src = Source { instance_id: "i-9", private_ip: None, ipv6_addresses: &[], security_groups: &sgs };
        let names: GroupNames = [("sg-0a00", "redis"), ("sg-0b21", "app"), ("sg-0c33", "batch")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let p = sg_path_named(&src, &[group("sg-0a00", vec![tcp(6379, 6379, &["sg-0b21"], &[])])], 6379, &names);
        let SgPath::Blocked { reason, .. } = p else { panic!("expected blocked") };
        assert_eq!(
            reason,
            "sg-0a00 (redis) allows 6379 from sg-0b21 (app); instance i-9 has only sg-0c33 (batch); fix: allow 6379 from sg-0c33 (batch) on sg-0a00 (redis)"
        );
    }

    #[test]
    fn no_groups_on_endpoint_is_unknown_not_allowed() {
        let sgs = vec!["sg-a".to_string()];
        let src = Source { instance_id: "i-1", private_ip: None, ipv6_addresses: &[], security_groups: &sgs };
        assert!(matches!(sg_path(&src, &[], 6379), SgPath::Unknown { .. }));
    }

    #[test]
    fn cidr_parsing_rejects_garbage() {
        assert!(!cidr_contains("nonsense", "10.0.0.1"));
        assert!(!cidr_contains("10.0.0.0/33", "10.0.0.1"));
        assert!(!cidr_contains("10.0.0.0/8", "not-an-ip"));
    }

    #[test]
    fn a_target_address_is_named_by_an_address_or_a_delegated_prefix_compared_as_addresses() {
        let mine = ["10.0.1.5".to_string(), "10.0.1.16/28".to_string(), "2001:db8::7".to_string()];
        assert!(names_address(&mine, "10.0.1.5"));
        assert!(names_address(&mine, "10.0.1.20"), "in the delegated /28");
        assert!(names_address(&mine, "2001:db8:0:0::7"), "the same IPv6 address written otherwise");
        assert!(!names_address(&mine, "10.0.1.50"));
        assert!(!names_address(&mine, "10.0.1.55"));
        assert!(!names_address(&mine, "i-10.0.1.5"), "an instance id is no address");
        assert!(!names_address(&[], "10.0.1.5"));
    }

    #[test]
    fn ipv6_cidrs_match_ipv6_addresses_and_never_ipv4_ones() {
        assert!(cidr_contains("2001:db8:1::/48", "2001:db8:1:2::7"));
        assert!(!cidr_contains("2001:db8:1::/48", "2001:db8:2::7"));
        assert!(cidr_contains("2001:db8::7/128", "2001:db8::7"));
        assert!(!cidr_contains("2001:db8::7/128", "2001:db8::8"));
        assert!(cidr_contains("::/0", "2600:1f18::1"));
        assert!(!cidr_contains("2001:db8::/129", "2001:db8::1"), "not a prefix");
        // Families never mix, even for the catch-alls.
        assert!(!cidr_contains("::/0", "10.0.1.5"));
        assert!(!cidr_contains("0.0.0.0/0", "2001:db8::1"));
        assert!(!cidr_contains("::ffff:10.0.1.0/120", "10.0.1.5"), "an IPv4-mapped range is IPv6");
    }

    #[test]
    fn an_ipv6_range_admits_the_instances_ipv6_address_only() {
        let sgs = vec!["sg-x".to_string()];
        let v6 = vec!["2001:db8:1:2::7".to_string()];
        let rule = |c: &str| vec![group("sg-r", vec![tcp(6379, 6379, &[], &[c])])];
        let p = sg_path(&src(&sgs, Some("10.0.1.5"), &v6), &rule("2001:db8:1::/48"), 6379);
        assert_eq!(p, SgPath::Allowed { via: "sg-r allows 6379 from 2001:db8:1::/48 (2001:db8:1:2::7)".into() });
        // An IPv4-only instance is not let in by an IPv6 range, even ::/0.
        assert!(!sg_path(&src(&sgs, Some("10.0.1.5"), &[]), &rule("::/0"), 6379).is_allowed());
        // An IPv6 address is not let in by an IPv4 range, even 0.0.0.0/0.
        assert!(!sg_path(&src(&sgs, None, &v6), &rule("0.0.0.0/0"), 6379).is_allowed());
        assert!(!sg_path(&src(&sgs, None, &v6), &rule("2001:db8:2::/48"), 6379).is_allowed());
    }

    /// A dual-stack instance reaches an IPv4 endpoint from its IPv4 address:
    /// a rule admitting its IPv6 range lets nothing in (it was allowed).
    #[test]
    fn the_endpoints_family_decides_which_of_the_instances_addresses_is_judged() {
        let sgs = vec!["sg-x".to_string()];
        let v6 = vec!["2001:db8:1:2::7".to_string()];
        let dual = src(&sgs, Some("10.0.1.5"), &v6);
        let rule = |c: &str| vec![group("sg-r", vec![tcp(6379, 6379, &[], &[c])])];
        let names = GroupNames::new();
        let v4_node = vec!["10.0.3.7".to_string()];
        let v6_node = vec!["2001:db8:3::9".to_string()];
        let both = vec!["10.0.3.7".to_string(), "2001:db8:3::9".to_string()];
        let p = ingress_path(&dual, &rule("2001:db8:1::/48"), 6379, Addresses::Found(&v4_node), &names);
        let SgPath::Blocked { reason, .. } = p else { panic!("an IPv4 endpoint admitted over IPv6: {p:?}") };
        assert!(
            reason.ends_with("(the endpoint is reached over IPv4; the instance's IPv4 addresses: 10.0.1.5)"),
            "{reason}"
        );
        assert!(ingress_path(&dual, &rule("2001:db8:1::/48"), 6379, Addresses::Found(&v6_node), &names).is_allowed());
        assert!(!ingress_path(&dual, &rule("10.0.0.0/16"), 6379, Addresses::Found(&v6_node), &names).is_allowed());
        // Unknown addresses: taken as IPv4; a rule only for its IPv6 address
        // leaves the path unknown (a failed read is no failed path).
        let p = ingress_path(&dual, &rule("::/0"), 6379, Addresses::Unread("throttled"), &names);
        assert!(matches!(&p, SgPath::Unknown { reason } if reason.ends_with("(throttled)")), "{p:?}");
        assert!(ingress_path(&dual, &rule("10.0.0.0/16"), 6379, Addresses::Found(&[]), &names).is_allowed());
        assert!(
            !ingress_path(&dual, &rule("::/0"), 6379, Addresses::Found(&[]), &names).is_allowed(),
            "none found: IPv4"
        );
        let v4_only = src(&sgs, Some("10.0.1.5"), &[]);
        let p = ingress_path(&v4_only, &rule("::/0"), 6379, Addresses::Unread("throttled"), &names);
        assert!(matches!(p, SgPath::Blocked { .. }), "{p:?}");
        // An IPv6-only instance, no interface found: unknown, not blocked.
        let v6_only = src(&sgs, None, &v6);
        let p = ingress_path(&v6_only, &rule("::/0"), 6379, Addresses::Found(&[]), &names);
        assert!(matches!(&p, SgPath::Unknown { reason } if reason.contains("no network interface")), "{p:?}");
        // Interfaces of both families (not all need be nodes): one family
        // let in and the other not is unknown; neither is blocked.
        let p = ingress_path(&dual, &rule("10.0.0.0/16"), 6379, Addresses::Found(&both), &names);
        assert!(matches!(&p, SgPath::Unknown { reason } if reason.contains("both families")), "{p:?}");
        let p = ingress_path(&dual, &rule("10.9.0.0/16"), 6379, Addresses::Found(&both), &names);
        assert!(matches!(p, SgPath::Blocked { .. }), "{p:?}");
        let two = vec![group("sg-r", vec![tcp(6379, 6379, &[], &["10.0.0.0/16", "2001:db8:1::/48"])])];
        assert!(ingress_path(&dual, &two, 6379, Addresses::Found(&both), &names).is_allowed());
        // A rule naming the instance's group admits either family.
        let by_group = vec![group("sg-r", vec![tcp(6379, 6379, &["sg-x"], &[])])];
        assert!(ingress_path(&dual, &by_group, 6379, Addresses::Found(&both), &names).is_allowed());
    }

    #[test]
    fn a_prefix_list_admits_the_addresses_it_holds_and_names_itself() {
        let sgs = vec!["sg-batch".to_string()];
        let mut r = tcp(6379, 6379, &[], &[]);
        r.prefix_lists = vec![PrefixList {
            id: "pl-1".into(),
            cidrs: vec!["10.9.0.0/16".into(), "10.0.1.0/24".into()],
            unread: None,
        }];
        let groups = vec![group("sg-r", vec![r])];
        assert_eq!(
            sg_path(&src(&sgs, Some("10.0.1.5"), &[]), &groups, 6379),
            SgPath::Allowed { via: "sg-r allows 6379 from prefix list pl-1 (10.0.1.0/24 holds 10.0.1.5)".into() }
        );
        let SgPath::Blocked { reason, .. } = sg_path(&src(&sgs, Some("10.0.2.5"), &[]), &groups, 6379) else {
            panic!("an address outside the list is blocked")
        };
        assert!(reason.starts_with("sg-r allows 6379 from prefix list pl-1;"), "{reason}");
        assert!(!sg_path(&src(&sgs, Some("10.0.1.5"), &[]), &groups, 6380).is_allowed(), "another port");
    }

    fn app(egress: Vec<GroupRule>) -> SecurityGroup {
        SecurityGroup { id: "sg-app".into(), name: "app".into(), ingress: Vec::new(), egress }
    }

    #[test]
    fn the_default_outbound_rule_lets_the_port_out_and_a_group_reference_does_too() {
        let sgs = vec!["sg-app".to_string()];
        let redis = vec!["sg-redis".to_string()];
        let to = Destination { group_ids: &redis, addresses: Addresses::Found(&[]) };
        let src = src(&sgs, Some("10.0.1.5"), &[]);
        let names = GroupNames::new();
        assert_eq!(
            egress_path(&src, &[app(vec![GroupRule::all_traffic("0.0.0.0/0")])], to, 6379, &names),
            SgPath::Allowed {
                via: "sg-app lets 6379 out to 0.0.0.0/0 (the endpoint taken as IPv4: no network interface was found in the endpoint's groups)".into()
            }
        );
        assert_eq!(
            egress_path(&src, &[app(vec![tcp(6379, 6379, &["sg-redis"], &[])])], to, 6379, &names),
            SgPath::Allowed { via: "sg-app lets 6379 out to sg-redis".into() }
        );
        // Only IPv6 out, with the endpoint's address unknown: taken as IPv4, so not out.
        assert!(!egress_path(&src, &[app(vec![GroupRule::all_traffic("::/0")])], to, 6379, &names).is_allowed());
    }

    #[test]
    fn no_outbound_rule_for_the_port_blocks_without_a_fix() {
        let sgs = vec!["sg-app".to_string()];
        let redis = vec!["sg-redis".to_string()];
        let to = Destination { group_ids: &redis, addresses: Addresses::Found(&[]) };
        let src = src(&sgs, Some("10.0.1.5"), &[]);
        let https_only = app(vec![tcp(443, 443, &[], &["0.0.0.0/0"])]);
        assert_eq!(
            egress_path(&src, &[https_only], to, 6379, &GroupNames::new()),
            SgPath::Blocked {
                reason: "no outbound rule lets 6379 out of instance i-1's groups: sg-app; fix by hand: allow 6379 out to sg-redis on sg-app".into(),
                fix: None
            }
        );
        let other_group = app(vec![tcp(6379, 6379, &["sg-elsewhere"], &[])]);
        assert!(matches!(
            egress_path(&src, &[other_group], to, 6379, &GroupNames::new()),
            SgPath::Blocked { fix: None, .. }
        ));
    }

    #[test]
    fn a_narrow_cidr_must_hold_every_address_of_the_endpoints_interfaces() {
        let sgs = vec!["sg-app".to_string()];
        let redis = vec!["sg-redis".to_string()];
        let src = src(&sgs, Some("10.0.1.5"), &[]);
        let vpc_only = [app(vec![tcp(6379, 6379, &[], &["10.0.0.0/16"])])];
        let names = GroupNames::new();
        let inside = vec!["10.0.3.7".to_string(), "10.0.4.8".to_string()];
        let path = egress_path(
            &src,
            &vpc_only,
            Destination { group_ids: &redis, addresses: Addresses::Found(&inside) },
            6379,
            &names,
        );
        assert_eq!(
            path,
            SgPath::Allowed { via: "sg-app lets 6379 out to 10.0.0.0/16 (holds 10.0.3.7, 10.0.4.8)".into() }
        );
        let one_outside = vec!["10.0.3.7".to_string(), "10.1.0.9".to_string()];
        let path = egress_path(
            &src,
            &vpc_only,
            Destination { group_ids: &redis, addresses: Addresses::Found(&one_outside) },
            6379,
            &names,
        );
        // Some held, some not: the interfaces may not all be nodes, so not judged.
        let SgPath::Unknown { reason } = path else { panic!("expected unknown, got {path:?}") };
        assert_eq!(
            reason,
            "sg-app lets 6379 out to 10.0.0.0/16 (holds 10.0.3.7), but no outbound rule lets 6379 out to 10.1.0.9 (interfaces in the endpoint's groups sg-redis, which may not all be its nodes)"
        );
        let all_outside = vec!["10.1.0.9".to_string()];
        let path = egress_path(
            &src,
            &vpc_only,
            Destination { group_ids: &redis, addresses: Addresses::Found(&all_outside) },
            6379,
            &names,
        );
        let SgPath::Blocked { reason, fix: None } = path else { panic!("expected blocked, got {path:?}") };
        assert_eq!(
            reason,
            "no outbound rule lets 6379 out to 10.1.0.9 (in the endpoint's groups sg-redis) from instance i-1's groups: sg-app; fix by hand: allow 6379 out to sg-redis on sg-app"
        );
        // Where the endpoint is not known, a narrow rule proves nothing either way.
        let path = egress_path(
            &src,
            &vpc_only,
            Destination { group_ids: &redis, addresses: Addresses::Found(&[]) },
            6379,
            &names,
        );
        assert!(matches!(path, SgPath::Unknown { .. }), "{path:?}");
        let path = egress_path(
            &src,
            &vpc_only,
            Destination { group_ids: &redis, addresses: Addresses::Unread("AccessDenied") },
            6379,
            &names,
        );
        let SgPath::Unknown { reason } = path else { panic!("expected unknown") };
        assert!(reason.contains("could not be read"), "{reason}");
    }

    #[test]
    fn an_instance_group_not_read_leaves_the_way_out_unknown() {
        let sgs = vec!["sg-app".to_string(), "sg-extra".to_string()];
        let redis = vec!["sg-redis".to_string()];
        let to = Destination { group_ids: &redis, addresses: Addresses::Found(&[]) };
        let path = egress_path(&src(&sgs, None, &[]), &[app(vec![])], to, 6379, &GroupNames::new());
        assert!(matches!(path, SgPath::Unknown { .. }), "{path:?}");
    }

    #[test]
    fn both_ways_keeps_the_inbound_fix_only_when_the_way_out_is_open() {
        let fix = MissingRule { group_id: "sg-r".into(), port: 6379, from_group_id: "sg-app".into() };
        let blocked_in = SgPath::Blocked { reason: "in".into(), fix: Some(fix.clone()) };
        let open = |v: &str| SgPath::Allowed { via: v.into() };
        assert_eq!(both_ways(blocked_in.clone(), open("out")), blocked_in);
        assert_eq!(
            both_ways(blocked_in.clone(), SgPath::Blocked { reason: "shut".into(), fix: None }),
            SgPath::Blocked { reason: "in; out: BLOCKED: shut".into(), fix: None }
        );
        assert_eq!(
            both_ways(blocked_in, SgPath::Unknown { reason: "?".into() }),
            SgPath::Blocked { reason: "in; out: unknown: ?".into(), fix: None }
        );
        assert_eq!(
            both_ways(open("in"), SgPath::Blocked { reason: "shut".into(), fix: None }),
            SgPath::Blocked { reason: "out: shut".into(), fix: None }
        );
        assert_eq!(both_ways(open("in"), open("out")), open("in; out"));
        assert!(matches!(both_ways(open("in"), SgPath::Unknown { reason: "?".into() }), SgPath::Unknown { .. }));
    }

    #[test]
    fn where_no_interface_is_found_the_way_out_to_everywhere_says_it_took_the_endpoint_as_ipv4() {
        let sgs = vec!["sg-app".to_string()];
        let redis = vec!["sg-redis".to_string()];
        let path = egress_path(
            &src(&sgs, Some("10.0.1.5"), &[]),
            &[app(vec![GroupRule::all_traffic("0.0.0.0/0")])],
            Destination { group_ids: &redis, addresses: Addresses::Unread("AccessDenied") },
            6379,
            &GroupNames::new(),
        );
        assert_eq!(
            path,
            SgPath::Allowed {
                via: "sg-app lets 6379 out to 0.0.0.0/0 (the endpoint taken as IPv4: the endpoint's network interfaces could not be read (AccessDenied))".into()
            }
        );
    }

    #[test]
    fn the_instances_groups_together_and_an_outbound_prefix_list_can_hold_the_endpoint() {
        let sgs = vec!["sg-app".to_string(), "sg-extra".to_string()];
        let redis = vec!["sg-redis".to_string()];
        let nodes = vec!["10.0.3.7".to_string(), "10.9.0.4".to_string()];
        let to = Destination { group_ids: &redis, addresses: Addresses::Found(&nodes) };
        let mut listed = tcp(6379, 6379, &[], &[]);
        listed.protocol = "6".into();
        listed.prefix_lists = vec![PrefixList { id: "pl-9".into(), cidrs: vec!["10.9.0.0/16".into()], unread: None }];
        let extra = SecurityGroup { id: "sg-extra".into(), egress: vec![listed], ..app(vec![]) };
        let groups = [app(vec![tcp(6379, 6379, &[], &["10.0.3.0/24"])]), extra];
        let source = src(&sgs, Some("10.0.1.5"), &[]);
        assert_eq!(
            egress_path(&source, &groups, to, 6379, &GroupNames::new()),
            SgPath::Allowed {
                via: "sg-app lets 6379 out to 10.0.3.0/24 (holds 10.0.3.7), sg-extra lets 6379 out to prefix list pl-9 (10.9.0.0/16) (holds 10.9.0.4)".into()
            }
        );
        // The same list unread: what it might hold is not judged blocked.
        let unread = PrefixList { id: "pl-9".into(), cidrs: vec![], unread: Some("AccessDenied".into()) };
        let mut groups = groups;
        groups[1].egress[0].prefix_lists = vec![unread];
        let path = egress_path(&source, &groups, to, 6379, &GroupNames::new());
        assert_eq!(
            path,
            SgPath::Unknown { reason: "prefix list pl-9 of an outbound rule could not be read: AccessDenied".into() }
        );
    }

    #[test]
    fn the_instances_own_interface_in_the_endpoints_group_is_not_where_its_traffic_goes() {
        let sgs = vec!["sg-app".to_string()];
        let shared = vec!["sg-app".to_string()];
        let nodes = vec!["10.0.1.5".to_string(), "10.0.3.7".to_string()];
        let only_the_node = [app(vec![tcp(6379, 6379, &[], &["10.0.3.7/32"])])];
        let path = egress_path(
            &src(&sgs, Some("10.0.1.5"), &[]),
            &only_the_node,
            Destination { group_ids: &shared, addresses: Addresses::Found(&nodes) },
            6379,
            &GroupNames::new(),
        );
        assert_eq!(path, SgPath::Allowed { via: "sg-app lets 6379 out to 10.0.3.7/32 (holds 10.0.3.7)".into() });
        // Its own address alone: nothing else is known of where the endpoint is.
        let mine = vec!["10.0.1.5".to_string()];
        let path = egress_path(
            &src(&sgs, Some("10.0.1.5"), &[]),
            &only_the_node,
            Destination { group_ids: &shared, addresses: Addresses::Found(&mine) },
            6379,
            &GroupNames::new(),
        );
        let SgPath::Unknown { reason } = path else { panic!("expected unknown, got {path:?}") };
        assert!(reason.ends_with("no network interface besides the instance's own was found in the endpoint's groups to say whether that holds the endpoint"), "{reason}");
    }

    #[test]
    fn a_blocked_way_out_names_the_rule_to_add_by_hand() {
        let sgs = vec!["sg-0c33".to_string()];
        let redis = vec!["sg-0a00".to_string()];
        let names: GroupNames = [("sg-0a00", "redis"), ("sg-0c33", "app")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let group = SecurityGroup { id: "sg-0c33".into(), ..app(vec![]) };
        let path = egress_path(
            &src(&sgs, None, &[]),
            &[group],
            Destination { group_ids: &redis, addresses: Addresses::Found(&[]) },
            6379,
            &names,
        );
        assert_eq!(
            path,
            SgPath::Blocked {
                reason: "no outbound rule lets 6379 out of instance i-1's groups: sg-0c33 (app); fix by hand: allow 6379 out to sg-0a00 (redis) on sg-0c33 (app)".into(),
                fix: None
            }
        );
    }
}
