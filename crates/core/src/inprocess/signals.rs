//! [`JobSignals`]: per-job change counters that a store bumps on every append, and that
//! readers wait on: the `JobFeed` of a store written only by this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::id::JobId;

/// One counter per job someone waits on; a job nobody watches costs nothing. Versions come
/// from one process-wide counter, so a job's counter made afresh is always past any version
/// handed out for it before: no wake-up is lost, some are early.
pub struct JobSignals {
    jobs: Mutex<HashMap<JobId, watch::Sender<u64>>>,
    epoch: AtomicU64,
}

impl Default for JobSignals {
    fn default() -> Self {
        JobSignals { jobs: Mutex::new(HashMap::new()), epoch: AtomicU64::new(1) }
    }
}

impl JobSignals {
    /// Job `job`'s journal or record changed: wake its waiters.
    pub fn bump(&self, job: JobId) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = jobs.get(&job) {
            sender.send_replace(epoch);
            if sender.receiver_count() == 0 {
                jobs.remove(&job);
            }
        }
    }

    /// Wait until `job` changed since `version` (0: answer at once), or `limit` passed;
    /// returns the version to wait on next.
    pub async fn changed(&self, job: JobId, version: u64, limit: Duration) -> u64 {
        let mut receiver = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let epoch = self.epoch.load(Ordering::SeqCst);
            jobs.entry(job).or_insert_with(|| watch::Sender::new(epoch)).subscribe()
        };
        let current = *receiver.borrow_and_update();
        if version == 0 || current != version {
            return current;
        }
        let _ = tokio::time::timeout(limit, receiver.changed()).await;
        *receiver.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bump_wakes_a_waiter_and_others_time_out() {
        let signals = std::sync::Arc::new(JobSignals::default());
        let (job, other) = (JobId::new(), JobId::new());
        let version = signals.changed(job, 0, Duration::ZERO).await;
        let waiter = tokio::spawn({
            let signals = signals.clone();
            async move { signals.changed(job, version, Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        signals.bump(other);
        signals.bump(job);
        let woken = waiter.await.unwrap();
        assert!(woken > version, "the bump woke the waiter");
        let idle = signals.changed(other, 0, Duration::ZERO).await;
        assert_eq!(signals.changed(other, idle, Duration::from_secs(1)).await, idle, "no bump since: the limit passes");
    }
}
