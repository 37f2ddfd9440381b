//! Checklist ticks and notes that survive a restart: which manual items were ticked,
//! by whom, when, and notes. One JSON file per runbook in the XDG state dir,
//! written atomically (temp file, fsync, rename) with mode 0600.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistState {
    /// `phase/item` → who ticked it and when.
    #[serde(default)]
    pub ticks: BTreeMap<String, Tick>,
    /// `phase/item` → a note.
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

pub fn item_key(phase: &str, item: &str) -> String {
    format!("{phase}/{item}")
}

/// `$XDG_STATE_HOME/cutover/<runbook name>.progress.json`.
pub fn path_for(runbook_name: &str) -> PathBuf {
    crate::paths::state_dir().join(format!("{runbook_name}.progress.json"))
}

impl ChecklistState {
    /// A missing file is an empty progress; a damaged one is an error naming it.
    pub fn load(path: &Path) -> Result<ChecklistState, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}: cannot read checklist progress ({e}); fix or move the file away to start over",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ChecklistState::default()),
            Err(e) => Err(format!("{}: cannot read checklist progress: {e}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let body = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        crate::paths::write_atomic(path, &body)
            .map_err(|e| format!("{}: cannot save checklist progress: {e}", path.display()))
    }

    /// Ticks an unticked item or unticks a ticked one; returns the new state.
    pub fn toggle(&mut self, key: &str, by: &str, at: &str) -> bool {
        if self.ticks.remove(key).is_some() {
            false
        } else {
            self.ticks.insert(key.to_string(), Tick { by: by.to_string(), at: at.to_string() });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn save_and_load_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/demo.progress.json");
        let mut p = ChecklistState::default();
        assert!(p.toggle("prepare/backup", "ana", "2026-11-22T03:00:00Z"));
        p.notes.insert("prepare/backup".into(), "snapshot rdb-1122".into());
        p.save(&path).unwrap();
        assert_eq!(ChecklistState::load(&path).unwrap(), p);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("sub/demo.progress.json.tmp").exists());
    }

    #[test]
    fn toggle_twice_unticks() {
        let mut p = ChecklistState::default();
        assert!(p.toggle("a/b", "x", "t"));
        assert!(!p.toggle("a/b", "x", "t"));
        assert!(p.ticks.is_empty());
    }

    #[test]
    fn missing_is_empty_and_damaged_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ChecklistState::load(&dir.path().join("none.json")).unwrap(), ChecklistState::default());
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let e = ChecklistState::load(&bad).unwrap_err();
        assert!(e.contains("bad.json: cannot read checklist progress"), "{e}");
        assert!(e.contains("move the file away"), "{e}");
    }
}
