//! An `alarm_ok` gate reads alarm states, and an alarm can go to ALARM and
//! back between two readings: a throttled or failed poll, a slow one, a
//! cockpit that stood still. A state changed since the soak began is
//! checked against the alarm's history, and each ALARM found there that no
//! reading saw counts as one failure of the gate, as a reading of it would.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::aws::cloudwatch::{AlarmState, StateChange};
use crate::engine::Measurement;

/// How long before the soak's start its alarm history is read: an ALARM
/// while the step's weights settled (INSYNC, then a TTL) judged this step's
/// requests.
const BEFORE_SOAK: Duration = Duration::from_secs(60);

/// How far AWS's clock may be behind this machine's: a rollout whose
/// clock is further off is refused, and its gates do not judge.
const CLOCK_SKEW: Duration = crate::aws::CLOCK_SKEW_ALLOWED;

/// The same change as a reading's timestamp and as its history item's time
/// (AWS CLI's examples for one alarm show the same millisecond in both);
/// two changes into ALARM are an evaluation apart, ten seconds at the
/// least on AWS (two in the sandbox).
const SAME_CHANGE: Duration = Duration::from_secs(1);

fn near(a: SystemTime, b: SystemTime) -> bool {
    a.duration_since(b).or_else(|_| b.duration_since(a)).is_ok_and(|d| d <= SAME_CHANGE)
}

/// Where the history of a soak beginning at `since` starts: a minute
/// before it, but never before this process sent the step's weights
/// (`shifted`: an ALARM before judged other weights, and may be the one an
/// earlier run aborted on). A soak this process resumed afresh (`resumed`:
/// its since, and when the interrupted run last saved its soak, about its
/// last reading) reads from a minute before that, as no one read the
/// alarms in between. A step resumed from a pause with its weights live
/// (`paused`: when it paused) reads from the pause on, as no reading saw
/// what those weights did while it stood.
pub fn history_from(
    since: SystemTime,
    shifted: Option<SystemTime>,
    resumed: Option<(SystemTime, SystemTime)>,
    paused: Option<SystemTime>,
) -> SystemTime {
    let before = |t: SystemTime, d: Duration| t.checked_sub(d).unwrap_or(t);
    let from = match (shifted, resumed) {
        (Some(shifted), _) => before(since, BEFORE_SOAK).max(before(shifted, CLOCK_SKEW)),
        (None, Some((new, old))) if new == since => before(old.min(since), BEFORE_SOAK),
        (None, _) => before(since, BEFORE_SOAK),
    };
    paused.map_or(from, |at| from.min(before(at, CLOCK_SKEW)))
}

/// The ALARMs each gate has counted while this process runs, and how far
/// each alarm's history has been read, so one ALARM is one failure, in
/// whichever soak its history is read.
#[derive(Debug, Default)]
pub struct AlarmEpisodes {
    /// (gate, alarm) → when each counted ALARM began, by AWS's clock.
    counted: BTreeMap<(usize, String), Vec<SystemTime>>,
    /// (gate, alarm) → the state change whose history was read through.
    read_through: BTreeMap<(usize, String), SystemTime>,
    /// (gate, alarm) → (when an ALARM began, the latest reading that saw
    /// it still on): one a reading saw after a window opened was on when
    /// it opened, so the window's ongoing ALARM is that one.
    seen_on: BTreeMap<(usize, String), Vec<(SystemTime, SystemTime)>>,
}

impl AlarmEpisodes {
    /// A reading of gate `gate` (taken at `read_at` or later) failed while
    /// these alarms were in ALARM: their ALARMs are counted.
    pub fn saw(&mut self, gate: usize, states: &[AlarmState], alarms: &[String], read_at: SystemTime) {
        for s in states.iter().filter(|s| s.state == "ALARM" && alarms.contains(&s.name)) {
            let key = (gate, s.name.clone());
            let counted = self.counted.entry(key.clone()).or_default();
            let Some(t) = s.state_changed else { continue };
            if !counted.iter().any(|c| near(*c, t)) {
                counted.push(t);
            }
            let seen = self.seen_on.entry(key).or_default();
            match seen.iter_mut().find(|(began, _)| near(*began, t)) {
                Some((_, last)) => *last = (*last).max(read_at),
                None => seen.push((t, read_at)),
            }
        }
    }

    /// The alarms of gate `gate` not in ALARM now whose state changed at or
    /// after `from` since their history was last read, with that change.
    pub fn to_read(
        &self,
        gate: usize,
        states: &[AlarmState],
        alarms: &[String],
        from: SystemTime,
    ) -> Vec<(String, SystemTime)> {
        states
            .iter()
            .filter(|s| alarms.contains(&s.name) && s.state != "ALARM")
            .filter_map(|s| Some((s.name.clone(), s.state_changed.filter(|t| *t >= from)?)))
            .filter(|(name, t)| self.read_through.get(&(gate, name.clone())) != Some(t))
            .collect()
    }

