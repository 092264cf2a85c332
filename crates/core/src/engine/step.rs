//! The engine's decisions: [`step`] takes a job and one [`Input`] and returns the job as it is
//! now and the [`Effect`]s to carry out, in order. No IO, no clock, no randomness: the same
//! record and input always give the same answer, which is what lets a restarted engine pick a
//! job up from its record alone and what the simulation tests crash against.
//!
//! ```text
//!  events in                          state                              effects out
//!  Resumed, Queued, Admitted ──▶ Waiting{queue_position} ──────────▶ Admit, Persist, Journal
//!  RunStarted/Began/Exited,  ──▶ Running{phase, runs, stop} ──────▶ StartRun, FollowRun,
//!  RunVanished, Tick, Kill         │ all runs done                     StopRuns, ResolveDigest,
//!  DigestResolved, Published ──▶ Ending{outcome} (after Diagnose) ──▶ CheckPublished, Diagnose,
//!  Diagnosed, CleanedUp      ──▶ Ended{outcome, cleanup} ──────────▶ Cleanup, Finish
//!  Journaled, Lost           ──▶ (outbox archived / driver leaves)  ──▶ AnswerKill, Leave
//! ```
//!
//! Rules the table tests hold this to: every change a reader can see is persisted before the
//! effect it announces (`Persist` comes first), then journaled; nothing is started once a stop
//! is under way; a run's exit while stopping counts as stopped; a failure is persisted with
//! its diagnosis, made first.

use crate::diagnose::Diagnosis;
use crate::events::JobEvent;
use crate::id::RunKey;
use crate::image::{Digest, ImageRef};
use crate::ports::RunExit;
use crate::record::{Failure, FailureReason, JobRecord, KillRequest};
use crate::state::{CleanupReport, JobState, PhaseRun, RunOutcome, RunState};
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

use super::settings::Settings;

/// One thing the driver saw, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub now: Timestamp,
    pub event: Event,
}

/// What the driver can tell [`step`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A driver takes the job on: a new job, one found at start-up, or one taken over.
    Resumed,
    /// Admission: `ahead` earlier builds of the same image and branch go first.
    Queued {
        ahead: u32,
    },
    /// Admission: the build lock is held and an active-job slot is free.
    Admitted,
    /// The backend has the run (just started, or found there).
    RunStarted {
        run: RunKey,
    },
    RunNotStarted {
        run: RunKey,
        message: String,
    },
    /// The run's work began to execute at `at`.
    RunBegan {
        run: RunKey,
        at: Timestamp,
    },
    RunExited {
        run: RunKey,
        exit: RunExit,
    },
    /// Following the run failed, or the backend has no such run.
    RunVanished {
        run: RunKey,
        message: String,
    },
    /// A time [`deadline`] named may have come.
    Tick,
    KillAsked {
        request: KillRequest,
    },
    /// The job's secrets could not be read, so its logs could not be masked.
    SecretsUnreadable {
        message: String,
    },
    /// What the registry holds for the temp image after the build.
    DigestResolved {
        digest: Result<Digest, String>,
    },
    /// Which targets hold the tested digest after publishing, and what is wrong if not all.
    PublishChecked {
        confirmed: Vec<ImageRef>,
        problem: Option<String>,
    },
    /// What the failure means, read from the failing runs' output; each other failed test's
    /// excerpt.
    Diagnosed {
        diagnosis: Diagnosis,
        tests: Vec<(u32, Vec<String>)>,
    },
    CleanedUp {
        report: CleanupReport,
    },
    /// Someone asked again for what an ended job left behind to be removed.
    CleanupAsked,
    /// The journal holds the outbox's entries numbered up to `upto`.
    Journaled {
        upto: u64,
    },
    /// This instance no longer drives the job (its locks were lost, or another writer wrote).
    Lost,
}

