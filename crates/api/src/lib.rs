//! The wire types of the REST API (`/v1`), shared by the server (which builds them from job
//! records) and the client (which reads them). The JSON shapes here are the contract; the
//! record types in `jobforge-core` may change without changing them.
//!
//! Nothing here knows HTTP; status codes live with the server. [`Jobs`] is what every front end
//! offers over these types (the REST API, MCP, the compat endpoints), implemented by the server
//! in process and by the client over HTTP. Every type derives `JsonSchema`: MCP's tool schemas
//! come from the same types as the REST API's answers, so the two cannot disagree.

mod config;
mod jobs;

pub use config::JobConfig;
pub use jobs::{Feed, FeedItem, Jobs, Refusal};

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use jobforge_core::config::JobSpec;
use jobforge_core::id::JobId;
use jobforge_core::logs::LogLine;
use jobforge_core::record::{Failure, FailureReason, JobRecord, KillRequest, PhaseTimes, TestResult};
use jobforge_core::state::Leftover;
use jobforge_core::validate::Problem;
use jobforge_core::{JobStatus, Phase, Stream, Timestamp};

/// `POST /v1/jobs` → 201.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Submitted {
    pub job_id: JobId,
    pub status: JobStatus,
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobView {
    pub job_id: JobId,
    pub status: JobStatus,
    /// The phase running now, or the last one that ran.
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub failed_phase: Option<Phase>,
    #[serde(default)]
    pub error: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub image_name: String,
    pub registry_url: String,
    pub image_tags: Vec<String>,
    /// `<registry>/temp/<id>:latest`, where the build pushes and the tests pull from.
    pub temp_image: String,
    /// The digest built, tested and published.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Every final reference that holds `image_digest`.
    #[serde(default)]
    pub published: Vec<String>,
    #[serde(default)]
    pub tests: Vec<TestView>,
    pub timestamps: PhaseTimes,
    pub durations_ms: Durations,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillRequest>,
    /// While PENDING behind builds of the same image and branch: how many go first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// The job has ended and its temp image and backend leftovers are all removed: nothing
    /// about it will change any more.
    #[serde(default)]
    pub cleaned_up: bool,
    /// What an ended job left behind that could not be removed, and why (`POST
    /// /v1/jobs/{id}/cleanup` tries again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<Leftover>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The job as submitted, with defaults filled in (a webhook's key by reference only).
    pub config: serde_json::Value,
}

/// One test and how it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestView {
    #[serde(flatten)]
    pub result: TestResult,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// How long each phase and the whole job took, in milliseconds (so far, for a running phase).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Durations {
    #[serde(default)]
    pub build: Option<u64>,
    #[serde(default)]
    pub test: Option<u64>,
    #[serde(default)]
    pub publish: Option<u64>,
    #[serde(default)]
    pub total: Option<u64>,
}

/// One entry of `GET /v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobSummary {
    pub job_id: JobId,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub image_name: String,
    pub image_tags: Vec<String>,
    #[serde(default)]
    pub failed_phase: Option<Phase>,
    #[serde(default)]
    pub image_digest: Option<String>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// `GET /v1/jobs` parameters: a page of the history, newest first, optionally filtered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only jobs of this owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Only jobs in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Only jobs building this image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// At most this many jobs (1 to 500; default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Skip this many matching jobs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
}

/// `GET /v1/jobs` → 200.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct History {
    pub jobs: Vec<JobSummary>,
    pub total: u64,
    pub limit: usize,
    pub offset: usize,
}

/// `GET /v1/jobs/{id}/logs` → 200.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Logs {
    pub job_id: JobId,
    pub status: JobStatus,
    pub lines: Vec<LogLine>,
    /// Pass as `after` to get the lines that follow.
    pub next_after: u64,
    /// True when the job has ended and no lines match beyond `next_after`.
    pub complete: bool,
    /// Lines were left out of this answer (past `limit`, or cut to fit): pass `next_after` as
    /// `after` for the ones that follow, or narrow the query.
    #[serde(default)]
    pub truncated: bool,
}

/// `GET /v1/jobs/{id}/logs` parameters: which lines, from where, how many.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only lines of this phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Only lines of this test (0-based index in `test_commands`, then the entry point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<u32>,
    /// Only lines of this stream: `stdout`, `stderr`, or `system` (jobforge's own lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// Only lines with a `seq` greater than this: pass the previous answer's `next_after`.
    #[serde(default)]
    pub after: u64,
    /// At most this many lines (1 to 10000; default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only the last this many lines of what matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<usize>,
    /// Only lines matching this regular expression (Rust `regex` syntax), with `context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
    /// With `grep`: this many lines before and after each match (0 to 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<usize>,
}

/// `POST /v1/jobs/{id}/cleanup` → 200: what the job's cleanup removed, and what remains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CleanedUp {
    pub job_id: JobId,
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<Leftover>,
}

/// `POST /v1/zombies/cleanup` → 200: backend leftovers of jobs that are not live, removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ZombiesRemoved {
    pub removed: Vec<String>,
}

/// `POST /v1/jobs/{id}/kill` body (optional).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /health` → 200.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub backend: String,
    pub store: String,
    pub time: Timestamp,
}

/// `GET /ready` → 200 or 503: each dependency and `ok` or what is wrong with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ready {
    pub ready: bool,
    pub checks: BTreeMap<String, String>,
}

