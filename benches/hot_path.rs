//! Hot-path benches: the per-frame, per-message and per-recipient costs that
//! DESIGN.md invariant 7 ("encode once") is about.
//!
//! * `decode/publish_frame`: what a connection reader does per client frame
//!   (unmask + reassemble + UTF-8 check, then parse and validate the JSON).
//! * `encode/message_frame`: the one serialization of a room message.
//! * `fanout/1000_local_members`: the per-recipient cost of `Delivery::Room`
//!   on a shard (a refcount and a queue push), minus the writer.
//! * `fanout/1000_pusher_members`: the same for Pusher members, including
//!   the message's one Pusher encoding (made by the first member).
//! * `index/join_leave_lookup`: the shared lock-free indexes, from one and
//!   from two threads.
//! * `inbox/send_drain`: a shard inbox, one thread sending and draining.
//!
//! Run with `cargo bench --bench hot_path` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use shardcast::config::OverflowPolicy;
use shardcast::internals::DeliveryInbox;
use shardcast::internals::pusher::SharedFrame;
use shardcast::internals::{ConnCaps, RoomIndex, RoomMeta, UserIndex};
use shardcast::internals::{OutQueue, Pushed};
use shardcast::protocol::decode::{ClientFrame, decode_client_frame};
use shardcast::protocol::encode;
use shardcast::ws::{Message, MessageReader};

/// The allocator of the `shardcast` binary, so allocation costs match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The client frame of the decode bench.
const PUBLISH: &str =
    r#"{"type":"publish","room":"lobby","id":12345,"data":{"text":"hello world","n":42}}"#;

/// About 64 bytes of `data` for the encode and fan-out benches.
const DATA: &[u8] = br#"{"text":"hello world, this is one chat line","n":42,"ok":true}"#;

/// The same data as a Pusher API event carries it (a JSON string).
const PUSHER_DATA: &[u8] =
    br#""{\"text\":\"hello world, this is one chat line\",\"n\":42,\"ok\":true}""#;

/// The default `limits.max_message_bytes`.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Recipients of the fan-out bench.
const MEMBERS: usize = 1000;

/// The default outbound queue bounds (`limits.outbound_queue_*`).
const QUEUE_FRAMES: usize = 4096;
const QUEUE_BYTES: usize = 1024 * 1024;

/// Rooms in the index for the lookup bench (a power of two: keys are picked
/// with a mask).
const ROOMS: usize = 4096;

/// Distinct users / IPs each thread cycles through in the connect benches.
const KEYS_PER_THREAD: usize = 1024;

/// Items per send+drain round of the inbox bench (one pump batch).
const INBOX_BATCH: usize = 256;

