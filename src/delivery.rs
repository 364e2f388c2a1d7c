//! What a back end hands to the shards that hold the recipients: room
//! frames, answers to ops, membership changes.
//!
//! **Architecture Invariant:** a room message is a [`Delivery::Room`]
//! carrying one encoded frame shared by every recipient (a refcount, never a
//! copy); answers are typed ([`Ack`], [`JoinAck`], [`Refusal`]) and encoded
//! by the asking connection for its own protocol. Both back ends (home
//! shards, the cluster backplane) speak only these, so a shard cannot tell
//! which back end runs.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::OverflowPolicy;
use crate::error::Refusal;
use crate::inbox::Weighed;
use crate::observe::{Observed, RoomChange};
use crate::op::{Audience, Op, Origin, Reply, UserFrame};
use crate::placement::{ShardSet, shard_of};
use crate::room::namespaces::Rules;

/// A member of a room, as `members` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemberInfo {
    /// Its connection id.
    pub(crate) conn: u64,
    /// The node holding the connection (cluster mode; API details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<Arc<str>>,
    /// Its user id.
    pub(crate) user: Arc<str>,
    /// Its display name.
    pub(crate) name: Option<Arc<str>>,
}

/// A frame for a room's members, shared by every recipient on every shard:
/// the native encoding its sequencer made, and the other forms each made at
/// most once, on first demand, by whichever member shard needs it first —
/// its permessage-deflate form (for members that negotiated compression)
/// and its Pusher form (for Pusher members). A room message costs one
/// serialization per protocol and one compression, never one per recipient
/// or per shard; members that need no other form never pay for one.
/// Cloning is a refcount.
#[derive(Debug, Clone)]
pub struct RoomFrame(Arc<SharedFrame>);

#[derive(Debug)]
struct SharedFrame {
    /// The native frame; empty when native members get nothing (a presence
    /// change with `room.presence_events` off).
    plain: Bytes,
    /// What a presence event is about, for protocols that say it in their
    /// own words.
    change: Option<PresenceChange>,
    deflated: OnceLock<Option<Bytes>>,
    /// The Pusher form (`None` inside: nothing for Pusher members).
    pusher: OnceLock<Option<Bytes>>,
}

impl RoomFrame {
    /// `plain`, an encoded text frame every protocol derives its form from
    /// (a message, a `gap`).
    pub fn new(plain: Bytes) -> Self {
        RoomFrame(Arc::new(SharedFrame {
            plain,
            change: None,
            deflated: OnceLock::new(),
            pusher: OnceLock::new(),
        }))
    }

    /// A presence event: `native` for native members (if they get one),
    /// and the change itself for the others.
    pub(crate) fn presence(native: Option<Bytes>, change: PresenceChange) -> Self {
        RoomFrame(Arc::new(SharedFrame {
            plain: native.unwrap_or_default(),
            change: Some(change),
            deflated: OnceLock::new(),
            pusher: OnceLock::new(),
        }))
    }

    /// The frame as encoded (empty when native members get nothing).
    pub fn plain(&self) -> &Bytes {
        &self.0.plain
    }

    /// The native frame, if native members get one.
    pub(crate) fn native_frame(&self) -> Option<&Bytes> {
        (!self.0.plain.is_empty()).then_some(&self.0.plain)
    }

    /// The compressed frame (window [`crate::ws::deflate::SHARED_WINDOW_BITS`]),
    /// or `None` when the payload is below `min_bytes` or does not shrink.
    /// The first call on any thread compresses; the others share it.
    pub fn deflated(&self, min_bytes: usize) -> Option<&Bytes> {
        self.0
            .deflated
            .get_or_init(|| {
                let payload = crate::ws::encode::text_payload(&self.0.plain);
                if payload.len() < min_bytes {
                    return None;
                }
                crate::ws::deflate::compressed_frame(
                    true,
                    &payload,
                    crate::ws::deflate::SHARED_WINDOW_BITS,
                )
            })
            .as_ref()
    }

    /// The presence change this frame is about, if it is one.
    pub(crate) fn change(&self) -> Option<&PresenceChange> {
        self.0.change.as_ref()
    }

    /// The Pusher form, made by `encode` the first time any shard asks.
    pub(crate) fn pusher_form(
        &self,
        encode: impl FnOnce(&RoomFrame) -> Option<Bytes>,
    ) -> Option<&Bytes> {
        self.0.pusher.get_or_init(|| encode(self)).as_ref()
    }

