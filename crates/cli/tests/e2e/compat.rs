//! The original service's `/json/...` endpoints, driven with the bodies its Go client sends
//! (every field marshalled, unset ones `""`/`null`, durations in nanoseconds), their answers
//! pinned key for key to the shapes that client decodes.

use std::collections::BTreeSet;
use std::time::Duration;

use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;
use serde_json::{Value, json};

use crate::support::*;

/// A `submit-job` body as the Go client marshals it.
fn go_job(repo: &str, registry: &TestRegistry, tests: Value) -> Value {
    json!({"job_config": {
        "owner": "team-a", "repo_url": repo, "git_ref": "main", "git_credentials_path": "",
        "dockerfile_path": "Dockerfile", "image_name": "legacy/app", "image_tags": ["v1"],
        "registry_url": registry.host(), "registry_credentials_path": "",
        "test": {"commands": tests, "entry_point": false, "env": null, "vault_policies": null,
                 "vault_secrets": null, "resource_limits": null, "timeout": 120_000_000_000u64,
                 "gpu_required": false, "gpu_count": 0, "constraints": null},
        "resource_limits": {"cpu": "", "memory": "", "disk": "", "build": null, "test": null, "publish": null},
        "build_timeout": null, "clear_cache": false, "webhook_url": "", "webhook_secret": "",
        "webhook_on_success": false, "webhook_on_failure": false, "webhook_headers": null,
        "deploy_dir": "./deploy",
    }})
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = http.post(url).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn the_original_clients_calls_get_the_originals_answers() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}/json/{path}", service.url);
    let repo = GitRepo::example();

    let (code, submitted) =
        post(&http, &url("submitJob"), go_job(&repo.file_url(), &registry, json!(["test -x /bin/sh", "exit 3"]))).await;
    assert_eq!(code, 200, "{submitted}");
    assert_eq!(keys(&submitted), set(&["job_id", "status"]));
    let id = submitted["job_id"].as_str().unwrap().to_owned();

    // The Go client polls the status by path until the job ends.
    let status = loop {
        let (code, status) = get(&http, &url(&format!("job/{id}/status"))).await;
        assert_eq!(code, 200, "{status}");
        if ["SUCCEEDED", "FAILED", "KILLED"].contains(&status["status"].as_str().unwrap()) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(keys(&status), set(&["job_id", "status", "config", "metrics", "error", "failed_phase"]));
    assert_eq!(status["status"], "FAILED");
    assert!(status["error"].as_str().unwrap().starts_with("test_failed: "), "{status}");
    let metrics = &status["metrics"];
    for key in ["build_duration", "test_duration", "publish_duration", "total_duration"] {
        assert!(metrics[key].is_u64(), "{key} in nanoseconds: {metrics}");
    }
    assert!(metrics["total_duration"].as_u64().unwrap() >= 1_000_000, "nanoseconds, not milliseconds: {metrics}");
    assert!(metrics["build_start"].is_string() && metrics["publish_start"].is_null(), "{metrics}");
    assert_eq!(metrics["resource_usage"], json!({"max_cpu": 0, "max_memory": 0, "disk_used": 0}));
    let config = &status["config"];
    assert_eq!(config["test"]["timeout"], json!(120_000_000_000u64), "durations go back as nanoseconds");
    assert_eq!(config["build_timeout"], json!(1_800_000_000_000u64), "the default filled in, in nanoseconds");
    assert_eq!((config["owner"].as_str(), config["webhook_secret"].as_str()), (Some("team-a"), Some("")));
    let (_, by_post) = post(&http, &url("getStatus"), json!({"job_id": id})).await;
    assert_eq!(by_post, status);

    let (code, logs) = post(&http, &url("getLogs"), json!({"job_id": id, "phase": "test"})).await;
    assert_eq!(code, 200);
    assert_eq!(keys(&logs), set(&["job_id", "logs"]));
    assert_eq!((logs["logs"]["build"].clone(), logs["logs"]["publish"].clone()), (Value::Null, Value::Null));
    let test_lines: Vec<&str> = logs["logs"]["test"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(test_lines.contains(&"=== Test Job 1 ==="), "{test_lines:?}");
    let (_, all) = get(&http, &url(&format!("job/{id}/logs"))).await;
    assert!(
        all["logs"]["build"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("[main/stdout] STEP 1/")),
        "{all}"
    );

    let (code, history) = post(&http, &url("getHistory"), json!({"limit": 10, "offset": 0})).await;
    assert_eq!(code, 200);
    assert_eq!(keys(&history), set(&["jobs", "total"]));
    assert_eq!(keys(&history["jobs"][0]), set(&["id", "config", "status", "created_at", "duration", "metrics"]));
    assert_eq!(history["jobs"][0]["id"].as_str(), Some(id.as_str()));

    // Killing a job that has ended is a 200 saying it did not work, as the original answered.
    let (code, killed) = post(&http, &url("killJob"), json!({"job_id": id})).await;
    assert_eq!((code, killed["success"].clone()), (200, json!(false)), "{killed}");
    assert_eq!(keys(&killed), set(&["job_id", "success", "message"]));
    let (code, cleaned) = post(&http, &url("cleanup"), json!({"job_id": id})).await;
    assert_eq!(code, 200, "{cleaned}");
    assert_eq!(cleaned, json!({"success": true, "cleaned_jobs": [id], "message": "Cleanup completed"}));
}

#[tokio::test]
async fn the_original_clients_mistakes_get_its_error_shape_naming_the_field() {
    let registry = TestRegistry::start();
    let data = tempfile::tempdir().unwrap();
    let service = Service::start(data.path(), &registry, &[]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}/json/{path}", service.url);

    let mut bad = go_job("https://git.example/app.git", &registry, json!(["true"]));
    bad["job_config"]["image_name"] = json!("Bad Name");
    let (code, error) = post(&http, &url("submitJob"), bad).await;
    assert_eq!(code, 400);
    assert_eq!(keys(&error), set(&["error", "code", "details"]));
    assert_eq!(error["code"], 400);
    assert!(error["details"].as_str().unwrap().starts_with("image_name "), "{error}");

    let (code, error) = post(&http, &url("submitJob"), json!({"repo_url": "https://git.example/app.git"})).await;
    assert_eq!((code, error["code"].clone()), (400, json!(400)));
    assert!(error["error"].as_str().unwrap().contains("job_config"), "{error}");

    let unknown = "0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f";
    let (code, error) = post(&http, &url("getStatus"), json!({"job_id": unknown})).await;
    assert_eq!((code, error["code"].clone()), (404, json!(404)), "{error}");
    let (code, _) = get(&http, &url("job/not-a-uuid/status")).await;
    assert_eq!(code, 404);
    let (code, error) = post(&http, &url("getLogs"), json!({})).await;
    assert_eq!(code, 400, "{error}");
    assert!(error["error"].as_str().unwrap().contains("job_id"), "{error}");
}
