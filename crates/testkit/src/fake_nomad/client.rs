//! The fake's client node: it watches the store for allocations placed on it, runs each in an
//! alloc runner (task dirs, lifecycle phases, sibling failure) and each task in a task runner
//! (templates, driver, restart policy, kill), and reports back task states and events as
//! client updates: `ClientStatus` is derived from task states exactly as Nomad's client does.
//!
//! A task's life, in events: `Received`, `Task Setup`, `Driver` (when pulling), `Started`,
//! `Terminated`, then `Restarting` or `Not Restarting` per the restart policy; on a stop:
//! `Killing`, `Terminated`, `Killed`. A template this fake cannot render keeps the task pending
//! with a `Template` event (`Missing: ...`) until it is stopped. A failed allocation that its
//! group's reschedule policy allows gets an `alloc-failure` evaluation in the same write.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::driver::{self, Prepared, TaskPaths};
use super::interpolate::replace_env;
use super::records::{Alloc, TaskEvent, TaskState, now_nanos};
use super::scheduler::{new_eval, reschedule_decision};

pub(crate) const REASON_WITHIN_POLICY: &str = "Restart within policy";
const REASON_NO_RESTARTS: &str = "Policy allows no restarts";
const REASON_UNRECOVERABLE: &str = "Error was unrecoverable";
const REASON_DELAY: &str = "Exceeded allowed attempts, applying a delay";
/// The client's `max_kill_timeout` default.
const MAX_KILL_TIMEOUT: i64 = 30_000_000_000;

