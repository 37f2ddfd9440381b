//! Times as cutover writes and reads them: RFC 3339 in UTC, and ages.

use std::time::{Duration, SystemTime};

pub fn rfc3339(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| "?".into())
}

/// An RFC 3339 time (`2026-11-22T05:00:00Z`), as the audit log writes them.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let t = aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime).ok()?;
    SystemTime::try_from(t).ok()
}

/// `3m`, `45s`, `2h`: how long ago an RFC 3339 time was.
pub fn age_of(rfc3339_time: &str, now: SystemTime) -> Option<String> {
    let then = parse_rfc3339(rfc3339_time)?;
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    Some(match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    })
}
