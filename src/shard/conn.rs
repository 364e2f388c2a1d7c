//! One WebSocket connection: its reader (frames in, requests out), its
//! writer (queued frames out in vectored batches), heartbeat and close.
//!
//! **Invariant:** a connection holds no read buffer while idle, and its
//! outbound memory is bounded by its [`OutQueue`]; the only frame that may
//! bypass the queue's bounds is the close frame that ends it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IoSlice;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use super::Shard;
use super::outbound::{OutQueue, Pushed, Queued};
use super::signal::LocalSignal;
use crate::auth::{Authenticator, Grant, RoomPatterns};
use crate::config::{AuthMode, OverflowPolicy};
use crate::error::{ErrorCode, Refusal, close};
use crate::limits::{
    PENDING_JOIN_WAIT_MS, READ_BYTES_PER_TURN, READ_CHUNK_BYTES, WRITE_BATCH_FRAMES,
};
use crate::perms::{Perm, Perms};
use crate::protocol::decode::{ClientFrame, decode_client_frame};
use crate::protocol::encode;
use crate::ratelimit::TokenBucket;
use crate::router::{Delivery, Origin, Request, home_of};
use crate::shared::Permit;
use crate::ws::encode::{close_frame, ping_frame, pong_frame, text_payload};
use crate::ws::{Message, MessageReader};

/// How long the server waits for the peer's answer to a close it sent for a
/// reason other than a slow consumer (the client reads; it should answer
/// promptly).
const CLOSE_HANDSHAKE_MS: u64 = 2_000;

/// Capacity a writer's in-flight buffer keeps after a burst; more is given
/// back so a connection that was once busy does not stay large.
const WRITER_KEEP_CAPACITY: usize = 256;

/// Who a connection is, decided before the upgrade.
pub struct Identity {
    /// Connection id.
    pub id: u64,
    /// User id.
    pub user: Arc<str>,
    /// Display name.
    pub name: Option<Arc<str>>,
    /// Rights.
    pub perms: Perms,
    /// Private rooms it may join.
    pub rooms: RoomPatterns,
    /// When its token expires (seconds since the Unix epoch).
    pub expires_at: Option<u64>,
    /// An echo connection (`server.echo_path`): messages come straight back.
    pub echo: bool,
}

/// A connection's state shared by its reader, its writer and fan-out.
pub struct Conn {
    /// Connection id (`id % shards` is its shard).
    pub id: u64,
    /// User id.
    pub user: Arc<str>,
    /// Display name.
    pub name: Option<Arc<str>>,
    /// Rights, rooms and expiry of the connection's token; a `refresh`
    /// replaces them (never borrowed across an `.await`).
    perms: Cell<Perms>,
    private_rooms: RefCell<RoomPatterns>,
    expires_at: Cell<Option<u64>>,
    echo: bool,
    queue: RefCell<OutQueue>,
    writer_wake: LocalSignal,
    reader_wake: LocalSignal,
    /// Rooms joined (as acknowledged by their home shards).
    pub rooms: RefCell<HashSet<Arc<str>>>,
    /// Joins sent to home shards and not answered yet, by room.
    joining: RefCell<HashMap<Arc<str>, u32>>,
    dead: Cell<bool>,
    close_code: Cell<Option<u16>>,
    bucket: RefCell<Option<TokenBucket>>,
    counters: Rc<super::ShardCounters>,
}

impl Conn {
    fn new(identity: Identity, shard: &Shard) -> Rc<Conn> {
        let l = &shard.shared.config.limits;
        let bucket = (l.publish_rate_per_sec > 0)
            .then(|| TokenBucket::new(l.publish_rate_per_sec, l.publish_burst, Instant::now()));
        Rc::new(Conn {
            id: identity.id,
            user: identity.user,
            name: identity.name,
            perms: Cell::new(identity.perms),
            private_rooms: RefCell::new(identity.rooms),
            expires_at: Cell::new(identity.expires_at),
            echo: identity.echo,
            queue: RefCell::new(OutQueue::new(
                l.outbound_queue_messages,
                l.outbound_queue_bytes,
            )),
            writer_wake: LocalSignal::default(),
            reader_wake: LocalSignal::default(),
            rooms: RefCell::default(),
            joining: RefCell::default(),
            dead: Cell::new(false),
            close_code: Cell::new(None),
            bucket: RefCell::new(bucket),
            counters: shard.counters.clone(),
        })
    }