    /// Alarm `alarm`'s state changes from `from` on (`changes`, oldest
    /// first), read after a reading showed its last change at `through`:
    /// counts the times it went into ALARM that no reading and no earlier
    /// history counted, and returns them, with whether the history holds
    /// that change (AWS's history may lag the state: one without it is read
    /// again, and tells nothing of the time since). A change after
    /// `through` waits for the reading that shows it (counted twice else).
    pub fn count_unseen(
        &mut self,
        gate: usize,
        alarm: &str,
        (from, through): (SystemTime, SystemTime),
        changes: &[StateChange],
    ) -> (Vec<SystemTime>, bool) {
        let key = (gate, alarm.to_string());
        let caught_up = changes.iter().any(|c| near(c.at, through));
        if caught_up {
            self.read_through.insert(key.clone(), through);
        }
        // In ALARM when the window opened, and its start not found: from
        // then, unless a reading since saw it on from before (that one). A
        // reading within the clock allowance of the window's start may be
        // the step before's (the window opens that much before its send).
        let seen_before = self.seen_on.get(&key).is_some_and(|seen| {
            seen.iter().any(|(began, read)| *began <= from + SAME_CHANGE && *read >= from + CLOCK_SKEW)
        });
        let ongoing = changes.first().filter(|c| c.old == "ALARM" && !seen_before).map(|_| from);
        let entered = changes.iter().filter(|c| c.new == "ALARM" && c.old != "ALARM").map(|c| c.at);
        let counted = self.counted.entry(key).or_default();
        let new: Vec<SystemTime> = ongoing
            .into_iter()
            .chain(entered)
            .filter(|t| *t <= through + SAME_CHANGE && !counted.iter().any(|c| near(*c, *t)))
            .collect();
        counted.extend(&new);
        (new, caught_up)
    }
}

