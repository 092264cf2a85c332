//! From a run's work to the shim's steps: a pure function, so what each phase runs can be read
//! (and snapshot-tested) without running anything.
//!
//! User data reaches programs only as separate arguments or environment variables. The one
//! piece of shell text, git's credential helper, is a constant that reads its values from the
//! environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use jobforge_core::config::{EnvName, TestCase};
use jobforge_core::image::{ImageRef, Reference, RegistryHost};
use jobforge_core::ports::{BuildWork, PublishWork, RunSpec, RunWork, TestWork};
use jobforge_core::secret::{Credentials, SecretValue};
use jobforge_core::{JobId, RunId};

use crate::rundir::RunMeta;
use crate::shim::{SecretFile, ShimSpec, Step, Want};
use crate::tools::{TestNetwork, Tools};

/// Git's credential helper: answers `get` from the environment, so the values never appear in
/// an argument list or a file.
const GIT_CREDENTIAL_HELPER: &str = r#"!f() { test "$1" = get || exit 0; printf 'username=%s\npassword=%s\n' "$JOBFORGE_GIT_USERNAME" "$JOBFORGE_GIT_PASSWORD"; }; f"#;

/// Secret values a run needs, already read by the backend.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub git: Option<Credentials>,
    /// Credentials per registry host, for the run's auth file.
    pub registries: BTreeMap<RegistryHost, Credentials>,
    /// Secret environment variables for a test container.
    pub test_env: BTreeMap<EnvName, SecretValue>,
}

impl Resolved {
    /// Every value to mask: each credential, `user:password` as auth headers and files encode
    /// it, and the test's secret variables.
    fn values(&self) -> Vec<SecretValue> {
        let mut values = Vec::new();
        let creds = self.git.iter().chain(self.registries.values());
        for c in creds {
            values.push(c.username.clone());
            values.push(c.password.clone());
            values.push(SecretValue::new(format!("{}:{}", c.username.expose(), c.password.expose())));
        }
        values.extend(self.test_env.values().cloned());
        values
    }
}

/// Where a run lives on disk.
#[derive(Clone, Debug)]
pub struct Places {
    /// The run directory (auth file, digest file).
    pub run_dir: PathBuf,
    /// The job's work directory (the checkout).
    pub work_dir: PathBuf,
    /// The base environment of every step.
    pub env: BTreeMap<String, String>,
    /// CA bundle for git over https, when the server trusts extra CAs.
    pub git_ca_bundle: Option<PathBuf>,
    /// The service's data directory, which no log line shows.
    pub data_dir: PathBuf,
}

impl Places {
    /// The host paths a run's lines mention, and what they show instead: paths inside the
    /// checkout become relative to the repository, the rest a short name. Most specific first.
    fn rewrites(&self, tools: &Tools) -> Vec<(String, String)> {
        let checkout = self.work_dir.join("src");
        let mut rewrites = vec![
            (format!("{}/", checkout.display()), String::new()),
            (checkout.display().to_string(), ".".to_owned()),
            (self.work_dir.display().to_string(), "$WORK".to_owned()),
            (self.run_dir.display().to_string(), "$RUN".to_owned()),
            (tools.storage_root.display().to_string(), "$STORAGE".to_owned()),
            (tools.run_root.display().to_string(), "$RUNROOT".to_owned()),
            (tools.podman_tmp.display().to_string(), "$PODMAN_TMP".to_owned()),
            (self.data_dir.display().to_string(), "$DATA".to_owned()),
        ];
        // Longer paths first, so a path inside another is replaced whole.
        rewrites.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        rewrites.retain(|(path, _)| path.len() > 1);
        rewrites
    }
}

/// What to hand the shim, and what to remember about the run.
pub struct Plan {
    pub spec: ShimSpec,
    pub meta: RunMeta,
}

