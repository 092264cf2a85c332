//! [`NomadClient`]: a thin typed client for the part of Nomad's HTTP API jobforge uses, one
//! method per endpoint, each answer decoded into its [`crate::api`] type or a [`NomadError`].
//!
//! It owns the rules every request shares: the `X-Nomad-Token` header, the `namespace` and
//! `region` query parameters, blocking queries (`?index=&wait=` in the query string, whatever
//! the old OpenAPI spec says, with a client timeout that allows for Nomad's jitter), TLS with a
//! private CA, timeouts, and turning answers into errors. It must not interpret jobs (no
//! waiting for a status, no retries: the backend decides) and keeps no state between calls. The
//! token never appears in a message, a log line or a `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use jobforge_core::error_text::root_cause;

use crate::api::{
    AllocFileInfo, AllocListStub, Allocation, DeregisterResponse, Evaluation, JobInfo, JobListStub, JobSummary,
    LogType, RegisterResponse,
};
use crate::error::NomadError;
use crate::job::RegisterRequest;
use crate::logs::LogStream;

/// Where Nomad's own CLI looks when `NOMAD_ADDR` is not set.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:4646";

/// The time a non-blocking request may take, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const USER_AGENT: &str = concat!("jobforge-nomad/", env!("CARGO_PKG_VERSION"));
const TOKEN_HEADER: &str = "X-Nomad-Token";
const INDEX_HEADER: &str = "X-Nomad-Index";
const KNOWN_LEADER_HEADER: &str = "X-Nomad-KnownLeader";
const LAST_CONTACT_HEADER: &str = "X-Nomad-LastContact";

/// How to reach Nomad. `Debug` shows whether a token is set, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct NomadConfig {
    /// The HTTP API's base, e.g. `http://127.0.0.1:4646` (a path prefix is kept).
    pub address: Url,
    /// An ACL token's secret ID, sent as `X-Nomad-Token`.
    pub token: Option<String>,
    /// Sent as `?namespace=` on every request; Nomad's default is `default`.
    pub namespace: Option<String>,
    /// Sent as `?region=` on every request.
    pub region: Option<String>,
    /// A PEM file of the CA certificates to trust for `https` (instead of the system's, as
    /// Nomad's own CLI does with `NOMAD_CACERT`).
    pub ca_file: Option<PathBuf>,
    /// The time a non-blocking request may take, the time to connect, and the longest silence
    /// on a log stream. Blocking queries get their wait on top.
    pub timeout: Duration,
}

