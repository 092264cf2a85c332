//! The engine, crashed everywhere: a deterministic simulation on the in-memory ports.
//!
//! Each scenario (a passing pipeline, a failing build, a failing test, a kill and a timeout in
//! each phase, a replica losing its locks, two replicas sharing a store) first runs without a
//! crash, counting the engine's crash points (every call with a side effect, see
//! `memory::gate`). Then, for every point, before its call and after it, the scenario runs
//! again and the engine is killed there: dropped, its locks freed, and a new engine started on
//! the same store, backend and registry (with two replicas, the other one carries on). Every
//! run must end as the scenario says, with no run started twice, no log line lost or stored
//! twice, no transition reported twice, nothing published after a kill or a failed test, the
//! temp image removed and nothing left running.
//!
//! Time is tokio's, paused: a run takes milliseconds whatever its timeouts. A seed varies the
//! runs' lines and timing; `SIM_SEED=<n>` replays one seed, and a failure names its seed,
//! scenario and crash point. `cargo test --test simulation -- --nocapture` prints how many
//! crash points were explored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use jobforge_core::engine::{Engine, Ports, Settings};
use jobforge_core::events::JobEvent;
use jobforge_core::logs::{Entry, Origin};
use jobforge_core::ports::{JobFeed, JobRecords, Store};
use jobforge_core::record::FailureReason;
use jobforge_core::{JobId, JobStatus, Phase, Timestamp, validate};
use jobforge_testkit::memory::gate::{CrashAt, Gate, gated};
use jobforge_testkit::memory::{
    LockTable, MemoryBackend, MemoryLocks, MemoryRegistry, MemorySecrets, MemoryStore, TokioClock,
};

/// Seeds run by default; `SIM_SEED` runs one.
const SEEDS: [u64; 2] = [0x5eed_0001, 0x5eed_0002];

/// The longest a scenario may take, in (paused) tokio time, before it counts as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    /// Kill the job once a run of this phase has started.
    KillIn(Phase),
    /// The first instance loses its hold on the locks once a run of this phase has started.
    LoseLocksIn(Phase),
}

struct Scenario {
    name: &'static str,
    /// Fields over the base job.
    job: serde_json::Value,
    action: Action,
    replicas: usize,
    status: JobStatus,
    reason: Option<FailureReason>,
}

fn scenarios() -> Vec<Scenario> {
    let s = |name, job, action, status, reason| Scenario { name, job, action, replicas: 1, status, reason };
    let hang_build = json!({"build_args": {"SIM_BUILD": "lines:2 hang"}});
    let hang_test = json!({"test_commands": ["lines:1", "lines:2 hang"]});
    let hang_publish = json!({"image_tags": ["v1", "hang"]});
    vec![
        s("passing", json!({}), Action::None, JobStatus::Succeeded, None),
        s(
            "build fails",
            json!({"build_args": {"SIM_BUILD": "lines:3 exit:1"}}),
            Action::None,
            JobStatus::Failed,
            Some(FailureReason::ExitCode),
        ),
        s(
            "a test fails",
            json!({"test_commands": ["lines:2", "lines:1 exit:3"]}),
            Action::None,
            JobStatus::Failed,
            Some(FailureReason::ExitCode),
        ),
        s("kill in build", hang_build.clone(), Action::KillIn(Phase::Build), JobStatus::Killed, None),
        s("kill in test", hang_test.clone(), Action::KillIn(Phase::Test), JobStatus::Killed, None),
        s("kill in publish", hang_publish.clone(), Action::KillIn(Phase::Publish), JobStatus::Killed, None),
        s(
            "timeout in build",
            merge(hang_build, json!({"build_timeout": "40s"})),
            Action::None,
            JobStatus::Failed,
            Some(FailureReason::Timeout),
        ),
        s(
            "timeout in test",
            merge(hang_test, json!({"test_timeout": "40s"})),
            Action::None,
            JobStatus::Failed,
            Some(FailureReason::Timeout),
        ),
        s("timeout in publish", hang_publish, Action::None, JobStatus::Failed, Some(FailureReason::Timeout)),
        s("lock lost", json!({}), Action::LoseLocksIn(Phase::Test), JobStatus::Succeeded, None),
        Scenario { replicas: 2, ..s("two replicas", json!({}), Action::None, JobStatus::Succeeded, None) },
    ]
}

fn merge(mut base: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    for (key, value) in more.as_object().into_iter().flatten() {
        base[key] = value.clone();
    }
    base
}

