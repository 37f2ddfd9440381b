//! `cutover redis copy` and `verify` against real redis-server processes.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::KillOnDrop;
use common::redis_values::{pexpiretime, value_of};
use cutover::redis::copy::{self, CopyError, CopyOptions, CopyReport, RunBy};
use cutover::redis::url::Endpoint;
use cutover::redis::verify::{self, Difference, VerifyOptions};
use cutover::redis::{Mode, OnConflict};
use cutover::sandbox::process::{ChildProcess, start_redis, start_redis_with};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};

struct Srv {
    _p: ChildProcess,
    url: String,
}

async fn server(dir: &Path, name: &str) -> Srv {
    let p = start_redis(dir, name).await.unwrap_or_else(|e| panic!("{e:#}"));
    let url = format!("redis://127.0.0.1:{}/0", p.port);
    Srv { _p: p, url }
}

async fn conn(url: &str) -> MultiplexedConnection {
    let c = redis::Client::open(url).unwrap();
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    c.get_multiplexed_async_connection_with_config(&cfg).await.unwrap()
}

/// A source and a target server in `dir`, and a connection to each.
async fn source_and_target(dir: &Path) -> (Srv, Srv, MultiplexedConnection, MultiplexedConnection) {
    let (src, dst) = (server(dir, "src").await, server(dir, "dst").await);
    let (s, d) = (conn(&src.url).await, conn(&dst.url).await);
    (src, dst, s, d)
}

fn ep(role: &'static str, url: &str) -> Endpoint {
    Endpoint::parse(role, url, None, None).unwrap()
}

