//! Job endpoints: submit, read, history, logs, kill, cleanup.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use jobforge_api::{CleanedUp, History, JobSummary, JobView, KillBody, Logs, Submitted, ZombiesRemoved};
use jobforge_core::engine::{KillError, SubmitError};
use jobforge_core::logs::LogQuery;
use jobforge_core::validate::{self, MAX_BODY_BYTES};
use jobforge_core::{JobId, Phase};

use super::{ApiError, AppState};

const DEFAULT_HISTORY_LIMIT: usize = 20;
const MAX_HISTORY_LIMIT: usize = 500;
const DEFAULT_LOG_LIMIT: usize = 1000;
const MAX_LOG_LIMIT: usize = 10_000;

/// `POST /v1/jobs`
pub async fn submit(State(state): State<AppState>, body: Body) -> Result<impl IntoResponse, ApiError> {
    let bytes = read_body(body).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", format!("is not valid JSON: {e}")))?;
    let spec = validate::job_spec(&value).map_err(ApiError::problems)?;
    let record = state.engine.submit(spec).await.map_err(|err| match err {
        SubmitError::Unsupported(problems) => {
            ApiError::Unprocessable { message: "this server cannot run the job as asked".into(), problems }
        }
        SubmitError::MissingSecrets(problems) => {
            ApiError::Unprocessable { message: "the job names secrets that do not exist".into(), problems }
        }
        SubmitError::Secrets(err) => ApiError::Unavailable(format!("cannot check the job's secrets: {err}")),
        SubmitError::Store(err) => ApiError::internal("could not store the job", err),
    })?;
    let location = format!("/v1/jobs/{}", record.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(Submitted { job_id: record.id, status: record.status() }),
    ))
}

/// The body, refused past the size limit with an error naming it.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::invalid("body", format!("is larger than {} KiB", MAX_BODY_BYTES / 1024)))
}

/// A job id from the path; anything that is not one names no job.
pub fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound(format!("job {id:?} not found (job ids are UUIDs)")))
}

pub fn not_found(id: JobId) -> ApiError {
    ApiError::NotFound(format!("job {id} not found"))
}

/// `GET /v1/jobs/{id}`
pub async fn job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    let record = state.engine.get(id).await.map_err(|e| ApiError::internal("could not read the job", e))?;
    record.map(|r| Json(JobView::from_record(&r))).ok_or_else(|| not_found(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /v1/jobs`
pub async fn history(
    State(state): State<AppState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let Query(page) = page.map_err(query_error)?;
    let limit = bounded("limit", page.limit, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)?;
    let offset = page.offset.unwrap_or(0);
    let history =
        state.engine.history(limit, offset).await.map_err(|e| ApiError::internal("could not read the history", e))?;
    Ok(Json(History {
        jobs: history.jobs.iter().map(JobSummary::from_record).collect(),
        total: history.total,
        limit,
        offset,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    phase: Option<String>,
    test: Option<u32>,
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/jobs/{id}/logs`
pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Json<Logs>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(query_error)?;
    let query = LogQuery {
        phase: parse_phase(params.phase.as_deref())?,
        test: params.test,
        after: params.after.unwrap_or(0),
        limit: bounded("limit", params.limit, DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT)?,
    };
    let engine = &state.engine;
    let record = engine.get(id).await.map_err(|e| ApiError::internal("could not read the job", e))?;
    let record = record.ok_or_else(|| not_found(id))?;
    let lines = engine.logs(id, &query).await.map_err(|e| ApiError::internal("could not read the logs", e))?;
    let next_after = lines.last().map_or(query.after, |l| l.seq);
    let complete = record.status().is_terminal() && lines.len() < query.limit;
    Ok(Json(Logs { job_id: id, status: record.status(), lines, next_after, complete }))
}

pub fn parse_phase(phase: Option<&str>) -> Result<Option<Phase>, ApiError> {
    phase
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<Phase>().map_err(|e| ApiError::invalid("phase", e.to_string())))
        .transpose()
}

fn bounded(field: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(field, format!("must be between 1 and {max}, not {n}"))),
    }
}

pub fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::invalid("query", format!("is invalid: {}", rejection.body_text()))
}

/// `POST /v1/jobs/{id}/kill`
pub async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let bytes = read_body(body).await?;
    let request: KillBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        KillBody::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", format!("is not a kill request: {e}")))?
    };
    for (field, value) in [("by", &request.by), ("reason", &request.reason)] {
        if let Some(value) = value
            && (value.len() > 1024 || value.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(field, "must be at most 1024 characters without control characters"));
        }
    }
    let by = request
        .by
        .or_else(|| headers.get(header::USER_AGENT).and_then(|ua| ua.to_str().ok()).map(|ua| format!("client {ua}")));
    let record = state.engine.kill(id, by, request.reason).await.map_err(kill_error)?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from_record(&record))))
}

fn kill_error(err: KillError) -> ApiError {
    match err {
        KillError::NotFound(id) => not_found(id),
        KillError::Finished { .. } => ApiError::Conflict(err.to_string()),
        KillError::ShuttingDown | KillError::Unanswered(_) => ApiError::Unavailable(err.to_string()),
        KillError::Store(err) => ApiError::internal("could not record the kill", err),
    }
}

/// `POST /v1/jobs/{id}/cleanup`
pub async fn cleanup(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<CleanedUp>, ApiError> {
    let id = parse_id(&id)?;
    let report = state.engine.cleanup(id).await.map_err(kill_error)?;
    Ok(Json(CleanedUp { job_id: id, removed: report.removed, remaining: report.remaining }))
}

/// `POST /v1/zombies/cleanup`
pub async fn remove_zombies(State(state): State<AppState>) -> Result<Json<ZombiesRemoved>, ApiError> {
    let removed = state.engine.remove_orphans().await.map_err(|e| ApiError::internal("could not list live jobs", e))?;
    Ok(Json(ZombiesRemoved { removed }))
}
