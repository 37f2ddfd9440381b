//! The sandbox's own reading of two AWS rules: security groups (ingress and
//! egress) and Route53 weighted routing. Deliberately simple, and written apart from
//! `crate::analysis` (nothing here calls it): the sandbox plays AWS, so an
//! end-to-end test checks cutover against an independent referee instead of
//! agreeing with it by construction.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One permission of a security group, inbound or outbound, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permission {
    /// `tcp`, `udp`, `icmp` or `-1` (every protocol and port).
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    /// The other end's security-group ids (UserIdGroupPairs): sources of
    /// an inbound permission, destinations of an outbound one.
    pub peer_groups: Vec<String>,
    /// The other end's IPv4 CIDRs (IpRanges).
    pub cidrs: Vec<String>,
    /// The other end's IPv6 CIDRs (Ipv6Ranges).
    pub ipv6_cidrs: Vec<String>,
    /// Every CIDR held by the managed prefix lists the permission names
    /// (PrefixListIds), as GetManagedPrefixListEntries gives them: IPv4 or IPv6.
    pub prefix_list_cidrs: Vec<String>,
}

/// A security group: its id and permissions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub id: String,
    pub inbound: Vec<Permission>,
    pub outbound: Vec<Permission>,
}

/// The instance knocking on the endpoint's port.
#[derive(Debug, Clone, Copy)]
pub struct Knock<'a> {
    pub security_groups: &'a [String],
    pub private_ip: Option<&'a str>,
    pub ipv6_addresses: &'a [String],
    pub port: u16,
}

impl Permission {
    fn covers_port(&self, port: u16) -> bool {
        match self.protocol.as_str() {
            "-1" => true,
            "tcp" => match (self.from_port, self.to_port) {
                (Some(from), Some(to)) => from <= i32::from(port) && i32::from(port) <= to,
                // EC2 always gives tcp rules a range; without one, admit nothing.
                _ => false,
            },
            _ => false,
        }
    }

    fn admits_source(&self, knock: &Knock) -> bool {
        let by_group = self.peer_groups.iter().any(|g| knock.security_groups.contains(g));
        let v4 = |c: &String| knock.private_ip.is_some_and(|ip| ipv4_in_cidr(ip, c));
        let v6 = |c: &String| knock.ipv6_addresses.iter().any(|ip| ipv6_in_cidr(ip, c));
        let by_address = self.cidrs.iter().any(v4) || self.ipv6_cidrs.iter().any(v6);
        // A prefix list may hold either family; each entry matches its own.
        let by_list = self.prefix_list_cidrs.iter().any(|c| v4(c) || v6(c));
        by_group || by_address || by_list
    }
}

/// Whether some group of the endpoint has an inbound permission covering the
/// port whose source is one of the instance's groups or a CIDR holding its
/// private IP. Security groups only allow; no rule means no path.
pub fn reaches(endpoint_groups: &[Group], knock: &Knock) -> bool {
    endpoint_groups.iter().flat_map(|g| &g.inbound).any(|p| p.covers_port(knock.port) && p.admits_source(knock))
}

/// Whether the instance's groups let the port out to the endpoint: one
/// outbound permission covering the port names one of the endpoint's groups,
/// or every IPv4 address of the interfaces in those groups (`addresses`) is
/// held by such a permission's CIDRs: the sandbox takes every interface in
/// the endpoint's groups as a node of its Redis (a test makes them so). With
/// no interface known, the endpoint has no address to hold and only
/// `0.0.0.0/0` reaches it.
pub fn lets_out(instance_groups: &[Group], endpoint_group_ids: &[String], addresses: &[String], port: u16) -> bool {
    let out: Vec<&Permission> =
        instance_groups.iter().flat_map(|g| &g.outbound).filter(|p| p.covers_port(port)).collect();
    if out.iter().any(|p| p.peer_groups.iter().any(|g| endpoint_group_ids.contains(g))) {
        return true;
    }
    let held = |ip: &str| out.iter().any(|p| p.cidrs.iter().chain(&p.prefix_list_cidrs).any(|c| ipv4_in_cidr(ip, c)));
    if addresses.is_empty() { held("0.0.0.0") && held("255.255.255.255") } else { addresses.iter().all(|a| held(a)) }
}

