//! The shim: the supervisor of one run, started by the service and outliving it.
//!
//! It reads its [`ShimSpec`] from stdin (so secrets never touch the disk as arguments or
//! files the service writes), holds the run's lock on descriptor 3 (inherited, already locked
//! by the service, so there is no moment where a started run looks unstarted), and then runs
//! the steps one after another, each in a process group of its own. Every output line goes to
//! `log.jsonl` (stdout and stderr interleaved in the order read, masked); the exit status goes
//! to `exit.json` once the log is complete.
//!
//! Signals: SIGTERM or SIGINT ask the current step's process group to stop (SIGTERM) and start
//! no further step; SIGUSR1 forces it (SIGKILL). The shim itself always ends by writing
//! `exit.json`, unless it is killed.
//!
//! It must not: interpret any text as shell, inherit the service's environment, or let its
//! children inherit the lock descriptor.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use jobforge_core::logs::{RunLine, cut_long};
use jobforge_core::mask::Masker;
use jobforge_core::secret::SecretValue;
use jobforge_core::{Stream, Timestamp};

use crate::rundir::{ExitRecord, RunDir, StepGroup, write_json_atomic};

/// The descriptor on which the service hands over the locked run lock.
pub const LOCK_FD: i32 = 3;

/// After the step's process exits, how long to keep reading output that its leftover
/// children may still be writing to the pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Everything a shim needs, sent on its stdin as JSON. Secret values are [`SecretValue`]s,
/// which print as `***`; [`protocol`] is the one place they are written out, for the shim.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShimSpec {
    pub steps: Vec<Step>,
    /// The whole environment of every step (nothing is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files (auth files) written before the first step and removed after the last.
    #[serde(default)]
    pub files: Vec<SecretFile>,
    /// Values replaced by `***` in every line written to the log.
    #[serde(default, with = "protocol::values")]
    pub mask: Vec<SecretValue>,
    /// Host paths and what to show instead, in every line (after masking), in order: a log
    /// says `Dockerfile`, not where the service keeps its checkout.
    #[serde(default)]
    pub rewrites: Vec<(String, String)>,
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub action: Action,
    /// Added to the spec's environment for this step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret values added to the environment for this step (credentials, test secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "protocol::env")]
    pub secret_env: BTreeMap<String, SecretValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Run these instead when this step fails (and the run was not stopped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub or_else: Vec<Step>,
    /// Run these after this step fails (and the run was not stopped), to explain the failure
    /// in the log: how they end does not matter, the run fails with this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<Step>,
}

impl Step {
    pub fn exec<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Step {
            action: Action::Exec { argv: argv.into_iter().map(Into::into).collect() },
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            cwd: None,
            or_else: Vec::new(),
            explain: Vec::new(),
        }
    }

    pub fn check_inside(root: PathBuf, path: PathBuf, field: &str, want: Want) -> Self {
        Step {
            action: Action::CheckInside { root, path, field: field.to_owned(), want },
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            cwd: None,
            or_else: Vec::new(),
            explain: Vec::new(),
        }
    }

    pub fn with_env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.insert(name.to_owned(), value.into());
        self
    }

    pub fn with_secret_env(mut self, name: &str, value: &SecretValue) -> Self {
        self.secret_env.insert(name.to_owned(), value.clone());
        self
    }

    pub fn or_else(mut self, steps: Vec<Step>) -> Self {
        self.or_else = steps;
        self
    }

    pub fn explained_by(mut self, steps: Vec<Step>) -> Self {
        self.explain = steps;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Run a program with exactly these arguments.
    Exec { argv: Vec<String> },
    /// Fail unless `path`, symlinks resolved, exists inside `root` and is a `want`: a
    /// repository must not point the build at files outside itself.
    CheckInside { root: PathBuf, path: PathBuf, field: String, want: Want },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    File,
    Directory,
}

/// A file with secret contents, mode 0600 unless said otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretFile {
    pub path: PathBuf,
    #[serde(with = "protocol::value")]
    pub contents: SecretValue,
}

/// How secret values cross the shim's stdin: the one place they are serialized, field by
/// field (`#[serde(with = ...)]`). `SecretValue` itself has no `Serialize`, so no other
/// serialization of a type holding one compiles.
pub mod protocol {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use jobforge_core::secret::SecretValue;

    pub mod value {
        use super::*;

        pub fn serialize<S: Serializer>(value: &SecretValue, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(value.expose())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretValue, D::Error> {
            String::deserialize(deserializer).map(SecretValue::new)
        }
    }

    pub mod values {
        use super::*;

