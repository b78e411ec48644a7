//! The object model: the [`Persistent`] trait, the [`PRef`] handle and
//! object statuses.
//!
//! A `PRef<T>` is a cheap, clonable, identity-preserving handle. Within one
//! connection, one oid is one in-memory object. Its state is `None` while it
//! is a ghost and is loaded on the first `read` or `write`.

pub mod merge;
pub mod per_key;

use crate::connection::ConnInner;
use crate::error::{ConflictReason, Error, Result};
use crate::oid::Oid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::{Rc, Weak};

pub use merge::MergeConflict;

/// A type whose values can be stored as objects of their own.
///
/// Derive it with `#[derive(Persistent)]`; the derive also writes the merge
/// rules given by `#[merge(...)]` attributes.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default)]
/// #[persistent(class = "shop.Counter")]
/// struct Counter {
///     #[merge(sum)]
///     hits: u64,
/// }
///
/// assert_eq!(Counter::CLASS_NAME, "shop.Counter");
/// assert!(Counter::RESOLVABLE);
/// let conn = Connection::new(MemoryStorage::new());
/// let counter: PRef<Counter> = conn.root()?;
/// counter.write()?.hits += 1;
/// conn.commit()?;
/// # Ok::<(), durus_core::Error>(())
/// ```
pub trait Persistent: Serialize + DeserializeOwned + 'static {
    /// The class name written in each record. It defaults to the Rust path
    /// and can be set with `#[persistent(class = "...")]`, so that a type
    /// can be renamed or moved without rewriting the database.
    const CLASS_NAME: &'static str;

    /// Older class names of the type, still read (a record written under
    /// one of them loads, and is written back under `CLASS_NAME`). Set with
    /// `#[persistent(aliases = ["old.Name"])]`.
    const CLASS_ALIASES: &'static [&'static str] = &[];

    /// True when some field is `#[serde(flatten)]`, so the record's
    /// top-level keys are not a fixed list of fields (see `crate::schema`).
    #[doc(hidden)]
    const FLATTENED: bool = false;

    /// True when the type has merge rules: its objects keep a snapshot of
    /// their state as loaded (state0) while changed, to merge concurrent commits.
    const RESOLVABLE: bool = false;

    /// A copy of the state as loaded, kept while the object is changed.
    /// Only resolvable types return one.
    fn snapshot(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Merges this client's state with the stored state written by another
    /// client, both changed from `initial`.
    fn resolve(ours: &Self, stored: &Self, initial: &Self) -> Result<Self, MergeConflict>
    where
        Self: Sized,
    {
        let _ = (ours, stored, initial);
        Err(MergeConflict::new(Self::CLASS_NAME, "has no merge rules"))
    }
}

/// Where an object stands relative to its stored state (Durus's statuses).
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, PersistentList, Status};
///
/// let conn = Connection::new(MemoryStorage::new());
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// root.write()?.push(1);
/// assert_eq!(root.status(), Status::Unsaved);
/// conn.commit()?;
/// assert_eq!(root.status(), Status::Saved);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// New, or changed since the last commit.
    Unsaved,
    /// Loaded and equal to the stored state.
    Saved,
    /// No state in memory; loaded on first access.
    Ghost,
}

/// The bookkeeping every object carries, whatever its type.
pub(crate) struct Header {
    pub(crate) oid: Cell<Option<Oid>>,
    pub(crate) status: Cell<Status>,
    /// The connection's transaction serial at the last access.
    pub(crate) serial: Cell<u64>,
    pub(crate) conn: RefCell<Weak<ConnInner>>,
}

/// An object: its header and its state (`None` while a ghost).
pub(crate) struct Slot<T> {
    pub(crate) hdr: Header,
    pub(crate) state: RefCell<Option<T>>,
    /// What the record held that `T` does not know, kept to be written
    /// back (see `crate::schema`); `None` for nearly every object.
    pub(crate) unknown: RefCell<Option<Box<crate::schema::Unknown>>>,
}

