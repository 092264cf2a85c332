//! Requests for jobs driven by another replica.
//!
//! A kill or cleanup may reach any replica, but only the job's driver writes its record. A
//! replica that does not drive the job leaves a kill request in the store and waits until the
//! record shows it; every replica forwards the requests left for the jobs it drives to their
//! drivers and then removes them. This module must not write records itself.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{Command, Engine, KillError};
use crate::id::JobId;
use crate::ports::StoreError;
use crate::record::{JobRecord, KillRequest};
use crate::state::CleanupReport;

/// How long a replica waits for the one driving a job to act on a request.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How long a blocking wait for new requests lasts before it is renewed.
const REQUESTS_WAIT: Duration = Duration::from_secs(60);

impl Engine {
    /// Leave a kill request for the replica driving `record`, and wait until it is persisted
    /// (or the job has finished anyway).
    pub(super) async fn kill_elsewhere(&self, record: JobRecord, request: KillRequest) -> Result<JobRecord, KillError> {
        let id = record.id;
        tracing::info!(job_id = %id, "the job is driven elsewhere; leaving a kill request for its driver");
        self.inner.ports.mailbox.request_kill(id, &request).await?;
        // This instance may have taken the job over meanwhile.
        self.inner.requests.notify_one();
        let record =
            self.wait_until(id, ANSWER_WITHIN, |record| record.kill().is_some() || record.outcome().is_some()).await?;
        match record {
            Some(record) if record.kill().is_some() => Ok(record),
            Some(record) if record.outcome().is_some() => Err(KillError::Finished { id, status: record.status() }),
            Some(_) => Err(KillError::Unanswered(format!(
                "job {id} is driven by another instance, which did not take the kill within {}s; the request stays \
                 and is carried out when it (or an instance taking the job over) gets to it",
                ANSWER_WITHIN.as_secs()
            ))),
            None => Err(KillError::NotFound(id)),
        }
    }

    /// Kill a job driven by another replica and wait until that replica has removed what it
    /// left behind.
    pub(super) async fn cleanup_elsewhere(&self, record: JobRecord) -> Result<CleanupReport, KillError> {
        let id = record.id;
        let request =
            KillRequest { at: self.inner.ports.clock.now(), by: None, reason: Some("cleanup requested".into()) };
        match self.kill_elsewhere(record, request).await {
            Ok(_) | Err(KillError::Finished { .. }) => {}
            Err(err) => return Err(err),
        }
        let limit = self.settings().kill_grace + ANSWER_WITHIN;
        match self.wait_until(id, limit, |record| record.state.is_ended()).await? {
            Some(record) if record.state.is_ended() => Ok(record.state.cleanup().cloned().unwrap_or_default()),
            Some(_) => Err(KillError::Unanswered(format!(
                "job {id} is being stopped by the instance driving it, which had not removed its leftovers \
                 within {}s; ask again later",
                limit.as_secs()
            ))),
            None => Err(KillError::NotFound(id)),
        }
    }

    /// The record of `id` once `done` holds for it, or as it is after `limit`.
    async fn wait_until(
        &self,
        id: JobId,
        limit: Duration,
        done: impl Fn(&JobRecord) -> bool,
    ) -> Result<Option<JobRecord>, StoreError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut version = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            version = self.journal_changed(id, version, left).await?;
            let record = self.get(id).await?;
            let finished = record.as_ref().is_none_or(&done);
            if finished || tokio::time::Instant::now() >= deadline {
                return Ok(record);
            }
        }
    }

    /// For as long as the service runs: hand each kill request left for a job driven here to
    /// its driver, and remove requests whose job has finished.
    pub(super) async fn forward_kill_requests(&self) {
        let mailbox = self.inner.ports.mailbox.clone();
        let mut version = 0;
        loop {
            let answer = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                // Jobs were taken over: look at the current requests again.
                _ = self.inner.requests.notified() => mailbox.kill_requests(0, REQUESTS_WAIT).await,
                answer = mailbox.kill_requests(version, REQUESTS_WAIT) => answer,
            };
            match answer {
                Ok((next, requests)) => {
                    version = next;
                    for (id, request) in requests {
                        self.deliver(id, request).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read kill requests");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Hand one request to the job's driver if it runs here; drop it once it is carried out
    /// or moot. Requests for jobs driven elsewhere are left to that replica.
    async fn deliver(&self, id: JobId, request: KillRequest) {
        let outcome = match self.commands(id) {
            Some(commands) => {
                let (reply, answer) = oneshot::channel();
                if commands.send(Command::Kill { request, reply }).await.is_err() {
                    return;
                }
                match answer.await {
                    Ok(Ok(_) | Err(KillError::Finished { .. })) => true,
                    Ok(Err(err)) => {
                        tracing::warn!(job_id = %id, error = %err, "a forwarded kill failed; it stays requested");
                        false
                    }
                    Err(_) => false,
                }
            }
            None => match self.get(id).await {
                Ok(record) => record.is_none_or(|record| record.outcome().is_some()),
                Err(_) => false,
            },
        };
        if outcome && let Err(err) = self.inner.ports.mailbox.forget_kill_request(id).await {
            tracing::warn!(job_id = %id, error = %err, "cannot remove a kill request that was carried out");
        }
    }
}
