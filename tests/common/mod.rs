//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use cutover::runbook::{self, Runbook};
use cutover::sandbox::{Sandbox, SandboxOptions};

pub fn runbook(name: &str) -> Runbook {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks").join(name);
    runbook::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A sandbox with its own moto, in a region of the test's choosing.
pub async fn sandbox(rb: &Runbook, region: &str) -> Sandbox {
    let opts = SandboxOptions { region: region.to_string(), moto_endpoint: None, traffic: Default::default() };
    Sandbox::up(rb, opts).await.unwrap_or_else(|e| panic!("sandbox up: {e:#}"))
}

/// Polls `f` until it returns Some or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// True when the process is gone or a zombie.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Direct children of a process (all its threads).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}
