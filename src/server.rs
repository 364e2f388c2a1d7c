//! Listeners, the HTTP side of a shard (health, refusals, the upgrade) and
//! the hand-over of upgraded sockets to [`crate::shard::conn`].
//!
//! Every refusal happens here, before the upgrade, as plain HTTP with a JSON
//! body `{"error":{"code","message"}}` (PROTOCOL.md section 1).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{ErrorCode, Refusal};
use crate::limits::RETRY_AFTER_SECS;
use crate::protocol::names::{is_valid_display_name, is_valid_name};
use crate::shard::Shard;
use crate::shard::conn::{self, Identity};

type Body = Full<Bytes>;

/// The wire protocol version this server speaks (`/ws?v=1`).
pub(crate) const PROTOCOL_VERSION: &str = "1";

/// The user id of messages from the server itself (`from` of API publishes).
pub const SYSTEM_USER: &str = "system";

/// Pause after a failed accept (out of file descriptors, ...), so the
/// accept loop does not spin.
const ACCEPT_BACKOFF_MS: u64 = 50;

/// Largest HTTP request head hyper buffers (upgrade requests with a token
/// fit easily; larger heads are refused by hyper).
const MAX_HTTP_HEAD_BYTES: usize = 16 * 1024;

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
                tokio::task::spawn_local(serve_http(shard.clone(), stream, peer));
            }
            Err(e) => {
                // Out of file descriptors or similar: back off, don't spin.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
            }
        }
    }
}

/// Serve HTTP on one socket until it upgrades, closes or times out.
async fn serve_http(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let handshake = Duration::from_millis(shard.shared.config.limits.handshake_timeout_ms);
    let service = {
        let shard = shard.clone();
        service_fn(move |req| {
            let shard = shard.clone();
            async move { Ok::<_, Infallible>(route(&shard, peer, req).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake)
        .max_buf_size(MAX_HTTP_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    // Slowloris: a client gets `handshake_timeout_ms` in all to upgrade.
    let _ = tokio::time::timeout(handshake, connection).await;
}

async fn route(shard: &Rc<Shard>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        return crate::api::handle(shard, peer, req).await;
    }
    let echo_path = &shard.shared.config.server.echo_path;
    let echo = !echo_path.is_empty() && path == echo_path;
    if path == shard.shared.config.server.ws_path || echo {
        return match upgrade(shard, peer, req, echo) {
            Ok(response) => response,
            Err(refusal) => {
                shard.counters.refused(refusal.code);
                tracing::info!(%peer, code = %refusal.code, reason = %refusal.message, "connection refused");
                refusal_response(&refusal)
            }
        };
    }
    match (req.method(), path) {
        (&Method::GET, "/metrics") => metrics(shard).await,
        (&Method::GET, "/") => status_page(),
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

/// The status page, built into the binary (no build step). It reads
/// `/api/stats`, so it shows figures only to whoever may read the API.
const STATUS_PAGE: &str = include_str!("status/index.html");

fn status_page() -> Response<Body> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE);
    response.headers_mut().insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ),
    );
    response
}

/// `GET /metrics`: every shard's counters, summed by Prometheus labels.
async fn metrics(shard: &Rc<Shard>) -> Response<Body> {
    let text = match crate::api::gather_stats(shard).await {
        Ok(stats) => crate::metrics::render(
            &stats,
            &crate::metrics::process_figures(
                shard.shared.rooms.len(),
                shard.shared.memory.figures(),
                shard.shared.backend.remote_counters(),
            ),
        ),
        Err(refusal) => return refusal_response(&refusal),
    };
    respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        text,
    )
}

/// Content type of JSON bodies.
pub(crate) const JSON: &str = "application/json";

/// A response with `status`, a `Content-Type` and `body`: the one place
/// HTTP responses are built.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The HTTP response for a refusal.
pub(crate) fn refusal_response(refusal: &Refusal) -> Response<Body> {
    let body = serde_json::json!({
        "error": { "code": refusal.code.as_str(), "message": refusal.message }
    });
    let status =
        StatusCode::from_u16(refusal.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = respond(status, JSON, body.to_string());
    if matches!(
        refusal.code,
        ErrorCode::ServerFull | ErrorCode::OverMemoryBudget
    ) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// The token of an `Authorization: Bearer <token>` header, if any.
fn bearer_token<B>(req: &Request<B>) -> Option<&str> {
    let value = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::BadRequest, message)
}

/// Query parameters of the upgrade request (dev-mode identity).
#[derive(Default)]
struct ConnectParams {
    user: Option<String>,
    name: Option<String>,
    token: Option<String>,
}

fn parse_query(query: Option<&str>) -> Result<ConnectParams, Refusal> {
    let mut params = ConnectParams::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "user" => {
                if !is_valid_name(&value) {
                    return Err(bad_request(
                        "`user` must be 1-128 bytes of [A-Za-z0-9_.:@-]",
                    ));
                }
                if value == SYSTEM_USER {
                    return Err(bad_request(
                        "the user id `system` is reserved for messages from the server",
                    ));
                }
                params.user = Some(value.into_owned());
            }
            "name" => {
                if !is_valid_display_name(&value) {
                    return Err(bad_request(
                        "`name` must be at most 256 bytes without control characters",
                    ));
                }
                params.name = Some(value.into_owned());
            }
            "token" => params.token = Some(value.into_owned()),
            "v" if value != PROTOCOL_VERSION => {
                return Err(bad_request(format!(
                    "unsupported protocol version {value:?}; this server speaks v={PROTOCOL_VERSION}"
                )));
            }
            _ => {}
        }
    }
    Ok(params)
}

fn upgrade(
    shard: &Rc<Shard>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    echo: bool,
) -> Result<Response<Body>, Refusal> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Err(bad_request("not a WebSocket upgrade request"));
    }
    let params = parse_query(req.uri().query())?;
    // Refusals in PROTOCOL.md's order: a bad upgrade (400), credentials
    // (401/403), then caps (429/503).
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)
        .map_err(|e| bad_request(format!("invalid WebSocket upgrade: {e}")))?;
    let token = bearer_token(&req).or(params.token.as_deref());
    let grant = shard.shared.auth.authenticate(token)?;
    let id = shard.next_conn_id();
    let (user, name): (Arc<str>, Option<String>) = match grant.user {
        Some(sub) => (Arc::from(sub), grant.name),
        None => match params.user {
            Some(user) => (Arc::from(user), params.name),
            None => (Arc::from(format!("anon-{id}")), params.name),
        },
    };
    let permit = shard.shared.admit(shard.index, peer.ip(), &user)?;
    let identity = Identity {
        id,
        user,
        name: name.map(Arc::from),
        perms: grant.perms,
        rooms: grant.rooms,
        expires_at: grant.expires_at,
        echo,
    };
    let shard = shard.clone();
    tokio::task::spawn_local(async move {
        let ws = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let upgraded = ws.into_inner().into_inner();
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                conn::serve(
                    shard,
                    identity,
                    parts.io.into_inner(),
                    parts.read_buf,
                    permit,
                )
                .await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}
