//! [`NomadBackend`]: the `Backend` port on Nomad. Each run is one batch job (rendered by
//! [`crate::render`]); following it is event-driven throughout: blocking queries on the job's
//! allocations say when it was placed, started and ended, and Nomad's framed log streams carry
//! its output as it is written.
//!
//! Line numbers: stdout, stderr, task events and placement notes are numbered in four
//! interleaved sequences (`n = 4k + sequence`, [`Backend::sequences`] is 4), each deterministic
//! on its own: following a run again reads it from the start, numbers every line as before,
//! and yields only those after the cursor in their own sequence.
//!
//! A failed build's checkout (for its diagnosis) is read where the build task left it, in its
//! allocation's directory, through Nomad's client filesystem API: see [`CheckoutReader`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use jobforge_core::config::{JobSpec, RelPath};
use jobforge_core::diagnose::Checkout;
use jobforge_core::logs::{RunCursor, RunLine};
use jobforge_core::ports::{Backend, BackendError, RunEvent, RunEvents, RunExit, RunSpec, Started};
use jobforge_core::state::{CleanupReport, Leftover};
use jobforge_core::validate::Problem;
use jobforge_core::{JobId, Phase, RunId, RunKey, Stream, Timestamp};

use crate::api::{AllocFileInfo, AllocListStub, ClientStatus, LogType, TaskEventType, TaskStatus};
use crate::client::{Blocking, NomadClient};
use crate::error::NomadError;
use crate::job::RegisterRequest;
use crate::render::{self, RenderConfig, render};

/// Settings of the Nomad backend.
#[derive(Clone, Debug)]
pub struct NomadBackendConfig {
    pub render: RenderConfig,
    /// How long a run may wait to be placed before it fails with Nomad's reason.
    pub placement_timeout: Duration,
    /// Longest single blocking query.
    pub wait: Duration,
}

impl Default for NomadBackendConfig {
    fn default() -> Self {
        NomadBackendConfig {
            render: RenderConfig::default(),
            placement_timeout: Duration::from_secs(300),
            wait: Duration::from_secs(60),
        }
    }
}

/// Runs phases as Nomad batch jobs.
#[derive(Clone)]
pub struct NomadBackend {
    client: NomadClient,
    config: Arc<NomadBackendConfig>,
}

impl NomadBackend {
    pub fn new(client: NomadClient, config: NomadBackendConfig) -> Self {
        NomadBackend { client, config: Arc::new(config) }
    }

    pub fn client(&self) -> &NomadClient {
        &self.client
    }

    fn nomad_id(&self, run: &RunId) -> String {
        self.config.render.job_id(run)
    }

    /// The allocation of the job's build, whose directory holds its checkout and digest file.
    /// A build job has one (it is never rescheduled); the latest, should there be more.
    async fn build_alloc(&self, job: JobId) -> Result<Option<AllocListStub>, NomadError> {
        let id = self.nomad_id(&RunKey::build(job).id());
        let (allocs, _) = self.client.job_allocations(&id, None).await?;
        Ok(allocs.into_iter().max_by_key(|a| a.create_index))
    }

    /// Whether Nomad knows the job, or still lists allocations of it (after a purge).
    async fn exists(&self, id: &str) -> Result<bool, NomadError> {
        if self.client.job(id).await?.is_some() {
            return Ok(true);
        }
        Ok(!self.client.job_allocations(id, None).await?.0.is_empty())
    }

    /// Wait, by blocking queries, until no allocation of the job is running, at most `limit`.
    async fn wait_terminal(&self, id: &str, limit: Duration) -> Result<bool, NomadError> {
        let deadline = Instant::now() + limit;
        let mut index = 0;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(self.config.wait);
            let (allocs, meta) = self.client.job_allocations(id, Some(Blocking { index, wait })).await?;
            if allocs.iter().all(AllocListStub::is_terminal) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            index = meta.index.max(1);
        }
    }

    /// Stop the job, wait for its allocations to end, purge it.
    async fn stop_and_purge(&self, id: &str, grace: Duration) -> Result<(), NomadError> {
        self.client.deregister(id, false).await?;
        // The task gets its KillTimeout; wait a little beyond it for the client to report.
        let limit = grace.max(self.config.render.kill_timeout) + Duration::from_secs(30);
        if !self.wait_terminal(id, limit).await? {
            tracing::warn!(nomad_job = %id, "allocations still running after the stop; purging anyway");
        }
        self.client.deregister(id, true).await?;
        Ok(())
    }
}

