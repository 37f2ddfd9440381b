//! Who may change what: the one step every change takes first. Below the
//! layers that change things (engine, redis, drive) so each of them can
//! demand its proof.

use crate::aws::SideClients;
use crate::runbook::{Runbook, Side};
use crate::store::audit::{AuditLog, Stage};

/// Who makes a change, and the proof that they may: the only value the
/// functions that send changes accept. Its fields are private and it has no
/// constructor but [`authorise`], which checks the account of the side the
/// change touches against that side's STS identity and `--read-only` first,
/// and audits a refusal itself.
#[derive(Debug, Clone)]
pub struct Actor {
    account: Option<String>,
    region: String,
    operator: String,
}

/// What is about to be changed, for [`authorise`].
pub enum Scope<'a> {
    /// A runbook's resources on one side (`[dns]` for a shift, a rollout or
    /// an abort; an environment for an action on it), reached with that
    /// side's clients, whose STS identity is checked against the side's
    /// account. Refusals go to the runbook's audit log.
    Runbook { rb: &'a Runbook, clients: &'a SideClients, side: Side },
    /// A Redis copy between two URLs with no runbook: no AWS account is
    /// involved. Refusals go to `log`.
    RedisUrls { log: &'a AuditLog },
}

/// Why [`authorise`] said no: refused (exit 2) or the account could not be
/// told (exit 1). Either way nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u8,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> Self {
        r.message
    }
}

/// The refusal of a side reached with another account's credentials, or
/// None when the side names no account or this one. `how` says how its
/// credentials were got (`Reach::describe`).
pub fn account_mismatch(rb: &Runbook, side: &Side, account: &str, how: &str) -> Option<String> {
    let want = rb.side_account(side).filter(|w| w != account)?;
    Some(if rb.has_side_access() {
        format!(
            "refused: {side} of runbook {} is in account {want} but its credentials ({how}) are for account {account}; set `profile` or `role_arn` under {side} (or --profile) to reach {want}; nothing was changed",
            rb.source
        )
    } else {
        format!(
            "refused: runbook {} is for account {want} but the credentials are for account {account}; use the profile for {want} (--profile); nothing was changed",
            rb.source
        )
    })
}

/// Why the account of `side` cannot be told, in one line: the side, how its
/// credentials are got (`how`) and what to fix.
pub fn unknown_account(rb: &Runbook, side: &Side, how: &str, e: &crate::aws::AwsError) -> String {
    let credentials = e.kind == crate::aws::AwsErrorKind::Credentials;
    if rb.has_side_access() {
        let fix = if credentials {
            format!(
                "fix how {side} is reached ({how}): the profile must exist and be logged in (`aws sso login`), the role must be assumable; set `profile` or `role_arn` under {side}, or --profile"
            )
        } else {
            format!("check its credentials ({how})")
        };
        format!("cannot tell which account {side} is in: {e}; {fix}")
    } else if credentials {
        format!(
            "cannot tell which account this is: {e}; fix the credentials ({how}): the profile must exist and be logged in (`aws sso login`); --profile or AWS_PROFILE names it"
        )
    } else {
        format!("cannot tell which account this is: {e}")
    }
}

/// The account `clients` reach when it is not `want`: `Some(found)`; `None`
/// when it is, or when no account is wanted. Err when STS cannot tell.
pub async fn other_account(clients: &crate::aws::Clients, want: Option<&str>) -> crate::aws::AwsResult<Option<String>> {
    let Some(want) = want else { return Ok(None) };
    let found = crate::aws::sts::identity(clients).await?.account;
    Ok((found != want).then_some(found))
}

