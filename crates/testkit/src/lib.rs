//! Test-only support for jobforge: fixtures that start real outside systems on free loopback
//! ports, and conformance suites that every adapter of a port must pass.
//!
//! Nothing here is a stand-in for buildah, podman, git or the registry: fixtures start the real
//! programs. (Fakes of Nomad and Consul, which cannot be installed here, will live here too.)

pub mod git;
pub mod net;
pub mod registry;
pub mod store_conformance;
