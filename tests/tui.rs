//! The cockpit without a terminal: `update` for every key in every pane, and
//! insta snapshots of whole screens on ratatui's TestBackend. The data is a
//! fixed fixture shaped like the demo sandbox, so snapshots are stable.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use cutover::analysis::reachability::{GroupRule, SecurityGroup};
use cutover::aws::cloudwatch::{AlarmState, Series};
use cutover::aws::ec2::Instance;
use cutover::aws::elb::{LoadBalancer, Target, TargetGroup, TargetGroupAttributes};
use cutover::aws::sts::Identity;
use cutover::live::fetch::{EnvironmentData, HealthProbe, RedisInfo, SideWeight, TrafficData};
use cutover::live::{LiveEvent, Update};
use cutover::runbook::Metric;
use cutover::store::checklist::ChecklistState;
use cutover::tui::app::{App, CheckRun, Control, Header, Overlay, PendingChange};
use cutover::tui::keys::{KeyAction, Keymap};
use cutover::tui::pane::Pane;
use cutover::tui::state::{Command, Event, update};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn instance(id: &str, name: &str, az: &str, sg: &str, state: &str) -> Instance {
    Instance {
        id: id.into(),
        name: Some(name.into()),
        state: state.into(),
        instance_type: "t3.micro".into(),
        availability_zone: az.into(),
        private_ip: Some("10.42.1.10".into()),
        ipv6_addresses: vec![],
        target_addresses: vec![],
        vpc_id: None,
        security_groups: vec![sg.into()],
        tags: BTreeMap::new(),
    }
}

fn target(id: &str, state: &str, reason: Option<&str>) -> Target {
    Target {
        id: id.into(),
        port: Some(8080),
        availability_zone: None,
        state: state.into(),
        reason: reason.map(Into::into),
        description: None,
    }
}

fn env_data(side: &str, instances: Vec<Instance>, targets: Vec<Target>) -> EnvironmentData {
    let (redis, app) = (format!("sg-{side}redis"), format!("sg-{side}app"));
    let endpoint = if side == "prod" { "prod-cache" } else { "staging-cache" };
    let group = SecurityGroup {
        id: redis.clone(),
        name: format!("{side}-redis"),
        ingress: vec![GroupRule {
            protocol: "tcp".into(),
            from_port: Some(6379),
            to_port: Some(6379),
            groups: vec![app.clone()],
            cidrs: vec![],
            prefix_lists: vec![],
        }],
        egress: vec![],
    };
    // The app group as AWS makes it: everything let out.
    let app_group = SecurityGroup {
        id: app.clone(),
        name: format!("{side}-app"),
        ingress: vec![],
        egress: vec![GroupRule::all_traffic("0.0.0.0/0")],
    };
    let batch_group = SecurityGroup { id: "sg-batch".into(), name: "staging-batch".into(), ..app_group.clone() };
    let names = [
        (redis, format!("{side}-redis")),
        (app, format!("{side}-app")),
        ("sg-batch".to_string(), "staging-batch".to_string()),
    ];
    EnvironmentData {
        load_balancer: Some(LoadBalancer {
            name: format!("demo-{side}-alb"),
            arn: format!("arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/demo-{side}-alb/1"),
            dns_name: format!("demo-{side}-alb.example"),
            zones: vec!["eu-west-1a".into(), "eu-west-1b".into()],
            vpc_id: None,
            routes_to: cutover::aws::elb::Routing::Groups(vec![format!(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/demo-{side}-web/1"
            )]),
            listeners: cutover::aws::elb::Listeners::forwarding_to(vec![format!(
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/demo-{side}-web/1"
            )]),
        }),
        target_groups: vec![TargetGroup {
            name: format!("demo-{side}-web"),
            arn: format!("arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/demo-{side}-web/1"),
            load_balancer_arns: vec![],
            health_check_path: Some("/health".into()),
            health_check_interval_seconds: Some(30),
            attributes: TargetGroupAttributes { stickiness_enabled: Some(false), ..Default::default() },
            targets,
        }],
        instances,
        redis_groups: BTreeMap::from([(endpoint.to_string(), vec![group])]),
        redis_groups_elsewhere: BTreeMap::new(),
        redis_groups_unread: BTreeMap::new(),
        // The endpoint's node's interface, in its group as on AWS.
        redis_addresses: BTreeMap::from([(endpoint.to_string(), vec!["10.0.9.10".to_string()])]),
        redis_addresses_unread: BTreeMap::new(),
        instance_groups: vec![app_group, batch_group],
        instance_groups_unread: None,
        group_names: names.into_iter().collect(),
    }
}

fn ok_health(port: u16) -> HealthProbe {
    HealthProbe::Answered {
        url: format!("http://127.0.0.1:{port}/health"),
        status: 200,
        latency_ms: 2.0,
        redis_ok: Some(true),
        redis_error: None,
        body: "{}".into(),
    }
}

/// The demo as the sandbox starts it: staging-web-2 in a group Redis does not allow.
fn demo_events(stopped_prod_web_1: bool) -> Vec<LiveEvent> {
    let at = t0() - Duration::from_secs(3);
    let ev = |update| LiveEvent { at, update };
    let p1_state = if stopped_prod_web_1 { "stopped" } else { "running" };
    let p1_target = if stopped_prod_web_1 {
        target("i-0prodweb1", "unused", Some("Target.InvalidState"))
    } else {
        target("i-0prodweb1", "healthy", None)
    };
    let mut out = vec![
        ev(Update::Identity(Ok(Identity {
            account: "123456789012".into(),
            arn: "arn:aws:sts::123456789012:user/moto".into(),
            expires_at: None,
        }))),
        ev(Update::Traffic(Ok(TrafficData {
            zone_id: "Z1".into(),
            last_change: None,
            rollout: None,
            rollout_unread: None,
            audit_unread: None,
            sides: vec![
                SideWeight {
                    environment: Some("production".into()),
                    set_identifier: "prod".into(),
                    weight: Some(100),
                    share_percent: 100.0,
                    ttl: Some(10),
                    values: vec![],
                    ..Default::default()
                },
                SideWeight {
                    environment: Some("staging".into()),
                    set_identifier: "staging".into(),
                    weight: Some(0),
                    share_percent: 0.0,
                    ttl: Some(10),
                    values: vec![],
                    ..Default::default()
                },
            ],
            shared_by: None,
            types_differ: None,
            unlisted_other_types: None,
        }))),
        ev(Update::Environment {
            environment: "production".into(),
            result: Ok(env_data(
                "prod",
                vec![
                    instance("i-0prodweb1", "prod-web-1", "eu-west-1a", "sg-prodapp", p1_state),
                    instance("i-0prodweb2", "prod-web-2", "eu-west-1b", "sg-prodapp", "running"),
                ],
                vec![p1_target, target("i-0prodweb2", "healthy", None)],
            )),
        }),
        ev(Update::Environment {
            environment: "staging".into(),
            result: Ok(env_data(
                "staging",
                vec![
                    instance("i-0stagweb1", "staging-web-1", "eu-west-1a", "sg-stagingapp", "running"),
                    instance("i-0stagweb2", "staging-web-2", "eu-west-1b", "sg-batch", "running"),
                ],
                vec![target("i-0stagweb1", "healthy", None), target("i-0stagweb2", "healthy", None)],
            )),
        }),
        ev(Update::Health {
            instance_id: "i-0prodweb1".into(),
            result: Ok(if stopped_prod_web_1 {
                HealthProbe::Failed {
                    url: "http://127.0.0.1:40001/health".into(),
                    error: "connection refused or unreachable".into(),
                }
            } else {
                ok_health(40001)
            }),
        }),
        ev(Update::Health { instance_id: "i-0prodweb2".into(), result: Ok(ok_health(40002)) }),
        ev(Update::Health { instance_id: "i-0stagweb1".into(), result: Ok(ok_health(40003)) }),
        ev(Update::Health {
            instance_id: "i-0stagweb2".into(),
            result: Ok(HealthProbe::Answered {
                url: "http://127.0.0.1:40004/health".into(),
                status: 503,
                latency_ms: 801.0,
                redis_ok: Some(false),
                redis_error: Some("timed out after 800 ms connecting to Redis".into()),
                body: "{}".into(),
            }),
        }),
        ev(Update::Alarms(Ok(vec![
            AlarmState {
                name: "demo-staging-5xx".into(),
                state: "OK".into(),
                reason: String::new(),
                period_seconds: Some(60),
                ..Default::default()
            },
            AlarmState {
                name: "demo-prod-5xx".into(),
                state: "OK".into(),
                reason: String::new(),
                period_seconds: Some(60),
                ..Default::default()
            },
        ]))),
    ];
    for (name, keys) in [("prod-cache", 202), ("staging-cache", 0)] {
        out.push(ev(Update::Redis {
            endpoint: name.into(),
            result: Ok(RedisInfo {
                ping_ms: 0.4,
                version: "7.0.15".into(),
                role: "master".into(),
                used_memory: 1_200_000,
                keys,
                expiring_keys: keys / 2,
                nodes: vec![],
                keyspace_hits: None,
                keyspace_misses: None,
                lookup_counters: vec![],
                lookups: None,
                db: 0,
                run_ids: vec![format!("{name}-run-id")],
                other_dbs: vec![],
                replication_id: None,
                sentinels: vec![],
            }),
        }));
    }
    // One a minute, the newest two minutes before t0 (CloudWatch lags).
    let pts =
        |vals: &[f64]| vals.iter().enumerate().map(|(i, v)| (1_794_999_700 + 60 * i as i64, *v)).collect::<Vec<_>>();
    out.push(ev(Update::Metrics(Ok(vec![
        Series {
            environment: "production".into(),
            metric: Metric::RequestCount,
            stat: "Sum".into(),
            dimensions: vec![],
            points: pts(&[310.0, 330.0, 320.0, 350.0]),
            error: None,
        },
        Series {
            environment: "production".into(),
            metric: Metric::Target5xx,
            stat: "Sum".into(),
            dimensions: vec![],
            points: vec![],
            error: None,
        },
        Series {
            environment: "production".into(),
            metric: Metric::TargetResponseTime,
            stat: "Average".into(),
            dimensions: vec![],
            points: pts(&[0.002, 0.003, 0.002, 0.002]),
            error: None,
        },
        Series {
            environment: "staging".into(),
            metric: Metric::RequestCount,
            stat: "Sum".into(),
            dimensions: vec![],
            points: pts(&[0.0, 0.0, 0.0, 0.0]),
            error: None,
        },
    ]))));
    out
}

/// The demo app after `events`, with the log they wrote.
fn app_logged(events: Vec<LiveEvent>) -> App {
    let rb =
        cutover::runbook::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let mut app = app_of(rb);
    for e in events {
        update(&mut app, Event::Live(e));
    }
    app
}

/// The cockpit on shared-dns-account.toml with each side's identity read
/// (every side in eu-west-1, through a role): the header's is `[dns]`'s.
fn shared_dns_app(sides: &[(cutover::runbook::Side, &str)]) -> App {
    let rb = cutover::runbook::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/shared-dns-account.toml"),
    )
    .unwrap();
    let mut app = app_of(rb);
    let identity = |account: &str| Identity { account: account.into(), arn: String::new(), expires_at: None };
    let at = |update| Event::Live(LiveEvent { at: t0(), update });
    update(&mut app, at(Update::Identity(Ok(identity(sides[0].1)))));
    for (side, account) in sides {
        let reach = cutover::live::SideReach { region: "eu-west-1".into(), via: "a role".into() };
        update(&mut app, at(Update::Side { side: side.clone(), reach, result: Ok(identity(account)) }));
    }
    app
}

/// A fresh cockpit on `rb` (in eu-west-1, as ana), nothing read yet.
fn app_of(rb: cutover::runbook::Runbook) -> App {
    let header = Header { profile: None, read_only: false };
    App::new(rb, "eu-west-1".into(), header, Keymap::default(), ChecklistState::default(), "ana".into(), t0())
}

fn app_with(events: Vec<LiveEvent>) -> App {
    let mut app = app_logged(events);
    app.log.clear();
    app
}

fn demo_app() -> App {
    app_with(demo_events(false))
}

