//! `cutover redis copy` and `verify` into, out of and between real Redis
//! Clusters (3 shards of redis-server on loopback).

mod common;

use common::redis_values::{pexpiretime, value_of};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::KillOnDrop;
use common::cluster::{Cluster, Reader};
use cutover::redis::copy::{self, CopyError, CopyOptions, CopyReport};
use cutover::redis::url::Endpoint;
use cutover::redis::verify::{self, VerifyOptions};
use cutover::redis::{Mode, OnConflict};
use cutover::sandbox::process::start_redis;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};

async fn conn(url: &str) -> MultiplexedConnection {
    let c = redis::Client::open(url).unwrap();
    c.get_multiplexed_async_connection().await.unwrap()
}

fn ep(role: &'static str, url: &str) -> Endpoint {
    Endpoint::parse(role, url, None, None).unwrap()
}

fn options(from: &str, to: &str, mode: Mode) -> CopyOptions {
    CopyOptions {
        from: ep("source", from),
        to: ep("target", to),
        pattern: None,
        on_conflict: OnConflict::Fail,
        mode,
        chunk_threshold: Some(32 << 20),
        scan_count: 100,
        pipeline: 4,
        rate: None,
        checkpoint: None,
        checkpoint_every: Duration::from_millis(500),
        lease: None,
        resume: None,
        stop: Arc::new(AtomicBool::new(false)),
        after_scan: None,
        run_by: Default::default(),
    }
}

/// Preflight, the pre-check of `fail`, then the copy, as the CLI does.
async fn copy_with(opts: &CopyOptions) -> Result<CopyReport, CopyError> {
    let (mut conns, pf) = copy::preflight(opts).await?;
    let c = copy::find_conflicts(opts, &mut conns).await.map_err(CopyError::Failed)?;
    if c.count > 0 {
        return Err(CopyError::Refused(format!("{} conflicts", c.count)));
    }
    let log = cutover::store::audit::AuditLog::at(
        std::env::temp_dir().join(format!("redis-cluster-test-{}.audit.jsonl", std::process::id())),
    );
    let who = cutover::authority::authorise(
        cutover::authority::Scope::RedisUrls { log: &log },
        false,
        "redis_cluster",
        "writing to Redis",
    )
    .await
    .expect("not read-only: authorised");
    copy::copy(&who, opts, conns, &pf, |_| {}).await
}

/// Every type, `n` of each, under `prefix`, some with a hash tag; with
/// `ttl_ms` each gets that PTTL. Written through `write` (any node reached
/// by `key`).
async fn seed_all_types(c: &mut MultiplexedConnection, prefix: &str, n: usize, ttl_ms: Option<u64>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut p = redis::pipe();
    for i in 0..n {
        let k = |t: &str| if i % 3 == 0 { format!("{{{prefix}-{i}}}:{t}") } else { format!("{prefix}:{t}:{i}") };
        p.cmd("SET").arg(k("string")).arg(format!("value-{i}-\u{e9}\0bin")).ignore();
        p.cmd("HSET").arg(k("hash")).arg("a").arg(i).arg("b").arg("x".repeat(i % 50)).ignore();
        p.cmd("RPUSH").arg(k("list")).arg("one").arg("two").arg(i).arg("one").ignore();
        p.cmd("SADD").arg(k("set")).arg("x").arg("y").arg(i).ignore();
        p.cmd("ZADD").arg(k("zset")).arg(1.5).arg("a").arg(-2).arg("b").arg("+inf").arg(format!("m{i}")).ignore();
        p.cmd("XADD").arg(k("stream")).arg("*").arg("f").arg(i).arg("g").arg("v").ignore();
        for t in ["string", "hash", "list", "set", "zset", "stream"] {
            keys.push(k(t));
            if let Some(ms) = ttl_ms {
                p.cmd("PEXPIRE").arg(k(t)).arg(ms).ignore();
            }
        }
    }
    let _: () = p.query_async(c).await.unwrap();
    keys
}

/// Changes a key's value in place, keeping its type and its expiry.
async fn spoil(c: &mut MultiplexedConnection, key: &str) {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(c).await.unwrap();
    let mut cmd = match kind.as_str() {
        "string" => redis::cmd("APPEND"),
        "hash" => redis::cmd("HSET"),
        "list" => redis::cmd("RPUSH"),
        "set" => redis::cmd("SADD"),
        "zset" => redis::cmd("ZADD"),
        "stream" => redis::cmd("XADD"),
        other => panic!("{key} is a {other}"),
    };
    cmd.arg(key);
    match kind.as_str() {
        "hash" => cmd.arg("spoilt").arg("1"),
        "zset" => cmd.arg(9).arg("spoilt"),
        "stream" => cmd.arg("*").arg("spoilt").arg("1"),
        _ => cmd.arg("spoilt"),
    };
    let _: Value = cmd.query_async(c).await.unwrap();
}

/// Where a key is read: a single server, or the shard of a cluster owning it.
enum Place<'a> {
    Single(MultiplexedConnection),
    Cluster(&'a mut Reader),
}

impl Place<'_> {
    async fn conn(&mut self, key: &str) -> MultiplexedConnection {
        match self {
            Place::Single(c) => c.clone(),
            Place::Cluster(r) => r.owner(key).await,
        }
    }
}

/// Every key identical on both sides (read where each side keeps it),
/// expiring at the same millisecond (or neither expiring), or up to
/// `migrated_ms` later on the target: MIGRATE (a resharding) carries a key's
/// expiry as a TTL, so Redis itself puts it later by the key's time in transit.
async fn assert_identical(src: &mut Place<'_>, dst: &mut Place<'_>, keys: &[String], migrated_ms: i64) {
    for k in keys {
        let (mut s, mut d) = (src.conn(k).await, dst.conn(k).await);
        let (a, b) = (value_of(&mut s, k).await, value_of(&mut d, k).await);
        assert_ne!(a.0, "none", "{k} exists on the source");
        assert_eq!(a, b, "{k} arrived identical");
        let (ta, tb) = (pexpiretime(&mut s, k).await, pexpiretime(&mut d, k).await);
        let same = tb == ta || (ta >= 0 && (0..=migrated_ms).contains(&(tb - ta)));
        assert!(same, "{k} expires at {tb} on the target, {ta} on the source");
    }
}

