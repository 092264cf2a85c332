//! What the tools' words mean: the phrases git, buildah, skopeo, podman and Nomad use for
//! refused credentials, an unreachable server, a missing image.

use crate::failure::Cause;

/// Git refused (or asked for) credentials.
pub fn git_auth(text: &str) -> bool {
    contains_any(
        text,
        &[
            "Authentication failed",
            "could not read Username",
            "could not read Password",
            "terminal prompts disabled",
            "Permission denied (publickey",
            "HTTP Basic: Access denied",
            "Invalid username or password",
            "The requested URL returned error: 401",
            "The requested URL returned error: 403",
        ],
    )
}

/// A registry refused (or asked for) credentials.
pub fn registry_auth(text: &str) -> bool {
    contains_any(
        text,
        &["unauthorized", "authentication required", "401 Unauthorized", "403 Forbidden", "denied: requested access"],
    )
}

/// The server could not be reached or failed for a moment: trying again may work.
pub fn transient(text: &str) -> bool {
    contains_any(
        text,
        &[
            "connection refused",
            "Connection refused",
            "Could not resolve host",
            "Failed to connect",
            "Couldn't connect to server",
            "Connection timed out",
            "Operation timed out",
            "i/o timeout",
            "TLS handshake timeout",
            "connection reset",
            "Connection reset",
            "no such host",
            "temporary failure",
            "Temporary failure",
            "early EOF",
            "RPC failed",
            "remote end hung up unexpectedly",
            "The requested URL returned error: 5",
            "502 Bad Gateway",
            "503 Service Unavailable",
            "504 Gateway Timeout",
            "500 Internal Server Error",
            "toomanyrequests",
            "unexpected EOF",
        ],
    )
}

/// The registry has no such repository or tag.
pub fn image_missing(text: &str) -> bool {
    contains_any(
        text,
        &["manifest unknown", "name unknown", "not found: manifest", "repository does not exist", "404 Not Found"],
    )
}

/// Nomad's words for work it could not place.
pub fn placement(message: &str) -> bool {
    message.contains("could not place")
}

/// `auth` when the registry refused credentials, `registry` otherwise.
pub fn registry_cause(text: &str) -> Cause {
    if registry_auth(text) { Cause::Auth } else { Cause::Registry }
}

fn contains_any(text: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| text.contains(n))
}
