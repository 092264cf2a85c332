//! The ports: the traits through which the engine reaches the outside world.
//!
//! Each is small, object-safe and owned here, beside the engine that calls it; adapters in other
//! crates implement them (`jobforge-local`, `jobforge-sqlite`, `jobforge-consul`, ...). Every
//! trait documents its call order, what must be idempotent, and what each error means to the
//! engine. The store is four ports, one per concern: [`JobRecords`], [`LogArchive`] (each
//! job's journal), [`JobFeed`] (waiting for a journal to grow) and [`Mailbox`] (requests between
//! replicas); one adapter usually implements all four.

mod archive;
mod backend;
mod clock;
mod feed;
mod locks;
mod mailbox;
mod records;
mod registry;
mod secrets;

pub use archive::LogArchive;
pub use backend::{
    Backend, BackendError, BuildWork, PublishWork, RunEvent, RunEvents, RunExit, RunSpec, RunWork, Started, TestWork,
};
pub use clock::{Clock, SystemClock};
pub use feed::JobFeed;
pub use locks::{LockKey, Locks, LocksError};
pub use mailbox::Mailbox;
pub use records::{HistoryPage, JobRecords, StoreError};
pub use registry::{Registry, RegistryError};
pub use secrets::{Secrets, SecretsError};

/// A store that is all four store ports at once.
pub trait Store: JobRecords + LogArchive + JobFeed + Mailbox {}

impl<T: JobRecords + LogArchive + JobFeed + Mailbox> Store for T {}
