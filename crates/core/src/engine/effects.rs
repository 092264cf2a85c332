//! Carrying out the effects that are not about runs: reading the built digest, checking what
//! publishing left in the registry, removing a finished job's leftovers, gathering what a
//! failure's diagnosis reads, and reading the secrets a job's logs must mask.
//!
//! Each function does its IO and reports what it found as an [`Event`] (or a value), never
//! deciding what that means for the job: that is `step`'s part.

use crate::diagnose::{self, Diagnosis, Evidence};
use crate::failure::Cause;
use crate::logs::LogLine;
use crate::mask::Masker;
use crate::record::{JobRecord, TestStatus};
use crate::secret::{Credentials, SecretPath, SecretValue};
use crate::state::{CleanupReport, Leftover};
use crate::status::Phase;

use super::Ports;
use super::settings::Settings;
use super::step::Event;
use super::work::{masked_secrets, pinned, targets, temp_credentials};

/// After a build: the digest it pushed, as the build reported it; where the backend cannot
/// say, what the registry holds for the temp image.
pub(super) async fn resolve_digest(ports: &Ports, settings: &Settings, record: &JobRecord) -> Event {
    match ports.backend.built_digest(record.id).await {
        Ok(Some(digest)) => {
            tracing::info!(%digest, "built");
            return Event::DigestResolved { digest: Ok(digest) };
        }
        Ok(None) => tracing::debug!("the backend does not report the built digest; reading the temp tag"),
        Err(err) => {
            return Event::DigestResolved {
                digest: Err(format!("could not read the digest the build reported: {err}")),
            };
        }
    }
    let creds = read_credentials(ports, &temp_credentials(settings, record)).await;
    let digest = match ports.registry.digest(&record.temp_image, creds.as_ref()).await {
        Ok(Some(digest)) => {
            tracing::info!(%digest, "built");
            Ok(digest)
        }
        Ok(None) => Err(format!("the build finished but {} is not in the registry", record.temp_image)),
        Err(err) => Err(format!("could not read the built image's digest: {err}")),
    };
    Event::DigestResolved { digest }
}

/// After publishing (or a kill during it): which targets hold the tested digest.
pub(super) async fn check_published(ports: &Ports, record: &JobRecord) -> Event {
    let creds = read_credentials(ports, &record.spec.registry_credentials_path).await;
    let expected = record.image_digest.clone();
    let mut confirmed = Vec::new();
    let mut problem = None;
    for target in targets(record) {
        match ports.registry.digest(&target, creds.as_ref()).await {
            Ok(Some(digest)) if Some(&digest) == expected.as_ref() => confirmed.push(target),
            Ok(Some(digest)) => {
                let tested = expected.as_ref().map_or_else(|| "digest (unknown)".to_owned(), ToString::to_string);
                problem.get_or_insert(format!("{target} holds {digest}, not the tested {tested}"));
            }
            Ok(None) => {
                problem.get_or_insert(format!("{target} is missing after publishing"));
            }
            Err(err) => {
                problem.get_or_insert(format!("could not check {target}: {err}"));
            }
        }
    }
    Event::PublishChecked { confirmed, problem }
}

/// Delete the temp image and the backend's leftovers of a finished job, saying what was
/// removed and what could not be.
pub(super) async fn remove_leftovers(ports: &Ports, settings: &Settings, record: &JobRecord) -> CleanupReport {
    let mut report = CleanupReport::default();
    let creds = read_credentials(ports, &temp_credentials(settings, record)).await;
    let temp = pinned(record);
    let what = format!("temp image {}", record.temp_image);
    match ports.registry.delete(&temp, creds.as_ref()).await {
        Ok(true) => report.removed.push(what),
        // Never pushed, or deleted already: nothing remains.
        Ok(false) => {}
        Err(err) => {
            tracing::warn!(error = %err, image = %temp, "could not delete the temp image");
            report.remaining.push(Leftover { what, why: err.to_string() });
        }
    }
    match ports.backend.cleanup(record.id).await {
        Ok(backend) => report.merge(backend),
        Err(err) => {
            tracing::warn!(error = %err, "could not clean up backend runs");
            report.remaining.push(Leftover { what: format!("{} runs", ports.backend.name()), why: err.to_string() });
        }
    }
    tracing::info!(removed = ?report.removed, remaining = ?report.remaining, "removed what the job left behind");
    report
}

