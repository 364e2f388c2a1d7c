//! `fanout`: R rooms x M members, P publishers per room; max rate (closed
//! loop, bounded window) or a fixed rate per publisher (open loop, latency
//! from the intended send time). Every member checks it gets every seq once,
//! in order. With `--protocol pusher` the same run speaks the Pusher
//! protocol ([`crate::pusher`]).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::common::{self, Common, DRAIN_WAIT, MAX_CONNECTIONS, Window, nanos_since};
use crate::progress::{self, Counters};
use crate::pusher::{HttpPublisher, PublishVia, Pusher, PusherArgs};
use crate::workers;
use crate::wsclient::{ClientError, Frame, Target, WsConn, field, is_type, json_u64};

/// Largest payload the generator sends.
pub(crate) const MAX_PAYLOAD: usize = 1024 * 1024;
/// Largest in-flight window of a closed-loop publisher.
const MAX_WINDOW: usize = 65_536;

/// `fanout` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    pub(crate) rooms: usize,
    /// Receiving members per room.
    #[arg(long, default_value_t = 1000)]
    pub(crate) members: usize,
    /// Publishers per room (members too, but they exclude themselves).
    #[arg(long, default_value_t = 1)]
    pub(crate) publishers: usize,
    /// Bytes of filler in each message's data.
    #[arg(long, default_value_t = 64)]
    pub(crate) payload: usize,
    /// What the filler is: `x` (one repeated letter) or `words` (text of
    /// common words and numbers, about as compressible as chat text: what
    /// to use when measuring permessage-deflate).
    #[arg(long, default_value = "x")]
    pub(crate) payload_text: PayloadText,
    /// `max` (closed loop) or publishes per second per publisher (open loop).
    #[arg(long, default_value = "max")]
    pub(crate) rate: String,
    /// In-flight publishes per publisher with `--rate max`.
    #[arg(long, default_value_t = 64)]
    pub(crate) window: usize,
    /// Another node of the same cluster (repeatable): members are spread
    /// round-robin over `--url` and these; publishers stay on `--url`. For
    /// measuring cross-node fan-out.
    #[arg(long = "member-url", value_name = "URL")]
    pub(crate) member_urls: Vec<String>,
    /// Put every member on the `--member-url` nodes, none on `--url` (so
    /// every delivery crosses the cluster's backplane).
    #[arg(long, requires = "member_urls")]
    pub(crate) members_only_on_others: bool,
    #[command(flatten)]
    pub(crate) pusher: PusherArgs,
}

/// A publisher's connection.
enum PublisherConn {
    /// Native: `publish` frames, acknowledged.
    Native(WsConn),
    /// Pusher: client events on the room's private channel.
    PusherClient(WsConn),
    /// Pusher: HTTP API calls.
    PusherHttp(HttpPublisher),
}

/// The filler of published messages.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayloadText {
    /// One letter repeated.
    X,
    /// Common words and numbers (a fixed pseudo-random sequence).
    Words,
}

/// `len` bytes of filler: JSON-string-safe (no quotes, no backslashes).
pub(crate) fn filler(text: PayloadText, len: usize) -> String {
    const WORDS: [&str; 32] = [
        "the", "room", "message", "hello", "and", "user", "online", "today", "meeting", "build",
        "deploy", "status", "thanks", "team", "please", "review", "server", "update", "new",
        "channel", "fixed", "issue", "time", "check", "ok", "ready", "join", "later", "from",
        "with", "about", "release",
    ];
    let mut out = String::with_capacity(len + 16);
    match text {
        PayloadText::X => out.extend(std::iter::repeat_n('x', len)),
        PayloadText::Words => {
            // xorshift64: the same text on every run.
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            while out.len() < len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state.is_multiple_of(5) {
                    out.push_str(&(state % 100_000).to_string());
                } else {
                    out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
                }
                out.push(' ');
            }
            out.truncate(len);
        }
    }
    out
}

/// Phases of a run, broadcast to every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Warmup,
    Measure,
    Drain,
    Stop,
}

/// The run's phase as one task sees it: read without a lock on every
/// wake-up, and a change waited for with one registration that lasts until
/// the change comes (registering afresh on every wake-up costs a lock on
/// the watch channel, shared by every task).
pub(crate) struct PhaseWatch {
    now: Phase,
    next: Pin<Box<dyn Future<Output = (Phase, watch::Receiver<Phase>)> + Send>>,
}

