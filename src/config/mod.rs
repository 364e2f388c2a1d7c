//! The one configuration struct, loaded as defaults < TOML file < environment
//! (`SHARDCAST_<SECTION>__<KEY>`) < command-line flags, then validated.
//!
//! Invariant: a [`Config`] that left [`Config::load`] has passed
//! [`Config::validate`]; the rest of the broker trusts its values.

mod load;
mod print;
mod validate;

pub use print::REDACTED;
pub(crate) use print::redact_url_password;

use serde::{Deserialize, Serialize};

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "SHARDCAST_";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file or an environment variable does not parse.
    #[error("invalid config{origin}: {message}")]
    Parse {
        /// Where the bad value came from (" in FILE", " from env VAR").
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value parsed but is out of range.
    #[error("invalid config: `{key}` {problem}")]
    Invalid {
        /// The key, as `section.key`.
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// What a room does when a member's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverflowPolicy {
    /// Close the slow member with 4000.
    #[default]
    Disconnect,
    /// Skip the message for that member and send it a `gap` later.
    Drop,
}

impl OverflowPolicy {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::Disconnect => "disconnect",
            OverflowPolicy::Drop => "drop",
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener, shards, drain.
    pub server: ServerConfig,
    /// Bounds on connections, messages and queues.
    pub limits: LimitsConfig,
    /// Room defaults.
    pub room: RoomConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// The HTTP API under `/api`.
    pub api: ApiConfig,
    /// Several nodes as one broker, over Redis.
    pub cluster: ClusterConfig,
    /// The Pusher Channels protocol endpoint (`/app/{key}`, `/apps/{id}`).
    pub pusher: PusherConfig,
}

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
    /// `https://` webhooks: PEM roots the receiver's certificate must chain to (else the system's).
    pub webhook_ca_file: Option<String>,
}

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

/// `[api]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Keys accepted as `Authorization: Bearer <key>` on `/api/*`. Empty:
    /// `/api/*` answers only clients on loopback addresses.
    #[serde(deserialize_with = "string_or_list")]
    pub keys: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keys: Vec::new(),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// A list given as a TOML array, or as one comma-separated string (handy in
/// `SHARDCAST_API__KEYS=k1,k2`).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`; port 0 picks a free port).
    pub listen: String,
    /// Worker shards; 0 means one per core.
    pub shards: usize,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// How long a drain may take before the process exits anyway.
    pub drain_timeout_ms: u64,
    /// Name of this node in `welcome` frames; empty means a random id.
    pub node_id: String,
    /// Conformance aid, off when empty: a WebSocket path that echoes every
    /// message back, through the same connection layer as `ws_path` (frame
    /// reader, fragment assembly, UTF-8 checks, close handling, limits).
    /// For the Autobahn test suite; not for production.
    pub echo_path: String,
    /// PEM certificate chain (leaf first). With `tls_key_file`, every
    /// listener speaks TLS (`wss://`, `https://`); both are reloaded on
    /// SIGHUP and when the files change.
    pub tls_cert_file: Option<String>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<String>,
    /// Browser origins allowed to open a WebSocket: exact
    /// (`https://app.example.com`) or `https://*.example.com`. Empty: no
    /// check. Requests without `Origin` (non-browser clients) pass.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_origins: Vec<String>,
    /// Read a HAProxy PROXY protocol header from peers in
    /// `trusted_proxies` (AWS NLB, HAProxy).
    pub proxy_protocol: ProxyProtocol,
    /// CIDRs (or addresses) of proxies whose PROXY header and forwarded
    /// header are believed.
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_proxies: Vec<String>,
    /// Which header names the client behind a trusted HTTP proxy.
    pub forwarded_header: ForwardedHeader,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    pub compression: bool,
    /// Messages shorter than this are sent uncompressed.
    pub compression_min_bytes: usize,
}

/// `server.proxy_protocol`: which PROXY protocol versions are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No PROXY header is read (one arriving is an HTTP error).
    #[default]
    Off,
    /// The text form.
    V1,
    /// The binary form (AWS NLB).
    V2,
    /// Either.
    Any,
}

