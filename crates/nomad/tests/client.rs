//! `NomadClient` against a scripted HTTP server (wiremock), plus two tiny hand-written servers
//! where wiremock cannot go: a chunked body sent piece by piece on the test's cue, and TLS.
//!
//! These pin the wire rules (token header, namespace and region parameters, blocking queries in
//! the query string, plain-text errors, framed logs); the fake Nomad of `jobforge-testkit` is
//! not used here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use jobforge_nomad::api::{ClientStatus, FileEvent, JobStatus, LogType, StreamFrame};
use jobforge_nomad::job::{Job, RegisterRequest};
use jobforge_nomad::{Blocking, NomadClient, NomadConfig, NomadError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const JOB: &str = include_str!("../../../reference/nomad-examples/GET_v1_job_JOBID.response.json");
const ALLOCATIONS: &str = include_str!("../../../reference/nomad-examples/GET_v1_job_JOBID_allocations.response.json");
const TOKEN: &str = "9b0e7a5c-1d2f-4e3a-8b6c-7d8e9f0a1b2c";

fn config(address: &str) -> NomadConfig {
    let mut config = NomadConfig::new(Url::parse(address).unwrap());
    config.timeout = Duration::from_secs(5);
    config
}

/// A client of `server` with a token, a namespace and a region, as a production setup has.
fn client(server: &MockServer) -> NomadClient {
    let mut config = config(&server.uri());
    config.token = Some(TOKEN.to_owned());
    config.namespace = Some("builds".to_owned());
    config.region = Some("eu".to_owned());
    NomadClient::new(config).unwrap()
}

/// A client of `server` with nothing but the address.
fn plain_client(server: &MockServer) -> NomadClient {
    NomadClient::new(config(&server.uri())).unwrap()
}

/// Nomad's plain-text error answer.
fn nomad_error(status: u16, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(text.as_bytes().to_vec(), "text/plain; charset=utf-8")
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn frame(offset: i64, data: &[u8]) -> String {
    format!(r#"{{"Offset":{offset},"Data":"{}","File":"alloc/logs/build.stdout.0"}}"#, STANDARD.encode(data))
}

#[tokio::test]
async fn every_request_carries_the_token_namespace_and_region() {
    let server = MockServer::start().await;
    let scoped = || (header("X-Nomad-Token", TOKEN), query_param("namespace", "builds"), query_param("region", "eu"));
    let (token, namespace, region) = scoped();
    Mock::given(method("GET"))
        .and(path("/v1/job/example"))
        .and(token)
        .and(namespace)
        .and(region)
        .respond_with(json(200, JOB).insert_header("X-Nomad-Index", "7"))
        .expect(1)
        .mount(&server)
        .await;
    let (token, namespace, region) = scoped();
    Mock::given(method("PUT"))
        .and(path("/v1/jobs"))
        .and(token)
        .and(namespace)
        .and(region)
        .and(body_partial_json(serde_json::json!({"Job": {"ID": "example", "Type": "batch"}, "EnforceIndex": true})))
        .respond_with(json(
            200,
            r#"{"EvalID":"e-1","EvalCreateIndex":12,"JobModifyIndex":11,"Warnings":"","Index":12}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let (token, namespace, region) = scoped();
    Mock::given(method("DELETE"))
        .and(path("/v1/job/example"))
        .and(token)
        .and(namespace)
        .and(region)
        .and(query_param("purge", "true"))
        .respond_with(json(200, r#"{"EvalID":"e-2","EvalCreateIndex":13,"JobModifyIndex":13}"#))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let job = client.job("example").await.unwrap().unwrap();
    assert_eq!((job.job.id.as_str(), &job.status), ("example", &JobStatus::Running));

    let request = RegisterRequest {
        job: Job { id: "example".into(), name: "example".into(), kind: "batch".into(), ..Job::default() },
        enforce_index: true,
        job_modify_index: 0,
    };
    let registered = client.register(&request).await.unwrap();
    assert_eq!((registered.eval_id.as_str(), registered.job_modify_index), ("e-1", 11));

    let stopped = client.deregister("example", true).await.unwrap();
    assert_eq!((stopped.eval_id.as_str(), stopped.eval_create_index), ("e-2", 13));
}

#[tokio::test]
async fn without_a_token_or_namespace_nothing_is_sent_for_them() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/status/leader"))
        .and(query_param_is_missing("namespace"))
        .and(query_param_is_missing("region"))
        .respond_with(json(200, r#""10.0.0.1:4647""#))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(plain_client(&server).leader().await.unwrap(), "10.0.0.1:4647");
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|request| !request.headers.contains_key("x-nomad-token")));
}

#[tokio::test]
async fn a_blocking_query_sends_index_and_wait_in_the_query_and_reads_the_index() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/job/example/allocations"))
        .and(query_param("index", "41"))
        .and(query_param("wait", "30s"))
        .respond_with(
            json(200, ALLOCATIONS)
                .insert_header("X-Nomad-Index", "57")
                .insert_header("X-Nomad-KnownLeader", "true")
                .insert_header("X-Nomad-LastContact", "12"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/job/example/allocations"))
        .and(query_param_is_missing("index"))
        .and(query_param_is_missing("wait"))
        .respond_with(json(200, "[]").insert_header("X-Nomad-Index", "57"))
        .expect(2)
        .mount(&server)
        .await;

    let client = client(&server);
    let blocking = Blocking { index: 41, wait: Duration::from_secs(30) };
    let (allocations, meta) = client.job_allocations("example", Some(blocking)).await.unwrap();
    assert_eq!(allocations[0].client_status, ClientStatus::Running);
    assert_eq!((meta.index, meta.known_leader, meta.last_contact_ms), (57, true, 12));

    // Not a header, whatever the old OpenAPI spec says.
    let requests = server.received_requests().await.unwrap();
    assert!(!requests[0].headers.contains_key("index") && !requests[0].headers.contains_key("x-nomad-index"));

    // Index 0, or no blocking at all: return at once.
    let (none, meta) = client.job_allocations("example", None).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(meta.index, 57);
    let at_once = Blocking { index: 0, wait: Duration::from_secs(30) };
    client.job_allocations("example", Some(at_once)).await.unwrap();
}

#[tokio::test]
async fn an_answer_without_an_index_is_refused_for_a_blocking_read() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(json(200, "[]")).mount(&server).await;
    let error = plain_client(&server).job_allocations("example", None).await.unwrap_err();
    assert!(matches!(&error, NomadError::Decode { .. }), "{error}");
    assert!(error.to_string().contains("X-Nomad-Index"), "{error}");
}

#[tokio::test]
async fn what_nomad_does_not_have_is_none() {
    let server = MockServer::start().await;
    for (route, text) in [
        ("/v1/job/gone", "job not found"),
        ("/v1/job/gone/summary", "job not found"),
        ("/v1/allocation/gone", "alloc not found"),
        ("/v1/evaluation/gone", "eval not found"),
    ] {
        Mock::given(method("GET"))
            .and(path(route))
            .respond_with(nomad_error(404, text).insert_header("X-Nomad-Index", "99"))
            .mount(&server)
            .await;
    }
    let client = client(&server);
    assert_eq!(client.job("gone").await.unwrap(), None);
    assert_eq!(client.job_summary("gone").await.unwrap(), None);
    assert_eq!(client.allocation("gone").await.unwrap(), None);
    assert_eq!(client.evaluation("gone").await.unwrap(), None);
}

#[tokio::test]
async fn a_404_that_is_not_nomads_is_an_error_not_a_missing_job() {
    // What a reverse proxy with the wrong path prefix answers for everything.
    let server = MockServer::start().await;
    Mock::given(method("GET")).respond_with(nomad_error(404, "404 page not found\n")).mount(&server).await;
    let error = client(&server).job("example").await.unwrap_err();
    assert_eq!(error, NomadError::NotFound("404 page not found".into()));
}

#[tokio::test]
async fn an_invalid_job_is_a_clean_multi_line_error() {
    let server = MockServer::start().await;
    let text = "1 error occurred:\n\t* Task group build validation failed: 2 errors occurred:\n\t\
                * Task build validation failed: 1 error occurred:\n\t* Missing driver\n\n\n\t\
                * Restart policy mode must be \"delay\" or \"fail\"\n\n\n\n";
    Mock::given(method("PUT")).and(path("/v1/jobs")).respond_with(nomad_error(500, text)).mount(&server).await;
    let request = RegisterRequest {
        job: Job { id: "bad".into(), name: "bad".into(), kind: "batch".into(), ..Job::default() },
        enforce_index: false,
        job_modify_index: 0,
    };
    let error = client(&server).register(&request).await.unwrap_err();
    assert_eq!(
        error,
        NomadError::InvalidJob(
            "Task group build validation failed: Task build validation failed: Missing driver\n\
             Task group build validation failed: Restart policy mode must be \"delay\" or \"fail\""
                .into()
        )
    );
    assert_eq!(error.status(), Some(500));
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_lost_check_and_set_is_an_index_conflict() {
    let server = MockServer::start().await;
    let text = "Enforcing job modify index 0: job already exists";
    Mock::given(method("PUT")).and(path("/v1/jobs")).respond_with(nomad_error(500, text)).mount(&server).await;
    let request = RegisterRequest {
        job: Job { id: "example".into(), name: "example".into(), kind: "batch".into(), ..Job::default() },
        enforce_index: true,
        job_modify_index: 0,
    };
    let error = client(&server).register(&request).await.unwrap_err();
    assert_eq!(error, NomadError::IndexConflict(text.into()));
}

#[tokio::test]
async fn a_403_is_permission_denied_and_never_shows_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/jobs"))
        .respond_with(nomad_error(403, "Permission denied"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/job/example/evaluations"))
        .respond_with(nomad_error(403, "ACL token not found"))
        .mount(&server)
        .await;
    let client = client(&server);
    let error = client.jobs("").await.unwrap_err();
    assert_eq!(error, NomadError::PermissionDenied("Permission denied".into()));
    let error = client.job_evaluations("example").await.unwrap_err();
    assert_eq!(error, NomadError::PermissionDenied("ACL token not found".into()));
    assert!(!error.to_string().contains(TOKEN) && !format!("{error:?}").contains(TOKEN));
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn connection_refused_is_unreachable_naming_the_address() {
    // A port that was free a moment ago: nothing listens there now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = config(&address);
    config.token = Some(TOKEN.to_owned());
    let error = NomadClient::new(config).unwrap().leader().await.unwrap_err();
    let NomadError::Unreachable { address: named, message } = &error else { panic!("not unreachable: {error}") };
    assert_eq!(named, &address);
    assert!(message.contains("refused"), "{message}");
    assert!(error.to_string().contains(&address) && !error.to_string().contains(TOKEN), "{error}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_request_without_an_answer_in_time_is_unreachable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(200, r#""x""#).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let mut config = config(&server.uri());
    config.timeout = Duration::from_millis(200);
    let error = NomadClient::new(config).unwrap().leader().await.unwrap_err();
    assert!(
        matches!(&error, NomadError::Unreachable { message, .. } if message.contains("no answer within")),
        "{error}"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_json_expected_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>welcome to nginx</html>"))
        .mount(&server)
        .await;
    let error = client(&server).job("example").await.unwrap_err();
    let NomadError::Decode { what, message } = &error else { panic!("not a decode error: {error}") };
    assert_eq!(what, "a job");
    assert!(message.contains("welcome to nginx"), "{message}");
}

#[tokio::test]
async fn lists_and_prefixes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/jobs"))
        .and(query_param("prefix", "jobforge-"))
        .respond_with(json(200, include_str!("../../../reference/nomad-examples/GET_v1_jobs.response.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/job/example/evaluations"))
        .respond_with(json(200, "null"))
        .mount(&server)
        .await;
    let client = client(&server);
    let jobs = client.jobs("jobforge-").await.unwrap();
    assert_eq!(jobs[0].id, "example");
    assert!(client.job_evaluations("example").await.unwrap().is_empty(), "null reads as no evaluations");
}

#[tokio::test]
async fn ids_are_one_path_segment_each() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/job/parent%2Fdispatch-1700000000-0a1b2c3d/summary"))
        .respond_with(json(200, r#"{"JobID":"parent/dispatch-1700000000-0a1b2c3d"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let summary = client(&server).job_summary("parent/dispatch-1700000000-0a1b2c3d").await.unwrap().unwrap();
    assert_eq!(summary.job_id, "parent/dispatch-1700000000-0a1b2c3d");
}

#[tokio::test]
async fn logs_decode_a_framed_body_with_heartbeats() {
    let server = MockServer::start().await;
    let body = format!(
        "{{}}{}{{}}{}{{\"File\":\"alloc/logs/build.stderr.0\",\"FileEvent\":\"file truncated\"}}{{}}",
        frame(14, b"step 1: ok\n"),
        frame(28, b"step 2: \xe2\x9c\x93\n")
    );
    Mock::given(method("GET"))
        .and(path("/v1/client/fs/logs/a8198d79-cfdb-6593-a999-1e9adabcba2e"))
        .and(query_param("task", "build"))
        .and(query_param("type", "stderr"))
        .and(query_param("follow", "false"))
        .and(query_param("offset", "0"))
        .and(query_param("origin", "start"))
        .and(header("X-Nomad-Token", TOKEN))
        .respond_with(json(200, &body))
        .expect(1)
        .mount(&server)
        .await;
    let stream =
        client(&server).logs("a8198d79-cfdb-6593-a999-1e9adabcba2e", "build", LogType::Stderr, false, 0).await.unwrap();
    let frames: Vec<StreamFrame> = stream.map(Result::unwrap).collect().await;
    assert_eq!(frames.len(), 3, "heartbeats dropped: {frames:?}");
    let data: Vec<u8> = frames.iter().flat_map(|frame| frame.data.to_vec()).collect();
    assert_eq!(String::from_utf8(data).unwrap(), "step 1: ok\nstep 2: ✓\n");
    assert_eq!(frames[2].file_event, Some(FileEvent::Truncated));
}

#[tokio::test]
async fn plain_logs_are_the_raw_bytes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/client/fs/logs/a8198d79-cfdb-6593-a999-1e9adabcba2e"))
        .and(query_param("plain", "true"))
        .and(query_param("type", "stdout"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"line one\nline two\n".to_vec(), "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    let stream = client(&server)
        .logs_plain("a8198d79-cfdb-6593-a999-1e9adabcba2e", "build", LogType::Stdout, false, 0)
        .await
        .unwrap();
    let bytes: Vec<u8> = stream.map(|chunk| chunk.unwrap().to_vec()).concat().await;
    assert_eq!(bytes, b"line one\nline two\n");
}

#[tokio::test]
async fn logs_of_a_task_not_started_are_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(nomad_error(404, "task \"build\" not started yet. No logs available"))
        .mount(&server)
        .await;
    let error = client(&server).logs("a1", "build", LogType::Stdout, true, 0).await.unwrap_err();
    assert_eq!(error, NomadError::NotFound("task \"build\" not started yet. No logs available".into()));
}

/// A one-connection HTTP/1.1 server that answers with a chunked body, sending each chunk the
/// test hands it, when it hands it; closing the sender ends the body. The task returns the
/// request's head.
async fn chunked_server() -> (SocketAddr, mpsc::UnboundedSender<Vec<u8>>, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (chunks, mut next_chunk) = mpsc::unbounded_channel::<Vec<u8>>();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let head = read_head(&mut socket).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        while let Some(chunk) = next_chunk.recv().await {
            socket.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
            socket.write_all(&chunk).await.unwrap();
            socket.write_all(b"\r\n").await.unwrap();
            socket.flush().await.unwrap();
        }
        socket.write_all(b"0\r\n\r\n").await.unwrap();
        head
    });
    (address, chunks, server)
}

/// Reads a request's head (up to the blank line) from `socket`.
async fn read_head(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn logs_hand_out_each_frame_as_soon_as_it_is_whole() {
    let (address, chunks, server) = chunked_server().await;
    let client = NomadClient::new(config(&format!("http://{address}"))).unwrap();
    let mut stream = client.logs("a1", "build", LogType::Stdout, true, 0).await.unwrap();

    let second = frame(20, &[b'x'; 300]);
    let event = r#"{"File":"alloc/logs/build.stdout.0","FileEvent":"file deleted"}"#;
    let (second_head, second_tail) = second.split_at(second.len() / 2);
    let (event_head, event_tail) = event.split_at(7);

    // The first frame arrives with half of the second: it must come out before the rest is sent.
    chunks.send(format!("{{}}{}{second_head}", frame(6, b"hello\n")).into_bytes()).unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first.data[..], b"hello\n");

    chunks.send(format!("{second_tail}{{}}{event_head}").into_bytes()).unwrap();
    chunks.send(format!("{event_tail}{{}}").into_bytes()).unwrap();
    let whole = stream.next().await.unwrap().unwrap();
    assert_eq!((&whole.data[..], whole.offset), (&[b'x'; 300][..], 20), "a data frame spanning chunks");
    assert_eq!(stream.next().await.unwrap().unwrap().file_event, Some(FileEvent::Deleted));

    drop(chunks);
    assert!(stream.next().await.is_none(), "the stream ends with the body");
    let head = server.await.unwrap();
    let request_line = head.lines().next().unwrap();
    assert_eq!(
        request_line,
        "GET /v1/client/fs/logs/a1?task=build&type=stdout&follow=true&offset=0&origin=start HTTP/1.1"
    );
}

#[tokio::test]
async fn a_silent_log_stream_ends_with_unreachable() {
    let (address, chunks, _server) = chunked_server().await;
    let mut config = config(&format!("http://{address}"));
    config.timeout = Duration::from_millis(300);
    let mut stream = NomadClient::new(config).unwrap().logs("a1", "build", LogType::Stdout, true, 0).await.unwrap();
    chunks.send(frame(1, b"a").into_bytes()).unwrap();
    assert_eq!(&stream.next().await.unwrap().unwrap().data[..], b"a");
    // No heartbeat follows: Nomad would send one every second.
    let error = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(&error, NomadError::Unreachable { message, .. } if message.contains("silent")), "{error}");
    assert!(stream.next().await.is_none(), "the error is the last item");
}

/// A CA, and a TLS server configuration whose certificate it signed for 127.0.0.1.
fn tls_material() -> (String, rustls::ServerConfig) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::CommonName, "jobforge test Nomad CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &ca).unwrap();

    // An explicit provider: reqwest brings aws-lc-rs into the same binary, and with two
    // providers compiled in, rustls refuses to pick a process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (ca.pem(), config)
}

#[tokio::test]
async fn tls_trusts_the_ca_file_and_only_it() {
    let (ca_pem, tls) = tls_material();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate hangs up here.
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                read_head(&mut tls).await;
                let body = r#""127.0.0.1:4647""#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.write_all(answer.as_bytes()).await.unwrap();
                tls.shutdown().await.unwrap();
            });
        }
    });

    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("nomad-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let mut trusting = config(&address);
    trusting.ca_file = Some(ca_file.clone());
    assert_eq!(NomadClient::new(trusting).unwrap().leader().await.unwrap(), "127.0.0.1:4647");

    // Without the CA file, the same server is not trusted.
    let error = NomadClient::new(config(&address)).unwrap().leader().await.unwrap_err();
    assert!(matches!(&error, NomadError::Unreachable { .. }), "{error}");

    // A CA file that is missing or not PEM fails at once, naming the file.
    let not_pem = directory.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for path in [directory.path().join("missing.pem"), not_pem] {
        let mut bad = config(&address);
        bad.ca_file = Some(path.clone());
        let error = NomadClient::new(bad).unwrap_err();
        assert!(
            matches!(&error, NomadError::Config(message) if message.contains(&path.display().to_string())),
            "{error}"
        );
    }
}
