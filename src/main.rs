//! The `shardcast` command: `serve` and `config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardcast::{Broker, Config, Overrides};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A sharded, bounded WebSocket room broker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        #[command(flatten)]
        common: Common,
    },
    /// Print the effective configuration as TOML.
    Config {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args)]
struct Common {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Number of shards; 0 = one per core (overrides server.shards).
    #[arg(long)]
    shards: Option<usize>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Common {
    fn load(&self) -> Result<Config, shardcast::ConfigError> {
        let overrides = Overrides {
            listen: self.listen.clone(),
            shards: self.shards,
        };
        Config::load(self.config.as_deref(), &overrides)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { common } => match common.load() {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardcast: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { common } => {
            init_logging();
            let mut config = match common.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shardcast: {e}");
                    return ExitCode::from(2);
                }
            };
            let fd_limit = raise_fd_limit();
            if let Some((configured, clamped)) = config.clamp_to_fd_limit(fd_limit) {
                tracing::warn!(
                    configured,
                    clamped,
                    fd_limit,
                    "limits.max_connections lowered to fit the open-file limit"
                );
            }
            serve(config)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let shards = config.server.shards;
    // Signal handlers first, so a SIGTERM during startup still drains.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shardcast: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let broker = match Broker::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shardcast: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(addr = %broker.local_addr(), shards, "shardcast listening");
    signals.wait();
    tracing::info!("draining");
    if broker.shutdown() {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!("drain timeout passed; remaining connections were dropped");
    }
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT, registered on a small runtime of their own.
struct Signals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        Ok(Signals { runtime, term, int })
    }

    /// Block until SIGTERM or SIGINT.
    fn wait(mut self) {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        });
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Raise the soft open-file limit to the hard limit; return the soft limit.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}
