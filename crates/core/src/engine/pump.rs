//! The log pump: follows one run from the backend into the store's archive, masking secrets,
//! until the run exits.
//!
//! It resumes after the last line already archived for the run, so a pump restarted after a
//! crash neither loses nor duplicates lines.

use futures::StreamExt;
use tokio::sync::watch;

use super::Ports;
use crate::id::{JobId, RunId};
use crate::logs::NewLogLine;
use crate::mask::Masker;
use crate::ports::{BackendError, RunEvent, RunExit, StoreError};

/// Most lines archived in one store call.
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(super) enum PumpError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the run's output ended without an exit status")]
    NoExit,
}

/// Archive the run's output until it exits; returns how it exited.
pub(super) async fn pump(
    ports: &Ports,
    job: JobId,
    run: &RunId,
    masker: &Masker,
    changes: &watch::Sender<u64>,
) -> Result<RunExit, PumpError> {
    let after = ports.store.last_line(job, run).await?;
    // Lines that arrive together are archived together: one store call per burst.
    let mut events = ports.backend.follow(run, after).await?.ready_chunks(BATCH);
    while let Some(chunk) = events.next().await {
        let mut lines = Vec::with_capacity(chunk.len());
        let mut exit = None;
        for event in chunk {
            match event? {
                RunEvent::Line(mut line) => {
                    line.text = masker.mask(&line.text);
                    lines.push(NewLogLine::from_run(run, line));
                }
                RunEvent::Exit(e) => exit = Some(e),
            }
        }
        if !lines.is_empty() {
            let seq = ports.store.append_logs(job, &lines).await?;
            changes.send_replace(seq);
        }
        if let Some(exit) = exit {
            return Ok(exit);
        }
    }
    Err(PumpError::NoExit)
}
