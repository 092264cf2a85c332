//! [`Settings`]: the server-wide values a job gets where it has none of its own.
//!
//! A job's defaults are written into its spec at submission ([`Settings::resolve`]), so it keeps
//! them whatever the settings become later; only what no spec carries (the publish timeout,
//! the kill grace, the temp registry) is read from the settings of the driver's start.

use crate::config::{JobSpec, ResourceLimits, Resources};
use crate::duration::Duration;
use crate::image::{RegistryHost, Repository};
use crate::secret::SecretPath;
use crate::status::Phase;

/// How long stopped runs get to report their end after the grace period, before the engine
/// gives up on them.
pub const DRAIN_AFTER_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Server-wide settings; a job's own values win where it has them.
#[derive(Clone, Debug)]
pub struct Settings {
    pub build_timeout: Duration,
    pub test_timeout: Duration,
    pub publish_timeout: Duration,
    /// How long a stopped run gets between the polite request and the forced end.
    pub kill_grace: std::time::Duration,
    /// Where temp images go; default: the registry host of the job's `registry_url`.
    pub temp_registry: Option<RegistryHost>,
    /// Credentials for `temp_registry` when it is not the job's registry.
    pub temp_registry_credentials: Option<SecretPath>,
    /// Jobs past PENDING at the same time; more wait in PENDING.
    pub max_active_jobs: usize,
    /// Lines of log kept in a failure's `log_tail`.
    pub log_tail_lines: usize,
    /// Resources of a phase when the job does not say (none: the backend's own defaults).
    pub resources: ResourceLimits,
    /// Temp images are `<registry>/<temp_prefix>/<job id>:latest`.
    pub temp_prefix: Repository,
    /// Whether a secret sent to a host must name its allowed hosts (a service shared by
    /// tokens); otherwise one without them may go to whatever host a job names.
    pub secrets_need_hosts: bool,
    /// Directories whose repositories jobs may name as `file://`; none allows none: a
    /// caller must not make the service read (and publish) files of its own host.
    pub local_repos: Vec<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            build_timeout: Duration::from_mins(30),
            test_timeout: Duration::from_mins(15),
            publish_timeout: Duration::from_mins(15),
            kill_grace: std::time::Duration::from_secs(10),
            temp_registry: None,
            temp_registry_credentials: None,
            max_active_jobs: 4,
            log_tail_lines: 30,
            resources: ResourceLimits::default(),
            temp_prefix: Repository::temp_prefix(),
            secrets_need_hosts: false,
            local_repos: Vec::new(),
        }
    }
}

impl Settings {
    /// Write the server's defaults into the job where it has no value of its own, so the job
    /// keeps them whatever later changes to the settings.
    pub fn resolve(&self, spec: &mut JobSpec) {
        spec.build_timeout.get_or_insert(self.build_timeout);
        spec.test_timeout.get_or_insert(self.test_timeout);
        let defaults = &self.resources;
        let job = spec.resource_limits;
        let merged = |phase: Option<Resources>, default: Option<Resources>| -> Option<Resources> {
            let (phase, default) = (phase.unwrap_or_default(), default.unwrap_or_default());
            let resolved = Resources {
                cpu: phase.cpu.or(job.cpu).or(default.cpu).or(defaults.cpu),
                memory: phase.memory.or(job.memory).or(default.memory).or(defaults.memory),
                disk: phase.disk.or(job.disk).or(default.disk).or(defaults.disk),
            };
            (resolved != Resources::default()).then_some(resolved)
        };
        spec.resource_limits = ResourceLimits {
            build: merged(job.build, defaults.build),
            test: merged(job.test, defaults.test),
            publish: merged(job.publish, defaults.publish),
            ..job
        };
    }

    /// The timeout of `phase` for `spec`: the job's own, else the server's.
    pub fn timeout(&self, spec: &JobSpec, phase: Phase) -> Duration {
        match phase {
            Phase::Build => spec.build_timeout.unwrap_or(self.build_timeout),
            Phase::Test => spec.test_timeout.unwrap_or(self.test_timeout),
            Phase::Publish => self.publish_timeout,
        }
    }
}

impl Settings {
    /// How long after a stop began the engine waits for the stopped runs to report their end.
    pub fn drain(&self) -> std::time::Duration {
        self.kill_grace + DRAIN_AFTER_GRACE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> JobSpec {
        let mut base =
            serde_json::json!({"repo_url": "https://e.com/r.git", "image_name": "a", "registry_url": "r:5000"});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        crate::validate::job_spec(&base).unwrap()
    }

    #[test]
    fn resolving_fills_only_what_the_job_left_open() {
        let settings = Settings {
            build_timeout: Duration::from_mins(40),
            resources: ResourceLimits {
                memory: Some(4096),
                test: Some(Resources { cpu: Some(700), ..Resources::default() }),
                ..ResourceLimits::default()
            },
            ..Settings::default()
        };
        let mut job = spec(serde_json::json!({"test_timeout": "2m", "resource_limits": {"test": {"memory": 512}}}));
        settings.resolve(&mut job);
        assert_eq!(job.build_timeout, Some(Duration::from_mins(40)), "the server's default is written in");
        assert_eq!(job.test_timeout, Some(Duration::from_mins(2)), "the job's own value stays");
        let test = job.resources(Phase::Test);
        assert_eq!((test.cpu, test.memory), (Some(700), Some(512)), "job's test memory, server's test cpu");
        assert_eq!(job.resources(Phase::Build).memory, Some(4096), "the server's global default");

        let mut untouched = spec(serde_json::json!({}));
        Settings::default().resolve(&mut untouched);
        assert_eq!(untouched.resources(Phase::Build), Resources::default(), "no defaults, no limits");
    }
}
