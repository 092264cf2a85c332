//! End to end: the real `jobforge` binary, serving on the local backend with real git, buildah,
//! podman, skopeo and a real registry, driven through the real client and CLI.

#[path = "e2e/access.rs"]
mod access;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/compat.rs"]
mod compat;
#[path = "e2e/consul.rs"]
mod consul;
#[path = "e2e/diagnosis.rs"]
mod diagnosis;
#[path = "e2e/mcp.rs"]
mod mcp;
#[path = "e2e/nomad.rs"]
mod nomad;
mod support;
#[path = "e2e/vault.rs"]
mod vault;

use std::collections::BTreeMap;
use std::time::Duration;

use assert_cmd::Command;
use jobforge_core::record::{FailureReason, TestStatus};
use jobforge_core::{JobStatus, Phase, Stream};
use jobforge_testkit::git::{EXAMPLE_OUTPUT, GitHttpsServer, GitRepo};
use jobforge_testkit::registry::TestRegistry;
use serde_json::json;

use support::*;

#[tokio::test]
async fn a_passing_job_publishes_exactly_the_tested_digest_and_removes_the_temp_image() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "team/app", &["v1", "latest"]);
    config["test_commands"] = json!(["cat /hello.txt 2>/dev/null || echo no hello file", "test -x /bin/sh"]);

    let submitted = client.submit(&config).await.unwrap();
    assert_eq!(submitted.status, JobStatus::Pending);
    let end = wait_end(&client, submitted.job_id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", service.log());

    let digest = end.image_digest.clone().expect("a digest");
    for tag in ["v1", "latest"] {
        assert_eq!(registry.digest("team/app", tag).await.as_deref(), Some(digest.as_str()), "tag {tag}");
    }
    assert_eq!(end.published.len(), 2);
    let temp = format!("temp/{}", submitted.job_id);
    assert_eq!(registry.digest(&temp, "latest").await, None, "the temp image is deleted");
    assert_eq!(registry.digest(&temp, &digest).await, None, "the temp image is deleted");
    assert_eq!(end.tests.len(), 2);
    assert!(end.tests.iter().all(|t| t.result.status == TestStatus::Passed));
    let t = &end.timestamps;
    for stamp in
        [t.job_start, t.build_start, t.build_end, t.test_start, t.test_end, t.publish_start, t.publish_end, t.job_end]
    {
        let stamp = stamp.expect("every phase timestamp is set").to_string();
        assert!(stamp.ends_with('Z') && stamp.len() == "2026-11-29T17:45:40.123Z".len(), "{stamp}");
    }

    // Logs: per-job sequence 1, 2, 3..., each line tagged with its phase and (tests) index.
    let lines = all_logs(&client, submitted.job_id).await;
    assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq), "lines in seq order, none twice");
    assert_gap_free(&client, submitted.job_id).await;
    assert!(lines.iter().any(|l| l.phase == Phase::Build && l.text.contains("COMMIT")), "{}", texts(&lines));
    assert!(lines.iter().any(|l| l.phase == Phase::Test && l.test == Some(0) && l.text == "no hello file"));

    // History lists it, newest first.
    let history = client.history(10, 0).await.unwrap();
    assert_eq!(history.total, 1);
    assert_eq!(history.jobs[0].job_id, submitted.job_id);
}

#[tokio::test]
async fn a_bad_dockerfile_fails_the_build_with_buildahs_error() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = repo_with_dockerfile("FROM scratch\nRUNN echo broken\n");
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test_commands"] = json!(["true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Failed);
    assert_eq!(end.failed_phase, Some(Phase::Build));
    let error = end.error.unwrap();
    assert_eq!(error.reason, FailureReason::ExitCode);
    assert!(error.log_tail.iter().any(|l| l.to_lowercase().contains("runn")), "{:#?}", error.log_tail);
    let logs = all_logs(&client, id).await;
    assert!(
        logs.iter().any(|l| l.stream == Stream::Stderr && l.text.to_lowercase().contains("runn")),
        "{}",
        texts(&logs)
    );
    assert!(end.timestamps.test_start.is_none(), "no test ran");
    assert_eq!(registry.tags("app").await, Vec::<String>::new());
}

