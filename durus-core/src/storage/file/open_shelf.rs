//! [`OpenShelf`]: one open SHELF-1 file as the storage holds it in memory
//! (the offset map read in place, the index of the records written after
//! it, the end of the last whole transaction). The byte layout itself is in
//! `shelf.rs`.

use super::durable::{GroupSync, Poison};
use super::mapped::Mapped;
use super::oid_cursor::OidCursor;
use super::shelf::{self, io_err, Holes, OffsetMap};
use super::{Cut, FileIo};
use crate::error::{Error, Result, StorageError};
use crate::oid::{Oid, OidMap};
use std::sync::Arc;

/// One open SHELF-1 file and what is known of it.
pub(crate) struct OpenShelf {
    pub(super) io: Arc<dyn FileIo>,
    pub(super) map: OffsetMap,
    /// Offsets of the records written after the map (the latest per oid).
    pub(super) index: OidMap<u64>,
    /// The length of the file as far as whole transactions go.
    pub(super) end: u64,
    pub(super) cursor: OidCursor,
    pub(super) group: Arc<GroupSync>,
    /// The file mapped for loads (see `mapped.rs`).
    pub(super) mapped: Mapped,
}

impl OpenShelf {
    /// Reads a file's structure: the map's header and the transactions after it.
    pub(super) fn read(
        io: Arc<dyn FileIo>,
        repair: bool,
        writable: bool,
        poison: &Arc<Poison>,
    ) -> Result<(OpenShelf, Option<Cut>)> {
        let len = io
            .file_len()
            .map_err(|e| io_err("reading the file length", e))?;
        let map = shelf::read_head(io.as_ref(), len)?;
        let scan = shelf::scan_transactions(io.as_ref(), map.end(), len, |_, _| Ok(()))?;
        let mut cut = None;
        if let Some((offset, bytes, reason)) = scan.torn {
            if !repair {
                return Err(Error::Storage(StorageError::TornTail {
                    path: String::new(),
                    offset,
                    bytes,
                    message: reason,
                }));
            }
            if writable {
                io.set_len(offset)
                    .and_then(|()| io.sync(false))
                    .map_err(|e| {
                        io_err(format!("truncating the torn tail at offset {offset}"), e)
                    })?;
            }
            cut = Some(Cut {
                offset,
                bytes,
                reason,
            });
        }
        let shelf = OpenShelf {
            mapped: Mapped::new(io.as_ref(), scan.end),
            group: GroupSync::new(io.clone(), poison.clone()),
            io,
            map,
            index: scan.index,
            end: scan.end,
            cursor: OidCursor::Holes(Holes::new(map)),
        };
        Ok((shelf, cut))
    }

    /// The offset of the latest record of `oid`.
    pub(super) fn position(&self, oid: Oid) -> Result<Option<u64>> {
        match self.index.get(&oid) {
            Some(at) => Ok(Some(*at)),
            None => self.map.get_mapped(&self.mapped, self.io.as_ref(), oid),
        }
    }

    pub(super) fn load(&self, oid: Oid) -> Result<Vec<u8>> {
        match self.position(oid)? {
            Some(at) => {
                shelf::read_record_mapped(&self.mapped, self.io.as_ref(), at, oid, self.end)
            }
            None => Err(Error::NotFound(oid)),
        }
    }

    /// Maps the file again when the committed transactions outgrew the map.
    pub(super) fn cover(&mut self) {
        if self.end > self.mapped.len() && self.mapped.can_grow(self.io.as_ref()) {
            self.mapped = Mapped::new(self.io.as_ref(), self.end);
        }
    }

    /// One past the largest oid that can have a record.
    pub(super) fn oid_limit(&self) -> u64 {
        let top = self
            .index
            .keys()
            .map(|o| o.0.saturating_add(1))
            .max()
            .unwrap_or(0);
        top.max(self.map.words)
    }

    /// Calls `f` for every oid with a record.
    pub(super) fn for_each_oid(&self, mut f: impl FnMut(Oid)) -> Result<()> {
        self.map.for_each(self.io.as_ref(), |oid, _| {
            if !self.index.contains_key(&oid) {
                f(oid);
            }
            Ok(())
        })?;
        let mut later: Vec<Oid> = self.index.keys().copied().collect();
        later.sort_unstable();
        later.into_iter().for_each(f);
        Ok(())
    }
}
