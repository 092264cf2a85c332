//! [`Client`]: one method per request/response endpoint of the API, each turning the answer
//! into its wire type from `jobforge-api` or a [`ClientError`].
//!
//! It owns the base URL, the HTTP client (timeouts, User-Agent) and the rules every plain
//! request shares. It must not interpret jobs (no waiting on a status, no retries: a caller that
//! wants them decides) and holds no state between calls. The long-lived event stream is in
//! [`crate::events`].

use std::time::Duration;

use jobforge_api::{
    CleanedUp, Health, History, HistoryQuery, JobView, KillBody, Logs, LogsQuery, Ready, Submitted, ZombiesRemoved,
};
use jobforge_core::JobId;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::ClientError;

const USER_AGENT: &str = concat!("jobforge-client/", env!("CARGO_PKG_VERSION"));

/// Timeouts and reconnection of a [`Client`]. `Default` suits a CLI talking to a nearby service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for a whole answer to a plain request, and for the headers of an event
    /// stream. The body of an event stream has no overall limit: it lasts as long as the job.
    pub request_timeout: Duration,
    /// Longest silence on an event stream before it counts as broken. The service sends a
    /// keep-alive comment every 15 s, so a live stream is never quiet this long.
    pub idle_timeout: Duration,
    /// Wait before the first reconnection of [`Client::follow`]; it doubles for each further
    /// consecutive failure, up to 8 times this. Zero reconnects at once.
    pub reconnect_backoff: Duration,
    /// How many consecutive failed connections [`Client::follow`] tolerates before it gives up
    /// and yields the last error. A connection that brings a new line or a new status resets it.
    pub max_reconnects: u32,
    /// Sent as `Authorization: Bearer` on every request, where the service wants tokens.
    pub token: Option<Token>,
}

/// A bearer token. It prints as `***`, so no log or debug output shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            reconnect_backoff: Duration::from_millis(250),
            max_reconnects: 5,
            token: None,
        }
    }
}

/// A handle on one jobforge service. Cheap to clone; clones share their connections.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    /// Always ends with `/`, so that joining `v1/jobs` keeps a path prefix (a service behind a
    /// proxy at `https://ci.example.com/jobforge/`).
    pub(crate) base: Url,
    pub(crate) options: ClientOptions,
}