/// `server.forwarded_header`: where a trusted HTTP proxy names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, ALB).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            shards: 0,
            ws_path: "/ws".into(),
            drain_timeout_ms: 10_000,
            node_id: String::new(),
            echo_path: String::new(),
            tls_cert_file: None,
            tls_key_file: None,
            allowed_origins: Vec::new(),
            proxy_protocol: ProxyProtocol::Off,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            compression: false,
            compression_min_bytes: 256,
        }
    }
}

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

/// `[room]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// `max_members` of rooms that do not set it.
    pub default_max_members: u32,
    /// History ring length of rooms that do not set it.
    pub history: usize,
    /// Bytes of history a room keeps at most (the ring drops its oldest
    /// messages beyond this, whatever its length in messages).
    pub history_max_bytes: usize,
    /// Messages of history sent in a `join` ack without `since`.
    pub history_on_join: usize,
    /// Send `joined` / `left` events.
    pub presence_events: bool,
    /// `join` creates missing rooms (with the `create` right).
    pub auto_create: bool,
    /// How long an empty auto-created room (and its history) is kept.
    pub empty_ttl_ms: u64,
    /// Kinds of rooms by name prefix (`[[room.namespaces]]`): the rooms
    /// whose name starts with a prefix take its options (the longest
    /// matching prefix wins). Rooms outside every namespace take the
    /// defaults above.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceConfig>,
}

/// `[[room.namespaces]]`: the options of every room whose name starts with
/// `prefix`. A key left out takes the `[room]` default (`overflow`:
/// `limits.slow_consumer_policy`); `private` defaults to false and
/// `client_publish` to true. A `create` may tighten these options for its
/// room, never loosen them.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Rooms whose name starts with this (1-128 bytes of
    /// `[A-Za-z0-9_.:@-]`).
    pub prefix: String,
    /// Every room here is private, however it is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    /// Member cap (a `create` may ask for less).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_members: Option<u32>,
    /// History length, in messages (a `create` may ask for less).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
    /// Messages of history in a `join` ack without `since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_on_join: Option<usize>,
    /// Overflow policy (a `create` may not choose another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<OverflowPolicy>,
    /// Send `joined` / `left` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_events: Option<bool>,
    /// `join` may create a missing room here (with the `create` right).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<bool>,
    /// Connections may publish here; false: only the HTTP API and
    /// connections with the `admin` right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_publish: Option<bool>,
    /// A JSON Schema file (draft 2020-12) the `data` of every publish here
    /// must match; empty: none. A relative path is taken from the working
    /// directory of the process.
    pub schema_file: String,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            default_max_members: 10_000,
            history: 100,
            history_max_bytes: 1024 * 1024,
            history_on_join: 100,
            presence_events: true,
            auto_create: true,
            empty_ttl_ms: 60_000,
            namespaces: Vec::new(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `"none"` (dev mode: no credentials, `?user=` names the client) or
    /// `"jwt"` (a valid token is required).
    pub mode: AuthMode,
    /// Accepted JWT algorithms, all of one key type.
    pub algorithms: Vec<String>,
    /// HMAC secret (prefer `SHARDCAST_AUTH__SECRET` to a file on disk).
    pub secret: String,
    /// File holding the HMAC secret (instead of `secret`).
    pub secret_file: Option<String>,
    /// PEM public key for RS*/PS*/ES*/EdDSA.
    pub public_key_file: Option<String>,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// Tokens must carry the `connect` right (else 403 before the upgrade).
    pub require_connect: bool,
    /// Rights of connections without a token (mode `none`) and of tokens
    /// without a `perms` claim.
    pub default_perms: Vec<crate::perms::Perm>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        use crate::perms::Perm;
        AuthConfig {
            mode: AuthMode::None,
            algorithms: vec!["HS256".into()],
            secret: String::new(),
            secret_file: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_secs: 5,
            require_connect: false,
            default_perms: vec![Perm::Create, Perm::Publish, Perm::Send, Perm::Presence],
        }
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials; `?user=` names the client.
    None,
    /// A JWT is required.
    Jwt,
}

/// Values given on the command line; `None` leaves the config alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--shards`
    pub shards: Option<usize>,
    /// `--redis`
    pub redis_url: Option<String>,
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
