//! The tools on a PostgreSQL database (the `postgres` feature): opening
//! one by its URL, `durus convert`'s source and destination, and `durus
//! verify`'s checks of every row. Without the feature, a PostgreSQL URL is
//! an error saying how to build with it.

#[cfg(feature = "postgres")]
use super::convert::BATCH;
use super::convert::{Sink, Source};
#[cfg(feature = "postgres")]
use super::progress;
use durus_core::error::{Error, Result, StorageError};
use durus_core::storage::Storage;
#[cfg(feature = "postgres")]
use durus_core::{internals::record, Oid, PgStorage};
#[cfg(feature = "postgres")]
use std::collections::{HashMap, HashSet};
use std::io::Write;

/// What a PostgreSQL URL gives when this program was built without the
/// `postgres` feature.
pub const POSTGRES_MISSING: &str = "this durus was built without PostgreSQL support: \
     build it with the postgres feature (cargo build --release -p durus-cli --features postgres, \
     or cargo install --path durus-cli --features postgres)";

/// Whether a storage named on the command line is a PostgreSQL URL
/// (`postgresql://...` or `postgres://...`).
pub fn is_postgres_url(name: &str) -> bool {
    name.starts_with("postgresql://") || name.starts_with("postgres://")
}

/// Refuses a storage named in libpq's keyword form (`host=db dbname=app`),
/// which would otherwise be taken for a file name and a new file made:
/// say to write it as a URL. The value itself is not repeated (it may
/// hold a password).
pub fn refuse_connection_string(name: &str) -> Result<()> {
    const KEYWORDS: [&str; 6] = [
        "host=",
        "hostaddr=",
        "dbname=",
        "user=",
        "port=",
        "password=",
    ];
    let keyword_form = !is_postgres_url(name)
        && name
            .split_whitespace()
            .any(|word| KEYWORDS.iter().any(|k| word.starts_with(k)));
    if keyword_form {
        return Err(Error::Storage(StorageError::Other(
            "the storage looks like a PostgreSQL connection string in keyword form \
             (host=... dbname=...): give it as a URL, postgresql://USER@HOST:PORT/DBNAME \
             (a file name with '=' in it can be given as ./NAME)"
                .into(),
        )));
    }
    Ok(())
}

/// A URL with its password replaced, for messages.
pub(super) fn redact(url: &str) -> String {
    durus_core::internals::redact_url(url)
}

#[cfg(not(feature = "postgres"))]
fn missing() -> Error {
    Error::Storage(StorageError::Other(POSTGRES_MISSING.to_string()))
}

/// Connects to the PostgreSQL database at `url`.
#[cfg(feature = "postgres")]
pub(super) fn open(url: &str) -> Result<Box<dyn Storage>> {
    Ok(Box::new(PgStorage::connect(url)?))
}

/// Connects to the PostgreSQL database at `url`.
#[cfg(not(feature = "postgres"))]
pub(super) fn open(_url: &str) -> Result<Box<dyn Storage>> {
    Err(missing())
}

/// Drops the durus tables of the database at `url`: its next storage
/// starts empty (a benchmark's fresh database).
#[cfg(feature = "postgres")]
pub fn drop_schema(url: &str) -> Result<()> {
    PgStorage::drop_schema(url)
}

/// Drops the durus tables of the database at `url`.
#[cfg(not(feature = "postgres"))]
pub fn drop_schema(_url: &str) -> Result<()> {
    Err(missing())
}

/// Every row of a PostgreSQL database, page by page in oid order.
#[cfg(feature = "postgres")]
pub(super) struct PgSource {
    storage: PgStorage,
    after: Option<Oid>,
}

#[cfg(feature = "postgres")]
impl Source for PgSource {
    fn next_batch(&mut self) -> Result<Vec<(Oid, Vec<u8>)>> {
        let page = self.storage.records_after(self.after, BATCH)?;
        if let Some((oid, _, _)) = page.last() {
            self.after = Some(*oid);
        }
        Ok(page.into_iter().map(|(oid, rec, _)| (oid, rec)).collect())
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        self.storage.close()
    }
}

/// The rows of the database at `url`, as a conversion's source.
#[cfg(feature = "postgres")]
pub(super) fn source(url: &str) -> Result<Box<dyn Source>> {
    Ok(Box::new(PgSource {
        storage: PgStorage::connect(url)?,
        after: None,
    }))
}

/// The rows of the database at `url`, as a conversion's source.
#[cfg(not(feature = "postgres"))]
pub(super) fn source(_url: &str) -> Result<Box<dyn Source>> {
    Err(missing())
}

/// An empty PostgreSQL database that records are copied into.
#[cfg(feature = "postgres")]
pub(super) struct PgSink {
    storage: PgStorage,
}

#[cfg(feature = "postgres")]
impl Sink for PgSink {
    fn storage(&mut self) -> &mut dyn Storage {
        &mut self.storage
    }

    fn finish(mut self: Box<Self>, max_oid: Option<Oid>) -> Result<()> {
        if let Some(oid) = max_oid {
            self.storage.reserve_oids_through(oid)?;
        }
        self.storage.close()
    }
}

