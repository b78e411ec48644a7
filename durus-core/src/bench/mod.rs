//! The workload runner behind `durus bench`: the workloads of the shared
//! benchmark definitions (W1-W7), with the same parameters, checks and
//! result lines as the Python peer's harness.

pub mod data;
pub mod json;
