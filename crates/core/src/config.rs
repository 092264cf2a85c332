//! The job a caller submits, once validated: [`JobSpec`] and its parts.
//!
//! Every field here has passed [`crate::validate`], so code that holds a `JobSpec` never checks
//! input again. The serialized form is the canonical wire form (the seed's flat field names), used
//! both in stored records and when the API echoes a job's config.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::image::{RegistryUrl, Repository, Tag};
use crate::secret::{SecretPath, SecretValue};
use crate::status::Phase;

/// A validated job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub repo_url: RepoUrl,
    pub git_ref: GitRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_credentials_path: Option<SecretPath>,
    pub dockerfile_path: RelPath,
    pub context: RelPath,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<EnvName, String>,
    pub image_name: Repository,
    /// Tags to publish; empty means "the job id" (filled in at submission).
    pub image_tags: Vec<Tag>,
    pub registry_url: RegistryUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_credentials_path: Option<SecretPath>,
    #[serde(default)]
    pub test_commands: Vec<String>,
    #[serde(default)]
    pub test_entry_point: bool,
    #[serde(default, skip_serializing_if = "TestOptions::is_empty")]
    pub test: TestOptions,
    #[serde(default, skip_serializing_if = "ResourceLimits::is_empty")]
    pub resource_limits: ResourceLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    #[serde(default)]
    pub clear_cache: bool,
}

impl JobSpec {
    /// Every secret the caller named, with the field that names it.
    pub fn secret_refs(&self) -> Vec<(String, &SecretPath)> {
        let mut named: Vec<(String, &SecretPath)> = Vec::new();
        if let Some(path) = &self.git_credentials_path {
            named.push(("git_credentials_path".into(), path));
        }
        if let Some(path) = &self.registry_credentials_path {
            named.push(("registry_credentials_path".into(), path));
        }
        for (i, secret) in self.test.vault_secrets.iter().enumerate() {
            named.push((format!("test.vault_secrets[{i}].path"), &secret.path));
        }
        named
    }

    /// The tests to run, in order: each command, then the image's own entry point if asked for.
    pub fn tests(&self) -> Vec<TestCase> {
        let mut tests: Vec<TestCase> = self.test_commands.iter().cloned().map(TestCase::Command).collect();
        if self.test_entry_point {
            tests.push(TestCase::EntryPoint);
        }
        tests
    }

    /// Limits for one phase: the per-phase value, else the global one (tests also honour
    /// `test.resource_limits`, which wins over both).
    pub fn resources(&self, phase: Phase) -> Resources {
        let limits = &self.resource_limits;
        let per_phase = match phase {
            Phase::Build => limits.build,
            Phase::Test => self.test.resource_limits.or(limits.test),
            Phase::Publish => limits.publish,
        }
        .unwrap_or_default();
        Resources {
            cpu: per_phase.cpu.or(limits.cpu),
            memory: per_phase.memory.or(limits.memory),
            disk: per_phase.disk.or(limits.disk),
        }
    }
}

/// One entry of the test phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestCase {
    /// `sh -c <command>` inside the image.
    Command(String),
    /// The image's own ENTRYPOINT/CMD, with no command.
    EntryPoint,
}

impl fmt::Display for TestCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestCase::Command(command) => f.write_str(command),
            TestCase::EntryPoint => f.write_str("<image entry point>"),
        }
    }
}

/// Test options beyond the command list (the seed's nested `test` object).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TestOptions {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<EnvName, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault_secrets: Vec<VaultSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<Resources>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub gpu_required: bool,
}

impl TestOptions {
    pub fn is_empty(&self) -> bool {
        *self == TestOptions::default()
    }
}

/// Secret fields a test gets as environment variables: `fields` maps a field of the secret at
/// `path` to the variable name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultSecret {
    pub path: SecretPath,
    pub fields: BTreeMap<String, EnvName>,
}

