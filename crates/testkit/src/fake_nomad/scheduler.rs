//! The scheduler of a one-node cluster: it takes pending evaluations (and blocked ones that
//! freed capacity woke), reconciles the job's allocations against its groups' counts, checks
//! feasibility (datacenter, node pool, constraints, drivers) and fit (CPU, memory), and commits
//! the plan, then the evaluation, as two writes, like Nomad's worker and plan applier.
//!
//! What it mirrors: unplaceable work completes the evaluation with `FailedTGAllocs` and creates
//! a `blocked` evaluation (`queued-allocs`); failed allocations are rescheduled per the group's
//! `ReschedulePolicy`, now or through a delayed `failed-follow-up` evaluation, linking the
//! allocations with `NextAllocation`/`PreviousAllocation`; a stopped or purged job has its
//! allocations told to stop. It never runs tasks: the client loop reacts to what it writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Inner;
use super::records::{Alloc, Eval, RescheduleEvent, TaskResources, now_nanos};
use super::state::State;

/// The single client node this fake runs.
pub(crate) struct Node {
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub pool: String,
    pub class: String,
    pub attributes: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub cpu_mhz: i64,
    pub memory_mb: i64,
    pub drivers: Vec<String>,
}

/// The signals a Linux client advertises in `os.signals`.
const SIGNALS: &str = "SIGABRT,SIGALRM,SIGBUS,SIGCHLD,SIGCONT,SIGFPE,SIGHUP,SIGILL,SIGINT,SIGIO,SIGIOT,SIGKILL,\
SIGPIPE,SIGPROF,SIGQUIT,SIGSEGV,SIGSTOP,SIGSYS,SIGTERM,SIGTRAP,SIGTSTP,SIGTTIN,SIGTTOU,SIGURG,SIGUSR1,SIGUSR2,\
SIGWINCH,SIGXCPU,SIGXFSZ";

/// The Nomad version the fake claims to be.
pub(crate) const NOMAD_VERSION: &str = "1.11.1";

impl Node {
    pub(crate) fn new(datacenter: &str, cpu_mhz: u32, memory_mb: u32) -> Node {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "fake-nomad".to_owned());
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()).unwrap_or_default();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let id = uuid::Uuid::new_v4().to_string();
        let attributes: BTreeMap<String, String> = [
            ("kernel.name", "linux".to_owned()),
            ("kernel.version", kernel),
            ("os.name", "debian".to_owned()),
            ("os.signals", SIGNALS.to_owned()),
            ("cpu.arch", "amd64".to_owned()),
            ("cpu.numcores", cores.to_string()),
            ("cpu.totalcompute", cpu_mhz.to_string()),
            ("memory.totalbytes", (u64::from(memory_mb) * 1024 * 1024).to_string()),
            ("driver.docker", "1".to_owned()),
            ("driver.docker.runtimes", "runc".to_owned()),
            ("driver.docker.os_type", "linux".to_owned()),
            ("nomad.version", NOMAD_VERSION.to_owned()),
            ("unique.hostname", hostname.clone()),
            ("unique.network.ip-address", "127.0.0.1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Node {
            id,
            name: hostname,
            datacenter: datacenter.to_owned(),
            pool: "default".to_owned(),
            class: String::new(),
            attributes,
            meta: BTreeMap::new(),
            cpu_mhz: i64::from(cpu_mhz),
            memory_mb: i64::from(memory_mb),
            drivers: vec!["docker".to_owned()],
        }
    }

    /// The value of a constraint target (`${attr.kernel.name}`, `${node.unique.id}`,
    /// `${meta.x}`), or the literal itself; `None` for an attribute the node lacks.
    pub(crate) fn resolve(&self, target: &str) -> Option<String> {
        let Some(inner) = target.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
            return Some(target.to_owned());
        };
        if let Some(attr) = inner.strip_prefix("attr.") {
            return self.attributes.get(attr).cloned();
        }
        if let Some(meta) = inner.strip_prefix("meta.") {
            return self.meta.get(meta).cloned();
        }
        match inner {
            "node.unique.id" => Some(self.id.clone()),
            "node.unique.name" => Some(self.name.clone()),
            "node.datacenter" => Some(self.datacenter.clone()),
            "node.class" => Some(self.class.clone()),
            "node.pool" => Some(self.pool.clone()),
            _ => None,
        }
    }
}

