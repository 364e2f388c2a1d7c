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
    let broker = match Broker::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shardcast: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(addr = %broker.local_addr(), shards, "shardcast listening");
    if let Err(e) = wait_for_signal() {
        eprintln!("shardcast: cannot wait for signals: {e}");
    }
    tracing::info!("draining");
    if broker.shutdown() {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!("drain timeout passed; exiting anyway");
    }
    ExitCode::SUCCESS
}

/// Block until SIGTERM or SIGINT.
fn wait_for_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        Ok(())
    })
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
