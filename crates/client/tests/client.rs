//! `jobforge_client::Client` against a scripted HTTP server (`wiremock`): what each call sends,
//! how answers and refusals come back, an unreachable service, and the event stream, including
//! `follow` reconnecting after the server closes early.
//!
//! Every body the mock sends is built from the wire types of `jobforge-api` and serialized, so
//! these tests follow the contract when it changes. The real server is tested in its own crate.

use std::time::Duration;

use futures::StreamExt;
use jobforge_api::{ErrorBody, ErrorCode, Logs, Ready, Submitted, events};
use jobforge_client::{Client, ClientError, ClientOptions, Event, JobView, LogsQuery};
use jobforge_core::image::ImageRef;
use jobforge_core::logs::LogLine;
use jobforge_core::record::JobRecord;
use jobforge_core::validate::Problem;
use jobforge_core::{JobId, JobStatus, Phase, Stream, Timestamp};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A mock service and a client of it that reconnects at once and gives up after 2 failures.
async fn service() -> (MockServer, Client) {
    let server = MockServer::start().await;
    let options =
        ClientOptions { reconnect_backoff: Duration::from_millis(1), max_reconnects: 2, ..ClientOptions::default() };
    let client = Client::with_options(&server.uri(), options).expect("the mock's URL is valid");
    (server, client)
}

fn config() -> serde_json::Value {
    json!({
        "repo_url": "https://example.com/team/app.git", "image_name": "team/app",
        "registry_url": "127.0.0.1:5000", "test_commands": ["make check"],
    })
}

/// Job `id` in `status`, as the server would show it.
fn job(id: JobId, status: JobStatus) -> JobView {
    let spec = jobforge_core::validate::job_spec(&config()).expect("a valid config");
    let temp: ImageRef = format!("127.0.0.1:5000/temp/{id}:latest").parse().expect("a valid image");
    let record = JobRecord::new(id, spec, temp, Timestamp::now());
    JobView { status, ..JobView::from_record(&record) }
}

fn line(seq: u64, text: &str) -> LogLine {
    LogLine { seq, ts: Timestamp::now(), phase: Phase::Build, test: None, stream: Stream::Stdout, text: text.into() }
}

fn json_answer(status: u16, body: &impl serde::Serialize) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

fn error_answer(status: u16, code: ErrorCode, error: &str, problems: Vec<Problem>) -> ResponseTemplate {
    json_answer(status, &ErrorBody { error: error.into(), code, problems })
}

