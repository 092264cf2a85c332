//! The [`Secrets`] port: secret values by reference.

use async_trait::async_trait;

use crate::secret::{SecretData, SecretPath};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {0} does not exist")]
    NotFound(SecretPath),
    #[error("secret {path} is unreadable: {message}")]
    Unreadable { path: SecretPath, message: String },
    #[error("secrets store unavailable: {0}")]
    Unavailable(String),
}

/// Resolves secret paths to values. Values only ever live in memory ([`crate::secret::SecretValue`]).
#[async_trait]
pub trait Secrets: Send + Sync + 'static {
    async fn read(&self, path: &SecretPath) -> Result<SecretData, SecretsError>;

    /// Whether `path` exists, reading no values where the store allows it (Vault metadata).
    async fn exists(&self, path: &SecretPath) -> Result<bool, SecretsError>;

    async fn check(&self) -> Result<(), SecretsError>;
}
