//! A connection's socket loops: the reader (frames in, heartbeat, token
//! expiry) and the writer (queued frames out in vectored batches, small
//! frames copied together into the shard thread's write scratch).
//!
//! **Invariants:** the reader holds no buffer while the connection is idle,
//! the writer keeps [`WRITER_IDLE_CAPACITY`] slots once the queue is
//! empty and at most [`WRITER_KEEP_CAPACITY`] while more waits; the reader is the only task that handles the client's frames, so
//! they take effect in the order the client sent them; the reader reads
//! nothing while replies fill the outbound queue (the writer wakes it when
//! it takes them), so a client's own burst pushes back on the client
//! instead of overflowing its queue.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::Conn;
use super::dispatch;
use crate::edge::stream::{ReadHalf, WriteHalf};
use crate::error::{ErrorCode, Refusal, close};
use crate::limits::{
    COALESCE_FRAME_MAX_BYTES, WRITE_BATCH_FRAMES, WRITE_SCRATCH_BYTES, WRITER_IDLE_CAPACITY,
};
use crate::metrics::FRAME_BINARY;
use crate::shard::Shard;
use crate::shard::outbound::Queued;
use crate::ws::encode::pong_frame;
use crate::ws::{Message, MessageReader};

/// Capacity a writer's in-flight buffer keeps after a burst; more is given
/// back so a connection that was once busy does not stay large.
const WRITER_KEEP_CAPACITY: usize = 256;

/// How the read loop ended.
pub(super) enum ReadEnd {
    /// The peer closed the TCP stream or it failed.
    Eof,
    /// The peer sent a close frame with this code.
    PeerClose(Option<u16>),
    /// The server decided to close (the close frame is queued).
    ServerClose,
}

/// The read buffer of a new connection: the bytes its client sent right
/// after the upgrade request. `prefix` may point into hyper's whole read
/// buffer: what is needed is copied, and it is let go.
pub(super) fn first_read_buffer(prefix: Bytes) -> BytesMut {
    if prefix.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&prefix[..])
    }
}

