//! Command-line arguments. Every `serve` setting has a flag, an environment variable and a
//! default; the same settings may also come from `--config FILE` (below environment and flags).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use jobforge_core::Duration;
use jobforge_core::image::RegistryHost;
use jobforge_core::secret::SecretPath;
use jobforge_core::{JobId, Phase};

/// jobforge: build an image from a git repository, test exactly that image, and publish it
/// only if every test passed.
#[derive(Debug, Parser)]
#[command(name = "jobforge", version, max_term_width = 100)]
pub struct Cli {
    /// The jobforge service to talk to.
    #[arg(long, global = true, env = "JOB_SERVICE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,

    /// The token to call the service with, where it wants one (`jobforge token new`).
    #[arg(long, global = true, env = "JOBFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The original CLI's single-dash `-global FILE` (and `-global=FILE`), as `--global`.
pub fn original_spellings(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|arg| match arg.to_str() {
            Some("-global") => "--global".into(),
            Some(text) if text.starts_with("-global=") => format!("-{text}").into(),
            _ => arg,
        })
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),

    /// Submit a job: a YAML or JSON file, `-` or nothing for stdin, or the YAML itself.
    #[command(alias = "submit-job")]
    Submit {
        /// The job config: a file, `-` for stdin, or inline YAML (`'image_name: app ...'`).
        config: Option<String>,
        /// A config the job's own is merged onto: maps key by key, lists and values replaced
        /// (an explicit `false` wins over `true`). `-global FILE` works too.
        #[arg(long, value_name = "FILE")]
        global: Option<PathBuf>,
        /// More tags to publish under, added to the config's `image_tags`: `--image-tags v1,latest`.
        #[arg(long, value_delimiter = ',', value_name = "TAGS")]
        image_tags: Vec<String>,
        /// Follow the job to its end: phases, tests, logs, and why it failed. Exits 0 only on
        /// SUCCEEDED.
        #[arg(long, short)]
        watch: bool,
    },

    /// Show a job's status.
    #[command(alias = "get-status")]
    Status { id: JobId },

    /// Show a job's logs.
    #[command(alias = "get-logs")]
    Logs {
        id: JobId,
        /// Only this phase (also accepted after the id, as `get-logs <id> build`).
        #[arg(value_parser = parse_phase, value_name = "PHASE")]
        phase_after_id: Option<Phase>,
        /// Only this phase.
        #[arg(long, value_parser = parse_phase)]
        phase: Option<Phase>,
        /// Keep following until the job ends.
        #[arg(long, short)]
        follow: bool,
        /// Only lines after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },

    /// Stop a job: running work is stopped, nothing more starts, nothing is published.
    #[command(alias = "kill-job")]
    Kill {
        id: JobId,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },

    /// Remove what a job left behind (temp image, containers, work directories).
    Cleanup { id: JobId },

    /// Stop and remove what the backend still runs or holds for jobs that are not live.
    RemoveZombies,

    /// List jobs, newest first.
    #[command(alias = "get-history")]
    History {
        /// How many (also accepted as the first argument, as `get-history 10 0`).
        #[arg(long)]
        limit: Option<usize>,
        /// How many to skip first.
        #[arg(long)]
        offset: Option<usize>,
        /// `[LIMIT] [OFFSET]`, as the original CLI took them.
        #[arg(num_args = 0..=2, value_name = "LIMIT OFFSET")]
        page: Vec<usize>,
    },

    /// Check that the service answers, and whether it is ready.
    Health,

    /// Serve jobforge's tools to an AI agent over MCP on stdin and stdout, talking to the
    /// service at --url (for agents that start MCP servers as local processes).
    Mcp,

    /// Print the Nomad jobs a job would run (build, each test, publish) as JSON, submitting
    /// nothing.
    Render(Box<RenderArgs>),

    /// Manage the secrets of the embedded secrets store (the service reads them by path).
    #[command(subcommand)]
    Secret(SecretCommand),

    /// Make tokens for the service's auth file.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Print a shell completion script: `jobforge completions bash > /etc/bash_completion.d/jobforge`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff): `jobforge man | man -l -`.
    Man,

    /// Supervise one run (started by the service itself).
    #[command(hide = true)]
    Shim { run_dir: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token once, and the entry to add to the auth file (which holds only
    /// the token's SHA-256): `jobforge token new --name agent-a --role submit --owner team-a
    /// --secret 'git/team-a/*'`.
    New {
        /// What the token is for; names it in the service's answers and log.
        #[arg(long)]
        name: String,
        /// `submit` (its owner's jobs), `read` (every job, changing nothing) or `admin`.
        #[arg(long, value_parser = parse_role)]
        role: jobforge_core::access::Role,
        /// The owner the jobs it submits belong to.
        #[arg(long)]
        owner: Option<String>,
        /// A secret path pattern its jobs may name (`*` within a segment, a last `**` for
        /// everything below); repeat for more.
        #[arg(long = "secret", value_name = "PATTERN")]
        secrets: Vec<jobforge_core::access::SecretPattern>,
    },
}

fn parse_role(text: &str) -> Result<jobforge_core::access::Role, String> {
    text.parse()
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store fields at a path, replacing what was there: `jobforge secret put git/app username=bob password=...`.
    Put {
        path: SecretPath,
        /// `key=value` pairs.
        #[arg(required = true)]
        fields: Vec<String>,
        /// A host (`host[:port]`) the secret may be sent to; repeat for more. Stored as its
        /// `allowed_hosts` field, which a service with tokens requires.
        #[arg(long = "host", value_name = "HOST[:PORT]")]
        hosts: Vec<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// List secret paths and their field names (never values).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove the secret at a path.
    Delete {
        path: SecretPath,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// The service's data directory (job store, secrets, container storage, work directories).
    /// Default: /var/lib/jobforge as root, else ~/.local/share/jobforge.
    #[arg(long, env = "JOBFORGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port and prints it). [default: 127.0.0.1:8080]
    #[arg(long, env = "JOBFORGE_LISTEN", help_heading = "Service")]
    pub listen: Option<SocketAddr>,

    /// The tokens that may call (YAML: `tokens: [{name, sha256, role, owner, secrets}]`), read
    /// again when it changes. Without one the service listens on loopback only.
    #[arg(long, env = "JOBFORGE_AUTH_FILE", value_name = "FILE", help_heading = "Service")]
    pub auth_file: Option<PathBuf>,

    /// Serve beyond loopback without tokens: only behind something that authenticates callers.
    #[arg(long, help_heading = "Service")]
    pub insecure_no_auth: bool,

    /// A directory whose git repositories jobs may name as `file://` URLs; repeat for more.
    /// Without one, `file://` repositories are refused: they would let a caller build and
    /// publish files of this host.
    #[arg(
        long,
        env = "JOBFORGE_ALLOW_LOCAL_REPOS",
        value_delimiter = ',',
        value_name = "DIR",
        help_heading = "Service"
    )]
    pub allow_local_repos: Vec<PathBuf>,

    /// The network of local test containers: `private` (their own namespace; the outside world
    /// but not this host's loopback) or `host`. [default: private]
    #[arg(long, env = "JOBFORGE_TEST_NETWORK", value_name = "private|host", help_heading = "Service")]
    pub test_network: Option<String>,

    #[command(flatten)]
    pub data: DataDir,

    /// Where phases run: `local` (buildah and podman on this machine) or `nomad`. [default: local]
    #[arg(long, env = "JOBFORGE_BACKEND", help_heading = "Service")]
    pub backend: Option<String>,

    /// YAML file with any of these settings (under their long names with `_`); environment
    /// and flags override it.
    #[arg(long, env = "JOBFORGE_CONFIG", help_heading = "Service")]
    pub config: Option<PathBuf>,

    /// How often to look for and remove what the backend runs for no live job. [default: 5m]
    #[arg(long, env = "JOBFORGE_ZOMBIE_SWEEP", help_heading = "Service")]
    pub zombie_sweep: Option<Duration>,

    /// A host besides a registry's own whose token service may receive that registry's
    /// credentials (a token realm elsewhere); repeat for more.
    #[arg(
        long,
        env = "JOBFORGE_REGISTRY_TOKEN_REALMS",
        value_delimiter = ',',
        value_name = "HOST",
        help_heading = "Service"
    )]
    pub registry_token_realm: Vec<String>,

    /// Jobs that may wait to start (PENDING) at once; more are refused with 429. [default: 200]
    #[arg(long, env = "JOBFORGE_MAX_PENDING_JOBS", help_heading = "Limits")]
    pub max_pending_jobs: Option<usize>,

    /// Jobs of one owner that may wait to start at once. [default: 50]
    #[arg(long, env = "JOBFORGE_MAX_PENDING_PER_OWNER", help_heading = "Limits")]
    pub max_pending_per_owner: Option<usize>,

    /// Submissions per minute of one token. [default: 60]
    #[arg(long, env = "JOBFORGE_SUBMISSIONS_PER_MINUTE", help_heading = "Limits")]
    pub submissions_per_minute: Option<u32>,

    /// Event streams (SSE, MCP watches) one token may hold open at once. [default: 32]
    #[arg(long, env = "JOBFORGE_STREAMS_PER_TOKEN", help_heading = "Limits")]
    pub streams_per_token: Option<usize>,

    /// How long an ended job keeps its logs in the SQLite store (its record stays in the
    /// history). [default: 720h]
    #[arg(long, env = "JOBFORGE_LOG_RETENTION", help_heading = "Service")]
    pub log_retention: Option<Duration>,

    /// Most jobs past PENDING at once; more wait their turn. [default: 4]
    #[arg(long, env = "JOBFORGE_MAX_ACTIVE_JOBS", help_heading = "Service")]
    pub max_active_jobs: Option<usize>,

    /// Registry host[:port] for temp images. [default: the registry host of each job's registry_url]
    #[arg(long, env = "JOBFORGE_TEMP_REGISTRY", help_heading = "Registries")]
    pub temp_registry: Option<RegistryHost>,

    /// Secret path of credentials for --temp-registry, when it is not the job's registry.
    #[arg(long, env = "JOBFORGE_TEMP_REGISTRY_CREDENTIALS", help_heading = "Registries")]
    pub temp_registry_credentials: Option<SecretPath>,

    /// A registry spoken to over plain http without TLS verification (e.g. one on loopback).
    /// Repeatable; in the environment, comma-separated.
    #[arg(
        long = "insecure-registry",
        env = "JOBFORGE_INSECURE_REGISTRIES",
        value_delimiter = ',',
        help_heading = "Registries"
    )]
    pub insecure_registries: Vec<RegistryHost>,

    /// Default build timeout (`30m`, `1h30m`, or seconds). [default: 30m]
    #[arg(long, env = "JOBFORGE_BUILD_TIMEOUT", help_heading = "Timeouts")]
    pub build_timeout: Option<Duration>,

    /// Default test timeout. [default: 15m]
    #[arg(long, env = "JOBFORGE_TEST_TIMEOUT", help_heading = "Timeouts")]
    pub test_timeout: Option<Duration>,

    /// Publish timeout. [default: 15m]
    #[arg(long, env = "JOBFORGE_PUBLISH_TIMEOUT", help_heading = "Timeouts")]
    pub publish_timeout: Option<Duration>,

    /// Grace period between asking a stopped phase to end and forcing it. [default: 10s]
    #[arg(long, env = "JOBFORGE_KILL_GRACE", help_heading = "Timeouts")]
    pub kill_grace: Option<Duration>,

    /// containers/storage driver for the local backend: `overlay` or `vfs`. [default: overlay]
    #[arg(long, env = "JOBFORGE_STORAGE_DRIVER", help_heading = "Local backend")]
    pub storage_driver: Option<String>,

    /// OCI runtime for test containers. [default: runc]
    #[arg(long, env = "JOBFORGE_OCI_RUNTIME", help_heading = "Local backend")]
    pub oci_runtime: Option<String>,

    /// Extra CA certificates (PEM) to trust for git over https, besides the system's.
    #[arg(long, env = "JOBFORGE_EXTRA_CA_FILE", help_heading = "Local backend")]
    pub extra_ca_file: Option<PathBuf>,

    #[command(flatten)]
    pub nomad: NomadArgs,

    #[command(flatten)]
    pub vault: VaultArgs,

    #[command(flatten)]
    pub consul: ConsulArgs,

    /// Log format on stderr: `text` or `json`.
    #[arg(long, env = "JOBFORGE_LOG_FORMAT", default_value = "text", help_heading = "Service")]
    pub log_format: String,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The job config (YAML or JSON, `-` for stdin).
    pub file: PathBuf,
    /// Config file of the service (its registry and Nomad settings apply).
    #[arg(long, env = "JOBFORGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "JOBFORGE_TEMP_REGISTRY")]
    pub temp_registry: Option<RegistryHost>,
    #[arg(long = "insecure-registry", env = "JOBFORGE_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<RegistryHost>,
    #[command(flatten)]
    pub nomad: NomadArgs,
}

