//! Nomad for jobforge: [`job`] (the job specification we register, in Nomad's wire form),
//! [`render`] (a jobforge run → a Nomad batch job, to the letter of the seed spec), [`api`] (what
//! we read back: jobs, allocations, evaluations, log frames), [`client`] (the typed HTTP client,
//! [`NomadClient`]), [`logs`] (the framed log stream) and [`error`] ([`NomadError`]), and [`backend`], the
//! `Backend` port on all of it ([`NomadBackend`]).
//!
//! Field names are Nomad's Go field names, exactly; durations are integer nanoseconds.

pub mod api;
pub mod backend;
pub mod client;
pub mod error;
pub mod job;
pub mod logs;
pub mod render;

pub use backend::{NomadBackend, NomadBackendConfig};
pub use client::{Blocking, NomadClient, NomadConfig, QueryMeta};
pub use error::NomadError;
pub use logs::{FrameDecoder, LogStream};
