//! Redis Cluster: which shard owns a key (CRC16 slot, hash tags), the shards
//! a cluster reports (`CLUSTER SHARDS`, else `CLUSTER NODES`), and a router
//! that sends one pipeline per shard, all shards at once, following `MOVED`
//! and `ASK` while slots move.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::url::Endpoint;

pub const SLOTS: usize = 16384;

/// CRC16-XMODEM, the checksum Redis Cluster hashes keys with. Written here
/// (ten lines) because the redis crate keeps its slot number private and
/// its `cluster` feature would only add the same ten lines as a dependency.
fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for b in data {
        crc ^= (*b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The slot of `key`: only the part inside the first non-empty `{…}` is
/// hashed, as Redis does (so `{user1}:a` and `{user1}:b` share a slot).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|c| *c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|c| *c == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// A name for the temporary copy of `key`, starting with `prefix`, that
/// hashes to the same slot, so the final RENAME stays on one shard.
pub fn tmp_name(prefix: &str, key: &[u8]) -> Vec<u8> {
    let slot = key_slot(key);
    let mut plain = format!("{prefix}:").into_bytes();
    plain.extend_from_slice(key);
    if key_slot(&plain) == slot {
        return plain;
    }
    // No hash tag in the key: give the name one that lands on its slot.
    for n in 0u32.. {
        let mut tagged = format!("{prefix}{{{n}}}:").into_bytes();
        tagged.extend_from_slice(key);
        if key_slot(&tagged) == slot {
            return tagged;
        }
    }
    unreachable!("every slot has a short tag")
}

/// One shard: the slots it owns, its primary and its replicas (`host:port`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shard {
    pub slots: Vec<(u16, u16)>,
    pub primary: String,
    pub replicas: Vec<String>,
}

impl Shard {
    /// `0-5460,6000` — the same shard's name across failovers.
    pub fn slots_text(&self) -> String {
        slots_text(&self.slots)
    }
}

fn slots_text(slots: &[(u16, u16)]) -> String {
    let parts: Vec<String> =
        slots.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    parts.join(",")
}

/// One node as the cluster reports it, a failed one included: what the
/// connectivity matrix shows a row for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// `host:port`, as the cluster reports it (the address clients use).
    pub addr: String,
    pub primary: bool,
    /// Its shard's slots (`0-5460`); empty for a primary that owns none.
    pub slots: String,
    /// The cluster marks it failed (`fail`).
    pub failed: bool,
}

/// A shard as reported: its slots and every node, failed ones included.
struct Reported {
    slots: Vec<(u16, u16)>,
    nodes: Vec<Node>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Key/value pairs of a RESP2 flat array or a RESP3 map.
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(a) => a.chunks(2).filter_map(|kv| Some((text(&kv[0])?, kv.get(1)?))).collect(),
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        _ => Vec::new(),
    }
}

/// Shards from a `CLUSTER SHARDS` reply (Redis 7+). Nodes marked `fail` are
/// left out. A node is reached at its preferred `endpoint` (a hostname on
/// ElastiCache, so TLS names match), else its `ip`; on `tls-port` with TLS.
pub fn parse_shards(reply: &Value, tls: bool) -> Result<Vec<Shard>, String> {
    shards_of(reported_shards(reply, tls)?)
}

fn reported_shards(reply: &Value, tls: bool) -> Result<Vec<Reported>, String> {
    let Value::Array(shards) = reply else { return Err("CLUSTER SHARDS did not answer with a list".into()) };
    let mut out = Vec::new();
    for s in shards {
        let fields = pairs(s);
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let slots: Vec<u16> = match get("slots") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| text(v)?.parse().ok()).collect(),
            _ => Vec::new(),
        };
        let slots: Vec<(u16, u16)> = slots.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0], p[1])).collect();
        let nodes = match get("nodes") {
            Some(Value::Array(n)) => n.as_slice(),
            _ => &[],
        };
        let mut shard = Reported { nodes: Vec::new(), slots };
        for n in nodes {
            let f = pairs(n);
            let field = |name: &str| f.iter().find(|(k, _)| k == name).and_then(|(_, v)| text(v));
            let host =
                field("endpoint").filter(|h| !h.is_empty() && h != "?").or_else(|| field("ip")).unwrap_or_default();
            let port = if tls { field("tls-port").or_else(|| field("port")) } else { field("port") };
            let Some(port) = port else { continue };
            shard.nodes.push(Node {
                addr: format!("{host}:{port}"),
                primary: field("role").as_deref() == Some("master"),
                slots: slots_text(&shard.slots),
                failed: field("health").as_deref() == Some("fail"),
            });
        }
        out.push(shard);
    }
    Ok(out)
}

/// Shards from `CLUSTER NODES` text (any Redis Cluster version).
pub fn parse_nodes(listing: &str) -> Result<Vec<Shard>, String> {
    shards_of(reported_nodes(listing)?)
}

