//! Live data: workers poll each source on their own schedule and send
//! timestamped results into one channel; `update` folds them into
//! `LiveState`, keeping the last good value (marked stale) when a poll fails.

pub mod fetch;
pub mod parity;
pub mod probe;
pub mod workers;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::aws::cloudwatch::{AlarmState, Series};
use crate::aws::sts::Identity;
use crate::runbook::Side;
pub use fetch::{EnvironmentData, HealthProbe, NodePing, RedisInfo, TrafficData};

/// How one side is reached, as its clients were built.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SideReach {
    pub region: String,
    /// How its credentials are got (`profile prod, role arn:…`).
    pub via: String,
}

/// A source's latest good value and the outcome of its latest poll.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: Option<T>,
    pub updated_at: Option<SystemTime>,
    /// The latest poll's error; the value, if any, is then stale.
    pub error: Option<String>,
    pub error_at: Option<SystemTime>,
}

impl<T> Default for Sourced<T> {
    fn default() -> Self {
        Self { value: None, updated_at: None, error: None, error_at: None }
    }
}

impl<T> Sourced<T> {
    pub fn apply<E: ToString>(&mut self, at: SystemTime, result: Result<T, E>) {
        match result {
            Ok(v) => {
                self.value = Some(v);
                self.updated_at = Some(at);
                self.error = None;
                self.error_at = None;
            }
            Err(e) => {
                self.error = Some(e.to_string());
                self.error_at = Some(at);
            }
        }
    }

    pub fn is_stale(&self) -> bool {
        self.error.is_some()
    }

    /// Polled at least once, successfully or not.
    pub fn has_reported(&self) -> bool {
        self.updated_at.is_some() || self.error_at.is_some()
    }

    /// When the latest poll began, successfully or not (what it read is at
    /// least that old).
    pub fn last_outcome(&self) -> Option<SystemTime> {
        self.updated_at.max(self.error_at)
    }
}

#[derive(Debug, Clone)]
pub enum Update {
    Identity(Result<Identity, String>),
    /// One side's identity (GetCallerIdentity with its credentials).
    Side {
        side: Side,
        reach: SideReach,
        result: Result<Identity, String>,
    },
    Traffic(Result<TrafficData, String>),
    Environment {
        environment: String,
        result: Result<EnvironmentData, String>,
    },
    /// One instance's /health; "not probed" is a value, not an error.
    Health {
        instance_id: String,
        result: Result<HealthProbe, String>,
    },
    Redis {
        endpoint: String,
        result: Result<RedisInfo, String>,
    },
    Alarms(Result<Vec<AlarmState>, String>),
    Metrics(Result<Vec<Series>, String>),
    /// Every environment's shape, for the parity and readiness checks.
    Shapes(Result<parity::Shapes, String>),
    /// Team mode: the shared checklist, the lease and who else is here.
    Team(Result<TeamView, String>),
}

/// What the team's shared store says now.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamView {
    /// `s3://bucket/prefix`.
    pub store: String,
    pub checklist: crate::store::checklist::ChecklistState,
    /// The rollout's lease, if anyone holds it (expired or not).
    pub lease: Option<crate::store::lease::LeaseRecord>,
    /// Everyone else with the runbook open, newest first.
    pub present: Vec<crate::store::team::Presence>,
    /// When the poll began (monotonic: a clock stepped back must not hide
    /// polls): a checklist saved here after it may be missing.
    pub read_at: std::time::Instant,
}

/// Which source an update is of (one value shown on screen), whatever it says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Identity,
    Side(Side),
    Traffic,
    Environment(String),
    Health(String),
    Redis(String),
    Alarms,
    Metrics,
    Shapes,
    Team,
}

impl Update {
    pub fn source(&self) -> Source {
        match self {
            Update::Identity(_) => Source::Identity,
            Update::Side { side, .. } => Source::Side(side.clone()),
            Update::Traffic(_) => Source::Traffic,
            Update::Environment { environment, .. } => Source::Environment(environment.clone()),
            Update::Health { instance_id, .. } => Source::Health(instance_id.clone()),
            Update::Redis { endpoint, .. } => Source::Redis(endpoint.clone()),
            Update::Alarms(_) => Source::Alarms,
            Update::Metrics(_) => Source::Metrics,
            Update::Shapes(_) => Source::Shapes,
            Update::Team(_) => Source::Team,
        }
    }

