//! The Nomad job specification, as jobforge registers it: the subset of Nomad's `Job` JSON
//! that our rendered jobs use, field for field with Nomad's Go names.
//!
//! Reading tolerates Nomad's habits: `null` for empty collections and missing keys alike.
//! Writing leaves out what we do not set, so Nomad applies its own defaults there.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One second in Nomad's duration unit (nanoseconds).
pub const SECOND_NS: i64 = 1_000_000_000;

/// `{"Job": ...}` plus the check-and-set fields of a register request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterRequest {
    pub job: Job,
    /// With `job_modify_index` 0: register only if no job with this ID exists.
    #[serde(default)]
    pub enforce_index: bool,
    #[serde(default)]
    pub job_modify_index: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub datacenters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default, deserialize_with = "nullable")]
    pub task_groups: Vec<TaskGroup>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskGroup {
    pub name: String,
    pub count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_policy: Option<ReschedulePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_disk: Option<EphemeralDisk>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeRequest>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub tasks: Vec<Task>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    pub name: String,
    pub driver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// The driver's own configuration (docker: `image`, `command`, `args`, ...), snake_case.
    #[serde(default, deserialize_with = "nullable")]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Nanoseconds between the polite signal and the forced kill on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_config: Option<LogConfig>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<Vault>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    #[serde(rename = "LTarget")]
    pub l_target: String,
    #[serde(rename = "RTarget")]
    pub r_target: String,
    #[serde(rename = "Operand")]
    pub operand: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub attempts: i32,
    /// Nanoseconds.
    pub interval: i64,
    /// Nanoseconds.
    pub delay: i64,
    /// `fail` or `delay`.
    pub mode: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReschedulePolicy {
    pub attempts: i32,
    pub interval: i64,
    pub delay: i64,
    pub delay_function: String,
    pub max_delay: i64,
    pub unlimited: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// MHz.
    #[serde(rename = "CPU")]
    pub cpu: i32,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralDisk {
    #[serde(rename = "SizeMB")]
    pub size_mb: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    #[serde(rename = "MaxFiles")]
    pub max_files: i32,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: i32,
}

/// A group-level volume request; `Type: host` names a client `host_volume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeRequest {
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeMount {
    pub volume: String,
    pub destination: String,
    pub read_only: bool,
}

/// A consul-template rendered into the task directory before the task starts.
// `default`: read back from Nomad, a field may be missing (the docs' sample job has no
// `Envvars`), and a missing key must not fail the read of the whole job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Template {
    pub embedded_tmpl: String,
    pub dest_path: String,
    /// Parse the rendered file as `KEY=value` lines into the task's environment.
    pub envvars: bool,
    pub change_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub perms: String,
}

/// Vault access for a task, by workload identity (Nomad 1.10+): a role, never a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Vault {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    pub change_mode: String,
    /// Whether the task gets `VAULT_TOKEN`; our templates read secrets themselves.
    pub env: bool,
}

/// `null` in Nomad JSON means the same as an empty collection.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recorded_register_example() {
        let text = include_str!("../../../reference/nomad-examples/job-register-example.request.json");
        let request: serde_json::Value = serde_json::from_str(text).unwrap();
        let job: Job = serde_json::from_value(request["Job"].clone()).unwrap();
        assert_eq!(job.id, "example");
        assert_eq!(job.task_groups[0].tasks[0].resources.as_ref().unwrap().memory_mb, 256);
        assert!(job.constraints.is_empty(), "null reads as empty");
    }
}
