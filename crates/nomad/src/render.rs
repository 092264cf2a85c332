//! Rendering: a jobforge run → the Nomad batch job that does it, to the letter of the seed spec
//! (`docs/nomad.md` maps every seed line to the field that carries it).
//!
//! A pure function of the run and the [`RenderConfig`]: nothing here talks to Nomad. Rules that
//! hold for every rendered job:
//! - `Type: batch`, restart attempts 0 and reschedule attempts 0: a failed phase is never run
//!   again behind the engine's back;
//! - `Meta` names the jobforge job, phase and test;
//! - credentials only as Vault `template` stanzas reading a secret *path*, never a value, and
//!   only in the tasks that use them: a test task gets no registry credentials;
//! - user data reaches scripts only as environment variables (the scripts are constants), and
//!   [`encode`]d there, because Nomad interpolates `${...}` in `Env` values; the driver config
//!   holds only constant text and checked image names, with neither `${` nor `%{` in it,
//!   because Nomad evaluates it as an HCL template.

use std::collections::BTreeMap;

use jobforge_core::config::{Resources as JobResources, TestCase};
use jobforge_core::image::{ImageRef, RegistryHost};
use jobforge_core::ports::{BuildWork, PublishWork, RunSpec, RunWork, TestWork};
use jobforge_core::secret::SecretPath;
use jobforge_core::{Phase, RunId};

use crate::job::{
    Constraint, EphemeralDisk, Job, LogConfig, ReschedulePolicy, Resources, RestartPolicy, SECOND_NS, Task, TaskGroup,
    Template, Vault, VolumeMount, VolumeRequest,
};

const DECODE_SCRIPT: &str = include_str!("render/decode.sh");
const BUILD_SCRIPT: &str = include_str!("render/build.sh");
const PUBLISH_SCRIPT: &str = include_str!("render/publish.sh");
const TEST_SCRIPT: &str = include_str!("render/test.sh");

/// The environment variable holding a command test's command, [`encode`]d.
pub const TEST_COMMAND_VAR: &str = "JF_TEST_COMMAND";

/// A script as a task runs it: the shared decoder, then the script.
fn script(body: &str) -> String {
    format!("{DECODE_SCRIPT}{body}")
}

/// A caller's value as it goes into a task's `Env`: with no `$` left for Nomad to interpolate,
/// and on one line. Nomad replaces `${name}` in every `Env` value with its own variables (node
/// attributes, `NOMAD_*`) and has no escape for it in the JSON API; so `\` is written `\\`,
/// `$` `\0044` and a newline `\0012`, the escapes `printf '%b'` turns back into bytes in
/// every POSIX shell. `jf_decode` in `render/decode.sh` does that in the task. One line, so a
/// value can never pass for another variable where the environment is read line by line.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\0044"),
            '\n' => out.push_str("\\0012"),
            c => out.push(c),
        }
    }
    out
}

/// Whether Nomad would rewrite part of `value` in a task's `Env`: its `ReplaceEnv` replaces
/// each match of `\$\{[a-zA-Z0-9_\-\.\[\]]+\}` whose key it knows, and which keys a client
/// knows (node attributes, meta) is not ours to tell, so any match counts.
pub fn nomad_interpolates(value: &str) -> bool {
    let key = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']');
    value.match_indices("${").any(|(at, _)| {
        let rest = &value[at + 2..];
        let len = rest.find(|c: char| !key(c)).unwrap_or(rest.len());
        len > 0 && rest[len..].starts_with('}')
    })
}

/// The user the build runs as, and its subordinate id range (the seed's
/// `user = "build:10000:65536"`), for rootless buildah.
pub const BUILD_USER: &str = "build";
pub const BUILD_ID_RANGE: &str = "build:10000:65536";

/// Meta keys on every rendered job.
pub const META_JOB_ID: &str = "jobforge-job-id";
pub const META_PHASE: &str = "jobforge-phase";
pub const META_TEST_INDEX: &str = "jobforge-test-index";

