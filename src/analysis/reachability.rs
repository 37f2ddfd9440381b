//! Security-group path from an instance to a Redis endpoint: is there an
//! ingress rule on one of the endpoint's groups that admits the instance?

use std::net::IpAddr;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub ingress: Vec<IngressRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressRule {
    /// `tcp`, `udp`, `icmp` or `-1` (all).
    pub protocol: String,
    pub from_port: Option<u16>,
    pub to_port: Option<u16>,
    /// Source security-group ids.
    pub groups: Vec<String>,
    /// Source CIDRs: IPv4 (`IpRanges`) and IPv6 (`Ipv6Ranges`) alike; each
    /// only ever matches an address of its own family.
    pub cidrs: Vec<String>,
    /// Source managed prefix lists (`PrefixListIds`) with the CIDRs they hold.
    pub prefix_lists: Vec<PrefixList>,
}

/// A managed prefix list as a rule's source: its CIDRs count like the rule's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixList {
    pub id: String,
    pub cidrs: Vec<String>,
}

impl IngressRule {
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
    /// The rule that lets the instance in.
    Allowed { via: String },
    /// Why not, naming the rule that is missing.
    Blocked { reason: String, fix: Option<MissingRule> },
    /// The endpoint names no security groups, or they could not be found.
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

/// As `sg_path`, naming groups in messages where `names` knows them.
pub fn sg_path_named(source: &Source, endpoint_groups: &[SecurityGroup], port: u16, names: &GroupNames) -> SgPath {
    let label = |id: &str| match names.get(id) {
        Some(n) if !n.is_empty() => format!("{id} ({n})"),
        _ => id.to_string(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, rules: Vec<IngressRule>) -> SecurityGroup {
        SecurityGroup { id: id.into(), name: id.into(), ingress: rules }
    }
    fn tcp(from: u16, to: u16, groups: &[&str], cidrs: &[&str]) -> IngressRule {
        IngressRule {
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

    #[test]
    fn a_prefix_list_admits_the_addresses_it_holds_and_names_itself() {
        let sgs = vec!["sg-batch".to_string()];
        let mut r = tcp(6379, 6379, &[], &[]);
        r.prefix_lists =
            vec![PrefixList { id: "pl-1".into(), cidrs: vec!["10.9.0.0/16".into(), "10.0.1.0/24".into()] }];
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
}
