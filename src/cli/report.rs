//! `cutover report <runbook> --html FILE`: the postmortem of a rollout's
//! window in one self-contained HTML file (see `crate::report`). Reads the
//! audit log and CloudWatch; changes nothing but FILE.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{Failure, GlobalArgs};
use crate::report::SideDimensions;
use crate::runbook::Runbook;

pub struct ReportArgs {
    pub html: PathBuf,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Datapoints a series gets over the window, about: the period follows.
const POINTS: u64 = 240;

fn time_flag(flag: &str, value: &Option<String>) -> Result<Option<SystemTime>, Failure> {
    value
        .as_deref()
        .map(|v| {
            crate::time::parse_rfc3339(v).ok_or_else(|| {
                Failure::bad_input(format!(
                    "{flag} {v:?} is not an RFC 3339 time; write it as the audit log does, like 2026-11-22T05:00:00Z"
                ))
            })
        })
        .transpose()
}

/// Each environment's load balancer and target groups as CloudWatch names
/// them, and what could not be looked up (left out: its series then say
/// why they are empty).
async fn dimensions(rb: &Runbook, clients: &crate::aws::SideClients) -> (Vec<SideDimensions>, Vec<String>) {
    use crate::aws::elb::{arn_suffix, load_balancer, target_groups};
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for env in rb.environments.values() {
        let elb = &clients.environment(&env.name).elb;
        let mut d = SideDimensions { environment: env.name.clone(), load_balancer: None, target_groups: Vec::new() };
        if let Some(lb) = &env.load_balancer {
            match load_balancer(elb, lb).await {
                Ok(l) => d.load_balancer = Some(arn_suffix(&l.arn)),
                Err(e) => warnings.push(format!("{}: load balancer {lb}: {e}; its metrics are left out", env.name)),
            }
        }
        match target_groups(elb, &env.target_groups).await {
            Ok(tgs) => d.target_groups = tgs.iter().map(|t| arn_suffix(&t.arn)).collect(),
            Err(e) => warnings.push(format!("{}: target groups: {e}; their metrics are left out", env.name)),
        }
        out.push(d);
    }
    (out, warnings)
}

pub fn run(rb: Runbook, g: &GlobalArgs, args: ReportArgs) -> Result<u8, Failure> {
    let log = crate::store::audit::AuditLog::for_runbook(&rb.name);
    let all = log.read().map_err(|e| Failure { status: 1, message: e })?;
    let Some((first, last)) = crate::report::audit_window(&all) else {
        return Err(Failure::bad_input(format!(
            "no audit lines for runbook {} in {}: nothing to report yet; report after a rollout or a shift, \
             with XDG_STATE_HOME as it was for them",
            rb.name,
            log.describe()
        )));
    };
    let start = time_flag("--since", &args.since)?.unwrap_or(first);
    let end = time_flag("--until", &args.until)?.unwrap_or(last);
    if end < start {
        return Err(Failure::bad_input(format!(
            "--until ({}) is before the window's start ({}); give an --until after --since",
            crate::time::rfc3339(end),
            crate::time::rfc3339(start)
        )));
    }
    let lines = crate::report::lines_in(&all, start, end);
    if lines.is_empty() {
        return Err(Failure::bad_input(format!(
            "no audit line of {} between {} and {}; its audit runs from {} to {}",
            rb.name,
            crate::time::rfc3339(start),
            crate::time::rfc3339(end),
            crate::time::rfc3339(first),
            crate::time::rfc3339(last)
        )));
    }
    // A window of one instant still gets a second to draw.
    let end = end.max(start + Duration::from_secs(1));
    let period = crate::aws::cloudwatch::plot_period(start, end, SystemTime::now(), POINTS);
    let (report, warnings) = super::runtime()?.block_on(async {
        let (clients, _) = super::aws_clients(&rb, g).await;
        let (dims, mut warnings) = dimensions(&rb, &clients).await;
        let keys = crate::report::wanted_keys(&rb, &dims);
        // The last period starts at `end` at the latest: EndTime is exclusive.
        let until = end + Duration::from_secs(period as u64);
        let fetched =
            match crate::aws::cloudwatch::metric_series_between_by_side(&clients, &keys, start, until, period).await {
                Ok(series) => keys.into_iter().zip(series).collect(),
                Err(e) => {
                    warnings.push(format!("CloudWatch could not be read ({e}): the metric plots are empty"));
                    Vec::new()
                }
            };
        let mut report = crate::report::build(&rb, &dims, lines, &fetched, (start, end), period);
        report.notes.extend(warnings.iter().cloned());
        (report, warnings)
    });
    for w in &warnings {
        errln!("warning: {w}");
    }
    let page = crate::report::html(&report).map_err(|message| Failure { status: 1, message })?;
    crate::paths::write_atomic(&args.html, page.as_bytes()).map_err(|e| {
        Failure::bad_input(format!(
            "cannot write the report to {}: {e}; give --html a file in a directory you can write",
            args.html.display()
        ))
    })?;
    outln!(
        "wrote {}: {} plots and {} audit lines from {} to {}",
        args.html.display(),
        report.plots.len() + 1,
        report.lines.len(),
        crate::time::rfc3339(start),
        crate::time::rfc3339(end)
    );
    Ok(0)
}
