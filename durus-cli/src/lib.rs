//! The work behind the `durus` command, apart from argument parsing:
//! the inspection tools and `durus bench`, the workload runner.
//!
//! A library user does not need this crate: `durus-core` is the library.
//! It is a library (beside the binary) so that the command's integration
//! tests can drive the same code.

pub mod bench;
pub mod tools;
