//! `cutover rollout`, `abort`, `pause` and `promote`.

use std::time::Duration;

use super::{Failure, GlobalArgs};
use crate::drive::rollout::{self, Context, Outcome, Request, RolloutError};
use crate::runbook::Runbook;

async fn context(rb: Runbook, g: &GlobalArgs, adopt_live: bool, restart: bool) -> Result<Context, Failure> {
    let super::Acting { clients, region, account } = super::acting(&rb, g).await?;
    Ok(Context { rb, clients, region, account, vars: Default::default(), adopt_live, restart })
}

fn guard(g: &GlobalArgs, yes: bool, what: &str) -> Result<(), Failure> {
    if g.read_only {
        return Err(Failure::bad_input(format!("refused: --read-only forbids {what}; nothing was changed")));
    }
    if !yes {
        return Err(Failure::bad_input(format!(
            "refused: {what} needs --yes (or use the cockpit, which asks); nothing was changed"
        )));
    }
    Ok(())
}

/// A drive error: refusals (bad input, state to reconcile) exit 2, the rest 1.
fn failed(e: RolloutError) -> Failure {
    match e {
        RolloutError::Refused(message) => Failure { status: 2, message },
        RolloutError::Failed(message) => Failure { status: 1, message },
    }
}

fn print_preview(lines: Vec<String>) {
    println!("dry run: nothing was sent and no state was written");
    for l in lines {
        println!("{l}");
    }
}

pub struct RolloutArgs {
    pub yes: bool,
    pub adopt_live: bool,
    pub restart: bool,
    pub dry_run: bool,
}

/// Exit 0 done, 1 aborted, 3 paused for a person, 2 refused.
pub fn run(rb: Runbook, g: &GlobalArgs, args: RolloutArgs) -> Result<u8, Failure> {
    if !args.dry_run {
        guard(g, args.yes, "a rollout")?;
    }
    super::runtime()?.block_on(async {
        let cx = context(rb, g, args.adopt_live, args.restart).await?;
        super::in_runbook_region(&cx.clients, &cx.rb, &cx.region).await?;
        if args.dry_run {
            print_preview(rollout::preview(&cx).await.map_err(failed)?.lines);
            return Ok(0);
        }
        let mut say = |l: &str| println!("{} {l}", crate::status::rfc3339(std::time::SystemTime::now()).get(11..19).unwrap_or(""));
        match rollout::run(&cx, &mut say).await {
            Ok(Outcome::Done) => {
                println!("rollout complete: {} has 100%", cx.rb.rollout.to);
                Ok(0)
            }
            Ok(Outcome::Aborted(why)) => {
                println!("rollout ABORTED and rolled back: {why}");
                Ok(1)
            }
            Ok(Outcome::Paused(why)) => {
                println!("rollout PAUSED for a person: {why}\nrun `cutover rollout` again to resume, or `cutover abort` to roll back");
                Ok(3)
            }
            Err(e) => Err(failed(e)),
        }
    })
}

pub fn abort(rb: Runbook, g: &GlobalArgs, yes: bool, reason: Option<String>, dry_run: bool) -> Result<u8, Failure> {
    if !dry_run {
        guard(g, yes, "an abort")?;
    }
    super::runtime()?.block_on(async {
        let cx = context(rb, g, true, false).await?;
        if dry_run {
            print_preview(rollout::abort_preview(&cx).await.map_err(failed)?);
            return Ok(0);
        }
        let reason = reason.unwrap_or_else(|| format!("aborted by {}", crate::progress::operator()));
        let mut say = |l: &str| println!("{l}");
        let started = std::time::Instant::now();
        let done = rollout::abort(&cx, &reason, &mut say).await.map_err(failed)?;
        println!("{done} ({:.2} s)", started.elapsed().as_secs_f64());
        Ok(0)
    })
}

/// Pausing changes no AWS resource, so it needs no --yes; a read-only
/// session still only watches.
pub fn pause(rb: Runbook, g: &GlobalArgs, reason: Option<String>) -> Result<u8, Failure> {
    guard(g, true, "pausing a rollout")?;
    let text = reason.unwrap_or_else(|| format!("paused by {}", crate::progress::operator()));
    super::runtime()?.block_on(async {
        let done = rollout::request(&rb.name, Request::Pause, &text, Duration::from_secs(30)).await.map_err(failed)?;
        println!("{done}");
        Ok(0)
    })
}

pub fn promote(rb: Runbook, g: &GlobalArgs, yes: bool) -> Result<u8, Failure> {
    guard(g, yes, "promoting a step")?;
    let text = format!("promoted by {}", crate::progress::operator());
    super::runtime()?.block_on(async {
        let done =
            rollout::request(&rb.name, Request::Promote, &text, Duration::from_secs(30)).await.map_err(failed)?;
        println!("{done}");
        Ok(0)
    })
}
