//! The original service's answers, field for field as its Go client decodes them: durations
//! in integer nanoseconds, `error` a string, logs as one list of strings per phase.

use serde::{Deserialize, Serialize};

use jobforge_api::JobView;
use jobforge_core::logs::LogLine;
use jobforge_core::record::JobRecord;
use jobforge_core::state::Leftover;
use jobforge_core::{JobId, JobStatus, Phase, Stream, Timestamp};

use super::config;

/// Lines read per page, and at most per phase in one answer (the rest: `GET
/// /v1/jobs/{id}/logs`, which pages).
pub const PAGE: usize = 10_000;
pub const MAX_LINES: usize = 50_000;
const NANOS_PER_MILLI: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
    /// The HTTP status.
    pub code: u16,
    /// Each field at fault and its rule, `; `-separated.
    pub details: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitAnswer {
    pub job_id: JobId,
    pub status: JobStatus,
}

/// `getStatus`: the original's `{job_id, status, config, metrics, error}`, and the failed phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub job_id: JobId,
    pub status: JobStatus,
    pub config: serde_json::Value,
    pub metrics: Metrics,
    /// Why it failed, cause first (`""` while it has not).
    pub error: String,
    pub failed_phase: Option<Phase>,
}

impl StatusAnswer {
    pub fn of(record: &JobRecord) -> StatusAnswer {
        let view = JobView::from_record(record);
        StatusAnswer {
            job_id: view.job_id,
            status: view.status,
            config: config::to_original(&record.spec),
            metrics: Metrics::of(&view),
            error: view.error.as_ref().map(error_text).unwrap_or_default(),
            failed_phase: view.failed_phase,
        }
    }
}

/// `cause: message`, and the hint where there is one.
fn error_text(failure: &jobforge_core::record::Failure) -> String {
    let at = failure.dockerfile.as_ref().map(|d| format!(" at {}:{}", d.path, d.line)).unwrap_or_default();
    let mut text = format!("{}{at}: {}", failure.cause, failure.message);
    if let Some(hint) = &failure.hint {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text
}

/// The original's `JobMetrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_end: Option<Timestamp>,
    /// Nanoseconds, 0 for a phase that did not run.
    pub build_duration: u64,
    pub test_duration: u64,
    pub publish_duration: u64,
    pub total_duration: u64,
    /// Never measured, as in the original: always zero.
    pub resource_usage: ResourceUsage,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub max_cpu: u64,
    pub max_memory: u64,
    pub disk_used: u64,
}

impl Metrics {
    fn of(view: &JobView) -> Metrics {
        let t = &view.timestamps;
        let d = &view.durations_ms;
        let nanos = |ms: Option<u64>| ms.unwrap_or(0).saturating_mul(NANOS_PER_MILLI);
        Metrics {
            job_start: t.job_start,
            build_start: t.build_start,
            build_end: t.build_end,
            test_start: t.test_start,
            test_end: t.test_end,
            publish_start: t.publish_start,
            publish_end: t.publish_end,
            job_end: t.job_end,
            build_duration: nanos(d.build),
            test_duration: nanos(d.test),
            publish_duration: nanos(d.publish),
            total_duration: nanos(d.total),
            resource_usage: ResourceUsage::default(),
        }
    }
}

/// `getLogs`: `{job_id, logs: {build, test, publish}}`, a phase not asked for `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogsAnswer {
    pub job_id: JobId,
    pub logs: PhaseLogs,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseLogs {
    pub build: Option<Vec<String>>,
    pub test: Option<Vec<String>>,
    pub publish: Option<Vec<String>>,
}

impl LogsAnswer {
    pub fn new(job_id: JobId) -> LogsAnswer {
        LogsAnswer { job_id, logs: PhaseLogs::default() }
    }

    /// A phase's lines as the original wrote them: `[main/stdout] text`, and for tests one
    /// block per test under `=== Test Job <i> ===`.
    pub fn set(&mut self, phase: Phase, lines: Vec<LogLine>) {
        let cut = lines.len() >= MAX_LINES;
        let mut text: Vec<String> = match phase {
            Phase::Test => test_blocks(&lines),
            Phase::Build | Phase::Publish => lines.iter().map(line).collect(),
        };
        if cut {
            text.push(format!(
                "[jobforge] the first {MAX_LINES} lines; GET /v1/jobs/{}/logs has them all",
                self.job_id
            ));
        }
        let slot = match phase {
            Phase::Build => &mut self.logs.build,
            Phase::Test => &mut self.logs.test,
            Phase::Publish => &mut self.logs.publish,
        };
        *slot = Some(text);
    }
}

fn line(l: &LogLine) -> String {
    match l.stream {
        Stream::Stdout => format!("[main/stdout] {}", l.text),
        Stream::Stderr => format!("[main/stderr] {}", l.text),
        Stream::System => format!("[jobforge] {}", l.text),
    }
}

fn test_blocks(lines: &[LogLine]) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().filter(|l| l.test.is_none()).map(line).collect();
    let mut tests: Vec<u32> = lines.iter().filter_map(|l| l.test).collect();
    tests.sort_unstable();
    tests.dedup();
    for test in tests {
        out.push(format!("=== Test Job {test} ==="));
        out.extend(lines.iter().filter(|l| l.test == Some(test)).map(line));
        out.push(String::new());
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillAnswer {
    pub job_id: JobId,
    pub success: bool,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CleanupAnswer {
    pub success: bool,
    pub cleaned_jobs: Vec<String>,
    pub message: String,
}

impl CleanupAnswer {
    pub fn done(cleaned_jobs: Vec<String>) -> CleanupAnswer {
        CleanupAnswer { success: true, cleaned_jobs, message: "Cleanup completed".into() }
    }

    pub fn failed(left: &[Leftover]) -> CleanupAnswer {
        let what = left.iter().map(|l| format!("{}: {}", l.what, l.why)).collect::<Vec<_>>().join("; ");
        CleanupAnswer { success: false, cleaned_jobs: Vec::new(), message: format!("Cleanup failed: {what}") }
    }
}

/// `getHistory`: `{jobs: [{id, config, status, created_at, duration, metrics}], total}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryAnswer {
    pub jobs: Vec<HistoryEntry>,
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: JobId,
    pub config: serde_json::Value,
    pub status: JobStatus,
    pub created_at: Timestamp,
    /// Nanoseconds from submission to the end (or to now).
    pub duration: u64,
    pub metrics: Metrics,
}

impl HistoryAnswer {
    pub fn of(records: &[JobRecord], total: u64) -> HistoryAnswer {
        let jobs = records
            .iter()
            .map(|record| {
                let view = JobView::from_record(record);
                let end = record.times.job_end.unwrap_or_else(Timestamp::now);
                HistoryEntry {
                    id: record.id,
                    config: config::to_original(&record.spec),
                    status: view.status,
                    created_at: record.created_at,
                    duration: u64::try_from(end.since(record.created_at).as_nanos()).unwrap_or(u64::MAX),
                    metrics: Metrics::of(&view),
                }
            })
            .collect();
        HistoryAnswer { jobs, total }
    }
}
