//! The jobforge domain, independent of any outside system.
//!
//! A caller submits a [`config::JobSpec`] (checked by [`validate`]); the [`engine::Engine`] walks
//! it through build, test and publish, keeping every step in a [`record::JobRecord`] (its
//! [`state::JobState`] and the facts gathered) and every event in the job's journal
//! ([`events`], [`logs`]), and reaches the world only through the port traits in [`ports`]: a
//! [`ports::Backend`] runs the phases, the store ports keep records, journals and requests,
//! [`ports::Secrets`] resolves credentials by reference and [`ports::Registry`] speaks to the
//! OCI registry.
//!
//! This crate does no IO of its own: no processes, no HTTP, no files. Adapters in other crates
//! implement the ports; the server and the CLI choose and wire them.

pub mod access;
pub mod config;
pub mod diagnose;
pub mod duration;
pub mod engine;
pub mod error_text;
pub mod events;
pub mod failure;
pub mod id;
pub mod image;
pub mod inprocess;
pub mod logs;
pub mod mask;
pub mod ports;
pub mod record;
pub mod secret;
pub mod state;
pub mod status;
pub mod time;
pub mod validate;

pub use duration::Duration;
pub use id::{JobId, RunId, RunKey};
pub use status::{JobStatus, Phase, Stream};
pub use time::Timestamp;

#[cfg(test)]
mod tidy;
