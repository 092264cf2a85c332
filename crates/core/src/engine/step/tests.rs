//! `step` as a table of short scenarios: each line is an event and the effects it must give,
//! written as the driver would carry them out; states and events are checked where they
//! matter, in the compact form `Scenario::state` and `Scenario::events` print.

use std::fmt::Write as _;

use serde_json::json;

use super::*;
use crate::failure::Cause;
use crate::id::JobId;
use crate::logs::NewEntry;
use crate::record::TestStatus;
use crate::state::Leftover;
use crate::state::{Outcome, Stop, StopCause};

/// One job going through `step`, one event at a time, a second apart.
struct Scenario {
    record: JobRecord,
    settings: Settings,
    now: Timestamp,
    /// What the journal holds so far, one entry a line.
    journal: String,
}

impl Scenario {
    fn new(tests: &[&str]) -> Self {
        let spec = crate::validate::job_spec(&json!({
            "repo_url": "https://example.com/r.git", "image_name": "app", "registry_url": "127.0.0.1:5000",
            "image_tags": ["v1"], "test_commands": tests, "test_timeout": "10m",
        }))
        .unwrap();
        let id = JobId::new();
        let temp = format!("127.0.0.1:5000/temp/{id}:latest").parse().unwrap();
        let now = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        Scenario {
            record: JobRecord::new(id, spec, temp, now),
            settings: Settings::default(),
            now,
            journal: String::new(),
        }
    }

    /// Step `event` one second after the last one; the effects as one line.
    fn on(&mut self, event: Event) -> String {
        self.now = self.now.add(std::time::Duration::from_secs(1));
        self.at(self.now, event)
    }

    /// Step `event` at `now`. A `journal` effect is carried out as the driver does: the outbox
    /// goes to the journal and `Journaled` is stepped at once, its effects shown in place.
    fn at(&mut self, now: Timestamp, event: Event) -> String {
        self.now = now;
        let mut shown = Vec::new();
        let mut queue: std::collections::VecDeque<Effect> = self.step(event).into();
        while let Some(effect) = queue.pop_front() {
            shown.push(self.effect(&effect));
            if effect == Effect::Journal {
                self.archive();
                let upto = self.record.outbox.written;
                for next in self.step(Event::Journaled { upto }).into_iter().rev() {
                    queue.push_front(next);
                }
            }
        }
        shown.join(", ")
    }

    fn step(&mut self, event: Event) -> Vec<Effect> {
        let (record, effects) = step(&self.record, &self.settings, Input { now: self.now, event });
        self.record = record;
        effects
    }

    /// The outbox's entries into `journal`, one per line.
    fn archive(&mut self) {
        for entry in self.record.outbox.entries() {
            match entry {
                NewEntry::Event(event) => {
                    let mut json = serde_json::to_value(&event.event).unwrap();
                    let name = json["type"].as_str().unwrap_or("?").to_owned();
                    json.as_object_mut().unwrap().remove("type");
                    let _ = writeln!(self.journal, "{name} {json}");
                }
                NewEntry::Line(line) => {
                    let _ = writeln!(self.journal, "line {}: {}", line.phase, line.text);
                }
            }
        }
    }

    /// Run `effects` lines in order, asserting each; returns the scenario for more.
    fn check(&mut self, lines: Vec<(Event, &str)>) -> &mut Self {
        for (i, (event, expected)) in lines.into_iter().enumerate() {
            let shown = format!("{event:?}");
            assert_eq!(self.on(event), expected, "line {i}: {shown}\nstate: {}", self.state());
        }
        self
    }

    fn key(&self, run: &str) -> RunKey {
        let id = self.record.id;
        match run {
            "build" => RunKey::build(id),
            "publish" => RunKey::publish(id),
            test => RunKey::test(id, test.trim_start_matches("test").parse().unwrap()),
        }
    }

