//! Fuzz target `tokens`: JWT checks of `auth::Authenticator`, configured
//! three ways: HS256 with a fixed 32-byte secret, RS256 and ES256 with the
//! public keys in `tests/fixtures` (issuer and audience required on the
//! HS256 one, `require_connect` on the ES256 one).
//!
//! Byte 0 of the input picks a mode; the rest is:
//! - mode "raw": a token. Every checker must refuse it with 401 (not 403,
//!   which would mean the signature passed) and a message that does not
//!   repeat it (fuzz input is never signed).
//! - mode "hs256" / "es256": JSON claims (an object gets an `exp` an hour
//!   ahead unless it has one), signed for real; mode "rs256": a token
//!   signed once at startup (RSA signing is too slow to do per input) and
//!   the input's claims signed with the RSA public key as HMAC secret.
//!   Checks:
//!   - whatever it grants follows the claims: `sub` is the user and a valid
//!     name, `exp` is set and not past, `name` is a valid display name,
//!     at most 256 room patterns, `perms` as listed, expiry = `exp` + leeway;
//!   - the same claims with one character of header or payload changed,
//!     signed with another secret (HS256), signed with the RSA public key as
//!     HMAC secret (algorithm confusion), or with `"alg":"none"`, are
//!     refused;
//!   - only the checker of the signing key can accept the token.
//!
//! Never panics. (The `Authorization: Bearer` / `?token=` extraction is
//! private to `server/upgrade.rs`, so it is not fuzzed here.)

#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shardcast::auth::{Authenticator, Grant, mint_hs256};
use shardcast::config::{AuthConfig, AuthMode};
use shardcast::perms::Perm;
use shardcast::protocol::names::{is_valid_display_name, is_valid_name};
use shardcast::{ErrorCode, Refusal};

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
const OTHER_SECRET: &[u8] = b"another-secret-another-secret-12345";
const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "shardcast";
const LEEWAY: u64 = 5;

fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("test key fixture")
}

struct Keys {
    hs: Authenticator,
    rs: Authenticator,
    es: Authenticator,
    /// An RS256 token and its claims, signed once.
    rs_token: (String, Value),
    ec_private: EncodingKey,
    rsa_public_pem: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let base = AuthConfig {
            mode: AuthMode::Jwt,
            leeway_secs: LEEWAY,
            ..AuthConfig::default()
        };
        let hs = AuthConfig {
            secret: String::from_utf8(SECRET.to_vec()).expect("ascii"),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..base.clone()
        };
        let rs = AuthConfig {
            algorithms: vec!["RS256".into()],
            public_key_file: Some(fixture("rsa-test-public.pem")),
            ..base.clone()
        };
        let es = AuthConfig {
            algorithms: vec!["ES256".into()],
            public_key_file: Some(fixture("ec-test-public.pem")),
            require_connect: true,
            ..base
        };
        let build = |c: &AuthConfig| Authenticator::from_config(c).expect("fuzz auth config");
        Keys {
            hs: build(&hs),
            rs: build(&rs),
            es: build(&es),
            rs_token: {
                let key = EncodingKey::from_rsa_pem(&read_fixture("rsa-test-private.pem"))
                    .expect("rsa key");
                let claims = serde_json::json!({
                    "sub": "bob", "name": "Bob", "perms": ["publish", "admin"],
                    "rooms": ["team-*"], "exp": now() + 86_400,
                });
                let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
                    .expect("rs256 token");
                (token, claims)
            },
            ec_private: EncodingKey::from_ec_pem(&read_fixture("ec-test-private.pem"))
                .expect("ec key"),
            rsa_public_pem: read_fixture("rsa-test-public.pem"),
        }
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A refusal of a token that must not verify: 401 (a 403 would mean the
/// signature passed), never repeating the token.
fn assert_refused(result: Result<Grant, Refusal>, token: &str, what: &str) {
    match result {
        Ok(grant) => panic!("{what}: accepted as {:?}: {token:?}", grant.user),
        Err(refusal) => {
            assert_eq!(refusal.code, ErrorCode::Unauthorized, "{what}");
            // A token of plain lowercase prose ("e token is malfo...") can
            // be a piece of the fixed message itself; real tokens (base64url
            // with dots) are not, so only those are checked.
            if token.len() >= 16 && !is_prose(token) {
                assert!(
                    !refusal.message.contains(token),
                    "{what}: the refusal repeats the token"
                );
            }
        }
    }
}

/// What a grant for `claims` may say.
fn check_grant(grant: &Grant, claims: &Value, checker: usize) {
    if checker == 0 {
        // Only the HS256 checker requires iss and aud.
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
        let aud = claims.get("aud");
        assert!(
            aud.and_then(Value::as_str) == Some(AUDIENCE)
                || aud
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(AUDIENCE))),
            "granted with aud {aud:?}"
        );
    }
    let sub = claims.get("sub").and_then(Value::as_str);
    assert_eq!(grant.user.as_deref(), sub, "user is not `sub`");
    let user = grant.user.as_deref().unwrap_or_default();
    assert!(is_valid_name(user) && user != "system", "bad user {user:?}");
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .expect("granted without a numeric exp");
    // (2 s of slack: the clock may tick between the check and this line.)
    assert!(
        exp.saturating_add(LEEWAY + 2) >= now(),
        "granted an expired token"
    );
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64) {
        assert!(nbf <= now() + LEEWAY + 2, "granted before nbf");
    }
    assert_eq!(grant.expires_at, Some(exp.saturating_add(LEEWAY)));
    assert_eq!(
        grant.name.as_deref(),
        claims.get("name").and_then(Value::as_str)
    );
    if let Some(name) = &grant.name {
        assert!(is_valid_display_name(name));
    }
    let rooms = claims.get("rooms").and_then(Value::as_array);
    assert!(rooms.is_none_or(|r| r.len() <= shardcast::auth::MAX_ROOM_PATTERNS));
    if let Some(perms) = claims.get("perms").and_then(Value::as_array) {
        let listed: Vec<&str> = perms.iter().filter_map(Value::as_str).collect();
        for perm in [
            Perm::Create,
            Perm::Publish,
            Perm::Send,
            Perm::Broadcast,
            Perm::Presence,
            Perm::Connect,
        ] {
            if grant.perms.allows(perm) {
                assert!(
                    listed.contains(&perm.as_str()) || listed.contains(&"admin"),
                    "right {} not in the claim",
                    perm.as_str()
                );
            }
        }
    }
    if checker == 2 {
        // The ES256 checker has require_connect.
        assert!(grant.perms.allows(Perm::Connect));
    }
}

