//! [`MemoryBackend`]: runs that live in memory, scripted by the job's own input. A run prints
//! its lines over (tokio) time, then exits or hangs until stopped, and does what its phase
//! does to the [`MemoryRegistry`]: a build pushes the temp image, a publish copies it.
//!
//! The script ([`Script`]) of a build is its `SIM_BUILD` build arg, of a test its command, of a
//! publish its target tags (`hang`, `fail`): `lines:<n>` sets how many lines it prints,
//! `exit:<code>` how it ends, `hang` that it runs until stopped. Runs outlive the engine that
//! started them, as shims and Nomad jobs do, so a crashed engine's successor finds them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, watch};

use jobforge_core::config::{JobSpec, TestCase};
use jobforge_core::image::{Digest, Reference};
use jobforge_core::logs::{RunCursor, RunLine};
use jobforge_core::ports::{Backend, BackendError, Clock, RunEvent, RunEvents, RunExit, RunSpec, RunWork, Started};
use jobforge_core::state::CleanupReport;
use jobforge_core::validate::Problem;
use jobforge_core::{JobId, Phase, RunId, RunKey, Stream};

use super::{MemoryRegistry, TokioClock};

/// What a run does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub lines: u64,
    /// How it ends on its own; `None`: it runs until stopped.
    pub exit: Option<i32>,
    pub every: Duration,
}

impl Script {
    /// The script in `text` (`lines:3 exit:1`, `hang`), over `default`.
    fn parse(text: &str, default: Script) -> Script {
        let mut script = default;
        for word in text.split_whitespace() {
            match word.split_once(':') {
                Some(("lines", n)) => script.lines = n.parse().unwrap_or(script.lines),
                Some(("exit", code)) => script.exit = code.parse().ok(),
                _ if word == "hang" => script.exit = None,
                _ if word == "fail" => script.exit = Some(1),
                _ => {}
            }
        }
        script
    }
}

/// One run: what it printed so far and how it ended.
struct Run {
    state: Mutex<Progress>,
    changes: watch::Sender<u64>,
    stop: Notify,
    began: jobforge_core::Timestamp,
}

#[derive(Default)]
struct Progress {
    lines: Vec<RunLine>,
    exit: Option<RunExit>,
    stopping: bool,
}

/// Runs in memory.
pub struct MemoryBackend {
    runs: Mutex<BTreeMap<RunId, Arc<Run>>>,
    /// How many times each run was started anew, cleanups included: never more than once.
    starts: Mutex<BTreeMap<RunId, u32>>,
    /// Every line each run printed, kept after cleanup, to check that none was lost.
    printed: Mutex<BTreeMap<RunId, u64>>,
    registry: Arc<MemoryRegistry>,
    clock: TokioClock,
    seed: u64,
    /// Bumped on every new start, for tests that act when a phase begins.
    started: watch::Sender<u64>,
}

impl MemoryBackend {
    /// `seed` varies how many lines runs print and how fast, unless their script says.
    pub fn new(registry: Arc<MemoryRegistry>, clock: TokioClock, seed: u64) -> Self {
        MemoryBackend {
            runs: Mutex::default(),
            starts: Mutex::default(),
            printed: Mutex::default(),
            registry,
            clock,
            seed,
            started: watch::Sender::new(0),
        }
    }

    /// Changes whenever a run is started anew.
    pub fn watch_starts(&self) -> watch::Receiver<u64> {
        self.started.subscribe()
    }

