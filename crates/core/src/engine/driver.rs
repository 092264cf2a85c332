//! The driver of one job: wait for the next event, [`step`], carry out the effects in order.
//!
//! It makes no decision of its own: what to persist, start, stop or report comes from `step`,
//! and the driver only does it and reports back what happened (each answer an [`Event`]).
//! Effects that answer at once (a write, a start, a registry read) are carried out in line,
//! their events stepped before the next effect; those that take long (following a run,
//! stopping runs, waiting for admission) run as tasks that report through one channel. Every
//! wait selects over that channel, the inbox (kills), the deadline `step` names, and the
//! instance's shutdown, which leaves the job where it is: its runs keep going in the backend
//! and the next driver resumes them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::step::{self, Effect, Event, Input, KillAnswer};
use super::{Command, KillError, Ports, Settings, admission, effects, pump, work};
use crate::id::RunKey;
use crate::mask::Masker;
use crate::ports::{LockKey, StoreError};
use crate::record::JobRecord;
use crate::state::JobState;

/// How carrying out one effect went.
enum Carried {
    /// Done; step this event next, if any.
    Next(Option<Event>),
    /// The driver ends here.
    End,
}

pub(super) struct Driver {
    ports: Ports,
    /// The settings current when the driver started.
    settings: Settings,
    record: JobRecord,
    slots: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    inbox: mpsc::Receiver<Command>,
    /// Who asked for the kill being handled; `AnswerKill` answers them.
    asking: Option<oneshot::Sender<Result<JobRecord, KillError>>>,
    reports: mpsc::UnboundedSender<Event>,
    reported: mpsc::UnboundedReceiver<Event>,
    pumps: BTreeMap<RunKey, Task<()>>,
    admission: Option<JoinHandle<Option<OwnedSemaphorePermit>>>,
    masker: Option<Arc<Masker>>,
    stop: CancellationToken,
}

