//! `[limits]`: the bounds an operator may tune (the fixed ones are in
//! `src/limits.rs`).
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

use super::OverflowPolicy;

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections in the whole process (clamped to the open-file limit).
    pub max_connections: u64,
    /// Connections per shard; 0 = off.
    pub max_connections_per_shard: u64,
    /// Connections per client IP; 0 = off (behind a load balancer every
    /// client shares one IP).
    pub max_connections_per_ip: u32,
    /// Connections per user id; 0 = off.
    pub max_connections_per_user: u32,
    /// Largest client message (after reassembly), bytes.
    pub max_message_bytes: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Rooms in the whole process.
    pub max_rooms: u64,
    /// Rooms one user id may have made (by `create`, or by a `join` that
    /// made the room) that still exist; 0 = off. The API is not counted.
    /// In cluster mode the count is the whole cluster's.
    pub max_rooms_created_per_user: u32,
    /// The same per connection; 0 = off.
    pub max_rooms_created_per_connection: u32,
    /// Bytes of room history the process keeps, all rooms together (each
    /// home shard keeps its share; in cluster mode, the catch-up messages
    /// a node keeps). Beyond it the oldest messages of the largest rooms
    /// go first.
    pub max_history_bytes_total: u64,
    /// Resident memory above which new connections get 503 and new rooms
    /// `over_memory_budget`. 0 at load: 80% of the smaller of the cgroup's
    /// memory limit and the machine's memory.
    pub memory_budget_bytes: u64,
    /// Outbound queue bound per connection, in frames.
    pub outbound_queue_messages: usize,
    /// Outbound queue bound per connection, in bytes.
    pub outbound_queue_bytes: usize,
    /// Default overflow policy of rooms.
    pub slow_consumer_policy: OverflowPolicy,
    /// How long a slow consumer's socket stays open after its 4000 close.
    pub slow_close_grace_ms: u64,
    /// Publishes (and sends, broadcasts) per second per connection; 0 = off.
    pub publish_rate_per_sec: u32,
    /// Burst allowed above the publish rate.
    pub publish_burst: u32,
    /// Time a client has to complete the HTTP upgrade.
    pub handshake_timeout_ms: u64,
    /// WebSocket ping interval.
    pub heartbeat_interval_ms: u64,
    /// Time without a pong after which a connection is closed with 4001.
    pub heartbeat_timeout_ms: u64,
    /// Most entries in a `members` reply.
    pub max_presence_list: usize,
    /// Deepest nesting of arrays and objects in client JSON values
    /// (`data` of frames and API bodies): parsers that recurse choke on
    /// deeper values stored in history.
    pub max_json_depth: usize,
    /// Largest HTTP request head (request line and headers), bytes; larger
    /// gets 431. Room for the largest token the claim limits allow.
    pub max_http_head_bytes: usize,
    /// After an HTTP refusal that leaves a request body unread (413), how
    /// long the server keeps reading and discarding it before closing, so
    /// that clients that send the whole body first still read the answer.
    pub lingering_close_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            max_connections_per_shard: 0,
            max_connections_per_ip: 0,
            max_connections_per_user: 0,
            max_message_bytes: 64 * 1024,
            max_rooms_per_connection: 128,
            max_rooms: 1_000_000,
            max_rooms_created_per_user: 1_000,
            max_rooms_created_per_connection: 100,
            max_history_bytes_total: 256 * 1024 * 1024,
            memory_budget_bytes: 0,
            outbound_queue_messages: 4096,
            outbound_queue_bytes: 1024 * 1024,
            slow_consumer_policy: OverflowPolicy::Disconnect,
            slow_close_grace_ms: 5_000,
            publish_rate_per_sec: 0,
            publish_burst: 100,
            handshake_timeout_ms: 10_000,
            heartbeat_interval_ms: 25_000,
            heartbeat_timeout_ms: 60_000,
            max_presence_list: 1000,
            max_json_depth: 32,
            max_http_head_bytes: 64 * 1024,
            lingering_close_ms: 5_000,
        }
    }
}
