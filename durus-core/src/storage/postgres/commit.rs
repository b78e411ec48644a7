//! A commit on PostgreSQL: the lock and the changes since the client's
//! last tid, the handler's check and resolution round, the write in
//! batches, and the lock a hub takes first.

use super::link::Link;
use super::{other, sql_oid, View, MAX_CURRENT_AT_LOCK, MAX_WRITE_BYTES};
use crate::error::Result;
use crate::oid::Oid;
use crate::record;
use crate::storage::{ClientTransaction, CommitHandler, CommitLock};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The commit on `link`: the lock (taken now, or already by a hub) and
/// the changes since `view.last_tid`, the handler's check and resolution
/// round, then the write and COMMIT. On an error the caller leaves the
/// SQL transaction.
pub(super) fn commit_on(
    link: &mut Link,
    view: &mut View,
    transaction: &mut ClientTransaction,
    handler: &mut dyn CommitHandler,
) -> Result<()> {
    let written: Vec<i64> = if transaction.pending_oids().count() <= MAX_CURRENT_AT_LOCK {
        transaction
            .pending_oids()
            .filter_map(|o| i64::try_from(o.0).ok())
            .collect()
    } else {
        Vec::new()
    };
    let (tid, invalidations, mut current) = match link.begin_commit(view.last_tid, &written) {
        Ok(locked) => locked,
        Err(e) => {
            transaction.abandon();
            return Err(e);
        }
    };
    view.invalidate(&invalidations);
    // The invalidations are not taken from anywhere: until this commit
    // succeeds, `last_tid` stays and the next sync reports them again.
    transaction.resolve(handler, &invalidations, |asked| {
        // Usually the lock's round trip brought them already.
        if asked.iter().all(|oid| current.contains_key(oid)) {
            return Ok(asked
                .iter()
                .filter_map(|oid| current.remove(oid).map(|record| (*oid, record)))
                .collect());
        }
        let current = link.once("load records to resolve a conflict", |s| s.bulk_load(asked))?;
        Ok(current
            .into_iter()
            .map(|(oid, _, record)| (oid, record))
            .collect())
    })?;
    let records = transaction.take_records();
    for (oid, _) in &records {
        view.ahead.remove(oid);
    }
    if records.is_empty() {
        // Nothing to write: the tid stays, and so does the database.
        link.unlock_commit();
        view.last_tid = tid;
        return Ok(());
    }
    let new_tid = tid
        .checked_add(1)
        .ok_or_else(|| other("out of tids".into()))?;
    // Once tried, an oid is written with the upsert: after an unknown
    // outcome its row may be there.
    let new: Vec<bool> = records
        .iter()
        .map(|(oid, _)| view.fresh.remove(oid))
        .collect();
    let batches = write_batches(records, &new)?;
    link.write_and_commit(new_tid, batches)?;
    view.last_tid = new_tid;
    Ok(())
}

/// The commit lock a [`PgStorage`] hands to a hub: its committing session.
pub(super) struct PgCommitLock {
    pub(super) link: Arc<Mutex<Link>>,
}

impl CommitLock for PgCommitLock {
    fn acquire(&self) -> Result<()> {
        crate::lock(&self.link).lock_commit().map(|_| ())
    }

    fn release(&self) {
        crate::lock(&self.link).unlock_commit();
    }
}

/// The records to write, in batches of at most `MAX_WRITE_BYTES`; the
/// last record of an oid wins, as in a Durus transaction. `new[i]`: the
/// oid of record `i` has no row yet.
pub(super) fn write_batches(records: Vec<(Oid, Vec<u8>)>, new: &[bool]) -> Result<Vec<WriteBatch>> {
    let mut last: HashMap<Oid, usize> = HashMap::with_capacity(records.len());
    for (i, (oid, _)) in records.iter().enumerate() {
        last.insert(*oid, i);
    }
    let mut out = vec![WriteBatch::default()];
    for (i, (oid, rec)) in records.into_iter().enumerate() {
        if last.get(&oid) != Some(&i) {
            continue;
        }
        let full = out.last().is_none_or(|b| b.bytes >= MAX_WRITE_BYTES);
        if full {
            out.push(WriteBatch::default());
        }
        if let Some(batch) = out.last_mut() {
            batch.push(oid, rec)?;
            batch.new.push(new.get(i).copied().unwrap_or(false));
        }
    }
    Ok(out)
}

/// The parameters of one write statement (see `sql::WRITE`).
#[derive(Default)]
pub(super) struct WriteBatch {
    pub(super) oids: Vec<i64>,
    pub(super) records: Vec<Vec<u8>>,
    pub(super) refs: Vec<i64>,
    pub(super) lo: Vec<i32>,
    pub(super) hi: Vec<i32>,
    /// Whether each oid has no row yet (a plain insert).
    pub(super) new: Vec<bool>,
    pub(super) bytes: usize,
}

impl WriteBatch {
    /// The refs of the `i`th record.
    pub(super) fn refs_of(&self, i: usize) -> &[i64] {
        let (Some(lo), Some(hi)) = (self.lo.get(i), self.hi.get(i)) else {
            return &[];
        };
        self.refs
            .get((*lo as usize).saturating_sub(1)..*hi as usize)
            .unwrap_or_default()
    }

    pub(super) fn push(&mut self, oid: Oid, rec: Vec<u8>) -> Result<()> {
        let view = record::unpack(&rec)?;
        if view.oid != oid {
            return Err(other(format!(
                "the record stored under oid {oid} is the record of oid {}",
                view.oid
            )));
        }
        let lo = i32::try_from(self.refs.len() + 1)
            .map_err(|_| other("too many refs in one commit".into()))?;
        for r in view.ref_oids() {
            self.refs.push(sql_oid(r)?);
        }
        let hi = i32::try_from(self.refs.len())
            .map_err(|_| other("too many refs in one commit".into()))?;
        self.oids.push(sql_oid(oid)?);
        self.lo.push(lo);
        self.hi.push(hi);
        self.bytes += rec.len();
        self.records.push(rec);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_batch_slices_refs() {
        let mut b = WriteBatch::default();
        b.push(
            Oid(1),
            record::pack(Oid(1), b"a", &[Oid(3), Oid(2)]).unwrap(),
        )
        .unwrap();
        b.push(Oid(2), record::pack(Oid(2), b"b", &[]).unwrap())
            .unwrap();
        assert_eq!(b.oids, vec![1, 2]);
        assert_eq!(b.refs, vec![2, 3]);
        assert_eq!((b.lo.clone(), b.hi.clone()), (vec![1, 3], vec![2, 2]));
        assert_eq!((b.refs_of(0), b.refs_of(1)), (&[2, 3][..], &[][..]));
        let text = super::super::sql::write_and_commit(7, &b);
        assert!(
            text.starts_with(
                "INSERT INTO durus_object (oid, tid, data, refs) VALUES \
                 (1,7,decode('0000000000000001000000016100000000000000020000000000000003','hex'),\
                 '{2,3}'::bigint[]),(2,7,decode('"
            ),
            "{text}"
        );
        assert!(text.contains("'{}'::bigint[])"), "{text}");
        let wrong = record::pack(Oid(5), b"c", &[]).unwrap();
        assert!(b.push(Oid(6), wrong).is_err());
    }
}
