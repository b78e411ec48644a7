//! The connection a handle is being encoded or decoded for.
//!
//! serde gives `Serialize`/`Deserialize` no context, so a commit or a load
//! puts its connection in a thread-local for the duration of the call
//! (through a scope guard), where `PRef`'s impls find it.

use super::ConnInner;
use crate::error::{Error, Result};
use crate::oid::Oid;
use crate::persistent::{ErasedObj, PRef, Persistent};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

struct Encoding {
    conn: Rc<ConnInner>,
    refs: Vec<Oid>,
    found: Vec<Rc<dyn ErasedObj>>,
}

thread_local! {
    /// How many `PRef::new` calls this thread made: a decode that makes new
    /// objects is noticed by the count moving.
    static NEW_OBJECTS: Cell<u64> = const { Cell::new(0) };
    static ENCODING: RefCell<Vec<Encoding>> = const { RefCell::new(Vec::new()) };
    static DECODING: RefCell<Vec<Rc<ConnInner>>> = const { RefCell::new(Vec::new()) };
}

/// While alive, references are encoded for `conn`.
pub(super) struct EncodeScope(());

impl EncodeScope {
    pub(super) fn enter(conn: Rc<ConnInner>) -> EncodeScope {
        ENCODING.with(|e| {
            e.borrow_mut().push(Encoding {
                conn,
                refs: Vec::new(),
                found: Vec::new(),
            })
        });
        EncodeScope(())
    }

    /// The oids referenced and the new objects met since the last call.
    pub(super) fn take(&self) -> (Vec<Oid>, Vec<Rc<dyn ErasedObj>>) {
        ENCODING.with(|e| match e.borrow_mut().last_mut() {
            Some(top) => (
                std::mem::take(&mut top.refs),
                std::mem::take(&mut top.found),
            ),
            None => (Vec::new(), Vec::new()),
        })
    }
}

impl Drop for EncodeScope {
    fn drop(&mut self) {
        ENCODING.with(|e| e.borrow_mut().pop());
    }
}

/// While alive, references are decoded into `conn`'s cache.
pub(super) struct DecodeScope(());

impl DecodeScope {
    pub(super) fn enter(conn: Rc<ConnInner>) -> DecodeScope {
        DECODING.with(|d| d.borrow_mut().push(conn));
        DecodeScope(())
    }
}

impl Drop for DecodeScope {
    fn drop(&mut self) {
        DECODING.with(|d| d.borrow_mut().pop());
    }
}

/// The oid to write for a reference to `obj` (giving a new object one).
pub(crate) fn encoding_oid_for(obj: Rc<dyn ErasedObj>) -> Result<Oid> {
    let conn = ENCODING
        .with(|e| e.borrow().last().map(|top| top.conn.clone()))
        .ok_or_else(|| {
            Error::Encoding(crate::error::EncodingError::Encode {
                oid: obj.hdr().oid.get(),
                message: "a reference can only be encoded by a connection's commit".into(),
            })
        })?;
    let (oid, is_new) = conn.oid_for_ref(&obj)?;
    ENCODING.with(|e| {
        if let Some(top) = e.borrow_mut().last_mut() {
            top.refs.push(oid);
            if is_new {
                top.found.push(obj);
            }
        }
    });
    Ok(oid)
}

/// The object a decoded reference names: cached, or a new ghost.
pub(crate) fn decoding_ref<T: Persistent>(oid: Oid) -> Result<PRef<T>> {
    let conn = DECODING
        .with(|d| d.borrow().last().cloned())
        .ok_or_else(|| {
            Error::Encoding(crate::error::EncodingError::Decode {
                oid,
                message: "a reference can only be decoded by a connection".into(),
            })
        })?;
    conn.ghost_for::<T>(oid)
}

/// Counts a new persistent object (see `NEW_OBJECTS`).
pub(crate) fn count_new_object() {
    NEW_OBJECTS.with(|n| n.set(n.get().wrapping_add(1)));
}

/// The count of new persistent objects made on this thread so far.
pub(super) fn new_objects_made() -> u64 {
    NEW_OBJECTS.with(Cell::get)
}
