//! The REST API (`docs/api.md`): routes, their handlers, and the one error type every refusal
//! goes through.
//!
//! Handlers translate between HTTP and the engine and nothing else: they validate input, call
//! the engine, and map its answers and errors to status codes. They never change job state
//! themselves.

mod error;
mod events;
mod jobs;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use jobforge_core::engine::Engine;

pub use error::ApiError;

/// How the service describes itself in `/health`.
#[derive(Clone, Debug)]
pub struct ServiceInfo {
    pub version: String,
    pub backend: String,
    pub store: String,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    info: Arc<ServiceInfo>,
    /// Ends long-lived responses (event streams) when the service stops.
    shutdown: CancellationToken,
}

impl AppState {
    pub fn new(engine: Engine, info: ServiceInfo, shutdown: CancellationToken) -> Self {
        AppState { engine, info: Arc::new(info), shutdown }
    }
}

/// The whole API as a router, for `axum::serve` or for calling in-process in tests.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/jobs", post(jobs::submit).get(jobs::history))
        .route("/v1/jobs/{id}", get(jobs::job))
        .route("/v1/jobs/{id}/logs", get(jobs::logs))
        .route("/v1/jobs/{id}/events", get(events::events))
        .route("/v1/jobs/{id}/kill", post(jobs::kill))
        .route("/v1/jobs/{id}/cleanup", post(jobs::cleanup))
        .route("/v1/zombies/cleanup", post(jobs::remove_zombies))
        .route("/v1/config", get(status::config))
        .route("/health", get(status::health))
        .route("/ready", get(status::ready))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Bodies are read and limited by the handlers themselves, so an oversized body gets
        // our error body and not a bare 413.
        .layer(DefaultBodyLimit::disable())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