/// Read the client's frames and handle them in order, keep the heartbeat
/// and the token's expiry, until the connection ends. `buf` holds what was
/// read and not handled yet (borrowed, so that this future, which every
/// idle connection keeps, does not hold a second copy of it).
pub(super) async fn read_loop(
    shard: &Shard,
    conn: &Rc<Conn>,
    read: &mut ReadHalf,
    buf: &mut BytesMut,
) -> ReadEnd {
    let limits = &shard.shared.config.limits;
    let interval = Duration::from_millis(limits.heartbeat_interval_ms);
    let mut reader =
        MessageReader::new(limits.max_message_bytes).with_deflate(conn.deflate.is_some());
    let mut next_ping = Instant::now() + interval;
    let mut awaiting_pong: Option<Instant> = None;
    let heartbeat = tokio::time::sleep_until(next_ping);
    tokio::pin!(heartbeat);
    // The token's expiry: one timer per connection that has one (boxed, so
    // connections without a token carry no timer), no sweep over all.
    let mut expiry_at = conn.expires_at.get();
    let mut expiry = expiry_at.map(|exp| Box::pin(tokio::time::sleep_until(expiry_instant(exp))));
    // The peer's FIN came with the last read: what that read brought is
    // handled first, then the loop ends.
    let mut peer_done = false;
    loop {
        // Handle every complete message in the buffer, unless replies fill
        // the outbound queue: then stop reading the client until the writer
        // has taken them (a client that sends a burst is not a slow consumer).
        loop {
            if conn.queue.borrow().is_closing() {
                return ReadEnd::ServerClose;
            }
            if conn.replies_full() {
                break;
            }
            match reader.next(buf) {
                Ok(Some(Message::Text(payload))) if conn.echo => {
                    conn.reply(conn.own_data_frame(true, &payload));
                }
                Ok(Some(Message::Binary(payload))) if conn.echo => {
                    conn.reply(conn.own_data_frame(false, &payload));
                }
                Ok(Some(Message::Text(payload))) => {
                    if conn.protocol.any_message_answers_heartbeat() {
                        awaiting_pong = None;
                    }
                    if let Some(wait) = dispatch::handle(shard, conn, payload) {
                        shard.ring_requests();
                        wait.await;
                    }
                }
                Ok(Some(Message::Binary(_))) => {
                    conn.counters.frame_in(FRAME_BINARY);
                    conn.refuse(
                        None,
                        &Refusal::new(
                            ErrorCode::BadRequest,
                            "binary frames are not supported; send JSON in text frames",
                        ),
                    )
                }
                Ok(Some(Message::Ping(payload))) => conn.reply(pong_frame(&payload)),
                Ok(Some(Message::Pong)) => awaiting_pong = None,
                Ok(Some(Message::Close(code, _))) => return ReadEnd::PeerClose(code),
                Ok(None) => break,
                Err(e) => {
                    conn.close_with(e.close_code(), &e.to_string(), false);
                    return ReadEnd::ServerClose;
                }
            }
        }
        // The ops this burst routed go to their rooms' pumps now, as one
        // batch each (see `Shard::route_or_wait`).
        shard.ring_requests();
        let paused = conn.replies_full();
        conn.reader_paused.set(paused);
        if paused && conn.is_dead() {
            return ReadEnd::Eof; // the writer failed: nobody takes the replies
        }
        if peer_done && !paused {
            return ReadEnd::Eof;
        }
        if conn.expires_at.get() != expiry_at {
            // A `refresh` moved the expiry (or removed it).
            expiry_at = conn.expires_at.get();
            match (expiry_at, expiry.as_mut()) {
                (Some(exp), Some(timer)) => timer.as_mut().reset(expiry_instant(exp)),
                (Some(exp), None) => {
                    expiry = Some(Box::pin(tokio::time::sleep_until(expiry_instant(exp))));
                }
                (None, _) => expiry = None,
            }
        }
        if buf.is_empty() && buf.capacity() > 0 {
            *buf = BytesMut::new(); // idle connections hold no read buffer
        }
        let timeout = Duration::from_millis(limits.heartbeat_timeout_ms);
        let deadline = awaiting_pong.map_or(next_ping, |since| since + timeout);
        if heartbeat.deadline() != deadline {
            heartbeat.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            _ = conn.reader_wake.wait() => {}
            more = read.read_burst(buf), if !paused => peer_done = !more,
            _ = async {
                match expiry.as_mut() {
                    Some(timer) => timer.await,
                    None => std::future::pending().await,
                }
            } => {
                conn.close_with(close::POLICY, "token expired", false);
                return ReadEnd::ServerClose;
            }
            _ = &mut heartbeat => {
                let now = Instant::now();
                if awaiting_pong.is_some() {
                    conn.close_with(close::HEARTBEAT_TIMEOUT, "heartbeat timeout: no pong", true);
                    return ReadEnd::ServerClose;
                }
                conn.send(conn.heartbeat_ping());
                awaiting_pong = Some(now);
                next_ping = now + interval;
            }
        }
    }
}

/// When a token expiring at `exp` (Unix seconds) runs out, on the runtime's
/// clock (at most a year ahead).
fn expiry_instant(exp: u64) -> Instant {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let left = (exp as f64 - now_unix).max(0.0);
    Instant::now() + Duration::from_secs_f64(left.min(FAR_FUTURE_SECS as f64))
}

/// "Never" for timers: a year.
const FAR_FUTURE_SECS: u64 = 365 * 24 * 3600;

/// Write queued frames in vectored batches until the close frame is out.
/// While it sleeps the write half waits in the connection, where
/// [`Conn::flush_now`] can write through it.
pub(super) async fn write_loop(conn: Rc<Conn>, mut write: WriteHalf) {
    loop {
        // Write everything there is, frames left by a flush first.
        loop {
            let inflight = conn.take_batch();
            if inflight.is_empty() {
                conn.inflight.replace(inflight);
                break;
            }
            let offset = conn.inflight_offset.replace(0);
            // TLS may hold written bytes in its buffer: flush them (a no-op
            // on plain TCP).
            if write_frames(&mut write, &inflight, offset).await.is_err()
                || write.flush().await.is_err()
            {
                conn.dead.set(true);
                conn.reader_wake.notify();
                return;
            }
            let written = inflight.len();
            conn.written(inflight, written);
        }
        if conn.queue.borrow().is_closing() {
            // The close frame was the last one queued: it is out.
            let _ = write.shutdown().await;
            return;
        }
        *conn.write.borrow_mut() = Some(write);
        conn.writer_wake.wait().await;
        write = match conn.write.borrow_mut().take() {
            Some(write) => write,
            None => return, // the connection is being torn down
        };
    }
}

