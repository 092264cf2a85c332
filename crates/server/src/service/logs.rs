//! Reading a job's log: the lines of a phase, a test and a stream, after a cursor, the last
//! ones (`tail`), or those matching a regular expression with their context (`grep`), at most
//! `limit`, saying whether any were left out.

use std::collections::VecDeque;

use regex::Regex;

use jobforge_api::{Logs, LogsQuery};
use jobforge_core::engine::Engine;
use jobforge_core::logs::{LogLine, LogQuery};
use jobforge_core::record::JobRecord;

use super::bounded;
use crate::http::ApiError;

pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
const MAX_CONTEXT: usize = 50;
const MAX_GREP_BYTES: usize = 1024;
/// Lines read from the archive per call.
const PAGE: usize = 5000;

/// What the query asks for, checked.
struct Selection {
    query: LogsQuery,
    limit: usize,
    tail: Option<usize>,
    grep: Option<Regex>,
    context: usize,
}

impl Selection {
    fn of(query: &LogsQuery) -> Result<Selection, ApiError> {
        let limit = bounded("limit", query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let tail = query.tail.map(|n| bounded("tail", Some(n), n, MAX_LIMIT)).transpose()?;
        let context = query.context.unwrap_or(0);
        if context > MAX_CONTEXT {
            return Err(ApiError::invalid("context", format!("must be at most {MAX_CONTEXT}, not {context}")));
        }
        if query.context.is_some() && query.grep.is_none() {
            return Err(ApiError::invalid("context", "only applies with grep"));
        }
        let grep = match &query.grep {
            Some(pattern) if pattern.len() > MAX_GREP_BYTES => {
                return Err(ApiError::invalid("grep", format!("must be at most {MAX_GREP_BYTES} bytes")));
            }
            Some(pattern) => Some(
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|err| ApiError::invalid("grep", format!("is not a regular expression: {err}")))?,
            ),
            None => None,
        };
        Ok(Selection { query: query.clone(), limit, tail, grep, context })
    }

    fn keeps(&self, line: &LogLine) -> bool {
        self.query.stream.is_none_or(|stream| line.stream == stream)
    }
}

/// The lines of `record` that `query` asks for.
pub async fn read(engine: &Engine, record: &JobRecord, query: &LogsQuery) -> Result<Logs, ApiError> {
    let selection = Selection::of(query)?;
    let mut picked = Picker::new(&selection);
    let mut after = query.after;
    loop {
        let page = LogQuery { phase: query.phase, test: query.test, after, limit: PAGE };
        let lines =
            engine.logs(record.id, &page).await.map_err(|e| ApiError::internal("could not read the logs", e))?;
        let full = lines.len() == PAGE;
        after = lines.last().map_or(after, |line| line.seq);
        for line in lines.into_iter().filter(|line| selection.keeps(line)) {
            if !picked.take(line) {
                return Ok(picked.answer(record, query.after, false));
            }
        }
        if !full {
            return Ok(picked.answer(record, query.after, true));
        }
    }
}

/// Collects the selected lines as they are read, in order.
struct Picker<'a> {
    selection: &'a Selection,
    lines: VecDeque<LogLine>,
    /// Lines before the next match, kept for its context.
    before: VecDeque<LogLine>,
    /// Context lines still owed after the last match.
    after_match: usize,
    /// Lines that matched but were left out (past the limit, or before the tail).
    left_out: bool,
}

impl<'a> Picker<'a> {
    fn new(selection: &'a Selection) -> Self {
        Picker { selection, lines: VecDeque::new(), before: VecDeque::new(), after_match: 0, left_out: false }
    }

    /// Offer the next line; false once the answer is full (only without `tail`).
    fn take(&mut self, line: LogLine) -> bool {
        let Some(grep) = &self.selection.grep else { return self.push(line) };
        if grep.is_match(&line.text) {
            let before: Vec<LogLine> = self.before.drain(..).collect();
            for context in before {
                if !self.push(context) {
                    return false;
                }
            }
            self.after_match = self.selection.context;
            return self.push(line);
        }
        if self.after_match > 0 {
            self.after_match -= 1;
            return self.push(line);
        }
        self.before.push_back(line);
        if self.before.len() > self.selection.context {
            self.before.pop_front();
        }
        true
    }

    fn push(&mut self, line: LogLine) -> bool {
        match self.selection.tail {
            Some(tail) => {
                self.lines.push_back(line);
                if self.lines.len() > tail.min(self.selection.limit) {
                    self.lines.pop_front();
                    self.left_out = true;
                }
                true
            }
            None if self.lines.len() < self.selection.limit => {
                self.lines.push_back(line);
                true
            }
            None => {
                self.left_out = true;
                false
            }
        }
    }

    /// The answer; `read_all` when every line of the archive was looked at.
    fn answer(self, record: &JobRecord, after: u64, read_all: bool) -> Logs {
        let lines: Vec<LogLine> = self.lines.into();
        let next_after = lines.last().map_or(after, |line| line.seq);
        // Nothing matches beyond `next_after`: everything was read and nothing cut at the end.
        let complete = record.status().is_terminal() && read_all;
        Logs { job_id: record.id, status: record.status(), lines, next_after, complete, truncated: self.left_out }
    }
}
