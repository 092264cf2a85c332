//! The conformance suite of the store ports ([`JobRecords`], [`LogArchive`], [`JobFeed`],
//! [`Mailbox`], together a [`Store`]): one `pub async fn` per behaviour, plus [`run_all`], so
//! every adapter (SQLite, Consul, the in-memory store) is held to the same contract.
//!
//! Each function makes its own jobs with fresh ids and asserts only about those, so the
//! functions are independent and may run one after another on a single store. Timestamps are
//! whole milliseconds, the precision records and lines are kept at. Failures panic with a
//! message naming the broken behaviour: test-only code, never used by a production crate.

use std::collections::BTreeSet;

use std::time::Duration;

use jobforge_core::events::JobEvent;
use jobforge_core::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, NewEvent, NewLogLine, RunCursor, RunLine};
use jobforge_core::ports::{Store, StoreError};
use jobforge_core::record::{DockerfileSpot, Failure, FailureReason, JobRecord, KillRequest, TestResult, TestStatus};
use jobforge_core::state::{CleanupReport, JobState, Leftover, Outcome, PhaseRun};
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
    cursors_are_per_run_and_sequence(store).await;
    logs_filter_by_phase_test_after_and_limit(store).await;
    tail_returns_the_last_lines_in_order(store).await;
    events_share_the_sequence_with_lines_and_are_stored_once(store).await;
    entries_interleave_events_and_lines_of_a_phase(store).await;
    an_ended_job_with_leftovers_is_not_live(store).await;
    the_feed_wakes_a_reader_on_an_append(store).await;
    the_mailbox_keeps_a_request_until_it_is_forgotten(store).await;
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
    record.state = JobState::Running(PhaseRun::new(Phase::Build, 2));
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
    again.state = JobState::Ending { outcome: Outcome::Succeeded };
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