/// What a rendered job could not carry as the caller meant it.
fn unsupported(spec: &JobSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if spec.test_entry_point {
        // The image's own entry point runs without a shell of ours to decode an encoded value,
        // and Nomad would replace the `${...}` before the test saw it.
        for (name, value) in &spec.test.env {
            if render::nomad_interpolates(value) {
                problems.push(Problem::new(
                    format!("test.env.{name}"),
                    "holds `${...}`, which Nomad replaces with its own variables in a task's environment, and the \
                     image's entry point (test_entry_point) runs with no shell to pass it on literally; write it \
                     without `${`, or use test_commands",
                ));
            }
        }
    }
    if !spec.test_commands.is_empty() {
        let var = render::TEST_COMMAND_VAR;
        let reason = format!("{var} carries the test command on the Nomad backend; choose another name");
        if spec.test.env.keys().any(|name| name.as_str() == var) {
            problems.push(Problem::new(format!("test.env.{var}"), reason.clone()));
        }
        for (i, secret) in spec.test.vault_secrets.iter().enumerate() {
            for (field, env) in &secret.fields {
                if env.as_str() == var {
                    problems.push(Problem::new(format!("test.vault_secrets[{i}].fields.{field}"), reason.clone()));
                }
            }
        }
    }
    problems
}

fn backend_error(context: &str, error: NomadError) -> BackendError {
    BackendError::Unavailable(format!("{context}: {error}"))
}

#[async_trait]
impl Backend for NomadBackend {
    fn name(&self) -> &'static str {
        "nomad"
    }

    fn unsupported(&self, spec: &JobSpec) -> Vec<Problem> {
        unsupported(spec)
    }

    async fn start(&self, spec: &RunSpec) -> Result<Started, BackendError> {
        let id = self.nomad_id(&spec.id);
        let start_error = |error: NomadError| BackendError::Start { run: spec.id.clone(), message: error.to_string() };
        if self.exists(&id).await.map_err(start_error)? {
            return Ok(Started::Existing);
        }
        let job = render(&self.config.render, spec);
        // Check-and-set with index 0: registers only if no job with this ID exists, so two
        // starts racing (or a retry after a lost answer) cannot both register.
        let request = RegisterRequest { job, enforce_index: true, job_modify_index: 0 };
        match self.client.register(&request).await {
            Ok(answer) => {
                tracing::info!(nomad_job = %id, eval = %answer.eval_id, "registered");
                Ok(Started::New)
            }
            Err(NomadError::IndexConflict(_)) => Ok(Started::Existing),
            Err(error) => Err(start_error(error)),
        }
    }

    fn sequences(&self) -> u64 {
        SEQUENCES
    }

    async fn follow(&self, run: &RunId, from: &RunCursor) -> Result<RunEvents, BackendError> {
        let id = self.nomad_id(run);
        if !self.exists(&id).await.map_err(|e| backend_error("looking up the run", e))? {
            return Err(BackendError::NoSuchRun(run.clone()));
        }
        let (tx, rx) = mpsc::channel(1024);
        let follower = Follower {
            client: self.client.clone(),
            config: self.config.clone(),
            id,
            task: run.key().phase.to_string(),
            tx,
            numbers: [0; 4],
            from: from.clone(),
            began: false,
        };
        tokio::spawn(follower.run());
        Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed())
    }

    async fn stop(&self, run: &RunId, grace: Duration) -> Result<(), BackendError> {
        let id = self.nomad_id(run);
        if !self.exists(&id).await.map_err(|e| backend_error("looking up the run", e))? {
            return Ok(());
        }
        self.stop_and_purge(&id, grace).await.map_err(|e| backend_error("stopping the run", e))
    }

    async fn cleanup(&self, job: JobId) -> Result<CleanupReport, BackendError> {
        let prefix = format!("{}-", self.config.render.prefix);
        let jobs = self.client.jobs(&prefix).await.map_err(|e| backend_error("listing jobs", e))?;
        let mut report = CleanupReport::default();
        for stub in jobs {
            if self.config.render.run_id(&stub.id).is_none_or(|run| run.job() != job) {
                continue;
            }
            // One job that cannot be removed must not keep the others.
            let what = format!("nomad job {}", stub.id);
            match self.stop_and_purge(&stub.id, Duration::from_secs(5)).await {
                Ok(()) => report.removed.push(what),
                Err(error) => report.remaining.push(Leftover { what, why: error.to_string() }),
            }
        }
        Ok(report)
    }

    async fn jobs(&self) -> Result<Vec<JobId>, BackendError> {
        let prefix = format!("{}-", self.config.render.prefix);
        let jobs = self.client.jobs(&prefix).await.map_err(|e| backend_error("listing jobs", e))?;
        let ids: BTreeSet<JobId> =
            jobs.iter().filter_map(|stub| self.config.render.run_id(&stub.id)).map(|run| run.job()).collect();
        Ok(ids.into_iter().collect())
    }

    /// The digest file the build task wrote (`build.sh`: `--digestfile`), read from its
    /// allocation; `None` for a build that wrote none (one started by an older jobforge).
    async fn built_digest(&self, job: JobId) -> Result<Option<jobforge_core::image::Digest>, BackendError> {
        let Some(alloc) = self.build_alloc(job).await.map_err(|e| backend_error("Nomad", e))? else { return Ok(None) };
        let id = self.nomad_id(&RunKey::build(job).id());
        let path = format!("{}/local/digest", Phase::Build.as_str());
        let bytes = match self.client.fs_cat(&alloc.id, &path, 1024).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(nomad_job = %id, %error, "the build's digest file cannot be read");
                return Ok(None);
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match text.trim().parse() {
            Ok(digest) => Ok(Some(digest)),
            Err(_) => Err(BackendError::Unavailable(format!("the build reported {:?} as its digest", text.trim()))),
        }
    }

    async fn checkout(&self, job: JobId, dockerfile: &RelPath) -> Option<Checkout> {
        let alloc = match self.build_alloc(job).await {
            Ok(Some(alloc)) => alloc,
            Ok(None) => {
                tracing::debug!(job_id = %job, "the build has no allocation to read a checkout from");
                return None;
            }
            Err(error) => {
                tracing::debug!(job_id = %job, %error, "cannot find the build's allocation to read its checkout");
                return None;
            }
        };
        CheckoutReader::new(&self.client, &alloc.id, Phase::Build.as_str()).read(dockerfile).await
    }

    async fn check(&self) -> Result<(), BackendError> {
        match self.client.leader().await {
            Ok(leader) if !leader.is_empty() => Ok(()),
            Ok(_) => Err(BackendError::Unavailable("Nomad has no cluster leader".into())),
            Err(error) => Err(backend_error("Nomad", error)),
        }
    }
}

