//! Fuzzing the runbook parser and validator with proptest: random mutations
//! of the runbooks in the corpus (mostly the valid, shipped ones; also the bad
//! fixtures and `tests/fuzz/`) must give a runbook or diagnostics with a place
//! inside the text (line and column), shown under a caret, never a panic. The seed is fixed and
//! printed; `CUTOVER_FUZZ_SEED=N` picks another. CI runs the default cases; a
//! long run: `CUTOVER_FUZZ_CASES=200000 cargo test --release --test fuzz_runbook`.
//! A failing input is shrunk and written to `tests/fuzz/` to keep.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The corpus, valid runbooks (`runbooks/`) first: (how many are valid, all).
fn corpus() -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut valid = 0;
    for dir in ["runbooks", "tests/runbooks/bad", "tests/fuzz"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        out.extend(
            files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .map(|p| std::fs::read_to_string(p).unwrap()),
        );
        if dir == "runbooks" {
            valid = out.len();
        }
    }
    assert!(out.len() > 50, "the corpus is there: {}", out.len());
    for (i, text) in out[..valid].iter().enumerate() {
        cutover::runbook::parse("shipped.toml", text).unwrap_or_else(|e| panic!("shipped runbook {i} is valid: {e}"));
    }
    (valid, out)
}

/// Fragments that tend to reach the validator's corners.
const TOKENS: &[&str] = &[
    "=",
    "[[",
    "]]",
    "[",
    "]",
    "\"",
    "'",
    "{",
    "}",
    ",",
    "\n",
    "#",
    "é",
    "\u{0}",
    "\u{feff}",
    "-1",
    "0",
    "255",
    "256",
    "1e400",
    "99999999999999999999",
    "\"0s\"",
    "\"5x\"",
    "\"48h\"",
    "\"p100\"",
    "\"p0\"",
    "\"p99.9\"",
    "true",
    "steps = [10, 300]",
    "weight = -1",
    "\n[rollout]\n",
    "\n[[rollout.gates]]\nkind = \"metric\"\n",
    "\n[[phases]]\nid = \"x\"\n",
    "kind = \"action\"",
    "action = \"shift_weights\"",
    "environment = \"nope\"",
    "no_data = \"maybe\"",
    "ttl = 0",
    "soak = \"\"",
    "set_identifiers = {}",
    "\n[dns]\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert { at: usize, token: usize },
    Delete { at: usize, len: usize },
    DuplicateLine { line: usize },
    DropLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        2 => (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        2 => any::<usize>().prop_map(|line| Mutation::DropLine { line }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// The nearest char boundary at or before `i % (len + 1)`.
fn boundary(text: &str, i: usize) -> usize {
    let mut i = i % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut t = text.to_string();
    for m in muts {
        let mut lines: Vec<String> = t.lines().map(String::from).collect();
        let n = lines.len().max(1);
        match m {
            Mutation::Insert { at, token } => t.insert_str(boundary(&t, *at), TOKENS[*token]),
            Mutation::Delete { at, len } => {
                let a = boundary(&t, *at);
                let b = boundary(&t, (a + len).min(t.len()));
                if b > a {
                    t.replace_range(a..b, "");
                }
            }
            Mutation::Truncate { at } => t.truncate(boundary(&t, *at)),
            Mutation::DuplicateLine { line } if !lines.is_empty() => {
                let l = lines[line % n].clone();
                lines.insert(line % n, l);
                t = lines.join("\n");
            }
            Mutation::DropLine { line } if !lines.is_empty() => {
                lines.remove(line % n);
                t = lines.join("\n");
            }
            Mutation::SwapLines { a, b } if !lines.is_empty() => {
                lines.swap(a % n, b % n);
                t = lines.join("\n");
            }
            _ => {}
        }
    }
    t
}

/// Checks one input; counts the inputs the validator rejected.
fn check(text: &str, rejected: &AtomicUsize) -> Result<(), TestCaseError> {
    let result = std::panic::catch_unwind(|| cutover::runbook::parse("fuzz.toml", text));
    let Ok(result) = result else {
        return Err(TestCaseError::fail("the parser panicked"));
    };
    if let Err(e) = result {
        rejected.fetch_add(1, Ordering::Relaxed);
        let lines = text.lines().count() + 1;
        prop_assert!(!e.diagnostics.is_empty(), "an error with no diagnostic");
        let text_lines: Vec<&str> = text.split('\n').collect();
        for d in &e.diagnostics {
            prop_assert!(d.line <= lines, "line {} past the end ({lines}): {d}", d.line);
            if d.line == 0 {
                // The whole file: no column.
                prop_assert!(d.col == 0, "a whole-file diagnostic with a column: {d}");
            } else {
                let len = text_lines.get(d.line - 1).map_or(0, |l| l.len());
                prop_assert!(
                    d.col >= 1 && d.col <= len + 1,
                    "column {} outside line {} ({len} bytes): {d}",
                    d.col,
                    d.line
                );
            }
            prop_assert!(!d.message.trim().is_empty(), "empty message: {d}");
            prop_assert!(d.to_string().starts_with("fuzz.toml:"), "{d}");
        }
        // What `cutover validate` prints: each line, then its source line with a caret.
        let Ok(shown) = std::panic::catch_unwind(|| e.render(false)) else {
            return Err(TestCaseError::fail("rendering the errors panicked"));
        };
        for d in &e.diagnostics {
            prop_assert!(shown.contains(&d.to_string()), "{d} missing from:\n{shown}");
        }
        let carets = shown.lines().filter(|l| l.trim_start().starts_with('|') && l.contains('^')).count();
        let located = e.diagnostics.iter().filter(|d| d.line > 0).count();
        prop_assert!(carets >= located, "{located} located errors, {carets} caret lines:\n{shown}");
    }
    Ok(())
}

#[test]
fn mutated_runbooks_never_panic_and_every_error_has_a_place() {
    let (valid, corpus) = corpus();
    let cases: u32 = std::env::var("CUTOVER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    assert!(cases >= 1, "CUTOVER_FUZZ_CASES=0 would run no case and still pass");
    let seed: u64 = std::env::var("CUTOVER_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261201);
    eprintln!("fuzz seed {seed} (CUTOVER_FUZZ_SEED={seed} repeats this run)");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    // A panic is caught and reported as a failure; keep its message off stderr.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Mostly mutations of valid runbooks: they reach the validator's corners,
    // where a mangled one mostly stops at the TOML parser.
    let start = prop_oneof![4 => 0..valid, 1 => valid..corpus.len()];
    let strategy = (start, proptest::collection::vec(mutation(), 1..8));
    let started = std::time::Instant::now();
    let rejected = AtomicUsize::new(0);
    let result = runner.run(&strategy, |(seed, muts)| check(&apply(&corpus[seed], &muts), &rejected));
    std::panic::set_hook(hook);
    if let Err(e) = result {
        let input = match &e {
            proptest::test_runner::TestError::Fail(_, (seed, muts)) => apply(&corpus[*seed], muts),
            proptest::test_runner::TestError::Abort(_) => String::new(),
        };
        // Outside the work tree (a test run leaves it as it found it); moved
        // into tests/fuzz by hand, it joins the corpus.
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-found-seed-{seed}.toml"));
        std::fs::write(&keep, &input).unwrap();
        panic!(
            "{e}\nthe shrunk input is kept in {} (move it into tests/fuzz to keep it in the corpus)",
            keep.display()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{cases} mutated runbooks parsed in {secs:.1} s");
    common::record(
        "fuzz",
        format!(
            "{cases} runbooks made by 1–7 random mutations (seed {seed}) of the {} in the corpus, four in five from \
             the {valid} valid shipped ones, parsed and validated in {secs:.0} s (debug build): no panic; the {} \
             rejected each had diagnostics whose line and column lie inside the text, and {} were accepted. \
             Longer runs: `CUTOVER_FUZZ_CASES=N`",
            corpus.len(),
            rejected.load(Ordering::Relaxed),
            cases as usize - rejected.load(Ordering::Relaxed).min(cases as usize)
        ),
    );
}
