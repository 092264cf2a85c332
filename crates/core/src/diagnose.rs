//! Why a job failed, read from the tools' own output.
//!
//! [`diagnose`] takes the [`Failure`] the runs' exits decided (a phase, a reason, an exit
//! code), the failing run's log and what the build's checkout holds, and says what it means
//! for the caller: the [`Cause`], the Dockerfile instruction at fault with its line in the
//! committed file, the lines that explain it (the failing step's output and the tool's error,
//! never jobforge's own command lines) and a hint where one can be concrete.
//!
//! It reads what buildah 1.28, git, skopeo, podman and Nomad's task events print, and is
//! table-tested on their real output (`diagnose/testdata`). A plain function: it does no I/O,
//! so the engine's driver gathers the evidence and the step applies the answer.

mod build;
mod dockerfile;
mod log;
mod signs;
mod suggest;
#[cfg(test)]
mod tests;

pub use dockerfile::{Dockerfile, INSTRUCTIONS, Instruction};
pub use suggest::closest;

use crate::failure::{Cause, DockerfileSpot, Failure, FailureReason};
use crate::logs::LogLine;
use crate::status::{Phase, Stream};

use log::{Segment, Tool};

/// At most this many lines in an excerpt: the end of the failing step's output.
pub const EXCERPT_LINES: usize = 40;

/// What a failed build's checkout holds, read by the backend before cleanup removes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkout {
    /// The committed Dockerfile, if it exists (and is not too large to read).
    pub dockerfile: Option<String>,
    /// Files and directories of the repository (directories end in `/`), relative to its
    /// root, in order, `.git` left out; at most a few thousand.
    pub files: Vec<String>,
}

/// Everything the diagnosis reads.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    pub failure: &'a Failure,
    /// The failing run's lines, in order (the failing test's, for a test failure).
    pub lines: &'a [LogLine],
    pub checkout: Option<&'a Checkout>,
    /// The job's `dockerfile_path` and `context`, as it names them.
    pub dockerfile_path: &'a str,
    pub context: &'a str,
    /// Whether the job names credentials for git (`git_credentials_path`) and the registry.
    pub git_credentials: bool,
    pub registry_credentials: bool,
    /// How many lines `log_tail` holds.
    pub tail_lines: usize,
}

/// What the failure means, to be set on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub cause: Cause,
    pub retryable: bool,
    pub dockerfile: Option<DockerfileSpot>,
    pub excerpt: Vec<String>,
    pub hint: Option<String>,
    pub log_tail: Vec<String>,
}

impl Diagnosis {
    /// What `cause` by itself says, before any line was read.
    pub fn new(cause: Cause) -> Diagnosis {
        Diagnosis {
            cause,
            retryable: cause.is_retryable(),
            dockerfile: None,
            excerpt: Vec::new(),
            hint: None,
            log_tail: Vec::new(),
        }
    }

    fn retryable(mut self, retryable: bool) -> Diagnosis {
        self.retryable = retryable;
        self
    }

    fn excerpt<'a>(mut self, lines: impl IntoIterator<Item = &'a str>) -> Diagnosis {
        self.excerpt = excerpt(lines);
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Diagnosis {
        self.hint = Some(hint.into());
        self
    }

    /// Set on the failure everything the diagnosis found.
    pub fn apply(self, failure: &mut Failure) {
        failure.cause = self.cause;
        failure.retryable = self.retryable;
        failure.dockerfile = self.dockerfile;
        failure.excerpt = self.excerpt;
        failure.hint = self.hint;
        failure.log_tail = self.log_tail;
    }
}

/// What `evidence.failure` means for the caller.
pub fn diagnose(evidence: &Evidence<'_>) -> Diagnosis {
    let failure = evidence.failure;
    let segments = log::segments(evidence.lines);
    let mut diagnosis = match failure.reason {
        FailureReason::ExitCode => match failure.phase {
            Phase::Build => build::diagnose(evidence, &segments),
            Phase::Test => test_failed(evidence, &segments),
            Phase::Publish => transfer(evidence, &segments, Tool::Push),
        },
        FailureReason::Timeout => timed_out(evidence),
        FailureReason::Backend if signs::placement(&failure.message) => Diagnosis::new(Cause::Placement)
            .excerpt(segments.iter().flat_map(|s| s.notes.iter().copied()).filter(|n| n.contains("placement")))
            .hint("no node could take the work: see the reasons above; it may fit once nodes free up or join"),
        FailureReason::Registry => Diagnosis::new(Cause::Registry).excerpt([failure.message.as_str()]).retryable(true),
        reason => Diagnosis::new(Cause::guess(failure.phase, reason)).retryable(failure.retryable),
    };
    diagnosis.log_tail = own_tail(evidence.lines, evidence.tail_lines);
    diagnosis
}

/// The last lines a failed test printed, for its entry in `tests[]`.
pub fn test_excerpt(lines: &[LogLine]) -> Vec<String> {
    excerpt(lines.iter().filter(|l| l.stream != Stream::System).map(|l| l.text.as_str()))
}

