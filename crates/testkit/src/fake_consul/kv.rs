//! `/v1/kv/<key>`: Consul's KV endpoint (`agent/kvs_endpoint.go` and the server's
//! `agent/consul/kvs_endpoint.go`): reads (one key, `?recurse`, `?keys` with a separator,
//! `?raw`), writes (`?flags`, `?cas`, `?acquire`, `?release`, the value size limit) and
//! deletes (`?recurse`, `?cas`), with their checks in Consul's order — HTTP-level refusals
//! first, then the token, then lock-delay, then the store.
//!
//! Key names are checked as `kvs_endpoint.go` at `007432f` (the commit `reference/api-facts.md`
//! cites) does: the strictest variant Consul shipped, so that a client that passes here passes
//! every patch level. Turn it off with `FakeConsulConfig::validate_keys`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use serde::Serialize;

use super::http::{
    Ctx, HttpError, Lookup, Meta, QueryOptions, blocking, json_response, not_found, raw_response, read_body,
};
use super::state::{Entry, KvOp};

/// `structs.DirEntry` on the wire, fields in Go's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DirEntryJson<'a> {
    lock_index: u64,
    key: &'a str,
    flags: u64,
    /// Base64; a nil (empty) value is `null`.
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    create_index: u64,
    modify_index: u64,
}

fn dir_entry(entry: &Entry) -> DirEntryJson<'_> {
    DirEntryJson {
        lock_index: entry.lock_index,
        key: &entry.key,
        flags: entry.flags,
        value: (!entry.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&entry.value)),
        session: entry.session.as_deref(),
        create_index: entry.create_index,
        modify_index: entry.modify_index,
    }
}

pub(crate) async fn serve(ctx: &Ctx<'_>, body: Body) -> Result<Response, HttpError> {
    let options = ctx.options()?;
    let path = ctx.path;
    if path.contains("../") || path.contains("..\\") {
        return Err(HttpError::bad_request("URL path contains invalid traversal sequence"));
    }
    if ["%2e%2e%2f", "%2e%2e/", "..%2f", "%2e%2e%5c", "%252e%252e%252f"].iter().any(|s| path.contains(s)) {
        return Err(HttpError::bad_request("URL path contains encoded traversal sequence"));
    }
    let key = path.strip_prefix("/v1/kv/").unwrap_or_default();
    if !key.is_empty() && ctx.inner.config.validate_keys {
        validate_key(key).map_err(HttpError::bad_request)?;
    }
    match ctx.method.as_str() {
        "GET" if ctx.query.has("keys") => keys(ctx, key, &options).await,
        "GET" => get(ctx, key, &options).await,
        "PUT" => put(ctx, key, body).await,
        _ => delete(ctx, key),
    }
}

/// `validateKVKey` at `007432f`: `[A-Za-z0-9,_./-]` only, no leading `/`, no traversal, no
/// file-like suffix (CDN cache deception).
fn validate_key(key: &str) -> Result<(), String> {
    if key.starts_with('/') {
        return Err("key must not begin with a '/'".to_owned());
    }
    for (position, c) in key.chars().enumerate() {
        if !(c.is_ascii_alphanumeric() || matches!(c, ',' | '-' | '_' | '.' | '/')) {
            return Err(format!(
                "key contains invalid character '{c}' at position {position}. Only alphanumeric characters and ,-_./ are allowed"
            ));
        }
    }
    if key.contains("../") || key.contains("..\\") {
        return Err("key contains path traversal sequence".to_owned());
    }
    const SUSPICIOUS: &[&str] = &[
        ".js", ".css", ".html", ".htm", ".xml", ".json", ".txt", ".log", ".php", ".asp", ".jsp", ".cgi", ".pl", ".py",
        ".rb", ".sh", ".exe", ".dll", ".bat", ".cmd", ".com", ".scr", ".vbs", ".pdf", ".doc", ".docx", ".xls", ".xlsx",
        ".ppt", ".pptx", ".zip", ".rar", ".tar", ".gz", ".7z", ".bz2", ".jpg", ".jpeg", ".png", ".gif", ".svg", ".ico",
        ".bmp", ".mp3", ".mp4", ".avi", ".mov", ".wmv", ".flv", ".swf", ".woff", ".woff2", ".ttf", ".eot", ".otf",
    ];
    let lower = key.to_lowercase();
    if let Some(extension) = SUSPICIOUS.iter().find(|e| lower.ends_with(*e)) {
        return Err(format!("key contains suspicious file extension '{extension}' that may be cached by proxies"));
    }
    Ok(())
}

async fn get(ctx: &Ctx<'_>, key: &str, options: &QueryOptions) -> Result<Response, HttpError> {
    let recurse = ctx.query.has("recurse");
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let authz = ctx.authz()?;
    if recurse {
        // `KVS.List`: ACLs filter the entries instead of refusing.
        let can_read = authz.can_read();
        let (index, (entries, filtered)) = blocking(ctx.inner, options, |state| {
            let (index, entries) = state.kv_list(key);
            let total = entries.len();
            let visible: Vec<Entry> = if can_read { entries.into_iter().cloned().collect() } else { Vec::new() };
            let filtered = visible.len() != total;
            (index, Lookup::Found, (visible, filtered))
        })
        .await;
        let meta = Meta { index, filtered };
        if entries.is_empty() {
            return Ok(not_found(&meta));
        }
        let body: Vec<DirEntryJson<'_>> = entries.iter().map(dir_entry).collect();
        return Ok(json_response(&body, ctx.query, Some(&meta)));
    }
    // `KVS.Get` checks `key:read` inside its query function: the first run already fails.
    authz.require("key", "read", key)?;
    // A found key reports its own modify index, so the query wakes only when that key changes;
    // a missing key reports the table's index and waits for the key to appear.
    let (index, entry) = blocking(ctx.inner, options, |state| match state.kv_get(key) {
        (index, None) => (index, Lookup::NotFound, None),
        (_, Some(entry)) => (entry.modify_index, Lookup::Found, Some(entry.clone())),
    })
    .await;
    let meta = Meta::new(index);
    let Some(entry) = entry else { return Ok(not_found(&meta)) };
    if ctx.query.has("raw") {
        return Ok(raw_response(entry.value, &meta));
    }
    Ok(json_response(&[dir_entry(&entry)], ctx.query, Some(&meta)))
}

