//! Go's `time.Duration` text forms as Consul reads and prints them: `time.ParseDuration` (with
//! Go's exact error messages, which Consul passes through, e.g. `Session TTL 'x' invalid: time:
//! invalid duration "x"`) and `Duration.String()` (as in `must be between [10s=24h0m0s]`), plus
//! Go's `%q` quoting those messages use.
//!
//! Pure functions only; nothing here knows about HTTP or the store.

use std::time::Duration;

/// `time.ParseDuration`: signed nanoseconds, or Go's error text.
pub(crate) fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(text));
    let mut rest = text;
    let mut negative = false;
    if let Some(first) = rest.chars().next()
        && (first == '-' || first == '+')
    {
        negative = first == '-';
        rest = &rest[1..];
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    // Go accumulates in uint64 and refuses anything past 1<<63.
    let limit: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole: u128 = if int_len == 0 { 0 } else { rest[..int_len].parse().map_err(|_| invalid())? };
        if whole > limit {
            return Err(invalid());
        }
        rest = &rest[int_len..];
        let mut fraction: u128 = 0;
        let mut scale: u128 = 1;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let fraction_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            for digit in after_dot[..fraction_len].bytes() {
                // Go stops gaining precision once the fraction would overflow; so do we.
                if scale < 1_000_000_000_000_000_000 {
                    fraction = fraction * 10 + u128::from(digit - b'0');
                    scale *= 10;
                }
            }
            rest = &after_dot[fraction_len..];
            if int_len == 0 && fraction_len == 0 {
                return Err(invalid());
            }
        } else if int_len == 0 {
            return Err(invalid());
        }
        let unit_len = rest.bytes().take_while(|b| !(*b == b'.' || b.is_ascii_digit())).count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(text)));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {} in duration {}", go_quote(unit), go_quote(text))),
        };
        let mut value = whole.checked_mul(nanos_per_unit).filter(|v| *v <= limit).ok_or_else(invalid)?;
        value += fraction * nanos_per_unit / scale;
        total += value;
        if total > limit {
            return Err(invalid());
        }
    }
    if negative {
        return Ok(-(total as i128) as i64);
    }
    if total > limit - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

/// A parsed duration that must not be negative (waits, TTLs after validation).
pub(crate) fn nanos_to_duration(nanos: i64) -> Duration {
    Duration::from_nanos(nanos.max(0) as u64)
}

/// `time.Duration.String()`: `0s`, `300ms`, `1.5s`, `1m30s`, `24h0m0s`, `-5s`.
pub(crate) fn go_duration_string(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let magnitude = nanos.unsigned_abs();
    let text = if magnitude < 1_000_000_000 {
        // Below a second Go picks the largest unit that keeps a leading non-zero digit.
        let (unit, scale) = match magnitude {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        format!("{}{unit}", decimal(magnitude, scale))
    } else {
        let hours = magnitude / 3_600_000_000_000;
        let minutes = (magnitude / 60_000_000_000) % 60;
        let seconds = decimal(magnitude % 60_000_000_000, 1_000_000_000);
        match (hours, minutes) {
            (0, 0) => format!("{seconds}s"),
            (0, _) => format!("{minutes}m{seconds}s"),
            _ => format!("{hours}h{minutes}m{seconds}s"),
        }
    };
    if nanos < 0 { format!("-{text}") } else { text }
}

/// `value / scale` in decimal, without trailing zeros in the fraction.
fn decimal(value: u64, scale: u64) -> String {
    let (whole, rest) = (value / scale, value % scale);
    if rest == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `%q` / `strconv.Quote` for the strings Consul's messages quote.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        assert_eq!(parse_go_duration("15s"), Ok(15_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("-5s"), Ok(-5_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("10"), Err("time: missing unit in duration \"10\"".to_owned()));
        assert_eq!(parse_go_duration("abc"), Err("time: invalid duration \"abc\"".to_owned()));
        assert_eq!(parse_go_duration("5d"), Err("time: unknown unit \"d\" in duration \"5d\"".to_owned()));
        assert_eq!(parse_go_duration(""), Err("time: invalid duration \"\"".to_owned()));
        assert_eq!(parse_go_duration("."), Err("time: invalid duration \".\"".to_owned()));
    }

    #[test]
    fn prints_like_go() {
        assert_eq!(go_duration_string(10_000_000_000), "10s");
        assert_eq!(go_duration_string(86_400_000_000_000), "24h0m0s");
        assert_eq!(go_duration_string(90_000_000_000), "1m30s");
        assert_eq!(go_duration_string(300_000_000), "300ms");
        assert_eq!(go_duration_string(1_500), "1.5µs");
        assert_eq!(go_duration_string(-5_000_000_000), "-5s");
    }
}
