//! The client commands: each one a call (or a stream of calls) on the service, printed for
//! people or, with `--json`, for scripts.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::Context;
use futures::StreamExt;

use jobforge_client::{Client, ClientOptions, Event, JobView, LogsQuery, Token};
use jobforge_core::{JobId, JobStatus, Phase};
use jobforge_local::FileSecrets;

use crate::args::{Cli, Command, SecretCommand, TokenCommand};
use crate::exit::{Exit, UsageError};
use crate::jobfile::{self, Source};
use crate::live::Live;
use crate::output::Printer;

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    let printer = Printer::new(cli.json);
    let options = ClientOptions { token: cli.token.clone().map(Token::new), ..ClientOptions::default() };
    let client = || Client::with_options(&cli.url, options.clone()).map_err(anyhow::Error::from);
    match cli.command {
        Command::Serve(args) => crate::serve::serve(*args).await,
        Command::Submit { config, global, image_tags, watch } => {
            let source = Source::of(config.as_deref())?;
            let job = jobfile::load(&source, global.as_deref(), &image_tags)?;
            submit(&client()?, &printer, &job, watch).await
        }
        Command::Status { id } => {
            let job = client()?.job(id).await?;
            printer.job(&job);
            Ok(Exit::Ok)
        }
        Command::Logs { id, phase_after_id, phase, follow, after } => {
            logs(&client()?, &printer, id, phase.or(phase_after_id), follow, after).await
        }
        Command::Kill { id, reason } => {
            let by = format!("{} via jobforge CLI", whoami());
            let job = client()?.kill(id, Some(&by), reason.as_deref()).await?;
            printer.killed(&job);
            Ok(Exit::Ok)
        }
        Command::Cleanup { id } => {
            let cleaned = client()?.cleanup(id).await?;
            printer.cleaned(&cleaned);
            Ok(Exit::Ok)
        }
        Command::RemoveZombies => {
            let removed = client()?.remove_zombies().await?;
            printer.zombies(&removed.removed);
            Ok(Exit::Ok)
        }
        Command::History { limit, offset, page } => {
            let limit = limit.or(page.first().copied()).unwrap_or(20);
            let offset = offset.or(page.get(1).copied()).unwrap_or(0);
            let history = client()?.history(limit, offset).await?;
            printer.history(&history);
            Ok(Exit::Ok)
        }
        Command::Mcp => {
            // stdout is the protocol's channel from here: nothing else may print to it.
            let jobs: std::sync::Arc<dyn jobforge_client::Jobs> = std::sync::Arc::new(client()?);
            jobforge_mcp::serve_stdio(jobs).await.context("serving MCP on stdio")?;
            Ok(Exit::Ok)
        }
        Command::Health => {
            let client = client()?;
            let health = client.health().await?;
            let ready = client.ready().await?;
            printer.health(&health, &ready);
            Ok(if ready.ready { Exit::Ok } else { Exit::Internal })
        }
        Command::Secret(command) => secret(&printer, command),
        Command::Token(TokenCommand::New { name, role, owner, secrets }) => {
            let token = jobforge_server::auth::new_token().context("drawing a random token")?;
            let entry = jobforge_server::auth::entry_yaml(&name, &token, role, owner.as_deref(), &secrets);
            printer.new_token(&token, &entry);
            Ok(Exit::Ok)
        }
        Command::Render(args) => crate::serve::render(*args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "jobforge", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout()).context("writing the manual page")?;
            Ok(Exit::Ok)
        }
        Command::Shim { .. } => unreachable!("handled before the runtime starts"),
    }
}

async fn submit(client: &Client, printer: &Printer, config: &serde_json::Value, watch: bool) -> anyhow::Result<Exit> {
    let submitted = client.submit(config).await?;
    printer.submitted(&submitted);
    if !watch {
        return Ok(Exit::Ok);
    }
    watch_job(client, printer, submitted.job_id).await
}

