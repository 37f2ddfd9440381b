//! `cutover redis verify`: key counts (keys minus expiring keys, which drift),
//! then every key or a sample: missing, type, value (DUMP bytes, else the
//! logical value), TTL within a tolerance; a full verify then every key of
//! the target's, for keys only it has. Reads only.

use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::cluster::{self, Cluster};
use super::query::{error_text, key_counts, node_for_key, per_key, q, qp};
use super::size;
use super::stream;
use super::url::Endpoint;

/// Bytes of a string, and elements of a collection, one chunk reads: a
/// string as the copy's chunks; fewer elements than the copy's 5,000, as
/// each element of a scanned chunk is then asked of the other side, one
/// command each, in one pipeline.
const CHUNK_BYTES: u64 = 1 << 20;
const CHUNK_ELEMENTS: u64 = 1000;

/// A stream entry as XRANGE gives it: its ID, then fields and values.
type StreamEntry = (String, Vec<Vec<u8>>);

#[derive(Clone)]
pub struct VerifyOptions {
    pub from: Endpoint,
    pub to: Endpoint,
    pub pattern: Option<String>,
    /// `None`: every key.
    pub sample: Option<u64>,
    pub ttl_tolerance_ms: u64,
    pub scan_count: usize,
    /// Keys per second, at most (default: unlimited).
    pub rate: Option<u64>,
    /// Keys bigger than this (bytes, MEMORY USAGE) on either side are
    /// compared in chunks, never DUMPed whole.
    pub chunk_threshold: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    Missing {
        key: String,
    },
    /// On the target only (found by a full verify's walk of the target).
    Extra {
        key: String,
    },
    Type {
        key: String,
        source: String,
        target: String,
    },
    Value {
        key: String,
    },
    /// PTTL in ms; -1 is no expiry.
    Ttl {
        key: String,
        source: i64,
        target: i64,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ttl = |v: i64| if v < 0 { "none".to_string() } else { format!("{v} ms") };
        match self {
            Difference::Missing { key } => write!(f, "missing on target: {key}"),
            Difference::Extra { key } => write!(f, "on target only: {key}"),
            Difference::Type { key, source, target } => write!(f, "type differs: {key} ({source} → {target})"),
            Difference::Value { key } => write!(f, "value differs: {key}"),
            Difference::Ttl { key, source, target } => {
                write!(f, "TTL differs: {key} (source {}, target {})", ttl(*source), ttl(*target))
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Keys without an expiry on each side (all keys, or those matching --match).
    pub source_persistent: u64,
    pub target_persistent: u64,
    pub source_keys: u64,
    pub target_keys: u64,
    pub checked: u64,
    pub missing: u64,
    /// Keys on the target the source does not have (a full verify only).
    pub extra: u64,
    /// The sample's size when keys were sampled (`--sample`): the
    /// target's own keys were not looked for, and the counts of keys with
    /// an expiry were not compared.
    pub sampled: Option<u64>,
    pub type_mismatch: u64,
    pub value_mismatch: u64,
    pub ttl_mismatch: u64,
    /// Keys gone from the source while being checked (expired).
    pub vanished: u64,
    /// Keys over the chunk threshold on a side, compared in chunks.
    pub compared_in_chunks: u64,
    pub first: Vec<Difference>,
}

impl VerifyReport {
    pub fn counts_match(&self) -> bool {
        self.source_persistent == self.target_persistent
    }

    /// Equal, on at least one key compared: nothing compared proves nothing
    /// (a URL naming the wrong database, a `--match` that matches nothing).
    pub fn ok(&self) -> bool {
        self.checked > 0
            && self.counts_match()
            && self.missing + self.extra + self.type_mismatch + self.value_mismatch + self.ttl_mismatch == 0
    }

    fn note(&mut self, d: Difference) {
        match d {
            Difference::Missing { .. } => self.missing += 1,
            Difference::Extra { .. } => self.extra += 1,
            Difference::Type { .. } => self.type_mismatch += 1,
            Difference::Value { .. } => self.value_mismatch += 1,
            Difference::Ttl { .. } => self.ttl_mismatch += 1,
        }
        if self.first.len() < 10 {
            self.first.push(d);
        }
    }
}

/// Whether a difference `d` found in a key is its expiry happening while it
/// was read: the source's key gone by now, or the target's gone while the
/// source's (PTTL `source_pttl` when read) expires within the TTL
/// tolerance, as `ttl_ok` allows the target's to (its clock may run ahead).
/// Never a target key that outlives the source's (`outlives_source`).
fn expired_meanwhile(on_source: bool, on_target: bool, d: &Difference, source_pttl: i64, tol: u64) -> bool {
    if on_target && outlives_source(d, tol) {
        return false;
    }
    !on_source || (!on_target && (0..=tol as i64).contains(&source_pttl))
}

/// Whether a TTL difference has the target's key outliving the source's:
/// no expiry on the target where the source's expired, or one later by more
/// than the tolerance. The source's key being gone by now excuses nothing
/// then: the copy lost (or stretched) the expiry, and the target keeps the
/// key longer than the source did.
fn outlives_source(d: &Difference, tol: u64) -> bool {
    match d {
        Difference::Ttl { source, target, .. } if *source >= 0 => {
            *target == -1 || *target > source.saturating_add(tol as i64)
        }
        _ => false,
    }
}

/// Whether two PTTLs agree: both without expiry, or both expiring within `tol` ms.
pub fn ttl_ok(source: i64, target: i64, tol: u64) -> bool {
    match (source, target) {
        (-1, -1) => true,
        (s, t) if s >= 0 && t >= 0 => s.abs_diff(t) <= tol,
        _ => false,
    }
}

/// (all keys, keys without expiry) of one side.
async fn counts(
    e: &Endpoint,
    c: &mut MultiplexedConnection,
    pattern: Option<&str>,
    scan_count: usize,
) -> Result<(u64, u64), String> {
    let Some(p) = pattern else {
        let (keys, expiring) = key_counts(e, c).await?;
        return Ok((keys, keys.saturating_sub(expiring)));
    };
    let (mut all, mut persistent, mut cursor) = (0, 0, 0u64);
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) =
            q(e, c, redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(p).arg("COUNT").arg(scan_count)).await?;
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("PTTL").arg(k);
            }
            let ttls: Vec<i64> = qp(e, c, &pipe).await?;
            all += ttls.iter().filter(|t| **t != -2).count() as u64;
            persistent += ttls.iter().filter(|t| **t == -1).count() as u64;
        }
        if next == 0 {
            return Ok((all, persistent));
        }
        cursor = next;
    }
}

