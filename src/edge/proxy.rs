//! The HAProxy PROXY protocol (v1 text, v2 binary), as AWS NLB and HAProxy
//! send it in front of a connection: the client's address, before any TLS
//! or HTTP byte.
//!
//! **Invariant:** a PROXY header is believed only from a peer in
//! `server.trusted_proxies`, and only in a version `server.proxy_protocol`
//! allows; any other PROXY header, or a malformed or oversize one, closes
//! the connection before anything after it is read. A connection that does
//! not start with a PROXY signature is a direct client, whatever its peer.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::ProxyProtocol;

/// The v1 signature and its longest header (PROXY protocol spec, 2.1).
const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX_BYTES: usize = 107;
/// The v2 signature (spec, 2.2) and its fixed part.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED_BYTES: usize = 16;
/// Longest v2 header accepted (addresses and TLVs): AWS NLB and HAProxy
/// send well under this; anything longer closes the connection.
pub(crate) const V2_MAX_BYTES: usize = 4096;
/// Pause between two peeks while a header arrives in pieces.
const PEEK_RETRY_MS: u64 = 2;

/// Why a connection was closed at its PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    /// A PROXY header from a peer outside `server.trusted_proxies`.
    #[error("PROXY protocol header from {0}, which is not in server.trusted_proxies")]
    Untrusted(SocketAddr),
    /// A version `server.proxy_protocol` does not allow.
    #[error("PROXY protocol {got} header, but server.proxy_protocol is {allowed:?}")]
    Version {
        /// "v1" or "v2".
        got: &'static str,
        /// The configured policy.
        allowed: ProxyProtocol,
    },
    /// A header that does not parse, or is too long.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// The connection closed or failed, or the deadline passed, first.
    #[error("connection ended before its PROXY protocol header did")]
    Incomplete,
}

/// What the first bytes of a connection are.
enum Start {
    /// Not a PROXY header.
    Direct,
    /// A v1 header of this many bytes.
    V1(usize),
    /// A v2 header of this many bytes.
    V2(usize),
}

/// Classify what `bytes` (the start of the stream) begin with; `None` when
/// more bytes are needed to tell.
fn classify(bytes: &[u8]) -> Result<Option<Start>, ProxyError> {
    let is_prefix_of = |sig: &[u8]| bytes.len() < sig.len() && sig.starts_with(bytes);
    if is_prefix_of(V1_PREFIX) || is_prefix_of(V2_SIGNATURE) {
        return Ok(None);
    }
    if bytes.starts_with(V1_PREFIX) {
        let window = &bytes[..bytes.len().min(V1_MAX_BYTES)];
        return match window.windows(2).position(|w| w == b"\r\n") {
            Some(at) => Ok(Some(Start::V1(at + 2))),
            None if bytes.len() >= V1_MAX_BYTES => Err(ProxyError::Malformed(format!(
                "a v1 header longer than {V1_MAX_BYTES} bytes"
            ))),
            None => Ok(None),
        };
    }
    if bytes.starts_with(V2_SIGNATURE) {
        if bytes.len() < V2_FIXED_BYTES {
            return Ok(None);
        }
        let len = V2_FIXED_BYTES + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if len > V2_MAX_BYTES {
            return Err(ProxyError::Malformed(format!(
                "a v2 header of {len} bytes (at most {V2_MAX_BYTES})"
            )));
        }
        return Ok(Some(Start::V2(len)));
    }
    Ok(Some(Start::Direct))
}

/// The client address a parsed header names, or `peer` when it names none
/// (v2 LOCAL, v1 UNKNOWN, unix sockets).
fn source_of(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyError> {
    use ppp::{HeaderResult, v1, v2};
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
            v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
            v1::Addresses::Unknown => peer,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                SocketAddr::from((a.source_address, a.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                SocketAddr::from((a.source_address, a.source_port))
            }
            _ => peer,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyError::Malformed(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Malformed(format!("{e:?}"))),
    }
}

/// Read the PROXY header at the start of `tcp`, if there is one, and return
/// the client's address (`peer` for a direct client). Reads exactly the
/// header's bytes; what follows stays in the socket. Gives up at
/// `deadline`.
pub(crate) async fn read_header(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    policy: ProxyProtocol,
    trusted: bool,
    deadline: Instant,
) -> Result<SocketAddr, ProxyError> {
    let mut peeked = [0u8; V1_MAX_BYTES];
    let start = loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut peeked)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(ProxyError::Incomplete),
            Ok(Ok(n)) => n,
        };
        if let Some(start) = classify(&peeked[..n])? {
            break start;
        }
        // Part of a header came: wait for the rest.
        if Instant::now() + Duration::from_millis(PEEK_RETRY_MS) > deadline {
            return Err(ProxyError::Incomplete);
        }
        tokio::time::sleep(Duration::from_millis(PEEK_RETRY_MS)).await;
    };
    let (len, version) = match start {
        Start::Direct => return Ok(peer),
        Start::V1(len) => (len, "v1"),
        Start::V2(len) => (len, "v2"),
    };
    if !trusted {
        return Err(ProxyError::Untrusted(peer));
    }
    let allowed = match policy {
        ProxyProtocol::Off => false,
        ProxyProtocol::Any => true,
        ProxyProtocol::V1 => version == "v1",
        ProxyProtocol::V2 => version == "v2",
    };
    if !allowed {
        return Err(ProxyError::Version {
            got: version,
            allowed: policy,
        });
    }
    let mut header = vec![0u8; len];
    match tokio::time::timeout_at(
        deadline,
        tokio::io::AsyncReadExt::read_exact(tcp, &mut header),
    )
    .await
    {
        Ok(Ok(_)) => source_of(&header, peer),
        _ => Err(ProxyError::Incomplete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_first_bytes() {
        assert!(matches!(
            classify(b"GET / HTTP/1.1\r\n"),
            Ok(Some(Start::Direct))
        ));
        assert!(matches!(
            classify(&[0x16, 0x03, 0x01]),
            Ok(Some(Start::Direct))
        ));
        assert!(matches!(classify(b"PRO"), Ok(None)));
        assert!(matches!(classify(b"POST /api"), Ok(Some(Start::Direct))));
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET";
        assert!(matches!(classify(v1), Ok(Some(Start::V1(45)))));
        assert!(matches!(classify(&v1[..20]), Ok(None)));
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12]);
        assert!(matches!(classify(&v2), Ok(Some(Start::V2(28)))));
        v2[14] = 0xFF;
        assert!(matches!(classify(&v2), Err(ProxyError::Malformed(_))));
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(classify(&long), Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn reads_the_source_address() {
        let peer: SocketAddr = "10.0.0.1:1000".parse().expect("addr");
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";
        assert_eq!(
            source_of(v1, peer),
            Ok("192.0.2.1:56324".parse().expect("addr"))
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
        assert_eq!(
            source_of(v6, peer),
            Ok("[2001:db8::1]:4000".parse().expect("addr"))
        );
        assert_eq!(source_of(b"PROXY UNKNOWN\r\n", peer), Ok(peer));
        assert!(source_of(b"PROXY TCP4 999.0.0.1 1.1.1.1 1 2\r\n", peer).is_err());
    }
}
