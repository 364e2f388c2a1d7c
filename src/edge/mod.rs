//! The edge: what happens to a TCP connection before it speaks HTTP, and
//! the checks that depend on where a request came from.
//!
//! In order, within `limits.handshake_timeout_ms` of the accept:
//! 1. [`proxy`]: a PROXY protocol header from a trusted balancer names the
//!    client's address;
//! 2. [`tls`]: with `server.tls_cert_file`, a TLS handshake, admitted
//!    against the connection caps first (`Shared::try_handshake`);
//! 3. [`head`]: the first request head, bounded by
//!    `limits.max_http_head_bytes`;
//! 4. then hyper serves HTTP on [`stream::HttpIo`], and each request's
//!    client is resolved from the forwarded header of a trusted proxy
//!    ([`client_addr`]), its `Origin` checked ([`origin`]).
//!
//! After an upgrade the connection's [`stream::Stream`] (plain or TLS) goes
//! to the shard. **Architecture Invariant:** nothing here knows rooms or
//! shards; it decides who the peer is and whether to talk to it.

mod client_addr;
mod head;
mod origin;
mod proxy;
pub(crate) mod stream;
pub(crate) mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use hyper::HeaderMap;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(crate) use client_addr::TrustedProxies;
pub(crate) use head::{HeadError, read_first_head};
pub(crate) use origin::{Origins, is_loopback_host};
pub(crate) use proxy::ProxyError;
use tls::{TlsCerts, TlsError};

use crate::config::{Config, ForwardedHeader, ProxyProtocol};

/// The edge policy of one broker, from `[server]`.
pub(crate) struct Edge {
    /// TLS, when configured.
    pub(crate) tls: Option<Arc<TlsCerts>>,
    proxy_protocol: ProxyProtocol,
    trusted: TrustedProxies,
    forwarded_header: ForwardedHeader,
    origins: Origins,
}

impl Edge {
    /// The edge of a validated `config`; fails on an unusable TLS pair.
    pub(crate) fn new(config: &Config) -> Result<Edge, TlsError> {
        let s = &config.server;
        let tls = match (s.tls_cert_file.as_deref(), s.tls_key_file.as_deref()) {
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                Some(Arc::new(TlsCerts::new(Path::new(cert), Path::new(key))?))
            }
            _ => None,
        };
        // Validated already: parse errors cannot happen here.
        Ok(Edge {
            tls,
            proxy_protocol: s.proxy_protocol,
            trusted: TrustedProxies::parse(&s.trusted_proxies).unwrap_or_default(),
            forwarded_header: s.forwarded_header,
            origins: Origins::parse(&s.allowed_origins).unwrap_or_default(),
        })
    }

    /// The client address of a fresh TCP connection from `peer`: read from
    /// its PROXY header when the protocol is on and `peer` is trusted.
    pub(crate) async fn proxied_addr(
        &self,
        tcp: &mut TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<SocketAddr, ProxyError> {
        if self.proxy_protocol == ProxyProtocol::Off {
            return Ok(peer);
        }
        let trusted = self.trusted.contains(peer.ip());
        proxy::read_header(tcp, peer, self.proxy_protocol, trusted, deadline).await
    }

    /// The client of a request over a connection from `conn`.
    pub(crate) fn client(&self, conn: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted.client(conn, headers, self.forwarded_header)
    }

    /// Whether a browser upgrade from `origin` may proceed.
    pub(crate) fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.is_empty() || self.origins.allows(origin)
    }
}
