//! The engine's decisions, as plain functions with no IO: how a phase's runs ended → did the
//! phase pass, and if not, the [`Failure`] the caller sees; and the record changes of each
//! transition. The driver around them only waits, persists and acts.

use crate::id::RunKey;
use crate::ports::RunExit;
use crate::record::{Failure, FailureReason, JobRecord, TestResult, TestStatus};
use crate::status::{JobStatus, Phase};
use crate::time::Timestamp;

/// How one run of a phase ended, as the engine saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run ended and the backend reported how.
    Ended(RunExit),
    /// The engine stopped it (kill or timeout) before it ended on its own.
    Stopped,
}

/// The failure of `phase`, given how each of its runs ended; `None` if every run succeeded.
/// The failure's `log_tail` is left empty for the driver to fill from the archive.
pub fn classify(record: &JobRecord, phase: Phase, runs: &[(RunKey, RunOutcome)]) -> Option<(RunKey, Failure)> {
    let failed: Vec<&(RunKey, RunOutcome)> =
        runs.iter().filter(|(_, outcome)| !matches!(outcome, RunOutcome::Ended(exit) if exit.success())).collect();
    let (first_key, first_outcome) = failed.first().copied()?;
    let describe = |key: &RunKey, outcome: &RunOutcome| -> String {
        let what = run_name(record, key);
        match outcome {
            RunOutcome::Ended(RunExit::Exited { code }) => format!("{what} exited with code {code}"),
            RunOutcome::Ended(RunExit::Signaled { signal }) => format!("{what} was killed by signal {signal}"),
            RunOutcome::Ended(RunExit::StartFailed { message }) => format!("{what} could not start: {message}"),
            RunOutcome::Ended(RunExit::Lost { message }) => format!("{what} was interrupted: {message}"),
            RunOutcome::Stopped => format!("{what} was stopped"),
        }
    };
    let (reason, exit_code) = match first_outcome {
        RunOutcome::Ended(RunExit::Exited { code }) => (FailureReason::ExitCode, Some(*code)),
        RunOutcome::Ended(RunExit::Signaled { signal }) => (FailureReason::ExitCode, Some(128 + signal)),
        RunOutcome::Ended(RunExit::StartFailed { .. }) => (FailureReason::Backend, None),
        RunOutcome::Ended(RunExit::Lost { .. }) | RunOutcome::Stopped => (FailureReason::Interrupted, None),
    };
    let message = match (phase, failed.len()) {
        (Phase::Test, n) if n > 1 => format!(
            "{n} of {} tests failed: {}",
            runs.len(),
            failed.iter().map(|(k, o)| describe(k, o)).collect::<Vec<_>>().join("; ")
        ),
        _ => describe(first_key, first_outcome),
    };
    let failure = Failure { phase, reason, message, exit_code, retryable: reason.is_retryable(), log_tail: Vec::new() };
    Some((*first_key, failure))
}

/// How a run is named in messages: `build`, `test_commands[1] (`make check`)`, `publish`.
fn run_name(record: &JobRecord, key: &RunKey) -> String {
    match (key.phase, key.test_index) {
        (Phase::Test, Some(i)) => {
            let commands = &record.spec.test_commands;
            match commands.get(i as usize) {
                Some(command) => format!("test_commands[{i}] (`{}`)", abbreviate(command)),
                None => "the entry-point test".to_owned(),
            }
        }
        (phase, _) => phase.to_string(),
    }
}

fn abbreviate(command: &str) -> String {
    let one_line = command.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 60 {
        format!("{}…", one_line.chars().take(59).collect::<String>())
    } else {
        one_line
    }
}

/// The status after `phase` passed.
pub fn next_status(record: &JobRecord, phase: Phase) -> JobStatus {
    match phase {
        Phase::Build if record.spec.tests().is_empty() => JobStatus::Publishing,
        Phase::Build => JobStatus::Testing,
        Phase::Test => JobStatus::Publishing,
        Phase::Publish => JobStatus::Succeeded,
    }
}

/// Record that `phase` passed and enter the next status.
pub fn pass_phase(record: &mut JobRecord, phase: Phase, now: Timestamp) {
    record.times.set_end(phase, now);
    let next = next_status(record, phase);
    enter(record, next, now);
}

/// Enter `status`: stamp the start of its phase, or the end of the job.
pub fn enter(record: &mut JobRecord, status: JobStatus, now: Timestamp) {
    record.status = status;
    record.updated_at = now;
    if let Some(phase) = status.phase() {
        record.times.set_start(phase, now);
        if phase == Phase::Test {
            record.tests = record
                .spec
                .tests()
                .into_iter()
                .enumerate()
                .map(|(i, case)| TestResult {
                    index: i as u32,
                    command: case.to_string(),
                    status: TestStatus::Pending,
                    exit_code: None,
                    started: None,
                    ended: None,
                })
                .collect();
        }
    }
    if status.is_terminal() {
        record.times.job_end = Some(now);
        for test in &mut record.tests {
            if matches!(test.status, TestStatus::Pending | TestStatus::Running) {
                test.status = TestStatus::Stopped;
                test.ended.get_or_insert(now);
            }
        }
    }
}

/// End the job as failed.
pub fn fail(record: &mut JobRecord, failure: Failure, now: Timestamp) {
    if record.times.start(failure.phase).is_some() {
        record.times.set_end(failure.phase, now);
    }
    record.failure = Some(failure);
    enter(record, JobStatus::Failed, now);
}