/// A caller reads about its own repository, never about where the service keeps it: paths
/// under the data directory are shown relative to the checkout (or by a short name), and a
/// failure's tail holds the tool's words, not jobforge's own command lines.
#[tokio::test]
async fn answers_show_paths_in_the_repository_not_the_services_own() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}COPY missing.txt /missing.txt\n"));
    let id = client.submit(&job(&repo.file_url(), &registry, "app", &["v1"])).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Failed, "{end:#?}");
    let tail = end.error.clone().unwrap().log_tail;
    assert!(tail.iter().any(|l| l.contains("missing.txt")), "the tool's own error: {tail:#?}");
    assert!(!tail.iter().any(|l| l.starts_with("$ ")), "no command lines of jobforge's: {tail:#?}");
    let hidden = data.path().display().to_string();
    let shown = serde_json::to_string(&end).unwrap() + &texts(&all_logs(&client, id).await);
    assert!(!shown.contains(&hidden), "the data directory {hidden} shows:\n{shown}");
    assert!(texts(&all_logs(&client, id).await).contains("$ git init --quiet ."), "the checkout is `.`");
}

#[tokio::test]
async fn a_failing_test_publishes_nothing_and_keeps_every_tests_log() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test_commands"] =
        json!(["echo checking; echo 'expected 2, got 3' >&2; exit 7", "sleep 1; echo slow test done"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Failed);
    assert_eq!(end.failed_phase, Some(Phase::Test));
    let error = end.error.clone().unwrap();
    assert_eq!(error.exit_code, Some(7));
    assert!(error.message.contains("test_commands[0]"), "{}", error.message);
    assert!(error.log_tail.iter().any(|l| l == "expected 2, got 3"), "{:#?}", error.log_tail);
    assert_eq!(end.tests[0].result.status, TestStatus::Failed);
    assert_eq!(end.tests[1].result.status, TestStatus::Passed, "the other test was allowed to finish");
    let logs = all_logs(&client, id).await;
    assert!(logs.iter().any(|l| l.test == Some(1) && l.text == "slow test done"), "{}", texts(&logs));
    assert!(end.published.is_empty());
    assert_eq!(registry.tags("app").await, Vec::<String>::new(), "nothing is published");
    assert!(end.timestamps.publish_start.is_none());
}

#[tokio::test]
async fn entry_point_mode_runs_the_images_own_command() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test"] = json!({"entry_point": true});
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}");
    assert_eq!(end.tests.len(), 1);
    let logs = all_logs(&client, id).await;
    assert!(logs.iter().any(|l| l.phase == Phase::Test && l.text == EXAMPLE_OUTPUT), "{}", texts(&logs));
}

/// Tests run callers' code: in their own network namespace they cannot reach this service's
/// API or anything else on the host's loopback, unless the operator says `--test-network host`.
#[tokio::test]
async fn tests_cannot_reach_the_hosts_loopback_unless_the_operator_allows_it() {
    let registry = TestRegistry::start();
    let repo = GitRepo::example();
    for (extra, reachable) in [(&[][..], false), (&["--test-network", "host"][..], true)] {
        let data = tempfile::tempdir().unwrap();
        let service = Service::start(data.path(), &registry, extra);
        let port = service.url.rsplit(':').next().unwrap().to_owned();
        let mut config = job(&repo.file_url(), &registry, "app", &["net"]);
        let probe =
            format!("if echo | nc -w 2 127.0.0.1 {port} >/dev/null 2>&1; then echo reached; else echo unreachable; fi");
        config["test_commands"] = serde_json::json!([probe]);
        let client = service.client();
        let id = client.submit(&config).await.unwrap().job_id;
        let end = wait_end(&client, id).await;
        assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}");
        let said = texts(&all_logs(&client, id).await);
        let want = if reachable { "reached" } else { "unreachable" };
        assert!(
            said.lines().any(|l| l == format!("[test Stdout] {want}")),
            "with {extra:?} the service is {want}: {said}"
        );
    }
}

