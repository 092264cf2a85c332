//! [`MemoryStore`]: the four store ports in memory. Records are kept as their stored JSON and
//! decoded on every read, as the real stores do, so a record that would not survive a store
//! does not survive this one either.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use jobforge_core::events::EventEntry;
use jobforge_core::inprocess::{JobSignals, ProcessMailbox};
use jobforge_core::logs::{Entry, EntryQuery, LogLine, LogQuery, NewEntry, Origin, RunCursor};
use jobforge_core::ports::{HistoryPage, JobFeed, JobRecords, LogArchive, Mailbox, StoreError};
use jobforge_core::record::{JobRecord, KillRequest};
use jobforge_core::{JobId, Phase, RunId};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    signals: JobSignals,
    mailbox: ProcessMailbox,
}

#[derive(Default)]
struct State {
    records: BTreeMap<JobId, String>,
    journals: BTreeMap<JobId, Journal>,
}

#[derive(Default)]
struct Journal {
    entries: Vec<(Entry, Option<Origin>)>,
    origins: BTreeSet<Origin>,
}

impl MemoryStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every entry of a job's journal with its origin, for tests to check.
    pub fn journal(&self, job: JobId) -> Vec<(Entry, Option<Origin>)> {
        self.state().journals.get(&job).map(|j| j.entries.clone()).unwrap_or_default()
    }

    /// Every job in the store.
    pub fn jobs(&self) -> Vec<JobId> {
        self.state().records.keys().copied().collect()
    }
}

fn decode(id: JobId, json: &str) -> Result<JobRecord, StoreError> {
    serde_json::from_str(json).map_err(|err| StoreError::Corrupt { id: id.to_string(), message: err.to_string() })
}

fn encode(record: &JobRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|err| StoreError::Unavailable(format!("cannot encode a record: {err}")))
}

#[async_trait]
impl JobRecords for MemoryStore {
    async fn insert(&self, record: &JobRecord) -> Result<(), StoreError> {
        let json = encode(record)?;
        {
            let mut state = self.state();
            if state.records.contains_key(&record.id) {
                return Err(StoreError::Duplicate(record.id));
            }
            state.records.insert(record.id, json);
        }
        self.signals.bump(record.id);
        Ok(())
    }

    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        let json = encode(record)?;
        {
            let mut state = self.state();
            let Some(stored) = state.records.get_mut(&record.id) else {
                return Err(StoreError::NotFound(record.id));
            };
            *stored = json;
        }
        self.signals.bump(record.id);
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let json = self.state().records.get(&id).cloned();
        json.map(|json| decode(id, &json)).transpose()
    }

    async fn list(&self, limit: usize, offset: usize) -> Result<HistoryPage, StoreError> {
        let all: Vec<(JobId, String)> = self.state().records.iter().map(|(id, j)| (*id, j.clone())).collect();
        let mut records = all.iter().map(|(id, json)| decode(*id, json)).collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let total = records.len() as u64;
        Ok(HistoryPage { jobs: records.into_iter().skip(offset).take(limit).collect(), total })
    }

    async fn live(&self) -> Result<Vec<JobRecord>, StoreError> {
        let all: Vec<(JobId, String)> = self.state().records.iter().map(|(id, j)| (*id, j.clone())).collect();
        let mut live = Vec::new();
        for (id, json) in all {
            let record = decode(id, &json)?;
            if record.is_live() {
                live.push(record);
            }
        }
        live.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(live)
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl LogArchive for MemoryStore {
    async fn append(&self, job: JobId, entries: &[NewEntry]) -> Result<u64, StoreError> {
        let seq = {
            let mut state = self.state();
            if !state.records.contains_key(&job) {
                return Err(StoreError::NotFound(job));
            }
            let journal = state.journals.entry(job).or_default();
            for new in entries {
                let origin = new.origin();
                if let Some(origin) = &origin
                    && !journal.origins.insert(origin.clone())
                {
                    continue;
                }
                let seq = journal.entries.len() as u64 + 1;
                let entry = match new {
                    NewEntry::Line(line) => Entry::Line(LogLine {
                        seq,
                        ts: line.ts,
                        phase: line.phase,
                        test: line.test,
                        stream: line.stream,
                        text: line.text.clone(),
                    }),
                    NewEntry::Event(event) => {
                        Entry::Event(EventEntry { seq, ts: event.ts, event: event.event.clone() })
                    }
                };
                journal.entries.push((entry, origin));
            }
            journal.entries.len() as u64
        };
        self.signals.bump(job);
        Ok(seq)
    }

    async fn cursor(&self, job: JobId, run: &RunId, sequences: u64) -> Result<RunCursor, StoreError> {
        let state = self.state();
        let archived = state.journals.get(&job).into_iter().flat_map(|journal| {
            journal.origins.iter().filter_map(|origin| match origin {
                Origin::Run { run: of, n } if of == run => Some(*n),
                Origin::Run { .. } | Origin::Engine { .. } => None,
            })
        });
        Ok(RunCursor::after(sequences, archived.collect::<Vec<_>>()))
    }

    async fn logs(&self, job: JobId, query: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        Ok(self
            .lines(job)
            .into_iter()
            .filter(|l| l.seq > query.after)
            .filter(|l| query.phase.is_none_or(|p| l.phase == p))
            .filter(|l| query.test.is_none_or(|t| l.test == Some(t)))
            .take(query.limit)
            .collect())
    }

    async fn tail(&self, job: JobId, phase: Phase, test: Option<u32>, n: usize) -> Result<Vec<LogLine>, StoreError> {
        let lines: Vec<LogLine> =
            self.lines(job).into_iter().filter(|l| l.phase == phase && (test.is_none() || l.test == test)).collect();
        Ok(lines[lines.len().saturating_sub(n)..].to_vec())
    }

    async fn entries(&self, job: JobId, query: &EntryQuery) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .journal(job)
            .into_iter()
            .map(|(entry, _)| entry)
            .filter(|entry| entry.seq() > query.after)
            .filter(|entry| match entry {
                Entry::Line(line) => query.phase.is_none_or(|p| line.phase == p),
                Entry::Event(_) => true,
            })
            .take(query.limit)
            .collect())
    }
}

impl MemoryStore {
    fn lines(&self, job: JobId) -> Vec<LogLine> {
        self.journal(job)
            .into_iter()
            .filter_map(|(entry, _)| match entry {
                Entry::Line(line) => Some(line),
                Entry::Event(_) => None,
            })
            .collect()
    }
}

#[async_trait]
impl JobFeed for MemoryStore {
    async fn changed(&self, job: JobId, version: u64, limit: Duration) -> Result<u64, StoreError> {
        Ok(self.signals.changed(job, version, limit).await)
    }
}

#[async_trait]
impl Mailbox for MemoryStore {
    async fn request_kill(&self, id: JobId, request: &KillRequest) -> Result<(), StoreError> {
        self.mailbox.request_kill(id, request).await
    }

    async fn kill_requests(
        &self,
        version: u64,
        limit: Duration,
    ) -> Result<(u64, Vec<(JobId, KillRequest)>), StoreError> {
        self.mailbox.kill_requests(version, limit).await
    }

    async fn forget_kill_request(&self, id: JobId) -> Result<(), StoreError> {
        self.mailbox.forget_kill_request(id).await
    }
}
