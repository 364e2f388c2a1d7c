//! The data a cluster keeps in Redis, and the Lua scripts that change it.
//!
//! Every change to a room runs as one script, so Redis executes it
//! atomically and in one total order: the script that gives a message its
//! `seq` also appends it to the room's history stream and publishes it on
//! the room's channel, and a join's cap check and its insert cannot
//! interleave with another node's join.
//!
//! Keys of room `R` (the `{R}` hash tag keeps them in one Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sc:{R}:m` | hash | `seq`, `private`, `max`, `ovf`, `explicit`, `hist`, `epoch` |
//! | `sc:{R}:p` | hash | presence: field `<node>/<conn>`, value `user`, `user\tname` or `user\tname\tinfo` |
//! | `sc:{R}:u` | hash | users: field `user`, value its member connections (so a user's first join and last leave are seen once, cluster-wide) |
//! | `sc:{R}:h` | stream | history; entry id `<seq>-0`, field `f` = the message JSON |
//! | `sc:{R}:c` | channel | the room's events, in `seq` order (see [`super::wire`]) |
//!
//! Node keys: `sc:nodes` (sorted set: node id by heartbeat deadline, ms of
//! Redis' clock) and `sc:n:<node>` (set of rooms where the node has members).
//!
//! Quota keys (the cluster-wide count of rooms a user, or a connection, made
//! that still exist): `sc:uq:<user>` and `sc:cq:<node>/<conn>`, sorted sets
//! of room names scored by when the room expires (ms of Redis' clock), or
//! `+inf` while it has members or was made by `create`. A room's meta holds
//! its creator (`cu`, `cc`); the scripts that empty, refill or delete a room
//! move its score, and a count first drops the rooms whose time passed, so
//! a room stops counting when it expires without any node being told. Each
//! key expires with its last room.
//! Channels `sc:u:<user>` (direct messages and notifications to a user) and
//! `sc:all` (broadcasts).
//!
//! Each script's Lua is a file in `scripts/` (`join.lua`, ...; `quota.lua`
//! is the part the quota-keeping scripts share, put before theirs). This
//! file holds what the Rust side relies on: the key schema, the status
//! codes, and each script's contract (KEYS, ARGV, answer) on its constant.
//!
//! Scripts answer with an array whose first element is a status: 0 for
//! success, or one of the negative codes of [`Status`]; they never raise, so
//! one refusal cannot fail a pipelined batch.

/// A script's status answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Done.
    Ok,
    /// The room does not exist.
    NotFound,
    /// The connection is not a member.
    NotMember,
    /// Joining would create the room, and the connection may not.
    MayNotCreate,
    /// The room is private and the connection has no grant for it.
    Private,
    /// The room is at `max_members`.
    Full,
    /// `create` of a room that exists.
    Exists,
    /// Only members may list a private room's members.
    PrivateMembers,
    /// A live node has another namespace configuration.
    OtherNamespaces,
    /// The creator (user or connection) made its maximum of rooms that
    /// still exist: `{-9, max, "user" | "connection"}`.
    Quota,
    /// The node is over its memory budget and makes no room.
    OverMemory,
    /// A status this build does not know (a script of another version).
    Unknown(i64),
}

impl Status {
    /// The status a script answered.
    pub(crate) fn from_code(code: i64) -> Status {
        match code {
            0 => Status::Ok,
            -1 => Status::NotFound,
            -2 => Status::NotMember,
            -3 => Status::MayNotCreate,
            -4 => Status::Private,
            -5 => Status::Full,
            -6 => Status::Exists,
            -7 => Status::PrivateMembers,
            -8 => Status::OtherNamespaces,
            -9 => Status::Quota,
            -10 => Status::OverMemory,
            other => Status::Unknown(other),
        }
    }
}