fn options(from: &str, to: &str) -> CopyOptions {
    CopyOptions {
        from: ep("source", from),
        to: ep("target", to),
        pattern: None,
        on_conflict: OnConflict::Fail,
        mode: Mode::Auto,
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

/// Verify of every key, 1 s of TTL tolerance, chunks over 32 MiB.
fn verify_options(from: &str, to: &str) -> VerifyOptions {
    VerifyOptions {
        from: ep("source", from),
        to: ep("target", to),
        pattern: None,
        sample: None,
        ttl_tolerance_ms: 1000,
        scan_count: 100,
        rate: None,
        chunk_threshold: 32 << 20,
    }
}

/// Preflight, the pre-check of `fail`, then the copy, as the CLI does on a
/// target that is not empty.
async fn copy_with(opts: &CopyOptions) -> Result<CopyReport, CopyError> {
    copy_checked(opts, true).await
}

async fn copy_checked(opts: &CopyOptions, precheck: bool) -> Result<CopyReport, CopyError> {
    copy_adjusted(opts, precheck, |_| {}).await
}

/// As `copy_checked`, with the preflight's findings changed by `adjust` first.
async fn copy_adjusted(
    opts: &CopyOptions,
    precheck: bool,
    adjust: impl FnOnce(&mut copy::Preflight),
) -> Result<CopyReport, CopyError> {
    let (mut conns, mut pf) = copy::preflight(opts).await?;
    adjust(&mut pf);
    if precheck && opts.on_conflict == OnConflict::Fail {
        let c = copy::find_conflicts(opts, &mut conns).await.map_err(CopyError::Failed)?;
        if c.count > 0 {
            return Err(CopyError::Refused(format!("{} conflicts", c.count)));
        }
    }
    // The copy writes only under an `Actor`, from the one constructor there is.
    let log = cutover::store::audit::AuditLog::at(
        std::env::temp_dir().join(format!("redis-copy-test-{}.audit.jsonl", std::process::id())),
    );
    let who = cutover::authority::authorise(
        cutover::authority::Scope::RedisUrls { log: &log },
        false,
        "redis_copy",
        "writing to Redis",
    )
    .await
    .expect("not read-only: authorised");
    copy::copy(&who, opts, conns, &pf, |_| {}).await
}

async fn dbsize(c: &mut MultiplexedConnection) -> u64 {
    redis::cmd("DBSIZE").query_async(c).await.unwrap()
}

/// A user (password `pw`) of the server at `url` allowed everything but
/// `denied` (ACL rules such as `-memory`); the URL that logs in as it.
async fn acl_user(c: &mut MultiplexedConnection, url: &str, name: &str, denied: &[&str]) -> String {
    let mut setuser = redis::cmd("ACL");
    setuser.arg(&["SETUSER", name, "on", ">pw", "~*", "&*", "+@all"]).arg(denied);
    let _: () = setuser.query_async(c).await.unwrap();
    url.replacen("redis://", &format!("redis://{name}:pw@"), 1)
}

/// Every type, `n` of each, under `prefix`; with `ttl_ms` each gets that PTTL.
async fn seed_all_types(c: &mut MultiplexedConnection, prefix: &str, n: usize, ttl_ms: Option<u64>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut p = redis::pipe();
    for i in 0..n {
        let k = |t: &str| format!("{prefix}:{t}:{i}");
        p.cmd("SET").arg(k("string")).arg(format!("value-{i}-\u{e9}\0bin")).ignore();
        p.cmd("HSET").arg(k("hash")).arg("a").arg(i).arg("b").arg("x".repeat(i % 50)).ignore();
        p.cmd("RPUSH").arg(k("list")).arg("one").arg("two").arg(i).arg("one").ignore();
        p.cmd("SADD").arg(k("set")).arg("x").arg("y").arg(i).ignore();
        p.cmd("ZADD").arg(k("zset")).arg(1.5).arg("a").arg(-2).arg("b").arg("+inf").arg(format!("m{i}")).ignore();
        p.cmd("XADD").arg(k("stream")).arg("*").arg("f").arg(i).arg("g").arg("v").ignore();
        p.cmd("XADD").arg(k("stream")).arg("*").arg("f").arg("second").ignore();
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

/// (name, last delivered ID, pending count) of each consumer group of a stream.
async fn stream_groups(c: &mut MultiplexedConnection, key: &str) -> Vec<(String, String, i64)> {
    let groups: Vec<std::collections::HashMap<String, Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(c).await.unwrap();
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    groups
        .iter()
        .map(|g| {
            let pending = match g["pending"] {
                Value::Int(n) => n,
                ref other => panic!("pending: {other:?}"),
            };
            (text(&g["name"]), text(&g["last-delivered-id"]), pending)
        })
        .collect()
}

async fn pttl(c: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

/// Every key identical on both sides, expiring at the same millisecond (or
/// neither expiring).
async fn assert_identical(src: &mut MultiplexedConnection, dst: &mut MultiplexedConnection, keys: &[String]) {
    for k in keys {
        let (a, b) = (value_of(src, k).await, value_of(dst, k).await);
        assert_ne!(a.0, "none", "{k} exists on the source");
        assert_eq!(a, b, "{k} arrived identical");
        let (ta, tb) = (pexpiretime(src, k).await, pexpiretime(dst, k).await);
        assert_eq!(tb, ta, "{k} expires at {tb} on the target, {ta} on the source");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_with_and_without_ttl_arrives_identical_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    let mut keys = seed_all_types(&mut s, "plain", 30, None).await;
    keys.extend(seed_all_types(&mut s, "ttl", 30, Some(300_000)).await);
    // A stream with a consumer group and an empty one: DUMP keeps the group.
    let _: () =
        redis::cmd("XGROUP").arg("CREATE").arg("plain:stream:0").arg("g").arg("0").query_async(&mut s).await.unwrap();
    let _: Value = redis::cmd("XREADGROUP")
        .arg(&["GROUP", "g", "c1", "COUNT", "1", "STREAMS", "plain:stream:0", ">"])
        .query_async(&mut s)
        .await
        .unwrap();
    let read_id = stream_groups(&mut s, "plain:stream:0").await[0].1.clone();
    assert_eq!(stream_groups(&mut s, "plain:stream:0").await[0].2, 1);
    let _: Value =
        redis::cmd("XADD").arg("empty-stream").arg("5-5").arg("f").arg("v").query_async(&mut s).await.unwrap();
    let _: u64 = redis::cmd("XDEL").arg("empty-stream").arg("5-5").query_async(&mut s).await.unwrap();
    keys.push("empty-stream".into());
    // A consumer group set up before any producer writes (MKSTREAM): empty,
    // its last ID 0-0, nothing added or deleted.
    let _: () =
        redis::cmd("XGROUP").arg(&["CREATE", "jobs", "workers", "$", "MKSTREAM"]).query_async(&mut s).await.unwrap();
    keys.push("jobs".into());
    for mode in [Mode::Dump, Mode::Types] {
        let dst = server(dir.path(), &format!("dst-{mode:?}")).await;
        let mut d = conn(&dst.url).await;
        let mut o = options(&src.url, &dst.url);
        o.mode = mode;
        let r = copy_with(&o).await.unwrap();
        assert_eq!(r.mode, mode);
        assert_eq!(r.total.copied, keys.len() as u64, "{mode:?}: {r:?}");
        assert_eq!(r.total.skipped_expired, 0);
        assert_eq!(dbsize(&mut d).await, keys.len() as u64);
        assert_identical(&mut s, &mut d, &keys).await;
        let last: Value = redis::cmd("XINFO").arg("STREAM").arg("empty-stream").query_async(&mut d).await.unwrap();
        assert!(format!("{last:?}").contains("5-5"), "{mode:?}: the empty stream keeps its last ID: {last:?}");
        assert_eq!(stream_groups(&mut d, "jobs").await, [("workers".into(), "0-0".into(), 0)], "{mode:?}");
        // Its ID counters as the source has them: rebuilt by adding and
        // deleting an entry, it arrived with a deleted ID (0-1) and an entry
        // counted as added, which consumer-group lag reads.
        let info = |c: &mut MultiplexedConnection| {
            let mut c = c.clone();
            async move {
                let v: std::collections::HashMap<String, Value> =
                    redis::cmd("XINFO").arg("STREAM").arg("jobs").query_async(&mut c).await.unwrap();
                ["last-generated-id", "max-deleted-entry-id", "entries-added"].map(|f| format!("{:?}", v.get(f)))
            }
        };
        assert_eq!(info(&mut d).await, info(&mut s).await, "{mode:?}");
        let groups = stream_groups(&mut d, "plain:stream:0").await;
        assert_eq!(groups.len(), 1, "{mode:?}: the consumer group arrives");
        let want_pending = if mode == Mode::Dump { 1 } else { 0 };
        assert_eq!(groups[0].1, read_id, "{mode:?}: with its last delivered ID");
        assert_eq!(groups[0].2, want_pending, "{mode:?}: pending entries travel with DUMP only");
        // The copy leaves no temporary keys behind.
        let tmp: Vec<String> = d.keys("__cutover_tmp__*").await.unwrap();
        assert!(tmp.is_empty(), "{tmp:?}");
    }
}

/// A key's expiry arrives as the very millisecond the source keeps, however
/// long the source takes to answer: the copy reads it as an absolute time
/// (PEXPIRETIME) rather than placing a PTTL on this machine's clock (which
/// moved each expiry by up to half a round trip: 1,007 ms later on a loaded
/// CI machine). Every path: DUMP/RESTORE, type by type, and in chunks.
#[tokio::test(flavor = "multi_thread")]
async fn expiries_arrive_to_the_millisecond_however_slowly_the_source_answers() {
    let dir = tempfile::tempdir().unwrap();
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    let mut keys = seed_all_types(&mut s, "ttl", 2, Some(600_000)).await;
    keys.extend(seed_all_types(&mut s, "plain", 1, None).await);
    // Every command to the source waits 300 ms: a slow link, or a busy source.
    let upstream: std::net::SocketAddr = src.url["redis://".len()..].trim_end_matches("/0").parse().unwrap();
    let (slow, proxy) = cutover::sandbox::latency::delay_proxy(upstream, Duration::from_millis(300)).await.unwrap();
    let slow_url = format!("redis://{slow}/0");
    let paths =
        [("dump", Mode::Dump, Some(32 << 20)), ("types", Mode::Types, Some(32 << 20)), ("chunks", Mode::Dump, Some(1))];
    for (name, mode, chunk_threshold) in paths {
        let dst = server(dir.path(), &format!("dst-{name}")).await;
        let mut d = conn(&dst.url).await;
        let mut o = options(&slow_url, &dst.url);
        (o.mode, o.chunk_threshold) = (mode, chunk_threshold);
        let r = copy_checked(&o, false).await.unwrap();
        assert_eq!(r.total.copied, keys.len() as u64, "{name}: {r:?}");
        if name == "chunks" {
            assert_eq!(r.total.chunked, keys.len() as u64, "{name}: every key rebuilt in chunks: {r:?}");
        }
        for k in &keys {
            let (want, got) = (pexpiretime(&mut s, k).await, pexpiretime(&mut d, k).await);
            assert_eq!(got, want, "{name}: {k} expires at {got} on the target, {want} on the source");
        }
    }
    proxy.abort();
}

/// A source older than Redis 7.0 answers PTTL, not PEXPIRETIME. Each was
/// placed on this machine's clock and written as an absolute time, which
/// the target judges by its own clock: a machine 90 s behind the target
/// wrote a 60 s key already expired (RESTORE … ABSTTL in the past answers
/// OK and creates nothing: counted as copied) and every other 90 s short;
/// one 90 s ahead, every key 90 s too long. Now a PTTL goes back as a TTL,
/// less the time since it was read. The 7.0 source here is read by PTTL as
/// an older one is, and this machine's clock is moved as the copy reads it
/// (a redis-server's clock cannot be). Every path: DUMP/RESTORE, type by
/// type, and in chunks.
#[tokio::test(flavor = "multi_thread")]
async fn ttls_read_as_pttl_arrive_right_whatever_this_machines_clock_says() {
    let dir = tempfile::tempdir().unwrap();
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    let mut keys = seed_all_types(&mut s, "minute", 2, Some(60_000)).await;
    keys.extend(seed_all_types(&mut s, "hour", 2, Some(3_600_000)).await);
    keys.extend(seed_all_types(&mut s, "plain", 1, None).await);
    let paths =
        [("dump", Mode::Dump, Some(32 << 20)), ("types", Mode::Types, Some(32 << 20)), ("chunks", Mode::Dump, Some(1))];
    for (name, mode, chunk_threshold) in paths {
        for shift in [-90_000i64, 90_000] {
            let dst = server(dir.path(), &format!("dst-{name}{shift}")).await;
            let mut d = conn(&dst.url).await;
            let mut o = options(&src.url, &dst.url);
            (o.mode, o.chunk_threshold) = (mode, chunk_threshold);
            let r = copy_adjusted(&o, false, |pf| {
                pf.expiry_read = cutover::redis::ExpiryRead::Relative;
                pf.clock_shift_ms = shift;
            })
            .await
            .unwrap();
            assert_eq!(r.total.copied, keys.len() as u64, "{name} {shift}: {r:?}");
            for k in &keys {
                let (want, got) = (pexpiretime(&mut s, k).await, pexpiretime(&mut d, k).await);
                if want == -1 {
                    assert_eq!(got, -1, "{name} {shift}: {k} has no expiry on the source");
                } else {
                    // Half a read's round trip and a write's transit, on one machine.
                    assert!(
                        (want - 1_000..=want + 1_000).contains(&got),
                        "{name}, this machine's clock {shift} ms off: {k} expires at {got} on the target, {want} on \
                         the source ({} ms apart)",
                        got - want
                    );
                }
            }
        }
    }
}

/// `--mode types` reads small keys whole in one pipeline per batch and hands
/// any key bigger than one such read (8 KiB of a string, 128 elements) to
/// the chunked path; either way each key arrives identical with its TTL,
/// with both policies, and a conflict is counted where it is.
#[tokio::test(flavor = "multi_thread")]
async fn the_batched_type_path_hands_keys_past_one_read_to_the_chunked_path() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut keys = Vec::new();
    let mut p = redis::pipe();
    for (i, len) in [0usize, 1, 8191, 8192, 20_000].into_iter().enumerate() {
        let k = format!("str:{len}");
        p.cmd("SET").arg(&k).arg(vec![b'a' + i as u8; len]).ignore();
        keys.push(k);
    }
    for n in [1usize, 127, 128, 300] {
        let items: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
        let k = |t: &str| format!("{t}:{n}");
        p.cmd("RPUSH").arg(k("list")).arg(&items).ignore();
        p.cmd("SADD").arg(k("set")).arg(&items).ignore();
        let mut h = redis::cmd("HSET");
        h.arg(k("hash"));
        let mut z = redis::cmd("ZADD");
        z.arg(k("zset"));
        for (j, e) in items.iter().enumerate() {
            h.arg(e).arg(j);
            z.arg(if j == 0 { "-inf".to_string() } else { format!("{}.5", j) }).arg(e);
        }
        p.add_command(h).ignore().add_command(z).ignore();
        for t in ["list", "set", "hash", "zset"] {
            keys.push(k(t));
        }
    }
    // An intset, and every other key with a TTL.
    p.cmd("SADD").arg("intset").arg(&[1, 2, 3]).ignore();
    keys.push("intset".into());
    for k in keys.iter().step_by(2) {
        p.cmd("PEXPIRE").arg(k).arg(600_000).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    for policy in [OnConflict::Replace, OnConflict::Fail] {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        // Something old in the way of one string and one list, for `replace`.
        if policy == OnConflict::Replace {
            let _: () = d.set("str:1", "old").await.unwrap();
            let _: () = d.rpush("list:127", "old").await.unwrap();
        }
        let mut o = options(&src.url, &dst.url);
        o.mode = Mode::Types;
        o.on_conflict = policy;
        let r = copy_with(&o).await.unwrap();
        assert_eq!((r.total.copied, r.total.skipped_conflict), (keys.len() as u64, 0), "{policy:?}: {r:?}");
        assert_eq!(dbsize(&mut d).await, keys.len() as u64, "{policy:?}: no temporary key left");
        assert_identical(&mut s, &mut d, &keys).await;
    }
    // `skip` counts the two keys the target has, and keeps them.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
    let _: () = d.set("str:1", "old").await.unwrap();
    let _: () = d.rpush("list:127", "old").await.unwrap();
    let mut o = options(&src.url, &dst.url);
    o.mode = Mode::Types;
    o.on_conflict = OnConflict::Skip;
    let r = copy_with(&o).await.unwrap();
    assert_eq!((r.total.copied, r.total.skipped_conflict), (keys.len() as u64 - 2, 2), "{r:?}");
    assert_eq!(d.get::<_, String>("str:1").await.unwrap(), "old");
    assert_eq!(d.lrange::<_, Vec<String>>("list:127", 0, -1).await.unwrap(), ["old"]);
    let tmp: Vec<String> = d.keys("__cutover_tmp__*").await.unwrap();
    assert!(tmp.is_empty(), "no temporary key left after a conflict: {tmp:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_expiring_in_flight_are_skipped_and_counted_and_match_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    for mode in [Mode::Dump, Mode::Types] {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let mut p = redis::pipe();
        for i in 0..200 {
            p.cmd("SET").arg(format!("user:stay:{i}")).arg(i).ignore();
            p.cmd("SET").arg(format!("user:gone:{i}")).arg(i).arg("PX").arg(400).ignore();
            p.cmd("SET").arg(format!("other:{i}")).arg(i).ignore();
        }
        let _: () = p.query_async(&mut s).await.unwrap();
        let mut o = options(&src.url, &dst.url);
        o.mode = mode;
        o.pattern = Some("user:*".into());
        o.scan_count = 10_000;
        // The one SCAN batch waits until the `gone` keys have expired.
        let first = Arc::new(AtomicBool::new(true));
        o.after_scan = Some(Arc::new(move |keys: &mut Vec<Vec<u8>>| {
            if first.swap(false, Ordering::SeqCst) {
                assert_eq!(keys.len(), 400, "SCAN saw every user key, the expiring ones too");
                std::thread::sleep(Duration::from_millis(700));
            }
        }));
        let r = copy_with(&o).await.unwrap();
        assert_eq!((r.total.scanned, r.total.copied, r.total.skipped_expired), (400, 200, 200), "{mode:?}: {r:?}");
        assert_eq!(dbsize(&mut d).await, 200);
        let other: Vec<String> = d.keys("other:*").await.unwrap();
        assert!(other.is_empty(), "--match user:* copied nothing else");
        let stay: Vec<String> = d.keys("user:stay:*").await.unwrap();
        assert_eq!(stay.len(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_conflict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    for i in 0..500 {
        let _: () = s.set(format!("k{i}"), format!("src{i}")).await.unwrap();
    }
    let fields: Vec<(String, u32)> = (0..2000).map(|i| (format!("f{i}"), i)).collect();
    let _: () = s.hset_multiple("big", &fields).await.unwrap();
    let _: () = s.hset("big", "f", "src").await.unwrap();
    for mode in [Mode::Dump, Mode::Types] {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let _: () = d.set("k250", "target's own").await.unwrap();
        let _: () = d.set("big", "target's own").await.unwrap();
        let mut o = options(&src.url, &dst.url);
        o.mode = mode;
        // `big` goes the chunked path, so both paths meet a conflict.
        o.chunk_threshold = Some(10_000);

        o.on_conflict = OnConflict::Fail;
        let e = copy_with(&o).await.unwrap_err();
        assert!(matches!(e, CopyError::Refused(ref m) if m == "2 conflicts"), "{mode:?}: {e:?}");
        assert_eq!(dbsize(&mut d).await, 2, "fail wrote nothing");

        o.on_conflict = OnConflict::Skip;
        o.rate = Some(1000);
        let t = Instant::now();
        let r = copy_with(&o).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(400), "--rate 1000 paces 501 keys: {:?}", t.elapsed());
        o.rate = None;
        assert_eq!((r.total.copied, r.total.skipped_conflict), (499, 2), "{mode:?}: {r:?}");
        assert_eq!(d.get::<_, String>("k250").await.unwrap(), "target's own");
        assert_eq!(d.get::<_, String>("big").await.unwrap(), "target's own");
        assert_eq!(d.get::<_, String>("k251").await.unwrap(), "src251");

        o.on_conflict = OnConflict::Replace;
        let r = copy_with(&o).await.unwrap();
        assert_eq!(
            (r.total.copied, r.total.skipped_conflict, r.total.chunked),
            (501, 0, if mode == Mode::Dump { 1 } else { 501 }),
            "{mode:?}: {r:?}"
        );
        assert_eq!(d.get::<_, String>("k250").await.unwrap(), "src250");
        assert_eq!(d.hget::<_, _, String>("big", "f").await.unwrap(), "src");
        assert_eq!(dbsize(&mut d).await, 501);
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

fn audit_stages(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("cutover/redis.audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_gates_every_write_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "k", 20, None).await;
    let _: () = d.set("k:string:3", "target's own").await.unwrap();
    let (from, to) = (src.url.as_str(), dst.url.as_str());

    let (code, _, err) = run(&state, &["redis", "copy", "--from", from, "--to", to]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("needs --yes") && err.contains("nothing was written"), "{err}");

    let (code, _, err) = run(&state, &["--read-only", "redis", "copy", "--from", from, "--to", to, "--yes"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("refused: --read-only"), "{err}");

    let (code, out, err) = run(&state, &["redis", "copy", "--from", from, "--to", to, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("dry run: nothing was written. 120 keys match on the source; 1 already exist"), "{out}");
    assert_eq!(dbsize(&mut d).await, 1, "--dry-run wrote nothing");

    let (code, _, err) = run(&state, &["redis", "copy", "--from", from, "--to", to, "--yes"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refused: 1 of 120 keys already exist on the target (first: k:string:3)"), "{err}");
    assert_eq!(dbsize(&mut d).await, 1, "fail wrote nothing");

    let (code, out, err) =
        run(&state, &["redis", "copy", "--from", from, "--to", to, "--yes", "--on-conflict", "skip"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("copied 119 keys") && out.contains("1 existing"), "{out}");
    // Not a terminal: plain progress lines on stderr.
    assert!(err.contains("copied 119 keys of ~120 (1 skipped)") && err.contains("keys/s"), "{err}");
    assert_eq!(d.get::<_, String>("k:string:3").await.unwrap(), "target's own");

    let lines = audit_stages(&state);
    let stages: Vec<&str> = lines.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["refused", "intent", "applied"], "only the read-only refusal and the real copy are audited");
    assert_eq!(lines[1]["before"]["target_keys"], 1);
    assert_eq!(lines[2]["after"]["target_keys"], 120);
    assert_eq!(lines[2]["after"]["report"]["total"]["skipped_conflict"], 1);

    let (code, out, _) = run(&state, &["redis", "verify", "--from", from, "--to", to]);
    assert_eq!(code, Some(1), "the kept target key differs: {out}");
    assert!(out.contains("1 value mismatch") && out.contains("value differs: k:string:3"), "{out}");
}

/// How many times the server has run `command` (as INFO commandstats names
/// it: `dump`, `memory|usage`) since its stats were reset.
async fn calls(c: &mut MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(c).await.unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// `--no-size-check` sends the source no MEMORY USAGE: every key is DUMPed
/// whole, one over the chunk threshold too, and arrives identical. The
/// default asks every key's size and chunks that one. The flag is said on
/// stderr and in the audit, and does not go with --chunk-threshold.
#[tokio::test(flavor = "multi_thread")]
async fn no_size_check_dumps_every_key_whole_without_asking_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut keys = seed_all_types(&mut s, "k", 20, Some(600_000)).await;
    let _: () = s.set("big", "x".repeat(3 << 20)).await.unwrap();
    keys.push("big".into());
    let (from, to) = (src.url.as_str(), dst.url.as_str());
    let copy = |extra: &[&str]| {
        let mut args = vec!["redis", "copy", "--from", from, "--to", to, "--yes", "--json"];
        args.extend(extra);
        let (code, out, err) = run(&state, &args);
        assert_eq!(code, Some(0), "{err}");
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        (report, err)
    };

    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut s).await.unwrap();
    let (report, _) = copy(&["--chunk-threshold", "1048576"]);
    assert_eq!((report["total"]["copied"].as_u64(), report["total"]["chunked"].as_u64()), (Some(121), Some(1)));
    assert!(calls(&mut s, "memory|usage").await >= 121, "the default asks each key's size");
    assert_identical(&mut s, &mut d, &keys).await;

    let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut s).await.unwrap();
    let (report, err) = copy(&["--no-size-check"]);
    assert_eq!((report["total"]["copied"].as_u64(), report["total"]["chunked"].as_u64()), (Some(121), Some(0)));
    assert_eq!(calls(&mut s, "memory|usage").await, 0, "no size asked");
    assert_identical(&mut s, &mut d, &keys).await;
    assert!(err.contains("no size check: every key DUMPed whole"), "{err}");
    let intents: Vec<serde_json::Value> = audit_stages(&state).into_iter().filter(|l| l["stage"] == "intent").collect();
    let thresholds: Vec<&serde_json::Value> = intents.iter().map(|l| &l["after"]["chunk_threshold"]).collect();
    assert_eq!(thresholds, [&serde_json::json!(1048576), &serde_json::Value::Null], "{intents:?}");

    let (code, _, err) = run(
        &state,
        &["redis", "copy", "--from", from, "--to", to, "--yes", "--no-size-check", "--chunk-threshold", "5"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--no-size-check") && err.contains("--chunk-threshold"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let _: () = s.set("a", 1).await.unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("hunter2-secret").query_async(&mut d).await.unwrap();
    let auth_to = dst.url.replace("redis://", "redis://:hunter2-secret@");
    let wrong_to = dst.url.replace("redis://", "redis://:wrong-guess@");
    let dead = format!("redis://127.0.0.1:{}/0", cutover::sandbox::process::free_port().unwrap());
    let from = src.url.as_str();
    // The same database written another way: without the /0.
    let same_db = from.strip_suffix("/0").expect("the test server's URL names db 0").to_string();
    let by_name = from.replace("127.0.0.1", "localhost");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["copy", "--from", "http://x:1", "--to", &auth_to, "--yes"],
            "scheme must be redis, rediss, redis+sentinel or redis+cluster",
        ),
        (vec!["copy", "--from", from, "--to", &dead, "--yes"], "cannot reach the target"),
        (vec!["copy", "--from", from, "--to", &wrong_to, "--yes"], "wrong password"),
        (vec!["copy", "--from", from, "--to", &dst.url, "--yes"], "needs a password"),
        (vec!["copy", "--from", from, "--to", &auth_to, "--yes", "--match", "a[b"], "unclosed '['"),
        (vec!["copy", "--from", from, "--to", &auth_to, "--yes", "--resume"], "no interrupted copy"),
        (vec!["copy", "--from", from, "--to", &auth_to, "--yes", "--rate", "0"], "--rate must be at least 1"),
        (vec!["copy", "--from", from, "--to", from, "--yes"], "are the same Redis"),
        (vec!["copy", "--from", from, "--to", &same_db, "--yes"], "are the same Redis"),
        // The same server by another name: told by its run_id.
        (vec!["copy", "--from", from, "--to", &by_name, "--yes", "--on-conflict", "replace"], "are one Redis server"),
        (
            vec!["copy", "--from", from, "--to", &auth_to, "--yes", "--to-password-env", "NOT_SET_ANYWHERE"],
            "NOT_SET_ANYWHERE is not set",
        ),
        (vec!["verify", "--from", from, "--to", &wrong_to, "--sample", "5"], "wrong password"),
        (vec!["verify", "--from", from, "--to", &auth_to, "--sample", "0"], "--sample must be at least 1"),
        (
            vec!["verify", "--from", from, "--to", &auth_to, "--chunk-threshold", "0"],
            "--chunk-threshold must be at least 1",
        ),
    ];
    let n_cases = cases.len();
    for (args, want) in cases {
        let mut full = vec!["redis"];
        full.extend(&args);
        let (code, out, err) = run(&state, &full);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(!format!("{out}{err}").contains("hunter2") && !err.contains("wrong-guess"), "{args:?}: {err}");
    }
    // Clap refuses contradictory flags itself.
    let (code, _, _) = run(&state, &["redis", "copy", "--from", from, "--to", &auth_to, "--resume", "--restart"]);
    assert_eq!(code, Some(2));
    let mut d = conn(&auth_to).await;
    assert_eq!(dbsize(&mut d).await, 0, "nothing was written");
    let log = std::fs::read_to_string(state.join("log")).unwrap();
    assert!(log.contains("cutover starting") && !log.contains("hunter2"), "the log never holds the password");
    common::record(
        "bad-input",
        format!(
            "`redis copy` and `redis verify` given {n} bad inputs (wrong or missing password, unreachable or same \
             server, bad scheme, pattern, rate, sample, chunk threshold, env var, nothing to resume): each one line on stderr naming \
             the fix, exit 2, no password shown, and the target still empty",
            n = n_cases
        ),
    );
}

fn checkpoint_copied(state: &Path) -> Option<u64> {
    checkpoint_json(state)?["counters"]["copied"].as_u64()
}

/// `cutover` with `args` and `--rate rate`, once its checkpoint counts
/// `at_least` keys copied (and it still runs).
fn copy_until_checkpointed(state: &Path, args: &[&str], rate: &str, at_least: u64) -> KillOnDrop {
    let mut child = KillOnDrop(Some(cutover(state, &[args, &["--rate", rate]].concat()).spawn().unwrap()));
    let start = Instant::now();
    while checkpoint_copied(state).unwrap_or(0) < at_least {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The copy's checkpoint, if there is one.
fn checkpoint_json(state: &Path) -> Option<serde_json::Value> {
    let dir = state.join("cutover/redis-copy");
    let f = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
    serde_json::from_slice(&std::fs::read(f.path()).ok()?).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_copy_resumes_without_copying_everything_again() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    // Every type, half of the keys with a TTL.
    seed_all_types(&mut s, "plain", (N / 12) as usize, None).await;
    seed_all_types(&mut s, "ttl", (N / 12) as usize, Some(600_000)).await;
    let mut p = redis::pipe();
    for i in 0..N % 12 {
        p.cmd("SET").arg(format!("extra:{i}")).arg(i).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    assert_eq!(dbsize(&mut s).await, N);
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--scan-count", "100"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "4000"]].concat()).spawn().unwrap()));
    // Killed once a checkpoint holds at least a quarter of the keys.
    let start = Instant::now();
    while checkpoint_copied(&state).unwrap_or(0) < N / 4 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = child.take();
    c.kill().unwrap();
    c.wait().unwrap();
    let done_before_kill = dbsize(&mut d).await;
    assert!((N / 4..N).contains(&done_before_kill), "killed mid-way: {done_before_kill}");
    let checkpointed = checkpoint_copied(&state).unwrap();

    // Without --resume the checkpoint is not silently thrown away.
    let (code, _, err) = run(&state, &args);
    assert_eq!(code, Some(2));
    assert!(err.contains("continue it with --resume, or start over with --restart"), "{err}");

    let (code, out, err) = run(&state, &[&args[..], &["--resume", "--json"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("resuming at SCAN cursor"), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let this_run = report["run"]["copied"].as_u64().unwrap();
    assert_eq!(
        report["total"]["copied"].as_u64().unwrap(),
        checkpointed + this_run,
        "counters carry on from the checkpoint"
    );
    let copied_twice = done_before_kill + this_run - N;
    assert!(copied_twice < done_before_kill, "copied twice {copied_twice} < done before the kill {done_before_kill}");
    assert!(this_run < N, "the resumed run did not start over: {this_run}");
    assert_eq!(dbsize(&mut d).await, N);
    assert_eq!(checkpoint_copied(&state), None, "a finished copy removes its checkpoint");

    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch, 0 TTL mismatch"
        )),
        "{out}"
    );
    let stages: Vec<String> = audit_stages(&state).iter().map(|l| l["stage"].as_str().unwrap().to_string()).collect();
    assert_eq!(stages, ["intent", "intent", "applied"], "the killed run left its intent, the resumed one both lines");
}

/// `n` keys of every type (expiring in 10 minutes) on `s`, copied from
/// `src` to `dst` by a copy killed after its last checkpoint and before
/// removing it (`CUTOVER_CRASH_AT`); the copy's arguments.
async fn copied_and_killed_before_removing_the_checkpoint(
    state: &Path,
    src: &Srv,
    dst: &Srv,
    s: &mut MultiplexedConnection,
    n: u64,
) -> Vec<String> {
    use std::os::unix::process::ExitStatusExt;
    seed_all_types(s, "k", (n / 6) as usize, Some(600_000)).await;
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--scan-count", "100"];
    let out = cutover(state, &args).env("CUTOVER_CRASH_AT", "copy:before-checkpoint-removed").output().unwrap();
    assert_eq!(out.status.signal(), Some(9), "killed at the crash point: {}", String::from_utf8_lossy(&out.stderr));
    args.iter().map(|a| a.to_string()).collect()
}

/// Fault injection, made certain (`CUTOVER_CRASH_AT`): killed after its
/// last checkpoint and before removing it, a finished copy leaves that
/// checkpoint marked as scanned to the end, and `--resume` reads nothing
/// from the source and reports the counts as saved.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_killed_before_removing_its_last_checkpoint_resumes_with_nothing_left_to_copy() {
    const N: u64 = 2_400;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let args = copied_and_killed_before_removing_the_checkpoint(&state, &src, &dst, &mut s, N).await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(dbsize(&mut d).await, N, "every key written before the kill");
    let cp = checkpoint_json(&state).expect("the last checkpoint is left");
    assert_eq!((&cp["done"], cp["counters"]["copied"].as_u64()), (&true.into(), Some(N)), "{cp}");

    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut s).await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut d).await.unwrap();
    let (code, out, err) = run(&state, &[&args[..], &["--resume", "--json"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains(&format!("the interrupted copy had scanned the whole source ({N} keys copied)")), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((report["total"]["copied"].as_u64(), report["run"]["copied"].as_u64()), (Some(N), Some(0)), "{report}");
    for cmd in ["scan", "dump"] {
        assert_eq!(calls(&mut s, cmd).await, 0, "the resume ran no {cmd} on the source");
    }
    assert_eq!(calls(&mut d, "restore").await, 0, "nor any RESTORE on the target");
    assert_eq!(checkpoint_json(&state), None, "then the checkpoint is removed");
    common::record(
        "sigkill",
        format!(
            "`redis copy` of {N} keys SIGKILLed (`CUTOVER_CRASH_AT`) after its last checkpoint and before removing \
             it: the checkpoint was left marked as scanned to the end, and `--resume` exited 0 with the counts as \
             saved ({N} copied), ran no SCAN or DUMP on the source and no RESTORE on the target, then removed it"
        ),
    );
}

/// A copy reads its URL's database alone. Keys in another database are
/// said; none in its own beside some elsewhere (the wrong database named)
/// is refused, where a copy of nothing would have ended "copied 0 keys".
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_says_what_other_databases_hold_and_refuses_an_empty_one_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    assert!(src.url.ends_with("/0"), "{}", src.url);
    let mut db1 = conn(&format!("{}1", src.url.trim_end_matches('0'))).await;
    for i in 0..3 {
        let _: () = redis::cmd("SET").arg(format!("session:{i}")).arg("x").query_async(&mut db1).await.unwrap();
    }
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes"];
    let (code, out, err) = run(&state, &args);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("the source's database 0 holds no key, but db 1 holds 3 keys"), "{err}");
    assert_eq!(dbsize(&mut d).await, 0);
    let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut s).await.unwrap();
    let (code, out, err) = run(&state, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("only the source's database 0 is copied; db 1 holds 3 keys"), "{err}");
    assert_eq!(dbsize(&mut d).await, 1);
}

/// `n` keys of 1 KiB expiring in an hour on `s`, and `d` made to evict
/// them (`volatile-lru`, as ElastiCache's default) beyond `maxmemory`.
async fn kilobyte_keys_and_an_evicting_target(
    s: &mut MultiplexedConnection,
    d: &mut MultiplexedConnection,
    n: usize,
    maxmemory: &str,
) {
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("SET").arg(format!("k{i}")).arg(vec![b'x'; 1024]).arg("EX").arg(3600).ignore();
    }
    let _: () = p.query_async(s).await.unwrap();
    for (k, v) in [("maxmemory-policy", "volatile-lru"), ("maxmemory", maxmemory)] {
        let _: () = redis::cmd("CONFIG").arg("SET").arg(k).arg(v).query_async(d).await.unwrap();
    }
}

/// A target too small for the copy (maxmemory with an evicting policy, as
/// ElastiCache's default volatile-lru) drops keys after answering OK to
/// their writes: the copy fails saying so, never "copied", and its
/// checkpoint starts over for when the target has room.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_into_a_target_that_evicts_keys_fails_saying_so() {
    const N: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    kilobyte_keys_and_an_evicting_target(&mut s, &mut d, N, "2mb").await;
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes"];
    let (code, out, err) = run(&state, &args);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("the target evicted ") && err.contains(" keys during the copy"), "{err}");
    assert!((dbsize(&mut d).await as usize) < N, "the target did evict");
    assert_eq!(checkpoint_copied(&state), Some(0), "its checkpoint starts over");
    // Given room, the resume it names completes: the failed run's
    // evictions are not counted again.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query_async(&mut d).await.unwrap();
    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(dbsize(&mut d).await as usize, N);
}

/// Keys evicted during a run that was killed are seen when its resume ends:
/// the count is kept from the first run in the checkpoint (read afresh at
/// the resume, the target given room by then, the resume ended "copied").
#[tokio::test(flavor = "multi_thread")]
async fn keys_evicted_before_a_kill_fail_the_resumed_copy() {
    const N: usize = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    kilobyte_keys_and_an_evicting_target(&mut s, &mut d, N, "3mb").await;
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes"];
    let mut child = copy_until_checkpointed(&state, &args, "3000", 4_500);
    child.take().kill().unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut d).await.unwrap();
    assert!(!info.contains("evicted_keys:0\r"), "the first run evicted: {info}");
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query_async(&mut d).await.unwrap();
    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("the target evicted ") && err.contains(" keys during the copy"), "{err}");
}

/// What happened to a target between a copy that finished (killed before
/// it removed its checkpoint) and its `--resume`.
enum TargetSince {
    /// FLUSHALL, which leaves its run_id as it was.
    Emptied,
    /// Made a replica of another server (one key there), then promoted
    /// again: the same run_id, the other's data in place of its own.
    FailedOverAndBack,
}

/// A copy of `N` keys that finished but kept its checkpoint, then `since`
/// done to its target, then `--resume --json`: the resume must not call the
/// copy done. It scans again and writes every key (the target then holds
/// them and `others`), and says `why`.
async fn a_resume_onto_a_target(since: TargetSince, why: &str, others: u64) {
    const N: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let args = copied_and_killed_before_removing_the_checkpoint(&state, &src, &dst, &mut s, N).await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(checkpoint_json(&state).map(|c| c["done"].clone()), Some(true.into()));
    assert_eq!(dbsize(&mut d).await, N);
    let _other;
    match since {
        TargetSince::Emptied => {
            let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        }
        TargetSince::FailedOverAndBack => {
            let run_id =
                |info: String| info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap().trim().to_string();
            let before = run_id(redis::cmd("INFO").arg("server").query_async(&mut d).await.unwrap());
            _other = server(dir.path(), "other").await;
            let mut o = conn(&_other.url).await;
            let _: () = o.set("unrelated", "x").await.unwrap();
            let port = _other.url.trim_start_matches("redis://127.0.0.1:").trim_end_matches("/0");
            let _: () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(port).query_async(&mut d).await.unwrap();
            let start = Instant::now();
            while dbsize(&mut d).await != 1 {
                assert!(start.elapsed() < Duration::from_secs(20), "the target never synced from the other server");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _: () = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async(&mut d).await.unwrap();
            assert_eq!(run_id(redis::cmd("INFO").arg("server").query_async(&mut d).await.unwrap()), before);
        }
    }

    let (code, out, err) = run(&state, &[&args[..], &["--resume", "--json"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["run"]["copied"].as_u64(), Some(N), "{report}");
    assert_eq!(dbsize(&mut d).await, N + others, "every key written again");
    assert!(err.contains(&why.replace("{N}", &N.to_string())), "{err}");
}

/// Emptied since (FLUSHALL leaves its run_id as it was): `--resume` must not
/// call the copy done with nothing on the target.
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_onto_a_target_emptied_since_its_checkpoint_copies_every_key_again() {
    a_resume_onto_a_target(
        TargetSince::Emptied,
        "the target holds no key, though the checkpoint had copied {N} to it",
        0,
    )
    .await;
}

/// A target that failed over and back keeps its run_id: demoted, it took
/// its new master's data in place of its own (a full sync), then was
/// promoted again. The copy's writes before the checkpoint are gone, though
/// the server is the same one and not empty. Its replication ID tells (a
/// promotion gives a new one, keeping the one it followed as its second),
/// so the scan starts over. Before, the resume called the copy done with
/// the keys missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_onto_a_target_that_failed_over_and_back_copies_every_key_again() {
    a_resume_onto_a_target(
        TargetSince::FailedOverAndBack,
        "the target was a replica since the checkpoint (its replication ID ",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_50_mb_string_and_a_hash_of_a_million_fields_copy_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut p = redis::pipe();
    for i in 0..50u8 {
        let mut c = chunk.clone();
        c[0] = i;
        p.cmd("APPEND").arg("big:string").arg(c).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    let mut p = redis::pipe();
    for block in 0..100 {
        let mut c = redis::cmd("HSET");
        c.arg("big:hash");
        for i in block * 10_000..(block + 1) * 10_000 {
            c.arg(format!("field:{i}")).arg(i);
        }
        p.add_command(c).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    let _: () = s.pexpire("big:hash", 600_000).await.unwrap();
    let _: () = s.set("small", "x").await.unwrap();
    // 20 keys of 1 MB: under the threshold, DUMPed in several groups of one batch.
    let mids: Vec<String> = (0..20).map(|i| format!("mid:{i}")).collect();
    for (i, k) in mids.iter().enumerate() {
        let mut c = chunk.clone();
        c[7] = i as u8;
        let _: () = s.set(k, c).await.unwrap();
    }
    let r = copy_with(&options(&src.url, &dst.url)).await.unwrap();
    assert_eq!((r.total.copied, r.total.chunked), (23, 2), "{r:?}");
    assert_identical(&mut s, &mut d, &mids).await;
    assert_eq!(d.strlen::<_, u64>("big:string").await.unwrap(), 50 << 20);
    assert_eq!(d.hlen::<_, u64>("big:hash").await.unwrap(), 1_000_000);
    let (ts, td) = (pexpiretime(&mut s, "big:hash").await, pexpiretime(&mut d, "big:hash").await);
    assert!(ts > 0 && td == ts, "expiry kept: at {ts} on the source, {td} on the target");
    let vo = verify_options(&src.url, &dst.url);
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut s).await.unwrap();
    let v = verify::verify(&vo, conn(&src.url).await, conn(&dst.url).await).await.unwrap();
    assert!(v.ok() && v.checked == 23 && v.compared_in_chunks == 2, "{v:?}");
    assert_eq!(calls(&mut s, "dump").await, 21, "verify DUMPed the two big keys");
}

/// `redis verify` reads a key over `--chunk-threshold` on either side in
/// chunks, as the copy does, and never DUMPs it: one of each type, equal,
/// then each with one element changed deep inside (lengths kept).
#[tokio::test(flavor = "multi_thread")]
async fn verify_compares_big_keys_in_chunks_and_finds_one_element_changed_in_each() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut p = redis::pipe();
    p.cmd("SET").arg("big:string").arg("s".repeat(3 << 20)).ignore();
    for block in 0..5 {
        let members: Vec<String> = (block * 1000..(block + 1) * 1000).map(|i| format!("member:{i}")).collect();
        p.cmd("RPUSH").arg("big:list").arg(&members).ignore();
        p.cmd("SADD").arg("big:set").arg(&members).ignore();
        for (i, m) in members.iter().enumerate() {
            p.cmd("HSET").arg("big:hash").arg(m).arg(i).ignore();
            p.cmd("ZADD")
                .arg("big:zset")
                .arg(if i == 7 { "+inf".to_string() } else { format!("{i}.25") })
                .arg(m)
                .ignore();
        }
    }
    for i in 0..3000 {
        p.cmd("XADD").arg("big:stream").arg(format!("{}-1", i + 1)).arg("f").arg(i).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    let mut smalls = seed_all_types(&mut s, "small", 3, Some(600_000)).await;
    let bigs = ["big:string", "big:list", "big:set", "big:hash", "big:zset", "big:stream"];
    smalls.extend(bigs.map(String::from));
    let mut o = options(&src.url, &dst.url);
    o.chunk_threshold = Some(16 << 10);
    copy_with(&o).await.unwrap();
    assert_identical(&mut s, &mut d, &smalls).await;
    let vo = VerifyOptions { chunk_threshold: 16 << 10, ..verify_options(&src.url, &dst.url) };
    let from = src.url.clone();
    let verify = |vo: VerifyOptions, to: String| {
        let from = from.clone();
        async move { verify::verify(&vo, conn(&from).await, conn(&to).await).await.unwrap() }
    };
    for c in [&mut s, &mut d] {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(c).await.unwrap();
    }
    let v = verify(vo.clone(), dst.url.clone()).await;
    assert!(v.ok() && v.checked == 24 && v.compared_in_chunks == 6, "{v:?}");
    assert_eq!((calls(&mut s, "dump").await, calls(&mut d, "dump").await), (18, 18), "only the small keys were DUMPed");
    // A target that refuses MEMORY USAGE tells no size: the source's still
    // decide, and the small keys are DUMPed.
    let no_memory = acl_user(&mut d, &dst.url, "nomemory", &["-memory"]).await;
    let v = verify(VerifyOptions { to: ep("target", &no_memory), ..vo.clone() }, no_memory.clone()).await;
    assert!(v.ok() && v.checked == 24 && v.compared_in_chunks == 6, "{v:?}");

    let mut p = redis::pipe();
    p.cmd("SETRANGE").arg("big:string").arg(2_500_000).arg("S").ignore();
    p.cmd("LSET").arg("big:list").arg(4321).arg("changed").ignore();
    p.cmd("SREM").arg("big:set").arg("member:4321").ignore();
    p.cmd("SADD").arg("big:set").arg("member:other").ignore();
    p.cmd("HSET").arg("big:hash").arg("member:4321").arg("changed").ignore();
    p.cmd("ZADD").arg("big:zset").arg(-1).arg("member:4321").ignore();
    p.cmd("XDEL").arg("big:stream").arg("2500-1").ignore();
    p.cmd("XADD").arg("big:stream").arg("5000-1").arg("f").arg("new").ignore();
    // Big on the target only: sized there, never DUMPed.
    let members: Vec<String> = (0..3000).map(|i| format!("member:{i}")).collect();
    p.cmd("SADD").arg("small:set:0").arg(&members).ignore();
    let _: () = p.query_async(&mut d).await.unwrap();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut d).await.unwrap();
    let v = verify(vo.clone(), dst.url.clone()).await;
    assert_eq!((v.value_mismatch, v.compared_in_chunks), (7, 7), "{v:?}");
    assert_eq!(calls(&mut d, "dump").await, 17, "the target DUMPed a big key");
    let named: Vec<String> = v.first.iter().map(|d| d.to_string()).collect();
    for k in bigs.into_iter().chain(["small:set:0"]) {
        assert!(named.contains(&format!("value differs: {k}")), "{k}: {named:?}");
    }
}

/// MEMORY USAGE extrapolates a collection from a few elements (5 by
/// default), so one big element among many small ones can go unseen. Each
/// collection here holds 3,000 small elements and one of 2 MB (the list's
/// last, in a node of its own): every one is over the 1 MB threshold and
/// copied in chunks, never DUMPed whole. A set of 3,000 small members (over
/// 8 KB, under the threshold) and a small string are DUMPed as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_big_element_among_many_small_ones_is_measured_and_its_key_copied_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    // One element a node: the list's big element is its 3,001st node.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("list-max-listpack-size").arg(1).query_async(&mut s).await.unwrap();
    let big = "b".repeat(2 << 20);
    let mut p = redis::pipe();
    for block in 0..3 {
        let members: Vec<String> = (block * 1000..(block + 1) * 1000).map(|i| format!("member:{i}")).collect();
        p.cmd("RPUSH").arg("outlier:list").arg(&members).ignore();
        p.cmd("SADD").arg("outlier:set").arg(&members).ignore();
        p.cmd("SADD").arg("mid:set").arg(&members).ignore();
        for m in &members {
            p.cmd("HSET").arg("outlier:hash").arg(m).arg(1).ignore();
            p.cmd("ZADD").arg("outlier:zset").arg(1).arg(m).ignore();
        }
    }
    p.cmd("RPUSH").arg("outlier:list").arg(&big).ignore();
    p.cmd("SADD").arg("outlier:set").arg(&big).ignore();
    p.cmd("HSET").arg("outlier:hash").arg("big").arg(&big).ignore();
    p.cmd("ZADD").arg("outlier:zset").arg(2).arg(&big).ignore();
    p.cmd("SET").arg("small").arg("x").ignore();
    let _: () = p.query_async(&mut s).await.unwrap();
    let keys: Vec<String> =
        ["outlier:list", "outlier:set", "outlier:hash", "outlier:zset", "mid:set", "small"].map(String::from).into();
    let mut o = options(&src.url, &dst.url);
    o.chunk_threshold = Some(1 << 20);
    let r = copy_with(&o).await.unwrap();
    assert_eq!((r.total.copied, r.total.chunked), (6, 4), "{r:?}");
    assert_identical(&mut s, &mut d, &keys).await;
}

/// Source keys under cutover's temporary names (half-built by a copy into
/// that server, running or killed) are never copied, in either mode: in
/// `replace`, one could overwrite the key a rebuild builds under that name,
/// and the rename would put it in place of the real key. The report counts
/// them and says how to list them.
#[tokio::test(flavor = "multi_thread")]
async fn keys_under_temporary_names_on_the_source_are_counted_and_never_copied() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut keys = seed_all_types(&mut s, "k", 20, Some(600_000)).await;
    let elements: Vec<String> = (0..20_000).map(|i| format!("element:{i}")).collect();
    let _: () = s.rpush("big:list", &elements).await.unwrap();
    keys.push("big:list".into());
    let temporary = ["__cutover_tmp__:big:list", "__cutover_tmp__b:k:list:3"];
    for t in temporary {
        let _: () = s.set(t, "half-built").await.unwrap();
    }
    for mode in ["dump", "types"] {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let args = [
            "redis",
            "copy",
            "--from",
            &src.url,
            "--to",
            &dst.url,
            "--yes",
            "--on-conflict",
            "replace",
            "--mode",
            mode,
            "--chunk-threshold",
            "65536",
            "--scan-count",
            "10",
        ];
        let (code, out, err) = run(&state, &args);
        assert_eq!(code, Some(0), "{mode}: {err}");
        assert!(
            out.contains("2 keys under cutover's temporary names (__cutover_tmp__…) on the source were not copied")
                && out.contains("redis-cli --scan --pattern '__cutover_tmp__*'"),
            "{mode}: {out}"
        );
        assert!(out.contains(&format!("copied {} keys", keys.len())), "{mode}: {out}");
        assert_identical(&mut s, &mut d, &keys).await;
        assert_eq!(dbsize(&mut d).await, keys.len() as u64, "{mode}: no temporary key on the target");
    }
    // With one on the target too (a leftover there), the `fail` pre-check
    // finds no conflict in it: the copy never writes that name from the source.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
    let _: () = d.set(temporary[1], "left on the target").await.unwrap();
    let (code, out, err) = run(
        &state,
        &["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--chunk-threshold", "65536", "--restart"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("2 keys under cutover's temporary names"), "{out}");
    assert_identical(&mut s, &mut d, &keys).await;
}

/// A key only the target has: a session revoked (deleted) on the source
/// since an earlier copy, alive again once traffic moves. With an expiry
/// it escapes the counts (only keys without one are counted), so a full
/// verify walks the target too; one about to expire is its source's copy
/// expiring while read. A sample says it did not look.
#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_key_only_the_target_has_even_with_an_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "k", 10, Some(300_000)).await;
    copy_with(&options(&src.url, &dst.url)).await.unwrap();
    let _: () = d.set_ex("session:revoked", "alice", 3600).await.unwrap();
    let _: () = d.pset_ex("session:expiring", "bob", 500).await.unwrap();
    let v =
        verify::verify(&verify_options(&src.url, &dst.url), conn(&src.url).await, conn(&dst.url).await).await.unwrap();
    assert!(v.counts_match(), "no key without an expiry differs: {v:?}");
    assert_eq!(v.extra, 1, "{v:?}");
    assert_eq!(v.first, vec![Difference::Extra { key: "session:revoked".into() }]);
    assert!(!v.ok());
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("1 on target only") && out.contains("on target only: session:revoked"), "{out}");
    assert!(out.contains("DIFFERENT"), "{out}");
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--sample", "5"]);
    assert_eq!(code, Some(0), "the sample finds nothing wrong in the keys it read: {out}");
    assert!(out.contains("(a sample of 5, repeats possible; keys only the target has were not looked for"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_missing_key_a_wrong_value_a_wrong_type_and_a_wrong_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "k", 10, Some(300_000)).await;
    seed_all_types(&mut s, "p", 10, None).await;
    copy_with(&options(&src.url, &dst.url)).await.unwrap();
    let vo = VerifyOptions { scan_count: 50, ..verify_options(&src.url, &dst.url) };
    let paced = VerifyOptions { rate: Some(200), ..vo };
    let t = Instant::now();
    let v = verify::verify(&paced, conn(&src.url).await, conn(&dst.url).await).await.unwrap();
    assert!(v.ok() && v.checked == 120, "a fresh copy verifies: {v:?}");
    assert!(t.elapsed() >= Duration::from_millis(450), "--rate 200 paces 120 keys: {:?}", t.elapsed());
    let vo = VerifyOptions { rate: None, ..paced };

    let _: () = d.del("p:hash:1").await.unwrap();
    let _: () = d.hset("k:hash:2", "a", "tampered").await.unwrap();
    let _: () = d.del("p:set:3").await.unwrap();
    let _: () = d.rpush("p:set:3", "now a list").await.unwrap();
    let _: () = d.pexpire("k:zset:4", 100_000).await.unwrap();
    let v = verify::verify(&vo, conn(&src.url).await, conn(&dst.url).await).await.unwrap();
    assert_eq!((v.missing, v.value_mismatch, v.type_mismatch, v.ttl_mismatch), (1, 1, 1, 1), "{v:?}");
    assert!(!v.counts_match(), "one key fewer without expiry");
    assert!(v.first.contains(&Difference::Missing { key: "p:hash:1".into() }), "{v:?}");
    assert!(v.first.contains(&Difference::Value { key: "k:hash:2".into() }));
    assert!(v.first.contains(&Difference::Type { key: "p:set:3".into(), source: "set".into(), target: "list".into() }));
    assert!(v.first.iter().any(|x| matches!(x, Difference::Ttl { key, .. } if key == "k:zset:4")));

    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--sample", "5000"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("missing on target: p:hash:1") && out.contains("DIFFERENT"), "{out}");
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--json"]);
    assert_eq!(code, Some(1));
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (j["missing"].as_u64(), j["type_mismatch"].as_u64(), j["checked"].as_u64()),
        (Some(1), Some(1), Some(120))
    );
    assert_eq!(j["first"][0]["kind"].as_str().map(|k| ["missing", "type", "value", "ttl"].contains(&k)), Some(true));
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--match", "k:list:*"]);
    assert_eq!(code, Some(0), "keys matching k:list:* are all equal: {out}");
    assert!(out.contains("checked 10 keys"), "{out}");
}

/// Verify compares two copies of the data, or says it cannot: one server
/// under two names, a replica of the source, or no key at all to compare
/// never ends "OK".
#[tokio::test(flavor = "multi_thread")]
async fn verify_refuses_one_server_under_two_names_or_a_replica_and_never_calls_nothing_compared_ok() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, _d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "k", 5, None).await;
    // The source again, by another name.
    let alias = src.url.replace("127.0.0.1", "localhost");
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &alias]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("refused: the source and the target are one Redis server"), "{out}{err}");
    // A replica of the source.
    let replica = server(dir.path(), "replica").await;
    let mut r = conn(&replica.url).await;
    let port = src.url.trim_start_matches("redis://127.0.0.1:").trim_end_matches("/0");
    let _: () = redis::cmd("REPLICAOF").arg("127.0.0.1").arg(port).query_async(&mut r).await.unwrap();
    eventually_synced(&mut r, 30).await;
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &replica.url]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("one replication group"), "{out}{err}");
    // The key_counts_match check says so too: the counts match by
    // replication, with no copy (a reader endpoint given as the target).
    let (outcome, detail) = key_counts_check(&src.url, &replica.url).await;
    assert_eq!(outcome, cutover::status::CheckOutcome::Fail, "{detail}");
    assert!(detail.starts_with("staging-cache replicates prod-cache (one replication group, id "), "{detail}");
    // Promoted, it has a replication id of its own: its keys are a copy.
    let _: () = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async(&mut r).await.unwrap();
    let (outcome, detail) = key_counts_check(&src.url, &replica.url).await;
    assert_eq!(outcome, cutover::status::CheckOutcome::Pass, "promoted: {detail}");
    // Two servers, nothing matching: nothing compared is no "OK".
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--match", "nope:*"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("NOTHING COMPARED: the source gave no key matching nope:* to compare"), "{out}");
    assert!(!out.lines().any(|l| l == "OK"), "{out}");
}

/// The demo runbook's `key_counts_match` check (prod-cache to
/// staging-cache, tolerance 5) on one reading of each URL.
async fn key_counts_check(from: &str, to: &str) -> (cutover::status::CheckOutcome, String) {
    use cutover::live::{LiveEvent, LiveState, Update};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let rb = cutover::runbook::load(&path).unwrap();
    let mut live = LiveState::default();
    let at = std::time::SystemTime::now();
    for (name, url) in [("prod-cache", from), ("staging-cache", to)] {
        let result = cutover::live::fetch::redis_info(&Endpoint::parse("Redis", url, None, None).unwrap()).await;
        cutover::live::update(&mut live, LiveEvent { at, update: Update::Redis { endpoint: name.into(), result } });
    }
    let snap = cutover::status::snapshot(&rb, &live, "eu-west-1", at);
    let c = snap.checks.iter().find(|c| c.item == "key-counts").unwrap();
    (c.outcome, c.detail.clone())
}

/// Waits until the replica holds `keys` keys.
async fn eventually_synced(r: &mut MultiplexedConnection, keys: u64) {
    let start = Instant::now();
    while dbsize(r).await < keys {
        assert!(start.elapsed() < Duration::from_secs(20), "the replica never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A big key rebuilt in chunks is looked at again on the source once read:
/// deleted meanwhile (or evicted), no part of it is put in place and it
/// counts as expired (a list, and a stream, whose XINFO then answers "no
/// such key"); given an expiry meanwhile, the target's key has it.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_deleted_or_given_an_expiry_on_the_source_while_it_is_rebuilt_in_chunks_ends_as_the_source_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    for key in ["big:deleted", "big:expiring"] {
        for block in 0..100 {
            let items: Vec<String> = (block * 10_000..(block + 1) * 10_000).map(|i| format!("element:{i}")).collect();
            let _: () = s.rpush(key, &items).await.unwrap();
        }
    }
    for block in 0..20 {
        let mut p = redis::pipe();
        for i in block * 10_000..(block + 1) * 10_000 {
            p.cmd("XADD").arg("big:stream").arg(format!("{}-1", i + 1)).arg("f").arg(i).ignore();
        }
        let _: () = p.query_async(&mut s).await.unwrap();
    }
    for (key, change) in [("big:deleted", "DEL"), ("big:stream", "DEL"), ("big:expiring", "PEXPIRE")] {
        let mut o = options(&src.url, &dst.url);
        o.pattern = Some(key.into());
        o.chunk_threshold = Some(16 << 10);
        let copy = tokio::spawn(async move { copy_with(&o).await });
        // Once the rebuild's first chunk is on the target, the source's key changes.
        let tmp = format!("__cutover_tmp__:{key}");
        let start = Instant::now();
        while !d.exists::<_, bool>(&tmp).await.unwrap() {
            assert!(!copy.is_finished() && start.elapsed() < Duration::from_secs(30), "{key}: the rebuild never began");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut cmd = redis::cmd(change);
        cmd.arg(key);
        if change == "PEXPIRE" {
            cmd.arg(600_000);
        }
        let _: () = cmd.query_async(&mut s).await.unwrap();
        let r = copy.await.unwrap().unwrap();
        assert!(!d.exists::<_, bool>(&tmp).await.unwrap(), "{key}: no temporary key left");
        if change == "DEL" {
            assert_eq!((r.total.copied, r.total.skipped_expired), (0, 1), "{key}: {r:?}");
            assert!(!d.exists::<_, bool>(key).await.unwrap(), "{key}: no part of it on the target");
        } else {
            assert_eq!((r.total.copied, r.total.chunked), (1, 1), "{key}: {r:?}");
            let (len, ttl): (u64, i64) = (d.llen(key).await.unwrap(), pttl(&mut d, key).await);
            assert_eq!(len, 1_000_000, "{key}");
            assert!((590_000..=600_000).contains(&ttl), "{key}: the expiry given meanwhile: {ttl}");
        }
    }
}

/// Two streams with the same entries are not the same stream when their
/// last IDs or consumer groups differ: XADD with `*` and XREADGROUP go on
/// from those. Whole (across versions a DUMP never matches, so the entries
/// were all that was compared) and in chunks.
#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_stream_whose_last_id_or_consumer_group_differs_whole_and_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let streams = ["s:moved", "s:dropped", "s:last"];
    let mut p = redis::pipe();
    for key in streams {
        for i in 1..=2000 {
            p.cmd("XADD").arg(key).arg(format!("{i}-1")).arg("f").arg(i).ignore();
        }
        p.cmd("XGROUP").arg("CREATE").arg(key).arg("readers").arg("1000-1").ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    copy_with(&options(&src.url, &dst.url)).await.unwrap();
    let vo = |chunk_threshold: u64| VerifyOptions { chunk_threshold, ..verify_options(&src.url, &dst.url) };
    for (threshold, chunked) in [(32 << 20, 0), (1, 3)] {
        let v = verify::verify(&vo(threshold), conn(&src.url).await, conn(&dst.url).await).await.unwrap();
        assert!(v.ok() && v.checked == 3 && v.compared_in_chunks == chunked, "{v:?}");
    }
    let mut p = redis::pipe();
    p.cmd("XGROUP").arg("SETID").arg("s:moved").arg("readers").arg("1500-1").ignore();
    p.cmd("XGROUP").arg("DESTROY").arg("s:dropped").arg("readers").ignore();
    p.cmd("XSETID").arg("s:last").arg("9999-0").ignore();
    let _: () = p.query_async(&mut d).await.unwrap();
    for (threshold, chunked) in [(32 << 20, 0), (1, 3)] {
        let v = verify::verify(&vo(threshold), conn(&src.url).await, conn(&dst.url).await).await.unwrap();
        assert_eq!((v.value_mismatch, v.checked, v.compared_in_chunks), (3, 3, chunked), "{v:?}");
        for key in streams {
            assert!(v.first.contains(&Difference::Value { key: key.into() }), "{key}: {v:?}");
        }
    }
}

/// A key the source expires within the TTL tolerance, gone from the target
/// already (its clock may run ahead), counts as vanished, not missing; one
/// further from its expiry is missing.
#[tokio::test(flavor = "multi_thread")]
async fn verify_counts_a_key_gone_from_the_target_within_the_ttl_tolerance_of_its_expiry_as_vanished() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("soon")
        .arg("v")
        .arg("PX")
        .arg(30_000)
        .ignore()
        .cmd("SET")
        .arg("later")
        .arg("v")
        .arg("PX")
        .arg(300_000)
        .ignore()
        .cmd("SET")
        .arg("kept")
        .arg("v")
        .ignore()
        .query_async(&mut s)
        .await
        .unwrap();
    let _: () = d.set("kept", "v").await.unwrap();
    let vo = |ttl_tolerance_ms: u64| VerifyOptions { ttl_tolerance_ms, ..verify_options(&src.url, &dst.url) };
    let v = verify::verify(&vo(60_000), conn(&src.url).await, conn(&dst.url).await).await.unwrap();
    assert_eq!((v.checked, v.vanished, v.missing), (2, 1, 1), "{v:?}");
    assert_eq!(v.first, [Difference::Missing { key: "later".into() }]);
    let v = verify::verify(&vo(1000), conn(&src.url).await, conn(&dst.url).await).await.unwrap();
    assert_eq!((v.checked, v.vanished, v.missing), (3, 0, 2), "{v:?}");
}

/// A big key compared in chunks that the source expires meanwhile (here:
/// deleted while verify is stopped between two chunks), whose target copy
/// expires nine minutes after the source's: a TTL difference (the copy
/// stretched its expiry), not a key that vanished. Before, the compare's
/// "gone from the source" skipped the TTLs already read, and verify said OK.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_big_keys_later_expiry_on_the_target_even_when_the_source_expires_mid_compare() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    for (c, ttl) in [(&mut s, 60_000), (&mut d, 600_000)] {
        let mut p = redis::pipe();
        for i in 0..5_000 {
            p.cmd("HSET").arg("big").arg(format!("field:{i}")).arg(format!("value:{i}")).ignore();
        }
        p.cmd("PEXPIRE").arg("big").arg(ttl).ignore().cmd("SET").arg("kept").arg("v").ignore();
        let _: () = p.query_async(c).await.unwrap();
    }
    let mut verify =
        cutover(dir.path(), &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--chunk-threshold", "1"]);
    verify.env("CUTOVER_STOP_AT", "verify:chunk");
    let mut child = KillOnDrop(Some(verify.spawn().unwrap()));
    let pid = child.get().id();
    let start = Instant::now();
    while !common::process_stopped(pid) {
        assert!(start.elapsed() < Duration::from_secs(60), "verify never reached its second chunk");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = s.del("big").await.unwrap();
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    let out = child.take().wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("DIFFERENT"), "{said}");
    assert!(said.contains("big"), "the key is named: {said}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certs(dir: &Path) {
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=cutover test CA",
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    sh(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_auth_with_the_password_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    make_certs(dir.path());
    let d = dir.path().to_path_buf();
    let tls = start_redis_with(dir.path(), "tls", move |port| {
        let f = |n: &str| d.join(n).display().to_string();
        ["--port", "0", "--tls-port", &port.to_string(), "--tls-cert-file", &f("server.pem")]
            .into_iter()
            .map(String::from)
            .chain(["--tls-key-file".into(), f("server.key"), "--tls-ca-cert-file".into(), f("ca.pem")])
            .chain(["--tls-auth-clients", "no", "--requirepass", "tls-pa55word"].map(String::from))
            .collect()
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let src =
        start_redis_with(dir.path(), "auth", |_| vec!["--requirepass".into(), "src-pa55word".into()]).await.unwrap();
    // The source is read as an ACL user that may not run MEMORY USAGE.
    let admin = format!("redis://:src-pa55word@127.0.0.1:{}/0", src.port);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "copier", "on", ">copier-pa55word", "~*", "&*", "+@all", "-memory"])
        .query_async(&mut conn(&admin).await)
        .await
        .unwrap();
    let src_url = format!("redis://copier:copier-pa55word@127.0.0.1:{}/0", src.port);
    let mut s = conn(&src_url).await;
    let keys = seed_all_types(&mut s, "t", 20, Some(200_000)).await;
    let to = format!("rediss://127.0.0.1:{}/0", tls.port);
    let ca = dir.path().join("ca.pem").display().to_string();
    let with = |extra: &[&str]| {
        let mut a = vec!["redis", "copy", "--from", &src_url, "--to", &to, "--to-password-env", "TARGET_PW", "--yes"];
        a.extend(extra);
        let out = cutover(&state, &a).env("TARGET_PW", "tls-pa55word").output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = with(&[]);
    assert_eq!(code, Some(2), "without the CA the certificate is not trusted: {out}");
    assert!(out.contains("TLS to the target") && out.contains("--tls-ca"), "{out}");
    let (code, out) = with(&["--tls-ca", &ca]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("copied 120 keys"), "{out}");
    assert!(out.contains("redis://copier:***@127.0.0.1"), "the source shows redacted: {out}");

    let target =
        Endpoint::parse("target", &to, Some(("X", Some("tls-pa55word".into()))), Some(std::fs::read(&ca).unwrap()))
            .unwrap();
    let mut t = target.connect().await.unwrap();
    assert_identical(&mut s, &mut t, &keys).await;
    let out = cutover(
        &state,
        &["redis", "verify", "--from", &src_url, "--to", &to, "--tls-ca", &ca, "--to-password-env", "TARGET_PW"],
    )
    .env("TARGET_PW", "tls-pa55word")
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let log = std::fs::read_to_string(state.join("log")).unwrap();
    assert!(log.contains("MEMORY USAGE refused"), "the ACL user may not size keys: said in the log");
    for f in ["log", "cutover/redis.audit.jsonl"] {
        let body = std::fs::read_to_string(state.join(f)).unwrap();
        assert!(!body.contains("pa55word"), "{f} holds no password");
    }
    assert!(!out.stderr.windows(8).any(|w| w == b"pa55word"));
}

/// With the pre-check skipped (the CLI skips it on an empty target), a key
/// that appears on the target between SCAN and the write still stops a
/// `fail` copy, in both modes, naming it, and keeps the target's value. The
/// message says how to go on in the words of who ran the copy: a checklist
/// action has no flags.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_appearing_on_the_target_stops_a_fail_copy_without_the_precheck() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let keys = seed_all_types(&mut s, "a", 40, Some(600_000)).await;
    let runs = [(Mode::Dump, RunBy::Command), (Mode::Types, RunBy::ChecklistAction)];
    for (mode, run_by) in runs {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let mut o = options(&src.url, &dst.url);
        o.mode = mode;
        o.run_by = run_by;
        o.scan_count = 20;
        // Someone else writes the first key of the second SCAN batch to the
        // target after SCAN returned it and before the copy reads it.
        let written = Arc::new(std::sync::Mutex::new(None::<String>));
        let (seen, w, to) = (Arc::new(std::sync::atomic::AtomicUsize::new(0)), written.clone(), dst.url.clone());
        o.after_scan = Some(Arc::new(move |batch: &mut Vec<Vec<u8>>| {
            if !batch.is_empty() && seen.fetch_add(1, Ordering::SeqCst) == 1 {
                let k = String::from_utf8(batch[0].clone()).unwrap();
                let mut c = redis::Client::open(to.as_str()).unwrap().get_connection().unwrap();
                let _: () = redis::cmd("SET").arg(&k).arg("foreign").query(&mut c).unwrap();
                *w.lock().unwrap() = Some(k);
            }
        }));
        let e = copy_checked(&o, false).await.unwrap_err();
        let k = written.lock().unwrap().clone().expect("the hook wrote a key");
        assert!(
            matches!(&e, CopyError::Failed(m) if m.contains(&format!(
                "key {k} appeared on the target during the copy (the pre-check found none); stopped"
            ))),
            "{mode:?}: {e:?}"
        );
        let next = match run_by {
            RunBy::Command => {
                "stopped, the target's key kept; if it is nobody else's, delete it on the target and rerun with \
                 --resume to continue; or start over with --restart and --on-conflict skip (keeping the target's \
                 keys) or replace (overwriting them)"
            }
            RunBy::ChecklistAction => {
                "stopped, the target's key kept; if it is nobody else's, delete it on the target and run this \
                 checklist action again (it resumes from the checkpoint) to continue; or start over with `cutover \
                 redis copy --restart` and --on-conflict skip (keeping the target's keys) or replace (overwriting \
                 them) (this action copies only with fail)"
            }
        };
        assert!(e.message().contains(next), "{run_by:?}: {e:?}");
        assert_eq!(d.get::<_, String>(&k).await.unwrap(), "foreign", "{mode:?}: the target's key is kept");
        assert!(dbsize(&mut d).await < keys.len() as u64, "{mode:?}: stopped before the end");
    }
}

/// SCAN may return a key twice (while the source's table is resized; the
/// SCAN documentation leaves duplicates to the client). The second time,
/// the target already holds the key this copy wrote: a `fail` copy must
/// not stop on it. Redis cannot be made to resize on cue, so the hook puts
/// every SCAN batch but the first on the target first, as this copy would
/// have (DUMP, RESTORE with the same absolute expiry). The same key with
/// another expiry, another value, or as another type is someone else's and
/// still stops the copy. Both paths: DUMP/RESTORE, and type by type (whose
/// writes the target DUMPs otherwise than the source).
#[tokio::test(flavor = "multi_thread")]
async fn a_key_scan_returns_twice_is_no_conflict_but_another_value_or_expiry_on_the_target_still_stops_a_fail_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut keys = seed_all_types(&mut s, "ttl", 20, Some(600_000)).await;
    keys.extend(seed_all_types(&mut s, "none", 20, None).await);
    // Long strings, which a target with `rdbcompression no` DUMPs without
    // LZF: one value, two payloads, as between versions or settings (the
    // last pass below; every other key sees the same settings on both sides).
    for i in 0..40 {
        let k = format!("long:{i}");
        let _: () = redis::cmd("SET").arg(&k).arg("abc".repeat(50)).query_async(&mut s).await.unwrap();
        if i % 2 == 0 {
            let _: () = redis::cmd("PEXPIRE").arg(&k).arg(600_000).query_async(&mut s).await.unwrap();
        }
        keys.push(k);
    }
    /// How the hook writes each key of a batch to the target.
    #[derive(Clone, Copy, Debug)]
    enum Write {
        AsTheCopy,
        ExpiryAMinuteLater,
        NoExpiry,
        /// As the copy, then one more member (or bytes), keeping the expiry.
        AnotherValue,
        /// A string with the source's expiry, whatever the source's type.
        AString,
    }
    let passes = [
        (Write::AsTheCopy, None),
        (Write::ExpiryAMinuteLater, None),
        (Write::NoExpiry, None),
        (Write::AnotherValue, None),
        (Write::AString, None),
        (Write::AsTheCopy, Some("long:*")),
    ];
    let passes = [Mode::Dump, Mode::Types].into_iter().flat_map(|m| passes.map(|(w, p)| (m, w, p)));
    for (mode, write, pattern) in passes {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let compression = if pattern.is_some() { "no" } else { "yes" };
        let _: () =
            redis::cmd("CONFIG").arg("SET").arg("rdbcompression").arg(compression).query_async(&mut d).await.unwrap();
        let mut o = options(&src.url, &dst.url);
        o.mode = mode;
        o.scan_count = 20;
        o.pattern = pattern.map(String::from);
        let keys: Vec<String> = keys.iter().filter(|k| pattern.is_none() || k.starts_with("long:")).cloned().collect();
        let written = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (seen, w, from, to) =
            (Arc::new(std::sync::atomic::AtomicUsize::new(0)), written.clone(), src.url.clone(), dst.url.clone());
        o.after_scan = Some(Arc::new(move |batch: &mut Vec<Vec<u8>>| {
            if batch.is_empty() || seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return;
            }
            let mut s = redis::Client::open(from.as_str()).unwrap().get_connection().unwrap();
            let mut t = redis::Client::open(to.as_str()).unwrap().get_connection().unwrap();
            for k in batch.iter() {
                // The expiry as an absolute time, as the copy reads it.
                let (kind, at, payload): (String, i64, Vec<u8>) = redis::pipe()
                    .cmd("TYPE")
                    .arg(k)
                    .cmd("PEXPIRETIME")
                    .arg(k)
                    .cmd("DUMP")
                    .arg(k)
                    .query(&mut s)
                    .unwrap();
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
                let mut restore = redis::cmd("RESTORE");
                restore.arg(k);
                match (write, at) {
                    (Write::NoExpiry, _) | (Write::AsTheCopy | Write::AnotherValue | Write::AString, -1) => {
                        restore.arg(0).arg(&payload)
                    }
                    (Write::AsTheCopy | Write::AnotherValue | Write::AString, _) => {
                        restore.arg(at).arg(&payload).arg("ABSTTL")
                    }
                    (Write::ExpiryAMinuteLater, _) => restore.arg(at.max(now) + 60_000).arg(&payload).arg("ABSTTL"),
                };
                let _: () = restore.query(&mut t).unwrap();
                // Each changes the value and keeps the key's expiry.
                let change = match (write, kind.as_str()) {
                    (Write::AnotherValue, "string") => Some(redis::cmd("APPEND").arg(k).arg("+").clone()),
                    (Write::AnotherValue, "hash") => Some(redis::cmd("HSET").arg(k).arg("another").arg(1).clone()),
                    (Write::AnotherValue, "list") => Some(redis::cmd("RPUSH").arg(k).arg("another").clone()),
                    (Write::AnotherValue, "set") => Some(redis::cmd("SADD").arg(k).arg("another").clone()),
                    (Write::AnotherValue, "zset") => Some(redis::cmd("ZADD").arg(k).arg(9).arg("another").clone()),
                    (Write::AnotherValue, "stream") => {
                        Some(redis::cmd("XADD").arg(k).arg("*").arg("another").arg(1).clone())
                    }
                    (Write::AString, _) => Some(redis::cmd("SET").arg(k).arg("another").arg("KEEPTTL").clone()),
                    _ => None,
                };
                if let Some(change) = change {
                    let _: () = change.query(&mut t).unwrap();
                }
                w.lock().unwrap().push(String::from_utf8(k.clone()).unwrap());
            }
        }));
        let result = copy_checked(&o, false).await;
        let written = written.lock().unwrap().clone();
        assert!(!written.is_empty(), "{mode:?} {write:?}: the hook wrote the batches after the first");
        match write {
            Write::AsTheCopy => {
                let r = result.unwrap_or_else(|e| panic!("{mode:?}: a key seen twice stopped the copy: {e:?}"));
                assert_eq!(r.total.seen_twice, written.len() as u64, "{r:?}");
                assert_eq!(r.total.copied + r.total.seen_twice, keys.len() as u64, "{r:?}");
                assert_eq!((r.total.skipped_conflict, r.total.done()), (0, keys.len() as u64), "{r:?}");
                assert_eq!(dbsize(&mut d).await, keys.len() as u64);
                assert_identical(&mut s, &mut d, &keys).await;
                // A set's DUMP lists its members in the order of a table
                // seeded per process, and a long string's is compressed on
                // one side only: some of each needed the comparison of
                // contents, not just of payloads.
                let kind = if pattern.is_some() { "long:" } else { ":set:" };
                let mut by_contents = 0;
                for k in written.iter().filter(|k| k.contains(kind)) {
                    let dump = |c: &MultiplexedConnection| {
                        let (mut c, k) = (c.clone(), k.clone());
                        async move { redis::cmd("DUMP").arg(&k).query_async::<Vec<u8>>(&mut c).await.unwrap() }
                    };
                    by_contents += usize::from(dump(&s).await != dump(&d).await);
                }
                assert!(
                    by_contents > 0,
                    "{mode:?}: no {kind} key of the batches differed in its DUMP: the test misses that path"
                );
            }
            // Every key the hook wrote differs from the source's: the copy
            // stops on the first it meets.
            Write::ExpiryAMinuteLater | Write::NoExpiry | Write::AnotherValue | Write::AString => {
                let e = result.expect_err("a key held otherwise on the target is a conflict");
                assert!(
                    matches!(&e, CopyError::Failed(m) if m.contains("appeared on the target during the copy")
                        && written.iter().any(|k| m.contains(&format!("key {k} ")))),
                    "{mode:?} {write:?}: {e:?}"
                );
            }
        }
    }
}

/// Keys SCAN returns again in the next batches, while their first copy may
/// still be in flight (4 batches at once): each later write meets what this
/// copy wrote, on either path (RESTORE; SET NX, a rebuilt collection, a
/// list of 30,000 elements rebuilt in chunks). None stops a `fail` copy,
/// each counts as seen twice, and the target ends identical: two rebuilds
/// of the big list at once never mix under one temporary name.
#[tokio::test(flavor = "multi_thread")]
async fn keys_scan_returns_again_while_their_copy_is_in_flight_are_seen_twice_on_either_path() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut keys = seed_all_types(&mut s, "ttl", 15, Some(600_000)).await;
    keys.extend(seed_all_types(&mut s, "none", 15, None).await);
    let items: Vec<String> = (0..30_000).map(|i| format!("item-{i}")).collect();
    let _: () = redis::cmd("RPUSH").arg("big:list").arg(&items).query_async(&mut s).await.unwrap();
    keys.push("big:list".into());
    for mode in [Mode::Dump, Mode::Types] {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let mut o = options(&src.url, &dst.url);
        o.mode = mode;
        o.scan_count = 10;
        // Dump: the big list goes in chunks too.
        o.chunk_threshold = Some(64 << 10);
        // Each batch is followed by the next three with its keys again.
        let earlier = Arc::new(std::sync::Mutex::new(Vec::<Vec<Vec<u8>>>::new()));
        let (e, again) = (earlier.clone(), Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let a = again.clone();
        o.after_scan = Some(Arc::new(move |batch: &mut Vec<Vec<u8>>| {
            let mut e = e.lock().unwrap();
            let fresh = batch.clone();
            for prev in e.iter().rev().take(3) {
                batch.extend(prev.iter().cloned());
                a.fetch_add(prev.len() as u64, Ordering::SeqCst);
            }
            // Twice in one batch too: type by type, its two rebuilds start at
            // once (DUMP/RESTORE rebuilds a batch's big keys one by one).
            if fresh.iter().any(|k| k == b"big:list") {
                batch.push(b"big:list".to_vec());
                a.fetch_add(1, Ordering::SeqCst);
            }
            e.push(fresh);
        }));
        let r = copy_checked(&o, false).await.unwrap_or_else(|e| panic!("{mode:?}: {e:?}"));
        let again = again.load(Ordering::SeqCst);
        assert!(again >= 2 * keys.len() as u64, "{mode:?}: {again} keys returned again");
        assert_eq!(
            (r.total.copied, r.total.seen_twice, r.total.skipped_conflict, r.total.skipped_expired),
            (keys.len() as u64, again, 0, 0),
            "{mode:?}: {r:?}"
        );
        // Type by type: every key; DUMP/RESTORE: the list over the threshold.
        let chunked = if mode == Mode::Types { keys.len() as u64 } else { 1 };
        assert_eq!(r.total.chunked, chunked, "{mode:?}: {r:?}");
        assert_eq!(dbsize(&mut d).await, keys.len() as u64, "{mode:?}: no temporary key left");
        assert_identical(&mut s, &mut d, &keys).await;
    }
}

/// A write that finds the key on the target asks both sides its size
/// before reading it whole: a key bigger than one group (8 MB) on the
/// target (anyone's) is never DUMPed there, and a `fail` copy stops on it;
/// so does a key of any size on a target whose ACL refuses MEMORY USAGE.
#[tokio::test(flavor = "multi_thread")]
async fn a_big_key_met_on_the_target_is_not_read_whole_and_stops_a_fail_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut p = redis::pipe();
    for i in 0..60 {
        p.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    let no_memory = acl_user(&mut d, &dst.url, "nomemory", &["-memory"]).await;
    // One element a node, for the list below.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("list-max-listpack-size").arg(1).query_async(&mut d).await.unwrap();
    let smalls: Vec<String> = (0..3000).map(|i| format!("e{i}")).collect();
    for (mode, refused, list) in
        [(Mode::Dump, false, false), (Mode::Types, false, false), (Mode::Dump, true, false), (Mode::Dump, false, true)]
    {
        let big = if refused { "foreign".to_string() } else { "x".repeat(9 << 20) };
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut d).await.unwrap();
        let mut o = options(&src.url, if refused { &no_memory } else { &dst.url });
        o.mode = mode;
        o.scan_count = 20;
        // The first key of the second batch: 9 MB on the target (or, where
        // MEMORY USAGE is refused, a small value); or a list of 3,000 small
        // elements and, last, the 9 MB one, which MEMORY USAGE's samples
        // do not reach.
        let written = Arc::new(std::sync::Mutex::new(None::<String>));
        let (seen, w, to, value, smalls) = (
            Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            written.clone(),
            dst.url.clone(),
            big.clone(),
            smalls.clone(),
        );
        o.after_scan = Some(Arc::new(move |batch: &mut Vec<Vec<u8>>| {
            if !batch.is_empty() && seen.fetch_add(1, Ordering::SeqCst) == 1 {
                let k = String::from_utf8(batch[0].clone()).unwrap();
                let mut c = redis::Client::open(to.as_str()).unwrap().get_connection().unwrap();
                if list {
                    let _: () = redis::cmd("RPUSH").arg(&k).arg(&smalls).arg(&value).query(&mut c).unwrap();
                } else {
                    let _: () = redis::cmd("SET").arg(&k).arg(&value).query(&mut c).unwrap();
                }
                *w.lock().unwrap() = Some(k);
            }
        }));
        let e = copy_checked(&o, false).await.unwrap_err();
        let k = written.lock().unwrap().clone().expect("the hook wrote a key");
        assert!(
            matches!(&e, CopyError::Failed(m) if m.contains(&format!(
                "key {k} is on the target, and over 8 MiB on one side or of a size a side will not tell (MEMORY \
                 USAGE), so it was not read whole to compare: it may be this copy's own"
            ))),
            "{mode:?}: {e:?}"
        );
        let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut d).await.unwrap();
        assert!(stats.contains("cmdstat_memory"), "{mode:?}: its size was asked: {stats}");
        assert!(!stats.contains("cmdstat_dump"), "{mode:?}: the target DUMPed a key: {stats}");
        if list {
            let last: String = d.lindex(&k, -1).await.unwrap();
            assert_eq!((d.llen::<_, usize>(&k).await.unwrap(), last == big), (3001, true), "the target's list is kept");
        } else {
            assert_eq!(d.get::<_, String>(&k).await.unwrap(), big, "{mode:?}: the target's key is kept");
        }
    }
}

