//! Service lookup and agent facts: `/v1/health/service/<name>` (`?passing`, `?tag`),
//! `/v1/catalog/service/<name>`, `/v1/catalog/services`, `/v1/status/leader|peers` and a
//! minimal `/v1/agent/self`, in the wire shapes of a current open-source Consul (no
//! Enterprise `Namespace`/`Partition` fields; `omitempty` proxy fields left out).
//!
//! The catalog is fixed at start (the configured services plus Consul's own `consul` service,
//! on one node); only check statuses change, through the store. Nothing here writes.

use std::collections::BTreeMap;

use axum::response::Response;
use serde::Serialize;

use super::CONSUL_VERSION;
use super::http::{Ctx, HttpError, Lookup, Meta, blocking, json_response};
use super::state::{Check, Instance, Node};

/// The server RPC port Consul reports in `status/leader`.
const SERVER_PORT: u16 = 8300;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: BTreeMap<&'static str, &'a str>,
    meta: BTreeMap<&'static str, &'static str>,
    create_index: u64,
    modify_index: u64,
}

/// `structs.ServiceAddress`: no json tags, so capitalised (the docs' samples write them
/// lower-case, the server does not).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AddressJson<'a> {
    address: &'a str,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WeightsJson {
    passing: u32,
    warning: u32,
}

/// `structs.ConnectProxyConfig` of a plain service: every `omitempty` field is gone.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProxyJson {
    mode: &'static str,
    mesh_gateway: Empty,
    expose: Empty,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: Vec<String>,
    address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<&'static str, AddressJson<'a>>,
    meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero")]
    port: u16,
    weights: WeightsJson,
    enable_tag_override: bool,
    proxy: ProxyJson,
    connect: Empty,
    create_index: u64,
    modify_index: u64,
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CheckJson<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    status: &'static str,
    notes: &'static str,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: Vec<String>,
    #[serde(rename = "Type")]
    kind: &'static str,
    interval: &'static str,
    timeout: &'static str,
    exposed_port: u16,
    definition: Empty,
    create_index: u64,
    modify_index: u64,
}

/// `structs.CheckServiceNode`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CheckServiceNodeJson<'a> {
    node: NodeJson<'a>,
    service: ServiceJson<'a>,
    checks: Vec<CheckJson<'a>>,
}

/// `structs.ServiceNode`, the flat catalog view (no health).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceNodeJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: BTreeMap<&'static str, &'a str>,
    node_meta: BTreeMap<&'static str, &'static str>,
    service_kind: &'static str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    service_name: &'a str,
    service_tags: Vec<String>,
    service_address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    service_tagged_addresses: BTreeMap<&'static str, AddressJson<'a>>,
    service_weights: WeightsJson,
    service_meta: BTreeMap<String, String>,
    service_port: u16,
    service_socket_path: &'static str,
    service_enable_tag_override: bool,
    service_proxy: ProxyJson,
    service_connect: Empty,
    create_index: u64,
    modify_index: u64,
}

fn node_tagged_addresses(node: &Node) -> BTreeMap<&'static str, &str> {
    let address = node.address.as_str();
    BTreeMap::from([("lan", address), ("lan_ipv4", address), ("wan", address), ("wan_ipv4", address)])
}

fn node_meta() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("consul-network-segment", "")])
}

/// What the agent adds when a service registers with an IP address.
fn service_tagged_addresses(instance: &Instance) -> BTreeMap<&'static str, AddressJson<'_>> {
    let address = || AddressJson { address: &instance.address, port: instance.port };
    match instance.address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => BTreeMap::from([("lan_ipv4", address()), ("wan_ipv4", address())]),
        Ok(std::net::IpAddr::V6(_)) => BTreeMap::from([("lan_ipv6", address()), ("wan_ipv6", address())]),
        Err(_) => BTreeMap::new(),
    }
}

fn proxy() -> ProxyJson {
    ProxyJson { mode: "", mesh_gateway: Empty {}, expose: Empty {} }
}

