use std::time::{Duration, SystemTime};

use super::*;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

fn gate(name: &str, failure_limit: u32, consecutive_error_limit: u32, no_data: NoDataPolicy) -> GateSpec {
    GateSpec { name: name.into(), failure_limit, consecutive_error_limit, no_data, settle: None }
}

/// Steps 10, 50, 100; soak 60 s; TTL 10 s; gate 0 aborts on the first failure,
/// gate 1 tolerates two failures; both pause after 3 errors; gate 1 passes on no data.
fn plan() -> RolloutPlan {
    RolloutPlan {
        steps: vec![10, 50, 100],
        soak: Duration::from_secs(60),
        bake: Duration::ZERO,
        ttl: Duration::from_secs(10),
        gates: vec![gate("g0", 1, 3, NoDataPolicy::Pause), gate("g1", 3, 3, NoDataPolicy::Pass)],
        initial: (100, 0),
    }
}

fn weights(out: &[Output]) -> Vec<(Weights, Option<usize>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SetWeights { weights, step } => Some((*weights, *step)),
            _ => None,
        })
        .collect()
}

/// Drives a step from its shift to the start of its soak, at `at`.
fn to_soak(e: &mut Engine, step: usize, at: u64) {
    e.handle(Input::ShiftApplied { step, change_id: format!("C{step}") }, t(at));
    e.handle(Input::InSync { step }, t(at + 1));
    assert!(matches!(e.state.phase, RolloutPhase::WaitingTtl { .. }));
    assert!(e.handle(Input::Tick, t(at + 5)).is_empty(), "TTL not over yet");
    e.handle(Input::Tick, t(at + 11));
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "{:?}", e.state.phase);
}

fn pass_all(e: &mut Engine, at: u64) {
    for g in 0..2 {
        e.handle(Input::Measure { gate: g, result: Measurement::Pass }, t(at));
    }
}

#[test]
fn plan_from_the_demo_runbook_is_valid() {
    let rb =
        crate::runbook::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks/demo.toml"))).unwrap();
    let p = RolloutPlan::from_runbook(&rb).unwrap();
    assert_eq!(p.steps, vec![10, 25, 50, 100]);
    assert_eq!(p.initial, (100, 0));
    assert_eq!(p.gates.len(), 6);
    assert_eq!(p.weights_at(1), (75, 25));
}

#[test]
fn a_full_rollout_reaches_100_with_every_step_gated() {
    let mut e = Engine::new(plan());
    let out = e.handle(Input::Start, t(0));
    assert_eq!(weights(&out), vec![((90, 10), Some(0))]);
    let mut clock = 0;
    for step in 0..3 {
        to_soak(&mut e, step, clock);
        pass_all(&mut e, clock + 45);
        assert!(e.handle(Input::Tick, t(clock + 40)).is_empty(), "soak not over");
        let out = e.handle(Input::Tick, t(clock + 72));
        assert_eq!(e.state.last_good, Some(step));
        if step < 2 {
            assert_eq!(weights(&out), vec![(plan().weights_at(step + 1), Some(step + 1))]);
        } else {
            assert!(out.contains(&Output::Done));
            assert_eq!(e.state.phase, RolloutPhase::Done);
        }
        clock += 100;
    }
}

#[test]
fn soak_time_alone_never_passes_a_step() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    e.handle(Input::Measure { gate: 0, result: Measurement::Pass }, t(45));
    // Gate 1 has no measurement: the soak is over but the step holds.
    assert!(e.handle(Input::Tick, t(500)).is_empty());
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }));
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(501));
    assert!(!weights(&e.handle(Input::Tick, t(502))).is_empty());
}

#[test]
fn weights_do_not_move_before_insync_and_one_ttl() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    e.handle(Input::ShiftApplied { step: 0, change_id: "C".into() }, t(0));
    // Measurements before the soak are not evidence.
    e.handle(Input::Measure { gate: 0, result: Measurement::Pass }, t(1));
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(1));
    assert!(e.handle(Input::Tick, t(1000)).is_empty(), "still waiting for INSYNC");
    assert_eq!(e.state.phase, RolloutPhase::WaitingInsync);
    assert!(e.state.counters.iter().all(|c| c.passes == 0));
    // INSYNC for another step is ignored.
    e.handle(Input::InSync { step: 1 }, t(1001));
    assert_eq!(e.state.phase, RolloutPhase::WaitingInsync);
}

