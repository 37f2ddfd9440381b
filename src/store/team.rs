//! What a team shares besides the rollout: who has the runbook open
//! (presence), and live readings one machine made for the others, so that
//! the team's AWS request rate does not grow with its number of watchers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::backend::{Cond, StoreError, Version, current};
use super::lease::Holder;

/// Someone with the runbook open, as their last announcement says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presence {
    pub operator: String,
    pub host: String,
    pub pid: u32,
    /// When they announced themselves last (the store's time).
    pub seen: Option<SystemTime>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn dec(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.to_string()).unwrap_or_default()
}

/// The item of one holder's presence: its name says who, so one listing
/// shows everyone (no read per person).
fn presence_item(h: &Holder) -> String {
    format!("presence/{}@{}@{}", enc(&h.operator), enc(&h.host), h.pid)
}

/// Says "I have it open" (again); written every few seconds.
pub fn announce(runbook: &str, me: &Holder) -> Result<(), StoreError> {
    current().put(runbook, &presence_item(me), b"{}", Cond::Any).map(|_| ())
}

/// Says "I closed it".
pub fn withdraw(runbook: &str, me: &Holder) {
    let _ = current().delete(runbook, &presence_item(me), Cond::Any);
}

/// Everyone seen within `within`, newest first.
pub fn present(runbook: &str, within: Duration, now: SystemTime) -> Result<Vec<Presence>, StoreError> {
    let mut out: Vec<Presence> = current()
        .list(runbook, "presence/")?
        .into_iter()
        .filter_map(|l| {
            let name = l.item.strip_prefix("presence/")?;
            let mut parts = name.rsplitn(3, '@');
            let pid = parts.next()?.parse().ok()?;
            let host = dec(parts.next()?);
            let operator = dec(parts.next()?);
            Some(Presence { operator, host, pid, seen: l.modified })
        })
        .filter(|p| p.seen.is_none_or(|t| now.duration_since(t).unwrap_or_default() <= within))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.seen));
    Ok(out)
}

/// A reading one machine made for the team.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reading<T> {
    /// Unix milliseconds when it was read (None: only claimed so far).
    pub read_at_ms: Option<u64>,
    pub read_by: String,
    /// Someone is reading it now (Unix ms): the others wait for theirs.
    pub claimed_at_ms: Option<u64>,
    pub claimed_by: String,
    pub data: Option<T>,
}

impl<T> Reading<T> {
    pub fn read_at(&self) -> Option<SystemTime> {
        self.read_at_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What a watcher should do about a shared reading.
pub enum Shared<T> {
    /// Fresh enough: use it (it says who read it, and when).
    Use(Reading<T>),
    /// Read the source: this process claimed the next reading (then
    /// `publish` over the claim), or (None) it may claim nothing and
    /// publishes nothing.
    Read(Option<Version>, Option<Reading<T>>),
}

/// Decides, for a reading due every `every`, whether to use the team's or
/// to read the source (at most one reader per interval across the team:
/// the claim is a conditional write). Without `may_claim` (a watcher that
/// writes nothing shared) nothing is written: a stale reading is read anew
/// for this process alone.
pub fn shared_reading<T: Serialize + DeserializeOwned + Clone>(
    runbook: &str,
    name: &str,
    every: Duration,
    me: &str,
    now: SystemTime,
    may_claim: bool,
) -> Result<Shared<T>, StoreError> {
    let b = current();
    let item = format!("readings/{name}.json");
    let got = b.get(runbook, &item)?;
    let (version, old) = match &got {
        Some(o) => (Some(o.version.clone()), serde_json::from_slice::<Reading<T>>(&o.body).ok()),
        None => (None, None),
    };
    // A time ahead of ours (a writer's clock running fast) is no age at all:
    // such a reading is never taken as fresh.
    let age = |ms: Option<u64>| {
        ms.and_then(|ms| millis(now).checked_sub(ms).or_else(|| (ms - millis(now) <= 2000).then_some(0)))
            .map(Duration::from_millis)
    };
    if let Some(r) = &old {
        let fresh = age(r.read_at_ms).is_some_and(|a| a < every);
        // Someone claimed it within two intervals: theirs is on the way, and
        // what there is meanwhile is at most three intervals old.
        let claimed = r.claimed_by != me
            && age(r.claimed_at_ms).is_some_and(|a| a < every * 2)
            && age(r.read_at_ms).is_some_and(|a| a < every * 3);
        if r.data.is_some() && (fresh || claimed) {
            return Ok(Shared::Use(r.clone()));
        }
    }
    if !may_claim {
        return Ok(Shared::Read(None, old));
    }
    let claim = Reading {
        read_at_ms: old.as_ref().and_then(|r| r.read_at_ms),
        read_by: old.as_ref().map(|r| r.read_by.clone()).unwrap_or_default(),
        claimed_at_ms: Some(millis(now)),
        claimed_by: me.to_string(),
        data: old.as_ref().and_then(|r| r.data.clone()),
    };
    let body = serde_json::to_vec(&claim).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    match b.put(runbook, &item, &body, Cond::replacing(version.as_ref())) {
        Ok(v) => Ok(Shared::Read(Some(v), old)),
        // Another watcher claimed it first: use what there is.
        Err(StoreError::Conflict) => match old {
            Some(r) if r.data.is_some() => Ok(Shared::Use(r)),
            _ => Err(StoreError::Unavailable("another watcher is reading it first".into())),
        },
        Err(e) => Err(e),
    }
}

/// Publishes what this process read: over its claim only, or (None: a
/// rollout, which reads for itself) over whatever is there.
pub fn publish<T: Serialize>(runbook: &str, name: &str, claim: Option<Version>, me: &str, data: &T, now: SystemTime) {
    let r = Reading {
        read_at_ms: Some(millis(now)),
        read_by: me.to_string(),
        claimed_at_ms: None,
        claimed_by: String::new(),
        data: Some(data),
    };
    if let Ok(body) = serde_json::to_vec(&r) {
        let cond = claim.map_or(Cond::Any, Cond::Matches);
        let _ = current().put(runbook, &format!("readings/{name}.json"), &body, cond);
    }
}
