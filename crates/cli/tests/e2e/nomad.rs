//! The pipeline on the Nomad backend: the real `jobforge serve --backend nomad` against the
//! fake Nomad from the testkit, which runs the rendered jobs for real (build and publish with
//! the host's buildah, tests with podman).

use jobforge_core::record::{Cause, FailureReason, TestStatus};
use jobforge_core::{JobStatus, Phase, Stream};
use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;
use serde_json::json;

use crate::diagnosis::{Expect, diagnosed};
use crate::support::*;

/// A fake Nomad agent, a registry and `jobforge serve --backend nomad` on them.
struct Cluster {
    nomad: FakeNomad,
    registry: TestRegistry,
    service: Service,
    dirs: tempfile::TempDir,
}

impl Cluster {
    async fn start(extra: &[&str]) -> Cluster {
        let dirs = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start();
        let mut config = FakeNomadConfig::new(dirs.path().join("nomad"));
        config.host_volumes.insert("buildah-cache".into(), dirs.path().join("buildah-cache"));
        config.insecure_registries.push(registry.host());
        let nomad = FakeNomad::start(config).await;
        let mut args = vec!["--backend", "nomad", "--nomad-addr"];
        let url = nomad.url();
        args.push(&url);
        args.extend(["--placement-timeout", "3s"]);
        args.extend(extra);
        let service = Service::start(&dirs.path().join("jobforge"), &registry, &args);
        Cluster { nomad, registry, service, dirs }
    }

