//! The local backend: every phase as processes on this machine, and the embedded secrets file.
//!
//! **Brief overview.** [`LocalBackend`] implements the core's `Backend` port. Each run (the build,
//! each test, the publish) is a directory under `<data>/runs/<run id>` and a *shim*
//! ([`shim`]) — a small supervisor process in its own session that runs the run's steps (git,
//! buildah, podman, skopeo) with argument vectors, writes every output line to `log.jsonl` and the
//! exit status to `exit.json`. The shim holds an exclusive lock on the run's `lock` file for its
//! whole life, so "is the run still going" is a lock test, robust against PID reuse, and it
//! survives the service: a restarted service re-attaches by reading the same files.
//!
//! [`plan`] turns a run's work into the shim's steps (a pure function); [`rundir`] owns the
//! on-disk protocol between service and shim; [`follow`] tails a run for the engine.
//! [`FileSecrets`] is the `Secrets` port on a 0600 JSON file in the data directory.
//!
//! Nothing here builds shell text from user input: every process gets an argument vector.

pub mod backend;
pub mod checkout;
pub mod follow;
pub mod plan;
pub mod rundir;
pub mod secrets;
pub mod shim;
pub mod tools;
pub mod watch;

pub use backend::{LocalBackend, LocalConfig, LocalError};
pub use secrets::FileSecrets;
pub use tools::TestNetwork;
