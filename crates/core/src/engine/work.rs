//! What each run of a job must do ([`run_spec`]), and the images a job names: the temp image
//! pinned to its digest, the publish targets, and whose credentials reach the temp registry.
//!
//! Pure functions of the record and the settings; the driver and `jobforge render` share them.

use crate::config::TestCase;
use crate::id::RunKey;
use crate::image::ImageRef;
use crate::ports::{BuildWork, PublishWork, RunSpec, RunWork, TestWork};
use crate::record::JobRecord;
use crate::secret::SecretPath;
use crate::status::Phase;

use super::settings::Settings;

/// What run `key` of `record` must do.
pub fn run_spec(settings: &Settings, record: &JobRecord, key: RunKey) -> RunSpec {
    let spec = &record.spec;
    let temp_creds = temp_credentials(settings, record);
    let work = match key.phase {
        Phase::Build => RunWork::Build(BuildWork {
            repo_url: spec.repo_url.clone(),
            git_ref: spec.git_ref.clone(),
            git_credentials: spec.git_credentials_path.clone(),
            dockerfile: spec.dockerfile_path.clone(),
            context: spec.context.clone(),
            build_args: spec.build_args.clone(),
            no_cache: spec.clear_cache,
            image: record.temp_image.clone(),
            registry_credentials: temp_creds,
        }),
        Phase::Test => {
            let index = key.test_index.unwrap_or_default() as usize;
            RunWork::Test(TestWork {
                image: pinned(record),
                case: spec.tests().get(index).cloned().unwrap_or(TestCase::EntryPoint),
                env: spec.test.env.clone(),
                vault_secrets: spec.test.vault_secrets.clone(),
                registry_credentials: temp_creds,
                constraints: spec.test.constraints.clone(),
                gpu_required: spec.test.gpu_required,
            })
        }
        Phase::Publish => RunWork::Publish(PublishWork {
            source: pinned(record),
            targets: targets(record),
            source_credentials: temp_creds,
            target_credentials: spec.registry_credentials_path.clone(),
        }),
    };
    RunSpec { id: key.id(), work, resources: spec.resources(key.phase) }
}

/// The temp image pinned to the built digest (the tag, if the digest is not known yet).
pub fn pinned(record: &JobRecord) -> ImageRef {
    match &record.image_digest {
        Some(digest) => record.temp_image.with_digest(digest.clone()),
        None => record.temp_image.clone(),
    }
}

/// `<registry_url>/<image_name>:<tag>` for every tag.
pub fn targets(record: &JobRecord) -> Vec<ImageRef> {
    let spec = &record.spec;
    let repository = spec.registry_url.repository(&spec.image_name);
    spec.image_tags
        .iter()
        .map(|tag| ImageRef::tagged(spec.registry_url.host.clone(), repository.clone(), tag.clone()))
        .collect()
}

/// Credentials for the temp registry: the server's when temp images go to a registry of their
/// own, else the job's.
pub fn temp_credentials(settings: &Settings, record: &JobRecord) -> Option<SecretPath> {
    if record.temp_image.registry != record.spec.registry_url.host {
        settings.temp_registry_credentials.clone()
    } else {
        record.spec.registry_credentials_path.clone()
    }
}

/// Every secret whose values may show up in the job's logs, to be masked there.
pub fn masked_secrets(settings: &Settings, record: &JobRecord) -> Vec<SecretPath> {
    let spec = &record.spec;
    let mut paths: Vec<SecretPath> = Vec::new();
    paths.extend(spec.git_credentials_path.clone());
    paths.extend(spec.registry_credentials_path.clone());
    paths.extend(temp_credentials(settings, record));
    paths.extend(spec.test.vault_secrets.iter().map(|s| s.path.clone()));
    paths.sort();
    paths.dedup();
    paths
}
