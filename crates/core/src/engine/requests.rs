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
use crate::time::Timestamp;

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
        self.inner.ports.store.request_kill(id, &request).await?;
        // This instance may have taken the job over meanwhile.
        self.inner.requests.notify_one();
        let record =
            self.wait_until(id, ANSWER_WITHIN, |record| record.kill.is_some() || record.status.is_terminal()).await?;
        match record {
            Some(record) if record.kill.is_some() => Ok(record),
            Some(record) if record.status.is_terminal() => Err(KillError::Finished { id, status: record.status }),
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
    pub(super) async fn cleanup_elsewhere(&self, record: JobRecord) -> Result<Vec<String>, KillError> {
        let id = record.id;
        match self.kill_elsewhere(record, cleanup_request()).await {
            Ok(_) | Err(KillError::Finished { .. }) => {}
            Err(err) => return Err(err),
        }
        let limit = self.settings().kill_grace + ANSWER_WITHIN;
        match self.wait_until(id, limit, |record| record.status.is_terminal() && record.cleaned_up).await? {
            Some(record) if record.cleaned_up => {
                Ok(vec!["job stopped; its temp image and runs were removed by the instance driving it".into()])
            }
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
            version =
                self.job_changed(id, version, deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
            let record = self.get(id).await?;
            let finished = record.as_ref().is_none_or(&done);
            if finished || tokio::time::Instant::now() >= deadline {
                return Ok(record);
            }
        }
    }

    /// Wait until the record or logs of job `id` may have changed since `version` (0: at once)
    /// or `limit` passed: through its driver when it runs here, else through the store.
    pub async fn job_changed(&self, id: JobId, version: u64, limit: Duration) -> Result<u64, StoreError> {
        self.inner.ports.store.job_changed(id, version, limit).await
    }

    /// For as long as the service runs: hand each kill request left for a job driven here to
    /// its driver, and remove requests whose job has finished.
    pub(super) async fn forward_kill_requests(&self) {
        let store = self.inner.ports.store.clone();
        let mut version = 0;
        loop {
            let answer = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                // Jobs were taken over: look at the current requests again.
                _ = self.inner.requests.notified() => store.kill_requests(0, REQUESTS_WAIT).await,
                answer = store.kill_requests(version, REQUESTS_WAIT) => answer,
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
                Ok(record) => record.is_none_or(|record| record.status.is_terminal()),
                Err(_) => false,
            },
        };
        if outcome && let Err(err) = self.inner.ports.store.forget_kill_request(id).await {
            tracing::warn!(job_id = %id, error = %err, "cannot remove a kill request that was carried out");
        }
    }
}

fn cleanup_request() -> KillRequest {
    KillRequest { at: Timestamp::now(), by: None, reason: Some("cleanup requested".into()) }
}
