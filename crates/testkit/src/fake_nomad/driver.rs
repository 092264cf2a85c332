//! The fake's `docker` driver: how a task's `Config` becomes a process, and how that process is
//! pulled for, started, waited on and stopped.
//!
//! Two ways to run, chosen by the image:
//! - any image not under a configured buildah prefix runs with **podman** (runc, explicit
//!   ulimits, host network, the fake's own storage), with the task, secrets and alloc dirs
//!   mounted at `/local`, `/secrets` and `/alloc` as the docker driver mounts them, pulled with
//!   the task's `auth` or else the node's auth config (`FakeNomadConfig::docker_auth_config`),
//!   never with anything from the task's environment;
//! - an image under a buildah prefix (`quay.io/buildah/stable`) runs its `command`/`args`
//!   **directly on the host**, in the task dir, with the host's buildah, because nested
//!   buildah-in-podman does not work on these machines. What such a container would see is
//!   emulated: NOMAD_* paths are host paths, env values and args naming `/local`, `/secrets` or
//!   `/alloc` are mapped to those dirs, and `CONTAINERS_STORAGE_CONF` points buildah at the host
//!   volume mounted at `/var/lib/containers` (or at storage private to the task, as a
//!   container's own filesystem would be). A stop kills everything the task started, as a
//!   container's would. Settings that only matter inside a container (`User`, `devices`,
//!   `security_opt`, `mount`, ...) are ignored and recorded in a [`HostRun`].
//!
//! Output goes straight to the alloc's log files. This module never touches the state store:
//! the task runner turns its results into task events.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use super::Inner;

/// Where one task's files are.
#[derive(Clone, Debug)]
pub(crate) struct TaskPaths {
    /// `<data>/allocs/<alloc id>`.
    pub alloc_dir: PathBuf,
    /// `<alloc dir>/<task>`.
    pub task_dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// A record of a task run on the host in place of a buildah container (a test hook).
#[derive(Clone, Debug)]
pub struct HostRun {
    pub alloc_id: String,
    pub task: String,
    pub image: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// The generated containers-storage config (`CONTAINERS_STORAGE_CONF`): the host volume
    /// mounted at `/var/lib/containers` if any, else storage private to the task.
    pub storage_conf: PathBuf,
    /// Settings a container would honour that the host run ignores, as `name: value`.
    pub ignored: Vec<String>,
}

/// How a task will run, decided before anything starts.
pub(crate) enum Prepared {
    Podman(PodmanRun),
    Host(HostRun),
}

pub(crate) struct PodmanRun {
    pub image: String,
    pub name: String,
    pub run_args: Vec<String>,
    pub pull_args: Vec<String>,
    pub force_pull: bool,
}

/// A started task.
pub(crate) struct Running {
    child: Child,
    target: Target,
    /// Length of the stderr log before start, to take back podman's own start error.
    stderr_len: u64,
    stderr: PathBuf,
    /// A host task's processes when it was asked to stop, killed with it.
    descendants: Vec<i32>,
}

#[derive(Clone, Debug)]
pub(crate) enum Target {
    Podman(String),
    Host(i32),
}

/// How a task ended.
pub(crate) struct Exit {
    pub code: i64,
    pub signal: i64,
    pub oom_killed: bool,
    /// The container never started; the runtime's message.
    pub start_error: Option<String>,
}

/// A failure before the task runs: the message of the `Driver Failure` event, and whether the
/// restart policy may retry it.
pub(crate) struct DriverError {
    pub message: String,
    pub recoverable: bool,
    /// The driver config could not be decoded (the runner's `Failed Validation` event).
    pub validation: bool,
}

impl DriverError {
    fn fatal(message: String) -> DriverError {
        DriverError { message, recoverable: false, validation: false }
    }

