//! A rollout's durable state: its saved state (written only over the version
//! read), and the requests other processes, on any machine, leave for it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backend::{Cond, StoreError, Version, current};

const STATE: &str = "rollout.json";

/// Where the saved state is, for messages.
pub fn state_location(name: &str) -> String {
    super::backend::location(name, STATE)
}

/// What another process (`cutover abort`, `pause`, `promote`, a cockpit on
/// any machine) asks a running rollout to do; it looks every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Abort,
    Pause,
    Promote,
}

/// What a request says: who asked and why, and for a promote the step the
/// person saw, so a rollout that has moved on since skips nothing unseen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RequestNote {
    pub text: String,
    /// The step (from 0) the person confirmed; None: whichever is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// When the soak the person saw began: a soak begun again since (a
    /// pause and resume, a retry after a rollback) was not seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_since: Option<std::time::SystemTime>,
}

impl RequestNote {
    pub fn new(text: impl Into<String>) -> RequestNote {
        RequestNote { text: text.into(), step: None, soak_since: None }
    }

    /// As left: JSON, or (by a version before the step was kept) the text.
    fn from_body(body: &[u8]) -> RequestNote {
        serde_json::from_slice(body).unwrap_or_else(|_| RequestNote::new(String::from_utf8_lossy(body).trim()))
    }
}

impl Request {
    /// In the order a rollout acts on them: abort wins.
    pub const ALL: [Request; 3] = [Request::Abort, Request::Pause, Request::Promote];

    fn item(self) -> &'static str {
        match self {
            Request::Abort => "abort-request",
            Request::Pause => "pause-request",
            Request::Promote => "promote-request",
        }
    }

    /// Leaves the request for the rollout.
    pub fn ask(self, name: &str, note: &RequestNote) -> Result<(), String> {
        let b = current();
        // Plain text unless a step is named: a rollout of an earlier
        // version reads the text as it always did.
        let body = match note.step {
            None => note.text.clone().into_bytes(),
            Some(_) => {
                serde_json::to_vec(note).map_err(|e| format!("cannot write the {} request: {e}", self.item()))?
            }
        };
        b.put(name, self.item(), &body, Cond::Any)
            .map(|_| ())
            .map_err(|e| format!("{}: cannot leave the {} request: {e}", b.describe(), self.item()))
    }

    /// The request, if one waits.
    pub fn waiting(self, name: &str) -> Result<Option<RequestNote>, String> {
        let b = current();
        let got = b.get(name, self.item()).map_err(|e| format!("{}: {e}", b.describe()))?;
        Ok(got.map(|o| RequestNote::from_body(&o.body)))
    }

    /// True when one waits, or when the store cannot say (a caller waiting
    /// for a request to be taken keeps waiting).
    pub fn pending(self, name: &str) -> bool {
        self.waiting(name).map_or(true, |w| w.is_some())
    }

    /// Takes this request if one waits: read, then deleted only as read (a
    /// newer one left meanwhile stays for the next look). Err: the store
    /// cannot say whether one waits.
    pub fn take_one(self, name: &str) -> Result<Option<RequestNote>, String> {
        let b = current();
        let Some(o) = b.get(name, self.item()).map_err(|e| format!("{}: {e}", b.describe()))? else { return Ok(None) };
        match b.delete(name, self.item(), Cond::Matches(o.version.clone())) {
            Ok(()) => Ok(Some(RequestNote::from_body(&o.body))),
            // Replaced meanwhile: the newer one is taken at the next look.
            Err(StoreError::Conflict) => Ok(None),
            Err(e) => Err(format!("{}: {e}", b.describe())),
        }
    }

    /// The most urgent waiting request, removed as it is taken. Err when
    /// one could not be read: nothing less urgent is taken over it.
    pub fn take(name: &str) -> Result<Option<(Request, RequestNote)>, String> {
        for r in Request::ALL {
            if let Some(t) = r.take_one(name)? {
                return Ok(Some((r, t)));
            }
        }
        Ok(None)
    }

    /// Withdraws it (a request nothing acted on in time).
    pub fn withdraw(self, name: &str) {
        let _ = current().delete(name, self.item(), Cond::Any);
    }
}

/// True while a `cutover rollout` of this runbook holds its lease. It may
/// watch a shared lease for seconds, so it runs off the async worker.
pub fn is_running(name: &str) -> Result<bool, String> {
    super::off_async(|| super::lease::is_held(name))
}

