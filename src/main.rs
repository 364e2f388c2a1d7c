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
        /// Log format (filter with RUST_LOG, e.g. `RUST_LOG=shardcast=debug`).
        #[arg(long, value_enum, default_value = "pretty")]
        log_format: LogFormat,
    },
    /// Print the effective configuration as TOML.
    Config {
        #[command(flatten)]
        common: Common,
    },
    /// Print an HS256 token, for development and load tests.
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Environment variable holding the HMAC secret (kept out of the
    /// command line and shell history).
    #[arg(long, default_value = "SHARDCAST_AUTH__SECRET")]
    secret_env: String,
    /// User id (`sub`).
    #[arg(long)]
    sub: String,
    /// Display name (`name`).
    #[arg(long)]
    name: Option<String>,
    /// Private-room patterns, comma separated (`team-*,lobby`).
    #[arg(long, value_delimiter = ',')]
    rooms: Vec<String>,
    /// Rights, comma separated (create,publish,send,broadcast,presence,admin,connect);
    /// absent: the server's auth.default_perms.
    #[arg(long, value_delimiter = ',')]
    perms: Option<Vec<String>>,
    /// Lifetime: 90s, 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Issuer (`iss`).
    #[arg(long)]
    issuer: Option<String>,
    /// Audience (`aud`).
    #[arg(long)]
    audience: Option<String>,
}

/// Longest `--ttl` a minted token may have.
const MAX_TOKEN_TTL_SECS: u64 = 365 * 24 * 3600;

fn parse_ttl(text: &str) -> Option<u64> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())?
            .max(1)
            .min(text.len()),
    );
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (1..=MAX_TOKEN_TTL_SECS).contains(&secs).then_some(secs)
}

fn mint(args: &TokenArgs) -> Result<String, String> {
    let secret = std::env::var(&args.secret_env)
        .map_err(|_| format!("environment variable {} is not set", args.secret_env))?;
    if secret.len() < 32 {
        return Err(format!(
            "the secret in {} must be at least 32 bytes",
            args.secret_env
        ));
    }
    if !shardcast::protocol::names::is_valid_name(&args.sub) || args.sub == shardcast::SYSTEM_USER {
        return Err("--sub must be 1-128 bytes of [A-Za-z0-9_.:@-], not `system`".into());
    }
    let ttl = parse_ttl(&args.ttl).ok_or_else(|| {
        format!(
            "--ttl {:?}: use a number with s, m, h or d, at most 365d",
            args.ttl
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = serde_json::json!({ "sub": args.sub, "iat": now, "exp": now + ttl });
    if let Some(name) = &args.name {
        claims["name"] = name.clone().into();
    }
    if !args.rooms.is_empty() {
        claims["rooms"] = args.rooms.clone().into();
    }
    if let Some(perms) = &args.perms {
        if let Some(bad) = perms
            .iter()
            .find(|p| shardcast::perms::Perm::parse(p).is_none())
        {
            return Err(format!("unknown right {bad:?} in --perms"));
        }
        claims["perms"] = perms.clone().into();
    }
    if let Some(iss) = &args.issuer {
        claims["iss"] = iss.clone().into();
    }
    if let Some(aud) = &args.audience {
        claims["aud"] = aud.clone().into();
    }
    shardcast::auth::mint_hs256(secret.as_bytes(), &claims).map_err(|e| e.to_string())
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
    /// Cluster mode: Redis URL of the backplane, e.g. redis://127.0.0.1:6379
    /// (overrides cluster.redis_url).
    #[arg(long = "redis", value_name = "URL")]
    redis: Option<String>,
}

impl Common {
    fn load(&self) -> Result<Config, shardcast::ConfigError> {
        let overrides = Overrides {
            listen: self.listen.clone(),
            shards: self.shards,
            redis_url: self.redis.clone(),
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
        Command::Token(args) => match mint(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardcast token: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { common, log_format } => {
            init_logging(log_format);
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
    let node = config.server.node_id.clone();
    let redis = config
        .cluster
        .enabled()
        .then(|| config.cluster.redis_url_redacted());
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
        Err(
            e @ (shardcast::StartError::Auth(_)
            | shardcast::StartError::Config(_)
            | shardcast::StartError::Schema(_)),
        ) => {
            eprintln!("shardcast: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("shardcast: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = broker.local_addr();
    match redis {
        Some(redis) => {
            tracing::info!(%addr, shards, %node, mode = %"cluster", %redis, "shardcast listening");
        }
        None => tracing::info!(%addr, shards, %node, mode = %"single-node", "shardcast listening"),
    }
    signals.wait(|| {
        if broker.is_tls() {
            match broker.reload_tls() {
                Ok(()) => tracing::info!(reason = "SIGHUP", "TLS certificate reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    reason = "SIGHUP",
                    "TLS certificate not reloaded; the one in use stays"
                ),
            }
        } else {
            tracing::info!("SIGHUP: no TLS certificate to reload");
        }
    });
    tracing::info!("draining");
    if broker.shutdown() {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!("drain timeout passed; remaining connections were dropped");
    }
    ExitCode::SUCCESS
}

/// SIGTERM, SIGINT and SIGHUP, registered on a small runtime of their own.
struct Signals {
    runtime: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int, hup) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })?;
        Ok(Signals {
            runtime,
            term,
            int,
            hup,
        })
    }

    /// Block until SIGTERM or SIGINT; run `on_hup` at each SIGHUP.
    fn wait(mut self, on_hup: impl Fn()) {
        self.runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = self.term.recv() => return,
                    _ = self.int.recv() => return,
                    _ = self.hup.recv() => on_hup(),
                }
            }
        });
    }
}

/// How log lines look.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logs to stderr, filtered by RUST_LOG (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
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
