//! [`PgStorage`]: a [`Storage`] in a PostgreSQL database (14 or newer),
//! shared directly by many processes on many machines.
//!
//! Each `PgStorage` is one client. What a storage server keeps per client
//! in memory (the oids others committed since this client last synced)
//! comes from the database: every record row carries the tid that wrote
//! it, so "changed since my last tid" is a query. A commit runs in one SQL
//! transaction holding the commit lock (a row lock): it reads the
//! invalidations, runs the connection's conflict check and resolution
//! round ([`ClientTransaction::resolve`], as every shared storage does),
//! writes every record in one statement and commits. docs/POSTGRES.md has
//! the schema and every statement; they are in `sql.rs`.
//!
//! Under a [`Hub`](crate::Hub) (a server), commits run on a session of
//! their own ([`Storage::commit_lock`]): the hub takes the database's
//! commit lock before it looks at its sessions, so that a commit is
//! checked against everything committed anywhere since *its session's*
//! last sync, and loads go on (on the first session) while it waits.
//!
//! Every round trip is bounded (`conn.rs`), and a connection that broke
//! (PostgreSQL restarted, the network cut) is made again on next use,
//! with a backoff (`link.rs`). A commit whose COMMIT got no answer ends
//! with [`Error::OutcomeUnknown`]: it may or may not have been applied.

mod commit;
mod conn;
mod link;
mod listen;
mod pool;
mod setup;
mod sql;

use super::{
    ChangeNotifier, ClientTransaction, CommitHandler, CommitLock, Durability, Loader, Outage,
    Storage,
};
use crate::error::{Error, Result, StorageError};
use crate::oid::Oid;
use commit::{commit_on, PgCommitLock};
use conn::Conn;
use link::{pg_error, Link, Session};
use pool::PgLoader;
use setup::{connect_config, ensure_schema};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::{Config, SimpleQueryMessage};

/// The most blocks of `sql::OID_BLOCK` oids one `new_oid` round trip
/// reserves. The first reservation of a transaction takes one block;
/// a transaction that makes many objects takes more at a time.
const MAX_OID_BLOCKS: u64 = 32;

/// How many referenced records a load brings along (as over a socket: a
/// round trip costs far more than a record).
const PREFETCH: usize = 64;

/// The most records fetched ahead (see `View::ahead`) one bulk load
/// brings, and the most kept.
const MAX_AHEAD_PER_LOAD: usize = 4096;
const MAX_AHEAD: usize = 20_000;

/// The most records a commit may write for the lock's round trip to
/// bring the current records of those changed since the client's last
/// tid (what a resolution round asks for); a larger commit asks for them
/// in a round trip of their own when it needs them.
const MAX_CURRENT_AT_LOCK: usize = 1000;

/// The most oids `View::fresh` remembers.
const MAX_FRESH: usize = 100_000;

/// The most oids one bulk load asks for in one statement.
const MAX_BULK: usize = 10_000;

/// The most record bytes one write statement carries; a larger commit
/// takes several statements (still one SQL transaction).
const MAX_WRITE_BYTES: usize = 32 << 20;

/// The most record bytes a commit sends as literals, in the same round
/// trip as its COMMIT (twice as many characters, in hex). Past a few
/// dozen records, parsing literals costs the server more than binding
/// parameters saves a round trip.
const MAX_INLINE_BYTES: usize = 32 << 10;

/// How many sessions a hub's point loads share (see [`Storage::loader`]).
const LOAD_SESSIONS: usize = 4;

/// One row of `durus_object` as [`PgStorage::records_after`] reads it: the
/// oid, the record, and the oids of the row's `refs` column.
pub type PgRow = (Oid, Vec<u8>, Vec<Oid>);

/// What the commit lock's round trip returns: the last tid, the oids
/// changed since this client's last tid, and the current records of those
/// this commit writes.
type Locked = (i64, Vec<Oid>, HashMap<Oid, Vec<u8>>);

