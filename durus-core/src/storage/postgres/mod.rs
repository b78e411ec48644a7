//! [`PgStorage`]: a [`Storage`] in a PostgreSQL database (14 or newer),
//! shared directly by many processes on many machines.
//!
//! Each `PgStorage` is one client with its own PostgreSQL connection. What
//! a storage server keeps per client in memory (the oids others committed
//! since this client last synced) comes from the database: every record
//! row carries the tid that wrote it, so "changed since my last tid" is a
//! query. A commit runs in one SQL transaction holding the commit lock (a
//! row lock): it reads the invalidations, runs the connection's conflict
//! check and resolution round ([`ClientTransaction::resolve`], as every
//! shared storage does), writes every record in one statement and
//! commits. docs/POSTGRES.md has the schema and every statement; they are
//! in `sql.rs`.
//!
//! A commit whose COMMIT got no answer (the connection broke, the server
//! went away) ends with [`Error::OutcomeUnknown`]: it may or
//! may not have been applied.

mod sql;

use super::{ClientTransaction, CommitHandler, Durability, Storage};
use crate::error::{Error, Result, StorageError};
use crate::oid::Oid;
use crate::record;
use ::postgres::{Client, NoTls, SimpleQueryMessage, Statement};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The most blocks of `sql::OID_BLOCK` oids one `new_oid` round trip
/// reserves. The first reservation of a transaction takes one block;
/// a transaction that makes many objects takes more at a time.
const MAX_OID_BLOCKS: u64 = 32;

/// How many referenced records a load brings along (as over a socket: a
/// round trip costs far more than a record).
const PREFETCH: usize = 64;

/// The most records fetched ahead (see `PgStorage::ahead`) one bulk load
/// brings, and the most kept.
const MAX_AHEAD_PER_LOAD: usize = 4096;
const MAX_AHEAD: usize = 20_000;

/// The most records a commit may write for the lock's round trip to
/// bring the current records of those changed since the client's last
/// tid (what a resolution round asks for); a larger commit asks for them
/// in a round trip of their own when it needs them.
const MAX_CURRENT_AT_LOCK: usize = 1000;

/// The most oids `PgStorage::fresh` remembers.
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

/// How many times schema creation is tried when another process makes it
/// at the same moment.
const SCHEMA_ATTEMPTS: usize = 5;

/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One row of `durus_object` as [`PgStorage::records_after`] reads it: the
/// oid, the record, and the oids of the row's `refs` column.
pub type PgRow = (Oid, Vec<u8>, Vec<Oid>);

/// A storage in a PostgreSQL database; one client, one PostgreSQL session.
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
    session: Option<Session>,
    /// The tid as of this client's last sync or commit: records written
    /// later are invalid for it until it syncs.
    last_tid: i64,
    transaction: ClientTransaction,
    /// Oids handed out since the last `begin` (sizes the next reservation).
    oids_used: u64,
    /// Where it connected, for messages (no password).
    target: String,
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

/// The PostgreSQL session and its prepared statements.
struct Session {
    client: Client,
    load: Statement,
    bulk_load: Statement,
    bulk_load_with_refs: Statement,
    new_oids: Statement,
    sync: Statement,
    write: Statement,
}

impl PgStorage {
    /// Connects to the database named by `url` (`postgresql://user@host:port/dbname`
    /// or libpq's `host=... dbname=...` form) and makes the schema if the
    /// database has none. No TLS: use a local socket, a loopback or private
    /// network, or a TLS-terminating proxy.
    pub fn connect(url: &str) -> Result<PgStorage> {
        let (mut client, target) = connect_client(url)?;
        ensure_schema(&mut client)?;
        let session = Session::prepare(client).map_err(|e| pg_error("prepare statements", &e))?;
        let mut storage = PgStorage {
            session: Some(session),
            last_tid: 0,
            transaction: ClientTransaction::default(),
            oids_used: 0,
            target,
            ahead: HashMap::new(),
            fresh: HashSet::new(),
        };
        let session = storage.session()?;
        let row = session
            .client
            .query_one(sql::SELECT_TID, &[])
            .map_err(|e| pg_error("read the last tid", &e))?;
        storage.last_tid = row.get(0);
        Ok(storage)
    }