        pub fn serialize<S: Serializer>(values: &[SecretValue], serializer: S) -> Result<S::Ok, S::Error> {
            values.iter().map(SecretValue::expose).collect::<Vec<_>>().serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretValue>, D::Error> {
            Ok(Vec::<String>::deserialize(deserializer)?.into_iter().map(SecretValue::new).collect())
        }
    }

    pub mod env {
        use super::*;

        pub fn serialize<S: Serializer>(env: &BTreeMap<String, SecretValue>, serializer: S) -> Result<S::Ok, S::Error> {
            env.iter().map(|(name, value)| (name, value.expose())).collect::<BTreeMap<_, _>>().serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<BTreeMap<String, SecretValue>, D::Error> {
            let plain = BTreeMap::<String, String>::deserialize(deserializer)?;
            Ok(plain.into_iter().map(|(name, value)| (name, SecretValue::new(value))).collect())
        }
    }
}

/// Entry point of the shim process: `jobforge-shim <run dir>` (or `jobforge shim <run dir>`).
/// Returns the process exit code: 0 when the run's outcome was recorded, whatever it was.
pub fn main(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        eprintln!("usage: jobforge-shim RUN_DIR  (spec as JSON on stdin, locked run lock on fd 3)");
        return 2;
    };
    match run(Path::new(dir)) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("jobforge-shim: {err}");
            1
        }
    }
}

fn run(dir: &Path) -> io::Result<()> {
    keep_lock_from_children()?;
    let run = RunDir::new(dir.to_path_buf());
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input)?;
    let spec: ShimSpec = serde_json::from_slice(&input).map_err(io::Error::other)?;
    drop(input);
    run.write_pid(std::process::id())?;

    let control = Arc::new(Control::default());
    watch_signals(control.clone())?;

    let log = OpenOptions::new().create(true).append(true).open(run.log_path())?;
    let masker = Masker::new(&spec.mask);
    let mut shim = Shim {
        log: LogWriter { out: BufWriter::new(log), n: 0, masker, rewrites: spec.rewrites.clone() },
        env: spec.env,
        control,
        run: run.clone(),
    };

    let exit = match write_files(&spec.files) {
        Ok(()) => shim.run_steps(&spec.steps, 0).0,
        Err(err) => ExitRecord::StartFailed { message: format!("could not write credentials file: {err}"), step: 0 },
    };
    remove_files(&spec.files);
    shim.log.finish()?;
    write_json_atomic(&run.exit_path(), &exit)
}

/// Descriptor 3 carries the run lock; mark it close-on-exec so no step inherits it (a
/// daemon a step leaves behind must not keep the run looking alive).
fn keep_lock_from_children() -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number has no memory-safety preconditions; a bad
    // descriptor is reported as EBADF.
    let rc = unsafe { libc::fcntl(LOCK_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc == 0 { Ok(()) } else { Err(io::Error::other("descriptor 3 (the run lock) is not open")) }
}

fn write_files(files: &[SecretFile]) -> io::Result<()> {
    for file in files {
        let mut out = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&file.path)?;
        out.write_all(file.contents.expose().as_bytes())?;
    }
    Ok(())
}

fn remove_files(files: &[SecretFile]) {
    for file in files {
        let _ = fs::remove_file(&file.path);
    }
}

/// What the signal thread and the step runner share.
#[derive(Default)]
struct Control {
    /// Process group of the step running now, 0 between steps.
    pgid: AtomicI32,
    stopping: AtomicBool,
}

fn watch_signals(control: Arc<Control>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let forward = match signal {
                SIGTERM | SIGINT => libc::SIGTERM,
                SIGUSR1 => libc::SIGKILL,
                // No terminal to hang up on: the shim runs in its own session.
                _ => continue,
            };
            control.stopping.store(true, Ordering::SeqCst);
            signal_group(control.pgid.load(Ordering::SeqCst), forward);
        }
    });
    Ok(())
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

struct Shim {
    log: LogWriter,
    env: BTreeMap<String, String>,
    control: Arc<Control>,
    run: RunDir,
}

impl Shim {
    /// Run `steps` in order until one fails; returns the outcome and the index reached.
    fn run_steps(&mut self, steps: &[Step], first_index: usize) -> (ExitRecord, usize) {
        let mut last = ExitRecord::Exited { code: 0, step: first_index };
        let mut index = first_index;
        for step in steps {
            if self.control.stopping.load(Ordering::SeqCst) {
                return (ExitRecord::Signaled { signal: libc::SIGTERM, step: index }, index);
            }
            let outcome = self.run_step(step, index);
            index += 1;
            if matches!(outcome, ExitRecord::Exited { code: 0, .. }) {
                last = outcome;
                continue;
            }
            if !step.or_else.is_empty() && !self.control.stopping.load(Ordering::SeqCst) {
                self.log.system("that failed; trying the fallback");
                let (fallback, reached) = self.run_steps(&step.or_else, index);
                index = reached;
                if matches!(fallback, ExitRecord::Exited { code: 0, .. }) {
                    last = fallback;
                    continue;
                }
                return (fallback, index);
            }
            if !step.explain.is_empty() && !self.control.stopping.load(Ordering::SeqCst) {
                let (_, reached) = self.run_steps(&step.explain, index);
                index = reached;
            }
            return (outcome, index);
        }
        (last, index)
    }

