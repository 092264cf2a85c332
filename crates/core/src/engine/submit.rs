//! Accepting a job: what this deployment refuses (unsupported fields, secrets that do not
//! exist), the server's defaults written into the spec, the ownership lock taken, the record
//! stored, the driver started.

use super::{Engine, Event, Inner, SubmitError, temp_image};
use crate::config::JobSpec;
use crate::id::JobId;
use crate::image::Tag;
use crate::ports::LockKey;
use crate::record::JobRecord;
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
        self.check_secrets_exist(&spec).await?;
        let settings = self.settings();
        settings.resolve(&mut spec);
        let id = JobId::new();
        if spec.image_tags.is_empty() {
            spec.image_tags.push(Tag::from(id));
        }
        let temp_image = temp_image(&settings, &spec, id);
        let record = JobRecord::new(id, spec, temp_image, ports.clock.now());
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

    async fn check_secrets_exist(&self, spec: &JobSpec) -> Result<(), SubmitError> {
        let mut problems = Vec::new();
        for (field, path) in spec.secret_refs() {
            if !self.inner.ports.secrets.exists(path).await? {
                problems.push(Problem::new(field, format!("secret {path} does not exist")));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(SubmitError::MissingSecrets(problems)) }
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