/// Room keys.
pub(crate) fn meta_key(room: &str) -> String {
    format!("sc:{{{room}}}:m")
}
/// Presence hash of a room.
pub(crate) fn presence_key(room: &str) -> String {
    format!("sc:{{{room}}}:p")
}
/// Users hash of a room (member connections per user).
pub(crate) fn users_key(room: &str) -> String {
    format!("sc:{{{room}}}:u")
}
/// History stream of a room.
pub(crate) fn history_key(room: &str) -> String {
    format!("sc:{{{room}}}:h")
}
/// Event channel of a room.
pub(crate) fn room_channel(room: &str) -> String {
    format!("sc:{{{room}}}:c")
}
/// Channel of a user's direct messages and notifications.
pub(crate) fn user_channel(user: &str) -> String {
    format!("sc:u:{user}")
}
/// Channel of broadcasts.
pub(crate) const ALL_CHANNEL: &str = "sc:all";
/// Heartbeat deadlines of the nodes.
pub(crate) const NODES_KEY: &str = "sc:nodes";
/// Each node's namespace fingerprint.
pub(crate) const NAMESPACES_KEY: &str = "sc:ns";
/// Rooms where `node` has members.
pub(crate) fn node_rooms_key(node: &str) -> String {
    format!("sc:n:{node}")
}
/// The presence field of a member connection.
pub(crate) fn member_field(node: &str, conn: u64) -> String {
    format!("{node}/{conn}")
}
/// Rooms a user made that still exist.
pub(crate) fn user_quota_key(user: &str) -> String {
    format!("sc:uq:{user}")
}
/// Rooms a connection (its presence field) made that still exist.
pub(crate) fn conn_quota_key(field: &str) -> String {
    format!("sc:cq:{field}")
}

/// The Lua the scripts that make, empty, refill or delete rooms share, put
/// before their own: the quota sorted sets (see the module documentation).
macro_rules! quota_lua {
    () => {
        include_str!("scripts/quota.lua")
    };
}

/// KEYS: meta, presence, history, channel, users, node rooms, the joiner's
/// user quota key, its connection quota key.
/// ARGV: field, member value, create, may_create, auto_create,
/// may_join_private, default max, default overflow, default history,
/// since (-1: none), history_on_join, node, conn, room, the client's epoch
/// (empty: none), a fresh epoch for a room this join makes, private
/// (0/1), the user, most users to list (0: none), per-user cap,
/// per-connection cap, over the memory budget (0/1). Auto-create and the
/// defaults are those of the room's namespace ([`crate::room::namespaces`]).
///
/// A room of a private namespace (`private` 1) is private whatever its
/// hash says, and a join that would make one it may not enter is refused
/// without making it. A `since` with an epoch other than the room's is
/// answered like a join without `since`, with recovered 0 (v1.1). A room
/// without an epoch (made by an older build) gets the fresh one. A join
/// that makes the room counts it against the joiner's quotas; one that
/// refills an empty room keeps it counting.
///
/// Answer: `{0, seq, count, private (0/1), max, overflow, explicit,
/// recovered (-1 none, 0, 1), rejoin (0/1), history length, epoch, users,
/// first of its user (0/1), listed users n, n times (user, member value),
/// message...}`, or `{status}`. The `J` event says `users` and `first` too.
pub(crate) const JOIN: &str = concat!(quota_lua!(), include_str!("scripts/join.lua"));

/// KEYS: meta, presence, history, channel, users, node rooms.
/// ARGV: field, node, conn, node keeps members (0/1), room, empty ttl ms.
///
/// Answer: `{0, count, last of its user (0/1), users, member value}` or
/// `{status}`. The `L` event says `users` and `last` too.
pub(crate) const LEAVE: &str = concat!(quota_lua!(), include_str!("scripts/leave.lua"));

/// KEYS: meta, presence, history, channel.
/// ARGV: field (empty: the system, no membership check), JSON before the
/// seq, JSON after the seq, node, connection to skip (0: none).
///
/// Answer: `{0, seq}` or `{status}`.
pub(crate) const PUBLISH: &str = include_str!("scripts/publish.lua");