/// A weighted record the runbook does not list, at 100: its own row, the
/// red line naming it, and, in the small 80×24 pane too, both sides' rows
/// and the rollout's line (the pane grows for them).
#[test]
fn a_record_the_runbook_does_not_list_is_shown_and_the_rollout_line_stays() {
    let side = |environment: Option<&str>, id: &str, weight: u8, share: f64| SideWeight {
        environment: environment.map(str::to_string),
        set_identifier: id.into(),
        weight: Some(weight),
        share_percent: share,
        effective_share_percent: share,
        ttl: Some(10),
        ..Default::default()
    };
    let mut events = demo_events(false);
    events.push(LiveEvent {
        at: t0() - Duration::from_secs(2),
        update: Update::Traffic(Ok(TrafficData {
            zone_id: "Z1".into(),
            last_change: None,
            rollout: Some(cutover::live::fetch::RolloutView {
                step: 1,
                steps: 4,
                percent: 10,
                phase: "soaking".into(),
                reason: None,
                plan_changed: false,
            }),
            rollout_unread: None,
            audit_unread: None,
            sides: vec![
                side(Some("production"), "prod", 90, 47.4),
                side(Some("staging"), "staging", 0, 0.0),
                side(None, "maint", 100, 52.6),
            ],
            shared_by: None,
            types_differ: None,
            unlisted_other_types: None,
        })),
    });
    let mut app = app_with(events);
    for (w, h) in [(80, 24), (160, 48)] {
        app.size = (w, h);
        let s = screen(&app, w, h);
        assert!(s.contains("NOT IN THE RUNBOOK: Route53 also sends"), "{w}x{h}: {s}");
        for row in ["production", "staging", "not listed"] {
            assert!(s.lines().any(|l| l.contains(row) && l.contains("ttl 10s")), "{w}x{h}: no {row} row: {s}");
        }
        assert!(s.contains("rollout step 1/4 (10%) soaking"), "{w}x{h}: {s}");
    }
}

/// A metric's newest datapoint is shown as its current value only while it
/// is recent: a quarter of an hour later it says how old it is.
#[test]
fn an_old_datapoint_is_not_shown_as_the_current_value() {
    let mut app = demo_app();
    let s = screen(&app, 160, 48);
    assert!(s.contains("production requests ▇█▇█ 350 ") && !s.contains("m ago"), "{s}");
    app.now = t0() + Duration::from_secs(15 * 60);
    let s = screen(&app, 160, 48);
    assert!(s.contains("production requests ▇█▇█ 350 17m ago"), "{s}");
    // `status` says so too, and a fresh one not.
    let text = |at| cutover::status::text::render(&cutover::status::snapshot(&app.rb, &app.live, "eu-west-1", at));
    let line =
        |t: &str| t.lines().find(|l| l.contains("production") && l.contains("RequestCount")).unwrap().to_string();
    assert!(line(&text(app.now)).contains("latest 350.000 (17m ago)"), "{}", text(app.now));
    assert!(!line(&text(t0())).contains("ago"), "{}", text(t0()));
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn chars(app: &mut App, s: &str) -> Vec<Command> {
    s.chars().flat_map(|c| update(app, key(KeyCode::Char(c)))).collect()
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| cutover::tui::view::render(app, f)).unwrap();
    let buf = term.backend().buffer().clone();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn snap_both(name: &str, app: &mut App) {
    for (w, h) in [(80, 24), (160, 48)] {
        app.size = (w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

// ---------------------------------------------------------------- snapshots

#[test]
fn snapshot_demo_as_started() {
    snap_both("demo", &mut demo_app());
}

#[test]
fn snapshot_stopped_instance() {
    let mut app = app_with(demo_events(true));
    update(&mut app, key(KeyCode::Char('2')));
    snap_both("stopped_instance", &mut app);
}

#[test]
fn snapshot_wrong_security_group_instance_selected() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('3')));
    for _ in 0..3 {
        update(&mut app, key(KeyCode::Char('j')));
    }
    assert_eq!(app.selected(Pane::Redis), 3);
    snap_both("wrong_sg_selected", &mut app);
}

#[test]
fn snapshot_moto_down_marks_aws_values_stale() {
    let mut app = demo_app();
    let at = t0();
    let err = "ListResourceRecordSets: cannot reach AWS: dispatch failure (connection refused)".to_string();
    let mut down = vec![
        Update::Traffic(Err(err.clone())),
        Update::Alarms(Err("DescribeAlarms: cannot reach AWS: dispatch failure".into())),
        Update::Metrics(Err("GetMetricData: cannot reach AWS: dispatch failure".into())),
    ];
    for env in ["production", "staging"] {
        down.push(Update::Environment {
            environment: env.into(),
            result: Err("DescribeLoadBalancers: cannot reach AWS: dispatch failure".into()),
        });
    }
    for u in down {
        update(&mut app, Event::Live(LiveEvent { at, update: u }));
    }
    assert!(app.log.iter().any(|l| l.text.starts_with("traffic failing, showing last good values")));
    // Security-group paths read before AWS went away are never a green "ok".
    let s = screen(&app, 160, 48);
    assert!(!s.contains("all three paths ok") && s.contains("sg path: stale, the last reading of production"), "{s}");
    snap_both("moto_down", &mut app);
    update(&mut app, key(KeyCode::Char('e')));
    assert_eq!(app.overlay, Overlay::Errors);
    let s = screen(&app, 160, 48);
    assert!(s.contains("traffic: ListResourceRecordSets: cannot reach AWS"), "{s}");
}

#[test]
fn snapshot_help_overlay() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('5')));
    update(&mut app, key(KeyCode::Char('?')));
    snap_both("help_checklist", &mut app);
}

#[test]
fn snapshot_palette() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char(':')));
    chars(&mut app, "pa");
    snap_both("palette", &mut app);
}

// ---------------------------------------------------------------- update

#[test]
fn help_lists_exactly_the_keys_that_dispatch_in_each_pane() {
    for pane in Pane::ALL {
        let mut app = demo_app();
        app.focus = pane;
        update(&mut app, key(KeyCode::Char('?')));
        let s = screen(&app, 160, 48);
        let km = Keymap::default();
        for b in km.for_pane(pane) {
            assert!(s.contains(b.help), "{pane:?} help lacks {:?}", b.help);
        }
        let pane_only: Vec<_> = km.bindings.iter().filter(|b| b.pane.is_some() && b.pane != Some(pane)).collect();
        for b in pane_only {
            assert!(!s.contains(b.help), "{pane:?} help shows {:?} of another pane", b.help);
        }
    }
}

/// Every binding of every pane, pressed with its first key, does what it says.
#[test]
fn every_key_in_every_pane() {
    let km = Keymap::default();
    for pane in Pane::ALL {
        for b in km.for_pane(pane) {
            let mut app = demo_app();
            app.focus = pane;
            if pane == Pane::Checklist {
                app.selected.insert(Pane::Checklist, 3); // prepare/backup, a manual item
            }
            let k = b.keys[0];
            let cmds = update(&mut app, Event::Key(KeyEvent::new(k.code, k.mods)));
            let ctx = format!("{pane:?} {:?}", b.action);
            match b.action {
                KeyAction::NextPane => assert_eq!(
                    app.focus,
                    Pane::ALL[(Pane::ALL.iter().position(|p| *p == pane).unwrap() + 1) % Pane::ALL.len()],
                    "{ctx}"
                ),
                KeyAction::PrevPane => assert_eq!(
                    app.focus,
                    Pane::ALL
                        [(Pane::ALL.iter().position(|p| *p == pane).unwrap() + Pane::ALL.len() - 1) % Pane::ALL.len()],
                    "{ctx}"
                ),
                KeyAction::FocusTraffic => assert_eq!(app.focus, Pane::Traffic),
                KeyAction::FocusTargets => assert_eq!(app.focus, Pane::Targets),
                KeyAction::FocusRedis => assert_eq!(app.focus, Pane::Redis),
                KeyAction::FocusAlarms => assert_eq!(app.focus, Pane::Alarms),
                KeyAction::FocusChecklist => assert_eq!(app.focus, Pane::Checklist),
                KeyAction::FocusLog => assert_eq!((app.focus, app.parity_open), (Pane::Log, false)),
                KeyAction::FocusParity => assert_eq!((app.focus, app.parity_open), (Pane::Parity, true)),
                KeyAction::Down => {
                    let rows = app.row_count(pane);
                    let start = if pane == Pane::Checklist { 3 } else { 0 };
                    let want = if rows == 0 { 0 } else { (start + 1).min(rows - 1) };
                    assert_eq!(app.selected(pane), want, "{ctx} with {rows} rows");
                }
                KeyAction::Up => {
                    let want = if pane == Pane::Checklist { 2 } else { 0 };
                    assert_eq!(app.selected(pane), want, "{ctx}");
                }
                KeyAction::Zoom => assert!(app.zoomed, "{ctx}"),
                KeyAction::Filter => assert!(matches!(app.overlay, Overlay::Filter { .. }), "{ctx}"),
                KeyAction::Help => assert_eq!(app.overlay, Overlay::Help, "{ctx}"),
                KeyAction::ShowErrors => assert_eq!(app.overlay, Overlay::Errors, "{ctx}"),
                KeyAction::Palette => assert!(matches!(app.overlay, Overlay::Palette { .. }), "{ctx}"),
                KeyAction::Pause => assert!(app.paused, "{ctx}"),
                KeyAction::Refresh => assert_eq!(cmds, vec![Command::Refresh], "{ctx}"),
                KeyAction::Quit => assert!(app.quit && cmds == vec![Command::Quit], "{ctx}"),
                KeyAction::Tick => {
                    let tick = cutover::store::checklist::Edit::Tick {
                        key: "prepare/backup".into(),
                        by: "ana".into(),
                        at: app.checklist.ticks["prepare/backup"].at.clone(),
                        account: app.snap.identity.value.as_ref().map(|i| i.account.clone()),
                    };
                    assert_eq!(cmds, vec![Command::EditChecklist(tick)], "{ctx}");
                    assert_eq!(app.checklist.ticks["prepare/backup"].by, "ana");
                }
                KeyAction::RunCheck => {
                    assert!(cmds.is_empty(), "{ctx}: a manual item is not run");
                    assert!(app.log.back().unwrap().text.contains("is a manual item"), "{ctx}");
                }
                KeyAction::Rollback => {
                    assert!(cmds.is_empty(), "{ctx}");
                    assert_eq!(app.log.back().unwrap().text, "prepare/backup names no rollback", "{ctx}");
                }
                KeyAction::Note => assert_eq!(
                    app.overlay,
                    Overlay::Note { key: "prepare/backup".into(), input: String::new(), seen: None },
                    "{ctx}"
                ),
                KeyAction::ShiftWeights => assert_eq!(app.overlay, Overlay::ShiftTo { input: String::new() }, "{ctx}"),
                KeyAction::StartRollout => {
                    assert_eq!(cmds, vec![Command::PlanRollout { control: Control::Start }], "{ctx}")
                }
                KeyAction::PromoteRollout => {
                    assert_eq!(cmds, vec![Command::PlanRollout { control: Control::Promote }], "{ctx}")
                }
                KeyAction::AbortRollout => {
                    assert_eq!(cmds, vec![Command::PlanRollout { control: Control::Abort }], "{ctx}")
                }
                KeyAction::PauseRollout => assert_eq!(cmds, vec![Command::PauseRollout], "{ctx}"),
            }
        }
    }
}

#[test]
fn checklist_keys_do_nothing_outside_the_checklist() {
    for pane in Pane::ALL.into_iter().filter(|p| *p != Pane::Checklist) {
        let mut app = demo_app();
        app.focus = pane;
        assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
        assert!(update(&mut app, key(KeyCode::Char(' '))).is_empty());
        assert!(app.checklist.ticks.is_empty() && app.runs.is_empty(), "{pane:?}");
    }
}

#[test]
fn enter_runs_a_check_which_finishes_when_fresh_data_has_arrived() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('5')));
    app.selected.insert(Pane::Checklist, 7); // validate/redis
    assert_eq!(app.selected_item(), Some(("validate".into(), "redis".into())));
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::Refresh]);
    assert!(matches!(app.runs["validate/redis"], CheckRun::Running { .. }));
    // Older data does not finish it; a new round of every source does.
    app.now = t0() + Duration::from_secs(1);
    for mut e in demo_events(false) {
        e.at = t0() + Duration::from_secs(2);
        update(&mut app, Event::Live(e));
    }
    let CheckRun::Done { outcome, detail, .. } = &app.runs["validate/redis"] else { panic!("still running") };
    assert_eq!(*outcome, cutover::status::CheckOutcome::Fail);
    assert!(detail.contains("staging-web-2: security-group path to staging-cache: BLOCKED"), "{detail}");
    assert!(app.log.iter().any(|l| l.text.starts_with("check validate/redis FAILED")));
}