/// Short runs, no plots (rendering them took ~3.5 s per bench): the whole
/// file finishes in under two minutes on two cores.
fn config() -> Criterion {
    Criterion::default()
        .without_plots()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

/// A masked client frame (RFC 6455 section 5.2), as a browser sends it.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One frame through the reader and the protocol decoder, as a connection's
/// read loop does it. Returns the room, so nothing is optimized away.
fn read_publish(reader: &mut MessageReader, buf: &mut BytesMut) -> usize {
    let message = reader
        .next(buf)
        .expect("a valid frame")
        .expect("a whole frame");
    let Message::Text(payload) = message else {
        panic!("expected a text message");
    };
    let text = std::str::from_utf8(&payload).expect("UTF-8 checked by the reader");
    match decode_client_frame(text).expect("a valid publish") {
        ClientFrame::Publish { room, data, .. } => room.len() + data.len(),
        other => panic!("expected a publish, got {other:?}"),
    }
}

fn bench_decode(c: &mut Criterion) {
    let wire = client_frame(0x1, PUBLISH.as_bytes());
    // Check the frame once, outside the measurement.
    {
        let mut reader = MessageReader::new(MAX_MESSAGE_BYTES);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            read_publish(&mut reader, &mut buf),
            "lobby".len() + r#"{"text":"hello world","n":42}"#.len()
        );
        assert!(buf.is_empty());
    }
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let mut reader = MessageReader::new(MAX_MESSAGE_BYTES);
    group.bench_function("publish_frame", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| black_box(read_publish(&mut reader, &mut buf)),
            BatchSize::SmallInput,
        )
    });
    // The two halves of `publish_frame`, to see where its time goes.
    group.bench_function("publish_frame/ws_only", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| reader.next(&mut buf).expect("a valid frame"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("publish_frame/json_only", |b| {
        b.iter(|| match decode_client_frame(black_box(PUBLISH)) {
            Ok(ClientFrame::Publish { room, .. }) => room.len(),
            _ => panic!("expected a publish"),
        })
    });
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let ts = encode::now_ms();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    group.bench_function("message_frame", |b| {
        b.iter(|| {
            seq += 1;
            encode::message(
                black_box("lobby"),
                black_box(seq),
                black_box("alice"),
                black_box(ts),
                black_box(DATA),
            )
        })
    });
    group.finish();
}

fn bench_fanout(c: &mut Criterion) {
    let room: Arc<str> = Arc::from("lobby");
    let frame: Bytes = encode::message(&room, 1, "alice", encode::now_ms(), DATA);
    let mut queues: Vec<OutQueue> = (0..MEMBERS)
        .map(|_| OutQueue::new(QUEUE_FRAMES, QUEUE_BYTES))
        .collect();
    let mut out: std::collections::VecDeque<(Bytes, u64)> =
        std::collections::VecDeque::with_capacity(QUEUE_FRAMES);
    // Pre-warm: give every VecDeque its capacity (and promote the frame's
    // Bytes to its shared form), so the measured pushes allocate nothing.
    for q in &mut queues {
        for seq in 1..=8 {
            let pushed = q.push_room(&room, seq, &frame, OverflowPolicy::Disconnect, 1);
            assert!(matches!(pushed, Pushed::Queued { .. }));
        }
        q.take_all(&mut out);
        out.clear();
    }
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    let mut seq = 8u64;
    group.bench_function("1000_local_members", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            let mut queued = 0u64;
            for _ in 0..iters {
                seq += 1;
                let start = Instant::now();
                for q in &mut queues {
                    let pushed = q.push_room(&room, seq, &frame, OverflowPolicy::Disconnect, 1);
                    queued += u64::from(matches!(pushed, Pushed::Queued { .. }));
                }
                measured += start.elapsed();
                // The writers' side, not measured: empty every queue again.
                for q in &mut queues {
                    q.take_all(&mut out);
                    out.clear();
                }
            }
            assert_eq!(queued, iters * MEMBERS as u64, "every push must be queued");
            measured
        })
    });
    // The same fan-out to Pusher members: each message's Pusher form is
    // made once (by the first member) and shared by the others.
    let pusher_room: Arc<str> = Arc::from("#1#lobby");
    group.bench_function("1000_pusher_members", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            let mut queued = 0u64;
            for _ in 0..iters {
                seq += 1;
                let frame = SharedFrame::message(&pusher_room, seq, PUSHER_DATA, "chat");
                let start = Instant::now();
                for q in &mut queues {
                    let Some(bytes) = frame.pusher(&pusher_room) else {
                        continue;
                    };
                    let pushed =
                        q.push_room(&pusher_room, seq, bytes, OverflowPolicy::Disconnect, 1);
                    queued += u64::from(matches!(pushed, Pushed::Queued { .. }));
                }
                measured += start.elapsed();
                for q in &mut queues {
                    q.take_all(&mut out);
                    out.clear();
                }
            }
            assert_eq!(queued, iters * MEMBERS as u64, "every push must be queued");
            measured
        })
    });
    group.finish();
}