/// A storage in a PostgreSQL database; one client.
///
/// Open one per `Connection` (each process, each thread), or share one in a
/// process through a [`Hub`](crate::Hub). The schema is made on first use.
///
/// ```no_run
/// use durus_core::{Connection, PgStorage};
/// let storage = PgStorage::connect("postgresql://app@db.example/objects")?;
/// let conn = Connection::new(storage);
/// # Ok::<(), durus_core::Error>(())
/// ```
pub struct PgStorage {
    /// Loads, syncs, new oids, packs; and commits, unless `committer`.
    reader: Link,
    /// The session that commits, once [`Storage::commit_lock`] was asked
    /// for (a hub): shared with the lock it hands out.
    committer: Option<Arc<Mutex<Link>>>,
    view: View,
    transaction: ClientTransaction,
    /// Oids handed out since the last `begin` (sizes the next reservation).
    oids_used: u64,
    /// Where it connected, for messages (no password).
    target: String,
    outage: Arc<Outage>,
    /// The pool of load sessions, once [`Storage::loader`] was asked for.
    loader: Option<Arc<PgLoader>>,
    /// `view.last_tid`, for the loader (set where it changes: at connect,
    /// at the end of each sync and commit).
    published_tid: Arc<AtomicI64>,
    /// How to connect again (the listener's own session).
    config: Config,
    /// Signals of other processes' commits, made on first use.
    listener: Option<Arc<listen::Listener>>,
}

/// How long a wait for change goes without a signal before it looks at
/// the database anyway: a safety net (a writer that sends no NOTIFY, an
/// older durus-rs), not the normal path.
const WAIT_SLICE: Duration = Duration::from_millis(500);

/// What this client knows of the database.
#[derive(Default)]
struct View {
    /// The tid as of this client's last sync or commit: records written
    /// later are invalid for it until it syncs.
    last_tid: i64,
    /// Records fetched ahead: those the records of a bulk load refer to,
    /// brought in the same statement, each with the tid that wrote it.
    /// One is handed out once (a load or bulk load of its oid), as if
    /// loaded then; an oid invalidated by a sync or a commit, or written
    /// by this client, is dropped. Like the records a connection fetches
    /// ahead, a record here is the one current at this client's last sync
    /// or later: a conflicting change made since is seen at the commit.
    ahead: HashMap<Oid, (i64, Vec<u8>)>,
    /// Oids this client's `new_oid` handed out that no commit of it has
    /// tried to write yet: no row can hold them (the sequence hands each
    /// out once), so their first write is a plain insert.
    fresh: HashSet<Oid>,
}

impl View {
    /// Forgets what `oids` (changed by others, or removed) held.
    fn invalidate(&mut self, oids: &[Oid]) {
        for oid in oids {
            self.ahead.remove(oid);
            // Another client wrote it (a root it made, say): it has a row.
            self.fresh.remove(oid);
        }
    }
}

impl PgStorage {
    /// Connects to the database named by `url` (`postgresql://user@host:port/dbname`
    /// or libpq's `host=... dbname=...` form) and makes the schema if the
    /// database has none. No TLS yet: use a local socket, a loopback or
    /// private network, or a TLS-terminating proxy.
    pub fn connect(url: &str) -> Result<PgStorage> {
        let (config, target) = connect_config(url)?;
        let conn = Conn::connect(&config, link::ROUND_TRIP_TIMEOUT)
            .map_err(|e| pg_error(&format!("connect to {target}"), &e))?;
        ensure_schema(&conn)?;
        let session = Session::prepare(conn).map_err(|e| pg_error("prepare statements", &e))?;
        let last_tid = session
            .conn
            .query_one_text(sql::SELECT_TID, &[])
            .map_err(|e| pg_error("read the last tid", &e))?
            .get(0);
        let outage = Arc::new(Outage::default());
        Ok(PgStorage {
            loader: None,
            published_tid: Arc::new(AtomicI64::new(last_tid)),
            reader: Link::new(config.clone(), target.clone(), session, outage.clone()),
            config,
            listener: None,
            committer: None,
            view: View {
                last_tid,
                ..View::default()
            },
            transaction: ClientTransaction::default(),
            oids_used: 0,
            target,
            outage,
        })
    }