/// Verify finds every key the same; with `chunk_threshold` 1, every key is
/// compared in chunks (each read on the shard owning it).
async fn verify_ok(from: &str, to: &str, expect_keys: u64, chunk_threshold: u64) {
    let opts = VerifyOptions {
        from: ep("source", from),
        to: ep("target", to),
        pattern: None,
        sample: None,
        ttl_tolerance_ms: 2000,
        scan_count: 100,
        rate: None,
        chunk_threshold,
    };
    let (src, _, sc) = copy::open_side(&opts.from).await.unwrap();
    let (dst, _, dc) = copy::open_side(&opts.to).await.unwrap();
    let r = verify::verify_with(&opts, src, sc, dst, dc).await.unwrap();
    assert!(r.ok(), "{from} → {to}: {r:?}");
    assert_eq!((r.checked, r.source_keys, r.target_keys), (expect_keys, expect_keys, expect_keys), "{r:?}");
    let chunked = if chunk_threshold == 1 { expect_keys } else { 0 };
    assert_eq!(r.compared_in_chunks, chunked, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_with_ttls_copies_into_out_of_and_between_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cluster::start(dir.path(), "a", 3, false).await;
    let b = Cluster::start(dir.path(), "b", 3, false).await;
    let src = start_redis(dir.path(), "single-src").await.unwrap();
    let back = start_redis(dir.path(), "single-back").await.unwrap();
    let (src_url, back_url) =
        (format!("redis://127.0.0.1:{}/0", src.port), format!("redis://127.0.0.1:{}/0", back.port));
    let mut s = conn(&src_url).await;
    let mut keys = seed_all_types(&mut s, "plain", 40, None).await;
    keys.extend(seed_all_types(&mut s, "ttl", 40, Some(600_000)).await);
    let n = keys.len() as u64;

    // Single → cluster, named by one node's plain URL: detected, every key on the shard owning its slot.
    let r = copy_with(&options(&src_url, &a.node_url(), Mode::Auto)).await.unwrap();
    assert_eq!((r.total.copied, r.total.chunked), (n, 0), "{r:?}");
    let sizes = a.sizes().await;
    assert_eq!(sizes.iter().sum::<u64>(), n, "{sizes:?}");
    assert!(sizes.iter().all(|k| *k > n / 6), "spread over the 3 shards: {sizes:?}");
    let mut ra = a.reader().await;
    assert_identical(&mut Place::Single(s.clone()), &mut Place::Cluster(&mut ra), &keys, 0).await;

    // Cluster → cluster type by type (the temporary copy must share the key's slot to be renamed).
    let r = copy_with(&options(&a.url(), &b.url(), Mode::Types)).await.unwrap();
    assert_eq!((r.total.copied, r.total.chunked, r.total.scanned), (n, n, n), "{r:?}");
    let mut rb = b.reader().await;
    assert_identical(&mut Place::Single(s.clone()), &mut Place::Cluster(&mut rb), &keys, 0).await;
    for port in b.primary_ports().await {
        let left: Vec<String> =
            conn(&format!("redis://127.0.0.1:{port}")).await.keys("__cutover_tmp__*").await.unwrap();
        assert!(left.is_empty(), "no temporary key left on {port}: {left:?}");
    }

    // Cluster → single, DUMP/RESTORE.
    let r = copy_with(&options(&b.url(), &back_url, Mode::Dump)).await.unwrap();
    assert_eq!(r.total.copied, n, "{r:?}");
    assert_identical(&mut Place::Single(s.clone()), &mut Place::Single(conn(&back_url).await), &keys, 0).await;

    // Verify, per key and counts summed over shards, in every direction.
    verify_ok(&src_url, &a.url(), n, 32 << 20).await;
    verify_ok(&a.node_url(), &b.url(), n, 32 << 20).await;
    verify_ok(&b.url(), &back_url, n, 32 << 20).await;
    verify_ok(&src_url, &a.url(), n, 1).await;
    verify_ok(&a.node_url(), &b.url(), n, 1).await;

    // A sample of a cluster covers every shard: the keys of one shard
    // changed on the target (counts and expiries kept) are found, whichever
    // shard it is. Each shard gets its share of the 30, well under a SCAN batch.
    for port in b.primary_ports().await {
        let shard: Vec<String> = conn(&format!("redis://127.0.0.1:{port}")).await.keys("*").await.unwrap();
        assert!(!shard.is_empty(), "shard {port} holds keys");
        let mut back = conn(&back_url).await;
        for k in &shard {
            spoil(&mut back, k).await;
        }
        let opts = VerifyOptions {
            from: ep("source", &b.url()),
            to: ep("target", &back_url),
            pattern: None,
            sample: Some(30),
            ttl_tolerance_ms: 2000,
            scan_count: 100,
            rate: None,
            chunk_threshold: 32 << 20,
        };
        let (sc, _, scl) = copy::open_side(&opts.from).await.unwrap();
        let (dc, _, _) = copy::open_side(&opts.to).await.unwrap();
        let r = verify::verify_with(&opts, sc, scl, dc, None).await.unwrap();
        assert!(r.counts_match(), "{r:?}");
        assert!(!r.ok() && r.value_mismatch > 0, "shard {port}'s keys changed on the target, a sample of 30: {r:?}");
        assert_eq!(r.checked, 30, "{r:?}");
        // The same sample with --match.
        let r = verify::verify_with(
            &VerifyOptions { pattern: Some("*".into()), ..opts.clone() },
            copy::open_side(&opts.from).await.unwrap().0,
            copy::open_side(&opts.from).await.unwrap().2,
            copy::open_side(&opts.to).await.unwrap().0,
            None,
        )
        .await
        .unwrap();
        assert!(!r.ok() && r.value_mismatch > 0, "--match, shard {port}'s keys changed: {r:?}");
        // Put back as the source has them.
        let _: () = redis::cmd("FLUSHDB").query_async(&mut back).await.unwrap();
        copy_with(&options(&b.url(), &back_url, Mode::Dump)).await.unwrap();
        verify_ok(&b.url(), &back_url, n, 32 << 20).await;
    }

    // A difference on one shard is found; and a second copy into a full cluster is refused before writing.
    let mut owner = ra.owner(&keys[5]).await;
    let _: () = owner.del(&keys[5]).await.unwrap();
    let opts = VerifyOptions {
        from: ep("source", &src_url),
        to: ep("target", &a.url()),
        pattern: None,
        sample: None,
        ttl_tolerance_ms: 2000,
        scan_count: 100,
        rate: None,
        chunk_threshold: 32 << 20,
    };
    let (sc, _, _) = copy::open_side(&opts.from).await.unwrap();
    let (dc, _, dcl) = copy::open_side(&opts.to).await.unwrap();
    let r = verify::verify_with(&opts, sc, None, dc, dcl).await.unwrap();
    assert_eq!((r.missing, r.target_keys), (1, n - 1), "{r:?}");
    // In chunks, each key read on the shard owning it: a hash field's value
    // and a set member changed (lengths kept) on their shards are found.
    let hash = keys.iter().find(|k| k.contains(":hash:")).unwrap();
    let set = keys.iter().find(|k| k.contains(":set:")).unwrap();
    let _: () = ra.owner(hash).await.hset(hash, "a", "changed").await.unwrap();
    let mut set_owner = ra.owner(set).await;
    let _: () = set_owner.srem(set, "x").await.unwrap();
    let _: () = set_owner.sadd(set, "other").await.unwrap();
    let in_chunks = VerifyOptions { chunk_threshold: 1, ..opts.clone() };
    let (sc, _, _) = copy::open_side(&opts.from).await.unwrap();
    let (dc, _, dcl) = copy::open_side(&opts.to).await.unwrap();
    let r = verify::verify_with(&in_chunks, sc, None, dc, dcl).await.unwrap();
    assert_eq!((r.missing, r.value_mismatch, r.compared_in_chunks), (1, 2, n - 1), "{r:?}");
    match copy_with(&options(&src_url, &a.url(), Mode::Auto)).await {
        Err(CopyError::Refused(m)) => assert_eq!(m, format!("{} conflicts", n - 1)),
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.total)),
    }

    // A `fail` copy skips its pre-check only when every primary is empty.
    let (conns, _) = copy::preflight(&options(&src_url, &b.url(), Mode::Auto)).await.unwrap();
    let to = ep("target", &b.url());
    assert!(!conns.target_empty(&to).await.unwrap(), "b holds the copy");
    for port in b.primary_ports().await {
        let _: () =
            redis::cmd("FLUSHALL").query_async(&mut conn(&format!("redis://127.0.0.1:{port}")).await).await.unwrap();
    }
    assert!(conns.target_empty(&to).await.unwrap(), "every primary flushed");
    for k in ["one", "two", "three"] {
        let _: () = rb.owner(k).await.set(k, 1).await.unwrap();
        assert!(!conns.target_empty(&to).await.unwrap(), "{k} on one shard only");
        let _: () = rb.owner(k).await.del(k).await.unwrap();
    }
}

