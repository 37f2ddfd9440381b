//! Child processes of the sandbox (moto_server, redis-server): found, started
//! on a free loopback port, waited for, and killed with their parent.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use tokio::process::{Child, Command};

/// A running child; killed and reaped by `stop`, killed on drop as a fallback.
pub struct ChildProcess {
    pub name: String,
    pub port: u16,
    child: Child,
}

impl ChildProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; callers retry on a race).
pub fn free_port() -> Result<u16> {
    let l = StdListener::bind("127.0.0.1:0").wrap_err("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Looks for an executable: an explicit env var, `.venv/bin` beside the
/// working directory or above the cutover binary, then PATH.
pub fn find_executable(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(PathBuf::from(p));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    for root in roots {
        let p = root.join(".venv/bin").join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let log_file = std::fs::File::create(log).wrap_err_with(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal
    // the child when the thread that forked it dies, so no orphan survives.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().wrap_err_with(|| format!("cannot start {}", program.display()))
}

async fn wait_for_port(child: &mut Child, name: &str, port: u16, log: &Path) -> Result<()> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "{name} exited ({status}) before listening on {port}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(eyre!("{name} did not listen on 127.0.0.1:{port} within 15 s (log: {})", log.display()))
}

/// Starts `moto_server` on a free loopback port.
pub async fn start_moto(dir: &Path) -> Result<ChildProcess> {
    let program = find_executable("moto_server", "CUTOVER_MOTO_SERVER").ok_or_else(|| {
        eyre!("moto_server not found in .venv/bin or on PATH; run ./scripts/demo or ./scripts/test (they install moto[server] into .venv), or pip install 'moto[server]'")
    })?;
    start_on_free_port("moto_server", dir, |port| {
        (program.clone(), vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()])
    })
    .await
}

/// Starts a throwaway `redis-server` (no persistence) on a free loopback port.
pub async fn start_redis(dir: &Path, name: &str) -> Result<ChildProcess> {
    start_redis_with(dir, name, |_| Vec::new()).await
}

/// As `start_redis`, with more arguments given the port (later ones win,
/// e.g. `--port 0 --tls-port P` for TLS only).
pub async fn start_redis_with(dir: &Path, name: &str, extra: impl Fn(u16) -> Vec<String>) -> Result<ChildProcess> {
    let program = find_executable("redis-server", "CUTOVER_REDIS_SERVER").ok_or_else(|| {
        eyre!("redis-server not found on PATH; run ./scripts/demo or ./scripts/test (they install it with apt), or apt-get install redis-server")
    })?;
    let data = dir.join(format!("redis-{name}"));
    std::fs::create_dir_all(&data)?;
    start_on_free_port(&format!("redis-server ({name})"), dir, |port| {
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &data.display().to_string(),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.extend(extra(port));
        (program.clone(), args)
    })
    .await
}

async fn start_on_free_port(
    name: &str,
    dir: &Path,
    command: impl Fn(u16) -> (PathBuf, Vec<String>),
) -> Result<ChildProcess> {
    let mut last = None;
    for attempt in 0..5 {
        let port = free_port()?;
        let (program, args) = command(port);
        // One log per process: `redis-server (blue-cache-replica)` → `redis-server-blue-cache-replica-0.log`.
        let stem: String = name
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let log = dir.join(format!("{stem}-{attempt}.log"));
        let mut child = spawn(&program, &args, &log)?;
        match wait_for_port(&mut child, name, port, &log).await {
            Ok(()) => return Ok(ChildProcess { name: name.to_string(), port, child }),
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| eyre!("{name} did not start")))
}

/// Timings of a Sentinel group; short ones make tests fail over in seconds.
#[derive(Debug, Clone, Copy)]
pub struct SentinelTimings {
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
}

/// Starts `redis-server --sentinel` on a free loopback port, watching the
/// master `master` at 127.0.0.1:`master_port` with a quorum of `quorum`.
/// With `password`, the sentinel asks its clients for it (`requirepass`)
/// and gives it to its peers (`sentinel sentinel-pass`), as a group whose
/// sentinels all share one password does.
pub async fn start_sentinel(
    dir: &Path,
    name: &str,
    master: &str,
    master_port: u16,
    quorum: u32,
    timings: SentinelTimings,
    password: Option<&str>,
) -> Result<ChildProcess> {
    let program = find_executable("redis-server", "CUTOVER_REDIS_SERVER").ok_or_else(|| {
        eyre!("redis-server not found on PATH; run ./scripts/demo or ./scripts/test (they install it with apt), or apt-get install redis-server")
    })?;
    // Sentinel rewrites its config file (state, peers): one per sentinel.
    let conf = dir.join(format!("sentinel-{name}.conf"));
    let body = format!(
        "sentinel monitor {master} 127.0.0.1 {master_port} {quorum}\n\
         sentinel down-after-milliseconds {master} {}\n\
         sentinel failover-timeout {master} {}\n\
         sentinel parallel-syncs {master} 1\n{}",
        timings.down_after_ms,
        timings.failover_timeout_ms,
        password.map(|p| format!("requirepass \"{p}\"\nsentinel sentinel-pass \"{p}\"\n")).unwrap_or_default()
    );
    std::fs::write(&conf, body).wrap_err_with(|| format!("cannot write {}", conf.display()))?;
    start_on_free_port(&format!("redis-sentinel ({name})"), dir, |port| {
        let args = [&conf.display().to_string(), "--sentinel", "--port", &port.to_string(), "--bind", "127.0.0.1"]
            .map(String::from)
            .into_iter()
            .chain(["--daemonize", "no", "--loglevel", "notice", "--dir", &dir.display().to_string()].map(String::from))
            .collect();
        (program.clone(), args)
    })
    .await
}

/// A Sentinel group on loopback: a master named `name`, one replica of it
/// and `sentinels` sentinels watching it with `quorum`; waited for until the
/// replica is in sync and every sentinel knows the replica and its peers.
/// Master first, then the replica, then the sentinels.
pub async fn start_sentinel_group(
    dir: &Path,
    name: &str,
    sentinels: usize,
    quorum: u32,
    timings: SentinelTimings,
) -> Result<Vec<ChildProcess>> {
    let master = start_redis(dir, &format!("{name}-master")).await?;
    let port = master.port;
    let replica = start_redis_with(dir, &format!("{name}-replica"), move |_| {
        vec!["--replicaof".into(), "127.0.0.1".into(), port.to_string()]
    })
    .await?;
    let mut all = vec![master, replica];
    for i in 0..sentinels {
        all.push(start_sentinel(dir, &format!("{name}-{i}"), name, port, quorum, timings, None).await?);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut ready = sentinel_group_replica_ready(all[1].port).await.unwrap_or(false);
        for s in &all[2..] {
            ready &= sentinel_ready(s.port, name, sentinels - 1).await.unwrap_or(false);
        }
        if ready {
            return Ok(all);
        }
        if std::time::Instant::now() > deadline {
            bail!("the Sentinel group {name} did not settle within 30 s (logs in {})", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn sentinel_group_replica_ready(port: u16) -> redis::RedisResult<bool> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("replication").query_async(&mut c).await?;
    Ok(info.contains("master_link_status:up"))
}

/// The sentinel at `port` knows the master's replica and `peers` other sentinels.
async fn sentinel_ready(port: u16, master: &str, peers: usize) -> redis::RedisResult<bool> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_multiplexed_async_connection().await?;
    let replicas: Vec<redis::Value> = redis::cmd("SENTINEL").arg("REPLICAS").arg(master).query_async(&mut c).await?;
    let others: Vec<redis::Value> = redis::cmd("SENTINEL").arg("SENTINELS").arg(master).query_async(&mut c).await?;
    Ok(replicas.len() == 1 && others.len() == peers)
}

/// A Redis Cluster on loopback: `shards` primaries (and one replica each
/// with `replicas`), joined by `redis-cli --cluster create` and waited for
/// until every node says `cluster_state:ok` and sees every shard, and every
/// replica is in sync. Primaries come first in the returned list.
pub async fn start_cluster(dir: &Path, name: &str, shards: usize, replicas: bool) -> Result<Vec<ChildProcess>> {
    let count = if replicas { shards * 2 } else { shards };
    let mut nodes = Vec::new();
    for i in 0..count {
        let node = start_redis_with(dir, &format!("{name}-{i}"), |_| {
            // The bus port is given: port + 10000 may be past 65535 or taken.
            let bus = free_port().map(|p| p.to_string()).unwrap_or_default();
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
                .iter()
                .map(|s| s.to_string())
                .chain(["--cluster-port".to_string(), bus])
                .collect()
        })
        .await?;
        nodes.push(node);
    }
    let cli = find_executable("redis-cli", "CUTOVER_REDIS_CLI").ok_or_else(|| {
        eyre!("redis-cli not found on PATH; it comes with redis-server (apt-get install redis-server redis-tools)")
    })?;
    let mut create = Command::new(cli);
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port));
    }
    create.args(["--cluster-replicas", if replicas { "1" } else { "0" }, "--cluster-yes"]);
    let out = create.output().await.wrap_err("cannot run redis-cli --cluster create")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut ready = true;
        for n in &nodes {
            ready &= cluster_node_ready(n.port, shards).await.unwrap_or(false);
        }
        if ready {
            return Ok(nodes);
        }
        if std::time::Instant::now() > deadline {
            bail!("the cluster {name} was not ok on every node within 30 s (logs in {})", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `cluster_state:ok`, all `shards` seen, and in sync if a replica.
async fn cluster_node_ready(port: u16, shards: usize) -> redis::RedisResult<bool> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut c).await?;
    let seen: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SHARDS").query_async(&mut c).await?;
    let repl: String = redis::cmd("INFO").arg("replication").query_async(&mut c).await?;
    Ok(info.contains("cluster_state:ok")
        && seen.len() == shards
        && (!repl.contains("role:slave") || repl.contains("master_link_status:up")))
}
