//! [`Listener`]: learns of commits made by other processes through
//! PostgreSQL's `LISTEN durus_commit` (every commit and pack sends
//! `NOTIFY durus_commit` inside its SQL transaction, so the signal comes
//! once it is visible).
//!
//! The listening session runs on a thread of its own that reads its
//! socket all the time, whether anyone waits or not: PostgreSQL keeps
//! notifications in a queue shared by the whole cluster until every
//! listener has read them, so a listener left unread would fill it and
//! make commits fail. A signal only bumps a counter (memory stays bounded
//! however many commits nobody waits for).

use super::{other, sql};
use crate::error::{Error, Result, StorageError};
use crate::lock;
use crate::storage::ChangeNotifier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// How often the listening thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// What the listening thread tells waiters.
#[derive(Default)]
struct Signals {
    /// Bumped by every notification, and when LISTEN starts (a commit made
    /// before it may have gone unsignalled).
    count: u64,
    /// The thread runs (connecting or listening).
    running: bool,
    /// Why the thread ended, for the next wait.
    error: Option<String>,
}

/// One process's listening session (see the module's text).
pub(super) struct Listener {
    config: Config,
    target: String,
    timeout: Duration,
    signals: Arc<(Mutex<Signals>, Condvar)>,
    /// The count a waiter saw last.
    seen: Mutex<u64>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// A listener on the database of `config`; it connects on first wait.
    pub(super) fn new(config: Config, target: String, timeout: Duration) -> Listener {
        Listener {
            config,
            target,
            timeout,
            signals: Arc::default(),
            seen: Mutex::new(0),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts the listening thread (the signals' lock is held).
    fn start(&self, signals: &mut Signals) -> Result<()> {
        let config = self.config.clone();
        let timeout = self.timeout;
        let shared = self.signals.clone();
        let stop = self.stop.clone();
        std::thread::Builder::new()
            .name("durus-pg-listen".into())
            .spawn(move || {
                let why = listen(&config, timeout, &shared, &stop);
                let (state, changed) = &*shared;
                let mut s = lock(state);
                s.running = false;
                s.error = why.err();
                changed.notify_all();
            })
            .map_err(|e| Error::io("start the postgresql listener", e))?;
        signals.running = true;
        signals.error = None;
        Ok(())
    }
}

impl ChangeNotifier for Listener {
    fn wait(&self, timeout: Duration) -> Result<bool> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Error::Storage(StorageError::Closed));
        }
        let deadline = crate::deadline(timeout);
        let mut seen = lock(&self.seen);
        let (state, changed) = &*self.signals;
        let mut signals = lock(state);
        if let Some(why) = signals.error.take() {
            return Err(other(format!(
                "postgresql: listening for commits on {}: {why}",
                self.target
            )));
        }
        if !signals.running {
            self.start(&mut signals)?;
        }
        loop {
            if signals.count != *seen {
                *seen = signals.count;
                return Ok(true);
            }
            if !signals.running {
                let why = signals.error.take().unwrap_or_default();
                return Err(other(format!(
                    "postgresql: listening for commits on {}: {why}",
                    self.target
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            signals = changed
                .wait_timeout(signals, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The listening thread: connects, runs LISTEN, and bumps the count on
/// every notification until `stop` or the connection ends.
fn listen(
    config: &Config,
    timeout: Duration,
    shared: &Arc<(Mutex<Signals>, Condvar)>,
    stop: &AtomicBool,
) -> std::result::Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let (client, mut connection) = tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map_err(|_| format!("no connection within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let (lost_tx, mut lost_rx) = futures_channel::oneshot::channel::<String>();
        let signals = shared.clone();
        tokio::spawn(async move {
            let why = loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => bump(&signals),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "connection closed".to_string(),
                }
            };
            let _ = lost_tx.send(why);
        });
        tokio::time::timeout(timeout, client.batch_execute(sql::LISTEN))
            .await
            .map_err(|_| format!("LISTEN not answered within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        bump(shared);
        loop {
            if let Ok(why) = tokio::time::timeout(STOP_CHECK, &mut lost_rx).await {
                return Err(why.unwrap_or_else(|_| "connection closed".to_string()));
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    })
}

/// Counts a signal and wakes the waiters.
fn bump(shared: &(Mutex<Signals>, Condvar)) {
    let (state, changed) = shared;
    lock(state).count += 1;
    changed.notify_all();
}
