//! The service's settings: [`ServiceConfig`] with its defaults, and [`ConfigFile`], the optional
//! YAML file (`--config`) whose values sit between the defaults and the environment/flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use jobforge_core::Duration;
use jobforge_core::engine::Settings;
use jobforge_core::image::RegistryHost;
use jobforge_core::secret::SecretPath;

/// Where phases run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Local,
    Nomad,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(BackendKind::Local),
            "nomad" => Ok(BackendKind::Nomad),
            other => Err(format!("unknown backend {other:?} (expected local or nomad)")),
        }
    }
}

/// Where secrets named by jobs are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsKind {
    /// The embedded JSON file in the data directory (`jobforge secret put`).
    File,
    /// Vault (or OpenBao) KV v2, at the same mount the Nomad backend's templates read.
    Vault,
}

impl std::str::FromStr for SecretsKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(SecretsKind::File),
            "vault" => Ok(SecretsKind::Vault),
            other => Err(format!("unknown secrets store {other:?} (expected file or vault)")),
        }
    }
}

/// Everything the service needs to start.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: BackendKind,
    pub temp_registry: Option<RegistryHost>,
    pub temp_registry_credentials: Option<SecretPath>,
    pub insecure_registries: Vec<RegistryHost>,
    pub build_timeout: Duration,
    pub test_timeout: Duration,
    pub publish_timeout: Duration,
    pub kill_grace: Duration,
    pub max_active_jobs: usize,
    pub storage_driver: String,
    pub oci_runtime: String,
    pub extra_ca_file: Option<PathBuf>,
    /// The network of local test containers.
    pub test_network: jobforge_local::TestNetwork,
    /// Directories whose repositories jobs may name as `file://` (`--allow-local-repos`).
    pub local_repos: Vec<PathBuf>,
    /// How long an ended job keeps its logs in the SQLite store.
    pub log_retention: Duration,
    /// What one caller may take at once (pending jobs, submission rate, open streams).
    pub limits: crate::service::limits::LimitSettings,
    /// Hosts besides a registry's own whose token realm may receive its credentials.
    pub registry_token_realms: Vec<String>,
    /// How often backend runs of no live job are looked for and removed.
    pub zombie_sweep: Duration,
    /// The shim command of the local backend (program and leading arguments).
    pub shim: Vec<std::ffi::OsString>,
    pub nomad: NomadSettings,
    pub secrets: SecretsKind,
    /// How to reach Vault (`secrets: vault`); its KV mount is `nomad.vault_kv_mount`.
    pub vault: VaultSettings,
    pub store: StoreKind,
    /// How to reach Consul and where jobforge's keys live (`store: consul`).
    pub consul: ConsulSettings,
    /// The tokens that may call (`--auth-file`); without one, anyone may.
    pub auth_file: Option<PathBuf>,
    /// Serve without tokens on an address beyond loopback (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
}

/// Where job records and logs live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file in the data directory: one service.
    #[default]
    Sqlite,
    /// Consul KV: several replicas may share it; Consul also supplies dynamic configuration.
    Consul,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlite" => Ok(StoreKind::Sqlite),
            "consul" => Ok(StoreKind::Consul),
            other => Err(format!("unknown store {other:?} (expected sqlite or consul)")),
        }
    }
}

/// How to reach Consul. `Debug` hides the token.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulSettings {
    /// `CONSUL_HTTP_ADDR`; default `http://127.0.0.1:8500`.
    pub address: Option<String>,
    /// `CONSUL_HTTP_TOKEN`.
    pub token: Option<String>,
    /// `CONSUL_CACERT`.
    pub ca_file: Option<PathBuf>,
    /// KV prefix; default `jobforge-service`.
    pub prefix: Option<String>,
    /// Finished jobs kept in the history; default 50.
    pub history_count: Option<usize>,
    /// Finished jobs older than this leave the history; default 30 days.
    pub history_age: Option<Duration>,
    /// TTL of this instance's Consul session: its locks (and jobs) pass to other replicas
    /// this long after it dies; default 15s (Consul's minimum is 10s).
    pub session_ttl: Option<Duration>,
    /// How long a lock freed by a dead instance stays un-acquirable; default 5s.
    pub lock_delay: Option<Duration>,
}