/// Run `work(thread, iters)` on `threads` threads started together; the
/// time is the slowest thread's.
fn timed_threads<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let barrier = Barrier::new(threads);
    let work = &work;
    let barrier = &barrier;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(t, iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

fn room_meta(home: usize) -> Arc<RoomMeta> {
    Arc::new(RoomMeta {
        home,
        private: false,
        max_members: 10_000,
        overflow: OverflowPolicy::Disconnect,
        explicit: false,
        members: AtomicU32::new(1),
        users: AtomicU32::new(1),
        seq: AtomicU64::new(0),
        creator: None,
    })
}

fn bench_index(c: &mut Criterion) {
    let rooms = RoomIndex::new(1 << 20);
    let names: Vec<Arc<str>> = (0..ROOMS)
        .map(|i| Arc::from(format!("room-{i}").as_str()))
        .collect();
    for (i, name) in names.iter().enumerate() {
        rooms
            .insert(name.clone(), room_meta(i % 2))
            .expect("below max_rooms");
    }
    let user_names: Vec<Vec<Arc<str>>> = (0..2)
        .map(|t| {
            (0..KEYS_PER_THREAD)
                .map(|i| Arc::from(format!("user-{t}-{i}").as_str()))
                .collect()
        })
        .collect();
    let ips: Vec<Vec<IpAddr>> = (0..2u8)
        .map(|t| {
            (0..KEYS_PER_THREAD)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, t, (i >> 8) as u8, i as u8)))
                .collect()
        })
        .collect();

    let room_get = |t: usize, iters: u64| {
        // Each thread starts elsewhere in the key set.
        let offset = t * ROOMS / 2;
        for i in 0..iters as usize {
            let name = &names[(i + offset) & (ROOMS - 1)];
            let meta = rooms.get(black_box(name)).expect("the room exists");
            black_box(meta.home);
        }
    };
    let user_pair = |users: &UserIndex, t: usize, iters: u64| {
        let mine = &user_names[t];
        for i in 0..iters as usize {
            let user = &mine[i % KEYS_PER_THREAD];
            assert!(users.try_connect(black_box(user), 0));
            users.disconnect(user);
        }
    };
    let caps_pair = |caps: &ConnCaps, t: usize, iters: u64| {
        let mine = &ips[t];
        for i in 0..iters as usize {
            let ip = mine[i % KEYS_PER_THREAD];
            caps.try_acquire(t, black_box(ip)).expect("below every cap");
            caps.release(t, ip);
        }
    };

    // A connect/disconnect pair inserts and removes a map entry each time.
    // Each bench gets a fresh index, so the 1- and 2-thread figures start
    // from the same state. With papaya 0.2.5 in its default (incremental)
    // resize mode these pairs are not steady: `compute` never helps finish a
    // resize, so a map changed only through `compute` gets slower (and
    // bigger) with every insert/remove cycle.
    let mut group = c.benchmark_group("index/join_leave_lookup");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("room_get/{threads}_threads"), |b| {
            b.iter_custom(|iters| timed_threads(threads, iters, room_get))
        });
        let users = UserIndex::new();
        group.bench_function(format!("user_connect_disconnect/{threads}_threads"), |b| {
            b.iter_custom(|iters| timed_threads(threads, iters, |t, n| user_pair(&users, t, n)))
        });
        assert!(users.is_empty(), "every connect was undone");
        // Per-IP cap on (it is off by default): the dearer path, with a map.
        let caps = ConnCaps::new(2, u64::MAX, 0, 1000);
        group.bench_function(format!("caps_acquire_release/{threads}_threads"), |b| {
            b.iter_custom(|iters| timed_threads(threads, iters, |t, n| caps_pair(&caps, t, n)))
        });
        assert_eq!(caps.total(), 0, "every acquire was released");
    }
    group.finish();
}

fn bench_inbox(c: &mut Criterion) {
    let frame: Bytes = encode::message("lobby", 1, "alice", encode::now_ms(), DATA);
    let mut inbox = DeliveryInbox::new("lobby", frame);
    let mut group = c.benchmark_group("inbox");
    group.throughput(Throughput::Elements(INBOX_BATCH as u64));
    group.bench_function("send_drain", |b| {
        b.iter(|| {
            // Never full (one batch in a 16 Ki inbox): ready at once.
            let taken = inbox.send_and_drain(INBOX_BATCH);
            assert_eq!(taken, INBOX_BATCH);
        })
    });
    group.finish();
}

criterion_group! {
    name = hot_path;
    config = config();
    targets = bench_decode, bench_encode, bench_fanout, bench_index, bench_inbox
}
criterion_main!(hot_path);
