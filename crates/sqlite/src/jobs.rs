//! Job records in the `jobs` table: insert, replace, read one, page through history, find the
//! live ones.
//!
//! The `record` column is the source of truth; the other columns are copies written with it in
//! the same statement. Functions here are blocking and take the connection they run on; they
//! must not choose a connection, lock anything or touch the `logs` table.

use rusqlite::{Connection, OptionalExtension, Params, ToSql, params};

use crate::error::{DbError, corrupt};
use crate::sql_int;
use jobforge_core::JobId;
use jobforge_core::ports::{HistoryPage, StoreError};
use jobforge_core::record::JobRecord;

/// A record encoded for its row, ready to be moved to a blocking thread.
pub(crate) struct Row {
    id: JobId,
    /// The id as stored: hyphenated lower case, which sorts like the UUIDv7 itself.
    key: String,
    created_at: i64,
    status: &'static str,
    live: bool,
    json: String,
}

impl Row {
    pub(crate) fn of(record: &JobRecord) -> Result<Row, StoreError> {
        let json = serde_json::to_string(record).map_err(|err| {
            StoreError::Unavailable(format!("could not encode the record of job {}: {err}", record.id))
        })?;
        Ok(Row {
            id: record.id,
            key: record.id.to_string(),
            created_at: record.created_at.unix_millis(),
            status: record.status().as_str(),
            live: record.is_live(),
            json,
        })
    }

    /// The row's columns as `?1` id, `?2` created_at, `?3` status, `?4` live, `?5` record.
    fn params(&self) -> [&dyn ToSql; 5] {
        [&self.key, &self.created_at, &self.status, &self.live, &self.json]
    }
}

/// Add a new job; [`StoreError::Duplicate`] if its id is taken.
pub(crate) fn insert(conn: &Connection, row: &Row) -> Result<(), DbError> {
    let sql = "INSERT INTO jobs (id, created_at, status, live, record) VALUES (?1, ?2, ?3, ?4, ?5)
               ON CONFLICT (id) DO NOTHING";
    let added = conn.prepare_cached(sql)?.execute(row.params())?;
    if added == 0 { Err(StoreError::Duplicate(row.id).into()) } else { Ok(()) }
}

/// Replace a job's record; [`StoreError::NotFound`] if there is none.
pub(crate) fn update(conn: &Connection, row: &Row) -> Result<(), DbError> {
    let sql = "UPDATE jobs SET created_at = ?2, status = ?3, live = ?4, record = ?5 WHERE id = ?1";
    let changed = conn.prepare_cached(sql)?.execute(row.params())?;
    if changed == 0 { Err(StoreError::NotFound(row.id).into()) } else { Ok(()) }
}

pub(crate) fn get(conn: &Connection, id: JobId) -> Result<Option<JobRecord>, DbError> {
    let found: Option<(String, String)> = conn
        .prepare_cached("SELECT id, record FROM jobs WHERE id = ?1")?
        .query_row([id.to_string()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    found.map(|(id, json)| decode(&id, &json)).transpose()
}

/// One page of history, newest first, and the number of jobs, read from one snapshot.
pub(crate) fn list(conn: &mut Connection, limit: usize, offset: usize) -> Result<HistoryPage, DbError> {
    let tx = conn.transaction()?;
    let total: i64 = tx.query_row("SELECT count(*) FROM jobs", [], |row| row.get(0))?;
    let sql = "SELECT id, record FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2";
    let jobs = records(&tx, sql, params![sql_int(limit), sql_int(offset)])?;
    tx.commit()?;
    Ok(HistoryPage { jobs, total: u64::try_from(total).unwrap_or_default() })
}

/// Every job not yet finished and cleaned up, oldest first.
pub(crate) fn live(conn: &Connection) -> Result<Vec<JobRecord>, DbError> {
    records(conn, "SELECT id, record FROM jobs WHERE live = 1 ORDER BY created_at, id", [])
}

/// The records an `SELECT id, record ...` query returns, in its order.
fn records(conn: &Connection, sql: &str, params: impl Params) -> Result<Vec<JobRecord>, DbError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let rows = rows.collect::<Result<Vec<_>, _>>()?;
    rows.iter().map(|(id, json)| decode(id, json)).collect()
}

/// The record in a row, or [`StoreError::Corrupt`] if it does not decode or names another job.
fn decode(id: &str, json: &str) -> Result<JobRecord, DbError> {
    let record: JobRecord = serde_json::from_str(json).map_err(|err| corrupt(id, err))?;
    if record.id.to_string() != id {
        return Err(corrupt(id, format!("the row holds the record of job {}", record.id)));
    }
    Ok(record)
}
