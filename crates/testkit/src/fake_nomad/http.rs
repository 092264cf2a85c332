//! The fake's HTTP edge: routing the way Nomad's agent routes (`/v1/job/<id>` with suffix
//! matching, so IDs may contain slashes), query parameters, ACL tokens, blocking queries and the
//! response headers, and Nomad's plain-text errors with their status codes.
//!
//! Handlers read the store and write through [`super::state::Store`]; they never start tasks.
//! Blocking queries wake on the store's watch channel (no polling) and return at `wait` (Go
//! duration, default and cap 300 s, plus up to wait/16 of jitter) otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Inner;
use super::duration::parse_go_duration;
use super::jobspec::{canonicalize, spec_of, validate};
use super::records::now_nanos;
use super::scheduler::{NOMAD_VERSION, new_eval};
use super::state::{State as StoreState, Txn};
use crate::fake_http::Parked;

/// `MaxBlockingRPCQueryTime` and the default wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner)
}

/// A refusal: Nomad's status code and plain-text body.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub message: String,
    /// A not-found read still carries the index, so clients can block on a job appearing.
    pub index: Option<u64>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError { status, message: message.into(), index: None }
    }

    fn with_index(mut self, index: u64) -> HttpError {
        self.index = Some(index);
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.message).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let Some(index) = self.index {
            set_query_headers(headers, index);
        }
        response
    }
}

fn bad_request(message: impl Into<String>) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, message)
}

fn invalid_method() -> HttpError {
    HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "Invalid method")
}

/// The decoded query string.
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(uri: &Uri) -> Query {
        let pairs = uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// A boolean parameter as Go's `strconv.ParseBool` reads it; absent is `default`.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, HttpError> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(bad_request(format!(
                "Failed to parse value of {key:?} ({other}) as a bool: strconv.ParseBool: parsing {other:?}: invalid syntax"
            ))),
        }
    }

    fn namespace(&self) -> String {
        self.get("namespace").filter(|n| !n.is_empty()).unwrap_or("default").to_owned()
    }
}

/// Percent-decoding (paths and query values).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn set_query_headers(headers: &mut HeaderMap, index: u64) {
    headers.insert("X-Nomad-Index", HeaderValue::from(index.max(1)));
    headers.insert("X-Nomad-KnownLeader", HeaderValue::from_static("true"));
    headers.insert("X-Nomad-LastContact", HeaderValue::from_static("0"));
}

fn json_body(value: &Value, pretty: bool) -> Vec<u8> {
    let encoded = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
    encoded.unwrap_or_else(|_| b"null".to_vec())
}