/// The scheduler loop: process ready evaluations, sleep until the next delayed one or the next
/// write, stop with the fake.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut changes = inner.store.subscribe();
    loop {
        changes.borrow_and_update();
        let next = process_ready(&inner);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = sleep => {}
        }
    }
}

/// Process every evaluation that may run now; the instant the next delayed one may run.
fn process_ready(inner: &Inner) -> Option<Instant> {
    let now = now_nanos();
    let (ready, next_wait) = inner.store.read(|state| {
        let mut ready: Vec<(u64, String)> = state
            .evals
            .values()
            .filter(|e| e.status == "pending" && e.wait_until <= now)
            .map(|e| (e.create_index, e.id.clone()))
            .collect();
        ready.sort();
        let next =
            state.evals.values().filter(|e| e.status == "pending" && e.wait_until > now).map(|e| e.wait_until).min();
        (ready.into_iter().map(|(_, id)| id).collect::<Vec<_>>(), next)
    });
    let unblocked = inner.store.take_unblocked();
    for id in ready.iter().chain(unblocked.iter()) {
        process_eval(inner, id);
    }
    next_wait.map(|at| Instant::now() + Duration::from_nanos((at - now).max(0) as u64))
}

/// One allocation to place.
struct Placement {
    group: String,
    index: u64,
    previous: Option<(String, Vec<RescheduleEvent>, i64)>,
}

