//! `cutover redis copy` with Redis Clusters, against cutover's own single →
//! single in the same run: single → 3-shard cluster and 3-shard → 3-shard
//! cluster, each as keys/s and keys per CPU-second of every process involved
//! (cutover, from wait4, and every redis-server, from /proc/PID/stat).
//!
//! Run: `cargo bench --bench redis_cluster` (1,000,000 small mixed keys, half
//! with TTLs). Under `cargo test` it is a smoke run on 2,000 keys.
//! REDIS_BENCH_KEYS overrides the count; REDIS_BENCH_REPEAT (default 3) the
//! runs per case, whose median counts.

#[path = "common/seed.rs"]
mod seed;
#[path = "common/turns.rs"]
mod turns;
#[path = "common/usage.rs"]
mod usage;
use seed::seed;
use std::path::Path;
use std::time::{Duration, Instant};
use turns::turn_by_turn;
use usage::{cpu_seconds, wait_with_usage};

use cutover::sandbox::process::{ChildProcess, start_cluster, start_redis};
use redis::aio::MultiplexedConnection;

async fn conn(port: u16) -> MultiplexedConnection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    c.get_multiplexed_async_connection_with_config(&cfg).await.unwrap()
}

async fn dbsize(ports: &[u16]) -> u64 {
    let mut n = 0;
    for p in ports {
        n += redis::cmd("DBSIZE").query_async::<u64>(&mut conn(*p).await).await.unwrap();
    }
    n
}

async fn flush(ports: &[u16]) {
    for p in ports {
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn(*p).await).await.unwrap();
    }
}

fn servers_cpu(servers: &[&ChildProcess]) -> f64 {
    servers.iter().map(|s| cpu_seconds(s.pid().unwrap())).sum()
}

struct Run {
    keys: u64,
    seconds: f64,
    cutover_cpu: f64,
    servers_cpu: f64,
    rss_kib: u64,
}

impl Run {
    fn keys_per_s(&self) -> f64 {
        self.keys as f64 / self.seconds
    }
    fn keys_per_cpu_s(&self) -> f64 {
        self.keys as f64 / (self.cutover_cpu + self.servers_cpu)
    }
}

/// `cutover redis copy` as a child process; CPU of it and of `servers`.
fn cutover_copy(state: &Path, from: &str, to: &str, servers: &[&ChildProcess]) -> Run {
    let before = servers_cpu(servers);
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .env("XDG_STATE_HOME", state)
        .args(["--log-file", &state.join("log").display().to_string()])
        .args(["redis", "copy", "--from", from, "--to", to, "--yes", "--on-conflict", "replace", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let (ok, cutover_cpu, rss_kib) = wait_with_usage(child);
    let seconds = t.elapsed().as_secs_f64();
    assert!(ok, "cutover redis copy {from} → {to} failed: {stdout:?}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    Run {
        keys: report["total"]["copied"].as_u64().unwrap(),
        seconds,
        cutover_cpu,
        servers_cpu: servers_cpu(servers) - before,
        rss_kib,
    }
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("REDIS_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench {
        1_000_000
    } else {
        2_000
    });
    let repeat: usize = std::env::var("REDIS_BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    rt.block_on(async {
        let single_src = start_redis(dir.path(), "single-src").await.unwrap();
        let single_dst = start_redis(dir.path(), "single-dst").await.unwrap();
        let a = start_cluster(dir.path(), "a", 3, false).await.unwrap();
        let b = start_cluster(dir.path(), "b", 3, false).await.unwrap();
        let ports = |nodes: &[ChildProcess]| nodes.iter().map(|n| n.port).collect::<Vec<u16>>();
        let (a_ports, b_ports) = (ports(&a), ports(&b));
        let url = |p: u16| format!("redis://127.0.0.1:{p}/0");
        let cluster_url = |p: &[u16]| format!("redis+cluster://127.0.0.1:{},127.0.0.1:{}", p[0], p[1]);
        let t = Instant::now();
        seed(&conn(single_src.port).await, n).await;
        assert_eq!(dbsize(&[single_src.port]).await, n);
        println!(
            "seeded {n} keys (60% strings, 40% hash/list/set/zset, half with TTLs) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // One untimed copy first, so the first turn's baseline does not read
        // a source whose tables are still settling after the seed.
        cutover_copy(&state, &url(single_src.port), &url(single_dst.port), &[&single_src, &single_dst]);
        let (mut one, mut into, mut between) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat {
            flush(&[single_dst.port]).await;
            let r = cutover_copy(&state, &url(single_src.port), &url(single_dst.port), &[&single_src, &single_dst]);
            assert_eq!(dbsize(&[single_dst.port]).await, n);
            one.push(r);

            flush(&a_ports).await;
            let servers: Vec<&ChildProcess> = std::iter::once(&single_src).chain(&a).collect();
            let r = cutover_copy(&state, &url(single_src.port), &cluster_url(&a_ports), &servers);
            assert_eq!(dbsize(&a_ports).await, n);
            into.push(r);

            flush(&b_ports).await;
            let servers: Vec<&ChildProcess> = a.iter().chain(&b).collect();
            let r = cutover_copy(&state, &cluster_url(&a_ports), &cluster_url(&b_ports), &servers);
            assert_eq!(dbsize(&b_ports).await, n);
            between.push(r);
        }
        // Turn by turn against the baseline of the same turn too: the
        // machine's speed drifts over a run.
        let turns = |v: &[Run], of: fn(&Run) -> f64| -> String {
            turn_by_turn(&v.iter().zip(&one).map(|(c, b)| of(c) / of(b)).collect::<Vec<f64>>())
        };
        for (name, v) in [("single → 3-shard cluster", &into), ("3-shard → 3-shard cluster", &between)] {
            println!(
                "{name}, turn by turn against the baseline: keys/s {}; keys/CPUs {}",
                turns(v, Run::keys_per_s),
                turns(v, Run::keys_per_cpu_s)
            );
        }
        let cases = [
            ("single → single (baseline)", median(one)),
            ("single → 3-shard cluster", median(into)),
            ("3-shard → 3-shard cluster", median(between)),
        ];
        let (base_rate, base_cpu) = (cases[0].1.keys_per_s(), cases[0].1.keys_per_cpu_s());
        println!(
            "{:<30} {:>8} {:>8} {:>10} {:>7} {:>12} {:>12} {:>8} {:>7} {:>8}",
            "", "keys", "seconds", "keys/s", "×base", "cutover CPU", "servers CPU", "keys/CPUs", "×base", "RSS MB"
        );
        for (name, r) in &cases {
            println!(
                "{:<30} {:>8} {:>8.2} {:>10.0} {:>6.2}× {:>11.2}s {:>11.2}s {:>9.0} {:>6.2}× {:>8.1}",
                name,
                r.keys,
                r.seconds,
                r.keys_per_s(),
                r.keys_per_s() / base_rate,
                r.cutover_cpu,
                r.servers_cpu,
                r.keys_per_cpu_s(),
                r.keys_per_cpu_s() / base_cpu,
                r.rss_kib as f64 / 1024.0
            );
        }
        println!(
            "keys/s = keys copied / wall seconds (process start and connecting included); keys/CPUs = keys per CPU-second of cutover and every redis-server involved; --on-conflict replace, median of {repeat}"
        );
    });
}
