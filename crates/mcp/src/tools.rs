//! The tools themselves: each parses its parameters (a bad one is a tool error naming it),
//! calls [`Jobs`], and answers with structured content and the same JSON as text.

use std::time::Duration;

use futures::StreamExt;
use rmcp::handler::server::tool::{schema_for_output, schema_for_type};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Extensions, Implementation, JsonObject, ProgressNotificationParam, RequestMetaObject,
    ServerCapabilities, ServerConfig,
};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;

use jobforge_api::{
    CleanedUp, FeedItem, History, HistoryQuery, JobConfig, JobView, Jobs, KillBody, LogsQuery, Refusal, Submitted,
    ZombiesRemoved,
};
use jobforge_core::events::JobEvent;
use jobforge_core::{JobId, JobStatus, Phase, Stream};

use crate::JobforgeMcp;
use crate::answers::{self, LogsAnswer, WatchAnswer};
use crate::params::{GetHistory, GetLogs, JobRef, KillJob, WatchJob};

type Answer = Result<CallToolResult, ErrorData>;

const DEFAULT_LOG_LINES: usize = 200;
const MAX_LOG_LINES: usize = 1000;
const MAX_HISTORY: usize = 100;
const DEFAULT_WATCH: u64 = 30;
const MAX_WATCH: u64 = 60;

const INSTRUCTIONS: &str = "jobforge builds a container image from a git repository, runs tests \
against exactly that image, and publishes it only if every test passed. submitJob starts a job; \
watchJob waits for what happens next (call it again with next_after until ended); getStatus says \
where a job is and why it failed; getLogs reads its log (the last lines by default, or grep with \
context). Answers are bounded: when one says truncated, its note says how to get the rest.";

