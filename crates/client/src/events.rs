//! The job event stream, `GET /v1/jobs/{id}/events`: [`Client::events`] reads one connection
//! as typed [`Event`]s, and [`Client::follow`] reconnects until the job's `end`.
//!
//! It owns the meaning of the SSE events (`status`, `log`, `end`, and the job events named
//! in `JobEvent::NAMES`; others are skipped), the
//! silence limit on a stream, and the reconnection rules of `follow`: resume after the last
//! line seen, drop a line seen before, back off, give up after a bounded number of consecutive
//! failures. It must not parse SSE itself ([`crate::sse`]) nor decide anything about the job.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{self, BoxStream, Stream, StreamExt};
use jobforge_api::JobView;
use jobforge_api::events::{self, JobEvent};
use jobforge_core::{JobId, Phase};
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::client::Client;
use crate::error::{ClientError, excerpt, seconds};
use crate::sse::{SseEvent, SseParser};

/// One event of a job's stream: the feed items of `jobforge_api`.
pub use jobforge_api::FeedItem as Event;

/// A stream of [`Event`]s (or errors) from [`Client::events`] or [`Client::follow`]. It owns
/// everything it needs (no borrow of the client) and is `Unpin`, so `.next().await` works
/// directly.
pub struct EventStream(BoxStream<'static, Result<Event, ClientError>>);

impl Stream for EventStream {
    type Item = Result<Event, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl Client {
    /// `GET /v1/jobs/{id}/events`: the job's events over one connection, starting with the
    /// lines after `after` (only those of `phase`, if given).
    ///
    /// The request fails as a whole if the job does not exist (404) or the parameters are
    /// refused (400). The stream ends after [`Event::End`], or when the server closes without
    /// one (a restart): then it simply ends; use [`Client::follow`] to carry on. A broken
    /// connection, or silence longer than [`ClientOptions::idle_timeout`], is a final
    /// [`ClientError::Connect`] item. An event whose data is not what its name promises is a
    /// [`ClientError::Decode`] item, and the stream goes on.
    ///
    /// [`ClientOptions::idle_timeout`]: crate::ClientOptions::idle_timeout
    pub async fn events(&self, id: JobId, after: u64, phase: Option<Phase>) -> Result<EventStream, ClientError> {
        let mut params = vec![("after", after.to_string())];
        if let Some(phase) = phase {
            params.push(("phase", phase.as_str().to_owned()));
        }
        let request = self
            .http
            .get(self.url(&format!("v1/jobs/{id}/events"))?)
            .query(&params)
            .header(ACCEPT, "text/event-stream");

        // The headers come under the request timeout; the body, as long as the job, under none.
        let timeout = self.options.request_timeout;
        let transport = |error: reqwest::Error| self.transport_error(&error);
        let no_answer = || self.unreachable(format!("no answer within {}", seconds(timeout)));
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Ok(sent) => sent.map_err(transport)?,
            Err(_) => return Err(no_answer()),
        };
        let status = response.status();
        tracing::debug!(url = %response.url(), status = status.as_u16(), "event stream answered");
        let content_type =
            response.headers().get(CONTENT_TYPE).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let is_event_stream = content_type.as_deref().is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !status.is_success() || !is_event_stream {
            let body = match tokio::time::timeout(timeout, response.bytes()).await {
                Ok(body) => body.map_err(transport)?,
                Err(_) => return Err(no_answer()),
            };
            if !status.is_success() {
                return Err(ClientError::from_error_answer(status.as_u16(), &body));
            }
            return Err(ClientError::Decode {
                status: status.as_u16(),
                message: format!(
                    "expected an event stream, got {} with {}",
                    content_type.as_deref().unwrap_or("no content type"),
                    excerpt(&body)
                ),
            });
        }

        let reading = Reading {
            chunks: response.bytes_stream().boxed(),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            done: false,
            status: status.as_u16(),
            client: self.clone(),
        };
        Ok(EventStream(stream::unfold(reading, Reading::next).boxed()))
    }

    /// Follows the job to its end: like [`Client::events`], but when the connection drops (or
    /// the server closes) before [`Event::End`], it connects again after the last line seen, so
    /// the caller gets every line once, in order.
    ///
    /// Reconnecting waits [`ClientOptions::reconnect_backoff`], doubling per consecutive
    /// failure; after [`ClientOptions::max_reconnects`] consecutive failures the last error is
    /// the final item. Only transient errors are retried (no answer, 502-504): a refusal such as
    /// 404 ends the stream at once, and so does a failure of the very first connection. The
    /// `status` event a new connection opens with is skipped when it shows nothing new.
    ///
    /// [`ClientOptions::reconnect_backoff`]: crate::ClientOptions::reconnect_backoff
    /// [`ClientOptions::max_reconnects`]: crate::ClientOptions::max_reconnects
    pub fn follow(&self, id: JobId, after: u64, phase: Option<Phase>) -> EventStream {
        let following = Following {
            client: self.clone(),
            id,
            phase,
            after,
            current: None,
            connected_before: false,
            fresh_connection: false,
            failures: 0,
            last_status: None,
            done: false,
        };
        EventStream(stream::unfold(following, Following::next).boxed())
    }
}

/// One connection's body, being read (`B` is reqwest's chunk type).
struct Reading<B> {
    chunks: BoxStream<'static, reqwest::Result<B>>,
    parser: SseParser,
    /// Events parsed from the last chunk, not yet handed out.
    pending: VecDeque<SseEvent>,
    done: bool,
    status: u16,
    client: Client,
}

impl<B: AsRef<[u8]>> Reading<B> {
    async fn next(mut self) -> Option<(Result<Event, ClientError>, Self)> {
        loop {
            if let Some(sse) = self.pending.pop_front() {
                let Some(item) = decode_event(sse, self.status) else { continue };
                if let Ok(Event::End(_)) = item {
                    self.done = true;
                    self.pending.clear();
                }
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let idle = self.client.options.idle_timeout;
            let chunk = match tokio::time::timeout(idle, self.chunks.next()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    self.done = true;
                    let error = self.client.unreachable(format!(
                        "the event stream was silent for {} (the service sends a keep-alive every 15 s)",
                        seconds(idle)
                    ));
                    return Some((Err(error), self));
                }
            };
            match chunk {
                Some(Ok(chunk)) => match self.parser.push(chunk.as_ref()) {
                    Ok(parsed) => self.pending.extend(parsed),
                    Err(too_long) => {
                        self.done = true;
                        let error = ClientError::Decode { status: self.status, message: too_long.to_string() };
                        return Some((Err(error), self));
                    }
                },
                Some(Err(error)) => {
                    self.done = true;
                    let why = ClientError::describe_transport(&error, &self.client.options);
                    let error = self.client.unreachable(format!("the event stream broke off: {why}"));
                    return Some((Err(error), self));
                }
                // The server closed; an event it did not finish is dropped.
                None => return None,
            }
        }
    }
}

/// The typed event an SSE event stands for; `None` for names this client does not know.
fn decode_event(sse: SseEvent, status: u16) -> Option<Result<Event, ClientError>> {
    let undecodable = |what: &str, error: serde_json::Error| {
        ClientError::undecodable(
            status,
            &format!("a `{}` event carrying {what}", sse.event),
            &error,
            sse.data.as_bytes(),
        )
    };
    let event = match sse.event.as_str() {
        events::STATUS => serde_json::from_str(&sse.data).map(Event::Status).map_err(|e| undecodable("a job", e)),
        events::LOG => serde_json::from_str(&sse.data).map(Event::Log).map_err(|e| undecodable("a log line", e)),
        events::END => serde_json::from_str(&sse.data).map(Event::End).map_err(|e| undecodable("a job", e)),
        name if JobEvent::NAMES.contains(&name) => {
            serde_json::from_str(&sse.data).map(Event::Job).map_err(|e| undecodable("a job event", e))
        }
        other => {
            tracing::debug!(event = other, "skipping an event this client does not know");
            return None;
        }
    };
    Some(event)
}

/// The state of [`Client::follow`] between items.
struct Following {
    client: Client,
    id: JobId,
    phase: Option<Phase>,
    /// The last entry's `seq` handed out (line or job event; or the caller's `after`): where to
    /// resume.
    after: u64,
    current: Option<EventStream>,
    /// A connection succeeded once: from then on a failure is a drop to recover from.
    connected_before: bool,
    /// Nothing was read yet from `current`, which is a reconnection.
    fresh_connection: bool,
    /// Consecutive connections that brought nothing new.
    failures: u32,
    last_status: Option<JobView>,
    done: bool,
}

impl Following {
    async fn next(mut self) -> Option<(Result<Event, ClientError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            let Some(current) = self.current.as_mut() else {
                if let Err(error) = self.connect().await {
                    return Some((Err(error), self));
                }
                continue;
            };
            let item = current.next().await;
            let fresh = std::mem::replace(&mut self.fresh_connection, false);
            match item {
                Some(Ok(Event::Log(line))) => {
                    if line.seq <= self.after {
                        continue; // sent before the drop
                    }
                    self.after = line.seq;
                    self.failures = 0;
                    return Some((Ok(Event::Log(line)), self));
                }
                Some(Ok(Event::Job(entry))) => {
                    if entry.seq <= self.after {
                        continue;
                    }
                    self.after = entry.seq;
                    self.failures = 0;
                    return Some((Ok(Event::Job(entry)), self));
                }
                Some(Ok(Event::Status(job))) => {
                    let new = self.last_status.as_ref().is_none_or(|last| !same_state(last, &job));
                    if new {
                        self.failures = 0;
                    }
                    self.last_status = Some(job.clone());
                    if fresh && !new {
                        continue;
                    }
                    return Some((Ok(Event::Status(job)), self));
                }
                Some(Ok(Event::End(job))) => {
                    self.done = true;
                    return Some((Ok(Event::End(job)), self));
                }
                Some(Err(error)) if error.is_transient() => {
                    tracing::debug!(job_id = %self.id, after = self.after, %error, "event stream dropped");
                    self.current = None;
                    if let Some(error) = self.failed(error) {
                        return Some((Err(error), self));
                    }
                }
                // One event that would not decode: report it, keep reading.
                Some(Err(error)) => return Some((Err(error), self)),
                None => {
                    tracing::debug!(job_id = %self.id, after = self.after, "event stream closed before the end");
                    self.current = None;
                    let error = self.client.unreachable("the event stream closed before the job ended".to_owned());
                    if let Some(error) = self.failed(error) {
                        return Some((Err(error), self));
                    }
                }
            }
        }
    }

    /// Opens the next connection, after the backoff if this is a retry. An error returned is
    /// final (the stream is done).
    async fn connect(&mut self) -> Result<(), ClientError> {
        loop {
            if self.failures > 0 {
                let backoff = self.client.options.reconnect_backoff;
                let factor = 1u32 << (self.failures - 1).min(3);
                if !backoff.is_zero() {
                    tokio::time::sleep(backoff.saturating_mul(factor)).await;
                }
            }
            match self.client.events(self.id, self.after, self.phase).await {
                Ok(events) => {
                    self.fresh_connection = self.connected_before;
                    self.connected_before = true;
                    self.current = Some(events);
                    return Ok(());
                }
                Err(error) if self.connected_before && error.is_transient() => {
                    if let Some(error) = self.failed(error) {
                        return Err(error);
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Err(error);
                }
            }
        }
    }

    /// Counts a failed connection; past the limit, the error to end with.
    fn failed(&mut self, error: ClientError) -> Option<ClientError> {
        self.failures += 1;
        if self.failures > self.client.options.max_reconnects {
            self.done = true;
            return Some(error);
        }
        None
    }
}

/// The same job state, ignoring durations (which grow while a phase runs).
fn same_state(a: &JobView, b: &JobView) -> bool {
    JobView { durations_ms: b.durations_ms.clone(), ..a.clone() } == *b
}
