//! The copy: SCAN the source (COUNT, rate limit), MEMORY USAGE of each key
//! of a batch (unless `--no-size-check`), then the expiry (PEXPIRETIME, or
//! PTTL before Redis 7.0) + DUMP pipelined, then RESTORE … ABSTTL (a PTTL:
//! RESTORE with what is left of it) pipelined on the target; at most
//! `pipeline` batches in
//! flight. Big keys, and every key in `types` mode, are rebuilt in chunks
//! under a temporary name and renamed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::checkpoint::{self, Checkpoint, ScanPlace, ShardPlace, ShardRun};
use super::cluster::{self, Cluster, Shard};
use super::progress::{CopyProgress, Counters};
use super::query::{error_text, key_counts, node_for_key, per_key, q, qp, short};
use super::size;
use super::url::Endpoint;
use super::verify;
use super::{Expiry, ExpiryRead, ExpiryWrite, Mode, OnConflict};

/// Sees (and may change, as SCAN may return a key twice) each SCAN batch.
pub type ScanHook = Arc<dyn Fn(&mut Vec<Vec<u8>>) + Send + Sync>;

pub struct CopyOptions {
    pub from: Endpoint,
    pub to: Endpoint,
    pub pattern: Option<String>,
    pub on_conflict: OnConflict,
    pub mode: Mode,
    /// Keys above this many bytes (MEMORY USAGE) are copied in chunks.
    /// `None`: no size check; every key is DUMPed whole, sparing the source
    /// a third of its commands (see `Ctx::batch`).
    pub chunk_threshold: Option<u64>,
    /// Keys per SCAN and per batch; into a cluster, this many per shard of
    /// the target, up to 3× (`MAX_SCAN_PER_SHARD_FACTOR`).
    pub scan_count: usize,
    /// Batches in flight at once.
    pub pipeline: usize,
    /// Keys per second, at most.
    pub rate: Option<u64>,
    /// Where the checkpoint lives; `None`: no checkpoint.
    pub checkpoint: Option<checkpoint::Place>,
    pub checkpoint_every: Duration,
    /// The copy's lease in a shared store: checked before each batch, so a
    /// copy whose lease another took over writes nothing more.
    pub lease: Option<Arc<crate::store::lease::Lease>>,
    /// Continue from this checkpoint.
    pub resume: Option<Checkpoint>,
    /// Set to stop after the batches in flight (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Called with each SCAN batch before its keys are read (tests use it
    /// to let keys expire in flight, or to return keys twice as SCAN may).
    pub after_scan: Option<ScanHook>,
    /// Who runs the copy: the words a stopped copy gives for going on.
    pub run_by: RunBy,
}

/// Who runs a copy. A stopped copy says how to go on in its words: a
/// checklist action has no flags, and running it again is its `--resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunBy {
    #[default]
    Command,
    ChecklistAction,
}

impl RunBy {
    /// How to continue from the checkpoint.
    fn resume(self) -> &'static str {
        match self {
            RunBy::Command => "rerun with --resume",
            RunBy::ChecklistAction => "run this checklist action again (it resumes from the checkpoint)",
        }
    }

    /// What continues from the checkpoint, as the subject of a sentence.
    fn resumer(self) -> &'static str {
        match self {
            RunBy::Command => "--resume",
            RunBy::ChecklistAction => "running this checklist action again",
        }
    }

    /// How to go on after a `fail` copy stopped on a key the target holds.
    /// A resume meets the key again, under the same policy (a checkpoint
    /// keeps it: only a fresh start may change it).
    fn after_conflict(self) -> String {
        let fresh = match self {
            RunBy::Command => {
                "start over with --restart and --on-conflict skip (keeping the target's keys) or replace \
                               (overwriting them)"
            }
            RunBy::ChecklistAction => {
                "start over with `cutover redis copy --restart` and --on-conflict skip (keeping \
                                       the target's keys) or replace (overwriting them) (this action copies only with \
                                       fail)"
            }
        };
        format!("if it is nobody else's, delete it on the target and {} to continue; or {fresh}", self.resume())
    }
}

/// What a copy would do, learnt without writing.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub source_version: String,
    pub target_version: String,
    pub mode: Mode,
    pub mode_reason: String,
    /// Source DBSIZE (every key, whatever --match says).
    pub source_keys: u64,
    pub target_keys: u64,
    pub target_expiring: u64,
    /// The source's `run_id` (changes when it restarts or fails over).
    pub source_run_id: String,
    /// A cluster source: each shard's primary, the node it is read on and
    /// that node's `run_id` (empty for one server).
    pub source_shards: Vec<ShardRun>,
    /// `--from-replicas`: the shards read on their primary instead, and why.
    pub source_notes: Vec<String>,
    /// A cluster target: its shards (empty for one server).
    pub target_shards: Vec<Shard>,
    /// The target's `run_id` and replication ID (each primary's, for a
    /// cluster): the servers this run's writes go to, kept in the
    /// checkpoint. Empty for a Sentinel target, whose checkpoint keeps only
    /// what its replicas confirmed.
    pub target_servers: checkpoint::TargetServers,
    /// A Sentinel target: its master's replication history as the run
    /// began (None for any other target).
    pub target_history: Option<checkpoint::ReplHistory>,
    /// A Sentinel target: its master's mark when the replicas last
    /// confirmed the writes, kept in each checkpoint saved (moved by the
    /// copy as it goes; shared by the clones of this preflight).
    #[serde(skip)]
    pub target_mark: std::sync::Arc<std::sync::Mutex<Option<checkpoint::ReplMark>>>,
    /// How expiries are read: exactly when every server scanned answers
    /// PEXPIRETIME and the target takes `SET … PXAT`.
    #[serde(skip)]
    pub expiry_read: ExpiryRead,
    /// The target's `evicted_keys` as the copy's first run began (kept in
    /// its checkpoint): more at its end means keys it took were dropped.
    /// Moved to the count read at a failure for evictions, whose checkpoint
    /// starts over, and to a new Sentinel master's own count (shared by the
    /// clones of this preflight).
    #[serde(skip)]
    pub target_evicted: std::sync::Arc<std::sync::Mutex<EvictionBase>>,
    /// A Sentinel target: its master's `maxmemory-policy` evicts keys, so a
    /// master gone with its count of evictions may have dropped some.
    pub target_may_evict: bool,
    /// For tests: moves this machine's clock, as the copy reads it, by this
    /// many ms (a machine whose clock is off from the target's); 0 else.
    #[serde(skip)]
    #[doc(hidden)]
    pub clock_shift_ms: i64,
}

/// Where a copy counts the target's evictions from: its `evicted_keys`
/// then, and (a Sentinel target) the `run_id` of the master it was read on.
#[derive(Debug, Clone, Default)]
pub struct EvictionBase {
    pub count: u64,
    pub on: Option<String>,
}

impl Preflight {
    /// Where a resume of `cp` starts each scan, as found now: every scan
    /// from the start when the target may have lost what it took.
    pub fn resume_of(&self, cp: &Checkpoint) -> checkpoint::Resume {
        if let Some(why) = cp.lineage_broken(self.target_history.as_ref()) {
            return checkpoint::Resume::over(self.source_shards.len(), why);
        }
        if let Some(master) = self.evicted_base().on
            && let Some(why) = cp.evictions_unread(&master, self.target_may_evict)
        {
            return checkpoint::Resume::over(self.source_shards.len(), why);
        }
        let r = cp.resume(&self.source_run_id, &self.source_shards, &self.target_servers);
        // Every scan starting over already (a target restarted, say) needs no other reason.
        if r.places.iter().all(|p| *p == checkpoint::ScanPlace::start()) {
            return r;
        }
        match cp.target_emptied(self.target_keys) {
            Some(why) => checkpoint::Resume::over(self.source_shards.len(), why),
            None => r,
        }
    }

    /// A Sentinel target's mark as last confirmed.
    fn mark(&self) -> Option<checkpoint::ReplMark> {
        self.target_mark.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_mark(&self, mark: Option<checkpoint::ReplMark>) {
        *self.target_mark.lock().unwrap_or_else(|e| e.into_inner()) = mark;
    }

    fn evicted_base(&self) -> EvictionBase {
        self.target_evicted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_evicted_base(&self, base: EvictionBase) {
        *self.target_evicted.lock().unwrap_or_else(|e| e.into_inner()) = base;
    }
}

/// Keys of the source that the target already has.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Conflicts {
    pub count: u64,
    pub scanned: u64,
    /// The first few, for the message.
    pub first: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub mode: Mode,
    pub mode_reason: String,
    /// Since the first run of this copy. A scan that started over counts its
    /// keys again from 0, so each key counts once (what an older checkpoint
    /// counted for no shard is carried until every shard starts over).
    pub total: Counters,
    /// This run only (every write, so a key written again on a scan that
    /// started over counts twice).
    pub run: Counters,
    pub seconds: f64,
    pub resumed: bool,
    /// Stopped by Ctrl-C; the checkpoint holds the rest.
    pub interrupted: bool,
    /// Failovers of a Sentinel endpoint the copy followed, one sentence each.
    pub followed: Vec<String>,
}

#[derive(Debug)]
pub enum CopyError {
    /// Refused before writing anything (exit 2).
    Refused(String),
    /// Failed part-way (exit 1); the checkpoint holds what is done.
    Failed(String),
}

impl CopyError {
    pub fn message(&self) -> &str {
        match self {
            CopyError::Refused(m) | CopyError::Failed(m) => m,
        }
    }
}

pub struct Conns {
    pub src: MultiplexedConnection,
    pub dst: MultiplexedConnection,
    /// `host:port` each connection reached (with Sentinel: the master then).
    pub src_addr: String,
    pub dst_addr: String,
    /// The source is a cluster: its shards' primaries are scanned, not `src`.
    pub src_cluster: Option<Arc<Cluster>>,
    /// The target is a cluster: every write goes to the shard owning its key.
    pub dst_cluster: Option<Arc<Cluster>>,
}

impl Conns {
    pub fn clone_pair(&self) -> Conns {
        Conns {
            src: self.src.clone(),
            dst: self.dst.clone(),
            src_addr: self.src_addr.clone(),
            dst_addr: self.dst_addr.clone(),
            src_cluster: self.src_cluster.clone(),
            dst_cluster: self.dst_cluster.clone(),
        }
    }

    /// Connections to scan on the source: for a cluster, each shard on the
    /// node the preflight chose and took the `run_id` of (its primary, or a
    /// replica with `--from-replicas`), since a SCAN cursor means something
    /// to that node alone; else the one server.
    pub async fn source_nodes(&self, pf: &Preflight) -> Result<Vec<MultiplexedConnection>, String> {
        let Some(cl) = &self.src_cluster else { return Ok(vec![self.src.clone()]) };
        let shards = cl.shards();
        let mut out = Vec::new();
        for s in &pf.source_shards {
            let shard = shards
                .iter()
                .find(|n| n.slots_text() == s.slots)
                .ok_or_else(|| format!("the source cluster's shard {} is gone since the preflight", s.slots))?;
            out.push(cl.reader_at(shard, &s.read_on).await?);
        }
        Ok(out)
    }

    /// A connection to the target's one server, or to each primary of a cluster.
    async fn target_primaries(&self) -> Result<Vec<MultiplexedConnection>, String> {
        Ok(match &self.dst_cluster {
            Some(c) => c.primaries().await?.into_iter().map(|(_, c)| c).collect(),
            None => vec![self.dst.clone()],
        })
    }

