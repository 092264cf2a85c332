//! The original service's `JobConfig` (its `pkg/types`), in and out.
//!
//! In: its Go client marshals every field, so an unset one arrives as `""`, `null`, `[]` or
//! `{}`; `build_timeout` and `test.timeout` are integer nanoseconds; `deploy_dir` and
//! `test.gpu_count` mean nothing to a server. [`from_original`] turns that into the config
//! `POST /v1/jobs` takes, which then validates it as any other (so every rule still holds and
//! every problem names its field). Out: [`to_original`] writes a job's config back in the
//! original's shape, for its client to decode, without any secret value.

use serde_json::{Map, Value, json};

use jobforge_core::config::{JobSpec, Resources};
use jobforge_core::duration::Duration;

/// Fields of the original that jobforge has no use for.
const IGNORED_TOP: &[&str] = &["deploy_dir"];
const IGNORED_TEST: &[&str] = &["gpu_count"];
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The `job_config` of a request to the original service, as `POST /v1/jobs` takes it.
pub fn from_original(config: &Map<String, Value>) -> Value {
    let mut config = without_unset(config);
    for key in IGNORED_TOP {
        config.remove(*key);
    }
    seconds_from_nanos(&mut config, "build_timeout");
    if let Some(Value::Object(test)) = config.get_mut("test") {
        for key in IGNORED_TEST {
            test.remove(*key);
        }
        seconds_from_nanos(test, "timeout");
        if test.is_empty() {
            config.remove("test");
        }
    }
    Value::Object(config)
}

/// Members whose value is the Go zero value of "unset", at every level, left out.
fn without_unset(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter_map(|(key, value)| {
            let value = match value {
                Value::Object(inner) => Value::Object(without_unset(inner)),
                other => other.clone(),
            };
            let unset = match &value {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(items) => items.is_empty(),
                Value::Object(members) => members.is_empty(),
                Value::Bool(_) | Value::Number(_) => false,
            };
            (!unset).then(|| (key.clone(), value))
        })
        .collect()
}

/// `time.Duration` as JSON is integer nanoseconds; jobforge reads integers as seconds. A
/// fraction of a second rounds up, so a timeout never shrinks; zero is unset.
fn seconds_from_nanos(map: &mut Map<String, Value>, key: &str) {
    let Some(nanos) = map.get(key).and_then(Value::as_u64) else { return };
    if nanos == 0 {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), json!(nanos.div_ceil(NANOS_PER_SECOND)));
    }
}

/// A job's config in the original's shape: every field present, unset strings `""`,
/// durations in nanoseconds, resources as strings. The webhook secret is never written.
pub fn to_original(spec: &JobSpec) -> Value {
    let text = |value: Option<String>| value.unwrap_or_default();
    let tests_given = !spec.test_commands.is_empty() || spec.test_entry_point || !spec.test.is_empty();
    let test = tests_given.then(|| {
        json!({
            "commands": spec.test_commands,
            "entry_point": spec.test_entry_point,
            "env": spec.test.env,
            "vault_policies": [],
            "vault_secrets": spec.test.vault_secrets,
            "resource_limits": spec.test.resource_limits.map(resources),
            "timeout": spec.test_timeout.map(nanos),
            "gpu_required": spec.test.gpu_required,
            "gpu_count": 0,
            "constraints": spec.test.constraints.iter().map(|c| json!({
                "attribute": c.attribute, "value": c.value.clone().unwrap_or_default(), "operand": c.operand,
            })).collect::<Vec<_>>(),
        })
    });
    let limits = &spec.resource_limits;
    let resource_limits = (!limits.is_empty()).then(|| {
        let mut global = resources(Resources { cpu: limits.cpu, memory: limits.memory, disk: limits.disk });
        for (name, phase) in [("build", limits.build), ("test", limits.test), ("publish", limits.publish)] {
            global[name] = phase.map(resources).unwrap_or(Value::Null);
        }
        global
    });
    let webhook = spec.webhook.as_ref();
    json!({
        "owner": text(spec.owner.clone()),
        "repo_url": spec.repo_url.as_str(),
        "git_ref": spec.git_ref.as_str(),
        "git_credentials_path": text(spec.git_credentials_path.as_ref().map(ToString::to_string)),
        "dockerfile_path": spec.dockerfile_path.as_str(),
        "image_name": spec.image_name.to_string(),
        "image_tags": spec.image_tags.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "registry_url": spec.registry_url.to_string(),
        "registry_credentials_path": text(spec.registry_credentials_path.as_ref().map(ToString::to_string)),
        "test": test,
        "resource_limits": resource_limits,
        "build_timeout": spec.build_timeout.map(nanos),
        "clear_cache": spec.clear_cache,
        "webhook_url": text(webhook.map(|w| w.url.clone())),
        "webhook_secret": "",
        "webhook_on_success": webhook.is_some_and(|w| w.on_success),
        "webhook_on_failure": webhook.is_some_and(|w| w.on_failure),
        "webhook_headers": webhook.map(|w| w.headers.clone()).unwrap_or_default(),
        "deploy_dir": "",
        // jobforge's own, which the original's client leaves alone.
        "context": spec.context.as_str(),
        "build_args": spec.build_args,
    })
}

