//! The fake's state store, with the rules of Consul's (`agent/consul/state/kvs.go`,
//! `session.go`, `graveyard.go`): KV entries and their tombstones, sessions and their TTL
//! timers, lock-delays, the one-node catalog, one raft-like index and the per-table indexes that
//! blocking queries report.
//!
//! Every write goes through [`Store::write`] or [`Store::try_write`]: one raft entry, so the
//! index grows by one even when the entry changes nothing (a failed CAS, an idempotent set), as
//! an applied raft log entry does; a table's index moves only when that table changes. Each
//! commit wakes blocking queries through a watch channel. Checks that Consul makes before raft
//! (ACLs, lock-delay) refuse through `try_write` without using an index.
//!
//! Nothing here knows HTTP: messages are Consul's error strings, and the HTTP layer decides
//! their status codes. Timers are data (`expires`); the reaper in `session` acts on them.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Consul's `structs.MaxLockDelay`: a session's lock-delay is capped at this.
pub(crate) const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// One KV pair, as `structs.DirEntry`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    /// Empty is Go's nil slice: it reads back as `"Value": null`.
    pub value: Vec<u8>,
    pub flags: u64,
    pub lock_index: u64,
    /// The holder; `None` is Go's `""`.
    pub session: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Entry {
    /// `DirEntry.Equal`: what decides that a set changes nothing (indexes are not compared).
    fn same_content(&self, other: &Entry) -> bool {
        self.lock_index == other.lock_index
            && self.key == other.key
            && self.flags == other.flags
            && self.value == other.value
            && self.session == other.session
    }
}

/// `structs.SessionBehavior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behavior {
    Release,
    Delete,
}

impl Behavior {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// `structs.ServiceCheck`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ServiceCheck {
    pub id: String,
    pub namespace: String,
}

/// `structs.Session`. The `Option`s keep Go's nil-versus-empty distinction, which the JSON
/// shows (`null` against `[]`).
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub lock_delay_nanos: i64,
    pub behavior: Behavior,
    /// As sent (`"30s"`); Consul never rewrites it.
    pub ttl: String,
    /// The parsed TTL; zero for none.
    pub ttl_duration: Duration,
    pub node_checks: Option<Vec<String>>,
    pub service_checks: Option<Vec<ServiceCheck>>,
    /// The pre-1.7 field, kept only when it holds more than the default.
    pub checks: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    /// `Session.CheckIDs`: every check the session is tied to.
    pub(crate) fn check_ids(&self) -> Vec<String> {
        let mut ids = self.checks.clone();
        ids.extend(self.node_checks.iter().flatten().cloned());
        ids.extend(self.service_checks.iter().flatten().map(|c| c.id.clone()));
        ids
    }
}

/// A health check on the fake's node.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub id: String,
    pub name: String,
    pub passing: bool,
    pub output: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Check {
    pub(crate) fn status(&self) -> &'static str {
        if self.passing { "passing" } else { "critical" }
    }
}

/// A service instance registered on the fake's node.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// The `consul` service has none; configured services have one TTL-style check.
    pub check: Option<Check>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The one node of this single-agent "cluster".
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub serf_check: Check,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Debug)]
pub(crate) struct Catalog {
    pub node: Node,
    pub instances: Vec<Instance>,
    /// The `services` table index: what a lookup of an unknown service reports.
    pub services_index: u64,
    /// Consul's `service.<name>` index entries, moved by registrations and check changes.
    pub service_indexes: BTreeMap<String, u64>,
}

impl Catalog {
    /// The index a catalog or health lookup of `name` reports.
    pub(crate) fn service_index(&self, name: &str) -> u64 {
        self.service_indexes.get(name).copied().unwrap_or(self.services_index)
    }

    fn check_status(&self, node: &str, id: &str) -> Option<&Check> {
        if node != self.node.name {
            return None;
        }
        if id == self.node.serf_check.id {
            return Some(&self.node.serf_check);
        }
        self.instances.iter().filter_map(|i| i.check.as_ref()).find(|c| c.id == id)
    }
}

