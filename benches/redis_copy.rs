//! `cutover redis copy` against the usual ways of moving Redis data, in one
//! run between two local redis-servers: keys/s of each and the ratios, and
//! the peak RSS of the cutover process.
//!
//! (a) benches/redis/scan_get_setex.py: SCAN + GET/SETEX, strings only (redis-py)
//! (b) benches/redis/dump_restore_pipelined.py: pipelined DUMP/RESTORE (redis-py)
//! (c) MIGRATE … COPY REPLACE KEYS, 1,000 keys a call (server-side, driven from here)
//! (ceiling) the target's own ingest limit: `redis-cli --pipe` of a RESTORE
//!     stream of the same keys, generated beforehand (not timed)
//!
//! cutover runs with `--on-conflict replace` (the rows above compare with it),
//! with the default `fail` (whose pre-check an empty target skips), with
//! `--mode types` (the type-by-type path, `fail`) and with `--no-size-check`
//! (no MEMORY USAGE per key, `fail`), each also given as a share of the
//! ceiling, with cutover's own CPU per key and peak RSS; then the CPU per key
//! of each process (cutover or redis-cli, the source, the target): where the
//! time goes.
//!
//! Run: `cargo bench --bench redis_copy` (1,000,000 keys; installs redis-py
//! into .venv when missing). Under `cargo test` it is a smoke test on 2,000
//! keys without the Python baselines. REDIS_BENCH_KEYS overrides the count,
//! REDIS_BENCH_REPEAT the turns (default 3), REDIS_BENCH_PYTHON=0 leaves the
//! Python baselines out (for 10,000,000 keys: they would take hours), and
//! REDIS_BENCH_TRY="FLAGS" adds a row: the default copy with those flags
//! (leading NAME=VALUE words go into its environment); `;` between flag
//! sets adds a row for each.

#[path = "common/seed.rs"]
mod seed;
#[path = "common/turns.rs"]
mod turns;
#[path = "common/usage.rs"]
mod usage;
use seed::seed;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use turns::turn_by_turn;
use usage::{cpu_seconds, wait_with_usage};

use cutover::sandbox::process::start_redis;
use redis::aio::MultiplexedConnection;

async fn conn(port: u16) -> MultiplexedConnection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    c.get_multiplexed_async_connection_with_config(&cfg).await.unwrap()
}

async fn dbsize(c: &mut MultiplexedConnection) -> u64 {
    redis::cmd("DBSIZE").query_async(c).await.unwrap()
}

struct Run {
    name: &'static str,
    copied: u64,
    scanned: u64,
    seconds: f64,
    /// The client's own CPU seconds: cutover's, or redis-cli's for the ceiling.
    cpu: Option<f64>,
    /// CPU seconds of the source and the target redis-server during the run.
    servers_cpu: Option<(f64, f64)>,
}

impl Run {
    fn keys_per_s(&self) -> f64 {
        self.scanned as f64 / self.seconds
    }
}