    /// How many times each run was started anew.
    pub fn starts(&self) -> BTreeMap<RunId, u32> {
        self.starts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many lines each run printed.
    pub fn printed(&self) -> BTreeMap<RunId, u64> {
        self.printed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The runs the backend holds now.
    pub fn runs(&self) -> Vec<RunId> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    fn run(&self, id: &RunId) -> Option<Arc<Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// The default script of a run: from the seed, by phase and test index (not by run id,
    /// which is random), so one seed gives one schedule.
    fn default_script(&self, spec: &RunSpec) -> Script {
        let key = spec.id.key();
        let salt = u64::from(key.test_index.unwrap_or(0)) * 31 + key.phase as u64 * 7;
        let roll = splitmix(self.seed ^ salt);
        Script { lines: 1 + roll % 4, exit: Some(0), every: Duration::from_millis(20 + (roll >> 8) % 200) }
    }

    fn script(&self, spec: &RunSpec) -> Script {
        let default = self.default_script(spec);
        match &spec.work {
            RunWork::Build(build) => {
                let text = build.build_args.iter().find(|(name, _)| name.as_str() == "SIM_BUILD");
                Script::parse(text.map_or("", |(_, v)| v.as_str()), default)
            }
            RunWork::Test(test) => match &test.case {
                TestCase::Command(command) => Script::parse(command, default),
                TestCase::EntryPoint => default,
            },
            RunWork::Publish(publish) => {
                let tags: Vec<String> = publish
                    .targets
                    .iter()
                    .filter_map(|t| match &t.reference {
                        Reference::Tag(tag) => Some(tag.to_string()),
                        Reference::Digest(_) => None,
                    })
                    .collect();
                Script::parse(&tags.join(" "), default)
            }
        }
    }
}

/// A well-mixed 64-bit value from `x` (SplitMix64).
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The digest a job's build pushes.
fn build_digest(job: JobId) -> Digest {
    let hash = Sha256::digest(job.to_string().as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}").parse().expect("a sha256 digest in hex is a digest")
}

impl Run {
    fn push(&self, line: RunLine) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).lines.push(line);
        self.changes.send_modify(|v| *v += 1);
    }

    fn end(&self, exit: RunExit) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).exit.get_or_insert(exit);
        self.changes.send_modify(|v| *v += 1);
    }

    fn stopping(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stopping
    }
}

/// Print the script's lines, then end as it says (or when stopped), doing the phase's work.
async fn play(run: Arc<Run>, spec: RunSpec, script: Script, registry: Arc<MemoryRegistry>, clock: TokioClock) {
    let stopped = |run: &Run| run.stopping();
    for n in 1..=script.lines {
        tokio::select! {
            _ = tokio::time::sleep(script.every) => {}
            _ = run.stop.notified() => {}
        }
        if stopped(&run) {
            break;
        }
        run.push(RunLine { n, stream: Stream::Stdout, ts: clock.now(), text: format!("line {n}") });
    }
    let exit = match script.exit {
        Some(code) if !stopped(&run) => {
            tokio::select! {
                _ = tokio::time::sleep(script.every) => {}
                _ = run.stop.notified() => {}
            }
            code
        }
        Some(_) | None => {
            while !stopped(&run) {
                run.stop.notified().await;
            }
            143
        }
    };
    if stopped(&run) {
        return run.end(RunExit::Signaled { signal: 15 });
    }
    if exit == 0 {
        finish_work(&spec, &registry);
    }
    run.end(RunExit::Exited { code: exit });
}

