//! Wiring: from a [`ServiceConfig`] to the engine's ports. The one place that chooses adapters.

use std::sync::Arc;

use jobforge_core::engine::Ports;
use jobforge_core::ports::{Store, SystemClock};
use jobforge_local::{FileSecrets, LocalBackend, LocalConfig};
use jobforge_registry::{OciRegistry, RegistryConfig};
use jobforge_sqlite::SqliteStore;

use crate::config::{BackendKind, SecretsKind, ServiceConfig, StoreKind};
use crate::http::ServiceInfo;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the job store: {0}")]
    Store(#[source] jobforge_core::ports::StoreError),
    #[error("cannot set up the local backend: {0}")]
    Local(#[from] jobforge_local::LocalError),
    #[error("cannot set up the registry client: {0}")]
    Registry(#[source] jobforge_core::ports::RegistryError),
    #[error("cannot set up the Nomad client: {0}")]
    Nomad(#[from] jobforge_nomad::NomadError),
    #[error("cannot set up the Vault secrets store: {0}")]
    Vault(#[from] jobforge_vault::VaultError),
    #[error("cannot set up the Consul client: {0}")]
    Consul(#[from] jobforge_consul::ConsulError),
}

/// The ports, and how the service describes itself.
pub struct Wired {
    pub ports: Ports,
    pub info: ServiceInfo,
    /// The Consul client, when the service uses Consul (for its dynamic configuration).
    pub consul: Option<jobforge_consul::ConsulClient>,
}

/// The data directory, made (or made again) readable by this user only: it holds the secrets
/// store, the job records and the runs' working trees.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Async because the Vault secrets store logs in (AppRole) and the Consul locks open a session
/// before the service starts. `shutdown` ends that session.
pub async fn wire(
    config: &ServiceConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Wired, WiringError> {
    private_dir(&config.data_dir).map_err(|source| WiringError::DataDir { path: config.data_dir.clone(), source })?;
    let consul = match config.store {
        StoreKind::Consul => Some(consul_client(config)?),
        StoreKind::Sqlite => None,
    };
    let store: Arc<dyn Store> = match &consul {
        Some(client) => {
            let settings = &config.consul;
            let defaults = jobforge_consul::ConsulStoreConfig::default();
            Arc::new(jobforge_consul::ConsulStore::new(
                client.clone(),
                jobforge_consul::ConsulStoreConfig {
                    prefix: settings.prefix(),
                    history_count: settings.history_count.unwrap_or(defaults.history_count),
                    history_age: settings.history_age.map_or(defaults.history_age, |d| d.to_std()),
                    ..defaults
                },
            ))
        }
        None => {
            let options = jobforge_sqlite::SqliteOptions {
                log_retention: config.log_retention.to_std(),
                ..jobforge_sqlite::SqliteOptions::default()
            };
            Arc::new(SqliteStore::open_with(&config.database_path(), options).map_err(WiringError::Store)?)
        }
    };
    // One secrets port for the engine (existence checks) and the local backend (reads).
    let secrets: Arc<dyn jobforge_core::ports::Secrets> = match config.secrets {
        SecretsKind::File => Arc::new(FileSecrets::new(config.secrets_path())),
        SecretsKind::Vault => Arc::new(jobforge_vault::VaultSecrets::connect(vault_config(config)?).await?),
    };
    let registry = Arc::new(
        OciRegistry::new(RegistryConfig {
            insecure: config.insecure_registries.clone(),
            token_realms: config.registry_token_realms.clone(),
            ..RegistryConfig::default()
        })
        .map_err(WiringError::Registry)?,
    );
    let backend: Arc<dyn jobforge_core::ports::Backend> = match config.backend {
        BackendKind::Local => {
            let mut local = LocalConfig::new(config.data_dir.clone(), config.shim.clone());
            local.storage_driver = config.storage_driver.clone();
            local.oci_runtime = config.oci_runtime.clone();
            local.insecure_registries = config.insecure_registries.clone();
            local.extra_ca_file = config.extra_ca_file.clone();
            local.test_network = config.test_network;
            Arc::new(LocalBackend::new(local, secrets.clone())?)
        }
        BackendKind::Nomad => Arc::new(nomad_backend(config)?),
    };
    let info = ServiceInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: backend.name().to_owned(),
        store: match config.store {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Consul => "consul",
        }
        .to_owned(),
    };
    let locks: Arc<dyn jobforge_core::ports::Locks> = match &consul {
        Some(client) => {
            let settings = &config.consul;
            let defaults = jobforge_consul::ConsulLocksConfig::default();
            let locks = jobforge_consul::ConsulLocksConfig {
                prefix: settings.prefix(),
                instance: instance_name(),
                ttl: settings.session_ttl.map_or(defaults.ttl, |d| d.to_std()),
                lock_delay: settings.lock_delay.map_or(defaults.lock_delay, |d| d.to_std()),
                session_file: Some(config.data_dir.join("consul-session")),
            };
            Arc::new(jobforge_consul::ConsulLocks::start(client.clone(), locks, shutdown.clone()).await?)
        }
        // Alone on its store: locks in this process are enough, and die with it.
        None => Arc::new(jobforge_core::engine::ProcessLocks::default()),
    };
    let ports = Ports::new(backend, store, secrets, registry, locks, Arc::new(SystemClock));
    Ok(Wired { ports, info, consul })
}

fn nomad_backend(config: &ServiceConfig) -> Result<jobforge_nomad::NomadBackend, WiringError> {
    let settings = &config.nomad;
    let mut nomad = jobforge_nomad::NomadConfig::from_env()?;
    if let Some(address) = &settings.address {
        nomad.address = address
            .parse()
            .map_err(|e| jobforge_nomad::NomadError::Config(format!("Nomad address {address:?}: {e}")))?;
    }
    for (field, value) in [
        (&mut nomad.token, &settings.token),
        (&mut nomad.namespace, &settings.namespace),
        (&mut nomad.region, &settings.region),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    if settings.ca_file.is_some() {
        nomad.ca_file.clone_from(&settings.ca_file);
    }
    let client = jobforge_nomad::NomadClient::new(nomad)?;
    let backend = jobforge_nomad::NomadBackendConfig {
        render: settings.render_config(&config.insecure_registries, config.kill_grace),
        placement_timeout: settings.placement_timeout.map_or(std::time::Duration::from_secs(300), |d| d.to_std()),
        ..jobforge_nomad::NomadBackendConfig::default()
    };
    Ok(jobforge_nomad::NomadBackend::new(client, backend))
}

/// The Vault client's settings: the KV mount is the Nomad templates' (`nomad.vault_kv_mount`), so
/// a job's secret paths mean the same secrets on either backend.
fn vault_config(config: &ServiceConfig) -> Result<jobforge_vault::VaultConfig, jobforge_vault::VaultError> {
    let settings = &config.vault;
    let address = settings.address.as_deref().ok_or_else(|| jobforge_vault::VaultError::Config {
        setting: "VAULT_ADDR",
        message: "--secrets vault needs Vault's address (--vault-addr)".into(),
    })?;
    let auth = jobforge_vault::VaultAuth::from_parts(
        settings.token.clone(),
        settings.role_id.clone(),
        settings.secret_id.clone(),
    )?;
    let mut vault = jobforge_vault::VaultConfig::new(jobforge_vault::parse_address(address)?, auth);
    vault.kv_mount = config.nomad.vault_kv_mount.clone().unwrap_or_else(|| jobforge_vault::DEFAULT_KV_MOUNT.to_owned());
    vault.namespace.clone_from(&settings.namespace);
    vault.ca_file.clone_from(&settings.ca_file);
    Ok(vault)
}

fn consul_client(config: &ServiceConfig) -> Result<jobforge_consul::ConsulClient, WiringError> {
    let settings = &config.consul;
    let mut consul = jobforge_consul::ConsulConfig::from_env()?;
    if let Some(address) = &settings.address {
        consul.address = jobforge_consul::client::parse_address(address)?;
    }
    if settings.token.is_some() {
        consul.token.clone_from(&settings.token);
    }
    if settings.ca_file.is_some() {
        consul.ca_file.clone_from(&settings.ca_file);
    }
    Ok(jobforge_consul::ConsulClient::new(consul)?)
}

/// `<hostname>-<pid>`: which instance holds a lock, for people reading Consul.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}-{}", if host.is_empty() { "jobforge" } else { host }, std::process::id())
}
