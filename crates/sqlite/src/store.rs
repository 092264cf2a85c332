//! [`SqliteStore`]: the handle, its two connections, the bridge from async callers to
//! blocking SQLite calls, and the four store ports on top of them.
//!
//! Every call runs on tokio's blocking pool holding the mutex of the one connection it needs:
//! writes on the writer, reads on the reader. This module must not hold SQL of records or lines
//! (that is `jobs` and `logs`) and must not block an async worker thread.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use rusqlite::Connection;

use crate::error::DbError;
use crate::{connection, jobs, logs, schema};
use jobforge_core::inprocess::{JobSignals, ProcessMailbox};
use jobforge_core::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, RunCursor};
use jobforge_core::ports::{HistoryPage, JobFeed, JobRecords, LogArchive, Mailbox, StoreError};
use jobforge_core::record::{JobRecord, KillRequest};
use jobforge_core::{JobId, Phase, RunId, Timestamp};

/// Job records and logs in one SQLite file. Cheap to clone; clones share the connections.
///
/// **Durability:** a call that returns `Ok` is committed to the write-ahead log and survives the
/// process being killed (see `connection::writer` for why `synchronous=NORMAL` suffices).
/// **Cancellation:** dropping a call's future does not stop the call; it commits or fails on
/// its own, as a whole.
/// **Feed and mailbox:** the file is written by this process only (one service on it), so
/// waiting for a job's journal is an in-process notification, and kill requests between
/// drivers are held in memory.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Connections>,
}

struct Connections {
    path: PathBuf,
    /// Every write, one at a time. Appends read the highest seq and insert after it under this
    /// lock (and SQLite's write lock, for other processes on the same file).
    writer: Mutex<Connection>,
    /// Every read. In WAL mode it sees the last commit without waiting for a write in progress,
    /// so log followers never wait on the pump.
    reader: Mutex<Connection>,
    /// Woken after every commit that touches a job.
    signals: JobSignals,
    mailbox: ProcessMailbox,
    options: SqliteOptions,
}

/// Bounds on what the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Log text kept per job; past it one marker line says the rest was not stored.
    pub log_cap_bytes: u64,
    /// How long an ended job keeps its logs and events (its record stays in the history).
    pub log_retention: std::time::Duration,
}

impl Default for SqliteOptions {
    /// The same cap as the Consul store's; logs kept 30 days.
    fn default() -> Self {
        SqliteOptions { log_cap_bytes: 16 * 1024 * 1024, log_retention: std::time::Duration::from_secs(30 * 24 * 3600) }
    }
}

impl SqliteStore {
    /// Open or create the database at `path` (creating its parent directories), in WAL mode,
    /// migrated to the current schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with other bounds.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        create_parent(path)?;
        let opened = connection::writer(path).and_then(|writer| Ok((writer, connection::reader(path)?)));
        let (writer, reader) = opened.map_err(|err| {
            StoreError::Unavailable(format!("could not open {}: {}", path.display(), StoreError::from(err)))
        })?;
        let inner = Connections {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            signals: JobSignals::default(),
            mailbox: ProcessMailbox::default(),
            options,
        };
        Ok(SqliteStore { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `call` on the writer, on the blocking pool.
    async fn write<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || call(&mut lock(&inner.writer))).await
    }

    /// Run `call` on the reader, on the blocking pool.
    async fn read<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || call(&mut lock(&inner.reader))).await
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

#[async_trait]
impl JobRecords for SqliteStore {
    async fn insert(&self, record: &JobRecord) -> Result<(), StoreError> {
        let row = jobs::Row::of(record)?;
        self.write(move |conn| jobs::insert(conn, &row)).await?;
        self.inner.signals.bump(record.id);
        // A new job is the moment to let old ones go, as the Consul store does with its history.
        let retention = i64::try_from(self.inner.options.log_retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp::now().unix_millis().saturating_sub(retention);
        match self.write(move |conn| logs::prune(conn, before)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(jobs = pruned, "removed the logs of jobs past the log retention"),
            Err(error) => tracing::warn!(%error, "could not remove old logs"),
        }
        Ok(())
    }

    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        let row = jobs::Row::of(record)?;
        self.write(move |conn| jobs::update(conn, &row)).await?;
        self.inner.signals.bump(record.id);
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.read(move |conn| jobs::get(conn, id)).await
    }

    async fn list(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError> {
        self.read(move |conn| jobs::list(conn, limit, offset)).await
    }

    async fn live(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.read(|conn| jobs::live(conn)).await
    }

    /// The file is readable and holds the schema this build knows.
    async fn check(&self) -> Result<(), StoreError> {
        self.read(|conn| schema::check(conn)).await
    }
}

#[async_trait]
impl LogArchive for SqliteStore {
    async fn append(&self, job: JobId, entries: &[NewEntry]) -> Result<u64, StoreError> {
        let entries = entries.to_vec();
        let cap = self.inner.options.log_cap_bytes;
        let seq = self.write(move |conn| logs::append(conn, job, &entries, cap)).await?;
        self.inner.signals.bump(job);
        Ok(seq)
    }

    async fn cursor(&self, job: JobId, run: &RunId, sequences: u64) -> Result<RunCursor, StoreError> {
        let run = run.clone();
        self.read(move |conn| logs::cursor(conn, job, &run, sequences)).await
    }

    async fn logs(&self, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        let query = *query;
        self.read(move |conn| logs::query(conn, job, &query)).await
    }

    async fn tail(&self, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Result<Vec<LogLine>, StoreError> {
        self.read(move |conn| logs::tail(conn, job, phase, test, n)).await
    }

    async fn entries(&self, job: JobId, query: &EntryQuery) -> Result<Vec<Entry>, StoreError> {
        let query = *query;
        self.read(move |conn| logs::entries(conn, job, &query)).await
    }
}

#[async_trait]
impl JobFeed for SqliteStore {
    async fn changed(&self, job: JobId, version: u64, limit: std::time::Duration) -> Result<u64, StoreError> {
        Ok(self.inner.signals.changed(job, version, limit).await)
    }
}

#[async_trait]
impl Mailbox for SqliteStore {
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError> {
        self.inner.mailbox.request_kill(id, request).await
    }

    async fn kill_requests(
        &self,
        version: u64,
        limit: std::time::Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError> {
        self.inner.mailbox.kill_requests(version, limit).await
    }

    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError> {
        self.inner.mailbox.forget_kill_request(id).await
    }
}

/// Run a blocking call on tokio's blocking pool. A panic in it is reported as unavailability.
async fn blocking<T, F>(call: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DbError> + Send + 'static,
{
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(err) => Err(StoreError::Unavailable(format!("sqlite call did not finish: {err}"))),
    }
}

/// Lock a connection even if a call panicked while holding it: the panic unwound through the
/// call's `Transaction`, whose drop rolled it back, so the connection is in a clean state.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|err| StoreError::Unavailable(format!("could not create {}: {err}", parent.display()))),
        _ => Ok(()),
    }
}
