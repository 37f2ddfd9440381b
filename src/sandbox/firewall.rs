//! Makes security groups real on loopback: each app instance reaches its Redis
//! through a proxy that forwards only while moto's current rules admit the
//! instance. A refused connection is accepted and never answered, so the app
//! times out as it would behind a security group that drops its packets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::analysis::reachability::{SecurityGroup, Source, sg_path};
use crate::aws::ec2::Instance;

/// What moto says now: every sandbox security group and instance.
#[derive(Debug, Clone, Default)]
pub struct LiveWorld {
    pub groups: Vec<SecurityGroup>,
    pub instances: Vec<Instance>,
}

pub struct ProxySpec {
    pub instance_id: String,
    pub endpoint_group_ids: Vec<String>,
    /// The port the security-group rules must open (the AWS-side port).
    pub rule_port: u16,
    pub upstream: SocketAddr,
}

/// Whether moto's current rules let the instance reach the endpoint.
pub fn admits(world: &LiveWorld, spec: &ProxySpec) -> bool {
    let Some(inst) = world.instances.iter().find(|i| i.id == spec.instance_id) else {
        return false;
    };
    let groups: Vec<SecurityGroup> =
        world.groups.iter().filter(|g| spec.endpoint_group_ids.contains(&g.id)).cloned().collect();
    let source = Source {
        instance_id: &inst.id,
        private_ip: inst.private_ip.as_deref(),
        security_groups: &inst.security_groups,
    };
    sg_path(&source, &groups, spec.rule_port).is_allowed()
}

/// Serves the proxy until the task is aborted.
pub async fn serve(listener: TcpListener, spec: ProxySpec, world: watch::Receiver<LiveWorld>) {
    let spec = Arc::new(spec);
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let allowed = admits(&world.borrow(), &spec);
        let spec = spec.clone();
        tokio::spawn(async move {
            if allowed {
                if let Ok(mut upstream) = TcpStream::connect(spec.upstream).await {
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            } else {
                // Drop semantics: hold the socket silently until the client gives up.
                let mut client = client;
                let mut sink = tokio::io::sink();
                let _ = tokio::time::timeout(Duration::from_secs(60), tokio::io::copy(&mut client, &mut sink)).await;
            }
        });
    }
}
