//! Helpers for the fake Consul tests: a tiny HTTP client that speaks to the fake the way a
//! Consul client does (tokens, blocking queries instead of sleeps), the recorded examples, and
//! the shape comparison against them.
//!
//! Helpers panic with a message naming what they expected; they never sleep for a fixed time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use jobforge_testkit::fake_consul::{FakeConsul, FakeConsulConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A started fake and a client for it.
pub struct Fixture {
    pub consul: FakeConsul,
    pub api: Api,
}

pub async fn start() -> Fixture {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut FakeConsulConfig)) -> Fixture {
    let mut config = FakeConsulConfig::new();
    adjust(&mut config);
    let consul = FakeConsul::start(config).await;
    let api = Api::new(&consul.url());
    Fixture { consul, api }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// `X-Consul-Index`, when sent.
    pub index: Option<u64>,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The JSON of a 200 answer.
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "unexpected answer: {}", self.text);
        self.json()
    }

    /// Status and body, for comparing refusals in one assertion.
    pub fn refusal(&self) -> (StatusCode, &str) {
        (self.status, self.text.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        // Longer than any wait a test asks for, so a blocking query never times out client-side.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client");
        Api { base: base.to_owned(), token: None, http }
    }

    /// The same client, sending `X-Consul-Token`.
    pub fn with_token(&self, token: &str) -> Api {
        Api { token: Some(token.to_owned()), ..self.clone() }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap_or_else(|e| panic!("request to the fake failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let index = headers.get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let text = response.text().await.unwrap_or_else(|e| panic!("reading an answer failed: {e}"));
        Answer { status, index, headers, text }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    /// PUT with a raw body.
    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.send(self.request(Method::PUT, path).body(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// PUT a KV value (`query` starts with `?` or is empty); Consul's `true` or `false`.
    pub async fn put_kv(&self, key: &str, query: &str, value: &str) -> bool {
        let answer = self.put(&format!("/v1/kv/{key}{query}"), value.to_owned()).await;
        answer.ok().as_bool().unwrap_or_else(|| panic!("PUT {key}{query} did not answer a bool: {}", answer.text))
    }

    /// The one entry at `key` (panics on 404).
    pub async fn entry(&self, key: &str) -> Value {
        let entries = self.get(&format!("/v1/kv/{key}")).await.ok();
        assert_eq!(entries.as_array().map(Vec::len), Some(1), "a single-key read is an array of one: {entries}");
        entries[0].clone()
    }

    /// Create a session from `body`; its ID.
    pub async fn session(&self, body: &Value) -> String {
        let created = self.put("/v1/session/create", body.to_string()).await.ok();
        created["ID"].as_str().unwrap_or_else(|| panic!("no ID in {created}")).to_owned()
    }

    /// Block on `path` (a read with `?` already in it or not) until `done` holds for its JSON (or
    /// for `Value::Null` on a 404), following `X-Consul-Index` as a Consul client does.
    pub async fn until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut index = 0;
        for _ in 0..50 {
            let answer = self.get(&format!("{path}{separator}index={index}&wait=10s")).await;
            let value = if answer.status == StatusCode::NOT_FOUND { Value::Null } else { answer.ok() };
            if done(&value) {
                return value;
            }
            index = answer.index.expect("reads carry X-Consul-Index");
        }
        panic!("{what} did not happen on {path}");
    }
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}

pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reference/consul-examples")
}

pub fn example(name: &str) -> Value {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The example files the manifest lists, as `(file, method, path)`.
pub fn manifest() -> Vec<(String, String, String)> {
    let manifest = example("manifest.json");
    manifest
        .as_array()
        .expect("the manifest is a list")
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("manifest entry without {k}: {e}")).to_owned();
            (field("file"), field("method"), field("path"))
        })
        .collect()
}

/// Objects whose keys are data (addresses, meta), not field names: compared value to value.
const DATA_MAPS: &[&str] = &["TaggedAddresses", "NodeMeta", "Meta", "ServiceMeta", "ServiceTaggedAddresses"];

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
/// recursively. Where the example has `null` or an empty array only the key's presence is
/// checked. Array elements are compared to the fake's element at the same position (its first
/// past its end); data maps compare their first values. `skips` are paths
/// (`ServiceProxy.Config`, `Checks[].Namespace`, `TaggedAddresses.*.address`) not compared, each
/// with a reason kept by the caller. Returns the differences.
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
            if DATA_MAPS.contains(&field) {
                if let (Some(first_example), Some(first_actual)) =
                    (example_map.values().next(), actual_map.values().next())
                {
                    let child = format!("{path}.*");
                    if skips.contains(&child.as_str()) {
                        used.insert(child);
                        return;
                    }
                    walk(first_example, first_actual, &child, "*", skips, used, problems);
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

/// Assert that the fake's answer has the recorded example's shape.
pub fn assert_shape(file: &str, actual: &Value, skips: &[&str]) {
    let problems = compare_shape(&example(file), actual, skips);
    assert!(
        problems.is_empty(),
        "{file}: the fake differs from the recorded example:\n{}\nfake: {actual:#}",
        problems.join("\n")
    );
}

/// A session body for a pure-TTL session (no node checks) with a short lock-delay.
pub fn ttl_session(name: &str, ttl: &str, behavior: &str, lock_delay: Value) -> Value {
    json!({ "Name": name, "TTL": ttl, "Behavior": behavior, "LockDelay": lock_delay, "NodeChecks": [] })
}
