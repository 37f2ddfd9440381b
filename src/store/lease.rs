//! One rollout per runbook across every machine: a lease, not a lock file.
//!
//! Locally the lease is today's flock (it ends with its process). In a shared
//! store it is an object naming its holder with an expiry, created with
//! `If-None-Match: *`, renewed every few seconds with `If-Match` on the
//! version this holder wrote, and taken over after expiry only on request
//! (`--take-over`). A holder that finds its version gone has lost the lease
//! (fencing by version) and must stop without sending anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Cond, StoreError, Version};

const ITEM: &str = "lease.json";

/// Who holds (or asks for) a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub operator: String,
    pub host: String,
    pub pid: u32,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        Holder { operator: super::operator(), host: super::host(), pid: std::process::id() }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{} (pid {})", self.operator, self.host, self.pid)
    }
}

/// The lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: Holder,
    /// What it is held for (`rollout`, `shift_weights`).
    pub purpose: String,
    /// Unix milliseconds, by the holder's clock.
    pub renewed_at_ms: u64,
    pub expires_at_ms: u64,
}

impl LeaseRecord {
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_at_ms)
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        now > self.expires_at()
    }

    /// "ana@laptop (pid 4242), for rollout, until 20:31:05 UTC (in 12 s)".
    pub fn describe(&self, now: SystemTime) -> String {
        let at = crate::time::rfc3339(self.expires_at());
        let when = match self.expires_at().duration_since(now) {
            Ok(left) => format!("until {at} (in {} s)", left.as_secs() + 1),
            Err(e) => format!("which expired at {at} ({} s ago)", e.duration().as_secs()),
        };
        format!("{}, for {}, {when}", self.holder, self.purpose)
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a lease was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Someone holds it and it has not expired.
    Held(LeaseRecord),
    /// Its holder stopped renewing it: `--take-over` takes it.
    Expired(LeaseRecord),
    /// Another process on this machine holds the local lock.
    Locked(String),
    /// The store did not answer: nothing that needs the lease may run.
    Unavailable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = SystemTime::now();
        match self {
            Refusal::Held(r) => write!(
                f,
                "the runbook's lease is held by {}; wait for it, or once it has expired (its holder stopped) resume with `cutover rollout --take-over`",
                r.describe(now)
            ),
            Refusal::Expired(r) => write!(
                f,
                "the runbook's lease was held by {}; if that process is gone, resume with `cutover rollout --take-over`",
                r.describe(now)
            ),
            Refusal::Locked(m) => f.write_str(m),
            Refusal::Unavailable(m) => {
                write!(f, "the shared state cannot be read ({m}); nothing that needs the lease runs on a stale view")
            }
        }
    }
}

/// A lease held; released when dropped.
pub struct Lease {
    inner: Inner,
}

