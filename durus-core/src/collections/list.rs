//! [`PersistentList`]: a vector stored as one record.

use crate::persistent::Persistent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// What an element of a [`PersistentList`] needs.
///
/// ```
/// use durus_core::PersistentList;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Line {
///     text: String,
/// }
///
/// let mut lines = PersistentList::new();
/// lines.push(Line { text: "hello".into() });
/// assert_eq!(lines[0].text, "hello");
/// ```
pub trait Element: Serialize + DeserializeOwned + 'static {}

impl<T: Serialize + DeserializeOwned + 'static> Element for T {}

/// A growable list whose elements are all in one record (Durus's
/// `PersistentList`).
///
/// Hold it as `PRef<PersistentList<T>>`; read through `read()`, change
/// through `write()`. The slice API (`get`, `iter`, `len`, `first`,
/// `sort`, indexing, ...) is there through `Deref`.
///
/// Lists have no merge rule, as in Durus: two clients committing the same
/// list conflict, and the later one retries.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList};
///
/// let conn = Connection::new(MemoryStorage::new());
/// let log: PRef<PersistentList<String>> = conn.root()?;
/// log.write()?.push("started".into());
/// conn.commit()?;
/// assert_eq!(log.read()?.len(), 1);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent, bound = "T: Element")]
pub struct PersistentList<T: Element> {
    items: Vec<T>,
}

impl<T: Element> Persistent for PersistentList<T> {
    const CLASS_NAME: &'static str = "durus_core::collections::PersistentList";
}

impl<T: Element> PersistentList<T> {
    /// An empty list.
    pub fn new() -> Self {
        PersistentList { items: Vec::new() }
    }

    /// Appends `value`.
    pub fn push(&mut self, value: T) {
        self.items.push(value)
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop()
    }

    /// Inserts `value` at `index`; `false` (and nothing inserted) when
    /// `index` is past the end.
    pub fn insert(&mut self, index: usize, value: T) -> bool {
        if index > self.items.len() {
            return false;
        }
        self.items.insert(index, value);
        true
    }

    /// Removes and returns the element at `index`, if there is one.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        (index < self.items.len()).then(|| self.items.remove(index))
    }

    /// Keeps only the elements for which `f` is true.
    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.items.retain(f)
    }

    /// Shortens the list to `len` elements.
    pub fn truncate(&mut self, len: usize) {
        self.items.truncate(len)
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.items.clear()
    }

    /// The elements as a `Vec`.
    pub fn as_vec(&self) -> &Vec<T> {
        &self.items
    }

    /// Takes the `Vec` out.
    pub fn into_vec(self) -> Vec<T> {
        self.items
    }
}

impl<T: Element> Default for PersistentList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> Deref for PersistentList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T: Element> DerefMut for PersistentList<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for PersistentList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.items.iter()).finish()
    }
}

impl<T: Element> From<Vec<T>> for PersistentList<T> {
    fn from(items: Vec<T>) -> Self {
        PersistentList { items }
    }
}

impl<T: Element, const N: usize> From<[T; N]> for PersistentList<T> {
    fn from(items: [T; N]) -> Self {
        PersistentList {
            items: items.into(),
        }
    }
}

impl<T: Element> FromIterator<T> for PersistentList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        PersistentList {
            items: iter.into_iter().collect(),
        }
    }
}

impl<T: Element> Extend<T> for PersistentList<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.items.extend(iter)
    }
}

impl<'a, T: Element> IntoIterator for &'a PersistentList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T: Element> IntoIterator for PersistentList<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}
