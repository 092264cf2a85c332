//! How results look: text for people, one JSON document (or one JSON line per event) for
//! scripts with `--json`.

use std::collections::BTreeMap;

use jobforge_client::{CleanedUp, Health, History, JobView, LogLine, Ready, Submitted};
use jobforge_core::events::{EventEntry, JobEvent};
use jobforge_core::record::{PhaseTimes, TestStatus};
use jobforge_core::{JobStatus, Phase, Stream, Timestamp};

pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    fn emit(&self, value: &impl serde::Serialize) {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("error: cannot print JSON: {err}"),
        }
    }

    pub fn message(&self, text: &str) {
        if self.json {
            self.emit(&serde_json::json!({ "message": text }));
        } else {
            println!("{text}");
        }
    }

    pub fn submitted(&self, submitted: &Submitted) {
        if self.json {
            self.emit(
                &serde_json::json!({ "event": "submitted", "job_id": submitted.job_id, "status": submitted.status }),
            );
        } else {
            println!("submitted job {} ({})", submitted.job_id, submitted.status);
        }
    }

    /// A new token, shown this once, and its auth file entry.
    pub fn new_token(&self, token: &str, entry: &str) {
        if self.json {
            self.emit(&serde_json::json!({ "token": token, "entry": entry }));
        } else {
            println!("token (shown only now; give it to its holder as JOBFORGE_TOKEN):\n  {token}\n");
            println!("add this under `tokens:` in the auth file (it holds the token's SHA-256, not the token):");
            print!("{entry}");
        }
    }

    pub fn line(&self, line: &LogLine) {
        if self.json {
            self.emit(&serde_json::json!({ "event": "log", "line": line }));
            return;
        }
        println!("{}", line_text(line));
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A job event: every one as a JSON line for scripts; for people, the test endings (the
    /// phases are told by `transitions`).
    pub fn event(&self, entry: &EventEntry) {
        if self.json {
            self.emit(&serde_json::json!({ "event": entry.event.name(), "entry": entry }));
            return;
        }
        if let JobEvent::TestEnded { index, status, exit_code, duration_ms } = &entry.event {
            let code = exit_code.map(|c| format!(" with code {c}")).unwrap_or_default();
            let took = duration_ms.map(|ms| format!(" after {}", seconds_ms(ms))).unwrap_or_default();
            println!("==> test {index} {}{code}{took}", test_status(*status));
        }
    }

    /// Print what changed between two states of a job: phases that started or ended.
    pub fn transitions(&self, before: Option<&JobView>, after: &JobView) {
        if self.json {
            if before.is_none_or(|b| b.status != after.status || b.updated_at != after.updated_at) {
                self.emit(&serde_json::json!({ "event": "status", "job": after }));
            }
            return;
        }
        let empty = PhaseTimes::default();
        let old = before.map_or(&empty, |b| &b.timestamps);
        let new = &after.timestamps;
        for phase in Phase::ALL {
            let (start, end) = (start_of(new, phase), end_of(new, phase));
            if start.is_some() && start_of(old, phase).is_none() {
                let detail = match (phase, after.tests.len()) {
                    (Phase::Test, n) => format!(" ({n} test{})", if n == 1 { "" } else { "s" }),
                    _ => String::new(),
                };
                println!("==> {phase} started{detail}");
            }
            if let (Some(start), Some(end)) = (start, end)
                && end_of(old, phase).is_none()
            {
                let failed = after.failed_phase == Some(phase);
                let killed = after.status == JobStatus::Killed && after.phase == Some(phase);
                let verdict = if failed {
                    "failed"
                } else if killed {
                    "stopped"
                } else {
                    "passed"
                };
                println!("==> {phase} {verdict} after {}", seconds(end.since(start)));
            }
        }
    }

    pub fn finished(&self, job: &JobView) {
        if self.json {
            self.emit(&serde_json::json!({ "event": "end", "job": job }));
            return;
        }
        let total = job.durations_ms.total.map(|ms| format!(" in {}", seconds_ms(ms))).unwrap_or_default();
        println!("{}{total}", job.status);
        self.job_details(job);
    }

    fn job_details(&self, job: &JobView) {
        if let Some(error) = &job.error {
            diagnosis(error);
        }
        if let Some(kill) = &job.kill {
            let by = kill.by.as_deref().unwrap_or("someone");
            let why = kill.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            println!("  killed by {by} at {}{why}", kill.at);
        }
        if let Some(digest) = &job.image_digest {
            println!("  image digest: {digest}");
        }
        if !job.published.is_empty() {
            println!("  published:");
            for reference in &job.published {
                println!("    {reference}");
            }
        }
    }

    pub fn job(&self, job: &JobView) {
        if self.json {
            self.emit(job);
            return;
        }
        let phase = job.phase.map(|p| format!(" ({p})")).unwrap_or_default();
        println!("job {}  {}{phase}", job.job_id, job.status);
        println!("  image: {}/{}  tags: {}", job.registry_url, job.image_name, job.image_tags.join(", "));
        if let Some(owner) = &job.owner {
            println!("  owner: {owner}");
        }
        println!("  submitted: {}", job.created_at);
        if let Some(position) = job.queue_position {
            println!("  waiting: {position} build(s) of the same image and branch go first");
        }
        let d = &job.durations_ms;
        for (phase, ms) in [(Phase::Build, d.build), (Phase::Test, d.test), (Phase::Publish, d.publish)] {
            if let Some(ms) = ms {
                println!("  {phase}: {}", seconds_ms(ms));
            }
        }
        for test in &job.tests {
            let r = &test.result;
            let exit = r.exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default();
            let took = test.duration_ms.map(|ms| format!(" {}", seconds_ms(ms))).unwrap_or_default();
            println!("    [{}] {}{exit}{took}  {}", r.index, test_status(r.status), one_line(&r.command));
        }
        self.job_details(job);
    }

    pub fn killed(&self, job: &JobView) {
        if self.json {
            self.emit(job);
        } else {
            match job.status.is_terminal() {
                true => println!("kill accepted: job {} is {}", job.job_id, job.status),
                false => println!("kill accepted for job {}: it ends as KILLED once its work has stopped", job.job_id),
            }
        }
    }

    pub fn cleaned(&self, cleaned: &CleanedUp) {
        if self.json {
            self.emit(cleaned);
        } else if cleaned.removed.is_empty() && cleaned.remaining.is_empty() {
            println!("nothing left to remove for job {}", cleaned.job_id);
        } else {
            if !cleaned.removed.is_empty() {
                println!("removed for job {}:", cleaned.job_id);
            }
            for item in &cleaned.removed {
                println!("  {item}");
            }
            for left in &cleaned.remaining {
                println!("  not removed: {}: {}", left.what, left.why);
            }
        }
    }

    pub fn zombies(&self, removed: &[String]) {
        if self.json {
            self.emit(&serde_json::json!({ "removed": removed }));
        } else if removed.is_empty() {
            println!("no leftovers found");
        } else {
            println!("removed:");
            for item in removed {
                println!("  {item}");
            }
        }
    }

    pub fn history(&self, history: &History) {
        if self.json {
            self.emit(history);
            return;
        }
        println!("{} job(s) in total; showing {} from {}", history.total, history.jobs.len(), history.offset);
        for job in &history.jobs {
            let took = job.duration_ms.map(seconds_ms).unwrap_or_default();
            let failed = job.failed_phase.map(|p| format!(" at {p}")).unwrap_or_default();
            println!(
                "{}  {:<10} {:>7}  {}:{}{failed}  {}",
                job.job_id,
                job.status.as_str(),
                took,
                job.image_name,
                job.image_tags.join(","),
                job.created_at
            );
        }
    }

    pub fn health(&self, health: &Health, ready: &Ready) {
        if self.json {
            self.emit(&serde_json::json!({ "health": health, "ready": ready }));
            return;
        }
        println!("jobforge {} ({} backend, {} store): {}", health.version, health.backend, health.store, health.status);
        for (name, state) in &ready.checks {
            println!("  {name}: {state}");
        }
        println!("{}", if ready.ready { "ready" } else { "NOT ready" });
    }

    pub fn secrets(&self, list: &BTreeMap<String, Vec<String>>) {
        if self.json {
            self.emit(list);
            return;
        }
        if list.is_empty() {
            println!("no secrets stored");
        }
        for (path, fields) in list {
            println!("{path}: {}", fields.join(", "));
        }
    }
}

fn start_of(t: &PhaseTimes, phase: Phase) -> Option<Timestamp> {
    t.start(phase)
}

fn end_of(t: &PhaseTimes, phase: Phase) -> Option<Timestamp> {
    t.end(phase)
}

/// A log line for people: `[build] ...`, `[test 1] ...`; jobforge's own lines (the command
/// about to run, why a phase stopped) stand out from the tools' indented output.
pub(crate) fn line_text(line: &LogLine) -> String {
    let source = match line.test {
        Some(i) => format!("{} {i}", line.phase),
        None => line.phase.to_string(),
    };
    match line.stream {
        Stream::System => format!("[{source}] {}", line.text),
        Stream::Stdout | Stream::Stderr => format!("[{source}]   {}", line.text),
    }
}

pub(crate) fn seconds(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn seconds_ms(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn test_status(status: TestStatus) -> &'static str {
    match status {
        TestStatus::Pending => "pending",
        TestStatus::Running => "running",
        TestStatus::Passed => "passed",
        TestStatus::Failed => "FAILED",
        TestStatus::Stopped => "stopped",
    }
}

/// A failure, cause first: where in the Dockerfile, what to do, what the tool said.
fn diagnosis(error: &jobforge_core::record::Failure) {
    let at = error.dockerfile.as_ref().map(|d| format!(" at {}:{}", d.path, d.line)).unwrap_or_default();
    println!("  cause: {}{at}: {}", error.cause, error.message);
    if let Some(spot) = &error.dockerfile {
        for (n, line) in (spot.line..).zip(spot.instruction.lines()) {
            println!("  {n:>5} | {line}");
        }
    }
    if let Some(hint) = &error.hint {
        println!("  hint: {hint}");
    }
    let (title, lines) = match error.excerpt.is_empty() {
        false => ("what it said", &error.excerpt),
        true => ("last lines", &error.log_tail),
    };
    if !lines.is_empty() {
        println!("  {title}:");
        for line in lines {
            println!("    {line}");
        }
    }
    if error.retryable {
        println!("  (this may pass if resubmitted unchanged)");
    }
}
