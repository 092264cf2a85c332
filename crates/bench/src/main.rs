//! `jobforge-bench`: how much slower is the example job through jobforge than the same git,
//! buildah, podman and skopeo commands run by hand?
//!
//! Each round measures, on fresh storage ("cold") and again on the warm layer cache ("cached"):
//! jobforge (from submit to the `end` event, through a real `jobforge serve`) and the hand-run
//! script `by-hand.sh`. It prints medians and the ratio jobforge / by hand, and with `--write`
//! replaces `docs/benchmarks.md`. Run it as root from the repository root:
//!
//! ```sh
//! cargo build --release -p jobforge-cli -p jobforge-bench
//! target/release/jobforge-bench --rounds 5 --write
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use jobforge_client::{Client, Event};
use jobforge_core::JobStatus;
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

const TESTS: [&str; 2] = ["hello | grep -q 'hello from jobforge'", "test -x /bin/sh && ls /bin | wc -l"];
const TAGS: [&str; 2] = ["v1", "latest"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args.get(i + 1).context("--rounds needs a number")?.parse()?,
        None => 5,
    };
    let write = args.iter().any(|a| a == "--write");
    let root = std::env::current_dir()?;
    let jobforge = sibling("jobforge")?;
    let registry = TestRegistry::start();
    let repo = example_repo(&root)?;

    let mut samples = Samples::default();
    for round in 1..=rounds {
        let scratch = tempfile::tempdir_in("/var/tmp")?;
        let service = Service::start(&jobforge, scratch.path(), &registry.host())?;
        let client = Client::new(&service.url)?;
        let cold = run_job(&client, &repo, &registry, "bench-jf").await?;
        let cached = run_job(&client, &repo, &registry, "bench-jf").await?;
        drop(service);

        let by_hand = scratch.path().join("by-hand");
        let hand_cold = run_by_hand(&root, &repo, &registry, &by_hand, "cold")?;
        let hand_cached = run_by_hand(&root, &repo, &registry, &by_hand, "cached")?;
        println!(
            "round {round}: jobforge cold {:.2}s cached {:.2}s | by hand cold {:.2}s cached {:.2}s",
            cold.as_secs_f64(),
            cached.as_secs_f64(),
            hand_cold.as_secs_f64(),
            hand_cached.as_secs_f64()
        );
        samples.jobforge_cold.push(cold);
        samples.jobforge_cached.push(cached);
        samples.hand_cold.push(hand_cold);
        samples.hand_cached.push(hand_cached);
    }
    let report = samples.report(rounds);
    println!("\n{report}");
    if write {
        std::fs::write(root.join("docs/benchmarks.md"), report).context("writing docs/benchmarks.md")?;
        println!("wrote docs/benchmarks.md");
    }
    Ok(())
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
        let machine = machine();
        format!(
            "# Benchmarks\n\n\
             ## The example job: jobforge against the same steps by hand\n\n\
             `crates/bench` (`target/release/jobforge-bench --rounds {rounds} --write`) runs `examples/hello` (build `FROM scratch` on\n\
             busybox, two tests in parallel, publish two tags) through a real `jobforge serve` on the local backend,\n\
             from submission to the `end` event, and in the same run the same git, buildah, podman and skopeo commands\n\
             by hand (`crates/bench/by-hand.sh`). *Cold*: fresh container storage; *cached*: the same job again, on the\n\
             warm layer cache. Medians of {rounds} rounds.\n\n\
             | | jobforge | by hand | jobforge / by hand |\n\
             |---|---|---|---|\n\
             | cold | {:.2} s | {:.2} s | **{:.2}** |\n\
             | cached | {:.2} s | {:.2} s | **{:.2}** |\n\n\
             Goal: a ratio of at most 1.10. Cached rebuild against cold, through jobforge: {:.2} s vs {:.2} s.\n\n\
             Measured {} on {machine}.\n",
            secs(jc),
            secs(hc),
            secs(jc) / secs(hc),
            secs(jw),
            secs(hw),
            secs(jw) / secs(hw),
            secs(jw),
            secs(jc),
            jobforge_core::Timestamp::now(),
        )
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", kernel.trim())
}

/// A binary next to this one (both built into the same target directory).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found: build it first (cargo build --release -p jobforge-cli)", path.display());
    }
    Ok(path)
}

/// examples/hello as a git repository, with the static busybox it copies in.
fn example_repo(root: &Path) -> anyhow::Result<GitRepo> {
    let repo = GitRepo::new();
    for file in ["Dockerfile", "hello.sh"] {
        let text = std::fs::read_to_string(root.join("examples/hello").join(file))
            .with_context(|| format!("run from the repository root (examples/hello/{file})"))?;
        repo.write(file, &text);
    }
    repo.write_bytes("busybox", &std::fs::read(jobforge_testkit::git::busybox_path())?);
    std::fs::set_permissions(repo.path().join("busybox"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    repo.commit("the example image");
    Ok(repo)
}

async fn run_job(client: &Client, repo: &GitRepo, registry: &TestRegistry, image: &str) -> anyhow::Result<Duration> {
    let config = serde_json::json!({
        "repo_url": repo.file_url(), "image_name": image, "image_tags": TAGS,
        "registry_url": registry.host(), "test_commands": TESTS,
    });
    let start = Instant::now();
    let id = client.submit(&config).await?.job_id;
    let mut events = client.follow(id, 0, None);
    while let Some(event) = events.next().await {
        if let Event::End(job) = event? {
            if job.status != JobStatus::Succeeded {
                bail!("job {id} ended {}: {:?}", job.status, job.error);
            }
            return Ok(start.elapsed());
        }
    }
    bail!("job {id}: events ended early")
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

/// `jobforge serve` on a free port, killed on drop.
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(jobforge: &Path, data: &Path, registry: &str) -> anyhow::Result<Service> {
        let mut child = Command::new(jobforge)
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-registry", registry])
            .arg("--data-dir")
            .arg(data.join("data"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let url = line.trim().strip_prefix("jobforge listening on ").context("service did not start")?.to_owned();
        Ok(Service { child, url })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
