//! `GET /v1/jobs/{id}/events`: the job's journal (its events and log lines) as Server-Sent
//! Events, from the archive first and then live, with the job's `status` after each batch of
//! events, ending with `end` once the job has ended and every entry was sent.
//!
//! A task per stream reads the journal after its cursor and waits on the job's feed (wherever
//! the job is driven); it never polls the record. It stops when the client goes away or the
//! service shuts down.

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
use jobforge_core::logs::{Entry, EntryQuery};
use jobforge_core::record::JobRecord;
use jobforge_core::{JobId, Phase};

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
    // Last-Event-ID is the seq of the last entry (line or event) a reconnecting client saw.
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
        // The version first, so nothing appended between a read and the wait is missed.
        let mut version = self.engine.journal_changed(self.id, 0, Duration::ZERO).await?;
        let mut record = self.record().await?;
        let mut shown = record.updated_at;
        self.send(names::STATUS, &JobView::from_record(&record)).await?;
        loop {
            // An ended job's last write (its outbox archived) comes after its last event.
            if self.send_entries().await? || record.state.is_ended() {
                record = self.record().await?;
                if record.updated_at != shown {
                    shown = record.updated_at;
                    self.send(names::STATUS, &JobView::from_record(&record)).await?;
                }
            }
            // `end` promises nothing follows: the job has ended and every entry it decided is
            // in the journal (an ended record is live until then).
            if !record.is_live() {
                self.send_entries().await?;
                return self.send(names::END, &JobView::from_record(&record)).await;
            }
            tokio::select! {
                next = self.engine.journal_changed(self.id, version, Duration::from_secs(30)) => version = next?,
                _ = self.tx.closed() => return Err(FeedError::Gone),
            }
        }
    }

    async fn record(&self) -> Result<JobRecord, FeedError> {
        self.engine.get(self.id).await?.ok_or(FeedError::Vanished)
    }

    /// Send every entry after the cursor; whether any was a job event.
    async fn send_entries(&mut self) -> Result<bool, FeedError> {
        let mut events = false;
        loop {
            let query = EntryQuery { phase: self.phase, after: self.cursor, limit: BATCH };
            let entries = self.engine.entries(self.id, &query).await?;
            for entry in &entries {
                let event = match entry {
                    Entry::Line(line) => Event::default().event(names::LOG).json_data(line),
                    Entry::Event(job_event) => {
                        events = true;
                        Event::default().event(job_event.event.name()).json_data(job_event)
                    }
                };
                let event = event.map(|e| e.id(entry.seq().to_string()));
                let event = event.unwrap_or_else(|_| Event::default().comment("unserializable entry"));
                self.tx.send(Ok(event)).await.map_err(|_| FeedError::Gone)?;
                self.cursor = entry.seq();
            }
            if entries.len() < BATCH {
                return Ok(events);
            }
        }
    }

    async fn send(&self, name: &str, view: &JobView) -> Result<(), FeedError> {
        let event = Event::default().event(name).json_data(view).unwrap_or_else(|_| Event::default().comment("?"));
        self.tx.send(Ok(event)).await.map_err(|_| FeedError::Gone)
    }
}
