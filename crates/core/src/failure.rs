//! [`Failure`]: why a job did not succeed, as its record keeps it and callers read it.
//!
//! A failure has two levels. [`FailureReason`] is how the phase's runs ended, known the moment
//! they end (an exit code, a timeout, a vanished run). [`Cause`] is what that means for the
//! caller (a missing branch, a Dockerfile typo, a failing test, the registry being down),
//! decided by [`crate::diagnose`] from the tools' own output before the failure is persisted,
//! together with the Dockerfile instruction at fault, the lines that explain it and a hint.
//!
//! It must not hold anything a caller could not be shown: no secret values (the log lines it
//! quotes are masked before they are written) and no host paths of the service.

use serde::{Deserialize, Serialize};

use crate::status::Phase;

/// Why a job failed: a value in the record, not an error of the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(from = "StoredFailure")]
pub struct Failure {
    pub phase: Phase,
    /// The index of the failing test (the first one, when several failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<u32>,
    pub reason: FailureReason,
    /// What the failure means: what to fix, or that it was not the caller's doing.
    pub cause: Cause,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whether resubmitting the same job unchanged may succeed: network or registry trouble,
    /// placement, an interrupted run. Never for the caller's own mistakes.
    pub retryable: bool,
    /// The Dockerfile instruction the failure is tied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<DockerfileSpot>,
    /// The lines that explain the failure and nothing else: the failing step's output, the
    /// tool's error, the failing test's last lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excerpt: Vec<String>,
    /// What to do about it, where the cause allows a concrete answer (the names that do exist,
    /// the valid instructions, the branches the remote has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The last lines of the failing run's own output (jobforge's `system` lines left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl Failure {
    /// A failure before its diagnosis: the cause guessed from the phase and the reason.
    pub fn new(phase: Phase, reason: FailureReason, message: impl Into<String>) -> Failure {
        let cause = Cause::guess(phase, reason);
        Failure {
            phase,
            test: None,
            reason,
            cause,
            message: message.into(),
            exit_code: None,
            retryable: cause.is_retryable(),
            dockerfile: None,
            excerpt: Vec::new(),
            hint: None,
            log_tail: Vec::new(),
        }
    }
}

/// How the phase's runs ended, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// A kill request stopped the job (it ended `KILLED`, not `FAILED`).
    Killed,
}

/// What a failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The repository or the ref could not be fetched: not found, or the network.
    Clone,
    /// Git or the registry refused the credentials (or none were given).
    Auth,
    /// The Dockerfile is missing or does not parse, or a COPY/ADD source is missing.
    Dockerfile,
    /// The FROM image could not be pulled.
    BaseImage,
    /// A RUN instruction exited non-zero.
    BuildStep,
    /// A test command exited non-zero.
    TestFailed,
    /// The phase ran past its timeout.
    Timeout,
    /// A kill request stopped the job.
    Killed,
    /// Nomad could not place the work on any node.
    Placement,
    /// Pushing, pulling or deleting an image failed for a reason other than credentials.
    Registry,
    /// The run vanished (its node or supervisor died).
    Interrupted,
    /// jobforge or its backend could not do its part (a tool missing, a secret unreadable).
    Infrastructure,
}

impl Cause {
    /// The cause before any output was read.
    pub fn guess(phase: Phase, reason: FailureReason) -> Cause {
        match (reason, phase) {
            (FailureReason::ExitCode, Phase::Build) => Cause::BuildStep,
            (FailureReason::ExitCode, Phase::Test) => Cause::TestFailed,
            (FailureReason::ExitCode | FailureReason::Registry, Phase::Publish) | (FailureReason::Registry, _) => {
                Cause::Registry
            }
            (FailureReason::Timeout, _) => Cause::Timeout,
            (FailureReason::Interrupted, _) => Cause::Interrupted,
            (FailureReason::Killed, _) => Cause::Killed,
            (FailureReason::Backend | FailureReason::Secret, _) => Cause::Infrastructure,
        }
    }

    /// Whether this cause, by itself, says a resubmission may help. The diagnosis can still
    /// say otherwise for one failure (a registry that answered `manifest unknown`).
    pub fn is_retryable(self) -> bool {
        match self {
            Cause::Placement | Cause::Registry | Cause::Interrupted | Cause::Infrastructure => true,
            Cause::Clone
            | Cause::Auth
            | Cause::Dockerfile
            | Cause::BaseImage
            | Cause::BuildStep
            | Cause::TestFailed
            | Cause::Timeout
            | Cause::Killed => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Clone => "clone",
            Cause::Auth => "auth",
            Cause::Dockerfile => "dockerfile",
            Cause::BaseImage => "base_image",
            Cause::BuildStep => "build_step",
            Cause::TestFailed => "test_failed",
            Cause::Timeout => "timeout",
            Cause::Killed => "killed",
            Cause::Placement => "placement",
            Cause::Registry => "registry",
            Cause::Interrupted => "interrupted",
            Cause::Infrastructure => "infrastructure",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the committed Dockerfile a failure is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DockerfileSpot {
    /// The Dockerfile's path in the repository (`dockerfile_path`).
    pub path: String,
    /// The 1-based line where the instruction starts, counting every line of the file.
    pub line: u32,
    /// The instruction as written (its continuation lines included).
    pub instruction: String,
}

/// A failure as stored: records written before causes were diagnosed have none, and get the
/// guess from their reason.
#[derive(Deserialize, schemars::JsonSchema)]
struct StoredFailure {
    phase: Phase,
    #[serde(default)]
    test: Option<u32>,
    reason: FailureReason,
    #[serde(default)]
    cause: Option<Cause>,
    message: String,
    #[serde(default)]
    exit_code: Option<i32>,
    retryable: bool,
    #[serde(default)]
    dockerfile: Option<DockerfileSpot>,
    #[serde(default)]
    excerpt: Vec<String>,
    #[serde(default)]
    hint: Option<String>,
    #[serde(default)]
    log_tail: Vec<String>,
}

impl From<StoredFailure> for Failure {
    fn from(s: StoredFailure) -> Failure {
        Failure {
            cause: s.cause.unwrap_or_else(|| Cause::guess(s.phase, s.reason)),
            phase: s.phase,
            test: s.test,
            reason: s.reason,
            message: s.message,
            exit_code: s.exit_code,
            retryable: s.retryable,
            dockerfile: s.dockerfile,
            excerpt: s.excerpt,
            hint: s.hint,
            log_tail: s.log_tail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_stored_before_causes_gets_the_guess_from_its_reason() {
        let old = r#"{"phase":"test","reason":"exit_code","message":"m","exit_code":1,"retryable":false}"#;
        let failure: Failure = serde_json::from_str(old).unwrap();
        assert_eq!(failure.cause, Cause::TestFailed);
        let again: Failure = serde_json::from_value(serde_json::to_value(&failure).unwrap()).unwrap();
        assert_eq!(again, failure);
    }

    #[test]
    fn causes_serialize_as_their_names() {
        for cause in [Cause::Clone, Cause::BaseImage, Cause::BuildStep, Cause::TestFailed, Cause::Infrastructure] {
            assert_eq!(serde_json::to_value(cause).unwrap(), serde_json::json!(cause.as_str()));
        }
    }
}
