//! Named points at which a test can make cutover die as `kill -9` would, so
//! a crash lands in every window between two writes, not only where a timer
//! happens to fall. Only debug builds (the ones tests run) read
//! `CUTOVER_CRASH_AT`; in a release build `here` does nothing.
//!
//! `CUTOVER_CRASH_AT=NAME` dies the first time the process passes `NAME`;
//! `NAME@N` the N-th time (to reach a later step). `CUTOVER_STOP_AT` stops
//! there instead (a process frozen between two writes, then continued).

/// Dies here (SIGKILL to itself) when `CUTOVER_CRASH_AT` names this point,
/// or stops (SIGSTOP to itself, as a laptop lid closing) when
/// `CUTOVER_STOP_AT` does; a test continues it with SIGCONT.
pub fn here(point: &str) {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static CRASH_PASSED: AtomicU32 = AtomicU32::new(0);
        static STOP_PASSED: AtomicU32 = AtomicU32::new(0);
        if named(point, "CUTOVER_CRASH_AT", &CRASH_PASSED) {
            tracing::warn!(point, "CUTOVER_CRASH_AT: dying here");
            // SIGKILL, not abort(): no handler, no unwinding, no flush, as kill -9.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        if named(point, "CUTOVER_STOP_AT", &STOP_PASSED) {
            tracing::warn!(point, "CUTOVER_STOP_AT: stopping here");
            unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
        }

        /// Whether `var` names `point` and this is the pass it counts to.
        fn named(point: &str, var: &str, passed: &AtomicU32) -> bool {
            let Ok(spec) = std::env::var(var) else { return false };
            let (name, nth) = match spec.split_once('@') {
                Some((name, n)) => (name, n.parse::<u32>().unwrap_or(1)),
                None => (spec.as_str(), 1),
            };
            name == point && passed.fetch_add(1, Ordering::SeqCst) + 1 == nth
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Every point of a rollout, for tests that must reach each one. A Redis
/// copy has one more, `copy:before-checkpoint-removed`, an action one,
/// `action:confirmed` (a confirmed plan about to be carried out), and a
/// verify one, `verify:chunk` (between two chunks of a key compared in
/// chunks). A step has `step:before-plan` too, for tests that stop it there
/// (before the records it is planned from are read): nothing is written in
/// between.
pub const POINTS: &[&str] = &[
    "step:after-intent",
    "step:after-in-flight-write",
    "step:after-send",
    "step:after-applied-audit",
    "step:after-state-write",
    "step:during-insync",
    "step:after-insync-audit",
    "soak",
    "rollback:after-intent",
    "rollback:after-in-flight-write",
    "rollback:after-send",
    "rollback:after-applied-audit",
    "rollback:after-state-write",
    "rollback:during-insync",
    "rollback:after-insync-audit",
];