impl Conn {
    /// The frames to write next: those a flush left half written, else
    /// everything queued (with the `gap`s the queue has room for now).
    /// Wakes a reader that waits for its replies to be taken.
    fn take_batch(&self) -> VecDeque<Queued> {
        let mut inflight = self.inflight.take();
        if inflight.is_empty() {
            let mut queue = self.queue.borrow_mut();
            if queue.is_empty() {
                queue.flush_gaps();
            }
            queue.take_all(&mut inflight);
        }
        if self.reader_paused.get() && !inflight.is_empty() {
            self.reader_wake.notify(); // the replies it waited on are taken
        }
        inflight
    }

    /// The first `count` frames of `inflight` are out: time them, and keep
    /// the rest (and the deque's slots) for the next write.
    fn written(&self, mut inflight: VecDeque<Queued>, count: usize) {
        let written_us = crate::metrics::now_us();
        for (_, stamp_us) in inflight.drain(..count) {
            if stamp_us > 0 {
                self.counters
                    .publish_to_write
                    .record(written_us.saturating_sub(stamp_us));
            }
        }
        if inflight.is_empty() {
            if self.queue.borrow().is_empty() {
                // Nothing waits: the connection goes idle with the few
                // slots a single delivery needs (no allocation on the
                // message path of a quiet connection, no burst's worth of
                // slots kept).
                inflight.shrink_to(WRITER_IDLE_CAPACITY);
            } else if inflight.capacity() > WRITER_KEEP_CAPACITY {
                inflight.shrink_to(WRITER_KEEP_CAPACITY);
            }
        }
        self.inflight.replace(inflight);
    }

    /// Write what is queued straight to the socket, in one vectored write,
    /// if the writer task sleeps with nothing in flight and the socket
    /// takes it now; whatever is left (a full socket, TLS, a close, an
    /// error) is the writer task's, woken for it. Called at the end of a
    /// pump's batch ([`crate::shard::Shard::uncork`]).
    pub(crate) fn flush_now(&self) {
        let slot = self.write.borrow();
        let direct = match slot.as_ref() {
            Some(write) => {
                !matches!(write, WriteHalf::Tls(_))
                    && self.inflight.borrow().is_empty()
                    && !self.queue.borrow().is_closing()
            }
            None => false,
        };
        if !direct {
            drop(slot);
            return self.writer_wake.notify();
        }
        let inflight = self.take_batch();
        if inflight.is_empty() {
            self.inflight.replace(inflight);
            return;
        }
        let wrote = with_slices(&inflight, 0, 0, |slices| {
            slot.as_ref()
                .and_then(|write| write.try_write_vectored(slices))
        });
        drop(slot);
        let wrote = match wrote {
            Some(Ok(n)) => n,
            // Full, or failed: the writer task waits, or sees the error.
            _ => 0,
        };
        let (done, offset) = advance(&inflight, 0, 0, wrote);
        self.inflight_offset.set(offset);
        let rest = inflight.len() > done;
        self.written(inflight, done);
        // Like the writer after each write: `gap`s for messages dropped
        // while these frames were queued go out now that there is room,
        // not with the room's next message (which may never come).
        if rest || self.queue.borrow().gaps_pending() {
            self.writer_wake.notify();
        }
    }
}

