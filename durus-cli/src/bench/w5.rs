//! W5: the hot counter. C client processes all increment `root["hot"]` and
//! commit, from a common start instant for D seconds. With the `merge`
//! variant the counter's `value` is `#[merge(sum)]` and concurrent commits
//! merge; with `abort-retry` it is a plain counter and the application
//! aborts and retries on conflicts (as Durus must). One op is one
//! successful increment; the check is that the final value equals the sum
//! of all successes (no lost update).

use super::counters::{self, CounterModel, Mode, RunOptions};
use super::json::Record;
use durus_core::error::Result;

/// Runs W5 on the types of `M` and returns its result record.
pub fn run<M: CounterModel>(opts: &RunOptions) -> Result<Record> {
    counters::run::<M>(Mode::W5, opts)
}