impl fmt::Debug for NomadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadConfig")
            .field("address", &display_address(&self.address))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .field("region", &self.region)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl NomadConfig {
    /// Nomad at `address`, with no token, namespace, region or CA file, and [`DEFAULT_TIMEOUT`].
    pub fn new(address: Url) -> NomadConfig {
        NomadConfig { address, token: None, namespace: None, region: None, ca_file: None, timeout: DEFAULT_TIMEOUT }
    }

    /// From the environment variables Nomad's CLI reads: `NOMAD_ADDR` (default
    /// [`DEFAULT_ADDRESS`]), `NOMAD_TOKEN`, `NOMAD_NAMESPACE`, `NOMAD_REGION`, `NOMAD_CACERT`.
    /// An empty variable counts as unset, as it does for Nomad.
    pub fn from_env() -> Result<NomadConfig, NomadError> {
        NomadConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`NomadConfig::from_env`], reading each variable through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<NomadConfig, NomadError> {
        let var = |name: &str| lookup(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        let address = match var("NOMAD_ADDR") {
            Some(address) => parse_address(&address).map_err(|why| NomadError::Config(format!("NOMAD_ADDR {why}")))?,
            None => parse_address(DEFAULT_ADDRESS).map_err(NomadError::Config)?,
        };
        Ok(NomadConfig {
            address,
            token: var("NOMAD_TOKEN"),
            namespace: var("NOMAD_NAMESPACE"),
            region: var("NOMAD_REGION"),
            ca_file: var("NOMAD_CACERT").map(PathBuf::from),
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

/// `http(s)://host:port[/prefix]`; `host:port` alone means `http://host:port`.
fn parse_address(text: &str) -> Result<Url, String> {
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    let mut url = Url::parse(&with_scheme).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{text:?} is not an http:// or https:// address"));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The address as people write it, for messages: without credentials or a trailing `/`.
fn display_address(address: &Url) -> String {
    let mut shown = address.clone();
    // Only fails for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.as_str().trim_end_matches('/').to_owned()
}

/// What Nomad's headers say about a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Nomad-Index`: pass it as [`Blocking::index`] to wait for the next change.
    pub index: u64,
    /// `X-Nomad-KnownLeader`: the server answering knew of a cluster leader.
    pub known_leader: bool,
    /// `X-Nomad-LastContact`: milliseconds since the answering server heard from the leader.
    pub last_contact_ms: u64,
}

/// A blocking query: return once Nomad's index passes `index`, or after `wait` (Nomad caps it at
/// 5 minutes and adds up to `wait/16` of jitter). A return does not promise a change. Index 0
/// returns at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub index: u64,
    pub wait: Duration,
}

/// A handle on one Nomad cluster. Cheap to clone; clones share their connections.
#[derive(Clone)]
pub struct NomadClient {
    http: reqwest::Client,
    config: Arc<NomadConfig>,
    /// The token as a header value, marked sensitive so that no debug output shows it.
    token: Option<HeaderValue>,
    /// [`display_address`] of the configured address.
    shown_address: String,
}

impl fmt::Debug for NomadClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadClient").field("config", &self.config).finish_non_exhaustive()
    }
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl NomadClient {
    /// A client for `config`. Reads the CA file, if any, now: a bad one is a
    /// [`NomadError::Config`] here rather than a failure on every request.
    pub fn new(config: NomadConfig) -> Result<NomadClient, NomadError> {
        if !matches!(config.address.scheme(), "http" | "https") {
            return Err(NomadError::Config(format!(
                "{} is not an http:// or https:// address",
                display_address(&config.address)
            )));
        }
        // No overall timeout on the client: each request sets its own, since a blocking query
        // must outlast its wait and a log stream has no end.
        let mut builder = reqwest::Client::builder().user_agent(USER_AGENT).connect_timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| NomadError::Config(format!("cannot read the CA file {}: {error}", path.display())))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                NomadError::Config(format!("the CA file {} is not PEM certificates: {error}", path.display()))
            })?;
            if certificates.is_empty() {
                return Err(NomadError::Config(format!("the CA file {} holds no certificate", path.display())));
            }
            // Only these roots, as Nomad's CLI does: a cluster's CA is private, and trusting the
            // public roots as well would accept any certificate a public CA issued for the name.
            builder = builder.tls_certs_only(certificates);
        }
        let http = builder
            .build()
            .map_err(|error| NomadError::Config(format!("cannot set up an HTTP client: {}", root_cause(&error))))?;
        let token = match &config.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(token).map_err(|_| {
                    NomadError::Config("the Nomad token holds characters not allowed in an HTTP header".to_owned())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let shown_address = display_address(&config.address);
        Ok(NomadClient { http, config: Arc::new(config), token, shown_address })
    }

    pub fn config(&self) -> &NomadConfig {
        &self.config
    }

    /// `PUT /v1/jobs`: register (create or update) a job. With `enforce_index`, a lost
    /// check-and-set is [`NomadError::IndexConflict`]; a job Nomad finds invalid is
    /// [`NomadError::InvalidJob`].
    pub async fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse, NomadError> {
        let builder = self.request(Method::PUT, &["jobs"])?.json(request);
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode(&answer, "a register response")
    }

    /// `GET /v1/job/:id`: the job, or `None` if Nomad has no such job (never registered, or
    /// purged, or garbage-collected).
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>, NomadError> {
        self.get_optional(&["job", id], "a job").await
    }

    /// `GET /v1/jobs?prefix=`: the jobs whose ID starts with `prefix` ("" for all).
    pub async fn jobs(&self, prefix: &str) -> Result<Vec<JobListStub>, NomadError> {
        let mut builder = self.request(Method::GET, &["jobs"])?;
        if !prefix.is_empty() {
            builder = builder.query(&[("prefix", prefix)]);
        }
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode_list(&answer, "a list of jobs")
    }

    /// `GET /v1/job/:id/allocations`, optionally as a blocking query. An unknown job has no
    /// allocations (an empty list, not an error). The [`QueryMeta::index`] is the one to block
    /// on next.
    pub async fn job_allocations(
        &self,
        id: &str,
        blocking: Option<Blocking>,
    ) -> Result<(Vec<AllocListStub>, QueryMeta), NomadError> {
        let mut builder = self.request(Method::GET, &["job", id, "allocations"])?;
        let mut timeout = self.config.timeout;
        if let Some(blocking) = blocking.filter(|blocking| blocking.index > 0) {
            builder = builder.query(&[("index", blocking.index.to_string()), ("wait", go_duration(blocking.wait))]);
            timeout = blocking_timeout(blocking.wait, self.config.timeout);
        }
        let answer = self.send(builder, timeout).await?;
        let allocations = self.decode_list(&answer, "a list of allocations")?;
        let meta = query_meta(&answer.headers)?;
        Ok((allocations, meta))
    }

    /// `GET /v1/allocation/:id` (the full ID); `None` if Nomad has no such allocation.
    pub async fn allocation(&self, id: &str) -> Result<Option<Allocation>, NomadError> {
        self.get_optional(&["allocation", id], "an allocation").await
    }

    /// `GET /v1/job/:id/evaluations`.
    pub async fn job_evaluations(&self, id: &str) -> Result<Vec<Evaluation>, NomadError> {
        let builder = self.request(Method::GET, &["job", id, "evaluations"])?;
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode_list(&answer, "a list of evaluations")
    }

    /// `GET /v1/evaluation/:id`; `None` if Nomad has no such evaluation.
    pub async fn evaluation(&self, id: &str) -> Result<Option<Evaluation>, NomadError> {
        self.get_optional(&["evaluation", id], "an evaluation").await
    }

    /// `GET /v1/job/:id/summary`; `None` if Nomad has no such job.
    pub async fn job_summary(&self, id: &str) -> Result<Option<JobSummary>, NomadError> {
        self.get_optional(&["job", id, "summary"], "a job summary").await
    }

    /// `DELETE /v1/job/:id[?purge=true]`: stop the job (its allocations are stopped; without
    /// `purge` the job stays readable with `Stop: true` until garbage collection). An unknown
    /// job is not an error: the answer's `eval_id` is then "".
    pub async fn deregister(&self, id: &str, purge: bool) -> Result<DeregisterResponse, NomadError> {
        let mut builder = self.request(Method::DELETE, &["job", id])?;
        if purge {
            builder = builder.query(&[("purge", "true")]);
        }
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode(&answer, "a deregister response")
    }

    /// `GET /v1/client/fs/logs/:alloc`: the task's `stream` log from byte `offset` (counted from
    /// the start), as decoded frames (heartbeats dropped). With `follow` the stream goes on as
    /// the task writes; without, it ends at the end of the current logs.
    ///
    /// Fails as a whole when Nomad refuses: an unknown allocation, or a task that has not
    /// started yet, is [`NomadError::NotFound`]; an unknown task name is
    /// [`NomadError::BadRequest`]. Errors after that are the stream's last item.
    pub async fn logs(
        &self,
        alloc: &str,
        task: &str,
        stream: LogType,
        follow: bool,
        offset: i64,
    ) -> Result<LogStream, NomadError> {
        let response = self.open_logs(alloc, task, stream, follow, offset, false).await?;
        let address = self.shown_address.clone();
        let unreachable = move |message| NomadError::Unreachable { address: address.clone(), message };
        Ok(LogStream::new(response.bytes_stream().boxed(), self.config.timeout, unreachable))
    }

    /// The same log in plain mode (`plain=true`): the raw bytes, without frames. Plain mode sends
    /// no heartbeats, so a quiet followed stream is not timed out here.
    pub async fn logs_plain(
        &self,
        alloc: &str,
        task: &str,
        stream: LogType,
        follow: bool,
        offset: i64,
    ) -> Result<BoxStream<'static, Result<Bytes, NomadError>>, NomadError> {
        let response = self.open_logs(alloc, task, stream, follow, offset, true).await?;
        let address = self.shown_address.clone();
        Ok(response
            .bytes_stream()
            .map(move |chunk| {
                chunk.map_err(|error| NomadError::Unreachable { address: address.clone(), message: error.to_string() })
            })
            .boxed())
    }

    async fn open_logs(
        &self,
        alloc: &str,
        task: &str,
        stream: LogType,
        follow: bool,
        offset: i64,
        plain: bool,
    ) -> Result<reqwest::Response, NomadError> {
        let mut builder = self.request(Method::GET, &["client", "fs", "logs", alloc])?.query(&[
            ("task", task),
            ("type", stream.as_str()),
            ("follow", if follow { "true" } else { "false" }),
            ("offset", &offset.to_string()),
            ("origin", "start"),
        ]);
        // Framed is Nomad's default; ask for plain only when wanted.
        if plain {
            builder = builder.query(&[("plain", "true")]);
        }
        // The headers come under the request timeout; the body, as long as the task, under an
        // idle limit only.
        let timeout = self.config.timeout;
        let response = match tokio::time::timeout(timeout, builder.send()).await {
            Ok(sent) => sent.map_err(|error| self.transport_error(&error, timeout))?,
            Err(_) => return Err(self.unreachable(format!("no answer within {timeout:?}"))),
        };
        let status = response.status();
        tracing::debug!(path = response.url().path(), status = status.as_u16(), "nomad log stream answered");
        if !status.is_success() {
            let body = match tokio::time::timeout(timeout, response.bytes()).await {
                Ok(body) => body.map_err(|error| self.transport_error(&error, timeout))?,
                Err(_) => return Err(self.unreachable(format!("no answer within {timeout:?}"))),
            };
            return Err(self.error_answer(status, &body));
        }
        Ok(response)
    }

    /// `GET /v1/client/fs/ls/:alloc?path=`: the entries of a directory of the allocation, `path`
    /// relative to the allocation's directory (`<task>/local/...` for a task's `local`), in
    /// Nomad's order (by name). Each entry describes itself: a symbolic link is listed as one,
    /// not followed.
    ///
    /// A path that does not exist, or an unknown allocation, is [`NomadError::NotFound`]; a path
    /// leading out of the allocation's directory is refused by Nomad (a 500).
    pub async fn fs_ls(&self, alloc: &str, path: &str) -> Result<Vec<AllocFileInfo>, NomadError> {
        let builder = self.request(Method::GET, &["client", "fs", "ls", alloc])?.query(&[("path", path)]);
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode_list(&answer, "a directory listing")
    }

    /// `GET /v1/client/fs/stat/:alloc?path=`: what the path of the allocation is (Nomad follows
    /// a symbolic link here). Errors as for [`NomadClient::fs_ls`].
    pub async fn fs_stat(&self, alloc: &str, path: &str) -> Result<AllocFileInfo, NomadError> {
        let builder = self.request(Method::GET, &["client", "fs", "stat", alloc])?.query(&[("path", path)]);
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode(&answer, "a file's description")
    }

    /// `GET /v1/client/fs/cat/:alloc?path=`: the bytes of a file of the allocation, if it holds
    /// at most `limit`. Reading stops past `limit`, so a file larger than that (or one that grew
    /// since a [`NomadClient::fs_stat`]) costs at most `limit` bytes and is a
    /// [`NomadError::Decode`].
    ///
    /// Nomad refuses a path that does not exist or is a directory as malformed
    /// ([`NomadError::BadRequest`], Nomad's own text saying which); an unknown allocation is
    /// [`NomadError::NotFound`].
    pub async fn fs_cat(&self, alloc: &str, path: &str, limit: usize) -> Result<Bytes, NomadError> {
        let builder = self.request(Method::GET, &["client", "fs", "cat", alloc])?.query(&[("path", path)]);
        let timeout = self.config.timeout;
        let mut response =
            builder.timeout(timeout).send().await.map_err(|error| self.transport_error(&error, timeout))?;
        let status = response.status();
        tracing::debug!(path = response.url().path(), status = status.as_u16(), "nomad answered a file read");
        if !status.is_success() {
            let body = response.bytes().await.map_err(|error| self.transport_error(&error, timeout))?;
            return Err(self.error_answer(status, &body));
        }
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| self.transport_error(&error, timeout))? {
            if data.len() + chunk.len() > limit {
                // Dropping the response closes the connection: the rest is never read.
                return Err(NomadError::Decode {
                    what: format!("the file {path}"),
                    message: format!("it holds more than {limit} bytes"),
                });
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data.freeze())
    }

    /// `GET /v1/status/leader`: the leader's RPC address, "" when the cluster has none.
    pub async fn leader(&self) -> Result<String, NomadError> {
        let builder = self.request(Method::GET, &["status", "leader"])?;
        let answer = self.send(builder, self.config.timeout).await?;
        self.decode(&answer, "the leader's address")
    }

    /// `v1/<segments>` under the address, each segment percent-encoded whole: job IDs may hold
    /// `/` (dispatched children are `<parent>/dispatch-...`), which Nomad decodes back.
    fn url(&self, segments: &[&str]) -> Result<Url, NomadError> {
        let mut url = self.config.address.clone();
        url.path_segments_mut()
            .map_err(|()| NomadError::Config(format!("{} cannot be a base URL", self.shown_address)))?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(url)
    }

    /// A request with what every request carries: the token, the namespace and the region.
    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, NomadError> {
        let mut builder = self.http.request(method, self.url(segments)?);
        if let Some(token) = &self.token {
            builder = builder.header(TOKEN_HEADER, token.clone());
        }
        if let Some(namespace) = &self.config.namespace {
            builder = builder.query(&[("namespace", namespace)]);
        }
        if let Some(region) = &self.config.region {
            builder = builder.query(&[("region", region)]);
        }
        Ok(builder)
    }

    /// Sends `builder` and reads the whole answer within `timeout`; an error status is the error
    /// it stands for.
    async fn send(&self, builder: RequestBuilder, timeout: Duration) -> Result<Answer, NomadError> {
        let answer = self.send_raw(builder, timeout).await?;
        if !answer.status.is_success() {
            return Err(self.error_answer(answer.status, &answer.body));
        }
        Ok(answer)
    }

    async fn send_raw(&self, builder: RequestBuilder, timeout: Duration) -> Result<Answer, NomadError> {
        let response = builder.timeout(timeout).send().await.map_err(|error| self.transport_error(&error, timeout))?;
        let status = response.status();
        tracing::debug!(
            path = response.url().path(),
            status = status.as_u16(),
            index = response.headers().get(INDEX_HEADER).and_then(|value| value.to_str().ok()),
            "nomad answered"
        );
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|error| self.transport_error(&error, timeout))?;
        Ok(Answer { status, headers, body })
    }

    /// A GET whose 404 means "no such thing": `None`, when the 404 is Nomad's.
    async fn get_optional<T: DeserializeOwned>(&self, segments: &[&str], what: &str) -> Result<Option<T>, NomadError> {
        let builder = self.request(Method::GET, segments)?;
        let answer = self.send_raw(builder, self.config.timeout).await?;
        if answer.status == StatusCode::NOT_FOUND && is_nomads_not_found(&answer) {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.error_answer(answer.status, &answer.body));
        }
        self.decode(&answer, what).map(Some)
    }

    fn decode<T: DeserializeOwned>(&self, answer: &Answer, what: &str) -> Result<T, NomadError> {
        serde_json::from_slice(&answer.body).map_err(|error| NomadError::Decode {
            what: what.to_owned(),
            message: self.scrub(format!("{error}; the answer began {}", excerpt(&answer.body))),
        })
    }

    /// A list, where `null` (which Nomad does not send for lists, but a nil slice would be)
    /// reads as empty.
    fn decode_list<T: DeserializeOwned>(&self, answer: &Answer, what: &str) -> Result<Vec<T>, NomadError> {
        Ok(self.decode::<Option<Vec<T>>>(answer, what)?.unwrap_or_default())
    }

    fn error_answer(&self, status: StatusCode, body: &[u8]) -> NomadError {
        NomadError::from_answer(status.as_u16(), &self.scrub(String::from_utf8_lossy(body).into_owned()))
    }

    fn unreachable(&self, message: String) -> NomadError {
        NomadError::Unreachable { address: self.shown_address.clone(), message }
    }

    fn transport_error(&self, error: &reqwest::Error, timeout: Duration) -> NomadError {
        let message = match (error.is_timeout(), error.is_connect()) {
            (true, true) => format!("no connection within {:?}", self.config.timeout),
            (true, false) => format!("no answer within {timeout:?}"),
            (false, _) => describe_transport(error),
        };
        self.unreachable(message)
    }

    /// Nomad does not echo tokens, but a proxy or a future message might: never pass one on.
    fn scrub(&self, text: String) -> String {
        match &self.config.token {
            Some(token) if !token.is_empty() && text.contains(token.as_str()) => {
                text.replace(token.as_str(), "<redacted>")
            }
            Some(_) | None => text,
        }
    }
}

