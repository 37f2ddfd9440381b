//! The local sandbox: moto, real redis-servers and real app servers on
//! 127.0.0.1, provisioned from a runbook, so a cutover can be rehearsed.
//! Nothing here ever connects outside loopback.

pub mod alarm_eval;
pub mod app;
pub mod aws_proxy;
pub mod cloudwatch;
pub mod firewall;
pub mod latency;
pub mod process;
pub mod provision;
pub mod rules;
pub mod traffic;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, eyre};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{Clients, SideClients};
use crate::runbook::Runbook;
use firewall::LiveWorld;
use process::ChildProcess;
pub use provision::World;

/// How late the sandbox shows CloudWatch datapoints (a duration such as
/// `90s`; default none).
pub const METRICS_LAG_VAR: &str = "CUTOVER_SANDBOX_METRICS_LAG";

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub region: String,
    /// Reuse this moto server instead of starting one.
    pub moto_endpoint: Option<String>,
    pub traffic: traffic::TrafficConfig,
    /// The team's store when given apart from the runbook (`--state
    /// s3://…`): its bucket is created like `[team] state`'s.
    pub team_state: Option<String>,
}

pub struct Sandbox {
    /// Where cutover talks to AWS: the AWS-like proxy in front of moto.
    pub endpoint: String,
    /// moto itself, behind the proxy.
    pub moto_endpoint: String,
    /// The proxy's switches (throttling, PENDING time, dropped replies).
    pub faults: std::sync::Arc<aws_proxy::AwsFaults>,
    pub region: String,
    pub world: World,
    /// Redis endpoint name → URL of its local redis-server.
    pub redis_urls: BTreeMap<String, String>,
    /// The sandbox's own clients, in the runbook's account and region.
    pub clients: Clients,
    /// Where the runbook's `[notify]` webhook points in the sandbox.
    pub webhook: webhook::Receiver,
    /// The sandbox's own clients of each side (each side's role assumed).
    pub sides: SideClients,
    children: Vec<ChildProcess>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// Clients of cutover's own for each side of `rb`, apart from the
    /// sandbox's, so call counts are cutover's.
    pub async fn cutover_clients(&self, rb: &crate::runbook::Runbook) -> crate::aws::SideClients {
        crate::aws::SideClients::sandbox(rb, &self.endpoint, &self.region).await
    }

    pub async fn up(rb: &Runbook, opts: SandboxOptions) -> Result<Sandbox> {
        let spec = rb.sandbox.clone().ok_or_else(|| eyre!("runbook {} has no [sandbox] section, so it cannot be rehearsed locally; add one (see runbooks/demo.toml)", rb.source))?;
        let dir = tempfile::Builder::new().prefix("cutover-sandbox-").tempdir()?;
        let mut children = Vec::new();
        let (shutdown, _) = watch::channel(false);
        let mut sb = Sandbox {
            endpoint: String::new(),
            moto_endpoint: String::new(),
            faults: Default::default(),
            region: opts.region.clone(),
            world: World::default(),
            redis_urls: BTreeMap::new(),
            clients: Clients::new(&crate::aws::sandbox_config("http://127.0.0.1:1", &opts.region).await),
            webhook: Default::default(),
            sides: SideClients::one(Clients::new(
                &crate::aws::sandbox_config("http://127.0.0.1:1", &opts.region).await,
            )),
            children: Vec::new(),
            tasks: Vec::new(),
            shutdown,
            _dir: dir,
        };
        // From here on, any failure tears down what was started.
        match sb.start(rb, &spec, &opts, &mut children).await {
            Ok(()) => {
                sb.children = children;
                Ok(sb)
            }
            Err(e) => {
                sb.children = children;
                sb.down().await;
                Err(e)
            }
        }
    }

