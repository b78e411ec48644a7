//! The SHELF-1 format of Durus 4.3: constants, encoders, and readers that
//! work in place over a [`FileIo`] (see `docs/FORMAT.md`).
//!
//! ```text
//! prefix "SHELF-1\n" | initial transaction | offset map | transaction*
//! ```
//!
//! Every number is an unsigned big-endian integer, 8 bytes unless said.
//! Nothing here panics on bad bytes: every length is checked against the
//! end of the file before it is used.

use super::io::{FileIo, ScanReader};
use super::mapped::Mapped;
use crate::error::{Error, Result, StorageError};
use crate::oid::{Oid, OidMap};

/// The 8 bytes every SHELF-1 file starts with.
pub const PREFIX: &[u8; 8] = b"SHELF-1\n";
/// Offset of the initial transaction's length.
pub const INITIAL_TRANSACTION: u64 = PREFIX.len() as u64;
/// Offset of the first record of the initial transaction.
pub const INITIAL_RECORDS: u64 = INITIAL_TRANSACTION + 8;
/// Bytes of an offset map's header: total length, bytes per word, word count.
pub const MAP_HEADER: u64 = 24;
/// Bytes before a record's body in a transaction: its length and its oid.
pub const ITEM_HEADER: u64 = 16;
/// The smallest body (`pack_record` output): oid and data length.
pub const MIN_RECORD: u64 = 12;

pub(crate) fn io_err(context: impl Into<String>, e: std::io::Error) -> Error {
    Error::io(context, e)
}

pub(crate) fn corrupt(offset: u64, message: impl Into<String>) -> Error {
    Error::Storage(StorageError::Corrupt {
        offset,
        message: message.into(),
    })
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_be_bytes(word)
}

/// The fewest bytes that hold `n` (at least one), as Durus's `IntArray`
/// sizes its words.
pub fn bytes_for(n: u64) -> u64 {
    u64::from((64 - n.leading_zeros()).div_ceil(8)).max(1)
}

/// The offset map: an array of words, indexed by oid, after the initial
/// transaction. A word below `start` is the offset of the oid's record; a
/// word at or above `start` is a hole, linked to the previous hole
/// (`word - start`), the last word heading the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMap {
    /// Offset of the map's first byte (its length field).
    pub start: u64,
    /// Bytes per word, 1 to 8.
    pub word_bytes: u64,
    /// Number of words (oids 0 to `words - 1`).
    pub words: u64,
}

impl OffsetMap {
    /// The map of a new file whose initial transaction ends at `start` and
    /// whose largest oid is `max_oid` (none for an empty file): Durus sizes
    /// it `max_oid + 2` words, each wide enough for `start + words + 1`.
    pub fn sized(start: u64, max_oid: Option<u64>) -> OffsetMap {
        let words = max_oid.map_or(0, |m| m.saturating_add(2));
        OffsetMap {
            start,
            word_bytes: bytes_for(start.saturating_add(words).saturating_add(1)),
            words,
        }
    }

    /// Offset of word 0.
    pub fn words_at(&self) -> u64 {
        self.start + MAP_HEADER
    }

    /// Offset just past the map, where later transactions begin.
    pub fn end(&self) -> u64 {
        self.words_at() + self.word_bytes * self.words
    }

    /// The header: `16 + word_bytes * words`, `word_bytes`, `words`.
    pub fn header_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        let parts = [
            16 + self.word_bytes * self.words,
            self.word_bytes,
            self.words,
        ];
        for (slot, value) in out.chunks_exact_mut(8).zip(parts) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// Encodes one word.
    pub fn encode_word(&self, value: u64, out: &mut Vec<u8>) {
        let bytes = value.to_be_bytes();
        let skip = 8 - self.word_bytes as usize;
        out.extend_from_slice(bytes.get(skip..).unwrap_or_default());
    }

