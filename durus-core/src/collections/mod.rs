//! Persistent collections: [`PersistentDict`], [`PersistentList`],
//! [`PersistentSet`] and the B-tree [`BTree`].
//!
//! The first three are *one-record* containers: each is a plain value, the
//! state of one persistent object, held as `PRef<PersistentDict<K, V>>` (or
//! embedded in another object's state, where it is simply part of that
//! record). They are changed through `&mut self`, and in this crate the only
//! way to get `&mut` to a stored state is [`PRef::write`](crate::PRef::write),
//! which marks the object changed: a mutation cannot be lost.
//!
//! ```
//! use durus_core::{Connection, MemoryStorage, PRef, PersistentDict};
//!
//! let conn = Connection::new(MemoryStorage::new());
//! let root: PRef<PersistentDict<String, u64>> = conn.root()?;
//! root.write()?.insert("visits".into(), 1);
//! conn.commit()?;
//! assert_eq!(root.read()?.get("visits"), Some(&1));
//! # Ok::<(), durus_core::Error>(())
//! ```
//!
//! [`BTree`] is a handle to a map whose nodes are objects of their own, so a
//! change rewrites one node (and the nodes on its path when it splits or
//! joins), never the whole map.
//!
//! Merging concurrent commits (see `docs/COLLECTIONS.md`):
//!
//! | type | concurrent commits of the same object |
//! |---|---|
//! | `PersistentDict` | key-wise three-way merge; a key changed on both sides (even to the same value) goes to the dict's [per-key rule](crate::per_key): a conflict unless the rule merges it |
//! | `PersistentSet` | both sides' additions and removals apply; never a conflict |
//! | `PersistentList` | always a conflict (as in Durus) |
//! | `BTree` | see [`btree`]: leaves merge key-wise (a key changed on both sides as for the dict), structure changes conflict |

pub mod btree;
mod dict;
mod list;
mod set;

pub use btree::{BNode, BTree, BTreeState, Range};
pub use dict::PersistentDict;
pub use list::{Element, PersistentList};
pub use set::PersistentSet;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a key of a [`PersistentDict`], [`PersistentSet`] or [`BTree`] needs:
/// an order, copies (for the snapshot kept for merging) and serde.
///
/// ```
/// use durus_core::BTree;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Serialize, Deserialize)]
/// struct Day {
///     year: u16,
///     day: u16,
/// }
///
/// let visits: BTree<Day, u32> = BTree::new();
/// visits.insert(Day { year: 2024, day: 1 }, 3)?;
/// assert_eq!(visits.get(&Day { year: 2024, day: 1 })?, Some(3));
/// # Ok::<(), durus_core::Error>(())
/// ```
pub trait Key: Ord + Clone + Serialize + DeserializeOwned + 'static {}

impl<T: Ord + Clone + Serialize + DeserializeOwned + 'static> Key for T {}

/// What a value of a [`PersistentDict`] or [`BTree`] needs: equality and
/// copies (for the three-way merge) and serde. A `PRef` qualifies: it
/// compares by identity and copies cheaply.
///
/// ```
/// use durus_core::PersistentDict;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(PartialEq, Clone, Serialize, Deserialize)]
/// struct Price {
///     cents: u64,
/// }
///
/// let mut prices = PersistentDict::new();
/// prices.insert("tea".to_string(), Price { cents: 250 });
/// assert_eq!(prices.get("tea").map(|p| p.cents), Some(250));
/// ```
pub trait Value: PartialEq + Clone + Serialize + DeserializeOwned + 'static {}

impl<T: PartialEq + Clone + Serialize + DeserializeOwned + 'static> Value for T {}