/// Refuses a rollout whose gates would read AWS with credentials for
/// another account than the one the runbook gives that side: there a
/// namesake (a staging copy built from the same templates, with the same
/// load balancer, group and alarm names) can be idle and healthy, and every
/// gate pass on it while the real side serves 5xx. The `[dns]` check covers
/// a runbook whose sides are all reached alike. `Err` is one line: the
/// refusal, or why the account cannot be told; nothing is sent either way.
pub async fn gates_read_in_their_accounts(rb: &Runbook, clients: &SideClients) -> Result<(), String> {
    if !rb.has_side_access() {
        return Ok(());
    }
    for reader in rb.gate_readers() {
        let (side, want) = match &reader {
            Some(env) => {
                let side = Side::Environment(env.clone());
                let want = rb.side_account(&side);
                (Some(side), want)
            }
            None => (None, rb.account_id.clone()),
        };
        let (c, how, name) = match &side {
            Some(side) => (clients.side(side), clients.reach(side).describe(), side.to_string()),
            None => (clients.runbook(), "the runbook's own credentials".to_string(), "[runbook]".to_string()),
        };
        let account = match other_account(c, want.as_deref()).await {
            Ok(None) => continue,
            Ok(Some(account)) => account,
            Err(e) => {
                let why = match &side {
                    Some(side) => unknown_account(rb, side, &how, &e),
                    None => format!("cannot tell which account {name} is in: {e}"),
                };
                return Err(format!("{why}; the rollout's gates read it; nothing was sent"));
            }
        };
        let want = want.unwrap_or_default();
        return Err(format!(
            "refused: the rollout's gates read {name} of runbook {}, which is in account {want}, but its \
             credentials ({how}) are for account {account}: its load balancer, metrics and alarms there may be \
             a namesake's; set `profile` or `role_arn` under {name} to reach {want}; nothing was sent",
            rb.source
        ));
    }
    Ok(())
}

/// The one way to an [`Actor`]: refuses under `--read-only` and in any account
/// but the runbook's (asking STS who the caller is), writing the `refused`
/// line to the audit log before it returns. `action` names the change in that
/// line, `what` in the refusal (`--read-only forbids {what}`).
pub async fn authorise(scope: Scope<'_>, read_only: bool, action: &str, what: &str) -> Result<Actor, Refusal> {
    let operator = crate::store::operator();
    let (rb, clients, side, log) = match scope {
        Scope::Runbook { rb, clients, side } => {
            (Some(rb), Some(clients), Some((clients.side(&side), clients.reach(&side), side)), None)
        }
        Scope::RedisUrls { log } => (None, None, None, Some(log)),
    };
    let region = side.as_ref().map(|(c, _, _)| c.region.clone()).unwrap_or_default();
    let runbook_log = rb.map(|rb| AuditLog::for_runbook(&rb.name));
    let log = log.or(runbook_log.as_ref()).expect("a scope names its audit log");
    let identity = match &side {
        Some((c, _, _)) => Some(crate::aws::sts::identity(c).await.map(|i| i.account)),
        None => None,
    };
    let known = identity.as_ref().and_then(|i| i.as_ref().ok()).cloned();
    let refuse = |detail: String, message: String| -> Refusal {
        let who = Actor { account: known.clone(), region: region.clone(), operator: operator.clone() };
        let line = who.audit_line(
            rb.map_or("", |r| r.name.as_str()),
            action.to_string(),
            Stage::Refused,
            Default::default(),
            detail,
        );
        match log.append(&line) {
            Ok(()) => Refusal { status: 2, message },
            Err(e) => Refusal { status: 1, message: format!("{message} (and the refusal could not be audited: {e})") },
        }
    };
    if read_only {
        let suffix = if rb.is_some() { "nothing was changed" } else { "nothing was written" };
        return Err(refuse("--read-only".into(), format!("refused: --read-only forbids {what}; {suffix}")));
    }
    if let (Some(rb), Some((_, reach, side)), Some(identity)) = (rb, &side, identity) {
        let account = identity.map_err(|e| Refusal {
            status: 1,
            message: format!("{}; nothing was changed", unknown_account(rb, side, &reach.describe(), &e)),
        })?;
        if let Some(message) = account_mismatch(rb, side, &account, &reach.describe()) {
            let want = rb.side_account(side).unwrap_or_default();
            let detail = if rb.has_side_access() {
                format!("{side} is in account {want}, its credentials in {account}")
            } else {
                format!("runbook is for account {want}, credentials for {account}")
            };
            return Err(refuse(detail, message));
        }
    }
    // An environment's resources are found by tag and name: in another
    // region the same tags can select another fleet (Route53 is global).
    if let (Some(rb), Some(clients), Some((_, _, side @ Side::Environment(env)))) = (rb, clients, &side) {
        match environment_region_check(clients, rb, env, &region).await {
            RegionCheck::Here => {}
            RegionCheck::Elsewhere(message) => {
                return Err(refuse(format!("runbook for another region than {region}"), message));
            }
            RegionCheck::Unknown(e) => {
                return Err(Refusal {
                    status: 1,
                    message: format!("cannot check the runbook's region for {side}: {e}; nothing was changed"),
                });
            }
        }
    }
    Ok(Actor { account: known, region, operator })
}

