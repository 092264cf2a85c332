//! [`Timestamp`]: a UTC instant that always prints as ISO-8601 with milliseconds.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant, written `2026-11-29T17:45:40.123Z` everywhere (API, records, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Now, to the millisecond: the precision every timestamp is written with, so a value
    /// read back from any store equals the one written.
    pub fn now() -> Self {
        let now = Utc::now();
        Timestamp(DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now))
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Timestamp(at)
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// A file's or process's time, to the millisecond.
    pub fn from_system_time(at: std::time::SystemTime) -> Option<Self> {
        let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        Self::from_unix_millis(i64::try_from(ms).ok()?)
    }

    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        DateTime::from_timestamp_millis(ms).map(Timestamp)
    }

    pub fn unix_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(&self, earlier: Timestamp) -> std::time::Duration {
        (self.0 - earlier.0).to_std().unwrap_or_default()
    }

    pub fn add(&self, by: std::time::Duration) -> Timestamp {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        Timestamp(self.0.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| Timestamp(at.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

/// In schemas: a string, `date-time`, always UTC with milliseconds.
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "UTC, ISO-8601 with milliseconds: 2026-11-29T17:45:40.123Z",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_utc_with_milliseconds() {
        let at = Timestamp::from_unix_millis(1_700_000_000_123).unwrap();
        assert_eq!(at.to_string(), "2023-11-14T22:13:20.123Z");
        let whole = Timestamp::from_unix_millis(1_700_000_000_000).unwrap();
        assert_eq!(whole.to_string(), "2023-11-14T22:13:20.000Z");
        let json = serde_json::to_string(&at).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), at);
    }
}
