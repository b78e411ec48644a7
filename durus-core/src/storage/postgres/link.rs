//! A PostgreSQL session that comes back: [`Link`] reconnects after a
//! restart of PostgreSQL or a network cut, with a bounded backoff, and
//! [`Session`] is one connection with its prepared statements and the
//! round trips of a commit.

use super::commit::WriteBatch;
use super::conn::{Conn, Fail};
use super::{other, sql, statement_rows, Locked, MAX_BULK};
use crate::error::{Error, Result, StorageError};
use crate::oid::Oid;
use crate::storage::Outage;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::{Config, SimpleQueryMessage, Statement};
use tracing::{info, warn};

/// The first wait before reconnecting after a failed attempt; it doubles
/// up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The longest one round trip may take (above the default
/// `statement_timeout` and `lock_timeout`: a URL that raises those past it
/// is cut here).
pub(super) const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(60);

/// A pack's statement walks the whole database: it may take long.
pub(super) const PACK_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// One connection, its prepared statements, and whether it holds the
/// commit lock.
pub(super) struct Session {
    pub(super) conn: Conn,
    load: Statement,
    bulk_load: Statement,
    bulk_load_with_refs: Statement,
    new_oids: Statement,
    sync: Statement,
    write: Statement,
    missing: Statement,
    /// The last tid, while this session's SQL transaction holds the commit
    /// lock (between taking it and COMMIT or ROLLBACK).
    pub(super) locked: Option<i64>,
    /// A commit's or a pack's SQL transaction may be open (from its BEGIN
    /// until COMMIT or ROLLBACK).
    pub(super) open: bool,
}

/// A row of a bulk load with the records its records refer to: oid, tid,
/// record, and whether it was asked for.
pub(super) type AheadRow = (Oid, i64, Vec<u8>, bool);

impl Session {
    /// Prepares the statements on `conn` (the schema must exist).
    pub(super) fn prepare(conn: Conn) -> Result<Session, Fail> {
        Ok(Session {
            load: conn.prepare(sql::LOAD)?,
            bulk_load: conn.prepare(sql::BULK_LOAD)?,
            bulk_load_with_refs: conn.prepare(sql::BULK_LOAD_WITH_REFS)?,
            new_oids: conn.prepare(sql::NEW_OIDS)?,
            sync: conn.prepare(sql::SYNC)?,
            write: conn.prepare(sql::WRITE)?,
            missing: conn.prepare(sql::MISSING)?,
            conn,
            locked: None,
            open: false,
        })
    }

