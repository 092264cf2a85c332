//! Ports for a service alone on its store, held in this process: [`ProcessLocks`],
//! [`ProcessMailbox`], and [`JobSignals`], the in-process notification behind the `JobFeed`
//! of a store only this process writes (SQLite, the tests' in-memory store).
//!
//! What they hold dies with the process, which is what a single instance needs: the instance
//! that comes back takes its jobs again, and its drivers ask afresh.

mod locks;
mod mailbox;
mod signals;

pub use locks::ProcessLocks;
pub use mailbox::ProcessMailbox;
pub use signals::JobSignals;
