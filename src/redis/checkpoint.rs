//! The resume point of a copy: the SCAN cursor after the last batch that is
//! fully written, and the counters so far. Written atomically (0600).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::backend::{Backend, Cond, StoreError, Version, current};

use serde::{Deserialize, Serialize};

use super::progress::Counters;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Redacted URLs and pattern this checkpoint belongs to.
    pub from: String,
    pub to: String,
    pub pattern: Option<String>,
    /// Where SCAN continues; every key SCAN returned before it is on the target.
    pub cursor: u64,
    /// The copy's counts: for one server, since its scan last began at
    /// cursor 0; for a cluster, the sum of `shards`' and of any counts an
    /// older checkpoint kept for no shard.
    pub counters: Counters,
    pub on_conflict: super::OnConflict,
    pub mode: super::Mode,
    /// RFC 3339 time of the last write.
    pub updated: String,
    /// The source's `run_id` when the cursor was taken: a SCAN cursor means
    /// nothing to a restarted server (its hash seed is new).
    #[serde(default)]
    pub source_run_id: Option<String>,
    /// A cluster source: one place per shard (then `cursor` is unused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardPlace>,
    /// One server scanned to the end: the last save of a copy that then
    /// stopped before it removed this (killed, or the removal failed).
    /// Cursor 0 alone would read as "start over" and copy and count every
    /// key again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
    /// The `run_id` of the target (each primary of a cluster) that took the
    /// writes before `cursor`. Another server there since (a restart, a
    /// replica promoted) may not hold them: writes are acknowledged before
    /// they are saved or replicated. Empty for a Sentinel target (its places
    /// are the replicas' confirmed ones) and in older checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_run_ids: Vec<String>,
    /// The `master_replid` of each server of `target_run_ids`, in order. A
    /// server demoted (taking its new master's data in place of its own)
    /// and promoted again keeps its run_id, not its replication ID. Empty
    /// from servers before Redis 4 and in older checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_replids: Vec<String>,
    /// A Sentinel target: its master's replication ID and offset when the
    /// replicas last confirmed the writes before the cursor ([`ReplMark`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mark: Option<ReplMark>,
    /// The target's `evicted_keys` (summed over a cluster's primaries) as
    /// the copy's first run began: evictions during an interrupted run are
    /// still seen when a resume ends. None in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_evicted: Option<u64>,
    /// A Sentinel target: the `run_id` of the master `target_evicted` was
    /// read on. Another server's count says nothing of what this one
    /// evicted (a promoted replica counts its own, a restart counts from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_evicted_on: Option<String>,
}

/// Where a Sentinel target's master stood when its replicas confirmed a
/// checkpoint's writes: its `master_replid` and `master_repl_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplMark {
    pub replid: String,
    pub offset: u64,
}

/// A master's replication history as read now (INFO replication): its
/// `master_replid` up to `master_repl_offset`, and the ID before it
/// (`master_replid2`, none when all zeros) up to `second_repl_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplHistory {
    pub replid: String,
    pub offset: u64,
    pub replid2: Option<String>,
    pub second_offset: u64,
}

impl ReplHistory {
    /// Why this master may not hold what was confirmed at `took`, if so.
    /// It does when its history reaches `took`: the same ID at or past its
    /// offset, or (a replica promoted since, or a Redis 7 master restarted
    /// from its RDB file) the ID before its own valid past it. A master
    /// restarted without its data has a new ID and none before it; one
    /// restarted from an older snapshot has the ID before it valid only up
    /// to that snapshot's offset.
    pub fn lost(&self, took: &ReplMark) -> Option<String> {
        let reaches = (self.replid == took.replid && self.offset >= took.offset)
            || (self.replid2.as_deref() == Some(took.replid.as_str()) && self.second_offset > took.offset);
        (!reaches).then(|| {
            format!(
                "the target's master restarted or was replaced, and its replication history does not reach the \
                 last confirmed writes (replication ID {} at offset {}; now {} at {}{})",
                short(&took.replid),
                took.offset,
                short(&self.replid),
                self.offset,
                self.replid2.as_deref().map_or(String::new(), |r| format!(
                    ", before it {} up to {}",
                    short(r),
                    self.second_offset.saturating_sub(1)
                ))
            )
        })
    }
}

/// Where the scan of one shard of a cluster source stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlace {
    /// The shard's slots (`0-5460`): its name across failovers.
    pub slots: String,
    /// Its primary's `run_id` when `cursor` was taken.
    pub run_id: String,
    pub cursor: u64,
    /// Scanned to the end.
    pub done: bool,
    /// Its primary's config epoch when the copy that saved this began. A
    /// slot that comes to a shard bumps it, so slots that moved and came
    /// back while no copy ran still show. `None` in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_epoch: Option<u64>,
    /// The shard's counts since its scan last began at cursor 0, so a scan
    /// that starts over drops them and counts its keys once. `None` in
    /// older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
}

/// Where the scan of one part of the source (the one server, or a shard)
/// starts or stands, with its counts since it last began at cursor 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanPlace {
    pub cursor: u64,
    /// Scanned to the end.
    pub done: bool,
    pub counters: Counters,
}

impl ScanPlace {
    /// A scan from the start, with nothing counted.
    pub fn start() -> ScanPlace {
        ScanPlace::default()
    }
}