impl Actor {
    /// The caller's AWS account (None for a Redis copy between URLs).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// An audit line of this actor's, stamped now.
    pub fn audit_line(
        &self,
        runbook: &str,
        action: String,
        stage: Stage,
        (before, after): (serde_json::Value, serde_json::Value),
        detail: String,
    ) -> crate::store::audit::AuditLine {
        crate::store::audit::AuditLine {
            time: crate::time::rfc3339(std::time::SystemTime::now()),
            operator: self.operator.clone(),
            account: self.account.clone(),
            region: self.region.clone(),
            runbook: runbook.to_string(),
            action,
            stage,
            before,
            after,
            detail,
            change: None,
            step: None,
            aws_ahead_ms: None,
        }
    }
}

/// What the region check found.
pub enum RegionCheck {
    /// One of the runbook's load balancers is in the region in use (or it names none).
    Here,
    /// The check ran and found none of them: the runbook is for another
    /// region (a refusal, exit 2), with the message.
    Elsewhere(String),
    /// AWS could not be asked, so nothing is known about the region.
    Unknown(String),
}

/// Whether `environment` is in the region in use: its own load balancer
/// found there, or, that one gone (deleted in a decommission), another
/// environment's reached the same way (the same account and region); an
/// environment naming none is judged as the runbook is (`region_check`).
pub async fn environment_region_check(
    clients: &SideClients,
    rb: &Runbook,
    environment: &str,
    region: &str,
) -> RegionCheck {
    let Some(name) = rb.environment(environment).and_then(|e| e.load_balancer.as_deref()) else {
        return without_load_balancer(clients, rb, environment).await;
    };
    let side = clients.environment(environment);
    match crate::aws::elb::load_balancer(&side.elb, name).await {
        Ok(_) => RegionCheck::Here,
        Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound => {
            // Deleted in a decommission (its own security group goes only
            // after it)? Another environment's load balancer, reached the
            // same way, says this is the runbook's region.
            let mine = crate::runbook::Side::Environment(environment.to_string());
            let others = rb.environments.values().filter(|e| e.name != environment).filter_map(|e| {
                let theirs = crate::runbook::Side::Environment(e.name.clone());
                clients.same_reach(&mine, &theirs).then_some((e.name.as_str(), e.load_balancer.as_deref()?))
            });
            let mut vouched = None;
            for (other, lb) in others {
                match crate::aws::elb::load_balancer(&clients.environment(other).elb, lb).await {
                    Ok(_) => {
                        vouched = Some(lb);
                        break;
                    }
                    Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound => {}
                    Err(e) => return RegionCheck::Unknown(e.to_string()),
                }
            }
            if let Some(lb) = vouched {
                tracing::info!(environment, load_balancer = name, found = lb, "load balancer gone; region vouched");
                return RegionCheck::Here;
            }
            let declared = overridden(rb, region);
            RegionCheck::Elsewhere(format!(
                "refused: {environment}'s load balancer {name} (runbook {}) is not in region {}, nor is any other of \
                 its load balancers reached the same way{declared}; run it in its own region; nothing was changed",
                rb.source, side.region
            ))
        }
        Err(e) => RegionCheck::Unknown(e.to_string()),
    }
}

