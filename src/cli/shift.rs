//! `cutover shift <runbook> --to N`: set the rollout's `to` side to N% of the
//! traffic (the `from` side to 100−N), both records in one batch.

use super::{Failure, GlobalArgs};
use crate::audit::AuditLog;
use crate::drive::shift;
use crate::runbook::Runbook;

pub struct ShiftArgs {
    pub percent: u8,
    pub yes: bool,
    pub dry_run: bool,
}

fn refuse(message: String) -> Failure {
    Failure { status: 2, message }
}

pub fn run(rb: Runbook, g: &GlobalArgs, args: ShiftArgs) -> Result<u8, Failure> {
    let weights = crate::analysis::weights::weights_for_percent(args.percent);
    super::runtime()?.block_on(async {
        let super::Acting { clients, region, account } = super::acting(&rb, g).await?;
        let plan = shift::plan(&clients, &rb, weights)
            .await
            .map_err(|e| Failure { status: e.exit_status(), message: format!("{e}; nothing was changed") })?;
        let who = format!("account {} region {region}", account);
        println!("{who}: shift {}", plan.describe());
        // Under --read-only even a no-op is refused: every mutating path says no alike.
        if plan.is_noop() && !g.read_only {
            println!("nothing to change: the records already have these weights");
            return Ok(0);
        }
        if args.dry_run {
            println!("dry run: nothing was sent. This change batch would be:");
            println!("{}", serde_json::to_string_pretty(&plan.batch_json()).unwrap_or_default());
            return Ok(0);
        }
        let who = crate::drive::Actor { account, region, operator: crate::progress::operator() };
        if g.read_only {
            let values = (plan.before(), plan.after());
            let action = format!("shift_weights to {}%", args.percent);
            let refused = who.audit_line(&rb.name, action, "refused", values, "--read-only".into());
            AuditLog::for_runbook(&rb.name).append(&refused).map_err(|e| Failure { status: 1, message: e })?;
            return Err(refuse("refused: --read-only forbids changing weights; nothing was changed".into()));
        }
        if !args.yes {
            return Err(refuse(
                "refused: changing weights needs --yes (or use the cockpit, which asks); nothing was changed".into(),
            ));
        }
        let mut say = |l: &str| println!("{l}");
        let done = shift::execute(&clients, &rb, &who, &plan, &mut say)
            .await
            .map_err(|e| Failure { status: e.exit_status(), message: e.to_string() })?;
        println!("{done}");
        Ok(0)
    })
}
