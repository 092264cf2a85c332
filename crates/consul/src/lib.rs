//! Consul for jobforge: [`client`] (a thin typed client for the KV store, sessions and health
//! lookups, with blocking queries), [`store`] (the `Store` port on Consul KV), [`locks`] (the
//! `Locks` port on Consul sessions) and [`config`] (dynamic configuration from KV).
//!
//! Consul's conventions are kept as they are: KV reads are arrays of entries with base64 values,
//! writes answer a bare `true`/`false`, errors are plain text, indexes come in `X-Consul-Index`.

pub mod client;
pub mod config;
pub mod locks;
pub mod store;

pub use client::{Blocking, ConsulClient, ConsulConfig, ConsulError, KvEntry, QueryMeta, SessionInfo, SessionRequest};
pub use locks::{ConsulLocks, ConsulLocksConfig};
pub use store::{ConsulStore, ConsulStoreConfig};