/// A write the target refuses (here its ACL refuses RENAME and RENAMENX)
/// stops the copy naming the key, and the keys built under temporary names
/// go: on the batched type path and for a key rebuilt in chunks.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_target_refuses_stops_the_copy_and_leaves_no_temporary_key() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let no_rename = acl_user(&mut d, &dst.url, "norename", &["-rename", "-renamenx"]).await;
    let mut p = redis::pipe();
    for i in 0..30 {
        p.cmd("RPUSH").arg(format!("list:{i}")).arg(&["a", "b", "c"]).ignore();
    }
    let items: Vec<String> = (0..20_000).map(|i| format!("item-{i}")).collect();
    p.cmd("RPUSH").arg("big:list").arg(&items).ignore();
    let _: () = p.query_async(&mut s).await.unwrap();
    for (mode, pattern) in [(Mode::Types, "list:*"), (Mode::Dump, "big:*")] {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
        let mut o = options(&src.url, &no_rename);
        o.mode = mode;
        o.pattern = Some(pattern.into());
        o.chunk_threshold = Some(64 << 10);
        let e = copy_checked(&o, false).await.unwrap_err();
        assert!(
            matches!(&e, CopyError::Failed(m) if m.to_lowercase().contains("noperm") && m.contains("rename")
                && m.contains(if mode == Mode::Dump { "key big:list: " } else { "writing list:" })),
            "{mode:?}: {e:?}"
        );
        let tmp: Vec<String> = d.keys("__cutover_tmp__*").await.unwrap();
        assert!(tmp.is_empty(), "{mode:?}: temporary keys left: {tmp:?}");
    }
}