pub(crate) struct State {
    /// The raft index of the last applied write.
    pub index: u64,
    pub kvs_index: u64,
    pub tombstones_index: u64,
    pub sessions_index: u64,
    pub kv: BTreeMap<String, Entry>,
    /// Deleted keys (or deleted prefixes) and the index they were deleted at, so that a list's
    /// index does not slide back after a delete; reaped by Consul's tombstone GC.
    pub tombstones: BTreeMap<String, u64>,
    /// By lower-cased ID: Consul's session index compares IDs case-insensitively.
    pub sessions: BTreeMap<String, Session>,
    /// When each TTL session expires unless renewed (leader-local in Consul, not raft state).
    pub expires: BTreeMap<String, Instant>,
    /// Keys that may not be acquired before the instant (leader-local in Consul too).
    pub lock_delays: BTreeMap<String, Instant>,
    pub catalog: Catalog,
}

impl State {
    /// `kvsMaxIndex`: the KV table's index, tombstones included.
    pub(crate) fn kvs_max_index(&self) -> u64 {
        self.kvs_index.max(self.tombstones_index)
    }

    /// `KVSGet`: the table index and the entry.
    pub(crate) fn kv_get(&self, key: &str) -> (u64, Option<&Entry>) {
        (self.kvs_max_index(), self.kv.get(key))
    }

    /// `kvsListTxn`: entries under `prefix` sorted by key, and the index a list reports — the
    /// highest modify index among them and the prefix's tombstones, or the whole table's when
    /// there is none of either (or the prefix is empty).
    pub(crate) fn kv_list(&self, prefix: &str) -> (u64, Vec<&Entry>) {
        let entries: Vec<&Entry> =
            self.kv.range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, e)| e).collect();
        let mut index = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        if prefix.is_empty() {
            index = self.kvs_max_index();
        } else {
            let graveyard = self
                .tombstones
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, i)| *i)
                .max()
                .unwrap_or(0);
            index = index.max(graveyard);
        }
        if index == 0 {
            index = self.kvs_max_index();
        }
        (index, entries)
    }

    /// The expiry of a lock-delay on `key`, if one is still running at `now`.
    pub(crate) fn lock_delay(&self, key: &str, now: Instant) -> Option<Instant> {
        self.lock_delays.get(key).copied().filter(|until| *until > now)
    }

    pub(crate) fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.get(&id.to_lowercase())
    }

    /// The earliest TTL expiry, for the reaper.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expires.values().min().copied()
    }
}

/// How a KV write is applied, from the PUT's query (`KVSRequest.Op`).
#[derive(Clone, Debug)]
pub(crate) enum KvOp {
    Set,
    Cas(u64),
    Lock(String),
    Unlock(String),
}

/// One write in progress: the state and the raft index it commits at.
pub(crate) struct Txn<'a> {
    pub state: &'a mut State,
    pub index: u64,
    /// The TTL timers changed (session created, destroyed or renewed): wake the reaper.
    timers_changed: bool,
}

