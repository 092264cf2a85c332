//! `/health` (the process answers) and `/ready` (its store, backend and secrets answer).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use jobforge_api::{Health, Ready};
use jobforge_core::Timestamp;

use super::{ApiError, AppState};
use crate::auth::Scoped;

pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let info = &state.info;
    Json(Health {
        status: "ok".into(),
        version: info.version.clone(),
        backend: info.backend.clone(),
        store: info.store.clone(),
        time: Timestamp::now(),
    })
}

/// `GET /v1/config`: the settings new jobs get now, wherever each came from (defaults, file,
/// environment, flags, Consul KV). Secrets appear as paths only. Admins only.
pub async fn config(
    State(state): State<AppState>,
    Scoped(service): Scoped,
) -> Result<Json<serde_json::Value>, ApiError> {
    service.caller().may_administer()?;
    let settings = state.engine.settings();
    let info = &state.info;
    Ok(Json(serde_json::json!({
        "backend": info.backend,
        "store": info.store,
        "build_timeout": settings.build_timeout,
        "test_timeout": settings.test_timeout,
        "publish_timeout": settings.publish_timeout,
        "kill_grace_seconds": settings.kill_grace.as_secs(),
        "max_active_jobs": settings.max_active_jobs,
        "temp_registry": settings.temp_registry,
        "temp_prefix": settings.temp_prefix,
        "temp_registry_credentials_path": settings.temp_registry_credentials,
        "default_resource_limits": settings.resources,
    })))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let ports = state.engine.ports();
    let (store, backend, secrets) = tokio::join!(ports.records.check(), ports.backend.check(), ports.secrets.check());
    // Open to anyone (load balancers probe it without a token), so it says which part fails
    // and nothing more: errors name internal addresses. The log has them.
    let checks: BTreeMap<String, String> = [
        ("store", store.map_err(|e| e.to_string())),
        ("backend", backend.map_err(|e| e.to_string())),
        ("secrets", secrets.map_err(|e| e.to_string())),
    ]
    .into_iter()
    .map(|(name, result)| {
        let answer = match result {
            Ok(()) => "ok".to_owned(),
            Err(error) => {
                tracing::warn!(check = name, %error, "not ready");
                "unavailable (the service log says why)".to_owned()
            }
        };
        (name.to_owned(), answer)
    })
    .collect();
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { ready, checks }))
}
