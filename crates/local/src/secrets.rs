//! [`FileSecrets`]: the embedded `Secrets` port, a JSON file (mode 0600) in the data directory
//! mapping secret paths to their fields, written with `jobforge secret put`.
//!
//! The file is read on every access, so a `put` takes effect without a restart. Writes replace
//! the file atomically under an advisory lock. Values leave this module only as `SecretValue`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use jobforge_core::ports::{Secrets, SecretsError};
use jobforge_core::secret::{SecretData, SecretPath, SecretValue};

use crate::rundir::create_locked;

type Contents = BTreeMap<String, BTreeMap<String, String>>;

/// Secrets in one file.
#[derive(Clone, Debug)]
pub struct FileSecrets {
    path: PathBuf,
}

impl FileSecrets {
    pub fn new(path: PathBuf) -> Self {
        FileSecrets { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store `fields` at `path`, replacing what was there.
    pub fn put(&self, path: &SecretPath, fields: BTreeMap<String, String>) -> io::Result<()> {
        self.modify(|contents| {
            contents.insert(path.to_string(), fields);
        })
    }

    /// Remove the secret at `path`; `false` if there was none.
    pub fn delete(&self, path: &SecretPath) -> io::Result<bool> {
        let mut found = false;
        self.modify(|contents| found = contents.remove(path.as_str()).is_some())?;
        Ok(found)
    }

    /// Every secret path with its field names (never values).
    pub fn list(&self) -> io::Result<BTreeMap<String, Vec<String>>> {
        Ok(self.load()?.into_iter().map(|(path, fields)| (path, fields.into_keys().collect())).collect())
    }

    fn modify(&self, change: impl FnOnce(&mut Contents)) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            // A directory made here holds secrets: this user's only.
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let _guard = lock_waiting(&self.path.with_extension("lock"))?;
        let mut contents = self.load()?;
        change(&mut contents);
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
            // An existing tmp file keeps its old mode; make sure it is private.
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.write_all(&serde_json::to_vec_pretty(&contents).map_err(io::Error::other)?)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)
    }

    fn load(&self) -> io::Result<Contents> {
        match fs::read(&self.path) {
            Ok(bytes) if bytes.is_empty() => Ok(Contents::new()),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.path.display()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Contents::new()),
            Err(err) => Err(err),
        }
    }

    fn read_sync(&self, path: &SecretPath) -> Result<SecretData, SecretsError> {
        let contents = self.load().map_err(|e| SecretsError::Unavailable(e.to_string()))?;
        let fields = contents.get(path.as_str()).ok_or_else(|| SecretsError::NotFound(path.clone()))?;
        Ok(SecretData(fields.iter().map(|(k, v)| (k.clone(), SecretValue::new(v.clone()))).collect()))
    }
}

fn lock_waiting(path: &Path) -> io::Result<fs::File> {
    // Writers are a person typing `jobforge secret put`; waiting briefly for another is fine.
    for _ in 0..100 {
        match create_locked(path) {
            Ok(file) => return Ok(file),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(io::ErrorKind::WouldBlock, "the secrets file is locked by another writer"))
}

#[async_trait]
impl Secrets for FileSecrets {
    async fn read(&self, path: &SecretPath) -> Result<SecretData, SecretsError> {
        self.read_sync(path)
    }

    async fn exists(&self, path: &SecretPath) -> Result<bool, SecretsError> {
        match self.read_sync(path) {
            Ok(_) => Ok(true),
            Err(SecretsError::NotFound(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn check(&self) -> Result<(), SecretsError> {
        self.load().map(|_| ()).map_err(|e| SecretsError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_read_delete() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = FileSecrets::new(dir.path().join("secrets.json"));
        let path: SecretPath = "git/app".parse().unwrap();
        assert!(!secrets.exists(&path).await.unwrap());
        secrets
            .put(&path, BTreeMap::from([("username".into(), "bob".into()), ("password".into(), "pw1".into())]))
            .unwrap();
        let data = secrets.read(&path).await.unwrap();
        assert_eq!(data.get("password").unwrap().expose(), "pw1");
        let mode = fs::metadata(secrets.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(secrets.list().unwrap()["git/app"], ["password", "username"]);
        assert!(secrets.delete(&path).unwrap());
        assert!(matches!(secrets.read(&path).await, Err(SecretsError::NotFound(_))));
    }
}
