//! `cutover run <runbook> <phase>/<item>`: one checklist action (or, with
//! --rollback, its rollback), planned from live data, confirmed, audited.

use super::{Failure, GlobalArgs};
use crate::drive::actions;
use crate::runbook::{Action, ItemKind, Runbook};
use crate::store::audit::Stage;

pub struct RunArgs {
    pub item: String,
    pub yes: bool,
    pub dry_run: bool,
    pub rollback: bool,
    /// The environment's name, typed to confirm an action with no rollback.
    pub confirm_name: Option<String>,
}

fn find(rb: &Runbook, key: &str, rollback: bool) -> Result<Action, Failure> {
    let (phase, item) = key.split_once('/').ok_or_else(|| {
        Failure::bad_input(format!("`{key}` is not phase/item; e.g. validate/redis-ingress (see `cutover plan`)"))
    })?;
    let (_, it) = rb
        .item(phase, item)
        .ok_or_else(|| Failure::bad_input(format!("no item {key} in {}; `cutover plan` lists them", rb.source)))?;
    if rollback {
        return it.rollback.clone().ok_or_else(|| Failure::bad_input(format!("item {key} names no rollback")));
    }
    match &it.kind {
        ItemKind::Action { action: Action::Rollout } => {
            Err(Failure::bad_input("refused: run the gated rollout with `cutover rollout`; nothing was changed"))
        }
        ItemKind::Action { action } => Ok(action.clone()),
        _ => Err(Failure::bad_input(format!(
            "item {key} is not an action; only actions run (checks run in `cutover status` and the cockpit)"
        ))),
    }
}

pub fn run(rb: Runbook, g: &GlobalArgs, args: RunArgs) -> Result<u8, Failure> {
    let action = find(&rb, &args.item, args.rollback)?;
    super::runtime()?.block_on(async {
        // A dry run changes nothing: only the account is checked. Anything
        // else is authorised first (--read-only, the account; refusals audited).
        // The account checked is the one the action changes: its environment's,
        // or [dns]'s for a weight shift.
        let side = action.side(&rb);
        let (clients, region, account, who) = if args.dry_run {
            let super::Acting { clients, region, account } = super::acting(&rb, g, &side).await?;
            (clients, region, account, None)
        } else {
            let name = format!("{} ({})", action.summary(), args.item);
            let (clients, region, who) = super::authorised(&rb, g, side.clone(), &name, "changes").await?;
            let account = who.account().unwrap_or("?").to_string();
            (clients, region, account, Some(who))
        };
        // A time-gated item is refused before anything is planned (a rollback
        // never waits); a dry run plans it and says when it opens.
        let mut gate_note = None;
        if !args.rollback
            && let Some((_, item)) = rb.item_by_key(&args.item)
            && let Err(refusal) = crate::drive::not_before::check(
                &rb,
                &args.item,
                item,
                std::time::SystemTime::now(),
                Some(account.as_str()).filter(|a| *a != "?"),
            )
        {
            match &who {
                None => gate_note = Some(refusal),
                Some(who) => {
                    let name = format!("{} ({})", action.summary(), args.item);
                    let line = who.audit_line(&rb.name, name, Stage::Refused, Default::default(), refusal.clone());
                    crate::store::audit::AuditLog::for_runbook(&rb.name)
                        .append(&line)
                        .map_err(|e| Failure { status: 1, message: format!("{refusal} ({e})") })?;
                    return Err(Failure::bad_input(refusal));
                }
            }
        }
        // A change to an environment had its region checked by `authorise`;
        // a dry run is checked here. Route53 (a weight change) is global.
        if who.is_none()
            && let crate::runbook::Side::Environment(env) = &side
        {
            super::region_refusal(crate::authority::environment_region_check(&clients, &rb, env, &region).await)?;
        }
        let region = clients.side(&side).region.clone();
        let plan = match actions::plan(&clients, &rb, &action).await {
            Ok(plan) => plan,
            Err(e) => {
                if let Some(who) = &who {
                    let name = format!("{} ({})", action.summary(), args.item);
                    actions::audit_plan_refused(&rb, who, name, &e)
                        .map_err(|message| Failure { status: 1, message })?;
                }
                return Err(Failure { status: e.exit_status(), message: e.nothing_changed() });
            }
        };
        outln!("account {account} region {region}: {} ({})", plan.name, args.item);
        outln!("  before: {}", plan.before);
        outln!("  after:  {}", plan.after);
        if let Some(why) = &plan.noop {
            outln!("nothing to do: {why}");
            // Recorded only when asked to run (--yes): a look writes nothing.
            if let Some(who) = who.as_ref().filter(|_| args.yes)
                && let Some(line) = actions::record_found_done(&rb, who, &args.item, &plan).map_err(|e| Failure {
                    status: 1,
                    message: format!("the audit could not be read or written: {e}"),
                })?
            {
                outln!("recorded as applied: {line}");
            }
            return Ok(0);
        }
        for s in &plan.steps {
            outln!("  step: {}", s.describe());
            if let actions::Step::Shift(p) = s {
                p.unchecked.iter().for_each(|l| outln!("  {l}"));
            }
        }
        if let Some(name) = plan.confirm_name() {
            outln!("  NO ROLLBACK: this cannot be undone; it runs with --yes --confirm-name {name}");
        }
        let Some(who) = who else {
            if let Some(note) = gate_note {
                outln!("  not yet: {}", note.trim_start_matches("refused: "));
            }
            outln!("dry run: nothing was sent");
            return Ok(0);
        };
        if !args.yes {
            return Err(Failure::bad_input(
                "refused: this change needs --yes (or use the cockpit, which asks); nothing was changed",
            ));
        }
        // No rollback exists: --yes is not enough, the environment's name is typed too.
        if let Some(name) = plan.confirm_name()
            && args.confirm_name.as_deref() != Some(name)
        {
            let given = args.confirm_name.as_deref().map(|n| format!(" (`{n}` was given)")).unwrap_or_default();
            return Err(Failure::bad_input(format!(
                "refused: {} cannot be undone, no rollback exists; confirm with --confirm-name {name}, the \
                 environment's name{given}; nothing was changed",
                plan.name
            )));
        }
        let mut say = |r: actions::Report<'_>| outln!("  {r}");
        let done = actions::execute(&clients, &rb, &who, &args.item, &plan, &mut say).await.map_err(|e| match e {
            actions::ExecuteError::Refused(message) => Failure::bad_input(message),
            actions::ExecuteError::Failed(e) => Failure { status: 1, message: e },
        })?;
        outln!("{done}");
        Ok(0)
    })
}
