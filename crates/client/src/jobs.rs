//! The [`Jobs`] operations over HTTP: what `jobforge mcp` serves its tools with. Every failure
//! becomes the [`Refusal`] the service sent, or a 503 saying it could not be reached.

use async_trait::async_trait;
use futures::StreamExt;

use jobforge_api::{
    CleanedUp, ErrorCode, Feed, History, HistoryQuery, JobView, Jobs, KillBody, Logs, LogsQuery, Refusal, Submitted,
    ZombiesRemoved,
};
use std::sync::Arc;

use jobforge_core::JobId;
use jobforge_core::access::Caller;

use crate::client::Client;
use crate::error::ClientError;

impl From<ClientError> for Refusal {
    fn from(error: ClientError) -> Refusal {
        match error {
            ClientError::Api { status, body } => Refusal { status, body },
            ClientError::Connect { .. } => Refusal::unavailable(error.to_string()),
            ClientError::Decode { .. } | ClientError::BadUrl(_) => {
                Refusal::new(502, ErrorCode::Unavailable, error.to_string())
            }
        }
    }
}

#[async_trait]
impl Jobs for Client {
    /// The service decides who calls, from this client's token.
    fn as_caller(&self, _caller: &Caller) -> Arc<dyn Jobs> {
        Arc::new(self.clone())
    }

    async fn submit(&self, config: &serde_json::Value) -> Result<Submitted, Refusal> {
        Ok(Client::submit(self, config).await?)
    }

    async fn job(&self, id: JobId) -> Result<JobView, Refusal> {
        Ok(Client::job(self, id).await?)
    }

    async fn logs(&self, id: JobId, query: &LogsQuery) -> Result<Logs, Refusal> {
        Ok(Client::logs(self, id, query).await?)
    }

    async fn feed(&self, id: JobId, after: u64) -> Result<Feed, Refusal> {
        // A refusal of the first connection (an unknown job) is the answer, not a broken
        // stream; from then on `follow` reconnects by itself.
        let mut items = self.follow(id, after, None);
        match items.next().await {
            Some(Err(error)) => Err(error.into()),
            Some(Ok(first)) => {
                let rest = items.map(|item| item.map_err(Refusal::from));
                Ok(futures::stream::once(async move { Ok(first) }).chain(rest).boxed())
            }
            None => Ok(futures::stream::empty().boxed()),
        }
    }

    async fn kill(&self, id: JobId, request: &KillBody) -> Result<JobView, Refusal> {
        Ok(Client::kill(self, id, request.by.as_deref(), request.reason.as_deref()).await?)
    }

    async fn cleanup(&self, id: JobId) -> Result<CleanedUp, Refusal> {
        Ok(Client::cleanup(self, id).await?)
    }

    async fn history(&self, query: &HistoryQuery) -> Result<History, Refusal> {
        Ok(Client::history_of(self, query).await?)
    }

    async fn remove_zombies(&self) -> Result<ZombiesRemoved, Refusal> {
        Ok(Client::remove_zombies(self).await?)
    }
}
