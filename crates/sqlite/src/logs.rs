//! The journal in the `logs` and `events` tables: appending lines and events with per-job
//! sequence numbers, and the reads that followers, event streams and failure reports make.
//!
//! Sequence numbers are assigned here and nowhere else, inside the append's write transaction,
//! across both tables, so they stay gap-free. Functions are blocking and take the connection
//! they run on; they must not choose a connection, lock anything or touch the `jobs` table
//! beyond checking a job exists.

use rusqlite::{Connection, OptionalExtension, Params, Statement, TransactionBehavior, params};

use crate::error::{DbError, corrupt};
use crate::sql_int;
use jobforge_core::events::{EventEntry, JobEvent};
use jobforge_core::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, NewEvent, NewLogLine, RunCursor};
use jobforge_core::ports::StoreError;
use jobforge_core::{JobId, Phase, RunId, Stream, Timestamp};

const COLUMNS: &str = "seq, ts, phase, test, stream, text";

/// Only a repeated origin is skipped. Naming the conflict target keeps any other conflict (a
/// seq taken twice, which the write lock rules out) an error instead of a silently lost line.
const INSERT_LINE: &str = "
    INSERT INTO logs (job_id, seq, phase, test, stream, ts, text, origin_run, origin_n)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (job_id, origin_run, origin_n) WHERE origin_run IS NOT NULL DO NOTHING";

const INSERT_EVENT: &str = "
    INSERT INTO events (job_id, seq, n, ts, event) VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (job_id, n) DO NOTHING";

/// Archive `entries` of `job` in one transaction; returns the job's highest seq afterwards.
///
/// An entry whose origin is already stored is skipped and takes no seq, so replays leave no gaps.
/// Once the job's stored text would pass `cap` bytes, the line that would pass it is stored as
/// one system line saying so ([`jobforge_core::logs::capped_marker`], the same words as on
/// Consul), and no further line is stored; events always are.
pub(crate) fn append(conn: &mut Connection, job: JobId, entries: &[NewEntry], cap: u64) -> Result<u64, DbError> {
    // IMMEDIATE takes SQLite's write lock up front: no other connection (another process on the
    // same file) can append between reading the highest seq and inserting after it.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = job.to_string();
    require_job(&tx, job, &id)?;
    let mut seq = highest_seq(&tx, &id)?;
    let mut size = log_size(&tx, &id)?;
    {
        let mut insert_line = tx.prepare_cached(INSERT_LINE)?;
        let mut insert_event = tx.prepare_cached(INSERT_EVENT)?;
        for entry in entries {
            // Not inserted when its origin is archived already: the seq stays free for the next one.
            let added = match entry {
                NewEntry::Line(_) if size.capped => false,
                NewEntry::Line(line) if size.bytes + line.text.len() as u64 > cap => {
                    let marker = NewLogLine {
                        stream: Stream::System,
                        text: jobforge_core::logs::capped_marker(cap),
                        ..line.clone()
                    };
                    size.capped = self::insert_line(&mut insert_line, &id, seq + 1, &marker)?;
                    size.capped
                }
                NewEntry::Line(line) => {
                    let added = self::insert_line(&mut insert_line, &id, seq + 1, line)?;
                    size.bytes += if added { line.text.len() as u64 } else { 0 };
                    added
                }
                NewEntry::Event(event) => self::insert_event(&mut insert_event, &id, seq + 1, event)?,
            };
            if added {
                seq += 1;
            }
        }
    }
    tx.execute(
        "INSERT INTO log_sizes (job_id, bytes, capped) VALUES (?1, ?2, ?3)
         ON CONFLICT (job_id) DO UPDATE SET bytes = excluded.bytes, capped = excluded.capped",
        params![id, sql_int(size.bytes), size.capped],
    )?;
    tx.commit()?;
    Ok(seq)
}

/// How much log text a job has stored, and whether it reached the cap.
struct LogSize {
    bytes: u64,
    capped: bool,
}

fn log_size(conn: &Connection, id: &str) -> Result<LogSize, DbError> {
    let row = conn
        .query_row("SELECT bytes, capped FROM log_sizes WHERE job_id = ?1", params![id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?))
        })
        .optional()?;
    let (bytes, capped) = row.unwrap_or((0, false));
    Ok(LogSize { bytes: u64::try_from(bytes).unwrap_or(0), capped })
}