#[test]
fn a_failing_gate_aborts_to_the_last_good_step_and_says_why() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.handle(Input::Tick, t(80)); // step 0 good, shifting to step 1
    to_soak(&mut e, 1, 100);
    let out =
        e.handle(Input::Measure { gate: 0, result: Measurement::Fail("alarm staging-5xx in ALARM".into()) }, t(120));
    assert_eq!(weights(&out), vec![((90, 10), None)]);
    assert_eq!(e.state.phase, RolloutPhase::Aborted);
    let reason = e.state.reason.clone().unwrap();
    assert_eq!(reason, "g0 failed 1 time(s): alarm staging-5xx in ALARM");
    assert!(out.contains(&Output::Aborted { reason, weights: (90, 10) }));
}

#[test]
fn failing_in_the_first_step_returns_to_the_initial_weights() {
    let mut p = plan();
    p.initial = (255, 0);
    let mut e = Engine::new(p);
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    let out = e.handle(Input::Measure { gate: 0, result: Measurement::Fail("5xx".into()) }, t(20));
    assert_eq!(weights(&out), vec![((255, 0), None)]);
}

#[test]
fn failure_limit_counts_failures_in_total() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    let fail = || Input::Measure { gate: 1, result: Measurement::Fail("p99 120 ms".into()) };
    assert!(weights(&e.handle(fail(), t(20))).is_empty());
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(25));
    assert!(weights(&e.handle(fail(), t(30))).is_empty(), "2 of 3");
    assert_eq!(weights(&e.handle(fail(), t(35))), vec![((100, 0), None)], "a pass in between does not reset the total");
}

#[test]
fn provider_errors_pause_and_never_pass_or_advance() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(12));
    for i in 0..2 {
        let out = e.handle(
            Input::Measure { gate: 0, result: Measurement::Error("DescribeAlarms: cannot reach AWS".into()) },
            t(20 + i),
        );
        assert!(!out.iter().any(|o| matches!(o, Output::Paused(_))));
    }
    assert!(e.handle(Input::Tick, t(500)).is_empty(), "errors are not passes");
    let out = e.handle(
        Input::Measure { gate: 0, result: Measurement::Error("DescribeAlarms: cannot reach AWS".into()) },
        t(501),
    );
    assert!(matches!(&out[..], [Output::Paused(r)] if r.contains("3 errors in a row")), "{out:?}");
    assert_eq!(e.state.phase, RolloutPhase::Paused);
    assert!(weights(&out).is_empty(), "a pause changes no weight");
    assert!(e.handle(Input::Tick, t(9999)).is_empty());
}

#[test]
fn an_error_streak_is_broken_by_a_real_measurement() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    let err = || Input::Measure { gate: 0, result: Measurement::Error("timeout".into()) };
    e.handle(err(), t(20));
    e.handle(err(), t(21));
    e.handle(Input::Measure { gate: 0, result: Measurement::Pass }, t(22));
    e.handle(err(), t(23));
    e.handle(err(), t(24));
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }));
}

#[test]
fn a_gate_whose_last_reading_was_an_error_holds_the_step_until_it_passes_again() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.handle(Input::Measure { gate: 1, result: Measurement::Error("Throttling".into()) }, t(65));
    assert!(e.handle(Input::Tick, t(80)).is_empty(), "soak over, but gate 1 cannot be judged now");
    assert_eq!(e.state.last_good, None);
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(81));
    let out = e.handle(Input::Tick, t(82));
    assert_eq!(e.state.last_good, Some(0));
    assert_eq!(weights(&out), vec![((50, 50), Some(1))]);
}

/// Passing once is not passing now: a gate whose latest reading failed
/// (under its limit) or read no data holds the step past the soak's end.
#[test]
fn a_step_passes_only_on_gates_whose_latest_reading_passed() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0); // soak from t(11) to t(71)
    pass_all(&mut e, 45);
    e.handle(Input::Measure { gate: 1, result: Measurement::Fail("p99 120 ms".into()) }, t(60));
    assert!(weights(&e.handle(Input::Tick, t(80))).is_empty(), "gate 1 (limit 3) failed last");
    assert_eq!(e.state.last_good, None);
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(81));
    assert_eq!(weights(&e.handle(Input::Tick, t(82))), vec![((50, 50), Some(1))]);
    // An alarm gone INSUFFICIENT_DATA after a pass: past the soak's end its
    // policy decides (gate 0: pause), never the earlier pass.
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.handle(Input::Measure { gate: 0, result: Measurement::NoData }, t(60));
    assert!(weights(&e.handle(Input::Tick, t(80))).is_empty(), "gate 0 read no data last");
    assert_eq!(e.state.last_good, None);
    let out = e.handle(Input::Measure { gate: 0, result: Measurement::NoData }, t(81));
    assert!(matches!(&out[..], [Output::Paused(r)] if r.contains("no data")), "{out:?}");
}

