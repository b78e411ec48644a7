//! Whole-file checks for the `durus` tools: [`verify`] and [`repair`].

use super::io::{FileIo, ScanReader, StdFileIo};
use super::pack::Bitmap;
use super::shelf::{self, io_err, Holes, OffsetMap, INITIAL_RECORDS};
use super::{open_io, Cut, FileOptions};
use crate::error::{Error, Result, StorageError};
use crate::oid::{Oid, OidMap};
use crate::record;
use std::fmt;
use std::fs::File;
use std::path::Path;

/// One problem [`verify`] found, at a file offset.
///
/// ```
/// use durus_core::storage::file::Problem;
///
/// let problem = Problem {
///     offset: 1024,
///     message: "record 42: length past end of file".into(),
/// };
/// assert_eq!(problem.to_string(), "offset 1024: record 42: length past end of file");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file.
    pub offset: u64,
    /// What is wrong, in lower case.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}: {}", self.offset, self.message)
    }
}

/// The structure of a file as [`verify`] found it.
///
/// ```
/// use durus_core::storage::file::verify;
/// use durus_core::{Connection, PRef, PersistentList};
///
/// let path = std::env::temp_dir().join(format!("doc-verify-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// {
///     let conn = Connection::open(&path)?;
///     let root: PRef<PersistentList<u8>> = conn.root()?;
///     root.write()?.push(1);
///     conn.commit()?;
/// }
/// let report = verify(&path)?;
/// assert!(report.is_ok(), "{:?}", report.problems);
/// assert_eq!(report.objects, 1);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Length of the file in bytes.
    pub file_len: u64,
    /// Records in the initial transaction.
    pub initial_records: u64,
    /// Words in the offset map.
    pub map_words: u64,
    /// Holes in the offset map's list.
    pub holes: u64,
    /// Whole transactions after the offset map.
    pub transactions: u64,
    /// Objects with a current record.
    pub objects: u64,
    /// References checked.
    pub refs: u64,
    /// References to oids with no record.
    pub dangling: u64,
    /// Everything wrong, by offset.
    pub problems: Vec<Problem>,
    /// Where the check stopped short of the file's end: a writer held the
    /// file's lock and its last transaction was not all on disk yet (not a
    /// problem: a writer at work looks just like that for a moment).
    pub writer_at_work: Option<u64>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, offset: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            offset,
            message: message.into(),
        });
    }

    /// Lists a corruption error as a problem; any other error (the file
    /// cannot be read) is returned.
    fn note(&mut self, e: Error) -> Result<()> {
        match e {
            Error::Storage(StorageError::Corrupt { offset, message }) => {
                self.problem(offset, message);
                Ok(())
            }
            e => Err(e),
        }
    }
}

/// Caps the problems of one kind listed, so a wrecked file gives a short report.
const MAX_PROBLEMS: usize = 1000;

/// Checks the structure of the SHELF-1 file at `path` without changing it:
/// the prefix, the framing of every transaction and record, the offset map
/// (each entry points at a record of its oid in the initial transaction),
/// the list of holes, a torn tail, and dangling references (refs to oids
/// with no record).
///
/// Structural problems are listed in the report; the error case is for a
/// file that cannot be read at all. While another process holds the
/// writer's lock, an incomplete last transaction is not a problem: the
/// check stops before it ([`VerifyReport::writer_at_work`]). Otherwise a
/// shared lock is held during the check, so that no writer starts.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_with_progress(path, &mut |_| {})
}

/// [`verify`], calling `progress` with the number of records checked so far
/// (every 10 000 records and at the end).
pub fn verify_with_progress(
    path: impl AsRef<Path>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| io_err(format!("opening {}", path.display()), e))?;
    // A second handle for the lock: it is released when dropped, at the end.
    let lock = File::open(path).map_err(|e| io_err(format!("opening {}", path.display()), e))?;
    let writer_busy = matches!(
        lock.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    );
    let io = StdFileIo::new(file);
    let mut report = VerifyReport {
        file_len: io
            .file_len()
            .map_err(|e| io_err("reading the file length", e))?,
        ..VerifyReport::default()
    };
    let map = match shelf::read_head(&io, report.file_len) {
        Ok(map) => map,
        Err(e) => {
            report.note(e)?;
            return Ok(report);
        }
    };
    report.map_words = map.words;
    let initial = check_initial(&io, map, &mut report)?;
    let mut live = Bitmap::default();
    let hole_words = check_map(&io, map, &initial, &mut live, &mut report)?;
    check_holes(&io, map, hole_words, &mut report)?;
    let index = scan_later(&io, map, writer_busy, &mut report)?;
    for oid in index.keys() {
        live.insert(*oid);
    }
    check_records(&io, map, &index, &live, &mut report, progress)?;
    progress(report.objects);
    Ok(report)
}

