//! What one caller may take of the service at once: pending jobs (per owner and in all),
//! submissions per minute per token, and event streams open at the same time per token.
//!
//! A caller past a limit is told to come back later (429 with `Retry-After`), never queued
//! without bound. This module counts and answers; it must not decide who the caller is
//! (`jobforge_core::access`) nor touch jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use jobforge_core::JobStatus;
use jobforge_core::access::Caller;
use jobforge_core::record::JobRecord;

use crate::http::ApiError;

/// The limits. Rates and streams count per token; a service without tokens has one caller,
/// and counts no rate for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    /// Jobs waiting to start (PENDING), in all.
    pub max_pending: usize,
    /// Jobs waiting to start, per owner (jobs without one count together).
    pub max_pending_per_owner: usize,
    /// Submissions per minute of one token.
    pub submissions_per_minute: u32,
    /// Event streams (SSE, MCP watches) one token holds open at once.
    pub streams_per_caller: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_pending: 200,
            max_pending_per_owner: 50,
            submissions_per_minute: 60,
            streams_per_caller: 32,
        }
    }
}

/// The counters of one service.
pub struct Limits {
    settings: LimitSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
    streams: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A token bucket: `tokens` submissions left, refilled continuously up to the per-minute rate.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Limits { settings, buckets: Mutex::default(), streams: Mutex::default() }
    }

    /// Take one submission of `caller`'s rate, or say when the next one is allowed.
    pub fn take_submission(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(name) = caller.name() else { return Ok(()) };
        let rate = f64::from(self.settings.submissions_per_minute.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let bucket = buckets.entry(name.to_owned()).or_insert(Bucket { tokens: rate, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate / 60.0).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) * 60.0 / rate);
        Err(ApiError::TooMany {
            message: format!(
                "token {name:?} submitted {} jobs in the last minute, its limit: wait before submitting again",
                self.settings.submissions_per_minute
            ),
            retry_after: wait.as_secs().max(1),
        })
    }

    /// Whether one more pending job of `owner` fits, given the jobs that are live now.
    pub fn room_for_pending(&self, owner: Option<&str>, live: &[JobRecord]) -> Result<(), ApiError> {
        let pending: Vec<&JobRecord> = live.iter().filter(|r| r.status() == JobStatus::Pending).collect();
        let of_owner = pending.iter().filter(|r| r.spec.owner.as_deref() == owner).count();
        let full = |what: String| ApiError::TooMany { message: what, retry_after: 30 };
        if pending.len() >= self.settings.max_pending {
            return Err(full(format!(
                "{} jobs are already waiting to start, this service's limit: submit again when some have started",
                pending.len()
            )));
        }
        if of_owner >= self.settings.max_pending_per_owner {
            let who = owner.map_or_else(|| "jobs without an owner".to_owned(), |o| format!("owner {o:?}"));
            return Err(full(format!(
                "{who} already has {of_owner} jobs waiting to start, the limit per owner: submit again when some have started"
            )));
        }
        Ok(())
    }

    /// Hold one of `caller`'s event streams for as long as the permit lives.
    pub fn open_stream(&self, caller: &Caller) -> Result<OwnedSemaphorePermit, ApiError> {
        let key = caller.name().unwrap_or("").to_owned();
        let semaphore = {
            let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
            streams.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.settings.streams_per_caller))).clone()
        };
        semaphore.try_acquire_owned().map_err(|_| ApiError::TooMany {
            message: format!(
                "{} event streams are open for this caller already, the limit: close one first",
                self.settings.streams_per_caller
            ),
            retry_after: 5,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobforge_core::access::{Role, TokenHolder};

    fn token(name: &str) -> Caller {
        Caller::Token(TokenHolder { name: name.into(), role: Role::Submit, owner: None, secrets: Vec::new() })
    }

    #[test]
    fn a_token_submits_at_its_rate_and_is_told_when_to_come_back() {
        let limits = Limits::new(LimitSettings { submissions_per_minute: 3, ..LimitSettings::default() });
        for _ in 0..3 {
            limits.take_submission(&token("a")).unwrap();
        }
        match limits.take_submission(&token("a")) {
            Err(ApiError::TooMany { retry_after, message }) => {
                assert!((1..=20).contains(&retry_after), "{retry_after}");
                assert!(message.contains("\"a\""), "{message}");
            }
            other => panic!("the fourth is refused: {other:?}"),
        }
        limits.take_submission(&token("b")).expect("another token has its own rate");
        limits.take_submission(&Caller::Anyone).expect("no rate without tokens");
    }

    #[test]
    fn streams_are_bounded_per_caller_and_come_back_when_closed() {
        let limits = Limits::new(LimitSettings { streams_per_caller: 2, ..LimitSettings::default() });
        let first = limits.open_stream(&token("a")).unwrap();
        let _second = limits.open_stream(&token("a")).unwrap();
        assert!(matches!(limits.open_stream(&token("a")), Err(ApiError::TooMany { .. })));
        let _other = limits.open_stream(&token("b")).expect("another token has its own");
        drop(first);
        let _again = limits.open_stream(&token("a")).expect("a closed stream frees its place");
    }
}
