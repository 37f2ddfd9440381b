//! `cutover shift <runbook> --to N`: set the rollout's `to` side to N% of the
//! traffic (the `from` side to 100−N), both records in one batch.

use super::{Failure, GlobalArgs};
use crate::drive::shift;
use crate::runbook::{Runbook, Side};

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
        let action = format!("shift_weights to {}%", args.percent);
        // A dry run changes nothing: only the account is checked. Anything
        // else is authorised first (--read-only, the account; refusals audited).
        let (clients, account, who) = if args.dry_run {
            let super::Acting { clients, account, .. } = super::acting(&rb, g, &Side::Dns).await?;
            (clients, account, None)
        } else {
            let (clients, _, who) = super::authorised(&rb, g, Side::Dns, &action, "changing weights").await?;
            let account = who.account().unwrap_or("?").to_string();
            (clients, account, Some(who))
        };
        // The weights live in the hosted zone's account ([dns]).
        let sides = clients;
        let clients = sides.dns().clone();
        let region = clients.region.clone();
        let refused = |e: crate::drive::PlanError| Failure {
            status: e.exit_status(),
            message: format!("{e}; nothing was changed"),
        };
        let audited = who.as_ref().map(|w| (w, action.as_str()));
        let plan = shift::plan_judged(&sides, &rb, weights, audited).await.map_err(refused)?;
        for line in &plan.unchecked {
            outln!("{line}");
        }
        outln!("account {account} region {region}: shift {}", plan.describe());
        if plan.is_noop() {
            outln!("nothing to change: the records already have these weights");
            return Ok(0);
        }
        let Some(who) = who else {
            outln!("dry run: nothing was sent. This change batch would be:");
            outln!("{}", serde_json::to_string_pretty(&plan.batch_json()).unwrap_or_default());
            return Ok(0);
        };
        if !args.yes {
            return Err(refuse(
                "refused: changing weights needs --yes (or use the cockpit, which asks); nothing was changed".into(),
            ));
        }
        let mut say = |l: &str| outln!("{l}");
        let done = shift::execute(&sides, &rb, &who, &plan, &mut say)
            .await
            .map_err(|e| Failure { status: e.exit_status(), message: e.to_string() })?;
        outln!("{done}");
        Ok(0)
    })
}