/// A check run that passed is no pass once the live reading fails: its row
/// says so, and the detail line gives the live reading before the old one.
#[test]
fn a_check_that_passed_when_run_shows_the_live_failure_since() {
    use cutover::status::CheckOutcome;
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('5')));
    app.selected.insert(Pane::Checklist, 9);
    assert_eq!(app.selected_item(), Some(("validate".into(), "key-counts".into())));
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::Refresh]);
    // A round of every source, staging's Redis holding `staging_keys` (None: not read).
    let round = |app: &mut App, secs: u64, staging_keys: Option<u64>| {
        app.now = t0() + Duration::from_secs(secs);
        for mut e in demo_events(false) {
            e.at = t0() + Duration::from_secs(secs + 1);
            if let Update::Redis { endpoint, result } = &mut e.update
                && endpoint == "staging-cache"
            {
                match (staging_keys, result.as_mut()) {
                    (Some(n), Ok(info)) => info.keys = n,
                    _ => *result = Err("timed out after 2 s".into()),
                }
            }
            update(app, Event::Live(e));
        }
    };
    // Staging holds every key: the run passes.
    round(&mut app, 1, Some(202));
    let CheckRun::Done { outcome, .. } = &app.runs["validate/key-counts"] else { panic!("still running") };
    assert_eq!(*outcome, CheckOutcome::Pass);
    let row = |app: &App| {
        let s = screen(app, 160, 48);
        s.lines().find(|l| l.contains("Key counts match")).unwrap_or_else(|| panic!("{s}")).to_string()
    };
    assert!(row(&app).contains("✔ passed "), "{}", row(&app));
    // Then staging loses them.
    round(&mut app, 5, Some(0));
    assert!(matches!(app.runs["validate/key-counts"], CheckRun::Done { outcome: CheckOutcome::Pass, .. }));
    assert!(row(&app).contains("✘ live: FAIL now"), "{}", row(&app));
    let s = screen(&app, 160, 48);
    assert!(s.contains("live now: prod-cache 202 keys, staging-cache 0 keys"), "{s}");
    // Then staging cannot be read: the pass recorded is shown, with no live reading behind it.
    round(&mut app, 9, None);
    assert!(row(&app).contains("✔ passed, live ?"), "{}", row(&app));
    let s = screen(&app, 160, 48);
    assert!(s.contains("live now: staging-cache unavailable: timed out after 2 s"), "{s}");
}

/// A side as the shapes worker reads it: one instance of `instance_type` on `ami`.
fn side_shape(env: &str, instance_type: &str, ami: &str) -> cutover::analysis::parity::SideShape {
    cutover::analysis::parity::SideShape {
        environment: env.into(),
        load_balancer: None,
        target_groups: vec![],
        autoscaling_groups: vec![],
        instances: vec![cutover::analysis::parity::InstanceShape {
            id: format!("i-0{env}web1"),
            name: Some(format!("{env}-web-1")),
            instance_type: instance_type.into(),
            image_id: Some(ami.into()),
            zone: "eu-west-1a".into(),
            imdsv2_required: Some(true),
            public_ip: None,
            security_groups: vec![],
            state: "running".into(),
        }],
        groups: vec![],
        redis_groups: vec![],
        alarms: vec![],
        redis: vec![],
    }
}

/// Both sides' shapes, read at `at`: staging on `staging_type`, production on
/// t3.micro, each on its own AMI.
fn shapes_event(staging_type: &str, at: SystemTime) -> LiveEvent {
    let shapes = [side_shape("production", "t3.micro", "ami-0old"), side_shape("staging", staging_type, "ami-0new")]
        .into_iter()
        .map(|s| (s.environment.clone(), s))
        .collect();
    LiveEvent { at, update: Update::Shapes(Ok(shapes)) }
}

/// The demo app with a `parity` check (validate/parity, row 8) and the
/// AMIs' difference allowed, after the demo's events and `shapes`.
fn parity_app(shapes: LiveEvent) -> App {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[[phases.items]]\nid = \"copy\"",
        "[[phases.items]]\nid = \"parity\"\ntitle = \"No drift from production\"\nkind = \"check\"\ncheck = \"parity\"\n\n[[phases.items]]\nid = \"copy\"",
    ) + "\n[parity]\nallow = [{ what = \"instances.ami\", reason = \"staging runs the new image\" }]\n";
    let rb = cutover::runbook::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
    let mut app = app_of(rb);
    for e in demo_events(false).into_iter().chain([shapes]) {
        update(&mut app, Event::Live(e));
    }
    app.log.clear();
    app
}

#[test]
fn parity_pane_shows_drift_with_both_values_and_allowed_differences_with_the_runbooks_reason() {
    let mut app = parity_app(shapes_event("t3.small", t0() - Duration::from_secs(3)));
    assert!(!screen(&app, 160, 48).contains("7 Parity"), "closed until opened");
    update(&mut app, key(KeyCode::Char('7')));
    assert_eq!((app.focus, app.parity_open), (Pane::Parity, true));
    snap_both("parity", &mut app);
    for (w, h) in [(80, 24), (160, 48)] {
        update(&mut app, key(KeyCode::Char('z')));
        let s = screen(&app, w, h);
        update(&mut app, key(KeyCode::Esc));
        let title = s.lines().find(|l| l.contains("7 Parity")).unwrap_or_else(|| panic!("no title:\n{s}"));
        assert!(title.contains("1 drift") && title.contains("3s ago") && title.contains("1 allowed"), "{title}");
        let lines: Vec<&str> = s.lines().collect();
        let at =
            |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{s}"));
        let sides = at("production → staging");
        let drift = at("instances.type");
        assert!(lines[drift].contains("DRIFT") && drift == sides + 1, "{s}");
        assert!(lines[drift + 1].contains("t3.micro → t3.small"), "both values, from → to: {s}");
        let allowed = at("instances.ami");
        assert!(lines[allowed].contains("allowed") && allowed > drift, "drift first: {s}");
        assert!(lines[allowed + 1].contains("ami-0old → ami-0new"), "{s}");
        assert!(lines[allowed + 2].contains("why: staging runs the new image"), "{s}");
    }
    // Unzoomed at 80×24 too: the count, the age and both values.
    let s = screen(&app, 80, 24);
    assert!(s.lines().any(|l| l.contains("7 Parity") && l.contains("1 drift") && l.contains("3s ago")), "{s}");
    assert!(s.contains("t3.micro → t3.small"), "{s}");
    // j moves over the differences; the Log takes its place back when focused.
    update(&mut app, key(KeyCode::Char('j')));
    assert_eq!(app.selected(Pane::Parity), 1);
    update(&mut app, key(KeyCode::Char('6')));
    let s = screen(&app, 80, 24);
    assert!(s.contains("6 Log") && !s.contains("7 Parity"), "{s}");
    // The same comparison `cutover diff` and the parity check make.
    let check = app.snap.checks.iter().find(|c| c.item == "parity").unwrap();
    assert_eq!(check.outcome, cutover::status::CheckOutcome::Fail);
    assert!(check.detail.contains("instances.type (instances): t3.micro → t3.small"), "{}", check.detail);
}

/// The Parity pane's title says "no drift" in green only of a whole, fresh
/// comparison: sides whose Redis could not be read (nor its rules, with no
/// groups) make it "no drift seen, 4 not compared" in amber, as the parity
/// check is unknown.
#[test]
fn the_parity_panes_no_drift_is_green_only_when_everything_was_compared() {
    let mut shapes = [side_shape("production", "t3.micro", "ami-0old"), side_shape("staging", "t3.micro", "ami-0new")];
    for (shape, name) in shapes.iter_mut().zip(["prod-cache", "staging-cache"]) {
        let failed = cutover::analysis::parity::RedisRead::Failed { name: name.into(), error: "timed out".into() };
        shape.redis = vec![failed];
    }
    let at = t0() - Duration::from_secs(3);
    let event =
        LiveEvent { at, update: Update::Shapes(Ok(shapes.into_iter().map(|s| (s.environment.clone(), s)).collect())) };
    let mut app = parity_app(event);
    update(&mut app, key(KeyCode::Char('7')));
    let s = screen(&app, 160, 48);
    let title = s.lines().find(|l| l.contains("7 Parity")).unwrap_or_else(|| panic!("no title:\n{s}"));
    assert!(title.contains(" no drift seen, 4 not compared "), "{title}");
    let check = app.snap.checks.iter().find(|c| c.item == "parity").unwrap();
    assert_eq!(check.outcome, cutover::status::CheckOutcome::Unknown, "{}", check.detail);
}

/// A difference too long for one line (a cluster whose primaries disagree
/// gives such values) takes a line per side: the `to` value starts on its
/// own line, never cut off behind the `from` one.
#[test]
fn a_parity_difference_too_long_for_one_line_shows_each_sides_value_on_its_own_line() {
    let long = format!("t3.small-{}", "x".repeat(70));
    let mut app = parity_app(shapes_event(&long, t0() - Duration::from_secs(3)));
    update(&mut app, key(KeyCode::Char('7')));
    update(&mut app, key(KeyCode::Char('z')));
    for (w, h) in [(80, 24), (160, 48)] {
        let s = screen(&app, w, h);
        let lines: Vec<&str> = s.lines().collect();
        let drift = lines.iter().position(|l| l.contains("instances.type")).unwrap_or_else(|| panic!("{s}"));
        if w == 80 {
            assert!(lines[drift + 1].contains("  production: t3.micro"), "{s}");
            assert!(lines[drift + 2].contains("  staging:    t3.small-xxx"), "{s}");
        } else {
            assert!(lines[drift + 1].contains(&format!("t3.micro → {long}")), "one line where it fits: {s}");
        }
    }
}

#[test]
fn enter_on_a_parity_check_waits_for_fresh_shapes_not_only_the_fast_sources() {
    let mut app = parity_app(shapes_event("t3.small", t0() - Duration::from_secs(3)));
    update(&mut app, key(KeyCode::Char('5')));
    app.selected.insert(Pane::Checklist, 8); // validate/parity
    assert_eq!(app.selected_item(), Some(("validate".into(), "parity".into())));
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::Refresh]);
    // The drift is fixed; every fast source reports again, the shapes not yet.
    app.now = t0() + Duration::from_secs(1);
    for mut e in demo_events(false) {
        e.at = t0() + Duration::from_secs(2);
        update(&mut app, Event::Live(e));
    }
    assert!(
        matches!(app.runs["validate/parity"], CheckRun::Running { .. }),
        "judged on shapes read before Enter: {:?}",
        app.runs["validate/parity"]
    );
    update(&mut app, Event::Live(shapes_event("t3.micro", t0() + Duration::from_secs(4))));
    let CheckRun::Done { outcome, detail, .. } = &app.runs["validate/parity"] else { panic!("still running") };
    assert_eq!((*outcome, detail.as_str()), (cutover::status::CheckOutcome::Pass, "no drift (1 allowed differences)"));
}

fn redis_ingress_plan() -> cutover::drive::actions::ActionPlan {
    cutover::drive::actions::ActionPlan {
        name: "authorize_redis_ingress staging".into(),
        steps: vec![cutover::drive::actions::Step::AuthorizeIngress {
            group_id: "sg-stagingredis".into(),
            port: 6379,
            from_group_id: "sg-batch".into(),
            description: "cutover: demo/staging".into(),
        }],
        before: serde_json::json!([{"instance": "i-0stagweb2", "endpoint": "staging-cache", "path": "BLOCKED"}]),
        after: serde_json::json!(["allow 6379 from sg-batch on sg-stagingredis"]),
        noop: None,
        side: cutover::runbook::Side::Environment("staging".into()),
        out_of_service: None,
    }
}

#[test]
fn enter_on_an_action_plans_it_and_y_applies_it_after_the_popup() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 6);
    assert_eq!(app.selected_item(), Some(("validate".into(), "redis-ingress".into())));
    let cmds = update(&mut app, key(KeyCode::Enter));
    assert_eq!(cmds, vec![Command::PlanAction { key: "validate/redis-ingress".into(), rollback: false }]);
    assert_eq!(app.overlay, Overlay::None, "nothing to confirm until the plan is made");
    update(
        &mut app,
        Event::Planned { key: "validate/redis-ingress".into(), result: Ok(PendingChange::Item(redis_ingress_plan())) },
    );
    assert_eq!(app.overlay, Overlay::Confirm { key: "validate/redis-ingress".into() });
    snap_both("confirm_action", &mut app);
    // Other keys do not confirm.
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(update(&mut app, key(KeyCode::Char('q'))).is_empty(), "q does not quit past a pending change");
    assert_eq!(
        update(&mut app, key(KeyCode::Char('y'))),
        vec![Command::Apply { key: "validate/redis-ingress".into() }]
    );
    assert_eq!(app.overlay, Overlay::None);
    let cmds = update(
        &mut app,
        Event::ActionDone {
            key: "validate/redis-ingress".into(),
            result: Ok("authorize_redis_ingress staging done".into()),
        },
    );
    assert_eq!(cmds, vec![Command::Refresh]);
    assert!(app.action_results["validate/redis-ingress"].ok);
    assert!(screen(&app, 160, 48).contains("✔ done"));
}

/// An item found done after a run that stopped after its intent: Enter
/// only plans it, and its `applied` line (which starts a time gate after
/// it) is written only once a person confirms; a plain nothing-to-do is
/// only said.
#[test]
fn an_item_found_done_is_recorded_only_after_the_popup() {
    let mut app = demo_app();
    let done = cutover::drive::actions::ActionPlan {
        steps: Vec::new(),
        noop: Some("sg-stagingredis already allows 6379 from sg-batch".into()),
        ..redis_ingress_plan()
    };
    let item = "validate/redis-ingress".to_string();
    update(&mut app, Event::Planned { key: item.clone(), result: Ok(PendingChange::Item(done.clone())) });
    assert_eq!(app.overlay, Overlay::None, "nothing to do, nothing to confirm");
    update(&mut app, Event::Planned { key: item.clone(), result: Ok(PendingChange::FoundDone(done)) });
    assert_eq!(app.overlay, Overlay::Confirm { key: item.clone() });
    let s = screen(&app, 160, 48);
    assert!(s.contains("record it as applied?"), "{s}");
    assert_eq!(update(&mut app, key(KeyCode::Char('y'))), vec![Command::Apply { key: item }]);
}

