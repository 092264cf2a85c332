//! Why an engine call was refused or could not be carried out.

use crate::id::JobId;
use crate::ports::{SecretsError, StoreError};
use crate::status::JobStatus;
use crate::validate::Problem;

/// A submission the engine refused; the caller's mistake, not the service's.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Fields this deployment cannot honour (HTTP 422).
    #[error("the job asks for what this server cannot do")]
    Unsupported(Vec<Problem>),
    /// Secret paths that do not exist (HTTP 422).
    #[error("the job names secrets that do not exist")]
    MissingSecrets(Vec<Problem>),
    /// Secrets the job would send to a host they do not name (HTTP 422).
    #[error("the job would send secrets to hosts they may not go to")]
    MisplacedSecrets(Vec<Problem>),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a kill (or a cleanup, which kills a running job first) was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("job {0} does not exist")]
    NotFound(JobId),
    #[error("job {id} already finished with status {status}")]
    Finished { id: JobId, status: JobStatus },
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The job is driven by another replica, which did not act on the request in time. The
    /// request stays: it is carried out when that replica, or the one taking over, gets to it.
    #[error("{0}")]
    Unanswered(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
