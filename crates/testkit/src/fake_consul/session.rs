//! `/v1/session/*`: Consul's session endpoints (`agent/session_endpoint.go` and the server's
//! `agent/consul/session_endpoint.go`) — create with Consul's body decoding and defaults
//! (`LockDelay` 15 s as a Go duration or nanoseconds, below 1000 read as seconds; node checks
//! `serfHealth` unless `Checks`/`NodeChecks` say otherwise), renew, destroy, info, list and
//! per-node lists — and the reaper that invalidates TTL sessions nobody renewed.
//!
//! Deviation knobs, both in `FakeConsulConfig`: the lowest TTL accepted (`ttl_min`, Consul's
//! `session_ttl_min`, 10 s by default) may be set lower so tests expire sessions quickly, and
//! expiry comes `ttl_multiplier` × TTL after the last renew (Consul's `SessionTTLMultiplier`,
//! 2, by default). Invalidation releases or deletes the held keys and starts their lock-delay.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::Inner;
use super::duration::{go_duration_string, nanos_to_duration, parse_go_duration};
use super::http::{Ctx, HttpError, Lookup, Meta, blocking, json_response, read_body};
use super::state::{Behavior, ServiceCheck, Session};

/// Consul's `lockDelayMinThreshold`: a smaller lock-delay is taken as seconds.
const LOCK_DELAY_MIN_THRESHOLD: i64 = 1000;
/// The agent's default lock-delay.
const DEFAULT_LOCK_DELAY: i64 = 15_000_000_000;
/// The check every node has, and sessions use by default.
const SERF_CHECK: &str = "serfHealth";
/// How large a session-create body may be (Consul sets no limit; this only bounds memory).
const MAX_BODY: usize = 1 << 20;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceCheckJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    namespace: &'a str,
}

/// `structs.Session` on the wire, fields in Go's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    node: &'a str,
    /// Integer nanoseconds, while `TTL` stays the string sent.
    lock_delay: i64,
    behavior: &'static str,
    #[serde(rename = "TTL")]
    ttl: &'a str,
    node_checks: Option<&'a [String]>,
    service_checks: Option<Vec<ServiceCheckJson<'a>>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    checks: &'a [String],
    create_index: u64,
    modify_index: u64,
}

pub(crate) fn session_json(session: &Session) -> SessionJson<'_> {
    SessionJson {
        id: &session.id,
        name: &session.name,
        node: &session.node,
        lock_delay: session.lock_delay_nanos,
        behavior: session.behavior.as_str(),
        ttl: &session.ttl,
        node_checks: session.node_checks.as_deref(),
        service_checks: session
            .service_checks
            .as_ref()
            .map(|checks| checks.iter().map(|c| ServiceCheckJson { id: &c.id, namespace: &c.namespace }).collect()),
        checks: &session.checks,
        create_index: session.create_index,
        modify_index: session.modify_index,
    }
}

/// A create request after decoding, before the server validates it.
struct Request {
    name: String,
    node: String,
    lock_delay_nanos: i64,
    behavior: String,
    ttl: String,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheck>>,
    /// `None` is Go's nil: `"Checks": null` (length zero, like an empty list).
    checks: Option<Vec<String>>,
}

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

fn decode_error(message: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(format!("Request decode failed: {message}"))
}

fn mismatch(value: &Value, field: &str, go_type: &str) -> HttpError {
    decode_error(format!(
        "json: cannot unmarshal {} into Go struct field Session.{field} of type {go_type}",
        kind(value)
    ))
}

/// A JSON string field; `null` leaves the default, as Go's decoder does.
fn string_field(value: &Value, field: &str, target: &mut String) -> Result<(), HttpError> {
    match value {
        Value::Null => Ok(()),
        Value::String(text) => {
            *target = text.clone();
            Ok(())
        }
        other => Err(mismatch(other, field, "string")),
    }
}

fn strings_field(value: &Value, field: &str) -> Result<Option<Vec<String>>, HttpError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| mismatch(item, field, "string")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(mismatch(other, field, "[]string")),
    }
}

