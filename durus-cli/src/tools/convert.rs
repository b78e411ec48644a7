//! `durus convert SRC DST`: every record of one storage copied as is,
//! oids kept, into an empty one (a file or a PostgreSQL database, either
//! way), as `zodbconvert` does.

use super::{postgres, progress, Target};
use durus_core::error::{Error, Result, StorageError};
use durus_core::storage::{FileOptions, FileStorage, FsyncPolicy, NoConflicts, Storage};
use durus_core::Oid;
use std::io::Write;

/// Records read and written at a time (one commit in the destination).
pub(super) const BATCH: usize = 1000;

/// Where the records come from, a batch at a time.
pub(super) trait Source {
    /// The next records; empty when there are no more.
    fn next_batch(&mut self) -> Result<Vec<(Oid, Vec<u8>)>>;
    /// Done with it.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Where they go.
pub(super) trait Sink {
    /// The storage the batches are committed to.
    fn storage(&mut self) -> &mut dyn Storage;
    /// Before a batch with these oids is stored.
    fn prepare(&mut self, _oids: &[Oid]) -> Result<()> {
        Ok(())
    }
    /// After the last batch: `max_oid` is the largest oid copied.
    fn finish(self: Box<Self>, max_oid: Option<Oid>) -> Result<()>;
}

/// The current records of a storage file, in the file's index order.
struct FileSource {
    storage: FileStorage,
    oids: Vec<Oid>,
    next: usize,
}

impl Source for FileSource {
    fn next_batch(&mut self) -> Result<Vec<(Oid, Vec<u8>)>> {
        let end = (self.next + BATCH).min(self.oids.len());
        let oids = &self.oids[self.next..end];
        self.next = end;
        let records = self.storage.bulk_load(oids)?;
        Ok(oids.iter().copied().zip(records).collect())
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.storage.close()
    }
}

/// A storage file with no records (new, or empty), and the highest oid it
/// has handed out.
struct FileSink(FileStorage, Option<Oid>);

impl Sink for FileSink {
    fn storage(&mut self) -> &mut dyn Storage {
        &mut self.0
    }

    /// A file stores only the oids it handed out: it hands them out (in
    /// order, an empty file has no holes) up to the largest of the batch.
    fn prepare(&mut self, oids: &[Oid]) -> Result<()> {
        let Some(needed) = oids.iter().max().copied() else {
            return Ok(());
        };
        while self.1.is_none_or(|highest| highest < needed) {
            let oid = self.0.new_oid()?;
            self.1 = self.1.max(Some(oid));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, _: Option<Oid>) -> Result<()> {
        // New oids in a file come from its offset map: nothing to reserve.
        self.0.close()
    }
}

fn refused(why: String) -> Error {
    Error::Storage(StorageError::Other(why))
}

fn source(target: &Target) -> Result<Box<dyn Source>> {
    match target {
        Target::File(path) => {
            let storage = FileStorage::open_with(path, FileOptions::new().read_only(true))?;
            let oids = storage.oids()?;
            Ok(Box::new(FileSource {
                storage,
                oids,
                next: 0,
            }))
        }
        Target::Postgres(url) => postgres::source(url),
        Target::Server(address) => Err(refused(format!(
            "convert reads a file or a PostgreSQL database, not a server ({address})"
        ))),
    }
}

fn sink(target: &Target) -> Result<Box<dyn Sink>> {
    match target {
        Target::File(path) => {
            let storage =
                FileStorage::open_with(path, FileOptions::new().fsync(FsyncPolicy::Always))?;
            if !storage.oids()?.is_empty() {
                return Err(refused(format!(
                    "{}: the file holds records; convert copies into a new or empty file only",
                    path.display()
                )));
            }
            Ok(Box::new(FileSink(storage, None)))
        }
        Target::Postgres(url) => postgres::sink(url),
        Target::Server(address) => Err(refused(format!(
            "convert writes a file or a PostgreSQL database, not a server ({address})"
        ))),
    }
}

/// Copies every record of `src` (a file's current records, or every row
/// of a PostgreSQL database) as is, with its oid, into `dst`, which must
/// hold no record (a file is made when missing). Writes a line saying what
/// it did to `out`; returns the number of records copied.
///
/// The copy is made in commits of [`BATCH`] records: a failure part way
/// leaves the records copied so far in `dst` (empty it before trying again).
pub fn convert(src: &Target, dst: &Target, out: &mut dyn Write) -> Result<u64> {
    if src == dst {
        return Err(refused(format!(
            "{src} is both the source and the destination"
        )));
    }
    let mut from = source(src)?;
    let mut to = sink(dst)?;
    let bar = progress("records");
    let mut copied = 0u64;
    let mut max_oid: Option<Oid> = None;
    loop {
        let batch = from.next_batch()?;
        if batch.is_empty() {
            break;
        }
        let oids: Vec<Oid> = batch.iter().map(|(oid, _)| *oid).collect();
        to.prepare(&oids)?;
        let storage = to.storage();
        storage.begin();
        for (oid, record) in batch {
            max_oid = max_oid.max(Some(oid));
            storage.store(oid, record)?;
            copied += 1;
        }
        storage.end(&mut NoConflicts)?.wait()?;
        bar.set_position(copied);
    }
    bar.finish_and_clear();
    from.close()?;
    to.finish(max_oid)?;
    writeln!(out, "copied {copied} records from {src} to {dst}").map_err(Error::Io)?;
    Ok(copied)
}
