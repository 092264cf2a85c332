//! Following a run: its log lines as the shim appends them, then its exit.
//!
//! Event-driven on both ends: inotify says when the run directory changed, and a thread
//! blocked on the run's lock says when the shim is gone. The same code serves a run started a
//! moment ago, one found after a restart, and one that finished long ago.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use jobforge_core::logs::RunLine;
use jobforge_core::ports::{BackendError, RunEvent, RunEvents, RunExit};
use jobforge_core::{RunId, Timestamp};

use crate::rundir::RunDir;
use crate::watch::Watcher;

/// Follow `run` from after line `after`.
pub fn follow(watcher: Arc<Watcher>, id: RunId, run: RunDir, after: u64) -> RunEvents {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        if let Err(err) = follow_task(&watcher, &id, &run, after, &tx).await {
            let _ = tx.send(Err(err)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

type Sender = mpsc::Sender<Result<RunEvent, BackendError>>;

async fn follow_task(
    watcher: &Arc<Watcher>,
    id: &RunId,
    run: &RunDir,
    after: u64,
    tx: &Sender,
) -> Result<(), BackendError> {
    if !run.exists() {
        return Err(BackendError::NoSuchRun(id.clone()));
    }
    let io_err = |context: &str| {
        let context = format!("{context} of run {id}");
        move |source| BackendError::Io { context, source }
    };
    // Watch before the first read, so no write between that read and the wait is missed.
    let changes = watcher.watch(run.path()).map_err(io_err("watching the log"))?;
    let mut ended = shim_ended(run.clone());
    let mut log = LogTail::new(run.log_path(), after);
    let mut shim_gone = false;
    let mut began = false;

    loop {
        // Lines first, then the pid file: the shim writes its pid before any line, so once a
        // line is read the beginning is known and goes out ahead of it. (Looking at the pid
        // first could miss a run that began and printed between the two looks.)
        let (lines, more) = log.read_some().map_err(io_err("reading the log"))?;
        if !began && let Some(at) = began_at(run) {
            began = true;
            if tx.send(Ok(RunEvent::Began { at })).await.is_err() {
                return Ok(());
            }
        }
        for line in lines {
            if tx.send(Ok(RunEvent::Line(line))).await.is_err() {
                return Ok(());
            }
        }
        if more {
            continue;
        }
        if shim_gone {
            let exit = match run.read_exit().map_err(io_err("reading the exit status"))? {
                Some(record) => record.into(),
                None => RunExit::Lost { message: "its supervisor ended without recording an exit status".into() },
            };
            let _ = tx.send(Ok(RunEvent::Exit(exit))).await;
            return Ok(());
        }
        tokio::select! {
            _ = changes.changed() => {}
            result = &mut ended => {
                if let Ok(Err(err)) = result {
                    return Err(BackendError::Io { context: format!("waiting for run {id}"), source: err });
                }
                // One more read after this: everything the shim wrote is in the file now.
                shim_gone = true;
            }
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// When the run's shim started, from its pid file (none before it has written one).
fn began_at(run: &RunDir) -> Option<Timestamp> {
    Timestamp::from_system_time(std::fs::metadata(run.pid_path()).ok()?.modified().ok()?)
}

/// Resolves once no shim holds the run's lock. A blocked thread, because flock has no async
/// form; it ends with the shim, or with the process.
fn shim_ended(run: RunDir) -> oneshot::Receiver<io::Result<()>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let result = match run.wait_unlocked() {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        let _ = tx.send(result);
    });
    rx
}

/// How much of the log one read takes in.
const READ_CHUNK: u64 = 1024 * 1024;

/// Reads complete lines appended to a file since the last read.
struct LogTail {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
    after: u64,
}

impl LogTail {
    fn new(path: PathBuf, after: u64) -> Self {
        LogTail { path, file: None, pending: Vec::new(), after }
    }

    /// The complete lines of the next chunk of the file, and whether more may follow at once.
    /// One chunk at a time, so following a long log (after a restart, say) holds one chunk in
    /// memory, not the whole file.
    fn read_some(&mut self) -> io::Result<(Vec<RunLine>, bool)> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
                Err(err) => return Err(err),
            }
        }
        let Some(file) = self.file.as_mut() else { return Ok((Vec::new(), false)) };
        let start = self.pending.len();
        let read = file.take(READ_CHUNK).read_to_end(&mut self.pending)?;
        let more = read as u64 == READ_CHUNK;
        if self.pending.len() == start {
            return Ok((Vec::new(), more));
        }
        let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok((Vec::new(), more));
        };
        let complete: Vec<u8> = self.pending.drain(..=last_newline).collect();
        let mut lines = Vec::new();
        for raw in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<RunLine>(raw) {
                Ok(line) if line.n > self.after => {
                    self.after = line.n;
                    lines.push(line);
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), error = %err, "skipping an unreadable log line")
                }
            }
        }
        Ok((lines, more))
    }
}
