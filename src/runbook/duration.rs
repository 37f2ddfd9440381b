//! Strict durations: `30s`, `5m`, `1h30m`, `48h`, `2d`. Nothing else.

use std::time::Duration;

/// Parses a compact duration. Units: `ms`, `s`, `m`, `h`, `d`; each at most once,
/// largest first. Rejects spaces and words so `5 minutes` can't be misread.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration; write it like 30s, 5m, 1h30m or 48h (units ms, s, m, h, d)");
    if text.is_empty() {
        return Err(bad());
    }
    let order = ["d", "h", "m", "s", "ms"];
    let mut last_unit: Option<usize> = None;
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let value: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let idx = order.iter().position(|u| *u == unit).ok_or_else(bad)?;
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(bad());
        }
        last_unit = Some(idx);
        let ms_per_unit: u128 = match unit {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            _ => 1,
        };
        total = total.checked_add(value.checked_mul(ms_per_unit).ok_or_else(bad)?).ok_or_else(bad)?;
    }
    let ms = u64::try_from(total).map_err(|_| bad())?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way runbooks write them (`1h30m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_compact_forms() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("48h").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_words_spaces_and_disorder() {
        for bad in ["5 minutes", "5", "m5", "", "5m 30s", "30s5m", "5m5m", "1.5h", "-5m", "5M", "99999999999999999999d"]
        {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("write it like 30s, 5m"), "{bad}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["30s", "5m", "1h30m", "2d", "250ms", "1d2h3m4s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