/// How to reach Nomad and shape the jobs rendered for it (`--backend nomad`).
#[derive(Debug, Args)]
pub struct NomadArgs {
    /// Nomad's HTTP address. [default: http://127.0.0.1:4646]
    #[arg(long, env = "NOMAD_ADDR", help_heading = "Nomad backend")]
    pub nomad_addr: Option<String>,
    /// ACL token (sent as X-Nomad-Token).
    #[arg(long, env = "NOMAD_TOKEN", hide_env_values = true, help_heading = "Nomad backend")]
    pub nomad_token: Option<String>,
    #[arg(long, env = "NOMAD_NAMESPACE", help_heading = "Nomad backend")]
    pub nomad_namespace: Option<String>,
    #[arg(long, env = "NOMAD_REGION", help_heading = "Nomad backend")]
    pub nomad_region: Option<String>,
    /// Datacenters of the rendered jobs; in the environment, comma-separated. [default: dc1]
    #[arg(long, env = "NOMAD_DATACENTERS", value_delimiter = ',', help_heading = "Nomad backend")]
    pub nomad_datacenters: Vec<String>,
    /// PEM file of the CA of Nomad's TLS certificate.
    #[arg(long, env = "NOMAD_CACERT", help_heading = "Nomad backend")]
    pub nomad_ca_file: Option<PathBuf>,
    /// Prefix of jobforge's Nomad job IDs (how leftovers are found). [default: jobforge]
    #[arg(long, env = "JOBFORGE_NOMAD_PREFIX", help_heading = "Nomad backend")]
    pub nomad_prefix: Option<String>,
    /// Image of the build and publish tasks. [default: quay.io/buildah/stable]
    #[arg(long, env = "JOBFORGE_BUILDAH_IMAGE", help_heading = "Nomad backend")]
    pub buildah_image: Option<String>,
    /// Vault role (workload identity) of tasks that read secrets. [default: jobforge]
    #[arg(long, env = "JOBFORGE_VAULT_ROLE", help_heading = "Nomad backend")]
    pub vault_role: Option<String>,
    /// Mount of the Vault KV v2 engine holding the secrets jobs name. [default: secret]
    #[arg(long, env = "JOBFORGE_VAULT_KV_MOUNT", help_heading = "Nomad backend")]
    pub vault_kv_mount: Option<String>,
    /// How long a phase may wait for Nomad to place it before the job fails. [default: 5m]
    #[arg(long, env = "JOBFORGE_PLACEMENT_TIMEOUT", help_heading = "Nomad backend")]
    pub placement_timeout: Option<Duration>,
}

