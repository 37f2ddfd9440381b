//! Where durable state lives: local files (the default) or a shared store
//! (S3, implemented in `aws::s3`). Every write that replaces shared state is
//! conditional on the version read, so a write that loses a race is told so
//! (`StoreError::Conflict`) and never overwrites.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// An object's version: S3's ETag, or a hash of a local file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// What a write requires of the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// Only if there is none (S3 `If-None-Match: *`).
    Absent,
    /// Only if it is still this version (S3 `If-Match`).
    Matches(Version),
    /// Whatever is there: objects one writer owns (presence, requests).
    Any,
}

impl Cond {
    /// The condition for replacing what was read (None: nothing was there).
    pub fn replacing(read: Option<&Version>) -> Cond {
        read.map_or(Cond::Absent, |v| Cond::Matches(v.clone()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Vec<u8>,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The condition failed: someone wrote since it was read.
    Conflict,
    /// The store did not answer, or answered with an error (SlowDown, 5xx,
    /// access denied): the shared state is unknown now.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("someone else wrote it first (conditional write refused)"),
            StoreError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// One runbook's object: `item` is a name such as `rollout.json` or
/// `presence/ana@laptop-123`.
pub trait Backend: Send + Sync {
    /// `s3://bucket/prefix` or the state folder, for messages.
    fn describe(&self) -> String;
    /// True when other machines read and write it too.
    fn shared(&self) -> bool;
    fn get(&self, runbook: &str, item: &str) -> Result<Option<Object>, StoreError>;
    fn put(&self, runbook: &str, item: &str, body: &[u8], cond: Cond) -> Result<Version, StoreError>;
    /// Deletes it (missing is fine); `Cond::Matches` deletes only that version.
    fn delete(&self, runbook: &str, item: &str, cond: Cond) -> Result<(), StoreError>;
    /// The items under `prefix` (`presence/`), with their age where known.
    fn list(&self, runbook: &str, prefix: &str) -> Result<Vec<Listed>, StoreError>;
    /// Appends an entry to a log no writer ever rewrites (the audit).
    fn append(&self, runbook: &str, log: &str, entry: &[u8]) -> Result<(), StoreError>;
    /// Every entry of the log, in order; `(where, bytes)` for messages.
    fn entries(&self, runbook: &str, log: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub item: String,
    pub modified: Option<std::time::SystemTime>,
}

static INSTALLED: RwLock<Option<Arc<dyn Backend>>> = RwLock::new(None);

/// Makes `backend` the process's store (the CLI does, from `--state`,
/// `CUTOVER_STATE` or the runbook's `[team] state`); local files otherwise.
pub fn install(backend: Arc<dyn Backend>) {
    if let Ok(mut b) = INSTALLED.write() {
        *b = Some(backend);
    }
}

/// The process's store.
pub fn current() -> Arc<dyn Backend> {
    INSTALLED.read().ok().and_then(|b| b.clone()).unwrap_or_else(|| Arc::new(LocalFiles::default()))
}

/// Where `item` of `runbook` is in the process's store, for messages.
pub fn location(runbook: &str, item: &str) -> String {
    let b = current();
    if b.shared() {
        format!("{}/{runbook}/{item}", b.describe())
    } else {
        LocalFiles::default().path(runbook, item).display().to_string()
    }
}

/// Today's files in the XDG state folder: `<runbook>.<item>`, written
/// atomically with mode 0600; a version is a hash of the bytes.
#[derive(Debug, Clone, Default)]
pub struct LocalFiles {
    /// None: the XDG state folder, read when used (tests set it per process).
    pub dir: Option<PathBuf>,
}

impl LocalFiles {
    fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(crate::paths::state_dir)
    }

    /// `<runbook>.<item>`; just `<item>` for an empty runbook (a file named whole).
    pub fn path(&self, runbook: &str, item: &str) -> PathBuf {
        if runbook.is_empty() { self.dir().join(item) } else { self.dir().join(format!("{runbook}.{item}")) }
    }

    fn version(bytes: &[u8]) -> Version {
        Version(format!("{:016x}-{}", crate::hash::fnv1a(bytes), bytes.len()))
    }

    /// Held while a conditional write compares and writes (a few ms).
    fn exclusive(&self) -> Result<std::fs::File, StoreError> {
        let path = self.dir().join(".store.lock");
        loop {
            match crate::paths::try_lock(&path) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(2)),
                Err(e) => return Err(StoreError::Unavailable(e)),
            }
        }
    }

    fn read(&self, path: &std::path::Path) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }

    fn check(&self, path: &std::path::Path, cond: &Cond) -> Result<(), StoreError> {
        let now = self.read(path)?;
        let ok = match cond {
            Cond::Any => true,
            Cond::Absent => now.is_none(),
            Cond::Matches(v) => now.is_some_and(|b| &Self::version(&b) == v),
        };
        if ok { Ok(()) } else { Err(StoreError::Conflict) }
    }
}

impl Backend for LocalFiles {
    fn describe(&self) -> String {
        self.dir().display().to_string()
    }

