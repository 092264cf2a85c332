//! Helpers for the fake Nomad tests: a tiny HTTP client that speaks to the fake the way a Nomad
//! client would (blocking queries instead of sleeps), job builders, the shape comparison against
//! recorded examples, OpenAPI schema validation, and the podman test image.
//!
//! Helpers panic with a message naming what they waited for; they never sleep for a fixed time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};
use jobforge_testkit::git::{EXAMPLE_DOCKERFILE, busybox_path};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const BUILDAH_IMAGE: &str = "quay.io/buildah/stable";
/// How long any one scenario may wait for the fake to reach a state.
pub const PATIENCE: Duration = Duration::from_secs(40);

/// A started fake and the directory it lives in.
pub struct Fixture {
    pub nomad: FakeNomad,
    pub api: Api,
    pub dir: TempDir,
}

pub async fn start() -> Fixture {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut FakeNomadConfig)) -> Fixture {
    let dir = tempfile::Builder::new().prefix("fake-nomad-test-").tempdir().expect("create a temp dir");
    let mut config = FakeNomadConfig::new(dir.path().join("data"));
    adjust(&mut config);
    let nomad = FakeNomad::start(config).await;
    let api = Api::new(&nomad.url(), None);
    Fixture { nomad, api, dir }
}

/// One HTTP answer.
pub struct Answer {
    pub status: StatusCode,
    pub index: Option<u64>,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "unexpected answer: {}", self.text);
        self.json()
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: Option<&str>) -> Api {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client");
        Api { base: base.to_owned(), token: token.map(str::to_owned), http }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api { token: Some(token.to_owned()), ..self.clone() }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header("X-Nomad-Token", token),
            None => request,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap_or_else(|e| panic!("request to the fake failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let index = headers.get("X-Nomad-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let text = response.text().await.unwrap_or_else(|e| panic!("reading an answer failed: {e}"));
        Answer { status, index, headers, text }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.request(reqwest::Method::POST, path).body(body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Register `job` and return the register response.
    pub async fn register(&self, job: &Value) -> Value {
        self.post("/v1/jobs", &json!({ "Job": job })).await.ok()
    }

    /// Block on the job's allocations (`index`/`wait`, as a Nomad client does) until `done`
    /// holds for them.
    pub async fn allocs_until(&self, job: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        let mut index = 0;
        loop {
            let answer = self.get(&format!("/v1/job/{job}/allocations?index={index}&wait=5s")).await;
            index = answer.index.expect("an X-Nomad-Index header");
            let allocs = answer.ok().as_array().cloned().unwrap_or_default();
            if done(&allocs) {
                return allocs;
            }
            assert!(Instant::now() < deadline, "job {job}: {what} did not happen; allocations: {allocs:#?}");
        }
    }

    /// Block on a job read until `done` holds.
    pub async fn job_until(&self, job: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut index = 0;
        loop {
            let answer = self.get(&format!("/v1/job/{job}?index={index}&wait=5s")).await;
            index = answer.index.expect("an X-Nomad-Index header");
            let value = if answer.status == StatusCode::OK { answer.json() } else { Value::Null };
            if done(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "job {job}: {what} did not happen; job: {value:#}");
        }
    }

    /// Block on the job's evaluations until `done` holds.
    pub async fn evals_until(&self, job: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        let mut index = 0;
        loop {
            let answer = self.get(&format!("/v1/job/{job}/evaluations?index={index}&wait=5s")).await;
            index = answer.index.expect("an X-Nomad-Index header");
            let evals = answer.ok().as_array().cloned().unwrap_or_default();
            if done(&evals) {
                return evals;
            }
            assert!(Instant::now() < deadline, "job {job}: {what} did not happen; evaluations: {evals:#?}");
        }
    }

    /// The whole framed log of a task (follow=false), decoded.
    pub async fn framed_log(&self, alloc: &str, task: &str, kind: &str) -> Vec<u8> {
        let answer = self.get(&format!("/v1/client/fs/logs/{alloc}?task={task}&type={kind}")).await;
        assert_eq!(answer.status, StatusCode::OK, "logs: {}", answer.text);
        decode_frames(answer.text.as_bytes()).into_iter().flat_map(|f| f.data).collect()
    }
}

/// One frame of the log stream.
#[derive(Debug)]
pub struct Frame {
    pub offset: Option<u64>,
    pub data: Vec<u8>,
    pub file: Option<String>,
    pub heartbeat: bool,
}

/// Decode a run of back-to-back JSON objects (no separator), as a streaming decoder does.
pub fn decode_frames(bytes: &[u8]) -> Vec<Frame> {
    use base64::Engine as _;
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .map(|frame| {
            let frame = frame.unwrap_or_else(|e| panic!("bad frame ({e}) in {}", String::from_utf8_lossy(bytes)));
            let data = frame["Data"]
                .as_str()
                .map(|d| base64::engine::general_purpose::STANDARD.decode(d).expect("base64 Data"))
                .unwrap_or_default();
            Frame {
                offset: frame["Offset"].as_u64(),
                data,
                file: frame["File"].as_str().map(str::to_owned),
                heartbeat: frame.as_object().is_some_and(|o| o.is_empty()),
            }
        })
        .collect()
}

/// A batch job of one task run on the host (the buildah image), with no restarts and no
/// rescheduling: what jobforge submits.
pub fn host_job(id: &str, script: &str) -> Value {
    json!({
        "ID": id,
        "Type": "batch",
        "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "build",
            "RestartPolicy": { "Attempts": 0, "Mode": "fail" },
            "ReschedulePolicy": { "Attempts": 0, "Unlimited": false },
            "Tasks": [{
                "Name": "main",
                "Driver": "docker",
                "Config": { "image": BUILDAH_IMAGE, "command": "/bin/sh", "args": ["-c", script] },
                "Resources": { "CPU": 100, "MemoryMB": 64 },
            }],
        }],
    })
}

/// The task state of `task` in an allocation stub or allocation.
pub fn task_state<'a>(alloc: &'a Value, task: &str) -> &'a Value {
    &alloc["TaskStates"][task]
}