/// Settings of the Nomad deployment that shape the rendered jobs.
#[derive(Clone, Debug)]
pub struct RenderConfig {
    /// Nomad job IDs are `<prefix>-<run id>`; the prefix is how orphans are found.
    pub prefix: String,
    pub datacenters: Vec<String>,
    pub namespace: Option<String>,
    pub region: Option<String>,
    /// Image of the build and publish tasks.
    pub buildah_image: String,
    /// Name of the client `host_volume` holding the layer cache
    /// (`/opt/nomad/data/buildah-cache` on the clients), mounted at `/var/lib/containers`.
    pub cache_volume: String,
    /// Polite-stop period before the forced kill.
    pub kill_timeout: std::time::Duration,
    pub build_resources: PhaseDefaults,
    pub test_resources: PhaseDefaults,
    pub publish_resources: PhaseDefaults,
    /// Vault workload-identity role of tasks that read secrets.
    pub vault_role: String,
    /// Mount of the KV v2 secrets engine holding jobforge's secret paths.
    pub vault_kv_mount: String,
    /// Registries spoken to over plain http.
    pub insecure_registries: Vec<RegistryHost>,
}

/// CPU (MHz), memory (MB) and disk (MB) of a phase when the job does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseDefaults {
    pub cpu: u32,
    pub memory: u32,
    pub disk: u32,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            prefix: "jobforge".into(),
            datacenters: vec!["dc1".into()],
            namespace: None,
            region: None,
            buildah_image: "quay.io/buildah/stable".into(),
            cache_volume: "buildah-cache".into(),
            kill_timeout: std::time::Duration::from_secs(30),
            build_resources: PhaseDefaults { cpu: 1000, memory: 2048, disk: 10240 },
            test_resources: PhaseDefaults { cpu: 500, memory: 1024, disk: 2048 },
            publish_resources: PhaseDefaults { cpu: 500, memory: 1024, disk: 2048 },
            vault_role: "jobforge".into(),
            vault_kv_mount: "secret".into(),
            insecure_registries: Vec::new(),
        }
    }
}

impl RenderConfig {
    /// The Nomad job ID of a run: `<prefix>-<run id>`.
    pub fn job_id(&self, run: &RunId) -> String {
        format!("{}-{run}", self.prefix)
    }

    /// The run a Nomad job ID belongs to, if it is one of ours.
    pub fn run_id(&self, nomad_job_id: &str) -> Option<RunId> {
        nomad_job_id.strip_prefix(&self.prefix)?.strip_prefix('-')?.parse().ok()
    }

    fn defaults(&self, phase: Phase) -> PhaseDefaults {
        match phase {
            Phase::Build => self.build_resources,
            Phase::Test => self.test_resources,
            Phase::Publish => self.publish_resources,
        }
    }

    fn tls_verify(&self, host: &RegistryHost) -> &'static str {
        if self.insecure_registries.contains(host) { "false" } else { "true" }
    }
}