    /// Whether the target holds no key at all: DBSIZE 0 on its database, or
    /// on every primary of a cluster. Then a `fail` copy has no conflict to
    /// look for before writing; one that appears later still meets RESTORE
    /// without REPLACE (BUSYKEY) or RENAMENX and stops the copy.
    pub async fn target_empty(&self, to: &Endpoint) -> Result<bool, String> {
        for mut c in self.target_primaries().await? {
            if q::<u64>(to, &mut c, &redis::cmd("DBSIZE")).await? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The `run_id` and replication ID of the target, or of each primary of
    /// a cluster target as the cluster names them now (a failover after the
    /// last write to a shard sent no MOVED to refresh the map).
    pub async fn target_servers(&self, to: &Endpoint) -> Result<checkpoint::TargetServers, String> {
        match &self.dst_cluster {
            Some(c) => {
                c.refresh().await?;
                Ok(c.key_counts_and_servers().await?.1)
            }
            None => {
                // The default sections hold both server and replication, in one reading.
                let info: String = q(to, &mut self.dst.clone(), &redis::cmd("INFO")).await?;
                let mut servers = checkpoint::TargetServers::default();
                servers.add_from_info(&info);
                Ok(servers)
            }
        }
    }

    /// The target master's replication history (a Sentinel target's); None
    /// from a server older than Redis 4, which has no replication ID.
    pub async fn target_history(&self, to: &Endpoint) -> Result<Option<checkpoint::ReplHistory>, String> {
        Ok(repl_history(&replication_info(to, &mut self.dst.clone()).await?))
    }

    /// How many of the servers that took this run's writes (`pf`) the
    /// target has lost since, as read now: restarted or replaced by a
    /// replica (a Sentinel target: a master whose history does not reach
    /// the last confirmed mark), and how many of the rest were a replica
    /// meanwhile (failed over and back: another's data in place of theirs).
    pub async fn target_gone(&self, to: &Endpoint, pf: &Preflight) -> Result<(usize, usize), String> {
        if pf.target_history.is_some() {
            let now = self.target_history(to).await?;
            let lost = matches!((&pf.mark(), &now), (Some(took), Some(now)) if now.lost(took).is_some());
            return Ok((usize::from(lost), 0));
        }
        Ok(pf.target_servers.lost_in(&self.target_servers(to).await?))
    }

    /// Keys the target has evicted since it started (`evicted_keys`, summed
    /// over a cluster's primaries): one full at its maxmemory drops keys
    /// after answering OK to their writes.
    pub async fn target_evicted(&self, to: &Endpoint) -> Result<u64, String> {
        let mut evicted = 0;
        for mut c in self.target_primaries().await? {
            let info: String = q(to, &mut c, redis::cmd("INFO").arg("stats")).await?;
            evicted += super::info_field(&info, "evicted_keys").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok(evicted)
    }

    /// (keys, expiring keys) of the target (summed over a cluster's shards).
    pub async fn target_counts(&self, to: &Endpoint) -> Result<(u64, u64), String> {
        match &self.dst_cluster {
            Some(c) => c.key_counts().await,
            None => key_counts(to, &mut self.dst.clone()).await,
        }
    }
}

/// What became of a checkpoint set back to the start (`saved`), and how
/// the copy goes on.
fn set_back(saved: Result<(), String>, run_by: RunBy) -> String {
    match saved {
        Ok(()) => format!("its checkpoint now starts the scan over: {}, writing every key again", run_by.resume()),
        Err(why) => format!(
            "its checkpoint could not be set back ({why}): start over with `cutover redis copy --restart \
             --on-conflict replace`"
        ),
    }
}

/// Whether the server behind `c` drops keys it took once full: its
/// `maxmemory-policy` is not `noeviction` (the policy decides, as
/// `maxmemory` may be set at any time; none read: it may).
async fn may_evict(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<bool, String> {
    let info: String = q(e, c, redis::cmd("INFO").arg("memory")).await?;
    Ok(super::info_field(&info, "maxmemory_policy") != Some("noeviction"))
}

async fn replication_info(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<String, String> {
    q(e, c, redis::cmd("INFO").arg("replication")).await
}

/// A master's replication history from its `INFO replication`; None
/// before Redis 4 (no replication ID).
fn repl_history(info: &str) -> Option<checkpoint::ReplHistory> {
    let field = |f: &str| super::info_field(info, f);
    let number = |f: &str| field(f).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(checkpoint::ReplHistory {
        replid: field("master_replid")?.to_string(),
        offset: number("master_repl_offset"),
        replid2: field("master_replid2").filter(|id| !id.bytes().all(|b| b == b'0')).map(str::to_string),
        second_offset: number("second_repl_offset"),
    })
}

/// What a master's replicas all hold, from its `INFO replication` read
/// after a WAIT they confirmed: its replication ID at the least offset any
/// online replica acknowledged (its own offset with none). A replica promoted
/// later holds at least that much.
fn confirmed_mark(info: &str) -> Option<checkpoint::ReplMark> {
    let h = repl_history(info)?;
    let acked = info
        .lines()
        // A replica still in its full sync (`wait_bgsave`, `send_bulk`)
        // reports offset 0 and counts in no WAIT: only online ones hold data.
        .filter(|l| l.starts_with("slave") && l.contains(":ip=") && l.contains(",state=online,"))
        .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("offset="))?.trim().parse::<u64>().ok())
        .min();
    Some(checkpoint::ReplMark { replid: h.replid, offset: acked.unwrap_or(h.offset) })
}

/// (redis_version, run_id) from `INFO server`.
async fn server_info(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<(String, String), String> {
    let info: String = q(e, c, redis::cmd("INFO").arg("server")).await?;
    let field = |f: &str| super::info_field(&info, f).unwrap_or("?").to_string();
    Ok((field("redis_version"), field("run_id")))
}

/// Refuses a target that refuses writes since its last save failed (it
/// answers MISCONF, even to PING): a copy with nothing left to write would
/// end "done" on it. Any other failure shows on the first write.
async fn takes_writes(to: &Endpoint, dst: &MultiplexedConnection, cluster: Option<&Cluster>) -> Result<(), String> {
    let nodes = match cluster {
        Some(c) => c.primaries().await?.into_iter().map(|(s, c)| (s.primary, c)).collect(),
        None => vec![(to.redacted(), dst.clone())],
    };
    for (node, mut c) in nodes {
        if let Err(e) = redis::cmd("PING").query_async::<String>(&mut c).await
            && e.code() == Some("MISCONF")
        {
            return Err(format!(
                "the target {to} refuses writes ({node}: {}); its last save failed (a full disk, or a directory it \
                 cannot write): fix that, or let it take writes without saving (CONFIG SET \
                 stop-writes-on-bgsave-error no), then copy",
                to.scrub(&e.to_string())
            ));
        }
    }
    Ok(())
}

/// Connects to `e`; a cluster (a `redis+cluster://` URL, or a node that
/// says `cluster_enabled:1`) also gets its shards discovered.
pub async fn open_side(e: &Endpoint) -> Result<(MultiplexedConnection, String, Option<Arc<Cluster>>), String> {
    let e = &e.clone().with_sentinel_majority();
    let (mut c, addr) = e.open().await?;
    let is_cluster = e.cluster_nodes().is_some() || cluster::enabled(e, &mut c).await?;
    if e.reads_replicas() && !is_cluster {
        return Err(format!(
            "--from-replicas reads a Redis Cluster's replicas, but the {} {e} is not a cluster; drop the flag",
            e.role
        ));
    }
    let cl = if is_cluster { Some(Cluster::connect(e, c.clone()).await?) } else { None };
    Ok((c, addr, cl))
}

/// (keys, expiring keys) of the endpoint: its database, or summed over a
/// cluster's primaries.
pub async fn endpoint_counts(e: &Endpoint) -> Result<(u64, u64), String> {
    let (mut c, _, cluster) = open_side(e).await?;
    match cluster {
        Some(cl) => cl.key_counts().await,
        None => key_counts(e, &mut c).await,
    }
}

/// Connects to both ends and decides the mode; reads only.
pub async fn preflight(opts: &CopyOptions) -> Result<(Conns, Preflight), CopyError> {
    let (mut src, src_addr, src_cluster) = open_side(&opts.from).await.map_err(CopyError::Refused)?;
    let (mut dst, dst_addr, dst_cluster) = open_side(&opts.to).await.map_err(CopyError::Refused)?;
    let (source_version, source_run_id) = server_info(&opts.from, &mut src).await.map_err(CopyError::Refused)?;
    let (target_version, target_master) = server_info(&opts.to, &mut dst).await.map_err(CopyError::Refused)?;
    // A Sentinel target's evictions are counted on its master: which one is kept.
    let (target_master, target_may_evict) = match opts.to.sentinel() {
        Some(_) => (Some(target_master), may_evict(&opts.to, &mut dst).await.map_err(CopyError::Refused)?),
        None => (None, false),
    };
    // Two names of one server (an address and a DNS name, a primary
    // endpoint and its node's) or two nodes of one cluster: the URLs differ,
    // the data is the same, and a copy would rewrite every key in place
    // (undoing writes made meanwhile). A replication id in common is not
    // enough: a target seeded from the source's snapshot may carry it
    // without following it (a replica target takes no writes anyway).
    if opts.from.db() == opts.to.db() {
        let (from, to) = tokio::try_join!(
            verify::side_identities(&opts.from, &src, src_cluster.as_deref()),
            verify::side_identities(&opts.to, &dst, dst_cluster.as_deref())
        )
        .map_err(CopyError::Refused)?;
        if let Some(verify::Shared::Server(run_id)) = verify::shared(&from, &to) {
            return Err(CopyError::Refused(format!(
                "the source {} and the target {} are one Redis server (run_id {run_id}), database {}: a copy onto \
                 itself would rewrite every key in place; check the two URLs",
                opts.from.redacted(),
                opts.to.redacted(),
                opts.to.db()
            )));
        }
    }
    takes_writes(&opts.to, &dst, dst_cluster.as_deref()).await.map_err(CopyError::Refused)?;
    let (mode, mode_reason) =
        super::choose_mode(opts.mode, &source_version, &target_version).map_err(CopyError::Refused)?;
    let (mut source_shards, mut source_notes) = (Vec::new(), Vec::new());
    // The version of each server scanned.
    let mut scanned_versions = Vec::new();
    let source_keys: u64 = match &src_cluster {
        Some(cl) => {
            let mut keys = 0;
            let views = cl.own_views().await.map_err(CopyError::Refused)?;
            let open = cluster::open_slots(&views);
            if !open.is_empty() {
                return Err(CopyError::Refused(format!(
                    "the source cluster is moving slots between its shards ({}): a SCAN per shard would miss keys \
                     moving behind its cursor; wait until the resharding is over (`redis-cli --cluster check \
                     HOST:PORT` shows no open slot; `redis-cli --cluster fix HOST:PORT` closes one left open), then copy",
                    open.join(", ")
                )));
            }
            let (readers, notes) = cl.readers().await.map_err(CopyError::Refused)?;
            source_notes = notes;
            for (shard, read_on, mut c) in readers {
                keys += q::<u64>(&opts.from, &mut c, &redis::cmd("DBSIZE")).await.map_err(CopyError::Refused)?;
                // The scanned node's: a SCAN cursor means something to it alone.
                let (version, run_id) = server_info(&opts.from, &mut c).await.map_err(CopyError::Refused)?;
                scanned_versions.push(version);
                let config_epoch = views.iter().find(|v| v.primary == shard.primary).map_or(0, |v| v.config_epoch);
                source_shards.push(ShardRun {
                    slots: shard.slots_text(),
                    primary: shard.primary,
                    read_on,
                    run_id,
                    config_epoch,
                });
            }
            keys
        }
        None => {
            scanned_versions.push(source_version.clone());
            let keys = q::<u64>(&opts.from, &mut src, &redis::cmd("DBSIZE")).await.map_err(CopyError::Refused)?;
            // A copy reads its URL's database alone: keys in another are said,
            // and none in its own beside some elsewhere is most likely the
            // wrong database named (a copy of nothing would end "done").
            let info: String =
                q(&opts.from, &mut src, redis::cmd("INFO").arg("keyspace")).await.map_err(CopyError::Refused)?;
            let db = opts.from.db();
            let elsewhere = super::other_dbs(&info, db);
            let listed: Vec<String> = elsewhere.iter().map(|d| format!("db {} holds {} keys", d.db, d.keys)).collect();
            if keys == 0 && !elsewhere.is_empty() {
                return Err(CopyError::Refused(format!(
                    "the source's database {db} holds no key, but {}: name the database to copy in the URL \
                     (redis://host:port/N); nothing was written",
                    listed.join(", ")
                )));
            }
            if !elsewhere.is_empty() {
                source_notes.push(format!(
                    "only the source's database {db} is copied; {} (copy each with its own URLs)",
                    listed.join(", ")
                ));
            }
            keys
        }
    };
    let expiry_read = ExpiryRead::choose(scanned_versions.iter().map(String::as_str), &target_version);
    let target_shards = dst_cluster.as_ref().map(|c| c.shards()).unwrap_or_default();
    let conns = Conns { src, dst, src_addr, dst_addr, src_cluster, dst_cluster };
    let (target_keys, target_expiring) = conns.target_counts(&opts.to).await.map_err(CopyError::Refused)?;
    // Counted from the copy's first run: a resume still sees what an
    // interrupted run had evicted (a count lower now: the target restarted;
    // another Sentinel master: its own count, and `resume_of` says whether
    // the scan must start over).
    let evicted_now = conns.target_evicted(&opts.to).await.map_err(CopyError::Refused)?;
    let same_master = |cp: &Checkpoint| cp.target_evicted_on.is_none() || cp.target_evicted_on == target_master;
    let target_evicted = match opts.resume.as_ref().filter(|cp| same_master(cp)).and_then(|cp| cp.target_evicted) {
        Some(before) if before <= evicted_now => before,
        _ => evicted_now,
    };
    let (target_history, target_mark) = match opts.to.sentinel() {
        Some(_) => {
            let info = replication_info(&opts.to, &mut conns.dst.clone()).await.map_err(CopyError::Refused)?;
            (repl_history(&info), confirmed_mark(&info))
        }
        None => (None, None),
    };
    let target_mark = std::sync::Arc::new(std::sync::Mutex::new(target_mark));
    let target_servers = match opts.to.sentinel() {
        Some(_) => checkpoint::TargetServers::default(),
        None => {
            let servers = conns.target_servers(&opts.to).await.map_err(CopyError::Refused)?;
            // A server behind a proxy may answer INFO from another node on
            // each connection: its run_id tells nothing, so it is not kept
            // (else every check would call the target replaced).
            let other = match &conns.dst_cluster {
                Some(_) => None,
                None => {
                    let (mut again, _) =
                        opts.to.clone().with_sentinel_majority().open().await.map_err(CopyError::Refused)?;
                    Some(server_info(&opts.to, &mut again).await.map_err(CopyError::Refused)?.1)
                }
            };
            // No run_id (`?`), nothing to compare.
            if other.is_some_and(|other| other != "?" && servers.run_ids.first().is_some_and(|id| *id != other)) {
                tracing::warn!(target = %opts.to, "the target's run_id differs between connections; not kept");
                checkpoint::TargetServers::default()
            } else {
                servers
            }
        }
    };
    let pf = Preflight {
        source_version,
        target_version,
        mode,
        mode_reason,
        source_keys,
        target_keys,
        target_expiring,
        source_run_id,
        source_shards,
        source_notes,
        target_shards,
        target_servers,
        target_history,
        target_mark,
        expiry_read,
        target_evicted: std::sync::Arc::new(std::sync::Mutex::new(EvictionBase {
            count: target_evicted,
            on: target_master,
        })),
        target_may_evict,
        clock_shift_ms: 0,
    };
    Ok((conns, pf))
}

fn scan_cmd(cursor: u64, pattern: Option<&str>, count: usize) -> redis::Cmd {
    let mut c = redis::cmd("SCAN");
    c.arg(cursor);
    if let Some(p) = pattern {
        c.arg("MATCH").arg(p);
    }
    c.arg("COUNT").arg(count);
    c
}

/// SCANs the source and asks the target, without writing, which keys it
/// already has (the pre-check of `--on-conflict fail`, and of `--dry-run`).
pub async fn find_conflicts(opts: &CopyOptions, conns: &mut Conns) -> Result<Conflicts, String> {
    let mut out = Conflicts::default();
    // Any node of each shard will do here: no cursor is kept.
    let nodes: Vec<MultiplexedConnection> = match &conns.src_cluster {
        Some(c) => c.readers().await?.0.into_iter().map(|(_, _, c)| c).collect(),
        None => vec![conns.src.clone()],
    };
    for mut src in nodes {
        let mut cursor = 0u64;
        loop {
            let (next, mut keys): (u64, Vec<Vec<u8>>) =
                q(&opts.from, &mut src, &scan_cmd(cursor, opts.pattern.as_deref(), opts.scan_count)).await?;
            // The copy never copies these (see `batch`): nothing to conflict.
            keys.retain(|k| !k.starts_with(TMP_PREFIX.as_bytes()));
            if !keys.is_empty() {
                let cmds = keys.iter().map(|k| (k.as_slice(), key_cmd(&["EXISTS"], k))).collect();
                let found = per_key(&opts.to, &conns.dst, conns.dst_cluster.as_deref(), cmds).await?;
                for (k, f) in keys.iter().zip(found) {
                    match f {
                        Value::Int(0) => {}
                        Value::Int(_) => {
                            out.count += 1;
                            if out.first.len() < 5 {
                                out.first.push(super::show_key(k));
                            }
                        }
                        other => return Err(format!("{} {}: EXISTS answered {other:?}", opts.to.role, opts.to)),
                    }
                }
            }
            out.scanned += keys.len() as u64;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(out)
}

/// Shared by the batches of one copy.
struct Ctx {
    from: Endpoint,
    to: Endpoint,
    src: MultiplexedConnection,
    dst: MultiplexedConnection,
    /// A cluster target: writes are routed by slot, not sent to `dst`.
    dst_cluster: Option<Arc<Cluster>>,
    mode: Mode,
    overwrite: bool,
    /// A conflict stops the copy (`fail`).
    conflict_is_error: bool,
    /// The copy went back to a checkpoint (resumed, or after a failover):
    /// the target may hold keys it wrote after that checkpoint.
    again: bool,
    chunk_threshold: u64,
    target_rdb: Option<u16>,
    /// No MEMORY USAGE: the source refused it once, or the copy was told
    /// not to ask (`chunk_threshold: None`); every key is DUMPed whole.
    no_memory_usage: AtomicBool,
    /// The target takes `SET … PXAT` (Redis 6.2 and later).
    target_pxat: bool,
    expiry_read: ExpiryRead,
    /// `Preflight::clock_shift_ms`.
    clock_shift_ms: i64,
    run_by: RunBy,
    /// Keys `by_type` rebuilds now, each with its turn; shared by the
    /// shards of a cluster source (a key moving between them comes twice).
    in_rebuild: InRebuild,
    /// Temporary keys being built now, removed when the copy stops on an
    /// error (the batches in flight are dropped half-way).
    building: Building,
}

type InRebuild = Arc<std::sync::Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>>;

/// The temporary keys of one copy being built on the target now, each with
/// how many batches build it (a key SCAN returns twice may be in two).
#[derive(Clone, Default)]
struct Building(Arc<std::sync::Mutex<HashMap<Vec<u8>, usize>>>);

impl Building {
    fn start(&self, tmps: impl IntoIterator<Item = Vec<u8>>) {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for t in tmps {
            *b.entry(t).or_default() += 1;
        }
    }

    fn end(&self, tmps: impl IntoIterator<Item = Vec<u8>>) {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for t in tmps {
            if let Some(n) = b.get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    b.remove(&t);
                }
            }
        }
    }

    fn take(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(t, _)| t).collect()
    }
}

/// How long removing temporary keys may take a copy that is stopping: the
/// target may be what failed.
const REMOVE_TMPS_WITHIN: Duration = Duration::from_secs(2);

/// DELs temporary keys on the target (each routed by its own slot, which is
/// its key's), as far as the target lets within `REMOVE_TMPS_WITHIN`.
async fn remove_tmps(to: &Endpoint, dst: &MultiplexedConnection, cluster: Option<&Cluster>, tmps: Vec<Vec<u8>>) {
    if tmps.is_empty() {
        return;
    }
    let dels: Vec<(Vec<u8>, redis::Cmd)> = tmps.into_iter().map(|t| (t.clone(), key_cmd(&["DEL"], &t))).collect();
    let done = tokio::time::timeout(REMOVE_TMPS_WITHIN, per_key(to, dst, cluster, dels)).await;
    if let Err(e) = done.unwrap_or_else(|_| Err(format!("no answer within {} s", REMOVE_TMPS_WITHIN.as_secs()))) {
        tracing::warn!(target = %to, error = %e, "temporary keys may be left on the target");
    }
}

/// Keys of one batch rebuilt one by one (`by_type`) at once.
const TYPE_PATH_KEYS_IN_FLIGHT: usize = 64;

/// One chunk of `by_type`: elements of a collection, bytes of a string.
const TYPE_CHUNK_ELEMENTS: usize = 5000;
const TYPE_CHUNK_BYTES: u64 = 1 << 20;

/// The most a key read whole by the batched type path holds: a whole batch
/// of such keys (1,000 by default, 3,000 into a cluster; 4 batches in
/// flight: at most 32 MB, 96 MB into a cluster) stays near what `by_type`
/// holds with its 64 keys of one 1 MB chunk each. Bigger keys go to
/// `by_type`.
const BATCH_READ_ELEMENTS: usize = 128;
const BATCH_READ_BYTES: u64 = 8 << 10;

/// A key the batched type path read whole, with its expiry.
struct WholeKey {
    key: Vec<u8>,
    kind: Kind,
    exp: Expiry,
    /// A string's value, a list's elements, or a scan's items (a hash's
    /// fields and values, a sorted set's members and scores).
    items: Vec<Vec<u8>>,
}

/// A type the batched type-by-type path reads in one bounded command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Hash,
    Set,
    Zset,
    List,
    /// A stream, or a type only `by_type` knows what to do with.
    Other,
}

impl Kind {
    /// From TYPE's answer; `None`: the key is gone.
    fn of(t: &str) -> Option<Kind> {
        Some(match t {
            "none" => return None,
            "string" => Kind::String,
            "hash" => Kind::Hash,
            "set" => Kind::Set,
            "zset" => Kind::Zset,
            "list" => Kind::List,
            _ => Kind::Other,
        })
    }

    /// One bounded read of the key.
    fn read(self, p: &mut redis::Pipeline, key: &[u8]) {
        let n = BATCH_READ_ELEMENTS;
        match self {
            Kind::String => p.cmd("GETRANGE").arg(key).arg(0).arg(BATCH_READ_BYTES - 1),
            Kind::Hash => p.cmd("HSCAN").arg(key).arg(0).arg("COUNT").arg(n),
            Kind::Set => p.cmd("SSCAN").arg(key).arg(0).arg("COUNT").arg(n),
            Kind::Zset => p.cmd("ZSCAN").arg(key).arg(0).arg("COUNT").arg(n),
            Kind::List => p.cmd("LRANGE").arg(key).arg(0).arg(n - 1),
            Kind::Other => unreachable!("read one by one"),
        };
    }

    /// The whole key from its read (a string: its one value); `None` when
    /// the key may hold more than that read (or the read failed, e.g. the
    /// type changed, or an empty string, which GETRANGE cannot tell from a
    /// deleted key): `by_type` copies it then.
    fn items(self, v: Value) -> Option<Vec<Vec<u8>>> {
        let scanned = |v: Value| -> Option<Vec<Vec<u8>>> {
            match v {
                Value::Array(mut a) if a.len() == 2 => {
                    let items = a.pop()?;
                    match a.pop()? {
                        Value::BulkString(c) if c == b"0" => redis::from_redis_value(items).ok(),
                        _ => None,
                    }
                }
                _ => None,
            }
        };
        match self {
            Kind::String => match v {
                Value::BulkString(b) if !b.is_empty() && (b.len() as u64) < BATCH_READ_BYTES => Some(vec![b]),
                _ => None,
            },
            // Members and scores (fields and values) in pairs, else no ZSCAN
            // (HSCAN) reply: `by_type` says so.
            Kind::Zset | Kind::Hash => scanned(v).filter(|items| items.len() % 2 == 0),
            Kind::Set => scanned(v),
            Kind::List => {
                let items: Vec<Vec<u8>> = redis::from_redis_value(v).ok()?;
                (items.len() < BATCH_READ_ELEMENTS).then_some(items)
            }
            Kind::Other => None,
        }
    }

    fn write(self) -> &'static str {
        match self {
            Kind::Hash => "HSET",
            Kind::Set => "SADD",
            Kind::Zset => "ZADD",
            Kind::List => "RPUSH",
            Kind::String | Kind::Other => unreachable!("written by SET or by_type"),
        }
    }
}

/// What every temporary name the copy builds a key under starts with.
const TMP_PREFIX: &str = "__cutover_tmp__";

/// What a copy that met `n` keys under cutover's temporary names on the
/// source says of them.
pub fn temporary_left(n: u64) -> String {
    format!(
        "{n} keys under cutover's temporary names ({TMP_PREFIX}…) on the source were not copied: keys half-built by a \
         copy into that server, running now or killed. Once no copy into it runs, delete them there \
         (`redis-cli --scan --pattern '{TMP_PREFIX}*'` lists them on one node: ask every primary of a cluster); until \
         then `redis verify` counts them as missing"
    )
}

/// Most DUMP payload bytes one group of a batch asks for at once.
const GROUP_BYTES: u64 = 8 << 20;

/// How far apart the source's and the target's PTTL of one key, read at
/// once, may be for the two to be one expiry: this copy wrote the absolute
/// time the source keeps (PEXPIRETIME), or before Redis 7.0 its PTTL less
/// the time since the read (off by half that read's round trip and by the
/// write's transit); a target whose clock is further off than this from
/// the source's shows another absolute expiry, and the copy stops: fail
/// closed.
const SAME_EXPIRY_MS: u64 = 2_000;

/// Largest key (MEMORY USAGE, on either side) that a write found on the
/// target and that is DUMPed on both sides to tell what it is: what one
/// group of a batch holds. A bigger one is never read whole (its DUMP
/// blocks its server while serialised, and the target's may be anyone's).
const MET_KEY_READ_BYTES: u64 = GROUP_BYTES;

/// A DUMP payload ends with the RDB version (2 bytes) and a CRC64 (8).
const DUMP_FOOTER: usize = 10;

/// Largest key (by DUMP payload) read whole to tell whether the target
/// holds it as the source does; a bigger one whose payloads differ counts
/// as a conflict rather than be read whole. Streams are never read so
/// (XRANGE leaves out their consumer groups).
const COMPARE_VALUES_BYTES: u64 = 1 << 20;

/// What the target holds under a key a write met there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// The source's type, value and expiry (its DUMP payload's length):
    /// written by this copy before (a key SCAN returned twice, or one written
    /// after the checkpoint the copy went back to), or by another writer
    /// exactly so.
    AsOnSource(u64),
    /// Gone from the source, and gone from the target or about to go.
    Expired,
    /// Anything else: someone else's.
    Otherwise,
    /// Too big to read whole on a side, or of a size a side will not tell.
    NotCompared,
}

/// Splits keys (by size, in order) into runs of at most `budget` bytes; a
/// key bigger than the budget is a run of its own.
fn group_sizes(sizes: &[u64], budget: u64) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut n, mut bytes) = (0usize, 0u64);
    for s in sizes {
        if n > 0 && bytes + s > budget {
            out.push(n);
            (n, bytes) = (0, 0);
        }
        n += 1;
        bytes += s;
    }
    if n > 0 {
        out.push(n);
    }
    out
}

