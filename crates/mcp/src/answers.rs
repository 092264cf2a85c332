//! What the tools answer, sized for an agent's context: no answer over [`MAX_ANSWER_BYTES`]
//! (about 20,000 tokens at 4 bytes a token), no log line over [`MAX_LINE_BYTES`], and every cut
//! answer says so (`truncated`) and how to get the rest (`next_after`, and a `note`).

use schemars::JsonSchema;
use serde::Serialize;

use jobforge_api::JobView;
use jobforge_core::JobStatus;
use jobforge_core::events::EventEntry;
use jobforge_core::logs::LogLine;

/// The most one answer holds, in bytes of JSON.
pub const MAX_ANSWER_BYTES: usize = 80_000;
/// The most one log line holds in an answer; longer lines are cut with a marker.
pub const MAX_LINE_BYTES: usize = 2048;
/// Room kept for everything in an answer but its list.
const FRAME_BYTES: usize = 4_000;

/// getLogs: the lines asked for, in order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogsAnswer {
    pub lines: Vec<LogLine>,
    /// Pass as `after` for the lines that follow.
    pub next_after: u64,
    /// Lines matching the query were left out (past the limit, before the tail, or to keep
    /// the answer small); `note` says how to get them.
    pub truncated: bool,
    /// The job's status now.
    pub status: JobStatus,
    /// The job has ended and no line matches beyond `next_after`.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// watchJob: the job's events since `after`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WatchAnswer {
    /// Status changes, phases and tests starting and ending, kills, cleanup, in order.
    pub events: Vec<EventEntry>,
    /// Pass as `after` to watch on from here.
    pub next_after: u64,
    /// The job has ended (and its cleanup is done): nothing more will happen.
    pub ended: bool,
    /// The job's status now.
    pub status: JobStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Cut `text` to [`MAX_LINE_BYTES`] on a character boundary, saying how much was cut.
pub fn cut_line(text: &mut String) {
    if text.len() <= MAX_LINE_BYTES {
        return;
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(" …[{cut} more bytes cut]"));
}

/// The size of `value` as JSON.
fn bytes(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(0, |json| json.len())
}

/// Lines cut to size, and as many as fit in an answer: from the end when `keep_last` (a
/// tail), else from the start. Whether any were dropped.
pub fn fit_lines(mut lines: Vec<LogLine>, keep_last: bool) -> (Vec<LogLine>, bool) {
    for line in &mut lines {
        cut_line(&mut line.text);
    }
    let budget = MAX_ANSWER_BYTES - FRAME_BYTES;
    let mut used = 0;
    let fits = |line: &LogLine, used: &mut usize| {
        *used += bytes(line) + 1;
        *used <= budget
    };
    let kept = if keep_last {
        let from_end = lines.iter().rev().take_while(|line| fits(line, &mut used)).count();
        lines.split_off(lines.len() - from_end)
    } else {
        let from_start = lines.iter().take_while(|line| fits(line, &mut used)).count();
        lines.truncate(from_start);
        lines
    };
    (kept, used > budget)
}

/// A job view cut to size: every quoted line cut to [`MAX_LINE_BYTES`], then, while too big,
/// the oldest lines dropped: of the log tail first (the excerpt says more), then of the tests'
/// excerpts, then of the failure's excerpt.
pub fn fit_view(mut view: JobView) -> JobView {
    for line in quoted_lines(&mut view) {
        cut_line(line);
    }
    for list in 0..lists_in(&view) {
        while bytes(&view) > MAX_ANSWER_BYTES {
            match list_at(&mut view, list) {
                Some(lines) if !lines.is_empty() => {
                    lines.remove(0);
                }
                _ => break,
            }
        }
    }
    view
}

/// The lists of quoted lines in a view, in the order they give way: the log tail, each
/// test's excerpt, the failure's excerpt.
fn lists_in(view: &JobView) -> usize {
    2 + view.tests.len()
}

fn list_at(view: &mut JobView, index: usize) -> Option<&mut Vec<String>> {
    let tests = view.tests.len();
    match index {
        0 => view.error.as_mut().map(|e| &mut e.log_tail),
        i if i <= tests => view.tests.get_mut(i - 1).map(|t| &mut t.result.excerpt),
        _ => view.error.as_mut().map(|e| &mut e.excerpt),
    }
}