/// An alarm whose OK says nothing (blind to its side, or set so it never
/// goes off) is never shown as a green OK: the Alarms pane says "OK, blind"
/// and why, as `status` does.
#[test]
fn a_blind_alarms_ok_is_not_shown_as_a_plain_ok() {
    let mut app = demo_app();
    let why = "its statistic Average of HTTPCode_Target_5XX_Count is always 1";
    let alarms = vec![
        AlarmState {
            name: "demo-staging-5xx".into(),
            state: "OK".into(),
            blind: Some(why.into()),
            ..Default::default()
        },
        AlarmState { name: "demo-prod-5xx".into(), state: "OK".into(), ..Default::default() },
    ];
    update(&mut app, Event::Live(LiveEvent { at: t0(), update: Update::Alarms(Ok(alarms)) }));
    let s = screen(&app, 160, 48);
    assert!(s.contains("demo-staging-5xx         OK, blind"), "{s}");
    assert!(s.contains("  alarm demo-staging-5xx: its statistic Average of HTTPCode_Target_5XX_Count"), "{s}");
    assert!(s.contains("demo-prod-5xx            OK"), "{s}");
    let text = cutover::status::text::render(&app.snap);
    assert!(text.contains(&format!("demo-staging-5xx         OK, blind: alarm demo-staging-5xx: {why}")), "{text}");
}

/// In a runbook whose sides are in accounts and regions of their own, the
/// confirm popup names the account and region of the side the change is
/// made on (new production's, for an item on it), not the cockpit's own
/// (the `[dns]` side's); a side not read yet is `?`, never another's.
#[test]
fn the_confirm_popup_names_the_account_and_region_of_the_side_changed() {
    let mut app = shared_dns_app(&[
        (cutover::runbook::Side::Dns, "111111111111"),
        (cutover::runbook::Side::Environment("old".into()), "222222222222"),
    ]);
    let plan = |env: &str| cutover::drive::actions::ActionPlan {
        side: cutover::runbook::Side::Environment(env.into()),
        name: format!("set_stickiness {env}"),
        ..redis_ingress_plan()
    };
    update(
        &mut app,
        Event::Planned { key: "validate/stickiness".into(), result: Ok(PendingChange::Item(plan("old"))) },
    );
    let s = screen(&app, 160, 48);
    assert!(s.contains("(validate/stickiness) in [environments.old] account 222222222222, eu-west-1"), "{s}");
    update(&mut app, key(KeyCode::Esc));
    // New production's identity is not read yet: not the cockpit's account.
    update(
        &mut app,
        Event::Planned { key: "validate/stickiness".into(), result: Ok(PendingChange::Item(plan("new"))) },
    );
    let s = screen(&app, 160, 48);
    assert!(s.contains("(validate/stickiness) in [environments.new] account ?, "), "{s}");
    assert!(!s.contains("account 111111111111"), "{s}");
}

/// A plan that arrives while the person types elsewhere opens no popup:
/// the `y` of "ready" in a note would otherwise confirm it unread.
#[test]
fn a_plan_arriving_while_a_note_is_typed_does_not_take_its_keys() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 3);
    update(&mut app, key(KeyCode::Char('n')));
    chars(&mut app, "read");
    let plan = || Event::Planned {
        key: "validate/redis-ingress".into(),
        result: Ok(PendingChange::Item(redis_ingress_plan())),
    };
    assert!(update(&mut app, plan()).is_empty());
    assert!(matches!(app.overlay, Overlay::Note { .. }), "{:?}", app.overlay);
    assert!(app.pending_change.is_none());
    assert!(app.log.back().unwrap().text.contains("planned while another window was open"), "{:?}", app.log.back());
    assert!(chars(&mut app, "y").is_empty(), "y is typed into the note");
    let note = cutover::store::checklist::Edit::Note {
        key: "prepare/backup".into(),
        text: Some("ready".into()),
        over: cutover::store::checklist::NoteOver::Seen(None),
    };
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::EditChecklist(note)]);
    // Asked again with no window open, it is shown.
    update(&mut app, plan());
    assert_eq!(app.overlay, Overlay::Confirm { key: "validate/redis-ingress".into() });
}

/// Quitting stops a change being applied part-way (only its intent is
/// audited): the first press says so, the second quits anyway.
#[test]
fn quit_while_a_change_is_applied_warns_once_before_quitting() {
    let mut app = demo_app();
    let plan =
        Event::Planned { key: "validate/redis-ingress".into(), result: Ok(PendingChange::Item(redis_ingress_plan())) };
    update(&mut app, plan);
    assert_eq!(
        update(&mut app, key(KeyCode::Char('y'))),
        vec![Command::Apply { key: "validate/redis-ingress".into() }]
    );
    assert!(update(&mut app, key(KeyCode::Char('q'))).is_empty());
    assert!(!app.quit);
    assert!(
        app.log
            .back()
            .unwrap()
            .text
            .starts_with("validate/redis-ingress is still being applied: quitting now stops it"),
        "{:?}",
        app.log.back()
    );
    let ctrl_c = || Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(update(&mut app, ctrl_c()), vec![Command::Quit], "the second press quits anyway");
    // A warning is about what was applying then: the next change warns again.
    let mut app = demo_app();
    let apply = |app: &mut App| {
        update(app, Event::Planned { key: "k".into(), result: Ok(PendingChange::Item(redis_ingress_plan())) });
        assert_eq!(update(app, key(KeyCode::Char('y'))), vec![Command::Apply { key: "k".into() }]);
    };
    apply(&mut app);
    assert!(update(&mut app, key(KeyCode::Char('q'))).is_empty());
    update(&mut app, Event::ActionDone { key: "k".into(), result: Err("refused".into()) });
    apply(&mut app);
    assert!(update(&mut app, key(KeyCode::Char('q'))).is_empty(), "warned again for the second change");
    assert!(!app.quit);
    // Once it has finished, quit is at once.
    update(&mut app, Event::ActionDone { key: "k".into(), result: Err("refused".into()) });
    assert_eq!(update(&mut app, ctrl_c()), vec![Command::Quit]);
    assert!(app.quit);
}

#[test]
fn n_cancels_a_planned_change_and_read_only_never_plans() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 6);
    update(
        &mut app,
        Event::Planned { key: "validate/redis-ingress".into(), result: Ok(PendingChange::Item(redis_ingress_plan())) },
    );
    assert!(update(&mut app, key(KeyCode::Char('n'))).is_empty());
    assert!(app.pending_change.is_none());
    assert_eq!(app.log.back().unwrap().text, "validate/redis-ingress: cancelled, nothing was changed");
    // A plan that changes nothing opens no popup.
    let mut noop = redis_ingress_plan();
    noop.steps.clear();
    noop.noop = Some("every instance of staging already reaches its Redis".into());
    update(&mut app, Event::Planned { key: "validate/redis-ingress".into(), result: Ok(PendingChange::Item(noop)) });
    assert_eq!(app.overlay, Overlay::None);
    // The rollback key plans the item's rollback.
    assert_eq!(
        update(&mut app, key(KeyCode::Char('b'))),
        vec![Command::PlanAction { key: "validate/redis-ingress".into(), rollback: true }]
    );
    // Read-only: refused before anything is planned; the refusal goes to the loop to be audited.
    app.header.read_only = true;
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        vec![Command::Refused { action: "authorize_redis_ingress staging (validate/redis-ingress)".into() }]
    );
    assert_eq!(
        update(&mut app, key(KeyCode::Char('b'))),
        vec![Command::Refused { action: "revoke_redis_ingress staging (validate/redis-ingress)".into() }]
    );
    assert!(app.log.back().unwrap().text.starts_with("refused: read-only"));
}

#[test]
fn space_ticks_and_unticks_a_manual_item_but_not_a_check() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 3);
    update(&mut app, key(KeyCode::Char(' ')));
    assert!(app.checklist.ticks.contains_key("prepare/backup"));
    update(&mut app, key(KeyCode::Char(' ')));
    assert!(!app.checklist.ticks.contains_key("prepare/backup"));
    app.selected.insert(Pane::Checklist, 1); // prepare/alarms, a check
    assert!(update(&mut app, key(KeyCode::Char(' '))).is_empty());
    assert!(app.checklist.ticks.is_empty());
}

/// A cockpit opened while the shared store did not answer has not read the
/// checklist: an item a teammate ticked shows unticked, so Space changes
/// nothing (a tick would land over theirs) until the team poll reads it.
#[test]
fn space_changes_nothing_while_the_shared_checklist_is_not_read() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 3);
    app.checklist_unread = Some("S3 GetObject: SlowDown".into());
    assert!(update(&mut app, key(KeyCode::Char(' '))).is_empty());
    assert!(app.checklist.ticks.is_empty());
    let last = &app.log.back().unwrap().text;
    assert!(last.starts_with("prepare/backup: not changed: the shared checklist is not read yet"), "{last}");
    assert!(screen(&app, 160, 48).contains("NOT READ, ticks unknown"));
    app.checklist_unread = None;
    assert!(!update(&mut app, key(KeyCode::Char(' '))).is_empty());
    assert!(app.checklist.ticks.contains_key("prepare/backup"));
}

/// A tick shown at once whose save failed (a full disk, S3 unreachable)
/// does not stay on the pane as done: the saved checklist comes back, and the
/// log says so. A later edit still on its way waits for its own answer.
#[test]
fn a_tick_that_was_not_saved_does_not_stay_ticked() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 3);
    update(&mut app, key(KeyCode::Char(' ')));
    app.checklist_edits = 1;
    assert!(app.checklist.ticks.contains_key("prepare/backup"), "shown at once");
    update(&mut app, Event::ChecklistSaved(Err("No space left on device (os error 28)".into()), Instant::now()));
    assert!(!app.checklist.ticks.contains_key("prepare/backup"), "an unsaved tick is not shown as done");
    let last = &app.log.back().unwrap().text;
    assert!(last.starts_with("checklist NOT saved: No space left on device"), "{last}");
    assert!(last.ends_with("the pane shows the saved checklist again"), "{last}");
    // Saved, then a second edit: the first one's answer arrives while the
    // second is still on its way; the second fails: back to the first's state.
    update(&mut app, key(KeyCode::Char(' ')));
    app.checklist_edits = 1;
    let saved = app.checklist.clone();
    update(&mut app, Event::ChecklistSaved(Ok(saved.clone()), Instant::now()));
    update(&mut app, key(KeyCode::Char('n')));
    chars(&mut app, "rdb-1");
    update(&mut app, key(KeyCode::Enter));
    app.checklist_edits = 1;
    assert_eq!(app.checklist.notes.get("prepare/backup").map(String::as_str), Some("rdb-1"));
    update(&mut app, Event::ChecklistSaved(Err("timed out".into()), Instant::now()));
    assert_eq!(app.checklist, saved, "the tick saved stays; the unsaved note goes");
}

/// A team poll begun before a checklist edit's answer came may not hold
/// the edit (S3 read, then our write, then the poll's answer): it does not
/// put the old checklist back, nor log that the team changed it. A poll
/// begun after the answer shows the team's state.
#[test]
fn a_team_poll_older_than_a_saved_edit_does_not_undo_it() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 3);
    let before = app.checklist.clone();
    update(&mut app, key(KeyCode::Char(' ')));
    app.checklist_edits = 1;
    let saved_at = Instant::now() + Duration::from_secs(10);
    let saved = app.checklist.clone();
    update(&mut app, Event::ChecklistSaved(Ok(saved), saved_at));
    let poll = |checklist: ChecklistState, read_at: Instant| {
        let view = cutover::live::TeamView {
            store: "s3://team-bucket/cutover".into(),
            checklist,
            lease: None,
            present: Vec::new(),
            read_at,
        };
        Event::Live(LiveEvent { at: t0(), update: Update::Team(Ok(view)) })
    };
    update(&mut app, poll(before.clone(), saved_at - Duration::from_millis(500)));
    assert!(app.checklist.ticks.contains_key("prepare/backup"), "the saved tick stays");
    assert!(!app.log.iter().any(|l| l.text.contains("changed by the team")), "nobody else changed it");
    update(&mut app, poll(before, saved_at + Duration::from_millis(500)));
    assert!(!app.checklist.ticks.contains_key("prepare/backup"), "a later poll: someone unticked it");
}

#[test]
fn note_typed_and_saved() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 3);
    update(&mut app, key(KeyCode::Char('n')));
    chars(&mut app, "rdb-1122x");
    update(&mut app, key(KeyCode::Backspace));
    let note = cutover::store::checklist::Edit::Note {
        key: "prepare/backup".into(),
        text: Some("rdb-1122".into()),
        over: cutover::store::checklist::NoteOver::Seen(None),
    };
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::EditChecklist(note)]);
    assert_eq!(app.checklist.notes["prepare/backup"], "rdb-1122");
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn filter_narrows_rows_and_clears() {
    let mut app = demo_app();
    app.focus = Pane::Targets;
    assert_eq!(app.row_count(Pane::Targets), 4);
    update(&mut app, key(KeyCode::Char('/')));
    chars(&mut app, "staging");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.filter, "staging");
    assert_eq!(app.row_count(Pane::Targets), 2);
    update(&mut app, key(KeyCode::Char('/')));
    for _ in 0..7 {
        update(&mut app, key(KeyCode::Backspace));
    }
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.row_count(Pane::Targets), 4);
    // Esc abandons an edit.
    update(&mut app, key(KeyCode::Char('/')));
    chars(&mut app, "zzz");
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.filter, "");
}