#[tool_router(vis = "pub(crate)")]
impl JobforgeMcp {
    #[tool(
        name = "submitJob",
        description = "Submit a job: build the image, run the tests against it, publish it under its tags if all passed. \
                       The config's fields are those of POST /v1/jobs; a refused config lists every problem.",
        input_schema = schema_for_type::<JobConfig>(),
        output_schema = schema_for_output::<Submitted>()
    )]
    async fn submit_job(&self, Parameters(config): Parameters<JsonObject>, ext: Extensions) -> Answer {
        let jobs = match self.jobs_for(&ext) {
            Ok(jobs) => jobs,
            Err(refused) => return refusal(refused),
        };
        answer(jobs.submit(&serde_json::Value::Object(config)).await)
    }

    #[tool(
        name = "getStatus",
        description = "A job as it is now: status, phase, each test, timings, and for a failed job its error (phase, reason, message, log tail).",
        output_schema = schema_for_output::<JobView>(),
        annotations(read_only_hint = true)
    )]
    async fn get_status(&self, Parameters(params): Parameters<JobRef>, ext: Extensions) -> Answer {
        let (jobs, id) = match self.jobs_for(&ext).and_then(|jobs| Ok((jobs, job_id(&params.job_id)?))) {
            Ok(found) => found,
            Err(refused) => return refusal(refused),
        };
        answer(jobs.job(id).await.map(answers::fit_view))
    }

    #[tool(
        name = "getLogs",
        description = "Lines of a job's log, each with its seq, time, phase, test index and stream. Without `after` or `grep`, the last \
                       200 lines. Filter by phase, test and stream; `grep` a regular expression with `context` lines; page with `after`.",
        output_schema = schema_for_output::<LogsAnswer>(),
        annotations(read_only_hint = true)
    )]
    async fn get_logs(&self, Parameters(params): Parameters<GetLogs>, ext: Extensions) -> Answer {
        let jobs = match self.jobs_for(&ext) {
            Ok(jobs) => jobs,
            Err(refused) => return refusal(refused),
        };
        match logs(jobs.as_ref(), params).await {
            Ok(logs) => structured(&logs),
            Err(refused) => refusal(refused),
        }
    }

    #[tool(
        name = "watchJob",
        description = "Wait for a job's next events (status changes, phases and tests starting and ending, kills, cleanup) after \
                       `after`, for at most `timeout_seconds` (60 at most), or until the job ends. Sends progress notifications \
                       while it waits when the call has a progress token.",
        output_schema = schema_for_output::<WatchAnswer>(),
        annotations(read_only_hint = true)
    )]
    async fn watch_job(
        &self,
        Parameters(params): Parameters<WatchJob>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        ext: Extensions,
    ) -> Answer {
        let jobs = match self.jobs_for(&ext) {
            Ok(jobs) => jobs,
            Err(refused) => return refusal(refused),
        };
        match watch(jobs.as_ref(), params, meta, peer).await {
            Ok(watched) => structured(&watched),
            Err(refused) => refusal(refused),
        }
    }

    #[tool(
        name = "killJob",
        description = "Stop a job: nothing more starts, running work is stopped, nothing is published; the job ends KILLED.",
        output_schema = schema_for_output::<JobView>(),
        annotations(destructive_hint = true)
    )]
    async fn kill_job(&self, Parameters(params): Parameters<KillJob>, ext: Extensions) -> Answer {
        let (jobs, id) = match self.jobs_for(&ext).and_then(|jobs| Ok((jobs, job_id(&params.job_id)?))) {
            Ok(found) => found,
            Err(refused) => return refusal(refused),
        };
        let request = KillBody { by: Some("mcp".into()), reason: params.reason };
        answer(jobs.kill(id, &request).await.map(answers::fit_view))
    }

    #[tool(
        name = "cleanup",
        description = "Remove what a job left behind (its temp image, runs, work directories), killing it first if it still runs.",
        output_schema = schema_for_output::<CleanedUp>(),
        annotations(destructive_hint = true)
    )]
    async fn cleanup(&self, Parameters(params): Parameters<JobRef>, ext: Extensions) -> Answer {
        match self.jobs_for(&ext).and_then(|jobs| Ok((jobs, job_id(&params.job_id)?))) {
            Ok((jobs, id)) => answer(jobs.cleanup(id).await),
            Err(refused) => refusal(refused),
        }
    }

    #[tool(
        name = "getHistory",
        description = "Jobs, newest first, optionally only those of an owner, a status or an image name.",
        output_schema = schema_for_output::<History>(),
        annotations(read_only_hint = true)
    )]
    async fn get_history(&self, Parameters(params): Parameters<GetHistory>, ext: Extensions) -> Answer {
        let jobs = match self.jobs_for(&ext) {
            Ok(jobs) => jobs,
            Err(refused) => return refusal(refused),
        };
        let status = match params.status.as_deref().filter(|s| !s.is_empty()).map(str::parse::<JobStatus>) {
            Some(Err(err)) => return refusal(Refusal::invalid("status", err.to_string())),
            Some(Ok(status)) => Some(status),
            None => None,
        };
        if let Some(limit) = params.limit.filter(|n| !(1..=MAX_HISTORY).contains(n)) {
            return refusal(Refusal::invalid("limit", format!("must be between 1 and {MAX_HISTORY}, not {limit}")));
        }
        let query = HistoryQuery {
            owner: params.owner,
            status,
            image_name: params.image_name,
            limit: params.limit,
            offset: params.offset,
        };
        answer(jobs.history(&query).await)
    }

    #[tool(
        name = "cleanupZombies",
        description = "Stop and remove work in the backend (Nomad jobs, local runs) that belongs to no live job.",
        output_schema = schema_for_output::<ZombiesRemoved>(),
        annotations(destructive_hint = true)
    )]
    async fn cleanup_zombies(&self, ext: Extensions) -> Answer {
        match self.jobs_for(&ext) {
            Ok(jobs) => answer(jobs.remove_zombies().await),
            Err(refused) => refusal(refused),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for JobforgeMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::from_build_env())
            .with_instructions(INSTRUCTIONS)
    }
}

async fn logs(jobs: &dyn Jobs, params: GetLogs) -> Result<LogsAnswer, Refusal> {
    let id = job_id(&params.job_id)?;
    let phase = parsed::<Phase>("phase", params.phase.as_deref())?;
    let stream = parsed::<Stream>("stream", params.stream.as_deref())?;
    let limit = params.limit.unwrap_or(DEFAULT_LOG_LINES);
    if !(1..=MAX_LOG_LINES).contains(&limit) {
        return Err(Refusal::invalid("limit", format!("must be between 1 and {MAX_LOG_LINES}, not {limit}")));
    }
    let grep = params.grep.filter(|g| !g.is_empty());
    // Without a cursor or a search, an agent wants the end of the log.
    let tail = params.tail.or((params.after.is_none() && grep.is_none()).then_some(DEFAULT_LOG_LINES));
    let query = LogsQuery {
        phase,
        test: params.test,
        stream,
        after: params.after.unwrap_or(0),
        limit: Some(limit),
        tail,
        grep,
        context: params.context,
    };
    let logs = jobs.logs(id, &query).await?;
    let (lines, cut) = answers::fit_lines(logs.lines, tail.is_some());
    let next_after = lines.last().map_or(query.after, |line| line.seq);
    let truncated = logs.truncated || cut;
    let note = truncated.then(|| match tail {
            Some(_) => "earlier lines were left out: read them with `after` (from 0) and `limit`, or narrow with phase, test, stream or grep".to_owned(),
            None => format!("more lines follow: call getLogs again with after={next_after}"),
        });
    Ok(LogsAnswer { lines, next_after, truncated, status: logs.status, complete: logs.complete && !cut, note })
}

