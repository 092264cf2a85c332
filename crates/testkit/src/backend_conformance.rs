//! The conformance suite of the [`Backend`] port: one `pub async fn` per behaviour, plus
//! [`run_all`], so every backend (the local one on podman, Nomad on the fake agent, the
//! in-memory one the simulation uses) is held to the same contract.
//!
//! A backend under test comes with [`Runs`]: how to make, for a job, a run that prints a given
//! number of lines and exits with a given code, and one that runs until stopped. Each function
//! uses fresh job ids, so they may run one after another on one backend. Failures panic with a
//! message naming the broken behaviour: test-only code.

use std::time::Duration;

use futures::StreamExt;

use jobforge_core::config::TestCase;
use jobforge_core::image::ImageRef;
use jobforge_core::logs::{RunCursor, RunLine};
use jobforge_core::ports::{Backend, BackendError, RunEvent, RunExit, RunSpec, RunWork, Started, TestWork};
use jobforge_core::{JobId, RunKey, Stream, Timestamp};

/// Longest one run may take here before the behaviour counts as broken.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// How a backend's tests make runs.
pub trait Runs: Sync {
    /// Test `index` of `job`: prints `line 1` ... `line <lines>` on stdout, then exits `code`.
    fn printing(&self, job: JobId, index: u32, lines: u32, code: i32) -> RunSpec;
    /// Test `index` of `job`: prints `started`, then runs until it is stopped.
    fn hanging(&self, job: JobId, index: u32) -> RunSpec;
}

/// Runs as shell commands in `image` (pinned by digest), for backends that run containers.
pub struct ShellRuns {
    pub image: ImageRef,
}

impl ShellRuns {
    fn test(&self, job: JobId, index: u32, command: String) -> RunSpec {
        RunSpec {
            id: RunKey::test(job, index).id(),
            work: RunWork::Test(TestWork {
                image: self.image.clone(),
                case: TestCase::Command(command),
                env: Default::default(),
                vault_secrets: Vec::new(),
                registry_credentials: None,
                constraints: Vec::new(),
                gpu_required: false,
            }),
            resources: Default::default(),
        }
    }
}

impl Runs for ShellRuns {
    fn printing(&self, job: JobId, index: u32, lines: u32, code: i32) -> RunSpec {
        let command = format!("i=1; while [ $i -le {lines} ]; do echo line $i; i=$((i+1)); done; exit {code}");
        self.test(job, index, command)
    }

    fn hanging(&self, job: JobId, index: u32) -> RunSpec {
        self.test(job, index, "echo started; exec sleep 600".into())
    }
}

/// Runs scripted for the in-memory backend.
pub struct ScriptedRuns;

impl Runs for ScriptedRuns {
    fn printing(&self, job: JobId, index: u32, lines: u32, code: i32) -> RunSpec {
        Self::runs(job).test(job, index, format!("lines:{lines} exit:{code}"))
    }

    fn hanging(&self, job: JobId, index: u32) -> RunSpec {
        Self::runs(job).test(job, index, "lines:1 hang".into())
    }
}

impl ScriptedRuns {
    fn runs(job: JobId) -> ShellRuns {
        ShellRuns { image: format!("127.0.0.1:5000/temp/{job}:latest").parse().expect("an image name") }
    }
}

/// Every behaviour, in turn, on one backend.
pub async fn run_all(backend: &dyn Backend, runs: &dyn Runs) {
    a_second_start_finds_the_run(backend, runs).await;
    follow_yields_the_beginning_every_line_and_one_exit(backend, runs).await;
    follow_from_a_cursor_yields_only_later_lines(backend, runs).await;
    following_again_gives_the_same_numbers_and_beginning(backend, runs).await;
    an_unknown_run_cannot_be_followed(backend).await;
    stop_ends_a_running_run_and_may_be_repeated(backend, runs).await;
    cleanup_removes_the_jobs_runs_and_may_be_repeated(backend, runs).await;
}

/// `start` is idempotent: a second start of the same run id starts nothing.
pub async fn a_second_start_finds_the_run(backend: &dyn Backend, runs: &dyn Runs) {
    let job = JobId::new();
    let spec = runs.printing(job, 0, 2, 0);
    assert_eq!(backend.start(&spec).await.expect("start"), Started::New, "the first start starts it");
    assert_eq!(backend.start(&spec).await.expect("start again"), Started::Existing, "a second start finds it");
    let (lines, exit) = follow_to_end(backend, &spec, &RunCursor::start(backend.sequences())).await;
    assert_eq!(stdout(&lines), ["line 1", "line 2"], "the run ran once");
    assert_eq!(exit, RunExit::Exited { code: 0 });
    cleanup(backend, job).await;
}

