//! [`VaultSecrets`]: the `Secrets` port on a KV v2 engine, through vaultrs.
//!
//! It owns the Vault session: the token in use, and for AppRole the login, done at
//! [`VaultSecrets::connect`] and again when the token's lease is almost over or Vault refuses it
//! (403), at most once per call. It must not cache secret values (each `read` asks Vault, so a
//! rotated secret is used at once), must not read values to answer `exists` (metadata only),
//! and must not put a value, the token or the secret ID in an error, a log line or a `Debug`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use jobforge_core::ports::{Secrets, SecretsError};
use jobforge_core::secret::{SecretData, SecretPath, SecretValue};
use tokio::sync::RwLock;
use tokio::time::Instant;
use url::Url;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;

use crate::config::{VaultAuth, VaultConfig, VaultError, check_mount};
use crate::decode::{self, Failure};

/// Secrets in Vault's KV v2 engine at `kv_mount`: a `SecretPath` `git/app` is the secret
/// `<kv_mount>/data/git/app`. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct VaultSecrets {
    inner: Arc<Inner>,
}

struct Inner {
    address: Url,
    kv_mount: String,
    approle: Option<AppRole>,
    /// A client without a token, for the health check and AppRole logins: a stale token must
    /// not ride along on a login.
    anonymous: VaultClient,
    session: RwLock<Session>,
}

struct AppRole {
    role_id: String,
    secret_id: SecretValue,
    mount: String,
}

/// The token in use. Replaced whole on each login, so a call holds one consistent client.
struct Session {
    /// `None` until the first AppRole login succeeds.
    client: Option<Arc<VaultClient>>,
    /// Counts logins, so that callers refused at the same time log in only once.
    generation: u64,
    /// When to log in again before using the token: 4/5 of its lease (AppRole only).
    renew_at: Option<Instant>,
}

impl VaultSecrets {
    /// Set up the client and, for AppRole, log in now. A refused login (wrong role or secret
    /// ID) is an error; an unreachable Vault is not, so the service can start while Vault is
    /// down (its readiness then says so): the first call logs in.
    pub async fn connect(config: VaultConfig) -> Result<VaultSecrets, VaultError> {
        check_mount("kv_mount", &config.kv_mount)?;
        let settings = VaultClientSettings {
            address: config.address.clone(),
            // Set every field: vaultrs's builder would fill the rest from VAULT_* variables.
            ca_certs: config.ca_file.iter().map(|path| path.display().to_string()).collect(),
            identity: None,
            timeout: Some(config.timeout),
            token: String::new(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: config.namespace.clone(),
            proxy: None,
        };
        let anonymous = VaultClient::new(settings)
            .map_err(|error| VaultError::Client(decode::describe(&decode::classify(&error))))?;
        let (session, approle) = match config.auth {
            VaultAuth::Token(token) => {
                let client = Some(Arc::new(with_token(&anonymous, token.expose())));
                (Session { client, generation: 0, renew_at: None }, None)
            }
            VaultAuth::AppRole { role_id, secret_id, mount } => {
                check_mount("approle mount", &mount)?;
                (Session { client: None, generation: 0, renew_at: None }, Some(AppRole { role_id, secret_id, mount }))
            }
        };
        let secrets = VaultSecrets {
            inner: Arc::new(Inner {
                address: config.address,
                kv_mount: config.kv_mount,
                approle,
                anonymous,
                session: RwLock::new(session),
            }),
        };
        if let Some(approle) = &secrets.inner.approle {
            match secrets.login(0).await {
                Ok(_) => {}
                Err(Failure::Login { code: Some(code @ 400..=499), message }) => {
                    return Err(VaultError::Login {
                        mount: approle.mount.clone(),
                        message: if message.is_empty() {
                            format!("HTTP {code}")
                        } else {
                            format!("HTTP {code}: {message}")
                        },
                    });
                }
                Err(failure) => tracing::warn!(
                    address = %secrets.inner.address,
                    error = %decode::describe(&failure),
                    "cannot log in to Vault yet; the first secret read will try again"
                ),
            }
        }
        Ok(secrets)
    }

    /// The client to use now, logging in first when there is no token yet or its lease is
    /// almost over; `true` when this call logged in.
    async fn client(&self) -> Result<(Arc<VaultClient>, u64, bool), Failure> {
        let generation = {
            let session = self.inner.session.read().await;
            let due = session.renew_at.is_some_and(|at| Instant::now() >= at);
            match &session.client {
                Some(client) if !due => return Ok((Arc::clone(client), session.generation, false)),
                _ => session.generation,
            }
        };
        let (client, generation) = self.login(generation).await?;
        Ok((client, generation, true))
    }

    /// Log in with AppRole, unless another caller already did since `seen` (then use its token).
    async fn login(&self, seen: u64) -> Result<(Arc<VaultClient>, u64), Failure> {
        let mut session = self.inner.session.write().await;
        if let Some(client) = &session.client
            && (session.generation != seen || self.inner.approle.is_none())
        {
            return Ok((Arc::clone(client), session.generation));
        }
        let Some(approle) = &self.inner.approle else {
            return Err(Failure::Other("no Vault token".into()));
        };
        let auth = vaultrs::auth::approle::login(
            &self.inner.anonymous,
            &approle.mount,
            &approle.role_id,
            approle.secret_id.expose(),
        )
        .await
        .map_err(|error| match decode::classify(&error) {
            Failure::Status { code, message } => Failure::Login { code: Some(code), message },
            other => Failure::Login { code: None, message: decode::describe(&other) },
        })?;
        let client = Arc::new(with_token(&self.inner.anonymous, &auth.client_token));
        session.client = Some(Arc::clone(&client));
        session.generation += 1;
        // A lease of 0 never expires (a root or periodic token without a TTL).
        session.renew_at = (auth.lease_duration > 0)
            .then(|| Instant::now() + std::time::Duration::from_millis(auth.lease_duration * 800));
        tracing::debug!(mount = %approle.mount, lease_seconds = auth.lease_duration, "logged in to Vault with AppRole");
        Ok((client, session.generation))
    }

    /// Run `op` with the current token; when Vault refuses it (403) and AppRole can get
    /// another, log in and run `op` once more. A token this call just got is not replaced: a
    /// fresh token refused means the policy refuses.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let (client, generation, fresh) = self.client().await?;
        match op(client).await.map_err(|error| decode::classify(&error)) {
            Err(failure) if failure.code() == Some(403) && self.inner.approle.is_some() && !fresh => {
                tracing::debug!("Vault refused the token; logging in again with AppRole");
                let (client, _) = self.login(generation).await?;
                op(client).await.map_err(|error| decode::classify(&error))
            }
            result => result,
        }
    }