    /// Drops the durus tables and the oid sequence of the database at
    /// `url` (whatever version made them), so that the next `connect`
    /// starts an empty database. Every record is lost: for benchmarks and
    /// tests, not for applications.
    #[doc(hidden)]
    pub fn drop_schema(url: &str) -> Result<()> {
        let (mut client, target) = connect_client(url)?;
        client
            .batch_execute(sql::DROP_SCHEMA)
            .map_err(|e| pg_error(&format!("drop the durus tables of {target}"), &e))?;
        client.close().map_err(|e| pg_error("close", &e))
    }

    /// Where this storage is connected (`host:port/dbname`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The last tid this client has seen (its last sync or commit).
    pub fn last_tid(&self) -> u64 {
        self.last_tid as u64
    }

    /// Whether the database holds no record at all.
    pub fn is_empty(&mut self) -> Result<bool> {
        let session = self.session()?;
        let row = session
            .client
            .query_one(sql::IS_EMPTY, &[])
            .map_err(|e| pg_error("count records", &e))?;
        Ok(row.get(0))
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
        let session = self.session()?;
        let rows = session
            .client
            .query(sql::RECORDS_AFTER, &[&after, &limit])
            .map_err(|e| pg_error("read records", &e))?;
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
        let session = self.session()?;
        session
            .client
            .query_one(sql::RESERVE_OIDS_THROUGH, &[&key])
            .map_err(|e| pg_error("reserve oids", &e))?;
        Ok(())
    }

    fn session(&mut self) -> Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or(Error::Storage(StorageError::Closed))
    }

    /// Leaves the SQL transaction; a failure here only matters to the
    /// next statement, which reports it.
    fn rollback_quietly(&mut self) {
        if let Some(s) = self.session.as_mut() {
            let _ = s.client.batch_execute(sql::ROLLBACK);
        }
    }

    /// The commit, `transaction` taken out of `self` for its duration.
    fn commit(
        &mut self,
        transaction: &mut ClientTransaction,
        handler: &mut dyn CommitHandler,
    ) -> Result<()> {
        let last_tid = self.last_tid;
        let written: Vec<i64> = if transaction.pending_oids().count() <= MAX_CURRENT_AT_LOCK {
            transaction
                .pending_oids()
                .filter_map(|o| i64::try_from(o.0).ok())
                .collect()
        } else {
            Vec::new()
        };
        let locked = self
            .session()
            .and_then(|s| s.begin_commit(last_tid, &written));
        let (tid, invalidations, mut current) = match locked {
            Ok(x) => x,
            Err(e) => {
                transaction.abandon();
                self.rollback_quietly();
                return Err(e);
            }
        };
        for oid in &invalidations {
            self.ahead.remove(oid);
            // Another client wrote it (a root it made, say): it has a row.
            self.fresh.remove(oid);
        }
        // The invalidations are not taken from anywhere: until this commit
        // succeeds, `last_tid` stays and the next sync reports them again.
        let resolved = transaction.resolve(handler, &invalidations, |asked| {
            // Usually the lock's round trip brought them already.
            if asked.iter().all(|oid| current.contains_key(oid)) {
                return Ok(asked
                    .iter()
                    .filter_map(|oid| current.remove(oid).map(|record| (*oid, record)))
                    .collect());
            }
            let session = self.session()?;
            let current = session
                .bulk_load(asked)
                .map_err(|e| pg_error("load records to resolve a conflict", &e))?;
            Ok(current
                .into_iter()
                .map(|(oid, _, record)| (oid, record))
                .collect())
        });
        if let Err(e) = resolved {
            self.rollback_quietly();
            return Err(e);
        }
        let records = transaction.take_records();
        for (oid, _) in &records {
            self.ahead.remove(oid);
        }
        if records.is_empty() {
            // Nothing to write: the tid stays, and so does the database.
            self.rollback_quietly();
            self.last_tid = tid;
            return Ok(());
        }
        let new_tid = tid
            .checked_add(1)
            .ok_or_else(|| other("out of tids".into()))?;
        // Once tried, an oid is written with the upsert: after an unknown
        // outcome its row may be there.
        let new: Vec<bool> = records
            .iter()
            .map(|(oid, _)| self.fresh.remove(oid))
            .collect();
        let written = self
            .session()
            .and_then(|s| s.write_and_commit(new_tid, records, &new));
        match written {
            Ok(()) => {
                self.last_tid = new_tid;
                Ok(())
            }
            Err(Error::OutcomeUnknown(why)) => Err(Error::OutcomeUnknown(format!(
                "{why} (database {})",
                self.target
            ))),
            Err(e) => {
                self.rollback_quietly();
                Err(e)
            }
        }
    }

    fn pack_locked(&mut self) -> Result<()> {
        let session = self.session()?;
        let messages = session
            .client
            .simple_query(sql::BEGIN_PACK)
            .map_err(|e| pg_error("pack", &e))?;
        let tid = statement_rows(&messages)
            .get(1)
            .and_then(|rows| rows.first().copied())
            .ok_or_else(|| other("pack: the commit row is missing".into()))?;
        let pack_tid = tid
            .checked_add(1)
            .ok_or_else(|| other("out of tids".into()))?;
        let removed = session
            .client
            .execute(sql::PACK, &[&pack_tid])
            .map_err(|e| pg_error("pack", &e))?;
        let end = if removed == 0 {
            sql::ROLLBACK.to_string()
        } else {
            sql::finish_pack(pack_tid)
        };
        // A pack removes only what nobody can reach: if its outcome is
        // unknown, the next pack does it again. `last_tid` stays, so that
        // this client's next sync reports the removed oids.
        session
            .client
            .batch_execute(&end)
            .map_err(|e| pg_error("pack", &e))
    }
}

