//! `submit --watch` on a terminal: one line per phase below the scrolling log, a spinner and
//! the time so far while it runs, each test's result as it ends, and its duration when done.
//!
//! It only draws what the job's status says; the lines and their order come from the event
//! stream, which resumes after a dropped connection without losing or repeating any.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use jobforge_client::{JobView, LogLine};
use jobforge_core::record::TestStatus;
use jobforge_core::{JobStatus, Phase};

use crate::output::{line_text, seconds, test_status};

/// How often a spinner turns.
const TICK: Duration = Duration::from_millis(120);

pub struct Live {
    bars: MultiProgress,
    phases: BTreeMap<Phase, ProgressBar>,
}

impl Live {
    pub fn new() -> Live {
        Live { bars: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()), phases: BTreeMap::new() }
    }

    /// A log line, above the phase lines.
    pub fn line(&self, line: &LogLine) {
        // Printing only fails when the terminal went away; the next status says it all.
        let _ = self.bars.println(line_text(line));
    }

    /// Draw the phases as `job` has them.
    pub fn status(&mut self, job: &JobView) {
        for phase in Phase::ALL {
            let Some(start) = job.timestamps.start(phase) else { continue };
            let bars = &self.bars;
            let bar = self.phases.entry(phase).or_insert_with(|| {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(running_style());
                bar.set_prefix(phase.to_string());
                bar.enable_steady_tick(TICK);
                bar
            });
            if bar.is_finished() {
                continue;
            }
            match job.timestamps.end(phase) {
                None => bar.set_message(tests(job, phase)),
                Some(end) => {
                    bar.set_style(done_style());
                    let verdict = verdict(job, phase);
                    let tests = tests(job, phase);
                    bar.finish_with_message(format!("{verdict} in {}  {tests}", seconds(end.since(start))));
                }
            }
        }
    }

    /// Stop drawing: phases still running (the stream ended early) stay as they were.
    pub fn finish(self) {
        for bar in self.phases.values().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
    }
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:8} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn done_style() -> ProgressStyle {
    ProgressStyle::with_template("  {prefix:8} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn verdict(job: &JobView, phase: Phase) -> &'static str {
    if job.failed_phase == Some(phase) {
        "FAILED"
    } else if job.status == JobStatus::Killed && job.phase == Some(phase) {
        "stopped"
    } else {
        "passed"
    }
}

/// For the test phase: `[0] passed 1.2s  [1] running`; nothing for the others.
fn tests(job: &JobView, phase: Phase) -> String {
    if phase != Phase::Test {
        return String::new();
    }
    let each: Vec<String> = job
        .tests
        .iter()
        .map(|t| {
            let took = t.duration_ms.filter(|_| t.result.status != TestStatus::Running);
            let took = took.map(|ms| format!(" {}", seconds(Duration::from_millis(ms)))).unwrap_or_default();
            format!("[{}] {}{took}", t.result.index, test_status(t.result.status))
        })
        .collect();
    each.join("  ")
}