/// Where a resumed copy's scans start, as found now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// One per part of the source: the one server, or each shard in the
    /// order found now.
    pub places: Vec<ScanPlace>,
    /// Counts the checkpoint gives no part (one written before shards kept
    /// their own): carried as they are until every part starts over.
    pub carried: Counters,
    /// Why a scan starts over, a sentence each.
    pub why: Vec<String>,
}

impl Resume {
    /// Every scan of a source of `shards` shards (0: one server) from the
    /// start, for `why`.
    pub fn over(shards: usize, why: String) -> Resume {
        Resume { places: vec![ScanPlace::start(); shards.max(1)], carried: Counters::default(), why: vec![why] }
    }

    /// Keys copied by the scans that go on (a scan that starts over counts again from 0).
    pub fn copied(&self) -> u64 {
        Counters::sum(std::iter::once(self.carried).chain(self.places.iter().map(|p| p.counters))).copied
    }
}

/// One shard of a cluster source as a copy's preflight found it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardRun {
    pub slots: String,
    pub primary: String,
    /// The node scanned: the primary, or a replica with `--from-replicas`.
    pub read_on: String,
    /// `read_on`'s `run_id`.
    pub run_id: String,
    /// The primary's config epoch: it changes when a slot comes to it.
    pub config_epoch: u64,
}

/// Where each shard of a cluster source starts again, as found now. If the
/// shards themselves changed (a resharding), every shard starts over, since
/// a moved slot may sit behind another shard's cursor. Otherwise a shard
/// starts over alone when its scanned node changed (`run_id`: a failover)
/// or its primary's config epoch moved: a primary bumps it when a slot
/// comes to it (`redis-cli --cluster reshard` moves slots through
/// IMPORTING), so slots that moved and came back, leaving the layout as it
/// was, show there. Only a shard that took a slot can hold keys behind its
/// cursor that it did not hold before; the others go on.
fn resume_shards(saved: &[ShardPlace], now: &[ShardRun]) -> (Vec<ScanPlace>, Vec<String>) {
    let same_layout = saved.len() == now.len() && now.iter().all(|n| saved.iter().any(|p| p.slots == n.slots));
    if !same_layout {
        let why = "the cluster's shards changed since the checkpoint (slots moved): every shard's scan starts over, going over what was copied again".to_string();
        return (vec![ScanPlace::start(); now.len()], vec![why]);
    }
    let mut why = Vec::new();
    if saved.iter().any(|p| p.config_epoch.is_none()) {
        why.push(
            "this checkpoint keeps no config epochs (an older cutover wrote it): slots that moved and came back since cannot be seen; if the source cluster was resharded meanwhile, start over with --restart --on-conflict replace".to_string(),
        );
    }
    let places = now
        .iter()
        .map(|n| {
            let p = saved.iter().find(|p| p.slots == n.slots).expect("same layout");
            if p.cursor == 0 && !p.done {
                // At its start already (never begun, or set back): nothing to say.
                ScanPlace::start()
            } else if p.run_id != n.run_id {
                // The node read: its primary, or with --from-replicas a replica.
                why.push(format!(
                    "shard {}: the node it is read on changed or restarted since the checkpoint (run_id {} → {}: a failover, or another node read), so its scan starts over; the other shards resume",
                    n.slots,
                    short(&p.run_id),
                    short(&n.run_id)
                ));
                ScanPlace::start()
            } else if let Some(was) = p.config_epoch.filter(|was| *was != n.config_epoch) {
                why.push(format!(
                    "shard {}: its primary {} took a slot since the checkpoint (or failed over and back, or onto the replica this copy reads; config epoch {was} → {}), though the slot map may look as before, so its scan starts over; the other shards resume",
                    n.slots, n.primary, n.config_epoch
                ));
                ScanPlace::start()
            } else {
                ScanPlace { cursor: p.cursor, done: p.done, counters: p.counters.unwrap_or_default() }
            }
        })
        .collect();
    (places, why)
}

impl Checkpoint {
    /// Where a resumed copy's scans start: `source_run_id` is the one
    /// server's, `shards` a cluster source's as found now (empty for one
    /// server), `target` the target's servers as found now.
    pub fn resume(&self, source_run_id: &str, shards: &[ShardRun], target: &TargetServers) -> Resume {
        if let Some(why) = self.target_replaced(target) {
            return Resume::over(shards.len(), why);
        }
        if shards.is_empty() {
            // Nothing is left to scan, whatever the source did since.
            if self.done {
                let places = vec![ScanPlace { cursor: 0, done: true, counters: self.counters }];
                return Resume { places, carried: Counters::default(), why: Vec::new() };
            }
            let (cursor, why) = self.resume_cursor(source_run_id);
            let counters = if why.is_some() { Counters::default() } else { self.counters };
            let places = vec![ScanPlace { cursor, done: false, counters }];
            return Resume { places, carried: Counters::default(), why: why.into_iter().collect() };
        }
        let (places, why) = resume_shards(&self.shards, shards);
        // What an older checkpoint counted for no shard (nothing in a newer
        // one), unless every shard starts over.
        let carried = if places.iter().all(|p| *p == ScanPlace::start()) {
            Counters::default()
        } else {
            self.counters.minus(&Counters::sum(self.shards.iter().map(|s| s.counters.unwrap_or_default())))
        };
        Resume { places, carried, why }
    }

