//! README's "Reliability" section and what the suite's tests recorded
//! (`tests/common/reliability.rs`). After a full, passing `cargo test`,
//! `./scripts/test` checks that the committed section names exactly the
//! tests that recorded each scenario (a test that no longer passes, or a new
//! one, fails the run; figures may differ), and `./scripts/test
//! --update-readme` writes the section anew:
//!
//!     cargo run --example reliability_report -- --check RECORDS_DIR README.md
//!     cargo run --example reliability_report -- --write RECORDS_DIR README.md
//!
//! Every scenario must have at least one record; a missing or unknown one is
//! an error and README is left untouched.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

/// The scenarios of the hardening issue, in README order: (id, title).
const SCENARIOS: &[(&str, &str)] = &[
    ("aws-down", "AWS endpoint down (moto frozen) for 30 s or more"),
    ("throttling", "AWS throttling (a proxy answering with `Throttling` / `Rate exceeded`)"),
    ("slow-dependencies", "Slow AWS (2 s per call) and slow Redis (2 s per command)"),
    ("redis-killed", "Redis source or target killed mid-copy"),
    (
        "sigkill",
        "cutover SIGKILLed at every crash point of a rollout, at 20 points of a copy, and between a copy's last checkpoint and its removal",
    ),
    ("terminal", "Tiny and resized terminals, a panicking worker"),
    ("fuzz", "Runbook parser and validator fuzzed"),
    ("properties", "Property tests: weight maths and the rollout engine"),
    ("bad-input", "Bad input to every headless subcommand"),
    ("secrets", "Planted secrets never shown"),
    ("read-only", "`--read-only` refuses every change"),
    ("file-modes", "State, audit, log and lock files private (0600)"),
];

/// How each test file exercises the code: against real parts (moto, real
/// redis-server processes, the cutover binary) or in one process.
const KINDS: &[(&str, &str)] = &[
    ("tests/status.rs", REAL),
    ("tests/rollout.rs", REAL),
    ("tests/faults.rs", REAL),
    ("tests/redis_copy.rs", REAL),
    ("tests/bad_input.rs", REAL),
    ("tests/secrets.rs", REAL),
    ("tests/read_only.rs", REAL),
    ("tests/tui_terminal.rs", REAL),
    ("tests/sandbox.rs", REAL),
    ("tests/aws_metrics.rs", REAL),
    ("tests/drive.rs", REAL),
    ("tests/actions.rs", REAL),
    ("tests/tui.rs", "in process: the cockpit's state and a ratatui TestBackend"),
    ("tests/fuzz_runbook.rs", "in process: proptest on the parser and validator"),
    ("benches/tui.rs", "the TUI bench's smoke run, against the sandbox"),
];
const REAL: &str = "against real parts: moto, redis-server and the cutover binary";
const UNIT: &str = "in process: unit tests";

fn kind(file: &str) -> Result<&'static str, String> {
    if file.starts_with("src/") {
        return Ok(UNIT);
    }
    KINDS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, k)| *k)
        .ok_or_else(|| format!("{file}: not in KINDS; say whether it runs against real parts"))
}

const BEGIN: &str = "<!-- reliability:begin -->";
const END: &str = "<!-- reliability:end -->";

#[derive(serde::Deserialize)]
struct Record {
    scenario: String,
    file: String,
    test: String,
    result: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, records, readme] = args.as_slice() else {
        eprintln!("usage: reliability_report --check|--write RECORDS_DIR README.md");
        return ExitCode::from(2);
    };
    let result = match mode.as_str() {
        "--write" => write(Path::new(records), Path::new(readme))
            .map(|n| format!("{readme}: Reliability section written from {n} test records")),
        "--check" => check(Path::new(records), Path::new(readme))
            .map(|n| format!("{readme}: Reliability section matches the {n} tests that recorded")),
        _ => Err(format!("unknown mode {mode}; use --check or --write")),
    };
    match result {
        Ok(line) => {
            eprintln!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reliability report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// README's text and the byte range of the section between the markers.
fn section_range(readme: &Path) -> Result<(String, std::ops::Range<usize>), String> {
    let text = std::fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!("{}: no {BEGIN} … {END} markers; add them where the section goes", readme.display()));
    };
    if e < b {
        return Err(format!("{}: {END} comes before {BEGIN}", readme.display()));
    }
    Ok((text, b + BEGIN.len()..e))
}

