//! A faithful fake of a one-node Consul dev agent (server and client in one) for the parts
//! jobforge uses in cluster mode: the KV store, sessions and locks, and service lookup. For
//! tests and demos on machines where no Consul binary can be installed.
//!
//! [`FakeConsul::start`] serves Consul's HTTP API on loopback with Consul's semantics, read from
//! its source (see `reference/api-facts.md` sections 3–5 and the commits named in each module):
//! one raft-like index and per-table indexes; single-key reads that report the key's own modify
//! index and lists that report the highest index under their prefix, tombstones included;
//! blocking queries; CAS; sessions with TTL expiry and `release`/`delete` invalidation;
//! Consul's acquire/release rules and lock-delay; `?passing` health lookups; ACL tokens;
//! plain-text errors worded as Consul words them. Fidelity to the wire format is checked
//! against the recorded Consul examples in `crates/testkit/tests/fake_consul.rs`.
//!
//! Codemap: `http` (routes, query options, the blocking loop, headers, errors) dispatches to
//! `kv`, `session` (and its TTL reaper) and `catalog`; they ask `acl` about tokens and apply
//! changes through `state` (Consul's state-store rules, pure and synchronous). `duration` reads
//! and prints Go durations.
//!
//! Deviations from a real agent, each a documented knob or limit: `ttl_min` may be set below
//! Consul's 10 s so tests can expire sessions quickly; `ttl_multiplier` sets when an unrenewed
//! session expires (Consul: 2 × TTL); tombstones are only reaped on request
//! ([`FakeConsul::reap_tombstones`]); the index moves only on writes (a real cluster also writes
//! coordinates and autopilot state); `?filter` expressions are refused, not evaluated; ACLs know
//! one management token and the anonymous one (default policy deny).
//!
//! Invariant: the fake never panics on a request; bad input gets Consul's error. Dropping the
//! [`FakeConsul`] stops the server and the reaper.

mod acl;
mod catalog;
mod duration;
mod http;
mod kv;
mod session;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The Consul version the fake reports (`/v1/agent/self`); its behaviour follows that line's
/// source.
pub const CONSUL_VERSION: &str = "1.21.5";

/// A service instance registered on the fake's node, for `/v1/health/service/<name>` and
/// `/v1/catalog/service/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeService {
    pub name: String,
    /// The service address (an IP gets `lan_ipv4`/`wan_ipv4` tagged addresses, as the agent adds).
    pub address: String,
    pub port: u16,
    /// The status of the instance's one check (`service:<id>`, critical when false).
    pub passing: bool,
    /// Service tags (`?tag=` filters on them).
    pub tags: Vec<String>,
}

impl FakeService {
    /// A passing instance without tags.
    pub fn new(name: impl Into<String>, address: impl Into<String>, port: u16) -> FakeService {
        FakeService { name: name.into(), address: address.into(), port, passing: true, tags: Vec::new() }
    }

    /// The same instance with these tags.
    pub fn with_tags(mut self, tags: &[&str]) -> FakeService {
        self.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self
    }
}

/// How a fake Consul is set up.
#[derive(Clone, Debug)]
pub struct FakeConsulConfig {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// With a token set, ACLs are on (default policy deny) and this is the one management token.
    pub acl_token: Option<String>,
    /// Service instances on the node, besides Consul's own `consul` service.
    pub services: Vec<FakeService>,
    pub datacenter: String,
    /// The node's name: sessions default to it, and only it is registered.
    pub node_name: String,
    /// The smallest session TTL accepted. Consul's `session_ttl_min` is 10 s (the default here);
    /// DEVIATION KNOB: tests may set it lower (e.g. 1 s) to see TTL expiry quickly.
    pub ttl_min: Duration,
    /// The largest session TTL accepted (Consul's `SessionTTLMax`, 24 h).
    pub ttl_max: Duration,
    /// An unrenewed session is invalidated this many TTLs after its last renew. Consul's
    /// `SessionTTLMultiplier` is 2 (the default): its contract is only "not before the TTL".
    /// Set 1 to expire at the TTL itself.
    pub ttl_multiplier: u32,
    /// `kv_max_value_size`: larger PUT bodies get 413 (512 KiB by default, as in Consul).
    pub kv_max_value_size: usize,
    /// Refuse key names as the strictest Consul patch releases do (on by default; see `kv`).
    pub validate_keys: bool,
}