/// A failure for each ALARM no reading saw: `(alarm, when it went into
/// ALARM)`, as a reading of each would have counted.
pub fn unseen_alarms(found: &[(String, SystemTime)]) -> Vec<Measurement> {
    found
        .iter()
        .map(|(name, at)| {
            Measurement::Fail(format!(
                "alarm {name} went to ALARM at {} and left it before a reading saw it (its history says)",
                crate::time::rfc3339(*at)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn state(name: &str, state: &str, updated: u64) -> AlarmState {
        AlarmState { name: name.into(), state: state.into(), state_changed: Some(t(updated)), ..Default::default() }
    }

    fn change(at: u64, old: &str, new: &str) -> StateChange {
        StateChange { at: t(at), old: old.into(), new: new.into() }
    }

    #[test]
    fn only_alarms_of_the_gate_changed_in_the_soak_and_not_read_since_are_read() {
        let alarms = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let states = vec![state("a", "OK", 100), state("b", "OK", 10), state("c", "ALARM", 120), state("d", "OK", 130)];
        let e = &mut AlarmEpisodes::default();
        // b changed before the soak; c is in ALARM (a reading counts it); d is no alarm of this gate.
        assert_eq!(e.to_read(0, &states, &alarms, t(50)), vec![("a".to_string(), t(100))]);
        assert_eq!(e.count_unseen(0, "a", (t(50), t(100)), &[]), (vec![], false), "its history lags");
        assert_eq!(e.to_read(0, &states, &alarms, t(50)).len(), 1, "a history without the change is read again");
        assert_eq!(e.count_unseen(0, "a", (t(50), t(100)), &[change(100, "INSUFFICIENT_DATA", "OK")]), (vec![], true));
        assert!(e.to_read(0, &states, &alarms, t(50)).is_empty(), "read through its last change");
        assert_eq!(e.to_read(1, &states, &alarms, t(50)).len(), 1, "another gate reads for itself");
        let changed = vec![state("a", "INSUFFICIENT_DATA", 160)];
        assert_eq!(e.to_read(0, &changed, &alarms, t(50)), vec![("a".to_string(), t(160))], "changed again");
    }

    #[test]
    fn an_alarm_a_reading_saw_is_not_counted_again_from_its_history() {
        let alarms = vec!["a".to_string()];
        let mut e = AlarmEpisodes::default();
        // Two failing readings of one ALARM: counted once.
        e.saw(0, &[state("a", "ALARM", 100)], &alarms, t(110));
        e.saw(0, &[state("a", "ALARM", 100)], &alarms, t(110));
        // Its history item is a few milliseconds off the state's time.
        let mut seen = change(100, "OK", "ALARM");
        seen.at += Duration::from_millis(20);
        let changes = [seen, change(150, "ALARM", "OK"), change(200, "OK", "ALARM"), change(230, "ALARM", "OK")];
        assert_eq!(e.count_unseen(0, "a", (t(0), t(230)), &changes).0, vec![t(200)], "only the ALARM no reading saw");
        assert!(e.count_unseen(0, "a", (t(0), t(240)), &changes).0.is_empty(), "each ALARM counts once, in any soak");
        assert_eq!(e.count_unseen(1, "a", (t(0), t(240)), &changes).0.len(), 2, "each gate counts for itself");
    }

    /// An ALARM begun before the window and seen by a reading in it is the
    /// one the window opened on: it ends in the window without a second
    /// failure (it counted twice, and a `failure_limit` of 2 aborted on it).
    /// One seen only before the window may have ended and come back: counted.
    #[test]
    fn an_alarm_on_when_the_window_opened_that_a_reading_saw_counts_once() {
        let alarms = vec!["a".to_string()];
        let ended = [change(130, "ALARM", "OK")];
        let mut e = AlarmEpisodes::default();
        e.saw(0, &[state("a", "ALARM", 30)], &alarms, t(70));
        assert!(e.count_unseen(0, "a", (t(60), t(130)), &ended).0.is_empty(), "seen at 70, in the window from 60");
        let mut e = AlarmEpisodes::default();
        e.saw(0, &[state("a", "ALARM", 30)], &alarms, t(50));
        assert_eq!(e.count_unseen(0, "a", (t(60), t(130)), &ended).0, vec![t(60)], "seen only before the window");
        // Within the clock allowance of the window's start: maybe the step
        // before's reading, promoted on at once; counted.
        let mut e = AlarmEpisodes::default();
        e.saw(0, &[state("a", "ALARM", 30)], &alarms, t(62));
        assert_eq!(e.count_unseen(0, "a", (t(60), t(130)), &ended).0, vec![t(60)], "seen at the window's edge");
    }

    #[test]
    fn an_alarm_after_the_reading_waits_for_it_and_one_begun_before_the_window_counts() {
        let mut e = AlarmEpisodes::default();
        // The reading showed the change at 150; the ALARM at 200 came after it.
        let changes = [change(150, "INSUFFICIENT_DATA", "OK"), change(200, "OK", "ALARM")];
        assert_eq!(e.count_unseen(0, "a", (t(0), t(150)), &changes), (vec![], true));
        // Composites record updates that keep ALARM: no new ALARM.
        let kept = [change(100, "OK", "ALARM"), change(120, "ALARM", "ALARM"), change(130, "ALARM", "OK")];
        assert_eq!(e.count_unseen(1, "a", (t(0), t(130)), &kept).0, vec![t(100)]);
        // In ALARM when the window opened, its start not found: counted from the window.
        let ongoing = [change(130, "ALARM", "OK")];
        assert_eq!(e.count_unseen(2, "a", (t(60), t(130)), &ongoing).0, vec![t(60)]);
    }

    #[test]
    fn history_is_read_from_a_minute_before_the_soak_but_never_before_this_processs_shift_unless_it_paused() {
        assert_eq!(history_from(t(600), None, None, None), t(540));
        assert_eq!(
            history_from(t(600), Some(t(570)), None, None),
            t(565),
            "shifted 30 s before: from then, less the skew"
        );
        assert_eq!(history_from(t(600), Some(t(100)), None, None), t(540));
        assert_eq!(
            history_from(t(600), None, Some((t(600), t(300))), None),
            t(240),
            "resumed: from the interrupted run"
        );
        assert_eq!(history_from(t(900), None, Some((t(600), t(300))), None), t(840), "a later soak of the resumed run");
        assert_eq!(history_from(t(5000), None, None, Some(t(300))), t(295), "paused at 300: from then, less the skew");
        assert_eq!(history_from(t(5000), Some(t(4990)), None, Some(t(300))), t(295), "its weights sent again");
        assert_eq!(history_from(t(600), None, None, Some(t(590))), t(540), "a short pause: a minute before the soak");
    }

    #[test]
    fn each_alarm_seen_between_readings_is_a_failure_that_says_when() {
        assert!(unseen_alarms(&[]).is_empty());
        let fails = unseen_alarms(&[("a".into(), t(0)), ("b".into(), t(5))]);
        assert_eq!(fails.len(), 2);
        let Measurement::Fail(why) = &fails[0] else { panic!("a failure") };
        assert_eq!(
            why,
            "alarm a went to ALARM at 2027-01-15T08:00:00Z and left it before a reading saw it (its history says)"
        );
    }
}
