//! `jobforge serve`: settings from defaults < config file < environment < flags, then the
//! service until SIGINT or SIGTERM.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use jobforge_server::ServiceConfig;
use jobforge_server::config::{BackendKind, ConfigFile, SecretsKind, StoreKind};

use crate::args::ServeArgs;
use crate::exit::{Exit, UsageError};

pub async fn serve(args: ServeArgs) -> anyhow::Result<Exit> {
    init_logging(&args.log_format)?;
    let config = settings(args)?;
    tracing::info!(data_dir = %config.data_dir.display(), backend = ?config.backend, "starting jobforge");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    jobforge_server::serve(config, shutdown, |addr| {
        // Scripts and tests read this line to learn the port.
        println!("jobforge listening on http://{addr}");
    })
    .await?;
    Ok(Exit::Ok)
}

/// Print the Nomad jobs of a job file.
pub fn render(args: crate::args::RenderArgs) -> anyhow::Result<Exit> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let value = crate::run::read_job_file(&args.file)?;
    let spec = jobforge_core::validate::job_spec(&value).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {}: {}", p.field, p.message)).collect();
        UsageError(format!("invalid job config:\n{}", lines.join("\n")))
    })?;
    let mut nomad = file.nomad;
    nomad.merge(args.nomad.settings());
    let insecure =
        if args.insecure_registries.is_empty() { file.insecure_registries } else { args.insecure_registries };
    let defaults = ServiceConfig::new(std::path::PathBuf::new(), Vec::new());
    let render = nomad.render_config(&insecure, file.kill_grace.unwrap_or(defaults.kill_grace));
    let mut settings = defaults.engine_settings();
    settings.temp_registry = args.temp_registry.or(file.temp_registry);
    let jobs: Vec<serde_json::Value> = jobforge_core::engine::dry_run(&settings, spec)
        .iter()
        .map(|run| serde_json::json!({ "Job": jobforge_nomad::render::render(&render, run) }))
        .collect();
    println!("{}", serde_json::to_string_pretty(&jobs)?);
    Ok(Exit::Ok)
}

fn settings(args: ServeArgs) -> anyhow::Result<ServiceConfig> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let data_dir = args.data.data_dir.clone().or(file.data_dir.clone()).unwrap_or_else(|| args.data.resolve());
    let exe = std::env::current_exe().context("cannot find the jobforge binary (needed to start run shims)")?;
    let mut config = ServiceConfig::new(data_dir, vec![exe.into(), "shim".into()]);
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    let backend = match args.backend.as_deref() {
        Some(text) => Some(text.parse::<BackendKind>().map_err(UsageError)?),
        None => file.backend,
    };
    config.backend = backend.unwrap_or(BackendKind::Local);
    config.temp_registry = args.temp_registry.or(file.temp_registry);
    config.temp_registry_credentials = args.temp_registry_credentials.or(file.temp_registry_credentials);
    config.insecure_registries =
        if args.insecure_registries.is_empty() { file.insecure_registries } else { args.insecure_registries };
    macro_rules! setting {
        ($name:ident) => {
            if let Some(value) = args.$name.or(file.$name) {
                config.$name = value;
            }
        };
    }
    setting!(build_timeout);
    setting!(test_timeout);
    setting!(publish_timeout);
    setting!(kill_grace);
    setting!(max_active_jobs);
    setting!(zombie_sweep);
    setting!(log_retention);
    config.registry_token_realms = args.registry_token_realm.clone();
    let limits = &mut config.limits;
    limits.max_pending = args.max_pending_jobs.unwrap_or(limits.max_pending);
    limits.max_pending_per_owner = args.max_pending_per_owner.unwrap_or(limits.max_pending_per_owner);
    limits.submissions_per_minute = args.submissions_per_minute.unwrap_or(limits.submissions_per_minute);
    limits.streams_per_caller = args.streams_per_token.unwrap_or(limits.streams_per_caller);
    if limits.max_pending == 0 || limits.max_pending_per_owner == 0 || limits.submissions_per_minute == 0 {
        return Err(UsageError("the limits on pending jobs and submissions must be at least 1".into()).into());
    }
    setting!(storage_driver);
    setting!(oci_runtime);
    config.extra_ca_file = args.extra_ca_file.or(file.extra_ca_file);
    config.auth_file = args.auth_file.or(file.auth_file);
    let test_network = match args.test_network.as_deref() {
        Some(text) => Some(text.parse().map_err(UsageError)?),
        None => file.test_network,
    };
    config.test_network = test_network.unwrap_or_default();
    config.local_repos =
        if args.allow_local_repos.is_empty() { file.allow_local_repos } else { args.allow_local_repos };
    if let Some(dir) = config.local_repos.iter().find(|dir| !dir.is_absolute()) {
        return Err(
            UsageError(format!("--allow-local-repos needs an absolute directory, not {}", dir.display())).into()
        );
    }
    config.insecure_no_auth = args.insecure_no_auth;
    config.nomad = file.nomad;
    config.nomad.merge(args.nomad.settings());
    let secrets = match args.vault.secrets.as_deref() {
        Some(text) => Some(text.parse::<SecretsKind>().map_err(UsageError)?),
        None => file.secrets,
    };
    config.secrets = secrets.unwrap_or(SecretsKind::File);
    config.vault = file.vault;
    config.vault.merge(args.vault.settings());
    let store = match args.consul.store.as_deref() {
        Some(text) => Some(text.parse::<StoreKind>().map_err(UsageError)?),
        None => file.store,
    };
    config.store = store.unwrap_or_default();
    config.consul = file.consul;
    config.consul.merge(args.consul.settings());
    for (flag, value) in [("--zombie-sweep", config.zombie_sweep), ("--kill-grace", config.kill_grace)] {
        if value.as_secs() == 0 {
            return Err(UsageError(format!("{flag} must be at least 1s")).into());
        }
    }
    if config.max_active_jobs == 0 {
        return Err(UsageError("--max-active-jobs must be at least 1".into()).into());
    }
    if !matches!(config.storage_driver.as_str(), "overlay" | "vfs") {
        return Err(
            UsageError(format!("--storage-driver must be overlay or vfs, not {:?}", config.storage_driver)).into()
        );
    }
    Ok(config)
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    // vaultrs and its HTTP layer (rustify) log an ERROR for every non-2xx answer, a routine 404
    // of a secret-existence check included; jobforge reports each failure itself, with context.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,vaultrs=off,rustify=off"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => return Err(UsageError(format!("--log-format must be text or json, not {other:?}")).into()),
    }
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot listen for signals; stop the service with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down; running phases continue and are resumed on the next start");
    shutdown.cancel();
}