/// Peak resident memory (VmHWM, kB) of a process, or of nothing once it is gone.
fn peak_kb(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The pids of running `jobforge shim` processes.
fn shims() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"jobforge")) && args.get(1) == Some(&&b"shim"[..])
        })
        .collect()
}

/// A test that prints 500 MB without a newline: the job ends, jobforge holds one bounded line
/// of it (the service and the run's shim stay far below 200 MB), and the log says it was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_without_newlines_is_cut_and_memory_stays_bounded() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "app", &["flood"]);
    config["test_commands"] = serde_json::json!(["head -c 500000000 /dev/zero | tr '\\0' x; echo; echo after"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let shim_peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = shim_peak.clone();
    let watch = tokio::spawn(async move {
        loop {
            for pid in shims() {
                seen.fetch_max(peak_kb(&pid), std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}");
    let service_peak = peak_kb(&service.pid().to_string());
    watch.abort();
    let lines = all_logs(&client, id).await;
    let flood: Vec<_> = lines.iter().filter(|l| l.text.starts_with("xxxx")).collect();
    assert_eq!(flood.len(), 1, "one line of it is kept");
    let tail: String = flood[0].text.chars().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(
        flood[0].text.ends_with(jobforge_core::logs::CUT_MARKER),
        "and says it was cut: ...{tail:?} ({} bytes)",
        flood[0].text.len()
    );
    assert!(flood[0].text.len() < 17 * 1024);
    assert!(lines.iter().any(|l| l.text == "after"), "the output after it is kept");
    assert!(service_peak > 0 && service_peak < 200 * 1024, "the service peaked at {service_peak} kB");
    let shim_peak = shim_peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(shim_peak > 0 && shim_peak < 200 * 1024, "the run's shim peaked at {shim_peak} kB");
    let log_size: u64 = walk_size(data.path());
    assert!(log_size < 200 * 1024 * 1024, "the data directory holds {log_size} bytes");
}

fn walk_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() && !t.is_symlink() => walk_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_job_without_tests_goes_from_build_to_publish() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let id = client.submit(&job(&repo.file_url(), &registry, "app", &[])).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded);
    assert!(end.timestamps.test_start.is_none());
    assert_eq!(end.image_tags, [id.to_string()], "the default tag is the job id");
    assert_eq!(registry.digest("app", &id.to_string()).await, end.image_digest);
}

#[tokio::test]
async fn killing_a_job_during_a_long_test_stops_it_and_publishes_nothing() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test_commands"] = json!(["echo test is running; sleep 600"]);
    let id = client.submit(&config).await.unwrap().job_id;
    wait_line(&client, id, "test is running").await;

    let accepted = client.kill(id, Some("e2e test"), Some("taking too long")).await.unwrap();
    assert!(accepted.kill.is_some());
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Killed);
    let kill = end.kill.unwrap();
    assert_eq!((kill.by.as_deref(), kill.reason.as_deref()), (Some("e2e test"), Some("taking too long")));
    assert_eq!(end.tests[0].result.status, TestStatus::Stopped);
    assert_eq!(registry.tags("app").await, Vec::<String>::new());
    assert_eq!(registry.digest(&format!("temp/{id}"), "latest").await, None, "temp image removed after a kill");

    let again = client.kill(id, None, None).await.unwrap_err();
    assert_eq!(again.status(), Some(409), "{again}");
}

#[tokio::test]
async fn a_phase_past_its_timeout_fails_with_reason_timeout() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test_commands"] = json!(["sleep 600"]);
    config["test_timeout"] = json!("2s");
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Failed);
    assert_eq!(end.failed_phase, Some(Phase::Test));
    let error = end.error.unwrap();
    assert_eq!(error.reason, FailureReason::Timeout);
    assert!(!error.retryable, "the same job would time out again");
    assert!(error.message.contains("2s"), "{}", error.message);
    assert_eq!(registry.tags("app").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_service_killed_mid_build_resumes_the_same_build_after_restart() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let mut service = Service::start(data.path(), &registry, &[]);
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 4 && echo built\n"));
    let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
    config["test_commands"] = json!(["true"]);
    let id = service.client().submit(&config).await.unwrap().job_id;
    wait_line(&service.client(), id, "building slowly").await;

    service.kill9();
    service.restart();
    let client = service.client();
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", service.log());

    let logs = all_logs(&client, id).await;
    let count = |text: &str| logs.iter().filter(|l| l.text == text || l.text.starts_with(&format!("{text} "))).count();
    assert_eq!(count("$ git init"), 1, "the build ran once:\n{}", texts(&logs));
    assert_eq!(count("building slowly"), 1, "no line twice:\n{}", texts(&logs));
    assert_eq!(count("built"), 1, "lines written while the service was down are kept:\n{}", texts(&logs));
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq), "lines in seq order, none twice");
    assert_gap_free(&client, id).await;
}

