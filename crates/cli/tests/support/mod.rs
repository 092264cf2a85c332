//! Helpers for the end-to-end tests: the real `jobforge serve` as a child process, and small
//! waits on jobs through the real client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use jobforge_client::{Client, Event, JobView, LogsQuery};
use jobforge_core::{JobId, JobStatus};
use jobforge_testkit::git::GitRepo;
use jobforge_testkit::registry::TestRegistry;

/// The longest a job in these tests may take before the test gives up on it.
pub const JOB_LIMIT: Duration = Duration::from_secs(180);

pub fn jobforge() -> &'static str {
    env!("CARGO_BIN_EXE_jobforge")
}

/// A running `jobforge serve` with its own data directory.
pub struct Service {
    child: Option<Child>,
    pub url: String,
    pub data: PathBuf,
    args: Vec<String>,
}

impl Service {
    /// Serve on a free port with `data` as data directory, treating `registry` as insecure.
    pub fn start(data: &Path, registry: &TestRegistry, extra: &[&str]) -> Service {
        Self::start_on(data, registry, "127.0.0.1:0", extra)
    }

    /// The same, listening on `listen`.
    pub fn start_on(data: &Path, registry: &TestRegistry, listen: &str, extra: &[&str]) -> Service {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            listen.into(),
            "--insecure-registry".into(),
            registry.host(),
            "--kill-grace".into(),
            "2s".into(),
            // The tests' repositories are made under the temp directory.
            "--allow-local-repos".into(),
            std::env::temp_dir().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::spawn(data, args)
    }

    fn spawn(data: &Path, args: Vec<String>) -> Service {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("serve.log")).unwrap();
        let mut child = Command::new(jobforge())
            .args(&args)
            .env("RUST_LOG", "info,jobforge_core=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start jobforge serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("jobforge listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => panic!(
                "jobforge serve did not start; its log:\n{}",
                std::fs::read_to_string(data.join("serve.log")).unwrap_or_default()
            ),
        };
        Service { child: Some(child), url, data: data.to_path_buf(), args }
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url).unwrap()
    }

    /// SIGKILL the service: no shutdown of any kind.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Start again on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let fresh = Service::spawn(&self.data.clone(), self.args.clone());
        *self = fresh;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM for a clean stop; the process group of runs was already cleaned by jobs.
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// A job config for `repo` that publishes `image:tags` to `registry`.
pub fn job(repo: &str, registry: &TestRegistry, image: &str, tags: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "repo_url": repo,
        "image_name": image,
        "image_tags": tags,
        "registry_url": registry.host(),
    })
}

/// Follow the job until it ends; returns its final view.
pub async fn wait_end(client: &Client, id: JobId) -> JobView {
    let follow = async {
        let mut events = client.follow(id, 0, None);
        while let Some(event) = events.next().await {
            if let Event::End(job) = event.unwrap() {
                return job;
            }
        }
        client.job(id).await.unwrap()
    };
    tokio::time::timeout(JOB_LIMIT, follow).await.expect("the job did not end in time")
}

/// Wait until the job's status is `status`.
pub async fn wait_status(client: &Client, id: JobId, status: JobStatus) -> JobView {
    let wait = async {
        let mut events = client.follow(id, 0, None);
        while let Some(event) = events.next().await {
            match event.unwrap() {
                Event::Status(job) | Event::End(job) if job.status == status => return job,
                Event::End(job) => panic!("job ended {} while waiting for {status}", job.status),
                _ => {}
            }
        }
        panic!("events ended while waiting for {status}");
    };
    tokio::time::timeout(JOB_LIMIT, wait).await.expect("status never came")
}

/// Wait until a line of the job's own output (not jobforge's lines, which echo commands)
/// contains `needle`.
pub async fn wait_line(client: &Client, id: JobId, needle: &str) {
    let wait = async {
        let mut events = client.follow(id, 0, None);
        while let Some(event) = events.next().await {
            match event.unwrap() {
                Event::Log(line) if line.stream != jobforge_core::Stream::System && line.text.contains(needle) => {
                    return;
                }
                Event::End(job) => panic!("job ended {} before printing {needle:?}", job.status),
                _ => {}
            }
        }
    };
    tokio::time::timeout(JOB_LIMIT, wait).await.expect("line never came");
}

/// Every archived line of the job, as text.
pub async fn all_logs(client: &Client, id: JobId) -> Vec<jobforge_core::logs::LogLine> {
    let mut lines = Vec::new();
    let mut query = LogsQuery::default();
    loop {
        let page = client.logs(id, &query).await.unwrap();
        if page.lines.is_empty() {
            return lines;
        }
        query.after = page.next_after;
        lines.extend(page.lines);
    }
}

/// The job's whole journal, as its event stream sends it from the start to `end`: the seq of
/// every entry (line or job event), and the job events' names in order.
pub async fn journal(client: &Client, id: JobId) -> (Vec<u64>, Vec<&'static str>) {
    let read = async {
        let (mut seqs, mut names) = (Vec::new(), Vec::new());
        let mut events = client.events(id, 0, None).await.unwrap();
        while let Some(event) = events.next().await {
            match event.unwrap() {
                Event::Log(line) => seqs.push(line.seq),
                Event::Job(entry) => {
                    seqs.push(entry.seq);
                    names.push(entry.event.name());
                }
                Event::Status(_) => {}
                Event::End(_) => return (seqs, names),
            }
        }
        panic!("the event stream ended without `end`");
    };
    tokio::time::timeout(JOB_LIMIT, read).await.expect("the journal was not read in time")
}

/// The journal is one gap-free sequence 1..=n, so a reader resuming anywhere misses nothing.
pub async fn assert_gap_free(client: &Client, id: JobId) {
    let (seqs, _) = journal(client, id).await;
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "one sequence, no gap, no entry twice");
}

pub fn texts(lines: &[jobforge_core::logs::LogLine]) -> String {
    lines.iter().map(|l| format!("[{} {:?}] {}\n", l.phase, l.stream, l.text)).collect()
}

/// The example repository with `dockerfile` instead of its own.
pub fn repo_with_dockerfile(dockerfile: &str) -> GitRepo {
    let repo = GitRepo::example();
    repo.write("Dockerfile", dockerfile);
    repo.commit("a Dockerfile for this test");
    repo
}

pub const BUSYBOX_BASE: &str =
    "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\n";

/// Follow the job until `accept` likes its status (or it ends).
pub async fn wait_for(client: &Client, id: JobId, accept: impl Fn(&JobView) -> bool) -> JobView {
    let wait = async {
        let mut events = client.follow(id, 0, None);
        while let Some(event) = events.next().await {
            match event.unwrap() {
                Event::Status(job) | Event::End(job) if accept(&job) => return job,
                Event::End(job) => panic!("job ended {} before the awaited state", job.status),
                _ => {}
            }
        }
        panic!("events ended early");
    };
    tokio::time::timeout(JOB_LIMIT, wait).await.expect("the awaited state never came")
}