/// A run's cursor holds the highest n archived from it in each of its line sequences (a
/// sequence with none: 0), whatever other runs and the engine's own lines hold.
pub async fn cursors_are_per_run_and_sequence(store: &dyn Store) {
    let job = new_job(store).await;
    let (build, test0, test1) = (RunKey::build(job).id(), RunKey::test(job, 0).id(), RunKey::test(job, 1).id());
    assert_eq!(cursor(store, job, &build, 1).await, RunCursor::start(1), "no lines yet");
    append(store, job, &run_lines(&build, 1..=3)).await;
    // Four sequences, as on Nomad: 4 and 8 are stdout, 5 is stderr.
    let interleaved = [run_line(&test0, 4, "o"), run_line(&test0, 5, "e"), run_line(&test0, 8, "o")];
    append(store, job, &[interleaved.to_vec(), vec![system_line(Phase::Test, "note")]].concat()).await;
    assert_eq!(cursor(store, job, &build, 1).await, RunCursor::after(1, [3]), "build run");
    let test_cursor = cursor(store, job, &test0, 4).await;
    assert_eq!((test_cursor.highest(0), test_cursor.highest(1), test_cursor.highest(2)), (8, 5, 0), "per sequence");
    assert_eq!(cursor(store, job, &test1, 4).await, RunCursor::start(4), "a run with no lines");
    let other = new_job(store).await;
    assert_eq!(cursor(store, other, &build, 1).await, RunCursor::start(1), "another job's archive is separate");
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

/// Events take numbers from the job's one sequence, between its lines; an event whose number
/// (the engine's entry n) is archived already is skipped, as is an engine line's.
pub async fn events_share_the_sequence_with_lines_and_are_stored_once(store: &dyn Store) {
    let job = new_job(store).await;
    let build = RunKey::build(job).id();
    let started = event(1, JobEvent::PhaseStarted { phase: Phase::Build });
    let note = engine_line(2, Phase::Build, "kill requested");
    let ended = event(3, JobEvent::StatusChanged { status: JobStatus::Killed });
    let batch = vec![started.clone(), NewEntry::Line(run_line(&build, 1, "out")), note.clone()];
    assert_eq!(entries_append(store, job, &batch).await, 3);
    assert_eq!(entries_append(store, job, &[started, note, ended.clone()]).await, 4, "replays add only the new one");
    assert_eq!(entries_append(store, job, &[ended]).await, 4, "and then nothing");
    let entries = all_entries(store, job).await;
    assert_eq!(entries.iter().map(Entry::seq).collect::<Vec<_>>(), [1, 2, 3, 4], "one gap-free sequence");
    match &entries[0] {
        Entry::Event(entry) => {
            assert_eq!(entry.event, JobEvent::PhaseStarted { phase: Phase::Build }, "the event reads back as written");
            assert_eq!(entry.ts, line_time(1), "with its time");
        }
        Entry::Line(line) => panic!("seq 1 must be the event, got line {line:?}"),
    }
    let lines = all_logs(store, job).await;
    assert_eq!(seqs(&lines), [2, 3], "logs hold the lines only, with their seqs");
    assert_eq!(texts(&lines), ["out", "kill requested"]);
    assert_eq!(lines[1].stream, Stream::System, "an engine line is a system line");
}

/// `entries` returns events and lines after a seq, in seq order, at most `limit`; a phase
/// filter keeps every event and the lines of that phase.
pub async fn entries_interleave_events_and_lines_of_a_phase(store: &dyn Store) {
    let job = new_job(store).await;
    let (build, test0) = (RunKey::build(job).id(), RunKey::test(job, 0).id());
    let batch = vec![
        event(1, JobEvent::PhaseStarted { phase: Phase::Build }), // 1
        NewEntry::Line(run_line(&build, 1, "b1")),                // 2
        event(2, JobEvent::PhaseStarted { phase: Phase::Test }),  // 3
        NewEntry::Line(run_line(&test0, 1, "t1")),                // 4
        event(3, JobEvent::TestStarted { index: 0, command: "make test".into() }), // 5
    ];
    assert_eq!(entries_append(store, job, &batch).await, 5);
    let seqs_of = |entries: Vec<Entry>| entries.iter().map(Entry::seq).collect::<Vec<_>>();
    let read = |phase, after, limit| async move {
        store.entries(job, &EntryQuery { phase, after, limit }).await.expect("entries")
    };
    assert_eq!(seqs_of(read(None, 0, 100).await), [1, 2, 3, 4, 5], "everything");
    assert_eq!(seqs_of(read(Some(Phase::Test), 0, 100).await), [1, 3, 4, 5], "events and test lines");
    assert_eq!(seqs_of(read(None, 2, 2).await), [3, 4], "after + limit");
    assert!(read(None, 0, 0).await.is_empty(), "limit 0");
    assert!(read(None, 5, 10).await.is_empty(), "nothing after the last");
}

/// An ended job whose cleanup left something behind is not live (nothing will drive it), and
/// reads back with its leftovers.
pub async fn an_ended_job_with_leftovers_is_not_live(store: &dyn Store) {
    let mut record = pending_record(millis_now());
    store.insert(&record).await.expect("insert a new job");
    let remaining = vec![Leftover { what: "temp image".into(), why: "registry unreachable".into() }];
    let cleanup = CleanupReport { removed: vec!["run build".into()], remaining };
    record.state = JobState::Ended { outcome: Outcome::Succeeded, cleanup };
    store.update(&record).await.expect("update an existing job");
    let mine = BTreeSet::from([record.id]);
    assert!(live_among(store, &mine).await.is_empty(), "ended: not live");
    let stored = store.get(record.id).await.expect("get").expect("the job is kept");
    assert_eq!(stored, record, "the cleanup report reads back whole");
    assert!(!stored.cleaned_up(), "and says it is not cleaned up");
}

/// A reader waiting on a job's feed is woken by an append to that job; with nothing new it
/// waits until its limit. Version 0 answers at once.
pub async fn the_feed_wakes_a_reader_on_an_append(store: &dyn Store) {
    let job = new_job(store).await;
    let version = store.changed(job, 0, Duration::ZERO).await.expect("the current version");
    let started = tokio::time::Instant::now();
    let idle = store.changed(job, version, Duration::from_millis(300)).await.expect("an idle wait");
    assert!(started.elapsed() >= Duration::from_millis(250), "with nothing new, the wait lasts its limit");
    let waiting = store.changed(job, idle, Duration::from_secs(30));
    let appending = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let run = RunKey::build(job).id();
        append(store, job, &run_lines(&run, 1..=1)).await;
    };
    let (woken, ()) = tokio::time::timeout(Duration::from_secs(20), futures::future::join(waiting, appending))
        .await
        .expect("an append must wake the reader well before its 30 s limit");
    assert_ne!(woken.expect("a woken wait"), idle, "the version moved");
}