#[test]
fn no_data_waits_while_the_soak_runs() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0); // soak from t(11) to t(71)
    let out = e.handle(Input::Measure { gate: 0, result: Measurement::NoData }, t(20));
    assert!(matches!(&out[..], [Output::Log(l)] if l.ends_with("no data yet")), "{out:?}");
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }));
    assert_eq!(e.state.counters[0], GateCounters::default(), "waiting is neither pass nor fail");
}

#[test]
fn no_data_after_the_soak_follows_each_policy() {
    // pause
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    let out = e.handle(Input::Measure { gate: 0, result: Measurement::NoData }, t(80));
    assert!(matches!(&out[..], [Output::Paused(r)] if r.contains("no data")), "{out:?}");
    // pass
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    e.handle(Input::Measure { gate: 1, result: Measurement::NoData }, t(80));
    assert_eq!(e.state.counters[1].passes, 1);
    // fail
    let mut p = plan();
    p.gates[0].no_data = NoDataPolicy::Fail;
    let mut e = Engine::new(p);
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    let out = e.handle(Input::Measure { gate: 0, result: Measurement::NoData }, t(80));
    assert_eq!(weights(&out), vec![((100, 0), None)]);
    assert!(e.state.reason.as_deref().unwrap().contains("no data (policy: fail)"));
}

#[test]
fn resume_after_a_pause_starts_a_fresh_soak_window() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.handle(Input::Pause, t(30));
    assert_eq!(e.state.phase, RolloutPhase::Paused);
    assert_eq!(e.state.paused_at, Some(t(30)), "when it paused: the alarms are read from then on resuming");
    e.handle(Input::Tick, t(500));
    e.handle(Input::Promote, t(600));
    assert_eq!(e.state.paused_at, Some(t(30)), "kept while paused");
    e.handle(Input::Resume, t(1000));
    assert_eq!(e.state.phase, RolloutPhase::Soaking { since: t(1000), until: t(1060) });
    assert_eq!(e.state.paused_at, Some(t(30)), "kept until the gates read the alarms from then");
    assert!(e.handle(Input::Tick, t(1030)).is_empty());
    // Passes from before the pause are not evidence: the soak needs new ones.
    assert!(e.handle(Input::Tick, t(1061)).is_empty());
    pass_all(&mut e, 1062);
    assert!(!weights(&e.handle(Input::Tick, t(1063))).is_empty());
    assert_eq!(e.state.paused_at, None, "the next step's weights sent");
    // Paused before a step's weights were sent: nothing of the step stood.
    e.handle(Input::Pause, t(1064));
    assert_eq!(e.state.paused_at, Some(t(1064)));
    e.handle(Input::Resume, t(1100));
    assert_eq!(e.state.phase, RolloutPhase::Shifting);
    assert_eq!(e.state.paused_at, None);
}

#[test]
fn promote_skips_the_rest_of_the_soak() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    let out = e.handle(Input::Promote, t(15));
    assert_eq!(weights(&out), vec![((50, 50), Some(1))]);
    assert_eq!(e.state.last_good, Some(0));
}

#[test]
fn manual_abort_from_a_pause_and_retry_from_the_failed_step() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.handle(Input::Tick, t(80));
    to_soak(&mut e, 1, 100);
    e.handle(Input::Pause, t(120));
    let out = e.handle(Input::Abort { reason: "on-call: latency looks odd".into() }, t(130));
    assert_eq!(weights(&out), vec![((90, 10), None)]);
    assert_eq!(e.state.reason.as_deref(), Some("on-call: latency looks odd"));
    // The plan is kept: a retry shifts to the step that did not pass.
    let out = e.handle(Input::Start, t(500));
    assert_eq!(weights(&out), vec![((50, 50), Some(1))]);
}

#[test]
fn inputs_that_do_not_apply_change_nothing() {
    let mut e = Engine::new(plan());
    let before = e.state.clone();
    for input in [
        Input::Resume,
        Input::Promote,
        Input::InSync { step: 0 },
        Input::Measure { gate: 0, result: Measurement::Pass },
        Input::Abort { reason: "x".into() },
    ] {
        let out = e.handle(input, t(1));
        assert!(weights(&out).is_empty());
    }
    assert_eq!(e.state, before);
    // Done ignores everything but ticks and says so.
    let mut e = Engine::new(RolloutPlan { steps: vec![100], ..plan() });
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.handle(Input::Tick, t(80));
    assert_eq!(e.state.phase, RolloutPhase::Done);
    assert!(weights(&e.handle(Input::Start, t(90))).is_empty());
    assert!(weights(&e.handle(Input::Abort { reason: "late".into() }, t(90))).is_empty());
    // A measurement for a gate that does not exist is logged, not a panic.
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    assert!(matches!(&e.handle(Input::Measure { gate: 9, result: Measurement::Pass }, t(20))[..], [Output::Log(_)]));
}

