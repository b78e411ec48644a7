//! W4: concurrent commits to disjoint objects. C client processes each
//! increment their own counter (`c<idx>`) and commit, from a common start
//! instant for D seconds. One op is one successful commit; the check is
//! that each counter equals its client's successes.

use super::counters::{self, CounterModel, Mode, RunOptions};
use super::json::Record;
use durus_core::error::Result;

/// Runs W4 on the types of `M` and returns its result record.
pub fn run<M: CounterModel>(opts: &RunOptions) -> Result<Record> {
    counters::run::<M>(Mode::W4, opts)
}