/// A copy stopped by one batch's error drops the others in flight half-way:
/// their temporary keys go too. The hook makes the first batch a list of
/// 20,000 elements, whose rename the target's ACL refuses, and the second
/// one of 200,000 (40 chunks), still being rebuilt when the first fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_stopped_by_an_error_removes_the_temporary_keys_of_every_batch_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let no_rename = acl_user(&mut d, &dst.url, "norename", &["-rename", "-renamenx"]).await;
    for (key, n) in [("big:first", 200_000), ("big:second", 20_000)] {
        let items: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
        let _: () = redis::cmd("RPUSH").arg(key).arg(&items).query_async(&mut s).await.unwrap();
    }
    // Keys enough for several SCANs (the hook puts others in their place).
    let mut p = redis::pipe();
    for i in 0..500 {
        p.cmd("SET").arg(format!("filler:{i}")).arg(i).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    let mut o = options(&src.url, &no_rename);
    o.mode = Mode::Types;
    o.scan_count = 10;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    o.after_scan = Some(Arc::new(move |batch: &mut Vec<Vec<u8>>| {
        *batch = match calls.fetch_add(1, Ordering::SeqCst) {
            0 => vec![b"big:second".to_vec()],
            1 => vec![b"big:first".to_vec()],
            _ => Vec::new(),
        };
    }));
    let e = copy_checked(&o, false).await.unwrap_err();
    assert!(
        matches!(&e, CopyError::Failed(m) if m.contains("key big:second: ") && m.to_lowercase().contains("noperm")),
        "{e:?}"
    );
    let tmp: Vec<String> = d.keys("__cutover_tmp__*").await.unwrap();
    assert!(tmp.is_empty(), "temporary keys left: {tmp:?}");
}