#[test]
fn rollback_never_uses_a_step_the_plan_no_longer_has() {
    let mut e = Engine::new(plan());
    e.state.last_good = Some(7);
    assert_eq!(e.rollback_weights(), (100, 0));
    assert_eq!(e.plan.weights_at(9), (100, 0));
}

/// A gate on live state read once, at the soak's start (an interval as long
/// as the soak), says nothing of the rest of it: the step waits for a pass
/// read in the soak's second half.
#[test]
fn a_live_gate_read_only_at_the_soaks_start_does_not_pass_the_step() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0); // soaking 11..71
    pass_all(&mut e, 12);
    assert!(weights(&e.handle(Input::Tick, t(75))).is_empty(), "passed on readings from the soak's start");
    assert_eq!(e.state.last_good, None);
    pass_all(&mut e, 76);
    assert_eq!(weights(&e.handle(Input::Tick, t(77))), vec![((50, 50), Some(1))]);
}

/// A saved state edited by hand under the same plan hash: a step past the
/// plan's would be sent as 0% and panic, counters for other gates would be
/// indexed out of bounds. Told before any engine runs on it.
#[test]
fn a_saved_state_that_does_not_fit_the_plan_is_named() {
    let fits = EngineState::new(2);
    assert_eq!(fits.misfit(&plan()), None);
    let past = EngineState { step: 7, ..EngineState::new(2) };
    assert_eq!(past.misfit(&plan()).as_deref(), Some("it is at step 8 of a plan with 3"));
    let good = EngineState { last_good: Some(usize::MAX), ..EngineState::new(2) };
    assert!(good.misfit(&plan()).is_some_and(|w| w.starts_with("its last good step is")));
    assert_eq!(EngineState::new(0).misfit(&plan()).as_deref(), Some("it counts readings for 0 gates of a plan with 2"));
}

#[test]
fn state_round_trips_through_json_for_resume() {
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    e.handle(Input::Measure { gate: 0, result: Measurement::Pass }, t(45));
    let json = serde_json::to_string(&e.state).unwrap();
    let back: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e.state);
    let mut resumed = Engine { plan: plan(), state: back };
    resumed.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(50));
    assert!(!weights(&resumed.handle(Input::Tick, t(80))).is_empty());
    // A restart mid-soak starts a fresh window with fresh counters.
    let mut e = Engine::new(plan());
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    pass_all(&mut e, 45);
    e.start_soak(t(5000));
    assert!(e.state.counters.iter().all(|c| c.passes == 0));
    assert!(e.handle(Input::Tick, t(5061)).is_empty(), "old passes do not finish the step");
}

mod properties {
    //! Random input sequences: whatever arrives, in whatever order, the
    //! engine never sends a weight its plan does not contain, never passes a
    //! step whose gates did not all pass, and keeps its counters in bounds.
    use proptest::prelude::*;
    use proptest::test_runner::{TestCaseError, TestRunner};

    use super::*;

    fn measurement() -> impl Strategy<Value = Measurement> {
        prop_oneof![
            24 => Just(Measurement::Pass),
            1 => Just(Measurement::Fail("bad".into())),
            1 => Just(Measurement::NoData),
            1 => Just(Measurement::Error("down".into())),
        ]
    }

    /// Stands for the engine's step at the time, so sequences get deep.
    const CURRENT: usize = usize::MAX;

    /// Mostly the step the engine is on, sometimes any other.
    fn step() -> impl Strategy<Value = usize> {
        prop_oneof![1 => 0usize..4, 3 => Just(CURRENT)]
    }

