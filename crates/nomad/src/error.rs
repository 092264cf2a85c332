//! [`NomadError`]: every way a call to Nomad can fail, keeping Nomad's own words.
//!
//! Nomad answers errors in plain text (`job not found`, `Permission denied`), and job
//! validation failures as HTTP 500 with a go-multierror list; this module turns a status and
//! body into the right variant and the list into one line per error. It must not decide what
//! to do about an error (retry, resubmit): that is the backend's call. No message may carry the
//! ACL token; the client scrubs bodies before they get here.

use std::fmt;

/// Longest excerpt of an error body kept in a message (the multierror list of an invalid job
/// is kept whole: every line of it is something to fix).
const MESSAGE_CHARS: usize = 1000;

/// A call to Nomad failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NomadError {
    /// The configuration cannot work (a bad `NOMAD_ADDR`, an unreadable CA file, ...).
    #[error("invalid Nomad configuration: {0}")]
    Config(String),
    /// 404: what was asked for does not exist (`alloc not found`, `Unknown allocation "..."`,
    /// `task "x" not started yet. No logs available`), or the address does not lead to Nomad.
    #[error("not found in Nomad: {0}")]
    NotFound(String),
    /// 403: the token lacks a capability (`Permission denied`) or is unknown
    /// (`ACL token not found`).
    #[error("Nomad denied the request: {0}")]
    PermissionDenied(String),
    /// 400: Nomad found the request itself malformed (`must provide task name`, ...).
    #[error("Nomad refused the request as malformed: {0}")]
    BadRequest(String),
    /// Nomad rejected the job spec (a 500 carrying a go-multierror list): one error per line.
    #[error("Nomad rejected the job: {}", Lines(.0))]
    InvalidJob(String),
    /// A check-and-set register lost (`EnforceIndex`): the job exists already, or changed since
    /// the index given. Nomad says so with a 500 whose text begins `Enforcing job modify index`.
    #[error("Nomad refused the register: {0}")]
    IndexConflict(String),
    /// Any other error answer (500 `No cluster leader`, a proxy's 502, ...).
    #[error("Nomad failed the request (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// No answer: connection refused, DNS, TLS, a timeout, or a connection that broke off.
    /// `address` is the Nomad address configured (without credentials).
    #[error("cannot reach Nomad at {address}: {message}")]
    Unreachable { address: String, message: String },
    /// A success answer whose body is not the `what` expected.
    #[error("cannot read {what} from Nomad's answer: {message}")]
    Decode { what: String, message: String },
}

impl NomadError {
    /// The HTTP status of Nomad's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            NomadError::NotFound(_) => Some(404),
            NomadError::PermissionDenied(_) => Some(403),
            NomadError::BadRequest(_) => Some(400),
            NomadError::InvalidJob(_) | NomadError::IndexConflict(_) => Some(500),
            NomadError::Server { status, .. } => Some(*status),
            NomadError::Config(_) | NomadError::Unreachable { .. } | NomadError::Decode { .. } => None,
        }
    }

    /// Trying the same call again later may work: Nomad did not answer, has no leader for now,
    /// or a proxy in front of it is unavailable. A refusal (4xx, an invalid job) never is.
    pub fn is_transient(&self) -> bool {
        match self {
            NomadError::Unreachable { .. } => true,
            NomadError::Server { status, message } => {
                matches!(status, 502..=504) || message.contains("No cluster leader") || message.contains("no leader")
            }
            NomadError::Config(_)
            | NomadError::NotFound(_)
            | NomadError::PermissionDenied(_)
            | NomadError::BadRequest(_)
            | NomadError::InvalidJob(_)
            | NomadError::IndexConflict(_)
            | NomadError::Decode { .. } => false,
        }
    }

    /// The error for an answer with a failure `status` and plain-text `body`.
    pub(crate) fn from_answer(status: u16, body: &str) -> NomadError {
        let text = body.trim();
        let text = if text.is_empty() { "(no message)" } else { text };
        match status {
            400 => NomadError::BadRequest(excerpt(text)),
            403 => NomadError::PermissionDenied(excerpt(text)),
            404 => NomadError::NotFound(excerpt(text)),
            500 => {
                let lines = multierror_lines(text);
                let flat = lines.as_deref().map_or_else(|| strip_rpc_prefix(text).to_owned(), |lines| lines.join("\n"));
                if flat.contains("Enforcing job modify index") {
                    NomadError::IndexConflict(excerpt(&flat))
                } else if lines.is_some() {
                    NomadError::InvalidJob(flat)
                } else {
                    NomadError::Server { status, message: excerpt(&flat) }
                }
            }
            _ => NomadError::Server { status, message: excerpt(text) },
        }
    }
}