/// End the job as killed, closing the phase it was in.
pub fn killed(record: &mut JobRecord, now: Timestamp) {
    if let Some(phase) = record.status.phase() {
        record.times.set_end(phase, now);
    }
    enter(record, JobStatus::Killed, now);
}

/// Record how one test ended.
pub fn test_ended(record: &mut JobRecord, index: u32, outcome: &RunOutcome, now: Timestamp) {
    let Some(test) = record.tests.iter_mut().find(|t| t.index == index) else { return };
    test.ended = Some(now);
    test.started.get_or_insert(now);
    (test.status, test.exit_code) = match outcome {
        RunOutcome::Ended(RunExit::Exited { code: 0 }) => (TestStatus::Passed, Some(0)),
        RunOutcome::Ended(RunExit::Exited { code }) => (TestStatus::Failed, Some(*code)),
        RunOutcome::Ended(RunExit::Signaled { signal }) => (TestStatus::Failed, Some(128 + signal)),
        RunOutcome::Ended(RunExit::StartFailed { .. } | RunExit::Lost { .. }) => (TestStatus::Failed, None),
        RunOutcome::Stopped => (TestStatus::Stopped, None),
    };
    record.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::JobId;
    use crate::image::ImageRef;
    use serde_json::json;

    fn record(tests: &[&str], entry_point: bool) -> JobRecord {
        let spec = crate::validate::job_spec(&json!({
            "repo_url": "https://example.com/r.git", "image_name": "app", "registry_url": "127.0.0.1:5000",
            "test_commands": tests, "test_entry_point": entry_point,
        }))
        .unwrap();
        let id = JobId::new();
        let temp: ImageRef = format!("127.0.0.1:5000/temp/{id}:latest").parse().unwrap();
        JobRecord::new(id, spec, temp, Timestamp::now())
    }

    fn exit(code: i32) -> RunOutcome {
        RunOutcome::Ended(RunExit::Exited { code })
    }

    /// One row: the phase, how its runs ended → the reason, exit code and message, or `None`.
    fn check(phase: Phase, outcomes: Vec<RunOutcome>, expected: Option<(FailureReason, Option<i32>, &str)>) {
        let record = record(&["make check", "false"], true);
        let runs: Vec<(RunKey, RunOutcome)> = record.runs(phase).into_iter().zip(outcomes).collect();
        let got = classify(&record, phase, &runs).map(|(_, f)| (f.reason, f.exit_code, f.message));
        let expected = expected.map(|(r, c, m)| (r, c, m.to_owned()));
        assert_eq!(got, expected);
    }

    #[test]
    fn classify_table() {
        check(Phase::Build, vec![exit(0)], None);
        check(Phase::Build, vec![exit(1)], Some((FailureReason::ExitCode, Some(1), "build exited with code 1")));
        check(
            Phase::Build,
            vec![RunOutcome::Ended(RunExit::Signaled { signal: 9 })],
            Some((FailureReason::ExitCode, Some(137), "build was killed by signal 9")),
        );
        check(
            Phase::Build,
            vec![RunOutcome::Ended(RunExit::Lost { message: "supervisor died".into() })],
            Some((FailureReason::Interrupted, None, "build was interrupted: supervisor died")),
        );
        check(Phase::Test, vec![exit(0), exit(0), exit(0)], None);
        check(
            Phase::Test,
            vec![exit(0), exit(1), exit(0)],
            Some((FailureReason::ExitCode, Some(1), "test_commands[1] (`false`) exited with code 1")),
        );
        check(
            Phase::Test,
            vec![exit(2), exit(0), exit(3)],
            Some((
                FailureReason::ExitCode,
                Some(2),
                "2 of 3 tests failed: test_commands[0] (`make check`) exited with code 2; the entry-point test exited with code 3",
            )),
        );
        check(
            Phase::Publish,
            vec![RunOutcome::Ended(RunExit::StartFailed { message: "no skopeo".into() })],
            Some((FailureReason::Backend, None, "publish could not start: no skopeo")),
        );
    }

    #[test]
    fn jobs_without_tests_go_from_build_to_publish() {
        let mut r = record(&[], false);
        enter(&mut r, JobStatus::Building, Timestamp::now());
        pass_phase(&mut r, Phase::Build, Timestamp::now());
        assert_eq!(r.status, JobStatus::Publishing);
        assert!(r.times.test_start.is_none());
        pass_phase(&mut r, Phase::Publish, Timestamp::now());
        assert_eq!(r.status, JobStatus::Succeeded);
        assert!(r.times.job_end.is_some());
    }

    #[test]
    fn entering_tests_lists_them_and_ending_stops_the_unfinished() {
        let mut r = record(&["a", "b"], false);
        enter(&mut r, JobStatus::Testing, Timestamp::now());
        assert_eq!(r.tests.len(), 2);
        test_ended(&mut r, 0, &exit(0), Timestamp::now());
        killed(&mut r, Timestamp::now());
        assert_eq!(r.status, JobStatus::Killed);
        assert_eq!(r.tests[0].status, TestStatus::Passed);
        assert_eq!(r.tests[1].status, TestStatus::Stopped);
        assert!(r.times.test_end.is_some());
    }
}
