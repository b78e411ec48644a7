//! The bank example as a user runs it: the example binary starts a server,
//! three client processes (itself again, in the client role) and checks
//! the total; this test reads its output and exit status.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/debug/examples/bank`, next to `target/debug/deps/` where this
/// test runs. `cargo test -p durus-examples` builds the examples before the
/// tests; a `cargo test --test bank` alone may not, hence the message.
fn bank_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("bank{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p durus-examples` (or `cargo build --example bank`) first",
        path.display()
    );
    path
}

#[test]
fn bank_clients_keep_the_total_exact() {
    let mut child = Command::new(bank_binary())
        // Small balances, so that transfers often empty an account and
        // concurrent ones race for what is left.
        .args([
            "--clients",
            "3",
            "--ops",
            "40",
            "--opening",
            "20",
            "--timeout",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the bank example");
    // Its output is a few hundred bytes: waiting before reading is safe.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the bank example did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}\n{out}\n{err}");

    // "total T (expected E = opening O + deposits D): ok"
    let line = out
        .lines()
        .find(|l| l.starts_with("total "))
        .unwrap_or_else(|| panic!("no total line:\n{out}"));
    let numbers: Vec<i64> = line
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .filter_map(|w| w.parse().ok())
        .collect();
    let [total, expected, opening, deposits] = numbers[..] else {
        panic!("unexpected total line: {line}");
    };
    assert_eq!(opening, 5 * 20, "{out}");
    assert_eq!(expected, opening + deposits, "{out}");
    assert_eq!(total, expected, "{out}");
    assert!(line.ends_with(": ok"), "{line}");
    let lowest = out
        .lines()
        .find(|l| l.starts_with("lowest balance "))
        .unwrap_or_else(|| panic!("no lowest balance line:\n{out}"));
    assert!(lowest.ends_with("(never below 0): ok"), "{lowest}");

    // The clients' own lines add up to the same deposits and 120 commits.
    let client_deposits: i64 = out
        .lines()
        .filter(|l| l.starts_with("client "))
        .map(|l| {
            let open = l.find('(').expect("deposits in parentheses");
            let close = l.find(')').expect("deposits in parentheses");
            l[open + 1..close].parse::<i64>().expect("a number")
        })
        .sum();
    assert_eq!(client_deposits, deposits, "{out}");
    assert!(out.contains("commits 120, objects merged "), "{out}");
}

#[test]
fn bank_rejects_bad_arguments() {
    let out = Command::new(bank_binary())
        .args(["--clients", "zero"])
        .output()
        .expect("run the bank example");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--clients: not a number"), "{err}");
}

#[test]
fn bank_options_parse() {
    use durus_examples::bank::Options;
    let args: Vec<String> = ["--clients", "2", "--ops", "7", "--opening", "15"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = Options::parse(&args).unwrap();
    assert_eq!((o.clients, o.ops, o.accounts, o.opening), (2, 7, 5, 15));
    assert!(Options::parse(&["--clients".to_string(), "0".to_string()]).is_err());
}
