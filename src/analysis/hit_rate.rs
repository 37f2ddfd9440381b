//! A Redis hit rate over an interval: from the deltas of the cumulative
//! `keyspace_hits` and `keyspace_misses` between two INFO readings, so the
//! server's old history (weeks of hits) does not mask what happens now.

use serde::Serialize;

/// Key lookups between two INFO readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lookups {
    pub hits: u64,
    pub misses: u64,
    /// How long the interval was.
    pub seconds: f64,
}

impl Lookups {
    /// Between the counters `(hits, misses)` of two readings `seconds` apart;
    /// None when a counter went back (a restart or `CONFIG RESETSTAT`): the
    /// lookups of that interval are unknown.
    pub fn between(before: (u64, u64), after: (u64, u64), seconds: f64) -> Option<Lookups> {
        Some(Lookups { hits: after.0.checked_sub(before.0)?, misses: after.1.checked_sub(before.1)?, seconds })
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
    /// No lookups in the interval, or not two readings yet: never a pass.
    NoData(String),
}

/// `redis`'s hit rate over the interval `lookups` covers, against
/// `min_percent`. None: there has been one INFO reading only.
pub fn judge(redis: &str, lookups: Option<&Lookups>, min_percent: f64) -> HitRate {
    let Some(l) = lookups else {
        return HitRate::NoData(format!(
            "{redis}: one INFO reading so far (or its counters were reset); the hit rate needs two"
        ));
    };
    let over = format!("over the last {:.0} s", l.seconds);
    match l.hit_percent() {
        None => HitRate::NoData(format!("{redis}: no key lookups {over}, so no hit rate")),
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
            matches!(judge("cache", Some(&l), 90.0), HitRate::Fail(d) if d.contains("hit rate 10.0% (1 hits, 9 misses over the last 5 s; minimum 90%)"))
        );
        let l = Lookups::between((5, 5), (14, 6), 5.0).unwrap();
        assert!(matches!(judge("cache", Some(&l), 90.0), HitRate::Pass(d) if d.contains("90.0%")));
    }

    #[test]
    fn no_lookups_or_one_reading_or_a_reset_is_no_data_never_a_pass() {
        let idle = Lookups::between((7, 3), (7, 3), 5.0).unwrap();
        assert_eq!(idle.hit_percent(), None);
        assert!(
            matches!(judge("cache", Some(&idle), 90.0), HitRate::NoData(d) if d.contains("no key lookups over the last 5 s"))
        );
        assert!(matches!(judge("cache", None, 90.0), HitRate::NoData(d) if d.contains("needs two")));
        assert_eq!(Lookups::between((100, 3), (2, 0), 5.0), None, "counters reset");
    }
}
