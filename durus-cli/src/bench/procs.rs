//! The processes of a run: the storage server child, the worker children
//! that start together at one instant, and the CPU accounting of the run
//! (own CPU time and the machine's CPU time used by others).

use crate::tools::FsyncPolicy;
use durus_core::error::{Error, Result, StorageError};
use durus_core::server::Address;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to announce its address.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to exit after `Q`.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure of the benchmark run itself (a worker, a check, a process).
pub fn bench_error(message: impl Into<String>) -> Error {
    Error::Storage(StorageError::Other(message.into()))
}

/// Seconds since the Unix epoch: the wall clock the start instant is on.
pub fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps until the wall clock reaches `at` (epoch seconds).
pub fn sleep_until_wall(at: f64) {
    // Bounded: a start instant is at most minutes away.
    for _ in 0..100_000 {
        let left = at - wall_now();
        if left <= 0.0 {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(left.min(0.5)));
    }
}

/// What a served database is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// A storage file (`durus serve --file`).
    File,
    /// A memory storage: this build cannot serve a file yet.
    Memory,
    /// A PostgreSQL database (`durus serve --storage postgresql://...`).
    Postgres,
    /// A server the run did not start; unknown.
    External,
}

impl StorageKind {
    /// The name in result lines.
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::File => "file",
            StorageKind::Memory => "memory",
            StorageKind::Postgres => "postgresql",
            StorageKind::External => "external",
        }
    }
}

/// The storage server of a run: a child process started by the run (the
/// `durus serve` of this binary on a free loopback port), or a server
/// given by address.
pub struct ServerProcess {
    child: Option<Child>,
    address: Address,
    storage: StorageKind,
    vmhwm_kb: Option<u64>,
    readers: Vec<JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `exe serve` on 127.0.0.1, port 0, serving the file `db` with
    /// `fsync`. When this build cannot serve files, serves a memory storage
    /// instead, and says so on stderr and in [`ServerProcess::storage`].
    pub fn start(exe: &Path, db: &Path, fsync: FsyncPolicy) -> Result<ServerProcess> {
        let fsync = crate::tools::fsync_name(fsync);
        let db_arg = db.to_string_lossy().into_owned();
        let file_args = ["--file", db_arg.as_str(), "--fsync", fsync];
        match ServerProcess::spawn(exe, &file_args) {
            Ok(server) => Ok(server),
            Err((message, true)) => {
                eprintln!(
                    "durus bench: the server cannot serve {} ({}); serving a memory storage instead",
                    db.display(),
                    message.trim()
                );
                let mut server = ServerProcess::spawn(exe, &[]).map_err(|(m, _)| bench_error(m))?;
                server.storage = StorageKind::Memory;
                Ok(server)
            }
            Err((message, false)) => Err(bench_error(message)),
        }
    }

    /// Starts `exe serve --storage URL` on 127.0.0.1, port 0: a server of
    /// the PostgreSQL database at `url`.
    pub fn start_postgres(exe: &Path, url: &str) -> Result<ServerProcess> {
        let mut server =
            ServerProcess::spawn(exe, &["--storage", url]).map_err(|(m, _)| bench_error(m))?;
        server.storage = StorageKind::Postgres;
        Ok(server)
    }

    /// A server started elsewhere, at `address`.
    pub fn external(address: &str) -> Result<ServerProcess> {
        Ok(ServerProcess {
            child: None,
            address: Address::parse(address)?,
            storage: StorageKind::External,
            vmhwm_kb: None,
            readers: Vec::new(),
        })
    }

    /// Runs the server; on failure, the message and whether the process
    /// exited by itself before announcing (it refused its arguments).
    fn spawn(exe: &Path, extra: &[&str]) -> std::result::Result<ServerProcess, (String, bool)> {
        let mut child = Command::new(exe)
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| (format!("cannot run {}: {e}", exe.display()), false))?;
        let (tx, rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || forward_stdout(out, tx)));
        }
        let (etx, erx) = mpsc::channel::<String>();
        if let Some(err) = child.stderr.take() {
            readers.push(std::thread::spawn(move || forward_stderr(err, etx)));
        }
        drop(tx);
        let announced = rx.recv_timeout(SERVER_START_TIMEOUT);
        let line = match announced {
            Ok(line) => line,
            Err(_) => {
                // A server that refused its arguments exits by itself soon
                // after closing its output.
                let mut exited = false;
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        exited = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = child.kill();
                let _ = child.wait();
                for r in readers {
                    let _ = r.join();
                }
                let said: Vec<String> = erx.try_iter().collect();
                return Err((
                    format!("the server did not start: {}", said.join(" ")),
                    exited,
                ));
            }
        };
        let address = line
            .trim()
            .strip_prefix("serving on ")
            .and_then(|a| Address::parse(a).ok());
        match address {
            Some(address) => Ok(ServerProcess {
                child: Some(child),
                address,
                storage: StorageKind::File,
                vmhwm_kb: None,
                readers,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err((
                    format!("unexpected first line from the server: {line:?}"),
                    false,
                ))
            }
        }
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The process id of a server this run started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the database is kept in.
    pub fn storage(&self) -> StorageKind {
        self.storage
    }

    /// The server's peak resident set so far (VmHWM, KiB), when this run
    /// started it.
    pub fn sample_vmhwm(&mut self) -> Option<u64> {
        if let Some(v) = self.pid().and_then(|p| proc_status_kb(p, "VmHWM")) {
            self.vmhwm_kb = Some(v);
        }
        self.vmhwm_kb
    }

    /// The last sampled peak resident set (KiB).
    pub fn vmhwm_kb(&self) -> Option<u64> {
        self.vmhwm_kb
    }

    /// Samples the peak RSS, then stops a server this run started with the
    /// `Q` command and waits (bounded) for it to exit; kills it by its pid
    /// when it does not. True when it exited by itself with success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Some(v) = proc_status_kb(child.id(), "VmHWM") {
            self.vmhwm_kb = Some(v);
        }
        let _ = crate::tools::stop(&self.address, Duration::from_secs(5));
        let deadline = Instant::now() + SERVER_STOP_TIMEOUT;
        let mut clean = false;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    clean = status.success();
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        clean
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends the server's first stdout line (its address) and drains the rest.
fn forward_stdout(out: ChildStdout, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) > 0 {
        let _ = tx.send(line);
    }
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
}

