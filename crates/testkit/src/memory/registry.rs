//! [`MemoryRegistry`]: manifests by repository, tags pointing at digests. The in-memory backend
//! pushes the builds and copies the publishes here; the engine reads digests and deletes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use jobforge_core::image::{Digest, ImageRef, Reference};
use jobforge_core::ports::{Registry, RegistryError};
use jobforge_core::secret::Credentials;

#[derive(Default)]
pub struct MemoryRegistry {
    repos: Mutex<BTreeMap<String, Repo>>,
}

#[derive(Default, Clone)]
struct Repo {
    manifests: BTreeSet<String>,
    tags: BTreeMap<String, String>,
}

impl MemoryRegistry {
    fn repos(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Repo>> {
        self.repos.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Store manifest `digest` in `image`'s repository, under its tag if it has one.
    pub fn push(&self, image: &ImageRef, digest: &Digest) {
        let mut repos = self.repos();
        let repo = repos.entry(image.name()).or_default();
        repo.manifests.insert(digest.to_string());
        if let Reference::Tag(tag) = &image.reference {
            repo.tags.insert(tag.to_string(), digest.to_string());
        }
    }

    /// Whether the manifest `source` points at exists.
    pub fn resolve(&self, image: &ImageRef) -> Option<Digest> {
        let repos = self.repos();
        let repo = repos.get(&image.name())?;
        let digest = match &image.reference {
            Reference::Tag(tag) => repo.tags.get(tag.as_str())?.clone(),
            Reference::Digest(digest) => repo.manifests.get(digest.as_str())?.clone(),
        };
        digest.parse().ok()
    }

    /// Every `repository:tag` and `repository@digest` held, for tests to check.
    pub fn contents(&self) -> Vec<String> {
        let repos = self.repos();
        let mut out = Vec::new();
        for (name, repo) in repos.iter() {
            out.extend(repo.tags.keys().map(|tag| format!("{name}:{tag}")));
            out.extend(repo.manifests.iter().map(|digest| format!("{name}@{digest}")));
        }
        out
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn digest(&self, image: &ImageRef, _creds: Option<&Credentials>) -> Result<Option<Digest>, RegistryError> {
        Ok(self.resolve(image))
    }

    async fn delete(&self, image: &ImageRef, _creds: Option<&Credentials>) -> Result<bool, RegistryError> {
        let Some(digest) = self.resolve(image) else { return Ok(false) };
        let mut repos = self.repos();
        let Some(repo) = repos.get_mut(&image.name()) else { return Ok(false) };
        repo.manifests.remove(digest.as_str());
        repo.tags.retain(|_, points_at| points_at != digest.as_str());
        if repo.manifests.is_empty() {
            repos.remove(&image.name());
        }
        Ok(true)
    }
}
