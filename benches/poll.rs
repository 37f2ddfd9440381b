//! One full poll of the demo runbook against the sandbox (real moto, Redis and
//! app servers on loopback): AWS calls per cycle, and wall time of the poll as
//! the workers do it (every source concurrently) against the named baseline,
//! the same fetches awaited one after another.
//!
//! Run: `cargo bench --bench poll` (needs moto and redis-server, as the tests).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cutover::aws::cloudwatch::{SeriesKey, default_series, metric_series};
use cutover::aws::elb::arn_suffix;
use cutover::live::fetch;
use cutover::runbook::Runbook;
use cutover::sandbox::{Sandbox, SandboxOptions};
use cutover::status::probe::ProbePolicy;

struct Ctx<'a> {
    rb: &'a Runbook,
    /// cutover's own clients (the sandbox's background calls are not counted).
    clients: cutover::aws::Clients,
    http: reqwest::Client,
    vars: BTreeMap<String, String>,
    /// Skip /health probes and Redis: AWS calls only.
    aws_only: bool,
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
    if c.aws_only {
        return;
    }
    let url = fetch::redis_url(ep, |v| c.vars.get(v).cloned()).unwrap();
    fetch::redis_info(&url).await.unwrap();
}

/// Every source once, concurrently, as the workers run them.
async fn concurrent(c: &Ctx<'_>) {
    let clients = &c.clients;
    let envs = futures::future::join_all(
        c.rb.environments.values().map(|e| fetch::environment(&clients.elb, &clients.ec2, c.rb, e)),
    );
    let alarms: Vec<String> = c.rb.alarms.iter().map(|a| a.name.clone()).collect();
    let redis_all = futures::future::join_all(c.rb.redis_endpoints().map(|(_, ep)| redis(c, ep)));
    let mut zone = None;
    let (_, _, envs, _, _) = tokio::join!(
        fetch::identity(clients),
        fetch::traffic(clients, c.rb, &mut zone),
        envs,
        cutover::aws::cloudwatch::alarm_states(&clients.cloudwatch, &alarms),
        redis_all,
    );
    let envs: Vec<_> = envs.into_iter().map(Result::unwrap).collect();
    let health = c.rb.environments.values().zip(&envs).flat_map(|(e, d)| {
        d.instances.iter().filter(|_| !c.aws_only).map(move |i| fetch::health(&c.http, e, i, ProbePolicy::LoopbackOnly))
    });
    let keys = series(c.rb, &envs);
    let (_, m) = tokio::join!(
        futures::future::join_all(health),
        metric_series(&clients.cloudwatch, &keys, Duration::from_secs(900), 60)
    );
    m.unwrap();
}

/// Baseline: the same fetches, each awaited before the next starts.
async fn sequential(c: &Ctx<'_>) {
    let clients = &c.clients;
    fetch::identity(clients).await.unwrap();
    let mut zone = None;
    fetch::traffic(clients, c.rb, &mut zone).await.unwrap();
    let mut envs = Vec::new();
    for e in c.rb.environments.values() {
        let d = fetch::environment(&clients.elb, &clients.ec2, c.rb, e).await.unwrap();
        for i in d.instances.iter().filter(|_| !c.aws_only) {
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
        concurrent(c).await;
        conc.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        sequential(c).await;
        seq.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (c50, c90) = (percentile(&mut conc, 0.5), percentile(&mut conc, 0.9));
    let (s50, s90) = (percentile(&mut seq, 0.5), percentile(&mut seq, 0.9));
    println!("{label}, {runs} runs each, interleaved:");
    println!("  concurrent (cutover's workers)   p50 {c50:7.1} ms  p90 {c90:7.1} ms");
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
        let clients = cutover::sandbox::cli::cutover_clients(&sb).await;
        let mut c = Ctx { rb: &rb, clients, http, vars: sb.env_vars(&rb).into_iter().collect(), aws_only: false };
        concurrent(&c).await; // warm-up

        c.clients.calls.reset();
        concurrent(&c).await;
        println!("AWS calls per full poll cycle of runbooks/demo.toml: {}", c.clients.calls.total());
        for (op, n) in c.clients.calls.by_operation() {
            println!("  {op:<32} {n}");
        }
        timed(&c, runs, "full poll, demo as shipped (staging-web-2's /health waits 800 ms on blocked Redis)").await;
        c.aws_only = true;
        timed(&c, runs, "AWS calls only").await;
        c.aws_only = false;
        sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        timed(&c, runs, "full poll after the security-group fix (every /health answers at once)").await;

        // moto answers in a few ms, one request at a time; real AWS is a network
        // round trip away. Put 50 ms in front of every request to see what
        // concurrency buys there.
        let moto: std::net::SocketAddr = sb.endpoint.trim_start_matches("http://").parse().unwrap();
        let (wan, proxy) = cutover::sandbox::latency::delay_proxy(moto, Duration::from_millis(50)).await.unwrap();
        c.clients =
            cutover::aws::Clients::new(&cutover::aws::sandbox_config(&format!("http://{wan}"), &sb.region).await);
        concurrent(&c).await;
        timed(&c, runs, "full poll with 50 ms added to every AWS request (after the fix)").await;
        proxy.abort();
        sb.down().await;
    });
}