/// A 404 from Nomad itself, about the thing asked for: Nomad sets `X-Nomad-Index` on a read even
/// when the object is missing, and says `<thing> not found`. A proxy or a wrong address answering
/// 404 for everything must not read as "the job is gone", or the backend would act on a job
/// that may well be running.
fn is_nomads_not_found(answer: &Answer) -> bool {
    if answer.headers.contains_key(INDEX_HEADER) {
        return true;
    }
    let body = String::from_utf8_lossy(&answer.body);
    let body = body.trim();
    body.ends_with("not found") && !body.starts_with("404") && !body.contains('<')
}

/// The read's [`QueryMeta`]. A missing `X-Nomad-Index` is an error: a caller blocking on 0 would
/// spin without pause.
fn query_meta(headers: &HeaderMap) -> Result<QueryMeta, NomadError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let index = header(INDEX_HEADER).and_then(|value| value.parse().ok()).ok_or_else(|| NomadError::Decode {
        what: "the answer's index".to_owned(),
        message: format!("no number in the {INDEX_HEADER} header"),
    })?;
    Ok(QueryMeta {
        index,
        known_leader: header(KNOWN_LEADER_HEADER) == Some("true"),
        last_contact_ms: header(LAST_CONTACT_HEADER).and_then(|value| value.parse().ok()).unwrap_or(0),
    })
}

