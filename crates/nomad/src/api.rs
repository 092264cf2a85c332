//! What jobforge reads back from Nomad's HTTP API, in Nomad's wire form (the Go field names):
//! jobs ([`JobListStub`], [`JobInfo`]), allocations ([`AllocListStub`], [`Allocation`],
//! [`TaskState`], [`TaskEvent`]), evaluations ([`Evaluation`], [`AllocMetric`]),
//! [`JobSummary`], the answers to register and deregister, log frames ([`StreamFrame`]) and
//! the entries of an allocation's directory ([`AllocFileInfo`]).
//!
//! Every type tolerates Nomad's JSON habits, because a read that fails on a harmless quirk
//! would leave the engine blind to a running job:
//! - `null` where a collection is empty (read as empty);
//! - keys missing altogether: `Allocation` and `Evaluation` carry a codec `omitempty` marker, so
//!   their zero values may be left out (every read type defaults a missing key to Go's zero);
//! - times as integer Unix nanoseconds (kept as `i64`; see [`from_unix_nanos`]), except the
//!   RFC 3339 strings of [`TaskState`], where `"0001-01-01T00:00:00Z"` means unset (read as
//!   `None`);
//! - status strings as enums with an `Other` fallback, so a value from a newer Nomad never fails
//!   a read.
//!
//! This module does no IO and decides nothing: beyond the wire shapes, only small helpers that
//! read what Nomad already says (is a status terminal, what exit code an event carries). The
//! job specification we register is [`crate::job`]; reading the log stream is [`crate::logs`].

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job::Job;

#[cfg(test)]
mod tests;

/// A string enum of Nomad's: the known values as variants, anything else kept in `Other`.
///
/// Reading never fails (`null` reads as the empty string, Nomad's zero value, which becomes
/// `Other("")`, also the `Default`). Build values with `From<&str>`, not `Other("running")`, so
/// that a known value always lands on its variant.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this client does not know (from a newer Nomad), or `""` when the field was
            /// absent or `null`.
            Other(String),
        }

        impl $name {
            /// The value as Nomad writes it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(wire: &str) -> Self {
                match wire {
                    $( $wire => $name::$variant, )+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl Default for $name {
            /// Nomad's zero value, the empty string: what a missing key means.
            fn default() -> Self {
                $name::Other(String::new())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
                Ok($name::from(wire.as_str()))
            }
        }
    };
}

wire_enum! {
    /// A job's `Status`. `Dead` does not mean success: read the allocations or the summary.
    pub enum JobStatus {
        /// No allocation yet, or evaluations still to run.
        Pending = "pending",
        /// At least one allocation is not terminal (periodic and parameterized parents stay here).
        Running = "running",
        /// Every allocation and evaluation is terminal, or the job was stopped.
        Dead = "dead",
    }
}

wire_enum! {
    /// An allocation's `ClientStatus`: what the client node reports.
    pub enum ClientStatus {
        Pending = "pending",
        Running = "running",
        /// Every task finished without failing (a stopped or killed task is not a failure).
        Complete = "complete",
        /// A task failed (and its restart policy gave up).
        Failed = "failed",
        /// The node was lost; Nomad may reschedule the allocation.
        Lost = "lost",
        /// The node is disconnected and the group tolerates it; the allocation may come back.
        Unknown = "unknown",
    }
}

impl ClientStatus {
    /// `complete`, `failed` or `lost`: the client will not run this allocation again.
    pub fn is_terminal(&self) -> bool {
        match self {
            ClientStatus::Complete | ClientStatus::Failed | ClientStatus::Lost => true,
            ClientStatus::Pending | ClientStatus::Running | ClientStatus::Unknown | ClientStatus::Other(_) => false,
        }
    }
}

wire_enum! {
    /// An allocation's `DesiredStatus`: what the scheduler wants of it.
    pub enum DesiredStatus {
        Run = "run",
        Stop = "stop",
        Evict = "evict",
    }
}

wire_enum! {
    /// A task's `TaskState.State`.
    pub enum TaskStatus {
        Pending = "pending",
        Running = "running",
        /// Finished, for good or ill: see [`TaskState::failed`].
        Dead = "dead",
    }
}