    /// Bytes it keeps alive (for inbox accounting).
    pub(crate) fn len(&self) -> usize {
        self.0.plain.len()
    }
}

/// A member joined or left: who, and whether that changed the room's
/// users (its first connection joined, or its last left).
#[derive(Debug, Clone)]
pub(crate) struct PresenceChange {
    /// Joined (else left).
    pub(crate) joined: bool,
    /// The member's user id.
    pub(crate) user: Arc<str>,
    /// Its `info` (raw JSON), if it gave one.
    pub(crate) info: Option<Arc<str>>,
    /// The user's first connection in the room joined, or its last left.
    pub(crate) user_changed: bool,
}

/// A room's counts, as the Pusher API's channel list shows them.
#[derive(Debug, Clone)]
pub(crate) struct RoomCounts {
    /// The room.
    pub(crate) room: Arc<str>,
    /// Member connections.
    pub(crate) members: u64,
    /// Distinct users among them.
    pub(crate) users: u64,
}

/// A user in a room, with the `info` of its first connection.
#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    /// User id.
    pub(crate) user: Arc<str>,
    /// Raw JSON `info`, if given.
    pub(crate) info: Option<Arc<str>>,
}

/// A successful op, as the asking connection is told (`ack`).
#[derive(Debug)]
pub(crate) enum Ack {
    /// `create` and `leave`: the room.
    Room(Arc<str>),
    /// `publish`: the room and the message's seq.
    Published {
        /// The room.
        room: Arc<str>,
        /// The seq it got.
        seq: u64,
    },
    /// `members`: the list (at most `limits.max_presence_list`) and the
    /// exact count.
    Members(Box<MemberList>),
}

/// The answer to `members`.
#[derive(Debug)]
pub(crate) struct MemberList {
    /// The room.
    pub(crate) room: Arc<str>,
    /// Listed members.
    pub(crate) members: Vec<MemberInfo>,
    /// Members in all.
    pub(crate) total: usize,
}

/// The answer to a `join` that carried an `id`.
#[derive(Debug)]
pub(crate) struct JoinAck {
    /// The frame's id.
    pub(crate) id: u64,
    /// The room's last seq.
    pub(crate) seq: u64,
    /// The room's epoch (v1.1).
    pub(crate) epoch: String,
    /// Members after the join.
    pub(crate) members: u32,
    /// Payloads (JSON) of `message` frames, oldest first.
    pub(crate) history: Vec<Bytes>,
    /// Whether `since` was recovered completely (only when given).
    pub(crate) recovered: Option<bool>,
    /// The room's users, each once (at most `limits.max_presence_list`),
    /// when the join asked (`list_users`).
    pub(crate) users: Option<Vec<UserEntry>>,
    /// Distinct users in the room after the join.
    pub(crate) user_count: u32,
}

/// A join the back end accepted.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The room's overflow policy.
    pub(crate) overflow: OverflowPolicy,
    /// The ack, if the join carried an id.
    pub(crate) ack: Option<JoinAck>,
    /// Frames for the new member before any later room frame: what was
    /// published between the join and its admission (cluster mode), with
    /// a `gap` first for what is lost.
    pub(crate) catchup: Vec<Bytes>,
}

/// A room's details (`GET /api/rooms/{room}`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoomDetails {
    /// The room.
    pub(crate) room: Arc<str>,
    /// Members in all.
    pub(crate) members: usize,
    /// Distinct users among them.
    pub(crate) users: usize,
    /// Last seq.
    pub(crate) seq: u64,
    /// The room's epoch (v1.1; empty if it has none yet).
    pub(crate) epoch: String,
    /// Private room.
    pub(crate) private: bool,
    /// Member cap.
    pub(crate) max_members: u32,
    /// Overflow policy.
    pub(crate) overflow: &'static str,
    /// Made by `create` or the API (lives until deleted).
    pub(crate) explicit: bool,
    /// Messages in history.
    pub(crate) history: u64,
    /// The shard that sequences it (single node only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) home_shard: Option<usize>,
    /// The prefix of its namespace (`null` outside every namespace).
    pub(crate) namespace: Option<Arc<str>>,
    /// Its options in effect.
    pub(crate) options: Rules,
    /// Members, at most `limits.max_presence_list`.
    pub(crate) member_list: Vec<MemberInfo>,
}

