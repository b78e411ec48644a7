//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod conformance;
pub mod faults;
#[cfg(feature = "postgres")]
pub mod pg;

/// The Python interpreter of a virtual environment with `durus==4.3`.
///
/// `DURUS_PYTHON` names one; otherwise `.venv` at the workspace root is
/// used, and made (with `pip install durus==4.3`) if it is missing. A file
/// lock keeps parallel test processes from making it twice.
pub fn durus_python() -> PathBuf {
    if let Some(p) = std::env::var_os("DURUS_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let lock = std::fs::File::create(root.join("target/.venv.lock"))
        .or_else(|_| std::fs::File::create(std::env::temp_dir().join("durus-rs-venv.lock")))
        .expect("lock file");
    lock.lock().expect("lock the venv");
    let ready = Command::new(&python)
        .args(["-c", "import durus"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv");
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "durus==4.3"])
            .status()
            .expect("run pip");
        assert!(pip.success(), "pip install durus==4.3 failed");
    }
    python
}

/// Runs a Python script with the durus venv; panics with its output on failure.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(durus_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fresh scratch directory under the target directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "durus-rs-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub mod server;

/// A record of `oid` holding `data` and referring to `refs`.
pub fn rec(oid: durus_core::Oid, data: &[u8], refs: &[durus_core::Oid]) -> Vec<u8> {
    durus_core::internals::record::pack(oid, data, refs).expect("pack")
}

/// Stores `records` in one transaction of `storage` and waits until it is durable.
pub fn commit(storage: &mut dyn durus_core::Storage, records: Vec<(durus_core::Oid, Vec<u8>)>) {
    storage.begin();
    for (oid, r) in records {
        storage.store(oid, r).expect("store");
    }
    storage
        .end(&mut durus_core::storage::NoConflicts)
        .expect("end")
        .wait()
        .expect("durable");
}
