//! `cutover sandbox up` and `cutover demo`.

use std::path::PathBuf;
use std::time::Duration;

use super::{Failure, GlobalArgs, runtime};
use crate::live::Session;
use crate::live::probe::ProbePolicy;
use crate::live::workers::WorkerContext;
use crate::runbook::Runbook;
use crate::status::{snapshot, text};

use crate::sandbox::{Sandbox, SandboxOptions};

fn options(rb: &Runbook, g: &GlobalArgs, moto_endpoint: Option<String>) -> SandboxOptions {
    SandboxOptions {
        region: g.region.clone().or_else(|| rb.region.clone()).unwrap_or_else(|| "us-east-1".into()),
        moto_endpoint,
        traffic: Default::default(),
        team_state: g.state.clone(),
    }
}

async fn start(rb: &Runbook, opts: SandboxOptions) -> Result<Sandbox, Failure> {
    Sandbox::up(rb, opts).await.map_err(|e| Failure { status: 1, message: format!("sandbox: {e:#}") })
}

/// `cutover sandbox credentials`: the running sandbox's short-lived keys,
/// printed as a `credential_process` prints them (JSON, `Version` 1).
pub fn credentials(seconds: u64, role_arn: Option<String>, endpoint: Option<String>) -> Result<u8, Failure> {
    let endpoint = endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).ok_or_else(|| {
        Failure::bad_input(
            "no sandbox endpoint: pass --endpoint or set AWS_ENDPOINT_URL (from `cutover sandbox up --env-file`)",
        )
    })?;
    let url = url::Url::parse(&endpoint).map_err(|e| Failure::bad_input(format!("endpoint {endpoint}: {e}")))?;
    if !matches!(url.host_str(), Some("127.0.0.1" | "localhost")) {
        return Err(Failure::bad_input(format!(
            "refused: {endpoint} is not a sandbox (loopback only); short-lived credentials come from `cutover sandbox up`"
        )));
    }
    let mut ask = url.join("/_sandbox/credentials").map_err(|e| Failure::bad_input(e.to_string()))?;
    ask.query_pairs_mut().append_pair("seconds", &seconds.to_string());
    if let Some(r) = &role_arn {
        ask.query_pairs_mut().append_pair("role_arn", r);
    }
    runtime()?.block_on(async {
        let fail = |e: String| Failure { status: 1, message: format!("sandbox credentials: {e}") };
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| fail(e.to_string()))?
            .get(ask)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let ok = resp.status().is_success();
        let body = resp.text().await.map_err(|e| fail(e.to_string()))?;
        if !ok {
            return Err(fail(body));
        }
        outln!("{body}");
        Ok(0)
    })
}

/// Resolves when Ctrl-C or SIGTERM arrives.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn up(
    rb: Runbook,
    g: &GlobalArgs,
    env_file: Option<PathBuf>,
    moto_endpoint: Option<String>,
) -> Result<u8, Failure> {
    let opts = options(&rb, g, moto_endpoint);
    runtime()?.block_on(async {
        let sb = start(&rb, opts).await?;
        if let Some(path) = &env_file
            && let Err(e) = sb.write_env_file(&rb, path)
        {
            sb.down().await;
            return Err(Failure { status: 1, message: format!("sandbox: {e:#}") });
        }
        outln!(
            "sandbox ready: moto at {}, region {}, {} instances, {} Redis",
            sb.endpoint,
            sb.region,
            sb.world.instances.len(),
            sb.redis_urls.len()
        );
        for (k, v) in sb.env_vars(&rb) {
            outln!("  {k}={v}");
        }
        if let Some(p) = &env_file {
            outln!("environment written to {} (source it in another shell)", p.display());
        }
        outln!("Ctrl-C stops the sandbox.");
        // What cutover posts to the runbook's webhook is shown here as it arrives.
        let stop = interrupted();
        tokio::pin!(stop);
        let mut shown = 0;
        let mut show = |sb: &Sandbox| {
            let texts = sb.webhook.texts();
            for text in &texts[shown..] {
                outln!("webhook: {text}");
            }
            shown = texts.len();
        };
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            show(&sb);
        }
        show(&sb);
        sb.down().await;
        outln!("sandbox stopped");
        Ok(0)
    })
}

/// A team store (`--state s3://…` or `[team] state`) in the sandbox's S3,
/// not the one the environment's AWS chain reaches.
async fn team_store_in(sb: &Sandbox, rb: &Runbook, g: &GlobalArgs) -> Result<(), Failure> {
    let url = g.state.clone().or_else(|| rb.team.as_ref().map(|t| t.state.clone()));
    let Some(url) = url.filter(|u| u.starts_with("s3://")) else { return Ok(()) };
    let region = rb.team.as_ref().and_then(|t| t.region.clone()).unwrap_or_else(|| sb.region.clone());
    let config = crate::aws::sandbox_config(&sb.endpoint, &region).await;
    let store = crate::aws::s3::S3Backend::with_config(&url, &config).map_err(|m| Failure { status: 1, message: m })?;
    crate::store::backend::install(std::sync::Arc::new(store));
    Ok(())
}

pub fn demo(rb: Runbook, g: &GlobalArgs, plain: bool) -> Result<u8, Failure> {
    let opts = options(&rb, g, None);
    runtime()?.block_on(async {
        let sb = start(&rb, opts).await?;
        if let Err(e) = team_store_in(&sb, &rb, g).await {
            sb.down().await;
            return Err(e);
        }
        if !plain {
            let mut ctx = WorkerContext::new(rb.clone(), sb.cutover_clients(&rb).await, ProbePolicy::LoopbackOnly);
            ctx.vars.extend(sb.env_vars(&rb));
            // The sandbox publishes metrics every 5 s: show them sooner than AWS's pace.
            ctx.intervals.metrics = Duration::from_secs(10);
            let tui_opts = crate::tui::TuiOptions {
                profile: None,
                state: g.state.clone(),
                read_only: g.read_only,
                log_file: g.log_file.clone(),
            };
            let result = crate::tui::run(ctx, sb.region.clone(), tui_opts).await;
            sb.down().await;
            outln!("sandbox stopped");
            return result.map(|()| 0).map_err(|m| Failure { status: 1, message: m });
        }
        let mut ctx = WorkerContext::new(rb.clone(), sb.cutover_clients(&rb).await, ProbePolicy::LoopbackOnly);
        ctx.vars.extend(sb.env_vars(&rb));
        ctx.publish_readings = !g.read_only;
        let mut session = Session::start(std::sync::Arc::new(ctx));
        session.first_round(&rb, Duration::from_secs(20)).await;
        let stop = interrupted();
        tokio::pin!(stop);
        loop {
            let snap = snapshot(&rb, &session.state, &sb.region, std::time::SystemTime::now());
            out!(
                "\x1b[2J\x1b[H{}\n(live sandbox; refreshes every 2 s; Ctrl-C stops it and tears everything down)\n",
                text::render(&snap)
            );
            tokio::select! {
                _ = &mut stop => break,
                _ = session.run_until(tokio::time::Instant::now() + Duration::from_secs(2)) => {}
            }
        }
        sb.down().await;
        outln!("sandbox stopped");
        Ok(0)
    })
}