/// Where job records live, and how to reach Consul (`--store consul`).
#[derive(Debug, Args)]
pub struct ConsulArgs {
    /// Where job records and logs live: `sqlite` (a file in the data directory, one service) or
    /// `consul` (Consul KV, which also holds the dynamic configuration). [default: sqlite]
    #[arg(long, env = "JOBFORGE_STORE", help_heading = "Store")]
    pub store: Option<String>,
    /// Consul's HTTP address. [default: http://127.0.0.1:8500]
    #[arg(long, env = "CONSUL_HTTP_ADDR", help_heading = "Store")]
    pub consul_addr: Option<String>,
    /// Consul ACL token (sent as X-Consul-Token).
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true, help_heading = "Store")]
    pub consul_token: Option<String>,
    /// PEM file of the CA of Consul's TLS certificate.
    #[arg(long, env = "CONSUL_CACERT", help_heading = "Store")]
    pub consul_ca_file: Option<PathBuf>,
    /// KV prefix of jobforge's keys (config/, jobs/, history/, logs/). [default: jobforge-service]
    #[arg(long, env = "JOBFORGE_CONSUL_PREFIX", help_heading = "Store")]
    pub consul_prefix: Option<String>,
    /// Finished jobs kept in the history. [default: 50]
    #[arg(long, env = "JOBFORGE_HISTORY_COUNT", help_heading = "Store")]
    pub history_count: Option<usize>,
    /// Finished jobs older than this leave the history. [default: 720h (30 days)]
    #[arg(long, env = "JOBFORGE_HISTORY_AGE", help_heading = "Store")]
    pub history_age: Option<Duration>,
    /// TTL of this instance's Consul session: its jobs pass to other replicas this long after
    /// it dies. [default: 15s]
    #[arg(long, env = "JOBFORGE_SESSION_TTL", help_heading = "Store")]
    pub session_ttl: Option<Duration>,
    /// How long a lock freed by a dead instance stays un-acquirable. [default: 5s]
    #[arg(long, env = "JOBFORGE_LOCK_DELAY", help_heading = "Store")]
    pub lock_delay: Option<Duration>,
}