/// A Dockerfile larger than this is not read (as on the local backend).
const DOCKERFILE_MAX: usize = 1024 * 1024;
/// At most this many names are listed, and this deep (as on the local backend).
const FILES_MAX: usize = 5000;
const DEPTH_MAX: usize = 8;
/// At most this many directory listings are asked for: each is a request to Nomad, and a
/// repository of many small directories must not keep the diagnosis waiting.
const LISTINGS_MAX: usize = 300;

/// Reads a build's checkout, `<task>/local/src` in its allocation's directory (the build task
/// clones into `$NOMAD_TASK_DIR/src`, and `NOMAD_TASK_DIR` is `<task>/local`), into what the
/// local backend's checkout reader gives: the file names breadth-first up to [`FILES_MAX`] and
/// [`DEPTH_MAX`] (`.git` left out, directories ending in `/`, relative to the repository's root,
/// sorted), and the Dockerfile up to [`DOCKERFILE_MAX`].
///
/// Every path asked for is `<task>/local/src` followed by names Nomad listed there (or the
/// job's checked path, split into its parts), so none leads out of the checkout; and since
/// Nomad's stat and cat follow symbolic links, the Dockerfile is read only when each part of
/// its path is listed as a real directory and the file itself as a regular file.
struct CheckoutReader<'a> {
    client: &'a NomadClient,
    alloc: &'a str,
    /// `<task>/local/src`, relative to the allocation's directory.
    root: String,
    /// Listings so far, by directory relative to the root ("" for the root itself).
    listings: BTreeMap<String, Vec<AllocFileInfo>>,
    /// Listings asked for, answered or not.
    requests: usize,
}

