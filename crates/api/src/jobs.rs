//! [`Jobs`]: the operations on jobs that every front end of jobforge offers (the REST API, the
//! MCP tools, the compatibility endpoints), over the wire types. The server implements it in
//! process, over the engine; the client implements it over HTTP; the MCP server takes either,
//! so the tools are the same whether they run inside the service or in `jobforge mcp`.
//!
//! A refusal is a [`Refusal`]: the HTTP status and the error body the REST API would answer,
//! so every front end reports a caller's mistake the same way.

use async_trait::async_trait;
use futures::stream::BoxStream;

use std::sync::Arc;

use jobforge_core::JobId;
use jobforge_core::access::Caller;
use jobforge_core::events::EventEntry;
use jobforge_core::logs::LogLine;
use jobforge_core::validate::Problem;

use crate::{
    CleanedUp, ErrorBody, ErrorCode, History, HistoryQuery, JobView, KillBody, Logs, LogsQuery, Submitted,
    ZombiesRemoved,
};

/// One item of a job's feed (what `GET /v1/jobs/{id}/events` streams).
#[derive(Clone, Debug, PartialEq)]
pub enum FeedItem {
    /// The job as it is now: first, then after job events that changed it.
    Status(JobView),
    /// One log line, in `seq` order.
    Log(LogLine),
    /// Something that happened to the job, in `seq` order with the lines.
    Job(EventEntry),
    /// The job has ended and every entry was sent; nothing follows.
    End(JobView),
}

/// A job's feed: its items in order, ending after [`FeedItem::End`].
pub type Feed = BoxStream<'static, Result<FeedItem, Refusal>>;

/// A request refused, or a service that could not answer: the status and body the REST API
/// answers with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{} (HTTP {status})", body.error)]
pub struct Refusal {
    pub status: u16,
    pub body: ErrorBody,
}

impl Refusal {
    pub fn new(status: u16, code: ErrorCode, error: impl Into<String>) -> Self {
        Refusal { status, body: ErrorBody { error: error.into(), code, problems: Vec::new() } }
    }

    /// 400: `field` breaks a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let problem = Problem::new(field, message);
        let error = format!("invalid request: {} {}", problem.field, problem.message);
        Refusal { status: 400, body: ErrorBody { error, code: ErrorCode::InvalidRequest, problems: vec![problem] } }
    }

    pub fn not_found(error: impl Into<String>) -> Self {
        Refusal::new(404, ErrorCode::NotFound, error)
    }

    pub fn unavailable(error: impl Into<String>) -> Self {
        Refusal::new(503, ErrorCode::Unavailable, error)
    }

    pub fn code(&self) -> ErrorCode {
        self.body.code
    }
}

/// The operations on jobs.
#[async_trait]
pub trait Jobs: Send + Sync + 'static {
    /// The same operations on behalf of `caller`. In process this narrows what may be done to
    /// what the caller may do; a front end that reaches the service over HTTP, where the
    /// service decides who is calling, answers with itself.
    fn as_caller(&self, caller: &Caller) -> Arc<dyn Jobs>;

    /// Validate and submit a job config (the JSON of `POST /v1/jobs`).
    async fn submit(&self, config: &serde_json::Value) -> Result<Submitted, Refusal>;

    async fn job(&self, id: JobId) -> Result<JobView, Refusal>;

    async fn logs(&self, id: JobId, query: &LogsQuery) -> Result<Logs, Refusal>;

    /// The job's feed from after `after`: the archive first, then live, to its end.
    async fn feed(&self, id: JobId, after: u64) -> Result<Feed, Refusal>;

    async fn kill(&self, id: JobId, request: &KillBody) -> Result<JobView, Refusal>;

    async fn cleanup(&self, id: JobId) -> Result<CleanedUp, Refusal>;

    async fn history(&self, query: &HistoryQuery) -> Result<History, Refusal>;

    async fn remove_zombies(&self) -> Result<ZombiesRemoved, Refusal>;
}
