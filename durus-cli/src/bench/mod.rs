//! The workload runner behind `durus bench`: the workloads of the shared
//! benchmark definitions (W1-W7), with the same parameters, checks and
//! result lines as the Python peer's harness.
//!
//! One module per workload (`w1`-`w7`); what several share lives in
//! `procs` (the server child, the worker children, CPU accounting),
//! `counters` (the W4/W5 client loop and checks; the program supplies
//! the persistent types), `keyed` (W5 `btree-sum`'s per-key counters), `items` (the item database of W1-W3, W6 and
//! W7), `data` (deterministic inputs) and `json` (result lines).

pub mod counters;
pub mod data;
pub mod items;
pub mod json;
pub mod keyed;
pub mod model;
pub mod pingpong;
pub mod procs;
pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w6;
pub mod w7;

pub use counters::{
    BenchCounter, CounterModel, Mode, RunOptions, Variant, WorkerOptions, WorkerOutcome,
};
pub use keyed::KeyedCounters;
