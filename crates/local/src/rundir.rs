//! The run directory: the on-disk protocol between the service and a run's shim.
//!
//! ```text
//! <data>/runs/<run id>/
//!   lock       flock'ed by the shim for its whole life (held ⇔ the run is going)
//!   meta.json  written by the service before the shim starts: its containers and images
//!   shim.pid   written by the shim first thing: where to send stop signals
//!   step.json  the running step's process group (and its start time), while a step runs
//!   log.jsonl  one `RunLine` per line, appended by the shim
//!   exit.json  how the run ended, renamed into place after the log is complete
//! ```
//!
//! The service never writes `log.jsonl` or `exit.json`; the shim never writes `meta.json`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use jobforge_core::ports::RunExit;

/// How a run ended, as the shim records it. `step` is the index of the last step that ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ExitRecord {
    Exited { code: i32, step: usize },
    Signaled { signal: i32, step: usize },
    StartFailed { message: String, step: usize },
}

impl From<ExitRecord> for RunExit {
    fn from(record: ExitRecord) -> RunExit {
        match record {
            ExitRecord::Exited { code, .. } => RunExit::Exited { code },
            ExitRecord::Signaled { signal, .. } => RunExit::Signaled { signal },
            ExitRecord::StartFailed { message, .. } => RunExit::StartFailed { message },
        }
    }
}

/// The process group of the step running now, as the shim records it. The start time (in
/// clock ticks since boot, from `/proc/<pid>/stat`) tells the group apart from a later process
/// that happens to get the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepGroup {
    pub pgid: i32,
    pub start: u64,
}

impl StepGroup {
    /// The group of process `pid` (its own group leader), if it is alive.
    pub fn of(pid: i32) -> Option<StepGroup> {
        Some(StepGroup { pgid: pid, start: start_time(pid)? })
    }

    /// Whether the recorded leader is still the same process.
    pub fn is_alive(&self) -> bool {
        start_time(self.pgid) == Some(self.start)
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// What the service records about a run before starting its shim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Containers this run creates, removed by force when a stop is forced.
    #[serde(default)]
    pub containers: Vec<String>,
    /// Local image names this run creates, removed from local storage at cleanup (the layers
    /// stay, as the build cache).
    #[serde(default)]
    pub images: Vec<String>,
}

/// Paths of one run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(dir: PathBuf) -> Self {
        RunDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub fn meta_path(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }

    pub fn step_path(&self) -> PathBuf {
        self.dir.join("step.json")
    }

    pub fn exit_path(&self) -> PathBuf {
        self.dir.join("exit.json")
    }

    /// Where the shim's own stderr goes (its panics, a failed exec of the shim itself).
    pub fn shim_err_path(&self) -> PathBuf {
        self.dir.join("shim.err")
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Whether a live shim holds the lock.
    pub fn is_running(&self) -> io::Result<bool> {
        let file = match File::open(self.lock_path()) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err),
        };
        Ok(!try_lock(&file)?)
    }

    /// Block the calling thread until no shim holds the lock.
    pub fn wait_unlocked(&self) -> io::Result<()> {
        let file = File::open(self.lock_path())?;
        lock_blocking(&file)
    }

    pub fn read_exit(&self) -> io::Result<Option<ExitRecord>> {
        read_json(&self.exit_path())
    }

    pub fn read_meta(&self) -> io::Result<RunMeta> {
        Ok(read_json(&self.meta_path())?.unwrap_or_default())
    }

    pub fn write_meta(&self, meta: &RunMeta) -> io::Result<()> {
        write_json_atomic(&self.meta_path(), meta)
    }

    pub fn read_step(&self) -> io::Result<Option<StepGroup>> {
        read_json(&self.step_path())
    }

    /// Renamed into place, so its modification time (when the run began) is set once: a
    /// reader between a plain write's create and write would see another time than later ones.
    pub fn write_pid(&self, pid: u32) -> io::Result<()> {
        write_atomic(&self.pid_path(), pid.to_string().as_bytes())
    }

    pub fn read_pid(&self) -> io::Result<Option<i32>> {
        match fs::read_to_string(self.pid_path()) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Take the exclusive lock without waiting; `false` if someone else holds it.
pub fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid, open descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(err) }
}

fn lock_blocking(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: as in try_lock.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Open (creating) a lock file and take its lock; the lock lives as long as the returned file
/// and any process that inherits its descriptor.
pub fn create_locked(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
    if try_lock(&file)? {
        Ok(file)
    } else {
        Err(io::Error::new(io::ErrorKind::WouldBlock, "run lock is held by another process"))
    }
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Write `value` to a temp file and rename it into place: readers see all of it or nothing.
///
/// No fsync: what must survive is a crash of the service or the shim, and the page cache
/// outlives both. A crash of the machine loses the runs themselves, so syncing would buy
/// nothing for its cost on every step.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    File::create(&tmp)?.write_all(bytes)?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_across_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().to_path_buf());
        assert!(!run.is_running().unwrap(), "no lock file yet");
        let held = create_locked(&run.lock_path()).unwrap();
        assert!(run.is_running().unwrap());
        assert!(create_locked(&run.lock_path()).is_err());
        drop(held);
        assert!(!run.is_running().unwrap());
    }

    #[test]
    fn a_step_group_is_recognised_by_its_start_time() {
        let me = StepGroup::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        assert!(!StepGroup { start: me.start + 1, ..me }.is_alive(), "same id, another process");
    }

    #[test]
    fn exit_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().to_path_buf());
        assert_eq!(run.read_exit().unwrap(), None);
        let exit = ExitRecord::Exited { code: 3, step: 2 };
        write_json_atomic(&run.exit_path(), &exit).unwrap();
        assert_eq!(run.read_exit().unwrap(), Some(exit));
    }
}