impl Txn<'_> {
    fn insert_entry(&mut self, entry: Entry) {
        self.state.kvs_index = self.index;
        self.state.kv.insert(entry.key.clone(), entry);
    }

    /// `kvsSetTxn`. The entry keeps its create index; without `update_session` it keeps its
    /// holder. It does NOT keep its lock index: a plain set or CAS stores the request's, which is
    /// zero over HTTP. An unchanged entry keeps its modify index and touches no table.
    fn kv_set_entry(&mut self, mut entry: Entry, update_session: bool) {
        let existing = self.state.kv.get(&entry.key);
        entry.create_index = existing.map_or(self.index, |e| e.create_index);
        if !update_session {
            entry.session = existing.and_then(|e| e.session.clone());
        }
        if let Some(existing) = existing
            && existing.same_content(&entry)
        {
            return;
        }
        entry.modify_index = self.index;
        self.insert_entry(entry);
    }

    /// Apply a KV PUT; `Err` is an FSM error (Consul answers 500 with it).
    pub(crate) fn kv_put(&mut self, op: &KvOp, key: &str, value: Vec<u8>, flags: u64) -> Result<bool, String> {
        let entry =
            Entry { key: key.to_owned(), value, flags, lock_index: 0, session: None, create_index: 0, modify_index: 0 };
        match op {
            KvOp::Set => {
                self.kv_set_entry(entry, false);
                Ok(true)
            }
            KvOp::Cas(expected) => {
                // `kvsSetCASTxn`: 0 means only if absent; otherwise the modify index must match.
                let current = self.state.kv.get(key).map(|e| e.modify_index);
                let matches = match (current, *expected) {
                    (None, 0) => true,
                    (Some(current), expected) => expected != 0 && current == expected,
                    (None, _) => false,
                };
                if matches {
                    self.kv_set_entry(entry, false);
                }
                Ok(matches)
            }
            KvOp::Lock(session) => self.kv_lock(entry, session),
            KvOp::Unlock(session) => self.kv_unlock(entry, session),
        }
    }

    /// `kvsLockTxn`: acquire if unlocked or already held by `session`; a fresh holder bumps the
    /// lock index, the same holder keeps it.
    fn kv_lock(&mut self, mut entry: Entry, session: &str) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".to_owned());
        }
        if self.state.session(session).is_none() {
            return Err(format!("invalid session {}", super::duration::go_quote(session)));
        }
        match self.state.kv.get(&entry.key) {
            Some(existing) if existing.session.as_deref() == Some(session) => {
                entry.lock_index = existing.lock_index;
            }
            Some(existing) if existing.session.is_some() => return Ok(false),
            Some(existing) => entry.lock_index = existing.lock_index + 1,
            None => entry.lock_index = 1,
        }
        entry.session = Some(session.to_owned());
        self.kv_set_entry(entry, true);
        Ok(true)
    }

    /// `kvsUnlockTxn`: only the holder releases; the lock index stays. The request's value and
    /// flags are written too, as Consul does (a release with an empty body empties the value).
    fn kv_unlock(&mut self, mut entry: Entry, session: &str) -> Result<bool, String> {
        if session.is_empty() {
            return Err("missing session".to_owned());
        }
        let Some(existing) = self.state.kv.get(&entry.key) else { return Ok(false) };
        if existing.session.as_deref() != Some(session) {
            return Ok(false);
        }
        entry.lock_index = existing.lock_index;
        entry.session = None;
        self.kv_set_entry(entry, true);
        Ok(true)
    }

    /// `kvsDeleteTxn`: remove the key and leave a tombstone at this index.
    pub(crate) fn kv_delete(&mut self, key: &str) {
        if self.state.kv.remove(key).is_some() {
            self.state.tombstones.insert(key.to_owned(), self.index);
            self.state.tombstones_index = self.index;
            self.state.kvs_index = self.index;
        }
    }

    /// `kvsDeleteCASTxn`: delete only at the given modify index. A missing key answers true
    /// (there is nothing left to delete), whatever the index.
    pub(crate) fn kv_delete_cas(&mut self, key: &str, expected: u64) -> bool {
        match self.state.kv.get(key).map(|e| e.modify_index) {
            None => true,
            Some(current) if current == expected => {
                self.kv_delete(key);
                true
            }
            Some(_) => false,
        }
    }

    /// `kvsDeleteTreeTxn`: delete every key under `prefix`, leaving one tombstone for the
    /// prefix itself (none when the whole store goes).
    pub(crate) fn kv_delete_tree(&mut self, prefix: &str) {
        let doomed: Vec<String> = self
            .state
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if doomed.is_empty() {
            return;
        }
        for key in &doomed {
            self.state.kv.remove(key);
        }
        if !prefix.is_empty() {
            self.state.tombstones.insert(prefix.to_owned(), self.index);
            self.state.tombstones_index = self.index;
        }
        self.state.kvs_index = self.index;
    }

    /// `sessionCreateTxn`: the node and every check must exist, and no check may be critical.
    pub(crate) fn session_create(&mut self, mut session: Session, expires: Option<Instant>) -> Result<(), String> {
        let catalog = &self.state.catalog;
        if session.node != catalog.node.name {
            return Err("Missing node registration".to_owned());
        }
        for id in session.check_ids() {
            match catalog.check_status(&session.node, &id) {
                None => return Err(format!("Missing check '{id}' registration")),
                Some(check) if !check.passing => return Err(format!("Check '{id}' is in critical state")),
                Some(_) => {}
            }
        }
        session.create_index = self.index;
        session.modify_index = self.index;
        let id = session.id.to_lowercase();
        if let Some(expires) = expires {
            self.state.expires.insert(id.clone(), expires);
            self.timers_changed = true;
        }
        self.state.sessions.insert(id, session);
        self.state.sessions_index = self.index;
        Ok(())
    }

    /// `deleteSessionTxn`: remove the session, then release (or delete) every key it holds and
    /// start each key's lock-delay. Returns false if there was no such session.
    pub(crate) fn session_destroy(&mut self, id: &str, now: Instant) -> bool {
        let id = id.to_lowercase();
        let Some(session) = self.state.sessions.remove(&id) else { return false };
        self.state.sessions_index = self.index;
        if self.state.expires.remove(&id).is_some() {
            self.timers_changed = true;
        }
        let delay = Duration::from_nanos(session.lock_delay_nanos.max(0) as u64).min(MAX_LOCK_DELAY);
        // Locks record the session ID as the client sent it; compare case-insensitively.
        let held: Vec<Entry> = self
            .state
            .kv
            .values()
            .filter(|e| e.session.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&session.id)))
            .cloned()
            .collect();
        for mut entry in held {
            let key = entry.key.clone();
            match session.behavior {
                Behavior::Release => {
                    entry.session = None;
                    self.kv_set_entry(entry, true);
                }
                Behavior::Delete => self.kv_delete(&key),
            }
            if !delay.is_zero() {
                self.state.lock_delays.insert(key, now + delay);
            }
        }
        true
    }

    /// Reset a TTL session's timer (renew). Not a raft write in Consul; it uses no index.
    pub(crate) fn reset_timer(&mut self, id: &str, expires: Instant) {
        self.state.expires.insert(id.to_lowercase(), expires);
        self.timers_changed = true;
    }

    /// Set the status of every configured instance of `service`; a check turning critical
    /// invalidates the sessions tied to it, in the same write (`ensureCheckTxn`). Returns false
    /// if no instance has that name.
    pub(crate) fn set_service_health(&mut self, service: &str, passing: bool, now: Instant) -> bool {
        let index = self.index;
        let mut found = false;
        let mut turned_critical = Vec::new();
        for instance in self.state.catalog.instances.iter_mut().filter(|i| i.name == service) {
            found = true;
            let Some(check) = instance.check.as_mut() else { continue };
            if check.passing == passing {
                continue;
            }
            check.passing = passing;
            check.output = if passing { String::new() } else { "TTL expired".to_owned() };
            check.modify_index = index;
            if !passing {
                turned_critical.push(check.id.clone());
            }
            self.state.catalog.service_indexes.insert(service.to_owned(), index);
        }
        let doomed: Vec<String> = self
            .state
            .sessions
            .values()
            .filter(|s| s.check_ids().iter().any(|c| turned_critical.contains(c)))
            .map(|s| s.id.clone())
            .collect();
        for id in doomed {
            self.session_destroy(&id, now);
        }
        found
    }

    /// Consul's tombstone GC: drop every tombstone (the leader reaps them once they are older
    /// than the tombstone TTL). Lists whose highest index was a tombstone go backwards.
    pub(crate) fn reap_tombstones(&mut self) {
        self.state.tombstones.clear();
    }
}