impl Client {
    /// A client of the service at `base_url` (`http://127.0.0.1:8080`; a trailing slash or a
    /// path prefix is fine, and `host:port` alone means `http://host:port`), with default
    /// [`ClientOptions`].
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_options(base_url, ClientOptions::default())
    }

    pub fn with_options(base_url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let base = parse_base_url(base_url)?;
        let setup_failed = |message: String| ClientError::Connect { url: base_url.to_owned(), message };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(Token(token)) = &options.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| setup_failed("the token holds characters a header cannot carry".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        // No overall timeout here: plain requests set theirs, the event stream must have none.
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(options.connect_timeout)
            .default_headers(headers)
            .build()
            .map_err(|error| setup_failed(format!("cannot set up an HTTP client: {error}")))?;
        Ok(Client { http, base, options })
    }

    /// The service's base URL, ending with `/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// `POST /v1/jobs`: submit a job config (a JSON object; see the README for its fields).
    /// A refused config is [`ClientError::Api`] with every problem in
    /// [`ClientError::problems`].
    pub async fn submit(&self, config: &serde_json::Value) -> Result<Submitted, ClientError> {
        let request = self.http.post(self.url("v1/jobs")?).json(config);
        self.call(request, "a submitted job").await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: JobId) -> Result<JobView, ClientError> {
        let request = self.http.get(self.url(&format!("v1/jobs/{id}"))?);
        self.call(request, "a job").await
    }

    /// `GET /v1/jobs`: one page of jobs, newest first.
    pub async fn history(&self, limit: usize, offset: usize) -> Result<History, ClientError> {
        let query = HistoryQuery { limit: Some(limit), offset: Some(offset), ..HistoryQuery::default() };
        self.history_of(&query).await
    }

    /// `GET /v1/jobs` with filters: one page of the matching jobs, newest first.
    pub async fn history_of(&self, query: &HistoryQuery) -> Result<History, ClientError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(owner) = &query.owner {
            params.push(("owner", owner.clone()));
        }
        if let Some(status) = query.status {
            params.push(("status", status.as_str().to_owned()));
        }
        if let Some(image) = &query.image_name {
            params.push(("image_name", image.clone()));
        }
        params.extend(query.limit.map(|n| ("limit", n.to_string())));
        params.extend(query.offset.map(|n| ("offset", n.to_string())));
        let request = self.http.get(self.url("v1/jobs")?).query(&params);
        self.call(request, "a page of job history").await
    }

    /// `GET /v1/jobs/{id}/logs`: one page of archived lines.
    pub async fn logs(&self, id: JobId, query: &LogsQuery) -> Result<Logs, ClientError> {
        let mut params = vec![("after", query.after.to_string())];
        if let Some(phase) = query.phase {
            params.push(("phase", phase.as_str().to_owned()));
        }
        if let Some(test) = query.test {
            params.push(("test", test.to_string()));
        }
        if let Some(stream) = query.stream {
            params.push(("stream", stream.as_str().to_owned()));
        }
        params.extend(query.limit.map(|n| ("limit", n.to_string())));
        params.extend(query.tail.map(|n| ("tail", n.to_string())));
        params.extend(query.grep.clone().map(|grep| ("grep", grep)));
        params.extend(query.context.map(|n| ("context", n.to_string())));
        let request = self.http.get(self.url(&format!("v1/jobs/{id}/logs"))?).query(&params);
        self.call(request, "a page of log lines").await
    }

    /// `POST /v1/jobs/{id}/kill`: ask for the job to stop. The answer shows the request (`kill`);
    /// the job reaches `KILLED` once its work has stopped. A finished job is a 409.
    pub async fn kill(&self, id: JobId, by: Option<&str>, reason: Option<&str>) -> Result<JobView, ClientError> {
        let mut request = self.http.post(self.url(&format!("v1/jobs/{id}/kill"))?);
        if by.is_some() || reason.is_some() {
            request = request.json(&KillBody { by: by.map(str::to_owned), reason: reason.map(str::to_owned) });
        }
        self.call(request, "a job").await
    }

    /// `POST /v1/jobs/{id}/cleanup`: remove what the job left behind (killing it first if it
    /// still runs).
    pub async fn cleanup(&self, id: JobId) -> Result<CleanedUp, ClientError> {
        let request = self.http.post(self.url(&format!("v1/jobs/{id}/cleanup"))?);
        self.call(request, "a cleanup report").await
    }

    /// `POST /v1/zombies/cleanup`: stop and remove backend leftovers of jobs that are not live.
    pub async fn remove_zombies(&self) -> Result<ZombiesRemoved, ClientError> {
        let request = self.http.post(self.url("v1/zombies/cleanup")?);
        self.call(request, "a zombie cleanup report").await
    }

    /// `GET /health`: the service is up, and which backend and store it runs with.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let request = self.http.get(self.url("health")?);
        self.call(request, "a health report").await
    }

    /// `GET /ready`. A service that is up but not ready (a 503 with the checks) is
    /// `Ok(Ready { ready: false, .. })`, not an error: read `checks` for what is wrong.
    pub async fn ready(&self) -> Result<Ready, ClientError> {
        let request = self.http.get(self.url("ready")?);
        let (status, body) = self.send(request).await?;
        if (status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE)
            && let Ok(ready) = serde_json::from_slice::<Ready>(&body)
        {
            return Ok(ready);
        }
        decode(status, &body, "a readiness report")
    }

    /// `path` (relative, no leading `/`) under the base URL.
    pub(crate) fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|error| ClientError::BadUrl(format!("{:?} + {path:?}: {error}", self.base.as_str())))
    }

    /// The base URL as people write it, for messages.
    pub(crate) fn display_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The service could not be reached, or stopped answering, for the reason given.
    pub(crate) fn unreachable(&self, message: String) -> ClientError {
        ClientError::Connect { url: self.display_url().to_owned(), message }
    }

    /// A transport failure of a request to the service.
    pub(crate) fn transport_error(&self, error: &reqwest::Error) -> ClientError {
        self.unreachable(ClientError::describe_transport(error, &self.options))
    }

    /// Sends `request` and decodes a success answer as `T` (described as `what` in errors).
    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder, what: &str) -> Result<T, ClientError> {
        let (status, body) = self.send(request).await?;
        decode(status, &body, what)
    }

    /// Sends `request` under the request timeout and reads the whole answer.
    async fn send(&self, request: RequestBuilder) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let timeout = self.options.request_timeout;
        let transport = |error: reqwest::Error| self.transport_error(&error);
        let response = request.timeout(timeout).send().await.map_err(transport)?;
        let status = response.status();
        tracing::debug!(url = %response.url(), status = status.as_u16(), "jobforge service answered");
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, body.to_vec()))
    }
}

/// A success answer decoded as `T`, or the error an error answer stands for.
fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8], what: &str) -> Result<T, ClientError> {
    if !status.is_success() {
        return Err(ClientError::from_error_answer(status.as_u16(), body));
    }
    serde_json::from_slice(body).map_err(|error| ClientError::undecodable(status.as_u16(), what, &error, body))
}

fn parse_base_url(text: &str) -> Result<Url, ClientError> {
    let text = text.trim();
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    let bad = |why: &str| ClientError::BadUrl(format!("{text:?}: {why}"));
    let mut url = Url::parse(&with_scheme).map_err(|error| bad(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a service URL has no query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> String {
        parse_base_url(text).map(String::from).unwrap_or_else(|error| format!("error: {error}"))
    }

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(base("http://127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(base("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/");
        assert_eq!(base("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(base(" https://ci.example.com/jobforge "), "https://ci.example.com/jobforge/");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for text in ["", "ftp://example.com", "http://", "http://host:99999", "http://host/?q=1", "http://a b"] {
            assert!(base(text).starts_with("error: invalid jobforge service URL"), "{text:?} gave {}", base(text));
        }
    }

    #[test]
    fn paths_join_under_a_prefix() {
        let client = Client::new("https://ci.example.com/jobforge").unwrap();
        let id: JobId = "0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f".parse().unwrap();
        assert_eq!(
            client.url(&format!("v1/jobs/{id}/logs")).unwrap().as_str(),
            "https://ci.example.com/jobforge/v1/jobs/0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f/logs"
        );
        assert_eq!(client.display_url(), "https://ci.example.com/jobforge");
    }
}