/// A read's response: JSON plus the query headers.
fn read_response(value: &Value, index: u64, query: &Query) -> Response {
    let mut response = json_body(value, query.get("pretty").is_some()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_query_headers(headers, index);
    response
}

/// A write's response: JSON plus `X-Nomad-Index` only.
fn write_response(value: &Value, index: u64) -> Response {
    let mut response = json_body(value, false).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("X-Nomad-Index", HeaderValue::from(index));
    response
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = decode(uri.path());
    let query = Query::parse(&uri);
    match route(&inner, &method, &path, &query, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The ACL check: with a token configured, a request must carry it.
fn authorize(inner: &Inner, headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(expected) = &inner.config.acl_token else { return Ok(()) };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    // X-Nomad-Token wins over Authorization: Bearer.
    let token = header("X-Nomad-Token")
        .or_else(|| header("Authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::trim));
    match token {
        None => Err(HttpError::new(StatusCode::FORBIDDEN, "Permission denied")),
        Some(token) if token == expected => Ok(()),
        Some(_) => Err(HttpError::new(StatusCode::FORBIDDEN, "ACL token not found")),
    }
}

async fn route(
    inner: &Arc<Inner>,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, HttpError> {
    // Health and leader status answer without a token, as Nomad's do.
    match path {
        "/v1/status/leader" => return only_get(method).map(|_| read_response(&json!("127.0.0.1:4647"), 1, query)),
        "/v1/status/peers" => return only_get(method).map(|_| read_response(&json!(["127.0.0.1:4647"]), 1, query)),
        "/v1/agent/health" => {
            only_get(method)?;
            let health = json!({"client": {"message": "ok", "ok": true}, "server": {"message": "ok", "ok": true}});
            return Ok(read_response(&health, 1, query));
        }
        _ => {}
    }
    authorize(inner, headers)?;
    if path == "/v1/jobs" {
        return match *method {
            Method::GET => list_jobs(inner, query).await,
            Method::PUT | Method::POST => register(inner, None, query, body),
            _ => Err(invalid_method()),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/job/") {
        return job_route(inner, method, rest, query, body).await;
    }
    if path == "/v1/allocations" {
        only_get(method)?;
        return list_allocs(inner, query).await;
    }
    if let Some(rest) = path.strip_prefix("/v1/allocation/") {
        if let Some(id) = rest.strip_suffix("/stop") {
            return match *method {
                Method::PUT | Method::POST => stop_alloc(inner, id),
                _ => Err(invalid_method()),
            };
        }
        only_get(method)?;
        return get_alloc(inner, rest, query).await;
    }
    if path == "/v1/evaluations" {
        only_get(method)?;
        return list_evals(inner, query).await;
    }
    if let Some(rest) = path.strip_prefix("/v1/evaluation/") {
        only_get(method)?;
        if let Some(id) = rest.strip_suffix("/allocations") {
            return eval_allocs(inner, id, query).await;
        }
        return get_eval(inner, rest, query).await;
    }
    if let Some(alloc_id) = path.strip_prefix("/v1/client/fs/logs/") {
        only_get(method)?;
        return super::logs::serve(inner.clone(), alloc_id, query).await;
    }
    for (prefix, op) in [
        ("/v1/client/fs/ls/", super::fs::Op::List),
        ("/v1/client/fs/stat/", super::fs::Op::Stat),
        ("/v1/client/fs/cat/", super::fs::Op::Cat),
    ] {
        if let Some(alloc_id) = path.strip_prefix(prefix) {
            only_get(method)?;
            return super::fs::serve(inner, op, alloc_id, query);
        }
    }
    if path == "/v1/event/stream" {
        only_get(method)?;
        return super::stream::serve(inner.clone(), query);
    }
    if path == "/v1/agent/self" {
        only_get(method)?;
        return Ok(read_response(&agent_self(inner), 1, query));
    }
    if path == "/v1/nodes" {
        only_get(method)?;
        let nodes = inner.store.read(|_| json!([node_stub(inner)]));
        return Ok(read_response(&nodes, 1, query));
    }
    Err(HttpError::new(StatusCode::NOT_FOUND, "404 page not found"))
}

fn only_get(method: &Method) -> Result<(), HttpError> {
    if method == Method::GET { Ok(()) } else { Err(invalid_method()) }
}

/// `JobSpecificRequest`: suffixes first, then the job itself.
async fn job_route(
    inner: &Arc<Inner>,
    method: &Method,
    rest: &str,
    query: &Query,
    body: &Bytes,
) -> Result<Response, HttpError> {
    if let Some(id) = rest.strip_suffix("/allocations") {
        only_get(method)?;
        return job_allocs(inner, id, query).await;
    }
    if let Some(id) = rest.strip_suffix("/evaluations") {
        only_get(method)?;
        return job_evals(inner, id, query).await;
    }
    if let Some(id) = rest.strip_suffix("/summary") {
        only_get(method)?;
        return job_summary(inner, id, query).await;
    }
    if let Some(id) = rest.strip_suffix("/evaluate") {
        return match *method {
            Method::PUT | Method::POST => evaluate(inner, id, query),
            _ => Err(invalid_method()),
        };
    }
    match *method {
        Method::GET => get_job(inner, rest, query).await,
        Method::PUT | Method::POST => register(inner, Some(rest), query, body),
        Method::DELETE => deregister(inner, rest, query),
        _ => Err(invalid_method()),
    }
}

/// Run a blocking query. `compute` gives (index to report, index that wakes the query, value);
/// it is re-run on every write until the wake index passes the client's, or `wait` ends. On the
/// first run the reported index alone decides, as Nomad's `blockingRPC` does.
async fn blocking<T>(
    inner: &Inner,
    query: &Query,
    compute: impl Fn(&StoreState) -> (u64, u64, T),
) -> Result<(u64, T), HttpError> {
    let min_index = match query.get("index") {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| bad_request("Invalid index"))?,
    };
    let wait = match query.get("wait") {
        None | Some("") => MAX_WAIT,
        Some(text) => parse_go_duration(text).ok_or_else(|| bad_request("Invalid wait time"))?.min(MAX_WAIT),
    };
    let wait = if wait.is_zero() { MAX_WAIT } else { wait };
    let jitter_cap = wait.as_nanos() as u64 / 16;
    let jitter = if jitter_cap > 0 { (uuid::Uuid::new_v4().as_u128() % u128::from(jitter_cap)) as u64 } else { 0 };
    let deadline = Instant::now() + wait + Duration::from_nanos(jitter);
    let mut changes = inner.store.subscribe();
    let mut first = true;
    let mut parked: Option<Parked<'_>> = None;
    loop {
        changes.borrow_and_update();
        let (index, wake, value) = inner.store.read(&compute);
        let ready = min_index == 0 || (first && index > min_index) || wake > min_index;
        if ready || Instant::now() >= deadline || inner.shutdown.is_cancelled() {
            drop(parked);
            return Ok((index.max(1), value));
        }
        first = false;
        if parked.is_none() {
            parked = Some(Parked::new(&inner.waiting_queries));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = inner.shutdown.cancelled() => {}
        }
    }
}

fn job_list_stub(state: &StoreState, job: &Value, with_meta: bool) -> Value {
    let namespace = job["Namespace"].as_str().unwrap_or_default();
    let id = job["ID"].as_str().unwrap_or_default();
    let summary = state.job(namespace, id).map(|r| r.summary.to_json(id, namespace)).unwrap_or(Value::Null);
    let mut stub = json!({
        "ID": job["ID"],
        "ParentID": job["ParentID"],
        "Name": job["Name"],
        "Namespace": job["Namespace"],
        "Datacenters": job["Datacenters"],
        "NodePool": job["NodePool"],
        "Multiregion": job["Multiregion"],
        "Type": job["Type"],
        "Priority": job["Priority"],
        "Periodic": job["Periodic"]["Enabled"].as_bool().unwrap_or(false),
        "ParameterizedJob": !job["ParameterizedJob"].is_null(),
        "Stop": job["Stop"],
        "Status": job["Status"],
        "StatusDescription": job["StatusDescription"],
        "JobSummary": summary,
        "CreateIndex": job["CreateIndex"],
        "ModifyIndex": job["ModifyIndex"],
        "JobModifyIndex": job["JobModifyIndex"],
        "SubmitTime": job["SubmitTime"],
    });
    if with_meta {
        stub["Meta"] = job["Meta"].clone();
    }
    stub
}

async fn list_jobs(inner: &Inner, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let prefix = query.get("prefix").unwrap_or_default().to_owned();
    let with_meta = query.bool("meta", false)?;
    let (index, jobs) = blocking(inner, query, |state| {
        let jobs: Vec<Value> = state
            .jobs
            .iter()
            .filter(|((ns, id), _)| (namespace == "*" || *ns == namespace) && id.starts_with(&prefix))
            .map(|(_, record)| job_list_stub(state, &record.job, with_meta))
            .collect();
        let index = state.tables.jobs.max(state.tables.job_summary);
        (index, index, jobs)
    })
    .await?;
    Ok(read_response(&Value::Array(jobs), index, query))
}

async fn get_job(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let (index, job) = blocking(inner, query, |state| match state.job(&namespace, id) {
        Some(record) => {
            let index = record.job["ModifyIndex"].as_u64().unwrap_or(0);
            (index, index, Some(record.job.clone()))
        }
        None => (state.tables.jobs, state.tables.jobs, None),
    })
    .await?;
    match job {
        Some(job) => Ok(read_response(&job, index, query)),
        None => Err(HttpError::new(StatusCode::NOT_FOUND, "job not found").with_index(index)),
    }
}

async fn job_summary(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let (index, summary) = blocking(inner, query, |state| match state.job(&namespace, id) {
        Some(record) => {
            let index = record.summary.modify_index;
            (index, index, Some(record.summary.to_json(id, &namespace)))
        }
        None => (state.tables.job_summary, state.tables.job_summary, None),
    })
    .await?;
    match summary {
        Some(summary) => Ok(read_response(&summary, index, query)),
        None => Err(HttpError::new(StatusCode::NOT_FOUND, "job not found").with_index(index)),
    }
}

async fn job_allocs(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let all = query.bool("all", false)?;
    let with_resources = query.bool("resources", false)?;
    let task_states = query.bool("task_states", true)?;
    let (index, allocs) = blocking(inner, query, |state| {
        let allocs = state.allocs_of_job(&namespace, id, all);
        // The whole table's index is reported, but only this job's allocations wake the query.
        let wake = allocs.iter().map(|a| a.modify_index).max().unwrap_or(0);
        let stubs: Vec<Value> = allocs.iter().map(|a| stub(a, with_resources, task_states)).collect();
        (state.tables.allocs, wake, stubs)
    })
    .await?;
    Ok(read_response(&Value::Array(allocs), index, query))
}

fn stub(alloc: &super::records::Alloc, with_resources: bool, task_states: bool) -> Value {
    let mut stub = alloc.to_stub_json(with_resources);
    if !task_states {
        stub["TaskStates"] = Value::Null;
    }
    stub
}

async fn job_evals(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let (index, evals) = blocking(inner, query, |state| {
        let evals: Vec<Value> = state.evals_of_job(&namespace, id).iter().map(|e| e.to_json(None)).collect();
        (state.tables.evals, state.tables.evals, evals)
    })
    .await?;
    Ok(read_response(&Value::Array(evals), index, query))
}

async fn list_allocs(inner: &Inner, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let prefix = query.get("prefix").unwrap_or_default().to_owned();
    let with_resources = query.bool("resources", false)?;
    let task_states = query.bool("task_states", true)?;
    let (index, allocs) = blocking(inner, query, |state| {
        let allocs: Vec<Value> = state
            .allocs
            .values()
            .filter(|a| (namespace == "*" || a.namespace == namespace) && a.id.starts_with(&prefix))
            .map(|a| stub(a, with_resources, task_states))
            .collect();
        (state.tables.allocs, state.tables.allocs, allocs)
    })
    .await?;
    Ok(read_response(&Value::Array(allocs), index, query))
}

async fn get_alloc(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let (index, alloc) = blocking(inner, query, |state| match state.allocs.get(id) {
        Some(alloc) => (alloc.modify_index, alloc.modify_index, Some(alloc.to_json())),
        None => (state.tables.allocs, state.tables.allocs, None),
    })
    .await?;
    match alloc {
        Some(alloc) => Ok(read_response(&alloc, index, query)),
        None => Err(HttpError::new(StatusCode::NOT_FOUND, "alloc not found").with_index(index)),
    }
}

async fn list_evals(inner: &Inner, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let prefix = query.get("prefix").unwrap_or_default().to_owned();
    let job = query.get("job").map(str::to_owned);
    let status = query.get("status").map(str::to_owned);
    let (index, evals) = blocking(inner, query, |state| {
        let evals: Vec<Value> = state
            .evals
            .values()
            .filter(|e| (namespace == "*" || e.namespace == namespace) && e.id.starts_with(&prefix))
            .filter(|e| job.as_ref().is_none_or(|j| &e.job_id == j))
            .filter(|e| status.as_ref().is_none_or(|s| &e.status == s))
            .map(|e| e.to_json(None))
            .collect();
        (state.tables.evals, state.tables.evals, evals)
    })
    .await?;
    Ok(read_response(&Value::Array(evals), index, query))
}

/// Evaluations linked to `id` through `NextEval`, `PreviousEval` and `BlockedEval`, either way.
fn related_evals(state: &StoreState, id: &str) -> Vec<Value> {
    let mut found: Vec<String> = vec![id.to_owned()];
    let mut i = 0;
    while i < found.len() {
        let current = found[i].clone();
        if let Some(eval) = state.evals.get(&current) {
            for link in [&eval.next_eval, &eval.previous_eval, &eval.blocked_eval] {
                if !link.is_empty() && !found.contains(link) && state.evals.contains_key(link) {
                    found.push(link.clone());
                }
            }
        }
        for other in state.evals.values() {
            let links = [&other.next_eval, &other.previous_eval, &other.blocked_eval];
            if links.iter().any(|l| **l == current) && !found.contains(&other.id) {
                found.push(other.id.clone());
            }
        }
        i += 1;
    }
    found.iter().skip(1).filter_map(|id| state.evals.get(id)).map(|e| e.to_stub_json()).collect()
}

async fn get_eval(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let related = query.bool("related", false)?;
    let (index, eval) = blocking(inner, query, |state| match state.evals.get(id) {
        Some(eval) => {
            let related = related.then(|| related_evals(state, id));
            (eval.modify_index, eval.modify_index, Some(eval.to_json(related)))
        }
        None => (state.tables.evals, state.tables.evals, None),
    })
    .await?;
    match eval {
        Some(eval) => Ok(read_response(&eval, index, query)),
        None => Err(HttpError::new(StatusCode::NOT_FOUND, "eval not found").with_index(index)),
    }
}

async fn eval_allocs(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let (index, allocs) = blocking(inner, query, |state| {
        let allocs: Vec<Value> =
            state.allocs.values().filter(|a| a.eval_id == id).map(|a| a.to_stub_json(false)).collect();
        (state.tables.allocs, state.tables.allocs, allocs)
    })
    .await?;
    Ok(read_response(&Value::Array(allocs), index, query))
}

/// A register refused after decoding: 400 for request problems, 500 for what the job endpoint
/// rejects (validation, EnforceIndex).
fn register(inner: &Inner, path_id: Option<&str>, query: &Query, body: &Bytes) -> Result<Response, HttpError> {
    let request: Value = serde_json::from_slice(body).map_err(|e| bad_request(e.to_string()))?;
    let Some(request) = request.as_object() else {
        return Err(bad_request("json: cannot unmarshal non-object into Go value of type api.JobRegisterRequest"));
    };
    let raw_job =
        request.get("Job").or_else(|| request.iter().find(|(k, _)| k.eq_ignore_ascii_case("job")).map(|(_, v)| v));
    let Some(raw_job) = raw_job.filter(|j| !j.is_null()) else {
        return Err(bad_request("Job must be specified"));
    };
    // Go's decoder matches field names case-insensitively.
    let raw_id = raw_job.get("ID").or_else(|| {
        raw_job.as_object().and_then(|job| job.iter().find(|(k, _)| k.eq_ignore_ascii_case("ID")).map(|(_, v)| v))
    });
    let Some(raw_id) = raw_id.filter(|id| !id.is_null()) else {
        return Err(bad_request("Job ID hasn't been provided"));
    };
    if let Some(path_id) = path_id
        && raw_id.as_str() != Some(path_id)
    {
        return Err(bad_request("Job ID does not match name"));
    }
    let namespace = query
        .get("namespace")
        .filter(|n| !n.is_empty())
        .or_else(|| request.get("Namespace").and_then(Value::as_str).filter(|n| !n.is_empty()))
        .or_else(|| raw_job.get("Namespace").and_then(Value::as_str).filter(|n| !n.is_empty()))
        .unwrap_or("default")
        .to_owned();
    let job = canonicalize(raw_job, &namespace).map_err(|e| bad_request(e.0))?;
    if let Some(errors) = validate(&job) {
        return Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, errors));
    }
    let enforce = request.get("EnforceIndex").and_then(Value::as_bool).unwrap_or(false);
    let expected_index = request.get("JobModifyIndex").and_then(Value::as_u64).unwrap_or(0);
    let eval_priority = request.get("EvalPriority").and_then(Value::as_i64).filter(|p| *p > 0);
    let id = job["ID"].as_str().unwrap_or_default().to_owned();
    let result = inner.store.try_write(|txn| {
        let existing = txn.state.job(&namespace, &id).map(|r| r.job.clone());
        if enforce {
            check_enforce_index(existing.as_ref(), expected_index)?;
        }
        txn.state.registrations.entry(id.clone()).or_default().push(now_nanos());
        let index = txn.index;
        let changed = existing.as_ref().is_none_or(|old| spec_of(old) != spec_of(&job));
        let job = if changed {
            let mut job = job.clone();
            let version = existing.as_ref().map(|old| old["Version"].as_u64().unwrap_or(0) + 1).unwrap_or(0);
            let create_index = existing.as_ref().map(|old| old["CreateIndex"].clone()).unwrap_or(json!(index));
            job["Version"] = json!(version);
            job["SubmitTime"] = json!(now_nanos());
            job["CreateIndex"] = create_index;
            job["ModifyIndex"] = json!(index);
            job["JobModifyIndex"] = json!(index);
            job["Status"] = existing.as_ref().map(|old| old["Status"].clone()).unwrap_or(json!("pending"));
            txn.put_job(job.clone(), "JobRegistered");
            job
        } else {
            existing.unwrap_or(job.clone())
        };
        let job_modify_index = job["JobModifyIndex"].as_u64().unwrap_or(0);
        let (eval_id, eval_index) = create_eval(txn, &job, eval_priority, "job-register");
        Ok(json!({
            "EvalID": eval_id,
            "EvalCreateIndex": eval_index,
            "JobModifyIndex": job_modify_index,
            "Warnings": "",
            "Index": index,
            "LastContact": 0,
            "KnownLeader": false,
            "NextToken": "",
        }))
    });
    let response = result.map_err(|message: String| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, message))?;
    let index = response["Index"].as_u64().unwrap_or(0);
    Ok(write_response(&response, index))
}

/// `EnforceIndex`: 0 means "only if new", anything else must equal the job's modify index.
fn check_enforce_index(existing: Option<&Value>, expected: u64) -> Result<(), String> {
    const PREFIX: &str = "Enforcing job modify index";
    match existing {
        Some(job) => {
            let current = job["JobModifyIndex"].as_u64().unwrap_or(0);
            if expected == 0 {
                Err(format!("{PREFIX} 0: job already exists"))
            } else if expected != current {
                Err(format!("{PREFIX} {expected}: job exists with conflicting job modify index: {current}"))
            } else {
                Ok(())
            }
        }
        None if expected != 0 => Err(format!("{PREFIX} {expected}: job does not exist")),
        None => Ok(()),
    }
}

/// A new evaluation for the job, unless it is a periodic or parameterized parent.
fn create_eval(txn: &mut Txn<'_>, job: &Value, priority: Option<i64>, triggered_by: &str) -> (String, u64) {
    let periodic = job["Periodic"]["Enabled"].as_bool().unwrap_or(false);
    if periodic || !job["ParameterizedJob"].is_null() {
        return (String::new(), 0);
    }
    let eval = new_eval(
        job["Namespace"].as_str().unwrap_or("default"),
        job["ID"].as_str().unwrap_or_default(),
        job["Type"].as_str().unwrap_or("service"),
        priority.unwrap_or_else(|| job["Priority"].as_i64().unwrap_or(50)),
        job["JobModifyIndex"].as_u64().unwrap_or(0),
        triggered_by,
    );
    let id = eval.id.clone();
    txn.put_eval(eval);
    (id, txn.index)
}

fn deregister(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let purge = query.bool("purge", false)?;
    let eval_priority = query.get("eval_priority").and_then(|p| p.parse::<i64>().ok()).filter(|p| *p > 0);
    let result = inner.store.try_write(|txn| {
        let Some(existing) = txn.state.job(&namespace, id).map(|r| r.job.clone()) else {
            // An unknown job is not an error: 200 with zero values, and no write.
            return Err(());
        };
        let index = txn.index;
        let job = if purge {
            txn.delete_job(&namespace, id);
            existing
        } else {
            let mut job = existing.clone();
            if !existing["Stop"].as_bool().unwrap_or(false) {
                job["Stop"] = json!(true);
                job["Version"] = json!(existing["Version"].as_u64().unwrap_or(0) + 1);
                job["SubmitTime"] = json!(now_nanos());
                job["JobModifyIndex"] = json!(index);
            }
            job["ModifyIndex"] = json!(index);
            txn.put_job(job.clone(), "JobDeregistered");
            job
        };
        let (eval_id, eval_index) = create_eval(txn, &job, eval_priority, "job-deregister");
        Ok(json!({
            "EvalID": eval_id,
            "EvalCreateIndex": eval_index,
            "JobModifyIndex": index,
            "VolumeEvalID": "",
            "VolumeEvalIndex": 0,
            "Index": index,
            "LastContact": 0,
            "KnownLeader": false,
            "NextToken": "",
        }))
    });
    let response = result.unwrap_or_else(|()| {
        json!({
            "EvalID": "", "EvalCreateIndex": 0, "JobModifyIndex": 0, "VolumeEvalID": "", "VolumeEvalIndex": 0,
            "Index": 0, "LastContact": 0, "KnownLeader": false, "NextToken": "",
        })
    });
    let index = response["Index"].as_u64().unwrap_or(0);
    Ok(write_response(&response, index))
}

/// `POST /v1/job/:id/evaluate`: a new evaluation of the job as it is.
fn evaluate(inner: &Inner, id: &str, query: &Query) -> Result<Response, HttpError> {
    let namespace = query.namespace();
    let result = inner.store.try_write(|txn| {
        let Some(job) = txn.state.job(&namespace, id).map(|r| r.job.clone()) else {
            return Err(HttpError::new(StatusCode::NOT_FOUND, "job not found"));
        };
        let (eval_id, eval_index) = create_eval(txn, &job, None, "job-register");
        Ok(json!({
            "EvalID": eval_id,
            "EvalCreateIndex": eval_index,
            "JobModifyIndex": job["JobModifyIndex"],
            "Warnings": "",
            "Index": txn.index,
            "LastContact": 0,
            "KnownLeader": false,
            "NextToken": "",
        }))
    })?;
    let index = result["Index"].as_u64().unwrap_or(0);
    Ok(write_response(&result, index))
}

/// `POST /v1/allocation/:id/stop`: stop the allocation; the scheduler places a replacement.
fn stop_alloc(inner: &Inner, id: &str) -> Result<Response, HttpError> {
    let result = inner.store.try_write(|txn| {
        let Some(alloc) = txn.state.allocs.get(id).cloned() else {
            return Err(HttpError::new(StatusCode::NOT_FOUND, "alloc not found"));
        };
        txn.update_alloc(id, true, |a| {
            a.desired_status = "stop".into();
            a.desired_description = "alloc is being migrated".into();
        });
        let job =
            txn.state.job(&alloc.namespace, &alloc.job_id).map(|r| r.job.clone()).unwrap_or_else(|| alloc.job.clone());
        let eval = new_eval(
            &alloc.namespace,
            &alloc.job_id,
            job["Type"].as_str().unwrap_or("service"),
            job["Priority"].as_i64().unwrap_or(50),
            job["JobModifyIndex"].as_u64().unwrap_or(0),
            "alloc-stop",
        );
        let eval_id = eval.id.clone();
        txn.put_eval(eval);
        Ok(json!({ "EvalID": eval_id, "Index": txn.index }))
    })?;
    let index = result["Index"].as_u64().unwrap_or(0);
    Ok(write_response(&result, index))
}

fn node_stub(inner: &Inner) -> Value {
    let node = &inner.node;
    json!({
        "Address": "127.0.0.1",
        "ID": node.id,
        "Attributes": null,
        "Datacenter": node.datacenter,
        "Name": node.name,
        "NodeClass": node.class,
        "NodePool": node.pool,
        "Version": NOMAD_VERSION,
        "Drain": false,
        "SchedulingEligibility": "eligible",
        "Status": "ready",
        "StatusDescription": "",
        "Drivers": { "docker": { "Detected": true, "Healthy": true, "HealthDescription": "Healthy", "Attributes": null, "UpdateTime": null } },
        "NodeResources": null,
        "ReservedResources": null,
        "LastDrain": null,
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })
}

fn agent_self(inner: &Inner) -> Value {
    let node = &inner.node;
    let host_volumes: Vec<Value> = inner
        .config
        .host_volumes
        .iter()
        .map(|(name, path)| json!({ "Name": name, "Path": path.display().to_string(), "ReadOnly": false }))
        .collect();
    json!({
        "config": {
            "Region": "global",
            "Datacenter": node.datacenter,
            "NodeName": node.name,
            "Version": { "Version": NOMAD_VERSION, "VersionPrerelease": "", "VersionMetadata": "", "Revision": "" },
            "ACL": { "Enabled": inner.config.acl_token.is_some() },
            "Client": { "Enabled": true, "HostVolumes": host_volumes, "NodePool": node.pool },
            "Server": { "Enabled": true },
        },
        "member": {
            "Name": format!("{}.global", node.name),
            "Addr": "127.0.0.1",
            "Port": 4648,
            "Tags": { "region": "global", "dc": node.datacenter, "build": NOMAD_VERSION, "role": "nomad" },
            "Status": "alive",
        },
        "stats": {
            "nomad": { "leader": "true", "server": "true", "known_regions": "1", "leader_addr": "127.0.0.1:4647" },
            "client": { "node_id": node.id, "known_servers": "127.0.0.1:4647" },
        },
    })
}

/// A streaming response (logs, events) with its content type; status 200.
pub(crate) fn streaming_response(body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