/// The errors of a go-multierror text (`2 errors occurred:\n\t* a\n\t* b\n\n`), one per line;
/// `None` when `text` is not one.
///
/// Lists nest (a task group's validation error holds its own list), and every level is
/// indented the same, so the counts in the headers give the shape: a nested error becomes
/// `<parent>: <child>` lines. Text that does not follow the counts (an error message with a
/// newline of its own) falls back to its non-empty lines, without the headers and bullets.
fn multierror_lines(text: &str) -> Option<Vec<String>> {
    let text = strip_rpc_prefix(text);
    let (first, _) = text.split_once('\n').unwrap_or((text, ""));
    header_count(first.trim())?;
    let items: Vec<&str> = text
        .lines()
        .map(|line| {
            let line = line.trim();
            line.strip_prefix("* ").unwrap_or(line).trim()
        })
        .filter(|line| !line.is_empty())
        .collect();

    let mut position = 0;
    let mut lines = Vec::new();
    if parse_list(&items, &mut position, "", &mut lines) && position == items.len() {
        return Some(lines);
    }
    let fallback = items.into_iter().filter(|line| header_count(line).is_none()).map(str::to_owned).collect();
    Some(fallback)
}

/// Reads one list (its header at `items[*position]`) into `out`, each error prefixed with the
/// errors it is nested in. False when the items do not follow the counts.
fn parse_list(items: &[&str], position: &mut usize, prefix: &str, out: &mut Vec<String>) -> bool {
    let Some(count) = items.get(*position).and_then(|header| header_count(header)) else { return false };
    *position += 1;
    for _ in 0..count {
        let Some(item) = items.get(*position) else { return false };
        *position += 1;
        match split_nested(item) {
            // `Task group x validation failed: 2 errors occurred:` opens a nested list.
            Some((parent, header)) => {
                let nested_prefix = format!("{prefix}{parent}: ");
                let mut nested = vec![header];
                nested.extend_from_slice(&items[*position..]);
                let mut nested_position = 0;
                if !parse_list(&nested, &mut nested_position, &nested_prefix, out) {
                    return false;
                }
                *position += nested_position - 1;
            }
            None => out.push(format!("{prefix}{item}")),
        }
    }
    true
}

/// `N error(s) occurred:` → N.
fn header_count(line: &str) -> Option<usize> {
    let (count, rest) = line.split_once(' ')?;
    let count: usize = count.parse().ok()?;
    matches!(rest, "error occurred:" | "errors occurred:").then_some(count)
}

/// `parent: N errors occurred:` → (`parent`, `N errors occurred:`).
fn split_nested(item: &str) -> Option<(&str, &str)> {
    let rest = item.strip_suffix("occurred:")?.trim_end();
    let rest = rest.strip_suffix("errors").or_else(|| rest.strip_suffix("error"))?.trim_end();
    let digits = rest.len() - rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let start = rest.len() - digits;
    let parent = rest[..start].trim_end().trim_end_matches(':').trim_end();
    (!parent.is_empty()).then_some((parent, &item[start..]))
}

/// Errors forwarded between Nomad servers may come back prefixed `rpc error: `.
fn strip_rpc_prefix(text: &str) -> &str {
    let mut text = text;
    while let Some(rest) = text.strip_prefix("rpc error: ") {
        text = rest;
    }
    text
}

