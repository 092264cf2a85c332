//! The engine: one driver task per live job, walking build → test → publish.
//!
//! **Crash safety.** A driver persists the record before every side effect (the status that
//! names the phase it is about to start, the kill it is about to carry out) and every backend
//! start is idempotent by run id. A job found live at start-up therefore takes the same path as
//! a new one: load, start the phase's runs (attaching to those that exist), follow them from the
//! last archived line, continue. Progress lives in the store, never only in memory.
//!
//! **One writer.** Only a job's driver writes its record. Requests that change a job (kill)
//! are messages to the driver, answered once the driver has persisted them. Reads never change
//! state.
//!
//! The engine does no IO itself: everything goes through the ports in [`crate::ports`].

mod decide;
mod driver;
mod process_locks;
mod pump;
mod requests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{JobSpec, ResourceLimits, Resources};
use crate::duration::Duration;
use crate::id::JobId;
use crate::image::{ImageRef, RegistryHost, Repository, Tag};
use crate::logs::{LogLine, LogQuery};
use crate::ports::{Backend, HistoryPage, LockKey, Locks, Registry, Secrets, SecretsError, Store, StoreError};
use crate::record::{JobRecord, KillRequest};
use crate::secret::SecretPath;
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;
use crate::validate::Problem;

pub use decide::{RunOutcome, classify};
pub use driver::run_spec;
pub use process_locks::ProcessLocks;

/// The adapters the engine drives.
#[derive(Clone)]
pub struct Ports {
    pub backend: Arc<dyn Backend>,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub registry: Arc<dyn Registry>,
    pub locks: Arc<dyn Locks>,
}

/// Server-wide settings; a job's own values win where it has them.
#[derive(Clone, Debug)]
pub struct Settings {
    pub build_timeout: Duration,
    pub test_timeout: Duration,
    pub publish_timeout: Duration,
    /// How long a stopped run gets between the polite request and the forced end.
    pub kill_grace: std::time::Duration,
    /// Where temp images go; default: the registry host of the job's `registry_url`.
    pub temp_registry: Option<RegistryHost>,
    /// Credentials for `temp_registry` when it is not the job's registry.
    pub temp_registry_credentials: Option<SecretPath>,
    /// Jobs past PENDING at the same time; more wait in PENDING.
    pub max_active_jobs: usize,
    /// Lines of log kept in a failure's `log_tail`.
    pub log_tail_lines: usize,
    /// Resources of a phase when the job does not say (none: the backend's own defaults).
    pub resources: ResourceLimits,
    /// Temp images are `<registry>/<temp_prefix>/<job id>:latest`.
    pub temp_prefix: Repository,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            build_timeout: Duration::from_mins(30),
            test_timeout: Duration::from_mins(15),
            publish_timeout: Duration::from_mins(15),
            kill_grace: std::time::Duration::from_secs(10),
            temp_registry: None,
            temp_registry_credentials: None,
            max_active_jobs: 4,
            log_tail_lines: 30,
            resources: ResourceLimits::default(),
            temp_prefix: Repository::temp_prefix(),
        }
    }
}

impl Settings {
    /// Write the server's defaults into the job where it has no value of its own, so the job
    /// keeps them whatever later changes to the settings.
    pub fn resolve(&self, spec: &mut JobSpec) {
        spec.build_timeout.get_or_insert(self.build_timeout);
        spec.test_timeout.get_or_insert(self.test_timeout);
        let defaults = &self.resources;
        let job = spec.resource_limits;
        let merged = |phase: Option<Resources>, default: Option<Resources>| -> Option<Resources> {
            let (phase, default) = (phase.unwrap_or_default(), default.unwrap_or_default());
            let resolved = Resources {
                cpu: phase.cpu.or(job.cpu).or(default.cpu).or(defaults.cpu),
                memory: phase.memory.or(job.memory).or(default.memory).or(defaults.memory),
                disk: phase.disk.or(job.disk).or(default.disk).or(defaults.disk),
            };
            (resolved != Resources::default()).then_some(resolved)
        };
        spec.resource_limits = ResourceLimits {
            build: merged(job.build, defaults.build),
            test: merged(job.test, defaults.test),
            publish: merged(job.publish, defaults.publish),
            ..job
        };
    }

