//! `churn`: room and connection churn. Clients hop over a pool of rooms at a
//! fixed total rate (open loop): each hop joins a room (auto-creating it if
//! it expired), publishes one message, waits for its own copy, and leaves.
//! Every `--reconnect-every` hops a client closes its connection and opens a
//! new one, so connection setup and teardown churn too.
//!
//! Lossless means: every join, publish and leave acknowledged, every
//! acknowledged publish delivered back to its publisher (it is a member when
//! it publishes; a copy that does not come within the setup timeout ends
//! the client as lost), no error frame, no connection lost.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::chat::next_random;
use crate::common::{self, Common, MAX_CONNECTIONS, SETUP_TIMEOUT};
use crate::fanout;
use crate::workers;
use crate::wsclient::{ClientError, Frame, Target, WsConn, field, is_type, json_str, json_u64};

/// Highest total hop rate.
const MAX_RATE: f64 = 100_000.0;
/// Most rooms in the pool (room names are `{prefix}-churn-{n}`).
const MAX_ROOMS: usize = 1_000_000;

/// `churn` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ChurnArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Rooms in the pool the clients hop over.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rooms: usize,
    /// Concurrent clients (one connection each at a time).
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// Hops (join + publish + leave) per second over all clients.
    #[arg(long, default_value_t = 200.0)]
    pub(crate) rate: f64,
    /// Hops after which a client reconnects; 0 = never.
    #[arg(long, default_value_t = 50)]
    pub(crate) reconnect_every: u64,
}

/// What one client did and saw.
#[derive(Default)]
struct ClientStats {
    hops: u64,
    hops_window: u64,
    reconnects: u64,
    errors: BTreeMap<String, u64>,
    closed: Option<String>,
    hop_us: Option<Histogram<u64>>,
}

/// Run the scenario; returns the JSON result and whether it was lossless.
pub(crate) async fn run(args: ChurnArgs) -> Result<(Value, bool), String> {
    let (target, sources) = args.common.resolve()?;
    if args.rooms == 0 || args.rooms > MAX_ROOMS {
        return Err(format!("--rooms must be 1..={MAX_ROOMS}"));
    }
    if args.clients == 0 || args.clients > MAX_CONNECTIONS {
        return Err(format!("--clients must be 1..={MAX_CONNECTIONS}"));
    }
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(format!(
            "--rate must be hops per second, 0 < rate <= {MAX_RATE}"
        ));
    }
    println!(
        "churn: {} clients over {} rooms, {} hops/s (join, publish, leave), reconnect every {} hops",
        args.clients, args.rooms, args.rate, args.reconnect_every
    );
    let origin = tokio::time::Instant::now();
    let warmup = Duration::from_secs(args.common.warmup);
    let stop_at = origin + warmup + Duration::from_secs(args.common.duration);
    let measuring = Arc::new(AtomicBool::new(false));
    let period = Duration::from_secs_f64(args.clients as f64 / args.rate);
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let plan = Plan {
                target: target.for_user(&format!("{}-h{i}", args.common.user_prefix)),
                source: sources[i % sources.len()],
                me: i,
                prefix: args.common.user_prefix.clone(),
                rooms: args.rooms,
                reconnect_every: args.reconnect_every,
                first: origin + Duration::from_secs_f64(i as f64 / args.rate),
                period,
                stop_at,
            };
            workers::spawn(i, client_loop(plan, measuring.clone()))
        })
        .collect();
    tokio::time::sleep_until(origin + warmup).await;
    let window = common::Window::start(&args.common);
    measuring.store(true, Ordering::Release);
    println!("  measuring for {} s", args.common.duration);
    tokio::time::sleep_until(stop_at).await;
    let figures = window.finish();
    measuring.store(false, Ordering::Release);

    let mut hop_us = fanout::latency_histogram();
    let (mut hops, mut hops_window, mut reconnects) = (0u64, 0u64, 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut closed = Vec::new();
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())?;
        hops += s.hops;
        hops_window += s.hops_window;
        reconnects += s.reconnects;
        for (code, n) in s.errors {
            *errors.entry(code).or_default() += n;
        }
        closed.extend(s.closed);
        if let Some(h) = &s.hop_us {
            let _ = hop_us.add(h);
        }
    }
    let errors_total: u64 = errors.values().sum();
    let lossless = errors_total == 0 && closed.is_empty() && hops > 0;
    let secs = figures.secs.max(1e-9);
    println!("results");
    println!(
        "  hops/s             {:.0} ({hops} hops in all: as many joins, publishes, leaves)",
        hops_window as f64 / secs
    );
    println!("  reconnects         {reconnects}");
    common::print_latency("hop latency", &hop_us);
    println!("  errors             {errors_total} {errors:?}");
    println!("  connections lost   {}", closed.len());
    for c in closed.iter().take(5) {
        println!("    {c}");
    }
    figures.print();
    println!(
        "  lossless           {}",
        if lossless { "yes" } else { "NO" }
    );
    let parameters = json!({
        "rooms": args.rooms, "clients": args.clients, "rate": args.rate,
        "reconnect_every": args.reconnect_every,
        "duration": args.common.duration, "warmup": args.common.warmup,
    });
    let mut result = common::environment(&args.common, "churn", parameters);
    result["results"] = json!({
        "hops": hops,
        "hops_per_sec": hops_window as f64 / secs,
        "reconnects": reconnects,
        "errors": errors,
        "errors_total": errors_total,
        "connections_lost": closed.len(),
        "hop_latency_ms": common::latency_json(&hop_us),
        "lossless": lossless,
    });
    result["window"] = figures.to_json();
    Ok((result, lossless))
}

