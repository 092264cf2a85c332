//! The [`Mailbox`] port: requests for a job, left for whichever replica drives it.

use std::time::Duration;

use async_trait::async_trait;

use crate::id::JobId;
use crate::record::KillRequest;

use super::StoreError;

/// Carries kill requests to the instance that drives a job, wherever the request arrived. Only
/// a job's driver writes its record, so a replica that does not drive the job leaves its
/// request here; each instance hands the requests for jobs it drives to their drivers and then
/// removes them.
///
/// **At least once:** a request stays until removed, so a driver that dies with it unread
/// leaves it for the next one; carrying a kill out twice is harmless (the first one stands).
/// **Versions** work as in [`super::JobFeed`]: 0 answers at once, others wait for a change or
/// `limit`. One request per job: a new one replaces the old.
#[async_trait]
pub trait Mailbox: Send + Sync + 'static {
    /// Leave a kill request for the driver of job `id`.
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError>;

    /// The requests now, once the mailbox changed since `version` (0: at once), or none after
    /// `limit`. Returns the version to wait on next.
    async fn kill_requests(
        &self,
        version: u64,
        limit: Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError>;

    /// Remove the request of job `id` (carried out, or moot). **Idempotent.**
    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError>;
}
