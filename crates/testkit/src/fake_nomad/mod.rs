//! A faithful fake of a one-node Nomad dev agent (server and client in one), for tests and
//! demos on machines where no Nomad binary can be installed.
//!
//! [`FakeNomad::start`] serves Nomad's HTTP API on loopback with Nomad's semantics: a raft-like
//! index on every write, blocking queries, job/eval/alloc state machines, plain-text errors,
//! ACL tokens, the framed log stream, the event stream and the allocations' directories. It
//! runs `docker`-driver tasks for real: with podman, or, for images under a buildah prefix,
//! directly on the host (see [`driver`]). Fidelity to the wire format is checked against
//! recorded Nomad examples and the OpenAPI spec in `crates/testkit/tests/fake_nomad.rs` (and,
//! for the allocation's directory, in `fs`).
//!
//! Codemap: `http` (routes, query parameters, blocking, errors) → `state` (the store) ←
//! `scheduler` (evaluations into allocations) and `client` (allocations into running tasks,
//! through `driver`; `interpolate` is Nomad's `${...}` in `Env` and in the driver config); `jobspec` decodes, defaults and validates jobs; `records` holds the wire
//! shapes; `logs` and `stream` serve the two streaming endpoints, `fs` the allocation's directory
//! (`ls`, `stat`, `cat`).
//!
//! Invariant: the fake never panics on a request; bad input gets Nomad's error. Dropping the
//! [`FakeNomad`] stops the server and kills every task it started.

mod client;
mod driver;
mod duration;
mod fs;
mod http;
mod interpolate;
mod jobspec;
mod logs;
mod records;
mod scheduler;
mod state;
mod stream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub use driver::HostRun;

/// How a fake Nomad is set up.
#[derive(Clone, Debug)]
pub struct FakeNomadConfig {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Alloc dirs (`allocs/<id>/...`, logs included) and, by default, podman's storage.
    pub data_dir: PathBuf,
    /// The node's datacenter.
    pub datacenter: String,
    /// The node's CPU, in MHz, that allocations are fitted into.
    pub node_cpu_mhz: u32,
    /// The node's memory, in MB, that allocations are fitted into.
    pub node_memory_mb: u32,
    /// The client's `host_volume` blocks: name to host path.
    pub host_volumes: BTreeMap<String, PathBuf>,
    /// Registries (`host:port`) podman pulls from over plain http.
    pub insecure_registries: Vec<String>,
    /// With a token set, ACLs are on and every request must carry it.
    pub acl_token: Option<String>,
    /// Image name prefixes whose tasks run on the host instead of in podman.
    pub buildah_images: Vec<String>,
    /// podman's `--root` and `--runroot`; by default under `data_dir/podman`.
    pub podman_storage: Option<(PathBuf, PathBuf)>,
    /// The docker plugin's node-level registry auth (`plugin "docker" { config { auth {
    /// config = "..." } } }`): a docker `config.json` the client pulls with when a task's
    /// config has no `auth` of its own.
    pub docker_auth_config: Option<PathBuf>,
}

impl FakeNomadConfig {
    /// Defaults of a dev agent: loopback on a free port, datacenter `dc1`, 4000 MHz, 8192 MB,
    /// no host volumes, no ACLs, `quay.io/buildah/stable` run on the host.
    pub fn new(data_dir: impl Into<PathBuf>) -> FakeNomadConfig {
        FakeNomadConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            datacenter: "dc1".to_owned(),
            node_cpu_mhz: 4000,
            node_memory_mb: 8192,
            host_volumes: BTreeMap::new(),
            insecure_registries: Vec::new(),
            acl_token: None,
            buildah_images: vec!["quay.io/buildah/stable".to_owned()],
            podman_storage: None,
            docker_auth_config: None,
        }
    }
}

/// What every part of the fake shares.
pub(crate) struct Inner {
    pub config: FakeNomadConfig,
    pub node: scheduler::Node,
    pub store: state::Store,
    /// Cancelled when the fake stops: every loop and task runner watches it.
    pub shutdown: CancellationToken,
    /// Processes and containers running now, by `<alloc id>/<task>`, to kill on drop.
    pub processes: Mutex<BTreeMap<String, driver::Target>>,
    pub host_runs: Mutex<Vec<HostRun>>,
    pub podman_storage: (PathBuf, PathBuf),
    /// How many blocking queries are waiting now: a sync marker for tests.
    pub waiting_queries: tokio::sync::watch::Sender<usize>,
    /// Held while a runner creates dirs or starts a process, and while the fake shuts down, so
    /// that nothing is created or started once shutdown began (a test's data dir is removed
    /// right after the fake is dropped).
    pub start_gate: Mutex<()>,
}