impl<'a> CheckoutReader<'a> {
    fn new(client: &'a NomadClient, alloc: &'a str, task: &str) -> CheckoutReader<'a> {
        CheckoutReader { client, alloc, root: format!("{task}/local/src"), listings: BTreeMap::new(), requests: 0 }
    }

    /// What the checkout holds; `None` if the checkout cannot be listed at all.
    async fn read(mut self, dockerfile: &RelPath) -> Option<Checkout> {
        if let Err(error) = self.list("").await {
            tracing::debug!(alloc = %self.alloc, %error, "cannot list the build's checkout");
            return None;
        }
        // The Dockerfile first: the directories on its way are then listed whatever bound the
        // walk reaches (and the walk finds them listed already).
        let dockerfile = self.dockerfile(dockerfile).await;
        let files = self.files().await;
        Some(Checkout { dockerfile, files })
    }

    /// The path, relative to the allocation's directory, of `relative` (parts of the checkout).
    fn path(&self, relative: &str) -> String {
        if relative.is_empty() { self.root.clone() } else { format!("{}/{relative}", self.root) }
    }

    /// The entries of `dir` (relative to the root), asked for once.
    async fn list(&mut self, dir: &str) -> Result<&[AllocFileInfo], NomadError> {
        if !self.listings.contains_key(dir) {
            if self.requests >= LISTINGS_MAX {
                return Err(NomadError::Decode {
                    what: "the checkout".into(),
                    message: format!("more than {LISTINGS_MAX} directories to list"),
                });
            }
            self.requests += 1;
            let mut entries = self.client.fs_ls(self.alloc, &self.path(dir)).await?;
            // A name that is not one plain part (which Nomad never lists) would lead elsewhere.
            entries.retain(|entry| is_plain_name(&entry.name));
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            self.listings.insert(dir.to_owned(), entries);
        }
        Ok(self.listings.get(dir).map(Vec::as_slice).unwrap_or_default())
    }

    /// The names in the checkout, breadth-first within the bounds, then sorted.
    async fn files(&mut self) -> Vec<String> {
        let mut files = Vec::new();
        let mut queue = VecDeque::from([(String::new(), 0)]);
        'walk: while let Some((dir, depth)) = queue.pop_front() {
            let entries = match self.list(&dir).await {
                Ok(entries) => entries.to_vec(),
                // A directory gone since it was listed only leaves a gap. Anything else (Nomad
                // unreachable or failing, the request bound reached) would end every other
                // listing the same way, each after its timeout: stop, and keep what is listed.
                Err(NomadError::NotFound(_)) => continue,
                Err(error) => {
                    tracing::debug!(alloc = %self.alloc, dir = %self.path(&dir), %error, "checkout listing stopped");
                    break;
                }
            };
            for entry in entries.into_iter().filter(|entry| entry.name != ".git") {
                if files.len() >= FILES_MAX {
                    break 'walk;
                }
                let name = if dir.is_empty() { entry.name } else { format!("{dir}/{}", entry.name) };
                if entry.is_dir {
                    files.push(format!("{name}/"));
                    if depth + 1 < DEPTH_MAX {
                        queue.push_back((name, depth + 1));
                    }
                } else {
                    files.push(name);
                }
            }
        }
        files.sort();
        files
    }

    /// The committed Dockerfile at `path`, if it is a regular file inside the checkout, reached
    /// through real directories, of at most [`DOCKERFILE_MAX`] bytes of UTF-8.
    async fn dockerfile(&mut self, path: &RelPath) -> Option<String> {
        let parts: Vec<&str> = path.as_str().split('/').filter(|part| !matches!(*part, "" | ".")).collect();
        if parts.is_empty() || !parts.iter().all(|part| is_plain_name(part)) {
            return None;
        }
        for (at, part) in parts.iter().enumerate() {
            let dir = parts[..at].join("/");
            let entries = match self.list(&dir).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::debug!(alloc = %self.alloc, dir = %self.path(&dir), %error, "cannot list the Dockerfile's directory");
                    return None;
                }
            };
            let entry = entries.iter().find(|entry| entry.name == *part)?;
            let last = at + 1 == parts.len();
            if (last && !entry.is_regular_file()) || (!last && !entry.is_dir) {
                tracing::debug!(alloc = %self.alloc, path = %path.as_str(), "the Dockerfile is not a file of the checkout");
                return None;
            }
        }
        let full = self.path(&parts.join("/"));
        let read = async {
            let info = self.client.fs_stat(self.alloc, &full).await?;
            if info.is_dir || info.size < 0 || info.size as u64 > DOCKERFILE_MAX as u64 {
                return Ok(None);
            }
            self.client.fs_cat(self.alloc, &full, DOCKERFILE_MAX).await.map(Some)
        };
        match read.await {
            Ok(Some(bytes)) => String::from_utf8(bytes.to_vec()).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(alloc = %self.alloc, path = %full, %error, "cannot read the Dockerfile");
                None
            }
        }
    }
}

/// One part of a path, naming an entry of its directory: not empty, `.` or `..`, no `/`.
fn is_plain_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains('/')
}

type Sender = mpsc::Sender<Result<RunEvent, BackendError>>;

