//! Hostile submissions against the real HTTP app, in process, over an engine on the in-memory
//! ports.
//!
//! Each case of the table is a valid job config with one hostile change (or a body that is not
//! a config at all): shell metacharacters, newlines and `${...}` where a field does not allow
//! them, values that read as options, paths out of the repository, oversized arrays, strings
//! and bodies, control characters, invalid UTF-8, deep nesting, huge and negative numbers,
//! wrong types, unknown fields, bad image names, tags and registries, bad environment names,
//! webhooks and resource limits out of range. Every one must be refused with a 4xx whose
//! `problems` names the field at fault (`body` for a body that is not a config), nothing may be
//! stored or started, and afterwards the service must still answer `/health` and accept a
//! valid job.
//!
//! The job files the CLI reads are YAML, parsed into JSON before validation: generated YAML
//! text (and an alias bomb) must be read or refused, never panic.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use jobforge_api::ErrorBody;
use jobforge_core::Timestamp;
use jobforge_core::engine::{Engine, Ports, Settings};
use jobforge_core::ports::JobRecords;
use jobforge_core::validate::{MAX_BODY_BYTES, job_spec};
use jobforge_server::http::{AppState, ServiceInfo, app};
use jobforge_testkit::memory::{
    LockTable, MemoryBackend, MemoryLocks, MemoryRegistry, MemorySecrets, MemoryStore, TokioClock,
};

/// The valid job every case changes.
fn base() -> Value {
    json!({
        "repo_url": "https://git.example.com/team/app.git",
        "image_name": "team/app",
        "registry_url": "127.0.0.1:5000",
        "image_tags": ["v1"],
        "test_commands": ["lines:1"],
    })
}

/// `over` merged into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// One hostile submission, the status it must get and the field its refusal must name.
struct Case {
    name: String,
    body: Vec<u8>,
    status: StatusCode,
    field: String,
}

impl Case {
    /// Refused by this service rather than by validation (the config is well-formed).
    fn unprocessable(mut self) -> Case {
        self.status = StatusCode::UNPROCESSABLE_ENTITY;
        self
    }

    /// Refused naming another field than the one changed (`body` for an oversized one).
    fn with_field(mut self, field: &str) -> Case {
        self.field = field.to_owned();
        self
    }
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

/// The base with `patch` merged in, refused naming `field`.
fn patch(patch: Value, field: &str) -> Case {
    let name = format!("{field}: {}", shown(&patch));
    let mut config = base();
    merge(&mut config, patch);
    Case { name, body: config.to_string().into_bytes(), status: StatusCode::BAD_REQUEST, field: field.to_owned() }
}

/// The base with `value` at the dotted `path`, refused naming `field`.
fn set_at(path: &str, value: Value, field: &str) -> Case {
    let nested = path.rsplit('.').fold(value, |inner, key| json!({ key: inner }));
    patch(nested, field)
}

/// The base with `value` at the dotted `field`, refused naming that field.
fn set(field: &str, value: Value) -> Case {
    set_at(field, value, field)
}

/// A body sent as these bytes, refused naming `field`.
fn raw(name: &str, body: impl Into<Vec<u8>>, field: &str) -> Case {
    Case { name: name.to_owned(), body: body.into(), status: StatusCode::BAD_REQUEST, field: field.to_owned() }
}

/// The base as JSON text with `text` spliced in as the value of `key` (for what `json!`
/// cannot hold: invalid UTF-8, numbers out of range).
fn raw_field(key: &[u8], text: &[u8], field: &str) -> Case {
    let mut body = br#"{"repo_url": "https://git.example.com/team/app.git", "image_name": "team/app", "registry_url": "127.0.0.1:5000", ""#.to_vec();
    body.extend_from_slice(key);
    body.extend_from_slice(b"\": ");
    body.extend_from_slice(text);
    body.push(b'}');
    let shown = |bytes: &[u8]| String::from_utf8_lossy(bytes).chars().take(60).collect::<String>();
    raw(&format!("{}: {}", shown(key), shown(text)), body, field)
}

fn many(n: usize, item: impl Fn(usize) -> Value) -> Value {
    Value::Array((0..n).map(item).collect())
}

fn entries(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("V{i}"), json!("x"))).collect())
}

fn secrets(path: &str, fields: Value) -> Value {
    json!({"test": {"vault_secrets": [{"path": path, "fields": fields}]}})
}

fn constraint(c: Value) -> Value {
    json!({"test": {"constraints": [c]}})
}

