//! DESIGN.md invariant 7: the message path makes no per-recipient
//! allocation and no per-recipient serialization.
//!
//! A frame is encoded once (`encode::message`) and handed to every member's
//! outbound queue as a refcounted `Bytes`. This test counts heap
//! allocations (with a counting global allocator, in this test binary only)
//! while one encoded frame is pushed into 1,000 warmed-up member queues,
//! and fails if any push allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use shardcast::config::OverflowPolicy;
use shardcast::internals::{OutQueue, Pushed};
use shardcast::protocol::encode;

/// Counts allocations while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// wrapper only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MEMBERS: usize = 1_000;

/// The tests of this binary share the counter: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn pushing_one_frame_to_a_thousand_members_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let room: Arc<str> = Arc::from("lobby");
    let mut queues: Vec<OutQueue> = (0..MEMBERS).map(|_| OutQueue::new(64, 1 << 20)).collect();
    let mut drained = std::collections::VecDeque::with_capacity(64);
    // Warm up: each queue's ring gets its capacity once (a connection's
    // first messages), then is emptied by its writer.
    for seq in 1..=8 {
        let frame = encode::message(&room, seq, "alice", 0, b"{}");
        for q in &mut queues {
            let pushed = q.push_room(&room, seq, &frame, OverflowPolicy::Disconnect, 1);
            assert!(matches!(pushed, Pushed::Queued { .. }));
        }
    }
    for q in &mut queues {
        q.take_all(&mut drained);
        drained.clear();
    }

    // One message: encoded once (allocations allowed), then fanned out.
    let frame: Bytes = encode::message(&room, 9, "alice", 0, br#"{"text":"hi"}"#);
    let _shared = frame.clone(); // the refcounted form every member shares
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let mut queued = 0;
    for q in &mut queues {
        let pushed = q.push_room(&room, 9, &frame, OverflowPolicy::Disconnect, 1);
        queued += usize::from(matches!(pushed, Pushed::Queued { .. }));
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(queued, MEMBERS);
    assert_eq!(
        allocations, 0,
        "pushing one frame to {MEMBERS} members allocated {allocations} times"
    );

    // The counter does see allocations: a queue's very first push grows its
    // ring (once per connection, not per message).
    let mut cold = OutQueue::new(64, 1 << 20);
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let _ = cold.push_room(&room, 10, &frame, OverflowPolicy::Disconnect, 1);
    COUNTING.store(false, Ordering::Relaxed);
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > 0,
        "the counter counts"
    );
}

/// The same with members that negotiated permessage-deflate: the room frame
/// is compressed once (by the first of them), and pushing its compressed
/// form to every other member allocates nothing.
#[test]
fn compressed_members_share_one_compressed_frame_without_allocating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use shardcast::internals::RoomFrame;
    let room: Arc<str> = Arc::from("lobby");
    let mut queues: Vec<OutQueue> = (0..MEMBERS).map(|_| OutQueue::new(64, 1 << 20)).collect();
    let mut drained = std::collections::VecDeque::with_capacity(64);
    let payload = format!(r#"{{"text":"{}"}}"#, "hello compressed room ".repeat(100));
    for seq in 1..=8 {
        let frame = RoomFrame::new(encode::message(&room, seq, "alice", 0, payload.as_bytes()));
        let deflated = frame.deflated(256).expect("compresses").clone();
        for q in &mut queues {
            let pushed = q.push_room(&room, seq, &deflated, OverflowPolicy::Disconnect, 1);
            assert!(matches!(pushed, Pushed::Queued { .. }));
        }
    }
    for q in &mut queues {
        q.take_all(&mut drained);
        drained.clear();
    }

    let frame = RoomFrame::new(encode::message(&room, 9, "alice", 0, payload.as_bytes()));
    // The first compressed member compresses (allocations allowed, once).
    let first = frame.deflated(256).expect("compresses").clone();
    assert!(first.len() < frame.plain().len() / 4, "it is compressed");
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let mut queued = 0;
    for q in &mut queues {
        let bytes = frame.deflated(256).unwrap_or(frame.plain());
        let pushed = q.push_room(&room, 9, bytes, OverflowPolicy::Disconnect, 1);
        queued += usize::from(matches!(pushed, Pushed::Queued { .. }));
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(queued, MEMBERS);
    assert_eq!(
        allocations, 0,
        "pushing one compressed frame to {MEMBERS} members allocated {allocations} times"
    );
    // Every member got the very same buffer: compressed once.
    let mut inflight = std::collections::VecDeque::new();
    queues[MEMBERS - 1].take_all(&mut inflight);
    assert_eq!(inflight[0].0.as_ptr(), first.as_ptr());
}

/// The same for Pusher members: the first one makes the message's Pusher
/// form, every other (on any shard) takes it without allocating.
#[test]
fn pusher_members_share_one_encoding_of_a_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use shardcast::internals::pusher::SharedFrame;
    let room: Arc<str> = Arc::from("#1#news");
    let mut queues: Vec<OutQueue> = (0..MEMBERS).map(|_| OutQueue::new(64, 1 << 20)).collect();
    let mut drained = std::collections::VecDeque::with_capacity(64);
    for seq in 1..=8 {
        let frame = SharedFrame::message(&room, seq, br#""warm""#, "tick");
        for q in &mut queues {
            let bytes = frame.pusher(&room).expect("a Pusher form");
            let pushed = q.push_room(&room, seq, bytes, OverflowPolicy::Disconnect, 1);
            assert!(matches!(pushed, Pushed::Queued { .. }));
        }
    }
    for q in &mut queues {
        q.take_all(&mut drained);
        drained.clear();
    }
    let frame = SharedFrame::message(&room, 9, br#""{\"text\":\"hi\"}""#, "flash");
    // The first Pusher member makes the Pusher form: allocations allowed.
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let first = frame.pusher(&room).expect("a Pusher form").clone();
    COUNTING.store(false, Ordering::Relaxed);
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > 0,
        "the counter counts"
    );
    // Every other member, on this shard or another, takes the same bytes.
    let other_shard = frame.clone();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let mut queued = 0;
    for (i, q) in queues.iter_mut().enumerate() {
        let shared = if i % 2 == 0 { &frame } else { &other_shard };
        let bytes = shared.pusher(&room).expect("a Pusher form");
        let pushed = q.push_room(&room, 9, bytes, OverflowPolicy::Disconnect, 1);
        queued += usize::from(matches!(pushed, Pushed::Queued { .. }));
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(queued, MEMBERS);
    assert_eq!(
        allocations, 0,
        "{MEMBERS} Pusher members of one message allocated {allocations} times"
    );
    assert_eq!(frame.pusher(&room), Some(&first), "one encoding, shared");
    assert!(frame.native().is_some());
}
