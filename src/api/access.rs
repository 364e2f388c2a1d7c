//! Who may use the API: an API key, compared in constant time, or, with
//! no key configured, a loopback client asking for a loopback `Host`.
//!
//! **Invariant:** every `/api` request passes [`authorize`] before its body
//! is read or any op is routed.

use std::net::IpAddr;

use hyper::Request;
use hyper::header::AUTHORIZATION;

use crate::error::{ErrorCode, Refusal};
use crate::server::check_local_host;
use crate::shard::Shard;

use super::refusal;

/// API keys compared in constant time; without keys, loopback clients
/// asking for a loopback `Host` only. `client` is the resolved address
/// (PROXY protocol, trusted proxies), so a request relayed by a proxy on
/// this machine is not a loopback client.
pub(super) fn authorize<B>(shard: &Shard, client: IpAddr, req: &Request<B>) -> Result<(), Refusal> {
    let keys = &shard.shared.config.api.keys;
    if keys.is_empty() {
        check_local_host(shard, req)?;
        // `::ffff:127.0.0.1` (IPv4 on a dual-stack listener) is loopback too.
        if client.to_canonical().is_loopback() {
            return Ok(());
        }
        return Err(refusal(
            ErrorCode::Unauthorized,
            "no API key is configured, so /api answers loopback clients only",
        ));
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().as_bytes());
    let Some(given) = given else {
        return Err(refusal(
            ErrorCode::Unauthorized,
            "send the API key as `Authorization: Bearer <key>`",
        ));
    };
    // Compare with every key, always all of them, so timing tells nothing.
    let matched = keys.iter().fold(false, |found, key| {
        found | constant_time_eq(key.as_bytes(), given)
    });
    if matched {
        Ok(())
    } else {
        Err(refusal(ErrorCode::Unauthorized, "the API key is not valid"))
    }
}

/// Equality whose time depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
