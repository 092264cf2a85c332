//! The Consul store against the fake Consul: the store conformance suite, and what only a
//! shared store has — check-and-set between replicas, history retention, chunked logs.

use std::time::Duration;

use jobforge_consul::{ConsulClient, ConsulConfig, ConsulStore, ConsulStoreConfig};
use jobforge_core::image::ImageRef;
use jobforge_core::logs::{LogQuery, NewLogLine, Origin};
use jobforge_core::ports::{JobFeed, JobRecords, LogArchive, Mailbox, StoreError};
use jobforge_core::record::JobRecord;
use jobforge_core::state::{CleanupReport, JobState, Outcome, PhaseRun};
use jobforge_core::{JobId, JobStatus, Phase, RunKey, Stream, Timestamp};
use jobforge_testkit::fake_consul::{FakeConsul, FakeConsulConfig};
use jobforge_testkit::store_conformance;

async fn fake() -> FakeConsul {
    FakeConsul::start(FakeConsulConfig::new()).await
}

fn store(consul: &FakeConsul, config: ConsulStoreConfig) -> ConsulStore {
    let client = ConsulClient::new(ConsulConfig::new(consul.url().parse().unwrap())).unwrap();
    ConsulStore::new(client, config)
}

fn record_with(id: JobId) -> JobRecord {
    let spec = jobforge_core::validate::job_spec(&serde_json::json!({
        "repo_url": "https://example.com/r.git", "image_name": "app", "registry_url": "127.0.0.1:5000",
    }))
    .unwrap();
    let temp: ImageRef = format!("127.0.0.1:5000/temp/{id}:latest").parse().unwrap();
    JobRecord::new(id, spec, temp, Timestamp::now())
}

fn finish(record: &mut JobRecord) {
    record.state = JobState::Ended { outcome: Outcome::Succeeded, cleanup: CleanupReport::default() };
}

fn running(record: &mut JobRecord, phase: Phase) {
    record.state = JobState::Running(PhaseRun::new(phase, record.spec.tests().len()));
}

fn line(job: JobId, n: u64, text: &str) -> NewLogLine {
    let run = RunKey::build(job).id();
    let mut line = NewLogLine::system(Phase::Build, None, text);
    line.stream = Stream::Stdout;
    line.origin = Some(Origin::Run { run, n });
    line
}

#[tokio::test]
async fn the_store_conformance_suite_passes() {
    let consul = fake().await;
    store_conformance::run_all(&store(&consul, ConsulStoreConfig::default())).await;
}

#[tokio::test]
async fn a_replica_that_lost_a_job_cannot_overwrite_its_new_driver() {
    let consul = fake().await;
    let (a, b) = (store(&consul, ConsulStoreConfig::default()), store(&consul, ConsulStoreConfig::default()));
    let mut record = record_with(JobId::new());
    a.insert(&record).await.unwrap();

    // B takes the job over: it reads the record (learning its index) and writes it.
    let mut taken = b.get(record.id).await.unwrap().unwrap();
    running(&mut taken, Phase::Build);
    b.update(&taken).await.unwrap();

    // A, still holding the old index, is refused; the record is B's.
    running(&mut record, Phase::Publish);
    assert!(matches!(a.update(&record).await, Err(StoreError::Conflict(id)) if id == record.id));
    assert_eq!(b.get(record.id).await.unwrap().unwrap().status(), JobStatus::Building);
    // B keeps writing.
    running(&mut taken, Phase::Test);
    b.update(&taken).await.unwrap();
}

#[tokio::test]
async fn history_keeps_the_newest_jobs_up_to_its_count() {
    let consul = fake().await;
    let store = store(&consul, ConsulStoreConfig { history_count: 3, ..ConsulStoreConfig::default() });
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut record = record_with(JobId::new());
        store.insert(&record).await.unwrap();
        store.append_logs(record.id, &[line(record.id, 1, "built")]).await.unwrap();
        finish(&mut record);
        store.update(&record).await.unwrap();
        ids.push(record.id);
    }
    let page = store.list(10, 0).await.unwrap();
    let kept: Vec<JobId> = page.jobs.iter().map(|r| r.id).collect();
    assert_eq!(kept, [ids[4], ids[3], ids[2]], "the three newest, newest first");
    assert_eq!(store.get(ids[0]).await.unwrap(), None);
    assert!(consul.kv(&format!("jobforge-service/logs/{}/00000000", ids[0])).is_none(), "its logs went with it");
    assert!(consul.kv(&format!("jobforge-service/jobs/{}", ids[4])).is_none(), "finished jobs leave jobs/");
    assert!(store.live().await.unwrap().is_empty());
}