fn check_json<'a>(node: &'a Node, check: &'a Check, service: Option<&'a Instance>) -> CheckJson<'a> {
    CheckJson {
        node: &node.name,
        check_id: &check.id,
        name: &check.name,
        status: check.status(),
        notes: "",
        output: &check.output,
        service_id: service.map_or("", |s| s.id.as_str()),
        service_name: service.map_or("", |s| s.name.as_str()),
        service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
        // Configured services carry a TTL-style check that the test hook sets.
        kind: if service.is_some() { "ttl" } else { "" },
        interval: "",
        timeout: "",
        exposed_port: 0,
        definition: Empty {},
        create_index: check.create_index,
        modify_index: check.modify_index,
    }
}

fn node_json(node: &Node) -> NodeJson<'_> {
    NodeJson {
        id: &node.id,
        node: &node.name,
        address: &node.address,
        datacenter: &node.datacenter,
        tagged_addresses: node_tagged_addresses(node),
        meta: node_meta(),
        create_index: node.create_index,
        modify_index: node.modify_index,
    }
}

fn service_name<'a>(ctx: &Ctx<'a>, prefix: &str) -> Result<&'a str, HttpError> {
    let name = ctx.path.strip_prefix(prefix).unwrap_or_default();
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing service name"));
    }
    Ok(name)
}

/// `?filter` is a bexpr expression; the fake does not evaluate them, and says so rather than
/// answering unfiltered.
fn refuse_filter(ctx: &Ctx<'_>) -> Result<(), HttpError> {
    if ctx.query.get("filter").is_some_and(|f| !f.is_empty()) {
        return Err(HttpError::bad_request(
            "Failed to create boolean expression evaluator: the fake Consul does not evaluate ?filter",
        ));
    }
    Ok(())
}

/// `?tag=` (repeatable): the tags an instance must all carry.
fn wanted_tags(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.query.all("tag").into_iter().map(str::to_owned).collect()
}

/// The instances of `name` that `?tag` keeps and the token may see: (node, instances,
/// whether ACLs hid some), read under the store's lock and answered outside it.
fn lookup(
    state: &super::state::State,
    name: &str,
    tags: &[String],
    can_read: bool,
) -> (u64, Lookup, (Node, Vec<Instance>, bool)) {
    let catalog = &state.catalog;
    let matching: Vec<Instance> = catalog
        .instances
        .iter()
        .filter(|i| i.name == name && tags.iter().all(|t| i.tags.contains(t)))
        .cloned()
        .collect();
    let total = matching.len();
    let visible = if can_read { matching } else { Vec::new() };
    let filtered = visible.len() != total;
    (catalog.service_index(name), Lookup::Found, (catalog.node.clone(), visible, filtered))
}

pub(crate) async fn health_service(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    let name = service_name(ctx, "/v1/health/service/")?;
    refuse_filter(ctx)?;
    let passing_only = match ctx.query.get("passing") {
        None => false,
        Some("") => true,
        Some(text) => parse_go_bool(text).ok_or_else(|| HttpError::bad_request("Invalid value for ?passing"))?,
    };
    let authz = ctx.authz()?;
    let (can_read, tags) = (authz.can_read(), wanted_tags(ctx));
    let (index, (node, instances, filtered)) =
        blocking(ctx.inner, &options, |state| lookup(state, name, &tags, can_read)).await;
    // `?passing` keeps instances whose every check, the node's serfHealth included, passes.
    let body: Vec<CheckServiceNodeJson<'_>> = instances
        .iter()
        .filter(|i| !passing_only || (node.serf_check.passing && i.check.as_ref().is_none_or(|c| c.passing)))
        .map(|instance| {
            let mut checks = vec![check_json(&node, &node.serf_check, None)];
            checks.extend(instance.check.as_ref().map(|c| check_json(&node, c, Some(instance))));
            CheckServiceNodeJson {
                node: node_json(&node),
                service: ServiceJson {
                    id: &instance.id,
                    service: &instance.name,
                    tags: instance.tags.clone(),
                    address: &instance.address,
                    tagged_addresses: service_tagged_addresses(instance),
                    meta: BTreeMap::new(),
                    port: instance.port,
                    weights: WeightsJson { passing: 1, warning: 1 },
                    enable_tag_override: false,
                    proxy: proxy(),
                    connect: Empty {},
                    create_index: instance.create_index,
                    modify_index: instance.modify_index,
                },
                checks,
            }
        })
        .collect();
    Ok(json_response(&body, ctx.query, Some(&Meta { index, filtered })))
}

