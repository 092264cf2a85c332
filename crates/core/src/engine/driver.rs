//! The driver of one job: waits, decides (through [`super::decide`]), persists, acts.
//!
//! Every wait selects over what it waits for, the job's inbox (kill), the phase deadline and
//! the service's shutdown. A shutdown leaves the job where it is: runs keep going in the
//! backend and the next start resumes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::decide::{self, RunOutcome};
use super::pump::pump;
use super::{Command, Ports, Settings};
use crate::config::TestCase;
use crate::id::RunKey;
use crate::logs::NewLogLine;
use crate::mask::Masker;
use crate::ports::{BuildWork, LockKey, PublishWork, RunExit, RunSpec, RunWork, StoreError, TestWork};
use crate::record::{Failure, FailureReason, JobRecord, KillRequest};
use crate::secret::{Credentials, SecretPath, SecretValue};
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

/// The driver ends early only when the service shuts down.
struct Shutdown;

/// Why the runs of a phase were stopped before they ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopCause {
    Kill,
    Timeout,
}

pub(super) struct Driver<'a> {
    ports: &'a Ports,
    /// The settings current when the driver started.
    settings: Settings,
    slots: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    changes: watch::Sender<u64>,
    inbox: mpsc::Receiver<Command>,
    masker: Option<Masker>,
}

impl<'a> Driver<'a> {
    pub(super) fn new(
        ports: &'a Ports,
        settings: Settings,
        slots: Arc<Semaphore>,
        changes: watch::Sender<u64>,
        inbox: mpsc::Receiver<Command>,
    ) -> Self {
        Driver { ports, settings, slots, permit: None, changes, inbox, masker: None }
    }

    pub(super) async fn run(mut self, mut record: JobRecord, shutdown: CancellationToken) {
        let span = tracing::info_span!("job", job_id = %record.id);
        async {
            loop {
                let step = match record.status {
                    JobStatus::Pending => self.leave_pending(&mut record, &shutdown).await,
                    JobStatus::Building => self.run_phase(&mut record, Phase::Build, &shutdown).await,
                    JobStatus::Testing => self.run_phase(&mut record, Phase::Test, &shutdown).await,
                    JobStatus::Publishing => self.run_phase(&mut record, Phase::Publish, &shutdown).await,
                    JobStatus::Succeeded | JobStatus::Failed | JobStatus::Killed => {
                        // The next build of this image and branch may start now.
                        self.unlock(&record.build_lock(), record.id).await;
                        if !record.cleaned_up && self.finish(&mut record, &shutdown).await.is_err() {
                            break;
                        }
                        self.unlock(&LockKey::owner(record.id), record.id).await;
                        break;
                    }
                };
                if step.is_err() {
                    tracing::info!(status = %record.status, "driver stopping; the job is resumed by the next driver");
                    break;
                }
            }
            // Refuse kills that arrive after the end, so callers hear "finished".
            self.inbox.close();
            // (A driver stopping before the end drops them: the caller asks the next driver.)
            while let Ok(Command::Kill { reply, .. }) = self.inbox.try_recv() {
                if record.status.is_terminal() {
                    let _ = reply.send(Err(super::KillError::Finished { id: record.id, status: record.status }));
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Wait for the build lock of the image and branch (behind earlier jobs), then for a free
    /// slot, then start building.
    async fn leave_pending(&mut self, record: &mut JobRecord, shutdown: &CancellationToken) -> Result<(), Shutdown> {
        if record.kill.is_none() {
            self.wait_for_build_lock(record, shutdown).await?;
        }
        if record.kill.is_none() {
            let slots = self.slots.clone();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Shutdown),
                Some(command) = self.inbox.recv() => {
                    self.accept_kill(record, command, shutdown).await?;
                }
                permit = slots.acquire_owned() => self.permit = permit.ok(),
            }
        }
        record.queue_position = None;
        if record.kill.is_some() {
            decide::killed(record, Timestamp::now());
        } else {
            decide::enter(record, JobStatus::Building, Timestamp::now());
        }
        self.persist(record, shutdown).await
    }

    /// Take the build lock when this job's turn comes: after every earlier live job of the
    /// same image and branch. Meanwhile keep the queue position in the record up to date.
    async fn wait_for_build_lock(
        &mut self,
        record: &mut JobRecord,
        shutdown: &CancellationToken,
    ) -> Result<(), Shutdown> {
        let key = record.build_lock();
        let locks = self.ports.locks.clone();
        let mut version = 0;
        loop {
            let ahead = self.jobs_ahead(record).await;
            let mut wait = std::time::Duration::from_secs(60);
            if ahead == 0 {
                match locks.try_lock(&key, record.id).await {
                    Ok(true) => return Ok(()),
                    // Free but refused: a dead holder's lock-delay, over without a change.
                    Ok(false) if matches!(locks.holder(&key).await, Ok(None)) => wait = locks.lock_delay(),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "cannot take the build lock; waiting"),
                }
            }
            let position = Some(ahead.max(1));
            if record.queue_position != position {
                record.queue_position = position;
                tracing::info!(ahead, lock = %key, "waiting for earlier builds of the same image and branch");
                self.persist(record, shutdown).await?;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Shutdown),
                Some(command) = self.inbox.recv() => {
                    self.accept_kill(record, command, shutdown).await?;
                    return Ok(());
                }
                next = locks.changed(version, wait) => {
                    version = next.unwrap_or(version);
                }
            }
        }
    }

