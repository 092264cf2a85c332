//! Why a phase failed, given how each of its runs ended: [`classify`], a plain function, and
//! how runs are named in the messages callers read.

use crate::id::RunKey;
use crate::ports::RunExit;
use crate::record::{Failure, FailureReason, JobRecord};
use crate::state::RunOutcome;
use crate::status::Phase;

/// The failure of `phase`, given how each of its runs ended; `None` if every run succeeded.
/// The cause is a first guess, for the diagnosis to settle from the runs' output.
pub fn classify(record: &JobRecord, phase: Phase, runs: &[(RunKey, RunOutcome)]) -> Option<(RunKey, Failure)> {
    let failed: Vec<&(RunKey, RunOutcome)> = runs.iter().filter(|(_, outcome)| !outcome.success()).collect();
    let (first_key, first_outcome) = failed.first().copied()?;
    let describe = |key: &RunKey, outcome: &RunOutcome| -> String {
        let what = run_name(record, key);
        match outcome {
            RunOutcome::Ended { exit: RunExit::Exited { code } } => format!("{what} exited with code {code}"),
            RunOutcome::Ended { exit: RunExit::Signaled { signal } } => format!("{what} was killed by signal {signal}"),
            RunOutcome::Ended { exit: RunExit::StartFailed { message } } => {
                format!("{what} could not start: {message}")
            }
            RunOutcome::Ended { exit: RunExit::Lost { message } } => format!("{what} was interrupted: {message}"),
            RunOutcome::Stopped => format!("{what} was stopped"),
        }
    };
    let (reason, exit_code) = match first_outcome {
        RunOutcome::Ended { exit: RunExit::Exited { code } } => (FailureReason::ExitCode, Some(*code)),
        RunOutcome::Ended { exit: RunExit::Signaled { signal } } => (FailureReason::ExitCode, Some(128 + signal)),
        RunOutcome::Ended { exit: RunExit::StartFailed { .. } } => (FailureReason::Backend, None),
        RunOutcome::Ended { exit: RunExit::Lost { .. } } | RunOutcome::Stopped => (FailureReason::Interrupted, None),
    };
    let message = match (phase, failed.len()) {
        (Phase::Test, n) if n > 1 => format!(
            "{n} of {} tests failed: {}",
            runs.len(),
            failed.iter().map(|(k, o)| describe(k, o)).collect::<Vec<_>>().join("; ")
        ),
        _ => describe(first_key, first_outcome),
    };
    let mut failure = Failure::new(phase, reason, message);
    failure.exit_code = exit_code;
    failure.test = first_key.test_index;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::JobId;
    use crate::image::ImageRef;
    use crate::time::Timestamp;
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
        RunOutcome::Ended { exit: RunExit::Exited { code } }
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
            vec![RunOutcome::Ended { exit: RunExit::Signaled { signal: 9 } }],
            Some((FailureReason::ExitCode, Some(137), "build was killed by signal 9")),
        );
        check(
            Phase::Build,
            vec![RunOutcome::Ended { exit: RunExit::Lost { message: "supervisor died".into() } }],
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
            vec![RunOutcome::Ended { exit: RunExit::StartFailed { message: "no skopeo".into() } }],
            Some((FailureReason::Backend, None, "publish could not start: no skopeo")),
        );
    }
}