/// The initial transaction: the items the map may point at, as (offset,
/// oid) in file order.
fn check_initial(
    io: &StdFileIo,
    map: OffsetMap,
    report: &mut VerifyReport,
) -> Result<Vec<(u64, Oid)>> {
    let mut initial: Vec<(u64, Oid)> = Vec::new();
    let mut reader = ScanReader::new(io, map.start);
    let mut p = INITIAL_RECORDS;
    while p < map.start {
        let mut head = [0u8; 28];
        let room = map.start - p;
        if !reader
            .read(p, &mut head)
            .map_err(|e| io_err("reading the initial transaction", e))?
        {
            report.problem(
                p,
                format!(
                    "{room} bytes at the end of the initial transaction are too few for a record"
                ),
            );
            break;
        }
        match shelf::check_item_head(&head, p, room) {
            Ok((oid, total)) => {
                initial.push((p, oid));
                p += total;
            }
            Err(message) => {
                report.problem(p, format!("in the initial transaction: {message}"));
                break;
            }
        }
    }
    report.initial_records = initial.len() as u64;
    Ok(initial)
}

/// The offset map against the initial transaction: every entry that is not
/// a hole link points at a record of its oid. Marks those oids `live` and
/// returns the number of hole words.
fn check_map(
    io: &StdFileIo,
    map: OffsetMap,
    initial: &[(u64, Oid)],
    live: &mut Bitmap,
    report: &mut VerifyReport,
) -> Result<u64> {
    let mut in_map = 0u64;
    let mut hole_words = 0u64;
    let mut words = Vec::new();
    let mut j = 0u64;
    while j < map.words {
        let n = (map.words - j).min(1 << 16);
        words.resize((n * map.word_bytes) as usize, 0);
        let at = map.words_at() + j * map.word_bytes;
        io.read_exact_at(&mut words, at)
            .map_err(|e| io_err(format!("reading the offset map at offset {at}"), e))?;
        for (k, w) in map.decode_words(&words).enumerate() {
            let oid = Oid(j + k as u64);
            let word_at = map.words_at() + oid.0 * map.word_bytes;
            if w < map.start {
                in_map += 1;
                live.insert(oid);
                match initial.binary_search_by_key(&w, |(o, _)| *o) {
                    Ok(i) if initial.get(i).map(|(_, o)| *o) == Some(oid) => {}
                    _ if report.problems.len() < MAX_PROBLEMS => report.problem(
                        word_at,
                        format!("offset map entry for oid {oid} points at {w}, which is not a record of oid {oid}"),
                    ),
                    _ => {}
                }
            } else {
                hole_words += 1;
                if w - map.start >= map.words && report.problems.len() < MAX_PROBLEMS {
                    report.problem(
                        word_at,
                        format!("hole link of oid {oid} points past the map ({w})"),
                    );
                }
            }
        }
        j += n;
    }
    if in_map != initial.len() as u64 {
        report.problem(
            map.start,
            format!(
                "offset map holds {in_map} records, the initial transaction {}",
                initial.len()
            ),
        );
    }
    Ok(hole_words)
}

/// The list of holes: it can be walked to its end and has one entry per
/// hole word of the map.
fn check_holes(
    io: &StdFileIo,
    map: OffsetMap,
    hole_words: u64,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut holes = Holes::new(map);
    loop {
        match holes.next_hole(io) {
            Ok(Some(_)) => report.holes += 1,
            Ok(None) => break,
            Err(e) => {
                report.note(e)?;
                break;
            }
        }
    }
    if report.holes != hole_words {
        report.problem(
            map.start,
            format!(
                "the list of holes has {} entries, the map {hole_words} hole words",
                report.holes
            ),
        );
    }
    Ok(())
}