wire_enum! {
    /// An evaluation's `Status`.
    pub enum EvalStatus {
        Pending = "pending",
        /// Waiting for resources: a blocked evaluation places what the first could not.
        Blocked = "blocked",
        Complete = "complete",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl EvalStatus {
    /// `complete`, `failed` or `canceled`: the scheduler is done with this evaluation.
    pub fn is_terminal(&self) -> bool {
        match self {
            EvalStatus::Complete | EvalStatus::Failed | EvalStatus::Canceled => true,
            EvalStatus::Pending | EvalStatus::Blocked | EvalStatus::Other(_) => false,
        }
    }
}

wire_enum! {
    /// A [`TaskEvent`]'s `Type`, as the Nomad client writes it.
    pub enum TaskEventType {
        Received = "Received",
        /// `Message` is `Building Task Directory`.
        TaskSetup = "Task Setup",
        /// A driver step, e.g. `DriverMessage` `Downloading image ...`.
        Driver = "Driver",
        Started = "Started",
        /// The process ended: `ExitCode`, `Signal`, `Details.oom_killed`.
        Terminated = "Terminated",
        Restarting = "Restarting",
        /// The restart policy gave up (`FailsTask`).
        NotRestarting = "Not Restarting",
        Killing = "Killing",
        Killed = "Killed",
        SetupFailure = "Setup Failure",
        DriverFailure = "Driver Failure",
        FailedValidation = "Failed Validation",
        DownloadingArtifacts = "Downloading Artifacts",
        ArtifactDownloadFailed = "Failed Artifact Download",
        SiblingFailed = "Sibling Task Failed",
        LeaderDead = "Leader Task Dead",
        MainDead = "Main Tasks Dead",
        RestartSignaled = "Restart Signaled",
        Signaling = "Signaling",
        HookFailed = "Task hook failed",
        HookMessage = "Task hook message",
        RestoreFailed = "Failed Restoring Task",
        Reconnected = "Reconnected",
        WaitingShutdownDelay = "Waiting for shutdown delay",
        SkippingShutdownDelay = "Skipping shutdown delay",
        DiskExceeded = "Disk Resources Exceeded",
        PluginHealthy = "Plugin became healthy",
        PluginUnhealthy = "Plugin became unhealthy",
        Pausing = "Pausing",
        Running = "Running",
        /// From the template hook (not among Nomad's constants), e.g. while it waits for data.
        Template = "Template",
    }
}

wire_enum! {
    /// A log frame's `FileEvent`: something happened to the file rather than new data.
    pub enum FileEvent {
        Deleted = "file deleted",
        Truncated = "file truncated",
    }
}

/// The unset `time.Time` of Go, as Nomad writes it in RFC 3339 fields.
pub const UNSET_TIME: &str = "0001-01-01T00:00:00Z";

/// A Unix-nanosecond time of Nomad's (`SubmitTime`, `CreateTime`, `TaskEvent.Time`); `None` for
/// 0, Go's unset value.
pub fn from_unix_nanos(nanos: i64) -> Option<DateTime<Utc>> {
    (nanos != 0).then(|| DateTime::from_timestamp_nanos(nanos))
}

/// `GET /v1/jobs`: one job of the list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JobListStub {
    #[serde(rename = "ID")]
    pub id: String,
    /// The parent of a dispatched or periodic child; "" otherwise.
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    pub name: String,
    pub namespace: String,
    #[serde(deserialize_with = "nullable")]
    pub datacenters: Vec<String>,
    pub node_pool: String,
    /// `batch`, `service`, `system` or `sysbatch`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub priority: i32,
    /// Whether the job is periodic (here a flag, unlike in the full job).
    pub periodic: bool,
    /// Whether the job is parameterized (here a flag, unlike in the full job).
    pub parameterized_job: bool,
    pub stop: bool,
    pub status: JobStatus,
    pub status_description: String,
    pub job_summary: Option<JobSummary>,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
    /// Unix nanoseconds.
    pub submit_time: i64,
    #[serde(deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
}

/// `GET /v1/job/:id`: the job as registered ([`Job`], the fields we write) plus what the server
/// keeps about it. Fields of Nomad's job that jobforge neither writes nor reads are dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JobInfo {
    #[serde(flatten)]
    pub job: Job,
    #[serde(rename = "ParentID")]
    pub parent_id: String,
    /// Defaults to `default` on the server.
    pub node_pool: String,
    pub status: JobStatus,
    pub status_description: String,
    /// Set by a deregister without purge: the job stays readable until garbage collection.
    pub stop: bool,
    pub stable: bool,
    pub version: u64,
    /// A child of a parameterized job.
    pub dispatched: bool,
    /// Unix nanoseconds.
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

/// `GET /v1/job/:id/summary` (also inside a [`JobListStub`]): allocation counts per task group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JobSummary {
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub namespace: String,
    /// Task group name → its counts.
    #[serde(deserialize_with = "nullable")]
    pub summary: BTreeMap<String, TaskGroupSummary>,
    /// Counts of dispatched or periodic children.
    pub children: Option<JobChildrenSummary>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// How many allocations of one task group are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskGroupSummary {
    pub queued: u64,
    pub complete: u64,
    pub failed: u64,
    pub running: u64,
    pub starting: u64,
    pub lost: u64,
    pub unknown: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JobChildrenSummary {
    pub pending: u64,
    pub running: u64,
    pub dead: u64,
}

/// `PUT /v1/jobs` (also `POST /v1/job/:id` and `/v1/job/:id/evaluate`, which answer the same).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RegisterResponse {
    /// The evaluation that will place the job; "" for periodic and parameterized parents, which
    /// get none. Registering an unchanged job still creates one.
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    /// Unchanged when the job spec did not change.
    pub job_modify_index: u64,
    /// "" when there are none; otherwise deprecation notes and the like, one per line.
    pub warnings: String,
    pub index: u64,
    /// Milliseconds.
    pub last_contact: u64,
    pub known_leader: bool,
    pub next_token: String,
}

