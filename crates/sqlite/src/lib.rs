//! The embedded [`jobforge_core::ports::Store`] on SQLite: job records and the log archive in
//! one database file, for a single machine with no Consul.
//!
//! # Brief overview
//!
//! [`SqliteStore::open`] opens (or creates and migrates) the file and returns a cheap-to-clone
//! handle; all clones share two connections, a writer and a read-only reader, so readers
//! following a job's log never wait for the log pump's writes (WAL mode). Every call runs on
//! tokio's blocking pool.
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobforge_core::ports::StoreError> {
//! use jobforge_core::ports::Store;
//! let store = jobforge_sqlite::SqliteStore::open(std::path::Path::new(".jobforge/jobforge.db"))?;
//! let live = store.live().await?;
//! # Ok(()) }
//! ```
//!
//! Codemap: `store` (the handle and the async bridge), `connection` (pragmas), `schema` (tables
//! and migrations), `jobs` and `logs` (the SQL of each table), `error` (failures inside a call).
//!
//! **Invariant:** this crate knows nothing of the engine beyond the `Store` trait and the types
//! it carries; it must not interpret job states beyond `JobRecord::is_live`.

mod connection;
mod error;
mod jobs;
mod logs;
mod schema;
mod store;

pub use store::{SqliteOptions, SqliteStore};

/// A count or number as an SQL integer, saturating: beyond `i64::MAX` nothing is stored anyway.
fn sql_int<N: TryInto<i64>>(n: N) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