    fn input() -> impl Strategy<Value = (Input, u64)> {
        let i = prop_oneof![
            8 => Just(Input::Tick),
            3 => Just(Input::Start),
            4 => step().prop_map(|step| Input::ShiftApplied { step, change_id: "C".into() }),
            4 => step().prop_map(|step| Input::InSync { step }),
            12 => (0usize..3, measurement()).prop_map(|(gate, result)| Input::Measure { gate, result }),
            // Datapoints reaching `lag` seconds before now (filled in below).
            6 => (0usize..3, measurement(), 0u64..90).prop_map(|(gate, result, lag)| Input::MeasureCovering {
                gate,
                result,
                covers: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(lag))
            }),
            1 => Just(Input::Pause),
            2 => Just(Input::Resume),
            1 => Just(Input::Promote),
            1 => Just(Input::Abort { reason: "r".into() }),
        ];
        // Time moves on by 0–40 s between inputs.
        (i, 0u64..40)
    }

    #[test]
    fn any_input_sequence_keeps_the_engine_safe() {
        let cases = 512;
        let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
        let inputs_seen = std::sync::atomic::AtomicUsize::new(0);
        let gated_passes = std::sync::atomic::AtomicUsize::new(0);
        let property = |inputs: Vec<(Input, u64)>| -> Result<(), TestCaseError> {
            inputs_seen.fetch_add(inputs.len(), std::sync::atomic::Ordering::Relaxed);
            // Gate 1 reads lagging datapoints.
            let mut p = plan();
            p.gates[1].settle = Some(Duration::from_secs(60));
            let allowed: Vec<Weights> = (0..p.steps.len()).map(|s| p.weights_at(s)).chain([p.initial]).collect();
            let mut e = Engine::new(p.clone());
            let mut now = 0;
            for (input, dt) in inputs {
                now += dt;
                let input = match input {
                    Input::ShiftApplied { step: CURRENT, change_id } => {
                        Input::ShiftApplied { step: e.state.step, change_id }
                    }
                    Input::InSync { step: CURRENT } => Input::InSync { step: e.state.step },
                    Input::MeasureCovering { gate, result, covers } => {
                        let lag =
                            covers.and_then(|c| c.duration_since(SystemTime::UNIX_EPOCH).ok()).unwrap_or_default();
                        Input::MeasureCovering { gate, result, covers: Some(t(now) - lag) }
                    }
                    other => other,
                };
                let before = e.state.clone();
                let promoted = matches!(input, Input::Promote);
                let out = e.handle(input, t(now));
                for o in &out {
                    if let Output::SetWeights { weights, step } = o {
                        prop_assert!(allowed.contains(weights), "weights {weights:?} not in the plan");
                        if let Some(s) = step {
                            prop_assert_eq!(*weights, p.weights_at(*s));
                        }
                    }
                    if let Output::Aborted { weights, .. } = o {
                        prop_assert_eq!(*weights, e.rollback_weights());
                    }
                }
                // A step is recorded good only by its soak with every gate passed, or a person's promotion.
                if e.state.last_good != before.last_good && !promoted {
                    gated_passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    prop_assert!(
                        matches!(before.phase, RolloutPhase::Soaking { .. }),
                        "passed from {:?}",
                        before.phase
                    );
                    prop_assert!(
                        before.counters.iter().all(|c| c.passes > 0 && c.passing && c.consecutive_errors == 0),
                        "passed without every gate passing last: {:?}",
                        before.counters
                    );
                    if let RolloutPhase::Soaking { until, .. } = before.phase {
                        prop_assert!(
                            before.counters[1].covered >= Some(until),
                            "passed before gate 1's data covered the soak's end: {:?}",
                            before.counters[1]
                        );
                    }
                }
                if let Some(g) = e.state.last_good {
                    prop_assert!(g < p.steps.len());
                }
                // Below its limit, or the engine has stopped (aborted or paused).
                for (c, spec) in e.state.counters.iter().zip(&p.gates) {
                    let stopped = matches!(e.state.phase, RolloutPhase::Aborted | RolloutPhase::Paused);
                    prop_assert!(c.failures < spec.failure_limit || stopped, "{c:?} while {:?}", e.state.phase);
                    prop_assert!(
                        c.consecutive_errors < spec.consecutive_error_limit || stopped,
                        "{c:?} while {:?}",
                        e.state.phase
                    );
                }
                prop_assert!(e.state.counters.len() == p.gates.len());
                if e.state.phase == RolloutPhase::Done {
                    prop_assert_eq!(e.state.last_good, Some(p.steps.len() - 1));
                }
            }
            Ok(())
        };
        let strategy = proptest::collection::vec(input(), 1..200);
        if let Err(e) = TestRunner::new(config).run(&strategy, property) {
            panic!("{e}");
        }
        // The sequences must reach passing steps often, or the checks above prove little.
        let passes = gated_passes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(passes >= cases as usize / 8, "only {passes} steps passed by their gates in {cases} sequences");
        crate::reliability::record(
            "properties",
            format!(
                "The rollout engine fed {cases} random sequences of 1–199 inputs ({} in all: ticks, starts, \
                 measurements, INSYNC, pause, resume, promote, abort, with time moving on): never a weight outside \
                 the plan; {passes} steps passed by their gates, each only after every gate passed with no error \
                 since and the lagging gate's data covered the soak's end; counters within their limits",
                inputs_seen.load(std::sync::atomic::Ordering::Relaxed)
            ),
        );
    }
}

