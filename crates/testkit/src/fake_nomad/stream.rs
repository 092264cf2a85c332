//! `GET /v1/event/stream`: the store's events as NDJSON, one line per raft entry
//! (`{"Index":N,"Events":[...]}`), filtered by `topic=Topic:Key` (Key or any FilterKey matches,
//! `*` for all) and namespace, with a `{}` heartbeat line at once and then every 30 s.
//!
//! It only reads the event buffer the store fills on each write; it never changes state.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::Inner;
use super::http::{HttpError, Query, streaming_response};

const HEARTBEAT: Duration = Duration::from_secs(30);

pub(crate) fn serve(inner: Arc<Inner>, query: &Query) -> Result<Response, HttpError> {
    let start = match query.get("index") {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "Invalid index"))?,
    };
    let namespace = query.get("namespace").filter(|n| !n.is_empty()).unwrap_or("default").to_owned();
    let mut topics: Vec<(String, String)> = query
        .all("topic")
        .into_iter()
        .map(|t| {
            let (topic, key) = t.split_once(':').unwrap_or((t, "*"));
            (topic.to_owned(), key.to_owned())
        })
        .collect();
    if topics.is_empty() {
        topics.push(("*".into(), "*".into()));
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(run(inner, start, namespace, topics, sender));
    let mut response = streaming_response(
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)),
        "application/json",
    );
    response.headers_mut().insert("Cache-Control", axum::http::HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn matches(event: &Value, namespace: &str, topics: &[(String, String)]) -> bool {
    let event_namespace = event["Namespace"].as_str().unwrap_or_default();
    if namespace != "*" && !event_namespace.is_empty() && event_namespace != namespace {
        return false;
    }
    let topic = event["Topic"].as_str().unwrap_or_default();
    let key = event["Key"].as_str().unwrap_or_default();
    let filter_keys: Vec<&str> =
        event["FilterKeys"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    topics.iter().any(|(t, k)| (t == "*" || t == topic) && (k == "*" || k == key || filter_keys.contains(&k.as_str())))
}

async fn run(
    inner: Arc<Inner>,
    start: u64,
    namespace: String,
    topics: Vec<(String, String)>,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut changes = inner.store.subscribe();
    let mut next = if start == 0 { inner.store.read(|s| s.index) + 1 } else { start };
    if sender.send(Ok(Bytes::from_static(b"{}\n"))).await.is_err() {
        return;
    }
    loop {
        changes.borrow_and_update();
        let batches: Vec<(u64, Vec<Value>)> = inner.store.read(|state| {
            state
                .events
                .iter()
                .filter(|b| b.index >= next)
                .map(|b| (b.index, b.events.iter().filter(|e| matches(e, &namespace, &topics)).cloned().collect()))
                .collect()
        });
        for (index, events) in batches {
            next = index + 1;
            if events.is_empty() {
                continue;
            }
            let mut line = serde_json::to_vec(&json!({ "Index": index, "Events": events })).unwrap_or_default();
            line.push(b'\n');
            if sender.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(HEARTBEAT) => {
                if sender.send(Ok(Bytes::from_static(b"{}\n"))).await.is_err() {
                    return;
                }
            }
            _ = sender.closed() => return,
            _ = inner.shutdown.cancelled() => return,
        }
    }
}