    /// Whether the connection is being torn down (no more deliveries).
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Queue a frame that is not a room message; a full queue closes the
    /// connection with 4000.
    pub fn send(&self, frame: Bytes) {
        let pushed = self.queue.borrow_mut().push_control(frame);
        self.after_push(pushed);
    }

    /// Queue message `seq` of `room` under the room's overflow policy.
    pub fn push_room(
        &self,
        room: &Arc<str>,
        seq: u64,
        frame: &Bytes,
        policy: OverflowPolicy,
        stamp_us: u64,
    ) {
        let pushed = self
            .queue
            .borrow_mut()
            .push_room(room, seq, frame, policy, stamp_us);
        self.after_push(pushed);
    }

    fn after_push(&self, pushed: Pushed) {
        match pushed {
            Pushed::Queued { wake: true } => self.writer_wake.notify(),
            Pushed::Overflow => {
                self.counters
                    .slow_consumer_closes
                    .set(self.counters.slow_consumer_closes.get() + 1);
                self.close_with(
                    close::SLOW_CONSUMER,
                    "slow consumer: outbound queue full",
                    true,
                )
            }
            Pushed::Queued { wake: false } | Pushed::Dropped | Pushed::Closed => {}
        }
    }

    /// Start closing with `code`. With `discard`, queued frames are dropped
    /// (slow consumer); otherwise they are sent first.
    pub fn close_with(&self, code: u16, reason: &str, discard: bool) {
        if self
            .queue
            .borrow_mut()
            .close(close_frame(code, reason), discard)
        {
            self.close_code.set(Some(code));
            self.writer_wake.notify();
            self.reader_wake.notify();
        }
    }

    /// A join of `room` was answered by its home shard.
    pub fn join_settled(&self, room: &str) {
        let mut joining = self.joining.borrow_mut();
        if let Some(n) = joining.get_mut(room) {
            *n -= 1;
            if *n == 0 {
                joining.remove(room);
            }
        }
        if joining.is_empty() {
            self.reader_wake.notify();
        }
    }

    /// The room this connection is in, or is joining, as the shared name.
    fn known_room(&self, room: &str) -> Option<Arc<str>> {
        if let Some(r) = self.rooms.borrow().get(room) {
            return Some(r.clone());
        }
        self.joining
            .borrow()
            .get_key_value(room)
            .map(|(r, _)| r.clone())
    }

    /// Queued frames, queued bytes, and messages dropped so far.
    pub fn queue_figures(&self) -> (usize, usize, u64) {
        let q = self.queue.borrow();
        (q.len(), q.bytes(), q.dropped())
    }

    /// Forget pending gaps of a room the connection left.
    pub fn forget_room(&self, room: &str) {
        self.queue.borrow_mut().forget_room(room);
    }

    fn refuse(&self, id: Option<u64>, refusal: &Refusal) {
        self.counters.error_out(refusal.code);
        self.send(encode::error(id, refusal.code, &refusal.message));
    }

    /// The connection's rights now.
    fn perms(&self) -> Perms {
        self.perms.get()
    }

    /// Whether this connection may join private room `room`.
    fn may_join_private(&self, room: &str) -> bool {
        self.perms().allows(Perm::Admin) || self.private_rooms.borrow().allows(room)
    }

    /// A `refresh` was accepted: the new token's rights, rooms and expiry
    /// hold for every later frame (the read loop moves its expiry timer).
    fn refresh(&self, grant: Grant) {
        self.perms.set(grant.perms);
        *self.private_rooms.borrow_mut() = grant.rooms;
        self.expires_at.set(grant.expires_at);
    }

    /// Spend one token of the publish rate limit.
    fn take_token(&self) -> Result<(), Refusal> {
        let allowed = match self.bucket.borrow_mut().as_mut() {
            Some(bucket) => bucket.try_take(Instant::now()),
            None => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::RateLimited,
                "publish rate limit exceeded; slow down",
            ))
        }
    }
}

/// `shardcast_frames_in_total` slot of frames that failed to decode.
const FRAME_INVALID: usize = 9;
/// `shardcast_frames_in_total` slot of binary frames.
const FRAME_BINARY: usize = 10;
const _: () = assert!(FRAME_INVALID < crate::metrics::FRAME_KINDS.len());
const _: () = assert!(FRAME_BINARY < crate::metrics::FRAME_KINDS.len());

/// How the read loop ended.
enum ReadEnd {
    /// The peer closed the TCP stream or it failed.
    Eof,
    /// The peer sent a close frame with this code.
    PeerClose(Option<u16>),
    /// The server decided to close (the close frame is queued).
    ServerClose,
}

