//! `cutover report --html` on a real rollout in the sandbox: the file is
//! read back and its SVG parsed (weights, metric and gate plots, audit
//! markers); and its refusals.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use cutover::runbook::Runbook;

/// The demo runbook with a 5 s soak, 1 s gates and a 1 s TTL (as tests/rollout.rs).
fn fast_runbook(dir: &Path) -> (Runbook, PathBuf) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml")).unwrap();
    let text = text
        .replace("soak = \"30s\"", "soak = \"5s\"")
        .replace("gate_interval = \"5s\"", "gate_interval = \"1s\"")
        .replace("ttl = 10\n", "ttl = 1\n");
    let path = dir.join("fast.toml");
    std::fs::write(&path, &text).unwrap();
    (cutover::runbook::parse(&path.display().to_string(), &text).unwrap(), path)
}

/// An element of an SVG: its name and attributes.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    /// The text right inside it (a `<text>`'s words).
    text: String,
}

/// Every element of one SVG document, in order, by a real XML tokenizer.
fn parse_svg(svg: &str) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    for token in xmlparser::Tokenizer::from(svg) {
        match token.unwrap_or_else(|e| panic!("the SVG does not parse: {e}")) {
            xmlparser::Token::ElementStart { local, .. } => {
                out.push(Element { name: local.to_string(), attrs: BTreeMap::new(), text: String::new() })
            }
            xmlparser::Token::Attribute { local, value, .. } => {
                out.last_mut().unwrap().attrs.insert(local.to_string(), value.to_string());
            }
            xmlparser::Token::Text { text } => {
                if let Some(e) = out.last_mut() {
                    e.text.push_str(text.as_str());
                }
            }
            _ => {}
        }
    }
    out
}

/// The `<section id="…">` of the page, up to its end.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no section {id}"));
    let len = html[start..].find("</section>").unwrap();
    &html[start..start + len]
}

/// The one `<svg>…</svg>` of a section.
fn one_svg(section: &str) -> &str {
    assert_eq!(section.matches("<svg").count(), 1, "one plot per section: {section:.200}");
    let start = section.find("<svg").unwrap();
    let end = section.find("</svg>").unwrap() + "</svg>".len();
    &section[start..end]
}

/// A polyline's vertices.
fn vertices(e: &Element) -> Vec<(f64, f64)> {
    e.attrs["points"]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

fn polylines<'a>(elements: &'a [Element], colour: &str) -> Vec<&'a Element> {
    elements.iter().filter(|e| e.name == "polyline" && e.attrs.get("stroke").is_some_and(|s| s == colour)).collect()
}