/// The cutover binary with its own state dir and log file.
fn cutover(state: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    c.env("XDG_STATE_HOME", state)
        .env("CUTOVER_OPERATOR", "on-call")
        .args(["--log-file", &state.join("log").display().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = cutover(state, args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn checkpoint(state: &Path) -> Option<serde_json::Value> {
    let dir = state.join("cutover/redis-copy");
    let f = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    serde_json::from_slice(&std::fs::read(f.path()).ok()?).ok()
}

/// A 3-shard cluster (a replica each when asked) and an empty server to copy
/// it into, in one temporary folder; `state` is cutover's.
struct OutOfCluster {
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
    c: Cluster,
    dst: cutover::sandbox::process::ChildProcess,
    dst_url: String,
}

async fn out_of_cluster(name: &str, replicas: bool) -> OutOfCluster {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let c = Cluster::start(dir.path(), name, 3, replicas).await;
    let dst = start_redis(dir.path(), "dst").await.unwrap();
    let dst_url = format!("redis://127.0.0.1:{}/0", dst.port);
    OutOfCluster { dir, state, c, dst, dst_url }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_copy_out_of_a_cluster_resumes_per_shard_and_a_failed_over_shard_starts_over_alone() {
    const N: u64 = 30_000;
    let OutOfCluster { dir: _dir, state, c, dst: _dst, dst_url } = out_of_cluster("src", true).await;
    let mut d = conn(&dst_url).await;
    c.seed_half_expiring("k", N).await;
    assert_eq!(c.sizes().await.iter().sum::<u64>(), N);
    let args = ["redis", "copy", "--from", &c.url(), "--to", &dst_url, "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "6000"]].concat()).spawn().unwrap()));
    let copied = |cp: &serde_json::Value| cp["counters"]["copied"].as_u64().unwrap_or(0);
    let start = Instant::now();
    while checkpoint(&state).as_ref().map_or(0, copied) < N * 2 / 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut p = child.take();
    p.kill().unwrap();
    p.wait().unwrap();
    let cp = checkpoint(&state).unwrap();
    let shards = cp["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3, "{cp}");
    assert!(
        shards.iter().all(|s| s["cursor"].as_u64().unwrap() > 0 && !s["done"].as_bool().unwrap()),
        "every shard scanned at once, each with its own cursor: {cp}"
    );
    let done_before_kill: u64 = redis::cmd("DBSIZE").query_async(&mut d).await.unwrap();

    // The second shard fails over: its replica takes over, with another run_id.
    let slots = shards[1]["slots"].as_str().unwrap().to_string();
    let old_primary = c.primary_ports().await[1];
    let replica = c.replica_of(old_primary).await;
    let mut r = conn(&format!("redis://127.0.0.1:{replica}")).await;
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query_async(&mut r).await.unwrap();
    common::eventually(Duration::from_secs(20), "the replica promoted", || async {
        (c.primary_ports().await[1] == replica).then_some(())
    })
    .await;

    let (code, out, err) = run(&state, &[&args[..], &["--resume", "--json"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let restarts: Vec<&str> = err.lines().filter(|l| l.contains("its scan starts over")).collect();
    assert_eq!(restarts.len(), 1, "{err}");
    assert!(restarts[0].starts_with(&format!("shard {slots}: the node it is read on changed or restarted")), "{err}");
    assert!(err.contains("resuming 3 shards"), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let this_run = report["run"]["copied"].as_u64().unwrap();
    // Only the failed-over shard's keys are copied again: the others carry on from their cursors.
    let shard_keys: u64 = c.sizes().await[1];
    assert!(this_run <= N - copied(&cp) + shard_keys, "run {this_run}, checkpoint {}, shard {shard_keys}", copied(&cp));
    assert!(this_run < N, "the other shards did not start over: {this_run}");
    // The shard scanned again counts its keys once: the copy's total is the source's keys.
    assert_eq!(report["total"]["copied"].as_u64(), Some(N), "{report}");
    assert!(this_run >= shard_keys, "the failed-over shard was scanned again whole: {this_run} < {shard_keys}");
    assert!(done_before_kill < N);
    finished_whole(&state, &mut d, &c.url(), &dst_url, N).await;
}

/// A copy out of a cluster asks at its end whether a slot moved during its
/// scan (a key moving behind a cursor is seen by neither shard's SCAN). A
/// shard failing over after its scan finished shows there too, and must not
/// hide a slot being moved meanwhile: before, the failover was the whole
/// answer, and the copy ended successfully with the slot still open.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_at_the_end_of_a_copy_out_of_a_cluster_does_not_hide_a_slot_being_moved() {
    const N: u64 = 1_500;
    const MORE: u64 = 4_000;
    let OutOfCluster { dir: _dir, state, c, dst: _dst, dst_url } = out_of_cluster("fo", true).await;
    c.seed_half_expiring("f", N).await;
    // Most keys on the second shard (under one hash tag): the others' scans end first.
    let ports = c.primary_ports().await;
    let mut reader = c.reader().await;
    let mut tag = String::new();
    for i in 0.. {
        tag = format!("{{t{i}}}");
        if reader.owner_port(&tag).await == ports[1] {
            break;
        }
    }
    let mut second = reader.owner(&tag).await;
    let mut pipe = redis::pipe();
    for i in 0..MORE {
        pipe.cmd("SET").arg(format!("{tag}:{i}")).arg(i).ignore();
    }
    let _: () = pipe.query_async(&mut second).await.unwrap();
    let args = ["redis", "copy", "--from", &c.url(), "--to", &dst_url, "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "600"]].concat()).spawn().unwrap()));
    let done = |cp: &serde_json::Value, i: usize| cp["shards"][i]["done"].as_bool() == Some(true);
    let start = Instant::now();
    loop {
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before the other shards' scans did");
        if let Some(cp) = checkpoint(&state)
            && done(&cp, 0)
            && done(&cp, 2)
        {
            assert!(!done(&cp, 1), "the second shard is scanned last: {cp}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the first and third shards' scans never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first shard, scanned, fails over; a slot of the second starts
    // moving to the third, scanned already: its keys would be seen by neither.
    let replica = c.replica_of(ports[0]).await;
    let mut r = conn(&format!("redis://127.0.0.1:{replica}")).await;
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query_async(&mut r).await.unwrap();
    common::eventually(Duration::from_secs(20), "the replica promoted", || async {
        (c.primary_ports().await[0] == replica).then_some(())
    })
    .await;
    let slot = open_a_slot(ports[1], ports[2]).await;
    assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before the slot was opened");
    let out = child.take().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a copy whose source moved a slot under it does not succeed: {err}");
    assert!(
        err.contains(&format!(
            "the source cluster is moving slots between its shards (127.0.0.1:{} migrating slot {slot}, 127.0.0.1:{} \
             importing slot {slot})",
            ports[1], ports[2]
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_and_moved_are_followed_while_a_slot_moves() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), "m", 3, false).await;
    let e = ep("target", &c.url());
    let (seed, _) = e.open().await.unwrap();
    let router = cutover::redis::cluster::Cluster::connect(&e, seed).await.unwrap();
    let key = |i: u32| format!("{{moving}}:{i}");
    let mut any = conn(&c.node_url()).await;
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key(0)).query_async(&mut any).await.unwrap();
    let ports = c.primary_ports().await;
    let from_port: u16 = router.owner(slot).rsplit_once(':').unwrap().1.parse().unwrap();
    let to_port = *ports.iter().find(|p| **p != from_port).unwrap();
    let (mut from, mut to) =
        (conn(&format!("redis://127.0.0.1:{from_port}")).await, conn(&format!("redis://127.0.0.1:{to_port}")).await);
    let id = |c: &mut MultiplexedConnection| {
        let mut c = c.clone();
        async move { redis::cmd("CLUSTER").arg("MYID").query_async::<String>(&mut c).await.unwrap() }
    };
    let (from_id, to_id) = (id(&mut from).await, id(&mut to).await);
    let set = |i: u32| (slot, redis::cmd("SET").arg(key(i)).arg(i).clone());
    let count_in = |c: &MultiplexedConnection| {
        let mut c = c.clone();
        async move { redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query_async::<u64>(&mut c).await.unwrap() }
    };

    // Mid-migration: a key the old owner lacks is answered ASK, and written on the new one.
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&from_id)
        .query_async(&mut to)
        .await
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&to_id)
        .query_async(&mut from)
        .await
        .unwrap();
    // Two commands, so the second round's pipeline interleaves ASKING with them.
    let replies = router.run(vec![set(1), set(4)]).await.unwrap();
    assert_eq!(replies, [Value::Okay, Value::Okay]);
    assert_eq!((count_in(&from).await, count_in(&to).await), (0, 2), "written where ASK pointed");
    for i in [1, 4] {
        // The slot is still importing there: ASKING lets the GET in.
        let (v,): (String,) =
            redis::pipe().cmd("ASKING").ignore().cmd("GET").arg(key(i)).query_async(&mut to).await.unwrap();
        assert_eq!(v, i.to_string(), "each command's own value, resent after ASK");
    }

    // The slot handed over: the stale map gets MOVED, refreshes, and writes to the new owner.
    for p in &ports {
        let mut n = conn(&format!("redis://127.0.0.1:{p}")).await;
        let _: () =
            redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("NODE").arg(&to_id).query_async(&mut n).await.unwrap();
    }
    assert_eq!(router.owner(slot), format!("127.0.0.1:{from_port}"), "the map is stale until told");
    let replies = router.run(vec![set(2), set(3)]).await.unwrap();
    assert_eq!(replies, [Value::Okay, Value::Okay]);
    assert_eq!(router.owner(slot), format!("127.0.0.1:{to_port}"), "MOVED refreshed the map");
    assert_eq!((count_in(&from).await, count_in(&to).await), (0, 4));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_key_count_and_the_copy_plan_sum_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), "count", 3, false).await;
    c.seed_half_expiring("count", 300).await;
    let one_node: u64 = redis::cmd("DBSIZE").query_async(&mut conn(&c.node_url()).await).await.unwrap();
    assert!(one_node < 200, "one node holds only its shard's keys: {one_node}");
    for url in [c.node_url(), c.url()] {
        let info = cutover::live::fetch::redis_info(&ep("Redis", &url)).await.unwrap();
        assert_eq!((info.keys, info.expiring_keys), (300, 150), "{url}");
        assert_eq!(copy::endpoint_counts(&ep("source", &url)).await.unwrap(), (300, 150), "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_cluster_from_the_runbook_shows_every_node_and_a_stopped_node_fails_on_its_own_row() {
    use cutover::status::CheckOutcome;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/runbooks/cluster-sandbox.toml");
    let rb = cutover::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut sb = common::sandbox(&rb, "eu-west-1").await;
    let url = &sb.redis_urls["blue-cache"].clone();
    assert!(url.starts_with("redis+cluster://127.0.0.1:"), "the endpoint is rewritten to the sandbox's cluster: {url}");
    assert!(sb.redis_urls["green-cache"].starts_with("redis://127.0.0.1:"), "a plain endpoint stays one server");

    let snap = common::first_snapshot(&rb, &sb).await;
    let blue = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
    let info = blue.view.value.as_ref().unwrap_or_else(|| panic!("blue-cache read: {:?}", blue.view.error));
    assert_eq!(info.nodes.len(), 6, "3 primaries and 3 replicas: {:?}", info.nodes);
    assert_eq!(info.nodes.iter().filter(|n| n.node.primary).count(), 3);
    assert!(info.nodes.iter().all(|n| n.is_up() && n.ping_ms.is_some()), "{:?}", info.nodes);
    // Every shard was seeded and is counted: 300 keys in all, none holding them all
    // (and blue-1's hit counter, once the sandbox's traffic reaches it).
    assert!((300..=301).contains(&info.keys), "{}", info.keys);
    let mut per_primary = Vec::new();
    for n in info.nodes.iter().filter(|n| n.node.primary) {
        let keys: Vec<String> = conn(&format!("redis://{}", n.node.addr)).await.keys("*").await.unwrap();
        per_primary.push(keys.iter().filter(|k| !k.starts_with("hits:")).count());
    }
    assert_eq!(per_primary.iter().sum::<usize>(), 300, "{per_primary:?}");
    assert!(per_primary.iter().all(|k| *k > 0 && *k < 300), "{per_primary:?}");
    let check = |snap: &cutover::status::Snapshot, item: &str| {
        let c = snap.checks.iter().find(|c| c.item == item).unwrap();
        (c.outcome, c.detail.clone())
    };
    assert_eq!(check(&snap, "redis").0, CheckOutcome::Pass, "{:?}", check(&snap, "redis"));
    let green = snap.redis.iter().find(|r| r.name == "green-cache").unwrap().view.value.as_ref().unwrap().keys;
    let (outcome, detail) = check(&snap, "counts");
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    let said = format!(
        "blue-cache {} keys, green-cache {green} keys (difference {}, green-cache has fewer, tolerance 0, read ",
        info.keys,
        info.keys - green
    );
    // The two readings' ages, as the snapshot has them.
    let age = |name: &str| snap.redis.iter().find(|r| r.name == name).unwrap().view.age_seconds.unwrap();
    let apart = format!("{:.1} s apart)", (age("blue-cache") - age("green-cache")).abs());
    assert_eq!(detail, format!("{said}{apart}"));

    // Equal counts that show no copy fail too: green's URL at one of blue's
    // nodes (a plain URL to a cluster node reads the whole cluster), then at
    // a database of green's server with no keys while its db 0 holds some.
    let green_url = sb.redis_urls["green-cache"].clone();
    let mut g = conn(&green_url).await;
    for i in 0..5 {
        let _: () = g.set(format!("green:{i}"), i).await.unwrap();
    }
    let in_db0: u64 = redis::cmd("DBSIZE").query_async(&mut g).await.unwrap();
    let node = url.trim_start_matches("redis+cluster://").split(',').nth(1).unwrap();
    let server = green_url.trim_end_matches("/0");
    for (green, says) in [
        (
            format!("redis://{node}"),
            "blue-cache and green-cache are the same database of one Redis server (run_id ".to_string(),
        ),
        (
            format!("{server}/3"),
            format!(
                "green-cache: no keys in the database its URL names, but db 0 holds {in_db0}: should its URL end in /0?"
            ),
        ),
    ] {
        sb.redis_urls.insert("green-cache".into(), green.clone());
        let snap = common::first_snapshot(&rb, &sb).await;
        let (outcome, detail) = check(&snap, "counts");
        assert_eq!(outcome, CheckOutcome::Fail, "green at {green}: {detail}");
        assert!(detail.starts_with(&says), "green at {green}: {detail}");
    }
    sb.redis_urls.insert("green-cache".into(), green_url);

    // Parity and `redis_persistence` read the whole cluster too: its keys
    // summed over the primaries, and its persistence that of the least
    // persistent one. AOF on the primary the URL names first and on one
    // other, not on the third: the cluster is not persistent.
    let first = url.trim_start_matches("redis+cluster://").split(',').next().unwrap();
    let mut others: Vec<&str> =
        info.nodes.iter().filter(|n| n.node.primary && n.node.addr != first).map(|n| n.node.addr.as_str()).collect();
    others.sort();
    assert_eq!(others.len(), 2, "{:?}", info.nodes);
    let aof = |addr: String, on: bool| async move {
        let mut c = conn(&format!("redis://{addr}")).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg(if on { "yes" } else { "no" })
            .query_async(&mut c)
            .await
            .unwrap();
    };
    aof(first.to_string(), true).await;
    aof(others[0].to_string(), true).await;
    let shape = cutover::live::fetch::redis_shape("blue-cache", &ep("Redis", url)).await.unwrap();
    assert!((300..=301).contains(&shape.keys), "every shard counted: {shape:?}");
    assert_eq!((shape.aof_enabled, shape.persistent()), (Some(false), Some(false)), "{shape:?}");
    aof(others[1].to_string(), true).await;
    let shape = cutover::live::fetch::redis_shape("blue-cache", &ep("Redis", url)).await.unwrap();
    assert_eq!(shape.persistent(), Some(true), "every primary with AOF on: {shape:?}");
    // Persistent in two ways: the check's line gives each, not one primary's.
    aof(others[1].to_string(), false).await;
    let mut third = conn(&format!("redis://{}", others[1])).await;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("save").arg("900 1").query_async(&mut third).await.unwrap();
    let snap = common::first_snapshot(&rb, &sb).await;
    assert_eq!(
        check(&snap, "persistence"),
        (
            CheckOutcome::Pass,
            "blue-cache: every primary persists: AOF off, RDB save 900 1 on 1 primary; AOF on, RDB off on 2 primaries"
                .to_string()
        )
    );
    let _: () = redis::cmd("CONFIG").arg("SET").arg("save").arg("").query_async(&mut third).await.unwrap();
    for addr in [first, others[0], others[1]] {
        aof(addr.to_string(), false).await;
    }

    // Parity compares what every primary holds: one primary whose memory
    // limit differs from the other two's shows as drift against green
    // whichever of the two limits green has (one primary's reading matched
    // one of them).
    let maxmemory = |addr: String, bytes: u64| async move {
        let mut c = conn(&format!("redis://{addr}")).await;
        let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(bytes).query_async(&mut c).await.unwrap();
    };
    let green_addr = sb.redis_urls["green-cache"].trim_start_matches("redis://").trim_end_matches("/0").to_string();
    let (most, odd) = (200u64 << 20, 100u64 << 20);
    for addr in [first, others[0]] {
        maxmemory(addr.to_string(), most).await;
    }
    maxmemory(others[1].to_string(), odd).await;
    let state = tempfile::tempdir().unwrap();
    let runbook = path.display().to_string();
    for green in [most, odd] {
        maxmemory(green_addr.clone(), green).await;
        let (_, out, err) = common::run_cutover(&sb, &rb, state.path(), &["diff", "--json", &runbook]).await;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        let d = v["differences"].as_array().unwrap().iter().find(|d| d["what"] == "redis.maxmemory");
        let d = d.unwrap_or_else(|| panic!("green at {green} bytes: no redis.maxmemory difference in {v}"));
        assert_eq!(
            (d["from_value"].as_str(), d["to_value"].as_str()),
            (
                Some(format!("{odd} noeviction on 1 primary; {most} noeviction on 2 primaries").as_str()),
                Some(format!("{green} noeviction").as_str())
            ),
            "{d}"
        );
    }
    for addr in [first, others[0], others[1], &green_addr] {
        maxmemory(addr.to_string(), 0).await;
    }

    // `cutover status`, pointed at the sandbox by its variables, reads the cluster the same way.
    let (code, out, err) = common::run_cutover(&sb, &rb, state.path(), &["status", &runbook, "--json"]).await;
    assert_eq!(code, Some(1), "the key counts differ, a blocking check: {err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let blue = j["redis"].as_array().unwrap().iter().find(|r| r["name"] == "blue-cache").unwrap();
    assert!(blue["value"]["keys"].as_u64().unwrap() >= 300, "{blue}");
    let nodes = blue["value"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6, "{blue}");
    assert!(
        nodes.iter().all(|n| n["ping_ms"].is_f64()
            && n["error"].is_null()
            && n["addr"].as_str().unwrap().starts_with("127.0.0.1:")),
        "{blue}"
    );
    assert_eq!(nodes.iter().filter(|n| n["primary"] == true).count(), 3, "{blue}");

    // One replica stops answering (SIGSTOP): its row fails, the other five pass.
    let replica = info.nodes.iter().find(|n| !n.node.primary).unwrap().node.addr.clone();
    let port: u16 = replica.rsplit_once(':').unwrap().1.parse().unwrap();
    let _frozen = common::freeze(sb.pid_on_port(port).expect("the sandbox started that node"));
    let mut session = common::session(&rb, &sb);
    session.first_round(&rb, Duration::from_secs(30)).await;
    let start = Instant::now();
    let snap = loop {
        session.run_until(tokio::time::Instant::now() + Duration::from_millis(500)).await;
        let snap = cutover::status::snapshot(&rb, &session.state, &sb.region, std::time::SystemTime::now());
        let blue = snap.redis.iter().find(|r| r.name == "blue-cache").and_then(|r| r.view.value.as_ref());
        if blue.is_some_and(|i| i.nodes.iter().any(|n| n.node.addr == replica && !n.is_up())) {
            break snap;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the stopped replica never failed on its row");
    };
    let blue = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
    assert!(!blue.view.stale, "the endpoint itself still answers: {:?}", blue.view.error);
    let info = blue.view.value.as_ref().unwrap();
    for n in &info.nodes {
        if n.node.addr == replica {
            assert!(n.ping_ms.is_none() && n.error.is_some(), "{n:?}");
        } else {
            assert!(n.is_up(), "only the stopped node fails: {n:?}");
        }
    }
    assert!(info.keys >= 300, "the primaries still count every key: {}", info.keys);
    let (outcome, detail) = check(&snap, "redis");
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    assert!(detail.contains(&format!("replica {replica}")), "the check names the node: {detail}");
    let text = cutover::status::text::render(&snap);
    let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("node ")).collect();
    assert_eq!(rows.len(), 6, "{text}");
    for row in rows {
        let failing = row.contains(" FAIL ");
        assert_eq!(failing, row.contains(&replica), "{row}");
        assert!(failing || (row.contains(" PING ") && row.ends_with(" ms")), "{row}");
    }

    // The replica back, then the primary the URL names first stops: its row
    // fails, its replica takes over, and every other node still passes.
    drop(_frozen);
    let first = url.trim_start_matches("redis+cluster://").split(',').next().unwrap().to_string();
    let first_port: u16 = first.rsplit_once(':').unwrap().1.parse().unwrap();
    let _frozen = common::freeze(sb.pid_on_port(first_port).unwrap());
    let start = Instant::now();
    loop {
        session.run_until(tokio::time::Instant::now() + Duration::from_millis(500)).await;
        let snap = cutover::status::snapshot(&rb, &session.state, &sb.region, std::time::SystemTime::now());
        let blue = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
        let settled = !blue.view.stale
            && blue.view.value.as_ref().is_some_and(|i| {
                i.nodes.len() == 6
                    && i.nodes.iter().all(|n| n.is_up() != (n.node.addr == first))
                    && i.nodes.iter().filter(|n| n.node.primary && n.is_up()).count() == 3
                    && i.keys >= 300
            });
        if settled {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the stopped first node never failed alone: {:?} {:?}",
            blue.view.error,
            blue.view.value.as_ref().map(|i| &i.nodes)
        );
    }
    drop(session);
    drop(_frozen);
    sb.down().await;
}

/// `cmdstat_NAME`'s calls in `INFO commandstats` of the node at `port` (0 when never called).
async fn calls(port: u16, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn(&format!("redis://127.0.0.1:{port}")).await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Two URLs naming nodes of one cluster are one database: a copy between
/// them would RESTORE every key onto itself (undoing writes made in
/// between), so it is refused before anything is written, as `verify` is.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_between_two_names_of_one_cluster_is_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let c = Cluster::start(dir.path(), "self", 3, true).await;
    c.seed_half_expiring("s", 300).await;
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let (first, last) = (
        format!("redis+cluster://127.0.0.1:{}", ports[0]),
        format!("redis+cluster://127.0.0.1:{}", ports[ports.len() - 1]),
    );
    let replica = format!("redis://127.0.0.1:{}", c.replica_of(c.primary_ports().await[0]).await);
    for (from, to) in
        [(first.as_str(), last.as_str()), (c.node_url().as_str(), c.url().as_str()), (last.as_str(), replica.as_str())]
    {
        let (code, out, err) =
            run(&state, &["redis", "copy", "--from", from, "--to", to, "--on-conflict", "replace", "--yes"]);
        assert_eq!(code, Some(2), "{from} → {to}: {out}{err}");
        assert!(err.contains("are one Redis server (run_id "), "{from} → {to}: {err}");
        assert!(err.contains("a copy onto itself would rewrite every key in place"), "{err}");
    }
    for port in ports {
        assert_eq!(calls(port, "restore").await, 0, "nothing written on node {port}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_from_replicas_is_complete_and_the_primaries_serve_no_scan() {
    const N: u64 = 3_000;
    let OutOfCluster { dir, state, c, dst: _dst, dst_url } = out_of_cluster("rep", true).await;
    c.seed_half_expiring("r", N).await;
    let primaries = c.primary_ports().await;
    let replicas: Vec<u16> = c.nodes.iter().map(|n| n.port).filter(|p| !primaries.contains(p)).collect();
    assert_eq!(replicas.len(), 3);
    for p in &primaries {
        c.replica_in_step(*p, c.replica_of(*p).await).await;
    }
    for p in c.nodes.iter().map(|n| n.port) {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn_at(p).await).await.unwrap();
    }

    let (code, out, err) = run(
        &state,
        &["redis", "copy", "--from", &c.url(), "--to", &dst_url, "--from-replicas", "--yes", "--scan-count", "100"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let on_line = err
        .lines()
        .find(|l| l.starts_with("reading the source's shards on replicas: "))
        .unwrap_or_else(|| panic!("{err}"));
    for r in &replicas {
        assert!(on_line.contains(&format!("127.0.0.1:{r}")), "every shard read on its replica: {on_line}");
    }
    assert!(out.contains(&format!("copied {N} keys")), "{out}");
    let (code, out, _) =
        run(&state, &["redis", "verify", "--from", &c.url(), "--to", &dst_url, "--from-replicas", "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch, 0 TTL mismatch"
        )),
        "{out}"
    );
    for p in &primaries {
        for cmd in ["scan", "dump", "pttl"] {
            assert_eq!(calls(*p, cmd).await, 0, "primary {p} served no {cmd}");
        }
    }
    for r in &replicas {
        assert!(calls(*r, "scan").await > 0 && calls(*r, "dump").await > 0, "replica {r} was read");
    }

    // A replica cut off from its primary serves what it last had. It is not
    // read: its shard is read on its primary, saying why, so a key written
    // there since is copied, and a verify from replicas compares against it.
    let primary = primaries[0];
    let cut_off = c.cut_off_replica_of(primary).await;
    let late = set_a_key_of(primary, "late").await;
    let args = [
        "--from",
        &c.url(),
        "--to",
        &dst_url,
        "--from-replicas",
        "--yes",
        "--scan-count",
        "100",
        "--on-conflict",
        "replace",
    ];
    let (code, out, err) = run(&state, &[&["redis", "copy"][..], &args].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("copied {} keys", N + 1)), "{out}{err}");
    // While it retries, INFO may say a full sync is under way (seen once in
    // a full run): either reason will do.
    let said = format!("read on its primary 127.0.0.1:{primary} (127.0.0.1:{cut_off}: ");
    let why = ["its link to its primary has been down for ", "it is taking a full sync from its primary"];
    assert!(
        err.lines().any(|l| l.starts_with("shard ") && l.contains(&said) && why.iter().any(|w| l.contains(w))),
        "{err}"
    );
    let got: Option<String> = redis::cmd("GET").arg(&late).query_async(&mut conn(&dst_url).await).await.unwrap();
    assert_eq!(got.as_deref(), Some("v"), "{late} copied from the primary");
    let (code, out, _) =
        run(&state, &["redis", "verify", "--from", &c.url(), "--to", &dst_url, "--from-replicas", "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("checked {} keys: 0 missing", N + 1)), "{out}");
    c.reconnect_replica(primary, cut_off).await;

    // A replica whose link is up but that has not applied its primary's
    // last writes (CLIENT PAUSE WRITE holds them back; it serves reads from
    // what it applied) is waited for, and read once it holds them; one that
    // stays behind is not read: a key written just before the copy is
    // copied either way. Before, it was read at once and the key missed.
    let primary = primaries[1];
    let replica = c.replica_of(primary).await;
    for (pause_ms, read_on_replica) in [(1_000, true), (6_000, false)] {
        c.replica_in_step(primary, replica).await;
        let pause = redis::cmd("CLIENT").arg("PAUSE").arg(pause_ms).arg("WRITE").clone();
        let _: () = pause.query_async(&mut conn_at(replica).await).await.unwrap();
        let fresh = set_a_key_of(primary, &format!("fresh{pause_ms}")).await;
        let (code, out, err) = run(&state, &[&["redis", "copy"][..], &args].concat());
        assert_eq!(code, Some(0), "{out}{err}");
        let got: Option<String> = redis::cmd("GET").arg(&fresh).query_async(&mut conn(&dst_url).await).await.unwrap();
        assert_eq!(got.as_deref(), Some("v"), "{fresh} copied: {err}");
        let on_line = err.lines().find(|l| l.starts_with("reading the source's shards on replicas: ")).unwrap_or("");
        assert_eq!(on_line.contains(&format!("127.0.0.1:{replica}")), read_on_replica, "{err}");
        if !read_on_replica {
            let said = format!(
                "read on its primary 127.0.0.1:{primary} (127.0.0.1:{replica}: it has applied its primary's writes up to offset "
            );
            assert!(err.lines().any(|l| l.contains(&said) && l.contains("so it would serve old data")), "{err}");
        }
    }
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query_async(&mut conn_at(replica).await).await.unwrap();

    // A cluster without replicas: every shard read on its primary, each saying so; a single server is refused.
    let bare = Cluster::start(dir.path(), "bare", 3, false).await;
    let mut opts = options(&bare.url(), &dst_url, Mode::Auto);
    opts.from = opts.from.reading_replicas();
    let (_, pf) = copy::preflight(&opts).await.unwrap();
    assert_eq!(pf.source_notes.len(), 3, "{:?}", pf.source_notes);
    for (note, shard) in pf.source_notes.iter().zip(&pf.source_shards) {
        assert_eq!(note, &format!("shard {}: read on its primary {} (it has no replica)", shard.slots, shard.primary));
        assert_eq!(shard.read_on, shard.primary);
    }
    let (code, _, err) =
        run(&state, &["redis", "copy", "--from", &dst_url, "--to", &bare.url(), "--from-replicas", "--yes"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--from-replicas reads a Redis Cluster's replicas, but the source"), "{err}");
}

/// Sets a key of `primary`'s own slots (any other answers MOVED), named
/// `prefix:N`, to "v"; returns its name.
async fn set_a_key_of(primary: u16, prefix: &str) -> String {
    let mut on_primary = conn_at(primary).await;
    for i in 0..1000 {
        let key = format!("{prefix}:{i}");
        if redis::cmd("SET").arg(&key).arg("v").query_async::<()>(&mut on_primary).await.is_ok() {
            return key;
        }
    }
    panic!("no key of {primary}'s slots among {prefix}:0..1000");
}

/// A replica cut off from its primary while a copy or a verify reads it
/// serves what it last had. Each asks it again at the end: the copy stops,
/// its checkpoint starts that shard over, and `--resume` reads the shard on
/// its primary, copying what the replica missed; the verify fails instead
/// of passing on old data.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_during_a_copy_or_a_verify_from_replicas_fails_them_and_resume_rescans_its_shard() {
    const N: u64 = 6_000;
    let OutOfCluster { dir: _dir, state, c, dst: _dst, dst_url } = out_of_cluster("cut", true).await;
    c.seed_half_expiring("k", N).await;
    let primaries = c.primary_ports().await;
    for p in &primaries {
        c.replica_in_step(*p, c.replica_of(*p).await).await;
    }
    // The first shard is read on its primary (its replica cut off before the
    // copy), so the second shard's is the first replica the copy asks again:
    // the shard set back must be the second, not the first.
    let early = c.cut_off_replica_of(primaries[0]).await;
    let primary = primaries[1];
    let copy =
        ["redis", "copy", "--from", &c.url(), "--to", &dst_url, "--from-replicas", "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&copy[..], &["--rate", "600"]].concat()).spawn().unwrap()));
    reshard_wait(&state, &mut child, N / 10).await;
    let cut_off = c.cut_off_replica_of(primary).await;
    assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before the replica was cut off");
    let late = set_a_key_of(primary, "late").await;
    let out = tokio::task::spawn_blocking(move || child.take().wait_with_output().unwrap()).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the copy stops: {err}");
    let cp = checkpoint(&state).expect("the checkpoint stays");
    let shards = cp["shards"].as_array().unwrap();
    let primary_addr = format!("127.0.0.1:{primary}");
    let done: Vec<bool> = shards.iter().map(|s| s["done"] == true).collect();
    assert_eq!(done, [true, false, true], "the second shard alone starts over: {cp}");
    assert_eq!(shards[1]["cursor"], 0, "{cp}");
    let slots = shards[1]["slots"].as_str().unwrap();
    let said = format!("shard {slots} was read on its replica 127.0.0.1:{cut_off}: ");
    let why = ["its link to its primary has been down for ", "it is taking a full sync from its primary"];
    assert!(
        err.contains(&said)
            && why.iter().any(|w| err.contains(w))
            && err.contains("--resume scans it again (on a replica in step, else on the primary)"),
        "{err}"
    );
    let got: Option<String> = redis::cmd("GET").arg(&late).query_async(&mut conn(&dst_url).await).await.unwrap();
    assert_eq!(got, None, "{late} was written after the replica's last sync");

    let (code, out, err) = run(&state, &[&copy[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(&format!("shard {slots}: read on its primary {primary_addr} (127.0.0.1:{cut_off}: ")),
        "{err}"
    );
    assert!(out.starts_with(&format!("copied {} keys (", N + 1)), "the shard scanned again counts once: {out}");
    let got: Option<String> = redis::cmd("GET").arg(&late).query_async(&mut conn(&dst_url).await).await.unwrap();
    assert_eq!(got.as_deref(), Some("v"), "{late} copied from the primary");

    // The replica back in step and read by a verify, then cut off again
    // with a key the target lacks: on the replica's old data every key
    // would agree.
    c.reconnect_replica(primary, cut_off).await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn_at(cut_off).await).await.unwrap();
    let verify = ["redis", "verify", "--from", &c.url(), "--to", &dst_url, "--from-replicas", "--full"];
    let mut child = KillOnDrop(Some(
        cutover(&state, &[&verify[..], &["--scan-count", "50", "--rate", "600"]].concat()).spawn().unwrap(),
    ));
    let start = Instant::now();
    while calls(cut_off, "pttl").await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the verify never read the replica");
        assert!(child.get().try_wait().unwrap().is_none(), "the verify ended too soon");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.cut_off_replica_of(primary).await;
    assert!(child.get().try_wait().unwrap().is_none(), "the verify ended before the replica was cut off");
    set_a_key_of(primary, "later").await;
    let out = tokio::task::spawn_blocking(move || child.take().wait_with_output().unwrap()).await.unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(
        err.contains(&said) && err.contains("What was read there may be old, so this result proves nothing"),
        "{stdout}{err}"
    );
    c.reconnect_replica(primary, cut_off).await;
    c.reconnect_replica(primaries[0], early).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_during_a_copy_out_of_a_cluster_stops_it_naming_the_shard_and_resume_rescans_that_shard_alone() {
    const N: u64 = 12_000;
    let OutOfCluster { dir: _dir, state, c, dst: _dst, dst_url } = out_of_cluster("fo", true).await;
    let mut reader = c.reader().await;
    for i in 0..N {
        let key = format!("f:{i}");
        let mut owner = reader.owner(&key).await;
        let _: () = owner.pset_ex(&key, i, 600_000).await.unwrap();
    }
    let old_primary = c.primary_ports().await[1];
    let replica = c.replica_of(old_primary).await;
    let args = ["redis", "copy", "--from", &c.url(), "--to", &dst_url, "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "2400"]].concat()).spawn().unwrap()));
    let start = Instant::now();
    while checkpoint(&state).as_ref().map_or(0, |cp| cp["counters"]["copied"].as_u64().unwrap_or(0)) < N / 5 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before the failover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut r = conn(&format!("redis://127.0.0.1:{replica}")).await;
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query_async(&mut r).await.unwrap();
    let out = child.take().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the copy stops: {err}");
    let cp = checkpoint(&state).expect("the checkpoint stays");
    let slots = cp["shards"][1]["slots"].as_str().unwrap().to_string();
    assert!(
        err.contains(&format!(
            "shard {slots} failed over during the copy (primary 127.0.0.1:{old_primary} → 127.0.0.1:{replica}); "
        )) && err.contains("--resume scans that shard again alone"),
        "{err}"
    );

    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let restarts: Vec<&str> = err.lines().filter(|l| l.contains("its scan starts over")).collect();
    assert_eq!(restarts.len(), 1, "{err}");
    assert!(restarts[0].starts_with(&format!("shard {slots}: the node it is read on changed or restarted")), "{err}");
    // The shard scanned again counts its keys once.
    assert!(out.starts_with(&format!("copied {N} keys (")), "{out}");
    let total: u64 = redis::cmd("DBSIZE").query_async(&mut conn(&dst_url).await).await.unwrap();
    assert_eq!(total, N);
}

/// Into a cluster whose shard fails over mid-copy: a primary that took
/// writes is a replica now, and what it had not passed on (replication is
/// asynchronous) is lost with no error to the copy, which follows the MOVED
/// to the new primary. The copy must not end "copied": it stops, its
/// checkpoint starts the scan over, and `--resume` writes every key again.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_of_the_target_cluster_during_a_copy_fails_it_and_resume_writes_every_key_again() {
    const N: u64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let c = Cluster::start(dir.path(), "tfo", 3, true).await;
    let src = start_redis(dir.path(), "src").await.unwrap();
    let src_url = format!("redis://127.0.0.1:{}/0", src.port);
    let mut s = conn(&src_url).await;
    for i in 0..N {
        let _: () = s.set(format!("t:{i}"), i).await.unwrap();
    }
    let old_primary = c.primary_ports().await[1];
    let replica = c.replica_of(old_primary).await;
    let args = ["redis", "copy", "--from", &src_url, "--to", &c.url(), "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "2000"]].concat()).spawn().unwrap()));
    let start = Instant::now();
    while copied_so_far(&state) < N / 5 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before the failover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut r = conn(&format!("redis://127.0.0.1:{replica}")).await;
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query_async(&mut r).await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.take().wait_with_output().unwrap()).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "the copy stops: {stdout}{stderr}");
    assert!(
        stderr.contains(
            "the target restarted or failed over during the copy (1 of its servers that took writes is gone)"
        ) && stderr.contains("its checkpoint now starts the scan over: rerun with --resume"),
        "{stderr}"
    );
    assert!(c.primary_ports().await.contains(&replica), "the replica was promoted");

    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("the target restarted or failed over since the checkpoint"), "{err}");
    assert!(out.starts_with(&format!("copied {N} keys (")), "{out}");
    assert_eq!(c.sizes().await.iter().sum::<u64>(), N);
}

/// Keys copied so far, as the copy's checkpoint says (0 before it exists).
fn copied_so_far(state: &Path) -> u64 {
    checkpoint(state).map_or(0, |cp| cp["counters"]["copied"].as_u64().unwrap_or(0))
}

/// Waits until a copy running as `child` has copied `at_least` keys, then
/// reshards `slots` slots of the cluster from its last shard to its first
/// with `redis-cli --cluster reshard`. Returns whether the copy was still
/// running when the reshard ended, and redis-cli's output. Asserts the two
/// overlapped: the copy had begun and not finished when the reshard began.
async fn reshard_during(
    c: &Cluster,
    state: &Path,
    child: &mut KillOnDrop,
    at_least: u64,
    total: u64,
    slots: usize,
) -> (bool, String) {
    reshard_wait(state, child, at_least).await;
    let ports = c.primary_ports().await;
    assert!(child.get().try_wait().unwrap().is_none(), "the copy was running when the reshard began");
    let before = copied_so_far(state);
    assert!(before < total, "the copy had not finished when the reshard began: {before} of {total}");
    let began = Instant::now();
    let (ok, out) = c.reshard(ports[2], ports[0], slots).await;
    assert!(ok, "redis-cli --cluster reshard: {out}");
    let moved = out.lines().filter(|l| l.starts_with("Moving slot ")).count();
    assert_eq!(moved, slots, "{out}");
    let running = child.get().try_wait().unwrap().is_none();
    eprintln!(
        "reshard of {slots} slots took {:.1} s, begun at {before} of {total} keys copied; the copy {} at its end",
        began.elapsed().as_secs_f64(),
        if running { "still ran" } else { "had ended" }
    );
    (running, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_into_a_cluster_being_resharded_ends_complete_and_identical() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let c = Cluster::start(dir.path(), "into", 3, false).await;
    let src = start_redis(dir.path(), "src").await.unwrap();
    let src_url = format!("redis://127.0.0.1:{}/0", src.port);
    let mut s = conn(&src_url).await;
    let mut keys = seed_all_types(&mut s, "plain", 1000, None).await;
    keys.extend(seed_all_types(&mut s, "ttl", 1000, Some(600_000)).await);
    let n = keys.len() as u64;
    let sizes_before = c.sizes().await;
    assert_eq!(sizes_before.iter().sum::<u64>(), 0);

    // Slowed down so that a third of the slots move while it writes.
    let args = ["redis", "copy", "--from", &src_url, "--to", &c.url(), "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "800"]].concat()).spawn().unwrap()));
    let (running, _) = reshard_during(&c, &state, &mut child, n / 10, n, 2000).await;
    assert!(running, "the copy had not finished when the reshard ended");
    let out = child.take().wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("copied {n} keys")), "{stdout}");

    // The slots really moved: the first shard owns more of them, and holds more keys.
    let sizes = c.sizes().await;
    assert_eq!(sizes.iter().sum::<u64>(), n, "{sizes:?}");
    assert!(sizes[0] > sizes[1] && sizes[0] > sizes[2], "the first shard took 2,000 slots: {sizes:?}");
    let mut reader = c.reader().await;
    assert_identical(&mut Place::Single(s.clone()), &mut Place::Cluster(&mut reader), &keys, 1000).await;
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src_url, "--to", &c.url(), "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "checked {n} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch, 0 TTL mismatch"
        )),
        "{out}"
    );
}

/// What a copy out of a cluster resharded under it leaves: the cluster,
/// the target, the copy's state folder and arguments.
struct Resharded {
    _dir: tempfile::TempDir,
    c: Cluster,
    _dst: cutover::sandbox::process::ChildProcess,
    state: std::path::PathBuf,
    args: Vec<String>,
}

/// A copy out of a 3-shard cluster with `--on-conflict policy` while 2,000
/// slots move from its last shard to its first: it stops (exit 1) saying
/// the source was resharded, its checkpoint starting every shard over; then
/// `--resume` copies every key and `verify --full` passes.
async fn copy_out_through_a_reshard(policy: &str) -> Resharded {
    const N: u64 = 12_000;
    let OutOfCluster { dir, state, c, dst, dst_url } = out_of_cluster("out", false).await;
    let mut d = conn(&dst_url).await;
    c.seed_half_expiring("o", N).await;
    let url = c.url();
    let args =
        ["redis", "copy", "--from", &url, "--to", &dst_url, "--yes", "--scan-count", "50", "--on-conflict", policy];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "800"]].concat()).spawn().unwrap()));
    let (_, reshard) = reshard_during(&c, &state, &mut child, N / 10, N, 2000).await;
    let out = child.take().wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let on_target: u64 = redis::cmd("DBSIZE").query_async(&mut d).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a copy whose source was resharded under it does not succeed ({on_target} of {N} keys on the target): {stdout}{stderr}"
    );
    assert!(
        stderr.contains("the source cluster was resharded during the copy: its shards' slots were ")
            || stderr.contains("the source cluster is moving slots between its shards ("),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "its checkpoint now starts every shard over. Once the resharding is over (`redis-cli --cluster check \
             HOST:PORT` shows no open slot), rerun with --resume: it scans every shard again"
        ),
        "{stderr}"
    );
    let cp = checkpoint(&state).expect("the checkpoint stays");
    let places = cp["shards"].as_array().unwrap();
    assert_eq!(places.len(), 3, "{cp}");
    assert!(places.iter().all(|p| p["cursor"] == 0 && p["done"] == false), "every shard starts over: {cp}");

    // The reshard is over: --resume scans every shard of the new layout and the target is complete.
    assert!(reshard.contains("Moving slot "), "{reshard}");
    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("the cluster's shards changed since the checkpoint (slots moved): every shard's scan starts over"),
        "{err}"
    );
    // Every shard scanned again counts its keys once.
    assert!(out.starts_with(&format!("copied {N} keys (")), "{out}");
    finished_whole(&state, &mut d, &c.url(), &dst_url, N).await;
    let args = args.iter().map(|a| a.to_string()).collect();
    Resharded { _dir: dir, c, _dst: dst, state, args }
}

/// `replace`: a key seen twice (scanned, then moved ahead of another shard's
/// cursor) is no conflict, so only the keys missed can go wrong: before the
/// copy checked its source's slots afterwards, it reported success with
/// hundreds missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_out_of_a_cluster_being_resharded_stops_saying_so_and_resume_scans_every_shard_again() {
    // Kept whole: its folder holds the nodes' cluster config, which SETSLOT rewrites.
    let resharded = copy_out_through_a_reshard("replace").await;
    let (c, state) = (&resharded.c, &resharded.state);
    let args: Vec<&str> = resharded.args.iter().map(String::as_str).collect();

    // A slot left open (a resharding under way, or one stopped half done): a copy out of the cluster is refused.
    let ports = c.primary_ports().await;
    let slot = open_a_slot(ports[1], ports[2]).await;
    let (code, _, err) = run(state, &args);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the source cluster is moving slots between its shards (127.0.0.1:{} migrating slot {slot}, 127.0.0.1:{} \
             importing slot {slot}): a SCAN per shard would miss keys moving behind its cursor; wait until the \
             resharding is over",
            ports[1], ports[2]
        )),
        "{err}"
    );
}

/// Opens the first slot of the primary on port `from` towards the primary on
/// `to` (SETSLOT IMPORTING, then MIGRATING), as a resharding begins, and
/// moves no key; returns the slot.
async fn open_a_slot(from: u16, to: u16) -> u16 {
    let (mut from, mut to) = (conn_at(from).await, conn_at(to).await);
    let id = |c: &MultiplexedConnection| {
        let mut c = c.clone();
        async move { redis::cmd("CLUSTER").arg("MYID").query_async::<String>(&mut c).await.unwrap() }
    };
    let (from_id, to_id) = (id(&from).await, id(&to).await);
    let listing: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut from).await.unwrap();
    let own = listing.lines().find(|l| l.contains("myself")).unwrap();
    let slot: u16 = own.split_whitespace().nth(8).unwrap().split('-').next().unwrap().parse().unwrap();
    let setslot = |how: &str, id: &str| redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(how).arg(id).clone();
    let _: () = setslot("IMPORTING", &from_id).query_async(&mut to).await.unwrap();
    let _: () = setslot("MIGRATING", &to_id).query_async(&mut from).await.unwrap();
    slot
}

/// `fail`, the default and the checklist action's: a key seen twice is a
/// conflict that stops the copy, and the message says why it happened.
#[tokio::test(flavor = "multi_thread")]
async fn a_fail_copy_out_of_a_cluster_being_resharded_names_the_resharding_and_resumes_complete() {
    copy_out_through_a_reshard("fail").await;
}

/// A copy that finished whole: `n` keys on the target, its checkpoint
/// removed, and `cutover redis verify --full` finding no difference.
async fn finished_whole(state: &Path, d: &mut MultiplexedConnection, from: &str, to: &str, n: u64) {
    let total: u64 = redis::cmd("DBSIZE").query_async(d).await.unwrap();
    assert_eq!(total, n);
    assert!(checkpoint(state).is_none(), "a finished copy removes its checkpoint");
    let (code, out, _) = run(state, &["redis", "verify", "--from", from, "--to", to, "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "checked {n} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch, 0 TTL mismatch"
        )),
        "{out}"
    );
}

async fn conn_at(port: u16) -> MultiplexedConnection {
    conn(&format!("redis://127.0.0.1:{port}")).await
}

/// A check of `cutover status --json`: (outcome, detail).
fn status_check(j: &serde_json::Value, phase: &str, item: &str) -> (String, String) {
    let c = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["phase"] == phase && c["item"] == item)
        .unwrap_or_else(|| panic!("no check {phase}/{item}: {j}"));
    (c["outcome"].as_str().unwrap().to_string(), c["detail"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_single_box_runbook_copies_its_redis_into_a_three_shard_cluster_in_its_sandbox() {
    let rb = common::runbook("single-box-to-alb.toml");
    let sb = common::sandbox(&rb, "eu-central-1").await;
    let dir = tempfile::tempdir().unwrap();
    let runbook = "runbooks/single-box-to-alb.toml";
    let url = sb.redis_urls["elasticache"].clone();
    assert!(url.starts_with("redis+cluster://127.0.0.1:"), "ElastiCache is a cluster in the sandbox: {url}");
    assert!(sb.redis_urls["box-redis"].starts_with("redis://127.0.0.1:"), "the box's Redis stays one server");
    let status = || {
        let (sb, rb, state) = (&sb, &rb, dir.path());
        async move {
            let (code, out, err) = common::run_cutover(sb, rb, state, &["status", runbook, "--json"]).await;
            let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
            (code, j)
        }
    };

    // The connectivity matrix: a row per node of the cluster, each answering cutover's PING.
    let (_, j) = status().await;
    let cache = j["redis"].as_array().unwrap().iter().find(|r| r["name"] == "elasticache").unwrap().clone();
    let nodes = cache["value"]["nodes"].as_array().unwrap_or_else(|| panic!("{cache}"));
    assert_eq!(nodes.len(), 3, "{cache}");
    assert!(
        nodes.iter().all(|n| n["primary"] == true
            && n["ping_ms"].is_f64()
            && n["error"].is_null()
            && n["addr"].as_str().unwrap().starts_with("127.0.0.1:")),
        "{cache}"
    );
    assert_eq!(status_check(&j, "prepare", "redis").0, "pass", "{:?}", status_check(&j, "prepare", "redis"));
    assert_eq!(cache["value"]["keys"], 0, "nothing copied yet: {cache}");
    assert_eq!(status_check(&j, "data", "key-counts").0, "fail");

    // The checklist's copy, through the authorised path.
    let (code, out) = common::run_cutover_all(&sb, &rb, dir.path(), &["run", runbook, "data/copy", "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("copy_redis box-redis → elasticache done"), "{out}");
    let audit = std::fs::read_to_string(dir.path().join("cutover/single-box-to-alb.audit.jsonl")).unwrap();
    let stages: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, ["intent", "applied"], "{audit}");

    // Every key of the box, identical on the shard owning it; every shard holds some.
    let mut from = conn(&sb.redis_urls["box-redis"]).await;
    let keys: Vec<String> =
        from.keys::<_, Vec<String>>("*").await.unwrap().into_iter().filter(|k| !k.starts_with("hits:")).collect();
    assert!(keys.len() >= 500, "the seeded keys: {}", keys.len());
    let first: u16 = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .next()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut reader = Reader::at(first).await;
    assert_identical(&mut Place::Single(from.clone()), &mut Place::Cluster(&mut reader), &keys, 0).await;
    let primaries = reader.primaries();
    assert_eq!(primaries.len(), 3);
    let mut per_shard = Vec::new();
    for p in &primaries {
        per_shard.push(redis::cmd("DBSIZE").query_async::<u64>(&mut conn_at(*p).await).await.unwrap());
    }
    assert!(per_shard.iter().all(|k| *k > 0 && *k < keys.len() as u64), "{per_shard:?}");

    // key_counts_match sums the shards: it passes; 15 keys gone from one shard (tolerance 10) fail it.
    let (_, j) = status().await;
    let (outcome, detail) = status_check(&j, "data", "key-counts");
    let copied: u64 = per_shard.iter().sum();
    assert_eq!(outcome, "pass", "{detail}");
    assert!(detail.contains(&format!("elasticache {copied} keys (difference ")), "{detail}");
    let mut shard = conn_at(primaries[1]).await;
    let there: Vec<String> = shard.keys("*").await.unwrap();
    for k in &there[..15] {
        let _: u64 = shard.del(k).await.unwrap();
    }
    let (code, j) = status().await;
    let (outcome, detail) = status_check(&j, "data", "key-counts");
    assert_eq!(outcome, "fail", "{detail}");
    assert!(detail.contains(&format!("elasticache {} keys (difference ", copied - 15)), "{detail}");
    assert_eq!(code, Some(1), "a failing check fails `cutover status`");
    sb.down().await;
}

/// Moves one slot by hand, as `redis-cli --cluster reshard` does: IMPORTING
/// and MIGRATING, MIGRATE of its keys, then SETSLOT NODE on every primary.
async fn move_slot(slot: u16, from: u16, to: u16, ports: &[u16]) {
    let (mut f, mut t) = (conn_at(from).await, conn_at(to).await);
    let id = |c: &MultiplexedConnection| {
        let mut c = c.clone();
        async move { redis::cmd("CLUSTER").arg("MYID").query_async::<String>(&mut c).await.unwrap() }
    };
    let (from_id, to_id) = (id(&f).await, id(&t).await);
    let setslot = |how: &str, id: &str| redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(how).arg(id).clone();
    let _: () = setslot("IMPORTING", &from_id).query_async(&mut t).await.unwrap();
    let _: () = setslot("MIGRATING", &to_id).query_async(&mut f).await.unwrap();
    loop {
        let keys: Vec<String> =
            redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(100).query_async(&mut f).await.unwrap();
        if keys.is_empty() {
            break;
        }
        let _: () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut f)
            .await
            .unwrap();
    }
    for p in [to, from].iter().chain(ports.iter().filter(|p| **p != from && **p != to)) {
        let _: () = setslot("NODE", &to_id).query_async(&mut conn_at(*p).await).await.unwrap();
    }
}

/// The primary that holds slot `slot`'s keys.
async fn holder_of(slot: u16, ports: &[u16]) -> u16 {
    for p in ports {
        let n: u64 =
            redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot).query_async(&mut conn_at(*p).await).await.unwrap();
        if n > 0 {
            return *p;
        }
    }
    panic!("no primary holds slot {slot}'s keys");
}

/// A slot moved to another shard and back while a copy was stopped leaves
/// the slot map as it was; the primaries' config epochs, kept in the
/// checkpoint, show it, and the resume scans again the two shards that
/// took the slot, while the third goes on from its cursor.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_moved_and_back_while_a_copy_out_of_a_cluster_was_stopped_makes_its_resume_rescan_the_shards_that_took_it()
 {
    const N: u64 = 6_000;
    let OutOfCluster { dir: _dir, state, c, dst: _dst, dst_url } = out_of_cluster("stopped", false).await;
    let mut d = conn(&dst_url).await;
    c.seed_half_expiring("s", N).await;
    let ports = c.primary_ports().await;
    let slot: u16 =
        redis::cmd("CLUSTER").arg("KEYSLOT").arg("s:0").query_async(&mut conn_at(ports[0]).await).await.unwrap();
    let home = holder_of(slot, &ports).await;
    let away = *ports.iter().find(|p| **p != home).unwrap();
    let took: Vec<usize> = ports.iter().enumerate().filter(|(_, p)| [home, away].contains(p)).map(|(i, _)| i).collect();

    let url = c.url();
    let args = ["redis", "copy", "--from", &url, "--to", &dst_url, "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "600"]].concat()).spawn().unwrap()));
    reshard_wait(&state, &mut child, N / 10).await;
    let mut p = child.take();
    p.kill().unwrap();
    p.wait().unwrap();
    let cp = checkpoint(&state).expect("a checkpoint");
    let shards = cp["shards"].as_array().unwrap();
    assert!(shards.iter().all(|s| s["config_epoch"].as_u64().is_some()), "each shard's epoch is kept: {cp}");
    // Else starting shards over would not show in what the resume scans.
    assert!(shards.iter().all(|s| s["cursor"].as_u64().unwrap() > 0), "every shard's scan had begun: {cp}");

    move_slot(slot, home, away, &ports).await;
    move_slot(slot, away, home, &ports).await;
    let (code, out, err) = run(&state, &[&args[..], &["--resume", "--json"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    for (i, port) in took.iter().map(|i| (*i, ports[*i])) {
        let slots = shards[i]["slots"].as_str().unwrap();
        assert!(
            err.contains(&format!("shard {slots}: its primary 127.0.0.1:{port} took a slot since the checkpoint")),
            "{err}"
        );
    }
    assert_eq!(err.lines().filter(|l| l.contains("its scan starts over")).count(), 2, "the third shard goes on: {err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let scanned = report["run"]["scanned"].as_u64().unwrap();
    let sizes = c.sizes().await;
    let rescanned: u64 = took.iter().map(|i| sizes[*i]).sum();
    assert!(scanned >= rescanned, "the two shards were scanned again whole: {scanned} < {rescanned}");
    assert!(scanned < N, "the third shard went on from its cursor: {scanned}");
    finished_whole(&state, &mut d, &url, &dst_url, N).await;
}

/// A slot moved to another shard and back while the copy (or a verify)
/// scanned leaves the slot map as it was; the primaries' config epochs show
/// it. The slot holds a key, so the scan may well have missed it.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_moved_and_moved_back_during_a_copy_or_a_verify_out_of_a_cluster_fails_them() {
    const N: u64 = 6_000;
    let OutOfCluster { dir: _dir, state, c, dst: _dst, dst_url } = out_of_cluster("back", false).await;
    let mut reader = c.reader().await;
    for i in 0..N {
        let key = format!("b:{i}");
        let _: () = reader.owner(&key).await.set(&key, i).await.unwrap();
    }
    let ports = c.primary_ports().await;
    let mut any = conn_at(ports[0]).await;
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg("b:0").query_async(&mut any).await.unwrap();
    let home = holder_of(slot, &ports).await;
    let away = *ports.iter().find(|p| **p != home).unwrap();
    let there_and_back = || {
        let ports = ports.clone();
        async move {
            move_slot(slot, home, away, &ports).await;
            move_slot(slot, away, home, &ports).await;
        }
    };

    // The copy: slow, so the slot moves there and back while it scans.
    let url = c.url();
    let args = ["redis", "copy", "--from", &url, "--to", &dst_url, "--yes", "--scan-count", "50", "--rate", "600"];
    let mut child = KillOnDrop(Some(cutover(&state, &args).spawn().unwrap()));
    reshard_wait(&state, &mut child, N / 10).await;
    there_and_back().await;
    assert!(child.get().try_wait().unwrap().is_none(), "the copy still ran after the slot came back");
    let out = child.take().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("though its slot map now looks as before: these primaries took a slot")
            && stderr.contains(&format!("127.0.0.1:{home} (config epoch ")),
        "{stderr}"
    );
    let cp = checkpoint(&state).expect("the checkpoint stays");
    assert!(cp["shards"].as_array().unwrap().iter().all(|p| p["cursor"] == 0), "every shard starts over: {cp}");

    // A verify reading the cluster while the slot goes there and back proves nothing, and says so.
    let verify = ["redis", "verify", "--from", &url, "--to", &dst_url, "--full", "--scan-count", "50", "--rate", "600"];
    let mut child = KillOnDrop(Some(cutover(&state, &verify).spawn().unwrap()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    there_and_back().await;
    assert!(child.get().try_wait().unwrap().is_none(), "the verify still ran after the slot came back");
    let out = child.take().wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("slots moved between its shards during the verify"), "{stdout}{stderr}");
    assert!(stderr.contains("so this result proves nothing"), "{stderr}");
}

/// Waits until the copy has checkpointed `at_least` keys, still running.
async fn reshard_wait(state: &Path, child: &mut KillOnDrop, at_least: u64) {
    let start = Instant::now();
    while copied_so_far(state) < at_least {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended too soon");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Out of a cluster into a Sentinel group whose master fails over mid-copy:
/// the copy follows the target and every shard goes on from its own cursor
/// on its own node. The cluster is reached through its third primary, so a
/// copy that put its first shard's scan on that seed node (as it once did)
/// would rescan the third shard twice and never finish the first.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_failover_during_a_copy_out_of_a_cluster_keeps_every_shards_scan_on_its_node() {
    const N: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let c = Cluster::start(dir.path(), "seed", 3, false).await;
    let group = common::sentinel::SentinelGroup::start(dir.path()).await;
    let mut reader = c.reader().await;
    for i in 0..N {
        let key = format!("s:{i}");
        let _: () = reader.owner(&key).await.set(&key, i).await.unwrap();
    }
    let ports = c.primary_ports().await;
    let from = format!("redis+cluster://127.0.0.1:{}", ports[2]);
    let (old_master, to) = (group.master.port, group.url());
    let args = ["redis", "copy", "--from", &from, "--to", &to, "--yes", "--scan-count", "100", "--rate", "4000"];
    let mut child = KillOnDrop(Some(cutover(&state, &args).spawn().unwrap()));
    reshard_wait(&state, &mut child, N / 5).await;
    group.failover().await;
    let out = tokio::task::spawn_blocking(move || child.take().wait_with_output().unwrap()).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let new_master = group.master_port().await;
    assert_ne!(new_master, old_master, "the replica was promoted");
    assert!(stdout.contains("followed a failover of the target"), "{stdout}{stderr}");
    let mut t = conn(&format!("redis://127.0.0.1:{new_master}/0")).await;
    let on_target: u64 = redis::cmd("DBSIZE").query_async(&mut t).await.unwrap();
    assert_eq!(on_target, N, "every key of every shard on the new master: {stdout}{stderr}");
}

/// The largest SCAN batch of a copy of 3,000 keys from one server into `to`,
/// with `--scan-count 100`.
async fn largest_batch(to: &str, name: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let src = start_redis(dir.path(), name).await.unwrap();
    let src_url = format!("redis://127.0.0.1:{}/0", src.port);
    let mut p = redis::pipe();
    for i in 0..3000 {
        p.cmd("SET").arg(format!("{name}:{i}")).arg(i).ignore();
    }
    let _: () = p.query_async(&mut conn(&src_url).await).await.unwrap();
    let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut o = options(&src_url, to, Mode::Auto);
    o.on_conflict = OnConflict::Replace;
    let seen = largest.clone();
    o.after_scan = Some(Arc::new(move |keys: &mut Vec<Vec<u8>>| {
        seen.fetch_max(keys.len(), std::sync::atomic::Ordering::SeqCst);
    }));
    let r = copy_with(&o).await.unwrap();
    assert_eq!(r.total.copied, 3000, "{r:?}");
    largest.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_into_a_cluster_scans_scan_count_keys_per_target_shard_up_to_three_times() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), "per-shard", 3, false).await;
    let single = start_redis(dir.path(), "single-target").await.unwrap();
    // SCAN returns at least COUNT keys while there are more (whole buckets, so a few over).
    let into_single = largest_batch(&format!("redis://127.0.0.1:{}/0", single.port), "to-single").await;
    assert!((100..150).contains(&into_single), "into one server, batches of --scan-count: {into_single}");
    // Split over 3 shards, each shard's pipeline still gets about 100 keys.
    let into_cluster = largest_batch(&c.url(), "to-cluster").await;
    assert!((300..350).contains(&into_cluster), "into 3 shards, 3 × --scan-count: {into_cluster}");
    // More shards: still at most 3 × (the type path's memory grows with the batch).
    let four = Cluster::start(dir.path(), "four-shards", 4, false).await;
    let into_four = largest_batch(&four.url(), "to-four").await;
    assert!((300..350).contains(&into_four), "into 4 shards, capped at 3 × --scan-count: {into_four}");
}