/// A body for a message: at most [`MESSAGE_CHARS`] characters, on one line.
fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut quoted: String = one_line.chars().take(MESSAGE_CHARS).collect();
    if quoted.len() < one_line.len() {
        quoted.push('…');
    }
    quoted
}

/// Shows a multi-line message with every line after the first indented under it.
struct Lines<'a>(&'a str);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = self.0.lines();
        if let Some(first) = lines.next() {
            f.write_str(first)?;
        }
        for line in lines {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(status: u16, body: &str, expected: NomadError) {
        assert_eq!(NomadError::from_answer(status, body), expected);
    }

    #[test]
    fn plain_text_errors_keep_nomads_words() {
        check(404, "job not found", NomadError::NotFound("job not found".into()));
        check(403, "Permission denied", NomadError::PermissionDenied("Permission denied".into()));
        check(403, "ACL token not found\n", NomadError::PermissionDenied("ACL token not found".into()));
        check(400, "must provide task name", NomadError::BadRequest("must provide task name".into()));
        check(500, "No cluster leader", NomadError::Server { status: 500, message: "No cluster leader".into() });
        check(502, "", NomadError::Server { status: 502, message: "(no message)".into() });
    }

    #[test]
    fn a_multierror_becomes_one_line_per_error() {
        let body = "2 errors occurred:\n\t* Missing job datacenters\n\t* Task group cache: count must be >= 0\n\n";
        let error = NomadError::from_answer(500, body);
        assert_eq!(
            error,
            NomadError::InvalidJob("Missing job datacenters\nTask group cache: count must be >= 0".into())
        );
        assert_eq!(
            error.to_string(),
            "Nomad rejected the job: Missing job datacenters\n  Task group cache: count must be >= 0"
        );
    }

    #[test]
    fn nested_multierrors_carry_their_parent() {
        // What go-multierror writes for a group whose validation failed twice.
        let inner = "2 errors occurred:\n\t* Missing tasks for task group\n\t* Task group count can't be negative\n\n";
        let body = format!(
            "rpc error: 2 errors occurred:\n\t* Task group cache validation failed: {inner}\n\t* Job must have a name\n\n"
        );
        check(
            500,
            &body,
            NomadError::InvalidJob(
                "Task group cache validation failed: Missing tasks for task group\n\
                 Task group cache validation failed: Task group count can't be negative\n\
                 Job must have a name"
                    .into(),
            ),
        );
    }

    #[test]
    fn a_multierror_that_does_not_follow_its_counts_keeps_its_lines() {
        let body = "1 error occurred:\n\t* driver config: line one\nline two\n\n";
        check(500, body, NomadError::InvalidJob("driver config: line one\nline two".into()));
    }

    #[test]
    fn an_enforce_index_conflict_is_its_own_variant() {
        let body = "Enforcing job modify index 0: job already exists";
        check(500, body, NomadError::IndexConflict(body.into()));
        check(500, &format!("rpc error: {body}"), NomadError::IndexConflict(body.into()));
    }

    #[test]
    fn long_bodies_are_cut() {
        let NomadError::Server { message, .. } = NomadError::from_answer(502, &"<p>bad gateway</p>\n".repeat(200))
        else {
            panic!("a 502 is a server error")
        };
        assert!(message.chars().count() <= MESSAGE_CHARS + 1 && message.ends_with('…'), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn only_answers_worth_retrying_are_transient() {
        assert!(NomadError::Unreachable { address: "http://x".into(), message: "refused".into() }.is_transient());
        assert!(NomadError::Server { status: 500, message: "No cluster leader".into() }.is_transient());
        assert!(NomadError::Server { status: 503, message: String::new() }.is_transient());
        assert!(!NomadError::InvalidJob("x".into()).is_transient());
        assert!(!NomadError::NotFound("job not found".into()).is_transient());
    }
}
