//! Dynamic configuration from Consul KV (`<prefix>/config/`): the seed's
//! `default_resource_limits`, `build_timeout`, `test_timeout` and `registry_config`, watched
//! with blocking queries so a change applies to the next job without a restart.
//!
//! Parsing is a pure function of the entries and the last good values: a malformed value is
//! reported and the last good one kept, never a crash and never a silently wrong default.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};

use jobforge_core::Duration;
use jobforge_core::config::ResourceLimits;
use jobforge_core::image::{RegistryHost, Repository};
use jobforge_core::secret::SecretPath;

use crate::client::{Blocking, ConsulClient, KvEntry};

/// Settings that Consul KV may set; `None` where the KV says nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KvConfig {
    pub build_timeout: Option<Duration>,
    pub test_timeout: Option<Duration>,
    pub default_resource_limits: Option<ResourceLimits>,
    pub registry_config: Option<RegistryConfig>,
}

/// `registry_config`: where temp images go and with which credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry for temp images (the seed's "default registry").
    #[serde(default)]
    pub default_registry: Option<RegistryHost>,
    /// Repository prefix of temp images (`temp`).
    #[serde(default)]
    pub temp_prefix: Option<Repository>,
    /// Secret path of the credentials for `default_registry`.
    #[serde(default)]
    pub credentials_path: Option<SecretPath>,
}

/// A value under the config prefix that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    pub key: String,
    pub message: String,
}

/// The configuration the entries under `<prefix>/config/` give, taking `last` for any
/// malformed value. Unknown keys are reported too (a typo should not pass in silence).
pub fn parse(prefix: &str, entries: &[KvEntry], last: &KvConfig) -> (KvConfig, Vec<BadValue>) {
    let mut config = KvConfig::default();
    let mut bad = Vec::new();
    let by_name: BTreeMap<&str, &KvEntry> =
        entries.iter().filter_map(|e| Some((e.key.strip_prefix(prefix)?.trim_start_matches('/'), e))).collect();
    for (name, entry) in by_name {
        let text = String::from_utf8_lossy(&entry.value).trim().to_owned();
        let mut fail = |message: String| bad.push(BadValue { key: entry.key.clone(), message });
        match name {
            "build_timeout" => match parse_timeout(&text) {
                Ok(d) => config.build_timeout = Some(d),
                Err(message) => {
                    fail(message);
                    config.build_timeout = last.build_timeout;
                }
            },
            "test_timeout" => match parse_timeout(&text) {
                Ok(d) => config.test_timeout = Some(d),
                Err(message) => {
                    fail(message);
                    config.test_timeout = last.test_timeout;
                }
            },
            "default_resource_limits" => match parse_limits(&text) {
                Ok(limits) => config.default_resource_limits = Some(limits),
                Err(message) => {
                    fail(message);
                    config.default_resource_limits = last.default_resource_limits;
                }
            },
            "registry_config" => match serde_json::from_str::<RegistryConfig>(&text) {
                Ok(registry) => config.registry_config = Some(registry),
                Err(e) => {
                    fail(format!(
                        "is not a registry config ({{\"default_registry\", \"temp_prefix\", \"credentials_path\"}}): {e}"
                    ));
                    config.registry_config = last.registry_config.clone();
                }
            },
            "" => {}
            other => fail(format!("{other:?} is not a setting jobforge knows")),
        }
    }
    (config, bad)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d: Duration =
        text.trim_matches('"').parse().map_err(|e: jobforge_core::duration::BadDuration| e.to_string())?;
    let limit = jobforge_core::validate::MAX_TIMEOUT;
    match d.as_secs() {
        0 => Err("must be positive".into()),
        _ if d > limit => Err(format!("{d} is longer than the limit of {limit}")),
        _ => Ok(d),
    }
}

