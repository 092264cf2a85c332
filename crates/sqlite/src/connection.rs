//! Opening the store's two connections with the settings the store relies on: the writer
//! (creates the file, turns on WAL, migrates) and the read-only reader.
//!
//! Owns connection settings only; it must not read or write records or log lines.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::DbError;
use crate::schema;
use jobforge_core::ports::StoreError;

/// How long a statement waits for another connection's lock (another process on the same file,
/// a checkpoint) before failing as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection every write goes through. Creates and migrates the database.
pub(crate) fn writer(path: &Path) -> Result<Connection, DbError> {
    private_file(path)?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    wal(&conn)?;
    // In WAL mode, NORMAL puts each commit in the WAL file (in the kernel's page cache) before
    // the commit returns, and fsyncs only at checkpoints. A commit therefore survives the
    // process dying at any point (SIGKILL, OOM kill, panic), which is the durability the engine
    // needs before a side effect. Only an OS crash or power cut can lose the last commits;
    // FULL would pay an fsync per commit to cover that too.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Create the database file readable by this user only before SQLite opens it: SQLite gives
/// its WAL and shared-memory files the mode of the database file.
fn private_file(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path);
    let private = file.and_then(|file| file.set_permissions(std::fs::Permissions::from_mode(0o600)));
    private.map_err(|e| StoreError::Unavailable(format!("making {} private: {e}", path.display())).into())
}

/// A read-only connection. Open it after [`writer`], which creates the file and the WAL.
pub(crate) fn reader(path: &Path) -> Result<Connection, DbError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Switch to write-ahead logging, which lets readers go on while a write is in progress.
fn wal(conn: &Connection) -> Result<(), DbError> {
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!("sqlite refused WAL mode (journal_mode is {mode})")).into())
    }
}