/// What processing an evaluation decided.
#[derive(Default)]
struct Plan {
    stops: Vec<(String, &'static str)>,
    placements: Vec<Alloc>,
    /// Old allocation -> replacement.
    links: Vec<(String, String)>,
    followups: Vec<(String, Eval)>,
    failed: BTreeMap<String, Value>,
    queued: BTreeMap<String, u64>,
}

const ALLOC_NOT_NEEDED: &str = "alloc not needed due to job update";
const ALLOC_UPDATING: &str = "alloc is being updated due to job update";
const ALLOC_RESCHEDULED: &str = "alloc was rescheduled because it failed";

fn process_eval(inner: &Inner, eval_id: &str) {
    let started = Instant::now();
    let Some((eval, plan)) = inner.store.read(|state| {
        let eval = state.evals.get(eval_id)?.clone();
        if eval.terminal() {
            return None;
        }
        let plan = reconcile(inner, state, &eval, started);
        Some((eval, plan))
    }) else {
        return;
    };
    let Plan { stops, placements, links, followups, failed, queued } = plan;
    let job_key = (eval.namespace.clone(), eval.job_id.clone());
    let snapshot_index = inner.store.write(|txn| {
        for (id, description) in &stops {
            txn.update_alloc(id, true, |alloc| {
                alloc.desired_status = "stop".into();
                alloc.desired_description = (*description).into();
            });
        }
        for alloc in placements {
            txn.insert_alloc(alloc);
        }
        for (old, new) in &links {
            txn.update_alloc(old, true, |alloc| alloc.next_allocation = new.clone());
        }
        for (alloc_id, followup) in followups {
            let followup_id = followup.id.clone();
            txn.put_eval(followup);
            txn.update_alloc(&alloc_id, true, |alloc| alloc.followup_eval_id = followup_id);
        }
        txn.set_queued(&job_key.0, &job_key.1, queued.clone());
        txn.index
    });
    inner.store.write(|txn| {
        let mut eval = eval.clone();
        eval.snapshot_index = snapshot_index;
        eval.queued_allocations = Some(queued.clone());
        let unplaced = !failed.is_empty();
        if unplaced {
            eval.failed_tg_allocs = Some(failed.clone());
            eval.class_eligibility = Some(BTreeMap::from([(String::new(), true)]));
        }
        if eval.status == "blocked" {
            // A woken blocked evaluation that still cannot place stays blocked (Nomad reblocks it).
            if !unplaced {
                eval.status = "complete".into();
                eval.status_description = String::new();
            }
            txn.put_eval(eval);
            return;
        }
        // Earlier blocked evaluations of the job are superseded by this one's outcome.
        let superseded: Vec<Eval> = txn
            .state
            .evals
            .values()
            .filter(|e| e.status == "blocked" && e.namespace == eval.namespace && e.job_id == eval.job_id)
            .cloned()
            .collect();
        for mut old in superseded {
            old.status = "canceled".into();
            old.status_description = format!("evaluation {} superseded", eval.id);
            txn.put_eval(old);
        }
        if unplaced {
            let blocked = Eval {
                id: uuid::Uuid::new_v4().to_string(),
                status: "blocked".into(),
                status_description: "created to place remaining allocations".into(),
                triggered_by: "queued-allocs".into(),
                previous_eval: eval.id.clone(),
                failed_tg_allocs: Some(failed.clone()),
                class_eligibility: Some(BTreeMap::from([(String::new(), true)])),
                snapshot_index,
                ..new_eval(&eval.namespace, &eval.job_id, &eval.kind, eval.priority, eval.job_modify_index, "")
            };
            eval.blocked_eval = blocked.id.clone();
            txn.put_eval(blocked);
        }
        eval.status = "complete".into();
        txn.put_eval(eval);
    });
}

/// A fresh pending evaluation.
pub(crate) fn new_eval(
    namespace: &str,
    job_id: &str,
    kind: &str,
    priority: i64,
    job_modify_index: u64,
    triggered_by: &str,
) -> Eval {
    Eval {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: namespace.to_owned(),
        priority,
        kind: kind.to_owned(),
        triggered_by: triggered_by.to_owned(),
        job_id: job_id.to_owned(),
        job_modify_index,
        status: "pending".into(),
        status_description: String::new(),
        wait_until: 0,
        next_eval: String::new(),
        previous_eval: String::new(),
        blocked_eval: String::new(),
        failed_tg_allocs: None,
        class_eligibility: None,
        queued_allocations: None,
        snapshot_index: 0,
        create_index: 0,
        modify_index: 0,
        create_time: 0,
        modify_time: 0,
    }
}

/// Decide the plan for `eval` against a snapshot of the state.
fn reconcile(inner: &Inner, state: &State, eval: &Eval, started: Instant) -> Plan {
    let mut plan = Plan::default();
    let record = state.job(&eval.namespace, &eval.job_id);
    let live_allocs: Vec<&Alloc> = state
        .allocs
        .values()
        .filter(|a| a.namespace == eval.namespace && a.job_id == eval.job_id && !a.terminal())
        .collect();
    let Some(record) = record.filter(|r| !r.job["Stop"].as_bool().unwrap_or(false)) else {
        // Stopped or purged: everything still meant to run is told to stop.
        for alloc in live_allocs {
            plan.stops.push((alloc.id.clone(), ALLOC_NOT_NEEDED));
        }
        if let Some(record) = record {
            for group in record.job["TaskGroups"].as_array().into_iter().flatten() {
                plan.queued.insert(group["Name"].as_str().unwrap_or_default().to_owned(), 0);
            }
        }
        return plan;
    };
    let job = &record.job;
    let job_version = job["Version"].as_u64().unwrap_or(0);
    let batch = matches!(job["Type"].as_str(), Some("batch" | "sysbatch"));
    let periodic = job["Periodic"]["Enabled"].as_bool().unwrap_or(false);
    if periodic || !job["ParameterizedJob"].is_null() {
        // Parents launch children; they place nothing themselves.
        return plan;
    }
    let now = now_nanos();
    let allocs = state.allocs_of_job(&eval.namespace, &eval.job_id, false);
    let mut usage = node_usage(state);
    let mut placements: Vec<Placement> = Vec::new();

    for group in job["TaskGroups"].as_array().into_iter().flatten() {
        let group_name = group["Name"].as_str().unwrap_or_default().to_owned();
        let count = group["Count"].as_u64().unwrap_or(0);
        let mut occupied: BTreeMap<u64, ()> = BTreeMap::new();
        for alloc in allocs.iter().filter(|a| a.task_group == group_name) {
            if !alloc.next_allocation.is_empty() {
                continue;
            }
            let current = alloc.job_version() == job_version;
            if !alloc.terminal() {
                if !current {
                    plan.stops.push((alloc.id.clone(), ALLOC_UPDATING));
                    continue;
                }
                if alloc.index >= count || occupied.contains_key(&alloc.index) {
                    plan.stops.push((alloc.id.clone(), ALLOC_NOT_NEEDED));
                    continue;
                }
                occupied.insert(alloc.index, ());
                continue;
            }
            if alloc.desired_status != "run" {
                continue;
            }
            match alloc.client_status.as_str() {
                "failed" | "lost" => match reschedule_decision(group, alloc, now) {
                    Some(delay) => {
                        let at = alloc.finished_at() + delay;
                        if at <= now {
                            placements.push(Placement {
                                group: group_name.clone(),
                                index: alloc.index,
                                previous: Some((alloc.id.clone(), alloc.reschedule_events.clone(), delay)),
                            });
                            plan.stops.push((alloc.id.clone(), ALLOC_RESCHEDULED));
                        } else if alloc.followup_eval_id.is_empty() {
                            let followup = Eval {
                                triggered_by: "failed-follow-up".into(),
                                status_description: "created for delayed rescheduling".into(),
                                wait_until: at,
                                previous_eval: eval.id.clone(),
                                ..new_eval(
                                    &eval.namespace,
                                    &eval.job_id,
                                    &eval.kind,
                                    eval.priority,
                                    eval.job_modify_index,
                                    "",
                                )
                            };
                            plan.followups.push((alloc.id.clone(), followup));
                        }
                        occupied.insert(alloc.index, ());
                    }
                    // Batch work that failed for good is done; a service must run again.
                    None if batch && current => {
                        occupied.insert(alloc.index, ());
                    }
                    None => {}
                },
                "complete" if batch && current => {
                    occupied.insert(alloc.index, ());
                }
                _ => {}
            }
        }
        for index in (0..count).filter(|i| !occupied.contains_key(i)) {
            placements.push(Placement { group: group_name.clone(), index, previous: None });
        }
        plan.queued.insert(group_name, 0);
    }

    // Place in order, each placement taking its share of the node.
    let mut failures: BTreeMap<String, (Value, u64)> = BTreeMap::new();
    for placement in placements {
        let Some(group) = job["TaskGroups"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["Name"].as_str() == Some(placement.group.as_str())))
        else {
            continue;
        };
        if let Some((_, coalesced)) = failures.get_mut(&placement.group) {
            *coalesced += 1;
            *plan.queued.entry(placement.group.clone()).or_default() += 1;
            continue;
        }
        match place(inner, job, group, &usage, started) {
            Ok((resources, metrics)) => {
                let cpu: i64 = resources.values().map(|r| r.cpu).sum();
                let memory: i64 = resources.values().map(|r| r.memory_mb).sum();
                usage.0 += cpu;
                usage.1 += memory;
                let alloc = new_alloc(inner, job, group, eval, placement.index, resources, metrics);
                let alloc = match placement.previous {
                    Some((previous_id, mut events, delay)) => {
                        events.push(RescheduleEvent {
                            reschedule_time: now,
                            prev_alloc_id: previous_id.clone(),
                            prev_node_id: inner.node.id.clone(),
                            delay,
                        });
                        plan.links.push((previous_id.clone(), alloc.id.clone()));
                        Alloc { previous_allocation: previous_id, reschedule_events: events, ..alloc }
                    }
                    None => alloc,
                };
                plan.placements.push(alloc);
            }
            Err(metrics) => {
                // A failed placement keeps its old allocation running (it is not stopped).
                if let Some((previous_id, _, _)) = &placement.previous {
                    plan.stops.retain(|(id, _)| id != previous_id);
                }
                *plan.queued.entry(placement.group.clone()).or_default() += 1;
                failures.insert(placement.group.clone(), (metrics, 0));
            }
        }
    }
    for (group, (mut metrics, coalesced)) in failures {
        metrics["CoalescedFailures"] = json!(coalesced);
        plan.failed.insert(group, metrics);
    }
    plan
}