impl ConsulArgs {
    pub fn settings(&self) -> jobforge_server::config::ConsulSettings {
        jobforge_server::config::ConsulSettings {
            address: self.consul_addr.clone(),
            token: self.consul_token.clone(),
            ca_file: self.consul_ca_file.clone(),
            prefix: self.consul_prefix.clone(),
            history_count: self.history_count,
            history_age: self.history_age,
            session_ttl: self.session_ttl,
            lock_delay: self.lock_delay,
        }
    }
}

/// Where job secrets are read, and how to reach Vault (`--secrets vault`).
#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Where secrets named by jobs are read: `file` (the embedded store, `jobforge secret put`)
    /// or `vault` (Vault or OpenBao KV v2 at --vault-kv-mount). [default: file]
    #[arg(long, env = "JOBFORGE_SECRETS", help_heading = "Secrets")]
    pub secrets: Option<String>,
    /// Vault's HTTP address, e.g. https://vault:8200.
    #[arg(long, env = "VAULT_ADDR", help_heading = "Secrets")]
    pub vault_addr: Option<String>,
    /// Vault token (sent as X-Vault-Token). Not needed with AppRole.
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true, help_heading = "Secrets")]
    pub vault_token: Option<String>,
    /// AppRole role ID: with --vault-secret-id, log in with AppRole instead of a token.
    #[arg(long, env = "VAULT_ROLE_ID", help_heading = "Secrets")]
    pub vault_role_id: Option<String>,
    /// AppRole secret ID.
    #[arg(long, env = "VAULT_SECRET_ID", hide_env_values = true, help_heading = "Secrets")]
    pub vault_secret_id: Option<String>,
    /// Vault namespace (sent as X-Vault-Namespace).
    #[arg(long, env = "VAULT_NAMESPACE", help_heading = "Secrets")]
    pub vault_namespace: Option<String>,
    /// PEM file of the CA of Vault's TLS certificate.
    #[arg(long, env = "VAULT_CACERT", help_heading = "Secrets")]
    pub vault_ca_file: Option<PathBuf>,
}