/// `words` then `key`, sized once: the profile of a copy showed the
/// allocator (growing each command's buffers) as cutover's first cost.
fn key_cmd(words: &[&str], key: &[u8]) -> redis::Cmd {
    let mut c = redis::Cmd::with_capacity(words.len() + 1, words.iter().map(|w| w.len()).sum::<usize>() + key.len());
    for w in words {
        c.arg(*w);
    }
    c.arg(key);
    c
}

/// Outcome of one key.
enum Outcome {
    Copied(u64),
    Expired,
    Conflict,
    /// Returned by SCAN again, and already on the target as on the source.
    SeenTwice,
}

impl Counters {
    fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Copied(b) => {
                self.copied += 1;
                self.bytes += b;
            }
            Outcome::Expired => self.skipped_expired += 1,
            Outcome::Conflict => self.skipped_conflict += 1,
            Outcome::SeenTwice => self.seen_twice += 1,
        }
    }

    /// As `count`, for a key of the type-by-type path.
    fn count_chunked(&mut self, o: &Outcome) {
        if matches!(o, Outcome::Copied(_)) {
            self.chunked += 1;
        }
        self.count(o);
    }
}

impl Ctx {
    /// This machine's clock (Unix ms), as the copy reads it.
    fn now(&self) -> u64 {
        super::now_ms().saturating_add_signed(self.clock_shift_ms)
    }

    /// When the source most likely answered a PTTL asked at `asked` (by
    /// `now`): halfway to its reply, so a busy connection (replies queued
    /// behind other batches' payloads) moves the computed expiry by half
    /// its delay at most, not by all of it.
    fn read_at(&self, asked: u64) -> u64 {
        asked + self.now().saturating_sub(asked) / 2
    }

    fn conflict(&self, key: &[u8]) -> Result<Outcome, String> {
        if !self.conflict_is_error {
            return Ok(Outcome::Conflict);
        }
        // Back from a checkpoint, a key this copy wrote whose value the source
        // changed since differs too: stopping on it is the safe mistake.
        let what = if self.again {
            "is on the target otherwise than on the source (type, value or expiry): someone else's, or this copy's \
             own write from before it went back to its checkpoint, of a value the source changed since"
        } else {
            "appeared on the target during the copy (the pre-check found none)"
        };
        Err(format!(
            "key {} {what}; stopped, the target's key kept; {}",
            super::show_key(key),
            self.run_by.after_conflict()
        ))
    }

