//! The REST API (`docs/api.md`): routes, their handlers, and the one error type every refusal
//! goes through.
//!
//! Handlers translate between HTTP and the engine and nothing else: they validate input, call
//! the engine, and map its answers and errors to status codes. They never change job state
//! themselves.

pub(crate) mod error;
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

use crate::auth::Auth;
use crate::service::Service;

pub use error::ApiError;
pub(crate) use jobs::read_body;

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
    service: Service,
    engine: Engine,
    info: Arc<ServiceInfo>,
    /// Ends the MCP sessions when the service stops.
    shutdown: CancellationToken,
    /// Whose `Host` the MCP endpoint answers: loopback names only, unless the service listens
    /// for other hosts.
    mcp_hosts: jobforge_mcp::Hosts,
    /// Who may call.
    auth: Arc<Auth>,
}

impl AppState {
    pub fn new(engine: Engine, info: ServiceInfo, shutdown: CancellationToken) -> Self {
        let service = Service::new(engine.clone(), shutdown.clone());
        let auth = Arc::new(Auth::Off);
        AppState { service, engine, info: Arc::new(info), shutdown, mcp_hosts: jobforge_mcp::Hosts::Loopback, auth }
    }

    /// Callers are held to `limits`.
    pub fn with_limits(mut self, limits: crate::service::limits::LimitSettings) -> Self {
        self.service = self.service.with_limits(limits);
        self
    }

    /// Callers authenticate as `auth` says.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Answer MCP requests for any `Host` (a service listening beyond loopback).
    pub fn with_mcp_for_any_host(mut self) -> Self {
        self.mcp_hosts = jobforge_mcp::Hosts::Any;
        self
    }

    pub fn service(&self) -> &Service {
        &self.service
    }
}

/// The whole API as a router, for `axum::serve` or for calling in-process in tests.
pub fn app(state: AppState) -> Router {
    let jobs: Arc<dyn jobforge_api::Jobs> = Arc::new(state.service.clone());
    let mcp = jobforge_mcp::http_service(jobs, state.mcp_hosts, state.shutdown.clone());
    Router::new()
        .nest_service("/mcp", mcp)
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
        .merge(crate::compat::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Every route, MCP's included, sees the caller; only /health and /ready are open.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        // Bodies are read and limited by the handlers themselves, so an oversized body gets
        // our error body and not a bare 413.
        .layer(DefaultBodyLimit::disable())
        // A caller that starts a body and stalls holds a connection; 30 s is plenty for 1 MiB.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_secs(30)))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
