//! [`JobEvent`]: what happened to a job, one typed event at a time, in the order it happened.
//!
//! The engine writes every event into the job's journal, where events share the job's one
//! sequence with its log lines: a reader holding the last sequence number it saw resumes
//! everything (status changes, phases, tests, kills, cleanup and log lines) with nothing lost
//! or repeated. Every consumer that reports on jobs reads these events; none polls records.
//!
//! This module owns the vocabulary only. It must not decide when an event happens (the
//! engine's `step` does) nor how it is stored (the `LogArchive` adapters do).

use serde::{Deserialize, Serialize};

use crate::record::TestStatus;
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

/// One thing that happened to a job. Serialized with its name in `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// The job's status is now `status`.
    StatusChanged {
        status: JobStatus,
    },
    /// The job waits behind `position` earlier builds of the same image and branch.
    Queued {
        position: u32,
    },
    PhaseStarted {
        phase: Phase,
    },
    /// The phase is over: passed, failed, timed out or stopped by a kill.
    PhaseEnded {
        phase: Phase,
        result: PhaseResult,
        /// The digest the build pushed (a passed build only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
    },
    /// Test `index` (0-based, in `test_commands` order) began to run.
    TestStarted {
        index: u32,
        command: String,
    },
    /// Test `index` ended.
    TestEnded {
        index: u32,
        status: TestStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// Someone asked to stop the job.
    KillRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The phase ran past its timeout; its runs are being stopped.
    TimedOut {
        phase: Phase,
        timeout: String,
    },
    /// The tested digest is now under these references.
    Published {
        references: Vec<String>,
    },
    /// What the job left behind was removed, except `remaining`. Nothing follows this event.
    CleanupDone {
        removed: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remaining: Vec<String>,
    },
}

/// How a phase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseResult {
    Passed,
    Failed,
    TimedOut,
    Killed,
}

impl JobEvent {
    /// The event's name, as in its `type` field (and as the SSE event name).
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::StatusChanged { .. } => "status_changed",
            JobEvent::Queued { .. } => "queued",
            JobEvent::PhaseStarted { .. } => "phase_started",
            JobEvent::PhaseEnded { .. } => "phase_ended",
            JobEvent::TestStarted { .. } => "test_started",
            JobEvent::TestEnded { .. } => "test_ended",
            JobEvent::KillRequested { .. } => "kill_requested",
            JobEvent::TimedOut { .. } => "timed_out",
            JobEvent::Published { .. } => "published",
            JobEvent::CleanupDone { .. } => "cleanup_done",
        }
    }

    /// Every event name, for documentation and for readers that list what they accept.
    pub const NAMES: [&'static str; 10] = [
        "status_changed",
        "queued",
        "phase_started",
        "phase_ended",
        "test_started",
        "test_ended",
        "kill_requested",
        "timed_out",
        "published",
        "cleanup_done",
    ];

    /// Whether this is the job's last event.
    pub fn is_last(&self) -> bool {
        matches!(self, JobEvent::CleanupDone { .. })
    }
}

/// An event as the journal holds it: numbered in the job's one sequence, stamped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventEntry {
    /// The job's sequence number, shared with its log lines.
    pub seq: u64,
    pub ts: Timestamp,
    #[serde(flatten)]
    pub event: JobEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_serialized_type() {
        let events = [
            JobEvent::StatusChanged { status: JobStatus::Building },
            JobEvent::Queued { position: 1 },
            JobEvent::PhaseStarted { phase: Phase::Build },
            JobEvent::PhaseEnded { phase: Phase::Build, result: PhaseResult::Passed, digest: None },
            JobEvent::TestStarted { index: 0, command: "true".into() },
            JobEvent::TestEnded { index: 0, status: TestStatus::Passed, exit_code: Some(0), duration_ms: None },
            JobEvent::KillRequested { by: None, reason: None },
            JobEvent::TimedOut { phase: Phase::Test, timeout: "2s".into() },
            JobEvent::Published { references: vec![] },
            JobEvent::CleanupDone { removed: vec![], remaining: vec![] },
        ];
        for (event, name) in events.iter().zip(JobEvent::NAMES) {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json["type"], name);
            assert_eq!(event.name(), name);
            assert_eq!(serde_json::from_value::<JobEvent>(json).unwrap(), *event);
        }
    }
}
