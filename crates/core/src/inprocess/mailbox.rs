//! [`ProcessMailbox`]: the `Mailbox` port inside one process. With one instance on a store,
//! every live job is driven here; a request can only wait for a driver that is about to start
//! (a job between two drivers), and dies with the process like the drivers do.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::id::JobId;
use crate::ports::{Mailbox, StoreError};
use crate::record::KillRequest;

pub struct ProcessMailbox {
    requests: Mutex<BTreeMap<JobId, KillRequest>>,
    version: watch::Sender<u64>,
}

impl Default for ProcessMailbox {
    fn default() -> Self {
        ProcessMailbox { requests: Mutex::new(BTreeMap::new()), version: watch::Sender::new(1) }
    }
}

impl ProcessMailbox {
    fn requests(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, KillRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Mailbox for ProcessMailbox {
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError> {
        self.requests().insert(id, request.clone());
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn kill_requests(
        &self,
        version: u64,
        limit: Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError> {
        let mut watcher = self.version.subscribe();
        if version != 0 && *watcher.borrow_and_update() == version {
            let _ = tokio::time::timeout(limit, watcher.changed()).await;
        }
        let now = *watcher.borrow();
        let requests = self.requests().iter().map(|(id, request)| (*id, request.clone())).collect();
        Ok((now, requests))
    }

    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError> {
        if self.requests().remove(&id).is_some() {
            self.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }
}
