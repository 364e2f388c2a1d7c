//! `slow-consumer`: one room with fast members that read, slow members that
//! join and then never read, and one open-loop publisher. The fast group
//! must stay lossless; each slow member must either be closed with 4000
//! (`overflow: "disconnect"`) or get `gap` frames that, with the messages it
//! received, cover every seq exactly once (`overflow: "drop"`).
//!
//! Slow members answer no pings while they stall: keep runs shorter than the
//! server's heartbeat timeout. They read only at the end, so a 4000 close
//! decided more than `limits.slow_close_grace_ms` before the end of the run
//! is seen as a close without a close frame (the server gave up writing it).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::common::{self, Common, DRAIN_WAIT, MAX_CONNECTIONS, SETUP_TIMEOUT, Window};
use crate::fanout::{self, MAX_PAYLOAD, Phase, Rate};
use crate::progress::{self, Counters};
use crate::workers;
use crate::wsclient::{ClientError, Frame, Target, WsConn, field, is_type, json_u64};

/// Longest time spent reading the slow members' sockets at the end.
const SLOW_DRAIN_WAIT: Duration = Duration::from_secs(10);
/// Highest publish rate.
const MAX_RATE: f64 = 1_000_000.0;

/// Overflow policy of the room.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// A slow member is closed with 4000.
    Disconnect,
    /// A slow member gets `gap` frames for what it missed.
    Drop,
}

impl Overflow {
    fn as_str(self) -> &'static str {
        match self {
            Overflow::Disconnect => "disconnect",
            Overflow::Drop => "drop",
        }
    }
}

/// `slow-consumer` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SlowArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Members that read everything.
    #[arg(long, default_value_t = 100)]
    pub(crate) fast: usize,
    /// Members that join, then stop reading until the end of the run.
    #[arg(long, default_value_t = 10)]
    pub(crate) slow: usize,
    /// Publishes per second of the one publisher (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Bytes of filler in each message's data.
    #[arg(long, default_value_t = 1024)]
    pub(crate) payload: usize,
    /// Overflow policy the room is created with.
    #[arg(long, value_enum, default_value_t = Overflow::Disconnect)]
    pub(crate) overflow: Overflow,
    /// Socket receive buffer of the slow members, bytes (0: the system's);
    /// small, so the server's queue for them fills within seconds.
    #[arg(long, default_value_t = 4096)]
    pub(crate) slow_rcvbuf: u32,
    /// TCP MSS the slow members announce, bytes (0: the system's); small,
    /// so the server's send buffer for them stays small.
    #[arg(long, default_value_t = 1024)]
    pub(crate) slow_mss: u32,
}

/// How reading a slow member's socket at the end ended.
#[derive(Debug)]
enum SlowEnd {
    /// It got (or was told by `gap` frames about) every seq.
    Covered,
    /// The server closed it with this close code (`None`: no close frame,
    /// for example when the slow-close grace expired before the drain).
    Closed(Option<u16>),
    /// Another failure.
    Failed(String),
    /// [`SLOW_DRAIN_WAIT`] passed.
    TimedOut,
}

/// What one slow member saw.
struct SlowStats {
    received: u64,
    gaps: u64,
    gap_messages: u64,
    missing: u64,
    out_of_order: u64,
    /// Seqs after the join up to the final seq.
    span: u64,
    end: SlowEnd,
}

