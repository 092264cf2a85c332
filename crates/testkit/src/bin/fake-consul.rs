//! `fake-consul`: the testkit's fake Consul as a standalone one-node dev agent, for demos and
//! manual checks (`cargo run -p jobforge-testkit --bin fake-consul -- --listen 127.0.0.1:8500`).
//!
//! It only parses flags, starts [`FakeConsul`], prints where it listens, and stops it on SIGINT
//! or SIGTERM. All behaviour lives in the library.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use jobforge_testkit::fake_consul::{FakeConsul, FakeConsulConfig, FakeService, parse_duration};

#[derive(Parser, Debug)]
#[command(name = "fake-consul", about = "A fake one-node Consul dev agent: KV, sessions and locks, service health")]
struct Args {
    /// Address to serve the HTTP API on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8500")]
    listen: SocketAddr,
    /// Turn ACLs on (default policy deny): this is the one management token.
    #[arg(long, env = "FAKE_CONSUL_ACL_TOKEN")]
    acl_token: Option<String>,
    /// A passing service instance, NAME=ADDR:PORT (repeatable).
    #[arg(long = "service", value_name = "NAME=ADDR:PORT", value_parser = parse_service)]
    services: Vec<FakeService>,
    /// The smallest session TTL accepted, a Go duration. Consul's is 10s; lower it to see
    /// sessions expire quickly.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    min_ttl: Duration,
    /// Sessions expire this many TTLs after their last renew (Consul: 2).
    #[arg(long, default_value_t = 2)]
    ttl_multiplier: u32,
    /// The datacenter.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// The node's name.
    #[arg(long, default_value = "fake-consul")]
    node: String,
}

/// `NAME=ADDR:PORT`; the address may be a bracketed IPv6 one.
fn parse_service(spec: &str) -> Result<FakeService, String> {
    let (name, address) = spec.split_once('=').ok_or_else(|| format!("{spec:?} is not NAME=ADDR:PORT"))?;
    let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("{spec:?} has no :PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{spec:?}: {port:?} is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || host.is_empty() {
        return Err(format!("{spec:?} is not NAME=ADDR:PORT"));
    }
    Ok(FakeService::new(name, host, port))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let config = FakeConsulConfig {
        listen: args.listen,
        acl_token: args.acl_token,
        services: args.services,
        datacenter: args.datacenter,
        node_name: args.node,
        ttl_min: args.min_ttl,
        ttl_multiplier: args.ttl_multiplier,
        ..FakeConsulConfig::new()
    };
    let consul =
        FakeConsul::try_start(config).await.with_context(|| format!("start fake consul on {}", args.listen))?;
    println!("fake consul listening on {}", consul.url());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("fake consul: stopping");
    drop(consul);
    Ok(())
}