/// An event stream as the server writes it: each event, with keep-alive comments between.
fn sse_answer(stream: &[Event]) -> ResponseTemplate {
    let mut body = String::from(": keep-alive\n\n");
    for event in stream {
        let (name, id, data) = match event {
            Event::Status(job) => (events::STATUS, None, serde_json::to_string(job)),
            Event::Log(line) => (events::LOG, Some(line.seq), serde_json::to_string(line)),
            Event::Job(entry) => (entry.event.name(), Some(entry.seq), serde_json::to_string(entry)),
            Event::End(job) => (events::END, None, serde_json::to_string(job)),
        };
        body.push_str(&format!("event: {name}\n"));
        if let Some(id) = id {
            body.push_str(&format!("id: {id}\n"));
        }
        body.push_str(&format!("data: {}\n\n: keep-alive\n\n", data.expect("events serialize")));
    }
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// Every item of `stream`, errors as their message.
async fn collect(stream: jobforge_client::EventStream) -> Vec<Result<Event, String>> {
    stream.map(|item| item.map_err(|error| error.to_string())).collect().await
}

#[tokio::test]
async fn submit_posts_the_config_and_returns_the_new_job() {
    let (server, client) = service().await;
    let id = JobId::new();
    let submitted = Submitted { job_id: id, status: JobStatus::Pending };
    Mock::given(method("POST"))
        .and(path("/v1/jobs"))
        .and(body_json(config()))
        .and(header("user-agent", concat!("jobforge-client/", env!("CARGO_PKG_VERSION"))))
        .respond_with(json_answer(201, &submitted).insert_header("location", format!("/v1/jobs/{id}")))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(client.submit(&config()).await.expect("submitted"), submitted);
}

#[tokio::test]
async fn a_refused_config_is_an_api_error_with_every_problem() {
    let (server, client) = service().await;
    let problems = vec![
        Problem::new("image_name", "component \"App\" is not allowed"),
        Problem::new("colour", "is not a known field"),
    ];
    Mock::given(method("POST"))
        .and(path("/v1/jobs"))
        .respond_with(error_answer(400, ErrorCode::InvalidRequest, "invalid job config: 2 problems", problems.clone()))
        .mount(&server)
        .await;

    let error = client.submit(&json!({"colour": "blue"})).await.expect_err("refused");
    assert!(matches!(&error, ClientError::Api { status: 400, body } if body.code == ErrorCode::InvalidRequest));
    assert_eq!(error.status(), Some(400));
    assert_eq!(error.problems(), problems.as_slice());
    assert_eq!(
        error.to_string(),
        "invalid job config: 2 problems (400)\n  image_name: component \"App\" is not allowed\n  colour: is not a known field"
    );
}

#[tokio::test]
async fn an_unknown_job_is_not_found() {
    let (server, client) = service().await;
    let id = JobId::new();
    Mock::given(method("GET"))
        .and(path(format!("/v1/jobs/{id}")))
        .respond_with(error_answer(404, ErrorCode::NotFound, &format!("job {id} not found"), vec![]))
        .mount(&server)
        .await;

    let error = client.job(id).await.expect_err("not found");
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    assert!(error.problems().is_empty());
    assert_eq!(error.to_string(), format!("job {id} not found (404)"));
}

#[tokio::test]
async fn an_answer_that_is_not_jobforge_json_is_a_decode_error_with_an_excerpt() {
    let (server, client) = service().await;
    Mock::given(path("/health"))
        .respond_with(ResponseTemplate::new(502).set_body_raw("<html><h1>502 Bad Gateway</h1></html>", "text/html"))
        .mount(&server)
        .await;

    let error = client.health().await.expect_err("not jobforge's answer");
    assert!(matches!(error, ClientError::Decode { status: 502, .. }), "{error:?}");
    assert!(error.to_string().contains("502 Bad Gateway"), "{error}");
}

#[tokio::test]
async fn a_service_that_is_not_listening_is_a_connect_error_naming_the_url() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("bound").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&format!("{url}/")).expect("a valid URL");

    let error = client.health().await.expect_err("nothing listens there");
    assert!(matches!(&error, ClientError::Connect { url: named, .. } if *named == url), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("cannot reach the jobforge service at {url} (is `jobforge serve` running?): connection refused")
    );
    assert_eq!(error.status(), None);
}

#[tokio::test]
async fn logs_pass_their_query_and_ready_reads_a_503_as_not_ready() {
    let (server, client) = service().await;
    let id = JobId::new();
    let logs = Logs {
        job_id: id,
        status: JobStatus::Testing,
        lines: vec![line(6, "ok")],
        next_after: 6,
        complete: false,
        truncated: false,
    };
    Mock::given(method("GET"))
        .and(path(format!("/v1/jobs/{id}/logs")))
        .and(query_param("phase", "test"))
        .and(query_param("test", "1"))
        .and(query_param("after", "5"))
        .and(query_param("limit", "10"))
        .respond_with(json_answer(200, &logs))
        .expect(1)
        .mount(&server)
        .await;
    let not_ready = Ready {
        ready: false,
        checks: [("store".to_owned(), "ok".to_owned()), ("backend".to_owned(), "nomad: connection refused".to_owned())]
            .into(),
    };
    Mock::given(method("GET")).and(path("/ready")).respond_with(json_answer(503, &not_ready)).mount(&server).await;

    let query =
        LogsQuery { phase: Some(Phase::Test), test: Some(1), after: 5, limit: Some(10), ..LogsQuery::default() };
    assert_eq!(client.logs(id, &query).await.expect("logs"), logs);
    assert_eq!(client.ready().await.expect("a readiness report, not an error"), not_ready);
}