    async fn start(
        &mut self,
        rb: &Runbook,
        spec: &crate::runbook::SandboxSpec,
        opts: &SandboxOptions,
        children: &mut Vec<ChildProcess>,
    ) -> Result<()> {
        let dir = self._dir.path().to_path_buf();
        self.moto_endpoint = match &opts.moto_endpoint {
            Some(e) => e.clone(),
            None => {
                let moto = process::start_moto(&dir).await?;
                let e = format!("http://127.0.0.1:{}", moto.port);
                children.push(moto);
                e
            }
        };
        // Everything, the sandbox's own traffic included, reaches moto through
        // the proxy that makes it answer as AWS does (see `aws_proxy`).
        let moto: SocketAddr = self
            .moto_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .wrap_err_with(|| format!("moto endpoint {} is not http://127.0.0.1:PORT", self.moto_endpoint))?;
        // Signed requests go to loopback only, never to an address given by mistake.
        if !moto.ip().is_loopback() {
            color_eyre::eyre::bail!(
                "moto endpoint {} is not on loopback: give http://127.0.0.1:PORT",
                self.moto_endpoint
            );
        }
        let (proxy, task, faults) = aws_proxy::start(moto, 0).await?;
        self.tasks.push(task);
        // ALB datapoints arrive minutes late on AWS; the sandbox shows them at
        // once unless asked (`CUTOVER_SANDBOX_METRICS_LAG`, e.g. "90s").
        if let Ok(lag) = std::env::var(METRICS_LAG_VAR) {
            let lag =
                crate::runbook::duration::parse_duration(&lag).map_err(|e| eyre!("{METRICS_LAG_VAR}={lag}: {e}"))?;
            faults.cloudwatch.set_lag(lag);
        }
        self.faults = faults;
        self.endpoint = format!("http://{proxy}");
        self.sides = SideClients::sandbox_as(rb, &self.endpoint, &opts.region, Some(aws_proxy::OWN_APP)).await;
        self.clients = self.sides.runbook().clone();

        let (receiver, task) = webhook::start(self.shutdown.subscribe()).await?;
        self.webhook = receiver;
        self.tasks.push(task);

        for (_, r) in rb.redis_endpoints() {
            match (spec.redis_clusters.get(&r.name), spec.redis_sentinels.get(&r.name)) {
                (Some(c), _) => {
                    let nodes = process::start_cluster(&dir, &r.name, c.shards, c.replicas).await?;
                    let url = format!("redis+cluster://127.0.0.1:{},127.0.0.1:{}", nodes[0].port, nodes[1].port);
                    self.redis_urls.insert(r.name.clone(), url);
                    children.extend(nodes);
                }
                (None, Some(g)) => {
                    // Sentinels notice a peer, replica or master gone within 5 s: soon
                    // enough to watch, not so soon that a loaded machine fails over.
                    let timings = process::SentinelTimings { down_after_ms: 5000, failover_timeout_ms: 10_000 };
                    let group = process::start_sentinel_group(&dir, &r.name, g.sentinels, g.quorum, timings).await?;
                    let sentinels: Vec<String> = group[2..].iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
                    let url = format!("redis+sentinel://{}/{}/0", sentinels.join(","), r.name);
                    self.redis_urls.insert(r.name.clone(), url);
                    children.extend(group);
                }
                (None, None) => {
                    let p = process::start_redis(&dir, &r.name).await?;
                    self.redis_urls.insert(r.name.clone(), format!("redis://127.0.0.1:{}/0", p.port));
                    children.push(p);
                }
            }
        }
        for (env, r) in rb.redis_endpoints() {
            let keys = if env.name == rb.rollout.from { spec.seed_keys } else { 0 };
            seed_redis(&self.redis_urls[&r.name], keys).await.wrap_err_with(|| format!("seeding Redis {}", r.name))?;
        }

        let mut app_listeners = BTreeMap::new();
        let mut app_ports = BTreeMap::new();
        for inst in &spec.instances {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            app_ports.insert(inst.name.clone(), l.local_addr()?.port());
            app_listeners.insert(inst.name.clone(), l);
        }
        self.world = provision::provision(rb, spec, &self.sides, &app_ports)
            .await
            .wrap_err("creating the runbook's resources in moto")?;
        // The proxy health-checks each instance as its load balancer would.
        self.faults.targets.lock().unwrap_or_else(|e| e.into_inner()).extend(self.world.instances.iter().map(|i| {
            (i.id.clone(), aws_proxy::TargetCheck { health_url: i.health_url.clone(), zone: i.zone.clone() })
        }));
        let state = opts.team_state.as_ref().filter(|s| s.starts_with("s3://"));
        if let Some(url) = state.or(rb.team.as_ref().map(|t| &t.state)) {
            let region = rb.team.as_ref().and_then(|t| t.region.clone()).unwrap_or_else(|| opts.region.clone());
            create_team_bucket(&self.endpoint, &region, url).await?;
        }

        let live = read_live(&self.sides, &self.world).await?;
        let (live_tx, live_rx) = watch::channel(live);
        let clients = self.sides.clone();
        let world = self.world.clone();
        let mut stop = self.shutdown.subscribe();
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(700)) => {}
                    _ = stop.changed() => return,
                }
                match read_live(&clients, &world).await {
                    Ok(l) => {
                        let _ = live_tx.send(l);
                    }
                    Err(e) => tracing::warn!(error = %e, "sandbox: cannot read moto; keeping the last rules"),
                }
            }
        }));

        for inst in &self.world.instances {
            let endpoint = rb.redis_endpoint(&inst.redis);
            let redis_url = match endpoint {
                Some(ep) => {
                    let url = &self.redis_urls[&ep.name];
                    let upstream: SocketAddr = if url.starts_with("redis+cluster://") {
                        // The app speaks to one node: the primary owning the key it writes.
                        SlotOwners::of(url).await?.owner(&app::hits_key(&inst.name)).await?.parse()?
                    } else if url.starts_with("redis+sentinel://") {
                        // The master at start; the app does not follow a failover.
                        sentinel_master(url).await?.parse()?
                    } else {
                        url.trim_start_matches("redis://").trim_end_matches("/0").parse()?
                    };
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    let port = listener.local_addr()?.port();
                    let proxy = firewall::ProxySpec {
                        instance_id: inst.id.clone(),
                        endpoint_group_ids: ep
                            .security_groups
                            .iter()
                            .filter_map(|g| self.world.groups.get(g).cloned())
                            .collect(),
                        rule_port: ep.port,
                        upstream,
                    };
                    self.tasks.push(tokio::spawn(firewall::serve(listener, proxy, live_rx.clone())));
                    Some(format!("redis://127.0.0.1:{port}/0"))
                }
                None => None,
            };
            let listener = app_listeners.remove(&inst.name).ok_or_else(|| eyre!("no listener for {}", inst.name))?;
            let spec = app::AppSpec { instance_id: inst.id.clone(), name: inst.name.clone(), redis_url };
            self.tasks.push(tokio::spawn(app::supervise(listener, spec, live_rx.clone())));
        }

        // Alarms start in INSUFFICIENT_DATA; the sandbox's evaluator judges
        // them from the published metrics, once now and then every 2 s.
        let mut evaluator = alarm_eval::Evaluator::new(self.sides.cloudwatch_clients(), self.faults.clone());
        evaluator.round().await;
        self.tasks.push(tokio::spawn(evaluator.run(Duration::from_secs(2), self.shutdown.subscribe())));

        self.tasks.push(tokio::spawn(traffic::run(
            rb.clone(),
            self.world.clone(),
            self.sides.clone(),
            opts.traffic.clone(),
            self.shutdown.subscribe(),
        )));
        Ok(())
    }

    /// Variables a shell needs to point cutover (or the AWS CLI) at the sandbox.
    pub fn env_vars(&self, rb: &Runbook) -> Vec<(String, String)> {
        let mut v = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), "sandbox".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "sandbox".to_string()),
            ("AWS_REGION".to_string(), self.region.clone()),
            ("AWS_DEFAULT_REGION".to_string(), self.region.clone()),
            ("CUTOVER_REGION".to_string(), self.region.clone()),
        ];
        for (_, r) in rb.redis_endpoints() {
            if let (Some(var), Some(url)) = (&r.url_env, self.redis_urls.get(&r.name)) {
                v.push((var.clone(), url.clone()));
            }
        }
        if let Some(n) = &rb.notify {
            v.push((n.webhook_url_env.clone(), self.webhook.url.clone()));
        }
        v
    }

    /// Writes the env file atomically, mode 0600.
    pub fn write_env_file(&self, rb: &Runbook, path: &std::path::Path) -> Result<()> {
        let body: String = self.env_vars(rb).iter().map(|(k, v)| format!("export {k}={v}\n")).collect();
        crate::paths::write_atomic(path, body.as_bytes()).wrap_err_with(|| format!("cannot write {}", path.display()))
    }

    /// Allows `port` from group `from` into group `group` (sandbox names), as
    /// another client would: the out-of-band fix a rehearsal applies by hand.
    pub async fn authorize_ingress(&self, group: &str, from: &str, port: u16) -> Result<()> {
        let id = |n: &str| self.world.groups.get(n).cloned().ok_or_else(|| eyre!("no sandbox security group `{n}`"));
        let perm = aws_sdk::ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(port))
            .to_port(i32::from(port))
            .user_id_group_pairs(aws_sdk::ec2::types::UserIdGroupPair::builder().group_id(id(from)?).build())
            .build();
        let env =
            self.world.group_environment.get(group).ok_or_else(|| eyre!("no sandbox security group `{group}`"))?;
        self.sides
            .environment(env)
            .ec2
            .authorize_security_group_ingress()
            .group_id(id(group)?)
            .ip_permissions(perm)
            .send()
            .await
            .wrap_err("AuthorizeSecurityGroupIngress")?;
        Ok(())
    }

    /// The moto server this sandbox started, if it started one.
    pub fn moto_pid(&self) -> Option<u32> {
        self.children.iter().find(|c| c.name == "moto_server").and_then(|c| c.pid())
    }

    /// The child process listening on `port` (a redis-server, a cluster node).
    pub fn pid_on_port(&self, port: u16) -> Option<u32> {
        self.children.iter().find(|c| c.port == port).and_then(|c| c.pid())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.pid()).collect()
    }

    /// Stops every task and child process and waits for them.
    pub async fn down(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        for c in &mut self.children {
            c.stop().await;
        }
    }
}