impl VaultArgs {
    pub fn settings(&self) -> jobforge_server::config::VaultSettings {
        jobforge_server::config::VaultSettings {
            address: self.vault_addr.clone(),
            token: self.vault_token.clone(),
            role_id: self.vault_role_id.clone(),
            secret_id: self.vault_secret_id.clone(),
            namespace: self.vault_namespace.clone(),
            ca_file: self.vault_ca_file.clone(),
        }
    }
}

impl NomadArgs {
    pub fn settings(&self) -> jobforge_server::config::NomadSettings {
        jobforge_server::config::NomadSettings {
            address: self.nomad_addr.clone(),
            token: self.nomad_token.clone(),
            namespace: self.nomad_namespace.clone(),
            region: self.nomad_region.clone(),
            datacenters: self.nomad_datacenters.clone(),
            ca_file: self.nomad_ca_file.clone(),
            prefix: self.nomad_prefix.clone(),
            buildah_image: self.buildah_image.clone(),
            vault_role: self.vault_role.clone(),
            vault_kv_mount: self.vault_kv_mount.clone(),
            placement_timeout: self.placement_timeout,
        }
    }
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    text.parse().map_err(|e: jobforge_core::status::BadPhase| e.to_string())
}

impl DataDir {
    /// The data directory: the flag or environment, else the default for this user.
    pub fn resolve(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false) || is_root();
        match std::env::var_os("HOME") {
            Some(home) if !root => PathBuf::from(home).join(".local/share/jobforge"),
            _ => PathBuf::from("/var/lib/jobforge"),
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}