/// `KVS.ListKeys`: keys under the prefix, rolled up to the next separator when one is given.
async fn keys(ctx: &Ctx<'_>, prefix: &str, options: &QueryOptions) -> Result<Response, HttpError> {
    // A historic misspelling is still read; the right spelling wins.
    let separator = ctx.query.get("separator").or_else(|| ctx.query.get("seperator")).unwrap_or_default().to_owned();
    let authz = ctx.authz()?;
    let can_read = authz.can_read();
    let (index, (keys, filtered)) = blocking(ctx.inner, options, |state| {
        let (index, entries) = state.kv_list(prefix);
        let total = entries.len();
        let visible: Vec<&Entry> = if can_read { entries } else { Vec::new() };
        let filtered = visible.len() != total;
        let mut keys: Vec<String> = Vec::new();
        for entry in visible {
            let after = &entry.key[prefix.len()..];
            match after.find(separator.as_str()).filter(|_| !separator.is_empty()) {
                Some(at) => {
                    let rolled = &entry.key[..prefix.len() + at + separator.len()];
                    if !keys.iter().any(|k| k == rolled) {
                        keys.push(rolled.to_owned());
                    }
                }
                None => keys.push(entry.key.clone()),
            }
        }
        (index, Lookup::Found, (keys, filtered))
    })
    .await;
    let meta = Meta { index, filtered };
    // The root prefix answers `[]`; any other empty prefix is not found.
    if keys.is_empty() && !prefix.is_empty() {
        return Ok(not_found(&meta));
    }
    Ok(json_response(&keys, ctx.query, Some(&meta)))
}

/// `conflictingFlags`: at most one of `flags` may be present.
fn conflicting(ctx: &Ctx<'_>, flags: &[&str]) -> Result<(), HttpError> {
    if flags.iter().filter(|f| ctx.query.has(f)).count() > 1 {
        return Err(HttpError::bad_request(format!("Conflicting flags: {}\n", ctx.query.encode())));
    }
    Ok(())
}

/// `strconv.ParseUint(text, 10, 64)`, failing as Go words it (Consul answers 500 with it).
fn parse_uint(text: &str) -> Result<u64, HttpError> {
    text.parse::<u64>().map_err(|_| {
        let why = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        HttpError::internal(format!("strconv.ParseUint: parsing {}: {why}", super::duration::go_quote(text)))
    })
}

async fn put(ctx: &Ctx<'_>, key: &str, body: Body) -> Result<Response, HttpError> {
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    conflicting(ctx, &["cas", "acquire", "release"])?;
    let query = ctx.query;
    let flags = if query.has("flags") { parse_uint(query.get("flags").unwrap_or_default())? } else { 0 };
    let mut op = KvOp::Set;
    if query.has("cas") {
        op = KvOp::Cas(parse_uint(query.get("cas").unwrap_or_default())?);
    }
    if query.has("acquire") {
        op = KvOp::Lock(query.get("acquire").unwrap_or_default().to_owned());
    }
    if query.has("release") {
        op = KvOp::Unlock(query.get("release").unwrap_or_default().to_owned());
    }
    let limit = ctx.inner.config.kv_max_value_size;
    let too_large = |length: usize| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({length} bytes) too large, max size: {limit} bytes. See \
                 https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
            ),
        )
    };
    // Consul refuses on the declared length, before reading anything.
    let declared = ctx.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(length) = declared.filter(|length| *length > limit) {
        return Err(too_large(length));
    }
    let value = read_body(body, limit).await.map_err(too_large)?;

    let authz = ctx.authz()?;
    authz.require("key", "write", key)?;
    let now = tokio::time::Instant::now();
    let applied = ctx.inner.store.try_write(|txn| {
        // The leader enforces lock-delay before raft: a refused acquire is just `false`.
        if matches!(op, KvOp::Lock(_)) && txn.state.lock_delay(key, now).is_some() {
            return Err(());
        }
        Ok(txn.kv_put(&op, key, value, flags))
    });
    let done = match applied {
        Err(()) => false,
        Ok(Err(message)) => return Err(HttpError::internal(message)),
        Ok(Ok(done)) => done,
    };
    // A plain set always answers true.
    let answer = matches!(op, KvOp::Set) || done;
    Ok(json_response(&answer, ctx.query, None))
}

fn delete(ctx: &Ctx<'_>, key: &str) -> Result<Response, HttpError> {
    conflicting(ctx, &["recurse", "cas"])?;
    let recurse = ctx.query.has("recurse");
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let cas = if ctx.query.has("cas") { Some(parse_uint(ctx.query.get("cas").unwrap_or_default())?) } else { None };
    let authz = ctx.authz()?;
    authz.require("key", "write", key)?;
    let answer = ctx.inner.store.write(|txn| match cas {
        Some(expected) => txn.kv_delete_cas(key, expected),
        None if recurse => {
            txn.kv_delete_tree(key);
            true
        }
        None => {
            txn.kv_delete(key);
            true
        }
    });
    Ok(json_response(&answer, ctx.query, None))
}
