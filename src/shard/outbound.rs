//! The outbound queue of one connection, and its overflow policy.
//!
//! Pure: no I/O, no clock. The connection's writer takes batches from it;
//! fan-out pushes into it.
//!
//! Two kinds of frames share it. **Traffic** (room messages, presence,
//! direct messages, notifications, the server's heartbeat ping) comes from
//! others: when it does not fit, the room's overflow policy decides (4000
//! or drop): that is what makes a slow consumer. **Replies** answer the
//! connection's own frames (`ack`, `error`, `pong`, WebSocket pongs, join
//! acks and their catch-up): they are always queued, and the reader stops
//! reading the client while replies fill the queue's bounds
//! ([`OutQueue::replies_full`]), so a client that sends a burst and reads
//! gets every answer instead of a 4000.
//!
//! **Invariant:** traffic never takes more than `max_frames` frames or
//! `max_bytes` bytes, except one frame of any size when no traffic is
//! queued; replies take at most the same bounds plus the replies to the
//! connection's operations still in flight when the reader stopped (at most
//! the shard inboxes' capacity); and the close frame that ends a
//! connection.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::OverflowPolicy;
use crate::protocol::encode;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; `wake` when the writer must be woken (the queue was empty).
    Queued {
        /// The queue was empty before: the writer may be asleep.
        wake: bool,
    },
    /// Not queued, by the room's `drop` policy; a `gap` will follow.
    Dropped,
    /// Did not fit and the policy says close with 4000.
    Overflow,
    /// The connection is closing; the frame was discarded.
    Closed,
}

/// Messages of one room dropped for this client, not yet reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingGap {
    room: Arc<str>,
    from: u64,
    to: u64,
}

/// A queued frame and when its message was sequenced
/// ([`crate::metrics::now_us`]; 0 when not a timed room message).
pub(crate) type Queued = (Bytes, u64);

/// The protocol a queue writes its `gap` frames in. One byte, in what was
/// padding: the queue is no larger than before it had one (a fan-out
/// touches a thousand of them per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapStyle {
    /// The native `gap` frame.
    Native,
    /// A `pusher:gap` event on the channel.
    Pusher,
}

impl GapStyle {
    /// Out of line: a gap is rare, and the fan-out's push stays as small as
    /// it was.
    #[cold]
    #[inline(never)]
    fn encode(self, room: &str, from: u64, to: u64) -> Bytes {
        match self {
            GapStyle::Native => encode::gap(room, from, to),
            GapStyle::Pusher => crate::shard::conn::pusher::gap_frame(room, from, to),
        }
    }
}

/// A bounded queue of encoded frames.
#[derive(Debug)]
pub struct OutQueue {
    frames: VecDeque<Queued>,
    bytes: usize,
    /// Of `frames` and `bytes`, the replies (saturating). These two and
    /// `max_frames` are `u32` so that the queue stays 96 bytes (a fan-out
    /// touches a thousand of them per message).
    reply_frames: u32,
    reply_bytes: u32,
    max_frames: u32,
    max_bytes: usize,
    gaps: Vec<PendingGap>,
    closing: bool,
    gap_style: GapStyle,
    /// How many frames the writer took last time, at most
    /// [`PRESIZE_MAX_FRAMES`]: a push that finds the deque full grows it to
    /// that many at once, instead of doubling it again and again. (A push
    /// that fits allocates nothing, so a delivery to a quiet connection
    /// stays free of allocation: invariant 7.)
    last_take: u16,
    dropped: u64,
}

/// The most slots a full deque grows to at once for [`OutQueue::last_take`].
const PRESIZE_MAX_FRAMES: usize = 256;

