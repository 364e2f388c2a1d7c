//! The one configuration struct, loaded as defaults < TOML file < environment
//! (`SHARDCAST_<SECTION>__<KEY>`) < command-line flags, then validated.
//!
//! Invariant: a [`Config`] that left [`Config::load`] has passed
//! [`Config::validate`]; the rest of the broker trusts its values.
//!
//! Here: [`Config`] and what its sections share; each section (its struct
//! and defaults) is its own file: `server.rs`, `limits.rs`, `room.rs`,
//! `auth.rs`, `api.rs`, `cluster.rs`, `pusher.rs`. Loading is `load.rs`,
//! the checks `validate.rs`, printing `print.rs`.

mod api;
mod auth;
mod cluster;
mod limits;
mod load;
mod print;
mod pusher;
mod room;
mod server;
mod validate;

pub use api::ApiConfig;
pub use auth::{AuthConfig, AuthMode};
pub use cluster::ClusterConfig;
pub use limits::LimitsConfig;
pub use pusher::{PusherApp, PusherConfig};
pub use room::{NamespaceConfig, RoomConfig};
pub use server::{ForwardedHeader, ProxyProtocol, ServerConfig};

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

/// A list given as a TOML array, or as one comma-separated string (handy in
/// `SHARDCAST_API__KEYS=k1,k2`).
pub(super) fn string_or_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
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