fn spec(scenario: &Scenario) -> jobforge_core::config::JobSpec {
    let base = json!({
        "repo_url": "https://git.example.com/team/app.git", "image_name": "team/app",
        "registry_url": "127.0.0.1:5000", "image_tags": ["v1"], "test_commands": ["lines:2", "lines:1"],
    });
    validate::job_spec(&merge(base, scenario.job.clone())).expect("the scenario's job is valid")
}

fn settings() -> Settings {
    Settings {
        publish_timeout: jobforge_core::Duration::from_secs(40),
        kill_grace: Duration::from_secs(2),
        log_tail_lines: 5,
        ..Settings::default()
    }
}

/// What every engine shares: the outside world.
struct World {
    store: Arc<MemoryStore>,
    backend: Arc<MemoryBackend>,
    registry: Arc<MemoryRegistry>,
    table: Arc<LockTable>,
    clock: TokioClock,
    instances: u64,
}

/// One engine's life.
struct Life {
    engine: Engine,
    gate: Arc<Gate>,
    locks: MemoryLocks,
    shutdown: CancellationToken,
    buried: bool,
}

impl World {
    fn new(seed: u64) -> World {
        let registry = Arc::new(MemoryRegistry::default());
        let clock = TokioClock::starting_at(Timestamp::from_unix_millis(1_800_000_000_000).expect("a time"));
        World {
            store: Arc::new(MemoryStore::default()),
            backend: Arc::new(MemoryBackend::new(registry.clone(), clock, seed)),
            registry,
            table: Arc::new(LockTable::default()),
            clock,
            instances: 0,
        }
    }

    /// A new engine instance, crashing at `plan`, with its jobs recovered.
    async fn start(&mut self, plan: Option<CrashAt>) -> Life {
        self.instances += 1;
        let locks = MemoryLocks::new(self.table.clone(), self.instances);
        let store: Arc<dyn Store> = self.store.clone();
        let ports = Ports::new(
            self.backend.clone(),
            store,
            Arc::new(MemorySecrets),
            self.registry.clone(),
            Arc::new(locks.clone()),
            Arc::new(self.clock),
        );
        let gate = Gate::new(plan);
        let shutdown = CancellationToken::new();
        let engine = Engine::new(gated(&ports, &gate), settings(), shutdown.child_token());
        tokio::select! {
            recovered = engine.recover() => { recovered.expect("recovery reads the store"); }
            () = gate.crashed() => {}
        }
        Life { engine, gate, locks, shutdown, buried: false }
    }
}

impl Life {
    /// The process is gone: nothing of it runs on, and its locks are free.
    fn bury(&mut self) {
        self.gate.kill();
        self.shutdown.cancel();
        self.locks.die();
        self.buried = true;
    }
}

/// How one run of a scenario went.
struct Played {
    /// Crash points the first instance passed.
    points: u64,
    names: Vec<&'static str>,
}

/// Run `scenario` once, crashing the first instance at `plan`; check everything at the end.
async fn play(scenario: &Scenario, plan: Option<CrashAt>, seed: u64) -> Result<Played, String> {
    let mut world = World::new(seed);
    let mut lives = vec![world.start(plan).await];
    for _ in 1..scenario.replicas {
        lives.push(world.start(None).await);
    }
    let first = lives[0].gate.clone();
    let submitted = tokio::select! {
        record = lives[0].engine.submit(spec(scenario)) => Some(record.map_err(|e| format!("submit: {e}"))?.id),
        () = first.crashed() => None,
    };
    let Some(id) = submitted.or_else(|| world.store.jobs().first().copied()) else {
        // Crashed before the job was stored: never accepted, so nothing may have run.
        return if world.backend.starts().is_empty() {
            Ok(Played { points: first.passed(), names: first.names() })
        } else {
            Err("a job that was never stored started runs".into())
        };
    };
    let finished = tokio::time::timeout(STUCK_AFTER, drive(&mut world, &mut lives, scenario, id)).await;
    finished.map_err(|_| format!("the job did not end within {STUCK_AFTER:?}: {}", describe(&world, id)))??;
    check(&world, scenario, id).await?;
    Ok(Played { points: first.passed(), names: first.names() })
}

