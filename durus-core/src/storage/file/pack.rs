//! Online pack in bounded steps.
//!
//! 1. Copy: walk the records the root reaches (following each record's refs,
//!    never decoding data) and append them to `<path>.pack` as its initial
//!    transaction, a few thousand per step. A bitmap marks the oids seen.
//! 2. Map: write the offset map (offsets, then the stitched list of holes)
//!    and fsync.
//! 3. Finish: as Durus's `pack_extra`, the oids committed since the pack
//!    began are walked again from their current records and written as one
//!    more transaction; fsync; the old file is kept as `<path>.prepack` and
//!    the new one renamed over `<path>`.
//!
//! Memory: the bitmap, the stack of oids to visit and one offset per oid;
//! never the records themselves (except those committed during the pack).

use super::io::FileIo;
use super::open_shelf::OpenShelf;
use super::shelf::{self, io_err, OffsetMap, INITIAL_TRANSACTION, PREFIX};
use super::{open_io, sync_dir, FileStorage};
use crate::error::{Error, Result, StorageError};
use crate::oid::Oid;
use crate::record;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Records copied per step unless the options say otherwise.
const STEP_RECORDS: usize = 4096;
/// Bytes buffered before a write to the pack file.
const FLUSH_BYTES: usize = 1 << 20;
/// Offset-map words written per write.
const MAP_CHUNK: u64 = 1 << 16;
const NO_OFFSET: u64 = u64::MAX;

/// A set of oids as one bit each.
#[derive(Default)]
pub(super) struct Bitmap(Vec<u64>);

