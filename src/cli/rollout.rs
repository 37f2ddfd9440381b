//! `cutover rollout`, `abort`, `pause` and `promote`.

use std::time::Duration;

use super::{Failure, GlobalArgs};
use crate::drive::rollout::{self, Context, Outcome, RolloutError};
use crate::runbook::Runbook;
use crate::store::rollout::{Request, RequestNote};

/// Authorised (`authority::authorise`: --read-only and the account, refusals
/// audited), then --yes.
async fn authorised(
    rb: &Runbook,
    g: &GlobalArgs,
    yes: bool,
    action: &str,
    what: &str,
) -> Result<(crate::aws::SideClients, String, crate::authority::Actor), Failure> {
    // A rollout, an abort, a pause and a promote change the weights: the
    // hosted zone's account ([dns]) is checked.
    let authorised = super::authorised(rb, g, crate::runbook::Side::Dns, action, what).await?;
    if !yes {
        return Err(Failure::bad_input(format!(
            "refused: {what} needs --yes (or use the cockpit, which asks); nothing was changed"
        )));
    }
    Ok(authorised)
}

/// A start refused (exit 2) once the caller is known, audited as every
/// start refused is; a failure to check (exit 1) refused nothing.
fn audited_refusal(rb: &Runbook, actor: &crate::authority::Actor, f: Failure) -> Failure {
    use crate::store::audit::{AuditLog, Stage};
    if f.status != 2 {
        return f;
    }
    let line =
        actor.audit_line(&rb.name, "rollout start".into(), Stage::Refused, Default::default(), f.message.clone());
    match AuditLog::for_runbook(&rb.name).append(&line) {
        Ok(()) => f,
        Err(e) => Failure { status: 1, message: format!("{} (and the refusal could not be audited: {e})", f.message) },
    }
}

/// A drive error: refusals (bad input, state to reconcile) exit 2, the rest 1.
fn failed(e: RolloutError) -> Failure {
    match e {
        RolloutError::Refused(message) => Failure { status: 2, message },
        RolloutError::Failed(message) => Failure { status: 1, message },
    }
}

fn print_preview(lines: Vec<String>) {
    outln!("dry run: nothing was sent and no state was written");
    for l in lines {
        outln!("{l}");
    }
}

pub struct RolloutArgs {
    pub yes: bool,
    pub adopt_live: bool,
    pub expect_live: Option<(u8, u8)>,
    pub restart: bool,
    pub dry_run: bool,
    pub take_over: bool,
}

/// Exit 0 done, 1 aborted, 3 paused for a person, 2 refused.
pub fn run(rb: Runbook, g: &GlobalArgs, args: RolloutArgs) -> Result<u8, Failure> {
    super::runtime()?.block_on(async {
        if args.dry_run {
            let super::Acting { clients, region, .. } = super::acting(&rb, g, &crate::runbook::Side::Dns).await?;
            super::in_runbook_region(&clients, &rb, &region).await?;
            let p = rollout::preview(&rb, &clients, args.adopt_live, args.expect_live, (args.restart, args.take_over)).await;
            let p = p.map_err(failed)?;
            // Exit as the run would: 2 where it would be refused.
            let refused = p.verdict.refused();
            print_preview(p.lines);
            return Ok(if refused { 2 } else { 0 });
        }
        let (clients, region, actor) = authorised(&rb, g, args.yes, "rollout start", "a rollout").await?;
        // Credentials that cannot be refreshed must outlast the whole rollout.
        let checked = match rollout::credentials_outlast(&rb, &clients, std::time::SystemTime::now()) {
            Err(why) => Err(Failure::bad_input(why)),
            Ok(()) => super::in_runbook_region(&clients, &rb, &region).await,
        };
        checked.map_err(|f| audited_refusal(&rb, &actor, f))?;
        let (adopt_live, restart, take_over) = (args.adopt_live, args.restart, args.take_over);
        let expect_live = args.expect_live;
        let cx = Context { rb, clients, actor, vars: Default::default(), adopt_live, expect_live, restart, take_over };
        let mut say = |l: &str| outln!("{} {l}", crate::time::rfc3339(std::time::SystemTime::now()).get(11..19).unwrap_or(""));
        match rollout::run(&cx, &mut say).await {
            Ok(Outcome::Done) => {
                outln!("rollout complete: {} has 100%", cx.rb.rollout.to);
                Ok(0)
            }
            Ok(Outcome::Aborted(why)) => {
                outln!("rollout ABORTED and rolled back: {why}");
                Ok(1)
            }
            Ok(Outcome::Paused(why)) => {
                outln!("rollout PAUSED for a person: {why}\nrun `cutover rollout` again to resume, or `cutover abort` to roll back");
                Ok(3)
            }
            Err(e) => Err(failed(e)),
        }
    })
}

