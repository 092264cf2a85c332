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

    pub fn values(&self) -> impl Iterator<Item = &SecretValue> {
        self.0.values()
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

    #[test]
    fn values_never_print() {
        let v = SecretValue::new("hunter22");
        assert_eq!(format!("{v:?}"), "***");
        let creds = Credentials { username: v.clone(), password: v };
        assert!(!format!("{creds:?}").contains("hunter22"));
    }
}