impl PhaseWatch {
    pub(crate) fn new(rx: watch::Receiver<Phase>) -> Self {
        let now = *rx.borrow();
        PhaseWatch {
            now,
            next: Box::pin(next_phase(rx)),
        }
    }

    /// The phase as of the last change seen.
    pub(crate) fn get(&self) -> Phase {
        self.now
    }

    /// Wait for the next change. Cancel-safe: dropping this future keeps
    /// the registration, so no change is missed.
    pub(crate) async fn changed(&mut self) {
        let (now, rx) = (&mut self.next).await;
        self.now = now;
        self.next = Box::pin(next_phase(rx));
    }
}

/// The phase after the next change (`Stop` once the sender is gone).
async fn next_phase(mut rx: watch::Receiver<Phase>) -> (Phase, watch::Receiver<Phase>) {
    let now = match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => {
            // No more changes: stay in Stop instead of waking again at once.
            let () = std::future::pending().await;
            Phase::Stop
        }
    };
    (now, rx)
}

/// What one member saw.
pub(crate) struct MemberStats {
    pub(crate) delivered_total: u64,
    pub(crate) delivered_window: u64,
    pub(crate) missing: u64,
    pub(crate) out_of_order: u64,
    pub(crate) gaps: u64,
    pub(crate) gap_messages: u64,
    pub(crate) closed: Option<String>,
    pub(crate) latency_us: Histogram<u64>,
    /// Bytes read from the server while measuring (after TLS).
    pub(crate) bytes_window: u64,
    /// The server accepted permessage-deflate.
    pub(crate) compressed: bool,
}

/// What one publisher did.
#[derive(Default)]
pub(crate) struct PublisherStats {
    pub(crate) published_total: u64,
    pub(crate) published_window: u64,
    pub(crate) errors: u64,
    pub(crate) last_seq: u64,
    pub(crate) closed: Option<String>,
}

/// Publish rate of a publisher.
#[derive(Clone, Copy)]
pub(crate) enum Rate {
    /// Closed loop with this many publishes in flight.
    Max(usize),
    /// Open loop, publishes per second.
    PerSec(f64),
}

/// Latency histogram in microseconds.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    // 1 us .. 60 s at 2 significant digits: ~26 KB per member.
    Histogram::new_with_bounds(1, 60_000_000, 2)
        .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!()))
}

