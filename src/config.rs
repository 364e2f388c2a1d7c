//! The one configuration struct, loaded as defaults < TOML file < environment
//! (`SHARDCAST_<SECTION>__<KEY>`) < command-line flags, then validated.
//!
//! Invariant: a [`Config`] that left [`Config::load`] has passed
//! [`Config::validate`]; the rest of the broker trusts its values.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ROOM_HISTORY, MAX_SHARDS, RESERVED_FDS};

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

impl Config {
    /// Load from `file` (if any), the process environment and `overrides`,
    /// then validate and resolve `shards = 0` and `node_id = ""`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, overrides)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        origin: format!(" in {}", path.display()),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let env_used = env.iter().any(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains("__"))
        });
        let origin = match (file, env_used) {
            (Some(p), true) => format!(" in {} or SHARDCAST_* environment", p.display()),
            (Some(p), false) => format!(" in {}", p.display()),
            (None, true) => " in SHARDCAST_* environment".to_string(),
            (None, false) => String::new(),
        };
        apply_env(&mut table, env)?;
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin,
                    message: e.to_string().trim().to_string(),
                })?;
        if let Some(listen) = &overrides.listen {
            config.server.listen = listen.clone();
        }
        if let Some(shards) = overrides.shards {
            config.server.shards = shards;
        }
        if let Some(url) = &overrides.redis_url {
            config.cluster.redis_url = url.clone();
        }
        if config.server.shards == 0 {
            config.server.shards = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_SHARDS);
        }
        if config.server.node_id.is_empty() {
            config.server.node_id = random_node_id();
        }
        config.validate()?;
        Ok(config)
    }

    /// Check every value's range and the relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        self.refuse_redacted()?;
        let s = &self.server;
        self.listen_addr()?;
        if s.shards == 0 || s.shards > MAX_SHARDS {
            return Err(invalid(
                "server.shards",
                format!("must be 1..={MAX_SHARDS}, not {}", s.shards),
            ));
        }
        if !s.ws_path.starts_with('/') || s.ws_path.len() < 2 {
            return Err(invalid(
                "server.ws_path",
                "must start with / and name a path",
            ));
        }
        if !s.echo_path.is_empty()
            && (!s.echo_path.starts_with('/')
                || s.echo_path == s.ws_path
                || s.echo_path.starts_with("/api/"))
        {
            return Err(invalid(
                "server.echo_path",
                "must start with / and differ from server.ws_path and /api/",
            ));
        }
        if s.drain_timeout_ms == 0 {
            return Err(invalid("server.drain_timeout_ms", "must be > 0"));
        }
        if s.node_id.len() > crate::limits::MAX_NAME_BYTES
            || !crate::protocol::names::is_valid_name(&s.node_id)
        {
            return Err(invalid(
                "server.node_id",
                format!(
                    "must be 1-128 bytes of [A-Za-z0-9_.:@-], not {:?}",
                    s.node_id
                ),
            ));
        }
        let l = &self.limits;
        let positive: [(&'static str, u64); 9] = [
            ("limits.max_connections", l.max_connections),
            ("limits.max_message_bytes", l.max_message_bytes as u64),
            (
                "limits.max_rooms_per_connection",
                l.max_rooms_per_connection as u64,
            ),
            ("limits.max_rooms", l.max_rooms),
            (
                "limits.outbound_queue_messages",
                l.outbound_queue_messages as u64,
            ),
            ("limits.outbound_queue_bytes", l.outbound_queue_bytes as u64),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.heartbeat_interval_ms", l.heartbeat_interval_ms),
            ("limits.heartbeat_timeout_ms", l.heartbeat_timeout_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        if l.max_message_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be at most 64 MiB",
            ));
        }
        if l.publish_rate_per_sec > 0 && l.publish_burst == 0 {
            return Err(invalid(
                "limits.publish_burst",
                "must be > 0 when limits.publish_rate_per_sec is set",
            ));
        }
        if l.max_presence_list == 0 {
            return Err(invalid("limits.max_presence_list", "must be > 0"));
        }
        if self.api.max_body_bytes == 0 {
            return Err(invalid("api.max_body_bytes", "must be > 0"));
        }
        if self.api.keys.iter().any(|k| k.len() < 16) {
            return Err(invalid(
                "api.keys",
                "must hold keys of at least 16 bytes each",
            ));
        }
        let r = &self.room;
        if r.default_max_members == 0 {
            return Err(invalid("room.default_max_members", "must be > 0"));
        }
        if r.history > MAX_ROOM_HISTORY {
            return Err(invalid(
                "room.history",
                format!("must be at most {MAX_ROOM_HISTORY}"),
            ));
        }
        if r.history_max_bytes == 0 {
            return Err(invalid("room.history_max_bytes", "must be > 0"));
        }
        if r.history_on_join > MAX_ROOM_HISTORY {
            return Err(invalid(
                "room.history_on_join",
                format!("must be at most {MAX_ROOM_HISTORY}"),
            ));
        }
        let c = &self.cluster;
        if c.enabled() {
            if !c.redis_url.starts_with("redis://") {
                return Err(invalid("cluster.redis_url", "must start with redis://"));
            }
            for (key, value) in [
                ("cluster.connect_timeout_ms", c.connect_timeout_ms),
                ("cluster.command_timeout_ms", c.command_timeout_ms),
                (
                    "cluster.reconnect_max_backoff_ms",
                    c.reconnect_max_backoff_ms,
                ),
                ("cluster.command_queue", c.command_queue as u64),
                ("cluster.subscriber_queue", c.subscriber_queue as u64),
                (
                    "cluster.subscriber_queue_bytes",
                    c.subscriber_queue_bytes as u64,
                ),
            ] {
                if value == 0 {
                    return Err(invalid(key, "must be > 0"));
                }
            }
            if c.node_ttl_ms < 1_000 {
                return Err(invalid("cluster.node_ttl_ms", "must be at least 1000"));
            }
        }
        Ok(())
    }

    /// The listen address; an error naming `server.listen` if it is not a
    /// literal `ip:port` (there is no fallback address).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| ConfigError::Invalid {
                key: "server.listen",
                problem: format!(
                    "must be an address like 127.0.0.1:8080, not {:?}",
                    self.server.listen
                ),
            })
    }

    /// Refuse the placeholder [`Config::to_toml`] prints in place of each
    /// secret, so that its output fed back says what is wrong instead of
    /// failing on the placeholder's length (or failing later, at Redis).
    fn refuse_redacted(&self) -> Result<(), ConfigError> {
        let redacted = |key: &'static str, how: &str| ConfigError::Invalid {
            key,
            problem: format!(
                "holds {REDACTED:?}, the placeholder `shardcast config` prints in place of \
                 {how}: give the real value (a SHARDCAST_* environment variable keeps it \
                 out of files)"
            ),
        };
        if self.api.keys.iter().any(|k| k == REDACTED) {
            return Err(redacted("api.keys", "each key"));
        }
        if self.auth.secret == REDACTED {
            return Err(redacted("auth.secret", "the secret"));
        }
        if self.cluster.redis_url.contains(&format!(":{REDACTED}@")) {
            return Err(redacted("cluster.redis_url", "the password"));
        }
        Ok(())
    }

    /// Lower `limits.max_connections` to what the open-file limit allows.
    /// Returns `Some((configured, clamped))` when it lowered it.
    pub fn clamp_to_fd_limit(&mut self, fd_limit: u64) -> Option<(u64, u64)> {
        let budget = fd_limit.saturating_sub(RESERVED_FDS + 4 * self.server.shards as u64);
        let budget = budget.max(1);
        if self.limits.max_connections > budget {
            let configured = self.limits.max_connections;
            self.limits.max_connections = budget;
            return Some((configured, budget));
        }
        None
    }

    /// The effective config as TOML, with secrets redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.auth.secret.is_empty() {
            shown.auth.secret = REDACTED.into();
        }
        for key in &mut shown.api.keys {
            *key = REDACTED.into();
        }
        shown.cluster.redis_url = redact_url_password(&shown.cluster.redis_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// What [`Config::to_toml`] prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Keys whose environment values are always plain strings.
const RAW_STRING_KEYS: [(&str, &str); 11] = [
    ("server", "listen"),
    ("server", "ws_path"),
    ("server", "node_id"),
    ("server", "echo_path"),
    ("auth", "secret"),
    ("auth", "secret_file"),
    ("auth", "public_key_file"),
    ("auth", "issuer"),
    ("auth", "audience"),
    ("api", "keys"),
    ("cluster", "redis_url"),
];

/// Merge `SHARDCAST_<SECTION>__<KEY>=value` variables into `table`. A value
/// is read as a TOML value (`5000`, `true`, `["a","b"]`) and otherwise
/// taken as a string.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if section.is_empty() || key.is_empty() {
            return Err(ConfigError::Parse {
                origin: format!(" from env {name}"),
                message: "expected SHARDCAST_<SECTION>__<KEY>".into(),
            });
        }
        // Keys that hold text are taken as they are: a secret made of digits
        // must not turn into a number.
        // (A TOML array is still an array: `SHARDCAST_API__KEYS='["k1","k2"]'`.)
        let text_key = RAW_STRING_KEYS.contains(&(section.as_str(), key.as_str()))
            && !raw.trim_start().starts_with('[');
        let value = if text_key {
            toml::Value::String(raw.clone())
        } else {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()))
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(ConfigError::Parse {
                origin: format!(" from env {name}"),
                message: format!("`{section}` is not a section"),
            });
        };
        section_table.insert(key, value);
    }
    Ok(())
}

