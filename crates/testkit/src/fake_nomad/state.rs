//! The fake's state store: jobs, allocations and evaluations, a raft-like index that grows by
//! one on every write, per-table indexes, job status and summaries, and the buffer the event
//! stream reads.
//!
//! Every change goes through [`Store::write`], which runs a closure on a [`Txn`] under one lock,
//! then recomputes the status and summary of every job the closure touched (as Nomad's state
//! store does on each alloc or eval upsert) and wakes blocking queries through a watch channel.
//! Readers take the lock briefly through [`Store::read`]. Nothing here starts tasks or decides
//! placements: the scheduler and the client loop watch the store and act.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::records::{Alloc, Eval, now_nanos};

/// Jobs are keyed by namespace and ID.
pub(crate) type JobKey = (String, String);

/// How many raft entries of events the event stream can replay.
const EVENT_BUFFER: usize = 4096;

/// A stored job: the server's view of it and the counters of its summary.
pub(crate) struct JobRecord {
    /// The canonical job, with the server-set fields (`Status`, `Version`, indexes) current.
    pub job: Value,
    /// Allocations each group is still waiting to place (the summary's `Queued`).
    pub queued: BTreeMap<String, u64>,
    pub summary: Summary,
}

impl JobRecord {
    pub(crate) fn create_index(&self) -> u64 {
        self.job["CreateIndex"].as_u64().unwrap_or(0)
    }
}

/// One group's counts in a `JobSummary`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct GroupSummary {
    pub queued: u64,
    pub complete: u64,
    pub failed: u64,
    pub running: u64,
    pub starting: u64,
    pub lost: u64,
    pub unknown: u64,
}