impl Default for FakeConsulConfig {
    fn default() -> FakeConsulConfig {
        FakeConsulConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            acl_token: None,
            services: Vec::new(),
            datacenter: "dc1".to_owned(),
            node_name: "fake-consul".to_owned(),
            ttl_min: Duration::from_secs(10),
            ttl_max: Duration::from_secs(24 * 3600),
            ttl_multiplier: 2,
            kv_max_value_size: 512 * 1024,
            validate_keys: true,
        }
    }
}

impl FakeConsulConfig {
    /// The defaults: loopback on a free port, `dc1`, no ACLs, no services, Consul's limits.
    pub fn new() -> FakeConsulConfig {
        FakeConsulConfig::default()
    }
}

/// A KV pair as stored (for test assertions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    /// The session holding the lock, if any.
    pub session: Option<String>,
}

/// A live session (for test assertions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub name: String,
    pub node: String,
    /// `release` or `delete`.
    pub behavior: String,
    /// As sent, e.g. `15s`; empty for none.
    pub ttl: String,
    pub lock_delay: Duration,
    pub create_index: u64,
    /// When the fake will invalidate it unless renewed.
    pub expires_at: Option<std::time::Instant>,
}

/// What every part of the fake shares.
pub(crate) struct Inner {
    pub config: FakeConsulConfig,
    pub store: state::Store,
    /// Cancelled when the fake stops: the server, the reaper and parked queries watch it.
    pub shutdown: CancellationToken,
    /// How many blocking queries are waiting now: a sync marker for tests.
    pub waiting_queries: tokio::sync::watch::Sender<usize>,
}

/// A running fake Consul. Dropping it stops the server.
pub struct FakeConsul {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

/// Parse a Go duration (`1s`, `1m30s`, `500ms`) as the binary's flags and Consul's API take
/// them; negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let nanos = duration::parse_go_duration(text)?;
    if nanos < 0 {
        return Err(format!("negative duration {text:?}"));
    }
    Ok(duration::nanos_to_duration(nanos))
}

/// The catalog at start: the node and its `serfHealth` check, Consul's own service, then the
/// configured instances, each registered in its own write as an agent would. Returns the
/// catalog and the index of the last write.
fn initial_catalog(config: &FakeConsulConfig, address: String) -> (state::Catalog, u64) {
    let mut index = 1;
    let node = state::Node {
        id: uuid::Uuid::new_v4().to_string(),
        name: config.node_name.clone(),
        address,
        datacenter: config.datacenter.clone(),
        serf_check: state::Check {
            id: "serfHealth".to_owned(),
            name: "Serf Health Status".to_owned(),
            passing: true,
            output: "Agent alive and reachable".to_owned(),
            create_index: index,
            modify_index: index,
        },
        create_index: index,
        modify_index: index,
    };
    index += 1;
    let mut instances = vec![state::Instance {
        id: "consul".to_owned(),
        name: "consul".to_owned(),
        // Empty: clients use the node's address, as for Consul's own service.
        address: String::new(),
        port: 8300,
        tags: Vec::new(),
        check: None,
        create_index: index,
        modify_index: index,
    }];
    let mut service_indexes = BTreeMap::from([("consul".to_owned(), index)]);
    for service in &config.services {
        index += 1;
        let seen = instances.iter().filter(|i| i.name == service.name).count();
        let id = if seen == 0 { service.name.clone() } else { format!("{}-{}", service.name, seen + 1) };
        instances.push(state::Instance {
            id: id.clone(),
            name: service.name.clone(),
            address: service.address.clone(),
            port: service.port,
            tags: service.tags.clone(),
            check: Some(state::Check {
                id: format!("service:{id}"),
                name: format!("Service '{}' check", service.name),
                passing: service.passing,
                output: if service.passing { String::new() } else { "TTL expired".to_owned() },
                create_index: index,
                modify_index: index,
            }),
            create_index: index,
            modify_index: index,
        });
        service_indexes.insert(service.name.clone(), index);
    }
    (state::Catalog { node, instances, services_index: index, service_indexes }, index)
}

