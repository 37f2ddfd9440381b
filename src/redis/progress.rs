//! Counters of a copy and what a progress view shows of them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Keys SCAN returned.
    pub scanned: u64,
    /// Keys written to the target.
    pub copied: u64,
    /// Keys that expired (or were deleted) between SCAN and the read.
    pub skipped_expired: u64,
    /// Keys left alone because the target had them (`--on-conflict skip`).
    pub skipped_conflict: u64,
    /// Payload bytes written.
    pub bytes: u64,
    /// Keys copied type by type in chunks (big keys, or a format the target cannot read).
    pub chunked: u64,
    /// Keys SCAN returned again (it may, while the source's table is
    /// resized) that the target already held as the source has them: this
    /// copy wrote them the first time (or another writer wrote them the
    /// same way; nothing on the target differs).
    #[serde(default)]
    pub seen_twice: u64,
    /// Keys under cutover's temporary names on the source (`__cutover_tmp__…`:
    /// half-built by a copy into that server, running or killed): never
    /// real data, and copied they could overwrite a key this copy builds
    /// under that name.
    #[serde(default)]
    pub skipped_temporary: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.scanned += o.scanned;
        self.copied += o.copied;
        self.skipped_expired += o.skipped_expired;
        self.skipped_conflict += o.skipped_conflict;
        self.bytes += o.bytes;
        self.chunked += o.chunked;
        self.seen_twice += o.seen_twice;
        self.skipped_temporary += o.skipped_temporary;
    }

    /// All of `counts` added up.
    pub fn sum(counts: impl IntoIterator<Item = Counters>) -> Counters {
        let mut t = Counters::default();
        for c in counts {
            t.add(&c);
        }
        t
    }

    /// What is left of these after `o`'s are taken out, field by field (never below 0).
    pub fn minus(&self, o: &Counters) -> Counters {
        Counters {
            scanned: self.scanned.saturating_sub(o.scanned),
            copied: self.copied.saturating_sub(o.copied),
            skipped_expired: self.skipped_expired.saturating_sub(o.skipped_expired),
            skipped_conflict: self.skipped_conflict.saturating_sub(o.skipped_conflict),
            bytes: self.bytes.saturating_sub(o.bytes),
            chunked: self.chunked.saturating_sub(o.chunked),
            seen_twice: self.seen_twice.saturating_sub(o.seen_twice),
            skipped_temporary: self.skipped_temporary.saturating_sub(o.skipped_temporary),
        }
    }

    /// Keys dealt with (copied, skipped, or seen again).
    pub fn done(&self) -> u64 {
        self.copied + self.skipped_expired + self.skipped_conflict + self.seen_twice + self.skipped_temporary
    }
}

/// One update of a running copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyProgress {
    /// Since the first run (a resumed copy starts from its checkpoint's
    /// counters); a scan that starts over (a source restarted or failed
    /// over, a resharding) counts its keys again from 0.
    pub total: Counters,
    /// This run only: rates are computed from these.
    pub run: Counters,
    /// Source DBSIZE when the copy started (all keys, whatever --match says).
    pub estimate: u64,
    pub elapsed: Duration,
    pub finished: bool,
}

impl CopyProgress {
    pub fn keys_per_s(&self) -> f64 {
        per_s(self.run.done(), self.elapsed)
    }

    pub fn bytes_per_s(&self) -> f64 {
        per_s(self.run.bytes, self.elapsed)
    }

    /// Time left at the current rate, when there is a rate and keys left.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.keys_per_s();
        let left = self.estimate.saturating_sub(self.total.done());
        (rate > 0.0 && !self.finished).then(|| Duration::from_secs_f64(left as f64 / rate))
    }

    /// One plain line, for logs and pipes.
    pub fn line(&self) -> String {
        let eta = self.eta().map_or_else(|| "-".to_string(), |d| format!("{} s", d.as_secs()));
        format!(
            "copied {} keys of ~{} ({} skipped), {:.0} keys/s, {}/s, ETA {eta}",
            self.total.copied,
            self.estimate,
            self.total.skipped_expired + self.total.skipped_conflict + self.total.skipped_temporary,
            self.keys_per_s(),
            human_bytes(self.bytes_per_s() as u64)
        )
    }
}

fn per_s(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_eta_come_from_this_run() {
        let p = CopyProgress {
            total: Counters { copied: 600, skipped_expired: 100, ..Default::default() },
            run: Counters { copied: 200, bytes: 2_000_000, ..Default::default() },
            estimate: 1700,
            elapsed: Duration::from_secs(2),
            finished: false,
        };
        assert_eq!(p.keys_per_s(), 100.0);
        assert_eq!(p.bytes_per_s(), 1_000_000.0);
        assert_eq!(p.eta(), Some(Duration::from_secs(10)));
        assert_eq!(p.line(), "copied 600 keys of ~1700 (100 skipped), 100 keys/s, 1.0 MB/s, ETA 10 s");
        assert_eq!(CopyProgress { finished: true, ..p }.eta(), None);
    }
}
