//! Secrets from Vault on the local backend: the real `jobforge serve --secrets vault` against a
//! real OpenBao (`bao server -dev`, from the testkit), cloning a private https repository and
//! logging in to an htpasswd registry with credentials stored there, refusing jobs that name a
//! missing Vault path, and reporting Vault in `/ready`. Secret values must appear in no log, job
//! status, history entry, service log or `jobforge render` output.

use std::path::Path;

use assert_cmd::Command;
use base64::Engine as _;
use jobforge_core::record::Cause;
use jobforge_core::{JobStatus, Phase};
use jobforge_testkit::git::{GitHttpsServer, GitRepo};
use jobforge_testkit::registry::TestRegistry;
use jobforge_testkit::vault::TestVault;
use serde_json::json;

use crate::diagnosis::{Expect, diagnosed};
use crate::support::*;

/// `jobforge serve` reading secrets from `vault` with its root token.
fn serve_with_vault(vault: &TestVault, data: &Path, registry: &TestRegistry, extra: &[&str]) -> Service {
    let address = vault.address();
    let mut args = vec!["--secrets", "vault", "--vault-addr", &address, "--vault-token", vault.root_token()];
    args.extend(extra);
    Service::start(data, registry, &args)
}

/// No secret value, nor its base64 form, in the job's logs, status, the history, the service's
/// own log, or `jobforge render` of `config` (which names `paths` in Vault templates instead).
async fn assert_nowhere(
    service: &Service,
    id: jobforge_core::JobId,
    config: &serde_json::Value,
    values: &[&str],
    paths: &[&str],
) {
    let client = service.client();
    let logs = texts(&all_logs(&client, id).await);
    let status = serde_json::to_string(&client.job(id).await.unwrap()).unwrap();
    let history = serde_json::to_string(&client.history(50, 0).await.unwrap()).unwrap();
    let rendered = render(service, config);
    for path in paths {
        assert!(
            rendered.contains(&format!("secret/data/{path}")),
            "render names {path} in a Vault template:\n{rendered}"
        );
    }
    for value in values {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        for (place, text) in [
            ("logs", &logs),
            ("status", &status),
            ("history", &history),
            ("service log", &service.log()),
            ("render", &rendered),
        ] {
            assert!(!text.contains(value), "a secret value is in the {place}");
            assert!(!text.contains(&encoded), "a secret value's base64 is in the {place}");
        }
    }
}

