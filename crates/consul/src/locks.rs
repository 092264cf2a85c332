//! [`ConsulLocks`]: the `Locks` port on Consul sessions, for replicas sharing one Consul.
//!
//! Each service instance holds one session (TTL, renewed in the background) and takes every
//! lock with it at `<prefix>/locks/<lock key>`; the value names the job and the instance. If
//! the instance dies its session expires and Consul frees its locks, so another replica can
//! take its jobs over. If the session is lost while the instance lives (a long network cut),
//! a new one is made and [`Locks::lost`] tells the engine to stop the drivers it had.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock, watch};
use tokio_util::sync::CancellationToken;

use jobforge_core::JobId;
use jobforge_core::ports::{LockKey, Locks, LocksError};

use crate::client::{Blocking, ConsulClient, ConsulError, SessionRequest};

/// Settings of the locks.
#[derive(Clone, Debug)]
pub struct ConsulLocksConfig {
    pub prefix: String,
    /// Names this instance in lock values and in its session.
    pub instance: String,
    /// Consul frees the locks of an instance this long after it stopped renewing (Consul may
    /// take up to twice as long).
    pub ttl: Duration,
    /// How long a lock freed by an ended session stays un-acquirable (Consul's lock-delay).
    pub lock_delay: Duration,
    /// Where the session ID is kept, so this instance, restarted, takes its session (and its
    /// locks) back at once instead of waiting for the old session to expire.
    pub session_file: Option<std::path::PathBuf>,
}

impl Default for ConsulLocksConfig {
    fn default() -> Self {
        ConsulLocksConfig {
            prefix: "jobforge-service".into(),
            instance: "jobforge".into(),
            ttl: Duration::from_secs(15),
            lock_delay: Duration::from_secs(5),
            session_file: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Holder {
    job: JobId,
    instance: String,
}

/// Locks held through this instance's Consul session.
#[derive(Clone)]
pub struct ConsulLocks {
    client: ConsulClient,
    config: Arc<ConsulLocksConfig>,
    session: Arc<RwLock<String>>,
    lost: watch::Sender<u64>,
    /// Two jobs of this instance share its session: Consul cannot tell them apart, we must.
    local: Arc<Mutex<()>>,
}

impl ConsulLocks {
    /// Make this instance's session and keep it alive until `shutdown`, then destroy it (so
    /// other replicas need not wait for the TTL).
    pub async fn start(
        client: ConsulClient,
        config: ConsulLocksConfig,
        shutdown: CancellationToken,
    ) -> Result<ConsulLocks, ConsulError> {
        let session = match resume_session(&client, &config).await {
            Some(session) => {
                tracing::info!(session = %session, "resumed this instance's Consul session and its locks");
                session
            }
            None => {
                let session = create_session(&client, &config).await?;
                remember_session(&config, Some(&session));
                tracing::info!(session = %session, instance = %config.instance, "holding a Consul session");
                session
            }
        };
        let locks = ConsulLocks {
            client,
            config: Arc::new(config),
            session: Arc::new(RwLock::new(session)),
            lost: watch::Sender::new(0),
            local: Arc::new(Mutex::new(())),
        };
        tokio::spawn(locks.clone().keep_alive(shutdown));
        Ok(locks)
    }

    fn key(&self, key: &LockKey) -> String {
        format!("{}/locks/{key}", self.config.prefix)
    }

    /// Renew every third of the TTL; a session Consul no longer knows is replaced and the loss
    /// announced. On shutdown, destroy it.
    async fn keep_alive(self, shutdown: CancellationToken) {
        let period = self.config.ttl / 3;
        let mut unrenewed_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let session = self.session.read().await.clone();
                    if let Err(error) = self.client.destroy_session(&session).await {
                        tracing::warn!(%error, "cannot destroy the Consul session; its locks expire with it");
                    }
                    remember_session(&self.config, None);
                    return;
                }
                _ = tokio::time::sleep(period) => {}
            }
            let session = self.session.read().await.clone();
            match self.client.renew_session(&session).await {
                Ok(Some(_)) => unrenewed_since = tokio::time::Instant::now(),
                Ok(None) => self.replace_session("Consul no longer knows the session").await,
                Err(error) if unrenewed_since.elapsed() >= self.config.ttl => {
                    tracing::warn!(%error, "cannot renew the Consul session within its TTL");
                    self.replace_session("the session could not be renewed in time").await;
                    unrenewed_since = tokio::time::Instant::now();
                }
                Err(error) => tracing::warn!(%error, "cannot renew the Consul session; retrying"),
            }
        }
    }

