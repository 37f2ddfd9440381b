//! The real binary in a real terminal: `cutover demo` inside tmux (its own
//! server socket), driven with send-keys and read with capture-pane.

mod common;

use common::tmux::{Tmux, audit_lines, cockpit_script};

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn demo_in_a_real_terminal_shows_targets_ticks_an_item_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux { socket: format!("cutover-test-{}", std::process::id()) };
    let marker = dir.path().join("exited");
    let command = format!(
        "cd {root} && XDG_STATE_HOME={state} CUTOVER_OPERATOR=e2e {bin} --log-file {log} --region ap-south-1 demo; echo exit=$? > {marker}; sleep 30",
        root = env!("CARGO_MANIFEST_DIR"),
        state = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_cutover"),
        log = dir.path().join("log").display(),
        marker = marker.display(),
    );
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "160", "-y", "48", &command]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The Redis pane fills as each instance is probed: wait for staging's
    // blocked path too (a busy machine showed the targets first).
    let s = tmux.wait_for("the demo's targets and staging's blocked Redis path", Duration::from_secs(60), |s| {
        ["prod-web-1", "prod-web-2", "staging-web-1", "staging-web-2"].iter().all(|n| s.contains(n))
            && s.contains("3/4 healthy")
            && s.contains("BLOCKED")
    });
    assert_eq!(tmux.var("#{alternate_on}"), "1", "the cockpit owns the alternate screen");
    assert!(s.contains("BLOCKED"), "the wrong security group shows:\n{s}");
    let pid: u32 = {
        let out = Command::new("pgrep")
            .args([
                "-f",
                "--newest",
                &format!("{} --log-file {}", env!("CARGO_BIN_EXE_cutover"), dir.path().join("log").display()),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("cutover's pid")
    };
    let kids = common::children_of(pid);
    assert_eq!(kids.len(), 3, "moto + two redis-servers: {kids:?}");

    // Fault injection: the terminal shrunk to 20×10 and back; the cockpit keeps drawing.
    tmux.cmd(&["resize-window", "-t", "t", "-x", "20", "-y", "10"]);
    tmux.wait_for("a 20×10 frame", Duration::from_secs(10), |s| s.lines().count() <= 10 && !s.trim().is_empty());
    tmux.cmd(&["resize-window", "-t", "t", "-x", "160", "-y", "48"]);
    tmux.wait_for("the full screen again", Duration::from_secs(10), |s| s.contains("3/4 healthy"));
    assert!(!common::process_gone(pid), "still running after the resize");

    // Checklist: row 3 is prepare/backup, a manual item.
    tmux.keys(&["5", "j", "j", "j", "Space"]);
    tmux.wait_for("the tick", Duration::from_secs(10), |s| s.contains("[x] e2e"));
    let progress = std::fs::read_to_string(dir.path().join("cutover/demo.progress.json")).unwrap();
    assert!(progress.contains("\"prepare/backup\"") && progress.contains("\"by\": \"e2e\""), "{progress}");
    // A tick changes shared state: audited before and after, as the CLI's.
    let audit_path = dir.path().join("cutover/demo.audit.jsonl");
    let started = std::time::Instant::now();
    let ticked = loop {
        let audit = std::fs::read_to_string(&audit_path).unwrap_or_default();
        if audit.lines().count() >= 2 || started.elapsed() > Duration::from_secs(10) {
            break audit;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stages: Vec<String> = ticked
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|l| format!("{} [{}] {}", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap(), l["operator"]))
        .collect();
    assert_eq!(
        stages,
        ["checklist prepare/backup [intent] \"e2e\"", "checklist prepare/backup [applied] \"e2e\""],
        "{ticked}"
    );

    // Row 6 is validate/redis-ingress: plan it, confirm it, watch it heal.
    tmux.keys(&["j", "j", "j", "Enter"]);
    tmux.wait_for("the confirmation", Duration::from_secs(20), |s| {
        s.contains("confirm a change") && s.contains("allow 6379 from")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the fixed path", Duration::from_secs(40), |s| !s.contains("BLOCKED") && s.contains("✔ done"));
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    assert_eq!(audit.lines().count(), 4, "the tick's, then the action's intent and applied: {audit}");

    // Shift by hand: w, the percent, the popup, y.
    let weights = |s: &str, prod: &str, staging: &str| {
        s.lines().any(|l| l.contains("production") && l.contains(&format!("w {prod:>3} ")))
            && s.lines().any(|l| l.contains("staging ") && l.contains(&format!("w {staging:>3} ")))
    };
    tmux.keys(&["w", "3", "0", "Enter"]);
    tmux.wait_for("the shift popup", Duration::from_secs(20), |s| {
        s.contains("shift weights: staging to 30%") && s.contains(r#"after  {"production":70,"staging":30}"#)
    });
    tmux.keys(&["y"]);
    tmux.wait_for("70/30 on screen", Duration::from_secs(30), |s| weights(s, "70", "30"));
    // A rollout from 70/30 does not match its state: the cockpit shows both and asks.
    tmux.keys(&["R"]);
    tmux.wait_for("the adopt question", Duration::from_secs(20), |s| {
        s.contains("adopt them and continue?") && s.contains("the live weights 70/30 differ from the expected 100/0")
    });
    tmux.keys(&["n"]);
    tmux.wait_for("the cancel", Duration::from_secs(10), |s| {
        s.contains("rollout start: cancelled, nothing was changed")
    });
    // Abort with no rollout running: back to the initial weights.
    tmux.keys(&["X"]);
    tmux.wait_for("the abort popup", Duration::from_secs(20), |s| {
        s.contains("ABORT the rollout and roll back") && s.contains("rollback target: 100/0")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("100/0 on screen", Duration::from_secs(30), |s| weights(s, "100", "0"));
    // Start the gated rollout: it runs as its own process; then abort it.
    tmux.keys(&["R"]);
    tmux.wait_for("the start popup", Duration::from_secs(20), |s| {
        s.contains("start the gated rollout") && s.contains("would start at step 1 of 4")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("step 1 live", Duration::from_secs(60), |s| {
        weights(s, "90", "10") && s.contains("rollout step 1/4 (10%)")
    });
    let state = dir.path().join("cutover");
    let running = || {
        Command::new("pgrep")
            .args(["-f", &format!("{} --region ap-south-1 rollout", env!("CARGO_BIN_EXE_cutover"))])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(running(), "the rollout runs as its own process");
    tmux.keys(&["X"]);
    tmux.wait_for("the abort popup", Duration::from_secs(20), |s| s.contains("a rollout is running"));
    tmux.keys(&["y"]);
    tmux.wait_for("the rollback", Duration::from_secs(60), |s| {
        weights(s, "100", "0") && s.contains("aborted") && s.contains("the running rollout rolled back to 100/0")
    });
    let start = Instant::now();
    while running() {
        assert!(start.elapsed() < Duration::from_secs(20), "the aborted rollout did not exit");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = std::fs::read_to_string(state.join("demo.rollout.out")).unwrap();
    assert!(out.contains("rollout ABORTED and rolled back: aborted from the cockpit by e2e"), "{out}");
    let audit = std::fs::read_to_string(state.join("demo.audit.jsonl")).unwrap();
    let actions: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|l| format!("{} [{}]", l["action"].as_str().unwrap(), l["stage"].as_str().unwrap()))
        .collect();
    for want in ["shift_weights to 30% [insync]", "rollout abort [done]", "rollout step 1/4 (10%) [insync]"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }

    assert_eq!(tmux.quit(&marker), "exit=0");
    assert_eq!(tmux.var("#{alternate_on}"), "0", "left the alternate screen");
    assert_eq!(tmux.var("#{cursor_flag}"), "1", "cursor visible again");
    let s = tmux.screen();
    assert!(s.contains("sandbox stopped"), "{s}");
    assert!(kids.iter().all(|&p| common::process_gone(p)), "sandbox processes left: {kids:?}");
    common::record(
        "terminal",
        format!(
            "The real binary in tmux, resized to 20×10 while drawing and back to 160×48: still running and drawing; \
             after a shift, a background rollout and its abort, `q` exited 0 with the alternate screen left, the \
             cursor shown and all {} sandbox processes gone",
            kids.len()
        ),
    );
}

/// Presses each `(keys, log prefix, audited action)` on the zoomed log's
/// screen: each refused on screen (`count` of its prefix grows) and audited
/// `refused` once, its line then checked by `also`.
fn each_refused(
    tmux: &Tmux,
    state: &std::path::Path,
    presses: &[(Vec<&str>, &str, &str)],
    count: &dyn Fn(&str, &str) -> usize,
    also: impl Fn(&serde_json::Value),
) {
    tmux.keys(&["6", "z"]);
    for (i, (keys, prefix, action)) in presses.iter().enumerate() {
        let seen = count(&tmux.screen(), prefix);
        tmux.keys(keys);
        tmux.keys(&["6"]);
        tmux.wait_for(&format!("the refusal of {keys:?}"), Duration::from_secs(20), |s| count(s, prefix) > seen);
        let audit = audit_lines(state, "demo");
        assert_eq!(audit.len(), i + 1, "one audit line per refusal, after {keys:?}: {audit:#?}");
        let last = &audit[i];
        assert_eq!(last["stage"], "refused", "{last}");
        assert!(last["action"].as_str().unwrap().starts_with(action), "{action}: {last}");
        also(last);
    }
}

/// The Route53 records of the sandbox's zone, read back with the SDK.
async fn records(sb: &cutover::sandbox::Sandbox) -> String {
    let r = sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
    format!("{:?}", r.resource_record_sets())
}

/// The cockpit on a runbook for account 999999999999, with the sandbox's
/// credentials (account 123456789012): every key and popup that changes
/// something (w then a percent, R, X, +, P, Enter on each checklist action)
/// is refused with the reason on screen and a `refused` audit line, and
/// Route53 reads back unchanged.
#[test]
fn the_cockpit_refuses_every_change_in_another_account_than_the_runbooks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, text.replace("production = false\n", "production = false\naccount_id = \"999999999999\"\n"))
        .unwrap();
    let rb = cutover::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rb.account_id.as_deref(), Some("999999999999"));
    let sb = rt.block_on(common::sandbox(&rb, "eu-north-1"));
    let before = rt.block_on(records(&sb));
    let marker = dir.path().join("exited");
    let script = cockpit_script(&sb, &rb, dir.path(), &["tui", path.to_str().unwrap()], &marker);
    let tmux = Tmux { socket: format!("cutover-account-{}", std::process::id()) };
    // Wide enough for a whole refusal on one line of the zoomed log.
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "250", "-y", "50", &format!("sh {}", script.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.wait_for("the live screen", Duration::from_secs(60), |s| {
        s.contains("account 123456789012") && s.contains("3/4 healthy")
    });

    let reason = format!(
        "refused: runbook {} is for account 999999999999 but the credentials are for account 123456789012; use the profile for 999999999999 (--profile); nothing was changed",
        path.display()
    );
    let count = |s: &str, prefix: &str| s.lines().filter(|l| l.contains(&format!("{prefix}{reason}"))).count();
    // (keys, what the log line starts with, the audited action)
    let presses: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["w", "3", "0", "Enter"], "weights: cannot plan: ", "shift_weights to 30%"),
        (vec!["R"], "rollout start: cannot plan: ", "rollout start"),
        (vec!["X"], "rollout abort: cannot plan: ", "rollout abort"),
        (vec!["+"], "rollout promote: cannot plan: ", "rollout promote"),
        (vec!["P"], "rollout pause FAILED: ", "rollout pause"),
        // Checklist rows: 6 validate/redis-ingress, 8 validate/copy, 11 traffic/rollout, 16 decommission/stop-old.
        (
            vec!["5", "j", "j", "j", "j", "j", "j", "Enter"],
            "validate/redis-ingress: cannot plan: ",
            "authorize_redis_ingress staging (validate/redis-ingress)",
        ),
        (vec!["5", "j", "j", "Enter"], "validate/copy: cannot plan: ", "copy_redis"),
        (vec!["5", "j", "j", "j", "Enter"], "rollout start: cannot plan: ", "rollout start"),
        (
            vec!["5", "j", "j", "j", "j", "j", "Enter"],
            "decommission/stop-old: cannot plan: ",
            "stop_instances production (decommission/stop-old)",
        ),
    ];
    each_refused(&tmux, dir.path(), &presses, &count, |last| {
        assert_eq!(last["account"], "123456789012", "{last}");
        assert!(last["detail"].as_str().unwrap().contains("999999999999"), "{last}");
    });
    let s = tmux.screen();
    assert!(!s.contains("confirm a change") && !s.contains("shift weights:"), "no popup opened:\n{s}");
    assert_eq!(rt.block_on(records(&sb)), before, "Route53 reads back unchanged");
    assert_eq!(tmux.quit(&marker), "exit=0");
    rt.block_on(sb.down());
    common::record(
        "terminal",
        format!(
            "The cockpit on a runbook for account 999999999999 with account 123456789012's credentials: {} changes \
             (w then 30, R, X, +, P, Enter on each of the 4 checklist actions) each refused with both accounts and \
             `--profile` on screen and one `refused` audit line, and Route53 read back unchanged",
            presses.len()
        ),
    );
}

/// The cockpit in another region than the runbook's (here CUTOVER_REGION):
/// an action on an environment, found there by tag and name, could select
/// another fleet of the same account. Enter on one is refused before it is
/// planned, with the load balancers and both regions on screen and one
/// `refused` audit line, as `cutover run` refuses it.
#[test]
fn the_cockpit_refuses_an_environments_action_in_another_region_than_the_runbooks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = common::runbook("demo.toml");
    let sb = rt.block_on(common::sandbox(&rb, "eu-central-2"));
    let marker = dir.path().join("exited");
    let script = cockpit_script(&sb, &rb, dir.path(), &["tui", "runbooks/demo.toml"], &marker);
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        text.replace("export XDG_STATE_HOME=", "export CUTOVER_REGION=us-west-2\nexport XDG_STATE_HOME="),
    )
    .unwrap();
    let tmux = Tmux { socket: format!("cutover-region-{}", std::process::id()) };
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "250", "-y", "50", &format!("sh {}", script.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.wait_for("the screen", Duration::from_secs(60), |s| s.contains("account 123456789012"));
    // Each environment judged by its own load balancer.
    let count = |s: &str, said: &str| s.lines().filter(|l| l.contains(said)).count();
    // Checklist rows: 6 validate/redis-ingress, 16 decommission/stop-old.
    let presses: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["5", "j", "j", "j", "j", "j", "j", "Enter"],
            "validate/redis-ingress: cannot plan: refused: staging's load balancer demo-staging-alb (runbook runbooks/demo.toml) is not in region us-west-2",
            "authorize_redis_ingress staging (validate/redis-ingress)",
        ),
        (
            vec!["5", "j", "j", "j", "j", "j", "j", "j", "j", "j", "j", "Enter"],
            "decommission/stop-old: cannot plan: refused: production's load balancer demo-prod-alb (runbook runbooks/demo.toml) is not in region us-west-2",
            "stop_instances production (decommission/stop-old)",
        ),
    ];
    each_refused(&tmux, dir.path(), &presses, &count, |last| {
        assert_eq!(last["detail"], "runbook for another region than us-west-2", "{last}");
    });
    assert!(!tmux.screen().contains("confirm a change"), "no popup opened");
    assert_eq!(tmux.quit(&marker), "exit=0");
    rt.block_on(sb.down());
}

/// A plan can wait in the confirm popup while someone puts traffic back on
/// the side it takes out of service. `y` is then refused when applied (the
/// traffic is read again right before the steps), audited `refused` with no
/// intent, and nothing is stopped. The other way round, a shift waiting in
/// the popup while the side it raises is stopped is refused when applied,
/// and the weights stay.
#[test]
fn a_change_confirmed_after_the_world_changed_under_its_popup_is_refused_when_applied() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = common::runbook("demo.toml");
    let sb = rt.block_on(common::sandbox(&rb, "mx-central-1"));
    rt.block_on(common::set_weights_as_another_client(&sb, &rb, &[("prod", 0), ("staging", 100)]));
    let marker = dir.path().join("exited");
    let script = cockpit_script(&sb, &rb, dir.path(), &["tui", "runbooks/demo.toml"], &marker);
    let tmux = Tmux { socket: format!("cutover-late-{}", std::process::id()) };
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "250", "-y", "50", &format!("sh {}", script.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.wait_for("the live screen", Duration::from_secs(60), |s| {
        s.contains("account 123456789012") && s.contains("3/4 healthy")
    });
    // Out of its target group already: only the traffic refuses the stop.
    rt.block_on(common::drained_out_of_target_groups(&sb, "production"));
    // Checklist row 16: decommission/stop-old.
    let mut keys = vec!["5"];
    keys.extend(["j"; 16]);
    keys.push("Enter");
    tmux.keys(&keys);
    tmux.wait_for("the confirm popup", Duration::from_secs(30), |s| s.contains("confirm a change"));
    rt.block_on(common::set_weights_as_another_client(&sb, &rb, &[("prod", 50), ("staging", 50)]));
    tmux.keys(&["y"]);
    tmux.keys(&["6", "z"]);
    let refusal = "decommission/stop-old FAILED: refused: Route53 still sends production traffic (its weighted CNAME record `prod` of app.demo.cutover.test has weight 50)";
    tmux.wait_for("the refusal", Duration::from_secs(30), |s| s.contains(refusal));
    let audit = audit_lines(dir.path(), "demo");
    let stages: Vec<&str> = audit.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["refused"], "{audit:#?}");
    assert!(audit[0]["action"].as_str().unwrap().starts_with("stop_instances production (decommission/stop-old)"));
    assert!(audit[0]["detail"].as_str().unwrap().ends_with("nothing was changed"), "{}", audit[0]);
    let states = rt.block_on(common::instance_states(&sb, "production"));
    assert_eq!(states, ["running", "running"], "nothing stopped");

    // `w` 0: production back to 100%, planned while it runs (registered
    // again); it is stopped (as by someone else's stop-old) while the popup
    // waits.
    let prod_tg = &sb.world.target_groups["production"][0].arn;
    for i in sb.world.instances.iter().filter(|i| i.environment == "production") {
        let target = aws_sdk::elasticloadbalancingv2::types::TargetDescription::builder().id(&i.id).port(8080).build();
        rt.block_on(sb.clients.elb.register_targets().target_group_arn(prod_tg).targets(target).send()).unwrap();
    }
    rt.block_on(common::set_weights_as_another_client(&sb, &rb, &[("prod", 0), ("staging", 100)]));
    let before = rt.block_on(records(&sb));
    tmux.keys(&["w", "0", "Enter"]);
    tmux.wait_for("the shift's confirm popup", Duration::from_secs(30), |s| s.contains("shift weights: staging to 0%"));
    let prod: Vec<String> =
        sb.world.instances.iter().filter(|i| i.name.starts_with("prod-")).map(|i| i.id.clone()).collect();
    rt.block_on(sb.clients.ec2.stop_instances().set_instance_ids(Some(prod)).send()).unwrap();
    tmux.keys(&["y"]);
    let refusal = "weights FAILED: refused: raising production's weight from 0 to 100 would send that traffic to target group demo-prod-web, which has no target in service (i-";
    tmux.wait_for("the shift's refusal", Duration::from_secs(30), |s| s.contains(refusal));
    assert_eq!(rt.block_on(records(&sb)), before, "the weights stay");
    let audit = audit_lines(dir.path(), "demo");
    let last = audit.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["stage"].as_str()),
        (Some("shift_weights to 0%"), Some("refused")),
        "{last}"
    );
    assert_eq!(audit.len(), 2, "no intent: {audit:#?}");
    assert_eq!(tmux.quit(&marker), "exit=0");
    rt.block_on(sb.down());
}
