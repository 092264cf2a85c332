//! Crashing an engine at a chosen point: [`gated`] wraps a set of ports so that every call an
//! engine makes through them passes a [`Gate`]. Calls with a side effect (a record written,
//! journal entries appended, a run started or stopped, a cleanup, an image deleted, a lock
//! taken or given back) are *crash points*, numbered in the order the engine makes them. A gate
//! with a [`CrashAt`] kills the engine at that point, before the call or after it: from then on
//! no call through the gate returns, as if the process were gone, and [`Gate::crashed`] says so.
//! Reads and waits are not points (a crash before a read is a crash before the next write), but
//! they never return on a dead gate either.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use jobforge_core::JobId;
use jobforge_core::config::JobSpec;
use jobforge_core::engine::Ports;
use jobforge_core::image::{Digest, ImageRef};
use jobforge_core::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, RunCursor};
use jobforge_core::ports::{
    Backend, BackendError, HistoryPage, JobFeed, JobRecords, LockKey, Locks, LocksError, LogArchive, Mailbox, Registry,
    RegistryError, RunEvents, RunSpec, Secrets, SecretsError, Started, StoreError,
};
use jobforge_core::record::{JobRecord, KillRequest};
use jobforge_core::secret::{Credentials, SecretData, SecretPath};
use jobforge_core::state::CleanupReport;
use jobforge_core::validate::Problem;
use jobforge_core::{Phase, RunId};

/// Where to crash: at crash point `point` (0-based), before its call or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashAt {
    pub point: u64,
    pub after: bool,
}

/// Counts an engine's crash points and kills it at the planned one.
pub struct Gate {
    state: Mutex<GateState>,
    dead: watch::Sender<bool>,
}

struct GateState {
    plan: Option<CrashAt>,
    passed: u64,
    /// The name of each point passed, in order, for reports.
    names: Vec<&'static str>,
}

impl Gate {
    pub fn new(plan: Option<CrashAt>) -> Arc<Gate> {
        let state = GateState { plan, passed: 0, names: Vec::new() };
        Arc::new(Gate { state: Mutex::new(state), dead: watch::Sender::new(false) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many crash points the engine passed.
    pub fn passed(&self) -> u64 {
        self.state().passed
    }

    /// The points passed so far, by name.
    pub fn names(&self) -> Vec<&'static str> {
        self.state().names.clone()
    }

    pub fn is_dead(&self) -> bool {
        *self.dead.borrow()
    }

    /// Resolves once the engine behind this gate is dead.
    pub async fn crashed(&self) {
        let mut dead = self.dead.subscribe();
        let _ = dead.wait_for(|dead| *dead).await;
    }

    /// Kill the engine now (a crash not at a point: the harness decides when).
    pub fn kill(&self) {
        self.dead.send_replace(true);
    }

    /// Never returns once dead.
    async fn alive(&self) {
        if self.is_dead() {
            std::future::pending::<()>().await;
        }
    }

    /// Enter crash point `name`: its number, or never (the crash is here, before the call).
    async fn enter(&self, name: &'static str) -> u64 {
        self.alive().await;
        let crash = {
            let mut state = self.state();
            let index = state.passed;
            state.passed += 1;
            state.names.push(name);
            (state.plan == Some(CrashAt { point: index, after: false }), index)
        };
        if crash.0 {
            self.kill();
        }
        self.alive().await;
        crash.1
    }

    /// Leave crash point `index`: at once, or never (the crash is here, after the call).
    async fn leave(&self, index: u64) {
        if self.state().plan == Some(CrashAt { point: index, after: true }) {
            self.kill();
        }
        self.alive().await;
    }

    /// A call with a side effect: a crash point.
    async fn point<T>(&self, name: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let index = self.enter(name).await;
        let out = call.await;
        self.leave(index).await;
        out
    }

    /// Any other call: it simply never returns once the engine is dead.
    async fn pass<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        self.alive().await;
        let out = call.await;
        self.alive().await;
        out
    }
}

/// One port behind a gate.
struct Gated<T: ?Sized> {
    inner: Arc<T>,
    gate: Arc<Gate>,
}

/// `ports` with every call passing `gate`.
pub fn gated(ports: &Ports, gate: &Arc<Gate>) -> Ports {
    fn wrap<T: ?Sized>(inner: &Arc<T>, gate: &Arc<Gate>) -> Gated<T> {
        Gated { inner: inner.clone(), gate: gate.clone() }
    }
    Ports {
        backend: Arc::new(wrap(&ports.backend, gate)),
        records: Arc::new(wrap(&ports.records, gate)),
        archive: Arc::new(wrap(&ports.archive, gate)),
        feed: Arc::new(wrap(&ports.feed, gate)),
        mailbox: Arc::new(wrap(&ports.mailbox, gate)),
        secrets: Arc::new(wrap(&ports.secrets, gate)),
        registry: Arc::new(wrap(&ports.registry, gate)),
        locks: Arc::new(wrap(&ports.locks, gate)),
        clock: ports.clock.clone(),
    }
}

#[async_trait]
impl JobRecords for Gated<dyn JobRecords> {
    async fn insert(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.gate.point("records.insert", self.inner.insert(record)).await
    }
    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.gate.point("records.update", self.inner.update(record)).await
    }
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.gate.pass(self.inner.get(id)).await
    }
    async fn list(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError> {
        self.gate.pass(self.inner.list(limit, offset)).await
    }
    async fn live(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.gate.pass(self.inner.live()).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.gate.pass(self.inner.check()).await
    }
}