/// What the driver must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write the record (always before the effects that follow it).
    Persist,
    /// Archive the outbox's entries in the journal.
    Journal,
    /// Wait for the build lock's turn and a free slot, reporting `Queued` and `Admitted`.
    Admit,
    StartRun(RunKey),
    /// Follow the run into the journal, reporting `RunBegan` and `RunExited` or `RunVanished`.
    FollowRun(RunKey),
    /// Ask the runs to stop (forced after the grace period).
    StopRuns(Vec<RunKey>),
    ResolveDigest,
    CheckPublished,
    /// Read the failing run's output (one test's) and the checkout, and say what the failure
    /// means, reporting `Diagnosed`.
    Diagnose {
        phase: Phase,
        test: Option<u32>,
    },
    /// Let the next build of the same image and branch start.
    ReleaseBuildLock,
    /// Delete the temp image and the backend's leftovers, reporting `CleanedUp`.
    Cleanup,
    AnswerKill(KillAnswer),
    /// The job is over: release its ownership lock and end the driver.
    Finish,
    /// End the driver and touch nothing: the job is someone else's now.
    Leave,
}

/// The answer to a kill request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillAnswer {
    /// Recorded (now, or by an earlier request).
    Accepted,
    /// The job had already ended with this status.
    Finished(JobStatus),
}

type Effects = Vec<Effect>;

/// The job after `input`, and what to do about it.
pub fn step(record: &JobRecord, settings: &Settings, input: Input) -> (JobRecord, Effects) {
    let mut job = Step { record: record.clone(), settings, now: input.now };
    let effects = job.apply(input.event);
    (job.record, effects)
}

/// When the driver must next wake up with a [`Event::Tick`] if nothing else happens: the end
/// of the phase's timeout, or of a stop's grace and drain time.
pub fn deadline(record: &JobRecord, settings: &Settings) -> Option<Timestamp> {
    let JobState::Running(run) = &record.state else { return None };
    match &run.stop {
        None => {
            let started = record.times.start(run.phase)?;
            Some(started.add(settings.timeout(&record.spec, run.phase).to_std()))
        }
        Some(stop) => Some(stop.since.add(settings.drain())),
    }
}

/// The runs a driver of `record` should be following now.
pub fn followed(record: &JobRecord) -> Vec<RunKey> {
    match &record.state {
        JobState::Running(run) => {
            run.runs.iter().filter(|r| matches!(r.state, RunState::Started)).map(|r| run.key(record.id, r)).collect()
        }
        JobState::Waiting { .. } | JobState::Ending { .. } | JobState::Ended { .. } => Vec::new(),
    }
}

/// Whether a driver of `record` holds (or waits for) an active-job slot.
pub fn needs_slot(record: &JobRecord) -> bool {
    matches!(record.state, JobState::Waiting { .. } | JobState::Running(_))
}

struct Step<'a> {
    record: JobRecord,
    settings: &'a Settings,
    now: Timestamp,
}

