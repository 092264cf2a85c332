//! [`JobState`]: where a job is, as an enum whose variants carry only their own data.
//!
//! ```text
//!  Waiting ──admitted──▶ Running(build) ──▶ Running(test) ──▶ Running(publish) ──▶ Ending ──cleaned──▶ Ended
//!     │                     │  │                 │  │              │  │               ▲
//!     └──────kill───────────┴──┴── fail/kill ────┴──┴──────────────┴──┴───────────────┘
//! ```
//!
//! A job that is `Running` knows each run of its phase (to start, started, done) and whether a
//! stop is under way (a kill or the phase timeout); a job that has an outcome keeps it through
//! `Ending` (cleanup in progress) into `Ended`, where a typed [`CleanupReport`] says what was
//! removed and what remains. Which transitions exist is decided by the engine's `step`; this
//! module only names the states and answers questions about them.

use serde::{Deserialize, Serialize};

use crate::id::{JobId, RunKey};
use crate::ports::RunExit;
use crate::record::{Failure, KillRequest, TestResult, TestStatus};
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

/// Where a job is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobState {
    /// `PENDING`: waiting for its turn (earlier builds of the same image and branch, or a free
    /// slot under the active-jobs cap).
    Waiting {
        /// How many earlier builds of the same image and branch go first, once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue_position: Option<u32>,
    },
    /// `BUILDING`, `TESTING` or `PUBLISHING`.
    Running(PhaseRun),
    /// The outcome is decided; what the job left behind is being removed.
    Ending { outcome: Outcome },
    /// Nothing about the job changes any more.
    Ended { outcome: Outcome, cleanup: CleanupReport },
}

/// One phase in progress: each of its runs, and any stop under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRun {
    pub phase: Phase,
    /// One per run of the phase, in run order (tests by index).
    pub runs: Vec<Run>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
}

/// One run of a phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The test's index, for runs of the test phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<u32>,
    pub state: RunState,
    /// When the work began to execute, as the backend reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub began: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
}

/// Where one run is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunState {
    /// About to be started (persisted first: a restart starts it again, idempotently).
    ToStart,
    /// The backend has it.
    Started,
    /// Over, and how.
    Done { outcome: RunOutcome },
}

/// How one run of a phase ended, as the engine saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The run ended and the backend reported how.
    Ended { exit: RunExit },
    /// The engine stopped it (kill or timeout) before it ended on its own.
    Stopped,
}

impl RunOutcome {
    pub fn success(&self) -> bool {
        matches!(self, RunOutcome::Ended { exit } if exit.success())
    }
}

/// A stop under way: the phase's runs were told to stop at `since`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub cause: StopCause,
    pub since: Timestamp,
}

/// Why the runs of a phase are being stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopCause {
    Kill { request: KillRequest },
    Timeout,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed { failure: Failure },
    Killed { request: KillRequest },
}

impl Outcome {
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Succeeded => JobStatus::Succeeded,
            Outcome::Failed { .. } => JobStatus::Failed,
            Outcome::Killed { .. } => JobStatus::Killed,
        }
    }
}

/// What removing a finished job's leftovers (its temp image, its runs in the backend) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// What was removed, e.g. `temp image 127.0.0.1:5000/temp/<id>:latest`.
    #[serde(default)]
    pub removed: Vec<String>,
    /// What could not be removed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<Leftover>,
}

/// Something a job left behind that could not be removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Leftover {
    pub what: String,
    pub why: String,
}

impl CleanupReport {
    /// Everything was removed.
    pub fn is_complete(&self) -> bool {
        self.remaining.is_empty()
    }

    pub fn merge(&mut self, other: CleanupReport) {
        self.removed.extend(other.removed);
        self.remaining.extend(other.remaining);
    }

    /// One line per removed item, then one per leftover with its reason.
    pub fn lines(&self) -> Vec<String> {
        let remaining = self.remaining.iter().map(|left| format!("(not removed) {}: {}", left.what, left.why));
        self.removed.iter().cloned().chain(remaining).collect()
    }
}

