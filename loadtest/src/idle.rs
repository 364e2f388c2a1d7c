//! `idle`: open N connections, each joined to a room, hold them, and report
//! the server's RSS per connection (with `--server-pid`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::common::{self, Common, MAX_CONNECTIONS};
use crate::procstat;
use crate::workers;
use crate::wsclient::{Frame, WsConn, field, is_type, json_u64};

/// `idle` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct IdleArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// Members per room (connections / room_size rooms).
    #[arg(long, default_value_t = 10)]
    pub(crate) room_size: usize,
}

/// Run the scenario.
pub(crate) async fn run(args: IdleArgs) -> Result<Value, String> {
    let (target, sources) = args.common.resolve()?;
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be 1..={MAX_CONNECTIONS}"));
    }
    if args.room_size == 0 {
        return Err("--room-size must be at least 1".into());
    }
    let pid = args.common.server_pid.map(|p| p.to_string());
    let before = pid.as_deref().and_then(procstat::sample);
    println!(
        "idle: {} connections, {} per room",
        args.connections, args.room_size
    );
    let gate = Arc::new(Semaphore::new(args.common.connect_concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let prefix = args.common.user_prefix.clone();
    let started = std::time::Instant::now();
    let mut opens = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let target = target.for_user(&format!("{prefix}-i{i}"));
        let source = sources[i % sources.len()];
        let room = format!("{prefix}-idle-{}", i / args.room_size);
        let gate = gate.clone();
        let mut stop = stop_rx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        workers::spawn(i, async move {
            let permit = gate.acquire_owned().await;
            let joined = async {
                let mut conn = WsConn::connect(&target, Some(source), i as u32)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.queue_text(format!(r#"{{"type":"join","room":"{room}","id":1}}"#).as_bytes());
                conn.flush().await.map_err(|e| e.to_string())?;
                let mut acked = None;
                while acked.is_none() {
                    conn.read_frames(|f| {
                        if let Frame::Text(t) = f {
                            if is_type(t, b"ack") && json_u64(t, &field::ID) == Some(1) {
                                acked = Some(Ok(()));
                            } else if is_type(t, b"error") {
                                acked = Some(Err(String::from_utf8_lossy(t).to_string()));
                            }
                        }
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                }
                acked.unwrap_or(Ok(())).map(|_| conn)
            }
            .await;
            drop(permit);
            match joined {
                Ok(mut conn) => {
                    let _ = ready_tx.send(Ok(()));
                    // Hold: answer pings until told to stop.
                    loop {
                        tokio::select! {
                            r = conn.read_frames(|_| {}) => if r.is_err() || conn.flush().await.is_err() { break },
                            _ = stop.changed() => break,
                        }
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        opens.push(ready_rx);
    }
    let mut failures = 0usize;
    let mut first_error = None;
    for r in opens {
        let error = match r.await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => "connection task ended before it was ready".to_string(),
        };
        failures += 1;
        first_error.get_or_insert(error);
    }
    let open = args.connections - failures;
    let setup_secs = started.elapsed().as_secs_f64();
    println!("  {open} connections open ({failures} failed) in {setup_secs:.1} s");
    // Let the server settle (allocator, joined events), then sample.
    tokio::time::sleep(Duration::from_secs(args.common.warmup.max(1))).await;
    let after = pid.as_deref().and_then(procstat::sample);
    let fds = pid.as_deref().and_then(procstat::open_fds);
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let held = pid.as_deref().and_then(procstat::sample);
    let _ = stop_tx.send(true);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if open > 0 => {
            Some((a.rss_kib.saturating_sub(b.rss_kib)) as f64 / open as f64)
        }
        _ => None,
    };
    println!("results");
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "  server RSS         {} KiB -> {} KiB",
            b.rss_kib, a.rss_kib
        );
    }
    if let Some(p) = per_conn {
        println!("  server RSS per connection  {p:.2} KiB");
    }
    if let Some(h) = held {
        println!(
            "  server RSS after holding {} s  {} KiB",
            args.common.duration, h.rss_kib
        );
    }
    if let Some(f) = fds {
        println!("  server open fds    {f}");
    }
    if let Some(e) = &first_error {
        println!("  first failure: {e}");
    }
    let parameters = json!({"connections": args.connections, "room_size": args.room_size, "duration": args.common.duration});
    let mut result = common::environment(&args.common, "idle", parameters);
    result["results"] = json!({
        "open": open,
        "failed": failures,
        "setup_seconds": setup_secs,
        "server_rss_kib_before": before.map(|s| s.rss_kib),
        "server_rss_kib_after": after.map(|s| s.rss_kib),
        "server_rss_kib_held": held.map(|s| s.rss_kib),
        "server_rss_kib_per_connection": per_conn,
        "server_open_fds": fds,
    });
    if failures > 0 {
        return Err(format!(
            "{failures} of {} connections failed: {}",
            args.connections,
            first_error.unwrap_or_default()
        ));
    }
    Ok(result)
}