/// One client's part of the run.
struct Plan {
    target: Target,
    source: IpAddr,
    me: usize,
    prefix: String,
    rooms: usize,
    reconnect_every: u64,
    first: tokio::time::Instant,
    period: Duration,
    stop_at: tokio::time::Instant,
}

async fn client_loop(plan: Plan, measuring: Arc<AtomicBool>) -> ClientStats {
    let mut s = ClientStats {
        hop_us: Some(fanout::latency_histogram()),
        ..ClientStats::default()
    };
    let me = format!("{}-h{}", plan.prefix, plan.me);
    let mut rng = (plan.me as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut conn: Option<WsConn> = None;
    let mut next_id: u64 = 1;
    let mut due = plan.first;
    while due < plan.stop_at {
        tokio::time::sleep_until(due).await;
        due += plan.period;
        if conn.is_none() {
            match WsConn::connect(&plan.target, Some(plan.source), plan.me as u32).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    s.closed = Some(format!("{me}: connect: {e}"));
                    break;
                }
            }
        }
        let Some(c) = conn.as_mut() else { break };
        let room = format!(
            "{}-churn-{}",
            plan.prefix,
            next_random(&mut rng) % plan.rooms as u64
        );
        let started = Instant::now();
        let hop = tokio::time::timeout(SETUP_TIMEOUT, hop(c, &me, &room, &mut next_id, &mut s));
        match hop.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                s.closed = Some(format!("{me}: {e}"));
                break;
            }
            Err(_) => {
                s.closed = Some(format!("{me}: hop in {room} timed out"));
                break;
            }
        }
        if let Some(h) = s.hop_us.as_mut() {
            let _ = h.record((started.elapsed().as_micros() as u64).max(1));
        }
        s.hops += 1;
        if measuring.load(Ordering::Acquire) {
            s.hops_window += 1;
        }
        if plan.reconnect_every > 0 && s.hops.is_multiple_of(plan.reconnect_every) {
            // Closing the TCP connection without a close frame: the server
            // must clean up after clients that simply go away.
            conn = None;
            s.reconnects += 1;
        }
    }
    s
}

/// Join `room`, publish once, wait for the publish's ack and own copy,
/// leave. Error frames are counted; a copy that never comes shows as the
/// hop timing out (the caller's timeout), which ends the client.
async fn hop(
    conn: &mut WsConn,
    me: &str,
    room: &str,
    next_id: &mut u64,
    s: &mut ClientStats,
) -> Result<(), ClientError> {
    let (join, publish, leave) = (*next_id, *next_id + 1, *next_id + 2);
    *next_id += 3;
    conn.queue_text(format!(r#"{{"type":"join","room":"{room}","id":{join}}}"#).as_bytes());
    conn.queue_text(
        format!(
            r#"{{"type":"publish","room":"{room}","id":{publish},"data":{{"hop":{publish}}}}}"#
        )
        .as_bytes(),
    );
    conn.flush().await?;
    let mut acked_seq: Option<u64> = None;
    let mut failed = false;
    let mut own_seqs: Vec<u64> = Vec::new();
    let mut answered = 0;
    // Join and publish answered, and the copy seen (or the publish failed).
    while answered < 2 || (!failed && acked_seq.is_some_and(|q| !own_seqs.contains(&q))) {
        conn.read_frames(|f| {
            let Frame::Text(t) = f else { return };
            if is_type(t, b"message") {
                if json_str(t, &field::FROM_USER) == Some(me.as_bytes())
                    && json_str(t, &field::ROOM) == Some(room.as_bytes())
                {
                    own_seqs.extend(json_u64(t, &field::SEQ));
                }
            } else if is_type(t, b"ack") {
                let id = json_u64(t, &field::ID);
                if id == Some(publish) {
                    acked_seq = json_u64(t, &field::SEQ);
                }
                if id == Some(join) || id == Some(publish) {
                    answered += 1;
                }
            } else if is_type(t, b"error") {
                let code = json_str(t, &field::CODE).unwrap_or(b"?");
                *s.errors
                    .entry(String::from_utf8_lossy(code).into_owned())
                    .or_default() += 1;
                let id = json_u64(t, &field::ID);
                if id == Some(join) || id == Some(publish) {
                    answered += 1;
                    failed = true;
                }
            }
        })
        .await?;
    }
    conn.queue_text(format!(r#"{{"type":"leave","room":"{room}","id":{leave}}}"#).as_bytes());
    conn.flush().await?;
    let mut left = false;
    while !left {
        conn.read_frames(|f| {
            let Frame::Text(t) = f else { return };
            if (is_type(t, b"ack") || is_type(t, b"error"))
                && json_u64(t, &field::ID) == Some(leave)
            {
                left = true;
                if is_type(t, b"error") {
                    let code = json_str(t, &field::CODE).unwrap_or(b"?");
                    *s.errors
                        .entry(String::from_utf8_lossy(code).into_owned())
                        .or_default() += 1;
                }
            }
        })
        .await?;
    }
    Ok(())
}