    /// Why the target lost every write before the checkpoint, when it holds
    /// no key now (`target_keys`, its DBSIZE) though the checkpoint copied
    /// some: emptied since (FLUSHALL, FLUSHDB), which leaves its run_id as
    /// it was. Resuming would skip what it lost and call the copy done.
    pub fn target_emptied(&self, target_keys: u64) -> Option<String> {
        (target_keys == 0 && self.counters.copied > 0).then(|| {
            format!(
                "the target holds no key, though the checkpoint had copied {} to it: it was emptied since (FLUSHALL \
                 or FLUSHDB, say), so the scan starts over and writes every key again",
                self.counters.copied
            )
        })
    }

    /// Why every write before the checkpoint may be missing from the target,
    /// if it may: a server that took them is not there now (restarted, so
    /// empty without persistence; or failed over to a replica that had not
    /// received the last of them). Nothing tells which keys; only a scan
    /// from the start puts them all back.
    fn target_replaced(&self, now: &TargetServers) -> Option<String> {
        let gone: Vec<&str> = servers_gone(&self.target_run_ids, &now.run_ids).into_iter().map(short).collect();
        if gone.is_empty() {
            let demoted: Vec<&str> =
                demoted(&self.target_run_ids, &self.target_replids, now).into_iter().map(short).collect();
            if demoted.is_empty() {
                return None;
            }
            let now: Vec<&str> = now.replids.iter().map(|id| short(id)).collect();
            // A server still in `now`: demoted and promoted again.
            return Some(format!(
                "the target was a replica since the checkpoint (its replication ID {} → {}): a server that follows \
                 another takes that one's data in place of its own, so the copy's writes before the checkpoint may \
                 be gone; the scan starts over and writes every key again ({} keys copied before)",
                demoted.join(", "),
                now.join(", "),
                self.counters.copied
            ));
        }
        let now: Vec<&str> = now.run_ids.iter().map(|id| short(id)).collect();
        Some(format!(
            "the target restarted or failed over since the checkpoint (run_id {} → {}): a server that took the copy's \
             writes is gone, and what it had not saved or passed to its replica is lost with it, so the scan starts \
             over and writes every key again ({} keys copied before)",
            gone.join(", "),
            if now.is_empty() { "none".to_string() } else { now.join(", ") },
            self.counters.copied
        ))
    }

    /// Why a Sentinel target may have lost the writes before the
    /// checkpoint: its master's replication history now does not reach the
    /// mark the checkpoint kept. None without a mark or a history.
    pub fn lineage_broken(&self, now: Option<&ReplHistory>) -> Option<String> {
        let why = now?.lost(self.target_mark.as_ref()?)?;
        Some(format!(
            "{why} since the checkpoint: it may have lost what it took, so the scan starts over and writes every key \
             again ({} keys copied before)",
            self.counters.copied
        ))
    }

    /// Why a resume must write every key again: a Sentinel target's master
    /// is another server than the one whose evictions were counted (a
    /// failover, a restart), and the target evicts (`evicts`), so what the
    /// old one dropped after taking it can be read nowhere now.
    pub fn evictions_unread(&self, master_now: &str, evicts: bool) -> Option<String> {
        let then = self.target_evicted_on.as_deref()?;
        (then != master_now && evicts).then(|| {
            format!(
                "the target's master is another server than the one that took the writes (run_id {} then, {} now) \
                 and its maxmemory-policy evicts keys: what the old one evicted cannot be read any more, so the scan \
                 starts over and writes every key again ({} keys copied before)",
                short(then),
                short(master_now),
                self.counters.copied
            )
        })
    }

    /// Where a resumed copy starts SCAN: the saved cursor, or 0 with the
    /// reason when the source restarted (or failed over) since it was saved.
    fn resume_cursor(&self, source_run_id: &str) -> (u64, Option<String>) {
        match &self.source_run_id {
            // A server whose INFO gives no run_id (a proxy in front of
            // Redis) cannot show a restart: its cursor is not trusted.
            Some(id) if id == "?" || source_run_id == "?" => (
                0,
                Some(format!(
                    "the source's INFO gives no run_id, so whether it restarted since the checkpoint (after which a SCAN cursor no longer holds) cannot be told: the scan starts over and goes over what it copied before again ({} keys)",
                    self.counters.copied
                )),
            ),
            Some(id) if id != source_run_id => (
                0,
                Some(format!(
                    "the source restarted since the checkpoint (run_id {} → {}): a SCAN cursor does not survive a restart, so the scan starts over and goes over what it copied before again ({} keys)",
                    short(id),
                    short(source_run_id),
                    self.counters.copied
                )),
            ),
            _ => (self.cursor, None),
        }
    }
}

/// The target's servers as read at one time (each primary of a cluster):
/// their `run_id`s, and in the same order the replication ID
/// (`master_replid`) each writes under, where it has one, and whether it
/// followed another master before it (`master_replid2` set: a replica
/// promoted keeps the ID it followed; a new replication backlog, for a
/// first replica or after one was freed, renews the ID and clears that).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetServers {
    pub run_ids: Vec<String>,
    pub replids: Vec<String>,
    pub followed: Vec<bool>,
}

impl TargetServers {
    /// Adds the server whose `INFO` (its server and replication sections)
    /// is `info`; a field it does not give (before Redis 4: no replication
    /// ID) is left out, and the lists' lengths then tell it.
    pub fn add_from_info(&mut self, info: &str) {
        let field = |f| super::info_field(info, f).filter(|v| !v.is_empty() && *v != "?").map(str::to_string);
        self.run_ids.extend(field("run_id"));
        self.replids.extend(field("master_replid"));
        // An ID of zeros is no previous one.
        self.followed.extend(field("master_replid2").map(|id| !id.bytes().all(|b| b == b'0')));
    }

