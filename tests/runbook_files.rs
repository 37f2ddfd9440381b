//! The runbook files in the repository: shipped runbooks validate, and every
//! bad fixture under tests/runbooks/bad/ fails with exactly the diagnostics in
//! its `.err` file (as `cutover validate` prints them from the repo root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cutover::runbook::{self, Runbook};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The `.toml` files directly in `dir` (relative to the repo root), sorted.
fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| Path::new(dir).join(p.file_name().expect("file name")))
        .collect();
    files.sort();
    files
}

/// Runs `cutover validate <path>` from the repo root, logging into `state`.
fn validate(path: &Path, state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("validate")
        .arg(path)
        .current_dir(ROOT)
        .env("XDG_STATE_HOME", state)
        .output()
        .expect("run cutover")
}

fn load(path: &Path) -> Runbook {
    runbook::load(&Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{} does not validate:\n{e}", path.display()))
}

#[test]
fn shipped_runbooks_validate_and_can_be_rehearsed() {
    let files = toml_files("runbooks");
    assert!(files.len() >= 4, "expected at least 4 runbooks under runbooks/, found {files:?}");
    for path in &files {
        let rb = load(path);
        let name = path.display();
        let sandbox = rb.sandbox.as_ref().unwrap_or_else(|| panic!("{name}: no [sandbox] section"));
        for env in rb.environments.values() {
            assert!(
                sandbox.instances.iter().any(|i| i.environment == env.name),
                "{name}: the sandbox has no instance in environment `{}`",
                env.name
            );
            if env.load_balancer.is_some() {
                assert!(
                    sandbox.load_balancer_zones.contains_key(&env.name),
                    "{name}: no sandbox load_balancer_zones for `{}`",
                    env.name
                );
            }
        }
    }
}

#[test]
fn minimal_runbooks_validate() {
    let minimal = load(Path::new("tests/runbooks/minimal.toml"));
    assert!(minimal.sandbox.is_none(), "minimal.toml should have no [sandbox] section");
    let with_sandbox = load(Path::new("tests/runbooks/minimal-sandbox.toml"));
    assert!(with_sandbox.sandbox.is_some());
}

#[test]
fn bad_runbooks_fail_with_the_expected_diagnostics() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = "tests/runbooks/bad";
    let fixtures = toml_files(dir);
    let mut failures = Vec::new();
    for path in &fixtures {
        let name = path.display();
        let err_file = Path::new(ROOT).join(path.with_extension("err"));
        let Ok(expected) = std::fs::read_to_string(&err_file) else {
            failures.push(format!("{name}: no .err file beside it"));
            continue;
        };
        let out = validate(path, state.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) {
            failures.push(format!("{name}: exit status {:?}, expected 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{name}: printed to stdout: {}", String::from_utf8_lossy(&out.stdout)));
        }
        if stderr != expected {
            failures.push(format!("{name}: stderr differs\n--- expected\n{expected}--- got\n{stderr}"));
        }
    }
    // An .err without its runbook is a leftover from a renamed fixture.
    for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).expect("list bad fixtures") {
        let p = entry.expect("directory entry").path();
        if p.extension().is_some_and(|x| x == "err") && !p.with_extension("toml").exists() {
            failures.push(format!("{}: no .toml beside it", p.display()));
        }
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
    assert!(fixtures.len() >= 30, "expected at least 30 bad fixtures, found {}", fixtures.len());
}

/// Asserts status 2, empty stdout and one stderr line that starts with the path.
fn assert_one_line_naming(path: &Path, state: &Path, expect: &str) {
    let out = validate(path, state);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    assert!(stderr.starts_with(&format!("{}: ", path.display())), "does not name the path: {stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in: {stderr}");
}

#[test]
fn unreadable_inputs_exit_2_with_one_line_naming_the_path() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");

    assert_one_line_naming(&dir.path().join("missing.toml"), state.path(), "cannot read");
    assert_one_line_naming(dir.path(), state.path(), "is a directory");

    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[runbook]\nname = \"caf\xe9\"\n").expect("write non-UTF-8 file");
    assert_one_line_naming(&latin1, state.path(), "is not UTF-8");
}