/// CPU and memory held on the node by allocations that are not terminal.
fn node_usage(state: &State) -> (i64, i64) {
    state.allocs.values().filter(|a| !a.terminal()).fold((0, 0), |(cpu, mem), a| (cpu + a.cpu(), mem + a.memory_mb()))
}

/// The delay before rescheduling `alloc`, or `None` if its group's policy forbids it.
pub(crate) fn reschedule_decision(group: &Value, alloc: &Alloc, now: i64) -> Option<i64> {
    let policy = &group["ReschedulePolicy"];
    if policy.is_null() {
        return None;
    }
    let attempts = policy["Attempts"].as_i64().unwrap_or(0);
    let unlimited = policy["Unlimited"].as_bool().unwrap_or(false);
    let interval = policy["Interval"].as_i64().unwrap_or(0);
    let delay = policy["Delay"].as_i64().unwrap_or(0);
    let max_delay = policy["MaxDelay"].as_i64().unwrap_or(0);
    if !unlimited {
        if attempts <= 0 {
            return None;
        }
        let recent = alloc.reschedule_events.iter().filter(|e| e.reschedule_time > now - interval).count();
        if recent as i64 >= attempts {
            return None;
        }
    }
    let last = alloc.reschedule_events.last().map(|e| e.delay);
    let next = match (policy["DelayFunction"].as_str().unwrap_or("constant"), last) {
        ("exponential", Some(last)) => last.saturating_mul(2),
        ("fibonacci", Some(last)) => {
            let before = alloc.reschedule_events.iter().rev().nth(1).map(|e| e.delay).unwrap_or(0);
            if before == 0 { last } else { last + before }
        }
        _ => delay,
    };
    Some(if max_delay > 0 { next.min(max_delay) } else { next })
}

