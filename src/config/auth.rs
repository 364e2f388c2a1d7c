//! `[auth]`: how clients authenticate, and the rights of a connection
//! without a token.
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

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
