//! Which health URL to probe for an instance, and whether it may be probed.

use std::net::IpAddr;

use crate::aws::ec2::Instance;
use crate::runbook::Environment;

/// Against an emulator (an endpoint override such as moto or LocalStack)
/// only loopback URLs are probed: the private IPs it invents are not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbePolicy {
    LoopbackOnly,
    Configured,
}

impl ProbePolicy {
    pub fn from_env() -> Self {
        if std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty()) {
            ProbePolicy::LoopbackOnly
        } else {
            ProbePolicy::Configured
        }
    }
}

pub fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else { return false };
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The instance's health URL, from its tag, the runbook's map (by id or Name)
/// or the template, or why it is not probed.
pub fn health_url(env: &Environment, inst: &Instance, policy: ProbePolicy) -> Result<String, String> {
    let url = inst
        .tags
        .get(&env.health_url_tag)
        .cloned()
        .or_else(|| env.health_urls.get(&inst.id).cloned())
        .or_else(|| inst.name.as_ref().and_then(|n| env.health_urls.get(n).cloned()))
        .or_else(|| {
            let t = env.health_url_template.as_ref()?;
            let mut s =
                t.replace("{instance_id}", &inst.id).replace("{name}", inst.name.as_deref().unwrap_or(&inst.id));
            if s.contains("{private_ip}") {
                s = s.replace("{private_ip}", inst.private_ip.as_deref()?);
            }
            Some(s)
        })
        .ok_or_else(|| format!("not probed: no `{}` tag, health_urls entry or template", env.health_url_tag))?;
    if policy == ProbePolicy::LoopbackOnly && !is_loopback_url(&url) {
        return Err(format!("not probed: {url} is not loopback and AWS_ENDPOINT_URL points at an emulator"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(template: Option<&str>, urls: &[(&str, &str)]) -> Environment {
        Environment {
            name: "s".into(),
            label: "s".into(),
            load_balancer: None,
            target_groups: vec![],
            instances: crate::runbook::InstanceSelector::Ids(vec![]),
            redis: vec![],
            uses_redis: vec![],
            health_url_tag: "cutover:health-url".into(),
            health_urls: urls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            health_url_template: template.map(str::to_string),
            access: Default::default(),
        }
    }
    fn inst(tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: "i-1".into(),
            name: Some("web-1".into()),
            state: "running".into(),
            instance_type: "t3.micro".into(),
            availability_zone: "eu-west-1a".into(),
            private_ip: Some("10.0.0.5".into()),
            ipv6_addresses: vec![],
            vpc_id: None,
            security_groups: vec![],
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:8080/health"));
        assert!(is_loopback_url("http://127.9.9.9/health"));
        assert!(is_loopback_url("http://localhost:1/"));
        assert!(is_loopback_url("http://[::1]:80/"));
        assert!(!is_loopback_url("http://10.0.0.5:8080/health"));
        assert!(!is_loopback_url("http://172.16.0.1/"));
        assert!(!is_loopback_url("http://localhost.evil.test/"));
        assert!(!is_loopback_url("not a url"));
    }

    #[test]
    fn tag_wins_then_map_then_template() {
        let e = env(Some("http://{private_ip}:8080/health"), &[("web-1", "http://127.0.0.1:2/health")]);
        assert_eq!(
            health_url(&e, &inst(&[("cutover:health-url", "http://127.0.0.1:1/health")]), ProbePolicy::LoopbackOnly)
                .unwrap(),
            "http://127.0.0.1:1/health"
        );
        assert_eq!(health_url(&e, &inst(&[]), ProbePolicy::LoopbackOnly).unwrap(), "http://127.0.0.1:2/health");
        let e = env(Some("http://{private_ip}:8080/health"), &[]);
        assert_eq!(health_url(&e, &inst(&[]), ProbePolicy::Configured).unwrap(), "http://10.0.0.5:8080/health");
    }

    #[test]
    fn emulator_private_ip_is_never_probed_and_unmapped_is_not_guessed() {
        let e = env(Some("http://{private_ip}:8080/health"), &[]);
        let err = health_url(&e, &inst(&[]), ProbePolicy::LoopbackOnly).unwrap_err();
        assert!(err.starts_with("not probed: http://10.0.0.5:8080/health is not loopback"), "{err}");
        let err = health_url(&env(None, &[]), &inst(&[]), ProbePolicy::Configured).unwrap_err();
        assert!(err.starts_with("not probed: no `cutover:health-url` tag"), "{err}");
    }
}