/// Resource limits in the job config's own form and rules.
fn parse_limits(text: &str) -> Result<ResourceLimits, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let probe = serde_json::json!({
        "repo_url": "https://example.invalid/r.git", "image_name": "x", "registry_url": "example.invalid",
        "resource_limits": value,
    });
    match jobforge_core::validate::job_spec(&probe) {
        Ok(spec) => Ok(spec.resource_limits),
        Err(problems) => {
            Err(problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))
        }
    }
}

/// Watch `<prefix>/config/` and call `apply` with every new configuration (and once at start),
/// until `stop` resolves. Consul being down is logged and retried with a growing delay.
pub async fn watch(
    client: ConsulClient,
    prefix: String,
    wait: StdDuration,
    mut apply: impl FnMut(KvConfig) + Send,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    let prefix = format!("{}/config/", prefix.trim_end_matches('/'));
    let mut blocking = Blocking::new(wait);
    let mut last = KvConfig::default();
    let mut first = true;
    let mut delay = StdDuration::from_millis(250);
    tokio::pin!(stop);
    loop {
        let query = client.list(&prefix, (blocking.index > 0).then_some(blocking));
        let answer = tokio::select! {
            _ = &mut stop => return,
            answer = query => answer,
        };
        match answer {
            Ok((entries, meta)) => {
                delay = StdDuration::from_millis(250);
                let (config, bad) = parse(&prefix, &entries, &last);
                for value in &bad {
                    tracing::warn!(key = %value.key, message = %value.message, "ignoring a malformed setting in Consul");
                }
                if first || config != last {
                    tracing::info!(?config, "configuration from Consul");
                    apply(config.clone());
                    last = config;
                    first = false;
                }
                blocking.advance(meta.index);
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "cannot read the configuration from Consul");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(StdDuration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> KvEntry {
        KvEntry { key: format!("svc/config/{key}"), value: value.as_bytes().to_vec().into(), ..KvEntry::default() }
    }

    #[test]
    fn reads_every_setting() {
        let entries = [
            entry("build_timeout", "45m"),
            entry("test_timeout", "\"90s\""),
            entry("default_resource_limits", r#"{"build": {"cpu": 2000, "memory": "4GB"}}"#),
            entry("registry_config", r#"{"default_registry": "registry.internal:5000", "temp_prefix": "scratch"}"#),
        ];
        let (config, bad) = parse("svc/config/", &entries, &KvConfig::default());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(config.build_timeout, Some(Duration::from_mins(45)));
        assert_eq!(config.test_timeout, Some(Duration::from_secs(90)));
        let build = config.default_resource_limits.unwrap().build.unwrap();
        assert_eq!((build.cpu, build.memory), (Some(2000), Some(4096)));
        assert_eq!(config.registry_config.unwrap().temp_prefix.unwrap().as_str(), "scratch");
    }

    #[test]
    fn a_malformed_value_keeps_the_last_good_one() {
        let last = KvConfig { build_timeout: Some(Duration::from_mins(20)), ..KvConfig::default() };
        let entries = [
            entry("build_timeout", "soon"),
            entry("default_resource_limits", r#"{"build": {"memory": -1}}"#),
            entry("colour", "blue"),
        ];
        let (config, bad) = parse("svc/config/", &entries, &last);
        assert_eq!(config.build_timeout, Some(Duration::from_mins(20)));
        assert_eq!(config.default_resource_limits, None);
        let keys: Vec<&str> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["svc/config/build_timeout", "svc/config/colour", "svc/config/default_resource_limits"]);
        assert!(bad[2].message.contains("resource_limits.build.memory"), "{}", bad[2].message);
    }

    #[test]
    fn absurd_timeouts_are_refused() {
        for text in ["0", "0s", "48h", "-1"] {
            let (config, bad) = parse("svc/config/", &[entry("test_timeout", text)], &KvConfig::default());
            assert_eq!((config.test_timeout, bad.len()), (None, 1), "{text}");
        }
    }
}