pub fn plan(tools: &Tools, places: &Places, run: &RunSpec, secrets: &Resolved) -> Plan {
    let mut spec = ShimSpec {
        env: places.env.clone(),
        mask: secrets.values(),
        rewrites: places.rewrites(tools),
        ..ShimSpec::default()
    };
    let mut meta = RunMeta::default();
    let auth_file = auth_file(places, secrets);
    let authfile = auth_file.as_ref().map(|f| f.path.display().to_string());
    spec.files.extend(auth_file);
    spec.steps = match &run.work {
        RunWork::Build(work) => {
            meta.images.push(work.image.to_string());
            build_steps(tools, places, work, authfile.as_deref(), secrets)
        }
        RunWork::Test(work) => {
            let name = container_name(&run.id);
            meta.containers.push(name.clone());
            vec![test_step(tools, &run.id, &name, work, run.resources.memory, authfile.as_deref(), secrets)]
        }
        RunWork::Publish(work) => publish_steps(tools, work, authfile.as_deref()),
    };
    Plan { spec, meta }
}

/// `jobforge-test-<job>-<n>`: findable, and unique per run.
pub fn container_name(run: &RunId) -> String {
    format!("jobforge-{run}")
}

fn auth_file(places: &Places, secrets: &Resolved) -> Option<SecretFile> {
    if secrets.registries.is_empty() {
        return None;
    }
    let auths: serde_json::Map<String, serde_json::Value> = secrets
        .registries
        .iter()
        .map(|(host, c)| {
            let token = STANDARD.encode(format!("{}:{}", c.username.expose(), c.password.expose()));
            (host.to_string(), serde_json::json!({ "auth": token }))
        })
        .collect();
    let contents = SecretValue::new(serde_json::json!({ "auths": auths }).to_string());
    Some(SecretFile { path: places.run_dir.join("auth.json"), contents })
}

