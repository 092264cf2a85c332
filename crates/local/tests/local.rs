//! The local backend against the real tools: git, buildah, podman, skopeo and a registry.
//!
//! Each test gets its own data directory (so its own container storage) and its own registry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jobforge_core::config::{GitRef, RelPath, RepoUrl, TestCase};
use jobforge_core::image::ImageRef;
use jobforge_core::logs::{RunCursor, RunLine};
use jobforge_core::ports::{Backend, BuildWork, PublishWork, RunEvent, RunExit, RunSpec, RunWork, Started, TestWork};
use jobforge_core::secret::SecretPath;
use jobforge_core::{JobId, RunId, RunKey, Stream};
use jobforge_local::{FileSecrets, LocalBackend, LocalConfig};
use jobforge_testkit::git::{EXAMPLE_OUTPUT, GitHttpsServer, GitRepo};
use jobforge_testkit::registry::TestRegistry;

/// Longest any single run in these tests may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(120);

struct Env {
    data: tempfile::TempDir,
    registry: TestRegistry,
    secrets: FileSecrets,
    backend: LocalBackend,
    job: JobId,
}

impl Env {
    fn new() -> Env {
        Self::with_registry(TestRegistry::start(), None)
    }

    fn with_registry(registry: TestRegistry, extra_ca: Option<std::path::PathBuf>) -> Env {
        let data = tempfile::tempdir().unwrap();
        let secrets = FileSecrets::new(data.path().join("secrets.json"));
        let backend = backend(data.path(), &registry, extra_ca);
        Env { backend, data, registry, secrets, job: JobId::new() }
    }

    /// A second backend on the same data directory: what a restarted service gets.
    fn restarted(&self) -> LocalBackend {
        backend(self.data.path(), &self.registry, None)
    }

    fn temp_image(&self) -> ImageRef {
        format!("{}/temp/{}:latest", self.registry.host(), self.job).parse().unwrap()
    }

    fn build_spec(&self, repo_url: &str, git_ref: &str) -> RunSpec {
        RunSpec {
            id: RunKey::build(self.job).id(),
            work: RunWork::Build(BuildWork {
                repo_url: json(repo_url),
                git_ref: json::<GitRef>(git_ref),
                git_credentials: None,
                dockerfile: json::<RelPath>("Dockerfile"),
                context: json::<RelPath>("."),
                build_args: BTreeMap::new(),
                no_cache: false,
                image: self.temp_image(),
                registry_credentials: None,
            }),
            resources: Default::default(),
        }
    }

    fn test_spec(&self, index: u32, image: &ImageRef, case: TestCase) -> RunSpec {
        RunSpec {
            id: RunKey::test(self.job, index).id(),
            work: RunWork::Test(TestWork {
                image: image.clone(),
                case,
                env: BTreeMap::new(),
                vault_secrets: Vec::new(),
                registry_credentials: None,
                constraints: Vec::new(),
                gpu_required: false,
            }),
            resources: Default::default(),
        }
    }

    /// Build the example repository; returns the temp image pinned to its digest.
    async fn build_example(&self) -> ImageRef {
        let repo = GitRepo::example();
        let spec = self.build_spec(&repo.file_url(), "main");
        assert_eq!(self.backend.start(&spec).await.unwrap(), Started::New);
        let (lines, exit) = follow(&self.backend, &spec.id, 0).await;
        assert_eq!(exit, RunExit::Exited { code: 0 }, "build failed:\n{}", text(&lines));
        let digest = self.registry.digest(&format!("temp/{}", self.job), "latest").await.expect("temp image pushed");
        self.temp_image().with_digest(digest.parse().unwrap())
    }
}

fn backend(data: &std::path::Path, registry: &TestRegistry, extra_ca: Option<std::path::PathBuf>) -> LocalBackend {
    let mut config = LocalConfig::new(data.to_path_buf(), vec![env!("CARGO_BIN_EXE_jobforge-shim").into()]);
    config.insecure_registries = vec![registry.host().parse().unwrap()];
    config.extra_ca_file = extra_ca;
    let secrets = Arc::new(FileSecrets::new(data.join("secrets.json")));
    LocalBackend::new(config, secrets).unwrap()
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_json::from_value(serde_json::Value::String(text.into())).unwrap()
}