/// The CLI skips the `fail` pre-check on an empty target and says so; keys
/// another writer puts there during the copy stop it all the same.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_target_skips_the_precheck_and_a_key_written_mid_copy_still_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    let mut p = redis::pipe();
    for i in 0..2000 {
        p.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    let _: () = p.query_async(&mut s).await.unwrap();
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--rate", "500", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &args).spawn().unwrap()));
    let start = Instant::now();
    while dbsize(&mut d).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "the copy wrote nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Keys the copy has not written yet, written by someone else (NX: never
    // over one the copy wrote).
    let mut foreign = Vec::new();
    for i in 0..2000 {
        let k = format!("k{i}");
        let set: Option<String> = redis::cmd("SET").arg(&k).arg("foreign").arg("NX").query_async(&mut d).await.unwrap();
        if set.is_some() {
            foreign.push(k);
        }
        if foreign.len() == 100 {
            break;
        }
    }
    let out = child.take().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the target is empty: no conflict to look for"), "{err}");
    assert!(!err.contains("checking which keys the target already has"), "no pre-check scan: {err}");
    let marker = " appeared on the target during the copy (the pre-check found none); stopped";
    let at = err.find(marker).unwrap_or_else(|| panic!("no key named: {err}"));
    let named = err[..at].rsplit("key ").next().unwrap().to_string();
    assert!(foreign.contains(&named), "{named} is one of the keys written by another: {err}");
    for k in &foreign {
        assert_eq!(d.get::<_, String>(k).await.unwrap(), "foreign", "{k} kept");
    }
    assert!(dbsize(&mut d).await < 2000, "stopped before the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_after_the_batches_in_flight_and_says_how_to_resume() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "c", (N / 6) as usize, Some(600_000)).await;
    let n = dbsize(&mut s).await;
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "2000"]].concat()).spawn().unwrap()));
    let start = Instant::now();
    while checkpoint_copied(&state).unwrap_or(0) < n / 10 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _, err) = run(&state, &args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is already running"), "one copy of a pair at a time: {err}");
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.get().id() as i32, libc::SIGINT) }, 0);
    let out = child.take().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "{err}");
    let on_target = dbsize(&mut d).await;
    assert!(on_target < n, "stopped early: {on_target} of {n}");
    assert_eq!(checkpoint_copied(&state), Some(on_target), "the checkpoint covers every key written");
    let stages: Vec<String> = audit_stages(&state).iter().map(|l| l["stage"].as_str().unwrap().to_string()).collect();
    assert_eq!(stages, ["intent", "interrupted"]);
    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(dbsize(&mut d).await, n);
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url]);
    assert_eq!(code, Some(0), "{out}");
}

