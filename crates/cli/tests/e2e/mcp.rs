//! The MCP tools as an agent meets them: a real MCP client (rmcp's) against `jobforge serve`'s
//! `/mcp` endpoint, and against `jobforge mcp` started as a child process (stdio), both on the
//! local backend with the real tools.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, NumberOrString, ProgressNotificationParam, ProgressToken, RequestMetaObject,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

use crate::support::*;

/// An agent: it keeps the progress messages it is sent.
#[derive(Clone, Default)]
struct Agent {
    progress: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Agent {
    async fn on_progress(&self, params: ProgressNotificationParam, _context: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(params.message.unwrap_or_default());
    }
}

type Session = RunningService<RoleClient, Agent>;

async fn over_http(service: &Service, agent: Agent) -> Session {
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", service.url));
    agent.serve(transport).await.expect("an MCP session over HTTP")
}

async fn over_stdio(service: &Service, agent: Agent) -> Session {
    let mut command = tokio::process::Command::new(jobforge());
    command.args(["--url", &service.url, "mcp"]);
    let transport = TokioChildProcess::new(command).expect("jobforge mcp starts");
    agent.serve(transport).await.expect("an MCP session over stdio")
}

async fn call(session: &Session, tool: &'static str, arguments: Value) -> CallToolResult {
    let arguments = arguments.as_object().cloned().expect("arguments are an object");
    session.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments)).await.expect("the call is answered")
}

/// The structured answer of a call that must succeed.
fn ok(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "the tool refused: {result:?}");
    result.structured_content.clone().expect("a structured answer")
}

/// The structured error of a call that must be refused.
fn refused(result: &CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(true), "the tool should have refused: {result:?}");
    result.structured_content.clone().expect("a structured error")
}

fn example_job(registry: &TestRegistry, repo: &GitRepo) -> Value {
    let mut config = job(&repo.file_url(), registry, "team/app", &["v1"]);
    config["test_commands"] = json!(["echo hello", "for i in $(seq 1 300); do echo line $i; done"]);
    config
}

