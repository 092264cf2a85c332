//! `step`'s transitions while a phase runs: entering a phase, its runs starting, beginning and
//! ending, what all of them ending means (pass, fail, follow-up checks), and the end of the job.

use crate::diagnose::Diagnosis;
use crate::events::{JobEvent, PhaseResult};
use crate::id::RunKey;
use crate::image::{Digest, ImageRef};
use crate::ports::RunExit;
use crate::record::{Failure, FailureReason};
use crate::state::{JobState, Outcome, PhaseRun, RunOutcome, RunState, Stop, StopCause, test_status};
use crate::status::Phase;
use crate::time::Timestamp;

use super::super::classify::classify;
use super::{Effect, Effects, Step, failure, millis};

impl Step<'_> {
    /// Start `phase`: every run to be started, persisted before any is.
    pub(super) fn enter(&mut self, phase: Phase) -> Effects {
        let run = PhaseRun::new(phase, self.record.spec.tests().len());
        let starts = run.runs.iter().map(|r| Effect::StartRun(run.key(self.record.id, r))).collect::<Vec<_>>();
        self.record.state = JobState::Running(run);
        self.record.times.set_start(phase, self.now);
        self.event(JobEvent::StatusChanged { status: phase.status() });
        self.event(JobEvent::PhaseStarted { phase });
        [Effect::Persist, Effect::Journal].into_iter().chain(starts).collect()
    }

    pub(super) fn run_started(&mut self, key: RunKey) -> Effects {
        let Some((run, stopping)) = self.open_run(key) else { return Vec::new() };
        if !matches!(run.state, RunState::ToStart) {
            return Vec::new();
        }
        run.state = RunState::Started;
        let mut effects = vec![Effect::FollowRun(key)];
        if stopping {
            // A stop arrived while the start was under way.
            effects.push(Effect::StopRuns(vec![key]));
        }
        effects
    }

    pub(super) fn run_began(&mut self, key: RunKey, at: Timestamp) -> Effects {
        let Some((run, _)) = self.open_run(key) else { return Vec::new() };
        if run.began.is_some() {
            return Vec::new();
        }
        run.began = Some(at);
        let Some(index) = key.test_index else { return Vec::new() };
        let command = self.test_command(index);
        self.event(JobEvent::TestStarted { index, command });
        vec![Effect::Persist, Effect::Journal]
    }

    /// A run ended on its own; while a stop is under way, a failing end counts as stopped.
    pub(super) fn run_exited(&mut self, key: RunKey, exit: RunExit) -> Effects {
        let stopping = matches!(&self.record.state, JobState::Running(PhaseRun { stop: Some(_), .. }));
        let outcome = if stopping && !exit.success() { RunOutcome::Stopped } else { RunOutcome::Ended { exit } };
        self.run_done(key, outcome)
    }

    pub(super) fn run_done(&mut self, key: RunKey, outcome: RunOutcome) -> Effects {
        let now = self.now;
        let Some((run, _)) = self.open_run(key) else { return Vec::new() };
        if run.is_done() {
            return Vec::new();
        }
        run.state = RunState::Done { outcome: outcome.clone() };
        run.ended = Some(now);
        let duration = run.began.map(|began| millis(now.since(began)));
        if let Some(index) = key.test_index {
            let (status, exit_code) = test_status(&outcome);
            self.event(JobEvent::TestEnded { index, status, exit_code, duration_ms: duration });
        }
        match &self.record.state {
            JobState::Running(run) if run.all_done() => self.conclude(),
            _ => vec![Effect::Persist, Effect::Journal],
        }
    }

    /// Every run of the phase is done: decide what that means for the job.
    pub(super) fn conclude(&mut self) -> Effects {
        let JobState::Running(run) = &self.record.state else { return Vec::new() };
        let phase = run.phase;
        match run.stop.clone() {
            Some(Stop { cause: StopCause::Kill { .. }, .. }) if phase == Phase::Publish => {
                // Some targets may have the image already: say which, honestly.
                vec![Effect::Persist, Effect::Journal, Effect::CheckPublished]
            }
            Some(Stop { cause: StopCause::Kill { request }, .. }) => self.end(Outcome::Killed { request }),
            Some(Stop { cause: StopCause::Timeout, .. }) => {
                let timeout = self.settings.timeout(&self.record.spec, phase);
                let message = format!("{phase} did not finish within its timeout of {timeout}");
                self.fail(failure(phase, FailureReason::Timeout, message), None)
            }
            None => match classify(&self.record, phase, &run.outcomes(self.record.id)) {
                Some((key, failure)) => self.fail(failure, key.test_index),
                None => match phase {
                    Phase::Build => vec![Effect::Persist, Effect::Journal, Effect::ResolveDigest],
                    Phase::Test => self.pass(Phase::Test, None),
                    Phase::Publish => vec![Effect::Persist, Effect::Journal, Effect::CheckPublished],
                },
            },
        }
    }

    /// `phase` passed: close it and go on to the next phase, or succeed.
    pub(super) fn pass(&mut self, phase: Phase, digest: Option<&Digest>) -> Effects {
        self.close_phase(PhaseResult::Passed, digest);
        match phase {
            Phase::Build if self.record.spec.tests().is_empty() => self.enter(Phase::Publish),
            Phase::Build => self.enter(Phase::Test),
            Phase::Test => self.enter(Phase::Publish),
            Phase::Publish => self.end(Outcome::Succeeded),
        }
    }

    pub(super) fn digest_resolved(&mut self, digest: Result<Digest, String>) -> Effects {
        if !self.concluding(Phase::Build) {
            return Vec::new();
        }
        match digest {
            Ok(digest) => {
                self.record.image_digest = Some(digest.clone());
                self.pass(Phase::Build, Some(&digest))
            }
            Err(message) => self.fail(failure(Phase::Build, FailureReason::Registry, message), None),
        }
    }

    pub(super) fn publish_checked(&mut self, confirmed: Vec<ImageRef>, problem: Option<String>) -> Effects {
        if !self.concluding(Phase::Publish) {
            return Vec::new();
        }
        let references = confirmed.iter().map(ToString::to_string).collect();
        self.record.published = confirmed;
        if !self.record.published.is_empty() {
            self.event(JobEvent::Published { references });
        }
        let JobState::Running(run) = &self.record.state else { return Vec::new() };
        match (run.stop.clone(), problem) {
            (Some(Stop { cause: StopCause::Kill { request }, .. }), _) => self.end(Outcome::Killed { request }),
            (_, Some(message)) => self.fail(failure(Phase::Publish, FailureReason::Registry, message), None),
            (_, None) => self.pass(Phase::Publish, None),
        }
    }

    /// The phase's runs are all done and it waits for a follow-up (digest, publish check).
    pub(super) fn concluding(&self, phase: Phase) -> bool {
        matches!(&self.record.state, JobState::Running(run) if run.phase == phase && run.all_done())
    }

    /// Decide the failure, then diagnose it before anything is persisted.
    pub(super) fn fail(&mut self, failure: Failure, test: Option<u32>) -> Effects {
        let phase = failure.phase;
        self.end(Outcome::Failed { failure });
        vec![Effect::Diagnose { phase, test }]
    }

    pub(super) fn diagnosed(&mut self, diagnosis: Diagnosis, tests: Vec<(u32, Vec<String>)>) -> Effects {
        match &mut self.record.state {
            JobState::Ending { outcome: Outcome::Failed { failure } } => {
                diagnosis.apply(failure);
                for (index, excerpt) in tests {
                    if let Some(test) = self.record.tests.iter_mut().find(|t| t.index == index) {
                        test.excerpt = excerpt;
                    }
                }
                vec![Effect::Persist, Effect::Journal, Effect::ReleaseBuildLock, Effect::Cleanup]
            }
            JobState::Waiting { .. } | JobState::Running(_) | JobState::Ending { .. } | JobState::Ended { .. } => {
                Vec::new()
            }
        }
    }

    /// The job has its outcome: close the phase it was in, then remove what it left behind.
    pub(super) fn end(&mut self, outcome: Outcome) -> Effects {
        let result = match &outcome {
            Outcome::Succeeded => None,
            Outcome::Failed { failure } if failure.reason == FailureReason::Timeout => Some(PhaseResult::TimedOut),
            Outcome::Failed { .. } => Some(PhaseResult::Failed),
            Outcome::Killed { .. } => Some(PhaseResult::Killed),
        };
        if let Some(result) = result {
            self.close_phase(result, None);
        }
        let status = outcome.status();
        self.record.state = JobState::Ending { outcome };
        self.record.times.job_end = Some(self.now);
        self.event(JobEvent::StatusChanged { status });
        vec![Effect::Persist, Effect::Journal, Effect::ReleaseBuildLock, Effect::Cleanup]
    }

    /// Stamp the end of the running phase and keep its tests (those not done were stopped).
    pub(super) fn close_phase(&mut self, result: PhaseResult, digest: Option<&Digest>) {
        let commands = self.record.test_commands();
        let JobState::Running(run) = &mut self.record.state else { return };
        let phase = run.phase;
        for r in run.runs.iter_mut().filter(|r| !r.is_done()) {
            r.state = RunState::Done { outcome: RunOutcome::Stopped };
            r.ended = Some(self.now);
        }
        if phase == Phase::Test {
            self.record.tests = run.test_results(&commands);
        }
        self.record.times.set_end(phase, self.now);
        self.event(JobEvent::PhaseEnded { phase, result, digest: digest.map(ToString::to_string) });
    }
}
