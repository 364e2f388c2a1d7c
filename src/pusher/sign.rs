//! The Pusher signatures: channel auth (`key:hex(HMAC-SHA256(secret,
//! "socket_id:channel[:channel_data]"))`), user sign-in, HTTP API requests
//! (`METHOD\nPATH\nsorted query`, with `body_md5`), and webhook bodies.
//!
//! Pure; every comparison of a signature is in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::api::constant_time_eq;

/// How far an API request's `auth_timestamp` may be from the server's
/// clock (the Pusher HTTP API's rule), seconds.
pub(crate) const MAX_TIMESTAMP_SKEW_S: u64 = 600;

/// Hex HMAC-SHA256 of `message` under `secret`.
pub(crate) fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Hex MD5 of `body` (`body_md5` of API requests).
pub(crate) fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignError {
    /// `auth` is not `key:signature`.
    #[error("the auth value must be `key:signature`")]
    Shape,
    /// `auth` names another app's key.
    #[error("the auth value is signed for another app key")]
    WrongKey,
    /// The signature does not match.
    #[error("invalid signature: expected HMAC SHA256 hex digest of {0:?}")]
    Mismatch(String),
}

/// Check `auth` (`key:signature`) of a subscription: the signature must
/// be over `socket_id:channel`, plus `:channel_data` for presence.
pub(crate) fn check_channel_auth(
    key: &str,
    secret: &[u8],
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), SignError> {
    let mut signed = format!("{socket_id}:{channel}");
    if let Some(data) = channel_data {
        signed.push(':');
        signed.push_str(data);
    }
    check(key, secret, &signed, auth)
}

/// Check `auth` of a `pusher:signin`: over `socket_id::user::user_data`.
pub(crate) fn check_signin(
    key: &str,
    secret: &[u8],
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> Result<(), SignError> {
    check(
        key,
        secret,
        &format!("{socket_id}::user::{user_data}"),
        auth,
    )
}

fn check(key: &str, secret: &[u8], signed: &str, auth: &str) -> Result<(), SignError> {
    let (given_key, signature) = auth.split_once(':').ok_or(SignError::Shape)?;
    if !constant_time_eq(given_key.as_bytes(), key.as_bytes()) {
        return Err(SignError::WrongKey);
    }
    let expected = hmac_hex(secret, signed.as_bytes());
    if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(SignError::Mismatch(signed.to_string()))
    }
}

/// Why an HTTP API request's signature was refused (all 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestAuthError {
    /// A required query parameter is missing.
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    /// `auth_version` is not `1.0`.
    #[error("auth_version must be 1.0")]
    Version,
    /// `auth_key` is not the app's key.
    #[error("unknown auth_key")]
    Key,
    /// `auth_timestamp` is not a number or too far from now.
    #[error("auth_timestamp must be within {MAX_TIMESTAMP_SKEW_S} s of the server's clock")]
    Timestamp,
    /// `body_md5` does not match the body.
    #[error("body_md5 does not match the body")]
    BodyMd5,
    /// The signature does not match.
    #[error("invalid signature: expected HMAC SHA256 hex digest of {0:?}")]
    Signature(String),
}

/// Check a Pusher HTTP API request: `params` are its decoded query
/// parameters, `now_s` the server's clock (Unix seconds).
pub(crate) fn check_request(
    key: &str,
    secret: &[u8],
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    now_s: u64,
) -> Result<(), RequestAuthError> {
    let get = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(RequestAuthError::Missing(name))
    };
    let given_key = get("auth_key")?;
    let signature = get("auth_signature")?;
    let timestamp = get("auth_timestamp")?;
    if get("auth_version")? != "1.0" {
        return Err(RequestAuthError::Version);
    }
    if !constant_time_eq(given_key.as_bytes(), key.as_bytes()) {
        return Err(RequestAuthError::Key);
    }
    let ts: u64 = timestamp.parse().map_err(|_| RequestAuthError::Timestamp)?;
    if ts.abs_diff(now_s) > MAX_TIMESTAMP_SKEW_S {
        return Err(RequestAuthError::Timestamp);
    }
    if !body.is_empty() {
        let md5 = get("body_md5")?;
        if !constant_time_eq(md5.as_bytes(), md5_hex(body).as_bytes()) {
            return Err(RequestAuthError::BodyMd5);
        }
    }
    let signed = string_to_sign(method, path, params);
    let expected = hmac_hex(secret, signed.as_bytes());
    if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(RequestAuthError::Signature(signed))
    }
}

/// `METHOD\nPATH\nk=v&k=v`: every parameter but `auth_signature`, keys
/// lower-cased and sorted, values as sent.
pub(crate) fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}\n{path}\n{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_auth_matches_the_documented_example() {
        // Pusher's documentation example: key 278d425bdf160c739803, secret
        // 7ad3773142a6692b25b8, socket 1234.1234, channel private-foobar.
        let auth =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        let ok = check_channel_auth(
            "278d425bdf160c739803",
            b"7ad3773142a6692b25b8",
            "1234.1234",
            "private-foobar",
            None,
            auth,
        );
        assert_eq!(ok, Ok(()));
        let bad = check_channel_auth(
            "278d425bdf160c739803",
            b"7ad3773142a6692b25b8",
            "1234.1235",
            "private-foobar",
            None,
            auth,
        );
        assert!(matches!(bad, Err(SignError::Mismatch(_))));
        assert_eq!(
            check_channel_auth("k", b"s", "1.1", "c", None, "nocolon"),
            Err(SignError::Shape)
        );
        assert_eq!(
            check_channel_auth("k", b"s", "1.1", "c", None, "other:abc"),
            Err(SignError::WrongKey)
        );
    }

    #[test]
    fn presence_auth_signs_the_channel_data() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let sig = hmac_hex(
            b"7ad3773142a6692b25b8",
            format!("1234.1234:presence-foobar:{data}").as_bytes(),
        );
        let auth = format!("278d425bdf160c739803:{sig}");
        assert_eq!(
            check_channel_auth(
                "278d425bdf160c739803",
                b"7ad3773142a6692b25b8",
                "1234.1234",
                "presence-foobar",
                Some(data),
                &auth
            ),
            Ok(())
        );
        assert!(
            check_channel_auth(
                "278d425bdf160c739803",
                b"7ad3773142a6692b25b8",
                "1234.1234",
                "presence-foobar",
                Some("{}"),
                &auth
            )
            .is_err()
        );
    }

    #[test]
    fn api_request_signature_matches_the_documented_example() {
        // Pusher's HTTP API documentation example (auth_version 1.0).
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), "278d425bdf160c739803".into()),
            ("auth_timestamp".into(), "1353088179".into()),
            ("auth_version".into(), "1.0".into()),
            ("body_md5".into(), md5_hex(body)),
        ];
        assert_eq!(md5_hex(body), "ec365a775a4cd0599faeb73354201b6f");
        let signed = string_to_sign("POST", "/apps/3/events", &params);
        let signature = hmac_hex(b"7ad3773142a6692b25b8", signed.as_bytes());
        assert_eq!(
            signature,
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        params.push(("auth_signature".into(), signature));
        let check = |body: &[u8], now| {
            check_request(
                "278d425bdf160c739803",
                b"7ad3773142a6692b25b8",
                "POST",
                "/apps/3/events",
                &params,
                body,
                now,
            )
        };
        assert_eq!(check(body, 1_353_088_179), Ok(()));
        assert_eq!(
            check(body, 1_353_088_179 + 601),
            Err(RequestAuthError::Timestamp)
        );
        assert_eq!(check(b"{}", 1_353_088_179), Err(RequestAuthError::BodyMd5));
    }
}