    /// The servers `self` read, as `now` reads them: how many restarted or
    /// were replaced (their run_id gone), and how many of the rest were a
    /// replica meanwhile (their run_id there, their replication ID not).
    pub fn lost_in(&self, now: &TargetServers) -> (usize, usize) {
        (servers_gone(&self.run_ids, &now.run_ids).len(), demoted(&self.run_ids, &self.replids, now).len())
    }
}

/// The replication IDs of the servers that took writes (`run_ids`, with
/// `replids` in order) that `now` finds by run_id under another replication
/// ID, having followed another master: each was a replica since. None when
/// a side does not tell every server's.
fn demoted<'a>(run_ids: &[String], replids: &'a [String], now: &TargetServers) -> Vec<&'a str> {
    if replids.len() != run_ids.len()
        || now.replids.len() != now.run_ids.len()
        || now.followed.len() != now.run_ids.len()
    {
        return Vec::new();
    }
    run_ids
        .iter()
        .zip(replids)
        .filter(|(id, replid)| {
            now.run_ids.iter().position(|n| n == *id).is_some_and(|j| now.replids[j] != **replid && now.followed[j])
        })
        .map(|(_, replid)| replid.as_str())
        .collect()
}

/// The `run_id`s of `took` (the servers that took a copy's writes) that are
/// not among the target's servers `now`.
pub fn servers_gone<'a>(took: &'a [String], now: &[String]) -> Vec<&'a str> {
    took.iter().filter(|id| !now.contains(id)).map(String::as_str).collect()
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Where one copy's checkpoint is in the process's store
/// (`redis-copy/<hash>.json`: a file in the state folder, or an object in
/// the team's bucket, so a copy begun on one machine resumes on another),
/// with the version this copy last read or wrote: every write is
/// conditional on it, so two copies of one pair never overwrite each
/// other's place.
/// The version this copy last read or wrote, and the body of a write whose
/// answer never came (it may have landed).
type Known = (Option<Version>, Option<Vec<u8>>);

#[derive(Clone)]
pub struct Place {
    store: Arc<dyn Backend>,
    item: String,
    known: Arc<Mutex<Known>>,
    /// Another copy wrote the checkpoint: this copy's place is gone.
    conflicted: Arc<AtomicBool>,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One per (from, to, pattern) in the process's store; `from` and `to` are
/// `Endpoint::server_id`s.
pub fn place_for(from: &str, to: &str, pattern: Option<&str>) -> Place {
    Place::in_store(current(), from, to, pattern)
}

/// How often a running copy saves its place: a shared store is a request
/// away, so less often there.
pub fn interval() -> Duration {
    if current().shared() { Duration::from_secs(2) } else { Duration::from_millis(500) }
}

impl PartialEq for Place {
    fn eq(&self, other: &Place) -> bool {
        self.item == other.item
    }
}

impl Place {
    pub fn in_store(store: Arc<dyn Backend>, from: &str, to: &str, pattern: Option<&str>) -> Place {
        let id = format!("{from}\n{to}\n{}", pattern.unwrap_or("*"));
        let item = format!("redis-copy/{:016x}.json", crate::hash::fnv1a(id.as_bytes()));
        Place { store, item, known: Default::default(), conflicted: Default::default() }
    }

    /// The file or object, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.store.describe(), self.item)
    }

    /// True once another copy of the pair wrote the checkpoint: this copy
    /// must stop and leave the place to it.
    pub fn taken_by_another(&self) -> bool {
        self.conflicted.load(Ordering::SeqCst)
    }

    fn remember(&self, v: Option<Version>) {
        if let Ok(mut m) = self.known.lock() {
            *m = (v, None);
        }
    }

    fn read_version(&self) -> Option<Version> {
        self.known.lock().ok().and_then(|k| k.0.clone())
    }

    fn conflict(&self) -> String {
        self.conflicted.store(true, Ordering::SeqCst);
        format!(
            "{}: another copy of the same pair wrote the checkpoint since this one read it; this copy stopped and leaves the place to it (run one copy of a pair at a time)",
            self.describe()
        )
    }
}

pub fn load(place: &Place) -> Result<Option<Checkpoint>, String> {
    match place.store.get("", &place.item) {
        Ok(Some(o)) => {
            place.remember(Some(o.version));
            serde_json::from_slice(&o.body).map(Some).map_err(|e| {
                format!(
                    "{}: damaged checkpoint ({e}); start the copy over with `cutover redis copy … --restart`",
                    place.describe()
                )
            })
        }
        Ok(None) => {
            place.remember(None);
            Ok(None)
        }
        Err(e) => Err(format!("{}: cannot read the checkpoint: {e}", place.describe())),
    }
}

/// For `--restart`: the checkpoint's version only (even a damaged one), so
/// the new copy's first save replaces exactly what was read.
pub fn forget(place: &Place) -> Result<(), String> {
    match place.store.get("", &place.item) {
        Ok(o) => {
            place.remember(o.map(|o| o.version));
            Ok(())
        }
        Err(e) => Err(format!("{}: cannot read the checkpoint: {e}", place.describe())),
    }
}