/// Line sequences of a run: see [`Sequence`].
const SEQUENCES: u64 = 4;

/// The four line sequences of a run (see the module docs).
#[derive(Clone, Copy)]
enum Sequence {
    Stdout = 0,
    Stderr = 1,
    TaskEvent = 2,
    Placement = 3,
}

/// What the follower's helpers report.
enum Update {
    Alloc(Box<AllocListStub>),
    Chunk(LogType, bytes::Bytes),
    Failed(NomadError),
}

/// Bytes of stdout and stderr received so far, and the partial last line of each.
#[derive(Default)]
struct LogBuffers {
    received: [usize; 2],
    partial: [Vec<u8>; 2],
    /// The stream is inside a line already cut at its limit: the rest of it is dropped.
    dropping: [bool; 2],
}

impl LogBuffers {
    fn slot(stream: LogType) -> usize {
        match stream {
            LogType::Stdout => 0,
            LogType::Stderr => 1,
        }
    }

    fn received(&self, stream: LogType) -> usize {
        self.received[Self::slot(stream)]
    }

    /// Add bytes; returns the lines they complete.
    fn push(&mut self, stream: LogType, data: &[u8]) -> Vec<String> {
        let slot = Self::slot(stream);
        self.received[slot] += data.len();
        take_lines(&mut self.partial[slot], &mut self.dropping[slot], data)
    }

    /// The last line, if the output did not end with a newline.
    fn finish(&mut self, stream: LogType) -> Option<String> {
        let slot = Self::slot(stream);
        self.dropping[slot] = false;
        let rest = std::mem::take(&mut self.partial[slot]);
        (!rest.is_empty()).then(|| jobforge_core::logs::cut_long(&String::from_utf8_lossy(&rest)))
    }
}

/// Follows one Nomad job to its end.
struct Follower {
    client: NomadClient,
    config: Arc<NomadBackendConfig>,
    id: String,
    task: String,
    tx: Sender,
    numbers: [u64; 4],
    /// Lines up to here (in each sequence) are archived already: numbered, not sent.
    from: RunCursor,
    began: bool,
}

impl Follower {
    async fn run(mut self) {
        if let Err(error) = self.follow().await {
            let _ = self.tx.send(Err(backend_error(&format!("following {}", self.id), error))).await;
        }
    }

    async fn follow(&mut self) -> Result<(), NomadError> {
        let Some((mut latest, index)) = self.placed().await? else { return Ok(()) };
        let (updates, mut inbox) = mpsc::channel(256);
        let mut helpers = vec![tokio::spawn(watch_alloc(
            self.client.clone(),
            self.id.clone(),
            latest.id.clone(),
            index,
            self.config.wait,
            updates.clone(),
        ))];
        let mut logs = LogBuffers::default();
        let mut following = false;
        let mut events_seen = 0;
        let failure = loop {
            events_seen = self.task_events(&latest, events_seen).await;
            let started = latest.task_states.get(&self.task).is_some_and(|t| t.state != TaskStatus::Pending);
            if started {
                self.began(&latest).await?;
            }
            if started && !following {
                following = true;
                for stream in [LogType::Stdout, LogType::Stderr] {
                    let (client, alloc, task) = (self.client.clone(), latest.id.clone(), self.task.clone());
                    helpers.push(tokio::spawn(follow_logs(client, alloc, task, stream, updates.clone())));
                }
            }
            if latest.is_terminal() {
                break None;
            }
            match inbox.recv().await {
                Some(Update::Alloc(stub)) => latest = *stub,
                Some(Update::Chunk(stream, data)) => {
                    for line in logs.push(stream, &data) {
                        self.line(sequence(stream), line).await?;
                    }
                }
                Some(Update::Failed(error)) => break Some(error),
                None => break None,
            }
        };
        for helper in &helpers {
            helper.abort();
        }
        if let Some(error) = failure {
            return Err(error);
        }
        // The chunks already queued, then the rest of each log from where we are: the run has
        // ended, so one plain read reaches the end.
        while let Ok(update) = inbox.try_recv() {
            if let Update::Chunk(stream, data) = update {
                for line in logs.push(stream, &data) {
                    self.line(sequence(stream), line).await?;
                }
            }
        }
        if following || task_ran(&latest, &self.task) {
            self.began(&latest).await?;
            for stream in [LogType::Stdout, LogType::Stderr] {
                let rest = self.rest_of_log(&latest.id, stream, logs.received(stream)).await;
                for line in logs.push(stream, &rest) {
                    self.line(sequence(stream), line).await?;
                }
            }
        }
        for stream in [LogType::Stdout, LogType::Stderr] {
            if let Some(line) = logs.finish(stream) {
                self.line(sequence(stream), line).await?;
            }
        }
        let exit = exit_of(&latest, &self.task);
        let _ = self.tx.send(Ok(RunEvent::Exit(exit))).await;
        Ok(())
    }