/// The Nomad job that carries out `run`.
pub fn render(config: &RenderConfig, run: &RunSpec) -> Job {
    let key = run.id.key();
    let task = match &run.work {
        RunWork::Build(work) => build_task(config, work),
        RunWork::Test(work) => test_task(config, work),
        RunWork::Publish(work) => publish_task(config, work),
    };
    let defaults = config.defaults(key.phase);
    let task = Task {
        resources: Some(Resources {
            cpu: to_i32(run.resources.cpu.unwrap_or(defaults.cpu)),
            memory_mb: to_i32(run.resources.memory.unwrap_or(defaults.memory)),
        }),
        kill_timeout: Some(i64::try_from(config.kill_timeout.as_nanos()).unwrap_or(i64::MAX)),
        log_config: Some(LogConfig { max_files: 10, max_file_size_mb: 10 }),
        restart_policy: Some(no_restarts()),
        ..task
    };
    let mut group = TaskGroup {
        name: key.phase.to_string(),
        count: 1,
        restart_policy: Some(no_restarts()),
        reschedule_policy: Some(ReschedulePolicy {
            attempts: 0,
            interval: 0,
            delay: 5 * SECOND_NS,
            delay_function: "constant".into(),
            max_delay: 0,
            unlimited: false,
        }),
        ephemeral_disk: Some(EphemeralDisk { size_mb: to_i32(disk(run.resources, defaults)) }),
        tasks: vec![task],
        ..TaskGroup::default()
    };
    if key.phase == Phase::Build {
        group.volumes.insert(
            config.cache_volume.clone(),
            VolumeRequest {
                name: config.cache_volume.clone(),
                kind: "host".into(),
                source: config.cache_volume.clone(),
                read_only: false,
            },
        );
    }
    if let RunWork::Test(work) = &run.work {
        group.constraints = test_constraints(work);
    }
    let mut meta =
        BTreeMap::from([(META_JOB_ID.to_owned(), key.job.to_string()), (META_PHASE.to_owned(), key.phase.to_string())]);
    if let Some(index) = key.test_index {
        meta.insert(META_TEST_INDEX.to_owned(), index.to_string());
    }
    let id = config.job_id(&run.id);
    Job {
        name: id.clone(),
        id,
        kind: "batch".into(),
        namespace: config.namespace.clone(),
        region: config.region.clone(),
        datacenters: config.datacenters.clone(),
        priority: None,
        meta,
        constraints: Vec::new(),
        task_groups: vec![group],
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn disk(resources: JobResources, defaults: PhaseDefaults) -> u32 {
    resources.disk.unwrap_or(defaults.disk)
}

/// One attempt, and a failure is final (the seed's "agent must resubmit").
fn no_restarts() -> RestartPolicy {
    RestartPolicy { attempts: 0, interval: 24 * 3600 * SECOND_NS, delay: 15 * SECOND_NS, mode: "fail".into() }
}

fn build_task(config: &RenderConfig, work: &BuildWork) -> Task {
    let registry = &work.image.registry;
    let mut env = BTreeMap::from([
        ("BUILDAH_ISOLATION".to_owned(), "chroot".to_owned()),
        ("STORAGE_DRIVER".to_owned(), "overlay".to_owned()),
        // Storage under the mounted layer cache, also when buildah runs rootless.
        ("CONTAINERS_STORAGE_CONF".to_owned(), "/local/storage.conf".to_owned()),
        ("JF_REPO_URL".to_owned(), encode(work.repo_url.as_str())),
        ("JF_GIT_REF".to_owned(), encode(work.git_ref.as_str())),
        ("JF_GIT_REF_IS_COMMIT".to_owned(), work.git_ref.is_commit().to_string()),
        ("JF_DOCKERFILE".to_owned(), encode(work.dockerfile.as_str())),
        ("JF_CONTEXT".to_owned(), encode(work.context.as_str())),
        ("JF_IMAGE".to_owned(), encode(&work.image.to_string())),
        ("JF_REGISTRY".to_owned(), encode(&registry.to_string())),
        ("JF_TLS_VERIFY".to_owned(), config.tls_verify(registry).to_owned()),
        ("JF_NO_CACHE".to_owned(), work.no_cache.to_string()),
        // Checked variable names: nothing in them for Nomad to interpolate.
        ("JF_BUILD_ARG_NAMES".to_owned(), work.build_args.keys().map(|n| n.as_str()).collect::<Vec<_>>().join(" ")),
    ]);
    for (name, value) in &work.build_args {
        env.insert(format!("JF_BUILD_ARG_{name}"), encode(value));
    }
    let mut templates = vec![
        constant_template("local/subuid", &format!("{BUILD_ID_RANGE}\n")),
        constant_template("local/subgid", &format!("{BUILD_ID_RANGE}\n")),
        constant_template("local/storage.conf", STORAGE_CONF),
    ];
    templates.extend(work.git_credentials.as_ref().map(|path| credentials_template(config, path, "git", "JF_GIT")));
    templates.extend(
        work.registry_credentials.as_ref().map(|path| credentials_template(config, path, "registry", "JF_REGISTRY")),
    );
    let mut config_map = buildah_config(config, &script(BUILD_SCRIPT));
    config_map.insert("devices".into(), serde_json::json!([{"host_path": "/dev/fuse", "container_path": "/dev/fuse"}]));
    config_map.insert(
        "mount".into(),
        serde_json::json!([
            {"type": "bind", "source": "local/subuid", "target": "/etc/subuid", "readonly": true},
            {"type": "bind", "source": "local/subgid", "target": "/etc/subgid", "readonly": true},
        ]),
    );
    let vault = needs_vault(&templates).then(|| vault(config));
    Task {
        name: Phase::Build.to_string(),
        driver: "docker".into(),
        user: BUILD_USER.into(),
        config: config_map,
        env,
        templates,
        vault,
        volume_mounts: vec![VolumeMount {
            volume: config.cache_volume.clone(),
            destination: "/var/lib/containers".into(),
            read_only: false,
        }],
        ..Task::default()
    }
}

/// containers/storage settings for the build: the layer cache lives in the host volume, for
/// root and rootless buildah alike.
const STORAGE_CONF: &str = "[storage]\n\
driver = \"overlay\"\n\
graphroot = \"/var/lib/containers/storage\"\n\
runroot = \"/tmp/containers/run\"\n\
rootless_storage_path = \"/var/lib/containers/storage\"\n";

fn test_task(config: &RenderConfig, work: &TestWork) -> Task {
    // The seed's config: the image, and for a command `sh -c`. The command and the job's env
    // go through the encoded environment (see `encode`), decoded by the constant wrapper.
    let mut docker = serde_json::Map::new();
    docker.insert("image".into(), serde_json::Value::String(work.image.to_string()));
    let mut templates: Vec<Template> = Vec::new();
    for (i, secret) in work.vault_secrets.iter().enumerate() {
        let lines: String = secret
            .fields
            .iter()
            .map(|(field, env)| format!("{env}={{{{ index .Data.data \"{field}\" | toJSON }}}}\n"))
            .collect();
        templates.push(vault_template(config, &secret.path, &format!("secrets/vault-{i}.env"), &lines));
    }
    // No registry credentials: the test is the caller's code, and anything in its environment
    // is the caller's to read. The client's docker plugin pulls the temp image with the
    // node's own registry auth (docs/nomad.md).
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    match &work.case {
        TestCase::Command(command) => {
            // A template's variable wins over `Env` in Nomad, and arrives as it is: the
            // wrapper must not decode it.
            let from_templates: Vec<&str> =
                work.vault_secrets.iter().flat_map(|s| s.fields.values()).map(|n| n.as_str()).collect();
            let mut args = vec!["-c".to_owned(), script(TEST_SCRIPT), "sh".to_owned()];
            for (name, value) in &work.env {
                if name.as_str() == TEST_COMMAND_VAR {
                    // Refused at submission (`NomadBackend::unsupported`): the command wins.
                    continue;
                }
                env.insert(name.to_string(), encode(value));
                if !from_templates.contains(&name.as_str()) {
                    args.push(name.to_string());
                }
            }
            env.insert(TEST_COMMAND_VAR.to_owned(), encode(command));
            docker.insert("command".into(), "sh".into());
            docker.insert("args".into(), serde_json::json!(args));
        }
        // No shell to decode anything: the values go as they are, and the backend refuses at
        // submission the ones Nomad would rewrite (`NomadBackend::unsupported`).
        TestCase::EntryPoint => env.extend(work.env.iter().map(|(k, v)| (k.to_string(), v.clone()))),
    }
    if work.gpu_required {
        docker.insert("runtime".into(), "nvidia".into());
        env.entry("NVIDIA_VISIBLE_DEVICES".into()).or_insert_with(|| "all".into());
    }
    let vault = needs_vault(&templates).then(|| vault(config));
    Task {
        name: Phase::Test.to_string(),
        driver: "docker".into(),
        config: docker,
        env,
        templates,
        vault,
        ..Task::default()
    }
}

fn test_constraints(work: &TestWork) -> Vec<Constraint> {
    let mut constraints: Vec<Constraint> = work
        .constraints
        .iter()
        .map(|c| Constraint {
            l_target: c.attribute.clone(),
            r_target: c.value.clone().unwrap_or_default(),
            operand: c.operand.clone(),
        })
        .collect();
    if work.gpu_required {
        constraints.push(Constraint {
            l_target: "${meta.gpu-capable}".into(),
            r_target: "true".into(),
            operand: "=".into(),
        });
    }
    constraints
}

fn publish_task(config: &RenderConfig, work: &PublishWork) -> Task {
    let source_registry = &work.source.registry;
    let target_registry = work.targets.first().map(|t| t.registry.clone()).unwrap_or_else(|| source_registry.clone());
    let env = BTreeMap::from([
        ("BUILDAH_ISOLATION".to_owned(), "chroot".to_owned()),
        ("JF_SOURCE".to_owned(), encode(&work.source.to_string())),
        ("JF_SOURCE_REGISTRY".to_owned(), encode(&source_registry.to_string())),
        ("JF_SOURCE_TLS_VERIFY".to_owned(), config.tls_verify(source_registry).to_owned()),
        ("JF_TARGETS".to_owned(), encode(&work.targets.iter().map(ImageRef::to_string).collect::<Vec<_>>().join(" "))),
        ("JF_TARGET_REGISTRY".to_owned(), encode(&target_registry.to_string())),
        ("JF_TARGET_TLS_VERIFY".to_owned(), config.tls_verify(&target_registry).to_owned()),
    ]);
    let mut templates = Vec::new();
    templates.extend(work.source_credentials.as_ref().map(|p| credentials_template(config, p, "source", "JF_SOURCE")));
    templates.extend(work.target_credentials.as_ref().map(|p| credentials_template(config, p, "target", "JF_TARGET")));
    let vault = needs_vault(&templates).then(|| vault(config));
    Task {
        name: Phase::Publish.to_string(),
        driver: "docker".into(),
        config: buildah_config(config, &script(PUBLISH_SCRIPT)),
        env,
        templates,
        vault,
        ..Task::default()
    }
}

fn buildah_config(config: &RenderConfig, script: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut docker = serde_json::Map::new();
    docker.insert("image".into(), config.buildah_image.clone().into());
    docker.insert("command".into(), "/bin/sh".into());
    docker.insert("args".into(), serde_json::json!(["-c", script]));
    // Rootless buildah maps ids through setuid helpers: privilege escalation must stay allowed.
    docker.insert("security_opt".into(), serde_json::json!(["no-new-privileges:false"]));
    docker
}

fn constant_template(dest: &str, contents: &str) -> Template {
    Template {
        embedded_tmpl: contents.to_owned(),
        dest_path: dest.to_owned(),
        envvars: false,
        change_mode: "noop".into(),
        perms: "0644".into(),
    }
}

/// `<PREFIX>_USERNAME` and `<PREFIX>_PASSWORD` from a secret with `username` and `password`
/// (or `token`) fields, as environment variables of the task.
fn credentials_template(config: &RenderConfig, path: &SecretPath, name: &str, prefix: &str) -> Template {
    let body = format!(
        "{prefix}_USERNAME={{{{ .Data.data.username | toJSON }}}}\n\
         {prefix}_PASSWORD={{{{ or .Data.data.password .Data.data.token | toJSON }}}}\n"
    );
    vault_template(config, path, &format!("secrets/{name}.env"), &body)
}

/// A template reading one KV v2 secret into environment variables. `path` is a checked
/// [`SecretPath`] (`[A-Za-z0-9_.-]` segments), so it cannot break out of the quoted string.
fn vault_template(config: &RenderConfig, path: &SecretPath, dest: &str, body: &str) -> Template {
    Template {
        embedded_tmpl: format!(
            "{{{{ with secret \"{}/data/{path}\" }}}}\n{body}{{{{ end }}}}\n",
            config.vault_kv_mount
        ),
        dest_path: dest.to_owned(),
        envvars: true,
        // A batch task that already started has no use for refreshed credentials.
        change_mode: "noop".into(),
        perms: "0600".into(),
    }
}

fn needs_vault(templates: &[Template]) -> bool {
    templates.iter().any(|t| t.embedded_tmpl.contains("with secret"))
}

fn vault(config: &RenderConfig) -> Vault {
    Vault { role: config.vault_role.clone(), change_mode: "noop".into(), env: false }
}

#[cfg(test)]
mod tests;
