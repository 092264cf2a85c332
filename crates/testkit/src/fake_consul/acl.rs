//! ACLs as a Consul agent with `acl { enabled = true, default_policy = "deny" }` and one
//! management token enforces them: where the token is read from, what an unknown token gets
//! (403 `ACL not found`), what the anonymous token gets (403 `Permission denied: anonymous token
//! lacks permission ...` on single objects; lists silently filtered, with
//! `X-Consul-Results-Filtered-By-ACLs: true`).
//!
//! It only resolves tokens and words refusals; each endpoint decides, as Consul's RPC handlers
//! do, whether a refusal is an error or a filter, and at which point of its work it asks.

use axum::http::{HeaderMap, StatusCode};

use super::duration::go_quote;
use super::http::{HttpError, Query};

/// What the request's token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Authz {
    /// ACLs are off: everything is allowed.
    Disabled,
    /// The configured token: a management token.
    Management,
    /// No token (or the literal `anonymous`): the anonymous token under a deny default policy.
    Anonymous,
}

impl Authz {
    /// Whether list results are visible to this token (filtered away for the anonymous one).
    pub(crate) fn can_read(self) -> bool {
        self != Authz::Anonymous
    }

    /// `PermissionDeniedByACL`: refuse a single-object operation the anonymous token lacks.
    pub(crate) fn require(self, resource: &str, access: &str, name: &str) -> Result<(), HttpError> {
        if self != Authz::Anonymous {
            return Ok(());
        }
        let on = if name.is_empty() { String::new() } else { format!(" on {}", go_quote(name)) };
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Permission denied: anonymous token lacks permission '{resource}:{access}'{on}. The anonymous token \
                 is used implicitly when a request does not specify a token."
            ),
        ))
    }
}

/// Consul's `parseToken`: `?token=` first (deprecated), then `X-Consul-Token`, then
/// `Authorization: Bearer <token>`; none means the agent's default token, here anonymous.
pub(crate) fn request_token(query: &Query, headers: &HeaderMap) -> Option<String> {
    if let Some(token) = query.get("token").filter(|t| !t.is_empty()) {
        return Some(token.to_owned());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    if let Some(token) = header("X-Consul-Token") {
        return Some(token.to_owned());
    }
    let authorization = header("Authorization")?;
    let (scheme, value) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    // Bearer tokens hold no spaces: the first word after the scheme is the token.
    value.split_whitespace().next().map(str::to_owned)
}

/// Resolve the request's token against the configured one.
pub(crate) fn resolve(configured: Option<&str>, query: &Query, headers: &HeaderMap) -> Result<Authz, HttpError> {
    let Some(expected) = configured else { return Ok(Authz::Disabled) };
    match request_token(query, headers) {
        None => Ok(Authz::Anonymous),
        Some(token) if token == "anonymous" => Ok(Authz::Anonymous),
        Some(token) if token == expected => Ok(Authz::Management),
        Some(_) => Err(HttpError::new(StatusCode::FORBIDDEN, "ACL not found")),
    }
}