fn python(root: &Path) -> Option<PathBuf> {
    let py = root.join(".venv/bin/python");
    if !py.is_file() {
        eprintln!("no {}: run ./scripts/test once (it makes .venv)", py.display());
        return None;
    }
    let has = |py: &Path| {
        std::process::Command::new(py)
            .args(["-c", "import redis"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&py) {
        eprintln!("installing redis-py into .venv");
        let ok = std::process::Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "redis>=5,<7"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !has(&py) {
            eprintln!("cannot install redis-py into .venv");
            return None;
        }
    }
    Some(py)
}

fn python_run(py: &Path, script: &Path, name: &'static str, from: &str, to: &str) -> Run {
    let out = std::process::Command::new(py).arg(script).args([from, to]).output().unwrap();
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Run {
        name,
        copied: v["copied"].as_u64().unwrap(),
        scanned: v["scanned"].as_u64().unwrap(),
        seconds: v["seconds"].as_f64().unwrap(),
        cpu: None,
        servers_cpu: None,
    }
}

/// SCAN COUNT 1000, then MIGRATE … COPY REPLACE KEYS with those keys.
async fn migrate(src: &mut MultiplexedConnection, to_port: u16) -> Run {
    let start = Instant::now();
    let (mut cursor, mut scanned) = (0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(src).await.unwrap();
        scanned += keys.len() as u64;
        if !keys.is_empty() {
            let mut m = redis::cmd("MIGRATE");
            m.arg("127.0.0.1")
                .arg(to_port)
                .arg("")
                .arg(0)
                .arg(60_000)
                .arg("COPY")
                .arg("REPLACE")
                .arg("KEYS")
                .arg(&keys);
            let _: String = m.query_async(src).await.unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Run {
        name: "(c) MIGRATE COPY REPLACE KEYS ×1000",
        copied: scanned,
        scanned,
        seconds: start.elapsed().as_secs_f64(),
        cpu: None,
        servers_cpu: None,
    }
}

/// Writes the source's keys as a RESP stream of `RESTORE key ttl payload`
/// (from PTTL + DUMP, pipelined per SCAN batch), ready for `redis-cli --pipe`.
/// Returns the keys written and how many of them carry a TTL.
async fn restore_stream(src: &mut MultiplexedConnection, path: &Path) -> (u64, u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut cursor, mut keys_written, mut with_ttl) = (0u64, 0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(src).await.unwrap();
        let mut p = redis::pipe();
        for k in &keys {
            p.cmd("PTTL").arg(k).cmd("DUMP").arg(k);
        }
        // SCAN may answer no keys with a cursor to go on (more often while
        // the dict rehashes); redis-rs refuses an empty pipeline.
        let replies: Vec<redis::Value> = if keys.is_empty() { Vec::new() } else { p.query_async(src).await.unwrap() };
        for (k, pair) in keys.iter().zip(replies.chunks(2)) {
            let ttl_ms: i64 = redis::from_redis_value_ref(&pair[0]).unwrap();
            let payload: Vec<u8> = redis::from_redis_value_ref(&pair[1]).unwrap();
            // PTTL -1: no expiry, RESTORE's 0.
            with_ttl += u64::from(ttl_ms > 0);
            let restore = redis::cmd("RESTORE").arg(k).arg(ttl_ms.max(0)).arg(payload).get_packed_command();
            std::io::Write::write_all(&mut out, &restore).unwrap();
            keys_written += 1;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    std::io::Write::flush(&mut out).unwrap();
    (keys_written, with_ttl)
}

/// The ceiling: `redis-cli --pipe`, Redis's documented fastest bulk load,
/// of the ready-made RESTORE stream into the empty target. It exits non-zero
/// when any reply was an error.
fn pipe_load(stream: &Path, port: u16, target_pid: u32, keys: u64) -> Run {
    let cli = cutover::sandbox::process::find_executable("redis-cli", "CUTOVER_REDIS_CLI")
        .expect("redis-cli not found on PATH; it comes with redis-server (apt-get install redis-server redis-tools)");
    let target_before = cpu_seconds(target_pid);
    // Its output into a file: a pipe read only at the end could fill and
    // stall it (it prints each error reply).
    let out_path = stream.with_extension("out");
    let t = Instant::now();
    let child = std::process::Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--pipe"])
        .stdin(std::fs::File::open(stream).unwrap())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::options().append(true).open(&out_path).unwrap())
        .spawn()
        .unwrap();
    let (ok, cpu, _) = wait_with_usage(child);
    let seconds = t.elapsed().as_secs_f64();
    assert!(ok, "redis-cli --pipe: {}", std::fs::read_to_string(&out_path).unwrap_or_default());
    let servers_cpu = Some((0.0, cpu_seconds(target_pid) - target_before));
    Run { name: CEILING, copied: keys, scanned: keys, seconds, cpu: Some(cpu), servers_cpu }
}

const CEILING: &str = "(ceiling) redis-cli --pipe of RESTOREs";

/// The cutover rows: `--on-conflict`, `--mode` and any other flags of each.
const CUTOVER_ROWS: [(&str, &str, &str, &[&str]); 4] = [
    ("cutover redis copy --on-conflict replace", "replace", "auto", &[]),
    ("cutover redis copy (default: fail)", "fail", "auto", &[]),
    ("cutover redis copy --mode types (fail)", "fail", "types", &[]),
    ("cutover redis copy --no-size-check (fail)", "fail", "auto", &["--no-size-check"]),
];

struct Row {
    name: &'static str,
    on_conflict: &'static str,
    mode: &'static str,
    /// More flags.
    extra: Vec<String>,
    /// Its NAME=VALUE words: the environment of that row's cutover.
    env: Vec<(String, String)>,
}

/// CUTOVER_ROWS, and with REDIS_BENCH_TRY="FLAGS" one more: the default
/// copy with those flags (say `--pipeline 8`), timed in turn with the others;
/// several rows apart with `;`.
fn rows() -> Vec<Row> {
    let mut rows: Vec<Row> = CUTOVER_ROWS
        .iter()
        .map(|&(name, on_conflict, mode, extra)| {
            let extra = extra.iter().map(|f| f.to_string()).collect();
            Row { name, on_conflict, mode, extra, env: Vec::new() }
        })
        .collect();
    // Rows apart with `;`: REDIS_BENCH_TRY="--scan-count 2000; --scan-count 5000".
    let tries = std::env::var("REDIS_BENCH_TRY").unwrap_or_default();
    for flags in tries.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let name = Box::leak(format!("cutover redis copy (default: fail) {flags}").into_boxed_str());
        // Leading NAME=VALUE words are the environment; the rest are flags.
        let words: Vec<&str> = flags.split_whitespace().collect();
        let n = words.iter().take_while(|w| !w.starts_with('-') && w.contains('=')).count();
        let env = words[..n].iter().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
        let extra = words[n..].iter().map(|w| w.to_string()).collect();
        rows.push(Row { name, on_conflict: "fail", mode: "auto", extra, env });
    }
    rows
}

/// `cutover redis copy` as a child process (so its CPU and peak RSS are its own).
fn cutover_copy(state: &Path, from: &str, to: &str, pids: (u32, u32), row: &Row) -> (Run, u64) {
    let Row { name, on_conflict, mode, extra, env } = row;
    let before = (cpu_seconds(pids.0), cpu_seconds(pids.1));
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .env("XDG_STATE_HOME", state)
        .args(["--log-file", &state.join("log").display().to_string()])
        .args(["redis", "copy", "--from", from, "--to", to, "--yes", "--json"])
        .args(["--on-conflict", on_conflict, "--mode", mode])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        // Its progress lines go to a file, shown if it fails.
        .stderr(std::fs::File::create(state.with_extension("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let (ok, cpu, rss_kib) = wait_with_usage(child);
    let seconds = t.elapsed().as_secs_f64();
    let stderr = || std::fs::read_to_string(state.with_extension("stderr")).unwrap_or_default();
    assert!(ok, "cutover redis copy ({name}) failed: {stdout:?} {}", stderr());
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let run = Run {
        name,
        copied: report["total"]["copied"].as_u64().unwrap(),
        scanned: report["total"]["scanned"].as_u64().unwrap(),
        seconds,
        cpu: Some(cpu),
        servers_cpu: Some((cpu_seconds(pids.0) - before.0, cpu_seconds(pids.1) - before.1)),
    };
    (run, rss_kib)
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let mut a = start_redis(dir.path(), "source").await.unwrap();
        let mut b = start_redis(dir.path(), "target").await.unwrap();
        let pids = (a.pid().unwrap(), b.pid().unwrap());
        let (from, to) = (format!("redis://127.0.0.1:{}/0", a.port), format!("redis://127.0.0.1:{}/0", b.port));
        let (mut s, mut d) = (conn(a.port).await, conn(b.port).await);
        let t = Instant::now();
        seed(&s, n).await;
        let total = dbsize(&mut s).await;
        assert_eq!(total, n);
        println!(
            "seeded {n} keys (60% strings, 40% hash/list/set/zset, half with TTLs) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut runs = Vec::new();
        let flush = |d: &mut MultiplexedConnection| {
            let mut d = d.clone();
            async move {
                let _: () = redis::cmd("FLUSHALL").query_async(&mut d).await.unwrap();
            }
        };

        // The ceiling's input, written before any clock starts.
        let stream = dir.path().join("restore.resp");
        let t = Instant::now();
        let (stream_keys, with_ttl) = restore_stream(&mut s, &stream).await;
        assert_eq!((stream_keys, with_ttl), (n, n.div_ceil(2)), "every key in the stream, half with a TTL");
        println!(
            "RESTORE stream for redis-cli --pipe: {:.1} MB in {:.1} s (not timed)",
            std::fs::metadata(&stream).unwrap().len() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );

        // cutover (each row), MIGRATE and the ceiling, the fast ones,
        // take turns REPEAT times; the median of each counts.
        let repeat: usize = std::env::var("REDIS_BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
        let state = dir.path().join("state");
        let rows = rows();
        let mut ours: Vec<Vec<Run>> = rows.iter().map(|_| Vec::new()).collect();
        let (mut theirs, mut ceiling, mut rss_kib) = (Vec::new(), Vec::new(), vec![0u64; rows.len()]);
        for _ in 0..repeat.max(1) {
            for (i, row) in rows.iter().enumerate() {
                flush(&mut d).await;
                let (r, rss) = cutover_copy(&state, &from, &to, pids, row);
                assert_eq!((r.copied, dbsize(&mut d).await), (n, n), "{}", r.name);
                rss_kib[i] = rss_kib[i].max(rss);
                ours[i].push(r);
            }
            flush(&mut d).await;
            theirs.push(migrate(&mut s, b.port).await);
            assert_eq!(dbsize(&mut d).await, n);
            flush(&mut d).await;
            ceiling.push(pipe_load(&stream, b.port, pids.1, n));
            assert_eq!(dbsize(&mut d).await, n, "redis-cli --pipe loaded every key");
        }
        let all = |v: &[Run]| v.iter().map(|r| format!("{:.2}", r.seconds)).collect::<Vec<_>>().join(", ");
        let mut seconds: Vec<String> = rows.iter().zip(&ours).map(|(r, v)| format!("{}: {}", r.name, all(v))).collect();
        seconds.push(format!("MIGRATE: {}", all(&theirs)));
        seconds.push(format!("redis-cli --pipe: {}", all(&ceiling)));
        println!("seconds (the median counts): {}", seconds.join("; "));
        // The machine's speed drifts over a run (this VM's ceiling went from
        // 3.7 s to 2.6 s within one): each row's share of the ceiling is also
        // taken turn by turn, against the ceiling of the same turn.
        let shares: Vec<Vec<f64>> = ours
            .iter()
            .map(|v| v.iter().zip(&ceiling).map(|(r, c)| r.keys_per_s() / c.keys_per_s()).collect())
            .collect();
        runs.extend(ours.into_iter().map(median));
        // The Python baselines take minutes a million keys: REDIS_BENCH_PYTHON=0 leaves them out.
        let with_python = std::env::var("REDIS_BENCH_PYTHON").map_or(true, |v| v != "0");
        let py = if bench && with_python { python(root) } else { None };
        if let Some(py) = &py {
            for (script, name) in [
                ("scan_get_setex.py", "(a) redis-py SCAN + GET/SETEX loop"),
                ("dump_restore_pipelined.py", "(b) redis-py pipelined DUMP/RESTORE"),
            ] {
                flush(&mut d).await;
                let r = python_run(py, &root.join("benches/redis").join(script), name, &from, &to);
                assert_eq!(dbsize(&mut d).await, r.copied, "{name}");
                runs.push(r);
            }
        } else {
            println!("(the Python baselines run under `cargo bench` only, and not with REDIS_BENCH_PYTHON=0)");
        }
        runs.push(median(theirs));
        runs.push(median(ceiling));

        let ours = runs[0].keys_per_s();
        println!("{:<40} {:>9} {:>9} {:>8} {:>11} {:>9}", "", "scanned", "copied", "seconds", "keys/s", "cutover/x");
        for r in &runs {
            println!(
                "{:<40} {:>9} {:>9} {:>8.2} {:>11.0} {:>8.2}x",
                r.name,
                r.scanned,
                r.copied,
                r.seconds,
                r.keys_per_s(),
                ours / r.keys_per_s()
            );
        }
        let ceiling = runs.last().unwrap().keys_per_s();
        for ((r, rss), shares) in runs[..rows.len()].iter().zip(&rss_kib).zip(&shares) {
            println!(
                "{} = {:.2}× the ceiling, turn by turn {}; cutover's own CPU {:.2} s = {:.2} µs per key; peak RSS {:.1} MB",
                r.name,
                r.keys_per_s() / ceiling,
                turn_by_turn(shares),
                r.cpu.unwrap_or(0.0),
                r.cpu.unwrap_or(0.0) * 1e6 / r.scanned as f64,
                *rss as f64 / 1024.0
            );
        }
        // Where the time goes: CPU per key of each process (µs).
        println!("{:<40} {:>8} {:>8} {:>8} {:>8}", "CPU µs per key", "client", "source", "target", "all");
        for r in runs.iter().filter(|r| r.servers_cpu.is_some()) {
            let (src, dst) = r.servers_cpu.unwrap_or_default();
            let client = r.cpu.unwrap_or(0.0);
            let per_key = |s: f64| s * 1e6 / r.scanned as f64;
            println!(
                "{:<40} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                r.name,
                per_key(client),
                per_key(src),
                per_key(dst),
                per_key(client + src + dst)
            );
        }
        println!("(client: cutover, or redis-cli for the ceiling; source and target: redis-server, from /proc)");
        println!("cutover peak RSS: VmHWM via wait4 ru_maxrss, the highest of the runs of each row");
        println!("keys/s = keys scanned / wall seconds; cutover's time includes process start and connecting");
        a.stop().await;
        b.stop().await;
    });
}
