//! `NomadBackend` on the fake Nomad agent from the testkit (which runs the rendered jobs for
//! real: builds with the host's buildah, tests with podman), held to the Backend port's
//! conformance suite.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jobforge_core::config::{GitRef, RelPath, RepoUrl};
use jobforge_core::image::ImageRef;
use jobforge_core::logs::RunCursor;
use jobforge_core::ports::{Backend, BuildWork, RunEvent, RunExit, RunSpec, RunWork};
use jobforge_core::{JobId, RunKey};
use jobforge_nomad::render::RenderConfig;
use jobforge_nomad::{NomadBackend, NomadBackendConfig, NomadClient, NomadConfig};
use jobforge_testkit::backend_conformance::{self, ShellRuns};
use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

fn checked<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_json::from_value(serde_json::Value::String(text.into())).expect("a valid value")
}

/// Build the example repository through the backend itself; the image, pinned by digest.
async fn build_example(backend: &NomadBackend, registry: &TestRegistry) -> ImageRef {
    let job = JobId::new();
    let repo = GitRepo::example();
    let image: ImageRef = format!("{}/temp/{job}:latest", registry.host()).parse().expect("an image");
    let spec = RunSpec {
        id: RunKey::build(job).id(),
        work: RunWork::Build(BuildWork {
            repo_url: checked::<RepoUrl>(&repo.file_url()),
            git_ref: checked::<GitRef>("main"),
            git_credentials: None,
            dockerfile: checked::<RelPath>("Dockerfile"),
            context: checked::<RelPath>("."),
            build_args: BTreeMap::new(),
            no_cache: false,
            image: image.clone(),
            registry_credentials: None,
        }),
        resources: Default::default(),
    };
    backend.start(&spec).await.expect("start the build");
    let mut events = backend.follow(&spec.id, &RunCursor::start(backend.sequences())).await.expect("follow");
    let mut exit = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(180), events.next()).await.expect("build in time")
    {
        if let RunEvent::Exit(e) = event.expect("a build event") {
            exit = Some(e);
        }
    }
    assert_eq!(exit, Some(RunExit::Exited { code: 0 }), "the example builds");
    let digest = registry.digest(&format!("temp/{job}"), "latest").await.expect("the build pushed its image");
    image.with_digest(digest.parse().expect("a digest"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nomad_backend_passes_the_backend_conformance_suite() {
    let dirs = tempfile::tempdir().expect("a temp dir");
    let registry = TestRegistry::start();
    let mut config = FakeNomadConfig::new(dirs.path().join("nomad"));
    config.host_volumes.insert("buildah-cache".into(), dirs.path().join("buildah-cache"));
    config.insecure_registries.push(registry.host());
    let nomad = FakeNomad::start(config).await;
    let client = NomadClient::new(NomadConfig::new(nomad.url().parse().expect("a url"))).expect("a client");
    let render = RenderConfig {
        insecure_registries: vec![registry.host().parse().expect("a host")],
        kill_timeout: Duration::from_secs(2),
        ..RenderConfig::default()
    };
    let backend = NomadBackend::new(client, NomadBackendConfig { render, ..NomadBackendConfig::default() });
    let image = build_example(&backend, &registry).await;
    backend_conformance::run_all(&backend, &ShellRuns { image }).await;
}