/// `DELETE /v1/job/:id`. An unknown job is not an error: every field is zero (`eval_id` "").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DeregisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    #[serde(rename = "VolumeEvalID")]
    pub volume_eval_id: String,
    pub volume_eval_index: u64,
    pub index: u64,
    pub last_contact: u64,
    pub known_leader: bool,
    pub next_token: String,
}

/// `GET /v1/job/:id/allocations` (and the other allocation lists): an allocation without its
/// job and resources, but with its task states and their events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AllocListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// `<job>.<group>[<index>]`.
    pub name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_type: String,
    pub job_version: u64,
    pub task_group: String,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub desired_transition: DesiredTransition,
    /// Task name → its state.
    #[serde(deserialize_with = "nullable")]
    pub task_states: BTreeMap<String, TaskState>,
    pub deployment_status: Option<AllocDeploymentStatus>,
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: String,
    pub previous_allocation: String,
    /// The replacement, when this one was rescheduled.
    pub next_allocation: String,
    pub reschedule_tracker: Option<RescheduleTracker>,
    #[serde(deserialize_with = "nullable")]
    pub preempted_allocations: Vec<String>,
    pub preempted_by_allocation: String,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

impl AllocListStub {
    /// The client will not run this allocation again.
    pub fn is_terminal(&self) -> bool {
        self.client_status.is_terminal()
    }
}

/// `GET /v1/allocation/:id`: the whole allocation, with a (possibly stale) copy of its job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The job as it was when the allocation was placed; `null` in event-stream payloads.
    pub job: Option<Box<JobInfo>>,
    pub task_group: String,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    pub desired_transition: DesiredTransition,
    pub client_status: ClientStatus,
    pub client_description: String,
    /// Task name → its state.
    #[serde(deserialize_with = "nullable")]
    pub task_states: BTreeMap<String, TaskState>,
    /// How the scheduler placed it.
    pub metrics: Option<AllocMetric>,
    pub deployment_status: Option<AllocDeploymentStatus>,
    pub previous_allocation: String,
    pub next_allocation: String,
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: String,
    pub reschedule_tracker: Option<RescheduleTracker>,
    #[serde(deserialize_with = "nullable")]
    pub preempted_allocations: Vec<String>,
    pub preempted_by_allocation: String,
    pub job_version: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub alloc_modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

impl Allocation {
    /// The client will not run this allocation again.
    pub fn is_terminal(&self) -> bool {
        self.client_status.is_terminal()
    }
}