/// Until the job has ended: replace crashed instances, and act when the scenario says.
async fn drive(world: &mut World, lives: &mut Vec<Life>, scenario: &Scenario, id: JobId) -> Result<(), String> {
    let mut acted = scenario.action == Action::None;
    let mut starts = world.backend.watch_starts();
    let mut version = 0;
    loop {
        if lives[0].gate.is_dead() && !lives[0].buried {
            lives[0].bury();
            if scenario.replicas == 1 {
                let next = world.start(None).await;
                lives.push(next);
            }
        }
        let record = world.store.get(id).await.map_err(|e| e.to_string())?.ok_or("the job vanished")?;
        if !record.is_live() {
            return Ok(());
        }
        if !acted && phase_started(world, scenario.action) {
            acted = act(lives, scenario.action, id).await?;
            continue;
        }
        let crashed = lives[0].gate.clone();
        tokio::select! {
            () = crashed.crashed(), if !lives[0].buried => {}
            _ = starts.changed() => {}
            next = world.store.changed(id, version, Duration::from_secs(60)) => version = next.map_err(|e| e.to_string())?,
        }
    }
}

fn phase_started(world: &World, action: Action) -> bool {
    match action {
        Action::None => false,
        Action::KillIn(phase) | Action::LoseLocksIn(phase) => world.backend.started_phases().contains(&phase),
    }
}

/// Carry the scenario's action out on the instance alive now; whether it took.
async fn act(lives: &mut [Life], action: Action, id: JobId) -> Result<bool, String> {
    let Some(life) = lives.iter_mut().rev().find(|life| !life.buried) else { return Ok(false) };
    match action {
        Action::None => Ok(true),
        Action::LoseLocksIn(_) => {
            life.locks.lose();
            Ok(true)
        }
        Action::KillIn(_) => {
            let gate = life.gate.clone();
            tokio::select! {
                killed = life.engine.kill(id, Some("simulation".into()), Some("asked".into())) => match killed {
                    Ok(_) | Err(jobforge_core::engine::KillError::Finished { .. }) => Ok(true),
                    Err(jobforge_core::engine::KillError::ShuttingDown) => Ok(false),
                    Err(err) => Err(format!("kill: {err}")),
                },
                // The instance died with the kill in flight: ask the next one.
                () = gate.crashed() => Ok(false),
            }
        }
    }
}

/// Everything that must hold once the job has ended.
async fn check(world: &World, scenario: &Scenario, id: JobId) -> Result<(), String> {
    let record = world.store.get(id).await.map_err(|e| e.to_string())?.ok_or("the job vanished")?;
    let status = record.status();
    if status != scenario.status {
        return Err(format!("ended {status}, expected {}: {:?}", scenario.status, record.failure()));
    }
    let reason = record.failure().map(|f| f.reason);
    if reason != scenario.reason {
        return Err(format!("failure reason {reason:?}, expected {:?}", scenario.reason));
    }
    if !record.cleaned_up() || record.is_live() || !record.outbox.is_empty() {
        return Err(format!("not cleaned up and done: {:?}", record.state));
    }
    let twice: Vec<_> = world.backend.starts().into_iter().filter(|(_, n)| *n > 1).collect();
    if !twice.is_empty() {
        return Err(format!("runs started more than once: {twice:?}"));
    }
    check_lines(world, id)?;
    check_events(world, id)?;
    check_leftovers(world, scenario)
}

/// Every line each run printed is in the journal exactly once.
fn check_lines(world: &World, id: JobId) -> Result<(), String> {
    let mut archived: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, origin) in world.store.journal(id) {
        if let Some(Origin::Run { run, n }) = origin {
            archived.entry(run.to_string()).or_default().push(n);
        }
    }
    for (run, printed) in world.backend.printed_now() {
        let got = archived.remove(&run.to_string()).unwrap_or_default();
        if got != (1..=printed).collect::<Vec<_>>() {
            return Err(format!("{run} printed {printed} lines; the journal holds {got:?}"));
        }
    }
    match archived.into_iter().next() {
        Some((run, lines)) => Err(format!("lines of {run} that no run printed: {lines:?}")),
        None => Ok(()),
    }
}

