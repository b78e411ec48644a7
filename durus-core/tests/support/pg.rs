//! A throwaway PostgreSQL cluster for the PostgreSQL tests.
//!
//! `initdb` into a temporary directory, `postgres` on a free loopback port
//! with its socket in that directory, stopped by its pid and removed when
//! the last test holding it drops it (also when a test panics). As root,
//! the server runs as the `postgres` user (it refuses root).
//!
//! The binaries are found through `DURUS_PG_BIN`, `pg_config --bindir` or
//! `/usr/lib/postgresql/*/bin`. Without them the tests fail, unless
//! `DURUS_PG_SKIP=1`, which makes them return at once.

use postgres::{Client, NoTls};
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to stop after SIGINT, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Ports tried when the one picked was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// A running cluster. Shared by the tests of one binary.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    server: Mutex<Child>,
    next_db: Mutex<u32>,
}

static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

/// The cluster of this test binary, started on first use; `None` when
/// `DURUS_PG_SKIP` is set (the caller returns, the test passes).
pub fn cluster() -> Option<Arc<Cluster>> {
    if std::env::var_os("DURUS_PG_SKIP").is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("DURUS_PG_SKIP is set: PostgreSQL test skipped");
        return None;
    }
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    let c = Arc::new(Cluster::start());
    *shared = Arc::downgrade(&c);
    Some(c)
}

/// The directory of `initdb` and `postgres`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DURUS_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries (initdb, postgres): install PostgreSQL 14 or \
             newer (Debian: apt-get install postgresql), set DURUS_PG_BIN to their \
             directory, or set DURUS_PG_SKIP=1 to skip the PostgreSQL tests"
        ),
    }
}

/// The uid and gid of the `postgres` user, when this process is root.
fn server_user() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    Some(ids.unwrap_or_else(|| {
        panic!(
            "running as root, and PostgreSQL refuses root: make a postgres user \
             (useradd --system --no-create-home postgres)"
        )
    }))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>, dir: &Path) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd.current_dir(dir);
}

impl Cluster {
    fn start() -> Cluster {
        let bin = bin_dir();
        let user = server_user();
        let dir = std::env::temp_dir().join(format!(
            "durus-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown cluster dir");
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync"])
            .stdout(Stdio::null());
        as_server_user(&mut initdb, user, &dir);
        let out = initdb.output().expect("run initdb");
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log = dir.join("server.log");
            let log_file = File::create(&log).expect("server log");
            if let Some((uid, gid)) = user {
                let _ = std::os::unix::fs::chown(&log, Some(uid), Some(gid));
            }
            let mut cmd = Command::new(bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                // Tests do not survive power losses: no fsync.
                .args(["-c", "fsync=off"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file);
            as_server_user(&mut cmd, user, &dir);
            let mut server = cmd.spawn().expect("start postgres");
            if wait_ready(&mut server, port) {
                return Cluster {
                    dir,
                    port,
                    server: Mutex::new(server),
                    next_db: Mutex::new(0),
                };
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            stop(&mut server);
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("PostgreSQL did not start; its log:\n{last_log}");
    }

    /// Stops the server (a fast shutdown: sessions are ended) and starts
    /// it again on the same port and data; returns once it accepts
    /// connections. Every test of the binary sees it: give such a test a
    /// binary of its own.
    pub fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        stop(&mut server);
        let mut next = self.spawn_server();
        assert!(
            wait_ready(&mut next, self.port),
            "PostgreSQL did not start again"
        );
        *server = next;
    }

    /// Stops the server for good (until `restart`).
    pub fn stop(&self) {
        stop(&mut self.server.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The pid of the server process.
    pub fn pid(&self) -> u32 {
        self.server.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    fn spawn_server(&self) -> Child {
        let log = self.dir.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .expect("server log");
        let mut cmd = Command::new(bin_dir().join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        as_server_user(&mut cmd, server_user(), &self.dir);
        cmd.spawn().expect("start postgres")
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database; its URL.
    pub fn new_database(&self, name: &str) -> String {
        let n = {
            let mut next = self.next_db.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let db = format!("{name}_{n}");
        let mut admin = self.admin();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .expect("create database");
        self.url(&db)
    }

    /// An autocommit connection to the `postgres` database.
    pub fn admin(&self) -> Client {
        Client::connect(&self.url("postgres"), NoTls).expect("admin connection")
    }

    /// A plain connection to the database at `url`.
    pub fn client(url: &str) -> Client {
        Client::connect(url, NoTls).expect("connect")
    }
}

/// Waits (bounded) until the server on `port` accepts connections; false
/// if it exited or did not in time.
fn wait_ready(server: &mut Child, port: u16) -> bool {
    let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    let t0 = Instant::now();
    while t0.elapsed() < START_TIMEOUT {
        if let Ok(Some(_)) = server.try_wait() {
            return false;
        }
        if Client::connect(&url, NoTls).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// SIGINT (PostgreSQL's fast shutdown) to the server's pid, then waits,
/// bounded; SIGKILL if it did not stop.
fn stop(server: &mut Child) {
    if let Ok(Some(_)) = server.try_wait() {
        return;
    }
    let pid = server.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let t0 = Instant::now();
    while t0.elapsed() < STOP_TIMEOUT {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(self.server.get_mut().unwrap_or_else(|p| p.into_inner()));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
