//! Route53 weighted-record arithmetic.

/// Share of traffic (0.0–1.0) each record gets. When every weight is 0,
/// Route53 splits traffic equally.
pub fn shares(weights: &[u8]) -> Vec<f64> {
    let total: u32 = weights.iter().map(|&w| u32::from(w)).sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if total == 0 {
        return vec![1.0 / weights.len() as f64; weights.len()];
    }
    weights.iter().map(|&w| f64::from(w) / f64::from(total)).collect()
}

/// Why a dual-stack group's record types (A beside AAAA) do not give the
/// sides the same weights, if they do not: IPv4 and IPv6 clients are then
/// split otherwise, and one pair read alone hides the other. `sides` names
/// the sides; `by_type` is each type with its weight of each side, in that
/// order (None: no record of that type), the first type first.
pub fn types_differ(sides: &[&str], by_type: &[(&str, Vec<Option<u8>>)]) -> Option<String> {
    let (first, others) = by_type.split_first()?;
    let differ: Vec<&(&str, Vec<Option<u8>>)> = others.iter().filter(|(_, w)| *w != first.1).collect();
    if differ.is_empty() {
        return None;
    }
    let say = |(t, w): &(&str, Vec<Option<u8>>)| {
        let each: Vec<String> = sides
            .iter()
            .zip(w)
            .map(|(s, w)| format!("{s} {}", w.map_or("none".to_string(), |w| w.to_string())))
            .collect();
        format!("{t} {}", each.join(", "))
    };
    Some(format!(
        "the record types weigh the sides differently ({}; {}): IPv4 and IPv6 clients are split otherwise",
        say(first),
        differ.iter().map(|d| say(d)).collect::<Vec<_>>().join("; ")
    ))
}

/// Weights that put `percent` of traffic on the new side: (old, new).
pub fn weights_for_percent(percent: u8) -> (u8, u8) {
    let p = percent.min(100);
    (100 - p, p)
}

/// A target group an ALB routes to, as Route53 weighs it for an alias
/// evaluating target health.
#[derive(Debug, Clone, Copy)]
pub struct RoutedGroup<'a> {
    pub name: &'a str,
    pub healthy: usize,
    pub registered: usize,
    /// A DNS failover threshold other than AWS's default, as set.
    pub dns_failover_threshold: Option<&'a str>,
}

/// Route53's verdict on an ALB for an alias evaluating target health.
#[derive(Debug, Clone, PartialEq)]
pub enum AlbHealth {
    Healthy,
    /// Which group has no healthy target.
    Unhealthy(String),
    /// Why cutover cannot tell.
    Unknown(String),
}