/// `10.42.1.7` in `10.42.0.0/16`, by hand: both as 32-bit numbers, compared
/// on the prefix's leading bits. Anything unparsable contains nothing.
fn ipv4_in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((network, prefix)) = cidr.split_once('/') else { return false };
    let (Ok(ip), Ok(network), Ok(prefix)) =
        (ip.parse::<Ipv4Addr>(), network.parse::<Ipv4Addr>(), prefix.parse::<u32>())
    else {
        return false;
    };
    if prefix > 32 {
        return false;
    }
    // Shifting a u32 by 32 overflows: a /0 keeps no bits.
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

/// `2001:db8::7` in `2001:db8::/32`, the same way on 128 bits. An IPv4
/// address or network is never IPv6 here.
fn ipv6_in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((network, prefix)) = cidr.split_once('/') else { return false };
    let (Ok(ip), Ok(network), Ok(prefix)) =
        (ip.parse::<Ipv6Addr>(), network.parse::<Ipv6Addr>(), prefix.parse::<u32>())
    else {
        return false;
    };
    if prefix > 128 {
        return false;
    }
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// A weighted record as Route53 chooses among them: its weight (`None`: no
/// such record) and whether Route53 counts it healthy (its health check, and
/// for an alias evaluating target health, its target's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedRecord {
    pub weight: Option<u8>,
    pub healthy: bool,
}

/// Each weighted record's share of queries, by the Route53 Developer Guide
/// ("Health checks and weighted routing", "How Route 53 chooses records when
/// health checking is configured"): the healthy records above 0, by weight;
/// with none, the healthy records at 0, equally; with none healthy at all,
/// every record as if healthy (above 0 by weight, else all at 0 equally).
/// A record that does not exist gets nothing; with none the name does not
/// resolve.
pub fn route53_shares(records: &[WeightedRecord]) -> Vec<f64> {
    let present = |r: &WeightedRecord| r.weight.is_some();
    let above = |r: &WeightedRecord| r.weight.is_some_and(|w| w > 0);
    let zero = |r: &WeightedRecord| r.weight == Some(0);
    let picked: Vec<bool> = if records.iter().any(|r| above(r) && r.healthy) {
        records.iter().map(|r| above(r) && r.healthy).collect()
    } else if records.iter().any(|r| zero(r) && r.healthy) {
        records.iter().map(|r| zero(r) && r.healthy).collect()
    } else if records.iter().any(above) {
        records.iter().map(above).collect()
    } else {
        records.iter().map(present).collect()
    };
    let chosen = || records.iter().zip(&picked).filter(|(_, p)| **p).map(|(r, _)| r);
    let sum: f64 = chosen().filter_map(|r| r.weight).map(f64::from).sum();
    let n = chosen().count();
    records
        .iter()
        .zip(&picked)
        .map(|(r, p)| match (p, r.weight) {
            (false, _) | (_, None) => 0.0,
            (true, Some(_)) if sum == 0.0 => 1.0 / n as f64,
            (true, Some(w)) => f64::from(w) / sum,
        })
        .collect()
}

/// A Route53 health check's status from its checkers' latest reports: healthy
/// when more than 18% of them report healthy; a disabled check is healthy
/// whatever they find, an inverted one the opposite of what they find, and
/// one both disabled and inverted never healthy (HealthCheckConfig in the
/// Route53 API Reference: invert a check, not disable it, to stop routing).
pub fn health_check_healthy(disabled: bool, inverted: bool, reports_ok: usize, reports: usize) -> bool {
    match (disabled, inverted) {
        (true, inverted) => !inverted,
        (false, inverted) => (reports_ok * 100 > reports * 18) != inverted,
    }
}

