//! Authentication: JWT checks before the upgrade, and what a token grants.
//!
//! **Invariant:** with `auth.mode = "jwt"` no connection exists without a
//! token whose signature, algorithm, `exp`, `nbf` and (if configured) `iss`
//! and `aud` were checked; its rights are exactly its `perms` claim (or
//! `auth.default_perms`), and private rooms need a matching `rooms` pattern
//! or `admin`. Secrets and tokens are never logged.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, AuthMode, ConfigError};
use crate::error::{ErrorCode, Refusal};
use crate::limits::MAX_NAME_BYTES;
use crate::perms::{Perm, Perms};
use crate::protocol::names::{is_valid_display_name, is_valid_name};

/// Most room patterns one token may carry.
pub const MAX_ROOM_PATTERNS: usize = 256;

/// What a connection may do, from its token or the defaults.
#[derive(Debug, Clone)]
pub struct Grant {
    /// User id (`sub`), or `None` to let the caller name the user (mode
    /// `none`).
    pub user: Option<String>,
    /// Display name (`name`).
    pub name: Option<String>,
    /// Rights.
    pub perms: Perms,
    /// Private rooms this connection may join.
    pub rooms: RoomPatterns,
    /// When the connection must close: the token's `exp` plus
    /// `auth.leeway_secs` (seconds since the Unix epoch).
    pub expires_at: Option<u64>,
    /// The token's own `exp` claim, as a `refresh` ack reports it.
    pub exp: Option<u64>,
}

/// Room patterns: exact names, or a prefix followed by `*`.
#[derive(Debug, Clone, Default)]
pub struct RoomPatterns(Arc<[String]>);

impl RoomPatterns {
    /// Patterns from a `rooms` claim.
    pub fn new(patterns: Vec<String>) -> Self {
        RoomPatterns(patterns.into())
    }

    /// Whether `room` matches one of the patterns.
    pub fn allows(&self, room: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => p == room,
        })
    }
}

/// The claims shardcast reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    name: Option<String>,
    rooms: Option<Vec<String>>,
    perms: Option<Vec<String>>,
    exp: Option<u64>,
}

/// Checks credentials of new connections.
pub struct Authenticator {
    mode: AuthMode,
    key: Option<DecodingKey>,
    validation: Validation,
    default_perms: Perms,
    require_connect: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The key families: one key verifies one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
        _ => Family::Rsa,
    }
}