    fn run_step(&mut self, step: &Step, index: usize) -> ExitRecord {
        match &step.action {
            Action::Exec { argv } => self.exec(argv, step, index),
            Action::CheckInside { root, path, field, want } => match check_inside(root, path, *want) {
                Ok(()) => ExitRecord::Exited { code: 0, step: index },
                Err(problem) => {
                    self.log.system(&format!("{field}: {problem}"));
                    ExitRecord::Exited { code: 1, step: index }
                }
            },
        }
    }

    fn exec(&mut self, argv: &[String], step: &Step, index: usize) -> ExitRecord {
        let Some((program, args)) = argv.split_first() else {
            return ExitRecord::StartFailed { message: "empty command".into(), step: index };
        };
        self.log.system(&format!("$ {}", display_command(argv)));
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(&self.env)
            .envs(&step.env)
            .envs(step.secret_env.iter().map(|(name, value)| (name, value.expose())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &step.cwd {
            command.current_dir(cwd);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                let message = format!("could not run {program}: {err}");
                self.log.system(&message);
                return ExitRecord::StartFailed { message, step: index };
            }
        };
        let pgid = child.id() as i32;
        self.control.pgid.store(pgid, Ordering::SeqCst);
        // Should this shim die, whoever cleans up can still end the step's processes.
        if let Some(group) = StepGroup::of(pgid) {
            let _ = write_json_atomic(&self.run.step_path(), &group);
        }
        // A stop that arrived while spawning found no group to signal; deliver it now.
        if self.control.stopping.load(Ordering::SeqCst) {
            signal_group(pgid, libc::SIGTERM);
        }

        let (events, inbox) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, Stream::Stdout, events.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, Stream::Stderr, events.clone());
        }
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = events.send(Event::Exited(status));
        });
        let status = self.pump(&inbox);
        self.control.pgid.store(0, Ordering::SeqCst);
        let _ = fs::remove_file(self.run.step_path());

        let outcome = match status {
            Ok(status) => exit_record(status, index),
            Err(err) => ExitRecord::StartFailed { message: format!("lost {program}: {err}"), step: index },
        };
        if let ExitRecord::Exited { code, .. } | ExitRecord::Signaled { signal: code, .. } = &outcome
            && !matches!(outcome, ExitRecord::Exited { code: 0, .. })
        {
            let how = if matches!(outcome, ExitRecord::Signaled { .. }) {
                "was killed by signal"
            } else {
                "exited with code"
            };
            self.log.system(&format!("{program} {how} {code}"));
        }
        outcome
    }

    /// Write lines as they come until the process has exited and its output is drained.
    fn pump(&mut self, inbox: &mpsc::Receiver<Event>) -> io::Result<ExitStatus> {
        let mut open_pipes = 2;
        let mut status: Option<io::Result<ExitStatus>> = None;
        loop {
            let first = match &status {
                // Output its leftover children still write is kept, for a bounded time.
                Some(_) => inbox.recv_timeout(DRAIN_AFTER_EXIT).ok(),
                None => inbox.recv().ok(),
            };
            let Some(first) = first else { break };
            // Take everything already waiting, then flush once: followers see lines promptly
            // without a write per line.
            for event in std::iter::once(first).chain(inbox.try_iter()) {
                match event {
                    Event::Line(stream, text) => self.log.line(stream, &text),
                    Event::Eof => open_pipes -= 1,
                    Event::Exited(s) => status = Some(s),
                }
            }
            let _ = self.log.flush();
            if status.is_some() && open_pipes == 0 {
                break;
            }
        }
        status.unwrap_or_else(|| Err(io::Error::other("the process vanished")))
    }
}

enum Event {
    Line(Stream, String),
    Eof,
    Exited(io::Result<ExitStatus>),
}

fn exit_record(status: ExitStatus, step: usize) -> ExitRecord {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitRecord::Exited { code, step },
        (None, Some(signal)) => ExitRecord::Signaled { signal, step },
        (None, None) => ExitRecord::Exited { code: -1, step },
    }
}

