//! A store for unit tests: local files whose writes land with their reply
//! lost, and whose reads fail, as a slow S3 does.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::backend::{Backend, Cond, Listed, LocalFiles, Object, StoreError, Version};

pub(crate) struct Unsure {
    pub files: LocalFiles,
    /// The next this many puts land, then answer as lost: 412 (the SDK's
    /// retry refused) with `refuse`, else no answer.
    pub lose: AtomicU32,
    pub refuse: bool,
    /// The next this many gets fail unanswered.
    pub fail_gets: AtomicU32,
    /// While set, every put fails as an unreachable store's does.
    pub fail_puts: AtomicBool,
    /// The next this many deletes land, then answer as lost.
    pub lose_deletes: AtomicU32,
    /// Before each of the next this many deletes, another process leaves
    /// the item anew (its body `replaced N`).
    pub replace_before_delete: AtomicU32,
    /// Another process's write, made right after a put whose answer is lost.
    #[allow(clippy::type_complexity)]
    pub after_lost_put: std::sync::Mutex<Option<Box<dyn FnOnce(&LocalFiles) + Send>>>,
}

impl Unsure {
    pub fn new(files: LocalFiles, lose: u32, refuse: bool, fail_gets: u32) -> Unsure {
        Unsure {
            files,
            lose: lose.into(),
            refuse,
            fail_gets: fail_gets.into(),
            fail_puts: AtomicBool::new(false),
            lose_deletes: 0.into(),
            replace_before_delete: 0.into(),
            after_lost_put: std::sync::Mutex::new(None),
        }
    }
}

fn take(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

impl Backend for Unsure {
    fn describe(&self) -> String {
        self.files.describe()
    }
    fn shared(&self) -> bool {
        true
    }
    fn get(&self, runbook: &str, item: &str) -> Result<Option<Object>, StoreError> {
        match take(&self.fail_gets) {
            true => Err(StoreError::Unavailable("S3 GetObject: timed out".into())),
            false => self.files.get(runbook, item),
        }
    }
    fn put(&self, runbook: &str, item: &str, body: &[u8], cond: Cond) -> Result<Version, StoreError> {
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("S3 PutObject: SlowDown".into()));
        }
        let v = self.files.put(runbook, item, body, cond)?;
        let lost = self.lose.load(Ordering::SeqCst) > 0;
        if lost && let Some(meanwhile) = self.after_lost_put.lock().unwrap().take() {
            meanwhile(&self.files);
        }
        match take(&self.lose) {
            true if self.refuse => Err(StoreError::Conflict),
            true => Err(StoreError::Unavailable("timed out: no reply".into())),
            false => Ok(v),
        }
    }
    fn delete(&self, runbook: &str, item: &str, cond: Cond) -> Result<(), StoreError> {
        let left = self.replace_before_delete.load(Ordering::SeqCst);
        if take(&self.replace_before_delete) {
            self.files.put(runbook, item, format!("replaced {left}").as_bytes(), Cond::Any)?;
        }
        self.files.delete(runbook, item, cond)?;
        match take(&self.lose_deletes) {
            true => Err(StoreError::Unavailable("S3 DeleteObject: timed out: no reply".into())),
            false => Ok(()),
        }
    }
    fn list(&self, runbook: &str, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        self.files.list(runbook, prefix)
    }
    fn append(&self, runbook: &str, log: &str, entry: &[u8]) -> Result<(), StoreError> {
        self.files.append(runbook, log, entry)
    }
    fn entries(&self, runbook: &str, log: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.files.entries(runbook, log)
    }
}