    /// Live jobs of the same image and branch that go first: any past PENDING (one holds the
    /// lock), and earlier submissions still waiting.
    async fn jobs_ahead(&self, record: &JobRecord) -> u32 {
        let key = record.build_lock();
        let live = match self.ports.store.live().await {
            Ok(live) => live,
            Err(err) => {
                tracing::warn!(error = %err, "cannot list live jobs; assuming others are ahead");
                return 1;
            }
        };
        let ahead = live.iter().filter(|other| {
            other.id != record.id
                && !other.status.is_terminal()
                && other.build_lock() == key
                && (other.status != JobStatus::Pending || other.id < record.id)
                && other.kill.is_none()
        });
        u32::try_from(ahead.count()).unwrap_or(u32::MAX)
    }

    /// Persist a kill request and answer it.
    async fn accept_kill(
        &self,
        record: &mut JobRecord,
        command: Command,
        shutdown: &CancellationToken,
    ) -> Result<(), Shutdown> {
        let Command::Kill { request, reply } = command;
        if record.kill.is_some() {
            // Already being killed (a repeated or forwarded request): the first one stands.
            let _ = reply.send(Ok(record.clone()));
            return Ok(());
        }
        tracing::info!(by = ?request.by, reason = ?request.reason, "kill requested");
        let phase = record.phase().unwrap_or(Phase::Build);
        let text = kill_text(&request);
        record.kill = Some(request);
        self.persist(record, shutdown).await?;
        self.system_line(record, phase, text).await;
        let _ = reply.send(Ok(record.clone()));
        Ok(())
    }

    /// Run every run of `phase` to its end, then move the job on. Persists the outcome.
    async fn run_phase(
        &mut self,
        record: &mut JobRecord,
        phase: Phase,
        shutdown: &CancellationToken,
    ) -> Result<(), Shutdown> {
        if self.permit.is_none() {
            self.permit = self.slots.clone().try_acquire_owned().ok();
        }
        let span = tracing::info_span!("phase", phase = %phase);
        async {
            // A kill that arrived between phases stops the job before anything new starts.
            while let Ok(command) = self.inbox.try_recv() {
                self.accept_kill(record, command, shutdown).await?;
            }
            let masker = match self.masker(record).await {
                Ok(masker) => masker,
                Err(failure) => return self.fail(record, failure, shutdown).await,
            };
            if record.kill.is_some() && record.times.start(phase).is_none() {
                decide::killed(record, Timestamp::now());
                return self.persist(record, shutdown).await;
            }
            let outcomes = self.wait_for_runs(record, phase, &masker, shutdown).await?;
            self.conclude(record, phase, outcomes, shutdown).await
        }
        .instrument(span)
        .await
    }

