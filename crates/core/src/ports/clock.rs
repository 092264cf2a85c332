//! The [`Clock`] port: what time it is, for the engine's timestamps and deadlines.

use crate::time::Timestamp;

/// The engine's one source of wall-clock time. Deadlines are kept as wall-clock times in
/// records (so they survive restarts) and waited for with `tokio::time`; a clock for tests
/// derives its time from `tokio::time` so a paused runtime moves both together.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
