//! One retry policy for transactions that conflict: a bounded number of
//! attempts with a growing, jittered wait between them, used by
//! [`Connection::transaction`] and [`Database::transaction`](crate::Database::transaction) alike.

use super::Connection;
use crate::error::{Error, Result};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The wait before the second attempt (it doubles after each attempt).
pub(crate) const DEFAULT_BACKOFF: Duration = Duration::from_millis(1);
/// The longest wait between attempts.
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The waits between attempts: `first`, doubling up to `max`, each with a
/// random part of up to itself added, so that clients that conflicted do
/// not retry in step.
pub(crate) struct Backoff {
    wait: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { wait: first, max }
    }

    /// Sleeps before the next attempt.
    pub(crate) fn sleep(&mut self) {
        std::thread::sleep(self.wait + jitter(self.wait));
        self.wait = (self.wait * 2).min(self.max);
    }
}

/// A random wait of up to `wait`.
fn jitter(wait: Duration) -> Duration {
    let nanos = wait.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    Duration::from_nanos(h.finish() % nanos)
}

impl Connection {
    /// Runs `f` and commits, retrying after an abort when the commit (or a
    /// load inside `f`) conflicts, at most `attempts` times in all, waiting
    /// between attempts as [`Database::transaction`](crate::Database::transaction)
    /// does with its default options (1 ms, doubling up to 200 ms, jittered).
    ///
    /// A pending conflict from before the call (`NeedsAbort`) is retried
    /// the same way. Any other error aborts and is returned at once. The
    /// last conflict is returned when every attempt conflicted.
    pub fn transaction<R>(
        &self,
        attempts: usize,
        mut f: impl FnMut(&Connection) -> Result<R>,
    ) -> Result<R> {
        let mut backoff = Backoff::new(DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF);
        let mut last = None;
        for attempt in 1..=attempts.max(1) {
            if attempt > 1 {
                backoff.sleep();
            }
            match f(self).and_then(|r| self.commit().map(|()| r)) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.abort()?;
                    if !e.is_conflict() && !matches!(e, Error::NeedsAbort) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::NeedsAbort))
    }
}