    async fn batch(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<Counters, String> {
        let mut c = Counters { scanned: keys.len() as u64, ..Default::default() };
        if keys.is_empty() {
            return Ok(c);
        }
        // Keys half-built under cutover's temporary names on the source (by a
        // copy into it, running or killed) are never copied: never real data,
        // and one could overwrite the key this copy builds under that name,
        // which a rename would then put in place of the real key.
        let (temporary, keys): (Vec<_>, Vec<_>) = keys.into_iter().partition(|k| k.starts_with(TMP_PREFIX.as_bytes()));
        if let Some(k) = temporary.first() {
            tracing::warn!(source = %self.from, first = %super::show_key(k), n = temporary.len(), "temporary keys on the source not copied");
            c.skipped_temporary = temporary.len() as u64;
        }
        if self.mode == Mode::Types {
            return self.by_type_all(keys, c).await;
        }
        // Sizes first, so a big key is never DUMPed whole. This is a third
        // of the source's commands per key, and it stays by default: a key's
        // size is known only from MEMORY USAGE (or after DUMP has sent it
        // whole), no command returns it with the TTL or the payload, and
        // skipping it for some keys (by sample, by type) would let an unseen
        // big key be DUMPed whole. Measured on Redis 7.0.15, 1,000,000 small
        // keys: the same MEMORY USAGE in one EVAL per batch costs the source
        // more (2.0–2.2 µs a key) than pipelined (1.7–1.8). In
        // benches/redis_copy.rs it is about 30% of the source's CPU; a
        // person who has looked (`--no-size-check`) may spare it.
        let sizes: Vec<Option<u64>> = if self.no_memory_usage.load(Ordering::Relaxed) {
            vec![Some(0); keys.len()]
        } else {
            match size::sizes(&self.from, &self.src, None, &keys, self.chunk_threshold).await? {
                Some(s) => s,
                // A server (or ACL) without MEMORY USAGE: no big-key detection.
                None => {
                    tracing::warn!(source = %self.from, "MEMORY USAGE refused; keys are not checked for size");
                    self.no_memory_usage.store(true, Ordering::Relaxed);
                    vec![Some(0); keys.len()]
                }
            }
        };
        let mut small = Vec::with_capacity(keys.len());
        let mut big = Vec::new();
        for (k, size) in keys.into_iter().zip(sizes) {
            match size {
                None => c.skipped_expired += 1,
                Some(s) if s > self.chunk_threshold => big.push(k),
                Some(s) => small.push((k, s)),
            }
        }
        // DUMP in groups of at most GROUP_BYTES (by MEMORY USAGE), so a batch of
        // large keys never holds more than that in memory at once.
        let sizes: Vec<u64> = small.iter().map(|(_, s)| *s).collect();
        let mut keys = small.into_iter().map(|(k, _)| k);
        for n in group_sizes(&sizes, GROUP_BYTES) {
            self.dump_restore(keys.by_ref().take(n).collect(), &mut c, &mut big).await?;
        }
        let mut met = Vec::new();
        for k in &big {
            match self.by_type(k).await? {
                Outcome::Conflict => met.push(k.as_slice()),
                o => c.count_chunked(&o),
            }
        }
        self.settle_met(&met, &mut c).await?;
        Ok(c)
    }

    /// The expiry (PEXPIRETIME, or PTTL) + DUMP pipelined, then RESTORE …
    /// ABSTTL pipelined.
    async fn dump_restore(&self, keys: Vec<Vec<u8>>, c: &mut Counters, big: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let mut src = self.src.clone();
        let mut p = redis::Pipeline::with_capacity(keys.len() * 2);
        for k in &keys {
            p.add_command(key_cmd(&[self.expiry_read.command()], k)).add_command(key_cmd(&["DUMP"], k));
        }
        let asked = self.now();
        let got: Vec<Value> = qp(&self.from, &mut src, &p).await?;
        drop(p);
        let now = self.read_at(asked);
        let written_at = self.now();
        let mut restore: Vec<(&[u8], redis::Cmd)> = Vec::with_capacity(keys.len());
        // Per RESTORE: the key's place in `keys` and the payload's length.
        let mut sent: Vec<(usize, u64)> = Vec::with_capacity(keys.len());
        let mut vals = got.into_iter();
        for (i, k) in keys.iter().enumerate() {
            let (expiry, dump) = (vals.next(), vals.next());
            let expiry = match expiry {
                Some(Value::Int(i)) => i,
                other => return Err(format!("unexpected {} reply {other:?}", self.expiry_read.command())),
            };
            let payload = match dump {
                Some(Value::BulkString(b)) => b,
                Some(Value::Nil) => {
                    c.skipped_expired += 1;
                    continue;
                }
                other => return Err(format!("unexpected DUMP reply {:?}", other.map(|_| "non-string"))),
            };
            let exp = self.expiry_read.expiry(expiry, now);
            if exp == Expiry::Gone {
                c.skipped_expired += 1;
                continue;
            }
            // A payload the target cannot read goes type by type.
            if !super::target_reads(&payload, self.target_rdb) {
                big.push(k.clone());
                continue;
            }
            // A TTL used up in flight: RESTORE would take 0 as none.
            let Some((ttl, abs)) = super::restore_ttl(self.expiry_read.write(exp, written_at)) else {
                c.skipped_expired += 1;
                continue;
            };
            // Sized once: RESTORE, key, ttl, payload, REPLACE, ABSTTL and their headers.
            let mut cmd = redis::Cmd::with_capacity(6, k.len() + payload.len() + 96);
            cmd.arg("RESTORE").arg(k).arg(ttl).arg(&payload);
            if self.overwrite {
                cmd.arg("REPLACE");
            }
            if abs {
                cmd.arg("ABSTTL");
            }
            restore.push((k, cmd));
            sent.push((i, payload.len() as u64));
        }
        if !sent.is_empty() {
            let results = per_key(&self.to, &self.dst, self.dst_cluster.as_deref(), restore).await?;
            // Keys the target had: told apart below.
            let mut busy: Vec<&[u8]> = Vec::new();
            for ((i, len), r) in sent.into_iter().zip(results) {
                let k = &keys[i];
                match r {
                    Value::ServerError(e) if e.code() == "BUSYKEY" => busy.push(k),
                    Value::ServerError(e) => {
                        return Err(format!(
                            "RESTORE {} on the target failed: {}",
                            super::show_key(k),
                            self.to.scrub(&error_text(&e))
                        ));
                    }
                    _ => c.count(&Outcome::Copied(len)),
                }
            }
            self.settle_met(&busy, c).await?;
        }
        Ok(())
    }

    /// Counts the keys a write found already on the target. Under `skip`
    /// each is a conflict. Under `fail` each is looked at
    /// (`held_as_on_source`): seen twice, expired, or else the copy stops.
    async fn settle_met(&self, met: &[&[u8]], c: &mut Counters) -> Result<(), String> {
        if met.is_empty() {
            return Ok(());
        }
        if !self.conflict_is_error {
            c.skipped_conflict += met.len() as u64;
            return Ok(());
        }
        let held = self.held_as_on_source(met).await?;
        for (k, held) in met.iter().zip(held) {
            c.count(&match held {
                // Back at a checkpoint, such a key was written after it and
                // counted nowhere yet: it counts as copied, so the total
                // counts it once.
                Held::AsOnSource(bytes) if self.again => Outcome::Copied(bytes),
                Held::AsOnSource(_) => Outcome::SeenTwice,
                Held::Expired => Outcome::Expired,
                Held::Otherwise => self.conflict(k)?,
                Held::NotCompared => return Err(self.not_compared(k)),
            });
        }
        Ok(())
    }

    async fn remove_tmps(&self, tmps: Vec<Vec<u8>>) {
        remove_tmps(&self.to, &self.dst, self.dst_cluster.as_deref(), tmps).await;
    }

    /// The stop for a key met on the target that is too big to read whole.
    fn not_compared(&self, key: &[u8]) -> String {
        let own = if self.again {
            "written before the copy went back to its checkpoint, or returned twice by SCAN"
        } else {
            "SCAN returns a key twice at times"
        };
        format!(
            "key {} is on the target, and over {} MiB on one side or of a size a side will not tell (MEMORY USAGE), \
             so it was not read whole to compare: it may be this copy's own ({own}) or someone else's; stopped, the \
             target's key kept; {}",
            super::show_key(key),
            MET_KEY_READ_BYTES >> 20,
            self.run_by.after_conflict()
        )
    }

    /// Whether the target holds each key as the source has it: the same
    /// type, the same expiry (within `SAME_EXPIRY_MS`) and the same value:
    /// the same DUMP payload without its footer (the RDB version and CRC
    /// differ between versions), or for a string, list, set, hash or zset
    /// of at most `COMPARE_VALUES_BYTES` the same contents (a set's DUMP
    /// lists its members in the order of a table seeded per process, and
    /// versions and settings encode lists and strings differently). SCAN
    /// may return a key twice (while the source's table is resized; the
    /// SCAN documentation leaves duplicates to the client), and the second
    /// RESTORE then meets the key this copy wrote; so does a copy back at a
    /// checkpoint (resumed, or after a failover) meeting what it wrote after
    /// that checkpoint. Such a key, and one
    /// another writer put there exactly as the source has it, is no
    /// conflict: nothing on the target differs. Any difference is one.
    /// A key bigger than `MET_KEY_READ_BYTES` on either side, or on a side
    /// that will not tell its size, is never read whole.
    async fn held_as_on_source(&self, keys: &[&[u8]]) -> Result<Vec<Held>, String> {
        let small = self.small_on_both(keys).await?;
        let probed: Vec<&[u8]> = keys.iter().zip(&small).filter(|(_, s)| **s).map(|(k, _)| *k).collect();
        let mut src = self.src.clone();
        let (on_src, on_dst) = if probed.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            tokio::try_join!(
                verify::probe(&self.from, &self.src, None, &probed),
                verify::probe(&self.to, &self.dst, self.dst_cluster.as_deref(), &probed)
            )?
        };
        if on_src.len() != probed.len() || on_dst.len() != probed.len() {
            return Err(format!(
                "{} keys met on the target, but {} answers from the source and {} from the target",
                probed.len(),
                on_src.len(),
                on_dst.len()
            ));
        }
        let body = |v: &Value| match v {
            Value::BulkString(b) if b.len() >= DUMP_FOOTER => Some(b.len()),
            _ => None,
        };
        let mut answers = probed.into_iter().zip(on_src.into_iter().zip(on_dst));
        let mut held = Vec::with_capacity(keys.len());
        for small in small {
            if !small {
                held.push(Held::NotCompared);
                continue;
            }
            let Some((k, ((kind, pttl, dump), (t_kind, t_pttl, t_dump)))) = answers.next() else {
                return Err("fewer answers than keys met on the target".into());
            };
            let source_gone = kind == "none" || pttl == -2;
            if source_gone && (t_kind == "none" || (0..=SAME_EXPIRY_MS as i64).contains(&t_pttl)) {
                held.push(Held::Expired);
                continue;
            }
            if source_gone || kind != t_kind || !verify::ttl_ok(pttl, t_pttl, SAME_EXPIRY_MS) {
                held.push(Held::Otherwise);
                continue;
            }
            let (Some(a), Some(b), Value::BulkString(x), Value::BulkString(y)) =
                (body(&dump), body(&t_dump), &dump, &t_dump)
            else {
                held.push(Held::Otherwise);
                continue;
            };
            let same_payload = x[..a - DUMP_FOOTER] == y[..b - DUMP_FOOTER];
            let comparable = ["string", "list", "set", "hash", "zset"].contains(&kind.as_str())
                && (a.max(b) as u64) <= COMPARE_VALUES_BYTES;
            let same = same_payload
                || (comparable && {
                    let mut dst = node_for_key(&self.dst, self.dst_cluster.as_deref(), k).await?;
                    verify::logical(&self.from, &mut src, k, &kind).await?
                        == verify::logical(&self.to, &mut dst, k, &t_kind).await?
                });
            held.push(if same { Held::AsOnSource(a as u64) } else { Held::Otherwise });
        }
        Ok(held)
    }

    /// Whether each key is at most `MET_KEY_READ_BYTES` (MEMORY USAGE) on
    /// the source and on the target; a key gone from a side is small there.
    async fn small_on_both(&self, keys: &[&[u8]]) -> Result<Vec<bool>, String> {
        let (a, b) = tokio::try_join!(
            size::sizes(&self.from, &self.src, None, keys, MET_KEY_READ_BYTES),
            size::sizes(&self.to, &self.dst, self.dst_cluster.as_deref(), keys, MET_KEY_READ_BYTES)
        )?;
        // A side that will not tell (MEMORY USAGE refused) holds no small key.
        let small =
            |i| size::within(&a, i, MET_KEY_READ_BYTES, false) && size::within(&b, i, MET_KEY_READ_BYTES, false);
        Ok((0..keys.len()).map(small).collect())
    }

