//! A bank shared by several client processes through a storage server.
//!
//! The coordinator ([`run`]) starts a server on a free loopback port with a
//! temporary file as its storage, opens the accounts, then starts client
//! processes ([`run_client`], the same program with a hidden `--client`
//! role). Each client makes deposits and transfers between random accounts
//! and reports what it did on one line of its standard output. The
//! coordinator waits for them (with a deadline), adds up the balances and
//! checks that the total is the opening total plus every deposit and that
//! no account went below zero.
//!
//! An account's `balance` is `#[merge(sum(min = 0))]` and its `tags` are
//! `#[merge(union)]`, so two clients that change the same account at the
//! same time both commit: the second commit merges instead of failing.
//! Conflicts remain possible, as in Durus, when a transaction *loads* an
//! account that another client changed after this transaction began (a
//! read conflict: its state is already out of date, and merging happens
//! only at commit). The client aborts and retries the same operation, a
//! bounded number of times, and counts these conflicts.
//!
//! A transfer moves at most the balance it sees. Two concurrent transfers
//! out of one account can each see enough money; with a plain
//! `#[merge(sum)]` both would commit and the balance would go below zero.
//! The bound `min = 0` makes the later commit a conflict instead: its
//! retry sees the balance the first one left and moves only what is there.
//! Start with small balances (`--opening 20`) to see it happen often.

use durus_core::server::Address;
use durus_core::server::{Server, ServerConfig};
use durus_core::{Connection, Error, FileStorage, Hub, PRef, Persistent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The argument that starts the client role (not shown in the usage).
pub const CLIENT_ROLE: &str = "--client";

/// Opening balance of every account.
pub const OPENING_BALANCE: i64 = 1_000;

/// How many times a client tries one operation before it gives up.
pub const MAX_ATTEMPTS: u32 = 50;

/// The root object: the accounts, made once by the coordinator and only
/// read by the clients (so reading it never conflicts).
#[derive(Persistent, Serialize, Deserialize, Default)]
#[persistent(class = "bank.Bank")]
pub struct Bank {
    pub accounts: Vec<PRef<Account>>,
}

/// One account. Concurrent changes to `balance` add up as long as the
/// result is not below zero, concurrent additions to `tags` are all kept;
/// `owner` never changes after opening (it has no rule, so two clients
/// changing it would conflict).
#[derive(Persistent, Serialize, Deserialize, Clone, PartialEq, Default, Debug)]
#[persistent(class = "bank.Account")]
pub struct Account {
    pub owner: String,
    #[merge(sum(min = 0))]
    pub balance: i64,
    #[merge(union)]
    pub tags: BTreeSet<String>,
}

/// What the coordinator is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub clients: u32,
    pub ops: u32,
    pub accounts: u32,
    /// Every account's opening balance.
    pub opening: i64,
    /// How long the clients may take in all before they are killed.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clients: 4,
            ops: 200,
            accounts: 5,
            opening: OPENING_BALANCE,
            timeout: Duration::from_secs(120),
        }
    }
}

pub const USAGE: &str =
    "usage: bank [--clients N] [--ops M] [--accounts A] [--opening BALANCE] [--timeout SECONDS]";

impl Options {
    /// Parses the coordinator's arguments (without the program name).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let v = args
                    .next()
                    .ok_or_else(|| format!("{name} needs a number"))?;
                v.parse::<u64>()
                    .map_err(|_| format!("{name}: not a number: {v:?}"))
            };
            match arg.as_str() {
                "--clients" => options.clients = small(value("--clients")?, "--clients", 1, 64)?,
                "--ops" => options.ops = small(value("--ops")?, "--ops", 0, 1_000_000)?,
                "--accounts" => {
                    options.accounts = small(value("--accounts")?, "--accounts", 2, 10_000)?
                }
                "--opening" => {
                    options.opening =
                        i64::from(small(value("--opening")?, "--opening", 0, 1_000_000)?)
                }
                "--timeout" => {
                    options.timeout = Duration::from_secs(value("--timeout")?.clamp(1, 86_400))
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

fn small(v: u64, name: &str, min: u64, max: u64) -> Result<u32, String> {
    if v < min || v > max {
        return Err(format!("{name} must be between {min} and {max}, not {v}"));
    }
    Ok(v as u32)
}

/// What one client did, as it reports it on its last line of output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientReport {
    pub id: u32,
    pub commits: u64,
    pub conflicts: u64,
    pub merges: u64,
    pub deposited: i64,
    pub deposits: u64,
    pub transfers: u64,
}

impl ClientReport {
    fn line(&self) -> String {
        format!(
            "client {} commits {} conflicts {} merges {} deposited {} deposits {} transfers {}",
            self.id,
            self.commits,
            self.conflicts,
            self.merges,
            self.deposited,
            self.deposits,
            self.transfers
        )
    }

    fn parse(line: &str) -> Option<ClientReport> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> Option<&str> {
            let i = words.iter().position(|w| *w == name)?;
            words.get(i + 1).copied()
        };
        Some(ClientReport {
            id: field("client")?.parse().ok()?,
            commits: field("commits")?.parse().ok()?,
            conflicts: field("conflicts")?.parse().ok()?,
            merges: field("merges")?.parse().ok()?,
            deposited: field("deposited")?.parse().ok()?,
            deposits: field("deposits")?.parse().ok()?,
            transfers: field("transfers")?.parse().ok()?,
        })
    }
}