/// An alias to an application load balancer, evaluating target health, as
/// Route53 judges it (AliasTarget, EvaluateTargetHealth, in the Route53 API
/// Reference): healthy when every target group its listeners route to has a
/// healthy target. A group with no registered target counts as unhealthy, as
/// the current text says (older copies said healthy), and so does a load
/// balancer routing to no group: it has nothing to serve with.
pub fn alb_alias_healthy(groups: &[(usize, usize)]) -> bool {
    !groups.is_empty() && groups.iter().all(|&(registered, healthy)| registered > 0 && healthy > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(from: i32, to: i32) -> Permission {
        Permission { protocol: "tcp".into(), from_port: Some(from), to_port: Some(to), ..Permission::default() }
    }

    fn redis_group(inbound: Vec<Permission>) -> Vec<Group> {
        vec![Group { id: "sg-redis".into(), inbound, outbound: vec![] }]
    }

    fn knock<'a>(groups: &'a [String], ip: Option<&'a str>, port: u16) -> Knock<'a> {
        Knock { security_groups: groups, private_ip: ip, ipv6_addresses: &[], port }
    }

    #[test]
    fn a_rule_from_the_instances_group_on_the_port_admits_it() {
        let app = vec!["sg-app".to_string()];
        let groups = redis_group(vec![Permission { peer_groups: vec!["sg-app".into()], ..tcp(6379, 6379) }]);
        assert!(reaches(&groups, &knock(&app, None, 6379)));
        // A range covers the ports inside it, ends included.
        let range = redis_group(vec![Permission { peer_groups: vec!["sg-app".into()], ..tcp(6000, 6379) }]);
        assert!(reaches(&range, &knock(&app, None, 6000)));
        assert!(!reaches(&range, &knock(&app, None, 6380)));
    }

    #[test]
    fn another_group_another_port_or_protocol_is_blocked() {
        let batch = vec!["sg-batch".to_string()];
        let app = vec!["sg-app".to_string()];
        let groups = redis_group(vec![Permission { peer_groups: vec!["sg-app".into()], ..tcp(6379, 6379) }]);
        assert!(!reaches(&groups, &knock(&batch, Some("10.42.1.7"), 6379)), "the instance's group is not a source");
        assert!(!reaches(&groups, &knock(&app, None, 6380)), "another port");
        let udp = redis_group(vec![Permission {
            protocol: "udp".into(),
            from_port: Some(6379),
            to_port: Some(6379),
            peer_groups: vec!["sg-app".into()],
            ..Permission::default()
        }]);
        assert!(!reaches(&udp, &knock(&app, None, 6379)), "udp does not carry Redis");
        assert!(!reaches(&[], &knock(&app, None, 6379)), "no group, no rule");
        assert!(!reaches(&redis_group(vec![]), &knock(&app, None, 6379)), "a group with no inbound rule");
    }

    #[test]
    fn protocol_all_covers_every_port() {
        let app = vec!["sg-app".to_string()];
        let all = redis_group(vec![Permission {
            protocol: "-1".into(),
            peer_groups: vec!["sg-app".into()],
            ..Permission::default()
        }]);
        assert!(reaches(&all, &knock(&app, None, 6379)));
        assert!(reaches(&all, &knock(&app, None, 1)));
    }

    #[test]
    fn a_cidr_holding_the_private_ip_admits_it() {
        let none: Vec<String> = vec![];
        let cidr = |c: &str| redis_group(vec![Permission { cidrs: vec![c.into()], ..tcp(6379, 6379) }]);
        assert!(reaches(&cidr("10.42.0.0/16"), &knock(&none, Some("10.42.1.7"), 6379)));
        assert!(reaches(&cidr("10.42.1.7/32"), &knock(&none, Some("10.42.1.7"), 6379)));
        assert!(reaches(&cidr("0.0.0.0/0"), &knock(&none, Some("10.42.1.7"), 6379)));
        assert!(!reaches(&cidr("10.43.0.0/16"), &knock(&none, Some("10.42.1.7"), 6379)), "another network");
        assert!(!reaches(&cidr("10.42.1.8/32"), &knock(&none, Some("10.42.1.7"), 6379)), "another host");
        assert!(!reaches(&cidr("10.42.0.0/16"), &knock(&none, None, 6379)), "no private IP known");
        assert!(!reaches(&cidr("10.42.0.0/33"), &knock(&none, Some("10.42.1.7"), 6379)), "not a prefix");
        assert!(!reaches(&cidr("10.42.0.0"), &knock(&none, Some("10.42.1.7"), 6379)), "not a CIDR");
    }

    #[test]
    fn cidr_match_by_hand() {
        assert!(ipv4_in_cidr("192.168.5.130", "192.168.5.128/25"));
        assert!(!ipv4_in_cidr("192.168.5.127", "192.168.5.128/25"));
        assert!(ipv4_in_cidr("8.8.8.8", "0.0.0.0/0"));
        assert!(!ipv4_in_cidr("not-an-ip", "0.0.0.0/0"));
    }

    #[test]
    fn a_prefix_list_admits_the_addresses_its_entries_hold() {
        let none: Vec<String> = vec![];
        let listed = redis_group(vec![Permission {
            prefix_list_cidrs: vec!["10.42.1.7/32".into(), "10.42.9.0/24".into(), "2001:db8::/32".into()],
            ..tcp(6379, 6379)
        }]);
        assert!(reaches(&listed, &knock(&none, Some("10.42.1.7"), 6379)));
        assert!(reaches(&listed, &knock(&none, Some("10.42.9.200"), 6379)));
        assert!(!reaches(&listed, &knock(&none, Some("10.42.1.8"), 6379)), "not in the list");
        assert!(!reaches(&listed, &knock(&none, Some("10.42.1.7"), 6380)), "another port");
        let v6 = vec!["2001:db8:5::1".to_string()];
        assert!(reaches(&listed, &Knock { security_groups: &none, private_ip: None, ipv6_addresses: &v6, port: 6379 }));
    }

    #[test]
    fn ipv6_ranges_hold_ipv6_addresses_only() {
        let none: Vec<String> = vec![];
        let v6 = vec!["2001:db8:1::7".to_string()];
        let six = |c: &str| redis_group(vec![Permission { ipv6_cidrs: vec![c.into()], ..tcp(6379, 6379) }]);
        let with_v6 = Knock { security_groups: &none, private_ip: Some("10.42.1.7"), ipv6_addresses: &v6, port: 6379 };
        assert!(reaches(&six("2001:db8:1::/48"), &with_v6));
        assert!(!reaches(&six("2001:db8:2::/48"), &with_v6));
        assert!(!reaches(&six("::/0"), &knock(&none, Some("10.42.1.7"), 6379)), "an IPv4-only instance");
        let v4_rule = redis_group(vec![Permission { cidrs: vec!["0.0.0.0/0".into()], ..tcp(6379, 6379) }]);
        let only_v6 = Knock { private_ip: None, ..with_v6 };
        assert!(!reaches(&v4_rule, &only_v6), "an IPv4 range never holds an IPv6 address");
        assert!(ipv6_in_cidr("::1", "::/0"));
        assert!(!ipv6_in_cidr("10.0.0.1", "::/0"));
        assert!(!ipv6_in_cidr("::1", "::/129"));
    }

    fn up(weights: &[Option<u8>]) -> Vec<WeightedRecord> {
        weights.iter().map(|&weight| WeightedRecord { weight, healthy: true }).collect()
    }

    /// Weights with each record's health: `(weight, healthy)`.
    fn records(rs: &[(u8, bool)]) -> Vec<WeightedRecord> {
        rs.iter().map(|&(w, healthy)| WeightedRecord { weight: Some(w), healthy }).collect()
    }

    #[test]
    fn shares_are_weight_over_sum() {
        assert_eq!(route53_shares(&up(&[Some(90), Some(10)])), [0.9, 0.1]);
        let zero_beside = route53_shares(&up(&[Some(255), Some(0)]));
        assert_eq!(zero_beside, [1.0, 0.0], "weight 0 gets nothing while another is above 0");
        assert_eq!(route53_shares(&up(&[Some(1), Some(3)])), [0.25, 0.75]);
        assert_eq!(route53_shares(&up(&[Some(50), Some(50), Some(100)])), [0.25, 0.25, 0.5]);
    }

    #[test]
    fn a_record_that_does_not_exist_gets_nothing() {
        let only = route53_shares(&up(&[Some(0), None]));
        assert_eq!(only, [1.0, 0.0], "the one record there is answers every query");
        assert_eq!(route53_shares(&up(&[None, Some(10)])), [0.0, 1.0]);
        assert_eq!(route53_shares(&up(&[None, None])), [0.0, 0.0], "no record: the name does not resolve");
    }

    #[test]
    fn all_zero_weights_split_equally() {
        assert_eq!(route53_shares(&up(&[Some(0), Some(0)])), [0.5, 0.5]);
        assert_eq!(route53_shares(&up(&[Some(0); 4])), [0.25; 4]);
        assert!(route53_shares(&[]).is_empty());
    }

    /// The Developer Guide's table for weights 1, 1 and 0, every record with
    /// a health check ("Health checks and weighted routing").
    #[test]
    fn unhealthy_records_get_nothing_as_the_developer_guide_tabulates() {
        let (h, u) = (true, false);
        let table = [
            ([h, h, h], [0.5, 0.5, 0.0]),
            ([h, h, u], [0.5, 0.5, 0.0]),
            ([h, u, h], [1.0, 0.0, 0.0]),
            ([u, h, u], [0.0, 1.0, 0.0]),
            ([u, u, h], [0.0, 0.0, 1.0]),
            ([u, u, u], [0.5, 0.5, 0.0]),
        ];
        for (health, shares) in table {
            let rs = records(&[(1, health[0]), (1, health[1]), (0, health[2])]);
            assert_eq!(route53_shares(&rs), shares, "health {health:?}");
        }
        // Two records at 0, one healthy: it answers alone.
        assert_eq!(route53_shares(&records(&[(0, false), (0, true)])), [0.0, 1.0]);
        // A missing record is never healthy enough to answer.
        let missing =
            [WeightedRecord { weight: None, healthy: true }, WeightedRecord { weight: Some(5), healthy: false }];
        assert_eq!(route53_shares(&missing), [0.0, 1.0], "the only record, unhealthy, answers as if healthy");
    }

    #[test]
    fn a_health_check_is_healthy_above_18_percent_of_its_checkers_unless_disabled_or_inverted() {
        assert!(health_check_healthy(false, false, 1, 5), "20% > 18%");
        assert!(!health_check_healthy(false, false, 0, 1));
        assert!(!health_check_healthy(false, false, 0, 0), "no checker has reported");
        assert!(!health_check_healthy(false, true, 1, 1), "inverted");
        assert!(health_check_healthy(false, true, 0, 1), "inverted");
        assert!(health_check_healthy(true, false, 0, 1), "disabled: healthy whatever its checkers find");
        assert!(!health_check_healthy(true, true, 1, 1), "disabled and inverted: never healthy");
    }

    #[test]
    fn an_alb_alias_is_healthy_when_each_routed_group_has_a_healthy_target() {
        assert!(alb_alias_healthy(&[(2, 1)]));
        assert!(alb_alias_healthy(&[(2, 1), (1, 1)]));
        assert!(!alb_alias_healthy(&[(2, 1), (1, 0)]), "one routed group with none healthy");
        assert!(!alb_alias_healthy(&[(2, 1), (0, 0)]), "an empty group counts as unhealthy");
        assert!(!alb_alias_healthy(&[]), "routing to no group");
    }

    #[test]
    fn outbound_to_everywhere_or_to_the_endpoints_group_lets_out_and_nothing_else() {
        let redis = vec!["sg-redis".to_string()];
        let app = |outbound: Vec<Permission>| vec![Group { id: "sg-app".into(), inbound: vec![], outbound }];
        let all = Permission { protocol: "-1".into(), cidrs: vec!["0.0.0.0/0".into()], ..Default::default() };
        assert!(lets_out(&app(vec![all]), &redis, &[], 6379), "the default outbound rule");
        let to_group = Permission { peer_groups: redis.clone(), ..tcp(6379, 6379) };
        assert!(lets_out(&app(vec![to_group]), &redis, &[], 6379));
        let to_other = Permission { peer_groups: vec!["sg-other".into()], ..tcp(6379, 6379) };
        assert!(!lets_out(&app(vec![to_other]), &redis, &[], 6379));
        let https = Permission { cidrs: vec!["0.0.0.0/0".into()], ..tcp(443, 443) };
        assert!(!lets_out(&app(vec![https]), &redis, &[], 6379), "another port");
        let narrow = Permission { cidrs: vec!["10.42.0.0/16".into()], ..tcp(6379, 6379) };
        assert!(!lets_out(&app(vec![narrow.clone()]), &redis, &[], 6379), "no interface: no address to hold");
        assert!(lets_out(&app(vec![narrow.clone()]), &redis, &["10.42.1.9".into(), "10.42.2.9".into()], 6379));
        assert!(!lets_out(&app(vec![narrow]), &redis, &["10.42.1.9".into(), "10.43.0.1".into()], 6379), "one outside");
        assert!(!lets_out(&app(vec![]), &redis, &[], 6379), "no outbound rule");
        assert!(!lets_out(&[], &redis, &[], 6379), "no group");
    }
}