/// How long to give a blocking query: Nomad answers after at most `wait` plus its jitter of up
/// to `wait/16`, and then still has to send the answer, for which it gets the usual `margin`.
fn blocking_timeout(wait: Duration, margin: Duration) -> Duration {
    wait + wait / 16 + margin
}

/// A duration as Go's `time.ParseDuration` reads it: `30s`, `1500ms`, `250ns`.
fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}ns", duration.as_nanos())
    }
}

/// What a transport failure was, in a few words: the innermost cause ("connection refused"),
/// where the outer ones only say what was being done ("error sending request for url ...").
pub(crate) fn describe_transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    root_cause(error)
}

/// A short, one-line quote of a body, for messages.
fn excerpt(body: &[u8]) -> String {
    jobforge_core::error_text::quote(body, 200).unwrap_or_else(|| "empty".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn the_environment_gives_the_config() {
        let config = NomadConfig::from_lookup(lookup(&[
            ("NOMAD_ADDR", "https://nomad.example:4646"),
            ("NOMAD_TOKEN", "s3cr3t"),
            ("NOMAD_NAMESPACE", "builds"),
            ("NOMAD_REGION", "eu"),
            ("NOMAD_CACERT", "/etc/nomad/ca.pem"),
        ]))
        .unwrap();
        assert_eq!(config.address.as_str(), "https://nomad.example:4646/");
        assert_eq!(config.token.as_deref(), Some("s3cr3t"));
        assert_eq!(config.namespace.as_deref(), Some("builds"));
        assert_eq!(config.region.as_deref(), Some("eu"));
        assert_eq!(config.ca_file, Some(PathBuf::from("/etc/nomad/ca.pem")));
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn unset_and_empty_variables_take_nomads_defaults() {
        for vars in [&[][..], &[("NOMAD_ADDR", ""), ("NOMAD_TOKEN", " "), ("NOMAD_NAMESPACE", "")][..]] {
            let config = NomadConfig::from_lookup(lookup(vars)).unwrap();
            assert_eq!(config.address.as_str(), "http://127.0.0.1:4646/");
            assert_eq!((config.token, config.namespace, config.region, config.ca_file), (None, None, None, None));
        }
    }

    #[test]
    fn addresses_are_checked() {
        let address = |text: &str| NomadConfig::from_lookup(lookup(&[("NOMAD_ADDR", text)])).map(|c| c.address);
        assert_eq!(address("10.0.0.5:4646").unwrap().as_str(), "http://10.0.0.5:4646/");
        assert_eq!(address("localhost:4646").unwrap().as_str(), "http://localhost:4646/");
        assert_eq!(address("https://proxy/nomad/?x=1").unwrap().as_str(), "https://proxy/nomad/");
        for bad in ["unix:///var/run/nomad.sock", "ftp://host", "http://"] {
            let error = address(bad).unwrap_err();
            assert!(matches!(&error, NomadError::Config(message) if message.starts_with("NOMAD_ADDR")), "{error}");
        }
    }

    #[test]
    fn urls_keep_a_prefix_and_encode_ids_whole() {
        let mut config = NomadConfig::new(Url::parse("https://user:pw@proxy.example/nomad").unwrap());
        config.token = Some("s3cr3t".into());
        let client = NomadClient::new(config).unwrap();
        let url = client.url(&["job", "parent/dispatch-1-ab?x#y", "allocations"]).unwrap();
        assert_eq!(url.path(), "/nomad/v1/job/parent%2Fdispatch-1-ab%3Fx%23y/allocations");
        assert_eq!(client.shown_address, "https://proxy.example/nomad");
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_blocking_query_outlasts_its_wait_and_nomads_jitter() {
        let timeout = blocking_timeout(Duration::from_secs(160), Duration::from_secs(5));
        assert_eq!(timeout, Duration::from_secs(160 + 10 + 5));
    }

    #[test]
    fn waits_are_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::from_nanos(250)), "250ns");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn a_token_in_a_body_is_scrubbed() {
        let mut config = NomadConfig::new(Url::parse("http://127.0.0.1:4646").unwrap());
        config.token = Some("s3cr3t".into());
        let client = NomadClient::new(config).unwrap();
        let error = client.error_answer(StatusCode::FORBIDDEN, b"token s3cr3t is not allowed");
        assert_eq!(error, NomadError::PermissionDenied("token <redacted> is not allowed".into()));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_being_shown() {
        let mut config = NomadConfig::new(Url::parse("http://127.0.0.1:4646").unwrap());
        config.token = Some("bad\ntoken".into());
        let error = NomadClient::new(config).unwrap_err();
        assert!(matches!(&error, NomadError::Config(_)) && !error.to_string().contains("bad"), "{error}");
    }
}
