//! The resume point of a copy: the SCAN cursor after the last batch that is
//! fully written, and the counters so far. Written atomically (0600).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::progress::Counters;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Redacted URLs and pattern this checkpoint belongs to.
    pub from: String,
    pub to: String,
    pub pattern: Option<String>,
    /// Where SCAN continues; every key SCAN returned before it is on the target.
    pub cursor: u64,
    pub counters: Counters,
    pub on_conflict: super::OnConflict,
    pub mode: super::Mode,
    /// RFC 3339 time of the last write.
    pub updated: String,
    /// The source's `run_id` when the cursor was taken: a SCAN cursor means
    /// nothing to a restarted server (its hash seed is new).
    #[serde(default)]
    pub source_run_id: Option<String>,
}

impl Checkpoint {
    /// Where a resumed copy starts SCAN: the saved cursor, or 0 with the
    /// reason when the source restarted (or failed over) since it was saved.
    pub fn resume_cursor(&self, source_run_id: &str) -> (u64, Option<String>) {
        match &self.source_run_id {
            Some(id) if id != source_run_id => (
                0,
                Some(format!(
                    "the source restarted since the checkpoint (run_id {} → {}): a SCAN cursor does not survive a restart, so the scan starts over and overwrites what it copied before ({} keys)",
                    short(id),
                    short(source_run_id),
                    self.counters.copied
                )),
            ),
            _ => (self.cursor, None),
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `$XDG_STATE_HOME/cutover/redis-copy/<hash>.json`, one per (from, to,
/// pattern); `from` and `to` are `Endpoint::server_id`s.
pub fn path_for(from: &str, to: &str, pattern: Option<&str>) -> PathBuf {
    let id = format!("{from}\n{to}\n{}", pattern.unwrap_or("*"));
    crate::paths::state_dir().join("redis-copy").join(format!("{:016x}.json", crate::hash::fnv1a(id.as_bytes())))
}

pub fn load(path: &std::path::Path) -> Result<Option<Checkpoint>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            format!("{}: damaged checkpoint ({e}); delete it and copy again without --resume", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: cannot read the checkpoint: {e}", path.display())),
    }
}

pub fn save(path: &std::path::Path, cp: &Checkpoint) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(cp).map_err(|e| e.to_string())?;
    crate::paths::write_atomic(path, &body).map_err(|e| format!("{}: cannot write the checkpoint: {e}", path.display()))
}

pub fn remove(path: &std::path::Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: cannot remove the checkpoint: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// One copy per checkpoint at a time: an flock beside it, held while the value lives.
pub struct CopyLock {
    _file: std::fs::File,
}

impl CopyLock {
    /// None when another process holds it.
    pub fn try_take(checkpoint: &std::path::Path) -> Result<Option<CopyLock>, String> {
        Ok(crate::paths::try_lock(&checkpoint.with_extension("lock"))?.map(|f| CopyLock { _file: f }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_held_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        let held = CopyLock::try_take(&p).unwrap();
        assert!(held.is_some());
        assert!(CopyLock::try_take(&p).unwrap().is_none());
        drop(held);
        assert!(CopyLock::try_take(&p).unwrap().is_some());
    }

    #[test]
    fn one_checkpoint_per_copy_and_it_round_trips() {
        let a = path_for("redis://h:1/0", "redis://h:2/0", None);
        assert_eq!(a, path_for("redis://h:1/0", "redis://h:2/0", Some("*")));
        assert_ne!(a, path_for("redis://h:1/0", "redis://h:2/0", Some("user:*")));
        assert_ne!(a, path_for("redis://h:2/0", "redis://h:1/0", None));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        assert_eq!(load(&p).unwrap(), None);
        let cp = Checkpoint {
            from: "redis://:***@h:1/0".into(),
            to: "redis://h:2/0".into(),
            pattern: None,
            cursor: 42,
            counters: Counters { copied: 7, ..Default::default() },
            on_conflict: super::super::OnConflict::Fail,
            mode: super::super::Mode::Dump,
            updated: "2026-11-22T06:00:00Z".into(),
            source_run_id: Some("a1b2c3d4e5".into()),
        };
        assert_eq!(cp.resume_cursor("a1b2c3d4e5"), (42, None), "same server: the cursor holds");
        let (cursor, why) = cp.resume_cursor("ffff0000");
        assert_eq!(cursor, 0, "a restarted source: the scan starts over");
        assert!(why.unwrap().contains("run_id a1b2c3d4 → ffff0000"));
        save(&p, &cp).unwrap();
        assert_eq!(load(&p).unwrap(), Some(cp));
        remove(&p).unwrap();
        remove(&p).unwrap();
        std::fs::write(&p, "{").unwrap();
        assert!(load(&p).unwrap_err().contains("damaged checkpoint"));
    }
}