/// The value of a key in a comparable form (sets and hashes sorted).
pub(super) async fn logical(
    e: &Endpoint,
    c: &mut MultiplexedConnection,
    key: &[u8],
    kind: &str,
) -> Result<Value, String> {
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        Value::Array(v.into_iter().map(Value::BulkString).collect())
    };
    Ok(match kind {
        "string" => q(e, c, redis::cmd("GET").arg(key)).await?,
        "hash" => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = q(e, c, redis::cmd("HGETALL").arg(key)).await?;
            pairs.sort();
            Value::Array(pairs.into_iter().flat_map(|(a, b)| [Value::BulkString(a), Value::BulkString(b)]).collect())
        }
        "set" => sorted(q(e, c, redis::cmd("SMEMBERS").arg(key)).await?),
        "zset" => zset_of(q(e, c, redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES")).await?)
            .map_err(|why| format!("{} {}: ZRANGE {}: {why}", e.role, e.redacted(), super::show_key(key)))?,
        "list" => q(e, c, redis::cmd("LRANGE").arg(key).arg(0).arg(-1)).await?,
        "stream" => {
            let entries: Value = q(e, c, redis::cmd("XRANGE").arg(key).arg("-").arg("+")).await?;
            let text = |s: String| Value::BulkString(s.into_bytes());
            match stream::meta(e, c, key).await? {
                Some(meta) => {
                    let groups = meta.groups.into_iter().flat_map(|(name, id)| [text(name), text(id)]).collect();
                    Value::Array(vec![entries, text(meta.last_id), Value::Array(groups)])
                }
                // Gone since: a difference, looked at again as such.
                None => Value::Nil,
            }
        }
        other => return Err(format!("key {} has type {other}, which verify cannot compare", super::show_key(key))),
    })
}

/// A ZRANGE … WITHSCORES reply with each score as a number: Redis before
/// 7.2 writes 0.1 as `0.10000000000000001`, 7.2 and later as `0.1`, and a
/// copy between them holds the same score. RESP2 (member, score, …) or
/// RESP3 ([member, score], …).
fn zset_of(reply: Value) -> Result<Value, String> {
    let Value::Array(items) = reply else { return Err(format!("not an array: {reply:?}")) };
    let flat: Vec<Value> = items
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(pair) => pair,
            other => vec![other],
        })
        .collect();
    if !flat.len().is_multiple_of(2) {
        return Err("an odd count of members and scores".into());
    }
    let mut out = Vec::with_capacity(flat.len());
    for pair in flat.chunks(2) {
        let score: f64 = redis::from_redis_value(pair[1].clone()).map_err(|e| format!("a score: {e}"))?;
        out.extend([pair[0].clone(), Value::Double(score)]);
    }
    Ok(Value::Array(out))
}

struct Sides {
    from: Endpoint,
    to: Endpoint,
    dst: MultiplexedConnection,
    /// A cluster target: each key is read on the shard owning it.
    dst_cluster: Option<Arc<Cluster>>,
    tol: u64,
    chunk_threshold: u64,
    /// Whether the source's, the target's refusal of MEMORY USAGE was logged.
    warned: [AtomicBool; 2],
}

/// TYPE, PTTL, DUMP of every key, pipelined (on a cluster, each on the
/// shard owning it).
pub(super) async fn probe<K: AsRef<[u8]>>(
    e: &Endpoint,
    c: &MultiplexedConnection,
    cluster: Option<&Cluster>,
    keys: &[K],
) -> Result<Vec<(String, i64, Value)>, String> {
    probe_some(e, c, cluster, keys, &vec![true; keys.len()]).await
}

/// TYPE, PTTL and, where `dump` says, DUMP of every key, pipelined (on a
/// cluster, each on the shard owning it); the payload is Nil where not asked.
async fn probe_some<K: AsRef<[u8]>>(
    e: &Endpoint,
    c: &MultiplexedConnection,
    cluster: Option<&Cluster>,
    keys: &[K],
    dump: &[bool],
) -> Result<Vec<(String, i64, Value)>, String> {
    let mut cmds = Vec::with_capacity(keys.len() * 3);
    for (k, d) in keys.iter().zip(dump) {
        let k = k.as_ref();
        let words: &[&str] = if *d { &["TYPE", "PTTL", "DUMP"] } else { &["TYPE", "PTTL"] };
        cmds.extend(words.iter().map(|w| (k, redis::cmd(w).arg(k).clone())));
    }
    let mut replies = per_key(e, c, cluster, cmds).await?.into_iter();
    let mut next = |what: &str| match replies.next() {
        Some(Value::ServerError(err)) => {
            Err(format!("{} {}: {what}: {}", e.role, e.redacted(), e.scrub(&error_text(&err))))
        }
        Some(v) => Ok(v),
        None => Err(format!("{} {}: {what}: no answer", e.role, e.redacted())),
    };
    let mut out = Vec::with_capacity(keys.len());
    for d in dump {
        let kind: String = redis::from_redis_value(next("TYPE")?).map_err(|err| format!("TYPE: {err}"))?;
        let pttl: i64 = redis::from_redis_value(next("PTTL")?).map_err(|err| format!("PTTL: {err}"))?;
        out.push((kind, pttl, if *d { next("DUMP")? } else { Value::Nil }));
    }
    Ok(out)
}

