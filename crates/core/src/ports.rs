//! The ports: the traits through which the engine reaches the outside world.
//!
//! Each is small, object-safe and owned here, beside the engine that calls it; adapters in other
//! crates implement them (`jobforge-local`, `jobforge-sqlite`, `jobforge-registry`, ...). Every
//! trait documents its call order, what must be idempotent, and what each error means to the
//! engine.

mod backend;
mod locks;
mod registry;
mod secrets;
mod store;

pub use backend::{
    Backend, BackendError, BuildWork, PublishWork, RunEvent, RunEvents, RunExit, RunSpec, RunWork, Started, TestWork,
};
pub use locks::{LockKey, Locks, LocksError};
pub use registry::{Registry, RegistryError};
pub use secrets::{Secrets, SecretsError};
pub use store::{HistoryPage, Store, StoreError};