    /// Wait until the job has an allocation; `None` (after reporting the exit) when Nomad could
    /// not place it within the placement timeout.
    async fn placed(&mut self) -> Result<Option<(AllocListStub, u64)>, NomadError> {
        let submitted = self.client.job(&self.id).await?.map(|job| job.submit_time).unwrap_or(0);
        let since_submit = Timestamp::now().unix_millis().saturating_sub(submitted / 1_000_000).max(0) as u64;
        let remaining = self.config.placement_timeout.saturating_sub(Duration::from_millis(since_submit));
        let deadline = Instant::now() + remaining;
        let mut index = 0;
        let mut noted = false;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now()).min(self.config.wait);
            let blocking = (index > 0).then_some(Blocking { index, wait });
            let (allocs, meta) = self.client.job_allocations(&self.id, blocking).await?;
            if let Some(alloc) = allocs.into_iter().max_by_key(|a| a.create_index) {
                return Ok(Some((alloc, meta.index)));
            }
            let reason = self.placement_reason().await?;
            if let Some(reason) = &reason
                && !noted
            {
                noted = true;
                self.line(Sequence::Placement, format!("nomad: waiting for placement: {reason}")).await?;
            }
            if Instant::now() >= deadline {
                let why = reason.unwrap_or_else(|| "no allocation was created".into());
                let message =
                    format!("Nomad could not place it within {}s: {why}", self.config.placement_timeout.as_secs());
                let _ = self.tx.send(Ok(RunEvent::Exit(RunExit::StartFailed { message }))).await;
                return Ok(None);
            }
            index = meta.index.max(1);
        }
    }

    /// Nomad's own reason a job is not placed, from its evaluations.
    async fn placement_reason(&self) -> Result<Option<String>, NomadError> {
        let evals = self.client.job_evaluations(&self.id).await?;
        let failed = evals.iter().filter(|e| !e.failed_tg_allocs.is_empty()).max_by_key(|e| e.modify_index);
        Ok(failed.map(|eval| {
            eval.failed_tg_allocs
                .iter()
                .map(|(group, metric)| format!("group {group}: {}", metric.describe()))
                .collect::<Vec<_>>()
                .join("; ")
        }))
    }

    /// Report task events not reported yet; returns how many have been.
    async fn task_events(&mut self, stub: &AllocListStub, seen: usize) -> usize {
        let Some(state) = stub.task_states.get(&self.task) else { return seen };
        let mut count = seen;
        for event in state.events.iter().skip(seen) {
            let text = match event.describe() {
                "" => format!("nomad: {}", event.kind.as_str()),
                detail => format!("nomad: {}: {detail}", event.kind.as_str()),
            };
            if self.line(Sequence::TaskEvent, text).await.is_err() {
                break;
            }
            count += 1;
        }
        count
    }

    async fn line(&mut self, sequence: Sequence, text: String) -> Result<(), NomadError> {
        let slot = sequence as usize;
        self.numbers[slot] += 1;
        let n = self.numbers[slot] * SEQUENCES + slot as u64;
        if !self.from.is_new(n) {
            return Ok(());
        }
        let stream = match sequence {
            // The build and publish scripts' own `==> ` lines are jobforge's, as on the local
            // backend; a test's output is the caller's alone.
            Sequence::Stdout if self.task != "test" && text.starts_with("==> ") => Stream::System,
            Sequence::Stdout => Stream::Stdout,
            Sequence::Stderr => Stream::Stderr,
            Sequence::TaskEvent | Sequence::Placement => Stream::System,
        };
        self.send(RunEvent::Line(RunLine { n, stream, ts: Timestamp::now(), text })).await
    }

    /// Report, once, when the task began: Nomad's own record of its start.
    async fn began(&mut self, stub: &AllocListStub) -> Result<(), NomadError> {
        if self.began {
            return Ok(());
        }
        self.began = true;
        let started = stub.task_states.get(&self.task).and_then(|t| t.started_at);
        let at = started.map(Timestamp::from_datetime).unwrap_or_else(Timestamp::now);
        self.send(RunEvent::Began { at }).await
    }

    async fn send(&self, event: RunEvent) -> Result<(), NomadError> {
        self.tx
            .send(Ok(event))
            .await
            .map_err(|_| NomadError::Decode { what: "log lines".into(), message: "the reader went away".into() })
    }

    /// The log from `offset` to its current end (the run has ended, so this is all of it).
    async fn rest_of_log(&self, alloc: &str, stream: LogType, offset: usize) -> Vec<u8> {
        let mut rest = Vec::new();
        let Ok(mut frames) = self.client.logs(alloc, &self.task, stream, false, offset as i64).await else {
            return rest;
        };
        while let Some(Ok(frame)) = frames.next().await {
            rest.extend_from_slice(&frame.data);
        }
        rest
    }
}