fn claims_of(bytes: &[u8]) -> Value {
    let mut claims = serde_json::from_slice::<Value>(bytes)
        .unwrap_or_else(|_| serde_json::json!({ "sub": String::from_utf8_lossy(bytes) }));
    if let Some(object) = claims.as_object_mut() {
        object
            .entry("exp")
            .or_insert_with(|| Value::from(now() + 3600));
    }
    claims
}

/// `token` with one character of its signed part (header or payload)
/// replaced, at a place and with a character picked by `pick`.
fn tampered(token: &str, pick: u8) -> Option<String> {
    let signed = token.rfind('.')?;
    if signed == 0 {
        return None;
    }
    let at = usize::from(pick) * 7 % signed;
    let old = token.as_bytes()[at];
    let mut new = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        [usize::from(pick) % 65];
    if new == old {
        new = if old == b'A' { b'B' } else { b'A' };
    }
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = new;
    String::from_utf8(bytes).ok()
}

fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// Lowercase words and punctuation only, like the refusal messages' own
/// text.
fn is_prose(token: &str) -> bool {
    token
        .chars()
        .all(|c| c.is_ascii_lowercase() || " ,.:;`'()-_".contains(c))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let k = keys();
    let checkers = [(&k.hs, "hs256"), (&k.rs, "rs256"), (&k.es, "es256")];
    // Signature checks dominate the time (the crypto crates are
    // instrumented too): most inputs are raw tokens, which rarely get that far.
    let (token, signer) = match mode % 16 {
        0..=9 => {
            let token = String::from_utf8_lossy(rest);
            for (checker, name) in checkers {
                assert_refused(checker.authenticate(Some(&token)), &token, name);
            }
            return;
        }
        10..=13 => {
            let mut claims = claims_of(rest);
            if let Some(object) = claims.as_object_mut() {
                // Mostly with the right iss and aud, so grants are reachable.
                if mode & 0x10 == 0 {
                    object.entry("iss").or_insert_with(|| ISSUER.into());
                    object.entry("aud").or_insert_with(|| AUDIENCE.into());
                }
            }
            let Ok(token) = mint_hs256(SECRET, &claims) else {
                return;
            };
            if let Ok(other) = mint_hs256(OTHER_SECRET, &claims) {
                for (checker, name) in checkers {
                    assert_refused(checker.authenticate(Some(&other)), &other, name);
                }
            }
            (token, (claims, 0))
        }
        14 => {
            // Algorithm confusion: the RSA public key as an HMAC secret.
            let claims = claims_of(rest);
            if let Ok(confused) = mint_hs256(&k.rsa_public_pem, &claims) {
                for (checker, name) in checkers {
                    assert_refused(checker.authenticate(Some(&confused)), &confused, name);
                }
            }
            // RSA signing under the fuzzer's instrumentation takes ~100 ms:
            // the RS256 token is signed once, and tampered with per input.
            (k.rs_token.0.clone(), (k.rs_token.1.clone(), 1))
        }
        _ => {
            let claims = claims_of(rest);
            let Ok(token) =
                jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &k.ec_private)
            else {
                return;
            };
            (token, (claims, 2))
        }
    };
    let (claims, key) = signer;
    for (i, (checker, name)) in checkers.into_iter().enumerate() {
        let result = checker.authenticate(Some(&token));
        if i != key {
            assert_refused(result, &token, name);
            continue;
        }
        if let Ok(grant) = &result {
            check_grant(grant, &claims, i);
        }
        let pick = data.get(1).copied().unwrap_or(0) ^ mode;
        if let Some(bad) = tampered(&token, pick) {
            assert_refused(checker.authenticate(Some(&bad)), &bad, "tampered");
        }
        let none = unsigned(&claims);
        assert_refused(checker.authenticate(Some(&none)), &none, "alg none");
    }
});
