//! Which jobs this instance drives: at start-up, every live job whose ownership lock it can
//! take; afterwards, whenever locks change hands (a replica died), the jobs left without a
//! driver. When this instance loses its locks, it stops its drivers before anything else.
//! Also the removal of backend leftovers that belong to no live job ("zombies").

use std::time::Duration;

use super::{Engine, Event};
use crate::id::JobId;
use crate::ports::{LockKey, StoreError};
use crate::record::JobRecord;

/// The longest a wait for lock changes lasts before the live jobs are looked at again.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(300);

/// What start-up found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Jobs whose drivers were resumed.
    pub resumed: Vec<JobId>,
    /// Backend leftovers of jobs that are not live, removed.
    pub removed: Vec<String>,
}

/// What one pass over the live jobs took, and whether a free lock was refused (lock-delay).
#[derive(Debug, Default)]
struct TakeOver {
    taken: Vec<JobId>,
    delayed: bool,
}

impl Engine {
    /// Take every live job no one drives (all of them, for a service alone on its store), then
    /// remove backend leftovers of jobs that are not live, then keep taking over jobs whose
    /// driver went away (another replica died) for as long as the service runs.
    pub async fn recover(&self) -> Result<Recovery, StoreError> {
        let mut recovery = Recovery { resumed: self.take_over().await?.taken, removed: Vec::new() };
        for id in &recovery.resumed {
            tracing::info!(job_id = %id, "resuming job");
        }
        recovery.removed = self.remove_orphans().await?;
        let engine = self.clone();
        tokio::spawn(async move { engine.keep_taking_over().await });
        let engine = self.clone();
        tokio::spawn(async move { engine.forward_kill_requests().await });
        Ok(recovery)
    }

    /// Drive `record` from `first` if its ownership lock can be had; whether it is driven here.
    pub(super) async fn take(&self, record: JobRecord, first: Event) -> bool {
        if self.is_driven_here(record.id) {
            return true;
        }
        match self.inner.ports.locks.try_lock(&LockKey::owner(record.id), record.id).await {
            Ok(true) => {
                self.spawn_driver(record, first);
                true
            }
            Ok(false) => false,
            Err(err) => {
                tracing::warn!(job_id = %record.id, error = %err, "cannot take a job's ownership lock");
                false
            }
        }
    }

    /// Drive every live job that has no driver and whose ownership lock is free.
    async fn take_over(&self) -> Result<TakeOver, StoreError> {
        let locks = &self.inner.ports.locks;
        let mut outcome = TakeOver::default();
        for record in self.inner.ports.records.live().await? {
            let id = record.id;
            if self.is_driven_here(id) {
                continue;
            }
            if self.take(record, Event::Resumed).await {
                outcome.taken.push(id);
            } else {
                // Refused although nobody holds it: the lock store keeps a dead holder's lock
                // for its lock-delay, and nothing will say when that is over.
                outcome.delayed |= matches!(locks.holder(&LockKey::owner(id)).await, Ok(None));
            }
        }
        Ok(outcome)
    }

    /// Whenever locks change hands, take over the jobs left without a driver; whenever this
    /// instance loses its locks, stop its drivers first (the jobs may be driven elsewhere now).
    /// A lock refused during its lock-delay is tried again once the delay is over.
    async fn keep_taking_over(&self) {
        let locks = self.inner.ports.locks.clone();
        let mut lost = locks.lost();
        let mut version = 0;
        let mut wait = TAKE_OVER_WAIT;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                changed = lost.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tracing::warn!("this instance lost its locks; stopping its drivers");
                    self.stop_drivers().await;
                }
                next = locks.changed(version, wait) => match next {
                    Ok(next) => version = next,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot watch the locks");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            }
            wait = match self.take_over().await {
                Ok(outcome) => {
                    if !outcome.taken.is_empty() {
                        tracing::info!(taken = ?outcome.taken, "took jobs over");
                        self.inner.requests.notify_one();
                    }
                    if outcome.delayed { locks.lock_delay() } else { TAKE_OVER_WAIT }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot list live jobs");
                    TAKE_OVER_WAIT
                }
            };
        }
    }

    /// Stop every driver at its next safe point and wait for them, leaving their runs going.
    async fn stop_drivers(&self) {
        let stopped = {
            let mut token = self.inner.hold.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *token, self.inner.shutdown.child_token())
        };
        stopped.cancel();
        let ids: Vec<JobId> = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        for id in ids {
            self.wait_for_driver(id).await;
        }
    }

    /// Stop and remove everything in the backend that belongs to no live job ("zombies"):
    /// runs of jobs that finished, were forgotten, or were never recorded. Returns what was
    /// removed.
    pub async fn remove_orphans(&self) -> Result<Vec<String>, StoreError> {
        let ports = &self.inner.ports;
        // List the backend first: a job submitted meanwhile is in the store by the time we read
        // it, so it is never mistaken for an orphan.
        let jobs = match ports.backend.jobs().await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(error = %err, "could not list backend leftovers");
                return Ok(Vec::new());
            }
        };
        let live: std::collections::HashSet<JobId> = ports.records.live().await?.iter().map(|r| r.id).collect();
        let mut removed = Vec::new();
        for job in jobs.into_iter().filter(|job| !live.contains(job) && !self.is_driven_here(*job)) {
            match ports.backend.cleanup(job).await {
                Ok(report) => removed.extend(report.lines().into_iter().map(|item| format!("{job}: {item}"))),
                Err(err) => tracing::warn!(job_id = %job, error = %err, "could not remove leftovers"),
            }
        }
        if !removed.is_empty() {
            tracing::info!(?removed, "removed leftovers of jobs that are not live");
        }
        Ok(removed)
    }
}
