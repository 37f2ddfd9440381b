//! Key-to-frame latency of the real event loop while every AWS call takes
//! 2 s (a delay proxy in front of moto), against a taws-style loop that
//! awaits an AWS call before drawing. An end-to-end timing of the loop among
//! live workers and sandbox processes, so it keeps its own harness; the
//! render time, in process, is `benches/render.rs` under criterion.
//!
//! Run: `cargo bench --bench tui` (needs moto and redis-server, as the tests).

use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use cutover::tui::app::{App, Header};
use cutover::tui::keys::Keymap;
use cutover::tui::state::{Event, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

#[allow(dead_code)]
#[path = "../tests/common/reliability.rs"]
mod reliability;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Under `cargo test` (no --bench argument) the benches only smoke-test.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
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
        SandboxOptions {
            region: "eu-west-1".into(),
            moto_endpoint: None,
            traffic: Default::default(),
            team_state: None,
        },
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
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(latency_bench());
}