fn reported_nodes(listing: &str) -> Result<Vec<Reported>, String> {
    // id → shard index, for replicas (listed by their primary's id).
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Reported> = Vec::new();
    let mut replicas: Vec<(&str, String, bool)> = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return Err(format!("CLUSTER NODES line {line:?} has fewer than 8 fields"));
        }
        // ip:port@cport[,hostname]
        let addr = f[1].split(['@', ',']).next().unwrap_or("").to_string();
        let flags: Vec<&str> = f[2].split(',').collect();
        if flags.iter().any(|x| *x == "noaddr" || *x == "handshake") {
            continue;
        }
        let failed = flags.contains(&"fail");
        if flags.contains(&"master") {
            let mut slots = Vec::new();
            for s in &f[8..] {
                if s.starts_with('[') {
                    continue; // a slot being imported or migrated: its owner is still listed plainly
                }
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => slots.push((a, b)),
                    _ => return Err(format!("CLUSTER NODES slot range {s:?} is not N or N-M")),
                }
            }
            by_id.insert(f[0], out.len());
            let node = Node { addr, primary: true, slots: slots_text(&slots), failed };
            out.push(Reported { slots, nodes: vec![node] });
        } else if flags.contains(&"slave") || flags.contains(&"replica") {
            replicas.push((f[3], addr, failed));
        }
    }
    for (master, addr, failed) in replicas {
        if let Some(i) = by_id.get(master) {
            let slots = out[*i].nodes[0].slots.clone();
            out[*i].nodes.push(Node { addr, primary: false, slots, failed });
        }
    }
    Ok(out)
}

/// The shards that serve: a primary that has not failed, with slots, and
/// its replicas that have not failed.
fn shards_of(reported: Vec<Reported>) -> Result<Vec<Shard>, String> {
    let shards = reported
        .into_iter()
        .filter_map(|r| {
            let live: Vec<&Node> = r.nodes.iter().filter(|n| !n.failed).collect();
            let primary = live.iter().find(|n| n.primary)?.addr.clone();
            let replicas = live.iter().filter(|n| !n.primary).map(|n| n.addr.clone()).collect();
            (!r.slots.is_empty()).then_some(Shard { slots: r.slots, primary, replicas })
        })
        .collect();
    check_coverage(shards)
}

/// Sorted by first slot; every slot owned once.
fn check_coverage(mut shards: Vec<Shard>) -> Result<Vec<Shard>, String> {
    for s in &mut shards {
        s.slots.sort();
    }
    shards.sort_by_key(|s| s.slots.first().copied());
    let mut owned = vec![false; SLOTS];
    for s in &shards {
        for (a, b) in &s.slots {
            if *a > *b || *b as usize >= SLOTS {
                return Err(format!("the cluster reports a bad slot range {a}-{b}"));
            }
            owned[*a as usize..=*b as usize].iter_mut().for_each(|o| *o = true);
        }
    }
    let missing = owned.iter().filter(|o| !**o).count();
    if missing > 0 {
        return Err(format!(
            "{missing} of the cluster's {SLOTS} slots have no primary (cluster_state not ok?); fix the cluster first (redis-cli --cluster check HOST:PORT)"
        ));
    }
    Ok(shards)
}

/// A command on `e`; errors name the endpoint, redacted and scrubbed.
async fn query<T: redis::FromRedisValue>(
    e: &Endpoint,
    c: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    cmd.query_async(c).await.map_err(|err| format!("{} {}: {}", e.role, e.redacted(), e.scrub(&err.to_string())))
}

