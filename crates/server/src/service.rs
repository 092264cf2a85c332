//! [`Service`]: the operations on jobs over the engine, in the API's terms. The REST handlers,
//! the MCP tools (through [`jobforge_api::Jobs`]) and the event streams all call it, so a
//! request means the same and is refused the same way wherever it comes from.
//!
//! It validates what callers send, calls the engine and shapes the answers; it must not know
//! HTTP (status codes are [`ApiError`]'s) nor change job state except through the engine.

mod feed;
pub mod limits;
mod logs;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use jobforge_api::{
    CleanedUp, Feed, History, HistoryQuery, JobSummary, JobView, Jobs, KillBody, Logs, LogsQuery, Refusal, Submitted,
    ZombiesRemoved,
};
use jobforge_core::JobId;
use jobforge_core::access::{Caller, Denied};
use jobforge_core::engine::{Engine, KillError, SubmitError};
use jobforge_core::record::JobRecord;
use jobforge_core::validate;

use crate::http::ApiError;
use limits::{LimitSettings, Limits};

const DEFAULT_HISTORY_LIMIT: usize = 20;
const MAX_HISTORY_LIMIT: usize = 500;

/// The job operations of one service instance, on behalf of one caller.
#[derive(Clone)]
pub struct Service {
    engine: Engine,
    /// Ends long-lived answers (feeds) when the service stops.
    shutdown: CancellationToken,
    /// Whose request this is: every operation asks [`Caller`] first.
    caller: Caller,
    /// Shared by every caller's `Service` of this instance.
    limits: std::sync::Arc<Limits>,
}

impl Service {
    /// The operations for anyone (a service without tokens); [`Service::as_caller`] narrows them.
    pub fn new(engine: Engine, shutdown: CancellationToken) -> Self {
        let limits = std::sync::Arc::new(Limits::new(LimitSettings::default()));
        Service { engine, shutdown, caller: Caller::Anyone, limits }
    }

    /// The same operations under other limits.
    pub fn with_limits(mut self, settings: LimitSettings) -> Self {
        self.limits = std::sync::Arc::new(Limits::new(settings));
        self
    }

