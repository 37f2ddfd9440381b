//! Pure analysis over domain types: no I/O.

pub mod hit_rate;
pub mod key_counts;
pub mod parity;
pub mod reachability;
pub mod weights;
