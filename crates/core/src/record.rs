//! [`JobRecord`]: everything the service knows about one job, as the store keeps it.
//!
//! The engine's driver for a job is the only writer of its record; it persists the record before
//! every side effect, so a restarted service continues from the record alone. The record holds
//! secret *paths* only, never values.

use serde::{Deserialize, Serialize};

use crate::config::JobSpec;
use crate::id::{JobId, RunId, RunKey};
use crate::image::{Digest, ImageRef};
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

/// One job, from submission to cleanup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub status: JobStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub times: PhaseTimes,
    /// Where the build pushes and the tests pull: `<registry>/temp/<id>:latest`.
    pub temp_image: ImageRef,
    /// The digest the build pushed, once known; tests and publish use exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<Digest>,
    /// Final references, filled in as publishing confirms each one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<ImageRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillRequest>,
    /// While PENDING behind other builds of the same image and branch: how many are ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// Set once the temp image and the backend's leftovers of a finished job are gone.
    #[serde(default)]
    pub cleaned_up: bool,
}

impl JobRecord {
    pub fn new(id: JobId, spec: JobSpec, temp_image: ImageRef, now: Timestamp) -> Self {
        JobRecord {
            id,
            spec,
            status: JobStatus::Pending,
            created_at: now,
            updated_at: now,
            times: PhaseTimes { job_start: Some(now), ..PhaseTimes::default() },
            temp_image,
            image_digest: None,
            published: Vec::new(),
            tests: Vec::new(),
            failure: None,
            kill: None,
            queue_position: None,
            cleaned_up: false,
        }
    }

    /// A job the engine must still drive: not finished, or finished but not yet cleaned up.
    pub fn is_live(&self) -> bool {
        !self.status.is_terminal() || !self.cleaned_up
    }

    /// The runs of `phase`, by their deterministic ids.
    pub fn runs(&self, phase: Phase) -> Vec<RunKey> {
        match phase {
            Phase::Build => vec![RunKey::build(self.id)],
            Phase::Test => (0..self.spec.tests().len() as u32).map(|i| RunKey::test(self.id, i)).collect(),
            Phase::Publish => vec![RunKey::publish(self.id)],
        }
    }

    /// Builds of the same image and branch exclude each other through this lock.
    pub fn build_lock(&self) -> crate::ports::LockKey {
        let spec = &self.spec;
        crate::ports::LockKey::build(&spec.registry_url.to_string(), spec.image_name.as_str(), spec.git_ref.as_str())
    }

    /// Every run this job may have started, for cleanup.
    pub fn all_runs(&self) -> Vec<RunId> {
        Phase::ALL.into_iter().flat_map(|p| self.runs(p)).map(|k| k.id()).collect()
    }

    /// The phase the job is in, or was in when it ended.
    pub fn phase(&self) -> Option<Phase> {
        if let Some(phase) = self.status.phase() {
            return Some(phase);
        }
        if let Some(failure) = &self.failure {
            return Some(failure.phase);
        }
        let t = &self.times;
        [(t.publish_start, Phase::Publish), (t.test_start, Phase::Test), (t.build_start, Phase::Build)]
            .into_iter()
            .find_map(|(start, phase)| start.map(|_| phase))
    }
}

/// When each phase started and ended (UTC, milliseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimes {
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
}

impl PhaseTimes {
    pub fn start(&self, phase: Phase) -> Option<Timestamp> {
        match phase {
            Phase::Build => self.build_start,
            Phase::Test => self.test_start,
            Phase::Publish => self.publish_start,
        }
    }

    pub fn end(&self, phase: Phase) -> Option<Timestamp> {
        match phase {
            Phase::Build => self.build_end,
            Phase::Test => self.test_end,
            Phase::Publish => self.publish_end,
        }
    }

    pub fn set_start(&mut self, phase: Phase, at: Timestamp) {
        match phase {
            Phase::Build => self.build_start = Some(at),
            Phase::Test => self.test_start = Some(at),
            Phase::Publish => self.publish_start = Some(at),
        }
    }

    pub fn set_end(&mut self, phase: Phase, at: Timestamp) {
        match phase {
            Phase::Build => self.build_end = Some(at),
            Phase::Test => self.test_end = Some(at),
            Phase::Publish => self.publish_end = Some(at),
        }
    }
}

/// The outcome of one test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub index: u32,
    pub command: String,
    pub status: TestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    Pending,
    Running,
    Passed,
    Failed,
    /// Stopped by a kill or the phase timeout before it finished.
    Stopped,
}

/// Why a job failed: a value in the record, not an error of the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub phase: Phase,
    pub reason: FailureReason,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whether resubmitting the same job unchanged may succeed (infrastructure trouble, not
    /// the caller's repository or commands).
    pub retryable: bool,
    /// The last lines of the failing run's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// The kind of failure, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// A process of the phase exited non-zero (the build, a test, a publish copy).
    ExitCode,
    /// The phase ran past its timeout and was stopped.
    Timeout,
    /// The run vanished while the service was down (its process died without an exit status).
    Interrupted,
    /// The backend could not start or follow the run.
    Backend,
    /// The registry did not hold what the phase should have pushed.
    Registry,
    /// A secret named by the job could not be read.
    Secret,
}

impl FailureReason {
    pub fn is_retryable(self) -> bool {
        match self {
            FailureReason::ExitCode | FailureReason::Secret => false,
            FailureReason::Timeout | FailureReason::Interrupted | FailureReason::Backend | FailureReason::Registry => {
                true
            }
        }
    }
}

/// Who stopped a job, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