/// The coordinator's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub opening_total: i64,
    pub deposited: i64,
    pub total: i64,
    pub commits: u64,
    pub merges: u64,
    pub conflicts: u64,
    /// The lowest balance at the end.
    pub lowest: i64,
    pub clients: Vec<ClientReport>,
}

impl Report {
    /// The total every balance must add up to.
    pub fn expected_total(&self) -> i64 {
        self.opening_total + self.deposited
    }

    /// True when no money appeared or vanished.
    pub fn is_balanced(&self) -> bool {
        self.total == self.expected_total()
    }

    /// True when no account went below zero.
    pub fn is_never_overdrawn(&self) -> bool {
        self.lowest >= 0
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A small xorshift generator: enough randomness for picking accounts,
/// with no extra crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs the bank: a server, `options.clients` processes of `client_program`
/// (started as `client_program --client ...`), and the check of the total.
/// Writes what it sees to `out`. The report says whether the total is
/// right; errors are failures to run at all.
pub fn run(
    options: &Options,
    client_program: &Path,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let path = temp_path();
    let result = run_on(options, client_program, &path, out);
    let _ = std::fs::remove_file(&path);
    result
}

fn temp_path() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("durus-bank-{}-{nanos}.durus", std::process::id()))
}

fn run_on(
    options: &Options,
    client_program: &Path,
    path: &Path,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let hub = Hub::new(FileStorage::open(path)?);
    let config = ServerConfig {
        address: Address::tcp("127.0.0.1", 0),
        ..ServerConfig::default()
    };
    let server = Server::bind(hub.clone(), config)?;
    let address = server.local_address()?.to_string();
    let handle = server.handle();
    let thread = std::thread::spawn(move || server.serve());
    writeln!(out, "server on {address}, storage {}", path.display())?;

    let result = open_and_run_clients(options, client_program, &address, out);

    // Whatever happened, stop the server and wait for it.
    handle.stop();
    let served = thread.join().map_err(|_| "the server thread panicked")?;
    let closed = hub.close();
    let report = result?;
    served?;
    closed?;
    Ok(report)
}

fn open_and_run_clients(
    options: &Options,
    client_program: &Path,
    address: &str,
    out: &mut dyn Write,
) -> Result<Report, BoxError> {
    let conn = Connection::connect(address)?;
    let bank: PRef<Bank> = conn.root()?;
    {
        let mut b = bank.write()?;
        for i in 0..options.accounts {
            b.accounts.push(PRef::new(Account {
                owner: format!("owner-{i}"),
                balance: options.opening,
                tags: BTreeSet::from(["opened".to_string()]),
            }));
        }
    }
    conn.commit()?;
    let opening_total = total_of(&bank)?;
    writeln!(
        out,
        "{} accounts, opening total {opening_total}; {} clients x {} operations",
        options.accounts, options.clients, options.ops
    )?;
    out.flush()?;

    let clients = run_clients(options, client_program, address)?;

    conn.abort()?; // sees every client's commits
    writeln!(out, "accounts:")?;
    for account in bank.read()?.accounts.iter() {
        let a = account.read()?;
        writeln!(
            out,
            "  {:<10} {:>8}  {} tags",
            a.owner,
            a.balance,
            a.tags.len()
        )?;
    }
    let total = total_of(&bank)?;
    let mut lowest = i64::MAX;
    for account in bank.read()?.accounts.iter() {
        lowest = lowest.min(account.read()?.balance);
    }
    let report = Report {
        opening_total,
        deposited: clients.iter().map(|c| c.deposited).sum(),
        total,
        commits: clients.iter().map(|c| c.commits).sum(),
        merges: clients.iter().map(|c| c.merges).sum(),
        conflicts: clients.iter().map(|c| c.conflicts).sum(),
        lowest,
        clients,
    };
    for c in &report.clients {
        writeln!(
            out,
            "client {}: {} deposits ({}), {} transfers, {} commits, {} objects merged, {} conflicts",
            c.id, c.deposits, c.deposited, c.transfers, c.commits, c.merges, c.conflicts
        )?;
    }
    writeln!(
        out,
        "total {} (expected {} = opening {} + deposits {}): {}",
        report.total,
        report.expected_total(),
        report.opening_total,
        report.deposited,
        if report.is_balanced() { "ok" } else { "WRONG" }
    )?;
    writeln!(
        out,
        "lowest balance {} (never below 0): {}",
        report.lowest,
        if report.is_never_overdrawn() {
            "ok"
        } else {
            "WRONG"
        }
    )?;
    writeln!(
        out,
        "commits {}, objects merged {}, conflicts {}",
        report.commits, report.merges, report.conflicts
    )?;
    Ok(report)
}

