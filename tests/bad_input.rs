//! Bad input to every headless subcommand: a missing file, a directory, a
//! file that is not UTF-8, and a runbook for another account. Each gets one
//! clear line on stderr, exit 2, and nothing changed or written.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Every subcommand that takes a runbook, with the flags that would make it act.
const SUBCOMMANDS: &[&[&str]] = &[
    &["validate"],
    &["plan"],
    &["status"],
    &["status", "--json"],
    &["shift", "--to", "10", "--yes"],
    &["rollout", "--yes"],
    &["rollout", "--dry-run"],
    &["abort", "--yes"],
    &["pause"],
    &["promote", "--yes"],
    &["run", "validate/redis-ingress", "--yes"],
    &["audit"],
    &["tui"],
    &["sandbox", "up"],
];

fn args_with<'a>(sub: &[&'a str], runbook: &'a str) -> Vec<&'a str> {
    // The runbook goes right after the subcommand's name(s).
    let names = if sub[0] == "sandbox" { 2 } else { 1 };
    let mut v: Vec<&str> = sub[..names].to_vec();
    v.push(runbook);
    v.extend_from_slice(&sub[names..]);
    v
}

fn run(state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9") // never reached: input fails first
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_directory_and_non_utf8_runbooks_get_one_clear_line_and_exit_2_from_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let missing = dir.path().join("nope.toml");
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"[runbook]\nname = \"x\xff\xfe\"\n").unwrap();
    let cases = [
        (missing.display().to_string(), "cannot read"),
        (dir.path().display().to_string(), "is a directory, not a runbook"),
        (binary.display().to_string(), "is not UTF-8 text"),
    ];
    for sub in SUBCOMMANDS {
        for (path, what) in &cases {
            let args = args_with(sub, path);
            let (code, out, err) = run(&state, &args);
            assert_eq!(code, Some(2), "{args:?}: {out}{err}");
            assert!(out.is_empty(), "{args:?} printed on stdout: {out}");
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 1, "{args:?}: one line, got {err}");
            assert!(lines[0].starts_with(path.as_str()) && lines[0].contains(what), "{args:?}: {err}");
        }
    }
    assert!(
        !state.join("cutover").exists() || state_files(&state).is_empty(),
        "nothing written: {:?}",
        state_files(&state)
    );
    record(
        "bad-input",
        format!(
            "{} subcommand forms, each given a missing runbook, a directory and a non-UTF-8 file ({} runs): one line \
             on stderr starting with the path and saying what is wrong, nothing on stdout, exit 2, no file written",
            SUBCOMMANDS.len(),
            SUBCOMMANDS.len() * cases.len()
        ),
    );
}

