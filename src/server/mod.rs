//! Listeners and the HTTP side of a shard: accepting, the edge, serving
//! HTTP until an upgrade, and the one router of paths ([`route`]: the
//! protocols' upgrades, `/api`, `/apps`, health, readiness, the pages).
//!
//! * [`upgrade`](mod@upgrade): the native protocol's upgrade and the
//!   hand-over of the socket to [`crate::shard::conn`].
//! * [`pages`]: the status page, `/client.js`, `/metrics`.
//! * [`responses`]: how responses and refusals are built.
//!
//! Every refusal happens before the upgrade, as plain HTTP with a JSON
//! body `{"error":{"code","message"}}` (PROTOCOL.md section 1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::edge::stream::{HttpIo, Stream, linger_close};
use crate::edge::{HeadError, is_loopback_host, read_first_head};
use crate::error::{ErrorCode, Refusal};
use crate::limits::READ_CHUNK_BYTES;
use crate::shard::Shard;

mod pages;
mod responses;
mod upgrade;

use pages::{client_js, metrics, status_page};
use responses::raw_refusal;
pub(crate) use responses::{JSON, refusal_response, respond};
use upgrade::upgrade;
pub(crate) use upgrade::{check_origin, upgraded};

type Body = Full<Bytes>;

/// The user id of messages from the server itself (`from` of API publishes).
pub const SYSTEM_USER: &str = "system";

/// Pause after a failed accept (out of file descriptors, ...), so the
/// accept loop does not spin.
const ACCEPT_BACKOFF_MS: u64 = 50;

/// Pending-connection backlog of each shard's listener.
const LISTEN_BACKLOG: i32 = 4096;

/// Bind `shards` listeners to `addr` with SO_REUSEPORT, so the kernel spreads
/// connections over shards by hash. With port 0 the first listener picks the
/// port and the others join it.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    shards: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    // SO_REUSEPORT lets any process of this user join the port. Bind once
    // without it first, so a port already in use (by another broker, too)
    // fails loudly instead of silently sharing connections.
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    let mut addr = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("listener has no socket address"))?;
    drop(probe);
    let mut listeners = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Accept connections for `shard` until aborted.
pub(crate) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(serve_socket(shard.clone(), stream, peer));
            }
            Err(e) => {
                // Out of file descriptors or similar: back off, don't spin.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
            }
        }
    }
}

