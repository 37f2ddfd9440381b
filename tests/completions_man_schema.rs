//! What cutover gives shells, `man` and editors: completion scripts that a real
//! bash sources and completes with, a man page that `man` renders, and the
//! runbook JSON Schema that every good runbook meets and structural mistakes
//! do not.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::tmux::Tmux;

use clap::CommandFactory;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn cutover(args: &[&str]) -> Output {
    let state = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .current_dir(ROOT)
        .env("XDG_STATE_HOME", state.path())
        .stdin(Stdio::null())
        .output()
        .expect("run cutover");
    assert!(out.status.success(), "cutover {args:?}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "cutover {args:?} wrote to stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn subcommand_names() -> Vec<String> {
    cutover::cli::Cli::command().get_subcommands().map(|c| c.get_name().to_string()).filter(|n| n != "help").collect()
}

/// Sources the bash script in a real bash, sets the words typed so far and
/// calls the completion function as bash would on Tab; returns what it offers.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let words_array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n_cutover cutover '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words_array.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words.get(words.len().wrapping_sub(2)).copied().unwrap_or(""),
    );
    let out = Command::new("bash").arg("-c").arg(&program).current_dir(ROOT).output().expect("run bash");
    assert!(out.status.success(), "bash failed: {}\n{program}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn bash_completion_parses_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("cutover.bash");
    std::fs::write(&script, cutover(&["completions", "bash"]).stdout).expect("write script");

    let syntax = Command::new("bash").arg("-n").arg(&script).output().expect("run bash -n");
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));

    assert_eq!(bash_complete(&script, &["cutover", "sta"]), ["status"], "`cutover sta<Tab>`");
    let all = bash_complete(&script, &["cutover", ""]);
    for name in subcommand_names() {
        assert!(all.contains(&name), "`cutover <Tab>` does not offer {name}: {all:?}");
    }
    let flags = bash_complete(&script, &["cutover", "shift", "--dr"]);
    assert_eq!(flags, ["--dry-run"], "`cutover shift --dr<Tab>`");
}

/// Runbook paths are completed by bash's own file completion, which the script
/// falls back to: only an interactive bash shows it, so this one types Tab in tmux.
#[test]
fn bash_completes_a_runbook_path_on_tab_in_an_interactive_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("cutover.bash");
    std::fs::write(&script, cutover(&["completions", "bash"]).stdout).expect("write script");
    let tmux = Tmux { socket: format!("cutover-completion-{}", std::process::id()) };
    let shell =
        format!("cd '{ROOT}' && exec env -i TERM=xterm HOME='{}' bash --norc --noprofile -i", dir.path().display());
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "150", "-y", "20", &shell]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.keys(&[&format!("source '{}'; PS1='$ '; clear", script.display()), "Enter"]);
    tmux.wait_for("the prompt", Duration::from_secs(10), |s| s.trim_end().ends_with('$'));

    tmux.keys(&["cutover sta", "Tab"]);
    tmux.wait_for("`cutover sta<Tab>`", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.trim_end() == "$ cutover status")
    });
    tmux.keys(&["C-u", "cutover validate runbooks/de", "Tab"]);
    tmux.wait_for("`cutover validate runbooks/de<Tab>`", Duration::from_secs(10), |s| {
        s.contains("$ cutover validate runbooks/demo.toml")
    });
    tmux.keys(&["C-u", "cutover --log-file tests/runbooks/minimal-", "Tab"]);
    tmux.wait_for("`--log-file tests/runbooks/minimal-<Tab>`", Duration::from_secs(10), |s| {
        s.contains("$ cutover --log-file tests/runbooks/minimal-sandbox.toml")
    });
}

#[test]
fn every_shell_gets_a_script_and_zsh_completes_runbooks_as_files() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(cutover(&["completions", shell]).stdout).expect("UTF-8 script");
        for name in subcommand_names() {
            assert!(script.contains(&name), "{shell} script does not name subcommand {name}");
        }
    }
    // The runbook argument carries ValueHint::FilePath, which zsh turns into `_files`.
    let zsh = String::from_utf8(cutover(&["completions", "zsh"]).stdout).expect("UTF-8 script");
    let runbook_spec = zsh.lines().find(|l| l.contains(":runbook:")).expect("zsh names the runbook argument");
    assert!(runbook_spec.contains("_files"), "zsh completes runbooks as: {runbook_spec}");

    let state = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["completions", "tcsh"])
        .env("XDG_STATE_HOME", state.path())
        .output()
        .expect("run cutover");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"), "the error lists the shells");
}

