//! [`VaultConfig`]: how to reach Vault (or OpenBao) and log in, set in code or read from the
//! environment variables Vault's own CLI reads; and [`VaultError`], why a [`crate::VaultSecrets`]
//! could not be set up.
//!
//! The token and the AppRole secret ID are held only as `SecretValue`, so no `Debug` output of a
//! config shows them. Nothing here talks to Vault.

use std::path::PathBuf;
use std::time::Duration;

use jobforge_core::secret::SecretValue;
use url::Url;

/// Where KV v2 is mounted on a fresh Vault (and on `bao server -dev`).
pub const DEFAULT_KV_MOUNT: &str = "secret";

/// Where `vault auth enable approle` mounts AppRole.
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";

/// How long one request to Vault may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach Vault and which secrets engine holds jobforge's secrets.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// The server's base address, e.g. `https://vault.example.com:8200` (no `/v1`).
    pub address: Url,
    pub auth: VaultAuth,
    /// Mount of the KV v2 engine: a secret path `git/app` is read at `<kv_mount>/data/git/app`.
    pub kv_mount: String,
    /// Sent as `X-Vault-Namespace` (Vault Enterprise and OpenBao namespaces).
    pub namespace: Option<String>,
    /// PEM file of the CA certificates to trust for `https`, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take.
    pub timeout: Duration,
}

/// How jobforge logs in to Vault.
#[derive(Clone, Debug)]
pub enum VaultAuth {
    /// A token used as is; when it expires, reads fail until the service gets a new one.
    Token(SecretValue),
    /// AppRole: log in for a token at start, and again whenever it expires or is refused.
    AppRole {
        role_id: String,
        secret_id: SecretValue,
        /// Where AppRole is mounted, under `auth/` (usually `approle`).
        mount: String,
    },
}

/// Why a Vault client could not be set up. Messages never hold a token or a secret ID.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("invalid Vault setting {setting}: {message}")]
    Config { setting: &'static str, message: String },
    #[error("cannot set up the Vault client: {0}")]
    Client(String),
    #[error("Vault refused the AppRole login at auth/{mount}: {message}")]
    Login { mount: String, message: String },
}

