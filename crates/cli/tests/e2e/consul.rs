//! The service on the Consul store (`--store consul`), against the fake Consul from the
//! testkit: records and logs in Consul KV, configuration from Consul applied without a restart.

use std::time::Duration;

use jobforge_core::record::FailureReason;
use jobforge_core::{JobStatus, Phase};
use jobforge_testkit::fake_consul::{FakeConsul, FakeConsulConfig};
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;
use serde_json::json;

use crate::support::*;

struct Setup {
    consul: FakeConsul,
    registry: TestRegistry,
    service: Service,
    _data: tempfile::TempDir,
}

async fn setup() -> Setup {
    let consul = FakeConsul::start(FakeConsulConfig::new()).await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let url = consul.url();
    let service = Service::start(data.path(), &registry, &["--store", "consul", "--consul-addr", &url]);
    Setup { consul, registry, service, _data: data }
}

async fn put(consul: &FakeConsul, key: &str, value: &str) {
    let response = reqwest::Client::new()
        .put(format!("{}/v1/kv/{key}", consul.url()))
        .body(value.to_owned())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// The service's effective configuration, once `accept` likes it.
async fn config_when(service: &Service, accept: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let http = reqwest::Client::new();
    let wait = async {
        loop {
            let config: serde_json::Value =
                http.get(format!("{}/v1/config", service.url)).send().await.unwrap().json().await.unwrap();
            if accept(&config) {
                return config;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("the configuration never changed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_their_logs_live_in_consul() {
    let setup = setup().await;
    let client = setup.service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &setup.registry, "app", &["v1"]);
    config["test_commands"] = json!(["echo tested"]);
    let id = client.submit(&config).await.unwrap().job_id;
    // The submit answers once the record is stored; the build takes seconds more.
    assert!(setup.consul.kv(&format!("jobforge-service/jobs/{id}")).is_some(), "a live job's record is in Consul");
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}");
    assert!(setup.consul.kv(&format!("jobforge-service/history/{id}")).is_some(), "finished jobs are history");
    assert!(setup.consul.kv(&format!("jobforge-service/logs/{id}/00000000")).is_some(), "logs are in Consul");
    let logs = all_logs(&client, id).await;
    assert!(logs.iter().any(|l| l.text == "tested"), "{}", texts(&logs));
    assert_eq!(client.history(10, 0).await.unwrap().jobs[0].job_id, id);
    let health = client.health().await.unwrap();
    assert_eq!(health.store, "consul");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_in_consul_applies_to_new_jobs_without_a_restart() {
    let setup = setup().await;
    let initial = config_when(&setup.service, |_| true).await;
    assert_eq!(initial["test_timeout"], "15m");

    put(&setup.consul, "jobforge-service/config/test_timeout", "2s").await;
    put(&setup.consul, "jobforge-service/config/default_resource_limits", r#"{"test": {"memory": 512}}"#).await;
    let config = config_when(&setup.service, |c| c["test_timeout"] == "2s").await;
    assert_eq!(config["default_resource_limits"]["test"]["memory"], 512);

    // A malformed value is ignored; the last good one stays.
    put(&setup.consul, "jobforge-service/config/test_timeout", "whenever").await;
    put(&setup.consul, "jobforge-service/config/build_timeout", "20m").await;
    let config = config_when(&setup.service, |c| c["build_timeout"] == "20m").await;
    assert_eq!(config["test_timeout"], "2s", "the malformed value did not replace the good one");

    // The next job runs with it: a long test now times out after 2 s.
    let client = setup.service.client();
    let repo = GitRepo::example();
    let mut job_config = job(&repo.file_url(), &setup.registry, "app", &["v1"]);
    job_config["test_commands"] = json!(["sleep 600"]);
    let id = client.submit(&job_config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!((end.status, end.failed_phase), (JobStatus::Failed, Some(Phase::Test)));
    assert_eq!(end.error.unwrap().reason, FailureReason::Timeout);
    assert_eq!(end.config["test_timeout"], "2s", "the job keeps the setting of its submission");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_mid_build_finishes_the_job_from_consul() {
    let mut setup = setup().await;
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 3 && echo built\n"));
    let id =
        setup.service.client().submit(&job(&repo.file_url(), &setup.registry, "app", &["v1"])).await.unwrap().job_id;
    wait_line(&setup.service.client(), id, "building slowly").await;
    setup.service.kill9();
    setup.service.restart();
    let client = setup.service.client();
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{}", setup.service.log());
    let logs = all_logs(&client, id).await;
    assert_eq!(logs.iter().filter(|l| l.text == "built").count(), 1, "{}", texts(&logs));
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq), "lines in seq order, none twice");
    assert_gap_free(&client, id).await;
}

/// A fake Consul that allows session TTLs of a second, so what a lock does over time can be
/// watched in seconds. Everything else is as in Consul, scaled: an unrenewed session expires
/// after twice its TTL.
async fn quick_consul() -> FakeConsul {
    let mut config = FakeConsulConfig::new();
    config.ttl_min = Duration::from_secs(1);
    FakeConsul::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_longer_than_the_session_ttl_keeps_its_lock() {
    let consul = quick_consul().await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let url = consul.url();
    let args = ["--store", "consul", "--consul-addr", &url, "--session-ttl", "1s", "--lock-delay", "0s"];
    let service = Service::start(data.path(), &registry, &args);
    let client = service.client();
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 4\n"));
    let config = job(&repo.file_url(), &registry, "app", &["v1"]);
    let first = client.submit(&config).await.unwrap().job_id;
    wait_line(&client, first, "building slowly").await;
    let second = client.submit(&config).await.unwrap().job_id;
    let waiting = wait_for(&client, second, |job| job.queue_position.is_some()).await;
    assert_eq!(waiting.queue_position, Some(1));

    let (first, second) = (wait_end(&client, first).await, wait_end(&client, second).await);
    assert_eq!((first.status, second.status), (JobStatus::Succeeded, JobStatus::Succeeded));
    // Had the session not been renewed, Consul would have freed the lock after 1 s, and the
    // second build would have started during the first.
    assert!(second.timestamps.build_start.unwrap() >= first.timestamps.job_end.unwrap(), "{first:#?}\n{second:#?}");
}

/// With a lock delay, Consul refuses a dead replica's locks for a while after its session
/// ended, and no lock change says when that is over: the survivor must try again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_replica_dies_mid_pipeline_another_finishes_the_job_exactly_once() {
    use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};
    let consul = quick_consul().await;
    let registry = TestRegistry::start();
    let dirs = tempfile::tempdir().unwrap();
    let mut nomad_config = FakeNomadConfig::new(dirs.path().join("nomad"));
    nomad_config.host_volumes.insert("buildah-cache".into(), dirs.path().join("buildah-cache"));
    nomad_config.insecure_registries.push(registry.host());
    let nomad = FakeNomad::start(nomad_config).await;
    let (consul_url, nomad_url) = (consul.url(), nomad.url());
    let args = [
        "--store",
        "consul",
        "--consul-addr",
        &consul_url,
        "--session-ttl",
        "1s",
        "--lock-delay",
        "1s",
        "--backend",
        "nomad",
        "--nomad-addr",
        &nomad_url,
    ];
    let mut first = Service::start(&dirs.path().join("a"), &registry, &args);
    let second = Service::start(&dirs.path().join("b"), &registry, &args);

    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 3 && echo built\n"));
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test_commands"] = json!(["echo tested"]);
    let id = first.client().submit(&config).await.unwrap().job_id;
    wait_line(&second.client(), id, "building slowly").await;
    first.kill9();

    let client = second.client();
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", second.log());
    for nomad_job in [format!("jobforge-build-{id}"), format!("jobforge-test-{id}-0"), format!("jobforge-publish-{id}")]
    {
        assert_eq!(nomad.registrations(&nomad_job), 1, "{nomad_job} ran once");
    }
    let logs = all_logs(&client, id).await;
    assert_eq!(logs.iter().filter(|l| l.text == "built").count(), 1, "{}", texts(&logs));
    assert_eq!(logs.iter().filter(|l| l.text == "tested").count(), 1, "{}", texts(&logs));
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq), "lines in seq order, none twice");
    assert_gap_free(&client, id).await;
    assert!(second.log().contains("took jobs over"), "the surviving replica says so:\n{}", second.log());
}

/// Any replica answers for any job: a kill, a cleanup or an event stream reaching a replica
/// that does not drive the job goes through Consul to the one that does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_not_driving_a_job_streams_kills_and_cleans_it_up() {
    use futures::StreamExt;
    use jobforge_client::Event;

    let consul = FakeConsul::start(FakeConsulConfig::new()).await;
    let registry = TestRegistry::start();
    let dirs = tempfile::tempdir().unwrap();
    let url = consul.url();
    let args = ["--store", "consul", "--consul-addr", &url];
    let driving = Service::start(&dirs.path().join("a"), &registry, &args);
    let other = Service::start(&dirs.path().join("b"), &registry, &args);
    let (a, b) = (driving.client(), other.client());
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 60\n"));

    // Killed through the other replica, watched through it to the end.
    let killed = a.submit(&job(&repo.file_url(), &registry, "app", &["v1"])).await.unwrap().job_id;
    let mut events = b.events(killed, 0, None).await.unwrap();
    let streamed = async {
        while let Some(event) = events.next().await {
            if let Event::Log(line) = event.unwrap()
                && line.text.contains("building slowly")
            {
                return;
            }
        }
        panic!("the stream ended before the build's output");
    };
    tokio::time::timeout(Duration::from_secs(60), streamed).await.expect("the other replica streamed no build output");
    let view = b.kill(killed, Some("agent"), Some("wrong base image")).await.unwrap();
    let kill = view.kill.expect("the kill is recorded once the call returns");
    assert_eq!(kill.reason.as_deref(), Some("wrong base image"));
    let end = async {
        while let Some(event) = events.next().await {
            if let Event::End(view) = event.unwrap() {
                return view;
            }
        }
        panic!("the stream ended without an end event");
    };
    let end = tokio::time::timeout(Duration::from_secs(60), end).await.expect("no end event");
    assert_eq!(end.status, JobStatus::Killed, "{end:#?}\n{}", driving.log());
    // The service's log is written in the background: give it a moment to show.
    let carried_out = async {
        while !driving.log().contains("kill requested") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), carried_out).await.expect("the driving replica carried it out");
    assert!(!other.log().contains("kill requested"), "{}", other.log());

    // Cleaned up through the other replica while running: stopped, and its leftovers removed.
    let cleaned = a.submit(&job(&repo.file_url(), &registry, "app", &["v2"])).await.unwrap().job_id;
    wait_line(&b, cleaned, "building slowly").await;
    // A cleanup answers once the driving replica has stopped the build and removed what it
    // left, which on a loaded machine can take longer than a client's usual 30 s.
    let patient = jobforge_client::ClientOptions { request_timeout: Duration::from_secs(120), ..Default::default() };
    let answer = jobforge_client::Client::with_options(&other.url, patient).unwrap().cleanup(cleaned).await.unwrap();
    // The answer is what the driving replica removed, as it recorded it.
    assert!(answer.removed.contains(&format!("run build-{cleaned}")), "{answer:?}");
    assert!(answer.remaining.is_empty(), "{answer:?}");
    let view = b.job(cleaned).await.unwrap();
    assert_eq!((view.status, view.cleaned_up), (JobStatus::Killed, true), "{view:#?}");

    // A finished job is still refused as such, wherever asked.
    let error = b.kill(killed, None, None).await.unwrap_err();
    assert_eq!(error.status(), Some(409), "{error}");
}

/// A job that could not fit in one Consul value once it has results is refused when it is
/// submitted, naming the field that makes it large, instead of wedging its driver later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_large_for_consul_is_refused_at_submit() {
    let setup = setup().await;
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &setup.registry, "app", &["v1"]);
    let command = format!("echo {}", "x".repeat(30_000));
    config["test_commands"] = json!(vec![command; 10]);
    let response =
        reqwest::Client::new().post(format!("{}/v1/jobs", setup.service.url)).json(&config).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["problems"][0]["field"], "test_commands", "{body}");
    assert!(body["problems"][0]["message"].as_str().unwrap().contains("store keeps jobs of up to"), "{body}");
    config["test_commands"] = json!(["echo small"]);
    assert!(setup.service.client().submit(&config).await.is_ok(), "a job that fits is taken");
}
