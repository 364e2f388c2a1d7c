//! `[server]`: listening, TLS, proxies, origins, timeouts.
//!
//! Invariant (every section): each key's default is here, and its range
//! and its relations to other keys are checked in `validate.rs`, so a
//! section that left `Config::load` holds only valid values.

use serde::{Deserialize, Serialize};

use super::string_or_list;

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`; port 0 picks a free port).
    pub listen: String,
    /// Worker shards; 0 means one per core.
    pub shards: usize,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// How long a drain may take before the process exits anyway.
    pub drain_timeout_ms: u64,
    /// Name of this node in `welcome` frames; empty means a random id.
    pub node_id: String,
    /// Conformance aid, off when empty: a WebSocket path that echoes every
    /// message back, through the same connection layer as `ws_path` (frame
    /// reader, fragment assembly, UTF-8 checks, close handling, limits).
    /// For the Autobahn test suite; not for production.
    pub echo_path: String,
    /// PEM certificate chain (leaf first). With `tls_key_file`, every
    /// listener speaks TLS (`wss://`, `https://`); both are reloaded on
    /// SIGHUP and when the files change.
    pub tls_cert_file: Option<String>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<String>,
    /// Browser origins allowed to open a WebSocket: exact
    /// (`https://app.example.com`) or `https://*.example.com`. Empty: no
    /// check. Requests without `Origin` (non-browser clients) pass.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_origins: Vec<String>,
    /// Read a HAProxy PROXY protocol header from peers in
    /// `trusted_proxies` (AWS NLB, HAProxy).
    pub proxy_protocol: ProxyProtocol,
    /// CIDRs (or addresses) of proxies whose PROXY header and forwarded
    /// header are believed.
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_proxies: Vec<String>,
    /// Which header names the client behind a trusted HTTP proxy.
    pub forwarded_header: ForwardedHeader,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    pub compression: bool,
    /// Messages shorter than this are sent uncompressed.
    pub compression_min_bytes: usize,
}

/// `server.proxy_protocol`: which PROXY protocol versions are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No PROXY header is read (one arriving is an HTTP error).
    #[default]
    Off,
    /// The text form.
    V1,
    /// The binary form (AWS NLB).
    V2,
    /// Either.
    Any,
}

/// `server.forwarded_header`: where a trusted HTTP proxy names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, ALB).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            shards: 0,
            ws_path: "/ws".into(),
            drain_timeout_ms: 10_000,
            node_id: String::new(),
            echo_path: String::new(),
            tls_cert_file: None,
            tls_key_file: None,
            allowed_origins: Vec::new(),
            proxy_protocol: ProxyProtocol::Off,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            compression: false,
            compression_min_bytes: 256,
        }
    }
}