/// Serve an upgraded connection until it closes.
pub async fn serve(
    shard: Rc<Shard>,
    identity: Identity,
    stream: TcpStream,
    prefix: Bytes,
    permit: Permit,
) {
    let conn = Conn::new(identity, &shard);
    let limits = &shard.shared.config.limits;
    if shard.register(&conn) {
        shard.watch_user(&conn.user, true).await;
    }
    shard
        .counters
        .connects
        .set(shard.counters.connects.get() + 1);
    if !conn.echo {
        conn.send(encode::welcome(
            conn.id,
            &conn.user,
            shard.index,
            &shard.shared.config.server.node_id,
            limits.heartbeat_interval_ms,
        ));
    }
    let (read, write) = stream.into_split();
    let mut writer = tokio::task::spawn_local(write_loop(conn.clone(), write));
    let end = read_loop(&shard, &conn, &read, prefix).await;
    let close_code = match end {
        ReadEnd::Eof => None,
        ReadEnd::PeerClose(code) => Some(code.unwrap_or(close::NORMAL)),
        ReadEnd::ServerClose => conn.close_code.get(),
    };
    shard.counters.disconnected(close_code);
    let grace = match end {
        ReadEnd::Eof => Duration::ZERO,
        ReadEnd::PeerClose(code) => {
            let code = code.unwrap_or(close::NORMAL);
            conn.close_with(code, "", false);
            Duration::from_millis(CLOSE_HANDSHAKE_MS)
        }
        ReadEnd::ServerClose => match conn.close_code.get() {
            Some(close::SLOW_CONSUMER) => Duration::from_millis(limits.slow_close_grace_ms),
            _ => Duration::from_millis(CLOSE_HANDSHAKE_MS),
        },
    };
    conn.dead.set(true);
    if !grace.is_zero() {
        let deadline = Instant::now() + grace;
        // The writer ends once the close frame is out; then wait for the
        // peer's close (or EOF) so it can read ours, up to the grace.
        if tokio::time::timeout_at(deadline, &mut writer).await.is_ok()
            && matches!(end, ReadEnd::ServerClose)
        {
            let _ = tokio::time::timeout_at(deadline, wait_for_peer_close(&read)).await;
        }
    }
    writer.abort();
    teardown(&shard, &conn).await;
    drop(permit);
}