/// Feasibility and fit of one group on the node: the resources it takes and the metrics of a
/// placement, or the metrics of the failure.
fn place(
    inner: &Inner,
    job: &Value,
    group: &Value,
    usage: &(i64, i64),
    started: Instant,
) -> Result<(BTreeMap<String, TaskResources>, Value), Value> {
    let node = &inner.node;
    let datacenters: Vec<String> =
        job["Datacenters"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_owned)).collect();
    let pool_matches = job["NodePool"].as_str().is_none_or(|p| p == node.pool || p == "all");
    let dc_matches = datacenters.iter().any(|pattern| glob(pattern, &node.datacenter));
    let mut nodes_available = serde_json::Map::new();
    for dc in datacenters.iter().filter(|d| !d.contains('*')) {
        nodes_available.insert(dc.clone(), json!(0));
    }
    if dc_matches && pool_matches {
        nodes_available.insert(node.datacenter.clone(), json!(1));
    }
    let mut metrics = json!({
        "NodesInPool": if pool_matches { 1 } else { 0 },
        "NodesEvaluated": 0,
        "NodesFiltered": 0,
        "NodesAvailable": nodes_available,
        "ClassFiltered": null,
        "ConstraintFiltered": null,
        "NodesExhausted": 0,
        "ClassExhausted": null,
        "DimensionExhausted": null,
        "QuotaExhausted": null,
        "ResourcesExhausted": null,
        "ScoreMetaData": null,
        "Scores": null,
        "AllocationTime": 0,
        "CoalescedFailures": 0,
    });
    let finish = |mut metrics: Value| {
        metrics["AllocationTime"] = json!(started.elapsed().as_nanos() as i64);
        metrics
    };
    if !(dc_matches && pool_matches) {
        return Err(finish(metrics));
    }
    metrics["NodesEvaluated"] = json!(1);

    let tasks: Vec<&Value> = group["Tasks"].as_array().into_iter().flatten().collect();
    let mut constraints: Vec<&Value> = Vec::new();
    constraints.extend(job["Constraints"].as_array().into_iter().flatten());
    constraints.extend(group["Constraints"].as_array().into_iter().flatten());
    for task in &tasks {
        constraints.extend(task["Constraints"].as_array().into_iter().flatten());
    }
    let missing_driver = tasks.iter().any(|t| !node.drivers.iter().any(|d| t["Driver"].as_str() == Some(d.as_str())));
    let failed_constraint = constraints.iter().find(|c| !constraint_holds(node, c));
    let filtered = if missing_driver {
        Some("missing drivers".to_owned())
    } else {
        failed_constraint.map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            format!("{} {} {}", s("LTarget"), s("Operand"), s("RTarget"))
        })
    };
    if let Some(reason) = filtered {
        metrics["NodesFiltered"] = json!(1);
        metrics["ConstraintFiltered"] = json!({ reason: 1 });
        return Err(finish(metrics));
    }

    let mut resources = BTreeMap::new();
    for task in &tasks {
        let r = &task["Resources"];
        resources.insert(
            task["Name"].as_str().unwrap_or_default().to_owned(),
            TaskResources {
                cpu: r["CPU"].as_i64().unwrap_or(0),
                memory_mb: r["MemoryMB"].as_i64().unwrap_or(0),
                memory_max_mb: r["MemoryMaxMB"].as_i64().unwrap_or(0),
                lifecycle: task["Lifecycle"].clone(),
            },
        );
    }
    let cpu: i64 = resources.values().map(|r| r.cpu).sum();
    let memory: i64 = resources.values().map(|r| r.memory_mb).sum();
    let exhausted = if usage.0 + cpu > node.cpu_mhz {
        Some("cpu")
    } else if usage.1 + memory > node.memory_mb {
        Some("memory")
    } else {
        None
    };
    if let Some(dimension) = exhausted {
        metrics["NodesExhausted"] = json!(1);
        metrics["DimensionExhausted"] = json!({ dimension: 1 });
        return Err(finish(metrics));
    }
    // Nomad's binpack score: fuller nodes score higher.
    let free_cpu = 1.0 - (usage.0 + cpu) as f64 / node.cpu_mhz.max(1) as f64;
    let free_mem = 1.0 - (usage.1 + memory) as f64 / node.memory_mb.max(1) as f64;
    let score = ((20.0 - (10f64.powf(free_cpu) + 10f64.powf(free_mem))) / 18.0).clamp(0.0, 1.0);
    metrics["Scores"] = json!({ format!("{}.binpack", node.id): score });
    metrics["ScoreMetaData"] = json!([{
        "NodeID": node.id,
        "Scores": { "binpack": score, "job-anti-affinity": 0.0, "node-affinity": 0.0, "node-reschedule-penalty": 0.0 },
        "NormScore": score,
    }]);
    Ok((resources, finish(metrics)))
}

