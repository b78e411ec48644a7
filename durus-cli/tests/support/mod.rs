//! The test helpers of durus-core (the Python venv, scratch directories,
//! records, the in-process server), and the `durus` binary of this crate.
#![allow(dead_code)]

#[path = "../../../durus-core/tests/support/mod.rs"]
mod core;

#[allow(unused_imports)]
pub use core::*;

pub mod durus;
