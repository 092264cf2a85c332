//! The [`Backend`] port: runs the work of a phase (local processes, or Nomad batch jobs).

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::config::{Constraint, EnvName, GitRef, JobSpec, RelPath, RepoUrl, Resources, TestCase, VaultSecret};
use crate::diagnose::Checkout;
use crate::id::{JobId, RunId};
use crate::image::ImageRef;
use crate::logs::{RunCursor, RunLine};
use crate::secret::SecretPath;
use crate::state::CleanupReport;
use crate::time::Timestamp;
use crate::validate::Problem;

/// One run to start: its deterministic id and what it must do.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub id: RunId,
    pub work: RunWork,
    pub resources: Resources,
}

/// The work of a run, in domain terms. Credentials are secret paths; a backend that needs the
/// values reads them through its own [`crate::ports::Secrets`], or hands the path on (Nomad's
/// Vault templates) so values never pass through the engine.
#[derive(Clone, Debug)]
pub enum RunWork {
    Build(BuildWork),
    Test(TestWork),
    Publish(PublishWork),
}

/// Clone `repo_url` at `git_ref`, build `dockerfile` in `context`, push the result to `image`.
#[derive(Clone, Debug)]
pub struct BuildWork {
    pub repo_url: RepoUrl,
    pub git_ref: GitRef,
    pub git_credentials: Option<SecretPath>,
    pub dockerfile: RelPath,
    pub context: RelPath,
    pub build_args: BTreeMap<EnvName, String>,
    pub no_cache: bool,
    /// The temp image, by tag.
    pub image: ImageRef,
    pub registry_credentials: Option<SecretPath>,
}

/// Run one test inside `image` (pinned by digest).
#[derive(Clone, Debug)]
pub struct TestWork {
    pub image: ImageRef,
    pub case: TestCase,
    pub env: BTreeMap<EnvName, String>,
    pub vault_secrets: Vec<VaultSecret>,
    pub registry_credentials: Option<SecretPath>,
    /// Placement constraints (backends that place work on a cluster).
    pub constraints: Vec<Constraint>,
    pub gpu_required: bool,
}

/// Copy `source` (pinned by digest) to every target reference, unchanged.
#[derive(Clone, Debug)]
pub struct PublishWork {
    pub source: ImageRef,
    pub targets: Vec<ImageRef>,
    pub source_credentials: Option<SecretPath>,
    pub target_credentials: Option<SecretPath>,
}

/// Whether `start` began a run or found one already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    New,
    /// A run with this id existed (running or finished); nothing was started.
    Existing,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunExit {
    /// The work ran to an end with this exit code (0 is success).
    Exited { code: i32 },
    /// The work was ended by a signal (a stop, the OOM killer).
    Signaled { signal: i32 },
    /// The work never began: a program was missing, an image could not be pulled...
    StartFailed { message: String },
    /// The run is gone without an exit status (its supervisor died, the node was lost).
    Lost { message: String },
}

impl RunExit {
    pub fn success(&self) -> bool {
        matches!(self, RunExit::Exited { code: 0 })
    }
}

/// What following a run yields: its lines, `Began` once the work is executing (before any line
/// of the work's own output; the backend's `system` lines, such as placement notes, may come
/// earlier; never, if the work never began), then exactly one `Exit`, then the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The work began to execute at `at` (after placement and image pulls), as the backend
    /// recorded it; the same time on every follow.
    Began {
        at: Timestamp,
    },
    Line(RunLine),
    Exit(RunExit),
}

pub type RunEvents = BoxStream<'static, Result<RunEvent, BackendError>>;

/// Why a backend call failed. Every variant is the service's trouble, not the caller's: the
/// engine fails the phase with a retryable error.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("run {0} does not exist")]
    NoSuchRun(RunId),
    #[error("could not start run {run}: {message}")]
    Start { run: RunId, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unavailable(String),
}

/// Runs the work of phases.
///
/// **Lifecycle of a run:** `start` → `follow` (any number of times, from any cursor) → the run
/// ends on its own or through `stop` → `cleanup` of the whole job. A service restart may happen
/// between any two calls: the engine then calls `start` again with the same spec and must be
/// attached to the existing run, not a second one.
///
/// **Line numbers:** a backend numbers each run's lines in [`Backend::sequences`] interleaved
/// sequences: line `n` belongs to sequence `n % sequences`, and within a sequence numbers
/// increase from the first line on and are the same on every `follow`. (The local backend has
/// one sequence; Nomad has four: stdout, stderr, task events and placement notes arrive
/// independently of each other.)
///
/// **Concurrency:** calls for different runs may overlap freely; `follow` and `stop` for the
/// same run overlap (stopping a run makes its `follow` stream yield the exit).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and health output (`local`, `nomad`).
    fn name(&self) -> &'static str;

    /// Job fields this backend cannot honour, refused at submission (HTTP 422).
    fn unsupported(&self, spec: &JobSpec) -> Vec<Problem>;

    /// How many interleaved line sequences a run's line numbers form (at least 1).
    fn sequences(&self) -> u64;

    /// Start the run unless one with `spec.id` exists. **Idempotent**: a second call, also
    /// from a restarted service, returns `Started::Existing` and starts nothing.
    async fn start(&self, spec: &RunSpec) -> Result<Started, BackendError>;

    /// The run's lines that come after `from` (in each sequence, those numbered above the
    /// cursor's number for it), as they are produced, then its exit. Works for running and
    /// finished runs alike, until `cleanup` removes the run; [`BackendError::NoSuchRun`] for a
    /// run that was never started (a removed run may still be followed to its end where the
    /// backend keeps its record for a while, as Nomad does until its garbage collection).
    async fn follow(&self, run: &RunId, from: &RunCursor) -> Result<RunEvents, BackendError>;

    /// Ask the run to stop, and force it after `grace`. Returns once the run has ended or been
    /// forced. **Idempotent**; stopping a finished or unknown run is not an error.
    async fn stop(&self, run: &RunId, grace: std::time::Duration) -> Result<(), BackendError>;

    /// Stop anything of the job still running and remove everything it left in the backend
    /// (runs, containers, work directories). **Idempotent.** Says what was removed, and what
    /// could not be and why; an error means nothing could be looked at.
    async fn cleanup(&self, job: JobId) -> Result<CleanupReport, BackendError>;

    /// Every job that still has something in the backend, to find leftovers of jobs that are
    /// no longer live.
    async fn jobs(&self) -> Result<Vec<JobId>, BackendError>;

    /// Whether the backend can run work now (tools present, cluster reachable).
    async fn check(&self) -> Result<(), BackendError>;

    /// The digest the job's build pushed, as the build itself reported it (buildah's
    /// `--digestfile`), after the build run exited 0. This, not what the temp tag names
    /// afterwards, is the image tests run against and publish copies: a push to the temp tag
    /// in between must not substitute another image. `None` where the backend cannot tell;
    /// the engine then reads the registry's temp tag, the weaker answer.
    async fn built_digest(&self, job: JobId) -> Result<Option<crate::image::Digest>, BackendError> {
        let _ = job;
        Ok(None)
    }

    /// What the job's checkout holds (the committed Dockerfile at `dockerfile`, the
    /// repository's file names), for the diagnosis of a failed build; called before
    /// `cleanup`. `None` where the backend cannot look (it is only a better hint).
    async fn checkout(&self, job: JobId, dockerfile: &RelPath) -> Option<Checkout> {
        let _ = (job, dockerfile);
        None
    }
}
