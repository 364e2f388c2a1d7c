//! The one operation type: what a front door asks of the broker.
//!
//! Every front door (the native protocol on `/ws`, the HTTP API, and any
//! later protocol) turns what its client asked into an [`Op`] after
//! checking the client's rights, and hands it to
//! [`crate::shard::Shard::route`]. The back end behind that route — the
//! rooms' home shards on a single node, or the cluster backplane — decides
//! order, state and caps, and answers through the [`Reply`] the op carries.
//!
//! **Architecture Invariant:** an op says *what* to do and *who* to answer;
//! it never says which back end runs it, and a back end never learns which
//! protocol asked (answers are typed, see [`crate::delivery::Ack`]; the
//! asking connection encodes them).

use std::num::NonZeroU64;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::delivery::{RoomCounts, RoomDetails};
use crate::error::Refusal;
use crate::inbox::Weighed;
pub(crate) use crate::index::Creator;
use crate::protocol::decode::RoomOptions;

/// Who asked: the connection a reply goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// Connection id (its shard is [`crate::placement::shard_of`]).
    pub(crate) conn: u64,
    /// The frame's `id`, if the client wants an `ack`.
    pub(crate) id: Option<u64>,
}

/// Where the answer to an op goes.
#[derive(Debug)]
pub(crate) enum Reply<T> {
    /// A connection: an `ack` (when its frame had an `id`) or an `error`.
    Conn(Origin),
    /// An HTTP API request waiting for the result.
    Api(oneshot::Sender<Result<T, Refusal>>),
}

impl<T> Reply<T> {
    /// The asking connection, if a connection asked.
    pub(crate) fn conn(&self) -> Option<u64> {
        match self {
            Reply::Conn(origin) => Some(origin.conn),
            Reply::Api(_) => None,
        }
    }
}

/// A connection's `join`.
#[derive(Debug)]
pub(crate) struct Join {
    /// The joining connection and its frame id.
    pub(crate) origin: Origin,
    /// The room.
    pub(crate) room: Arc<str>,
    /// The member's user id.
    pub(crate) user: Arc<str>,
    /// Its display name.
    pub(crate) name: Option<Arc<str>>,
    /// Recover after this seq.
    pub(crate) since: Option<u64>,
    /// The room epoch `since` belongs to (v1.1).
    pub(crate) epoch: Option<Arc<str>>,
    /// Create the room if absent (and the broker allows it).
    pub(crate) create: bool,
    /// The connection holds the `create` right.
    pub(crate) may_create: bool,
    /// The connection may join the room if it is private.
    pub(crate) may_join_private: bool,
    /// Raw JSON the member carries for others to see (a Pusher presence
    /// member's `user_info`; a thin pointer: an op stays small).
    pub(crate) info: Option<Arc<String>>,
    /// Answer with the room's users (each once, with its `info`), not only
    /// its counts: a Pusher presence subscription.
    pub(crate) list_users: bool,
}

impl Join {
    /// The joining connection, as the creator of the room if the join
    /// makes it.
    pub(crate) fn creator(&self) -> Creator {
        Creator {
            user: self.user.clone(),
            conn: self.origin.conn,
        }
    }
}

/// A publish into a room, by a member connection or by the HTTP API.
#[derive(Debug)]
pub(crate) struct Publish {
    /// The room.
    pub(crate) room: Arc<str>,
    /// The publisher's user id (`"system"` for the API).
    pub(crate) from: Arc<str>,
    /// Raw JSON of `data` (a slice of the client's frame or request).
    pub(crate) data: Bytes,
    /// The event name it is published as (the Pusher endpoint's events;
    /// `None` for native publishes). A thin pointer, like `exclude` a
    /// niche-packed id: an op stays small in the inboxes.
    pub(crate) event: Option<Arc<String>>,
    /// A connection the fan-out skips: the publisher itself
    /// (`exclude_self`, client events), or any connection the HTTP API
    /// names (`socket_id`). Connection ids are never 0.
    pub(crate) exclude: Option<NonZeroU64>,
    /// The publisher may publish where clients may not (a namespace with
    /// `client_publish = false`): the HTTP API, or a connection with the
    /// `admin` right.
    pub(crate) privileged: bool,
    /// The seq the message got, or why not. A connection must be a member
    /// of the room; the API need not be.
    pub(crate) reply: Reply<u64>,
}

/// Who a frame for users goes to.
#[derive(Debug, Clone)]
pub(crate) enum Audience {
    /// Every connection of one user.
    User(Arc<str>),
    /// Every connection.
    All,
}

