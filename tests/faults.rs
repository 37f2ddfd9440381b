//! Fault injection around AWS: a proxy in front of moto answers a share of
//! requests (or all of them) with AWS's own throttling errors. What cutover
//! shows and how many calls it makes are asserted; nothing is mocked.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use common::*;
use cutover::live::Session;
use cutover::live::workers::WorkerContext;
use cutover::sandbox::Sandbox;
use cutover::status::probe::ProbePolicy;

/// cutover's workers with AWS at `endpoint`, run for `secs`: (state, calls).
async fn poll_for(sb: &Sandbox, rb: &cutover::runbook::Runbook, endpoint: &str, secs: u64) -> (Session, u64) {
    let clients = cutover::aws::Clients::new(&cutover::aws::sandbox_config(endpoint, &sb.region).await);
    let mut ctx = WorkerContext::new(rb.clone(), clients.clone(), ProbePolicy::LoopbackOnly);
    ctx.vars.extend(sb.env_vars(rb));
    let mut session = Session::start(Arc::new(ctx));
    session.run_until(tokio::time::Instant::now() + Duration::from_secs(secs)).await;
    (session, clients.calls.total())
}

fn recent(t: Option<SystemTime>, within: Duration) -> bool {
    t.is_some_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < within)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_keeps_values_live_or_honestly_stale_and_the_call_count_bounded() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "us-east-2").await;
    let moto: std::net::SocketAddr = sb.endpoint.trim_start_matches("http://").parse().unwrap();
    let secs = 20;

    let (_, baseline) = poll_for(&sb, &rb, &sb.endpoint, secs).await;
    assert!(baseline > 10, "the baseline polled: {baseline}");

    // Every third request throttled: the SDK's retries absorb it and values stay fresh.
    let (addr, proxy, counts) = cutover::sandbox::aws_proxy::start(moto, 3).await.unwrap();
    let (s, partial) = poll_for(&sb, &rb, &format!("http://{addr}"), secs).await;
    let calls = partial;
    proxy.abort();
    assert!(counts.throttled.load(Ordering::SeqCst) > 0, "the proxy throttled");
    assert_eq!(counts.seen.load(Ordering::SeqCst), calls, "every attempt counted, retries included");
    assert!(calls <= baseline * 2, "retries stay bounded: {calls} calls vs {baseline} unthrottled");
    let st = &s.state;
    assert!(
        st.traffic.error.is_none() && recent(st.traffic.updated_at, Duration::from_secs(10)),
        "{:?}",
        st.traffic.error
    );
    for (name, env) in &st.environments {
        assert!(env.value.is_some() && env.error.is_none(), "{name}: {:?}", env.error);
    }

    // Everything throttled: values are marked with the error, never shown as
    // fresh, and the workers back off instead of hammering.
    let (addr, proxy, counts) = cutover::sandbox::aws_proxy::start(moto, 1).await.unwrap();
    let (s, calls) = poll_for(&sb, &rb, &format!("http://{addr}"), secs).await;
    proxy.abort();
    assert_eq!(counts.throttled.load(Ordering::SeqCst), calls, "every request was throttled");
    assert!(calls <= baseline * 2, "backoff bounds the calls: {calls} vs {baseline} unthrottled");
    let st = &s.state;
    assert!(st.traffic.value.is_none(), "no value was ever read, so none is shown");
    let e = st.traffic.error.as_deref().unwrap_or("");
    assert!(e.contains("Throttling") || e.contains("Rate exceeded"), "{e}");
    for (name, env) in &st.environments {
        let e = env.error.as_deref().unwrap_or("");
        assert!(e.contains("RequestLimitExceeded") || e.contains("Throttling"), "{name}: {e}");
    }
    // Redis and /health do not go through AWS: they stay live.
    for (name, r) in &st.redis {
        assert!(r.error.is_none() && recent(r.updated_at, Duration::from_secs(10)), "{name}: {:?}", r.error);
    }
    eprintln!(
        "AWS calls in {secs} s: {baseline} unthrottled, {partial} with every third throttled, {calls} all throttled"
    );
    sb.down().await;
    record(
        "throttling",
        format!(
            "The cockpit's workers for {secs} s: {baseline} AWS calls unthrottled; {partial} with every third call \
             throttled (retries absorbed it, every value fresh); {calls} with every call throttled (backoff; no value \
             shown as fresh, each source showing the Throttling error), while Redis and /health stayed live"
        ),
    );
}