impl Sides {
    async fn check(
        &self,
        mut src: MultiplexedConnection,
        keys: Vec<Vec<u8>>,
        report: &mut VerifyReport,
    ) -> Result<(), String> {
        // Sizes first: a key over the threshold on either side is compared
        // in chunks, as the copy reads it, never DUMPed whole (a DUMP blocks
        // its server while serialised). A side refusing MEMORY USAGE tells
        // no size: its keys are DUMPed unless the other side says big, as
        // the copy DUMPs every key of a source that refuses.
        let threshold = self.chunk_threshold;
        let (ss, ts) = tokio::try_join!(
            size::sizes(&self.from, &src, None, &keys, threshold),
            size::sizes(&self.to, &self.dst, self.dst_cluster.as_deref(), &keys, threshold)
        )?;
        for (side, sizes, warned) in [(&self.from, &ss, &self.warned[0]), (&self.to, &ts, &self.warned[1])] {
            if sizes.is_none() && !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(side = %side, "MEMORY USAGE refused; its keys are DUMPed whole whatever their size");
            }
        }
        let whole: Vec<bool> = (0..keys.len())
            .map(|i| size::within(&ss, i, threshold, true) && size::within(&ts, i, threshold, true))
            .collect();
        let (s, t) = tokio::try_join!(
            probe_some(&self.from, &src, None, &keys, &whole),
            probe_some(&self.to, &self.dst, self.dst_cluster.as_deref(), &keys, &whole)
        )?;
        // Differences, each with its key and the source's PTTL, until
        // looked at again (`expired_meanwhile`).
        let mut found: Vec<(&[u8], i64, Difference)> = Vec::new();
        for (((key, (sk, sttl, sdump)), (tk, tttl, tdump)), whole) in keys.iter().zip(s).zip(t).zip(whole) {
            if sk == "none" {
                report.vanished += 1;
                continue;
            }
            report.checked += 1;
            let name = super::show_key(key);
            if tk == "none" {
                found.push((key, sttl, Difference::Missing { key: name }));
                continue;
            }
            if sk != tk {
                found.push((key, sttl, Difference::Type { key: name, source: sk, target: tk }));
                continue;
            }
            let same = if whole {
                sdump == tdump || {
                    let mut dst = node_for_key(&self.dst, self.dst_cluster.as_deref(), key).await?;
                    logical(&self.from, &mut src, key, &sk).await? == logical(&self.to, &mut dst, key, &tk).await?
                }
            } else {
                let compared = self.same_in_chunks(&mut src, key, &sk).await;
                match compared.map_err(|e| format!("comparing {name} in chunks: {e}"))? {
                    Some(same) => {
                        // A type without a chunked reading was DUMPed.
                        report.compared_in_chunks += u64::from(length_cmd(&sk).is_some());
                        same
                    }
                    // Gone from the source while it was read: vanished,
                    // unless the target's copy outlives the source's by its
                    // TTLs (read before), which no expiry excuses.
                    None => {
                        let d = Difference::Ttl { key: name, source: sttl, target: tttl };
                        if !ttl_ok(sttl, tttl, self.tol) && outlives_source(&d, self.tol) {
                            found.push((key, sttl, d));
                            continue;
                        }
                        report.checked -= 1;
                        report.vanished += 1;
                        continue;
                    }
                }
            };
            if !same {
                found.push((key, sttl, Difference::Value { key: name }));
                continue;
            }
            if !ttl_ok(sttl, tttl, self.tol) {
                found.push((key, sttl, Difference::Ttl { key: name, source: sttl, target: tttl }));
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        // Each difference looked at again: a key expiring while it was read
        // differs for that alone.
        let exists = || -> Vec<(&[u8], redis::Cmd)> {
            found.iter().map(|(k, _, _)| (*k, redis::cmd("EXISTS").arg(*k).clone())).collect()
        };
        let (on_src, on_dst) = tokio::try_join!(
            per_key(&self.from, &src, None, exists()),
            per_key(&self.to, &self.dst, self.dst_cluster.as_deref(), exists())
        )?;
        let held = |e: &Endpoint, v: &Value| match v {
            Value::Int(n) => Ok(*n == 1),
            other => Err(format!("{} {}: EXISTS: {}", e.role, e.redacted(), e.scrub(&format!("{other:?}")))),
        };
        for (((_, sttl, d), s), t) in found.into_iter().zip(&on_src).zip(&on_dst) {
            if expired_meanwhile(held(&self.from, s)?, held(&self.to, t)?, &d, sttl, self.tol) {
                report.checked -= 1;
                report.vanished += 1;
            } else {
                report.note(d);
            }
        }
        Ok(())
    }

    /// Whether a key of type `kind` on both sides holds the same value, read
    /// in chunks (`CHUNK_BYTES` of a string, `CHUNK_ELEMENTS` of a
    /// collection): lengths first, then a string or list range by range, a
    /// stream's last ID and groups (`stream::Meta`) then its entries range
    /// by range, and a hash, set or sorted set scanned on each side with
    /// each element asked of the other. Not a snapshot: a key written
    /// meanwhile may differ or not, and one gone from the source by the end
    /// is `None` (vanished). A type without a chunked reading (a module's)
    /// is DUMPed on both sides.
    async fn same_in_chunks(
        &self,
        src: &mut MultiplexedConnection,
        key: &[u8],
        kind: &str,
    ) -> Result<Option<bool>, String> {
        let mut dst = node_for_key(&self.dst, self.dst_cluster.as_deref(), key).await?;
        let same = self.chunks_equal(src, &mut dst, key, kind).await?;
        let exists: i64 = q(&self.from, src, redis::cmd("EXISTS").arg(key)).await?;
        Ok((exists == 1).then_some(same))
    }

    async fn chunks_equal(
        &self,
        src: &mut MultiplexedConnection,
        dst: &mut MultiplexedConnection,
        key: &[u8],
        kind: &str,
    ) -> Result<bool, String> {
        let (from, to) = (&self.from, &self.to);
        let Some(length) = length_cmd(kind) else {
            let dump = redis::cmd("DUMP").arg(key).clone();
            let (x, y): (Value, Value) = tokio::try_join!(q(from, src, &dump), q(to, dst, &dump))?;
            return Ok(x == y);
        };
        let len_cmd = redis::cmd(length).arg(key).clone();
        let (a, b): (u64, u64) = tokio::try_join!(q(from, src, &len_cmd), q(to, dst, &len_cmd))?;
        if a != b {
            return Ok(false);
        }
        match kind {
            "string" | "list" => {
                let (step, read) =
                    if kind == "string" { (CHUNK_BYTES, "GETRANGE") } else { (CHUNK_ELEMENTS, "LRANGE") };
                for at in (0..a).step_by(step as usize) {
                    let range = redis::cmd(read).arg(key).arg(at).arg(at + step - 1).clone();
                    let (x, y): (Value, Value) = tokio::try_join!(q(from, src, &range), q(to, dst, &range))?;
                    if x != y {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "stream" => {
                let (x, y) = tokio::try_join!(stream::meta(from, src, key), stream::meta(to, dst, key))?;
                if x != y {
                    return Ok(false);
                }
                let mut start = "-".to_string();
                loop {
                    let range =
                        redis::cmd("XRANGE").arg(key).arg(&start).arg("+").arg("COUNT").arg(CHUNK_ELEMENTS).clone();
                    let (x, y): (Vec<StreamEntry>, Vec<StreamEntry>) =
                        tokio::try_join!(q(from, src, &range), q(to, dst, &range))?;
                    if x != y {
                        return Ok(false);
                    }
                    // Done at the end, or after the last possible ID.
                    match x.last().and_then(|(id, _)| stream::after(id)) {
                        Some(next) => start = next,
                        None => return Ok(true),
                    }
                }
            }
            _ => {
                Ok(held_by(kind, key, (from, src), (to, dst)).await?
                    && held_by(kind, key, (to, dst), (from, src)).await?)
            }
        }
    }
}

/// The command giving the length of a key of type `kind`, for the types
/// `Sides::same_in_chunks` reads in chunks.
fn length_cmd(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "string" => "STRLEN",
        "list" => "LLEN",
        "hash" => "HLEN",
        "set" => "SCARD",
        "zset" => "ZCARD",
        "stream" => "XLEN",
        _ => return None,
    })
}

/// Whether every element a scan of `scanned`'s hash, set or sorted set
/// `key` returns is held by `asked`'s as by `scanned`'s: a hash field with
/// its value, a set member, a sorted set member with its score. Equal
/// lengths and this both ways: the same elements.
async fn held_by(
    kind: &str,
    key: &[u8],
    (scanned, sc): (&Endpoint, &mut MultiplexedConnection),
    (asked, ac): (&Endpoint, &mut MultiplexedConnection),
) -> Result<bool, String> {
    let (scan, lookup, pairs) = match kind {
        "hash" => ("HSCAN", "HGET", true),
        "set" => ("SSCAN", "SISMEMBER", false),
        _ => ("ZSCAN", "ZSCORE", true),
    };
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Double(d) => Some(d.to_string().into_bytes()),
        _ => None,
    };
    let score = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|s| s.parse::<f64>().ok());
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<Vec<u8>>) =
            q(scanned, sc, redis::cmd(scan).arg(key).arg(cursor).arg("COUNT").arg(CHUNK_ELEMENTS)).await?;
        let elements: Vec<&Vec<u8>> = if pairs { items.iter().step_by(2).collect() } else { items.iter().collect() };
        if pairs && items.len() % 2 != 0 {
            return Err(format!(
                "{} {}: {scan} {} answered an odd count",
                scanned.role,
                scanned.redacted(),
                super::show_key(key)
            ));
        }
        if !elements.is_empty() {
            let mut p = redis::pipe();
            for e in &elements {
                p.cmd(lookup).arg(key).arg(e.as_slice());
            }
            let held: Vec<Value> = qp(asked, ac, &p).await?;
            if held.len() != elements.len() {
                return Err(format!(
                    "{} {}: {} {lookup} asked, {} answers",
                    asked.role,
                    asked.redacted(),
                    elements.len(),
                    held.len()
                ));
            }
            let all = held.iter().enumerate().all(|(i, v)| match kind {
                "set" => matches!(v, Value::Int(1) | Value::Boolean(true)),
                "hash" => bytes(v).as_deref() == Some(items[2 * i + 1].as_slice()),
                _ => bytes(v).and_then(|b| score(&b)).is_some_and(|t| Some(t) == score(&items[2 * i + 1])),
            });
            if !all {
                return Ok(false);
            }
        }
        if next == 0 {
            return Ok(true);
        }
        cursor = next;
        // Between two chunks: where a key read this way can expire.
        crate::crashpoint::here("verify:chunk");
    }
}

