//! `shardcast-loadtest`: load scenarios against a server speaking
//! shardcast's PROTOCOL v1, with correctness checks while loading.
//!
//! Every run is bounded in connections and time and targets loopback only.

mod charts;
mod chat;
mod churn;
mod common;
mod connect;
mod fanout;
mod idle;
mod procstat;
mod progress;
mod pusher;
mod report;
mod slow;
mod workers;
mod wsclient;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Load generator for shardcast.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Worker threads of the generator, each owning its connections
    /// (default: cores).
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
    /// Fast and stalled members in one room: the fast ones stay lossless,
    /// the stalled ones get 4000 or gap frames.
    SlowConsumer(slow::SlowArgs),
    /// Ramp to N connections at a rate; handshake latency and refusals.
    Connect(connect::ConnectArgs),
    /// Many small rooms, a mix of publish/send/members/rejoin at a rate.
    Chat(chat::ChatArgs),
    /// Clients hopping over a pool of rooms (join, publish, leave) and
    /// reconnecting: room and connection churn, lossless check.
    Churn(churn::ChurnArgs),
    /// Markdown tables and SVG charts from result files written by `--out`.
    Report(report::ReportArgs),
}

/// Why a run that completed failed its checks (exit status 1).
const NOT_LOSSLESS: &str = "the run was not lossless (see checks above)";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::Report(args) = &cli.scenario {
        return match report::run(args) {
            Ok(path) => {
                println!("report written to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shardcast-loadtest report: {e}");
                ExitCode::from(2)
            }
        };
    }
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Err(e) = workers::start(threads) {
        eprintln!("shardcast-loadtest: {e}");
        return ExitCode::from(2);
    }
    // The run's own tasks (phases, timers, progress); connections run on
    // the workers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
                Ok::<Option<&str>, String>((!lossless).then_some(NOT_LOSSLESS))
            }
            Scenario::Idle(args) => {
                let common = args.common.clone();
                let result = idle::run(args).await?;
                common::write_out(&common, &result)?;
                Ok(None)
            }
            Scenario::Chat(args) => {
                let common = args.common.clone();
                let (result, lossless) = chat::run(args).await?;
                common::write_out(&common, &result)?;
                Ok((!lossless).then_some(NOT_LOSSLESS))
            }
            Scenario::Churn(args) => {
                let common = args.common.clone();
                let (result, lossless) = churn::run(args).await?;
                common::write_out(&common, &result)?;
                Ok((!lossless).then_some(NOT_LOSSLESS))
            }
            Scenario::Connect(args) => {
                let common = args.common.clone();
                let (result, all_opened) = connect::run(args).await?;
                common::write_out(&common, &result)?;
                Ok((!all_opened).then_some("some connections failed (see counts above)"))
            }
            Scenario::SlowConsumer(args) => {
                let common = args.common.clone();
                let (result, lossless) = slow::run(args).await?;
                common::write_out(&common, &result)?;
                Ok((!lossless).then_some("the fast group was not lossless (see checks above)"))
            }
            Scenario::Report(_) => Err("report runs without a runtime".to_string()),
        }
    });
    // Do not wait for connection tasks still parked on sockets.
    runtime.shutdown_background();
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(failure)) => {
            eprintln!("shardcast-loadtest: {failure}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("shardcast-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}
