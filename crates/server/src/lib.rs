//! The jobforge service: configuration ([`config`]), the choice and construction of adapters
//! ([`wiring`]), and the REST API over the engine ([`http`]).
//!
//! This is the only crate that knows HTTP. It owns no job logic: every request becomes a call
//! on `jobforge_core::engine::Engine`.

pub mod auth;
pub mod compat;
pub mod config;
pub mod http;
pub mod service;
pub mod wiring;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServiceConfig;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Wiring(#[from] wiring::WiringError),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not resume jobs: {0}")]
    Recover(#[from] jobforge_core::ports::StoreError),
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error(transparent)]
    Auth(#[from] auth::AuthFileError),
    #[error(
        "refusing to listen on {0} without tokens: anyone who reaches it could run code with this service's \
         credentials. Give --auth-file (see 'jobforge token new'), listen on a loopback address, or pass \
         --insecure-no-auth if something in front of it authenticates callers"
    )]
    Unprotected(std::net::SocketAddr),
}

/// How long shutdown waits for job drivers to reach a safe point.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Run the service until `shutdown` is cancelled. `on_listen` hears the bound address (port 0
/// picks a free one).
pub async fn serve(
    config: ServiceConfig,
    shutdown: CancellationToken,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    let auth = authentication(&config)?;
    let wired = wiring::wire(&config, &shutdown).await?;
    let engine = jobforge_core::engine::Engine::new(wired.ports, config.engine_settings(), shutdown.child_token());
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    // Resume before serving: a status read right after start-up already sees resumed jobs.
    let recovery = engine.recover().await?;
    tracing::info!(resumed = recovery.resumed.len(), removed = recovery.removed.len(), "recovered");
    tokio::spawn(sweep_zombies(engine.clone(), config.zombie_sweep.to_std(), shutdown.clone()));
    if let Some(consul) = wired.consul.clone() {
        tokio::spawn(watch_consul_config(consul, config.clone(), engine.clone(), shutdown.clone()));
    }
    let mut state =
        http::AppState::new(engine.clone(), wired.info, shutdown.clone()).with_auth(auth).with_limits(config.limits);
    if !config.listen.ip().is_loopback() {
        state = state.with_mcp_for_any_host();
    }
    on_listen(addr);
    tracing::info!(%addr, "listening");
    // Small writes (an event, the end of a response) go out at once instead of waiting ~40 ms
    // for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(ServeError::Http)?;
    if tokio::time::timeout(DRAIN_LIMIT, engine.drained()).await.is_err() {
        tracing::warn!("job drivers did not stop in time; their jobs resume on the next start");
    }
    Ok(())
}

/// Who may call: the auth file's tokens, or anyone where that is safe (or the operator said so).
fn authentication(config: &ServiceConfig) -> Result<auth::Auth, ServeError> {
    match &config.auth_file {
        Some(path) => {
            let auth = auth::Auth::from_file(path)?;
            tracing::info!(path = %path.display(), "callers need a token");
            Ok(auth)
        }
        None if config.listen.ip().is_loopback() => {
            tracing::warn!(
                "no tokens (--auth-file): any caller may use any stored secret, and a secret without \
                 allowed_hosts goes to whatever host a job names"
            );
            Ok(auth::Auth::Off)
        }
        None if config.insecure_no_auth => {
            tracing::warn!(listen = %config.listen, "serving beyond loopback without tokens (--insecure-no-auth)");
            Ok(auth::Auth::Off)
        }
        None => Err(ServeError::Unprotected(config.listen)),
    }
}

/// Every `period`, remove what the backend runs for no live job. Runs of live jobs are bounded
/// by their drivers' deadlines; this catches the rest (a run registered by hand, one left by a
/// service that lost its record).
async fn sweep_zombies(engine: jobforge_core::engine::Engine, period: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(error) = engine.remove_orphans().await {
                    tracing::warn!(%error, "zombie sweep failed");
                }
            }
        }
    }
}

/// Apply the configuration in Consul KV on top of the service's own, now and on every change.
/// Consul sits above the file, the environment and the flags; a job's own values stay above all.
async fn watch_consul_config(
    client: jobforge_consul::ConsulClient,
    config: ServiceConfig,
    engine: jobforge_core::engine::Engine,
    shutdown: CancellationToken,
) {
    let base = config.engine_settings();
    let apply = move |kv: jobforge_consul::config::KvConfig| engine.set_settings(config::with_kv(&base, &kv));
    jobforge_consul::config::watch(
        client,
        config.consul.prefix(),
        Duration::from_secs(300),
        apply,
        shutdown.cancelled_owned(),
    )
    .await;
}
