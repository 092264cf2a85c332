//! What Vault's answers mean, as pure functions over what vaultrs hands back: a KV v2 secret's
//! fields, whether a secret's current version is live (from its metadata), the health check,
//! and errors sorted into [`Failure`] without any response body in them.
//!
//! No IO here. Nothing returned carries a secret value except [`secret_data`], which wraps each
//! one in a `SecretValue` at once; error texts never quote a response body, because a body may
//! hold values (a parse error of a secret read would quote it).

use jobforge_core::secret::{SecretData, SecretValue};
use serde::Deserialize;
use serde_json::Value;
use vaultrs::api::kv2::responses::ReadSecretMetadataResponse;
use vaultrs::error::ClientError;

/// A failed request, sorted by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Vault answered with an error status; `message` is Vault's own `errors` list (never a
    /// body), or empty.
    Status { code: u16, message: String },
    /// Vault could not be reached, or did not answer in time.
    Transport(String),
    /// The AppRole login failed: with Vault's status when it answered.
    Login { code: Option<u16>, message: String },
    /// Anything else (an answer of an unexpected shape, a client-side problem).
    Other(String),
}

impl Failure {
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            Failure::Status { code, .. } => Some(*code),
            Failure::Login { code, .. } => *code,
            Failure::Transport(_) | Failure::Other(_) => None,
        }
    }
}

/// Sort a vaultrs error. A missing secret is `Status { code: 404 }` both as `{"errors":[]}`
/// (vaultrs's `APIError`) and as the envelope of a deleted version, which has no `errors` and
/// so reaches us as rustify's raw `ServerResponseError`.
pub(crate) fn classify(error: &ClientError) -> Failure {
    use rustify::errors::ClientError as Rest;
    match error {
        ClientError::APIError { code, errors } => Failure::Status { code: *code, message: errors.join("; ") },
        ClientError::RestClientError { source } => match source {
            Rest::ServerResponseError { code, .. } => Failure::Status { code: *code, message: String::new() },
            Rest::RequestError { source, .. } => Failure::Transport(format!("{source:#}")),
            Rest::ReqwestBuildError { source } => Failure::Other(error_chain(source)),
            // Parse errors may quote the body they failed on: their top line only.
            other => Failure::Other(other.to_string()),
        },
        ClientError::JsonParseError { .. } | ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            Failure::Other(error.to_string())
        }
        other => Failure::Other(error_chain(other)),
    }
}

/// An error and its causes, `: `-separated.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Describe a failure for a message: `HTTP 403: permission denied`, `HTTP 404`, or the cause.
pub(crate) fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Status { code, message } if message.is_empty() => format!("HTTP {code}"),
        Failure::Status { code, message } => format!("HTTP {code}: {message}"),
        Failure::Transport(message) | Failure::Other(message) => message.clone(),
        Failure::Login { code: Some(code), message } if message.is_empty() => format!("AppRole login: HTTP {code}"),
        Failure::Login { code: Some(code), message } => format!("AppRole login: HTTP {code}: {message}"),
        Failure::Login { code: None, message } => format!("AppRole login: {message}"),
    }
}

/// A KV v2 secret's fields (`data.data`) as `SecretData`: strings as they are, any other JSON
/// value as its JSON text (`5`, `true`, `{"a":1}`). `Err` names what was wrong, never a value.
pub(crate) fn secret_data(data: Value) -> Result<SecretData, String> {
    match data {
        Value::Object(fields) => Ok(SecretData(
            fields
                .into_iter()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (name, SecretValue::new(text))
                })
                .collect(),
        )),
        Value::Null => Err("the secret has no data".into()),
        _ => Err("the secret's data is not a JSON object".into()),
    }
}