/// Every line of the run after `after`, and its exit.
async fn follow(backend: &LocalBackend, run: &RunId, after: u64) -> (Vec<RunLine>, RunExit) {
    let collect = async {
        let mut events = backend.follow(run, &RunCursor::after(1, [after])).await.unwrap();
        let mut lines = Vec::new();
        while let Some(event) = events.next().await {
            match event.unwrap() {
                RunEvent::Began { .. } => {}
                RunEvent::Line(line) => lines.push(line),
                RunEvent::Exit(exit) => return (lines, exit),
            }
        }
        panic!("the run's events ended without an exit; lines:\n{}", text(&lines));
    };
    tokio::time::timeout(RUN_LIMIT, collect).await.expect("the run did not end in time")
}

fn text(lines: &[RunLine]) -> String {
    lines.iter().map(|l| format!("[{:?}] {}\n", l.stream, l.text)).collect()
}

/// Wait until the run's own output (not jobforge's lines, which echo the command) has a line
/// containing `needle`.
async fn wait_for_line(backend: &LocalBackend, run: &RunId, needle: &str) {
    let mut events = backend.follow(run, &RunCursor::start(1)).await.unwrap();
    let wait = async {
        while let Some(event) = events.next().await {
            match event.unwrap() {
                RunEvent::Began { .. } => {}
                RunEvent::Line(line) if line.stream != Stream::System && line.text.contains(needle) => return,
                RunEvent::Line(_) => {}
                RunEvent::Exit(exit) => panic!("run ended ({exit:?}) before printing {needle:?}"),
            }
        }
    };
    tokio::time::timeout(RUN_LIMIT, wait).await.expect("line never came");
}