impl Inner {
    /// Run `f` unless the fake is shutting down; `None` if it is.
    pub(crate) fn while_running<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let _gate = self.start_gate.lock().unwrap_or_else(|p| p.into_inner());
        if self.shutdown.is_cancelled() { None } else { Some(f()) }
    }
}

/// A running fake Nomad. Dropping it stops the server and kills every task it started.
pub struct FakeNomad {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl FakeNomad {
    /// Bind, then serve and schedule in the background of the current Tokio runtime.
    ///
    /// Panics if the address cannot be bound or the data dir cannot be created: this is a test
    /// fixture, and the binary reports the same panics as start-up errors.
    pub async fn start(config: FakeNomadConfig) -> FakeNomad {
        match FakeNomad::try_start(config).await {
            Ok(nomad) => nomad,
            Err(error) => panic!("fake nomad could not start: {error}"),
        }
    }

    /// [`FakeNomad::start`], returning start-up errors instead of panicking.
    pub async fn try_start(config: FakeNomadConfig) -> std::io::Result<FakeNomad> {
        std::fs::create_dir_all(config.data_dir.join("allocs"))?;
        let podman_storage = config
            .podman_storage
            .clone()
            .unwrap_or_else(|| (config.data_dir.join("podman/root"), config.data_dir.join("podman/run")));
        std::fs::create_dir_all(&podman_storage.0)?;
        std::fs::create_dir_all(podman_storage.1.join("libpod-tmp"))?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let node = scheduler::Node::new(&config.datacenter, config.node_cpu_mhz, config.node_memory_mb);
        let inner = Arc::new(Inner {
            config,
            node,
            store: state::Store::new(),
            shutdown: CancellationToken::new(),
            processes: Mutex::new(BTreeMap::new()),
            host_runs: Mutex::new(Vec::new()),
            podman_storage,
            waiting_queries: tokio::sync::watch::channel(0).0,
            start_gate: Mutex::new(()),
        });
        tokio::spawn(scheduler::run(inner.clone()));
        tokio::spawn(client::run(inner.clone()));
        let app = http::router(inner.clone());
        let shutdown = inner.shutdown.clone();
        crate::fake_http::serve("fake nomad", listener, app, shutdown);
        Ok(FakeNomad { addr, inner })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the `NOMAD_ADDR` of this agent.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The IDs of the jobs stored now (purged jobs are gone).
    pub fn jobs(&self) -> Vec<String> {
        self.inner.store.read(|state| state.jobs.keys().map(|(_, id)| id.clone()).collect())
    }

    /// How many times a job ID was registered (accepted `POST /v1/jobs` or `/v1/job/:id`),
    /// including registrations of an unchanged job.
    pub fn registrations(&self, job_id: &str) -> usize {
        self.registration_times(job_id).len()
    }

    /// When a job ID was registered (Unix nanoseconds), each time it was.
    pub fn registration_times(&self, job_id: &str) -> Vec<i64> {
        self.inner.store.read(|state| state.registrations.get(job_id).cloned().unwrap_or_default())
    }

    /// Wait until at least `count` blocking queries are parked waiting for a change: lets a
    /// test make a change only once its query is known to be blocked, without sleeping.
    pub async fn blocking_queries_waiting(&self, count: usize) {
        let mut waiting = self.inner.waiting_queries.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = waiting.wait_for(|n| *n >= count).await;
    }

    /// The node's ID.
    pub fn node_id(&self) -> String {
        self.inner.node.id.clone()
    }

    /// Every task run on the host in place of a buildah container, in start order.
    pub fn host_runs(&self) -> Vec<HostRun> {
        self.inner.host_runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The alloc dir of an allocation (`<data dir>/allocs/<id>`).
    pub fn alloc_dir(&self, alloc_id: &str) -> PathBuf {
        self.inner.config.data_dir.join("allocs").join(alloc_id)
    }

    /// The podman command prefix the fake uses (its storage and runtime flags), for tests
    /// that inspect its containers.
    pub fn podman_command(&self) -> Vec<String> {
        driver::podman_base(&self.inner)
    }

    /// Stop serving and kill every task, now.
    pub fn shutdown(&self) {
        {
            let _gate = self.inner.start_gate.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.shutdown.cancel();
        }
        let targets: Vec<driver::Target> =
            std::mem::take(&mut *self.inner.processes.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        let podman = driver::podman_base(&self.inner);
        for target in targets {
            driver::kill_now(&podman, &target);
        }
    }
}

impl Drop for FakeNomad {
    fn drop(&mut self) {
        self.shutdown();
    }
}