impl std::fmt::Debug for ConsulSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulSettings")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl ConsulSettings {
    /// Settings present in `other` replace ours.
    pub fn merge(&mut self, other: ConsulSettings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field; } )* };
        }
        take!(address, token, ca_file, prefix, history_count, history_age, session_ttl, lock_delay);
    }

    pub fn prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| "jobforge-service".into())
    }
}

/// How to reach and log in to Vault. `Debug` shows whether a token or secret ID is set, never
/// the value.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// `VAULT_ADDR`.
    pub address: Option<String>,
    /// `VAULT_TOKEN`.
    pub token: Option<String>,
    /// AppRole role ID (`VAULT_ROLE_ID`); with `secret_id`, used instead of a token.
    pub role_id: Option<String>,
    /// AppRole secret ID (`VAULT_SECRET_ID`).
    pub secret_id: Option<String>,
    /// `VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// PEM file of the CA that signed Vault's certificate (`VAULT_CACERT`).
    pub ca_file: Option<PathBuf>,
}

impl VaultSettings {
    /// Settings present in `other` replace ours.
    pub fn merge(&mut self, other: VaultSettings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field; } )* };
        }
        take!(address, token, role_id, secret_id, namespace, ca_file);
    }
}

impl std::fmt::Debug for VaultSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSettings")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("role_id", &self.role_id)
            .field("secret_id", &self.secret_id.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How to reach Nomad and what the rendered jobs look like.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NomadSettings {
    /// `NOMAD_ADDR`; default `http://127.0.0.1:4646`.
    pub address: Option<String>,
    /// `NOMAD_TOKEN`.
    pub token: Option<String>,
    pub namespace: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub datacenters: Vec<String>,
    /// PEM file of the CA that signed Nomad's certificate (`NOMAD_CACERT`).
    pub ca_file: Option<PathBuf>,
    /// Nomad job IDs start with `<prefix>-`; default `jobforge`.
    pub prefix: Option<String>,
    /// Image of the build and publish tasks; default `quay.io/buildah/stable`.
    pub buildah_image: Option<String>,
    /// Vault role of tasks that read secrets; default `jobforge`.
    pub vault_role: Option<String>,
    /// Mount of the KV v2 engine holding jobforge's secrets; default `secret`.
    pub vault_kv_mount: Option<String>,
    /// How long a job may wait for placement before it fails; default 5m.
    pub placement_timeout: Option<Duration>,
}

impl NomadSettings {
    /// Settings present in `other` replace ours.
    pub fn merge(&mut self, other: NomadSettings) {
        macro_rules! take {
            ($($field:ident),*) => { $( if other.$field.is_some() { self.$field = other.$field; } )* };
        }
        take!(
            address,
            token,
            namespace,
            region,
            ca_file,
            prefix,
            buildah_image,
            vault_role,
            vault_kv_mount,
            placement_timeout
        );
        if !other.datacenters.is_empty() {
            self.datacenters = other.datacenters;
        }
    }

    pub fn render_config(
        &self,
        insecure_registries: &[RegistryHost],
        kill_grace: Duration,
    ) -> jobforge_nomad::render::RenderConfig {
        let defaults = jobforge_nomad::render::RenderConfig::default();
        jobforge_nomad::render::RenderConfig {
            prefix: self.prefix.clone().unwrap_or(defaults.prefix),
            datacenters: if self.datacenters.is_empty() { defaults.datacenters } else { self.datacenters.clone() },
            namespace: self.namespace.clone(),
            region: self.region.clone(),
            buildah_image: self.buildah_image.clone().unwrap_or(defaults.buildah_image),
            kill_timeout: kill_grace.to_std(),
            vault_role: self.vault_role.clone().unwrap_or(defaults.vault_role),
            vault_kv_mount: self.vault_kv_mount.clone().unwrap_or(defaults.vault_kv_mount),
            insecure_registries: insecure_registries.to_vec(),
            ..defaults
        }
    }
}

impl ServiceConfig {
    /// Defaults for everything, with `data_dir` and the shim command given.
    pub fn new(data_dir: PathBuf, shim: Vec<std::ffi::OsString>) -> Self {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            backend: BackendKind::Local,
            temp_registry: None,
            temp_registry_credentials: None,
            insecure_registries: Vec::new(),
            build_timeout: Duration::from_mins(30),
            test_timeout: Duration::from_mins(15),
            publish_timeout: Duration::from_mins(15),
            kill_grace: Duration::from_secs(10),
            max_active_jobs: 4,
            storage_driver: "overlay".into(),
            oci_runtime: "runc".into(),
            extra_ca_file: None,
            test_network: jobforge_local::TestNetwork::Private,
            local_repos: Vec::new(),
            log_retention: Duration::from_mins(720 * 60),
            limits: crate::service::limits::LimitSettings::default(),
            registry_token_realms: Vec::new(),
            zombie_sweep: Duration::from_mins(5),
            shim,
            nomad: NomadSettings::default(),
            store: StoreKind::Sqlite,
            consul: ConsulSettings::default(),
            secrets: SecretsKind::File,
            vault: VaultSettings::default(),
            auth_file: None,
            insecure_no_auth: false,
        }
    }

    pub fn engine_settings(&self) -> Settings {
        Settings {
            build_timeout: self.build_timeout,
            test_timeout: self.test_timeout,
            publish_timeout: self.publish_timeout,
            kill_grace: self.kill_grace.to_std(),
            temp_registry: self.temp_registry.clone(),
            temp_registry_credentials: self.temp_registry_credentials.clone(),
            max_active_jobs: self.max_active_jobs,
            secrets_need_hosts: self.auth_file.is_some(),
            local_repos: self.local_repos.clone(),
            ..Settings::default()
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("jobforge.db")
    }

    pub fn secrets_path(&self) -> PathBuf {
        self.data_dir.join("secrets.json")
    }
}

/// The optional config file: any setting, all optional. Unknown keys are refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub backend: Option<BackendKind>,
    pub temp_registry: Option<RegistryHost>,
    pub temp_registry_credentials: Option<SecretPath>,
    #[serde(default)]
    pub insecure_registries: Vec<RegistryHost>,
    pub build_timeout: Option<Duration>,
    pub test_timeout: Option<Duration>,
    pub publish_timeout: Option<Duration>,
    pub kill_grace: Option<Duration>,
    pub max_active_jobs: Option<usize>,
    pub storage_driver: Option<String>,
    pub oci_runtime: Option<String>,
    pub extra_ca_file: Option<PathBuf>,
    pub auth_file: Option<PathBuf>,
    pub test_network: Option<jobforge_local::TestNetwork>,
    #[serde(default)]
    pub allow_local_repos: Vec<PathBuf>,
    pub zombie_sweep: Option<Duration>,
    pub log_retention: Option<Duration>,
    #[serde(default)]
    pub nomad: NomadSettings,
    pub store: Option<StoreKind>,
    #[serde(default)]
    pub consul: ConsulSettings,
    pub secrets: Option<SecretsKind>,
    #[serde(default)]
    pub vault: VaultSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }
}

