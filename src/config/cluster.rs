//! `[cluster]`: the Redis backplane and its bounds; cluster mode is on
//! exactly when `redis_url` is set, and its password is shown only
//! redacted.
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

use super::redact_url_password;

/// `[cluster]`: off while `redis_url` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`; empty: a single node.
    pub redis_url: String,
    /// Connecting to Redis (at start and on every reconnect) gives up after
    /// this long.
    pub connect_timeout_ms: u64,
    /// A Redis command or batch without an answer for this long fails, and
    /// the connection is dropped and made again.
    pub command_timeout_ms: u64,
    /// Longest wait between two reconnect attempts (the backoff doubles
    /// from 50 ms up to this).
    pub reconnect_max_backoff_ms: u64,
    /// Operations waiting for the backplane; when it is full, connections
    /// wait (backpressure reaches their read loops).
    pub command_queue: usize,
    /// Room messages a node keeps per room to catch up a member whose join
    /// answer came back after messages that follow it (and bytes: at most
    /// `room.history_max_bytes`).
    pub catchup_messages: usize,
    /// Messages read from the subscriber connection and not yet handled;
    /// beyond this the node stops reading, and Redis drops the connection
    /// once its pub/sub output buffer limit is hit (the node then
    /// resubscribes and repairs from the history streams).
    pub subscriber_queue: usize,
    /// Bytes of such messages.
    pub subscriber_queue_bytes: usize,
    /// A node that has not renewed its heartbeat for this long is dead: its
    /// members leave presence and the room counts.
    pub node_ttl_ms: u64,
    /// `rediss://`: PEM file of the roots Redis' certificate must chain to
    /// (unset: the system's roots).
    pub tls_ca_file: Option<String>,
    /// `rediss://`: PEM client certificate (with `tls_key_file`), for a
    /// Redis that asks for one.
    pub tls_cert_file: Option<String>,
    /// `rediss://`: the client certificate's PEM key.
    pub tls_key_file: Option<String>,
    /// Replicas that must have a write before it is acknowledged (`WAIT`
    /// after each batch of commands, for at most half
    /// `command_timeout_ms`); a publish not confirmed gets `unavailable`.
    /// 0 = off. With Sentinel, 1 means an acknowledged publish survives
    /// the primary's loss.
    pub wait_replicas: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            connect_timeout_ms: 2_000,
            command_timeout_ms: 2_000,
            reconnect_max_backoff_ms: 2_000,
            command_queue: 65_536,
            catchup_messages: 256,
            subscriber_queue: 8_192,
            subscriber_queue_bytes: 16 * 1024 * 1024,
            node_ttl_ms: 10_000,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            wait_replicas: 0,
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// `redis_url` with its password replaced by `<redacted>`, for logs.
    pub fn redis_url_redacted(&self) -> String {
        redact_url_password(&self.redis_url)
    }
}
