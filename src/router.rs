//! Shard-to-shard messaging: bounded inboxes with a wake-up.
//!
//! Each shard has two inboxes (crossbeam channels), drained by two tasks:
//!
//! * **requests** (join, leave, create, publish, members) go to a room's home
//!   shard. They are sent by connection tasks, and a full inbox makes the
//!   sender wait: backpressure reaches the publisher's read loop.
//! * **deliveries** (fan-out frames, replies, direct messages) go from a home
//!   shard (or a sender of direct messages) to the shards of the recipients.
//!   A full inbox makes the home shard's request pump wait.
//!
//! **Architecture Invariant:** a delivery pump never waits on anything but
//! its own inbox, so waits form a chain (connection → request pump →
//! delivery pump) with no cycle, and the shards cannot deadlock however full
//! the inboxes get. Per (home, member shard) pair, deliveries are FIFO,
//! which gives every room one total order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::OverflowPolicy;
use crate::error::Refusal;
use crate::limits::{SHARD_DELIVERY_INBOX, SHARD_INBOX_BYTES, SHARD_REQUEST_INBOX};
use crate::protocol::decode::RoomOptions;

/// Who asked: the connection a reply goes to.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Connection id (its shard is `conn % shards`).
    pub conn: u64,
    /// The frame's `id`, if the client wants a reply.
    pub id: Option<u64>,
}

/// Work for a room's home shard.
#[derive(Debug)]
pub enum Request {
    /// Join a room (creating it if allowed).
    Join {
        /// Reply target.
        origin: Origin,
        /// The member's user id.
        user: Arc<str>,
        /// Its display name.
        name: Option<Arc<str>>,
        /// The room.
        room: Arc<str>,
        /// Recover after this seq.
        since: Option<u64>,
        /// The room epoch `since` belongs to (v1.1).
        epoch: Option<Arc<str>>,
        /// Create the room if absent.
        create: bool,
        /// The connection holds the `create` right.
        may_create: bool,
        /// The connection may join the room if it is private.
        may_join_private: bool,
    },
    /// Leave a room (also sent, without an id, when a connection closes).
    Leave {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
    },
    /// Create a room explicitly.
    Create {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
        /// Its options.
        options: RoomOptions,
    },
    /// Publish into a room.
    Publish {
        /// Reply target.
        origin: Origin,
        /// The publisher's user id.
        from: Arc<str>,
        /// The room.
        room: Arc<str>,
        /// Raw JSON of `data` (a slice of the client's frame).
        data: Bytes,
        /// Skip the publishing connection.
        exclude_self: bool,
    },
    /// List members.
    Members {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
    },
    /// An operation of the HTTP API on a room homed there.
    Api {
        /// The room.
        room: Arc<str>,
        /// What to do.
        op: ApiOp,
    },
    /// Cluster mode: what the backplane learned about a room homed there,
    /// in the room's order.
    Cluster(ClusterEvent),
}