/// Remove the logs and events of ended jobs created before `before` (unix milliseconds); the
/// records stay in the history. Returns how many jobs lost their logs.
pub(crate) fn prune(conn: &mut Connection, before: i64) -> Result<usize, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let old = "SELECT id FROM jobs WHERE live = 0 AND created_at < ?1";
    let jobs = tx.execute(&format!("DELETE FROM log_sizes WHERE job_id IN ({old})"), params![before])?;
    tx.execute(&format!("DELETE FROM logs WHERE job_id IN ({old})"), params![before])?;
    tx.execute(&format!("DELETE FROM events WHERE job_id IN ({old})"), params![before])?;
    tx.commit()?;
    Ok(jobs)
}

fn insert_event(insert: &mut Statement<'_>, id: &str, seq: u64, event: &NewEvent) -> Result<bool, DbError> {
    let json = serde_json::to_string(&event.event).map_err(|err| corrupt(id, err))?;
    let added = insert.execute(params![id, sql_int(seq), sql_int(event.n), event.ts.unix_millis(), json])?;
    Ok(added == 1)
}

/// Insert `line` as `seq`; false if its origin was archived already.
fn insert_line(insert: &mut Statement<'_>, id: &str, seq: u64, line: &NewLogLine) -> Result<bool, DbError> {
    let (run, n) = origin(line);
    let (phase, stream, ts) = (line.phase.as_str(), line.stream.as_str(), line.ts.unix_millis());
    let added = insert.execute(params![id, sql_int(seq), phase, line.test, stream, ts, line.text, run, n])?;
    Ok(added == 1)
}

/// The highest line archived from `run` of `job` in each of its `sequences` line sequences.
pub(crate) fn cursor(conn: &Connection, job: JobId, run: &RunId, sequences: u64) -> Result<RunCursor, DbError> {
    let sql = "SELECT max(origin_n) FROM logs WHERE job_id = ?1 AND origin_run = ?2 GROUP BY origin_n % ?3";
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement
        .query_map(params![job.to_string(), run.as_str(), sql_int(sequences.max(1))], |row| row.get::<_, i64>(0))?;
    let highest = rows.collect::<Result<Vec<i64>, _>>()?;
    let highest = highest.into_iter().map(|n| unsigned(job, "origin_n", n)).collect::<Result<Vec<u64>, _>>()?;
    Ok(RunCursor::after(sequences, highest))
}

/// Lines and events after `query.after`, in seq order: every event, lines of `query.phase`.
pub(crate) fn entries(conn: &Connection, job: JobId, query: &EntryQuery) -> Result<Vec<Entry>, DbError> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let sql = "
        SELECT seq, ts, phase, test, stream, text, NULL FROM logs
         WHERE job_id = ?1 AND seq > ?2 AND (?3 IS NULL OR phase = ?3)
        UNION ALL
        SELECT seq, ts, NULL, NULL, NULL, NULL, event FROM events WHERE job_id = ?1 AND seq > ?2
        ORDER BY seq LIMIT ?4";
    let phase = query.phase.map(Phase::as_str);
    let mut statement = conn.prepare_cached(sql)?;
    let rows =
        statement.query_map(params![job.to_string(), sql_int(query.after), phase, sql_int(query.limit)], |row| {
            let event: Option<String> = row.get(6)?;
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, event, stored(row)))
        })?;
    let mut entries = Vec::new();
    for row in rows {
        let (seq, ts, event, line) = row?;
        entries.push(match event {
            Some(json) => Entry::Event(decode_event(job, seq, ts, &json)?),
            None => Entry::Line(decode(job, line?)?),
        });
    }
    Ok(entries)
}

fn decode_event(job: JobId, seq: i64, ts: i64, json: &str) -> Result<EventEntry, DbError> {
    let event: JobEvent =
        serde_json::from_str(json).map_err(|err| corrupt(job, format!("event at seq {seq}: {err}")))?;
    Ok(EventEntry {
        seq: unsigned(job, "seq", seq)?,
        ts: Timestamp::from_unix_millis(ts).ok_or_else(|| corrupt(job, format!("event has time {ts}")))?,
        event,
    })
}

