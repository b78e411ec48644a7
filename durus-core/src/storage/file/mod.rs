//! `FileStorage`: records in one file, in the SHELF-1 format of Durus 4.3.
//!
//! The file is the prefix, an initial transaction, an offset map (an array
//! indexed by oid, kept on disk and read in place), then the transactions
//! committed since (see `docs/FORMAT.md`). Opening reads the map's header
//! and scans only the transactions after it, so open time depends on what
//! was written since the last pack, not on the size of the database.
//!
//! Commits are appended whole, then made durable by an fsync that several
//! commits may share ([`FsyncPolicy`]). After a failed write or fsync the
//! storage refuses every later write. A pack copies what the root reaches
//! into `<path>.pack` in bounded steps ([`Storage::pack_step`]), carries over
//! the commits made meanwhile, and renames the new file over the old one,
//! keeping the old one as `<path>.prepack`.
//!
//! The module also has the functions the `durus` tools use on a file:
//! [`verify`], [`repair`] and [`FileStorage::records`].
//!
//! The files: `options.rs` the options; `open.rs` opening and locking;
//! `open_shelf.rs` the open file in memory; `oid_cursor.rs` where new oids
//! come from; `shelf.rs` the byte layout; `io.rs` the I/O trait;
//! `durable.rs` group commit; `pack.rs` the online pack; `tools.rs` verify
//! and repair.

mod durable;
mod io;
mod mapped;
mod oid_cursor;
mod open;
mod open_shelf;
mod options;
mod pack;
pub(crate) mod shelf;
mod tools;

pub use io::{FileIo, IoWrapper, StdFileIo};
pub use options::{Cut, FileOptions, FsyncPolicy};
pub use tools::{
    repair, repair_announced, verify, verify_with_progress, Problem, RepairReport, VerifyReport,
};

use super::{CommitHandler, Durability, Storage};
use crate::error::{Error, Result, StorageError};
use crate::oid::{Oid, OidSet};
use durable::Poison;
use open::open_io;
pub(crate) use open::sync_dir;
use open_shelf::OpenShelf;
use pack::Packer;
use shelf::io_err;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A [`Storage`] in one SHELF-1 file, readable and writable by Python Durus 4.3.
///
/// Most programs open it through [`Connection::open`](crate::Connection::open);
/// options go through [`FileStorage::open_with`]:
///
/// ```
/// use durus_core::storage::file::FileOptions;
/// use durus_core::{Connection, FileStorage, PRef, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Persistent, Serialize, Deserialize, Default)]
/// struct Counter {
///     hits: u64,
/// }
///
/// let path = std::env::temp_dir().join(format!("doc-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// {
///     let conn = Connection::open(&path)?;
///     let root: PRef<Counter> = conn.root()?;
///     root.write()?.hits += 1;
///     conn.commit()?; // on disk (fsync) when this returns
/// }
/// let options = FileOptions::new().read_only(true);
/// let conn = Connection::new(FileStorage::open_with(&path, options)?);
/// assert_eq!(conn.root::<Counter>()?.read()?.hits, 1);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct FileStorage {
    path: PathBuf,
    options: FileOptions,
    shelf: Option<OpenShelf>,
    pending: Vec<(Oid, Vec<u8>)>,
    /// Oids handed out by `new_oid` and not yet committed.
    allocated: OidSet,
    /// Oids a pack removed, not yet reported by `sync`.
    invalid: OidSet,
    packer: Option<Packer>,
    poison: Arc<Poison>,
    repaired: Option<Cut>,
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("open", &self.shelf.is_some())
            .finish()
    }
}

impl FileStorage {
    /// Opens (or creates) the file at `path` with the default options.
    pub fn open(path: impl AsRef<Path>) -> Result<FileStorage> {
        FileStorage::open_with(path, FileOptions::new())
    }

