//! `SqliteStore` against the `Store` conformance suite, plus what only a file can show:
//! reopening, concurrent appends from several connections, corrupt rows and schema versions.
//!
//! Every test opens its own store in a fresh temporary directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jobforge_core::logs::{LogQuery, NewLogLine, RunLine};
use jobforge_core::ports::{JobRecords, LogArchive, StoreError};
use jobforge_core::record::JobRecord;
use jobforge_core::state::{JobState, PhaseRun};
use jobforge_core::{JobId, JobStatus, Phase, RunKey, Stream, Timestamp, validate};
use jobforge_sqlite::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// Each conformance behaviour as its own test, on its own store.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod conformance {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let (_dir, store) = super::fresh_store();
                    jobforge_testkit::store_conformance::$behaviour(&store).await;
                }
            )*
        }
    };
}

conformance!(
    insert_then_get_round_trips,
    update_replaces_the_record,
    duplicate_insert_is_refused,
    update_of_missing_job_is_refused,
    list_is_newest_first_with_total_and_paging,
    live_holds_unfinished_and_uncleaned_jobs,
    append_numbers_lines_per_job_without_gaps,
    replayed_origins_are_stored_once,
    system_lines_always_append,
    cursors_are_per_run_and_sequence,
    logs_filter_by_phase_test_after_and_limit,
    tail_returns_the_last_lines_in_order,
    events_share_the_sequence_with_lines_and_are_stored_once,
    entries_interleave_events_and_lines_of_a_phase,
    an_ended_job_with_leftovers_is_not_live,
    the_feed_wakes_a_reader_on_an_append,
    the_mailbox_keeps_a_request_until_it_is_forgotten,
    check_passes,
);

/// The whole suite on one store: the behaviours do not disturb each other.
#[tokio::test]
async fn whole_suite_on_one_store() {
    let (_dir, store) = fresh_store();
    jobforge_testkit::store_conformance::run_all(&store).await;
}