/// The state behind a lock, the channel that announces each new index, and the one that tells
/// the session reaper its timers changed.
pub(crate) struct Store {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    timers: watch::Sender<u64>,
}

impl Store {
    pub(crate) fn new(catalog: Catalog, index: u64) -> Store {
        let state = State {
            index,
            kvs_index: 0,
            tombstones_index: 0,
            sessions_index: 0,
            kv: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            sessions: BTreeMap::new(),
            expires: BTreeMap::new(),
            lock_delays: BTreeMap::new(),
            catalog,
        };
        Store { state: Mutex::new(state), changed: watch::channel(index).0, timers: watch::channel(0).0 }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the fake; the data is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Wakes on every committed write.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes when a TTL timer was set, reset or cleared.
    pub(crate) fn subscribe_timers(&self) -> watch::Receiver<u64> {
        self.timers.subscribe()
    }

    /// One raft entry: the index grows by one whatever `f` does, and waiters wake.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        match self.try_write(|txn| Ok::<R, std::convert::Infallible>(f(txn))) {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    /// A write refused before raft when `f` returns `Err`: nothing is committed and the index
    /// does not move. `f` must decide before it changes anything.
    pub(crate) fn try_write<R, E>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>) -> Result<R, E> {
        let (result, index, timers_changed) = {
            let mut state = self.lock();
            let index = state.index + 1;
            let mut txn = Txn { state: &mut state, index, timers_changed: false };
            let result = f(&mut txn)?;
            let timers_changed = txn.timers_changed;
            state.index = index;
            (result, index, timers_changed)
        };
        self.changed.send_replace(index);
        if timers_changed {
            self.timers.send_modify(|n| *n += 1);
        }
        Ok(result)
    }

    /// A change outside raft (a renew): timers only, no index.
    pub(crate) fn local<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let (result, timers_changed) = {
            let mut state = self.lock();
            let index = state.index;
            let mut txn = Txn { state: &mut state, index, timers_changed: false };
            let result = f(&mut txn);
            (result, txn.timers_changed)
        };
        if timers_changed {
            self.timers.send_modify(|n| *n += 1);
        }
        result
    }
}