impl FakeConsul {
    /// Bind, then serve in the background of the current Tokio runtime.
    ///
    /// Panics if the address cannot be bound: this is a test fixture, and the binary reports
    /// the same failure as a start-up error through [`FakeConsul::try_start`].
    pub async fn start(config: FakeConsulConfig) -> FakeConsul {
        match FakeConsul::try_start(config).await {
            Ok(consul) => consul,
            Err(error) => panic!("fake consul could not start: {error}"),
        }
    }

    /// [`FakeConsul::start`], returning start-up errors instead of panicking.
    pub async fn try_start(config: FakeConsulConfig) -> std::io::Result<FakeConsul> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let address = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
        let (catalog, index) = initial_catalog(&config, address);
        let inner = Arc::new(Inner {
            config,
            store: state::Store::new(catalog, index),
            shutdown: CancellationToken::new(),
            waiting_queries: tokio::sync::watch::channel(0).0,
        });
        tokio::spawn(session::reap(inner.clone()));
        let app = http::router(inner.clone());
        let shutdown = inner.shutdown.clone();
        crate::fake_http::serve("fake consul", listener, app, shutdown);
        Ok(FakeConsul { addr, inner })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the `CONSUL_HTTP_ADDR` of this agent.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The raft index of the last write.
    pub fn index(&self) -> u64 {
        self.inner.store.read(|state| state.index)
    }

    /// The stored pair at `key`.
    pub fn kv(&self, key: &str) -> Option<KvPair> {
        self.inner.store.read(|state| {
            state.kv.get(key).map(|e| KvPair {
                key: e.key.clone(),
                value: e.value.clone(),
                flags: e.flags,
                create_index: e.create_index,
                modify_index: e.modify_index,
                lock_index: e.lock_index,
                session: e.session.clone(),
            })
        })
    }

    /// Every live session, by ID.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.inner.store.read(|state| {
            state
                .sessions
                .iter()
                .map(|(key, s)| SessionRecord {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    node: s.node.clone(),
                    behavior: s.behavior.as_str().to_owned(),
                    ttl: s.ttl.clone(),
                    lock_delay: duration::nanos_to_duration(s.lock_delay_nanos),
                    create_index: s.create_index,
                    expires_at: state.expires.get(key).map(|at| at.into_std()),
                })
                .collect()
        })
    }

    /// Invalidate a session now, exactly as its TTL running out would (its `Behavior` applies,
    /// lock-delays start). False if there is no such session.
    pub fn expire_session(&self, id: &str) -> bool {
        session::invalidate(&self.inner, id)
    }

    /// Set the check of every instance of `service` passing or critical. A check turning
    /// critical invalidates the sessions tied to it, as in Consul. False if no such service.
    pub fn set_service_health(&self, service: &str, passing: bool) -> bool {
        let (known, changes) = self.inner.store.read(|state| {
            let mut instances = state.catalog.instances.iter().filter(|i| i.name == service).peekable();
            let known = instances.peek().is_some();
            (known, instances.any(|i| i.check.as_ref().is_some_and(|c| c.passing != passing)))
        });
        if changes {
            let now = tokio::time::Instant::now();
            self.inner.store.write(|txn| txn.set_service_health(service, passing, now));
        }
        known
    }

    /// Run Consul's tombstone GC now: every tombstone goes, so a list whose highest index was a
    /// deleted key reports a lower index (what makes clients reset their blocking index).
    pub fn reap_tombstones(&self) {
        self.inner.store.write(|txn| txn.reap_tombstones());
    }

    /// When the lock-delay on `key` ends, if one is running.
    pub fn lock_delay(&self, key: &str) -> Option<std::time::Instant> {
        let now = tokio::time::Instant::now();
        self.inner.store.read(|state| state.lock_delay(key, now)).map(|at| at.into_std())
    }

    /// Wait until at least `count` blocking queries are parked waiting for a change: lets a
    /// test make a change only once its query is known to be blocked, without sleeping.
    pub async fn blocking_queries_waiting(&self, count: usize) {
        let mut waiting = self.inner.waiting_queries.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = waiting.wait_for(|n| *n >= count).await;
    }

    /// Stop serving, now.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.shutdown();
    }
}