/// The rollout's saved state (its type is the engine's `RolloutState`).
pub fn load_state<T: DeserializeOwned>(name: &str) -> Result<Option<T>, String> {
    load_versioned(name).map(|(s, _)| s)
}

/// The saved state and the version it was read at.
pub fn load_versioned<T: DeserializeOwned>(name: &str) -> Result<(Option<T>, Option<Version>), String> {
    let got = current().get(name, STATE).map_err(|e| format!("{}: {e}", state_location(name)))?;
    let Some(o) = got else { return Ok((None, None)) };
    let s = serde_json::from_slice(&o.body)
        .map_err(|e| format!("{}: damaged rollout state ({e}); move it away to start over", state_location(name)))?;
    Ok((Some(s), Some(o.version)))
}

/// Why the state was not saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveError {
    /// Someone else wrote it since it was read: stop.
    Conflict(String),
    /// The store failed (it may answer again).
    Unavailable(String),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::Conflict(m) | SaveError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl From<SaveError> for String {
    fn from(e: SaveError) -> String {
        e.to_string()
    }
}

/// Saves over the version read (`version`, updated to the one written). A
/// state someone else wrote meanwhile is never overwritten: Err says so.
pub fn save_state<T: Serialize>(name: &str, s: &T, version: &mut Option<Version>) -> Result<(), SaveError> {
    save_state_on(&*current(), name, s, version)
}

fn save_state_on<T: Serialize>(
    store: &dyn super::backend::Backend,
    name: &str,
    s: &T,
    version: &mut Option<Version>,
) -> Result<(), SaveError> {
    let body = serde_json::to_vec_pretty(s).map_err(|e| SaveError::Unavailable(e.to_string()))?;
    match store.put(name, STATE, &body, Cond::replacing(version.as_ref())) {
        Ok(v) => {
            *version = Some(v);
            Ok(())
        }
        Err(StoreError::Conflict) => match store.get(name, STATE) {
            // A write whose reply was lost and that was sent again is refused
            // although it landed: what is there now is this state.
            Ok(Some(o)) if o.body == body => {
                *version = Some(o.version);
                Ok(())
            }
            // Refused and unread is not "changed by someone": asked again,
            // as a rollback decided must not be dropped for one request.
            Err(e) => Err(SaveError::Unavailable(format!(
                "{}: the rollout state's save was refused and what is there could not be read ({e})",
                state_location(name)
            ))),
            Ok(_) => Err(SaveError::Conflict(format!(
                "{}: the rollout state changed under this process (another operator resumed or aborted it); stopping without sending anything more",
                state_location(name)
            ))),
        },
        Err(e) => Err(SaveError::Unavailable(format!("{}: cannot save the rollout state: {e}", state_location(name)))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::LocalFiles;
    use super::super::testing::Unsure;
    use super::*;
    use std::sync::atomic::Ordering;

    /// A save refused whose state cannot be read back is unknown, so asked
    /// again (the rollout's `persist` retries Unavailable), never "changed
    /// by another operator", which stopped a rollout before the rollback it
    /// had decided. Asked again, its own state is found and it is saved.
    #[test]
    fn a_refused_save_that_cannot_be_read_back_is_asked_again_not_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles { dir: Some(dir.path().to_path_buf()) };
        let store = Unsure::new(files, 0, true, 0);
        let mut version = None;
        save_state_on(&store, "demo", &serde_json::json!({"step": 1}), &mut version).unwrap();
        let first = version.clone();
        store.lose.store(1, Ordering::SeqCst);
        store.fail_gets.store(1, Ordering::SeqCst);
        let state = serde_json::json!({"step": 1, "rolling_back": true});
        match save_state_on(&store, "demo", &state, &mut version) {
            Err(SaveError::Unavailable(why)) => assert!(why.contains("could not be read"), "{why}"),
            other => panic!("refused and unread is unknown, not {other:?}"),
        }
        assert_eq!(version, first, "nothing known written");
        save_state_on(&store, "demo", &state, &mut version).unwrap();
        assert_ne!(version, first);
        // Someone else's state there: a conflict, said so.
        let other = serde_json::json!({"step": 2});
        let mut theirs = version.clone();
        save_state_on(&store, "demo", &other, &mut theirs).unwrap();
        assert!(matches!(save_state_on(&store, "demo", &state, &mut version), Err(SaveError::Conflict(_))));
    }
}
