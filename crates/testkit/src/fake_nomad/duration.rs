//! Go's `time.Duration` text forms, as Nomad reads and prints them: `ParseDuration` for the
//! blocking-query `wait` parameter and `Duration.String()` for messages such as
//! `Sent interrupt. Waiting 5s before force killing`.
//!
//! Pure functions only; nothing here knows about HTTP or the state store.

use std::time::Duration;

/// `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`), optionally signed. Negative durations are refused (Nomad treats them as invalid
/// waits). `None` on anything Go would reject.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        // "-0" is the only negative Go accepts that is not below zero.
        return (rest == "-0").then_some(Duration::ZERO);
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// `time.Duration.String()` for a count of nanoseconds: `0s`, `300ms`, `1.5s`, `1m30s`,
/// `24h0m0s`, `-5s`.
pub(crate) fn go_duration_string(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let negative = nanos < 0;
    let magnitude = nanos.unsigned_abs();
    let mut text = if magnitude < 1_000_000_000 {
        // Below a second Go picks the largest unit that keeps a leading non-zero digit.
        let (unit, scale) = if magnitude < 1_000 {
            ("ns", 1)
        } else if magnitude < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{unit}", fraction(magnitude, scale))
    } else {
        let hours = magnitude / 3_600_000_000_000;
        let minutes = (magnitude / 60_000_000_000) % 60;
        let seconds = fraction(magnitude % 60_000_000_000, 1_000_000_000);
        if hours > 0 {
            format!("{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            format!("{minutes}m{seconds}s")
        } else {
            format!("{seconds}s")
        }
    };
    if negative {
        text.insert(0, '-');
    }
    text
}

/// `value / scale` in decimal, without trailing zeros in the fraction.
fn fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let rest = value % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn prints_like_go() {
        assert_eq!(go_duration_string(5_000_000_000), "5s");
        assert_eq!(go_duration_string(90_000_000_000), "1m30s");
        assert_eq!(go_duration_string(86_400_000_000_000), "24h0m0s");
        assert_eq!(go_duration_string(300_000_000), "300ms");
        assert_eq!(go_duration_string(15_234_000_000), "15.234s");
        assert_eq!(go_duration_string(1_500), "1.5µs");
        assert_eq!(go_duration_string(0), "0s");
    }
}