/// What the connection needs of an object without knowing its type.
pub(crate) trait ErasedObj: Any {
    fn hdr(&self) -> &Header;
    fn class_name(&self) -> &'static str;
    /// The record data (class and state); references are resolved through
    /// the connection's encoding context.
    fn encode(&self) -> Result<Vec<u8>>;
    /// Replaces the state with the one in `data`; the object becomes Saved.
    fn decode_into(&self, data: &[u8]) -> Result<()>;
    /// Makes the object a ghost. It cannot fail: when the state is borrowed
    /// (a guard from an earlier transaction is alive), the object is a
    /// ghost all the same and keeps the old state only until its next load,
    /// which fails with `Borrowed` while the guard lives.
    fn ghostify(&self);
    /// A guard of any kind is alive.
    fn is_borrowed(&self) -> bool;
    /// A `write` guard is alive.
    fn is_borrowed_mut(&self) -> bool;
    /// Merges `stored` data with this object's state, given its snapshot.
    /// Returns the merged data and the merged state, which `replace_state`
    /// installs once the commit succeeds; the object is not changed here.
    /// A panic in the type's merge function is a conflict.
    fn resolve(&self, stored: &[u8], initial: &dyn Any) -> Result<(Vec<u8>, Box<dyn Any>)>;
    /// Installs a state returned by `resolve` (the object becomes Saved);
    /// if the state is borrowed, the object becomes a ghost instead, and
    /// its next load reads the merged record.
    fn replace_state(&self, state: Box<dyn Any>);
}

impl<T: Persistent> ErasedObj for Slot<T> {
    fn hdr(&self) -> &Header {
        &self.hdr
    }

    fn class_name(&self) -> &'static str {
        T::CLASS_NAME
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let oid = self.hdr.oid.get();
        let state = self.state.try_borrow().map_err(|_| Error::Borrowed(oid))?;
        let state = state.as_ref().ok_or(Error::WrongConnection(oid))?;
        let unknown = self
            .unknown
            .try_borrow()
            .map_err(|_| Error::Borrowed(oid))?;
        Ok(crate::schema::encode(oid, state, unknown.as_deref())?)
    }

    fn decode_into(&self, data: &[u8]) -> Result<()> {
        let oid = self.hdr.oid.get().unwrap_or_default();
        let (value, unknown) = crate::schema::decode::<T>(oid, data)?;
        let mut state = self
            .state
            .try_borrow_mut()
            .map_err(|_| Error::Borrowed(Some(oid)))?;
        *state = Some(value);
        if let Ok(mut slot) = self.unknown.try_borrow_mut() {
            *slot = unknown;
        }
        self.hdr.status.set(Status::Saved);
        Ok(())
    }

    fn ghostify(&self) {
        self.hdr.status.set(Status::Ghost);
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        let old = state.take();
        drop(state);
        // Dropping the state may drop other objects; do it with no borrow held.
        drop(old);
    }

    fn is_borrowed(&self) -> bool {
        self.state.try_borrow_mut().is_err()
    }

    fn is_borrowed_mut(&self) -> bool {
        self.state.try_borrow().is_err()
    }

    fn resolve(&self, stored: &[u8], initial: &dyn Any) -> Result<(Vec<u8>, Box<dyn Any>)> {
        let oid = self.hdr.oid.get();
        let explained = |reason| Error::explained_conflict(oid, T::CLASS_NAME, reason);
        let conflict = || explained(ConflictReason::Other("its state is not loaded here".into()));
        let initial = initial.downcast_ref::<T>().ok_or_else(conflict)?;
        let (stored, unknown) = crate::schema::decode::<T>(oid.unwrap_or_default(), stored)?;
        let state = self.state.try_borrow().map_err(|_| Error::Borrowed(oid))?;
        let ours = state.as_ref().ok_or_else(conflict)?;
        // The merge function and the encoding of its result are the user's
        // code: a panic in them is a conflict (the transaction then needs
        // an abort), not a broken connection or a commit exchange left open.
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let merged = T::resolve(ours, &stored, initial)
                .map_err(|m| explained(ConflictReason::MergeRefused(m)))?;
            // This program never changes the fields it does not know: the
            // stored record's unknown fields are the newest (crate::schema).
            // Encoding fails when the merged state holds a new object: the
            // merge cannot store it.
            let data = crate::schema::encode(oid, &merged, unknown.as_deref()).map_err(|e| {
                explained(ConflictReason::Other(format!(
                    "its merged state cannot be stored: {e}"
                )))
            })?;
            Ok::<_, Error>((data, merged))
        }));
        let (data, merged) = merged.map_err(|_| {
            explained(ConflictReason::Other("its merge function panicked".into()))
        })??;
        Ok((data, Box::new((merged, unknown))))
    }

    fn replace_state(&self, merged: Box<dyn Any>) {
        let merged = merged.downcast::<(T, Option<Box<crate::schema::Unknown>>)>();
        let (Ok(merged), Ok(mut state)) = (merged, self.state.try_borrow_mut()) else {
            self.ghostify();
            return;
        };
        let (merged, unknown) = *merged;
        let old = state.replace(merged);
        if let Ok(mut slot) = self.unknown.try_borrow_mut() {
            *slot = unknown;
        }
        self.hdr.status.set(Status::Saved);
        drop(state);
        drop(old);
    }
}