/// How many of a failed build's (test's) lines the diagnosis reads, from the end.
const DIAGNOSED_LINES: usize = 4000;
/// Failed tests beyond this many get no excerpt of their own (the record stays small).
const EXCERPTED_TESTS: usize = 20;

/// What the failure of the ending job means: the failing run's lines and, for a build, the
/// checkout, read before cleanup removes them; and the excerpt of every failed test.
pub(super) async fn diagnose(
    ports: &Ports,
    settings: &Settings,
    record: &JobRecord,
) -> (Diagnosis, Vec<(u32, Vec<String>)>) {
    let Some(failure) = record.failure() else {
        return (Diagnosis::new(Cause::Infrastructure), Vec::new());
    };
    let lines = read_lines(ports, record, failure.phase, failure.test, DIAGNOSED_LINES).await;
    let checkout = match failure.phase {
        Phase::Build => ports.backend.checkout(record.id, &record.spec.dockerfile_path).await,
        Phase::Test | Phase::Publish => None,
    };
    let spec = &record.spec;
    let evidence = Evidence {
        failure,
        lines: &lines,
        checkout: checkout.as_ref(),
        dockerfile_path: spec.dockerfile_path.as_str(),
        context: spec.context.as_str(),
        git_credentials: spec.git_credentials_path.is_some(),
        registry_credentials: spec.registry_credentials_path.is_some(),
        tail_lines: settings.log_tail_lines,
    };
    let diagnosis = diagnose::diagnose(&evidence);
    tracing::info!(cause = %diagnosis.cause, retryable = diagnosis.retryable, "diagnosed the failure");
    let mut tests = Vec::new();
    for test in record.tests.iter().filter(|t| t.status == TestStatus::Failed).take(EXCERPTED_TESTS) {
        let lines = read_lines(ports, record, Phase::Test, Some(test.index), diagnose::EXCERPT_LINES * 2).await;
        tests.push((test.index, diagnose::test_excerpt(&lines)));
    }
    (diagnosis, tests)
}

async fn read_lines(ports: &Ports, record: &JobRecord, phase: Phase, test: Option<u32>, n: usize) -> Vec<LogLine> {
    ports.archive.tail(record.id, phase, test, n).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "could not read the failing run's lines");
        Vec::new()
    })
}

/// The masker for the job's secrets. A secret that cannot be read fails the job: its value
/// could not be masked.
pub(super) async fn masker(ports: &Ports, settings: &Settings, record: &JobRecord) -> Result<Masker, String> {
    let mut values: Vec<SecretValue> = Vec::new();
    for path in masked_secrets(settings, record) {
        let data = ports.secrets.read(&path).await.map_err(|err| format!("could not read secret {path}: {err}"))?;
        values.extend(data.values().cloned());
        // `user:password` is what Basic auth headers and auth files encode.
        if let (Some(user), Some(pass)) = (data.get("username"), data.get("password").or(data.get("token"))) {
            values.push(SecretValue::new(format!("{}:{}", user.expose(), pass.expose())));
        }
    }
    Ok(Masker::new(&values))
}

async fn read_credentials(ports: &Ports, path: &Option<SecretPath>) -> Option<Credentials> {
    let path = path.as_ref()?;
    match ports.secrets.read(path).await {
        Ok(data) => match Credentials::from_secret(path, &data) {
            Ok(creds) => Some(creds),
            Err(message) => {
                tracing::warn!(%message, "unusable registry credentials");
                None
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "could not read registry credentials");
            None
        }
    }
}