/// Write `frames`, the first from `offset`, with vectored writes of up to
/// [`WRITE_BATCH_FRAMES`] slices each (see [`with_slices`]).
async fn write_frames(
    write: &mut WriteHalf,
    frames: &VecDeque<Queued>,
    mut offset: usize,
) -> std::io::Result<()> {
    let mut index = 0usize;
    while index < frames.len() {
        let written = std::future::poll_fn(|cx| {
            with_slices(frames, index, offset, |slices| {
                std::pin::Pin::new(&mut *write).poll_write_vectored(cx, slices)
            })
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        (index, offset) = advance(frames, index, offset, written);
    }
    Ok(())
}

/// Where a write of `written` bytes of `frames`, from frame `index` at
/// `offset` into it, leaves off: the first frame not wholly written, and
/// how much of it was.
fn advance(
    frames: &VecDeque<Queued>,
    mut index: usize,
    mut offset: usize,
    written: usize,
) -> (usize, usize) {
    let mut left = written;
    while left > 0 && index < frames.len() {
        let rest = frames[index].0.len() - offset;
        if left >= rest {
            left -= rest;
            index += 1;
            offset = 0;
        } else {
            offset += left;
            left = 0;
        }
    }
    (index, offset)
}

/// Slots of the slice array of a small write: most writes are one or a few
/// slices (small frames share one), and filling [`WRITE_BATCH_FRAMES`]
/// empty slots for them would cost more than the write's own bookkeeping.
const SMALL_WRITE_FRAMES: usize = 8;

thread_local! {
    /// The shard thread's write scratch: the small frames of one write,
    /// copied back to back (see [`COALESCE_FRAME_MAX_BYTES`]). A shard is
    /// single-threaded and a write never spans an `.await`, so one per
    /// thread serves every connection of the shard; no connection holds
    /// one, idle or not.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Call `write` with `frames` from `index` (the first from `offset`) as I/O
/// slices: runs of small frames copied into the thread's write scratch as
/// one slice each, larger frames as their own, at most
/// [`WRITE_BATCH_FRAMES`] slices and [`WRITE_SCRATCH_BYTES`] copied. The
/// bytes are the frames' own, in order, so a write of `n` bytes advances
/// over the frames as if they had been written one by one. The slices live
/// on the stack of the call, not in any future, so an idle connection's
/// task stays small; the array is sized for the batch.
fn with_slices<R>(
    frames: &VecDeque<Queued>,
    index: usize,
    offset: usize,
    write: impl FnOnce(&[IoSlice<'_>]) -> R,
) -> R {
    let count = frames.len().saturating_sub(index);
    if count <= 1 {
        // One frame (or none) is one slice already: nothing to copy.
        let rest = frames
            .get(index)
            .map_or(&[][..], |(frame, _)| &frame[offset..]);
        return write(&[IoSlice::new(rest)][..count]);
    }
    // Slices a write needs: at most one per large frame and one per run of
    // small frames between them. Mostly a few, so the small array serves.
    let large = frames
        .range(index..)
        .take(WRITE_BATCH_FRAMES)
        .filter(|(frame, _)| frame.len() > COALESCE_FRAME_MAX_BYTES)
        .count();
    WRITE_SCRATCH.with_borrow_mut(|scratch| {
        if 2 * large < SMALL_WRITE_FRAMES {
            gather::<SMALL_WRITE_FRAMES, R>(frames, index, offset, scratch, write)
        } else {
            gather::<WRITE_BATCH_FRAMES, R>(frames, index, offset, scratch, write)
        }
    })
}

/// One slice of a write, before the scratch is complete: a frame's own
/// bytes, or a range of the scratch.
#[derive(Clone, Copy)]
enum Part<'a> {
    Frame(&'a [u8]),
    Copied(usize, usize),
}

/// [`with_slices`] with an array of `N` slots.
fn gather<const N: usize, R>(
    frames: &VecDeque<Queued>,
    index: usize,
    offset: usize,
    scratch: &mut Vec<u8>,
    write: impl FnOnce(&[IoSlice<'_>]) -> R,
) -> R {
    scratch.clear();
    scratch.reserve_exact(WRITE_SCRATCH_BYTES);
    let mut parts = [Part::Frame(&[]); N];
    let mut count = 0usize;
    for (position, (frame, _)) in frames.range(index..).enumerate() {
        let bytes: &[u8] = if position == 0 {
            &frame[offset..]
        } else {
            frame
        };
        if bytes.len() <= COALESCE_FRAME_MAX_BYTES {
            if scratch.len() + bytes.len() > WRITE_SCRATCH_BYTES {
                break; // the scratch is full: this write is large enough
            }
            let start = scratch.len();
            match count.checked_sub(1).map(|last| parts[last]) {
                // It follows a small frame (whose copy ends the scratch):
                // the same slice grows.
                Some(Part::Copied(first, _)) => {
                    scratch.extend_from_slice(bytes);
                    parts[count - 1] = Part::Copied(first, scratch.len());
                    continue;
                }
                _ if count == N => break,
                _ => {}
            }
            scratch.extend_from_slice(bytes);
            parts[count] = Part::Copied(start, scratch.len());
        } else {
            if count == N {
                break;
            }
            parts[count] = Part::Frame(bytes);
        }
        count += 1;
    }
    let mut slices = [IoSlice::new(&[]); N];
    for (slot, part) in slices.iter_mut().zip(&parts[..count]) {
        *slot = IoSlice::new(match *part {
            Part::Frame(bytes) => bytes,
            Part::Copied(start, end) => &scratch[start..end],
        });
    }
    write(&slices[..count])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(lens: &[usize]) -> VecDeque<Queued> {
        lens.iter()
            .map(|&n| (Bytes::from(vec![0u8; n]), 0))
            .collect()
    }

    #[test]
    fn a_write_advances_over_whole_frames_and_into_a_part() {
        let f = frames(&[3, 5, 4]);
        assert_eq!(advance(&f, 0, 0, 0), (0, 0), "nothing written");
        assert_eq!(advance(&f, 0, 0, 2), (0, 2), "part of the first");
        assert_eq!(advance(&f, 0, 0, 3), (1, 0), "exactly the first");
        assert_eq!(advance(&f, 0, 0, 6), (1, 3), "the first and 3 of 5");
        assert_eq!(advance(&f, 0, 0, 12), (3, 0), "all of them");
    }

    #[test]
    fn a_write_from_the_middle_of_a_frame_counts_only_its_rest() {
        let f = frames(&[3, 5, 4]);
        assert_eq!(advance(&f, 1, 3, 2), (2, 0), "the rest of the second");
        assert_eq!(advance(&f, 1, 3, 3), (2, 1), "and one byte more");
        assert_eq!(advance(&f, 2, 1, 3), (3, 0), "the rest of the last");
    }

    /// Frames of the given lengths, each filled with its own position, so
    /// that a reordering or a lost byte shows.
    fn numbered(lens: &[usize]) -> VecDeque<Queued> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| (Bytes::from(vec![i as u8; n]), 0))
            .collect()
    }

    /// What one write would send: its slice count and its bytes.
    fn write_of(f: &VecDeque<Queued>, index: usize, offset: usize) -> (usize, Vec<u8>) {
        with_slices(f, index, offset, |slices| {
            (
                slices.len(),
                slices.iter().flat_map(|s| s.iter().copied()).collect(),
            )
        })
    }

    /// The bytes of `f` from frame `index` at `offset` on, in order.
    fn bytes_from(f: &VecDeque<Queued>, index: usize, offset: usize) -> Vec<u8> {
        let mut out = f[index].0[offset..].to_vec();
        for (frame, _) in f.range(index + 1..) {
            out.extend_from_slice(frame);
        }
        out
    }

    #[test]
    fn small_frames_go_as_one_slice_and_large_ones_as_their_own() {
        let big = COALESCE_FRAME_MAX_BYTES + 1;
        let f = numbered(&[3, big, 5, 7, 2 * big, 2]);
        let (slices, bytes) = write_of(&f, 0, 1);
        // [rest of 3] [big] [5 + 7] [2 big] [2]
        assert_eq!(slices, 5);
        assert_eq!(bytes, bytes_from(&f, 0, 1));
        let (slices, bytes) = write_of(&f, 2, 4);
        assert_eq!(slices, 3, "[1 of 5 + 7] [2 big] [2]");
        assert_eq!(bytes, bytes_from(&f, 2, 4));
    }

    #[test]
    fn a_lone_frame_is_written_from_its_own_bytes() {
        let f = numbered(&[3, 100]);
        let direct = with_slices(&f, 1, 10, |slices| slices[0].as_ptr());
        assert_eq!(direct, f[1].0[10..].as_ptr(), "not copied");
        assert_eq!(write_of(&f, 2, 0), (0, Vec::new()), "nothing left");
    }

    #[test]
    fn one_write_copies_at_most_the_scratch() {
        let frame = COALESCE_FRAME_MAX_BYTES;
        let fit = WRITE_SCRATCH_BYTES / frame;
        let f = numbered(&vec![frame; fit + 10]);
        let (slices, bytes) = write_of(&f, 0, 0);
        assert_eq!(slices, 1);
        assert_eq!(
            bytes.len(),
            fit * frame,
            "whole frames, up to the scratch's size"
        );
        assert_eq!(bytes[..], bytes_from(&f, 0, 0)[..fit * frame]);
        let (index, offset) = advance(&f, 0, 0, bytes.len());
        assert_eq!(
            (index, offset),
            (fit, 0),
            "the next write starts at the first left out"
        );
    }

    #[test]
    fn one_write_has_at_most_the_batch_of_slices() {
        let big = COALESCE_FRAME_MAX_BYTES + 1;
        // Small and large alternate: no two small frames share a slice.
        let lens: Vec<usize> = (0..WRITE_BATCH_FRAMES + 10)
            .map(|i| if i % 2 == 0 { 1 } else { big })
            .collect();
        let f = numbered(&lens);
        let (slices, bytes) = write_of(&f, 0, 0);
        assert_eq!(slices, WRITE_BATCH_FRAMES);
        let sent: usize = lens[..WRITE_BATCH_FRAMES].iter().sum();
        assert_eq!(bytes[..], bytes_from(&f, 0, 0)[..sent]);
    }
}
