//! Tokens and roles against a real `jobforge serve --auth-file`: every role against every
//! endpoint (REST, the compat endpoints, the event stream, MCP over HTTP), owners kept apart,
//! secrets scoped to what a token's patterns allow, and no service beyond loopback without
//! tokens.

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use jobforge_client::{Client, ClientOptions, Token};
use jobforge_core::JobStatus;
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

use crate::support::*;

const TEAM_A: &str = "jf_token-of-team-a";
const TEAM_B: &str = "jf_token-of-team-b";
const READER: &str = "jf_token-of-a-reader";
const ADMIN: &str = "jf_token-of-an-admin";

fn sha256(token: &str) -> String {
    jobforge_server::auth::token_hash(token)
}

fn auth_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "tokens:\n\
         - {{name: agent-a, sha256: {}, role: submit, owner: team-a, secrets: ['git/team-a/*']}}\n\
         - {{name: agent-b, sha256: {}, role: submit, owner: team-b}}\n\
         - {{name: dashboard, sha256: {}, role: read}}\n\
         - {{name: ops, sha256: {}, role: admin}}\n",
        sha256(TEAM_A),
        sha256(TEAM_B),
        sha256(READER),
        sha256(ADMIN)
    );
    let path = dir.join("auth.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A raw HTTP call: status and JSON body (`null` when there is none).
async fn call(method: reqwest::Method, url: String, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn client_with(service: &Service, token: &str) -> Client {
    let options = ClientOptions { token: Some(Token::new(token)), ..ClientOptions::default() };
    Client::with_options(&service.url, options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_is_for_and_owners_are_kept_apart() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let auth = auth_file(data.path());
    let service = Service::start(&data.path().join("data"), &registry, &["--auth-file", auth.to_str().unwrap()]);
    let url = |path: &str| format!("{}{path}", service.url);
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "team-a/app", &["v1"]);
    config["test_commands"] = json!(["sleep 30"]);

    // No token, or an unknown one: 401 and how to authenticate, on every front end.
    let response = reqwest::get(url("/v1/jobs")).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"jobforge\"");
    let (status, body) = call(reqwest::Method::GET, url("/v1/jobs"), Some("jf_unknown"), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, body) = call(reqwest::Method::POST, url("/json/getHistory"), None, Some(json!({}))).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(401)), "the original's error shape: {body}");
    let (status, _) = call(reqwest::Method::POST, url("/mcp"), None, Some(json!({}))).await;
    assert_eq!(status, 401, "MCP too");
    for open in ["/health", "/ready"] {
        let (status, body) = call(reqwest::Method::GET, url(open), None, None).await;
        assert_eq!(status, 200, "{open} stays open for load balancers: {body}");
    }

    // A submit token owns what it submits; another owner's job does not exist to it.
    let a = client_with(&service, TEAM_A);
    let job_a = a.submit(&config).await.unwrap().job_id;
    assert_eq!(a.job(job_a).await.unwrap().owner.as_deref(), Some("team-a"));
    let job_path = format!("/v1/jobs/{job_a}");
    for (method, path) in [
        (reqwest::Method::GET, job_path.clone()),
        (reqwest::Method::GET, format!("{job_path}/logs")),
        (reqwest::Method::GET, format!("{job_path}/events")),
        (reqwest::Method::POST, format!("{job_path}/kill")),
        (reqwest::Method::POST, format!("{job_path}/cleanup")),
    ] {
        let (status, body) = call(method.clone(), url(&path), Some(TEAM_B), Some(json!({}))).await;
        assert_eq!(status, 404, "{method} {path} as team-b: {body}");
        assert_eq!(body["error"], format!("job {job_a} not found"), "the same answer as for no such job");
    }
    let (status, body) =
        call(reqwest::Method::POST, url("/json/getStatus"), Some(TEAM_B), Some(json!({"job_id": job_a}))).await;
    assert_eq!(status, 404, "compat too: {body}");
    let b = client_with(&service, TEAM_B);
    assert_eq!(b.history(100, 0).await.unwrap().total, 0, "team-b's history holds none of team-a's jobs");
    let asked = jobforge_client::HistoryQuery { owner: Some("team-a".into()), ..Default::default() };
    assert_eq!(b.history_of(&asked).await.unwrap().total, 0, "not even when it asks for them");
    assert_eq!(a.history(100, 0).await.unwrap().total, 1);

    // Submitting for another owner, or naming a secret outside the token's patterns: 403
    // naming the field, whether or not the secret exists.
    let mut other_owner = config.clone();
    other_owner["owner"] = json!("team-b");
    let (status, body) = call(reqwest::Method::POST, url("/v1/jobs"), Some(TEAM_A), Some(other_owner)).await;
    assert_eq!((status, body["problems"][0]["field"].as_str()), (403, Some("owner")), "{body}");
    let mut foreign_secret = config.clone();
    foreign_secret["git_credentials_path"] = json!("git/team-b/app");
    let (status, body) = call(reqwest::Method::POST, url("/v1/jobs"), Some(TEAM_A), Some(foreign_secret)).await;
    assert_eq!((status, body["problems"][0]["field"].as_str()), (403, Some("git_credentials_path")), "{body}");
    let mut own_missing = config.clone();
    own_missing["git_credentials_path"] = json!("git/team-a/app");
    let (status, body) = call(reqwest::Method::POST, url("/v1/jobs"), Some(TEAM_A), Some(own_missing)).await;
    assert_eq!(status, 422, "an allowed path that does not exist is the usual 422: {body}");

    // A reader reads everything and changes nothing.
    let reader = client_with(&service, READER);
    assert_eq!(reader.job(job_a).await.unwrap().job_id, job_a);
    assert_eq!(reader.history(100, 0).await.unwrap().total, 1);
    for (method, path, body) in [
        (reqwest::Method::POST, "/v1/jobs".to_owned(), config.clone()),
        (reqwest::Method::POST, format!("{job_path}/kill"), json!({})),
        (reqwest::Method::POST, format!("{job_path}/cleanup"), json!({})),
        (reqwest::Method::POST, "/v1/zombies/cleanup".to_owned(), json!({})),
        (reqwest::Method::GET, "/v1/config".to_owned(), json!({})),
    ] {
        let (status, answer) = call(method.clone(), url(&path), Some(READER), Some(body)).await;
        assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")), "{method} {path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("dashboard"), "names the token: {answer}");
    }

    // Admin-only endpoints are the admin's; a submit token gets 403 there.
    for path in ["/v1/config"] {
        assert_eq!(call(reqwest::Method::GET, url(path), Some(TEAM_A), None).await.0, 403);
        assert_eq!(call(reqwest::Method::GET, url(path), Some(ADMIN), None).await.0, 200);
    }
    assert_eq!(call(reqwest::Method::POST, url("/v1/zombies/cleanup"), Some(TEAM_A), Some(json!({}))).await.0, 403);
    assert_eq!(call(reqwest::Method::POST, url("/v1/zombies/cleanup"), Some(ADMIN), Some(json!({}))).await.0, 200);

    // MCP over HTTP: the same rules, as tool results.
    let mcp = |token: &'static str| {
        let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", service.url)).auth_header(token);
        ().serve(StreamableHttpClientTransport::from_config(config))
    };
    let session_b = mcp(TEAM_B).await.expect("an MCP session with team-b's token");
    let args = json!({"job_id": job_a.to_string()}).as_object().cloned().unwrap();
    let status_b =
        session_b.call_tool(CallToolRequestParams::new("getStatus").with_arguments(args.clone())).await.unwrap();
    assert_eq!(status_b.is_error, Some(true), "team-b cannot see team-a's job over MCP: {status_b:?}");
    let session_a = mcp(TEAM_A).await.expect("an MCP session with team-a's token");
    let status_a =
        session_a.call_tool(CallToolRequestParams::new("getStatus").with_arguments(args.clone())).await.unwrap();
    assert_ne!(status_a.is_error, Some(true), "{status_a:?}");
    let zombies = session_a.call_tool(CallToolRequestParams::new("cleanupZombies")).await.unwrap();
    assert_eq!(zombies.is_error, Some(true), "cleanupZombies needs an admin: {zombies:?}");

    // `jobforge mcp` forwards its token: the service decides what the agent may see.
    for (token, hidden) in [(TEAM_B, true), (TEAM_A, false)] {
        let mut command = tokio::process::Command::new(jobforge());
        command.args(["--url", &service.url, "mcp"]).env("JOBFORGE_TOKEN", token);
        let stdio = ().serve(rmcp::transport::TokioChildProcess::new(command).unwrap()).await.unwrap();
        let answer =
            stdio.call_tool(CallToolRequestParams::new("getStatus").with_arguments(args.clone())).await.unwrap();
        assert_eq!(answer.is_error == Some(true), hidden, "over stdio with {token}: {answer:?}");
    }

    // The owner kills its own job.
    a.kill(job_a, Some("agent-a"), Some("done")).await.unwrap();
    assert_eq!(wait_end(&a, job_a).await.status, JobStatus::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_service_listens_on_loopback_only() {
    let data = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(jobforge())
        .args(["serve", "--data-dir", data.path().to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("without tokens") && said.contains("--auth-file"), "says why and what to do: {said}");

    let registry = TestRegistry::start();
    let mut open = Service::start_on(&data.path().join("open"), &registry, "0.0.0.0:0", &["--insecure-no-auth"]);
    let health = open.client().health().await.unwrap();
    assert_eq!(health.status, "ok", "--insecure-no-auth serves anyway");
    assert!(open.log().contains("without tokens"), "and says so in its log");
    open.kill9();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn put_secret(data: &std::path::Path, path: &str, extra: &[&str]) {
    let mut args =
        vec!["secret", "put", path, "username=bot", "password=s3cret-pw", "--data-dir", data.to_str().unwrap()];
    args.extend(extra);
    let out = std::process::Command::new(jobforge()).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A secret goes only to the hosts it names: a job pointing its repository or registry
/// elsewhere is refused before anything runs, naming the field. With tokens, a secret that
/// names no hosts is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_go_only_to_the_hosts_they_name() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    put_secret(&data, "git/app", &["--host", "git.example.com"]);
    put_secret(&data, "registry/app", &["--host", &registry.host()]);
    put_secret(&data, "git/anywhere", &[]);
    let bad = std::process::Command::new(jobforge())
        .args(["secret", "put", "git/x", "password=p", "--host", "a b", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--host"));

    let open = Service::start(&data, &registry, &[]);
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory is this user's only");
    assert_eq!(mode(&data.join("secrets.json")), 0o600);
    assert_eq!(mode(&data.join("jobforge.db")), 0o600);
    let submit = |service: &Service, token: Option<&'static str>, extra: Value| {
        let mut config = job("https://evil.example/x.git", &registry, "team/app", &["v1"]);
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        call(reqwest::Method::POST, format!("{}/v1/jobs", service.url), token, Some(config))
    };
    let (status, body) = submit(&open, None, json!({"git_credentials_path": "git/app"})).await;
    assert_eq!((status, body["problems"][0]["field"].as_str()), (422, Some("git_credentials_path")), "{body}");
    let message = body["problems"][0]["message"].as_str().unwrap();
    assert!(message.contains("git.example.com only") && message.contains("evil.example"), "{message}");
    assert!(!body.to_string().contains("s3cret-pw"), "{body}");
    let (status, body) = submit(&open, None, json!({"registry_credentials_path": "git/app"})).await;
    assert_eq!((status, body["problems"][0]["field"].as_str()), (422, Some("registry_credentials_path")), "{body}");
    let (status, body) = submit(&open, None, json!({"registry_credentials_path": "registry/app"})).await;
    assert_eq!(status, 201, "the registry the secret names: {body}");
    let (status, body) = submit(&open, None, json!({"git_credentials_path": "git/anywhere"})).await;
    assert_eq!(status, 201, "without tokens a secret without hosts may go anywhere: {body}");
    assert!(open.log().contains("allowed_hosts"), "and start-up warned about it");
    drop(open);

    let auth = auth_file(dir.path());
    let shared = Service::start(&data, &registry, &["--auth-file", auth.to_str().unwrap()]);
    let (status, body) = submit(&shared, Some(ADMIN), json!({"git_credentials_path": "git/anywhere"})).await;
    assert_eq!((status, body["problems"][0]["field"].as_str()), (422, Some("git_credentials_path")), "{body}");
    assert!(body["problems"][0]["message"].as_str().unwrap().contains("names no allowed_hosts"), "{body}");
    let (status, body) = submit(&shared, Some(ADMIN), json!({"registry_credentials_path": "registry/app"})).await;
    assert_eq!(status, 201, "{body}");
}

/// `file://` repositories only from the directories the operator allowed: a caller may not make
/// the service build (and publish) the host's own files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_repositories_come_only_from_allowed_directories() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    for outside in ["file:///etc", "file:///root/.ssh", &format!("file://{}/../etc", std::env::temp_dir().display())] {
        let config = job(outside, &registry, "app", &["v1"]);
        let (status, body) = call(reqwest::Method::POST, format!("{}/v1/jobs", service.url), None, Some(config)).await;
        assert_eq!((status, body["problems"][0]["field"].as_str()), (422, Some("repo_url")), "{outside}: {body}");
        assert!(body["problems"][0]["message"].as_str().unwrap().contains("outside the directories"), "{body}");
    }
    let repo = GitRepo::example();
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/jobs", service.url),
        None,
        Some(job(&repo.file_url(), &registry, "app", &["v1"])),
    )
    .await;
    assert_eq!(status, 201, "a repository in an allowed directory: {body}");

    // Nor may a job publish where the service keeps the images it is testing.
    for name in ["temp", "temp/01a24d71-3ad9-77b1-b93c-2239ede2508b"] {
        let config = job(&repo.file_url(), &registry, name, &["latest"]);
        let (status, body) = call(reqwest::Method::POST, format!("{}/v1/jobs", service.url), None, Some(config)).await;
        assert_eq!((status, body["problems"][0]["field"].as_str()), (422, Some("image_name")), "{name}: {body}");
    }

    let strict = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(jobforge())
        .args(["serve", "--data-dir", strict.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--allow-local-repos", "relative/dir"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("absolute"));
}

/// Past a limit a caller is told to come back later: 429 with `Retry-After`, never a queue
/// without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_past_a_limit_are_told_when_to_come_back() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let auth = auth_file(data.path());
    let limits = ["--max-active-jobs", "1", "--max-pending-jobs", "1", "--submissions-per-minute", "2"];
    let service = Service::start(
        &data.path().join("data"),
        &registry,
        &[&["--auth-file", auth.to_str().unwrap()][..], &limits].concat(),
    );
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "team-a/app", &["v1"]);
    config["test_commands"] = json!(["sleep 60"]);
    let submit = |token: &'static str| {
        let url = format!("{}/v1/jobs", service.url);
        let config = config.clone();
        async move {
            let response = reqwest::Client::new().post(url).bearer_auth(token).json(&config).send().await.unwrap();
            let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (response.status().as_u16(), retry, response.json::<Value>().await.unwrap())
        }
    };
    let a = client_with(&service, TEAM_A);
    let (status, _, body) = submit(TEAM_A).await;
    assert_eq!(status, 201, "{body}");
    let first = body["job_id"].as_str().unwrap().parse().unwrap();
    wait_status(&a, first, JobStatus::Testing).await;
    let (status, _, body) = submit(TEAM_A).await;
    assert_eq!(status, 201, "one may wait: {body}");
    let (status, retry, body) = submit(TEAM_B).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_requests")), "{body}");
    assert!(retry.is_some_and(|s| s.parse::<u64>().unwrap() > 0), "with Retry-After");
    assert!(body["error"].as_str().unwrap().contains("waiting to start"), "{body}");
    let (status, retry, body) = submit(TEAM_A).await;
    assert_eq!(status, 429, "and team-a's third in a minute is past its rate: {body}");
    assert!(body["error"].as_str().unwrap().contains("agent-a"), "{body}");
    assert!(retry.is_some());
    for job in a.history(10, 0).await.unwrap().jobs {
        let _ = a.kill(job.job_id, Some("test"), None).await;
    }
}
