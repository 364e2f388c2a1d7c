//! `shardcast-loadtest`: load scenarios against a server speaking
//! shardcast's PROTOCOL v1, with correctness checks while loading.
//!
//! Every run is bounded in connections and time and targets loopback only.

mod common;
mod fanout;
mod idle;
mod procstat;
mod wsclient;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generator for shardcast.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Worker threads of the generator (default: cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Rooms x members with publishers; throughput, latency, lossless check.
    Fanout(fanout::FanoutArgs),
    /// Hold N joined connections; server RSS per connection.
    Idle(idle::IdleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shardcast-loadtest: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.scenario {
            Scenario::Fanout(args) => {
                let common = args.common.clone();
                let (result, lossless) = fanout::run(args).await?;
                common::write_out(&common, &result)?;
                Ok::<bool, String>(lossless)
            }
            Scenario::Idle(args) => {
                let common = args.common.clone();
                let result = idle::run(args).await?;
                common::write_out(&common, &result)?;
                Ok(true)
            }
        }
    });
    // Do not wait for connection tasks still parked on sockets.
    runtime.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("shardcast-loadtest: the run was not lossless (see checks above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("shardcast-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}
