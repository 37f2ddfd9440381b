//! The runbook files in the repository: shipped runbooks validate, and every
//! bad fixture under tests/runbooks/bad/ fails with exactly the diagnostics in
//! its `.err` file (as `cutover validate` prints them from the repo root):
//! each one's line, then the runbook's line with a caret under the fault.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::tmux::Tmux;

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

/// Checks the fixtures' form rather than their words: every `file:line:col:`
/// line is followed by that line of the runbook, verbatim, with a caret at the
/// column, and errors are separated by a blank line.
#[test]
fn every_located_error_shows_its_line_with_a_caret_at_its_column() {
    let mut carets = 0;
    for path in toml_files("tests/runbooks/bad") {
        let source = std::fs::read_to_string(Path::new(ROOT).join(&path)).expect("read fixture");
        let source_lines: Vec<&str> = source.lines().collect();
        let err = std::fs::read_to_string(Path::new(ROOT).join(path.with_extension("err"))).expect("read .err");
        let prefix = format!("{}:", path.display());
        for block in err.trim_end().split("\n\n") {
            let lines: Vec<&str> = block.lines().collect();
            let head = lines[0].strip_prefix(&prefix).unwrap_or_else(|| panic!("{}: {:?}", path.display(), lines[0]));
            let mut place = head.splitn(3, ':');
            let (Some(Ok(line)), Some(Ok(col))) =
                (place.next().map(str::parse::<usize>), place.next().map(str::parse::<usize>))
            else {
                assert_eq!(lines.len(), 1, "a whole-file error has no snippet: {block}");
                continue;
            };
            assert_eq!(lines.len(), 4, "{}: line, gutter, source, caret:\n{block}", path.display());
            let gutter = " ".repeat(line.to_string().len() + 1);
            assert_eq!(lines[1], format!("{gutter}|"), "{block}");
            if head.contains("a URL is not an environment variable name")
                || head.contains("unknown field `webhook_url`")
                || head.contains("a password is written in the Redis URL")
            {
                // The URL is the secret: shown masked, at the same columns.
                let masked = lines[2].strip_prefix(&format!("{line} | ")).unwrap_or_else(|| panic!("{block}"));
                assert_eq!(masked.len(), source_lines[line - 1].len(), "{block}");
                assert!(!masked.contains("://") && masked.contains("***"), "the URL is masked: {block}");
            } else {
                assert_eq!(lines[2], format!("{line} | {}", source_lines[line - 1]), "{block}");
            }
            let caret = lines[3].strip_prefix(&format!("{gutter}| ")).unwrap_or_else(|| panic!("{block}"));
            let column: usize = source_lines[line - 1].chars().take(col - 1).count();
            assert_eq!(caret.find('^'), Some(column), "caret not under column {col}:\n{block}");
            assert!(caret.trim_start().chars().all(|c| c == '^'), "{block}");
            carets += 1;
        }
    }
    assert!(carets >= 60, "expected at least 60 located errors across the fixtures, found {carets}");
}

/// On a terminal the errors are styled (ANSI); NO_COLOR or a pipe (the `.err`
/// fixtures above) keeps them plain.
#[test]
fn validate_colours_its_errors_only_on_a_terminal() {
    let state = tempfile::tempdir().expect("tempdir");
    let run = |no_color: &str| {
        let tmux = Tmux { socket: format!("cutover-colour-{}-{}", std::process::id(), no_color.len()) };
        let command = format!(
            "cd '{ROOT}' && env {no_color} XDG_STATE_HOME='{}' '{}' validate tests/runbooks/bad/wrong-type.toml; echo done; sleep 30",
            state.path().display(),
            env!("CARGO_BIN_EXE_cutover"),
        );
        let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "200", "-y", "20", &command]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        tmux.wait_for("validate's output", Duration::from_secs(20), |s| s.contains("done"));
        String::from_utf8_lossy(&tmux.cmd(&["capture-pane", "-p", "-e", "-t", "t"]).stdout).into_owned()
    };
    let styled = run("");
    assert!(styled.contains("ttl = \"60\""), "{styled}");
    assert!(styled.contains("\x1b["), "no ANSI styles on a terminal: {styled:?}");
    let plain = run("NO_COLOR=1");
    assert!(plain.contains("ttl = \"60\"") && plain.contains("^^^^"), "{plain}");
    assert!(!plain.contains("\x1b["), "styles despite NO_COLOR: {plain:?}");
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

    // Not UTF-8: located where the first invalid byte stands.
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[runbook]\nname = \"caf\xe9\"\n").expect("write non-UTF-8 file");
    let out = validate(&latin1, state.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with(&format!("{}:2:12: is not UTF-8", latin1.display())), "{stderr}");
}
