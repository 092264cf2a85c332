//! Admission: when a waiting job may start building. Builds of one image and branch run one at
//! a time, in submission order, under a `build` lock; and at most `max_active_jobs` jobs are
//! past `PENDING` at once.
//!
//! The queue is read from the records (every live job of the same image and branch that is
//! past `PENDING`, or was submitted earlier, goes first); waits are on the locks' changes,
//! never on a timer, except the lock-delay after a dead holder (see `Locks::lock_delay`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Ports;
use super::step::Event;
use crate::record::JobRecord;
use crate::state::JobState;

/// The longest one wait for lock changes lasts before the queue is read again.
const QUEUE_WAIT: Duration = Duration::from_secs(60);

/// Wait for the job's turn, reporting its place in the queue, then for a free slot. Returns
/// the slot; `Admitted` is the caller's to report, once it holds the slot.
pub(super) async fn admit(
    ports: Ports,
    record: JobRecord,
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Event>,
) -> Option<OwnedSemaphorePermit> {
    let key = record.build_lock();
    let locks = ports.locks.clone();
    let mut version = 0;
    loop {
        let ahead = jobs_ahead(&ports, &record).await;
        let mut wait = QUEUE_WAIT;
        if ahead == 0 {
            match locks.try_lock(&key, record.id).await {
                Ok(true) => break,
                // Free but refused: a dead holder's lock-delay, over without a change.
                Ok(false) if matches!(locks.holder(&key).await, Ok(None)) => wait = locks.lock_delay(),
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "cannot take the build lock; waiting"),
            }
        }
        tracing::debug!(ahead, lock = %key, "waiting for earlier builds of the same image and branch");
        let _ = tx.send(Event::Queued { ahead });
        version = locks.changed(version, wait).await.unwrap_or(version);
    }
    slots.acquire_owned().await.ok()
}

/// Live jobs of the same image and branch that go first: any past PENDING (one holds the
/// lock), and earlier submissions still waiting, unless being killed.
async fn jobs_ahead(ports: &Ports, record: &JobRecord) -> u32 {
    let key = record.build_lock();
    let live = match ports.records.live().await {
        Ok(live) => live,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list live jobs; assuming others are ahead");
            return 1;
        }
    };
    let ahead = live.iter().filter(|other| {
        other.id != record.id
            && other.build_lock() == key
            && match &other.state {
                JobState::Waiting { .. } => other.id < record.id,
                JobState::Running(run) => run.stop.is_none(),
                JobState::Ending { .. } | JobState::Ended { .. } => false,
            }
    });
    u32::try_from(ahead.count()).unwrap_or(u32::MAX)
}