/// Gate 0 reads lagging datapoints (settle 120 s) with `no_data`; gate 1
/// reads live state. The soak of step 1 runs t(11)..t(71).
fn lagging(no_data: NoDataPolicy) -> Engine {
    let mut p = plan();
    p.gates[0].settle = Some(Duration::from_secs(120));
    p.gates[0].no_data = no_data;
    let mut e = Engine::new(p);
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    e.handle(Input::Measure { gate: 1, result: Measurement::Pass }, t(45));
    e
}

fn covering(e: &mut Engine, result: Measurement, covers: u64, at: u64) -> Vec<Output> {
    e.handle(Input::MeasureCovering { gate: 0, result, covers: Some(t(covers)) }, t(at))
}

#[test]
fn a_gate_on_lagging_datapoints_holds_the_step_until_a_pass_covers_the_soak_end() {
    let mut e = lagging(NoDataPolicy::Pause);
    covering(&mut e, Measurement::Pass, 50, 20);
    assert!(e.handle(Input::Tick, t(72)).is_empty(), "soak time over, but its data reaches only t(50)");
    assert_eq!(e.state.last_good, None);
    // No data after the soak, its end not covered yet: a wait, not the pause policy.
    covering(&mut e, Measurement::NoData, 60, 80);
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "{:?}", e.state.phase);
    covering(&mut e, Measurement::Pass, 72, 90);
    e.handle(Input::Tick, t(91));
    assert_eq!(e.state.last_good, Some(0), "passed once its data covered the soak's end");
}

#[test]
fn a_failure_in_datapoints_arriving_after_the_soak_still_aborts_the_step() {
    let mut e = lagging(NoDataPolicy::Pass);
    covering(&mut e, Measurement::Pass, 50, 20);
    e.handle(Input::Tick, t(72));
    let out = covering(&mut e, Measurement::Fail("5xx = 7".into()), 72, 100);
    assert_eq!(e.state.phase, RolloutPhase::Aborted, "{out:?}");
    assert_eq!(weights(&out), vec![((100, 0), None)]);
}

/// A failure under the limit in datapoints that reach the soak's end (or
/// that stop short of it): neither the settle time running out nor a
/// no-data reading lets the `no_data = "pass"` policy pass the step in its
/// place. Within the settle time it waits; after it, a person decides (a
/// pause, never a soak that waits for ever). A passing reading on data
/// passes it.
#[test]
fn a_failing_reading_is_never_passed_over_by_the_no_data_policy() {
    let tolerant = || {
        let mut e = lagging(NoDataPolicy::Pass);
        e.plan.gates[0].failure_limit = 3;
        covering(&mut e, Measurement::Pass, 50, 20);
        e.handle(Input::Tick, t(72));
        e
    };
    for reaches in [72, 65] {
        let mut e = tolerant();
        covering(&mut e, Measurement::Fail("5xx = 7".into()), reaches, 150);
        assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "1 failure of 3: {:?}", e.state.phase);
        // No data after it, within the settle time: a wait.
        covering(&mut e, Measurement::NoData, 72, 160);
        e.handle(Input::Tick, t(161));
        assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "{:?}", e.state.phase);
        assert_eq!(e.state.last_good, None, "no data does not outweigh data that failed");
        // Then a pass on data reaching the soak's end passes it.
        let mut passed = Engine { plan: e.plan.clone(), state: e.state.clone() };
        covering(&mut passed, Measurement::Pass, 72, 170);
        passed.handle(Input::Tick, t(171));
        assert_eq!(passed.state.last_good, Some(0), "a pass on data reaching the soak's end");
        // Or the settle time runs out: a person decides, the step not passed.
        let out = e.handle(Input::Tick, t(192));
        e.handle(Input::Tick, t(193));
        assert_eq!(e.state.last_good, None, "data reaching t({reaches}) failed: {out:?}");
        assert_eq!(e.state.phase, RolloutPhase::Paused, "{out:?}");
        assert!(e.state.reason.as_deref().is_some_and(|r| r.contains("its latest reading failed")), "{out:?}");
    }
    // A gate without settle: no data after a failure, once the soak is over, pauses.
    let mut p = plan();
    p.gates[1].failure_limit = 3;
    let mut e = Engine::new(p);
    e.handle(Input::Start, t(0));
    to_soak(&mut e, 0, 0);
    e.handle(Input::Measure { gate: 0, result: Measurement::Pass }, t(45));
    e.handle(Input::Measure { gate: 1, result: Measurement::Fail("down".into()) }, t(30));
    e.handle(Input::Measure { gate: 1, result: Measurement::NoData }, t(80));
    e.handle(Input::Tick, t(81));
    assert_eq!(e.state.last_good, None);
    assert_eq!(e.state.phase, RolloutPhase::Paused, "{:?}", e.state.reason);
}

