//! [`ConsulStore`]: the `Store` port on Consul KV, for several replicas sharing one state.
//!
//! ```text
//! <prefix>/jobs/<id>            a live job's record (JSON), written with check-and-set
//! <prefix>/history/<id>         a finished, cleaned-up job's record; kept to a count and an age
//! <prefix>/logs/<id>/<chunk>    the job's journal (lines and events), in chunks well under
//!                               Consul's value limit
//! <prefix>/kill/<id>            a kill request for the replica driving the job
//! ```
//!
//! Each replica remembers the ModifyIndex it last wrote or read per record; an update that finds
//! another index fails with `Conflict` (another replica drives the job now). Logs are appended
//! by the job's one driver: the current chunk is rewritten as lines arrive, and a new chunk is
//! started when it is full. Past the per-job cap, one marker line says the rest was not stored
//! in chunks; the live stream is not cut: later lines are served from memory on the driving
//! replica, and the newest of them (64 KiB) from a ring key that every replica reads.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use jobforge_core::events::EventEntry;
use jobforge_core::inprocess::JobSignals;
use jobforge_core::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, NewEvent, NewLogLine, Origin, RunCursor};
use jobforge_core::ports::{HistoryPage, JobFeed, JobRecords, LogArchive, Mailbox, StoreError};
use jobforge_core::record::{JobRecord, KillRequest};
use jobforge_core::{JobId, Phase, RunId, Stream, Timestamp};

use crate::client::{Blocking, ConsulClient, ConsulError};

/// Largest chunk of log lines in one key; Consul's default value limit is 512 KiB.
const CHUNK_BYTES: usize = 32 * 1024;

/// Settings of the Consul store.
#[derive(Clone, Debug)]
pub struct ConsulStoreConfig {
    /// KV prefix, `jobforge-service` by default.
    pub prefix: String,
    /// Finished jobs kept in history, at most.
    pub history_count: usize,
    /// Finished jobs older than this leave the history.
    pub history_age: std::time::Duration,
    /// Bytes of log text stored per job; the live stream is not limited.
    pub log_cap_bytes: usize,
}

impl Default for ConsulStoreConfig {
    fn default() -> Self {
        ConsulStoreConfig {
            prefix: "jobforge-service".into(),
            history_count: 50,
            history_age: std::time::Duration::from_secs(30 * 24 * 3600),
            log_cap_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Job records and logs in Consul KV.
#[derive(Clone)]
pub struct ConsulStore {
    client: ConsulClient,
    config: Arc<ConsulStoreConfig>,
    /// ModifyIndex of each record as this replica last wrote or read it.
    versions: Arc<std::sync::Mutex<HashMap<JobId, u64>>>,
    /// Per job: where its log stands (loaded from Consul on first use).
    logs: Arc<Mutex<HashMap<JobId, Arc<Mutex<LogState>>>>>,
    /// Wakes readers on this replica at once after its own writes (others hear of them
    /// through blocking queries).
    signals: Arc<JobSignals>,
}

/// One stored line: the line as readers see it, plus its origin for idempotent appends.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredLine {
    #[serde(flatten)]
    line: LogLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<Origin>,
}

/// One stored event: the entry as readers see it, plus the engine's number for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredEvent {
    #[serde(flatten)]
    entry: EventEntry,
    n: u64,
}

/// What a chunk holds: lines (as chunks always have) and, since the state machine, events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredEntry {
    Event(StoredEvent),
    Line(StoredLine),
}

impl StoredEntry {
    fn seq(&self) -> u64 {
        match self {
            StoredEntry::Event(event) => event.entry.seq,
            StoredEntry::Line(line) => line.line.seq,
        }
    }

    fn origin(&self) -> Option<Origin> {
        match self {
            StoredEntry::Event(event) => Some(Origin::Engine { n: event.n }),
            StoredEntry::Line(line) => line.origin.clone(),
        }
    }

    fn entry(self) -> Entry {
        match self {
            StoredEntry::Event(event) => Entry::Event(event.entry),
            StoredEntry::Line(line) => Entry::Line(line.line),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            StoredEntry::Event(_) => 256,
            StoredEntry::Line(line) => line_bytes(line),
        }
    }
}

