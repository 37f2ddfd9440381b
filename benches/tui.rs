//! Cockpit figures, each against a named baseline in the same run:
//! 1. render time of a full 160×48 frame with 200 targets, 50 instances × 2
//!    Redis endpoints and 8 phases × 20 items, against a plain Paragraph of
//!    the same screen text (the floor of drawing that many cells);
//! 2. key-to-frame latency of the real event loop while every AWS call takes
//!    2 s (a delay proxy in front of moto), against a taws-style loop that
//!    awaits an AWS call before drawing.
//!
//! Run: `cargo bench --bench tui` (needs moto and redis-server, as the tests).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use cutover::analysis::reachability::{IngressRule, SecurityGroup};
use cutover::aws::cloudwatch::{AlarmState, Series};
use cutover::aws::ec2::Instance;
use cutover::aws::elb::{LoadBalancer, Target, TargetGroup};
use cutover::aws::sts::Identity;
use cutover::live::fetch::{EnvironmentData, HealthProbe, RedisInfo, SideWeight, TrafficData};
use cutover::live::{LiveEvent, Update};
use cutover::runbook::Metric;
use cutover::tui::app::{App, Header};
use cutover::tui::keys::Keymap;
use cutover::tui::state::{Event, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::widgets::Paragraph;

#[allow(dead_code)]
#[path = "../tests/common/reliability.rs"]
mod reliability;

fn big_runbook() -> cutover::runbook::Runbook {
    let mut t = String::from(
        r#"[runbook]
name = "big"
[environments.blue]
load_balancer = "blue-alb"
target_groups = ["blue-web"]
instances = { tags = { Env = "blue" } }
redis = [{ name = "cache-a", url = "redis://127.0.0.1:1/0" }, { name = "cache-b", url = "redis://127.0.0.1:2/0" }]
[environments.green]
load_balancer = "green-alb"
target_groups = ["green-web"]
instances = { tags = { Env = "green" } }
uses_redis = ["cache-a", "cache-b"]
[dns]
zone = "example.com"
record = "app.example.com"
type = "CNAME"
ttl = 60
set_identifiers = { blue = "blue", green = "green" }
[rollout]
from = "blue"
to = "green"
steps = [10, 50, 100]
soak = "5m"
"#,
    );
    for p in 0..8 {
        let _ = write!(t, "[[phases]]\nid = \"p{p}\"\ntitle = \"Phase {p}\"\n");
        for i in 0..20 {
            let body = match i % 3 {
                0 => "kind = \"manual\"".to_string(),
                1 => "kind = \"check\"\ncheck = \"targets_healthy\"\nenvironment = \"green\"".to_string(),
                _ => "kind = \"check\"\ncheck = \"redis_reachable\"\nenvironment = \"blue\"".to_string(),
            };
            let _ = write!(
                t,
                "[[phases.items]]\nid = \"i{i}\"\ntitle = \"Item {i} of phase {p} with a realistic title\"\n{body}\n"
            );
        }
    }
    cutover::runbook::parse("big.toml", &t).expect("bench runbook")
}

fn big_live(now: SystemTime) -> Vec<LiveEvent> {
    let ev = |update| LiveEvent { at: now, update };
    let mut out = vec![
        ev(Update::Identity(Ok(Identity { account: "123456789012".into(), arn: "arn".into(), expires_at: None }))),
        ev(Update::Traffic(Ok(TrafficData {
            zone_id: "Z".into(),
            last_change: None,
            rollout: None,
            sides: ["blue", "green"]
                .iter()
                .map(|e| SideWeight {
                    environment: (*e).into(),
                    set_identifier: (*e).into(),
                    weight: Some(50),
                    share_percent: 50.0,
                    ttl: Some(60),
                    values: vec![],
                    ..Default::default()
                })
                .collect(),
            shared_by: None,
        }))),
    ];
    for (e, env) in ["blue", "green"].iter().enumerate() {
        let instances: Vec<Instance> = (0..25)
            .map(|i| Instance {
                id: format!("i-{env}{i:04}"),
                name: Some(format!("{env}-web-{i}")),
                state: "running".into(),
                instance_type: "m6i.large".into(),
                availability_zone: format!("eu-west-1{}", ['a', 'b', 'c'][i % 3]),
                private_ip: Some(format!("10.0.{e}.{i}")),
                ipv6_addresses: vec![],
                vpc_id: None,
                security_groups: vec![format!("sg-{env}app")],
                tags: BTreeMap::new(),
            })
            .collect();
        let targets: Vec<Target> = (0..100)
            .map(|i| Target {
                id: format!("i-{env}{:04}", i % 25),
                port: Some(8000 + i as u16),
                availability_zone: None,
                state: ["healthy", "healthy", "unhealthy", "initial"][i % 4].into(),
                reason: (i % 4 >= 2).then(|| "Target.ResponseCodeMismatch".into()),
                description: Some("Health checks failed with these codes: [503]".into()),
            })
            .collect();
        let group = |n: &str| SecurityGroup {
            id: format!("sg-{n}"),
            name: n.into(),
            ingress: vec![IngressRule {
                protocol: "tcp".into(),
                from_port: Some(6379),
                to_port: Some(6379),
                groups: vec!["sg-blueapp".into()],
                cidrs: vec![],
                prefix_lists: vec![],
            }],
        };
        for i in &instances {
            out.push(ev(Update::Health {
                instance_id: i.id.clone(),
                result: Ok(HealthProbe::Answered {
                    url: "http://127.0.0.1:1/health".into(),
                    status: 200,
                    latency_ms: 3.0,
                    redis_ok: Some(true),
                    redis_error: None,
                    body: String::new(),
                }),
            }));
        }
        out.push(ev(Update::Environment {
            environment: (*env).into(),
            result: Ok(EnvironmentData {
                load_balancer: Some(LoadBalancer {
                    name: format!("{env}-alb"),
                    arn: "arn".into(),
                    dns_name: "x".into(),
                    zones: vec!["eu-west-1a".into(), "eu-west-1b".into()],
                    vpc_id: None,
                }),
                target_groups: vec![TargetGroup {
                    name: format!("{env}-web"),
                    arn: format!("arn:tg/{env}"),
                    load_balancer_arns: vec![],
                    health_check_path: None,
                    health_check_interval_seconds: None,
                    attributes: Default::default(),
                    targets,
                }],
                instances,
                redis_groups: BTreeMap::from([
                    ("cache-a".into(), vec![group("ra")]),
                    ("cache-b".into(), vec![group("rb")]),
                ]),
                group_names: BTreeMap::new(),
            }),
        }));
    }
    for r in ["cache-a", "cache-b"] {
        out.push(ev(Update::Redis {
            endpoint: r.into(),
            result: Ok(RedisInfo {
                ping_ms: 0.3,
                version: "7.0".into(),
                role: "master".into(),
                used_memory: 1 << 20,
                keys: 100_000,
                expiring_keys: 50_000,
            }),
        }));
    }
    out.push(ev(Update::Alarms(Ok((0..4)
        .map(|i| AlarmState { name: format!("alarm-{i}"), state: "OK".into(), reason: String::new() })
        .collect()))));
    let pts: Vec<(i64, f64)> = (0..15).map(|i| (i * 60, (i * 7 % 11) as f64)).collect();
    out.push(ev(Update::Metrics(Ok(["blue", "green"]
        .iter()
        .flat_map(|e| {
            [Metric::RequestCount, Metric::Target5xx, Metric::TargetResponseTime].map(|m| Series {
                environment: (*e).into(),
                metric: m,
                stat: "Sum".into(),
                dimensions: vec![],
                points: pts.clone(),
                error: None,
            })
        })
        .collect()))));
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Under `cargo test` (no --bench argument) the benches only smoke-test.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn render_bench() {
    let now = SystemTime::now();
    let mut app = App::new(
        big_runbook(),
        "eu-west-1".into(),
        Header { profile: None, read_only: false },
        Keymap::default(),
        Default::default(),
        "bench".into(),
        now,
    );
    for e in big_live(now) {
        update(&mut app, Event::Live(e));
    }
    app.size = (160, 48);
    let targets: usize =
        app.snap.environments.iter().map(|e| e.aws.value.as_ref().unwrap().target_groups[0].targets.len()).sum();
    let instances: usize = app.snap.environments.iter().map(|e| e.aws.value.as_ref().unwrap().instances.len()).sum();
    let items: usize = app.rb.phases.iter().map(|p| p.items.len()).sum();
    assert_eq!((targets, instances, items), (200, 50, 160));
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    term.draw(|f| cutover::tui::view::render(&app, f)).unwrap();
    let text: String = {
        let buf = term.backend().buffer().clone();
        (0..48).map(|y| (0..160).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n").collect()
    };
    let n = if bench_mode() { 400 } else { 5 };
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        term.draw(|f| cutover::tui::view::render(&app, f)).unwrap();
        ours.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        term.draw(|f| f.render_widget(Paragraph::new(text.as_str()), f.area())).unwrap();
        floor.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (o, p) = (median(ours), median(floor));
    println!(
        "render of a full 160x48 frame (200 targets, 50 instances x 2 Redis, 8 phases x 20 items), {n} runs each, interleaved:"
    );
    println!("  cutover's render (snapshot already derived)   median {o:8.1} µs");
    println!("  baseline: Paragraph of the same screen text    median {p:8.1} µs");
    println!("  cutover / baseline: {:.2}x", o / p);
    let t = Instant::now();
    for _ in 0..n {
        update(&mut app, Event::Tick(SystemTime::now()));
    }
    println!(
        "  deriving the snapshot (update on a clock tick)  mean {:8.1} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

async fn latency_bench() {
    use cutover::live::probe::ProbePolicy;
    use cutover::live::workers::{self, WorkerContext};
    use cutover::sandbox::{Sandbox, SandboxOptions};
    let rb =
        cutover::runbook::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let sb = Sandbox::up(
        &rb,
        SandboxOptions { region: "eu-west-1".into(), moto_endpoint: None, traffic: Default::default() },
    )
    .await
    .expect("sandbox");
    let moto: std::net::SocketAddr = sb.endpoint.trim_start_matches("http://").parse().unwrap();
    let (slow, proxy) = cutover::sandbox::latency::delay_proxy(moto, Duration::from_secs(2)).await.unwrap();
    let clients =
        cutover::aws::Clients::new(&cutover::aws::sandbox_config(&format!("http://{slow}"), &sb.region).await);

    // A single AWS call through the proxy, to show the delay is real.
    let t = Instant::now();
    cutover::aws::sts::identity(&clients).await.unwrap();
    println!("one AWS call through the delay proxy: {:.2} s", t.elapsed().as_secs_f64());

    // cutover's loop: workers poll through the slow proxies while keys arrive.
    let mut ctx =
        WorkerContext::new(rb.clone(), cutover::aws::SideClients::one(clients.clone()), ProbePolicy::LoopbackOnly);
    ctx.vars.extend(sb.env_vars(&rb));
    // Slow Redis too: every Redis command 2 s late, behind its own delay proxy.
    let mut redis_proxies = Vec::new();
    for (var, url) in sb.env_vars(&rb).into_iter().filter(|(k, _)| k.ends_with("_REDIS_URL")) {
        let u = url::Url::parse(&url).unwrap();
        let upstream: std::net::SocketAddr = format!("127.0.0.1:{}", u.port().unwrap()).parse().unwrap();
        let (addr, task) = cutover::sandbox::latency::delay_proxy(upstream, Duration::from_secs(2)).await.unwrap();
        ctx.vars.insert(var, format!("redis://{addr}{}", u.path()));
        redis_proxies.push(task);
    }
    ctx.intervals.traffic = Duration::from_secs(1);
    ctx.intervals.environment = Duration::from_secs(1);
    let (tx, mut from_workers) = tokio::sync::mpsc::channel(1024);
    let w = workers::spawn(std::sync::Arc::new(ctx), tx);
    // When each worker reply reaches the loop's channel.
    let (relay, rx) = tokio::sync::mpsc::channel(1024);
    let arrived: std::sync::Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let arrived_in = arrived.clone();
    tokio::spawn(async move {
        while let Some(ev) = from_workers.recv().await {
            arrived_in.lock().unwrap().push(Instant::now());
            if relay.send(ev).await.is_err() {
                return;
            }
        }
    });
    let mut app = App::new(
        rb.clone(),
        sb.region.clone(),
        Header { profile: None, read_only: false },
        Keymap::default(),
        Default::default(),
        "bench".into(),
        SystemTime::now(),
    );
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    let (ktx, krx) = tokio::sync::mpsc::unbounded_channel::<(Instant, TermEvent)>();
    let sent: std::sync::Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let sent_in = sent.clone();
    let input = tokio_stream_from(krx, sent_in);
    // Keys arrive while slow replies land: the first ones start after 2.5 s
    // (the first 2 s replies are coming in) and they go on for over 3 s more.
    let (presses, gap) = if bench_mode() { (200, 25) } else { (12, 300) };
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        for i in 0..presses {
            let _ = (i, ktx.send((Instant::now(), key(KeyCode::Tab))));
            tokio::time::sleep(Duration::from_millis(gap)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = ktx.send((Instant::now(), key(KeyCode::Char('q'))));
    });
    // Every Tab moves the focus, so a frame whose focus differs from the last
    // one drawn is the frame of the next key.
    let mut frames: Vec<Instant> = Vec::new();
    let mut last_focus = None;
    let services = cutover::tui::Services { workers: &w, actions: None };
    cutover::tui::event_loop(&mut term, &mut app, input, rx, services, |a| {
        if last_focus.is_some_and(|f| f != a.focus) {
            frames.push(Instant::now());
        }
        last_focus = Some(a.focus);
    })
    .await
    .unwrap();
    feeder.await.unwrap();
    drop(w);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(frames.len(), sent.len(), "one frame per key");
    // Slow replies really landed while keys were being drawn.
    let (first_key, last_key) = (sent[0], sent[sent.len() - 1]);
    let landed = arrived.lock().unwrap().iter().filter(|t| **t > first_key && **t < last_key).count();
    assert!(landed > 0, "no slow reply landed while keys were being drawn");
    let mut lat: Vec<f64> =
        sent.iter().zip(&frames).map(|(s, f)| f.duration_since(*s).as_secs_f64() * 1000.0).collect();
    let n = lat.len();
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));

    // Baseline: a loop that awaits the AWS call before drawing each key's frame.
    let mut base = Vec::new();
    for _ in 0..if bench_mode() { 10 } else { 2 } {
        let t = Instant::now();
        let mut zone = None;
        let _ = cutover::live::fetch::traffic(&clients, &rb, &mut zone).await;
        update(&mut app, Event::Key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE)));
        term.draw(|f| cutover::tui::view::render(&app, f)).unwrap();
        base.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (b50, b99) = (pct(&mut base, 0.5), pct(&mut base, 0.99));
    println!("key-to-frame latency while every AWS call and every Redis command takes >= 2 s:");
    println!("  cutover's event loop ({n} keys, {gap} ms apart)    p50 {p50:8.2} ms  p99 {p99:8.2} ms");
    println!("  baseline: await AWS then draw ({} keys)          p50 {b50:8.2} ms  p99 {b99:8.2} ms", base.len());
    println!("  baseline / cutover at p99: {:.0}x", b99 / p99);
    // Behaviour, not a figure: no key's frame waited for a slow call.
    let worst = lat.iter().copied().fold(0.0, f64::max);
    assert!(worst < 1000.0, "a key waited {worst:.0} ms for its frame: the loop awaited slow I/O");
    assert!(b99 >= 2000.0, "the baseline really awaited a slow call: {b99:.0} ms");
    reliability::record(
        "slow-dependencies",
        format!(
            "The cockpit's event loop with every AWS call and every Redis command 2 s late (delay proxies): all {n} \
             keys, sent while {landed} slow replies landed, drew their frame, the slowest in {worst:.1} ms, while a \
             loop that awaits AWS before drawing took {b99:.0} ms. Figures: `cargo bench --bench tui`"
        ),
    );
    proxy.abort();
    for t in redis_proxies {
        t.abort();
    }
    sb.down().await;
}

/// Turns the key channel into the loop's input stream, noting when each key
/// is handed to the loop and counting keys for the frame callback.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(Instant, TermEvent)>,
    sent: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
) -> impl futures::Stream<Item = Result<TermEvent, String>> + Unpin {
    Box::pin(futures::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        std::task::Poll::Ready(Some((at, ev))) => {
            if !matches!(&ev, TermEvent::Key(k) if k.code == KeyCode::Char('q')) {
                sent.lock().unwrap().push(at);
            }
            std::task::Poll::Ready(Some(Ok(ev)))
        }
        std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
        std::task::Poll::Pending => std::task::Poll::Pending,
    }))
}

fn main() {
    render_bench();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(latency_bench());
}
