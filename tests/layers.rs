//! The module layers point one way (README, Development): a module imports
//! only modules below it, and the files inside a module do not import each
//! other in a cycle. Read from the `crate::` and `super::` paths in `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may use only modules of a lower rank.
const LAYERS: &[&[&str]] = &[
    // Test-only: what a reliability scenario showed (README's generated section).
    &["reliability"],
    &["analysis"],
    &["runbook"],
    &["paths", "time", "hash", "crashpoint", "notify"],
    &["store"],
    &["aws"],
    &["authority"],
    &["engine"],
    &["redis"],
    &["live"],
    &["status"],
    // `cutover report`: the audit and CloudWatch series drawn as HTML.
    &["report"],
    &["drive"],
    &["tui"],
    // Beside the command line: `cutover sandbox up` and `demo` start it; it
    // never imports the command line.
    &["sandbox"],
    &["cli"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (a doc comment may name a path
/// it does not import).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments after each `prefix` (`crate::`, `super::`), including
/// every name of a brace group: `crate::{a::x, b}` gives `a` and `b`.
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        names.insert(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if !item.is_empty() {
                names.insert(item);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names.remove("self");
    names
}

/// `src/drive/rollout.rs` → ("drive", Some("rollout")); `src/time.rs` → ("time", None).
fn module_of(src: &Path, file: &Path) -> (String, Option<String>) {
    let rel: Vec<String> = file
        .strip_prefix(src)
        .unwrap()
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match rel.as_slice() {
        [one] => (one.clone(), None),
        [top, sub, ..] => (top.clone(), Some(sub.clone()).filter(|s| s != "mod")),
        [] => unreachable!(),
    }
}

struct Graph {
    /// top module → modules it uses, with a file that does.
    modules: BTreeMap<String, BTreeMap<String, String>>,
    /// (top module, file module) → sibling file modules it uses.
    inside: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph { modules: BTreeMap::new(), inside: BTreeMap::new() };
    for file in files {
        let (top, sub) = module_of(&src, &file);
        if top == "main" || top == "lib" {
            continue;
        }
        let text = code(&std::fs::read_to_string(&file).unwrap());
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        for used in named_after(&text, "crate::") {
            if used != top {
                g.modules.entry(top.clone()).or_default().entry(used).or_insert_with(|| shown.clone());
            }
        }
        if let Some(sub) = sub {
            let siblings = g.inside.entry(top.clone()).or_default().entry(sub.clone()).or_default();
            let mut used = named_after(&text, "super::");
            used.extend(named_after(&text, &format!("crate::{top}::")));
            used.remove(&sub);
            siblings.extend(used);
        }
    }
    g
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let g = graph();
    let mut wrong = Vec::new();
    for (module, uses) in &g.modules {
        let Some(own) = rank(module) else {
            wrong.push(format!("{module}: not in LAYERS; give it a layer"));
            continue;
        };
        for (used, file) in uses {
            match rank(used) {
                None => wrong.push(format!("{file}: uses crate::{used}, which is not in LAYERS")),
                Some(r) if r >= own => {
                    wrong.push(format!("{file}: {module} uses crate::{used}, which is not below it"))
                }
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "upward or sideways imports:\n{}", wrong.join("\n"));
}

#[test]
fn no_files_of_a_module_import_each_other_in_a_cycle() {
    let g = graph();
    let mut cycles = Vec::new();
    for (top, subs) in &g.inside {
        // Depth-first search for a back edge among the module's own files.
        fn visit(
            at: &str,
            subs: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<String>,
        ) {
            if let Some(i) = path.iter().position(|p| p == at) {
                found.push(format!("{} → {at}", path[i..].join(" → ")));
                return;
            }
            if !done.insert(at.to_string()) {
                return;
            }
            path.push(at.to_string());
            for next in subs.get(at).into_iter().flatten().filter(|n| subs.contains_key(*n)) {
                visit(next, subs, path, done, found);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        let mut found = Vec::new();
        for sub in subs.keys() {
            visit(sub, subs, &mut Vec::new(), &mut done, &mut found);
        }
        cycles.extend(found.into_iter().map(|c| format!("{top}: {c}")));
    }
    assert!(cycles.is_empty(), "import cycles between files of one module:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_every_import_form() {
    let code = code(
        "use crate::{aws::Clients, live::{a, b}, runbook};\nlet x = crate::time::rfc3339(t); // crate::tui\nfoo_crate::x",
    );
    let names: Vec<String> = named_after(&code, "crate::").into_iter().collect();
    assert_eq!(names, ["aws", "live", "runbook", "time"]);
}

#[test]
fn no_sdk_call_outside_the_aws_adapters_and_the_sandbox() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let wrong: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("aws")) && !f.starts_with(src.join("sandbox")))
        .filter(|f| {
            // The service crates come through crates/aws-sdk (`aws_sdk::ec2`); a direct
            // `aws_sdk_ec2` is caught too.
            let code = code(&std::fs::read_to_string(f).unwrap());
            code.contains("aws_sdk::") || code.contains("aws_sdk_")
        })
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert!(wrong.is_empty(), "the AWS SDK used outside src/aws and src/sandbox: {wrong:?}");
}

/// The sandbox stands for AWS: its firewall, traffic split, alarm
/// evaluation and readings are its own simple implementations of AWS's
/// rules, so a mistake in what cutover reads or concludes shows as a
/// disagreement instead of being shared by both. It may use cutover's
/// runbook (what to build), its clients and their configuration (how to
/// reach moto), and the small utilities; nothing that reads or judges.
#[test]
fn the_sandbox_uses_none_of_the_code_it_checks() {
    const MAY_USE: &[&str] = &["sandbox", "runbook", "aws", "time", "paths", "hash", "crashpoint"];
    const MAY_USE_OF_AWS: &[&str] = &["Clients", "SideClients", "Reach", "sandbox_config"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("sandbox"), &mut files);
    assert!(files.len() > 5, "the sandbox's files: {files:?}");
    let mut wrong = Vec::new();
    for f in &files {
        let code = code(&std::fs::read_to_string(f).unwrap());
        let shown = f.strip_prefix(&src).unwrap().display();
        for used in named_after(&code, "crate::") {
            if !MAY_USE.contains(&used.as_str()) {
                wrong.push(format!("{shown}: uses crate::{used}"));
            }
        }
        for used in named_after(&code, "crate::aws::") {
            if !MAY_USE_OF_AWS.contains(&used.as_str()) {
                wrong.push(format!("{shown}: uses crate::aws::{used}"));
            }
        }
        if code.contains("crate::aws;") || code.contains("crate::aws as") {
            wrong.push(format!("{shown}: imports crate::aws whole"));
        }
    }
    assert!(wrong.is_empty(), "the sandbox uses code it is meant to check:\n{}", wrong.join("\n"));
}
