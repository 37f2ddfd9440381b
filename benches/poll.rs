//! One full poll of the demo runbook against the sandbox (real moto, Redis and
//! app servers on loopback): AWS calls per cycle, and wall time of a poll by
//! cutover's own workers (a fresh `live::Session` until every source has
//! reported once) against the named baseline, the same fetches awaited one
//! after another.
//!
//! Run: `cargo bench --bench poll` (needs moto and redis-server, as the tests).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use cutover::aws::cloudwatch::{SeriesKey, default_series, metric_series};
use cutover::aws::elb::arn_suffix;
use cutover::live::Session;
use cutover::live::fetch;
use cutover::live::probe::ProbePolicy;
use cutover::live::workers::WorkerContext;
use cutover::runbook::Runbook;
use cutover::sandbox::{Sandbox, SandboxOptions};

struct Ctx<'a> {
    rb: &'a Runbook,
    /// cutover's own clients (the sandbox's background calls are not counted).
    clients: cutover::aws::SideClients,
    http: reqwest::Client,
    vars: BTreeMap<String, String>,
}

fn series(rb: &Runbook, envs: &[fetch::EnvironmentData]) -> Vec<SeriesKey> {
    rb.environments
        .keys()
        .zip(envs)
        .filter_map(|(name, d)| {
            let tg = d.target_groups.first()?;
            let lb = tg.load_balancer_arns.first().map(|a| arn_suffix(a));
            Some(default_series(name, Some(&arn_suffix(&tg.arn)), lb.as_deref()))
        })
        .flatten()
        .collect()
}

async fn redis(c: &Ctx<'_>, ep: &cutover::runbook::RedisEndpoint) {
    let url = fetch::redis_url(ep, |v| c.vars.get(v).cloned()).unwrap();
    fetch::redis_info(&url).await.unwrap();
}

/// One full poll by cutover's real workers: a fresh session, until every
/// source has reported once (its `first_round`), then stopped.
async fn workers_round(c: &Ctx<'_>) {
    let mut ctx = WorkerContext::new(c.rb.clone(), c.clients.clone(), ProbePolicy::LoopbackOnly);
    ctx.vars.extend(c.vars.clone());
    let mut session = Session::start(Arc::new(ctx));
    session.first_round(c.rb, Duration::from_secs(60)).await;
    assert!(session.state.complete(c.rb), "every source reported within 60 s");
}

/// Baseline: the same fetches, each awaited before the next starts.
async fn sequential(c: &Ctx<'_>) {
    let clients = c.clients.runbook();
    cutover::aws::sts::identity(clients).await.unwrap();
    let mut zone = None;
    fetch::traffic(clients, c.rb, &mut zone).await.unwrap();
    let mut envs = Vec::new();
    for e in c.rb.environments.values() {
        let d = fetch::environment(clients, c.rb, e).await.unwrap();
        for i in &d.instances {
            fetch::health(&c.http, e, i, ProbePolicy::LoopbackOnly).await;
        }
        envs.push(d);
    }
    let alarms: Vec<String> = c.rb.alarms.iter().map(|a| a.name.clone()).collect();
    cutover::aws::cloudwatch::alarm_states(&clients.cloudwatch, &alarms).await.unwrap();
    for (_, ep) in c.rb.redis_endpoints() {
        redis(c, ep).await;
    }
    metric_series(&clients.cloudwatch, &series(c.rb, &envs), Duration::from_secs(900), 60).await.unwrap();
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn timed(c: &Ctx<'_>, runs: usize, label: &str) {
    let (mut conc, mut seq) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        workers_round(c).await;
        conc.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        sequential(c).await;
        seq.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (c50, c90) = (percentile(&mut conc, 0.5), percentile(&mut conc, 0.9));
    let (s50, s90) = (percentile(&mut seq, 0.5), percentile(&mut seq, 0.9));
    println!("{label}, {runs} runs each, interleaved:");
    println!("  cutover's workers (one round)    p50 {c50:7.1} ms  p90 {c90:7.1} ms");
    println!("  sequential (baseline)            p50 {s50:7.1} ms  p90 {s90:7.1} ms");
    println!("  baseline / cutover at p50: {:.2}x", s50 / c50);
}

fn main() {
    // Under `cargo test` (no --bench argument) this is a smoke test: two runs.
    let bench = std::env::args().any(|a| a == "--bench");
    let runs: usize =
        std::env::var("POLL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench { 20 } else { 2 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let rb = cutover::runbook::load(&path).unwrap();
    rt.block_on(async {
        let sb = Sandbox::up(
            &rb,
            SandboxOptions { region: "eu-west-1".into(), moto_endpoint: None, traffic: Default::default() },
        )
        .await
        .expect("sandbox");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().unwrap();
        let clients = sb.cutover_clients(&rb).await;
        let mut c = Ctx { rb: &rb, clients, http, vars: sb.env_vars(&rb).into_iter().collect() };
        workers_round(&c).await; // warm-up

        c.clients.reset_calls();
        workers_round(&c).await;
        println!("AWS calls per full poll cycle of runbooks/demo.toml: {}", c.clients.calls_total());
        for (op, n) in c.clients.calls_by_operation() {
            println!("  {op:<32} {n}");
        }
        timed(&c, runs, "full poll, demo as shipped (staging-web-2's /health waits 800 ms on blocked Redis)").await;
        sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        timed(&c, runs, "full poll after the security-group fix (every /health answers at once)").await;

        // moto answers in a few ms, one request at a time; real AWS is a network
        // round trip away. Put 50 ms in front of every request to see what
        // concurrency buys there.
        let moto: std::net::SocketAddr = sb.endpoint.trim_start_matches("http://").parse().unwrap();
        let (wan, proxy) = cutover::sandbox::latency::delay_proxy(moto, Duration::from_millis(50)).await.unwrap();
        c.clients = cutover::aws::SideClients::one(cutover::aws::Clients::new(
            &cutover::aws::sandbox_config(&format!("http://{wan}"), &sb.region).await,
        ));
        workers_round(&c).await;
        timed(&c, runs, "full poll with 50 ms added to every AWS request (after the fix)").await;
        proxy.abort();
        sb.down().await;
    });
}