    fn shared(&self) -> bool {
        false
    }

    fn get(&self, runbook: &str, item: &str) -> Result<Option<Object>, StoreError> {
        let path = self.path(runbook, item);
        Ok(self.read(&path)?.map(|body| Object { version: Self::version(&body), body }))
    }

    fn put(&self, runbook: &str, item: &str, body: &[u8], cond: Cond) -> Result<Version, StoreError> {
        let path = self.path(runbook, item);
        let _held = (cond != Cond::Any).then(|| self.exclusive()).transpose()?;
        self.check(&path, &cond)?;
        crate::paths::write_atomic(&path, body)
            .map_err(|e| StoreError::Unavailable(format!("{}: cannot write: {e}", path.display())))?;
        Ok(Self::version(body))
    }

    fn delete(&self, runbook: &str, item: &str, cond: Cond) -> Result<(), StoreError> {
        let path = self.path(runbook, item);
        let _held = (cond != Cond::Any).then(|| self.exclusive()).transpose()?;
        if !matches!(cond, Cond::Absent) {
            self.check(&path, &cond)?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!("{}: {e}", path.display()))),
        }
    }

    fn list(&self, runbook: &str, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        // `presence/` lives in the folder `<runbook>.presence`.
        let (folder, start) = prefix.split_once('/').unwrap_or((prefix, ""));
        let dir = self.dir().join(format!("{runbook}.{folder}"));
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Unavailable(format!("{}: {e}", dir.display()))),
        };
        let mut out: Vec<Listed> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                (name.starts_with(start) && !name.ends_with(".tmp")).then(|| Listed {
                    item: format!("{folder}/{name}"),
                    modified: e.metadata().ok().and_then(|m| m.modified().ok()),
                })
            })
            .collect();
        out.sort_by(|a, b| a.item.cmp(&b.item));
        Ok(out)
    }

    fn append(&self, runbook: &str, log: &str, entry: &[u8]) -> Result<(), StoreError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(runbook, log);
        let fail =
            |e: std::io::Error| StoreError::Unavailable(format!("{}: cannot write the audit log: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut body = entry.to_vec();
        body.push(b'\n');
        // A line torn by a crash must not swallow this one: start on a fresh line.
        let torn = std::fs::read(&path).ok().is_some_and(|b| b.last().is_some_and(|c| *c != b'\n'));
        if torn {
            body.insert(0, b'\n');
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(fail)?;
        f.write_all(&body).map_err(fail)?;
        f.sync_all().map_err(fail)
    }

    fn entries(&self, runbook: &str, log: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let path = self.path(runbook, log);
        let Some(bytes) = self.read(&path)? else { return Ok(Vec::new()) };
        Ok(bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| (format!("{}:{}", path.display(), i + 1), l.to_vec()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditional_write_on_a_stale_version_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles { dir: Some(dir.path().to_path_buf()) };
        let v1 = files.put("demo", "x.json", b"1", Cond::Absent).unwrap();
        assert_eq!(files.put("demo", "x.json", b"2", Cond::Absent), Err(StoreError::Conflict));
        let v2 = files.put("demo", "x.json", b"2", Cond::Matches(v1.clone())).unwrap();
        assert_eq!(files.put("demo", "x.json", b"3", Cond::Matches(v1)), Err(StoreError::Conflict));
        let got = files.get("demo", "x.json").unwrap().unwrap();
        assert_eq!((got.body.as_slice(), got.version), (&b"2"[..], v2));
        assert!(dir.path().join("demo.x.json").exists(), "today's file name");
    }

    #[test]
    fn listing_finds_an_items_folder_and_a_log_keeps_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles { dir: Some(dir.path().to_path_buf()) };
        files.put("demo", "presence/b", b"{}", Cond::Any).unwrap();
        files.put("demo", "presence/a", b"{}", Cond::Any).unwrap();
        let items: Vec<String> = files.list("demo", "presence/").unwrap().into_iter().map(|l| l.item).collect();
        assert_eq!(items, ["presence/a", "presence/b"]);
        files.append("demo", "audit.jsonl", b"one").unwrap();
        files.append("demo", "audit.jsonl", b"two").unwrap();
        let lines: Vec<Vec<u8>> = files.entries("demo", "audit.jsonl").unwrap().into_iter().map(|e| e.1).collect();
        assert_eq!(lines, [b"one".to_vec(), b"two".to_vec()]);
    }
}