/// Run the scenario; returns the JSON result and whether the fast group was
/// lossless.
pub(crate) async fn run(args: SlowArgs) -> Result<(Value, bool), String> {
    let (target, sources) = args.common.resolve()?;
    if args.fast == 0 || args.slow == 0 {
        return Err("--fast and --slow must be at least 1".into());
    }
    if args.fast + args.slow + 1 > MAX_CONNECTIONS {
        return Err(format!(
            "--fast + --slow + 1 connections: at most {MAX_CONNECTIONS}"
        ));
    }
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(format!(
            "--rate must be publishes per second, 0 < rate <= {MAX_RATE}"
        ));
    }
    if args.payload > MAX_PAYLOAD {
        return Err(format!("--payload must be at most {MAX_PAYLOAD}"));
    }
    let origin = Instant::now();
    let prefix = &args.common.user_prefix;
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let room = format!("{prefix}-slow-{}-{unique}", std::process::id());
    println!(
        "slow-consumer: {} fast + {} slow members, 1 publisher at {}/s, {} B payload, overflow {}",
        args.fast,
        args.slow,
        args.rate,
        args.payload,
        args.overflow.as_str()
    );

    // The publisher creates the room with the policy, then joins it.
    let mut publisher = WsConn::connect(
        &target.for_user(&format!("{prefix}-sp")),
        Some(sources[0]),
        1 << 25,
    )
    .await
    .map_err(|e| format!("publisher: {e}"))?;
    let create = format!(
        r#"{{"type":"create","room":"{room}","overflow":"{}","id":1}}"#,
        args.overflow.as_str()
    );
    request(&mut publisher, &create, 1)
        .await
        .map_err(|e| format!("create {room}: {e}"))?;
    let join = format!(r#"{{"type":"join","room":"{room}","id":2}}"#);
    request(&mut publisher, &join, 2)
        .await
        .map_err(|e| format!("publisher join: {e}"))?;

    let gate = Arc::new(Semaphore::new(args.common.connect_concurrency));
    let group = |tag: &'static str, n: usize, sock: SockOpts| Group {
        target: &target,
        sources: &sources,
        gate: &gate,
        room: &room,
        prefix,
        tag,
        n,
        sock,
    };
    let fast = join_group(group("f", args.fast, SockOpts::default()))
        .await
        .map_err(|e| format!("fast {e}"))?;
    let sock = SockOpts {
        rcvbuf: (args.slow_rcvbuf > 0).then_some(args.slow_rcvbuf),
        mss: (args.slow_mss > 0).then_some(args.slow_mss),
    };
    let slow = join_group(group("s", args.slow, sock))
        .await
        .map_err(|e| format!("slow {e}"))?;
    println!(
        "  {} fast and {} slow members joined",
        fast.len(),
        slow.len()
    );

    let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
    let finals: Arc<Vec<AtomicU64>> = Arc::new(vec![AtomicU64::new(u64::MAX)]);
    let counters = Arc::new(Counters::default());
    let fast_tasks: Vec<_> = fast
        .into_iter()
        .enumerate()
        .map(|(i, (mut conn, seq))| {
            let phase = phase_rx.clone();
            let finals = finals.clone();
            let counters = counters.clone();
            // The worker that opened it (`join_group`'s seed).
            workers::spawn(i, async move {
                let s =
                    fanout::member_loop(&mut conn, seq, 0, finals, phase, origin, &counters).await;
                (s, conn)
            })
        })
        .collect();
    let publisher_task = {
        let phase = phase_rx.clone();
        let counters = counters.clone();
        let room = room.clone();
        let filler = "x".repeat(args.payload);
        let rate = Rate::PerSec(args.rate);
        tokio::spawn(async move {
            let s = fanout::publisher_loop(
                &mut publisher,
                &room,
                &filler,
                rate,
                phase,
                origin,
                &counters,
            )
            .await;
            (s, publisher)
        })
    };

    let ticker = progress::spawn(counters.clone(), progress::DELIVERIES);
    tokio::time::sleep(Duration::from_secs(args.common.warmup)).await;
    let window = Window::start(&args.common);
    let _ = phase_tx.send(Phase::Measure);
    println!("  measuring for {} s", args.common.duration);
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let figures = window.finish();
    let _ = phase_tx.send(Phase::Drain);

    let (pub_stats, publisher) = publisher_task.await.map_err(|e| e.to_string())?;
    let final_seq = pub_stats.last_seq;
    finals[0].store(final_seq, Ordering::Release);
    let _ = phase_tx.send(Phase::Drain);
    let stop_at = tokio::time::Instant::now() + DRAIN_WAIT;
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(stop_at).await;
        let _ = phase_tx.send(Phase::Stop);
    });
    let mut latency = fanout::latency_histogram();
    let (mut delivered_total, mut delivered_window) = (0u64, 0u64);
    let (mut missing, mut out_of_order, mut gaps) = (0u64, 0u64, 0u64);
    let mut closed: Vec<String> = pub_stats.closed.iter().cloned().collect();
    // Keep every connection open until the slow members are read: a member
    // leaving would queue a `left` event to the stalled slow members, which
    // would close them with 4000 even in a `drop` room.
    let mut keep = vec![publisher];
    for t in fast_tasks {
        let (s, conn) = t.await.map_err(|e| e.to_string())?;
        delivered_total += s.delivered_total;
        delivered_window += s.delivered_window;
        missing += s.missing;
        out_of_order += s.out_of_order;
        gaps += s.gaps;
        closed.extend(s.closed);
        let _ = latency.add(&s.latency_us);
        keep.push(conn);
    }
    stopper.abort();

    let deadline = tokio::time::Instant::now() + SLOW_DRAIN_WAIT;
    let slow_tasks: Vec<_> = slow
        .into_iter()
        .enumerate()
        .map(|(i, (conn, seq))| {
            workers::spawn((1 << 24) + i, drain_slow(conn, seq, final_seq, deadline))
        })
        .collect();
    let mut slow_stats = Vec::with_capacity(slow_tasks.len());
    for t in slow_tasks {
        let (stats, conn) = t.await.map_err(|e| e.to_string())?;
        slow_stats.push(stats);
        keep.push(conn);
    }
    ticker.abort();
    drop(keep);

    let expected = pub_stats.published_total * args.fast as u64;
    let ratio = if expected > 0 {
        delivered_total as f64 / expected as f64
    } else {
        0.0
    };
    let lossless = missing == 0
        && out_of_order == 0
        && gaps == 0
        && closed.is_empty()
        && pub_stats.errors == 0
        && delivered_total == expected;
    let secs = figures.secs.max(1e-9);
    let slow_json = summarize_slow(&slow_stats, args.overflow);

    println!("results");
    println!(
        "  publishes/s        {:.0} ({} published, final seq {final_seq}, {} errors)",
        pub_stats.published_window as f64 / secs,
        pub_stats.published_total,
        pub_stats.errors
    );
    println!("fast group ({} members)", args.fast);
    println!("  deliveries/s       {:.0}", delivered_window as f64 / secs);
    println!(
        "  delivery ratio     {:.6} ({delivered_total} of {expected}){}",
        ratio,
        if lossless { "" } else { "  NOT LOSSLESS" }
    );
    common::print_latency("latency ms", &latency);
    println!(
        "  checks             missing {missing}, out of order/duplicate {out_of_order}, gaps {gaps}, closed {}",
        closed.len()
    );
    for c in closed.iter().take(5) {
        println!("    closed: {c}");
    }
    print_slow(&slow_json, args.slow);
    figures.print();

    let parameters = json!({
        "fast": args.fast, "slow": args.slow, "rate": args.rate,
        "payload": args.payload, "overflow": args.overflow.as_str(),
        "slow_rcvbuf": args.slow_rcvbuf, "slow_mss": args.slow_mss,
        "duration": args.common.duration, "warmup": args.common.warmup,
    });
    let mut result = common::environment(&args.common, "slow-consumer", parameters);
    result["results"] = json!({
        "room": room,
        "published_total": pub_stats.published_total,
        "published_window": pub_stats.published_window,
        "publishes_per_sec": pub_stats.published_window as f64 / secs,
        "publish_errors": pub_stats.errors,
        "final_seq": final_seq,
        "fast": {
            "members": args.fast,
            "delivered_total": delivered_total,
            "delivered_window": delivered_window,
            "deliveries_per_sec": delivered_window as f64 / secs,
            "expected_deliveries": expected,
            "delivery_ratio": ratio,
            "latency_ms": common::latency_json(&latency),
            "checks": {
                "missing": missing, "out_of_order": out_of_order, "gaps": gaps,
                "closed_connections": closed.len(), "lossless": lossless,
            },
        },
        "slow": slow_json,
        "window": figures.to_json(),
        "timeline": counters.timeline_json(),
    });
    Ok((result, lossless))
}