    /// Drops the durus tables and the oid sequence of the database at
    /// `url` (whatever version made them), so that the next `connect`
    /// starts an empty database. Every record is lost: for benchmarks and
    /// tests, not for applications.
    #[doc(hidden)]
    pub fn drop_schema(url: &str) -> Result<()> {
        let (config, target) = connect_config(url)?;
        let conn = Conn::connect(&config, link::ROUND_TRIP_TIMEOUT)
            .map_err(|e| pg_error(&format!("connect to {target}"), &e))?;
        conn.batch_execute(sql::DROP_SCHEMA)
            .map_err(|e| pg_error(&format!("drop the durus tables of {target}"), &e))
    }

    /// Where this storage is connected (`host:port/dbname`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The last tid this client has seen (its last sync or commit).
    pub fn last_tid(&self) -> u64 {
        self.view.last_tid as u64
    }

    /// Whether the database holds no record at all.
    pub fn is_empty(&mut self) -> Result<bool> {
        self.reader.read("count records", |s| {
            Ok(s.conn.query_one_text(sql::IS_EMPTY, &[])?.get(0))
        })
    }

    /// Up to `limit` records (every row as stored, whatever its tid) with
    /// an oid above `after` (from the first when `None`), in oid order: a
    /// page of a copy of the whole database, or of a check of every record.
    /// Each comes with the oids of its row's `refs` column (what a pack
    /// follows).
    pub fn records_after(&mut self, after: Option<Oid>, limit: usize) -> Result<Vec<PgRow>> {
        let after = match after {
            None => -1,
            Some(oid) => sql_oid(oid)?,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.reader.read("read records", |s| {
            s.conn.query_text(sql::RECORDS_AFTER, &[&after, &limit])
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let refs: Vec<i64> = r.get(2);
                (
                    Oid(r.get::<_, i64>(0) as u64),
                    r.get(1),
                    refs.into_iter().map(|o| Oid(o as u64)).collect(),
                )
            })
            .collect())
    }

    /// Makes every oid up to `oid` used: new oids, from any client that
    /// reserves them after this, come after it. For records copied in with
    /// their own oids (`durus convert`).
    pub fn reserve_oids_through(&mut self, oid: Oid) -> Result<()> {
        let key = sql_oid(oid)?;
        self.reader.read("reserve oids", |s| {
            s.conn
                .query_one_text(sql::RESERVE_OIDS_THROUGH, &[&key])
                .map(|_| ())
        })
    }

    /// The listener, made (not connected) on first use.
    fn listener(&mut self) -> Arc<listen::Listener> {
        self.listener
            .get_or_insert_with(|| {
                Arc::new(listen::Listener::new(
                    self.config.clone(),
                    self.target.clone(),
                    link::ROUND_TRIP_TIMEOUT,
                ))
            })
            .clone()
    }

    /// The commit, `transaction` taken out of `self` for its duration, on
    /// the committing session.
    fn commit(
        &mut self,
        transaction: &mut ClientTransaction,
        handler: &mut dyn CommitHandler,
    ) -> Result<()> {
        let committer = self.committer.clone();
        let mut guard = committer.as_ref().map(|c| crate::lock(c));
        let link: &mut Link = match guard.as_deref_mut() {
            Some(link) => link,
            None => &mut self.reader,
        };
        let out = commit_on(link, &mut self.view, transaction, handler);
        if out.is_err() {
            // Whatever failed, the commit's SQL transaction is left (a
            // no-op when COMMIT ran or the connection is gone).
            link.unlock_commit();
        }
        match out {
            Err(Error::OutcomeUnknown(why)) => Err(Error::OutcomeUnknown(format!(
                "{why} (database {})",
                self.target
            ))),
            other => other,
        }
    }

