//! One WebSocket connection: its state ([`Conn`]) and how what it is sent
//! is queued and written for its protocol (this file), its life from the
//! upgrade to its teardown ([`life`]), the socket loops that move its
//! frames ([`io`]), what the back end answered it ([`answers`]), and the
//! front doors that turn its frames into ops: [`dispatch`] for the native
//! protocol, [`pusher`] for the Pusher Channels protocol. The queue, the
//! socket loops, the caps and the teardown are the same for both; a
//! connection's [`Protocol`] decides only how its frames are read and how
//! what it is sent is written.
//!
//! **Invariant:** a connection holds no read buffer while idle, and its
//! outbound memory is bounded by its [`OutQueue`]; the only frame that may
//! bypass the queue's bounds is the close frame that ends it.

mod answers;
mod dispatch;
mod io;
mod life;
pub(crate) mod pusher;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::Shard;
use super::cork::Cork;
use super::outbound::{GapStyle, OutQueue, Pushed, Queued};
use super::signal::LocalSignal;
use crate::auth::{Grant, RoomPatterns};
use crate::config::OverflowPolicy;
use crate::delivery::RoomFrame;
use crate::edge::stream::WriteHalf;
use crate::error::{Refusal, close};
use crate::op::UserFrame;
use crate::perms::{Perm, Perms};
use crate::ratelimit::TokenBucket;
use crate::ws::deflate::{Deflate, compressed_frame};
use crate::ws::encode::close_frame;
pub(crate) use life::serve;

/// Who a connection is, decided before the upgrade.
pub(crate) struct Identity {
    /// Connection id.
    pub(crate) id: u64,
    /// The client's address (resolved through PROXY protocol and trusted
    /// proxies).
    pub(crate) addr: IpAddr,
    /// User id.
    pub(crate) user: Arc<str>,
    /// Display name.
    pub(crate) name: Option<Arc<str>>,
    /// Rights.
    pub(crate) perms: Perms,
    /// Private rooms it may join.
    pub(crate) rooms: RoomPatterns,
    /// When its token expires (seconds since the Unix epoch).
    pub(crate) expires_at: Option<u64>,
    /// An echo connection (`server.echo_path`): messages come straight back.
    pub(crate) echo: bool,
    /// The protocol it speaks.
    pub(crate) protocol: Protocol,
    /// permessage-deflate, when negotiated.
    pub(crate) deflate: Option<Deflate>,
}

/// What the API shows of one connection (`GET /api/connections/{conn}`).
#[derive(Debug, serde::Serialize)]
pub(crate) struct ConnDetails {
    /// Connection id.
    conn: u64,
    /// User id.
    user: Arc<str>,
    /// Display name.
    name: Option<Arc<str>>,
    /// The client's address (through PROXY protocol and trusted proxies).
    addr: String,
    /// Whether it came over TLS.
    tls: bool,
    /// Whether permessage-deflate was negotiated.
    compression: bool,
    /// Rooms it is in.
    rooms: Vec<Arc<str>>,
    /// Frames waiting in its outbound queue.
    queued_frames: usize,
}

/// The protocol a connection speaks.
pub(crate) enum Protocol {
    /// PROTOCOL.md (`/ws`).
    Native,
    /// Pusher Channels protocol 7 (`/app/{key}`), with its state.
    Pusher(Box<pusher::PusherConn>),
}

impl Protocol {
    /// Whether any message from the client answers the heartbeat. Pusher
    /// counts every event as activity (`pusher:pong` among them), so a
    /// client that talks is alive; the native protocol answers with a
    /// WebSocket pong only.
    pub(crate) fn any_message_answers_heartbeat(&self) -> bool {
        matches!(self, Protocol::Pusher(_))
    }
}

