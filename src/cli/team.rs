//! Team mode from the command line: `cutover tick` and `cutover checklist`,
//! for reviewers who work from a script, and the shared store's setup.

use std::time::SystemTime;

use super::{Failure, GlobalArgs};
use crate::runbook::{ItemKind, Runbook};
use crate::store::checklist::{self, Edit, item_key};

/// Where this process keeps its state: `--state` / `CUTOVER_STATE`, else the
/// runbook's `[team] state`, else local files (`local` says so explicitly).
pub fn install_store(rb: &Runbook, g: &GlobalArgs) -> Result<(), Failure> {
    let url = g.state.clone().or_else(|| rb.team.as_ref().map(|t| t.state.clone()));
    if let (Some("local"), Some(team)) = (url.as_deref(), &rb.team)
        && !g.read_only
    {
        // A lease on this machine that the team's rollout never sees: two
        // processes could move the weights at once.
        return Err(Failure::bad_input(format!(
            "refused: this runbook's team shares its state in {}; `--state local` (or CUTOVER_STATE=local) would take a lease no one else sees. Use it only with --read-only, or drop it",
            team.state
        )));
    }
    // Another bucket or prefix (a shell's CUTOVER_STATE left from a
    // rehearsal): its own lease, requests, ticks and audit, where the team
    // never looks, beside the team's rollout.
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    if let (Some(flag), Some(team)) = (g.state.as_deref(), &rb.team)
        && flag != "local"
        && !same(flag, &team.state)
        && !g.read_only
    {
        return Err(Failure::bad_input(format!(
            "refused: this runbook's team shares its state in {}; `--state {flag}` (or CUTOVER_STATE) would keep a lease, requests, ticks and an audit log the team never sees. Drop it, give the team's, or use it only with --read-only",
            team.state
        )));
    }
    let Some(url) = url.filter(|u| u != "local") else { return Ok(()) };
    let region =
        rb.team.as_ref().and_then(|t| t.region.clone()).or_else(|| g.region.clone()).or_else(|| rb.region.clone());
    connect_store(&url, region, g)
}

/// `--state` / `CUTOVER_STATE` for a command without a runbook (`redis
/// copy`: its checkpoint, its lock and its audit go where the team's are).
pub fn install_state_flag(g: &GlobalArgs) -> Result<(), Failure> {
    match g.state.as_deref() {
        None | Some("local") => Ok(()),
        Some(url) => connect_store(url, g.region.clone(), g),
    }
}

fn connect_store(url: &str, region: Option<String>, g: &GlobalArgs) -> Result<(), Failure> {
    let connect = crate::aws::s3::S3Backend::connect(url, region, g.profile.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure { status: 1, message: format!("cannot start the async runtime: {e}") })?;
    let backend = rt.block_on(connect).map_err(|e| {
        Failure::bad_input(format!(
            "--state / CUTOVER_STATE / [team] state: {e}; write it as s3://bucket/prefix, or `local`"
        ))
    })?;
    crate::store::backend::install(std::sync::Arc::new(backend));
    Ok(())
}