/// A `fail` copy killed mid-way, then someone else writes keys the copy had
/// not reached yet to the target (the new application, say): `--resume`
/// must still stop on them, naming one, and keep their values. Before, a
/// resumed `fail` copy wrote with REPLACE, destroying them, counted them as
/// copied, and `verify` then found nothing wrong. The keys the killed run
/// wrote after its last checkpoint hold the source's values: those are its
/// own, and the resume goes through them without stopping, counting each
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_fail_copy_still_stops_on_a_key_someone_else_wrote_and_keeps_it() {
    const N: u64 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "plain", (N / 12) as usize, None).await;
    seed_all_types(&mut s, "ttl", (N / 12) as usize, Some(600_000)).await;
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--scan-count", "50"];
    let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], &["--rate", "4000"]].concat()).spawn().unwrap()));
    // Killed between two checkpoints (0.5 s apart): what it wrote since the
    // last one is on the target and counted in no checkpoint.
    let start = Instant::now();
    let mut seen = checkpoint_copied(&state).unwrap_or(0);
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before it was killed");
        let now = checkpoint_copied(&state).unwrap_or(0);
        if now != seen && now >= N / 10 {
            break;
        }
        seen = now;
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(250));
    let mut c = child.take();
    c.kill().unwrap();
    c.wait().unwrap();
    let checkpointed = checkpoint_copied(&state).unwrap();
    let on_target = dbsize(&mut d).await;
    assert!(on_target > checkpointed && on_target < N, "{on_target} on the target, {checkpointed} checkpointed");
    // Keys the copy has not written yet, written by someone else.
    let keys = all_keys(&mut s).await;
    let mut foreign = Vec::new();
    for k in &keys {
        let set: Option<String> = redis::cmd("SET").arg(k).arg("foreign").arg("NX").query_async(&mut d).await.unwrap();
        if set.is_some() {
            foreign.push(k.clone());
        }
        if foreign.len() == 5 {
            break;
        }
    }

    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    for k in &foreign {
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut d).await.unwrap();
        assert_eq!(kind, "string", "{k} is still the foreign string: {out}{err}");
        assert_eq!(d.get::<_, String>(k).await.unwrap(), "foreign", "{k} kept: {out}{err}");
    }
    assert_eq!(code, Some(1), "{out}{err}");
    let marker = " is on the target otherwise than on the source (type, value or expiry): someone else's, or this \
                  copy's own write from before it went back to its checkpoint, of a value the source changed since; \
                  stopped, the target's key kept; if it is nobody else's, delete it on the target and rerun with \
                  --resume to continue";
    let at = err.find(marker).unwrap_or_else(|| panic!("no key named: {err}"));
    let named = err[..at].rsplit("key ").next().unwrap().to_string();
    assert!(foreign.contains(&named), "{named} is one of the keys written by another: {err}");

    // As the message says: those keys deleted, the resume ends, every key
    // counted once and as on the source.
    for k in &foreign {
        let _: () = d.del(k).await.unwrap();
    }
    let (code, out, err) = run(&state, &[&args[..], &["--resume", "--json"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["total"]["copied"].as_u64(), Some(N), "{report}");
    assert_eq!(report["total"]["seen_twice"].as_u64(), Some(0), "{report}");
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &dst.url, "--full"]);
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_redis_checklist_action_copies_once_and_then_refuses_to_overwrite() {
    let rb = common::runbook("demo.toml");
    let sb = common::sandbox(&rb, "ap-south-1").await;
    let dir = tempfile::tempdir().unwrap();
    let (mut prod, mut staging) =
        (conn(&sb.redis_urls["prod-cache"]).await, conn(&sb.redis_urls["staging-cache"]).await);
    let seeded = dbsize(&mut prod).await;
    assert!(seeded > 0 && dbsize(&mut staging).await == 0);
    let item = "validate/copy";
    // The cockpit plans with the sandbox's variables (not in this process's environment).
    let action = cutover::runbook::Action::CopyRedis {
        from_redis: "prod-cache".into(),
        to_redis: "staging-cache".into(),
        pattern: None,
    };
    let err = cutover::drive::actions::plan(&sb.sides, &rb, &action).await.unwrap_err();
    assert!(err.to_string().starts_with("refused: no URL: set"), "{err}");
    let vars = sb.env_vars(&rb).into_iter().collect();
    let plan = cutover::drive::actions::plan_with_vars(&sb.sides, &rb, &action, &vars).await.unwrap();
    assert!(plan.steps[0].describe().starts_with("copy keys from prod-cache"), "{plan:?}");
    assert_eq!(plan.before["prod-cache"]["keys"], seeded);

    let (code, out) =
        common::run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", item, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("step: copy keys from prod-cache (redis://127.0.0.1:") && out.contains("dry run"), "{out}");
    assert_eq!(dbsize(&mut staging).await, 0, "a dry run copies nothing");

    let (code, out) =
        common::run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", item, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("copy_redis prod-cache → staging-cache done"), "{out}");
    assert!(out.contains(&format!("progress {seeded}/{seeded}: copied {seeded} keys of ~{seeded}")), "{out}");
    assert_eq!(dbsize(&mut staging).await, seeded);
    // The sandbox's apps INCR `hits:<instance>` on every request they serve
    // while the test runs: those live counters move (or appear) after the copy.
    let keys: Vec<String> =
        prod.keys::<_, Vec<String>>("*").await.unwrap().into_iter().filter(|k| !k.starts_with("hits:")).collect();
    assert!(!keys.is_empty());
    assert_identical(&mut prod, &mut staging, &keys).await;

    // Again: every key exists now, so nothing is written.
    let _: () = staging.set(&keys[0], "changed on staging").await.unwrap();
    let (code, out) =
        common::run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", item, "--yes"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{seeded} keys already exist on the target")), "{out}");
    assert_eq!(staging.get::<_, String>(&keys[0]).await.unwrap(), "changed on staging");
    let audit = std::fs::read_to_string(dir.path().join("cutover/demo.audit.jsonl")).unwrap();
    let stages: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, ["intent", "applied", "intent", "failed"]);
    assert!(audit.contains(&format!("copied {seeded} keys (0 skipped as expired)")), "{audit}");

    // A fresh copy confirmed, then a checkpoint left meanwhile (another run
    // killed before removing it): the resume is not what was confirmed, so
    // nothing is written.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut staging).await.unwrap();
    let run = ["run", "runbooks/demo.toml", item, "--yes"];
    let killed = async {
        use std::os::unix::process::ExitStatusExt;
        let mut c = common::cutover_command(&sb, &rb, dir.path(), &run);
        let out = c.env("CUTOVER_CRASH_AT", "copy:before-checkpoint-removed").output().unwrap();
        assert_eq!(out.status.signal(), Some(9), "killed: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (code, out) = common::run_cutover_changed_at(&sb, &rb, dir.path(), &run, "action:confirmed", killed).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the copy's checkpoint changed since the plan was confirmed (a fresh copy was confirmed, it would now be the resume of a checkpoint of"),
        "{out}"
    );
    // The plan now says what a resume does, and it is carried out.
    let (code, out) =
        common::run_cutover_all(&sb, &rb, dir.path(), &["run", "runbooks/demo.toml", item, "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("step: resume the interrupted copy of keys from prod-cache"), "{out}");
    assert!(
        out.contains(
            "a key already on the target is left as it is if it holds the source's value (the interrupted run may \
             have written it), and otherwise stops the copy"
        ),
        "{out}"
    );
    let (code, out) = common::run_cutover_all(&sb, &rb, dir.path(), &run).await;
    assert_eq!(code, Some(0), "{out}");
}

/// A redis-server with an append-only file fsynced on every write, on a fixed
/// port, so it can be SIGKILLed and started again with its data.
struct DurableRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl DurableRedis {
    fn start(dir: &Path, name: &str) -> DurableRedis {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = cutover::sandbox::process::free_port().unwrap();
        let mut r = DurableRedis { port, dir, child: None };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir", self.dir.to_str().unwrap()])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        // Up, and done loading its append-only file.
        let ready = || -> Option<()> {
            let mut c = redis::Client::open(self.url()).ok()?.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok().map(|_| ())
        };
        while ready().is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fault injection: the source, then the target, SIGKILLed mid-copy. The copy
/// stops with a clear error and its checkpoint; once the server is back,
/// `--resume` completes and verify finds no difference. A target that comes
/// back without its data (no persistence, as ElastiCache by default) has lost
/// every key before the checkpoint: the resume must not trust its place.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_server_killed_mid_copy_stops_it_cleanly_and_resume_completes() {
    const N: u64 = 12_000;
    for victim in ["source", "target", "target emptied"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut src = DurableRedis::start(dir.path(), "src");
        let mut dst = DurableRedis::start(dir.path(), "dst");
        let mut s = conn(&src.url()).await;
        seed_all_types(&mut s, "k", (N / 6) as usize, None).await;
        let (from, to) = (src.url(), dst.url());
        let args = ["redis", "copy", "--from", &from, "--to", &to, "--yes", "--scan-count", "100"];
        let mut child = copy_until_checkpointed(&state, &args, "3000", N / 4);
        if victim == "source" {
            src.kill()
        } else {
            dst.kill()
        }
        let out = child.take().wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{victim}: {err}");
        let side = if victim == "source" { "source" } else { "target" };
        assert!(err.contains(side), "{victim}: the error names the server that failed: {err}");
        assert!(err.contains("--resume"), "{victim}: the error says how to go on: {err}");
        let kept = checkpoint_copied(&state).expect("the checkpoint is kept");
        assert!((N / 4..N).contains(&kept), "{victim}: {kept}");
        let said = err.lines().find(|l| l.contains("--resume")).unwrap_or("").trim().to_string();
        match victim {
            "source" => src.restart(),
            "target" => dst.restart(),
            _ => {
                std::fs::remove_dir_all(&dst.dir).unwrap();
                std::fs::create_dir_all(&dst.dir).unwrap();
                dst.restart();
                assert_eq!(dbsize(&mut conn(&to).await).await, 0, "the target came back empty");
            }
        }
        let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
        assert_eq!(code, Some(0), "{victim}: {out}{err}");
        // A restarted source has a new hash seed: its old SCAN cursor would
        // skip keys. A restarted target may have lost what it took: nothing
        // but its run_id tells, so even one with every write on disk is
        // written again.
        let restarted = err.contains("the source restarted since the checkpoint");
        assert_eq!(restarted, victim == "source", "{victim}: {err}");
        let target_restarted = err.contains("the target restarted or failed over since the checkpoint");
        assert_eq!(target_restarted, victim != "source", "{victim}: {err}");
        // Counted once, also when the scan started over: the first pass's keys are written again.
        assert!(out.starts_with(&format!("copied {N} keys (")), "{victim}: {out}");
        let (code, out, _) = run(&state, &["redis", "verify", "--from", &from, "--to", &to, "--full"]);
        assert_eq!(code, Some(0), "{victim}: {out}");
        assert!(
            out.contains(&format!("checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch")),
            "{victim}: {out}"
        );
        common::record(
            "redis-killed",
            format!(
                "The {} SIGKILLed after {kept} of {N} keys were checkpointed: the copy exited 1 (\"{}\"), kept its \
                 checkpoint; after a restart{} `--resume` completed, rescanning because the {side}'s run_id changed, \
                 and `verify --full` found 0 differences in {N} keys",
                if victim == "target emptied" { "target Redis" } else { victim },
                common::clip(&said, 160),
                if victim == "target emptied" { " with its append-only file removed (so empty)" } else { " (AOF on)" },
            ),
        );
    }
}

/// (cursor, copied, marked as scanned to the end) of the checkpoint, if there is one.
fn checkpoint_place(state: &Path) -> Option<(u64, u64, bool)> {
    let v = checkpoint_json(state)?;
    Some((v["cursor"].as_u64()?, v["counters"]["copied"].as_u64()?, v["done"] == true))
}

/// Whether a resumed copy's stderr says it went on from that checkpoint: its
/// cursor, or (a kill between the last save and its removal) the end.
fn resumed_from(err: &str, (cursor, copied, done): (u64, u64, bool)) -> bool {
    if done {
        err.contains(&format!("the interrupted copy had scanned the whole source ({copied} keys copied)"))
    } else {
        err.contains(&format!("resuming at SCAN cursor {cursor} ({copied} keys already copied)"))
    }
}

/// Every key of the source, by SCAN.
async fn all_keys(c: &mut MultiplexedConnection) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(c).await.unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Fault injection: `cutover redis copy` SIGKILLed at 20 points. Every
/// restart after the first checkpoint resumes from exactly that checkpoint's
/// SCAN cursor (a restart from cursor 0 fails the test); what a kill leaves to
/// be copied again (keys on the target beyond the checkpoint) stays within
/// README's promise (the last 0.5 s of copying and the batches in flight);
/// every audit line still parses; in the end the test's own key-by-key
/// comparison (not cutover's `verify`) finds the target identical.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_20_points_of_a_copy_then_resume_ends_identical() {
    const N: u64 = 24_000;
    const RATE: u64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src, dst, mut s, mut d) = source_and_target(dir.path()).await;
    seed_all_types(&mut s, "plain", (N / 12) as usize, None).await;
    seed_all_types(&mut s, "ttl", (N / 12) as usize, Some(600_000)).await;
    let rate = RATE.to_string();
    let args = ["redis", "copy", "--from", &src.url, "--to", &dst.url, "--yes", "--scan-count", "100", "--rate", &rate];
    // README: what is copied again is what was written after the last checkpoint
    // (0.5 s at the rate) and the batches in flight (a few SCAN batches of 100).
    let promise = RATE / 2 + 1_000;
    let (mut kills, mut resumed, mut most_again, mut due_again) = (0, 0, 0, 0);
    for i in 0..20u64 {
        let delay = Duration::from_millis(100 + (i * 389) % 700);
        let place = checkpoint_place(&state);
        // What this run must write again: the keys on the target beyond its checkpoint.
        let again = dbsize(&mut d).await.saturating_sub(place.map_or(0, |p| p.1));
        if place.is_some() {
            assert!(again <= promise, "run {i}: {again} keys beyond the checkpoint will be copied again (> {promise})");
            most_again = most_again.max(again);
        }
        due_again += again;
        let extra: &[&str] = if place.is_some() { &["--resume"] } else { &[] };
        let mut child = KillOnDrop(Some(cutover(&state, &[&args[..], extra].concat()).spawn().unwrap()));
        std::thread::sleep(delay);
        let finished = child.get().try_wait().unwrap().is_some();
        let mut c = child.take();
        if !finished {
            c.kill().unwrap();
            kills += 1;
        }
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(p @ (cursor, _, _)) = place {
            assert!(resumed_from(&err, p), "run {i} resumed from its checkpoint (cursor {cursor}): {err}");
            resumed += 1;
        }
        if finished {
            assert_eq!(out.status.code(), Some(0), "run {i}: {err}");
            break;
        }
        let log = cutover::store::audit::AuditLog::at(state.join("cutover/redis.audit.jsonl"));
        log.read().unwrap_or_else(|e| panic!("kill {i}: {e}"));
    }
    if let Some(p @ (_, copied, _)) = checkpoint_place(&state) {
        let again = dbsize(&mut d).await.saturating_sub(copied);
        assert!(again <= promise, "the last run: {again} keys beyond the checkpoint (> {promise})");
        due_again += again;
        let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(resumed_from(&err, p), "{err}");
        resumed += 1;
    }
    assert!(kills >= 10, "the copy was killed many times before it finished: {kills}");
    // Runs killed before their first checkpoint (0.5 s) leave none to resume.
    assert!(resumed >= 10, "restarts resumed from a checkpoint: {resumed} of {kills}");
    let keys = all_keys(&mut s).await;
    assert_eq!(keys.len() as u64, N);
    assert_eq!(dbsize(&mut d).await, N, "no key more or less on the target");
    assert_identical(&mut s, &mut d, &keys).await;
    // The target's own count of writes: every key once, plus what kills made
    // the copy write again. A restart from cursor 0 would write about N/2 more per kill.
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut d).await.unwrap();
    let restores: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_restore:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("RESTORE calls on the target: {stats}"));
    let written_again = restores.saturating_sub(N);
    assert!(restores >= N, "every key was written: {restores} RESTOREs");
    // Only the keys beyond each checkpoint, give or take SCAN's batches in flight.
    assert!(
        written_again <= due_again + 1_000,
        "{written_again} keys written again; the checkpoints left {due_again} to write again"
    );
    eprintln!(
        "{kills} kills, {resumed} resumes; at most {most_again} keys to copy again after a kill; {written_again} written again in all ({due_again} due)"
    );
    common::record(
        "sigkill",
        format!(
            "`redis copy` of {N} keys at {RATE} keys/s SIGKILLed {kills} times, 0.1–0.8 s into each run: each of \
             the {resumed} restarts resumed from its checkpoint's exact SCAN cursor; a kill left at most {most_again} \
             keys to copy again (README's bound at this rate: {promise}), and the target counted {written_again} keys \
             written twice in all; every audit line parsed, and the test's \
             own key-by-key comparison found all {N} keys identical, each expiring at the source's millisecond"
        ),
    );
}

/// A client certificate `name.pem`/`name.key` signed by the CA `ca` (`ca.pem`,
/// `ca.key` in `dir`), made with openssl.
fn make_client_cert(dir: &Path, ca: &str, name: &str) {
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    sh(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=cutover client"]);
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    // Extensions make it X.509 v3, the only version rustls loads.
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), "extendedKeyUsage=clientAuth\n").unwrap();
    sh(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &pem,
        "-extfile",
        &ext,
    ]);
    sh(&["x509", "-in", &pem, "-noout"]);
}

