//! The `durus` command: argument parsing only; the work is in
//! `durus_core::tools` and `durus_core::server`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use durus_core::net::{Address, UnixSocketOptions, DEFAULT_HOST, DEFAULT_PORT};
use durus_core::server::{ServerConfig, DEFAULT_CLIENT_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
use durus_core::tools::{self, FsyncPolicy, Progress, ServeOptions, Target};
use durus_core::Oid;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "durus", about = "Serve, pack and inspect durus-rs databases")]
struct Cli {
    /// More log lines on stderr (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a storage server (Durus protocol 1).
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
    /// Check a storage file's structure.
    Verify(TargetArgs),
    /// Repair a storage file's torn tail.
    Repair(TargetArgs),
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

#[derive(Args)]
struct TargetArgs {
    /// A storage file (otherwise a server is used).
    #[arg(long, conflicts_with_all = ["host", "port", "address"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

impl TargetArgs {
    fn target(&self) -> Target {
        match &self.file {
            Some(f) => Target::File(f.clone()),
            None => Target::Server(self.server.address()),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Fsync {
    Always,
    Never,
}

#[derive(Args)]
struct ServeArgs {
    /// The storage file; without it, a new temporary database.
    #[arg(long)]
    file: Option<PathBuf>,
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
    #[arg(long, default_value_t = DEFAULT_CLIENT_TIMEOUT.as_secs_f64())]
    timeout: f64,
    /// Most clients connected at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
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
            let timeout = Duration::try_from_secs_f64(a.timeout).unwrap_or(DEFAULT_CLIENT_TIMEOUT);
            let options = ServeOptions {
                file: a.file,
                fsync: match a.fsync {
                    Fsync::Always => FsyncPolicy::Always,
                    Fsync::Never => FsyncPolicy::Never,
                },
                config: ServerConfig {
                    address: a.server.address(),
                    unix: UnixSocketOptions {
                        owner: a.owner,
                        group: a.group,
                        umask: a.umask,
                    },
                    gcbytes: a.gcbytes,
                    client_timeout: timeout,
                    max_connections: a.max_connections,
                },
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
        Command::Pack(t) => tools::pack(&t.target())?,
        Command::Census(t) => {
            let mut storage = tools::open_storage(&t.target(), FsyncPolicy::Always)?;
            let lines = tools::census(storage.as_mut(), &mut Progress::new("objects"))?;
            println!("{:>10} {:>14}  class", "count", "bytes");
            for l in lines {
                println!("{:>10} {:>14}  {}", l.count, l.bytes, l.class);
            }
        }
        Command::Show { oid, target } => {
            let mut storage = tools::open_storage(&target.target(), FsyncPolicy::Always)?;
            println!("{}", tools::show(storage.as_mut(), Oid(oid))?);
        }
        Command::Referrers { oid, target } => {
            let mut storage = tools::open_storage(&target.target(), FsyncPolicy::Always)?;
            let found =
                tools::referrers(storage.as_mut(), Oid(oid), &mut Progress::new("objects"))?;
            for r in found {
                println!("{r}");
            }
        }
        Command::Verify(t) => {
            let Some(path) = t.file else {
                eprintln!("durus: verify works on a storage file: give --file PATH");
                return Ok(ExitCode::FAILURE);
            };
            if !tools::verify(&path, &mut std::io::stdout())? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Repair(t) => {
            let Some(path) = t.file else {
                eprintln!("durus: repair works on a storage file: give --file PATH");
                return Ok(ExitCode::FAILURE);
            };
            tools::repair(&path, &mut std::io::stdout())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