fn write(dir: &Path, readme: &Path) -> Result<usize, String> {
    let records = read_records(dir)?;
    let n = records.len();
    let section = section(records)?;
    let (text, range) = section_range(readme)?;
    let new = format!("{}\n{section}{}", &text[..range.start], &text[range.end..]);
    if new != text {
        let tmp = readme.with_extension("md.tmp");
        std::fs::write(&tmp, new).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    }
    Ok(n)
}

/// (scenario, file, test) of every record, or of every line of the section.
type Tests = std::collections::BTreeSet<(String, String, String)>;

fn check(dir: &Path, readme: &Path) -> Result<usize, String> {
    let records = read_records(dir)?;
    section(read_records(dir)?)?;
    let recorded: Tests = records.into_iter().map(|r| (r.scenario, r.file, short(&r.test))).collect();
    let (text, range) = section_range(readme)?;
    let committed = listed(&text[range])?;
    if recorded == committed {
        return Ok(recorded.len());
    }
    let show = |t: &(String, String, String)| format!("{}: {} {}", t.0, t.1, t.2);
    let mut why = Vec::new();
    why.extend(committed.difference(&recorded).map(|t| format!("  in README, not recorded by this run: {}", show(t))));
    why.extend(recorded.difference(&committed).map(|t| format!("  recorded, not in README: {}", show(t))));
    Err(format!(
        "README's Reliability section no longer matches what the suite records:\n{}\nrun `./scripts/test --update-readme` and commit README",
        why.join("\n")
    ))
}

/// The tests the committed section names, by scenario.
fn listed(section: &str) -> Result<Tests, String> {
    let mut out = Tests::new();
    let mut scenario: Option<&str> = None;
    for line in section.lines() {
        if let Some((id, _)) = SCENARIOS.iter().find(|(_, title)| line.starts_with(&format!("**{title}**"))) {
            scenario = Some(id);
        } else if let Some(item) = line.strip_prefix("- ") {
            let at = item.rsplit_once(" (`").map(|(_, at)| at.trim_end_matches(')')).unwrap_or("");
            let names: Vec<&str> = at.split('`').map(str::trim).filter(|s| !s.is_empty()).collect();
            let (Some(id), Some(file)) = (scenario, names.first()) else {
                return Err(format!("README's Reliability section: cannot read `{line}`"));
            };
            out.insert((id.to_string(), file.to_string(), names.get(1).unwrap_or(&"").to_string()));
        }
    }
    Ok(out)
}

fn short(test: &str) -> String {
    test.rsplit("::").next().unwrap_or("").to_string()
}

fn read_records(dir: &Path) -> Result<Vec<Record>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e} (did the suite run?)", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let r: Record = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(r);
    }
    Ok(out)
}

fn section(records: Vec<Record>) -> Result<String, String> {
    let mut by: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for r in records {
        if !SCENARIOS.iter().any(|(id, _)| *id == r.scenario) {
            return Err(format!("{}: unknown scenario `{}`; add it to SCENARIOS", r.file, r.scenario));
        }
        by.entry(r.scenario.clone()).or_default().push(r);
    }
    let missing: Vec<&str> = SCENARIOS.iter().map(|(id, _)| *id).filter(|id| !by.contains_key(*id)).collect();
    if !missing.is_empty() {
        return Err(format!("no passing test recorded {}; run the whole suite", missing.join(", ")));
    }
    let mut s = String::from(
        "_Written by `./scripts/test --update-readme` from what each test below recorded after its last \
         assertion passed; every `./scripts/test` run fails when a test named here no longer records its \
         scenario, or a new one does (figures may differ from run to run). Each line says how its test \
         runs: against real parts (moto, redis-server, the binary) or in one process. Do not edit by hand._\n",
    );
    for (id, title) in SCENARIOS {
        let mut rs = by.remove(*id).unwrap_or_default();
        rs.sort_by(|a, b| (&a.file, &a.test).cmp(&(&b.file, &b.test)));
        let tests: std::collections::BTreeSet<(&str, &str)> =
            rs.iter().map(|r| (r.file.as_str(), r.test.as_str())).collect();
        let _ = write!(s, "\n**{title}**: {} test(s) passed\n\n", tests.len());
        for r in &rs {
            let name = short(&r.test);
            let at = if name.is_empty() { format!("`{}`", r.file) } else { format!("`{}` `{name}`", r.file) };
            let _ = writeln!(s, "- {} [{}] ({at})", r.result.trim(), kind(&r.file)?);
        }
    }
    s.push('\n');
    Ok(s)
}
