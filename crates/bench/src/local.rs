//! `jobforge-bench local`: the example job through jobforge on the local backend, against the
//! same commands by hand (`by-hand.sh`), on fresh storage and on the warm layer cache.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use jobforge_client::Client;
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

use crate::{Section, Service, TAGS, TESTS, job_config, machine, median, run_job, secs, sibling};

pub async fn run(root: &Path, rounds: usize) -> anyhow::Result<Section> {
    let jobforge = sibling("jobforge")?;
    let registry = TestRegistry::start();
    let repo = crate::example_repo(root)?;
    let config = job_config(&repo, &registry, "bench-jf");

    let mut samples = Samples::default();
    for round in 1..=rounds {
        let scratch = tempfile::tempdir_in("/var/tmp")?;
        let service = Service::start(&jobforge, scratch.path(), &registry.host(), &[])?;
        let client = Client::new(&service.url)?;
        let (cold, _) = run_job(&client, &config).await?;
        let (cached, _) = run_job(&client, &config).await?;
        drop(service);

        let by_hand = scratch.path().join("by-hand");
        let hand_cold = run_by_hand(root, &repo, &registry, &by_hand, "cold")?;
        let hand_cached = run_by_hand(root, &repo, &registry, &by_hand, "cached")?;
        println!(
            "round {round}: jobforge cold {:.2}s cached {:.2}s | by hand cold {:.2}s cached {:.2}s",
            secs(cold),
            secs(cached),
            secs(hand_cold),
            secs(hand_cached)
        );
        samples.jobforge_cold.push(cold);
        samples.jobforge_cached.push(cached);
        samples.hand_cold.push(hand_cold);
        samples.hand_cached.push(hand_cached);
    }
    Ok(Section { name: "local", text: samples.report(rounds) })
}

#[derive(Default)]
struct Samples {
    jobforge_cold: Vec<Duration>,
    jobforge_cached: Vec<Duration>,
    hand_cold: Vec<Duration>,
    hand_cached: Vec<Duration>,
}

impl Samples {
    fn report(&self, rounds: usize) -> String {
        let (jc, jw, hc, hw) = (
            median(&self.jobforge_cold),
            median(&self.jobforge_cached),
            median(&self.hand_cold),
            median(&self.hand_cached),
        );
        format!(
            "## The example job: jobforge against the same steps by hand\n\n\
             `target/release/jobforge-bench local --rounds {rounds} --write` runs `examples/hello` (build `FROM scratch`\n\
             on busybox, two tests in parallel, publish two tags) through a real `jobforge serve` on the local backend,\n\
             from submission to its terminal status (`SUCCEEDED`; the cleanup after it is not counted, as the baseline\n\
             does none), and in the same run the same git, buildah, podman and skopeo commands\n\
             by hand (`crates/bench/by-hand.sh`). *Cold*: fresh container storage; *cached*: the same job again, on the\n\
             warm layer cache. Medians of {rounds} rounds.\n\n\
             | | jobforge | by hand | jobforge / by hand |\n\
             |---|---|---|---|\n\
             | cold | {:.2} s | {:.2} s | **{:.2}** |\n\
             | cached | {:.2} s | {:.2} s | **{:.2}** |\n\n\
             Goal: a ratio of at most 1.10. Cached rebuild against cold, through jobforge: {:.2} s vs {:.2} s.\n\n\
             Measured {} on {}.\n",
            secs(jc),
            secs(hc),
            secs(jc) / secs(hc),
            secs(jw),
            secs(hw),
            secs(jw) / secs(hw),
            secs(jw),
            secs(jc),
            jobforge_core::Timestamp::now(),
            machine(),
        )
    }
}

fn run_by_hand(
    root: &Path,
    repo: &GitRepo,
    registry: &TestRegistry,
    dir: &Path,
    label: &str,
) -> anyhow::Result<Duration> {
    let work = dir.join(format!("{label}-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let start = Instant::now();
    let status = Command::new(root.join("crates/bench/by-hand.sh"))
        .env("REPO_URL", repo.file_url())
        .env("STORAGE", dir.join("storage"))
        .env("RUNROOT", state.join("storage"))
        .env("PODMAN_TMP", state.join("libpod"))
        .env("REGISTRY", registry.host())
        .env("IMAGE", "bench-hand")
        .env("TAGS", TAGS.join(" "))
        .env("TEST1", TESTS[0])
        .env("TEST2", TESTS[1])
        .env("WORK", &work)
        .status()?;
    if !status.success() {
        bail!("by-hand.sh failed ({status})");
    }
    Ok(start.elapsed())
}
