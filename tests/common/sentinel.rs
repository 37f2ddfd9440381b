//! A Sentinel group on loopback: a master, a replica of it and three
//! sentinels (real redis-server processes), with short failover timings.

use std::path::Path;
use std::time::Duration;

use cutover::sandbox::process::{ChildProcess, SentinelTimings, start_redis, start_redis_with, start_sentinel};

pub const MASTER: &str = "mymaster";

pub struct SentinelGroup {
    pub master: ChildProcess,
    pub replica: ChildProcess,
    pub sentinels: Vec<ChildProcess>,
}

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    query_as(port, None, cmd).await
}

/// `cmd` on the server at `port`, logging in with `password` when given.
async fn query_as<T: redis::FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let login = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let client = redis::Client::open(format!("redis://{login}127.0.0.1:{port}"))?;
    let mut c = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut c).await
}

impl SentinelGroup {
    /// Started and settled: the replica in sync, every sentinel knowing the
    /// replica and the two other sentinels.
    pub async fn start(dir: &Path) -> SentinelGroup {
        Self::start_with(dir, None).await
    }

    /// As `start`; with `password`, the sentinels ask for it (their own
    /// `requirepass`; the master and the replica ask for none).
    pub async fn start_with(dir: &Path, password: Option<&str>) -> SentinelGroup {
        let master = start_redis(dir, "master").await.unwrap_or_else(|e| panic!("{e:#}"));
        let mport = master.port;
        let replica = start_redis_with(dir, "replica", move |_| {
            vec!["--replicaof".into(), "127.0.0.1".into(), mport.to_string()]
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let timings = SentinelTimings { down_after_ms: 1000, failover_timeout_ms: 5000 };
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let s = start_sentinel(dir, &format!("s{i}"), MASTER, mport, 2, timings, password)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            sentinels.push(s);
        }
        let group = SentinelGroup { master, replica, sentinels };
        let rport = group.replica.port;
        super::eventually(Duration::from_secs(20), "the replica in sync and the sentinels acquainted", || async {
            let info: String = query(rport, redis::cmd("INFO").arg("replication")).await.ok()?;
            info.contains("master_link_status:up").then_some(())?;
            for s in &group.sentinels {
                let replicas: Vec<redis::Value> =
                    query_as(s.port, password, redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER)).await.ok()?;
                let peers: Vec<redis::Value> =
                    query_as(s.port, password, redis::cmd("SENTINEL").arg("SENTINELS").arg(MASTER)).await.ok()?;
                (replicas.len() == 1 && peers.len() == 2).then_some(())?;
            }
            Some(())
        })
        .await;
        group
    }

    /// `redis+sentinel://` URL of the group's master.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{MASTER}/0", nodes.join(","))
    }

    /// The master's port, as the first sentinel names it now.
    pub async fn master_port(&self) -> u16 {
        let (_, port): (String, u16) =
            query(self.sentinels[0].port, redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER))
                .await
                .unwrap();
        port
    }

    /// As `master_port`, of sentinels that ask for `password`.
    pub async fn master_port_as(&self, password: &str) -> u16 {
        let ask = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER).clone();
        let (_, port): (String, u16) = query_as(self.sentinels[0].port, Some(password), &ask).await.unwrap();
        port
    }

    /// Every sentinel waits a minute before it calls the master down: a
    /// master restarted meanwhile is not failed over.
    pub async fn slow_to_fail_over(&self) {
        for s in &self.sentinels {
            let set = redis::cmd("SENTINEL").arg("SET").arg(MASTER).arg("down-after-milliseconds").arg(60_000).clone();
            let _: () = query(s.port, &set).await.unwrap();
        }
    }

    /// The master SIGKILLed and started again on its port without its data
    /// (it persists nothing, as `start_redis` runs it), as a supervisor
    /// would restart it; its replica follows it and empties too. Returns
    /// the new process (the caller kills it).
    pub async fn restart_master_empty(&mut self, dir: &Path) -> super::KillOnDrop {
        let data = dir.join("redis-master-again");
        std::fs::create_dir_all(&data).unwrap();
        self.restart_master_in(&data, true).await
    }

    /// As `restart_master_empty`, but from the RDB file it last saved (its
    /// `SAVE`, in its data folder): a Redis 7 master keeps its old
    /// replication ID as its second, valid up to that file's offset.
    pub async fn restart_master_from_its_rdb(&mut self, dir: &Path) -> super::KillOnDrop {
        self.restart_master_in(&dir.join("redis-master"), false).await
    }

    async fn restart_master_in(&mut self, data: &Path, empty: bool) -> super::KillOnDrop {
        let port = self.master.port;
        self.master.stop().await;
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", data.to_str().unwrap(), "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let rport = self.replica.port;
        super::eventually(Duration::from_secs(30), "the replica in sync with the restarted master", || async {
            let info: String = query(rport, redis::cmd("INFO").arg("replication")).await.ok()?;
            let keys: u64 = query(rport, &redis::cmd("DBSIZE")).await.ok()?;
            let master_keys: u64 = query(port, &redis::cmd("DBSIZE")).await.ok()?;
            (info.contains("master_link_status:up") && keys == master_keys && (!empty || keys == 0)).then_some(())
        })
        .await;
        super::KillOnDrop(Some(child))
    }

    /// `SENTINEL FAILOVER`: the replica is promoted without waiting for a vote.
    pub async fn failover(&self) {
        let _: String =
            query(self.sentinels[0].port, redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER)).await.unwrap();
    }
}