/// `redis://user:secret@host` shown as `redis://user:<redacted>@host`.
pub(crate) fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    let user = credentials.split_once(':').map_or("", |(u, _)| u);
    format!("{scheme}://{user}:{REDACTED}@{host}")
}

/// A random node id: 8 hex digits from the clock and the process id.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("node-{:08x}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_validate() {
        let c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.limits.max_connections, 100_000);
        assert!(c.server.shards >= 1);
        assert!(c.server.node_id.starts_with("node-"));
        assert!(!c.cluster.enabled());
    }

    #[test]
    fn cluster_url_is_checked_and_its_password_redacted() {
        let bad = env(&[("SHARDCAST_CLUSTER__REDIS_URL", "http://x")]);
        let err = Config::load_from(None, &bad, &Overrides::default()).expect_err("bad url");
        assert!(err.to_string().contains("cluster.redis_url"), "{err}");
        let overrides = Overrides {
            redis_url: Some("redis://app:hunter2@127.0.0.1:6379/0".into()),
            ..Overrides::default()
        };
        let c = Config::load_from(None, &[], &overrides).expect("cluster config");
        assert!(c.cluster.enabled());
        let shown = c.to_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("redis://app:<redacted>@127.0.0.1:6379/0"),
            "{shown}"
        );
        let zero = env(&[
            ("SHARDCAST_CLUSTER__REDIS_URL", "redis://127.0.0.1:1"),
            ("SHARDCAST_CLUSTER__COMMAND_QUEUE", "0"),
        ]);
        let err = Config::load_from(None, &zero, &Overrides::default()).expect_err("zero queue");
        assert!(err.to_string().contains("cluster.command_queue"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = std::env::temp_dir().join(format!("shardcast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:9000\"\n[limits]\nmax_connections = 10\n",
        )
        .expect("write");
        let e = env(&[
            ("SHARDCAST_LIMITS__MAX_CONNECTIONS", "5000"),
            ("SHARDCAST_ROOM__PRESENCE_EVENTS", "false"),
            ("SHARDCAST_LIMITS__SLOW_CONSUMER_POLICY", "drop"),
        ]);
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            shards: Some(3),
            ..Overrides::default()
        };
        let c = Config::load_from(Some(&path), &e, &o).expect("load");
        assert_eq!(c.limits.max_connections, 5000);
        assert!(!c.room.presence_events);
        assert_eq!(c.limits.slow_consumer_policy, OverflowPolicy::Drop);
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(c.server.shards, 3);
    }

    #[test]
    fn secrets_from_env_stay_text() {
        let e = env(&[
            ("SHARDCAST_AUTH__SECRET", "12345678901234567890123456789012"),
            (
                "SHARDCAST_API__KEYS",
                "key-aaaaaaaaaaaaaaaa,key-bbbbbbbbbbbbbbbb",
            ),
        ]);
        let c = Config::load_from(None, &e, &Overrides::default()).expect("load");
        assert_eq!(c.auth.secret, "12345678901234567890123456789012");
        assert_eq!(c.api.keys.len(), 2);
        let e = env(&[(
            "SHARDCAST_API__KEYS",
            r#"["key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"]"#,
        )]);
        let c = Config::load_from(None, &e, &Overrides::default()).expect("load");
        assert_eq!(
            c.api.keys,
            vec!["key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"]
        );
    }

    #[test]
    fn listen_addr_has_no_fallback() {
        let mut c = Config::default();
        assert_eq!(
            c.listen_addr().expect("default address"),
            SocketAddr::from(([127, 0, 0, 1], 8080))
        );
        c.server.listen = "localhost:8080".into();
        let err = c.listen_addr().expect_err("a host name is not an address");
        assert!(err.to_string().contains("server.listen"), "{err}");
        assert!(err.to_string().contains("localhost:8080"), "{err}");
    }

    /// What `shardcast config` prints for `env`, loaded back as a file.
    fn printed_then_loaded(env_pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let c = Config::load_from(None, &env(env_pairs), &Overrides::default()).expect("load");
        let dir = std::env::temp_dir().join(format!("shardcast-redacted-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let name = env_pairs.first().map_or("none", |(k, _)| *k);
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, c.to_toml()).expect("write");
        let back = Config::load_from(Some(&path), &[], &Overrides::default());
        let _ = std::fs::remove_file(&path);
        back
    }

    #[test]
    fn printed_config_loads_back_and_redacted_secrets_say_so() {
        let plain = printed_then_loaded(&[]).expect("a printed config without secrets loads");
        assert!(plain.api.keys.is_empty());
        for (pairs, key) in [
            (
                vec![("SHARDCAST_API__KEYS", "key-aaaaaaaaaaaaaaaa")],
                "api.keys",
            ),
            (
                vec![("SHARDCAST_AUTH__SECRET", "0123456789abcdef0123456789abcdef")],
                "auth.secret",
            ),
            (
                vec![(
                    "SHARDCAST_CLUSTER__REDIS_URL",
                    "redis://app:hunter2@127.0.0.1:6379",
                )],
                "cluster.redis_url",
            ),
        ] {
            let err = printed_then_loaded(&pairs).expect_err("a redacted secret is refused");
            let text = err.to_string();
            assert!(text.contains(key), "{text}");
            assert!(
                text.contains("\"<redacted>\", the placeholder `shardcast config` prints"),
                "{text}"
            );
        }
    }

    #[test]
    fn node_id_from_env_is_taken_verbatim() {
        let e = env(&[("SHARDCAST_SERVER__NODE_ID", "42")]);
        let c = Config::load_from(None, &e, &Overrides::default()).expect("a bare number");
        assert_eq!(c.server.node_id, "42");
        // Text keys are not TOML-parsed, so quotes stay part of the value.
        let e = env(&[("SHARDCAST_SERVER__NODE_ID", "\"42\"")]);
        let err = Config::load_from(None, &e, &Overrides::default()).expect_err("quotes");
        let text = err.to_string();
        assert!(text.contains("server.node_id"), "{text}");
        assert!(text.contains(r#"not "\"42\"""#), "{text}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = env(&[("SHARDCAST_LIMITS__MAX_CONECTIONS", "5")]);
        let err = Config::load_from(None, &e, &Overrides::default()).expect_err("typo");
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = env(&[("SHARDCAST_LIMITS__OUTBOUND_QUEUE_BYTES", "0")]);
        let err = Config::load_from(None, &e, &Overrides::default()).expect_err("zero");
        assert!(
            err.to_string().contains("limits.outbound_queue_bytes"),
            "{err}"
        );
        let o = Overrides {
            shards: Some(65),
            ..Overrides::default()
        };
        let err = Config::load_from(None, &[], &o).expect_err("shards");
        assert!(err.to_string().contains("server.shards"), "{err}");
        let o = Overrides {
            listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        let err = Config::load_from(None, &[], &o).expect_err("listen");
        assert!(err.to_string().contains("server.listen"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = env(&[("SHARDCAST_LIMITS__MAX_ROOMS", "lots")]);
        let err = Config::load_from(None, &e, &Overrides::default()).expect_err("type");
        assert!(err.to_string().contains("max_rooms"), "{err}");
    }

    #[test]
    fn clamps_to_fd_limit() {
        let mut c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
        let clamped = c.clamp_to_fd_limit(20_000).expect("clamped");
        assert_eq!(clamped.0, 100_000);
        assert!(c.limits.max_connections < 20_000);
        assert!(c.clamp_to_fd_limit(20_000).is_none());
    }

    #[test]
    fn toml_round_trips() {
        let c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
        let text = c.to_toml();
        let back: Config = toml::from_str(&text).expect("parse back");
        assert_eq!(back.limits.max_rooms, c.limits.max_rooms);
        assert_eq!(back.auth.default_perms, c.auth.default_perms);
    }
}
