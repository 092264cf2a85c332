//! Tests of the fake Consul: its answers against the recorded Consul examples in
//! `reference/consul-examples/` (a copy of `../shared/reference/`), and its behaviour — KV
//! reads, listings and CAS, blocking queries and their indexes, locks and sessions (TTL expiry,
//! `release`/`delete`, lock-delay), the value size limit, health lookups, ACLs, and the
//! standalone binary.
//!
//! Every test starts its own fake on a free port. Nothing sleeps for a guessed time: tests wait
//! through blocking queries or the fake's sync marker for parked queries; the one wait for a
//! lock-delay to end sleeps until the deadline the fake reports.

#[path = "fake_consul/support.rs"]
mod support;

use std::time::{Duration, Instant};

use jobforge_testkit::fake_consul::FakeService;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

const OMITEMPTY: &str = "structs.ConnectProxyConfig marks it omitempty (since Consul 1.3), so a current server leaves it \
                         out for a plain service; the docs' sample predates that";
const ENTERPRISE: &str = "Enterprise only: open-source Consul's EnterpriseMeta is empty, so it sends no Namespace; the \
                          docs' sample comes from Enterprise";
const LOWER_CASE: &str = "the docs' sample writes the keys lower-case; structs.ServiceAddress has no json tags, so the \
                          server sends Address and Port";

/// Keys of recorded examples the fake does not reproduce: (example file, path, why).
const SKIPPED: &[(&str, &str, &str)] = &[
    ("GET_v1_catalog_service_NAME.response.json", "[].Namespace", ENTERPRISE),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceProxy.DestinationServiceName", OMITEMPTY),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceProxy.DestinationServiceID", OMITEMPTY),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceProxy.LocalServiceAddress", OMITEMPTY),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceProxy.LocalServicePort", OMITEMPTY),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceProxy.Config", OMITEMPTY),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceProxy.Upstreams", OMITEMPTY),
    (
        "GET_v1_catalog_service_NAME.response.json",
        "[].ServiceConnect.Native",
        "structs.ServiceConnect marks Native omitempty: a plain service sends ServiceConnect as {}",
    ),
    (
        "GET_v1_catalog_service_NAME.response.json",
        "[].ServiceConnect.Proxy",
        "no longer a field: structs.ServiceConnect holds Native and SidecarService, both omitempty",
    ),
    ("GET_v1_catalog_service_NAME.response.json", "[].ServiceTaggedAddresses.*", LOWER_CASE),
    ("GET_v1_health_service_NAME.response.json", "[].Service.Namespace", ENTERPRISE),
    ("GET_v1_health_service_NAME.response.json", "[].Checks[].Namespace", ENTERPRISE),
    ("GET_v1_health_service_NAME.response.json", "[].Service.TaggedAddresses.*", LOWER_CASE),
];

fn skips(file: &str) -> Vec<&'static str> {
    SKIPPED.iter().filter(|(f, _, _)| *f == file).map(|(_, path, _)| *path).collect()
}

