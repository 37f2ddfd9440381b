//! A terminal for the real binary: tmux on its own server socket, driven
//! with send-keys and read with capture-pane.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs (scripts/test installs it)")
    }
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }
    pub fn var(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["display-message", "-p", "-t", "t", name]).stdout).trim().to_string()
    }
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.cmd(&["send-keys", "-t", "t", k]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    /// Quits the cockpit with `q` and waits (20 s at most) for the script to
    /// write its exit status to `marker`; returns that status (`exit=0`).
    pub fn quit(&self, marker: &std::path::Path) -> String {
        self.keys(&["q"]);
        let start = Instant::now();
        while !marker.exists() {
            assert!(start.elapsed() < Duration::from_secs(20), "cutover did not exit; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::read_to_string(marker).unwrap().trim().to_string()
    }

    pub fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(start.elapsed() < limit, "timed out waiting for {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// A shell script that runs the cockpit (`tui`) on `runbook` against a
/// sandbox, with its own state dir and log, then writes `exit=N` to `marker`.
pub fn cockpit_script(
    sb: &cutover::sandbox::Sandbox,
    rb: &cutover::runbook::Runbook,
    state: &std::path::Path,
    args: &[&str],
    marker: &std::path::Path,
) -> std::path::PathBuf {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut script = format!("#!/bin/sh\ncd {}\nunset AWS_PROFILE\n", quote(env!("CARGO_MANIFEST_DIR")));
    for (k, v) in sb.env_vars(rb) {
        script += &format!("export {k}={}\n", quote(&v));
    }
    script += &format!(
        "export XDG_STATE_HOME={} CUTOVER_OPERATOR=e2e\n{} --log-file {} {}\necho exit=$? > {}\nsleep 30\n",
        quote(&state.display().to_string()),
        quote(env!("CARGO_BIN_EXE_cutover")),
        quote(&state.join("log").display().to_string()),
        args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        quote(&marker.display().to_string()),
    );
    let path = state.join("cockpit.sh");
    std::fs::write(&path, script).unwrap();
    path
}

/// The audit log's lines of a runbook in a state dir, as JSON.
pub fn audit_lines(state: &std::path::Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join(format!("cutover/{name}.audit.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
