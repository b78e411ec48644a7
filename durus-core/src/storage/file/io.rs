//! The narrow I/O layer under the file storage.
//!
//! Everything the storage does to a file goes through [`FileIo`]: positioned
//! reads and writes, `sync` and `set_len`. Tests wrap the real file in an
//! implementation that fails on the Nth write or sync, to check that a
//! failure loses no acknowledged commit.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The operations the file storage needs from a file.
///
/// Every method takes `&self`: a sync may run in one thread while another
/// appends (group commit). Implementations must be safe to share.
///
/// ```
/// use durus_core::storage::file::{FileIo, StdFileIo};
///
/// let path = std::env::temp_dir().join(format!("doc-io-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let file = std::fs::File::options().read(true).write(true).create(true).open(&path)?;
/// let io = StdFileIo::new(file);
/// io.write_all_at(b"hello", 0)?;
/// let mut back = [0u8; 5];
/// io.read_exact_at(&mut back, 0)?;
/// assert_eq!((&back, io.file_len()?), (b"hello", 5));
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait FileIo: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes the written data durable (fdatasync when `data_only`).
    fn sync(&self, data_only: bool) -> io::Result<()>;

    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The current length of the file.
    fn file_len(&self) -> io::Result<u64>;

    /// The file itself, for the storage to map for its loads (reads only;
    /// writes, syncs and truncations still come here). `None`, the
    /// default, makes every load a positioned read through `read_at`. A
    /// wrapper that only injects faults into writes and syncs should
    /// forward it.
    fn map_source(&self) -> Option<&File> {
        None
    }

    /// Fills `buf` from `offset`; fails with `UnexpectedEof` when the file
    /// ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let at = offset.saturating_add(done as u64);
            match self.read_at(rest, at) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A [`FileIo`] over a `std::fs::File`.
///
/// ```
/// use durus_core::storage::file::{FileIo, StdFileIo};
///
/// let path = std::env::temp_dir().join(format!("doc-stdio-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let io = StdFileIo::new(std::fs::File::create(&path)?);
/// io.set_len(8)?;
/// assert_eq!(io.file_len()?, 8);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct StdFileIo {
    file: File,
}

impl StdFileIo {
    /// Wraps an open file.
    pub fn new(file: File) -> StdFileIo {
        StdFileIo { file }
    }

    /// The file, for locking.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl FileIo for StdFileIo {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.file, buf, offset)
    }

    fn sync(&self, data_only: bool) -> io::Result<()> {
        if data_only {
            self.file.sync_data()
        } else {
            self.file.sync_all()
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn file_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn map_source(&self) -> Option<&File> {
        Some(&self.file)
    }
}

/// Wraps each file the storage opens (the database, and the file a pack
/// writes) before use. Tests install one to inject faults.
///
/// ```
/// use durus_core::storage::file::{FileIo, FileOptions, IoWrapper};
/// use durus_core::FileStorage;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let opened = Arc::new(AtomicUsize::new(0));
/// let seen = opened.clone();
/// let wrapper: IoWrapper = Arc::new(move |io: Arc<dyn FileIo>| {
///     seen.fetch_add(1, Ordering::Relaxed);
///     io
/// });
/// let path = std::env::temp_dir().join(format!("doc-wrap-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let storage = FileStorage::open_with(&path, FileOptions::new().wrap_io(wrapper))?;
/// assert_eq!(opened.load(Ordering::Relaxed), 1);
/// # drop(storage);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
pub type IoWrapper = Arc<dyn Fn(Arc<dyn FileIo>) -> Arc<dyn FileIo> + Send + Sync>;

/// A sequential reader over a [`FileIo`] with a buffer, for scans.
pub(crate) struct ScanReader<'a> {
    io: &'a dyn FileIo,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    /// Valid bytes in `buf`.
    filled: usize,
    /// End of the region to read (the file length at open).
    end: u64,
}

const SCAN_BUFFER: usize = 1 << 20;

impl<'a> ScanReader<'a> {
    pub(crate) fn new(io: &'a dyn FileIo, end: u64) -> ScanReader<'a> {
        ScanReader {
            io,
            buf: Vec::new(),
            buf_at: 0,
            filled: 0,
            end,
        }
    }

    /// Reads exactly `out.len()` bytes at `offset`, or `Ok(false)` when the
    /// region ends first.
    pub(crate) fn read(&mut self, offset: u64, out: &mut [u8]) -> io::Result<bool> {
        let want = out.len() as u64;
        if offset.checked_add(want).is_none_or(|e| e > self.end) {
            return Ok(false);
        }
        if want as usize > SCAN_BUFFER / 4 {
            self.io.read_exact_at(out, offset)?;
            return Ok(true);
        }
        let inside = offset >= self.buf_at && offset + want <= self.buf_at + self.filled as u64;
        if !inside {
            let len = (self.end - offset).min(SCAN_BUFFER as u64) as usize;
            self.buf.resize(len, 0);
            self.io.read_exact_at(&mut self.buf, offset)?;
            self.buf_at = offset;
            self.filled = len;
        }
        let from = (offset - self.buf_at) as usize;
        match self.buf.get(from..from + out.len()) {
            Some(src) => {
                out.copy_from_slice(src);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
