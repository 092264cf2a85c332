//! The engine: one driver task per live job, walking build → test → publish.
//!
//! **Decisions** are one pure function, [`step`] (`engine/step.rs`): a job and an event in, the
//! job and the effects to carry out. **Drivers** (`engine/driver.rs`) only wait for events, step
//! and carry the effects out, through the ports.
//!
//! **Crash safety.** `step` puts a `Persist` before every side effect, and every backend start
//! is idempotent by run id. A job found live at start-up therefore takes the same path as a new
//! one: load, step `Resumed`, redo what the state needs (attaching to runs that exist), go on.
//! Progress lives in the store, never only in memory.
//!
//! **One writer.** Only a job's driver writes its record, and a driver runs only while its
//! instance holds the job's ownership lock. Requests that change a job (kill) are messages to
//! the driver, answered once persisted; reads never change state.
//!
//! The engine does no IO itself: everything goes through the ports in [`crate::ports`].

mod admission;
mod classify;
mod driver;
mod effects;
mod errors;
mod pump;
mod requests;
mod settings;
pub mod step;
mod submit;
mod takeover;
mod work;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::JobSpec;
use crate::id::JobId;
use crate::image::{ImageRef, Repository, Tag};
use crate::logs::{Entry, EntryQuery, LogLine, LogQuery};
use crate::ports::{
    Backend, Clock, HistoryPage, JobFeed, JobRecords, Locks, LogArchive, Mailbox, Registry, Secrets, Store, StoreError,
};
use crate::record::{JobRecord, KillRequest};
use crate::state::CleanupReport;
use crate::status::Phase;

pub use crate::inprocess::ProcessLocks;
pub use classify::classify;
pub use errors::{KillError, SubmitError};
pub use settings::Settings;
pub use step::{Effect, Event, Input, step};
pub use takeover::Recovery;
pub use work::run_spec;

/// The adapters the engine drives.
#[derive(Clone)]
pub struct Ports {
    pub backend: Arc<dyn Backend>,
    pub records: Arc<dyn JobRecords>,
    pub archive: Arc<dyn LogArchive>,
    pub feed: Arc<dyn JobFeed>,
    pub mailbox: Arc<dyn Mailbox>,
    pub secrets: Arc<dyn Secrets>,
    pub registry: Arc<dyn Registry>,
    pub locks: Arc<dyn Locks>,
    pub clock: Arc<dyn Clock>,
}

impl Ports {
    /// Ports whose four store ports are one adapter.
    pub fn new(
        backend: Arc<dyn Backend>,
        store: Arc<dyn Store>,
        secrets: Arc<dyn Secrets>,
        registry: Arc<dyn Registry>,
        locks: Arc<dyn Locks>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Ports {
            backend,
            records: store.clone(),
            archive: store.clone(),
            feed: store.clone(),
            mailbox: store,
            secrets,
            registry,
            locks,
            clock,
        }
    }
}

/// `<temp registry>/<temp prefix>/<id>:latest`.
fn temp_image(settings: &Settings, spec: &JobSpec, id: JobId) -> ImageRef {
    let registry = settings.temp_registry.clone().unwrap_or_else(|| spec.registry_url.host.clone());
    ImageRef::tagged(registry, Repository::temp_under(&settings.temp_prefix, id), Tag::latest())
}

/// Every run a job would make, without running anything (for `jobforge render`). The build's
/// digest is not known yet, so later phases name a placeholder digest of zeros.
pub fn dry_run(settings: &Settings, mut spec: JobSpec) -> Vec<crate::ports::RunSpec> {
    let id = JobId::new();
    if spec.image_tags.is_empty() {
        spec.image_tags.push(Tag::from(id));
    }
    let temp = temp_image(settings, &spec, id);
    let mut record = JobRecord::new(id, spec, temp, crate::time::Timestamp::now());
    record.image_digest = format!("sha256:{}", "0".repeat(64)).parse().ok();
    Phase::ALL.into_iter().flat_map(|phase| record.runs(phase)).map(|key| run_spec(settings, &record, key)).collect()
}

/// A request to a job's driver.
enum Command {
    Kill { request: KillRequest, reply: oneshot::Sender<Result<JobRecord, KillError>> },
}

/// How the rest of the engine reaches a running driver.
struct DriverHandle {
    commands: mpsc::Sender<Command>,
    /// Closed when the driver ends.
    alive: watch::Receiver<()>,
}

struct Inner {
    ports: Ports,
    /// The current settings; each job takes the ones current at its start.
    settings: watch::Sender<Settings>,
    drivers: Mutex<HashMap<JobId, DriverHandle>>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// This instance's hold on its locks: cancelled when the hold is lost, which stops its
    /// drivers (the jobs are taken again, here or by another replica). A child of `shutdown`,
    /// replaced after each loss.
    hold: Mutex<CancellationToken>,
    /// Woken when this instance took jobs over: kill requests left for them are delivered.
    requests: tokio::sync::Notify,
    /// New jobs between their ownership lock and their driver's start: this instance drives
    /// them already, so taking them over must not start a second driver.
    accepting: Mutex<std::collections::HashSet<JobId>>,
}

