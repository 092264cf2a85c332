//! The conformance suite of the [`Store`] port: one `pub async fn` per behaviour, plus
//! [`run_all`], so every adapter (SQLite now, Consul later) is held to the same contract.
//!
//! Each function makes its own jobs with fresh ids and asserts only about those, so the
//! functions are independent and may run one after another on a single store. Timestamps are
//! whole milliseconds, the precision records and lines are kept at. Failures panic with a
//! message naming the broken behaviour: test-only code, never used by a production crate.

use std::collections::BTreeSet;

use jobforge_core::logs::{LogLine, LogQuery, NewLogLine, RunLine};
use jobforge_core::ports::{Store, StoreError};
use jobforge_core::record::{Failure, FailureReason, JobRecord, KillRequest, TestResult, TestStatus};
use jobforge_core::{JobId, JobStatus, Phase, RunId, RunKey, Stream, Timestamp, validate};
use serde_json::json;

/// Every behaviour, in turn, on one store.
pub async fn run_all(store: &dyn Store) {
    insert_then_get_round_trips(store).await;
    update_replaces_the_record(store).await;
    duplicate_insert_is_refused(store).await;
    update_of_missing_job_is_refused(store).await;
    list_is_newest_first_with_total_and_paging(store).await;
    live_holds_unfinished_and_uncleaned_jobs(store).await;
    append_numbers_lines_per_job_without_gaps(store).await;
    replayed_origins_are_stored_once(store).await;
    system_lines_always_append(store).await;
    last_line_is_per_run(store).await;
    logs_filter_by_phase_test_after_and_limit(store).await;
    tail_returns_the_last_lines_in_order(store).await;
    check_passes(store).await;
}

/// A record comes back exactly as inserted, every field and timestamp included; an unknown id
/// reads as `None`.
pub async fn insert_then_get_round_trips(store: &dyn Store) {
    let record = finished_record();
    store.insert(&record).await.expect("insert a new job");
    let stored = store.get(record.id).await.expect("get an existing job");
    assert_eq!(stored.as_ref(), Some(&record), "get must return the record exactly as inserted");
    assert_eq!(store.get(JobId::new()).await.expect("get an unknown job"), None, "an unknown job reads as None");
}

/// `update` replaces the whole stored record.
pub async fn update_replaces_the_record(store: &dyn Store) {
    let mut record = pending_record(millis_now());
    store.insert(&record).await.expect("insert a new job");
    record.status = JobStatus::Building;
    record.times.build_start = Some(record.created_at.add(std::time::Duration::from_millis(1_250)));
    record.updated_at = record.created_at.add(std::time::Duration::from_millis(1_251));
    store.update(&record).await.expect("update an existing job");
    let stored = store.get(record.id).await.expect("get an updated job");
    assert_eq!(stored, Some(record), "get after update must return the new record");
}

/// Inserting an id that exists is refused with `Duplicate`, and the stored record is kept.
pub async fn duplicate_insert_is_refused(store: &dyn Store) {
    let record = pending_record(millis_now());
    store.insert(&record).await.expect("insert a new job");
    let mut again = record.clone();
    again.status = JobStatus::Failed;
    match store.insert(&again).await {
        Err(StoreError::Duplicate(id)) => assert_eq!(id, record.id, "Duplicate names the job"),
        other => panic!("a second insert of one id must be refused as Duplicate, got {other:?}"),
    }
    let stored = store.get(record.id).await.expect("get after a refused insert");
    assert_eq!(stored, Some(record), "a refused insert must not change the stored record");
}

/// Updating a job that was never inserted is refused with `NotFound` and stores nothing.
pub async fn update_of_missing_job_is_refused(store: &dyn Store) {
    let record = pending_record(millis_now());
    match store.update(&record).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, record.id, "NotFound names the job"),
        other => panic!("updating a missing job must be refused as NotFound, got {other:?}"),
    }
    assert_eq!(store.get(record.id).await.expect("get a missing job"), None, "a refused update stores nothing");
}