    /// Reads the header at `start` and checks it against the file's length.
    pub fn read(io: &dyn FileIo, start: u64, file_len: u64) -> Result<OffsetMap> {
        let mut head = [0u8; 24];
        if start.saturating_add(MAP_HEADER) > file_len {
            return Err(corrupt(
                start,
                "offset map header runs past the end of the file",
            ));
        }
        io.read_exact_at(&mut head, start)
            .map_err(|e| io_err(format!("reading the offset map at offset {start}"), e))?;
        let (total, word_bytes, words) = (be_u64(&head, 0), be_u64(&head, 8), be_u64(&head, 16));
        if !(1..=8).contains(&word_bytes) {
            return Err(corrupt(
                start,
                format!("offset map words of {word_bytes} bytes"),
            ));
        }
        let body = word_bytes
            .checked_mul(words)
            .and_then(|b| b.checked_add(16));
        if body != Some(total) {
            return Err(corrupt(
                start,
                format!("offset map declares {total} bytes for {words} words of {word_bytes}"),
            ));
        }
        let map = OffsetMap {
            start,
            word_bytes,
            words,
        };
        if start
            .checked_add(8 + total)
            .is_none_or(|end| end > file_len)
        {
            return Err(corrupt(
                start,
                format!(
                    "offset map of {words} words runs past the end of the file ({file_len} bytes)"
                ),
            ));
        }
        Ok(map)
    }

    /// The raw word `j`; `None` past the map.
    pub fn word(&self, io: &dyn FileIo, j: u64) -> Result<Option<u64>> {
        if j >= self.words {
            return Ok(None);
        }
        let at = self.words_at() + j * self.word_bytes;
        let mut buf = [0u8; 8];
        let skip = 8 - self.word_bytes as usize;
        let slot = buf.get_mut(skip..).unwrap_or_default();
        io.read_exact_at(slot, at)
            .map_err(|e| io_err(format!("reading offset map word {j} at offset {at}"), e))?;
        Ok(Some(u64::from_be_bytes(buf)))
    }

    /// The record offset of `oid` held in the map, if any.
    pub fn get(&self, io: &dyn FileIo, oid: Oid) -> Result<Option<u64>> {
        Ok(self.word(io, oid.0)?.filter(|w| *w < self.start))
    }

    /// [`OffsetMap::get`], reading the word from `mapped` when it covers
    /// the map (no hashing, no system call), else from `io`.
    pub(crate) fn get_mapped(
        &self,
        mapped: &Mapped,
        io: &dyn FileIo,
        oid: Oid,
    ) -> Result<Option<u64>> {
        if oid.0 >= self.words {
            return Ok(None);
        }
        let at = self.words_at() + oid.0 * self.word_bytes;
        match mapped.get(at, self.word_bytes, self.end()) {
            Some(word) => {
                let mut buf = [0u8; 8];
                let skip = 8 - self.word_bytes as usize;
                if let Some(dst) = buf.get_mut(skip..) {
                    dst.copy_from_slice(word);
                }
                Ok(Some(u64::from_be_bytes(buf)).filter(|w| *w < self.start))
            }
            None => self.get(io, oid),
        }
    }

    /// Decodes a run of raw words read from the file.
    pub fn decode_words<'b>(&self, bytes: &'b [u8]) -> impl Iterator<Item = u64> + 'b {
        let skip = 8 - self.word_bytes as usize;
        bytes.chunks_exact(self.word_bytes as usize).map(move |w| {
            let mut buf = [0u8; 8];
            if let Some(dst) = buf.get_mut(skip..) {
                dst.copy_from_slice(w);
            }
            u64::from_be_bytes(buf)
        })
    }

    /// Calls `f(oid, offset)` for every record the map holds, reading the
    /// words in large chunks.
    pub fn for_each(
        &self,
        io: &dyn FileIo,
        mut f: impl FnMut(Oid, u64) -> Result<()>,
    ) -> Result<()> {
        const CHUNK: u64 = 1 << 16;
        let mut j = 0u64;
        let mut buf = Vec::new();
        while j < self.words {
            let n = (self.words - j).min(CHUNK);
            buf.resize((n * self.word_bytes) as usize, 0);
            let at = self.words_at() + j * self.word_bytes;
            io.read_exact_at(&mut buf, at)
                .map_err(|e| io_err(format!("reading the offset map at offset {at}"), e))?;
            for (k, w) in self.decode_words(&buf).enumerate() {
                if w < self.start {
                    f(Oid(j + k as u64), w)?;
                }
            }
            j += n;
        }
        Ok(())
    }
}