    /// A config string the HCL decoding refused, worded as the task runner's multierror.
    fn config(diagnostic: String) -> DriverError {
        DriverError {
            message: format!("2 errors occurred:\n\t* failed to parse config: \n\t* {diagnostic}\n\n"),
            recoverable: false,
            validation: true,
        }
    }
}

/// The podman command line prefix: the fake's storage and runtime.
pub(crate) fn podman_base(inner: &Inner) -> Vec<String> {
    let (root, runroot) = &inner.podman_storage;
    vec![
        "podman".into(),
        "--root".into(),
        root.display().to_string(),
        "--runroot".into(),
        runroot.display().to_string(),
        "--storage-driver".into(),
        "overlay".into(),
        "--runtime".into(),
        "runc".into(),
        "--tmpdir".into(),
        runroot.join("libpod-tmp").display().to_string(),
        "--events-backend".into(),
        "file".into(),
    ]
}

/// The registry host of an image reference, if it names one.
fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

/// Decide how to run `task`; `env` is the task's full environment (NOMAD_*, `Env`, template
/// variables), `Env` already interpolated. Every string of the config is evaluated as the HCL
/// template Nomad takes it for ([`super::interpolate::driver_template`]) before it is read.
pub(crate) fn prepare(
    inner: &Inner,
    alloc_id: &str,
    task: &Value,
    group: &Value,
    env: &BTreeMap<String, String>,
    paths: &TaskPaths,
) -> Result<Prepared, DriverError> {
    let task_name = task["Name"].as_str().unwrap_or_default();
    // Once, before anything reads it: an escape (`$${`) evaluated twice would be lost.
    let config = &evaluated(inner, &task["Config"], env)?;
    let Some(image) = config["image"].as_str().filter(|i| !i.is_empty()) else {
        return Err(DriverError::fatal(
            "failed to decode driver config: Missing required argument: The argument \"image\" is required, but no \
             definition was found."
                .into(),
        ));
    };
    let image = image.to_owned();
    let command = config["command"].as_str().map(str::to_owned);
    let args = strings(&config["args"]);
    let entrypoint = strings(&config["entrypoint"]);

    if inner.config.buildah_images.iter().any(|prefix| image.starts_with(prefix.as_str())) {
        let mut argv = entrypoint;
        argv.extend(command);
        argv.extend(args);
        if argv.is_empty() {
            return Err(DriverError::fatal(format!(
                "fake nomad runs {image} on the host and cannot use the image's own entrypoint: set Config.command"
            )));
        }
        let mut ignored = Vec::new();
        let user = task["User"].as_str().unwrap_or_default();
        if !user.is_empty() {
            ignored.push(format!("User: {user}"));
        }
        for key in [
            "devices",
            "security_opt",
            "mount",
            "privileged",
            "cap_add",
            "cap_drop",
            "volumes",
            "network_mode",
            "work_dir",
        ] {
            if !config[key].is_null() {
                ignored.push(format!("{key}: {}", config[key]));
            }
        }
        // Values naming the task's container mounts point at their host directories.
        let task_env = env;
        let mut env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.clone(), host_path(v, paths))).collect();
        let argv: Vec<String> = argv.iter().map(|a| host_path(a, paths)).collect();
        let storage_conf = host_storage_conf(inner, task, group, paths, &mut ignored).map_err(DriverError::fatal)?;
        if let Some(given) = task_env.get("CONTAINERS_STORAGE_CONF") {
            ignored.push(format!("env CONTAINERS_STORAGE_CONF={given} (replaced by the fake's storage config)"));
        }
        env.insert("CONTAINERS_STORAGE_CONF".into(), storage_conf.display().to_string());
        return Ok(Prepared::Host(HostRun {
            alloc_id: alloc_id.to_owned(),
            task: task_name.to_owned(),
            image,
            argv,
            env,
            cwd: paths.task_dir.clone(),
            storage_conf,
            ignored,
        }));
    }

    let insecure = registry_of(&image).is_some_and(|r| inner.config.insecure_registries.iter().any(|i| i == r));
    let mut pull_args = vec!["pull".to_owned(), "-q".to_owned()];
    if insecure {
        pull_args.push("--tls-verify=false".into());
    }
    // The docker driver's order: the task's own `auth`, else the node's auth config.
    if let (Some(user), Some(password)) = (config["auth"]["username"].as_str(), config["auth"]["password"].as_str()) {
        pull_args.push(format!("--creds={user}:{password}"));
    } else if let Some(auth) = &inner.config.docker_auth_config {
        pull_args.push(format!("--authfile={}", auth.display()));
    }
    pull_args.push(image.clone());

    if config["privileged"].as_bool().unwrap_or(false) {
        return Err(DriverError::fatal("Docker privileged mode is disabled on this Nomad agent".into()));
    }
    let name = format!("{alloc_id}-{task_name}");
    let resources = &task["Resources"];
    let memory = resources["MemoryMB"].as_i64().unwrap_or(300);
    let memory_max = resources["MemoryMaxMB"].as_i64().unwrap_or(0);
    let mut run = vec!["run".to_owned(), "--name".into(), name.clone(), "--pull".into(), "never".into()];
    let network = match config["network_mode"].as_str() {
        Some("none") => "none",
        // No bridge on these machines: bridge mode and the default both get the host network.
        _ => "host",
    };
    run.extend(["--network".into(), network.into()]);
    run.extend(["--ulimit".into(), "nofile=1024:1024".into(), "--ulimit".into(), "nproc=1024:1024".into()]);
    if memory_max > memory {
        run.extend([format!("--memory={memory_max}m"), format!("--memory-reservation={memory}m")]);
    } else {
        run.push(format!("--memory={memory}m"));
    }
    run.push(format!("--cpu-shares={}", resources["CPU"].as_i64().unwrap_or(100).max(2)));
    let mount = |host: &Path, container: &str| format!("--volume={}:{container}", host.display());
    run.push(mount(&paths.alloc_dir.join("alloc"), "/alloc"));
    run.push(mount(&paths.task_dir.join("local"), "/local"));
    run.push(mount(&paths.task_dir.join("secrets"), "/secrets"));
    for (host, destination, read_only) in host_volume_mounts(inner, task, group).map_err(DriverError::fatal)? {
        let suffix = if read_only { ":ro" } else { "" };
        run.push(format!("--volume={}:{destination}{suffix}", host.display()));
    }
    for volume in strings(&config["volumes"]) {
        let (host, rest) = volume.split_once(':').unwrap_or((volume.as_str(), ""));
        if host.starts_with('/') {
            // The docker plugin's `volumes.enabled` is off by default.
            return Err(DriverError::fatal(format!("volumes are not enabled; cannot mount host paths: {host:?}")));
        }
        run.push(format!("--volume={}:{rest}", paths.task_dir.join(host).display()));
    }
    for device in config["devices"].as_array().into_iter().flatten() {
        let host = device["host_path"].as_str().unwrap_or_default();
        let container = device["container_path"].as_str().unwrap_or(host);
        let permissions = device["cgroup_permissions"].as_str().unwrap_or("rwm");
        run.push(format!("--device={host}:{container}:{permissions}"));
    }
    for option in strings(&config["security_opt"]) {
        run.push(format!("--security-opt={option}"));
    }
    for cap in strings(&config["cap_add"]) {
        run.push(format!("--cap-add={cap}"));
    }
    for cap in strings(&config["cap_drop"]) {
        run.push(format!("--cap-drop={cap}"));
    }
    if let Some(labels) = config["labels"].as_object() {
        for (key, value) in labels {
            run.push(format!("--label={key}={}", value.as_str().unwrap_or_default()));
        }
    }
    if let Some(dir) = config["work_dir"].as_str() {
        run.push(format!("--workdir={dir}"));
    }
    let kill_signal = task["KillSignal"].as_str().unwrap_or_default();
    if !kill_signal.is_empty() {
        run.push(format!("--stop-signal={kill_signal}"));
    }
    for (key, value) in env {
        run.push("--env".into());
        run.push(format!("{key}={value}"));
    }
    if !entrypoint.is_empty() {
        let json = serde_json::to_string(&entrypoint).unwrap_or_default();
        run.push(format!("--entrypoint={json}"));
    }
    run.push(image.clone());
    run.extend(command);
    run.extend(args);
    let force_pull = config["force_pull"].as_bool().unwrap_or(false)
        || !image.rsplit('/').next().unwrap_or_default().contains(':')
        || image.ends_with(":latest");
    Ok(Prepared::Podman(PodmanRun { image, name, run_args: run, pull_args, force_pull }))
}