#[tokio::test]
async fn everything_survives_closing_and_reopening_the_file() {
    let (dir, store) = fresh_store();
    let mut record = record();
    store.insert(&record).await.unwrap();
    record.state = JobState::Running(PhaseRun::new(Phase::Build, 1));
    store.update(&record).await.unwrap();
    let build = RunKey::build(record.id).id();
    let lines = [run_line(&build, 1), run_line(&build, 2), NewLogLine::system(Phase::Build, None, "note")];
    assert_eq!(store.append_logs(record.id, &lines).await.unwrap(), 3);
    let before = store.logs(record.id, &LogQuery::after(0, 100)).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_eq!(store.get(record.id).await.unwrap(), Some(record.clone()));
    assert_eq!(store.live().await.unwrap(), [record.clone()]);
    assert_eq!(store.list(10, 0).await.unwrap().total, 1);
    assert_eq!(store.logs(record.id, &LogQuery::after(0, 100)).await.unwrap(), before);
    assert_eq!(store.cursor(record.id, &build, 1).await.unwrap().highest(0), 2);
    // Replays are still recognised, and numbering continues where it stopped.
    assert_eq!(store.append_logs(record.id, &[run_line(&build, 2), run_line(&build, 3)]).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_job_number_lines_without_gaps_or_duplicates() {
    const TASKS: u32 = 8;
    const BATCHES: u64 = 20;
    const PER_BATCH: u64 = 5;
    let (dir, store) = fresh_store();
    // A second handle on the same file has its own connections: SQLite's lock, not only our
    // mutex, must keep the numbering straight.
    let other = SqliteStore::open(&db_path(&dir)).unwrap();
    let job = record();
    store.insert(&job).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = if task % 2 == 0 { store.clone() } else { other.clone() };
        let run = RunKey::test(job.id, task).id();
        tasks.spawn(async move {
            let mut returned = Vec::new();
            for batch in 0..BATCHES {
                let mut lines: Vec<_> = (1..=PER_BATCH).map(|i| run_line(&run, batch * PER_BATCH + i)).collect();
                // A replayed line and a system line in every batch.
                lines.push(run_line(&run, batch * PER_BATCH + 1));
                lines.push(NewLogLine::system(Phase::Test, Some(task), format!("task {task} batch {batch}")));
                returned.push(store.append_logs(job.id, &lines).await.unwrap());
            }
            returned
        });
    }
    let total = u64::from(TASKS) * BATCHES * (PER_BATCH + 1);
    while let Some(returned) = tasks.join_next().await {
        let returned = returned.unwrap();
        assert!(returned.windows(2).all(|w| w[0] < w[1]), "each task sees the seq grow: {returned:?}");
        assert!(returned.iter().all(|&seq| seq <= total));
    }

    let lines = store.logs(job.id, &LogQuery::after(0, usize::MAX)).await.unwrap();
    let seqs: Vec<u64> = lines.iter().map(|line| line.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "gap-free and strictly increasing");
    let distinct: BTreeSet<(Option<u32>, &str)> = lines.iter().map(|line| (line.test, line.text.as_str())).collect();
    assert_eq!(distinct.len() as u64, total, "no line stored twice");
}

#[tokio::test]
async fn an_undecodable_record_is_reported_as_corrupt() {
    let (dir, store) = fresh_store();
    let record = record();
    store.insert(&record).await.unwrap();
    raw(&dir).execute("UPDATE jobs SET record = '{\"id\": broken' WHERE id = ?1", [record.id.to_string()]).unwrap();

    assert_corrupt(store.get(record.id).await, record.id);
    assert_corrupt(store.list(10, 0).await, record.id);
    assert_corrupt(store.live().await, record.id);
}

#[tokio::test]
async fn a_row_holding_another_jobs_record_is_corrupt() {
    let (dir, store) = fresh_store();
    let (first, second) = (record(), record());
    store.insert(&first).await.unwrap();
    store.insert(&second).await.unwrap();
    let sql = "UPDATE jobs SET record = (SELECT record FROM jobs WHERE id = ?2) WHERE id = ?1";
    raw(&dir).execute(sql, [first.id.to_string(), second.id.to_string()]).unwrap();

    assert_corrupt(store.get(first.id).await, first.id);
    assert_eq!(store.get(second.id).await.unwrap(), Some(second));
}

#[tokio::test]
async fn an_unreadable_log_line_is_reported_as_corrupt() {
    let (dir, store) = fresh_store();
    let record = record();
    store.insert(&record).await.unwrap();
    let build = RunKey::build(record.id).id();
    store.append_logs(record.id, &[run_line(&build, 1)]).await.unwrap();
    raw(&dir).execute("UPDATE logs SET phase = 'deploy'", []).unwrap();

    assert_corrupt(store.logs(record.id, &LogQuery::after(0, 10)).await, record.id);
}

#[tokio::test]
async fn appending_to_an_unknown_job_is_refused() {
    let (_dir, store) = fresh_store();
    let job = JobId::new();
    let line = NewLogLine::system(Phase::Build, None, "orphan");
    match store.append_logs(job, &[line]).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, job),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn a_new_file_is_in_wal_mode_at_the_current_schema_version() {
    let (dir, _store) = fresh_store();
    let conn = raw(&dir);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 3);
}

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_records_and_lines() {
    let (dir, store) = fresh_store();
    drop(store);
    let conn = raw(&dir);
    conn.execute_batch("DROP TABLE events; DROP TABLE log_sizes; PRAGMA user_version = 1;").unwrap();
    let id = JobId::new();
    // A record as jobforge wrote it before the state machine: flat status, kill, cleaned_up.
    let legacy = serde_json::json!({
        "id": id, "status": "KILLED", "created_at": "2026-11-29T10:00:00.000Z",
        "updated_at": "2026-11-29T10:01:00.000Z", "temp_image": format!("127.0.0.1:5000/temp/{id}:latest"),
        "spec": {"repo_url": "https://git.example.com/team/app.git", "git_ref": "main", "dockerfile_path": "Dockerfile",
                 "context": ".", "image_name": "team/app", "image_tags": ["v1"], "registry_url": "127.0.0.1:5000"},
        "kill": {"at": "2026-11-29T10:00:30.000Z", "by": "ops", "reason": "stuck"},
        "cleaned_up": true,
    });
    conn.execute(
        "INSERT INTO jobs (id, created_at, status, live, record) VALUES (?1, 0, 'KILLED', 0, ?2)",
        [id.to_string(), legacy.to_string()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO logs (job_id, seq, phase, stream, ts, text) VALUES (?1, 1, 'build', 'system', 0, 'old line')",
        [id.to_string()],
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let record = store.get(id).await.unwrap().expect("the old record is kept");
        assert_eq!(record.status(), JobStatus::Killed);
        assert_eq!(record.kill().and_then(|k| k.reason.as_deref()), Some("stuck"));
        assert!(record.state.is_ended() && !record.is_live());
        let lines = store.logs(id, &LogQuery::after(0, 10)).await.unwrap();
        assert_eq!(lines[0].text, "old line");
        // New entries continue the old numbering.
        let run = RunKey::build(id).id();
        assert_eq!(store.append_logs(id, &[run_line(&run, 1)]).await.unwrap(), 2);
    });
}

#[tokio::test]
async fn a_stored_spec_that_breaks_the_job_rules_is_corrupt() {
    let (dir, store) = fresh_store();
    let record = record();
    store.insert(&record).await.unwrap();
    // A ref git would read as an option: refused on the way in, as a submission is.
    let sql = "UPDATE jobs SET record = json_set(record, '$.spec.git_ref', '-x') WHERE id = ?1";
    raw(&dir).execute(sql, [record.id.to_string()]).unwrap();
    assert_corrupt(store.get(record.id).await, record.id);
}

