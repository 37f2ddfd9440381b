//! Where cutover keeps its files (XDG base directories).

use std::path::PathBuf;

fn base(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(fallback)
        }
    }
}

/// `$XDG_STATE_HOME/cutover` (state files, audit logs, the log file).
pub fn state_dir() -> PathBuf {
    base("XDG_STATE_HOME", ".local/state").join("cutover")
}

/// `$XDG_CONFIG_HOME/cutover` (keys and theme).
pub fn config_dir() -> PathBuf {
    base("XDG_CONFIG_HOME", ".config").join("cutover")
}

pub fn default_log_file() -> PathBuf {
    state_dir().join("cutover.log")
}
