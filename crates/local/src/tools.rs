//! How the local backend calls its tools: the global flags that pin buildah and podman to the
//! service's own storage, and which registries are spoken to over plain http.
//!
//! Only argument vectors are built here; nothing is run.

use std::path::PathBuf;

use jobforge_core::image::RegistryHost;

/// Programs and the settings every call to them shares.
#[derive(Clone, Debug)]
pub struct Tools {
    pub git: String,
    pub buildah: String,
    pub podman: String,
    pub skopeo: String,
    /// containers/storage graph root shared by buildah and podman (the layer cache).
    pub storage_root: PathBuf,
    /// containers/storage run root (locks, mount state); on tmpfs where possible.
    pub run_root: PathBuf,
    /// podman's own temporary state (libpod tmpdir).
    pub podman_tmp: PathBuf,
    /// `overlay` or `vfs`; never mix drivers on one storage root.
    pub storage_driver: String,
    /// OCI runtime for podman (`runc`; crun does not work on these machines).
    pub oci_runtime: String,
    /// `--ulimit` values for test containers, below the host's hard limits.
    pub ulimits: Vec<String>,
    /// Registries reached over plain http without TLS verification.
    pub insecure: Vec<RegistryHost>,
    /// The network test containers get.
    pub test_network: TestNetwork,
}

/// The network of test containers: an operator's choice, never a caller's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestNetwork {
    /// Their own network namespace on podman's default network: the outside world, but not
    /// the host's loopback, where this service and its registry listen.
    #[default]
    Private,
    /// The host's network, loopback included.
    Host,
}

impl std::str::FromStr for TestNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "private" => Ok(TestNetwork::Private),
            "host" => Ok(TestNetwork::Host),
            other => Err(format!("unknown test network {other:?} (expected private or host)")),
        }
    }
}

impl Tools {
    /// `buildah` with the global storage flags, then `args`.
    pub fn buildah<S: AsRef<str>>(&self, args: &[S]) -> Vec<String> {
        let mut argv = vec![self.buildah.clone()];
        argv.extend(self.storage_flags());
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        argv
    }

    /// `podman` with the global storage and runtime flags, then `args`.
    pub fn podman<S: AsRef<str>>(&self, args: &[S]) -> Vec<String> {
        let mut argv = vec![self.podman.clone()];
        argv.extend(self.storage_flags());
        argv.extend([
            "--runtime".to_owned(),
            self.oci_runtime.clone(),
            "--tmpdir".to_owned(),
            self.podman_tmp.display().to_string(),
            // No journald here, and we want no dependency on it.
            "--events-backend".to_owned(),
            "file".to_owned(),
        ]);
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        argv
    }

    fn storage_flags(&self) -> [String; 6] {
        [
            "--root".to_owned(),
            self.storage_root.display().to_string(),
            "--runroot".to_owned(),
            self.run_root.display().to_string(),
            "--storage-driver".to_owned(),
            self.storage_driver.clone(),
        ]
    }

    pub fn is_insecure(&self, host: &RegistryHost) -> bool {
        self.insecure.contains(host)
    }

    /// `--tls-verify=false` for an insecure registry, nothing otherwise (verification on).
    pub fn tls_flag(&self, flag: &str, host: &RegistryHost) -> Option<String> {
        self.is_insecure(host).then(|| format!("{flag}=false"))
    }
}
