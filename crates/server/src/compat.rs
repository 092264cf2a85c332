//! The original service's JSON endpoints (`/json/...`), so its users' scripts and its Go
//! client keep working: thin adapters over [`crate::service::Service`], translating its
//! requests in and answering in its shapes (`docs/compat.md`).
//!
//! Its client treats anything but 200 as an error and reads errors as `{"error", "code",
//! "details"}` (`code` the HTTP status); so does this adapter. It never answers with a
//! secret value (the original returned the webhook secret in every status).

mod config;
mod shapes;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::Value;

use jobforge_api::{HistoryQuery, KillBody, LogsQuery};
use jobforge_core::{JobId, Phase};

use crate::auth::Scoped;
use crate::http::{ApiError, AppState, read_body};
use crate::service::Service;

pub use shapes::{CleanupAnswer, ErrorAnswer, HistoryAnswer, KillAnswer, LogsAnswer, StatusAnswer, SubmitAnswer};

/// The original's default page of history.
const DEFAULT_HISTORY_LIMIT: usize = 50;
const MAX_HISTORY_LIMIT: usize = 500;

/// The routes, to merge into the app.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/json/submitJob", post(submit))
        .route("/json/getStatus", post(status))
        .route("/json/getLogs", post(logs))
        .route("/json/killJob", post(kill))
        .route("/json/cleanup", post(cleanup))
        .route("/json/getHistory", post(history))
        .route("/json/job/{id}/status", get(status_by_path))
        .route("/json/job/{id}/logs", get(logs_by_path))
}

/// An error in the original's shape.
pub struct CompatError(ApiError);

impl From<ApiError> for CompatError {
    fn from(error: ApiError) -> Self {
        CompatError(error)
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        let retry_after = self.0.retry_after();
        let (status, body) = self.0.parts();
        let details = body.problems.iter().map(|p| format!("{} {}", p.field, p.message)).collect::<Vec<_>>().join("; ");
        let answer = ErrorAnswer { error: body.error, code: status.as_u16(), details };
        crate::http::error::with_headers((status, Json(answer)).into_response(), retry_after)
    }
}

type Answer<T> = Result<Json<T>, CompatError>;

/// The request body as `T`; a body that is not one is the caller's mistake, named.
async fn read<T: DeserializeOwned>(body: Body) -> Result<T, CompatError> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("body", format!("is not the expected JSON: {e}")).into())
}

fn job_id(id: &str) -> Result<JobId, CompatError> {
    match id {
        "" => Err(ApiError::invalid("job_id", "is required").into()),
        id => id.parse().map_err(|_| ApiError::NotFound(format!("Job not found: {id:?} (job ids are UUIDs)")).into()),
    }
}

/// `POST /json/submitJob` `{"job_config": {...}}`
async fn submit(Scoped(service): Scoped, body: Body) -> Answer<SubmitAnswer> {
    let body: Value = read(body).await?;
    let Some(Value::Object(original)) = body.get("job_config") else {
        return Err(ApiError::invalid("job_config", "is required: the body is {\"job_config\": {...}}").into());
    };
    let submitted = service.submit(&config::from_original(original)).await?;
    Ok(Json(SubmitAnswer { job_id: submitted.job_id, status: submitted.status }))
}

#[derive(serde::Deserialize)]
struct JobRequest {
    #[serde(default)]
    job_id: String,
}

/// `POST /json/getStatus` `{"job_id"}`
async fn status(Scoped(service): Scoped, body: Body) -> Answer<StatusAnswer> {
    let request: JobRequest = read(body).await?;
    status_of(&service, job_id(&request.job_id)?).await
}

/// `GET /json/job/{id}/status`
async fn status_by_path(Scoped(service): Scoped, Path(id): Path<String>) -> Answer<StatusAnswer> {
    status_of(&service, job_id(&id)?).await
}

async fn status_of(service: &Service, id: JobId) -> Answer<StatusAnswer> {
    let record = service.record(id).await?;
    Ok(Json(StatusAnswer::of(&record)))
}

