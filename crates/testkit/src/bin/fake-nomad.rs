//! `fake-nomad`: the testkit's fake Nomad as a standalone one-node dev agent, for demos and
//! manual checks (`cargo run -p jobforge-testkit --bin fake-nomad -- --listen 127.0.0.1:4646`).
//!
//! It only parses flags, starts [`FakeNomad`], prints where it listens, and on SIGINT or
//! SIGTERM stops it (which kills every task it started). All behaviour lives in the library.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use jobforge_testkit::fake_nomad::{FakeNomad, FakeNomadConfig};

#[derive(Parser, Debug)]
#[command(name = "fake-nomad", about = "A fake one-node Nomad dev agent that runs docker-driver tasks with podman")]
struct Args {
    /// Address to serve the HTTP API on.
    #[arg(long, default_value = "127.0.0.1:4646")]
    listen: SocketAddr,
    /// Alloc dirs, logs and podman storage; a fresh temporary directory if not given.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The node's datacenter.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// A client host volume, NAME=PATH (repeatable). Default: buildah-cache=<data-dir>/buildah-cache.
    #[arg(long = "host-volume", value_name = "NAME=PATH")]
    host_volumes: Vec<String>,
    /// A registry (host:port) podman pulls from over plain http (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Turn ACLs on: every request must carry this token.
    #[arg(long, env = "FAKE_NOMAD_ACL_TOKEN")]
    acl_token: Option<String>,
    /// The node's CPU in MHz.
    #[arg(long, default_value_t = 4000)]
    cpu: u32,
    /// The node's memory in MB.
    #[arg(long, default_value_t = 8192)]
    memory: u32,
    /// Image prefixes run on the host with the host's buildah (repeatable).
    #[arg(long = "buildah-image", default_value = "quay.io/buildah/stable")]
    buildah_images: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    // Kept alive until exit: dropping it removes the directory.
    let mut _temp = None;
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => {
            let dir = tempfile::Builder::new().prefix("fake-nomad-").tempdir().context("create a data dir")?;
            let path = dir.path().to_path_buf();
            _temp = Some(dir);
            path
        }
    };
    let mut host_volumes = BTreeMap::new();
    for spec in &args.host_volumes {
        let (name, path) = spec.split_once('=').with_context(|| format!("--host-volume {spec:?} is not NAME=PATH"))?;
        host_volumes.insert(name.to_owned(), PathBuf::from(path));
    }
    if host_volumes.is_empty() {
        host_volumes.insert("buildah-cache".to_owned(), data_dir.join("buildah-cache"));
    }
    for path in host_volumes.values() {
        std::fs::create_dir_all(path).with_context(|| format!("create host volume dir {}", path.display()))?;
    }
    let config = FakeNomadConfig {
        listen: args.listen,
        datacenter: args.datacenter,
        node_cpu_mhz: args.cpu,
        node_memory_mb: args.memory,
        host_volumes,
        insecure_registries: args.insecure_registries,
        acl_token: args.acl_token,
        buildah_images: args.buildah_images,
        ..FakeNomadConfig::new(&data_dir)
    };
    let nomad = FakeNomad::try_start(config).await.with_context(|| format!("start fake nomad on {}", args.listen))?;
    println!("fake nomad listening on {}", nomad.url());
    println!("data dir: {}", data_dir.display());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("fake nomad: stopping tasks");
    drop(nomad);
    Ok(())
}
