//! `#[derive(Persistent)]` and `#[derive(Merge)]` for durus-core.
//!
//! Attributes are parsed into a model (`ast`, `attr`), checked (`check`),
//! and only then turned into code (`expand`). Errors are collected and
//! reported together, each on the offending tokens.

#![deny(missing_docs)]

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
///   `durus_core::persistent::merge` module for the rules, and
///   `durus_core::per_key` for `#[merge(per_key(rule))]` on map fields.
///
/// The type also needs serde's `Serialize` and `Deserialize` (its state is
/// encoded with them), and `Default` to be a connection's root.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
/// #[persistent(class = "bank.Account", aliases = ["old.Account"])]
/// struct Account {
///     owner: String,
///     #[merge(sum)]
///     balance: i64,
/// }
///
/// assert_eq!(Account::CLASS_NAME, "bank.Account");
/// let conn = Connection::new(MemoryStorage::new());
/// let account: PRef<Account> = conn.root()?;
/// account.write()?.balance += 10;
/// conn.commit()?;
/// # Ok::<(), durus_core::Error>(())
/// ```
#[proc_macro_derive(Persistent, attributes(persistent, merge))]
pub fn derive_persistent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::persistent(&input).into()
}

/// Implements `durus_core::persistent::merge::Merge` for a plain struct used
/// inside a persistent one, so a `#[merge(nested)]` field merges field by field.
///
/// ```
/// use durus_core::persistent::merge::Merge;
/// use durus_core::Persistent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Merge, Serialize, Deserialize, Clone, PartialEq, Default)]
/// struct Totals {
///     #[merge(sum)]
///     orders: u32,
///     #[merge(max)]
///     largest: u32,
/// }
///
/// #[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
/// struct Shop {
///     #[merge(nested)]
///     totals: Totals,
/// }
///
/// let initial = Totals { orders: 1, largest: 5 };
/// let ours = Totals { orders: 2, largest: 9 };
/// let stored = Totals { orders: 3, largest: 7 };
/// let merged = Totals::merge(&ours, &stored, &initial)?;
/// assert_eq!((merged.orders, merged.largest), (4, 9));
/// # Ok::<(), durus_core::MergeConflict>(())
/// ```
#[proc_macro_derive(Merge, attributes(merge))]
pub fn derive_merge(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::merge(&input).into()
}