/// The task's `Config` with every string evaluated as the HCL template Nomad's task runner
/// decodes it as; the first string it refuses fails the task, as it fails Nomad's.
fn evaluated(inner: &Inner, config: &Value, env: &BTreeMap<String, String>) -> Result<Value, DriverError> {
    Ok(match config {
        Value::String(text) => {
            Value::String(super::interpolate::driver_template(&inner.node, text, env).map_err(DriverError::config)?)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| evaluated(inner, item, env)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), evaluated(inner, v, env)?))).collect::<Result<_, DriverError>>()?,
        ),
        other => other.clone(),
    })
}

/// The host paths of the task's `VolumeMounts` (group `Volumes` of type host, resolved through
/// the client's `host_volume` config).
fn host_volume_mounts(inner: &Inner, task: &Value, group: &Value) -> Result<Vec<(PathBuf, String, bool)>, String> {
    let mut mounts = Vec::new();
    for mount in task["VolumeMounts"].as_array().into_iter().flatten() {
        let volume_name = mount["Volume"].as_str().unwrap_or_default();
        let volume = &group["Volumes"][volume_name];
        if volume["Type"] != "host" {
            return Err(format!("volume {volume_name:?} is not a host volume; fake nomad supports host volumes only"));
        }
        let source = volume["Source"].as_str().unwrap_or_default();
        let Some(path) = inner.config.host_volumes.get(source) else {
            return Err(format!("missing host volume {source:?} on the client"));
        };
        let read_only = mount["ReadOnly"].as_bool().unwrap_or(false) || volume["ReadOnly"].as_bool().unwrap_or(false);
        mounts.push((path.clone(), mount["Destination"].as_str().unwrap_or_default().to_owned(), read_only));
    }
    Ok(mounts)
}