/// `cutover tick <runbook> <phase/item> [--undo] [--note TEXT]`.
pub fn tick(
    rb: &Runbook,
    g: &GlobalArgs,
    key: &str,
    undo: bool,
    note: Option<String>,
    dry_run: bool,
) -> Result<u8, Failure> {
    let Some((phase, item)) = rb.item_by_key(key) else {
        let keys: Vec<String> = rb.phases.iter().flat_map(|p| p.items.iter().map(|i| item_key(&p.id, &i.id))).collect();
        return Err(Failure::bad_input(format!(
            "{}: no item `{key}`; name one as phase/item: {}",
            rb.source,
            keys.join(", ")
        )));
    };
    let key = item_key(&phase.id, &item.id);
    if !matches!(item.kind, ItemKind::Manual) && (note.is_none() || undo) {
        return Err(Failure::bad_input(format!(
            "{key} is not a manual item: checks and actions tick themselves (`cutover run` runs an action, --rollback undoes it); only manual items are ticked or unticked by hand (--note alone notes on any item)"
        )));
    }
    let operator = crate::store::operator();
    let now = crate::time::rfc3339(SystemTime::now());
    let mut edits = Vec::new();
    if matches!(item.kind, ItemKind::Manual) {
        edits.push(if undo {
            Edit::Untick { key: key.clone() }
        } else {
            // The account it is ticked in, when the credentials tell one: a
            // rehearsal's tick (moto's account) opens no real time gate.
            let account = if dry_run {
                None
            } else {
                // Never a wait on credentials that are not there (a
                // reviewer's laptop): a tick without an account counts.
                super::runtime()?.block_on(async {
                    let ask = async {
                        let (clients, _) = super::aws_clients(rb, g).await;
                        crate::aws::sts::identity(clients.runbook()).await.ok().map(|i| i.account)
                    };
                    tokio::time::timeout(std::time::Duration::from_secs(4), ask).await.ok().flatten()
                })
            };
            Edit::Tick { key: key.clone(), by: operator.clone(), at: now.clone(), account }
        });
    }
    if let Some(n) = note {
        let text = Some(n.trim().to_string()).filter(|t| !t.is_empty());
        edits.push(Edit::Note { key: key.clone(), text, over: checklist::NoteOver::Any });
    }
    let what = checklist::describe(&edits);
    if dry_run {
        outln!("would {what} in {}", checklist::location(&rb.name));
        return Ok(0);
    }
    if g.read_only {
        checklist::audit_refused(&rb.name, &operator, &edits, "refused under --read-only");
        return Err(Failure::bad_input(format!("refused: --read-only; nothing was changed ({what})")));
    }
    checklist::apply_audited(&rb.name, &operator, &edits).map_err(|message| Failure { status: 1, message })?;
    outln!("{what} (by {operator}, in {})", checklist::location(&rb.name));
    Ok(0)
}

/// `cutover checklist <runbook> [--json]`: every item with who ticked it and when.
pub fn show(rb: &Runbook, json: bool) -> Result<u8, Failure> {
    let (state, _) = checklist::load(&rb.name).map_err(|m| Failure { status: 1, message: m })?;
    let items: Vec<serde_json::Value> = rb
        .phases
        .iter()
        .flat_map(|p| p.items.iter().map(move |i| (p, i)))
        .map(|(p, i)| {
            let key = item_key(&p.id, &i.id);
            let kind = match i.kind {
                ItemKind::Manual => "manual",
                ItemKind::Check { .. } => "check",
                ItemKind::Action { .. } => "action",
            };
            serde_json::json!({
                "phase": p.id,
                "item": i.id,
                "title": i.title,
                "kind": kind,
                "ticked": state.ticks.get(&key).map(|t| serde_json::json!({"by": t.by, "at": t.at})),
                "note": state.notes.get(&key),
            })
        })
        .collect();
    if json {
        let doc = serde_json::json!({ "runbook": rb.name, "store": checklist::location(&rb.name), "items": items });
        outln!("{}", serde_json::to_string_pretty(&doc).map_err(|e| Failure { status: 1, message: e.to_string() })?);
        return Ok(0);
    }
    outln!("{} ({})", rb.title, checklist::location(&rb.name));
    for p in &rb.phases {
        outln!("{}", p.title);
        for i in &p.items {
            let key = item_key(&p.id, &i.id);
            let mark = match (&i.kind, state.ticks.get(&key)) {
                (ItemKind::Manual, Some(t)) => format!("[x] {key}  {} (ticked by {} at {})", i.title, t.by, t.at),
                (ItemKind::Manual, None) => format!("[ ] {key}  {}", i.title),
                _ => format!("    {key}  {} (runs from the cockpit or `cutover run`/`status`)", i.title),
            };
            outln!("  {mark}");
            if let Some(n) = state.notes.get(&key) {
                outln!("      note: {n}");
            }
        }
    }
    Ok(0)
}
