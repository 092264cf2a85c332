//! [`Duration`]: timeouts as callers write them (`30m`, `90s`, `1h30m`, or integer seconds).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds, written and read as `1h30m`-style text or plain seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(secs)
    }

    pub const fn from_mins(mins: u64) -> Self {
        Duration(mins * 60)
    }

    pub fn as_secs(self) -> u64 {
        self.0
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.to_std()
    }
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("is empty")]
    Empty,
    #[error("{0:?} is not a duration: use forms like 30m, 90s, 1h30m or a number of seconds")]
    Syntax(String),
    #[error("is too large")]
    Overflow,
}

impl FromStr for Duration {
    type Err = BadDuration;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BadDuration::Empty);
        }
        if let Ok(secs) = text.parse::<u64>() {
            return Ok(Duration(secs));
        }
        let syntax = || BadDuration::Syntax(text.chars().take(40).collect());
        let mut total: u64 = 0;
        let mut digits = String::new();
        // Units must appear in decreasing order (1h30m, not 30m1h) and at most once each.
        let mut last_unit = u64::MAX;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(syntax()),
            };
            if digits.is_empty() || unit >= last_unit {
                return Err(syntax());
            }
            let n: u64 = digits.parse().map_err(|_| BadDuration::Overflow)?;
            total = n.checked_mul(unit).and_then(|part| total.checked_add(part)).ok_or(BadDuration::Overflow)?;
            digits.clear();
            last_unit = unit;
        }
        if !digits.is_empty() {
            return Err(syntax());
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 % 3600 / 60, self.0 % 60);
        if self.0 == 0 {
            return f.write_str("0s");
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Secs(secs) => Ok(Duration(secs)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        for (text, secs) in [("30m", 1800), ("90s", 90), ("1h30m", 5400), ("45", 45), ("2d", 172_800), ("1h0m5s", 3605)]
        {
            assert_eq!(text.parse::<Duration>().unwrap().as_secs(), secs, "{text}");
        }
    }

    #[test]
    fn refuses_the_rest() {
        for text in ["", "m", "30x", "1.5h", "30m1h", "1h1h", "-5", "5 m", "30ms"] {
            assert!(text.parse::<Duration>().is_err(), "{text:?}");
        }
        assert_eq!("99999999999999999999d".parse::<Duration>(), Err(BadDuration::Overflow));
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }
}