fn test_failed(evidence: &Evidence<'_>, segments: &[Segment<'_>]) -> Diagnosis {
    let Some(run) = segments.iter().rev().find(|s| matches!(s.tool, Tool::Container | Tool::Other)) else {
        return Diagnosis::new(Cause::TestFailed);
    };
    let text = run.text();
    // Before the command ran: pulling the tested image, or starting the container.
    if let Some(event) = run.notes.iter().find(|n| n.starts_with("nomad: Driver Failure")) {
        return Diagnosis::new(Cause::Registry).excerpt([*event]).retryable(signs::transient(event));
    }
    if text.contains("initializing source") || text.contains("Trying to pull") {
        let errors = run.output.iter().copied().filter(|l| l.starts_with("Error:"));
        return Diagnosis::new(signs::registry_cause(&text)).excerpt(errors).retryable(signs::transient(&text));
    }
    let found = Diagnosis::new(Cause::TestFailed).excerpt(run.output.iter().copied());
    match (evidence.failure.exit_code, text.contains("executable file not found")) {
        (Some(_), true) if text.contains("\"sh\"") => found.hint(
            "the image has no `sh`: test_commands run as `sh -c` inside the image; add a shell to it, or test \
             with test_entry_point",
        ),
        (Some(127), _) => found.hint("exit code 127: a command the test runs is not in the image (or not on its PATH)"),
        (Some(126), _) => found.hint("exit code 126: a command the test runs is not executable"),
        (Some(137), _) => {
            found.hint("exit code 137: the test was killed (SIGKILL), most often for using more memory than it may")
        }
        _ => found,
    }
}

/// A push, pull or copy of an image that failed (the build's push, the publish).
fn transfer(evidence: &Evidence<'_>, segments: &[Segment<'_>], tool: Tool) -> Diagnosis {
    let Some(step) = segments.iter().rev().find(|s| s.tool == tool || s.tool == Tool::Pull) else {
        return Diagnosis::new(Cause::Registry);
    };
    let text = step.text();
    let cause = signs::registry_cause(&text);
    // A registry that answered but has no such image will not have it on a second try.
    let retryable = cause == Cause::Registry && (signs::transient(&text) || !signs::image_missing(&text));
    let found = Diagnosis::new(cause).excerpt(step.output.iter().copied()).retryable(retryable);
    match (cause, evidence.registry_credentials) {
        (Cause::Auth, true) => found.hint("the registry refused the credentials read from registry_credentials_path"),
        (Cause::Auth, false) => found.hint(
            "the registry asks for credentials: store them in Vault and name the path in registry_credentials_path",
        ),
        _ => found,
    }
}

fn timed_out(evidence: &Evidence<'_>) -> Diagnosis {
    let field = match evidence.failure.phase {
        Phase::Build => "build_timeout",
        Phase::Test => "test_timeout",
        Phase::Publish => "the service's --publish-timeout",
    };
    Diagnosis::new(Cause::Timeout)
        .excerpt(evidence.lines.iter().filter(|l| l.stream != Stream::System).map(|l| l.text.as_str()))
        .hint(format!("the last lines above are where it was when stopped; if it needs longer, raise {field}"))
}

/// The run's own last lines, without jobforge's.
fn own_tail(lines: &[LogLine], wanted: usize) -> Vec<String> {
    let own: Vec<&LogLine> = lines.iter().filter(|l| l.stream != Stream::System).collect();
    bounded(own[own.len().saturating_sub(wanted)..].iter().map(|l| l.text.as_str()))
}

/// A line of an excerpt or a log tail is kept to this many bytes...
pub const QUOTE_LINE_BYTES: usize = 2 * 1024;
/// ...and all of them together to this many: they live in the job's record, which a store
/// like Consul keeps in one value of at most 512 KiB.
pub const QUOTE_BYTES: usize = 16 * 1024;

/// The last of `lines` that fit in [`QUOTE_BYTES`], each cut to [`QUOTE_LINE_BYTES`].
fn bounded<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let lines: Vec<&str> = lines.into_iter().collect();
    let mut kept: Vec<String> = Vec::new();
    let mut total = 0;
    for line in lines.iter().rev() {
        let line = cut_quote(line);
        total += line.len();
        if total > QUOTE_BYTES {
            break;
        }
        kept.push(line);
    }
    kept.reverse();
    kept
}

fn cut_quote(line: &str) -> String {
    if line.len() <= QUOTE_LINE_BYTES {
        return line.to_owned();
    }
    let mut cut = QUOTE_LINE_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} [...]", &line[..cut])
}

/// The last [`EXCERPT_LINES`] of `lines`, blank lines and immediate repeats left out.
fn excerpt<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut kept: Vec<&str> = Vec::new();
    for line in lines {
        if !line.trim().is_empty() && kept.last() != Some(&line) {
            kept.push(line);
        }
    }
    bounded(kept[kept.len().saturating_sub(EXCERPT_LINES)..].iter().copied())
}
