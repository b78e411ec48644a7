//! A read-only memory map of the storage file, for loads.
//!
//! Loads read records and offset map words straight from the map: no
//! system call and no intermediate buffer per record. Writes, fsyncs and
//! truncations still go through [`FileIo`], so a wrapper that injects
//! faults sees all of them.
//!
//! The map is shared (`MAP_SHARED`) and reaches past the end of the file
//! (`room`), so that the transactions this process appends afterwards are
//! readable through it without mapping again; it is made anew only when
//! the committed part of the file outgrows it. Only bytes below the end of
//! the committed transactions are ever read, and those never change: the
//! file is append-only while it is open, a failed write truncates only
//! what it appended, and a pack writes another file. Touching a page
//! wholly past the end of the file would fault, which is why nothing past
//! that end is read.
//!
//! When the [`FileIo`] offers no file to map (a wrapper that does not
//! forward [`FileIo::map_source`]) or the map cannot be made, loads fall
//! back to positioned reads.

use super::io::FileIo;

/// How far past the committed end a new map reaches: as much again, at
/// least 64 MiB, so that appends remap rarely (address space, not memory).
const MIN_ROOM: u64 = 64 << 20;

/// The map of a storage file, if there is one.
#[derive(Default)]
pub(crate) struct Mapped {
    map: Option<memmap2::Mmap>,
    /// Mapping was tried and failed: loads use positioned reads for good.
    failed: bool,
}

impl Mapped {
    /// Maps the file of `io` so that at least its first `end` bytes (the
    /// committed transactions) are covered. No map when `io` has no file to
    /// map or mapping fails.
    pub(crate) fn new(io: &dyn FileIo, end: u64) -> Mapped {
        let Some(file) = io.map_source() else {
            return Mapped::default();
        };
        let len = end.saturating_add(end.max(MIN_ROOM));
        let Ok(len) = usize::try_from(len) else {
            return Mapped {
                map: None,
                failed: true,
            };
        };
        // SAFETY: the map is read-only and only its bytes below the
        // committed end of the file are read (see the module's comment);
        // those are neither changed nor truncated while the storage is
        // open (a writable storage holds the file's exclusive lock, and
        // Durus's own tools never rewrite a file in place).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file) }.ok();
        Mapped {
            failed: map.is_none(),
            map,
        }
    }

    /// True when mapping again may cover more: the file can be mapped and
    /// mapping has not failed.
    pub(crate) fn can_grow(&self, io: &dyn FileIo) -> bool {
        !self.failed && io.map_source().is_some()
    }

    /// How many bytes the map covers (0 without a map).
    pub(crate) fn len(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }

    /// The bytes `[at, at + len)`, when the map covers them and they lie
    /// below `end`, the committed end of the file.
    pub(crate) fn get(&self, at: u64, len: u64, end: u64) -> Option<&[u8]> {
        let stop = at.checked_add(len).filter(|s| *s <= end)?;
        let map = self.map.as_ref()?;
        map.get(usize::try_from(at).ok()?..usize::try_from(stop).ok()?)
    }

    /// Everything the map covers below `end`.
    pub(crate) fn below(&self, end: u64) -> &[u8] {
        match &self.map {
            Some(m) => {
                let stop = usize::try_from(end).unwrap_or(usize::MAX).min(m.len());
                m.get(..stop).unwrap_or_default()
            }
            None => &[],
        }
    }
}
