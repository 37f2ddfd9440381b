//! `cutover status`: a headless snapshot of everything the cockpit shows.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::{Failure, GlobalArgs};
use crate::live::Session;
use crate::live::probe::ProbePolicy;
use crate::live::workers::WorkerContext;
use crate::runbook::Runbook;
use crate::status::{Snapshot, snapshot, text};

pub struct StatusArgs {
    pub json: bool,
    pub watch: bool,
    pub interval: Duration,
}

/// Refuses a snapshot whose identity (the hosted zone's side) is in an
/// account other than that side's.
fn account_mismatch(rb: &Runbook, snap: &Snapshot) -> Option<Failure> {
    let want = &rb.side_account(&crate::runbook::Side::Dns)?;
    let got = &snap.identity.value.as_ref()?.account;
    (got != want).then(|| {
        Failure::bad_input(format!(
            "{}: runbook is for account {want} but the credentials are for account {got}; use the profile for {want} (--profile)",
            rb.source
        ))
    })
}

fn print(snap: &Snapshot, args: &StatusArgs) {
    let mut out = std::io::stdout().lock();
    let _ = if args.json {
        let body = if args.watch { serde_json::to_string(snap) } else { serde_json::to_string_pretty(snap) };
        writeln!(out, "{}", body.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
    } else {
        if args.watch {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        write!(out, "{}", text::render(snap))
    };
    let _ = out.flush();
}

pub fn run(rb: Runbook, g: &GlobalArgs, args: StatusArgs) -> Result<u8, Failure> {
    super::runtime()?.block_on(async {
        let (clients, region) = super::aws_clients(&rb, g).await;
        let mut ctx = WorkerContext::new(rb.clone(), clients.clone(), ProbePolicy::from_env());
        ctx.publish_readings = !g.read_only;
        let ctx = Arc::new(ctx);
        let mut session = Session::start(ctx);
        // The region check runs beside the first round, and only a check that
        // ran and found none of the load balancers refuses: during an AWS
        // outage `status` still shows every value, the AWS ones with their error.
        // A refusal does not wait for the first round.
        {
            let check = super::region_check(&clients, &rb, &region);
            let first_round = session.first_round(&rb, Duration::from_secs(30));
            tokio::pin!(check, first_round);
            let mut round_done = false;
            let found = tokio::select! {
                found = &mut check => found,
                () = &mut first_round => {
                    round_done = true;
                    check.await
                }
            };
            match found {
                super::RegionCheck::Elsewhere(m) => return Err(Failure::bad_input(m)),
                super::RegionCheck::Unknown(e) => {
                    tracing::warn!(error = %e, "status: cannot check the runbook's region")
                }
                super::RegionCheck::Here => {}
            }
            if !round_done {
                first_round.await;
            }
        }
        let mut snap = snapshot(&rb, &session.state, &region, std::time::SystemTime::now());
        if let Some(f) = account_mismatch(&rb, &snap) {
            return Err(f);
        }
        print(&snap, &args);
        if args.watch {
            let stop = tokio::signal::ctrl_c();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = session.run_until(tokio::time::Instant::now() + args.interval) => {}
                }
                snap = snapshot(&rb, &session.state, &region, std::time::SystemTime::now());
                print(&snap, &args);
            }
        }
        Ok(if snap.blocking_checks_pass() { 0 } else { 1 })
    })
}
