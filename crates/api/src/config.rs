//! [`JobConfig`]: the job config a caller submits (`POST /v1/jobs`, MCP's `submitJob`), as a
//! schema. Submissions are validated from JSON by `jobforge_core::validate`, which reports
//! every problem at once; this type describes the same fields for schemas and documentation,
//! and a test holds the two to the same field names.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A job: build `dockerfile_path` of `repo_url` at `git_ref`, run each of `test_commands` in the
/// image, publish it as `registry_url/image_name:tag` for each of `image_tags` if all passed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct JobConfig {
    /// Who the job is for (filters the history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The git repository: https, http, ssh, git or file:// URL, or scp-like `user@host:path`.
    pub repo_url: String,
    /// Branch, tag or commit id (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Secret path holding `username` and `password` (or `token`) for the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_credentials_path: Option<String>,
    /// The Dockerfile, relative to the repository root (default `Dockerfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_path: Option<String>,
    /// The build context, relative to the repository root (default `.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Build arguments (`--build-arg NAME=value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_args: Option<BTreeMap<String, String>>,
    /// The image's repository name, e.g. `team/app`.
    pub image_name: String,
    /// Tags to publish (default: the job id). A single string is one tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tags: Option<Vec<String>>,
    /// Where to publish: `host[:port][/namespace]`.
    pub registry_url: String,
    /// Secret path holding `username` and `password` for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials_path: Option<String>,
    /// Commands, each run as `sh -c` in its own container from the built image, in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_commands: Option<Vec<String>>,
    /// Also run the image's own ENTRYPOINT/CMD as a test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_entry_point: Option<bool>,
    /// Test options: `env`, `vault_secrets`, `resource_limits`, `timeout`, `constraints`,
    /// `gpu_required` (and `commands`, `entry_point` as the nested form of the fields above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<serde_json::Map<String, serde_json::Value>>,
    /// `cpu` (MHz), `memory` and `disk` (MB, or `2GB`), globally and per phase (`build`,
    /// `test`, `publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<serde_json::Map<String, serde_json::Value>>,
    /// `30m`, `90s`, `1h30m` or a number of seconds (default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_timeout: Option<serde_json::Value>,
    /// The same, for the tests (default 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_timeout: Option<serde_json::Value>,
    /// Where to report the job's end (not delivered by this version: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// HMAC key for the webhook's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_on_success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_on_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_headers: Option<BTreeMap<String, String>>,
    /// Build without the layer cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_cache: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties() -> Vec<String> {
        let schema = serde_json::to_value(schemars::schema_for!(JobConfig)).unwrap();
        schema["properties"].as_object().unwrap().keys().cloned().collect()
    }

    /// Every field the schema names is one validation accepts.
    #[test]
    fn validation_knows_every_field_of_the_schema() {
        for field in properties() {
            let config = serde_json::json!({ field.clone(): null });
            let problems = jobforge_core::validate::job_spec(&config).unwrap_err();
            assert!(
                !problems.iter().any(|p| p.field == field && p.message.contains("not a known field")),
                "{field} is in the schema but validation refuses it: {problems:?}"
            );
        }
    }

    /// Every field validation reads is in the schema: the names it asks the config for, in
    /// its source.
    #[test]
    fn the_schema_names_every_field_validation_reads() {
        let source = include_str!("../../core/src/validate.rs");
        let body = source.split("pub fn job_spec").nth(1).unwrap();
        let body = &body[..body.find("\n}\n").unwrap()];
        let mut read: Vec<String> =
            body.split("&mut obj, \"").skip(1).filter_map(|rest| rest.split('"').next().map(str::to_owned)).collect();
        let webhook = source.split("fn webhook(").nth(1).unwrap();
        read.extend(webhook.split("(obj, \"").skip(1).filter_map(|rest| rest.split('"').next().map(str::to_owned)));
        let known = properties();
        for field in &read {
            assert!(known.contains(field), "validation reads {field}, which the schema does not name");
        }
        assert!(read.len() >= 20, "found too few fields in validate.rs: {read:?}");
    }
}
