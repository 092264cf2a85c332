//! The journal of a job: the log lines its runs produce ([`RunLine`]) and the engine writes, and
//! the job's events, archived as one sequence ([`Entry`]).
//!
//! A run numbers its own lines (`n`, see [`RunCursor`]); the archive gives every entry a
//! per-job sequence number (`seq`) that readers resume from. Every archived entry has an
//! [`Origin`] (a run's line n, or the engine's entry n), which makes archiving idempotent after
//! a crash: an entry written twice is stored once.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::events::{EventEntry, JobEvent};
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

/// Where an archived entry came from. The archive keeps at most one entry per origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Line `n` of a run, as the backend numbered it.
    Run { run: RunId, n: u64 },
    /// Entry `n` the engine wrote about the job (an event, or a line of its own).
    Engine { n: u64 },
}

/// What origins are called where they are stored as text: the run id, or this.
pub const ENGINE_ORIGIN: &str = "engine";

impl Origin {
    /// The origin's source as stored: the run id, or [`ENGINE_ORIGIN`].
    pub fn source(&self) -> &str {
        match self {
            Origin::Run { run, .. } => run.as_str(),
            Origin::Engine { .. } => ENGINE_ORIGIN,
        }
    }

    pub fn n(&self) -> u64 {
        match self {
            Origin::Run { n, .. } | Origin::Engine { n } => *n,
        }
    }

    /// Back from its stored form: a run id or [`ENGINE_ORIGIN`], and the number.
    pub fn parse(source: &str, n: u64) -> Option<Origin> {
        if source == ENGINE_ORIGIN {
            return Some(Origin::Engine { n });
        }
        source.parse().ok().map(|run| Origin::Run { run, n })
    }
}

/// Stored as `[source, n]`, the form the Consul store has always used for run lines.
impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.source(), self.n()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (source, n) = <(String, u64)>::deserialize(deserializer)?;
        Origin::parse(&source, n).ok_or_else(|| serde::de::Error::custom(format!("not an origin: {source:?}")))
    }
}

/// A line on its way into the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLogLine {
    pub phase: Phase,
    pub test: Option<u32>,
    /// Where it came from; `None` only for lines that may be stored any number of times.
    pub origin: Option<Origin>,
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
            origin: Some(Origin::Run { run: run.clone(), n: line.n }),
            stream: line.stream,
            ts: line.ts,
            text: line.text,
        }
    }

    /// A line jobforge writes about the job itself (a timeout, a kill), with no origin.
    pub fn system(phase: Phase, test: Option<u32>, text: impl Into<String>) -> Self {
        NewLogLine { phase, test, origin: None, stream: Stream::System, ts: Timestamp::now(), text: text.into() }
    }
}

/// An event on its way into the archive: entry `n` of the engine's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub n: u64,
    pub ts: Timestamp,
    pub event: JobEvent,
}

impl NewEvent {
    pub fn origin(&self) -> Origin {
        Origin::Engine { n: self.n }
    }
}

/// Anything on its way into the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewEntry {
    Line(NewLogLine),
    Event(NewEvent),
}

impl NewEntry {
    pub fn origin(&self) -> Option<Origin> {
        match self {
            NewEntry::Line(line) => line.origin.clone(),
            NewEntry::Event(event) => Some(event.origin()),
        }
    }
}

/// One archived entry of a job's journal, as readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Line(LogLine),
    Event(EventEntry),
}

impl Entry {
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Line(line) => line.seq,
            Entry::Event(event) => event.seq,
        }
    }
}

/// Which journal entries to read: events always, lines of one phase if `phase` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryQuery {
    pub phase: Option<Phase>,
    /// Only entries with `seq` greater than this.
    pub after: u64,
    pub limit: usize,
}

/// Where following a run resumes: for each of the run's line sequences (see
/// `ports::Backend`), the highest line number archived in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCursor {
    highest: Vec<u64>,
}

impl RunCursor {
    /// Nothing archived yet, in a run of `sequences` line sequences.
    pub fn start(sequences: u64) -> Self {
        RunCursor { highest: vec![0; sequences.max(1) as usize] }
    }

    /// The cursor after the lines numbered `archived`.
    pub fn after(sequences: u64, archived: impl IntoIterator<Item = u64>) -> Self {
        let mut cursor = RunCursor::start(sequences);
        for n in archived {
            cursor.advance(n);
        }
        cursor
    }

    pub fn sequences(&self) -> u64 {
        self.highest.len() as u64
    }

