//! Redis data migration: `cutover redis copy` and `cutover redis verify`.
//! Pure decisions live here (version → mode, TTL → RESTORE arguments,
//! conflict policy, pattern check); the I/O is in `copy` and `verify`.

pub mod checkpoint;
pub mod cluster;
pub mod copy;
pub mod progress;
pub mod query;
pub mod size;
pub mod stream;
pub mod url;
pub mod verify;

use serde::{Deserialize, Serialize};

/// How keys travel: DUMP/RESTORE, or rebuilt type by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// DUMP/RESTORE when the target reads the source's format, else types.
    Auto,
    /// DUMP → RESTORE (exact: encodings, stream groups).
    Dump,
    /// Read each key by type (HSCAN, LRANGE…) and write it back (HSET, RPUSH…).
    Types,
}

/// What to do with a key that already exists on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Check every key first and write nothing if one exists.
    Fail,
    /// Overwrite it.
    Replace,
    /// Keep the target's key; count it.
    Skip,
}

impl OnConflict {
    pub fn name(self) -> &'static str {
        match self {
            OnConflict::Fail => "fail",
            OnConflict::Replace => "replace",
            OnConflict::Skip => "skip",
        }
    }
}

/// Whether a write may overwrite: only under `replace`. A resumed `fail`
/// copy does not either: a key it meets on the target is its own write
/// (from after its last checkpoint) only if it holds the source's value,
/// which the copy looks at (`held_as_on_source`) before going on.
pub fn overwrite(policy: OnConflict) -> bool {
    policy == OnConflict::Replace
}

/// The highest RDB (DUMP) version a Redis version writes and reads.
pub fn rdb_version(redis_version: &str) -> Option<u16> {
    let mut parts = redis_version.trim().split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    Some(match (major, minor) {
        (0..=2, _) => 6,
        (3, 0..=1) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5 | 6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        _ => 12,
    })
}

/// Whether a Redis version is `major.minor` or later ("7" reads as 7.0; a
/// version that does not parse is none).
fn at_least(redis_version: &str, major: u32, minor: u32) -> bool {
    let mut parts = redis_version.trim().split('.').map(|p| p.parse::<u32>().ok());
    match parts.next().flatten() {
        Some(ma) => (ma, parts.next().flatten().unwrap_or(0)) >= (major, minor),
        None => false,
    }
}

/// Whether a Redis version takes `SET … PXAT` (6.2 and later).
pub fn takes_pxat(redis_version: &str) -> bool {
    at_least(redis_version, 6, 2)
}

/// How a copy reads a key's expiry on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryRead {
    /// PEXPIRETIME (Redis 7.0 and later): the absolute time the source
    /// keeps, to the millisecond, whatever the round trip.
    Absolute,
    /// PTTL, placed on this machine's clock halfway through the round trip
    /// (older sources): off by up to half of it, either way. Written back
    /// as a TTL (`ExpiryRead::write`), so that clock need not agree with
    /// the target's.
    Relative,
}

impl ExpiryRead {
    /// For a source whose every scanned server runs one of `versions`, into
    /// a target running `target_version`. A target before 6.2 takes a
    /// string's expiry only as a TTL (`SET … PX`), which an absolute time by
    /// the source's clock would turn into the difference between that clock
    /// and this machine's: the PTTL is read instead.
    pub fn choose<'a>(versions: impl IntoIterator<Item = &'a str>, target_version: &str) -> Self {
        let absolute = takes_pxat(target_version) && versions.into_iter().all(|v| at_least(v, 7, 0));
        if absolute { ExpiryRead::Absolute } else { ExpiryRead::Relative }
    }

    pub fn command(self) -> &'static str {
        match self {
            ExpiryRead::Absolute => "PEXPIRETIME",
            ExpiryRead::Relative => "PTTL",
        }
    }

    /// How an expiry read this way is written at `now_ms` (this machine's
    /// clock, on which `expiry` placed a PTTL). An absolute time is the
    /// source's, written as it is for the target's clock to judge (the two
    /// servers' clocks are kept in step). A PTTL goes back as a TTL less
    /// the time since it was read: written as an absolute time, it would
    /// be judged by the target's clock, and this machine's, off from it,
    /// would move every expiry by the difference (a key expired on arrival
    /// where this clock is behind by more than its TTL).
    pub fn write(self, e: Expiry, now_ms: u64) -> ExpiryWrite {
        match (self, e) {
            (_, Expiry::Gone) => ExpiryWrite::Passed,
            (_, Expiry::Never) => ExpiryWrite::Never,
            (ExpiryRead::Absolute, Expiry::At(ms)) => ExpiryWrite::At(ms),
            (ExpiryRead::Relative, Expiry::At(ms)) if ms > now_ms => ExpiryWrite::In(ms - now_ms),
            (ExpiryRead::Relative, Expiry::At(_)) => ExpiryWrite::Passed,
        }
    }

    /// The expiry from `command`'s reply; `read_at` (Unix ms) places a PTTL.
    pub fn expiry(self, reply: i64, read_at: u64) -> Expiry {
        match (self, reply) {
            (ExpiryRead::Relative, pttl) => expiry(pttl, read_at),
            (ExpiryRead::Absolute, -1) => Expiry::Never,
            (ExpiryRead::Absolute, at) if at < 0 => Expiry::Gone,
            (ExpiryRead::Absolute, at) => Expiry::At(at as u64),
        }
    }
}

