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
    /// A cluster source: one place per shard (then `cursor` is unused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardPlace>,
}

/// Where the scan of one shard of a cluster source stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlace {
    /// The shard's slots (`0-5460`): its name across failovers.
    pub slots: String,
    /// Its primary's `run_id` when `cursor` was taken.
    pub run_id: String,
    pub cursor: u64,
    /// Scanned to the end.
    pub done: bool,
}

/// Where each shard of a cluster source starts again: `(slots, run_id)` as
/// found now, in order. A shard whose primary changed (`run_id`) starts
/// over alone; if the shards themselves changed (a resharding), every shard
/// starts over, since a moved slot may sit behind another shard's cursor.
pub fn resume_shards(saved: &[ShardPlace], now: &[(String, String)]) -> (Vec<(u64, bool)>, Vec<String>) {
    let same_layout = saved.len() == now.len() && now.iter().all(|(slots, _)| saved.iter().any(|p| &p.slots == slots));
    if !same_layout {
        let why = "the cluster's shards changed since the checkpoint (slots moved): every shard's scan starts over, overwriting what was copied".to_string();
        return (vec![(0, false); now.len()], vec![why]);
    }
    let mut why = Vec::new();
    let places = now
        .iter()
        .map(|(slots, run_id)| {
            let p = saved.iter().find(|p| &p.slots == slots).expect("same layout");
            if &p.run_id != run_id {
                why.push(format!(
                    "shard {slots}: its primary changed since the checkpoint (run_id {} → {}), so its scan starts over (overwriting); the other shards resume",
                    short(&p.run_id),
                    short(run_id)
                ));
                (0, false)
            } else {
                (p.cursor, p.done)
            }
        })
        .collect();
    (places, why)
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
            shards: Vec::new(),
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

    #[test]
    fn a_cluster_resumes_per_shard_and_a_failed_over_shard_starts_over_alone() {
        let place = |slots: &str, run_id: &str, cursor, done| ShardPlace {
            slots: slots.into(),
            run_id: run_id.into(),
            cursor,
            done,
        };
        let saved = [
            place("0-5460", "aaaa", 0, true),
            place("5461-10922", "bbbb", 77, false),
            place("10923-16383", "cccc", 9, false),
        ];
        let now = |ids: [&str; 3]| -> Vec<(String, String)> {
            ["0-5460", "5461-10922", "10923-16383"]
                .iter()
                .zip(ids)
                .map(|(s, i)| (s.to_string(), i.to_string()))
                .collect()
        };
        let (places, why) = resume_shards(&saved, &now(["aaaa", "bbbb", "cccc"]));
        assert_eq!(places, [(0, true), (77, false), (9, false)]);
        assert!(why.is_empty());
        let (places, why) = resume_shards(&saved, &now(["aaaa", "ffff", "cccc"]));
        assert_eq!(places, [(0, true), (0, false), (9, false)], "only the failed-over shard starts over");
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("shard 5461-10922") && why[0].contains("bbbb → ffff"), "{}", why[0]);
        let resharded: Vec<(String, String)> = vec![
            ("0-5000".into(), "aaaa".into()),
            ("5001-10922".into(), "bbbb".into()),
            ("10923-16383".into(), "cccc".into()),
        ];
        let (places, why) = resume_shards(&saved, &resharded);
        assert_eq!(places, [(0, false); 3]);
        assert!(why[0].contains("shards changed"), "{}", why[0]);
    }
}