async fn watch(
    jobs: &dyn Jobs,
    params: WatchJob,
    meta: RequestMetaObject,
    peer: Peer<RoleServer>,
) -> Result<WatchAnswer, Refusal> {
    let id = job_id(&params.job_id)?;
    let timeout = params.timeout_seconds.unwrap_or(DEFAULT_WATCH);
    if !(1..=MAX_WATCH).contains(&timeout) {
        return Err(Refusal::invalid("timeout_seconds", format!("must be between 1 and {MAX_WATCH}, not {timeout}")));
    }
    let after = params.after.unwrap_or(0);
    let mut feed = jobs.feed(id, after).await?;
    let progress = meta.get_progress_token();
    let mut watched =
        WatchAnswer { events: Vec::new(), next_after: after, ended: false, status: JobStatus::Pending, note: None };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    // The archive first (up to now), then live: the answer comes at the deadline or the end.
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, feed.next()).await {
        match item? {
            FeedItem::Status(view) => watched.status = view.status,
            FeedItem::End(view) => {
                (watched.status, watched.ended) = (view.status, true);
                break;
            }
            FeedItem::Log(line) => watched.next_after = line.seq,
            FeedItem::Job(entry) => {
                watched.next_after = entry.seq;
                if let Some(token) = &progress {
                    let message = describe(&entry.event);
                    let note = ProgressNotificationParam::new(token.clone(), watched.events.len() as f64 + 1.0)
                        .with_message(message);
                    let _ = peer.notify_progress(note).await;
                }
                watched.events.push(entry);
            }
        }
    }
    if answers::fit_events(&mut watched.events) {
        watched.next_after = watched.events.last().map_or(after, |e| e.seq);
        watched.ended = false;
        watched.note = Some(format!("more events follow: call watchJob again with after={}", watched.next_after));
    }
    Ok(watched)
}

/// A one-line account of an event, for progress notifications.
fn describe(event: &JobEvent) -> String {
    match event {
        JobEvent::StatusChanged { status } => format!("status {status}"),
        JobEvent::Queued { position } => format!("queued behind {position} build(s)"),
        JobEvent::PhaseStarted { phase } => format!("{phase} started"),
        JobEvent::PhaseEnded { phase, result, .. } => format!(
            "{phase} {}",
            serde_json::to_value(result).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        ),
        JobEvent::TestStarted { index, command } => format!("test {index} started: {command}"),
        JobEvent::TestEnded { index, status, exit_code, .. } => match exit_code {
            Some(code) => format!("test {index} {status:?} (exit {code})").to_lowercase(),
            None => format!("test {index} {status:?}").to_lowercase(),
        },
        JobEvent::KillRequested { .. } => "kill requested".to_owned(),
        JobEvent::TimedOut { phase, timeout } => format!("{phase} timed out after {timeout}"),
        JobEvent::Published { references } => format!("published {}", references.join(", ")),
        JobEvent::CleanupDone { .. } => "cleaned up".to_owned(),
    }
}

fn job_id(text: &str) -> Result<JobId, Refusal> {
    text.trim().parse().map_err(|_| {
        Refusal::not_found(format!("job {text:?} not found (job ids are UUIDs, as submitJob returns them)"))
    })
}

/// An optional parameter parsed, or a refusal naming it.
fn parsed<T: std::str::FromStr>(field: &str, text: Option<&str>) -> Result<Option<T>, Refusal>
where
    T::Err: std::fmt::Display,
{
    text.filter(|t| !t.is_empty())
        .map(|t| t.parse::<T>().map_err(|e| Refusal::invalid(field, e.to_string())))
        .transpose()
}

fn answer<T: Serialize>(result: Result<T, Refusal>) -> Answer {
    match result {
        Ok(value) => structured(&value),
        Err(refused) => refusal(refused),
    }
}

fn structured<T: Serialize>(value: &T) -> Answer {
    let value = serde_json::to_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Ok(CallToolResult::structured(value))
}

/// A refusal as a tool result an agent can act on: the message, the code, each problem.
fn refusal(refused: Refusal) -> Answer {
    let value = serde_json::to_value(&refused.body).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Ok(CallToolResult::structured_error(value))
}
