//! One full poll of the demo runbook against the sandbox (real moto, Redis and
//! app servers on loopback): AWS calls per cycle, and wall time of a poll by
//! cutover's own workers (a fresh `live::Session` until every source has
//! reported once) against the named baseline, the same fetches awaited one
//! after another. The timings run under criterion (20 samples of one poll or
//! more each), so each comes with its spread and a saved run can be compared
//! against, in three settings: the demo as shipped, after its security-group
//! fix, and with 50 ms in front of every AWS request. A last table gives each
//! median with its ratio to the sequential baseline of the same setting.
//!
//! Run: `cargo bench --bench poll` (needs moto and redis-server, as the
//! tests); `-- --save-baseline NAME` keeps the run, a later
//! `-- --baseline NAME` prints each bench's change against it. Under
//! `cargo test --benches` each bench polls once, as a smoke test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use cutover::aws::cloudwatch::{SeriesKey, default_series, metric_series};
use cutover::aws::elb::arn_suffix;
use cutover::live::Session;
use cutover::live::fetch;
use cutover::live::probe::ProbePolicy;
use cutover::live::workers::WorkerContext;
use cutover::runbook::Runbook;
use cutover::sandbox::{Sandbox, SandboxOptions};

#[path = "common/summary.rs"]
mod summary;

struct Ctx {
    rb: Runbook,
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

async fn redis(c: &Ctx, ep: &cutover::runbook::RedisEndpoint) {
    let e = fetch::redis_endpoint(ep, "Redis", |v| c.vars.get(v).cloned()).unwrap();
    fetch::redis_info(&e).await.unwrap();
}

/// One full poll by cutover's real workers: a fresh session, until every
/// source has reported once (its `first_round`), then stopped.
async fn workers_round(c: &Ctx) {
    let mut ctx = WorkerContext::new(c.rb.clone(), c.clients.clone(), ProbePolicy::LoopbackOnly);
    ctx.vars.extend(c.vars.clone());
    let mut session = Session::start(Arc::new(ctx));
    session.first_round(&c.rb, Duration::from_secs(60)).await;
    assert!(session.state.complete(&c.rb), "every source reported within 60 s");
}

/// Baseline: the same fetches, each awaited before the next starts.
async fn sequential(c: &Ctx) {
    let clients = c.clients.runbook();
    cutover::aws::sts::identity(clients).await.unwrap();
    let mut zone = None;
    fetch::traffic(clients, &c.rb, &mut zone).await.unwrap();
    let mut envs = Vec::new();
    for e in c.rb.environments.values() {
        let d = fetch::environment(&c.clients, &c.rb, e).await.unwrap();
        for url in cutover::live::probe::health_urls(e, &d.instances, ProbePolicy::LoopbackOnly) {
            fetch::health(&c.http, url).await;
        }
        envs.push(d);
    }
    let alarms: Vec<String> = c.rb.alarms.iter().map(|a| a.name.clone()).collect();
    cutover::aws::cloudwatch::alarm_states(&clients.cloudwatch, &alarms).await.unwrap();
    for (_, ep) in c.rb.redis_endpoints() {
        redis(c, ep).await;
    }
    metric_series(&clients.cloudwatch, &series(&c.rb, &envs), Duration::from_secs(900), 60).await.unwrap();
}

/// Where a poll runs.
#[derive(Debug, Clone, Copy)]
enum Setting {
    /// The demo as shipped: staging-web-2's /health waits 800 ms on blocked Redis.
    AsShipped,
    /// After the security-group fix: every /health answers at once.
    Fixed,
    /// After the fix, with 50 ms in front of every AWS request: moto answers
    /// in a few ms, real AWS is a network round trip away.
    Wan50ms,
}

/// Two sandboxes, one as shipped and one fixed (the benches of one setting
/// run together, but a filter may pick any of them, so one sandbox switched
/// between settings could not serve both), and a poll context for each
/// setting.
struct Fixture {
    rt: tokio::runtime::Runtime,
    sandboxes: Vec<Sandbox>,
    proxy: tokio::task::JoinHandle<()>,
    contexts: BTreeMap<&'static str, Ctx>,
}

/// The setting's name in the bench ids (criterion's folder names).
fn name(s: Setting) -> &'static str {
    match s {
        Setting::AsShipped => "as_shipped",
        Setting::Fixed => "fixed",
        Setting::Wan50ms => "50ms_to_aws",
    }
}