fn new_alloc(
    inner: &Inner,
    job: &Value,
    group: &Value,
    eval: &Eval,
    index: u64,
    tasks: BTreeMap<String, TaskResources>,
    metrics: Value,
) -> Alloc {
    // Stamped again when the plan is committed; set here so the record is whole.
    let now = now_nanos();
    let job_id = job["ID"].as_str().unwrap_or_default().to_owned();
    let group_name = group["Name"].as_str().unwrap_or_default().to_owned();
    Alloc {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: eval.namespace.clone(),
        eval_id: eval.id.clone(),
        name: format!("{job_id}.{group_name}[{index}]"),
        index,
        node_id: inner.node.id.clone(),
        node_name: inner.node.name.clone(),
        job_id,
        job: job.clone(),
        task_group: group_name,
        desired_status: "run".into(),
        desired_description: String::new(),
        client_status: "pending".into(),
        client_description: String::new(),
        task_states: None,
        previous_allocation: String::new(),
        next_allocation: String::new(),
        followup_eval_id: String::new(),
        reschedule_events: Vec::new(),
        metrics,
        tasks,
        disk_mb: group["EphemeralDisk"]["SizeMB"].as_i64().unwrap_or(300),
        create_index: 0,
        modify_index: 0,
        alloc_modify_index: 0,
        create_time: now,
        modify_time: now,
    }
}

