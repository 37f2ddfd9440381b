//! `cutover shift <runbook> --to N`: set the rollout's `to` side to N% of the
//! traffic (the `from` side to 100−N), both records in one batch.

use std::time::Duration;

use super::{Failure, GlobalArgs};
use crate::audit::{AuditLine, AuditLog};
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
            .map_err(|e| refuse(format!("refused: {e}; nothing was changed")))?;
        let who = format!("account {} region {region}", account);
        println!("{who}: shift {}", plan.describe());
        if plan.is_noop() {
            println!("nothing to change: the records already have these weights");
            return Ok(0);
        }
        if args.dry_run {
            println!("dry run: nothing was sent. This change batch would be:");
            println!("{}", serde_json::to_string_pretty(&plan.batch_json()).unwrap_or_default());
            return Ok(0);
        }
        let log = AuditLog::for_runbook(&rb.name);
        let line = |stage: &str, detail: String| AuditLine {
            time: crate::status::rfc3339(std::time::SystemTime::now()),
            operator: crate::progress::operator(),
            account: Some(account.clone()),
            region: region.clone(),
            runbook: rb.name.clone(),
            action: format!("shift_weights to {}%", args.percent),
            stage: stage.into(),
            before: plan.before(),
            after: plan.after(),
            detail,
        };
        if g.read_only {
            log.append(&line("refused", "--read-only".into())).map_err(|e| Failure { status: 1, message: e })?;
            return Err(refuse("refused: --read-only forbids changing weights; nothing was changed".into()));
        }
        if !args.yes {
            return Err(refuse(
                "refused: changing weights needs --yes (or use the cockpit, which asks); nothing was changed".into(),
            ));
        }
        // Never under a running rollout's feet.
        let _lock = crate::drive::rollout::RolloutLock::try_take(&rb.name)
            .map_err(|e| Failure { status: 1, message: e })?
            .ok_or_else(|| {
                refuse(format!(
                    "refused: a rollout of {} is running; use `cutover abort` or wait; nothing was changed",
                    rb.name
                ))
            })?;
        // The intent is on disk before anything is sent.
        log.append(&line("intent", String::new()))
            .map_err(|e| Failure { status: 1, message: format!("{e}; nothing was changed") })?;
        let change = match shift::apply(&clients, &plan).await {
            Ok(id) => id,
            Err(e) => {
                let _ = log.append(&line("failed", e.to_string()));
                return Err(Failure {
                    status: 1,
                    message: format!("the change was not accepted: {e}; weights are unchanged"),
                });
            }
        };
        log.append(&line("applied", format!("change {change}"))).map_err(|e| Failure { status: 1, message: e })?;
        println!("change {change} sent; waiting for INSYNC");
        match shift::wait_insync(&clients, &change, Duration::from_secs(300)).await {
            Ok(took) => {
                log.append(&line("insync", format!("change {change} INSYNC after {:.1} s", took.as_secs_f64())))
                    .map_err(|e| Failure { status: 1, message: e })?;
                println!(
                    "INSYNC after {:.1} s; resolvers may serve the old answer for one TTL more",
                    took.as_secs_f64()
                );
                Ok(0)
            }
            Err(e) => {
                let _ = log.append(&line("failed", e.clone()));
                Err(Failure { status: 1, message: format!("{e}; the change was accepted and will still apply") })
            }
        }
    })
}