/// An alarm that went ALARM and then INSUFFICIENT_DATA (its missing data
/// treated as missing), under `insufficient_data = "pass"` and a failure
/// limit above one: the chosen pass stands in for data that did not come,
/// never for data that failed. The step is not passed; once the settle time
/// is over a person decides. Without a failure it passes as chosen.
#[test]
fn an_alarm_taken_as_ok_without_data_never_passes_over_its_alarm() {
    let without_data = || Measurement::PassWithoutData("alarm a is INSUFFICIENT_DATA".into());
    let mut e = lagging(NoDataPolicy::Fail);
    e.plan.gates[0].failure_limit = 2;
    covering(&mut e, Measurement::Fail("alarm a is ALARM".into()), 40, 30);
    covering(&mut e, without_data(), 72, 80);
    e.handle(Input::Tick, t(81));
    assert_eq!(e.state.last_good, None, "INSUFFICIENT_DATA after ALARM passed the step");
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "{:?}", e.state.phase);
    // The settle time over, the no-data policy decides: here one more failure, the limit.
    covering(&mut e, without_data(), 72, 190);
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "{:?}", e.state.phase);
    let out = e.handle(Input::Tick, t(192));
    assert_eq!(e.state.phase, RolloutPhase::Aborted, "{out:?}");
    assert_eq!(e.state.last_good, None);
    // Its soak's end covered by an earlier pass, the settle time does not
    // decide for it: a person does.
    let mut e = lagging(NoDataPolicy::Fail);
    e.plan.gates[0].failure_limit = 3;
    covering(&mut e, Measurement::Fail("alarm a is ALARM".into()), 40, 30);
    covering(&mut e, Measurement::Pass, 72, 80);
    covering(&mut e, Measurement::Fail("alarm a is ALARM".into()), 72, 85);
    e.handle(Input::Tick, t(192));
    let out = covering(&mut e, without_data(), 72, 200);
    assert_eq!(e.state.phase, RolloutPhase::Paused, "{out:?}");
    assert!(e.state.reason.as_deref().is_some_and(|r| r.contains("INSUFFICIENT_DATA, and its latest reading failed")));
    // An OK on data clears it.
    let mut e = lagging(NoDataPolicy::Fail);
    e.plan.gates[0].failure_limit = 2;
    covering(&mut e, Measurement::Fail("alarm a is ALARM".into()), 40, 30);
    covering(&mut e, Measurement::Pass, 72, 80);
    e.handle(Input::Tick, t(81));
    assert_eq!(e.state.last_good, Some(0));
    // No failure: the runbook's choice passes it, whatever the no-data policy.
    let mut e = lagging(NoDataPolicy::Fail);
    covering(&mut e, without_data(), 72, 80);
    e.handle(Input::Tick, t(81));
    assert_eq!(e.state.last_good, Some(0));
}

#[test]
fn no_data_covering_the_soak_end_follows_the_policy_at_once() {
    let mut e = lagging(NoDataPolicy::Pass);
    covering(&mut e, Measurement::NoData, 72, 80);
    e.handle(Input::Tick, t(81));
    assert_eq!(e.state.last_good, Some(0), "no 5xx through the soak's end: policy pass");
    let mut e = lagging(NoDataPolicy::Pause);
    covering(&mut e, Measurement::NoData, 72, 80);
    assert_eq!(e.state.phase, RolloutPhase::Paused);
}

#[test]
fn data_that_never_covers_the_soak_end_follows_the_no_data_policy_once_settle_is_over() {
    for policy in [NoDataPolicy::Pass, NoDataPolicy::Fail, NoDataPolicy::Pause] {
        let mut e = lagging(policy);
        covering(&mut e, Measurement::Pass, 50, 20);
        assert!(e.handle(Input::Tick, t(190)).is_empty(), "{policy:?}: settle runs to t(191)");
        let out = e.handle(Input::Tick, t(192));
        match policy {
            NoDataPolicy::Pass => {
                e.handle(Input::Tick, t(193));
                assert_eq!(e.state.last_good, Some(0), "{out:?}");
            }
            NoDataPolicy::Fail => assert_eq!(e.state.phase, RolloutPhase::Aborted, "{out:?}"),
            NoDataPolicy::Pause => assert_eq!(e.state.phase, RolloutPhase::Paused, "{out:?}"),
        }
        assert!(format!("{out:?}").contains("no reading covering the soak's end within 120 s"), "{out:?}");
    }
}