pub(crate) async fn catalog_service(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    let name = service_name(ctx, "/v1/catalog/service/")?;
    refuse_filter(ctx)?;
    let authz = ctx.authz()?;
    let (can_read, tags) = (authz.can_read(), wanted_tags(ctx));
    let (index, (node, instances, filtered)) =
        blocking(ctx.inner, &options, |state| lookup(state, name, &tags, can_read)).await;
    let body: Vec<ServiceNodeJson<'_>> = instances
        .iter()
        .map(|instance| ServiceNodeJson {
            id: &node.id,
            node: &node.name,
            address: &node.address,
            datacenter: &node.datacenter,
            tagged_addresses: node_tagged_addresses(&node),
            node_meta: node_meta(),
            service_kind: "",
            service_id: &instance.id,
            service_name: &instance.name,
            service_tags: instance.tags.clone(),
            service_address: &instance.address,
            service_tagged_addresses: service_tagged_addresses(instance),
            service_weights: WeightsJson { passing: 1, warning: 1 },
            service_meta: BTreeMap::new(),
            service_port: instance.port,
            service_socket_path: "",
            service_enable_tag_override: false,
            service_proxy: proxy(),
            service_connect: Empty {},
            create_index: instance.create_index,
            modify_index: instance.modify_index,
        })
        .collect();
    Ok(json_response(&body, ctx.query, Some(&Meta { index, filtered })))
}

/// `/v1/catalog/services`: every service name and its tags.
pub(crate) async fn catalog_services(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    refuse_filter(ctx)?;
    let authz = ctx.authz()?;
    let can_read = authz.can_read();
    let (index, (services, filtered)) = blocking(ctx.inner, &options, |state| {
        let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for instance in &state.catalog.instances {
            let tags = services.entry(instance.name.clone()).or_default();
            for tag in &instance.tags {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
        let filtered = !can_read && !services.is_empty();
        if !can_read {
            services.clear();
        }
        (state.catalog.services_index, Lookup::Found, (services, filtered))
    })
    .await;
    Ok(json_response(&services, ctx.query, Some(&Meta { index, filtered })))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn leader(ctx: &Ctx<'_>) -> String {
    let address = ctx.inner.store.read(|state| state.catalog.node.address.clone());
    format!("{address}:{SERVER_PORT}")
}

/// `/v1/status/leader`: the leader's server address as a JSON string. No ACL applies.
pub(crate) fn status_leader(ctx: &Ctx<'_>) -> Response {
    json_response(&leader(ctx), ctx.query, None)
}

pub(crate) fn status_peers(ctx: &Ctx<'_>) -> Response {
    json_response(&[leader(ctx)], ctx.query, None)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentConfigJson<'a> {
    datacenter: &'a str,
    primary_datacenter: &'a str,
    node_name: &'a str,
    #[serde(rename = "NodeID")]
    node_id: &'a str,
    revision: &'static str,
    server: bool,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MemberJson<'a> {
    name: &'a str,
    addr: &'a str,
    port: u16,
    tags: BTreeMap<&'static str, String>,
    /// serf's `MemberStatus`: 1 is alive.
    status: u8,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentSelfJson<'a> {
    config: AgentConfigJson<'a>,
    member: MemberJson<'a>,
    meta: BTreeMap<&'static str, &'static str>,
}

/// A minimal `/v1/agent/self` (needs `agent:read`).
pub(crate) fn agent_self(ctx: &Ctx<'_>) -> Result<Response, HttpError> {
    let node = ctx.inner.store.read(|state| state.catalog.node.clone());
    let authz = ctx.authz()?;
    authz.require("agent", "read", &node.name)?;
    let tags = BTreeMap::from([
        ("build", format!("{CONSUL_VERSION}:fake")),
        ("dc", node.datacenter.clone()),
        ("id", node.id.clone()),
        ("port", SERVER_PORT.to_string()),
        ("role", "consul".to_owned()),
        ("vsn", "2".to_owned()),
    ]);
    let body = AgentSelfJson {
        config: AgentConfigJson {
            datacenter: &node.datacenter,
            primary_datacenter: &node.datacenter,
            node_name: &node.name,
            node_id: &node.id,
            revision: "fake",
            server: true,
            version: CONSUL_VERSION,
        },
        member: MemberJson { name: &node.name, addr: &node.address, port: 8301, tags, status: 1 },
        meta: node_meta(),
    };
    Ok(json_response(&body, ctx.query, None))
}