    /// Start the phase's runs (attaching to existing ones) and wait until all have ended,
    /// stopping them on kill or timeout.
    async fn wait_for_runs(
        &mut self,
        record: &mut JobRecord,
        phase: Phase,
        masker: &Masker,
        shutdown: &CancellationToken,
    ) -> Result<(BTreeMap<RunKey, RunOutcome>, Option<StopCause>), Shutdown> {
        let keys = record.runs(phase);
        let mut outcomes: BTreeMap<RunKey, RunOutcome> = BTreeMap::new();
        let mut stopping = record.kill.as_ref().map(|_| StopCause::Kill);

        let now = Timestamp::now();
        // With a kill already recorded, runs are only stopped and followed, never started:
        // a run that was stopped and removed before a crash must not come back.
        let startable: &[RunKey] = if stopping.is_some() { &[] } else { &keys };
        for key in startable {
            let spec = self.run_spec(record, *key);
            match self.ports.backend.start(&spec).await {
                Ok(started) => tracing::debug!(run = %spec.id, ?started, "run started"),
                Err(err) => {
                    tracing::warn!(run = %spec.id, error = %err, "run did not start");
                    outcomes.insert(*key, RunOutcome::Ended(RunExit::StartFailed { message: err.to_string() }));
                }
            }
            if let Some(index) = key.test_index
                && let Some(test) = record.tests.iter_mut().find(|t| t.index == index)
            {
                test.started.get_or_insert(now);
                test.status = crate::record::TestStatus::Running;
            }
        }
        for (key, outcome) in &outcomes {
            if let Some(index) = key.test_index {
                decide::test_ended(record, index, outcome, Timestamp::now());
            }
        }
        self.persist(record, shutdown).await?;

        let ports = self.ports;
        let job = record.id;
        let changes = &self.changes;
        let mut pumps: FuturesUnordered<_> = keys
            .iter()
            .filter(|key| !outcomes.contains_key(key))
            .map(|key| async move {
                let run = key.id();
                let result = pump(ports, job, &run, masker, changes).await;
                (*key, result)
            })
            .collect();

        let timeout = self.settings.timeout(&record.spec, phase);
        let started = record.times.start(phase).unwrap_or_else(Timestamp::now);
        let deadline = instant_at(started.add(timeout.to_std()));
        let mut stop_task: Option<tokio::task::JoinHandle<()>> = None;
        // Once stopping, runs get the grace period and then a bounded time to report their end.
        let mut drain_deadline = None;
        if stopping.is_some() {
            // A kill persisted before a restart: carry it out now.
            stop_task = Some(self.stop_runs(&keys));
            drain_deadline = Some(self.drain_deadline());
        }

        loop {
            let drain_sleep = async {
                match drain_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(Shutdown),
                next = pumps.next() => match next {
                    None => break,
                    Some((key, result)) => {
                        let outcome = match result {
                            Ok(exit) if stopping.is_some() && !exit.success() => RunOutcome::Stopped,
                            Ok(exit) => RunOutcome::Ended(exit),
                            Err(err) => {
                                tracing::warn!(run = %key.id(), error = %err, "lost track of run");
                                RunOutcome::Ended(RunExit::Lost { message: err.to_string() })
                            }
                        };
                        if let Some(index) = key.test_index {
                            decide::test_ended(record, index, &outcome, Timestamp::now());
                            self.persist(record, shutdown).await?;
                        }
                        outcomes.insert(key, outcome);
                    }
                },
                Some(command) = self.inbox.recv(), if stopping.is_none() => {
                    self.accept_kill(record, command, shutdown).await?;
                    stopping = Some(StopCause::Kill);
                    stop_task = Some(self.stop_runs(&keys));
                    drain_deadline = Some(self.drain_deadline());
                }
                _ = tokio::time::sleep_until(deadline), if stopping.is_none() => {
                    tracing::info!(%timeout, "phase timed out");
                    self.system_line(record, phase, format!("{phase} exceeded its timeout of {timeout}; stopping it")).await;
                    stopping = Some(StopCause::Timeout);
                    stop_task = Some(self.stop_runs(&keys));
                    drain_deadline = Some(self.drain_deadline());
                }
                _ = drain_sleep => {
                    tracing::warn!("stopped runs did not report an end; giving up on them");
                    break;
                }
            }
        }
        drop(pumps);
        if let Some(task) = stop_task {
            let _ = task.await;
        }
        for key in keys {
            outcomes.entry(key).or_insert(RunOutcome::Stopped);
        }
        Ok((outcomes, stopping))
    }

