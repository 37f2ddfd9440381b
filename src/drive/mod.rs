//! Changes to AWS: planned from live data, shown before → after, refused under
//! --read-only or without confirmation, audited before and after.

pub mod actions;
pub mod gates;
pub mod rollout;
pub mod shift;