/// Mutual TLS: a target that asks every client for a certificate takes the
/// copy with the right one; one signed by another CA, or none, is refused
/// with one line naming the side and the flags that fix it.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_takes_the_right_client_certificate_and_refuses_others_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    make_certs(dir.path());
    make_client_cert(dir.path(), "ca", "client");
    // Another CA, which the server does not trust, and a client certificate it signed.
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem"]
        .into_iter()
        .chain(["-days", "2", "-subj", "/CN=another CA"])
        .collect::<Vec<_>>());
    make_client_cert(dir.path(), "other-ca", "stranger");
    let d = dir.path().to_path_buf();
    let tls = start_redis_with(dir.path(), "mtls", move |port| {
        let f = |n: &str| d.join(n).display().to_string();
        ["--port", "0", "--tls-port", &port.to_string(), "--tls-cert-file", &f("server.pem")]
            .into_iter()
            .map(String::from)
            .chain(["--tls-key-file".into(), f("server.key"), "--tls-ca-cert-file".into(), f("ca.pem")])
            .chain(["--tls-auth-clients", "yes", "--requirepass", "mtls-pa55word"].map(String::from))
            .collect()
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    let keys = seed_all_types(&mut s, "m", 20, Some(300_000)).await;
    let to = format!("rediss://:mtls-pa55word@127.0.0.1:{}/0", tls.port);
    let f = |n: &str| dir.path().join(n).display().to_string();
    let (ca, cert, key) = (f("ca.pem"), f("client.pem"), f("client.key"));
    let (bad_cert, bad_key) = (f("stranger.pem"), f("stranger.key"));
    let with = |extra: &[&str]| {
        let mut a = vec!["redis", "copy", "--from", &src.url, "--to", &to, "--yes", "--tls-ca", &ca];
        a.extend(extra);
        let (code, out, err) = run(&state, &a);
        assert!(!format!("{out}{err}").contains("pa55word"), "no secret shown: {out}{err}");
        (code, out, err)
    };

    let (code, out, err) = with(&[]);
    assert_eq!(code, Some(2), "no client certificate: refused. {out}{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("target") && err.contains("--tls-cert") && err.contains("--tls-key"), "{err}");
    assert!(err.contains("client certificate"), "{err}");

    let (code, out, err) = with(&["--tls-cert", &bad_cert, "--tls-key", &bad_key]);
    assert_eq!(code, Some(2), "a certificate from another CA: refused. {out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("target") && err.contains("refused the client certificate"), "{err}");
    assert!(err.contains("--tls-cert") && err.contains("--tls-key"), "{err}");

    let (code, _, err) = with(&["--tls-cert", &cert]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
    let (code, _, err) = with(&["--tls-cert", &key, "--tls-key", &key]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert") && err.contains("not a PEM file of the client certificate"), "{err}");
    assert_eq!(dbsize(&mut s).await, 120, "nothing written to the source either");

    let (code, out, err) = with(&["--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("copied 120 keys"), "{out}");
    let target = Endpoint::parse("target", &to, None, Some(std::fs::read(&ca).unwrap())).unwrap().with_client_cert(
        cutover::redis::url::ClientCert {
            cert_pem: std::fs::read(&cert).unwrap(),
            key_pem: std::fs::read(&key).unwrap(),
        },
    );
    let mut t = target.connect().await.unwrap();
    assert_identical(&mut s, &mut t, &keys).await;
    let (code, out, err) = run(
        &state,
        &["redis", "verify", "--from", &src.url, "--to", &to, "--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &to, "--tls-ca", &ca]);
    assert_eq!(code, Some(2), "verify without the certificate: refused. {err}");
    assert!(err.contains("--tls-cert"), "{err}");
    for f in ["log", "cutover/redis.audit.jsonl"] {
        let body = std::fs::read_to_string(state.join(f)).unwrap_or_default();
        assert!(!body.contains("pa55word") && !body.contains("PRIVATE KEY"), "{f} holds no secret");
    }
}

/// TLS failures a CA file does not fix get their own advice. A server that
/// asks for a client certificate ends a TLS 1.2 handshake without one with
/// a HandshakeFailure alert (TLS 1.3 says CertificateRequired); a
/// certificate that names another address than the one connected to
/// (NotValidForName: here localhost alone, reached as 127.0.0.1) needs that
/// name. Both said "pass the server's CA with --tls-ca PATH", which the
/// command had already.
#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_a_ca_file_does_not_fix_say_what_does() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    make_certs(dir.path());
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // A server certificate of the same CA naming localhost alone.
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "named.key",
        "-out",
        "named.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.path().join("named.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    sh(&["x509", "-req", "-in", "named.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
        .into_iter()
        .chain(["-out", "named.pem", "-days", "2", "-extfile", "named.ext"])
        .collect::<Vec<_>>());
    let tls_server = |name: &'static str, cert: &'static str, extra: &'static [&'static str]| {
        let d = dir.path().to_path_buf();
        start_redis_with(dir.path(), name, move |port| {
            let f = |n: &str| d.join(n).display().to_string();
            ["--port", "0", "--tls-port", &port.to_string(), "--tls-cert-file", &f(&format!("{cert}.pem"))]
                .into_iter()
                .map(String::from)
                .chain(["--tls-key-file".into(), f(&format!("{cert}.key")), "--tls-ca-cert-file".into(), f("ca.pem")])
                .chain(extra.iter().map(|a| a.to_string()))
                .collect()
        })
    };
    let mutual = tls_server("tls12", "server", &["--tls-auth-clients", "yes", "--tls-protocols", "TLSv1.2"])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let named = tls_server("named", "named", &["--tls-auth-clients", "no"]).await.unwrap_or_else(|e| panic!("{e:#}"));
    let src = server(dir.path(), "src").await;
    let ca = dir.path().join("ca.pem").display().to_string();
    let cases = [
        (mutual.port, "ended the TLS handshake (HandshakeFailure): it most likely asks for a client certificate"),
        (named.port, "its certificate does not name the address connected to"),
    ];
    for (port, said) in cases {
        let to = format!("rediss://127.0.0.1:{port}/0");
        let (code, out, err) =
            run(&state, &["redis", "copy", "--from", &src.url, "--to", &to, "--yes", "--tls-ca", &ca]);
        assert_eq!(code, Some(2), "{out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(said) && err.contains("target"), "{err}");
        assert!(!err.contains("--tls-ca"), "the CA was given: {err}");
    }
}

/// `SENTINEL FAILOVER` of `group`, then the end of the copy `child`: its
/// exit code, stdout and stderr.
async fn fail_over_and_wait(
    group: &common::sentinel::SentinelGroup,
    mut child: KillOnDrop,
) -> (Option<i32>, String, String) {
    group.failover().await;
    let out = tokio::task::spawn_blocking(move || child.take().wait_with_output().unwrap()).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A copy into a Sentinel group survives a failover: `SENTINEL FAILOVER`
/// mid-copy promotes the replica; the copy asks the sentinels again, goes on
/// against the new master from its last checkpoint the replica confirmed, and
/// says so. Every key and TTL is on the new master at the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_failover_mid_copy_is_followed_and_every_key_arrives() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let group = common::sentinel::SentinelGroup::start(dir.path()).await;
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    for chunk in 0..N / 10_000 {
        let mut p = redis::pipe();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            // Half the keys expire in 10 minutes.
            if i % 2 == 0 {
                p.cmd("SET").arg(format!("k:{i}")).arg(i).arg("PX").arg(600_000).ignore();
            } else {
                p.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
            }
        }
        let _: () = p.query_async(&mut s).await.unwrap();
    }
    let (old_master, to) = (group.master.port, group.url());
    assert_eq!(group.master_port().await, old_master);
    let args = ["redis", "copy", "--from", &src.url, "--to", &to, "--yes", "--rate", "25000"];
    let child = KillOnDrop(Some(cutover(&state, &args).spawn().unwrap()));
    let start = Instant::now();
    while checkpoint_copied(&state).unwrap_or(0) < N / 5 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, stdout, stderr) = fail_over_and_wait(&group, child).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let new_master = group.master_port().await;
    assert_eq!(new_master, group.replica.port, "the replica was promoted");
    let moved =
        format!("master {} moved from 127.0.0.1:{old_master} to 127.0.0.1:{new_master}", common::sentinel::MASTER);
    assert!(stdout.contains("followed a failover of the target") && stdout.contains(&moved), "{stdout}{stderr}");
    assert!(stdout.contains("went on from its checkpoint"), "{stdout}");
    assert!(checkpoint_copied(&state).is_none(), "a finished copy leaves no checkpoint");

    let mut t = conn(&format!("redis://127.0.0.1:{new_master}/0")).await;
    assert_eq!(dbsize(&mut t).await, N, "every key on the new master");
    let info: String = redis::cmd("INFO").arg("keyspace").query_async(&mut t).await.unwrap();
    assert_eq!(cutover::redis::keyspace(&info, 0), (N, N / 2), "every TTL too");
    for i in [0u64, 1, 77_776, 199_999] {
        let ttl: i64 = redis::cmd("PTTL").arg(format!("k:{i}")).query_async(&mut t).await.unwrap();
        let value: u64 = redis::cmd("GET").arg(format!("k:{i}")).query_async(&mut t).await.unwrap();
        assert_eq!(value, i);
        if i % 2 == 0 {
            assert!((500_000..=600_000).contains(&ttl), "k:{i} keeps its TTL: {ttl}");
        } else {
            assert_eq!(ttl, -1, "k:{i} has none");
        }
    }
    // verify finds the master through the sentinels too.
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &to, "--full"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch, 0 TTL mismatch"
        )),
        "{out}"
    );
    // A master name the sentinels do not know: one line, exit 2.
    let wrong = to.replace("/mymaster/", "/nosuchmaster/");
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &wrong]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("knows no master named \"nosuchmaster\"") && err.contains("master name"), "{err}");
}

/// A Sentinel target whose master evicts keys it took (full at its
/// maxmemory, `volatile-lru`) and then fails over: the promoted replica
/// lost those keys too (the master sent it the deletions), and it counts
/// no eviction of its own, so the copy's end check, which reads the
/// master's `evicted_keys`, sees none. The copy must not end "copied"
/// without them: it writes every key again on the new master.
#[tokio::test(flavor = "multi_thread")]
async fn keys_the_old_master_evicted_before_a_followed_failover_are_written_again() {
    const N: usize = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let group = common::sentinel::SentinelGroup::start(dir.path()).await;
    let src = server(dir.path(), "src").await;
    let (mut s, mut m) = (conn(&src.url).await, conn(&format!("redis://127.0.0.1:{}/0", group.master.port)).await);
    // No limit yet: the policy evicts once one is set.
    kilobyte_keys_and_an_evicting_target(&mut s, &mut m, N, "0").await;
    let to = group.url();
    let args = ["redis", "copy", "--from", &src.url, "--to", &to, "--yes"];
    let child = copy_until_checkpointed(&state, &args, "1000", N as u64 / 3);
    let evicted = |info: &str| cutover::redis::info_field(info, "evicted_keys").and_then(|v| v.parse::<u64>().ok());
    let used: String = redis::cmd("INFO").arg("memory").query_async(&mut m).await.unwrap();
    let used: u64 = cutover::redis::info_field(&used, "used_memory").unwrap().parse().unwrap();
    let config = |k: &'static str, v: String| redis::cmd("CONFIG").arg("SET").arg(k).arg(v).clone();
    let _: () = config("maxmemory", (used - 512 * 1024).to_string()).query_async(&mut m).await.unwrap();
    let start = Instant::now();
    loop {
        let info: String = redis::cmd("INFO").arg("stats").query_async(&mut m).await.unwrap();
        if evicted(&info).unwrap() > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the master never evicted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: () = config("maxmemory", "0".into()).query_async(&mut m).await.unwrap();
    // A checkpoint past the evictions: the replica confirmed the places before them.
    let after = checkpoint_copied(&state).unwrap_or(0) + 300;
    while checkpoint_copied(&state).unwrap_or(0) < after {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint after the evictions");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, stdout, stderr) = fail_over_and_wait(&group, child).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("followed a failover of the target"), "{stdout}{stderr}");
    let new_master = group.master_port().await;
    assert_eq!(new_master, group.replica.port, "the replica was promoted");
    let mut t = conn(&format!("redis://127.0.0.1:{new_master}/0")).await;
    assert_eq!(dbsize(&mut t).await as usize, N, "every key on the new master");
    assert!(stdout.contains("starts its scan again"), "{stdout}{stderr}");
}

/// A Sentinel group as the target, its sentinels slow to fail over (a
/// minute), and a source with `n` keys of every type, each with a TTL: the
/// group, the source, and their URLs (from, to).
async fn seeded_into_a_slow_sentinel_group(
    dir: &Path,
    n: u64,
) -> (common::sentinel::SentinelGroup, Srv, String, String) {
    let group = common::sentinel::SentinelGroup::start(dir).await;
    group.slow_to_fail_over().await;
    let src = server(dir, "src").await;
    seed_all_types(&mut conn(&src.url).await, "k", (n / 6) as usize, Some(600_000)).await;
    let (from, to) = (src.url.clone(), group.url());
    (group, src, from, to)
}

/// A Sentinel target whose master restarts without its data before the
/// sentinels fail it over (a supervisor restarts it within
/// `down-after-milliseconds`): its replica follows it and empties too, so
/// the places the replica confirmed hold nothing now. A resume must not
/// trust them: the master's replication ID tells a restart from a failover
/// (a promoted replica carries the old one on).
#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_master_restarted_empty_without_a_failover_makes_resume_write_every_key_again() {
    const N: u64 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut group, _src, from, to) = seeded_into_a_slow_sentinel_group(dir.path(), N).await;
    let master = group.master.port;
    let args = ["redis", "copy", "--from", &from, "--to", &to, "--yes", "--scan-count", "100"];
    drop(copy_until_checkpointed(&state, &args, "3000", N / 4));
    let kept = checkpoint_copied(&state).expect("the checkpoint is kept");
    assert!((N / 4..N).contains(&kept), "{kept}");
    let _restarted = group.restart_master_empty(dir.path()).await;
    assert_eq!(group.master_port().await, master, "no failover: the same master, empty");
    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("the target's master restarted or was replaced, and its replication history"), "{err}");
    assert!(out.starts_with(&format!("copied {N} keys (")), "{out}");
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &from, "--to", &to, "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch")),
        "{out}"
    );
}

/// The same with a master restarted from an RDB file it saved a while
/// before the checkpoint: Redis 7 keeps its old replication ID (as its
/// second, valid up to that file), so the ID alone would pass it; its
/// offset does not reach the last writes the replicas confirmed, and those
/// are lost with the replicas' resync. The resume writes every key again.
#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_master_restarted_from_an_older_snapshot_makes_resume_write_every_key_again() {
    const N: u64 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut group, _src, from, to) = seeded_into_a_slow_sentinel_group(dir.path(), N).await;
    let master_url = format!("redis://127.0.0.1:{}/0", group.master.port);
    let args = ["redis", "copy", "--from", &from, "--to", &to, "--yes", "--scan-count", "100"];
    let child = copy_until_checkpointed(&state, &args, "3000", N / 6);
    let mut m = conn(&master_url).await;
    let _: () = redis::cmd("SAVE").query_async(&mut m).await.unwrap();
    let info: String = redis::cmd("INFO").arg("replication").query_async(&mut m).await.unwrap();
    let replid = cutover::redis::info_field(&info, "master_replid").unwrap().to_string();
    let saved = checkpoint_copied(&state).unwrap();
    let start = Instant::now();
    while checkpoint_copied(&state).unwrap_or(0) < saved + N / 6 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint progress after the save");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child);
    let _restarted = group.restart_master_from_its_rdb(dir.path()).await;
    let info: String = redis::cmd("INFO").arg("replication").query_async(&mut conn(&master_url).await).await.unwrap();
    assert_eq!(cutover::redis::info_field(&info, "master_replid2"), Some(replid.as_str()), "{info}");
    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("its replication history does not reach the last confirmed writes"), "{err}");
    let (code, out, _) = run(&state, &["redis", "verify", "--from", &from, "--to", &to, "--full"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch")),
        "{out}"
    );
}

/// Sentinels that disagree: a lone one, listed first, names a master where
/// nothing listens (as one cut off from its peers names the old master).
/// The master the others name, with the same config epoch, is used; before,
/// the first answer decided and the copy failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_naming_another_master_than_the_others_is_outvoted() {
    use cutover::sandbox::process::{SentinelTimings, start_sentinel};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let group = common::sentinel::SentinelGroup::start(dir.path()).await;
    // Port 1 on loopback: no test binds it (they take ephemeral ports), so
    // nothing listens there and no other test's server is reached.
    let dead = 1;
    let timings = SentinelTimings { down_after_ms: 1000, failover_timeout_ms: 5000 };
    let lone = start_sentinel(dir.path(), "lone", common::sentinel::MASTER, dead, 1, timings, None).await.unwrap();
    let mut l = conn(&format!("redis://127.0.0.1:{}", lone.port)).await;
    let (_, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(common::sentinel::MASTER)
        .query_async(&mut l)
        .await
        .unwrap();
    assert_eq!(port, dead);
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    for i in 0..100 {
        let _: () = s.set(format!("k:{i}"), i).await.unwrap();
    }
    let to = group.url().replacen("redis+sentinel://", &format!("redis+sentinel://127.0.0.1:{},", lone.port), 1);
    let (code, out, err) = run(&state, &["redis", "copy", "--from", &src.url, "--to", &to, "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let mut t = conn(&format!("redis://127.0.0.1:{}/0", group.master.port)).await;
    assert_eq!(dbsize(&mut t).await, 100);

    // The live reading names the lone sentinel as wrong: an application
    // asking it first would be sent to a server that is not the master.
    let info = cutover::live::fetch::redis_info(&probe(&to)).await.unwrap();
    let master = format!("127.0.0.1:{}", group.master.port);
    let said: Vec<(&str, Option<&str>)> =
        info.sentinels.iter().map(|s| (s.addr.as_str(), s.error.as_deref())).collect();
    let lone_addr = format!("127.0.0.1:{}", lone.port);
    let wrong = format!(
        "names 127.0.0.1:{dead} as master {m}, not {master}, where the other sentinels sent cutover",
        m = common::sentinel::MASTER
    );
    assert_eq!(said[0].0, lone_addr);
    assert!(said[0].1.is_some_and(|e| e.starts_with(&wrong)), "{said:?}");
    assert!(said[1..].iter().all(|s| s.1.is_none()), "the group's own sentinels are right: {said:?}");
}

/// Of the three sentinels a URL lists, two stopped: the one left may be the
/// one cut off from its peers, still naming the master they failed over
/// from. A copy took its answer and wrote there; now more than half of the
/// listed sentinels must answer, else the copy (and a verify) is refused in
/// one line, nothing written.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_takes_the_master_only_from_a_majority_of_the_listed_sentinels() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut group = common::sentinel::SentinelGroup::start(dir.path()).await;
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    for i in 0..100 {
        let _: () = s.set(format!("k:{i}"), i).await.unwrap();
    }
    let to = group.url();
    for sentinel in &mut group.sentinels[..2] {
        sentinel.stop().await;
    }
    let (code, out, err) = run(&state, &["redis", "copy", "--from", &src.url, "--to", &to, "--yes"]);
    let mut t = conn(&format!("redis://127.0.0.1:{}/0", group.master.port)).await;
    assert_eq!(dbsize(&mut t).await, 0, "nothing written: {out}{err}");
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let said = "only 1 of the 3 sentinels of the target redis+sentinel://";
    assert!(err.contains(said) && err.contains("bring the others back"), "{err}");
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &src.url, "--to", &to]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains(said), "{err}");
}