/// What an operator or the server asked of an allocation's future; `null` fields are unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DesiredTransition {
    pub migrate: Option<bool>,
    pub reschedule: Option<bool>,
    pub force_reschedule: Option<bool>,
    pub no_shutdown_delay: Option<bool>,
}

/// An allocation's health within a deployment (service jobs; unused by batch jobs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AllocDeploymentStatus {
    pub healthy: Option<bool>,
    #[serde(with = "rfc3339")]
    pub timestamp: Option<DateTime<Utc>>,
    pub canary: bool,
    pub modify_index: u64,
}

/// The reschedules that led to an allocation, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RescheduleTracker {
    #[serde(deserialize_with = "nullable")]
    pub events: Vec<RescheduleEvent>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RescheduleEvent {
    /// Unix nanoseconds.
    #[serde(deserialize_with = "int_or_string")]
    pub reschedule_time: i64,
    #[serde(rename = "PrevAllocID")]
    pub prev_alloc_id: String,
    #[serde(rename = "PrevNodeID")]
    pub prev_node_id: String,
    /// Nanoseconds. An integer on the wire; one docs sample has it as a string, so both read.
    #[serde(deserialize_with = "int_or_string")]
    pub delay: i64,
}

/// One task's state within an allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskState {
    pub state: TaskStatus,
    /// Meaningful once `state` is dead: the task failed (its allocation then fails).
    pub failed: bool,
    pub restarts: u64,
    #[serde(with = "rfc3339")]
    pub last_restart: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Oldest first; the client keeps only the last 10.
    #[serde(deserialize_with = "nullable")]
    pub events: Vec<TaskEvent>,
}

impl TaskState {
    /// The most recent event of `kind`.
    pub fn last_event(&self, kind: &TaskEventType) -> Option<&TaskEvent> {
        self.events.iter().rev().find(|event| &event.kind == kind)
    }
}

/// Something that happened to a task. Current servers fill `DisplayMessage` and `Details`; the
/// flat fields (`ExitCode`, `DriverError`, ...) are deprecated but still sent, and are all that
/// older servers send.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskEvent {
    #[serde(rename = "Type")]
    pub kind: TaskEventType,
    /// Unix nanoseconds.
    pub time: i64,
    pub message: String,
    /// A human-readable summary, written by the HTTP layer.
    pub display_message: String,
    /// `exit_code`, `signal`, `oom_killed`, `fails_task`, `driver_error`, `restart_reason`, ...
    #[serde(deserialize_with = "nullable")]
    pub details: BTreeMap<String, String>,
    pub exit_code: i64,
    pub signal: i64,
    /// This event made the task fail.
    pub fails_task: bool,
    pub restart_reason: String,
    pub setup_error: String,
    pub driver_error: String,
    pub driver_message: String,
    /// Nanoseconds.
    pub kill_timeout: i64,
    pub kill_error: String,
    pub kill_reason: String,
    /// Nanoseconds until the restart.
    pub start_delay: i64,
    pub download_error: String,
    pub validation_error: String,
    pub disk_limit: i64,
    pub failed_sibling: String,
    pub vault_error: String,
    pub task_signal_reason: String,
    pub task_signal: String,
    pub generic_source: String,
}

impl TaskEvent {
    /// The exit code of a `Terminated` event: `Details.exit_code` when present, which is what
    /// current servers fill in, else the deprecated flat `ExitCode`.
    pub fn exit_code(&self) -> i64 {
        self.details.get("exit_code").and_then(|code| code.parse().ok()).unwrap_or(self.exit_code)
    }

    /// The kernel's OOM killer ended the task (`Details.oom_killed`).
    pub fn oom_killed(&self) -> bool {
        self.details.get("oom_killed").is_some_and(|flag| flag == "true")
    }

    /// This event made the task fail, by the flat field or the detail.
    pub fn fails_task(&self) -> bool {
        self.fails_task || self.details.get("fails_task").is_some_and(|flag| flag == "true")
    }