/// The transactions after the map: their framing and a torn tail. Returns
/// the offset of each oid's latest record in them.
fn scan_later(
    io: &StdFileIo,
    map: OffsetMap,
    writer_busy: bool,
    report: &mut VerifyReport,
) -> Result<OidMap<u64>> {
    let mut index: OidMap<u64> = OidMap::default();
    match shelf::scan_transactions(io, map.end(), report.file_len, |_, _| Ok(())) {
        Ok(scan) => {
            report.transactions = scan.transactions;
            index = scan.index;
            if let Some((offset, bytes, reason)) = scan.torn {
                if writer_busy {
                    report.writer_at_work = Some(offset);
                    return Ok(index);
                }
                report.problem(
                    offset,
                    format!("torn last transaction ({bytes} bytes): {reason}"),
                );
            }
        }
        Err(e) => report.note(e)?,
    }
    Ok(index)
}

/// Every current record, in file order: its framing and its references
/// (a reference to an oid that is not `live` is dangling).
fn check_records(
    io: &StdFileIo,
    map: OffsetMap,
    index: &OidMap<u64>,
    live: &Bitmap,
    report: &mut VerifyReport,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut current: Vec<(Oid, u64)> = Vec::new();
    map.for_each(io, |oid, at| {
        if !index.contains_key(&oid) {
            current.push((oid, at));
        }
        Ok(())
    })?;
    current.extend(index.iter().map(|(o, at)| (*o, *at)));
    current.sort_unstable_by_key(|(_, at)| *at);
    report.objects = current.len() as u64;
    for (done, (oid, at)) in current.into_iter().enumerate() {
        if done % 10_000 == 0 {
            progress(done as u64);
        }
        let rec = match shelf::read_record(io, at, oid, report.file_len) {
            Ok(rec) => rec,
            Err(e) => {
                report.note(e)?;
                continue;
            }
        };
        match record::unpack(&rec) {
            Ok(view) => {
                for r in view.ref_oids() {
                    report.refs += 1;
                    if !live.contains(r) {
                        report.dangling += 1;
                        if report.problems.len() < MAX_PROBLEMS {
                            report.problem(
                                at,
                                format!("record {oid} refers to oid {r}, which has no record"),
                            );
                        }
                    }
                }
            }
            Err(e) => report.problem(at, e.to_string()),
        }
    }
    Ok(())
}

/// What [`repair`] did.
///
/// ```
/// use durus_core::storage::file::repair;
/// use durus_core::FileStorage;
///
/// let path = std::env::temp_dir().join(format!("doc-repair-{}.durus", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// drop(FileStorage::open(&path)?);
/// let report = repair(&path)?;
/// assert!(report.cut.is_none()); // nothing was torn
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The torn tail that was cut, if there was one.
    pub cut: Option<Cut>,
    /// The file's length afterwards.
    pub file_len: u64,
}

/// Truncates a torn last transaction of the file at `path` (taking the
/// writer's lock), and says where and how much it cut. Corruption before
/// the last transaction is an error, not repaired.
pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport> {
    repair_announced(path, &mut |_| Ok(()))
}

/// [`repair`], calling `announce` with what it will cut once it holds the
/// lock and before it cuts (an error from `announce` cuts nothing).
pub fn repair_announced(
    path: impl AsRef<Path>,
    announce: &mut dyn FnMut(&Cut) -> Result<()>,
) -> Result<RepairReport> {
    let path = path.as_ref();
    let (io, fresh) = open_io(path, &FileOptions::new(), false)?;
    if fresh {
        return Err(shelf::corrupt(0, format!("{} is empty", path.display())));
    }
    let len = io
        .file_len()
        .map_err(|e| io_err("reading the file length", e))?;
    let map = shelf::read_head(io.as_ref(), len)?;
    let scan = shelf::scan_transactions(io.as_ref(), map.end(), len, |_, _| Ok(()))?;
    let cut = match scan.torn {
        None => None,
        Some((offset, bytes, reason)) => {
            announce(&Cut {
                offset,
                bytes,
                reason: reason.clone(),
            })?;
            io.set_len(offset)
                .and_then(|()| io.sync(false))
                .map_err(|e| {
                    io_err(
                        format!("truncating {} at offset {offset}", path.display()),
                        e,
                    )
                })?;
            Some(Cut {
                offset,
                bytes,
                reason,
            })
        }
    };
    Ok(RepairReport {
        cut,
        file_len: scan.end,
    })
}
