//! [`ConsulClient`]: the subset of Consul's HTTP API jobforge uses — KV (with CAS and locks),
//! sessions, service health — over reqwest, with blocking queries.
//!
//! It keeps no state between calls; index bookkeeping for blocking loops lives in [`Blocking`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

/// Where Consul is and how to talk to it.
#[derive(Clone)]
pub struct ConsulConfig {
    pub address: Url,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Bound of a non-blocking request.
    pub timeout: Duration,
}

impl fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("address", &self.address.as_str())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ConsulConfig {
    pub fn new(address: Url) -> Self {
        ConsulConfig { address, token: None, ca_file: None, timeout: Duration::from_secs(30) }
    }

    /// `CONSUL_HTTP_ADDR` (default `http://127.0.0.1:8500`; a bare `host:port` means http),
    /// `CONSUL_HTTP_TOKEN`, `CONSUL_CACERT`.
    pub fn from_env() -> Result<Self, ConsulError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let address = var("CONSUL_HTTP_ADDR").unwrap_or_else(|| "http://127.0.0.1:8500".into());
        let mut config = ConsulConfig::new(parse_address(&address)?);
        config.token = var("CONSUL_HTTP_TOKEN");
        config.ca_file = var("CONSUL_CACERT").map(PathBuf::from);
        Ok(config)
    }
}

/// An address as people write it: `http://host:8500`, or `host:8500` meaning http.
pub fn parse_address(text: &str) -> Result<Url, ConsulError> {
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    Url::parse(&with_scheme).map_err(|e| ConsulError::Config(format!("Consul address {text:?}: {e}")))
}

/// What went wrong talking to Consul. Messages carry Consul's own (plain-text) words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsulError {
    #[error("invalid Consul configuration: {0}")]
    Config(String),
    #[error("Consul denied the request: {0}")]
    PermissionDenied(String),
    #[error("Consul refused the request: {0}")]
    BadRequest(String),
    #[error("the value is too large for Consul: {0}")]
    TooLarge(String),
    #[error("Consul failed the request (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("cannot reach Consul at {address}: {message}")]
    Unreachable { address: String, message: String },
    #[error("cannot read {what} from Consul's answer: {message}")]
    Decode { what: String, message: String },
}

impl ConsulError {
    /// Worth retrying: Consul could not be reached, or has no leader right now.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConsulError::Unreachable { .. })
            || matches!(self, ConsulError::Server { status, .. } if *status >= 500)
    }
}

/// The headers of a read: the index to block on next, and the leader's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryMeta {
    pub index: u64,
    pub known_leader: bool,
    pub last_contact_ms: u64,
}

/// A blocking query's parameters, and the index rules of Consul's docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub index: u64,
    pub wait: Duration,
}

impl Blocking {
    pub fn new(wait: Duration) -> Self {
        Blocking { index: 0, wait }
    }

    /// The index to block on after an answer with `returned`: reset to 0 when it went
    /// backwards (a snapshot restore, a reaped tombstone), and never 0 after the first call.
    pub fn advance(&mut self, returned: u64) {
        self.index = if returned < self.index { 0 } else { returned.max(1) };
    }
}

/// One KV entry, value decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Bytes,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    /// The session holding the key's lock.
    pub session: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireEntry {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    session: Option<String>,
}

impl WireEntry {
    fn decode(self) -> Result<KvEntry, ConsulError> {
        let value = match self.value {
            Some(text) => STANDARD.decode(text).map_err(|e| ConsulError::Decode {
                what: format!("the value of {}", self.key),
                message: e.to_string(),
            })?,
            None => Vec::new(),
        };
        Ok(KvEntry {
            key: self.key,
            value: value.into(),
            flags: self.flags,
            create_index: self.create_index,
            modify_index: self.modify_index,
            lock_index: self.lock_index,
            session: self.session.filter(|s| !s.is_empty()),
        })
    }
}

