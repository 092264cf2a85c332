//! The [`LogArchive`] port: each job's journal, its log lines and events in one sequence.

use async_trait::async_trait;

use crate::id::{JobId, RunId};
use crate::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, NewLogLine, RunCursor};
use crate::status::Phase;

use super::StoreError;

/// Keeps each job's journal: the lines its runs produced and the engine wrote, and its events,
/// numbered by one per-job sequence (`seq`, from 1, without gaps) in the order they were
/// appended.
///
/// **Idempotence:** an entry whose [`crate::logs::Origin`] is already archived is skipped and
/// takes no number, so replaying a run's output, or the engine's entries after a crash, stores
/// each once. **Writers:** one per job at a time (its driver and that driver's log pumps).
/// Appending to a job that has no record is [`StoreError::NotFound`]. **Readers** see an
/// append whole or not at all. Waiting for new entries is [`super::JobFeed`]'s part.
#[async_trait]
pub trait LogArchive: Send + Sync + 'static {
    /// Archive `entries` in order; returns the job's highest sequence number afterwards.
    async fn append(&self, job: JobId, entries: &[NewEntry]) -> Result<u64, StoreError>;

    /// Archive lines (see [`LogArchive::append`]).
    async fn append_logs(&self, job: JobId, lines: &[NewLogLine]) -> Result<u64, StoreError> {
        let entries: Vec<NewEntry> = lines.iter().cloned().map(NewEntry::Line).collect();
        self.append(job, &entries).await
    }

    /// Where following `run` resumes: the highest line archived in each of its `sequences`
    /// line sequences (see `ports::Backend`).
    async fn cursor(&self, job: JobId, run: &RunId, sequences: u64) -> Result<RunCursor, StoreError>;

    /// Archived lines matching `query`, in sequence order (events left out).
    async fn logs(&self, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError>;

    /// The last `n` lines of a phase (of one test, for `test: Some`), in order.
    async fn tail(&self, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Result<Vec<LogLine>, StoreError>;

    /// Lines and events after `query.after`, in sequence order: every event, and the lines
    /// of `query.phase` (all lines if `None`).
    async fn entries(&self, job: JobId, query: &EntryQuery) -> Result<Vec<Entry>, StoreError>;
}