/// `*` matches any run of characters, as in Nomad's datacenter patterns.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(tail) = text.strip_prefix(prefix) else { return false };
            (0..=tail.len()).filter(|i| tail.is_char_boundary(*i)).any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// Whether a constraint holds on the node. `distinct_*` always hold: there is one node and
/// nothing else to spread over.
fn constraint_holds(node: &Node, constraint: &Value) -> bool {
    let operand = constraint["Operand"].as_str().unwrap_or("=");
    let left = node.resolve(constraint["LTarget"].as_str().unwrap_or_default());
    let right = node.resolve(constraint["RTarget"].as_str().unwrap_or_default());
    let both = || left.clone().zip(right.clone());
    match operand {
        "=" | "==" | "is" => left.is_some() && left == right,
        "!=" | "not" => left != right,
        "<" | "<=" | ">" | ">=" => both().is_some_and(|(l, r)| {
            let ordering = match (l.parse::<f64>(), r.parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(l.cmp(&r)),
            };
            match (operand, ordering) {
                ("<", Some(o)) => o.is_lt(),
                ("<=", Some(o)) => o.is_le(),
                (">", Some(o)) => o.is_gt(),
                (">=", Some(o)) => o.is_ge(),
                _ => false,
            }
        }),
        "is_set" => left.is_some(),
        "is_not_set" => left.is_none(),
        "regexp" => both().is_some_and(|(l, r)| regex::Regex::new(&r).is_ok_and(|re| re.is_match(&l))),
        "version" | "semver" => both().is_some_and(|(l, r)| version_matches(&l, &r)),
        "set_contains" | "set_contains_all" | "set_contains_any" => both().is_some_and(|(l, r)| {
            let have: Vec<&str> = l.split(',').map(str::trim).collect();
            let mut want = r.split(',').map(str::trim);
            if operand == "set_contains_any" {
                want.any(|w| have.contains(&w))
            } else {
                want.all(|w| have.contains(&w))
            }
        }),
        "distinct_hosts" | "distinct_property" => true,
        _ => false,
    }
}

/// A simplified go-version constraint check: `>= 1.2, < 2.0` against `1.5.3`.
fn version_matches(version: &str, constraint: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim()
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or_default()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let have = parse(version);
    constraint.split(',').all(|part| {
        let part = part.trim();
        let op_len = part.find(|c: char| c.is_ascii_digit() || c == 'v').unwrap_or(part.len());
        let (op, want) = (part[..op_len].trim(), parse(&part[op_len..]));
        let len = have.len().max(want.len());
        let pad = |v: &Vec<u64>| (0..len).map(|i| v.get(i).copied().unwrap_or(0)).collect::<Vec<_>>();
        let ordering = pad(&have).cmp(&pad(&want));
        match op {
            "" | "=" => ordering.is_eq(),
            "!=" => !ordering.is_eq(),
            ">" => ordering.is_gt(),
            ">=" => ordering.is_ge(),
            "<" => ordering.is_lt(),
            "<=" => ordering.is_le(),
            "~>" => ordering.is_ge() && have.first() == want.first(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datacenter_patterns() {
        assert!(glob("*", "dc1"));
        assert!(glob("dc*", "dc1"));
        assert!(!glob("nowhere", "dc1"));
    }

    #[test]
    fn versions() {
        assert!(version_matches("1.11.1", ">= 1.2, < 2.0"));
        assert!(!version_matches("1.11.1", "< 1.5"));
    }
}