/// A task aborted when dropped: the driver's helpers never outlive it.
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Driver {
    pub(super) fn new(
        ports: Ports,
        settings: Settings,
        record: JobRecord,
        slots: Arc<Semaphore>,
        inbox: mpsc::Receiver<Command>,
        stop: CancellationToken,
    ) -> Self {
        let (reports, reported) = mpsc::unbounded_channel();
        Driver {
            ports,
            settings,
            record,
            slots,
            permit: None,
            inbox,
            asking: None,
            reports,
            reported,
            pumps: BTreeMap::new(),
            admission: None,
            masker: None,
            stop,
        }
    }

    /// Drive the job from `first` (usually [`Event::Resumed`]) until it is over, this instance
    /// loses it, or the instance shuts down.
    pub(super) async fn run(mut self, first: Event) {
        let span = tracing::info_span!("job", job_id = %self.record.id);
        async {
            let mut next = Some(first);
            while let Some(event) = next {
                if self.handle(event).await {
                    break;
                }
                self.reconcile();
                next = self.next_event().await;
            }
            self.close_inbox();
        }
        .instrument(span)
        .await
    }

    /// Step `event` and carry out every effect that follows from it; true if the driver ends.
    async fn handle(&mut self, event: Event) -> bool {
        let span = match &self.record.state {
            JobState::Running(run) => tracing::info_span!("phase", phase = %run.phase),
            JobState::Waiting { .. } | JobState::Ending { .. } | JobState::Ended { .. } => tracing::Span::none(),
        };
        async {
            let mut queue: VecDeque<Effect> = self.step(event).into();
            while let Some(effect) = queue.pop_front() {
                // Lost locks or shutdown: not one more effect; the next driver redoes the rest.
                if self.stop.is_cancelled() {
                    return true;
                }
                match self.carry_out(effect).await {
                    Carried::Next(None) => {}
                    // What an effect's answer leads to comes before the rest of the list.
                    Carried::Next(Some(event)) => {
                        for effect in self.step(event).into_iter().rev() {
                            queue.push_front(effect);
                        }
                    }
                    Carried::End => return true,
                }
            }
            false
        }
        .instrument(span)
        .await
    }

    fn step(&mut self, event: Event) -> Vec<Effect> {
        tracing::trace!(?event, "step");
        let input = Input { now: self.ports.clock.now(), event };
        let (record, effects) = step::step(&self.record, &self.settings, input);
        self.record = record;
        effects
    }

    async fn carry_out(&mut self, effect: Effect) -> Carried {
        let record = &self.record;
        let event = match effect {
            Effect::Persist => return self.persist().await,
            Effect::Journal => return self.journal().await,
            Effect::Admit => {
                self.admit();
                None
            }
            Effect::StartRun(key) => Some(self.start(key).await),
            Effect::FollowRun(key) => self.follow(key).await,
            Effect::StopRuns(keys) => {
                self.stop_runs(keys);
                None
            }
            Effect::ResolveDigest => Some(effects::resolve_digest(&self.ports, &self.settings, record).await),
            Effect::CheckPublished => Some(effects::check_published(&self.ports, record).await),
            Effect::Diagnose { .. } => {
                let (diagnosis, tests) = effects::diagnose(&self.ports, &self.settings, record).await;
                Some(Event::Diagnosed { diagnosis, tests })
            }
            Effect::ReleaseBuildLock => {
                self.unlock(&record.build_lock()).await;
                None
            }
            Effect::Cleanup => {
                self.permit = None;
                let report = effects::remove_leftovers(&self.ports, &self.settings, record).await;
                Some(Event::CleanedUp { report })
            }
            Effect::AnswerKill(answer) => {
                self.answer_kill(answer);
                None
            }
            Effect::Finish => {
                tracing::info!(status = %record.status(), "job finished");
                self.unlock(&LockKey::owner(record.id)).await;
                return Carried::End;
            }
            Effect::Leave => {
                tracing::info!(status = %record.status(), "driver stopping; the job is resumed by its next driver");
                return Carried::End;
            }
        };
        Carried::Next(event)
    }

    /// Write the record, retrying while the store is down: nothing may happen unrecorded.
    async fn persist(&mut self) -> Carried {
        self.record.updated_at = self.ports.clock.now();
        let record = self.record.clone();
        let records = self.ports.records.clone();
        match self.retry("persist the job record", || records.update(&record)).await {
            Ok(()) => Carried::Next(None),
            // Another replica took the job over: it drives it from here.
            Err(Some(StoreError::Conflict(_))) => {
                tracing::warn!("the job's record was changed elsewhere; leaving it to its new driver");
                Carried::Next(Some(Event::Lost))
            }
            Err(Some(err)) => {
                tracing::error!(error = %err, "cannot persist the job record; leaving the job");
                Carried::Next(Some(Event::Lost))
            }
            Err(None) => Carried::End,
        }
    }

    /// Archive the outbox's entries (the archive skips those it has), retrying while down.
    async fn journal(&mut self) -> Carried {
        let Some(upto) = self.record.outbox.pending.last().map(|posting| posting.n) else {
            return Carried::Next(None);
        };
        let entries = self.record.outbox.entries();
        let (archive, id) = (self.ports.archive.clone(), self.record.id);
        match self.retry("archive the job's events", || archive.append(id, &entries)).await {
            Ok(_) => Carried::Next(Some(Event::Journaled { upto })),
            Err(Some(err)) => {
                tracing::error!(error = %err, "cannot archive the job's events; leaving the job");
                Carried::Next(Some(Event::Lost))
            }
            Err(None) => Carried::End,
        }
    }

    /// Call `op` until it succeeds or fails with something other than unavailability;
    /// `Err(None)` if the instance shuts down meanwhile.
    async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Option<StoreError>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(StoreError::Unavailable(message)) => {
                    tracing::error!(%message, retry_in = ?delay, "could not {what}");
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
                Err(err) => return Err(Some(err)),
            }
        }
    }

    fn admit(&mut self) {
        if self.admission.is_none() {
            let task =
                admission::admit(self.ports.clone(), self.record.clone(), self.slots.clone(), self.reports.clone());
            self.admission = Some(tokio::spawn(task));
        }
    }

    async fn start(&mut self, key: RunKey) -> Event {
        let spec = work::run_spec(&self.settings, &self.record, key);
        match self.ports.backend.start(&spec).await {
            Ok(started) => {
                tracing::debug!(run = %spec.id, ?started, "run started");
                Event::RunStarted { run: key }
            }
            Err(err) => {
                tracing::warn!(run = %spec.id, error = %err, "run did not start");
                Event::RunNotStarted { run: key, message: err.to_string() }
            }
        }
    }

    /// Pump the run's output into the journal; the pump reports its beginning and its end.
    async fn follow(&mut self, key: RunKey) -> Option<Event> {
        if self.pumps.contains_key(&key) {
            return None;
        }
        let masker = match self.masker().await {
            Ok(masker) => masker,
            Err(message) => return Some(Event::SecretsUnreadable { message }),
        };
        let task = pump::pump(self.ports.clone(), self.record.id, key, masker, self.reports.clone());
        self.pumps.insert(key, Task(tokio::spawn(task)));
        None
    }

    /// The masker for this job's secrets, read once per driver.
    async fn masker(&mut self) -> Result<Arc<Masker>, String> {
        if let Some(masker) = &self.masker {
            return Ok(masker.clone());
        }
        let masker = Arc::new(effects::masker(&self.ports, &self.settings, &self.record).await?);
        self.masker = Some(masker.clone());
        Ok(masker)
    }

    /// Stop the runs in the background; their pumps see them end.
    fn stop_runs(&self, keys: Vec<RunKey>) {
        let backend = self.ports.backend.clone();
        let grace = self.settings.kill_grace;
        tokio::spawn(async move {
            let runs: Vec<_> = keys.iter().map(RunKey::id).collect();
            let stops = runs.iter().map(|run| backend.stop(run, grace));
            for (run, result) in runs.iter().zip(futures::future::join_all(stops).await) {
                if let Err(err) = result {
                    tracing::warn!(%run, error = %err, "could not stop run");
                }
            }
        });
    }

    fn answer_kill(&mut self, answer: KillAnswer) {
        let Some(reply) = self.asking.take() else { return };
        let _ = reply.send(match answer {
            KillAnswer::Accepted => Ok(self.record.clone()),
            KillAnswer::Finished(status) => Err(KillError::Finished { id: self.record.id, status }),
        });
    }

    async fn unlock(&self, key: &LockKey) {
        if let Err(err) = self.ports.locks.unlock(key, self.record.id).await {
            // Locks die with this instance's hold on the lock store; nothing is stuck for long.
            tracing::warn!(lock = %key, error = %err, "cannot release a lock");
        }
    }

    /// Keep the helpers the state calls for, and only those: pumps of the runs followed now,
    /// admission while waiting, a slot while the job is active.
    fn reconcile(&mut self) {
        let followed = step::followed(&self.record);
        self.pumps.retain(|key, _| followed.contains(key));
        if !matches!(self.record.state, JobState::Waiting { .. })
            && let Some(admission) = self.admission.take()
        {
            admission.abort();
        }
        if !step::needs_slot(&self.record) {
            self.permit = None;
        } else if self.permit.is_none() && matches!(self.record.state, JobState::Running(_)) {
            // Resumed mid-pipeline: take a slot if one is free; the job goes on regardless.
            self.permit = self.slots.clone().try_acquire_owned().ok();
        }
    }

    /// The next thing that happened: a report from a helper, a kill, the deadline, admission.
    /// `None` when the instance shuts down.
    async fn next_event(&mut self) -> Option<Event> {
        let deadline = step::deadline(&self.record, &self.settings).map(|at| {
            let remaining = at.since(self.ports.clock.now());
            tokio::time::Instant::now() + remaining
        });
        let admission = async {
            match self.admission.as_mut() {
                Some(task) => task.await.ok().flatten(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            Some(event) = self.reported.recv() => Some(event),
            Some(Command::Kill { request, reply }) = self.inbox.recv() => {
                tracing::info!(by = ?request.by, reason = ?request.reason, "kill requested");
                self.asking = Some(reply);
                Some(Event::KillAsked { request })
            }
            permit = admission => {
                self.admission = None;
                self.permit = permit;
                Some(Event::Admitted)
            }
            _ = sleep_until(deadline) => Some(Event::Tick),
        }
    }

    /// Refuse kills that arrive after the end, so their callers hear "finished"; a driver
    /// leaving a job that goes on drops them, and the callers ask the next driver.
    fn close_inbox(&mut self) {
        self.inbox.close();
        while let Ok(Command::Kill { reply, .. }) = self.inbox.try_recv() {
            if let Some(outcome) = self.record.outcome() {
                let _ = reply.send(Err(KillError::Finished { id: self.record.id, status: outcome.status() }));
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
