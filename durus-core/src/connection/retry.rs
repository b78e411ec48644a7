//! A bounded retry of a transaction that hits conflicts.

use super::Connection;
use crate::error::{Error, Result};

impl Connection {
    /// Runs `f` and commits, retrying after an abort when the commit (or a
    /// load inside `f`) conflicts, at most `attempts` times in all.
    ///
    /// A pending conflict from before the call (`NeedsAbort`) is retried
    /// the same way. Any other error aborts and is returned at once. The last conflict is
    /// returned when every attempt conflicted.
    pub fn transaction<R>(
        &self,
        attempts: usize,
        mut f: impl FnMut(&Connection) -> Result<R>,
    ) -> Result<R> {
        let mut last = None;
        for _ in 0..attempts.max(1) {
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
