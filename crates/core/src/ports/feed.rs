//! The [`JobFeed`] port: waiting for a job's journal to grow.

use std::time::Duration;

use async_trait::async_trait;

use crate::id::JobId;

use super::StoreError;

/// Says when a job's journal may have grown, to readers anywhere (on the replica driving the
/// job or another one).
///
/// **Blocking:** an adapter waits on what its store offers (an in-process notification for a
/// store written only by this process, blocking queries for Consul); it never sleeps and
/// guesses. **Versions** are the adapter's own: 0 answers at once with the current version;
/// any other value waits until the journal changed since that version, or `limit` passed, and
/// returns the version to wait on next. An answer may be early (nothing new): the reader reads
/// after its cursor and waits again. Every change of a record that a reader can see comes with
/// an event in the journal, so waiting here is all a reader needs.
#[async_trait]
pub trait JobFeed: Send + Sync + 'static {
    async fn changed(&self, job: JobId, version: u64, limit: Duration) -> Result<u64, StoreError>;
}
