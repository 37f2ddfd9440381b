//! Render time of a full 160×48 cockpit frame with 200 targets, 50 instances
//! × 2 Redis endpoints and 8 phases × 20 items, against a plain Paragraph of
//! the same screen text (the floor of drawing that many cells), and the time
//! to derive the snapshot on a clock tick. Under criterion: each figure comes
//! with its spread, a saved run can be compared against, and a last table
//! gives each median with its ratio to the Paragraph baseline of the run.
//!
//! Run: `cargo bench --bench render` (in process; no sandbox);
//! `-- --save-baseline NAME` keeps the run, a later `-- --baseline NAME`
//! prints each bench's change against it. Under `cargo test --benches`
//! each bench runs once, as a smoke test.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use criterion::Criterion;
use cutover::analysis::reachability::{GroupRule, SecurityGroup};
use cutover::aws::cloudwatch::{AlarmState, Series};
use cutover::aws::ec2::Instance;
use cutover::aws::elb::{LoadBalancer, Target, TargetGroup};
use cutover::aws::sts::Identity;
use cutover::live::fetch::{EnvironmentData, HealthProbe, RedisInfo, SideWeight, TrafficData};
use cutover::live::{LiveEvent, Update};
use cutover::runbook::Metric;
use cutover::tui::app::{App, Header};
use cutover::tui::keys::Keymap;
use cutover::tui::state::{Event, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::widgets::Paragraph;

#[path = "common/summary.rs"]
mod summary;

fn main() {
    let run_start = SystemTime::now();
    let mut c = Criterion::default().without_plots().configure_from_args();
    benches(&mut c);
    c.final_summary();
    summary::print(
        run_start,
        &[
            ("render/cutover_render", Some("render/baseline_paragraph_of_the_same_text")),
            ("render/baseline_paragraph_of_the_same_text", None),
            ("render/derive_snapshot_on_tick", None),
        ],
    );
}

fn big_runbook() -> cutover::runbook::Runbook {
    let mut t = String::from(
        r#"[runbook]
name = "big"
[environments.blue]
load_balancer = "blue-alb"
target_groups = ["blue-web"]
instances = { tags = { Env = "blue" } }
redis = [{ name = "cache-a", url = "redis://127.0.0.1:1/0" }, { name = "cache-b", url = "redis://127.0.0.1:2/0" }]
[environments.green]
load_balancer = "green-alb"
target_groups = ["green-web"]
instances = { tags = { Env = "green" } }
uses_redis = ["cache-a", "cache-b"]
[dns]
zone = "example.com"
record = "app.example.com"
type = "CNAME"
ttl = 60
set_identifiers = { blue = "blue", green = "green" }
[rollout]
from = "blue"
to = "green"
steps = [10, 50, 100]
soak = "5m"
[[rollout.gates]]
kind = "healthy_targets"
environment = "green"
min = 1
"#,
    );
    for p in 0..8 {
        let _ = write!(t, "[[phases]]\nid = \"p{p}\"\ntitle = \"Phase {p}\"\n");
        for i in 0..20 {
            let body = match i % 3 {
                0 => "kind = \"manual\"".to_string(),
                1 => "kind = \"check\"\ncheck = \"targets_healthy\"\nenvironment = \"green\"".to_string(),
                _ => "kind = \"check\"\ncheck = \"redis_reachable\"\nenvironment = \"blue\"".to_string(),
            };
            let _ = write!(
                t,
                "[[phases.items]]\nid = \"i{i}\"\ntitle = \"Item {i} of phase {p} with a realistic title\"\n{body}\n"
            );
        }
    }
    cutover::runbook::parse("big.toml", &t).expect("bench runbook")
}

fn big_live(now: SystemTime) -> Vec<LiveEvent> {
    let ev = |update| LiveEvent { at: now, update };
    let mut out = vec![
        ev(Update::Identity(Ok(Identity { account: "123456789012".into(), arn: "arn".into(), expires_at: None }))),
        ev(Update::Traffic(Ok(TrafficData {
            zone_id: "Z".into(),
            last_change: None,
            rollout: None,
            rollout_unread: None,
            audit_unread: None,
            sides: ["blue", "green"]
                .iter()
                .map(|e| SideWeight {
                    environment: Some((*e).into()),
                    set_identifier: (*e).into(),
                    weight: Some(50),
                    share_percent: 50.0,
                    ttl: Some(60),
                    values: vec![],
                    ..Default::default()
                })
                .collect(),
            shared_by: None,
            types_differ: None,
            unlisted_other_types: None,
        }))),
    ];
    for (e, env) in ["blue", "green"].iter().enumerate() {
        let instances: Vec<Instance> = (0..25)
            .map(|i| Instance {
                id: format!("i-{env}{i:04}"),
                name: Some(format!("{env}-web-{i}")),
                state: "running".into(),
                instance_type: "m6i.large".into(),
                availability_zone: format!("eu-west-1{}", ['a', 'b', 'c'][i % 3]),
                private_ip: Some(format!("10.0.{e}.{i}")),
                ipv6_addresses: vec![],
                target_addresses: vec![],
                vpc_id: None,
                security_groups: vec![format!("sg-{env}app")],
                tags: BTreeMap::new(),
            })
            .collect();
        let targets: Vec<Target> = (0..100)
            .map(|i| Target {
                id: format!("i-{env}{:04}", i % 25),
                port: Some(8000 + i as u16),
                availability_zone: None,
                state: ["healthy", "healthy", "unhealthy", "initial"][i % 4].into(),
                reason: (i % 4 >= 2).then(|| "Target.ResponseCodeMismatch".into()),
                description: Some("Health checks failed with these codes: [503]".into()),
            })
            .collect();
        let group = |n: &str| SecurityGroup {
            id: format!("sg-{n}"),
            name: n.into(),
            ingress: vec![GroupRule {
                protocol: "tcp".into(),
                from_port: Some(6379),
                to_port: Some(6379),
                groups: vec!["sg-blueapp".into()],
                cidrs: vec![],
                prefix_lists: vec![],
            }],
            egress: vec![],
        };
        for i in &instances {
            out.push(ev(Update::Health {
                instance_id: i.id.clone(),
                result: Ok(HealthProbe::Answered {
                    url: "http://127.0.0.1:1/health".into(),
                    status: 200,
                    latency_ms: 3.0,
                    redis_ok: Some(true),
                    redis_error: None,
                    body: String::new(),
                }),
            }));
        }
        out.push(ev(Update::Environment {
            environment: (*env).into(),
            result: Ok(EnvironmentData {
                load_balancer: Some(LoadBalancer {
                    name: format!("{env}-alb"),
                    arn: "arn".into(),
                    dns_name: "x".into(),
                    zones: vec!["eu-west-1a".into(), "eu-west-1b".into()],
                    vpc_id: None,
                    routes_to: cutover::aws::elb::Routing::Groups(vec![format!("arn:tg/{env}")]),
                    listeners: cutover::aws::elb::Listeners::forwarding_to(vec![format!("arn:tg/{env}")]),
                }),
                target_groups: vec![TargetGroup {
                    name: format!("{env}-web"),
                    arn: format!("arn:tg/{env}"),
                    load_balancer_arns: vec![],
                    health_check_path: None,
                    health_check_interval_seconds: None,
                    attributes: Default::default(),
                    targets,
                }],
                instances,
                redis_groups: BTreeMap::from([
                    ("cache-a".into(), vec![group("ra")]),
                    ("cache-b".into(), vec![group("rb")]),
                ]),
                redis_groups_elsewhere: BTreeMap::new(),
                redis_groups_unread: BTreeMap::new(),
                redis_addresses: BTreeMap::new(),
                redis_addresses_unread: BTreeMap::new(),
                // The app group as AWS makes it: everything let out.
                instance_groups: vec![SecurityGroup {
                    id: format!("sg-{env}app"),
                    name: format!("{env}-app"),
                    ingress: vec![],
                    egress: vec![GroupRule::all_traffic("0.0.0.0/0")],
                }],
                instance_groups_unread: None,
                group_names: BTreeMap::new(),
            }),
        }));
    }
    for r in ["cache-a", "cache-b"] {
        out.push(ev(Update::Redis {
            endpoint: r.into(),
            result: Ok(RedisInfo {
                ping_ms: 0.3,
                version: "7.0".into(),
                role: "master".into(),
                used_memory: 1 << 20,
                keys: 100_000,
                expiring_keys: 50_000,
                nodes: vec![],
                keyspace_hits: None,
                keyspace_misses: None,
                lookup_counters: vec![],
                lookups: None,
                db: 0,
                run_ids: vec![format!("{r}-run-id")],
                other_dbs: vec![],
                replication_id: None,
                sentinels: vec![],
            }),
        }));
    }
    out.push(ev(Update::Alarms(Ok((0..4)
        .map(|i| AlarmState {
            name: format!("alarm-{i}"),
            state: "OK".into(),
            reason: String::new(),
            period_seconds: Some(60),
            ..Default::default()
        })
        .collect()))));
    let pts: Vec<(i64, f64)> = (0..15).map(|i| (i * 60, (i * 7 % 11) as f64)).collect();
    out.push(ev(Update::Metrics(Ok(["blue", "green"]
        .iter()
        .flat_map(|e| {
            [Metric::RequestCount, Metric::Target5xx, Metric::TargetResponseTime].map(|m| Series {
                environment: (*e).into(),
                metric: m,
                stat: "Sum".into(),
                dimensions: vec![],
                points: pts.clone(),
                error: None,
            })
        })
        .collect()))));
    out
}

/// The cockpit on the big runbook with every source reported, its terminal,
/// and the text of the frame it draws.
struct Screen {
    app: App,
    term: Terminal<TestBackend>,
    text: String,
}

fn screen() -> Screen {
    let now = SystemTime::now();
    let mut app = App::new(
        big_runbook(),
        "eu-west-1".into(),
        Header { profile: None, read_only: false },
        Keymap::default(),
        Default::default(),
        "bench".into(),
        now,
    );
    for e in big_live(now) {
        update(&mut app, Event::Live(e));
    }
    app.size = (160, 48);
    let targets: usize =
        app.snap.environments.iter().map(|e| e.aws.value.as_ref().unwrap().target_groups[0].targets.len()).sum();
    let instances: usize = app.snap.environments.iter().map(|e| e.aws.value.as_ref().unwrap().instances.len()).sum();
    let items: usize = app.rb.phases.iter().map(|p| p.items.len()).sum();
    assert_eq!((targets, instances, items), (200, 50, 160));
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    term.draw(|f| cutover::tui::view::render(&app, f)).unwrap();
    let text: String = {
        let buf = term.backend().buffer().clone();
        (0..48).map(|y| (0..160).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n").collect()
    };
    Screen { app, term, text }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    // cutover's render of the full frame (the snapshot already derived).
    let Screen { app, mut term, text } = screen();
    group.bench_function("cutover_render", |b| {
        b.iter(|| term.draw(|f| cutover::tui::view::render(&app, f)).map(|_| ()).unwrap())
    });
    // Baseline: a Paragraph of the same screen text.
    group.bench_function("baseline_paragraph_of_the_same_text", |b| {
        b.iter(|| term.draw(|f| f.render_widget(Paragraph::new(text.as_str()), f.area())).map(|_| ()).unwrap())
    });
    // Deriving the snapshot: `update` on a clock tick.
    let mut app = app;
    group.bench_function("derive_snapshot_on_tick", |b| b.iter(|| update(&mut app, Event::Tick(SystemTime::now()))));
    group.finish();
}
