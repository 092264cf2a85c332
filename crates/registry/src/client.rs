//! Typed HTTP to OCI registries: the URL of a request (`http://` for hosts configured as
//! insecure, `https://` for every other), the authentication dance (send without credentials; on
//! 401 answer the `WWW-Authenticate` challenge with HTTP Basic or a Bearer token from the realm,
//! and send once more), and turning transport failures and error answers into [`RegistryError`].
//!
//! It must not decide what a status means for an operation (a 404 is "gone" for a delete but
//! an error for a ping): that is [`crate::oci`]. It caches nothing, and it must never log a
//! credential or a token, nor put one in an error: requests are logged by method and URL, which
//! never carry credentials.

use std::time::Duration;

use jobforge_core::image::{RegistryHost, Repository};
use jobforge_core::ports::RegistryError;
use jobforge_core::secret::Credentials;
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;

use crate::challenge::{self, Challenge};

/// How much of an error body is read, and how much of it goes into a message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const ERROR_EXCERPT_CHARS: usize = 200;

#[derive(Clone, Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    insecure: Vec<RegistryHost>,
    /// Hosts besides the registry's own whose token realm may receive its credentials.
    token_realms: Vec<String>,
}

/// Redirects within the registry's own host and port only, five at most: a request carrying
/// credentials must not be led to another server.
fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first();
        let same = first.is_some_and(|first| {
            first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same && attempt.previous().len() <= 5 { attempt.follow() } else { attempt.stop() }
    })
}

/// The access a request needs: the token scope to ask for when a Bearer challenge names none.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access<'a> {
    /// `/v2/` itself: no scope.
    Registry,
    /// `repository:NAME:pull`.
    Pull(&'a Repository),
    /// `repository:NAME:delete`, the action distribution checks for `DELETE` of a manifest.
    Delete(&'a Repository),
}

impl Access<'_> {
    fn scope(self) -> Option<String> {
        match self {
            Access::Registry => None,
            Access::Pull(repository) => Some(format!("repository:{repository}:pull")),
            Access::Delete(repository) => Some(format!("repository:{repository}:delete")),
        }
    }
}

/// One request to a registry, rebuilt for each attempt.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub host: &'a RegistryHost,
    pub method: Method,
    /// Starts with `/v2/`. Built from validated names only, so it needs no escaping.
    pub path: String,
    pub accept: Option<&'static str>,
    pub access: Access<'a>,
}

enum Auth<'a> {
    Anonymous,
    Basic(&'a Credentials),
    Bearer(String),
}