    /// The type-by-type path for a whole batch, in three pipelines: TYPE of
    /// every key on the source; one bounded read per key, with its PTTL
    /// (`BATCH_READ_BYTES` of a string, `BATCH_READ_ELEMENTS` of a
    /// collection; a listpack or intset comes whole, as with `by_type`'s
    /// HSCAN); then the writes on the target.
    /// A string is one `SET key value [NX] PXAT` (atomic, with its expiry); a
    /// collection is built under its temporary name, given its expiry and
    /// renamed into place (RENAMENX unless replacing), as `by_type` does.
    /// Keys whose read says they may be bigger than one chunk, streams, and
    /// anything unexpected (type changed, empty string) go to `by_type`.
    async fn by_type_all(self: Arc<Self>, keys: Vec<Vec<u8>>, mut c: Counters) -> Result<Counters, String> {
        let mut src = self.src.clone();
        let mut p = redis::pipe();
        for k in &keys {
            p.cmd("TYPE").arg(k);
        }
        let got: Vec<Value> = qp(&self.from, &mut src, &p).await?;
        let mut slow = Vec::new();
        let mut read = Vec::with_capacity(keys.len());
        let mut p = redis::pipe();
        p.ignore_errors();
        for (k, kind) in keys.into_iter().zip(got) {
            let kind = match &kind {
                Value::SimpleString(t) => Kind::of(t),
                Value::BulkString(t) => Kind::of(&String::from_utf8_lossy(t)),
                other => return Err(format!("{} {}: TYPE answered {other:?}", self.from.role, self.from)),
            };
            match kind {
                // Gone (expired keys are "none" to TYPE).
                None => c.skipped_expired += 1,
                Some(Kind::Other) => slow.push(k),
                Some(kind) => {
                    // The expiry right after the value: a write between two
                    // reads could set or remove it.
                    kind.read(&mut p, &k);
                    p.cmd(self.expiry_read.command()).arg(&k);
                    read.push((k, kind));
                }
            }
        }
        let asked = self.now();
        let values: Vec<Value> = if read.is_empty() { Vec::new() } else { qp(&self.from, &mut src, &p).await? };
        drop(p);
        let at = self.read_at(asked);
        // The whole of each key, or `None`: it goes to `by_type`.
        let now = self.now();
        let mut whole: Vec<WholeKey> = Vec::with_capacity(read.len());
        let mut values = values.into_iter();
        for (k, kind) in read {
            let (v, expiry) = (values.next(), values.next());
            let exp = match expiry {
                Some(Value::Int(ms)) => self.expiry_read.expiry(ms, at),
                other => {
                    let cmd = self.expiry_read.command();
                    return Err(format!("{} {}: {cmd} answered {other:?}", self.from.role, self.from));
                }
            };
            match kind.items(v.unwrap_or(Value::Nil)) {
                None => slow.push(k),
                // Deleted (or emptied) on the source since TYPE, or expired
                // since (judged by this machine's clock only for a PTTL
                // placed on it; an absolute expiry is the source's clock,
                // and the target's own clock judges it as it writes).
                Some(items) if items.is_empty() || self.expiry_read.write(exp, now) == ExpiryWrite::Passed => {
                    c.skipped_expired += 1
                }
                Some(items) => whole.push(WholeKey { key: k, kind, exp, items }),
            }
        }
        // Per key: its commands on the target (the last one's reply decides),
        // and the bytes it carries.
        let mut writes: Vec<(&[u8], redis::Cmd)> = Vec::with_capacity(whole.len() * 2);
        let mut sent: Vec<(usize, usize, u64)> = Vec::with_capacity(whole.len());
        let tmps: Vec<Option<Vec<u8>>> =
            whole.iter().map(|w| (w.kind != Kind::String).then(|| self.tmp_name(&w.key, true))).collect();
        self.building.start(tmps.iter().flatten().cloned());
        for (i, (WholeKey { key: k, kind, exp, items }, tmp)) in whole.iter().zip(&tmps).enumerate() {
            let bytes = items.iter().map(|i| i.len() as u64).sum::<u64>();
            let first = writes.len();
            match tmp {
                None => {
                    let mut set = redis::Cmd::with_capacity(6, k.len() + items[0].len() + 32);
                    set.arg("SET").arg(k).arg(&items[0]);
                    if !self.overwrite {
                        set.arg("NX");
                    }
                    match self.expiry_read.write(*exp, now) {
                        ExpiryWrite::At(ms) if self.target_pxat => set.arg("PXAT").arg(ms),
                        // Never so: an absolute read needs a target taking PXAT.
                        ExpiryWrite::At(ms) => set.arg("PX").arg(ms.saturating_sub(now).max(1)),
                        ExpiryWrite::In(ms) => set.arg("PX").arg(ms),
                        ExpiryWrite::Never | ExpiryWrite::Passed => &mut set,
                    };
                    writes.push((k, set));
                }
                Some(tmp) => {
                    writes.push((k, key_cmd(&["DEL"], tmp)));
                    let size = tmp.len() + items.iter().map(Vec::len).sum::<usize>() + 32;
                    let mut w = redis::Cmd::with_capacity(items.len() + 2, size);
                    w.arg(kind.write()).arg(tmp);
                    if *kind == Kind::Zset {
                        // ZSCAN gives member, score; ZADD wants score, member
                        // (`Kind::items` let through only pairs).
                        for pair in items.chunks_exact(2) {
                            w.arg(&pair[1]).arg(&pair[0]);
                        }
                    } else {
                        w.arg(items);
                    }
                    writes.push((k, w));
                    match self.expiry_read.write(*exp, now) {
                        ExpiryWrite::At(ms) => writes.push((k, redis::cmd("PEXPIREAT").arg(tmp).arg(ms).clone())),
                        ExpiryWrite::In(ms) => writes.push((k, redis::cmd("PEXPIRE").arg(tmp).arg(ms).clone())),
                        ExpiryWrite::Never | ExpiryWrite::Passed => {}
                    }
                    let rename = if self.overwrite { "RENAME" } else { "RENAMENX" };
                    writes.push((k, redis::cmd(rename).arg(tmp).arg(k).clone()));
                }
            }
            sent.push((i, writes.len() - first, bytes));
        }
        let replies = if writes.is_empty() {
            Vec::new()
        } else {
            per_key(&self.to, &self.dst, self.dst_cluster.as_deref(), writes).await?
        };
        let mut replies = replies.into_iter();
        let mut outcomes = Vec::with_capacity(sent.len());
        let mut leftover = Vec::new();
        let judge = || -> Result<(), String> {
            for (i, n, bytes) in sent {
                let (k, kind, tmp) = (&whole[i].key, whole[i].kind, &tmps[i]);
                let mut last = None;
                for (j, v) in replies.by_ref().take(n).enumerate() {
                    match v {
                        Value::ServerError(e) if j + 1 < n => return Err(self.write_failed(k, &e)),
                        v => last = Some(v),
                    }
                }
                let last = last.ok_or("the target answered fewer replies than commands")?;
                let outcome = match (kind, &last) {
                    (Kind::String, Value::Nil) => Outcome::Conflict,
                    // The expiry passed in flight: PEXPIREAT removed it. A
                    // key whose expiry has not passed lost its temporary
                    // copy (evicted, deleted): an error.
                    (_, Value::ServerError(e))
                        if expiry_passed(whole[i].exp, self.now())
                            && e.details().is_some_and(|d| d.contains("no such key")) =>
                    {
                        Outcome::Expired
                    }
                    (_, Value::ServerError(e)) => return Err(self.write_failed(k, e)),
                    (_, Value::Int(0)) => {
                        if let Some(tmp) = tmp {
                            leftover.push((k.as_slice(), key_cmd(&["DEL"], tmp)));
                        }
                        Outcome::Conflict
                    }
                    _ => Outcome::Copied(bytes),
                };
                outcomes.push((k, outcome));
            }
            Ok(())
        };
        if let Err(e) = judge() {
            // A write failed: this batch's temporary keys go (a renamed one
            // is gone already).
            self.remove_tmps(tmps.iter().flatten().cloned().collect()).await;
            self.building.end(tmps.into_iter().flatten());
            return Err(e);
        }
        if !leftover.is_empty() {
            per_key(&self.to, &self.dst, self.dst_cluster.as_deref(), leftover).await?;
        }
        self.building.end(tmps.into_iter().flatten());
        let mut met: Vec<&[u8]> = Vec::new();
        for (k, o) in outcomes {
            match o {
                Outcome::Conflict => met.push(k),
                o => c.count_chunked(&o),
            }
        }
        let slow: Vec<(Vec<u8>, Result<Outcome, String>)> =
            futures::stream::iter(slow.into_iter().map(|k| by_type_owned(self.clone(), k)))
                .buffer_unordered(TYPE_PATH_KEYS_IN_FLIGHT)
                .collect()
                .await;
        let mut slow_met = Vec::new();
        for (k, o) in slow {
            match o? {
                Outcome::Conflict => slow_met.push(k),
                o => c.count_chunked(&o),
            }
        }
        met.extend(slow_met.iter().map(Vec::as_slice));
        self.settle_met(&met, &mut c).await?;
        Ok(c)
    }

    /// The temporary name `key` is rebuilt under, on the shard owning `key`:
    /// one for the batched type path and another for `by_type`, so that a
    /// key SCAN returns twice, and that goes one way and then the other,
    /// is never rebuilt twice at once under one name.
    fn tmp_name(&self, key: &[u8], batched: bool) -> Vec<u8> {
        let prefix = if batched { format!("{TMP_PREFIX}b") } else { TMP_PREFIX.to_string() };
        match &self.dst_cluster {
            Some(_) => cluster::tmp_name(&prefix, key),
            None => {
                let mut tmp = format!("{prefix}:").into_bytes();
                tmp.extend_from_slice(key);
                tmp
            }
        }
    }

    fn write_failed(&self, key: &[u8], e: &redis::ServerError) -> String {
        format!("writing {} on the target failed: {}", super::show_key(key), self.to.scrub(&error_text(e)))
    }

    /// `rebuild`, one at a time for a key: SCAN may return a key twice, and
    /// two rebuilds at once under one temporary name would mix their chunks.
    /// The second then meets the key the first wrote.
    async fn by_type(&self, key: &[u8]) -> Result<Outcome, String> {
        let turn = self.in_rebuild.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_vec()).or_default().clone();
        let outcome = {
            let _mine = turn.lock().await;
            let tmp = self.tmp_name(key, false);
            self.building.start([tmp.clone()]);
            let outcome = self.rebuild(key, &tmp).await;
            if outcome.is_err() {
                // Its temporary key goes, still in this key's turn.
                self.remove_tmps(vec![tmp.clone()]).await;
            }
            self.building.end([tmp]);
            outcome.map_err(|e| format!("key {}: {e}", super::show_key(key)))
        };
        drop(turn);
        let mut rebuilding = self.in_rebuild.lock().unwrap_or_else(|e| e.into_inner());
        if rebuilding.get(key).is_some_and(|t| Arc::strong_count(t) == 1) {
            rebuilding.remove(key);
        }
        outcome
    }

    /// TYPE and expiry of a key on the source, in one round trip.
    async fn type_and_expiry(&self, src: &mut MultiplexedConnection, key: &[u8]) -> Result<(String, Expiry), String> {
        let mut p = redis::pipe();
        p.cmd("TYPE").arg(key).cmd(self.expiry_read.command()).arg(key);
        let asked = self.now();
        let (kind, expiry): (String, i64) = qp(&self.from, src, &p).await?;
        Ok((kind, self.expiry_read.expiry(expiry, self.read_at(asked))))
    }

    /// Rebuilds one key on the target in chunks under its temporary name
    /// `tmp`, sets its expiry, then renames it into place (RENAMENX when not
    /// overwriting).
    async fn rebuild(&self, key: &[u8], tmp: &[u8]) -> Result<Outcome, String> {
        const ELEMENTS: usize = TYPE_CHUNK_ELEMENTS;
        const BYTES: u64 = TYPE_CHUNK_BYTES;
        let mut src = self.src.clone();
        // In a cluster the key and its temporary copy live on the shard owning the key's slot.
        let mut dst = node_for_key(&self.dst, self.dst_cluster.as_deref(), key).await?;
        let (f, t) = (&self.from, &self.to);
        let (kind, exp) = self.type_and_expiry(&mut src, key).await?;
        if kind == "none" || exp == Expiry::Gone {
            return Ok(Outcome::Expired);
        }
        if !self.overwrite && q::<u64>(t, &mut dst, redis::cmd("EXISTS").arg(key)).await? > 0 {
            return Ok(Outcome::Conflict);
        }
        let _: u64 = q(t, &mut dst, redis::cmd("DEL").arg(tmp)).await?;
        let mut bytes = 0u64;
        match kind.as_str() {
            "string" => {
                let len: u64 = q(f, &mut src, redis::cmd("STRLEN").arg(key)).await?;
                let _: () = q(t, &mut dst, redis::cmd("SET").arg(tmp).arg("")).await?;
                let mut off = 0;
                while off < len {
                    let part: Vec<u8> =
                        q(f, &mut src, redis::cmd("GETRANGE").arg(key).arg(off).arg(off + BYTES - 1)).await?;
                    if part.is_empty() {
                        break;
                    }
                    bytes += part.len() as u64;
                    off += part.len() as u64;
                    let _: u64 = q(t, &mut dst, redis::cmd("APPEND").arg(tmp).arg(part)).await?;
                }
            }
            "hash" | "set" | "zset" => {
                let (scan, write) = match kind.as_str() {
                    "hash" => ("HSCAN", "HSET"),
                    "set" => ("SSCAN", "SADD"),
                    _ => ("ZSCAN", "ZADD"),
                };
                let mut cursor = 0u64;
                loop {
                    let (next, items): (u64, Vec<Vec<u8>>) =
                        q(f, &mut src, redis::cmd(scan).arg(key).arg(cursor).arg("COUNT").arg(ELEMENTS)).await?;
                    if !items.is_empty() {
                        let mut w = redis::cmd(write);
                        w.arg(tmp);
                        // A reply the target would refuse (HSET: wrong number of
                        // arguments) is the source's, and said so.
                        if kind != "set" && items.len() % 2 != 0 {
                            let pairs = if kind == "zset" { "members and scores" } else { "fields and values" };
                            return Err(format!(
                                "{scan} on the {} {f} answered {} items, not {pairs} in pairs; it is not copied",
                                f.role,
                                items.len()
                            ));
                        }
                        if kind == "zset" {
                            // ZSCAN gives member, score; ZADD wants score, member.
                            for pair in items.chunks_exact(2) {
                                w.arg(&pair[1]).arg(&pair[0]);
                            }
                        } else {
                            w.arg(&items);
                        }
                        bytes += items.iter().map(|i| i.len() as u64).sum::<u64>();
                        let _: u64 = q(t, &mut dst, &w).await?;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            "list" => {
                let mut start = 0usize;
                loop {
                    let items: Vec<Vec<u8>> =
                        q(f, &mut src, redis::cmd("LRANGE").arg(key).arg(start).arg(start + ELEMENTS - 1)).await?;
                    if items.is_empty() {
                        break;
                    }
                    bytes += items.iter().map(|i| i.len() as u64).sum::<u64>();
                    let _: u64 = q(t, &mut dst, redis::cmd("RPUSH").arg(tmp).arg(&items)).await?;
                    if items.len() < ELEMENTS {
                        break;
                    }
                    start += ELEMENTS;
                }
            }
            "stream" => match self.stream(key, tmp, &mut src, &mut dst).await? {
                Some(b) => bytes += b,
                // Seen gone: a stream written again since would mix with what was read.
                None => {
                    let _: u64 = q(t, &mut dst, redis::cmd("DEL").arg(tmp)).await?;
                    return Ok(Outcome::Expired);
                }
            },
            other => {
                return Err(format!("its type {other} cannot be copied type by type; use --mode dump"));
            }
        }
        // The source's key once read: gone meanwhile (deleted, evicted,
        // expired), what was read is a part of it and must not be put in
        // place; its expiry is the one it has now (a write may have set or
        // removed it since the first PTTL).
        let (kind_now, exp) = self.type_and_expiry(&mut src, key).await?;
        if kind_now == "none" || exp == Expiry::Gone {
            let _: u64 = q(t, &mut dst, redis::cmd("DEL").arg(tmp)).await?;
            return Ok(Outcome::Expired);
        }
        if kind_now != kind {
            return Err(format!(
                "it became a {kind_now} on the source while its {kind} was copied in chunks; what was read of it is \
                 not put in place"
            ));
        }
        // The source has it: a temporary key missing means the target lost
        // it, or the source's key was emptied and written again meanwhile.
        let lost = || {
            format!(
                "its temporary copy {} is not on the target after the copy wrote it (evicted under maxmemory or \
                 deleted there, or the source's key emptied and written again meanwhile), so it was not copied",
                super::show_key(tmp)
            )
        };
        if q::<u64>(t, &mut dst, redis::cmd("EXISTS").arg(tmp)).await? == 0 {
            return Err(lost());
        }
        // 0: no such key (a past expiry removes the key and answers 1).
        let expire = match self.expiry_read.write(exp, self.now()) {
            ExpiryWrite::At(ms) => Some(redis::cmd("PEXPIREAT").arg(tmp).arg(ms).clone()),
            ExpiryWrite::In(ms) => Some(redis::cmd("PEXPIRE").arg(tmp).arg(ms).clone()),
            ExpiryWrite::Never => None,
            // Its TTL used up since it was read: expired.
            ExpiryWrite::Passed => {
                let _: u64 = q(t, &mut dst, redis::cmd("DEL").arg(tmp)).await?;
                return Ok(Outcome::Expired);
            }
        };
        if let Some(expire) = expire
            && q::<u64>(t, &mut dst, &expire).await? == 0
        {
            return Err(lost());
        }
        let rename = redis::cmd(if self.overwrite { "RENAME" } else { "RENAMENX" }).arg(tmp).arg(key).clone();
        match rename.query_async::<Value>(&mut dst).await {
            // The expiry passed while we copied: PEXPIREAT removed it. A
            // key without one lost its temporary copy: not copied.
            Err(e) if e.detail() == Some("no such key") && expiry_passed(exp, self.now()) => Ok(Outcome::Expired),
            Err(e) if e.detail() == Some("no such key") => Err(lost()),
            Err(e) => Err(format!("{} {}: {}", t.role, t.redacted(), t.scrub(&e.to_string()))),
            Ok(Value::Int(0)) => {
                let _: u64 = q(t, &mut dst, redis::cmd("DEL").arg(tmp)).await?;
                Ok(Outcome::Conflict)
            }
            Ok(_) => Ok(Outcome::Copied(bytes)),
        }
    }

    /// Entries in ID order, the last generated ID and the consumer groups'
    /// last delivered IDs (DUMP mode also keeps consumers and pending
    /// entries); the bytes of the entries, or `None` once the stream is seen
    /// gone (XINFO: no such key).
    async fn stream(
        &self,
        key: &[u8],
        tmp: &[u8],
        src: &mut MultiplexedConnection,
        dst: &mut MultiplexedConnection,
    ) -> Result<Option<u64>, String> {
        let (f, t) = (&self.from, &self.to);
        let mut start = "-".to_string();
        let mut bytes = 0;
        let mut any = false;
        loop {
            let entries: Vec<(String, Vec<Vec<u8>>)> =
                q(f, src, redis::cmd("XRANGE").arg(key).arg(&start).arg("+").arg("COUNT").arg(1000)).await?;
            let Some((last, _)) = entries.last() else { break };
            let next = super::stream::after(last);
            let mut p = redis::pipe();
            for (id, fields) in &entries {
                bytes += fields.iter().map(|x| x.len() as u64).sum::<u64>();
                p.cmd("XADD").arg(tmp).arg(id).arg(fields).ignore();
            }
            let _: () = qp(t, dst, &p).await?;
            any = true;
            // Nothing comes after the last possible ID.
            let Some(next) = next else { break };
            start = next;
        }
        let Some(meta) = super::stream::meta(f, src, key).await? else { return Ok(None) };
        if !any {
            // An empty stream: made by a group's MKSTREAM, the group then
            // dropped. An entry added and deleted left Redis 7's counters
            // a deleted ID and an added entry the source never had (a
            // consumer group's lag is read from them).
            let mut mk = redis::cmd("XGROUP");
            mk.arg("CREATE").arg(tmp).arg("__cutover_mkstream").arg("0").arg("MKSTREAM");
            let _: () = q(t, dst, &mk).await?;
            let _: u64 = q(t, dst, redis::cmd("XGROUP").arg("DESTROY").arg(tmp).arg("__cutover_mkstream")).await?;
        }
        let _: () = q(t, dst, redis::cmd("XSETID").arg(tmp).arg(&meta.last_id)).await?;
        // Consumer groups with their last delivered ID; not their consumers or pending entries.
        for (name, id) in &meta.groups {
            let _: () = q(t, dst, redis::cmd("XGROUP").arg("CREATE").arg(tmp).arg(name).arg(id)).await?;
        }
        Ok(Some(bytes))
    }
}

/// The SCAN side of a copy: rate limit, stop flag, hook.
struct Scanner {
    conn: MultiplexedConnection,
    from: Endpoint,
    pattern: Option<String>,
    count: usize,
    rate: Option<u64>,
    hook: Option<ScanHook>,
    stop: Arc<AtomicBool>,
    lease: Option<Arc<crate::store::lease::Lease>>,
    started: Instant,
    /// Where the next SCAN starts.
    cursor: u64,
    done: bool,
    /// Keys scanned by this run.
    scanned: u64,
}

type ScanItem = Result<(Vec<Vec<u8>>, u64), String>;

impl Scanner {
    /// One SCAN: the keys and the cursor after them.
    async fn step(mut self) -> Option<(ScanItem, Scanner)> {
        if self.done || self.stop.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(r) = self.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.scanned as f64 / r as f64);
            let el = self.started.elapsed();
            if due > el {
                tokio::time::sleep(due - el).await;
            }
        }
        if let Some(lease) = &self.lease
            && let Err(e) = crate::store::off_async(|| lease.check())
        {
            self.done = true;
            return Some((Err(e), self));
        }
        let cmd = scan_cmd(self.cursor, self.pattern.as_deref(), self.count);
        match q::<(u64, Vec<Vec<u8>>)>(&self.from, &mut self.conn, &cmd).await {
            Ok((next, mut keys)) => {
                if let Some(h) = &self.hook {
                    h(&mut keys);
                }
                self.scanned += keys.len() as u64;
                self.cursor = next;
                self.done = next == 0;
                Some((Ok((keys, next)), self))
            }
            Err(e) => {
                self.done = true;
                Some((Err(e), self))
            }
        }
    }
}