/// A connection's state shared by its reader, its writer and fan-out.
pub(crate) struct Conn {
    /// This connection, as the shard's cork lists it.
    me: Weak<Conn>,
    /// Connection id (its shard is [`crate::placement::shard_of`]).
    pub(crate) id: u64,
    /// User id (a Pusher `pusher:signin` changes it).
    user: RefCell<Arc<str>>,
    /// Display name.
    pub(crate) name: Option<Arc<str>>,
    /// The protocol it speaks.
    pub(crate) protocol: Protocol,
    /// Its user id changed since it connected (and counts in the user
    /// index under the new one too, see [`Shard::rename_user`]).
    pub(crate) renamed: Cell<bool>,
    /// The client's address.
    addr: IpAddr,
    /// Came over TLS.
    tls: bool,
    /// permessage-deflate, when negotiated.
    deflate: Option<Deflate>,
    /// Messages shorter than this go uncompressed.
    deflate_min_bytes: usize,
    /// Rights, rooms and expiry of the connection's token; a `refresh`
    /// replaces them (never borrowed across an `.await`).
    perms: Cell<Perms>,
    private_rooms: RefCell<RoomPatterns>,
    expires_at: Cell<Option<u64>>,
    echo: bool,
    queue: RefCell<OutQueue>,
    /// The socket's writing side while the writer task sleeps (it takes it
    /// while it writes); [`Conn::flush_now`] writes through it.
    write: RefCell<Option<WriteHalf>>,
    /// Frames taken from the queue and not fully written yet (the first
    /// from `inflight_offset`).
    inflight: RefCell<VecDeque<Queued>>,
    inflight_offset: Cell<usize>,
    /// The shard's cork: a wake-up during a pump's batch is a flush at its
    /// end.
    cork: Rc<Cork<Weak<Conn>>>,
    writer_wake: LocalSignal,
    reader_wake: LocalSignal,
    /// The reader stopped reading until replies are taken (the writer
    /// wakes it when it takes them).
    reader_paused: Cell<bool>,
    /// Rooms joined (as acknowledged by the back end).
    rooms: RefCell<HashSet<Arc<str>>>,
    /// Joins sent to the back end and not answered yet, by room.
    joining: RefCell<HashMap<Arc<str>, u32>>,
    dead: Cell<bool>,
    close_code: Cell<Option<u16>>,
    bucket: RefCell<Option<TokenBucket>>,
    counters: Rc<super::ShardCounters>,
}

impl Conn {
    fn new(identity: Identity, tls: bool, shard: &Shard) -> Rc<Conn> {
        let l = &shard.shared.config.limits;
        let bucket = (l.publish_rate_per_sec > 0)
            .then(|| TokenBucket::new(l.publish_rate_per_sec, l.publish_burst, Instant::now()));
        let mut queue = OutQueue::new(l.outbound_queue_messages, l.outbound_queue_bytes);
        if let Protocol::Pusher(_) = identity.protocol {
            queue.set_gap_style(GapStyle::Pusher);
        }
        Rc::new_cyclic(|me| Conn {
            me: me.clone(),
            id: identity.id,
            user: RefCell::new(identity.user),
            name: identity.name,
            protocol: identity.protocol,
            renamed: Cell::new(false),
            addr: identity.addr,
            tls,
            deflate: identity.deflate,
            deflate_min_bytes: shard.shared.config.server.compression_min_bytes,
            perms: Cell::new(identity.perms),
            private_rooms: RefCell::new(identity.rooms),
            expires_at: Cell::new(identity.expires_at),
            echo: identity.echo,
            queue: RefCell::new(queue),
            write: RefCell::new(None),
            inflight: RefCell::default(),
            inflight_offset: Cell::new(0),
            cork: shard.cork.clone(),
            writer_wake: LocalSignal::default(),
            reader_wake: LocalSignal::default(),
            reader_paused: Cell::new(false),
            rooms: RefCell::default(),
            joining: RefCell::default(),
            dead: Cell::new(false),
            close_code: Cell::new(None),
            bucket: RefCell::new(bucket),
            counters: shard.counters.clone(),
        })
    }

    /// The connection's user id.
    pub(crate) fn user(&self) -> Arc<str> {
        self.user.borrow().clone()
    }

    /// Set the connection's user id (the shard's tables follow, see
    /// [`Shard::rename_user`]).
    pub(crate) fn set_user(&self, user: Arc<str>) {
        *self.user.borrow_mut() = user;
    }

    /// Whether it speaks the Pusher protocol.
    pub(crate) fn is_pusher(&self) -> bool {
        matches!(self.protocol, Protocol::Pusher(_))
    }

    /// The Pusher state, if it speaks Pusher.
    fn pusher(&self) -> Option<&pusher::PusherConn> {
        match &self.protocol {
            Protocol::Native => None,
            Protocol::Pusher(p) => Some(p),
        }
    }

    /// What the API shows of this connection.
    pub(crate) fn details(&self) -> ConnDetails {
        ConnDetails {
            conn: self.id,
            user: self.user(),
            name: self.name.clone(),
            addr: self.addr.to_string(),
            tls: self.tls,
            compression: self.deflate.is_some(),
            rooms: self.rooms.borrow().iter().cloned().collect(),
            queued_frames: self.queue.borrow().len(),
        }
    }

