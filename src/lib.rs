pub mod analysis;
pub mod aws;
pub mod cli;
pub mod live;
pub mod paths;
pub mod runbook;
pub mod sandbox;
pub mod status;
