//! The Redis hit rate against a real redis-server: hits and misses made with
//! GET of present and absent keys between two INFO readings, folded by the
//! live update as the workers' readings are, judged by the `redis_hit_rate`
//! check. Old history does not count; no lookups is no reading.

mod common;

use std::time::{Duration, SystemTime};

use cutover::live::{LiveEvent, LiveState, Update};
use cutover::redis::url::Endpoint;
use cutover::status::CheckOutcome::{Fail, Pass, Unknown};

/// The demo runbook with a `redis_hit_rate` check on staging-cache (90%,
/// judged on 10 lookups or more).
fn runbook() -> cutover::runbook::Runbook {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "tolerance = 5\n",
        "tolerance = 5\n\n[[phases.items]]\nid = \"hit-rate\"\ntitle = \"Staging's cache serves from memory\"\nkind = \"check\"\ncheck = \"redis_hit_rate\"\nredis = \"staging-cache\"\nmin_hit_rate = 90\nmin_lookups = 10\n",
    );
    cutover::runbook::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// One reading, as a worker takes them (every 5 s here), and the check as
/// `status` evaluates it then.
async fn read(
    rb: &cutover::runbook::Runbook,
    url: &str,
    live: &mut LiveState,
    at: SystemTime,
) -> (cutover::status::CheckOutcome, String) {
    let result = cutover::live::fetch::redis_info(&Endpoint::parse("Redis", url, None, None).unwrap()).await;
    cutover::live::update(live, LiveEvent { at, update: Update::Redis { endpoint: "staging-cache".into(), result } });
    let snap = cutover::status::snapshot(rb, live, "eu-west-1", at);
    let c = snap.checks.iter().find(|c| c.item == "hit-rate").unwrap();
    (c.outcome, c.detail.clone())
}

async fn gets(c: &mut redis::aio::MultiplexedConnection, key: &str, n: usize) {
    for _ in 0..n {
        let _: Option<String> = redis::cmd("GET").arg(key).query_async(c).await.unwrap();
    }
}

#[tokio::test]
async fn the_hit_rate_check_judges_the_lookups_between_two_readings_not_the_servers_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = cutover::sandbox::process::start_redis(dir.path(), "staging-cache").await.unwrap();
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let mut c = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let rb = runbook();
    let mut live = LiveState::default();
    let t0 = SystemTime::now();
    let at = |i: u64| t0 + Duration::from_secs(5 * i);

    // A thousand hits of history before the first reading.
    let _: () = redis::cmd("SET").arg("session:1").arg("ana").query_async(&mut c).await.unwrap();
    gets(&mut c, "session:1", 1000).await;
    let (o, d) = read(&rb, &url, &mut live, at(0)).await;
    assert_eq!(o, Unknown, "{d}");
    assert!(d.contains("one INFO reading so far"), "{d}");

    // Nothing looked up between two readings: no reading, not a pass.
    let (o, d) = read(&rb, &url, &mut live, at(1)).await;
    assert_eq!((o, d.as_str()), (Unknown, "staging-cache: no key lookups over the last 5 s, so no hit rate"));

    // 3 hits and no miss: 100% of fewer lookups than the check judges on.
    gets(&mut c, "session:1", 3).await;
    let (o, d) = read(&rb, &url, &mut live, at(2)).await;
    assert_eq!(
        (o, d.as_str()),
        (
            Unknown,
            "staging-cache: 3 key lookups over the last 5 s (100.0% hits), fewer than the 10 a hit rate is judged on"
        )
    );

    // 1 hit, 9 misses: 10%, though the server's counters say 1004 of 1013.
    gets(&mut c, "session:1", 1).await;
    gets(&mut c, "session:absent", 9).await;
    let (o, d) = read(&rb, &url, &mut live, at(3)).await;
    assert_eq!(o, Fail, "{d}");
    assert_eq!(d, "staging-cache: hit rate 10.0% (1 hits, 9 misses over the last 5 s; minimum 90%)");

    // 19 hits, 1 miss: 95%.
    gets(&mut c, "session:1", 19).await;
    gets(&mut c, "session:absent", 1).await;
    let (o, d) = read(&rb, &url, &mut live, at(4)).await;
    assert_eq!(o, Pass, "{d}");
    assert_eq!(d, "staging-cache: hit rate 95.0% (19 hits, 1 misses over the last 5 s; minimum 90%)");

    // A restart resets the counters: that interval is unknown, not negative.
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut c).await.unwrap();
    let (o, d) = read(&rb, &url, &mut live, at(5)).await;
    assert_eq!(o, Unknown, "{d}");
    server.stop().await;
}