/// The database at `url` as a conversion's destination; refused unless it
/// holds no record.
#[cfg(feature = "postgres")]
pub(super) fn sink(url: &str) -> Result<Box<dyn Sink>> {
    let mut storage = PgStorage::connect(url)?;
    if !storage.is_empty()? {
        return Err(Error::Storage(StorageError::Other(format!(
            "{}: the database holds records; convert copies into an empty one only",
            redact(url)
        ))));
    }
    Ok(Box::new(PgSink { storage }))
}

/// The database at `url` as a conversion's destination.
#[cfg(not(feature = "postgres"))]
pub(super) fn sink(_url: &str) -> Result<Box<dyn Sink>> {
    Err(missing())
}

/// Checks every row of the PostgreSQL database at `url` and writes what it
/// found to `out`: each record decodes and is the record of its row's oid,
/// its row's `refs` (what a pack follows) are the record's references, no
/// reference is dangling, and the root is there. Counts the records
/// reachable from the root (the others are what a pack removes). Returns
/// whether no problem was found.
#[cfg(feature = "postgres")]
pub fn verify_postgres(url: &str, out: &mut dyn Write) -> Result<bool> {
    /// Problems listed at most (the count is always given).
    const MAX_LISTED: usize = 1000;
    let mut storage = PgStorage::connect(url)?;
    let bar = progress("records");
    let mut graph: HashMap<Oid, Vec<Oid>> = HashMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut problem_count = 0u64;
    let mut note = |problems: &mut Vec<String>, p: String| {
        problem_count += 1;
        if problems.len() < MAX_LISTED {
            problems.push(p);
        }
    };
    let mut after = None;
    loop {
        let page = storage.records_after(after, BATCH)?;
        let Some((last, _, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        for (oid, rec, column) in page {
            let refs = match record::unpack(&rec) {
                Ok(view) if view.oid != oid => {
                    note(
                        &mut problems,
                        format!("oid {oid}: the row holds the record of oid {}", view.oid),
                    );
                    view.ref_oids().collect()
                }
                Ok(view) => view.ref_oids().collect::<Vec<Oid>>(),
                Err(e) => {
                    note(&mut problems, format!("oid {oid}: undecodable record: {e}"));
                    column.clone()
                }
            };
            let mut a = refs.clone();
            let mut b = column;
            a.sort_unstable();
            a.dedup();
            b.sort_unstable();
            b.dedup();
            if a != b {
                note(
                    &mut problems,
                    format!("oid {oid}: the refs column is {b:?}, the record refers to {a:?}"),
                );
            }
            graph.insert(oid, refs);
        }
        bar.set_position(graph.len() as u64);
    }
    bar.finish_and_clear();
    storage.close()?;

    let mut refs_count = 0u64;
    let mut dangling = 0u64;
    let mut oids: Vec<&Oid> = graph.keys().collect();
    oids.sort_unstable();
    for oid in oids {
        for r in &graph[oid] {
            refs_count += 1;
            if !graph.contains_key(r) {
                dangling += 1;
                note(
                    &mut problems,
                    format!("oid {oid} refers to oid {r}, which has no record"),
                );
            }
        }
    }
    if !graph.is_empty() && !graph.contains_key(&Oid::ROOT) {
        note(&mut problems, "the root (oid 0) has no record".to_string());
    }
    let mut reached: HashSet<Oid> = HashSet::new();
    let mut todo = vec![Oid::ROOT];
    while let Some(oid) = todo.pop() {
        let Some(refs) = graph.get(&oid) else {
            continue;
        };
        if reached.insert(oid) {
            todo.extend(refs.iter().copied().filter(|r| !reached.contains(r)));
        }
    }
    let w = Error::Io;
    writeln!(
        out,
        "{}: {} records, {} reachable from the root, {} unreachable (a pack removes them), \
         {} references ({} dangling)",
        redact(url),
        graph.len(),
        reached.len(),
        graph.len() - reached.len(),
        refs_count,
        dangling
    )
    .map_err(w)?;
    for p in &problems {
        writeln!(out, "problem: {p}").map_err(w)?;
    }
    if problem_count > problems.len() as u64 {
        writeln!(
            out,
            "... and {} more problems",
            problem_count - problems.len() as u64
        )
        .map_err(w)?;
    }
    let ok = problem_count == 0;
    writeln!(out, "{}", if ok { "ok" } else { "NOT OK" }).map_err(w)?;
    Ok(ok)
}

/// Checks every row of the PostgreSQL database at `url`.
#[cfg(not(feature = "postgres"))]
pub fn verify_postgres(_url: &str, _out: &mut dyn Write) -> Result<bool> {
    Err(missing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_postgres_url("postgresql://app@db/objects"));
        assert!(is_postgres_url("postgres://db/objects"));
        assert!(!is_postgres_url("objects.durus"));
        assert_eq!(
            redact("postgresql://app:secret@db/objects"),
            "postgresql://app:***@db/objects"
        );
        assert_eq!(redact("postgresql://db/objects"), "postgresql://db/objects");
    }
}