/// Follow a job to its end, printing phases as they start and end, and every log line: on a
/// terminal with a line per phase, elsewhere as plain lines.
async fn watch_job(client: &Client, printer: &Printer, id: JobId) -> anyhow::Result<Exit> {
    if !printer.is_json() && std::io::stdout().is_terminal() {
        return watch_live(client, printer, id).await;
    }
    let mut events = client.follow(id, 0, None);
    let mut last: Option<JobView> = None;
    while let Some(event) = events.next().await {
        match event? {
            Event::Status(job) => {
                printer.transitions(last.as_ref(), &job);
                last = Some(job);
            }
            Event::Log(line) => printer.line(&line),
            Event::Job(entry) => printer.event(&entry),
            Event::End(job) => {
                printer.transitions(last.as_ref(), &job);
                printer.finished(&job);
                return Ok(outcome(&job));
            }
        }
    }
    // The stream ended without `end`: report what the service says now.
    let job = client.job(id).await?;
    printer.finished(&job);
    Ok(outcome(&job))
}

async fn watch_live(client: &Client, printer: &Printer, id: JobId) -> anyhow::Result<Exit> {
    let mut live = Live::new();
    let mut events = client.follow(id, 0, None);
    let mut end = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Status(job)) => live.status(&job),
            Ok(Event::Log(line)) => live.line(&line),
            Ok(Event::Job(_)) => {}
            Ok(Event::End(job)) => {
                live.status(&job);
                end = Some(job);
                break;
            }
            Err(err) => {
                live.finish();
                return Err(err.into());
            }
        }
    }
    live.finish();
    let job = match end {
        Some(job) => job,
        None => client.job(id).await?,
    };
    printer.finished(&job);
    Ok(outcome(&job))
}

fn outcome(job: &JobView) -> Exit {
    match job.status {
        JobStatus::Succeeded => Exit::Ok,
        JobStatus::Failed | JobStatus::Killed => Exit::JobFailed,
        JobStatus::Pending | JobStatus::Building | JobStatus::Testing | JobStatus::Publishing => Exit::Internal,
    }
}

async fn logs(
    client: &Client,
    printer: &Printer,
    id: JobId,
    phase: Option<Phase>,
    follow: bool,
    after: u64,
) -> anyhow::Result<Exit> {
    if follow {
        let mut events = client.follow(id, after, phase);
        while let Some(event) = events.next().await {
            match event? {
                Event::Log(line) => printer.line(&line),
                Event::Status(_) | Event::Job(_) => {}
                Event::End(_) => break,
            }
        }
        return Ok(Exit::Ok);
    }
    let mut query = LogsQuery { phase, after, ..LogsQuery::default() };
    loop {
        let page = client.logs(id, &query).await?;
        for line in &page.lines {
            printer.line(line);
        }
        if page.lines.is_empty() || page.complete {
            return Ok(Exit::Ok);
        }
        query.after = page.next_after;
    }
}

/// The job file as JSON: YAML (a superset of JSON) from a file or stdin.
/// A job config from a file (`-` for stdin), for `render`.
pub fn read_job_file(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = path.display().to_string();
    Ok(jobfile::load(&Source::of(Some(&text))?, None, &[])?)
}

fn secret(printer: &Printer, command: SecretCommand) -> anyhow::Result<Exit> {
    match command {
        SecretCommand::Put { path, fields, hosts, data } => {
            let mut values = BTreeMap::new();
            for field in fields {
                let (key, value) = field
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| UsageError(format!("{field:?} is not key=value")))?;
                values.insert(key.to_owned(), value.to_owned());
            }
            if !hosts.is_empty() {
                for host in &hosts {
                    host.parse::<jobforge_core::secret::AllowedHost>()
                        .map_err(|e| UsageError(format!("--host {e}")))?;
                }
                values.insert(jobforge_core::secret::ALLOWED_HOSTS.to_owned(), hosts.join(","));
            }
            let store = FileSecrets::new(data.resolve().join("secrets.json"));
            let keys: Vec<String> = values.keys().cloned().collect();
            store.put(&path, values).with_context(|| format!("cannot write {}", store.path().display()))?;
            printer.message(&format!("stored {path} ({})", keys.join(", ")));
        }
        SecretCommand::List { data } => {
            let store = FileSecrets::new(data.resolve().join("secrets.json"));
            let list = store.list().with_context(|| format!("cannot read {}", store.path().display()))?;
            printer.secrets(&list);
        }
        SecretCommand::Delete { path, data } => {
            let store = FileSecrets::new(data.resolve().join("secrets.json"));
            if !store.delete(&path).with_context(|| format!("cannot write {}", store.path().display()))? {
                return Err(UsageError(format!("no secret at {path}")).into());
            }
            printer.message(&format!("deleted {path}"));
        }
    }
    Ok(Exit::Ok)
}

fn whoami() -> String {
    std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "someone".into())
}
