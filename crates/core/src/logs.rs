//! Log lines: what a backend run produces ([`RunLine`]) and what the store archives ([`LogLine`]).
//!
//! A run numbers its own lines from 1 (`n`); the store gives every archived line a per-job
//! sequence number (`seq`) that readers resume from. The origin (run, n) makes archiving
//! idempotent after a crash: a line read twice is stored once.

use serde::{Deserialize, Serialize};

use crate::id::RunId;
use crate::status::{Phase, Stream};
use crate::time::Timestamp;

/// Longest line kept; longer output is split into several lines of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// One line as a run produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLine {
    /// 1-based position of the line within its run.
    pub n: u64,
    pub stream: Stream,
    pub ts: Timestamp,
    pub text: String,
}

/// A line on its way into the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogLine {
    pub phase: Phase,
    pub test: Option<u32>,
    /// The run and line number it came from; `None` for lines the engine writes itself.
    /// The store keeps at most one line per origin.
    pub origin: Option<(RunId, u64)>,
    pub stream: Stream,
    pub ts: Timestamp,
    pub text: String,
}

impl NewLogLine {
    /// A line of `run`, as the backend produced it.
    pub fn from_run(run: &RunId, line: RunLine) -> Self {
        let key = run.key();
        NewLogLine {
            phase: key.phase,
            test: key.test_index,
            origin: Some((run.clone(), line.n)),
            stream: line.stream,
            ts: line.ts,
            text: line.text,
        }
    }

    /// A line jobforge writes about the job itself (a timeout, a kill, cleanup).
    pub fn system(phase: Phase, test: Option<u32>, text: impl Into<String>) -> Self {
        NewLogLine { phase, test, origin: None, stream: Stream::System, ts: Timestamp::now(), text: text.into() }
    }
}

/// One archived line, as readers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Per-job, strictly increasing, starting at 1.
    pub seq: u64,
    pub ts: Timestamp,
    pub phase: Phase,
    /// 0-based index of the test, for test-phase lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<u32>,
    pub stream: Stream,
    pub text: String,
}

/// Which archived lines to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub phase: Option<Phase>,
    pub test: Option<u32>,
    /// Only lines with `seq` greater than this.
    pub after: u64,
    pub limit: usize,
}

impl LogQuery {
    /// Lines after `after`, at most `limit`, of any phase.
    pub fn after(after: u64, limit: usize) -> Self {
        LogQuery { phase: None, test: None, after, limit }
    }
}

/// Split `text` into pieces of at most `MAX_LINE_BYTES`, on character boundaries.
pub fn split_long(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_split_on_char_boundaries() {
        let text = "é".repeat(MAX_LINE_BYTES);
        let pieces = split_long(&text);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.len() <= MAX_LINE_BYTES));
        assert_eq!(split_long("short"), ["short"]);
    }
}
