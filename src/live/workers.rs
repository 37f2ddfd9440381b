//! One tokio task per source, each on its own interval, all sending into one
//! channel. A slow or failing source never delays another. Throttling backs
//! off exponentially with jitter; `refresh` wakes every worker at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{LiveEvent, Update, fetch};
use crate::aws::cloudwatch::{SeriesKey, default_series};
use crate::aws::ec2::Instance;
use crate::aws::elb::arn_suffix;
use crate::aws::{AwsError, AwsErrorKind, SideClients};
use crate::live::probe::ProbePolicy;
use crate::runbook::Runbook;

#[derive(Debug, Clone)]
pub struct Intervals {
    pub identity: Duration,
    pub traffic: Duration,
    pub environment: Duration,
    pub health: Duration,
    pub redis: Duration,
    pub alarms: Duration,
    pub metrics: Duration,
    /// Shapes for the parity and readiness checks and the Parity pane: they
    /// change rarely (a refresh reads them at once).
    pub shapes: Duration,
    /// Team mode: the shared checklist, the lease and presence.
    pub team: Duration,
    /// How far back metrics go.
    pub metrics_window: Duration,
}

impl Default for Intervals {
    /// Well inside AWS limits (Route53 allows about 5 requests/s per account).
    fn default() -> Self {
        Self {
            identity: Duration::from_secs(300),
            traffic: Duration::from_secs(5),
            environment: Duration::from_secs(10),
            health: Duration::from_secs(5),
            redis: Duration::from_secs(5),
            alarms: Duration::from_secs(15),
            metrics: Duration::from_secs(30),
            shapes: Duration::from_secs(60),
            team: Duration::from_secs(3),
            metrics_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Delay before the next poll: the interval, doubled per consecutive
/// throttle up to 5 minutes, times a jitter factor in [0.5, 1.5).
pub fn next_delay(interval: Duration, throttles: u32, jitter: f64) -> Duration {
    let cap = Duration::from_secs(300).max(interval);
    let base = if throttles == 0 { interval } else { interval.saturating_mul(1 << throttles.min(16)).min(cap) };
    if throttles == 0 { base } else { base.mul_f64(0.5 + jitter.clamp(0.0, 1.0)) }
}

pub struct WorkerContext {
    pub rb: Arc<Runbook>,
    /// The clients of each side (`[dns]`, each environment).
    pub clients: SideClients,
    pub http: reqwest::Client,
    pub policy: ProbePolicy,
    /// Variables that win over the process environment (a sandbox's Redis URLs).
    pub vars: BTreeMap<String, String>,
    pub intervals: Intervals,
    /// Team mode: use the weights another machine read (watchers). A rollout
    /// never does: its gates judge only what it read itself; it publishes.
    pub use_shared_readings: bool,
    /// Read the sides' shapes even when no check needs them: the cockpit's
    /// Parity pane shows them.
    pub read_shapes: bool,
    /// Team mode: claim and publish the weights for the team (false under
    /// `--read-only`, which writes nothing shared).
    pub publish_readings: bool,
    /// Whether the `[dns]` credentials are in the runbook's account for
    /// them, once STS said: only then is a reading published for the team.
    dns_account_confirmed: std::sync::OnceLock<bool>,
    /// When STS last failed to say it: not asked again for a minute, so an
    /// STS outage does not hold every weights reading up.
    dns_account_failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl WorkerContext {
    pub fn new(rb: Runbook, clients: SideClients, policy: ProbePolicy) -> Self {
        let http = fetch::health_client();
        Self {
            rb: Arc::new(rb),
            clients,
            http,
            policy,
            vars: BTreeMap::new(),
            intervals: Intervals::default(),
            use_shared_readings: true,
            read_shapes: false,
            publish_readings: true,
            dns_account_confirmed: std::sync::OnceLock::new(),
            dns_account_failed_at: std::sync::Mutex::new(None),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned().or_else(|| std::env::var(name).ok()).filter(|v| !v.is_empty())
    }
}

/// The running workers; dropping this stops them.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    /// Bumped to ask every source for a poll begun after now.
    pub refresh: Arc<watch::Sender<u64>>,
}

impl Workers {
    /// Polls every source now instead of at its next interval; a worker in
    /// the middle of a poll polls again once it is done (its reading may
    /// come from before this).
    pub fn refresh_now(&self) {
        self.refresh.send_modify(|g| *g = g.wrapping_add(1));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

fn aws_update<T>(r: Result<T, AwsError>) -> (Result<T, String>, bool) {
    match r {
        Ok(v) => (Ok(v), false),
        Err(e) => {
            let throttled = e.kind == AwsErrorKind::Throttled;
            (Err(e.to_string()), throttled)
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Runs `poll` forever: send its update, wait (with backoff), repeat. A poll
/// that panics fails every source the worker has reported, and polling goes
/// on: one a later poll left out (an instance it could not list that time)
/// would else keep its last value, unsaid.
/// `sources`: what its polls report (only which source each is counts): a
/// first poll that panics fails these, or they would stay `waiting…` unsaid.
fn every<F, Fut>(
    interval: Duration,
    refresh: Arc<watch::Sender<u64>>,
    tx: mpsc::Sender<LiveEvent>,
    sources: Vec<Update>,
    mut poll: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Vec<(Update, bool)>> + Send,
{
    let mut asked = refresh.subscribe();
    tokio::spawn(async move {
        // Kept while the worker runs: a sender gone would end every wait at once.
        let _refresh = refresh;
        let mut throttles = 0u32;
        // What this worker has reported, by source: a panicking poll fails these.
        let mut reported: std::collections::BTreeMap<crate::live::Source, Update> =
            sources.into_iter().map(|u| (u.source(), u)).collect();
        loop {
            // A refresh asked from here on is for a later poll than this one.
            asked.mark_unchanged();
            // Stamped when the poll began: what it read is at least that old.
            let began = std::time::SystemTime::now();
            let updates = match std::panic::AssertUnwindSafe(poll()).catch_unwind().await {
                Ok(u) => {
                    for (update, _) in &u {
                        reported.entry(update.source()).or_insert_with(|| update.failed(""));
                    }
                    u
                }
                Err(panic) => {
                    let why = panic_message(&*panic);
                    tracing::error!(panic = %why, "a live-data worker panicked; it carries on");
                    let error = format!("internal error while polling (reported in the log): {why}");
                    reported.values().map(|u| (u.failed(&error), false)).collect()
                }
            };
            let throttled = updates.iter().any(|(_, t)| *t);
            for (u, _) in updates {
                if tx.send(LiveEvent { at: began, update: u }).await.is_err() {
                    return;
                }
            }
            throttles = if throttled { throttles.saturating_add(1) } else { 0 };
            let delay = next_delay(interval, throttles, fastrand::f64());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = asked.changed() => {}
            }
        }
    })
}

/// A source's place in `every`'s `sources`: its value is never sent.
fn unread<T>() -> Result<T, String> {
    Err(String::new())
}

pub fn spawn(ctx: Arc<WorkerContext>, tx: mpsc::Sender<LiveEvent>) -> Workers {
    let refresh = Arc::new(watch::channel(0u64).0);
    let iv = ctx.intervals.clone();
    let mut handles = Vec::new();

    let c = ctx.clone();
    let identities = ctx
        .rb
        .sides()
        .into_iter()
        .flat_map(|side| {
            let reach = crate::live::SideReach {
                region: ctx.clients.side(&side).region.clone(),
                via: ctx.clients.reach(&side).describe(),
            };
            let dns = (side == crate::runbook::Side::Dns).then(|| Update::Identity(unread()));
            dns.into_iter().chain(std::iter::once(Update::Side { side, reach, result: unread() }))
        })
        .collect();
    handles.push(every(iv.identity, refresh.clone(), tx.clone(), identities, move || {
        let c = c.clone();
        async move {
            // One GetCallerIdentity per distinct side; [dns]'s is the identity shown.
            let sides = c.rb.sides();
            let mut out = Vec::new();
            for (clients, idx) in c.clients.group(&sides) {
                let (r, t) = aws_update(crate::aws::sts::identity(clients).await);
                for i in idx {
                    let side = sides[i].clone();
                    if side == crate::runbook::Side::Dns {
                        out.push((Update::Identity(r.clone()), t));
                    }
                    let reach = crate::live::SideReach {
                        region: clients.region.clone(),
                        via: c.clients.reach(&side).describe(),
                    };
                    out.push((Update::Side { side, reach, result: r.clone() }, t));
                }
            }
            out
        }
    }));

    let c = ctx.clone();
    let zone = Arc::new(tokio::sync::Mutex::new(None));
    let shared = crate::store::backend::current().shared();
    handles.push(every(iv.traffic, refresh.clone(), tx.clone(), vec![Update::Traffic(unread())], move || {
        let (c, zone) = (c.clone(), zone.clone());
        async move {
            let mut z = zone.lock().await;
            if shared {
                return vec![team_traffic(&c, &mut z, iv.traffic).await];
            }
            let (r, t) = aws_update(fetch::traffic(c.clients.dns(), &c.rb, &mut z).await);
            vec![(Update::Traffic(r), t)]
        }
    }));

    if shared {
        let c = ctx.clone();
        // Presence is announced and listed every third poll (PUT and LIST
        // cost ten times a GET); the checklist and the lease every poll.
        let present = Arc::new(std::sync::Mutex::new((0u32, Vec::new())));
        handles.push(every(iv.team, refresh.clone(), tx.clone(), vec![Update::Team(unread())], move || {
            let (name, present) = (c.rb.name.clone(), present.clone());
            // Presence is shared state too: never written under --read-only.
            let announce = c.publish_readings;
            async move {
                let r = tokio::task::spawn_blocking(move || team_view(&name, &present, announce))
                    .await
                    .unwrap_or_else(|e| Err(format!("the shared-state poll failed: {e}")));
                vec![(Update::Team(r), false)]
            }
        }));
    }

    let (series_tx, series_rx) = watch::channel(BTreeMap::<String, Vec<SeriesKey>>::new());
    let series_tx = Arc::new(series_tx);
    for env_name in ctx.rb.environments.keys() {
        let (inst_tx, inst_rx) = watch::channel(Vec::<Instance>::new());
        let inst_tx = Arc::new(inst_tx);
        let c = ctx.clone();
        let series_tx = series_tx.clone();
        let name = env_name.clone();
        let source = vec![Update::Environment { environment: name.clone(), result: unread() }];
        handles.push(every(iv.environment, refresh.clone(), tx.clone(), source, move || {
            let (c, inst_tx, series_tx, name) = (c.clone(), inst_tx.clone(), series_tx.clone(), name.clone());
            async move {
                let env = &c.rb.environments[&name];
                let r = fetch::environment(&c.clients, &c.rb, env).await;
                if let Ok(data) = &r {
                    inst_tx.send_replace(data.instances.clone());
                    let keys = series_of(&name, data);
                    series_tx.send_modify(|m| {
                        m.insert(name.clone(), keys);
                    });
                }
                let (r, t) = aws_update(r);
                vec![(Update::Environment { environment: name, result: r }, t)]
            }
        }));

        let c = ctx.clone();
        let name = env_name.clone();
        // Its sources are the instances the environment lists, unknown yet.
        handles.push(every(iv.health, refresh.clone(), tx.clone(), Vec::new(), move || {
            let (c, inst_rx, name) = (c.clone(), inst_rx.clone(), name.clone());
            async move {
                let env = &c.rb.environments[&name];
                // Until the environment worker has read the instances, wait for them.
                if inst_rx.borrow().is_empty() {
                    let mut rx = inst_rx.clone();
                    let _ = tokio::time::timeout(iv.health, rx.changed()).await;
                }
                let instances = inst_rx.borrow().clone();
                let urls = super::probe::health_urls(env, &instances, c.policy);
                let probes = futures::future::join_all(urls.into_iter().map(|u| fetch::health(&c.http, u))).await;
                instances
                    .iter()
                    .zip(probes)
                    .map(|(i, p)| (Update::Health { instance_id: i.id.clone(), result: Ok(p) }, false))
                    .collect()
            }
        }));
    }

    for (_, ep) in ctx.rb.redis_endpoints() {
        let c = ctx.clone();
        let name = ep.name.clone();
        let source = vec![Update::Redis { endpoint: name.clone(), result: unread() }];
        handles.push(every(iv.redis, refresh.clone(), tx.clone(), source, move || {
            let (c, name) = (c.clone(), name.clone());
            async move {
                let Some(ep) = c.rb.redis_endpoint(&name) else { return Vec::new() };
                let result = match fetch::redis_endpoint(ep, "Redis", |v| c.var(v)) {
                    Ok(e) => fetch::redis_info(&e).await,
                    Err(e) => Err(e),
                };
                vec![(Update::Redis { endpoint: name, result }, false)]
            }
        }));
    }

    let c = ctx.clone();
    handles.push(every(iv.alarms, refresh.clone(), tx.clone(), vec![Update::Alarms(unread())], move || {
        let c = c.clone();
        async move {
            let (r, t) = aws_update(crate::aws::cloudwatch::alarm_states_by_side(&c.clients, &c.rb).await);
            vec![(Update::Alarms(r), t)]
        }
    }));

    let c = ctx.clone();
    handles.push(every(iv.metrics, refresh.clone(), tx.clone(), vec![Update::Metrics(unread())], move || {
        let (c, series_rx) = (c.clone(), series_rx.clone());
        async move {
            // Wait (up to one interval) until every environment with target groups has said which.
            let with_groups = c.rb.environments.values().filter(|e| !e.target_groups.is_empty()).count();
            let mut rx = series_rx.clone();
            let _ = tokio::time::timeout(iv.metrics, rx.wait_for(|m| m.len() >= with_groups)).await;
            let keys: Vec<SeriesKey> = series_rx.borrow().values().flatten().cloned().collect();
            let r = crate::aws::cloudwatch::metric_series_by_side(&c.clients, &keys, iv.metrics_window, 60).await;
            let (r, t) = aws_update(r);
            vec![(Update::Metrics(r), t)]
        }
    }));

    if ctx.rb.reads_shapes() || ctx.read_shapes {
        let c = ctx.clone();
        handles.push(every(iv.shapes, refresh.clone(), tx.clone(), vec![Update::Shapes(unread())], move || {
            let c = c.clone();
            async move {
                let (r, t) = aws_update(super::parity::shapes(&c.clients, &c.rb, |v| c.var(v)).await);
                vec![(Update::Shapes(r), t)]
            }
        }));
    }

    Workers { handles, refresh }
}

/// Team mode: announces this cockpit (when it may write: `announce`), and
/// reads the shared checklist, the lease and who else is here (blocking:
/// run off the async workers). `present` keeps the poll count and the last
/// presence read between polls.
pub fn team_view(
    runbook: &str,
    present: &std::sync::Mutex<(u32, Vec<crate::store::team::Presence>)>,
    announce: bool,
) -> Result<super::TeamView, String> {
    let read_at = std::time::Instant::now();
    let me = crate::store::lease::Holder::me();
    let store = crate::store::backend::current().describe();
    let fail = |e: crate::store::backend::StoreError| format!("{store}: {e}");
    let (checklist, _) = crate::store::checklist::load(runbook)?;
    let lease = crate::store::lease::holder(runbook).map_err(fail)?;
    let mut kept = present.lock().map_err(|_| "presence poisoned".to_string())?;
    if kept.0.is_multiple_of(3) {
        // A teammate allowed only to read still sees the checklist and lease.
        if announce && let Err(e) = crate::store::team::announce(runbook, &me) {
            tracing::warn!(error = %e, "cannot announce this cockpit's presence");
        }
        let now = std::time::SystemTime::now();
        kept.1 = crate::store::team::present(runbook, Duration::from_secs(30), now)
            .map_err(fail)?
            .into_iter()
            .filter(|p| !(p.host == me.host && p.pid == me.pid))
            .collect();
    }
    kept.0 = kept.0.wrapping_add(1);
    Ok(super::TeamView { store, checklist, lease, present: kept.1.clone(), read_at })
}

/// Whether this process may publish its Route53 reading for the team: not
/// under `--read-only`, and only once its `[dns]` credentials are known to
/// be in the account the runbook names for them (a profile for a staging
/// account with a same-named zone would show every teammate staging's
/// weights as live).
async fn may_publish(c: &WorkerContext) -> bool {
    if !c.publish_readings {
        return false;
    }
    let Some(want) = c.rb.side_account(&crate::runbook::Side::Dns) else { return true };
    if let Some(known) = c.dns_account_confirmed.get() {
        return *known;
    }
    // Asked until STS answers, at most once a minute while it fails.
    let failed_at = || c.dns_account_failed_at.lock().unwrap_or_else(|e| e.into_inner());
    if failed_at().is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
        return false;
    }
    match crate::aws::sts::identity(c.clients.dns()).await {
        Ok(id) => {
            let same = id.account == want;
            if !same {
                tracing::warn!(account = %id.account, %want, "not publishing the weights: [dns] is read in another account");
            }
            *c.dns_account_confirmed.get_or_init(|| same)
        }
        Err(e) => {
            tracing::warn!(error = %e, "not publishing the weights for a minute: the account they are read in is not known");
            *failed_at() = Some(std::time::Instant::now());
            false
        }
    }
}

/// Team mode: the weights as one machine read them for everyone, so the
/// team's Route53 rate does not grow with its watchers: a fresh shared
/// reading is used as it is; a stale one is claimed (a conditional write)
/// by one watcher, who reads Route53 and publishes. Without the store
/// (unreachable), Route53 is read directly: the display comes first.
async fn team_traffic(c: &WorkerContext, zone: &mut Option<String>, every: Duration) -> (Update, bool) {
    use crate::store::team::{Shared, publish, shared_reading};
    let (name, me) = (c.rb.name.clone(), crate::store::lease::Holder::me());
    let reader = format!("{}@{}", me.operator, me.host);
    let now = std::time::SystemTime::now();
    if !c.use_shared_readings {
        let (r, t) = aws_update(fetch::traffic(c.clients.dns(), &c.rb, zone).await);
        if let Ok(data) = &r
            && may_publish(c).await
        {
            let data = data.clone();
            let _ = tokio::task::spawn_blocking(move || publish(&name, "traffic", None, &reader, &data, now)).await;
        }
        return (Update::Traffic(r), t);
    }
    let r = reader.clone();
    let may_claim = may_publish(c).await;
    let decided = tokio::task::spawn_blocking(move || {
        shared_reading::<fetch::TrafficData>(&name, "traffic", every, &r, now, may_claim)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let claim = match decided {
        Ok(Shared::Use(reading)) => {
            if let (Some(mut data), Some(read_at)) = (reading.data.clone(), reading.read_at()) {
                data.shared_by = Some(fetch::SharedBy { reader: reading.read_by.clone(), read_at });
                return (Update::Traffic(Ok(data)), false);
            }
            None
        }
        Ok(Shared::Read(claim, _)) => claim,
        Err(e) => {
            tracing::warn!(error = %e, "shared traffic reading; reading Route53 directly");
            None
        }
    };
    let (r, t) = aws_update(fetch::traffic(c.clients.dns(), &c.rb, zone).await);
    if let (Some(claim), Ok(data)) = (claim, &r) {
        let (name, data) = (c.rb.name.clone(), data.clone());
        let now = std::time::SystemTime::now();
        let _ = tokio::task::spawn_blocking(move || publish(&name, "traffic", Some(claim), &reader, &data, now)).await;
    }
    (Update::Traffic(r), t)
}

/// The series shown for one environment: its load balancer's (the one the
/// runbook names, else the one its first target group is attached to) and its
/// first target group's. None without either: there is no ALB to measure.
fn series_of(environment: &str, data: &fetch::EnvironmentData) -> Vec<SeriesKey> {
    let tg = data.target_groups.first();
    let lb = data
        .load_balancer
        .as_ref()
        .map(|l| arn_suffix(&l.arn))
        .or_else(|| tg.and_then(|t| t.load_balancer_arns.first()).map(|a| arn_suffix(a)));
    if tg.is_none() && lb.is_none() {
        return Vec::new();
    }
    default_series(environment, tg.map(|t| arn_suffix(&t.arn)).as_deref(), lb.as_deref())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panicking_poll_fails_its_sources_and_the_worker_carries_on() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let (tx, mut rx) = super::mpsc::channel(16);
        let polls = super::Arc::new(AtomicU32::new(0));
        let p = polls.clone();
        let worker = super::every(super::Duration::from_millis(5), Default::default(), tx, Vec::new(), move || {
            let k = p.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_ne!(k, 1, "injected panic");
                vec![(super::Update::Alarms(Ok(Vec::new())), false)]
            }
        });
        let mut next = async || rx.recv().await.expect("the worker is alive").update;
        assert!(matches!(next().await, super::Update::Alarms(Ok(_))));
        let shown = match next().await {
            super::Update::Alarms(Err(e)) => {
                assert!(e.contains("injected panic"), "{e}");
                e
            }
            other => panic!("expected the alarms failed, got {other:?}"),
        };
        assert!(matches!(next().await, super::Update::Alarms(Ok(_))), "polling goes on");
        worker.abort();
        crate::reliability::record(
            "terminal",
            format!(
                "A worker whose poll panics reports its sources failed (\"{}\") and polls again; the next poll's \
                 values arrive",
                crate::reliability::clip(&shown, 100)
            ),
        );
    }

    /// A panic fails every source the worker has reported, also one its
    /// last poll left out (an instance it could not list that time): only
    /// the last poll's were failed, and the other kept its old value unsaid.
    #[tokio::test]
    async fn a_panic_fails_sources_an_earlier_poll_reported_too() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let (tx, mut rx) = super::mpsc::channel(16);
        let polls = super::Arc::new(AtomicU32::new(0));
        let p = polls.clone();
        let health = |id: &str, result: Result<crate::live::HealthProbe, String>| super::Update::Health {
            instance_id: id.into(),
            result,
        };
        let worker = super::every(super::Duration::from_millis(5), Default::default(), tx, Vec::new(), move || {
            let k = p.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_ne!(k, 2, "injected panic");
                let ids: &[&str] = if k == 0 { &["i-1", "i-2"] } else { &["i-1"] };
                ids.iter().map(|id| (health(id, Err("unreachable".into())), false)).collect()
            }
        });
        // The panic's reports come together; the next poll's after them.
        let mut failed = Vec::new();
        loop {
            let event = tokio::time::timeout(super::Duration::from_secs(5), rx.recv()).await;
            match event.expect("the worker reports").expect("the worker is alive").update {
                super::Update::Health { instance_id, result: Err(e) } if e.contains("injected panic") => {
                    failed.push(instance_id)
                }
                super::Update::Health { .. } if failed.is_empty() => {}
                super::Update::Health { .. } => break,
                other => panic!("{other:?}"),
            }
        }
        worker.abort();
        failed.sort();
        assert_eq!(failed, ["i-1", "i-2"]);
    }

    /// A worker whose very first poll panics has reported nothing to fail:
    /// it fails the sources it was given, naming the panic (before, it sent
    /// nothing and the source stayed `waiting…` with nothing said).
    #[tokio::test]
    async fn a_first_poll_that_panics_fails_its_sources_naming_the_panic() {
        let (tx, mut rx) = super::mpsc::channel(16);
        let sources = vec![super::Update::Alarms(super::unread())];
        let worker =
            super::every(super::Duration::from_secs(3600), Default::default(), tx, sources, move || async move {
                if true {
                    panic!("injected first-poll panic");
                }
                vec![(super::Update::Alarms(Ok(Vec::new())), false)]
            });
        let got = tokio::time::timeout(super::Duration::from_secs(2), rx.recv()).await;
        worker.abort();
        match got {
            Ok(Some(super::LiveEvent { update: super::Update::Alarms(Err(e)), .. })) => {
                assert!(e.contains("injected first-poll panic"), "{e}")
            }
            other => panic!("a first poll that panicked reported {other:?}, not its source failed"),
        }
    }

    use super::*;

    /// A refresh asked while a worker is in the middle of a poll gets a
    /// poll begun after it, at once (the one under way may have read before
    /// it; notified then, the worker slept a whole interval), and each
    /// reading is stamped when its poll began.
    #[tokio::test]
    async fn a_refresh_asked_during_a_poll_gets_a_poll_begun_after_it() {
        let (tx, mut rx) = mpsc::channel(16);
        let (refresh, _) = watch::channel(0u64);
        let refresh = Arc::new(refresh);
        let workers = Workers { handles: Vec::new(), refresh: refresh.clone() };
        let worker = every(Duration::from_secs(3600), refresh, tx, Vec::new(), || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            vec![(Update::Alarms(Ok(Vec::new())), false)]
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = std::time::SystemTime::now();
        workers.refresh_now();
        let first = rx.recv().await.unwrap();
        assert!(first.at < asked, "the poll under way began before the refresh");
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("polled again at once");
        assert!(second.unwrap().at >= asked, "a poll begun after the refresh");
        worker.abort();
    }

    #[test]
    fn no_throttle_means_the_plain_interval() {
        assert_eq!(next_delay(Duration::from_secs(5), 0, 0.99), Duration::from_secs(5));
    }

    #[test]
    fn throttles_double_with_jitter_and_cap_at_five_minutes() {
        let i = Duration::from_secs(5);
        assert_eq!(next_delay(i, 1, 0.5), Duration::from_secs(10));
        assert_eq!(next_delay(i, 2, 0.5), Duration::from_secs(20));
        assert_eq!(next_delay(i, 1, 0.0), Duration::from_secs(5));
        assert_eq!(next_delay(i, 1, 1.0), Duration::from_secs(15));
        assert_eq!(next_delay(i, 10, 0.5), Duration::from_secs(300));
        assert_eq!(next_delay(i, 40, 0.5), Duration::from_secs(300));
        assert!(next_delay(i, 3, 0.7) > next_delay(i, 3, 0.2));
    }
}