    /// Record that line `n` is archived.
    pub fn advance(&mut self, n: u64) {
        let slot = (n % self.sequences()) as usize;
        self.highest[slot] = self.highest[slot].max(n);
    }

    /// Whether line `n` comes after the cursor in its sequence.
    pub fn is_new(&self, n: u64) -> bool {
        n > self.highest[(n % self.sequences()) as usize]
    }

    /// The highest number archived in `sequence`.
    pub fn highest(&self, sequence: u64) -> u64 {
        self.highest.get(sequence as usize).copied().unwrap_or(0)
    }
}

impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.highest.iter().map(u64::to_string).collect();
        write!(f, "[{}]", parts.join(","))
    }
}

/// One archived line, as readers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// The one line a store keeps once a job's log reached its cap of `cap` bytes.
pub fn capped_marker(cap: u64) -> String {
    format!("log truncated: this job's stored log reached {cap} bytes; the rest was not stored")
}

/// What ends a line that was cut at [`MAX_LINE_BYTES`].
pub const CUT_MARKER: &str = " [... line cut: jobforge keeps the first 16 KiB of a line]";

/// `text` as a log keeps it: whole up to [`MAX_LINE_BYTES`], otherwise as much of its start
/// as fits with [`CUT_MARKER`] in `MAX_LINE_BYTES` (cut on a character boundary). Cutting a
/// cut line again changes nothing.
pub fn cut_long(text: &str) -> String {
    if text.len() <= MAX_LINE_BYTES {
        return text.to_owned();
    }
    mark_cut(text)
}

/// The start of `text` that fits with [`CUT_MARKER`] in [`MAX_LINE_BYTES`], and the marker:
/// for a line whose end was dropped, however long the part that was read.
pub fn mark_cut(text: &str) -> String {
    if text.ends_with(CUT_MARKER) && text.len() <= MAX_LINE_BYTES {
        return text.to_owned();
    }
    let mut cut = text.len().min(MAX_LINE_BYTES - CUT_MARKER.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{CUT_MARKER}", &text[..cut])
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
    fn cursors_resume_each_sequence_on_its_own() {
        // Four sequences, as on Nomad: stdout 4k, stderr 4k+1, ...
        let cursor = RunCursor::after(4, [4, 8, 5, 12]);
        assert_eq!((cursor.highest(0), cursor.highest(1), cursor.highest(2)), (12, 5, 0));
        assert!(!cursor.is_new(8) && cursor.is_new(16), "stdout resumes after its own last line");
        assert!(cursor.is_new(9), "a later stderr line is new though stdout went further");
        assert!(cursor.is_new(2), "a sequence with nothing archived starts at its first line");
        let one = RunCursor::after(1, [1, 2, 3]);
        assert!(!one.is_new(3) && one.is_new(4));
    }

    #[test]
    fn origins_keep_their_stored_form() {
        let run = crate::id::RunKey::build(crate::id::JobId::new()).id();
        let origin = Origin::Run { run: run.clone(), n: 7 };
        assert_eq!(serde_json::to_value(&origin).unwrap(), serde_json::json!([run.as_str(), 7]));
        for origin in [origin, Origin::Engine { n: 3 }] {
            let back: Origin = serde_json::from_value(serde_json::to_value(&origin).unwrap()).unwrap();
            assert_eq!(back, origin);
        }
    }

    #[test]
    fn long_lines_split_on_char_boundaries() {
        let text = "é".repeat(MAX_LINE_BYTES);
        let pieces = split_long(&text);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.len() <= MAX_LINE_BYTES));
        assert_eq!(split_long("short"), ["short"]);
    }

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        assert_eq!(cut_long("short"), "short");
        let exact = "x".repeat(MAX_LINE_BYTES);
        assert_eq!(cut_long(&exact), exact, "a line of exactly the limit is kept whole");
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = cut_long(&long);
        assert!(cut.ends_with(CUT_MARKER));
        assert!(cut.len() <= MAX_LINE_BYTES && cut.len() > MAX_LINE_BYTES - 2);
        let kept = &cut[..cut.len() - CUT_MARKER.len()];
        assert!(kept.chars().all(|c| c == 'é'));
        assert_eq!(cut_long(&cut), cut, "cutting again changes nothing");
        assert_eq!(mark_cut(&exact).len(), MAX_LINE_BYTES, "a line whose end was dropped is marked");
        assert!(mark_cut("short").ends_with(CUT_MARKER));
        assert_eq!(mark_cut(&mark_cut(&exact)), mark_cut(&exact));
    }
}
