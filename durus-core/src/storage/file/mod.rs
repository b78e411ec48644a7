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

mod durable;
mod io;
mod mapped;
mod pack;
pub(crate) mod shelf;
mod tools;

pub use io::{FileIo, IoWrapper, StdFileIo};
pub use tools::{repair, verify, verify_with_progress, Problem, RepairReport, VerifyReport};

use super::{CommitHandler, Durability, Storage};
use crate::error::{Error, Result, StorageError};
use crate::oid::{Oid, OidMap, OidSet};
use durable::{GroupSync, Poison};
use mapped::Mapped;
use pack::Packer;
use shelf::{io_err, Holes, OffsetMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// When commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// A commit is durable (fdatasync) before it is acknowledged; commits
    /// made at the same time share one fsync. The default.
    #[default]
    Always,
    /// Never fsync commits, as Python Durus does. **Unsafe**: a power loss
    /// can lose acknowledged commits or leave a torn tail. For comparisons
    /// and for data that can be rebuilt.
    Never,
}

/// How to open a [`FileStorage`].
#[derive(Clone, Default)]
pub struct FileOptions {
    fsync: FsyncPolicy,
    read_only: bool,
    repair: bool,
    pack_step_records: Option<usize>,
    wrapper: Option<IoWrapper>,
}

impl FileOptions {
    /// The defaults: writable (created when missing), locked, fsync on
    /// every commit, a torn tail is an error.
    pub fn new() -> FileOptions {
        FileOptions::default()
    }

    /// Sets the fsync policy.
    pub fn fsync(mut self, policy: FsyncPolicy) -> FileOptions {
        self.fsync = policy;
        self
    }

    /// Opens without a lock and refuses every write. The file must exist.
    pub fn read_only(mut self, read_only: bool) -> FileOptions {
        self.read_only = read_only;
        self
    }

    /// Truncates a torn last transaction instead of failing (read-only:
    /// ignores it). [`FileStorage::repaired`] says what was cut.
    pub fn repair(mut self, repair: bool) -> FileOptions {
        self.repair = repair;
        self
    }

    /// How many records one [`Storage::pack_step`] copies (default 4096).
    pub fn pack_step_records(mut self, records: usize) -> FileOptions {
        self.pack_step_records = Some(records.max(1));
        self
    }

    /// Wraps every file the storage opens (tests inject faults this way).
    pub fn wrap_io(mut self, wrapper: IoWrapper) -> FileOptions {
        self.wrapper = Some(wrapper);
        self
    }
}

impl fmt::Debug for FileOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileOptions")
            .field("fsync", &self.fsync)
            .field("read_only", &self.read_only)
            .field("repair", &self.repair)
            .field("wrapped", &self.wrapper.is_some())
            .finish()
    }
}

/// What an open with repair cut from the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where the torn transaction began (the file's new length).
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes: u64,
    /// What was wrong with them.
    pub reason: String,
}

/// Where new oids come from: Durus's list of holes, then past the map.
enum OidCursor {
    Holes(Holes),
    Grow(u64),
}

/// One open SHELF-1 file and what is known of it.
pub(crate) struct Shelf {
    io: Arc<dyn FileIo>,
    map: OffsetMap,
    /// Offsets of the records written after the map (the latest per oid).
    index: OidMap<u64>,
    /// The length of the file as far as whole transactions go.
    end: u64,
    cursor: OidCursor,
    group: Arc<GroupSync>,
    /// The file mapped for loads (see `mapped.rs`).
    mapped: Mapped,
}

