//! The fake's HTTP edge, shaped like Consul's agent (`agent/http.go`, `http_register.go`): the
//! route table with Go `ServeMux` semantics (subtree patterns, the redirect to the slash form),
//! allowed methods (405 `method X not allowed`), query parsing where a parameter's presence is
//! what counts, the common query options (`dc`, `stale`/`consistent`, `index`/`wait`), the
//! blocking-query loop, the response headers, and plain-text errors.
//!
//! Endpoints live in `kv`, `session` and `catalog`; this module dispatches to them and never
//! touches the store except through the blocking loop's read. Blocking queries wake on the
//! store's watch channel (no polling) and follow `agent/blockingquery/blockingquery.go`: no
//! index means no blocking; otherwise return as soon as the reported index passes the client's,
//! or at `wait` (default 5 m, cap 10 m, plus up to wait/16 of jitter). A requested index above
//! the current one simply blocks until then, as in Consul; resetting is the client's job.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Inner;
use super::acl::{self, Authz};
use super::duration::{nanos_to_duration, parse_go_duration};
use super::state::State as StoreState;
use crate::fake_http::Parked;

/// `DefaultQueryTime` and `MaxQueryTime` of a Consul server.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner)
}

/// A refusal: Consul's status code and plain-text body (and, for a 405, the methods allowed).
#[derive(Debug)]
pub(crate) struct HttpError {
    pub status: StatusCode,
    pub message: String,
    pub allow: Option<String>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError { status, message: message.into(), allow: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    /// An error from the RPC layer that Consul does not classify: 500 with its text.
    pub(crate) fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.message).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        response
    }
}

/// The decoded query string. As in Go's `url.Values`, a parameter may repeat; `get` gives the
/// first value and `has` only asks whether it is present (`?recurse` and `?recurse=false` both
/// mean recurse to Consul).
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
            })
            .collect();
        Query { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// Go's `url.Values.Encode`: sorted by key, query-escaped (as in `Conflicting flags: ...`).
    pub(crate) fn encode(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self.pairs.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.iter().map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v))).collect::<Vec<_>>().join("&")
    }
}

/// Go's `url.QueryEscape`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Percent-decoding of a path or query component.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
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

/// One request as the endpoints see it.
pub(crate) struct Ctx<'a> {
    pub inner: &'a Arc<Inner>,
    pub method: &'a Method,
    /// The percent-decoded path (Go's `req.URL.Path`).
    pub path: &'a str,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
}

impl Ctx<'_> {
    /// Resolve the token (only endpoints that go through an RPC do, and at that point).
    pub(crate) fn authz(&self) -> Result<Authz, HttpError> {
        acl::resolve(self.inner.config.acl_token.as_deref(), self.query, self.headers)
    }

    /// Consul's `s.parse`: `dc`, consistency flags, `wait` and `index`.
    pub(crate) fn options(&self) -> Result<QueryOptions, HttpError> {
        if let Some(dc) = self.query.get("dc").filter(|dc| !dc.is_empty())
            && dc != self.inner.config.datacenter
        {
            // A request for another datacenter is forwarded; this one knows no other.
            return Err(HttpError::internal("No path to datacenter"));
        }
        if self.query.has("stale") && self.query.has("consistent") {
            return Err(HttpError::bad_request("Cannot specify ?stale with ?consistent, conflicting semantics."));
        }
        let mut wait = Duration::ZERO;
        if let Some(text) = self.query.get("wait").filter(|w| !w.is_empty()) {
            let nanos = parse_go_duration(text).map_err(|_| HttpError::bad_request("Invalid wait time"))?;
            wait = nanos_to_duration(nanos);
        }
        let mut min_index = 0;
        if let Some(text) = self.query.get("index").filter(|i| !i.is_empty()) {
            min_index = text.parse::<u64>().map_err(|_| HttpError::bad_request("Invalid index"))?;
        }
        Ok(QueryOptions { min_index, wait })
    }
}

/// A read's blocking options.
pub(crate) struct QueryOptions {
    pub min_index: u64,
    /// As sent; zero means the default.
    pub wait: Duration,
}

impl QueryOptions {
    /// `RPCQueryTimeout`: default 5 m, cap 10 m, plus `RandomStagger(wait / 16)`.
    fn timeout(&self) -> Duration {
        let wait = if self.wait.is_zero() { DEFAULT_WAIT } else { self.wait.min(MAX_WAIT) };
        let jitter_cap = (wait.as_nanos() / 16) as u64;
        let jitter = if jitter_cap > 0 { (uuid::Uuid::new_v4().as_u128() % u128::from(jitter_cap)) as u64 } else { 0 };
        wait + Duration::from_nanos(jitter)
    }
}

