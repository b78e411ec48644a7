//! The `durus` command: argument parsing only; the work is in
//! `durus_cli::tools`, `durus_cli::bench` and `durus_core::server`.

mod bench_command;

use bench_command::{bench, BenchCommand};
use clap::{Args, Parser, Subcommand, ValueEnum};
use durus_cli::tools::{self, Fsync, FsyncPolicy, ServeOptions, Target};
use durus_core::server::{Address, UnixSocketOptions, DEFAULT_HOST, DEFAULT_PORT};
use durus_core::server::{ServerConfig, DEFAULT_CLIENT_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
use durus_core::Oid;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "durus",
    about = "Serve, pack and inspect durus-rs databases",
    after_help = "census, show, referrers and pack open the file or postgresql:// URL they \
                  are given (a file must exist), or else talk to the server at --host/--port \
                  (default 127.0.0.1:2972) or --address SOCKET. verify and repair work on a \
                  file (verify also on a postgresql:// URL), never through a server."
)]
struct Cli {
    /// More log lines on stderr (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a storage server (Durus protocol 1) until `durus stop`, SIGTERM
    /// or SIGINT (each stops it gracefully: exit 0).
    Serve(ServeArgs),
    /// Stop a running server gracefully.
    Stop(ServerArgs),
    /// Remove objects unreachable from the root.
    Pack(TargetArgs),
    /// Count reachable objects by class (count and bytes).
    Census(TargetArgs),
    /// Show one object as JSON.
    Show {
        /// The object's oid.
        oid: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the objects that refer to an oid.
    Referrers {
        /// The referred-to oid.
        oid: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Check a storage file's structure, or a PostgreSQL database's records
    /// (each decodes, no dangling reference, what is reachable). On a file
    /// a server is writing, it checks up to the last complete transaction.
    Verify(StorageArgs),
    /// Repair a storage file's torn tail (no server may have it open).
    Repair(FileArgs),
    /// Copy every record, oids kept, from one storage into an empty one
    /// (a file or a postgresql:// URL, either way).
    Convert {
        /// The storage to read: a file or a postgresql:// URL.
        #[arg(value_name = "SRC")]
        src: std::ffi::OsString,
        /// The storage to write, new or empty: a file or a postgresql:// URL.
        #[arg(value_name = "DST")]
        dst: std::ffi::OsString,
    },
    /// Run a benchmark workload (as the Python peer's harness does).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args)]
struct ServerArgs {
    /// Server host.
    #[arg(long, default_value = DEFAULT_HOST)]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// A Unix-domain socket path instead of host and port.
    #[arg(long, conflicts_with_all = ["host", "port"])]
    address: Option<PathBuf>,
}

impl ServerArgs {
    fn address(&self) -> Address {
        match &self.address {
            Some(path) => Address::Unix(path.clone()),
            None => Address::tcp(self.host.clone(), self.port),
        }
    }
}

/// A storage file, opened directly (never through a server).
#[derive(Args)]
struct FileArgs {
    /// The storage file.
    #[arg(
        value_name = "FILE",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    path: Option<PathBuf>,
    /// The storage file, as an option.
    #[arg(long)]
    file: Option<PathBuf>,
}

/// A storage file or PostgreSQL database, read directly (never a server).
#[derive(Args)]
struct StorageArgs {
    /// A storage file or a postgresql:// URL.
    #[arg(
        value_name = "STORAGE",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    path: Option<PathBuf>,
    /// A storage file, as an option.
    #[arg(long)]
    file: Option<PathBuf>,
}

impl StorageArgs {
    fn storage(&self) -> Target {
        let name = self
            .path
            .clone()
            .or_else(|| self.file.clone())
            .unwrap_or_default();
        Target::storage(name.as_os_str())
    }
}

/// Where a tool finds its database: a file or a postgresql:// URL given as
/// STORAGE (or --file), otherwise the server at --host/--port (or
/// --address).
#[derive(Args)]
struct TargetArgs {
    /// A storage file or a postgresql:// URL; without it, the server at
    /// --host/--port (or --address) is used. A file that does not exist is
    /// an error.
    #[arg(value_name = "STORAGE", conflicts_with_all = ["file", "host", "port", "address"])]
    path: Option<PathBuf>,
    /// A storage file, as an option.
    #[arg(long, conflicts_with_all = ["host", "port", "address"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

impl TargetArgs {
    /// The storage file given, positional or `--file`.
    fn file(&self) -> Option<PathBuf> {
        self.path.clone().or_else(|| self.file.clone())
    }

    fn target(&self) -> Target {
        match self.file() {
            Some(f) => Target::storage(f.as_os_str()),
            None => Target::Server(self.server.address()),
        }
    }
}

/// The state of a W6 file, a label in its result line.
#[derive(Clone, Copy, ValueEnum)]
enum FileState {
    /// As built.
    Unpacked,
    /// After a pack.
    Packed,
}

impl FileState {
    fn name(self) -> &'static str {
        match self {
            FileState::Unpacked => "unpacked",
            FileState::Packed => "packed",
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    /// The storage file; without it (and without --storage), a new
    /// temporary database.
    #[arg(value_name = "FILE", conflicts_with_all = ["file", "storage"])]
    path: Option<PathBuf>,
    /// The storage file, as an option.
    #[arg(long, conflicts_with = "storage")]
    file: Option<PathBuf>,
    /// The storage: a file, or a PostgreSQL database's postgresql:// URL
    /// (several servers may serve one database).
    #[arg(long, value_name = "STORAGE")]
    storage: Option<std::ffi::OsString>,
    #[command(flatten)]
    server: ServerArgs,
    /// Owner (name or uid) of the Unix-domain socket.
    #[arg(long, requires = "address")]
    owner: Option<String>,
    /// Group (name or gid) of the Unix-domain socket.
    #[arg(long, requires = "address")]
    group: Option<String>,
    /// Permission bits to clear on the Unix-domain socket, in octal (e.g. 077).
    #[arg(long, requires = "address", value_parser = parse_octal)]
    umask: Option<u32>,
    /// fsync every commit before acknowledging it, or never.
    #[arg(long, value_enum, default_value = "always")]
    fsync: Fsync,
    /// Pack in the background after this many bytes committed (0: never).
    #[arg(long, default_value_t = 0)]
    gcbytes: u64,
    /// Seconds a client may take to finish a request or a commit exchange.
    #[arg(long, default_value_t = Seconds(DEFAULT_CLIENT_TIMEOUT))]
    timeout: Seconds,
    /// Most clients connected at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Exit with an error once the PostgreSQL storage has been unreachable
    /// this many seconds (a supervisor then restarts the server); without
    /// it, the server keeps reconnecting.
    #[arg(long, value_name = "SECONDS")]
    storage_outage_limit: Option<Seconds>,
}

/// A duration given in seconds (fractions allowed).
#[derive(Clone, Copy, Debug)]
struct Seconds(Duration);

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Seconds, String> {
        let seconds: f64 = s.parse().map_err(|e| format!("{e}"))?;
        Duration::try_from_secs_f64(seconds)
            .map(Seconds)
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("durus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> durus_core::Result<ExitCode> {
    match command {
        Command::Serve(a) => {
            if let Some(s) = a.storage.as_deref().and_then(|s| s.to_str()) {
                tools::refuse_connection_string(s)?;
            }
            let (file, postgres) = match a.storage.as_deref().map(Target::storage) {
                Some(Target::Postgres(url)) => (None, Some(url)),
                Some(Target::File(path)) => (Some(path), None),
                _ => (a.path.or(a.file), None),
            };
            let options = ServeOptions {
                file,
                postgres,
                fsync: a.fsync.into(),
                config: ServerConfig {
                    address: a.server.address(),
                    unix: UnixSocketOptions {
                        owner: a.owner,
                        group: a.group,
                        umask: a.umask,
                    },
                    gcbytes: a.gcbytes,
                    client_timeout: a.timeout.0,
                    max_connections: a.max_connections,
                    storage_outage_limit: a.storage_outage_limit.map(|s| s.0),
                },
                stop_on_signals: true,
            };
            tools::serve(options, &mut std::io::stdout())?;
        }
        Command::Stop(a) => {
            let address = a.address();
            if !tools::stop(&address, Duration::from_secs(10))? {
                eprintln!("durus: no server is running on {address}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Pack(t) => tools::pack(&t.target(), &mut std::io::stdout())?,
        Command::Census(t) => {
            let mut storage = tools::open_existing(&t.target(), FsyncPolicy::Always)?;
            let lines = tools::census(storage.as_mut(), &tools::progress("objects"))?;
            println!("{:>10} {:>14}  class", "count", "bytes");
            for l in lines {
                println!("{:>10} {:>14}  {}", l.count, l.bytes, l.class);
            }
        }
        Command::Show { oid, target } => {
            let mut storage = tools::open_existing(&target.target(), FsyncPolicy::Always)?;
            println!("{}", tools::show(storage.as_mut(), Oid(oid))?);
        }
        Command::Referrers { oid, target } => {
            let mut storage = tools::open_existing(&target.target(), FsyncPolicy::Always)?;
            let found = tools::referrers(storage.as_mut(), Oid(oid), &tools::progress("objects"))?;
            for r in found {
                println!("{r}");
            }
        }
        Command::Bench(b) => return bench(b),
        Command::Verify(t) => {
            let sound = match t.storage() {
                Target::File(path) => tools::verify(&path, &mut std::io::stdout())?,
                Target::Postgres(url) => tools::verify_postgres(&url, &mut std::io::stdout())?,
                Target::Server(_) => unreachable_target()?,
            };
            if !sound {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Convert { src, dst } => {
            tools::convert(
                &Target::storage(&src),
                &Target::storage(&dst),
                &mut std::io::stdout(),
            )?;
        }
        Command::Repair(t) => {
            let path = t.path.or(t.file).unwrap_or_default();
            if let Target::Postgres(_) = Target::storage(path.as_os_str()) {
                eprintln!("durus: repair works on a storage file, not a PostgreSQL database");
                return Ok(ExitCode::FAILURE);
            }
            tools::repair(&path, &mut std::io::stdout())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `StorageArgs` never names a server; an error rather than a panic all the same.
fn unreachable_target() -> durus_core::Result<bool> {
    Err(durus_core::Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "give a storage file or a postgresql:// URL",
    )))
}
