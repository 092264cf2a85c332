//! The fake's records and their wire shapes: [`Alloc`] (full `Allocation` and `AllocListStub`),
//! [`TaskState`] and [`TaskEvent`] (with both `Details` and the deprecated flat fields, and the
//! `DisplayMessage` the HTTP layer fills), and [`Eval`] (`Evaluation` and `EvaluationStub`).
//!
//! Field names and zero values follow Nomad's Go structs: nil pointers, slices and maps are
//! `null`; a zero `time.Time` is `null` too (ugorji's JSON encoder writes a zero time as nil,
//! as the 2021 `GET /v1/allocations` sample shows). Times in records are Unix nanoseconds.
//! Nothing here changes state; the store owns the records and decides when they change.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::duration::go_duration_string;

/// Now, in Unix nanoseconds.
pub(crate) fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Go's `time.RFC3339Nano` for a Unix-nanosecond time; a zero time is `null`.
pub(crate) fn rfc3339(nanos: i64) -> Value {
    if nanos == 0 {
        return Value::Null;
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    let Some(time) = chrono::DateTime::from_timestamp(secs, sub) else { return Value::Null };
    let mut text = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    if sub > 0 {
        let fraction = format!("{sub:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    Value::String(text)
}

/// A `structs.TaskEvent`, built the way the client builds them (`NewTaskEvent(...).SetX(...)`):
/// each setter fills the flat field and its `Details` entry.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskEvent {
    pub kind: String,
    pub time: i64,
    pub message: String,
    pub details: BTreeMap<String, String>,
    pub fails_task: bool,
    pub restart_reason: String,
    pub setup_error: String,
    pub driver_error: String,
    pub exit_code: i64,
    pub signal: i64,
    pub kill_timeout: i64,
    pub kill_reason: String,
    pub start_delay: i64,
    pub failed_sibling: String,
    pub driver_message: String,
    pub validation_error: String,
}

impl TaskEvent {
    pub(crate) fn new(kind: &str) -> TaskEvent {
        TaskEvent { kind: kind.to_owned(), time: now_nanos(), ..TaskEvent::default() }
    }

    fn detail(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub(crate) fn message(mut self, message: &str) -> Self {
        self.message = message.to_owned();
        self.detail("message", message)
    }

    pub(crate) fn exit(mut self, code: i64, signal: i64, oom_killed: bool) -> Self {
        self.exit_code = code;
        self.signal = signal;
        self.detail("exit_code", code.to_string())
            .detail("signal", signal.to_string())
            .detail("oom_killed", oom_killed.to_string())
    }

    pub(crate) fn fails_task(mut self) -> Self {
        self.fails_task = true;
        self.detail("fails_task", "true")
    }

    pub(crate) fn restart_reason(mut self, reason: &str) -> Self {
        self.restart_reason = reason.to_owned();
        self.detail("restart_reason", reason)
    }

    pub(crate) fn restart_delay(mut self, nanos: i64) -> Self {
        self.start_delay = nanos;
        self.detail("start_delay", nanos.to_string())
    }

    pub(crate) fn kill_timeout(mut self, nanos: i64) -> Self {
        self.kill_timeout = nanos;
        self.detail("kill_timeout", go_duration_string(nanos))
    }

    pub(crate) fn kill_reason(mut self, reason: &str) -> Self {
        self.kill_reason = reason.to_owned();
        self.detail("kill_reason", reason)
    }

    pub(crate) fn driver_message(mut self, message: &str) -> Self {
        self.driver_message = message.to_owned();
        self.detail("driver_message", message)
    }

    pub(crate) fn driver_error(mut self, error: &str) -> Self {
        self.driver_error = error.to_owned();
        self.detail("driver_error", error)
    }

    pub(crate) fn validation_error(mut self, error: &str) -> Self {
        self.validation_error = error.to_owned();
        self.detail("validation_error", error)
    }

    pub(crate) fn setup_error(mut self, error: &str) -> Self {
        self.setup_error = error.to_owned();
        self.detail("setup_error", error)
    }

    pub(crate) fn failed_sibling(mut self, task: &str) -> Self {
        self.failed_sibling = task.to_owned();
        self.detail("failed_sibling", task)
    }

    /// What `PopulateEventDisplayMessage` writes for this event.
    pub(crate) fn display_message(&self) -> String {
        match self.kind.as_str() {
            "Task Setup" => self.message.clone(),
            "Started" => "Task started by client".to_owned(),
            "Received" => "Task received by client".to_owned(),
            "Setup Failure" if self.setup_error.is_empty() => "Task setup failed".to_owned(),
            "Setup Failure" => self.setup_error.clone(),
            "Driver Failure" if self.driver_error.is_empty() => "Failed to start task".to_owned(),
            "Driver Failure" => self.driver_error.clone(),
            "Failed Validation" if self.validation_error.is_empty() => "Validation of task failed".to_owned(),
            "Failed Validation" => self.validation_error.clone(),
            "Killing" if !self.kill_reason.is_empty() => format!("Killing task: {}", self.kill_reason),
            "Killing" if self.kill_timeout != 0 => {
                format!("Sent interrupt. Waiting {} before force killing", go_duration_string(self.kill_timeout))
            }
            "Killing" => "Sent interrupt".to_owned(),
            "Killed" => "Task successfully killed".to_owned(),
            "Terminated" => {
                let mut parts = vec![format!("Exit Code: {}", self.exit_code)];
                if self.signal != 0 {
                    parts.push(format!("Signal: {}", self.signal));
                }
                if !self.message.is_empty() {
                    parts.push(format!("Exit Message: {:?}", self.message));
                }
                parts.join(", ")
            }
            "Restarting" => {
                let in_delay = format!("Task restarting in {}", go_duration_string(self.start_delay));
                if !self.restart_reason.is_empty() && self.restart_reason != super::client::REASON_WITHIN_POLICY {
                    format!("{} - {in_delay}", self.restart_reason)
                } else {
                    in_delay
                }
            }
            "Not Restarting" if self.restart_reason.is_empty() => "Task exceeded restart policy".to_owned(),
            "Not Restarting" => self.restart_reason.clone(),
            "Sibling Task Failed" if !self.failed_sibling.is_empty() => {
                format!("Task's sibling {:?} failed", self.failed_sibling)
            }
            "Sibling Task Failed" => "Task's sibling failed".to_owned(),
            "Driver" => self.driver_message.clone(),
            _ => self.message.clone(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "Type": self.kind,
            "Time": self.time,
            "Message": self.message,
            "DisplayMessage": self.display_message(),
            "Details": self.details,
            "FailsTask": self.fails_task,
            "RestartReason": self.restart_reason,
            "SetupError": self.setup_error,
            "DriverError": self.driver_error,
            "ExitCode": self.exit_code,
            "Signal": self.signal,
            "KillTimeout": self.kill_timeout,
            "KillError": "",
            "KillReason": self.kill_reason,
            "StartDelay": self.start_delay,
            "DownloadError": "",
            "ValidationError": self.validation_error,
            "DiskLimit": 0,
            "FailedSibling": self.failed_sibling,
            "VaultError": "",
            "TaskSignalReason": "",
            "TaskSignal": "",
            "DriverMessage": self.driver_message,
            "GenericSource": "",
        })
    }
}

/// How many events a task state keeps (the client's default `MaxEvents`).
const MAX_EVENTS: usize = 10;

/// A `structs.TaskState`.
#[derive(Clone, Debug)]
pub(crate) struct TaskState {
    /// `pending`, `running` or `dead`.
    pub state: String,
    pub failed: bool,
    pub restarts: u64,
    pub last_restart: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub events: Vec<TaskEvent>,
}

impl TaskState {
    pub(crate) fn pending() -> TaskState {
        TaskState {
            state: "pending".into(),
            failed: false,
            restarts: 0,
            last_restart: 0,
            started_at: 0,
            finished_at: 0,
            events: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, event: TaskEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(event);
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "State": self.state,
            "Failed": self.failed,
            "Restarts": self.restarts,
            "LastRestart": rfc3339(self.last_restart),
            "StartedAt": rfc3339(self.started_at),
            "FinishedAt": rfc3339(self.finished_at),
            "Events": self.events.iter().map(TaskEvent::to_json).collect::<Vec<_>>(),
            "TaskHandle": null,
        })
    }
}

/// Resources one task of an allocation holds.
#[derive(Clone, Debug)]
pub(crate) struct TaskResources {
    pub cpu: i64,
    pub memory_mb: i64,
    pub memory_max_mb: i64,
    pub lifecycle: Value,
}

/// One `RescheduleTracker` event.
#[derive(Clone, Debug)]
pub(crate) struct RescheduleEvent {
    pub reschedule_time: i64,
    pub prev_alloc_id: String,
    pub prev_node_id: String,
    pub delay: i64,
}

/// A `structs.Allocation`.
#[derive(Clone, Debug)]
pub(crate) struct Alloc {
    pub id: String,
    pub namespace: String,
    pub eval_id: String,
    pub name: String,
    /// The index in the group (`name` is `job.group[index]`).
    pub index: u64,
    pub node_id: String,
    pub node_name: String,
    pub job_id: String,
    /// The job as it was when the allocation was placed.
    pub job: Value,
    pub task_group: String,
    pub desired_status: String,
    pub desired_description: String,
    pub client_status: String,
    pub client_description: String,
    pub task_states: Option<BTreeMap<String, TaskState>>,
    pub previous_allocation: String,
    pub next_allocation: String,
    pub followup_eval_id: String,
    pub reschedule_events: Vec<RescheduleEvent>,
    pub metrics: Value,
    pub tasks: BTreeMap<String, TaskResources>,
    pub disk_mb: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub alloc_modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Alloc {
    /// `TerminalStatus()`: stopped or evicted by the server, or finished on the client.
    pub(crate) fn terminal(&self) -> bool {
        matches!(self.desired_status.as_str(), "stop" | "evict") || self.client_terminal()
    }

    /// `ClientTerminalStatus()`.
    pub(crate) fn client_terminal(&self) -> bool {
        matches!(self.client_status.as_str(), "complete" | "failed" | "lost")
    }

    pub(crate) fn job_version(&self) -> u64 {
        self.job["Version"].as_u64().unwrap_or(0)
    }

    pub(crate) fn job_create_index(&self) -> u64 {
        self.job["CreateIndex"].as_u64().unwrap_or(0)
    }

    pub(crate) fn cpu(&self) -> i64 {
        self.tasks.values().map(|t| t.cpu).sum()
    }

    pub(crate) fn memory_mb(&self) -> i64 {
        self.tasks.values().map(|t| t.memory_mb).sum()
    }

    /// The time the last task finished, or the last modification.
    pub(crate) fn finished_at(&self) -> i64 {
        let finished = self.task_states.iter().flat_map(|s| s.values()).map(|s| s.finished_at).max().unwrap_or(0);
        if finished == 0 { self.modify_time } else { finished }
    }

    fn task_states_json(&self) -> Value {
        match &self.task_states {
            None => Value::Null,
            Some(states) => Value::Object(states.iter().map(|(name, state)| (name.clone(), state.to_json())).collect()),
        }
    }

    fn reschedule_tracker_json(&self) -> Value {
        if self.reschedule_events.is_empty() {
            return Value::Null;
        }
        let events: Vec<Value> = self
            .reschedule_events
            .iter()
            .map(|e| {
                json!({
                    "RescheduleTime": e.reschedule_time,
                    "PrevAllocID": e.prev_alloc_id,
                    "PrevNodeID": e.prev_node_id,
                    "Delay": e.delay,
                })
            })
            .collect();
        json!({ "Events": events })
    }

    fn allocated_resources_json(&self) -> Value {
        let tasks: Map<String, Value> = self
            .tasks
            .iter()
            .map(|(name, t)| {
                let resources = json!({
                    "Cpu": { "CpuShares": t.cpu, "ReservedCores": null },
                    "Memory": { "MemoryMB": t.memory_mb, "MemoryMaxMB": t.memory_max_mb },
                    "Networks": null,
                    "Devices": null,
                });
                (name.clone(), resources)
            })
            .collect();
        let lifecycles: Map<String, Value> =
            self.tasks.iter().map(|(name, t)| (name.clone(), t.lifecycle.clone())).collect();
        json!({
            "Tasks": tasks,
            "TaskLifecycles": lifecycles,
            "Shared": { "Networks": null, "DiskMB": self.disk_mb, "Ports": null },
        })
    }

    fn desired_transition_json() -> Value {
        json!({ "Migrate": null, "Reschedule": null, "ForceReschedule": null, "NoShutdownDelay": null })
    }

    /// The full `Allocation`, as `GET /v1/allocation/:id` returns it.
    pub(crate) fn to_json(&self) -> Value {
        let legacy = |cpu: i64, memory: i64, memory_max: i64, disk: i64| {
            json!({
                "CPU": cpu, "Cores": 0, "MemoryMB": memory, "MemoryMaxMB": memory_max, "DiskMB": disk,
                "IOPS": 0, "Networks": null, "Devices": null, "NUMA": null,
            })
        };
        let task_resources: Map<String, Value> =
            self.tasks.iter().map(|(name, t)| (name.clone(), legacy(t.cpu, t.memory_mb, t.memory_max_mb, 0))).collect();
        let memory_max: i64 = self.tasks.values().map(|t| t.memory_max_mb).sum();
        json!({
            "ID": self.id,
            "Namespace": self.namespace,
            "EvalID": self.eval_id,
            "Name": self.name,
            "NodeID": self.node_id,
            "NodeName": self.node_name,
            "JobID": self.job_id,
            "Job": self.job,
            "TaskGroup": self.task_group,
            "Resources": legacy(self.cpu(), self.memory_mb(), memory_max, self.disk_mb),
            "SharedResources": legacy(0, 0, 0, self.disk_mb),
            "TaskResources": task_resources,
            "AllocatedResources": self.allocated_resources_json(),
            "Metrics": self.metrics,
            "DesiredStatus": self.desired_status,
            "DesiredDescription": self.desired_description,
            "DesiredTransition": Self::desired_transition_json(),
            "ClientStatus": self.client_status,
            "ClientDescription": self.client_description,
            "TaskStates": self.task_states_json(),
            "AllocStates": null,
            "PreviousAllocation": self.previous_allocation,
            "NextAllocation": self.next_allocation,
            "DeploymentID": "",
            "DeploymentStatus": null,
            "RescheduleTracker": self.reschedule_tracker_json(),
            "NetworkStatus": null,
            "FollowupEvalID": self.followup_eval_id,
            "PreemptedAllocations": null,
            "PreemptedByAllocation": "",
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "AllocModifyIndex": self.alloc_modify_index,
            "CreateTime": self.create_time,
            "ModifyTime": self.modify_time,
        })
    }

    /// The `AllocListStub` of list endpoints; `AllocatedResources` only with `resources=true`.
    pub(crate) fn to_stub_json(&self, with_resources: bool) -> Value {
        json!({
            "ID": self.id,
            "EvalID": self.eval_id,
            "Name": self.name,
            "Namespace": self.namespace,
            "NodeID": self.node_id,
            "NodeName": self.node_name,
            "JobID": self.job_id,
            "JobType": self.job["Type"],
            "JobVersion": self.job_version(),
            "TaskGroup": self.task_group,
            "AllocatedResources": if with_resources { self.allocated_resources_json() } else { Value::Null },
            "DesiredStatus": self.desired_status,
            "DesiredDescription": self.desired_description,
            "ClientStatus": self.client_status,
            "ClientDescription": self.client_description,
            "DesiredTransition": Self::desired_transition_json(),
            "TaskStates": self.task_states_json(),
            "DeploymentStatus": null,
            "FollowupEvalID": self.followup_eval_id,
            "NextAllocation": self.next_allocation,
            "RescheduleTracker": self.reschedule_tracker_json(),
            "PreemptedAllocations": null,
            "PreemptedByAllocation": "",
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time,
            "ModifyTime": self.modify_time,
        })
    }
}

/// A `structs.Evaluation`.
#[derive(Clone, Debug)]
pub(crate) struct Eval {
    pub id: String,
    pub namespace: String,
    pub priority: i64,
    pub kind: String,
    pub triggered_by: String,
    pub job_id: String,
    pub job_modify_index: u64,
    /// `pending`, `blocked`, `complete`, `failed` or `canceled`.
    pub status: String,
    pub status_description: String,
    /// When a delayed (follow-up) evaluation may run, Unix ns; 0 for now.
    pub wait_until: i64,
    pub next_eval: String,
    pub previous_eval: String,
    pub blocked_eval: String,
    pub failed_tg_allocs: Option<BTreeMap<String, Value>>,
    pub class_eligibility: Option<BTreeMap<String, bool>>,
    pub queued_allocations: Option<BTreeMap<String, u64>>,
    pub snapshot_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Eval {
    pub(crate) fn terminal(&self) -> bool {
        matches!(self.status.as_str(), "complete" | "failed" | "canceled")
    }

    /// The full `Evaluation`; `related` only for `GET /v1/evaluation/:id?related=true`.
    pub(crate) fn to_json(&self, related: Option<Vec<Value>>) -> Value {
        json!({
            "ID": self.id,
            "Namespace": self.namespace,
            "Priority": self.priority,
            "Type": self.kind,
            "TriggeredBy": self.triggered_by,
            "JobID": self.job_id,
            "JobModifyIndex": self.job_modify_index,
            "NodeID": "",
            "NodeModifyIndex": 0,
            "DeploymentID": "",
            "Status": self.status,
            "StatusDescription": self.status_description,
            "Wait": 0,
            "WaitUntil": rfc3339(self.wait_until),
            "NextEval": self.next_eval,
            "PreviousEval": self.previous_eval,
            "BlockedEval": self.blocked_eval,
            "RelatedEvals": related,
            "FailedTGAllocs": self.failed_tg_allocs,
            "ClassEligibility": self.class_eligibility,
            "QuotaLimitReached": "",
            "EscapedComputedClass": false,
            "AnnotatePlan": false,
            "QueuedAllocations": self.queued_allocations,
            "SnapshotIndex": self.snapshot_index,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time,
            "ModifyTime": self.modify_time,
        })
    }

    /// The `EvaluationStub` used in `RelatedEvals`.
    pub(crate) fn to_stub_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Namespace": self.namespace,
            "Priority": self.priority,
            "Type": self.kind,
            "TriggeredBy": self.triggered_by,
            "JobID": self.job_id,
            "NodeID": "",
            "DeploymentID": "",
            "Status": self.status,
            "StatusDescription": self.status_description,
            "WaitUntil": rfc3339(self.wait_until),
            "NextEval": self.next_eval,
            "PreviousEval": self.previous_eval,
            "BlockedEval": self.blocked_eval,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time,
            "ModifyTime": self.modify_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_go() {
        assert_eq!(rfc3339(0), Value::Null);
        assert_eq!(rfc3339(1_636_017_252_049_960_000), json!("2021-11-04T09:14:12.04996Z"));
        assert_eq!(rfc3339(1_636_017_252_000_000_000), json!("2021-11-04T09:14:12Z"));
    }

    #[test]
    fn killing_says_how_long_it_waits() {
        let event = TaskEvent::new("Killing").kill_timeout(5_000_000_000);
        assert_eq!(event.display_message(), "Sent interrupt. Waiting 5s before force killing");
        assert_eq!(event.details["kill_timeout"], "5s");
    }
}