    /// The same source, failed with `error` (a worker that panicked reports
    /// this for what it last reported, so its values go stale, not silent).
    pub fn failed(&self, error: &str) -> Update {
        fn e<T>(error: &str) -> Result<T, String> {
            Err(error.to_string())
        }
        match self {
            Update::Identity(_) => Update::Identity(e(error)),
            Update::Side { side, reach, .. } => {
                Update::Side { side: side.clone(), reach: reach.clone(), result: e(error) }
            }
            Update::Traffic(_) => Update::Traffic(e(error)),
            Update::Environment { environment, .. } => {
                Update::Environment { environment: environment.clone(), result: e(error) }
            }
            Update::Health { instance_id, .. } => Update::Health { instance_id: instance_id.clone(), result: e(error) },
            Update::Redis { endpoint, .. } => Update::Redis { endpoint: endpoint.clone(), result: e(error) },
            Update::Alarms(_) => Update::Alarms(e(error)),
            Update::Metrics(_) => Update::Metrics(e(error)),
            Update::Shapes(_) => Update::Shapes(e(error)),
            Update::Team(_) => Update::Team(e(error)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub at: SystemTime,
    pub update: Update,
}

impl LiveEvent {
    pub fn now(update: Update) -> Self {
        Self { at: SystemTime::now(), update }
    }
}

#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub identity: Sourced<Identity>,
    /// Each side's reach and identity.
    pub sides: BTreeMap<Side, (SideReach, Sourced<Identity>)>,
    pub traffic: Sourced<TrafficData>,
    pub environments: BTreeMap<String, Sourced<EnvironmentData>>,
    pub health: BTreeMap<String, Sourced<HealthProbe>>,
    pub redis: BTreeMap<String, Sourced<RedisInfo>>,
    pub alarms: Sourced<Vec<AlarmState>>,
    pub metrics: Sourced<Vec<Series>>,
    /// Read only when a check needs it (`Runbook::reads_shapes`).
    pub shapes: Sourced<parity::Shapes>,
    /// Only in team mode (a shared store).
    pub team: Sourced<TeamView>,
}

pub fn update(state: &mut LiveState, event: LiveEvent) {
    let at = event.at;
    match event.update {
        Update::Identity(r) => state.identity.apply(at, r),
        Update::Side { side, reach, result } => {
            let entry = state.sides.entry(side).or_insert_with(|| (reach.clone(), Sourced::default()));
            entry.0 = reach;
            entry.1.apply(at, result)
        }
        Update::Traffic(r) => {
            // A reading shared by the team is as old as its reading, not its delivery.
            let read_at = r.as_ref().ok().and_then(|d| d.shared_by.as_ref()).map(|s| s.read_at);
            state.traffic.apply(read_at.unwrap_or(at), r)
        }
        Update::Team(r) => state.team.apply(at, r),
        Update::Environment { environment, result } => {
            state.environments.entry(environment).or_default().apply(at, result)
        }
        Update::Health { instance_id, result } => state.health.entry(instance_id).or_default().apply(at, result),
        Update::Redis { endpoint, mut result } => {
            let src = state.redis.entry(endpoint).or_default();
            // Lookups since the last good reading: the hit rate of now, not of the server's history.
            if let (Ok(now), Some(before), Some(then)) = (&mut result, &src.value, src.updated_at) {
                let seconds = at.duration_since(then).unwrap_or_default().as_secs_f64();
                now.lookups = crate::analysis::hit_rate::Lookups::between_servers(
                    &before.lookup_counters,
                    &now.lookup_counters,
                    seconds,
                );
            }
            src.apply(at, result)
        }
        Update::Alarms(r) => state.alarms.apply(at, r),
        Update::Metrics(r) => state.metrics.apply(at, r),
        Update::Shapes(r) => state.shapes.apply(at, r),
    }
}

impl LiveState {
    /// Every source the runbook implies has reported at least once.
    pub fn complete(&self, rb: &crate::runbook::Runbook) -> bool {
        let envs_done = rb.environments.keys().all(|e| self.environments.get(e).is_some_and(Sourced::has_reported));
        let instances: Vec<&str> = self
            .environments
            .values()
            .filter_map(|s| s.value.as_ref())
            .flat_map(|d| d.instances.iter().map(|i| i.id.as_str()))
            .collect();
        let health_done = instances.iter().all(|id| self.health.get(*id).is_some_and(Sourced::has_reported));
        let redis_done = rb.redis_endpoints().all(|(_, r)| self.redis.get(&r.name).is_some_and(Sourced::has_reported));
        // A hit rate needs two readings: the lookups between them.
        let hit_rates_done = rb
            .phases
            .iter()
            .flat_map(|p| &p.items)
            .filter_map(|i| match &i.kind {
                crate::runbook::ItemKind::Check { check: crate::runbook::Check::RedisHitRate { redis, .. } } => {
                    Some(redis)
                }
                _ => None,
            })
            .all(|n| {
                self.redis.get(n).is_some_and(|s| s.is_stale() || s.value.as_ref().is_some_and(|v| v.lookups.is_some()))
            });
        let sides_done = !rb.has_side_access()
            || rb.sides().iter().all(|s| self.sides.get(s).is_some_and(|(_, i)| i.has_reported()));
        self.identity.has_reported()
            && sides_done
            && self.traffic.has_reported()
            && envs_done
            && health_done
            && redis_done
            && hit_rates_done
            && self.alarms.has_reported()
            && self.metrics.has_reported()
            && (!rb.reads_shapes() || self.shapes.has_reported())
    }
}

/// The workers, their channel and the state they feed: the single state owner.
pub struct Session {
    pub state: LiveState,
    pub workers: workers::Workers,
    rx: tokio::sync::mpsc::Receiver<LiveEvent>,
}

impl Session {
    pub fn start(ctx: std::sync::Arc<workers::WorkerContext>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let workers = workers::spawn(ctx, tx);
        Self { state: LiveState::default(), workers, rx }
    }

    /// Applies events until `deadline`.
    pub async fn run_until(&mut self, deadline: tokio::time::Instant) {
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            update(&mut self.state, ev);
        }
    }

    /// Applies events until every source has reported once, or `limit` passes.
    pub async fn first_round(&mut self, rb: &crate::runbook::Runbook, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.state.complete(rb) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) => update(&mut self.state, ev),
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failure_keeps_last_good_value_and_marks_it_stale() {
        let mut s: Sourced<u32> = Sourced::default();
        assert!(!s.has_reported());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        s.apply::<String>(t0, Ok(7));
        assert_eq!((s.value, s.is_stale()), (Some(7), false));
        let t1 = t0 + Duration::from_secs(10);
        s.apply(t1, Err("cannot reach AWS"));
        assert_eq!(s.value, Some(7), "last good value kept");
        assert!(s.is_stale());
        assert_eq!(s.updated_at, Some(t0));
        assert_eq!(s.error.as_deref(), Some("cannot reach AWS"));
        s.apply::<String>(t1 + Duration::from_secs(5), Ok(8));
        assert_eq!((s.value, s.is_stale(), s.error_at), (Some(8), false, None));
    }

    #[test]
    fn error_before_any_value_has_reported_but_no_value() {
        let mut s: Sourced<u32> = Sourced::default();
        s.apply(SystemTime::now(), Err("down"));
        assert!(s.has_reported());
        assert!(s.value.is_none());
    }

    #[test]
    fn update_routes_each_event_to_its_source() {
        let mut st = LiveState::default();
        update(&mut st, LiveEvent::now(Update::Redis { endpoint: "a".into(), result: Err("timed out".into()) }));
        update(&mut st, LiveEvent::now(Update::Alarms(Ok(vec![]))));
        update(&mut st, LiveEvent::now(Update::Traffic(Err("Throttling: Rate exceeded".into()))));
        assert!(st.redis["a"].is_stale());
        assert!(st.alarms.value.is_some() && !st.alarms.is_stale());
        assert!(st.traffic.value.is_none() && st.traffic.is_stale());
        assert!(st.identity.updated_at.is_none());
    }
}
