//! [`LocalBackend`]: the `Backend` port on this machine, one shim-supervised process tree per run.
//!
//! Layout under the data directory: `runs/<run id>/` (see [`crate::rundir`]), `work/<job id>/`
//! (the checkout), `containers/` (buildah's and podman's storage: the layer cache), `tmp/`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use jobforge_core::config::{JobSpec, RelPath};
use jobforge_core::diagnose::Checkout;
use jobforge_core::image::RegistryHost;
use jobforge_core::logs::RunCursor;
use jobforge_core::ports::{Backend, BackendError, RunEvents, RunSpec, RunWork, Secrets, Started};
use jobforge_core::secret::Credentials;
use jobforge_core::state::{CleanupReport, Leftover};
use jobforge_core::validate::Problem;
use jobforge_core::{JobId, RunId, RunKey};

use crate::follow;
use crate::plan::{self, Places, Resolved};
use crate::rundir::{RunDir, create_locked};
use crate::shim::LOCK_FD;
use crate::tools::{TestNetwork, Tools};
use crate::watch::Watcher;

/// How long a forced stop waits for the shim to record the end before killing the shim too.
const FORCED_STOP_WAIT: Duration = Duration::from_secs(10);

/// Settings of the local backend.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    /// The shim command: program and leading arguments; the run directory is appended.
    pub shim: Vec<OsString>,
    /// `overlay` (default) or `vfs`.
    pub storage_driver: String,
    pub oci_runtime: String,
    pub ulimits: Vec<String>,
    pub insecure_registries: Vec<RegistryHost>,
    /// Extra CA certificates (PEM) trusted for git over https, on top of the system's.
    pub extra_ca_file: Option<PathBuf>,
    pub test_network: TestNetwork,
}

impl LocalConfig {
    pub fn new(data_dir: PathBuf, shim: Vec<OsString>) -> Self {
        LocalConfig {
            data_dir,
            shim,
            storage_driver: "overlay".into(),
            oci_runtime: "runc".into(),
            ulimits: vec!["nofile=1024:1024".into(), "nproc=1024:1024".into()],
            insecure_registries: Vec::new(),
            extra_ca_file: None,
            test_network: TestNetwork::Private,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("could not prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the shim command is empty")]
    NoShim,
}

/// Runs phases as local processes.
#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: LocalConfig,
    /// Started on first use, inside the runtime.
    watcher: tokio::sync::OnceCell<Arc<Watcher>>,
    tools: Tools,
    secrets: Arc<dyn Secrets>,
    runs: PathBuf,
    work: PathBuf,
    tmp: PathBuf,
    git_ca_bundle: Option<PathBuf>,
}

impl LocalBackend {
    pub fn new(config: LocalConfig, secrets: Arc<dyn Secrets>) -> Result<Self, LocalError> {
        if config.shim.is_empty() {
            return Err(LocalError::NoShim);
        }
        let data = &config.data_dir;
        let (runs, work, tmp) = (data.join("runs"), data.join("work"), data.join("tmp"));
        let storage_root = data.join("containers/storage");
        let state = runtime_state_dir(data);
        for dir in [&runs, &work, &tmp, &storage_root, &state] {
            fs::create_dir_all(dir).map_err(|source| LocalError::Prepare { path: dir.clone(), source })?;
        }
        let git_ca_bundle = match &config.extra_ca_file {
            Some(extra) => Some(write_ca_bundle(data, extra)?),
            None => None,
        };
        let tools = Tools {
            git: "git".into(),
            buildah: "buildah".into(),
            podman: "podman".into(),
            skopeo: "skopeo".into(),
            storage_root,
            run_root: state.join("storage"),
            podman_tmp: state.join("libpod"),
            storage_driver: config.storage_driver.clone(),
            oci_runtime: config.oci_runtime.clone(),
            ulimits: config.ulimits.clone(),
            insecure: config.insecure_registries.clone(),
            test_network: config.test_network,
        };
        let watcher = tokio::sync::OnceCell::new();
        Ok(LocalBackend { inner: Arc::new(Inner { config, watcher, tools, secrets, runs, work, tmp, git_ca_bundle }) })
    }

    pub fn tools(&self) -> &Tools {
        &self.inner.tools
    }

    fn run_dir(&self, run: &RunId) -> RunDir {
        RunDir::new(self.inner.runs.join(run.as_str()))
    }

