//! A job's feed: its journal (events and log lines) from after a cursor, from the archive and
//! then live, with the job's view after each batch of events, ending once the job has ended and
//! every entry was sent.
//!
//! A task per reader reads the journal after its cursor and waits on the job's feed port
//! (wherever the job is driven); it never polls the record. It stops when the reader goes away
//! or the service shuts down.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use jobforge_api::{Feed, FeedItem, JobView, Refusal};
use jobforge_core::engine::Engine;
use jobforge_core::logs::{Entry, EntryQuery};
use jobforge_core::record::JobRecord;
use jobforge_core::{JobId, Phase};

/// Entries read from the journal per call.
const BATCH: usize = 1000;

/// Start a reader of job `id`'s feed from after `after` (lines of `phase` only, if given).
pub fn start(engine: Engine, id: JobId, after: u64, phase: Option<Phase>, shutdown: CancellationToken) -> Feed {
    let (tx, rx) = mpsc::channel(256);
    let reader = Reader { engine, id, phase, cursor: after, tx };
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            result = reader.run() => if let Err(err) = result {
                tracing::debug!(job_id = %id, error = %err, "feed ended early");
            }
        }
    });
    ReceiverStream::new(rx).boxed()
}

struct Reader {
    engine: Engine,
    id: JobId,
    phase: Option<Phase>,
    cursor: u64,
    tx: mpsc::Sender<Result<FeedItem, Refusal>>,
}

#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("the reader went away")]
    Gone,
    #[error("store: {0}")]
    Store(#[from] jobforge_core::ports::StoreError),
    #[error("the job vanished")]
    Vanished,
}

impl Reader {
    async fn run(mut self) -> Result<(), Stopped> {
        // The version first, so nothing appended between a read and the wait is missed.
        let mut version = self.engine.journal_changed(self.id, 0, Duration::ZERO).await?;
        let mut record = self.record().await?;
        let mut shown = record.updated_at;
        self.send(FeedItem::Status(JobView::from_record(&record))).await?;
        loop {
            // An ended job's last write (its outbox archived) comes after its last event.
            if self.send_entries().await? || record.state.is_ended() {
                record = self.record().await?;
                if record.updated_at != shown {
                    shown = record.updated_at;
                    self.send(FeedItem::Status(JobView::from_record(&record))).await?;
                }
            }
            // `End` promises nothing follows: the job has ended and every entry it decided is
            // in the journal (an ended record is live until then).
            if !record.is_live() {
                self.send_entries().await?;
                return self.send(FeedItem::End(JobView::from_record(&record))).await;
            }
            tokio::select! {
                next = self.engine.journal_changed(self.id, version, Duration::from_secs(30)) => version = next?,
                _ = self.tx.closed() => return Err(Stopped::Gone),
            }
        }
    }

    async fn record(&self) -> Result<JobRecord, Stopped> {
        self.engine.get(self.id).await?.ok_or(Stopped::Vanished)
    }

    /// Send every entry after the cursor; whether any was a job event.
    async fn send_entries(&mut self) -> Result<bool, Stopped> {
        let mut events = false;
        loop {
            let query = EntryQuery { phase: self.phase, after: self.cursor, limit: BATCH };
            let entries = self.engine.entries(self.id, &query).await?;
            for entry in &entries {
                self.cursor = entry.seq();
                let item = match entry.clone() {
                    Entry::Line(line) => FeedItem::Log(line),
                    Entry::Event(event) => {
                        events = true;
                        FeedItem::Job(event)
                    }
                };
                self.send(item).await?;
            }
            if entries.len() < BATCH {
                return Ok(events);
            }
        }
    }

    async fn send(&self, item: FeedItem) -> Result<(), Stopped> {
        self.tx.send(Ok(item)).await.map_err(|_| Stopped::Gone)
    }
}
