//! Failure diagnosis end to end on the local backend: one job per cause it can produce (the
//! wrong git credentials are in `vault.rs`, next to the Vault they come from), each checked
//! for its cause, the Dockerfile line where there is one, the tool's own words in the excerpt
//! and none of jobforge's own lines or the service's paths.

use std::path::Path;

use jobforge_api::JobView;
use jobforge_client::Client;
use jobforge_core::record::{Cause, TestStatus};
use jobforge_core::{JobId, JobStatus, Phase};
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;
use serde_json::json;

use crate::support::*;

/// What a failed job's `error` must say.
pub struct Expect<'a> {
    pub cause: Cause,
    pub line: Option<u32>,
    /// Text of the tool's own that the excerpt must hold.
    pub excerpt: &'a str,
    pub hint: Option<&'a str>,
}

/// Wait for the job to end and check its diagnosis; returns the job.
pub async fn diagnosed(client: &Client, id: JobId, data: &Path, expect: Expect<'_>) -> JobView {
    let end = wait_end(client, id).await;
    let error = end.error.clone().unwrap_or_else(|| panic!("{id} has an error: {end:#?}"));
    assert_eq!(error.cause, expect.cause, "{error:#?}\n{}", texts(&all_logs(client, id).await));
    assert_eq!(error.dockerfile.as_ref().map(|d| d.line), expect.line, "{error:#?}");
    let excerpt = error.excerpt.join("\n");
    assert!(excerpt.contains(expect.excerpt), "the excerpt holds {:?}: {error:#?}", expect.excerpt);
    for line in error.excerpt.iter().chain(&error.log_tail) {
        assert!(!line.starts_with("$ "), "jobforge's own line {line:?} in {error:#?}");
    }
    if let Some(hint) = expect.hint {
        let got = error.hint.as_deref().unwrap_or_default();
        assert!(got.contains(hint), "the hint says {hint:?}: {error:#?}");
    }
    let shown = serde_json::to_string(&end).unwrap();
    let data = data.display().to_string();
    assert!(!shown.contains(&data), "the service's data directory {data} shows in {shown}");
    end
}

/// A job building `dockerfile`, and its repository (to be kept until the job has ended).
fn with_dockerfile(registry: &TestRegistry, dockerfile: &str) -> (serde_json::Value, GitRepo) {
    let repo = repo_with_dockerfile(dockerfile);
    let mut config = job(&repo.file_url(), registry, "app", &["v1"]);
    config["test_commands"] = json!(["true"]);
    (config, repo)
}

#[tokio::test]
async fn build_failures_name_their_cause_and_the_dockerfile_line() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();

    let repo = GitRepo::example();
    repo.branch("develop");
    let mut bad_ref = job(&repo.file_url(), &registry, "app", &["v1"]);
    bad_ref["git_ref"] = json!("mian");
    let run_fails =
        format!("{BUSYBOX_BASE}# build it\nRUN echo one && \\\n    echo two && \\\n    exit 3\nRUN echo never\n");
    let (unknown, _r1) = with_dockerfile(&registry, &format!("{BUSYBOX_BASE}RUNN echo broken\n"));
    let (missing, _r2) = with_dockerfile(&registry, &format!("{BUSYBOX_BASE}COPY helo.txt /hello.txt\n"));
    let (fails, _r3) = with_dockerfile(&registry, &run_fails);
    let jobs = [
        (
            bad_ref,
            Expect {
                cause: Cause::Clone,
                line: None,
                excerpt: "fatal: couldn't find remote ref mian",
                hint: Some("did you mean `main`? Its branches: develop, main"),
            },
        ),
        (
            unknown,
            Expect {
                cause: Cause::Dockerfile,
                line: Some(4),
                excerpt: "Unknown instruction: \"RUNN\"",
                hint: Some("did you mean RUN?"),
            },
        ),
        (
            missing,
            Expect {
                cause: Cause::Dockerfile,
                line: Some(4),
                excerpt: "no such file or directory",
                hint: Some("did you mean `hello.txt`?"),
            },
        ),
        (fails, Expect { cause: Cause::BuildStep, line: Some(5), excerpt: "exit status 3", hint: None }),
    ];
    let mut submitted = Vec::new();
    for (config, expect) in jobs {
        submitted.push((client.submit(&config).await.unwrap().job_id, expect));
    }
    for (id, expect) in submitted {
        let cause = expect.cause;
        let end = diagnosed(&client, id, data.path(), expect).await;
        let error = end.error.unwrap();
        assert!(!error.retryable, "{cause}: the caller's own mistake: {error:#?}");
        if cause == Cause::BuildStep {
            // Only that step's output: not the steps before it.
            assert_eq!(error.excerpt.first().map(String::as_str), Some("one"), "{error:#?}");
            let spot = error.dockerfile.unwrap();
            assert_eq!(spot.instruction, "RUN echo one && \\\n    echo two && \\\n    exit 3");
        }
    }
}

#[tokio::test]
async fn test_failures_timeouts_and_kills_are_told_apart() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();
    let config = |tests: serde_json::Value| {
        let mut config = job(&repo.file_url(), &registry, "app", &["v1"]);
        config["test_commands"] = tests;
        config
    };

    let failing = client.submit(&config(json!(["echo testing; echo to-stderr >&2; exit 4", "true"]))).await.unwrap();
    let mut slow = config(json!(["echo started; sleep 600"]));
    slow["test_timeout"] = json!("3s");
    let slow = client.submit(&slow).await.unwrap();
    let killed = client.submit(&config(json!(["echo long-running; sleep 600"]))).await.unwrap();

    let end = diagnosed(
        &client,
        failing.job_id,
        data.path(),
        Expect { cause: Cause::TestFailed, line: None, excerpt: "to-stderr", hint: None },
    )
    .await;
    let test = &end.tests[0];
    assert_eq!((test.result.status, test.result.exit_code), (TestStatus::Failed, Some(4)));
    assert!(test.duration_ms.is_some());
    // stdout and stderr are two pipes: both lines are there, in the order they were read.
    let mut excerpt = test.result.excerpt.clone();
    excerpt.sort();
    assert_eq!(excerpt, vec!["testing", "to-stderr"]);
    assert!(end.error.as_ref().unwrap().excerpt.iter().any(|l| l == "testing"), "{end:#?}");
    assert!(end.tests[1].result.excerpt.is_empty(), "a passed test has no excerpt");
    assert_eq!(end.error.as_ref().unwrap().test, Some(0));

    diagnosed(
        &client,
        slow.job_id,
        data.path(),
        Expect { cause: Cause::Timeout, line: None, excerpt: "started", hint: Some("raise test_timeout") },
    )
    .await;

    wait_line(&client, killed.job_id, "long-running").await;
    client.kill(killed.job_id, Some("tests"), Some("not needed")).await.unwrap();
    let end = wait_end(&client, killed.job_id).await;
    assert_eq!(end.status, JobStatus::Killed);
    let error = end.error.unwrap();
    assert_eq!((error.cause, error.phase, error.retryable), (Cause::Killed, Phase::Test, false));
    assert!(error.message.contains("not needed"), "{error:#?}");
}
