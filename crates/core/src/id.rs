//! Identifiers: [`JobId`] (UUIDv7, time-ordered) and the deterministic [`RunId`] of each phase run.
//!
//! A run id is derived from the job id, the phase and the test index, never generated: that is
//! what makes backend starts idempotent and lets a restarted service find its runs again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::status::Phase;

/// The id of one submitted job: a UUIDv7, so ids sort by submission time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hyphenated lower case: the same text in URLs, run ids, image names and logs.
        self.0.hyphenated().fmt(f)
    }
}

/// In schemas: a string, a UUID.
impl schemars::JsonSchema for JobId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JobId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "uuid",
            "description": "A job id: a UUIDv7, as submitJob and POST /v1/jobs return it",
        })
    }
}

/// The text given was not a job id.
#[derive(Debug, thiserror::Error)]
#[error("not a job id (expected a UUID such as 0193e5d2-7c1a-7b3e-9f00-2a4c6e8b0d1f): {0:?}")]
pub struct BadJobId(pub String);

impl FromStr for JobId {
    type Err = BadJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId).map_err(|_| BadJobId(s.chars().take(80).collect()))
    }
}

/// A 64-bit hash that is the same in every process, release and replica (FNV-1a), for names
/// that must stay stable: lock keys, directories found again after a restart. Not for
/// anything an attacker chooses to collide.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// What a run is: which job, which phase, and for tests which entry of the test list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunKey {
    pub job: JobId,
    pub phase: Phase,
    /// 0-based index into the job's tests; `Some` exactly for [`Phase::Test`].
    pub test_index: Option<u32>,
}

impl RunKey {
    pub fn build(job: JobId) -> Self {
        RunKey { job, phase: Phase::Build, test_index: None }
    }

    pub fn test(job: JobId, index: u32) -> Self {
        RunKey { job, phase: Phase::Test, test_index: Some(index) }
    }

    pub fn publish(job: JobId) -> Self {
        RunKey { job, phase: Phase::Publish, test_index: None }
    }

    pub fn id(&self) -> RunId {
        let text = match self.test_index {
            Some(n) => format!("{}-{}-{}", self.phase, self.job, n),
            None => format!("{}-{}", self.phase, self.job),
        };
        RunId { text, key: *self }
    }
}

/// The stable name of one phase run: `build-<job>`, `test-<job>-<n>` or `publish-<job>`.
///
/// Backends may prefix it (the Nomad backend names its jobs `<prefix>-<run id>`), but never
/// change the part after the prefix: parsing it back gives the job the run belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId {
    text: String,
    key: RunKey,
}

impl RunId {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The job, phase and test index this run id was made from.
    pub fn key(&self) -> RunKey {
        self.key
    }

    pub fn job(&self) -> JobId {
        self.key().job
    }
}

fn parse_run_id(s: &str) -> Option<RunKey> {
    let (phase, rest) = s.split_once('-')?;
    let phase: Phase = phase.parse().ok()?;
    // A hyphenated UUID is 36 characters; what follows is `-<n>` for tests.
    let (uuid, tail) = (rest.get(..36)?, &rest[36.min(rest.len())..]);
    let job = uuid.parse().ok()?;
    let test_index = match (phase, tail) {
        (Phase::Test, t) => Some(t.strip_prefix('-')?.parse::<u32>().ok()?),
        (_, "") => None,
        _ => return None,
    };
    let key = RunKey { job, phase, test_index };
    (key.id().text == s).then_some(key)
}

/// The text is not a run id of the form `build-<uuid>`, `test-<uuid>-<n>` or `publish-<uuid>`.
#[derive(Debug, thiserror::Error)]
#[error("not a run id: {0:?}")]
pub struct BadRunId(pub String);

impl TryFrom<String> for RunId {
    type Error = BadRunId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match parse_run_id(&s) {
            Some(key) => Ok(RunId { text: s, key }),
            None => Err(BadRunId(s)),
        }
    }
}

impl FromStr for RunId {
    type Err = BadRunId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunId::try_from(s.to_owned())
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.text
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_round_trip() {
        let job = JobId::new();
        for key in [RunKey::build(job), RunKey::test(job, 0), RunKey::test(job, 17), RunKey::publish(job)] {
            let id = key.id();
            assert_eq!(id.key(), key);
            assert_eq!(id.as_str().parse::<RunId>().unwrap(), id);
        }
        assert_eq!(RunKey::test(job, 3).id().as_str(), format!("test-{job}-3"));
    }

    #[test]
    fn bad_run_ids_are_refused() {
        let job = JobId::new();
        for bad in [
            format!("build-{job}-1"),
            format!("test-{job}"),
            format!("test-{job}-x"),
            format!("deploy-{job}"),
            "build-".to_owned(),
            format!("test-{job}-01"),
        ] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_stable_hash_is_fnv1a() {
        // FNV-1a's published test vectors: the value must never change between releases.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn job_ids_parse_and_sort_by_time() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<JobId>().unwrap(), a);
        assert!("nope".parse::<JobId>().is_err());
    }
}
