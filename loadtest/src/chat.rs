//! `chat`: many small rooms and a realistic mix of actions at a fixed total
//! rate (open loop): 80% publish to the sender's room, 10% direct `send` to
//! a random user of the run, 5% `members` query, 5% leave + rejoin.
//!
//! Every member checks its room's seqs while it is continuously a member
//! (after a rejoin it starts again from the join ack's seq), every direct
//! message acknowledged must arrive, and every member must reach its room's
//! final seq.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::common::{
    self, Common, DRAIN_WAIT, MAX_CONNECTIONS, SETUP_TIMEOUT, Window, nanos_since,
};
use crate::fanout::{self, MAX_PAYLOAD, Phase, PhaseWatch};
use crate::progress::{self, Counters};
use crate::workers;
use crate::wsclient::{ClientError, Frame, WsConn, field, is_type, json_str, json_u64};

/// Highest total action rate.
const MAX_RATE: f64 = 1_000_000.0;
/// Most actions one user sends per wake-up when it fell behind.
const MAX_ACTIONS_PER_WAKE: u64 = 64;
/// Most seqs remembered while a rejoin is in flight.
const MAX_REJOIN_SEEN: usize = 4096;
/// How often the coordinator checks whether the drain is done.
const POLL: Duration = Duration::from_millis(10);
/// Action kinds, in the low two bits of each request id.
const PUBLISH: u64 = 0;
const SEND: u64 = 1;
const MEMBERS: u64 = 2;
const CHURN: u64 = 3;

/// `chat` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Rooms.
    #[arg(long, default_value_t = 200)]
    pub(crate) rooms: usize,
    /// Members per room (one connection each; users = rooms x room size).
    #[arg(long, default_value_t = 10)]
    pub(crate) room_size: usize,
    /// Actions per second over all users (open loop).
    #[arg(long, default_value_t = 2000.0)]
    pub(crate) rate: f64,
    /// Bytes of filler in each published message's data.
    #[arg(long, default_value_t = 32)]
    pub(crate) payload: usize,
}

/// State every user task shares with the coordinator.
struct Shared {
    origin: Instant,
    prefix: String,
    users: usize,
    filler: String,
    /// Seconds between two actions of one user.
    period: f64,
    counters: Arc<Counters>,
    /// Highest seq acknowledged to a publisher, per room.
    acked_max: Vec<AtomicU64>,
    /// Final seq per room, `u64::MAX` until every user is quiet.
    finals: Vec<AtomicU64>,
    /// Users that stopped acting and have no request in flight.
    quiet: AtomicUsize,
    /// Users that reached their room's final seq.
    caught_up: AtomicUsize,
    direct_acked: AtomicU64,
    direct_received: AtomicU64,
}

/// What one user did and saw.
struct UserStats {
    actions: [u64; 4],
    actions_window: u64,
    publishes_window: u64,
    delivered_total: u64,
    delivered_window: u64,
    missing: u64,
    out_of_order: u64,
    rejoins: u64,
    members_replies: u64,
    behind: bool,
    errors: BTreeMap<String, u64>,
    closed: Option<String>,
    latency_us: Histogram<u64>,
}

/// Seq tracking of one member.
struct Track {
    expected: u64,
    /// Id of the `join` of a rejoin in flight.
    rejoin_id: Option<u64>,
    /// Seqs received while a rejoin was in flight.
    seen: Vec<u64>,
    /// The rejoin failed: no longer a member, nothing more to check.
    lost: bool,
}

impl Track {
    fn message(&mut self, seq: u64, s: &mut UserStats) {
        if self.lost {
            return;
        }
        if self.rejoin_id.is_some() {
            if self.seen.len() < MAX_REJOIN_SEEN {
                self.seen.push(seq);
            }
            return;
        }
        if seq < self.expected {
            s.out_of_order += 1;
            return;
        }
        s.missing += seq - self.expected;
        self.expected = seq + 1;
    }

