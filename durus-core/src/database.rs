//! [`Database`]: a handle for threaded and async services.
//!
//! A [`Connection`] belongs to one thread. A `Database` is `Send + Sync +
//! Clone`: it owns the shared storage (a [`Hub`] for a file or memory, an
//! address for a server) and hands out connections, one per thread, reused
//! from one transaction to the next with their caches.
//!
//! - [`Database::transaction`] runs a closure on the calling thread's own
//!   connection for this database, at the start of a fresh transaction,
//!   commits when it returns `Ok`, aborts when it returns `Err` (returned
//!   as is), and retries conflicts a bounded number of times.
//! - [`Database::run`] does the same on the database's own pool of threads
//!   and returns a future, for async services: the runtime's threads never
//!   block on the database.
//!
//! Handles (`PRef`s) taken in a transaction may be kept and read after it,
//! but a `write` outside a transaction fails with
//! [`Error::TransactionEnded`]: nothing would ever commit it. Take the
//! handle again (or use it) inside the next transaction.
//!
//! A connection whose server went away is replaced at the next attempt.
//! See docs/SERVICES.md for the model in a page.

use crate::connection::{Backoff, Connection};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::storage::{ClientOptions, FileOptions, FileStorage, MemoryStorage};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How transactions are retried and connections sized.
///
/// ```
/// use durus_core::{Database, DatabaseOptions};
///
/// let db = Database::memory().with_options(DatabaseOptions {
///     attempts: 3,
///     ..DatabaseOptions::default()
/// });
/// assert_eq!(db.options().attempts, 3);
/// ```
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Threads (and so connections) of the pool behind [`Database::run`].
    /// Default: the number of CPUs.
    pub pool_size: usize,
    /// Attempts of one transaction, the first included. Default: 10.
    pub attempts: usize,
    /// The wait before the second attempt; it doubles after each attempt,
    /// up to `max_backoff`, and a random part of it is added (jitter).
    /// Default: 1 ms.
    pub backoff: Duration,
    /// The longest wait between attempts. Default: 200 ms.
    pub max_backoff: Duration,
    /// The cache size of each connection (loaded objects).
    pub cache_size: usize,
    /// Connect and read timeouts of connections to a server. A request
    /// that times out fails the transaction (it is not retried: each
    /// attempt would wait as long again) and the connection is replaced.
    pub client: ClientOptions,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            pool_size: std::thread::available_parallelism().map_or(2, |n| n.get()),
            attempts: 10,
            backoff: crate::connection::DEFAULT_BACKOFF,
            max_backoff: crate::connection::DEFAULT_MAX_BACKOFF,
            cache_size: crate::connection::DEFAULT_CACHE_SIZE,
            client: ClientOptions::default(),
        }
    }
}

/// Where the connections of a database come from.
enum Source {
    /// A storage shared in this process.
    Hub(Hub),
    /// A storage server.
    Server(String),
}

/// A database shared by threads and tasks: a pool of connections with
/// retrying transactions.
///
/// ```
/// use durus_core::{Database, PRef, Persistent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Persistent, Serialize, Deserialize, Default, Clone)]
/// struct Counter {
///     #[merge(sum)]
///     hits: i64,
/// }
///
/// let db = Database::memory();
/// let threads: Vec<_> = (0..4)
///     .map(|_| {
///         let db = db.clone();
///         std::thread::spawn(move || {
///             db.transaction(|conn| {
///                 let root: PRef<Counter> = conn.root()?;
///                 root.write()?.hits += 1;
///                 Ok::<_, durus_core::Error>(())
///             })
///         })
///     })
///     .collect();
/// for t in threads {
///     t.join().unwrap()?;
/// }
/// let hits = db.transaction(|conn| Ok::<_, durus_core::Error>(conn.root::<Counter>()?.read()?.hits))?;
/// assert_eq!(hits, 4);
/// # Ok::<(), durus_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

struct Shared {
    /// Tells this database's connections apart in a thread's map.
    id: u64,
    source: Source,
    options: DatabaseOptions,
    /// The pool behind `run`, started on first use.
    pool: Mutex<Option<mpsc::Sender<Job>>>,
}

type Job = Box<dyn FnOnce(&mut Option<Connection>) + Send>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's connection to each database it used, by id.
    static CONNECTIONS: RefCell<HashMap<u64, Connection>> = RefCell::new(HashMap::new());
}

impl Database {
    /// A database over a storage shared in this process.
    pub fn from_hub(hub: Hub) -> Database {
        Database::with_source(Source::Hub(hub), DatabaseOptions::default())
    }