async fn read_loop(shard: &Shard, conn: &Rc<Conn>, read: &OwnedReadHalf, prefix: Bytes) -> ReadEnd {
    let limits = &shard.shared.config.limits;
    let interval = Duration::from_millis(limits.heartbeat_interval_ms);
    let timeout = Duration::from_millis(limits.heartbeat_timeout_ms);
    let mut reader = MessageReader::new(limits.max_message_bytes);
    // Bytes the client sent right after its upgrade request. `prefix` may
    // point into hyper's whole read buffer: copy what is needed and let it go.
    let mut buf = if prefix.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&prefix[..])
    };
    drop(prefix);
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
        // Handle every complete message in the buffer.
        loop {
            if conn.queue.borrow().is_closing() {
                return ReadEnd::ServerClose;
            }
            match reader.next(&mut buf) {
                Ok(Some(Message::Text(payload))) if conn.echo => {
                    conn.send(crate::ws::encode::data_frame(true, &payload));
                }
                Ok(Some(Message::Binary(payload))) if conn.echo => {
                    conn.send(crate::ws::encode::data_frame(false, &payload));
                }
                Ok(Some(Message::Text(payload))) => handle_text(shard, conn, payload).await,
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
                Ok(Some(Message::Ping(payload))) => conn.send(pong_frame(&payload)),
                Ok(Some(Message::Pong)) => awaiting_pong = None,
                Ok(Some(Message::Close(code, _))) => return ReadEnd::PeerClose(code),
                Ok(None) => break,
                Err(e) => {
                    conn.close_with(e.close_code(), &e.to_string(), false);
                    return ReadEnd::ServerClose;
                }
            }
        }
        if peer_done {
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
            buf = BytesMut::new(); // idle connections hold no read buffer
        }
        let deadline = awaiting_pong.map_or(next_ping, |since| since + timeout);
        if heartbeat.deadline() != deadline {
            heartbeat.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            _ = conn.reader_wake.wait() => {}
            ready = read.readable() => {
                if ready.is_err() {
                    return ReadEnd::Eof;
                }
                peer_done = !read_burst(read, &mut buf);
            }
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
                conn.send(ping_frame());
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

/// Read what the socket has, up to [`READ_BYTES_PER_TURN`]. Returns false
/// on EOF or error (what was read before it stays in `buf`, to be handled).
fn read_burst(read: &OwnedReadHalf, buf: &mut BytesMut) -> bool {
    let mut total = 0;
    while total < READ_BYTES_PER_TURN {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        match read.try_read_buf(buf) {
            Ok(0) => return false,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    true
}

/// After the server's close frame went out: read and discard until the
/// peer's close frame or EOF.
async fn wait_for_peer_close(read: &OwnedReadHalf) {
    let mut buf = [0u8; 1024];
    loop {
        if read.readable().await.is_err() {
            return;
        }
        match read.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Write queued frames in vectored batches until the close frame is out.
async fn write_loop(conn: Rc<Conn>, mut write: OwnedWriteHalf) {
    let mut inflight: VecDeque<Queued> = VecDeque::new();
    loop {
        let closing = {
            let mut queue = conn.queue.borrow_mut();
            if queue.is_empty() {
                queue.flush_gaps();
            }
            queue.take_all(&mut inflight);
            queue.is_closing()
        };
        if inflight.is_empty() {
            conn.writer_wake.wait().await;
            continue;
        }
        if write_frames(&mut write, &inflight).await.is_err() {
            conn.dead.set(true);
            conn.reader_wake.notify();
            return;
        }
        let written_us = crate::metrics::now_us();
        for (_, stamp_us) in &inflight {
            if *stamp_us > 0 {
                conn.counters
                    .publish_to_write
                    .record(written_us.saturating_sub(*stamp_us));
            }
        }
        inflight.clear();
        if inflight.capacity() > WRITER_KEEP_CAPACITY {
            inflight.shrink_to(WRITER_KEEP_CAPACITY);
        }
        if closing {
            // The close frame was the last one queued: it is out.
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// Write `frames` with vectored writes of up to [`WRITE_BATCH_FRAMES`]
/// slices each. The slices live on the stack of each poll, not in the
/// future, so an idle connection's task stays small.
async fn write_frames(
    write: &mut OwnedWriteHalf,
    frames: &VecDeque<Queued>,
) -> std::io::Result<()> {
    let (mut index, mut offset) = (0usize, 0usize);
    while index < frames.len() {
        let written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH_FRAMES];
            let mut count = 0;
            for (i, (frame, _)) in frames.range(index..).take(WRITE_BATCH_FRAMES).enumerate() {
                slices[count] = IoSlice::new(if i == 0 { &frame[offset..] } else { frame });
                count += 1;
            }
            std::pin::Pin::new(&mut *write).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
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
    }
    Ok(())
}

/// Leave every room and drop the connection from the shard's tables.
async fn teardown(shard: &Shard, conn: &Rc<Conn>) {
    // Joins in flight must settle first, or their rooms would keep a member
    // that is gone.
    let deadline = Instant::now() + Duration::from_millis(PENDING_JOIN_WAIT_MS);
    while !conn.joining.borrow().is_empty() {
        if tokio::time::timeout_at(deadline, conn.reader_wake.wait())
            .await
            .is_err()
        {
            break;
        }
    }
    let rooms: Vec<Arc<str>> = conn.rooms.borrow_mut().drain().collect();
    for room in &rooms {
        shard.remove_local_member(room, conn.id);
    }
    let dropped = conn.queue.borrow().dropped();
    shard
        .counters
        .dropped_closed
        .set(shard.counters.dropped_closed.get() + dropped);
    let last_of_user = shard.unregister(conn);
    if shard.shared.is_draining() {
        return; // the whole broker is going; rooms go with it
    }
    if last_of_user {
        shard.watch_user(&conn.user, false).await;
    }
    for room in rooms {
        let origin = Origin {
            conn: conn.id,
            id: None,
        };
        shard.leave(room, origin).await;
    }
}

/// Handle one text message.
async fn handle_text(shard: &Shard, conn: &Rc<Conn>, payload: Bytes) {
    // Validated by the reader already; simdutf8 re-checks at memory speed
    // (no unsafe to skip it).
    let Ok(text) = simdutf8::basic::from_utf8(&payload) else {
        // The reader validated UTF-8 already; this cannot happen.
        return;
    };
    let frame = match decode_client_frame(text) {
        Ok(frame) => frame,
        Err(e) => {
            conn.counters.frame_in(FRAME_INVALID);
            return conn.refuse(e.id, &e.refusal);
        }
    };
    conn.counters.frame_in(frame.kind_index());
    let id = frame.id();
    if let Err(refusal) = dispatch(shard, conn, &payload, text, frame).await {
        conn.refuse(id, &refusal);
    }
}

/// The `Bytes` of `part`, a sub-slice of `text`, which is `payload`.
fn slice_of(payload: &Bytes, text: &str, part: &str) -> Bytes {
    let start = part.as_ptr() as usize - text.as_ptr() as usize;
    payload.slice(start..start + part.len())
}

/// The refusal of a private room to a connection without a grant for it.
pub fn private_room_refusal(room: &str) -> Refusal {
    Refusal::new(
        ErrorCode::Forbidden,
        format!("room {room} is private and this connection's rooms do not include it"),
    )
}

fn membership_refusal(shard: &Shard, room: &str) -> Refusal {
    if shard.shared.rooms.contains(room) {
        Refusal::new(ErrorCode::NotMember, format!("not a member of room {room}"))
    } else {
        Refusal::new(
            ErrorCode::RoomNotFound,
            format!("room {room} does not exist"),
        )
    }
}

async fn dispatch(
    shard: &Shard,
    conn: &Rc<Conn>,
    payload: &Bytes,
    text: &str,
    frame: ClientFrame<'_>,
) -> Result<(), Refusal> {
    let shards = shard.shared.shards();
    let limits = &shard.shared.config.limits;
    match frame {
        ClientFrame::Ping { id } => conn.send(encode::pong(id)),
        ClientFrame::Join {
            id,
            room,
            since,
            epoch,
            create,
        } => {
            // Rights before state: creating needs the `create` right, and a
            // private room a matching grant (the home checks again).
            let meta = shard.shared.rooms.get(room);
            let creates = create && shard.shared.config.room.auto_create;
            // In cluster mode this node may not know a room that exists
            // elsewhere: the backplane's script decides on creation.
            let clustered = shard.shared.cluster.is_some();
            if meta.is_none() && creates && !clustered && !conn.perms().allows(Perm::Create) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!(
                        "room {room} does not exist and this connection lacks the `create` right"
                    ),
                ));
            }
            if meta.is_some_and(|m| m.private) && !conn.may_join_private(room) {
                return Err(private_room_refusal(room));
            }
            let room = match conn.known_room(room) {
                Some(known) => known,
                None => {
                    let held = conn.rooms.borrow().len() + conn.joining.borrow().len();
                    if held >= limits.max_rooms_per_connection {
                        return Err(Refusal::new(
                            ErrorCode::TooManyRooms,
                            format!(
                                "a connection may be in at most {} rooms",
                                limits.max_rooms_per_connection
                            ),
                        ));
                    }
                    Arc::from(room)
                }
            };
            *conn.joining.borrow_mut().entry(room.clone()).or_insert(0) += 1;
            if let Some(cluster) = &shard.shared.cluster {
                let op = crate::cluster::Op::Join {
                    origin: Origin { conn: conn.id, id },
                    user: conn.user.clone(),
                    name: conn.name.clone(),
                    since,
                    epoch: epoch.map(Arc::from),
                    create,
                    may_create: conn.perms().allows(Perm::Create),
                    may_join_private: conn.may_join_private(&room),
                    room,
                };
                cluster.submit(op).await;
                return Ok(());
            }
            let request = Request::Join {
                origin: Origin { conn: conn.id, id },
                user: conn.user.clone(),
                name: conn.name.clone(),
                since,
                epoch: epoch.map(Arc::from),
                create,
                may_create: conn.perms().allows(Perm::Create),
                may_join_private: conn.may_join_private(&room),
                room: room.clone(),
            };
            shard.request(home_of(&room, shards), request).await;
        }
        ClientFrame::Leave { id, room } => {
            // Forwarded also while the join is in flight: the home decides,
            // in the order the client sent its frames.
            let Some(room) = conn.known_room(room) else {
                return Err(membership_refusal(shard, room));
            };
            shard.leave(room, Origin { conn: conn.id, id }).await;
        }
        ClientFrame::Create { id, room, options } => {
            conn.perms().require(Perm::Create)?;
            let room: Arc<str> = Arc::from(room);
            let origin = Origin { conn: conn.id, id };
            if let Some(cluster) = &shard.shared.cluster {
                let op = crate::cluster::Op::Create {
                    origin,
                    room,
                    options,
                };
                cluster.submit(op).await;
                return Ok(());
            }
            let home = home_of(&room, shards);
            shard
                .request(
                    home,
                    Request::Create {
                        origin,
                        room,
                        options,
                    },
                )
                .await;
        }
        ClientFrame::Publish {
            id,
            room,
            data,
            exclude_self,
        } => {
            conn.perms().require(Perm::Publish)?;
            let clustered = shard.shared.cluster.is_some();
            let room = match conn.known_room(room) {
                Some(room) => room,
                // Whether the room exists is Redis' to say.
                None if clustered => Arc::from(room),
                None => return Err(membership_refusal(shard, room)),
            };
            conn.take_token()?;
            if let Some(cluster) = &shard.shared.cluster {
                let op = crate::cluster::Op::Publish {
                    origin: Origin { conn: conn.id, id },
                    from: conn.user.clone(),
                    data: slice_of(payload, text, data),
                    exclude_self,
                    room,
                };
                cluster.submit(op).await;
                return Ok(());
            }
            let request = Request::Publish {
                origin: Origin { conn: conn.id, id },
                from: conn.user.clone(),
                data: slice_of(payload, text, data),
                exclude_self,
                room: room.clone(),
            };
            shard.request(home_of(&room, shards), request).await;
        }
        ClientFrame::Send { id, to, data } => {
            conn.perms().require(Perm::Send)?;
            conn.take_token()?;
            let frame = encode::direct(&conn.user, encode::now_ms(), data.as_bytes());
            let mut targets = shard.shared.users.shards(to);
            if targets != 0 {
                let to: Arc<str> = Arc::from(to);
                while targets != 0 {
                    let target = targets.trailing_zeros() as usize;
                    targets &= targets - 1;
                    let delivery = Delivery::ToUser {
                        user: to.clone(),
                        frame: frame.clone(),
                    };
                    shard.deliver(target, delivery).await;
                }
            }
            if let Some(cluster) = &shard.shared.cluster {
                let op = crate::cluster::Op::ToUser {
                    user: Arc::from(to),
                    json: text_payload(&frame),
                };
                cluster.submit(op).await;
            }
            if let Some(id) = id {
                conn.send(encode::ack_send(id, to));
            }
        }
        ClientFrame::Broadcast { id, data } => {
            conn.perms().require(Perm::Broadcast)?;
            conn.take_token()?;
            let frame = encode::broadcast(&conn.user, encode::now_ms(), data.as_bytes());
            for target in 0..shards {
                let delivery = Delivery::All {
                    frame: frame.clone(),
                };
                shard.deliver(target, delivery).await;
            }
            if let Some(cluster) = &shard.shared.cluster {
                let op = crate::cluster::Op::ToAll {
                    json: text_payload(&frame),
                };
                cluster.submit(op).await;
            }
            if let Some(id) = id {
                conn.send(encode::ack(id));
            }
        }
        ClientFrame::Members { id, room } => {
            conn.perms().require(Perm::Presence)?;
            let room: Arc<str> = Arc::from(room);
            let origin = Origin { conn: conn.id, id };
            if let Some(cluster) = &shard.shared.cluster {
                cluster
                    .submit(crate::cluster::Op::Members { origin, room })
                    .await;
                return Ok(());
            }
            let home = home_of(&room, shards);
            shard.request(home, Request::Members { origin, room }).await;
        }
        ClientFrame::Refresh { id, token } => {
            let grant = check_refresh(&shard.shared.auth, &conn.user, token)?;
            let exp = grant.exp;
            conn.refresh(grant);
            if let Some(id) = id {
                conn.send(encode::ack_refresh(id, exp));
            }
        }
    }
    Ok(())
}

/// Check a `refresh` token of `user`'s connection like a connect token;
/// its `sub` must be `user`. A refusal changes nothing.
fn check_refresh(auth: &Authenticator, user: &str, token: &str) -> Result<Grant, Refusal> {
    if auth.mode() != AuthMode::Jwt {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "`refresh` needs auth.mode = \"jwt\"; this server uses no tokens",
        ));
    }
    let grant = auth.authenticate(Some(token))?;
    if grant.user.as_deref() != Some(user) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the new token's `sub` is not this connection's user",
        ));
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_slots_name_their_metrics_labels() {
        assert_eq!(crate::metrics::FRAME_KINDS[FRAME_INVALID], "invalid");
        assert_eq!(crate::metrics::FRAME_KINDS[FRAME_BINARY], "binary");
    }
}
