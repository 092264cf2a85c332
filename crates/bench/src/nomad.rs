//! `jobforge-bench nomad`: on the fake Nomad, how fast jobforge moves a job from one phase to
//! the next, and what orchestration costs a whole job, against the same job driven the way the
//! original Go service drove it: check on Nomad every 5 seconds.
//!
//! Times come from the fake's own records (when each job was registered, when each task was
//! received and terminated), so the measure is exactly "task exit → next phase registered".

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobforge_client::Client;
use jobforge_core::engine::{Settings, run_spec};
use jobforge_core::image::{ImageRef, Repository, Tag};
use jobforge_core::record::JobRecord;
use jobforge_core::{JobId, Phase, RunKey, Timestamp};
use jobforge_nomad::api::TaskEventType;
use jobforge_nomad::job::RegisterRequest;
use jobforge_nomad::render::{RenderConfig, render};
use jobforge_nomad::{NomadClient, NomadConfig};
use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};
use jobforge_testkit::registry::TestRegistry;

use crate::{Section, Service, job_config, machine, median, percentile, run_job, sibling};

const POLL_INTERVAL: Duration = Duration::from_secs(5);
const POLL_ROUNDS: usize = 2;

pub async fn run(root: &Path, rounds: usize) -> anyhow::Result<Section> {
    let jobforge = sibling("jobforge")?;
    let registry = TestRegistry::start();
    let dirs = tempfile::tempdir_in("/var/tmp")?;
    let mut fake = FakeNomadConfig::new(dirs.path().join("nomad"));
    fake.host_volumes.insert("buildah-cache".into(), dirs.path().join("buildah-cache"));
    fake.insecure_registries.push(registry.host());
    let nomad = FakeNomad::start(fake).await;
    let nomad_client = NomadClient::new(NomadConfig::new(nomad.url().parse()?))?;
    let service = Service::start(
        &jobforge,
        dirs.path(),
        &registry.host(),
        &["--backend", "nomad", "--nomad-addr", &nomad.url()],
    )?;
    let client = Client::new(&service.url)?;
    let repo = crate::example_repo(root)?;
    let config = job_config(&repo, &registry, "bench-nomad");

    // Warm the layer cache, so every measured job does the same work.
    run_job(&client, &config).await?;
    let mut event_driven = Measures::default();
    for round in 1..=rounds {
        let (wall, id) = run_job(&client, &config).await?;
        let timing = Timing::of(&nomad, &nomad_client, id).await?;
        event_driven.add(wall, &timing);
        println!("jobforge round {round}: {:.2}s, transitions {:?}", wall.as_secs_f64(), timing.transitions());
    }
    let render_config = RenderConfig { insecure_registries: vec![registry.host().parse()?], ..RenderConfig::default() };
    let mut polling = Measures::default();
    for round in 1..=POLL_ROUNDS {
        let (wall, id) = poll_job(&nomad_client, &render_config, &registry, &config).await?;
        let timing = Timing::of(&nomad, &nomad_client, id).await?;
        polling.add(wall, &timing);
        println!("polling round {round}: {:.2}s, transitions {:?}", wall.as_secs_f64(), timing.transitions());
    }
    Ok(Section { name: "nomad", text: report(rounds, &event_driven, &polling) })
}

#[derive(Default)]
struct Measures {
    transitions: Vec<Duration>,
    overheads: Vec<Duration>,
}

impl Measures {
    fn add(&mut self, wall: Duration, timing: &Timing) {
        self.transitions.extend(timing.transitions());
        self.overheads.push(wall.saturating_sub(timing.work()));
    }
}

fn report(rounds: usize, event_driven: &Measures, polling: &Measures) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let (ours, theirs) = (median(&event_driven.overheads), median(&polling.overheads));
    format!(
        "## Nomad: phase transitions and orchestration overhead\n\n\
         `target/release/jobforge-bench nomad --rounds {rounds} --write` runs the example job (build, two tests,\n\
         publish) {rounds} times through `jobforge serve --backend nomad` on the fake Nomad, after one warm-up job,\n\
         and {POLL_ROUNDS} times driven by a loop that checks Nomad every 5 s (the original Go service's monitor).\n\
         A *transition* is the time from a phase's last task exit (its `Terminated` event) to the registration of\n\
         the next phase's Nomad job, from the fake's own records; two per job. The *overhead* is the job's wall\n\
         time minus the time Nomad spent on its tasks (first `Received` to last `Terminated`, per phase).\n\n\
         | | jobforge (blocking queries) | 5 s polling loop |\n\
         |---|---|---|\n\
         | transition p50 | {} | {} |\n\
         | transition p99 | {} | {} |\n\
         | overhead per job (median) | {} | {} |\n\n\
         Overhead ratio, polling / jobforge: **{:.0}×**. Goals: p99 transition under 50 ms, ratio over 100×.\n\n\
         Measured {} on {}.\n",
        ms(percentile(&event_driven.transitions, 50.0)),
        ms(percentile(&polling.transitions, 50.0)),
        ms(percentile(&event_driven.transitions, 99.0)),
        ms(percentile(&polling.transitions, 99.0)),
        ms(ours),
        ms(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64().max(1e-6),
        Timestamp::now(),
        machine(),
    )
}

