//! Where cutover keeps its files (XDG base directories).

use std::path::PathBuf;

fn base(var: &str, fallback: &str) -> PathBuf {
    base_of(std::env::var_os(var), std::env::var_os("HOME"), fallback)
}

/// An XDG base directory: the variable's value when it is an absolute path
/// (the XDG Base Directory spec has a relative one ignored: it would put the
/// audit log and the rollout state wherever cutover was started), else
/// `fallback` under the home directory.
fn base_of(value: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>, fallback: &str) -> PathBuf {
    match value.map(PathBuf::from) {
        Some(v) if v.is_absolute() => v,
        _ => home.map_or_else(|| PathBuf::from("."), PathBuf::from).join(fallback),
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

/// Writes `bytes` so that a crash leaves either the old file or the new one:
/// temp file, fsync, rename, fsync of the directory. Mode 0600.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn default_log_file() -> PathBuf {
    state_dir().join("cutover.log")
}

/// An exclusive flock on `path` (created 0600 with its folder), held while the
/// returned file lives; None when another process holds it.
pub fn try_lock(path: &std::path::Path) -> Result<Option<std::fs::File>, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((rc == 0).then_some(f))
}

#[cfg(test)]
mod tests {
    use super::base_of;
    use std::path::PathBuf;

    #[test]
    fn a_relative_or_empty_xdg_directory_is_ignored() {
        let home = Some("/home/ana".into());
        let state = ".local/state";
        assert_eq!(base_of(Some("/var/state".into()), home.clone(), state), PathBuf::from("/var/state"));
        assert_eq!(base_of(Some("relstate".into()), home.clone(), state), PathBuf::from("/home/ana/.local/state"));
        assert_eq!(base_of(Some("".into()), home.clone(), state), PathBuf::from("/home/ana/.local/state"));
        assert_eq!(base_of(None, home, state), PathBuf::from("/home/ana/.local/state"));
    }
}