/// Whether the secret's current version exists and is neither deleted nor destroyed. A
/// `deletion_time` in the future (`delete_version_after`) is not a deletion yet.
pub(crate) fn current_version_is_live(
    metadata: &ReadSecretMetadataResponse,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let Some(version) = metadata.versions.get(&metadata.current_version.to_string()) else { return false };
    if version.destroyed {
        return false;
    }
    if version.deletion_time.is_empty() {
        return true;
    }
    // Vault writes RFC 3339; anything else is taken as deleted (a read would fail anyway).
    chrono::DateTime::parse_from_rfc3339(&version.deletion_time).is_ok_and(|at| at > now)
}

/// The parts of `/v1/sys/health`'s body we use. All optional: the fields differ between Vault
/// and OpenBao versions (OpenBao has no `performance_standby`, which vaultrs requires; that is
/// why the health check does not go through vaultrs).
#[derive(Debug, Default, Deserialize)]
struct Health {
    initialized: Option<bool>,
    sealed: Option<bool>,
}

/// The health check's verdict from its status and body: `Err` says why Vault cannot serve.
/// 200 is an active node, 429 and 473 standbys (they forward requests, so they serve).
pub(crate) fn health(status: u16, body: &str) -> Result<(), String> {
    let health: Health = serde_json::from_str(body).unwrap_or_default();
    if health.initialized == Some(false) || status == 501 {
        return Err("Vault is not initialized".into());
    }
    if health.sealed == Some(true) || status == 503 {
        return Err("Vault is sealed".into());
    }
    match status {
        200 | 429 | 473 => Ok(()),
        472 => Err("Vault is a disaster-recovery secondary (HTTP 472)".into()),
        other => Err(format!("Vault's health check answered HTTP {other}")),
    }
}

#[cfg(test)]
mod tests {
    use vaultrs::api::EndpointResult;
    use vaultrs::api::kv2::responses::ReadSecretResponse;

    use super::*;

    const ENVELOPE: &str =
        include_str!("../../../reference/vault-examples/GET_v1_MOUNT_data_PATH.envelope.SYNTHESIZED.json");
    const DOC_READ: &str = include_str!("../../../reference/vault-examples/GET_v1_MOUNT_data_PATH.response.json");
    const METADATA: &str = include_str!("../../../reference/vault-examples/GET_v1_MOUNT_metadata_PATH.response.json");
    const HEALTH: &str = include_str!("../../../reference/vault-examples/GET_v1_sys_health.response.json");
    const NOT_FOUND: &str = include_str!("../../../reference/vault-examples/error-404-not-found.SYNTHESIZED.json");

    /// How vaultrs turns an error answer into a `ClientError` (its `parse_err`): a body with an
    /// `errors` list becomes `APIError`, any other body stays rustify's `ServerResponseError`.
    fn error_answer(code: u16, body: &str) -> ClientError {
        match serde_json::from_str::<vaultrs::api::EndpointError>(body) {
            Ok(parsed) => ClientError::APIError { code, errors: parsed.errors },
            Err(_) => ClientError::RestClientError {
                source: rustify::errors::ClientError::ServerResponseError { code, content: Some(body.to_owned()) },
            },
        }
    }

    #[test]
    fn a_read_envelope_gives_its_fields() {
        let envelope: EndpointResult<ReadSecretResponse> = serde_json::from_str(ENVELOPE).unwrap();
        let data = secret_data(envelope.data.unwrap().data).unwrap();
        assert_eq!(data.get("foo").unwrap().expose(), "bar");
        // The docs' sample has only `data`; the secret is in the same place.
        let doc: serde_json::Value = serde_json::from_str(DOC_READ).unwrap();
        let data = secret_data(doc["data"]["data"].clone()).unwrap();
        assert_eq!(data.0.keys().collect::<Vec<_>>(), ["foo"]);
    }