/// What a successful run leaves in the registry.
fn finish_work(spec: &RunSpec, registry: &MemoryRegistry) {
    match &spec.work {
        RunWork::Build(build) => registry.push(&build.image, &build_digest(spec.id.job())),
        RunWork::Publish(publish) => {
            if let Some(digest) = registry.resolve(&publish.source) {
                for target in &publish.targets {
                    registry.push(target, &digest);
                }
            }
        }
        RunWork::Test(_) => {}
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn unsupported(&self, _spec: &JobSpec) -> Vec<Problem> {
        Vec::new()
    }

    fn sequences(&self) -> u64 {
        1
    }

    async fn start(&self, spec: &RunSpec) -> Result<Started, BackendError> {
        let run = {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            if runs.contains_key(&spec.id) {
                return Ok(Started::Existing);
            }
            let run = Arc::new(Run {
                state: Mutex::default(),
                changes: watch::Sender::new(0),
                stop: Notify::new(),
                began: self.clock.now(),
            });
            runs.insert(spec.id.clone(), run.clone());
            run
        };
        *self.starts.lock().unwrap_or_else(|e| e.into_inner()).entry(spec.id.clone()).or_default() += 1;
        let script = self.script(spec);
        self.printed.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.id.clone(), 0);
        tokio::spawn(play(run, spec.clone(), script, self.registry.clone(), self.clock));
        self.started.send_modify(|n| *n += 1);
        Ok(Started::New)
    }

    async fn follow(&self, id: &RunId, from: &RunCursor) -> Result<RunEvents, BackendError> {
        let run = self.run(id).ok_or_else(|| BackendError::NoSuchRun(id.clone()))?;
        let began = Some(run.began);
        let follower = Follower { run, from: from.clone(), next: 0, began, done: false };
        Ok(futures::stream::unfold(follower, Follower::next).boxed())
    }

    /// The digest the build pushed, once it exited 0; a run removed by cleanup says nothing.
    async fn built_digest(&self, job: JobId) -> Result<Option<Digest>, BackendError> {
        let run = self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(&RunKey::build(job).id()).cloned();
        let succeeded = run.is_some_and(|run| {
            matches!(run.state.lock().unwrap_or_else(|e| e.into_inner()).exit, Some(RunExit::Exited { code: 0 }))
        });
        Ok(succeeded.then(|| build_digest(job)))
    }

    async fn stop(&self, id: &RunId, _grace: Duration) -> Result<(), BackendError> {
        let Some(run) = self.run(id) else { return Ok(()) };
        let mut changes = run.changes.subscribe();
        {
            let mut state = run.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.exit.is_some() {
                return Ok(());
            }
            state.stopping = true;
        }
        run.stop.notify_one();
        while run.state.lock().unwrap_or_else(|e| e.into_inner()).exit.is_none() {
            if changes.changed().await.is_err() {
                break;
            }
        }
        Ok(())
    }

    async fn cleanup(&self, job: JobId) -> Result<CleanupReport, BackendError> {
        let ids: Vec<RunId> = self.runs().into_iter().filter(|id| id.job() == job).collect();
        let mut report = CleanupReport::default();
        for id in ids {
            self.stop(&id, Duration::ZERO).await?;
            self.count_printed(&id);
            self.runs.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            report.removed.push(format!("run {id}"));
        }
        Ok(report)
    }

    async fn jobs(&self) -> Result<Vec<JobId>, BackendError> {
        let mut jobs: Vec<JobId> = self.runs().iter().map(RunId::job).collect();
        jobs.dedup();
        Ok(jobs)
    }

    async fn check(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

impl MemoryBackend {
    /// Record how many lines `id` printed (before it is removed).
    fn count_printed(&self, id: &RunId) {
        if let Some(run) = self.run(id) {
            let lines = run.state.lock().unwrap_or_else(|e| e.into_inner()).lines.len() as u64;
            self.printed.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), lines);
        }
    }

    /// Every run's line count now (runs still held, and those removed).
    pub fn printed_now(&self) -> BTreeMap<RunId, u64> {
        for id in self.runs() {
            self.count_printed(&id);
        }
        self.printed()
    }
}

/// Follows one run: `Began`, the lines after the cursor as they come, the exit.
struct Follower {
    run: Arc<Run>,
    from: RunCursor,
    next: usize,
    began: Option<jobforge_core::Timestamp>,
    done: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(Result<RunEvent, BackendError>, Self)> {
        if self.done {
            return None;
        }
        if let Some(at) = self.began.take() {
            return Some((Ok(RunEvent::Began { at }), self));
        }
        let mut changes = self.run.changes.subscribe();
        loop {
            let (line, exit) = {
                let state = self.run.state.lock().unwrap_or_else(|e| e.into_inner());
                (state.lines.get(self.next).cloned(), state.exit.clone())
            };
            if let Some(line) = line {
                self.next += 1;
                if self.from.is_new(line.n) {
                    return Some((Ok(RunEvent::Line(line)), self));
                }
                continue;
            }
            if let Some(exit) = exit {
                self.done = true;
                return Some((Ok(RunEvent::Exit(exit)), self));
            }
            if changes.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl MemoryBackend {
    /// Which phase's runs the backend has started, in order, for tests that act on a phase.
    pub fn started_phases(&self) -> Vec<Phase> {
        let mut phases: Vec<Phase> = self.starts().keys().map(|id| id.key().phase).collect();
        phases.dedup();
        phases
    }
}