fn sequence(stream: LogType) -> Sequence {
    match stream {
        LogType::Stdout => Sequence::Stdout,
        LogType::Stderr => Sequence::Stderr,
    }
}

/// Complete lines from the front of `buffer`, leaving a partial last line in it.
/// The lines `data` completes after what `partial` holds. A line is kept to
/// [`MAX_LINE_BYTES`](jobforge_core::logs::MAX_LINE_BYTES): once `partial` reaches it without a
/// newline, its start goes out marked as cut and the rest of the line is dropped (`dropping`)
/// as it arrives, so a task printing without end holds one bounded buffer. Each byte is looked
/// at once.
fn take_lines(partial: &mut Vec<u8>, dropping: &mut bool, mut data: &[u8]) -> Vec<String> {
    let limit = jobforge_core::logs::MAX_LINE_BYTES;
    let mut lines = Vec::new();
    while !data.is_empty() {
        let newline = data.iter().position(|&b| b == b'\n');
        let (piece, rest) = match newline {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (data, &data[data.len()..]),
        };
        if !*dropping {
            let room = (limit + 1).saturating_sub(partial.len());
            partial.extend_from_slice(&piece[..piece.len().min(room)]);
        }
        match newline {
            Some(_) if *dropping => *dropping = false,
            Some(_) => {
                let text = String::from_utf8_lossy(partial);
                lines.push(jobforge_core::logs::cut_long(text.trim_end_matches('\r')));
                partial.clear();
            }
            None if !*dropping && partial.len() > limit => {
                lines.push(jobforge_core::logs::mark_cut(&String::from_utf8_lossy(partial)));
                partial.clear();
                *dropping = true;
            }
            None => {}
        }
        data = rest;
    }
    lines
}

fn task_ran(stub: &AllocListStub, task: &str) -> bool {
    stub.task_states
        .get(task)
        .is_some_and(|t| t.started_at.is_some() || t.last_event(&TaskEventType::Started).is_some())
}

/// How the run ended, from its allocation's final task state.
fn exit_of(stub: &AllocListStub, task: &str) -> RunExit {
    if stub.client_status == ClientStatus::Lost {
        return RunExit::Lost { message: format!("Nomad lost the node running allocation {}", stub.id) };
    }
    let Some(state) = stub.task_states.get(task) else {
        return RunExit::StartFailed { message: format!("allocation {} ended without running task {task}", stub.id) };
    };
    if let Some(terminated) = state.last_event(&TaskEventType::Terminated) {
        let code = terminated.exit_code();
        let signal = terminated.details.get("signal").and_then(|s| s.parse::<i64>().ok()).unwrap_or(terminated.signal);
        if code == 0 && signal != 0 {
            return RunExit::Signaled { signal: signal as i32 };
        }
        return RunExit::Exited { code: code as i32 };
    }
    let reason = state
        .events
        .iter()
        .rev()
        .find(|e| e.fails_task() || matches!(e.kind, TaskEventType::DriverFailure | TaskEventType::SetupFailure))
        .map(|e| e.describe().to_owned())
        .unwrap_or_else(|| format!("the task never ran ({})", stub.client_description));
    if state.failed || stub.client_status == ClientStatus::Failed {
        RunExit::StartFailed { message: reason }
    } else {
        RunExit::Exited { code: 0 }
    }
}

/// Blocking queries on the job's allocations; reports every change of `alloc` until it ends.
async fn watch_alloc(
    client: NomadClient,
    job: String,
    alloc: String,
    mut index: u64,
    wait: Duration,
    updates: mpsc::Sender<Update>,
) {
    loop {
        match client.job_allocations(&job, Some(Blocking { index: index.max(1), wait })).await {
            Ok((allocs, meta)) => {
                if meta.index != index
                    && let Some(stub) = allocs.into_iter().find(|a| a.id == alloc)
                {
                    let terminal = stub.is_terminal();
                    if updates.send(Update::Alloc(Box::new(stub))).await.is_err() || terminal {
                        return;
                    }
                }
                index = meta.index;
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "blocking query failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                let _ = updates.send(Update::Failed(error)).await;
                return;
            }
        }
    }
}