    fn work_dir(&self, job: JobId) -> PathBuf {
        plan::job_work_dir(&self.inner.work, job)
    }

    /// The environment every step starts from: nothing of the service's but the search path,
    /// proxies and a private home.
    fn base_env(&self, job: JobId) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let path = std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        env.insert("PATH".into(), path);
        env.insert("HOME".into(), self.work_dir(job).join("home").display().to_string());
        env.insert("TMPDIR".into(), self.inner.tmp.display().to_string());
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
        // git speaks only the schemes a repo_url may have (no `ext::` commands, no other
        // remote helpers), reads no system or user configuration, and ssh uses no user
        // config or agent of the service's: HOME above is the job's own, empty.
        env.insert("GIT_ALLOW_PROTOCOL".into(), "https:http:ssh:git:file".into());
        env.insert("GIT_CONFIG_NOSYSTEM".into(), "1".into());
        env.insert("GIT_CONFIG_GLOBAL".into(), "/dev/null".into());
        env.insert("GIT_SSH_COMMAND".into(), "ssh -F /dev/null -o BatchMode=yes -o IdentityAgent=none".into());
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"] {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.into(), value);
            }
        }
        env
    }

    /// Read the secrets the run needs. A missing secret fails the start with its path named.
    async fn resolve(&self, run: &RunSpec) -> Result<Resolved, String> {
        let secrets = &self.inner.secrets;
        let mut resolved = Resolved::default();
        let read_creds = |path: jobforge_core::secret::SecretPath| async move {
            let data = secrets.read(&path).await.map_err(|e| e.to_string())?;
            Credentials::from_secret(&path, &data)
        };
        if let RunWork::Build(work) = &run.work
            && let Some(path) = &work.git_credentials
        {
            resolved.git = Some(read_creds(path.clone()).await?);
        }
        for (host, path) in plan::registry_credentials(run) {
            resolved.registries.insert(host, read_creds(path).await?);
        }
        if let RunWork::Test(work) = &run.work {
            for secret in &work.vault_secrets {
                let data = secrets.read(&secret.path).await.map_err(|e| e.to_string())?;
                for (field, env) in &secret.fields {
                    let value =
                        data.get(field).ok_or_else(|| format!("secret {} has no field {field:?}", secret.path))?;
                    resolved.test_env.insert(env.clone(), value.clone());
                }
            }
        }
        Ok(resolved)
    }

    /// Claim the run directory. `None` if a run with this id already started.
    fn claim(&self, run: &RunDir, id: &RunId) -> Result<Option<()>, BackendError> {
        let io_err = |context: &str| {
            let context = format!("{context} for run {id}");
            move |source| BackendError::Io { context, source }
        };
        if run.exists() {
            let started = run.pid_path().exists()
                || run.exit_path().exists()
                || run.is_running().map_err(io_err("checking the lock"))?;
            if started {
                return Ok(None);
            }
            // A start that was cut short before its shim ran: nothing ran, so start afresh.
            fs::remove_dir_all(run.path()).map_err(io_err("clearing an unstarted run directory"))?;
        }
        match fs::create_dir(run.path()) {
            Ok(()) => Ok(Some(())),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(err) => Err(io_err("creating the run directory")(err)),
        }
    }

    async fn spawn_shim(&self, run: &RunDir, spec: &crate::shim::ShimSpec) -> Result<(), io::Error> {
        let lock = create_locked(&run.lock_path())?;
        let lock_fd = lock.as_raw_fd();
        let shim = &self.inner.config.shim;
        let mut command = tokio::process::Command::new(&shim[0]);
        command
            .args(&shim[1..])
            .arg(run.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(run.shim_err_path())?)
            .kill_on_drop(false);
        // SAFETY: between fork and exec only async-signal-safe calls are made (setsid, dup2,
        // fcntl), touching no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                // Its own session: the shim outlives the service and its terminal.
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if lock_fd != LOCK_FD && libc::dup2(lock_fd, LOCK_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::fcntl(LOCK_FD, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let input = serde_json::to_vec(spec).map_err(io::Error::other)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).await?;
            stdin.shutdown().await?;
        }
        // The shim holds the lock through its inherited descriptor from here on.
        drop(lock);
        // Reap it when it ends; followers learn of the end through the lock, not through us.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    /// Wait up to `limit` for the run's shim to end.
    async fn wait_ended(&self, run: &RunDir, limit: Duration) -> bool {
        let waiter = {
            let run = run.clone();
            tokio::task::spawn_blocking(move || run.wait_unlocked())
        };
        tokio::time::timeout(limit, waiter).await.is_ok()
    }

    /// Remove containers by force; what could not be removed is reported with podman's words.
    async fn remove_containers(&self, names: &[String]) -> CleanupReport {
        let mut report = CleanupReport::default();
        for name in names {
            let argv = self.inner.tools.podman(&["rm", "--force", "--time", "0", "--ignore", name.as_str()]);
            match run_quiet(&argv).await {
                Ok(_) => report.removed.push(format!("container {name}")),
                Err(error) => {
                    tracing::warn!(container = %name, %error, "could not remove a container");
                    report.remaining.push(Leftover { what: format!("container {name}"), why: error.trim().to_owned() });
                }
            }
        }
        report
    }

    /// Containers labelled with the job, whatever run made them.
    async fn job_containers(&self, job: JobId) -> Vec<String> {
        let filter = format!("label=jobforge.job={job}");
        let argv = self.inner.tools.podman(&["ps", "--all", "--filter", filter.as_str(), "--format", "{{.Names}}"]);
        match run_quiet(&argv).await {
            Ok(out) => out.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect(),
            Err(error) => {
                tracing::warn!(%error, "could not list containers");
                Vec::new()
            }
        }
    }

    fn job_runs(&self, job: JobId) -> Vec<RunId> {
        let Ok(entries) = fs::read_dir(&self.inner.runs) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<RunId>().ok())
            .filter(|run| run.job() == job)
            .collect()
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn unsupported(&self, spec: &JobSpec) -> Vec<Problem> {
        let mut problems = Vec::new();
        if spec.test.gpu_required {
            problems.push(Problem::new(
                "test.gpu_required",
                "the local backend cannot place tests on GPUs; use the nomad backend",
            ));
        }
        if !spec.test.constraints.is_empty() {
            problems.push(Problem::new("test.constraints", "placement constraints need the nomad backend"));
        }
        for (i, secret) in spec.test.vault_secrets.iter().enumerate() {
            for (field, env) in &secret.fields {
                if reserved_env(env.as_str()) {
                    problems.push(Problem::new(
                        format!("test.vault_secrets[{i}].fields.{field}"),
                        format!(
                            "{env} is reserved on the local backend (it steers podman itself); choose another name"
                        ),
                    ));
                }
            }
        }
        problems
    }

    async fn start(&self, spec: &RunSpec) -> Result<Started, BackendError> {
        let run = self.run_dir(&spec.id);
        if self.claim(&run, &spec.id)?.is_none() {
            return Ok(Started::Existing);
        }
        let start_err = |message: String| BackendError::Start { run: spec.id.clone(), message };
        let job = spec.id.job();
        let work_dir = self.work_dir(job);
        fs::create_dir_all(work_dir.join("home"))
            .map_err(|e| start_err(format!("creating the work directory: {e}")))?;
        let secrets = self.resolve(spec).await.map_err(start_err)?;
        let places = Places {
            run_dir: run.path().to_path_buf(),
            work_dir,
            env: self.base_env(job),
            git_ca_bundle: self.inner.git_ca_bundle.clone(),
            data_dir: self.inner.config.data_dir.clone(),
        };
        let plan = plan::plan(&self.inner.tools, &places, spec, &secrets);
        run.write_meta(&plan.meta).map_err(|e| start_err(format!("writing run metadata: {e}")))?;
        self.spawn_shim(&run, &plan.spec).await.map_err(|e| start_err(format!("starting the shim: {e}")))?;
        tracing::debug!(run = %spec.id, "shim started");
        Ok(Started::New)
    }

    /// One sequence: the shim numbers every line of a run in the order it writes them.
    fn sequences(&self) -> u64 {
        1
    }

    async fn follow(&self, run: &RunId, from: &RunCursor) -> Result<RunEvents, BackendError> {
        let after = from.highest(0);
        let dir = self.run_dir(run);
        if !dir.exists() {
            return Err(BackendError::NoSuchRun(run.clone()));
        }
        let watcher = self
            .inner
            .watcher
            .get_or_try_init(|| async { Watcher::start() })
            .await
            .map_err(|source| BackendError::Io { context: "starting the inotify watcher".into(), source })?;
        Ok(follow::follow(watcher.clone(), run.clone(), dir, after))
    }

    async fn stop(&self, id: &RunId, grace: Duration) -> Result<(), BackendError> {
        let run = self.run_dir(id);
        let running = run.exists() && !run.exit_path().exists() && run.is_running().unwrap_or(false);
        if !running {
            kill_orphaned_step(&run);
            return Ok(());
        }
        let Some(pid) = wait_for_pid(&run).await else {
            return Ok(());
        };
        signal(pid, libc::SIGTERM);
        if self.wait_ended(&run, grace).await {
            // podman removes a `--rm` container after its client exits, in the background (a
            // private network's teardown makes that slow): stopped means gone, so remove it now.
            let meta = run.read_meta().unwrap_or_default();
            self.remove_containers(&meta.containers).await;
            return Ok(());
        }
        tracing::info!(run = %id, ?grace, "run did not stop in its grace period; forcing it");
        signal(pid, libc::SIGUSR1);
        let meta = run.read_meta().unwrap_or_default();
        self.remove_containers(&meta.containers).await;
        if !self.wait_ended(&run, FORCED_STOP_WAIT).await {
            tracing::warn!(run = %id, "shim did not end after a forced stop; killing it");
            signal(pid, libc::SIGKILL);
        }
        Ok(())
    }

    async fn cleanup(&self, job: JobId) -> Result<CleanupReport, BackendError> {
        let mut report = CleanupReport::default();
        let mut images = BTreeSet::new();
        for run_id in self.job_runs(job) {
            let run = self.run_dir(&run_id);
            self.stop(&run_id, Duration::from_secs(5)).await?;
            if let Ok(meta) = run.read_meta() {
                report.merge(self.remove_containers(&meta.containers).await);
                images.extend(meta.images);
            }
            match fs::remove_dir_all(run.path()) {
                Ok(()) => report.removed.push(format!("run {run_id}")),
                Err(err) => report.remaining.push(Leftover { what: format!("run {run_id}"), why: err.to_string() }),
            }
        }
        let leftovers = self.job_containers(job).await;
        report.merge(self.remove_containers(&leftovers).await);
        for image in images {
            // Untag only: the layers stay in storage as the build cache. Name the tag to remove:
            // `podman untag IMAGE` alone removes every name of the image, and two jobs built
            // from the same content share one image (the layer cache), so that would take the
            // other job's name away in the middle of its push.
            let argv = self.inner.tools.podman(&["untag", image.as_str(), image.as_str()]);
            if run_quiet(&argv).await.is_ok() {
                report.removed.push(format!("local image name {image}"));
            }
        }
        let work = self.work_dir(job);
        if work.exists() {
            match fs::remove_dir_all(&work) {
                Ok(()) => report.removed.push("work directory".into()),
                Err(err) => report.remaining.push(Leftover { what: "work directory".into(), why: err.to_string() }),
            }
        }
        Ok(report)
    }

    async fn jobs(&self) -> Result<Vec<JobId>, BackendError> {
        let mut jobs = BTreeSet::new();
        for (dir, parse) in [
            (&self.inner.runs, (|name: &str| name.parse::<RunId>().ok().map(|r| r.job())) as fn(&str) -> Option<JobId>),
            (&self.inner.work, |name: &str| name.parse::<JobId>().ok()),
        ] {
            let entries = fs::read_dir(dir)
                .map_err(|source| BackendError::Io { context: format!("listing {}", dir.display()), source })?;
            jobs.extend(entries.filter_map(|e| e.ok()?.file_name().to_str().and_then(parse)));
        }
        // Containers outlive their run directory when a shim died mid-run.
        let argv =
            self.inner.tools.podman(&["ps", "--all", "--filter", "label=jobforge.job", "--format", "{{.Names}}"]);
        if let Ok(names) = run_quiet(&argv).await {
            let runs = names.lines().filter_map(|name| name.strip_prefix("jobforge-")?.parse::<RunId>().ok());
            jobs.extend(runs.map(|run| run.job()));
        }
        Ok(jobs.into_iter().collect())
    }

    /// The digest buildah wrote with `--digestfile` into the build run's directory.
    async fn built_digest(&self, job: JobId) -> Result<Option<jobforge_core::image::Digest>, BackendError> {
        let path = self.run_dir(&RunKey::build(job).id()).path().join("digest");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => {
                let context = format!("reading the digest the build of job {job} reported");
                return Err(BackendError::Io { context, source: err });
            }
        };
        let digest = text.trim().parse().map_err(|e| BackendError::Io {
            context: format!("the build of job {job} reported {:?} as its digest", text.trim()),
            source: std::io::Error::other(format!("{e}")),
        })?;
        Ok(Some(digest))
    }

    async fn checkout(&self, job: JobId, dockerfile: &RelPath) -> Option<Checkout> {
        let src = self.work_dir(job).join("src");
        let dockerfile = dockerfile.clone();
        tokio::task::spawn_blocking(move || crate::checkout::read(&src, &dockerfile)).await.ok().flatten()
    }

    async fn check(&self) -> Result<(), BackendError> {
        let tools = &self.inner.tools;
        let shim = PathBuf::from(&self.inner.config.shim[0]);
        let mut missing: Vec<String> = [&tools.git, &tools.buildah, &tools.podman, &tools.skopeo]
            .into_iter()
            .filter(|program| find_program(program).is_none())
            .cloned()
            .collect();
        if find_program(&shim.display().to_string()).is_none() {
            missing.push(format!("the shim ({})", shim.display()));
        }
        if !missing.is_empty() {
            return Err(BackendError::Unavailable(format!("not found in PATH: {}", missing.join(", "))));
        }
        if !Path::new("/etc/containers/policy.json").exists() {
            return Err(BackendError::Unavailable(
                "/etc/containers/policy.json is missing (install containers-common)".into(),
            ));
        }
        Ok(())
    }
}