async fn up(rb: &Runbook) -> (Sandbox, Ctx) {
    let sb = Sandbox::up(
        rb,
        SandboxOptions {
            region: "eu-west-1".into(),
            moto_endpoint: None,
            traffic: Default::default(),
            team_state: None,
        },
    )
    .await
    .expect("sandbox");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().unwrap();
    let clients = sb.cutover_clients(rb).await;
    let ctx = Ctx { rb: rb.clone(), clients, http, vars: sb.env_vars(rb).into_iter().collect() };
    (sb, ctx)
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let rb = cutover::runbook::load(&path).unwrap();
    let (sandboxes, proxy, contexts) = rt.block_on(async {
        let (shipped, as_shipped) = up(&rb).await;
        let (fixed_sb, fixed) = up(&rb).await;
        fixed_sb.authorize_ingress("staging-redis", "staging-batch", 6379).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let moto: std::net::SocketAddr = fixed_sb.endpoint.trim_start_matches("http://").parse().unwrap();
        let (wan, proxy) = cutover::sandbox::latency::delay_proxy(moto, Duration::from_millis(50)).await.unwrap();
        let slow = cutover::aws::SideClients::one(cutover::aws::Clients::new(
            &cutover::aws::sandbox_config(&format!("http://{wan}"), &fixed_sb.region).await,
        ));
        let wan_ctx = Ctx { clients: slow, rb: fixed.rb.clone(), http: fixed.http.clone(), vars: fixed.vars.clone() };
        // Warm-up: connections and the hosted zone's id.
        for c in [&as_shipped, &fixed, &wan_ctx] {
            workers_round(c).await;
        }
        let contexts = BTreeMap::from([
            (name(Setting::AsShipped), as_shipped),
            (name(Setting::Fixed), fixed),
            (name(Setting::Wan50ms), wan_ctx),
        ]);
        (vec![shipped, fixed_sb], proxy, contexts)
    });
    Fixture { rt, sandboxes, proxy, contexts }
}

const SETTINGS: [Setting; 3] = [Setting::AsShipped, Setting::Fixed, Setting::Wan50ms];

fn benches(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("poll");
    // A poll takes a fifth of a second to over a second: 20 samples, each
    // of the same number of polls, not criterion's growing sample sizes of
    // 100. The slow settings get one poll a sample and overrun the 10 s
    // (criterion says so and goes on): about 20 s each, not 10.
    group.sample_size(20).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    for setting in SETTINGS {
        let c = &f.contexts[name(setting)];
        // cutover's workers, one full round.
        group.bench_with_input(BenchmarkId::new("cutover_workers", name(setting)), c, |b, c| {
            b.iter(|| f.rt.block_on(workers_round(c)))
        });
        // Baseline: the same fetches awaited one after another.
        group.bench_with_input(BenchmarkId::new("sequential_baseline", name(setting)), c, |b, c| {
            b.iter(|| f.rt.block_on(sequential(c)))
        });
    }
    group.finish();
}

fn main() {
    let run_start = SystemTime::now();
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    // A count, not a timing: AWS calls of one full poll cycle.
    let f = fixture();
    let c = &f.contexts[name(Setting::AsShipped)];
    c.clients.reset_calls();
    f.rt.block_on(workers_round(c));
    println!("AWS calls per full poll cycle of runbooks/demo.toml: {}", c.clients.calls_total());
    for (op, n) in c.clients.calls_by_operation() {
        println!("  {op:<32} {n}");
    }
    benches(&mut criterion, &f);
    criterion.final_summary();
    let ids: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|s| (format!("poll/cutover_workers/{}", name(*s)), format!("poll/sequential_baseline/{}", name(*s))))
        .collect();
    let rows: Vec<(&str, Option<&str>)> =
        ids.iter().flat_map(|(ours, base)| [(ours.as_str(), Some(base.as_str())), (base.as_str(), None)]).collect();
    summary::print(run_start, &rows);
    let Fixture { rt, sandboxes, proxy, .. } = f;
    proxy.abort();
    rt.block_on(async {
        for sb in sandboxes {
            sb.down().await;
        }
    });
}