/// A handle to a persistent object: cheap to clone, compared by identity.
///
/// Reads and writes go through [`PRef::read`] and [`PRef::write`], which
/// load a ghost first and so return a `Result`. A `write` marks the object
/// changed, so the next commit stores it: a change made through the guard,
/// however deep inside the state, cannot be lost.
///
/// ```
/// use durus_core::{Connection, MemoryStorage, PRef, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Persistent, Serialize, Deserialize, Default)]
/// struct Shelf {
///     books: Vec<PRef<Book>>,
/// }
///
/// #[derive(Persistent, Serialize, Deserialize)]
/// struct Book {
///     title: String,
/// }
///
/// let conn = Connection::new(MemoryStorage::new());
/// let shelf: PRef<Shelf> = conn.root()?;
/// let book = PRef::new(Book { title: "Emma".into() });
/// shelf.write()?.books.push(book.clone());
/// conn.commit()?; // the book is stored too: the shelf reaches it
/// assert!(book.oid().is_some());
/// assert!(shelf.read()?.books[0].ptr_eq(&book));
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct PRef<T: Persistent>(pub(crate) Rc<Slot<T>>);

impl<T: Persistent> PRef<T> {
    /// A new object, not yet stored. It gets an oid and is stored by the
    /// first commit of a connection that can reach it from a changed object.
    pub fn new(value: T) -> PRef<T> {
        crate::connection::count_new_object();
        PRef(Rc::new(Slot {
            hdr: Header {
                oid: Cell::new(None),
                status: Cell::new(Status::Unsaved),
                serial: Cell::new(0),
                conn: RefCell::new(Weak::new()),
            },
            state: RefCell::new(Some(value)),
            unknown: RefCell::new(None),
        }))
    }

    pub(crate) fn ghost(oid: Oid, conn: Weak<ConnInner>) -> PRef<T> {
        PRef(Rc::new(Slot {
            hdr: Header {
                oid: Cell::new(Some(oid)),
                status: Cell::new(Status::Ghost),
                serial: Cell::new(0),
                conn: RefCell::new(conn),
            },
            state: RefCell::new(None),
            unknown: RefCell::new(None),
        }))
    }

    /// The object's oid, once it is stored.
    pub fn oid(&self) -> Option<Oid> {
        self.0.hdr.oid.get()
    }

    /// The object's status.
    pub fn status(&self) -> Status {
        self.0.hdr.status.get()
    }