/// Decode the body into the agent's defaults, as `lib.DecodeJSON` into `structs.Session` does:
/// field names match case-insensitively, unknown fields are ignored (`Session.UnmarshalJSON`
/// decodes through an alias), and `LockDelay` takes a Go duration string or nanoseconds.
fn decode(body: &[u8], default_node: &str) -> Result<Request, HttpError> {
    let mut request = Request {
        name: String::new(),
        node: default_node.to_owned(),
        lock_delay_nanos: DEFAULT_LOCK_DELAY,
        behavior: Behavior::Release.as_str().to_owned(),
        ttl: String::new(),
        node_checks: Some(vec![SERF_CHECK.to_owned()]),
        service_checks: None,
        checks: Some(vec![SERF_CHECK.to_owned()]),
    };
    if body.is_empty() {
        return Ok(request);
    }
    let value: Value = serde_json::from_slice(body).map_err(decode_error)?;
    let fields = match value {
        Value::Null => return Ok(request),
        Value::Object(fields) => fields,
        other => {
            return Err(decode_error(format!(
                "json: cannot unmarshal {} into Go value of type structs.Session",
                kind(&other)
            )));
        }
    };
    for (name, value) in &fields {
        match name.to_lowercase().as_str() {
            "name" => string_field(value, "Name", &mut request.name)?,
            "node" => string_field(value, "Node", &mut request.node)?,
            "behavior" => string_field(value, "Behavior", &mut request.behavior)?,
            "ttl" => string_field(value, "TTL", &mut request.ttl)?,
            "id" => string_field(value, "ID", &mut String::new())?,
            "lockdelay" => {
                let nanos = match value {
                    Value::Null => continue,
                    Value::String(text) => parse_go_duration(text).map_err(decode_error)?,
                    Value::Number(number) => number.as_f64().unwrap_or(0.0) as i64,
                    // Neither: Consul's decoder leaves zero, which then passes the threshold.
                    _ => 0,
                };
                request.lock_delay_nanos =
                    if nanos < LOCK_DELAY_MIN_THRESHOLD { nanos.saturating_mul(1_000_000_000) } else { nanos };
            }
            "nodechecks" => request.node_checks = strings_field(value, "NodeChecks")?,
            "checks" => request.checks = strings_field(value, "Checks")?,
            "servicechecks" => {
                request.service_checks = match value {
                    Value::Null => None,
                    Value::Array(items) => Some(
                        items
                            .iter()
                            .map(|item| {
                                let Value::Object(check) = item else {
                                    return Err(mismatch(item, "ServiceChecks", "structs.ServiceCheck"));
                                };
                                let mut service_check = ServiceCheck { id: String::new(), namespace: String::new() };
                                for (key, value) in check {
                                    match key.to_lowercase().as_str() {
                                        "id" => string_field(value, "ServiceChecks.ID", &mut service_check.id)?,
                                        "namespace" => string_field(
                                            value,
                                            "ServiceChecks.Namespace",
                                            &mut service_check.namespace,
                                        )?,
                                        _ => {}
                                    }
                                }
                                Ok(service_check)
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    other => return Err(mismatch(other, "ServiceChecks", "[]structs.ServiceCheck")),
                };
            }
            _ => {}
        }
    }
    Ok(request)
}

/// `fixupEmptySessionChecks`: `Checks` predates `NodeChecks`; an empty `Checks` means a session
/// tied to no check, the default `Checks` defers to `NodeChecks`, and an empty `NodeChecks` drops
/// the default `Checks`.
fn fixup_empty_checks(request: &mut Request) {
    let checks = request.checks.as_deref().unwrap_or_default();
    if checks.is_empty() {
        request.node_checks = Some(Vec::new());
        return;
    }
    if checks.len() == 1 && checks[0] == SERF_CHECK {
        request.checks = None;
        return;
    }
    if request.node_checks.as_deref().is_none_or(<[String]>::is_empty) {
        request.checks = None;
    }
}

/// `PUT /v1/session/create`.
pub(crate) async fn create(ctx: &Ctx<'_>, body: Body) -> Result<Response, HttpError> {
    check_datacenter(ctx)?;
    let body = read_body(body, MAX_BODY).await.map_err(|_| decode_error("request body too large"))?;
    let config = &ctx.inner.config;
    let mut request = decode(&body, &config.node_name)?;
    fixup_empty_checks(&mut request);
    // `Session.Apply`, in its order: node, token, behavior, TTL; then the store checks the node
    // and the checks.
    if request.node.is_empty() {
        return Err(HttpError::internal("Must provide Node"));
    }
    let authz = ctx.authz()?;
    authz.require("session", "write", &request.node)?;
    let behavior = match request.behavior.as_str() {
        "" | "release" => Behavior::Release,
        "delete" => Behavior::Delete,
        other => return Err(HttpError::internal(format!("Invalid Behavior setting '{other}'"))),
    };
    let mut ttl = Duration::ZERO;
    if !request.ttl.is_empty() {
        let nanos = parse_go_duration(&request.ttl)
            .map_err(|e| HttpError::internal(format!("Session TTL '{}' invalid: {e}", request.ttl)))?;
        let (min, max) = (duration_nanos(config.ttl_min), duration_nanos(config.ttl_max));
        if nanos != 0 && (nanos < min || nanos > max) {
            return Err(HttpError::internal(format!(
                "Invalid Session TTL '{nanos}', must be between [{}={}]",
                go_duration_string(min),
                go_duration_string(max)
            )));
        }
        ttl = nanos_to_duration(nanos);
    }
    let session = Session {
        id: uuid::Uuid::new_v4().to_string(),
        name: request.name,
        node: request.node,
        lock_delay_nanos: request.lock_delay_nanos,
        behavior,
        ttl: request.ttl,
        ttl_duration: ttl,
        node_checks: request.node_checks,
        service_checks: request.service_checks,
        checks: request.checks.unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    };
    let id = session.id.clone();
    let expires = expiry(ctx.inner, ttl);
    ctx.inner.store.write(|txn| txn.session_create(session, expires)).map_err(HttpError::internal)?;
    #[derive(Serialize)]
    struct Created {
        #[serde(rename = "ID")]
        id: String,
    }
    Ok(json_response(&Created { id }, ctx.query, None))
}

fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// When a TTL session invalidates unless renewed: `ttl_multiplier` × TTL from now (capped at a
/// year, so that no configuration can overflow the clock).
fn expiry(inner: &Inner, ttl: Duration) -> Option<Instant> {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let after = ttl.checked_mul(inner.config.ttl_multiplier.max(1)).unwrap_or(FAR).min(FAR);
    (!ttl.is_zero()).then(|| Instant::now() + after)
}

/// Session writes are not forwarded anywhere: another datacenter is unreachable.
fn check_datacenter(ctx: &Ctx<'_>) -> Result<(), HttpError> {
    match ctx.query.get("dc") {
        Some(dc) if !dc.is_empty() && dc != ctx.inner.config.datacenter => {
            Err(HttpError::internal("No path to datacenter"))
        }
        _ => Ok(()),
    }
}

fn session_id<'a>(ctx: &Ctx<'a>, prefix: &str) -> Result<&'a str, HttpError> {
    let id = ctx.path.strip_prefix(prefix).unwrap_or_default();
    if id.is_empty() {
        return Err(HttpError::bad_request("Missing session"));
    }
    Ok(id)
}

/// `PUT /v1/session/destroy/<id>`: `true`, also for a session that does not exist.
pub(crate) fn destroy(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    check_datacenter(ctx)?;
    let id = session_id(ctx, "/v1/session/destroy/")?;
    let authz = ctx.authz()?;
    let node = ctx.inner.store.read(|state| state.session(id).map(|s| s.node.clone()));
    if let Some(node) = node {
        authz.require("session", "write", &node)?;
        let now = Instant::now();
        // Gone meanwhile (expired): nothing to apply, as for an unknown ID.
        let _ = ctx.inner.store.try_write(|txn| if txn.session_destroy(id, now) { Ok(()) } else { Err(()) });
    }
    Ok(json_response(&true, ctx.query, None))
}

/// `PUT /v1/session/renew/<id>`: reset the TTL timer; the session in a one-element array.
pub(crate) fn renew(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    ctx.options()?;
    let id = session_id(ctx, "/v1/session/renew/")?;
    let authz = ctx.authz()?;
    let Some(session) = ctx.inner.store.read(|state| state.session(id).cloned()) else {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("Session id '{id}' not found")));
    };
    authz.require("session", "write", &session.node)?;
    if let Some(expires) = expiry(ctx.inner, session.ttl_duration) {
        // A renew is not a raft write: no index moves. It may race the reaper; if the session
        // expired meanwhile the timer is simply not set again.
        ctx.inner.store.local(|txn| {
            if txn.state.session(id).is_some() {
                txn.reset_timer(id, expires);
            }
        });
    }
    Ok(json_response(&[session_json(&session)], ctx.query, None))
}