/// What a query function found, for the not-found rule of the blocking loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Found,
    /// Consul's `ErrNotFound`: while the thing stays missing, index changes alone do not end
    /// the wait — a query on a missing key wakes when the key appears, not on other writes.
    NotFound,
}

/// Run a blocking query. `query` gives the index to report, whether the thing was found, and
/// the answer; it runs again after every write until the index passes the client's or the
/// timeout ends. The reported index is never below 1.
pub(crate) async fn blocking<T>(
    inner: &Inner,
    options: &QueryOptions,
    query: impl Fn(&StoreState) -> (u64, Lookup, T),
) -> (u64, T) {
    let mut min_index = options.min_index;
    if min_index == 0 {
        let (index, _, value) = inner.store.read(&query);
        return (index.max(1), value);
    }
    let deadline = tokio::time::Instant::now() + options.timeout();
    let mut changes = inner.store.subscribe();
    let mut not_found = false;
    let mut parked: Option<Parked<'_>> = None;
    loop {
        changes.borrow_and_update();
        let (index, lookup, value) = inner.store.read(&query);
        if lookup == Lookup::NotFound {
            if not_found {
                min_index = index;
            }
            not_found = true;
        }
        if index > min_index || tokio::time::Instant::now() >= deadline || inner.shutdown.is_cancelled() {
            drop(parked);
            return (index.max(1), value);
        }
        if parked.is_none() {
            parked = Some(Parked::new(&inner.waiting_queries));
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = inner.shutdown.cancelled() => {}
        }
    }
}

/// The headers of a read (`setMeta`).
pub(crate) struct Meta {
    pub index: u64,
    /// ACLs hid some of the results.
    pub filtered: bool,
}

impl Meta {
    pub(crate) fn new(index: u64) -> Meta {
        Meta { index, filtered: false }
    }

    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("X-Consul-Index", HeaderValue::from(self.index.max(1)));
        headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
        headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
        if self.filtered {
            headers.insert("X-Consul-Results-Filtered-By-ACLs", HeaderValue::from_static("true"));
        }
    }
}

/// JSON as Go's encoder writes it: compact, or with `?pretty` four-space indents and a newline.
pub(crate) fn json_response(value: &impl Serialize, query: &Query, meta: Option<&Meta>) -> Response {
    let body = if query.has("pretty") {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        match value.serialize(&mut serializer) {
            Ok(()) => {
                out.push(b'\n');
                out
            }
            Err(_) => b"null".to_vec(),
        }
    } else {
        serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(meta) = meta {
        meta.apply(response.headers_mut());
    }
    response
}

/// A read that found nothing: 404 with an empty body, but the query headers.
pub(crate) fn not_found(meta: &Meta) -> Response {
    let mut response = StatusCode::NOT_FOUND.into_response();
    meta.apply(response.headers_mut());
    response
}

/// A raw body (`?raw`): served as text, never sniffed or run by a browser.
pub(crate) fn raw_response(body: Vec<u8>, meta: &Meta) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    headers.insert("Content-Security-Policy", HeaderValue::from_static("sandbox"));
    meta.apply(headers);
    response
}

/// Read a request body of at most `limit` bytes; `Err(read)` when it is longer.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, usize> {
    use futures::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    // A broken upload ends the body where it broke; the endpoint sees what arrived.
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
        if out.len() > limit {
            return Err(out.len());
        }
    }
    Ok(out)
}

/// The endpoints and the methods each accepts (`http_register.go`).
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Kv,
    SessionCreate,
    SessionDestroy,
    SessionRenew,
    SessionInfo,
    SessionNode,
    SessionList,
    HealthService,
    CatalogService,
    CatalogServices,
    StatusLeader,
    StatusPeers,
    AgentSelf,
}