/// `jobforge render` of the job config, as the Nomad backend would run it.
fn render(service: &Service, config: &serde_json::Value) -> String {
    let file = service.data.join("render-job.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let output = Command::new(jobforge()).args(["render", &file.display().to_string()]).assert().success();
    String::from_utf8_lossy(&output.get_output().stdout).into_owned()
}

#[tokio::test]
async fn a_private_https_repository_is_cloned_with_credentials_from_vault() {
    let vault = TestVault::start().await;
    vault.put("git/private", &[("username", "agent"), ("password", "vault-git-tok-7Qx")]).await;
    let key = "-----BEGIN TEST KEY-----\nline-one-secret-AAA\nline-two-secret-BBB\n-----END TEST KEY-----";
    vault.put("app/api", &[("token", "api-token-from-vault-3Lm"), ("key", key)]).await;
    let repo = GitRepo::example();
    let served = tempfile::tempdir().unwrap();
    repo.bare_clone_into(served.path(), "private");
    let git = GitHttpsServer::start(served.path(), "agent", "vault-git-tok-7Qx").await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let ca = git.ca_pem_path().display().to_string();
    let service = serve_with_vault(&vault, data.path(), &registry, &["--extra-ca-file", &ca]);
    let client = service.client();

    let mut config = job(&git.url("private.git"), &registry, "app", &["v1"]);
    config["git_credentials_path"] = json!("git/private");
    config["test"] = json!({
        "vault_secrets": [{"path": "app/api", "fields": {"token": "API_TOKEN", "key": "APP_KEY"}}],
    });
    config["test_commands"] =
        json!(["echo \"token is $API_TOKEN\"; printf '%s\\n' \"$APP_KEY\"; printf %s \"$API_TOKEN\" | base64"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    assert_eq!(
        end.status,
        JobStatus::Succeeded,
        "{end:#?}\n{}\n{}",
        texts(&all_logs(&client, id).await),
        service.log()
    );
    let logs = all_logs(&client, id).await;
    // Exactly the mask: an empty variable (the secret never reached the test) prints "token is ".
    let test_lines: Vec<&str> = logs.iter().filter(|l| l.phase == Phase::Test).map(|l| l.text.as_str()).collect();
    for expected in ["token is ***", "***"] {
        assert!(test_lines.contains(&expected), "the test printed {expected:?}:\n{}", texts(&logs));
    }
    assert_nowhere(
        &service,
        id,
        &config,
        &["vault-git-tok-7Qx", "api-token-from-vault-3Lm", "line-one-secret-AAA", "line-two-secret-BBB"],
        &["git/private", "app/api"],
    )
    .await;
}

#[tokio::test]
async fn a_registry_with_htpasswd_auth_gets_its_credentials_from_vault() {
    let vault = TestVault::start().await;
    vault.put("registry/local", &[("username", "robot"), ("password", "vault-reg-Pa55-9Zk")]).await;
    let registry = TestRegistry::start_with_auth("robot", "vault-reg-Pa55-9Zk");
    let data = tempfile::tempdir().unwrap();
    let service = serve_with_vault(&vault, data.path(), &registry, &[]);
    let client = service.client();
    let repo = GitRepo::example();

    let mut config = job(&repo.file_url(), &registry, "team/app", &["v1"]);
    config["registry_credentials_path"] = json!("registry/local");
    config["test_commands"] = json!(["true"]);
    let id = client.submit(&config).await.unwrap().job_id;
    let end = wait_end(&client, id).await;
    // Pushing the temp image, pulling it for the test, publishing and deleting the temp image
    // all need the credentials: each step would fail with 401 without them.
    assert_eq!(end.status, JobStatus::Succeeded, "{end:#?}\n{}", texts(&all_logs(&client, id).await));
    assert_eq!(registry.digest("team/app", "v1").await, end.image_digest);
    assert_eq!(registry.digest(&format!("temp/{id}"), "latest").await, None, "temp image deleted with credentials");
    assert_nowhere(&service, id, &config, &["vault-reg-Pa55-9Zk"], &["registry/local"]).await;
}

#[tokio::test]
async fn a_job_naming_vault_paths_that_do_not_exist_is_refused_naming_each_field() {
    let vault = TestVault::start().await;
    vault.put("git/present", &[("username", "u"), ("password", "p-present")]).await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = serve_with_vault(&vault, data.path(), &registry, &[]);
    let client = service.client();

    let mut config = job("https://git.invalid/app.git", &registry, "app", &["v1"]);
    config["git_credentials_path"] = json!("git/present");
    config["registry_credentials_path"] = json!("registry/missing");
    config["test"] = json!({"vault_secrets": [{"path": "app/missing", "fields": {"token": "TOKEN"}}]});
    config["test_commands"] = json!(["true"]);
    let err = client.submit(&config).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let fields: Vec<&str> = err.problems().iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["registry_credentials_path", "test.vault_secrets[0].path"], "{err}");
    let named: Vec<&str> = err.problems().iter().map(|p| p.message.as_str()).collect();
    assert!(named[0].contains("registry/missing") && named[1].contains("app/missing"), "{named:?}");
    assert_eq!(client.history(10, 0).await.unwrap().total, 0, "nothing refused was stored");
}

#[tokio::test]
async fn ready_reports_vault_and_fails_when_vault_stops() {
    let mut vault = TestVault::start().await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = serve_with_vault(&vault, data.path(), &registry, &[]);
    let http = reqwest::Client::new();
    let ready = || async {
        let response = http.get(format!("{}/ready", service.url)).send().await.unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
    };

    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["secrets"], "ok", "{body}");

    vault.stop();
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    let secrets = body["checks"]["secrets"].as_str().unwrap_or_default();
    // /ready is open to anyone: it names the failing part, never an internal address.
    assert!(secrets.starts_with("unavailable") && !secrets.contains(&vault.address()), "{body}");
    assert!(!body.to_string().contains(&vault.address()), "{body}");
    assert_eq!(body["checks"]["store"], "ok", "only the secrets store is down: {body}");
    let log = service.log();
    assert!(log.contains("not ready") && log.contains(&vault.address()), "the service log says why");
}

#[tokio::test]
async fn wrong_or_missing_git_credentials_are_diagnosed_as_auth() {
    let vault = TestVault::start().await;
    vault.put("git/wrong", &[("username", "agent"), ("password", "not-the-token-5Rt")]).await;
    let repo = GitRepo::example();
    let served = tempfile::tempdir().unwrap();
    repo.bare_clone_into(served.path(), "private");
    let git = GitHttpsServer::start(served.path(), "agent", "vault-git-tok-7Qx").await;
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let ca = git.ca_pem_path().display().to_string();
    let service = serve_with_vault(&vault, data.path(), &registry, &["--extra-ca-file", &ca]);
    let client = service.client();

    let mut wrong = job(&git.url("private.git"), &registry, "app", &["v1"]);
    wrong["git_credentials_path"] = json!("git/wrong");
    let none = job(&git.url("private.git"), &registry, "app", &["v1"]);
    let wrong_id = client.submit(&wrong).await.unwrap().job_id;
    let none_id = client.submit(&none).await.unwrap().job_id;

    let expect = Expect {
        cause: Cause::Auth,
        line: None,
        excerpt: "Authentication failed",
        hint: Some("refused the credentials read from git_credentials_path"),
    };
    diagnosed(&client, wrong_id, data.path(), expect).await;
    let expect = Expect {
        cause: Cause::Auth,
        line: None,
        excerpt: "could not read Username",
        hint: Some("asks for credentials"),
    };
    diagnosed(&client, none_id, data.path(), expect).await;
    assert_nowhere(&service, wrong_id, &wrong, &["not-the-token-5Rt"], &["git/wrong"]).await;
}