    /// The same operations on behalf of `caller`.
    pub fn as_caller(&self, caller: Caller) -> Service {
        Service { caller, ..self.clone() }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub async fn submit(&self, config: &serde_json::Value) -> Result<Submitted, ApiError> {
        let mut spec = validate::job_spec(config).map_err(ApiError::problems)?;
        self.caller.may_submit(&mut spec)?;
        self.limits.take_submission(&self.caller)?;
        let live =
            self.engine.ports().records.live().await.map_err(|e| ApiError::internal("could not count jobs", e))?;
        self.limits.room_for_pending(spec.owner.as_deref(), &live)?;
        let record = self.engine.submit(spec).await.map_err(|err| match err {
            SubmitError::Unsupported(problems) => {
                ApiError::Unprocessable { message: "this server cannot run the job as asked".into(), problems }
            }
            SubmitError::MissingSecrets(problems) => {
                ApiError::Unprocessable { message: "the job names secrets that do not exist".into(), problems }
            }
            SubmitError::MisplacedSecrets(problems) => ApiError::Unprocessable {
                message: "the job would send secrets to hosts they may not go to".into(),
                problems,
            },
            SubmitError::Secrets(err) => ApiError::Unavailable(format!("cannot check the job's secrets: {err}")),
            SubmitError::Store(err) => ApiError::internal("could not store the job", err),
        })?;
        Ok(Submitted { job_id: record.id, status: record.status() })
    }

    /// The job's record, if the caller may read it; a job it may not see is not found.
    pub async fn record(&self, id: JobId) -> Result<JobRecord, ApiError> {
        let record = self.engine.get(id).await.map_err(|e| ApiError::internal("could not read the job", e))?;
        let record = record.ok_or_else(|| not_found(id))?;
        self.caller.may_read(record.spec.owner.as_deref()).map_err(|denied| hidden_as_missing(denied, id))?;
        Ok(record)
    }

    /// The job's record, if the caller may kill or clean it up.
    async fn changeable(&self, id: JobId) -> Result<JobRecord, ApiError> {
        let record = self.record(id).await?;
        self.caller.may_change(record.spec.owner.as_deref()).map_err(|denied| hidden_as_missing(denied, id))?;
        Ok(record)
    }

    pub async fn job(&self, id: JobId) -> Result<JobView, ApiError> {
        Ok(JobView::from_record(&self.record(id).await?))
    }

    pub async fn logs(&self, id: JobId, query: &LogsQuery) -> Result<Logs, ApiError> {
        let record = self.record(id).await?;
        logs::read(&self.engine, &record, query).await
    }

    /// The job's feed from after `after`, live, until its end or the service's shutdown.
    pub async fn feed(&self, id: JobId, after: u64, phase: Option<jobforge_core::Phase>) -> Result<Feed, ApiError> {
        self.record(id).await?;
        let permit = self.limits.open_stream(&self.caller)?;
        let feed = feed::start(self.engine.clone(), id, after, phase, self.shutdown.clone());
        // The stream holds its place among the caller's open ones until it is dropped.
        Ok(futures::StreamExt::boxed(futures::StreamExt::map(feed, move |item| {
            let _held = &permit;
            item
        })))
    }

    pub async fn kill(&self, id: JobId, request: KillBody) -> Result<JobView, ApiError> {
        for (field, value) in [("by", &request.by), ("reason", &request.reason)] {
            if let Some(value) = value
                && (value.len() > 1024 || value.chars().any(char::is_control))
            {
                return Err(ApiError::invalid(field, "must be at most 1024 characters without control characters"));
            }
        }
        self.changeable(id).await?;
        let record = self.engine.kill(id, request.by, request.reason).await.map_err(kill_error)?;
        Ok(JobView::from_record(&record))
    }

    pub async fn cleanup(&self, id: JobId) -> Result<CleanedUp, ApiError> {
        self.changeable(id).await?;
        let report = self.engine.cleanup(id).await.map_err(kill_error)?;
        Ok(CleanedUp { job_id: id, removed: report.removed, remaining: report.remaining })
    }

    /// A page of the history, newest first, of the jobs that match the filters.
    pub async fn history(&self, query: &HistoryQuery) -> Result<History, ApiError> {
        let limit = bounded("limit", query.limit, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)?;
        let offset = query.offset.unwrap_or(0);
        let (records, total) = self.history_records(query, limit, offset).await?;
        let jobs = records.iter().map(JobSummary::from_record).collect();
        Ok(History { jobs, total, limit, offset })
    }

    /// The records of a history page the caller may see, and how many match in all.
    pub async fn history_records(
        &self,
        query: &HistoryQuery,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<JobRecord>, u64), ApiError> {
        // A caller bound to an owner sees that owner's jobs only, whatever it asks for.
        let owner: Option<Option<&str>> = match self.caller.bound_owner() {
            Some(bound) if query.owner.as_deref().is_some_and(|asked| Some(asked) != bound) => {
                return Ok((Vec::new(), 0));
            }
            Some(bound) => Some(bound),
            None => query.owner.as_deref().map(Some),
        };
        let filtered = owner.is_some() || query.status.is_some() || query.image_name.is_some();
        if !filtered {
            let page = self.engine.history(limit, offset).await.map_err(history_error)?;
            return Ok((page.jobs, page.total));
        }
        let matches = |record: &JobRecord| {
            owner.is_none_or(|owner| record.spec.owner.as_deref() == owner)
                && query.status.is_none_or(|status| record.status() == status)
                && query.image_name.as_ref().is_none_or(|name| record.spec.image_name.as_str() == name)
        };
        let (mut jobs, mut total, mut from) = (Vec::new(), 0u64, 0);
        loop {
            let page = self.engine.history(MAX_HISTORY_LIMIT, from).await.map_err(history_error)?;
            from += page.jobs.len();
            let done = page.jobs.is_empty() || from as u64 >= page.total;
            for record in page.jobs.into_iter().filter(|r| matches(r)) {
                if total as usize >= offset && jobs.len() < limit {
                    jobs.push(record);
                }
                total += 1;
            }
            if done {
                return Ok((jobs, total));
            }
        }
    }

    pub async fn remove_zombies(&self) -> Result<ZombiesRemoved, ApiError> {
        self.caller.may_administer()?;
        let removed =
            self.engine.remove_orphans().await.map_err(|e| ApiError::internal("could not list live jobs", e))?;
        Ok(ZombiesRemoved { removed })
    }
}

pub fn not_found(id: JobId) -> ApiError {
    ApiError::NotFound(format!("job {id} not found"))
}

/// A job the caller may not see gets the very answer of one that does not exist.
fn hidden_as_missing(denied: Denied, id: JobId) -> ApiError {
    match denied {
        Denied::Hidden => not_found(id),
        forbidden @ Denied::Forbidden { .. } => forbidden.into(),
    }
}

fn history_error(err: jobforge_core::ports::StoreError) -> ApiError {
    ApiError::internal("could not read the history", err)
}

fn kill_error(err: KillError) -> ApiError {
    match err {
        KillError::NotFound(id) => not_found(id),
        KillError::Finished { .. } => ApiError::Conflict(err.to_string()),
        KillError::ShuttingDown | KillError::Unanswered(_) => ApiError::Unavailable(err.to_string()),
        KillError::Store(err) => ApiError::internal("could not record the kill", err),
    }
}

/// A count in `1..=max`, `default` when absent; otherwise a 400 naming `field`.
pub fn bounded(field: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(field, format!("must be between 1 and {max}, not {n}"))),
    }
}

/// The same operations for the MCP tools and any other front end, refusals included.
#[async_trait]
impl Jobs for Service {
    fn as_caller(&self, caller: &Caller) -> std::sync::Arc<dyn Jobs> {
        std::sync::Arc::new(Service::as_caller(self, caller.clone()))
    }

    async fn submit(&self, config: &serde_json::Value) -> Result<Submitted, Refusal> {
        Service::submit(self, config).await.map_err(ApiError::into_refusal)
    }

    async fn job(&self, id: JobId) -> Result<JobView, Refusal> {
        Service::job(self, id).await.map_err(ApiError::into_refusal)
    }

    async fn logs(&self, id: JobId, query: &LogsQuery) -> Result<Logs, Refusal> {
        Service::logs(self, id, query).await.map_err(ApiError::into_refusal)
    }

    async fn feed(&self, id: JobId, after: u64) -> Result<Feed, Refusal> {
        Service::feed(self, id, after, None).await.map_err(ApiError::into_refusal)
    }

    async fn kill(&self, id: JobId, request: &KillBody) -> Result<JobView, Refusal> {
        Service::kill(self, id, request.clone()).await.map_err(ApiError::into_refusal)
    }

    async fn cleanup(&self, id: JobId) -> Result<CleanedUp, Refusal> {
        Service::cleanup(self, id).await.map_err(ApiError::into_refusal)
    }

    async fn history(&self, query: &HistoryQuery) -> Result<History, Refusal> {
        Service::history(self, query).await.map_err(ApiError::into_refusal)
    }

    async fn remove_zombies(&self) -> Result<ZombiesRemoved, Refusal> {
        Service::remove_zombies(self).await.map_err(ApiError::into_refusal)
    }
}