    /// The timeout of `phase` for `spec`: the job's own, else the server's.
    pub fn timeout(&self, spec: &JobSpec, phase: Phase) -> Duration {
        match phase {
            Phase::Build => spec.build_timeout.unwrap_or(self.build_timeout),
            Phase::Test => spec.test_timeout.unwrap_or(self.test_timeout),
            Phase::Publish => self.publish_timeout,
        }
    }
}

/// A submission the engine refused; the caller's mistake, not the service's.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Fields this deployment cannot honour (HTTP 422).
    #[error("the job asks for what this server cannot do")]
    Unsupported(Vec<Problem>),
    /// Secret paths that do not exist (HTTP 422).
    #[error("the job names secrets that do not exist")]
    MissingSecrets(Vec<Problem>),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("job {0} does not exist")]
    NotFound(JobId),
    #[error("job {id} already finished with status {status}")]
    Finished { id: JobId, status: JobStatus },
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The job is driven by another replica, which did not act on the request in time. The
    /// request stays: it is carried out when that replica, or the one taking over, gets to it.
    #[error("{0}")]
    Unanswered(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    let mut record = JobRecord::new(id, spec, temp, Timestamp::now());
    record.image_digest = format!("sha256:{}", "0".repeat(64)).parse().ok();
    Phase::ALL
        .into_iter()
        .flat_map(|phase| record.runs(phase))
        .map(|key| driver::run_spec(settings, &record, key))
        .collect()
}

/// The longest a wait for lock changes lasts before the live jobs are looked at again.
const TAKE_OVER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// What one pass over the live jobs took, and whether a free lock was refused (lock-delay).
#[derive(Debug, Default)]
struct TakeOver {
    taken: Vec<JobId>,
    delayed: bool,
}

/// What start-up found and did.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Jobs whose drivers were resumed.
    pub resumed: Vec<JobId>,
    /// Backend leftovers of jobs that are not live, removed.
    pub removed: Vec<String>,
}

/// A request to a job's driver.
enum Command {
    Kill { request: KillRequest, reply: oneshot::Sender<Result<JobRecord, KillError>> },
}

/// How the rest of the engine reaches a running driver.
struct DriverHandle {
    commands: mpsc::Sender<Command>,
    /// Bumped on every persisted change and every archived log batch.
    changes: watch::Sender<u64>,
}

struct Inner {
    ports: Ports,
    /// The current settings; each job takes the ones current at its start.
    settings: watch::Sender<Settings>,
    drivers: Mutex<HashMap<JobId, DriverHandle>>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled when this instance loses its locks: its drivers stop, and jobs are taken
    /// again (here or by another replica). A child of `shutdown`, replaced after each loss.
    drivers_token: Mutex<CancellationToken>,
    /// Woken when this instance took jobs over: kill requests left for them are delivered.
    requests: tokio::sync::Notify,
    /// New jobs between their ownership lock and their driver's start: this instance drives
    /// them already, so taking them over must not start a second driver.
    accepting: Mutex<std::collections::HashSet<JobId>>,
}

/// Marks a job as being accepted by this instance for as long as it lives.
struct Accepting<'a> {
    inner: &'a Inner,
    id: JobId,
}