impl JobState {
    /// The status callers see.
    pub fn status(&self) -> JobStatus {
        match self {
            JobState::Waiting { .. } => JobStatus::Pending,
            JobState::Running(run) => run.phase.status(),
            JobState::Ending { outcome } | JobState::Ended { outcome, .. } => outcome.status(),
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            JobState::Ending { outcome } | JobState::Ended { outcome, .. } => Some(outcome),
            JobState::Waiting { .. } | JobState::Running(_) => None,
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self.outcome() {
            Some(Outcome::Failed { failure }) => Some(failure),
            Some(Outcome::Succeeded | Outcome::Killed { .. }) | None => None,
        }
    }

    /// The kill asked for, if any: under way, or how the job ended.
    pub fn kill(&self) -> Option<&KillRequest> {
        match self {
            JobState::Running(PhaseRun { stop: Some(Stop { cause: StopCause::Kill { request }, .. }), .. }) => {
                Some(request)
            }
            JobState::Ending { outcome: Outcome::Killed { request } }
            | JobState::Ended { outcome: Outcome::Killed { request }, .. } => Some(request),
            JobState::Waiting { .. } | JobState::Running(_) | JobState::Ending { .. } | JobState::Ended { .. } => None,
        }
    }

    pub fn queue_position(&self) -> Option<u32> {
        match self {
            JobState::Waiting { queue_position } => *queue_position,
            JobState::Running(_) | JobState::Ending { .. } | JobState::Ended { .. } => None,
        }
    }

    pub fn cleanup(&self) -> Option<&CleanupReport> {
        match self {
            JobState::Ended { cleanup, .. } => Some(cleanup),
            JobState::Waiting { .. } | JobState::Running(_) | JobState::Ending { .. } => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self, JobState::Ended { .. })
    }
}

impl PhaseRun {
    /// A phase about to start: every run still to be started.
    pub fn new(phase: Phase, tests: usize) -> Self {
        let runs = match phase {
            Phase::Test => (0..tests as u32).map(|i| Run::to_start(Some(i))).collect(),
            Phase::Build | Phase::Publish => vec![Run::to_start(None)],
        };
        PhaseRun { phase, runs, stop: None }
    }

    pub fn key(&self, job: JobId, run: &Run) -> RunKey {
        RunKey { job, phase: self.phase, test_index: run.test }
    }

    pub fn run_mut(&mut self, test: Option<u32>) -> Option<&mut Run> {
        self.runs.iter_mut().find(|run| run.test == test)
    }

    pub fn all_done(&self) -> bool {
        self.runs.iter().all(Run::is_done)
    }

    /// How each run ended, once all have.
    pub fn outcomes(&self, job: JobId) -> Vec<(RunKey, RunOutcome)> {
        self.runs
            .iter()
            .filter_map(|run| match &run.state {
                RunState::Done { outcome } => Some((self.key(job, run), outcome.clone())),
                RunState::ToStart | RunState::Started => None,
            })
            .collect()
    }

    /// The tests of this phase as callers see them; `commands` are the job's tests by index.
    pub fn test_results(&self, commands: &[String]) -> Vec<TestResult> {
        self.runs
            .iter()
            .filter_map(|run| {
                let index = run.test?;
                Some(run.test_result(index, commands.get(index as usize).cloned().unwrap_or_default()))
            })
            .collect()
    }
}

impl Run {
    fn to_start(test: Option<u32>) -> Self {
        Run { test, state: RunState::ToStart, began: None, ended: None }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, RunState::Done { .. })
    }

    pub fn test_result(&self, index: u32, command: String) -> TestResult {
        let (status, exit_code) = match &self.state {
            RunState::ToStart => (TestStatus::Pending, None),
            RunState::Started => (TestStatus::Running, None),
            RunState::Done { outcome } => test_status(outcome),
        };
        TestResult { index, command, status, exit_code, started: self.began, ended: self.ended, excerpt: Vec::new() }
    }
}

/// A test's status and exit code, from how its run ended.
pub fn test_status(outcome: &RunOutcome) -> (TestStatus, Option<i32>) {
    match outcome {
        RunOutcome::Ended { exit: RunExit::Exited { code: 0 } } => (TestStatus::Passed, Some(0)),
        RunOutcome::Ended { exit: RunExit::Exited { code } } => (TestStatus::Failed, Some(*code)),
        RunOutcome::Ended { exit: RunExit::Signaled { signal } } => (TestStatus::Failed, Some(128 + signal)),
        RunOutcome::Ended { exit: RunExit::StartFailed { .. } | RunExit::Lost { .. } } => (TestStatus::Failed, None),
        RunOutcome::Stopped => (TestStatus::Stopped, None),
    }
}
