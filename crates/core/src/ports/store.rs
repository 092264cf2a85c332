//! The [`Store`] port: job records and the log archive.

use async_trait::async_trait;

use crate::id::{JobId, RunId};
use crate::logs::{LogLine, LogQuery, NewLogLine};
use crate::record::{JobRecord, KillRequest};
use crate::status::Phase;

/// One page of history, newest first.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub jobs: Vec<JobRecord>,
    /// All jobs in the store, not just this page.
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} already exists")]
    Duplicate(JobId),
    #[error("job {0} does not exist")]
    NotFound(JobId),
    /// The record changed since this writer last saw it: another replica now drives the job.
    #[error("job {0} was changed by another writer")]
    Conflict(JobId),
    #[error("stored record of job {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Keeps job records and their logs.
///
/// **Writers:** each record has one writer, the engine's driver for that job. A store shared by
/// several replicas checks that the record did not change since this writer last wrote or read
/// it, and answers [`StoreError::Conflict`] otherwise: the job is driven elsewhere now.
/// **Durability:** a call that returns `Ok` has been persisted (at least against a crash of
/// the service); the engine relies on that before every side effect. A dropped call may still
/// complete. Appending lines to a job that does not exist is [`StoreError::NotFound`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn insert(&self, record: &JobRecord) -> Result<(), StoreError>;

    /// Replace the stored record of `record.id`.
    async fn update(&self, record: &JobRecord) -> Result<(), StoreError>;

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// History, newest first.
    async fn list(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError>;

    /// Every job that is not finished or not yet cleaned up ([`JobRecord::is_live`]).
    async fn live(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// Archive lines, giving each the next sequence number of its job. A line whose origin
    /// (run, n) is already archived is skipped, so replaying a run's output is harmless.
    /// Returns the highest sequence number of the job afterwards.
    async fn append_logs(&self, job: JobId, lines: &[NewLogLine]) -> Result<u64, StoreError>;

    /// The highest line number archived for `run` (0 if none), to resume following it.
    async fn last_line(&self, job: JobId, run: &RunId) -> Result<u64, StoreError>;

    /// Archived lines matching `query`, in sequence order.
    async fn logs(&self, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError>;

    /// The last `n` lines of a phase (of one test, for `test: Some`), in order.
    async fn tail(&self, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Result<Vec<LogLine>, StoreError>;

    async fn check(&self) -> Result<(), StoreError>;

    // Requests and change signals between replicas. A store used by one service instance only
    // keeps the defaults: there every live job is driven by that instance, which learns of
    // changes from its own drivers.

    /// Leave a kill request for the instance that drives job `id` (another replica).
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError> {
        let _ = request;
        Err(StoreError::Unavailable(format!("job {id} has no driver here, and this store reaches no other instance")))
    }

    /// Kill requests left for jobs: the current ones once the store changed since `version`
    /// (0: at once), or none after `limit`. Returns the version to wait on next.
    async fn kill_requests(
        &self,
        version: u64,
        limit: std::time::Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError> {
        tokio::time::sleep(limit).await;
        Ok((version, Vec::new()))
    }

    /// Remove the kill request of job `id` (carried out, or no longer needed).
    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// Wait until the record or the logs of job `id` may have changed since `version` (0: answer
    /// at once), or `limit` passed; returns the version to wait on next. For readers on an
    /// instance that does not drive the job. The default can only wait a little and say "maybe".
    async fn job_changed(&self, id: JobId, version: u64, limit: std::time::Duration) -> Result<u64, StoreError> {
        let _ = id;
        if version > 0 {
            tokio::time::sleep(limit.min(std::time::Duration::from_millis(200))).await;
        }
        Ok(version + 1)
    }
}
