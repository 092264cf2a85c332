//! [`MemoryLocks`]: one [`LockTable`] shared by several instances, each with its own handle,
//! as replicas share Consul. An instance can [`MemoryLocks::die`] (its locks are freed, as when
//! a session expires) or [`MemoryLocks::lose`] its hold while alive (freed, and announced
//! through `Locks::lost`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use jobforge_core::JobId;
use jobforge_core::ports::{LockKey, Locks, LocksError};

/// The locks of every instance.
pub struct LockTable {
    held: Mutex<BTreeMap<LockKey, (u64, JobId)>>,
    version: watch::Sender<u64>,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable { held: Mutex::new(BTreeMap::new()), version: watch::Sender::new(1) }
    }
}

impl LockTable {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<LockKey, (u64, JobId)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Every lock held, and by which instance, for tests to check.
    pub fn holders(&self) -> Vec<(LockKey, u64, JobId)> {
        self.held().iter().map(|(key, (instance, job))| (key.clone(), *instance, *job)).collect()
    }
}

/// One instance's hold on the table.
#[derive(Clone)]
pub struct MemoryLocks {
    table: Arc<LockTable>,
    instance: u64,
    lost: Arc<watch::Sender<u64>>,
}

impl MemoryLocks {
    pub fn new(table: Arc<LockTable>, instance: u64) -> Self {
        MemoryLocks { table, instance, lost: Arc::new(watch::Sender::new(0)) }
    }

    /// The instance is gone: its locks are free.
    pub fn die(&self) {
        let freed = {
            let mut held = self.table.held();
            let before = held.len();
            held.retain(|_, (instance, _)| *instance != self.instance);
            before != held.len()
        };
        if freed {
            self.table.changed();
        }
    }

    /// The instance lost its hold while alive: its locks are free, and it is told so.
    pub fn lose(&self) {
        self.die();
        self.lost.send_modify(|n| *n += 1);
    }
}

#[async_trait]
impl Locks for MemoryLocks {
    async fn try_lock(&self, key: &LockKey, job: JobId) -> Result<bool, LocksError> {
        let mut held = self.table.held();
        match held.get(key) {
            Some(holder) => Ok(*holder == (self.instance, job)),
            None => {
                held.insert(key.clone(), (self.instance, job));
                drop(held);
                self.table.changed();
                Ok(true)
            }
        }
    }

    async fn unlock(&self, key: &LockKey, job: JobId) -> Result<(), LocksError> {
        let mut held = self.table.held();
        if held.get(key) == Some(&(self.instance, job)) {
            held.remove(key);
            drop(held);
            self.table.changed();
        }
        Ok(())
    }

    async fn holder(&self, key: &LockKey) -> Result<Option<JobId>, LocksError> {
        Ok(self.table.held().get(key).map(|(_, job)| *job))
    }

    async fn changed(&self, version: u64, limit: Duration) -> Result<u64, LocksError> {
        let mut watcher = self.table.version.subscribe();
        if version != 0 && *watcher.borrow_and_update() == version {
            let _ = tokio::time::timeout(limit, watcher.changed()).await;
        }
        Ok(*watcher.borrow())
    }

    fn lost(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }

    fn lock_delay(&self) -> Duration {
        Duration::ZERO
    }
}