/// Send `frame` (carrying `"id":id`) and wait for its `ack`.
async fn request(conn: &mut WsConn, frame: &str, id: u64) -> Result<(), String> {
    conn.queue_text(frame.as_bytes());
    conn.flush().await.map_err(|e| e.to_string())?;
    let wait = async {
        let mut answer: Option<Result<(), String>> = None;
        while answer.is_none() {
            conn.read_frames(|f| {
                if let Frame::Text(t) = f {
                    if json_u64(t, &field::ID) != Some(id) {
                        return;
                    }
                    if is_type(t, b"ack") {
                        answer = Some(Ok(()));
                    } else if is_type(t, b"error") {
                        answer = Some(Err(String::from_utf8_lossy(t).to_string()));
                    }
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        answer.unwrap_or(Ok(()))
    };
    tokio::time::timeout(SETUP_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no answer within {} s", SETUP_TIMEOUT.as_secs()))?
}

/// `n` members named `{prefix}-{tag}{i}` to open and join to `room`.
struct Group<'a> {
    target: &'a Target,
    sources: &'a [IpAddr],
    gate: &'a Arc<Semaphore>,
    room: &'a str,
    prefix: &'a str,
    tag: &'static str,
    n: usize,
    sock: SockOpts,
}

/// Socket options of a group's members.
#[derive(Debug, Clone, Copy, Default)]
struct SockOpts {
    rcvbuf: Option<u32>,
    mss: Option<u32>,
}

/// Open and join a group; each member with its seq at the join.
async fn join_group(g: Group<'_>) -> Result<Vec<(WsConn, u64)>, String> {
    let mut setups = Vec::with_capacity(g.n);
    for i in 0..g.n {
        let target = g.target.for_user(&format!("{}-{}{i}", g.prefix, g.tag));
        let source = g.sources[i % g.sources.len()];
        let room = g.room.to_string();
        let gate = g.gate.clone();
        let seed = if g.tag == "f" { i } else { (1 << 24) + i };
        let sock = g.sock;
        setups.push(workers::spawn(seed, async move {
            let _permit = gate.acquire_owned().await;
            let open = async {
                let conn =
                    WsConn::connect_with(&target, Some(source), seed as u32, sock.rcvbuf, sock.mss)
                        .await?;
                fanout::join_room(conn, &room).await
            };
            tokio::time::timeout(SETUP_TIMEOUT, open)
                .await
                .unwrap_or(Err(ClientError::Protocol("join timed out")))
        }));
    }
    let mut out = Vec::with_capacity(g.n);
    for (i, s) in setups.into_iter().enumerate() {
        let joined = s
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("member {i}: {e}"))?;
        out.push(joined);
    }
    Ok(out)
}

/// Read a slow member's socket until it has every seq up to `final_seq`
/// (received or named by `gap` frames), the server closes it, or `deadline`.
/// The connection is handed back open: a member that left while the others
/// still drain would queue a `left` event to their stalled queues (and close
/// them with 4000 even in a `drop` room).
async fn drain_slow(
    conn: WsConn,
    joined_at: u64,
    final_seq: u64,
    deadline: tokio::time::Instant,
) -> (SlowStats, WsConn) {
    let mut conn = conn;
    let stats = drain_slow_stats(&mut conn, joined_at, final_seq, deadline).await;
    (stats, conn)
}

/// [`drain_slow`]'s reading.
async fn drain_slow_stats(
    conn: &mut WsConn,
    joined_at: u64,
    final_seq: u64,
    deadline: tokio::time::Instant,
) -> SlowStats {
    let mut s = SlowStats {
        received: 0,
        gaps: 0,
        gap_messages: 0,
        missing: 0,
        out_of_order: 0,
        span: final_seq.saturating_sub(joined_at),
        end: SlowEnd::TimedOut,
    };
    let mut expected = joined_at + 1;
    while expected <= final_seq {
        let read = conn.read_frames(|f| {
            let Frame::Text(t) = f else { return };
            if is_type(t, b"message") {
                let Some(seq) = json_u64(t, &field::SEQ) else {
                    return;
                };
                if seq < expected {
                    s.out_of_order += 1;
                    return;
                }
                s.missing += seq - expected;
                expected = seq + 1;
                s.received += 1;
            } else if is_type(t, b"gap") {
                let (Some(from), Some(to)) = (json_u64(t, &field::FROM), json_u64(t, &field::TO))
                else {
                    return;
                };
                s.gaps += 1;
                s.gap_messages += to.saturating_sub(from) + 1;
                if from < expected {
                    s.out_of_order += 1;
                } else {
                    s.missing += from - expected;
                }
                expected = expected.max(to + 1);
            }
        });
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(())) => {}
            Ok(Err(ClientError::Closed(code))) => {
                s.end = SlowEnd::Closed(code);
                return s;
            }
            Ok(Err(e)) => {
                s.end = SlowEnd::Failed(e.to_string());
                return s;
            }
            Err(_) => return s,
        }
    }
    s.end = SlowEnd::Covered;
    s
}

/// The slow group's figures as JSON.
fn summarize_slow(stats: &[SlowStats], overflow: Overflow) -> Value {
    let sum = |f: fn(&SlowStats) -> u64| stats.iter().map(f).sum::<u64>();
    let count = |f: &dyn Fn(&SlowStats) -> bool| stats.iter().filter(|s| f(s)).count();
    let exact = |s: &SlowStats| {
        matches!(s.end, SlowEnd::Covered)
            && s.missing == 0
            && s.out_of_order == 0
            && s.received + s.gap_messages == s.span
    };
    let covered_exactly = count(&exact);
    let mut other_codes: Vec<u16> = stats
        .iter()
        .filter_map(|s| match s.end {
            SlowEnd::Closed(Some(c)) if c != 4000 => Some(c),
            _ => None,
        })
        .collect();
    other_codes.sort_unstable();
    other_codes.dedup();
    let first_failure = stats.iter().find_map(|s| match &s.end {
        SlowEnd::Failed(e) => Some(e.clone()),
        _ => None,
    });
    // Protocol: every slow member either got every seq (messages + gaps)
    // or was closed with 4000, and never saw a hole or a repeat.
    let violations = count(&|s| {
        s.missing > 0
            || s.out_of_order > 0
            || !(exact(s) || matches!(s.end, SlowEnd::Closed(Some(4000))))
    });
    json!({
        "members": stats.len(),
        "overflow": overflow.as_str(),
        "closed_4000": count(&|s| matches!(s.end, SlowEnd::Closed(Some(4000)))),
        "closed_other": count(&|s| matches!(s.end, SlowEnd::Closed(Some(c)) if c != 4000)),
        "closed_other_codes": other_codes,
        "closed_without_close_frame": count(&|s| matches!(s.end, SlowEnd::Closed(None))),
        "failed": count(&|s| matches!(s.end, SlowEnd::Failed(_))),
        "first_failure": first_failure,
        "timed_out": count(&|s| matches!(s.end, SlowEnd::TimedOut)),
        "covered": count(&|s| matches!(s.end, SlowEnd::Covered)),
        "covered_exactly": covered_exactly,
        "coverage_exact": covered_exactly == stats.len(),
        "received": sum(|s| s.received),
        "gaps": sum(|s| s.gaps),
        "gap_messages": sum(|s| s.gap_messages),
        "missing": sum(|s| s.missing),
        "out_of_order": sum(|s| s.out_of_order),
        "protocol_violations": violations,
    })
}

fn print_slow(j: &Value, members: usize) {
    println!("slow group ({members} members)");
    println!(
        "  closed with 4000   {}   (other codes {}, no close frame {}, failed {}, timed out {})",
        j["closed_4000"],
        j["closed_other"],
        j["closed_without_close_frame"],
        j["failed"],
        j["timed_out"]
    );
    println!(
        "  received {}, gap frames {} covering {} messages, missing {}, out of order {}",
        j["received"], j["gaps"], j["gap_messages"], j["missing"], j["out_of_order"]
    );
    println!(
        "  every seq covered exactly (received + gaps): {} of {members} members",
        j["covered_exactly"]
    );
    println!(
        "  protocol violations (hole, repeat, or neither covered nor closed with 4000): {}",
        j["protocol_violations"]
    );
    if let Some(e) = j["first_failure"].as_str() {
        println!("  first failure: {e}");
    }
    if j["closed_without_close_frame"]
        .as_u64()
        .is_some_and(|n| n > 0)
    {
        println!(
            "  note: a stalled member's close frame is lost when the server's slow-close grace \
             (limits.slow_close_grace_ms) ends before the run reads it: shorten --warmup + --duration"
        );
    }
}