impl Session {
    fn prepare(mut client: Client) -> Result<Session, ::postgres::Error> {
        Ok(Session {
            load: client.prepare(sql::LOAD)?,
            bulk_load: client.prepare(sql::BULK_LOAD)?,
            bulk_load_with_refs: client.prepare(sql::BULK_LOAD_WITH_REFS)?,
            new_oids: client.prepare(sql::NEW_OIDS)?,
            sync: client.prepare(sql::SYNC)?,
            write: client.prepare(sql::WRITE)?,
            client,
        })
    }

    /// `(oid, tid, record)` of those of `oids` that have a record.
    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, i64, Vec<u8>)>, ::postgres::Error> {
        let mut out = Vec::with_capacity(oids.len());
        for chunk in oids.chunks(MAX_BULK) {
            // An oid past i64::MAX has no row: leaving it out finds nothing.
            let keys: Vec<i64> = chunk
                .iter()
                .filter_map(|o| i64::try_from(o.0).ok())
                .collect();
            for row in self.client.query(&self.bulk_load, &[&keys])? {
                let oid: i64 = row.get(0);
                out.push((Oid(oid as u64), row.get(1), row.get(2)));
            }
        }
        Ok(out)
    }

    /// `(oid, tid, record, asked)` of those of `oids` that have a record
    /// (`asked`), and of up to `more` records they refer to that are not
    /// among `oids` (one statement per `MAX_BULK` oids).
    fn bulk_load_with_refs(
        &mut self,
        oids: &[Oid],
        more: usize,
    ) -> Result<Vec<AheadRow>, ::postgres::Error> {
        let mut out = Vec::with_capacity(oids.len());
        let mut more = more;
        for chunk in oids.chunks(MAX_BULK) {
            let keys: Vec<i64> = chunk
                .iter()
                .filter_map(|o| i64::try_from(o.0).ok())
                .collect();
            let limit = i64::try_from(more).unwrap_or(i64::MAX);
            for row in self
                .client
                .query(&self.bulk_load_with_refs, &[&keys, &limit])?
            {
                let oid: i64 = row.get(0);
                let asked: bool = row.get(3);
                if !asked {
                    more = more.saturating_sub(1);
                }
                out.push((Oid(oid as u64), row.get(1), row.get(2), asked));
            }
        }
        Ok(out)
    }

    /// Opens the commit's SQL transaction and takes the commit lock: the
    /// last tid, the oids changed since `last_tid`, and the current
    /// records of those among `written`.
    fn begin_commit(&mut self, last_tid: i64, written: &[i64]) -> Result<Locked> {
        let messages = self
            .client
            .simple_query(&sql::begin_commit(last_tid, written))
            .map_err(|e| pg_error("commit", &e))?;
        let rows = statement_rows(&messages);
        // Statements: BEGIN, SET, the lock, the invalidations.
        let tid = rows
            .get(2)
            .and_then(|r| r.first().copied())
            .ok_or_else(|| other("commit: the commit row is missing".into()))?;
        let mut oids: Vec<Oid> = rows
            .get(3)
            .map(|r| r.iter().map(|oid| Oid(*oid as u64)).collect())
            .unwrap_or_default();
        oids.sort_unstable();
        oids.dedup();
        let mut current = HashMap::new();
        let mut statement = 0;
        for m in &messages {
            match m {
                SimpleQueryMessage::CommandComplete(_) => statement += 1,
                SimpleQueryMessage::Row(row) if statement == 3 => {
                    let oid = row.get(0).and_then(|v| v.parse::<u64>().ok());
                    let record = row.get(1).and_then(sql::from_hex);
                    if let (Some(oid), Some(record)) = (oid, record) {
                        current.insert(Oid(oid), record);
                    }
                }
                _ => {}
            }
        }
        Ok((tid, oids, current))
    }

    /// Writes `records` at `tid` and commits. An error that is not
    /// [`Error::OutcomeUnknown`] means COMMIT never ran:
    /// nothing was written and the SQL transaction is still to roll back.
    ///
    /// A small commit is one round trip (the records as literals, then
    /// COMMIT and the WAL flush); a large one binds them as parameters, in
    /// statements of at most `MAX_WRITE_BYTES`, then commits.
    fn write_and_commit(
        &mut self,
        tid: i64,
        records: Vec<(Oid, Vec<u8>)>,
        new: &[bool],
    ) -> Result<()> {
        let batches = write_batches(records, new)?;
        if let [batch] = batches.as_slice() {
            if batch.bytes <= MAX_INLINE_BYTES {
                let text = sql::write_and_commit(tid, batch);
                return match self.client.batch_execute(&text) {
                    Ok(()) => Ok(()),
                    Err(e) => Err(self.failed_commit(&e)),
                };
            }
        }
        for batch in batches {
            self.write_batch(tid, batch)?;
        }
        self.client
            .batch_execute(sql::FINISH_COMMIT)
            .map_err(|e| self.failed_commit(&e))
    }

    /// The error of a round trip that held COMMIT. When the server says
    /// the SQL transaction is still open and failed, COMMIT never ran:
    /// nothing was written. Otherwise (the connection broke, or COMMIT or
    /// the flush failed) the outcome is unknown.
    fn failed_commit(&mut self, e: &::postgres::Error) -> Error {
        use ::postgres::error::SqlState;
        if e.as_db_error().is_some() {
            if let Err(probe) = self.client.batch_execute("SELECT 1") {
                if probe.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) {
                    return pg_error("write records", e);
                }
            }
        }
        Error::OutcomeUnknown(format!("postgresql: {}", describe_error(e)))
    }

    fn write_batch(&mut self, tid: i64, batch: WriteBatch) -> Result<()> {
        self.client
            .execute(
                &self.write,
                &[
                    &tid,
                    &batch.oids,
                    &batch.records,
                    &batch.refs,
                    &batch.lo,
                    &batch.hi,
                    &batch.new,
                ],
            )
            .map(|_| ())
            .map_err(|e| pg_error("write records", &e))
    }
}