/// Sleeps until `done` keys are due at `rate` keys/s.
async fn pace(rate: Option<u64>, started: std::time::Instant, done: u64) {
    if let Some(r) = rate.filter(|r| *r > 0) {
        let due = std::time::Duration::from_secs_f64(done as f64 / r as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Compares two single servers through connections made by `Endpoint::connect`.
pub async fn verify(
    opts: &VerifyOptions,
    src: MultiplexedConnection,
    dst: MultiplexedConnection,
) -> Result<VerifyReport, String> {
    verify_with(opts, src, None, dst, None).await
}

/// The servers holding a side's keys: a node of each shard of a cluster
/// (its primary, or a replica with `--from-replicas`), or the one server;
/// and of those read on a replica, each shard's slots, the replica and the
/// connection (for `cluster::fallen_behind`).
/// Each shard's reader (a replica with `--from-replicas`, else its primary)
/// with the slots it reads, or the one server (all slots); and the readers
/// that are replicas (slots, address, connection).
async fn nodes(c: &MultiplexedConnection, cluster: Option<&Cluster>) -> Result<(Vec<Reader>, Vec<OnReplica>), String> {
    let Some(cl) = cluster else { return Ok((vec![(vec![(0, u16::MAX)], c.clone())], Vec::new())) };
    let readers = cl.readers().await?.0;
    let on_replicas = readers
        .iter()
        .filter(|(s, addr, _)| *addr != s.primary)
        .map(|(s, addr, c)| (s.slots_text(), addr.clone(), c.clone()))
        .collect();
    Ok((readers.into_iter().map(|(s, _, c)| (s.slots, c)).collect(), on_replicas))
}

/// A server a side is read on, with the slots it holds.
type Reader = (Vec<(u16, u16)>, MultiplexedConnection);
type OnReplica = (String, String, MultiplexedConnection);

/// The connections of `readers`, in order.
fn connections(readers: &[Reader]) -> Vec<MultiplexedConnection> {
    readers.iter().map(|(_, c)| c.clone()).collect()
}

/// A node's identity: its `run_id`, its replication id (a replica shares
/// its primary's) and whether it is a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub run_id: String,
    pub replid: String,
    pub replica: bool,
}

async fn identities(e: &Endpoint, nodes: &[MultiplexedConnection]) -> Result<Vec<NodeIdentity>, String> {
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut p = redis::pipe();
        p.cmd("INFO").arg("server").cmd("INFO").arg("replication");
        let (server, replication): (String, String) = qp(e, &mut n.clone(), &p).await?;
        let field = |info: &str, f: &str| super::info_field(info, f).unwrap_or_default().to_string();
        out.push(NodeIdentity {
            run_id: field(&server, "run_id"),
            replid: field(&replication, "master_replid"),
            replica: field(&replication, "role") == "slave",
        });
    }
    Ok(out)
}

/// What makes two sides read in one database the same data: one server
/// under two names, or a node of the other's cluster (a `run_id` in common),
/// or a replica of the other (a replication id in common, one side a
/// replica). Two primaries sharing a replication id are not taken for one:
/// only a replica's id says it follows the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// The `run_id` both sides have a node with.
    Server(String),
    /// The replication id of a primary and its replica on the other side.
    Replication(String),
}