#[test]
fn a_database_from_a_newer_jobforge_is_refused() {
    let (dir, store) = fresh_store();
    drop(store);
    raw(&dir).pragma_update(None, "user_version", 99).unwrap();
    match SqliteStore::open(&db_path(&dir)) {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("schema version 99"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn check_reports_a_schema_changed_under_it() {
    let (dir, store) = fresh_store();
    store.check().await.unwrap();
    raw(&dir).pragma_update(None, "user_version", 99).unwrap();
    assert!(matches!(store.check().await, Err(StoreError::Unavailable(_))));
}

// ---- helpers ----

/// A store at `<tempdir>/state/jobforge.db`; the directory does not exist beforehand.
fn fresh_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    (dir, store)
}

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("state").join("jobforge.db")
}

/// A plain connection to the store's file, to change what the store cannot.
fn raw(dir: &TempDir) -> rusqlite::Connection {
    let path: &Path = &db_path(dir);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn
}

/// A fresh PENDING job created now, at whole milliseconds.
fn record() -> JobRecord {
    let spec = validate::job_spec(&serde_json::json!({
        "repo_url": "https://git.example.com/team/app.git",
        "image_name": "team/app",
        "registry_url": "127.0.0.1:5000",
        "test_commands": ["true"],
    }))
    .unwrap();
    let id = JobId::new();
    let temp_image = format!("127.0.0.1:5000/temp/{id}:latest").parse().unwrap();
    let now = Timestamp::from_unix_millis(Timestamp::now().unix_millis()).unwrap();
    JobRecord::new(id, spec, temp_image, now)
}

fn run_line(run: &jobforge_core::RunId, n: u64) -> NewLogLine {
    let ts = Timestamp::from_unix_millis(1_700_000_000_000).unwrap();
    NewLogLine::from_run(run, RunLine { n, stream: Stream::Stdout, ts, text: format!("line {n}") })
}

fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, job: JobId) {
    match result {
        Err(StoreError::Corrupt { id, message }) => {
            assert_eq!(id, job.to_string());
            assert!(!message.is_empty());
        }
        other => panic!("expected Corrupt for job {job}, got {other:?}"),
    }
}

/// Past its cap a job's log stores one marker line and nothing more; events still go in, and
/// the cap holds across reopening the file.
#[tokio::test]
async fn a_log_past_its_cap_ends_with_one_marker_line() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { log_cap_bytes: 20, ..SqliteOptions::default() };
    let store = SqliteStore::open_with(&db_path(&dir), options).unwrap();
    let record = record();
    store.insert(&record).await.unwrap();
    let build = RunKey::build(record.id).id();
    let lines: Vec<NewLogLine> = (1..=5).map(|n| run_line(&build, n)).collect();
    store.append_logs(record.id, &lines).await.unwrap();
    let texts = |lines: Vec<jobforge_core::logs::LogLine>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
    let stored = texts(store.logs(record.id, &LogQuery::after(0, 100)).await.unwrap());
    let marker = jobforge_core::logs::capped_marker(20);
    assert_eq!(stored, ["line 1", "line 2", "line 3", &marker], "three lines of 6 bytes fit in 20");
    drop(store);
    let store = SqliteStore::open_with(&db_path(&dir), options).unwrap();
    store.append_logs(record.id, &[run_line(&build, 6), NewLogLine::system(Phase::Build, None, "late")]).await.unwrap();
    assert_eq!(store.logs(record.id, &LogQuery::after(0, 100)).await.unwrap().len(), 4, "nothing after the marker");
    store.append_logs(record.id, &lines).await.unwrap();
    assert_eq!(store.logs(record.id, &LogQuery::after(0, 100)).await.unwrap().len(), 4, "nor on a replay");
}

/// An ended job older than the retention loses its logs when a new job comes in; its record
/// stays in the history, and live or recent jobs keep theirs.
#[tokio::test]
async fn logs_of_old_ended_jobs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { log_retention: std::time::Duration::from_secs(3600), ..SqliteOptions::default() };
    let store = SqliteStore::open_with(&db_path(&dir), options).unwrap();
    let ended = |id: JobId, live: bool| {
        let sql = "UPDATE jobs SET created_at = ?2, live = ?3 WHERE id = ?1";
        raw(&dir).execute(sql, rusqlite::params![id.to_string(), 1_000_i64, live]).unwrap();
    };
    let (old, old_live, recent) = (record(), record(), record());
    for job in [&old, &old_live, &recent] {
        store.insert(job).await.unwrap();
        let build = RunKey::build(job.id).id();
        store.append_logs(job.id, &[run_line(&build, 1)]).await.unwrap();
    }
    ended(old.id, false);
    ended(old_live.id, true);
    store.insert(&record()).await.unwrap();
    let count = async |id| store.logs(id, &LogQuery::after(0, 100)).await.unwrap().len();
    assert_eq!(count(old.id).await, 0, "the old ended job's logs are gone");
    assert!(store.get(old.id).await.unwrap().is_some(), "its record stays");
    assert_eq!(count(old_live.id).await, 1, "a live job keeps its logs however old");
    assert_eq!(count(recent.id).await, 1);
}