#[test]
fn palette_runs_the_chosen_action() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char(':')));
    chars(&mut app, "zoom");
    assert_eq!(app.palette_entries("zoom").len(), 1);
    update(&mut app, key(KeyCode::Enter));
    assert!(app.zoomed);
    assert_eq!(app.overlay, Overlay::None);
    update(&mut app, key(KeyCode::Esc));
    assert!(!app.zoomed, "esc leaves zoom");
}

#[test]
fn pause_holds_live_data_and_resume_applies_it() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('p')));
    let moved = Update::Traffic(Ok(TrafficData {
        zone_id: "Z1".into(),
        last_change: None,
        rollout: None,
        rollout_unread: None,
        audit_unread: None,
        sides: vec![
            SideWeight {
                environment: Some("production".into()),
                set_identifier: "prod".into(),
                weight: Some(70),
                share_percent: 70.0,
                ttl: Some(10),
                values: vec![],
                ..Default::default()
            },
            SideWeight {
                environment: Some("staging".into()),
                set_identifier: "staging".into(),
                weight: Some(30),
                share_percent: 30.0,
                ttl: Some(10),
                values: vec![],
                ..Default::default()
            },
        ],
        shared_by: None,
        types_differ: None,
        unlisted_other_types: None,
    }));
    update(&mut app, Event::Live(LiveEvent { at: t0(), update: moved }));
    assert_eq!(app.snap.traffic.value.as_ref().unwrap()[0].weight, Some(100), "paused: the screen holds still");
    update(&mut app, key(KeyCode::Char('p')));
    assert_eq!(app.snap.traffic.value.as_ref().unwrap()[0].weight, Some(70));
    assert!(
        app.log.iter().any(|l| l.text == "weights changed: production 100 / staging 0 → production 70 / staging 30")
    );
}

/// Paused, the screen holds its readings, and their ages go on counting:
/// ten minutes later the traffic pane does not still say "0s ago".
#[test]
fn paused_readings_grow_older() {
    let mut app = demo_app();
    let now = app.now;
    update(&mut app, Event::Tick(now));
    // A pane's title: from its name to its top right corner.
    let title = |app: &App, pane: &str| {
        let shown = screen(app, 120, 40);
        let line = shown.lines().find(|l| l.contains(pane)).unwrap_or_default().to_string();
        let at = line.find(pane).unwrap_or(0);
        line[at..].split(['┓', '┐']).next().unwrap_or_default().to_string()
    };
    for pane in ["Traffic", "Targets"] {
        assert!(title(&app, pane).contains(" 3s ago "), "{}", title(&app, pane));
    }
    update(&mut app, key(KeyCode::Char('p')));
    update(&mut app, Event::Tick(now + Duration::from_secs(600)));
    for pane in ["Traffic", "Targets"] {
        assert!(title(&app, pane).contains(" 603s ago "), "{}", title(&app, pane));
    }
}

#[test]
fn log_records_target_transitions_but_not_first_readings() {
    let app = app_logged(demo_events(false));
    assert!(app.log.iter().all(|l| !l.text.contains("target ")), "first readings are not news: {:?}", app.log);
    let mut app = app;
    for e in demo_events(true) {
        update(&mut app, Event::Live(LiveEvent { at: t0(), ..e }));
    }
    assert!(
        app.log.iter().any(|l| l.text == "target i-0prodweb1: healthy → unused Target.InvalidState"),
        "{:?}",
        app.log
    );
}

#[test]
fn ctrl_c_quits_even_from_a_text_overlay() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('/')));
    let cmds = update(&mut app, Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert_eq!(cmds, vec![Command::Quit]);
}

#[test]
fn mouse_click_focuses_and_wheel_scrolls() {
    let mut app = demo_app();
    app.size = (160, 48);
    let rects = cutover::tui::layout::panes(
        ratatui::layout::Rect::new(0, 0, 160, 48),
        app.focus,
        false,
        &cutover::tui::rows::content(&app),
    );
    let redis = rects.iter().find(|(p, _)| *p == Pane::Redis).unwrap().1;
    let at =
        |kind| Event::Mouse(MouseEvent { kind, column: redis.x + 3, row: redis.y + 3, modifiers: KeyModifiers::NONE });
    update(&mut app, at(MouseEventKind::Down(MouseButton::Left)));
    assert_eq!(app.focus, Pane::Redis);
    update(&mut app, at(MouseEventKind::ScrollDown));
    assert_eq!(app.selected(Pane::Redis), 1);
    update(&mut app, at(MouseEventKind::ScrollUp));
    assert_eq!(app.selected(Pane::Redis), 0);
}

#[test]
fn tiny_terminal_gets_a_message_not_a_crash() {
    let app = demo_app();
    let s = screen(&app, 20, 10).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(s, "cutover needs at least 40×12; this terminal is 20×10");
}

#[test]
fn remapped_keys_drive_dispatch_help_and_key_bar() {
    let mut app = demo_app();
    app.keymap = Keymap::default().with_overrides("keys.toml", "quit = \"x\"").unwrap();
    assert!(update(&mut app, key(KeyCode::Char('q'))).is_empty());
    update(&mut app, key(KeyCode::Char('?')));
    let s = screen(&app, 160, 48);
    assert!(s.lines().any(|l| l.contains(" x  quit")), "{s}");
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(update(&mut app, key(KeyCode::Char('x'))), vec![Command::Quit]);
}

#[test]
fn the_theme_colours_what_it_names() {
    let mut app = demo_app();
    app.theme = cutover::tui::theme::Theme::default()
        .with_overrides("theme.toml", "ok = \"#010203\"\nbad = \"#0a0b0c\"")
        .unwrap();
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    term.draw(|f| cutover::tui::view::render(&app, f)).unwrap();
    let buf = term.backend().buffer().clone();
    // `word` on the first row that also shows `row_has`.
    let find = |row_has: &str, word: &str| {
        (0..48u16)
            .find_map(|y| {
                let row: String = (0..160u16).map(|x| buf[(x, y)].symbol().to_string()).collect();
                let start = row.find(row_has)?;
                row[start..].find(word).map(|i| (row[..start + i].chars().count() as u16, y))
            })
            .unwrap_or_else(|| panic!("{word} not on screen"))
    };
    let (x, y) = find("prod-web-1", "healthy");
    assert_eq!(buf[(x, y)].fg, ratatui::style::Color::Rgb(1, 2, 3));
    let (x, y) = find("staging-web-2", "BLOCKED");
    assert_eq!(buf[(x, y)].fg, ratatui::style::Color::Rgb(10, 11, 12));
}

fn shift_plan(from: u8, to: u8, weights: (u8, u8)) -> cutover::drive::shift::ShiftPlan {
    let side = |env: &str, id: &str, weight: u8| cutover::drive::shift::Side {
        environment: env.into(),
        record: cutover::aws::route53::WeightedRecord {
            set_identifier: id.into(),
            weight,
            ttl: Some(10),
            values: vec!["127.0.0.1".into()],
            health_check_id: None,
            alias_target: None,
            ..Default::default()
        },
        others: Vec::new(),
    };
    cutover::drive::shift::ShiftPlan {
        zone_id: "Z1".into(),
        name: "app.demo.test.".into(),
        record_type: "A".into(),
        from: side("production", "prod", from),
        to: side("staging", "staging", to),
        weights,
        others: Vec::new(),
        unchecked: Vec::new(),
    }
}

#[test]
fn w_asks_for_a_percent_plans_the_shift_and_y_applies_it() {
    let mut app = demo_app();
    assert!(update(&mut app, key(KeyCode::Char('w'))).is_empty());
    assert_eq!(app.overlay, Overlay::ShiftTo { input: String::new() });
    // Not a percent: nothing is planned.
    for c in ['1', '5', '0'] {
        update(&mut app, key(KeyCode::Char(c)));
    }
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(app.log.back().unwrap().text.starts_with("`150` is not a percent"), "{:?}", app.log.back());
    update(&mut app, key(KeyCode::Char('w')));
    for c in ['3', '0'] {
        update(&mut app, key(KeyCode::Char(c)));
    }
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::PlanShift { percent: 30 }]);
    let plan = shift_plan(100, 0, (70, 30));
    update(&mut app, Event::Planned { key: "weights".into(), result: Ok(PendingChange::Shift(Box::new(plan))) });
    assert_eq!(app.overlay, Overlay::Confirm { key: "weights".into() });
    let text = screen(&app, 160, 48);
    assert!(text.contains("shift weights: staging to 30%"), "{text}");
    assert!(text.contains(r#"before {"production":100,"staging":0}"#), "{text}");
    assert!(text.contains(r#"after  {"production":70,"staging":30}"#), "{text}");
    assert_eq!(update(&mut app, key(KeyCode::Char('y'))), vec![Command::Apply { key: "weights".into() }]);
    // What could not be checked before it is in the popup, not only the log file.
    let mut plan = shift_plan(100, 0, (70, 30));
    let (said, why) = (
        "NOT CHECKED: whether staging has a target in service to take the share this raises",
        "(DescribeTargetGroups: AccessDenied: not authorized)",
    );
    plan.unchecked = vec![format!("{said} {why}")];
    update(&mut app, Event::Planned { key: "weights".into(), result: Ok(PendingChange::Shift(Box::new(plan))) });
    let text = screen(&app, 160, 48);
    // The popup wraps it after `raises`.
    assert!(text.contains(said) && text.contains(why), "{text}");
    assert!(update(&mut app, key(KeyCode::Char('n'))).is_empty(), "n applies nothing");
    assert_eq!(app.overlay, Overlay::None);
    // Weights already there: no popup.
    let same = shift_plan(70, 30, (70, 30));
    update(&mut app, Event::Planned { key: "weights".into(), result: Ok(PendingChange::Shift(Box::new(same))) });
    assert_eq!(app.overlay, Overlay::None);
    assert!(app.log.back().unwrap().text.starts_with("weights: nothing to do"), "{:?}", app.log.back());
}

#[test]
fn rollout_keys_plan_start_promote_and_abort_for_confirmation_and_pause_at_once() {
    let mut app = demo_app();
    let cases = [
        ('R', Control::Start, "start the gated rollout", "rollout start"),
        ('+', Control::Promote, "promote: skip the rest of this step's soak", "rollout promote"),
        ('X', Control::Abort, "ABORT the rollout and roll back", "rollout abort"),
    ];
    for (k, control, title, applied_as) in cases {
        assert_eq!(update(&mut app, key(KeyCode::Char(k))), vec![Command::PlanRollout { control }], "{k}");
        assert_eq!(app.overlay, Overlay::None, "nothing to confirm before the plan");
        let lines = vec!["rollback target: 90/10, step 1 (10%)".to_string()];
        update(
            &mut app,
            Event::Planned {
                key: "rollout".into(),
                result: Ok(PendingChange::Rollout { control, lines, step: None, live: None }),
            },
        );
        // Each control is applied under its own key (its answer is its own).
        assert_eq!(app.overlay, Overlay::Confirm { key: applied_as.into() });
        let text = screen(&app, 160, 48);
        assert!(text.contains(title), "{text}");
        assert!(text.contains("rollback target: 90/10"), "{text}");
        assert!(update(&mut app, key(KeyCode::Char('n'))).is_empty());
        assert!(app.pending_change.is_none());
    }
    // Enter on the checklist's rollout action plans the same start.
    app.focus = Pane::Checklist;
    let row = (0..app.row_count(Pane::Checklist))
        .find(|i| {
            app.selected.insert(Pane::Checklist, *i);
            app.selected_item() == Some(("traffic".into(), "rollout".into()))
        })
        .expect("the demo has traffic/rollout");
    app.selected.insert(Pane::Checklist, row);
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::PlanRollout { control: Control::Start }]);
    // Pausing is the safe direction: no popup.
    assert_eq!(update(&mut app, key(KeyCode::Char('P'))), vec![Command::PauseRollout]);
    // A refusal from planning is logged, no popup.
    update(
        &mut app,
        Event::Planned { key: "rollout".into(), result: Err("no rollout is running; nothing to promote".into()) },
    );
    assert_eq!(app.overlay, Overlay::None);
    assert!(app.log.back().unwrap().text.contains("no rollout is running"));
    // Read-only: every one refused before anything is planned or asked.
    app.header.read_only = true;
    for (k, action) in [
        ('w', "shift_weights"),
        ('R', "rollout start"),
        ('+', "rollout promote"),
        ('X', "rollout abort"),
        ('P', "rollout pause"),
    ] {
        assert_eq!(update(&mut app, key(KeyCode::Char(k))), vec![Command::Refused { action: action.into() }], "{k}");
        assert_eq!(app.overlay, Overlay::None, "{k}");
        assert!(app.log.back().unwrap().text.starts_with("refused: read-only"), "{k}");
    }
}

/// Fault injection: the terminal shrunk to 20×10 (and smaller) and back, with
/// every overlay open: every frame draws, nothing panics, and the full-size
/// frame afterwards is the same as before.
#[test]
fn tiny_terminals_draw_every_overlay_and_the_screen_comes_back() {
    let mut app = demo_app();
    let full = screen(&app, 160, 48);
    let overlays = [
        Overlay::None,
        Overlay::Help,
        Overlay::Errors,
        Overlay::Palette { input: "pa".into(), selected: 0 },
        Overlay::Filter { input: "staging".into() },
        Overlay::ShiftTo { input: "30".into() },
        Overlay::Note { key: "prepare/backup".into(), input: "note".into(), seen: None },
    ];
    // Whether the whole message fits; where it does not, its start is drawn.
    let sizes = [(20, 10, true), (10, 3, false), (1, 1, false), (200, 2, true), (2, 200, true)];
    let mut frames = 0;
    for (w, h, whole) in sizes {
        update(&mut app, Event::Resize(w, h));
        // What a tiny terminal must show, whatever overlay is open: the size message.
        let message: String = format!("cutover needs at least 40×12; this terminal is {w}×{h}")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for o in &overlays {
            app.overlay = o.clone();
            for zoomed in [false, true] {
                app.zoomed = zoomed;
                let drawn: String = screen(&app, w, h).chars().filter(|c| !c.is_whitespace()).collect();
                assert!(!drawn.is_empty(), "{w}×{h} {o:?}: nothing drawn");
                if whole {
                    assert_eq!(drawn, message, "{w}×{h} {o:?}");
                } else {
                    assert!(message.starts_with(&drawn), "{w}×{h} {o:?}: drew {drawn:?}, not the size message");
                }
                frames += 1;
            }
        }
    }
    app.overlay = Overlay::None;
    app.zoomed = false;
    update(&mut app, Event::Resize(160, 48));
    assert_eq!(screen(&app, 160, 48), full);
    common::record(
        "terminal",
        format!(
            "{frames} frames at {} with each of the {} overlays, zoomed and not, drew the size message (whole \
             where it fits, its start where it does not) without a panic; back at 160×48 the screen was identical \
             to before",
            sizes.iter().map(|(w, h, _)| format!("{w}×{h}")).collect::<Vec<_>>().join(", "),
            overlays.len()
        ),
    );
}

#[test]
fn a_running_redis_copy_shows_a_gauge_until_it_is_done() {
    let mut app = demo_app();
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 8);
    assert_eq!(app.selected_item(), Some(("validate".into(), "copy".into())));
    let line = "copied 50 keys of ~200 (0 skipped), 25 keys/s".to_string();
    let cmds = update(&mut app, Event::ActionProgress { key: "validate/copy".into(), done: 50, total: 200, line });
    assert!(cmds.is_empty());
    let s = screen(&app, 160, 48);
    assert!(s.contains("▰▰▰▱▱▱▱▱▱▱ 25%     Copy production keys"), "{s}");
    assert!(s.contains("copied 50 keys of ~200 (0 skipped), 25 keys/s"), "the selected item's detail: {s}");
    update(&mut app, Event::ActionDone { key: "validate/copy".into(), result: Ok("copied 200 keys".into()) });
    let s = screen(&app, 160, 48);
    assert!(!s.contains("25%") && !s.contains("copied 50 keys") && s.contains("✔ done"), "{s}");
}