/// Files cutover wrote, apart from its log.
fn state_files(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("cutover"))
        .map(|d| {
            d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "cutover.log").collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_for_another_account_is_refused_by_every_subcommand_that_reads_aws() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "eu-south-1").await;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let other = dir.path().join("other.toml");
    std::fs::write(&other, text.replace("production = false\n", "production = false\naccount_id = \"999999999999\"\n"))
        .unwrap();
    let path = other.to_str().unwrap();
    let subs = [
        &["status"][..],
        &["shift", "--to", "10", "--yes"],
        &["shift", "--to", "10", "--dry-run"],
        &["rollout", "--yes"],
        &["rollout", "--dry-run"],
        &["abort", "--yes"],
        &["run", "validate/redis-ingress", "--yes"],
    ];
    for sub in subs {
        let args = args_with(sub, path);
        let (code, out, err) = run_cutover(&sb, &rb, dir.path(), &args).await;
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains("is for account 999999999999 but the credentials are for account 123456789012; use the profile for 999999999999 (--profile)"),
            "{args:?}: {err}"
        );
    }
    // Nothing written but the audit log's `refused` lines, one per form that
    // would change something (status and dry runs change nothing: no line).
    assert_eq!(state_files(dir.path()), ["demo.audit.jsonl"], "nothing else written");
    let audit = std::fs::read_to_string(dir.path().join("cutover/demo.audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = lines.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "shift_weights to 10%",
            "rollout start",
            "rollout abort",
            "authorize_redis_ingress staging (validate/redis-ingress)"
        ],
        "{audit}"
    );
    for l in &lines {
        assert_eq!(l["stage"], "refused", "{l}");
        assert_eq!(l["account"], "123456789012", "{l}");
        assert!(l["detail"].as_str().unwrap().contains("999999999999"), "{l}");
    }
    sb.down().await;
    record(
        "bad-input",
        format!(
            "A runbook for account 999999999999 run with the sandbox's credentials by {} subcommand forms that read \
             AWS: each refused in one line naming both accounts and `--profile`, exit 2, nothing written but one \
             `refused` audit line for each form that would change something",
            subs.len()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_for_another_region_is_refused_where_regional_resources_are_read() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-southeast-3").await;
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let p = path.to_str().unwrap();
    // The same moto, asked in a region where the runbook's resources are not.
    let elsewhere = |args: &[&str]| {
        let mut c = cutover_command(&sb, &rb, dir.path(), args);
        c.env("CUTOVER_REGION", "us-west-2");
        c.output().unwrap()
    };
    // The runbook as a whole for what reads every side; the environment's
    // own load balancer for a change to it.
    let whole = "(demo-prod-alb, demo-staging-alb) is in region us-west-2; the runbook says eu-west-1";
    let staging = "staging's load balancer demo-staging-alb (runbook";
    let staging_region = "is not in region us-west-2, nor is any other of its load balancers reached the same way; the runbook says eu-west-1";
    let subs = [
        (&["status"][..], [whole, "none of runbook"]),
        (&["status", "--json"], [whole, "none of runbook"]),
        (&["rollout", "--yes"], [whole, "none of runbook"]),
        (&["rollout", "--dry-run"], [whole, "none of runbook"]),
        (&["run", "validate/redis-ingress", "--yes"], [staging, staging_region]),
        (&["run", "validate/redis-ingress", "--dry-run"], [staging, staging_region]),
    ];
    for (sub, said) in subs {
        let out = elsewhere(&args_with(sub, p));
        let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{sub:?}: {stdout}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{sub:?}: one line: {err}");
        assert!(said.iter().all(|s| err.contains(s)), "{sub:?}: {err}");
    }
    // Nothing written but the refusals of the changes (the rollout's start
    // and the change to an environment), audited as any refusal is.
    assert_eq!(state_files(dir.path()), ["demo.audit.jsonl"], "nothing else written");
    let audit = common::tmux::audit_lines(dir.path(), "demo");
    let stages: Vec<_> = audit.iter().map(|l| (l["action"].as_str(), l["stage"].as_str())).collect();
    assert_eq!(
        stages,
        [
            (Some("rollout start"), Some("refused")),
            (Some("authorize_redis_ingress staging (validate/redis-ingress)"), Some("refused"))
        ]
    );
    // Route53 is global: a weight change or an abort is never blocked by a
    // regional read. Both run for real and the records say so.
    let live = || async {
        let sets =
            sb.clients.route53.list_resource_record_sets().hosted_zone_id(&sb.world.zone_id).send().await.unwrap();
        let mut w: Vec<(String, i64)> = sets
            .resource_record_sets()
            .iter()
            .filter_map(|r| Some((r.set_identifier()?.to_string(), r.weight()?)))
            .collect();
        w.sort();
        w
    };
    let out = elsewhere(&["shift", p, "--to", "10", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Staging's target groups are not in that region: said, not a refusal.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("NOT CHECKED: whether staging has a target in service to take the share this raises"),
        "{said}"
    );
    assert_eq!(live().await, [("prod".to_string(), 90), ("staging".to_string(), 10)], "shift applied");
    // `cutover run` says it too, for a shift_weights item (the rollout's rollback, to 0).
    let out = elsewhere(&["run", p, "traffic/rollout", "--rollback", "--dry-run"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        said.contains("NOT CHECKED: whether production has a target in service to take the share this raises"),
        "{said}"
    );
    let out = elsewhere(&["abort", p, "--yes", "--reason", "region test"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(live().await, [("prod".to_string(), 100), ("staging".to_string(), 0)], "abort applied");
    sb.down().await;
    record(
        "bad-input",
        format!(
            "The demo runbook run against a region holding none of its load balancers by {} subcommand forms that \
             read regional resources (status, rollout, run): each refused in one line naming the load balancers, the \
             region in use and the runbook's, exit 2, nothing written but the `run`'s refusal in the audit; `shift` and `abort` touch only Route53 \
             (global): both ran for real from the other region and the records read back 90/10, then 100/0",
            subs.len()
        ),
    );
}

/// Numbers a flag takes, out of range: clap's one line and exit 2, never a
/// panic (an `--interval` of i64::MAX seconds overflowed the next refresh's
/// instant after the first snapshot; `--seconds` the credentials' expiry).
#[test]
fn numbers_out_of_range_and_misspelt_regions_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let rb = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let rb = rb.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["status", rb, "--watch", "--interval", "9223372036854775807"], "is not in 1..=86400"),
        (&["status", rb, "--watch", "--interval", "0"], "is not in 1..=86400"),
        (&["status", rb, "--interval", "5"], "--watch"),
        (&["sandbox", "credentials", "--seconds", "18446744073709551615"], "is not in 1..=43200"),
        (&["status", rb, "--region", "eu-west1"], "`eu-west1` is not an AWS region: write it like eu-west-1"),
        (&["plan", rb, "--region", "EU-WEST-1"], "`EU-WEST-1` is not an AWS region"),
        (&["status", rb, "--region", "eu-west-"], "`eu-west-` is not an AWS region"),
    ];
    for (args, says) in cases {
        let (code, out, err) = run(&state, args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(says) && !err.contains("panicked"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    // The same from CUTOVER_REGION, as `sandbox up` writes it.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["status", rb])
        .env("XDG_STATE_HOME", &state)
        .env("CUTOVER_REGION", "eu_west_1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`eu_west_1` is not an AWS region"), "{err}");
    assert!(state_files(&state).is_empty(), "nothing written");
}

/// An environment naming no load balancer (the single box) is in the region
/// in use only by one reached the same way. The ALB's, pinned to the
/// sandbox's region and found there, said nothing of the box's, reached in
/// us-west-2 where the runbook declares eu-central-1: the same tags there
/// could select another fleet to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_without_a_load_balancer_is_not_vouched_for_by_one_in_another_region() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/single-box-to-alb.toml")).unwrap();
    let region = "eu-west-2";
    assert!(text.contains("[environments.alb]\n") && text.contains("region = \"eu-central-1\""));
    let text = text.replacen("[environments.alb]\n", &format!("[environments.alb]\nregion = \"{region}\"\n"), 1);
    let path = dir.path().join("single-box.toml");
    std::fs::write(&path, &text).unwrap();
    let rb = cutover::runbook::parse(&path.display().to_string(), &text).unwrap();
    let sb = sandbox(&rb, region).await;
    let state = dir.path().join("state");
    for flag in ["--dry-run", "--yes"] {
        let mut c = cutover_command(&sb, &rb, &state, &["run", path.to_str().unwrap(), "retire/stop-box", flag]);
        c.env("CUTOVER_REGION", "us-west-2");
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}{err}", String::from_utf8_lossy(&out.stdout));
        assert!(
            err.contains("single-box (runbook")
                && err.contains("is declared in region eu-central-1, but would be reached in us-west-2"),
            "{flag}: {err}"
        );
    }
    sb.down().await;
}

/// A log the person asked for that cannot be written, or a log filter that
/// is none, ran on silently without a log: now one line and exit 2.
#[test]
fn a_log_file_that_cannot_be_written_or_a_bad_log_filter_stops_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let run = |log: &str, filter: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
        c.current_dir(env!("CARGO_MANIFEST_DIR")).env("XDG_STATE_HOME", dir.path()).env_remove("CUTOVER_LOG");
        if let Some(f) = filter {
            c.env("CUTOVER_LOG", f);
        }
        c.args(["--log-file", log, "validate", "runbooks/demo.toml"]).output().unwrap()
    };
    let out = run("/proc/no-such-dir/cutover.log", None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("cannot write the log file /proc/no-such-dir/cutover.log ("), "{err}");
    assert!(err.contains("give a writable --log-file"), "{err}");
    let good = dir.path().join("log").display().to_string();
    let out = run(&good, Some("debug,=[["));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("CUTOVER_LOG=debug,=[[ is not a log filter"), "{err}");
    assert_eq!(run(&good, Some("debug")).status.code(), Some(0));
}

