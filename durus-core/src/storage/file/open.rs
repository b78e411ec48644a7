//! Opening a file: creating it when missing, the exclusive lock of a
//! writer, wrapping the I/O; and the directory fsync after a create or a
//! rename.

use super::shelf::{self, io_err};
use super::{FileIo, FileOptions, StdFileIo};
use crate::error::{Error, Result, StorageError};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) fn open_io(
    path: &Path,
    options: &FileOptions,
    create: bool,
) -> Result<(Arc<dyn FileIo>, bool)> {
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