    fn drain_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.settings.kill_grace + std::time::Duration::from_secs(30)
    }

    /// Stop every run of the phase in the background; the pumps see them end.
    fn stop_runs(&self, keys: &[RunKey]) -> tokio::task::JoinHandle<()> {
        let backend = self.ports.backend.clone();
        let grace = self.settings.kill_grace;
        let runs: Vec<_> = keys.iter().map(RunKey::id).collect();
        tokio::spawn(async move {
            let stops = runs.iter().map(|run| backend.stop(run, grace));
            for (run, result) in runs.iter().zip(futures::future::join_all(stops).await) {
                if let Err(err) = result {
                    tracing::warn!(%run, error = %err, "could not stop run");
                }
            }
        })
    }

    /// Decide what the phase's outcome means for the job, and persist it.
    async fn conclude(
        &mut self,
        record: &mut JobRecord,
        phase: Phase,
        (outcomes, stopped): (BTreeMap<RunKey, RunOutcome>, Option<StopCause>),
        shutdown: &CancellationToken,
    ) -> Result<(), Shutdown> {
        let now = Timestamp::now();
        match stopped {
            Some(StopCause::Kill) => {
                if phase == Phase::Publish {
                    self.confirm_published(record).await;
                }
                decide::killed(record, now);
                return self.persist(record, shutdown).await;
            }
            Some(StopCause::Timeout) => {
                let timeout = self.settings.timeout(&record.spec, phase);
                let failure = Failure {
                    phase,
                    reason: FailureReason::Timeout,
                    message: format!("{phase} did not finish within its timeout of {timeout}"),
                    exit_code: None,
                    retryable: FailureReason::Timeout.is_retryable(),
                    log_tail: self.tail(record, phase, None).await,
                };
                return self.fail(record, failure, shutdown).await;
            }
            None => {}
        }
        let runs: Vec<(RunKey, RunOutcome)> = outcomes.into_iter().collect();
        if let Some((key, mut failure)) = decide::classify(record, phase, &runs) {
            failure.log_tail = self.tail(record, phase, key.test_index).await;
            return self.fail(record, failure, shutdown).await;
        }
        let follow_up = match phase {
            Phase::Build => self.record_digest(record).await,
            Phase::Test => Ok(()),
            Phase::Publish => self.verify_published(record).await,
        };
        match follow_up {
            Ok(()) => {
                decide::pass_phase(record, phase, Timestamp::now());
                self.persist(record, shutdown).await
            }
            Err(mut failure) => {
                failure.log_tail = self.tail(record, phase, None).await;
                self.fail(record, failure, shutdown).await
            }
        }
    }

    /// After a build: the digest the registry holds for the temp image is the one tested and
    /// published.
    async fn record_digest(&self, record: &mut JobRecord) -> Result<(), Failure> {
        let creds = self.credentials(&temp_credentials(&self.settings, record)).await;
        match self.ports.registry.digest(&record.temp_image, creds.as_ref()).await {
            Ok(Some(digest)) => {
                tracing::info!(%digest, "built");
                record.image_digest = Some(digest);
                Ok(())
            }
            Ok(None) => Err(registry_failure(
                Phase::Build,
                format!("the build finished but {} is not in the registry", record.temp_image),
            )),
            Err(err) => Err(registry_failure(Phase::Build, format!("could not read the built image's digest: {err}"))),
        }
    }

    /// After publishing: every target must hold exactly the tested digest.
    async fn verify_published(&self, record: &mut JobRecord) -> Result<(), Failure> {
        let creds = self.credentials(&record.spec.registry_credentials_path).await;
        let expected = record.image_digest.clone();
        record.published.clear();
        for target in targets(record) {
            match self.ports.registry.digest(&target, creds.as_ref()).await {
                Ok(Some(digest)) if Some(&digest) == expected.as_ref() => record.published.push(target),
                Ok(Some(digest)) => {
                    return Err(registry_failure(
                        Phase::Publish,
                        format!("{target} holds {digest}, not the tested {}", display_opt(&expected)),
                    ));
                }
                Ok(None) => {
                    return Err(registry_failure(Phase::Publish, format!("{target} is missing after publishing")));
                }
                Err(err) => return Err(registry_failure(Phase::Publish, format!("could not check {target}: {err}"))),
            }
        }
        Ok(())
    }

    /// After a kill during publishing: record honestly which targets got the image.
    async fn confirm_published(&self, record: &mut JobRecord) {
        let creds = self.credentials(&record.spec.registry_credentials_path).await;
        record.published.clear();
        for target in targets(record) {
            if let Ok(Some(digest)) = self.ports.registry.digest(&target, creds.as_ref()).await
                && Some(&digest) == record.image_digest.as_ref()
            {
                record.published.push(target);
            }
        }
    }

    async fn fail(
        &mut self,
        record: &mut JobRecord,
        failure: Failure,
        shutdown: &CancellationToken,
    ) -> Result<(), Shutdown> {
        tracing::info!(phase = %failure.phase, reason = ?failure.reason, message = %failure.message, "job failed");
        decide::fail(record, failure, Timestamp::now());
        self.persist(record, shutdown).await
    }

    /// Remove what the finished job left behind, then mark it cleaned up.
    async fn finish(&mut self, record: &mut JobRecord, shutdown: &CancellationToken) -> Result<(), Shutdown> {
        self.permit = None;
        let removed = remove_leftovers(self.ports, &self.settings, record).await;
        tracing::info!(status = %record.status, ?removed, "job finished");
        record.cleaned_up = true;
        self.persist(record, shutdown).await
    }

    /// Write the record, retrying while the store is down: nothing may happen unrecorded.
    async fn persist(&self, record: &mut JobRecord, shutdown: &CancellationToken) -> Result<(), Shutdown> {
        record.updated_at = Timestamp::now();
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match self.ports.store.update(record).await {
                Ok(()) => {
                    self.changes.send_modify(|n| *n += 1);
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => {
                    // Another replica took the job over: it drives it from here.
                    tracing::warn!("the job's record was changed elsewhere; leaving it to its new driver");
                    return Err(Shutdown);
                }
                Err(err) => {
                    tracing::error!(error = %err, retry_in = ?delay, "could not persist job record");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Shutdown),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
    }

    async fn unlock(&self, key: &LockKey, job: crate::id::JobId) {
        if let Err(err) = self.ports.locks.unlock(key, job).await {
            // Locks die with this instance's hold on the lock store; nothing is stuck for long.
            tracing::warn!(lock = %key, error = %err, "cannot release a lock");
        }
    }

    async fn system_line(&self, record: &JobRecord, phase: Phase, text: String) {
        let line = NewLogLine::system(phase, None, text);
        match self.ports.store.append_logs(record.id, &[line]).await {
            Ok(seq) => {
                self.changes.send_replace(seq);
            }
            Err(err) => tracing::warn!(error = %err, "could not archive a log line"),
        }
    }

    async fn tail(&self, record: &JobRecord, phase: Phase, test: Option<u32>) -> Vec<String> {
        let n = self.settings.log_tail_lines;
        match self.ports.store.tail(record.id, phase, test, n).await {
            Ok(lines) => lines.into_iter().map(|l| l.text).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "could not read the log tail");
                Vec::new()
            }
        }
    }

    /// The masker for this job's secrets, read once per driver. A secret that cannot be read
    /// fails the job: its value could not be masked.
    async fn masker(&mut self, record: &JobRecord) -> Result<Masker, Failure> {
        if let Some(masker) = &self.masker {
            return Ok(masker.clone());
        }
        let mut values: Vec<SecretValue> = Vec::new();
        let mut paths: Vec<SecretPath> = Vec::new();
        paths.extend(record.spec.git_credentials_path.clone());
        paths.extend(record.spec.registry_credentials_path.clone());
        paths.extend(temp_credentials(&self.settings, record));
        paths.extend(record.spec.test.vault_secrets.iter().map(|s| s.path.clone()));
        for path in paths {
            match self.ports.secrets.read(&path).await {
                Ok(data) => {
                    values.extend(data.values().cloned());
                    // `user:password` is what Basic auth headers and auth files encode.
                    if let (Some(user), Some(pass)) = (data.get("username"), data.get("password").or(data.get("token")))
                    {
                        values.push(SecretValue::new(format!("{}:{}", user.expose(), pass.expose())));
                    }
                }
                Err(err) => {
                    let phase = record.phase().unwrap_or(Phase::Build);
                    return Err(Failure {
                        phase,
                        reason: FailureReason::Secret,
                        message: format!("could not read secret {path}: {err}"),
                        exit_code: None,
                        retryable: true,
                        log_tail: Vec::new(),
                    });
                }
            }
        }
        let masker = Masker::new(&values);
        self.masker = Some(masker.clone());
        Ok(masker)
    }

    async fn credentials(&self, path: &Option<SecretPath>) -> Option<Credentials> {
        read_credentials(self.ports, path).await
    }

    fn run_spec(&self, record: &JobRecord, key: RunKey) -> RunSpec {
        run_spec(&self.settings, record, key)
    }
}