/// The job engine. Cheap to clone; all clones drive the same jobs.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine that stops its drivers when `shutdown` is cancelled. Runs it started keep
    /// going in the backend; the next start re-attaches to them.
    pub fn new(ports: Ports, settings: Settings, shutdown: CancellationToken) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_active_jobs.max(1)));
        Engine {
            inner: Arc::new(Inner {
                ports,
                settings: watch::Sender::new(settings),
                drivers: Mutex::new(HashMap::new()),
                slots,
                tracker: TaskTracker::new(),
                hold: Mutex::new(shutdown.child_token()),
                requests: tokio::sync::Notify::new(),
                accepting: Mutex::new(std::collections::HashSet::new()),
                shutdown,
            }),
        }
    }

    /// The settings new jobs get now.
    pub fn settings(&self) -> Settings {
        self.inner.settings.borrow().clone()
    }

    /// Change the settings of jobs submitted from now on (running jobs keep theirs; the number
    /// of active jobs is fixed at start).
    pub fn set_settings(&self, settings: Settings) {
        self.inner.settings.send_replace(settings);
    }

    pub fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.inner.ports.records.get(id).await
    }

    pub async fn history(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError> {
        self.inner.ports.records.list(limit, offset).await
    }

    pub async fn logs(&self, id: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        self.inner.ports.archive.logs(id, query).await
    }

    /// The job's journal (events and lines) after `query.after`.
    pub async fn entries(&self, id: JobId, query: &EntryQuery) -> Result<Vec<Entry>, StoreError> {
        self.inner.ports.archive.entries(id, query).await
    }

    /// Wait until the journal of job `id` may have grown since `version` (0: at once), or
    /// `limit` passed; returns the version to wait on next (see `JobFeed`).
    pub async fn journal_changed(
        &self,
        id: JobId,
        version: u64,
        limit: std::time::Duration,
    ) -> Result<u64, StoreError> {
        self.inner.ports.feed.changed(id, version, limit).await
    }

    /// Stop a job: nothing more starts, running work is stopped (politely, then forced) and
    /// the job ends `KILLED`. Returns the record once the kill is persisted, before the work
    /// has stopped.
    pub async fn kill(&self, id: JobId, by: Option<String>, reason: Option<String>) -> Result<JobRecord, KillError> {
        let request = KillRequest { at: self.inner.ports.clock.now(), by, reason };
        let Some(commands) = self.commands(id) else {
            return self.kill_undriven(id, request).await;
        };
        let (reply, answer) = oneshot::channel();
        if commands.send(Command::Kill { request: request.clone(), reply }).await.is_err() {
            // The driver ended between the lookup and the send.
            return self.kill_undriven(id, request).await;
        }
        match answer.await {
            Ok(result) => result,
            Err(_) if self.inner.shutdown.is_cancelled() => Err(KillError::ShuttingDown),
            Err(_) => self.kill_undriven(id, request).await,
        }
    }

    /// Kill a job no driver of this instance drives: finished, or driven by another replica.
    async fn kill_undriven(&self, id: JobId, request: KillRequest) -> Result<JobRecord, KillError> {
        match self.get(id).await? {
            None => Err(KillError::NotFound(id)),
            Some(record) => match record.outcome() {
                Some(outcome) => Err(KillError::Finished { id, status: outcome.status() }),
                None => self.kill_elsewhere(record, request).await,
            },
        }
    }

    /// Remove what a job left behind (temp image, backend runs), killing it first if it is
    /// still running. Returns what was removed and what remains, as the job's record says.
    pub async fn cleanup(&self, id: JobId) -> Result<CleanupReport, KillError> {
        let Some(record) = self.get(id).await? else {
            return Err(KillError::NotFound(id));
        };
        if self.is_driven_here(id) {
            if record.outcome().is_none() {
                match self.kill(id, None, Some("cleanup requested".into())).await {
                    Ok(_) | Err(KillError::Finished { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            // The driver removes everything itself once the job is over; wait for it.
            self.wait_for_driver(id).await;
            return self.cleanup_report(id).await;
        }
        if record.outcome().is_none() {
            // Driven by another replica: it stops the job and removes what it leaves.
            return self.cleanup_elsewhere(record).await;
        }
        if record.cleaned_up() || !record.state.is_ended() {
            return self.cleanup_report(id).await;
        }
        // Ended with leftovers: a driver tries again and records what it found.
        if self.take(record, Event::CleanupAsked).await {
            self.wait_for_driver(id).await;
        }
        self.cleanup_report(id).await
    }

    /// The cleanup report the job's record holds now.
    async fn cleanup_report(&self, id: JobId) -> Result<CleanupReport, KillError> {
        let record = self.get(id).await?.ok_or(KillError::NotFound(id))?;
        Ok(record.state.cleanup().cloned().unwrap_or_default())
    }

    async fn wait_for_driver(&self, id: JobId) {
        let alive = {
            let drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
            drivers.get(&id).map(|handle| handle.alive.clone())
        };
        if let Some(mut alive) = alive {
            while alive.changed().await.is_ok() {}
        }
    }

    /// Wait until every driver has ended (after `shutdown` is cancelled).
    pub async fn drained(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Whether this instance drives `id` already, or is about to (a job being accepted).
    fn is_driven_here(&self, id: JobId) -> bool {
        let accepting = self.inner.accepting.lock().unwrap_or_else(|e| e.into_inner()).contains(&id);
        accepting || self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&id)
    }

    fn commands(&self, id: JobId) -> Option<mpsc::Sender<Command>> {
        let drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.get(&id).map(|handle| handle.commands.clone())
    }

    /// Start a driver for `record` (unless one runs), stepping `first` to begin with.
    fn spawn_driver(&self, record: JobRecord, first: Event) {
        let (commands, inbox) = mpsc::channel(8);
        let (alive_tx, alive) = watch::channel(());
        let id = record.id;
        {
            let mut drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
            if drivers.contains_key(&id) {
                return;
            }
            drivers.insert(id, DriverHandle { commands, alive });
        }
        let inner = self.inner.clone();
        let stop = self.inner.hold.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.inner.tracker.spawn(async move {
            let settings = inner.settings.borrow().clone();
            let driver = driver::Driver::new(inner.ports.clone(), settings, record, inner.slots.clone(), inbox, stop);
            driver.run(first).await;
            inner.drivers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            drop(alive_tx);
        });
    }
}