/// `--read-only` in the cockpit: every key bound in every pane, pressed on
/// every row and chosen from the palette, then confirmed with `y`, plans or
/// applies nothing; each mutating action says it was refused.
#[test]
fn read_only_no_key_in_any_pane_or_row_plans_or_applies_a_change() {
    let mutating = |c: &Command| {
        matches!(
            c,
            Command::PlanAction { .. }
                | Command::PlanShift { .. }
                | Command::PlanRollout { .. }
                | Command::PauseRollout
                | Command::Apply { .. }
                | Command::EditChecklist(_)
        )
    };
    let fresh = |pane: Pane, row: usize| {
        let mut app = demo_app();
        app.header.read_only = true;
        app.focus = pane;
        app.selected.insert(pane, row);
        app
    };
    let (mut presses, mut refused) = (0, std::collections::BTreeSet::new());
    for pane in Pane::ALL {
        let rows = fresh(pane, 0).row_count(pane).max(1);
        let bindings: Vec<_> = fresh(pane, 0).keymap.for_pane(pane).into_iter().cloned().collect();
        for row in 0..rows {
            // (action, Some(key) pressed, or None: chosen as palette entry i)
            let mut tries: Vec<(KeyAction, Result<KeyEvent, usize>)> = Vec::new();
            for b in &bindings {
                tries.extend(b.keys.iter().map(|k| (b.action, Ok(KeyEvent::new(k.code, k.mods)))));
            }
            for (i, (action, _)) in fresh(pane, row).palette_entries("").into_iter().enumerate() {
                tries.push((action, Err(i)));
            }
            for (action, how) in tries {
                let mut app = fresh(pane, row);
                let mut cmds = match how {
                    Ok(k) => update(&mut app, Event::Key(k)),
                    Err(i) => {
                        app.overlay = Overlay::Palette { input: String::new(), selected: i };
                        update(&mut app, key(KeyCode::Enter))
                    }
                };
                cmds.extend(update(&mut app, key(KeyCode::Char('y'))));
                assert!(!cmds.iter().any(mutating), "{pane:?} row {row} {action:?}: {cmds:?}");
                assert!(app.pending_change.is_none(), "{pane:?} row {row} {action:?}");
                if app.log.iter().any(|l| l.text.starts_with("refused: read-only")) {
                    refused.insert(format!("{action:?}"));
                }
                presses += 1;
            }
        }
    }
    let must = [
        "ShiftWeights",
        "StartRollout",
        "PauseRollout",
        "PromoteRollout",
        "AbortRollout",
        "RunCheck",
        "Rollback",
        "Tick",
    ];
    for a in must {
        assert!(refused.contains(a), "{a} was never refused: {refused:?}");
    }
    // A note typed and submitted: shared state too, refused.
    let mut app = fresh(Pane::Checklist, 0);
    app.overlay = Overlay::Note { key: "prepare/x".into(), input: "looks fine".into(), seen: None };
    let cmds = update(&mut app, key(KeyCode::Enter));
    assert!(!cmds.iter().any(mutating), "{cmds:?}");
    assert!(app.log.iter().any(|l| l.text.starts_with("refused: read-only; notes")), "{:?}", app.log);
    // Each refused edit goes to the loop to be audited as refused, as every
    // refused change is (it was only logged on screen).
    assert!(
        matches!(&cmds[..], [Command::ChecklistRefused(cutover::store::checklist::Edit::Note { key, text: Some(t), .. })] if key == "prepare/x" && t == "looks fine"),
        "{cmds:?}"
    );
    let ticks = (0..fresh(Pane::Checklist, 0).row_count(Pane::Checklist)).filter(|row| {
        let mut app = fresh(Pane::Checklist, *row);
        let k = app.keymap.for_pane(Pane::Checklist).into_iter().find(|b| b.action == KeyAction::Tick).unwrap().keys[0];
        let cmds = update(&mut app, Event::Key(KeyEvent::new(k.code, k.mods)));
        matches!(&cmds[..], [Command::ChecklistRefused(cutover::store::checklist::Edit::Tick { .. })])
    });
    assert!(ticks.count() > 0, "a manual item's tick is audited as refused");
    common::record(
        "read-only",
        format!(
            "The cockpit with `--read-only`: {presses} presses (every key bound in each of the 6 panes, on every row, \
             and every palette entry, each followed by `y`) planned and applied nothing; {} said \"refused: read-only\"",
            refused.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
        ),
    );
}

/// A change with no rollback: the popup says so and applies only once the
/// environment's name is typed; `y`, and a wrong name, do nothing.
#[test]
fn a_terminate_popup_says_there_is_no_rollback_and_needs_the_environments_name_typed() {
    let mut app = demo_app();
    let plan = cutover::drive::actions::ActionPlan {
        name: "terminate_instances production".into(),
        steps: vec![cutover::drive::actions::Step::Terminate {
            instance_ids: vec!["i-0prodweb1".into()],
            amis: [("i-0prodweb1".to_string(), "ami-0abc".to_string())].into(),
        }],
        before: serde_json::json!({"i-0prodweb1": {"state": "stopped", "ami": "ami-0abc"}}),
        after: serde_json::json!({"i-0prodweb1": "terminated"}),
        noop: None,
        side: cutover::runbook::Side::Environment("production".into()),
        out_of_service: Some(("production".into(), "terminating its instances")),
    };
    let key_name = "decommission/terminate".to_string();
    update(&mut app, Event::Planned { key: key_name.clone(), result: Ok(PendingChange::Item(plan)) });
    assert_eq!(app.overlay, Overlay::ConfirmName { key: key_name.clone(), input: String::new() });
    let s = screen(&app, 160, 48);
    assert!(s.contains("NO ROLLBACK EXISTS"), "{s}");
    assert!(s.contains("type production and press enter"), "{s}");
    assert!(s.contains("terminate i-0prodweb1 (AMI ami-0abc) (no rollback)"), "{s}");
    assert!(update(&mut app, key(KeyCode::Char('y'))).is_empty(), "y is not enough");
    update(&mut app, key(KeyCode::Backspace));
    assert!(chars(&mut app, "staging").is_empty());
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty(), "the wrong name applies nothing");
    assert!(app.log.iter().any(|l| l.text.contains("`staging` is not `production`")), "{:?}", app.log);
    assert_eq!(app.overlay, Overlay::ConfirmName { key: key_name.clone(), input: String::new() }, "still asking");
    assert!(chars(&mut app, "production").is_empty());
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::Apply { key: key_name.clone() }]);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn a_cluster_endpoint_gets_a_row_per_node_and_a_down_node_fails_on_its_own_row() {
    use cutover::live::fetch::NodePing;
    use cutover::redis::cluster::Node;
    let single = demo_app().row_count(Pane::Redis);
    let node = |port: u16, primary: bool, slots: &str, up: bool| NodePing {
        node: Node { addr: format!("127.0.0.1:{port}"), primary, slots: slots.into(), failed: !up },
        ping_ms: up.then_some(0.2),
        error: (!up).then(|| "no answer to PING within 700 ms; the cluster marks it failed".to_string()),
    };
    let mut events = demo_events(false);
    events.push(LiveEvent {
        at: t0() - Duration::from_secs(1),
        update: Update::Redis {
            endpoint: "prod-cache".into(),
            result: Ok(RedisInfo {
                ping_ms: 0.4,
                version: "7.0.15".into(),
                role: "master".into(),
                used_memory: 1_200_000,
                keys: 202,
                expiring_keys: 101,
                nodes: vec![
                    node(7000, true, "0-8191", true),
                    node(7001, true, "8192-16383", true),
                    node(7003, false, "8192-16383", false),
                ],
                keyspace_hits: None,
                keyspace_misses: None,
                lookup_counters: vec![],
                lookups: None,
                db: 0,
                run_ids: vec!["prod-cache-cluster-run-id".into()],
                other_dbs: vec![],
                replication_id: None,
                sentinels: vec![],
            }),
        },
    });
    let mut app = app_with(events);
    let prod_rows = app
        .snap
        .environments
        .iter()
        .find(|e| e.name == "production")
        .unwrap()
        .aws
        .value
        .as_ref()
        .unwrap()
        .instances
        .len();
    assert_eq!(app.row_count(Pane::Redis), single + 2 * prod_rows, "each prod instance: one row per node, not one");
    // Only the cluster's rows, so none is scrolled out of the pane.
    app.filter = "127.0.0.1:700".into();
    app.size = (160, 48);
    let text = screen(&app, 160, 48);
    let failing: Vec<&str> = text.lines().filter(|l| l.contains("ok    FAIL :7003")).collect();
    let passing: Vec<&str> =
        text.lines().filter(|l| l.contains("ok    0.2 ms :7000") || l.contains("ok    0.2 ms :7001")).collect();
    assert_eq!((failing.len(), passing.len()), (prod_rows, 2 * prod_rows), "{text}");
    // The selected failing row says which node and why.
    chars(&mut app, "3");
    chars(&mut app, "jj");
    let text = screen(&app, 160, 48);
    assert!(text.contains("replica 127.0.0.1:7003 (8192-16383): no answer"), "{text}");
}

