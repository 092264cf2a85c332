//! The in-memory ports the simulation drives the engine with, held to the same conformance
//! suites as the real adapters: what the simulation shows holds for them too.

use std::sync::Arc;

use jobforge_core::Timestamp;
use jobforge_testkit::backend_conformance::{self, ScriptedRuns};
use jobforge_testkit::memory::{MemoryBackend, MemoryRegistry, MemoryStore, TokioClock};
use jobforge_testkit::store_conformance;

#[tokio::test]
async fn the_memory_store_passes_the_store_conformance_suite() {
    store_conformance::run_all(&MemoryStore::default()).await;
}

#[tokio::test]
async fn the_memory_backend_passes_the_backend_conformance_suite() {
    let clock = TokioClock::starting_at(Timestamp::now());
    let backend = MemoryBackend::new(Arc::new(MemoryRegistry::default()), clock, 7);
    backend_conformance::run_all(&backend, &ScriptedRuns).await;
}
