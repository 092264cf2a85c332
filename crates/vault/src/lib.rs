//! Vault (or OpenBao) for jobforge: [`VaultSecrets`], the `Secrets` port on a KV v2 engine, with
//! token or AppRole auth, over the vaultrs client.
//!
//! - [`VaultConfig`] says where Vault is and how to log in (`VaultConfig::from_env` reads the
//!   variables Vault's CLI reads); [`VaultSecrets::connect`] builds the client and logs in.
//! - `read` is `GET /v1/<mount>/data/<path>`; `exists` is `GET /v1/<mount>/metadata/<path>`
//!   and reads no value; `check` is `GET /v1/sys/health`.
//! - The KV mount is the one the Nomad backend's templates read (`secret/data/<path>`), so
//!   both backends resolve a job's secret paths to the same secrets.
//!
//! Values leave this crate only as `SecretValue`. Errors name the path, never a value, the
//! token or the AppRole secret ID. This crate knows nothing of jobs, the engine or HTTP
//! routes; the server chooses it (`--secrets vault`).

mod config;
mod decode;
mod secrets;

pub use config::{
    DEFAULT_APPROLE_MOUNT, DEFAULT_KV_MOUNT, DEFAULT_TIMEOUT, VaultAuth, VaultConfig, VaultError, parse_address,
};
pub use secrets::VaultSecrets;