    fn pack_locked(&mut self) -> Result<()> {
        let link = &mut self.reader;
        let tid = link.once("pack", |s| {
            s.open = true;
            s.conn.set_timeout(link::PACK_TIMEOUT);
            let messages = s.conn.simple_query(sql::BEGIN_PACK)?;
            // Statements: BEGIN, two SETs, the lock.
            Ok(statement_rows(&messages)
                .get(3)
                .and_then(|rows| rows.first().copied()))
        })?;
        let tid = tid.ok_or_else(|| other("pack: the commit row is missing".into()))?;
        let pack_tid = tid
            .checked_add(1)
            .ok_or_else(|| other("out of tids".into()))?;
        // A pack removes only what nobody can reach: if its outcome is
        // unknown, the next pack does it again. `last_tid` stays, so that
        // this client's next sync reports the removed oids.
        link.once("pack", |s| {
            let removed = s.conn.execute_text(sql::PACK, &[&pack_tid])?;
            let end = if removed == 0 {
                sql::ROLLBACK.to_string()
            } else {
                sql::finish_pack(pack_tid)
            };
            s.conn.batch_execute(&end)?;
            s.open = false;
            s.conn.set_timeout(link::ROUND_TRIP_TIMEOUT);
            Ok(())
        })
    }
}

/// An oid as a `bigint`; oids past `i64::MAX` cannot be stored.
fn sql_oid(oid: Oid) -> Result<i64> {
    i64::try_from(oid.0).map_err(|_| other(format!("oid {oid} is past PostgreSQL's bigint")))
}

/// The integer rows of each statement of a simple query, statement by
/// statement (the first column of each row; NULLs and non-integers left out).
fn statement_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<i64>> {
    let mut out = vec![Vec::new()];
    for m in messages {
        match m {
            SimpleQueryMessage::Row(row) => {
                if let (Some(rows), Some(n)) = (
                    out.last_mut(),
                    row.get(0).and_then(|v| v.parse::<i64>().ok()),
                ) {
                    rows.push(n);
                }
            }
            SimpleQueryMessage::CommandComplete(_) => out.push(Vec::new()),
            _ => {}
        }
    }
    out
}

fn other(why: String) -> Error {
    Error::Storage(StorageError::Other(why))
}

fn load_result(oid: Oid, last_tid: i64, found: Option<(i64, Vec<u8>)>) -> Result<Vec<u8>> {
    match found {
        None => Err(Error::NotFound(oid)),
        // Written after this client's last sync: its copy is obsolete.
        Some((tid, _)) if tid > last_tid => Err(Error::read_conflict(oid)),
        Some((_, record)) => Ok(record),
    }
}

