//! The stored form of a [`JobRecord`]: what stores write and read back.
//!
//! Written: the record's fields, its `state`, and its `status` for people and queries reading
//! the store. Read: the same, checked (the runs of a running phase must be the phase's runs),
//! or a record written before the state machine, whose flat `status`, `kill`, `failure`,
//! `queue_position` and `cleaned_up` become the state they describe. The job spec inside is
//! validated field by field on the way in, as a submission is (see `config`).

use serde::{Deserialize, Serialize};

use super::{Failure, JobRecord, KillRequest, Outbox, PhaseTimes, TestResult, TestStatus};
use crate::config::JobSpec;
use crate::id::JobId;
use crate::image::{Digest, ImageRef};
use crate::ports::RunExit;
use crate::state::{CleanupReport, JobState, Outcome, PhaseRun, RunOutcome, RunState, Stop, StopCause};
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

#[derive(Serialize, Deserialize)]
pub(super) struct StoredRecord {
    id: JobId,
    spec: JobSpec,
    status: JobStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    temp_image: ImageRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<JobState>,
    #[serde(default)]
    times: PhaseTimes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    published: Vec<ImageRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tests: Vec<TestResult>,
    #[serde(default)]
    outbox: Outbox,
    // Only in records written before the state machine; never written now.
    #[serde(default, skip_serializing)]
    failure: Option<Failure>,
    #[serde(default, skip_serializing)]
    kill: Option<KillRequest>,
    #[serde(default, skip_serializing)]
    queue_position: Option<u32>,
    #[serde(default, skip_serializing)]
    cleaned_up: bool,
}

impl From<JobRecord> for StoredRecord {
    fn from(record: JobRecord) -> Self {
        StoredRecord {
            id: record.id,
            status: record.status(),
            spec: record.spec,
            created_at: record.created_at,
            updated_at: record.updated_at,
            temp_image: record.temp_image,
            state: Some(record.state),
            times: record.times,
            image_digest: record.image_digest,
            published: record.published,
            tests: record.tests,
            outbox: record.outbox,
            failure: None,
            kill: None,
            queue_position: None,
            cleaned_up: false,
        }
    }
}

impl TryFrom<StoredRecord> for JobRecord {
    type Error = String;

    fn try_from(stored: StoredRecord) -> Result<Self, String> {
        let state = match stored.state.clone() {
            Some(state) => state,
            None => legacy_state(&stored),
        };
        check_runs(&state, &stored.spec)?;
        let tests = match (&stored.state, &state) {
            // A legacy record in its test phase keeps its tests in the runs of its state.
            (None, JobState::Running(PhaseRun { phase: Phase::Test, .. })) => Vec::new(),
            _ => stored.tests,
        };
        Ok(JobRecord {
            id: stored.id,
            spec: stored.spec,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            temp_image: stored.temp_image,
            state,
            times: stored.times,
            image_digest: stored.image_digest,
            published: stored.published,
            tests,
            outbox: stored.outbox,
        })
    }
}

/// The runs of a running phase are exactly the phase's runs: one for build and publish, one
/// per test (indexes 0..n, in order) for tests.
fn check_runs(state: &JobState, spec: &JobSpec) -> Result<(), String> {
    let JobState::Running(run) = state else { return Ok(()) };
    let expected: Vec<Option<u32>> = match run.phase {
        Phase::Test => (0..spec.tests().len() as u32).map(Some).collect(),
        Phase::Build | Phase::Publish => vec![None],
    };
    let found: Vec<Option<u32>> = run.runs.iter().map(|r| r.test).collect();
    if found == expected {
        Ok(())
    } else {
        Err(format!("the {} phase lists runs {found:?}, not the job's {expected:?}", run.phase))
    }
}

/// The state a record written before the state machine describes.
fn legacy_state(stored: &StoredRecord) -> JobState {
    let killed = stored.kill.clone();
    match stored.status {
        JobStatus::Pending => match killed {
            Some(request) => JobState::Ending { outcome: Outcome::Killed { request } },
            None => JobState::Waiting { queue_position: stored.queue_position },
        },
        JobStatus::Building | JobStatus::Testing | JobStatus::Publishing => {
            let phase = stored.status.phase().unwrap_or(Phase::Build);
            let mut run = PhaseRun::new(phase, stored.spec.tests().len());
            if phase == Phase::Test {
                for (run, test) in run.runs.iter_mut().zip(&stored.tests) {
                    run.state = legacy_test_state(test);
                    (run.began, run.ended) = (test.started, test.ended);
                }
            }
            run.stop = killed.map(|request| Stop { since: request.at, cause: StopCause::Kill { request } });
            JobState::Running(run)
        }
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Killed => {
            let outcome = match (stored.status, stored.failure.clone(), killed) {
                (JobStatus::Failed, Some(failure), _) => Outcome::Failed { failure },
                (JobStatus::Killed, _, Some(request)) => Outcome::Killed { request },
                (JobStatus::Killed, _, None) => {
                    Outcome::Killed { request: KillRequest { at: stored.updated_at, by: None, reason: None } }
                }
                _ => Outcome::Succeeded,
            };
            if stored.cleaned_up {
                JobState::Ended { outcome, cleanup: CleanupReport::default() }
            } else {
                JobState::Ending { outcome }
            }
        }
    }
}

fn legacy_test_state(test: &TestResult) -> RunState {
    let exit = |code| RunOutcome::Ended { exit: RunExit::Exited { code } };
    match test.status {
        TestStatus::Pending => RunState::ToStart,
        TestStatus::Running => RunState::Started,
        TestStatus::Passed => RunState::Done { outcome: exit(0) },
        TestStatus::Failed => RunState::Done { outcome: exit(test.exit_code.unwrap_or(1)) },
        TestStatus::Stopped => RunState::Done { outcome: RunOutcome::Stopped },
    }
}