/// The RDB version in a DUMP payload's footer (2 bytes LE, then 8 of CRC64).
pub fn payload_rdb_version(payload: &[u8]) -> Option<u16> {
    let n = payload.len();
    (n >= 10).then(|| u16::from_le_bytes([payload[n - 10], payload[n - 9]]))
}

/// Whether a target that reads up to `target_rdb` can RESTORE this payload
/// (unknown versions: try it; RESTORE says so if not).
pub fn target_reads(payload: &[u8], target_rdb: Option<u16>) -> bool {
    match (payload_rdb_version(payload), target_rdb) {
        (Some(v), Some(t)) => v <= t,
        _ => true,
    }
}

/// The mode a copy runs in and why, from the versions of both servers.
pub fn choose_mode(requested: Mode, source_version: &str, target_version: &str) -> Result<(Mode, String), String> {
    let (s, t) = (rdb_version(source_version), rdb_version(target_version));
    let newer = matches!((s, t), (Some(s), Some(t)) if s > t);
    let why = match (s, t) {
        (Some(s), Some(t)) => {
            format!("source Redis {source_version} writes RDB {s}, target Redis {target_version} reads up to RDB {t}")
        }
        _ => format!("source Redis {source_version}, target Redis {target_version}"),
    };
    match requested {
        Mode::Types => Ok((Mode::Types, "type by type (--mode types)".into())),
        Mode::Dump if newer => Err(format!("{why}: --mode dump cannot work; use --mode auto or --mode types")),
        Mode::Dump => Ok((Mode::Dump, "DUMP/RESTORE (--mode dump)".into())),
        Mode::Auto if newer => Ok((Mode::Types, format!("{why}: copying type by type instead of DUMP/RESTORE"))),
        Mode::Auto => Ok((Mode::Dump, format!("DUMP/RESTORE ({why})"))),
    }
}

/// A key's expiry from its PTTL, read at `now_ms` (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// PTTL -2: the key is gone.
    Gone,
    /// PTTL -1: no expiry.
    Never,
    /// Absolute Unix time in ms (for RESTORE … ABSTTL and PEXPIREAT).
    At(u64),
}

pub fn expiry(pttl: i64, now_ms: u64) -> Expiry {
    match pttl {
        -1 => Expiry::Never,
        p if p < 0 => Expiry::Gone,
        // PTTL 0 still exists for a moment: keep it, expiring now.
        p => Expiry::At(now_ms + p as u64),
    }
}

/// How a key's expiry is written on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryWrite {
    Never,
    /// At this Unix time in ms, by the target's clock (RESTORE … ABSTTL,
    /// `SET … PXAT`, PEXPIREAT).
    At(u64),
    /// This many ms after the target takes the write (RESTORE's TTL,
    /// `SET … PX`, PEXPIRE): never 0, which RESTORE reads as no expiry.
    In(u64),
    /// Gone already: nothing to write.
    Passed,
}

/// RESTORE's TTL argument and whether ABSTTL goes with it; None: passed.
pub fn restore_ttl(w: ExpiryWrite) -> Option<(u64, bool)> {
    match w {
        ExpiryWrite::Never => Some((0, false)),
        ExpiryWrite::At(ms) => Some((ms, true)),
        ExpiryWrite::In(ms) => Some((ms, false)),
        ExpiryWrite::Passed => None,
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Rejects glob patterns Redis would read differently than the user meant.
pub fn check_pattern(p: &str) -> Result<(), String> {
    match crate::runbook::key_pattern_problem(p) {
        Some((what, fix)) => Err(format!("--match {what}; {fix}")),
        None => Ok(()),
    }
}

/// `INFO` field value.
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':'))).map(str::trim)
}

