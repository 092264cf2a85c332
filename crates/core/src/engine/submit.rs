//! Accepting a job: what this deployment refuses (unsupported fields, secrets that do not
//! exist), the server's defaults written into the spec, the ownership lock taken, the record
//! stored, the driver started.

use super::{Engine, Event, Inner, SubmitError, temp_image};
use crate::config::JobSpec;
use crate::id::JobId;
use crate::image::Tag;
use crate::ports::LockKey;
use crate::ports::SecretsError;
use crate::record::JobRecord;
use crate::secret::{ALLOWED_HOSTS, AllowedHost, SecretData, SecretPath};
use crate::validate::Problem;

impl Engine {
    /// Accept a validated job: persist it as PENDING and start its driver.
    pub async fn submit(&self, mut spec: JobSpec) -> Result<JobRecord, SubmitError> {
        let ports = &self.inner.ports;
        let mut unsupported = ports.backend.unsupported(&spec);
        if spec.webhook.is_some() {
            // Accepting a webhook and never calling it would be worse than refusing it.
            unsupported.push(Problem::new("webhook_url", "webhook delivery is not available in this version"));
        }
        if !unsupported.is_empty() {
            return Err(SubmitError::Unsupported(unsupported));
        }
        let settings = self.settings();
        let refused: Vec<Problem> =
            [local_repo_refused(&spec, &settings.local_repos), temp_name_refused(&spec, &settings)]
                .into_iter()
                .flatten()
                .collect();
        if !refused.is_empty() {
            return Err(SubmitError::Unsupported(refused));
        }
        self.check_secrets(&spec, settings.secrets_need_hosts).await?;
        settings.resolve(&mut spec);
        let id = JobId::new();
        if spec.image_tags.is_empty() {
            spec.image_tags.push(Tag::from(id));
        }
        let temp_image = temp_image(&settings, &spec, id);
        let record = JobRecord::new(id, spec, temp_image, ports.clock.now());
        if let Some(problem) = ports.records.value_limit().and_then(|limit| too_large(&record, limit)) {
            return Err(SubmitError::Unsupported(vec![problem]));
        }
        // Lock, then insert: once the job is in the store, other replicas may try to take it
        // over, and it must be ours by then. (No one else knows the new id, so the lock is free
        // unless the lock store cannot be reached.)
        let key = LockKey::owner(id);
        let _accepting = Accepting::new(&self.inner, id);
        let owned = match ports.locks.try_lock(&key, id).await {
            Ok(owned) => owned,
            Err(err) => {
                tracing::warn!(job_id = %id, error = %err, "cannot take the ownership lock of a new job");
                false
            }
        };
        if let Err(err) = ports.records.insert(&record).await {
            if owned && let Err(unlock) = ports.locks.unlock(&key, id).await {
                tracing::warn!(job_id = %id, error = %unlock, "cannot give back the ownership lock of a job not stored");
            }
            return Err(err.into());
        }
        if !owned {
            // Stored: taken over when the locks next change hands.
            return Ok(record);
        }
        tracing::info!(job_id = %id, image = %record.spec.image_name, "job submitted");
        self.spawn_driver(record.clone(), Event::Resumed);
        Ok(record)
    }

    /// Every secret the job names exists, and each one jobforge sends to a host (git and
    /// registry credentials) names that host among its allowed ones.
    async fn check_secrets(&self, spec: &JobSpec, need_hosts: bool) -> Result<(), SubmitError> {
        let (mut missing, mut misplaced) = (Vec::new(), Vec::new());
        for (field, path) in spec.secret_refs() {
            let Some((host, port, whose)) = destination(spec, &field) else {
                // Test secrets go into the test's environment, to no host of ours.
                if !self.inner.ports.secrets.exists(path).await? {
                    missing.push(Problem::new(field, format!("secret {path} does not exist")));
                }
                continue;
            };
            let data = match self.inner.ports.secrets.read(path).await {
                Ok(data) => data,
                Err(SecretsError::NotFound(_)) => {
                    missing.push(Problem::new(field, format!("secret {path} does not exist")));
                    continue;
                }
                Err(other) => return Err(other.into()),
            };
            if let Some(why) = misplaced_secret(path, &data, &host, port, whose, need_hosts) {
                misplaced.push(Problem::new(field, why));
            }
        }
        if !missing.is_empty() {
            return Err(SubmitError::MissingSecrets(missing));
        }
        if misplaced.is_empty() { Ok(()) } else { Err(SubmitError::MisplacedSecrets(misplaced)) }
    }
}