pub fn abort(rb: Runbook, g: &GlobalArgs, yes: bool, reason: Option<String>, dry_run: bool) -> Result<u8, Failure> {
    super::runtime()?.block_on(async {
        if dry_run {
            let super::Acting { clients, .. } = super::acting(&rb, g, &crate::runbook::Side::Dns).await?;
            print_preview(rollout::abort_preview(&rb, &clients).await.map_err(failed)?);
            return Ok(0);
        }
        let (clients, _, actor) = authorised(&rb, g, yes, "rollout abort", "an abort").await?;
        let cx = Context {
            rb,
            clients,
            actor,
            vars: Default::default(),
            adopt_live: true,
            expect_live: None,
            restart: false,
            take_over: false,
        };
        let reason = reason.unwrap_or_else(|| format!("aborted by {}", crate::store::operator()));
        let mut say = |l: &str| outln!("{l}");
        let started = std::time::Instant::now();
        let done = rollout::abort(&cx, &reason, &mut say).await.map_err(failed)?;
        outln!("{done} ({:.2} s)", started.elapsed().as_secs_f64());
        Ok(0)
    })
}

/// Pausing changes no AWS resource, so it needs no --yes; a read-only
/// session still only watches, and another account's credentials are refused.
pub fn pause(rb: Runbook, g: &GlobalArgs, reason: Option<String>) -> Result<u8, Failure> {
    let text = reason.unwrap_or_else(|| format!("paused by {}", crate::store::operator()));
    super::runtime()?.block_on(async {
        let (_, _, who) = authorised(&rb, g, true, "rollout pause", "pausing a rollout").await?;
        let done = rollout::request(&who, &rb.name, Request::Pause, RequestNote::new(text), Duration::from_secs(30))
            .await
            .map_err(failed)?;
        outln!("{done}");
        Ok(0)
    })
}

pub fn promote(rb: Runbook, g: &GlobalArgs, yes: bool) -> Result<u8, Failure> {
    let text = format!("promoted by {}", crate::store::operator());
    super::runtime()?.block_on(async {
        let (_, _, who) = authorised(&rb, g, yes, "rollout promote", "promoting a step").await?;
        // The step read now is the one promoted: if the rollout moves on
        // before it looks, the next step's soak is not skipped unseen.
        let engine = rollout::load_state(&rb.name).map_err(|e| failed(RolloutError::Failed(e)))?.map(|s| s.engine);
        if let Some(e) = &engine {
            outln!("promoting step {} of {} ({})", e.step.saturating_add(1), rb.rollout.steps.len(), e.phase.name());
        }
        let (step, soak_since) =
            (engine.as_ref().map(|e| e.step), engine.as_ref().and_then(|e| e.phase.soaking_since()));
        let note = RequestNote { text, step, soak_since };
        let done =
            rollout::request(&who, &rb.name, Request::Promote, note, Duration::from_secs(30)).await.map_err(failed)?;
        outln!("{done}");
        Ok(0)
    })
}
