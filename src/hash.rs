//! One stable hash for names and fingerprints written to disk.

/// FNV-1a, 64 bits: stable across Rust versions and builds, unlike std's
/// `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