/// Run the scenario; returns the JSON result and whether it was lossless.
pub(crate) async fn run(args: FanoutArgs) -> Result<(Value, bool), String> {
    let (target, sources) = args.common.resolve()?;
    let mut member_targets = vec![target.clone()];
    for url in &args.member_urls {
        let mut other = Target::parse(url)?;
        if !other.addr.ip().is_loopback() {
            return Err(format!(
                "{url}: the load generator only targets loopback addresses (127.0.0.0/8, ::1)"
            ));
        }
        other.credentials = target.credentials.clone();
        member_targets.push(other);
    }
    if args.members_only_on_others {
        member_targets.remove(0);
    }
    let rate = match args.rate.as_str() {
        "max" => Rate::Max(args.window),
        n => match n.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= 1_000_000.0 => Rate::PerSec(r),
            _ => {
                return Err(
                    "--rate must be `max` or a number of publishes per second (0 < r <= 1e6)"
                        .into(),
                );
            }
        },
    };
    let total_conns = args.rooms * (args.members + args.publishers);
    if args.rooms == 0 || args.members == 0 || args.publishers == 0 {
        return Err("--rooms, --members and --publishers must be at least 1".into());
    }
    if total_conns > MAX_CONNECTIONS {
        return Err(format!(
            "{total_conns} connections: at most {MAX_CONNECTIONS}"
        ));
    }
    if args.payload > MAX_PAYLOAD {
        return Err(format!("--payload must be at most {MAX_PAYLOAD}"));
    }
    if args.window == 0 || args.window > MAX_WINDOW {
        return Err(format!("--window must be 1..={MAX_WINDOW}"));
    }
    let pusher = Pusher::of(&args.pusher)?;
    let origin = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
    let final_seqs: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.rooms).map(|_| AtomicU64::new(u64::MAX)).collect());
    let gate = Arc::new(Semaphore::new(args.common.connect_concurrency));
    let prefix = &args.common.user_prefix;
    println!(
        "fanout: {} room(s) x {} members, {} publisher(s) per room, {} B payload, rate {}, protocol {}",
        args.rooms,
        args.members,
        args.publishers,
        args.payload,
        args.rate,
        match &pusher {
            None => "native".to_string(),
            Some(p) => format!("pusher (publishing via {:?})", p.via()),
        }
    );

    // Members first: every one joined before the first publish.
    let mut setups = Vec::with_capacity(args.rooms * args.members);
    for r in 0..args.rooms {
        for m in 0..args.members {
            let n = r * args.members + m;
            let node = &member_targets[n % member_targets.len()];
            let target = node.for_user(&format!("{prefix}-m{r}-{m}"));
            let source = sources[n % sources.len()];
            let room = format!("{prefix}-room-{r}");
            let gate = gate.clone();
            let pusher = pusher.clone();
            let node = node.clone();
            setups.push(workers::spawn(n, async move {
                let _permit = gate.acquire_owned().await;
                match pusher {
                    None => open_member(&target, source, n as u32, &room).await,
                    Some(p) => {
                        let channel = p.channel(&room);
                        let conn = p.open_member(&node, source, n as u32, &channel).await?;
                        Ok((conn, 0))
                    }
                }
            }));
        }
    }
    let mut members = Vec::with_capacity(setups.len());
    for (i, s) in setups.into_iter().enumerate() {
        let (conn, seq) = s
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("member {i}: {e}"))?;
        members.push((i, conn, seq));
    }
    println!("  {} members joined", members.len());
    let mut publishers = Vec::new();
    for r in 0..args.rooms {
        for p in 0..args.publishers {
            let k = r * args.publishers + p;
            let target = target.for_user(&format!("{prefix}-p{r}-{p}"));
            let source = sources[k % sources.len()];
            let room = format!("{prefix}-room-{r}");
            let seed = (1 << 24) + k as u32;
            let pusher = pusher.clone();
            // On the worker that will run its loop.
            let open = workers::spawn(k, async move {
                match pusher {
                    None => open_member(&target, source, seed, &room)
                        .await
                        .map(|(c, _)| PublisherConn::Native(c)),
                    Some(ps) if ps.via() == PublishVia::Client => ps
                        .open_member(&target, source, seed, &ps.channel(&room))
                        .await
                        .map(PublisherConn::PusherClient),
                    Some(ps) => ps.open_http(&target).await.map(PublisherConn::PusherHttp),
                }
            });
            let conn = open
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("publisher {r}/{p}: {e}"))?;
            publishers.push((k, r, p, conn));
        }
    }
    let counters = Arc::new(Counters::default());
    let member_tasks: Vec<_> = members
        .into_iter()
        .map(|(n, conn, seq)| {
            let phase = phase_rx.clone();
            let finals = final_seqs.clone();
            let counters = counters.clone();
            let room = n / args.members;
            let native = pusher.is_none();
            workers::spawn(n, async move {
                let mut conn = conn;
                if native {
                    member_loop(&mut conn, seq, room, finals, phase, origin, &counters).await
                } else {
                    crate::pusher::member_loop(&mut conn, room, finals, phase, origin, &counters)
                        .await
                }
            })
        })
        .collect();
    let filler = filler(args.payload_text, args.payload);
    let publisher_tasks: Vec<_> = publishers
        .into_iter()
        .map(|(k, room, index, conn)| {
            let phase = phase_rx.clone();
            let room_name = format!("{prefix}-room-{room}");
            let filler = filler.clone();
            let counters = counters.clone();
            let pusher = pusher.clone();
            workers::spawn(k, async move {
                let stats = match (conn, &pusher) {
                    (PublisherConn::Native(mut c), _) => {
                        publisher_loop(&mut c, &room_name, &filler, rate, phase, origin, &counters)
                            .await
                    }
                    (PublisherConn::PusherClient(mut c), Some(p)) => {
                        let channel = p.channel(&room_name);
                        crate::pusher::publish_client_events(
                            &mut c, &channel, index, &filler, rate, phase, origin, &counters,
                        )
                        .await
                    }
                    (PublisherConn::PusherHttp(mut h), Some(p)) => {
                        let channel = p.channel(&room_name);
                        crate::pusher::publish_http(
                            &mut h, p, &channel, index, &filler, rate, phase, origin, &counters,
                        )
                        .await
                    }
                    (_, None) => {
                        unreachable!("Pusher publishers exist only with --protocol pusher")
                    }
                };
                (room, stats)
            })
        })
        .collect();

    let ticker = progress::spawn(counters.clone(), progress::DELIVERIES);
    tokio::time::sleep(Duration::from_secs(args.common.warmup)).await;
    let window = Window::start(&args.common);
    let _ = phase_tx.send(Phase::Measure);
    println!("  measuring for {} s", args.common.duration);
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let figures = window.finish();
    let _ = phase_tx.send(Phase::Drain);

    let mut published_total = 0;
    let mut published_window = 0;
    let mut publish_errors = 0;
    let mut closed = Vec::new();
    let mut per_room_published = vec![0u64; args.rooms];
    let mut last_seq = vec![0u64; args.rooms];
    for t in publisher_tasks {
        let (room, s) = t.await.map_err(|e| e.to_string())?;
        published_total += s.published_total;
        published_window += s.published_window;
        publish_errors += s.errors;
        per_room_published[room] += s.published_total;
        last_seq[room] = last_seq[room].max(s.last_seq);
        closed.extend(s.closed);
    }
    for (r, seq) in last_seq.iter().enumerate() {
        // Native: the room's last seq; Pusher (no seq): its event count.
        let last = if pusher.is_some() {
            per_room_published[r]
        } else {
            *seq
        };
        final_seqs[r].store(last, Ordering::Release);
    }
    // Wake members so they notice the final seqs.
    let _ = phase_tx.send(Phase::Drain);
    let stop_at = tokio::time::Instant::now() + DRAIN_WAIT;
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(stop_at).await;
        let _ = phase_tx.send(Phase::Stop);
    });
    let mut latency = latency_histogram();
    let (mut delivered_total, mut delivered_window) = (0u64, 0u64);
    let (mut missing, mut out_of_order, mut gaps, mut gap_messages) = (0u64, 0u64, 0u64, 0u64);
    let (mut bytes_window, mut compressed_members) = (0u64, 0usize);
    for t in member_tasks {
        let s = t.await.map_err(|e| e.to_string())?;
        bytes_window += s.bytes_window;
        compressed_members += usize::from(s.compressed);
        delivered_total += s.delivered_total;
        delivered_window += s.delivered_window;
        missing += s.missing;
        out_of_order += s.out_of_order;
        gaps += s.gaps;
        gap_messages += s.gap_messages;
        closed.extend(s.closed);
        let _ = latency.add(&s.latency_us);
    }
    stopper.abort();
    ticker.abort();
    let expected: u64 = per_room_published
        .iter()
        .map(|p| p * args.members as u64)
        .sum();
    let ratio = if expected > 0 {
        delivered_total as f64 / expected as f64
    } else {
        0.0
    };
    let secs = figures.secs.max(1e-9);
    let deliveries_per_sec = delivered_window as f64 / secs;
    let per_cpu = figures
        .server_cpu_secs
        .filter(|c| *c > 0.0)
        .map(|c| delivered_window as f64 / c);
    let lossless = missing == 0
        && out_of_order == 0
        && gaps == 0
        && closed.is_empty()
        && delivered_total == expected
        && publish_errors == 0;
    let pct = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;

    println!("results");
    println!("  publishes/s        {:.0}", published_window as f64 / secs);
    println!("  deliveries/s       {deliveries_per_sec:.0}");
    if let Some(p) = per_cpu {
        println!("  deliveries per server CPU-second  {p:.0}");
    }
    println!(
        "  delivery ratio     {:.6} ({delivered_total} of {expected})",
        ratio
    );
    println!(
        "  latency ms         p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        latency.max() as f64 / 1000.0
    );
    println!(
        "  checks             missing {missing}, out of order/duplicate {out_of_order}, gaps {gaps} ({gap_messages} msgs), publish errors {publish_errors}, closed {}",
        closed.len()
    );
    for c in closed.iter().take(5) {
        println!("    closed: {c}");
    }
    let bytes_per_delivery = bytes_window as f64 / delivered_window.max(1) as f64;
    println!(
        "  bytes read         {bytes_per_delivery:.1} per delivery ({compressed_members} of {} members compressed)",
        args.rooms * args.members
    );
    figures.print();

    let parameters = json!({
        "rooms": args.rooms, "members": args.members, "publishers": args.publishers,
        "payload": args.payload, "payload_text": format!("{:?}", args.payload_text).to_lowercase(),
        "rate": args.rate, "window": args.window,
        "duration": args.common.duration, "warmup": args.common.warmup,
        "member_urls": args.member_urls,
        "members_only_on_others": args.members_only_on_others,
        "protocol": if pusher.is_some() { "pusher" } else { "native" },
        "pusher_publish": pusher.as_ref().map(|p| match p.via() {
            PublishVia::Client => "client",
            PublishVia::Http => "http",
        }),
        "tls": args.common.url.starts_with("wss://"),
        "compression": args.common.compression,
    });
    let mut result = common::environment(&args.common, "fanout", parameters);
    result["results"] = json!({
        "published_total": published_total,
        "published_window": published_window,
        "publishes_per_sec": published_window as f64 / secs,
        "delivered_total": delivered_total,
        "delivered_window": delivered_window,
        "deliveries_per_sec": deliveries_per_sec,
        "deliveries_per_server_cpu_sec": per_cpu,
        "expected_deliveries": expected,
        "delivery_ratio": ratio,
        "bytes_read_per_delivery": bytes_per_delivery,
        "members_compressed": compressed_members,
        "latency_ms": common::latency_json(&latency),
        "checks": {
            "missing": missing, "out_of_order": out_of_order, "gaps": gaps,
            "gap_messages": gap_messages, "publish_errors": publish_errors,
            "closed_connections": closed.len(), "lossless": lossless,
        },
        "window": figures.to_json(),
        "timeline": counters.timeline_json(),
    });
    Ok((result, lossless))
}