fn epoch(rfc3339: &str) -> f64 {
    let t = cutover::time::parse_rfc3339(rfc3339).unwrap();
    t.duration_since(std::time::SystemTime::UNIX_EPOCH).unwrap().as_secs() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_on_a_real_rollout_plots_weights_metrics_gates_and_marks_every_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, path) = fast_runbook(dir.path());
    let p = path.to_str().unwrap();
    let sb = fixed_sandbox(&rb, "ca-central-1").await;
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["rollout", p, "--yes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let out_dir = dir.path().join("out");
    let file = out_dir.join("report.html");
    let (code, out) = run_cutover_all(&sb, &rb, dir.path(), &["report", p, "--html", file.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    let names: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["report.html"], "one file and nothing beside it");
    let html = std::fs::read_to_string(&file).unwrap();
    for banned in ["http://", "https://", "<script", "src=", "@import", "url("] {
        assert!(!html.to_lowercase().contains(banned), "the page names {banned}");
    }

    // One plot per series: weights, requests, 5xx, latency, every gate with
    // a numeric reading (redis_reachable, gate 3, has none), the timeline.
    let plotted =
        ["weights", "requests", "5xx", "latency", "gate-1", "gate-2", "gate-4", "gate-5", "gate-6", "timeline"];
    assert_eq!(html.matches("<svg").count(), plotted.len());
    let svgs: BTreeMap<&str, Vec<Element>> =
        plotted.iter().map(|id| (*id, parse_svg(one_svg(section(&html, id))))).collect();
    assert!(section(&html, "unplotted-gates").contains("gate 3: redis_reachable staging"));

    // The weights plot: each side's line steps where the audit's applied
    // lines changed it, to the weight they wrote, and nowhere else.
    let lines = common::tmux::audit_lines(dir.path(), "demo");
    let sides: Vec<&str> = rb.environments.keys().map(String::as_str).collect();
    let weights = &svgs["weights"];
    let (t0, t1) = (epoch(lines[0]["time"].as_str().unwrap()), epoch(lines.last().unwrap()["time"].as_str().unwrap()));
    let all: Vec<(f64, f64)> = sides
        .iter()
        .enumerate()
        .flat_map(|(i, _)| {
            polylines(weights, &cutover::report::colour_hex(i)).iter().flat_map(|e| vertices(e)).collect::<Vec<_>>()
        })
        .collect();
    // Weights span 0 to 100 here: the lowest vertex is 0, the highest 100.
    let y_of_0 = all.iter().map(|v| v.1).fold(f64::MIN, f64::max);
    let y_of_100 = all.iter().map(|v| v.1).fold(f64::MAX, f64::min);
    let (x_start, x_end) =
        (all.iter().map(|v| v.0).fold(f64::MAX, f64::min), all.iter().map(|v| v.0).fold(f64::MIN, f64::max));
    let x_of = |t: f64| x_start + (t - t0) / (t1 - t0) * (x_end - x_start);
    for (i, side) in sides.iter().enumerate() {
        let line = polylines(weights, &cutover::report::colour_hex(i));
        assert_eq!(line.len(), 1, "one line for {side}");
        let v = vertices(line[0]);
        let weight = |y: f64| ((y_of_0 - y) / (y_of_0 - y_of_100) * 100.0).round() as i64;
        // Steps: two vertices at one x with different weights.
        let steps: Vec<(f64, i64)> = v
            .windows(2)
            .filter(|w| (w[0].0 - w[1].0).abs() < 0.5 && w[0].1 != w[1].1)
            .map(|w| (w[1].0, weight(w[1].1)))
            .collect();
        let want: Vec<(f64, i64)> = lines
            .iter()
            .filter(|l| l["stage"] == "applied" && l["before"][side] != l["after"][side])
            .map(|l| (x_of(epoch(l["time"].as_str().unwrap())), l["after"][side].as_i64().unwrap()))
            .collect();
        assert_eq!(want.len(), 4, "{side}: four steps in the audit");
        assert_eq!(steps.len(), want.len(), "{side}: {steps:?} against {want:?}");
        for ((x, w), (want_x, want_w)) in steps.iter().zip(&want) {
            assert_eq!(w, want_w, "{side}: the weight the audit wrote");
            assert!((x - want_x).abs() < 1.5, "{side}: a step at x {x}, the audit's line at {want_x}");
        }
        assert_eq!(weight(v[0].1), lines[0]["before"][side].as_i64().unwrap(), "{side} starts where the audit does");
    }

    // Traffic: the staging side served requests and latency while it took traffic.
    let staging = sides.iter().position(|s| *s == "staging").unwrap();
    for id in ["requests", "latency"] {
        let line = polylines(&svgs[id], &cutover::report::colour_hex(staging));
        assert!(line.iter().any(|l| !vertices(l).is_empty()), "{id}: staging has datapoints");
    }
    // Each plotted gate has its limit drawn, flat, beside its reading.
    let limit = cutover::report::colour_hex(cutover::report::THRESHOLD_COLOUR);
    for id in ["gate-1", "gate-2", "gate-4", "gate-5", "gate-6"] {
        let line = polylines(&svgs[id], &limit);
        assert_eq!(line.len(), 1, "{id}: one limit line");
        let v = vertices(line[0]);
        assert!(v.len() == 2 && v[0].1 == v[1].1, "{id}: a flat limit: {v:?}");
    }
    assert!(section(&html, "gate-5").contains("max 0.1"));

    // The timeline: one marker per audit line, numbered as the table.
    let circles: Vec<&Element> = svgs["timeline"].iter().filter(|e| e.name == "circle").collect();
    assert_eq!(circles.len(), lines.len(), "one marker per audit line");
    let numbers: Vec<String> =
        svgs["timeline"].iter().filter(|e| e.name == "text").map(|e| e.text.trim().to_string()).collect();
    for n in 1..=lines.len() {
        assert!(numbers.contains(&n.to_string()), "marker {n} is numbered");
    }
    let timeline = section(&html, "timeline");
    for l in &lines {
        let row = format!("<td>{}</td><td>{}</td>", l["time"].as_str().unwrap(), l["operator"].as_str().unwrap());
        assert!(timeline.contains(&row), "the table has {row}");
    }

    // --since/--until narrow the window to the lines inside it.
    let (since, until) = (lines[3]["time"].as_str().unwrap(), lines[5]["time"].as_str().unwrap());
    let narrow = out_dir.join("narrow.html");
    let (code, out) = run_cutover_all(
        &sb,
        &rb,
        dir.path(),
        &["report", p, "--html", narrow.to_str().unwrap(), "--since", since, "--until", until],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let narrow = std::fs::read_to_string(narrow).unwrap();
    let markers = parse_svg(one_svg(section(&narrow, "timeline"))).iter().filter(|e| e.name == "circle").count();
    assert_eq!(markers, 3, "lines 4 to 6");

    // Refusals: a time that is not one, a window without lines, a FILE that cannot be.
    let report = |args: Vec<String>| {
        let mut all = vec!["report".to_string(), p.to_string()];
        all.extend(args);
        let (sb, rb, state) = (&sb, &rb, dir.path());
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            run_cutover_all(sb, rb, state, &args).await
        }
    };
    let html_arg = |f: &Path| vec!["--html".to_string(), f.display().to_string()];
    let (code, out) =
        report([html_arg(&out_dir.join("x.html")), vec!["--since".into(), "yesterday".into()]].concat()).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--since \"yesterday\" is not an RFC 3339 time"), "{out}");
    let (code, out) = report(
        [
            html_arg(&out_dir.join("x.html")),
            vec!["--since".into(), "2001-01-01T00:00:00Z".into(), "--until".into(), "2001-01-02T00:00:00Z".into()],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no audit line of demo between 2001-01-01T00:00:00Z and 2001-01-02T00:00:00Z"), "{out}");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let (code, out) = report(html_arg(&not_a_dir.join("report.html"))).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("cannot write the report to {}", not_a_dir.join("report.html").display())), "{out}");
    assert!(!out_dir.join("x.html").exists(), "a refusal writes nothing");
    sb.down().await;
}

#[test]
fn no_audit_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_STATE_HOME", dir.path())
        .args(["--log-file", &dir.path().join("log").display().to_string()])
        .args(["report", "runbooks/demo.toml", "--html", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no audit lines for runbook demo in"), "{err}");
    assert!(err.contains("report after a rollout or a shift"), "{err}");
    assert!(!file.exists());
}