/// The groups and instances of every side, each read in its own account.
async fn read_live(aws: &SideClients, world: &World) -> Result<LiveWorld> {
    let mut live = LiveWorld::default();
    let envs: Vec<&String> =
        world.instances.iter().map(|i| &i.environment).chain(world.group_environment.values()).collect();
    let sides: Vec<crate::runbook::Side> =
        envs.iter().map(|e| crate::runbook::Side::Environment((*e).clone())).collect();
    for (clients, idx) in aws.group(&sides) {
        let mine = |env: &String| idx.iter().any(|&i| envs[i] == env);
        let groups: Vec<String> = world
            .groups
            .iter()
            .filter(|(n, _)| world.group_environment.get(*n).is_some_and(mine))
            .map(|(_, id)| id.clone())
            .collect();
        let instances: Vec<String> =
            world.instances.iter().filter(|i| mine(&i.environment)).map(|i| i.id.clone()).collect();
        let part = firewall::read_live(&clients.ec2, &groups, &instances).await?;
        live.groups.extend(part.groups);
        live.instances.extend(part.instances);
        live.interfaces.extend(part.interfaces);
    }
    Ok(live)
}

/// Seeds `n` keys of mixed types, half with a TTL between 10 minutes and 2
/// hours; into a `redis+cluster://` URL, each on the primary owning it.
pub async fn seed_redis(url: &str, n: u32) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut by_node: BTreeMap<String, redis::Pipeline> = BTreeMap::new();
    let mut owners = if url.starts_with("redis+cluster://") { Some(SlotOwners::of(url).await?) } else { None };
    let url = &match url.strip_prefix("redis+sentinel://") {
        Some(_) => format!("redis://{}/0", sentinel_master(url).await?),
        None => url.to_string(),
    };
    for i in 0..n {
        let (key, cmds) = seed_key(i);
        let node = match owners.as_mut() {
            Some(o) => format!("redis://{}", o.owner(&key).await?),
            None => url.to_string(),
        };
        let pipe = by_node.entry(node).or_insert_with(redis::pipe);
        for c in cmds {
            pipe.add_command(c).ignore();
        }
    }
    for (node, pipe) in by_node {
        let mut conn = redis::Client::open(node.as_str())?.get_multiplexed_async_connection().await?;
        let _: () = pipe.query_async(&mut conn).await?;
    }
    Ok(())
}