/// The token endpoint's answer; Docker's token spec says `token`, OAuth2 says `access_token`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Client {
    pub(crate) fn new(
        insecure: Vec<RegistryHost>,
        timeout: Duration,
        token_realms: Vec<String>,
    ) -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(same_host_redirects())
            .user_agent(concat!("jobforge-registry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { http, insecure, token_realms })
    }

    /// Whether the token realm at `realm_host` may receive the credentials of `registry`: on
    /// the registry's own host name (any port: a token service beside the registry), or on
    /// one the operator named.
    fn may_send_credentials(&self, registry: &RegistryHost, realm_host: &str) -> bool {
        let registry_name = registry.as_str().rsplit_once(':').map_or(registry.as_str(), |(name, _)| name);
        registry_name.eq_ignore_ascii_case(realm_host)
            || self.token_realms.iter().any(|h| h.eq_ignore_ascii_case(realm_host))
    }

    fn is_insecure(&self, host: &RegistryHost) -> bool {
        self.insecure.contains(host)
    }

    fn url(&self, host: &RegistryHost, path: &str) -> String {
        let scheme = if self.is_insecure(host) { "http" } else { "https" };
        format!("{scheme}://{host}{path}")
    }

    /// Send `request` without credentials and return the answer as is, whatever its status.
    pub(crate) async fn send_anonymous(&self, request: &Request<'_>) -> Result<Response, RegistryError> {
        self.execute(request, Auth::Anonymous).await
    }

    /// Send `request`; on 401, answer the registry's challenge and send it once more. The answer
    /// is returned whatever its status (a second 401 included): the caller decides what it means.
    ///
    /// `Basic` is answered only with `creds`; `Bearer` is answered with a token fetched from the
    /// realm, with `creds` as HTTP Basic if given, anonymously otherwise (public repositories).
    pub(crate) async fn send(
        &self,
        request: &Request<'_>,
        creds: Option<&Credentials>,
    ) -> Result<Response, RegistryError> {
        let response = self.execute(request, Auth::Anonymous).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(challenge::parse)
            .next();
        match (challenge, creds) {
            (Some(Challenge::Basic), Some(creds)) => {
                tracing::debug!(registry = %request.host, "answering a Basic challenge");
                self.execute(request, Auth::Basic(creds)).await
            }
            (Some(Challenge::Bearer { realm, service, scope }), creds) => {
                tracing::debug!(registry = %request.host, %realm, "answering a Bearer challenge");
                let scope = scope.or_else(|| request.access.scope());
                let token = self.token(request.host, &realm, service.as_deref(), scope.as_deref(), creds).await?;
                self.execute(request, Auth::Bearer(token)).await
            }
            // Basic without credentials, or no challenge this client can answer: the 401 stands.
            (Some(Challenge::Basic), None) | (None, _) => Ok(response),
        }
    }

    async fn execute(&self, request: &Request<'_>, auth: Auth<'_>) -> Result<Response, RegistryError> {
        let url = self.url(request.host, &request.path);
        let mut builder = self.http.request(request.method.clone(), &url);
        if let Some(accept) = request.accept {
            builder = builder.header(reqwest::header::ACCEPT, accept);
        }
        let auth_kind = match auth {
            Auth::Anonymous => "none",
            Auth::Basic(creds) => {
                builder = builder.basic_auth(creds.username.expose(), Some(creds.password.expose()));
                "basic"
            }
            Auth::Bearer(token) => {
                builder = builder.bearer_auth(token);
                "bearer"
            }
        };
        tracing::debug!(method = %request.method, %url, auth = auth_kind, "registry request");
        let response = builder.send().await.map_err(|err| unreachable(request.host, &err))?;
        tracing::debug!(method = %request.method, %url, status = response.status().as_u16(), "registry answer");
        Ok(response)
    }

    /// A token from the Bearer `realm` for `service` and `scope`.
    async fn token(
        &self,
        host: &RegistryHost,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let refuse = |message: String| RegistryError::Status {
            registry: host.to_string(),
            status: StatusCode::UNAUTHORIZED.as_u16(),
            message,
        };
        let mut url = Url::parse(realm).map_err(|err| refuse(format!("token realm {realm:?} is not a URL: {err}")))?;
        // Credentials go to the realm only as securely as they would go to the registry itself.
        match url.scheme() {
            "https" => {}
            "http" if self.is_insecure(host) => {}
            other => {
                return Err(refuse(format!(
                    "token realm {realm:?} uses {other}://; only https:// is used for a registry not configured as insecure"
                )));
            }
        }
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        if creds.is_some() && !self.may_send_credentials(host, &realm_host) {
            return Err(refuse(format!(
                "token realm {realm:?} is on another host than the registry; its credentials go there only if the \
                 operator allows that host (--registry-token-realm {realm_host})"
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            // A challenge may name several scopes, separated by spaces; each is its own parameter.
            for scope in scope.into_iter().flat_map(str::split_whitespace) {
                query.append_pair("scope", scope);
            }
        }
        let mut builder = self.http.get(url.clone());
        if let Some(creds) = creds {
            builder = builder.basic_auth(creds.username.expose(), Some(creds.password.expose()));
        }
        tracing::debug!(registry = %host, %url, with_credentials = creds.is_some(), "token request");
        let response = builder.send().await.map_err(|err| unreachable(host, &err))?;
        let status = response.status();
        tracing::debug!(registry = %host, %url, status = status.as_u16(), "token answer");
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized { registry: host.to_string(), status: status.as_u16() });
        }
        if !status.is_success() {
            let message = error_message(response).await;
            return Err(RegistryError::Status {
                registry: host.to_string(),
                status: status.as_u16(),
                message: format!("token service {realm}: {message}"),
            });
        }
        let body = response.bytes().await.map_err(|err| unreachable(host, &err))?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|err| RegistryError::Status {
            registry: host.to_string(),
            status: status.as_u16(),
            message: format!("token service {realm} answered something that is not a token: {err}"),
        })?;
        answer.token.filter(|t| !t.is_empty()).or(answer.access_token.filter(|t| !t.is_empty())).ok_or_else(|| {
            RegistryError::Status {
                registry: host.to_string(),
                status: status.as_u16(),
                message: format!("token service {realm} answered without a token"),
            }
        })
    }
}

/// A transport failure (connection refused, TLS, timeout, a broken body) as `Unreachable`, with
/// the whole cause chain. reqwest's messages name the URL, never a header.
pub(crate) fn unreachable(host: &RegistryHost, err: &reqwest::Error) -> RegistryError {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    RegistryError::Unreachable { registry: host.to_string(), message }
}

/// An answer the operation did not expect: 401 and 403 are `Unauthorized`, anything else is
/// `Status` with the registry's own error message.
pub(crate) async fn unexpected(host: &RegistryHost, response: Response) -> RegistryError {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return RegistryError::Unauthorized { registry: host.to_string(), status: status.as_u16() };
    }
    RegistryError::Status {
        registry: host.to_string(),
        status: status.as_u16(),
        message: error_message(response).await,
    }
}

/// The distribution error body's `errors[0].message` (with its `code`), else a short excerpt of
/// the body, else the status's reason phrase.
async fn error_message(response: Response) -> String {
    let status = response.status();
    let body = read_limited(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
    if let Some(message) = distribution_error(&body) {
        return message;
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("no message").to_owned();
    }
    let mut excerpt: String = text.chars().take(ERROR_EXCERPT_CHARS).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    excerpt
}

fn distribution_error(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = value.get("errors")?.get(0)?;
    let message = first.get("message").and_then(|m| m.as_str()).filter(|m| !m.is_empty())?;
    Some(match first.get("code").and_then(|c| c.as_str()) {
        Some(code) => format!("{message} ({code})"),
        None => message.to_owned(),
    })
}

/// At most `limit` bytes of the body; the rest is not read.
pub(crate) async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            break;
        }
    }
    Ok(body)
}
