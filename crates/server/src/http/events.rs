//! `GET /v1/jobs/{id}/events`: the job's feed (`service::feed`) as Server-Sent Events. Lines
//! and job events carry their `seq` as the SSE id, so `Last-Event-ID` resumes everything.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;

use jobforge_api::{FeedItem, events as names};

use super::ApiError;
use super::jobs::{parse_id, parse_phase, query_error};
use crate::auth::Scoped;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    after: Option<u64>,
    phase: Option<String>,
}

pub async fn events(
    Scoped(service): Scoped,
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
    let feed = service.feed(id, after, phase).await?;
    let events = feed.map(|item| {
        Ok(match item {
            Ok(item) => sse_event(item),
            Err(refusal) => Event::default().comment(refusal.body.error),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")))
}

/// One feed item as the SSE event its name and id say.
fn sse_event(item: FeedItem) -> Event {
    let event = match &item {
        FeedItem::Status(view) => Event::default().event(names::STATUS).json_data(view),
        FeedItem::End(view) => Event::default().event(names::END).json_data(view),
        FeedItem::Log(line) => Event::default().event(names::LOG).id(line.seq.to_string()).json_data(line),
        FeedItem::Job(entry) => Event::default().event(entry.event.name()).id(entry.seq.to_string()).json_data(entry),
    };
    event.unwrap_or_else(|_| Event::default().comment("unserializable entry"))
}
