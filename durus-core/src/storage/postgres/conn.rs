//! One PostgreSQL session whose every round trip is bounded.
//!
//! The `postgres` crate's blocking client waits for an answer as long as
//! the socket stays open: a PostgreSQL that accepts and never answers, or
//! that is paused, holds the caller forever. This is the same client
//! (`tokio-postgres`) on a runtime of its own, each call under a
//! deadline. A call that misses it leaves the session in an unknown state:
//! the caller drops the connection ([`Fail::breaks_connection`]).

use std::future::Future;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, SimpleQueryMessage, Statement};

/// Why a round trip failed.
#[derive(Debug)]
pub(super) enum Fail {
    /// PostgreSQL answered with an error, or the connection broke.
    Pg(tokio_postgres::Error),
    /// No answer within the deadline.
    TimedOut(Duration),
    /// The runtime could not be made.
    Runtime(std::io::Error),
    /// PostgreSQL answered something this client cannot use.
    Unexpected(&'static str),
}

impl Fail {
    /// The server's error code, when it sent one.
    pub(super) fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Fail::Pg(e) => e.code(),
            _ => None,
        }
    }

    /// True when the connection cannot be used any more: it closed, an
    /// answer did not come in time, or the server ended the session (a
    /// shutdown, an idle-in-transaction timeout: a FATAL error).
    pub(super) fn breaks_connection(&self) -> bool {
        match self {
            Fail::Pg(e) => match e.as_db_error() {
                None => true,
                Some(db) => {
                    let code = db.code().code();
                    db.severity() == "FATAL"
                        || db.severity() == "PANIC"
                        || code.starts_with("08")
                        || code.starts_with("57P")
                }
            },
            Fail::TimedOut(_) | Fail::Runtime(_) => true,
            // The session's state is not what it should be.
            Fail::Unexpected(_) => true,
        }
    }
}

/// A session and the runtime that drives it.
pub(super) struct Conn {
    runtime: Runtime,
    client: Client,
    /// The longest one round trip may take.
    timeout: Duration,
}

impl Conn {
    /// Connects (the TCP connect and the whole startup, TLS and
    /// authentication included, within `timeout`).
    pub(super) fn connect(config: &Config, timeout: Duration) -> Result<Conn, Fail> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Fail::Runtime)?;
        let (client, connection) = runtime
            .block_on(async { tokio::time::timeout(timeout, config.connect(NoTls)).await })
            .map_err(|_| Fail::TimedOut(timeout))?
            .map_err(Fail::Pg)?;
        // Driven whenever a call blocks on the runtime; ends when the
        // connection closes.
        runtime.spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            runtime,
            client,
            timeout,
        })
    }

    /// Sets the deadline of later round trips.
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn run<T>(
        &self,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Fail> {
        let timeout = self.timeout;
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, call).await })
            .map_err(|_| Fail::TimedOut(timeout))?
            .map_err(Fail::Pg)
    }

    pub(super) fn prepare(&self, query: &str) -> Result<Statement, Fail> {
        self.run(self.client.prepare(query))
    }

    pub(super) fn query(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Fail> {
        self.run(self.client.query(statement, params))
    }

    pub(super) fn query_text(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Fail> {
        self.run(self.client.query(query, params))
    }

    pub(super) fn query_opt(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Fail> {
        self.run(self.client.query_opt(statement, params))
    }

    pub(super) fn query_one_text(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Fail> {
        self.run(self.client.query_one(query, params))
    }

    pub(super) fn query_one(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Fail> {
        self.run(self.client.query_one(statement, params))
    }

    pub(super) fn execute(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Fail> {
        self.run(self.client.execute(statement, params))
    }

    pub(super) fn execute_text(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Fail> {
        self.run(self.client.execute(query, params))
    }

    pub(super) fn simple_query(&self, query: &str) -> Result<Vec<SimpleQueryMessage>, Fail> {
        self.run(self.client.simple_query(query))
    }

    pub(super) fn batch_execute(&self, query: &str) -> Result<(), Fail> {
        self.run(self.client.batch_execute(query))
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