/// Cluster mode: the backplane's news for a room's home shard on this node.
/// A home applies them in the order they come, which is the room's `seq`
/// order (see [`crate::cluster`]).
#[derive(Debug)]
pub enum ClusterEvent {
    /// A room message for this node's members.
    Message {
        /// The room.
        room: Arc<str>,
        /// Its seq.
        seq: u64,
        /// The encoded frame.
        frame: Bytes,
        /// A local connection to skip (`exclude_self`).
        skip: Option<u64>,
        /// When the backplane received it ([`crate::metrics::now_us`]).
        stamp_us: u64,
    },
    /// Messages `from..=to` are lost for this node's members.
    Gap {
        /// The room.
        room: Arc<str>,
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
    /// A join was accepted: add the member, send its ack, then `catchup`.
    Admit {
        /// The room.
        room: Arc<str>,
        /// The member connection.
        conn: u64,
        /// Its user id.
        user: Arc<str>,
        /// Its display name.
        name: Option<Arc<str>>,
        /// The room's settings.
        facts: crate::cluster::RoomFacts,
        /// The ack, if the join carried an id.
        reply: Option<Bytes>,
        /// Frames published between the join and now (and a `gap` first
        /// for any this node no longer has).
        catchup: Vec<Bytes>,
    },
    /// A member left (or its connection closed).
    Removed {
        /// The room.
        room: Arc<str>,
        /// The connection.
        conn: u64,
        /// The ack, if the leave carried an id.
        reply: Option<Bytes>,
    },
    /// A `joined`/`left` event for this node's members.
    Presence {
        /// The room.
        room: Arc<str>,
        /// The event frame.
        frame: Bytes,
        /// The local member it is about (not told about itself).
        skip: Option<u64>,
    },
    /// The room was deleted.
    Closed {
        /// The room.
        room: Arc<str>,
    },
    /// Drain: the backplane has handed this shard every message published
    /// before it unsubscribed; the shard may seal (`Delivery::HomeSealed`).
    Sealed,
}

/// HTTP API operations on a room, each with its reply channel.
#[derive(Debug)]
pub enum ApiOp {
    /// `POST /api/rooms`
    Create {
        /// Options of the new room.
        options: RoomOptions,
        /// `Ok` or `room_exists` / `too_many_rooms`.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `DELETE /api/rooms/{room}`
    Delete {
        /// `Ok` or `room_not_found`.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `POST /api/publish` (from `"system"`).
    Publish {
        /// Raw JSON of `data`.
        data: Bytes,
        /// The message's seq, or `room_not_found`.
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    /// `GET /api/rooms/{room}`
    Details {
        /// The room's details with its member list.
        reply: oneshot::Sender<Result<serde_json::Value, Refusal>>,
    },
}

/// Work for the shard that holds the recipients.
#[derive(Debug)]
pub enum Delivery {
    /// A frame for every local member of `room`. `seq` > 0 marks a room
    /// message (overflow policy applies); 0 an event (`joined`/`left`).
    Room {
        /// The room.
        room: Arc<str>,
        /// The message's seq, or 0 for an event.
        seq: u64,
        /// The encoded frame, shared by every recipient.
        frame: Bytes,
        /// A connection to skip (`exclude_self`, or the subject of an event).
        exclude: Option<u64>,
        /// When the home sequenced it ([`crate::metrics::now_us`]; 0 for
        /// events), for the publish-to-write histogram.
        stamp_us: u64,
    },
    /// One frame for one connection (acks, errors).
    ToConn {
        /// The connection.
        conn: u64,
        /// The frame.
        frame: Bytes,
    },
    /// The home accepted a join: start delivering the room to `conn`.
    Joined {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The room's overflow policy.
        overflow: OverflowPolicy,
        /// The ack, if the join carried an id.
        reply: Option<Bytes>,
    },
    /// The home refused a join.
    JoinRefused {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The error frame.
        reply: Bytes,
    },
    /// The home removed `conn` from `room`: stop delivering it.
    Left {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The ack, if the leave carried an id.
        reply: Option<Bytes>,
    },
    /// A frame for every local connection of a user.
    ToUser {
        /// The user.
        user: Arc<str>,
        /// The frame.
        frame: Bytes,
    },
    /// A frame for every local connection.
    All {
        /// The frame.
        frame: Bytes,
    },
    /// `room` was deleted: its local members leave it and get `frame`.
    RoomClosed {
        /// The room.
        room: Arc<str>,
        /// The `room_closed` frame.
        frame: Bytes,
    },
    /// An HTTP API notification: `frame` to every local connection of
    /// `user` (or to all, without a user); the count goes to `done`.
    Notify {
        /// The user, or everyone.
        user: Option<Arc<str>>,
        /// The `notification` frame.
        frame: Bytes,
        /// How many connections got it.
        done: mpsc::Sender<usize>,
    },
    /// Close connection `conn` with 1008 (`DELETE /api/connections/{conn}`).
    Kick {
        /// The connection.
        conn: u64,
        /// Whether it existed.
        done: oneshot::Sender<bool>,
    },
    /// Report the shard's figures (`GET /api/stats`).
    Stats {
        /// Where the figures go.
        done: mpsc::Sender<crate::shard::ShardStats>,
    },
    /// Drain: the sending shard's rooms are sealed. Every delivery of a
    /// message it sequenced (and its ack) came before this on the same
    /// inbox, and it sequences nothing more.
    HomeSealed,
}

/// Something that travels through an inbox, with the bytes it keeps alive.
pub trait Weighed {
    /// Bytes of payload the item holds (frames, message data).
    fn weight(&self) -> usize;
}

impl Weighed for Request {
    fn weight(&self) -> usize {
        match self {
            Request::Publish { data, .. } => data.len(),
            Request::Api {
                op: ApiOp::Publish { data, .. },
                ..
            } => data.len(),
            Request::Cluster(ClusterEvent::Message { frame, .. }) => frame.len(),
            Request::Cluster(ClusterEvent::Admit { reply, catchup, .. }) => {
                reply.as_ref().map_or(0, Bytes::len) + catchup.iter().map(Bytes::len).sum::<usize>()
            }
            _ => 0,
        }
    }
}

impl Weighed for Delivery {
    fn weight(&self) -> usize {
        match self {
            Delivery::Room { frame, .. }
            | Delivery::ToConn { frame, .. }
            | Delivery::ToUser { frame, .. }
            | Delivery::All { frame }
            | Delivery::RoomClosed { frame, .. }
            | Delivery::Notify { frame, .. }
            | Delivery::JoinRefused { reply: frame, .. } => frame.len(),
            Delivery::Kick { .. } | Delivery::Stats { .. } | Delivery::HomeSealed => 0,
            Delivery::Joined { reply, .. } | Delivery::Left { reply, .. } => {
                reply.as_ref().map_or(0, Bytes::len)
            }
        }
    }
}

impl Weighed for u64 {
    fn weight(&self) -> usize {
        8
    }
}

/// One inbox, bounded in items and in bytes, and its two signals.
pub struct Inbox<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    /// Bytes held by queued items.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// A sender may be waiting for space (set before it checks for space,
    /// so a drain that empties the inbox cannot miss it).
    sender_waiting: AtomicBool,
    /// Woken when an item arrives.
    pub arrived: Notify,
    /// Woken when a drain made room.
    pub space: Notify,
}

impl<T: Weighed> Inbox<T> {
    /// An inbox of at most `capacity` items and `max_bytes` bytes (one item
    /// larger than that fits when the inbox holds no bytes).
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        let (tx, rx) = bounded(capacity);
        Inbox {
            tx,
            rx,
            bytes: AtomicUsize::new(0),
            max_bytes,
            sender_waiting: AtomicBool::new(false),
            arrived: Notify::new(),
            space: Notify::new(),
        }
    }

    /// Send `item`, waiting while the inbox is full (in items or bytes).
    /// Errors only when the receiving shard has gone (shutdown); the item is
    /// then dropped.
    pub async fn send(&self, item: T) -> Result<(), ShardGone> {
        // Fast path: no waiter registration (Notify's lock) unless full.
        let mut item = match self.try_put(item)? {
            None => return Ok(()),
            Some(back) => back,
        };
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            // Say a sender waits, then look once more: a drain that ran
            // before the flag was set made room we would otherwise miss.
            self.sender_waiting.store(true, Ordering::Release);
            item = match self.try_put(item)? {
                None => return Ok(()),
                Some(back) => back,
            };
            space.await;
        }
    }