    /// What to show a person: `DisplayMessage`, else `Message`, else the first error or driver
    /// message set (older servers fill only those).
    pub fn describe(&self) -> &str {
        [
            &self.display_message,
            &self.message,
            &self.driver_error,
            &self.setup_error,
            &self.validation_error,
            &self.download_error,
            &self.kill_error,
            &self.restart_reason,
            &self.driver_message,
        ]
        .into_iter()
        .find(|text| !text.is_empty())
        .map_or("", String::as_str)
    }
}

/// `GET /v1/evaluation/:id` and the evaluation lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    /// The job's type (`batch`, `service`, ...).
    #[serde(rename = "Type")]
    pub kind: String,
    /// `job-register`, `job-deregister`, `alloc-failure`, `periodic-job`, `node-update`,
    /// `queued-allocs`, ...: an open set, so a string.
    pub triggered_by: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_modify_index: u64,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: EvalStatus,
    pub status_description: String,
    /// Nanoseconds to wait before scheduling.
    pub wait: i64,
    pub next_eval: String,
    pub previous_eval: String,
    /// The blocked evaluation created to place what this one could not.
    pub blocked_eval: String,
    /// Related evaluations (stubs), only in `GET /v1/evaluation/:id?related=true`.
    #[serde(deserialize_with = "nullable")]
    pub related_evals: Vec<Evaluation>,
    /// Task group → why its allocations could not be placed.
    #[serde(rename = "FailedTGAllocs", deserialize_with = "nullable")]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    #[serde(deserialize_with = "nullable")]
    pub class_eligibility: BTreeMap<String, bool>,
    pub escaped_computed_class: bool,
    pub quota_limit_reached: String,
    pub annotate_plan: bool,
    /// Task group → allocations still waiting for placement.
    #[serde(deserialize_with = "nullable")]
    pub queued_allocations: BTreeMap<String, u64>,
    pub snapshot_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

/// How the scheduler fared placing one task group (an allocation's `Metrics`, or an
/// evaluation's `FailedTGAllocs` entry).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AllocMetric {
    pub nodes_evaluated: u64,
    pub nodes_filtered: u64,
    pub nodes_in_pool: u64,
    /// Datacenter → ready nodes in it.
    #[serde(deserialize_with = "nullable")]
    pub nodes_available: BTreeMap<String, u64>,
    /// Node class → nodes it filtered out.
    #[serde(deserialize_with = "nullable")]
    pub class_filtered: BTreeMap<String, u64>,
    /// Constraint (`${attr.kernel.name} = linux`) → nodes it filtered out.
    #[serde(deserialize_with = "nullable")]
    pub constraint_filtered: BTreeMap<String, u64>,
    /// Nodes that matched but had no room.
    pub nodes_exhausted: u64,
    #[serde(deserialize_with = "nullable")]
    pub class_exhausted: BTreeMap<String, u64>,
    /// Resource dimension (`memory`, `cpu`, `network: ...`) → nodes short of it.
    #[serde(deserialize_with = "nullable")]
    pub dimension_exhausted: BTreeMap<String, u64>,
    #[serde(deserialize_with = "nullable")]
    pub quota_exhausted: Vec<String>,
    /// Task → the resources it was short of (kept as JSON: only shown, never computed on).
    #[serde(deserialize_with = "nullable")]
    pub resources_exhausted: BTreeMap<String, serde_json::Value>,
    #[serde(deserialize_with = "nullable")]
    pub scores: BTreeMap<String, f64>,
    /// Nanoseconds the scheduler spent.
    pub allocation_time: i64,
    /// Further allocations of the group that failed the same way.
    pub coalesced_failures: u64,
}

impl AllocMetric {
    /// Why placement failed, in one line, the way `nomad job status` explains it, e.g.
    /// `3 nodes evaluated, 3 filtered, 0 exhausted; constraint "${attr.kernel.name} = linux"
    /// filtered 3`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} nodes evaluated, {} filtered, {} exhausted",
            self.nodes_evaluated, self.nodes_filtered, self.nodes_exhausted
        );
        if self.nodes_evaluated == 0 {
            text.push_str("; no node is ready in the job's datacenters and node pool");
        }
        // Writing to a String cannot fail.
        for (class, count) in &self.class_filtered {
            let _ = write!(text, "; class {class:?} filtered {count}");
        }
        for (constraint, count) in &self.constraint_filtered {
            let _ = write!(text, "; constraint {constraint:?} filtered {count}");
        }
        for (dimension, count) in &self.dimension_exhausted {
            let _ = write!(text, "; {dimension} exhausted on {count}");
        }
        for quota in &self.quota_exhausted {
            let _ = write!(text, "; quota {quota:?} exhausted");
        }
        if self.coalesced_failures > 0 {
            let _ = write!(text, " ({} more allocations failed the same way)", self.coalesced_failures);
        }
        text
    }
}