/// Following yields `Began` (before any line of the run's own output), the run's lines in
/// order, then exactly one exit with the run's code, then the end.
pub async fn follow_yields_the_beginning_every_line_and_one_exit(backend: &dyn Backend, runs: &dyn Runs) {
    let job = JobId::new();
    let spec = runs.printing(job, 0, 3, 3);
    backend.start(&spec).await.expect("start");
    let events = collect(backend, &spec, &RunCursor::start(backend.sequences())).await;
    let began = events.iter().position(|e| matches!(e, RunEvent::Began { .. }));
    let first_output = events.iter().position(|e| matches!(e, RunEvent::Line(l) if l.stream != Stream::System));
    assert!(began.is_some(), "a run that ran says when it began: {events:?}");
    assert!(began < first_output, "`Began` comes before the run's own output: {events:?}");
    let exits: Vec<&RunEvent> = events.iter().filter(|e| matches!(e, RunEvent::Exit(_))).collect();
    assert_eq!(exits, [&RunEvent::Exit(RunExit::Exited { code: 3 })], "one exit, with the run's code");
    assert!(matches!(events.last(), Some(RunEvent::Exit(_))), "the exit is last");
    let lines: Vec<RunLine> = lines_of(&events);
    assert_eq!(stdout(&lines), ["line 1", "line 2", "line 3"], "every line, in order");
    let sequences = backend.sequences();
    for sequence in 0..sequences {
        let numbers: Vec<u64> = lines.iter().map(|l| l.n).filter(|n| n % sequences == sequence).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "line numbers increase in each sequence: {numbers:?}");
    }
    cleanup(backend, job).await;
}

/// From a cursor, following yields only the lines after it in their own sequence.
pub async fn follow_from_a_cursor_yields_only_later_lines(backend: &dyn Backend, runs: &dyn Runs) {
    let job = JobId::new();
    let spec = runs.printing(job, 0, 5, 0);
    backend.start(&spec).await.expect("start");
    let sequences = backend.sequences();
    let (all, _) = follow_to_end(backend, &spec, &RunCursor::start(sequences)).await;
    let seen: Vec<u64> = all.iter().filter(|l| l.stream == Stream::Stdout).take(2).map(|l| l.n).collect();
    let cursor = RunCursor::after(sequences, seen.clone());
    let (rest, exit) = follow_to_end(backend, &spec, &cursor).await;
    assert_eq!(stdout(&rest), ["line 3", "line 4", "line 5"], "only the lines after the cursor (had {seen:?})");
    assert!(rest.iter().all(|l| cursor.is_new(l.n)), "no line at or before the cursor");
    assert_eq!(exit, RunExit::Exited { code: 0 }, "and the exit");
    cleanup(backend, job).await;
}

/// Two follows of one run number its lines the same way and say it began at the same time.
pub async fn following_again_gives_the_same_numbers_and_beginning(backend: &dyn Backend, runs: &dyn Runs) {
    let job = JobId::new();
    let spec = runs.printing(job, 0, 3, 0);
    backend.start(&spec).await.expect("start");
    let start = RunCursor::start(backend.sequences());
    let first = collect(backend, &spec, &start).await;
    let second = collect(backend, &spec, &start).await;
    // Sequences interleave as they arrive; within each, the order is fixed.
    let numbered = |events: &[RunEvent]| -> std::collections::BTreeMap<u64, String> {
        lines_of(events).into_iter().map(|l| (l.n, l.text)).collect()
    };
    assert_eq!(numbered(&first), numbered(&second), "the same lines under the same numbers");
    assert_eq!(began(&first), began(&second), "the same beginning");
    cleanup(backend, job).await;
}

/// A run never started (or removed) cannot be followed.
pub async fn an_unknown_run_cannot_be_followed(backend: &dyn Backend) {
    let run = RunKey::test(JobId::new(), 0).id();
    match backend.follow(&run, &RunCursor::start(backend.sequences())).await {
        Err(BackendError::NoSuchRun(id)) => assert_eq!(id, run, "NoSuchRun names the run"),
        Err(other) => panic!("following an unknown run must be NoSuchRun, got {other}"),
        Ok(_) => panic!("following an unknown run must be NoSuchRun, got a stream"),
    }
}

/// `stop` ends a running run (its exit is no success) and returns once it ended; stopping it
/// again, or a run that does not exist, is no error.
pub async fn stop_ends_a_running_run_and_may_be_repeated(backend: &dyn Backend, runs: &dyn Runs) {
    let job = JobId::new();
    let spec = runs.hanging(job, 0);
    backend.start(&spec).await.expect("start");
    wait_for_a_line(backend, &spec).await;
    tokio::time::timeout(RUN_LIMIT, backend.stop(&spec.id, Duration::from_secs(2)))
        .await
        .expect("stop returns once the run ended")
        .expect("stop");
    let (_, exit) = follow_to_end(backend, &spec, &RunCursor::start(backend.sequences())).await;
    assert!(!exit.success(), "a stopped run does not succeed: {exit:?}");
    backend.stop(&spec.id, Duration::from_secs(2)).await.expect("stopping again is fine");
    backend.stop(&RunKey::test(JobId::new(), 0).id(), Duration::from_secs(1)).await.expect("stopping nothing is fine");
    cleanup(backend, job).await;
}

