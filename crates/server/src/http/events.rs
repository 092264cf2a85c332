//! `GET /v1/jobs/{id}/events`: the job's status and log lines as Server-Sent Events, from the
//! archive first and then live, ending with `end` once the job has finished.
//!
//! A task per stream reads the store and waits on the change signal of the job's driver, or,
//! when another replica drives the job, on the store's; it stops when the client goes away or
//! the service shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use jobforge_api::{JobView, events as names};
use jobforge_core::engine::Engine;
use jobforge_core::logs::LogQuery;
use jobforge_core::{JobId, Phase, Timestamp};

use super::jobs::{not_found, parse_id, parse_phase, query_error};
use super::{ApiError, AppState};

const BATCH: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    after: Option<u64>,
    phase: Option<String>,
}

pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<EventParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(query_error)?;
    let phase = parse_phase(params.phase.as_deref())?;
    // Last-Event-ID is the seq of the last line a reconnecting client saw.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let after = params.after.or(resume).unwrap_or(0);
    if state.engine.get(id).await.map_err(|e| ApiError::internal("could not read the job", e))?.is_none() {
        return Err(not_found(id));
    }
    let (tx, rx) = mpsc::channel(256);
    let feed = Feed { engine: state.engine.clone(), id, phase, cursor: after, tx };
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            result = feed.run() => if let Err(err) = result {
                tracing::debug!(job_id = %id, error = %err, "event stream ended early");
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")))
}

/// One client's stream.
struct Feed {
    engine: Engine,
    id: JobId,
    phase: Option<Phase>,
    cursor: u64,
    tx: mpsc::Sender<Result<Event, Infallible>>,
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("the client went away")]
    Gone,
    #[error("store: {0}")]
    Store(#[from] jobforge_core::ports::StoreError),
    #[error("the job vanished")]
    Vanished,
}

impl Feed {
    async fn run(mut self) -> Result<(), FeedError> {
        // Subscribe before the first read, so no change between the read and the wait is lost.
        let mut changes = self.engine.watch(self.id);
        let mut last_update: Option<Timestamp> = None;
        let mut store_version = 0;
        loop {
            self.send_lines().await?;
            let record = self.engine.get(self.id).await?.ok_or(FeedError::Vanished)?;
            if last_update != Some(record.updated_at) {
                last_update = Some(record.updated_at);
                self.send(names::STATUS, &JobView::from_record(&record)).await?;
            }
            // `end` promises nothing changes any more: the job is over and cleaned up.
            if record.status.is_terminal() && record.cleaned_up {
                // Lines archived just before the end are in by now.
                self.send_lines().await?;
                return self.send(names::END, &JobView::from_record(&record)).await;
            }
            match changes.as_mut() {
                Some(rx) => tokio::select! {
                    changed = rx.changed() => if changed.is_err() {
                        // The driver ended; the next read sees the final state.
                        changes = None;
                    },
                    _ = self.tx.closed() => return Err(FeedError::Gone),
                },
                None => {
                    // Driven by another replica (or between two drivers): the store says when
                    // the job changes.
                    tokio::select! {
                        next = self.engine.job_changed(self.id, store_version, Duration::from_secs(30)) => {
                            store_version = next?;
                        }
                        _ = self.tx.closed() => return Err(FeedError::Gone),
                    }
                    changes = self.engine.watch(self.id);
                }
            }
        }
    }

    async fn send_lines(&mut self) -> Result<(), FeedError> {
        loop {
            let query = LogQuery { phase: self.phase, test: None, after: self.cursor, limit: BATCH };
            let lines = self.engine.logs(self.id, &query).await?;
            for line in &lines {
                let event = Event::default()
                    .event(names::LOG)
                    .id(line.seq.to_string())
                    .json_data(line)
                    .unwrap_or_else(|_| Event::default().comment("unserializable line"));
                self.tx.send(Ok(event)).await.map_err(|_| FeedError::Gone)?;
                self.cursor = line.seq;
            }
            if lines.len() < BATCH {
                return Ok(());
            }
        }
    }

    async fn send(&self, name: &str, view: &JobView) -> Result<(), FeedError> {
        let event = Event::default().event(name).json_data(view).unwrap_or_else(|_| Event::default().comment("?"));
        self.tx.send(Ok(event)).await.map_err(|_| FeedError::Gone)
    }
}
