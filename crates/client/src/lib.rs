//! The typed Rust client of jobforge's REST API (`/v1`, described in `docs/api.md`), used by
//! the `jobforge` CLI and by tests.
//!
//! # Brief overview
//!
//! - [`Client`]: one async method per endpoint, answering with the wire types of
//!   `jobforge-api` ([`Submitted`], [`JobView`], [`History`], [`Logs`], ...).
//! - [`Client::events`] and [`Client::follow`]: a job's [`Event`]s (status, log lines, end) as an
//!   [`EventStream`]; `follow` reconnects until the job has ended.
//! - [`ClientError`]: what went wrong, worded for a person: the service's refusal with each
//!   problem, an unreachable service (and which URL), or an answer that is not jobforge's JSON.
//!
//! ```no_run
//! # async fn run() -> Result<(), jobforge_client::ClientError> {
//! use futures::StreamExt;
//! use jobforge_client::{Client, Event};
//!
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let submitted = client
//!     .submit(&serde_json::json!({
//!         "repo_url": "https://example.com/app.git", "image_name": "team/app",
//!         "registry_url": "127.0.0.1:5000", "test_commands": ["make check"],
//!     }))
//!     .await?;
//! let mut events = client.follow(submitted.job_id, 0, None);
//! while let Some(event) = events.next().await {
//!     match event? {
//!         Event::Status(job) => println!("{}", job.status),
//!         Event::Log(line) => println!("{}", line.text),
//!         Event::End(job) => println!("finished: {}", job.status),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! This crate knows the API's paths, parameters and JSON, and nothing of how the service
//! works: it must not depend on the server, nor interpret a job beyond what a call returns.

mod client;
mod error;
mod events;
mod jobs;
mod sse;

pub use client::{Client, ClientOptions, Token};
pub use error::ClientError;
pub use events::{Event, EventStream};

pub use jobforge_api::{
    CleanedUp, Durations, ErrorBody, ErrorCode, Health, History, HistoryQuery, JobSummary, JobView, Jobs, Logs,
    LogsQuery, Ready, Refusal, Submitted, TestView, ZombiesRemoved,
};
pub use jobforge_core::logs::LogLine;
pub use jobforge_core::validate::Problem;
pub use jobforge_core::{JobId, JobStatus, Phase};
