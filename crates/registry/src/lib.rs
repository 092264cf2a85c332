//! The [`jobforge_core::ports::Registry`] port over the OCI distribution HTTP API: the digest a
//! tag or digest resolves to, and deleting a manifest (how temp images are cleaned up).
//!
//! # Brief overview
//!
//! - [`OciRegistry`] implements the port, plus [`OciRegistry::ping`] (`GET /v2/`) for startup
//!   checks. It is built from a [`RegistryConfig`]: which hosts are plain `http://` (all others
//!   are `https://`) and the per-request timeout.
//! - Authentication follows the registry: each request goes out without credentials; a 401 is
//!   answered per its `WWW-Authenticate` challenge, `Basic` with the credentials or `Bearer` with
//!   a token from the challenge's realm (for `service` and `scope`), then sent once more.
//! - Errors are the port's [`jobforge_core::ports::RegistryError`]: refused credentials are
//!   `Unauthorized`, a registry with deletes switched off is `DeleteDisabled`, a failed
//!   connection or timeout is `Unreachable`, any other answer is `Status` with the registry's
//!   own message.
//!
//! ```no_run
//! # async fn example() -> Result<(), jobforge_core::ports::RegistryError> {
//! use jobforge_core::ports::Registry;
//! use jobforge_registry::{OciRegistry, RegistryConfig};
//!
//! let registry = OciRegistry::new(RegistryConfig {
//!     insecure: vec!["127.0.0.1:5000".parse().expect("a host")],
//!     ..RegistryConfig::default()
//! })?;
//! let image = "127.0.0.1:5000/temp/app:build-1".parse().expect("an image reference");
//! if let Some(digest) = registry.digest(&image, None).await? {
//!     println!("{image} is {digest}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! This crate knows nothing about jobs or the engine, holds no state between calls, and never
//! logs a credential or a token or puts one in an error.

mod challenge;
mod client;
mod oci;

pub use oci::{OciRegistry, RegistryConfig};