impl Step<'_> {
    fn apply(&mut self, event: Event) -> Effects {
        match event {
            Event::Resumed => self.resume(),
            Event::Queued { ahead } => self.queued(ahead),
            Event::Admitted => self.admitted(),
            Event::RunStarted { run } => self.run_started(run),
            Event::RunNotStarted { run, message } => {
                self.run_done(run, RunOutcome::Ended { exit: RunExit::StartFailed { message } })
            }
            Event::RunBegan { run, at } => self.run_began(run, at),
            Event::RunExited { run, exit } => self.run_exited(run, exit),
            Event::RunVanished { run, message } => self.run_exited(run, RunExit::Lost { message }),
            Event::Tick => self.tick(),
            Event::KillAsked { request } => self.kill(request),
            Event::SecretsUnreadable { message } => self.secrets_unreadable(message),
            Event::DigestResolved { digest } => self.digest_resolved(digest),
            Event::PublishChecked { confirmed, problem } => self.publish_checked(confirmed, problem),
            Event::Diagnosed { diagnosis, tests } => self.diagnosed(diagnosis, tests),
            Event::CleanedUp { report } => self.cleaned_up(report),
            Event::CleanupAsked => self.cleanup_asked(),
            Event::Journaled { upto } => self.journaled(upto),
            Event::Lost => vec![Effect::Leave],
        }
    }

    /// Carry on from the record alone: archive what the outbox still holds, then redo what the
    /// state needs (every effect is idempotent, or guarded by the state).
    fn resume(&mut self) -> Effects {
        let mut effects = if self.record.outbox.is_empty() { Vec::new() } else { vec![Effect::Journal] };
        let id = self.record.id;
        match &self.record.state {
            JobState::Waiting { .. } => effects.push(Effect::Admit),
            JobState::Running(run) if run.all_done() => effects.extend(self.conclude()),
            JobState::Running(run) => {
                let open: Vec<RunKey> = run.runs.iter().filter(|r| !r.is_done()).map(|r| run.key(id, r)).collect();
                if run.stop.is_some() {
                    // Never start anything once a stop is under way: a run stopped and removed
                    // before the crash must not come back. Following a run that was never
                    // started reports it vanished, which counts as stopped.
                    effects.extend(open.iter().copied().map(Effect::FollowRun));
                    effects.push(Effect::StopRuns(open));
                } else {
                    for r in run.runs.iter().filter(|r| !r.is_done()) {
                        effects.push(match r.state {
                            RunState::ToStart => Effect::StartRun(run.key(id, r)),
                            RunState::Started | RunState::Done { .. } => Effect::FollowRun(run.key(id, r)),
                        });
                    }
                }
            }
            JobState::Ending { .. } => effects.extend([Effect::ReleaseBuildLock, Effect::Cleanup]),
            JobState::Ended { .. } => effects.extend([Effect::ReleaseBuildLock, Effect::Finish]),
        }
        effects
    }

    fn queued(&mut self, ahead: u32) -> Effects {
        let position = Some(ahead.max(1));
        match &mut self.record.state {
            JobState::Waiting { queue_position } if *queue_position != position => {
                *queue_position = position;
                self.event(JobEvent::Queued { position: ahead.max(1) });
                vec![Effect::Persist, Effect::Journal]
            }
            JobState::Waiting { .. } | JobState::Running(_) | JobState::Ending { .. } | JobState::Ended { .. } => {
                Vec::new()
            }
        }
    }

    fn admitted(&mut self) -> Effects {
        match self.record.state {
            JobState::Waiting { .. } => self.enter(Phase::Build),
            JobState::Running(_) | JobState::Ending { .. } | JobState::Ended { .. } => Vec::new(),
        }
    }

    /// The run `key` of the running phase, and whether a stop is under way.
    fn open_run(&mut self, key: RunKey) -> Option<(&mut crate::state::Run, bool)> {
        let JobState::Running(run) = &mut self.record.state else { return None };
        if run.phase != key.phase || key.job != self.record.id {
            return None;
        }
        let stopping = run.stop.is_some();
        run.run_mut(key.test_index).map(|r| (r, stopping))
    }

    fn test_command(&self, index: u32) -> String {
        self.record.test_commands().get(index as usize).cloned().unwrap_or_default()
    }

    fn event(&mut self, event: JobEvent) {
        self.record.outbox.event(self.now, event);
    }

    fn line(&mut self, phase: Phase, text: String) {
        self.record.outbox.line(self.now, phase, text);
    }
}

/// The runs of `run` not done yet.
fn open_runs(job: crate::id::JobId, run: &PhaseRun) -> Vec<RunKey> {
    run.runs.iter().filter(|r| !r.is_done()).map(|r| run.key(job, r)).collect()
}

fn failure(phase: Phase, reason: FailureReason, message: String) -> Failure {
    Failure::new(phase, reason, message)
}

/// `kill requested by <who>: <why>`, as the job's log says it.
pub fn kill_text(request: &KillRequest) -> String {
    let by = request.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
    let why = request.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    format!("kill requested{by}{why}")
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod runs;
mod stops;

#[cfg(test)]
mod tests;