/// The Redis pane's detail says "all three paths ok" only when each path
/// was read and is ok: a failing PING (the reading gone stale) is named
/// instead (it once gave "all three paths ok" beside a PING column saying
/// stale).
#[test]
fn the_redis_detail_says_all_three_paths_ok_only_when_each_path_is_ok() {
    let mut events = demo_events(false);
    let text = screen(&app_with(events.clone()), 160, 48);
    assert!(text.contains("all three paths ok"), "{text}");
    let at = events.iter().map(|e| e.at).max().unwrap() + Duration::from_secs(1);
    for name in ["prod-cache", "staging-cache"] {
        let update = Update::Redis { endpoint: name.into(), result: Err("timed out after 2 s".into()) };
        events.push(LiveEvent { at, update });
    }
    let text = screen(&app_with(events.clone()), 160, 48);
    assert!(!text.contains("all three paths ok"), "{text}");
    assert!(text.contains("PING: stale, the last reading failed (timed out after 2 s)"), "{text}");
    // Never read at all: the error, not "stale".
    events.retain(|e| !matches!(&e.update, Update::Redis { result: Ok(_), .. }));
    let text = screen(&app_with(events), 160, 48);
    assert!(text.contains("PING: timed out after 2 s") && !text.contains("stale, the last"), "{text}");
}

#[test]
fn a_sentinel_endpoints_ping_counts_its_sentinels_and_the_detail_names_the_one_that_is_wrong() {
    use cutover::live::fetch::SentinelPing;
    let sentinel = |n: u8, error: Option<&str>| SentinelPing {
        addr: format!("10.0.1.{n}:26379"),
        ping_ms: error.is_none().then_some(0.3),
        usable: error.is_none().then_some(3),
        error: error.map(str::to_string),
        names_master: error.is_none(),
        group: error.is_none().then_some(3),
    };
    let app_with_sentinels = |sentinels: Vec<SentinelPing>| {
        let mut events = demo_events(false);
        for e in &mut events {
            if let Update::Redis { endpoint, result: Ok(info) } = &mut e.update
                && endpoint == "prod-cache"
            {
                info.sentinels = sentinels.clone();
            }
        }
        app_with(events)
    };
    let with = |sentinels: Vec<SentinelPing>| {
        let mut app = app_with_sentinels(sentinels);
        app.filter = "prod-cache".into();
        screen(&app, 160, 48)
    };
    let text = with(vec![sentinel(1, None), sentinel(2, None), sentinel(3, None)]);
    assert!(text.contains("0.4 ms s:3/3") && !text.contains("sentinel 10.0.1"), "{text}");
    assert!(text.contains("sentinels 3/3: each names the master and can fail it over"), "{text}");
    let text = with(vec![sentinel(1, None), sentinel(2, Some("no answer within 700 ms")), sentinel(3, None)]);
    assert!(text.contains("0.4 ms s:2/3!"), "{text}");
    assert!(text.contains("sentinel 10.0.1.2:26379: no answer within 700 ms"), "{text}");
    assert!(!text.contains("all three paths ok"), "{text}");
    // Counts read on a master one sentinel of three named may be an old
    // master's, cut off with it: the key counts check is unknown, not judged.
    let key_counts = |app: &App| {
        let c = app.snap.checks.iter().find(|c| c.check == "key_counts_match").unwrap();
        (c.outcome, c.detail.clone())
    };
    let named = app_with_sentinels(vec![sentinel(1, None), sentinel(2, None), sentinel(3, None)]);
    assert_ne!(key_counts(&named).0, cutover::status::CheckOutcome::Unknown, "{:?}", key_counts(&named));
    let other = Some("names 10.0.9.9:6379 as master mymaster, not 10.0.1.10:6379");
    let one = app_with_sentinels(vec![sentinel(1, None), sentinel(2, other), sentinel(3, Some("no answer"))]);
    let (outcome, detail) = key_counts(&one);
    assert_eq!(outcome, cutover::status::CheckOutcome::Unknown, "{detail}");
    assert_eq!(
        detail,
        "prod-cache's count may not be its master's: only 1 of the group's 3 sentinels named the master it was \
         read on: half or fewer may name one the others have failed over from"
    );
}

/// Readings made with credentials for another account than the runbook's
/// (a staging account holding the same names as production's) are not the
/// runbook's: no check passes on them, and the header says whose they are.
#[test]
fn checks_read_in_another_account_than_the_runbooks_are_unknown_and_the_header_says_so() {
    use cutover::status::CheckOutcome;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "name = \"demo\"",
        "name = \"demo\"\naccount_id = \"999999999999\"",
        1,
    );
    let rb = cutover::runbook::parse("demo.toml", &text).unwrap();
    let aws_checks = |app: &App| -> Vec<(String, CheckOutcome)> {
        app.snap
            .checks
            .iter()
            .filter(|c| !matches!(c.check.as_str(), "key_counts_match" | "redis_hit_rate"))
            .map(|c| (c.item.clone(), c.outcome))
            .collect()
    };
    let mut app = app_of(rb);
    for e in demo_events(false) {
        update(&mut app, Event::Live(e));
    }
    let checks = aws_checks(&app);
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|(_, o)| *o == CheckOutcome::Unknown), "{checks:?}");
    let detail = &app.snap.checks.iter().find(|c| c.check == "targets_healthy").unwrap().detail;
    assert!(detail.contains("read in account 123456789012, not 999999999999"), "{detail}");
    let s = screen(&app, 160, 48);
    assert!(s.contains("account 123456789012 WRONG: the runbook's is 999999999999"), "{s}");
    // The runbook's own account: the same readings pass where they pass.
    let same = demo_app();
    assert!(aws_checks(&same).iter().any(|(_, o)| *o == CheckOutcome::Pass), "{:?}", aws_checks(&same));
}

/// A runbook that names its account, read before (or without) knowing
/// which account the credentials are in: the checks are unknown, not
/// judged on readings that may be a same-named staging account's.
#[test]
fn a_check_read_before_its_account_is_known_is_unknown() {
    use cutover::status::CheckOutcome;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "name = \"demo\"",
        "name = \"demo\"\naccount_id = \"123456789012\"",
        1,
    );
    let rb = cutover::runbook::parse("demo.toml", &text).unwrap();
    let mut app = app_of(rb.clone());
    for e in demo_events(false) {
        let failed = LiveEvent { at: e.at, update: Update::Identity(Err("Throttling: Rate exceeded".into())) };
        let e = if matches!(e.update, Update::Identity(_)) { failed } else { e };
        update(&mut app, Event::Live(e));
    }
    let check = app.snap.checks.iter().find(|c| c.check == "targets_healthy").unwrap();
    assert_eq!(check.outcome, CheckOutcome::Unknown, "{}", check.detail);
    assert!(
        check
            .detail
            .contains("which account these readings were made in is not known (STS GetCallerIdentity: Throttling"),
        "{}",
        check.detail
    );
    // Read in it: judged.
    let mut app = app_of(rb);
    for e in demo_events(false) {
        update(&mut app, Event::Live(e));
    }
    let check = app.snap.checks.iter().find(|c| c.check == "targets_healthy").unwrap();
    assert_ne!(check.outcome, CheckOutcome::Unknown, "{}", check.detail);
}

/// A runbook over several accounts: a check on a side read in another
/// account than that side's is unknown, however its readings look.
#[test]
fn a_check_on_a_side_read_in_another_account_than_its_own_is_unknown() {
    use cutover::status::CheckOutcome;
    let app = shared_dns_app(&[
        (cutover::runbook::Side::Dns, "111111111111"),
        (cutover::runbook::Side::Environment("old".into()), "222222222222"),
        // New production's profile points at old production's account.
        (cutover::runbook::Side::Environment("new".into()), "222222222222"),
    ]);
    let check = app.snap.checks.iter().find(|c| c.check == "targets_healthy").unwrap();
    assert_eq!(check.outcome, CheckOutcome::Unknown, "{}", check.detail);
    assert!(check.detail.contains("read in account 222222222222, not 333333333333"), "{}", check.detail);
}

/// The cockpit counts a time gate's lines as the action will: a stop
/// recorded in another account (a rehearsal on the sandbox, the same
/// runbook name and local log) opens no window here, and the item is
/// refused at Enter rather than planned.
#[test]
fn a_time_gate_opened_in_another_account_is_not_shown_open() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/staging-to-production.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (head, tail) = text.split_once("\n[environments.").unwrap();
    let rb = cutover::runbook::parse(
        "staging-to-production.toml",
        &format!("{head}\naccount_id = \"999999999999\"\n\n[environments.{tail}"),
    )
    .unwrap();
    let mut app = app_of(rb);
    let name = app.rb.name.clone();
    let line = |account: &str, stage| cutover::store::audit::AuditLine {
        time: "2026-01-01T00:00:00Z".into(),
        operator: "ana".into(),
        account: Some(account.into()),
        region: "eu-west-1".into(),
        runbook: name.clone(),
        action: "stop_instances production (decommission/stop-old)".into(),
        stage,
        before: serde_json::Value::Null,
        after: serde_json::Value::Null,
        detail: String::new(),
        change: None,
        step: None,
        aws_ahead_ms: None,
    };
    use cutover::store::audit::Stage;
    let rehearsal = vec![line("123456789012", Stage::Intent), line("123456789012", Stage::Applied)];
    update(&mut app, Event::GateAudit(Ok(rehearsal)));
    let (_, item) = app.rb.item_by_key("decommission/terminate").unwrap();
    let item = item.clone();
    assert_eq!(app.gate_window(&item), Some(cutover::drive::not_before::Window::NotStarted));
    // Written in the runbook's account, the same lines open it (long past 48 h).
    let real = vec![line("999999999999", Stage::Intent), line("999999999999", Stage::Applied)];
    update(&mut app, Event::GateAudit(Ok(real)));
    assert_eq!(app.gate_window(&item), Some(cutover::drive::not_before::Window::Open));
}

/// What Route53 sends, not only what the weights say: production at weight
/// 0 gets every request while staging's health check fails, and in a group
/// all at 0 a failing side gets nothing of its even share. Both the cockpit
/// and `status` say so.
#[test]
fn a_side_getting_another_share_than_its_weight_says_so() {
    let hc = |healthy: bool| cutover::aws::route53::HealthCheckState {
        id: "hc-staging".into(),
        healthy: Some(healthy),
        status: if healthy { "Success".into() } else { "Failure: HTTP 503".into() },
    };
    let side = |environment: &str, weight: u8, share: f64, health| SideWeight {
        environment: Some(environment.into()),
        set_identifier: environment.into(),
        weight: Some(weight),
        share_percent: share,
        effective_share_percent: share,
        ttl: Some(10),
        health_check: health,
        ..Default::default()
    };
    let traffic = |mut sides: Vec<SideWeight>| {
        cutover::live::fetch::apply_health(&mut sides, |_| cutover::live::fetch::AliasHealth::Known(true));
        LiveEvent {
            at: t0() - Duration::from_secs(2),
            update: Update::Traffic(Ok(TrafficData {
                zone_id: "Z1".into(),
                last_change: None,
                rollout: None,
                rollout_unread: None,
                audit_unread: None,
                sides,
                shared_by: None,
                types_differ: None,
                unlisted_other_types: None,
            })),
        }
    };
    let row = |s: &str, name: &str| {
        let at = format!("┃{name} ");
        s.lines().find(|l| l.starts_with(&at) && l.contains("ttl 10s")).unwrap().to_string()
    };
    let status_line = |app: &App, needle: &str| {
        let text = cutover::status::text::render(&app.snap);
        text.lines().any(|l| l.contains(needle)).then_some(()).ok_or(text)
    };
    // Production at weight 0 with a healthy check; staging's fails.
    let mut events = demo_events(false);
    events.push(traffic(vec![side("production", 0, 0.0, Some(hc(true))), side("staging", 30, 100.0, Some(hc(false)))]));
    let app = app_with(events);
    let s = screen(&app, 160, 48);
    assert!(row(&s, "production").contains("gets 100%"), "{s}");
    assert!(row(&s, "staging").contains("gets 0%"), "{s}");
    status_line(&app, "gets 100.0% of the traffic: Route53 answers only with records whose health does not fail")
        .unwrap_or_else(|t| panic!("{t}"));
    // Both at 0: an even split, but staging fails its check.
    let mut events = demo_events(false);
    events.push(traffic(vec![side("production", 0, 50.0, Some(hc(true))), side("staging", 0, 50.0, Some(hc(false)))]));
    let app = app_with(events);
    let s = screen(&app, 160, 48);
    assert!(row(&s, "production").contains("gets 100%"), "{s}");
    assert!(row(&s, "staging").contains("gets 0%"), "{s}");
    status_line(&app, "gets 0.0% of the traffic: health check hc-staging fails").unwrap_or_else(|t| panic!("{t}"));
}