/// Follow one log of the task, sending its bytes as they come.
async fn follow_logs(client: NomadClient, alloc: String, task: String, stream: LogType, updates: mpsc::Sender<Update>) {
    let mut frames = match client.logs(&alloc, &task, stream, true, 0).await {
        Ok(frames) => frames,
        Err(error) => {
            // The run's end brings a final read of the whole log; nothing is lost here.
            tracing::debug!(%error, "log stream not available");
            return;
        }
    };
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(frame) if !frame.data.is_empty() => {
                if updates.send(Update::Chunk(stream, frame.data)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "log stream ended");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_and_partial_lines_kept() {
        let (mut partial, mut dropping) = (Vec::new(), false);
        assert_eq!(take_lines(&mut partial, &mut dropping, b"one\ntwo\r\nthr"), ["one", "two"]);
        assert_eq!(partial, b"thr");
        assert_eq!(take_lines(&mut partial, &mut dropping, b"ee\n"), ["three"]);
        assert!(partial.is_empty());
        assert!(take_lines(&mut partial, &mut dropping, b"no newline").is_empty());
    }

    /// A line without end, in chunks of any size, holds one bounded buffer and comes out once,
    /// marked as cut; the next line is whole again.
    #[test]
    fn an_endless_line_is_cut_and_the_rest_dropped() {
        use jobforge_core::logs::{CUT_MARKER, MAX_LINE_BYTES};
        let (mut buffers, chunk) = (LogBuffers::default(), vec![b'x'; 7000]);
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines.extend(buffers.push(LogType::Stdout, &chunk));
            assert!(buffers.partial[0].len() <= MAX_LINE_BYTES + 1, "bounded");
        }
        lines.extend(buffers.push(LogType::Stdout, b"xx\nafter\n"));
        assert_eq!(lines.len(), 2, "{:?}", lines.iter().map(String::len).collect::<Vec<_>>());
        assert!(lines[0].ends_with(CUT_MARKER) && lines[0].len() <= MAX_LINE_BYTES);
        assert_eq!(lines[1], "after");
        assert_eq!(buffers.received(LogType::Stdout), 200 * 7000 + 9, "offsets count every byte");
        let long_with_newline = [vec![b'y'; MAX_LINE_BYTES + 10], b"\n".to_vec()].concat();
        let cut = buffers.push(LogType::Stderr, &long_with_newline);
        assert!(cut.len() == 1 && cut[0].ends_with(CUT_MARKER));
    }

    fn spec(extra: serde_json::Value) -> JobSpec {
        let mut job = serde_json::json!({
            "repo_url": "https://git.example.com/app.git",
            "image_name": "app",
            "registry_url": "registry.example.com",
        });
        for (key, value) in extra.as_object().into_iter().flatten() {
            job[key] = value.clone();
        }
        jobforge_core::validate::job_spec(&job).unwrap_or_else(|problems| panic!("{problems:?}"))
    }

    fn fields(spec: &JobSpec) -> Vec<String> {
        unsupported(spec).into_iter().map(|p| p.field).collect::<Vec<_>>()
    }

    #[test]
    fn what_a_rendered_job_cannot_carry_is_refused_by_field() {
        let env = serde_json::json!({"A": "${NOMAD_JOB_NAME}", "B": "$HOME ${HOME:-x} ${}", "C": "plain"});
        // Through the test wrapper every value arrives literally.
        assert!(fields(&spec(serde_json::json!({"test_commands": ["true"], "test": {"env": env}}))).is_empty());
        // The image's entry point has no wrapper: only the value Nomad would rewrite is refused.
        let entry = spec(serde_json::json!({"test_entry_point": true, "test": {"env": env}}));
        assert_eq!(fields(&entry), ["test.env.A"]);
        assert!(unsupported(&entry)[0].message.contains("test_entry_point"));
        // The wrapper's own variable cannot be the caller's too.
        let clash = serde_json::json!({
            "test_commands": ["true"],
            "test": {
                "env": {"JF_TEST_COMMAND": "x"},
                "vault_secrets": [{"path": "app/db", "fields": {"password": "JF_TEST_COMMAND"}}],
            },
        });
        assert_eq!(fields(&spec(clash)), ["test.env.JF_TEST_COMMAND", "test.vault_secrets[0].fields.password"]);
    }
}