/// Whether the server behind `c` runs in cluster mode (`INFO cluster`).
pub async fn enabled(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<bool, String> {
    let info: String = query(e, c, redis::cmd("INFO").arg("cluster")).await?;
    Ok(super::info_field(&info, "cluster_enabled") == Some("1"))
}

/// What the node behind `c` reports of its cluster.
async fn reported(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<Vec<Reported>, String> {
    match redis::cmd("CLUSTER").arg("SHARDS").query_async::<Value>(c).await {
        Ok(v) => reported_shards(&v, e.tls()),
        // Before Redis 7: no CLUSTER SHARDS.
        Err(err) if err.to_string().to_ascii_lowercase().contains("unknown subcommand") => {
            let listing: String = query(e, c, redis::cmd("CLUSTER").arg("NODES")).await?;
            reported_nodes(&listing)
        }
        Err(err) => Err(format!("CLUSTER SHARDS: {}", e.scrub(&err.to_string()))),
    }
    .map_err(|why| format!("{} {}: {why}", e.role, e.redacted()))
}

/// The shards, asked of the node behind `c`.
pub async fn discover(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<Vec<Shard>, String> {
    shards_of(reported(e, c).await?).map_err(|why| format!("{} {}: {why}", e.role, e.redacted()))
}

/// Every node the cluster reports, failed ones included, by shard (its
/// primary first); asked of the node behind `c`.
pub async fn nodes(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<Vec<Node>, String> {
    let mut shards = reported(e, c).await?;
    shards.sort_by_key(|s| s.slots.first().copied());
    Ok(shards
        .into_iter()
        .flat_map(|mut s| {
            s.nodes.sort_by_key(|n| !n.primary);
            s.nodes
        })
        .collect())
}

/// The slots a node is moving, from its own line (`myself`) of `CLUSTER
/// NODES`: `[5461->-ID]` migrating out, `[5461-<-ID]` importing. Only a
/// node's own line lists them.
pub fn open_slots_of(listing: &str) -> Vec<String> {
    let Some(own) = own_line(listing) else {
        return Vec::new();
    };
    own.split_whitespace()
        .skip(8)
        .filter_map(|s| {
            let s = s.strip_prefix('[')?.strip_suffix(']')?;
            if let Some((slot, _)) = s.split_once("->-") {
                Some(format!("migrating slot {slot}"))
            } else {
                s.split_once("-<-").map(|(slot, _)| format!("importing slot {slot}"))
            }
        })
        .collect()
}

/// A node's configuration epoch, from its own line (`myself`) of `CLUSTER
/// NODES`. A primary bumps it when it takes a slot (the last step of moving
/// one) or wins a failover, so an unchanged epoch means no slot came to it.
pub fn config_epoch_of(listing: &str) -> Option<u64> {
    own_line(listing)?.split_whitespace().nth(6)?.parse().ok()
}

/// A node's own line (flagged `myself`) of its `CLUSTER NODES`.
fn own_line(listing: &str) -> Option<&str> {
    listing.lines().find(|l| l.split_whitespace().nth(2).is_some_and(|f| f.contains("myself")))
}

/// The address of the primary a node replicates, from its own line
/// (`myself,slave <primary id>`) of `CLUSTER NODES`; `None` for a primary.
pub fn primary_of_replica(listing: &str) -> Option<String> {
    let own: Vec<&str> = own_line(listing)?.split_whitespace().collect();
    if !own.get(2)?.split(',').any(|f| f == "slave" || f == "replica") {
        return None;
    }
    let id = *own.get(3)?;
    let primary = listing.lines().find(|l| l.split_whitespace().next() == Some(id))?;
    // `ip:port@cport[,hostname]`
    Some(primary.split_whitespace().nth(1)?.split(['@', ',']).next()?.to_string())
}

/// What one primary (as the slot map had it) says of itself: the ground for
/// telling that no slot moved while a copy scanned.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnView {
    pub primary: String,
    pub config_epoch: u64,
    /// `migrating slot N` / `importing slot N`.
    pub open_slots: Vec<String>,
    /// The primary it now replicates: it failed over, even if a node asked
    /// for the slot map has not heard yet.
    pub replica_of: Option<String>,
}

/// The slot map and every primary's config epoch at one moment: equal
/// snapshots before and after a scan mean no slot moved in between.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotSnapshot {
    /// Each shard's slots, `0-5460 | 5461-10922 | …`.
    pub layout: String,
    pub epochs: Vec<(String, u64)>,
}

/// Every slot being moved, one `ADDR migrating|importing slot N` each.
pub fn open_slots(views: &[OwnView]) -> Vec<String> {
    views.iter().flat_map(|v| v.open_slots.iter().map(move |o| format!("{} {o}", v.primary))).collect()
}

/// Which primary owns each slot.
struct SlotMap {
    shards: Vec<Shard>,
    /// Index into `shards`, per slot.
    owner: Vec<u16>,
}

impl SlotMap {
    fn new(shards: Vec<Shard>) -> SlotMap {
        let mut owner = vec![0u16; SLOTS];
        for (i, s) in shards.iter().enumerate() {
            for (a, b) in &s.slots {
                owner[*a as usize..=*b as usize].iter_mut().for_each(|o| *o = i as u16);
            }
        }
        SlotMap { shards, owner }
    }
}

/// How many times one command follows MOVED/ASK/TRYAGAIN before the copy gives up.
const MAX_REDIRECTS: usize = 16;

/// A cluster endpoint: the slot map and one connection per node, shared by
/// every batch of a copy.
pub struct Cluster {
    endpoint: Endpoint,
    map: RwLock<SlotMap>,
    conns: tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>,
}

impl Cluster {
    /// Discovers the shards through `seed` and connects to every primary.
    pub async fn connect(e: &Endpoint, mut seed: MultiplexedConnection) -> Result<Arc<Cluster>, String> {
        if e.db() != 0 {
            return Err(format!(
                "the {} {e} is a Redis Cluster, which has only database 0; drop /{} from the URL",
                e.role,
                e.db()
            ));
        }
        let shards = discover(e, &mut seed).await?;
        let cluster = Arc::new(Cluster {
            endpoint: e.clone(),
            map: RwLock::new(SlotMap::new(shards.clone())),
            conns: Default::default(),
        });
        for s in &shards {
            cluster.node(&s.primary).await?;
        }
        Ok(cluster)
    }

    /// The shards as last discovered, sorted by first slot.
    pub fn shards(&self) -> Vec<Shard> {
        self.map.read().map(|m| m.shards.clone()).unwrap_or_default()
    }

    /// A connection to the node at `addr`, made once.
    pub async fn node(&self, addr: &str) -> Result<MultiplexedConnection, String> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(addr) {
            return Ok(c.clone());
        }
        let c = self.endpoint.open_at(addr).await?;
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// The primary that owns `slot` now, as far as this map knows.
    pub fn owner(&self, slot: u16) -> String {
        self.map.read().map(|m| m.shards[m.owner[slot as usize] as usize].primary.clone()).unwrap_or_default()
    }

    /// A connection to the primary owning `slot`.
    pub async fn node_for(&self, slot: u16) -> Result<MultiplexedConnection, String> {
        self.node(&self.owner(slot)).await
    }

    /// Asks the cluster again who owns what (after a MOVED).
    pub async fn refresh(&self) -> Result<(), String> {
        let seeds: Vec<String> = self.shards().into_iter().map(|s| s.primary).collect();
        let mut last = String::from("no node to ask");
        for addr in seeds {
            let mut c = match self.node(&addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match discover(&self.endpoint, &mut c).await {
                Ok(shards) => {
                    if let Ok(mut m) = self.map.write() {
                        *m = SlotMap::new(shards);
                    }
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Runs `cmds` (each on keys of the given slot): one pipeline per
    /// primary, all at once; replies in the order of `cmds`. A reply that is
    /// a server error other than a redirection is returned as it is.
    pub async fn run(&self, cmds: Vec<(u16, redis::Cmd)>) -> Result<Vec<Value>, String> {
        let mut out: Vec<Option<Value>> = vec![None; cmds.len()];
        let mut pending: Vec<usize> = (0..cmds.len()).collect();
        // Each command moves into its shard's pipeline (a RESTORE carries the
        // key's whole payload: no copy of it per key); one that is redirected
        // is cloned back out of that pipeline for the next round.
        let (slots, mut held): (Vec<u16>, Vec<Option<redis::Cmd>>) =
            cmds.into_iter().map(|(slot, c)| (slot, Some(c))).unzip();
        // Commands told to ASK another node, and which.
        let mut ask: HashMap<usize, String> = HashMap::new();
        for round in 0..=MAX_REDIRECTS {
            let mut groups: HashMap<(String, bool), Vec<usize>> = HashMap::new();
            {
                // One look at the map per round, one group per shard.
                let map = self.map.read().map_err(|_| "the slot map is poisoned".to_string())?;
                let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); map.shards.len()];
                for i in pending.drain(..) {
                    match ask.get(&i) {
                        Some(addr) => groups.entry((addr.clone(), true)).or_default().push(i),
                        None => by_shard[map.owner[slots[i] as usize] as usize].push(i),
                    }
                }
                for (shard, idx) in map.shards.iter().zip(by_shard) {
                    if !idx.is_empty() {
                        groups.entry((shard.primary.clone(), false)).or_default().extend(idx);
                    }
                }
            }
            let mut batches = Vec::with_capacity(groups.len());
            for ((addr, asking), idx) in groups {
                let mut p = redis::Pipeline::with_capacity(if asking { idx.len() * 2 } else { idx.len() });
                p.ignore_errors();
                for i in &idx {
                    if asking {
                        p.cmd("ASKING").ignore();
                    }
                    p.add_command(held[*i].take().ok_or("a command was sent twice in one round")?);
                }
                batches.push((addr, asking, idx, p));
            }
            let sent = batches.iter().map(|(addr, _, _, p)| async move {
                let mut c = self.node(addr).await?;
                p.query_async::<Vec<Value>>(&mut c).await.map_err(|e| {
                    format!(
                        "{} {} (node {addr}): {}",
                        self.endpoint.role,
                        self.endpoint,
                        self.endpoint.scrub(&e.to_string())
                    )
                })
            });
            let answered = try_join_all(sent).await?;
            let (mut moved, mut busy) = (false, false);
            for ((_, asking, idx, p), replies) in batches.iter().zip(answered) {
                // The pipeline's own commands, without its ASKINGs.
                let sent = p.cmd_iter().skip(usize::from(*asking)).step_by(if *asking { 2 } else { 1 });
                for ((&i, cmd), r) in idx.iter().zip(sent).zip(replies) {
                    let again = match r {
                        Value::ServerError(e) if e.code() == "MOVED" => {
                            moved = true;
                            ask.remove(&i);
                            true
                        }
                        Value::ServerError(e) if e.code() == "ASK" => {
                            let to = e.details().and_then(|d| d.split_whitespace().nth(1)).unwrap_or("").to_string();
                            ask.insert(i, to);
                            true
                        }
                        // A multi-key command mid-migration, or a failover under way.
                        Value::ServerError(e) if e.code() == "TRYAGAIN" || e.code() == "CLUSTERDOWN" => {
                            busy = true;
                            true
                        }
                        other => {
                            out[i] = Some(other);
                            false
                        }
                    };
                    if again {
                        held[i] = Some(cmd.clone());
                        pending.push(i);
                    }
                }
            }
            if pending.is_empty() {
                return Ok(out.into_iter().map(|v| v.unwrap_or(Value::Nil)).collect());
            }
            if moved {
                self.refresh().await?;
            }
            if busy {
                tokio::time::sleep(Duration::from_millis(50 << round.min(4))).await;
            }
        }
        Err(format!(
            "{} {}: {} commands still redirected after {MAX_REDIRECTS} tries (slots moving too fast?)",
            self.endpoint.role,
            self.endpoint,
            pending.len()
        ))
    }

    /// Connections to every primary, with its shard.
    pub async fn primaries(&self) -> Result<Vec<(Shard, MultiplexedConnection)>, String> {
        let mut out = Vec::new();
        for s in self.shards() {
            let c = self.node(&s.primary).await?;
            out.push((s, c));
        }
        Ok(out)
    }

    /// Per shard, the node its keys are read on, and a connection to it: its
    /// primary, or with `--from-replicas` (`Endpoint::reads_replicas`) a
    /// replica that answers and is in step with its primary (`out_of_sync`),
    /// switched to `READONLY` so it serves reads of its shard's keys. A shard
    /// without one is read on its primary, and a sentence in the second list
    /// says so.
    pub async fn readers(&self) -> Result<(Vec<(Shard, String, MultiplexedConnection)>, Vec<String>), String> {
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        for s in self.shards() {
            let mut read = None;
            let mut tried = Vec::new();
            // What the primary has written by now: a replica read must hold
            // it, or the writes just before the copy (the app stopped for
            // it) would be missing or old.
            // A primary that cannot be asked tells nothing: its replicas are
            // judged by their link alone (one whose primary is gone shows it down).
            let written = match s.replicas.is_empty() || !self.endpoint.reads_replicas() {
                true => None,
                false => {
                    let asked = async {
                        let mut p = self.node(&s.primary).await?;
                        query::<String>(&self.endpoint, &mut p, redis::cmd("INFO").arg("replication")).await
                    };
                    let info = tokio::time::timeout(Duration::from_secs(2), asked).await.ok().and_then(Result::ok);
                    info.and_then(|i| super::info_field(&i, "master_repl_offset").and_then(|o| o.parse::<u64>().ok()))
                }
            };
            for addr in s.replicas.iter().filter(|_| self.endpoint.reads_replicas()) {
                let opened = async {
                    let mut c = self.endpoint.open_at(addr).await?;
                    query::<()>(&self.endpoint, &mut c, &redis::cmd("READONLY")).await?;
                    let asked = Instant::now();
                    loop {
                        let info: String = query(&self.endpoint, &mut c, redis::cmd("INFO").arg("replication")).await?;
                        if let Some(why) = out_of_sync(&info) {
                            return Err(format!("{addr}: {why}"));
                        }
                        match behind(&info, written) {
                            None => break,
                            Some(why) if asked.elapsed() >= CATCH_UP => return Err(format!("{addr}: {why}")),
                            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                    Ok::<_, String>(c)
                };
                // Two seconds to answer, and the time to catch up.
                match tokio::time::timeout(Duration::from_secs(2) + CATCH_UP, opened).await {
                    Ok(Ok(c)) => {
                        read = Some((addr.clone(), c));
                        break;
                    }
                    Ok(Err(e)) => tried.push(e),
                    Err(_) => tried.push(format!(
                        "{addr}: no answer within {} s",
                        (Duration::from_secs(2) + CATCH_UP).as_secs_f32()
                    )),
                }
            }
            let (addr, c) = match read {
                Some(r) => r,
                None => {
                    if self.endpoint.reads_replicas() {
                        let why = if tried.is_empty() { "it has no replica".to_string() } else { tried.join("; ") };
                        notes.push(format!("shard {}: read on its primary {} ({why})", s.slots_text(), s.primary));
                    }
                    (s.primary.clone(), self.node(&s.primary).await?)
                }
            };
            out.push((s, addr, c));
        }
        Ok((out, notes))
    }

    /// Every primary's own view (its `CLUSTER NODES` line): its config epoch
    /// and the slots it is moving (a resharding under way, or one left open).
    pub async fn own_views(&self) -> Result<Vec<OwnView>, String> {
        let mut out = Vec::new();
        for (s, mut c) in self.primaries().await? {
            let listing: String = query(&self.endpoint, &mut c, redis::cmd("CLUSTER").arg("NODES")).await?;
            let config_epoch = config_epoch_of(&listing)
                .ok_or_else(|| format!("{}: its CLUSTER NODES has no line of its own (myself)", s.primary))?;
            out.push(OwnView {
                primary: s.primary,
                config_epoch,
                open_slots: open_slots_of(&listing),
                replica_of: primary_of_replica(&listing),
            });
        }
        Ok(out)
    }

    /// The slot map and epochs now; an error if a slot is being moved.
    /// Each primary's own view is read before the map, so a move that ends
    /// in between still shows as a bumped epoch.
    pub async fn snapshot(&self) -> Result<SlotSnapshot, String> {
        let views = self.own_views().await?;
        let open = open_slots(&views);
        if !open.is_empty() {
            return Err(format!("the cluster is moving slots between its shards ({})", open.join(", ")));
        }
        self.refresh().await?;
        let layout: Vec<String> = self.shards().iter().map(|s| s.slots_text()).collect();
        Ok(SlotSnapshot {
            layout: layout.join(" | "),
            epochs: views.into_iter().map(|v| (v.primary, v.config_epoch)).collect(),
        })
    }

    /// The connection a shard is read on: `addr` is its primary, or a replica
    /// (switched to `READONLY`, as `readers` does).
    pub async fn reader_at(&self, shard: &Shard, addr: &str) -> Result<MultiplexedConnection, String> {
        if addr == shard.primary {
            return self.node(addr).await;
        }
        let mut c = self.endpoint.open_at(addr).await?;
        query::<()>(&self.endpoint, &mut c, &redis::cmd("READONLY")).await?;
        Ok(c)
    }

    /// (keys, expiring keys), summed over the primaries.
    pub async fn key_counts(&self) -> Result<(u64, u64), String> {
        Ok(self.key_counts_and_run_ids().await?.0)
    }

    /// (keys, expiring keys) summed over the primaries, and each primary's
    /// `run_id` (what tells one cluster from another).
    pub async fn key_counts_and_run_ids(&self) -> Result<((u64, u64), Vec<String>), String> {
        let (counts, servers) = self.key_counts_and_servers().await?;
        Ok((counts, servers.run_ids))
    }

    /// (keys, expiring keys) summed over the primaries, and the primaries'
    /// `run_id`s and replication IDs, from one reading of each.
    pub async fn key_counts_and_servers(&self) -> Result<((u64, u64), super::checkpoint::TargetServers), String> {
        // The default sections hold them all (`INFO server keyspace` needs Redis 7), asked of every primary at once.
        let infos = futures::future::try_join_all(
            self.primaries()
                .await?
                .into_iter()
                .map(|(_, mut c)| async move { query::<String>(&self.endpoint, &mut c, &redis::cmd("INFO")).await }),
        )
        .await?;
        let mut total = (0, 0);
        let mut servers = super::checkpoint::TargetServers::default();
        for info in &infos {
            let (k, x) = super::keyspace(info, 0);
            total = (total.0 + k, total.1 + x);
            servers.add_from_info(info);
        }
        Ok((total, servers))
    }
}

/// Which of `reads` (each a shard's slots, the replica it was read on, and
/// the connection) are out of step with their primary now: each one's
/// index in `reads`, with a sentence. Asked again once a scan is over:
/// `readers` chose them in step, and one cut off since served what it last
/// had.
pub async fn fallen_behind(
    endpoint: &Endpoint,
    reads: &[(String, String, MultiplexedConnection)],
) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, (slots, addr, c)) in reads.iter().enumerate() {
        let (mut c, ask) = (c.clone(), redis::cmd("INFO").arg("replication").clone());
        let why = match tokio::time::timeout(Duration::from_secs(2), query::<String>(endpoint, &mut c, &ask)).await {
            Ok(Ok(info)) => out_of_sync(&info),
            Ok(Err(e)) => Some(format!("it could not be asked again ({e}), so nothing shows it stayed in step")),
            Err(_) => Some("it gave no answer within 2 s when asked again, so nothing shows it stayed in step".into()),
        };
        out.extend(why.map(|why| (i, format!("shard {slots} was read on its replica {addr}: {why}"))));
    }
    out
}

/// Longest a replica may go without word from its primary: a primary that
/// writes nothing still pings its replicas every 10 s (Redis's default
/// `repl-ping-replica-period`), while a link cut without a reset shows as
/// down only after `repl-timeout` (60 s).
const MOST_SILENT_S: u64 = 30;

/// How long a replica that has not applied all its primary wrote before
/// the copy is waited for: one in step catches up in milliseconds.
const CATCH_UP: Duration = Duration::from_millis(1500);

/// Why a replica (its `INFO replication`) lacks writes its primary made
/// by `written` (its `master_repl_offset` then), if it does: it has not
/// applied them yet (`slave_repl_offset`, what it applied; received is
/// not served). None when `written` is unknown.
fn behind(info: &str, written: Option<u64>) -> Option<String> {
    let written = written?;
    let applied = super::info_field(info, "slave_repl_offset").and_then(|o| o.parse::<u64>().ok());
    match applied {
        Some(a) if a >= written => None,
        Some(a) => Some(format!(
            "it has applied its primary's writes up to offset {a}, {} bytes short of the {written} its primary had \
             written when it was chosen, so it would serve old data",
            written - a
        )),
        None => Some(
            "its INFO replication tells no slave_repl_offset, so nothing shows it holds its primary's \
                      writes"
                .into(),
        ),
    }
}

/// Why a replica (its `INFO replication`) would serve old data, if it
/// would: its link to its primary down or silent (Redis answers reads from
/// what it last had, by default), or no replica at all now.
fn out_of_sync(info: &str) -> Option<String> {
    let field = |k| super::info_field(info, k);
    if field("role") != Some("slave") {
        return Some(format!("it is no replica now (role {})", field("role").unwrap_or("unknown")));
    }
    if field("master_link_status") != Some("up") {
        if field("master_sync_in_progress") == Some("1") {
            return Some("it is taking a full sync from its primary, so it holds old or partial data".into());
        }
        // -1 (never up since it started), or on old versions a Unix time.
        let down = field("master_link_down_since_seconds").and_then(|s| s.parse::<u64>().ok()).filter(|s| *s < 1 << 30);
        return Some(match down {
            Some(s) => format!("its link to its primary has been down for {s} s, so it may serve old data"),
            None => "its link to its primary is down, so it may serve old data".into(),
        });
    }
    match field("master_last_io_seconds_ago").and_then(|s| s.parse::<u64>().ok()) {
        Some(s) if s > MOST_SILENT_S => Some(format!(
            "no word from its primary for {s} s (master_last_io_seconds_ago; it pings every 10 s by default), so it \
             may serve old data"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_read_only_once_it_applied_what_its_primary_wrote_before() {
        let info = |applied: &str| format!("# Replication\r\nrole:slave\r\nslave_read_repl_offset:2000\r\n{applied}");
        assert_eq!(behind(&info("slave_repl_offset:1518\r\n"), None), None, "nothing to wait for");
        assert_eq!(behind(&info("slave_repl_offset:1518\r\n"), Some(1518)), None);
        assert_eq!(behind(&info("slave_repl_offset:1600\r\n"), Some(1518)), None);
        // Received (slave_read_repl_offset) is not applied.
        assert_eq!(
            behind(&info("slave_repl_offset:1487\r\n"), Some(1518)).unwrap(),
            "it has applied its primary's writes up to offset 1487, 31 bytes short of the 1518 its primary had \
             written when it was chosen, so it would serve old data"
        );
        assert!(behind(&info(""), Some(1518)).unwrap().contains("no slave_repl_offset"));
    }

    #[test]
    fn a_replica_whose_link_is_down_syncing_or_silent_is_not_read() {
        let replica = |link: &str, rest: &str| {
            format!(
                "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:{link}\r\n{rest}"
            )
        };
        let up = |io: u64| replica("up", &format!("master_last_io_seconds_ago:{io}\r\nmaster_sync_in_progress:0\r\n"));
        assert_eq!(out_of_sync(&up(9)), None);
        assert_eq!(out_of_sync(&up(30)), None);
        assert!(out_of_sync(&up(31)).unwrap().starts_with("no word from its primary for 31 s"));
        let down = |since: &str, sync: u8| {
            replica("down", &format!("master_sync_in_progress:{sync}\r\nmaster_link_down_since_seconds:{since}\r\n"))
        };
        assert_eq!(
            out_of_sync(&down("600", 0)).unwrap(),
            "its link to its primary has been down for 600 s, so it may serve old data"
        );
        // Never up since it started: -1, or a Unix time on old versions.
        for never in ["-1", "1764748800"] {
            assert_eq!(
                out_of_sync(&down(never, 0)).unwrap(),
                "its link to its primary is down, so it may serve old data"
            );
        }
        assert!(out_of_sync(&down("-1", 1)).unwrap().contains("full sync"));
        assert_eq!(out_of_sync("# Replication\r\nrole:master\r\n").unwrap(), "it is no replica now (role master)");
    }

    #[test]
    fn slots_follow_redis_including_hash_tags() {
        // Redis Cluster specification: CRC16 of "123456789" is 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // CLUSTER KEYSLOT on Redis 7.0.15.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"{user1000}.following"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn temporary_names_share_the_key_slot() {
        for k in [&b"plain"[..], b"{tag}rest", b"a}b", b"x{}y", b"{", b"", b"\xff\x00{"] {
            let t = tmp_name("__cutover_tmp__", k);
            assert_eq!(key_slot(&t), key_slot(k), "{:?}", String::from_utf8_lossy(&t));
            assert!(t.starts_with(b"__cutover_tmp__") && t.ends_with(k));
        }
    }

    #[test]
    fn cluster_shards_and_cluster_nodes_give_the_same_shards() {
        let node = |port: i64, role: &str, health: &str| {
            Value::Array(vec![
                Value::BulkString(b"id".to_vec()),
                Value::BulkString(b"x".to_vec()),
                Value::BulkString(b"port".to_vec()),
                Value::Int(port),
                Value::BulkString(b"ip".to_vec()),
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::BulkString(b"role".to_vec()),
                Value::BulkString(role.as_bytes().to_vec()),
                Value::BulkString(b"health".to_vec()),
                Value::BulkString(health.as_bytes().to_vec()),
            ])
        };
        let shard = |slots: &[i64], nodes: Vec<Value>| {
            Value::Array(vec![
                Value::BulkString(b"slots".to_vec()),
                Value::Array(slots.iter().map(|s| Value::Int(*s)).collect()),
                Value::BulkString(b"nodes".to_vec()),
                Value::Array(nodes),
            ])
        };
        let reply = Value::Array(vec![
            shard(&[5461, 10922], vec![node(7001, "master", "online"), node(7004, "replica", "online")]),
            shard(&[0, 5460], vec![node(7000, "master", "online"), node(7003, "replica", "fail")]),
            shard(&[10923, 16383], vec![node(7002, "master", "online")]),
        ]);
        let shards = parse_shards(&reply, false).unwrap();
        assert_eq!(shards.len(), 3);
        assert_eq!((shards[0].primary.as_str(), shards[0].slots_text()), ("127.0.0.1:7000", "0-5460".into()));
        assert!(shards[0].replicas.is_empty(), "a failed replica is left out");
        assert_eq!(shards[1].replicas, ["127.0.0.1:7004"]);
        let listing = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [5461->-c3]
c3 127.0.0.1:7002@17002,host master - 0 0 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave b2 0 0 2 connected
e5 127.0.0.1:7003@17003 slave,fail a1 0 0 1 connected
";
        // TLS: the tls-port; the preferred endpoint (a hostname) over the ip.
        let tls_node = Value::Array(
            [
                ("port", "0"),
                ("tls-port", "7443"),
                ("ip", "10.0.0.1"),
                ("endpoint", "node-1.cache.example"),
                ("role", "master"),
            ]
            .iter()
            .flat_map(|(k, v)| [Value::BulkString(k.as_bytes().to_vec()), Value::BulkString(v.as_bytes().to_vec())])
            .collect(),
        );
        let whole = Value::Array(vec![shard(&[0, 16383], vec![tls_node])]);
        assert_eq!(parse_shards(&whole, true).unwrap()[0].primary, "node-1.cache.example:7443");
        assert_eq!(parse_shards(&whole, false).unwrap()[0].primary, "node-1.cache.example:0");
        let from_nodes = parse_nodes(listing).unwrap();
        assert_eq!(from_nodes, shards);
        // The matrix lists every node, the failed replica too, with its shard's slots.
        let every = |r: Vec<Reported>| -> Vec<(String, bool, String, bool)> {
            let mut v: Vec<_> =
                r.into_iter().flat_map(|s| s.nodes).map(|n| (n.addr, n.primary, n.slots, n.failed)).collect();
            v.sort();
            v
        };
        let listed = every(reported_nodes(listing).unwrap());
        assert_eq!(listed, every(reported_shards(&reply, false).unwrap()));
        assert_eq!(listed.len(), 5);
        assert!(listed.contains(&("127.0.0.1:7003".into(), false, "0-5460".into(), true)), "{listed:?}");
        assert!(listed.contains(&("127.0.0.1:7004".into(), false, "5461-10922".into(), false)), "{listed:?}");
        // Only the node's own line counts: b2 sees its own migration, a1 none.
        assert!(open_slots_of(listing).is_empty(), "a1 moves nothing; b2's line is not its own");
        let b2 = listing
            .replace("myself,master", "master")
            .replace("b2 127.0.0.1:7001@17001 master", "b2 127.0.0.1:7001@17001 myself,master");
        assert_eq!(open_slots_of(&b2), ["migrating slot 5461"]);
        let importing = "c3 127.0.0.1:7002@17002 myself,master - 0 0 3 connected 10923-16383 [5461-<-b2] [5462-<-b2]\n";
        assert_eq!(open_slots_of(importing), ["importing slot 5461", "importing slot 5462"]);
        assert_eq!(config_epoch_of(importing), Some(3));
        assert_eq!(primary_of_replica(listing), None, "a1 is a primary");
        // After a failover the old primary's own line says whose replica it is.
        let failed_over = "a1 127.0.0.1:7000@17000 myself,slave d4 0 0 7 connected\n\
                           d4 127.0.0.1:7003@17003,node-d4 master - 0 0 7 connected 0-5460\n";
        assert_eq!(primary_of_replica(failed_over).as_deref(), Some("127.0.0.1:7003"));
        assert_eq!(
            config_epoch_of("b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n"),
            None,
            "not its own"
        );
        let gap = parse_nodes("a1 127.0.0.1:7000@17000 master - 0 0 1 connected 0-100\n").unwrap_err();
        assert!(gap.contains("16283 of the cluster's 16384 slots have no primary"), "{gap}");
        assert!(parse_nodes("short line").unwrap_err().contains("fewer than 8 fields"));
    }
}
