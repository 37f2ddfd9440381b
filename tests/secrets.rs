//! Planted secrets (an AWS secret key and session token, Redis passwords)
//! never appear in anything cutover prints or writes: stdout, stderr, the
//! log at debug level, audit lines, rollout state, copy checkpoints, JSON.

mod common;

use std::path::Path;

use common::*;

const AWS_SECRET: &str = "PLANTEDawsSECRETkey0123456789abcdefXYZ";
const AWS_TOKEN: &str = "PLANTEDsessionTOKEN9876543210zyxwvuQRS";
const REDIS_PW: &str = "PLANTEDredisPASSWORD4242";
const WRONG_PW: &str = "PLANTEDwrongPASSWORD1717";

/// Every file under `dir`, recursively, as text.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.display().to_string(), String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_appear_in_any_output_or_file() {
    let rb = runbook("demo.toml");
    let sb = sandbox(&rb, "ap-east-1").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Two password-protected Redis servers for the copy.
    let mut servers = Vec::new();
    for name in ["secret-src", "secret-dst"] {
        let pw = REDIS_PW.to_string();
        let s = cutover::sandbox::process::start_redis_with(dir.path(), name, move |_| {
            vec!["--requirepass".into(), pw.clone()]
        })
        .await
        .unwrap();
        servers.push(s);
    }
    let (src, dst) = (servers[0].port, servers[1].port);
    let src_url = format!("redis://:{REDIS_PW}@127.0.0.1:{src}/0");
    let dst_url = format!("redis://:{REDIS_PW}@127.0.0.1:{dst}/0");
    let mut c = redis::Client::open(src_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for i in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("k{i}")).arg(i).query_async(&mut c).await.unwrap();
    }

    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/demo.toml");
    let d = demo.to_str().unwrap();
    let wrong = format!("redis://:{WRONG_PW}@127.0.0.1:{dst}/0");
    // Each command with the exit status it must end with: one that failed
    // early could pass by leaking nothing.
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (vec!["status", d], 1),
        (vec!["status", d, "--json"], 1),
        (vec!["shift", d, "--to", "20", "--dry-run"], 0),
        (vec!["shift", d, "--to", "20", "--yes"], 0),
        // After the shift the live weights are not the state's: refused, as the run would be.
        (vec!["rollout", d, "--dry-run"], 2),
        (vec!["abort", d, "--yes", "--reason", "secrets test"], 0),
        (vec!["run", d, "validate/redis-ingress", "--yes"], 0),
        (vec!["audit", d], 0),
        (vec!["audit", d, "--markdown"], 0),
        (vec!["redis", "copy", "--from", &src_url, "--to", &dst_url, "--dry-run"], 0),
        (vec!["redis", "copy", "--from", &src_url, "--to", &dst_url, "--yes", "--json"], 0),
        (vec!["redis", "verify", "--from", &src_url, "--to", &dst_url, "--json"], 0),
        (vec!["redis", "verify", "--from", &src_url, "--to", &wrong], 2),
        (vec!["redis", "copy", "--from", &src_url, "--to", &wrong, "--yes"], 2),
        (vec!["--read-only", "redis", "copy", "--from", &src_url, "--to", &dst_url, "--yes"], 2),
    ];
    let mut outputs = Vec::new();
    for (args, want) in &commands {
        let mut cmd = cutover_command(&sb, &rb, &state, args);
        cmd.env("AWS_SECRET_ACCESS_KEY", AWS_SECRET).env("AWS_SESSION_TOKEN", AWS_TOKEN).env("CUTOVER_LOG", "debug");
        let out = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(*want), "{args:?} ended otherwise than expected: {text}");
        outputs.push((format!("output of {args:?}"), text));
    }
    let mut seen = outputs;
    let written = files(&state);
    assert!(
        written.iter().any(|(p, _)| p.ends_with("/log") || p.ends_with("cutover.log")),
        "the log was written: {written:?}"
    );
    assert!(written.iter().any(|(p, _)| p.ends_with("demo.audit.jsonl")));
    assert!(written.iter().any(|(p, _)| p.ends_with("redis.audit.jsonl")));
    // Every file those commands left is private to its user.
    for (path, _) in &written {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions());
        assert_eq!(mode & 0o077, 0, "{path} is mode {mode:o}");
    }
    let private: Vec<String> = written
        .iter()
        .map(|(p, _)| p.strip_prefix(&format!("{}/", state.display())).unwrap_or(p).to_string())
        .collect();
    seen.extend(written);
    for (where_, text) in &seen {
        for secret in [AWS_SECRET, AWS_TOKEN, REDIS_PW, WRONG_PW] {
            assert!(!text.contains(secret), "{secret} appears in {where_}:\n{text}");
        }
    }
    // Redacted URLs still say which server was meant.
    assert!(seen.iter().any(|(_, t)| t.contains(&format!("redis://:***@127.0.0.1:{dst}"))));
    sb.down().await;
    let files_read = seen.len() - commands.len();
    let bytes: usize = seen.iter().map(|(_, t)| t.len()).sum();
    record(
        "secrets",
        format!(
            "An AWS secret key, a session token and two Redis passwords (right and wrong) planted; {} commands run \
             with the log at debug level (status, `--json`, shift, rollout, abort, run, audit, redis copy, verify, \
             `--read-only`): none of the 4 secrets in their stdout or stderr or in the {files_read} files they left \
             (log, audit lines, state, checkpoints), {bytes} bytes in all; redacted URLs still name the server",
            commands.len()
        ),
    );
    record(
        "file-modes",
        format!(
            "All {} files the same {} commands left ({}) have no group or other permission bits",
            private.len(),
            commands.len(),
            private.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        ),
    );
}
