//! The database schema and its migrations, versioned by `PRAGMA user_version`.
//!
//! Owns every `CREATE` statement and the order they ran in. It must not hold the queries that
//! read or write records and lines (those are `jobs` and `logs`), and a released migration step
//! never changes: a new schema is a new step appended to [`MIGRATIONS`].

use rusqlite::{Connection, TransactionBehavior};

use crate::error::DbError;
use jobforge_core::ports::StoreError;

/// Step `i` takes a database at version `i` to version `i + 1`; version 0 is an empty file.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The version this build writes and understands.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1: job records and the log archive.
///
/// `jobs.record` (serde_json of `JobRecord`) is the source of truth; `created_at` (unix
/// milliseconds), `status` and `live` (`JobRecord::is_live`) are copies written with it, for
/// ordering and filtering without decoding JSON. A log line's `origin_run`/`origin_n` say which
/// run and line it came from; both are NULL for lines jobforge wrote itself, which the partial
/// unique index therefore never deduplicates.
const V1: &str = "
CREATE TABLE jobs (
    id         TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    live       INTEGER NOT NULL CHECK (live IN (0, 1)),
    record     TEXT    NOT NULL
);
CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_live ON jobs (created_at, id) WHERE live = 1;

CREATE TABLE logs (
    job_id     TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL CHECK (seq > 0),
    phase      TEXT    NOT NULL,
    test       INTEGER,
    stream     TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    origin_run TEXT,
    origin_n   INTEGER,
    PRIMARY KEY (job_id, seq),
    CHECK ((origin_run IS NULL) = (origin_n IS NULL))
) WITHOUT ROWID;
CREATE UNIQUE INDEX logs_origin ON logs (job_id, origin_run, origin_n) WHERE origin_run IS NOT NULL;
CREATE INDEX logs_phase ON logs (job_id, phase, seq);
";

/// Version 2: job events, in the same per-job sequence as the log lines.
///
/// An event is entry `n` of the engine's for its job (`JobRecord::outbox`); `(job_id, n)` is
/// unique, so archiving the same event again after a crash stores nothing. Lines the engine
/// writes itself from then on have `origin_run = 'engine'` and their entry number as
/// `origin_n`, deduplicated by `logs_origin` like run lines. A sequence number is taken by a
/// line or an event, never both: appends number them together under the write lock.
const V2: &str = "
CREATE TABLE events (
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL CHECK (seq > 0),
    n      INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    event  TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, n)
) WITHOUT ROWID;
";

/// Version 3: how many bytes of log text each job has stored, and whether it reached the cap
/// (then one marker line says so and nothing more is stored). Counted for the logs already
/// there.
const V3: &str = "
CREATE TABLE log_sizes (
    job_id TEXT    NOT NULL PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    bytes  INTEGER NOT NULL,
    capped INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO log_sizes (job_id, bytes) SELECT job_id, sum(length(CAST(text AS BLOB))) FROM logs GROUP BY job_id;
";

/// Bring the database up to [`SCHEMA_VERSION`], all steps in one transaction. Refuses a
/// database written by a newer jobforge rather than guess at its schema.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    // IMMEDIATE: two services opening one new file at once must not both create the tables.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database has schema version {found}; this jobforge understands up to {SCHEMA_VERSION}"
        ))
        .into());
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step as u32 + 1)?;
    }
    tx.commit()?;
    if found < SCHEMA_VERSION {
        tracing::info!(from = found, to = SCHEMA_VERSION, "migrated the sqlite store");
    }
    Ok(())
}

/// The schema version recorded in the file.
pub(crate) fn version(conn: &Connection) -> Result<u32, DbError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// [`StoreError::Unavailable`] unless the file is readable and at [`SCHEMA_VERSION`].
pub(crate) fn check(conn: &Connection) -> Result<(), DbError> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM jobs)", [], |row| row.get::<_, bool>(0))?;
    match version(conn)? {
        SCHEMA_VERSION => Ok(()),
        other => {
            Err(StoreError::Unavailable(format!("the database has schema version {other}, expected {SCHEMA_VERSION}"))
                .into())
        }
    }
}
