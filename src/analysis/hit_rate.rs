//! A Redis hit rate over an interval: from the deltas of the cumulative
//! `keyspace_hits` and `keyspace_misses` between two INFO readings, so the
//! server's old history (weeks of hits) does not mask what happens now. A
//! cluster's lookups are those of every node (a client may read from any):
//! one shard's rate is not the cluster's.

use serde::Serialize;

/// Key lookups between two INFO readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lookups {
    pub hits: u64,
    pub misses: u64,
    /// How long the interval was.
    pub seconds: f64,
    /// How many servers they were counted on (every node of a cluster).
    pub servers: usize,
}

/// One server's cumulative `keyspace_hits` and `keyspace_misses`, with the
/// `run_id` that tells its counters from another run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupCounters {
    pub run_id: String,
    pub hits: u64,
    pub misses: u64,
}

impl Lookups {
    /// Between the counters `(hits, misses)` of two readings `seconds` apart;
    /// None when a counter went back (a restart or `CONFIG RESETSTAT`): the
    /// lookups of that interval are unknown.
    pub fn between(before: (u64, u64), after: (u64, u64), seconds: f64) -> Option<Lookups> {
        Some(Lookups {
            hits: after.0.checked_sub(before.0)?,
            misses: after.1.checked_sub(before.1)?,
            seconds,
            servers: 1,
        })
    }

    /// Summed over every server of an endpoint (one, or each node of a
    /// cluster), between two readings `seconds` apart. None, the lookups of
    /// that interval unknown, when the readings are not of the same servers
    /// (a restart or failover gives a new `run_id`; a node came or went) or
    /// any server's counter went back, or a server cannot be told apart
    /// (no `run_id`, or one shared).
    pub fn between_servers(before: &[LookupCounters], after: &[LookupCounters], seconds: f64) -> Option<Lookups> {
        fn ids(c: &[LookupCounters]) -> Vec<&str> {
            let mut ids: Vec<&str> = c.iter().map(|c| c.run_id.as_str()).collect();
            ids.sort_unstable();
            ids
        }
        let ids_after = ids(after);
        // A server without a run_id, or two sharing one, cannot be told
        // apart from another: its deltas could be taken against another's
        // counters. The readings being of the same servers, one side tells.
        let told_apart =
            !ids_after.is_empty() && !ids_after.contains(&"") && ids_after.windows(2).all(|w| w[0] != w[1]);
        if !told_apart || ids(before) != ids_after {
            return None;
        }
        let mut sum = Lookups { hits: 0, misses: 0, seconds, servers: after.len() };
        for a in after {
            let b = before.iter().find(|b| b.run_id == a.run_id)?;
            let l = Lookups::between((b.hits, b.misses), (a.hits, a.misses), seconds)?;
            (sum.hits, sum.misses) = (sum.hits + l.hits, sum.misses + l.misses);
        }
        Some(sum)
    }

    /// Fewer lookups than the `min_lookups` a hit rate is judged on.
    pub fn too_few(&self, min_lookups: u64) -> bool {
        self.hits + self.misses < min_lookups
    }

    /// Hits per lookup, in percent; None when nothing was looked up (no
    /// reading, never a rate of 100%).
    pub fn hit_percent(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 * 100.0 / total as f64)
    }
}

/// A hit rate judged against `min_percent`.
#[derive(Debug, Clone, PartialEq)]
pub enum HitRate {
    Pass(String),
    Fail(String),
    /// Fewer than the least number of lookups in the interval, or not two
    /// readings yet: never a pass.
    NoData(String),
}

/// Why a server's hit rate is not one database's, if it is not: INFO's
/// `keyspace_hits` and `keyspace_misses` count every database's lookups, so
/// another database holding keys (another application, an old copy) may
/// hide this one's misses.
pub fn not_this_databases(redis: &str, db: u32, other_dbs: &[super::key_counts::DbKeys]) -> Option<String> {
    let first = other_dbs.first()?;
    let more = if other_dbs.len() > 1 { format!(" and {} more", other_dbs.len() - 1) } else { String::new() };
    Some(format!(
        "{redis}: its server also holds keys in db{} ({} keys){more}, and Redis counts hits and misses for the \
         whole server, so the hit rate of db{db} cannot be told; judge it on a server whose only keys are its own",
        first.db, first.keys
    ))
}