    fn effect(&self, effect: &Effect) -> String {
        let run = |key: &RunKey| match key.test_index {
            Some(i) => format!("test{i}"),
            None => key.phase.to_string(),
        };
        match effect {
            Effect::Persist => "persist".into(),
            Effect::Journal => "journal".into(),
            Effect::Admit => "admit".into(),
            Effect::StartRun(key) => format!("start {}", run(key)),
            Effect::FollowRun(key) => format!("follow {}", run(key)),
            Effect::StopRuns(keys) => format!("stop [{}]", keys.iter().map(run).collect::<Vec<_>>().join(" ")),
            Effect::ResolveDigest => "resolve digest".into(),
            Effect::CheckPublished => "check published".into(),
            Effect::Diagnose { phase, test } => match test {
                Some(i) => format!("diagnose test{i}"),
                None => format!("diagnose {phase}"),
            },
            Effect::ReleaseBuildLock => "release build lock".into(),
            Effect::Cleanup => "cleanup".into(),
            Effect::AnswerKill(KillAnswer::Accepted) => "answer accepted".into(),
            Effect::AnswerKill(KillAnswer::Finished(status)) => format!("answer finished {status}"),
            Effect::Finish => "finish".into(),
            Effect::Leave => "leave".into(),
        }
    }

    /// The state in one line: `running test [done(exit 0) started]`, `ending failed(exit_code)`.
    fn state(&self) -> String {
        match &self.record.state {
            JobState::Waiting { queue_position } => format!("waiting {queue_position:?}"),
            JobState::Running(run) => {
                let runs: Vec<String> = run
                    .runs
                    .iter()
                    .map(|r| match &r.state {
                        RunState::ToStart => "to start".to_owned(),
                        RunState::Started => "started".to_owned(),
                        RunState::Done { outcome: RunOutcome::Stopped } => "stopped".to_owned(),
                        RunState::Done { outcome: RunOutcome::Ended { exit } } => format!("{exit:?}"),
                    })
                    .collect();
                let stop = match &run.stop {
                    Some(Stop { cause: StopCause::Kill { .. }, .. }) => " stopping(kill)",
                    Some(Stop { cause: StopCause::Timeout, .. }) => " stopping(timeout)",
                    None => "",
                };
                format!("running {} [{}]{stop}", run.phase, runs.join(", "))
            }
            JobState::Ending { outcome } => format!("ending {}", outcome_text(outcome)),
            JobState::Ended { outcome, cleanup } => {
                format!(
                    "ended {} cleanup {}",
                    outcome_text(outcome),
                    if cleanup.is_complete() { "complete" } else { "partial" }
                )
            }
        }
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Succeeded => "succeeded".into(),
        Outcome::Failed { failure } => format!("failed({:?}: {})", failure.reason, failure.message),
        Outcome::Killed { request } => format!("killed({})", request.reason.as_deref().unwrap_or("-")),
    }
}

fn digest() -> Digest {
    format!("sha256:{}", "a".repeat(64)).parse().unwrap()
}

fn kill(reason: &str) -> Event {
    let at = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
    Event::KillAsked { request: KillRequest { at, by: Some("agent".into()), reason: Some(reason.into()) } }
}

fn exited(s: &Scenario, run: &str, code: i32) -> Event {
    Event::RunExited { run: s.key(run), exit: RunExit::Exited { code } }
}

fn started(s: &Scenario, run: &str) -> Event {
    Event::RunStarted { run: s.key(run) }
}

fn complete() -> Event {
    Event::CleanedUp { report: CleanupReport { removed: vec!["temp image".into()], remaining: vec![] } }
}

/// A scenario already in its build, with the build started.
fn building(tests: &[&str]) -> Scenario {
    let mut s = Scenario::new(tests);
    let build = started(&s, "build");
    s.check(vec![
        (Event::Resumed, "admit"),
        (Event::Admitted, "persist, journal, start build"),
        (build, "follow build"),
    ]);
    s
}