/// A checklist file a newer cutover wrote (a field this one does not know)
/// is neither read nor written over; the message no longer tells the
/// reviewer to move it away, which would lose every tick and note.
#[test]
fn a_checklist_file_from_a_newer_cutover_is_kept_and_said_to_be_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cutover/demo.progress.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let newer = r#"{"ticks":{"prepare/backup":{"by":"ana","at":"2026-12-06T06:00:00Z"}},"notes":{},"signed_off":{}}"#;
    std::fs::write(&file, newer).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_STATE_HOME", dir.path())
        .env("CUTOVER_OPERATOR", "bo")
        .args(["--log-file", &dir.path().join("log").display().to_string()])
        .args(["tick", "runbooks/demo.toml", "prepare/backup", "--undo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("written by a newer cutover (upgrade this one) or damaged"), "{err}");
    assert!(!err.contains("move the file away"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), newer, "kept as it was");
}

/// A reader that goes away (`cutover plan … | head -1`) is no crash: the
/// output is lost, the command ends as it would have (a `println!` panicked
/// here, and the panic hook, writing to the same closed pipe, aborted).
#[test]
fn output_to_a_reader_that_went_away_is_no_crash() {
    use std::process::Stdio;
    let state = tempfile::tempdir().unwrap();
    for (args, stream) in
        [(["plan", "runbooks/demo.toml"], "stdout"), (["validate", "tests/runbooks/bad/multi-error.toml"], "stderr")]
    {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cutover"));
        c.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("XDG_STATE_HOME", state.path());
        // A pipe whose reading end is closed before the command writes.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = match stream {
            "stdout" => c.stdout(writer).stderr(Stdio::piped()).output().unwrap(),
            _ => c.stderr(writer).stdout(Stdio::piped()).output().unwrap(),
        };
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let want = if args[0] == "plan" { Some(0) } else { Some(2) };
        assert_eq!(out.status.code(), want, "{args:?} to a closed {stream}: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
    // Any other write error (a full disk) is no success: a document cut
    // short must not pass for whole.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "runbooks/demo.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_STATE_HOME", state.path())
        .stdout(full)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("cannot write the output: No space left on device"), "{said}");
}