impl Shelf {
    /// Reads a file's structure: the map's header and the transactions after it.
    fn read(
        io: Arc<dyn FileIo>,
        repair: bool,
        writable: bool,
        poison: &Arc<Poison>,
    ) -> Result<(Shelf, Option<Cut>)> {
        let len = io
            .file_len()
            .map_err(|e| io_err("reading the file length", e))?;
        let map = shelf::read_head(io.as_ref(), len)?;
        let scan = shelf::scan_transactions(io.as_ref(), map.end(), len, |_, _| Ok(()))?;
        let mut cut = None;
        if let Some((offset, bytes, reason)) = scan.torn {
            if !repair {
                return Err(Error::Storage(StorageError::TornTail {
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
        let shelf = Shelf {
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
    fn position(&self, oid: Oid) -> Result<Option<u64>> {
        match self.index.get(&oid) {
            Some(at) => Ok(Some(*at)),
            None => self.map.get_mapped(&self.mapped, self.io.as_ref(), oid),
        }
    }

    fn load(&self, oid: Oid) -> Result<Vec<u8>> {
        match self.position(oid)? {
            Some(at) => {
                shelf::read_record_mapped(&self.mapped, self.io.as_ref(), at, oid, self.end)
            }
            None => Err(Error::NotFound(oid)),
        }
    }

    /// Maps the file again when the committed transactions outgrew the map.
    fn cover(&mut self) {
        if self.end > self.mapped.len() && self.mapped.can_grow(self.io.as_ref()) {
            self.mapped = Mapped::new(self.io.as_ref(), self.end);
        }
    }

    /// One past the largest oid that can have a record.
    fn oid_limit(&self) -> u64 {
        let top = self
            .index
            .keys()
            .map(|o| o.0.saturating_add(1))
            .max()
            .unwrap_or(0);
        top.max(self.map.words)
    }

    /// Calls `f` for every oid with a record.
    fn for_each_oid(&self, mut f: impl FnMut(Oid)) -> Result<()> {
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
    shelf: Option<Shelf>,
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

fn open_io(path: &Path, options: &FileOptions, create: bool) -> Result<(Arc<dyn FileIo>, bool)> {
    let shown = path.display().to_string();
    let file = if options.read_only {
        File::open(path).map_err(|e| io_err(format!("opening {shown}"), e))?
    } else {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err(format!("opening {shown}"), e))?;
        lock_exclusive(&file, &shown)?;
        file
    };
    let len = file
        .metadata()
        .map_err(|e| io_err(format!("reading the length of {shown}"), e))?
        .len();
    let io: Arc<dyn FileIo> = Arc::new(StdFileIo::new(file));
    // Empty, or cut short while it was being created: a new file.
    let empty = shelf::empty_file();
    let fresh = len == 0
        || (len < empty.len() as u64 && {
            let mut head = vec![0u8; len as usize];
            io.read_exact_at(&mut head, 0).is_ok() && empty.starts_with(&head)
        });
    let io = match &options.wrapper {
        Some(wrap) => wrap(io),
        None => io,
    };
    Ok((io, fresh))
}

/// How long a writable open waits for a lock held by someone else. A lock
/// is also held for a moment by a child process that this or another
/// process forks to run a program (the child shares the descriptor until it
/// execs), so a busy lock is tried again briefly before it is reported.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

fn lock_exclusive(file: &File, shown: &str) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Storage(StorageError::Locked(shown.to_string())))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_err(format!("locking {shown}"), e))
            }
        }
    }
}

/// Fsyncs the directory holding `path`, so that a create or rename in it is durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("syncing directory {}", dir.display()), e))
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
        let (shelf, repaired) = Shelf::read(io, options.repair, !options.read_only, &poison)?;
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

    fn shelf(&self) -> Result<&Shelf> {
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
            let candidate = match &mut shelf.cursor {
                OidCursor::Holes(holes) => match holes.next_hole(shelf.io.as_ref())? {
                    Some(hole) => hole,
                    None => {
                        shelf.cursor = OidCursor::Grow(shelf.map.words);
                        continue;
                    }
                },
                OidCursor::Grow(next) => {
                    let oid = *next;
                    *next = next
                        .checked_add(1)
                        .ok_or_else(|| Error::Storage(StorageError::Other("out of oids".into())))?;
                    oid
                }
            };
            let oid = Oid(candidate);
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