#[test]
fn man_page_renders_with_man_and_names_every_subcommand() {
    let page = cutover(&["man"]).stdout;
    assert!(page.starts_with(b".ie") || page.starts_with(b".TH"), "not roff: {}", String::from_utf8_lossy(&page[..80]));
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run man (apt install man-db)");
    std::io::Write::write_all(&mut man.stdin.take().expect("stdin"), &page).expect("feed man");
    let out = man.wait_with_output().expect("man output");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man -l -: {warnings}");
    assert!(warnings.trim().is_empty(), "groff warned: {warnings}");
    assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    for name in subcommand_names() {
        assert!(text.contains(&format!("cutover-{name}")), "the man page does not list {name}:\n{text}");
    }
}

/// The `.toml` files directly in `dir` (relative to the repo root), sorted.
fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// The runbook as an editor's schema validator sees it: TOML read into JSON.
/// None when the text is not TOML at all (no schema can judge it).
fn as_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).expect("read runbook");
    toml::from_str::<Value>(&text).ok()
}

/// Errors from serde's structure checks (what the schema can express), as the
/// first line of a fixture's `.err` file says them.
const STRUCTURAL: [&str; 4] = ["unknown field", "invalid type", "missing field", "missing table"];

#[test]
fn schema_accepts_every_good_runbook_and_rejects_structural_mistakes() {
    let schema: Value = serde_json::from_slice(&cutover(&["schema"]).stdout).expect("`cutover schema` prints JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#", "draft 7, which taplo reads");
    let gate = &schema["definitions"]["Gate"]["properties"];
    assert_eq!(gate["failure_limit"]["description"], "Failed measurements in total that abort (default 1).");
    assert!(gate["kind"]["enum"].as_array().is_some_and(|kinds| kinds.contains(&"alarm_ok".into())), "{gate}");

    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource("cutover:runbook.schema.json", schema).expect("schema loads");
    let index = compiler.compile("cutover:runbook.schema.json", &mut schemas).expect("schema compiles");

    let mut good = toml_files("runbooks");
    good.extend(toml_files("tests/runbooks"));
    assert!(good.len() >= 6, "{good:?}");
    for path in &good {
        let runbook = as_json(path).unwrap_or_else(|| panic!("{} is not TOML", path.display()));
        if let Err(e) = schemas.validate(&runbook, index) {
            panic!("{} does not match the schema: {e}", path.display());
        }
    }

    let mut structural = Vec::new();
    for path in toml_files("tests/runbooks/bad") {
        let err = std::fs::read_to_string(path.with_extension("err")).expect("read .err");
        let first = err.lines().next().unwrap_or("");
        if !STRUCTURAL.iter().any(|s| first.contains(s)) {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let runbook = as_json(&path).unwrap_or_else(|| panic!("{name} is not TOML"));
        assert!(schemas.validate(&runbook, index).is_err(), "the schema accepts {name}, which fails with: {first}");
        structural.push(name);
    }
    for expected in ["unknown-key.toml", "unknown-key-nested.toml", "wrong-type.toml", "missing-field.toml"] {
        assert!(
            structural.iter().any(|n| n == expected),
            "{expected} not among the structural fixtures {structural:?}"
        );
    }
    assert!(structural.len() >= 6, "{structural:?}");

    // Names the validator accepts from a closed list are offered (and checked) by the schema too.
    for name in ["unknown-gate-kind", "unknown-item-kind", "unknown-check", "unknown-action", "unknown-no-data"] {
        let runbook = as_json(&Path::new(ROOT).join(format!("tests/runbooks/bad/{name}.toml"))).expect("TOML");
        assert!(schemas.validate(&runbook, index).is_err(), "the schema accepts {name}");
    }
}