/// Work for the shard that holds the recipients.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A frame for every local member of `room`. `seq` > 0 marks a room
    /// message (overflow policy applies); 0 an event (`joined`/`left`,
    /// `gap`).
    Room {
        /// The room.
        room: Arc<str>,
        /// The message's seq, or 0 for an event.
        seq: u64,
        /// The encoded frame, shared by every recipient.
        frame: RoomFrame,
        /// A connection to skip (`exclude_self`, or the subject of an event).
        exclude: Option<u64>,
        /// When it was sequenced ([`crate::metrics::now_us`]; 0 for
        /// events), for the publish-to-write histogram.
        stamp_us: u64,
    },
    /// The answer to a connection's op (`ack` or `error`).
    Answer {
        /// The connection.
        conn: u64,
        /// The frame's id.
        id: Option<u64>,
        /// What happened.
        answer: Result<Ack, Refusal>,
    },
    /// The back end accepted a join: start delivering the room to `conn`.
    Joined {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// Its ack and catch-up.
        admitted: Box<Admitted>,
    },
    /// The back end refused a join.
    JoinRefused {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The frame's id.
        id: Option<u64>,
        /// Why.
        refusal: Refusal,
    },
    /// The back end removed `conn` from `room`: stop delivering it.
    Left {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The frame's id, if the leave carried one (an `ack` goes out).
        id: Option<u64>,
    },
    /// A frame for local connections of a user, or for all (or their
    /// close).
    ToUsers {
        /// Who gets it.
        audience: Audience,
        /// The frame, or the close.
        frame: UserFrame,
        /// Where to report how many connections got it.
        counted: Option<mpsc::Sender<usize>>,
    },
    /// `room` was deleted: its local members leave it and get `frame`.
    RoomClosed {
        /// The room.
        room: Arc<str>,
        /// The `room_closed` frame.
        frame: Bytes,
    },
    /// Close connection `conn` with 1008 (`DELETE /api/connections/{conn}`).
    Kick {
        /// The connection.
        conn: u64,
        /// `Some(())` if it existed.
        done: oneshot::Sender<Option<()>>,
    },
    /// Details of connection `conn` (`GET /api/connections/{conn}`).
    ConnDetails {
        /// The connection.
        conn: u64,
        /// Its details, or `None` if there is no such connection here.
        done: oneshot::Sender<Option<crate::shard::conn::ConnDetails>>,
    },
    /// Report the shard's figures (`GET /api/stats`, `/metrics`).
    Stats {
        /// Where the figures go.
        done: mpsc::Sender<crate::shard::ShardStats>,
    },
    /// Drain: a sequencer (a home shard, or the cluster backplane) stopped.
    /// Every delivery of a message it sequenced (and its ack) came before
    /// this on the same inbox, and it sequences nothing more.
    Sealed,
}

impl Weighed for Delivery {
    fn weight(&self) -> usize {
        match self {
            Delivery::Room { frame, .. } => frame.len(),
            Delivery::ToUsers { frame, .. } => frame.len(),
            Delivery::RoomClosed { frame, .. } => frame.len(),
            Delivery::Joined { admitted, .. } => {
                let history = admitted
                    .ack
                    .as_ref()
                    .map_or(0, |a| a.history.iter().map(Bytes::len).sum::<usize>());
                history + admitted.catchup.iter().map(Bytes::len).sum::<usize>()
            }
            Delivery::Answer { .. }
            | Delivery::JoinRefused { .. }
            | Delivery::Left { .. }
            | Delivery::Kick { .. }
            | Delivery::ConnDetails { .. }
            | Delivery::Stats { .. }
            | Delivery::Sealed => 0,
        }
    }
}

/// Deliveries a sequencer produced, each with the shard it goes to, in the
/// order they must be sent.
#[derive(Debug)]
pub(crate) struct Outbox {
    shards: usize,
    items: Vec<(usize, Delivery)>,
    /// Room changes for [`crate::observe::Observer`], in order.
    observed: Vec<Observed>,
}