/// History is newest first (by `created_at`, then by id, which is time-ordered), pages by
/// limit and offset, and counts every job in `total`.
pub async fn list_is_newest_first_with_total_and_paging(store: &dyn Store) {
    let before = store.list(0, 0).await.expect("list").total;
    // Far in the future, so these four are the newest jobs in the store whatever else it holds.
    let base = millis_now().add(std::time::Duration::from_secs(100 * 365 * 24 * 3600));
    let a = pending_record(base);
    let b = pending_record(base.add(std::time::Duration::from_millis(1)));
    let c = pending_record(base.add(std::time::Duration::from_millis(2)));
    let d = pending_record(base.add(std::time::Duration::from_millis(2)));
    assert!(c.id < d.id, "job ids are time-ordered");
    // Inserted out of order: the order must come from the records, not from insertion.
    for record in [&c, &a, &d, &b] {
        store.insert(record).await.expect("insert a new job");
    }
    let page = store.list(3, 0).await.expect("list the first page");
    assert_eq!(page.total, before + 4, "total counts every job, not just the page");
    assert_eq!(ids(&page.jobs), [d.id, c.id, b.id], "newest first; equal created_at: higher id first");
    assert_eq!(page.jobs[0], d, "list returns whole records");
    let page = store.list(2, 1).await.expect("list from an offset");
    assert_eq!(ids(&page.jobs), [c.id, b.id], "offset skips the newest jobs");
    let page = store.list(3, 3).await.expect("list the second page");
    assert_eq!(page.jobs.first().map(|job| job.id), Some(a.id), "the second page continues where the first ended");
    assert_eq!(page.total, before + 4, "total does not depend on the page");
}

/// `live` holds jobs that are not finished, and finished jobs not yet cleaned up; a job leaves
/// it once an update marks it cleaned up.
pub async fn live_holds_unfinished_and_uncleaned_jobs(store: &dyn Store) {
    let now = millis_now();
    let pending = pending_record(now);
    let building = with_status(pending_record(now), JobStatus::Building, false);
    let uncleaned = with_status(pending_record(now), JobStatus::Succeeded, false);
    let failed = with_status(pending_record(now), JobStatus::Failed, true);
    let killed = with_status(pending_record(now), JobStatus::Killed, true);
    for record in [&pending, &building, &uncleaned, &failed, &killed] {
        store.insert(record).await.expect("insert a new job");
    }
    let mine = BTreeSet::from([pending.id, building.id, uncleaned.id, failed.id, killed.id]);
    let live = live_among(store, &mine).await;
    assert_eq!(id_set(&live), BTreeSet::from([pending.id, building.id, uncleaned.id]), "live jobs");
    assert!(live.contains(&building), "live returns whole records");

    let cleaned = with_status(building, JobStatus::Succeeded, true);
    store.update(&cleaned).await.expect("update an existing job");
    let live = live_among(store, &mine).await;
    assert_eq!(id_set(&live), BTreeSet::from([pending.id, uncleaned.id]), "a cleaned-up job is no longer live");
}

/// Each job numbers its lines 1, 2, 3, ... across appends, independently of other jobs;
/// `append_logs` returns the job's highest seq, also for an empty batch.
pub async fn append_numbers_lines_per_job_without_gaps(store: &dyn Store) {
    let (first, second) = (new_job(store).await, new_job(store).await);
    assert_eq!(append(store, first, &[]).await, 0, "an empty append to a job with no lines returns 0");
    let build = RunKey::build(first).id();
    let other = RunKey::build(second).id();
    assert_eq!(append(store, first, &run_lines(&build, 1..=3)).await, 3, "first batch");
    assert_eq!(append(store, second, &run_lines(&other, 1..=2)).await, 2, "another job starts at 1");
    assert_eq!(append(store, first, &run_lines(&build, 4..=5)).await, 5, "second batch continues");
    assert_eq!(append(store, first, &[]).await, 5, "an empty append returns the highest seq");

    let lines = all_logs(store, first).await;
    assert_eq!(seqs(&lines), [1, 2, 3, 4, 5], "gap-free, increasing");
    assert_eq!(texts(&lines), ["line 1", "line 2", "line 3", "line 4", "line 5"], "in append order");
    assert_eq!(seqs(&all_logs(store, second).await), [1, 2], "the other job has its own sequence");
}