/// A running allocation, as the client loop tracks it.
struct Runner {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// The client loop: start runners for new allocations, stop those the server wants stopped.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut changes = inner.store.subscribe();
    let mut runners: HashMap<String, Runner> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let (start, stop) = inner.store.read(|state| {
            let mut start = Vec::new();
            let mut stop = Vec::new();
            for alloc in state.allocs.values().filter(|a| a.node_id == inner.node.id) {
                let known = runners.contains_key(&alloc.id);
                if alloc.desired_status == "run" && !alloc.client_terminal() && !known && alloc.task_states.is_none() {
                    start.push(alloc.clone());
                } else if alloc.desired_status != "run" && known {
                    stop.push(alloc.id.clone());
                }
            }
            (start, stop)
        });
        for alloc in start {
            let token = inner.shutdown.child_token();
            let id = alloc.id.clone();
            let handle = tokio::spawn(run_alloc(inner.clone(), alloc, token.clone()));
            runners.insert(id, Runner { stop: token, handle });
        }
        for id in stop {
            if let Some(runner) = runners.get(&id) {
                runner.stop.cancel();
            }
        }
        runners.retain(|_, runner| !runner.handle.is_finished());
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// Why a task is being killed.
#[derive(Clone)]
enum KillCause {
    Stop,
    SiblingFailed(String),
}

/// What a task runner needs, shared by its restarts.
struct TaskCtx {
    inner: Arc<Inner>,
    alloc: Alloc,
    task: Value,
    group: Value,
    name: String,
    paths: TaskPaths,
    kill: CancellationToken,
    cause: Arc<Mutex<Option<KillCause>>>,
}

/// Run one allocation to its end.
async fn run_alloc(inner: Arc<Inner>, alloc: Alloc, stop: CancellationToken) {
    let group = alloc.job["TaskGroups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["Name"].as_str() == Some(alloc.task_group.as_str())))
        .cloned()
        .unwrap_or(Value::Null);
    let tasks: Vec<Value> = group["Tasks"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = tasks.iter().map(|t| t["Name"].as_str().unwrap_or_default().to_owned()).collect();
    let received = inner.store.write(|txn| {
        txn.update_alloc(&alloc.id, false, |a| {
            let mut states = BTreeMap::new();
            for name in &names {
                let mut state = TaskState::pending();
                state.push(TaskEvent::new("Received"));
                states.insert(name.clone(), state);
            }
            a.task_states = Some(states);
            derive_client_status(a);
        })
    });
    if !received {
        return;
    }

    let alloc_dir = inner.config.data_dir.join("allocs").join(&alloc.id);
    let made = inner.while_running(|| {
        let mut setup_error = None;
        for dir in ["alloc/logs", "alloc/data", "alloc/tmp"] {
            if let Err(e) = std::fs::create_dir_all(alloc_dir.join(dir)) {
                setup_error = Some(format!("failed to build alloc directory: {e}"));
            }
        }
        for name in &names {
            for dir in ["local", "secrets", "tmp", "private", "home"] {
                if let Err(e) = std::fs::create_dir_all(alloc_dir.join(name).join(dir)) {
                    setup_error = Some(format!("failed to build task directory for {name:?}: {e}"));
                }
            }
        }
        setup_error
    });
    let Some(setup_error) = made else { return };
    let mut ctxs: Vec<Arc<TaskCtx>> = Vec::new();
    for (task, name) in tasks.iter().zip(&names) {
        let logs = alloc_dir.join("alloc/logs");
        ctxs.push(Arc::new(TaskCtx {
            inner: inner.clone(),
            alloc: alloc.clone(),
            task: task.clone(),
            group: group.clone(),
            name: name.clone(),
            paths: TaskPaths {
                alloc_dir: alloc_dir.clone(),
                task_dir: alloc_dir.join(name),
                stdout: logs.join(format!("{name}.stdout.0")),
                stderr: logs.join(format!("{name}.stderr.0")),
            },
            kill: stop.child_token(),
            cause: Arc::new(Mutex::new(None)),
        }));
    }
    if let Some(error) = setup_error {
        for ctx in &ctxs {
            ctx.update(|s| {
                s.push(TaskEvent::new("Setup Failure").setup_error(&error).fails_task());
                s.state = "dead".into();
                s.failed = true;
                s.finished_at = now_nanos();
            });
        }
        return;
    }

    let hook = |ctx: &TaskCtx| ctx.task["Lifecycle"]["Hook"].as_str().unwrap_or_default().to_owned();
    let sidecar = |ctx: &TaskCtx| ctx.task["Lifecycle"]["Sidecar"].as_bool().unwrap_or(false);
    // Prestart tasks that are not sidecars run to completion before the main tasks start.
    let blocking_prestart = |ctx: &TaskCtx| hook(ctx) == "prestart" && !sidecar(ctx);
    let prestart: Vec<_> = ctxs.iter().filter(|c| blocking_prestart(c)).cloned().collect();
    let main: Vec<_> = ctxs.iter().filter(|c| !blocking_prestart(c) && hook(c) != "poststop").cloned().collect();
    let poststop: Vec<_> = ctxs.iter().filter(|c| hook(c) == "poststop").cloned().collect();

    // A stop cancels every task's token (they are children of `stop`); each runner then tells
    // its own story of the kill.
    let prestart_failed = run_phase(&prestart, &[]).await.is_some();
    if prestart_failed || stop.is_cancelled() {
        for ctx in main.iter().chain(&poststop) {
            ctx.never_ran();
        }
        return;
    }
    let sidecars: Vec<_> = main.iter().filter(|c| sidecar(c)).cloned().collect();
    run_phase(&main, &sidecars).await;
    if stop.is_cancelled() {
        for ctx in &poststop {
            ctx.never_ran();
        }
        return;
    }
    run_phase(&poststop, &[]).await;
}

/// Run tasks together. When one fails for good its siblings are killed; when every task that
/// is not in `sidecars` is done, the sidecars are stopped. The failed task's name, if any.
async fn run_phase(tasks: &[Arc<TaskCtx>], sidecars: &[Arc<TaskCtx>]) -> Option<String> {
    let mut set = tokio::task::JoinSet::new();
    for ctx in tasks {
        let ctx = ctx.clone();
        set.spawn(async move {
            let failed = run_task(&ctx).await;
            (ctx.name.clone(), failed)
        });
    }
    let mains = tasks.len() - sidecars.len();
    let mut mains_done = 0;
    let mut failed = None;
    while let Some(result) = set.join_next().await {
        let Ok((name, task_failed)) = result else { continue };
        if !sidecars.iter().any(|s| s.name == name) {
            mains_done += 1;
        }
        if task_failed && failed.is_none() {
            failed = Some(name.clone());
            for ctx in tasks.iter().filter(|c| c.name != name) {
                ctx.kill_with(KillCause::SiblingFailed(name.clone()));
            }
        }
        if mains_done == mains {
            for ctx in sidecars {
                ctx.kill_with(KillCause::Stop);
            }
        }
    }
    failed
}

impl TaskCtx {
    /// A client update of this task's state.
    fn update(&self, change: impl FnOnce(&mut TaskState)) {
        let name = self.name.clone();
        let id = self.alloc.id.clone();
        let group = self.group.clone();
        self.inner.store.write(|txn| {
            let mut became_failed = false;
            let mut reschedulable = None;
            txn.update_alloc(&id, false, |alloc| {
                let before = alloc.client_status.clone();
                if let Some(state) = alloc.task_states.as_mut().and_then(|states| states.get_mut(&name)) {
                    change(state);
                }
                derive_client_status(alloc);
                became_failed = before != "failed" && alloc.client_status == "failed";
                if became_failed && alloc.desired_status == "run" && alloc.next_allocation.is_empty() {
                    reschedulable = reschedule_decision(&group, alloc, now_nanos()).map(|_| alloc.clone());
                }
            });
            // Nomad's Node.UpdateAlloc creates the evaluation in the same raft entry.
            if let Some(alloc) = reschedulable {
                let job = txn.state.job(&alloc.namespace, &alloc.job_id).map(|r| r.job.clone());
                if let Some(job) = job {
                    let eval = new_eval(
                        &alloc.namespace,
                        &alloc.job_id,
                        job["Type"].as_str().unwrap_or("batch"),
                        job["Priority"].as_i64().unwrap_or(50),
                        job["JobModifyIndex"].as_u64().unwrap_or(0),
                        "alloc-failure",
                    );
                    txn.put_eval(eval);
                }
            }
        });
    }

    fn emit(&self, event: TaskEvent) {
        self.update(|s| s.push(event));
    }

    fn kill_with(&self, cause: KillCause) {
        let mut slot = self.cause.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(cause);
        }
        drop(slot);
        self.kill.cancel();
    }

    fn kill_cause(&self) -> KillCause {
        self.cause.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or(KillCause::Stop)
    }

    fn kill_timeout(&self) -> i64 {
        self.task["KillTimeout"].as_i64().unwrap_or(5_000_000_000).clamp(0, MAX_KILL_TIMEOUT)
    }

    /// The events that open a kill: a sibling's failure, then `Killing`.
    fn killing_events(&self) {
        if let KillCause::SiblingFailed(sibling) = self.kill_cause() {
            self.emit(TaskEvent::new("Sibling Task Failed").failed_sibling(&sibling));
        }
        self.emit(TaskEvent::new("Killing").kill_timeout(self.kill_timeout()));
    }

    /// Killed while not running: no process to stop.
    fn killed_idle(&self) {
        self.killing_events();
        self.update(|s| {
            s.push(TaskEvent::new("Killed"));
            s.state = "dead".into();
            s.finished_at = now_nanos();
        });
    }

    /// A task that will never run because its phase was cut short.
    fn never_ran(&self) {
        self.update(|s| {
            if s.state != "dead" {
                s.state = "dead".into();
                s.finished_at = now_nanos();
            }
        });
    }
}

/// `ClientStatus` from task states, as the client derives it.
fn derive_client_status(alloc: &mut Alloc) {
    let states: Vec<&TaskState> = alloc.task_states.iter().flat_map(|s| s.values()).collect();
    let (status, description) = if states.iter().any(|s| s.state == "dead" && s.failed) {
        ("failed", "Failed tasks")
    } else if states.iter().any(|s| s.state == "running") {
        ("running", "Tasks are running")
    } else if states.iter().any(|s| s.state == "pending") {
        ("pending", "No tasks have started")
    } else {
        ("complete", "All tasks have completed")
    };
    alloc.client_status = status.into();
    alloc.client_description = description.into();
}

/// The restart policy in force for one task.
struct RestartTracker {
    attempts: i64,
    interval: i64,
    delay: i64,
    mode: String,
    batch: bool,
    count: i64,
    window_start: Instant,
}

enum Decision {
    Done,
    Restart(i64, String),
    NotRestarting(String),
}

impl RestartTracker {
    fn new(task: &Value, job_type: &str) -> RestartTracker {
        let policy = &task["RestartPolicy"];
        RestartTracker {
            attempts: policy["Attempts"].as_i64().unwrap_or(0),
            interval: policy["Interval"].as_i64().unwrap_or(0),
            delay: policy["Delay"].as_i64().unwrap_or(0),
            mode: policy["Mode"].as_str().unwrap_or("fail").to_owned(),
            batch: matches!(job_type, "batch" | "sysbatch"),
            count: 0,
            window_start: Instant::now(),
        }
    }

    fn on_exit(&mut self, success: bool) -> Decision {
        if success && self.batch {
            return Decision::Done;
        }
        self.next()
    }

    fn on_start_error(&mut self, recoverable: bool) -> Decision {
        if !recoverable {
            return Decision::NotRestarting(REASON_UNRECOVERABLE.into());
        }
        self.next()
    }

    fn next(&mut self) -> Decision {
        if self.attempts == 0 {
            return Decision::NotRestarting(REASON_NO_RESTARTS.into());
        }
        let interval = Duration::from_nanos(self.interval.max(0) as u64);
        if self.window_start.elapsed() > interval {
            self.count = 0;
            self.window_start = Instant::now();
        }
        self.count += 1;
        if self.count > self.attempts {
            if self.mode == "fail" {
                return Decision::NotRestarting(format!(
                    "Exceeded allowed attempts {} in interval {} and mode is \"fail\"",
                    self.attempts,
                    super::duration::go_duration_string(self.interval)
                ));
            }
            let left = interval.saturating_sub(self.window_start.elapsed()).as_nanos() as i64;
            return Decision::Restart(left, REASON_DELAY.into());
        }
        // Nomad adds up to a quarter of the delay as jitter.
        let jitter =
            if self.delay > 0 { (uuid::Uuid::new_v4().as_u128() % (self.delay as u128 / 4 + 1)) as i64 } else { 0 };
        Decision::Restart(self.delay + jitter, REASON_WITHIN_POLICY.into())
    }
}

/// Run one task through its restarts; whether it failed.
async fn run_task(ctx: &TaskCtx) -> bool {
    if ctx.kill.is_cancelled() {
        ctx.killed_idle();
        return false;
    }
    ctx.emit(TaskEvent::new("Task Setup").message("Building Task Directory"));
    let inner = &ctx.inner;
    let config = &ctx.task["Config"];
    let image = config["image"].as_str().unwrap_or_default();
    let host_run = inner.config.buildah_images.iter().any(|p| image.starts_with(p.as_str()));
    let mut env = task_env(ctx, host_run);
    let Some(rendered) = inner.while_running(|| render_templates(ctx, &env)) else {
        ctx.killed_idle();
        return false;
    };
    match rendered {
        Ok(vars) => env.extend(vars),
        Err(TemplateError::Missing(missing)) => {
            // Nomad's template runner blocks the task until the data appears.
            ctx.emit(TaskEvent::new("Template").message(&format!("Missing: {missing}")));
            ctx.kill.cancelled().await;
            ctx.killed_idle();
            return false;
        }
        Err(TemplateError::Failed(error)) => {
            ctx.emit(TaskEvent::new("Killing").kill_reason(&format!("Template failed: {error}")).fails_task());
            ctx.update(|s| {
                s.state = "dead".into();
                s.failed = true;
                s.finished_at = now_nanos();
            });
            return true;
        }
    }
    let job_type = ctx.alloc.job["Type"].as_str().unwrap_or("batch").to_owned();
    let mut tracker = RestartTracker::new(&ctx.task, &job_type);
    loop {
        let decision = match attempt(ctx, &env).await {
            Attempt::Killed => return false,
            Attempt::StartFailed(error) => {
                if error.validation {
                    // The task runner reports a config it cannot decode twice over.
                    ctx.emit(TaskEvent::new("Failed Validation").validation_error(&error.message));
                }
                ctx.emit(TaskEvent::new("Driver Failure").driver_error(&error.message));
                tracker.on_start_error(error.recoverable)
            }
            Attempt::Exited(exit) => {
                let event = TaskEvent::new("Terminated").exit(exit.code, exit.signal, exit.oom_killed);
                ctx.emit(event);
                tracker.on_exit(exit.code == 0 && exit.signal == 0 && !exit.oom_killed)
            }
        };
        match decision {
            Decision::Done => {
                ctx.update(|s| {
                    s.state = "dead".into();
                    s.finished_at = now_nanos();
                });
                return false;
            }
            Decision::NotRestarting(reason) => {
                ctx.update(|s| {
                    s.push(TaskEvent::new("Not Restarting").restart_reason(&reason).fails_task());
                    s.state = "dead".into();
                    s.failed = true;
                    s.finished_at = now_nanos();
                });
                return true;
            }
            Decision::Restart(delay, reason) => {
                ctx.update(|s| {
                    s.push(TaskEvent::new("Restarting").restart_delay(delay).restart_reason(&reason));
                    s.state = "pending".into();
                    s.restarts += 1;
                    s.last_restart = now_nanos();
                });
                let wait = Duration::from_nanos(delay.max(0) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.kill.cancelled() => {
                        ctx.killed_idle();
                        return false;
                    }
                }
            }
        }
    }
}

enum Attempt {
    Killed,
    StartFailed(driver::DriverError),
    Exited(driver::Exit),
}

/// One start of the task: pull, start, wait or kill.
async fn attempt(ctx: &TaskCtx, env: &BTreeMap<String, String>) -> Attempt {
    let inner = &ctx.inner;
    let prepared =
        inner.while_running(|| driver::prepare(inner, &ctx.alloc.id, &ctx.task, &ctx.group, env, &ctx.paths));
    let prepared = match prepared {
        None => {
            ctx.killed_idle();
            return Attempt::Killed;
        }
        Some(Ok(prepared)) => prepared,
        Some(Err(error)) => return Attempt::StartFailed(error),
    };
    if let Prepared::Podman(run) = &prepared {
        let pull = async {
            if run.force_pull || !driver::image_present(inner, &run.image).await {
                ctx.emit(TaskEvent::new("Driver").driver_message(&format!("Downloading image {}", run.image)));
                driver::pull(inner, run).await
            } else {
                Ok(())
            }
        };
        tokio::select! {
            pulled = pull => if let Err(error) = pulled { return Attempt::StartFailed(error) },
            _ = ctx.kill.cancelled() => {
                ctx.killed_idle();
                return Attempt::Killed;
            }
        }
    }
    if ctx.kill.is_cancelled() {
        ctx.killed_idle();
        return Attempt::Killed;
    }
    if let Prepared::Host(run) = &prepared {
        inner.host_runs.lock().unwrap_or_else(|p| p.into_inner()).push(run.clone());
    }
    let key = format!("{}/{}", ctx.alloc.id, ctx.name);
    // Started and registered in one step, so a shutdown either prevents the start or finds the
    // process to kill.
    let started = inner.while_running(|| {
        let running = driver::start(inner, &prepared, &ctx.paths)?;
        inner.processes.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), running.target());
        Ok(running)
    });
    let mut running = match started {
        None => {
            ctx.killed_idle();
            return Attempt::Killed;
        }
        Some(Ok(running)) => running,
        Some(Err(error)) => return Attempt::StartFailed(error),
    };
    ctx.update(|s| {
        s.push(TaskEvent::new("Started"));
        s.state = "running".into();
        if s.started_at == 0 {
            s.started_at = now_nanos();
        }
    });
    let outcome = tokio::select! {
        exit = running.wait(inner) => Attempt::Exited(exit),
        _ = ctx.kill.cancelled() => {
            ctx.killing_events();
            let signal = ctx.task["KillSignal"].as_str().filter(|s| !s.is_empty()).unwrap_or("SIGTERM").to_owned();
            let timeout = Duration::from_nanos(ctx.kill_timeout() as u64);
            let force = running.stop(inner, &signal, timeout);
            let exit = running.wait(inner).await;
            force.abort();
            ctx.emit(TaskEvent::new("Terminated").exit(exit.code, exit.signal, exit.oom_killed));
            ctx.update(|s| {
                s.push(TaskEvent::new("Killed"));
                s.state = "dead".into();
                s.finished_at = now_nanos();
            });
            Attempt::Killed
        }
    };
    inner.processes.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    match outcome {
        Attempt::Exited(exit) if exit.start_error.is_some() => Attempt::StartFailed(driver::DriverError {
            message: exit.start_error.unwrap_or_default(),
            recoverable: true,
            validation: false,
        }),
        other => other,
    }
}