/// The fake's answer has the recorded example's shape, and the fields named in `same` (whose
/// values do not depend on the data) equal the example's, in the first element of a list.
fn check_fidelity(file: &str, actual: &Value, same: &[&str]) {
    assert_shape(file, actual, &skips(file));
    let recorded = example(file);
    let (recorded, actual) = match (&recorded, actual) {
        (Value::Array(r), Value::Array(a)) if !r.is_empty() => (&r[0], &a[0]),
        _ => (&recorded, actual),
    };
    for field in same {
        let pointer = format!("/{}", field.replace('.', "/"));
        assert_eq!(actual.pointer(&pointer), recorded.pointer(&pointer), "{file}: {field} differs; fake: {actual:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_match_the_recorded_examples() {
    // Each file of the manifest is checked below; a new one must be added here.
    let covered = [
        "GET_v1_kv_KEY.response.json",
        "GET_v1_kv_PREFIX_keys.response.json",
        "PUT_v1_kv_KEY.response.json",
        "DELETE_v1_kv_KEY.response.json",
        "PUT_v1_session_create.request.json",
        "PUT_v1_session_create.response.json",
        "PUT_v1_session_destroy_UUID.response.json",
        "GET_v1_session_info_UUID.response.json",
        "GET_v1_session_list.response.json",
        "PUT_v1_session_renew_UUID.response.json",
        "GET_v1_catalog_service_NAME.response.json",
        "GET_v1_health_service_NAME.response.json",
    ];
    let listed: Vec<String> = manifest().into_iter().map(|(file, _, _)| file).collect();
    assert_eq!(listed.len(), covered.len(), "the manifest lists {listed:?}");
    for file in &listed {
        assert!(covered.contains(&file.as_str()), "{file} is recorded but not checked");
    }

    // The sessions' samples were taken on node "raja-laptop-02": name the fake's node so.
    let fixture = start_with(|config| config.node_name = "raja-laptop-02".to_owned()).await;
    let api = &fixture.api;

    let put = api.put("/v1/kv/zip", "test").await.ok();
    check_fidelity("PUT_v1_kv_KEY.response.json", &put, &[]);
    assert_eq!(put, example("PUT_v1_kv_KEY.response.json"));

    // The recorded create request names node "foobar" and checks a, b and c: none is registered
    // on this agent, and Consul refuses such a session.
    let mut request = example("PUT_v1_session_create.request.json");
    let refused = api.put("/v1/session/create", request.to_string()).await;
    assert_eq!(refused.refusal(), (StatusCode::INTERNAL_SERVER_ERROR, "Missing node registration"));
    request["Node"] = json!("raja-laptop-02");
    let refused = api.put("/v1/session/create", request.to_string()).await;
    assert_eq!(refused.refusal(), (StatusCode::INTERNAL_SERVER_ERROR, "Missing check 'a' registration"));
    // With the node's own check in place of a, b and c the recorded request is accepted as is.
    request["Checks"] = json!(["serfHealth"]);
    let created = api.put("/v1/session/create", request.to_string()).await.ok();
    check_fidelity("PUT_v1_session_create.response.json", &created, &[]);
    let id = created["ID"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    // Its LockDelay ("15s"), TTL, behaviour and checks read back as recorded.
    let same = ["LockDelay", "Behavior", "TTL", "NodeChecks", "ServiceChecks", "Node"];
    let info = api.get(&format!("/v1/session/info/{id}")).await;
    assert!(info.index.is_some(), "session reads carry X-Consul-Index");
    let info = info.ok();
    check_fidelity("GET_v1_session_info_UUID.response.json", &info, &same);
    assert_eq!(info[0]["ID"], id.as_str());
    assert_eq!(info[0]["Name"], "my-service-lock");
    assert!(info[0].get("Checks").is_none(), "Checks is left out when it is only serfHealth: {info}");
    let list = api.get("/v1/session/list").await.ok();
    check_fidelity("GET_v1_session_list.response.json", &list, &same);
    let renewed = api.put(&format!("/v1/session/renew/{id}"), "").await.ok();
    check_fidelity("PUT_v1_session_renew_UUID.response.json", &renewed, &same);

    // A locked key, as the metadata sample shows it (Session present).
    assert!(api.put_kv("zip", &format!("?acquire={id}"), "test").await);
    let entries = api.get("/v1/kv/zip").await.ok();
    check_fidelity("GET_v1_kv_KEY.response.json", &entries, &["Key", "Value", "Flags"]);
    assert_eq!(entries[0]["Session"], id.as_str());
    assert_eq!(entries[0]["LockIndex"], 1);

    // The keys sample lists keys with a leading '/', which the strict key check refuses; the
    // same tree without it rolls up the same way.
    for key in ["web/bar", "web/foo", "web/subdir/baz"] {
        assert!(api.put_kv(key, "", "x").await);
    }
    let keys = api.get("/v1/kv/web/?keys&separator=/").await.ok();
    check_fidelity("GET_v1_kv_PREFIX_keys.response.json", &keys, &[]);
    let recorded: Vec<String> = example("GET_v1_kv_PREFIX_keys.response.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().trim_start_matches('/').to_owned())
        .collect();
    assert_eq!(keys, json!(recorded));

    let deleted = api.delete("/v1/kv/zip").await.ok();
    check_fidelity("DELETE_v1_kv_KEY.response.json", &deleted, &[]);
    assert_eq!(deleted, example("DELETE_v1_kv_KEY.response.json"));
    let destroyed = api.put(&format!("/v1/session/destroy/{id}"), "").await.ok();
    check_fidelity("PUT_v1_session_destroy_UUID.response.json", &destroyed, &[]);
    assert_eq!(destroyed, example("PUT_v1_session_destroy_UUID.response.json"));

    // Health: the sample's node, service and tags.
    let health = start_with(|config| {
        config.node_name = "foobar".to_owned();
        config.services = vec![FakeService::new("redis", "10.1.10.12", 8000).with_tags(&["primary"])];
    })
    .await;
    let mut instances = health.api.get("/v1/health/service/redis").await.ok();
    // The docs list the service's check before the node's; the server lists the node's first.
    // Order is not part of the shape.
    instances[0]["Checks"].as_array_mut().unwrap().sort_by_key(|c| c["ServiceID"] == "");
    let same = [
        "Node.Node",
        "Node.Datacenter",
        "Service.ID",
        "Service.Service",
        "Service.Tags",
        "Service.Address",
        "Service.Port",
        "Checks.0.Node",
        "Checks.0.CheckID",
        "Checks.0.Name",
        "Checks.0.Status",
        "Checks.0.ServiceID",
        "Checks.0.ServiceName",
        "Checks.0.ServiceTags",
        "Checks.1.CheckID",
        "Checks.1.Name",
        "Checks.1.Status",
        "Checks.1.ServiceID",
        "Checks.1.ServiceTags",
    ];
    check_fidelity("GET_v1_health_service_NAME.response.json", &instances, &same);

    // Catalog: the sample's node, service address, port and tags.
    let catalog = start_with(|config| {
        config.node_name = "t2.320".to_owned();
        config.services = vec![FakeService::new("web", "172.17.0.3", 5000).with_tags(&["prod"])];
    })
    .await;
    let nodes = catalog.api.get("/v1/catalog/service/web").await.ok();
    let same = [
        "Node",
        "Datacenter",
        "ServiceName",
        "ServiceAddress",
        "ServicePort",
        "ServiceTags",
        "ServiceEnableTagOverride",
    ];
    check_fidelity("GET_v1_catalog_service_NAME.response.json", &nodes, &same);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_reads_listings_and_refusals() {
    let fixture = start().await;
    let api = &fixture.api;
    // An empty store: the root key list is [], any other prefix is not found.
    let root = api.get("/v1/kv/?keys").await;
    assert_eq!((root.status, root.json()), (StatusCode::OK, json!([])));
    assert_eq!(api.get("/v1/kv/nothing/?keys").await.status, StatusCode::NOT_FOUND);

    assert!(api.put_kv("app/config", "?flags=42", "v1").await);
    let entry = api.entry("app/config").await;
    assert_eq!(base64_decode(entry["Value"].as_str().unwrap()), b"v1");
    assert_eq!((entry["Flags"].clone(), entry["LockIndex"].clone()), (json!(42), json!(0)));
    assert_eq!(entry["CreateIndex"], entry["ModifyIndex"]);
    assert!(entry.get("Session").is_none(), "Session is left out when nobody holds the key: {entry}");
    // The single-key index is the key's own modify index.
    let read = api.get("/v1/kv/app/config").await;
    assert_eq!(read.index, entry["ModifyIndex"].as_u64());
    assert_eq!(read.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(read.header("X-Consul-LastContact"), Some("0"));
    assert_eq!(read.header("X-Consul-Default-ACL-Policy"), Some("allow"));

    let raw = api.get("/v1/kv/app/config?raw").await;
    assert_eq!((raw.status, raw.text.as_str(), raw.header("content-type")), (StatusCode::OK, "v1", Some("text/plain")));

    // Writing the same value again changes nothing, not even the modify index; a set without
    // `?flags` stores flags 0.
    assert!(api.put_kv("app/config", "?flags=42", "v1").await);
    assert_eq!(api.entry("app/config").await["ModifyIndex"], entry["ModifyIndex"]);
    assert!(api.put_kv("app/config", "", "v1").await);
    let rewritten = api.entry("app/config").await;
    assert_eq!(rewritten["Flags"], 0);
    assert!(rewritten["ModifyIndex"].as_u64() > entry["ModifyIndex"].as_u64());
    // An empty body is Go's nil slice: it reads back as null.
    assert!(api.put_kv("app/empty", "", "").await);
    assert_eq!(api.entry("app/empty").await["Value"], Value::Null);

    let missing = api.get("/v1/kv/app/missing").await;
    assert_eq!((missing.status, missing.text.as_str()), (StatusCode::NOT_FOUND, ""));
    assert!(missing.index.is_some(), "a missing key still carries X-Consul-Index");

    for key in ["app/sub/one", "app/sub/two", "other/x"] {
        assert!(api.put_kv(key, "", key).await);
    }
    let listed = api.get("/v1/kv/app/?recurse").await;
    let listed_json = listed.json();
    let listed_keys: Vec<String> =
        listed_json.as_array().unwrap().iter().map(|e| e["Key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed_keys, ["app/config", "app/empty", "app/sub/one", "app/sub/two"], "sorted by key");
    let highest = listed_json.as_array().unwrap().iter().map(|e| e["ModifyIndex"].as_u64().unwrap()).max();
    assert_eq!(listed.index, highest, "a list reports the highest index under its prefix");
    // `?recurse=false` still recurses: presence is what counts.
    assert_eq!(api.get("/v1/kv/app/?recurse=false").await.ok().as_array().unwrap().len(), 4);
    assert_eq!(api.get("/v1/kv/none/?recurse").await.status, StatusCode::NOT_FOUND);
    let rolled = api.get("/v1/kv/app/?keys&separator=/").await.ok();
    assert_eq!(rolled, json!(["app/config", "app/empty", "app/sub/"]));
    let all = api.get("/v1/kv/?keys").await.ok();
    assert_eq!(all.as_array().unwrap().len(), 5);

    let pretty = api.get("/v1/kv/app/config?pretty").await;
    assert!(pretty.text.starts_with("[\n    {\n        \"LockIndex\""), "Go's indented JSON: {}", pretty.text);

    // Deletes answer true, also for a missing key; a recursive delete takes the prefix.
    assert_eq!(api.delete("/v1/kv/app/missing").await.ok(), json!(true));
    assert_eq!(api.delete("/v1/kv/app/sub/?recurse").await.ok(), json!(true));
    assert_eq!(api.get("/v1/kv/app/?keys").await.ok(), json!(["app/config", "app/empty"]));

    // Refusals, worded as Consul words them.
    assert_eq!(api.get("/v1/kv/").await.refusal(), (StatusCode::BAD_REQUEST, "Missing key name"));
    assert_eq!(api.put("/v1/kv/", "x").await.refusal(), (StatusCode::BAD_REQUEST, "Missing key name"));
    assert_eq!(
        api.get("/v1/kv/a%20b").await.refusal(),
        (
            StatusCode::BAD_REQUEST,
            "key contains invalid character ' ' at position 1. Only alphanumeric characters and ,-_./ are allowed"
        )
    );
    assert_eq!(
        api.put("/v1/kv/jobs/config.json", "{}").await.refusal(),
        (StatusCode::BAD_REQUEST, "key contains suspicious file extension '.json' that may be cached by proxies")
    );
    assert_eq!(
        api.put("/v1/kv/app/config?flags=abc", "x").await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "strconv.ParseUint: parsing \"abc\": invalid syntax")
    );
    let post = api.send(api.request(Method::POST, "/v1/kv/app/config")).await;
    assert_eq!(post.refusal(), (StatusCode::METHOD_NOT_ALLOWED, "method POST not allowed"));
    assert_eq!(post.header("allow"), Some("OPTIONS,GET,PUT,DELETE"));
    assert_eq!(
        api.get("/v1/kv/app/config?dc=elsewhere").await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter")
    );
    let unknown = api.get("/v1/nothing/here").await;
    assert_eq!((unknown.status, unknown.text.as_str()), (StatusCode::NOT_FOUND, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_writes_and_deletes() {
    let fixture = start().await;
    let api = &fixture.api;
    // cas=0: only if absent.
    assert!(api.put_kv("cas/key", "?cas=0", "first").await);
    assert!(!api.put_kv("cas/key", "?cas=0", "second").await);
    let entry = api.entry("cas/key").await;
    assert_eq!(base64_decode(entry["Value"].as_str().unwrap()), b"first");
    let index = entry["ModifyIndex"].as_u64().unwrap();

    // A stale index loses and leaves the value; the current one wins and moves the index.
    assert!(!api.put_kv("cas/key", &format!("?cas={}", index + 100), "stale").await);
    assert!(!api.put_kv("cas/key", &format!("?cas={}", index - 1), "stale").await);
    assert_eq!(fixture.consul.kv("cas/key").unwrap().value, b"first");
    assert!(api.put_kv("cas/key", &format!("?cas={index}"), "second").await);
    let kv = fixture.consul.kv("cas/key").unwrap();
    assert_eq!(kv.value, b"second");
    assert!(kv.modify_index > index);
    // A non-zero index on a missing key loses.
    assert!(!api.put_kv("cas/absent", "?cas=5", "x").await);
    assert!(fixture.consul.kv("cas/absent").is_none());

    // Deletes: a stale index keeps the key, the current one deletes it, a missing key is true.
    let stale = api.delete(&format!("/v1/kv/cas/key?cas={index}")).await.ok();
    assert_eq!(stale, json!(false));
    assert!(fixture.consul.kv("cas/key").is_some());
    assert_eq!(api.delete(&format!("/v1/kv/cas/key?cas={}", kv.modify_index)).await.ok(), json!(true));
    assert!(fixture.consul.kv("cas/key").is_none());
    assert_eq!(api.delete("/v1/kv/cas/key?cas=0").await.ok(), json!(true));

    // cas, acquire and release exclude each other; so do recurse and cas on a delete.
    assert_eq!(
        api.put("/v1/kv/cas/key?cas=0&acquire=x", "v").await.refusal(),
        (StatusCode::BAD_REQUEST, "Conflicting flags: acquire=x&cas=0\n")
    );
    assert_eq!(
        api.delete("/v1/kv/cas/?recurse&cas=1").await.refusal(),
        (StatusCode::BAD_REQUEST, "Conflicting flags: cas=1&recurse=\n")
    );
}

/// Start a blocking read of `path` in the background and wait until the fake has parked it.
async fn parked(fixture: &Fixture, path: String) -> tokio::task::JoinHandle<(Duration, Answer)> {
    let api = fixture.api.clone();
    let handle = tokio::spawn(async move {
        let started = Instant::now();
        let answer = api.get(&path).await;
        (started.elapsed(), answer)
    });
    fixture.consul.blocking_queries_waiting(1).await;
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_queries_follow_consul_indexes() {
    let fixture = start().await;
    let api = &fixture.api;
    assert!(api.put_kv("watch/key", "", "one").await);

    // No index: at once.
    let started = Instant::now();
    let answer = api.get("/v1/kv/watch/key").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let index = answer.index.unwrap();
    assert_eq!(
        api.get("/v1/kv/watch/key?index=1&wait=forever").await.refusal(),
        (StatusCode::BAD_REQUEST, "Invalid wait time")
    );
    assert_eq!(api.get("/v1/kv/watch/key?index=x").await.refusal(), (StatusCode::BAD_REQUEST, "Invalid index"));

    // Nothing changes: the query returns at `wait` (plus at most wait/16) with the same index.
    let started = Instant::now();
    let timed_out = api.get(&format!("/v1/kv/watch/key?index={index}&wait=300ms")).await;
    let elapsed = started.elapsed();
    assert_eq!(timed_out.index, Some(index));
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "returned after {elapsed:?}");

    // A single-key read reports the key's modify index, so another key's write does not end the
    // wait (it would return the old value); the key's own write does.
    let waiting = parked(&fixture, format!("/v1/kv/watch/key?index={index}&wait=20s")).await;
    assert!(api.put_kv("watch/other", "", "x").await);
    assert!(api.put_kv("watch/key", "", "two").await);
    let (elapsed, woken) = waiting.await.unwrap();
    assert!(elapsed < Duration::from_secs(15), "waited for the timeout: {elapsed:?}");
    assert_eq!(base64_decode(woken.json()[0]["Value"].as_str().unwrap()), b"two", "woke on another key's write");
    assert!(woken.index.unwrap() > index);

    // A missing key waits for the key to appear, not for any write.
    let missing = api.get("/v1/kv/watch/later").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let waiting = parked(&fixture, format!("/v1/kv/watch/later?index={}&wait=20s", missing.index.unwrap())).await;
    assert!(api.put_kv("watch/unrelated", "", "x").await);
    assert!(api.put_kv("watch/later", "", "here").await);
    let (_, appeared) = waiting.await.unwrap();
    assert_eq!(appeared.status, StatusCode::OK, "woke on another key's write: {}", appeared.text);

    // A list reports and wakes on the highest index under its prefix.
    let list = api.get("/v1/kv/watch/?recurse").await;
    let waiting = parked(&fixture, format!("/v1/kv/watch/?recurse&index={}&wait=20s", list.index.unwrap())).await;
    assert!(api.put_kv("elsewhere/x", "", "x").await);
    assert!(api.put_kv("watch/new", "", "x").await);
    let (_, grown) = waiting.await.unwrap();
    let keys: Vec<Value> = grown.json().as_array().unwrap().iter().map(|e| e["Key"].clone()).collect();
    assert!(keys.contains(&json!("watch/new")), "woke before its prefix changed: {keys:?}");

    // An index above the current one blocks until `wait` and then reports the lower, current
    // index: a client must notice and reset.
    let current = api.get("/v1/kv/watch/key").await.index.unwrap();
    let started = Instant::now();
    let ahead = api.get(&format!("/v1/kv/watch/key?index={}&wait=300ms", current + 1000)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(ahead.index, Some(current));

    // Deletes leave tombstones, so a list's index does not slide back ... until they are reaped.
    assert!(api.put_kv("graves/a", "", "x").await);
    assert!(api.put_kv("graves/b", "", "x").await);
    let a_index = api.entry("graves/a").await["ModifyIndex"].as_u64().unwrap();
    assert_eq!(api.delete("/v1/kv/graves/b").await.ok(), json!(true));
    let after_delete = api.get("/v1/kv/graves/?recurse").await.index.unwrap();
    assert!(after_delete > a_index, "the tombstone keeps the list's index up");
    fixture.consul.reap_tombstones();
    let after_reap = api.get("/v1/kv/graves/?recurse").await.index.unwrap();
    assert_eq!(after_reap, a_index, "the index goes backwards once the tombstone is reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_follow_consuls_acquire_and_release_rules() {
    let fixture = start().await;
    let api = &fixture.api;
    let first = api.session(&json!({ "Name": "first" })).await;
    let second = api.session(&json!({ "Name": "second" })).await;

    assert!(api.put_kv("locks/a", &format!("?acquire={first}"), "one").await);
    let entry = api.entry("locks/a").await;
    assert_eq!((entry["Session"].clone(), entry["LockIndex"].clone()), (json!(first), json!(1)));
    // The holder may acquire again: the value changes, the lock index does not.
    assert!(api.put_kv("locks/a", &format!("?acquire={first}"), "two").await);
    let entry = api.entry("locks/a").await;
    assert_eq!(entry["LockIndex"], 1);
    assert_eq!(base64_decode(entry["Value"].as_str().unwrap()), b"two");
    // Another session may not, and changes nothing.
    assert!(!api.put_kv("locks/a", &format!("?acquire={second}"), "three").await);
    assert_eq!(fixture.consul.kv("locks/a").unwrap().session.as_deref(), Some(first.as_str()));
    // Only the holder releases.
    assert!(!api.put_kv("locks/a", &format!("?release={second}"), "x").await);
    // A release writes its body too (here the same value) and keeps the lock index.
    assert!(api.put_kv("locks/a", &format!("?release={first}"), "two").await);
    let entry = api.entry("locks/a").await;
    assert!(entry.get("Session").is_none(), "released: {entry}");
    assert_eq!(entry["LockIndex"], 1);
    assert_eq!(base64_decode(entry["Value"].as_str().unwrap()), b"two");
    // A fresh holder bumps the lock index. An explicit release set no lock-delay.
    assert!(api.put_kv("locks/a", &format!("?acquire={second}"), "").await);
    let entry = api.entry("locks/a").await;
    assert_eq!((entry["Session"].clone(), entry["LockIndex"].clone()), (json!(second), json!(2)));
    assert_eq!(entry["Value"], Value::Null, "the acquire's empty body is the new value");

    // A plain write ignores the lock: it keeps the holder (and, as Consul's kvsSetTxn does,
    // stores the request's lock index, which is zero over HTTP).
    assert!(api.put_kv("locks/a", "", "plain").await);
    let kv = fixture.consul.kv("locks/a").unwrap();
    assert_eq!((kv.session.as_deref(), kv.value.as_slice(), kv.lock_index), (Some(second.as_str()), &b"plain"[..], 0));

    // Sessions that do not exist, or none at all, are errors of the store: 500.
    let invalid = api.put("/v1/kv/locks/b?acquire=6b9d0c2e-0000-4000-8000-000000000000", "v").await;
    assert_eq!(
        invalid.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "invalid session \"6b9d0c2e-0000-4000-8000-000000000000\"")
    );
    assert_eq!(
        api.put("/v1/kv/locks/b?acquire=", "v").await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "missing session")
    );
    assert!(!api.put_kv("locks/missing", &format!("?release={first}"), "").await);

    // Destroying the holder releases its keys (value kept) and starts their lock-delay (15 s by
    // default): nobody may acquire meanwhile, though plain writes still go through.
    assert_eq!(api.put(&format!("/v1/session/destroy/{second}"), "").await.ok(), json!(true));
    let kv = fixture.consul.kv("locks/a").unwrap();
    assert_eq!((kv.session, kv.value.as_slice()), (None, &b"plain"[..]));
    assert!(fixture.consul.lock_delay("locks/a").is_some());
    assert!(!api.put_kv("locks/a", &format!("?acquire={first}"), "x").await);
    assert!(api.put_kv("locks/a", "", "still writable").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_apply_their_behavior() {
    let fixture = start_with(|config| {
        config.ttl_min = Duration::from_secs(1);
        config.ttl_multiplier = 1;
    })
    .await;
    let api = &fixture.api;

    // release: a TTL running out frees the lock and keeps the value.
    let started = Instant::now();
    let releasing = api.session(&ttl_session("releasing", "1s", "release", json!("0s"))).await;
    assert!(api.put_kv("ttl/release", &format!("?acquire={releasing}"), "kept").await);
    let freed = api.until("/v1/kv/ttl/release", "the TTL expiry", |v| v[0].get("Session").is_none()).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "expired before its TTL: {:?}", started.elapsed());
    assert_eq!(base64_decode(freed[0]["Value"].as_str().unwrap()), b"kept");
    assert_eq!(freed[0]["LockIndex"], 1);
    assert_eq!(api.get(&format!("/v1/session/info/{releasing}")).await.ok(), json!([]));
    // With LockDelay 0s nothing waits: another session takes the lock at once.
    let next = api.session(&ttl_session("next", "", "release", json!(0))).await;
    assert!(api.put_kv("ttl/release", &format!("?acquire={next}"), "mine").await);

    // delete: the keys go with the session (forced expiry, no waiting).
    let deleting = api.session(&ttl_session("deleting", "1h", "delete", json!("0s"))).await;
    assert!(api.put_kv("ttl/delete", &format!("?acquire={deleting}"), "doomed").await);
    assert!(fixture.consul.expire_session(&deleting));
    assert!(!fixture.consul.expire_session(&deleting), "already gone");
    assert_eq!(api.get("/v1/kv/ttl/delete").await.status, StatusCode::NOT_FOUND);
    assert!(fixture.consul.kv("ttl/delete").is_none());

    // Renewing answers the session in an array and pushes the expiry back.
    let renewed = api.session(&ttl_session("renewed", "1h", "release", json!("15s"))).await;
    let before = fixture.consul.sessions().into_iter().find(|s| s.id == renewed).unwrap().expires_at.unwrap();
    let answer = api.put(&format!("/v1/session/renew/{renewed}"), "").await.ok();
    assert_eq!(answer[0]["ID"], renewed.as_str());
    assert_eq!(answer[0]["TTL"], "1h");
    let after = fixture.consul.sessions().into_iter().find(|s| s.id == renewed).unwrap().expires_at.unwrap();
    assert!(after > before, "renew did not reset the timer");
    let unknown = api.put("/v1/session/renew/00000000-0000-0000-0000-000000000000", "").await;
    assert_eq!(
        unknown.refusal(),
        (StatusCode::NOT_FOUND, "Session id '00000000-0000-0000-0000-000000000000' not found")
    );

    // The lowered minimum is enforced like Consul's own.
    let short = api.put("/v1/session/create", json!({ "TTL": "500ms" }).to_string()).await;
    assert_eq!(
        short.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "Invalid Session TTL '500000000', must be between [1s=24h0m0s]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_delay_holds_a_key_after_its_session_is_invalidated() {
    let fixture = start().await;
    let api = &fixture.api;
    // A LockDelay below 1000 is read as seconds: 1 is one second.
    let holder = api.session(&ttl_session("holder", "", "release", json!(1))).await;
    let info = api.get(&format!("/v1/session/info/{holder}")).await.ok();
    assert_eq!(info[0]["LockDelay"], 1_000_000_000i64);
    let waiter = api.session(&json!({ "Name": "waiter" })).await;
    assert!(api.put_kv("jobs/lock", &format!("?acquire={holder}"), "held").await);

    assert!(fixture.consul.expire_session(&holder));
    assert!(fixture.consul.kv("jobs/lock").unwrap().session.is_none(), "released");
    // The key is free, yet nobody may take it while the delay runs — it is checked before the
    // session is (so even an unknown session just gets false).
    assert!(!api.put_kv("jobs/lock", &format!("?acquire={waiter}"), "mine").await);
    assert!(!api.put_kv("jobs/lock", "?acquire=00000000-0000-0000-0000-000000000000", "x").await);
    let until = fixture.consul.lock_delay("jobs/lock").expect("a lock-delay runs");
    assert!(until <= Instant::now() + Duration::from_secs(1));
    // Wait for the deadline the fake reports, then the key is free to take.
    tokio::time::sleep_until(until.into()).await;
    assert!(api.put_kv("jobs/lock", &format!("?acquire={waiter}"), "mine").await);
    assert_eq!(fixture.consul.kv("jobs/lock").unwrap().lock_index, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_create_decodes_and_validates_like_consul() {
    let fixture = start_with(|config| config.services = vec![FakeService::new("web", "10.0.0.1", 80)]).await;
    let api = &fixture.api;

    // No body: the agent's defaults.
    let id = api.session(&Value::Null).await;
    let info = api.get(&format!("/v1/session/info/{id}")).await.ok();
    let session = &info[0];
    assert_eq!(session["Node"], "fake-consul");
    assert_eq!(session["LockDelay"], 15_000_000_000i64);
    assert_eq!((session["Behavior"].clone(), session["TTL"].clone()), (json!("release"), json!("")));
    assert_eq!((session["NodeChecks"].clone(), session["ServiceChecks"].clone()), (json!(["serfHealth"]), Value::Null));
    // `Checks: []` ties the session to no check at all; other checks are kept beside serfHealth.
    let bare = api.session(&json!({ "Checks": [] })).await;
    assert_eq!(api.get(&format!("/v1/session/info/{bare}")).await.ok()[0]["NodeChecks"], json!([]));
    let tied = api.session(&json!({ "checks": ["service:web"], "lockdelay": 15_000_000_000i64 })).await;
    let tied_info = api.get(&format!("/v1/session/info/{tied}")).await.ok();
    assert_eq!(tied_info[0]["Checks"], json!(["service:web"]), "field names match case-insensitively");
    assert_eq!(tied_info[0]["LockDelay"], 15_000_000_000i64);
    let by_service = api.session(&json!({ "NodeChecks": [], "ServiceChecks": [{ "ID": "service:web" }] })).await;

    let refused = |body: Value| {
        let api = api.clone();
        async move { api.put("/v1/session/create", body.to_string()).await }
    };
    assert_eq!(
        refused(json!({ "TTL": "5s" })).await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")
    );
    assert_eq!(
        refused(json!({ "TTL": "abc" })).await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "Session TTL 'abc' invalid: time: invalid duration \"abc\"")
    );
    assert_eq!(
        refused(json!({ "Behavior": "keep" })).await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "Invalid Behavior setting 'keep'")
    );
    assert_eq!(
        refused(json!({ "LockDelay": "soon" })).await.refusal(),
        (StatusCode::BAD_REQUEST, "Request decode failed: time: invalid duration \"soon\"")
    );
    assert_eq!(
        refused(json!({ "Checks": ["nope"] })).await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "Missing check 'nope' registration")
    );
    assert_eq!(refused(json!({ "Name": 5 })).await.status, StatusCode::BAD_REQUEST);

    // Lists, per-node lists, unknown IDs.
    assert_eq!(api.get("/v1/session/list").await.ok().as_array().unwrap().len(), 4);
    assert_eq!(api.get("/v1/session/node/fake-consul").await.ok().as_array().unwrap().len(), 4);
    assert_eq!(api.get("/v1/session/node/elsewhere").await.ok(), json!([]));
    let unknown = "00000000-0000-0000-0000-000000000000";
    assert_eq!(api.get(&format!("/v1/session/info/{unknown}")).await.ok(), json!([]));
    assert_eq!(api.put(&format!("/v1/session/destroy/{unknown}"), "").await.ok(), json!(true), "idempotent");
    let get = api.get(&format!("/v1/session/destroy/{id}")).await;
    assert_eq!(get.refusal(), (StatusCode::METHOD_NOT_ALLOWED, "method GET not allowed"));

    // A check turning critical invalidates the sessions tied to it, and no new session may use
    // a critical check.
    assert!(fixture.consul.set_service_health("web", false));
    let live: Vec<String> = fixture.consul.sessions().into_iter().map(|s| s.id).collect();
    assert!(!live.contains(&tied) && !live.contains(&by_service), "sessions on service:web survived: {live:?}");
    assert!(live.contains(&id) && live.contains(&bare));
    assert_eq!(
        refused(json!({ "Checks": ["service:web"] })).await.refusal(),
        (StatusCode::INTERNAL_SERVER_ERROR, "Check 'service:web' is in critical state")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_above_512_kib_are_refused() {
    let fixture = start().await;
    let api = &fixture.api;
    let limit = 512 * 1024;
    assert!(api.put_kv("big/ok", "", &"x".repeat(limit)).await);
    assert_eq!(fixture.consul.kv("big/ok").unwrap().value.len(), limit);
    let refused = api.put("/v1/kv/big/too", "x".repeat(limit + 1)).await;
    assert_eq!(
        refused.refusal(),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body(524289 bytes) too large, max size: 524288 bytes. See \
             https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
        )
    );
    assert!(fixture.consul.kv("big/too").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lookups_filter_passing_instances() {
    let fixture = start_with(|config| {
        config.services = vec![
            FakeService::new("web", "10.0.0.1", 80).with_tags(&["blue"]),
            FakeService::new("web", "10.0.0.2", 80),
            FakeService { passing: false, ..FakeService::new("db", "10.0.0.3", 5432) },
        ];
    })
    .await;
    let api = &fixture.api;
    let service_ids = |value: &Value| -> Vec<String> {
        value.as_array().unwrap().iter().map(|e| e["Service"]["ID"].as_str().unwrap().to_owned()).collect()
    };
    let web = api.get("/v1/health/service/web?passing").await;
    assert_eq!(service_ids(&web.ok()), ["web", "web-2"]);
    assert_eq!(service_ids(&api.get("/v1/health/service/web?tag=blue").await.ok()), ["web"]);
    // A critical instance is listed, but not with ?passing.
    let db = api.get("/v1/health/service/db").await.ok();
    assert_eq!(db[0]["Checks"][1]["Status"], "critical");
    assert_eq!(api.get("/v1/health/service/db?passing").await.ok(), json!([]));
    assert_eq!(api.get("/v1/health/service/db?passing=false").await.ok().as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("/v1/health/service/db?passing=maybe").await.refusal(),
        (StatusCode::BAD_REQUEST, "Invalid value for ?passing")
    );
    // An unknown service is an empty list, not a 404.
    let unknown = api.get("/v1/health/service/nothing").await;
    assert_eq!((unknown.status, unknown.json()), (StatusCode::OK, json!([])));

    // A blocking health query wakes when a check changes.
    let waiting =
        parked(&fixture, format!("/v1/health/service/web?passing&index={}&wait=20s", web.index.unwrap())).await;
    assert!(fixture.consul.set_service_health("web", false));
    let (elapsed, changed) = waiting.await.unwrap();
    assert!(elapsed < Duration::from_secs(15));
    assert_eq!(changed.ok(), json!([]));
    assert!(!fixture.consul.set_service_health("nothing", false), "unknown services are reported");

    // The catalog carries no health: both instances, with their addresses.
    let nodes = api.get("/v1/catalog/service/web").await.ok();
    let addresses: Vec<&str> =
        nodes.as_array().unwrap().iter().map(|n| n["ServiceAddress"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["10.0.0.1", "10.0.0.2"]);
    // Consul's own service has no address of its own: use the node's.
    let consul = api.get("/v1/catalog/service/consul").await.ok();
    assert_eq!((consul[0]["ServiceAddress"].clone(), consul[0]["Address"].clone()), (json!(""), json!("127.0.0.1")));
    let services = api.get("/v1/catalog/services").await.ok();
    assert_eq!(services, json!({ "consul": [], "db": [], "web": ["blue"] }));

    assert_eq!(api.get("/v1/status/leader").await.ok(), json!("127.0.0.1:8300"));
    assert_eq!(api.get("/v1/status/peers").await.ok(), json!(["127.0.0.1:8300"]));
    let agent = api.get("/v1/agent/self").await.ok();
    assert_eq!(
        (agent["Config"]["Datacenter"].clone(), agent["Config"]["NodeName"].clone()),
        (json!("dc1"), json!("fake-consul"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_tokens_are_enforced_when_configured() {
    let fixture = start_with(|config| {
        config.acl_token = Some("s3cret".to_owned());
        config.services = vec![FakeService::new("web", "10.0.0.1", 80)];
    })
    .await;
    let anonymous = &fixture.api;
    let root = anonymous.with_token("s3cret");
    assert!(root.put_kv("secret/key", "", "v").await);

    // The anonymous token is refused single objects, with Consul's words ...
    let denied = anonymous.get("/v1/kv/secret/key").await;
    assert_eq!(
        denied.refusal(),
        (
            StatusCode::FORBIDDEN,
            "Permission denied: anonymous token lacks permission 'key:read' on \"secret/key\". The anonymous token \
             is used implicitly when a request does not specify a token."
        )
    );
    assert_eq!(denied.header("X-Consul-Default-ACL-Policy"), Some("deny"));
    assert!(
        anonymous.put("/v1/kv/secret/key", "x").await.text.contains("lacks permission 'key:write' on \"secret/key\"")
    );
    let create = anonymous.put("/v1/session/create", "").await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    assert!(create.text.contains("lacks permission 'session:write' on \"fake-consul\""), "{}", create.text);
    assert_eq!(anonymous.get("/v1/agent/self").await.status, StatusCode::FORBIDDEN);
    // ... while lists are silently filtered, and say so in a header.
    let listed = anonymous.get("/v1/kv/secret/?recurse").await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND);
    assert_eq!(listed.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    let keys = anonymous.get("/v1/kv/?keys").await;
    assert_eq!((keys.status, keys.json()), (StatusCode::OK, json!([])));
    assert_eq!(keys.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    let health = anonymous.get("/v1/health/service/web").await;
    assert_eq!((health.json(), health.header("X-Consul-Results-Filtered-By-ACLs")), (json!([]), Some("true")));

    // An unknown token is refused everywhere.
    let wrong = anonymous.with_token("guess");
    assert_eq!(wrong.get("/v1/kv/secret/key").await.refusal(), (StatusCode::FORBIDDEN, "ACL not found"));
    assert_eq!(wrong.get("/v1/session/list").await.refusal(), (StatusCode::FORBIDDEN, "ACL not found"));

    // The token works from X-Consul-Token, Authorization: Bearer and (deprecated) ?token=.
    assert_eq!(root.entry("secret/key").await["Key"], "secret/key");
    let bearer = anonymous.send(anonymous.request(Method::GET, "/v1/kv/secret/key").bearer_auth("s3cret")).await;
    assert_eq!(bearer.status, StatusCode::OK);
    assert_eq!(anonymous.get("/v1/kv/secret/key?token=s3cret").await.status, StatusCode::OK);
    assert_eq!(root.get("/v1/health/service/web").await.ok().as_array().unwrap().len(), 1);
    let session = root.session(&json!({ "Name": "root" })).await;
    // Renewing an unknown session is a 404 before any permission is asked.
    assert_eq!(anonymous.put("/v1/session/renew/nope", "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(anonymous.put(&format!("/v1/session/renew/{session}"), "").await.status, StatusCode::FORBIDDEN);

    // The leader's address is open to anyone.
    assert_eq!(anonymous.get("/v1/status/leader").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_until_terminated() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-consul"))
        .args(["--listen", "127.0.0.1:0", "--service", "web=127.0.0.1:8080", "--min-ttl", "1s"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start fake-consul");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("fake-consul printed nothing")
        .expect("read its stdout")
        .expect("a first line");
    let url = first.strip_prefix("fake consul listening on ").unwrap_or_else(|| panic!("unexpected banner {first:?}"));
    let api = Api::new(url);
    assert_eq!(api.get("/v1/status/leader").await.ok(), json!("127.0.0.1:8300"));
    let web = api.get("/v1/health/service/web?passing").await.ok();
    assert_eq!(web[0]["Service"]["Port"], 8080);
    // --min-ttl lowered the minimum.
    api.session(&json!({ "TTL": "1s" })).await;

    let pid = child.id().expect("a running child") as i32;
    // SAFETY: kill(2) on the PID of the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("it stops").expect("wait");
    assert!(status.success(), "stopped with {status}");
}
