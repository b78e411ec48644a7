//! Looking inside a database through any [`Storage`]: a traversal from the
//! root with bulk loads (one round trip per batch over a server), a class
//! census, the referrers of an oid, and one object as JSON.

use super::json::record_json;
use durus_core::error::{Error, Result};
use durus_core::internals::encoding;
use durus_core::internals::record;
use durus_core::oid::Oid;
use durus_core::storage::Storage;
use indicatif::ProgressBar;
use std::collections::{HashMap, HashSet};

/// Oids loaded per bulk load during a traversal.
const BATCH: usize = 1000;

/// Calls `visit` with every record reachable from the root, each once,
/// loading them in batches. References to missing oids are skipped.
/// Returns the number of records visited.
pub fn traverse(
    storage: &mut dyn Storage,
    progress: &ProgressBar,
    mut visit: impl FnMut(Oid, &[u8]) -> Result<()>,
) -> Result<u64> {
    let mut queued: HashSet<Oid> = HashSet::from([Oid::ROOT]);
    let mut todo: Vec<Oid> = vec![Oid::ROOT];
    let mut visited = 0u64;
    while !todo.is_empty() {
        let batch: Vec<Oid> = todo.drain(todo.len().saturating_sub(BATCH)..).collect();
        for (oid, rec) in load_batch(storage, &batch)? {
            let view = record::unpack(&rec)?;
            for r in view.ref_oids() {
                if queued.insert(r) {
                    todo.push(r);
                }
            }
            visit(oid, &rec)?;
            visited += 1;
        }
        progress.set_position(visited);
    }
    progress.finish_and_clear();
    Ok(visited)
}

/// Loads a batch; when some oid is missing, loads one by one and skips it.
fn load_batch(storage: &mut dyn Storage, oids: &[Oid]) -> Result<Vec<(Oid, Vec<u8>)>> {
    match storage.bulk_load(oids) {
        Ok(records) => Ok(oids.iter().copied().zip(records).collect()),
        Err(Error::NotFound(_)) => {
            let mut out = Vec::with_capacity(oids.len());
            for oid in oids {
                match storage.load(*oid) {
                    Ok(rec) => out.push((*oid, rec)),
                    Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// One line of a class census.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassCount {
    /// The class name (`module.Class` for records written by Python Durus).
    pub class: String,
    /// Objects of that class reachable from the root.
    pub count: u64,
    /// Their records' total size in bytes.
    pub bytes: u64,
}

/// Counts the reachable objects by class, most numerous first.
pub fn census(storage: &mut dyn Storage, progress: &ProgressBar) -> Result<Vec<ClassCount>> {
    let mut by_class: HashMap<String, (u64, u64)> = HashMap::new();
    traverse(storage, progress, |oid, rec| {
        let view = record::unpack(rec)?;
        let class =
            encoding::class_name(oid, view.data).unwrap_or_else(|_| "(undecodable)".to_string());
        let entry = by_class.entry(class).or_default();
        entry.0 += 1;
        entry.1 += rec.len() as u64;
        Ok(())
    })?;
    let mut out: Vec<ClassCount> = by_class
        .into_iter()
        .map(|(class, (count, bytes))| ClassCount {
            class,
            count,
            bytes,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.class.cmp(&b.class)));
    Ok(out)
}

/// The reachable objects that refer to `target`, in oid order.
pub fn referrers(
    storage: &mut dyn Storage,
    target: Oid,
    progress: &ProgressBar,
) -> Result<Vec<Oid>> {
    let mut out = Vec::new();
    traverse(storage, progress, |oid, rec| {
        if record::unpack(rec)?.ref_oids().any(|r| r == target) {
            out.push(oid);
        }
        Ok(())
    })?;
    out.sort_unstable();
    Ok(out)
}

/// One object as pretty-printed JSON.
pub fn show(storage: &mut dyn Storage, oid: Oid) -> Result<String> {
    let rec = storage.load(oid)?;
    let value = record_json(&rec)?;
    serde_json::to_string_pretty(&value).map_err(|e| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })
}