impl VaultConfig {
    /// Vault at `address` with `auth`, KV v2 at `secret`, no namespace or CA file, and
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(address: Url, auth: VaultAuth) -> VaultConfig {
        VaultConfig {
            address,
            auth,
            kv_mount: DEFAULT_KV_MOUNT.to_owned(),
            namespace: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// From `VAULT_ADDR`, `VAULT_TOKEN` or `VAULT_ROLE_ID`/`VAULT_SECRET_ID`, `VAULT_NAMESPACE`
    /// and `VAULT_CACERT`; `None` without `VAULT_ADDR`. Empty variables count as unset.
    pub fn from_env() -> Result<Option<VaultConfig>, VaultError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables (tests pass a map: changing the
    /// process's environment is unsafe once threads run).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<VaultConfig>, VaultError> {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        let Some(address) = var("VAULT_ADDR") else { return Ok(None) };
        let address = parse_address(&address)?;
        let auth = VaultAuth::from_parts(var("VAULT_TOKEN"), var("VAULT_ROLE_ID"), var("VAULT_SECRET_ID"))?;
        let mut config = VaultConfig::new(address, auth);
        config.namespace = var("VAULT_NAMESPACE");
        config.ca_file = var("VAULT_CACERT").map(PathBuf::from);
        Ok(Some(config))
    }
}

impl VaultAuth {
    /// AppRole (at [`DEFAULT_APPROLE_MOUNT`]) when a role ID is given, else the token. A role ID
    /// wins over a token because it is the more specific choice: a `VAULT_TOKEN` is often
    /// left in a shell for other tools.
    pub fn from_parts(
        token: Option<String>,
        role_id: Option<String>,
        secret_id: Option<String>,
    ) -> Result<VaultAuth, VaultError> {
        match (token, role_id, secret_id) {
            (_, Some(role_id), Some(secret_id)) => Ok(VaultAuth::AppRole {
                role_id,
                secret_id: SecretValue::new(secret_id),
                mount: DEFAULT_APPROLE_MOUNT.to_owned(),
            }),
            (_, Some(_), None) => Err(VaultError::Config {
                setting: "VAULT_SECRET_ID",
                message: "an AppRole role ID needs its secret ID".into(),
            }),
            (_, None, Some(_)) => Err(VaultError::Config {
                setting: "VAULT_ROLE_ID",
                message: "an AppRole secret ID needs its role ID".into(),
            }),
            (Some(token), None, None) => Ok(VaultAuth::Token(SecretValue::new(token))),
            (None, None, None) => Err(VaultError::Config {
                setting: "VAULT_TOKEN",
                message: "Vault needs a token, or an AppRole role ID and secret ID".into(),
            }),
        }
    }
}

/// A Vault address: `http` or `https`, with a host.
pub fn parse_address(text: &str) -> Result<Url, VaultError> {
    let bad = |message: String| VaultError::Config { setting: "VAULT_ADDR", message };
    let url = Url::parse(text).map_err(|e| bad(format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(format!("{text:?} must be an http or https URL with a host")));
    }
    Ok(url)
}

/// A mount path: `/`-separated segments of `[A-Za-z0-9_.-]`, as secret paths are, so that
/// `<mount>/data/<path>` is a plain URL path.
pub(crate) fn check_mount(setting: &'static str, mount: &str) -> Result<(), VaultError> {
    let plain = !mount.is_empty()
        && mount.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if plain {
        Ok(())
    } else {
        Err(VaultError::Config {
            setting,
            message: format!("{mount:?} is not a mount path (segments of [A-Za-z0-9_.-], no leading or trailing '/')"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Option<VaultConfig>, VaultError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        VaultConfig::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn environment_without_an_address_means_no_vault() {
        assert!(from(&[("VAULT_TOKEN", "t")]).unwrap().is_none());
        assert!(from(&[("VAULT_ADDR", ""), ("VAULT_TOKEN", "t")]).unwrap().is_none());
    }

    #[test]
    fn a_token_or_an_approle_from_the_environment() {
        let config = from(&[
            ("VAULT_ADDR", "https://vault.example:8200"),
            ("VAULT_TOKEN", "s.tok3n"),
            ("VAULT_NAMESPACE", "team"),
            ("VAULT_CACERT", "/etc/ca.pem"),
        ])
        .unwrap()
        .unwrap();
        assert!(matches!(&config.auth, VaultAuth::Token(t) if t.expose() == "s.tok3n"));
        assert_eq!(config.namespace.as_deref(), Some("team"));
        assert_eq!(config.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(config.kv_mount, "secret");
        assert!(!format!("{config:?}").contains("s.tok3n"), "Debug hides the token");

        let config = from(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "ignored"),
            ("VAULT_ROLE_ID", "role"),
            ("VAULT_SECRET_ID", "s3cret-id"),
        ])
        .unwrap()
        .unwrap();
        assert!(
            matches!(&config.auth, VaultAuth::AppRole { role_id, mount, .. } if role_id == "role" && mount == "approle")
        );
        assert!(!format!("{config:?}").contains("s3cret-id"), "Debug hides the secret ID");
    }

    #[test]
    fn incomplete_or_bad_settings_are_refused_by_name() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[("VAULT_ADDR", "http://v:8200")], "VAULT_TOKEN"),
            (&[("VAULT_ADDR", "http://v:8200"), ("VAULT_ROLE_ID", "r")], "VAULT_SECRET_ID"),
            (&[("VAULT_ADDR", "http://v:8200"), ("VAULT_SECRET_ID", "s")], "VAULT_ROLE_ID"),
            (&[("VAULT_ADDR", "vault:8200"), ("VAULT_TOKEN", "t")], "VAULT_ADDR"),
        ];
        for (vars, setting) in cases {
            let error = from(vars).unwrap_err().to_string();
            assert!(error.contains(setting), "{vars:?}: {error}");
        }
    }

    #[test]
    fn mounts_are_plain_paths() {
        for ok in ["secret", "kv/team-a", "kv_2.x"] {
            assert!(check_mount("kv_mount", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/secret", "secret/", "a//b", "../x", "a b", "x?y"] {
            assert!(check_mount("kv_mount", bad).is_err(), "{bad:?}");
        }
    }
}