/// What run `key` of `record` must do.
pub fn run_spec(settings: &Settings, record: &JobRecord, key: RunKey) -> RunSpec {
    let spec = &record.spec;
    let temp_creds = temp_credentials(settings, record);
    let work = match key.phase {
        Phase::Build => RunWork::Build(BuildWork {
            repo_url: spec.repo_url.clone(),
            git_ref: spec.git_ref.clone(),
            git_credentials: spec.git_credentials_path.clone(),
            dockerfile: spec.dockerfile_path.clone(),
            context: spec.context.clone(),
            build_args: spec.build_args.clone(),
            no_cache: spec.clear_cache,
            image: record.temp_image.clone(),
            registry_credentials: temp_creds,
        }),
        Phase::Test => {
            let index = key.test_index.unwrap_or_default() as usize;
            RunWork::Test(TestWork {
                image: pinned(record),
                case: spec.tests().get(index).cloned().unwrap_or(TestCase::EntryPoint),
                env: spec.test.env.clone(),
                vault_secrets: spec.test.vault_secrets.clone(),
                registry_credentials: temp_creds,
                constraints: spec.test.constraints.clone(),
                gpu_required: spec.test.gpu_required,
            })
        }
        Phase::Publish => RunWork::Publish(PublishWork {
            source: pinned(record),
            targets: targets(record),
            source_credentials: temp_creds,
            target_credentials: spec.registry_credentials_path.clone(),
        }),
    };
    RunSpec { id: key.id(), work, resources: spec.resources(key.phase) }
}

