//! `[room]` and `[[room.namespaces]]`: the options rooms take by default
//! and by name prefix.
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

use super::OverflowPolicy;

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