fn quoted_lines(view: &mut JobView) -> impl Iterator<Item = &mut String> {
    let tests = view.tests.iter_mut().flat_map(|t| t.result.excerpt.iter_mut());
    let error = view.error.iter_mut().flat_map(|e| e.log_tail.iter_mut().chain(e.excerpt.iter_mut()));
    error.chain(tests)
}

/// Events, as many as fit; whether any were dropped (the rest come with `next_after`).
pub fn fit_events(events: &mut Vec<EventEntry>) -> bool {
    let budget = MAX_ANSWER_BYTES - FRAME_BYTES;
    let mut used = 0;
    let keep = events.iter().take_while(|event| {
        used += bytes(*event) + 1;
        used <= budget
    });
    let kept = keep.count();
    let dropped = kept < events.len();
    events.truncate(kept);
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobforge_core::{Phase, Stream, Timestamp};

    fn line(seq: u64, text: &str) -> LogLine {
        LogLine {
            seq,
            ts: Timestamp::now(),
            phase: Phase::Build,
            test: None,
            stream: Stream::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_with_a_marker() {
        let mut text = "é".repeat(MAX_LINE_BYTES);
        cut_line(&mut text);
        assert!(text.len() < MAX_LINE_BYTES + 40, "{}", text.len());
        assert!(text.ends_with(&format!(" …[{} more bytes cut]", MAX_LINE_BYTES)), "{}", &text[text.len() - 30..]);
        let mut short = "fine".to_owned();
        cut_line(&mut short);
        assert_eq!(short, "fine");
    }

    #[test]
    fn a_job_view_keeps_its_diagnosis_and_gives_up_the_log_tail_first() {
        use jobforge_core::record::{Failure, FailureReason, JobRecord};
        use jobforge_core::state::{CleanupReport, JobState, Outcome};
        let spec = jobforge_core::validate::job_spec(&serde_json::json!({
            "repo_url": "https://example.com/r.git", "image_name": "app", "registry_url": "127.0.0.1:5000",
            "test_commands": ["true"],
        }))
        .unwrap();
        let id = jobforge_core::JobId::new();
        let temp = format!("127.0.0.1:5000/temp/{id}:latest").parse().unwrap();
        let mut record = JobRecord::new(id, spec, temp, Timestamp::now());
        let mut failure = Failure::new(Phase::Build, FailureReason::ExitCode, "build exited with code 1");
        failure.excerpt = (0..40).map(|n| format!("excerpt {n} {}", "e".repeat(1500))).collect();
        failure.log_tail = (0..60).map(|n| format!("tail {n} {}", "t".repeat(5000))).collect();
        record.state = JobState::Ended { outcome: Outcome::Failed { failure }, cleanup: CleanupReport::default() };

        let view = fit_view(JobView::from_record(&record));
        assert!(bytes(&view) <= MAX_ANSWER_BYTES, "{}", bytes(&view));
        let error = view.error.unwrap();
        assert_eq!(error.excerpt.len(), 40, "the excerpt is kept whole");
        assert!(error.log_tail.len() < 60 && error.log_tail.last().unwrap().starts_with("tail 59 "));
        assert!(error.log_tail.iter().all(|l| l.len() < MAX_LINE_BYTES + 40));
    }

    #[test]
    fn answers_stay_under_the_budget_keeping_the_right_end() {
        let lines: Vec<LogLine> = (1..=500).map(|n| line(n, &"x".repeat(1000))).collect();
        let (tail, dropped) = fit_lines(lines.clone(), true);
        assert!(dropped && tail.last().map(|l| l.seq) == Some(500), "a tail keeps the last lines");
        let (head, dropped) = fit_lines(lines, false);
        assert!(dropped && head.first().map(|l| l.seq) == Some(1), "a page keeps the first lines");
        for kept in [tail, head] {
            assert!(serde_json::to_vec(&kept).unwrap().len() <= MAX_ANSWER_BYTES);
        }
        let (few, dropped) = fit_lines(vec![line(1, "a"), line(2, "b")], false);
        assert!(!dropped && few.len() == 2);
    }
}
