//! Pure analysis over domain types: no I/O.

pub mod parity;
pub mod reachability;
pub mod weights;
