//! The log pump: follows one run from the backend into the job's journal, masking secrets,
//! and tells the driver when the run began and how it ended.
//!
//! It resumes after what the journal already holds of the run (its [`RunCursor`]), so a pump
//! restarted after a crash neither loses nor duplicates lines. It decides nothing about the
//! job: every report is an [`Event`] for `step`.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::Ports;
use super::step::Event;
use crate::id::{JobId, RunKey};
use crate::logs::{NewEntry, NewLogLine, RunCursor};
use crate::mask::Masker;
use crate::ports::{BackendError, RunEvent, StoreError};

/// Most lines archived in one store call.
const BATCH: usize = 512;

/// Follow run `key` of `job` until it exits (or cannot be followed), then report.
pub(super) async fn pump(ports: Ports, job: JobId, key: RunKey, masker: Arc<Masker>, tx: mpsc::UnboundedSender<Event>) {
    let run = key.id();
    let end = match follow(&ports, job, key, &masker, &tx).await {
        Ok(Some(exit)) => Event::RunExited { run: key, exit },
        Ok(None) => Event::RunVanished { run: key, message: "the run's output ended without an exit status".into() },
        Err(Trouble::Backend(BackendError::NoSuchRun(_))) => {
            Event::RunVanished { run: key, message: "the backend has no such run".into() }
        }
        Err(err) => {
            tracing::warn!(%run, error = %err, "lost track of run");
            Event::RunVanished { run: key, message: err.to_string() }
        }
    };
    let _ = tx.send(end);
}

#[derive(Debug, thiserror::Error)]
enum Trouble {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn follow(
    ports: &Ports,
    job: JobId,
    key: RunKey,
    masker: &Masker,
    tx: &mpsc::UnboundedSender<Event>,
) -> Result<Option<crate::ports::RunExit>, Trouble> {
    let run = key.id();
    let cursor: RunCursor = ports.archive.cursor(job, &run, ports.backend.sequences()).await?;
    // Lines that arrive together are archived together: one store call per burst.
    let mut events = ports.backend.follow(&run, &cursor).await?.ready_chunks(BATCH);
    while let Some(chunk) = events.next().await {
        let mut lines = Vec::with_capacity(chunk.len());
        let mut exit = None;
        for event in chunk {
            match event? {
                RunEvent::Began { at } => {
                    let _ = tx.send(Event::RunBegan { run: key, at });
                }
                RunEvent::Line(mut line) => {
                    line.text = masker.mask(&line.text);
                    lines.push(NewEntry::Line(NewLogLine::from_run(&run, line)));
                }
                RunEvent::Exit(e) => exit = Some(e),
            }
        }
        if !lines.is_empty() {
            archive(ports, job, &lines).await?;
        }
        if exit.is_some() {
            return Ok(exit);
        }
    }
    Ok(None)
}

/// Archive lines, waiting out a store that is down for a while: output must not be lost.
async fn archive(ports: &Ports, job: JobId, lines: &[NewEntry]) -> Result<(), StoreError> {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match ports.archive.append(job, lines).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Unavailable(message)) => {
                tracing::warn!(%message, retry_in = ?delay, "could not archive log lines");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
            Err(err) => return Err(err),
        }
    }
}
