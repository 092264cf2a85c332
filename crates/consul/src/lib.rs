//! Consul for jobforge: [`client`] (a thin typed client for the KV store, sessions and health
//! lookups, with blocking queries) and [`store`], the `Store` port on Consul KV.
//!
//! Consul's conventions are kept as they are: KV reads are arrays of entries with base64 values,
//! writes answer a bare `true`/`false`, errors are plain text, indexes come in `X-Consul-Index`.

pub mod client;
pub mod config;
pub mod store;

pub use client::{Blocking, ConsulClient, ConsulConfig, ConsulError, KvEntry, QueryMeta, SessionInfo, SessionRequest};
pub use store::{ConsulStore, ConsulStoreConfig};
