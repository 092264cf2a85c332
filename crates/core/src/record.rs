//! [`JobRecord`]: everything the service knows about one job, as the store keeps it.
//!
//! A record is the job's [`JobState`] (where it is, with only that state's data) plus the facts
//! gathered on the way (phase times, the built digest, published references, finished tests)
//! and the [`Outbox`] of journal entries decided with the state. The engine's driver is the
//! only writer of a record and persists it before every side effect, so a restarted service
//! continues from the record alone. The record holds secret *paths* only, never values.
//!
//! Records reach stores as JSON through [`stored`], which also reads the flat records written
//! before the state machine, and validates every field on the way in as a submission is.

mod stored;

use serde::{Deserialize, Serialize};

use crate::config::JobSpec;
use crate::events::JobEvent;
pub use crate::failure::{Cause, DockerfileSpot, Failure, FailureReason};
use crate::id::{JobId, RunId, RunKey};
use crate::image::{Digest, ImageRef};
use crate::logs::{NewEntry, NewEvent, NewLogLine, Origin};
use crate::state::{CleanupReport, JobState, Outcome, PhaseRun};
use crate::status::{JobStatus, Phase, Stream};
use crate::time::Timestamp;

/// One job, from submission to cleanup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "stored::StoredRecord", into = "stored::StoredRecord")]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Where the build pushes and the tests pull: `<registry>/temp/<id>:latest`.
    pub temp_image: ImageRef,
    pub state: JobState,
    pub times: PhaseTimes,
    /// The digest the build pushed, once known; tests and publish use exactly this.
    pub image_digest: Option<Digest>,
    /// Final references confirmed to hold `image_digest`.
    pub published: Vec<ImageRef>,
    /// The tests of a test phase that is over (while it runs, its runs are in `state`).
    pub tests: Vec<TestResult>,
    pub outbox: Outbox,
}

impl JobRecord {
    pub fn new(id: JobId, spec: JobSpec, temp_image: ImageRef, now: Timestamp) -> Self {
        JobRecord {
            id,
            spec,
            created_at: now,
            updated_at: now,
            temp_image,
            state: JobState::Waiting { queue_position: None },
            times: PhaseTimes { job_start: Some(now), ..PhaseTimes::default() },
            image_digest: None,
            published: Vec::new(),
            tests: Vec::new(),
            outbox: Outbox::default(),
        }
    }

    pub fn status(&self) -> JobStatus {
        self.state.status()
    }

    /// A job the engine must still drive: not ended, or with journal entries not yet written.
    pub fn is_live(&self) -> bool {
        !self.state.is_ended() || !self.outbox.is_empty()
    }

    /// Ended with everything it left behind removed: nothing about it will change any more.
    pub fn cleaned_up(&self) -> bool {
        self.state.cleanup().is_some_and(CleanupReport::is_complete)
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.state.failure()
    }

    pub fn kill(&self) -> Option<&KillRequest> {
        self.state.kill()
    }

    pub fn queue_position(&self) -> Option<u32> {
        self.state.queue_position()
    }

    /// The job's tests as callers see them: those of the test phase running now, or as it
    /// ended.
    pub fn test_results(&self) -> Vec<TestResult> {
        match &self.state {
            JobState::Running(run @ PhaseRun { phase: Phase::Test, .. }) => run.test_results(&self.test_commands()),
            JobState::Running(_) | JobState::Waiting { .. } | JobState::Ending { .. } | JobState::Ended { .. } => {
                self.tests.clone()
            }
        }
    }

    /// Each test as a caller would read it: the command, or `<entry point>`.
    pub fn test_commands(&self) -> Vec<String> {
        self.spec.tests().iter().map(ToString::to_string).collect()
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
        if let JobState::Running(run) = &self.state {
            return Some(run.phase);
        }
        if let Some(failure) = self.failure() {
            return Some(failure.phase);
        }
        let t = &self.times;
        [(t.publish_start, Phase::Publish), (t.test_start, Phase::Test), (t.build_start, Phase::Build)]
            .into_iter()
            .find_map(|(start, phase)| start.map(|_| phase))
    }

    /// The outcome, once decided.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.state.outcome()
    }
}

/// Journal entries decided together with the state they describe, persisted in the record
/// until they are archived: a crash between the record's write and the journal's leaves them
/// here, and the next driver archives them (the archive skips any it has, by number).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    /// Entries numbered so far; the next one is `written + 1`.
    #[serde(default)]
    pub written: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Posting>,
}

/// One entry the engine writes into a job's journal: an event, or a line of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub n: u64,
    pub ts: Timestamp,
    #[serde(flatten)]
    pub item: PostingItem,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum PostingItem {
    Event {
        event: JobEvent,
    },
    /// A `system` line in the log of `phase` (a kill, a timeout), for people reading logs.
    Line {
        phase: Phase,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test: Option<u32>,
        text: String,
    },
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn event(&mut self, ts: Timestamp, event: JobEvent) {
        self.post(ts, PostingItem::Event { event });
    }

    pub fn line(&mut self, ts: Timestamp, phase: Phase, text: impl Into<String>) {
        self.post(ts, PostingItem::Line { phase, test: None, text: text.into() });
    }

    fn post(&mut self, ts: Timestamp, item: PostingItem) {
        self.written += 1;
        self.pending.push(Posting { n: self.written, ts, item });
    }

    /// Forget the entries numbered up to `n`: they are archived.
    pub fn archived(&mut self, n: u64) {
        self.pending.retain(|posting| posting.n > n);
    }

    /// The pending entries as the archive takes them.
    pub fn entries(&self) -> Vec<NewEntry> {
        self.pending.iter().map(Posting::entry).collect()
    }
}

impl Posting {
    pub fn entry(&self) -> NewEntry {
        match &self.item {
            PostingItem::Event { event } => NewEntry::Event(NewEvent { n: self.n, ts: self.ts, event: event.clone() }),
            PostingItem::Line { phase, test, text } => NewEntry::Line(NewLogLine {
                phase: *phase,
                test: *test,
                origin: Some(Origin::Engine { n: self.n }),
                stream: Stream::System,
                ts: self.ts,
                text: text.clone(),
            }),
        }
    }
}

/// When each phase started and ended (UTC, milliseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TestResult {
    pub index: u32,
    pub command: String,
    pub status: TestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When the test began to execute, as the backend reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// A failed test's last lines of its own output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excerpt: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    Pending,
    Running,
    Passed,
    Failed,
    /// Stopped by a kill or the phase timeout before it finished.
    Stopped,
}

/// Who stopped a job, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KillRequest {
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