/// What connections of an [`Audience`] get.
#[derive(Debug, Clone)]
pub(crate) enum UserFrame {
    /// This frame (native protocol), shared by every recipient.
    Frame(Bytes),
    /// Closed with a policy close, for this reason (the Pusher API's
    /// `terminate_connections`).
    Close(Arc<str>),
}

impl UserFrame {
    /// Bytes it keeps alive.
    pub(crate) fn len(&self) -> usize {
        match self {
            UserFrame::Frame(frame) => frame.len(),
            UserFrame::Close(reason) => reason.len(),
        }
    }
}

/// An operation of a front door on rooms or users.
#[derive(Debug)]
pub(crate) enum Op {
    /// Join a room (creating it if allowed).
    Join(Join),
    /// Leave a room; also sent, without an id, when a connection closes.
    Leave {
        /// The leaving connection.
        origin: Origin,
        /// The room.
        room: Arc<str>,
    },
    /// Create a room explicitly (it lives until deleted).
    Create {
        /// The room.
        room: Arc<str>,
        /// Its options.
        options: RoomOptions,
        /// The connection that asks, for its quotas (`None`: the API).
        creator: Option<Creator>,
        /// `Ok`, or `room_exists` / `too_many_rooms`.
        reply: Reply<()>,
    },
    /// Delete a room; its members get `room_closed`.
    Delete {
        /// The room.
        room: Arc<str>,
        /// `Ok` or `room_not_found`.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Publish into a room.
    Publish(Publish),
    /// A connection's `members`.
    Members {
        /// The asking connection.
        origin: Origin,
        /// The room.
        room: Arc<str>,
    },
    /// Rooms whose names start with `prefix`, with their member and user
    /// counts (the Pusher API's channel list).
    Rooms {
        /// Name prefix.
        prefix: Arc<str>,
        /// The rooms, at most `limit`.
        limit: usize,
        /// The list.
        reply: oneshot::Sender<Result<Vec<RoomCounts>, Refusal>>,
    },
    /// The API's room details.
    Details {
        /// The room.
        room: Arc<str>,
        /// The details, or `room_not_found`.
        reply: oneshot::Sender<Result<RoomDetails, Refusal>>,
    },
    /// A frame for connections by user (`direct`, `broadcast`,
    /// `notification`), or their close: every node delivers it to its own.
    ToUsers {
        /// Who gets it.
        audience: Audience,
        /// The encoded frame, shared by every recipient (or the close).
        frame: UserFrame,
        /// Where each shard of this node reports how many connections got
        /// it (the API's `delivered`), if anyone asks.
        counted: Option<mpsc::Sender<usize>>,
    },
    /// A shard gained its first connection of `user` (`watch`), or lost
    /// its last: a back end that relays user frames between nodes listens
    /// for the user only while it has connections here.
    WatchUser {
        /// The user.
        user: Arc<str>,
        /// Has connections on the shard.
        watch: bool,
        /// Told (or dropped) once frames for the user from other nodes
        /// reach this node: the connection's `welcome` waits for it, so a
        /// client that got its welcome gets what is sent to it next.
        heard: Option<oneshot::Sender<()>>,
    },
}

impl Op {
    /// The room the op is about, if it is about one: its home sequences it.
    pub(crate) fn room(&self) -> Option<&Arc<str>> {
        match self {
            Op::Join(Join { room, .. })
            | Op::Leave { room, .. }
            | Op::Create { room, .. }
            | Op::Delete { room, .. }
            | Op::Publish(Publish { room, .. })
            | Op::Members { room, .. }
            | Op::Details { room, .. } => Some(room),
            Op::ToUsers { .. } | Op::WatchUser { .. } | Op::Rooms { .. } => None,
        }
    }
}

impl Op {
    /// Whether a client waits for this op's outcome (its reply, or the
    /// `send` ack behind a frame for users): such an op that cannot reach
    /// its back end in time is answered `unavailable`. A closing
    /// connection's leave and the user watches wait as long as it takes.
    pub(crate) fn client_waits(&self) -> bool {
        match self {
            Op::Leave { origin, .. } => origin.id.is_some(),
            Op::WatchUser { .. } => false,
            _ => true,
        }
    }
}

impl Weighed for Op {
    fn weight(&self) -> usize {
        match self {
            Op::Publish(p) => p.data.len(),
            Op::ToUsers { frame, .. } => frame.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_op_stays_small_in_the_inboxes() {
        // Inboxes are arrays of slots sized by the largest variant.
        assert!(std::mem::size_of::<super::Op>() < 128);
    }
}