/// A line whose origin (run, n) is archived already is skipped, within a batch and across
/// batches, and takes no seq; the same n from another run is a different line.
pub async fn replayed_origins_are_stored_once(store: &dyn Store) {
    let job = new_job(store).await;
    let run = RunKey::test(job, 0).id();
    assert_eq!(append(store, job, &run_lines(&run, 1..=3)).await, 3, "first read of the run");
    assert_eq!(append(store, job, &run_lines(&run, 2..=5)).await, 5, "overlapping replay adds only 4 and 5");
    assert_eq!(append(store, job, &run_lines(&run, 1..=5)).await, 5, "a full replay adds nothing");
    let twice = [run_lines(&run, 6..=6), run_lines(&run, 6..=6)].concat();
    assert_eq!(append(store, job, &twice).await, 6, "one origin twice in a batch is stored once");
    let sibling = RunKey::test(job, 1).id();
    assert_eq!(append(store, job, &run_lines(&sibling, 1..=1)).await, 7, "same n, other run: a new line");

    let lines = all_logs(store, job).await;
    assert_eq!(seqs(&lines), [1, 2, 3, 4, 5, 6, 7], "no gaps where replays were skipped");
    let expected = ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 1"];
    assert_eq!(texts(&lines), expected, "each origin stored once, in first-seen order");
}

/// Lines without an origin (written by jobforge itself) are never deduplicated.
pub async fn system_lines_always_append(store: &dyn Store) {
    let job = new_job(store).await;
    let note = system_line(Phase::Build, "about to build");
    assert_eq!(append(store, job, std::slice::from_ref(&note)).await, 1, "first system line");
    assert_eq!(append(store, job, &[note.clone(), note.clone()]).await, 3, "identical system lines all append");
    let run = RunKey::build(job).id();
    assert_eq!(append(store, job, &[run_line(&run, 1, "out"), note]).await, 5, "mixed with run lines");
    let lines = all_logs(store, job).await;
    assert_eq!(texts(&lines), ["about to build", "about to build", "about to build", "out", "about to build"]);
    assert_eq!(lines[0].stream, Stream::System, "the stream is kept");
}

/// `last_line` is the highest n archived from one run, 0 for a run with none.
pub async fn last_line_is_per_run(store: &dyn Store) {
    let job = new_job(store).await;
    let (build, test0, test1) = (RunKey::build(job).id(), RunKey::test(job, 0).id(), RunKey::test(job, 1).id());
    assert_eq!(last_line(store, job, &build).await, 0, "no lines yet");
    append(store, job, &run_lines(&build, 1..=3)).await;
    append(store, job, &[run_lines(&test0, 1..=2), vec![system_line(Phase::Test, "note")]].concat()).await;
    assert_eq!(last_line(store, job, &build).await, 3, "build run");
    assert_eq!(last_line(store, job, &test0).await, 2, "first test run; system lines do not count");
    assert_eq!(last_line(store, job, &test1).await, 0, "a run with no lines");
    let other = new_job(store).await;
    assert_eq!(last_line(store, other, &build).await, 0, "another job's archive is separate");
}

/// `logs` returns lines after a seq, of one phase and one test if asked, at most `limit`
/// (none for 0), in seq order, each as it was appended.
pub async fn logs_filter_by_phase_test_after_and_limit(store: &dyn Store) {
    let job = new_job(store).await;
    let (build, test0, test1) = (RunKey::build(job).id(), RunKey::test(job, 0).id(), RunKey::test(job, 1).id());
    let publish = RunKey::publish(job).id();
    let batch = [
        run_lines(&build, 1..=2),                   // seq 1, 2
        run_lines(&test0, 1..=2),                   // seq 3, 4
        vec![system_line(Phase::Test, "starting")], // seq 5
        run_lines(&test1, 1..=2),                   // seq 6, 7
        run_lines(&publish, 1..=1),                 // seq 8
    ];
    assert_eq!(append(store, job, &batch.concat()).await, 8);

    assert_eq!(seqs(&query(store, job, None, None, 0, 100).await), [1, 2, 3, 4, 5, 6, 7, 8], "everything");
    assert_eq!(seqs(&query(store, job, Some(Phase::Test), None, 0, 100).await), [3, 4, 5, 6, 7], "one phase");
    assert_eq!(seqs(&query(store, job, Some(Phase::Test), Some(1), 0, 100).await), [6, 7], "one test");
    assert_eq!(seqs(&query(store, job, None, None, 5, 100).await), [6, 7, 8], "after a seq");
    assert_eq!(seqs(&query(store, job, Some(Phase::Test), None, 3, 2).await), [4, 5], "after + phase + limit");
    assert_eq!(seqs(&query(store, job, None, None, 0, 3).await), [1, 2, 3], "limit");
    assert!(query(store, job, None, None, 0, 0).await.is_empty(), "limit 0 means no lines");
    assert!(query(store, job, None, None, 8, 100).await.is_empty(), "nothing after the last seq");
    assert!(query(store, JobId::new(), None, None, 0, 100).await.is_empty(), "an unknown job has no lines");

    let line = &query(store, job, Some(Phase::Test), Some(1), 0, 1).await[0];
    let expected = LogLine {
        seq: 6,
        ts: line_time(1),
        phase: Phase::Test,
        test: Some(1),
        stream: Stream::Stdout,
        text: "line 1".into(),
    };
    assert_eq!(line, &expected, "a line reads back exactly as appended");
}