/// KEYS: meta, the creator's user quota key, its connection quota key.
/// ARGV: private (0/1), max members, overflow, history length, epoch,
/// room, creator user (empty: the API, not counted), creator field,
/// per-user cap, per-connection cap, over the memory budget (0/1).
///
/// Answer: `{0}` or `{status}`.
pub(crate) const CREATE: &str = concat!(quota_lua!(), include_str!("scripts/create.lua"));

/// KEYS: meta, presence, history, channel, users.
/// ARGV: room.
///
/// Answer: `{0, members it had}` or `{status}`.
pub(crate) const DELETE: &str = concat!(quota_lua!(), include_str!("scripts/delete.lua"));

/// KEYS: meta, presence, history, channel (unused), users.
/// ARGV: asking member's field (empty: the API, no private check), most
/// members to list, private namespace (0/1: the room is private whatever
/// its hash says).
///
/// Answer: `{0, total, seq, private (0/1), max, overflow, explicit, history
/// length, epoch (empty: none yet), history option, users, field, value,
/// field, value...}` or `{status}`.
pub(crate) const DETAILS: &str = include_str!("scripts/details.lua");

/// KEYS: nodes, this node's rooms, namespace fingerprints.
/// ARGV: node, ttl ms, empty-room ttl ms, this node's namespace
/// fingerprint.
///
/// Renews this node's heartbeat (and its fingerprint, which a Redis that
/// restarted lost), then removes every node whose heartbeat ran out: its
/// members leave presence (with `left` events) and the room counts, and
/// its fingerprint goes. Answer: `{0, nodes removed, then (kind, room,
/// user) for each change it made: kind `R` (the user's last connection
/// left) or `V` (the room has no member left; user empty)}`, so the node
/// that swept reports them, once for the cluster.
pub(crate) const HEARTBEAT: &str = concat!(quota_lua!(), include_str!("scripts/heartbeat.lua"));

/// KEYS: nodes, namespace fingerprints.
/// ARGV: node, this node's namespace fingerprint, ttl ms.
///
/// A node joining the cluster: refused if a live node (its heartbeat not
/// run out) has another fingerprint; otherwise its fingerprint and
/// heartbeat are written in the same step, so two nodes starting at once
/// with different namespaces cannot both pass. Answer: `{0}`, or `{-8,
/// other node, its fingerprint}`.
pub(crate) const NAMESPACES: &str = include_str!("scripts/namespaces.lua");

/// KEYS: meta, presence, node rooms, users.
/// ARGV: room, last seq this node delivered, private, max, overflow,
/// explicit, history length, node, a fresh epoch, then field, value pairs
/// of this node's members (which replace every entry of the node).
///
/// After a reconnect: puts back what a Redis restart (or a sweep of this
/// node while it was cut off) lost, so the room's `seq` never goes back
/// and presence lists this node's members again. A room Redis still holds
/// keeps its epoch; one Redis lost is put back with the fresh epoch (its
/// history is gone, so a `since` of the old one must not count as
/// recovered), and the first node to restore it decides it for all.
/// Answer: `{0}`.
pub(crate) const RESTORE: &str = include_str!("scripts/restore.lua");

/// ARGV: a room name prefix (no glob characters), most rooms.
///
/// The rooms with members whose names start with the prefix: `{0, room,
/// members, users, room, members, users...}`. It scans the keyspace, so
/// it is for the occasional API call, not for the message path.
pub(crate) const ROOMS: &str = include_str!("scripts/rooms.lua");

/// Every script, for loading them after each connect.
pub(crate) const ALL: [&str; 10] = [
    JOIN, LEAVE, PUBLISH, CREATE, DELETE, DETAILS, HEARTBEAT, RESTORE, NAMESPACES, ROOMS,
];
