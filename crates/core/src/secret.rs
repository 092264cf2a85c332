//! Secrets by reference: a [`SecretPath`] names a secret, a [`SecretValue`] holds one in memory.
//!
//! A `SecretValue` cannot be serialized and prints as `***`, so no record, response or log line
//! can carry one by accident. Only a [`crate::ports::Secrets`] implementation creates them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A relative, plain path to a secret (`nomad/jobs/app-secrets`): `/`-separated segments of
/// `[A-Za-z0-9_.-]`, none empty, `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretPath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSecretPath(pub String);

impl SecretPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretPath {
    type Err = BadSecretPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(BadSecretPath("must not be empty".into()));
        }
        if s.len() > 512 {
            return Err(BadSecretPath("is longer than 512 characters".into()));
        }
        if s.starts_with('/') {
            return Err(BadSecretPath("must be a relative path (no leading '/')".into()));
        }
        for segment in s.split('/') {
            let plain = !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !plain {
                return Err(BadSecretPath(format!(
                    "segment {:?} is not allowed: segments are non-empty [A-Za-z0-9_.-], not '.' or '..'",
                    segment.chars().take(60).collect::<String>()
                )));
            }
        }
        Ok(SecretPath(s.to_owned()))
    }
}

impl TryFrom<String> for SecretPath {
    type Error = BadSecretPath;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SecretPath> for String {
    fn from(p: SecretPath) -> String {
        p.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret value held in memory. No `Serialize`, and `Debug`/`Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself, for the one place that must hand it to a process or a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The fields of one secret (`username`, `password`, ...).
#[derive(Clone, Debug, Default)]
pub struct SecretData(pub BTreeMap<String, SecretValue>);

impl SecretData {
    pub fn get(&self, field: &str) -> Option<&SecretValue> {
        self.0.get(field)
    }

    /// The values to keep out of logs: every field but [`ALLOWED_HOSTS`], which says where the
    /// secret may go and is no secret (masking it would hide the repository's host in logs).
    pub fn values(&self) -> impl Iterator<Item = &SecretValue> {
        self.0.iter().filter(|(field, _)| field.as_str() != ALLOWED_HOSTS).map(|(_, value)| value)
    }

    /// The hosts the secret may be sent to, from its [`ALLOWED_HOSTS`] field (`host[:port]`,
    /// comma-separated); `None` when it has none.
    pub fn allowed_hosts(&self) -> Result<Option<Vec<AllowedHost>>, String> {
        let Some(value) = self.get(ALLOWED_HOSTS) else { return Ok(None) };
        let hosts: Result<Vec<AllowedHost>, String> =
            value.expose().split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::parse).collect();
        Ok(Some(hosts?))
    }
}

/// The field of a secret naming the hosts it may be sent to.
pub const ALLOWED_HOSTS: &str = "allowed_hosts";

/// One host a secret may be sent to: `git.example.com` (its default port) or
/// `registry.example.com:5000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// Whether a request to `host` (and `port`, when the URL names one) may carry the secret.
    /// A host allowed without a port is allowed on the URL's default port only: another port of
    /// a shared host may be someone else's service.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.host.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']')) && self.port == port
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl FromStr for AllowedHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not host[:port]");
        let (host, port) = match s.strip_prefix('[') {
            Some(v6) => {
                let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
                (host, rest.strip_prefix(':'))
            }
            None => match s.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            },
        };
        let port = port.map(|p| p.parse::<u16>().map_err(|_| bad())).transpose()?;
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_');
        if host.is_empty() || host.len() > 253 || !host.bytes().all(plain) {
            return Err(bad());
        }
        Ok(AllowedHost { host: host.to_ascii_lowercase(), port })
    }
}

/// A username and password (or token), read from a secret's `username` and `password`
/// (or `token`) fields.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: SecretValue,
    pub password: SecretValue,
}

impl Credentials {
    /// Credentials from a secret, or a message naming the missing field.
    pub fn from_secret(path: &SecretPath, data: &SecretData) -> Result<Self, String> {
        let username = data.get("username").ok_or_else(|| format!("secret {path} has no field \"username\""))?;
        let password = data
            .get("password")
            .or_else(|| data.get("token"))
            .ok_or_else(|| format!("secret {path} has neither a \"password\" nor a \"token\" field"))?;
        Ok(Credentials { username: username.clone(), password: password.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_paths() {
        for ok in ["a", "nomad/jobs/app-secrets", "x.y/z_1"] {
            assert!(ok.parse::<SecretPath>().is_ok(), "{ok}");
        }
        for no in ["", "/abs", "a//b", "a/../b", "..", "a/.", "a b", "a/b\n", "{{ x }}", "a/"] {
            assert!(no.parse::<SecretPath>().is_err(), "{no:?}");
        }
    }

    fn data(fields: &[(&str, &str)]) -> SecretData {
        SecretData(fields.iter().map(|(k, v)| ((*k).to_owned(), SecretValue::new(*v))).collect())
    }

    #[test]
    fn allowed_hosts_name_a_host_and_maybe_a_port() {
        let secret =
            data(&[("password", "pw"), (ALLOWED_HOSTS, "git.example.com, Registry.example.com:5000,[::1]:8443")]);
        let hosts = secret.allowed_hosts().unwrap().unwrap();
        let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["git.example.com", "registry.example.com:5000", "[::1]:8443"]);
        let allows = |host: &str, port: Option<u16>| hosts.iter().any(|h| h.allows(host, port));
        assert!(allows("GIT.example.com", None));
        assert!(!allows("git.example.com", Some(8080)), "another port of the host is another service");
        assert!(!allows("evil.example", None));
        assert!(!allows("git.example.com.evil.example", None));
        assert!(allows("registry.example.com", Some(5000)));
        assert!(!allows("registry.example.com", None));
        assert!(allows("[::1]", Some(8443)));
        assert_eq!(data(&[("password", "pw")]).allowed_hosts(), Ok(None));
        for bad in ["host:port", "a b", "x/y", ":80", "host:99999"] {
            assert!(data(&[(ALLOWED_HOSTS, bad)]).allowed_hosts().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allowed_hosts_are_no_secret_to_mask() {
        let secret = data(&[("password", "pw"), (ALLOWED_HOSTS, "git.example.com")]);
        let values: Vec<&str> = secret.values().map(SecretValue::expose).collect();
        assert_eq!(values, ["pw"], "the repository's host stays readable in logs");
    }

    #[test]
    fn values_never_print() {
        let v = SecretValue::new("hunter22");
        assert_eq!(format!("{v:?}"), "***");
        let creds = Credentials { username: v.clone(), password: v };
        assert!(!format!("{creds:?}").contains("hunter22"));
    }
}
