//! One rollout per runbook across every machine: a lease, not a lock file.
//!
//! Locally the lease is today's flock (it ends with its process). In a shared
//! store it is an object naming its holder with an expiry, created with
//! `If-None-Match: *`, renewed every few seconds with `If-Match` on the
//! version this holder wrote, and taken over after expiry only on request
//! (`--take-over`). A holder that finds its version gone has lost the lease
//! (fencing by version) and must stop without sending anything.
//!
//! Two machines' wall clocks may differ, so neither side trusts the other's:
//! the expiry written in the object only says when to start looking. A holder
//! counts its lease from when it sent its last successful renewal, and a taker
//! takes over only after seeing the same version unrenewed for a whole lease,
//! both by their own monotonic clocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

    /// Whether its holder's clock is ahead of this machine's: it was renewed
    /// later than now (a second's slack). Its expiry then says nothing of
    /// whether the holder lives: only watching for a renewal does.
    fn clock_ahead(&self, now: SystemTime) -> bool {
        self.renewed_at_ms > millis(now) + 1000
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
    /// Expired (or written ahead) by its holder's clock yet still renewed:
    /// that holder lives, and its clock differs from this machine's.
    Renewed(LeaseRecord),
    /// Written by a clock ahead of this machine's: not expired by its
    /// expiry, which proves nothing; `--take-over` (and an abort) watches it.
    ClockAhead(LeaseRecord),
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
            Refusal::Renewed(r) => write!(
                f,
                "the runbook's lease is still being renewed by {} although its expiry disagrees with this machine's clock ({}): that process is alive and the two machines' clocks differ (synchronise them); a live lease is never taken",
                r.holder,
                crate::time::rfc3339(r.expires_at())
            ),
            Refusal::ClockAhead(r) => write!(
                f,
                "the runbook's lease is held by {}, written by a clock {} s ahead of this machine's, so its expiry proves nothing; if that process is gone, `cutover rollout --take-over` or `cutover abort` takes it once it stays unrenewed for a whole lease",
                r.describe(now),
                r.renewed_at_ms.saturating_sub(millis(now)) / 1000
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
    item: String,
    duration: Duration,
    /// When the last renewal that landed was sent, by this machine's
    /// clock of time since boot: the lease is ours for `duration` from then.
    renewed: Mutex<BootClock>,
    /// One renewal at a time (the thread's, a fence, the release): two
    /// racing on one version would see the loser's refusal as a lost lease.
    renewing: Mutex<()>,
    held: Mutex<(Version, LeaseRecord)>,
    /// Why the lease is no longer ours (taken over, or expired unrenewed).
    lost: Mutex<Option<String>>,
    /// The bodies of this holder's latest renewals that got no answer: any
    /// of them may have landed and moved the version.
    unanswered: Mutex<Vec<Vec<u8>>>,
    stop: AtomicBool,
}

impl Shared {
    /// Why the lease is no longer this holder's, if it is not.
    fn lost_why(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Records the lease as lost, for good; returns why.
    fn lose(&self, why: String) -> String {
        if let Ok(mut l) = self.lost.lock() {
            *l = Some(why.clone());
        }
        why
    }

    /// A renewal's body that may have landed unanswered (the last 8).
    fn remember_unanswered(&self, body: &[u8]) {
        if let Ok(mut u) = self.unanswered.lock() {
            u.push(body.to_vec());
            let extra = u.len().saturating_sub(8);
            u.drain(..extra);
        }
    }

    /// Writes a new expiry on the version this holder wrote last.
    fn renew(&self) -> Result<(), String> {
        let _one = self.renewing.lock().map_err(|_| "lease poisoned".to_string())?;
        if let Some(why) = self.lost_why() {
            return Err(why);
        }
        // A renewal whose every reply was lost may have landed: the version
        // then moved under this holder, and the next renewal is refused
        // (412) although the lease is still its own. Renewed once more on
        // the version found.
        for again in [false, true] {
            match self.renew_once(again)? {
                Renewal::Landed => return Ok(()),
                Renewal::MovedByUs => continue,
            }
        }
        Err("cannot renew the lease: its version moved twice".into())
    }

    /// One conditional write of a new expiry; `again`: after a landed write
    /// of ours moved the version.
    fn renew_once(&self, again: bool) -> Result<Renewal, String> {
        let (version, mut record) = self.held.lock().map_err(|_| "lease poisoned".to_string())?.clone();
        let sent = BootClock::now();
        let now = SystemTime::now();
        record.renewed_at_ms = millis(now);
        record.expires_at_ms = millis(now + self.duration);
        let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let landed = |version: Version| {
            if let Ok(mut h) = self.held.lock() {
                *h = (version, record.clone());
            }
            if let Ok(mut r) = self.renewed.lock() {
                *r = sent;
            }
        };
        match self.backend.put(&self.runbook, &self.item, &body, Cond::Matches(version.clone())) {
            Ok(v) => {
                landed(v);
                Ok(Renewal::Landed)
            }
            Err(StoreError::Conflict) => {
                let there = self.backend.get(&self.runbook, &self.item);
                // A write whose reply was lost and that the SDK sent again is
                // refused although it landed: what is there now is ours.
                if let Ok(Some(o)) = &there
                    && o.body == body
                {
                    landed(o.version.clone());
                    return Ok(Renewal::Landed);
                }
                if let Err(e) = &there {
                    // Refused, and what is there unread (the store slow): a
                    // renewal of ours may have landed unanswered (what the
                    // SDK sent again is what was refused), and no one takes
                    // the lease while it is ours by this holder's clock.
                    // Unknown, not lost: asked again while time is left.
                    self.remember_unanswered(&body);
                    if self.left().is_none() {
                        return Err(self.lose(format!(
                            "the lease expired while the shared state could not be read after a refused renewal ({e})"
                        )));
                    }
                    return Err(format!(
                        "cannot renew the lease: its version moved (maybe by a renewal of ours answered too late) and \
                         it could not be read ({e})"
                    ));
                }
                let stored = match &there {
                    Ok(Some(o)) => serde_json::from_slice::<LeaseRecord>(&o.body).ok().map(|r| (o.version.clone(), r)),
                    _ => None,
                };
                // An earlier renewal of this holder's landed unanswered: the
                // lease is ours on the version found (that very body, not just
                // our name: another process may share it). Its expiry is not
                // counted: `renewed` stays as it was.
                let ours =
                    |o: &super::backend::Object| self.unanswered.lock().map(|u| u.contains(&o.body)).unwrap_or(false);
                let landed_unanswered = matches!(&there, Ok(Some(o)) if ours(o));
                if let Some((v, r)) = stored.as_ref().filter(|_| landed_unanswered && !again) {
                    if let Ok(mut h) = self.held.lock() {
                        *h = (v.clone(), r.clone());
                    }
                    return Ok(Renewal::MovedByUs);
                }
                let by = match (&there, stored) {
                    (_, Some((_, r))) => format!("taken over by {}", r.holder),
                    (Ok(None), _) => "released by someone else".into(),
                    _ => "replaced".into(),
                };
                Err(self.lose(format!("this process lost the runbook's lease ({by})")))
            }
            Err(e) => {
                // No answer is not "not written": remembered, in case it landed.
                self.remember_unanswered(&body);
                // Unrenewed for a whole lease, another operator may hold it now.
                if self.left().is_none() {
                    return Err(
                        self.lose(format!("the lease expired while the shared state could not be reached ({e})"))
                    );
                }
                Err(format!("cannot renew the lease: {e}"))
            }
        }
    }
}

/// A reading of the time since boot, sleep included (Linux's
/// CLOCK_BOOTTIME). `Instant` stops while a laptop sleeps: a holder closed
/// for ten minutes would wake still counting on a lease someone has taken
/// over meanwhile, and skip the fence before its next write.
#[derive(Debug, Clone, Copy)]
struct BootClock(Duration);

impl BootClock {
    fn now() -> Self {
        #[cfg(target_os = "linux")]
        const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
        // Elsewhere (macOS) the monotonic clock counts sleep already.
        #[cfg(not(target_os = "linux"))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the one timespec it is given.
        if unsafe { libc::clock_gettime(CLOCK, &mut t) } != 0 {
            // Never on a supported system; a lease counted from zero is
            // counted as long gone, the safe way.
            return BootClock(Duration::ZERO);
        }
        BootClock(Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32))
    }

    fn elapsed(self) -> Duration {
        match BootClock::now().0 {
            Duration::ZERO => Duration::MAX,
            now => now.saturating_sub(self.0),
        }
    }
}

/// How one renewal write went, when it did not fail.
enum Renewal {
    Landed,
    /// Refused because a write of this process's own landed unanswered.
    MovedByUs,
}

impl Shared {
    /// How long the lease is still surely ours, by this machine's clock.
    fn left(&self) -> Option<Duration> {
        let since = self.renewed.lock().map(|r| r.elapsed()).unwrap_or(Duration::MAX);
        self.duration.checked_sub(since).filter(|l| !l.is_zero())
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
                Err(e) => match s.left() {
                    Some(l) if l > Duration::from_secs(2) => {
                        tracing::warn!(error = %e, "lease renewal failed; trying again");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Before each piece of a long write (a Redis copy's batch): free while
    /// the renewing thread keeps the lease fresh; after a stall (this process
    /// stopped, the store slow) a fence first. Err: stop, write nothing more.
    pub fn check(&self) -> Result<(), String> {
        let Inner::Shared(s) = &self.inner else { return Ok(()) };
        if let Some(why) = s.lost_why() {
            return Err(why);
        }
        match s.left() {
            Some(left) if left > s.duration / 2 => Ok(()),
            _ => self.fence(),
        }
    }

    /// Why the lease was lost, if it was (seen by the renewing thread).
    pub fn lost(&self) -> Option<String> {
        match &self.inner {
            Inner::Local(_) => None,
            Inner::Shared(s) => s.lost_why(),
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
                let _ = s.backend.delete(&s.runbook, &s.item, Cond::Matches(h.0.clone()));
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
    read(&*backend, runbook, ITEM).map(|r| r.map(|(_, rec)| rec))
}

fn read(backend: &dyn Backend, runbook: &str, item: &str) -> Result<Option<(Version, LeaseRecord)>, StoreError> {
    let Some(o) = backend.get(runbook, item)? else { return Ok(None) };
    let rec = serde_json::from_slice(&o.body).map_err(|e| {
        StoreError::Unavailable(format!("{}/{runbook}/{item}: damaged lease ({e})", backend.describe()))
    })?;
    Ok(Some((o.version, rec)))
}

/// True while some process holds the runbook's lease (locally: its flock).
/// A shared lease expired by this machine's clock may still be renewed by a
/// holder whose clock is behind: it is watched for two of its holder's
/// renewals (a third of its lease) before it counts as not held.
pub fn is_held(runbook: &str) -> Result<bool, String> {
    let backend = super::backend::current();
    if backend.shared() {
        return is_held_on(&*backend, runbook, ITEM).map_err(|e| e.to_string());
    }
    Ok(crate::paths::try_lock(&local_path(runbook))?.is_none())
}

fn is_held_on(backend: &dyn Backend, runbook: &str, item: &str) -> Result<bool, StoreError> {
    for _ in 0..10 {
        let Some((v, held)) = read(backend, runbook, item)? else { return Ok(false) };
        let now = SystemTime::now();
        if !held.expired(now) && !held.clock_ahead(now) {
            return Ok(true);
        }
        // Its holder renews every sixth of its own lease, by its own clock.
        let theirs = Duration::from_millis(held.expires_at_ms.saturating_sub(held.renewed_at_ms));
        let wait = theirs / 3 + (theirs / 6).clamp(Duration::from_millis(100), Duration::from_secs(2));
        match watch(backend, runbook, item, (&v, &held.holder), wait) {
            Watched::Unrenewed => return Ok(false),
            Watched::Unread(e) => return Err(StoreError::Unavailable(e)),
            Watched::Renewed(_) => return Ok(true),
            Watched::Changed => continue,
        }
    }
    // Changing at every look: someone is taking and renewing it.
    Ok(true)
}

/// The local lock file (its contents name the holder).
pub fn local_path(runbook: &str) -> std::path::PathBuf {
    crate::paths::state_dir().join(format!("{runbook}.rollout.lock"))
}

/// Takes the runbook's lease for `purpose`, for `duration` between
/// renewals (a thread renews it every sixth of that). `take_over` takes an
/// expired lease, after watching it stay unrenewed for a whole `duration` by
/// this machine's clock (`say` tells why it waits); a live one is never taken.
pub fn acquire(
    runbook: &str,
    purpose: &str,
    duration: Duration,
    take_over: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Lease, Refusal> {
    let backend = super::backend::current();
    if !backend.shared() {
        let me = Holder::me();
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
    acquire_on(backend, runbook, ITEM, purpose, duration, take_over, say)
}

/// What watching an expired lease found.
enum Watched {
    /// The same version for a whole lease: its holder is gone.
    Unrenewed,
    /// Renewed meanwhile: its holder lives (its clock is behind ours).
    Renewed(LeaseRecord),
    /// Released or replaced by a new holder: decide again.
    Changed,
    /// Unchanged whenever read, but some reads failed: a renewal may have
    /// gone unseen.
    Unread(String),
}

/// Reads the lease until it has stayed at `version` for `duration` on this
/// machine's monotonic clock.
fn watch(
    backend: &dyn Backend,
    runbook: &str,
    item: &str,
    (version, holder): (&Version, &Holder),
    duration: Duration,
) -> Watched {
    let start = Instant::now();
    let every = (duration / 6).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let mut failed = None;
    loop {
        let left = duration.saturating_sub(start.elapsed());
        if left.is_zero() {
            return failed.map_or(Watched::Unrenewed, Watched::Unread);
        }
        std::thread::sleep(every.min(left));
        match read(backend, runbook, item) {
            Ok(Some((v, _))) if &v == version => {}
            Ok(Some((_, r))) if &r.holder == holder => return Watched::Renewed(r),
            Ok(_) => return Watched::Changed,
            // A failed read proves nothing either way.
            Err(e) => {
                tracing::warn!(error = %e, "reading the lease while watching it");
                failed = Some(e.to_string());
            }
        }
    }
}

/// A lease other than the runbook's (`redis-copy/<hash>.lease`) in a shared
/// `backend`; an expired one is taken over after watching it.
pub fn acquire_item(
    backend: Arc<dyn Backend>,
    runbook: &str,
    item: &str,
    purpose: &str,
    duration: Duration,
    say: &mut dyn FnMut(&str),
) -> Result<Lease, Refusal> {
    acquire_on(backend, runbook, item, purpose, duration, true, say)
}

/// The lease object `item` of `runbook` in a shared `backend`.
pub(crate) fn acquire_on(
    backend: Arc<dyn Backend>,
    runbook: &str,
    item: &str,
    purpose: &str,
    duration: Duration,
    take_over: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Lease, Refusal> {
    let me = Holder::me();
    let unavailable = |e: StoreError| Refusal::Unavailable(format!("{}: {e}", backend.describe()));
    // This process's last write: it may have landed with its reply lost
    // (the SDK's retry then answered 412), so it is read back as ours.
    let mut mine: Option<(LeaseRecord, BootClock)> = None;
    for _ in 0..10 {
        let got = read(&*backend, runbook, item).map_err(unavailable)?;
        if let (Some((v, there)), Some((record, sent))) = (&got, &mine)
            && there == record
        {
            return Ok(hold(&backend, runbook, item, duration, *sent, v.clone(), record.clone()));
        }
        let cond = match got {
            None => Cond::Absent,
            Some((_, held)) if !held.expired(SystemTime::now()) && !held.clock_ahead(SystemTime::now()) => {
                return Err(Refusal::Held(held));
            }
            Some((_, held)) if !take_over && held.expired(SystemTime::now()) => return Err(Refusal::Expired(held)),
            // A holder whose clock runs ahead writes expiries far off: with
            // take_over it is watched as an expired one is, as it may be dead.
            Some((_, held)) if !take_over => return Err(Refusal::ClockAhead(held)),
            Some((v, held)) => {
                // The holder's own lease (its runbook may say another length),
                // measured on one clock so skew cancels out, and a poll more.
                let theirs = Duration::from_millis(held.expires_at_ms.saturating_sub(held.renewed_at_ms));
                let wait = duration.max(theirs) + (duration.max(theirs) / 6).min(Duration::from_secs(2));
                let why = if held.expired(SystemTime::now()) {
                    "expired by its holder's clock".to_string()
                } else {
                    let ahead = held.renewed_at_ms.saturating_sub(millis(SystemTime::now())) / 1000;
                    format!("was renewed by a clock {ahead} s ahead of this machine's, so its expiry proves nothing")
                };
                say(&format!(
                    "the lease of {} {why}; watching it stay unrenewed for {} s by this machine's clock before taking it over (clocks differ)",
                    held.holder,
                    wait.as_secs_f64().ceil()
                ));
                match watch(&*backend, runbook, item, (&v, &held.holder), wait) {
                    // The conditional write on `version` guards a renewal
                    // a failed read missed.
                    Watched::Unrenewed | Watched::Unread(_) => Cond::Matches(v),
                    Watched::Renewed(r) => return Err(Refusal::Renewed(r)),
                    Watched::Changed => continue,
                }
            }
        };
        let sent = BootClock::now();
        let now = SystemTime::now();
        let record = LeaseRecord {
            holder: me.clone(),
            purpose: purpose.into(),
            renewed_at_ms: millis(now),
            expires_at_ms: millis(now + duration),
        };
        let body = serde_json::to_vec(&record).map_err(|e| Refusal::Unavailable(e.to_string()))?;
        match backend.put(runbook, item, &body, cond) {
            Ok(v) => return Ok(hold(&backend, runbook, item, duration, sent, v, record)),
            // Someone else wrote it between our read and write: read again,
            // decide again (our own write, landed unanswered, is known then).
            Err(StoreError::Conflict) => mine = Some((record, sent)),
            // No reply is not "not written": our record there is our lease,
            // never one left for everyone to wait out.
            Err(e) => match read(&*backend, runbook, item) {
                Ok(Some((v, there))) if there == record => {
                    return Ok(hold(&backend, runbook, item, duration, sent, v, record));
                }
                _ => return Err(unavailable(e)),
            },
        }
    }
    Err(Refusal::Unavailable("the lease kept changing under 10 attempts to take it".into()))
}

/// The lease this process holds, written at `v` as `record` (sent at
/// `sent`), renewed every sixth of `duration` by a thread of its own.
fn hold(
    backend: &Arc<dyn Backend>,
    runbook: &str,
    item: &str,
    duration: Duration,
    sent: BootClock,
    v: Version,
    record: LeaseRecord,
) -> Lease {
    let shared = Arc::new(Shared {
        backend: backend.clone(),
        runbook: runbook.to_string(),
        item: item.to_string(),
        duration,
        renewed: Mutex::new(sent),
        renewing: Mutex::new(()),
        held: Mutex::new((v, record)),
        lost: Mutex::new(None),
        unanswered: Mutex::new(Vec::new()),
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
    Lease { inner: Inner::Shared(shared) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::LocalFiles;
    use crate::store::testing::Unsure;

    /// Real files with S3's conditional-write rules, seen as a shared store,
    /// whose writes can fail or land unanswered on cue. (A sandbox S3 cannot
    /// hold a lease's holder to an exact clock or fail one write on cue; the
    /// S3 path itself is tested in tests/team.rs.)
    fn store() -> (tempfile::TempDir, Arc<Unsure>) {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles { dir: Some(dir.path().to_path_buf()) };
        (dir, Arc::new(Unsure::new(files, 0, false, 0)))
    }

    fn bob() -> Holder {
        Holder { operator: "bob".into(), host: "laptop-b".into(), pid: 7 }
    }

    /// Bob's record as his clock writes it: `skew` behind the real time.
    fn record_of_bob(skew: Duration, lease: Duration) -> Vec<u8> {
        let now = SystemTime::now() - skew;
        let r = LeaseRecord {
            holder: bob(),
            purpose: "rollout".into(),
            renewed_at_ms: millis(now),
            expires_at_ms: millis(now + lease),
        };
        serde_json::to_vec(&r).unwrap()
    }

    /// Bob died holding the lease, his clock 10 minutes fast: its expiry,
    /// by his clock, is minutes away by ours. A take-over (and an abort
    /// asking whether it is held) watches it for a whole lease, as for an
    /// expired one, and finds it unrenewed.
    #[test]
    fn a_dead_holder_whose_clock_ran_fast_is_taken_over_after_a_whole_lease() {
        let (_dir, s) = store();
        let lease = Duration::from_millis(900);
        let ahead = SystemTime::now() + Duration::from_secs(600);
        let r = LeaseRecord {
            holder: bob(),
            purpose: "rollout".into(),
            renewed_at_ms: millis(ahead),
            expires_at_ms: millis(ahead + lease),
        };
        s.put("demo", ITEM, &serde_json::to_vec(&r).unwrap(), Cond::Absent).unwrap();
        assert!(!is_held_on(&*s, "demo", ITEM).unwrap(), "unrenewed while watched");
        let started = Instant::now();
        let held = take_over(&s, lease).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(started.elapsed() >= lease, "watched for a whole lease first: {:?}", started.elapsed());
        drop(held);
        // Without --take-over: refused, saying why its expiry is not trusted.
        s.put("demo", ITEM, &serde_json::to_vec(&r).unwrap(), Cond::Absent).unwrap();
        let plain = acquire_on(s.clone(), "demo", ITEM, "rollout", lease, false, &mut |_| {});
        assert!(matches!(plain, Err(Refusal::ClockAhead(_))), "{:?}", plain.err());
    }

    fn take_over(s: &Arc<Unsure>, lease: Duration) -> Result<Lease, Refusal> {
        acquire_on(s.clone(), "demo", ITEM, "rollout", lease, true, &mut |_| {})
    }

    #[test]
    fn a_lease_expired_by_its_holders_slow_clock_but_still_renewed_is_never_taken_over() {
        let (_dir, s) = store();
        let lease = Duration::from_millis(900);
        // Bob's clock is 90 s behind: every renewal he writes has already
        // expired by ours, yet he renews every 150 ms.
        s.put("demo", ITEM, &record_of_bob(Duration::from_secs(90), lease), Cond::Absent).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(150));
                    s.put("demo", ITEM, &record_of_bob(Duration::from_secs(90), lease), Cond::Any).unwrap();
                }
            })
        };
        let got = take_over(&s, lease);
        stop.store(true, Ordering::SeqCst);
        renewer.join().unwrap();
        match got {
            Err(Refusal::Renewed(r)) => assert_eq!(r.holder, bob()),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a live holder's lease was taken over"),
        }
        let now: LeaseRecord = serde_json::from_slice(&s.get("demo", ITEM).unwrap().unwrap().body).unwrap();
        assert_eq!(now.holder, bob(), "still Bob's");
    }

    /// Bob renews every `lease / 6` a record his clock, `skew` behind, writes.
    fn renewing_bob(
        s: &Arc<Unsure>,
        skew: Duration,
        lease: Duration,
    ) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        s.put("demo", ITEM, &record_of_bob(skew, lease), Cond::Any).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(lease / 6);
                    s.put("demo", ITEM, &record_of_bob(skew, lease), Cond::Any).unwrap();
                }
            })
        };
        (stop, renewer)
    }

    /// A pause asks `is_held` whether a rollout runs: a holder whose clock is
    /// 90 s behind still holds its lease (before, the pause was refused as
    /// "no rollout is running"), and one that stopped renewing does not.
    #[test]
    fn a_lease_renewed_by_a_holder_whose_clock_is_behind_is_held_and_an_unrenewed_one_is_not() {
        let (_dir, s) = store();
        assert!(!is_held_on(&*s, "demo", ITEM).unwrap(), "no lease");
        let lease = Duration::from_millis(1200);
        let (stop, renewer) = renewing_bob(&s, Duration::ZERO, lease);
        assert!(is_held_on(&*s, "demo", ITEM).unwrap(), "a lease in time by both clocks");
        stop.store(true, Ordering::SeqCst);
        renewer.join().unwrap();

        let (stop, renewer) = renewing_bob(&s, Duration::from_secs(90), lease);
        let held = is_held_on(&*s, "demo", ITEM);
        stop.store(true, Ordering::SeqCst);
        renewer.join().unwrap();
        assert!(held.unwrap(), "a live holder whose clock is behind counted as gone");

        s.put("demo", ITEM, &record_of_bob(Duration::from_secs(90), lease), Cond::Any).unwrap();
        let start = Instant::now();
        assert!(!is_held_on(&*s, "demo", ITEM).unwrap(), "an unrenewed lease");
        assert!(start.elapsed() >= lease / 3, "judged gone after {:?}, before two renewals", start.elapsed());
    }

    #[test]
    fn a_taker_with_a_shorter_lease_watches_for_the_holders_own_lease_length() {
        let (_dir, s) = store();
        // Bob's runbook says 3 s (he renews every second) and his clock is
        // 90 s behind; the taker's runbook says 300 ms.
        let theirs = Duration::from_secs(3);
        s.put("demo", ITEM, &record_of_bob(Duration::from_secs(90), theirs), Cond::Absent).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    if last.elapsed() >= Duration::from_secs(1) {
                        s.put("demo", ITEM, &record_of_bob(Duration::from_secs(90), theirs), Cond::Any).unwrap();
                        last = Instant::now();
                    }
                }
            })
        };
        let got = take_over(&s, Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        renewer.join().unwrap();
        match got {
            Err(Refusal::Renewed(r)) => assert_eq!(r.holder, bob()),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a live holder's lease was taken over after the taker's own, shorter, lease"),
        }
    }

    #[test]
    fn an_unrenewed_lease_is_taken_over_only_after_a_whole_lease_by_this_machines_clock() {
        let (_dir, s) = store();
        let lease = Duration::from_millis(700);
        s.put("demo", ITEM, &record_of_bob(Duration::from_secs(60), lease), Cond::Absent).unwrap();
        let start = Instant::now();
        let mut said = Vec::new();
        let got = acquire_on(s.clone(), "demo", ITEM, "rollout", lease, true, &mut |m| said.push(m.to_string()));
        let waited = start.elapsed();
        let held = got.unwrap_or_else(|e| panic!("{e}"));
        assert!(waited >= lease, "took over after {waited:?}, before a whole lease of {lease:?}");
        assert!(said.iter().any(|m| m.contains("bob@laptop-b") && m.contains("watching")), "{said:?}");
        let now: LeaseRecord = serde_json::from_slice(&s.get("demo", ITEM).unwrap().unwrap().body).unwrap();
        assert_eq!(now.holder, Holder::me());
        drop(held);
        assert!(s.get("demo", ITEM).unwrap().is_none(), "released on drop");
        // Without --take-over an expired lease is only named.
        s.put("demo", ITEM, &record_of_bob(Duration::from_secs(60), lease), Cond::Absent).unwrap();
        let got = acquire_on(s.clone(), "demo", ITEM, "rollout", lease, false, &mut |_| {});
        assert!(matches!(got, Err(Refusal::Expired(ref r)) if r.holder == bob()), "{:?}", got.err());
    }

    #[test]
    fn a_holder_whose_lease_was_taken_over_is_fenced_off_by_its_next_fence_alone() {
        let (_dir, s) = store();
        // A long lease: the renewing thread sleeps through the test, so only
        // the fence can find the loss.
        let held = acquire_on(s.clone(), "demo", ITEM, "rollout", Duration::from_secs(600), false, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        held.fence().unwrap();
        assert_eq!(held.lost(), None);
        s.put("demo", ITEM, &record_of_bob(Duration::ZERO, Duration::from_secs(600)), Cond::Any).unwrap();
        let e = held.fence().unwrap_err();
        assert!(e.contains("lost the runbook's lease (taken over by bob@laptop-b"), "{e}");
        assert!(held.lost().is_some());
        drop(held);
        let now: LeaseRecord = serde_json::from_slice(&s.get("demo", ITEM).unwrap().unwrap().body).unwrap();
        assert_eq!(now.holder, bob(), "a lease taken over is not released by its old holder");
    }

    /// A take whose write landed with every reply lost left a lease in this
    /// process's name that nobody renewed: everyone, an emergency abort
    /// too, waited it out. Read back, it is this process's lease.
    #[test]
    fn a_take_that_landed_unanswered_is_the_takers_lease() {
        let (_dir, s) = store();
        s.lose.store(1, Ordering::SeqCst);
        let held = acquire_on(s.clone(), "demo", ITEM, "rollout", Duration::from_secs(600), false, &mut |_| {})
            .unwrap_or_else(|e| panic!("the lease written is ours: {e}"));
        assert_eq!(s.lose.load(Ordering::SeqCst), 0, "the unanswered write was made");
        held.fence().unwrap_or_else(|e| panic!("{e}"));
        drop(held);
        assert!(s.get("demo", ITEM).unwrap().is_none(), "released by its holder, not left to expire");
    }

    /// A renewal that landed with every reply lost moved the version: the
    /// next one is refused (412), and the holder must not take its own
    /// record for a taker's.
    #[test]
    fn a_renewal_that_landed_unanswered_is_still_the_holders_lease() {
        let (_dir, s) = store();
        let held = acquire_on(s.clone(), "demo", ITEM, "rollout", Duration::from_secs(600), false, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        s.lose.store(1, Ordering::SeqCst);
        held.fence().unwrap_or_else(|e| panic!("the lease is still ours: {e}"));
        assert_eq!(held.lost(), None);
        assert_eq!(s.lose.load(Ordering::SeqCst), 0, "the unanswered write was made");
        held.fence().unwrap();
        drop(held);
        assert!(s.get("demo", ITEM).unwrap().is_none(), "released by its holder");
        // A record in this process's very name that it never sent (a twin:
        // same operator, host and pid in another container) is not its own.
        let held = acquire_on(s.clone(), "demo", ITEM, "rollout", Duration::from_secs(600), false, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        let now = SystemTime::now() + Duration::from_secs(1);
        let twin = LeaseRecord {
            holder: Holder::me(),
            purpose: "rollout".into(),
            renewed_at_ms: millis(now),
            expires_at_ms: millis(now + Duration::from_secs(600)),
        };
        s.put("demo", ITEM, &serde_json::to_vec(&twin).unwrap(), Cond::Any).unwrap();
        let e = held.fence().unwrap_err();
        assert!(e.contains("lost the runbook's lease"), "{e}");
    }

    /// A renewal landed unanswered, the next one refused (412), and the
    /// read that would tell whose record is there failed (a slow store): not
    /// known lost, so asked again, and found to be the holder's own.
    #[test]
    fn a_refused_renewal_whose_record_cannot_be_read_is_asked_again_not_lost() {
        let (_dir, s) = store();
        let held = acquire_on(s.clone(), "demo", ITEM, "rollout", Duration::from_secs(600), false, &mut |_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        // A renewal in the same millisecond as the take would write the same
        // record, leaving the version where it was: no refusal to follow.
        std::thread::sleep(Duration::from_millis(5));
        s.lose.store(1, Ordering::SeqCst);
        s.fail_gets.store(1, Ordering::SeqCst);
        held.fence().unwrap_or_else(|e| panic!("the lease is still ours: {e}"));
        assert_eq!(held.lost(), None);
        assert_eq!(s.fail_gets.load(Ordering::SeqCst), 0, "the failing read was made");
        drop(held);
        assert!(s.get("demo", ITEM).unwrap().is_none(), "released by its holder");
    }

    #[test]
    fn a_holder_unable_to_renew_counts_its_lease_gone_after_a_whole_lease_by_its_own_clock() {
        let (_dir, s) = store();
        let lease = Duration::from_millis(3500);
        let held =
            acquire_on(s.clone(), "demo", ITEM, "rollout", lease, false, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        s.fail_puts.store(true, Ordering::SeqCst);
        // Retried while more than 2 s of the lease is left, then refused, not lost.
        let e = held.fence().unwrap_err();
        assert!(e.contains("cannot renew the lease"), "{e}");
        assert_eq!(held.lost(), None);
        // Its record now says a minute more (a wall clock that jumped, say):
        // the holder must go by its own monotonic count, not by this.
        if let Inner::Shared(sh) = &held.inner {
            sh.held.lock().unwrap().1.expires_at_ms = millis(SystemTime::now() + Duration::from_secs(60));
        }
        std::thread::sleep(lease);
        let e = held.fence().unwrap_err();
        assert!(e.contains("the lease expired while the shared state could not be reached"), "{e}");
        assert!(held.lost().is_some(), "gone for good: another operator may hold it now");
        s.fail_puts.store(false, Ordering::SeqCst);
        assert!(held.fence().is_err(), "a lease lost stays lost when the store answers again");
    }
}