/// `tail` returns the last n lines of a phase (of one test if asked), oldest first.
pub async fn tail_returns_the_last_lines_in_order(store: &dyn Store) {
    let job = new_job(store).await;
    let (build, test0, test1) = (RunKey::build(job).id(), RunKey::test(job, 0).id(), RunKey::test(job, 1).id());
    let batch = [run_lines(&build, 1..=10), run_lines(&test0, 1..=5), run_lines(&test1, 1..=5)];
    assert_eq!(append(store, job, &batch.concat()).await, 20);

    assert_eq!(seqs(&tail(store, job, Phase::Build, None, 3).await), [8, 9, 10], "last lines, ascending");
    assert_eq!(texts(&tail(store, job, Phase::Build, None, 3).await), ["line 8", "line 9", "line 10"]);
    assert_eq!(seqs(&tail(store, job, Phase::Test, Some(0), 2).await), [14, 15], "one test");
    assert_eq!(seqs(&tail(store, job, Phase::Test, None, 7).await), [14, 15, 16, 17, 18, 19, 20], "whole phase");
    assert_eq!(tail(store, job, Phase::Test, Some(1), 50).await.len(), 5, "fewer lines than asked: all of them");
    assert!(tail(store, job, Phase::Build, None, 0).await.is_empty(), "n = 0");
    assert!(tail(store, job, Phase::Publish, None, 5).await.is_empty(), "a phase with no lines");
}

/// A healthy store passes its own check.
pub async fn check_passes(store: &dyn Store) {
    store.check().await.expect("check of a healthy store");
}

// ---- fixtures ----

/// Now, cut to whole milliseconds.
fn millis_now() -> Timestamp {
    Timestamp::from_unix_millis(Timestamp::now().unix_millis()).expect("now is a valid time")
}

/// A fresh PENDING job with two tests, created at `created`.
fn pending_record(created: Timestamp) -> JobRecord {
    let spec = validate::job_spec(&json!({
        "repo_url": "https://git.example.com/team/app.git",
        "image_name": "team/app",
        "registry_url": "127.0.0.1:5000",
        "test_commands": ["make test", "make lint"],
    }))
    .expect("the fixture job spec is valid");
    let id = JobId::new();
    let temp_image = format!("127.0.0.1:5000/temp/{id}:latest").parse().expect("a valid temp image");
    JobRecord::new(id, spec, temp_image, created)
}