/// A scenario in its test phase, every test started.
fn testing(tests: &[&str]) -> Scenario {
    let mut s = building(tests);
    let exit = exited(&s, "build", 0);
    s.on(exit);
    s.on(Event::DigestResolved { digest: Ok(digest()) });
    for i in 0..tests.len() {
        let test = started(&s, &format!("test{i}"));
        s.on(test);
    }
    s
}

#[test]
fn a_passing_pipeline() {
    let mut s = Scenario::new(&["make test"]);
    let (b, build0, test_began, test0, publish, publish0) = (
        started(&s, "build"),
        exited(&s, "build", 0),
        // Stepped ninth, a second before the test's exit.
        Event::RunBegan { run: s.key("test0"), at: s.now.add(std::time::Duration::from_secs(9)) },
        exited(&s, "test0", 0),
        started(&s, "publish"),
        exited(&s, "publish", 0),
    );
    let test = started(&s, "test0");
    let target = "127.0.0.1:5000/app:v1".parse().unwrap();
    s.check(vec![
        (Event::Resumed, "admit"),
        (Event::Queued { ahead: 2 }, "persist, journal"),
        (Event::Queued { ahead: 2 }, ""),
        (Event::Admitted, "persist, journal, start build"),
        (b, "follow build"),
        (build0, "persist, journal, resolve digest"),
        (Event::DigestResolved { digest: Ok(digest()) }, "persist, journal, start test0"),
        (test, "follow test0"),
        (test_began, "persist, journal"),
        (test0, "persist, journal, start publish"),
        (publish, "follow publish"),
        (publish0, "persist, journal, check published"),
        (
            Event::PublishChecked { confirmed: vec![target], problem: None },
            "persist, journal, release build lock, cleanup",
        ),
        (complete(), "persist, journal, persist, finish"),
    ]);
    assert_eq!(s.state(), "ended succeeded cleanup complete");
    insta::assert_snapshot!(s.journal, @r#"
    queued {"position":2}
    status_changed {"status":"BUILDING"}
    phase_started {"phase":"build"}
    phase_ended {"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","phase":"build","result":"passed"}
    status_changed {"status":"TESTING"}
    phase_started {"phase":"test"}
    test_started {"command":"make test","index":0}
    test_ended {"duration_ms":1000,"exit_code":0,"index":0,"status":"passed"}
    phase_ended {"phase":"test","result":"passed"}
    status_changed {"status":"PUBLISHING"}
    phase_started {"phase":"publish"}
    published {"references":["127.0.0.1:5000/app:v1"]}
    phase_ended {"phase":"publish","result":"passed"}
    status_changed {"status":"SUCCEEDED"}
    cleanup_done {"removed":["temp image"]}
    "#);
    // Once its last events are archived, the ended job is written once more, no longer live.
    assert!(!s.record.is_live() && s.record.cleaned_up());
    assert_eq!(s.record.tests[0].exit_code, Some(0));
    assert_eq!(s.record.image_digest, Some(digest()));
}

#[test]
fn a_job_without_tests_goes_from_build_to_publish() {
    let mut s = building(&[]);
    let exit = exited(&s, "build", 0);
    s.check(vec![
        (exit, "persist, journal, resolve digest"),
        (Event::DigestResolved { digest: Ok(digest()) }, "persist, journal, start publish"),
    ]);
    assert!(s.record.times.test_start.is_none());
}

#[test]
fn failures_are_diagnosed_before_anything_is_persisted() {
    let mut s = building(&["make test"]);
    let exit = exited(&s, "build", 2);
    s.check(vec![
        (exit, "diagnose build"),
        (diagnosed(Cause::Dockerfile, &["step 3 failed"]), "persist, journal, release build lock, cleanup"),
    ]);
    assert_eq!(s.state(), "ending failed(ExitCode: build exited with code 2)");
    let failure = s.record.failure().unwrap();
    assert_eq!((failure.exit_code, failure.log_tail.clone()), (Some(2), vec!["step 3 failed".to_owned()]));
    assert_eq!((failure.cause, failure.excerpt.clone()), (Cause::Dockerfile, vec!["step 3 failed".to_owned()]));
    assert!(!failure.retryable);
}

#[test]
fn each_failed_test_gets_its_excerpt() {
    let mut s = testing(&["a", "b"]);
    let (t0, t1) = (exited(&s, "test0", 1), exited(&s, "test1", 2));
    s.check(vec![(t0, "persist, journal"), (t1, "diagnose test0")]);
    let event = Event::Diagnosed {
        diagnosis: diagnosis(Cause::TestFailed, &["a failed"]),
        tests: vec![(0, vec!["a failed".into()]), (1, vec!["b failed".into()])],
    };
    s.check(vec![(event, "persist, journal, release build lock, cleanup")]);
    let excerpts: Vec<Vec<String>> = s.record.tests.iter().map(|t| t.excerpt.clone()).collect();
    assert_eq!(excerpts, vec![vec!["a failed".to_owned()], vec!["b failed".to_owned()]]);
}

fn diagnosis(cause: Cause, lines: &[&str]) -> crate::diagnose::Diagnosis {
    let lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    crate::diagnose::Diagnosis {
        cause,
        retryable: false,
        dockerfile: None,
        excerpt: lines.clone(),
        hint: None,
        log_tail: lines,
    }
}

fn diagnosed(cause: Cause, lines: &[&str]) -> Event {
    Event::Diagnosed { diagnosis: diagnosis(cause, lines), tests: Vec::new() }
}

#[test]
fn a_failed_test_lets_the_others_finish_and_names_itself() {
    let mut s = testing(&["true", "exit 3"]);
    let (t1, t0) = (exited(&s, "test1", 3), exited(&s, "test0", 0));
    s.check(vec![(t1, "persist, journal"), (t0, "diagnose test1")]);
    assert_eq!(s.state(), "ending failed(ExitCode: test_commands[1] (`exit 3`) exited with code 3)");
    let statuses: Vec<_> = s.record.tests.iter().map(|t| (t.status, t.exit_code)).collect();
    assert_eq!(statuses, [(TestStatus::Passed, Some(0)), (TestStatus::Failed, Some(3))]);
    assert!(s.record.published.is_empty());
}

#[test]
fn runs_that_never_start_or_vanish_fail_the_phase() {
    let mut s = building(&[]);
    let build = s.key("build");
    s.check(vec![(Event::RunVanished { run: build, message: "node lost".into() }, "diagnose build")]);
    assert_eq!(s.state(), "ending failed(Interrupted: build was interrupted: node lost)");
    assert!(s.record.failure().unwrap().retryable);

    let mut s = Scenario::new(&[]);
    s.check(vec![(Event::Resumed, "admit"), (Event::Admitted, "persist, journal, start build")]);
    let build = s.key("build");
    s.check(vec![(Event::RunNotStarted { run: build, message: "no buildah".into() }, "diagnose build")]);
    assert_eq!(s.state(), "ending failed(Backend: build could not start: no buildah)");
}

#[test]
fn a_kill_while_waiting_ends_the_job_at_once() {
    let mut s = Scenario::new(&[]);
    s.check(vec![
        (Event::Resumed, "admit"),
        (kill("wrong repo"), "persist, journal, answer accepted, release build lock, cleanup"),
        (Event::Admitted, ""),
    ]);
    assert_eq!(s.state(), "ending killed(wrong repo)");
    assert!(s.record.times.build_start.is_none(), "nothing started");
}

#[test]
fn a_kill_in_each_phase_stops_its_runs_and_publishes_nothing() {
    let mut s = building(&["true"]);
    let exit = exited(&s, "build", 137);
    s.check(vec![
        (kill("wrong base"), "persist, journal, answer accepted, stop [build]"),
        (kill("again"), "answer accepted"),
        (exit, "persist, journal, release build lock, cleanup"),
    ]);
    assert_eq!(s.state(), "ending killed(wrong base)", "the first kill stands, and a failing exit counts as stopped");

    let mut s = testing(&["sleep 60", "true"]);
    let (t1, t0) = (exited(&s, "test1", 0), exited(&s, "test0", 143));
    s.check(vec![
        (t1, "persist, journal"),
        (kill("enough"), "persist, journal, answer accepted, stop [test0]"),
        (t0, "persist, journal, release build lock, cleanup"),
    ]);
    let statuses: Vec<_> = s.record.tests.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [TestStatus::Stopped, TestStatus::Passed]);

    // Killed while publishing: what reached the registry is recorded honestly.
    let mut s = testing(&[]);
    let (publish, exit) = (started(&s, "publish"), exited(&s, "publish", 1));
    let target: ImageRef = "127.0.0.1:5000/app:v1".parse().unwrap();
    s.check(vec![
        (publish, "follow publish"),
        (kill("stop"), "persist, journal, answer accepted, stop [publish]"),
        (exit, "persist, journal, check published"),
        (
            Event::PublishChecked { confirmed: vec![target.clone()], problem: None },
            "persist, journal, release build lock, cleanup",
        ),
    ]);
    assert_eq!((s.state(), s.record.published.clone()), ("ending killed(stop)".to_owned(), vec![target]));
}