#[async_trait]
impl LogArchive for Gated<dyn LogArchive> {
    async fn append(&self, job: JobId, entries: &[NewEntry]) -> Result<u64, StoreError> {
        self.gate.point("archive.append", self.inner.append(job, entries)).await
    }
    async fn cursor(&self, job: JobId, run: &RunId, sequences: u64) -> Result<RunCursor, StoreError> {
        self.gate.pass(self.inner.cursor(job, run, sequences)).await
    }
    async fn logs(&self, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        self.gate.pass(self.inner.logs(job, query)).await
    }
    async fn tail(&self, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Result<Vec<LogLine>, StoreError> {
        self.gate.pass(self.inner.tail(job, phase, test, n)).await
    }
    async fn entries(&self, job: JobId, query: &EntryQuery) -> Result<Vec<Entry>, StoreError> {
        self.gate.pass(self.inner.entries(job, query)).await
    }
}

#[async_trait]
impl JobFeed for Gated<dyn JobFeed> {
    async fn changed(&self, job: JobId, version: u64, limit: Duration) -> Result<u64, StoreError> {
        self.gate.pass(self.inner.changed(job, version, limit)).await
    }
}

#[async_trait]
impl Mailbox for Gated<dyn Mailbox> {
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError> {
        self.gate.point("mailbox.request_kill", self.inner.request_kill(id, request)).await
    }
    async fn kill_requests(
        &self,
        version: u64,
        limit: Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError> {
        self.gate.pass(self.inner.kill_requests(version, limit)).await
    }
    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError> {
        self.gate.point("mailbox.forget", self.inner.forget_kill_request(id)).await
    }
}

#[async_trait]
impl Backend for Gated<dyn Backend> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn unsupported(&self, spec: &JobSpec) -> Vec<Problem> {
        self.inner.unsupported(spec)
    }
    fn sequences(&self) -> u64 {
        self.inner.sequences()
    }
    async fn start(&self, spec: &RunSpec) -> Result<Started, BackendError> {
        self.gate.point("backend.start", self.inner.start(spec)).await
    }
    async fn follow(&self, run: &RunId, from: &RunCursor) -> Result<RunEvents, BackendError> {
        self.gate.pass(self.inner.follow(run, from)).await
    }
    async fn stop(&self, run: &RunId, grace: Duration) -> Result<(), BackendError> {
        self.gate.point("backend.stop", self.inner.stop(run, grace)).await
    }
    async fn cleanup(&self, job: JobId) -> Result<CleanupReport, BackendError> {
        self.gate.point("backend.cleanup", self.inner.cleanup(job)).await
    }
    async fn jobs(&self) -> Result<Vec<JobId>, BackendError> {
        self.gate.pass(self.inner.jobs()).await
    }
    async fn check(&self) -> Result<(), BackendError> {
        self.gate.pass(self.inner.check()).await
    }
    async fn built_digest(&self, job: JobId) -> Result<Option<jobforge_core::image::Digest>, BackendError> {
        self.gate.pass(self.inner.built_digest(job)).await
    }
}

#[async_trait]
impl Secrets for Gated<dyn Secrets> {
    async fn read(&self, path: &SecretPath) -> Result<SecretData, SecretsError> {
        self.gate.pass(self.inner.read(path)).await
    }
    async fn exists(&self, path: &SecretPath) -> Result<bool, SecretsError> {
        self.gate.pass(self.inner.exists(path)).await
    }
    async fn check(&self) -> Result<(), SecretsError> {
        self.gate.pass(self.inner.check()).await
    }
}

#[async_trait]
impl Registry for Gated<dyn Registry> {
    async fn digest(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<Option<Digest>, RegistryError> {
        self.gate.pass(self.inner.digest(image, creds)).await
    }
    async fn delete(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<bool, RegistryError> {
        self.gate.point("registry.delete", self.inner.delete(image, creds)).await
    }
}

#[async_trait]
impl Locks for Gated<dyn Locks> {
    async fn try_lock(&self, key: &LockKey, job: JobId) -> Result<bool, LocksError> {
        self.gate.point("locks.try_lock", self.inner.try_lock(key, job)).await
    }
    async fn unlock(&self, key: &LockKey, job: JobId) -> Result<(), LocksError> {
        self.gate.point("locks.unlock", self.inner.unlock(key, job)).await
    }
    async fn holder(&self, key: &LockKey) -> Result<Option<JobId>, LocksError> {
        self.gate.pass(self.inner.holder(key)).await
    }
    async fn changed(&self, version: u64, limit: Duration) -> Result<u64, LocksError> {
        self.gate.pass(self.inner.changed(version, limit)).await
    }
    fn lost(&self) -> watch::Receiver<u64> {
        self.inner.lost()
    }
    fn lock_delay(&self) -> Duration {
        self.inner.lock_delay()
    }
}