/// `(pattern, endpoint, methods)`; a pattern ending in `/` matches its whole subtree.
const ROUTES: &[(&str, Endpoint, &[&str])] = &[
    ("/v1/kv/", Endpoint::Kv, &["GET", "PUT", "DELETE"]),
    ("/v1/session/create", Endpoint::SessionCreate, &["PUT"]),
    ("/v1/session/destroy/", Endpoint::SessionDestroy, &["PUT"]),
    ("/v1/session/renew/", Endpoint::SessionRenew, &["PUT"]),
    ("/v1/session/info/", Endpoint::SessionInfo, &["GET"]),
    ("/v1/session/node/", Endpoint::SessionNode, &["GET"]),
    ("/v1/session/list", Endpoint::SessionList, &["GET"]),
    ("/v1/health/service/", Endpoint::HealthService, &["GET"]),
    ("/v1/catalog/service/", Endpoint::CatalogService, &["GET"]),
    ("/v1/catalog/services", Endpoint::CatalogServices, &["GET"]),
    ("/v1/status/leader", Endpoint::StatusLeader, &["GET"]),
    ("/v1/status/peers", Endpoint::StatusPeers, &["GET"]),
    ("/v1/agent/self", Endpoint::AgentSelf, &["GET"]),
];

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = decode(parts.uri.path());
    let query = Query::parse(parts.uri.query());
    let ctx = Ctx { inner: &inner, method: &parts.method, path: &path, query: &query, headers: &parts.headers };
    let mut response = match route(&ctx, parts.uri.query(), body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // Sent on every response since Consul 1.9.
    let policy = if inner.config.acl_token.is_some() { "deny" } else { "allow" };
    response.headers_mut().insert("X-Consul-Default-ACL-Policy", HeaderValue::from_static(policy));
    response
}

async fn route(ctx: &Ctx<'_>, raw_query: Option<&str>, body: Body) -> Result<Response, HttpError> {
    let matched = ROUTES.iter().find(|(pattern, _, _)| match pattern.strip_suffix('/') {
        Some(_) => ctx.path.starts_with(pattern),
        None => ctx.path == *pattern,
    });
    let Some((_, endpoint, methods)) = matched else {
        // Go's ServeMux sends `/v1/kv` to `/v1/kv/` with a redirect.
        if ROUTES.iter().any(|(pattern, _, _)| pattern.strip_suffix('/') == Some(ctx.path)) {
            let location = match raw_query {
                Some(q) => format!("{}/?{q}", ctx.path),
                None => format!("{}/", ctx.path),
            };
            let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            return Ok(response);
        }
        // Consul's index handler: anything unknown is a bare 404.
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let allow = std::iter::once("OPTIONS").chain(methods.iter().copied()).collect::<Vec<_>>().join(",");
    if ctx.method == Method::OPTIONS {
        let mut response = StatusCode::OK.into_response();
        if let Ok(allow) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return Ok(response);
    }
    if !methods.contains(&ctx.method.as_str()) {
        let mut error =
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {} not allowed", ctx.method.as_str()));
        error.allow = Some(allow);
        return Err(error);
    }
    match endpoint {
        Endpoint::Kv => super::kv::serve(ctx, body).await,
        Endpoint::SessionCreate => super::session::create(ctx, body).await,
        Endpoint::SessionDestroy => super::session::destroy(ctx),
        Endpoint::SessionRenew => super::session::renew(ctx),
        Endpoint::SessionInfo => super::session::info(ctx).await,
        Endpoint::SessionNode => super::session::node(ctx).await,
        Endpoint::SessionList => super::session::list(ctx).await,
        Endpoint::HealthService => super::catalog::health_service(ctx).await,
        Endpoint::CatalogService => super::catalog::catalog_service(ctx).await,
        Endpoint::CatalogServices => super::catalog::catalog_services(ctx).await,
        Endpoint::StatusLeader => Ok(super::catalog::status_leader(ctx)),
        Endpoint::StatusPeers => Ok(super::catalog::status_peers(ctx)),
        Endpoint::AgentSelf => super::catalog::agent_self(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_default_to_five_minutes_cap_at_ten_and_add_at_most_a_sixteenth() {
        let timeout = |wait: Duration| QueryOptions { min_index: 1, wait }.timeout();
        for _ in 0..100 {
            let default = timeout(Duration::ZERO);
            assert!(default >= DEFAULT_WAIT && default < DEFAULT_WAIT + DEFAULT_WAIT / 16, "{default:?}");
            let capped = timeout(Duration::from_secs(3600));
            assert!(capped >= MAX_WAIT && capped < MAX_WAIT + MAX_WAIT / 16, "{capped:?}");
            let short = timeout(Duration::from_millis(1600));
            assert!(short >= Duration::from_millis(1600) && short < Duration::from_millis(1700), "{short:?}");
        }
    }

    #[test]
    fn queries_decode_and_encode_like_go() {
        let query = Query::parse(Some("recurse&cas=0&acquire=a%20b&flags=&x=1+2"));
        assert!(query.has("recurse") && query.has("flags"));
        assert_eq!(query.get("acquire"), Some("a b"));
        assert_eq!(query.get("x"), Some("1 2"));
        assert_eq!(query.encode(), "acquire=a+b&cas=0&flags=&recurse=&x=1+2");
        assert_eq!(decode("/v1/kv/a%2Fb%zz%4"), "/v1/kv/a/b%zz%4");
    }
}