impl Bitmap {
    pub(super) fn contains(&self, oid: Oid) -> bool {
        let (word, bit) = ((oid.0 / 64) as usize, oid.0 % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub(super) fn insert(&mut self, oid: Oid) {
        let (word, bit) = ((oid.0 / 64) as usize, oid.0 % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    pub(super) fn remove(&mut self, oid: Oid) {
        let (word, bit) = ((oid.0 / 64) as usize, oid.0 % 64);
        if let Some(w) = self.0.get_mut(word) {
            *w &= !(1 << bit);
        }
    }
}

enum Phase {
    Copy,
    Map,
    Finish(OffsetMap),
}

/// A pack in progress.
pub(super) struct Packer {
    pack_path: PathBuf,
    io: Arc<dyn FileIo>,
    phase: Phase,
    seen: Bitmap,
    todo: Vec<Oid>,
    /// Offset in the new file of each copied oid's record.
    offsets: Vec<u64>,
    max_oid: Option<u64>,
    buf: Vec<u8>,
    /// Bytes already written to the pack file.
    written: u64,
    /// Oids committed since the pack began (Durus's `pack_extra`).
    extra: HashSet<Oid>,
    /// One past the largest oid that can have a record.
    limit: u64,
    /// Records copied per step.
    step_records: usize,
    /// Records copied so far.
    pub(super) copied: u64,
}

fn pack_io_err(path: &std::path::Path, e: std::io::Error) -> Error {
    io_err(format!("writing {}", path.display()), e)
}

impl Packer {
    pub(super) fn start(fs: &FileStorage) -> Result<Packer> {
        let shelf = fs.shelf()?;
        let mut name = fs.path.clone().into_os_string();
        name.push(".pack");
        let pack_path = PathBuf::from(name);
        let (io, _) = open_io(&pack_path, &fs.options, true)?;
        io.set_len(0).map_err(|e| pack_io_err(&pack_path, e))?;
        let mut packer = Packer {
            pack_path,
            io,
            phase: Phase::Copy,
            seen: Bitmap::default(),
            todo: Vec::new(),
            offsets: Vec::new(),
            max_oid: None,
            buf: Vec::with_capacity(FLUSH_BYTES * 2),
            written: 0,
            extra: HashSet::new(),
            limit: shelf.oid_limit(),
            step_records: fs.options.pack_step_records.unwrap_or(STEP_RECORDS),
            copied: 0,
        };
        packer.buf.extend_from_slice(PREFIX);
        packer.buf.extend_from_slice(&0u64.to_be_bytes());
        if shelf.position(Oid::ROOT)?.is_some() {
            packer.seen.insert(Oid::ROOT);
            packer.todo.push(Oid::ROOT);
        }
        Ok(packer)
    }

    /// Notes a commit made while the pack runs.
    pub(super) fn committed(&mut self, oid: Oid) {
        self.extra.insert(oid);
        self.limit = self.limit.max(oid.0.saturating_add(1));
    }

    /// Removes the unfinished pack file.
    pub(super) fn abandon(self) {
        let path = self.pack_path.clone();
        drop(self);
        let _ = std::fs::remove_file(path);
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.io
                .write_all_at(&self.buf, self.written)
                .map_err(|e| pack_io_err(&self.pack_path, e))?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Visits one oid from the stack: returns its record, and queues the
    /// oids it refers to that have not been seen.
    fn visit(&mut self, shelf: &OpenShelf, oid: Oid) -> Result<Option<Vec<u8>>> {
        let rec = match shelf.load(oid) {
            Ok(rec) => rec,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        for r in record::unpack(&rec)?.ref_oids() {
            if r.0 < self.limit && !self.seen.contains(r) {
                self.seen.insert(r);
                self.todo.push(r);
            }
        }
        Ok(Some(rec))
    }

    /// Does a bounded amount of work; `Ok(true)` when the pack is done.
    pub(super) fn step(&mut self, fs: &mut FileStorage) -> Result<bool> {
        match self.phase {
            Phase::Copy => {
                self.copy(fs.shelf()?)?;
                Ok(false)
            }
            Phase::Map => {
                self.write_map()?;
                Ok(false)
            }
            Phase::Finish(map) => {
                self.finish(fs, map)?;
                Ok(true)
            }
        }
    }

    fn copy(&mut self, shelf: &OpenShelf) -> Result<()> {
        for _ in 0..self.step_records {
            let Some(oid) = self.todo.pop() else { break };
            let Some(rec) = self.visit(shelf, oid)? else {
                continue;
            };
            let at = self.written + self.buf.len() as u64;
            let slot = oid.0 as usize;
            if slot >= self.offsets.len() {
                self.offsets.resize(slot + 1, NO_OFFSET);
            }
            if let Some(o) = self.offsets.get_mut(slot) {
                *o = at;
            }
            self.max_oid = Some(self.max_oid.map_or(oid.0, |m| m.max(oid.0)));
            shelf::encode_item(oid, &rec, &mut self.buf);
            self.copied += 1;
            if self.buf.len() >= FLUSH_BYTES {
                self.flush()?;
            }
        }
        if self.todo.is_empty() {
            self.flush()?;
            self.phase = Phase::Map;
        }
        Ok(())
    }

    fn write_map(&mut self) -> Result<()> {
        let start = self.written;
        let initial = start - INITIAL_TRANSACTION - 8;
        self.io
            .write_all_at(&initial.to_be_bytes(), INITIAL_TRANSACTION)
            .map_err(|e| pack_io_err(&self.pack_path, e))?;
        let map = OffsetMap::sized(start, self.max_oid);
        self.buf.extend_from_slice(&map.header_bytes());
        // Each hole holds the index of the previous hole plus `start`; the
        // first hole points at the last word, which is always a hole.
        let mut last_hole = map.words.saturating_sub(1);
        let mut j = 0u64;
        while j < map.words {
            let n = (map.words - j).min(MAP_CHUNK);
            for k in j..j + n {
                let at = self.offsets.get(k as usize).copied().unwrap_or(NO_OFFSET);
                if at == NO_OFFSET {
                    map.encode_word(last_hole + start, &mut self.buf);
                    last_hole = k;
                } else {
                    map.encode_word(at, &mut self.buf);
                }
            }
            self.flush()?;
            j += n;
        }
        self.flush()?;
        self.offsets = Vec::new();
        self.io
            .sync(false)
            .map_err(|e| io_err(format!("fsync of {}", self.pack_path.display()), e))?;
        self.phase = Phase::Finish(map);
        Ok(())
    }

    fn finish(&mut self, fs: &mut FileStorage, map: OffsetMap) -> Result<()> {
        let mut extra: Vec<Oid> = self.extra.iter().copied().collect();
        extra.sort_unstable();
        for oid in &extra {
            self.seen.remove(*oid);
        }
        let mut records = Vec::new();
        {
            let shelf = fs.shelf()?;
            for oid in extra {
                if self.seen.contains(oid) {
                    continue;
                }
                self.seen.insert(oid);
                self.todo.push(oid);
                while let Some(next) = self.todo.pop() {
                    if let Some(rec) = self.visit(shelf, next)? {
                        records.push((next, rec));
                    }
                }
            }
        }
        if !records.is_empty() {
            let (bytes, _) = shelf::encode_transaction(&records);
            self.io
                .write_all_at(&bytes, map.end())
                .map_err(|e| pack_io_err(&self.pack_path, e))?;
        }
        self.io
            .sync(false)
            .map_err(|e| io_err(format!("fsync of {}", self.pack_path.display()), e))?;
        let mut removed = Vec::new();
        fs.shelf()?.for_each_oid(|oid| {
            if !self.seen.contains(oid) {
                removed.push(oid);
            }
        })?;
        self.swap(fs)?;
        fs.invalid.extend(removed);
        Ok(())
    }

    /// Keeps the old file as `.prepack` and renames the new one over it.
    fn swap(&mut self, fs: &mut FileStorage) -> Result<()> {
        let mut name = fs.path.clone().into_os_string();
        name.push(".prepack");
        let prepack = PathBuf::from(name);
        let shown = fs.path.display().to_string();
        match std::fs::remove_file(&prepack) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", prepack.display()), e)),
        }
        // A hard link keeps the old file without a moment when `path` is
        // missing; where links are not supported, rename as Durus does.
        if std::fs::hard_link(&fs.path, &prepack).is_err() {
            std::fs::rename(&fs.path, &prepack)
                .map_err(|e| io_err(format!("renaming {shown} to {}", prepack.display()), e))?;
        }
        std::fs::rename(&self.pack_path, &fs.path).map_err(|e| {
            io_err(
                format!("renaming {} to {shown}", self.pack_path.display()),
                e,
            )
        })?;
        // From here the new file is the database: a failure must stop writes
        // to the old one.
        let switched = sync_dir(&fs.path).and_then(|()| {
            OpenShelf::read(self.io.clone(), false, true, &fs.poison).map(|(shelf, _)| shelf)
        });
        match switched {
            Ok(shelf) => {
                fs.shelf = Some(shelf);
                Ok(())
            }
            Err(e) => {
                fs.poison.set(format!("switching to the packed file: {e}"));
                Err(Error::Storage(StorageError::Other(format!(
                    "pack of {shown} renamed the new file but could not switch to it: {e}"
                ))))
            }
        }
    }
}