#[derive(Default)]
struct LogState {
    /// Number of the chunk being filled.
    chunk: u64,
    lines: Vec<StoredEntry>,
    bytes: usize,
    last_seq: u64,
    stored_bytes: usize,
    truncated: bool,
    origins: HashSet<Origin>,
    /// Lines past the cap: not stored in chunks, but kept here (the newest, up to a bound) so
    /// that the live stream goes on; the newest of them are also in the job's ring key.
    overflow: VecDeque<StoredLine>,
}

impl ConsulStore {
    pub fn new(client: ConsulClient, config: ConsulStoreConfig) -> Self {
        ConsulStore {
            client,
            config: Arc::new(config),
            versions: Arc::default(),
            logs: Arc::default(),
            signals: Arc::default(),
        }
    }

    fn job_key(&self, id: JobId) -> String {
        format!("{}/jobs/{id}", self.config.prefix)
    }

    fn history_key(&self, id: JobId) -> String {
        format!("{}/history/{id}", self.config.prefix)
    }

    fn logs_prefix(&self, id: JobId) -> String {
        format!("{}/logs/{id}/", self.config.prefix)
    }

    fn kills_prefix(&self) -> String {
        format!("{}/kill/", self.config.prefix)
    }

    /// Not a number, so never read as a chunk.
    fn ring_key(&self, id: JobId) -> String {
        format!("{}live", self.logs_prefix(id))
    }

    fn chunk_key(&self, id: JobId, chunk: u64) -> String {
        format!("{}{chunk:08}", self.logs_prefix(id))
    }

