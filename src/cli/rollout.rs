//! `cutover rollout` and `cutover abort`.

use super::{Failure, GlobalArgs};
use crate::drive::rollout::{self, Context, Outcome};
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

/// Exit 0 done, 1 aborted, 3 paused for a person, 2 refused.
pub fn run(rb: Runbook, g: &GlobalArgs, yes: bool, adopt_live: bool, restart: bool) -> Result<u8, Failure> {
    guard(g, yes, "a rollout")?;
    super::runtime()?.block_on(async {
        let cx = context(rb, g, adopt_live, restart).await?;
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
            Err(e) => Err(Failure { status: if e.starts_with("the live weights") || e.contains("changed since") { 2 } else { 1 }, message: e }),
        }
    })
}

pub fn abort(rb: Runbook, g: &GlobalArgs, yes: bool, reason: Option<String>) -> Result<u8, Failure> {
    guard(g, yes, "an abort")?;
    super::runtime()?.block_on(async {
        let cx = context(rb, g, true, false).await?;
        let reason = reason.unwrap_or_else(|| format!("aborted by {}", crate::progress::operator()));
        let mut say = |l: &str| println!("{l}");
        let started = std::time::Instant::now();
        let done = rollout::abort(&cx, &reason, &mut say).await.map_err(|e| Failure { status: 1, message: e })?;
        println!("{done} ({:.2} s)", started.elapsed().as_secs_f64());
        Ok(0)
    })
}