impl Authenticator {
    /// Build from `[auth]`, reading key files. Fails on a missing or
    /// unreadable key, an unknown algorithm, or algorithms that one key
    /// cannot serve.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let default_perms = Perms::from_list(&cfg.default_perms);
        if cfg.mode == AuthMode::None {
            return Ok(Authenticator {
                mode: AuthMode::None,
                key: None,
                validation: Validation::default(),
                default_perms,
                require_connect: false,
            });
        }
        if cfg.algorithms.is_empty() {
            return Err(invalid(
                "auth.algorithms",
                "must name at least one algorithm",
            ));
        }
        let mut algorithms = Vec::new();
        for name in &cfg.algorithms {
            let alg: Algorithm = name.parse().map_err(|_| {
                invalid(
                    "auth.algorithms",
                    format!("unknown algorithm {name:?} (HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"),
                )
            })?;
            algorithms.push(alg);
        }
        let fam = family(algorithms[0]);
        if algorithms.iter().any(|a| family(*a) != fam) {
            return Err(invalid(
                "auth.algorithms",
                "mixes key types: one key verifies HMAC (HS*), RSA (RS*/PS*), EC (ES*) or Ed25519 (EdDSA) tokens, not several",
            ));
        }
        let key = match fam {
            Family::Hmac => {
                let secret = match (&cfg.secret, &cfg.secret_file) {
                    (s, None) if !s.is_empty() => s.as_bytes().to_vec(),
                    (s, Some(path)) if s.is_empty() => std::fs::read(path).map_err(|e| {
                        invalid("auth.secret_file", format!("cannot read {path}: {e}"))
                    })?,
                    (s, Some(_)) if !s.is_empty() => {
                        return Err(invalid(
                            "auth.secret",
                            "set either auth.secret or auth.secret_file, not both",
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            "auth.secret",
                            "HS* algorithms need auth.secret (or SHARDCAST_AUTH__SECRET) or auth.secret_file",
                        ));
                    }
                };
                let secret = trim_newline(secret);
                if secret.len() < 32 {
                    return Err(invalid("auth.secret", "must be at least 32 bytes"));
                }
                DecodingKey::from_secret(&secret)
            }
            _ => {
                let Some(path) = &cfg.public_key_file else {
                    return Err(invalid(
                        "auth.public_key_file",
                        "RS*/PS*/ES*/EdDSA algorithms need a PEM public key file",
                    ));
                };
                if !cfg.secret.is_empty() || cfg.secret_file.is_some() {
                    return Err(invalid(
                        "auth.secret",
                        "an HMAC secret does not fit asymmetric algorithms; remove it",
                    ));
                }
                let pem = std::fs::read(path).map_err(|e| {
                    invalid("auth.public_key_file", format!("cannot read {path}: {e}"))
                })?;
                let parsed = match fam {
                    Family::Rsa => DecodingKey::from_rsa_pem(&pem),
                    Family::Ec => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                };
                parsed.map_err(|e| {
                    invalid(
                        "auth.public_key_file",
                        format!(
                            "{path} is not a PEM public key for {:?}: {e}",
                            cfg.algorithms
                        ),
                    )
                })?
            }
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = cfg.leeway_secs;
        validation.validate_nbf = true;
        // exp is required: a token that never expires cannot be revoked by
        // time. iss/aud are required when configured (jsonwebtoken checks
        // them only when present otherwise).
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &cfg.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Authenticator {
            mode: AuthMode::Jwt,
            key: Some(key),
            validation,
            default_perms,
            require_connect: cfg.require_connect,
        })
    }

    /// Whether tokens are required.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Check `token` (from `Authorization: Bearer` or `?token=`) and say
    /// what it grants, or why the connection is refused (401/403).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Grant, Refusal> {
        let (AuthMode::Jwt, Some(key)) = (self.mode, &self.key) else {
            return Ok(Grant {
                user: None,
                name: None,
                perms: self.default_perms,
                rooms: RoomPatterns::default(),
                expires_at: None,
                exp: None,
            });
        };
        let unauthorized = |m: &str| Refusal::new(ErrorCode::Unauthorized, m);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(unauthorized(
                "a token is required: send `Authorization: Bearer <JWT>` or `?token=<JWT>`",
            ));
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            let message = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
                ErrorKind::InvalidSignature => "the token's signature is invalid".to_string(),
                ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted".to_string(),
                ErrorKind::InvalidAudience => {
                    "the token's audience (aud) is not accepted".to_string()
                }
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => {
                    format!(
                        "the token's algorithm is not accepted (accepted: {:?})",
                        self.validation.algorithms
                    )
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("the token lacks the `{claim}` claim")
                }
                ErrorKind::InvalidClaimFormat(claim) => {
                    format!("the token's `{claim}` claim is malformed")
                }
                _ => "the token is malformed".to_string(),
            };
            unauthorized(&message)
        })?;
        let claims = data.claims;
        let user = claims.sub.unwrap_or_default();
        if !is_valid_name(&user) || user == crate::server::SYSTEM_USER {
            return Err(unauthorized(
                "the token's `sub` must be 1-128 bytes of [A-Za-z0-9_.:@-] and not `system`",
            ));
        }
        if let Some(name) = &claims.name {
            if !is_valid_display_name(name) {
                return Err(unauthorized(
                    "the token's `name` must be at most 256 bytes without control characters",
                ));
            }
        }
        let perms = match &claims.perms {
            None => self.default_perms,
            Some(list) => {
                let mut perms = Vec::with_capacity(list.len());
                for p in list {
                    match Perm::parse(p) {
                        Some(perm) => perms.push(perm),
                        None => {
                            return Err(unauthorized(&format!(
                                "the token's `perms` names an unknown right {:?}",
                                p.chars().take(32).collect::<String>()
                            )));
                        }
                    }
                }
                Perms::from_list(&perms)
            }
        };
        let rooms = claims.rooms.unwrap_or_default();
        if rooms.len() > MAX_ROOM_PATTERNS
            || rooms
                .iter()
                .any(|r| r.is_empty() || r.len() > MAX_NAME_BYTES + 1)
        {
            return Err(unauthorized(&format!(
                "the token's `rooms` must hold at most {MAX_ROOM_PATTERNS} patterns of 1-129 bytes"
            )));
        }
        if self.require_connect && !perms.allows(Perm::Connect) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the token lacks the `connect` right",
            ));
        }
        Ok(Grant {
            user: Some(user),
            name: claims.name,
            perms,
            rooms: RoomPatterns::new(rooms),
            // The connection lives as long as the check accepted the token.
            expires_at: claims
                .exp
                .map(|exp| exp.saturating_add(self.validation.leeway)),
            exp: claims.exp,
        })
    }
}

fn trim_newline(mut secret: Vec<u8>) -> Vec<u8> {
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    secret
}

/// Mint an HS256 token (the `shardcast token` command, and tests).
pub fn mint_hs256(
    secret: &[u8],
    claims: &serde_json::Value,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_patterns() {
        let p = RoomPatterns::new(vec!["team-*".into(), "lobby".into()]);
        assert!(p.allows("team-a"));
        assert!(p.allows("team-"));
        assert!(p.allows("lobby"));
        assert!(!p.allows("lobby2"));
        assert!(!p.allows("tea"));
        assert!(!RoomPatterns::default().allows("x"));
        assert!(RoomPatterns::new(vec!["*".into()]).allows("anything"));
    }
}