/// `environment_region_check` for an environment naming no load balancer:
/// only one of another environment reached the same way (account and
/// region) can say it is here; one found through another side, in its own
/// region, says nothing of this one's. None reached so: its region is the
/// one declared for it (its own `region`, else the runbook's), when one is.
async fn without_load_balancer(clients: &SideClients, rb: &Runbook, environment: &str) -> RegionCheck {
    let mine = crate::runbook::Side::Environment(environment.to_string());
    let side = clients.side(&mine);
    let same: Vec<(&str, &str)> = rb
        .environments
        .values()
        .filter(|e| e.name != environment)
        .filter_map(|e| {
            let theirs = crate::runbook::Side::Environment(e.name.clone());
            clients.same_reach(&mine, &theirs).then_some((e.name.as_str(), e.load_balancer.as_deref()?))
        })
        .collect();
    for (other, lb) in &same {
        match crate::aws::elb::load_balancer(&clients.environment(other).elb, lb).await {
            Ok(_) => return RegionCheck::Here,
            Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound => {}
            Err(e) => return RegionCheck::Unknown(e.to_string()),
        }
    }
    if let Some((_, lb)) = same.first() {
        return RegionCheck::Elsewhere(format!(
            "refused: {environment} (runbook {}) names no load balancer of its own, and {lb}, reached the same way, \
             is not in region {}{}; run it in its own region; nothing was changed",
            rb.source,
            side.region,
            overridden(rb, &side.region)
        ));
    }
    // A runbook naming no load balancer at all is judged as `region_check` does.
    if rb.environments.values().all(|e| e.load_balancer.is_none()) {
        return RegionCheck::Here;
    }
    let declared = rb.environment(environment).and_then(|e| e.access.region.clone()).or_else(|| rb.region.clone());
    match declared {
        Some(r) if r == side.region => RegionCheck::Here,
        Some(r) => RegionCheck::Elsewhere(format!(
            "refused: {environment} (runbook {}) is declared in region {r}, but would be reached in {}; run it in \
             its own region; nothing was changed",
            rb.source, side.region
        )),
        None => RegionCheck::Elsewhere(format!(
            "refused: cannot tell whether {environment} (runbook {}) is in region {}: it names no load balancer, \
             none of the runbook's is reached the same way, and no region is declared for it; declare `region` \
             under [environments.{environment}] (or [runbook]); nothing was changed",
            rb.source, side.region
        )),
    }
}

/// Whether any of the runbook's load balancers is in the region in use, each
/// looked up through its environment's side.
pub async fn region_check(clients: &SideClients, rb: &Runbook, region: &str) -> RegionCheck {
    let named: Vec<(&str, &str)> =
        rb.environments.values().filter_map(|e| Some((e.name.as_str(), e.load_balancer.as_deref()?))).collect();
    let mut elsewhere = Vec::new();
    for (env, name) in &named {
        let side = clients.environment(env);
        match crate::aws::elb::load_balancer(&side.elb, name).await {
            Ok(_) => return RegionCheck::Here,
            Err(e) if e.kind == crate::aws::AwsErrorKind::NotFound => elsewhere.push(side.region.clone()),
            Err(e) => return RegionCheck::Unknown(e.to_string()),
        }
    }
    if named.is_empty() {
        return RegionCheck::Here;
    }
    elsewhere.sort();
    elsewhere.dedup();
    let searched = if elsewhere.len() == 1 && elsewhere[0] == region {
        format!("region {region}")
    } else {
        format!("regions {}", elsewhere.join(", "))
    };
    let declared = overridden(rb, region);
    RegionCheck::Elsewhere(format!(
        "refused: none of runbook {}'s load balancers ({}) is in {searched}{declared}; run it in its own region; nothing was changed",
        rb.source,
        named.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
    ))
}

/// What a refusal adds when the region in use is not the runbook's own.
fn overridden(rb: &Runbook, region: &str) -> String {
    match &rb.region {
        Some(r) if r != region => {
            format!("; the runbook says {r}, and --region, CUTOVER_REGION or AWS_REGION overrode it")
        }
        _ => String::new(),
    }
}
