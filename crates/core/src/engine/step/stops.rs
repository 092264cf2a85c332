//! `step`'s transitions that stop or end a job from outside its runs: kills, deadlines,
//! unreadable secrets, cleanup and the journal's progress.

use crate::events::JobEvent;
use crate::id::RunKey;
use crate::record::{FailureReason, KillRequest};
use crate::state::{CleanupReport, JobState, Outcome, PhaseRun, RunOutcome, RunState, Stop, StopCause};
use crate::status::Phase;

use super::{Effect, Effects, KillAnswer, Step, deadline, failure, kill_text, open_runs};

impl Step<'_> {
    pub(super) fn kill(&mut self, request: KillRequest) -> Effects {
        let ids: Vec<RunKey>;
        match &mut self.record.state {
            JobState::Waiting { .. } => {
                self.announce_kill(&request, Phase::Build);
                let mut effects = self.end(Outcome::Killed { request });
                effects.insert(2, Effect::AnswerKill(KillAnswer::Accepted));
                return effects;
            }
            JobState::Running(PhaseRun { stop: Some(Stop { cause: StopCause::Kill { .. }, .. }), .. })
            | JobState::Ending { outcome: Outcome::Killed { .. } }
            | JobState::Ended { outcome: Outcome::Killed { .. }, .. } => {
                return vec![Effect::AnswerKill(KillAnswer::Accepted)];
            }
            JobState::Ending { outcome } | JobState::Ended { outcome, .. } => {
                return vec![Effect::AnswerKill(KillAnswer::Finished(outcome.status()))];
            }
            JobState::Running(run) => {
                // A kill during a timeout's stop takes over: the caller asked for KILLED.
                let was_stopping = run.stop.is_some();
                run.stop = Some(Stop { cause: StopCause::Kill { request: request.clone() }, since: self.now });
                ids = if was_stopping { Vec::new() } else { open_runs(self.record.id, run) };
            }
        }
        let phase = self.record.phase().unwrap_or(Phase::Build);
        self.announce_kill(&request, phase);
        let mut effects = vec![Effect::Persist, Effect::Journal, Effect::AnswerKill(KillAnswer::Accepted)];
        if !ids.is_empty() {
            effects.push(Effect::StopRuns(ids));
        }
        effects
    }

    pub(super) fn announce_kill(&mut self, request: &KillRequest, phase: Phase) {
        self.line(phase, kill_text(request));
        self.event(JobEvent::KillRequested { by: request.by.clone(), reason: request.reason.clone() });
    }

    pub(super) fn tick(&mut self) -> Effects {
        if deadline(&self.record, self.settings).is_none_or(|at| self.now < at) {
            return Vec::new();
        }
        let id = self.record.id;
        let JobState::Running(run) = &mut self.record.state else { return Vec::new() };
        if run.stop.is_some() {
            // The stopped runs did not report an end in time: give up on them.
            for r in run.runs.iter_mut().filter(|r| !r.is_done()) {
                r.state = RunState::Done { outcome: RunOutcome::Stopped };
                r.ended = Some(self.now);
            }
            return self.conclude();
        }
        run.stop = Some(Stop { cause: StopCause::Timeout, since: self.now });
        let (phase, open) = (run.phase, open_runs(id, run));
        let timeout = self.settings.timeout(&self.record.spec, phase);
        self.line(phase, format!("{phase} exceeded its timeout of {timeout}; stopping it"));
        self.event(JobEvent::TimedOut { phase, timeout: timeout.to_string() });
        vec![Effect::Persist, Effect::Journal, Effect::StopRuns(open)]
    }

    pub(super) fn secrets_unreadable(&mut self, message: String) -> Effects {
        match &self.record.state {
            JobState::Running(run) => {
                let phase = run.phase;
                let mut failure = failure(phase, FailureReason::Secret, message);
                // The store may be down for a moment: resubmitting may well work.
                failure.retryable = true;
                let open = open_runs(self.record.id, run);
                let mut effects = self.fail(failure, None);
                if !open.is_empty() {
                    effects.insert(0, Effect::StopRuns(open));
                }
                effects
            }
            JobState::Waiting { .. } | JobState::Ending { .. } | JobState::Ended { .. } => Vec::new(),
        }
    }

    /// Only an ended job with leftovers is cleaned up again; a running one is killed first
    /// (its cleanup follows), and a clean one has nothing left.
    pub(super) fn cleanup_asked(&mut self) -> Effects {
        match &self.record.state {
            JobState::Ended { cleanup, .. } if !cleanup.is_complete() => vec![Effect::Cleanup],
            JobState::Ended { .. } => vec![Effect::Finish],
            JobState::Waiting { .. } | JobState::Running(_) | JobState::Ending { .. } => Vec::new(),
        }
    }

    pub(super) fn cleaned_up(&mut self, report: CleanupReport) -> Effects {
        let (JobState::Ending { outcome } | JobState::Ended { outcome, .. }) = &self.record.state else {
            return Vec::new();
        };
        let outcome = outcome.clone();
        let remaining = report.remaining.iter().map(|left| format!("{}: {}", left.what, left.why)).collect();
        self.event(JobEvent::CleanupDone { removed: report.removed.clone(), remaining });
        self.record.state = JobState::Ended { outcome, cleanup: report };
        vec![Effect::Persist, Effect::Journal, Effect::Finish]
    }

    /// The outbox is archived up to `upto`. An ended job whose outbox is empty is no longer
    /// live: write that, so no one drives it again.
    pub(super) fn journaled(&mut self, upto: u64) -> Effects {
        let before = self.record.outbox.pending.len();
        self.record.outbox.archived(upto);
        let emptied = before > 0 && self.record.outbox.is_empty();
        if emptied && self.record.state.is_ended() { vec![Effect::Persist] } else { Vec::new() }
    }
}