/// When each Nomad job of a jobforge job was registered, and when its task ran.
struct Timing {
    build: Span,
    tests: Vec<Span>,
    publish: Span,
}

/// Unix nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Span {
    registered: i64,
    received: i64,
    terminated: i64,
}

impl Timing {
    async fn of(nomad: &FakeNomad, client: &NomadClient, job: JobId) -> anyhow::Result<Timing> {
        let span = |key: RunKey| async move {
            let id = RenderConfig::default().job_id(&key.id());
            let registered = *nomad.registration_times(&id).first().context("never registered")?;
            let (allocs, _) = client.job_allocations(&id, None).await?;
            let alloc = allocs.into_iter().next().with_context(|| format!("{id} has no allocation"))?;
            let state = alloc.task_states.get(key.phase.as_str()).context("no task state")?;
            let time = |kind: TaskEventType| state.last_event(&kind).map(|e| e.time).context("missing task event");
            anyhow::Ok(Span {
                registered,
                received: time(TaskEventType::Received)?,
                terminated: time(TaskEventType::Terminated)?,
            })
        };
        let mut tests = Vec::new();
        for index in 0..crate::TESTS.len() as u32 {
            tests.push(span(RunKey::test(job, index)).await?);
        }
        Ok(Timing { build: span(RunKey::build(job)).await?, tests, publish: span(RunKey::publish(job)).await? })
    }

    /// Last exit of a phase → registration of the next.
    fn transitions(&self) -> Vec<Duration> {
        let nanos = |from: i64, to: i64| Duration::from_nanos(u64::try_from(to - from).unwrap_or(0));
        let tests_registered = self.tests.iter().map(|t| t.registered).max().unwrap_or(0);
        let tests_ended = self.tests.iter().map(|t| t.terminated).max().unwrap_or(0);
        vec![nanos(self.build.terminated, tests_registered), nanos(tests_ended, self.publish.registered)]
    }

    /// Time Nomad spent on the tasks, phase by phase (parallel tests counted once).
    fn work(&self) -> Duration {
        let tests_start = self.tests.iter().map(|t| t.received).min().unwrap_or(0);
        let tests_end = self.tests.iter().map(|t| t.terminated).max().unwrap_or(0);
        let total = (self.build.terminated - self.build.received)
            + (tests_end - tests_start)
            + (self.publish.terminated - self.publish.received);
        Duration::from_nanos(u64::try_from(total).unwrap_or(0))
    }
}

/// The same job, driven the Go service's way: register a phase, look at Nomad every 5 s
/// until it is done, register the next.
async fn poll_job(
    client: &NomadClient,
    render_config: &RenderConfig,
    registry: &TestRegistry,
    config: &serde_json::Value,
) -> anyhow::Result<(Duration, JobId)> {
    let spec = jobforge_core::validate::job_spec(config).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let settings = Settings::default();
    let id = JobId::new();
    let temp = ImageRef::tagged(spec.registry_url.host.clone(), Repository::temp(id), Tag::latest());
    let mut record = JobRecord::new(id, spec, temp, Timestamp::now());
    let start = Instant::now();
    for phase in Phase::ALL {
        if phase == Phase::Test {
            let digest = registry.digest(&format!("temp/{id}"), "latest").await.context("no temp image")?;
            record.image_digest = Some(digest.parse()?);
        }
        let mut ids = Vec::new();
        for key in record.runs(phase) {
            let job = render(render_config, &run_spec(&settings, &record, key));
            ids.push(job.id.clone());
            client.register(&RegisterRequest { job, enforce_index: false, job_modify_index: 0 }).await?;
        }
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if all_done(client, &ids).await? {
                break;
            }
        }
    }
    let wall = start.elapsed();
    for key in Phase::ALL.into_iter().flat_map(|p| record.runs(p)) {
        client.deregister(&render_config.job_id(&key.id()), true).await?;
    }
    Ok((wall, id))
}

async fn all_done(client: &NomadClient, ids: &[String]) -> anyhow::Result<bool> {
    for id in ids {
        let (allocs, _) = client.job_allocations(id, None).await?;
        if allocs.is_empty() || !allocs.iter().all(|a| a.is_terminal()) {
            return Ok(false);
        }
        if allocs.iter().any(|a| a.client_status != jobforge_nomad::api::ClientStatus::Complete) {
            bail!("{id} failed");
        }
    }
    Ok(true)
}