/// The `i`th seeded key and the commands writing it.
fn seed_key(i: u32) -> (String, Vec<redis::Cmd>) {
    let ttl = 600 + (u64::from(i) * 37) % 6600;
    let (key, write) = match i % 5 {
        0 => {
            let k = format!("session:{i}");
            let c = redis::cmd("SET").arg(&k).arg(format!("user-{}", i * 7)).clone();
            (k, c)
        }
        1 => {
            let k = format!("user:{i}");
            let c = redis::cmd("HSET").arg(&k).arg("name").arg(format!("user {i}")).arg("plan").arg("pro").clone();
            (k, c)
        }
        2 => {
            let k = format!("cart:{i}");
            let c = redis::cmd("RPUSH").arg(&k).arg("sku-1").arg("sku-2").clone();
            (k, c)
        }
        3 => {
            let k = format!("tags:{i}");
            let c = redis::cmd("SADD").arg(&k).arg("a").arg("b").arg("c").clone();
            (k, c)
        }
        _ => {
            let k = format!("rank:{i}");
            let c = redis::cmd("ZADD").arg(&k).arg(f64::from(i)).arg("m").clone();
            (k, c)
        }
    };
    let mut cmds = vec![write];
    if i.is_multiple_of(2) {
        cmds.push(redis::cmd("EXPIRE").arg(&key).arg(ttl).clone());
    }
    (key, cmds)
}