    fn remember(&self, id: JobId, index: u64) {
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).insert(id, index);
    }

    fn version(&self, id: JobId) -> Option<u64> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(&id).copied()
    }

    /// Read a record from `key`, remembering its index.
    async fn read_record(&self, key: &str, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let (entry, _) = self.client.get(key, None).await.map_err(unavailable)?;
        let Some(entry) = entry else { return Ok(None) };
        let record = decode_record(&entry.key, &entry.value)?;
        self.remember(id, entry.modify_index);
        Ok(Some(record))
    }

    /// Write `record` at its live key with check-and-set, and learn the new index.
    async fn write_live(&self, record: &JobRecord, cas: u64) -> Result<(), StoreError> {
        let key = self.job_key(record.id);
        if !self.client.put(&key, &encode_record(record)?, Some(cas)).await.map_err(unavailable)? {
            return Err(if cas == 0 { StoreError::Duplicate(record.id) } else { StoreError::Conflict(record.id) });
        }
        let (entry, _) = self.client.get(&key, None).await.map_err(unavailable)?;
        self.remember(record.id, entry.map_or(0, |e| e.modify_index));
        Ok(())
    }

    /// Move a finished, cleaned-up job to the history, then prune the history.
    async fn retire(&self, record: &JobRecord, cas: u64) -> Result<(), StoreError> {
        self.client.put(&self.history_key(record.id), &encode_record(record)?, None).await.map_err(unavailable)?;
        if !self.client.delete(&self.job_key(record.id), Some(cas)).await.map_err(unavailable)? {
            return Err(StoreError::Conflict(record.id));
        }
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).remove(&record.id);
        self.logs.lock().await.remove(&record.id);
        // A kill request that arrived too late has nothing left to do.
        self.client.delete(&format!("{}{}", self.kills_prefix(), record.id), None).await.map_err(unavailable)?;
        self.prune_history().await
    }

    /// Keep the history to its count and age; the oldest go first (job ids sort by time).
    async fn prune_history(&self) -> Result<(), StoreError> {
        let prefix = format!("{}/history/", self.config.prefix);
        let mut ids: Vec<JobId> = self
            .client
            .keys(&prefix, None)
            .await
            .map_err(unavailable)?
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix)?.parse().ok())
            .collect();
        ids.sort();
        let too_many = ids.len().saturating_sub(self.config.history_count);
        let cutoff = Timestamp::now().unix_millis() - self.config.history_age.as_millis() as i64;
        for (position, id) in ids.iter().enumerate() {
            let too_old = id.as_uuid().get_timestamp().is_some_and(|ts| {
                let (secs, nanos) = ts.to_unix();
                (secs as i64) * 1000 + i64::from(nanos / 1_000_000) < cutoff
            });
            if position < too_many || too_old {
                self.client.delete(&self.history_key(*id), None).await.map_err(unavailable)?;
                self.client.delete_tree(&self.logs_prefix(*id)).await.map_err(unavailable)?;
            }
        }
        Ok(())
    }

    /// The log state of a job, loaded from Consul the first time.
    async fn log_state(&self, job: JobId) -> Result<Arc<Mutex<LogState>>, StoreError> {
        if let Some(state) = self.logs.lock().await.get(&job) {
            return Ok(state.clone());
        }
        let mut state = LogState::default();
        let chunks = self.read_chunks(job).await?;
        for (number, entries) in chunks {
            state.chunk = number;
            state.bytes = 0;
            state.lines.clear();
            for entry in entries {
                state.note(&entry);
                state.bytes += entry.bytes();
                state.lines.push(entry);
            }
        }
        for line in self.read_ring(job).await? {
            if line.line.seq > state.last_seq {
                state.note_overflow(line);
            }
        }
        let state = Arc::new(Mutex::new(state));
        Ok(self.logs.lock().await.entry(job).or_insert(state).clone())
    }

    /// Every chunk of a job's log, in order.
    async fn read_chunks(&self, job: JobId) -> Result<Vec<(u64, Vec<StoredEntry>)>, StoreError> {
        let prefix = self.logs_prefix(job);
        let (entries, _) = self.client.list(&prefix, None).await.map_err(unavailable)?;
        let mut chunks = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(number) = entry.key.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) else { continue };
            let lines: Vec<StoredEntry> = serde_json::from_slice(&entry.value)
                .map_err(|e| StoreError::Corrupt { id: entry.key.clone(), message: e.to_string() })?;
            chunks.push((number, lines));
        }
        chunks.sort_by_key(|(number, _)| *number);
        Ok(chunks)
    }

    async fn read_ring(&self, job: JobId) -> Result<Vec<StoredLine>, StoreError> {
        let (entry, _) = self.client.get(&self.ring_key(job), None).await.map_err(unavailable)?;
        let Some(entry) = entry else { return Ok(Vec::new()) };
        serde_json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt { id: entry.key, message: e.to_string() })
    }

    /// Every entry of a job in seq order: the chunks, and the lines past the cap (from memory
    /// on the replica driving the job, else from its ring key).
    async fn all_entries(&self, job: JobId) -> Result<Vec<Entry>, StoreError> {
        let mut entries: std::collections::BTreeMap<u64, Entry> = self
            .read_chunks(job)
            .await?
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .map(|stored| (stored.seq(), stored.entry()))
            .collect();
        let local: Vec<LogLine> = match self.logs.lock().await.get(&job).cloned() {
            Some(state) => state.lock().await.overflow.iter().map(|l| l.line.clone()).collect(),
            None => Vec::new(),
        };
        let overflow =
            if local.is_empty() { self.read_ring(job).await?.into_iter().map(|l| l.line).collect() } else { local };
        for line in overflow {
            entries.entry(line.seq).or_insert(Entry::Line(line));
        }
        Ok(entries.into_values().collect())
    }

    /// Every line of a job, in seq order.
    async fn all_lines(&self, job: JobId) -> Result<Vec<LogLine>, StoreError> {
        let entries = self.all_entries(job).await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Line(line) => Some(line),
                Entry::Event(_) => None,
            })
            .collect())
    }

    async fn exists(&self, job: JobId) -> Result<bool, StoreError> {
        for key in [self.job_key(job), self.history_key(job)] {
            if self.client.get(&key, None).await.map_err(unavailable)?.0.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl LogState {
    fn note(&mut self, entry: &StoredEntry) {
        self.last_seq = self.last_seq.max(entry.seq());
        if let Some(origin) = entry.origin() {
            self.origins.insert(origin);
        }
        if let StoredEntry::Line(line) = entry {
            self.stored_bytes += line.line.text.len();
            if line.line.stream == Stream::System && line.line.text.starts_with(TRUNCATED) {
                self.truncated = true;
            }
        }
    }

    /// Where following `run` resumes, from the origins archived.
    fn cursor(&self, run: &RunId, sequences: u64) -> RunCursor {
        let archived = self.origins.iter().filter_map(|origin| match origin {
            Origin::Run { run: of, n } if of == run => Some(*n),
            Origin::Run { .. } | Origin::Engine { .. } => None,
        });
        RunCursor::after(sequences, archived)
    }

    /// Keeps a line past the cap in memory (the newest, up to a bound), so that the live stream
    /// goes on although the chunks hold no more.
    fn keep_live(&mut self, new: &NewLogLine) {
        let line = LogLine {
            seq: self.last_seq + 1,
            ts: new.ts,
            phase: new.phase,
            test: new.test,
            stream: new.stream,
            text: new.text.clone(),
        };
        self.note_overflow(StoredLine { line, origin: new.origin.clone() });
    }

    fn note_overflow(&mut self, line: StoredLine) {
        self.last_seq = self.last_seq.max(line.line.seq);
        if let Some(origin) = &line.origin {
            self.origins.insert(origin.clone());
        }
        if self.overflow.len() == OVERFLOW_LINES {
            self.overflow.pop_front();
        }
        self.overflow.push_back(line);
    }

    /// The newest overflow lines that fit in the ring key.
    fn ring(&self) -> Vec<&StoredLine> {
        let mut bytes = 0;
        let mut ring: Vec<&StoredLine> = self
            .overflow
            .iter()
            .rev()
            .take_while(|line| {
                bytes += line_bytes(line);
                bytes <= RING_BYTES
            })
            .collect();
        ring.reverse();
        ring
    }
}

/// The text of the line that marks where a job's stored log was cut.
const TRUNCATED: &str = "log truncated:";

/// Lines past the cap kept in memory for the live stream, at most.
const OVERFLOW_LINES: usize = 100_000;

/// The newest lines past the cap, for readers on other replicas and for a driver taking the
/// job over, are rewritten into one key of at most this size: the live stream on every replica
/// goes on, and the store holds a constant amount more.
const RING_BYTES: usize = 64 * 1024;

fn line_bytes(line: &StoredLine) -> usize {
    line.line.text.len() + 96
}

fn unavailable(error: ConsulError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Consul's default limit on one value (`kv_max_value_size`).
pub const VALUE_LIMIT: usize = 512 * 1024;

/// The record as stored; one Consul cannot keep is refused here, before it is sent, rather
/// than retried for ever.
fn encode_record(record: &JobRecord) -> Result<Vec<u8>, StoreError> {
    let bytes =
        serde_json::to_vec(record).map_err(|e| StoreError::Unavailable(format!("cannot encode a job record: {e}")))?;
    if bytes.len() > VALUE_LIMIT {
        return Err(StoreError::TooLarge { id: record.id, bytes: bytes.len(), limit: VALUE_LIMIT });
    }
    Ok(bytes)
}

fn decode_record(key: &str, value: &[u8]) -> Result<JobRecord, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt { id: key.to_owned(), message: e.to_string() })
}

#[async_trait]
impl JobRecords for ConsulStore {
    fn value_limit(&self) -> Option<usize> {
        Some(VALUE_LIMIT)
    }

    async fn insert(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.write_live(record, 0).await?;
        self.signals.bump(record.id);
        Ok(())
    }

    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        let cas = match self.version(record.id) {
            Some(index) => index,
            // Not seen by this replica yet (a restart): read it to learn its index.
            None => match self.read_record(&self.job_key(record.id), record.id).await? {
                Some(_) => self.version(record.id).unwrap_or(0),
                None => return self.update_history(record).await,
            },
        };
        if !record.is_live() {
            self.retire(record, cas).await?;
        } else {
            self.write_live(record, cas).await?;
        }
        self.signals.bump(record.id);
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        if let Some(record) = self.read_record(&self.job_key(id), id).await? {
            return Ok(Some(record));
        }
        let (entry, _) = self.client.get(&self.history_key(id), None).await.map_err(unavailable)?;
        entry.map(|e| decode_record(&e.key, &e.value)).transpose()
    }

    async fn list(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError> {
        let mut records = Vec::new();
        for part in ["jobs", "history"] {
            let (entries, _) =
                self.client.list(&format!("{}/{part}/", self.config.prefix), None).await.map_err(unavailable)?;
            for entry in entries {
                records.push(decode_record(&entry.key, &entry.value)?);
            }
        }
        records.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        // A job moving to the history is briefly under both prefixes.
        records.dedup_by_key(|record| record.id);
        let total = records.len() as u64;
        Ok(HistoryPage { jobs: records.into_iter().skip(offset).take(limit).collect(), total })
    }

    async fn live(&self) -> Result<Vec<JobRecord>, StoreError> {
        let (entries, _) =
            self.client.list(&format!("{}/jobs/", self.config.prefix), None).await.map_err(unavailable)?;
        let mut live = Vec::new();
        for entry in entries {
            let record = decode_record(&entry.key, &entry.value)?;
            if record.is_live() {
                self.remember(record.id, entry.modify_index);
                live.push(record);
            }
        }
        Ok(live)
    }

    async fn check(&self) -> Result<(), StoreError> {
        match self.client.leader().await {
            Ok(leader) if !leader.is_empty() => Ok(()),
            Ok(_) => Err(StoreError::Unavailable("Consul has no cluster leader".into())),
            Err(error) => Err(unavailable(error)),
        }
    }
}

impl ConsulStore {
    /// Update a job that is in the history already (an ended job cleaned up again): it stays
    /// there, as it stays not live.
    async fn update_history(&self, record: &JobRecord) -> Result<(), StoreError> {
        let key = self.history_key(record.id);
        if record.is_live() || self.client.get(&key, None).await.map_err(unavailable)?.0.is_none() {
            return Err(StoreError::NotFound(record.id));
        }
        self.client.put(&key, &encode_record(record)?, None).await.map_err(unavailable)?;
        self.signals.bump(record.id);
        Ok(())
    }

    /// Add one entry to the state, starting a new chunk when the current one is full; returns
    /// the chunk that filled up, if one did.
    fn push_entry(&self, state: &mut LogState, entry: StoredEntry) -> Option<(u64, Vec<StoredEntry>)> {
        let mut full = None;
        if state.bytes + entry.bytes() > CHUNK_BYTES && !state.lines.is_empty() {
            full = Some((state.chunk, std::mem::take(&mut state.lines)));
            state.chunk += 1;
            state.bytes = 0;
        }
        state.note(&entry);
        state.bytes += entry.bytes();
        state.lines.push(entry);
        full
    }

    /// The stored form of a new line: itself, or the marker that the cap was reached.
    fn stored_line(&self, state: &LogState, new: &NewLogLine) -> (StoredLine, bool) {
        let over_cap = state.stored_bytes + new.text.len() > self.config.log_cap_bytes;
        let (text, stream) = if over_cap {
            (
                format!(
                    "{TRUNCATED} this job's stored log reached {} bytes; the rest was not stored",
                    self.config.log_cap_bytes
                ),
                Stream::System,
            )
        } else {
            (new.text.clone(), new.stream)
        };
        let line = StoredLine {
            line: LogLine { seq: state.last_seq + 1, ts: new.ts, phase: new.phase, test: new.test, stream, text },
            origin: new.origin.clone(),
        };
        (line, over_cap)
    }

    fn stored_event(state: &LogState, new: &NewEvent) -> StoredEntry {
        let entry = EventEntry { seq: state.last_seq + 1, ts: new.ts, event: new.event.clone() };
        StoredEntry::Event(StoredEvent { entry, n: new.n })
    }

    async fn put_json(&self, key: &str, value: &impl Serialize) -> Result<(), StoreError> {
        let value = serde_json::to_vec(value).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.client.put(key, &value, None).await.map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl LogArchive for ConsulStore {
    async fn append(&self, job: JobId, entries: &[NewEntry]) -> Result<u64, StoreError> {
        let state = self.log_state(job).await?;
        let mut state = state.lock().await;
        if state.last_seq == 0 && !self.exists(job).await? {
            return Err(StoreError::NotFound(job));
        }
        let mut full_chunks: Vec<(u64, Vec<StoredEntry>)> = Vec::new();
        let (mut changed, mut overflowed) = (false, false);
        for new in entries {
            if new.origin().is_some_and(|origin| state.origins.contains(&origin)) {
                continue;
            }
            let stored = match new {
                // Events are few and small: they are stored whatever the cap.
                NewEntry::Event(event) => Self::stored_event(&state, event),
                NewEntry::Line(line) if state.truncated => {
                    state.keep_live(line);
                    overflowed = true;
                    continue;
                }
                NewEntry::Line(line) => {
                    let (stored, over_cap) = self.stored_line(&state, line);
                    if over_cap {
                        // The line that hit the cap was replaced by the marker in the chunks only.
                        full_chunks.extend(self.push_entry(&mut state, StoredEntry::Line(stored)));
                        state.keep_live(line);
                        (changed, overflowed) = (true, true);
                        continue;
                    }
                    StoredEntry::Line(stored)
                }
            };
            full_chunks.extend(self.push_entry(&mut state, stored));
            changed = true;
        }
        for (number, chunk) in &full_chunks {
            self.put_json(&self.chunk_key(job, *number), chunk).await?;
        }
        if changed {
            self.put_json(&self.chunk_key(job, state.chunk), &state.lines).await?;
        }
        if overflowed {
            self.put_json(&self.ring_key(job), &state.ring()).await?;
        }
        self.signals.bump(job);
        Ok(state.last_seq)
    }

    async fn cursor(&self, job: JobId, run: &RunId, sequences: u64) -> Result<RunCursor, StoreError> {
        let state = self.log_state(job).await?;
        let state = state.lock().await;
        Ok(state.cursor(run, sequences))
    }

    async fn logs(&self, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        let lines = self.all_lines(job).await?;
        Ok(lines
            .into_iter()
            .filter(|l| l.seq > query.after)
            .filter(|l| query.phase.is_none_or(|p| l.phase == p))
            .filter(|l| query.test.is_none_or(|t| l.test == Some(t)))
            .take(query.limit)
            .collect())
    }

    async fn tail(&self, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Result<Vec<LogLine>, StoreError> {
        let lines: Vec<LogLine> = self
            .all_lines(job)
            .await?
            .into_iter()
            .filter(|l| l.phase == phase && (test.is_none() || l.test == test))
            .collect();
        Ok(lines[lines.len().saturating_sub(n)..].to_vec())
    }

    async fn entries(&self, job: JobId, query: &EntryQuery) -> Result<Vec<Entry>, StoreError> {
        let entries = self.all_entries(job).await?;
        Ok(entries
            .into_iter()
            .filter(|entry| entry.seq() > query.after)
            .filter(|entry| match entry {
                Entry::Line(line) => query.phase.is_none_or(|p| line.phase == p),
                Entry::Event(_) => true,
            })
            .take(query.limit)
            .collect())
    }
}

#[async_trait]
impl Mailbox for ConsulStore {
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError> {
        self.put_json(&format!("{}{id}", self.kills_prefix()), request).await
    }

    async fn kill_requests(
        &self,
        version: u64,
        limit: std::time::Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError> {
        let prefix = self.kills_prefix();
        let blocking = (version > 0).then_some(Blocking { index: version, wait: limit });
        let (entries, meta) = self.client.list(&prefix, blocking).await.map_err(unavailable)?;
        let requests = entries
            .iter()
            .filter_map(|entry| {
                let id: JobId = entry.key.strip_prefix(&prefix)?.parse().ok()?;
                match serde_json::from_slice(&entry.value) {
                    Ok(request) => Some((id, request)),
                    Err(error) => {
                        tracing::warn!(key = %entry.key, %error, "ignoring an unreadable kill request");
                        None
                    }
                }
            })
            .collect();
        let mut next = Blocking { index: version, wait: limit };
        next.advance(meta.index);
        Ok((next.index, requests))
    }

    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError> {
        self.client.delete(&format!("{}{id}", self.kills_prefix()), None).await.map_err(unavailable)?;
        Ok(())
    }
}

/// Versions are Consul indexes, which one raft sequence orders across keys: a blocking query
/// on the job's journal keys (their names only) wakes on any append by any replica, and on
/// this replica its own appends wake readers at once.
#[async_trait]
impl JobFeed for ConsulStore {
    async fn changed(&self, job: JobId, version: u64, limit: std::time::Duration) -> Result<u64, StoreError> {
        let (record, logs) = (self.job_key(job), self.logs_prefix(job));
        if version == 0 {
            return self.current_index(&record, &logs).await;
        }
        let blocking = Some(Blocking { index: version, wait: limit });
        let local = async {
            let seen = self.signals.changed(job, 0, std::time::Duration::ZERO).await;
            // Only a write of this replica's ends this wait early; the blocking queries bound it.
            if self.signals.changed(job, seen, limit).await == seen {
                std::future::pending::<()>().await;
            }
        };
        let index = tokio::select! {
            answer = self.client.watch_keys(&logs, blocking) => answer.map_err(unavailable)?.1.index,
            answer = self.client.get(&record, blocking) => answer.map_err(unavailable)?.1.index,
            // Our own write: Consul's indexes show it already.
            () = local => self.current_index(&record, &logs).await?,
        };
        let mut next = Blocking { index: version, wait: limit };
        next.advance(index);
        Ok(next.index)
    }
}

impl ConsulStore {
    /// The index of the job's record and journal keys now.
    async fn current_index(&self, record: &str, logs: &str) -> Result<u64, StoreError> {
        let (_, of_record) = self.client.get(record, None).await.map_err(unavailable)?;
        let (_, of_logs) = self.client.watch_keys(logs, None).await.map_err(unavailable)?;
        Ok(of_record.index.max(of_logs.index).max(1))
    }
}