pub fn save(place: &Place, cp: &Checkpoint) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(cp).map_err(|e| e.to_string())?;
    let (version, unanswered) = place.known.lock().map(|k| k.clone()).unwrap_or_default();
    // A store request may block for seconds: off the copy's async threads.
    let put = |cond: Cond| crate::store::off_async(|| place.store.put("", &place.item, &body, cond));
    let answer = match put(Cond::replacing(version.as_ref())) {
        Err(StoreError::Conflict) => {
            // A write that landed although its answer was lost (and was sent
            // again, or not answered) is ours, not another copy's.
            match crate::store::off_async(|| place.store.get("", &place.item)) {
                Ok(Some(o)) if o.body == body => Ok(o.version),
                Ok(Some(o)) if unanswered.as_ref() == Some(&o.body) => put(Cond::Matches(o.version)),
                // Refused and unread: unknown (kept as unanswered), not another copy's.
                Err(e) => Err(e),
                _ => Err(StoreError::Conflict),
            }
        }
        other => other,
    };
    match answer {
        Ok(v) => {
            place.remember(Some(v));
            Ok(())
        }
        Err(StoreError::Conflict) => Err(place.conflict()),
        Err(e) => {
            if let Ok(mut k) = place.known.lock() {
                k.1 = Some(body);
            }
            Err(format!("{}: cannot write the checkpoint: {e}", place.describe()))
        }
    }
}

/// The copy is complete: its checkpoint goes (only the version this copy
/// wrote; with none known there is nothing of this copy's to remove).
pub fn remove(place: &Place) -> Result<(), String> {
    let Some(version) = place.read_version() else { return Ok(()) };
    match crate::store::off_async(|| place.store.delete("", &place.item, Cond::Matches(version))) {
        Ok(()) => {
            place.remember(None);
            Ok(())
        }
        Err(StoreError::Conflict) => Err(place.conflict()),
        Err(e) => Err(format!("{}: cannot remove the checkpoint: {e}", place.describe())),
    }
}

/// One copy of a pair at a time: an flock on this machine always (a copy
/// with local files and one in the team's store still exclude each other
/// here), and in a shared store a lease beside the checkpoint, which the
/// copy checks before each batch (`Lease::check`).
pub struct CopyLock {
    _local: std::fs::File,
    lease: Option<Arc<crate::store::lease::Lease>>,
}