    /// The rejoin's `join` ack: the room was at `seq` when it took effect.
    fn rejoined(&mut self, seq: u64, s: &mut UserStats) {
        self.rejoin_id = None;
        self.expected = seq + 1;
        let mut seen = std::mem::take(&mut self.seen);
        seen.sort_unstable();
        for later in seen.into_iter().filter(|&q| q > seq) {
            self.message(later, s);
        }
    }
}

/// Run the scenario; returns the JSON result and whether it was lossless.
pub(crate) async fn run(args: ChatArgs) -> Result<(Value, bool), String> {
    let (target, sources) = args.common.resolve()?;
    if args.rooms == 0 || args.room_size == 0 {
        return Err("--rooms and --room-size must be at least 1".into());
    }
    let users = args.rooms.saturating_mul(args.room_size);
    if users > MAX_CONNECTIONS {
        return Err(format!("{users} connections: at most {MAX_CONNECTIONS}"));
    }
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(format!(
            "--rate must be actions per second, 0 < rate <= {MAX_RATE}"
        ));
    }
    if args.payload > MAX_PAYLOAD {
        return Err(format!("--payload must be at most {MAX_PAYLOAD}"));
    }
    let prefix = args.common.user_prefix.clone();
    println!(
        "chat: {} rooms x {} members ({users} users), {} actions/s (80% publish, 10% send, 5% members, 5% leave+rejoin)",
        args.rooms, args.room_size, args.rate
    );
    let gate = Arc::new(Semaphore::new(args.common.connect_concurrency));
    let mut setups = Vec::with_capacity(users);
    for i in 0..users {
        let target = target.for_user(&format!("{prefix}-c{i}"));
        let source = sources[i % sources.len()];
        let room = room_name(&prefix, i / args.room_size);
        let gate = gate.clone();
        setups.push(workers::spawn(i, async move {
            let _permit = gate.acquire_owned().await;
            let open = fanout::open_member(&target, source, i as u32, &room);
            tokio::time::timeout(SETUP_TIMEOUT, open)
                .await
                .unwrap_or(Err(ClientError::Protocol("join timed out")))
        }));
    }
    let mut conns = Vec::with_capacity(users);
    for (i, s) in setups.into_iter().enumerate() {
        let joined = s
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("user {i}: {e}"))?;
        conns.push(joined);
    }
    println!("  {users} users joined");

    let shared = Arc::new(Shared {
        origin: Instant::now(),
        prefix: prefix.clone(),
        users,
        filler: "x".repeat(args.payload),
        period: users as f64 / args.rate,
        counters: Arc::new(Counters::default()),
        acked_max: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        finals: (0..args.rooms).map(|_| AtomicU64::new(u64::MAX)).collect(),
        quiet: AtomicUsize::new(0),
        caught_up: AtomicUsize::new(0),
        direct_acked: AtomicU64::new(0),
        direct_received: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, (conn, seq))| {
            let shared = shared.clone();
            let phase = phase_rx.clone();
            let room = i / args.room_size;
            // Users take turns: user i acts first at i / rate.
            let first = start + Duration::from_secs_f64(i as f64 / args.rate);
            workers::spawn(i, user_loop(conn, i, room, seq, first, shared, phase))
        })
        .collect();

    let ticker = progress::spawn(shared.counters.clone(), progress::DELIVERIES);
    tokio::time::sleep(Duration::from_secs(args.common.warmup)).await;
    let window = Window::start(&args.common);
    let _ = phase_tx.send(Phase::Measure);
    println!("  measuring for {} s", args.common.duration);
    tokio::time::sleep(Duration::from_secs(args.common.duration)).await;
    let figures = window.finish();
    let _ = phase_tx.send(Phase::Drain);
    // Wait for every user to get its acks, then publish the final seqs.
    wait_until(|| shared.quiet.load(Ordering::Acquire) >= users).await;
    for (fin, max) in shared.finals.iter().zip(&shared.acked_max) {
        fin.store(max.load(Ordering::Acquire), Ordering::Release);
    }
    let _ = phase_tx.send(Phase::Drain);
    wait_until(|| {
        shared.caught_up.load(Ordering::Acquire) >= users
            && shared.direct_received.load(Ordering::Acquire)
                >= shared.direct_acked.load(Ordering::Acquire)
    })
    .await;
    let _ = phase_tx.send(Phase::Stop);

    let mut latency = fanout::latency_histogram();
    let mut actions = [0u64; 4];
    let (mut actions_window, mut publishes_window) = (0u64, 0u64);
    let (mut delivered_total, mut delivered_window) = (0u64, 0u64);
    let (mut missing, mut out_of_order, mut behind) = (0u64, 0u64, 0u64);
    let (mut rejoins, mut members_replies) = (0u64, 0u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut closed = Vec::new();
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())?;
        for (a, n) in actions.iter_mut().zip(s.actions) {
            *a += n;
        }
        actions_window += s.actions_window;
        publishes_window += s.publishes_window;
        delivered_total += s.delivered_total;
        delivered_window += s.delivered_window;
        missing += s.missing;
        out_of_order += s.out_of_order;
        behind += u64::from(s.behind);
        rejoins += s.rejoins;
        members_replies += s.members_replies;
        for (code, n) in s.errors {
            *errors.entry(code).or_default() += n;
        }
        closed.extend(s.closed);
        let _ = latency.add(&s.latency_us);
    }
    ticker.abort();
    let direct_acked = shared.direct_acked.load(Ordering::Acquire);
    let direct_received = shared.direct_received.load(Ordering::Acquire);
    let errors_total: u64 = errors.values().sum();
    let lossless = missing == 0
        && out_of_order == 0
        && behind == 0
        && closed.is_empty()
        && direct_received == direct_acked;
    let secs = figures.secs.max(1e-9);

    println!("results");
    println!(
        "  actions/s          {:.0} (publish {}, send {}, members {}, leave+rejoin {})",
        actions_window as f64 / secs,
        actions[PUBLISH as usize],
        actions[SEND as usize],
        actions[MEMBERS as usize],
        actions[CHURN as usize]
    );
    println!("  publishes/s        {:.0}", publishes_window as f64 / secs);
    println!(
        "  deliveries/s       {:.0} ({delivered_total} delivered in all)",
        delivered_window as f64 / secs
    );
    common::print_latency("latency ms", &latency);
    println!("  direct messages    {direct_received} received of {direct_acked} acknowledged");
    println!("  members replies    {members_replies}, rejoins {rejoins}");
    print!("  error frames       {errors_total}");
    for (code, n) in &errors {
        print!(", {code} {n}");
    }
    println!();
    println!(
        "  checks             missing {missing}, out of order/duplicate {out_of_order}, behind final seq {behind}, closed {}",
        closed.len()
    );
    for c in closed.iter().take(5) {
        println!("    closed: {c}");
    }
    figures.print();

    let parameters = json!({
        "rooms": args.rooms, "room_size": args.room_size, "users": users,
        "rate": args.rate, "payload": args.payload,
        "mix": {"publish": 0.80, "send": 0.10, "members": 0.05, "churn": 0.05},
        "duration": args.common.duration, "warmup": args.common.warmup,
    });
    let mut result = common::environment(&args.common, "chat", parameters);
    result["results"] = json!({
        "actions": {
            "publish": actions[PUBLISH as usize], "send": actions[SEND as usize],
            "members": actions[MEMBERS as usize], "churn": actions[CHURN as usize],
        },
        "actions_window": actions_window,
        "actions_per_sec": actions_window as f64 / secs,
        "publishes_per_sec": publishes_window as f64 / secs,
        "delivered_total": delivered_total,
        "delivered_window": delivered_window,
        "deliveries_per_sec": delivered_window as f64 / secs,
        "latency_ms": common::latency_json(&latency),
        "direct": {"acked": direct_acked, "received": direct_received},
        "members_replies": members_replies,
        "rejoins": rejoins,
        "errors_by_code": errors,
        "errors_total": errors_total,
        "checks": {
            "missing": missing, "out_of_order": out_of_order,
            "behind_final_seq": behind, "closed_connections": closed.len(),
            "direct_missing": direct_acked.saturating_sub(direct_received),
            "lossless": lossless,
        },
        "window": figures.to_json(),
        "timeline": shared.counters.timeline_json(),
    });
    Ok((result, lossless))
}

