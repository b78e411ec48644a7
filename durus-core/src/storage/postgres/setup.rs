//! Connecting: the configuration made from a URL, with the session
//! settings that bound every wait, and the schema made on first use.

use super::conn::{Conn, Fail};
use super::link::pg_error;
use super::{other, sql};
use crate::error::Result;
use std::time::Duration;
use tokio_postgres::Config;

/// How many times schema creation is tried when another process makes it
/// at the same moment.
const SCHEMA_ATTEMPTS: usize = 5;

/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of every session, unless the URL's `options` sets them (`?options=-c%20lock_timeout%3D5s`):
/// - `lock_timeout`: the longest a commit waits for the commit lock;
/// - `idle_in_transaction_session_timeout`: a session that holds the
///   lock and goes silent (its server paused, its host gone) is ended by
///   PostgreSQL after this, which frees the lock: shorter than
///   `lock_timeout`, so that the others' commits go on;
/// - `statement_timeout`: any one statement (a pack lifts it).
/// - `synchronous_commit`: on, so that the oid sequence's WAL is flushed
///   before its oids are handed out (no oid is handed out twice across a
///   crash), whatever the server's default.
const SESSION_LIMITS: [(&str, &str); 4] = [
    ("lock_timeout", "15s"),
    ("idle_in_transaction_session_timeout", "10s"),
    ("statement_timeout", "50s"),
    ("synchronous_commit", "on"),
];

/// TCP keepalives on every connection: a peer that vanished without a
/// word (a powered-off host) is noticed in about a minute, not hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The configuration of the database at `url`, with this storage's
/// bounds on every wait, and where it is (`host:port/dbname`, for messages).
pub(super) fn connect_config(url: &str) -> Result<(Config, String)> {
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        other(format!(
            "bad PostgreSQL URL {:?}: {e}",
            crate::internals::redact_url(url)
        ))
    })?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(other(
            "postgresql: sslmode=require, but this build cannot speak TLS to PostgreSQL yet: \
             connect over a Unix socket, loopback or a private network (sslmode=disable), \
             or through a TLS-terminating proxy"
                .into(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("durus");
    }
    let mut options = config.get_options().unwrap_or_default().to_string();
    for (name, value) in SESSION_LIMITS {
        if !sets_option(&options, name) {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {name}={value}"));
        }
    }
    config.options(&options);
    let target = describe(&config);
    Ok((config, target))
}

/// Whether libpq-style `options` (`-c name=value`, `-cname=value`,
/// `--name=value`) set `name` (and not merely a longer name ending in it).
fn sets_option(options: &str, name: &str) -> bool {
    options.split_whitespace().any(|word| {
        let word = word
            .strip_prefix("--")
            .or_else(|| word.strip_prefix("-c"))
            .unwrap_or(word);
        word.split_once('=')
            .is_some_and(|(key, _)| key.replace('-', "_") == name)
    })
}

/// Makes the schema unless it is there; checks its version.
pub(super) fn ensure_schema(conn: &Conn) -> Result<()> {
    let mut attempt = 0;
    let found = loop {
        attempt += 1;
        match try_ensure_schema(conn) {
            Ok(found) => break found,
            Err(e) if attempt < SCHEMA_ATTEMPTS && is_creation_race(&e) => {
                let _ = conn.batch_execute(sql::ROLLBACK);
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
fn try_ensure_schema(conn: &Conn) -> Result<Vec<i32>, Fail> {
    conn.batch_execute("BEGIN")?;
    let out = (|| {
        conn.batch_execute(sql::CREATE_SCHEMA_TABLE)?;
        conn.batch_execute(sql::LOCK_SCHEMA)?;
        let versions: Vec<i32> = conn
            .query_text(sql::SELECT_SCHEMA_VERSION, &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if versions.is_empty() {
            conn.batch_execute(sql::CREATE_SCHEMA)?;
            conn.execute_text(sql::INSERT_SCHEMA_VERSION, &[&sql::SCHEMA_VERSION])?;
        }
        conn.batch_execute("COMMIT")?;
        Ok(versions)
    })();
    if out.is_err() {
        let _ = conn.batch_execute(sql::ROLLBACK);
    }
    out
}

/// Two processes made the schema's first table at once.
fn is_creation_race(e: &Fail) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// `host:port/dbname` of a configuration, for messages.
fn describe(config: &Config) -> String {
    use tokio_postgres::config::Host;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_matched_by_whole_name() {
        assert!(sets_option("-c lock_timeout=5s", "lock_timeout"));
        assert!(sets_option("-clock_timeout=5s", "lock_timeout"));
        assert!(sets_option("--lock-timeout=5s", "lock_timeout"));
        assert!(!sets_option("-c deadlock_timeout=1s", "lock_timeout"));
        assert!(!sets_option("", "lock_timeout"));
    }
}