#[test]
fn kills_after_the_end_are_refused_and_repeated_kills_answered() {
    let mut s = building(&[]);
    let exit = exited(&s, "build", 1);
    s.check(vec![
        (exit, "diagnose build"),
        (diagnosed(Cause::BuildStep, &[]), "persist, journal, release build lock, cleanup"),
        (kill("late"), "answer finished FAILED"),
    ]);
}

#[test]
fn a_phase_past_its_timeout_is_stopped_then_failed() {
    let mut s = testing(&["sleep 600"]);
    let start = s.record.times.test_start.unwrap();
    let just_before = start.add(std::time::Duration::from_secs(599));
    let past = start.add(std::time::Duration::from_secs(600));
    assert_eq!(s.at(just_before, Event::Tick), "", "not yet");
    assert_eq!(s.at(past, Event::Tick), "persist, journal, stop [test0]");
    assert_eq!(s.state(), "running test [started] stopping(timeout)");
    let exit = exited(&s, "test0", 143);
    s.check(vec![(exit, "diagnose test")]);
    assert_eq!(s.state(), "ending failed(Timeout: test did not finish within its timeout of 10m)");
    assert!(s.journal.contains("line test: test exceeded its timeout of 10m; stopping it"), "{}", s.journal);
}

#[test]
fn stopped_runs_that_never_report_are_given_up_after_the_drain() {
    let mut s = building(&[]);
    s.on(kill("now"));
    let since = s.now;
    let drained = since.add(s.settings.drain());
    assert_eq!(deadline(&s.record, &s.settings), Some(drained));
    assert_eq!(s.at(drained, Event::Tick), "persist, journal, release build lock, cleanup");
    assert_eq!(s.state(), "ending killed(now)");
    let late = exited(&s, "build", 0);
    assert_eq!(s.on(late), "", "a report after giving up changes nothing");
}

