//! The [`Locks`] port: named locks held on behalf of jobs, tied to the life of this service.
//!
//! Two kinds are used: a job's *ownership* lock (which service instance drives it; with several
//! replicas, exactly one) and a *build* lock per image and branch (builds of the same image and
//! branch exclude each other). When the service dies, its locks are freed (by the lock store:
//! Consul does it when the service's session expires; the in-process implementation dies with
//! the process), so a surviving replica can take its jobs over.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::id::JobId;

/// The name of a lock: `owner/<job id>` or `build/<image and branch>-<hash>`; plain characters
/// only (letters, digits, `-`, `_`, `.`, `/`), so any lock store can use it as a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockKey(String);

impl LockKey {
    /// Which service instance drives `job`.
    pub fn owner(job: JobId) -> Self {
        LockKey(format!("owner/{job}"))
    }

    /// Builds of `image` on `registry` from branch or ref `git_ref` exclude each other.
    pub fn build(registry: &str, image: &str, git_ref: &str) -> Self {
        let readable: String = format!("{registry}-{image}-{git_ref}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
            .take(120)
            .collect();
        // The readable part may collide after the mapping; the hash of the exact text does not.
        let exact = format!("{registry}\n{image}\n{git_ref}");
        LockKey(format!("build/{readable}-{:016x}", crate::id::stable_hash(exact.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocksError {
    #[error("lock store unavailable: {0}")]
    Unavailable(String),
}

/// Named locks held for jobs by this service instance.
///
/// **Holders:** a lock is held by one job of one service instance; `try_lock` for a job that
/// already holds it succeeds again. **Life:** locks live as long as this instance's hold on the
/// lock store; [`Locks::lost`] says when that hold was lost (the instance's jobs may be driven
/// elsewhere from then on), after which new locks are taken under a new hold.
#[async_trait]
pub trait Locks: Send + Sync + 'static {
    /// Take `key` for `job` if nobody else holds it; `true` if `job` holds it now.
    async fn try_lock(&self, key: &LockKey, job: JobId) -> Result<bool, LocksError>;

    /// Give `key` back if `job` holds it (a no-op otherwise).
    async fn unlock(&self, key: &LockKey, job: JobId) -> Result<(), LocksError>;

    /// The job holding `key`, if any.
    async fn holder(&self, key: &LockKey) -> Result<Option<JobId>, LocksError>;

    /// Wait until some lock may have changed hands since `version` (0: answer at once), or
    /// `limit` passed; returns the version to wait on next.
    async fn changed(&self, version: u64, limit: Duration) -> Result<u64, LocksError>;

    /// Counts the times this instance lost its hold on the lock store (and with it every lock
    /// it held). Starts at 0.
    fn lost(&self) -> watch::Receiver<u64>;

    /// How long a lock freed by an instance that died may still be refused to everyone
    /// (Consul's lock-delay). No change wakes [`Locks::changed`] when it passes, so a caller
    /// refused a lock that has no holder tries again after this long.
    fn lock_delay(&self) -> Duration;
}