#[derive(serde::Deserialize)]
struct LogsRequest {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    phase: Option<String>,
}

/// `POST /json/getLogs` `{"job_id", "phase"?}`: one phase's lines (the others `null`), or
/// every phase's when `phase` is absent or not one (as the original did).
async fn logs(Scoped(service): Scoped, body: Body) -> Answer<LogsAnswer> {
    let request: LogsRequest = read(body).await?;
    let phase = request.phase.as_deref().and_then(|p| p.parse::<Phase>().ok());
    logs_of(&service, job_id(&request.job_id)?, phase).await
}

/// `GET /json/job/{id}/logs`
async fn logs_by_path(Scoped(service): Scoped, Path(id): Path<String>) -> Answer<LogsAnswer> {
    logs_of(&service, job_id(&id)?, None).await
}

async fn logs_of(service: &Service, id: JobId, only: Option<Phase>) -> Answer<LogsAnswer> {
    let mut answer = LogsAnswer::new(id);
    for phase in [Phase::Build, Phase::Test, Phase::Publish] {
        if only.is_some_and(|p| p != phase) {
            continue;
        }
        let mut lines = Vec::new();
        let mut after = 0;
        loop {
            let query = LogsQuery { phase: Some(phase), after, limit: Some(shapes::PAGE), ..LogsQuery::default() };
            let page = service.logs(id, &query).await?;
            let done = page.lines.is_empty() || page.next_after <= after || lines.len() >= shapes::MAX_LINES;
            after = page.next_after;
            lines.extend(page.lines);
            if done || !page.truncated {
                break;
            }
        }
        answer.set(phase, lines);
    }
    Ok(Json(answer))
}

/// `POST /json/killJob` `{"job_id"}`: 200 whether or not it could be killed, as the original
/// answered; `success` says which.
async fn kill(Scoped(service): Scoped, body: Body) -> Answer<KillAnswer> {
    let request: JobRequest = read(body).await?;
    let id = job_id(&request.job_id)?;
    let body = KillBody { by: Some("json/killJob".into()), reason: None };
    match service.kill(id, body).await {
        Ok(_) => Ok(Json(KillAnswer { job_id: id, success: true, message: "Job killed successfully".into() })),
        Err(ApiError::Conflict(why)) => {
            Ok(Json(KillAnswer { job_id: id, success: false, message: format!("Failed to kill job: {why}") }))
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(serde::Deserialize)]
struct CleanupRequest {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    all: bool,
}

/// `POST /json/cleanup` `{"job_id"}` (one job's leftovers) or `{"all": true}` (the work that
/// belongs to no live job).
async fn cleanup(Scoped(service): Scoped, body: Body) -> Answer<CleanupAnswer> {
    let request: CleanupRequest = read(body).await?;
    if request.all && request.job_id.is_empty() {
        let removed = service.remove_zombies().await?;
        return Ok(Json(CleanupAnswer::done(removed.removed)));
    }
    let id = job_id(&request.job_id)?;
    let report = service.cleanup(id).await?;
    Ok(Json(match report.remaining.as_slice() {
        [] => CleanupAnswer::done(vec![id.to_string()]),
        left => CleanupAnswer::failed(left),
    }))
}

#[derive(serde::Deserialize)]
struct HistoryRequest {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
}

/// `POST /json/getHistory` `{"limit"?, "offset"?}`
async fn history(Scoped(service): Scoped, body: Body) -> Answer<HistoryAnswer> {
    let request: HistoryRequest = read(body).await?;
    let limit = match request.limit {
        None | Some(0) => DEFAULT_HISTORY_LIMIT,
        Some(n) if n > MAX_HISTORY_LIMIT => {
            return Err(ApiError::invalid("limit", format!("must be at most {MAX_HISTORY_LIMIT}")).into());
        }
        Some(n) => n,
    };
    let query = HistoryQuery::default();
    let (jobs, total) = service.history_records(&query, limit, request.offset.unwrap_or(0)).await?;
    Ok(Json(HistoryAnswer::of(&jobs, total)))
}