impl CopyLock {
    /// `Ok(Err(who))` when another copy of the pair holds it. A shared lock
    /// whose holder stopped renewing it is taken after watching it for a
    /// whole lease (`say` tells why it waits).
    pub fn try_take(place: &Place, what: &str, say: &mut dyn FnMut(&str)) -> Result<Result<CopyLock, String>, String> {
        use crate::store::lease::{Refusal, acquire_item};
        let local = if place.store.shared() {
            crate::store::backend::LocalFiles::default().path("", &place.item)
        } else {
            std::path::Path::new(&place.store.describe()).join(&place.item)
        };
        let Some(file) = crate::paths::try_lock(&local.with_extension("lock"))? else {
            return Ok(Err("by another cutover process on this machine".into()));
        };
        if !place.store.shared() {
            return Ok(Ok(CopyLock { _local: file, lease: None }));
        }
        let item = place.item.replace(".json", ".lease");
        let taken = crate::store::off_async(|| {
            acquire_item(place.store.clone(), "", &item, what, crate::runbook::DEFAULT_LEASE, say)
        });
        match taken {
            Ok(lease) => Ok(Ok(CopyLock { _local: file, lease: Some(Arc::new(lease)) })),
            Err(Refusal::Held(r)) => Ok(Err(format!("by {}", r.describe(std::time::SystemTime::now())))),
            Err(Refusal::Renewed(r)) => Ok(Err(format!(
                "by {}, which still renews it although its expiry disagrees with this machine's clock (the clocks differ)",
                r.holder
            ))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The shared lease, for the copy to check before each batch.
    pub fn lease(&self) -> Option<Arc<crate::store::lease::Lease>> {
        self.lease.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &tempfile::TempDir) -> Arc<dyn Backend> {
        Arc::new(crate::store::backend::LocalFiles { dir: Some(dir.path().to_path_buf()) })
    }

    /// A checkpoint of a `fail` DUMP copy from `from`, `copied` keys in.
    fn checkpoint(from: &str, cursor: u64, copied: u64) -> Checkpoint {
        Checkpoint {
            from: from.into(),
            to: "redis://h:2/0".into(),
            pattern: None,
            cursor,
            counters: Counters { copied, ..Default::default() },
            on_conflict: super::super::OnConflict::Fail,
            mode: super::super::Mode::Dump,
            updated: "2026-11-22T06:00:00Z".into(),
            source_run_id: None,
            shards: Vec::new(),
            done: false,
            target_run_ids: Vec::new(),
            target_replids: Vec::new(),
            target_mark: None,
            target_evicted: None,
            target_evicted_on: None,
        }
    }

    /// A resume onto a Sentinel master other than the one whose evictions
    /// were counted cannot read what the old one dropped: with an evicting
    /// policy every key is written again.
    #[test]
    fn evictions_on_another_master_are_unread_only_where_the_target_evicts() {
        let mut cp = checkpoint("redis://h:1/0", 42, 900);
        assert_eq!(cp.evictions_unread("bbbb", true), None, "an older checkpoint names no master");
        cp.target_evicted_on = Some("aaaa".into());
        assert_eq!(cp.evictions_unread("aaaa", true), None, "the same master: its count is read");
        assert_eq!(cp.evictions_unread("bbbb", false), None, "noeviction: nothing was dropped");
        let why = cp.evictions_unread("bbbb", true).unwrap();
        assert!(why.contains("run_id aaaa then, bbbb now") && why.contains("900 keys copied before"), "{why}");
    }

    #[test]
    fn the_lock_is_held_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = Place::in_store(files(&dir), "redis://h:1/0", "redis://h:2/0", None);
        let take = || CopyLock::try_take(&p, "redis copy", &mut |_| {}).unwrap();
        let held = take();
        assert!(held.is_ok());
        assert!(take().is_err());
        drop(held);
        assert!(take().is_ok());
    }

    #[test]
    fn one_checkpoint_per_copy_and_it_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let place = |from: &str, to: &str, pattern: Option<&str>| Place::in_store(files(&dir), from, to, pattern);
        let a = place("redis://h:1/0", "redis://h:2/0", None);
        assert_eq!(a, place("redis://h:1/0", "redis://h:2/0", Some("*")));
        assert_ne!(a, place("redis://h:1/0", "redis://h:2/0", Some("user:*")));
        assert_ne!(a, place("redis://h:2/0", "redis://h:1/0", None));
        assert!(a.describe().starts_with(&format!("{}/redis-copy/", dir.path().display())), "today's folder");
        let p = a;
        assert_eq!(load(&p).unwrap(), None);
        let cp = Checkpoint { source_run_id: Some("a1b2c3d4e5".into()), ..checkpoint("redis://:***@h:1/0", 42, 7) };
        let same = cp.resume("a1b2c3d4e5", &[], &TargetServers::default());
        assert_eq!(same.places, [ScanPlace { cursor: 42, done: false, counters: cp.counters }], "same server");
        assert!(same.why.is_empty());
        let r = cp.resume("ffff0000", &[], &TargetServers::default());
        assert_eq!(
            (&r.places[..], r.copied()),
            (&[ScanPlace::start()][..], 0),
            "a restarted source: the scan starts over"
        );
        assert!(r.why[0].contains("run_id a1b2c3d4 → ffff0000"), "{:?}", r.why);
        // A source whose INFO gives no run_id (read as "?"): a restart cannot
        // be seen, so its cursor is not trusted ("?" was taken as the same).
        let blind = Checkpoint { source_run_id: Some("?".into()), ..cp.clone() };
        let r = blind.resume("?", &[], &TargetServers::default());
        assert_eq!(r.places, [ScanPlace::start()], "{:?}", r.why);
        assert!(r.why[0].contains("gives no run_id"), "{:?}", r.why);
        // Scanned to the end, stopped before the checkpoint was removed:
        // nothing left to scan, the counts as saved, source restarted or not.
        let finished = Checkpoint { cursor: 0, done: true, ..cp.clone() };
        for run_id in ["a1b2c3d4e5", "ffff0000"] {
            let r = finished.resume(run_id, &[], &TargetServers::default());
            assert_eq!(
                (&r.places[..], r.copied()),
                (&[ScanPlace { cursor: 0, done: true, counters: cp.counters }][..], 7)
            );
            assert!(r.why.is_empty());
        }
        save(&p, &cp).unwrap();
        assert_eq!(load(&p).unwrap(), Some(cp.clone()));
        // A second copy of the pair read it too, then this one moved on: the
        // second one's write is refused, never over this one's place.
        let other = place("redis://h:1/0", "redis://h:2/0", None);
        assert_eq!(load(&other).unwrap(), Some(cp.clone()));
        let moved = Checkpoint { cursor: 99, ..cp.clone() };
        save(&p, &moved).unwrap();
        let e = save(&other, &cp).unwrap_err();
        assert!(e.contains("another copy of the same pair wrote the checkpoint"), "{e}");
        assert!(other.taken_by_another() && !p.taken_by_another());
        assert_eq!(load(&other).unwrap(), Some(moved.clone()), "the first copy's place stands");
        // A write that landed although this copy never heard so (sent again
        // on a stale version) is its own, not a conflict.
        let again = place("redis://h:1/0", "redis://h:2/0", None);
        load(&again).unwrap();
        save(&p, &cp).unwrap();
        save(&again, &cp).unwrap();
        assert!(!again.taken_by_another());
        remove(&p).unwrap();
        assert_eq!(load(&p).unwrap(), None);
        remove(&p).unwrap();
        // Only the version it knows: a checkpoint written since is not its to remove.
        load(&other).unwrap();
        save(&other, &moved).unwrap();
        assert!(remove(&again).is_err(), "another copy's checkpoint stays");
        assert_eq!(load(&p).unwrap(), Some(moved));
        std::fs::write(p.describe(), "{").unwrap();
        assert!(load(&p).unwrap_err().contains("damaged checkpoint"));
    }

    #[test]
    fn a_cluster_resumes_per_shard_and_a_failed_over_shard_starts_over_alone() {
        let place = |slots: &str, run_id: &str, cursor, done| ShardPlace {
            slots: slots.into(),
            run_id: run_id.into(),
            cursor,
            done,
            config_epoch: Some(1),
            counters: Some(Counters { copied: cursor + 1000, ..Default::default() }),
        };
        let saved = [
            place("0-5460", "aaaa", 0, true),
            place("5461-10922", "bbbb", 77, false),
            place("10923-16383", "cccc", 9, false),
        ];
        let shard = |slots: &str, run_id: &str, config_epoch| ShardRun {
            slots: slots.into(),
            primary: format!("127.0.0.1:{}", 7000 + slots.len()),
            read_on: String::new(),
            run_id: run_id.into(),
            config_epoch,
        };
        let now = |ids: [&str; 3], epochs: [u64; 3]| -> Vec<ShardRun> {
            ["0-5460", "5461-10922", "10923-16383"]
                .iter()
                .zip(ids)
                .zip(epochs)
                .map(|((s, i), e)| shard(s, i, e))
                .collect()
        };
        // (cursor, done, copied) of each shard.
        let of = |r: &Resume| -> Vec<(u64, bool, u64)> {
            r.places.iter().map(|p| (p.cursor, p.done, p.counters.copied)).collect()
        };
        let cp = Checkpoint { shards: saved.to_vec(), ..checkpoint("redis+cluster://h:1", 0, 3086) };
        let r = cp.resume("", &now(["aaaa", "bbbb", "cccc"], [1; 3]), &TargetServers::default());
        assert_eq!(of(&r), [(0, true, 1000), (77, false, 1077), (9, false, 1009)]);
        assert!(r.why.is_empty());
        assert_eq!((r.carried, r.copied()), (Counters::default(), 3086));
        // A failover bumps the promoted node's epoch too: that shard alone
        // starts over, and counts its keys again from 0.
        let r = cp.resume("", &now(["aaaa", "ffff", "cccc"], [1, 2, 1]), &TargetServers::default());
        assert_eq!(
            of(&r),
            [(0, true, 1000), (0, false, 0), (9, false, 1009)],
            "only the failed-over shard starts over"
        );
        assert_eq!(r.copied(), 2009);
        let why = r.why;
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("shard 5461-10922") && why[0].contains("bbbb → ffff"), "{}", why[0]);
        let resharded =
            vec![shard("0-5000", "aaaa", 1), shard("5001-10922", "bbbb", 1), shard("10923-16383", "cccc", 1)];
        let r = cp.resume("", &resharded, &TargetServers::default());
        assert_eq!((of(&r), r.copied()), (vec![(0, false, 0); 3], 0));
        assert!(r.why[0].contains("shards changed"), "{}", r.why[0]);
        // A slot went from the second shard to the third and back: the
        // layout is as before, the epochs of both are not. Those two start
        // over; the first, which took no slot, goes on.
        let Resume { places, why, .. } =
            cp.resume("", &now(["aaaa", "bbbb", "cccc"], [1, 2, 3]), &TargetServers::default());
        let places: Vec<(u64, bool)> = places.iter().map(|p| (p.cursor, p.done)).collect();
        assert_eq!(places, [(0, true), (0, false), (0, false)]);
        assert_eq!(why.len(), 2);
        assert!(why[1].starts_with("shard 10923-16383: its primary 127.0.0.1:"), "{}", why[1]);
        assert!(why[1].contains("took a slot") && why[1].contains("config epoch 1 → 3)"), "{}", why[1]);
        // A checkpoint written before epochs were kept resumes as before, and says what it cannot see.
        // Nor counters per shard: its counts are carried as they are.
        let old: Vec<ShardPlace> =
            saved.iter().cloned().map(|p| ShardPlace { config_epoch: None, counters: None, ..p }).collect();
        let old = Checkpoint { shards: old, ..cp.clone() };
        let r = old.resume("", &now(["aaaa", "bbbb", "cccc"], [1, 1, 3]), &TargetServers::default());
        assert_eq!(of(&r), [(0, true, 0), (77, false, 0), (9, false, 0)]);
        assert_eq!((r.carried.copied, r.copied()), (3086, 3086));
        assert_eq!(r.why.len(), 1);
        assert!(r.why[0].contains("keeps no config epochs"), "{}", r.why[0]);
        // Saved again as a copy saves it (each shard its own counts, the
        // total with what is carried), its next resume carries as much.
        let again = Checkpoint {
            shards: saved
                .iter()
                .zip(&r.places)
                .map(|(s, p)| ShardPlace { counters: Some(p.counters), ..s.clone() })
                .collect(),
            ..cp.clone()
        };
        let r = again.resume("", &now(["aaaa", "bbbb", "cccc"], [1; 3]), &TargetServers::default());
        assert_eq!((r.carried.copied, r.copied()), (3086, 3086));
        // Every shard starting over carries nothing.
        let r = again.resume("", &resharded, &TargetServers::default());
        assert_eq!((r.carried.copied, r.copied()), (0, 0));
    }