/// Which log of a task to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogType {
    Stdout,
    Stderr,
}

impl LogType {
    /// The `type` query parameter of `/v1/client/fs/logs`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Stdout => "stdout",
            LogType::Stderr => "stderr",
        }
    }
}

/// One frame of a framed log stream (`GET /v1/client/fs/logs/:alloc`). Empty fields are omitted
/// on the wire; a frame with every field empty (`{}`) is a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StreamFrame {
    /// The byte offset in `file` that Nomad reports with this frame.
    pub offset: i64,
    /// The log bytes, decoded from the wire's base64.
    #[serde(with = "base64_bytes", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// The file within the allocation directory, `alloc/logs/<task>.<type>.<n>`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// Set (with no data) when the file was deleted or truncated.
    #[serde(deserialize_with = "empty_as_none", skip_serializing_if = "Option::is_none")]
    pub file_event: Option<FileEvent>,
}

impl StreamFrame {
    /// The `{}` frame Nomad sends about once a second to keep the connection alive.
    pub fn is_heartbeat(&self) -> bool {
        self.offset == 0 && self.data.is_empty() && self.file.is_empty() && self.file_event.is_none()
    }
}

/// An entry of an allocation's directory (`AllocFileInfo`): one of the list
/// `GET /v1/client/fs/ls/:alloc` answers, or what `GET /v1/client/fs/stat/:alloc` says of one
/// path.
///
/// A listing describes each entry itself (Go's `DirEntry.Info`, an lstat): a symbolic link is
/// listed as a link, with `IsDir` false, never as what it points to. A stat follows links.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AllocFileInfo {
    /// The base name.
    pub name: String,
    pub is_dir: bool,
    /// Bytes (a directory's own size, for a directory).
    pub size: i64,
    /// Go's `FileMode.String()`: type letters (`d` directory, `L` symbolic link, `D` device,
    /// `p` pipe, `S` socket, ...) then `rwxrwxrwx`, or `-` then the permissions for a regular
    /// file.
    pub file_mode: String,
    #[serde(with = "rfc3339")]
    pub mod_time: Option<DateTime<Utc>>,
}

impl AllocFileInfo {
    /// A regular file: not a directory, a link, a device, a pipe or a socket. Go writes a
    /// regular file's mode with no type letter, so it alone starts with `-`.
    pub fn is_regular_file(&self) -> bool {
        !self.is_dir && self.file_mode.starts_with('-')
    }
}

/// `null` in Nomad JSON means the same as an empty collection (as in [`crate::job`]).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An integer that may come as a JSON number or as a string of digits (`null` reads as 0).
fn int_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(i64),
        Text(String),
    }
    match Option::<Wire>::deserialize(deserializer)? {
        None => Ok(0),
        Some(Wire::Number(number)) => Ok(number),
        Some(Wire::Text(text)) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got the string {text:?}"))),
    }
}

/// An enum field where `""` (or `null`) means "none".
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: for<'a> From<&'a str>,
{
    let wire = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    Ok((!wire.is_empty()).then(|| T::from(wire.as_str())))
}

/// RFC 3339 times, where Go's zero time (`0001-01-01T00:00:00Z`), `""` and `null` mean unset.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    use super::UNSET_TIME;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
        // Go's zero time is year 1, whatever the zone or fraction it was written with.
        if text.is_empty() || text.starts_with("0001-01-01T") {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(|error| serde::de::Error::custom(format!("expected an RFC 3339 time, got {text:?}: {error}")))
    }

    pub fn serialize<S: Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => serializer.serialize_str(UNSET_TIME),
        }
    }
}

/// `[]byte` fields, which Go's JSON writes as standard base64 with padding.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|error| serde::de::Error::custom(format!("Data is not base64: {error}")))
    }

    pub fn serialize<S: Serializer>(data: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(data))
    }
}