/// `{cpu, memory, disk}` as the original's strings (MHz, MB), `""` when unset.
fn resources(r: Resources) -> Value {
    let text = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
    json!({ "cpu": text(r.cpu), "memory": text(r.memory), "disk": text(r.disk) })
}

pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.to_std().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the original's Go client sends for a small job: every field, the unset ones zero.
    fn go_client_body() -> Value {
        json!({
            "owner": "team-a", "repo_url": "https://git.example/app.git", "git_ref": "main",
            "git_credentials_path": "", "dockerfile_path": "Dockerfile", "image_name": "app",
            "image_tags": ["v1"], "registry_url": "registry.example:5000", "registry_credentials_path": "",
            "test": {"commands": ["make test"], "entry_point": false, "env": null, "vault_policies": null,
                     "vault_secrets": null, "resource_limits": {"cpu": "", "memory": "512", "disk": ""},
                     "timeout": 90_000_000_000u64, "gpu_required": false, "gpu_count": 0, "constraints": null},
            "resource_limits": null, "build_timeout": 1_500_000_000u64, "clear_cache": false,
            "webhook_url": "", "webhook_secret": "", "webhook_on_success": false, "webhook_on_failure": false,
            "webhook_headers": null, "deploy_dir": "./deploy",
        })
    }

    #[test]
    fn a_go_client_body_becomes_a_valid_jobforge_config() {
        let Value::Object(body) = go_client_body() else { unreachable!() };
        let config = from_original(&body);
        assert_eq!(
            config,
            json!({
                "owner": "team-a", "repo_url": "https://git.example/app.git", "git_ref": "main",
                "dockerfile_path": "Dockerfile", "image_name": "app", "image_tags": ["v1"],
                "registry_url": "registry.example:5000",
                "test": {"commands": ["make test"], "entry_point": false, "resource_limits": {"memory": "512"},
                         "timeout": 90, "gpu_required": false},
                "build_timeout": 2, "clear_cache": false,
                "webhook_on_success": false, "webhook_on_failure": false,
            })
        );
        let spec = jobforge_core::validate::job_spec(&config).expect("valid");
        assert_eq!(spec.test_timeout.map(|d| d.to_std().as_secs()), Some(90));
        assert_eq!(spec.test.resource_limits.and_then(|r| r.memory), Some(512));
    }

    #[test]
    fn a_config_goes_back_in_the_originals_shape_without_the_webhook_secret() {
        let mut config = from_original(go_client_body().as_object().unwrap());
        config["webhook_url"] = json!("https://hooks.example/x");
        config["webhook_secret"] = json!("hmac-key-never-shown");
        let spec = jobforge_core::validate::job_spec(&config).unwrap();
        let out = to_original(&spec);
        assert_eq!(out["build_timeout"], json!(2_000_000_000u64));
        assert_eq!(out["test"]["timeout"], json!(90_000_000_000u64));
        assert_eq!(out["test"]["resource_limits"], json!({"cpu": "", "memory": "512", "disk": ""}));
        assert_eq!(out["git_credentials_path"], json!(""));
        assert_eq!(out["resource_limits"], Value::Null);
        assert_eq!(out["webhook_secret"], json!(""));
        assert!(!out.to_string().contains("hmac-key-never-shown"));
        // What goes out comes back in as the same job.
        let again = jobforge_core::validate::job_spec(&from_original(out.as_object().unwrap())).unwrap();
        assert_eq!(again.test_commands, spec.test_commands);
        assert_eq!((again.build_timeout, again.test_timeout), (spec.build_timeout, spec.test_timeout));
    }
}