/// The bytes of a new, empty SHELF-1 file, as Durus writes it.
pub fn empty_file() -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(&0u64.to_be_bytes());
    let map = OffsetMap::sized(INITIAL_RECORDS, None);
    out.extend_from_slice(&map.header_bytes());
    out
}

/// Appends one item (`8 + record length`, oid, record) to `out`.
pub fn encode_item(oid: Oid, record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(8 + record.len() as u64).to_be_bytes());
    out.extend_from_slice(&oid.to_bytes());
    out.extend_from_slice(record);
}

/// Encodes a transaction; returns the bytes and each record's offset
/// relative to the transaction's start.
pub fn encode_transaction(records: &[(Oid, Vec<u8>)]) -> (Vec<u8>, Vec<(Oid, u64)>) {
    let body: usize = records.iter().map(|(_, r)| 16 + r.len()).sum();
    let mut out = Vec::with_capacity(8 + body);
    out.extend_from_slice(&(body as u64).to_be_bytes());
    let mut offsets = Vec::with_capacity(records.len());
    for (oid, record) in records {
        offsets.push((*oid, out.len() as u64));
        encode_item(*oid, record, &mut out);
    }
    (out, offsets)
}

/// Checks an item's header and the start of its record (the 28 bytes at
/// its offset). Returns the oid and the item's total length.
pub fn check_item_head(head: &[u8; 28], at: u64, room: u64) -> Result<(Oid, u64), String> {
    let len = be_u64(head, 0);
    let oid = Oid(be_u64(head, 8));
    if len < 8 + MIN_RECORD {
        return Err(format!("record length {len} is too small"));
    }
    let total = len.checked_add(8).filter(|t| *t <= room).ok_or_else(|| {
        format!(
            "record {oid} of {len} bytes runs {} bytes past its transaction",
            (len + 8).saturating_sub(room)
        )
    })?;
    let inner = Oid(be_u64(head, 16));
    if inner != oid {
        return Err(format!(
            "item names oid {oid} but its record is for oid {inner}"
        ));
    }
    let data_len = u64::from(u32::from_be_bytes([head[24], head[25], head[26], head[27]]));
    let body = len - 8;
    if MIN_RECORD + data_len > body || !(body - MIN_RECORD - data_len).is_multiple_of(8) {
        return Err(format!(
            "record {oid} at offset {at}: data length {data_len} does not fit its {body} bytes"
        ));
    }
    Ok((oid, total))
}

/// Checks an item's 16-byte header at `at` (`avail` bytes before the end
/// of the file): the item is for `oid` and fits. Returns the record's length.
fn check_record_head(head: &[u8], at: u64, oid: Oid, avail: u64) -> Result<usize> {
    let len = be_u64(head, 0);
    let name = Oid(be_u64(head, 8));
    if name != oid {
        return Err(corrupt(
            at,
            format!("expected record {oid}, found an item for oid {name}"),
        ));
    }
    if len < 8 + MIN_RECORD || len.checked_add(8).is_none_or(|t| t > avail) {
        return Err(corrupt(
            at,
            format!("record {oid}: length {len} runs past the end of the file"),
        ));
    }
    usize::try_from(len - 8).map_err(|_| corrupt(at, format!("record {oid} is too large")))
}

/// [`read_record`] from the file's map when it covers the item: one
/// allocation, the size of the record, and one copy; else from `io`.
pub(crate) fn read_record_mapped(
    mapped: &Mapped,
    io: &dyn FileIo,
    at: u64,
    oid: Oid,
    end: u64,
) -> Result<Vec<u8>> {
    let bytes = mapped.below(end);
    let Some(from) = usize::try_from(at).ok().filter(|a| *a < bytes.len()) else {
        return read_record(io, at, oid, end);
    };
    let item = bytes.get(from..).unwrap_or_default();
    let avail = item.len() as u64;
    if avail < ITEM_HEADER + MIN_RECORD {
        return Err(corrupt(
            at,
            format!("record {oid}: item runs past the end of the file"),
        ));
    }
    let body_len = check_record_head(item, at, oid, avail)?;
    match item.get(ITEM_HEADER as usize..ITEM_HEADER as usize + body_len) {
        Some(record) => Ok(record.to_vec()),
        None => read_record(io, at, oid, end),
    }
}

