//! The [`Registry`] port: the OCI distribution API, for digests and temp-image deletion.

use async_trait::async_trait;

use crate::image::{Digest, ImageRef};
use crate::secret::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} refused the credentials ({status})")]
    Unauthorized { registry: String, status: u16 },
    #[error("registry {registry} does not allow deleting images (enable storage.delete)")]
    DeleteDisabled { registry: String },
    #[error("registry {registry} answered {status}: {message}")]
    Status { registry: String, status: u16, message: String },
    #[error("registry {registry} unreachable: {message}")]
    Unreachable { registry: String, message: String },
}

/// Reads and deletes manifests.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// The manifest digest `image` resolves to, or `None` if there is no such manifest.
    async fn digest(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<Option<Digest>, RegistryError>;

    /// Delete the manifest `image` points at (resolving a tag to its digest first). Returns
    /// `false` if it was already gone. **Idempotent.**
    async fn delete(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<bool, RegistryError>;
}
