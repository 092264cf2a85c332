//! Authentication: the auth file of tokens (`--auth-file`), and the middleware that turns a
//! request's `Authorization: Bearer` header into the [`Caller`] every handler acts for.
//!
//! The file holds the SHA-256 of each token, never a token, and is read again when it changes,
//! so tokens are added and revoked without a restart. What a caller may do is decided by
//! [`jobforge_core::access`]; this module only says who the caller is. It must not let a
//! request through without a caller: handlers find one in the request's extensions or fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use jobforge_core::access::{Caller, Role, SecretPattern, TokenHolder};

use crate::http::{ApiError, AppState};
use crate::service::Service;

/// The auth file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    role: Role,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    secrets: Vec<SecretPattern>,
}

/// A broken auth file.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read the auth file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the auth file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Tokens by the hex SHA-256 of the token.
type Tokens = HashMap<String, TokenHolder>;

fn parse(path: &Path, text: &str) -> Result<Tokens, AuthFileError> {
    let invalid = |message: String| AuthFileError::Invalid { path: path.to_owned(), message };
    let file: AuthFile = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut tokens = Tokens::new();
    let mut names = std::collections::HashSet::new();
    for (i, entry) in file.tokens.into_iter().enumerate() {
        let at = format!("tokens[{i}]");
        let hash = entry.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!("{at}.sha256 must be 64 hex digits (the SHA-256 of the token)")));
        }
        if entry.name.is_empty() || entry.name.len() > 128 || entry.name.chars().any(char::is_control) {
            return Err(invalid(format!("{at}.name must be 1 to 128 characters without control characters")));
        }
        if !names.insert(entry.name.clone()) {
            return Err(invalid(format!("{at}.name {:?} is used twice", entry.name)));
        }
        let holder = TokenHolder { name: entry.name, role: entry.role, owner: entry.owner, secrets: entry.secrets };
        if tokens.insert(hash, holder).is_some() {
            return Err(invalid(format!("{at}.sha256 is the hash of another entry's token too")));
        }
    }
    Ok(tokens)
}

/// The hex SHA-256 of a token: what the auth file holds.
pub fn token_hash(token: &str) -> String {
    to_hex(&Sha256::digest(token.as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token (`jf_` and 64 hex digits: 256 bits).
pub fn new_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness from the system: {e}")))?;
    Ok(format!("jf_{}", to_hex(&bytes)))
}

/// The auth file entry of `token` (a list item under `tokens:`), holding its hash only.
pub fn entry_yaml(name: &str, token: &str, role: Role, owner: Option<&str>, secrets: &[SecretPattern]) -> String {
    // JSON strings are YAML strings: quoting this way keeps any name intact.
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let mut entry = format!("  - name: {}\n    sha256: {}\n    role: {role}\n", quoted(name), token_hash(token));
    if let Some(owner) = owner {
        entry.push_str(&format!("    owner: {}\n", quoted(owner)));
    }
    if !secrets.is_empty() {
        let list: Vec<String> = secrets.iter().map(|p| quoted(p.as_str())).collect();
        entry.push_str(&format!("    secrets: [{}]\n", list.join(", ")));
    }
    entry
}

/// Who may call the service.
pub enum Auth {
    /// No tokens: every caller is [`Caller::Anyone`] (a loopback-only service, or one started
    /// with `--insecure-no-auth`).
    Off,
    /// Tokens from a file, read again when its modification time or size changes.
    File(TokenFile),
}

pub struct TokenFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    tokens: Arc<Tokens>,
}

impl Auth {
    /// Read the auth file; a file that is missing or broken at start-up stops the service.
    pub fn from_file(path: &Path) -> Result<Auth, AuthFileError> {
        let (stamp, tokens) = read(path)?;
        let loaded = Loaded { stamp, tokens: Arc::new(tokens) };
        Ok(Auth::File(TokenFile { path: path.to_owned(), loaded: Mutex::new(loaded) }))
    }

    pub fn is_on(&self) -> bool {
        matches!(self, Auth::File(_))
    }

    /// The caller behind an `Authorization` header value.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let Auth::File(file) = self else { return Ok(Caller::Anyone) };
        let Some(header) = authorization else {
            return Err(ApiError::Unauthorized(
                "this service needs a token: send Authorization: Bearer <token>".into(),
            ));
        };
        let Some(token) = header.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()) else {
            return Err(ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into()));
        };
        match file.tokens().get(&token_hash(token)) {
            Some(holder) => Ok(Caller::Token(holder.clone())),
            None => Err(ApiError::Unauthorized("the token is not known to this service".into())),
        }
    }
}

impl TokenFile {
    /// The tokens as the file holds them now. A file changed into something unreadable keeps
    /// the tokens it held before (and says so in the log), so a bad edit locks nobody out.
    fn tokens(&self) -> Arc<Tokens> {
        let mut loaded = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stamp = stamp(&self.path);
        if stamp != loaded.stamp {
            match read(&self.path) {
                Ok((stamp, tokens)) => {
                    tracing::info!(path = %self.path.display(), tokens = tokens.len(), "auth file read again");
                    *loaded = Loaded { stamp, tokens: Arc::new(tokens) };
                }
                Err(error) => {
                    tracing::error!(%error, "keeping the tokens read before");
                    loaded.stamp = stamp;
                }
            }
        }
        loaded.tokens.clone()
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<(Option<(SystemTime, u64)>, Tokens), AuthFileError> {
    let stamp = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read { path: path.to_owned(), source })?;
    Ok((stamp, parse(path, &text)?))
}

/// Paths open to anyone: load balancers probe them without a token.
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/ready")
}

/// Authenticate every request but the open ones; the caller goes into the request's
/// extensions, where [`Scoped`] (REST, compat) and the MCP tools find it.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if is_open(request.uri().path()) {
        return next.run(request).await;
    }
    let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.auth().caller(header) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) if request.uri().path().starts_with("/json/") => {
            crate::compat::CompatError::from(refused).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

/// The [`Service`] on behalf of the request's caller.
pub struct Scoped(pub Service);

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(Scoped(state.service().as_caller(caller.clone()))),
            // Only a route mounted outside the authentication layer gets here.
            None => Err(ApiError::Unauthorized("the request was not authenticated".into())),
        }
    }
}

#[cfg(test)]
mod tests;
