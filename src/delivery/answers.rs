//! The typed answers a back end gives: acks ([`Ack`], [`JoinAck`]), an
//! admission ([`Admitted`]), and what the API and the Pusher API are shown
//! of rooms and members.
//!
//! **Invariant:** nothing here is encoded for a protocol; the asking
//! connection (or API request) writes them in its own words, so both back
//! ends answer alike.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::config::OverflowPolicy;
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
