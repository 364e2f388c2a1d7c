//! `[pusher]`: the Pusher Channels front door and its apps; off by default
//! but checked whether enabled or not.
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

/// `[pusher]`: the Pusher Channels (protocol 7) front door, off unless
/// `enabled`. Each `[[pusher.apps]]` entry is an app with its own channel
/// namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PusherConfig {
    /// Serve `/app/{key}` (WebSocket) and `/apps/{id}/...` (HTTP API).
    pub enabled: bool,
    /// Seconds of silence after which a client pings (announced in
    /// `pusher:connection_established`).
    pub activity_timeout_s: u64,
    /// `client-*` events one connection may send per second (more are
    /// refused with `pusher:error` 4301).
    pub client_event_rate_per_sec: u32,
    /// Largest `data` of one event (HTTP API or client event), bytes.
    pub max_event_bytes: usize,
    /// Most channels one HTTP event may name.
    pub max_event_channels: usize,
    /// Most events in one `batch_events` request.
    pub max_batch_events: usize,
    /// Webhook events waiting to be sent, per broker; more are dropped
    /// (and counted).
    pub webhook_queue: usize,
    /// Most events in one webhook request.
    pub webhook_batch_events: usize,
    /// Attempts of one webhook request before it is dropped (and counted).
    pub webhook_attempts: u32,
    /// First wait before a retry; it doubles after each failed attempt.
    pub webhook_backoff_ms: u64,
    /// A webhook request without a complete answer after this long failed.
    pub webhook_timeout_ms: u64,
    /// The apps.
    pub apps: Vec<PusherApp>,
}

impl Default for PusherConfig {
    fn default() -> Self {
        PusherConfig {
            enabled: false,
            activity_timeout_s: 120,
            client_event_rate_per_sec: 10,
            max_event_bytes: 10 * 1024,
            max_event_channels: 100,
            max_batch_events: 10,
            webhook_queue: 10_000,
            webhook_batch_events: 100,
            webhook_attempts: 5,
            webhook_backoff_ms: 200,
            webhook_timeout_ms: 5_000,
            apps: Vec::new(),
        }
    }
}

/// One `[[pusher.apps]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PusherApp {
    /// The app id (`/apps/{id}` of the HTTP API): 1-64 bytes of
    /// `[A-Za-z0-9_-]`.
    pub id: String,
    /// The public key clients connect with (`/app/{key}`).
    pub key: String,
    /// The secret that signs channel auth, HTTP requests and webhooks.
    pub secret: String,
    /// A file holding the secret (instead of `secret`).
    pub secret_file: Option<String>,
    /// Allow `client-*` events on private and presence channels.
    pub client_events: bool,
    /// POST webhooks here (`http://` or `https://host:port/path`); empty: none.
    pub webhook_url: String,
    /// `https://` webhooks: PEM roots the receiver's certificate must chain
    /// to (else the system's).
    pub webhook_ca_file: Option<String>,
}