/// A URL listing one sentinel of a group of three: that one answering is
/// no majority (it may be the one cut off from its peers), whatever the URL
/// lists; the group's size is what its sentinels count (`SENTINEL MASTER`).
/// It took the one sentinel's answer as a majority of the one listed.
#[tokio::test(flavor = "multi_thread")]
async fn a_url_listing_fewer_sentinels_than_the_group_has_is_no_majority() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let group = common::sentinel::SentinelGroup::start(dir.path()).await;
    let src = server(dir.path(), "src").await;
    let mut s = conn(&src.url).await;
    for i in 0..100 {
        let _: () = s.set(format!("k:{i}"), i).await.unwrap();
    }
    let one = format!("redis+sentinel://127.0.0.1:{}/mymaster/0", group.sentinels[0].port);
    assert!(group.url().ends_with("/mymaster/0"), "{}", group.url());
    let (code, out, err) = run(&state, &["redis", "copy", "--from", &src.url, "--to", &one, "--yes"]);
    let mut t = conn(&format!("redis://127.0.0.1:{}/0", group.master.port)).await;
    assert_eq!(dbsize(&mut t).await, 0, "nothing written: {out}{err}");
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("only 1 of the 3 sentinels of the target redis+sentinel://")
            && err.contains("(the URL lists 1; the group has 3, as its sentinels count themselves)")
            && err.contains("list at least 2 of the group's sentinels in the URL"),
        "{err}"
    );
    // Two of the three listed and answering are a majority of the group.
    let two = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/mymaster/0",
        group.sentinels[0].port, group.sentinels[1].port
    );
    let (code, out, err) = run(&state, &["redis", "copy", "--from", &src.url, "--to", &two, "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(dbsize(&mut t).await, 100, "{out}{err}");
}

/// A copy out of a Sentinel group follows its source's failover by scanning
/// the new master from the start: a SCAN cursor belongs to the server that
/// gave it. Stopped then before the target's replica confirms a checkpoint
/// (Ctrl-C with that replica paused), the copy goes back to its last
/// confirmed place; that place must not be the old master's cursor under
/// the new master's run_id, or `--resume` skips keys and reports success.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_stopped_after_following_its_sources_failover_never_resumes_at_the_old_masters_cursor() {
    const N: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (src_dir, dst_dir) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src_dir).unwrap();
    std::fs::create_dir_all(&dst_dir).unwrap();
    let source = common::sentinel::SentinelGroup::start(&src_dir).await;
    let target = common::sentinel::SentinelGroup::start(&dst_dir).await;
    let mut s = conn(&format!("redis://127.0.0.1:{}/0", source.master.port)).await;
    for chunk in 0..N / 10_000 {
        let mut p = redis::pipe();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            p.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
        }
        let _: () = p.query_async(&mut s).await.unwrap();
    }
    // The source's replica holds every key before it is promoted.
    let r = conn(&format!("redis://127.0.0.1:{}/0", source.replica.port)).await;
    common::eventually(Duration::from_secs(20), "the source's replica in sync", || {
        let mut r = r.clone();
        async move { (dbsize(&mut r).await == N).then_some(()) }
    })
    .await;
    let (from, to) = (source.url(), target.url());
    let args = ["redis", "copy", "--from", &from, "--to", &to, "--yes", "--scan-count", "100"];
    let mut child = copy_until_checkpointed(&state, &args, "6000", N / 4);
    let first = checkpoint_json(&state).unwrap();
    let old_run_id = first["source_run_id"].as_str().unwrap().to_string();
    // From now on no checkpoint is confirmed: the target's replica is paused.
    let paused = target.replica.pid().unwrap() as i32;
    // SAFETY: signals a redis-server this test started.
    assert_eq!(unsafe { libc::kill(paused, libc::SIGSTOP) }, 0);
    source.failover().await;
    // The copy follows: its checkpoint names the new master, scanned from the start.
    let start = Instant::now();
    let followed = loop {
        let cp = checkpoint_json(&state).unwrap();
        if cp["source_run_id"].as_str() != Some(&old_run_id) {
            break cp;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "the copy did not follow the source's failover");
        assert!(child.get().try_wait().unwrap().is_none(), "the copy ended before following the failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(followed["cursor"], 0, "{followed}");
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.get().id() as i32, libc::SIGINT) }, 0);
    let out = child.take().wait_with_output().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(paused, libc::SIGCONT) }, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted") && err.contains("--resume"), "{err}");
    let kept = checkpoint_json(&state).unwrap();
    assert_ne!(kept["source_run_id"].as_str(), Some(old_run_id.as_str()), "{kept}");
    assert_eq!(kept["cursor"], 0, "a cursor of the old master under the new one's run_id: {kept}");

    let (code, out, err) = run(&state, &[&args[..], &["--resume"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with(&format!("copied {N} keys (")), "{out}");
    let (code, out, err) = run(&state, &["redis", "verify", "--from", &from, "--to", &to, "--full"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("checked {N} keys: 0 missing, 0 on target only, 0 type mismatch, 0 value mismatch")),
        "{out}"
    );
}

/// An endpoint as the live pane reads it (`live::fetch::redis_info`).
fn probe(url: &str) -> Endpoint {
    Endpoint::parse("Redis", url, None, None).unwrap()
}

/// `redis_persistence` counts what is saved, not what is configured: a
/// server whose RDB saves fail (its directory gone, as with a lost volume)
/// keeps nothing, and the shape parity and the check read says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_whose_rdb_saves_fail_is_not_persistent() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_redis(dir.path(), "disk").await.unwrap();
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let mut c = conn(&url).await;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("save").arg("900 1").query_async(&mut c).await.unwrap();
    let shape = cutover::live::fetch::redis_shape("cache", &probe(&url)).await.unwrap();
    assert_eq!((shape.rdb_save_failed, shape.persistent()), (false, Some(true)), "{shape:?}");
    // Its working directory: a save can no longer create its file there.
    std::fs::remove_dir(dir.path().join("redis-disk")).unwrap();
    let _: String = redis::cmd("BGSAVE").query_async(&mut c).await.unwrap();
    common::eventually(Duration::from_secs(10), "the save to fail", || async {
        let info: String = redis::cmd("INFO").arg("persistence").query_async(&mut conn(&url).await).await.ok()?;
        (info.contains("rdb_bgsave_in_progress:0") && info.contains("rdb_last_bgsave_status:err")).then_some(())
    })
    .await;
    let shape = cutover::live::fetch::redis_shape("cache", &probe(&url)).await.unwrap();
    assert_eq!((shape.rdb_save_failed, shape.persistent()), (true, Some(false)), "{shape:?}");
    assert_eq!(shape.persistence_failing(), ["its last RDB save failed (rdb_last_bgsave_status:err)"]);
    // It refuses writes and PING now (stop-writes-on-bgsave-error): the live
    // probe fails saying so, not that the server is unreachable.
    let err = cutover::live::fetch::redis_info(&probe(&url)).await.unwrap_err();
    assert!(err.contains("MISCONF") && !err.contains("check host and port"), "{err}");
    // A copy into it is refused before it starts, even one with nothing to
    // write (it would end "done").
    let empty = start_redis(dir.path(), "empty").await.unwrap();
    let from = format!("redis://127.0.0.1:{}/0", empty.port);
    let (code, out, err) = run(&dir.path().join("state"), &["redis", "copy", "--from", &from, "--to", &url, "--yes"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("refuses writes") && err.contains("stop-writes-on-bgsave-error no"), "{err}");
}

/// Sentinels with a password of their own (their `requirepass`, not the
/// master's) are asked with the one a runbook's `sentinel_password_env` or
/// `--to-sentinel-password-env` names; without it one line says what to
/// give, a wrong one is said to be refused, and the password never shows.
#[tokio::test(flavor = "multi_thread")]
async fn sentinels_with_a_password_of_their_own_are_asked_with_it() {
    const PW: &str = "s3nt1nel-Pw";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let group = common::sentinel::SentinelGroup::start_with(dir.path(), Some(PW)).await;
    let src = start_redis(dir.path(), "src").await.unwrap();
    let src_url = format!("redis://127.0.0.1:{}/0", src.port);
    let _: () = conn(&src_url).await.set("k", "v").await.unwrap();

    // The live probe of a runbook's endpoint.
    use cutover::live::fetch::{redis_endpoint, redis_info};
    let ep = cutover::runbook::RedisEndpoint {
        name: "cache".into(),
        environment: "staging".into(),
        url: Some(group.url()),
        url_env: None,
        password_env: None,
        sentinel_password_env: Some("CACHE_SENTINEL_PW".into()),
        port: 6379,
        sentinel_port: None,
        security_groups: vec![],
        elasticache: None,
    };
    let var = |v: &str| (v == "CACHE_SENTINEL_PW").then(|| PW.to_string());
    let info = redis_info(&redis_endpoint(&ep, "Redis", var).unwrap()).await.unwrap();
    assert_eq!(info.role, "master");
    let err = redis_endpoint(&ep, "Redis", |_| None).unwrap_err();
    assert_eq!(err, "password variable CACHE_SENTINEL_PW is not set");
    let without = cutover::runbook::RedisEndpoint { sentinel_password_env: None, ..ep.clone() };
    let err = redis_info(&redis_endpoint(&without, "Redis", |_| None).unwrap()).await.unwrap_err();
    assert!(err.contains("NOAUTH") && err.contains("(in a runbook, sentinel_password_env)"), "{err}");

    // The command line.
    let copy = ["redis", "copy", "--from", &src_url, "--to", &group.url(), "--yes"];
    let (code, out, err) = run(&state, &copy);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains(
            "the sentinels ask for a password of their own (their requirepass): name the variable holding \
             it with --from-sentinel-password-env or --to-sentinel-password-env"
        ),
        "{err}"
    );
    let with = [&copy[..], &["--to-sentinel-password-env", "CACHE_SENTINEL_PW"]].concat();
    let out = cutover(&state, &with).env("CACHE_SENTINEL_PW", "not-the-password").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the sentinels refused their password: check it") && !err.contains("not-the-password"),
        "{err}"
    );
    let out = cutover(&state, &with).env("CACHE_SENTINEL_PW", PW).output().unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{err}");
    assert!(stdout.contains("copied 1 keys"), "{stdout}");
    let got: Option<String> =
        conn(&format!("redis://127.0.0.1:{}/0", group.master_port_as(PW).await)).await.get("k").await.unwrap();
    assert_eq!(got.as_deref(), Some("v"));
    let audit = std::fs::read_to_string(state.join("cutover/redis.audit.jsonl")).unwrap();
    assert!(![&stdout, &err, &audit[..]].iter().any(|t| t.contains(PW)), "the password never shows");
    // A sentinel password is for a Sentinel URL only.
    let (code, _, err) = run(
        &state,
        &[
            "redis",
            "copy",
            "--from",
            &src_url,
            "--to",
            &src_url.replace("/0", "/1"),
            "--from-sentinel-password-env",
            "HOME",
            "--yes",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a sentinel password is for a redis+sentinel:// URL, and the source"), "{err}");
}

/// The live Redis pane's probe (`live::fetch::redis_info`, what status and
/// the cockpit show) reaches a runbook's `redis+sentinel://` endpoint at the
/// master the sentinels name, before and after a failover.
#[tokio::test(flavor = "multi_thread")]
async fn the_live_probe_pings_the_master_the_sentinels_name_through_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let group = common::sentinel::SentinelGroup::start(dir.path()).await;
    let mut m = conn(&format!("redis://127.0.0.1:{}/0", group.master.port)).await;
    let _: () = m.set("one", 1).await.unwrap();
    let info = cutover::live::fetch::redis_info(&probe(&group.url())).await.unwrap();
    assert_eq!((info.role.as_str(), info.keys), ("master", 1));
    group.failover().await;
    // The old master is demoted: a probe of it directly says "slave"; the Sentinel URL follows.
    let old = format!("redis://127.0.0.1:{}/0", group.master.port);
    common::eventually(Duration::from_secs(20), "the old master demoted", || async {
        let i = cutover::live::fetch::redis_info(&probe(&old)).await.ok()?;
        (i.role == "slave").then_some(())
    })
    .await;
    let info = common::eventually(Duration::from_secs(20), "the sentinels to name the new master", || async {
        cutover::live::fetch::redis_info(&probe(&group.url())).await.ok()
    })
    .await;
    assert_eq!((info.role.as_str(), info.keys), ("master", 1));
    assert_eq!(group.master_port().await, group.replica.port);
    let wrong = group.url().replace("/mymaster/", "/nosuchmaster/");
    let err = cutover::live::fetch::redis_info(&probe(&wrong)).await.unwrap_err();
    assert!(err.contains("knows no master named \"nosuchmaster\""), "{err}");
}

/// A runbook's Sentinel endpoint in the sandbox (a master, a replica and
/// three sentinels, quorum 2): `redis_reachable` passes only while the
/// instances can reach the sentinels (their security-group port: blocked
/// first, then opened) and the group could fail its master over: it fails
/// while the replica is down, while one sentinel is silent (SIGSTOP: the
/// reading must still fit its 2 s), and once the group cannot reach its
/// quorum, though the master answers throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_sentinel_group_passes_redis_reachable_only_while_it_could_fail_its_master_over() {
    use cutover::status::{CheckOutcome, Snapshot};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/runbooks/sentinel-sandbox.toml");
    let rb = cutover::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sb = common::sandbox(&rb, "eu-north-1").await;
    let url = sb.redis_urls["blue-cache"].clone();
    assert!(url.starts_with("redis+sentinel://127.0.0.1:") && url.ends_with("/blue-cache/0"), "{url}");
    let check = |snap: &Snapshot, item: &str| {
        let c = snap.checks.iter().find(|c| c.item == item).unwrap();
        (c.outcome, c.detail.clone())
    };
    let blue = |snap: &Snapshot| {
        let r = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
        r.view.value.clone().unwrap_or_else(|| panic!("blue-cache read: {:?}", r.view.error))
    };

    // blue-redis opens 6379 to the app, not the sentinels' 26379: the
    // instance would reach the master but could not ask where it is.
    let snap = common::first_snapshot(&rb, &sb).await;
    let (outcome, detail) = check(&snap, "redis");
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    assert!(
        detail.starts_with("blue-1: security-group path to blue-cache's sentinels: BLOCKED: no rule of ")
            && detail.contains("opens port 26379"),
        "{detail}"
    );
    let action = cutover::runbook::Action::AuthorizeRedisIngress { environment: "blue".into() };
    let plan = cutover::drive::actions::plan(&sb.sides, &rb, &action).await.unwrap();
    let steps: Vec<String> = plan.steps.iter().map(|s| s.describe()).collect();
    assert_eq!(steps.len(), 1, "the sentinels' port only: {steps:?}");
    assert!(steps[0].contains("26379"), "{steps:?}");
    // A runbook that does not give the sentinels' port: not checked, so not a pass.
    let text = std::fs::read_to_string(&path).unwrap();
    let unported =
        cutover::runbook::parse("sentinel-sandbox.toml", &text.replace(" sentinel_port = 26379,", "")).unwrap();
    let snap = common::first_snapshot(&unported, &sb).await;
    assert_eq!(
        check(&snap, "redis"),
        (
            CheckOutcome::Unknown,
            "blue-cache is found through sentinels, and their security-group path is not checked: give sentinel_port \
             (the port they listen on) in its runbook entry"
                .to_string()
        )
    );
    sb.authorize_ingress("blue-redis", "app", 26379).await.unwrap();

    let snap = common::first_snapshot(&rb, &sb).await;
    let info = blue(&snap);
    assert_eq!(info.role, "master");
    assert!((300..=301).contains(&info.keys), "the master holds the seeded keys: {}", info.keys);
    let ports: Vec<u16> = info.sentinels.iter().map(|s| s.addr.rsplit_once(':').unwrap().1.parse().unwrap()).collect();
    assert_eq!(ports.len(), 3, "{:?}", info.sentinels);
    assert!(
        info.sentinels.iter().all(|s| s.is_up() && s.ping_ms.is_some() && s.usable == Some(3)),
        "{:?}",
        info.sentinels
    );
    assert!(info.sentinels.iter().all(|s| s.names_master && s.group == Some(3)), "{:?}", info.sentinels);
    assert_eq!(info.master_unconfirmed(), None);
    assert_eq!(check(&snap, "redis").0, CheckOutcome::Pass, "{:?}", check(&snap, "redis"));
    let text = cutover::status::text::render(&snap);
    let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("sentinel 127.0.0.1:")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|r| r.contains("names the master  3 usable sentinels")), "{rows:#?}");

    // Read until `done` says the snapshot shows what is awaited.
    let read_until = |what: &'static str, done: fn(&Snapshot) -> bool| {
        let (rb, sb) = (&rb, &sb);
        async move {
            let mut session = common::session(rb, sb);
            session.first_round(rb, Duration::from_secs(30)).await;
            let start = Instant::now();
            loop {
                session.run_until(tokio::time::Instant::now() + Duration::from_millis(500)).await;
                let snap = cutover::status::snapshot(rb, &session.state, &sb.region, std::time::SystemTime::now());
                if done(&snap) {
                    return snap;
                }
                assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
            }
        }
    };

    // The replica stops answering: once the sentinels see it silent (no
    // PING answer for 5 s, as Sentinel's own choice of replica requires),
    // a failover has nowhere to go and each says so;
    // it answers again, and the check passes again.
    let mut s0 = conn(&format!("redis://127.0.0.1:{}", ports[0])).await;
    let replicas: Vec<Vec<String>> =
        redis::cmd("SENTINEL").arg("REPLICAS").arg("blue-cache").query_async(&mut s0).await.unwrap();
    let port_of = |r: &Vec<String>| r.iter().position(|f| f == "port").map(|i| r[i + 1].parse::<u16>().unwrap());
    let replica = port_of(&replicas[0]).unwrap();
    let frozen = common::freeze(sb.pid_on_port(replica).expect("the sandbox started the replica"));
    let snap = read_until("every sentinel to see the replica down", |snap| {
        let r = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
        r.view.value.as_ref().is_some_and(|i| {
            i.sentinels
                .iter()
                .all(|s| s.error.as_deref().is_some_and(|e| e.contains("knows no replica it could promote")))
        })
    })
    .await;
    let (outcome, detail) = check(&snap, "redis");
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    assert!(
        detail.starts_with(&format!(
            "cutover's own reading of blue-cache's sentinels: sentinel 127.0.0.1:{}: knows no replica it could promote (127.0.0.1:{replica} ",
            ports[0]
        )),
        "{detail}"
    );
    drop(frozen);
    read_until("the replica back in every sentinel's eyes", |snap| {
        let r = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
        r.view.value.as_ref().is_some_and(|i| i.sentinels.iter().all(|s| s.is_up()))
    })
    .await;

    // One sentinel stops answering: its row fails; the master and the others still read.
    let silent = format!("127.0.0.1:{}", ports[0]);
    let _frozen = common::freeze(sb.pid_on_port(ports[0]).expect("the sandbox started that sentinel"));
    let snap = read_until("the silent sentinel to fail on its row", |snap| {
        let r = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
        r.view.value.as_ref().is_some_and(|i| i.sentinels.iter().any(|s| !s.is_up())) && !r.view.stale
    })
    .await;
    let info = blue(&snap);
    for s in &info.sentinels {
        if s.addr == silent {
            assert_eq!((s.ping_ms, s.error.as_deref()), (None, Some("no answer within 700 ms")), "{s:?}");
        } else {
            assert!(s.is_up(), "only the silent sentinel fails: {s:?}");
        }
    }
    let (outcome, detail) = check(&snap, "redis");
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    assert_eq!(
        detail,
        format!("cutover's own reading of blue-cache's sentinels: sentinel {silent}: no answer within 700 ms")
    );

    // A second one gone: the last cannot reach quorum 2 once it sees them
    // down (down-after 5 s), and says so; the master still answers.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &sb.pid_on_port(ports[1]).unwrap().to_string()])
        .status()
        .unwrap();
    let snap = read_until("the last sentinel to say it cannot reach quorum", |snap| {
        let r = snap.redis.iter().find(|r| r.name == "blue-cache").unwrap();
        r.view.value.as_ref().is_some_and(|i| i.sentinels[2].error.as_deref().is_some_and(|e| e.contains("NOQUORUM")))
            && !r.view.stale
    })
    .await;
    let info = blue(&snap);
    let last = &info.sentinels[2];
    assert!(last.ping_ms.is_some() && last.usable.is_none(), "it answers, and says the group is short: {last:?}");
    assert!(last.error.as_deref().unwrap().starts_with("the group cannot fail the master over: NOQUORUM"), "{last:?}");
    assert!(info.sentinels[1].error.is_some(), "{:?}", info.sentinels[1]);
    let (outcome, detail) = check(&snap, "redis");
    assert_eq!(outcome, CheckOutcome::Fail, "{detail}");
    assert!(
        detail.contains(&format!("sentinel {}: the group cannot fail the master over: NOQUORUM", last.addr)),
        "{detail}"
    );
    // One sentinel of three named the master: its count is not judged.
    let (outcome, detail) = check(&snap, "counts");
    assert_eq!(outcome, CheckOutcome::Unknown, "{detail}");
    assert!(detail.starts_with("blue-cache's count may not be its master's: only 1 of the group's 3"), "{detail}");
}