/// Reads the record of `oid` from the item at `at`, checking that the item
/// is for `oid` and lies before `end`.
pub fn read_record(io: &dyn FileIo, at: u64, oid: Oid, end: u64) -> Result<Vec<u8>> {
    const GUESS: usize = 4096;
    let avail = end.saturating_sub(at);
    if avail < ITEM_HEADER + MIN_RECORD {
        return Err(corrupt(
            at,
            format!("record {oid}: item runs past the end of the file"),
        ));
    }
    let first = (avail.min(GUESS as u64)) as usize;
    let mut buf = vec![0u8; first];
    io.read_exact_at(&mut buf, at)
        .map_err(|e| io_err(format!("reading record {oid} at offset {at}"), e))?;
    let body_len = check_record_head(&buf, at, oid, avail)?;
    let mut record = Vec::with_capacity(body_len);
    let have = buf.get(16..).unwrap_or_default();
    if have.len() >= body_len {
        record.extend_from_slice(have.get(..body_len).unwrap_or_default());
    } else {
        record.extend_from_slice(have);
        let mut rest = vec![0u8; body_len - have.len()];
        let rest_at = at + 16 + have.len() as u64;
        io.read_exact_at(&mut rest, rest_at)
            .map_err(|e| io_err(format!("reading record {oid} at offset {at}"), e))?;
        record.extend_from_slice(&rest);
    }
    Ok(record)
}

/// The fixed part of a file: where its offset map is.
pub fn read_head(io: &dyn FileIo, file_len: u64) -> Result<OffsetMap> {
    let mut head = [0u8; 16];
    if file_len < 16 {
        return Err(corrupt(
            0,
            format!("file of {file_len} bytes is too short to be SHELF-1"),
        ));
    }
    io.read_exact_at(&mut head, 0)
        .map_err(|e| io_err("reading the file header", e))?;
    if head.get(..8) != Some(&PREFIX[..]) {
        return Err(corrupt(0, "not a SHELF-1 file (bad prefix)"));
    }
    let initial = be_u64(&head, 8);
    let start = INITIAL_RECORDS
        .checked_add(initial)
        .filter(|s| *s <= file_len)
        .ok_or_else(|| {
            corrupt(
                INITIAL_TRANSACTION,
                format!("initial transaction of {initial} bytes runs past the end of the file"),
            )
        })?;
    OffsetMap::read(io, start, file_len)
}

/// What a scan of the transactions after the offset map found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The latest offset of each oid written in those transactions.
    pub index: OidMap<u64>,
    /// Where the last whole transaction ends.
    pub end: u64,
    /// How many whole transactions there are.
    pub transactions: u64,
    /// The torn last transaction, if any: (offset, bytes present, what is wrong).
    pub torn: Option<(u64, u64, String)>,
}