/// For a host run: the containers-storage config the buildah container would have. With a host
/// volume mounted at `/var/lib/containers` the graph root is `<volume>/storage` (the shared
/// layer cache); without one it is private to the task, as a container's own filesystem would
/// be, so host runs never touch the host's global storage. The run root is always under the
/// alloc dir.
fn host_storage_conf(
    inner: &Inner,
    task: &Value,
    group: &Value,
    paths: &TaskPaths,
    ignored: &mut Vec<String>,
) -> Result<PathBuf, String> {
    let private = paths.task_dir.join("private");
    let mut graph_root = private.join("containers/storage");
    for (host, destination, read_only) in host_volume_mounts(inner, task, group)? {
        let destination = destination.trim_end_matches('/');
        if destination != "/var/lib/containers" {
            ignored.push(format!("volume_mount: {} at {destination} (no path remapping on the host)", host.display()));
            continue;
        }
        if read_only {
            ignored.push("volume_mount read_only: /var/lib/containers".into());
        }
        graph_root = host.join("storage");
    }
    let run_root = private.join("containers-run");
    for dir in [&graph_root, &run_root] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let path = private.join("storage.conf");
    let text = format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        graph_root.display(),
        run_root.display()
    );
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// A container path under one of the task's mounts (`/local`, `/secrets`, `/alloc`), as the
/// host path it stands for; anything else unchanged.
fn host_path(text: &str, paths: &TaskPaths) -> String {
    let mounts = [
        ("/local", paths.task_dir.join("local")),
        ("/secrets", paths.task_dir.join("secrets")),
        ("/alloc", paths.alloc_dir.join("alloc")),
    ];
    for (mount, host) in mounts {
        if text == mount {
            return host.display().to_string();
        }
        if let Some(rest) = text.strip_prefix(mount).and_then(|r| r.strip_prefix('/')) {
            return host.join(rest).display().to_string();
        }
    }
    text.to_owned()
}