fn total_of(bank: &PRef<Bank>) -> Result<i64, BoxError> {
    let mut total = 0i64;
    for account in bank.read()?.accounts.iter() {
        total = total
            .checked_add(account.read()?.balance)
            .ok_or("the total overflows")?;
    }
    Ok(total)
}

/// Starts the clients, waits for all of them until the deadline (then
/// kills the rest), and collects their reports.
fn run_clients(
    options: &Options,
    client_program: &Path,
    address: &str,
) -> Result<Vec<ClientReport>, BoxError> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut children: Vec<(u32, Child)> = Vec::new();
    for id in 0..options.clients {
        let spawned = Command::new(client_program)
            .args([
                CLIENT_ROLE,
                address,
                "--id",
                &id.to_string(),
                "--ops",
                &options.ops.to_string(),
                "--seed",
                &seed.wrapping_add(u64::from(id) * 7919).to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(child) => children.push((id, child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(format!("cannot start {}: {e}", client_program.display()).into());
            }
        }
    }

    // Each client's output is one short line, well under a pipe's buffer,
    // so waiting before reading cannot block the client.
    let deadline = Instant::now() + options.timeout;
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            match children[i].1.try_wait() {
                Ok(Some(status)) => {
                    let (id, mut child) = children.swap_remove(i);
                    let mut text = String::new();
                    if let Some(mut stdout) = child.stdout.take() {
                        stdout.read_to_string(&mut text)?;
                    }
                    match text.lines().rev().find_map(ClientReport::parse) {
                        Some(r) if status.success() => reports.push(r),
                        _ => {
                            failures.push(format!("client {id} failed ({status}): {}", text.trim()))
                        }
                    }
                }
                Ok(None) => i += 1,
                Err(e) => {
                    stop_all(&mut children);
                    return Err(e.into());
                }
            }
        }
        if !children.is_empty() {
            if Instant::now() >= deadline {
                let ids: Vec<u32> = children.iter().map(|(id, _)| *id).collect();
                stop_all(&mut children);
                return Err(format!(
                    "clients {ids:?} did not finish within {:?}; stopped",
                    options.timeout
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    reports.sort_by_key(|r| r.id);
    Ok(reports)
}

/// Kills and reaps the given children.
fn stop_all(children: &mut Vec<(u32, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

/// The client role's arguments: `ADDRESS --id N --ops M --seed S`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub address: String,
    pub id: u32,
    pub ops: u32,
    pub seed: u64,
}

impl ClientOptions {
    /// Parses the arguments that follow [`CLIENT_ROLE`].
    pub fn parse(args: &[String]) -> Result<ClientOptions, String> {
        let address = args.first().ok_or("--client needs an address")?.clone();
        let mut options = ClientOptions {
            address,
            id: 0,
            ops: 0,
            seed: 1,
        };
        let mut rest = args[1..].iter();
        while let Some(arg) = rest.next() {
            let v = rest.next().ok_or_else(|| format!("{arg} needs a value"))?;
            let bad = |_| format!("{arg}: not a number: {v:?}");
            match arg.as_str() {
                "--id" => options.id = v.parse().map_err(bad)?,
                "--ops" => options.ops = v.parse().map_err(bad)?,
                "--seed" => options.seed = v.parse().map_err(bad)?,
                _ => return Err(format!("unknown client argument {arg:?}")),
            }
        }
        Ok(options)
    }
}

/// One operation, chosen before the first attempt so that a retry repeats
/// the same operation.
enum Op {
    Deposit { to: usize, amount: i64 },
    Transfer { from: usize, to: usize, amount: i64 },
}

/// The client role: connects, makes `ops` deposits and transfers, and
/// writes its report as one line to `out`.
pub fn run_client(options: &ClientOptions, out: &mut dyn Write) -> Result<ClientReport, BoxError> {
    let conn = Connection::connect(&options.address)?;
    let bank: PRef<Bank> = conn.root()?;
    let accounts = bank.read()?.accounts.clone();
    if accounts.len() < 2 {
        return Err("the bank has fewer than two accounts".into());
    }
    let n = accounts.len() as u64;
    let me = format!("client-{}", options.id);
    let mut rng = Rng::new(options.seed);
    let mut report = ClientReport {
        id: options.id,
        ..ClientReport::default()
    };
    for _ in 0..options.ops {
        let op = if rng.below(3) == 0 {
            Op::Deposit {
                to: rng.below(n) as usize,
                amount: 1 + rng.below(100) as i64,
            }
        } else {
            let from = rng.below(n) as usize;
            let to = (from + 1 + rng.below(n - 1) as usize) % n as usize;
            Op::Transfer {
                from,
                to,
                amount: 1 + rng.below(50) as i64,
            }
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let applied =
                apply(&op, &accounts, &me).and_then(|moved| conn.commit().map(|()| moved));
            match applied {
                Ok(_) => {
                    report.commits += 1;
                    match op {
                        Op::Deposit { amount, .. } => {
                            report.deposits += 1;
                            report.deposited += amount;
                        }
                        Op::Transfer { .. } => report.transfers += 1,
                    }
                    break;
                }
                Err(e) if e.is_conflict() || matches!(e, Error::NeedsAbort) => {
                    report.conflicts += 1;
                    conn.abort()?;
                    if attempts >= MAX_ATTEMPTS {
                        return Err(format!(
                            "{me}: an operation still conflicted after {attempts} attempts: {e}"
                        )
                        .into());
                    }
                }
                Err(e) => {
                    let _ = conn.abort();
                    return Err(e.into());
                }
            }
        }
    }
    report.merges = conn.merge_count();
    writeln!(out, "{}", report.line())?;
    out.flush()?;
    Ok(report)
}

/// Makes the changes of one operation (not yet committed). A transfer
/// moves at most the balance it sees; returns the amount moved.
fn apply(op: &Op, accounts: &[PRef<Account>], me: &str) -> durus_core::Result<i64> {
    match *op {
        Op::Deposit { to, amount } => {
            let mut a = accounts[to].write()?;
            a.balance += amount;
            a.tags.insert(format!("deposit-by-{me}"));
            Ok(amount)
        }
        Op::Transfer { from, to, amount } => {
            let amount = amount.min(accounts[from].read()?.balance.max(0));
            {
                let mut a = accounts[from].write()?;
                a.balance -= amount;
                a.tags.insert(format!("transfer-out-by-{me}"));
            }
            let mut b = accounts[to].write()?;
            b.balance += amount;
            b.tags.insert(format!("transfer-in-by-{me}"));
            Ok(amount)
        }
    }
}

/// The whole program: the client role when the first argument is
/// [`CLIENT_ROLE`], the coordinator otherwise (starting clients as
/// `current_exe`). Returns the process's exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    if args.first().map(String::as_str) == Some(CLIENT_ROLE) {
        let options = match ClientOptions::parse(&args[1..]) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("bank client: {e}");
                return 2;
            }
        };
        return match run_client(&options, &mut std::io::stdout()) {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("bank client {}: {e}", options.id);
                1
            }
        };
    }
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bank: {e}");
            return 2;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bank: cannot find this program to start clients: {e}");
            return 1;
        }
    };
    match run(&options, &exe, &mut std::io::stdout()) {
        Ok(report) if report.is_balanced() && report.is_never_overdrawn() => 0,
        Ok(report) if report.is_balanced() => {
            eprintln!("bank: an account went below zero ({})", report.lowest);
            1
        }
        Ok(report) => {
            eprintln!(
                "bank: the total is {}, not {}: money appeared or vanished",
                report.total,
                report.expected_total()
            );
            1
        }
        Err(e) => {
            eprintln!("bank: {e}");
            1
        }
    }
}
