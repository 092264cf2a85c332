//! `GET /v1/client/fs/logs/:alloc_id`: a task's stdout or stderr, framed or plain, optionally
//! followed.
//!
//! Framed mode (the default) writes back-to-back JSON objects with no separator:
//! `{"Offset":N,"Data":"<base64>","File":"alloc/logs/<task>.<type>.0"}`, empty fields omitted,
//! `Offset` being the file offset after the frame's data, at most 64 KiB of data per frame, and
//! a `{}` heartbeat about every second while following with nothing to send. New output is
//! picked up every 200 ms (Nomad's framer batches over the same window, and its file watcher
//! polls). A followed stream ends once the task is dead and its log is read to the end;
//! `follow=false` ends at the current end of the file. Log files are never rotated here.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Inner;
use super::http::{HttpError, Query, streaming_response};

const FRAME_DATA: usize = 64 * 1024;
const BATCH_WINDOW: Duration = Duration::from_millis(200);
const HEARTBEAT: Duration = Duration::from_secs(1);

pub(crate) async fn serve(inner: Arc<Inner>, alloc_id: &str, query: &Query) -> Result<Response, HttpError> {
    let bad = |m: &str| HttpError::new(StatusCode::BAD_REQUEST, m);
    if alloc_id.is_empty() {
        return Err(bad("allocation ID must be specified"));
    }
    let task = query.get("task").filter(|t| !t.is_empty()).ok_or_else(|| bad("must provide task name"))?.to_owned();
    let follow = query.bool("follow", false)?;
    let plain = query.bool("plain", false)?;
    let kind = match query.get("type") {
        Some(kind @ ("stdout" | "stderr")) => kind.to_owned(),
        _ => return Err(bad("must provide log type (stdout/stderr)")),
    };
    let origin = match query.get("origin") {
        None | Some("") | Some("start") => "start",
        Some("end") => "end",
        Some(_) => return Err(bad("origin must be start or end")),
    };
    let offset: u64 = match query.get("offset") {
        None | Some("") => 0,
        Some(text) => text.parse::<i64>().map_err(|e| bad(&format!("Failed to parse offset: {e}")))?.max(0) as u64,
    };

    let started = inner.store.read(|state| {
        let alloc = state
            .allocs
            .get(alloc_id)
            .ok_or(HttpError::new(StatusCode::NOT_FOUND, format!("Unknown allocation {alloc_id:?}")))?;
        let group = alloc.job["TaskGroups"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["Name"].as_str() == Some(alloc.task_group.as_str())));
        let known = group
            .and_then(|g| g["Tasks"].as_array())
            .is_some_and(|tasks| tasks.iter().any(|t| t["Name"].as_str() == Some(task.as_str())));
        if !known {
            return Err(HttpError::new(StatusCode::BAD_REQUEST, format!("unknown task name {task:?}")));
        }
        let started = alloc.task_states.as_ref().and_then(|s| s.get(&task)).is_some_and(|s| s.started_at != 0);
        Ok(started)
    })?;
    if !started {
        return Err(HttpError::new(StatusCode::NOT_FOUND, format!("task {task:?} not started yet. No logs available")));
    }

    let file = format!("alloc/logs/{task}.{kind}.0");
    let path = inner.config.data_dir.join("allocs").join(alloc_id).join(&file);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let start = match origin {
        "end" => size.saturating_sub(offset),
        _ => offset.min(size),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let stream = LogStream { inner, alloc_id: alloc_id.to_owned(), task, path, file, plain, follow, offset: start };
    tokio::spawn(stream.run(sender));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    Ok(streaming_response(body, if plain { "text/plain; charset=utf-8" } else { "application/json" }))
}

struct LogStream {
    inner: Arc<Inner>,
    alloc_id: String,
    task: String,
    path: PathBuf,
    /// The log file's path relative to the alloc dir, as frames name it.
    file: String,
    plain: bool,
    follow: bool,
    offset: u64,
}

impl LogStream {
    fn frame(&self, data: &[u8], event: &str) -> Bytes {
        if self.plain {
            return Bytes::copy_from_slice(data);
        }
        // Go's field order, empty fields omitted.
        let mut fields = Vec::new();
        if self.offset != 0 {
            fields.push(format!("\"Offset\":{}", self.offset));
        }
        if !data.is_empty() {
            fields.push(format!("\"Data\":\"{}\"", BASE64.encode(data)));
        }
        fields.push(format!("\"File\":{}", serde_json::Value::String(self.file.clone())));
        if !event.is_empty() {
            fields.push(format!("\"FileEvent\":{}", serde_json::Value::String(event.to_owned())));
        }
        Bytes::from(format!("{{{}}}", fields.join(",")))
    }

    /// Up to one frame of data from the current offset; `None` if the file shrank.
    fn read_chunk(&self) -> Option<Vec<u8>> {
        let Ok(mut file) = std::fs::File::open(&self.path) else { return Some(Vec::new()) };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            return None;
        }
        let mut data = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = file.take(FRAME_DATA as u64).read_to_end(&mut data);
        }
        Some(data)
    }

    fn task_dead(&self) -> bool {
        self.inner.store.read(|state| {
            state
                .allocs
                .get(&self.alloc_id)
                .and_then(|a| a.task_states.as_ref())
                .and_then(|s| s.get(&self.task))
                .is_none_or(|s| s.state == "dead")
        })
    }

    async fn run(mut self, sender: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) {
        let mut last_sent = Instant::now();
        loop {
            // Whether the task was dead before this read: then this read sees all it wrote.
            let dead = self.follow && self.task_dead();
            let Some(data) = self.read_chunk() else {
                self.offset = 0;
                let frame = self.frame(&[], "file truncated");
                if sender.send(Ok(frame)).await.is_err() {
                    return;
                }
                continue;
            };
            if !data.is_empty() {
                self.offset += data.len() as u64;
                if sender.send(Ok(self.frame(&data, ""))).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
                continue;
            }
            if !self.follow || dead || self.inner.shutdown.is_cancelled() {
                return;
            }
            if !self.plain && last_sent.elapsed() >= HEARTBEAT {
                if sender.send(Ok(Bytes::from_static(b"{}"))).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(BATCH_WINDOW) => {}
                _ = sender.closed() => return,
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }
}
