//! Test-only support for jobforge: fixtures that start real outside systems on free loopback
//! ports, and conformance suites that every adapter of a port must pass.
//!
//! Nothing here is a stand-in for buildah, podman, git, the registry or Vault: fixtures start the
//! real programs ([`vault`] runs OpenBao, Vault's open-source fork). Nomad cannot be installed
//! here, so [`fake_nomad`] is a faithful fake of it (that still runs tasks for real, with podman
//! or the host's buildah), and Consul neither, so [`fake_consul`] is one of it (KV with index
//! semantics, CAS and locks, sessions with TTLs, health lookups). [`memory`] holds in-memory
//! ports, for driving the engine through its ports and crashing it anywhere.

pub mod backend_conformance;
pub mod fake_consul;
mod fake_http;
pub mod fake_nomad;
pub mod git;
pub mod memory;
pub mod net;
pub mod registry;
pub mod store_conformance;
pub mod vault;