/// A row of a bulk load with the records its records refer to: oid, tid,
/// record, and whether it was asked for.
type AheadRow = (Oid, i64, Vec<u8>, bool);

/// What the commit lock's round trip returns: the last tid, the oids
/// changed since this client's last tid, and the current records of those
/// this commit writes.
type Locked = (i64, Vec<Oid>, HashMap<Oid, Vec<u8>>);

/// The records to write, in batches of at most `MAX_WRITE_BYTES`; the
/// last record of an oid wins, as in a Durus transaction. `new[i]`: the
/// oid of record `i` has no row yet.
fn write_batches(records: Vec<(Oid, Vec<u8>)>, new: &[bool]) -> Result<Vec<WriteBatch>> {
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
struct WriteBatch {
    oids: Vec<i64>,
    records: Vec<Vec<u8>>,
    refs: Vec<i64>,
    lo: Vec<i32>,
    hi: Vec<i32>,
    /// Whether each oid has no row yet (a plain insert).
    new: Vec<bool>,
    bytes: usize,
}

impl WriteBatch {
    /// The refs of the `i`th record.
    fn refs_of(&self, i: usize) -> &[i64] {
        let (Some(lo), Some(hi)) = (self.lo.get(i), self.hi.get(i)) else {
            return &[];
        };
        self.refs
            .get((*lo as usize).saturating_sub(1)..*hi as usize)
            .unwrap_or_default()
    }

    fn push(&mut self, oid: Oid, rec: Vec<u8>) -> Result<()> {
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

/// A PostgreSQL session to the database at `url`, and where it is
/// (`host:port/dbname`, for messages).
fn connect_client(url: &str) -> Result<(Client, String)> {
    let mut config: ::postgres::Config = url.parse().map_err(|e: ::postgres::Error| {
        other(format!(
            "bad PostgreSQL URL {:?}: {e}",
            crate::internals::redact_url(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.application_name("durus");
    let target = describe(&config);
    let client = config
        .connect(NoTls)
        .map_err(|e| pg_error(&format!("connect to {target}"), &e))?;
    Ok((client, target))
}

/// Makes the schema unless it is there; checks its version.
fn ensure_schema(client: &mut Client) -> Result<()> {
    let mut attempt = 0;
    let found = loop {
        attempt += 1;
        match try_ensure_schema(client) {
            Ok(found) => break found,
            Err(e) if attempt < SCHEMA_ATTEMPTS && is_creation_race(&e) => {
                std::thread::sleep(Duration::from_millis(20 * attempt as u64));
            }
            Err(e) => return Err(pg_error("make the schema", &e)),
        }
    };
    match found.as_slice() {
        [] => Ok(()),
        [v] if *v == sql::SCHEMA_VERSION => Ok(()),
        other_versions => Err(other(format!(
            "the database holds durus schema version {other_versions:?}; this program \
             knows version {}",
            sql::SCHEMA_VERSION
        ))),
    }
}

/// The schema versions found (none when it was made now).
fn try_ensure_schema(client: &mut Client) -> Result<Vec<i32>, ::postgres::Error> {
    // Dropped without a commit, the transaction rolls back.
    let mut tx = client.transaction()?;
    tx.batch_execute(sql::CREATE_SCHEMA_TABLE)?;
    tx.batch_execute(sql::LOCK_SCHEMA)?;
    let versions: Vec<i32> = tx
        .query(sql::SELECT_SCHEMA_VERSION, &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if versions.is_empty() {
        tx.batch_execute(sql::CREATE_SCHEMA)?;
        tx.execute(sql::INSERT_SCHEMA_VERSION, &[&sql::SCHEMA_VERSION])?;
    }
    tx.commit()?;
    Ok(versions)
}

/// Two processes made the schema's first table at once.
fn is_creation_race(e: &::postgres::Error) -> bool {
    use ::postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn other(why: String) -> Error {
    Error::Storage(StorageError::Other(why))
}

/// A PostgreSQL error with what was being done and, for a server error,
/// its message and detail.
fn pg_error(doing: &str, e: &::postgres::Error) -> Error {
    other(format!("postgresql: {doing}: {}", describe_error(e)))
}

fn describe_error(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            s.push_str(": ");
            s.push_str(detail);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    if e.is_closed() && !s.contains("closed") {
        s.push_str(" (connection closed)");
    }
    s
}

/// `host:port/dbname` of a configuration, for messages.
fn describe(config: &::postgres::Config) -> String {
    use ::postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("{host}:{port}/{db}")
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
        let last_tid = self.last_tid;
        if let Some(found) = self.ahead.remove(&oid) {
            return load_result(oid, last_tid, Some(found));
        }
        let Ok(key) = i64::try_from(oid.0) else {
            return Err(Error::NotFound(oid));
        };
        let session = self.session()?;
        let row = session
            .client
            .query_opt(&session.load, &[&key])
            .map_err(|e| pg_error(&format!("load oid {oid}"), &e))?;
        load_result(oid, last_tid, row.map(|r| (r.get(0), r.get(1))))
    }

    fn bulk_load(&mut self, oids: &[Oid]) -> Result<Vec<Vec<u8>>> {
        let last_tid = self.last_tid;
        let mut found: HashMap<Oid, (i64, Vec<u8>)> = HashMap::with_capacity(oids.len());
        let mut missing = Vec::with_capacity(oids.len());
        for oid in oids {
            match self.ahead.remove(oid) {
                Some(record) => {
                    found.insert(*oid, record);
                }
                None => missing.push(*oid),
            }
        }
        if !missing.is_empty() {
            if self.ahead.len() >= MAX_AHEAD {
                self.ahead.clear();
            }
            let more = MAX_AHEAD_PER_LOAD.min(MAX_AHEAD - self.ahead.len());
            let session = self.session()?;
            let rows = session
                .bulk_load_with_refs(&missing, more)
                .map_err(|e| pg_error("load records", &e))?;
            for (oid, tid, record, asked) in rows {
                if asked {
                    found.insert(oid, (tid, record));
                } else {
                    self.ahead.insert(oid, (tid, record));
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

    fn new_oid(&mut self) -> Result<Oid> {
        let mut transaction = std::mem::take(&mut self.transaction);
        let blocks = (self.oids_used / sql::OID_BLOCK).clamp(1, MAX_OID_BLOCKS);
        let oid = transaction.new_oid(|| {
            let session = self.session()?;
            let rows = session
                .client
                .query(&session.new_oids, &[&(blocks as i32)])
                .map_err(|e| pg_error("reserve oids", &e))?;
            let mut oids: Vec<Oid> = Vec::with_capacity(rows.len() * sql::OID_BLOCK as usize);
            for row in rows {
                let first = row.get::<_, i64>(0) as u64;
                oids.extend((first..first + sql::OID_BLOCK).map(Oid));
            }
            oids.sort_unstable();
            Ok(oids)
        });
        self.transaction = transaction;
        self.oids_used += 1;
        if let Ok(oid) = oid {
            if self.fresh.len() >= MAX_FRESH {
                // Oids handed out and never written (sessions that went
                // away): forgetting them only costs their first write the
                // upsert.
                self.fresh.clear();
            }
            self.fresh.insert(oid);
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
        // FINISH_COMMIT waited for the WAL flush.
        out.map(|()| Durability::done())
    }

    fn sync(&mut self) -> Result<Vec<Oid>> {
        let last_tid = self.last_tid;
        let session = self.session()?;
        let row = session
            .client
            .query_one(&session.sync, &[&last_tid])
            .map_err(|e| pg_error("sync", &e))?;
        let tid: i64 = row.get(0);
        let oids: Vec<Oid> = row
            .get::<_, Vec<i64>>(1)
            .into_iter()
            .map(|o| Oid(o as u64))
            .collect();
        self.last_tid = tid;
        for oid in &oids {
            self.fresh.remove(oid);
        }
        if !self.ahead.is_empty() {
            for oid in &oids {
                self.ahead.remove(oid);
            }
        }
        Ok(oids)
    }

    fn pack(&mut self) -> Result<()> {
        // A record fetched ahead may be one the pack removes.
        self.ahead.clear();
        let out = self.pack_locked();
        if out.is_err() {
            self.rollback_quietly();
        }
        out
    }

    fn close(&mut self) -> Result<()> {
        // Loads after a close fail, even of records fetched ahead.
        self.ahead.clear();
        self.fresh.clear();
        if let Some(session) = self.session.take() {
            session.client.close().map_err(|e| pg_error("close", &e))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("target", &self.target)
            .field("last_tid", &self.last_tid)
            .field("open", &self.session.is_some())
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
        let text = sql::write_and_commit(7, &b);
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