/// A kill request stays in the mailbox until forgotten; a waiting reader is woken by one.
pub async fn the_mailbox_keeps_a_request_until_it_is_forgotten(store: &dyn Store) {
    let job = new_job(store).await;
    let mine = |requests: &[(JobId, KillRequest)]| requests.iter().filter(|(id, _)| *id == job).count();
    let (version, requests) = store.kill_requests(0, Duration::ZERO).await.expect("requests now");
    assert_eq!(mine(&requests), 0);
    let request = KillRequest { at: line_time(3), by: Some("ops".into()), reason: Some("stuck".into()) };
    let waiting = store.kill_requests(version, Duration::from_secs(30));
    let asking = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.request_kill(job, &request).await.expect("request a kill");
    };
    let (answer, ()) = tokio::time::timeout(Duration::from_secs(20), futures::future::join(waiting, asking))
        .await
        .expect("a request must wake the reader");
    let (_, requests) = answer.expect("requests after the change");
    assert_eq!(requests.iter().find(|(id, _)| *id == job).map(|(_, r)| r), Some(&request), "the request as left");
    store.forget_kill_request(job).await.expect("forget");
    store.forget_kill_request(job).await.expect("forgetting twice is fine");
    let (_, requests) = store.kill_requests(0, Duration::ZERO).await.expect("requests now");
    assert_eq!(mine(&requests), 0, "forgotten");
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
            excerpt: Vec::new(),
        },
        TestResult {
            index: 1,
            command: "make lint".into(),
            status: TestStatus::Failed,
            exit_code: Some(2),
            started: Some(at(4_601)),
            ended: Some(at(9_000)),
            excerpt: vec!["lint: 3 problems".into()],
        },
    ];
    let mut failure = Failure::new(Phase::Test, FailureReason::ExitCode, "test 1 (make lint) exited with 2");
    failure.test = Some(1);
    failure.exit_code = Some(2);
    failure.excerpt = vec!["lint: 3 problems".into()];
    failure.hint = Some("a hint".into());
    failure.dockerfile = Some(DockerfileSpot { path: "Dockerfile".into(), line: 3, instruction: "RUN make".into() });
    failure.log_tail = vec!["lint: 3 problems".into(), "make: *** [lint] Error 2".into()];
    let remaining = vec![Leftover { what: "container x".into(), why: "busy".into() }];
    let cleanup = CleanupReport { removed: vec!["temp image".into()], remaining };
    record.state = JobState::Ended { outcome: Outcome::Failed { failure }, cleanup };
    // Entries decided with the state but not yet archived are part of the record.
    record.outbox.event(at(9_003), JobEvent::StatusChanged { status: JobStatus::Failed });
    record.outbox.line(at(9_003), Phase::Test, "make lint failed");
    record
}

/// `record` with the state a job of `status` has (cleaned up or not, once it ended).
fn with_status(mut record: JobRecord, status: JobStatus, cleaned_up: bool) -> JobRecord {
    let kill = || KillRequest { at: record.created_at, by: None, reason: None };
    let outcome = match status {
        JobStatus::Pending => return record,
        JobStatus::Building | JobStatus::Testing | JobStatus::Publishing => {
            let phase = status.phase().expect("a running status has a phase");
            record.state = JobState::Running(PhaseRun::new(phase, record.spec.tests().len()));
            return record;
        }
        JobStatus::Succeeded => Outcome::Succeeded,
        JobStatus::Killed => Outcome::Killed { request: kill() },
        JobStatus::Failed => {
            Outcome::Failed { failure: Failure::new(Phase::Build, FailureReason::ExitCode, "build exited with code 1") }
        }
    };
    record.state = if cleaned_up {
        JobState::Ended { outcome, cleanup: CleanupReport::default() }
    } else {
        JobState::Ending { outcome }
    };
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

async fn cursor(store: &dyn Store, job: JobId, run: &RunId, sequences: u64) -> RunCursor {
    store.cursor(job, run, sequences).await.expect("cursor")
}

async fn entries_append(store: &dyn Store, job: JobId, entries: &[NewEntry]) -> u64 {
    store.append(job, entries).await.expect("append")
}

async fn all_entries(store: &dyn Store, job: JobId) -> Vec<Entry> {
    store.entries(job, &EntryQuery { phase: None, after: 0, limit: usize::MAX }).await.expect("entries")
}

/// The engine's entry `n`: an event, at the time of line `n`.
fn event(n: u64, event: JobEvent) -> NewEntry {
    NewEntry::Event(NewEvent { n, ts: line_time(n), event })
}

/// The engine's entry `n`: a line of its own.
fn engine_line(n: u64, phase: Phase, text: &str) -> NewEntry {
    let mut record_outbox = jobforge_core::record::Outbox { written: n - 1, ..Default::default() };
    record_outbox.line(line_time(n), phase, text);
    record_outbox.entries().remove(0)
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