/// The sessions a query may see: all of them, or none (with the filtered flag) for the
/// anonymous token.
fn visible(sessions: Vec<Session>, can_read: bool) -> (Vec<Session>, bool) {
    if can_read || sessions.is_empty() { (sessions, false) } else { (Vec::new(), true) }
}

/// `GET /v1/session/info/<id>`: a one-element array, or `[]`.
pub(crate) async fn info(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    let id = session_id(ctx, "/v1/session/info/")?;
    let can_read = ctx.authz()?.can_read();
    let (index, (sessions, filtered)) = blocking(ctx.inner, &options, |state| {
        let found: Vec<Session> = state.session(id).cloned().into_iter().collect();
        let lookup = if found.is_empty() { Lookup::NotFound } else { Lookup::Found };
        (state.sessions_index, lookup, visible(found, can_read))
    })
    .await;
    let body: Vec<SessionJson<'_>> = sessions.iter().map(session_json).collect();
    Ok(json_response(&body, ctx.query, Some(&Meta { index, filtered })))
}

/// `GET /v1/session/list`.
pub(crate) async fn list(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    let can_read = ctx.authz()?.can_read();
    let (index, (sessions, filtered)) = blocking(ctx.inner, &options, |state| {
        (state.sessions_index, Lookup::Found, visible(state.sessions.values().cloned().collect(), can_read))
    })
    .await;
    let body: Vec<SessionJson<'_>> = sessions.iter().map(session_json).collect();
    Ok(json_response(&body, ctx.query, Some(&Meta { index, filtered })))
}