/// Environment names a secret must not take, because podman reads them itself.
fn reserved_env(name: &str) -> bool {
    const EXACT: [&str; 8] = ["PATH", "HOME", "TMPDIR", "LANG", "USER", "LOGNAME", "SHELL", "REGISTRY_AUTH_FILE"];
    const PREFIXES: [&str; 6] = ["CONTAINERS_", "BUILDAH_", "PODMAN_", "XDG_", "STORAGE_", "LD_"];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A step whose shim died keeps running on its own; end its process group.
fn kill_orphaned_step(run: &RunDir) {
    let Ok(Some(group)) = run.read_step() else { return };
    if group.is_alive() {
        tracing::info!(pgid = group.pgid, run = %run.path().display(), "ending the processes of a run whose shim died");
        // SAFETY: kill has no memory-safety preconditions; the start time checked above makes
        // sure the group is still the step's.
        unsafe {
            libc::kill(-group.pgid, libc::SIGKILL);
        }
    }
    let _ = fs::remove_file(run.step_path());
}

/// The shim writes its pid first thing; give it a moment if it has only just started.
async fn wait_for_pid(run: &RunDir) -> Option<i32> {
    for _ in 0..100 {
        if let Ok(Some(pid)) = run.read_pid() {
            return Some(pid);
        }
        if !run.is_running().unwrap_or(false) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions. The caller checked that the shim
    // holds its lock, so `pid` is the shim's and not a recycled one.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Run a short housekeeping command and return its stdout.
async fn run_quiet(argv: &[String]) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let candidate = Path::new(name);
    if candidate.components().count() > 1 {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_default()
}

/// Container runtime state (locks, mounts) belongs on tmpfs, so a reboot clears it; a per-data-dir
/// directory under /run when we may write there, named by a hash that a restarted (or upgraded)
/// service computes the same.
fn runtime_state_dir(data: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let hash = jobforge_core::id::stable_hash(data.as_os_str().as_bytes());
    let run = PathBuf::from("/run/jobforge").join(format!("{hash:016x}"));
    if fs::create_dir_all(&run).is_ok() { run } else { data.join("containers/state") }
}

/// The system CA bundle plus `extra`, for git's GIT_SSL_CAINFO (which replaces, not adds).
fn write_ca_bundle(data: &Path, extra: &Path) -> Result<PathBuf, LocalError> {
    let prepare = |path: PathBuf| move |source| LocalError::Prepare { path, source };
    let mut bundle = fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.push(b'\n');
    bundle.extend(fs::read(extra).map_err(prepare(extra.to_path_buf()))?);
    let path = data.join("ca-bundle.pem");
    fs::write(&path, bundle).map_err(prepare(path.clone()))?;
    Ok(path)
}
