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
    /// newer one left meanwhile is read and taken in its place). Err: the
    /// store cannot say whether one waits.
    pub fn take_one(self, name: &str) -> Result<Option<RequestNote>, String> {
        let b = current();
        // Taking an abort or a pause twice is harmless (a second one finds
        // the rollback under way, or the rollout paused); a promote twice
        // would skip a second soak.
        let unsure_is_taken = !matches!(self, Request::Promote);
        take_one_on(&*b, name, self.item(), unsure_is_taken).map_err(|e| format!("{}: {e}", b.describe()))
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

/// `Request::take_one` on `store`. A delete whose answer was lost may have
/// landed: read again, a request gone is taken (else an abort asked for
/// would be lost, and the rollout step on past it). A request replaced
/// before its delete is the newer one to take now, not at the next look:
/// a forward step must not be sent past an abort waiting. Where the store
/// cannot even be read again, whether the delete landed is unknown: with
/// `unsure_is_taken` the request (read, so asked for) is taken all the
/// same, as one left behind may be taken again but one dropped is lost.
fn take_one_on(
    store: &dyn super::backend::Backend,
    name: &str,
    item: &str,
    unsure_is_taken: bool,
) -> Result<Option<RequestNote>, StoreError> {
    let Some(mut o) = store.get(name, item)? else { return Ok(None) };
    for _ in 0..3 {
        let taken = RequestNote::from_body(&o.body);
        match store.delete(name, item, Cond::Matches(o.version.clone())) {
            Ok(()) => return Ok(Some(taken)),
            Err(StoreError::Conflict) => {}
            Err(StoreError::Unavailable(why)) => match store.get(name, item) {
                Ok(None) => return Ok(Some(taken)),
                Ok(Some(now)) if now.version == o.version => return Err(StoreError::Unavailable(why)),
                Ok(Some(_)) => {}
                Err(e) if unsure_is_taken => {
                    tracing::warn!(%why, error = %e, item, "taken though whether its delete landed is unknown");
                    return Ok(Some(taken));
                }
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "{why}; whether its delete landed cannot be read ({e})"
                    )));
                }
            },
        }
        match store.get(name, item)? {
            Some(newer) => o = newer,
            None => return Ok(None),
        }
    }
    Err(StoreError::Unavailable(format!("the {item} keeps being replaced while it is taken")))
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
    use std::sync::atomic::{AtomicU32, Ordering};

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

    fn left(files: &LocalFiles, text: &str) {
        left_as(files, Request::Abort.item(), text);
    }

    fn left_as(files: &LocalFiles, item: &str, text: &str) {
        use super::super::backend::Backend;
        files.put("demo", item, text.as_bytes(), Cond::Any).unwrap();
    }

    /// Answers the first gets it is given (its count), then fails the next
    /// (a store slowing down).
    struct GetsFailAfter<'a>(&'a Unsure, AtomicU32);

    impl super::super::backend::Backend for GetsFailAfter<'_> {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn shared(&self) -> bool {
            true
        }
        fn get(&self, r: &str, i: &str) -> Result<Option<super::super::backend::Object>, StoreError> {
            match self.1.fetch_sub(1, Ordering::SeqCst) {
                1.. => self.0.get(r, i),
                _ => Err(StoreError::Unavailable("S3 GetObject: SlowDown".into())),
            }
        }
        fn put(&self, r: &str, i: &str, b: &[u8], c: Cond) -> Result<Version, StoreError> {
            self.0.put(r, i, b, c)
        }
        fn delete(&self, r: &str, i: &str, c: Cond) -> Result<(), StoreError> {
            self.0.delete(r, i, c)
        }
        fn list(&self, r: &str, p: &str) -> Result<Vec<super::super::backend::Listed>, StoreError> {
            self.0.list(r, p)
        }
        fn append(&self, r: &str, l: &str, e: &[u8]) -> Result<(), StoreError> {
            self.0.append(r, l, e)
        }
        fn entries(&self, r: &str, l: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.0.entries(r, l)
        }
    }

    /// An abort whose delete landed but whose answer was lost is taken,
    /// never dropped: the next look would find nothing, and the rollout
    /// would step on while `cutover abort` waited for its rollback.
    #[test]
    fn an_abort_whose_delete_answer_was_lost_is_taken_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles { dir: Some(dir.path().to_path_buf()) };
        left(&files, "on-call: 5xx");
        let store = Unsure::new(files, 0, false, 0);
        store.lose_deletes.store(1, Ordering::SeqCst);
        let item = Request::Abort.item();
        assert_eq!(take_one_on(&store, "demo", item, true).unwrap().map(|n| n.text), Some("on-call: 5xx".into()));
        assert_eq!(take_one_on(&store, "demo", item, true).unwrap(), None, "taken once");
        // Its delete's answer lost and the store unreadable after: whether
        // it is gone is unknown, and an abort read is an abort asked for:
        // taken (it was an error, and the next look, finding the delete
        // landed, dropped the abort).
        left(&store.files, "on-call: again");
        store.lose_deletes.store(1, Ordering::SeqCst);
        let got = take_one_on(&GetsFailAfter(&store, AtomicU32::new(1)), "demo", item, true);
        assert_eq!(got.unwrap().map(|n| n.text), Some("on-call: again".into()));
        assert_eq!(take_one_on(&store, "demo", item, true).unwrap(), None, "its delete landed: taken once");
        // A promote taken twice would skip a second soak: unknown, an error.
        let item = Request::Promote.item();
        left_as(&store.files, item, "on-call: go on");
        store.lose_deletes.store(1, Ordering::SeqCst);
        let got = take_one_on(&GetsFailAfter(&store, AtomicU32::new(1)), "demo", item, false);
        assert!(matches!(&got, Err(StoreError::Unavailable(why)) if why.contains("cannot be read")), "{got:?}");
    }

    /// A request left anew between its read and its delete is taken in its
    /// place: "none waits" would let a forward step be sent past an abort.
    #[test]
    fn an_abort_replaced_while_it_is_taken_is_taken_in_its_newer_form() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles { dir: Some(dir.path().to_path_buf()) };
        left(&files, "ana: abort");
        let store = Unsure::new(files, 0, false, 0);
        store.replace_before_delete.store(1, Ordering::SeqCst);
        let item = Request::Abort.item();
        assert_eq!(take_one_on(&store, "demo", item, true).unwrap().map(|n| n.text), Some("replaced 1".into()));
        assert_eq!(take_one_on(&store, "demo", item, true).unwrap(), None, "taken once");
        // Replaced at every try: unknown, never "none waits".
        left(&store.files, "bob: abort");
        store.replace_before_delete.store(5, Ordering::SeqCst);
        assert!(matches!(take_one_on(&store, "demo", item, true), Err(StoreError::Unavailable(_))));
    }
}