impl OutQueue {
    /// An empty queue with the given bounds.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        OutQueue {
            frames: VecDeque::new(),
            gap_style: GapStyle::Native,
            bytes: 0,
            reply_frames: 0,
            reply_bytes: 0,
            max_frames: u32::try_from(max_frames).unwrap_or(u32::MAX),
            max_bytes,
            gaps: Vec::new(),
            closing: false,
            last_take: 0,
            dropped: 0,
        }
    }

    /// Write `gap` frames in `style` (another protocol's) instead of the
    /// native `gap`.
    pub(crate) fn set_gap_style(&mut self, style: GapStyle) {
        self.gap_style = style;
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Room messages dropped by the `drop` policy so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the connection is closing (only its close frame remains).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether `extra_frames` of traffic totalling `extra_bytes` fit beside
    /// the traffic queued (replies do not count).
    fn fits(&self, extra_frames: usize, extra_bytes: usize) -> bool {
        let frames = self.frames.len() - self.reply_frames as usize;
        let bytes = self.bytes - self.reply_bytes as usize;
        frames + extra_frames <= self.max_frames as usize
            && (frames == 0 || bytes + extra_bytes <= self.max_bytes)
    }

    /// Whether replies fill the queue's bounds: the reader stops reading
    /// the client until the writer has taken them.
    pub fn replies_full(&self) -> bool {
        self.reply_frames >= self.max_frames
            || self.reply_bytes as usize >= self.max_bytes.min(u32::MAX as usize)
    }

    fn enqueue(&mut self, frame: Bytes, stamp_us: u64) {
        let len = self.frames.len();
        if len == self.frames.capacity() {
            // About to grow anyway: once, to what the last batch needed.
            self.frames
                .reserve((self.last_take as usize).saturating_sub(len).max(1));
        }
        self.bytes += frame.len();
        self.frames.push_back((frame, stamp_us));
    }

    /// Push a reply to the connection's own frame (`ack`, `error`, `pong`,
    /// ...): always queued while the connection is open.
    pub fn push_reply(&mut self, frame: Bytes) -> Pushed {
        if self.closing {
            return Pushed::Closed;
        }
        let wake = self.frames.is_empty();
        self.reply_frames = self.reply_frames.saturating_add(1);
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.reply_bytes = self.reply_bytes.saturating_add(len);
        self.enqueue(frame, 0);
        Pushed::Queued { wake }
    }

    /// Push traffic that is not a room message (presence, `direct`,
    /// `room_closed`, ...). Such a frame that does not fit means the client
    /// is too slow.
    pub fn push_control(&mut self, frame: Bytes) -> Pushed {
        if self.closing {
            return Pushed::Closed;
        }
        if !self.fits(1, frame.len()) {
            return Pushed::Overflow;
        }
        let wake = self.frames.is_empty();
        self.enqueue(frame, 0);
        Pushed::Queued { wake }
    }

    /// Push message `seq` of `room`, applying the room's overflow `policy`.
    /// A pending gap of that room is queued first, so the client learns of
    /// the loss before it sees a later message.
    pub fn push_room(
        &mut self,
        room: &Arc<str>,
        seq: u64,
        frame: &Bytes,
        policy: OverflowPolicy,
        stamp_us: u64,
    ) -> Pushed {
        if self.closing {
            return Pushed::Closed;
        }
        let wake = self.frames.is_empty();
        let gap_at = self.gaps.iter().position(|g| g.room == *room);
        if let Some(i) = gap_at {
            let gap = self
                .gap_style
                .encode(room, self.gaps[i].from, self.gaps[i].to);
            if self.fits(2, gap.len() + frame.len()) {
                self.gaps.swap_remove(i);
                self.enqueue(gap, 0);
                self.enqueue(frame.clone(), stamp_us);
                return Pushed::Queued { wake };
            }
        } else if self.fits(1, frame.len()) {
            self.enqueue(frame.clone(), stamp_us);
            return Pushed::Queued { wake };
        }
        match policy {
            OverflowPolicy::Disconnect => Pushed::Overflow,
            OverflowPolicy::Drop => {
                self.dropped += 1;
                match gap_at {
                    Some(i) => self.gaps[i].to = seq,
                    None => self.gaps.push(PendingGap {
                        room: room.clone(),
                        from: seq,
                        to: seq,
                    }),
                }
                Pushed::Dropped
            }
        }
    }

    /// Whether `gap`s wait to be queued ([`OutQueue::flush_gaps`]): the
    /// writer must take another turn even with nothing queued.
    pub fn gaps_pending(&self) -> bool {
        !self.gaps.is_empty()
    }

    /// Queue the `gap` frames that fit now. Call when the writer has drained
    /// a batch. Returns whether anything was queued.
    pub fn flush_gaps(&mut self) -> bool {
        let mut queued = false;
        let mut i = 0;
        while i < self.gaps.len() && !self.closing {
            let g = &self.gaps[i];
            let frame = self.gap_style.encode(&g.room, g.from, g.to);
            if !self.fits(1, frame.len()) {
                break;
            }
            self.gaps.swap_remove(i);
            self.enqueue(frame, 0);
            queued = true;
            i = 0;
        }
        queued
    }

    /// Forget pending gaps of `room` (the client left it).
    pub fn forget_room(&mut self, room: &str) {
        self.gaps.retain(|g| &*g.room != room);
    }

    /// Move every queued frame into `inflight` (empty) by swapping buffers,
    /// so a busy connection alternates two buffers and allocates nothing.
    /// What is in flight is at most one queue's worth: a connection holds at
    /// most twice its bound.
    pub fn take_all(&mut self, inflight: &mut VecDeque<Queued>) {
        debug_assert!(inflight.is_empty());
        std::mem::swap(&mut self.frames, inflight);
        self.last_take = inflight.len().min(PRESIZE_MAX_FRAMES) as u16;
        self.bytes = 0;
        self.reply_frames = 0;
        self.reply_bytes = 0;
        debug_assert!(self.frames.is_empty());
    }

    /// Start closing with `frame` (a close frame). With `discard`, what is
    /// queued is dropped first (slow consumer: 4000); otherwise it is sent
    /// before the close. Returns false if the queue was already closing.
    pub fn close(&mut self, frame: Bytes, discard: bool) -> bool {
        if self.closing {
            return false;
        }
        if discard {
            self.frames.clear();
            self.bytes = 0;
            self.reply_frames = 0;
            self.reply_bytes = 0;
        }
        self.gaps.clear();
        self.enqueue(frame, 0);
        self.closing = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::text_payload;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    /// Everything queued, as the writer takes it.
    fn take(q: &mut OutQueue) -> Vec<Bytes> {
        let mut inflight = VecDeque::new();
        q.take_all(&mut inflight);
        inflight.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_queue_is_no_larger_for_its_gap_style() {
        // A fan-out touches a thousand queues per message: the protocol's
        // byte sits in what was padding, and the reply counts are u32.
        assert!(std::mem::size_of::<OutQueue>() <= 96);
    }

    #[test]
    fn a_full_queue_grows_once_to_the_last_take() {
        let mut q = OutQueue::new(10_000, usize::MAX);
        let mut inflight = VecDeque::new();
        for _ in 0..100 {
            q.push_control(frame(1));
        }
        // The writer takes the frames and hands back its idle deque.
        let mut idle = VecDeque::with_capacity(crate::limits::WRITER_IDLE_CAPACITY);
        q.take_all(&mut inflight);
        std::mem::swap(&mut q.frames, &mut idle);
        let slots = q.frames.capacity();
        // A quiet connection's delivery fits: nothing is allocated.
        q.push_control(frame(1));
        assert_eq!(q.frames.capacity(), slots);
        // A burst grows it once, to the last take's 100.
        while q.len() < slots + 1 {
            q.push_control(frame(1));
        }
        assert!(q.frames.capacity() >= 100, "{}", q.frames.capacity());
        // At most PRESIZE_MAX_FRAMES, however large the last take.
        inflight.clear();
        q.take_all(&mut inflight);
        for _ in 0..1000 {
            q.push_control(frame(1));
        }
        inflight.clear();
        q.take_all(&mut inflight);
        q.frames = VecDeque::new();
        q.push_control(frame(1));
        let grown = q.frames.capacity();
        assert!((PRESIZE_MAX_FRAMES..1000).contains(&grown), "{grown}");
    }

    #[test]
    fn bounds_in_frames_and_bytes() {
        let mut q = OutQueue::new(2, 100);
        assert_eq!(q.push_control(frame(10)), Pushed::Queued { wake: true });
        assert_eq!(q.push_control(frame(10)), Pushed::Queued { wake: false });
        assert_eq!(q.push_control(frame(10)), Pushed::Overflow);
        let out = take(&mut q);
        assert_eq!((out.len(), q.bytes()), (2, 0));
        // One frame larger than the byte bound fits an empty queue only.
        assert_eq!(q.push_control(frame(500)), Pushed::Queued { wake: true });
        assert_eq!(q.push_control(frame(1)), Pushed::Overflow);
    }

    #[test]
    fn drop_policy_reports_one_gap_before_the_next_message() {
        let room: Arc<str> = Arc::from("r");
        let mut q = OutQueue::new(1, 1000);
        let m = frame(10);
        assert!(matches!(
            q.push_room(&room, 1, &m, OverflowPolicy::Drop, 0),
            Pushed::Queued { .. }
        ));
        assert_eq!(
            q.push_room(&room, 2, &m, OverflowPolicy::Drop, 0),
            Pushed::Dropped
        );
        assert_eq!(
            q.push_room(&room, 3, &m, OverflowPolicy::Drop, 0),
            Pushed::Dropped
        );
        assert_eq!(q.dropped(), 2);
        assert_eq!(take(&mut q).len(), 1);
        // Room for one frame only: gap + message do not fit together, so 4 is dropped too.
        q.max_frames = 1;
        assert!(matches!(
            q.push_room(&room, 4, &m, OverflowPolicy::Drop, 0),
            Pushed::Dropped
        ));
        assert!(q.flush_gaps());
        let out = take(&mut q);
        let gap: serde_json::Value = serde_json::from_slice(&text_payload(&out[0])).expect("json");
        assert_eq!(
            (gap["from"].as_u64(), gap["to"].as_u64()),
            (Some(2), Some(4))
        );
        q.max_frames = 10;
        assert_eq!(
            q.push_room(&room, 5, &m, OverflowPolicy::Drop, 0),
            Pushed::Queued { wake: true }
        );
    }

    #[test]
    fn pending_gap_precedes_later_message() {
        let room: Arc<str> = Arc::from("r");
        let mut q = OutQueue::new(1, 1000);
        let m = frame(10);
        q.push_room(&room, 1, &m, OverflowPolicy::Drop, 0);
        q.push_room(&room, 2, &m, OverflowPolicy::Drop, 0);
        assert_eq!(take(&mut q).len(), 1);
        q.max_frames = 5;
        q.push_room(&room, 3, &m, OverflowPolicy::Drop, 0);
        let out = take(&mut q);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], m);
        assert!(text_payload(&out[0]).starts_with(b"{\"type\":\"gap\""));
    }

    #[test]
    fn replies_never_overflow_and_never_crowd_out_traffic() {
        let room: Arc<str> = Arc::from("r");
        let mut q = OutQueue::new(2, 100);
        for _ in 0..5 {
            assert!(matches!(q.push_reply(frame(30)), Pushed::Queued { .. }));
        }
        assert!(q.replies_full(), "5 replies over a bound of 2 frames");
        // Traffic still has its own room: two frames, then the policy.
        let m = frame(10);
        assert!(matches!(
            q.push_room(&room, 1, &m, OverflowPolicy::Disconnect, 0),
            Pushed::Queued { .. }
        ));
        assert!(matches!(q.push_control(frame(10)), Pushed::Queued { .. }));
        assert_eq!(
            q.push_room(&room, 2, &m, OverflowPolicy::Disconnect, 0),
            Pushed::Overflow
        );
        assert_eq!((q.len(), q.bytes()), (7, 170));
        // The writer takes everything: the reader may read again.
        assert_eq!(take(&mut q).len(), 7);
        assert!(!q.replies_full());
        // Replies fill the bound in bytes too.
        assert!(matches!(q.push_reply(frame(100)), Pushed::Queued { .. }));
        assert!(q.replies_full());
        assert!(q.close(frame(2), true));
        assert!(!q.replies_full());
        assert_eq!(q.push_reply(frame(1)), Pushed::Closed);
    }

    #[test]
    fn disconnect_policy_and_close() {
        let room: Arc<str> = Arc::from("r");
        let mut q = OutQueue::new(1, 1000);
        let m = frame(10);
        q.push_room(&room, 1, &m, OverflowPolicy::Disconnect, 0);
        assert_eq!(
            q.push_room(&room, 2, &m, OverflowPolicy::Disconnect, 0),
            Pushed::Overflow
        );
        assert!(q.close(frame(4), true));
        assert_eq!((q.len(), q.bytes()), (1, 4));
        assert!(!q.close(frame(4), true));
        assert_eq!(q.push_control(frame(1)), Pushed::Closed);
    }
}