#[tokio::test]
async fn history_forgets_jobs_older_than_its_age() {
    let consul = fake().await;
    let store =
        store(&consul, ConsulStoreConfig { history_age: Duration::from_secs(3600), ..ConsulStoreConfig::default() });
    // A job id from 40 days ago (ids are time-ordered UUIDv7s).
    let old_time =
        uuid::Timestamp::from_unix(uuid::NoContext, (Timestamp::now().unix_millis() / 1000 - 40 * 86_400) as u64, 0);
    let old: JobId = uuid::Uuid::new_v7(old_time).to_string().parse().unwrap();
    for id in [old, JobId::new()] {
        let mut record = record_with(id);
        store.insert(&record).await.unwrap();
        finish(&mut record);
        store.update(&record).await.unwrap();
    }
    assert_eq!(store.get(old).await.unwrap(), None, "older than the history's age");
    assert_eq!(store.list(10, 0).await.unwrap().total, 1);
}

#[tokio::test]
async fn logs_span_chunks_and_survive_a_restart_of_the_replica() {
    let consul = fake().await;
    let first = store(&consul, ConsulStoreConfig::default());
    let record = record_with(JobId::new());
    first.insert(&record).await.unwrap();
    let text = "x".repeat(1000);
    for n in 1..=100 {
        first.append_logs(record.id, &[line(record.id, n, &text)]).await.unwrap();
    }
    assert!(consul.kv(&format!("jobforge-service/logs/{}/00000002", record.id)).is_some(), "several chunks");
    for chunk in 0..3 {
        let value = consul.kv(&format!("jobforge-service/logs/{}/{chunk:08}", record.id)).unwrap().value;
        assert!(value.len() < 512 * 1024, "each chunk is under Consul's value limit");
    }

    // Another replica (or this one after a restart) continues where the log stands.
    let second = store(&consul, ConsulStoreConfig::default());
    let run = RunKey::build(record.id).id();
    assert_eq!(second.cursor(record.id, &run, 1).await.unwrap().highest(0), 100);
    let seq =
        second.append_logs(record.id, &[line(record.id, 100, &text), line(record.id, 101, "last")]).await.unwrap();
    assert_eq!(seq, 101, "line 100 was stored already; 101 is new");
    let lines = second.logs(record.id, &LogQuery::after(0, 1000)).await.unwrap();
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=101).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_job_past_its_log_cap_gets_one_marker_line_and_its_live_stream_goes_on() {
    let consul = fake().await;
    let capped = ConsulStoreConfig { log_cap_bytes: 2500, ..ConsulStoreConfig::default() };
    let (driving, another) = (store(&consul, capped.clone()), store(&consul, capped.clone()));
    let record = record_with(JobId::new());
    driving.insert(&record).await.unwrap();
    let text = "y".repeat(1000);
    let lines: Vec<NewLogLine> = (1..=5).map(|n| line(record.id, n, &text)).collect();
    driving.append_logs(record.id, &lines).await.unwrap();
    driving.append_logs(record.id, &[line(record.id, 6, "more")]).await.unwrap();

    // Two lines fit in the stored chunks, then the marker; the rest is streamed on, on the
    // replica driving the job and on any other.
    for replica in [&driving, &another] {
        let live = replica.logs(record.id, &LogQuery::after(0, 100)).await.unwrap();
        assert_eq!(live[2].stream, Stream::System);
        assert!(live[2].text.starts_with("log truncated:"), "{}", live[2].text);
        let texts: Vec<&str> = live.iter().map(|l| l.text.as_str()).skip(3).collect();
        assert_eq!(texts, [text.as_str(), text.as_str(), text.as_str(), "more"]);
        let seqs: Vec<u64> = live.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    }

    // A replica taking the job over goes on where the last driver stopped.
    let taking_over = store(&consul, capped);
    let run = RunKey::build(record.id).id();
    assert_eq!(taking_over.cursor(record.id, &run, 1).await.unwrap().highest(0), 6);
    assert_eq!(taking_over.append_logs(record.id, &[line(record.id, 6, "more")]).await.unwrap(), 7, "no line twice");
    assert_eq!(taking_over.append_logs(record.id, &[line(record.id, 7, "last")]).await.unwrap(), 8);
    let tail = taking_over.tail(record.id, Phase::Build, None, 2).await.unwrap();
    let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["more", "last"], "a failure's tail shows the last lines, not the marker");
}