    #[test]
    fn a_target_server_gone_since_the_checkpoint_starts_every_scan_over() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let servers = |v: &[&str]| TargetServers { run_ids: ids(v), ..Default::default() };
        let one = Checkpoint {
            source_run_id: Some("5555".into()),
            target_run_ids: ids(&["tttt0000"]),
            target_replids: ids(&["rrrr0000"]),
            ..checkpoint("redis://h:1/0", 42, 7)
        };
        let same = TargetServers { run_ids: ids(&["tttt0000"]), replids: ids(&["rrrr0000"]), followed: vec![false] };
        let r = one.resume("5555", &[], &same);
        assert_eq!((r.places[0].cursor, r.copied(), r.why.len()), (42, 7, 0), "the same target: go on");
        // A server that tells no replication ID (before Redis 4) is judged by its run_id.
        let r = one.resume("5555", &[], &servers(&["tttt0000"]));
        assert_eq!((r.places[0].cursor, r.why.len()), (42, 0));
        // A new replication ID without a previous one (a first replica
        // attached, or the backlog freed with none): the same data, go on.
        let backlog = TargetServers { run_ids: ids(&["tttt0000"]), replids: ids(&["ssss1111"]), followed: vec![false] };
        let r = one.resume("5555", &[], &backlog);
        assert_eq!((r.places[0].cursor, r.why.len()), (42, 0));
        // The same server, failed over and back (a replica meanwhile): a new
        // replication ID, with the one it followed as its previous.
        let back = TargetServers { run_ids: ids(&["tttt0000"]), replids: ids(&["ssss1111"]), followed: vec![true] };
        for cp in [one.clone(), Checkpoint { cursor: 0, done: true, ..one.clone() }] {
            let r = cp.resume("5555", &[], &back);
            assert_eq!((&r.places[..], r.copied()), (&[ScanPlace::start()][..], 0));
            assert!(
                r.why[0]
                    .contains("the target was a replica since the checkpoint (its replication ID rrrr0000 → ssss1111)")
                    && r.why[0].contains("7 keys copied before"),
                "{:?}",
                r.why
            );
        }
        // Restarted (empty without persistence), even when the scan was over.
        for cp in [one.clone(), Checkpoint { cursor: 0, done: true, ..one.clone() }] {
            let r = cp.resume("5555", &[], &servers(&["uuuu1111"]));
            assert_eq!((&r.places[..], r.copied()), (&[ScanPlace::start()][..], 0));
            assert!(
                r.why[0].contains("run_id tttt0000 → uuuu1111") && r.why[0].contains("7 keys copied before"),
                "{:?}",
                r.why
            );
        }
        // A Sentinel target, marked at replid rrrr0000 offset 500: the same
        // master further on, or a replica promoted since that had received
        // past 500 (it carries rrrr0000 on as its second ID), hold the
        // writes; a master restarted empty (new ID, none before it), or
        // restarted from an RDB file taken at offset 300 (Redis 7 keeps the
        // old ID as its second, valid up to 300), do not.
        let mark = ReplMark { replid: "rrrr0000".into(), offset: 500 };
        let sentinel = Checkpoint { target_run_ids: Vec::new(), target_mark: Some(mark), ..one.clone() };
        let h = |replid: &str, offset: u64, before: Option<(&str, u64)>| ReplHistory {
            replid: replid.into(),
            offset,
            replid2: before.map(|b| b.0.into()),
            second_offset: before.map_or(0, |b| b.1),
        };
        assert_eq!(sentinel.lineage_broken(Some(&h("rrrr0000", 900, None))), None, "the same master");
        assert_eq!(sentinel.lineage_broken(Some(&h("pppp1111", 950, Some(("rrrr0000", 801))))), None, "promoted");
        let why = sentinel.lineage_broken(Some(&h("ssss2222", 0, None))).unwrap_or_default();
        assert!(
            why.starts_with("the target's master restarted or was replaced, and its replication history does not")
                && why.contains("(replication ID rrrr0000 at offset 500; now ssss2222 at 0)")
                && why.contains("7 keys copied before"),
            "{why}"
        );
        let why = sentinel.lineage_broken(Some(&h("tttt3333", 320, Some(("rrrr0000", 301))))).unwrap_or_default();
        assert!(why.contains("now tttt3333 at 320, before it rrrr0000 up to 300)"), "an older snapshot: {why}");
        assert!(sentinel.lineage_broken(Some(&h("rrrr0000", 400, None))).is_some(), "the same ID behind the mark");
        assert_eq!(one.lineage_broken(Some(&h("ssss2222", 0, None))), None, "a checkpoint that kept no mark");
        // A cluster target: one primary replaced by its replica starts every
        // shard of the source over (any key may live on that shard); a
        // primary added beside the same ones does not.
        let shard = |slots: &str, run_id: &str| ShardPlace {
            slots: slots.into(),
            run_id: run_id.into(),
            cursor: 5,
            done: false,
            config_epoch: Some(1),
            counters: Some(Counters { copied: 3, ..Default::default() }),
        };
        let run = |slots: &str, run_id: &str| ShardRun {
            slots: slots.into(),
            primary: "127.0.0.1:1".into(),
            read_on: "127.0.0.1:1".into(),
            run_id: run_id.into(),
            config_epoch: 1,
        };
        let cl = Checkpoint {
            shards: vec![shard("0-8191", "aaaa"), shard("8192-16383", "bbbb")],
            target_run_ids: ids(&["t1", "t2", "t3"]),
            ..checkpoint("redis+cluster://h:1", 0, 6)
        };
        let now = [run("0-8191", "aaaa"), run("8192-16383", "bbbb")];
        let r = cl.resume("", &now, &servers(&["t3", "t1", "t2", "t4"]));
        assert_eq!((r.copied(), r.why.len()), (6, 0));
        let r = cl.resume("", &now, &servers(&["t1", "t3", "r2"]));
        assert_eq!((&r.places[..], r.copied()), (&[ScanPlace::start(); 2][..], 0));
        assert!(r.why[0].contains("run_id t2 → t1, t3, r2"), "{:?}", r.why);
        // An older checkpoint, or a Sentinel target's, names none: as before.
        let r = Checkpoint { target_run_ids: Vec::new(), target_replids: Vec::new(), ..one }.resume(
            "5555",
            &[],
            &servers(&["uuuu1111"]),
        );
        assert_eq!((r.places[0].cursor, r.why.len()), (42, 0));
    }
}