    fn nomad_id(&self, phase: &str, job: jobforge_core::JobId, test: Option<u32>) -> String {
        match test {
            Some(n) => format!("jobforge-{phase}-{job}-{n}"),
            None => format!("jobforge-{phase}-{job}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_as_nomad_batch_jobs_and_publishes_the_tested_digest() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &cluster.registry, "team/app", &["v1", "latest"]);
    config["test_commands"] = json!(["echo first test", "sleep 0.5; echo second test"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", texts(&all_logs(&client, id).await));

    let digest = end.image_digest.clone().unwrap();
    for tag in ["v1", "latest"] {
        assert_eq!(cluster.registry.digest("team/app", tag).await.as_deref(), Some(digest.as_str()));
    }
    assert_eq!(cluster.registry.digest(&format!("temp/{id}"), "latest").await, None, "temp image deleted");
    assert!(end.tests.iter().all(|t| t.result.status == TestStatus::Passed));
    // Both tests ran at the same time: each started before the other ended.
    let (a, b) = (&end.tests[0].result, &end.tests[1].result);
    assert!(a.started < b.ended && b.started < a.ended, "tests ran in parallel: {a:?} {b:?}");

    let logs = all_logs(&client, id).await;
    let text = texts(&logs);
    assert!(logs.iter().any(|l| l.phase == Phase::Build && l.text.contains("STEP")), "{text}");
    assert!(logs.iter().any(|l| l.test == Some(1) && l.text == "second test"), "{text}");
    assert!(logs.iter().any(|l| l.text.starts_with("nomad: Started")), "task events are reported:\n{text}");
    for (phase, test) in [("build", None), ("test", Some(0)), ("test", Some(1)), ("publish", None)] {
        assert_eq!(cluster.nomad.registrations(&cluster.nomad_id(phase, id, test)), 1, "{phase} {test:?}");
    }
    assert!(cluster.nomad.jobs().is_empty(), "finished Nomad jobs are purged: {:?}", cluster.nomad.jobs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_and_a_failing_test_fail_with_their_logs() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();

    let broken = repo_with_dockerfile("FROM scratch\nRUNN echo broken\n");
    let mut config = job(&broken.file_url(), &cluster.registry, "app", &["v1"]);
    config["test_commands"] = json!(["true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!((end.status, end.failed_phase), (JobStatus::Failed, Some(Phase::Build)));
    let error = end.error.unwrap();
    assert_eq!(error.reason, FailureReason::ExitCode);
    assert!(texts(&all_logs(&client, id).await).to_lowercase().contains("runn"));

    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &cluster.registry, "app", &["v1"]);
    config["test_commands"] = json!(["echo 'assertion failed' >&2; exit 5", "true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!((end.status, end.failed_phase), (JobStatus::Failed, Some(Phase::Test)));
    let error = end.error.unwrap();
    assert_eq!(error.exit_code, Some(5));
    assert!(error.log_tail.iter().any(|l| l == "assertion failed"), "{:#?}", error.log_tail);
    assert_eq!(cluster.registry.tags("app").await, Vec::<String>::new(), "nothing published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_the_build_and_during_the_tests_stop_the_nomad_jobs() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();

    let slow = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building && sleep 600\n"));
    let id = client.submit(&job(&slow.file_url(), &cluster.registry, "app", &["v1"])).await.unwrap().job_id;
    wait_line(&client, id, "building").await;
    client.kill(id, Some("test"), Some("during the build")).await.unwrap();
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Killed);

    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &cluster.registry, "app", &["v2"]);
    config["test_commands"] = json!(["echo long test; sleep 600"]);
    let id = client.submit(&config).await.unwrap().job_id;
    wait_line(&client, id, "long test").await;
    client.kill(id, None, Some("during the tests")).await.unwrap();
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Killed);
    assert_eq!(end.tests[0].result.status, TestStatus::Stopped);
    assert_eq!(cluster.registry.tags("app").await, Vec::<String>::new(), "nothing published");
    assert!(cluster.nomad.jobs().is_empty(), "killed jobs are purged: {:?}", cluster.nomad.jobs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nomad_cannot_place_fails_with_nomads_reason() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &cluster.registry, "app", &["v1"]);
    config["resource_limits"] = json!({"build": {"memory": "100GB"}});
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!((end.status, end.failed_phase), (JobStatus::Failed, Some(Phase::Build)));
    let error = end.error.unwrap();
    assert_eq!(error.reason, FailureReason::Backend);
    assert!(error.message.contains("could not place") && error.message.contains("memory"), "{}", error.message);
    assert_eq!((error.cause, error.retryable), (Cause::Placement, true));
    assert!(error.excerpt.iter().any(|l| l.contains("waiting for placement")), "{error:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_failures_on_nomad_are_diagnosed_from_the_task_scripts_output() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo about to fail && exit 3\n"));
    repo.branch("develop");
    let failing = job(&repo.file_url(), &cluster.registry, "app", &["v1"]);
    let mut bad_ref = failing.clone();
    bad_ref["git_ref"] = json!("mian");
    let failing = client.submit(&failing).await.unwrap().job_id;
    let bad_ref = client.submit(&bad_ref).await.unwrap().job_id;

    let error = wait_end(&client, failing).await.error.unwrap();
    assert_eq!(error.cause, Cause::BuildStep, "{error:#?}");
    assert_eq!(error.excerpt.first().map(String::as_str), Some("about to fail"), "{error:#?}");
    assert!(error.excerpt.iter().all(|l| !l.starts_with("==> ")), "the script's own lines: {error:#?}");

    let error = wait_end(&client, bad_ref).await.error.unwrap();
    assert_eq!(error.cause, Cause::Clone, "{error:#?}");
    assert!(error.hint.as_deref().unwrap_or_default().contains("did you mean `main`?"), "{error:#?}");
    let logs = all_logs(&client, bad_ref).await;
    let own: Vec<_> = logs.iter().filter(|l| l.text.starts_with("==> ")).collect();
    assert!(!own.is_empty() && own.iter().all(|l| l.stream == Stream::System), "{}", texts(&logs));
}

/// The diagnosis reads the build's checkout out of its allocation, as it reads the local
/// backend's work directory: the failing instruction's line in the committed Dockerfile, and
/// the names a missing COPY source may have meant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_failures_on_nomad_name_the_dockerfile_line_and_the_closest_names() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();
    let run_fails =
        format!("{BUSYBOX_BASE}# build it\nRUN echo one && \\\n    echo two && \\\n    exit 3\nRUN echo never\n");
    // The repositories live until the jobs have ended.
    let (run_repo, copy_repo) =
        (repo_with_dockerfile(&run_fails), repo_with_dockerfile(&format!("{BUSYBOX_BASE}COPY helo.txt /hello.txt\n")));
    let fails = client.submit(&job(&run_repo.file_url(), &cluster.registry, "app", &["v1"])).await.unwrap().job_id;
    let missing = client.submit(&job(&copy_repo.file_url(), &cluster.registry, "app", &["v1"])).await.unwrap().job_id;
    let data = cluster.dirs.path().join("jobforge");

    let expect = Expect { cause: Cause::BuildStep, line: Some(5), excerpt: "exit status 3", hint: None };
    let error = diagnosed(&client, fails, &data, expect).await.error.unwrap();
    assert_eq!(error.excerpt.first().map(String::as_str), Some("one"), "only the step's output: {error:#?}");
    let spot = error.dockerfile.unwrap();
    assert_eq!(
        (spot.path.as_str(), spot.instruction.as_str()),
        ("Dockerfile", "RUN echo one && \\\n    echo two && \\\n    exit 3")
    );

    let expect = Expect {
        cause: Cause::Dockerfile,
        line: Some(4),
        excerpt: "no such file or directory",
        hint: Some("did you mean `hello.txt`?"),
    };
    diagnosed(&client, missing, &data, expect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_reattaches_to_running_nomad_jobs_without_registering_again() {
    let mut cluster = Cluster::start(&[]).await;
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 3 && echo built\n"));
    let mut config = job(&repo.file_url(), &cluster.registry, "app", &["v1"]);
    config["test_commands"] = json!(["echo tested"]);
    let id = cluster.service.client().submit(&config).await.unwrap().job_id;
    wait_line(&cluster.service.client(), id, "building slowly").await;

    cluster.service.kill9();
    cluster.service.restart();
    let client = cluster.service.client();
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", cluster.service.log());
    assert_eq!(cluster.nomad.registrations(&cluster.nomad_id("build", id, None)), 1, "no duplicate registration");
    let logs = all_logs(&client, id).await;
    assert_eq!(logs.iter().filter(|l| l.text == "built").count(), 1, "{}", texts(&logs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nomad_jobs_of_no_live_job_are_removed_at_start_up_and_on_demand() {
    let mut cluster = Cluster::start(&[]).await;
    let http = reqwest::Client::new();
    let register = |id: String| {
        let body = json!({"Job": {
            "ID": id, "Name": id, "Type": "batch", "Datacenters": ["dc1"],
            "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{
                "Name": "t", "Driver": "docker",
                "Config": {"image": "quay.io/buildah/stable", "command": "/bin/sh", "args": ["-c", "sleep 600"]},
            }]}],
        }});
        let request = http.put(format!("{}/v1/jobs", cluster.nomad.url())).json(&body);
        async move { assert!(request.send().await.unwrap().status().is_success()) }
    };
    let zombie = format!("jobforge-build-{}", jobforge_core::JobId::new());
    let bystander = "someone-elses-job".to_owned();
    register(zombie.clone()).await;
    register(bystander.clone()).await;

    let removed = cluster.service.client().remove_zombies().await.unwrap().removed;
    assert!(removed.iter().any(|r| r.contains(&zombie)), "{removed:?}");
    assert!(!cluster.nomad.jobs().contains(&zombie));
    assert!(cluster.nomad.jobs().contains(&bystander), "jobs without the prefix are not ours");

    let later = format!("jobforge-test-{}-0", jobforge_core::JobId::new());
    register(later.clone()).await;
    cluster.service.restart();
    assert!(!cluster.nomad.jobs().contains(&later), "start-up removes zombies");
}

/// Nomad rewrites `${...}` in task environments and evaluates its driver config as a template
/// (the fake does both, as Nomad does): a caller's values must still reach the tasks literally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_values_reach_the_tasks_literally_whatever_nomad_interpolates() {
    let cluster = Cluster::start(&[]).await;
    let client = cluster.service.client();
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}ARG X\nRUN echo \"build arg: $X\"\n"));
    let branch = "jf-${NOMAD_JOB_NAME}";
    repo.branch(branch);
    let mut config = job(&repo.file_url(), &cluster.registry, "app", &["v1"]);
    config["git_ref"] = json!(branch);
    config["build_args"] = json!({"X": "${attr.unique.hostname} \\0044 $HOME"});
    config["test"] = json!({"env": {"A": "${NOMAD_JOB_NAME}", "B": "${attr.unique.hostname}\\n"}});
    config["test_commands"] = json!([r#"echo '${NOMAD_TASK_DIR}' ${HOME:+x} "A=$A" "B=$B" "$0" "$#""#]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    let logs = all_logs(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", texts(&logs));
    let build = |text: &str| logs.iter().any(|l| l.phase == Phase::Build && l.text == text);
    assert!(build("build arg: ${attr.unique.hostname} \\0044 $HOME"), "{}", texts(&logs));
    assert!(build(&format!("==> fetching {branch} from {}", repo.file_url())), "{}", texts(&logs));
    let test: Vec<&str> =
        logs.iter().filter(|l| l.test == Some(0) && l.stream != Stream::System).map(|l| l.text.as_str()).collect();
    assert_eq!(test, [r"${NOMAD_TASK_DIR} x A=${NOMAD_JOB_NAME} B=${attr.unique.hostname}\n sh 0"], "{}", texts(&logs));

    // The image's own entry point runs with no shell to decode a value: refused at submission.
    config["test_entry_point"] = json!(true);
    let err = client.submit(&config).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let fields: Vec<&str> = err.problems().iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["test.env.A", "test.env.B"], "{err}");
    assert!(err.problems()[0].message.contains("test_entry_point"), "{err}");
}
