//! The client's decoding, against Consul's recorded examples, and the blocking-index rules.

use super::*;

const KV_GET: &str = include_str!("../../../../reference/consul-examples/GET_v1_kv_KEY.response.json");
const KEYS: &str = include_str!("../../../../reference/consul-examples/GET_v1_kv_PREFIX_keys.response.json");
const SESSION_INFO: &str = include_str!("../../../../reference/consul-examples/GET_v1_session_info_UUID.response.json");
const SESSION_RENEW: &str =
    include_str!("../../../../reference/consul-examples/PUT_v1_session_renew_UUID.response.json");
const SESSION_CREATE: &str = include_str!("../../../../reference/consul-examples/PUT_v1_session_create.response.json");
const HEALTH: &str = include_str!("../../../../reference/consul-examples/GET_v1_health_service_NAME.response.json");
const PUT: &str = include_str!("../../../../reference/consul-examples/PUT_v1_kv_KEY.response.json");

#[test]
fn kv_entries_decode_their_base64_values() {
    let entries = decode_entries(KV_GET.as_bytes()).unwrap();
    let entry = &entries[0];
    assert!(!entry.key.is_empty());
    assert!(entry.modify_index > 0);
    let raw: serde_json::Value = serde_json::from_str(KV_GET).unwrap();
    let encoded = raw[0]["Value"].as_str().unwrap();
    assert_eq!(entry.value, Bytes::from(STANDARD.decode(encoded).unwrap()));
}

#[test]
fn a_null_value_reads_as_empty() {
    let entries =
        decode_entries(br#"[{"Key":"a","Value":null,"Flags":0,"CreateIndex":1,"ModifyIndex":1,"LockIndex":0}]"#)
            .unwrap();
    assert!(entries[0].value.is_empty());
    assert_eq!(entries[0].session, None);
}

#[test]
fn other_recorded_answers_decode() {
    let keys: Vec<String> = decode(KEYS.as_bytes(), "keys").unwrap();
    assert!(!keys.is_empty());
    let info: Vec<SessionInfo> = decode(SESSION_INFO.as_bytes(), "info").unwrap();
    assert_eq!(info[0].behavior, "release");
    assert_eq!(info[0].lock_delay, 15_000_000_000, "LockDelay is integer nanoseconds");
    assert_eq!(info[0].ttl, "30s", "TTL stays a string");
    let renewed: Vec<SessionInfo> = decode(SESSION_RENEW.as_bytes(), "renew").unwrap();
    assert!(!renewed[0].id.is_empty());
    let created: serde_json::Value = serde_json::from_str(SESSION_CREATE).unwrap();
    assert!(created["ID"].is_string());
    let health: Vec<HealthEntry> = decode(HEALTH.as_bytes(), "health").unwrap();
    assert!(health[0].service.port > 0);
    assert!(decode::<bool>(PUT.as_bytes(), "put").unwrap());
}

#[test]
fn blocking_indexes_follow_consuls_rules() {
    let mut blocking = Blocking::new(Duration::from_secs(60));
    blocking.advance(0);
    assert_eq!(blocking.index, 1, "never block on 0 after the first call");
    blocking.advance(42);
    assert_eq!(blocking.index, 42);
    blocking.advance(7);
    assert_eq!(blocking.index, 0, "an index that goes backwards resets");
}

#[test]
fn addresses_and_errors() {
    assert_eq!(parse_address("127.0.0.1:8500").unwrap().as_str(), "http://127.0.0.1:8500/");
    assert!(parse_address("http://[bad").is_err());
    let answer = |status: u16, body: &str| Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    };
    assert!(
        matches!(error_of(answer(403, "Permission denied")), ConsulError::PermissionDenied(m) if m == "Permission denied")
    );
    assert!(matches!(error_of(answer(413, "Value exceeds 524288 byte limit")), ConsulError::TooLarge(_)));
    assert!(error_of(answer(500, "No cluster leader")).is_transient());
}
