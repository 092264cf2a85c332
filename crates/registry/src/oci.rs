//! [`OciRegistry`]: the [`Registry`] port over the OCI distribution API, and [`RegistryConfig`].
//!
//! It owns what each answer means for an operation: which statuses are "absent", "deleted",
//! "deletes disabled" or a failure, and where a manifest's digest comes from. It must not speak
//! HTTP or authentication itself (that is [`crate::client`]), and it must not hold state between
//! calls: every call stands alone, so calls may run concurrently.

use std::time::Duration;

use async_trait::async_trait;
use jobforge_core::image::{BadName, Digest, ImageRef, Reference, RegistryHost};
use jobforge_core::ports::{Registry, RegistryError};
use jobforge_core::secret::Credentials;
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::client::{self, Access, Client, Request};

/// Every manifest type a reference may resolve to: OCI and Docker v2, images and indexes. Asking
/// for all of them keeps the registry from converting, so the digest is the one stored.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
                               application/vnd.oci.image.manifest.v1+json, \
                               application/vnd.docker.distribution.manifest.list.v2+json, \
                               application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest read when a digest must be computed (distribution's own limit is 4 MiB).
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Hosts spoken to over plain `http://` (the server's `--insecure-registry`); every other
    /// host is spoken to over `https://`.
    pub insecure: Vec<RegistryHost>,
    /// The limit on each HTTP request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// Hosts besides each registry's own whose token realm may receive its credentials (a
    /// registry whose token service lives elsewhere); by default credentials go to the
    /// registry's own host only.
    pub token_realms: Vec<String>,
}

impl Default for RegistryConfig {
    /// No insecure hosts, 30 seconds per request.
    fn default() -> Self {
        RegistryConfig { insecure: Vec::new(), timeout: Duration::from_secs(30), token_realms: Vec::new() }
    }
}

/// The [`Registry`] port over the OCI distribution HTTP API.
///
/// Every call sends one request without credentials first; on a 401 it answers the registry's
/// `WWW-Authenticate` challenge (`Basic` with the given credentials, or `Bearer` with a token from
/// the realm) and sends it once more. Nothing is cached between calls.
#[derive(Clone, Debug)]
pub struct OciRegistry {
    client: Client,
}

impl OciRegistry {
    /// Fails only if the HTTP client cannot be set up (its TLS backend); nothing is contacted.
    pub fn new(config: RegistryConfig) -> Result<OciRegistry, RegistryError> {
        let client = Client::new(config.insecure, config.timeout, config.token_realms).map_err(|err| {
            RegistryError::Unreachable {
                registry: "(any)".to_owned(),
                message: format!("could not set up the HTTP client: {err}"),
            }
        })?;
        Ok(OciRegistry { client })
    }

    /// `GET /v2/`: the host answers as a registry and, when `creds` are given, accepts them.
    ///
    /// Without credentials a 401 counts as reachable (the registry answered; whether it wants
    /// credentials for a given repository shows only there). With credentials anything but
    /// success after answering the challenge is an error: 401/403 `Unauthorized`, others `Status`.
    pub async fn ping(&self, host: &RegistryHost, creds: Option<&Credentials>) -> Result<(), RegistryError> {
        let request =
            Request { host, method: Method::GET, path: "/v2/".to_owned(), accept: None, access: Access::Registry };
        let response = match creds {
            Some(creds) => self.client.send(&request, Some(creds)).await?,
            None => self.client.send_anonymous(&request).await?,
        };
        let status = response.status();
        if status.is_success() || (creds.is_none() && status == StatusCode::UNAUTHORIZED) {
            Ok(())
        } else {
            Err(client::unexpected(host, response).await)
        }
    }

    /// The digest of the manifest at `image`: from `Docker-Content-Digest`, else the reference
    /// itself when it is a digest, else the sha256 of the manifest's exact bytes.
    async fn resolve(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<Option<Digest>, RegistryError> {
        let host = &image.registry;
        let request = manifest_request(image, reference_str(&image.reference), Method::HEAD);
        let response = self.client.send(&request, creds).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(client::unexpected(host, response).await);
        }
        if let Some(digest) = content_digest(&response) {
            return Ok(Some(digest));
        }
        if let Reference::Digest(digest) = &image.reference {
            // The registry found content by this digest; content addressing makes it the answer.
            return Ok(Some(digest.clone()));
        }
        tracing::debug!(%image, "no usable Docker-Content-Digest; reading the manifest to hash it");
        let request = manifest_request(image, reference_str(&image.reference), Method::GET);
        let response = self.client.send(&request, creds).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(client::unexpected(host, response).await);
        }
        let body =
            client::read_limited(response, MANIFEST_LIMIT + 1).await.map_err(|err| client::unreachable(host, &err))?;
        if body.len() > MANIFEST_LIMIT {
            return Err(RegistryError::Status {
                registry: host.to_string(),
                status: status.as_u16(),
                message: format!("the manifest of {image} is larger than {MANIFEST_LIMIT} bytes"),
            });
        }
        let digest = sha256_digest(&body).map_err(|err| RegistryError::Status {
            registry: host.to_string(),
            status: status.as_u16(),
            message: format!("could not form the digest of {image}'s manifest: {err}"),
        })?;
        Ok(Some(digest))
    }
}

#[async_trait]
impl Registry for OciRegistry {
    /// `HEAD /v2/<repo>/manifests/<ref>`; 404 (unknown manifest or repository) is `None`. A
    /// digest reference is checked for existence too.
    async fn digest(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<Option<Digest>, RegistryError> {
        self.resolve(image, creds).await
    }

    /// A tag is resolved to its digest, then `DELETE /v2/<repo>/manifests/<digest>`: 202 is
    /// `true`, 404 `false` (already gone), 405 `DeleteDisabled`, 401/403 `Unauthorized`.
    /// Deleting the manifest also removes every tag that pointed at it.
    async fn delete(&self, image: &ImageRef, creds: Option<&Credentials>) -> Result<bool, RegistryError> {
        let digest = match &image.reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(_) => match self.resolve(image, creds).await? {
                Some(digest) => digest,
                None => return Ok(false),
            },
        };
        let host = &image.registry;
        let request = Request {
            host,
            method: Method::DELETE,
            path: manifest_path(image, digest.as_str()),
            accept: None,
            access: Access::Delete(&image.repository),
        };
        let response = self.client.send(&request, creds).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::METHOD_NOT_ALLOWED => Err(RegistryError::DeleteDisabled { registry: host.to_string() }),
            _ => Err(client::unexpected(host, response).await),
        }
    }
}

fn reference_str(reference: &Reference) -> &str {
    match reference {
        Reference::Tag(tag) => tag.as_str(),
        Reference::Digest(digest) => digest.as_str(),
    }
}

fn manifest_path(image: &ImageRef, reference: &str) -> String {
    format!("/v2/{}/manifests/{reference}", image.repository)
}

fn manifest_request<'a>(image: &'a ImageRef, reference: &str, method: Method) -> Request<'a> {
    Request {
        host: &image.registry,
        method,
        path: manifest_path(image, reference),
        accept: Some(MANIFEST_ACCEPT),
        access: Access::Pull(&image.repository),
    }
}

fn content_digest(response: &reqwest::Response) -> Option<Digest> {
    let value = response.headers().get("Docker-Content-Digest")?.to_str().ok()?;
    value.trim().parse().ok()
}

/// `sha256:` and the hex of the hash: always a well-formed [`Digest`], but `Digest` is built
/// only by parsing.
fn sha256_digest(bytes: &[u8]) -> Result<Digest, BadName> {
    let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}").parse()
}

#[cfg(test)]
mod tests;