/// Route53 counts an ALB healthy for an alias evaluating target health when
/// every target group holding targets has a healthy one, and some target is
/// healthy (AliasTarget). `groups` are those it routes to that the runbook
/// lists, `unlisted` the names of those it routes to that the runbook does
/// not list. Unknown: a group not read, none at all, a DNS failover
/// threshold (AWS applies it zone by zone, to zones cutover does not
/// count), or an empty group beside healthy ones (AWS documents both that
/// it does not count and that it is unhealthy).
pub fn alb_healthy(groups: &[RoutedGroup<'_>], unlisted: &[String]) -> AlbHealth {
    if !unlisted.is_empty() {
        return AlbHealth::Unknown(format!(
            "it also routes to target group {}, which the runbook does not list, and Route53 judges a load \
             balancer by every target group it routes to; add it to target_groups",
            unlisted.join(", ")
        ));
    }
    if groups.is_empty() {
        return AlbHealth::Unknown("it routes to none of the target groups the runbook lists".into());
    }
    if let Some(g) = groups.iter().find(|g| g.dns_failover_threshold.is_some()) {
        return AlbHealth::Unknown(format!(
            "target group {} sets a DNS failover threshold ({}), which AWS applies zone by zone; cutover judges \
             only the default (one healthy target): set target_group_health.dns_failover.minimum_healthy_targets \
             .count to 1 and .percentage to off for the cutover",
            g.name,
            g.dns_failover_threshold.unwrap_or_default()
        ));
    }
    let named = |names: Vec<&str>| match names.len() {
        1 => format!("target group {}", names[0]),
        _ => format!("target groups {}", names.join(", ")),
    };
    let bare: Vec<&str> = groups.iter().filter(|g| g.registered > 0 && g.healthy == 0).map(|g| g.name).collect();
    if !bare.is_empty() {
        let verb = if bare.len() == 1 { "has" } else { "have" };
        return AlbHealth::Unhealthy(format!("{} {verb} no healthy target", named(bare)));
    }
    if groups.iter().all(|g| g.registered == 0) {
        let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
        let verb = if names.len() == 1 { "holds" } else { "hold" };
        return AlbHealth::Unhealthy(format!("{} {verb} no target", named(names)));
    }
    if let Some(g) = groups.iter().find(|g| g.registered == 0) {
        return AlbHealth::Unknown(format!(
            "target group {} holds no target, and AWS documents such a group both as not counted and as \
             unhealthy; register its targets, or stop routing to it, for the cutover",
            g.name
        ));
    }
    AlbHealth::Healthy
}

/// Whether an alias target's DNS name is the load balancer's (any case, a
/// trailing dot, or the `dualstack.` prefix an alias to an ALB may carry).
pub fn alias_names(target: &str, load_balancer_dns: &str) -> bool {
    let norm = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
    let (target, dns) = (norm(target), norm(load_balancer_dns));
    target == dns || target.strip_prefix("dualstack.") == Some(dns.as_str())
}

/// Whether `name` is an Elastic Load Balancing DNS name: an Application
/// or Classic Load Balancer's `<name>-<id>.<region>.elb.amazonaws.com`, or a
/// Network Load Balancer's `<name>-<id>.elb.<region>.amazonaws.com`
/// (`.com.cn` in China).
pub fn is_load_balancer_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let Some(rest) = name.strip_suffix(".amazonaws.com").or_else(|| name.strip_suffix(".amazonaws.com.cn")) else {
        return false;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        [.., _, "elb"] => true,
        [.., _, "elb", region] => !region.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types_that_weigh_the_sides_alike_say_nothing_and_otherwise_each_type_is_named() {
        let sides = ["old", "new"];
        let alike = [("A", vec![Some(90), Some(10)]), ("AAAA", vec![Some(90), Some(10)])];
        assert_eq!(types_differ(&sides, &alike), None);
        assert_eq!(types_differ(&sides, &alike[..1]), None, "one type");
        let edited = [("A", vec![Some(90), Some(10)]), ("AAAA", vec![Some(100), None])];
        assert_eq!(
            types_differ(&sides, &edited).as_deref(),
            Some(
                "the record types weigh the sides differently (A old 90, new 10; AAAA old 100, new none): IPv4 and \
                 IPv6 clients are split otherwise"
            )
        );
    }

    #[test]
    fn an_alb_is_healthy_to_route53_only_when_every_target_group_with_targets_has_a_healthy_one() {
        let g = |name: &'static str, healthy: usize, registered: usize| RoutedGroup {
            name,
            healthy,
            registered,
            dns_failover_threshold: None,
        };
        let health = |groups: &[RoutedGroup<'_>]| alb_healthy(groups, &[]);
        let unknown = |h: AlbHealth, says: &str| match h {
            AlbHealth::Unknown(why) => assert!(why.contains(says), "{why}"),
            other => panic!("{other:?}, not unknown ({says})"),
        };
        unknown(health(&[]), "routes to none of the target groups");
        assert_eq!(health(&[g("a", 2, 2), g("b", 1, 3)]), AlbHealth::Healthy);
        assert_eq!(
            health(&[g("a", 2, 2), g("b", 0, 2)]),
            AlbHealth::Unhealthy("target group b has no healthy target".into()),
            "one group with targets, none healthy"
        );
        unknown(health(&[g("a", 2, 2), g("b", 0, 0)]), "target group b holds no target, and AWS documents");
        assert_eq!(
            health(&[g("a", 0, 2), g("b", 0, 0)]),
            AlbHealth::Unhealthy("target group a has no healthy target".into())
        );
        assert_eq!(
            health(&[g("a", 0, 0), g("b", 0, 0)]),
            AlbHealth::Unhealthy("target groups a, b hold no target".into())
        );
        unknown(
            alb_healthy(&[g("a", 2, 2)], &["api".to_string()]),
            "also routes to target group api, which the runbook does not list",
        );
        let threshold = RoutedGroup { dns_failover_threshold: Some("count 2"), ..g("a", 2, 2) };
        unknown(health(&[threshold]), "target group a sets a DNS failover threshold (count 2)");
    }

    #[test]
    fn an_alias_names_its_load_balancer_with_or_without_dualstack_and_the_trailing_dot() {
        let lb = "shop-alb-1.eu-south-1.elb.amazonaws.com";
        assert!(alias_names("dualstack.Shop-ALB-1.eu-south-1.elb.amazonaws.com.", lb));
        assert!(alias_names("shop-alb-1.eu-south-1.elb.amazonaws.com", &format!("{lb}.")));
        assert!(!alias_names("dualstack.other-alb-1.eu-south-1.elb.amazonaws.com.", lb));
        assert!(!alias_names("x.shop-alb-1.eu-south-1.elb.amazonaws.com", lb));
        assert!(is_load_balancer_name("dualstack.Shop-ALB-1.eu-south-1.ELB.amazonaws.com."));
        assert!(is_load_balancer_name("shop-alb-1.cn-north-1.elb.amazonaws.com.cn"));
        assert!(is_load_balancer_name("shop-nlb-0123abcd.elb.eu-west-1.amazonaws.com"), "a Network Load Balancer's");
        assert!(is_load_balancer_name("shop-nlb-0123abcd.elb.cn-north-1.amazonaws.com.cn"));
        assert!(!is_load_balancer_name("elb.eu-west-1.amazonaws.com"), "the service's own endpoint");
        assert!(!is_load_balancer_name("shop.example.org"), "a name of one's own may lead anywhere");
        assert!(!is_load_balancer_name("elb.amazonaws.com.example.org"));
    }

    #[test]
    fn proportional_shares() {
        assert_eq!(shares(&[90, 10]), vec![0.9, 0.1]);
        assert_eq!(shares(&[255, 0]), vec![1.0, 0.0]);
        assert_eq!(shares(&[1, 3]), vec![0.25, 0.75]);
    }

    #[test]
    fn all_zero_splits_equally() {
        assert_eq!(shares(&[0, 0]), vec![0.5, 0.5]);
        assert_eq!(shares(&[0, 0, 0, 0]), vec![0.25; 4]);
        assert!(shares(&[]).is_empty());
    }

    #[test]
    fn percent_to_weights() {
        assert_eq!(weights_for_percent(30), (70, 30));
        assert_eq!(weights_for_percent(0), (100, 0));
        assert_eq!(weights_for_percent(100), (0, 100));
        assert_eq!(weights_for_percent(200), (0, 100));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use proptest::test_runner::{TestCaseError, TestRunner};

    use super::*;

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() })
    }

    #[test]
    fn shares_are_fractions_that_sum_to_one() {
        let cases = 1024;
        let mut all_zero = 0;
        let strategy = proptest::collection::vec(any::<u8>(), 1..8);
        let result = runner(cases).run(&strategy, |weights| -> Result<(), TestCaseError> {
            let s = shares(&weights);
            prop_assert_eq!(s.len(), weights.len());
            prop_assert!(s.iter().all(|x| (0.0..=1.0).contains(x)));
            prop_assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            // A larger weight never gets a smaller share.
            for i in 0..weights.len() {
                for j in 0..weights.len() {
                    if weights[i] > weights[j] {
                        prop_assert!(s[i] > s[j]);
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        // All zero: Route53 splits evenly; random bytes rarely are, so every length is tried.
        for n in 1..8 {
            let s = shares(&vec![0; n]);
            assert!(s.iter().all(|x| (x - 1.0 / n as f64).abs() < 1e-12), "{s:?}");
            all_zero += 1;
        }
        crate::reliability::record(
            "properties",
            format!(
                "Route53 weight shares for {cases} random sets of 1–7 weights (0–255): fractions in 0–1 summing to 1, \
                 a larger weight never a smaller share; all-zero sets of {all_zero} sizes split evenly"
            ),
        );
    }

    #[test]
    fn weights_for_every_percent_are_valid_and_exact() {
        for p in 0..=u8::MAX {
            let (old, new) = weights_for_percent(p);
            assert_eq!(u16::from(old) + u16::from(new), 100, "{p}");
            assert_eq!(new, p.min(100), "{p}");
            let s = shares(&[old, new]);
            assert!((s[1] * 100.0 - f64::from(p.min(100))).abs() < 1e-9, "{p}: {s:?}");
        }
        crate::reliability::record(
            "properties",
            "Every percent 0–255 gives two weights summing to 100 whose share is exactly the percent (capped at 100)",
        );
    }
}
