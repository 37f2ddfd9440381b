//! What the reliability scenarios showed, for README's generated
//! "Reliability" section (`examples/reliability_report.rs`). Used by the
//! integration tests, the benches and, through `#[path]`, the unit tests.

use std::path::PathBuf;

/// Notes that a test of `scenario` passed, with what it showed. Call it after
/// the test's last assertion, so only a passing test leaves a record. Writes
/// only when CUTOVER_RELIABILITY_DIR is set, as `./scripts/test` does.
#[track_caller]
pub fn record(scenario: &str, result: impl AsRef<str>) {
    let Some(dir) = std::env::var_os("CUTOVER_RELIABILITY_DIR").map(PathBuf::from) else {
        return;
    };
    let file = std::panic::Location::caller().file().to_string();
    let thread = std::thread::current();
    // libtest names the thread after the test; a bench's main has no test.
    let test = thread.name().filter(|n| *n != "main").unwrap_or("").to_string();
    let stem = file.trim_end_matches(".rs").replace('/', ".");
    let line = serde_json::json!({ "scenario": scenario, "file": file, "test": test, "result": result.as_ref() });
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // A test may record a scenario more than once (one record per case).
    for n in 1.. {
        let name = format!("{scenario}--{stem}--{}--{n}.json", test.replace("::", "."));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join(&name)) {
            Ok(mut f) => {
                std::io::Write::write_all(&mut f, line.to_string().as_bytes())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

/// `text`'s first line, cut at a word boundary to at most `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        return line.to_string();
    }
    let cut: String = line.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end_matches([',', ':', ';', '(']))
}