/// The temp image pinned to the built digest (the tag, if the digest is somehow unknown).
fn pinned(record: &JobRecord) -> crate::image::ImageRef {
    match &record.image_digest {
        Some(digest) => record.temp_image.with_digest(digest.clone()),
        None => record.temp_image.clone(),
    }
}

/// `<registry_url>/<image_name>:<tag>` for every tag.
fn targets(record: &JobRecord) -> Vec<crate::image::ImageRef> {
    let spec = &record.spec;
    let repository = spec.registry_url.repository(&spec.image_name);
    spec.image_tags
        .iter()
        .map(|tag| crate::image::ImageRef::tagged(spec.registry_url.host.clone(), repository.clone(), tag.clone()))
        .collect()
}

/// Credentials for the temp registry: the server's when temp images go to a registry of their
/// own, else the job's.
fn temp_credentials(settings: &Settings, record: &JobRecord) -> Option<SecretPath> {
    if record.temp_image.registry != record.spec.registry_url.host {
        settings.temp_registry_credentials.clone()
    } else {
        record.spec.registry_credentials_path.clone()
    }
}

async fn read_credentials(ports: &Ports, path: &Option<SecretPath>) -> Option<Credentials> {
    let path = path.as_ref()?;
    match ports.secrets.read(path).await {
        Ok(data) => match Credentials::from_secret(path, &data) {
            Ok(creds) => Some(creds),
            Err(message) => {
                tracing::warn!(%message, "unusable registry credentials");
                None
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "could not read registry credentials");
            None
        }
    }
}

/// Delete the temp image and the backend's leftovers of a finished job. Best effort: what
/// could not be removed is reported, not retried forever.
pub(super) async fn remove_leftovers(ports: &Ports, settings: &Settings, record: &JobRecord) -> Vec<String> {
    let mut removed = Vec::new();
    let creds = read_credentials(ports, &temp_credentials(settings, record)).await;
    let temp = pinned(record);
    match ports.registry.delete(&temp, creds.as_ref()).await {
        Ok(true) => removed.push(format!("temp image {}", record.temp_image)),
        Ok(false) => {}
        Err(err) => {
            tracing::warn!(error = %err, image = %temp, "could not delete the temp image");
            removed.push(format!("(not removed) temp image {}: {err}", record.temp_image));
        }
    }
    match ports.backend.cleanup(record.id).await {
        Ok(more) => removed.extend(more),
        Err(err) => tracing::warn!(error = %err, "could not clean up backend runs"),
    }
    removed
}

fn registry_failure(phase: Phase, message: String) -> Failure {
    Failure {
        phase,
        reason: FailureReason::Registry,
        message,
        exit_code: None,
        retryable: FailureReason::Registry.is_retryable(),
        log_tail: Vec::new(),
    }
}

fn kill_text(request: &KillRequest) -> String {
    let by = request.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
    let why = request.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    format!("kill requested{by}{why}")
}

fn display_opt(digest: &Option<crate::image::Digest>) -> String {
    digest.as_ref().map(ToString::to_string).unwrap_or_else(|| "digest (unknown)".into())
}

/// The tokio instant at which wall-clock time `at` arrives (now, if it has passed).
fn instant_at(at: Timestamp) -> tokio::time::Instant {
    let remaining = at.since(Timestamp::now());
    tokio::time::Instant::now() + remaining
}
