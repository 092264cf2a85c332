//! The [`JobRecords`] port: one record per job, written by the job's driver only.

use async_trait::async_trait;

use crate::id::JobId;
use crate::record::JobRecord;

/// One page of history, newest first.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub jobs: Vec<JobRecord>,
    /// All jobs in the store, not just this page.
    pub total: u64,
}

/// Why a call on a store port failed. Shared by [`JobRecords`], [`super::LogArchive`],
/// [`super::JobFeed`] and [`super::Mailbox`], which one adapter often implements together.
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
    /// The record is larger than the store keeps in one value: writing it again cannot help.
    #[error("the record of job {id} is {bytes} bytes, more than the store keeps ({limit})")]
    TooLarge { id: JobId, bytes: usize, limit: usize },
}

/// Keeps job records.
///
/// **Writers:** each record has one writer, the engine's driver for that job. A store shared by
/// several replicas checks that the record did not change since this writer last wrote or read
/// it, and answers [`StoreError::Conflict`] otherwise: the job is driven elsewhere now, and the
/// driver stops without acting further.
/// **Durability:** a call that returns `Ok` has been persisted (at least against a crash of
/// the service); the engine relies on that before every side effect. A dropped call may still
/// complete.
/// **Reads** are validated as submissions are: a record whose fields break the job rules
/// (a stored `git_ref` of `-x`, say) is [`StoreError::Corrupt`], never handed to the engine.
#[async_trait]
pub trait JobRecords: Send + Sync + 'static {
    /// The largest record the store keeps in one value (bytes of its JSON), if it has a limit.
    /// Jobs are refused at submission when they could not fit once they have results.
    fn value_limit(&self) -> Option<usize> {
        None
    }

    /// Store a new job; [`StoreError::Duplicate`] if its id is taken.
    async fn insert(&self, record: &JobRecord) -> Result<(), StoreError>;

    /// Replace the stored record of `record.id`; [`StoreError::NotFound`] if there is none.
    async fn update(&self, record: &JobRecord) -> Result<(), StoreError>;

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// History, newest first.
    async fn list(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError>;

    /// Every job the engine must still drive ([`JobRecord::is_live`]), oldest first.
    async fn live(&self) -> Result<Vec<JobRecord>, StoreError>;

    async fn check(&self) -> Result<(), StoreError>;
}