fn webhook(extra: Value) -> Value {
    let mut hook = json!({"webhook_url": "https://hooks.example.com/jobforge"});
    merge(&mut hook, extra);
    hook
}

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let long = |n: usize| "a".repeat(n);
    vec![
        // Shell metacharacters, `${...}` and newlines where a field allows none.
        set("repo_url", json!("https://git.example.com/$(touch /tmp/pwned).git")),
        set("repo_url", json!("https://git.example.com/app.git; id")),
        set("repo_url", json!("https://git.example.com/app.git\nid")),
        set("repo_url", json!("git@`id`:team/app.git")),
        set("repo_url", json!("git@${HOST}:team/app.git")),
        set("repo_url", json!("ext::sh -c id")),
        set("image_name", json!("team/app;id")),
        set("image_name", json!("team/$(id)")),
        set("image_name", json!("team/${IMAGE}")),
        set("image_name", json!("team/app\n")),
        set_at("image_tags", json!(["v1;id"]), "image_tags[0]"),
        set_at("image_tags", json!(["`id`"]), "image_tags[0]"),
        set_at("image_tags", json!(["v1", "${TAG}"]), "image_tags[1]"),
        set_at("image_tags", json!(["v1\nlatest"]), "image_tags[0]"),
        set("registry_url", json!("127.0.0.1:5000;id")),
        set("registry_url", json!("registry.example.com/$(id)")),
        set("registry_url", json!("${REGISTRY}")),
        set("git_credentials_path", json!("git/$(id)")),
        set("git_credentials_path", json!("git/${TOKEN}")),
        set("registry_credentials_path", json!("registry/`id`")),
        patch(secrets("app;id", json!({"pw": "PW"})), "test.vault_secrets[0].path"),
        patch(secrets("app/db", json!({"pw;id": "PW"})), "test.vault_secrets[0].fields.pw;id"),
        patch(secrets("app/db", json!({"pw": "$(id)"})), "test.vault_secrets[0].fields.pw"),
        set_at("test.vault_policies", json!(["$(id)"]), "test.vault_policies[0]"),
        set("build_args.A;B", json!("x")),
        set("test.env.$(id)", json!("x")),
        set("test.env.X", json!("a\nb")),
        set("build_args.X", json!("a\r\nb")),
        set("git_ref", json!("main\nid")),
        set("owner", json!("team\nother")),
        set("dockerfile_path", json!("Dockerfile\nx")),
        set("context", json!("app\n")),
        patch(webhook(json!({"webhook_headers": {"X-A": "v\r\nX-Injected: 1"}})), "webhook_headers.X-A"),
        set("webhook_url", json!("https://hooks.example.com/x\r\nHost: evil")),
        patch(constraint(json!({"attribute": "x", "operand": "=; id", "value": "y"})), "test.constraints[0].operand"),
        // Values that read as options, in every path and ref.
        set("git_ref", json!("-x")),
        set("git_ref", json!("--upload-pack=id")),
        set("dockerfile_path", json!("-f")),
        set("dockerfile_path", json!("--file=/etc/passwd")),
        set("context", json!("--secret=id=s,src=/etc/shadow")),
        set("context", json!("app/-x")),
        set("repo_url", json!("-uhelp")),
        set("repo_url", json!("--upload-pack=id")),
        set("repo_url", json!("ssh://-oProxyCommand=id/team/app.git")),
        set("repo_url", json!("ssh://-oProxyCommand=id@git.example.com/app.git")),
        set("repo_url", json!("git@-oProxyCommand:team/app.git")),
        set("repo_url", json!("git@git.example.com:-x")),
        set("git_credentials_path", json!("--upload-pack=id")),
        set("registry_credentials_path", json!("-x=y")),
        patch(secrets("--x=y", json!({"pw": "PW"})), "test.vault_secrets[0].path"),
        set_at("image_tags", json!(["-v1"]), "image_tags[0]"),
        set("image_name", json!("-team/app")),
        set("registry_url", json!("-registry:5000")),
        // `..` and absolute paths.
        set("dockerfile_path", json!("../Dockerfile")),
        set("dockerfile_path", json!("/etc/passwd")),
        set("context", json!("..")),
        set("context", json!("/")),
        set("context", json!("a/../../b")),
        set("git_ref", json!("a..b")),
        set("git_credentials_path", json!("../secret")),
        set("git_credentials_path", json!("a/./b")),
        set("registry_credentials_path", json!("/abs/path")),
        patch(secrets("app/../../root", json!({"pw": "PW"})), "test.vault_secrets[0].path"),
        set("image_name", json!("../team/app")),
        set("repo_url", json!("file:///etc/passwd")).unprocessable(),
        // Oversized arrays, maps, strings and bodies.
        set("test_commands", many(10_000, |_| json!("x"))),
        set("test_commands", many(51, |i| json!(format!("echo {i}")))),
        set_at("test_commands", json!([long(1_000_000)]), "test_commands[0]"),
        set_at("test_commands", json!([long(32 * 1024 + 1)]), "test_commands[0]"),
        patch(json!({"test_commands": many(50, |i| json!(format!("echo {i}"))), "test_entry_point": true}), "test_commands"),
        set("image_tags", many(51, |i| json!(format!("v{i}")))),
        set("owner", json!(long(2 * 1024 * 1024))).with_field("body"),
        set("owner", json!(long(257))),
        set("repo_url", json!(format!("https://git.example.com/{}.git", long(3000)))),
        set("git_ref", json!(long(256))),
        set("build_args", entries(101)),
        set("test.env", entries(101)),
        set("test.vault_secrets", many(21, |i| json!({"path": format!("app/{i}"), "fields": {"pw": "PW"}}))),
        set("test.constraints", many(21, |_| json!({"attribute": "x", "operand": "is_set"}))),
        set("test.vault_policies", many(21, |i| json!(format!("app/{i}")))),
        set("image_name", json!(format!("team/{}", long(256)))),
        set("dockerfile_path", json!(long(1025))),
        set_at("image_tags", json!([long(129)]), "image_tags[0]"),
        set("build_args.X", json!(long(9000))),
        set("webhook_url", json!(format!("https://hooks.example.com/{}", long(3000)))),
        // Control characters.
        set("owner", json!("team\u{0}")),
        set("git_ref", json!("main\u{1b}")),
        set("context", json!("app\u{7f}")),
        set_at("test_commands", json!(["echo \u{1b}[2J"]), "test_commands[0]"),
        set_at("test_commands", json!(["echo \u{0}"]), "test_commands[0]"),
        set("build_args.X", json!("\u{7}")),
        patch(webhook(json!({"webhook_secret": "s\u{0}"})), "webhook_secret"),
        patch(constraint(json!({"attribute": "x", "value": "linux\u{85}"})), "test.constraints[0].value"),
        patch(constraint(json!({"attribute": "x\u{9b}", "value": "y"})), "test.constraints[0].attribute"),
        set("image_name", json!("team/app\u{200b}")),
        // Bodies that are not a job config.
        raw_field(b"owner", b"\"\xff\xfe\"", "body"),
        raw_field(b"ow\xc0\xafner", b"1", "body"),
        raw_field(b"owner", br#""\ud800""#, "body"),
        raw_field(b"test_commands", nested(10_000).as_bytes(), "body"),
        raw_field(b"owner", b"\"x\" \x00", "body"),
        raw("10000 nested arrays", nested(10_000), "body"),
        raw("an empty body", "", "body"),
        raw("not JSON", "not json", "body"),
        raw("an array", "[1]", "body"),
        raw("null", "null", "body"),
        raw("a string", "\"repo_url\"", "body"),
        raw("cut short", r#"{"repo_url":"#, "body"),
        raw("two objects", "{}{}", "body"),
        raw("a byte-order mark", [b"\xef\xbb\xbf".as_slice(), base().to_string().as_bytes()].concat(), "body"),
        raw("an oversized body of spaces", vec![b' '; MAX_BODY_BYTES + 1], "body"),
        // Huge, negative and fractional numbers.
        raw_field(b"build_timeout", b"1e400", "body"),
        raw_field(b"build_timeout", b"18446744073709551616", "build_timeout"),
        set("build_timeout", json!(u64::MAX)),
        set("test_timeout", json!(-1)),
        set("build_timeout", json!("-5m")),
        set("test.timeout", json!("-1s")),
        set("build_timeout", json!(1.5)),
        set("build_timeout", json!("25h")),
        set("build_timeout", json!("99999999999999999999s")),
        set("resource_limits.memory", json!(1e300)),
        set("resource_limits.cpu", json!(0)),
        set("resource_limits.cpu", json!(512_001)),
        set("resource_limits.memory", json!("99999999999999999999TB")),
        set("resource_limits.memory", json!("18446744073709551615TB")),
        set("resource_limits.disk", json!(-1)),
        set("resource_limits.build.memory", json!("0")),
        set("test.resource_limits.cpu", json!("fastest")),
        // Wrong types.
        set("repo_url", json!(42)),
        set("image_name", json!(["team/app"])),
        set("registry_url", json!({"host": "ghcr.io"})),
        set("image_tags", json!(5)),
        set("test_commands", json!("make test")),
        set_at("test_commands", json!([42]), "test_commands[0]"),
        set("test_entry_point", json!("yes")),
        set("clear_cache", json!(1)),
        set("build_args", json!(["A=B"])),
        set("test", json!("make test")),
        set("test.env", json!(["A=B"])),
        set("resource_limits", json!("2GB")),
        patch(webhook(json!({"webhook_on_failure": "true"})), "webhook_on_failure"),
        set("git_ref", json!(true)),
        set("owner", json!({"name": "team"})),
        set("test.vault_secrets", json!({"path": "app/db"})),
        // Unknown fields.
        set("colour", json!("blue")),
        set("__proto__", json!({"admin": true})),
        set_at("repo_url ", json!("https://git.example.com/x.git"), "repo_url "),
        set("Repo_URL", json!("https://git.example.com/x.git")),
        set("test.privileged", json!(true)),
        set("resource_limits.gpu", json!(1)),
        set("test.resource_limits.gpu", json!(1)),
        patch(json!({"test": {"vault_secrets": [{"path": "app/db", "fields": {"pw": "PW"}, "mount": "sys"}]}}), "test.vault_secrets[0].mount"),
        patch(constraint(json!({"attribute": "x", "operand": "is_set", "extra": 1})), "test.constraints[0].extra"),
        patch(json!({"test_commands": ["a"], "test": {"commands": ["b"]}}), "test.commands"),
        // Bad image names, tags and registries.
        set("image_name", json!("Team/App")),
        set("image_name", json!("team/app:latest")),
        set("image_name", json!("team//app")),
        set("image_name", json!("")),
        set_at("image_tags", json!(["latest", ".hidden"]), "image_tags[1]"),
        set("registry_url", json!("https://ghcr.io")),
        set("registry_url", json!("ghcr.io:0")),
        set("registry_url", json!("ghcr.io:99999")),
        set("registry_url", json!("[::zz]:5000")),
        set("registry_url", json!("ghcr.io/Team")),
        set("registry_url", json!("user:pw@ghcr.io")),
        // Environment and build-arg names.
        set("build_args.A=B", json!("x")),
        set("build_args.A B", json!("x")),
        set("build_args.1X", json!("x")),
        set("test.env.PATH=/x", json!("x")),
        set("test.env. X", json!("x")),
        patch(json!({"test": {"env": {"": "x"}}}), "test.env."),
        patch(secrets("app/db", json!({"pw": "A=B"})), "test.vault_secrets[0].fields.pw"),
        // Webhooks.
        set("webhook_url", json!("javascript:alert(1)")),
        set("webhook_url", json!("file:///etc/passwd")),
        set("webhook_url", json!("ftp://hooks.example.com/x")),
        patch(json!({"webhook_secret": "s3cret"}), "webhook_url"),
        patch(json!({"webhook_headers": {"X-A": "b"}}), "webhook_url"),
        patch(webhook(json!({"webhook_headers": {"X Bad": "v"}})), "webhook_headers.X Bad"),
        patch(webhook(json!({"webhook_headers": {"Host:": "evil"}})), "webhook_headers.Host:"),
        set("webhook_url", json!("http://169.254.169.254/latest/meta-data/")).unprocessable(),
        // Constraints, and secrets that do not exist.
        patch(constraint(json!({"attribute": "x", "operand": "~~", "value": "y"})), "test.constraints[0].operand"),
        patch(constraint(json!({"attribute": "x"})), "test.constraints[0].value"),
        set("git_credentials_path", json!("git/nowhere")).unprocessable(),
    ]
}

/// The app over an engine on the in-memory ports, and what the test looks into.
struct Service {
    app: Router,
    backend: Arc<MemoryBackend>,
    store: Arc<MemoryStore>,
    shutdown: CancellationToken,
}

fn service() -> Service {
    let registry = Arc::new(MemoryRegistry::default());
    let clock = TokioClock::starting_at(Timestamp::now());
    let backend = Arc::new(MemoryBackend::new(registry.clone(), clock, 1));
    let store = Arc::new(MemoryStore::default());
    let locks = MemoryLocks::new(Arc::new(LockTable::default()), 1);
    let ports =
        Ports::new(backend.clone(), store.clone(), Arc::new(MemorySecrets), registry, Arc::new(locks), Arc::new(clock));
    let shutdown = CancellationToken::new();
    let engine = Engine::new(ports, Settings::default(), shutdown.child_token());
    let info = ServiceInfo { version: "test".into(), backend: "memory".into(), store: "memory".into() };
    Service { app: app(AppState::new(engine, info, shutdown.clone())), backend, store, shutdown }
}

impl Service {
    async fn call(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    async fn submit(&self, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request =
            Request::post("/v1/jobs").header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap();
        self.call(request).await
    }

    async fn stored(&self) -> u64 {
        self.store.list(1, 0).await.unwrap().total
    }
}

/// What is wrong with the answer to `case`, if anything.
async fn check(service: &Service, case: &Case) -> Option<String> {
    let (status, body) = service.submit(case.body.clone()).await;
    if status != case.status {
        return Some(format!("status {status}, wanted {}: {}", case.status, String::from_utf8_lossy(&body)));
    }
    let answer: ErrorBody = match serde_json::from_slice(&body) {
        Ok(answer) => answer,
        Err(e) => return Some(format!("the body is not an error body ({e}): {}", String::from_utf8_lossy(&body))),
    };
    if !answer.problems.iter().any(|p| p.field == case.field) {
        return Some(format!("no problem names {:?}: {:?}", case.field, answer.problems));
    }
    if !service.backend.starts().is_empty() || !service.backend.runs().is_empty() {
        return Some(format!("the backend started {:?}", service.backend.starts()));
    }
    let stored = service.stored().await;
    (stored != 0).then(|| format!("{stored} job(s) stored"))
}

#[tokio::test]
async fn hostile_submissions_are_refused_naming_their_field_and_nothing_runs() {
    let service = service();
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        if let Some(wrong) = check(&service, case).await {
            failures.push(format!("{}: {wrong}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    let (status, _) = service.call(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the service still answers /health");
    let (status, body) = service.submit(base().to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "a valid job is still accepted: {}", String::from_utf8_lossy(&body));
    let mut starts = service.backend.watch_starts();
    let started = tokio::time::timeout(Duration::from_secs(30), starts.wait_for(|n| *n > 0)).await;
    assert!(started.is_ok(), "the valid job's build starts, so the checks above could see a start");
    service.shutdown.cancel();
}

/// Every hostile config the table sends is refused by validation itself, so no other front
/// end (MCP, the compat endpoints) can let it through; the exceptions are the ones this
/// service refuses later, which validation leaves to the deployment.
#[test]
fn the_table_is_refused_by_validation_too() {
    for case in cases().into_iter().filter(|c| c.field != "body" && c.status == StatusCode::BAD_REQUEST) {
        let Ok(value) = serde_json::from_slice::<Value>(&case.body) else { continue };
        let problems = job_spec(&value).err().unwrap_or_default();
        assert!(problems.iter().any(|p| p.field == case.field), "{}: {problems:?}", case.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Job files: YAML text, as the CLI reads it, into validation.

const YAML_PIECES: &[&str] = &[
    "repo_url: ",
    "image_name: ",
    "registry_url: ",
    "test_commands:",
    "test:",
    "  commands:",
    "  env:",
    "build_args:",
    "image_tags: ",
    "resource_limits:",
    "  memory: ",
    "build_timeout: ",
    "- ",
    "  - ",
    "    ",
    "\n",
    ": ",
    "? ",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!!str ",
    "!!int ",
    "!custom ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "\"",
    "'",
    "|",
    ">-",
    "#",
    "---",
    "...",
    "%YAML 1.2",
    "%TAG ! tag:x:",
    "~",
    "null",
    "true",
    "0x1F",
    "0o17",
    "1e400",
    "-.inf",
    ".nan",
    "18446744073709551616",
    "\\u0000",
    "\t",
    "https://git.example.com/a.git",
    "team/app",
    "127.0.0.1:5000",
    "$(id)",
    "--upload-pack=x",
    "../..",
];

fn yaml_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![4 => prop::sample::select(YAML_PIECES).prop_map(str::to_owned), 1 => "(?s).{0,8}"];
    prop_oneof![
        3 => prop::collection::vec(piece, 0..40).prop_map(|p| p.concat()),
        1 => "(?s).{0,200}",
    ]
}

proptest! {
    #[test]
    fn any_job_file_text_is_read_or_refused(text in yaml_text()) {
        if let Ok(value) = serde_saphyr::from_str::<Value>(&text) {
            match job_spec(&value) {
                Ok(spec) => prop_assert!(!spec.repo_url.as_str().starts_with('-')),
                Err(problems) => prop_assert!(!problems.is_empty()),
            }
        }
    }
}

/// Nine levels of ten aliases would expand to a billion strings.
#[test]
fn an_alias_bomb_in_a_job_file_is_refused() {
    let mut text = String::from("a0: &a0 [\"lol\"]\n");
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    text.push_str("repo_url: *a9\n");
    assert!(serde_saphyr::from_str::<Value>(&text).is_err());
}