async fn container_names(backend: &LocalBackend) -> Vec<String> {
    let argv = backend.tools().podman(&["ps", "--all", "--format", "{{.Names}}"]);
    let out = tokio::process::Command::new(&argv[0]).args(&argv[1..]).output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn build_test_and_publish_the_example() {
    let env = Env::new();
    let image = env.build_example().await;

    // Starting the same run again attaches to it instead of building twice.
    let build = env.build_spec("file:///nonexistent", "main");
    assert_eq!(env.backend.start(&build).await.unwrap(), Started::Existing);

    let failing = env.test_spec(0, &image, TestCase::Command("echo to-out; echo to-err >&2; exit 3".into()));
    let entry = env.test_spec(1, &image, TestCase::EntryPoint);
    for spec in [&failing, &entry] {
        env.backend.start(spec).await.unwrap();
    }
    let (lines, exit) = follow(&env.backend, &failing.id, 0).await;
    assert_eq!(exit, RunExit::Exited { code: 3 }, "{}", text(&lines));
    assert!(lines.iter().any(|l| l.stream == Stream::Stdout && l.text == "to-out"), "{}", text(&lines));
    assert!(lines.iter().any(|l| l.stream == Stream::Stderr && l.text == "to-err"), "{}", text(&lines));
    let numbers: Vec<u64> = lines.iter().map(|l| l.n).collect();
    assert_eq!(numbers, (1..=lines.len() as u64).collect::<Vec<_>>(), "lines are numbered 1, 2, ...");
    let (lines, exit) = follow(&env.backend, &entry.id, 0).await;
    assert_eq!(exit, RunExit::Exited { code: 0 }, "{}", text(&lines));
    assert!(lines.iter().any(|l| l.text == EXAMPLE_OUTPUT), "{}", text(&lines));

    let targets: Vec<ImageRef> =
        ["v1", "latest"].iter().map(|tag| format!("{}/team/app:{tag}", env.registry.host()).parse().unwrap()).collect();
    let publish = RunSpec {
        id: RunKey::publish(env.job).id(),
        work: RunWork::Publish(PublishWork {
            source: image.clone(),
            targets,
            source_credentials: None,
            target_credentials: None,
        }),
        resources: Default::default(),
    };
    env.backend.start(&publish).await.unwrap();
    let (lines, exit) = follow(&env.backend, &publish.id, 0).await;
    assert_eq!(exit, RunExit::Exited { code: 0 }, "{}", text(&lines));
    let tested = image.to_string().rsplit_once('@').unwrap().1.to_owned();
    for tag in ["v1", "latest"] {
        assert_eq!(env.registry.digest("team/app", tag).await.as_deref(), Some(tested.as_str()), "{tag}");
    }

    assert!(env.backend.jobs().await.unwrap().contains(&env.job));
    let removed = env.backend.cleanup(env.job).await.unwrap();
    assert!(removed.removed.iter().any(|r| r.contains("work directory")), "{removed:?}");
    assert!(removed.is_complete(), "{removed:?}");
    assert!(!env.backend.jobs().await.unwrap().contains(&env.job));
    assert!(env.backend.follow(&publish.id, &RunCursor::start(1)).await.is_err(), "runs are gone after cleanup");
}

#[tokio::test]
async fn a_bad_dockerfile_fails_with_buildahs_own_words() {
    let env = Env::new();
    let repo = GitRepo::example();
    repo.write("Dockerfile", "FROM scratch\nFROMM nothing\n");
    repo.commit("break the Dockerfile");
    let spec = env.build_spec(&repo.file_url(), "main");
    env.backend.start(&spec).await.unwrap();
    let (lines, exit) = follow(&env.backend, &spec.id, 0).await;
    assert!(!exit.success(), "{}", text(&lines));
    let all = text(&lines);
    assert!(all.to_lowercase().contains("fromm"), "buildah names the bad instruction:\n{all}");
}

#[tokio::test]
async fn builds_tags_and_commits_and_refuses_dockerfiles_outside_the_repo() {
    let env = Env::new();
    let repo = GitRepo::example();
    let first = repo.commit("first");
    repo.write("later.txt", "later");
    std::os::unix::fs::symlink("/etc/passwd", repo.path().join("evil")).unwrap();
    repo.commit("second, with a symlink out of the repository");
    repo.tag("v1.0");

    let mut spec = env.build_spec(&repo.file_url(), &first);
    let (_, exit) = {
        env.backend.start(&spec).await.unwrap();
        follow(&env.backend, &spec.id, 0).await
    };
    assert!(exit.success(), "a commit id builds");

    spec.id = RunKey::build(JobId::new()).id();
    if let RunWork::Build(work) = &mut spec.work {
        work.git_ref = json("v1.0");
        work.dockerfile = json("evil");
    }
    env.backend.start(&spec).await.unwrap();
    let (lines, exit) = follow(&env.backend, &spec.id, 0).await;
    assert!(!exit.success());
    assert!(text(&lines).contains("dockerfile_path: \"evil\" leads outside the repository"), "{}", text(&lines));
}

#[tokio::test]
async fn a_stopped_test_ends_promptly_and_leaves_no_container() {
    let env = Env::new();
    let image = env.build_example().await;
    let spec = env.test_spec(0, &image, TestCase::Command("echo started; sleep 300".into()));
    env.backend.start(&spec).await.unwrap();
    wait_for_line(&env.backend, &spec.id, "started").await;
    env.backend.stop(&spec.id, Duration::from_secs(5)).await.unwrap();
    let (_, exit) = follow(&env.backend, &spec.id, 0).await;
    assert!(!exit.success(), "a stopped test is not a success: {exit:?}");
    let names = container_names(&env.backend).await;
    assert!(!names.iter().any(|n| n.contains(&env.job.to_string())), "{names:?}");
    // Stopping again, or stopping a finished run, is fine.
    env.backend.stop(&spec.id, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_restarted_service_reattaches_and_reads_on() {
    let env = Env::new();
    let image = env.build_example().await;
    let script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done";
    let spec = env.test_spec(0, &image, TestCase::Command(script.into()));
    env.backend.start(&spec).await.unwrap();
    wait_for_line(&env.backend, &spec.id, "line 2").await;

    // The service dies; a new one starts on the same data directory.
    let restarted = env.restarted();
    assert_eq!(restarted.start(&spec).await.unwrap(), Started::Existing, "no second start");
    let (first, _) = follow(&restarted, &spec.id, 0).await;
    let seen = first.iter().position(|l| l.text == "line 2").unwrap() as u64 + 1;
    let (rest, exit) = follow(&restarted, &spec.id, seen).await;
    assert_eq!(exit, RunExit::Exited { code: 0 });
    let texts: Vec<&str> = rest.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["line 3", "line 4", "line 5"], "exactly the lines after {seen}");
}

#[tokio::test]
async fn a_run_whose_shim_died_is_lost_and_cleanup_removes_its_container() {
    let env = Env::new();
    let image = env.build_example().await;
    let spec = env.test_spec(0, &image, TestCase::Command("echo started; sleep 300".into()));
    env.backend.start(&spec).await.unwrap();
    wait_for_line(&env.backend, &spec.id, "started").await;
    let run_dir = env.data.path().join("runs").join(spec.id.as_str());
    let pid: i32 = std::fs::read_to_string(run_dir.join("shim.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: killing the shim this test started.
    unsafe { libc_kill(pid) };
    let (_, exit) = follow(&env.backend, &spec.id, 0).await;
    assert!(matches!(exit, RunExit::Lost { .. }), "{exit:?}");

    // The step the shim ran (podman) lives on without it; stopping the run ends it.
    let step: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("step.json")).unwrap()).unwrap();
    let pgid = step["pgid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pgid}")).exists(), "the orphaned step still runs");
    env.backend.stop(&spec.id, Duration::from_secs(1)).await.unwrap();
    let gone = async {
        while std::path::Path::new(&format!("/proc/{pgid}")).exists() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(RUN_LIMIT, gone).await.expect("the orphaned step was ended");

    // Even with its directories gone, the orphaned container still names its job, so a
    // restarted service finds it among the leftovers.
    std::fs::remove_dir_all(&run_dir).unwrap();
    std::fs::remove_dir_all(env.data.path().join("work").join(env.job.to_string())).unwrap();
    assert!(env.backend.jobs().await.unwrap().contains(&env.job));
    env.backend.cleanup(env.job).await.unwrap();
    assert!(!env.backend.jobs().await.unwrap().contains(&env.job));
    let names = container_names(&env.backend).await;
    assert!(!names.iter().any(|n| n.contains(&env.job.to_string())), "{names:?}");
}

unsafe fn libc_kill(pid: i32) {
    // No libc dependency in the tests: kill(1) does the same.
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn private_registry_credentials_come_from_the_secrets_file_and_stay_out_of_logs() {
    let env = Env::with_registry(TestRegistry::start_with_auth("pusher", "s3cret-Pa55"), None);
    let path: SecretPath = "registry/local".parse().unwrap();
    env.secrets
        .put(&path, BTreeMap::from([("username".into(), "pusher".into()), ("password".into(), "s3cret-Pa55".into())]))
        .unwrap();
    let repo = GitRepo::example();

    let mut spec = env.build_spec(&repo.file_url(), "main");
    env.backend.start(&spec).await.unwrap();
    let (lines, exit) = follow(&env.backend, &spec.id, 0).await;
    assert!(!exit.success(), "without credentials the push is refused:\n{}", text(&lines));

    spec.id = RunKey::build(JobId::new()).id();
    if let RunWork::Build(work) = &mut spec.work {
        work.registry_credentials = Some(path);
    }
    env.backend.start(&spec).await.unwrap();
    let (lines, exit) = follow(&env.backend, &spec.id, 0).await;
    assert_eq!(exit, RunExit::Exited { code: 0 }, "{}", text(&lines));
    assert!(!text(&lines).contains("s3cret-Pa55"));
    let run_dir = env.data.path().join("runs").join(spec.id.as_str());
    assert!(!run_dir.join("auth.json").exists(), "the auth file is removed when the run ends");
}

#[tokio::test]
async fn private_https_git_with_credentials() {
    let repo = GitRepo::example();
    let served = tempfile::tempdir().unwrap();
    repo.bare_clone_into(served.path(), "app");
    let server = GitHttpsServer::start(served.path(), "reader", "git-Pa55word").await;
    let env = Env::with_registry(TestRegistry::start(), Some(server.ca_pem_path().to_path_buf()));
    let path: SecretPath = "git/app".parse().unwrap();
    env.secrets
        .put(&path, BTreeMap::from([("username".into(), "reader".into()), ("token".into(), "git-Pa55word".into())]))
        .unwrap();

    let mut spec = env.build_spec(&server.url("app.git"), "main");
    if let RunWork::Build(work) = &mut spec.work {
        work.git_credentials = Some(path);
    }
    env.backend.start(&spec).await.unwrap();
    let (lines, exit) = follow(&env.backend, &spec.id, 0).await;
    assert_eq!(exit, RunExit::Exited { code: 0 }, "{}", text(&lines));
    assert!(!text(&lines).contains("git-Pa55word"));
    assert!(server.requests().iter().any(|(_, _, status)| *status == 200));

    let url: RepoUrl = json(&server.url("app.git"));
    assert!(!url.is_file());
}

#[tokio::test]
async fn the_tools_are_ready() {
    let env = Env::new();
    env.backend.check().await.unwrap();
}

/// The Backend port's contract, as every backend must keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_backend_passes_the_backend_conformance_suite() {
    let env = Env::new();
    let image = env.build_example().await;
    let runs = jobforge_testkit::backend_conformance::ShellRuns { image };
    jobforge_testkit::backend_conformance::run_all(&env.backend, &runs).await;
}

/// Two jobs built from the same content share one local image (the layer cache); removing one
/// job's leftovers must leave the other job's name on it, or its push fails with "image not
/// known" (seen when a job ended while another one's build was pushing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleaning_up_a_job_leaves_the_name_of_another_jobs_identical_image() {
    let env = Env::new();
    env.build_example().await;
    let other = JobId::new();
    let repo = GitRepo::example();
    let mut spec = env.build_spec(&repo.file_url(), "main");
    spec.id = RunKey::build(other).id();
    let name = format!("{}/temp/{other}:latest", env.registry.host());
    if let RunWork::Build(build) = &mut spec.work {
        build.image = name.parse().unwrap();
    }
    env.backend.start(&spec).await.unwrap();
    let (lines, exit) = follow(&env.backend, &spec.id, 0).await;
    assert_eq!(exit, RunExit::Exited { code: 0 }, "{}", text(&lines));

    env.backend.cleanup(env.job).await.unwrap();
    let argv = env.backend.tools().podman(&["image", "exists", name.as_str()]);
    let status = std::process::Command::new(&argv[0]).args(&argv[1..]).status().unwrap();
    assert!(status.success(), "the other job's image lost its name {name}");
}

/// The digest a build reports is the one buildah pushed, whatever the temp tag names later: a
/// push to the tag between the build and the tests must not change what gets tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_digest_is_what_the_build_pushed_not_what_the_tag_names_later() {
    let env = Env::new();
    let built = env.build_example().await;
    let reported = env.backend.built_digest(env.job).await.unwrap().expect("the build reports its digest");
    assert_eq!(built.reference, jobforge_core::image::Reference::Digest(reported.clone()), "the digest buildah pushed");
    // Someone pushes another image to the temp tag.
    let other = Env::new();
    let replacement = other.build_example().await;
    let tag = format!("docker://{}", env.temp_image());
    let status = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{replacement}"))
        .arg(&tag)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(env.backend.built_digest(env.job).await.unwrap(), Some(reported), "still the build's own");
    assert!(env.backend.built_digest(jobforge_core::JobId::new()).await.is_err(), "no build, no digest");
}
