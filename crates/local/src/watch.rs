//! [`Watcher`]: one inotify instance per backend, shared by every follower.
//!
//! The kernel allows few inotify instances per user (128 by default), so one per followed run
//! would run out with a few busy jobs. Here a single instance watches each run directory once,
//! however many followers it has, and a task fans its events out to them.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;

/// Shared inotify instance.
pub struct Watcher {
    watches: Mutex<Watches>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    by_path: HashMap<PathBuf, Watched>,
    next_id: u64,
}

struct Watched {
    wd: WatchDescriptor,
    followers: HashMap<u64, Arc<Notify>>,
}

/// A follower's registration; the watch goes away with its last guard.
pub struct WatchGuard {
    path: PathBuf,
    id: u64,
    notify: Arc<Notify>,
    watcher: Arc<Watcher>,
}

impl WatchGuard {
    /// Resolves after the next change in the directory, or at once if one happened since the
    /// last call (a change is never lost between a read and this wait).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.watcher.state);
        let Some(watched) = state.by_path.get_mut(&self.path) else { return };
        watched.followers.remove(&self.id);
        if watched.followers.is_empty() {
            let wd = watched.wd.clone();
            state.by_path.remove(&self.path);
            // The watch is gone already if the directory was removed; that is fine.
            let _ = lock(&self.watcher.watches).remove(wd);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Watcher {
    /// Start watching; must be called within a tokio runtime (the fan-out task runs on it).
    pub fn start() -> io::Result<Arc<Watcher>> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let mut events = inotify.into_event_stream([0u8; 8192])?;
        let state = Arc::new(Mutex::new(State::default()));
        let fan_out = state.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                let state = lock(&fan_out);
                for watched in state.by_path.values().filter(|w| w.wd == event.wd) {
                    for notify in watched.followers.values() {
                        notify.notify_one();
                    }
                }
            }
        });
        Ok(Arc::new(Watcher { watches: Mutex::new(watches), state }))
    }

    /// Follow changes to files in `dir`.
    pub fn watch(self: &Arc<Self>, dir: &Path) -> io::Result<WatchGuard> {
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        let notify = Arc::new(Notify::new());
        if let Some(watched) = state.by_path.get_mut(dir) {
            watched.followers.insert(id, notify.clone());
        } else {
            let mask = WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE;
            let wd = lock(&self.watches).add(dir, mask)?;
            state.by_path.insert(dir.to_path_buf(), Watched { wd, followers: HashMap::from([(id, notify.clone())]) });
        }
        Ok(WatchGuard { path: dir.to_path_buf(), id, notify, watcher: self.clone() })
    }
}
