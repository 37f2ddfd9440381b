//! Whether two Redis endpoints' key counts show a copy: equal within a
//! tolerance, read from two different servers, from a source that holds
//! keys, in the databases the URLs name.

use serde::Serialize;

/// Keys in one database of a server (`INFO keyspace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DbKeys {
    pub db: u32,
    pub keys: u64,
}

/// One endpoint's reading.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub name: &'a str,
    pub keys: u64,
    /// The database its URL names (0 for a cluster).
    pub db: u32,
    /// The server's `run_id`, or each primary's of a cluster.
    pub run_ids: &'a [String],
    /// The server's databases other than the URL's that hold keys.
    pub other_dbs: &'a [DbKeys],
    /// How old its reading is, when known: the two sides are read on their
    /// own timers, and counts read seconds apart may match by timing.
    pub age_seconds: Option<f64>,
    /// One server's replication id, and whether it is a replica: a replica
    /// shares its primary's id. None for a cluster, or unknown.
    pub replication: Option<(&'a str, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCounts {
    Pass(String),
    Fail(String),
}

/// `from`'s and `to`'s counts against `tolerance`. Equal counts pass only
/// when they can show a copy: two databases (one read twice is always
/// equal), a source with keys (0 and 0 is a wrong URL as often as an empty
/// cache), and no side reading an empty database while another holds keys.
/// A side that replicates the other fails too: its counts match by
/// replication, with no copy (a reader endpoint of the old group given as
/// the target), and a replica takes no writes at the cutover.
pub fn judge(from: &Side, to: &Side, tolerance: u64) -> KeyCounts {
    let shared = from.run_ids.iter().find(|id| to.run_ids.contains(id));
    if let Some(id) = shared.filter(|_| from.db == to.db) {
        return KeyCounts::Fail(format!(
            "{} and {} are the same database of one Redis server (run_id {}, db {}): their counts match whatever \
             was copied; check the two endpoints' URLs",
            from.name,
            to.name,
            id.get(..8).unwrap_or(id),
            from.db
        ));
    }
    if let (Some((a, a_replica)), Some((b, b_replica))) = (from.replication, to.replication)
        && a == b
        && (a_replica || b_replica)
    {
        let (replica, primary) = if b_replica { (to, from) } else { (from, to) };
        return KeyCounts::Fail(format!(
            "{} replicates {} (one replication group, id {}): their counts match with no copy. Check {}'s URL; \
             a target filled by replication must be promoted (REPLICAOF NO ONE) before the cutover, as a replica \
             takes no writes",
            replica.name,
            primary.name,
            a.get(..8).unwrap_or(a),
            replica.name
        ));
    }
    for (side, other) in [(from, to), (to, from)] {
        // On one server, the other side's database is no hint.
        let hint = side.other_dbs.iter().filter(|d| shared.is_none() || d.db != other.db).max_by_key(|d| d.keys);
        if side.keys == 0
            && let Some(d) = hint
        {
            return KeyCounts::Fail(format!(
                "{}: no keys in the database its URL names, but db {} holds {}: should its URL end in /{}?",
                side.name, d.db, d.keys, d.db
            ));
        }
    }
    if from.keys == 0 {
        return KeyCounts::Fail(format!(
            "{} holds no keys (and {} {}): equal counts show a copy only from a source with keys; check the source's \
             URL (a source meant to be empty has nothing to count: leave this check out and run `cutover redis \
             verify`)",
            from.name, to.name, to.keys
        ));
    }
    if tolerance >= from.keys {
        // Then even an empty target would be within it.
        return KeyCounts::Fail(format!(
            "tolerance {tolerance} is not below {}'s {} keys: any count on {} (it holds {}), none at all too, would be \
             within it; give a tolerance below the source's count",
            from.name, from.keys, to.name, to.keys
        ));
    }
    let diff = from.keys.abs_diff(to.keys);
    let which = match to.keys.cmp(&from.keys) {
        std::cmp::Ordering::Less => format!(", {} has fewer", to.name),
        std::cmp::Ordering::Greater => format!(", {} has more", to.name),
        std::cmp::Ordering::Equal => String::new(),
    };
    let apart = match (from.age_seconds, to.age_seconds) {
        (Some(a), Some(b)) => format!(", read {:.1} s apart", (a - b).abs()),
        _ => String::new(),
    };
    let detail = format!(
        "{} {} keys, {} {} keys (difference {diff}{which}, tolerance {tolerance}{apart})",
        from.name, from.keys, to.name, to.keys
    );
    if diff <= tolerance { KeyCounts::Pass(detail) } else { KeyCounts::Fail(detail) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side<'a>(name: &'a str, keys: u64, run_ids: &'a [String], other_dbs: &'a [DbKeys]) -> Side<'a> {
        Side { name, keys, db: 0, run_ids, other_dbs, age_seconds: None, replication: None }
    }

    #[test]
    fn counts_within_the_tolerance_pass_and_say_which_side_is_short() {
        let (a, b) = (["a1".to_string()], ["b1".to_string()]);
        assert_eq!(
            judge(&side("old", 1000, &a, &[]), &side("new", 1000, &b, &[]), 0),
            KeyCounts::Pass("old 1000 keys, new 1000 keys (difference 0, tolerance 0)".into())
        );
        assert_eq!(
            judge(&side("old", 1000, &a, &[]), &side("new", 990, &b, &[]), 10),
            KeyCounts::Pass("old 1000 keys, new 990 keys (difference 10, new has fewer, tolerance 10)".into())
        );
        assert_eq!(
            judge(&side("old", 1000, &a, &[]), &side("new", 1011, &b, &[]), 10),
            KeyCounts::Fail("old 1000 keys, new 1011 keys (difference 11, new has more, tolerance 10)".into())
        );
        // How far apart the two readings were taken, whichever is older.
        let (old, new) = (Side { age_seconds: Some(1.25), ..side("old", 1000, &a, &[]) }, side("new", 1000, &b, &[]));
        assert_eq!(
            judge(&old, &Side { age_seconds: Some(4.5), ..new }, 0),
            KeyCounts::Pass("old 1000 keys, new 1000 keys (difference 0, tolerance 0, read 3.2 s apart)".into())
        );
    }

    #[test]
    fn one_server_read_as_both_sides_fails_whatever_the_counts() {
        let a = ["0123456789abcdef".to_string()];
        let cluster = ["c1".to_string(), "0123456789abcdef".to_string(), "c3".to_string()];
        let KeyCounts::Fail(why) = judge(&side("old", 1000, &a, &[]), &side("new", 1000, &cluster, &[]), 0) else {
            panic!("a node of the source's cluster as the target passed")
        };
        assert_eq!(
            why,
            "old and new are the same database of one Redis server (run_id 01234567, db 0): their counts match \
             whatever was copied; check the two endpoints' URLs"
        );
        // INFO without a run_id: nothing to compare, counts decide.
        assert!(matches!(judge(&side("old", 5, &[], &[]), &side("new", 5, &[], &[]), 0), KeyCounts::Pass(_)));
    }

    #[test]
    fn a_side_replicating_the_other_fails_either_way_round() {
        let (a, b) = (["a1".to_string()], ["b1".to_string()]);
        let primary = Side { replication: Some(("5f1c0a8b9d", false)), ..side("old", 1000, &a, &[]) };
        let replica = Side { replication: Some(("5f1c0a8b9d", true)), ..side("new", 1000, &b, &[]) };
        let KeyCounts::Fail(why) = judge(&primary, &replica, 0) else { panic!("a replica as the target passed") };
        assert!(why.starts_with("new replicates old (one replication group, id 5f1c0a8b)"), "{why}");
        let KeyCounts::Fail(why) = judge(&replica, &primary, 0) else { panic!("a replica as the source passed") };
        assert!(why.starts_with("new replicates old"), "{why}");
        // Promoted (a new replication id), or two primaries: counts decide.
        let promoted = Side { replication: Some(("77aa", false)), ..replica };
        assert!(matches!(judge(&primary, &promoted, 0), KeyCounts::Pass(_)));
    }

    #[test]
    fn two_databases_of_one_server_are_two_sides() {
        let id = ["0123456789abcdef".to_string()];
        let (db0, db1) = ([DbKeys { db: 0, keys: 1000 }], [DbKeys { db: 1, keys: 1000 }]);
        let from = Side { db: 0, ..side("old", 1000, &id, &db1) };
        let to = Side { db: 1, ..side("new", 1000, &id, &db0) };
        assert_eq!(
            judge(&from, &to, 0),
            KeyCounts::Pass("old 1000 keys, new 1000 keys (difference 0, tolerance 0)".into())
        );
        // Before the copy the target's database is empty, and the source's is no hint for it.
        let to = Side { db: 1, ..side("new", 0, &id, &db0) };
        assert_eq!(
            judge(&Side { db: 0, ..side("old", 1000, &id, &[]) }, &to, 0),
            KeyCounts::Fail("old 1000 keys, new 0 keys (difference 1000, new has fewer, tolerance 0)".into())
        );
    }

    #[test]
    fn an_empty_source_or_an_empty_database_beside_a_full_one_never_passes() {
        let (a, b) = (["a1".to_string()], ["b1".to_string()]);
        let elsewhere = [DbKeys { db: 1, keys: 7 }, DbKeys { db: 3, keys: 1200 }];
        assert_eq!(
            judge(&side("old", 0, &a, &elsewhere), &side("new", 0, &b, &[]), 0),
            KeyCounts::Fail(
                "old: no keys in the database its URL names, but db 3 holds 1200: should its URL end in /3?".into()
            )
        );
        assert!(
            matches!(judge(&side("old", 1200, &a, &[]), &side("new", 0, &b, &elsewhere), 5000), KeyCounts::Fail(w) if w.starts_with("new: no keys in the database")),
            "an empty target database beside a full one, even within the tolerance"
        );
        assert_eq!(
            judge(&side("old", 0, &a, &[]), &side("new", 0, &b, &[]), 0),
            KeyCounts::Fail(
                "old holds no keys (and new 0): equal counts show a copy only from a source with keys; check the \
                 source's URL (a source meant to be empty has nothing to count: leave this check out and run \
                 `cutover redis verify`)"
                    .into()
            )
        );
        // Keys in other databases beside the URL's own are no concern.
        assert!(matches!(judge(&side("old", 9, &a, &elsewhere), &side("new", 9, &b, &[]), 0), KeyCounts::Pass(_)));
    }

    /// A tolerance as large as the source's count passes an empty target.
    #[test]
    fn a_tolerance_not_below_the_sources_count_never_passes() {
        let (a, b) = (["a1".to_string()], ["b1".to_string()]);
        assert_eq!(
            judge(&side("old", 80, &a, &[]), &side("new", 0, &b, &[]), 100),
            KeyCounts::Fail(
                "tolerance 100 is not below old's 80 keys: any count on new (it holds 0), none at all too, would be \
                 within it; give a tolerance below the source's count"
                    .into()
            )
        );
        assert!(matches!(judge(&side("old", 80, &a, &[]), &side("new", 80, &b, &[]), 80), KeyCounts::Fail(_)));
        assert!(matches!(judge(&side("old", 80, &a, &[]), &side("new", 75, &b, &[]), 79), KeyCounts::Pass(_)));
    }
}
