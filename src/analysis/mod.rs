//! Pure analysis over domain types: no I/O.

pub mod reachability;
pub mod weights;
