//! The small closed vocabularies of a job: [`JobStatus`], [`Phase`] and log [`Stream`].
//!
//! Match these without a `_` arm: a new variant must force a decision everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. `SUCCEEDED`, `FAILED` and `KILLED` are terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Pending,
    Building,
    Testing,
    Publishing,
    Succeeded,
    Failed,
    Killed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Pending,
        JobStatus::Building,
        JobStatus::Testing,
        JobStatus::Publishing,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Killed,
    ];

    pub fn is_terminal(self) -> bool {
        match self {
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Killed => true,
            JobStatus::Pending | JobStatus::Building | JobStatus::Testing | JobStatus::Publishing => false,
        }
    }

    /// The phase a job in this status is running, if any.
    pub fn phase(self) -> Option<Phase> {
        match self {
            JobStatus::Building => Some(Phase::Build),
            JobStatus::Testing => Some(Phase::Test),
            JobStatus::Publishing => Some(Phase::Publish),
            JobStatus::Pending | JobStatus::Succeeded | JobStatus::Failed | JobStatus::Killed => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Building => "BUILDING",
            JobStatus::Testing => "TESTING",
            JobStatus::Publishing => "PUBLISHING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Killed => "KILLED",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct BadStatus(pub String);

impl FromStr for JobStatus {
    type Err = BadStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| BadStatus(s.to_owned()))
    }
}

/// One of the three phases of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Build,
    Test,
    Publish,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Build, Phase::Test, Phase::Publish];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Test => "test",
            Phase::Publish => "publish",
        }
    }

    /// The status a job has while this phase runs.
    pub fn status(self) -> JobStatus {
        match self {
            Phase::Build => JobStatus::Building,
            Phase::Test => JobStatus::Testing,
            Phase::Publish => JobStatus::Publishing,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown phase {0:?} (expected build, test or publish)")]
pub struct BadPhase(pub String);

impl FromStr for Phase {
    type Err = BadPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL.into_iter().find(|phase| phase.as_str() == s).ok_or_else(|| BadPhase(s.to_owned()))
    }
}

/// Which stream a log line came from. `System` lines are written by jobforge itself
/// (the step about to run, why a phase stopped), never by the user's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

impl FromStr for Stream {
    type Err = BadStream;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            "system" => Ok(Stream::System),
            other => Err(BadStream(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown stream {0:?}")]
pub struct BadStream(pub String);
