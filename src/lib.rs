pub mod analysis;
pub mod authority;
pub mod aws;
pub mod cli;
pub mod crashpoint;
pub mod drive;
pub mod engine;
pub mod hash;
pub mod live;
pub mod notify;
pub mod paths;
pub mod redis;
pub mod report;
pub mod runbook;
pub mod sandbox;
pub mod status;
pub mod store;
pub mod time;
pub mod tui;

/// Records what a reliability scenario showed (shared with the integration tests).
#[cfg(test)]
#[path = "../tests/common/reliability.rs"]
pub(crate) mod reliability;
