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

/// Each instance's health URL (as [`health_url`]), none shared. Instances
/// given one URL (a Name tag Auto Scaling copied to each, a template without
/// `{instance_id}` or `{private_ip}`) would all be judged by whichever host
/// answers it, so none of them is probed.
pub fn health_urls(env: &Environment, instances: &[Instance], policy: ProbePolicy) -> Vec<Result<String, String>> {
    let urls: Vec<Result<String, String>> = instances.iter().map(|i| health_url(env, i, policy)).collect();
    urls.iter()
        .enumerate()
        .map(|(i, u)| {
            let url = u.as_ref().map_err(Clone::clone)?;
            let sharing: Vec<&str> = instances
                .iter()
                .zip(&urls)
                .enumerate()
                .filter(|(j, (_, other))| *j != i && other.as_ref() == Ok(url))
                .map(|(_, (inst, _))| inst.id.as_str())
                .collect();
            if sharing.is_empty() {
                Ok(url.clone())
            } else {
                Err(format!(
                    "not probed: {url} is also the health URL of {}, so one host would answer for all of them; key \
                     health_urls by instance id, or put {{instance_id}} or {{private_ip}} in the template",
                    sharing.join(", ")
                ))
            }
        })
        .collect()
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
            target_addresses: vec![],
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

    /// Auto Scaling copies the Name tag to each instance it launches: a URL
    /// keyed by Name (or a template on `{name}`) is one host for all.
    #[test]
    fn instances_sharing_a_health_url_are_none_of_them_probed() {
        let e = env(Some("http://{name}.internal:8080/health"), &[]);
        let two = [inst(&[]), Instance { id: "i-2".into(), ..inst(&[]) }];
        let urls = health_urls(&e, &two, ProbePolicy::Configured);
        assert!(
            urls[0].as_ref().is_err_and(|e| e.starts_with(
                "not probed: http://web-1.internal:8080/health is also the health URL of i-2, so one host"
            )),
            "{urls:?}"
        );
        assert!(urls[1].as_ref().is_err_and(|e| e.contains("is also the health URL of i-1")), "{urls:?}");
        let e = env(Some("http://{private_ip}:8080/health"), &[]);
        let apart = [inst(&[]), Instance { id: "i-2".into(), private_ip: Some("10.0.0.6".into()), ..inst(&[]) }];
        let urls = health_urls(&e, &apart, ProbePolicy::Configured);
        assert_eq!(urls, [Ok("http://10.0.0.5:8080/health".into()), Ok("http://10.0.0.6:8080/health".into())]);
    }
}