    /// Opens the file at `path` with `options`.
    ///
    /// A writable open takes an exclusive lock ([`StorageError::Locked`] when
    /// another writer holds it) and writes an empty SHELF-1 file when the
    /// file is missing or empty. A torn last transaction is
    /// [`StorageError::TornTail`] unless `options` asks for repair.
    pub fn open_with(path: impl AsRef<Path>, options: FileOptions) -> Result<FileStorage> {
        let path = path.as_ref().to_path_buf();
        let (io, fresh) = open_io(&path, &options, true)?;
        let poison = Arc::new(Poison::default());
        if fresh {
            if options.read_only {
                return Err(shelf::corrupt(0, format!("{} is empty", path.display())));
            }
            let bytes = shelf::empty_file();
            io.write_all_at(&bytes, 0)
                .and_then(|()| io.sync(false))
                .map_err(|e| io_err(format!("creating {}", path.display()), e))?;
            sync_dir(&path)?;
        }
        let (shelf, repaired) = OpenShelf::read(io, options.repair, !options.read_only, &poison)
            .map_err(|e| match e {
                Error::Storage(StorageError::TornTail {
                    offset,
                    bytes,
                    message,
                    ..
                }) => Error::Storage(StorageError::TornTail {
                    path: path.display().to_string(),
                    offset,
                    bytes,
                    message,
                }),
                e => e,
            })?;
        Ok(FileStorage {
            path,
            options,
            shelf: Some(shelf),
            pending: Vec::new(),
            allocated: OidSet::default(),
            invalid: OidSet::default(),
            packer: None,
            poison,
            repaired,
        })
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the open's repair cut from the file, if anything.
    pub fn repaired(&self) -> Option<&Cut> {
        self.repaired.as_ref()
    }

    /// The length of the file as far as whole transactions go.
    pub fn file_len(&self) -> Result<u64> {
        Ok(self.shelf()?.end)
    }

    /// True while a pack is in progress.
    pub fn is_packing(&self) -> bool {
        self.packer.is_some()
    }

    /// While a pack is in progress, how many records it has copied so far
    /// (for a progress display between [`Storage::pack_step`] calls).
    pub fn pack_progress(&self) -> Option<u64> {
        self.packer.as_ref().map(|p| p.copied)
    }

    /// The oid of every record, in the file's index order: the offset map's
    /// entries (those not rewritten later), then the later transactions', by oid.
    pub fn oids(&self) -> Result<Vec<Oid>> {
        let mut out = Vec::new();
        self.shelf()?.for_each_oid(|oid| out.push(oid))?;
        Ok(out)
    }

    /// Every (oid, record) of the file, in [`FileStorage::oids`] order.
    /// Reads one record at a time.
    pub fn records(&self) -> Result<impl Iterator<Item = Result<(Oid, Vec<u8>)>> + '_> {
        let shelf = self.shelf()?;
        let oids = self.oids()?;
        Ok(oids
            .into_iter()
            .map(move |oid| shelf.load(oid).map(|r| (oid, r))))
    }

    fn shelf(&self) -> Result<&OpenShelf> {
        self.shelf
            .as_ref()
            .ok_or(Error::Storage(StorageError::Closed))
    }

    fn writable(&self) -> Result<()> {
        if self.shelf.is_none() {
            return Err(Error::Storage(StorageError::Closed));
        }
        if self.options.read_only {
            return Err(Error::Storage(StorageError::ReadOnly(format!(
                "{} is open read-only",
                self.path.display()
            ))));
        }
        self.poison.check()
    }

    fn is_surprise(&self, oid: Oid) -> Result<bool> {
        if oid == Oid::ROOT || self.allocated.contains(&oid) {
            return Ok(false);
        }
        Ok(self.shelf()?.position(oid)?.is_none())
    }
}

impl Storage for FileStorage {
    fn commit_lock(&mut self) -> Option<std::sync::Arc<dyn crate::storage::CommitLock>> {
        // The hub's own commit lock is the only one.
        None
    }

    fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        _interest: Option<&[Oid]>,
    ) -> Result<bool> {
        // No one else commits to it (a file is locked by its one owner).
        crate::storage::nothing_changes(timeout)
    }

    fn change_notifier(&mut self) -> Option<std::sync::Arc<dyn crate::storage::ChangeNotifier>> {
        None
    }

    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        let shelf = self
            .shelf
            .as_mut()
            .ok_or(Error::Storage(StorageError::Closed))?;
        shelf.cover();
        shelf.load(oid)
    }

    fn contains(&mut self, oid: Oid) -> Result<bool> {
        Ok(self.shelf()?.position(oid)?.is_some())
    }

    fn new_oid(&mut self) -> Result<Oid> {
        self.writable()?;
        let shelf = self
            .shelf
            .as_mut()
            .ok_or(Error::Storage(StorageError::Closed))?;
        loop {
            let oid = Oid(shelf.cursor.next(shelf.io.as_ref(), shelf.map.words)?);
            if shelf.index.contains_key(&oid)
                || self.allocated.contains(&oid)
                || self.invalid.contains(&oid)
            {
                continue;
            }
            self.allocated.insert(oid);
            return Ok(oid);
        }
    }

    fn begin(&mut self) {
        self.pending.clear();
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        // What open checks of every record, checked before it is written.
        let inner = crate::record::unpack(&record)?.oid;
        if inner != oid {
            self.pending.clear();
            return Err(Error::Storage(StorageError::Other(format!(
                "record for oid {inner} stored under oid {oid}"
            ))));
        }
        if self.is_surprise(oid)? {
            self.pending.clear();
            return Err(Error::Storage(StorageError::Other(format!(
                "oid {oid} is a surprise: it was never handed out by new_oid"
            ))));
        }
        self.pending.push((oid, record));
        Ok(())
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        handler.invalidated(&[])?;
        self.writable()?;
        let records = std::mem::take(&mut self.pending);
        if records.is_empty() {
            return Ok(Durability::done());
        }
        let shelf = self
            .shelf
            .as_mut()
            .ok_or(Error::Storage(StorageError::Closed))?;
        let (bytes, offsets) = shelf::encode_transaction(&records);
        let at = shelf.end;
        if let Err(e) = shelf.io.write_all_at(&bytes, at) {
            self.poison.set(format!("write at offset {at}: {e}"));
            // Put the file back as it was, once; if that fails too, the
            // torn tail is found and reported at the next open.
            let _ = shelf.io.set_len(at);
            return Err(io_err(format!("writing the transaction at offset {at}"), e));
        }
        shelf.end = at + bytes.len() as u64;
        for (oid, rel) in offsets {
            shelf.index.insert(oid, at + rel);
            self.allocated.remove(&oid);
            if let Some(packer) = &mut self.packer {
                packer.committed(oid);
            }
        }
        match self.options.fsync {
            FsyncPolicy::Never => Ok(Durability::done()),
            FsyncPolicy::Always => {
                let group = shelf.group.clone();
                let seq = group.written();
                Ok(Durability::pending(move || group.wait(seq)))
            }
        }
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        let mut out: Vec<Oid> = self.invalid.drain().collect();
        out.sort_unstable();
        Ok(out)
    }

    fn pack(&mut self) -> Result<()> {
        while !self.pack_step()? {}
        Ok(())
    }

    fn pack_step(&mut self) -> Result<bool> {
        self.writable()?;
        let mut packer = match self.packer.take() {
            Some(p) => p,
            None => Packer::start(self)?,
        };
        match packer.step(self) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.packer = Some(packer);
                Ok(false)
            }
            Err(e) => {
                packer.abandon();
                Err(e)
            }
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some(packer) = self.packer.take() {
            packer.abandon();
        }
        self.pending.clear();
        self.shelf = None;
        Ok(())
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