    /// Whether the connection is being torn down (no more deliveries).
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Queue traffic that is not a room message (presence, `direct`, ...);
    /// a full queue closes the connection with 4000.
    pub(crate) fn send(&self, frame: Bytes) {
        let pushed = self.queue.borrow_mut().push_control(frame);
        self.after_push(pushed);
    }

    /// Queue a reply to one of the connection's own frames. Never a slow
    /// consumer: the reader stops reading while replies fill the queue.
    pub(crate) fn reply(&self, frame: Bytes) {
        let pushed = self.queue.borrow_mut().push_reply(frame);
        self.after_push(pushed);
    }

    /// Whether the reader must stop reading until the writer has taken the
    /// queued replies.
    fn replies_full(&self) -> bool {
        self.queue.borrow().replies_full()
    }

    /// The form of room frame `frame` of `room` this connection gets, if
    /// its protocol has one: for the native protocol the shared compressed
    /// frame if it negotiated permessage-deflate with a window that reads it
    /// (and the message is long enough), else the plain one; for Pusher the
    /// frame's Pusher form. Each form is made once per message, shared by
    /// every connection that takes it.
    pub(crate) fn room_bytes<'f>(
        &self,
        room: &str,
        frame: &'f RoomFrame,
        min_bytes: usize,
    ) -> Option<&'f Bytes> {
        match &self.protocol {
            Protocol::Native => {
                let plain = frame.native_frame()?;
                match self.deflate {
                    Some(d) if d.reads_shared() => Some(frame.deflated(min_bytes).unwrap_or(plain)),
                    _ => Some(plain),
                }
            }
            Protocol::Pusher(_) => frame.pusher_form(|f| pusher::room_form(room, f)),
        }
    }

    /// The form of a room event (`joined`/`left`, `gap`) this connection's
    /// protocol reads, if it has one (events go uncompressed).
    fn event_bytes<'f>(&self, room: &str, frame: &'f RoomFrame) -> Option<&'f Bytes> {
        match &self.protocol {
            Protocol::Native => frame.native_frame(),
            Protocol::Pusher(_) => frame.pusher_form(|f| pusher::room_form(room, f)),
        }
    }

    /// A data frame of this connection's own (the echo endpoint):
    /// compressed when it negotiated that and `payload` is long enough.
    pub(crate) fn own_data_frame(&self, text: bool, payload: &[u8]) -> Bytes {
        if let Some(d) = self.deflate {
            if payload.len() >= self.deflate_min_bytes {
                if let Some(frame) = compressed_frame(text, payload, d.server_window_bits) {
                    return frame;
                }
            }
        }
        crate::ws::encode::data_frame(text, payload)
    }

    /// Queue message `seq` of `room` under the room's overflow policy.
    pub(crate) fn push_room(
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

    /// A frame for users reached this connection: queue it (native
    /// frames go to native connections only) or close. True if it did
    /// something.
    pub(crate) fn to_user(&self, frame: &UserFrame) -> bool {
        match (frame, &self.protocol) {
            (UserFrame::Frame(bytes), Protocol::Native) => {
                self.send(bytes.clone());
                true
            }
            (UserFrame::Frame(_), Protocol::Pusher(_)) => false,
            (UserFrame::Close(reason), _) => {
                self.close_with(close::POLICY, reason, false);
                true
            }
        }
    }

    /// The server's heartbeat in this connection's protocol: a WebSocket
    /// ping, or Pusher's `pusher:ping` event.
    fn heartbeat_ping(&self) -> Bytes {
        match self.protocol {
            Protocol::Native => crate::ws::encode::ping_frame(),
            Protocol::Pusher(_) => crate::pusher::wire::ping(),
        }
    }

    /// Queue a room event (`joined`/`left`, `gap`) in this connection's
    /// protocol, if it has a form there.
    pub(crate) fn send_event(&self, room: &str, frame: &RoomFrame) {
        if let Some(bytes) = self.event_bytes(room, frame) {
            self.send(bytes.clone());
        }
    }

    fn after_push(&self, pushed: Pushed) {
        match pushed {
            Pushed::Queued { wake: true } => {
                if !self.cork.defer(|| self.me.clone()) {
                    self.writer_wake.notify();
                }
            }
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
    pub(crate) fn close_with(&self, code: u16, reason: &str, discard: bool) {
        let code = match &self.protocol {
            Protocol::Native => code,
            Protocol::Pusher(_) => pusher::close_code(code),
        };
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
    pub(crate) fn queue_figures(&self) -> (usize, usize, u64) {
        let q = self.queue.borrow();
        (q.len(), q.bytes(), q.dropped())
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
            Err(Refusal::rate_limited())
        }
    }
}