/// (keys, expiring keys) of database `db` from `INFO keyspace`.
pub fn keyspace(info: &str, db: u32) -> (u64, u64) {
    info_field(info, &format!("db{db}")).map_or((0, 0), db_counts)
}

/// (keys, expiring keys) of one `INFO keyspace` line's value (`keys=3,expires=1,avg_ttl=0`).
fn db_counts(line: &str) -> (u64, u64) {
    let get = |k: &str| {
        line.split(',').find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).and_then(|v| v.parse().ok())
    };
    (get("keys").unwrap_or(0), get("expires").unwrap_or(0))
}

/// The databases other than `db` that hold keys, from `INFO keyspace`.
pub fn other_dbs(info: &str, db: u32) -> Vec<crate::analysis::key_counts::DbKeys> {
    info.lines()
        .filter_map(|l| {
            let (name, counts) = l.split_once(':')?;
            let n: u32 = name.strip_prefix("db")?.parse().ok()?;
            let (keys, _) = db_counts(counts.trim());
            (n != db && keys > 0).then_some(crate::analysis::key_counts::DbKeys { db: n, keys })
        })
        .collect()
}

/// A key for messages: UTF-8 shown as is, other bytes escaped.
pub fn show_key(k: &[u8]) -> String {
    match std::str::from_utf8(k) {
        Ok(s) => s.to_string(),
        Err(_) => k.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_keyspace() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\nused_memory:1024\r\n# Keyspace\r\ndb0:keys=10,expires=4,avg_ttl=1\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "db0"), Some("keys=10,expires=4,avg_ttl=1"));
        assert_eq!(info_field(info, "nope"), None);
        assert_eq!(keyspace(info, 0), (10, 4));
        assert_eq!(keyspace(info, 1), (0, 0));
    }

    #[test]
    fn rdb_versions_follow_the_redis_releases() {
        assert_eq!(rdb_version("5.0.14"), Some(9));
        assert_eq!(rdb_version("6.2.6"), Some(9));
        assert_eq!(rdb_version("7.0.15"), Some(10));
        assert_eq!(rdb_version("7.2.4"), Some(11));
        assert_eq!(rdb_version("7.4.1"), Some(12));
        assert_eq!(rdb_version("8.0.0"), Some(12));
        assert_eq!(rdb_version("4.0.9"), Some(8));
        assert_eq!(rdb_version("?"), None);
    }

    #[test]
    fn pxat_from_6_2_on() {
        assert!(takes_pxat("6.2.0") && takes_pxat("7.0.15") && takes_pxat("10.0.1"));
        assert!(!takes_pxat("6.0.16") && !takes_pxat("5.0.14") && !takes_pxat("?"));
        assert!(takes_pxat("7") && !takes_pxat("6"));
    }

    #[test]
    fn expiries_are_read_as_absolute_times_only_when_every_server_answers_pexpiretime() {
        assert_eq!(ExpiryRead::choose(["7.0.15", "7.2.4"], "7.0.15"), ExpiryRead::Absolute);
        // One shard still on 6.2 (a rolling upgrade): PEXPIRETIME would be refused there.
        assert_eq!(ExpiryRead::choose(["7.0.15", "6.2.14"], "7.0.15"), ExpiryRead::Relative);
        assert_eq!(ExpiryRead::choose(["?"], "7.0.15"), ExpiryRead::Relative);
        // A target taking no `SET … PXAT`: its strings get a TTL, placed by this machine's clock.
        assert_eq!(ExpiryRead::choose(["7.0.15"], "6.0.16"), ExpiryRead::Relative);
        let abs = ExpiryRead::Absolute;
        assert_eq!(
            (abs.expiry(-1, 5), abs.expiry(-2, 5), abs.expiry(1_000, 5)),
            (Expiry::Never, Expiry::Gone, Expiry::At(1_000))
        );
        assert_eq!(ExpiryRead::Relative.expiry(1_000, 5), Expiry::At(1_005));
    }

    #[test]
    fn a_newer_source_falls_back_to_types_in_auto_and_refuses_forced_dump() {
        let (m, why) = choose_mode(Mode::Auto, "7.2.4", "7.0.15").unwrap();
        assert_eq!(m, Mode::Types);
        assert!(why.contains("RDB 11") && why.contains("RDB 10") && why.contains("type by type"), "{why}");
        assert_eq!(choose_mode(Mode::Auto, "7.0.15", "7.2.4").unwrap().0, Mode::Dump);
        assert_eq!(choose_mode(Mode::Auto, "7.0.15", "7.0.15").unwrap().0, Mode::Dump);
        assert!(choose_mode(Mode::Dump, "7.4.0", "6.2.0").unwrap_err().contains("--mode dump cannot work"));
        assert_eq!(choose_mode(Mode::Types, "7.0.15", "7.0.15").unwrap().0, Mode::Types);
        // Unknown versions: DUMP, each payload's footer is still checked.
        assert_eq!(choose_mode(Mode::Auto, "x", "7.0.0").unwrap().0, Mode::Dump);
    }

    #[test]
    fn payload_footer_holds_the_rdb_version() {
        let mut p = vec![0u8, 3, b'a', b'b', b'c'];
        p.extend_from_slice(&10u16.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        assert_eq!(payload_rdb_version(&p), Some(10));
        assert_eq!(payload_rdb_version(&[1, 2]), None);
        assert!(target_reads(&p, Some(10)) && target_reads(&p, Some(11)) && target_reads(&p, None));
        assert!(!target_reads(&p, Some(9)), "a 7.0 payload goes type by type to a 6.2 target");
    }

    #[test]
    fn pttl_maps_to_restore_arguments() {
        assert_eq!(expiry(-2, 1000), Expiry::Gone);
        assert_eq!(expiry(-1, 1000), Expiry::Never);
        assert_eq!(expiry(500, 1000), Expiry::At(1500));
        assert_eq!(restore_ttl(ExpiryWrite::At(1500)), Some((1500, true)));
        assert_eq!(restore_ttl(ExpiryWrite::In(1500)), Some((1500, false)));
        assert_eq!(restore_ttl(ExpiryWrite::Never), Some((0, false)));
        assert_eq!(restore_ttl(ExpiryWrite::Passed), None);
    }

    /// A PTTL goes back as a TTL: this machine's clock enters only as the
    /// time between the read and the write, so a clock 90 s off from the
    /// target's moves nothing. Written as an absolute time, it did: a 60 s
    /// key read by a clock 90 s behind was due 30 s before it arrived.
    #[test]
    fn a_pttl_is_written_as_what_is_left_of_it_whatever_this_clock_says() {
        let rel = ExpiryRead::Relative;
        for clock in [0u64, 1_000_000_000, 1_700_000_000_000] {
            let read = rel.expiry(60_000, clock);
            assert_eq!(rel.write(read, clock + 250), ExpiryWrite::In(59_750), "{clock}");
            assert_eq!(rel.write(read, clock + 60_000), ExpiryWrite::Passed, "expired in flight");
            assert_eq!(rel.write(rel.expiry(0, clock), clock), ExpiryWrite::Passed, "PTTL 0: never a TTL of 0");
        }
        assert_eq!(rel.write(rel.expiry(-1, 5), 9), ExpiryWrite::Never);
        assert_eq!(rel.write(rel.expiry(-2, 5), 9), ExpiryWrite::Passed);
        // An absolute time is the source's clock's: written as it is, whatever this one says.
        let abs = ExpiryRead::Absolute;
        assert_eq!(abs.write(abs.expiry(1_000, 0), 5_000), ExpiryWrite::At(1_000));
        assert_eq!(abs.write(abs.expiry(-1, 0), 5_000), ExpiryWrite::Never);
    }

    #[test]
    fn conflict_policies_decide_overwrites() {
        assert!(overwrite(OnConflict::Replace));
        assert!(!overwrite(OnConflict::Skip));
        assert!(!overwrite(OnConflict::Fail));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("user:*").is_ok());
        assert!(check_pattern("a[bc]?\\*").is_ok());
        assert!(check_pattern("").unwrap_err().contains("empty"));
        assert!(check_pattern("a[bc").unwrap_err().contains("unclosed '['"));
        assert!(check_pattern("a\\").unwrap_err().contains("lone backslash"));
    }

    #[test]
    fn keyspace_counts() {
        let info = "# Keyspace\r\ndb0:keys=10,expires=4,avg_ttl=1\r\ndb3:keys=2,expires=0,avg_ttl=0\r\n";
        assert_eq!(keyspace(info, 0), (10, 4));
        assert_eq!(keyspace(info, 3), (2, 0));
        assert_eq!(keyspace(info, 1), (0, 0));
    }
}