pub fn event_types(alloc: &Value, task: &str) -> Vec<String> {
    task_state(alloc, task)["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["Type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub fn event<'a>(alloc: &'a Value, task: &str, kind: &str) -> &'a Value {
    task_state(alloc, task)["Events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["Type"] == kind))
        .unwrap_or_else(|| panic!("no {kind:?} event for {task}: {alloc:#}"))
}

pub fn client_status(allocs: &[Value]) -> Vec<String> {
    allocs.iter().map(|a| a["ClientStatus"].as_str().unwrap_or_default().to_owned()).collect()
}

pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference")
}

pub fn example(name: &str) -> Value {
    let path = reference_dir().join("nomad-examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Objects whose keys are data (task, group, node or datacenter names), not field names:
/// compared value to value, not key to key.
const DATA_MAPS: &[&str] = &[
    "TaskStates",
    "TaskResources",
    "Summary",
    "QueuedAllocations",
    "FailedTGAllocs",
    "NodesAvailable",
    "Scores",
    "ConstraintFiltered",
    "DimensionExhausted",
    "ClassFiltered",
    "ClassExhausted",
    "ClassEligibility",
    "Volumes",
    "Env",
    "Meta",
    "GetterOptions",
    "Details",
    "TaskLifecycles",
];

/// Free-form maps: only their type is compared.
const OPAQUE: &[&str] = &["Config"];

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of the recorded `example` must exist in `actual` with the same JSON type,
/// recursively. Where the example has `null` or an empty array only the key is checked. Array
/// elements are compared to the fake's element at the same position (its first, past its end); data maps value to value. `skips` are
/// paths (`Job.TaskGroups[].Name`, `TaskStates.*.Events[].Type`) not compared, each with a reason
/// kept by the caller. Returns the differences.
pub fn compare_shape(example: &Value, actual: &Value, skips: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    walk(example, actual, "", "", skips, &mut used, &mut problems);
    // A skip that matches nothing is stale: it would hide a future difference for no reason.
    for skip in skips.iter().filter(|s| !used.contains(**s)) {
        problems.push(format!("{skip}: listed as skipped but not in the example"));
    }
    problems
}

fn walk(
    example: &Value,
    actual: &Value,
    path: &str,
    field: &str,
    skips: &[&str],
    used: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    if skips.contains(&path) {
        used.insert(path.to_owned());
        return;
    }
    match example {
        Value::Null => return,
        Value::Array(items) if items.is_empty() => return,
        _ => {}
    }
    if kind(example) != kind(actual) {
        problems.push(format!("{path}: the example has {}, the fake {} ({actual})", kind(example), kind(actual)));
        return;
    }
    match (example, actual) {
        (Value::Object(example_map), Value::Object(actual_map)) => {
            if OPAQUE.contains(&field) {
                return;
            }
            if DATA_MAPS.contains(&field) {
                if let (Some(first_example), Some(first_actual)) =
                    (example_map.values().next(), actual_map.values().next())
                {
                    walk(first_example, first_actual, &format!("{path}.*"), "*", skips, used, problems);
                }
                return;
            }
            for (key, value) in example_map {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if skips.contains(&child.as_str()) {
                    used.insert(child);
                    continue;
                }
                match actual_map.get(key) {
                    None => problems.push(format!("{child}: missing in the fake's object")),
                    Some(actual_value) => walk(value, actual_value, &child, key, skips, used, problems),
                }
            }
        }
        (Value::Array(example_items), Value::Array(actual_items)) => {
            let Some(first_actual) = actual_items.first() else {
                problems.push(format!("{path}: the example has elements, the fake's array is empty"));
                return;
            };
            for (i, item) in example_items.iter().enumerate() {
                let actual_item = actual_items.get(i).unwrap_or(first_actual);
                walk(item, actual_item, &format!("{path}[]"), field, skips, used, problems);
            }
        }
        _ => {}
    }
}

/// The Nomad OpenAPI document, as JSON.
pub fn openapi() -> Value {
    let path = reference_dir().join("nomad-openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// `value` without its null-valued keys, recursively (the spec marks nothing nullable).
pub fn drop_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), drop_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// Validate `instance` (nulls dropped) against `schema`, a schema whose `$ref`s point into the
/// OpenAPI document's `components`. OpenAPI 3.0 schemas are read as draft 4 JSON Schema with
/// format assertions on (`int64`, `date-time`, `byte`): nothing needed stripping, as the spec
/// uses no `nullable` and no keyword draft 4 lacks.
pub fn schema_errors(openapi: &Value, schema: Value, instance: &Value) -> Vec<String> {
    let mut root = schema;
    root["components"] = openapi["components"].clone();
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the OpenAPI schema does not compile: {e}"));
    let instance = drop_nulls(instance);
    validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

pub fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub fn schema_list(name: &str) -> Value {
    json!({ "type": "array", "items": { "$ref": format!("#/components/schemas/{name}") } })
}

/// Build the busybox test image (with the example's default command) and push it to the
/// registry, as jobforge's build phase would; the pushed reference.
pub async fn push_test_image(registry_host: &str) -> String {
    let dir = tempfile::Builder::new().prefix("fake-nomad-image-").tempdir().expect("create a temp dir");
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).expect("create the build context");
    std::fs::copy(busybox_path(), context.join("busybox")).expect("copy busybox");
    std::fs::write(context.join("Dockerfile"), EXAMPLE_DOCKERFILE).expect("write the Dockerfile");
    let storage = [
        "--root".to_owned(),
        dir.path().join("root").display().to_string(),
        "--runroot".to_owned(),
        dir.path().join("run").display().to_string(),
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
    ];
    let local = "localhost/jobforge-fake-nomad-test:1";
    let reference = format!("{registry_host}/jobforge/busybox:1");
    let context = context.display().to_string();
    let target = format!("docker://{reference}");
    let steps: [Vec<&str>; 2] = [
        vec!["bud", "--isolation", "chroot", "-q", "-t", local, &context],
        vec!["push", "--tls-verify=false", "-q", local, &target],
    ];
    for step in steps {
        let output = tokio::process::Command::new("buildah")
            .args(&storage)
            .args(&step)
            .output()
            .await
            .expect("run buildah (apt-get install buildah)");
        assert!(output.status.success(), "buildah {step:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    reference
}