/// `cleanup` stops and removes every run of the job and says so; the job is then no longer
/// listed and none of its runs goes on (following one is `NoSuchRun`, or, where the backend
/// keeps a removed run's record for a while as Nomad keeps allocations until its garbage
/// collection, ends at once); a second cleanup is no error and removes nothing.
pub async fn cleanup_removes_the_jobs_runs_and_may_be_repeated(backend: &dyn Backend, runs: &dyn Runs) {
    let job = JobId::new();
    let (done, hanging) = (runs.printing(job, 0, 1, 0), runs.hanging(job, 1));
    for spec in [&done, &hanging] {
        backend.start(spec).await.expect("start");
    }
    follow_to_end(backend, &done, &RunCursor::start(backend.sequences())).await;
    wait_for_a_line(backend, &hanging).await;
    assert!(backend.jobs().await.expect("jobs").contains(&job), "a job with runs is listed");
    let report = tokio::time::timeout(RUN_LIMIT, backend.cleanup(job)).await.expect("cleanup ends").expect("cleanup");
    assert!(report.is_complete(), "everything could be removed: {report:?}");
    for spec in [&done, &hanging] {
        assert!(report.removed.iter().any(|r| r.contains(spec.id.as_str())), "{} removed: {report:?}", spec.id);
        match backend.follow(&spec.id, &RunCursor::start(backend.sequences())).await {
            Err(BackendError::NoSuchRun(_)) => {}
            Err(other) => panic!("following a removed run: NoSuchRun or a stream that ends, got {other}"),
            Ok(events) => {
                let ended = tokio::time::timeout(Duration::from_secs(30), events.collect::<Vec<_>>()).await;
                let events = ended.expect("following a removed run ends at once");
                assert!(matches!(events.last(), Some(Ok(RunEvent::Exit(_)))), "and ends with its exit: {events:?}");
            }
        }
    }
    assert!(!backend.jobs().await.expect("jobs").contains(&job), "a cleaned-up job is not listed");
    let again = backend.cleanup(job).await.expect("a second cleanup");
    assert!(again.is_complete() && !again.removed.iter().any(|r| r.contains(done.id.as_str())), "{again:?}");
}

// ---- helpers ----

async fn collect(backend: &dyn Backend, spec: &RunSpec, from: &RunCursor) -> Vec<RunEvent> {
    let read = async {
        let mut events = backend.follow(&spec.id, from).await.expect("follow");
        let mut out = Vec::new();
        while let Some(event) = events.next().await {
            out.push(event.expect("a follow event"));
        }
        out
    };
    tokio::time::timeout(RUN_LIMIT, read).await.expect("the run ended in time")
}

async fn follow_to_end(backend: &dyn Backend, spec: &RunSpec, from: &RunCursor) -> (Vec<RunLine>, RunExit) {
    let events = collect(backend, spec, from).await;
    let exit = match events.last() {
        Some(RunEvent::Exit(exit)) => exit.clone(),
        other => panic!("following must end with the exit, ended with {other:?}"),
    };
    (lines_of(&events), exit)
}

/// Wait until the run printed something of its own (it is running, not just registered).
async fn wait_for_a_line(backend: &dyn Backend, spec: &RunSpec) {
    let wait = async {
        let mut events = backend.follow(&spec.id, &RunCursor::start(backend.sequences())).await.expect("follow");
        while let Some(event) = events.next().await {
            match event.expect("a follow event") {
                RunEvent::Line(line) if line.stream == Stream::Stdout => return,
                RunEvent::Exit(exit) => panic!("the run ended ({exit:?}) before printing"),
                RunEvent::Began { .. } | RunEvent::Line(_) => {}
            }
        }
    };
    tokio::time::timeout(RUN_LIMIT, wait).await.expect("the run printed in time");
}

async fn cleanup(backend: &dyn Backend, job: JobId) {
    backend.cleanup(job).await.expect("cleanup");
}

fn lines_of(events: &[RunEvent]) -> Vec<RunLine> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Line(line) => Some(line.clone()),
            RunEvent::Began { .. } | RunEvent::Exit(_) => None,
        })
        .collect()
}

fn began(events: &[RunEvent]) -> Option<Timestamp> {
    events.iter().find_map(|e| match e {
        RunEvent::Began { at } => Some(*at),
        RunEvent::Line(_) | RunEvent::Exit(_) => None,
    })
}

/// The run's own output (not the backend's `system` lines).
fn stdout(lines: &[RunLine]) -> Vec<&str> {
    lines.iter().filter(|l| l.stream == Stream::Stdout).map(|l| l.text.as_str()).collect()
}
