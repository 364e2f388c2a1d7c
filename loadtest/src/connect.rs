//! `connect`: ramp to N connections at a fixed rate (bounded concurrency),
//! measure the handshake (TCP connect until the `welcome` frame), count
//! refusals by HTTP status and other failures by kind, hold, then close.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::common::{self, Common, MAX_CONNECTIONS, Window};
use crate::fanout;
use crate::progress::{self, Counters};
use crate::workers;
use crate::wsclient::{ClientError, Frame, WsConn, is_type};

/// Longest handshake before it counts as a `timeout` failure.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Highest connection rate.
const MAX_RATE: f64 = 1_000_000.0;

/// `connect` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ConnectArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: usize,
    /// New connections per second during the ramp (at most
    /// --connect-concurrency handshakes in flight).
    #[arg(long, default_value_t = 500.0)]
    pub(crate) rate: f64,
}

/// How one connection attempt ended.
enum Attempt {
    /// Welcome received after this many microseconds.
    Open(u64),
    /// Refused with this HTTP status.
    Refused(u16),
    /// Failed otherwise (kind).
    Failed(String),
}

/// Run the scenario; returns the JSON result and whether every connection
/// opened.
pub(crate) async fn run(args: ConnectArgs) -> Result<(Value, bool), String> {
    let (target, sources) = args.common.resolve()?;
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be 1..={MAX_CONNECTIONS}"));
    }
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(format!(
            "--rate must be connections per second, 0 < rate <= {MAX_RATE}"
        ));
    }
    println!(
        "connect: {} connections at {}/s, at most {} handshakes at once, hold {} s",
        args.connections, args.rate, args.common.connect_concurrency, args.common.duration
    );
    let gate = Arc::new(Semaphore::new(args.common.connect_concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let open_now = Arc::new(AtomicU64::new(0));
    let prefix = args.common.user_prefix.clone();
    let window = Window::start(&args.common);
    let ticker = progress::spawn(counters.clone(), ["opened/s", "failed/s"]);
    let start = tokio::time::Instant::now();
    let mut attempts = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let target = target.for_user(&format!("{prefix}-k{i}"));
        let source = sources[i % sources.len()];
        let gate = gate.clone();
        let mut stop = stop_rx.clone();
        let open_now = open_now.clone();
        let counters = counters.clone();
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        let (done_tx, done_rx) = oneshot::channel::<Attempt>();
        workers::spawn(i, async move {
            tokio::time::sleep_until(due).await;
            let permit = gate.acquire_owned().await;
            let began = Instant::now();
            let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&target, source, i))
                .await
                .unwrap_or_else(|_| Err(Attempt::Failed("timeout".into())));
            drop(permit);
            let mut conn = match opened {
                Ok(conn) => conn,
                Err(failure) => {
                    counters.published(1);
                    let _ = done_tx.send(failure);
                    return;
                }
            };
            let micros = began.elapsed().as_micros() as u64;
            open_now.fetch_add(1, Ordering::Relaxed);
            counters.delivered(1);
            let _ = done_tx.send(Attempt::Open(micros));
            // Hold: answer pings until told to stop.
            loop {
                tokio::select! {
                    r = conn.read_frames(|_| {}) => if r.is_err() || conn.flush().await.is_err() { break },
                    _ = stop.changed() => break,
                }
            }
            open_now.fetch_sub(1, Ordering::Relaxed);
        });
        attempts.push(done_rx);
    }
    let mut latency = fanout::latency_histogram();
    let mut opened = 0u64;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for a in attempts {
        match a.await {
            Ok(Attempt::Open(us)) => {
                opened += 1;
                let _ = latency.record(us.max(1));
            }
            Ok(Attempt::Refused(status)) => *by_status.entry(status.to_string()).or_default() += 1,
            Ok(Attempt::Failed(kind)) => *by_kind.entry(kind).or_default() += 1,
            Err(_) => *by_kind.entry("task ended".into()).or_default() += 1,
        }
    }
    let ramp_secs = start.elapsed().as_secs_f64();
    let failed = args.connections as u64 - opened;
    println!(
        "  ramp done in {ramp_secs:.2} s: {opened} open, {failed} failed; holding {} s",
        args.common.duration
    );
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let held = open_now.load(Ordering::Relaxed);
    let fds = args
        .common
        .server_pid
        .and_then(|p| crate::procstat::open_fds(&p.to_string()));
    let figures = window.finish();
    let _ = stop_tx.send(true);
    ticker.abort();

    println!("results");
    println!(
        "  opened             {opened} of {} ({:.0}/s over the ramp)",
        args.connections,
        opened as f64 / ramp_secs.max(1e-9)
    );
    common::print_latency("handshake ms", &latency);
    println!("  failed             {failed}");
    for (status, n) in &by_status {
        println!("    HTTP {status:<12} {n}");
    }
    for (kind, n) in &by_kind {
        println!("    {kind:<17} {n}");
    }
    println!("  still open after holding  {held}");
    if let Some(f) = fds {
        println!("  server open fds    {f}");
    }
    figures.print();

    let parameters = json!({
        "connections": args.connections, "rate": args.rate,
        "connect_concurrency": args.common.connect_concurrency,
        "duration": args.common.duration,
    });
    let mut result = common::environment(&args.common, "connect", parameters);
    result["results"] = json!({
        "attempted": args.connections,
        "opened": opened,
        "failed": failed,
        "failures_by_status": by_status,
        "failures_by_kind": by_kind,
        "ramp_seconds": ramp_secs,
        "connections_per_sec": opened as f64 / ramp_secs.max(1e-9),
        "handshake_ms": common::latency_json(&latency),
        "held": held,
        "server_open_fds": fds,
        "window": figures.to_json(),
    });
    Ok((result, failed == 0))
}

/// Connect and read until the `welcome` frame.
async fn handshake(
    target: &crate::wsclient::Target,
    source: std::net::IpAddr,
    i: usize,
) -> Result<WsConn, Attempt> {
    let mut conn = WsConn::connect(target, Some(source), i as u32)
        .await
        .map_err(classify)?;
    let mut welcomed = false;
    while !welcomed {
        conn.read_frames(|f| {
            if let Frame::Text(t) = f {
                welcomed |= is_type(t, b"welcome");
            }
        })
        .await
        .map_err(classify)?;
    }
    Ok(conn)
}

fn classify(e: ClientError) -> Attempt {
    match e {
        ClientError::Refused { status, .. } => Attempt::Refused(status),
        ClientError::Io(e) => Attempt::Failed(format!("io: {:?}", e.kind())),
        ClientError::Protocol(what) => Attempt::Failed(format!("protocol: {what}")),
        ClientError::Closed(code) => Attempt::Failed(match code {
            Some(c) => format!("closed {c}"),
            None => "closed".into(),
        }),
    }
}