/// A placement constraint for test tasks (Nomad's `constraint` stanza).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub attribute: String,
    pub operand: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// CPU (MHz), memory (MB) and disk (MB); unset parts fall back to the server's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
}

/// Global limits plus per-phase overrides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Resources>,
}

impl ResourceLimits {
    pub fn is_empty(&self) -> bool {
        *self == ResourceLimits::default()
    }
}

/// Where to report the job's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    /// The HMAC key for the `X-Webhook-Signature` header, as submitted: held in memory only
    /// (never serialized, printed as `***`), on its way into the Secrets port.
    #[serde(skip)]
    pub secret: Option<SecretValue>,
    /// Where the Secrets port keeps that key: all a stored record holds of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_path: Option<SecretPath>,
    /// Which outcomes to report; both false means both.
    #[serde(default)]
    pub on_success: bool,
    #[serde(default)]
    pub on_failure: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A value from a store, as an error message shows it: quoted, on one line, cut.
fn shown(text: &str) -> String {
    crate::error_text::quote(text.as_bytes(), 80).unwrap_or_else(|| format!("{text:?}"))
}

/// A string that keeps a rule. Deserializing checks the rule as a submission does (`check`
/// returns the stored form or why the text breaks it), so a record read back from a store
/// (shared Consul KV included) holds no value validation would have refused.
macro_rules! checked_string {
    ($(#[$doc:meta])* $ty:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(pub(crate) String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<String, String> = $check;
                match check(&text) {
                    Ok(checked) if checked == text => Ok($ty(text)),
                    Ok(_) => Err(format!("{} is not in its normal form", shown(&text))),
                    Err(message) => Err(format!("{} {message}", shown(&text))),
                }
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// A git remote: an `https`, `http`, `ssh`, `git` or `file` URL, or scp-style `user@host:path`.
    /// Never starts with `-` and carries no password.
    RepoUrl,
    |s| crate::validate::check_repo_url(s).map(|()| s.to_owned())
);
checked_string!(
    /// A branch, tag or commit: no leading `-`, no whitespace, no `..`, and git's ref rules.
    GitRef,
    |s| crate::validate::check_git_ref(s).map(|()| s.to_owned())
);
checked_string!(
    /// A normalized relative path inside the repository (`.` for the root).
    RelPath,
    crate::validate::normalize_rel_path
);
checked_string!(
    /// An environment variable or build-arg name: `[A-Za-z_][A-Za-z0-9_]*`.
    EnvName,
    |s| crate::validate::check_env_name(s).map(|()| s.to_owned())
);

impl RepoUrl {
    pub fn is_file(&self) -> bool {
        self.0.starts_with("file://")
    }

    /// The local path of a `file://` repository.
    pub fn file_path(&self) -> Option<std::path::PathBuf> {
        if !self.is_file() {
            return None;
        }
        url::Url::parse(&self.0).ok()?.to_file_path().ok()
    }

    /// The host git connects to, and the port when the URL names one that is not its scheme's
    /// default; `None` for a `file://` repository.
    pub fn host(&self) -> Option<(String, Option<u16>)> {
        if !self.0.contains("://") {
            // `user@host:path`, the scp-like form (ssh, default port).
            let (user_host, _) = self.0.split_once(':')?;
            let (_, host) = user_host.split_once('@')?;
            return Some((host.to_ascii_lowercase(), None));
        }
        let url = url::Url::parse(&self.0).ok()?;
        let host = url.host_str().filter(|h| !h.is_empty())?.to_ascii_lowercase();
        let port = url.port().filter(|p| Some(*p) != default_port(url.scheme()));
        Some((host, port))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        "ssh" => Some(22),
        "git" => Some(9418),
        _ => None,
    }
}

impl GitRef {
    /// A full 40- or 64-hex commit id, which servers may not let us fetch shallowly.
    pub fn is_commit(&self) -> bool {
        matches!(self.0.len(), 40 | 64) && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl RelPath {
    pub fn root() -> Self {
        RelPath(".".into())
    }
}
