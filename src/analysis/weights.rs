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

/// Weights that put `percent` of traffic on the new side: (old, new).
pub fn weights_for_percent(percent: u8) -> (u8, u8) {
    let p = percent.min(100);
    (100 - p, p)
}

/// Whether Route53 counts an ALB healthy for an alias evaluating target
/// health, from each of its target groups' (healthy, registered) counts:
/// every group holding targets has a healthy one, and some target is
/// healthy. None without target groups: nothing to judge by.
pub fn alb_healthy(groups: impl IntoIterator<Item = (usize, usize)>) -> Option<bool> {
    let groups: Vec<(usize, usize)> = groups.into_iter().collect();
    if groups.is_empty() {
        return None;
    }
    let every_holding = groups.iter().filter(|(_, total)| *total > 0).all(|(healthy, _)| *healthy > 0);
    Some(every_holding && groups.iter().any(|(healthy, _)| *healthy > 0))
}

/// Whether an alias target's DNS name is the load balancer's (any case, a
/// trailing dot, or the `dualstack.` prefix an alias to an ALB may carry).
pub fn alias_names(target: &str, load_balancer_dns: &str) -> bool {
    let norm = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
    let (target, dns) = (norm(target), norm(load_balancer_dns));
    target == dns || target.strip_prefix("dualstack.") == Some(dns.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alb_is_healthy_to_route53_only_when_every_target_group_with_targets_has_a_healthy_one() {
        assert_eq!(alb_healthy([]), None);
        assert_eq!(alb_healthy([(2, 2), (1, 3)]), Some(true));
        assert_eq!(alb_healthy([(2, 2), (0, 2)]), Some(false), "one group with targets, none healthy");
        assert_eq!(alb_healthy([(2, 2), (0, 0)]), Some(true), "a group without targets does not count");
        assert_eq!(alb_healthy([(0, 0)]), Some(false), "no target at all");
    }

    #[test]
    fn an_alias_names_its_load_balancer_with_or_without_dualstack_and_the_trailing_dot() {
        let lb = "shop-alb-1.eu-south-1.elb.amazonaws.com";
        assert!(alias_names("dualstack.Shop-ALB-1.eu-south-1.elb.amazonaws.com.", lb));
        assert!(alias_names("shop-alb-1.eu-south-1.elb.amazonaws.com", &format!("{lb}.")));
        assert!(!alias_names("dualstack.other-alb-1.eu-south-1.elb.amazonaws.com.", lb));
        assert!(!alias_names("x.shop-alb-1.eu-south-1.elb.amazonaws.com", lb));
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