/// Take a fresh TCP connection through the edge (PROXY header, TLS, first
/// request head; see [`crate::edge`]), then serve HTTP on it. All of it
/// within `limits.handshake_timeout_ms`.
async fn serve_socket(shard: Rc<Shard>, mut tcp: TcpStream, peer: SocketAddr) {
    let limits = &shard.shared.config.limits;
    let deadline = Instant::now() + Duration::from_millis(limits.handshake_timeout_ms);
    let linger = Duration::from_millis(limits.lingering_close_ms);
    let edge = &shard.shared.edge;
    let addr = match edge.proxied_addr(&mut tcp, peer, deadline).await {
        Ok(addr) => addr,
        Err(e) => {
            shard.counters.proxy_header_refused();
            tracing::info!(%peer, error = %e, "connection closed at its PROXY protocol header");
            return;
        }
    };
    let mut _slot = None;
    let mut stream = match &edge.tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            // Counted against the caps before rustls allocates for it.
            match shard.shared.try_handshake(addr.ip()) {
                Ok(slot) => _slot = Some(slot),
                Err(refusal) => {
                    shard.counters.refused(refusal.code);
                    tracing::info!(%addr, code = %refusal.code, reason = %refusal.message, "TLS connection refused before its handshake");
                    return;
                }
            }
            match tokio::time::timeout_at(deadline, tls.acceptor().accept(tcp)).await {
                Ok(Ok(session)) => Stream::Tls(Box::new(session)),
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let head = match read_first_head(&mut stream, limits.max_http_head_bytes, deadline).await {
        Ok(head) => head,
        Err(HeadError::Closed) => return,
        Err(HeadError::TooLarge) => {
            let refusal = Refusal::head_too_large(limits.max_http_head_bytes);
            shard.counters.refused(refusal.code);
            tracing::info!(%addr, code = %refusal.code, reason = %refusal.message, "request refused");
            let answer = raw_refusal(&refusal);
            let written = tokio::time::timeout_at(deadline, stream.write_all(&answer)).await;
            if matches!(written, Ok(Ok(()))) {
                linger_close(stream, linger).await;
            }
            return;
        }
    };
    serve_http(
        shard,
        HttpIo::new(stream, head, linger),
        addr,
        deadline + linger,
    )
    .await;
}

/// Serve HTTP on one connection until it upgrades, closes or `deadline`
/// passes (slowloris: a client gets `handshake_timeout_ms` in all to
/// upgrade, plus the lingering close after a refusal).
async fn serve_http(shard: Rc<Shard>, io: HttpIo, addr: SocketAddr, deadline: Instant) {
    let limits = &shard.shared.config.limits;
    let handshake = Duration::from_millis(limits.handshake_timeout_ms);
    let head_limit = limits.max_http_head_bytes;
    let service = {
        let shard = shard.clone();
        service_fn(move |req| {
            let shard = shard.clone();
            async move { Ok::<_, Infallible>(route(&shard, addr, req).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake)
        .max_buf_size(head_limit + READ_CHUNK_BYTES)
        .max_header_size(head_limit)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let _ = tokio::time::timeout_at(deadline, connection).await;
}

/// When no API key is configured, the API, metrics and status page answer
/// requests for this machine's names only: a page that rebinds its own DNS
/// name to 127.0.0.1 sends its own `Host`, and is refused.
pub(crate) fn check_local_host<B>(shard: &Shard, req: &Request<B>) -> Result<(), Refusal> {
    if !shard.shared.config.api.keys.is_empty() {
        return Ok(());
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    match host {
        Some(host) if is_loopback_host(&host) => Ok(()),
        host => Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "no API key is configured, so {} answers requests for localhost, 127.0.0.1 \
                 or [::1] only, not Host {:?}",
                req.uri().path(),
                host.unwrap_or_default()
            ),
        )),
    }
}

async fn route(shard: &Rc<Shard>, conn: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let client = shard.shared.edge.client(conn.ip(), req.headers());
    let path = req.uri().path();
    if path.starts_with("/api/") {
        return crate::api::handle(shard, client, req).await;
    }
    if let Some(pusher) = shard.shared.pusher.clone() {
        if path.starts_with("/app/") {
            return match crate::pusher::upgrade::upgrade(shard, &pusher, client, req) {
                Ok(response) => response,
                Err(refusal) => refusal_response(&refusal),
            };
        }
        if path.starts_with("/apps/") {
            return crate::pusher::api::handle(shard, &pusher, req).await;
        }
    }
    let echo_path = &shard.shared.config.server.echo_path;
    let echo = !echo_path.is_empty() && path == echo_path;
    if path == shard.shared.config.server.ws_path || echo {
        return match upgrade(shard, client, req, echo) {
            Ok(response) => response,
            Err(refusal) => {
                shard.counters.refused(refusal.code);
                tracing::info!(%client, %conn, code = %refusal.code, reason = %refusal.message, "connection refused");
                refusal_response(&refusal)
            }
        };
    }
    match (req.method(), path) {
        (&Method::GET, "/metrics" | "/") => {
            if let Err(refusal) = check_local_host(shard, &req) {
                tracing::info!(%client, code = %refusal.code, reason = %refusal.message, "request refused");
                return refusal_response(&refusal);
            }
            if path == "/" {
                status_page()
            } else {
                metrics(shard).await
            }
        }
        (&Method::GET, "/client.js") => client_js(&req),
        (&Method::GET, "/healthz") => respond(StatusCode::OK, JSON, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") => {
            if shard.shared.is_draining() {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    JSON,
                    r#"{"status":"draining"}"#,
                )
            } else {
                respond(StatusCode::OK, JSON, r#"{"status":"ready"}"#)
            }
        }
        _ => refusal_response(&Refusal::new(ErrorCode::NotFound, "no such path")),
    }
}