/// Reads the transactions from `from` to `file_len`, calling `each(oid,
/// offset)` for each item. A broken transaction that is the last in the
/// file is reported in [`Scan::torn`]; one followed by more data is an error.
pub fn scan_transactions(
    io: &dyn FileIo,
    from: u64,
    file_len: u64,
    mut each: impl FnMut(Oid, u64) -> Result<()>,
) -> Result<Scan> {
    let mut reader = ScanReader::new(io, file_len);
    let mut scan = Scan {
        end: from,
        ..Scan::default()
    };
    let mut tx = from;
    let read_err =
        |at: u64, e: std::io::Error| io_err(format!("reading the transaction at offset {at}"), e);
    while tx < file_len {
        let present = file_len - tx;
        let mut len_bytes = [0u8; 8];
        if !reader
            .read(tx, &mut len_bytes)
            .map_err(|e| read_err(tx, e))?
        {
            scan.torn = Some((
                tx,
                present,
                format!("only {present} of the 8 bytes of its length"),
            ));
            break;
        }
        let len = u64::from_be_bytes(len_bytes);
        let tx_end = match tx.checked_add(8).and_then(|b| b.checked_add(len)) {
            Some(e) if e <= file_len => e,
            _ => {
                scan.torn = Some((
                    tx,
                    present,
                    format!(
                        "declares {len} bytes after its length, {} are present",
                        present - 8
                    ),
                ));
                break;
            }
        };
        let mut p = tx + 8;
        let mut items = Vec::new();
        let mut broken = None;
        while p < tx_end {
            let mut head = [0u8; 28];
            let room = tx_end - p;
            if room < 28 || !reader.read(p, &mut head).map_err(|e| read_err(tx, e))? {
                broken = Some((
                    p,
                    format!("{room} bytes left in the transaction are too few for a record"),
                ));
                break;
            }
            match check_item_head(&head, p, room) {
                Ok((oid, total)) => {
                    items.push((oid, p));
                    p += total;
                }
                Err(message) => {
                    broken = Some((p, message));
                    break;
                }
            }
        }
        if let Some((at, message)) = broken {
            if tx_end == file_len {
                scan.torn = Some((tx, present, format!("at offset {at}: {message}")));
                break;
            }
            return Err(corrupt(
                at,
                format!("in the transaction at offset {tx}: {message}"),
            ));
        }
        for (oid, at) in items {
            each(oid, at)?;
            scan.index.insert(oid, at);
        }
        scan.transactions += 1;
        tx = tx_end;
        scan.end = tx_end;
    }
    Ok(scan)
}

/// Walks the linked list of holes of `map` in Durus's order (from the word
/// before the last, down, and the last word at the end).
pub struct Holes {
    map: OffsetMap,
    next: Option<u64>,
    steps: u64,
}

impl Holes {
    /// The holes of `map`.
    pub fn new(map: OffsetMap) -> Holes {
        Holes {
            map,
            next: map.words.checked_sub(1),
            steps: 0,
        }
    }

    /// The next hole; `None` at the end of the list.
    pub fn next_hole(&mut self, io: &dyn FileIo) -> Result<Option<u64>> {
        let Some(j) = self.next else { return Ok(None) };
        let last = self.map.words - 1;
        let word = self.map.word(io, j)?.unwrap_or(0);
        let at = self.map.words_at() + j * self.map.word_bytes;
        if word < self.map.start || word - self.map.start > last {
            return Err(corrupt(
                at,
                format!("offset map word {j} is not a hole link ({word})"),
            ));
        }
        self.steps += 1;
        if self.steps > self.map.words {
            return Err(corrupt(at, "the list of holes loops"));
        }
        let hole = word - self.map.start;
        self.next = if hole == last { None } else { Some(hole) };
        Ok(Some(hole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_durus_bytes() {
        // Durus 4.3: Shelf(File(path)) on a missing file writes these 40 bytes.
        let mut expected = b"SHELF-1\n".to_vec();
        for n in [0u64, 16, 1, 0] {
            expected.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(empty_file(), expected);
        assert_eq!(OffsetMap::sized(16, None).end(), 40);
    }

    #[test]
    fn word_size_follows_intarray() {
        assert_eq!(bytes_for(17), 1);
        assert_eq!(bytes_for(255), 1);
        assert_eq!(bytes_for(256), 2);
        assert_eq!(bytes_for(u64::MAX), 8);
        let map = OffsetMap::sized(300, Some(5));
        assert_eq!(map.words, 7);
        assert_eq!(map.word_bytes, 2);
        assert_eq!(map.end(), 300 + 24 + 14);
    }

    #[test]
    fn item_head_checks() {
        let (bytes, offsets) = encode_transaction(&[(
            Oid(3),
            crate::record::pack(Oid(3), b"ab", &[Oid(1)]).unwrap(),
        )]);
        assert_eq!(offsets, vec![(Oid(3), 8)]);
        let head: [u8; 28] = bytes[8..36].try_into().unwrap();
        let room = bytes.len() as u64 - 8;
        assert_eq!(check_item_head(&head, 8, room), Ok((Oid(3), room)));
        assert!(check_item_head(&head, 8, room - 1).is_err());
    }
}