    async fn replace_session(&self, why: &str) {
        match create_session(&self.client, &self.config).await {
            Ok(session) => {
                tracing::warn!(reason = why, session = %session, "lost the Consul session and its locks; holding a new one");
                remember_session(&self.config, Some(&session));
                *self.session.write().await = session;
                self.lost.send_modify(|n| *n += 1);
            }
            Err(error) => tracing::error!(%error, "cannot make a new Consul session"),
        }
    }
}

/// The session this instance held before a restart, if Consul still has it.
async fn resume_session(client: &ConsulClient, config: &ConsulLocksConfig) -> Option<String> {
    let id = std::fs::read_to_string(config.session_file.as_ref()?).ok()?.trim().to_owned();
    match client.renew_session(&id).await {
        Ok(Some(_)) => Some(id),
        _ => None,
    }
}

fn remember_session(config: &ConsulLocksConfig, session: Option<&str>) {
    let Some(path) = &config.session_file else { return };
    let result = match session {
        Some(session) => std::fs::write(path, session),
        None => std::fs::remove_file(path),
    };
    if let Err(error) = result {
        tracing::debug!(%error, path = %path.display(), "cannot record the Consul session");
    }
}

async fn create_session(client: &ConsulClient, config: &ConsulLocksConfig) -> Result<String, ConsulError> {
    client
        .create_session(&SessionRequest {
            name: format!("jobforge {}", config.instance),
            ttl: format!("{}s", config.ttl.as_secs().max(1)),
            behavior: "release".into(),
            lock_delay: format!("{}ms", config.lock_delay.as_millis()),
            node_checks: Vec::new(),
        })
        .await
}

fn unavailable(error: ConsulError) -> LocksError {
    LocksError::Unavailable(error.to_string())
}

#[async_trait]
impl Locks for ConsulLocks {
    async fn try_lock(&self, key: &LockKey, job: JobId) -> Result<bool, LocksError> {
        let _local = self.local.lock().await;
        let session = self.session.read().await.clone();
        let path = self.key(key);
        let (entry, _) = self.client.get(&path, None).await.map_err(unavailable)?;
        if let Some(entry) = &entry
            && entry.session.as_deref() == Some(session.as_str())
        {
            // Ours already: held by this job, or by another job of this instance.
            let holder: Option<Holder> = serde_json::from_slice(&entry.value).ok();
            return Ok(holder.is_some_and(|h| h.job == job));
        }
        let value = serde_json::to_vec(&Holder { job, instance: self.config.instance.clone() })
            .map_err(|e| LocksError::Unavailable(e.to_string()))?;
        self.client.acquire(&path, &value, &session).await.map_err(unavailable)
    }

    async fn unlock(&self, key: &LockKey, job: JobId) -> Result<(), LocksError> {
        let _local = self.local.lock().await;
        let session = self.session.read().await.clone();
        let path = self.key(key);
        let (entry, _) = self.client.get(&path, None).await.map_err(unavailable)?;
        let Some(entry) = entry else { return Ok(()) };
        let holder: Option<Holder> = serde_json::from_slice(&entry.value).ok();
        if entry.session.as_deref() == Some(session.as_str()) && holder.is_some_and(|h| h.job == job) {
            // Deleting frees the lock and leaves no key behind for a finished job.
            self.client.delete(&path, Some(entry.modify_index)).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn holder(&self, key: &LockKey) -> Result<Option<JobId>, LocksError> {
        let (entry, _) = self.client.get(&self.key(key), None).await.map_err(unavailable)?;
        Ok(entry
            .filter(|e| e.session.is_some())
            .and_then(|e| serde_json::from_slice::<Holder>(&e.value).ok())
            .map(|h| h.job))
    }

    async fn changed(&self, version: u64, limit: Duration) -> Result<u64, LocksError> {
        let prefix = format!("{}/locks/", self.config.prefix);
        let blocking = (version > 0).then_some(Blocking { index: version, wait: limit });
        let (_, meta) = self.client.list(&prefix, blocking).await.map_err(unavailable)?;
        let mut next = Blocking { index: version, wait: limit };
        next.advance(meta.index);
        Ok(next.index)
    }

    fn lost(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }

    /// The session's lock-delay, and a little more: Consul counts it from the invalidation,
    /// which a waiter hears of a moment later.
    fn lock_delay(&self) -> Duration {
        self.config.lock_delay + Duration::from_millis(100)
    }
}