#[test]
fn a_kill_during_a_timeout_takes_over() {
    let mut s = building(&[]);
    let past = s.record.times.build_start.unwrap().add(s.settings.build_timeout.to_std());
    s.at(past, Event::Tick);
    let exit = exited(&s, "build", 143);
    s.check(vec![
        (kill("give up"), "persist, journal, answer accepted"),
        (exit, "persist, journal, release build lock, cleanup"),
    ]);
    assert_eq!(s.state(), "ending killed(give up)");
}

#[test]
fn a_run_that_succeeds_while_being_stopped_counts_as_passed() {
    let mut s = testing(&["true", "sleep 9"]);
    let (t0, t1) = (exited(&s, "test0", 0), exited(&s, "test1", 143));
    s.on(kill("x"));
    s.check(vec![(t0, "persist, journal"), (t1, "persist, journal, release build lock, cleanup")]);
    let statuses: Vec<_> = s.record.tests.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [TestStatus::Passed, TestStatus::Stopped]);
}

#[test]
fn registry_trouble_after_a_phase_fails_the_job_as_retryable() {
    let mut s = building(&[]);
    let exit = exited(&s, "build", 0);
    s.on(exit);
    s.check(vec![(Event::DigestResolved { digest: Err("registry down".into()) }, "diagnose build")]);
    assert_eq!(s.state(), "ending failed(Registry: registry down)");
    assert!(s.record.failure().unwrap().retryable);

    let mut s = testing(&[]);
    let (publish, exit) = (started(&s, "publish"), exited(&s, "publish", 0));
    s.check(vec![
        (publish, "follow publish"),
        (exit, "persist, journal, check published"),
        (Event::PublishChecked { confirmed: vec![], problem: Some("v1 is missing".into()) }, "diagnose publish"),
    ]);
    assert_eq!(s.state(), "ending failed(Registry: v1 is missing)");
}

