//! The tools' parameters. Every field is optional or a plain string where a caller could get it
//! wrong, so a bad value is a tool error naming the field (an agent can act on that), never a
//! protocol error. The descriptions are what an agent reads in `tools/list`.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct JobRef {
    /// The job's id, as submitJob returned it.
    pub job_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetLogs {
    /// The job's id, as submitJob returned it.
    pub job_id: String,
    /// Only this phase: `build`, `test` or `publish`.
    #[serde(default)]
    pub phase: Option<String>,
    /// Only this test: its 0-based index in `test_commands` (the entry point test comes last).
    #[serde(default)]
    pub test: Option<u32>,
    /// Only this stream: `stdout`, `stderr`, or `system` (jobforge's own lines).
    #[serde(default)]
    pub stream: Option<String>,
    /// Only the last this many lines (default 200 when neither `after` nor `grep` is given).
    #[serde(default)]
    pub tail: Option<usize>,
    /// Only lines matching this regular expression (Rust regex syntax), with `context`.
    #[serde(default)]
    pub grep: Option<String>,
    /// With `grep`: this many lines before and after each match (0 to 50).
    #[serde(default)]
    pub context: Option<usize>,
    /// Only lines after this sequence number: pass the previous answer's `next_after`.
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many lines (1 to 1000, default 200).
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WatchJob {
    /// The job's id, as submitJob returned it.
    pub job_id: String,
    /// Only events after this sequence number: pass the previous answer's `next_after` (0 or
    /// absent: from the start).
    #[serde(default)]
    pub after: Option<u64>,
    /// Wait at most this long for new events (1 to 60, default 30). The answer comes as soon
    /// as the job ends.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct KillJob {
    /// The job's id, as submitJob returned it.
    pub job_id: String,
    /// Why, for the record (shown in the job's log and status).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct GetHistory {
    /// Only jobs of this owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Only jobs in this status: PENDING, BUILDING, TESTING, PUBLISHING, SUCCEEDED, FAILED or
    /// KILLED.
    #[serde(default)]
    pub status: Option<String>,
    /// Only jobs building this image name.
    #[serde(default)]
    pub image_name: Option<String>,
    /// At most this many jobs (1 to 100, default 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Skip this many matching jobs first.
    #[serde(default)]
    pub offset: Option<usize>,
}
