//! Job endpoints: submit, read, history, logs, kill, cleanup. Each parses its request, calls
//! the [`crate::service::Service`] and answers; none decides anything itself.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use jobforge_api::{CleanedUp, History, HistoryQuery, JobView, KillBody, Logs, LogsQuery, ZombiesRemoved};
use jobforge_core::validate::MAX_BODY_BYTES;
use jobforge_core::{JobId, JobStatus, Phase, Stream};

use super::ApiError;
use crate::auth::Scoped;

/// `POST /v1/jobs`
pub async fn submit(Scoped(service): Scoped, body: Body) -> Result<impl IntoResponse, ApiError> {
    let bytes = read_body(body).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", format!("is not valid JSON: {e}")))?;
    let submitted = service.submit(&value).await?;
    let location = format!("/v1/jobs/{}", submitted.job_id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(submitted)))
}

/// The body, refused past the size limit with an error naming it.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::invalid("body", format!("is larger than {} KiB", MAX_BODY_BYTES / 1024)))
}

/// A job id from the path; anything that is not one names no job.
pub fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound(format!("job {id:?} not found (job ids are UUIDs)")))
}

/// `GET /v1/jobs/{id}`
pub async fn job(Scoped(service): Scoped, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    Ok(Json(service.job(parse_id(&id)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    owner: Option<String>,
    status: Option<String>,
    image_name: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /v1/jobs`
pub async fn history(
    Scoped(service): Scoped,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let status = params
        .status
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<JobStatus>().map_err(|e| ApiError::invalid("status", e.to_string())))
        .transpose()?;
    let query = HistoryQuery {
        owner: params.owner.filter(|o| !o.is_empty()),
        status,
        image_name: params.image_name.filter(|n| !n.is_empty()),
        limit: params.limit,
        offset: params.offset,
    };
    Ok(Json(service.history(&query).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    phase: Option<String>,
    test: Option<u32>,
    stream: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
    tail: Option<usize>,
    grep: Option<String>,
    context: Option<usize>,
}

/// `GET /v1/jobs/{id}/logs`
pub async fn logs(
    Scoped(service): Scoped,
    Path(id): Path<String>,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Json<Logs>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(query_error)?;
    let stream = params
        .stream
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Stream>().map_err(|e| ApiError::invalid("stream", e.to_string())))
        .transpose()?;
    let query = LogsQuery {
        phase: parse_phase(params.phase.as_deref())?,
        test: params.test,
        stream,
        after: params.after.unwrap_or(0),
        limit: params.limit,
        tail: params.tail,
        grep: params.grep.filter(|g| !g.is_empty()),
        context: params.context,
    };
    Ok(Json(service.logs(id, &query).await?))
}

pub fn parse_phase(phase: Option<&str>) -> Result<Option<Phase>, ApiError> {
    phase
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<Phase>().map_err(|e| ApiError::invalid("phase", e.to_string())))
        .transpose()
}

pub fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::invalid("query", format!("is invalid: {}", rejection.body_text()))
}

/// `POST /v1/jobs/{id}/kill`
pub async fn kill(
    Scoped(service): Scoped,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let bytes = read_body(body).await?;
    let mut request: KillBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        KillBody::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", format!("is not a kill request: {e}")))?
    };
    if request.by.is_none() {
        request.by = headers.get(header::USER_AGENT).and_then(|ua| ua.to_str().ok()).map(|ua| format!("client {ua}"));
    }
    let view = service.kill(id, request).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `POST /v1/jobs/{id}/cleanup`
pub async fn cleanup(Scoped(service): Scoped, Path(id): Path<String>) -> Result<Json<CleanedUp>, ApiError> {
    Ok(Json(service.cleanup(parse_id(&id)?).await?))
}

/// `POST /v1/zombies/cleanup`
pub async fn remove_zombies(Scoped(service): Scoped) -> Result<Json<ZombiesRemoved>, ApiError> {
    Ok(Json(service.remove_zombies().await?))
}