    /// Put `item` in if it fits; hand it back if not.
    fn try_put(&self, item: T) -> Result<Option<T>, ShardGone> {
        let weight = item.weight();
        let before = self.bytes.fetch_add(weight, Ordering::AcqRel);
        if before > 0 && before + weight > self.max_bytes {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            return Ok(Some(item));
        }
        match self.tx.try_send(item) {
            Ok(()) => {
                self.arrived.notify_one();
                Ok(None)
            }
            Err(TrySendError::Full(back)) => {
                self.bytes.fetch_sub(weight, Ordering::AcqRel);
                Ok(Some(back))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.bytes.fetch_sub(weight, Ordering::AcqRel);
                Err(ShardGone)
            }
        }
    }

    /// Take up to `max` items into `out`, waking senders waiting for space.
    /// Returns how many were taken.
    pub fn drain(&self, out: &mut Vec<T>, max: usize) -> usize {
        let before = out.len();
        let mut freed = 0;
        while out.len() - before < max {
            match self.rx.try_recv() {
                Ok(item) => {
                    freed += item.weight();
                    out.push(item);
                }
                Err(_) => break,
            }
        }
        if freed > 0 {
            self.bytes.fetch_sub(freed, Ordering::AcqRel);
        }
        let taken = out.len() - before;
        if taken > 0 && self.sender_waiting.swap(false, Ordering::AcqRel) {
            self.space.notify_waiters();
        }
        taken
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Bytes held by waiting items.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// The receiving shard has shut down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the target shard has shut down")]
pub struct ShardGone;

/// The inboxes of one shard.
pub struct ShardLink {
    /// Requests for rooms homed on the shard.
    pub requests: Inbox<Request>,
    /// Deliveries to connections on the shard.
    pub deliveries: Inbox<Delivery>,
}

impl ShardLink {
    /// A link with the standard inbox bounds.
    pub fn new() -> Arc<Self> {
        Arc::new(ShardLink {
            requests: Inbox::new(SHARD_REQUEST_INBOX, SHARD_INBOX_BYTES),
            deliveries: Inbox::new(SHARD_DELIVERY_INBOX, SHARD_INBOX_BYTES),
        })
    }
}

/// The home shard of `room` among `shards`: a fixed hash, the same in every
/// process, so a room's home never moves.
pub fn home_of(room: &str, shards: usize) -> usize {
    // FNV-1a: short keys, no DoS concern (a room's home only picks a shard).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_stable_and_in_range() {
        for n in 1..8 {
            for room in ["a", "lobby", "team-42"] {
                let h = home_of(room, n);
                assert!(h < n);
                assert_eq!(h, home_of(room, n));
            }
        }
    }

    #[test]
    fn inbox_backpressure_waits_for_space() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let inbox = Arc::new(Inbox::<u64>::new(2, 1 << 20));
            inbox.send(1).await.expect("send");
            inbox.send(2).await.expect("send");
            let sender = {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.send(3).await })
            };
            tokio::task::yield_now().await;
            assert!(!sender.is_finished());
            let mut out = Vec::new();
            assert_eq!(inbox.drain(&mut out, 10), 2);
            sender.await.expect("join").expect("sent");
            inbox.drain(&mut out, 10);
            assert_eq!(out, vec![1, 2, 3]);
        });
    }

    #[test]
    fn inbox_is_bounded_in_bytes_too() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Room for 100 items but only 16 bytes: two u64s.
            let inbox = Arc::new(Inbox::<u64>::new(100, 16));
            inbox.send(1).await.expect("send");
            inbox.send(2).await.expect("send");
            assert_eq!(inbox.bytes(), 16);
            let sender = {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.send(3).await })
            };
            tokio::task::yield_now().await;
            assert!(!sender.is_finished());
            let mut out = Vec::new();
            inbox.drain(&mut out, 1);
            sender.await.expect("join").expect("sent");
            assert_eq!(inbox.bytes(), 16);
        });
    }
}