pub fn shared(from: &[NodeIdentity], to: &[NodeIdentity]) -> Option<Shared> {
    let known = |v: &str| !v.is_empty() && v != "?";
    let short = |v: &str| v.get(..8).unwrap_or(v).to_string();
    for f in from {
        for t in to {
            if known(&f.run_id) && f.run_id == t.run_id {
                return Some(Shared::Server(short(&f.run_id)));
            }
            if known(&f.replid) && f.replid == t.replid && (f.replica || t.replica) {
                return Some(Shared::Replication(short(&f.replid)));
            }
        }
    }
    None
}

/// Why two sides read in one database are the same data, if they are (see
/// `Shared`): their keys then match with no copy at all.
pub fn same_data(from: &[NodeIdentity], to: &[NodeIdentity]) -> Option<String> {
    Some(match shared(from, to)? {
        Shared::Server(run_id) => format!(
            "the source and the target are one Redis server (run_id {run_id}) in the same database: their keys \
             match whatever was copied; check the two URLs"
        ),
        Shared::Replication(replid) => format!(
            "the source and the target are in one replication group (replication id {replid}): one replicates \
             the other, so their keys match with no copy; give the copy's target"
        ),
    })
}

/// The identities of the nodes holding each side's keys (see `nodes`).
pub async fn side_identities(
    e: &Endpoint,
    c: &MultiplexedConnection,
    cluster: Option<&Cluster>,
) -> Result<Vec<NodeIdentity>, String> {
    identities(e, &connections(&nodes(c, cluster).await?.0)).await
}

/// Each node's counts (keys, keys without expiry), in the order given.
async fn counts_each(
    e: &Endpoint,
    nodes: &[MultiplexedConnection],
    pattern: Option<&str>,
    scan_count: usize,
) -> Result<Vec<(u64, u64)>, String> {
    let mut each = Vec::with_capacity(nodes.len());
    for n in nodes {
        each.push(counts(e, &mut n.clone(), pattern, scan_count).await?);
    }
    Ok(each)
}

fn total(each: &[(u64, u64)]) -> (u64, u64) {
    each.iter().fold((0, 0), |t, c| (t.0 + c.0, t.1 + c.1))
}

