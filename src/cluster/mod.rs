//! Cluster mode: several shardcast nodes behaving as one broker, with Redis
//! as the backplane.
//!
//! Without `[cluster] redis_url` none of this runs. With it, each node runs
//! one backplane thread ([`backplane`]) that owns the node's Redis
//! connections: one multiplexed connection for commands (pipelined in
//! batches) and one subscriber connection. Connections hand their room
//! operations to it as [`Op`]s; it runs them as Lua scripts
//! ([`scripts`]) and feeds what comes back, and what arrives on the
//! subscribed channels, to the shards.
//!
//! **Architecture Invariants:**
//!
//! * Redis is the one sequencer of a room: a message's `seq`, its history
//!   entry and its publication happen in one script, so every node sees one
//!   order ([`wire`]). A node delivers a room's messages in `seq` order,
//!   at most once each: it drops what it has delivered, repairs holes from
//!   the history stream, and says `gap` for what is gone.
//! * A node is subscribed to a room's channel before its first join of that
//!   room reaches Redis, and a member is admitted exactly after the message
//!   its join answered with (`seq`), so it gets every later message once.
//! * Waits form a chain with no cycle: connection tasks and the API wait on
//!   the backplane's bounded queue; the backplane waits on shard inboxes;
//!   shard pumps never wait on the backplane.

pub mod backplane;
pub mod scripts;
pub mod subscriber;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::{OverflowPolicy, RoomConfig};
use crate::error::{ErrorCode, Refusal};
use crate::protocol::decode::RoomOptions;
use crate::router::{ApiOp, Origin};

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL is not one the client understands.
    #[error("cluster.redis_url is not a usable Redis URL: {0}")]
    Url(String),
    /// Redis did not answer at start.
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The backplane thread could not be started.
    #[error("cannot start the cluster thread: {0}")]
    Thread(std::io::Error),
}

/// Work for the backplane.
#[derive(Debug)]
pub enum Op {
    /// A client's `join`.
    Join {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
        /// The member's user id.
        user: Arc<str>,
        /// Its display name.
        name: Option<Arc<str>>,
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
    /// A client's `leave`, or a closing connection leaving (no id).
    Leave {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
    },
    /// A client's `publish`.
    Publish {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
        /// The publisher's user id.
        from: Arc<str>,
        /// Raw JSON of `data`.
        data: Bytes,
        /// Skip the publishing connection.
        exclude_self: bool,
    },
    /// A client's `create`.
    Create {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
        /// Its options.
        options: RoomOptions,
    },
    /// A client's `members`.
    Members {
        /// Reply target.
        origin: Origin,
        /// The room.
        room: Arc<str>,
    },
    /// A frame for every connection of a user on the other nodes.
    ToUser {
        /// The user.
        user: Arc<str>,
        /// The frame's JSON.
        json: Bytes,
    },
    /// A frame for every connection on the other nodes.
    ToAll {
        /// The frame's JSON.
        json: Bytes,
    },
    /// A shard now has connections of `user` (`true`) or none any more.
    WatchUser {
        /// The user.
        user: Arc<str>,
        /// Has connections.
        watch: bool,
    },
    /// An HTTP API operation on a room.
    Api {
        /// The room.
        room: Arc<str>,
        /// What to do, with its reply channel.
        op: ApiOp,
    },
}

/// The backplane as the shards and the API see it.
pub struct Cluster {
    ops: mpsc::Sender<Op>,
    /// This node's id.
    pub node: Arc<str>,
    /// What the backplane did, for `/metrics`.
    pub counters: ClusterCounters,
}

/// Counters of the backplane (written by its thread only).
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Room messages sequenced in Redis for this node's publishers.
    pub published: AtomicU64,
    /// Operations refused, by [`ErrorCode::index`].
    pub refusals: [AtomicU64; ErrorCode::ALL.len()],
    /// Ranges of messages lost between Redis and this node (`gap` sent).
    pub gaps: AtomicU64,
    /// Holes in a room's messages filled from its history stream (after a
    /// resubscribe, or a message that came before one it follows).
    pub repairs: AtomicU64,
}

impl ClusterCounters {
    /// Count a refusal.
    pub fn refused(&self, code: ErrorCode) {
        if let Some(c) = self.refusals.get(code.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Cluster {
    /// Hand `op` to the backplane, waiting while its queue is full.
    pub async fn submit(&self, op: Op) {
        // The backplane runs until the process exits.
        let _ = self.ops.send(op).await;
    }
}

/// The refusal of an operation that needs Redis while it is unreachable.
pub fn unavailable() -> Refusal {
    Refusal::new(
        ErrorCode::Unavailable,
        "the cluster backplane (Redis) is unreachable; try again",
    )
}

/// A room's settings as the cluster stores them.
#[derive(Debug, Clone, Copy)]
pub struct RoomFacts {
    /// Private room.
    pub private: bool,
    /// Member cap.
    pub max_members: u32,
    /// Overflow policy.
    pub overflow: OverflowPolicy,
    /// Created explicitly (lives until deleted).
    pub explicit: bool,
    /// History length.
    pub history: usize,
}

impl RoomFacts {
    /// The settings of a room created with `options`.
    pub fn from_options(
        options: &RoomOptions,
        defaults: &RoomConfig,
        policy: OverflowPolicy,
    ) -> Self {
        RoomFacts {
            private: options.private,
            max_members: options.max_members.unwrap_or(defaults.default_max_members),
            overflow: options.overflow.unwrap_or(policy),
            explicit: true,
            history: options.history.unwrap_or(defaults.history),
        }
    }
}

/// The backplane's queue: the handle for [`crate::shared::Shared`] and the
/// receiving end for [`backplane::spawn`].
pub fn channel(config: &crate::config::Config) -> (Arc<Cluster>, mpsc::Receiver<Op>) {
    let (tx, rx) = mpsc::channel(config.cluster.command_queue);
    let node: Arc<str> = Arc::from(config.server.node_id.as_str());
    let cluster = Cluster {
        ops: tx,
        node,
        counters: ClusterCounters::default(),
    };
    (Arc::new(cluster), rx)
}