/// `PUT /v1/session/create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionRequest {
    pub name: String,
    /// `"15s"`; Consul accepts 10s to 24h.
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// `release` (default) or `delete`: what happens to held keys when the session ends.
    pub behavior: String,
    /// `"15s"` by default: how long a key freed by an ended session stays un-acquirable.
    pub lock_delay: String,
    /// `[]`: a pure TTL session, not tied to the agent's node health.
    pub node_checks: Vec<String>,
}

/// A session as Consul reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SessionInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Nanoseconds.
    pub lock_delay: u64,
    pub behavior: String,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A healthy instance of a service, from `/v1/health/service/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInstance {
    pub node: String,
    /// The service's address, or the node's when the service has none.
    pub address: String,
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    node: String,
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(default)]
    address: String,
    port: u16,
}

/// A thin client; clones share the connection pool.
#[derive(Clone)]
pub struct ConsulClient {
    http: reqwest::Client,
    config: ConsulConfig,
}

/// An answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl ConsulClient {
    pub fn new(config: ConsulConfig) -> Result<Self, ConsulError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("jobforge/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| ConsulError::Config(format!("cannot read the CA file {}: {e}", path.display())))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ConsulError::Config(format!("{} is not a PEM certificate: {e}", path.display())))?;
            builder = builder.tls_certs_only([certificate]);
        }
        let http = builder.build().map_err(|e| ConsulError::Config(e.to_string()))?;
        Ok(ConsulClient { http, config })
    }

    pub fn config(&self) -> &ConsulConfig {
        &self.config
    }

    /// `GET /v1/kv/<key>`: the entry, or `None`.
    pub async fn get(
        &self,
        key: &str,
        blocking: Option<Blocking>,
    ) -> Result<(Option<KvEntry>, QueryMeta), ConsulError> {
        let answer = self.read(&format!("kv/{key}"), &[], blocking).await?;
        let meta = query_meta(&answer.headers);
        if answer.status == StatusCode::NOT_FOUND {
            return Ok((None, meta));
        }
        let entries = decode_entries(&answer.body)?;
        Ok((entries.into_iter().next(), meta))
    }

    /// `GET /v1/kv/<prefix>?recurse`: every entry under `prefix`, sorted by key (empty if none).
    pub async fn list(
        &self,
        prefix: &str,
        blocking: Option<Blocking>,
    ) -> Result<(Vec<KvEntry>, QueryMeta), ConsulError> {
        let answer = self.read(&format!("kv/{prefix}"), &[("recurse", "")], blocking).await?;
        let meta = query_meta(&answer.headers);
        if answer.status == StatusCode::NOT_FOUND {
            return Ok((Vec::new(), meta));
        }
        Ok((decode_entries(&answer.body)?, meta))
    }

    /// `GET /v1/kv/<prefix>?keys`, as a blocking query: the keys under `prefix` and the index,
    /// for waiting on changes under a prefix without reading its values.
    pub async fn watch_keys(
        &self,
        prefix: &str,
        blocking: Option<Blocking>,
    ) -> Result<(Vec<String>, QueryMeta), ConsulError> {
        let answer = self.read(&format!("kv/{prefix}"), &[("keys", "")], blocking).await?;
        let meta = query_meta(&answer.headers);
        if answer.status == StatusCode::NOT_FOUND {
            return Ok((Vec::new(), meta));
        }
        Ok((decode(&answer.body, "a key list")?, meta))
    }

    /// `GET /v1/kv/<prefix>?keys[&separator=]`: the keys under `prefix`.
    pub async fn keys(&self, prefix: &str, separator: Option<&str>) -> Result<Vec<String>, ConsulError> {
        let mut query = vec![("keys", "")];
        if let Some(separator) = separator {
            query.push(("separator", separator));
        }
        let answer = self.read(&format!("kv/{prefix}"), &query, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        decode(&answer.body, "a key list")
    }

    /// `PUT /v1/kv/<key>`: set the value. With `cas`, only if the key's ModifyIndex is that
    /// (0: only if the key does not exist). Returns whether the write happened.
    pub async fn put(&self, key: &str, value: &[u8], cas: Option<u64>) -> Result<bool, ConsulError> {
        let cas = cas.map(|index| index.to_string());
        let query: Vec<(&str, &str)> = cas.iter().map(|index| ("cas", index.as_str())).collect();
        self.write(Method::PUT, &format!("kv/{key}"), &query, Some(value)).await
    }

    /// `PUT /v1/kv/<key>?acquire=<session>`: take the key's lock (and set the value).
    pub async fn acquire(&self, key: &str, value: &[u8], session: &str) -> Result<bool, ConsulError> {
        self.write(Method::PUT, &format!("kv/{key}"), &[("acquire", session)], Some(value)).await
    }

    /// `PUT /v1/kv/<key>?release=<session>`: give the lock back (false if not the holder).
    pub async fn release(&self, key: &str, value: &[u8], session: &str) -> Result<bool, ConsulError> {
        self.write(Method::PUT, &format!("kv/{key}"), &[("release", session)], Some(value)).await
    }

    /// `DELETE /v1/kv/<key>`, optionally only at ModifyIndex `cas`.
    pub async fn delete(&self, key: &str, cas: Option<u64>) -> Result<bool, ConsulError> {
        let cas = cas.map(|index| index.to_string());
        let query: Vec<(&str, &str)> = cas.iter().map(|index| ("cas", index.as_str())).collect();
        self.write(Method::DELETE, &format!("kv/{key}"), &query, None).await
    }

    /// `DELETE /v1/kv/<prefix>?recurse`.
    pub async fn delete_tree(&self, prefix: &str) -> Result<bool, ConsulError> {
        self.write(Method::DELETE, &format!("kv/{prefix}"), &[("recurse", "")], None).await
    }

    /// `PUT /v1/session/create`: a new session's ID.
    pub async fn create_session(&self, request: &SessionRequest) -> Result<String, ConsulError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ConsulError::Decode { what: "a session".into(), message: e.to_string() })?;
        let answer =
            self.send(self.request(Method::PUT, "session/create", &[]).body(body), self.config.timeout).await?;
        let answer = self.check(answer)?;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        Ok(decode::<Created>(&answer.body, "a new session")?.id)
    }

    /// `PUT /v1/session/renew/<id>`: `None` when Consul no longer knows the session (it expired
    /// or was destroyed: its locks are gone).
    pub async fn renew_session(&self, id: &str) -> Result<Option<SessionInfo>, ConsulError> {
        let answer =
            self.send(self.request(Method::PUT, &format!("session/renew/{id}"), &[]), self.config.timeout).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let answer = self.check(answer)?;
        Ok(decode::<Vec<SessionInfo>>(&answer.body, "a renewed session")?.into_iter().next())
    }

    /// `PUT /v1/session/destroy/<id>`: end the session, releasing (or deleting) its keys.
    pub async fn destroy_session(&self, id: &str) -> Result<(), ConsulError> {
        let answer =
            self.send(self.request(Method::PUT, &format!("session/destroy/{id}"), &[]), self.config.timeout).await?;
        self.check(answer).map(|_| ())
    }

    /// `GET /v1/session/info/<id>`: `None` for an unknown session.
    pub async fn session_info(&self, id: &str) -> Result<Option<SessionInfo>, ConsulError> {
        let answer = self.read(&format!("session/info/{id}"), &[], None).await?;
        let answer = self.check(answer)?;
        Ok(decode::<Vec<SessionInfo>>(&answer.body, "a session")?.into_iter().next())
    }

    /// `GET /v1/health/service/<name>?passing`: instances whose every check passes.
    pub async fn healthy_instances(&self, name: &str) -> Result<Vec<ServiceInstance>, ConsulError> {
        let answer = self.read(&format!("health/service/{name}"), &[("passing", "")], None).await?;
        let answer = self.check(answer)?;
        let entries: Vec<HealthEntry> = decode(&answer.body, "service health")?;
        Ok(entries
            .into_iter()
            .map(|entry| ServiceInstance {
                address: if entry.service.address.is_empty() { entry.node.address } else { entry.service.address },
                node: entry.node.node,
                port: entry.service.port,
            })
            .collect())
    }

    /// `GET /v1/status/leader`: the leader's address, "" without one.
    pub async fn leader(&self) -> Result<String, ConsulError> {
        let answer = self.read("status/leader", &[], None).await?;
        let answer = self.check(answer)?;
        decode(&answer.body, "the leader's address")
    }

    fn request(&self, method: Method, path: &str, query: &[(&str, &str)]) -> RequestBuilder {
        let mut url = self.config.address.clone();
        url.set_path(&format!("/v1/{path}"));
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                // Consul reads flags like `recurse` by presence: send them bare.
                if value.is_empty() {
                    pairs.append_key_only(name);
                } else {
                    pairs.append_pair(name, value);
                }
            }
        }
        let mut builder = self.http.request(method, url);
        if let Some(token) = &self.config.token
            && let Ok(mut value) = HeaderValue::from_str(token)
        {
            value.set_sensitive(true);
            builder = builder.header("X-Consul-Token", value);
        }
        builder
    }

    /// A GET, blocking when asked (the client-side timeout then allows for Consul's jitter).
    async fn read(
        &self,
        path: &str,
        query: &[(&str, &str)],
        blocking: Option<Blocking>,
    ) -> Result<Answer, ConsulError> {
        let mut query: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut timeout = self.config.timeout;
        if let Some(blocking) = blocking.filter(|b| b.index > 0) {
            query.push(("index", blocking.index.to_string()));
            // Consul reads `wait=0` as "the default" (5 minutes): a near deadline waits 1 ms.
            query.push(("wait", format!("{}ms", blocking.wait.as_millis().max(1))));
            timeout = blocking.wait + blocking.wait / 16 + self.config.timeout;
        }
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self.send(self.request(Method::GET, path, &pairs), timeout).await?;
        if answer.status == StatusCode::NOT_FOUND || answer.status.is_success() {
            return Ok(answer);
        }
        Err(error_of(answer))
    }

    /// A PUT or DELETE answered by Consul's bare `true`/`false`.
    async fn write(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<bool, ConsulError> {
        let mut builder = self.request(method, path, query);
        if let Some(body) = body {
            builder = builder.body(body.to_vec());
        }
        let answer = self.check(self.send(builder, self.config.timeout).await?)?;
        decode(&answer.body, "a write result")
    }

    async fn send(&self, builder: RequestBuilder, timeout: Duration) -> Result<Answer, ConsulError> {
        let response = builder.timeout(timeout).send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        tracing::trace!(status = status.as_u16(), "consul answered");
        Ok(Answer { status, headers, body })
    }

    fn check(&self, answer: Answer) -> Result<Answer, ConsulError> {
        if answer.status.is_success() { Ok(answer) } else { Err(error_of(answer)) }
    }

    fn unreachable(&self, error: &reqwest::Error) -> ConsulError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message = cause.to_string();
            source = cause.source();
        }
        ConsulError::Unreachable { address: self.config.address.to_string(), message }
    }
}

fn error_of(answer: Answer) -> ConsulError {
    let text: String = String::from_utf8_lossy(&answer.body).trim().chars().take(500).collect();
    match answer.status.as_u16() {
        400 => ConsulError::BadRequest(text),
        403 => ConsulError::PermissionDenied(text),
        413 => ConsulError::TooLarge(text),
        status => ConsulError::Server { status, message: text },
    }
}

fn query_meta(headers: &HeaderMap) -> QueryMeta {
    let number = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    QueryMeta {
        index: number("x-consul-index").unwrap_or(0),
        known_leader: headers.get("x-consul-knownleader").is_some_and(|v| v == "true"),
        last_contact_ms: number("x-consul-lastcontact").unwrap_or(0),
    }
}

fn decode_entries(body: &[u8]) -> Result<Vec<KvEntry>, ConsulError> {
    decode::<Vec<WireEntry>>(body, "KV entries")?.into_iter().map(WireEntry::decode).collect()
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ConsulError> {
    serde_json::from_slice(body).map_err(|e| ConsulError::Decode { what: what.into(), message: e.to_string() })
}

#[cfg(test)]
mod tests;
