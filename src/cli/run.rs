//! `cutover run <runbook> <phase>/<item>`: one checklist action (or, with
//! --rollback, its rollback), planned from live data, confirmed, audited.

use super::{Failure, GlobalArgs};
use crate::audit::AuditLog;
use crate::drive::actions;
use crate::runbook::{Action, ItemKind, Runbook};

pub struct RunArgs {
    pub item: String,
    pub yes: bool,
    pub dry_run: bool,
    pub rollback: bool,
}

fn find(rb: &Runbook, key: &str, rollback: bool) -> Result<Action, Failure> {
    let (phase, item) = key.split_once('/').ok_or_else(|| {
        Failure::bad_input(format!("`{key}` is not phase/item; e.g. validate/redis-ingress (see `cutover plan`)"))
    })?;
    let it = rb
        .phases
        .iter()
        .find(|p| p.id == phase)
        .and_then(|p| p.items.iter().find(|i| i.id == item))
        .ok_or_else(|| Failure::bad_input(format!("no item {key} in {}; `cutover plan` lists them", rb.source)))?;
    if rollback {
        return it.rollback.clone().ok_or_else(|| Failure::bad_input(format!("item {key} names no rollback")));
    }
    match &it.kind {
        ItemKind::Action { action } => Ok(action.clone()),
        _ => Err(Failure::bad_input(format!(
            "item {key} is not an action; only actions run (checks run in `cutover status` and the cockpit)"
        ))),
    }
}

pub fn run(rb: Runbook, g: &GlobalArgs, args: RunArgs) -> Result<u8, Failure> {
    let action = find(&rb, &args.item, args.rollback)?;
    super::runtime()?.block_on(async {
        let super::Acting { clients, region, account } = super::acting(&rb, g).await?;
        super::in_runbook_region(&clients, &rb, &region).await?;
        let plan = actions::plan(&clients, &rb, &action)
            .await
            .map_err(|e| Failure { status: e.exit_status(), message: format!("{e}; nothing was changed") })?;
        println!("account {} region {region}: {} ({})", account, plan.name, args.item);
        println!("  before: {}", plan.before);
        println!("  after:  {}", plan.after);
        // Under --read-only even a no-op is refused: every mutating path says no alike.
        if let Some(why) = plan.noop.as_ref().filter(|_| !g.read_only) {
            println!("nothing to do: {why}");
            return Ok(0);
        }
        for s in &plan.steps {
            println!("  step: {}", s.describe());
        }
        if args.dry_run {
            println!("dry run: nothing was sent");
            return Ok(0);
        }
        let who = crate::drive::Actor {
            account: account.clone(),
            region: region.clone(),
            operator: crate::progress::operator(),
        };
        if g.read_only {
            let values = (plan.before.clone(), plan.after.clone());
            let action = format!("{} ({})", plan.name, args.item);
            let refused = who.audit_line(&rb.name, action, "refused", values, "--read-only".into());
            AuditLog::for_runbook(&rb.name).append(&refused).map_err(|e| Failure { status: 1, message: e })?;
            return Err(Failure::bad_input("refused: --read-only forbids changes; nothing was changed"));
        }
        if !args.yes {
            return Err(Failure::bad_input(
                "refused: this change needs --yes (or use the cockpit, which asks); nothing was changed",
            ));
        }
        let mut say = |l: &str| println!("  {l}");
        let done = actions::execute(&clients, &rb, &who, &args.item, &plan, &mut say).await.map_err(|e| Failure {
            status: 1,
            message: format!("{e} (`cutover run {} {} --rollback --yes`)", rb.source, args.item),
        })?;
        println!("{done}");
        Ok(0)
    })
}