/// `redis`'s hit rate over the interval `lookups` covers, against
/// `min_percent`, judged on at least `min_lookups` lookups. None: there has
/// been one INFO reading only.
pub fn judge(redis: &str, lookups: Option<&Lookups>, min_percent: f64, min_lookups: u64) -> HitRate {
    let Some(l) = lookups else {
        return HitRate::NoData(format!(
            "{redis}: one INFO reading so far (or its counters were reset, or its servers changed); the hit rate needs two"
        ));
    };
    let on = if l.servers > 1 { format!(" on {} nodes", l.servers) } else { String::new() };
    let over = format!("over the last {:.0} s{on}", l.seconds);
    match l.hit_percent() {
        None => HitRate::NoData(format!("{redis}: no key lookups {over}, so no hit rate")),
        // 3 hits of 3 is 100% of nothing much.
        Some(p) if l.too_few(min_lookups) => HitRate::NoData(format!(
            "{redis}: {} key lookups {over} ({p:.1}% hits), fewer than the {min_lookups} a hit rate is judged on",
            l.hits + l.misses
        )),
        Some(p) => {
            let detail = format!(
                "{redis}: hit rate {p:.1}% ({} hits, {} misses {over}; minimum {min_percent}%)",
                l.hits, l.misses
            );
            if p >= min_percent { HitRate::Pass(detail) } else { HitRate::Fail(detail) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_of_the_interval_not_of_the_servers_history() {
        // A million old hits; this interval: 1 hit, 9 misses.
        let l = Lookups::between((1_000_000, 10), (1_000_001, 19), 5.0).unwrap();
        assert_eq!(l.hit_percent(), Some(10.0));
        assert!(
            matches!(judge("cache", Some(&l), 90.0, 10), HitRate::Fail(d) if d.contains("hit rate 10.0% (1 hits, 9 misses over the last 5 s; minimum 90%)"))
        );
        let l = Lookups::between((5, 5), (14, 6), 5.0).unwrap();
        assert!(matches!(judge("cache", Some(&l), 90.0, 10), HitRate::Pass(d) if d.contains("90.0%")));
    }

    #[test]
    fn no_lookups_or_one_reading_or_a_reset_is_no_data_never_a_pass() {
        let idle = Lookups::between((7, 3), (7, 3), 5.0).unwrap();
        assert_eq!(idle.hit_percent(), None);
        assert!(
            matches!(judge("cache", Some(&idle), 90.0, 10), HitRate::NoData(d) if d.contains("no key lookups over the last 5 s"))
        );
        assert!(matches!(judge("cache", None, 90.0, 10), HitRate::NoData(d) if d.contains("needs two")));
        assert_eq!(Lookups::between((100, 3), (2, 0), 5.0), None, "counters reset");
        // Three hits and no miss: 100% of too few to judge.
        let few = Lookups::between((7, 3), (10, 3), 5.0).unwrap();
        assert!(
            matches!(judge("cache", Some(&few), 90.0, 10), HitRate::NoData(d) if d == "cache: 3 key lookups over the last 5 s (100.0% hits), fewer than the 10 a hit rate is judged on")
        );
        // As many as the least: judged.
        let enough = Lookups::between((7, 3), (17, 3), 5.0).unwrap();
        assert!(matches!(judge("cache", Some(&enough), 90.0, 10), HitRate::Pass(_)));
    }

    #[test]
    fn a_clusters_rate_sums_every_node_and_is_unknown_when_its_nodes_changed() {
        let c = |run_id: &str, hits, misses| LookupCounters { run_id: run_id.into(), hits, misses };
        let before = [c("a", 100, 0), c("b", 50, 50), c("c", 0, 0)];
        // The seed node alone: 19 of 20. The cluster: 19 hits, 81 misses.
        let after = [c("c", 0, 40), c("a", 119, 1), c("b", 50, 90)];
        let l = Lookups::between_servers(&before, &after, 5.0).unwrap();
        assert_eq!((l.hits, l.misses, l.servers), (19, 81, 3));
        assert!(
            matches!(judge("cache", Some(&l), 90.0, 10), HitRate::Fail(d) if d.contains("19.0% (19 hits, 81 misses over the last 5 s on 3 nodes;"))
        );
        // A node restarted (new run_id), one gone, one added, a counter reset: unknown.
        let restarted = [c("a", 119, 1), c("b", 50, 90), c("c2", 0, 40)];
        assert_eq!(Lookups::between_servers(&before, &restarted, 5.0), None);
        assert_eq!(Lookups::between_servers(&before, &after[..2], 5.0), None);
        assert_eq!(Lookups::between_servers(&before[..2], &after, 5.0), None);
        assert_eq!(Lookups::between_servers(&before, &[c("a", 1, 1), c("b", 50, 90), c("c", 0, 40)], 5.0), None);
        assert_eq!(Lookups::between_servers(&[], &[], 5.0), None);
        // Without run_ids (or sharing one), a node's deltas could be taken
        // against another's counters: a million old hits read as new.
        // Here both nodes only missed (0%); matched by an empty run_id, the
        // busy node's history would read as 999,990 new hits.
        let before = [c("", 10, 10), c("", 1_000_000, 10)];
        let after = [c("", 10, 20), c("", 1_000_000, 20)];
        assert_eq!(Lookups::between_servers(&before, &after, 5.0), None);
        let twice = [c("a", 1, 1), c("a", 1, 1)];
        assert_eq!(Lookups::between_servers(&twice, &twice, 5.0), None);
    }
}