#[tokio::test]
async fn kill_requests_wake_a_waiting_replica_and_are_forgotten_once_carried_out() {
    use jobforge_core::record::KillRequest;
    let consul = fake().await;
    let (driving, other) = (store(&consul, ConsulStoreConfig::default()), store(&consul, ConsulStoreConfig::default()));
    let record = record_with(JobId::new());
    driving.insert(&record).await.unwrap();
    let (version, requests) = driving.kill_requests(0, Duration::from_secs(10)).await.unwrap();
    assert!(requests.is_empty());

    let waiting = tokio::spawn({
        let driving = driving.clone();
        async move { driving.kill_requests(version, Duration::from_secs(30)).await.unwrap() }
    });
    let request = KillRequest { at: Timestamp::now(), by: Some("agent".into()), reason: Some("stop".into()) };
    other.request_kill(record.id, &request).await.unwrap();
    let (version, requests) = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_eq!(requests, [(record.id, request)]);

    driving.forget_kill_request(record.id).await.unwrap();
    let (_, requests) = driving.kill_requests(version, Duration::from_secs(10)).await.unwrap();
    assert!(requests.is_empty(), "{requests:?}");
}

#[tokio::test]
async fn a_reader_on_another_replica_is_woken_by_new_lines_and_record_changes() {
    let consul = fake().await;
    let (driving, reader) =
        (store(&consul, ConsulStoreConfig::default()), store(&consul, ConsulStoreConfig::default()));
    let mut record = record_with(JobId::new());
    driving.insert(&record).await.unwrap();
    let id = record.id;
    let version = reader.changed(id, 0, Duration::from_secs(10)).await.unwrap();
    let version = reader.changed(id, version, Duration::from_millis(10)).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), reader.changed(id, version, Duration::from_secs(30)));
    assert!(quiet.await.is_err(), "nothing changed, so the wait goes on");

    let after_line = tokio::spawn({
        let reader = reader.clone();
        async move { reader.changed(id, version, Duration::from_secs(30)).await.unwrap() }
    });
    driving.append_logs(id, &[line(id, 1, "hello")]).await.unwrap();
    let version = tokio::time::timeout(Duration::from_secs(10), after_line).await.unwrap().unwrap();

    let after_update = tokio::spawn({
        let reader = reader.clone();
        async move { reader.changed(id, version, Duration::from_secs(30)).await.unwrap() }
    });
    running(&mut record, Phase::Build);
    driving.update(&record).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), after_update).await.unwrap().unwrap();
}

/// An ended job cleaned up again later is updated where it is, in the history.
#[tokio::test]
async fn an_ended_job_in_the_history_can_be_updated_again() {
    let consul = fake().await;
    let (driving, later) = (store(&consul, ConsulStoreConfig::default()), store(&consul, ConsulStoreConfig::default()));
    let mut record = record_with(JobId::new());
    driving.insert(&record).await.unwrap();
    let leftover = jobforge_core::state::Leftover { what: "temp image".into(), why: "registry down".into() };
    let partial = CleanupReport { removed: vec![], remaining: vec![leftover] };
    record.state = JobState::Ended { outcome: Outcome::Succeeded, cleanup: partial };
    driving.update(&record).await.unwrap();
    assert!(consul.kv(&format!("jobforge-service/history/{}", record.id)).is_some(), "ended: in the history");

    finish(&mut record);
    later.update(&record).await.unwrap();
    let stored = later.get(record.id).await.unwrap().unwrap();
    assert!(stored.cleaned_up(), "the second cleanup's report is kept");
    assert!(consul.kv(&format!("jobforge-service/jobs/{}", record.id)).is_none(), "and the job stays out of jobs/");
}
