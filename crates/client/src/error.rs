//! [`ClientError`]: every way a call to the service can fail, with messages a person can act on,
//! and the conversions from what reqwest and the response body give us.
//!
//! It must not decide what to do about an error (retrying is [`crate::events`]'s business for
//! event streams, and the caller's otherwise) nor print anything.

use std::fmt::Write as _;
use std::time::Duration;

use jobforge_api::{ErrorBody, ErrorCode};
use jobforge_core::validate::Problem;

use crate::client::ClientOptions;

/// How many characters of an unexpected body go into a [`ClientError::Decode`] message.
const EXCERPT_CHARS: usize = 200;

/// A call to the jobforge service failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// The service URL given is not an `http://` or `https://` URL.
    #[error("invalid jobforge service URL {0}")]
    BadUrl(String),
    /// The server answered with an error body (status + [`ErrorBody`]).
    #[error("{}", api_message(.status, .body))]
    Api { status: u16, body: ErrorBody },
    /// Could not reach the server (connection refused, DNS, timeout), or the connection broke
    /// off: `url` is the service's base URL.
    #[error("cannot reach the jobforge service at {url} (is `jobforge serve` running?): {message}")]
    Connect { url: String, message: String },
    /// The server answered something that is not the expected JSON (status + short excerpt).
    #[error("unexpected answer from the jobforge service (HTTP {status}): {message}")]
    Decode { status: u16, message: String },
}

impl ClientError {
    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            ClientError::BadUrl(_) | ClientError::Connect { .. } => None,
        }
    }

    /// The error code of the server's error body, if it sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            ClientError::BadUrl(_) | ClientError::Connect { .. } | ClientError::Decode { .. } => None,
        }
    }

    /// Every field the server found at fault (empty unless it refused the input field by field).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ClientError::Api { body, .. } => &body.problems,
            ClientError::BadUrl(_) | ClientError::Connect { .. } | ClientError::Decode { .. } => &[],
        }
    }

    /// The service did not answer, or answered that it is unavailable for now (a restart, a
    /// proxy in front of it): trying again later may work. Refusals (4xx) never are.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => matches!(status, 502..=504),
            ClientError::BadUrl(_) => false,
        }
    }

    /// What a transport failure was, in a few words: a timeout and which one, else the
    /// innermost cause.
    pub(crate) fn describe_transport(error: &reqwest::Error, options: &ClientOptions) -> String {
        match (error.is_timeout(), error.is_connect()) {
            (true, true) => format!("no connection within {}", seconds(options.connect_timeout)),
            // Only plain requests carry reqwest's timeout; the event stream times out by itself.
            (true, false) => format!("no answer within {}", seconds(options.request_timeout)),
            (false, _) => root_cause(error),
        }
    }

    /// An error answer: the service's [`ErrorBody`] when the body is one, else a
    /// [`ClientError::Decode`] with an excerpt of whatever came back.
    pub(crate) fn from_error_answer(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => ClientError::Api { status, body },
            Err(_) => ClientError::Decode {
                status,
                message: format!("expected a jobforge error body, got {}", excerpt(body)),
            },
        }
    }

    /// A success answer whose body is not the `what` expected.
    pub(crate) fn undecodable(status: u16, what: &str, error: &serde_json::Error, body: &[u8]) -> Self {
        ClientError::Decode { status, message: format!("expected {what} ({error}), got {}", excerpt(body)) }
    }
}

/// `job 0193… not found (404)`, then each problem on its own line.
fn api_message(status: &u16, body: &ErrorBody) -> String {
    let mut text = format!("{} ({status})", body.error);
    for problem in &body.problems {
        // Writing to a String cannot fail.
        let _ = write!(text, "\n  {}: {}", problem.field, problem.message);
    }
    text
}

fn root_cause(error: &reqwest::Error) -> String {
    jobforge_core::error_text::root_cause(error)
}

/// A short, one-line quote of a body, for messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    jobforge_core::error_text::quote(body, EXCERPT_CHARS).unwrap_or_else(|| "an empty body".to_owned())
}

pub(crate) fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0} s") } else { format!("{secs:.1} s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_list_each_problem_on_its_own_line() {
        let error = ClientError::Api {
            status: 400,
            body: ErrorBody {
                error: "invalid job config: 2 problems".into(),
                code: ErrorCode::InvalidRequest,
                problems: vec![
                    Problem::new("image_name", "must not be empty"),
                    Problem::new("colour", "is not a known field"),
                ],
            },
        };
        assert_eq!(
            error.to_string(),
            "invalid job config: 2 problems (400)\n  image_name: must not be empty\n  colour: is not a known field"
        );
        assert_eq!(error.status(), Some(400));
        assert_eq!(error.code(), Some(ErrorCode::InvalidRequest));
        assert_eq!(error.problems().len(), 2);
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(
            excerpt(b"<html>\n  <body>Bad gateway</body>\n</html>"),
            "\"<html> <body>Bad gateway</body> </html>\""
        );
        assert_eq!(excerpt(b"  "), "an empty body");
        let long = excerpt("é".repeat(500).as_bytes());
        assert!(long.chars().count() < EXCERPT_CHARS + 5, "{long}");
        assert!(long.ends_with("…\""));
    }
}
