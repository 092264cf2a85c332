//! jobforge for AI agents, over the Model Context Protocol: the tools `submitJob`, `getStatus`,
//! `getLogs`, `watchJob`, `killJob`, `cleanup`, `getHistory` and `cleanupZombies`.
//!
//! [`JobforgeMcp`] serves them over any [`Jobs`]: the service's own (mounted at `/mcp` with
//! [`http_service`], the streamable HTTP transport) or the HTTP client's (`jobforge mcp`, over
//! stdio, with [`serve_stdio`]), so an agent gets the same tools either way. Schemas come from
//! the API's own types. Every answer fits an agent's context ([`answers`]), and every refusal
//! (an unknown job, an invalid config with each problem, a kill of a finished job) is a tool
//! result with `isError`, never a protocol error.
//!
//! This crate only translates between MCP and [`Jobs`]; it must not reach the engine itself.

pub mod answers;
mod params;
mod tools;

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use jobforge_api::{ErrorCode, Jobs, Refusal};
use jobforge_core::access::Caller;

/// The tools, over `jobs`.
#[derive(Clone)]
pub struct JobforgeMcp {
    jobs: Arc<dyn Jobs>,
    /// Over HTTP every request must carry the [`Caller`] the service authenticated it as.
    callers: Callers,
    tool_router: ToolRouter<JobforgeMcp>,
}

/// Where a tool call's caller comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Callers {
    /// From each HTTP request, as the service's authentication put it there.
    PerRequest,
    /// Nowhere: `jobs` speaks to the service over HTTP with its own token.
    Remote,
}

impl JobforgeMcp {
    /// The tools over a [`Jobs`] that decides itself who calls (the HTTP client).
    pub fn new(jobs: Arc<dyn Jobs>) -> Self {
        JobforgeMcp { jobs, callers: Callers::Remote, tool_router: Self::tool_router() }
    }

    fn per_request(jobs: Arc<dyn Jobs>) -> Self {
        JobforgeMcp { jobs, callers: Callers::PerRequest, tool_router: Self::tool_router() }
    }

    /// The operations on behalf of this call's caller. Over HTTP a request without one is
    /// refused rather than served as anyone: the service failed to authenticate it.
    fn jobs_for(&self, extensions: &rmcp::model::Extensions) -> Result<Arc<dyn Jobs>, Refusal> {
        if self.callers == Callers::Remote {
            return Ok(self.jobs.clone());
        }
        let caller = extensions.get::<http::request::Parts>().and_then(|parts| parts.extensions.get::<Caller>());
        match caller {
            Some(caller) => Ok(self.jobs.as_caller(caller)),
            None => Err(Refusal::new(401, ErrorCode::Unauthorized, "the request was not authenticated")),
        }
    }
}

/// Who may reach the HTTP endpoint: the `Host` header is checked against loopback names unless
/// the service listens for other hosts (then it is theirs to authenticate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hosts {
    Loopback,
    Any,
}

/// The streamable HTTP transport, to mount at `/mcp`; it ends its sessions on `shutdown`.
pub fn http_service(
    jobs: Arc<dyn Jobs>,
    hosts: Hosts,
    shutdown: CancellationToken,
) -> StreamableHttpService<JobforgeMcp, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(shutdown);
    if hosts == Hosts::Any {
        config = config.disable_allowed_hosts();
    }
    StreamableHttpService::new(
        move || Ok(JobforgeMcp::per_request(jobs.clone())),
        LocalSessionManager::default().into(),
        config,
    )
}

/// Serve the tools on stdin and stdout until the client goes away.
pub async fn serve_stdio(jobs: Arc<dyn Jobs>) -> Result<(), std::io::Error> {
    let running = JobforgeMcp::new(jobs).serve(rmcp::transport::stdio()).await.map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}