#[tokio::test]
async fn a_private_https_repository_is_cloned_with_credentials_from_the_secrets_store() {
    let repo = GitRepo::example();
    let served = tempfile::tempdir().unwrap();
    repo.bare_clone_into(served.path(), "private");
    let git = GitHttpsServer::start(served.path(), "agent", "tok-3xyz-secret").await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    secret_put(data.path(), "git/private", &[("username", "agent"), ("password", "tok-3xyz-secret")]);
    let ca = git.ca_pem_path().display().to_string();
    let service = Service::start(data.path(), &registry, &["--extra-ca-file", &ca]);
    let client = service.client();

    let mut config = job(&git.url("private.git"), &registry, "app", &["v1"]);
    config["git_credentials_path"] = json!("git/private");
    config["test_commands"] = json!(["true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", texts(&all_logs(&client, id).await));
    assert_no_secret(&client, id, "tok-3xyz-secret").await;

    // Without the credentials, the clone is refused and says so.
    let mut config = job(&git.url("private.git"), &registry, "app", &["v2"]);
    config["test_commands"] = json!(["true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.failed_phase, Some(Phase::Build));
}

#[tokio::test]
async fn a_registry_with_htpasswd_auth_gets_the_credentials() {
    let registry = TestRegistry::start_with_auth("robot", "reg-Pa55-secret");
    let data = tempfile::tempdir().unwrap();
    secret_put(data.path(), "registry/local", &[("username", "robot"), ("password", "reg-Pa55-secret")]);
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let mut config = job(&repo.file_url(), &registry, "team/app", &["v1"]);
    config["registry_credentials_path"] = json!("registry/local");
    config["test_commands"] = json!(["true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", texts(&all_logs(&client, id).await));
    assert_eq!(registry.digest("team/app", "v1").await, end.image_digest);
    assert_eq!(registry.digest(&format!("temp/{id}"), "latest").await, None, "temp image deleted with credentials");
    assert_no_secret(&client, id, "reg-Pa55-secret").await;

    // A secret path that does not exist is refused before anything runs.
    config["registry_credentials_path"] = json!("registry/missing");
    let err = client.submit(&config).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert_eq!(err.problems()[0].field, "registry_credentials_path");
}

fn secret_put(data: &std::path::Path, path: &str, fields: &[(&str, &str)]) {
    let mut cmd = Command::new(jobforge());
    cmd.args(["secret", "put", path, "--data-dir", &data.display().to_string()]);
    cmd.args(fields.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.assert().success();
}

async fn assert_no_secret(client: &jobforge_client::Client, id: jobforge_core::JobId, secret: &str) {
    let logs = texts(&all_logs(client, id).await);
    assert!(!logs.contains(secret), "a secret value is in the logs");
    let job = serde_json::to_string(&client.job(id).await.unwrap()).unwrap();
    assert!(!job.contains(secret), "a secret value is in the job status");
    let history = serde_json::to_string(&client.history(50, 0).await.unwrap()).unwrap();
    assert!(!history.contains(secret), "a secret value is in the history");
}

#[tokio::test]
async fn refusals_are_json_and_name_the_field() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", service.url);

    let cases: Vec<(reqwest::Method, &str, Option<String>, u16, &str)> = vec![
        (reqwest::Method::POST, "/v1/jobs", Some("{not json".into()), 400, "body"),
        (reqwest::Method::POST, "/v1/jobs", Some(json!({"repo_url": "-x"}).to_string()), 400, "repo_url"),
        (reqwest::Method::POST, "/v1/jobs", Some("x".repeat(1024 * 1024 + 1)), 400, "body"),
        (reqwest::Method::GET, "/v1/jobs/0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f", None, 404, ""),
        (reqwest::Method::GET, "/v1/jobs/not-a-uuid", None, 404, ""),
        (reqwest::Method::DELETE, "/v1/jobs", None, 405, ""),
        (reqwest::Method::GET, "/v1/nothing", None, 404, ""),
        (reqwest::Method::GET, "/v1/jobs?limit=0", None, 400, "limit"),
        (reqwest::Method::POST, "/v1/jobs/0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f/kill", None, 404, ""),
    ];
    for (method, path, body, status, field) in cases {
        let mut request = http.request(method.clone(), url(path));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap_or_else(|_| panic!("{method} {path}: not JSON"));
        assert!(body["error"].is_string(), "{method} {path}: {body}");
        if !field.is_empty() {
            assert_eq!(body["problems"][0]["field"], field, "{method} {path}: {body}");
        }
    }

    // Every problem at once, each naming its field.
    let bad = json!({
        "repo_url": "ftp://x/y", "image_name": "Bad", "registry_url": "127.0.0.1:5000",
        "git_ref": "--upload-pack=evil", "dockerfile_path": "../../etc/passwd", "image_tags": ["ok", "-no"],
        "build_timeout": "0s", "test_commands": ["ok", ""], "git_credentials_path": "/abs",
        "webhook_url": "file:///etc/passwd", "surprise": 1,
    });
    let response = http.post(url("/v1/jobs")).json(&bad).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    for field in [
        "repo_url",
        "image_name",
        "git_ref",
        "dockerfile_path",
        "image_tags[1]",
        "build_timeout",
        "test_commands[1]",
        "git_credentials_path",
        "webhook_url",
        "surprise",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    // Valid, but not something this server does: 422, naming the field.
    let mut webhook = job("file:///srv/git/app", &registry, "app", &["v1"]);
    webhook["webhook_url"] = json!("https://hooks.example.com/jobforge");
    let response = http.post(url("/v1/jobs")).json(&webhook).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["problems"][0]["field"], "webhook_url", "{body}");

    let history = service.client().history(10, 0).await.unwrap();
    assert_eq!(history.total, 0, "nothing refused was stored");

    let ready: serde_json::Value = http.get(url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
}

#[test]
fn the_cli_submits_watches_and_reads_back() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let repo = GitRepo::example();
    let file = data.path().join("job.yaml");
    let yaml = format!(
        "repo_url: {}\nimage_name: cli-app\nimage_tags: [v1]\nregistry_url: {}\ntest_commands:\n  - echo from the test\n",
        repo.file_url(),
        registry.host()
    );
    std::fs::write(&file, yaml).unwrap();

    let output = Command::new(jobforge())
        .args(["--url", &service.url, "submit", &file.display().to_string(), "--watch"])
        .timeout(JOB_LIMIT)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&output);
    for expected in [
        "submitted job",
        "==> build started",
        "==> build passed",
        "==> test started (1 test)",
        "[test 0]   from the test",
        "==> publish passed",
        "SUCCEEDED",
        "cli-app:v1",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let id = out.split_whitespace().nth(2).unwrap().to_owned();

    let status = Command::new(jobforge()).args(["--url", &service.url, "status", &id]).assert().success();
    let status = String::from_utf8_lossy(&status.get_output().stdout).into_owned();
    assert!(status.contains("SUCCEEDED") && status.contains("[0] passed"), "{status}");

    let json_status =
        Command::new(jobforge()).args(["--url", &service.url, "--json", "status", &id]).assert().success();
    let view: serde_json::Value = serde_json::from_slice(&json_status.get_output().stdout).unwrap();
    assert_eq!(view["status"], "SUCCEEDED");

    let logs =
        Command::new(jobforge()).args(["--url", &service.url, "logs", &id, "--phase", "test"]).assert().success();
    let logs = String::from_utf8_lossy(&logs.get_output().stdout).into_owned();
    assert!(logs.contains("from the test") && !logs.contains("[build]"), "{logs}");

    // A failing job exits 1; a refused one exits 2 and names the field; no service exits 3.
    let bad = data.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "repo_url: {}\nimage_name: x\nregistry_url: {}\ntest_commands: [\"exit 4\"]\n",
            repo.file_url(),
            registry.host()
        ),
    )
    .unwrap();
    Command::new(jobforge())
        .args(["--url", &service.url, "submit", &bad.display().to_string(), "--watch"])
        .timeout(JOB_LIMIT)
        .assert()
        .code(1);
    std::fs::write(&bad, "repo_url: ''\nimage_name: x\n").unwrap();
    let refused =
        Command::new(jobforge()).args(["--url", &service.url, "submit", &bad.display().to_string()]).assert().code(2);
    let err = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(err.contains("repo_url") && err.contains("registry_url"), "{err}");
    Command::new(jobforge()).args(["--url", "http://127.0.0.1:9", "status", &id]).assert().code(3);

    let history = Command::new(jobforge()).args(["--url", &service.url, "history", "--limit", "1"]).assert().success();
    assert!(String::from_utf8_lossy(&history.get_output().stdout).contains("2 job(s) in total"));
    let _ = BTreeMap::<(), ()>::new();
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn leftovers_of_jobs_that_are_not_live_are_removed_on_demand_and_at_start_up() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let mut service = Service::start(data.path(), &registry, &[]);
    let stray = jobforge_core::JobId::new();
    let work = data.path().join("work").join(stray.to_string());
    let run = data.path().join("runs").join(format!("build-{stray}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&run).unwrap();

    let removed = service.client().remove_zombies().await.unwrap().removed;
    assert!(removed.iter().any(|r| r.starts_with(&stray.to_string())), "{removed:?}");
    assert!(!work.exists() && !run.exists());

    let later = data.path().join("work").join(jobforge_core::JobId::new().to_string());
    std::fs::create_dir_all(&later).unwrap();
    service.restart();
    assert!(!later.exists(), "start-up removes leftovers");
    assert!(service.client().remove_zombies().await.unwrap().removed.is_empty());
}

#[tokio::test]
async fn builds_of_the_same_image_and_branch_wait_their_turn() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = repo_with_dockerfile(&format!("{BUSYBOX_BASE}RUN echo building slowly && sleep 2\n"));
    repo.branch("other");
    let config = job(&repo.file_url(), &registry, "app", &["v1"]);

    let first = client.submit(&config).await.unwrap().job_id;
    wait_line(&client, first, "building slowly").await;
    let second = client.submit(&config).await.unwrap().job_id;
    let mut other_branch = config.clone();
    other_branch["git_ref"] = json!("other");
    let other = client.submit(&other_branch).await.unwrap().job_id;

    let waiting = wait_for(&client, second, |job| job.queue_position.is_some()).await;
    assert_eq!((waiting.status, waiting.queue_position), (JobStatus::Pending, Some(1)), "{waiting:#?}");

    let (first, second, other) =
        (wait_end(&client, first).await, wait_end(&client, second).await, wait_end(&client, other).await);
    for job in [&first, &second, &other] {
        assert_eq!(job.status, JobStatus::Succeeded, "{job:#?}");
    }
    assert!(
        second.timestamps.build_start.unwrap() >= first.timestamps.job_end.unwrap(),
        "the second build of app@main started only after the first ended"
    );
    assert!(other.timestamps.build_start.unwrap() < first.timestamps.build_end.unwrap(), "another branch did not wait");
    assert_eq!(second.queue_position, None, "no position once it runs");
}
