//! Fault injection around AWS: a proxy in front of moto answers a share of
//! requests (or all of them) with AWS's own throttling errors. What cutover
//! shows and how many calls it makes are asserted; nothing is mocked.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use common::*;
use cutover::live::Session;
use cutover::live::probe::ProbePolicy;
use cutover::live::workers::WorkerContext;
use cutover::sandbox::Sandbox;

/// cutover's workers with AWS at `endpoint`, run for `secs`: (state, calls).
async fn poll_for(sb: &Sandbox, rb: &cutover::runbook::Runbook, endpoint: &str, secs: u64) -> (Session, u64) {
    let clients = cutover::aws::Clients::new(&cutover::aws::sandbox_config(endpoint, &sb.region).await);
    let mut ctx =
        WorkerContext::new(rb.clone(), cutover::aws::SideClients::one(clients.clone()), ProbePolicy::LoopbackOnly);
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

    // Every third call throttled once (its retry goes through): the SDK's
    // retries absorb it and values stay fresh. (Were retries throttled too,
    // as AWS may, a call now and then meets three throttles in a row and its
    // error shows: honest, but not what this part checks.)
    let (addr, proxy, counts) = cutover::sandbox::aws_proxy::start(moto, 3).await.unwrap();
    counts.retries_pass.store(true, Ordering::SeqCst);
    let (s, partial) = poll_for(&sb, &rb, &format!("http://{addr}"), secs).await;
    let calls = partial;
    proxy.abort();
    assert!(counts.throttled.load(Ordering::SeqCst) > 0, "the proxy throttled");
    // A client allowed one attempt only would fail here.
    assert_eq!(counts.throttled_last_attempts.load(Ordering::SeqCst), 0, "every throttled call had a retry left");
    let (throttled, retries) = (counts.throttled.load(Ordering::SeqCst), counts.retries.load(Ordering::SeqCst));
    assert!(retries >= throttled, "each of the {throttled} throttled calls was retried ({retries} retries)");
    assert_eq!(counts.seen.load(Ordering::SeqCst), calls, "every attempt counted, retries included");
    assert!(calls <= baseline * 2, "retries stay bounded: {calls} calls vs {baseline} unthrottled");
    let st = &s.state;
    assert!(
        st.traffic.error.is_none() && recent(st.traffic.updated_at, Duration::from_secs(10)),
        "{:?}",
        st.traffic.error
    );
    let names: Vec<&String> = st.environments.keys().collect();
    assert_eq!(names, rb.environments.keys().collect::<Vec<_>>(), "every environment read");
    for (name, env) in &st.environments {
        assert!(env.value.is_some() && env.error.is_none(), "{name}: {:?}", env.error);
    }

    // Everything throttled after a first good round: values are marked stale
    // with the error, never shown as fresh, and the workers back off instead
    // of hammering, while Redis and /health (not behind AWS) stay live.
    let (addr, proxy, counts) = cutover::sandbox::aws_proxy::start(moto, 0).await.unwrap();
    let clients =
        cutover::aws::Clients::new(&cutover::aws::sandbox_config(&format!("http://{addr}"), &sb.region).await);
    let mut ctx =
        WorkerContext::new(rb.clone(), cutover::aws::SideClients::one(clients.clone()), ProbePolicy::LoopbackOnly);
    ctx.vars.extend(sb.env_vars(&rb));
    // Every source polls within the throttled window (metrics default to 30 s).
    ctx.intervals.metrics = Duration::from_secs(5);
    ctx.intervals.alarms = Duration::from_secs(5);
    let mut session = Session::start(Arc::new(ctx));
    session.first_round(&rb, Duration::from_secs(30)).await;
    assert!(session.state.traffic.value.is_some() && !session.state.health.is_empty(), "a first good round");
    counts.every.store(1, Ordering::SeqCst);
    let (before_calls, before_throttled) = (clients.calls.total(), counts.throttled.load(Ordering::SeqCst));
    let throttled_from = SystemTime::now();
    session.run_until(tokio::time::Instant::now() + Duration::from_secs(secs)).await;
    proxy.abort();
    let calls = clients.calls.total() - before_calls;
    assert_eq!(counts.throttled.load(Ordering::SeqCst) - before_throttled, calls, "every request was throttled");
    // The proxy reads the SDK's attempt header (else the first part's count
    // of zero and its retries would be zero whatever the SDK did).
    assert!(counts.throttled_last_attempts.load(Ordering::SeqCst) > 0, "calls ran out of attempts");
    assert!(calls <= baseline * 2, "backoff bounds the calls: {calls} vs {baseline} unthrottled");
    let st = &session.state;
    let throttled = |what: &str, error: Option<&str>, stale: bool| {
        let e = error.unwrap_or("");
        assert!(stale, "{what} is marked stale");
        assert!(
            e.contains("Throttling") || e.contains("Rate exceeded") || e.contains("RequestLimitExceeded"),
            "{what} shows the throttling error: {e:?}"
        );
    };
    throttled("traffic", st.traffic.error.as_deref(), st.traffic.is_stale());
    assert!(st.traffic.value.is_some(), "the last good weights are kept");
    throttled("alarms", st.alarms.error.as_deref(), st.alarms.is_stale());
    throttled("metrics", st.metrics.error.as_deref(), st.metrics.is_stale());
    assert_eq!(st.environments.len(), rb.environments.len());
    for (name, env) in &st.environments {
        throttled(name, env.error.as_deref(), env.is_stale());
    }
    // Redis and /health do not go through AWS: they stayed live throughout.
    let since = SystemTime::now().duration_since(throttled_from).unwrap_or_default();
    assert!(!st.redis.is_empty() && !st.health.is_empty());
    for (name, r) in &st.redis {
        assert!(r.error.is_none() && recent(r.updated_at, Duration::from_secs(10)), "{name}: {:?}", r.error);
    }
    for (id, h) in &st.health {
        assert!(recent(h.updated_at, Duration::from_secs(10)) && !h.is_stale(), "/health of {id} live: {:?}", h.error);
        assert!(h.updated_at.is_some_and(|t| t > throttled_from), "{id} probed while AWS was throttled ({since:?})");
    }
    eprintln!(
        "AWS calls in {secs} s: {baseline} unthrottled, {partial} with every third throttled once, {calls} all throttled"
    );
    sb.down().await;
    record(
        "throttling",
        format!(
            "The cockpit's workers for {secs} s: {baseline} AWS calls unthrottled; {partial} with every third call \
             throttled once (retries absorbed it, every value fresh); {calls} with every call throttled (backoff; no value \
             shown as fresh: traffic, alarms, metrics and every environment stale with the Throttling error), \
             while Redis and every instance's /health stayed live"
        ),
    );
}