async fn by_type_owned(ctx: Arc<Ctx>, key: Vec<u8>) -> (Vec<u8>, Result<Outcome, String>) {
    let o = ctx.by_type(&key).await;
    (key, o)
}

async fn run_batch(ctx: Arc<Ctx>, r: ScanItem) -> Result<(Counters, u64), String> {
    let (keys, next) = r?;
    let c = ctx.batch(keys).await?;
    Ok((c, next))
}

/// The scan of one source server: the only one, or one primary of a cluster.
struct Part {
    conn: MultiplexedConnection,
    /// The shard's slots (empty for a single server).
    slots: String,
    run_id: String,
    /// The shard's primary's, at the preflight (`None` for a single server).
    config_epoch: Option<u64>,
    at: ScanPlace,
}

/// The parts of the source, placed where a resume starts them, and the
/// counts of a resumed checkpoint that no part holds (see `Resume`).
fn source_parts(
    conns: &Conns,
    pf: &Preflight,
    nodes: Vec<MultiplexedConnection>,
    resume: Option<&Checkpoint>,
) -> (Vec<Part>, Counters) {
    let (places, carried) = match resume {
        Some(cp) => {
            let r = pf.resume_of(cp);
            (r.places, r.carried)
        }
        None => (vec![ScanPlace::start(); pf.source_shards.len().max(1)], Counters::default()),
    };
    if pf.source_shards.is_empty() {
        let part = Part {
            conn: conns.src.clone(),
            slots: String::new(),
            run_id: pf.source_run_id.clone(),
            config_epoch: None,
            at: places[0],
        };
        return (vec![part], carried);
    }
    let parts = nodes
        .into_iter()
        .zip(&pf.source_shards)
        .zip(places)
        .map(|((conn, s), at)| Part {
            conn,
            slots: s.slots.clone(),
            run_id: s.run_id.clone(),
            config_epoch: Some(s.config_epoch),
            at,
        })
        .collect();
    (parts, carried)
}

/// Each part's place and counts, as a checkpoint keeps them.
fn places(parts: &[Part]) -> Vec<ScanPlace> {
    parts.iter().map(|p| p.at).collect()
}

/// The copy's counts: its parts' (each since its scan last began at cursor
/// 0, so a scan that starts over counts its keys once) and those `carried`
/// from an older checkpoint.
fn total_of(carried: Counters, parts: &[Part]) -> Counters {
    Counters::sum(std::iter::once(carried).chain(parts.iter().map(|p| p.at.counters)))
}

fn save(opts: &CopyOptions, pf: &Preflight, parts: &[Part], carried: Counters) -> Result<(), String> {
    let Some(path) = &opts.checkpoint else { return Ok(()) };
    let single = parts.len() == 1 && parts[0].slots.is_empty();
    let cp = Checkpoint {
        from: opts.from.redacted(),
        to: opts.to.redacted(),
        pattern: opts.pattern.clone(),
        cursor: if single { parts[0].at.cursor } else { 0 },
        counters: total_of(carried, parts),
        on_conflict: opts.on_conflict,
        mode: pf.mode,
        updated: crate::time::rfc3339(std::time::SystemTime::now()),
        source_run_id: single.then(|| parts[0].run_id.clone()),
        shards: if single {
            Vec::new()
        } else {
            parts
                .iter()
                .map(|p| ShardPlace {
                    slots: p.slots.clone(),
                    run_id: p.run_id.clone(),
                    cursor: p.at.cursor,
                    done: p.at.done,
                    config_epoch: p.config_epoch,
                    counters: Some(p.at.counters),
                })
                .collect()
        },
        done: single && parts[0].at.done,
        target_run_ids: pf.target_servers.run_ids.clone(),
        target_replids: pf.target_servers.replids.clone(),
        target_mark: pf.mark(),
        target_evicted: Some(pf.evicted_base().count),
        target_evicted_on: pf.evicted_base().on,
    };
    checkpoint::save(path, &cp)
}

fn report(pf: &Preflight, started: Instant, run: &Counters, total: Counters, finished: bool) -> CopyProgress {
    CopyProgress { total, run: *run, estimate: pf.source_keys, elapsed: started.elapsed(), finished }
}

/// Into a cluster, at most this many times `scan_count` keys per SCAN.
const MAX_SCAN_PER_SHARD_FACTOR: usize = 3;

/// How far the target's clock may run ahead of cutover's: a key it removed
/// this close to its expiry is taken as expired (a key the target lost this
/// close to its expiry would be gone soon anyway).
const CLOCK_SKEW_MS: u64 = 30_000;

/// Whether a key whose temporary copy is gone from the target may have
/// expired there: its expiry has passed (within the clocks' skew). Else the
/// target lost it (evicted under maxmemory, deleted): not an expiry.
fn expiry_passed(exp: Expiry, now_ms: u64) -> bool {
    matches!(exp, Expiry::At(ms) if ms <= now_ms + CLOCK_SKEW_MS)
}

/// Most failovers one copy follows.
const MAX_FOLLOWS: usize = 5;
/// How long a copy waits for the sentinels to name a master that answers.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// How long the target's replicas get to confirm a checkpoint's writes.
const REPLICA_WAIT_MS: u64 = 2000;

/// The last checkpoint whose writes the target holds (with Sentinel: its
/// replicas too, so a failover loses nothing before it).
#[derive(Clone)]
struct Confirmed {
    places: Vec<ScanPlace>,
    run: Counters,
}