    #[test]
    fn values_that_are_not_strings_become_their_json_text() {
        let data = secret_data(serde_json::json!({"port": 5432, "tls": true, "nested": {"a": [1, "x"]}, "none": null}))
            .unwrap();
        let text = |k: &str| data.get(k).unwrap().expose().to_owned();
        assert_eq!((text("port"), text("tls"), text("none")), ("5432".into(), "true".into(), "null".into()));
        assert_eq!(text("nested"), r#"{"a":[1,"x"]}"#);
        assert!(secret_data(Value::Null).is_err());
        let error = secret_data(Value::String("hunter2".into())).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn both_404_bodies_are_not_found_and_no_body_is_quoted() {
        assert_eq!(classify(&error_answer(404, NOT_FOUND)), Failure::Status { code: 404, message: String::new() });
        // A deleted version: 404 with the whole envelope, `data.data` null, and no `errors`.
        let mut deleted: serde_json::Value = serde_json::from_str(ENVELOPE).unwrap();
        deleted["data"]["data"] = Value::Null;
        deleted["data"]["metadata"]["deletion_time"] = "2018-03-22T02:30:00Z".into();
        let failure = classify(&error_answer(404, &deleted.to_string()));
        assert_eq!(failure, Failure::Status { code: 404, message: String::new() });
        assert_eq!(describe(&failure), "HTTP 404");

        let denied = classify(&error_answer(403, r#"{"errors":["permission denied"]}"#));
        assert_eq!(describe(&denied), "HTTP 403: permission denied");
        assert_eq!(denied.code(), Some(403));
        let parse = ClientError::RestClientError {
            source: rustify::errors::ClientError::ResponseParseError {
                source: quoting_error(),
                content: Some(r#"{"data":{"data":{"password":"hunter2"}}}"#.into()),
            },
        };
        assert!(!describe(&classify(&parse)).contains("hunter2"));
    }

    /// rustify's parse errors carry an `anyhow::Error`: here a serde error that quotes the
    /// value it choked on, the worst case.
    fn quoting_error() -> anyhow::Error {
        serde_json::from_str::<u32>("\"hunter2\"").unwrap_err().into()
    }

    #[test]
    fn metadata_tells_whether_the_current_version_is_live() {
        let doc: serde_json::Value = serde_json::from_str(METADATA).unwrap();
        let now = chrono::Utc::now();
        let metadata = |edit: &dyn Fn(&mut Value)| {
            let mut data = doc["data"].clone();
            edit(&mut data);
            serde_json::from_value::<ReadSecretMetadataResponse>(data).unwrap()
        };
        assert!(current_version_is_live(&metadata(&|_| {}), now));
        let deleted = metadata(&|d| d["versions"]["3"]["deletion_time"] = "2018-03-22T02:40:00Z".into());
        assert!(!current_version_is_live(&deleted, now));
        let later = metadata(&|d| d["versions"]["3"]["deletion_time"] = "2999-01-01T00:00:00Z".into());
        assert!(current_version_is_live(&later, now), "a deletion scheduled for later is not one yet");
        let destroyed = metadata(&|d| d["versions"]["3"]["destroyed"] = true.into());
        assert!(!current_version_is_live(&destroyed, now));
        let older_deleted = metadata(&|d| d["versions"]["2"]["deletion_time"] = "2018-03-22T02:40:00Z".into());
        assert!(current_version_is_live(&older_deleted, now), "only the current version counts");
        let no_version = metadata(&|d| d["current_version"] = 0.into());
        assert!(!current_version_is_live(&no_version, now));
    }

    #[test]
    fn health_answers() {
        assert_eq!(health(200, HEALTH), Ok(()));
        // OpenBao's body: no performance_standby.
        let openbao = r#"{"initialized":true,"sealed":false,"standby":false,"replication_performance_mode":"disabled","replication_dr_mode":"disabled","server_time_utc":1795981075,"version":"2.7.2"}"#;
        assert_eq!(health(200, openbao), Ok(()));
        assert_eq!(health(429, HEALTH), Ok(()), "a standby serves");
        let sealed = r#"{"initialized":true,"sealed":true,"standby":true,"version":"2.7.2"}"#;
        assert_eq!(health(503, sealed), Err("Vault is sealed".into()));
        assert_eq!(health(501, r#"{"initialized":false,"sealed":true}"#), Err("Vault is not initialized".into()));
        assert_eq!(health(502, "<html>bad gateway</html>"), Err("Vault's health check answered HTTP 502".into()));
    }
}
