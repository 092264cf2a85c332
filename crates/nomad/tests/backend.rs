//! `NomadBackend` on the fake Nomad agent from the testkit (which runs the rendered jobs for
//! real: builds with the host's buildah, tests with podman), held to the Backend port's
//! conformance suite.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jobforge_core::config::{GitRef, RelPath, RepoUrl, TestCase};
use jobforge_core::image::ImageRef;
use jobforge_core::logs::RunCursor;
use jobforge_core::ports::{Backend, BuildWork, RunEvent, RunExit, RunSpec, RunWork, TestWork};
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
    let (lines, exit) = run_to_end(backend, &spec).await;
    assert_eq!(exit, Some(RunExit::Exited { code: 0 }), "the example builds:\n{}", lines.join("\n"));
    let digest = registry.digest(&format!("temp/{job}"), "latest").await.expect("the build pushed its image");
    let reported = backend.built_digest(job).await.expect("the digest file can be read");
    assert_eq!(reported.map(String::from), Some(digest.clone()), "the build reports the digest it pushed");
    image.with_digest(digest.parse().expect("a digest"))
}

/// Start a run and follow it to its end: its lines' texts and its exit.
async fn run_to_end(backend: &NomadBackend, spec: &RunSpec) -> (Vec<String>, Option<RunExit>) {
    backend.start(spec).await.expect("start the run");
    let mut events = backend.follow(&spec.id, &RunCursor::start(backend.sequences())).await.expect("follow");
    let (mut lines, mut exit) = (Vec::new(), None);
    while let Some(event) = tokio::time::timeout(Duration::from_secs(180), events.next()).await.expect("run in time") {
        match event.expect("a run event") {
            RunEvent::Line(line) => lines.push(line.text),
            RunEvent::Exit(e) => exit = Some(e),
            RunEvent::Began { .. } => {}
        }
    }
    (lines, exit)
}

fn nomad_backend(nomad: &FakeNomad, registries: &[&TestRegistry]) -> NomadBackend {
    let client = NomadClient::new(NomadConfig::new(nomad.url().parse().expect("a url"))).expect("a client");
    let render = RenderConfig {
        insecure_registries: registries.iter().map(|r| r.host().parse().expect("a host")).collect(),
        kill_timeout: Duration::from_secs(2),
        ..RenderConfig::default()
    };
    NomadBackend::new(client, NomadBackendConfig { render, ..NomadBackendConfig::default() })
}

fn fake_nomad_config(dir: &std::path::Path, registries: &[&TestRegistry]) -> FakeNomadConfig {
    let mut config = FakeNomadConfig::new(dir.join("nomad"));
    config.host_volumes.insert("buildah-cache".into(), dir.join("buildah-cache"));
    config.insecure_registries.extend(registries.iter().map(|r| r.host()));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nomad_backend_passes_the_backend_conformance_suite() {
    let dirs = tempfile::tempdir().expect("a temp dir");
    let registry = TestRegistry::start();
    let nomad = FakeNomad::start(fake_nomad_config(dirs.path(), &[&registry])).await;
    let backend = nomad_backend(&nomad, &[&registry]);
    let image = build_example(&backend, &registry).await;
    backend_conformance::run_all(&backend, &ShellRuns { image }).await;
}

/// A test task gets no registry credentials (they would be the caller's to read): the client
/// pulls the temp image with the node's own auth config, as the docker plugin does with
/// `auth { config = ... }`; without one, the pull from a private registry fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tasks_pull_with_the_nodes_registry_auth_and_hold_no_credentials() {
    const PASSWORD: &str = "pu11-Secret-on-the-node";
    let dirs = tempfile::tempdir().expect("a temp dir");
    let open = TestRegistry::start();
    let private = TestRegistry::start_with_auth("puller", PASSWORD);
    let mut config = fake_nomad_config(&dirs.path().join("with-auth"), &[&open, &private]);
    let auth = dirs.path().join("docker-config.json");
    let token = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("puller:{PASSWORD}"));
    let auth_json = serde_json::json!({"auths": {private.host(): {"auth": token}}});
    std::fs::write(&auth, auth_json.to_string()).expect("write the node's auth config");
    config.docker_auth_config = Some(auth);
    let with_auth = FakeNomad::start(config).await;
    let without_auth = FakeNomad::start(fake_nomad_config(&dirs.path().join("without-auth"), &[&open, &private])).await;

    let built = build_example(&nomad_backend(&with_auth, &[&open, &private]), &open).await;
    let tested: ImageRef = format!("{}/app/tested:1", private.host()).parse().expect("an image");
    let copied = tokio::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("--dest-creds=puller:{PASSWORD}"))
        .arg(format!("docker://{built}"))
        .arg(format!("docker://{tested}"))
        .output()
        .await
        .expect("run skopeo (apt-get install skopeo)");
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let digest = private.digest("app/tested", "1").await.expect("the copy is in the private registry");
    let tested = tested.with_digest(digest.parse().expect("a digest"));

    let test = |job: JobId| RunSpec {
        id: RunKey::test(job, 0).id(),
        work: RunWork::Test(TestWork {
            image: tested.clone(),
            case: TestCase::Command("env; echo tested".into()),
            env: BTreeMap::new(),
            vault_secrets: Vec::new(),
            // What the engine passes for a job with a private registry: the path, which a test
            // task must not turn into a template (the fake would wait on its data for ever).
            registry_credentials: Some("nomad/jobs/app-registry".parse().expect("a secret path")),
            constraints: Vec::new(),
            gpu_required: false,
        }),
        resources: Default::default(),
    };
    let (lines, exit) = run_to_end(&nomad_backend(&with_auth, &[&open, &private]), &test(JobId::new())).await;
    let output = lines.join("\n");
    assert_eq!(exit, Some(RunExit::Exited { code: 0 }), "{output}");
    assert!(lines.iter().any(|l| l == "tested"), "{output}");
    assert!(!output.contains(PASSWORD) && !output.contains("JF_REGISTRY"), "the test saw credentials:\n{output}");

    let (lines, exit) = run_to_end(&nomad_backend(&without_auth, &[&open, &private]), &test(JobId::new())).await;
    let output = lines.join("\n");
    assert!(
        matches!(exit, Some(RunExit::StartFailed { .. })),
        "a pull without the node's auth fails: {exit:?}\n{output}"
    );
    assert!(output.contains("Failed to pull"), "{output}");
}