/// Lines matching `query`, in seq order; none for `limit: 0`.
pub(crate) fn query(conn: &Connection, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, DbError> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM logs WHERE job_id = ?1 AND seq > ?2
         AND (?3 IS NULL OR phase = ?3) AND (?4 IS NULL OR test = ?4) ORDER BY seq LIMIT ?5"
    );
    let phase = query.phase.map(Phase::as_str);
    lines(conn, job, &sql, params![job.to_string(), sql_int(query.after), phase, query.test, sql_int(query.limit)])
}

/// The last `n` lines of `phase` (of one test if `test` is set), in seq order.
pub(crate) fn tail(
    conn: &Connection,
    job: JobId,
    phase: Phase,
    test: Option<u32>,
    n: usize,
) -> Result<Vec<LogLine>, DbError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    // The phase index, not the primary key the planner may guess: the tail of an early phase
    // must not walk backwards through every later line.
    let sql = format!(
        "SELECT {COLUMNS} FROM logs INDEXED BY logs_phase
         WHERE job_id = ?1 AND phase = ?2 AND (?3 IS NULL OR test = ?3)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut found = lines(conn, job, &sql, params![job.to_string(), phase.as_str(), test, sql_int(n)])?;
    found.reverse();
    Ok(found)
}

/// [`StoreError::NotFound`] unless `job` has a record: lines belong to a job.
fn require_job(conn: &Connection, job: JobId, id: &str) -> Result<(), DbError> {
    let exists: bool =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)")?.query_row([id], |row| row.get(0))?;
    if exists { Ok(()) } else { Err(StoreError::NotFound(job).into()) }
}

/// The highest seq of the job's lines and events together.
fn highest_seq(conn: &Connection, id: &str) -> Result<u64, DbError> {
    let sql = "SELECT max((SELECT coalesce(max(seq), 0) FROM logs WHERE job_id = ?1),
                          (SELECT coalesce(max(seq), 0) FROM events WHERE job_id = ?1))";
    let seq: i64 = conn.prepare_cached(sql)?.query_row([id], |row| row.get(0))?;
    Ok(u64::try_from(seq).unwrap_or_default())
}

/// The origin columns of a line: the run (or `engine`) and its number; both NULL for lines
/// with no origin, which are never deduplicated.
fn origin(line: &NewLogLine) -> (Option<&str>, Option<i64>) {
    match &line.origin {
        Some(origin) => (Some(origin.source()), Some(sql_int(origin.n()))),
        None => (None, None),
    }
}

/// A line as stored, before its columns are checked.
struct Stored {
    seq: i64,
    ts: i64,
    phase: String,
    test: Option<i64>,
    stream: String,
    text: String,
}

/// The lines a `SELECT {COLUMNS} ...` query returns, in its order.
fn lines(conn: &Connection, job: JobId, sql: &str, params: impl Params) -> Result<Vec<LogLine>, DbError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, stored)?;
    let rows = rows.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(|stored| decode(job, stored)).collect()
}

/// The line in a row of `SELECT {COLUMNS} ...` (or of the line half of `entries`).
fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        seq: row.get(0)?,
        ts: row.get(1)?,
        phase: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
        test: row.get(3)?,
        stream: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
        text: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
    })
}

/// A stored line as readers see it, or [`StoreError::Corrupt`] if a column is out of range.
fn decode(job: JobId, stored: Stored) -> Result<LogLine, DbError> {
    let test = match stored.test {
        Some(test) => Some(u32::try_from(test).map_err(|_| corrupt(job, format!("log line has test index {test}")))?),
        None => None,
    };
    Ok(LogLine {
        seq: unsigned(job, "seq", stored.seq)?,
        ts: Timestamp::from_unix_millis(stored.ts)
            .ok_or_else(|| corrupt(job, format!("log line has time {}", stored.ts)))?,
        phase: stored.phase.parse().map_err(|err| corrupt(job, err))?,
        test,
        stream: stored.stream.parse().map_err(|err| corrupt(job, err))?,
        text: stored.text,
    })
}

fn unsigned(job: JobId, column: &str, value: i64) -> Result<u64, DbError> {
    u64::try_from(value).map_err(|_| corrupt(job, format!("log line has {column} {value}")))
}