/// One gap-free sequence; each transition reported once; the cleanup reported last.
fn check_events(world: &World, id: JobId) -> Result<(), String> {
    let journal = world.store.journal(id);
    let seqs: Vec<u64> = journal.iter().map(|(entry, _)| entry.seq()).collect();
    if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
        return Err(format!("the journal's sequence has gaps: {seqs:?}"));
    }
    let events: Vec<JobEvent> = journal
        .into_iter()
        .filter_map(|(entry, _)| match entry {
            Entry::Event(event) => Some(event.event),
            Entry::Line(_) => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    for event in &events {
        let once = match event {
            JobEvent::StatusChanged { status } => Some(format!("status {status}")),
            JobEvent::PhaseStarted { phase } => Some(format!("started {phase}")),
            JobEvent::PhaseEnded { phase, .. } => Some(format!("ended {phase}")),
            JobEvent::TestEnded { index, .. } => Some(format!("test {index} ended")),
            JobEvent::CleanupDone { .. } => Some("cleanup".into()),
            _ => None,
        };
        if let Some(once) = once
            && !seen.insert(once.clone())
        {
            return Err(format!("{once} reported twice: {events:?}"));
        }
    }
    match events.last() {
        Some(JobEvent::CleanupDone { .. }) => Ok(()),
        other => Err(format!("the last event is {other:?}, not the cleanup")),
    }
}

/// Nothing published unless the job succeeded; no temp image, run or lock left.
fn check_leftovers(world: &World, scenario: &Scenario) -> Result<(), String> {
    let contents = world.registry.contents();
    if contents.iter().any(|item| item.contains("/temp/")) {
        return Err(format!("the temp image is left: {contents:?}"));
    }
    let published = contents.iter().any(|item| item.contains("team/app:"));
    if published != (scenario.status == JobStatus::Succeeded) {
        return Err(format!("published: {published}, for a job that ended {}: {contents:?}", scenario.status));
    }
    if !world.backend.runs().is_empty() {
        return Err(format!("runs left in the backend: {:?}", world.backend.runs()));
    }
    if !world.table.holders().is_empty() {
        return Err(format!("locks still held: {:?}", world.table.holders()));
    }
    Ok(())
}

fn describe(world: &World, id: JobId) -> String {
    let entries: Vec<String> = world
        .store
        .journal(id)
        .into_iter()
        .map(|(entry, _)| match entry {
            Entry::Line(line) => format!("{} {}", line.seq, line.text),
            Entry::Event(event) => format!("{} {:?}", event.seq, event.event),
        })
        .collect();
    format!("runs {:?}; journal:\n{}", world.backend.runs(), entries.join("\n"))
}

/// A fresh paused runtime per run: nothing of one run leaks into the next. A run that spins
/// without letting tokio's time advance (a livelock) never reaches its time limit; a watchdog
/// on the wall clock ends the test then, naming the run.
fn run<T>(what: String, future: impl std::future::Future<Output = T>) -> T {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime");
    let watch = Watchdog::start(what);
    let out = runtime.block_on(future);
    watch.done();
    out
}

/// Ends the process if a run takes longer than this on the wall clock.
const WALL_LIMIT: Duration = Duration::from_secs(60);

struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn start(what: String) -> Watchdog {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(WALL_LIMIT) {
                eprintln!("{what}: still running after {WALL_LIMIT:?} of real time (a livelock?)");
                std::process::exit(101);
            }
        });
        Watchdog { done }
    }

    fn done(self) {
        let _ = self.done.send(());
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![
            seed.trim_start_matches("0x")
                .parse()
                .or_else(|_| u64::from_str_radix(seed.trim_start_matches("0x"), 16))
                .expect("SIM_SEED is a number"),
        ],
        Err(_) => SEEDS.to_vec(),
    }
}

#[test]
fn the_engine_survives_a_crash_at_every_point() {
    let mut explored = 0u64;
    let mut failures = Vec::new();
    for seed in seeds() {
        for scenario in scenarios() {
            let clean = run(format!("seed {seed:#x}, {}, no crash", scenario.name), play(&scenario, None, seed))
                .unwrap_or_else(|err| panic!("seed {seed:#x}, {}, no crash: {err}", scenario.name));
            for point in 0..clean.points {
                for after in [false, true] {
                    let plan = CrashAt { point, after };
                    explored += 1;
                    let what = format!("seed {seed:#x}, {}, crash at {plan:?}", scenario.name);
                    if let Err(err) = run(what, play(&scenario, Some(plan), seed)) {
                        let at = clean.names.get(point as usize).copied().unwrap_or("?");
                        let when = if after { "after" } else { "before" };
                        failures.push(format!(
                            "seed {seed:#x}, {}, crash {when} point {point} ({at}): {err}",
                            scenario.name
                        ));
                    }
                }
            }
        }
    }
    println!("crash points explored: {explored}");
    assert!(failures.is_empty(), "{} of {explored} crashes went wrong:\n{}", failures.len(), failures.join("\n\n"));
    assert!(explored >= 200, "too few crash points to mean much: {explored}");
}

/// One seed, one schedule: the same scenario passes the same points in the same order.
#[test]
fn a_seed_replays_the_same_schedule() {
    for scenario in scenarios() {
        let first = run(scenario.name.to_owned(), play(&scenario, None, SEEDS[0])).expect("a clean run");
        let again = run(scenario.name.to_owned(), play(&scenario, None, SEEDS[0])).expect("a clean run");
        assert_eq!(first.names, again.names, "{}: the crash points differ between two runs of one seed", scenario.name);
    }
}