    /// A database in the file at `path` (created when missing).
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Database> {
        Database::open_with(path, FileOptions::default())
    }

    /// A database in the file at `path`, with file options.
    pub fn open_with(path: impl AsRef<std::path::Path>, options: FileOptions) -> Result<Database> {
        Ok(Database::from_hub(Hub::new(FileStorage::open_with(
            path, options,
        )?)))
    }

    /// A database in memory (for tests and scratch work).
    pub fn memory() -> Database {
        Database::from_hub(Hub::new(MemoryStorage::new()))
    }

    /// A database on a storage server at `address` (`host:port` or a
    /// Unix-domain socket path). Connects once to check the address.
    pub fn connect(address: &str) -> Result<Database> {
        Database::connect_with(address, DatabaseOptions::default())
    }

    /// As [`connect`](Database::connect), with these options (timeouts in
    /// [`DatabaseOptions::client`]).
    pub fn connect_with(address: &str, options: DatabaseOptions) -> Result<Database> {
        drop(Connection::connect_with(address, options.client)?);
        Ok(Database::with_source(
            Source::Server(address.to_string()),
            options,
        ))
    }

    fn with_source(source: Source, options: DatabaseOptions) -> Database {
        Database {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                source,
                options,
                pool: Mutex::new(None),
            }),
        }
    }

    /// The same storage with other options (a new pool, new connections).
    pub fn with_options(&self, options: DatabaseOptions) -> Database {
        let source = match &self.shared.source {
            Source::Hub(hub) => Source::Hub(hub.clone()),
            Source::Server(a) => Source::Server(a.clone()),
        };
        Database::with_source(source, options)
    }

    /// The options in force.
    pub fn options(&self) -> &DatabaseOptions {
        &self.shared.options
    }

    /// A new connection to this database, for code that manages its own
    /// (a connection belongs to the thread that made it).
    pub fn connection(&self) -> Result<Connection> {
        let conn = match &self.shared.source {
            Source::Hub(hub) => Connection::new(hub.storage()),
            Source::Server(address) => {
                Connection::connect_with(address, self.shared.options.client)?
            }
        };
        conn.set_cache_size(self.shared.options.cache_size);
        Ok(conn)
    }

    /// Runs `f` in a transaction on this thread's connection to the
    /// database, and commits.
    ///
    /// `f` starts on a fresh transaction: it sees every commit made before
    /// the call. When `f` returns `Ok`, the transaction is committed and
    /// the value returned. When `f` returns `Err(e)`, the transaction is
    /// aborted (nothing is written) and `e` is returned unchanged, unless
    /// the error came from a conflict (the connection needs an abort) or a
    /// connection whose server went away: then `f` runs again, at most
    /// [`DatabaseOptions::attempts`] times in all, waiting a little longer
    /// each time. A commit whose outcome is unknown
    /// ([`Error::OutcomeUnknown`]) is never run again.
    pub fn transaction<T, E, F>(&self, mut f: F) -> Result<T, E>
    where
        F: FnMut(&Connection) -> Result<T, E>,
        E: From<Error>,
    {
        let id = self.shared.id;
        let mut conn = CONNECTIONS.with(|c| c.borrow_mut().remove(&id));
        let out = self.attempts(&mut conn, &mut f);
        if let Some(conn) = conn {
            CONNECTIONS.with(|c| c.borrow_mut().insert(id, conn));
        }
        out
    }

    /// Blocks until another client commits something this thread's
    /// connection has not seen (`Ok(true)`), or `timeout` passes
    /// (`Ok(false)`); see [`Connection::wait_for_change`]. The next
    /// [`transaction`](Database::transaction) on this thread sees the
    /// change. A worker loops: a transaction that takes work, and when
    /// there was none, a wait: a commit made in between ends the wait at
    /// once.
    ///
    /// With `interest`, only a change to one of those oids counts.
    pub fn wait_for_change(
        &self,
        timeout: Duration,
        interest: Option<&[crate::Oid]>,
    ) -> Result<bool> {
        let id = self.shared.id;
        let mut slot = CONNECTIONS.with(|c| c.borrow_mut().remove(&id));
        if slot.as_ref().is_some_and(Connection::is_closed) {
            slot = None;
        }
        let conn = match slot {
            Some(conn) => conn,
            None => self.connection()?,
        };
        let out = match interest {
            None => conn.wait_for_change(timeout),
            Some(oids) => conn.wait_for_change_of(oids, timeout),
        };
        CONNECTIONS.with(|c| c.borrow_mut().insert(id, conn));
        out
    }

    /// As [`transaction`](Database::transaction), on one of the database's
    /// own threads: the returned future resolves to what `f` returned (or
    /// the commit's error). It works with any async runtime; the calling
    /// task does not block.
    pub fn run<T, E, F>(&self, mut f: F) -> impl std::future::Future<Output = Result<T, E>>
    where
        F: FnMut(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (tx, rx) = futures_channel::oneshot::channel();
        let db = self.clone();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(db.attempts(conn, &mut f));
        });
        let queued = self.pool().and_then(|pool| {
            pool.send(job)
                .map_err(|_| Error::Storage(crate::error::StorageError::Closed))
        });
        async move {
            queued?;
            rx.await
                .unwrap_or_else(|_| Err(Error::Storage(crate::error::StorageError::Closed).into()))
        }
    }

    /// The pool's queue, starting its threads on first use.
    fn pool(&self) -> Result<mpsc::Sender<Job>> {
        let mut pool = self
            .shared
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = pool.as_ref() {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..self.shared.options.pool_size.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("durus-db-{n}"))
                .spawn(move || {
                    let mut conn = None;
                    loop {
                        let job = {
                            let queue = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            queue.recv()
                        };
                        match job {
                            Ok(job) => job(&mut conn),
                            // Every handle to the database is gone.
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| Error::io("start a database thread", e))?;
        }
        *pool = Some(sender.clone());
        Ok(sender)
    }

    /// Runs `f` until it commits, fails for good, or runs out of attempts.
    fn attempts<T, E, F>(&self, slot: &mut Option<Connection>, f: &mut F) -> Result<T, E>
    where
        F: FnMut(&Connection) -> Result<T, E>,
        E: From<Error>,
    {
        let options = &self.shared.options;
        let mut backoff = Backoff::new(options.backoff, options.max_backoff);
        let mut attempt = 1;
        loop {
            let out = self.attempt(slot, f);
            // Handles taken in `f` must not be written from now on.
            if let Some(conn) = slot {
                conn.close_writes(true);
            }
            match out {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retry(e)) if attempt >= options.attempts.max(1) => return Err(e),
                Err(Failure::Retry(_)) => {}
            }
            attempt += 1;
            backoff.sleep();
        }
    }

    /// One attempt on the slot's connection (made or replaced as needed).
    fn attempt<T, E, F>(&self, slot: &mut Option<Connection>, f: &mut F) -> Result<T, Failure<E>>
    where
        F: FnMut(&Connection) -> Result<T, E>,
        E: From<Error>,
    {
        if slot.as_ref().is_some_and(Connection::is_closed) {
            *slot = None;
        }
        let conn = match slot {
            Some(conn) => conn,
            None => match self.connection() {
                Ok(conn) => slot.insert(conn),
                Err(e) if e.is_timeout() => return Err(Failure::Final(e.into())),
                // The server is not there (yet): nothing was done.
                Err(e) => return Err(Failure::Retry(e.into())),
            },
        };
        conn.close_writes(false);
        // A fresh transaction: it sees every commit made before it.
        if let Err(e) = conn.abort() {
            let gone = conn.is_closed() && !conn.timed_out();
            return Err(if gone {
                Failure::Retry(e.into())
            } else {
                Failure::Final(e.into())
            });
        }
        let value = match f(conn) {
            Ok(v) => v,
            Err(e) => {
                let conflicted = conn.needs_abort();
                let _ = conn.abort();
                let gone = conn.is_closed() && !conn.timed_out();
                return Err(if conflicted || gone {
                    Failure::Retry(e)
                } else {
                    Failure::Final(e)
                });
            }
        };
        match conn.commit() {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = conn.abort();
                let retry = match &e {
                    Error::OutcomeUnknown(_) => false,
                    e if e.is_conflict() => true,
                    // The commit was not sent whole: nothing was stored.
                    _ => conn.is_closed() && !conn.timed_out(),
                };
                Err(if retry {
                    Failure::Retry(e.into())
                } else {
                    Failure::Final(e.into())
                })
            }
        }
    }
}

/// Why an attempt failed, and whether another may succeed.
enum Failure<E> {
    Retry(E),
    Final(E),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.shared.source {
            Source::Hub(_) => "in this process".to_string(),
            Source::Server(a) => format!("server {a}"),
        };
        f.debug_struct("Database")
            .field("source", &source)
            .field("options", &self.shared.options)
            .finish()
    }
}