/// Whether the image is already in the fake's podman storage.
pub(crate) async fn image_present(inner: &Inner, image: &str) -> bool {
    let mut argv = podman_base(inner);
    argv.extend(["image".into(), "exists".into(), image.to_owned()]);
    run_quiet(&argv).await.is_ok()
}

/// `podman pull`; the error is the docker driver's `Failed to pull` message.
pub(crate) async fn pull(inner: &Inner, run: &PodmanRun) -> Result<(), DriverError> {
    let mut argv = podman_base(inner);
    argv.extend(run.pull_args.iter().cloned());
    run_quiet(&argv).await.map_err(|stderr| DriverError {
        message: format!("Failed to pull `{}`: {}", run.image, stderr.trim()),
        recoverable: true,
        validation: false,
    })
}

/// Run a command to completion; its stderr on failure.
async fn run_quiet(argv: &[String]) -> Result<(), String> {
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}

fn log_file(path: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Start the task; its output is appended to the log files.
pub(crate) fn start(inner: &Inner, prepared: &Prepared, paths: &TaskPaths) -> Result<Running, DriverError> {
    let stdout = log_file(&paths.stdout).map_err(|e| DriverError::fatal(format!("open stdout log: {e}")))?;
    let stderr = log_file(&paths.stderr).map_err(|e| DriverError::fatal(format!("open stderr log: {e}")))?;
    let stderr_len = stderr.metadata().map(|m| m.len()).unwrap_or(0);
    let (mut command, target_of): (Command, Box<dyn Fn(u32) -> Target>) = match prepared {
        Prepared::Podman(run) => {
            let mut argv = podman_base(inner);
            argv.extend(run.run_args.iter().cloned());
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            let name = run.name.clone();
            (command, Box::new(move |_| Target::Podman(name.clone())))
        }
        Prepared::Host(host) => {
            let mut command = Command::new(&host.argv[0]);
            command.args(&host.argv[1..]).env_clear().envs(&host.env).current_dir(&host.cwd);
            // Its own process group, so a stop reaches every process the task started.
            command.process_group(0);
            (command, Box::new(|pid| Target::Host(pid as i32)))
        }
    };
    command.stdin(Stdio::null()).stdout(stdout).stderr(stderr).kill_on_drop(true);
    let child = command.spawn().map_err(|e| DriverError {
        message: format!("failed to launch command with executor: {e}"),
        recoverable: true,
        validation: false,
    })?;
    let target = target_of(child.id().unwrap_or(0));
    Ok(Running { child, target, stderr_len, stderr: paths.stderr.clone(), descendants: Vec::new() })
}

impl Running {
    pub(crate) fn target(&self) -> Target {
        self.target.clone()
    }

    /// Wait for the task to end. For podman, read the container's state (did it start, was it
    /// OOM-killed), then remove it.
    pub(crate) async fn wait(&mut self, inner: &Inner) -> Exit {
        let status = self.child.wait().await;
        let (mut code, signal) = match &status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt as _;
                match (status.code(), status.signal()) {
                    (Some(code), _) => (i64::from(code), 0),
                    // `WaitStatus.ExitStatus()` is -1 for a signalled process.
                    (None, Some(signal)) => (-1, i64::from(signal)),
                    (None, None) => (-1, 0),
                }
            }
            Err(_) => (-1, 0),
        };
        let name = match &self.target {
            Target::Podman(name) => name,
            Target::Host(pgid) => {
                // A container ends with its first process: what it left running goes too.
                signal_group(*pgid, libc::SIGKILL);
                for pid in std::mem::take(&mut self.descendants) {
                    signal_pid(pid, libc::SIGKILL);
                }
                return Exit { code, signal, oom_killed: false, start_error: None };
            }
        };
        let mut argv = podman_base(inner);
        argv.extend([
            "inspect".into(),
            "--format".into(),
            "{{.State.Status}}|{{.State.OOMKilled}}|{{.State.ExitCode}}".into(),
            name.clone(),
        ]);
        let inspected =
            Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).stderr(Stdio::null()).output().await;
        let state = inspected.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
        let mut parts = state.split('|');
        let (status, oom, exit_code) = (parts.next().unwrap_or(""), parts.next() == Some("true"), parts.next());
        if let Some(exit_code) = exit_code.and_then(|c| c.parse::<i64>().ok())
            && status == "exited"
        {
            code = exit_code;
        }
        let start_error = (status == "created").then(|| self.take_start_error());
        remove_container(inner, name).await;
        Exit { code, signal, oom_killed: oom, start_error }
    }

    /// podman's own message for a container that never started, taken back out of the task's
    /// stderr log (Nomad reports it as a driver error, not as task output).
    fn take_start_error(&self) -> String {
        let text = std::fs::read(&self.stderr).ok().map(|bytes| {
            let start = (self.stderr_len as usize).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
        });
        if let Ok(file) = OpenOptions::new().write(true).open(&self.stderr) {
            let _ = file.set_len(self.stderr_len);
        }
        match text {
            Some(text) if !text.is_empty() => text.trim_start_matches("Error: ").to_owned(),
            _ => "container failed to start".to_owned(),
        }
    }
}