/// `host:port` of the master a sandbox `redis+sentinel://HOST:PORT,…/NAME/0`
/// URL's first sentinel names.
async fn sentinel_master(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("redis+sentinel://");
    let (sentinels, path) = rest.split_once('/').ok_or_else(|| eyre!("no master name in {url}"))?;
    let first = sentinels.split(',').next().unwrap_or_default();
    let name = path.split('/').next().unwrap_or_default();
    let mut c = redis::Client::open(format!("redis://{first}"))?.get_multiplexed_async_connection().await?;
    let (host, port): (String, u16) =
        redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(name).query_async(&mut c).await?;
    Ok(format!("{host}:{port}"))
}

/// Which node of a sandbox cluster owns a key, as the cluster itself says
/// (CLUSTER SLOTS, CLUSTER KEYSLOT): the sandbox's own routing, apart from
/// cutover's, which the tests check.
struct SlotOwners {
    conn: redis::aio::MultiplexedConnection,
    /// (first slot, last slot, `host:port` of its primary).
    ranges: Vec<(u16, u16, String)>,
}

impl SlotOwners {
    /// Asks the first node of a `redis+cluster://` URL.
    async fn of(url: &str) -> Result<SlotOwners> {
        let first = url.trim_start_matches("redis+cluster://").split(',').next().unwrap_or_default();
        let mut conn = redis::Client::open(format!("redis://{first}"))?.get_multiplexed_async_connection().await?;
        let slots: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Vec<redis::Value>>(&mut conn)
            .await?
            .into_iter()
            .map(|r| {
                let redis::Value::Array(f) = r else { return Err(eyre!("CLUSTER SLOTS entry {r:?}")) };
                let get = |i: usize| f.get(i).cloned().ok_or_else(|| eyre!("CLUSTER SLOTS entry too short"));
                let primary: Vec<redis::Value> = redis::from_redis_value(get(2)?)?;
                let host = redis::from_redis_value(primary.first().cloned().unwrap_or(redis::Value::Nil))?;
                let port = redis::from_redis_value(primary.get(1).cloned().unwrap_or(redis::Value::Nil))?;
                Ok((redis::from_redis_value(get(0)?)?, redis::from_redis_value(get(1)?)?, (host, port)))
            })
            .collect::<Result<_>>()?;
        let ranges = slots.into_iter().map(|(a, b, (h, p))| (a, b, format!("{h}:{p}"))).collect();
        Ok(SlotOwners { conn, ranges })
    }

    async fn owner(&mut self, key: &str) -> Result<String> {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut self.conn).await?;
        self.ranges
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .map(|(_, _, n)| n.clone())
            .ok_or_else(|| eyre!("no primary owns slot {slot} of the sandbox's cluster"))
    }
}

/// The bucket of `[team] state`, as a team creates it once (CreateBucket
/// outside us-east-1 names its region).
async fn create_team_bucket(endpoint: &str, region: &str, url: &str) -> Result<()> {
    let (bucket, _) = crate::runbook::parse_state_url(url).map_err(|e| eyre!("[team] state: {e}"))?;
    let config = crate::aws::sandbox_config(endpoint, region).await;
    let s3 = aws_sdk::s3::Client::from_conf(aws_sdk::s3::config::Builder::from(&config).force_path_style(true).build());
    let mut req = s3.create_bucket().bucket(&bucket);
    if region != "us-east-1" {
        let c = aws_sdk::s3::types::CreateBucketConfiguration::builder()
            .location_constraint(aws_sdk::s3::types::BucketLocationConstraint::from(region))
            .build();
        req = req.create_bucket_configuration(c);
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
        Err(e) => Err(eyre!("creating the team bucket {bucket}: {}", aws_sdk::s3::error::DisplayErrorContext(&e))),
    }
}