/// Read `pipe` line by line and send each line. A line is kept to its first
/// [`MAX_LINE_BYTES`](jobforge_core::logs::MAX_LINE_BYTES) and the cut marked; the rest of it
/// is read and dropped, so whatever a run prints, without a newline or not, this holds one
/// buffer and the log one bounded line.
fn spawn_reader(pipe: impl Read + Send + 'static, stream: Stream, events: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, pipe);
        let mut line: Vec<u8> = Vec::new();
        let limit = jobforge_core::logs::MAX_LINE_BYTES;
        let mut dropping = false;
        loop {
            let available = match reader.fill_buf() {
                Ok([]) => break,
                Ok(buf) => buf,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let (consumed, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(pos) => (pos + 1, true),
                None => (available.len(), false),
            };
            if !dropping {
                line.extend_from_slice(&available[..consumed]);
            }
            reader.consume(consumed);
            if dropping {
                dropping = !complete;
            } else if complete || line.len() >= limit {
                dropping = !complete;
                send_line(&events, stream, &mut line, dropping);
            }
        }
        if !line.is_empty() {
            send_line(&events, stream, &mut line, false);
        }
        let _ = events.send(Event::Eof);
    });
}

/// Send the line; `cut` when the rest of it is being dropped.
fn send_line(events: &mpsc::Sender<Event>, stream: Stream, line: &mut Vec<u8>, cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    let text = if cut { jobforge_core::logs::mark_cut(text) } else { jobforge_core::logs::cut_long(text) };
    line.clear();
    let _ = events.send(Event::Line(stream, text));
}

/// Appends masked, numbered lines to `log.jsonl`.
struct LogWriter {
    out: BufWriter<File>,
    n: u64,
    masker: Masker,
    rewrites: Vec<(String, String)>,
}

impl LogWriter {
    fn line(&mut self, stream: Stream, text: &str) {
        let mut masked = self.masker.mask(text);
        for (path, shown) in &self.rewrites {
            if masked.contains(path.as_str()) {
                masked = masked.replace(path.as_str(), shown);
            }
        }
        // The reader cut the line already; rewriting paths may have made it longer again.
        let text = cut_long(&masked);
        self.n += 1;
        let line = RunLine { n: self.n, stream, ts: Timestamp::now(), text };
        // A full disk must not take the run down: the exit status matters more.
        if let Ok(json) = serde_json::to_string(&line) {
            let _ = writeln!(self.out, "{json}");
        }
    }

    fn system(&mut self, text: &str) {
        self.line(Stream::System, text);
        let _ = self.flush();
    }

    /// Hand buffered lines to the kernel: enough for readers and for surviving the service.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flush, before the exit status is written after the log (no sync: see
    /// [`write_json_atomic`]).
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn check_inside(root: &Path, path: &Path, want: Want) -> Result<(), String> {
    let shown = path.strip_prefix(root).unwrap_or(path).display().to_string();
    let shown = if shown.is_empty() { ".".to_owned() } else { shown };
    let root = root.canonicalize().map_err(|e| format!("repository checkout is missing: {e}"))?;
    let resolved = path.canonicalize().map_err(|_| format!("{shown:?} does not exist in the repository"))?;
    if !resolved.starts_with(&root) {
        return Err(format!("{shown:?} leads outside the repository (through a symbolic link)"));
    }
    let ok = match want {
        Want::File => resolved.is_file(),
        Want::Directory => resolved.is_dir(),
    };
    if ok {
        Ok(())
    } else {
        let kind = match want {
            Want::File => "a file",
            Want::Directory => "a directory",
        };
        Err(format!("{shown:?} is not {kind}"))
    }
}

/// A command as a person would type it, for the log: words that need it are single-quoted.
pub fn display_command(argv: &[String]) -> String {
    argv.iter().map(|arg| quote(arg)).collect::<Vec<_>>().join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_display_like_shell() {
        let argv: Vec<String> = ["sh", "-c", "echo 'hi' && exit 1", "plain/arg:1"].map(String::from).to_vec();
        assert_eq!(display_command(&argv), r#"sh -c 'echo '\''hi'\'' && exit 1' plain/arg:1"#);
    }

    #[test]
    fn check_inside_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("Dockerfile"), "FROM scratch").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("evil")).unwrap();
        assert!(check_inside(&root, &root.join("Dockerfile"), Want::File).is_ok());
        assert!(check_inside(&root, &root.join("sub"), Want::Directory).is_ok());
        assert!(check_inside(&root, &root.join("evil"), Want::File).unwrap_err().contains("outside"));
        assert!(check_inside(&root, &root.join("nope"), Want::File).unwrap_err().contains("does not exist"));
        assert!(check_inside(&root, &root.join("sub"), Want::File).unwrap_err().contains("not a file"));
    }
}