/// `n` split over shards holding `keys` each, in proportion (largest
/// remainders first), so a random sample is uniform over the whole
/// keyspace; every shard holding keys gets at least one when `n` allows,
/// so none goes unlooked-at.
fn apportion(n: u64, keys: &[u64]) -> Vec<u64> {
    let all: u64 = keys.iter().sum();
    if all == 0 {
        return vec![0; keys.len()];
    }
    let exact: Vec<(u64, u64)> = keys
        .iter()
        .map(|&k| ((n as u128 * k as u128 / all as u128) as u64, (n as u128 * k as u128 % all as u128) as u64))
        .collect();
    let mut share: Vec<u64> = exact.iter().map(|e| e.0).collect();
    let mut left = n - share.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i].1));
    for &i in order.iter().cycle().take(keys.len()) {
        if left == 0 {
            break;
        }
        share[i] += 1;
        left -= 1;
    }
    for i in 0..keys.len() {
        if keys[i] > 0 && share[i] == 0 {
            let Some(big) = (0..keys.len()).filter(|&j| share[j] > 1).max_by_key(|&j| share[j]) else { break };
            share[big] -= 1;
            share[i] = 1;
        }
    }
    share
}

/// Every key of one target server (matching `--match`) the source does not
/// have, unless it expires within the TTL tolerance (its source's copy
/// expired while read, as the target's is about to).
/// The source is asked where its own walk read it (a shard's replica with
/// `--from-replicas`), at the verify's `--rate` (`walked` keys so far).
async fn extra_on_target(
    opts: &VerifyOptions,
    src_readers: &[Reader],
    mut dst: MultiplexedConnection,
    (started, walked): (std::time::Instant, &mut u64),
    report: &mut VerifyReport,
) -> Result<(), String> {
    let mut cursor = 0u64;
    loop {
        let mut c = redis::cmd("SCAN");
        c.arg(cursor);
        if let Some(p) = &opts.pattern {
            c.arg("MATCH").arg(p);
        }
        c.arg("COUNT").arg(opts.scan_count);
        let (next, keys): (u64, Vec<Vec<u8>>) = q(&opts.to, &mut dst, &c).await?;
        if !keys.is_empty() {
            pace(opts.rate, started, report.checked + report.vanished + *walked).await;
            *walked += keys.len() as u64;
            let mut gone: Vec<&Vec<u8>> = Vec::new();
            for (slots, src) in src_readers {
                let held = |k: &&Vec<u8>| {
                    let slot = super::cluster::key_slot(k);
                    slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
                };
                let theirs: Vec<&Vec<u8>> = keys.iter().filter(held).collect();
                if theirs.is_empty() {
                    continue;
                }
                let on_source = probe_some(&opts.from, src, None, &theirs, &vec![false; theirs.len()]).await?;
                gone.extend(
                    theirs.into_iter().zip(on_source).filter(|(_, (kind, _, _))| kind == "none").map(|(k, _)| k),
                );
            }
            if !gone.is_empty() {
                let on_target = probe_some(&opts.to, &dst, None, &gone, &vec![false; gone.len()]).await?;
                for (key, (kind, pttl, _)) in gone.into_iter().zip(on_target) {
                    let expiring = (0..=opts.ttl_tolerance_ms as i64).contains(&pttl);
                    if kind != "none" && !expiring {
                        report.note(Difference::Extra { key: super::show_key(key) });
                    }
                }
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Compares two sides opened by `copy::open_side` (a server, or a cluster
/// with its router): counts summed over shards, every key read on the shard
/// owning it.
pub async fn verify_with(
    opts: &VerifyOptions,
    src: MultiplexedConnection,
    src_cluster: Option<Arc<Cluster>>,
    dst: MultiplexedConnection,
    dst_cluster: Option<Arc<Cluster>>,
) -> Result<VerifyReport, String> {
    let mut report = VerifyReport::default();
    let pattern = opts.pattern.as_deref();
    // A SCAN per shard misses keys that move behind its cursor: a source
    // cluster must hold still while it is read, and is asked again after.
    let snapshot = |cl: Arc<Cluster>| async move {
        cl.snapshot().await.map_err(|e| {
            format!(
                "{} {}: {e}; verify once the resharding is over (`redis-cli --cluster check HOST:PORT` shows no open slot)",
                opts.from.role, opts.from
            )
        })
    };
    let before = match &src_cluster {
        Some(cl) => Some(snapshot(cl.clone()).await?),
        None => None,
    };
    let (src_readers, src_replicas) = nodes(&src, src_cluster.as_deref()).await?;
    let (dst_readers, _) = nodes(&dst, dst_cluster.as_deref()).await?;
    let (src_nodes, dst_nodes) = (connections(&src_readers), connections(&dst_readers));
    if opts.from.db() == opts.to.db() {
        let (f, t) = tokio::try_join!(identities(&opts.from, &src_nodes), identities(&opts.to, &dst_nodes))?;
        if let Some(why) = same_data(&f, &t) {
            return Err(format!("refused: {why} ({} and {})", opts.from, opts.to));
        }
    }
    let (src_counts, dst_counts) = tokio::try_join!(
        counts_each(&opts.from, &src_nodes, pattern, opts.scan_count),
        counts_each(&opts.to, &dst_nodes, pattern, opts.scan_count)
    )?;
    let ((sk, sp), (tk, tp)) = (total(&src_counts), total(&dst_counts));
    (report.source_keys, report.source_persistent, report.target_keys, report.target_persistent) = (sk, sp, tk, tp);
    let started = std::time::Instant::now();
    let sides = Sides {
        from: opts.from.clone(),
        to: opts.to.clone(),
        dst: dst.clone(),
        dst_cluster,
        tol: opts.ttl_tolerance_ms,
        chunk_threshold: opts.chunk_threshold,
        warned: Default::default(),
    };
    // A sample as large as the keyspace checks every key once instead.
    let sample = opts.sample.filter(|n| *n < report.source_keys);
    report.sampled = sample;
    match (sample, pattern) {
        (Some(n), None) => {
            // RANDOMKEY, in batches, until n keys (repeats allowed). A
            // cluster: each shard its share of n by its key count, so every
            // shard is sampled, not only the first.
            let quotas = apportion(n, &src_counts.iter().map(|c| c.0).collect::<Vec<_>>());
            for (node, quota) in src_nodes.iter().zip(quotas) {
                let mut src = node.clone();
                let mut left = quota;
                while left > 0 {
                    let take = left.min(opts.scan_count as u64);
                    let mut p = redis::pipe();
                    for _ in 0..take {
                        p.cmd("RANDOMKEY");
                    }
                    let keys: Vec<Option<Vec<u8>>> = qp(&opts.from, &mut src, &p).await?;
                    let keys: Vec<Vec<u8>> = keys.into_iter().flatten().collect();
                    // The shard emptied since it was counted.
                    if keys.is_empty() {
                        break;
                    }
                    pace(opts.rate, started, report.checked + report.vanished).await;
                    sides.check(src.clone(), keys, &mut report).await?;
                    left -= take;
                }
            }
        }
        (sample, _) => {
            // Every matching key, or the first n SCAN returns: a page from
            // each shard in turn, each round's share of what is left taken
            // from each, so a sample of a cluster covers every shard.
            let limit = sample.unwrap_or(u64::MAX);
            let mut seen = 0u64;
            let mut scans: Vec<(MultiplexedConnection, Option<u64>)> =
                src_nodes.iter().map(|n| (n.clone(), Some(0))).collect();
            while seen < limit && scans.iter().any(|(_, cursor)| cursor.is_some()) {
                let active = scans.iter().filter(|(_, cursor)| cursor.is_some()).count() as u64;
                let share = (limit - seen).div_ceil(active);
                for (src, cursor) in scans.iter_mut() {
                    let Some(at) = *cursor else { continue };
                    if seen >= limit {
                        break;
                    }
                    let mut c = redis::cmd("SCAN");
                    c.arg(at);
                    if let Some(p) = pattern {
                        c.arg("MATCH").arg(p);
                    }
                    c.arg("COUNT").arg(opts.scan_count);
                    let (next, mut keys): (u64, Vec<Vec<u8>>) = q(&opts.from, src, &c).await?;
                    keys.truncate((limit - seen).min(share).min(keys.len() as u64) as usize);
                    seen += keys.len() as u64;
                    if !keys.is_empty() {
                        pace(opts.rate, started, report.checked + report.vanished).await;
                        sides.check(src.clone(), keys, &mut report).await?;
                    }
                    *cursor = (next != 0).then_some(next);
                }
            }
        }
    }
    // The source's walk never sees a key only the target has: an extra key
    // with an expiry (a session revoked on the source since an earlier
    // copy) escapes the count of keys without one. A full verify walks the
    // target too.
    if sample.is_none() {
        let mut walked = 0;
        for node in &dst_nodes {
            let walk = (started, &mut walked);
            extra_on_target(opts, &src_readers, node.clone(), walk, &mut report).await?;
        }
    }
    if let (Some(cl), Some(before)) = (src_cluster, before) {
        let after = snapshot(cl).await?;
        if after != before {
            return Err(format!(
                "{} {}: slots moved between its shards during the verify (slot map {} then {}; primaries' config \
                 epochs {:?} then {:?}): a SCAN per shard misses keys that move behind its cursor, so this result \
                 proves nothing; verify again once the resharding is over",
                opts.from.role, opts.from, before.layout, after.layout, before.epochs, after.epochs
            ));
        }
    }
    let behind = cluster::fallen_behind(&opts.from, &src_replicas).await;
    if !behind.is_empty() {
        let what: Vec<&str> = behind.iter().map(|(_, why)| why.as_str()).collect();
        return Err(format!(
            "{} {}: {}. What was read there may be old, so this result proves nothing; verify again (with \
             --from-replicas a shard is read on a replica in step, else on its primary)",
            opts.from.role,
            opts.from,
            what.join("; ")
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample is split over shards by their key counts, adds up to n, and
    /// leaves no shard holding keys unsampled.
    #[test]
    fn a_sample_is_split_over_every_shard_holding_keys() {
        assert_eq!(apportion(500, &[1000, 1000, 1000]), [167, 167, 166]);
        assert_eq!(apportion(100, &[300, 0, 100]), [75, 0, 25]);
        assert_eq!(apportion(10, &[1_000_000, 1, 1]), [8, 1, 1]);
        assert_eq!(apportion(2, &[5, 5, 5]).iter().sum::<u64>(), 2);
        assert_eq!(apportion(7, &[0, 0]), [0, 0]);
        for (n, keys) in [(1000u64, vec![3u64, 999_997, 0, 12]), (1, vec![1, 1]), (u64::MAX / 4, vec![u64::MAX / 8, 3])]
        {
            assert_eq!(apportion(n, &keys).iter().sum::<u64>(), n, "{n} over {keys:?}");
        }
    }

    #[test]
    fn ttls_agree_within_the_tolerance_only() {
        assert!(ttl_ok(-1, -1, 0));
        assert!(ttl_ok(10_000, 9_200, 1000));
        assert!(!ttl_ok(10_000, 8_000, 1000));
        assert!(!ttl_ok(-1, 5000, 1000));
        assert!(!ttl_ok(5000, -1, 1000));
    }

    #[test]
    fn a_sorted_set_holds_the_same_scores_whichever_way_its_version_writes_them() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        // ZRANGE z 0 -1 WITHSCORES of {m: 0.1, n: inf}: Redis 7.0, then 7.2 (RESP2), then RESP3.
        let v70 = Value::Array(vec![bulk("m"), bulk("0.10000000000000001"), bulk("n"), bulk("inf")]);
        let v72 = Value::Array(vec![bulk("m"), bulk("0.1"), bulk("n"), bulk("inf")]);
        let resp3 = Value::Array(vec![
            Value::Array(vec![bulk("m"), Value::Double(0.1)]),
            Value::Array(vec![bulk("n"), Value::Double(f64::INFINITY)]),
        ]);
        assert_ne!(v70, v72, "the replies differ as text");
        let same = zset_of(v70).unwrap();
        assert_eq!(zset_of(v72).unwrap(), same);
        assert_eq!(zset_of(resp3).unwrap(), same);
        let other = Value::Array(vec![bulk("m"), bulk("0.2"), bulk("n"), bulk("inf")]);
        assert_ne!(zset_of(other).unwrap(), same);
        assert!(zset_of(Value::Array(vec![bulk("m")])).is_err());
        assert!(zset_of(Value::Array(vec![bulk("m"), bulk("x")])).is_err());
    }

    #[test]
    fn a_difference_is_an_expiry_when_the_source_let_go_or_the_target_did_within_the_tolerance() {
        let value = Difference::Value { key: "k".into() };
        assert!(expired_meanwhile(false, true, &value, -1, 1000), "gone from the source");
        assert!(expired_meanwhile(false, false, &value, 5000, 1000));
        assert!(expired_meanwhile(true, false, &value, 800, 1000), "the target's clock ahead");
        assert!(expired_meanwhile(true, false, &value, 0, 1000));
        assert!(!expired_meanwhile(true, false, &value, 1001, 1000), "too far from its expiry");
        assert!(!expired_meanwhile(true, false, &value, -1, 1000), "no expiry on the source");
        assert!(!expired_meanwhile(true, true, &value, 800, 1000), "on both: a real difference");
        // The source's key gone, the target's kept without its expiry (or
        // with a far later one): the copy lost it, whatever the source did.
        let ttl = |source, target| Difference::Ttl { key: "k".into(), source, target };
        assert!(!expired_meanwhile(false, true, &ttl(300, -1), 300, 1000), "the expiry lost");
        assert!(!expired_meanwhile(false, true, &ttl(300, 60_000), 300, 1000), "stretched by a minute");
        assert!(expired_meanwhile(false, true, &ttl(300, 1200), 300, 1000), "within the tolerance");
        assert!(expired_meanwhile(false, false, &ttl(300, -1), 300, 1000), "gone from both");
    }

    #[test]
    fn a_target_key_outliving_the_source_is_a_difference_whatever_became_of_the_source() {
        let ttl = |source, target| Difference::Ttl { key: "k".into(), source, target };
        assert!(outlives_source(&ttl(300, -1), 1000), "the expiry lost");
        assert!(outlives_source(&ttl(300, 60_000), 1000), "stretched by a minute");
        assert!(!outlives_source(&ttl(300, 1200), 1000), "within the tolerance");
        assert!(!outlives_source(&ttl(5000, 300), 1000), "the target's ends first");
        assert!(!outlives_source(&ttl(-1, 300), 1000), "the source had none: a change on the source");
        assert!(!outlives_source(&Difference::Value { key: "k".into() }, 1000));
    }

    #[test]
    fn the_report_keeps_counts_and_the_first_ten() {
        let mut r = VerifyReport::default();
        for i in 0..12 {
            r.note(Difference::Missing { key: format!("k{i}") });
        }
        r.note(Difference::Ttl { key: "t".into(), source: 5000, target: -1 });
        assert_eq!((r.missing, r.ttl_mismatch, r.first.len()), (12, 1, 10));
        assert!(!r.ok());
        assert_eq!(
            Difference::Ttl { key: "t".into(), source: 5000, target: -1 }.to_string(),
            "TTL differs: t (source 5000 ms, target none)"
        );
    }

    #[test]
    fn sides_sharing_a_run_id_or_a_replication_id_are_the_same_data() {
        let node =
            |run_id: &str, replid: &str| NodeIdentity { run_id: run_id.into(), replid: replid.into(), replica: false };
        let (a, b) = (node("aaaaaaaaaa", "r-a"), node("bbbbbbbbbb", "r-b"));
        assert_eq!(same_data(std::slice::from_ref(&a), std::slice::from_ref(&b)), None, "two servers");
        let why = same_data(std::slice::from_ref(&a), &[b.clone(), a.clone()]).unwrap();
        assert!(why.contains("one Redis server (run_id aaaaaaaa)"), "a node of the target's cluster: {why}");
        let replica = NodeIdentity { replica: true, ..node("cccccccccc", "r-a") };
        let why = same_data(std::slice::from_ref(&a), &[replica]).unwrap();
        assert!(why.contains("one replication group"), "{why}");
        // A primary started from the other's RDB file keeps its replication
        // id, and holds data of its own from then on.
        assert_eq!(same_data(&[a], &[node("dddddddddd", "r-a")]), None, "restored from the other's RDB");
        // INFO that hides them decides nothing.
        assert_eq!(same_data(&[node("?", "")], &[NodeIdentity { replica: true, ..node("?", "") }]), None);
    }

    #[test]
    fn a_report_that_compared_no_key_is_not_ok() {
        let r = VerifyReport::default();
        assert!(r.counts_match());
        assert!(!r.ok(), "0 keys on both sides, none compared");
        assert!(VerifyReport { checked: 1, ..VerifyReport::default() }.ok());
    }
}