/// The task's environment: the NOMAD_* variables (paths as the task sees them: inside the
/// container for podman, on the host for host runs), then the task's `Env`, each value through
/// Nomad's `ReplaceEnv`. Template variables are added later, as they render, uninterpolated.
fn task_env(ctx: &TaskCtx, host_run: bool) -> BTreeMap<String, String> {
    let inner = &ctx.inner;
    let alloc = &ctx.alloc;
    let job = &alloc.job;
    let mut env = BTreeMap::new();
    if host_run {
        // What the buildah image's own environment provides, and a private home and tmp.
        env.insert("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()));
        env.insert("HOME".into(), ctx.paths.task_dir.join("home").display().to_string());
        env.insert("TMPDIR".into(), ctx.paths.task_dir.join("tmp").display().to_string());
        env.insert("BUILDAH_ISOLATION".into(), "chroot".into());
    }
    let (alloc_dir, task_dir, secrets_dir) = if host_run {
        (
            ctx.paths.alloc_dir.join("alloc").display().to_string(),
            ctx.paths.task_dir.join("local").display().to_string(),
            ctx.paths.task_dir.join("secrets").display().to_string(),
        )
    } else {
        ("/alloc".to_owned(), "/local".to_owned(), "/secrets".to_owned())
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let resources = &ctx.task["Resources"];
    let pairs = [
        ("NOMAD_ALLOC_DIR", alloc_dir),
        ("NOMAD_TASK_DIR", task_dir),
        ("NOMAD_SECRETS_DIR", secrets_dir),
        ("NOMAD_ALLOC_ID", alloc.id.clone()),
        ("NOMAD_SHORT_ALLOC_ID", alloc.id.chars().take(8).collect()),
        ("NOMAD_ALLOC_NAME", alloc.name.clone()),
        ("NOMAD_ALLOC_INDEX", alloc.index.to_string()),
        ("NOMAD_TASK_NAME", ctx.name.clone()),
        ("NOMAD_GROUP_NAME", alloc.task_group.clone()),
        ("NOMAD_JOB_ID", text(&job["ID"])),
        ("NOMAD_JOB_NAME", text(&job["Name"])),
        ("NOMAD_JOB_PARENT_ID", text(&job["ParentID"])),
        ("NOMAD_NAMESPACE", alloc.namespace.clone()),
        ("NOMAD_REGION", text(&job["Region"])),
        ("NOMAD_DC", inner.node.datacenter.clone()),
        ("NOMAD_CPU_LIMIT", resources["CPU"].as_i64().unwrap_or(0).to_string()),
        ("NOMAD_MEMORY_LIMIT", resources["MemoryMB"].as_i64().unwrap_or(0).to_string()),
    ];
    for (key, value) in pairs {
        env.insert(key.to_owned(), value);
    }
    if let Some(max) = resources["MemoryMaxMB"].as_i64().filter(|m| *m > 0) {
        env.insert("NOMAD_MEMORY_MAX_LIMIT".into(), max.to_string());
    }
    // Meta merges job, group and task, the innermost winning.
    for meta in [&job["Meta"], &ctx.group["Meta"], &ctx.task["Meta"]] {
        for (key, value) in meta.as_object().into_iter().flatten() {
            let value = text(value);
            env.insert(format!("NOMAD_META_{key}"), value.clone());
            env.insert(format!("NOMAD_META_{}", key.to_uppercase()), value);
        }
    }
    let base = env.clone();
    for (key, value) in ctx.task["Env"].as_object().into_iter().flatten() {
        env.insert(key.clone(), replace_env(&inner.node, &text(value), &base));
    }
    env
}

enum TemplateError {
    /// Data the fake has no source for; the text after `Missing: `.
    Missing(String),
    Failed(String),
}

/// Render the task's templates into its dir; the variables of `Envvars` templates.
fn render_templates(ctx: &TaskCtx, env: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut vars = BTreeMap::new();
    let mut missing = Vec::new();
    let mut rendered = Vec::new();
    for template in ctx.task["Templates"].as_array().into_iter().flatten() {
        let text = |k: &str| template[k].as_str().unwrap_or_default().to_owned();
        let source = match (text("EmbeddedTmpl"), text("SourcePath")) {
            (embedded, _) if !embedded.is_empty() => embedded,
            (_, path) => {
                let full =
                    if Path::new(&path).is_absolute() { path.clone().into() } else { ctx.paths.task_dir.join(&path) };
                std::fs::read_to_string(&full)
                    .map_err(|e| TemplateError::Failed(format!("failed to read template {path:?}: {e}")))?
            }
        };
        let (left, right) = (text("LeftDelim"), text("RightDelim"));
        match render(
            &source,
            if left.is_empty() { "{{" } else { &left },
            if right.is_empty() { "}}" } else { &right },
            env,
        ) {
            Ok(output) => rendered.push((template.clone(), output)),
            Err(needs) => missing.extend(needs),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(3).cloned().collect();
        let mut message = shown.join(", ");
        if missing.len() > 3 {
            message.push_str(&format!(", and {} more", missing.len() - 3));
        }
        return Err(TemplateError::Missing(message));
    }
    for (template, output) in rendered {
        let dest = template["DestPath"].as_str().unwrap_or_default();
        if Path::new(dest).components().any(|c| matches!(c, std::path::Component::ParentDir)) || dest.starts_with('/') {
            return Err(TemplateError::Failed(format!("template destination {dest:?} escapes the task dir")));
        }
        let path = ctx.paths.task_dir.join(dest);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| TemplateError::Failed(format!("create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, &output).map_err(|e| TemplateError::Failed(format!("write {}: {e}", path.display())))?;
        if let Ok(mode) = u32::from_str_radix(template["Perms"].as_str().unwrap_or("644"), 8) {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        }
        if template["Envvars"].as_bool().unwrap_or(false) {
            vars.extend(parse_env_file(&output));
        }
    }
    Ok(vars)
}

/// Render what this fake can: literal text and `{{ env "NAME" }}`. Anything else is data from
/// Vault, Consul or Nomad variables the fake does not have: the dependencies it waits for, as
/// consul-template names them.
fn render(source: &str, left: &str, right: &str, env: &BTreeMap<String, String>) -> Result<String, Vec<String>> {
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(left) {
        out.push_str(&rest[..start]);
        let after = &rest[start + left.len()..];
        let Some(end) = after.find(right) else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let words: Vec<&str> = action.split_whitespace().collect();
        let quoted = |i: usize| words.get(i).map(|w| w.trim_matches('"').to_owned()).unwrap_or_default();
        match words.first().copied() {
            Some("env") => out.push_str(env.get(&quoted(1)).map(String::as_str).unwrap_or_default()),
            _ => {
                let find = |func: &str| words.iter().position(|w| *w == func).map(|i| quoted(i + 1));
                if let Some(path) = find("secret") {
                    missing.push(format!("vault.read({path})"));
                } else if let Some(key) = find("key").or_else(|| find("keyOrDefault")) {
                    missing.push(format!("kv.block({key})"));
                } else if let Some(path) = find("nomadVar") {
                    missing.push(format!("nomad.var.block({path}@default.global)"));
                } else if let Some(service) = find("service") {
                    missing.push(format!("health.service({service}|passing)"));
                } else if !(action.starts_with('.') || matches!(words.first().copied(), Some("end" | "else"))) {
                    missing.push(format!("template action {{{{ {action} }}}}"));
                }
            }
        }
        rest = &after[end + right.len()..];
    }
    out.push_str(rest);
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

/// `KEY=value` lines; blank lines and `#` comments ignored, surrounding quotes dropped.
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            vars.insert(key.trim().to_owned(), value.to_owned());
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_constants_and_env() {
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(render("x={{ env \"A\" }}\n", "{{", "}}", &env).unwrap(), "x=1\n");
        assert_eq!(
            render("{{ with secret \"secret/data/x\" }}{{ .Data.data.p }}{{ end }}", "{{", "}}", &env).unwrap_err()[0],
            "vault.read(secret/data/x)"
        );
    }

    #[test]
    fn parses_env_files() {
        let vars = parse_env_file("# c\nA=1\nB=\"two words\"\n\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
    }
}
