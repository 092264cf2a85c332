//! [`ProcessLocks`]: the `Locks` port inside one process, for a service that is alone on its
//! store (SQLite). Its locks die with the process, which is what a restart needs: the service
//! that comes back takes its jobs again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::id::JobId;
use crate::ports::{LockKey, Locks, LocksError};

/// Locks in memory; a change bumps a version that waiters watch.
pub struct ProcessLocks {
    held: Mutex<HashMap<LockKey, JobId>>,
    version: watch::Sender<u64>,
    lost: watch::Sender<u64>,
}

impl Default for ProcessLocks {
    fn default() -> Self {
        ProcessLocks { held: Mutex::new(HashMap::new()), version: watch::Sender::new(1), lost: watch::Sender::new(0) }
    }
}

impl ProcessLocks {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<LockKey, JobId>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Locks for ProcessLocks {
    async fn try_lock(&self, key: &LockKey, job: JobId) -> Result<bool, LocksError> {
        let mut held = self.held();
        match held.get(key) {
            Some(holder) => Ok(*holder == job),
            None => {
                held.insert(key.clone(), job);
                self.version.send_modify(|v| *v += 1);
                Ok(true)
            }
        }
    }

    async fn unlock(&self, key: &LockKey, job: JobId) -> Result<(), LocksError> {
        let mut held = self.held();
        if held.get(key) == Some(&job) {
            held.remove(key);
            self.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    async fn holder(&self, key: &LockKey) -> Result<Option<JobId>, LocksError> {
        Ok(self.held().get(key).copied())
    }

    async fn changed(&self, version: u64, limit: Duration) -> Result<u64, LocksError> {
        let mut watcher = self.version.subscribe();
        if version != 0 && *watcher.borrow() == version {
            let _ = tokio::time::timeout(limit, watcher.changed()).await;
        }
        Ok(*watcher.borrow())
    }

    fn lost(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }

    /// Locks here die with the process; a free one is free at once.
    fn lock_delay(&self) -> Duration {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_waiters_wake_on_release() {
        let locks = ProcessLocks::default();
        let key = LockKey::build("r:5000", "team/app", "main");
        let (a, b) = (JobId::new(), JobId::new());
        assert!(locks.try_lock(&key, a).await.unwrap());
        assert!(locks.try_lock(&key, a).await.unwrap(), "the holder may take it again");
        assert!(!locks.try_lock(&key, b).await.unwrap());
        assert_eq!(locks.holder(&key).await.unwrap(), Some(a));
        let version = locks.changed(0, Duration::ZERO).await.unwrap();
        let waiter = locks.changed(version, Duration::from_secs(60));
        locks.unlock(&key, b).await.unwrap();
        locks.unlock(&key, a).await.unwrap();
        assert!(waiter.await.unwrap() > version, "the release woke the waiter");
        assert!(locks.try_lock(&key, b).await.unwrap());
    }

    #[test]
    fn build_keys_are_plain_and_distinct() {
        let a = LockKey::build("reg:5000", "team/app", "feature/x");
        let b = LockKey::build("reg:5000", "team/app", "feature-x");
        assert_ne!(a, b, "the same readable part, different refs");
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c)), "{a}");
        assert_eq!(a, LockKey::build("reg:5000", "team/app", "feature/x"));
    }
}
