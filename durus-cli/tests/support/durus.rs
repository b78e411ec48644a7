//! The `durus` binary in tests: `durus serve` as a child process bound to
//! loopback on a free port, and `durus bench` runs.

use durus_core::server::Address;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `durus` binary of this crate.
pub const DURUS: &str = env!("CARGO_BIN_EXE_durus");

/// The `durus serve` binary as a child process; stopped with `Q`, or
/// killed by its pid if it does not exit in time.
pub struct ChildServer {
    pub child: Child,
    pub address: String,
    pub port: u16,
}

impl ChildServer {
    /// Runs `durus serve --port 0` plus `args`, and waits for its address.
    pub fn start(args: &[&str]) -> ChildServer {
        let mut child = Command::new(DURUS)
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start durus serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("durus serve did not announce its address");
            }
        };
        let address = line
            .trim()
            .strip_prefix("serving on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let port = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        ChildServer {
            child,
            address,
            port,
        }
    }

    /// Sends `Q` and waits (bounded) for the process to exit; kills it by
    /// pid otherwise. Returns whether it exited by itself with success.
    pub fn stop(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.success();
        }
        let address = Address::parse(&self.address).expect("address");
        let _ = durus_cli::tools::stop(&address, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one `durus bench ARGS` run printed; the run must have succeeded.
pub struct BenchRun {
    /// Its `RESULT` lines, parsed.
    pub results: Vec<serde_json::Value>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `durus bench ARGS` and checks that it succeeded.
pub fn durus_bench(args: &[&str]) -> BenchRun {
    let out = Command::new(DURUS)
        .arg("bench")
        .args(args)
        .output()
        .expect("run durus bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "durus bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    let results = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| serde_json::from_str(l).expect("RESULT is JSON"))
        .collect();
    BenchRun {
        results,
        stdout,
        stderr,
    }
}
