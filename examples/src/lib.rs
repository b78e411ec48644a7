//! The example programs' code, kept in a library so that tests run it.
//! Each program in `examples/` is a thin `main` around one module here.

pub mod bank;
pub mod jobs;
pub mod notes;
pub mod quickstart;
pub mod shop;