/// A `structs.JobSummary` (children are always zero: this fake dispatches no children).
#[derive(Clone, Debug, Default)]
pub(crate) struct Summary {
    pub groups: BTreeMap<String, GroupSummary>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Summary {
    pub(crate) fn to_json(&self, job_id: &str, namespace: &str) -> Value {
        let groups: serde_json::Map<String, Value> = self
            .groups
            .iter()
            .map(|(name, g)| {
                let counts = json!({
                    "Queued": g.queued, "Complete": g.complete, "Failed": g.failed, "Running": g.running,
                    "Starting": g.starting, "Lost": g.lost, "Unknown": g.unknown,
                });
                (name.clone(), counts)
            })
            .collect();
        json!({
            "JobID": job_id,
            "Namespace": namespace,
            "Summary": groups,
            "Children": { "Pending": 0, "Running": 0, "Dead": 0 },
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

/// The index each table last changed at.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tables {
    pub jobs: u64,
    pub allocs: u64,
    pub evals: u64,
    pub job_summary: u64,
}

/// The events one write produced, for the event stream.
pub(crate) struct EventBatch {
    pub index: u64,
    pub events: Vec<Value>,
}

pub(crate) struct State {
    pub index: u64,
    pub tables: Tables,
    pub jobs: BTreeMap<JobKey, JobRecord>,
    pub allocs: BTreeMap<String, Alloc>,
    pub evals: BTreeMap<String, Eval>,
    /// When each job ID was registered, in Unix nanoseconds (a test and benchmark hook).
    pub registrations: BTreeMap<String, Vec<i64>>,
    /// Blocked evaluations that capacity freed since the scheduler last looked.
    pub unblocked: BTreeSet<String>,
    pub events: VecDeque<EventBatch>,
}

impl State {
    pub(crate) fn job(&self, namespace: &str, id: &str) -> Option<&JobRecord> {
        self.jobs.get(&(namespace.to_owned(), id.to_owned()))
    }

    /// `AllocsByJob`: without `all`, allocations of an older job with the same ID (another
    /// create index) are hidden; with no job stored, all are listed.
    pub(crate) fn allocs_of_job(&self, namespace: &str, id: &str, all: bool) -> Vec<&Alloc> {
        let create_index = self.job(namespace, id).map(JobRecord::create_index);
        let mut allocs: Vec<&Alloc> = self
            .allocs
            .values()
            .filter(|a| a.namespace == namespace && a.job_id == id)
            .filter(|a| all || create_index.is_none_or(|ci| a.job_create_index() == ci))
            .collect();
        allocs.sort_by_key(|a| (a.create_index, a.id.clone()));
        allocs
    }

    pub(crate) fn evals_of_job(&self, namespace: &str, id: &str) -> Vec<&Eval> {
        let mut evals: Vec<&Eval> =
            self.evals.values().filter(|e| e.namespace == namespace && e.job_id == id).collect();
        evals.sort_by_key(|e| (e.create_index, e.id.clone()));
        evals
    }

    /// `getJobStatus`.
    fn job_status(&self, record: &JobRecord) -> &'static str {
        let job = &record.job;
        let namespace = job["Namespace"].as_str().unwrap_or_default();
        let id = job["ID"].as_str().unwrap_or_default();
        let stopped = job["Stop"].as_bool().unwrap_or(false);
        let periodic = job["Periodic"]["Enabled"].as_bool().unwrap_or(false);
        if job["Type"] == "system" || !job["ParameterizedJob"].is_null() || periodic {
            return if stopped { "dead" } else { "running" };
        }
        let allocs = self.allocs_of_job(namespace, id, false);
        if allocs.iter().any(|a| !a.terminal()) {
            return "running";
        }
        let evals = self.evals_of_job(namespace, id);
        if evals.iter().any(|e| !e.terminal()) {
            return "pending";
        }
        if !evals.is_empty() || !allocs.is_empty() { "dead" } else { "pending" }
    }

    fn group_summaries(&self, record: &JobRecord) -> BTreeMap<String, GroupSummary> {
        let job = &record.job;
        let namespace = job["Namespace"].as_str().unwrap_or_default();
        let id = job["ID"].as_str().unwrap_or_default();
        let mut groups: BTreeMap<String, GroupSummary> = BTreeMap::new();
        for group in job["TaskGroups"].as_array().into_iter().flatten() {
            let name = group["Name"].as_str().unwrap_or_default().to_owned();
            let queued = record.queued.get(&name).copied().unwrap_or(0);
            groups.insert(name, GroupSummary { queued, ..GroupSummary::default() });
        }
        for alloc in self.allocs_of_job(namespace, id, false) {
            let group = groups.entry(alloc.task_group.clone()).or_default();
            match alloc.client_status.as_str() {
                "pending" => group.starting += 1,
                "running" => group.running += 1,
                "complete" => group.complete += 1,
                "failed" => group.failed += 1,
                "lost" => group.lost += 1,
                _ => group.unknown += 1,
            }
        }
        groups
    }
}

/// One write in progress: the state, the index it will commit at, and what it touched.
pub(crate) struct Txn<'a> {
    pub state: &'a mut State,
    pub index: u64,
    touched: BTreeSet<JobKey>,
    events: Vec<Value>,
    freed_capacity: bool,
}

impl Txn<'_> {
    /// Mark a job whose status and summary must be recomputed at commit.
    pub(crate) fn touch(&mut self, namespace: &str, id: &str) {
        self.touched.insert((namespace.to_owned(), id.to_owned()));
    }

    fn event(&mut self, topic: &str, kind: &str, key: &str, namespace: &str, filter_keys: Value, payload: Value) {
        self.events.push(json!({
            "Topic": topic,
            "Type": kind,
            "Key": key,
            "Namespace": namespace,
            "FilterKeys": filter_keys,
            "Index": self.index,
            "Payload": payload,
        }));
    }

    fn alloc_event(&mut self, kind: &str, alloc: &Alloc) {
        let mut payload = alloc.to_json();
        // The event stream strips the job from allocation payloads.
        payload["Job"] = Value::Null;
        let filter_keys = json!([alloc.job_id, ""]);
        let (id, namespace) = (alloc.id.clone(), alloc.namespace.clone());
        self.event("Allocation", kind, &id, &namespace, filter_keys, json!({ "Allocation": payload }));
    }

    /// Store a job (new or a new version), keeping its summary.
    pub(crate) fn put_job(&mut self, job: Value, kind: &str) {
        let namespace = job["Namespace"].as_str().unwrap_or_default().to_owned();
        let id = job["ID"].as_str().unwrap_or_default().to_owned();
        let key = (namespace.clone(), id.clone());
        self.event("Job", kind, &id, &namespace, Value::Null, json!({ "Job": job.clone() }));
        match self.state.jobs.get_mut(&key) {
            Some(record) => record.job = job,
            None => {
                let summary = Summary { create_index: self.index, modify_index: self.index, ..Summary::default() };
                self.state.jobs.insert(key, JobRecord { job, queued: BTreeMap::new(), summary });
                self.state.tables.job_summary = self.index;
            }
        }
        self.state.tables.jobs = self.index;
        self.touch(&namespace, &id);
    }

    /// Remove a job at once (purge); its allocations and evaluations stay.
    pub(crate) fn delete_job(&mut self, namespace: &str, id: &str) {
        if let Some(record) = self.state.jobs.remove(&(namespace.to_owned(), id.to_owned())) {
            self.event("Job", "JobDeregistered", id, namespace, Value::Null, json!({ "Job": record.job }));
            self.state.tables.jobs = self.index;
            self.state.tables.job_summary = self.index;
        }
    }

    pub(crate) fn set_queued(&mut self, namespace: &str, id: &str, queued: BTreeMap<String, u64>) {
        if let Some(record) = self.state.jobs.get_mut(&(namespace.to_owned(), id.to_owned())) {
            record.queued = queued;
        }
        self.touch(namespace, id);
    }

    /// Insert or replace an evaluation, stamping its indexes.
    pub(crate) fn put_eval(&mut self, mut eval: Eval) {
        let now = now_nanos();
        if !self.state.evals.contains_key(&eval.id) {
            eval.create_index = self.index;
            eval.create_time = now;
        }
        eval.modify_index = self.index;
        eval.modify_time = now;
        self.state.tables.evals = self.index;
        self.touch(&eval.namespace.clone(), &eval.job_id.clone());
        let filter_keys = json!([eval.job_id, ""]);
        let (id, namespace) = (eval.id.clone(), eval.namespace.clone());
        self.event(
            "Evaluation",
            "EvaluationUpdated",
            &id,
            &namespace,
            filter_keys,
            json!({ "Evaluation": eval.to_json(None) }),
        );
        self.state.evals.insert(eval.id.clone(), eval);
    }

    /// Insert a newly placed allocation (a plan result).
    pub(crate) fn insert_alloc(&mut self, mut alloc: Alloc) {
        let now = now_nanos();
        alloc.create_index = self.index;
        alloc.modify_index = self.index;
        alloc.alloc_modify_index = self.index;
        alloc.create_time = now;
        alloc.modify_time = now;
        self.state.tables.allocs = self.index;
        self.touch(&alloc.namespace.clone(), &alloc.job_id.clone());
        self.alloc_event("PlanResult", &alloc);
        self.state.allocs.insert(alloc.id.clone(), alloc);
    }

    /// Change an allocation. `by_server` also moves `AllocModifyIndex` (desired state, links),
    /// which client updates (task states) do not. Returns false if there is no such allocation.
    pub(crate) fn update_alloc(&mut self, id: &str, by_server: bool, change: impl FnOnce(&mut Alloc)) -> bool {
        let index = self.index;
        let Some(alloc) = self.state.allocs.get_mut(id) else { return false };
        let was_terminal = alloc.terminal();
        change(alloc);
        alloc.modify_index = index;
        alloc.modify_time = now_nanos();
        if by_server {
            alloc.alloc_modify_index = index;
        }
        let alloc = alloc.clone();
        if !was_terminal && alloc.terminal() {
            self.freed_capacity = true;
        }
        self.state.tables.allocs = index;
        self.touch(&alloc.namespace, &alloc.job_id);
        let kind = if by_server { "AllocationUpdateDesiredStatus" } else { "AllocationUpdated" };
        self.alloc_event(kind, &alloc);
        true
    }

    /// Recompute what depends on the touched jobs, and record the events.
    fn commit(mut self) {
        for key in std::mem::take(&mut self.touched) {
            let Some(record) = self.state.jobs.get(&key) else { continue };
            let status = self.state.job_status(record);
            let groups = self.state.group_summaries(record);
            let index = self.index;
            let Some(record) = self.state.jobs.get_mut(&key) else { continue };
            if record.job["Status"] != status {
                record.job["Status"] = json!(status);
                record.job["ModifyIndex"] = json!(index);
                self.state.tables.jobs = index;
            }
            if record.summary.groups != groups {
                record.summary.groups = groups;
                record.summary.modify_index = index;
                self.state.tables.job_summary = index;
            }
        }
        if self.freed_capacity {
            let blocked: Vec<String> =
                self.state.evals.values().filter(|e| e.status == "blocked").map(|e| e.id.clone()).collect();
            self.state.unblocked.extend(blocked);
        }
        if !self.events.is_empty() {
            if self.state.events.len() == EVENT_BUFFER {
                self.state.events.pop_front();
            }
            let events = std::mem::take(&mut self.events);
            self.state.events.push_back(EventBatch { index: self.index, events });
        }
    }
}

/// The state behind a lock, and the channel that announces each new index.
pub(crate) struct Store {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Store {
    pub(crate) fn new() -> Store {
        let state = State {
            // A dev agent has written a few entries (its node, its scheduler config) by the
            // time anyone asks; start past zero so index 0 always means "no index".
            index: 1,
            tables: Tables { jobs: 1, allocs: 1, evals: 1, job_summary: 1 },
            jobs: BTreeMap::new(),
            allocs: BTreeMap::new(),
            evals: BTreeMap::new(),
            registrations: BTreeMap::new(),
            unblocked: BTreeSet::new(),
            events: VecDeque::new(),
        };
        Store { state: Mutex::new(state), changed: watch::channel(1).0 }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the fake; the data is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// One raft entry: the index grows by one, `f` changes the state, dependents are
    /// recomputed, and waiters wake.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        match self.try_write(|txn| Ok::<R, std::convert::Infallible>(f(txn))) {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    /// A write that may be refused: when `f` returns an error nothing is committed and the
    /// index does not move. `f` must check before it changes anything.
    pub(crate) fn try_write<R, E>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>) -> Result<R, E> {
        let (result, index) = {
            let mut state = self.lock();
            let index = state.index + 1;
            let mut txn =
                Txn { state: &mut state, index, touched: BTreeSet::new(), events: Vec::new(), freed_capacity: false };
            let result = f(&mut txn)?;
            txn.state.index = index;
            txn.commit();
            (result, index)
        };
        self.changed.send_replace(index);
        Ok(result)
    }

    /// Blocked evaluations that freed capacity woke, for the scheduler to retry. Not a raft
    /// write: Nomad keeps this in its blocked-evals tracker, outside the state store.
    pub(crate) fn take_unblocked(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().unblocked).into_iter().collect()
    }

    /// A receiver that sees every new index (blocking queries, scheduler, client, streams).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