/// Redis counts hits and misses for the whole server, not per database:
/// db1 missing every lookup hides behind db0's hits on the same server.
/// Another database holding keys makes the hit rate unknown, never a pass.
#[tokio::test]
async fn the_hit_rate_of_a_database_sharing_its_server_with_another_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = cutover::sandbox::process::start_redis(dir.path(), "staging-cache").await.unwrap();
    let url = format!("redis://127.0.0.1:{}/1", server.port);
    let other = format!("redis://127.0.0.1:{}/0", server.port);
    let mut c = redis::Client::open(other.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut c1 = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let rb = runbook();
    let mut live = LiveState::default();
    let t0 = SystemTime::now();
    let at = |i: u64| t0 + Duration::from_secs(5 * i);
    let _: () = redis::cmd("SET").arg("old-app:1").arg("x").query_async(&mut c).await.unwrap();
    read(&rb, &url, &mut live, at(0)).await;
    // db0's 95 hits; db1 (the URL's) 5 misses of 5: 0% of its own.
    gets(&mut c, "old-app:1", 95).await;
    gets(&mut c1, "session:absent", 5).await;
    let (o, d) = read(&rb, &url, &mut live, at(1)).await;
    assert_eq!(o, Unknown, "never a pass on another database's hits: {d}");
    assert!(d.contains("its server also holds keys in db0 (1 keys)"), "{d}");
    assert!(d.contains("the hit rate of db1 cannot be told"), "{d}");
    server.stop().await;
}

/// A `redis_hit_rate` gate judges every lookup since its last measurement
/// (30 s apart in a soak), not only the last poll's (2 s): a cache missing
/// all along and hit once just before the measurement fails.
#[tokio::test]
async fn the_hit_rate_gate_judges_every_lookup_since_its_last_measurement() {
    use cutover::drive::gates::hit_rate_since;
    use cutover::engine::Measurement;
    let dir = tempfile::tempdir().unwrap();
    let mut server = cutover::sandbox::process::start_redis(dir.path(), "staging-cache").await.unwrap();
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let mut c = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let rb = runbook();
    let gate =
        cutover::runbook::GateKind::RedisHitRate { redis: "staging-cache".into(), min_percent: 90.0, min_lookups: 10 };
    let mut live = LiveState::default();
    let t0 = SystemTime::now();
    let at = |i: u64| t0 + Duration::from_secs(2 * i);
    let _: () = redis::cmd("SET").arg("session:1").arg("ana").query_async(&mut c).await.unwrap();
    let measure = |live: &LiveState, at: SystemTime, baseline| {
        let snap = cutover::status::snapshot(&rb, live, "eu-west-1", at);
        hit_rate_since(&gate, live, &snap, baseline).unwrap()
    };

    // The soak's first measurement: one reading, no lookups known yet.
    read(&rb, &url, &mut live, at(0)).await;
    let (m, baseline) = measure(&live, at(0), None);
    assert_eq!(m, Measurement::NoData);
    let baseline = baseline.expect("counters read");
    // 1000 misses over most of the interval, then one hit in the last poll.
    gets(&mut c, "session:absent", 1000).await;
    read(&rb, &url, &mut live, at(1)).await;
    gets(&mut c, "session:1", 1).await;
    read(&rb, &url, &mut live, at(2)).await;
    let (m, next) = measure(&live, at(2), Some(&baseline));
    assert_eq!(
        m,
        Measurement::Fail("staging-cache: hit rate 0.1% (1 hits, 1000 misses over the last 4 s; minimum 90%)".into())
    );
    // The next measurement starts from this one.
    gets(&mut c, "session:1", 19).await;
    gets(&mut c, "session:absent", 1).await;
    read(&rb, &url, &mut live, at(3)).await;
    let (m, next) = measure(&live, at(3), next.as_ref());
    assert_eq!(m, Measurement::Pass);
    // A quiet cache: 4 lookups, fewer than the 10 judged, are no data, and
    // add up with the next 8 (12 since the last judged measurement: 3 misses).
    gets(&mut c, "session:1", 4).await;
    read(&rb, &url, &mut live, at(4)).await;
    let (m, kept) = measure(&live, at(4), next.as_ref());
    assert_eq!((m, kept.as_ref()), (Measurement::NoData, next.as_ref()), "the baseline stays");
    gets(&mut c, "session:1", 5).await;
    gets(&mut c, "session:absent", 3).await;
    read(&rb, &url, &mut live, at(5)).await;
    let (m, _) = measure(&live, at(5), kept.as_ref());
    assert_eq!(
        m,
        Measurement::Fail("staging-cache: hit rate 75.0% (9 hits, 3 misses over the last 4 s; minimum 90%)".into())
    );
    server.stop().await;
}

