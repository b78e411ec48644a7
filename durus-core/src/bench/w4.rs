//! W4: concurrent commits to disjoint objects. C client processes each
//! increment their own counter (`c<idx>`) and commit, from a common start
//! instant for D seconds. One op is one successful commit; the check is
//! that each counter equals its client's successes.

use super::counters::{self, Mode, RunOptions};
use super::json::Record;
use crate::error::Result;

/// Runs W4 and returns its result record.
pub fn run(opts: &RunOptions) -> Result<Record> {
    counters::run(Mode::W4, opts)
}