#[test]
fn unreadable_secrets_stop_the_runs_and_fail_the_job() {
    let mut s = building(&[]);
    s.check(vec![(Event::SecretsUnreadable { message: "vault sealed".into() }, "stop [build], diagnose build")]);
    assert_eq!(s.state(), "ending failed(Secret: vault sealed)");
    assert!(s.record.failure().unwrap().retryable);
}

#[test]
fn resuming_redoes_what_the_state_needs_and_never_restarts_a_stopped_phase() {
    let mut s = building(&["a", "b"]);
    assert_eq!(s.on(Event::Resumed), "follow build", "a started run is followed again");

    let mut s = Scenario::new(&[]);
    s.on(Event::Admitted);
    assert_eq!(s.on(Event::Resumed), "start build", "a run persisted before its start is started (idempotently)");

    let mut s = testing(&["a", "b"]);
    let t0 = exited(&s, "test0", 0);
    s.on(t0);
    s.on(kill("x"));
    assert_eq!(s.on(Event::Resumed), "follow test1, stop [test1]", "stopping: follow and stop, start nothing");

    let mut s = building(&[]);
    let exit = exited(&s, "build", 0);
    s.on(exit);
    assert_eq!(s.on(Event::Resumed), "persist, journal, resolve digest", "the build passed: its follow-up again");
}

#[test]
fn resuming_an_ending_or_ended_job_finishes_its_cleanup() {
    let mut s = Scenario::new(&[]);
    s.on(kill("x"));
    assert_eq!(s.on(Event::Resumed), "release build lock, cleanup");
    // A crash between the ended record's write and the journal's: the events are in the
    // record's outbox, archived by the next driver, and only then is the job not live.
    let (record, _) = step(&s.record, &s.settings, Input { now: s.now, event: complete() });
    s.record = record;
    assert!(s.record.is_live());
    assert_eq!(s.on(Event::Resumed), "journal, persist, release build lock, finish");
    assert!(!s.record.is_live());
    assert_eq!(s.on(Event::Resumed), "release build lock, finish");
}

#[test]
fn an_ended_job_with_leftovers_is_cleaned_up_again_on_request() {
    let mut s = Scenario::new(&[]);
    s.on(kill("x"));
    let partial = CleanupReport {
        removed: vec![],
        remaining: vec![Leftover { what: "temp image".into(), why: "registry down".into() }],
    };
    s.on(Event::CleanedUp { report: partial });
    assert_eq!(s.state(), "ended killed(x) cleanup partial");
    assert!(!s.record.cleaned_up() && !s.record.is_live(), "not cleaned up, yet nothing drives it");
    s.check(vec![(Event::CleanupAsked, "cleanup"), (complete(), "persist, journal, persist, finish")]);
    assert!(s.record.cleaned_up());
    assert_eq!(s.on(Event::CleanupAsked), "finish", "nothing left to do");
}

#[test]
fn events_of_other_phases_and_losing_the_job() {
    let mut s = testing(&["a"]);
    let old = exited(&s, "build", 1);
    assert_eq!(s.on(old), "", "a late report of the build changes nothing in the test phase");
    assert_eq!(s.on(Event::Lost), "leave");
}