impl Storage for PgStorage {
    fn load(&mut self, oid: Oid) -> Result<Vec<u8>> {
        let last_tid = self.view.last_tid;
        if let Some(found) = self.view.ahead.remove(&oid) {
            return load_result(oid, last_tid, Some(found));
        }
        let Ok(key) = i64::try_from(oid.0) else {
            return Err(Error::NotFound(oid));
        };
        let found = self
            .reader
            .read(&format!("load oid {oid}"), |s| s.load(key))?;
        load_result(oid, last_tid, found)
    }

    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        let last_tid = self.view.last_tid;
        let mut found: HashMap<Oid, (i64, Vec<u8>)> = HashMap::with_capacity(oids.len());
        let mut missing = Vec::with_capacity(oids.len());
        for oid in oids {
            match self.view.ahead.remove(oid) {
                Some(record) => {
                    found.insert(*oid, record);
                }
                None => missing.push(*oid),
            }
        }
        if !missing.is_empty() {
            if self.view.ahead.len() >= MAX_AHEAD {
                self.view.ahead.clear();
            }
            let more = MAX_AHEAD_PER_LOAD.min(MAX_AHEAD - self.view.ahead.len());
            let rows = self
                .reader
                .read("load records", |s| s.bulk_load_with_refs(&missing, more))?;
            for (oid, tid, record, asked) in rows {
                if asked {
                    found.insert(oid, (tid, record));
                } else {
                    self.view.ahead.insert(oid, (tid, record));
                }
            }
        }
        // An oid asked for twice gets its record twice.
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(oids.len());
        let mut given: HashMap<Oid, usize> = HashMap::with_capacity(oids.len());
        for oid in oids {
            let again = given.get(oid).and_then(|at| out.get(*at)).cloned();
            let record = match again {
                Some(record) => record,
                None => load_result(*oid, last_tid, found.remove(oid))?,
            };
            given.insert(*oid, out.len());
            out.push(record);
        }
        Ok(out)
    }

    fn prefetch_hint(&self) -> usize {
        PREFETCH
    }

    fn missing(&mut self, oids: &[Oid]) -> Result<Vec<Oid>> {
        // An oid past i64::MAX has no row.
        let mut out: Vec<Oid> = oids
            .iter()
            .filter(|o| i64::try_from(o.0).is_err())
            .copied()
            .collect();
        let keys: Vec<i64> = oids
            .iter()
            .filter_map(|o| i64::try_from(o.0).ok())
            .collect();
        for chunk in keys.chunks(MAX_BULK) {
            out.extend(self.reader.read("check references", |s| s.missing(chunk))?);
        }
        Ok(out)
    }

    fn new_oid(&mut self) -> Result<Oid> {
        let mut transaction = std::mem::take(&mut self.transaction);
        let blocks = (self.oids_used / sql::OID_BLOCK).clamp(1, MAX_OID_BLOCKS);
        let reader = &mut self.reader;
        let oid = transaction.new_oid(|| {
            let firsts = reader.read("reserve oids", |s| s.new_oid_blocks(blocks as i32))?;
            let mut oids: Vec<Oid> = Vec::with_capacity(firsts.len() * sql::OID_BLOCK as usize);
            for first in firsts {
                // Oid 0 is the root's: `Connection::root` puts the root
                // there itself, and a new object given 0 by the sequence
                // (a root made through a server never takes it from the
                // sequence) would overwrite it.
                oids.extend(
                    (first..first + sql::OID_BLOCK)
                        .map(Oid)
                        .filter(|oid| *oid != Oid::ROOT),
                );
            }
            oids.sort_unstable();
            Ok(oids)
        });
        self.transaction = transaction;
        self.oids_used += 1;
        if let Ok(oid) = oid {
            if self.view.fresh.len() >= MAX_FRESH {
                // Oids handed out and never written (sessions that went
                // away): forgetting them only costs their first write the
                // upsert.
                self.view.fresh.clear();
            }
            self.view.fresh.insert(oid);
        }
        oid
    }

    fn begin(&mut self) {
        self.transaction.begin();
        self.oids_used = 0;
    }

    fn store(&mut self, oid: Oid, record: Vec<u8>) -> Result<()> {
        self.transaction.store(oid, record);
        Ok(())
    }

    fn end(&mut self, handler: &mut dyn CommitHandler) -> Result<Durability> {
        let mut transaction = std::mem::take(&mut self.transaction);
        let out = self.commit(&mut transaction, handler);
        self.transaction = transaction;
        self.published_tid
            .store(self.view.last_tid, Ordering::SeqCst);
        // FINISH_COMMIT waited for the WAL flush.
        out.map(|()| Durability::done())
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        let last_tid = self.view.last_tid;
        let (tid, oids) = self.reader.read("sync", |s| s.changes_since(last_tid))?;
        self.view.last_tid = tid;
        self.published_tid.store(tid, Ordering::SeqCst);
        self.view.invalidate(&oids);
        Ok(oids)
    }

    fn pack(&mut self) -> Result<()> {
        // A record fetched ahead may be one the pack removes.
        self.view.ahead.clear();
        let out = self.pack_locked();
        // Leaves the pack's SQL transaction if it failed midway.
        self.reader.unlock_commit();
        self.reader.set_timeout(link::ROUND_TRIP_TIMEOUT);
        out
    }

    fn close(&mut self) -> Result<()> {
        // Loads after a close fail, even of records fetched ahead.
        self.view.ahead.clear();
        self.view.fresh.clear();
        self.reader.close();
        if let Some(committer) = &self.committer {
            crate::lock(committer).close();
        }
        if let Some(loader) = &self.loader {
            for link in &loader.links {
                crate::lock(link).close();
            }
        }
        if let Some(listener) = &self.listener {
            listener.close();
        }
        Ok(())
    }

    fn loader(&mut self) -> Option<Arc<dyn Loader>> {
        let loader = self.loader.get_or_insert_with(|| {
            Arc::new(PgLoader {
                // Connected on first use.
                links: (0..LOAD_SESSIONS)
                    .map(|_| Mutex::new(self.reader.pooled()))
                    .collect(),
                next: AtomicUsize::new(0),
                as_of: self.published_tid.clone(),
            })
        });
        Some(loader.clone())
    }

    fn commit_lock(&mut self) -> Option<Arc<dyn CommitLock>> {
        let link = match &self.committer {
            Some(link) => link.clone(),
            None => {
                // Connected on first use.
                let link = Arc::new(Mutex::new(self.reader.sibling()));
                self.committer = Some(link.clone());
                link
            }
        };
        Some(Arc::new(PgCommitLock { link }))
    }

    fn outage(&self) -> Option<Arc<Outage>> {
        Some(self.outage.clone())
    }

    fn wait_for_change(&mut self, timeout: Duration, interest: Option<&[Oid]>) -> Result<bool> {
        let listener = self.listener();
        let deadline = crate::deadline(timeout);
        loop {
            // What others committed since this client's last sync, without
            // taking it (the next sync reports it).
            let last_tid = self.view.last_tid;
            let (_, oids) = self
                .reader
                .read("look for changes", |s| s.changes_since(last_tid))?;
            let hit = match interest {
                None => !oids.is_empty(),
                Some(wanted) => oids.iter().any(|oid| wanted.contains(oid)),
            };
            if hit {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // A signal, or the slice without one: look again.
            listener.wait(left.min(WAIT_SLICE))?;
        }
    }

    fn change_notifier(&mut self) -> Option<Arc<dyn ChangeNotifier>> {
        let listener: Arc<dyn ChangeNotifier> = self.listener();
        Some(listener)
    }
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("target", &self.target)
            .field("last_tid", &self.view.last_tid)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            crate::internals::redact_url("postgresql://app:secret@db/objects"),
            "postgresql://app:***@db/objects"
        );
        assert_eq!(
            crate::internals::redact_url("postgresql://app@db/x"),
            "postgresql://app@db/x"
        );
        assert_eq!(
            crate::internals::redact_url("host=db password=secret"),
            "(a connection string with a password)"
        );
    }

    #[test]
    fn lock_query_asks_for_the_written_records() {
        let q = sql::begin_commit(5, &[1, 2]);
        assert!(q.contains("oid = ANY('{1,2}'::bigint[])"), "{q}");
        assert!(q.contains("WHERE tid > 5"), "{q}");
        assert!(sql::begin_commit(5, &[]).contains("ANY('{}'::bigint[])"));
        assert_eq!(sql::from_hex("00ff1A"), Some(vec![0, 255, 26]));
        assert_eq!(sql::from_hex("0g"), None);
        assert_eq!(sql::from_hex("abc"), None);
    }

    #[test]
    fn rows_by_statement() {
        let msgs = vec![
            SimpleQueryMessage::CommandComplete(0),
            SimpleQueryMessage::CommandComplete(0),
        ];
        let empty: Vec<Vec<i64>> = vec![Vec::new(); 3];
        assert_eq!(statement_rows(&msgs), empty);
    }
}