/// Passes the server's stderr lines on (prefixed), and to `tx` for the
/// message of a failed start.
fn forward_stderr(err: ChildStderr, tx: mpsc::Sender<String>) {
    for line in BufReader::new(err).lines().take(1_000_000) {
        let Ok(line) = line else { break };
        eprintln!("server: {line}");
        let _ = tx.send(line);
    }
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One worker child's output.
#[derive(Debug, Clone)]
pub struct WorkerOutput {
    /// The worker's `RESULT` line, parsed.
    pub result: serde_json::Value,
}

impl WorkerOutput {
    /// An integer field of the result (0 when missing).
    pub fn int(&self, key: &str) -> u64 {
        self.result.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
    }

    /// A number field of the result (0.0 when missing).
    pub fn float(&self, key: &str) -> f64 {
        self.result.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0)
    }
}

/// Runs `count` worker processes (`exe` with `args_for(i)`), waits for
/// them until `deadline`, and returns their `RESULT` lines in order. A
/// worker still running at the deadline is killed by its pid; a worker
/// without a result line fails the run.
pub fn run_workers(
    exe: &Path,
    count: usize,
    args_for: impl Fn(usize) -> Vec<String>,
    deadline: Instant,
) -> Result<Vec<WorkerOutput>> {
    struct Running {
        child: Child,
        out: Option<JoinHandle<String>>,
        err: Option<JoinHandle<String>>,
    }
    let mut running = Vec::with_capacity(count);
    for i in 0..count {
        let spawned = Command::new(exe)
            .args(args_for(i))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                for r in &mut running {
                    let r: &mut Running = r;
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                }
                return Err(bench_error(format!("cannot start worker {i}: {e}")));
            }
        };
        let out = child
            .stdout
            .take()
            .map(|s| std::thread::spawn(move || read_all(s)));
        let err = child
            .stderr
            .take()
            .map(|s| std::thread::spawn(move || read_all(s)));
        running.push(Running { child, out, err });
    }
    let mut results = Vec::with_capacity(count);
    let mut failure = None;
    for (i, mut r) in running.into_iter().enumerate() {
        let status = loop {
            match r.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    break None;
                }
            }
        };
        let out = r.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let err = r.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let parsed = out
            .lines()
            .filter_map(|l| l.strip_prefix("RESULT "))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .next_back();
        match parsed {
            Some(result) if status.is_some_and(|s| s.success()) => {
                results.push(WorkerOutput { result })
            }
            _ => {
                let tail: String = err
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                failure.get_or_insert_with(|| {
                    bench_error(format!(
                        "worker {i} failed ({}): {}",
                        status.map_or("killed at the deadline".to_string(), |s| s.to_string()),
                        tail.trim()
                    ))
                });
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time of this process and its waited-for children, and of the whole
/// machine, at one moment (from `/proc`).
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    own_s: f64,
    busy_s: f64,
    at: Instant,
}

impl CpuSnapshot {
    /// Now. Missing `/proc` files count as zero.
    pub fn take() -> CpuSnapshot {
        CpuSnapshot {
            own_s: own_cpu_ticks().unwrap_or(0) as f64 / TICKS_PER_SECOND,
            busy_s: machine_busy_ticks().unwrap_or(0) as f64 / TICKS_PER_SECOND,
            at: Instant::now(),
        }
    }

    /// The run's CPU figures since `self`: wall seconds, own CPU seconds
    /// (this process and its children, once waited for), and the CPU
    /// seconds others used with their fraction of wall time x CPUs.
    pub fn since(&self) -> CpuUse {
        let now = CpuSnapshot::take();
        let wall_s = now.at.duration_since(self.at).as_secs_f64();
        let own_cpu_s = (now.own_s - self.own_s).max(0.0);
        let busy = (now.busy_s - self.busy_s).max(0.0);
        let foreign_cpu_s = (busy - own_cpu_s).max(0.0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuUse {
            wall_s,
            own_cpu_s,
            foreign_cpu_s,
            foreign_cpu_frac: if wall_s > 0.0 {
                foreign_cpu_s / (wall_s * cpus)
            } else {
                0.0
            },
        }
    }
}

/// CPU use over a run (see [`CpuSnapshot::since`]).
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub wall_s: f64,
    pub own_cpu_s: f64,
    pub foreign_cpu_s: f64,
    pub foreign_cpu_frac: f64,
}

/// utime + stime + cutime + cstime of this process, in ticks.
fn own_cpu_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14 of the line, i.e. index 11 after "state" (field 3).
    let ticks = fields.get(11..15)?;
    ticks.iter().map(|t| t.parse::<u64>().ok()).sum()
}

/// Non-idle ticks of all CPUs (first line of `/proc/stat`).
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle))
}

/// Removes a database file and its companions (`.pack`, `.prepack`).
pub fn remove_db(path: &Path) {
    for suffix in ["", ".pack", ".prepack"] {
        let mut p: PathBuf = path.to_path_buf();
        if !suffix.is_empty() {
            let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            name.push(suffix);
            p.set_file_name(name);
        }
        let _ = std::fs::remove_file(p);
    }
}
