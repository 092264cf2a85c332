//! [`DbError`]: what the blocking side of the store fails with, and how it becomes a
//! [`StoreError`] for the engine.
//!
//! It exists so the SQL modules can use `?` on both rusqlite calls and store-level refusals. It
//! must not leak out of the crate: every public call returns [`StoreError`].

use jobforge_core::ports::StoreError;

/// A failure inside one blocking store call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// SQLite itself failed (locked past the busy timeout, disk full, I/O error, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The call was refused or found bad data; passed to the engine as is.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> StoreError {
        match err {
            DbError::Sqlite(err) => StoreError::Unavailable(format!("sqlite: {err}")),
            DbError::Store(err) => err,
        }
    }
}

/// A stored value of job `id` that cannot be read back.
pub(crate) fn corrupt(id: impl ToString, message: impl ToString) -> DbError {
    DbError::Store(StoreError::Corrupt { id: id.to_string(), message: message.to_string() })
}