/// `GET /v1/session/node/<node>` (node names compare case-insensitively).
pub(crate) async fn node(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    let node = ctx.path.strip_prefix("/v1/session/node/").unwrap_or_default();
    if node.is_empty() {
        return Err(HttpError::bad_request("Missing node name"));
    }
    let can_read = ctx.authz()?.can_read();
    let (index, (sessions, filtered)) = blocking(ctx.inner, &options, |state| {
        let of_node = state.sessions.values().filter(|s| s.node.eq_ignore_ascii_case(node)).cloned().collect();
        (state.sessions_index, Lookup::Found, visible(of_node, can_read))
    })
    .await;
    let body: Vec<SessionJson<'_>> = sessions.iter().map(session_json).collect();
    Ok(json_response(&body, ctx.query, Some(&Meta { index, filtered })))
}

/// Invalidate `id` now, as its TTL timer would; false if there is no such session.
pub(crate) fn invalidate(inner: &Inner, id: &str) -> bool {
    let now = Instant::now();
    inner.store.try_write(|txn| if txn.session_destroy(id, now) { Ok(()) } else { Err(()) }).is_ok()
}

/// The TTL reaper: sleeps until the earliest expiry (or until a timer changes) and invalidates
/// each expired session in its own write, as Consul's leader does. Stops at shutdown.
pub(crate) async fn reap(inner: Arc<Inner>) {
    let mut timers = inner.store.subscribe_timers();
    loop {
        timers.borrow_and_update();
        let now = Instant::now();
        let due: Vec<String> = inner
            .store
            .read(|state| state.expires.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect());
        for id in due {
            // Renewed since the read: leave it.
            let _ = inner.store.try_write(|txn| {
                let still_due = txn.state.expires.get(&id).is_some_and(|at| *at <= now);
                if still_due && txn.session_destroy(&id, now) { Ok(()) } else { Err(()) }
            });
        }
        // With no timer, sleep "forever": a new timer wakes the loop through `timers`.
        let next = inner.store.read(|state| state.next_expiry()).unwrap_or_else(|| now + Duration::from_secs(86_400));
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = timers.changed() => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}