/// Connect, read the welcome, join `room`; return the connection and the
/// room's seq at the join.
pub(crate) async fn open_member(
    target: &Target,
    source: IpAddr,
    seed: u32,
    room: &str,
) -> Result<(WsConn, u64), ClientError> {
    let conn = WsConn::connect(target, Some(source), seed).await?;
    join_room(conn, room).await
}

/// Join `room` on an open connection; return it and the room's seq at the
/// join.
pub(crate) async fn join_room(mut conn: WsConn, room: &str) -> Result<(WsConn, u64), ClientError> {
    conn.queue_text(format!(r#"{{"type":"join","room":"{room}","id":1}}"#).as_bytes());
    conn.flush().await?;
    let mut acked: Option<Result<u64, String>> = None;
    while acked.is_none() {
        conn.read_frames(|f| {
            if let Frame::Text(t) = f {
                if is_type(t, b"ack") && json_u64(t, &field::ID) == Some(1) {
                    acked = Some(Ok(json_u64(t, &field::SEQ).unwrap_or(0)));
                } else if is_type(t, b"error") {
                    acked = Some(Err(String::from_utf8_lossy(t).to_string()));
                }
            }
        })
        .await?;
    }
    match acked {
        Some(Ok(seq)) => Ok((conn, seq)),
        Some(Err(e)) => Err(ClientError::Refused { status: 0, body: e }),
        None => Err(ClientError::Protocol("no join ack")),
    }
}

/// What a member does with its room's frames: the protocol's part of
/// [`read_room`].
pub(crate) trait RoomReader {
    /// Whether the member has everything up to `last` (the room's final
    /// seq, or its event count).
    fn complete(&self, s: &MemberStats, last: u64) -> bool;
    /// One text frame from the server; `measuring` during the window.
    fn on_text(&mut self, s: &mut MemberStats, text: &[u8], measuring: bool, clock: &mut Arrival);
}

/// When the frames of one read arrived: the clock is read once for them
/// all, on the first one that needs it.
pub(crate) struct Arrival {
    origin: Instant,
    at: Option<u64>,
}

impl Arrival {
    /// Nanoseconds since the run's origin, read once per batch.
    pub(crate) fn now(&mut self) -> u64 {
        let origin = self.origin;
        *self.at.get_or_insert_with(|| nanos_since(origin))
    }
}

impl MemberStats {
    /// Nothing seen yet, on a connection that negotiated compression or
    /// not.
    pub(crate) fn new(compressed: bool) -> Self {
        MemberStats {
            delivered_total: 0,
            delivered_window: 0,
            missing: 0,
            out_of_order: 0,
            gaps: 0,
            gap_messages: 0,
            closed: None,
            latency_us: latency_histogram(),
            bytes_window: 0,
            compressed,
        }
    }

    /// One message delivered, sent at `sent` (ns since the origin) if
    /// known.
    pub(crate) fn delivered(&mut self, measuring: bool, sent: Option<u64>, clock: &mut Arrival) {
        self.delivered_total += 1;
        if measuring {
            self.delivered_window += 1;
            if let Some(sent) = sent {
                let now = clock.now();
                let _ = self
                    .latency_us
                    .record((now.saturating_sub(sent) / 1000).max(1));
            }
        }
    }
}

/// Native members: `message` frames in `seq` order from the join on, and
/// `gap` frames for what was dropped.
struct SeqReader {
    expected: u64,
}

impl RoomReader for SeqReader {
    fn complete(&self, _: &MemberStats, last: u64) -> bool {
        self.expected > last
    }

    fn on_text(&mut self, s: &mut MemberStats, t: &[u8], measuring: bool, clock: &mut Arrival) {
        if is_type(t, b"message") {
            let Some(seq) = json_u64(t, &field::SEQ) else {
                return;
            };
            if seq == self.expected {
                self.expected += 1;
            } else if seq > self.expected {
                s.missing += seq - self.expected;
                self.expected = seq + 1;
            } else {
                s.out_of_order += 1;
                return;
            }
            s.delivered(measuring, json_u64(t, &field::T), clock);
        } else if is_type(t, b"gap") {
            let (Some(from), Some(to)) = (json_u64(t, &field::FROM), json_u64(t, &field::TO))
            else {
                return;
            };
            s.gaps += 1;
            s.gap_messages += to.saturating_sub(from) + 1;
            if from > self.expected {
                s.missing += from - self.expected;
            }
            self.expected = self.expected.max(to + 1);
        }
    }
}

/// Read one member's room until the final seq is reached or the run stops.
pub(crate) async fn member_loop(
    conn: &mut WsConn,
    joined_at: u64,
    room: usize,
    finals: Arc<Vec<AtomicU64>>,
    phase: watch::Receiver<Phase>,
    origin: Instant,
    counters: &Counters,
) -> MemberStats {
    let reader = SeqReader {
        expected: joined_at + 1,
    };
    read_room(conn, (room, finals), phase, origin, counters, reader).await
}

/// Read one member's room with `reader` until it is complete after the
/// publishers stopped (`finals` of `room` known), or the run stops.
pub(crate) async fn read_room(
    conn: &mut WsConn,
    (room, finals): (usize, Arc<Vec<AtomicU64>>),
    phase: watch::Receiver<Phase>,
    origin: Instant,
    counters: &Counters,
    mut reader: impl RoomReader,
) -> MemberStats {
    let mut phase = PhaseWatch::new(phase);
    let mut s = MemberStats::new(conn.deflated());
    loop {
        let now_phase = phase.get();
        if now_phase == Phase::Stop {
            break;
        }
        let last = finals[room].load(Ordering::Acquire);
        if now_phase >= Phase::Drain && last != u64::MAX && reader.complete(&s, last) {
            break;
        }
        let measuring = now_phase == Phase::Measure;
        let before = s.delivered_total;
        let bytes_before = conn.bytes_received();
        // Frames of one read arrived together: one clock read for them all.
        let mut clock = Arrival { origin, at: None };
        let result = tokio::select! {
            r = conn.read_frames(|f| {
                if let Frame::Text(t) = f {
                    reader.on_text(&mut s, t, measuring, &mut clock);
                }
            }) => r,
            () = phase.changed() => Ok(()),
        };
        counters.delivered(s.delivered_total - before);
        if measuring {
            s.bytes_window += conn.bytes_received() - bytes_before;
        }
        if let Err(e) = result.and(conn.flush().await) {
            s.closed = Some(e.to_string());
            break;
        }
    }
    s
}

/// Publish to `room` at `rate` until the drain phase, then wait for acks.
pub(crate) async fn publisher_loop(
    conn: &mut WsConn,
    room: &str,
    filler: &str,
    rate: Rate,
    phase: watch::Receiver<Phase>,
    origin: Instant,
    counters: &Counters,
) -> PublisherStats {
    let mut phase = PhaseWatch::new(phase);
    let mut s = PublisherStats::default();
    let mut next_id: u64 = 100;
    let mut in_flight: usize = 0;
    // Open loop: spread publishers over the period (golden-ratio phases),
    // or every publisher would fire at the same instants and the server
    // would see synchronized bursts no real population produces.
    let start = match rate {
        Rate::PerSec(r) => {
            static PUBLISHER_INDEX: std::sync::atomic::AtomicU64 =
                std::sync::atomic::AtomicU64::new(0);
            let index = PUBLISHER_INDEX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let phase_frac = (index as f64 * 0.618_033_988_749_895).fract();
            tokio::time::Instant::now() + Duration::from_secs_f64(phase_frac / r)
        }
        Rate::Max(_) => tokio::time::Instant::now(),
    };
    let mut sent_open_loop: u64 = 0;
    let drain_deadline = std::cell::Cell::new(None::<tokio::time::Instant>);
    let mut frame = String::with_capacity(filler.len() + 128);
    loop {
        let current = phase.get();
        if current >= Phase::Drain {
            let deadline = *drain_deadline
                .get()
                .get_or_insert_with(|| tokio::time::Instant::now() + DRAIN_WAIT);
            drain_deadline.set(Some(deadline));
            if in_flight == 0 || tokio::time::Instant::now() >= deadline || current == Phase::Stop {
                break;
            }
        } else {
            let due = match rate {
                Rate::Max(window) => window.saturating_sub(in_flight),
                Rate::PerSec(r) => {
                    let elapsed = start.elapsed().as_secs_f64();
                    let due_total = (elapsed * r) as u64 + 1;
                    due_total.saturating_sub(sent_open_loop) as usize
                }
            };
            for _ in 0..due.min(MAX_WINDOW) {
                // Open loop: the intended send time, so queueing in the
                // generator counts as latency (no coordinated omission).
                let t = match rate {
                    Rate::Max(_) => nanos_since(origin),
                    Rate::PerSec(r) => {
                        let intended = start + Duration::from_secs_f64(sent_open_loop as f64 / r);
                        (intended.into_std().saturating_duration_since(origin)).as_nanos() as u64
                    }
                };
                frame.clear();
                use std::fmt::Write;
                let _ = write!(
                    frame,
                    r#"{{"type":"publish","room":"{room}","id":{next_id},"exclude_self":true,"data":{{"t":{t},"p":"{filler}"}}}}"#
                );
                conn.queue_text(frame.as_bytes());
                next_id += 1;
                in_flight += 1;
                sent_open_loop += 1;
                s.published_total += 1;
                if current == Phase::Measure {
                    s.published_window += 1;
                }
            }
            counters.published(due.min(MAX_WINDOW) as u64);
        }
        if let Err(e) = conn.flush().await {
            s.closed = Some(e.to_string());
            break;
        }
        let wake_at = match rate {
            Rate::PerSec(r) if current < Phase::Drain => {
                start + Duration::from_secs_f64(sent_open_loop as f64 / r)
            }
            _ => tokio::time::Instant::now() + Duration::from_secs(1),
        };
        let result = tokio::select! {
            r = conn.read_frames(|f| {
                let Frame::Text(t) = f else { return };
                if is_type(t, b"ack") {
                    in_flight = in_flight.saturating_sub(1);
                    if let Some(seq) = json_u64(t, &field::SEQ) {
                        s.last_seq = s.last_seq.max(seq);
                    }
                } else if is_type(t, b"error") {
                    in_flight = in_flight.saturating_sub(1);
                    s.errors += 1;
                }
            }) => r,
            _ = tokio::time::sleep_until(wake_at) => Ok(()),
            () = phase.changed() => Ok(()),
        };
        if let Err(e) = result {
            s.closed = Some(e.to_string());
            break;
        }
    }
    s
}
