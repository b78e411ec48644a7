//! How to open a [`FileStorage`](super::FileStorage): [`FileOptions`] and
//! [`FsyncPolicy`]; and [`Cut`], what an open with repair removed.

#[cfg(doc)]
use super::FileStorage;
use super::IoWrapper;
#[cfg(doc)]
use crate::storage::Storage;
use std::fmt;

/// When commits reach the disk.
///
/// ```
/// use durus_core::{Connection, FileOptions, FileStorage, FsyncPolicy, PRef, PersistentList};
///
/// let path = std::env::temp_dir().join(format!("doc-fsync-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let options = FileOptions::new().fsync(FsyncPolicy::Never); // fast, not durable
/// let conn = Connection::new(FileStorage::open_with(&path, options)?);
/// let root: PRef<PersistentList<u8>> = conn.root()?;
/// conn.commit()?;
/// # drop(conn);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
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
///
/// ```
/// use durus_core::{FileOptions, FileStorage, Storage};
///
/// let path = std::env::temp_dir().join(format!("doc-options-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// drop(FileStorage::open(&path)?); // creates the file
/// let mut reader = FileStorage::open_with(&path, FileOptions::new().read_only(true))?;
/// assert!(reader.new_oid().is_err()); // read-only refuses writes
/// # drop(reader);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct FileOptions {
    pub(super) fsync: FsyncPolicy,
    pub(super) read_only: bool,
    pub(super) repair: bool,
    pub(super) pack_step_records: Option<usize>,
    pub(super) wrapper: Option<IoWrapper>,
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
///
/// ```
/// use durus_core::storage::file::Cut;
/// use durus_core::{FileOptions, FileStorage};
///
/// let path = std::env::temp_dir().join(format!("doc-cut-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let storage = FileStorage::open_with(&path, FileOptions::new().repair(true))?;
/// let cut: Option<&Cut> = storage.repaired();
/// assert!(cut.is_none()); // a new file has no torn tail
/// # drop(storage);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where the torn transaction began (the file's new length).
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes: u64,
    /// What was wrong with them.
    pub reason: String,
}