fn build_steps(
    tools: &Tools,
    places: &Places,
    work: &BuildWork,
    authfile: Option<&str>,
    secrets: &Resolved,
) -> Vec<Step> {
    let src = places.work_dir.join("src");
    let src_arg = src.display().to_string();
    let git = |args: &[&str]| -> Vec<String> {
        let mut argv = vec![tools.git.clone(), "-C".into(), src_arg.clone()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv
    };
    let mut fetch_prefix: Vec<String> = git(&[]);
    if secrets.git.is_some() {
        fetch_prefix.extend(["-c", "credential.helper=", "-c"].map(String::from));
        fetch_prefix.push(format!("credential.helper={GIT_CREDENTIAL_HELPER}"));
    }
    let git_ref = work.git_ref.as_str();
    let fetch = |args: &[&str]| -> Step {
        let mut argv = fetch_prefix.clone();
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let mut step = Step::exec(argv);
        if let Some(creds) = &secrets.git {
            step = step
                .with_secret_env("JOBFORGE_GIT_USERNAME", &creds.username)
                .with_secret_env("JOBFORGE_GIT_PASSWORD", &creds.password);
        }
        if let Some(bundle) = &places.git_ca_bundle {
            step = step.with_env("GIT_SSL_CAINFO", bundle.display().to_string());
        }
        step
    };
    let shallow = fetch(&["fetch", "--depth", "1", "--no-tags", "origin", git_ref]);
    // A commit id must be checked out by id (FETCH_HEAD is only right after the shallow fetch);
    // servers that refuse to serve an unadvertised commit get a full fetch instead.
    let (fetch_step, checkout) = if work.git_ref.is_commit() {
        (shallow.or_else(vec![fetch(&["fetch", "--no-tags", "origin"])]), git_ref)
    } else {
        // When the ref is not there, the branches the remote does have make the hint.
        (shallow.explained_by(vec![fetch(&["ls-remote", "--heads", "origin"])]), "FETCH_HEAD")
    };
    let inside = |rel: &jobforge_core::config::RelPath| match rel.as_str() {
        "." => src.clone(),
        rel => src.join(rel),
    };
    let dockerfile = inside(&work.dockerfile);
    let context = inside(&work.context);
    let image = work.image.to_string();

    let mut bud: Vec<String> = ["bud", "--isolation", "chroot", "--layers"].map(String::from).to_vec();
    if work.no_cache {
        bud.push("--no-cache".into());
    }
    bud.extend(["--file".into(), dockerfile.display().to_string(), "--tag".into(), image.clone()]);
    for (name, value) in &work.build_args {
        bud.push("--build-arg".into());
        bud.push(format!("{name}={value}"));
    }
    bud.push(context.display().to_string());

    let mut push: Vec<String> = vec!["push".into()];
    push.extend(tools.tls_flag("--tls-verify", &work.image.registry));
    push.extend(authfile.map(|f| format!("--authfile={f}")));
    push.extend(["--digestfile".into(), places.run_dir.join("digest").display().to_string()]);
    push.extend([image.clone(), format!("docker://{image}")]);

    vec![
        Step::exec([tools.git.clone(), "init".into(), "--quiet".into(), src_arg.clone()]),
        Step::exec(git(&["config", "remote.origin.url", work.repo_url.as_str()])),
        fetch_step,
        Step::exec(git(&["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", checkout])),
        Step::check_inside(src.clone(), dockerfile, "dockerfile_path", Want::File),
        Step::check_inside(src, context, "context", Want::Directory),
        Step::exec(tools.buildah(&bud)).with_env("BUILDAH_ISOLATION", "chroot"),
        Step::exec(tools.buildah(&push)),
    ]
}

fn test_step(
    tools: &Tools,
    run: &RunId,
    name: &str,
    work: &TestWork,
    memory_mb: Option<u32>,
    authfile: Option<&str>,
    secrets: &Resolved,
) -> Step {
    let job: JobId = run.job();
    let mut args: Vec<String> = ["run", "--rm", "--quiet", "--init"].map(String::from).to_vec();
    if tools.test_network == TestNetwork::Host {
        args.extend(["--network".into(), "host".into()]);
    }
    args.extend(["--name".into(), name.to_owned()]);
    args.extend(["--label".into(), format!("jobforge.job={job}")]);
    for ulimit in &tools.ulimits {
        args.extend(["--ulimit".into(), ulimit.clone()]);
    }
    args.extend(tools.tls_flag("--tls-verify", &work.image.registry));
    args.extend(authfile.map(|f| format!("--authfile={f}")));
    if let Some(mb) = memory_mb {
        args.push(format!("--memory={mb}m"));
    }
    for (name, value) in &work.env {
        args.extend(["--env".into(), format!("{name}={value}")]);
    }
    // Secret values travel in podman's environment; only their names are arguments.
    for name in secrets.test_env.keys() {
        args.extend(["--env".into(), name.to_string()]);
    }
    args.push(work.image.to_string());
    if let TestCase::Command(command) = &work.case {
        args.extend(["sh".into(), "-c".into(), command.clone()]);
    }
    let mut step = Step::exec(tools.podman(&args));
    for (name, value) in &secrets.test_env {
        step = step.with_secret_env(name.as_str(), value);
    }
    step
}

fn publish_steps(tools: &Tools, work: &PublishWork, authfile: Option<&str>) -> Vec<Step> {
    work.targets
        .iter()
        .map(|target| {
            let mut argv = vec![tools.skopeo.clone(), "copy".into(), "--preserve-digests".into()];
            argv.extend(["--retry-times".into(), "2".into()]);
            argv.extend(tools.tls_flag("--src-tls-verify", &work.source.registry));
            argv.extend(tools.tls_flag("--dest-tls-verify", &target.registry));
            argv.extend(authfile.map(|f| format!("--authfile={f}")));
            argv.push(format!("docker://{}", work.source));
            argv.push(format!("docker://{target}"));
            Step::exec(argv)
        })
        .collect()
}

/// Registry hosts a run talks to, each with the secret path of its credentials.
pub fn registry_credentials(run: &RunSpec) -> Vec<(RegistryHost, jobforge_core::secret::SecretPath)> {
    let mut out = Vec::new();
    let mut add = |image: &ImageRef, path: &Option<jobforge_core::secret::SecretPath>| {
        if let Some(path) = path {
            out.push((image.registry.clone(), path.clone()));
        }
    };
    match &run.work {
        RunWork::Build(work) => add(&work.image, &work.registry_credentials),
        RunWork::Test(work) => add(&work.image, &work.registry_credentials),
        RunWork::Publish(work) => {
            add(&work.source, &work.source_credentials);
            for target in &work.targets {
                add(target, &work.target_credentials);
            }
        }
    }
    out
}

/// Whether an image reference is pinned by digest (tests and publish must be).
pub fn is_pinned(image: &ImageRef) -> bool {
    matches!(image.reference, Reference::Digest(_))
}

/// Paths under the data directory.
pub fn job_work_dir(work_root: &Path, job: JobId) -> PathBuf {
    work_root.join(job.to_string())
}

#[cfg(test)]
mod tests;