    /// True when both handles are the same object.
    pub fn ptr_eq(&self, other: &PRef<T>) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Loads the state if needed and stamps the access.
    fn access(&self) -> Result<()> {
        let hdr = &self.0.hdr;
        let conn = hdr.conn.borrow().upgrade();
        let Some(conn) = conn else {
            return match hdr.status.get() {
                // Its connection was dropped.
                Status::Ghost => Err(Error::Storage(crate::error::StorageError::Closed)),
                _ => Ok(()),
            };
        };
        conn.check_usable()?;
        if hdr.status.get() == Status::Ghost {
            conn.load_state(self.0.clone())?;
        }
        hdr.serial.set(conn.serial());
        Ok(())
    }

    /// Borrows the state for reading, loading it first if it is a ghost.
    pub fn read(&self) -> Result<Ref<'_, T>> {
        self.access()?;
        let oid = self.oid();
        let state = self
            .0
            .state
            .try_borrow()
            .map_err(|_| Error::Borrowed(oid))?;
        Ref::filter_map(state, Option::as_ref).map_err(|_| Error::WrongConnection(oid))
    }

    /// Borrows the state for writing and marks the object changed.
    ///
    /// A handle taken in a [`Database::transaction`](crate::Database::transaction)
    /// refuses writes once that transaction ended (`TransactionEnded`); on a
    /// plain [`Connection`](crate::Connection) a write after a commit belongs
    /// to the next transaction, as in Durus.
    pub fn write(&self) -> Result<RefMut<'_, T>> {
        let closed = self
            .0
            .hdr
            .conn
            .borrow()
            .upgrade()
            .is_some_and(|c| c.writes_closed());
        if closed {
            return Err(Error::TransactionEnded {
                oid: self.oid(),
                class: T::CLASS_NAME.to_string(),
            });
        }
        self.access()?;
        let oid = self.oid();
        let state = self
            .0
            .state
            .try_borrow_mut()
            .map_err(|_| Error::Borrowed(oid))?;
        if self.0.hdr.status.get() == Status::Saved {
            if let Some(conn) = self.0.hdr.conn.borrow().upgrade() {
                let snapshot = state.as_ref().and_then(|s| s.snapshot());
                conn.note_change(
                    self.0.clone(),
                    snapshot.map(|s| Box::new(s) as Box<dyn Any>),
                );
            }
            self.0.hdr.status.set(Status::Unsaved);
        }
        RefMut::filter_map(state, Option::as_mut).map_err(|_| Error::WrongConnection(oid))
    }
}

impl<T: Persistent> Clone for PRef<T> {
    fn clone(&self) -> Self {
        PRef(self.0.clone())
    }
}

impl<T: Persistent + Default> Default for PRef<T> {
    /// A new object holding `T::default()`, so that a struct of references
    /// (to collections, say) can derive `Default`.
    fn default() -> Self {
        PRef::new(T::default())
    }
}

impl<T: Persistent> PartialEq for PRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other)
    }
}

impl<T: Persistent> Eq for PRef<T> {}

impl<T: Persistent> fmt::Debug for PRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.oid() {
            Some(oid) => write!(f, "PRef<{}>({oid}, {:?})", T::CLASS_NAME, self.status()),
            None => write!(f, "PRef<{}>(new)", T::CLASS_NAME),
        }
    }
}

impl<T: Persistent> Serialize for PRef<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let obj: Rc<dyn ErasedObj> = self.0.clone();
        let oid = crate::connection::encoding_oid_for(obj).map_err(serde::ser::Error::custom)?;
        ciborium::tag::Required::<u64, { crate::encoding::REF_TAG }>(oid.0).serialize(s)
    }
}

impl<'de, T: Persistent> Deserialize<'de> for PRef<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let ciborium::tag::Required(oid) =
            ciborium::tag::Required::<u64, { crate::encoding::REF_TAG }>::deserialize(d)?;
        crate::connection::decoding_ref::<T>(Oid(oid)).map_err(serde::de::Error::custom)
    }
}
