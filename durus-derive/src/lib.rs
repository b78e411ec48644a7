//! `#[derive(Persistent)]` and `#[derive(Merge)]` for durus-core.
//!
//! Attributes are parsed into a model (`ast`, `attr`), checked (`check`),
//! and only then turned into code (`expand`). Errors are collected and
//! reported together, each on the offending tokens.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `durus_core::Persistent` for a struct with named fields.
///
/// - `#[persistent(class = "name")]` sets the class name written in records
///   (default: the Rust path of the type, which changes when the type
///   moves: pin it for every stored type).
/// - `#[persistent(aliases = ["old.Name", ...])]` lists older class names
///   whose records still load into the type.
/// - `#[merge(rule)]` on a field makes the type resolvable; see the
///   `durus_core::persistent::merge` module for the rules.
#[proc_macro_derive(Persistent, attributes(persistent, merge))]
pub fn derive_persistent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::persistent(&input).into()
}

/// Implements `durus_core::persistent::merge::Merge` for a plain struct used
/// inside a persistent one, so a `#[merge(nested)]` field merges field by field.
#[proc_macro_derive(Merge, attributes(merge))]
pub fn derive_merge(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::merge(&input).into()
}