/// An instance gone from its environment (terminated, replaced) is probed
/// no more: a check run finishes on the instances still listed. It stayed
/// "running" for the rest of the session, waiting for the gone one's probe.
#[test]
fn a_check_run_finishes_once_an_instance_is_gone() {
    let mut app = demo_app();
    update(&mut app, key(KeyCode::Char('5')));
    app.selected.insert(Pane::Checklist, 7); // validate/redis
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::Refresh]);
    app.now = t0() + Duration::from_secs(1);
    for mut e in demo_events(false) {
        e.at = t0() + Duration::from_secs(2);
        match &mut e.update {
            // prod-web-1 terminated: listed no more, and so not probed.
            Update::Environment { environment, result: Ok(data) } if environment == "production" => {
                data.instances.retain(|i| i.id != "i-0prodweb1");
                for tg in &mut data.target_groups {
                    tg.targets.retain(|t| t.id != "i-0prodweb1");
                }
            }
            Update::Health { instance_id, .. } if instance_id == "i-0prodweb1" => continue,
            _ => {}
        }
        update(&mut app, Event::Live(e));
    }
    assert!(matches!(app.runs["validate/redis"], CheckRun::Done { .. }), "{:?}", app.runs["validate/redis"]);
}

/// The rollout's state is read with the weights: while they cannot be read
/// (throttled, denied), whether a rollout runs is unknown, never "no rollout".
#[test]
fn the_rollout_is_unknown_while_the_weights_are_unread() {
    let mut app = app_with(vec![]);
    let s = screen(&app, 160, 48);
    assert!(!s.contains("no rollout") && s.contains("rollout UNKNOWN"), "{s}");
    update(
        &mut app,
        Event::Live(LiveEvent { at: t0(), update: Update::Traffic(Err("Throttling: Rate exceeded".into())) }),
    );
    let s = screen(&app, 160, 48);
    assert!(!s.contains("no rollout") && s.contains("rollout UNKNOWN"), "{s}");
    assert!(screen(&demo_app(), 160, 48).contains("no rollout"), "read, and none");
}

/// An abort being applied (no rollout runs: the cockpit rolls back itself)
/// keeps its quit guard when a pause asked meanwhile answers: each is its own
/// operation. Both answered under `rollout`, the pause's refusal cleared the
/// abort's guard, and `q` quit mid-rollback.
#[test]
fn the_pause_answer_does_not_drop_the_quit_guard_of_an_abort_being_applied() {
    let mut app = demo_app();
    let abort = PendingChange::Rollout {
        control: Control::Abort,
        lines: vec!["rollback target: 100/0".into()],
        step: None,
        live: None,
    };
    update(&mut app, Event::Planned { key: "rollout".into(), result: Ok(abort) });
    assert_eq!(update(&mut app, key(KeyCode::Char('y'))), vec![Command::Apply { key: "rollout abort".into() }]);
    assert_eq!(update(&mut app, key(KeyCode::Char('P'))), vec![Command::PauseRollout]);
    // The pause's quick answer, under the key the loop sends it with.
    let pause_answer = Event::ActionDone { key: "rollout pause".into(), result: Err("no rollout is running".into()) };
    update(&mut app, pause_answer);
    assert!(app.log.back().unwrap().text.starts_with("rollout pause FAILED"), "{:?}", app.log.back());
    assert!(!update(&mut app, key(KeyCode::Char('q'))).contains(&Command::Quit), "quit while the abort is applied");
    assert!(app.log.back().unwrap().text.starts_with("rollout abort is still being applied"), "{:?}", app.log.back());
}

/// A second change confirmed under the key of one still being applied (a
/// second shift while the first waits for INSYNC, a second copy of a Redis
/// item) is refused, saying so: its answer would clear the first's quit
/// guard, and a refusal would turn the row FAILED while the first runs.
#[test]
fn a_second_change_under_a_key_still_being_applied_is_refused() {
    let mut app = demo_app();
    let plan = || Event::Planned {
        key: "weights".into(),
        result: Ok(PendingChange::Shift(Box::new(shift_plan(100, 0, (70, 30))))),
    };
    update(&mut app, plan());
    assert_eq!(update(&mut app, key(KeyCode::Char('y'))), vec![Command::Apply { key: "weights".into() }]);
    update(&mut app, plan());
    assert!(update(&mut app, key(KeyCode::Char('y'))).is_empty(), "a second shift sent while the first is applied");
    assert!(app.pending_change.is_none());
    let said = &app.log.back().unwrap().text;
    assert!(said.contains("was not applied") && said.contains("still being applied"), "{said}");
    assert!(update(&mut app, key(KeyCode::Char('q'))).is_empty(), "the first shift still guards quitting");
    // Once the first has answered, the next one is applied.
    update(&mut app, Event::ActionDone { key: "weights".into(), result: Ok("INSYNC".into()) });
    update(&mut app, plan());
    assert_eq!(update(&mut app, key(KeyCode::Char('y'))), vec![Command::Apply { key: "weights".into() }]);
}

/// A rollout start's popup with a change batch that wraps over many rows
/// still shows the warning said after the batch and the y / n line: the
/// popup's height counted lines, not the rows they wrap to, and cut both.
#[test]
fn the_start_popup_shows_the_warning_after_a_long_batch_and_its_y_n_line() {
    let mut app = demo_app();
    let rec = |action: &str, id: &str, w: u8| {
        format!(
            r#"{{"Action":"{action}","ResourceRecordSet":{{"Name":"app.demo.cutover.test.","Type":"A","SetIdentifier":"{id}","Weight":{w},"AliasTarget":{{"HostedZoneId":"Z35SXDOTRQ7X7K","DNSName":"demo-{id}-alb-1234567890.eu-west-1.elb.amazonaws.com.","EvaluateTargetHealth":true}}}}}}"#
        )
    };
    let batch = format!(
        r#"{{"HostedZoneId":"Z0123456789ABCDEFGHIJ","ChangeBatch":{{"Changes":[{},{},{},{}]}}}}"#,
        rec("DELETE", "prod", 100),
        rec("DELETE", "staging", 0),
        rec("CREATE", "prod", 90),
        rec("CREATE", "staging", 10)
    );
    let lines = vec![
        "plan: 10% → 50% → 100% (soak 300 s, ttl 10 s, 2 gate(s))".to_string(),
        "  staging targets healthy".into(),
        "  staging 5xx alarm OK".into(),
        "live weights: production 100 / staging 0".into(),
        "saved state: none; the rollout starts at step 1".into(),
        "would start at step 1 of 3: production 90 / staging 10".into(),
        format!("change batch: {batch}"),
        "would pause before sending step 1: staging's target group demo-staging-web has no target in service".into(),
    ];
    let start = PendingChange::Rollout { control: Control::Start, lines, step: None, live: None };
    update(&mut app, Event::Planned { key: "rollout".into(), result: Ok(start) });
    for (w, h) in [(160, 48), (80, 24)] {
        let s = screen(&app, w, h);
        assert!(s.contains("would pause before sending step 1"), "{w}x{h}: {s}");
        assert!(s.contains(" y  apply (audited)"), "{w}x{h}: {s}");
    }
    // Too small for the whole batch: it is cut, and says so.
    let s = screen(&app, 80, 24);
    assert!(s.contains("… (the batch is cut here"), "{s}");
    assert!(screen(&app, 160, 48).contains(r#""Weight":10"#), "room enough: the whole batch");
}

/// The READ-ONLY and PAUSED badges come before the accounts and regions of
/// a runbook over several accounts, whose list pushed them off the header.
#[test]
fn read_only_and_paused_badges_are_visible_on_a_multi_account_runbook() {
    use cutover::runbook::Side;
    let mut app = shared_dns_app(&[
        (Side::Dns, "111111111111"),
        (Side::Environment("old".into()), "222222222222"),
        (Side::Environment("new".into()), "333333333333"),
    ]);
    app.header.read_only = true;
    update(&mut app, key(KeyCode::Char('p')));
    assert!(app.paused);
    for (w, h) in [(80, 24), (160, 48), (200, 50)] {
        app.size = (w, h);
        let s = screen(&app, w, h);
        let head = s.lines().next().unwrap().to_string();
        assert!(head.contains("PAUSED") && head.contains("READ-ONLY"), "{w}x{h}: {head}");
    }
}

/// Metrics failing while the alarms read fine is said in the pane's title:
/// the line saying it sat below the metric rows, and the pane, sized to its
/// rows, cut it off.
#[test]
fn metrics_failing_alone_is_said_in_the_alarms_pane_title() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut app = demo_app();
        let failed = Update::Metrics(Err("GetMetricData: AccessDenied".into()));
        update(&mut app, Event::Live(LiveEvent { at: t0(), update: failed }));
        app.size = (w, h);
        let s = screen(&app, w, h);
        let title = s.lines().find(|l| l.contains("Alarms")).unwrap_or_default().to_string();
        assert!(title.contains("metrics STALE"), "{w}x{h}: metrics failing, the title says: {title}\n{s}");
    }
}

/// While an environment has neither a reading nor an error, the Targets and
/// Redis titles name it `waiting…` beside the others' age, rather than an
/// age that looks like the whole picture.
#[test]
fn targets_and_redis_titles_say_an_unread_environment_is_waiting() {
    let events: Vec<LiveEvent> = demo_events(false)
        .into_iter()
        .filter(|e| !matches!(&e.update, Update::Environment { environment, .. } if environment == "staging"))
        .collect();
    let app = app_with(events);
    let s = screen(&app, 160, 48);
    for pane in ["2 Targets", "3 Redis"] {
        let title = s.lines().find(|l| l.contains(pane)).unwrap().to_string();
        assert!(title.contains("staging waiting…"), "{title}");
    }
    let s = screen(&app_with(demo_events(false)), 160, 48);
    let title = s.lines().find(|l| l.contains("2 Targets")).unwrap().to_string();
    assert!(title.contains("s ago") && !title.contains("waiting"), "all read: {title}");
}

/// An item's rollback (`b`, then `y`) is applied under the item's key: its
/// row says it was rolled back (or that the rollback failed), never "✔ done"
/// as if the action itself had been applied again.
#[test]
fn a_rolled_back_item_is_not_shown_as_done() {
    let mut app = demo_app();
    let item = "validate/redis-ingress".to_string();
    update(&mut app, Event::Planned { key: item.clone(), result: Ok(PendingChange::Item(redis_ingress_plan())) });
    update(&mut app, key(KeyCode::Char('y')));
    update(
        &mut app,
        Event::ActionDone { key: item.clone(), result: Ok("authorize_redis_ingress staging done".into()) },
    );
    app.focus = Pane::Checklist;
    app.selected.insert(Pane::Checklist, 6);
    let row = |app: &App| {
        let s = screen(app, 160, 48);
        s.lines().find(|l| l.contains("Allow the staging instances")).unwrap().to_string()
    };
    assert!(row(&app).contains("✔ done"), "{}", row(&app));
    let revoke =
        cutover::drive::actions::ActionPlan { name: "revoke_redis_ingress staging".into(), ..redis_ingress_plan() };
    let roll_back = |app: &mut App, result: Result<String, String>| {
        assert_eq!(
            update(app, key(KeyCode::Char('b'))),
            vec![Command::PlanAction { key: item.clone(), rollback: true }]
        );
        update(app, Event::Planned { key: item.clone(), result: Ok(PendingChange::Item(revoke.clone())) });
        assert_eq!(update(app, key(KeyCode::Char('y'))), vec![Command::Apply { key: item.clone() }]);
        update(app, Event::ActionDone { key: item.clone(), result });
    };
    roll_back(&mut app, Ok("revoke_redis_ingress staging done".into()));
    assert!(row(&app).contains("↶ rolled back") && !row(&app).contains("✔ done"), "{}", row(&app));
    assert!(screen(&app, 160, 48).contains("rolled back at"), "the time on the detail line");
    assert!(app.log.back().unwrap().text.starts_with("validate/redis-ingress rollback:"), "{:?}", app.log.back());
    roll_back(&mut app, Err("AccessDenied".into()));
    assert!(row(&app).contains("✘ rollback FAILED"), "{}", row(&app));
    // The action applied again after it is done again.
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![Command::PlanAction { key: item.clone(), rollback: false }]);
    update(&mut app, Event::Planned { key: item.clone(), result: Ok(PendingChange::Item(redis_ingress_plan())) });
    update(&mut app, key(KeyCode::Char('y')));
    update(&mut app, Event::ActionDone { key: item.clone(), result: Ok("done".into()) });
    assert!(row(&app).contains("✔ done"), "{}", row(&app));
    // Enter, then `b` before the first plan came back: the plan shown (the
    // action's) is what is applied, and its row says so; and the reverse.
    update(&mut app, key(KeyCode::Enter));
    update(&mut app, key(KeyCode::Char('b')));
    update(&mut app, Event::Planned { key: item.clone(), result: Ok(PendingChange::Item(redis_ingress_plan())) });
    update(&mut app, key(KeyCode::Char('y')));
    update(&mut app, Event::ActionDone { key: item.clone(), result: Ok("done".into()) });
    assert!(row(&app).contains("✔ done"), "the action applied, not its rollback: {}", row(&app));
    update(&mut app, key(KeyCode::Char('b')));
    update(&mut app, key(KeyCode::Enter));
    update(&mut app, Event::Planned { key: item.clone(), result: Ok(PendingChange::Item(revoke.clone())) });
    update(&mut app, key(KeyCode::Char('y')));
    update(&mut app, Event::ActionDone { key: item.clone(), result: Ok("done".into()) });
    assert!(row(&app).contains("↶ rolled back"), "the rollback applied: {}", row(&app));
}
