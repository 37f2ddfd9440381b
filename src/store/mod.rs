//! Durable state: the audit log, checklist ticks and notes, the rollout's
//! saved state, lease and requests, and what a team shares. Below everything
//! that acts, so every layer above reads and writes it through here, in local
//! files or a shared store (`backend`).

pub mod audit;
pub mod backend;
pub mod checklist;
pub mod lease;
pub mod rollout;
pub mod team;
#[cfg(test)]
mod testing;

/// Who is operating: `CUTOVER_OPERATOR`, else `USER`, else `unknown`.
pub fn operator() -> String {
    ["CUTOVER_OPERATOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// This machine's name (for leases and presence).
pub fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).to_string()
    } else {
        String::new()
    };
    std::env::var("CUTOVER_HOST").ok().filter(|h| !h.is_empty()).unwrap_or(if name.is_empty() {
        "unknown".into()
    } else {
        name
    })
}

/// Runs `f`, a store call that may block for seconds (an S3 request, a
/// take-over watching a lease), without stalling the other tasks of a
/// multi-threaded runtime; on a current-thread runtime it simply blocks.
pub fn off_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