#[test]
fn gates_on_live_state_have_no_settle_metric_gates_default_to_three_minutes_and_alarm_gates_wait_their_lag() {
    let rb =
        crate::runbook::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks/demo.toml"))).unwrap();
    let p = RolloutPlan::from_runbook(&rb).unwrap();
    let settles: Vec<Option<u64>> = p.gates.iter().map(|g| g.settle.map(|d| d.as_secs())).collect();
    // The alarm gate: its 3 s lag, then a minute for the poll that reads past it.
    assert_eq!(settles, [Some(63), None, None, Some(180), Some(180), Some(180)]);
}

#[test]
fn every_phase_is_shown_by_the_name_its_json_carries() {
    let t = SystemTime::UNIX_EPOCH;
    for p in [
        RolloutPhase::Idle,
        RolloutPhase::Shifting,
        RolloutPhase::WaitingInsync,
        RolloutPhase::WaitingTtl { until: t },
        RolloutPhase::Soaking { since: t, until: t },
        RolloutPhase::Paused,
        RolloutPhase::RollingBack,
        RolloutPhase::Aborted,
        RolloutPhase::Done,
    ] {
        assert_eq!(serde_json::to_value(p).unwrap()["phase"], p.name(), "{p:?}");
    }
}

#[test]
fn the_last_step_bakes_with_its_gates_running_and_a_failure_in_the_bake_rolls_back() {
    let baked = || RolloutPlan { bake: Duration::from_secs(3600), ..plan() };
    // Steps 1 and 2 soak their 60 s; the last is soaking at 220 s.
    let to_last_step = || {
        let mut e = Engine::new(baked());
        e.handle(Input::Start, t(0));
        for (step, at) in [(0, 0), (1, 100)] {
            to_soak(&mut e, step, at);
            pass_all(&mut e, at + 45);
            e.handle(Input::Tick, t(at + 72));
            assert_eq!(e.state.last_good, Some(step), "the other steps soak 60 s");
        }
        to_soak(&mut e, 2, 200);
        pass_all(&mut e, 220);
        e
    };
    let mut e = to_last_step();
    assert!(e.handle(Input::Tick, t(300)).is_empty(), "a soak's time is not a bake's");
    assert!(e.handle(Input::Tick, t(3000)).is_empty());
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }));
    let out = e.handle(Input::Measure { gate: 0, result: Measurement::Fail("5xx during the bake".into()) }, t(3100));
    assert_eq!(e.state.phase, RolloutPhase::Aborted);
    assert_eq!(weights(&out), vec![(plan().weights_at(1), None)], "back to the last good step");

    let mut e = to_last_step();
    pass_all(&mut e, 3800);
    let out = e.handle(Input::Tick, t(3812));
    assert!(out.contains(&Output::Done), "complete once the bake is over: {out:?}");
}

/// `no_data = "fail"` under its failure limit counts a failure for the data
/// covering the soak's end that did not come; it does not stand in for that
/// data: a later pass on data still short of the end does not pass the
/// step, and each settle time more without it counts another failure.
#[test]
fn a_no_data_failure_under_the_limit_does_not_cover_the_soaks_end() {
    let mut e = lagging(NoDataPolicy::Fail);
    e.plan.gates[0].failure_limit = 2;
    covering(&mut e, Measurement::Pass, 50, 20);
    let out = e.handle(Input::Tick, t(192));
    assert!(format!("{out:?}").contains("failed (1/2)"), "{out:?}");
    assert!(matches!(e.state.phase, RolloutPhase::Soaking { .. }), "{:?}", e.state.phase);
    // A pass on data that still ends before the soak's end (t(72)).
    covering(&mut e, Measurement::Pass, 60, 195);
    e.handle(Input::Tick, t(196));
    assert_eq!(e.state.last_good, None, "passed on data short of the soak's end");
    assert!(e.handle(Input::Tick, t(300)).is_empty(), "the next failure waits a settle time");
    e.handle(Input::Tick, t(313));
    assert_eq!(e.state.phase, RolloutPhase::Aborted);
    // Data covering the end, in time: the step passes.
    let mut e = lagging(NoDataPolicy::Fail);
    e.plan.gates[0].failure_limit = 2;
    e.handle(Input::Tick, t(192));
    covering(&mut e, Measurement::Pass, 72, 200);
    e.handle(Input::Tick, t(201));
    assert_eq!(e.state.last_good, Some(0));
}