/// Why a `file://` repository may not be used, if it may not: it must lie under one of the
/// directories the operator allowed, compared component by component (the URL's `..` are
/// already resolved when it is parsed). Symbolic links are not followed: this crate reads no
/// files, and what lies in an allowed directory is the operator's.
fn local_repo_refused(spec: &JobSpec, allowed: &[std::path::PathBuf]) -> Option<Problem> {
    let path = spec.repo_url.file_path()?;
    let inside = allowed.iter().any(|dir| path.starts_with(dir));
    let message = match allowed {
        _ if inside => return None,
        [] => "is a file:// repository, which this service does not accept (an operator allows directories \
               with --allow-local-repos)"
            .to_owned(),
        dirs => {
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!("is a file:// repository outside the directories this service accepts ({})", dirs.join(", "))
        }
    };
    Some(Problem::new("repo_url", message))
}

/// A job whose record, as submitted, takes more than a quarter of the store's value limit: its
/// results (tests, timings, a failure's quotes) must still fit later. Names the largest field.
fn too_large(record: &JobRecord, limit: usize) -> Option<Problem> {
    let bytes = serde_json::to_vec(record).map_or(usize::MAX, |b| b.len());
    if bytes <= limit / 4 {
        return None;
    }
    let spec = serde_json::to_value(&record.spec).ok();
    let largest = spec.as_ref().and_then(|v| v.as_object()).and_then(|fields| {
        fields.iter().max_by_key(|(_, value)| value.to_string().len()).map(|(name, _)| name.clone())
    });
    Some(Problem::new(
        largest.unwrap_or_else(|| "body".into()),
        format!("makes the job {bytes} bytes; this service's store keeps jobs of up to {} bytes", limit / 4),
    ))
}

/// A job may not publish under the temp prefix: a push there could replace another job's
/// image between its build and its tests.
fn temp_name_refused(spec: &JobSpec, settings: &super::Settings) -> Option<Problem> {
    let published = spec.registry_url.repository(&spec.image_name);
    let prefix = settings.temp_prefix.as_str();
    let under = published.as_str() == prefix || published.as_str().starts_with(&format!("{prefix}/"));
    under.then(|| {
        Problem::new(
            "image_name",
            format!("publishes to {published}, under {prefix}/, where this service keeps the images it is testing"),
        )
    })
}

/// Where the secret named by `field` is sent: host, port, and the field that names the host.
fn destination(spec: &JobSpec, field: &str) -> Option<(String, Option<u16>, &'static str)> {
    match field {
        "git_credentials_path" => spec.repo_url.host().map(|(host, port)| (host, port, "repo_url")),
        "registry_credentials_path" => {
            let registry: AllowedHost = spec.registry_url.host.as_str().parse().ok()?;
            Some((registry.host().to_owned(), registry.port(), "registry_url"))
        }
        _ => None,
    }
}

/// Why the secret may not go to `host`, if it may not.
fn misplaced_secret(
    path: &SecretPath,
    data: &SecretData,
    host: &str,
    port: Option<u16>,
    whose: &str,
    need_hosts: bool,
) -> Option<String> {
    let target = match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    match data.allowed_hosts() {
        Err(bad) => Some(format!("secret {path} has an {ALLOWED_HOSTS} field that is not valid: {bad}")),
        Ok(None) if need_hosts => Some(format!(
            "secret {path} names no {ALLOWED_HOSTS}: on a service with tokens a secret must say which hosts it may be \
             sent to (jobforge secret put ... --host {target})"
        )),
        Ok(None) => None,
        Ok(Some(hosts)) if hosts.iter().any(|allowed| allowed.allows(host, port)) => None,
        Ok(Some(hosts)) => {
            let allowed: Vec<String> = hosts.iter().map(ToString::to_string).collect();
            Some(format!(
                "secret {path} may be sent to {} only, not to {target} (the host of {whose})",
                allowed.join(", ")
            ))
        }
    }
}

/// Marks a job as being accepted by this instance for as long as it lives.
struct Accepting<'a> {
    inner: &'a Inner,
    id: JobId,
}

impl<'a> Accepting<'a> {
    fn new(inner: &'a Inner, id: JobId) -> Self {
        inner.accepting.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        Accepting { inner, id }
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.inner.accepting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}