/// `base` with the settings Consul KV gives replacing its own.
pub fn with_kv(base: &Settings, kv: &jobforge_consul::config::KvConfig) -> Settings {
    let mut settings = base.clone();
    if let Some(timeout) = kv.build_timeout {
        settings.build_timeout = timeout;
    }
    if let Some(timeout) = kv.test_timeout {
        settings.test_timeout = timeout;
    }
    if let Some(limits) = kv.default_resource_limits {
        settings.resources = limits;
    }
    if let Some(registry) = &kv.registry_config {
        if registry.default_registry.is_some() {
            settings.temp_registry.clone_from(&registry.default_registry);
        }
        if let Some(prefix) = &registry.temp_prefix {
            settings.temp_prefix = prefix.clone();
        }
        if registry.credentials_path.is_some() {
            settings.temp_registry_credentials.clone_from(&registry.credentials_path);
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_reads_durations_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "build_timeout: 45m\ninsecure_registries: [\"127.0.0.1:5000\"]\n").unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.build_timeout.unwrap().as_secs(), 2700);
        assert_eq!(file.insecure_registries.len(), 1);
        std::fs::write(&path, "nomad:\n  datacenters: [dc1, dc2]\n  placement_timeout: 2m\n").unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.nomad.datacenters, ["dc1", "dc2"]);
        std::fs::write(&path, "secrets: vault\nvault:\n  address: https://vault:8200\n  token: s.abc\n").unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.secrets, Some(SecretsKind::Vault));
        assert_eq!(file.vault.address.as_deref(), Some("https://vault:8200"));
        assert!(!format!("{:?}", file.vault).contains("s.abc"), "Debug hides the token");
        std::fs::write(&path, "build_timout: 45m\n").unwrap();
        assert!(ConfigFile::load(&path).unwrap_err().to_string().contains("build_timout"));
    }
}