fn room_name(prefix: &str, room: usize) -> String {
    format!("{prefix}-chat-{room}")
}

/// Poll `done` until it holds or [`DRAIN_WAIT`] passes.
async fn wait_until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}

/// xorshift64*: a small, seedable generator for the action mix.
pub(crate) fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

async fn user_loop(
    mut conn: WsConn,
    me: usize,
    room: usize,
    joined_at: u64,
    first: tokio::time::Instant,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) -> UserStats {
    let mut phase = PhaseWatch::new(phase);
    let mut s = UserStats {
        actions: [0; 4],
        actions_window: 0,
        publishes_window: 0,
        delivered_total: 0,
        delivered_window: 0,
        missing: 0,
        out_of_order: 0,
        rejoins: 0,
        members_replies: 0,
        behind: false,
        errors: BTreeMap::new(),
        closed: None,
        latency_us: fanout::latency_histogram(),
    };
    let mut track = Track {
        expected: joined_at + 1,
        rejoin_id: None,
        seen: Vec::new(),
        lost: false,
    };
    let room_name = room_name(&shared.prefix, room);
    let mut rng = (me as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut counter: u64 = 1;
    let mut done_actions: u64 = 0;
    let mut in_flight: u64 = 0;
    let mut max_acked: u64 = 0;
    let (mut quiet, mut caught_up) = (false, false);
    let mut frame = String::with_capacity(shared.filler.len() + 160);
    loop {
        let current = phase.get();
        if current == Phase::Stop {
            break;
        }
        if current >= Phase::Drain {
            if !quiet && in_flight == 0 {
                quiet = true;
                shared.acked_max[room].fetch_max(max_acked, Ordering::AcqRel);
                shared.quiet.fetch_add(1, Ordering::AcqRel);
            }
            let fin = shared.finals[room].load(Ordering::Acquire);
            let done = track.lost || (track.rejoin_id.is_none() && track.expected > fin);
            if !caught_up && fin != u64::MAX && done {
                caught_up = true;
                shared.caught_up.fetch_add(1, Ordering::AcqRel);
            }
        } else {
            let mut published = 0;
            for _ in 0..MAX_ACTIONS_PER_WAKE {
                let due = first + Duration::from_secs_f64(done_actions as f64 * shared.period);
                if due > tokio::time::Instant::now() {
                    break;
                }
                // The intended time, so lag in the generator counts.
                let t = due
                    .into_std()
                    .saturating_duration_since(shared.origin)
                    .as_nanos() as u64;
                let kind = match next_random(&mut rng) % 100 {
                    0..80 => PUBLISH,
                    80..90 => SEND,
                    90..95 => MEMBERS,
                    _ => CHURN,
                };
                let id = (counter << 2) | kind;
                counter += 1;
                frame.clear();
                match kind {
                    PUBLISH => {
                        let _ = write!(
                            frame,
                            r#"{{"type":"publish","room":"{room_name}","id":{id},"data":{{"t":{t},"p":"{}"}}}}"#,
                            shared.filler
                        );
                        published += 1;
                        if current == Phase::Measure {
                            s.publishes_window += 1;
                        }
                    }
                    SEND => {
                        let to = (next_random(&mut rng) % shared.users as u64) as usize;
                        let _ = write!(
                            frame,
                            r#"{{"type":"send","to":"{}-c{to}","id":{id},"data":{{"t":{t}}}}}"#,
                            shared.prefix
                        );
                    }
                    MEMBERS => {
                        let _ = write!(
                            frame,
                            r#"{{"type":"members","room":"{room_name}","id":{id}}}"#
                        );
                    }
                    _ if track.rejoin_id.is_some() || track.lost => {
                        // One rejoin at a time: ask for the members instead.
                        let id = (id & !3) | MEMBERS;
                        let _ = write!(
                            frame,
                            r#"{{"type":"members","room":"{room_name}","id":{id}}}"#
                        );
                    }
                    _ => {
                        let join_id = (counter << 2) | CHURN;
                        counter += 1;
                        let _ = write!(
                            frame,
                            r#"{{"type":"leave","room":"{room_name}","id":{id}}}"#
                        );
                        conn.queue_text(frame.as_bytes());
                        frame.clear();
                        let _ = write!(
                            frame,
                            r#"{{"type":"join","room":"{room_name}","id":{join_id}}}"#
                        );
                        track.rejoin_id = Some(join_id);
                        in_flight += 1;
                        s.rejoins += 1;
                    }
                }
                conn.queue_text(frame.as_bytes());
                in_flight += 1;
                s.actions[kind as usize] += 1;
                done_actions += 1;
                if current == Phase::Measure {
                    s.actions_window += 1;
                }
            }
            shared.counters.published(published);
        }
        if let Err(e) = conn.flush().await {
            s.closed = Some(e.to_string());
            break;
        }
        let measuring = current == Phase::Measure;
        let before = s.delivered_total;
        let wake_at = if current < Phase::Drain {
            first + Duration::from_secs_f64(done_actions as f64 * shared.period)
        } else {
            tokio::time::Instant::now() + DRAIN_WAIT
        };
        let result = tokio::select! {
            r = conn.read_frames(|f| {
                let Frame::Text(t) = f else { return };
                if is_type(t, b"message") {
                    let Some(seq) = json_u64(t, &field::SEQ) else { return };
                    s.delivered_total += 1;
                    if measuring {
                        s.delivered_window += 1;
                        if let Some(sent) = json_u64(t, &field::T) {
                            let now = nanos_since(shared.origin);
                            let _ = s.latency_us.record((now.saturating_sub(sent) / 1000).max(1));
                        }
                    }
                    track.message(seq, &mut s);
                } else if is_type(t, b"direct") {
                    shared.direct_received.fetch_add(1, Ordering::AcqRel);
                } else if is_type(t, b"ack") {
                    let Some(id) = json_u64(t, &field::ID) else { return };
                    in_flight = in_flight.saturating_sub(1);
                    match id & 3 {
                        PUBLISH => max_acked = max_acked.max(json_u64(t, &field::SEQ).unwrap_or(0)),
                        SEND => {
                            shared.direct_acked.fetch_add(1, Ordering::AcqRel);
                        }
                        MEMBERS => s.members_replies += 1,
                        _ if track.rejoin_id == Some(id) => {
                            track.rejoined(json_u64(t, &field::SEQ).unwrap_or(0), &mut s);
                        }
                        _ => {}
                    }
                } else if is_type(t, b"error") {
                    let code = json_str(t, &field::CODE).unwrap_or(b"?");
                    let code = String::from_utf8_lossy(code).into_owned();
                    *s.errors.entry(code).or_default() += 1;
                    if let Some(id) = json_u64(t, &field::ID) {
                        in_flight = in_flight.saturating_sub(1);
                        if track.rejoin_id == Some(id) {
                            track.rejoin_id = None;
                            track.lost = true;
                        }
                    }
                }
            }) => r,
            _ = tokio::time::sleep_until(wake_at) => Ok(()),
            () = phase.changed() => Ok(()),
        };
        shared.counters.delivered(s.delivered_total - before);
        if let Err(e) = result {
            s.closed = Some(e.to_string());
            break;
        }
    }
    s.behind = !caught_up;
    s
}