/// Every error response: a message, a stable code, and for refused input every problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// What kind of error, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or a field breaks a rule (see `problems`).
    InvalidRequest,
    /// 401: no token, or one the service does not know.
    Unauthorized,
    /// 403: the token's role or scope does not allow this (a field names what).
    Forbidden,
    /// 404: no such job or route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the job is in a state that does not allow this (kill of a finished job).
    Conflict,
    /// 429: past a limit (pending jobs, submission rate, open streams); `Retry-After` says
    /// when to try again.
    TooManyRequests,
    /// 422: valid, but this server cannot do it (unsupported field, missing secret).
    Unprocessable,
    /// 503: the service is shutting down or a dependency is down.
    Unavailable,
    /// 500: the service failed; details are in its log, not here.
    Internal,
}

/// Server-sent events of `GET /v1/jobs/{id}/events`: `status` (a [`JobView`]) first and after
/// every job event, `log` (a [`LogLine`]) for each line, each job event under its own name (a
/// [`jobforge_core::events::EventEntry`]: `status_changed`, `queued`, `phase_started`, ...; see
/// `JobEvent::NAMES`), and a final `end` (a [`JobView`]) once the job has ended, its cleanup
/// is done and every entry was sent. Lines and job events carry their `seq` as the SSE id:
/// one sequence, so `Last-Event-ID` resumes both.
pub mod events {
    pub const STATUS: &str = "status";
    pub const LOG: &str = "log";
    pub const END: &str = "end";
    pub use jobforge_core::events::{EventEntry, JobEvent};
}

impl JobView {
    pub fn from_record(record: &JobRecord) -> Self {
        let spec = &record.spec;
        JobView {
            job_id: record.id,
            status: record.status(),
            phase: record.phase(),
            failed_phase: record.failure().map(|f| f.phase),
            error: record.failure().cloned().or_else(|| killed(record)),
            owner: spec.owner.clone(),
            image_name: spec.image_name.to_string(),
            registry_url: spec.registry_url.to_string(),
            image_tags: spec.image_tags.iter().map(ToString::to_string).collect(),
            temp_image: record.temp_image.to_string(),
            image_digest: record.image_digest.as_ref().map(ToString::to_string),
            published: record.published.iter().map(ToString::to_string).collect(),
            tests: record.test_results().iter().map(TestView::from_result).collect(),
            timestamps: record.times.clone(),
            durations_ms: Durations::of(record),
            kill: record.kill().cloned(),
            queue_position: record.queue_position(),
            cleaned_up: record.cleaned_up(),
            remaining: record.state.cleanup().map(|c| c.remaining.clone()).unwrap_or_default(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            config: public_config(spec),
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

impl TestView {
    fn from_result(result: &TestResult) -> Self {
        let duration_ms = match (result.started, result.ended) {
            (Some(start), Some(end)) => Some(millis(end.since(start))),
            _ => None,
        };
        TestView { result: result.clone(), duration_ms }
    }
}

impl Durations {
    pub fn of(record: &JobRecord) -> Self {
        let now = Timestamp::now();
        let t = &record.times;
        let span = |start: Option<Timestamp>, end: Option<Timestamp>| -> Option<u64> {
            let end = end.or_else(|| (!record.status().is_terminal()).then_some(now))?;
            Some(millis(end.since(start?)))
        };
        Durations {
            build: span(t.build_start, t.build_end),
            test: span(t.test_start, t.test_end),
            publish: span(t.publish_start, t.publish_end),
            total: span(t.job_start, t.job_end),
        }
    }
}

impl JobSummary {
    pub fn from_record(record: &JobRecord) -> Self {
        JobSummary {
            job_id: record.id,
            status: record.status(),
            owner: record.spec.owner.clone(),
            image_name: record.spec.image_name.to_string(),
            image_tags: record.spec.image_tags.iter().map(ToString::to_string).collect(),
            failed_phase: record.failure().map(|f| f.phase),
            image_digest: record.image_digest.as_ref().map(ToString::to_string),
            created_at: record.created_at,
            duration_ms: Durations::of(record).total,
        }
    }
}

/// A killed job's `error`: the phase it was stopped in, by whom and why, so a caller reading
/// only `error` learns it was not a failure of its own.
fn killed(record: &JobRecord) -> Option<Failure> {
    let request = record.kill().filter(|_| record.status() == JobStatus::Killed)?;
    let by = request.by.as_deref().map(|by| format!(" by {by}")).unwrap_or_default();
    let why = request.reason.as_deref().map(|why| format!(": {why}")).unwrap_or_default();
    let phase = record.phase()?;
    Some(Failure::new(phase, FailureReason::Killed, format!("killed{by} during {phase}{why}")))
}

/// The job's config in the seed's flat form. It holds secrets by path only: a webhook's key
/// is never serialized.
pub fn public_config(spec: &JobSpec) -> serde_json::Value {
    serde_json::to_value(spec).unwrap_or(serde_json::Value::Null)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobforge_core::image::ImageRef;

    #[test]
    fn views_hide_the_webhook_secret() {
        let spec = jobforge_core::validate::job_spec(&serde_json::json!({
            "repo_url": "https://example.com/r.git", "image_name": "app", "registry_url": "127.0.0.1:5000",
            "webhook_url": "https://hooks.example.com", "webhook_secret": "s3cret-hmac",
        }))
        .unwrap();
        let id = JobId::new();
        let temp: ImageRef = format!("127.0.0.1:5000/temp/{id}:latest").parse().unwrap();
        let record = JobRecord::new(id, spec, temp, Timestamp::now());
        let json = serde_json::to_string(&JobView::from_record(&record)).unwrap();
        assert!(!json.contains("s3cret-hmac"));
        let back: JobView = serde_json::from_str(&json).unwrap();
        assert_eq!(back.status, JobStatus::Pending);
    }
}
