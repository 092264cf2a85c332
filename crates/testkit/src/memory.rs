//! In-memory ports, for driving the engine through its ports in tests and in the crash
//! simulation: a store ([`MemoryStore`]: records, journals, feed, mailbox), a backend whose runs
//! are scripted by the job's own input ([`MemoryBackend`]), a registry ([`MemoryRegistry`]),
//! locks shared by several instances that can die or lose their hold ([`MemoryLocks`]), a
//! clock that follows `tokio::time` ([`TokioClock`]), and secrets ([`MemorySecrets`]).
//!
//! Everything is deterministic on a current-thread runtime with paused time: ordered maps, no
//! threads, no wall clock. Each adapter passes the conformance suite of its port, so what the
//! simulation shows of the engine holds with the real adapters. [`gate`] wraps a set of ports
//! to crash an engine at a chosen point.

mod backend;
pub mod gate;
mod locks;
mod registry;
mod store;

pub use backend::{MemoryBackend, Script};
pub use locks::{LockTable, MemoryLocks};
pub use registry::MemoryRegistry;
pub use store::MemoryStore;

use async_trait::async_trait;

use jobforge_core::ports::{Clock, Secrets, SecretsError};
use jobforge_core::secret::{SecretData, SecretPath};
use jobforge_core::time::Timestamp;

/// Wall-clock time that moves with `tokio::time`: paused tests see both advance together.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `base` now.
    pub fn starting_at(base: Timestamp) -> Self {
        TokioClock { base, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let at = self.base.add(self.start.elapsed());
        Timestamp::from_unix_millis(at.unix_millis()).unwrap_or(at)
    }
}

/// No secrets: every path is missing. Enough for jobs that name none.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemorySecrets;

#[async_trait]
impl Secrets for MemorySecrets {
    async fn read(&self, path: &SecretPath) -> Result<SecretData, SecretsError> {
        Err(SecretsError::NotFound(path.clone()))
    }

    async fn exists(&self, _path: &SecretPath) -> Result<bool, SecretsError> {
        Ok(false)
    }

    async fn check(&self) -> Result<(), SecretsError> {
        Ok(())
    }
}