impl<'a> Accepting<'a> {
    fn new(inner: &'a Inner, id: JobId) -> Self {
        inner.accepting.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        Accepting { inner, id }
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.inner.accepting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
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
                drivers_token: Mutex::new(shutdown.child_token()),
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

    /// Drive every live job that has no driver and whose ownership lock is free.
    async fn take_over(&self) -> Result<TakeOver, StoreError> {
        let locks = &self.inner.ports.locks;
        let mut outcome = TakeOver::default();
        for record in self.inner.ports.store.live().await? {
            if self.is_driven_here(record.id) {
                continue;
            }
            let key = LockKey::owner(record.id);
            match locks.try_lock(&key, record.id).await {
                Ok(true) => {
                    outcome.taken.push(record.id);
                    self.spawn_driver(record);
                }
                // Refused although nobody holds it: the lock store keeps a dead holder's lock
                // for its lock-delay, and nothing will say when that is over.
                Ok(false) => outcome.delayed |= matches!(locks.holder(&key).await, Ok(None)),
                Err(err) => tracing::warn!(job_id = %record.id, error = %err, "cannot take a job's ownership lock"),
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
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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
            let mut token = self.inner.drivers_token.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *token, self.inner.shutdown.child_token())
        };
        stopped.cancel();
        let ids: Vec<JobId> = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        for id in ids {
            if let Some(mut changes) = self.watch(id) {
                while changes.changed().await.is_ok() {}
            }
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
        let live: std::collections::HashSet<JobId> = ports.store.live().await?.iter().map(|r| r.id).collect();
        let mut removed = Vec::new();
        for job in jobs.into_iter().filter(|job| !live.contains(job) && self.watch(*job).is_none()) {
            match ports.backend.cleanup(job).await {
                Ok(items) => removed.extend(items.into_iter().map(|item| format!("{job}: {item}"))),
                Err(err) => tracing::warn!(job_id = %job, error = %err, "could not remove leftovers"),
            }
        }
        if !removed.is_empty() {
            tracing::info!(?removed, "removed leftovers of jobs that are not live");
        }
        Ok(removed)
    }

    /// Accept a validated job: persist it as PENDING and start its driver.
    pub async fn submit(&self, mut spec: JobSpec) -> Result<JobRecord, SubmitError> {
        let ports = &self.inner.ports;
        let mut unsupported = ports.backend.unsupported(&spec);
        if spec.webhook.is_some() {
            // Accepting a webhook and never calling it would be worse than refusing it.
            unsupported.push(Problem::new("webhook_url", "webhook delivery is not available in this version"));
        }
        if !unsupported.is_empty() {
            return Err(SubmitError::Unsupported(unsupported));
        }
        self.check_secrets_exist(&spec).await?;
        let settings = self.settings();
        settings.resolve(&mut spec);
        let id = JobId::new();
        if spec.image_tags.is_empty() {
            spec.image_tags.push(Tag::from(id));
        }
        let temp_image = temp_image(&settings, &spec, id);
        let record = JobRecord::new(id, spec, temp_image, Timestamp::now());
        // Lock, then insert: once the job is in the store, other replicas may try to take it
        // over, and it must be ours by then. (No one else knows the new id, so the lock is free
        // unless the lock store cannot be reached.)
        let key = LockKey::owner(id);
        let _accepting = Accepting::new(&self.inner, id);
        let owned = match ports.locks.try_lock(&key, id).await {
            Ok(owned) => owned,
            Err(err) => {
                tracing::warn!(job_id = %id, error = %err, "cannot take the ownership lock of a new job");
                false
            }
        };
        if let Err(err) = ports.store.insert(&record).await {
            if owned && let Err(unlock) = ports.locks.unlock(&key, id).await {
                tracing::warn!(job_id = %id, error = %unlock, "cannot give back the ownership lock of a job not stored");
            }
            return Err(err.into());
        }
        if !owned {
            // Stored: taken over when the locks next change hands.
            return Ok(record);
        }
        tracing::info!(job_id = %id, image = %record.spec.image_name, "job submitted");
        self.spawn_driver(record.clone());
        Ok(record)
    }

    async fn check_secrets_exist(&self, spec: &JobSpec) -> Result<(), SubmitError> {
        let mut named: Vec<(String, &SecretPath)> = Vec::new();
        if let Some(path) = &spec.git_credentials_path {
            named.push(("git_credentials_path".into(), path));
        }
        if let Some(path) = &spec.registry_credentials_path {
            named.push(("registry_credentials_path".into(), path));
        }
        for (i, secret) in spec.test.vault_secrets.iter().enumerate() {
            named.push((format!("test.vault_secrets[{i}].path"), &secret.path));
        }
        let mut problems = Vec::new();
        for (field, path) in named {
            if !self.inner.ports.secrets.exists(path).await? {
                problems.push(Problem::new(field, format!("secret {path} does not exist")));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(SubmitError::MissingSecrets(problems)) }
    }

    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.inner.ports.store.get(id).await
    }

    pub async fn history(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError> {
        self.inner.ports.store.list(limit, offset).await
    }

    pub async fn logs(&self, id: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        self.inner.ports.store.logs(id, query).await
    }

    /// A receiver that changes whenever the job's record or logs change, or `None` if no
    /// driver is running for it (the job has finished and been cleaned up, or does not exist).
    /// The sender is dropped when the driver ends.
    pub fn watch(&self, id: JobId) -> Option<watch::Receiver<u64>> {
        let drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.get(&id).map(|handle| handle.changes.subscribe())
    }

    /// Stop a job: nothing more starts, running work is stopped (politely, then forced) and
    /// the job ends `KILLED`. Returns the record once the kill is persisted, before the work
    /// has stopped.
    pub async fn kill(&self, id: JobId, by: Option<String>, reason: Option<String>) -> Result<JobRecord, KillError> {
        let request = KillRequest { at: Timestamp::now(), by, reason };
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

    /// Whether this instance drives `id` already, or is about to (a job being accepted).
    fn is_driven_here(&self, id: JobId) -> bool {
        let accepting = self.inner.accepting.lock().unwrap_or_else(|e| e.into_inner()).contains(&id);
        accepting || self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&id)
    }

    fn commands(&self, id: JobId) -> Option<mpsc::Sender<Command>> {
        let drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.get(&id).map(|handle| handle.commands.clone())
    }

    /// Kill a job no driver of this instance drives: finished, or driven by another replica.
    async fn kill_undriven(&self, id: JobId, request: KillRequest) -> Result<JobRecord, KillError> {
        match self.get(id).await? {
            None => Err(KillError::NotFound(id)),
            Some(record) if record.status.is_terminal() => Err(KillError::Finished { id, status: record.status }),
            Some(record) => self.kill_elsewhere(record, request).await,
        }
    }

    /// Remove what a finished job left behind (temp image, backend runs). For a job still
    /// running, kill it first. Returns what was removed.
    pub async fn cleanup(&self, id: JobId) -> Result<Vec<String>, KillError> {
        let Some(record) = self.get(id).await? else {
            return Err(KillError::NotFound(id));
        };
        if self.watch(id).is_some() {
            if !record.status.is_terminal() {
                match self.kill(id, None, Some("cleanup requested".into())).await {
                    Ok(_) | Err(KillError::Finished { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            // The driver removes everything itself once the job is over; wait for it.
            self.wait_for_driver(id).await;
            return Ok(vec!["job stopped; its temp image and runs were removed".into()]);
        }
        if !record.status.is_terminal() {
            // Driven by another replica: it stops the job and removes what it leaves.
            return self.cleanup_elsewhere(record).await;
        }
        Ok(driver::remove_leftovers(&self.inner.ports, &self.settings(), &record).await)
    }

    async fn wait_for_driver(&self, id: JobId) {
        if let Some(mut changes) = self.watch(id) {
            while changes.changed().await.is_ok() {}
        }
    }

    /// Wait until every driver has ended (after `shutdown` is cancelled).
    pub async fn drained(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn spawn_driver(&self, record: JobRecord) {
        let (commands, inbox) = mpsc::channel(8);
        let (changes, _) = watch::channel(0);
        let id = record.id;
        {
            let mut drivers = self.inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
            if drivers.contains_key(&id) {
                return;
            }
            drivers.insert(id, DriverHandle { commands, changes: changes.clone() });
        }
        let inner = self.inner.clone();
        let stop = self.inner.drivers_token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.inner.tracker.spawn(async move {
            let settings = inner.settings.borrow().clone();
            let driver = driver::Driver::new(&inner.ports, settings, inner.slots.clone(), changes, inbox);
            driver.run(record, stop).await;
            let mut drivers = inner.drivers.lock().unwrap_or_else(|e| e.into_inner());
            drivers.remove(&id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> JobSpec {
        let mut base =
            serde_json::json!({"repo_url": "https://e.com/r.git", "image_name": "a", "registry_url": "r:5000"});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        crate::validate::job_spec(&base).unwrap()
    }

    #[test]
    fn resolving_fills_only_what_the_job_left_open() {
        let settings = Settings {
            build_timeout: Duration::from_mins(40),
            resources: ResourceLimits {
                memory: Some(4096),
                test: Some(Resources { cpu: Some(700), ..Resources::default() }),
                ..ResourceLimits::default()
            },
            ..Settings::default()
        };
        let mut job = spec(serde_json::json!({"test_timeout": "2m", "resource_limits": {"test": {"memory": 512}}}));
        settings.resolve(&mut job);
        assert_eq!(job.build_timeout, Some(Duration::from_mins(40)), "the server's default is written in");
        assert_eq!(job.test_timeout, Some(Duration::from_mins(2)), "the job's own value stays");
        let test = job.resources(Phase::Test);
        assert_eq!((test.cpu, test.memory), (Some(700), Some(512)), "job's test memory, server's test cpu");
        assert_eq!(job.resources(Phase::Build).memory, Some(4096), "the server's global default");

        let mut untouched = spec(serde_json::json!({}));
        Settings::default().resolve(&mut untouched);
        assert_eq!(untouched.resources(Phase::Build), Resources::default(), "no defaults, no limits");
    }
}