impl Running {
    /// Ask the task to stop with `signal`; force-kill it once `timeout` passes. Returns at
    /// once: the caller keeps waiting on [`Running::wait`] and then aborts the returned timer.
    pub(crate) fn stop(&mut self, inner: &Inner, signal: &str, timeout: Duration) -> tokio::task::JoinHandle<()> {
        match &self.target {
            Target::Podman(name) => {
                // `podman stop` sends the container's stop signal, waits, then SIGKILLs.
                let mut argv = podman_base(inner);
                argv.extend(["stop".into(), "--time".into(), timeout.as_secs().to_string(), name.clone()]);
                tokio::spawn(async move {
                    let _ = Command::new(&argv[0])
                        .args(&argv[1..])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .await;
                })
            }
            Target::Host(pgid) => {
                let pgid = *pgid;
                // Known now, while they still descend from the task: once its shell exits they
                // are reparented and could no longer be found.
                self.descendants = descendants(pgid);
                signal_group(pgid, signal_number(signal));
                let descendants = self.descendants.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    // Like a container's stop: everything the task started goes, whatever its
                    // session.
                    signal_group(pgid, libc::SIGKILL);
                    for pid in descendants {
                        signal_pid(pid, libc::SIGKILL);
                    }
                })
            }
        }
    }
}

/// The processes descending from `root`, from `/proc`.
fn descendants(root: i32) -> Vec<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`, where comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            found.push(*child);
            queue.push(*child);
        }
    }
    found
}

fn signal_pid(pid: i32, signal: i32) {
    if pid > 1 {
        // SAFETY: kill(2) on a process id; no memory is involved.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn signal_number(name: &str) -> i32 {
    match name.trim_start_matches("SIG") {
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => libc::SIGTERM,
    }
}

pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

async fn remove_container(inner: &Inner, name: &str) {
    let mut argv = podman_base(inner);
    argv.extend(["rm".into(), "--force".into(), "--time".into(), "0".into(), "--ignore".into(), name.to_owned()]);
    let _ = run_quiet(&argv).await;
}

/// Kill a task at once and synchronously (the fake is going away).
pub(crate) fn kill_now(podman: &[String], target: &Target) {
    match target {
        Target::Host(pgid) => {
            let descendants = descendants(*pgid);
            signal_group(*pgid, libc::SIGKILL);
            for pid in descendants {
                signal_pid(pid, libc::SIGKILL);
            }
        }
        Target::Podman(name) => {
            let _ = std::process::Command::new(&podman[0])
                .args(&podman[1..])
                .args(["rm", "--force", "--time", "0", "--ignore", name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