#[tokio::test]
async fn kill_sends_who_and_why() {
    let (server, client) = service().await;
    let id = JobId::new();
    let killed = job(id, JobStatus::Testing);
    Mock::given(method("POST"))
        .and(path(format!("/v1/jobs/{id}/kill")))
        .and(body_json(json!({"by": "ci", "reason": "superseded"})))
        .respond_with(json_answer(202, &killed))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(client.kill(id, Some("ci"), Some("superseded")).await.expect("kill accepted"), killed);
}

#[tokio::test]
async fn events_come_typed_and_in_order_and_end_with_end() {
    let (server, client) = service().await;
    let id = JobId::new();
    let stream = vec![
        Event::Status(job(id, JobStatus::Building)),
        Event::Log(line(1, "Step 1/2 : FROM alpine")),
        Event::Log(line(2, "héllo 🦀")),
        Event::End(job(id, JobStatus::Succeeded)),
    ];
    Mock::given(method("GET"))
        .and(path(format!("/v1/jobs/{id}/events")))
        .and(query_param("after", "0"))
        .and(query_param("phase", "build"))
        .and(header("accept", "text/event-stream"))
        .respond_with(sse_answer(&stream))
        .expect(1)
        .mount(&server)
        .await;

    let events = client.events(id, 0, Some(Phase::Build)).await.expect("the stream opens");
    assert_eq!(collect(events).await, stream.into_iter().map(Ok).collect::<Vec<_>>());
}

#[tokio::test]
async fn events_of_an_unknown_job_fail_before_streaming() {
    let (server, client) = service().await;
    let id = JobId::new();
    Mock::given(path(format!("/v1/jobs/{id}/events")))
        .respond_with(error_answer(404, ErrorCode::NotFound, &format!("job {id} not found"), vec![]))
        .expect(2) // once by `events`, once by `follow`
        .mount(&server)
        .await;

    let error = client.events(id, 0, None).await.expect_err("not found");
    assert_eq!(error.status(), Some(404));
    // `follow` does not retry a refusal either.
    assert_eq!(collect(client.follow(id, 0, None)).await, vec![Err(format!("job {id} not found (404)"))]);
}

#[tokio::test]
async fn follow_reconnects_after_the_last_line_seen_and_yields_each_line_once() {
    let (server, client) = service().await;
    let id = JobId::new();
    let building = job(id, JobStatus::Building);
    let (one, two, three) = (line(1, "one"), line(2, "two"), line(3, "three"));
    let end = job(id, JobStatus::Succeeded);
    let events_path = format!("/v1/jobs/{id}/events");
    // The first connection closes before the job ends.
    Mock::given(path(&events_path))
        .and(query_param("after", "0"))
        .respond_with(sse_answer(&[Event::Status(building.clone()), Event::Log(one.clone()), Event::Log(two.clone())]))
        .expect(1)
        .mount(&server)
        .await;
    // The second opens with the unchanged status, and even repeats line 2: neither is passed on.
    Mock::given(path(&events_path))
        .and(query_param("after", "2"))
        .respond_with(sse_answer(&[
            Event::Status(building.clone()),
            Event::Log(two.clone()),
            Event::Log(three.clone()),
            Event::End(end.clone()),
        ]))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(
        collect(client.follow(id, 0, None)).await,
        vec![
            Ok(Event::Status(building)),
            Ok(Event::Log(one)),
            Ok(Event::Log(two)),
            Ok(Event::Log(three)),
            Ok(Event::End(end)),
        ]
    );
}

#[tokio::test]
async fn follow_gives_up_after_consecutive_connections_bring_nothing_new() {
    let (server, client) = service().await;
    let id = JobId::new();
    let building = job(id, JobStatus::Building);
    Mock::given(path(format!("/v1/jobs/{id}/events")))
        .respond_with(sse_answer(&[Event::Status(building.clone())]))
        .expect(3) // the first connection and `max_reconnects` (2) more
        .mount(&server)
        .await;

    let items = collect(client.follow(id, 0, None)).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(Event::Status(building)));
    let url = server.uri();
    assert_eq!(
        items[1],
        Err(format!(
            "cannot reach the jobforge service at {url} (is `jobforge serve` running?): \
             the event stream closed before the job ended"
        ))
    );
}