    /// The tid and record of `oid`, if it has one.
    pub(super) fn load(&self, oid: i64) -> Result<Option<(i64, Vec<u8>)>, Fail> {
        Ok(self
            .conn
            .query_opt(&self.load, &[&oid])?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// The last tid and the oids written or removed after `tid`.
    pub(super) fn changes_since(&self, tid: i64) -> Result<(i64, Vec<Oid>), Fail> {
        let row = self.conn.query_one(&self.sync, &[&tid])?;
        let oids = row
            .get::<_, Vec<i64>>(1)
            .into_iter()
            .map(|o| Oid(o as u64))
            .collect();
        Ok((row.get(0), oids))
    }

    /// The first oids of `blocks` new blocks of `sql::OID_BLOCK` oids.
    pub(super) fn new_oid_blocks(&self, blocks: i32) -> Result<Vec<u64>, Fail> {
        Ok(self
            .conn
            .query(&self.new_oids, &[&blocks])?
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .collect())
    }

    /// Those of `oids` with no record, in one statement.
    pub(super) fn missing(&self, oids: &[i64]) -> Result<Vec<Oid>, Fail> {
        Ok(self
            .conn
            .query(&self.missing, &[&oids])?
            .iter()
            .map(|r| Oid(r.get::<_, i64>(0) as u64))
            .collect())
    }

    /// `(oid, tid, record)` of those of `oids` that have a record.
    pub(super) fn bulk_load(&self, oids: &[Oid]) -> Result<Vec<(Oid, i64, Vec<u8>)>, Fail> {
        let mut out = Vec::with_capacity(oids.len());
        for chunk in oids.chunks(MAX_BULK) {
            // An oid past i64::MAX has no row: leaving it out finds nothing.
            let keys: Vec<i64> = chunk
                .iter()
                .filter_map(|o| i64::try_from(o.0).ok())
                .collect();
            for row in self.conn.query(&self.bulk_load, &[&keys])? {
                let oid: i64 = row.get(0);
                out.push((Oid(oid as u64), row.get(1), row.get(2)));
            }
        }
        Ok(out)
    }

    /// `(oid, tid, record, asked)` of those of `oids` that have a record
    /// (`asked`), and of up to `more` records they refer to that are not
    /// among `oids` (one statement per `MAX_BULK` oids).
    pub(super) fn bulk_load_with_refs(
        &self,
        oids: &[Oid],
        more: usize,
    ) -> Result<Vec<AheadRow>, Fail> {
        let mut out = Vec::with_capacity(oids.len());
        let mut more = more;
        for chunk in oids.chunks(MAX_BULK) {
            let keys: Vec<i64> = chunk
                .iter()
                .filter_map(|o| i64::try_from(o.0).ok())
                .collect();
            let limit = i64::try_from(more).unwrap_or(i64::MAX);
            for row in self
                .conn
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

    /// Opens the commit's SQL transaction and takes the commit lock; the
    /// last tid.
    fn lock_commit(&mut self) -> Result<i64, Fail> {
        self.open = true;
        let messages = self.conn.simple_query(sql::LOCK_COMMIT)?;
        // Statements: BEGIN, SET, the lock.
        let tid = statement_rows(&messages)
            .get(2)
            .and_then(|r| r.first().copied())
            .ok_or(Fail::Unexpected("the commit row is missing"))?;
        self.locked = Some(tid);
        Ok(tid)
    }

    /// Takes the commit lock and, in the same round trip, the oids changed
    /// since `last_tid` and the current records of those among `written`.
    fn lock_commit_with_changes(&mut self, last_tid: i64, written: &[i64]) -> Result<Locked, Fail> {
        self.open = true;
        let messages = self
            .conn
            .simple_query(&sql::begin_commit(last_tid, written))?;
        let rows = statement_rows(&messages);
        // Statements: BEGIN, SET, the lock, the invalidations.
        let tid = rows
            .get(2)
            .and_then(|r| r.first().copied())
            .ok_or(Fail::Unexpected("the commit row is missing"))?;
        self.locked = Some(tid);
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

    fn write_batch(&self, tid: i64, batch: &WriteBatch) -> Result<(), Fail> {
        self.conn
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
    }
}

/// A session to one database that reconnects when its connection broke.
pub(super) struct Link {
    config: Config,
    /// `host:port/dbname`, for messages.
    target: String,
    session: Option<Session>,
    /// Closed by its storage: no reconnecting.
    closed: bool,
    /// No attempt to reconnect before this.
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// Why the connection or the last attempt failed, for messages.
    why: String,
    outage: Arc<Outage>,
}

impl Link {
    /// A link over an open session.
    pub(super) fn new(
        config: Config,
        target: String,
        session: Session,
        outage: Arc<Outage>,
    ) -> Link {
        Link {
            session: Some(session),
            ..Link::unconnected(config, target, outage)
        }
    }

    /// A new link to the same database, connected on first use, whose
    /// failures and successes do not count for the storage's outage (a
    /// pooled load session: its answers say nothing of the sessions that
    /// sync and commit).
    pub(super) fn pooled(&self) -> Link {
        Link::unconnected(
            self.config.clone(),
            self.target.clone(),
            Arc::new(Outage::default()),
        )
    }

    /// A new link to the same database, connected on first use.
    pub(super) fn sibling(&self) -> Link {
        Link::unconnected(
            self.config.clone(),
            self.target.clone(),
            self.outage.clone(),
        )
    }

    fn unconnected(config: Config, target: String, outage: Arc<Outage>) -> Link {
        Link {
            config,
            target,
            session: None,
            closed: false,
            next_attempt: None,
            backoff: MIN_BACKOFF,
            why: String::new(),
            outage,
        }
    }

    /// Sets the deadline of the session's round trips.
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        if let Some(session) = self.session.as_mut() {
            session.conn.set_timeout(timeout);
        }
    }

    /// The session, reconnecting first if the connection broke and the
    /// backoff allows.
    pub(super) fn session(&mut self) -> Result<&mut Session> {
        if self.closed {
            return Err(Error::Storage(StorageError::Closed));
        }
        if self.session.is_none() {
            let now = Instant::now();
            if self.next_attempt.is_some_and(|at| now < at) {
                return Err(self.unreachable());
            }
            match connect_session(&self.config, &self.target) {
                Ok(session) => {
                    info!("postgresql: reconnected to {}", self.target);
                    self.session = Some(session);
                    self.next_attempt = None;
                    self.backoff = MIN_BACKOFF;
                    self.outage.end();
                }
                Err(e) => {
                    self.outage.begin();
                    self.next_attempt = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.why = e.to_string();
                    return Err(self.unreachable());
                }
            }
        }
        self.session
            .as_mut()
            .ok_or(Error::Storage(StorageError::Closed))
    }

    fn unreachable(&self) -> Error {
        let down = self.outage.duration().unwrap_or_default();
        other(format!(
            "postgresql: {} unreachable for {:.1} s, reconnecting: {}",
            self.target,
            down.as_secs_f64(),
            self.why
        ))
    }

    /// The error of a failed round trip; a broken connection is dropped
    /// (the next use reconnects), with the commit lock it held.
    pub(super) fn failed(&mut self, doing: &str, fail: &Fail) -> Error {
        let e = pg_error(doing, fail);
        if fail.breaks_connection() {
            if self.session.take().is_some() {
                warn!("postgresql: connection to {} lost: {e}", self.target);
            }
            self.outage.begin();
            self.why = e.to_string();
        }
        e
    }

    /// Runs `f`, a round trip that changes nothing outside a transaction;
    /// when it finds the connection broken, reconnects once and runs it
    /// again (a restart of PostgreSQL costs the request nothing).
    pub(super) fn read<T>(
        &mut self,
        doing: &str,
        mut f: impl FnMut(&mut Session) -> Result<T, Fail>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            tries += 1;
            let fail = match f(self.session()?) {
                Ok(v) => {
                    // PostgreSQL answers (whatever another session saw).
                    self.outage.end();
                    return Ok(v);
                }
                Err(fail) => fail,
            };
            let e = self.failed(doing, &fail);
            if tries >= 2 || !fail.breaks_connection() {
                return Err(e);
            }
        }
    }

    /// Runs `f` once (inside a transaction, or a change): a broken
    /// connection is dropped, nothing is retried.
    pub(super) fn once<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut Session) -> Result<T, Fail>,
    ) -> Result<T> {
        match f(self.session()?) {
            Ok(v) => {
                self.outage.end();
                Ok(v)
            }
            Err(fail) => Err(self.failed(doing, &fail)),
        }
    }

    /// Takes the commit lock (bounded by `lock_timeout`); the last tid.
    /// Nothing is open before it, so a broken connection is retried once.
    pub(super) fn lock_commit(&mut self) -> Result<i64> {
        if let Some(tid) = self.session.as_ref().and_then(|s| s.locked) {
            return Ok(tid);
        }
        let out = self.read("take the commit lock", Session::lock_commit);
        if out.is_err() {
            self.unlock_commit();
        }
        out
    }

    /// The lock and what changed since `last_tid` (see
    /// `Session::lock_commit_with_changes`); when the lock is held already
    /// (a hub took it, then synced), only what changed since, in its
    /// transaction.
    pub(super) fn begin_commit(&mut self, last_tid: i64, written: &[i64]) -> Result<Locked> {
        if let Some(tid) = self.session.as_ref().and_then(|s| s.locked) {
            if tid == last_tid {
                return Ok((tid, Vec::new(), HashMap::new()));
            }
            let changed = self.once("commit", |s| s.changes_since(last_tid));
            return changed.map(|(_, oids)| (tid, oids, HashMap::new()));
        }
        self.read("commit", |s| s.lock_commit_with_changes(last_tid, written))
    }

    /// Leaves the commit's SQL transaction, if one is open; nothing is
    /// written. A failure drops the connection (which ends the
    /// transaction too).
    pub(super) fn unlock_commit(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.locked = None;
        if !std::mem::take(&mut session.open) {
            return;
        }
        if session.conn.batch_execute(sql::ROLLBACK).is_err() {
            self.session = None;
        }
    }

    /// Writes `batches` at `tid` and commits, on the session that holds
    /// the commit lock. An error that is not [`Error::OutcomeUnknown`]
    /// means COMMIT never ran: nothing was written (the transaction is
    /// left by the caller's `unlock_commit`).
    ///
    /// A small commit is one round trip (the records as literals, then
    /// COMMIT and the WAL flush); a large one binds them as parameters, in
    /// statements of at most `MAX_WRITE_BYTES`, then commits.
    pub(super) fn write_and_commit(&mut self, tid: i64, batches: Vec<WriteBatch>) -> Result<()> {
        let target = self.target.clone();
        let lost = || {
            other(format!(
                "postgresql: the connection to {target} broke during the commit; nothing was \
                 written"
            ))
        };
        let Some(session) = self.session.as_mut() else {
            return Err(lost());
        };
        if session.locked.is_none() || session.conn.is_closed() {
            self.session = None;
            return Err(lost());
        }
        let inline = match batches.as_slice() {
            [batch] if batch.bytes <= super::MAX_INLINE_BYTES => {
                Some(sql::write_and_commit(tid, batch))
            }
            _ => None,
        };
        // The failure, and whether the round trip that failed held COMMIT.
        let out: Result<(), (Fail, bool)> = match inline {
            Some(text) => session.conn.batch_execute(&text).map_err(|f| (f, true)),
            None => batches
                .iter()
                .try_for_each(|batch| session.write_batch(tid, batch))
                .map_err(|f| (f, false))
                .and_then(|()| {
                    session
                        .conn
                        .batch_execute(sql::FINISH_COMMIT)
                        .map_err(|f| (f, true))
                }),
        };
        match out {
            Ok(()) => {
                session.locked = None;
                session.open = false;
                Ok(())
            }
            Err((fail, false)) => Err(self.failed("write records", &fail)),
            Err((fail, true)) => Err(self.failed_commit(&fail)),
        }
    }

    /// The error of a round trip that held COMMIT. When the server says
    /// the SQL transaction is still open and failed, or that it ended the
    /// session before (an idle-in-transaction timeout), COMMIT never ran:
    /// nothing was written. Otherwise (the connection broke, or COMMIT or
    /// the flush failed) the outcome is unknown.
    fn failed_commit(&mut self, fail: &Fail) -> Error {
        use tokio_postgres::error::SqlState;
        if fail.code() == Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT) {
            return self.failed("write records", fail);
        }
        if let (Fail::Pg(e), Some(session)) = (fail, self.session.as_mut()) {
            if e.as_db_error().is_some() && !fail.breaks_connection() {
                if let Err(probe) = session.conn.batch_execute("SELECT 1") {
                    if probe.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) {
                        return self.failed("write records", fail);
                    }
                }
            }
        }
        let e = Error::OutcomeUnknown(format!(
            "postgresql: {} (database {})",
            describe_fail(fail),
            self.target
        ));
        // The session's state is unknown: start afresh.
        self.session = None;
        e
    }

    /// Closes the connection; later uses fail.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.session = None;
    }
}

/// Connects and prepares the statements (the schema exists).
pub(super) fn connect_session(config: &Config, target: &str) -> Result<Session> {
    let conn = Conn::connect(config, ROUND_TRIP_TIMEOUT)
        .map_err(|e| pg_error(&format!("connect to {target}"), &e))?;
    Session::prepare(conn).map_err(|e| pg_error("prepare statements", &e))
}

/// A PostgreSQL error with what was being done and, for a server error,
/// its message and detail.
pub(super) fn pg_error(doing: &str, e: &Fail) -> Error {
    other(format!("postgresql: {doing}: {}", describe_fail(e)))
}

pub(super) fn describe_fail(fail: &Fail) -> String {
    let e = match fail {
        Fail::Pg(e) => e,
        Fail::TimedOut(t) => return format!("no answer within {} s", t.as_secs_f64()),
        Fail::Runtime(e) => return format!("cannot start the client's runtime: {e}"),
        Fail::Unexpected(what) => return (*what).to_string(),
    };
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
