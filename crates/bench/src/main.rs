//! `jobforge-bench`: measurements of jobforge against baselines run in the same process.
//!
//! - `local`: the example job through jobforge on the local backend against the same git,
//!   buildah, podman and skopeo commands by hand (`by-hand.sh`), cold and on the warm cache.
//! - `nomad`: on the fake Nomad, the latency from a task's exit to the registration of the
//!   next phase, and the orchestration overhead of a whole job, against the same job driven by
//!   a 5-second polling loop (what the original Go service did).
//!
//! Each prints its results and, with `--write`, replaces its own section of
//! `docs/benchmarks.md`. Run as root from the repository root:
//!
//! ```sh
//! cargo build --release -p jobforge-cli -p jobforge-bench
//! target/release/jobforge-bench local --rounds 7 --write
//! target/release/jobforge-bench nomad --rounds 20 --write
//! ```

mod local;
mod nomad;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use jobforge_client::{Client, Event};
use jobforge_core::{JobId, JobStatus};
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

const TESTS: [&str; 2] = ["hello | grep -q 'hello from jobforge'", "test -x /bin/sh && ls /bin | wc -l"];
const TAGS: [&str; 2] = ["v1", "latest"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: Option<usize> = match args.iter().position(|a| a == "--rounds") {
        Some(i) => Some(args.get(i + 1).context("--rounds needs a number")?.parse()?),
        None => None,
    };
    let write = args.iter().any(|a| a == "--write");
    let root = std::env::current_dir()?;
    let section = match args.get(1).map(String::as_str) {
        Some("local") => local::run(&root, rounds.unwrap_or(5)).await?,
        Some("nomad") => nomad::run(&root, rounds.unwrap_or(20)).await?,
        _ => bail!("usage: jobforge-bench local|nomad [--rounds N] [--write]"),
    };
    println!("\n{}", section.text);
    if write {
        write_section(&root.join("docs/benchmarks.md"), section.name, &section.text)?;
        println!("wrote the {} section of docs/benchmarks.md", section.name);
    }
    Ok(())
}

/// One benchmark's part of `docs/benchmarks.md`.
pub struct Section {
    pub name: &'static str,
    pub text: String,
}

/// Replace the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, or append it.
fn write_section(path: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let (open, close) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let block = format!("{open}\n{}\n{close}", text.trim_end());
    let updated = match (current.find(&open), current.find(&close)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{block}{}", &current[..start], &current[end + close.len()..])
        }
        _ => format!("{}\n{block}\n", current.trim_end()),
    };
    std::fs::write(path, updated).context("writing docs/benchmarks.md")
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The `p`-th percentile (0-100) of `samples`, nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 50.0)
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", kernel.trim())
}

/// A binary next to this one (both built into the same target directory).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found: build it first (cargo build --release -p jobforge-cli)", path.display());
    }
    Ok(path)
}

/// examples/hello as a git repository, with the static busybox it copies in.
pub fn example_repo(root: &Path) -> anyhow::Result<GitRepo> {
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

pub fn job_config(repo: &GitRepo, registry: &TestRegistry, image: &str) -> serde_json::Value {
    serde_json::json!({
        "repo_url": repo.file_url(), "image_name": image, "image_tags": TAGS,
        "registry_url": registry.host(), "test_commands": TESTS,
    })
}

/// Submit the example job and follow it to `end`. Returns the time from submission to the
/// terminal status (when the result is known and published; the cleanup that follows is not
/// counted, as the hand-run baseline does none) and the job id.
pub async fn run_job(client: &Client, config: &serde_json::Value) -> anyhow::Result<(Duration, JobId)> {
    let start = Instant::now();
    let id = client.submit(config).await?.job_id;
    let mut events = client.follow(id, 0, None);
    let mut finished = None;
    while let Some(event) = events.next().await {
        let (job, end) = match event? {
            Event::Status(job) => (job, false),
            Event::End(job) => (job, true),
            Event::Log(_) | Event::Job(_) => continue,
        };
        if job.status.is_terminal() && finished.is_none() {
            if job.status != JobStatus::Succeeded {
                bail!("job {id} ended {}: {:?}", job.status, job.error);
            }
            finished = Some(start.elapsed());
        }
        if end {
            return finished.map(|took| (took, id)).context("ended without a terminal status");
        }
    }
    bail!("job {id}: events ended early")
}

/// `jobforge serve` on a free port, killed on drop.
pub struct Service {
    child: Child,
    pub url: String,
}

impl Service {
    pub fn start(jobforge: &Path, data: &Path, registry: &str, extra: &[&str]) -> anyhow::Result<Service> {
        let mut child = Command::new(jobforge)
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-registry", registry])
            .args(["--allow-local-repos", &std::env::temp_dir().display().to_string()])
            .arg("--data-dir")
            .arg(data.join("data"))
            .args(extra)
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
