//! A rollout's durable state: its saved state, the lock held while it runs,
//! and the requests other processes leave for it.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn state_path(name: &str) -> PathBuf {
    crate::paths::state_dir().join(format!("{name}.rollout.json"))
}

pub fn lock_path(name: &str) -> PathBuf {
    crate::paths::state_dir().join(format!("{name}.rollout.lock"))
}

/// What another process (`cutover abort`, `pause`, `promote`, the cockpit)
/// asks a running rollout to do, through a file it reads every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Abort,
    Pause,
    Promote,
}

impl Request {
    /// In the order a rollout acts on them: abort wins.
    pub const ALL: [Request; 3] = [Request::Abort, Request::Pause, Request::Promote];

    pub fn path(self, name: &str) -> PathBuf {
        let what = match self {
            Request::Abort => "abort",
            Request::Pause => "pause",
            Request::Promote => "promote",
        };
        crate::paths::state_dir().join(format!("{name}.{what}-request"))
    }

    /// Leaves the request (the text says who and why) for the rollout.
    pub fn ask(self, name: &str, text: &str) -> Result<(), String> {
        let path = self.path(name);
        crate::paths::write_atomic(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The most urgent waiting request, removed as it is taken.
    pub fn take(name: &str) -> Option<(Request, String)> {
        Request::ALL.into_iter().find_map(|r| {
            let text = std::fs::read_to_string(r.path(name)).ok()?;
            let _ = std::fs::remove_file(r.path(name));
            Some((r, text.trim().to_string()))
        })
    }
}

/// Where `cutover abort` asks a running rollout to abort.
pub fn abort_request_path(name: &str) -> PathBuf {
    Request::Abort.path(name)
}

/// True while a `cutover rollout` of this runbook holds its lock.
pub fn is_running(name: &str) -> Result<bool, String> {
    Ok(RolloutLock::try_take(name)?.is_none())
}

/// The rollout's saved state (its type is the engine's `SavedRollout`).
pub fn load_state<T: DeserializeOwned>(name: &str) -> Result<Option<T>, String> {
    let path = state_path(name);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{}: damaged rollout state ({e}); move it away to start over", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn save_state<T: Serialize>(name: &str, s: &T) -> Result<(), String> {
    let path = state_path(name);
    let body = serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?;
    crate::paths::write_atomic(&path, &body)
        .map_err(|e| format!("{}: cannot save the rollout state: {e}", path.display()))
}

/// An exclusive lock held while a rollout runs (released when dropped).
pub struct RolloutLock {
    /// Keeps the descriptor, and with it the flock, alive.
    _file: std::fs::File,
}

impl RolloutLock {
    /// None when another process holds it.
    pub fn try_take(name: &str) -> Result<Option<RolloutLock>, String> {
        Ok(crate::paths::try_lock(&lock_path(name))?.map(|f| RolloutLock { _file: f }))
    }
}