/// A failed job with every optional part of the record filled in.
fn finished_record() -> JobRecord {
    let spec = validate::job_spec(&json!({
        "owner": "agent-7",
        "repo_url": "https://git.example.com/team/app.git",
        "git_ref": "release/1.2",
        "git_credentials_path": "ci/git",
        "dockerfile_path": "docker/Dockerfile",
        "context": "app",
        "build_args": {"VERSION": "1.2.3"},
        "image_name": "team/app",
        "image_tags": ["v1.2.3", "latest"],
        "registry_url": "127.0.0.1:5000/team",
        "registry_credentials_path": "ci/registry",
        "test_commands": ["make test", "make lint"],
        "test": {"env": {"CI": "1"}, "resource_limits": {"memory": 512}},
        "resource_limits": {"cpu": 2000, "build": {"memory": 4096}},
        "build_timeout": "45m",
        "test_timeout": 600,
        "clear_cache": true,
    }))
    .expect("the full fixture job spec is valid");
    let start = Timestamp::from_unix_millis(1_700_000_000_123).expect("a valid time");
    let at = |ms: u64| start.add(std::time::Duration::from_millis(ms));
    let id = JobId::new();
    let temp_image = format!("127.0.0.1:5000/temp/{id}:latest").parse().expect("a valid temp image");
    let mut record = JobRecord::new(id, spec, temp_image, start);
    record.status = JobStatus::Failed;
    record.updated_at = at(9_009);
    record.times.build_start = Some(at(1));
    record.times.build_end = Some(at(4_567));
    record.times.test_start = Some(at(4_600));
    record.times.test_end = Some(at(9_001));
    record.times.job_end = Some(at(9_002));
    record.image_digest = Some(format!("sha256:{}", "ab".repeat(32)).parse().expect("a valid digest"));
    record.tests = vec![
        TestResult {
            index: 0,
            command: "make test".into(),
            status: TestStatus::Passed,
            exit_code: Some(0),
            started: Some(at(4_600)),
            ended: Some(at(7_000)),
        },
        TestResult {
            index: 1,
            command: "make lint".into(),
            status: TestStatus::Failed,
            exit_code: Some(2),
            started: Some(at(4_601)),
            ended: Some(at(9_000)),
        },
    ];
    record.failure = Some(Failure {
        phase: Phase::Test,
        reason: FailureReason::ExitCode,
        message: "test 1 (make lint) exited with 2".into(),
        exit_code: Some(2),
        retryable: false,
        log_tail: vec!["lint: 3 problems".into(), "make: *** [lint] Error 2".into()],
    });
    record.kill = Some(KillRequest { at: at(8_888), by: Some("ops".into()), reason: Some("too slow".into()) });
    record
}

fn with_status(mut record: JobRecord, status: JobStatus, cleaned_up: bool) -> JobRecord {
    record.status = status;
    record.cleaned_up = cleaned_up;
    record
}

/// Insert a fresh PENDING job and return its id.
async fn new_job(store: &dyn Store) -> JobId {
    let record = pending_record(millis_now());
    store.insert(&record).await.expect("insert a new job");
    record.id
}

/// The live jobs among `mine`.
async fn live_among(store: &dyn Store, mine: &BTreeSet<JobId>) -> Vec<JobRecord> {
    let live = store.live().await.expect("live");
    live.into_iter().filter(|record| mine.contains(&record.id)).collect()
}

/// The time of line `n` of any run in these fixtures.
fn line_time(n: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + n as i64 * 7).expect("a valid time")
}

fn run_line(run: &RunId, n: u64, text: &str) -> NewLogLine {
    NewLogLine::from_run(run, RunLine { n, stream: Stream::Stdout, ts: line_time(n), text: text.into() })
}

/// Lines `n` of `run`, each reading `line <n>`.
fn run_lines(run: &RunId, ns: std::ops::RangeInclusive<u64>) -> Vec<NewLogLine> {
    ns.map(|n| run_line(run, n, &format!("line {n}"))).collect()
}

fn system_line(phase: Phase, text: &str) -> NewLogLine {
    NewLogLine { ts: line_time(0), ..NewLogLine::system(phase, None, text) }
}

async fn append(store: &dyn Store, job: JobId, lines: &[NewLogLine]) -> u64 {
    store.append_logs(job, lines).await.expect("append_logs")
}

async fn last_line(store: &dyn Store, job: JobId, run: &RunId) -> u64 {
    store.last_line(job, run).await.expect("last_line")
}

async fn all_logs(store: &dyn Store, job: JobId) -> Vec<LogLine> {
    store.logs(job, &LogQuery::after(0, usize::MAX)).await.expect("logs")
}

async fn query(
    store: &dyn Store,
    job: JobId,
    phase: Option<Phase>,
    test: Option<u32>,
    after: u64,
    limit: usize,
) -> Vec<LogLine> {
    store.logs(job, &LogQuery { phase, test, after, limit }).await.expect("logs")
}

async fn tail(store: &dyn Store, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Vec<LogLine> {
    store.tail(job, phase, test, n).await.expect("tail")
}

fn seqs(lines: &[LogLine]) -> Vec<u64> {
    lines.iter().map(|line| line.seq).collect()
}

fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|line| line.text.as_str()).collect()
}

fn ids(records: &[JobRecord]) -> Vec<JobId> {
    records.iter().map(|record| record.id).collect()
}

fn id_set(records: &[JobRecord]) -> BTreeSet<JobId> {
    records.iter().map(|record| record.id).collect()
}