enum Inner {
    /// Keeps the flock's descriptor alive.
    Local(#[allow(dead_code)] std::fs::File),
    Shared(Arc<Shared>),
}

struct Shared {
    backend: Arc<dyn Backend>,
    runbook: String,
    duration: Duration,
    /// One renewal at a time (the thread's, a fence, the release): two
    /// racing on one version would see the loser's refusal as a lost lease.
    renewing: Mutex<()>,
    held: Mutex<(Version, LeaseRecord)>,
    /// Why the lease is no longer ours (taken over, or expired unrenewed).
    lost: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Shared {
    /// Writes a new expiry on the version this holder wrote last.
    fn renew(&self) -> Result<(), String> {
        let _one = self.renewing.lock().map_err(|_| "lease poisoned".to_string())?;
        if let Some(why) = self.lost.lock().map(|l| l.clone()).unwrap_or(None) {
            return Err(why);
        }
        let (version, mut record) = self.held.lock().map_err(|_| "lease poisoned".to_string())?.clone();
        let now = SystemTime::now();
        record.renewed_at_ms = millis(now);
        record.expires_at_ms = millis(now + self.duration);
        let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        match self.backend.put(&self.runbook, ITEM, &body, Cond::Matches(version.clone())) {
            Ok(v) => {
                if let Ok(mut h) = self.held.lock() {
                    *h = (v, record);
                }
                Ok(())
            }
            Err(StoreError::Conflict) => {
                // A write whose reply was lost and that the SDK sent again is
                // refused although it landed: what is there now is ours.
                if let Ok(Some(o)) = self.backend.get(&self.runbook, ITEM)
                    && o.body == body
                {
                    if let Ok(mut h) = self.held.lock() {
                        *h = (o.version, record);
                    }
                    return Ok(());
                }
                let by = match self.backend.get(&self.runbook, ITEM) {
                    Ok(Some(o)) => serde_json::from_slice::<LeaseRecord>(&o.body)
                        .map(|r| format!("taken over by {}", r.holder))
                        .unwrap_or_else(|_| "replaced".into()),
                    Ok(None) => "released by someone else".into(),
                    Err(e) => format!("replaced ({e})"),
                };
                let why = format!("this process lost the runbook's lease ({by})");
                if let Ok(mut l) = self.lost.lock() {
                    *l = Some(why.clone());
                }
                Err(why)
            }
            Err(e) => {
                // Unrenewed past its expiry, another operator may hold it now.
                let expired = self.held.lock().map(|h| h.1.expired(SystemTime::now())).unwrap_or(true);
                if expired {
                    let why = format!("the lease expired while the shared state could not be reached ({e})");
                    if let Ok(mut l) = self.lost.lock() {
                        *l = Some(why.clone());
                    }
                    return Err(why);
                }
                Err(format!("cannot renew the lease: {e}"))
            }
        }
    }
}

impl Lease {
    /// Before anything is sent: proves the lease is still this holder's by
    /// renewing it now (a conditional write). Err: stop, send nothing.
    pub fn fence(&self) -> Result<(), String> {
        let Inner::Shared(s) = &self.inner else { return Ok(()) };
        // A store that fails for a moment (SlowDown, a timeout) is asked
        // again while the lease is still ours by this holder's clock: a
        // rollback must not be dropped for one failed request.
        loop {
            match s.renew() {
                Ok(()) => return Ok(()),
                Err(e) if s.lost.lock().map(|l| l.is_some()).unwrap_or(true) => return Err(e),
                Err(e) => {
                    let left = s
                        .held
                        .lock()
                        .map(|h| h.1.expires_at())
                        .ok()
                        .and_then(|t| t.duration_since(SystemTime::now()).ok());
                    match left {
                        Some(l) if l > Duration::from_secs(2) => {
                            tracing::warn!(error = %e, "lease renewal failed; trying again");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// Why the lease was lost, if it was (seen by the renewing thread).
    pub fn lost(&self) -> Option<String> {
        match &self.inner {
            Inner::Local(_) => None,
            Inner::Shared(s) => s.lost.lock().ok().and_then(|l| l.clone()),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Inner::Shared(s) = &self.inner {
            s.stop.store(true, Ordering::SeqCst);
            // After any renewal in progress, so the version deleted is the latest.
            let _one = s.renewing.lock();
            if s.lost.lock().map(|l| l.is_none()).unwrap_or(false)
                && let Ok(h) = s.held.lock()
            {
                // Only our own version: a lease someone took over stays theirs.
                let _ = s.backend.delete(&s.runbook, ITEM, Cond::Matches(h.0.clone()));
            }
        }
    }
}

/// How long the runbook's lease lasts unrenewed (`[team] lease`).
pub fn duration_for(rb: &crate::runbook::Runbook) -> Duration {
    rb.team.as_ref().map_or(crate::runbook::DEFAULT_LEASE, |t| t.lease)
}

/// The lease's holder now, if any (None locally: see `is_held`).
pub fn holder(runbook: &str) -> Result<Option<LeaseRecord>, StoreError> {
    let backend = super::backend::current();
    if !backend.shared() {
        return Ok(None);
    }
    read(&*backend, runbook).map(|r| r.map(|(_, rec)| rec))
}

fn read(backend: &dyn Backend, runbook: &str) -> Result<Option<(Version, LeaseRecord)>, StoreError> {
    let Some(o) = backend.get(runbook, ITEM)? else { return Ok(None) };
    let rec = serde_json::from_slice(&o.body).map_err(|e| {
        StoreError::Unavailable(format!("{}/{runbook}/{ITEM}: damaged lease ({e})", backend.describe()))
    })?;
    Ok(Some((o.version, rec)))
}

/// True while some process holds the runbook's lease (locally: its flock).
pub fn is_held(runbook: &str) -> Result<bool, String> {
    let backend = super::backend::current();
    if backend.shared() {
        return Ok(read(&*backend, runbook)
            .map_err(|e| e.to_string())?
            .is_some_and(|(_, r)| !r.expired(SystemTime::now())));
    }
    Ok(crate::paths::try_lock(&local_path(runbook))?.is_none())
}

/// The local lock file (its contents name the holder).
pub fn local_path(runbook: &str) -> std::path::PathBuf {
    crate::paths::state_dir().join(format!("{runbook}.rollout.lock"))
}

/// Takes the runbook's lease for `purpose`, for `duration` between
/// renewals (a thread renews it every sixth of that). `take_over` takes an
/// expired lease; a live one is never taken.
pub fn acquire(runbook: &str, purpose: &str, duration: Duration, take_over: bool) -> Result<Lease, Refusal> {
    let backend = super::backend::current();
    let me = Holder::me();
    if !backend.shared() {
        let path = local_path(runbook);
        return match crate::paths::try_lock(&path).map_err(Refusal::Unavailable)? {
            Some(f) => {
                let _ = std::fs::write(&path, format!("{me}, for {purpose}\n"));
                Ok(Lease { inner: Inner::Local(f) })
            }
            None => {
                let who = std::fs::read_to_string(&path).unwrap_or_default();
                let who = if who.trim().is_empty() { String::new() } else { format!(": {}", who.trim()) };
                Err(Refusal::Locked(format!(
                    "another cutover process on this machine holds the runbook's lock ({}{who})",
                    path.display()
                )))
            }
        };
    }
    let unavailable = |e: StoreError| Refusal::Unavailable(format!("{}: {e}", backend.describe()));
    for _ in 0..10 {
        let now = SystemTime::now();
        let record = LeaseRecord {
            holder: me.clone(),
            purpose: purpose.into(),
            renewed_at_ms: millis(now),
            expires_at_ms: millis(now + duration),
        };
        let body = serde_json::to_vec(&record).map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let cond = match read(&*backend, runbook).map_err(unavailable)? {
            None => Cond::Absent,
            Some((_, held)) if !held.expired(now) => return Err(Refusal::Held(held)),
            Some((_, held)) if !take_over => return Err(Refusal::Expired(held)),
            Some((v, _)) => Cond::Matches(v),
        };
        match backend.put(runbook, ITEM, &body, cond) {
            Ok(v) => {
                let shared = Arc::new(Shared {
                    backend: backend.clone(),
                    runbook: runbook.to_string(),
                    duration,
                    renewing: Mutex::new(()),
                    held: Mutex::new((v, record)),
                    lost: Mutex::new(None),
                    stop: AtomicBool::new(false),
                });
                let renewing = Arc::downgrade(&shared);
                std::thread::spawn(move || {
                    loop {
                        std::thread::sleep(duration / 6);
                        let Some(s) = renewing.upgrade() else { return };
                        if s.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        if let Err(e) = s.renew() {
                            tracing::warn!(error = %e, "lease renewal");
                            if s.lost.lock().map(|l| l.is_some()).unwrap_or(true) {
                                return;
                            }
                        }
                    }
                });
                return Ok(Lease { inner: Inner::Shared(shared) });
            }
            // Someone else wrote it between our read and write: read again, decide again.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(Refusal::Unavailable("the lease kept changing under 10 attempts to take it".into()))
}