    /// The error of a failed call on `path`, for `what` (`data` or `metadata`).
    fn error(&self, path: &SecretPath, what: &str, failure: Failure) -> SecretsError {
        let full = format!("{}/{what}/{path}", self.inner.kv_mount);
        let described = decode::describe(&failure);
        match failure {
            // A missing secret or deleted version has no message; "no handler for route" does.
            Failure::Status { code: 404, message } if message.is_empty() => SecretsError::NotFound(path.clone()),
            Failure::Status { code: 404, .. } => SecretsError::Unavailable(format!(
                "Vault at {} (reading {full}): {described}; is a KV v2 engine mounted at {}?",
                self.inner.address, self.inner.kv_mount
            )),
            Failure::Status { code: 403, .. } => SecretsError::Unreadable {
                path: path.clone(),
                message: format!("Vault refused to read {full} ({described}); the token's policy needs read on it"),
            },
            Failure::Status { code: 500..=599, .. } | Failure::Transport(_) | Failure::Login { .. } => {
                SecretsError::Unavailable(format!("Vault at {} (reading {full}): {described}", self.inner.address))
            }
            Failure::Status { .. } | Failure::Other(_) => {
                SecretsError::Unreadable { path: path.clone(), message: format!("reading {full}: {described}") }
            }
        }
    }
}

/// A client like `base` that sends `token`: same HTTP connection pool, TLS and namespace.
fn with_token(base: &VaultClient, token: &str) -> VaultClient {
    let mut client = VaultClient {
        http: rustify::clients::reqwest::Client::new(&base.http.base, base.http.http.clone()),
        middle: base.middle.clone(),
        settings: base.settings.clone(),
    };
    client.set_token(token);
    client
}

#[async_trait]
impl Secrets for VaultSecrets {
    async fn read(&self, path: &SecretPath) -> Result<SecretData, SecretsError> {
        let mount = self.inner.kv_mount.as_str();
        let data = self
            .call(|client| async move {
                vaultrs::kv2::read::<serde_json::Value>(client.as_ref(), mount, path.as_str()).await
            })
            .await
            .map_err(|failure| self.error(path, "data", failure))?;
        decode::secret_data(data).map_err(|message| SecretsError::Unreadable { path: path.clone(), message })
    }

    async fn exists(&self, path: &SecretPath) -> Result<bool, SecretsError> {
        let mount = self.inner.kv_mount.as_str();
        let metadata = self
            .call(|client| async move { vaultrs::kv2::read_metadata(client.as_ref(), mount, path.as_str()).await })
            .await;
        match metadata {
            Ok(metadata) => Ok(decode::current_version_is_live(&metadata, chrono::Utc::now())),
            Err(Failure::Status { code: 404, message }) if message.is_empty() => Ok(false),
            Err(failure) => Err(self.error(path, "metadata", failure)),
        }
    }

    /// Vault's health (unsealed, initialized), and for AppRole a token: a service whose login
    /// is refused is not ready, though Vault itself answers.
    async fn check(&self) -> Result<(), SecretsError> {
        let unavailable =
            |message: String| SecretsError::Unavailable(format!("Vault at {}: {message}", self.inner.address));
        let url = format!(
            "{}/v1/sys/health?standbyok=true&perfstandbyok=true",
            self.inner.address.as_str().trim_end_matches('/')
        );
        let response = self
            .inner
            .anonymous
            .http
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| unavailable(decode::error_chain(&error)))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        decode::health(status, &body).map_err(unavailable)?;
        if self.inner.approle.is_some() {
            self.client().await.map_err(|failure| unavailable(decode::describe(&failure)))?;
        }
        Ok(())
    }
}

impl fmt::Debug for VaultSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSecrets")
            .field("address", &self.inner.address.as_str())
            .field("kv_mount", &self.inner.kv_mount)
            .field("auth", &if self.inner.approle.is_some() { "approle" } else { "token" })
            .finish_non_exhaustive()
    }
}
