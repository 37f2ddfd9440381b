//! A Redis Cluster on loopback: three primaries (and a replica each when
//! asked), real redis-server processes joined by `redis-cli --cluster create`.

use cutover::sandbox::process::{ChildProcess, start_cluster};
use std::path::Path;

pub struct Cluster {
    /// Primaries first (as created), then replicas.
    pub nodes: Vec<ChildProcess>,
    pub shards: usize,
}

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut c = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut c).await
}

impl Cluster {
    /// Started, slots assigned, every node saying `cluster_state:ok` and
    /// every replica in sync. `name` keeps two clusters' files apart.
    pub async fn start(dir: &Path, name: &str, shards: usize, replicas: bool) -> Cluster {
        let nodes = start_cluster(dir, name, shards, replicas).await.unwrap_or_else(|e| panic!("{e:#}"));
        Cluster { nodes, shards }
    }

    /// `redis+cluster://` URL naming the first two nodes.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{},127.0.0.1:{}", self.nodes[0].port, self.nodes[1].port)
    }

    /// A plain `redis://` URL of one node: the cluster is detected.
    pub fn node_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port)
    }

    /// Ports of the nodes that are primaries now, by first slot.
    pub async fn primary_ports(&self) -> Vec<u16> {
        let listing: String = query(self.nodes[0].port, redis::cmd("CLUSTER").arg("NODES")).await.unwrap();
        let mut primaries: Vec<(u16, u16)> = listing
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f[1].split(['@', ',']).next()?.rsplit_once(':')?.1.parse().ok()?;
                let first = f.get(8)?.split('-').next()?.parse().ok()?;
                Some((first, port))
            })
            .collect();
        primaries.sort();
        primaries.into_iter().map(|(_, p)| p).collect()
    }

    /// The port of a replica of the primary on `primary`.
    pub async fn replica_of(&self, primary: u16) -> u16 {
        for n in &self.nodes {
            let info: String = query(n.port, redis::cmd("INFO").arg("replication")).await.unwrap();
            if info.contains(&format!("master_port:{primary}")) {
                return n.port;
            }
        }
        panic!("the shard on port {primary} has no replica")
    }

    /// Waits until `replica` holds every write its primary on `primary`
    /// took so far: its replication offset reaches the primary's. (WAIT
    /// counts only the writes of the connection asking it.)
    pub async fn replica_in_step(&self, primary: u16, replica: u16) {
        let offset = |info: &str, field: &str| -> u64 {
            info.lines().find_map(|l| l.strip_prefix(field)?.trim().parse().ok()).unwrap_or(0)
        };
        let start = std::time::Instant::now();
        let wrote: String = query(primary, redis::cmd("INFO").arg("replication")).await.unwrap();
        let wrote = offset(&wrote, "master_repl_offset:");
        loop {
            let info: String = query(replica, redis::cmd("INFO").arg("replication")).await.unwrap();
            if info.contains("master_link_status:up") && offset(&info, "slave_repl_offset:") >= wrote {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "replica {replica} is not at its primary {primary}'s offset {wrote} after 30 s: {info}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Cuts the replica of the primary on `primary` off: it may no longer
    /// log in to it (`masteruser` names no user) and its link is killed.
    /// Waits until the replica says its link is down; returns its port. Not
    /// an ACL refusing PSYNC: a replica refused PSYNC falls back to SYNC,
    /// and one let in that way counts its offset from that sync, so no
    /// offset shows it in step again.
    pub async fn cut_off_replica_of(&self, primary: u16) -> u16 {
        let replica = self.replica_of(primary).await;
        let login = |user: &str| {
            redis::cmd("CONFIG").arg("SET").arg("masteruser").arg(user).arg("masterauth").arg(user).clone()
        };
        let _: () = query(replica, &login("cut-off")).await.unwrap();
        let _: u64 = query(primary, redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica")).await.unwrap();
        let start = std::time::Instant::now();
        loop {
            let info: String = query(replica, redis::cmd("INFO").arg("replication")).await.unwrap();
            if info.contains("master_link_status:down") {
                return replica;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "replica {replica} kept its link: {info}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Lets a replica cut off by `cut_off_replica_of` log in again, and
    /// waits until it holds every write its primary took.
    pub async fn reconnect_replica(&self, primary: u16, replica: u16) {
        let login = redis::cmd("CONFIG").arg("SET").arg("masteruser").arg("").arg("masterauth").arg("").clone();
        let _: () = query(replica, &login).await.unwrap();
        self.replica_in_step(primary, replica).await;
    }

    /// Keys held by each primary (DBSIZE), by first slot.
    pub async fn sizes(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for p in self.primary_ports().await {
            out.push(query(p, &redis::cmd("DBSIZE")).await.unwrap());
        }
        out
    }

    /// `redis-cli --cluster reshard`, as an operator runs it: `slots` slots
    /// from the primary on port `from` to the one on `to`; its output
    /// (stdout then stderr) once it is done.
    pub async fn reshard(&self, from: u16, to: u16, slots: usize) -> (bool, String) {
        let id = |port: u16| async move { query::<String>(port, redis::cmd("CLUSTER").arg("MYID")).await.unwrap() };
        let (from_id, to_id) = (id(from).await, id(to).await);
        let out = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("redis-cli runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// `n` keys `PREFIX:i` holding i, each written on the shard owning it;
    /// the odd ones expire in 10 minutes.
    pub async fn seed_half_expiring(&self, prefix: &str, n: u64) {
        use redis::AsyncCommands;
        let mut reader = self.reader().await;
        for i in 0..n {
            let key = format!("{prefix}:{i}");
            let mut owner = reader.owner(&key).await;
            if i % 2 == 0 {
                let _: () = owner.set(&key, i).await.unwrap();
            } else {
                let _: () = owner.pset_ex(&key, i, 600_000).await.unwrap();
            }
        }
    }

    /// Reads keys where they live: slots from CLUSTER SLOTS, a key's slot
    /// from CLUSTER KEYSLOT (the server's hashing, not cutover's).
    pub async fn reader(&self) -> Reader {
        Reader::at(self.nodes[0].port).await
    }
}

impl Reader {
    /// A reader of the cluster the node on `port` belongs to.
    pub async fn at(port: u16) -> Reader {
        let raw: Vec<redis::Value> = query(port, redis::cmd("CLUSTER").arg("SLOTS")).await.unwrap();
        let mut slots = Vec::new();
        let mut conns = std::collections::HashMap::new();
        for r in &raw {
            let redis::Value::Array(f) = r else { panic!("CLUSTER SLOTS entry {r:?}") };
            let a: u16 = redis::from_redis_value(f[0].clone()).unwrap();
            let b: u16 = redis::from_redis_value(f[1].clone()).unwrap();
            let redis::Value::Array(m) = &f[2] else { panic!("CLUSTER SLOTS primary {:?}", f[2]) };
            let p: u16 = redis::from_redis_value(m[1].clone()).unwrap();
            slots.push((a, b, p));
            if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(p) {
                let client = redis::Client::open(format!("redis://127.0.0.1:{p}")).unwrap();
                e.insert(client.get_multiplexed_async_connection().await.unwrap());
            }
        }
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let any = client.get_multiplexed_async_connection().await.unwrap();
        Reader { slots, conns, any }
    }
}

pub struct Reader {
    slots: Vec<(u16, u16, u16)>,
    conns: std::collections::HashMap<u16, redis::aio::MultiplexedConnection>,
    any: redis::aio::MultiplexedConnection,
}

impl Reader {
    /// Ports of the primaries, by first slot.
    pub fn primaries(&self) -> Vec<u16> {
        let mut first = std::collections::BTreeMap::new();
        for (a, _, p) in &self.slots {
            let f = first.entry(*p).or_insert(*a);
            *f = (*f).min(*a);
        }
        let mut by_slot: Vec<(u16, u16)> = first.into_iter().map(|(p, a)| (a, p)).collect();
        by_slot.sort();
        by_slot.into_iter().map(|(_, p)| p).collect()
    }

    /// A connection to the primary owning `key`.
    pub async fn owner(&mut self, key: &str) -> redis::aio::MultiplexedConnection {
        let port = self.owner_port(key).await;
        self.conns[&port].clone()
    }

    /// The port of the primary owning `key`.
    pub async fn owner_port(&mut self, key: &str) -> u16 {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut self.any).await.unwrap();
        let (_, _, port) = self.slots.iter().find(|(a, b, _)| (*a..=*b).contains(&slot)).expect("an owner");
        *port
    }
}
