//! Cluster mode: several shardcast nodes behaving as one broker, with Redis
//! as the backplane.
//!
//! Without `[cluster] redis_url` none of this runs. With it, each node runs
//! one backplane thread ([`backplane`]) that owns the node's Redis
//! connections: one multiplexed connection for commands (pipelined in
//! batches) and one subscriber connection. It is the remote back end of
//! [`crate::backend`]: the shards' route hands it every room [`Op`]; it runs
//! them as Lua scripts ([`scripts`]), orders each room's messages on this
//! node with the pure [`crate::room::order`] core, and delivers what comes
//! back, and what arrives on the subscribed channels, straight to the
//! shards that hold the members.
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
//!   the backplane's bounded queue; the backplane waits on shard delivery
//!   inboxes; delivery pumps never wait on the backplane.
//! * Nothing here knows the shards' internals: the backplane speaks
//!   [`crate::op`] and [`crate::delivery`] only.

pub(crate) mod backplane;
pub(crate) mod scripts;
pub mod subscriber;
pub(crate) mod target;
pub mod wire;

use crate::backend::Remote;
use crate::config::Config;
#[cfg(doc)]
use crate::op::Op;
use crate::room::namespaces::RoomSettings;

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
    /// A live node of the cluster has other room namespaces (rules or
    /// schemas): this node does not join it.
    #[error(
        "node {node} of this cluster runs with other room namespaces (fingerprint {theirs}; \
         this node's is {ours}): every node needs the same [[room.namespaces]] and schema \
         files, so this node does not start. To change them, stop every node, then start \
         them with the new ones"
    )]
    OtherNamespaces {
        /// The other node's id.
        node: String,
        /// Its fingerprint.
        theirs: String,
        /// This node's.
        ours: String,
    },
}

/// A room's settings as the cluster stores them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomFacts {
    /// The options it was made with.
    pub(crate) room: RoomSettings,
    /// Created explicitly (lives until deleted).
    pub(crate) explicit: bool,
}

/// The backplane's handle (the remote back end) and the receiving end of
/// its bounded op queue, for [`backplane::spawn`]. An op a client waits
/// for waits for room in the queue at most `cluster.command_timeout_ms`,
/// the bound on anything it waits for from Redis.
pub(crate) fn channel(config: &Config) -> (Remote, tokio::sync::mpsc::Receiver<crate::op::Op>) {
    let wait = std::time::Duration::from_millis(config.cluster.command_timeout_ms);
    Remote::channel(config.cluster.command_queue, wait)
}