impl Outbox {
    /// An empty outbox for a broker of `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        Outbox {
            shards,
            items: Vec::new(),
            observed: Vec::new(),
        }
    }

    /// The shard count deliveries are placed over.
    pub(crate) fn shards(&self) -> usize {
        self.shards
    }

    /// `delivery` for shard `shard`.
    pub(crate) fn push(&mut self, shard: usize, delivery: Delivery) {
        self.items.push((shard, delivery));
    }

    /// `delivery` for the shard of connection `conn`.
    pub(crate) fn for_conn(&mut self, conn: u64, delivery: Delivery) {
        self.items.push((shard_of(conn, self.shards), delivery));
    }

    /// A room frame for every shard of `shards` (each applies it to its
    /// local members of `room`).
    pub(crate) fn fan_out(
        &mut self,
        shards: ShardSet,
        room: &Arc<str>,
        seq: u64,
        frame: &RoomFrame,
        exclude: Option<u64>,
        stamp_us: u64,
    ) {
        for shard in shards.iter() {
            let delivery = Delivery::Room {
                room: room.clone(),
                seq,
                frame: frame.clone(),
                exclude,
                stamp_us,
            };
            self.items.push((shard, delivery));
        }
    }

    /// Answer a connection: an `ack` if its frame had an id, an `error`
    /// whether or not.
    pub(crate) fn answer(&mut self, origin: Origin, answer: Result<Ack, Refusal>) {
        if answer.is_ok() && origin.id.is_none() {
            return;
        }
        let delivery = Delivery::Answer {
            conn: origin.conn,
            id: origin.id,
            answer,
        };
        self.for_conn(origin.conn, delivery);
    }

    /// Settle `reply` with `result`: a connection gets `ack(value)` or the
    /// refusal; an API request gets the result itself.
    pub(crate) fn settle<T>(
        &mut self,
        reply: Reply<T>,
        result: Result<T, Refusal>,
        ack: impl FnOnce(T) -> Ack,
    ) {
        match reply {
            Reply::Conn(origin) => self.answer(origin, result.map(ack)),
            Reply::Api(tx) => {
                // The API request may have timed out and gone.
                let _ = tx.send(result);
            }
        }
    }

    /// Settle `reply` with `refusal`.
    pub(crate) fn refuse<T>(&mut self, reply: Reply<T>, refusal: Refusal) {
        match reply {
            Reply::Conn(origin) => self.answer(origin, Err(refusal)),
            Reply::Api(tx) => {
                let _ = tx.send(Err(refusal));
            }
        }
    }

    /// Answer `op` with `refusal`, as the back end that did not run it
    /// would have: a join's connection settles it, others get their
    /// `error` or API answer. Frames for users and watches need none.
    pub(crate) fn refuse_op(&mut self, op: Op, refusal: Refusal) {
        match op {
            Op::Join(join) => {
                let refused = Delivery::JoinRefused {
                    conn: join.origin.conn,
                    room: join.room,
                    id: join.origin.id,
                    refusal,
                };
                self.for_conn(join.origin.conn, refused);
            }
            Op::Leave { origin, .. } | Op::Members { origin, .. } => {
                self.answer(origin, Err(refusal));
            }
            Op::Publish(publish) => self.refuse(publish.reply, refusal),
            Op::Create { reply, .. } => self.refuse(reply, refusal),
            Op::Delete { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Op::Details { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Op::Rooms { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Op::ToUsers { .. } | Op::WatchUser { .. } => {}
        }
    }

    /// Take the deliveries out, in order.
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, (usize, Delivery)> {
        self.items.drain(..)
    }

    /// `room` changed in a way an observer may watch (occupied, vacated,
    /// a user came or went).
    pub(crate) fn observe(&mut self, room: &Arc<str>, change: RoomChange) {
        self.observed.push(Observed {
            room: room.clone(),
            change,
        });
    }

    /// Take the observed changes out, in order.
    pub(crate) fn take_observed(&mut self) -> std::vec::Drain<'_, Observed> {
        self.observed.drain(..)
    }

    /// Whether nothing is waiting.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_stays_small_in_the_inboxes() {
        // Inboxes are arrays of slots sized by the largest variant.
        assert!(std::mem::size_of::<Delivery>() <= 96);
    }

    #[test]
    fn silent_success_sends_nothing_and_failure_always_answers() {
        let mut out = Outbox::new(2);
        let origin = Origin { conn: 3, id: None };
        out.answer(origin, Ok(Ack::Room(Arc::from("r"))));
        assert!(out.is_empty());
        out.answer(origin, Err(Refusal::not_member("r")));
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 1, "conn 3 lives on shard 1 of 2");
    }

    #[test]
    fn fan_out_reaches_every_shard_of_the_set_once() {
        let mut out = Outbox::new(4);
        let mut set = ShardSet::default();
        set.insert(0);
        set.insert(3);
        let frame = RoomFrame::new(Bytes::from_static(b"x"));
        out.fan_out(set, &Arc::from("r"), 1, &frame, None, 0);
        let shards: Vec<usize> = out.drain().map(|(s, _)| s).collect();
        assert_eq!(shards, vec![0, 3]);
    }
}