/// Replicas attached to the master behind `c` (ROLE).
async fn replica_count(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<u64, String> {
    let role: Vec<Value> = q(e, c, &redis::cmd("ROLE")).await?;
    Ok(match role.get(2) {
        Some(Value::Array(r)) => r.len() as u64,
        _ => 0,
    })
}

/// Whether the target's replicas hold every write so far (WAIT), so a
/// checkpoint may move past them. Always true without Sentinel: nothing
/// there promotes a replica behind the copy's back.
async fn replicated(opts: &CopyOptions, dst: &mut MultiplexedConnection, need: &mut u64) -> Result<bool, String> {
    if opts.to.sentinel().is_none() {
        return Ok(true);
    }
    // Only grows: a replica that left (promoted?) must not lower the bar.
    *need = (*need).max(replica_count(&opts.to, dst).await?);
    if *need == 0 {
        return Ok(true);
    }
    let acked: u64 = q(&opts.to, dst, redis::cmd("WAIT").arg(*need).arg(REPLICA_WAIT_MS)).await?;
    Ok(acked >= *need)
}

/// Where one side of the copy stands after an error.
enum Side {
    /// Same server, still answering (still master, with Sentinel).
    Same,
    /// The sentinels name a master that answers: here is a connection to it.
    Moved(MultiplexedConnection, String),
    /// Not yet: a failover may be under way.
    Waiting(String),
    /// A single server that does not answer: nothing to follow.
    Down(String),
}

async fn side(e: &Endpoint, old: &MultiplexedConnection, old_addr: &str) -> Side {
    let mut c = old.clone();
    let probe = if e.sentinel().is_some() { redis::cmd("ROLE") } else { redis::cmd("PING") };
    let answer = tokio::time::timeout(Duration::from_secs(1), probe.query_async::<Value>(&mut c)).await;
    let healthy = match (&answer, e.sentinel()) {
        (Ok(Ok(Value::Array(role))), Some(_)) => matches!(role.first(), Some(Value::BulkString(r)) if r == b"master"),
        (Ok(Ok(_)), None) => true,
        _ => false,
    };
    if e.sentinel().is_none() {
        return if healthy { Side::Same } else { Side::Down(format!("the {} {e} does not answer", e.role)) };
    }
    let addr = match e.clone().with_sentinel_majority().locate().await {
        Ok(a) => a,
        Err(why) => return Side::Waiting(why),
    };
    if addr == old_addr && healthy {
        return Side::Same;
    }
    match e.open_at(&addr).await {
        Ok(c) => Side::Moved(c, addr),
        Err(why) => Side::Waiting(why),
    }
}

/// After an error: asks the sentinels of each Sentinel side where its master
/// is now, until both sides answer. `None`: nothing moved and both answer,
/// so the error was no failover. Otherwise the new connections and, per side
/// that moved, a sentence saying so.
async fn follow(opts: &CopyOptions, conns: &Conns) -> Result<Option<(Conns, Vec<String>)>, String> {
    let deadline = Instant::now() + FAILOVER_WAIT;
    let gave_up = |waiting: &str| {
        format!("no working master after {} s of asking the sentinels: {waiting}", FAILOVER_WAIT.as_secs())
    };
    loop {
        // A named master that takes the connection and never answers holds
        // a round: the round, too, ends at the deadline.
        let round = async {
            (side(&opts.from, &conns.src, &conns.src_addr).await, side(&opts.to, &conns.dst, &conns.dst_addr).await)
        };
        let Ok((s, d)) = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), round).await else {
            return Err(gave_up("a server named did not answer in time"));
        };
        let waiting = match (&s, &d) {
            (Side::Down(e), _) | (_, Side::Down(e)) => return Err(e.clone()),
            (Side::Same, Side::Same) => return Ok(None),
            (Side::Waiting(why), _) | (_, Side::Waiting(why)) => why.clone(),
            _ => {
                let mut next = conns.clone_pair();
                let mut moved = Vec::new();
                for (e, state, conn, addr) in [
                    (&opts.from, s, &mut next.src, &mut next.src_addr),
                    (&opts.to, d, &mut next.dst, &mut next.dst_addr),
                ] {
                    if let Side::Moved(c, a) = state {
                        let master = e.sentinel().map(|g| g.master.clone()).unwrap_or_default();
                        moved.push(if a == *addr {
                            format!("followed a failover of the {} {e}: master {master} at {a} came back", e.role)
                        } else {
                            format!(
                                "followed a failover of the {} {e}: master {master} moved from {addr} to {a}",
                                e.role
                            )
                        });
                        *conn = c;
                        *addr = a;
                    }
                }
                return Ok(Some((next, moved)));
            }
        };
        if Instant::now() >= deadline {
            return Err(gave_up(&waiting));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the copy: the only entry point that writes to the target, so it
/// takes the `Actor` that `authority::authorise` grants. `progress` is called
/// after every batch and at the end. With a Sentinel endpoint, a lost master
/// is looked up again and the copy goes on from its last confirmed
/// checkpoint against the new one. A cluster source is scanned on every
/// primary at once, each with its own cursor in the checkpoint.
pub async fn copy(
    _who: &crate::authority::Actor,
    opts: &CopyOptions,
    conns: Conns,
    pf: &Preflight,
    mut progress: impl FnMut(&CopyProgress),
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let resumed = opts.resume.is_some();
    let mut conns = conns;
    let nodes = conns.source_nodes(pf).await.map_err(CopyError::Failed)?;
    let (mut parts, mut carried) = source_parts(&conns, pf, nodes, opts.resume.as_ref());
    let mut run = Counters::default();
    // The first checkpoint exists before the first write.
    save(opts, pf, &parts, carried).map_err(CopyError::Failed)?;
    let mut confirmed = Confirmed { places: places(&parts), run };
    let mut need_replicas = 0u64;
    let mut followed: Vec<String> = Vec::new();
    // Both may change when a failover is followed (another server, maybe
    // of another version: a rolling upgrade fails over to upgraded replicas).
    let mut target_version = pf.target_version.clone();
    let mut expiry_read = pf.expiry_read;
    let finished = loop {
        // Resumed, or back at a checkpoint after a failover: the target may
        // hold keys written since that checkpoint (a `fail` copy tells them
        // from foreign ones by their value, `settle_met`).
        let again = resumed || !followed.is_empty();
        let live = parts.iter().filter(|p| !p.at.done).count().max(1) as u64;
        // A batch from one server splits over the target's shards: scanning
        // `scan_count` per target shard keeps each shard's pipeline near
        // `scan_count`. In benches/redis_cluster.rs single → 3 shards cost
        // 20% more CPU a key than single → single with batches of
        // `scan_count`, 0–11% more with these. At most 3× (what was
        // measured): the type path holds up to 8 KB a key in flight.
        let target_shards = conns.dst_cluster.as_ref().map_or(1, |c| c.shards().len());
        let per_scan = opts.scan_count * target_shards.clamp(1, MAX_SCAN_PER_SHARD_FACTOR);
        let in_rebuild = InRebuild::default();
        let building = Building::default();
        let scans: Vec<_> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.at.done)
            .map(|(i, p)| {
                let ctx = Arc::new(Ctx {
                    from: opts.from.clone(),
                    to: opts.to.clone(),
                    src: p.conn.clone(),
                    dst: conns.dst.clone(),
                    dst_cluster: conns.dst_cluster.clone(),
                    mode: pf.mode,
                    overwrite: super::overwrite(opts.on_conflict),
                    conflict_is_error: opts.on_conflict == OnConflict::Fail,
                    again,
                    chunk_threshold: opts.chunk_threshold.unwrap_or(u64::MAX),
                    target_rdb: super::rdb_version(&target_version),
                    no_memory_usage: AtomicBool::new(opts.chunk_threshold.is_none()),
                    target_pxat: super::takes_pxat(&target_version),
                    expiry_read,
                    clock_shift_ms: pf.clock_shift_ms,
                    run_by: opts.run_by,
                    in_rebuild: in_rebuild.clone(),
                    building: building.clone(),
                });
                let scanner = Scanner {
                    conn: p.conn.clone(),
                    from: opts.from.clone(),
                    pattern: opts.pattern.clone(),
                    count: per_scan,
                    // The shards share the limit.
                    rate: opts.rate.map(|r| (r / live).max(1)),
                    hook: opts.after_scan.clone(),
                    stop: opts.stop.clone(),
                    lease: opts.lease.clone(),
                    started: Instant::now(),
                    cursor: p.at.cursor,
                    done: false,
                    scanned: 0,
                };
                futures::stream::unfold(scanner, Scanner::step)
                    .map(move |r| run_batch(ctx.clone(), r))
                    .buffered(opts.pipeline.max(1))
                    .map(move |r| (i, r))
                    .boxed()
            })
            .collect();
        let mut batches = futures::stream::select_all(scans);
        let mut dst = conns.dst.clone();
        let mut last_save = Instant::now();
        let end: Result<bool, String> = async {
            while let Some((i, r)) = batches.next().await {
                let (c, next) = r?;
                run.add(&c);
                let at = &mut parts[i].at;
                at.counters.add(&c);
                (at.cursor, at.done) = (next, next == 0);
                let finished = parts.iter().all(|p| p.at.done);
                if finished || last_save.elapsed() >= opts.checkpoint_every {
                    if replicated(opts, &mut dst, &mut need_replicas).await? {
                        // What the replicas hold now: the mark this checkpoint keeps.
                        if pf.target_history.is_some() {
                            pf.set_mark(confirmed_mark(&replication_info(&opts.to, &mut dst).await?));
                        }
                        save(opts, pf, &parts, carried)?;
                        confirmed = Confirmed { places: places(&parts), run };
                    } else if finished {
                        return Err(format!(
                            "target {}: its replicas did not confirm the last writes within {REPLICA_WAIT_MS} ms",
                            opts.to
                        ));
                    } else {
                        tracing::warn!(target = %opts.to, "replicas behind: the checkpoint waits");
                    }
                    last_save = Instant::now();
                }
                progress(&report(pf, started, &run, total_of(carried, &parts), finished));
                if finished {
                    return Ok(true);
                }
            }
            Ok(parts.iter().all(|p| p.at.done))
        }
        .await;
        drop(batches);
        let e = match end {
            Ok(finished) => break finished,
            Err(e) => e,
        };
        let left = building.take();
        // Another copy of the pair holds it now (its lease or its checkpoint):
        // no failover to follow, no place of ours to save, and no temporary
        // key to remove (that copy builds under the same names).
        let lost = opts.lease.as_ref().and_then(|l| l.lost());
        if lost.is_some() || opts.checkpoint.as_ref().is_some_and(|p| p.taken_by_another()) {
            if !left.is_empty() {
                tracing::warn!(
                    count = left.len(),
                    "temporary keys left on the target for the copy that holds the pair"
                );
            }
            return Err(CopyError::Failed(format!(
                "{e}; this copy stopped and wrote nothing more: another copy of the pair holds it now, with the place ({} keys copied by this run)",
                run.copied
            )));
        }
        // The batches in flight were dropped half-way: their temporary keys go.
        remove_tmps(&opts.to, &conns.dst, conns.dst_cluster.as_deref(), left.clone()).await;
        let sentinel = opts.from.sentinel().is_some() || opts.to.sentinel().is_some();
        let next = if sentinel && followed.len() < MAX_FOLLOWS {
            tracing::warn!(error = %e, "lost a server; asking the sentinels");
            follow(opts, &conns).await
        } else {
            Ok(None)
        };
        let (new, moved) = match next {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => {
                let why = match next {
                    Err(why) => format!("; {why}"),
                    _ => String::new(),
                };
                // Without Sentinel every batch so far is on the target; with it, only what the replicas confirmed.
                if opts.to.sentinel().is_some() {
                    restore(&mut parts, &confirmed.places);
                }
                let copied = total_of(carried, &parts).copied;
                // A source that cannot be asked now: no change known, the places stay.
                let change = match &conns.src_cluster {
                    Some(cl) => source_change(cl, pf).await.ok().flatten(),
                    None => None,
                };
                if let Some(SourceChange::Resharded(_)) = &change {
                    start_over(&mut parts, &mut carried);
                }
                let saved = save(opts, pf, &parts, carried);
                match change {
                    Some(SourceChange::FailedOver(moved)) => {
                        return Err(CopyError::Failed(format!(
                            "{moved}; {copied} keys copied so far, the checkpoint keeps every shard's place: {} \
                             scans that shard again alone and the others go on from their cursors (the error: {})",
                            opts.run_by.resumer(),
                            short(&e)
                        )));
                    }
                    Some(SourceChange::Resharded(what)) => {
                        let told = match saved {
                            Ok(()) => resharded(&what, copied, opts.run_by),
                            Err(why) => not_reset(&what, copied, &why, opts.run_by),
                        };
                        return Err(CopyError::Failed(format!("{told} (the error: {})", short(&e))));
                    }
                    None => {}
                }
                return Err(CopyError::Failed(format!(
                    "{e}{why}; {copied} keys copied so far, the checkpoint keeps the place ({} continues)",
                    opts.run_by.resumer()
                )));
            }
        };
        // A Sentinel source or target gets here. A cluster source keeps its
        // parts: only its (Sentinel) target moved.
        let target_moved = new.dst_addr != conns.dst_addr;
        conns = new;
        // A target that failed over may hold them too (replicated before).
        remove_tmps(&opts.to, &conns.dst, conns.dst_cluster.as_deref(), left).await;
        restore(&mut parts, &confirmed.places);
        run = confirmed.run;
        // The master found (the same one restarted, or a promoted replica)
        // must hold what the replicas confirmed: one restarted without its
        // data, or from an older snapshot, before the sentinels failed it
        // over does not, and its replicas emptied themselves to follow it.
        if pf.target_history.is_some() {
            let now = conns.target_history(&opts.to).await.map_err(CopyError::Failed)?;
            if let (Some(took), Some(now)) = (&pf.mark(), &now)
                && let Some(why) = now.lost(took)
            {
                start_over(&mut parts, &mut carried);
                // Nothing is kept from before: the new master's history is where it starts.
                pf.set_mark(Some(checkpoint::ReplMark { replid: now.replid.clone(), offset: now.offset }));
                let saved = save(opts, pf, &parts, carried);
                return Err(CopyError::Failed(format!(
                    "{why}; what it had taken is lost, and nothing tells which keys. The copy stopped; {}",
                    set_back(saved, opts.run_by)
                )));
            }
        }
        // A target that moved: one replica became its master, and the others
        // must still confirm (one reattaching to it is not listed yet).
        if target_moved {
            need_replicas = need_replicas.saturating_sub(1);
        }
        need_replicas = need_replicas.max(replica_count(&opts.to, &mut conns.dst).await.unwrap_or(0));
        // Evictions are counted on the master that took the writes: another
        // one (promoted, or restarted) counts its own, and what the old one
        // dropped after taking it can be read nowhere now. Where the target
        // evicts, every key is written again.
        let mut evictions_unread = false;
        if opts.to.sentinel().is_some() {
            let (version, master) = server_info(&opts.to, &mut conns.dst).await.map_err(CopyError::Failed)?;
            target_version = version;
            if pf.evicted_base().on.as_deref() != Some(master.as_str()) {
                let count = conns.target_evicted(&opts.to).await.map_err(CopyError::Failed)?;
                evictions_unread =
                    pf.target_may_evict || may_evict(&opts.to, &mut conns.dst).await.map_err(CopyError::Failed)?;
                pf.set_evicted_base(EvictionBase { count, on: Some(master) });
            }
        }
        // A cluster source did not move (its scanned servers' versions stand).
        let mut source_version = None;
        let run_id = if conns.src_cluster.is_some() {
            parts[0].run_id.clone()
        } else {
            // A single source: one part, on the master found now.
            parts[0].conn = conns.src.clone();
            let (version, run_id) = server_info(&opts.from, &mut conns.src).await.map_err(CopyError::Failed)?;
            source_version = Some(version);
            run_id
        };
        // Exact expiries only while the servers found now still allow them;
        // never back from PTTL, which every version answers.
        if expiry_read == ExpiryRead::Absolute {
            expiry_read = ExpiryRead::choose(source_version.as_deref(), &target_version);
        }
        let place = if evictions_unread {
            start_over(&mut parts, &mut carried);
            "the target's master is another server now and its maxmemory-policy evicts keys: what the old one \
             evicted cannot be read any more, so the copy starts its scan again"
                .to_string()
        } else if run_id != parts[0].run_id {
            // A new source master scans in another order: start over.
            parts[0].at = ScanPlace::start();
            "the source's new master scans in another order, so the copy starts its scan again".to_string()
        } else {
            format!("the copy went on from its checkpoint ({} keys copied)", total_of(carried, &parts).copied)
        };
        parts[0].run_id = run_id;
        for m in moved {
            tracing::warn!("{m}; {place}");
            followed.push(format!("{m}; {place}"));
        }
        save(opts, pf, &parts, carried).map_err(CopyError::Failed)?;
        // The place to go back to is this one: the confirmed place before a
        // source failover is a cursor of the old master, which means nothing
        // to the new one (the start of a scan is always safe to go back to).
        confirmed = Confirmed { places: places(&parts), run };
    };
    // Out of a cluster, a scan is complete only if no slot moved meanwhile:
    // a key moving from a shard not yet scanned to one already scanned is
    // seen by neither SCAN. A source that cannot be asked shows nothing.
    if finished && let Some(cl) = &conns.src_cluster {
        let what = match source_change(cl, pf).await {
            Ok(Some(SourceChange::Resharded(what))) => Some(what),
            Ok(_) => None,
            Err(e) => Some(format!(
                "the source's shards could not be read again after the scan, so nothing shows that no slot moved \
                 during it ({})",
                short(&e)
            )),
        };
        if let Some(what) = what {
            let copied = total_of(carried, &parts).copied;
            start_over(&mut parts, &mut carried);
            return Err(CopyError::Failed(match save(opts, pf, &parts, carried) {
                Ok(()) => resharded(&what, copied, opts.run_by),
                Err(why) => not_reset(&what, copied, &why, opts.run_by),
            }));
        }
    }
    // A shard read on a replica is complete only if the replica is still in
    // step: one cut off from its primary during the scan served what it last
    // had. Such a shard is scanned again, the others stay done.
    if finished && conns.src_cluster.is_some() {
        let (on_replicas, reads): (Vec<usize>, Vec<_>) = parts
            .iter()
            .zip(&pf.source_shards)
            .enumerate()
            .filter(|(_, (_, s))| s.read_on != s.primary)
            .map(|(i, (p, s))| (i, (s.slots.clone(), s.read_on.clone(), p.conn.clone())))
            .unzip();
        let behind = cluster::fallen_behind(&opts.from, &reads).await;
        if !behind.is_empty() {
            let copied = total_of(carried, &parts).copied;
            for (r, _) in &behind {
                parts[on_replicas[*r]].at = ScanPlace::start();
            }
            let what: Vec<&str> = behind.iter().map(|(_, why)| why.as_str()).collect();
            let what = what.join("; ");
            let (shard, it) = if behind.len() == 1 { ("that shard", "it") } else { ("those shards", "them") };
            return Err(CopyError::Failed(match save(opts, pf, &parts, carried) {
                Ok(()) => format!(
                    "{what}. The keys read there may be old, so the copy stopped ({copied} keys copied) and its \
                     checkpoint starts {shard} over: {} scans {it} again (on a replica in step, else on the \
                     primary), and the other shards stay done",
                    opts.run_by.resumer()
                ),
                Err(why) => format!(
                    "{what}. The keys read there may be old, so the copy stopped ({copied} keys copied), but its \
                     checkpoint could not be set back for {shard} ({why}): copy again with `cutover redis copy \
                     --restart --on-conflict replace` ({} would trust the old place)",
                    opts.run_by.resumer()
                ),
            }));
        }
    }
    // The servers that took the writes must still be the target's: one
    // restarted or replaced by its replica meanwhile may have lost some
    // (acknowledged before saved or replicated), and nothing tells which.
    if finished && (!pf.target_servers.run_ids.is_empty() || pf.target_history.is_some()) {
        let copied = total_of(carried, &parts).copied;
        let gone = match conns.target_gone(&opts.to, pf).await {
            Ok(n) => n,
            Err(e) => {
                save(opts, pf, &parts, carried).map_err(CopyError::Failed)?;
                return Err(CopyError::Failed(format!(
                    "every key was written ({copied}), but the target could not be asked afterwards whether the \
                     servers that took them are still its own ({}); the checkpoint is kept: {} asks again",
                    short(&e),
                    opts.run_by.resumer()
                )));
            }
        };
        if gone != (0, 0) {
            start_over(&mut parts, &mut carried);
            let saved = save(opts, pf, &parts, carried);
            let what = match gone {
                (0, demoted) => format!(
                    "the target was a replica during the copy ({demoted} of its servers that took writes followed \
                     another meanwhile, taking its data in place of their own): the copy's writes may be gone"
                ),
                (gone, _) => format!(
                    "the target restarted or failed over during the copy ({gone} of its servers that took writes is \
                     gone): what it had not saved or passed to its replica is lost"
                ),
            };
            return Err(CopyError::Failed(format!(
                "{what}, and nothing tells which keys. The copy stopped ({copied} keys written); {}",
                set_back(saved, opts.run_by)
            )));
        }
    }
    // A target full at its maxmemory evicts keys after taking them: written,
    // then gone, and nothing tells which (a server restarted since counts
    // from 0, so no growth is read then).
    if finished {
        let copied = total_of(carried, &parts).copied;
        let before = pf.evicted_base().count;
        let evicted = conns.target_evicted(&opts.to).await;
        if let Err(e) = &evicted {
            // Unread is not lost: the checkpoint is kept, as when the target's servers cannot be asked.
            save(opts, pf, &parts, carried).map_err(CopyError::Failed)?;
            return Err(CopyError::Failed(format!(
                "every key was written ({copied}), but whether the target evicted any meanwhile could not be read \
                 ({}); the checkpoint is kept: {} asks again",
                short(e),
                opts.run_by.resumer()
            )));
        }
        let why = match evicted.map(|now| (now, now.saturating_sub(before))) {
            Ok((_, 0)) | Err(_) => None,
            Ok((now, n)) => Some((
                now,
                format!(
                    "the target evicted {n} keys during the copy: it reached its maxmemory, and its maxmemory-policy \
                 drops keys after their writes were answered OK, so some of the {copied} keys written may be gone \
                 and nothing tells which. Give it more memory (or a larger node type), then"
                ),
            )),
        };
        if let Some((now, why)) = why {
            // The scan starting over writes every key again: counted from here.
            pf.set_evicted_base(EvictionBase { count: now, ..pf.evicted_base() });
            start_over(&mut parts, &mut carried);
            let saved = save(opts, pf, &parts, carried);
            return Err(CopyError::Failed(format!("{why} copy again: {}", set_back(saved, opts.run_by))));
        }
    }
    let interrupted = !finished;
    if interrupted {
        let mut dst = conns.dst.clone();
        if !replicated(opts, &mut dst, &mut need_replicas).await.unwrap_or(false) {
            restore(&mut parts, &confirmed.places);
            run = confirmed.run;
        }
        save(opts, pf, &parts, carried).map_err(CopyError::Failed)?;
    } else if let Some(path) = &opts.checkpoint {
        crate::crashpoint::here("copy:before-checkpoint-removed");
        checkpoint::remove(path).map_err(CopyError::Failed)?;
    }
    progress(&report(pf, started, &run, total_of(carried, &parts), true));
    Ok(CopyReport {
        mode: pf.mode,
        mode_reason: pf.mode_reason.clone(),
        total: total_of(carried, &parts),
        run,
        seconds: started.elapsed().as_secs_f64(),
        resumed,
        interrupted,
        followed,
    })
}

/// How a cluster source changed since the preflight.
enum SourceChange {
    /// Same slots, another primary (a failover), one sentence per shard.
    FailedOver(String),
    /// Slots moved, or are moving, between shards (a resharding): a shard's
    /// SCAN misses keys that move into it behind its cursor.
    Resharded(String),
}

/// Asks the cluster source again who owns what and which slots are open,
/// and compares with the preflight.
async fn source_change(cl: &Cluster, pf: &Preflight) -> Result<Option<SourceChange>, String> {
    // Each primary's own view first, the slot map second: a slot whose move
    // ends between the two still shows, as a new map or a bumped epoch.
    let views = cl.own_views().await;
    cl.refresh().await?;
    let now = cl.shards();
    let layout = |slots: Vec<String>| slots.join(" | ");
    let before: Vec<String> = pf.source_shards.iter().map(|s| s.slots.clone()).collect();
    let after: Vec<String> = now.iter().map(|s| s.slots_text()).collect();
    if before != after {
        return Ok(Some(SourceChange::Resharded(format!(
            "the source cluster was resharded during the copy: its shards' slots were {}, now {}",
            layout(before),
            layout(after)
        ))));
    }
    // A failover shows in the map, or first in the old primary's own view:
    // the node asked for the map may not have heard of it yet.
    let demoted = |primary: &str| -> Option<String> {
        let views = views.as_ref().ok()?;
        views.iter().find(|v| v.primary == primary)?.replica_of.clone()
    };
    // Each shard's new primary, if it failed over.
    let failed_over: Vec<Option<String>> = pf
        .source_shards
        .iter()
        .zip(&now)
        .map(|(s, n)| if s.primary != n.primary { Some(n.primary.clone()) } else { demoted(&s.primary) })
        .collect();
    let moved: Vec<String> = pf
        .source_shards
        .iter()
        .zip(&failed_over)
        .filter_map(|(s, new)| {
            Some(format!("shard {} failed over during the copy (primary {} → {})", s.slots, s.primary, new.as_ref()?))
        })
        .collect();
    // A failover does not hide a slot being moved, or one moved and back:
    // the primaries now are asked again (one of the preflight's may be down).
    let views = if moved.is_empty() { views? } else { cl.own_views().await? };
    let open = cluster::open_slots(&views);
    if !open.is_empty() {
        return Ok(Some(SourceChange::Resharded(format!(
            "the source cluster is moving slots between its shards ({})",
            open.join(", ")
        ))));
    }
    // Slots moved and moved back leave the map as it was, but not the epochs
    // (a failover bumps its winner's: a shard that failed over tells nothing).
    let bumped: Vec<String> = pf
        .source_shards
        .iter()
        .zip(&failed_over)
        .filter(|(_, new)| new.is_none())
        .filter_map(|(s, _)| {
            let v = views.iter().find(|v| v.primary == s.primary)?;
            (v.config_epoch != s.config_epoch)
                .then(|| format!("{} (config epoch {} → {})", s.primary, s.config_epoch, v.config_epoch))
        })
        .collect();
    if !bumped.is_empty() {
        return Ok(Some(SourceChange::Resharded(format!(
            "slots moved between the source cluster's shards during the copy, though its slot map now looks as \
             before: these primaries took a slot (or failed over and back) meanwhile: {}",
            bumped.join(", ")
        ))));
    }
    Ok((!moved.is_empty()).then(|| SourceChange::FailedOver(moved.join("; "))))
}

/// The message of a copy stopped by a resharding of its source; every
/// shard's place is back at the start by then.
fn resharded(what: &str, copied: u64, run_by: RunBy) -> String {
    format!(
        "{what}. A shard's SCAN misses keys that move into it behind its cursor, so this copy may lack some: it \
         stopped ({copied} keys copied so far) and its checkpoint now starts every shard over. Once the resharding \
         is over (`redis-cli --cluster check HOST:PORT` shows no open slot), {}: it scans every shard again",
        run_by.resume()
    )
}

/// The message of a copy stopped by a resharding whose checkpoint could not
/// be set back to the start: a `--resume` would trust the old cursors.
fn not_reset(what: &str, copied: u64, why: &str, run_by: RunBy) -> String {
    format!(
        "{what}. A shard's SCAN misses keys that move into it behind its cursor, so this copy may lack some: it \
         stopped ({copied} keys copied so far), but its checkpoint could not be set back to the start ({why}). \
         Once the resharding is over, start over with `cutover redis copy --restart --on-conflict replace` ({} \
         would trust the old cursors)",
        run_by.resumer()
    )
}

/// Every part's scan back at its start, with nothing counted (nor
/// `carried`): what it copied is written and counted again.
fn start_over(parts: &mut [Part], carried: &mut Counters) {
    for p in parts {
        p.at = ScanPlace::start();
    }
    *carried = Counters::default();
}

fn restore(parts: &mut [Part], places: &[ScanPlace]) {
    for (p, at) in parts.iter_mut().zip(places) {
        p.at = *at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gone_from_the_target_before_its_expiry_is_lost_not_expired() {
        let now = 1_000_000;
        assert!(expiry_passed(Expiry::At(now - 5), now));
        assert!(expiry_passed(Expiry::At(now + 20_000), now), "within the clocks' skew");
        // Hours left on the source: evicted or deleted on the target.
        assert!(!expiry_passed(Expiry::At(now + 3_600_000), now));
        assert!(!expiry_passed(Expiry::Never, now));
    }

    /// A replica in its full sync reports offset 0 and holds nothing yet: the
    /// mark is what the online ones acknowledged, so a master restarted from
    /// an older snapshot is seen to have lost the writes after it.
    #[test]
    fn the_confirmed_mark_is_what_the_online_replicas_hold() {
        let info = "role:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=9000,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
                    master_replid:aaaa\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n\
                    master_repl_offset:9100\r\nsecond_repl_offset:-1\r\n";
        let mark = confirmed_mark(info).unwrap();
        assert_eq!((mark.replid.as_str(), mark.offset), ("aaaa", 9000));
        let restarted = checkpoint::ReplHistory {
            replid: "bbbb".into(),
            offset: 4001,
            replid2: Some("aaaa".into()),
            second_offset: 4001,
        };
        assert!(restarted.lost(&mark).is_some(), "restarted at 4001 of 9000 acknowledged");
        let none_online = info.replace("state=online", "state=send_bulk");
        assert_eq!(confirmed_mark(&none_online).unwrap().offset, 9100, "no replica holds it: the master's own");
    }

    /// A ZSCAN (HSCAN) reply of an odd number of items (no Redis sends one;
    /// a proxy or a module might) is no sorted set (hash) read whole: the batched path
    /// hands the key to `by_type`, which stops with an error, where
    /// `pair[1]` panicked.
    #[test]
    fn an_odd_zscan_reply_is_not_taken_as_members_and_scores() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply =
            |items: &[&str]| Value::Array(vec![bulk("0"), Value::Array(items.iter().map(|i| bulk(i)).collect())]);
        assert_eq!(Kind::Zset.items(reply(&["a", "1", "b", "2"])).map(|i| i.len()), Some(4));
        assert_eq!(Kind::Zset.items(reply(&["a", "1", "b"])), None);
        // A hash's fields and values likewise: HSET on the target refused
        // the odd count, blamed on the target.
        assert_eq!(Kind::Hash.items(reply(&["f", "v"])).map(|i| i.len()), Some(2));
        assert_eq!(Kind::Hash.items(reply(&["f", "v", "g"])), None);
        // A set's members are not pairs.
        assert_eq!(Kind::Set.items(reply(&["a", "b", "c"])).map(|i| i.len()), Some(3));
    }

    #[test]
    fn big_batches_are_dumped_in_groups_under_the_budget() {
        assert_eq!(group_sizes(&[1, 1, 1], 10), [3]);
        assert_eq!(group_sizes(&[4, 4, 4, 4], 10), [2, 2]);
        assert_eq!(group_sizes(&[30, 1, 1, 30], 10), [1, 2, 1]);
        assert!(group_sizes(&[], 10).is_empty());
    }

    #[test]
    fn scan_commands_carry_match_and_count() {
        let c = scan_cmd(7, Some("a:*"), 100);
        assert_eq!(
            c.get_packed_command(),
            redis::cmd("SCAN").arg(7).arg("MATCH").arg("a:*").arg("COUNT").arg(100).get_packed_command()
        );
    }
}