/// A hash tag whose slot the node on `port` owns (a SET there of a key under
/// it is accepted, not MOVED), with that key set.
async fn owned_tag(port: u16) -> (redis::aio::MultiplexedConnection, String) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0.. {
        let tag = format!("{{t{i}}}");
        let set: redis::RedisResult<()> =
            redis::cmd("SET").arg(format!("{tag}present")).arg("v").query_async(&mut c).await;
        if set.is_ok() {
            return (c, tag);
        }
    }
    unreachable!()
}

/// A cluster's hit rate is of every node a client may read from, not of the
/// node the URL names: that node alone served 95% hits while the cluster
/// served 19%; and a replica's reads count too.
#[tokio::test(flavor = "multi_thread")]
async fn a_clusters_hit_rate_counts_the_lookups_of_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::cluster::Cluster::start(dir.path(), "hits", 3, true).await;
    let primaries = cluster.primary_ports().await;
    let url = format!("redis://127.0.0.1:{}", primaries[0]);
    let mut owned = Vec::new();
    for p in &primaries {
        owned.push(owned_tag(*p).await);
    }
    let rb = runbook();
    let mut live = LiveState::default();
    let t0 = SystemTime::now();
    let at = |i: u64| t0 + Duration::from_secs(5 * i);
    let (o, d) = read(&rb, &url, &mut live, at(0)).await;
    assert_eq!(o, Unknown, "{d}");

    // The node the URL names: 19 hits, 1 miss. The two other shards: 40 misses each.
    let (c, tag) = &mut owned[0];
    gets(c, &format!("{tag}present"), 19).await;
    gets(c, &format!("{tag}absent"), 1).await;
    for (c, tag) in &mut owned[1..] {
        gets(c, &format!("{tag}absent"), 40).await;
    }
    let (o, d) = read(&rb, &url, &mut live, at(1)).await;
    assert_eq!(o, Fail, "{d}");
    assert_eq!(d, "staging-cache: hit rate 19.0% (19 hits, 81 misses over the last 5 s on 6 nodes; minimum 90%)");

    // Reads served by a replica (READONLY) are lookups of the cluster too.
    // The replica holds the key first: a replica still syncing answers a miss.
    let replica = cluster.replica_of(primaries[2]).await;
    cluster.replica_in_step(primaries[2], replica).await;
    let client = redis::Client::open(format!("redis://127.0.0.1:{replica}")).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("READONLY").query_async(&mut r).await.unwrap();
    gets(&mut r, &format!("{}present", owned[2].1), 30).await;
    let (o, d) = read(&rb, &url, &mut live, at(2)).await;
    assert_eq!(o, Pass, "{d}");
    assert_eq!(d, "staging-cache: hit rate 100.0% (30 hits, 0 misses over the last 5 s on 6 nodes; minimum 90%)");
}