/// watchJob again and again from each answer's cursor until the job has ended; every event.
async fn watch_to_the_end(session: &Session, id: &str) -> (Vec<Value>, Value) {
    let mut after = 0;
    let mut events = Vec::new();
    for _ in 0..40 {
        let mut params = CallToolRequestParams::new("watchJob")
            .with_arguments(json!({"job_id": id, "after": after, "timeout_seconds": 20}).as_object().cloned().unwrap());
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(ProgressToken(NumberOrString::Number(7)));
        params.meta = Some(meta);
        let answer = ok(&session.call_tool(params).await.expect("watchJob is answered"));
        events.extend(answer["events"].as_array().cloned().unwrap_or_default());
        after = answer["next_after"].as_u64().expect("a cursor");
        if answer["ended"] == json!(true) {
            return (events, answer);
        }
    }
    panic!("the job did not end while watched: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_http_submits_watches_and_reads_the_logs() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let agent = Agent::default();
    let session = over_http(&service, agent.clone()).await;

    let tools = session.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for name in ["submitJob", "getStatus", "getLogs", "watchJob", "killJob", "cleanup", "getHistory", "cleanupZombies"]
    {
        assert!(names.contains(&name), "{name} is offered: {names:?}");
    }
    let tool = |name: &str| tools.iter().find(|tool| tool.name == name).unwrap();
    let submit_schema = serde_json::to_value(&tool("submitJob").input_schema).unwrap();
    assert!(submit_schema["properties"]["repo_url"].is_object(), "the job config's fields: {submit_schema}");
    assert!(tool("getStatus").output_schema.is_some(), "answers have schemas");
    let read_only = |name: &str| tool(name).annotations.as_ref().and_then(|a| a.read_only_hint);
    let destructive = |name: &str| tool(name).annotations.as_ref().and_then(|a| a.destructive_hint);
    assert_eq!(
        (read_only("getStatus"), read_only("getLogs"), read_only("watchJob")),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(
        (destructive("killJob"), destructive("cleanup"), destructive("cleanupZombies")),
        (Some(true), Some(true), Some(true))
    );

    let repo = GitRepo::example();
    let submitted = ok(&call(&session, "submitJob", example_job(&registry, &repo)).await);
    let id = submitted["job_id"].as_str().expect("a job id").to_owned();
    let (events, end) = watch_to_the_end(&session, &id).await;
    assert_eq!(end["status"], "SUCCEEDED", "{events:#?}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["phase_started", "test_started", "test_ended", "published", "cleanup_done"] {
        assert!(kinds.contains(&kind), "{kind} was watched: {kinds:?}");
    }
    assert!(
        agent.progress.lock().unwrap().iter().any(|m| m == "build started"),
        "progress was reported while watching: {:?}",
        agent.progress.lock().unwrap()
    );

    // The end of the log by default: 200 lines of the 300 the second test printed, and more.
    let tail = ok(&call(&session, "getLogs", json!({"job_id": id, "phase": "test", "test": 1})).await);
    let lines = tail["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 200, "the last 200 lines");
    assert_eq!(lines.last().unwrap()["text"], "line 300");
    assert_eq!(tail["truncated"], true, "and it says the earlier ones were left out");
    assert!(tail["note"].as_str().is_some_and(|n| n.contains("after")), "with how to get them: {tail}");
    // A search with context.
    let found = ok(&call(&session, "getLogs", json!({"job_id": id, "grep": "^line 150$", "context": 1})).await);
    let texts: Vec<&str> = found["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(texts, ["line 149", "line 150", "line 151"]);

    let status = ok(&call(&session, "getStatus", json!({"job_id": id})).await);
    assert_eq!((status["status"].as_str(), status["cleaned_up"].as_bool()), (Some("SUCCEEDED"), Some(true)));
    let history = ok(&call(&session, "getHistory", json!({"status": "SUCCEEDED"})).await);
    assert_eq!(history["jobs"][0]["job_id"], id.as_str());
    session.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_tool_errors_an_agent_can_act_on() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let session = over_http(&service, Agent::default()).await;

    let unknown =
        refused(&call(&session, "getStatus", json!({"job_id": "0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f"})).await);
    assert_eq!(unknown["code"], "not_found", "{unknown}");
    let not_an_id = refused(&call(&session, "getLogs", json!({"job_id": "latest"})).await);
    assert!(not_an_id["error"].as_str().unwrap().contains("job ids are UUIDs"), "{not_an_id}");

    let bad =
        json!({"repo_url": "https://example.com/r.git", "image_name": "App!", "registry_url": "r:5000", "colour": 1});
    let invalid = refused(&call(&session, "submitJob", bad).await);
    let fields: Vec<&str> =
        invalid["problems"].as_array().unwrap().iter().filter_map(|p| p["field"].as_str()).collect();
    assert!(fields.contains(&"image_name") && fields.contains(&"colour"), "every problem, by field: {invalid}");

    let too_long =
        refused(&call(&session, "watchJob", json!({"job_id": JobIdText::any(), "timeout_seconds": 600})).await);
    assert_eq!(too_long["problems"][0]["field"], "timeout_seconds", "{too_long}");
    let bad_phase = refused(&call(&session, "getLogs", json!({"job_id": JobIdText::any(), "phase": "deploy"})).await);
    assert_eq!(bad_phase["problems"][0]["field"], "phase", "{bad_phase}");
    session.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobforge_mcp_serves_the_same_tools_over_stdio() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let session = over_stdio(&service, Agent::default()).await;

    let tools = session.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 8, "{tools:?}");
    let repo = GitRepo::example();
    let mut config = example_job(&registry, &repo);
    config["test_commands"] = json!(["exit 3"]);
    let id = ok(&call(&session, "submitJob", config).await)["job_id"].as_str().unwrap().to_owned();
    let (_, end) = watch_to_the_end(&session, &id).await;
    assert_eq!(end["status"], "FAILED");
    let status = ok(&call(&session, "getStatus", json!({"job_id": id})).await);
    assert_eq!(status["error"]["exit_code"], 3, "{status}");
    // Through the REST API's own log parameters.
    let tail =
        ok(&call(&session, "getLogs", json!({"job_id": id, "phase": "build", "tail": 3, "stream": "stdout"})).await);
    let lines = tail["lines"].as_array().unwrap();
    assert!(lines.len() <= 3 && lines.iter().all(|l| l["stream"] == "stdout"), "{tail}");
    let unknown = refused(&call(&session, "killJob", json!({"job_id": JobIdText::any()})).await);
    assert_eq!(unknown["code"], "not_found");
    session.cancel().await.ok();
}

/// A well-formed job id that no service knows.
struct JobIdText;

impl JobIdText {
    fn any() -> String {
        jobforge_core::JobId::new().to_string()
    }
}
