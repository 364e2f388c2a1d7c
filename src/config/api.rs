//! `[api]`: the HTTP API's keys and body bound.
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

use super::string_or_list;

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
