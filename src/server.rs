//! Listeners, the HTTP side of a shard (health, refusals, the upgrade) and
//! the hand-over of upgraded sockets to [`crate::shard::conn`].
//!
//! Every refusal happens here, before the upgrade, as plain HTTP with a JSON
//! body `{"error":{"code","message"}}` (PROTOCOL.md section 1).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
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
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::edge::stream::{HttpIo, Stream, linger_close};
use crate::edge::{HeadError, is_loopback_host, read_first_head};
use crate::error::{ErrorCode, Refusal};
use crate::limits::{READ_CHUNK_BYTES, RETRY_AFTER_SECS};
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

/// A refusal as a complete HTTP/1.1 response that closes the connection,
/// for answers the edge writes before hyper runs.
fn raw_refusal(refusal: &Refusal) -> Vec<u8> {
    let body = refusal_body(refusal);
    let status =
        StatusCode::from_u16(refusal.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {JSON}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
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

/// The status page, built into the binary (no build step). It reads
/// `/api/stats`, so it shows figures only to whoever may read the API.
const STATUS_PAGE: &str = include_str!("status/index.html");

fn status_page() -> Response<Body> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE);
    response.headers_mut().insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'",
        ),
    );
    response
}

/// The JavaScript client SDK (`clients/js`), as the ES module its build
/// committed in `clients/js/dist/`, so serving it needs no Node at build
/// time. A test fails when that file is stale against the TypeScript
/// sources (clients/js/README.md, "How the broker serves it").
const CLIENT_JS: &str = include_str!("../clients/js/dist/shardcast-client.js");

/// How long browsers may reuse `/client.js` without asking again. The
/// `ETag` (the sources' hash) makes the revalidation after that cheap.
const CLIENT_JS_CACHE_CONTROL: &str = "public, max-age=300";

/// `GET /client.js`: the browser module of the client SDK.
fn client_js<B>(req: &Request<B>) -> Response<Body> {
    let etag = client_js_etag();
    let fresh = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        respond(
            StatusCode::NOT_MODIFIED,
            "text/javascript; charset=utf-8",
            "",
        )
    } else {
        respond(StatusCode::OK, "text/javascript; charset=utf-8", CLIENT_JS)
    };
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static(CLIENT_JS_CACHE_CONTROL),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(hyper::header::ETAG, value);
    }
    response
}

/// `"<source-hash>"`, read from the bundle's first line
/// (`// shardcast-client X (source-hash H). ...`).
fn client_js_etag() -> String {
    let hash = CLIENT_JS
        .split_once("(source-hash ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("unknown", |(hash, _)| hash);
    format!("\"{hash}\"")
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
                crate::schema::invalid_data_counts(&shard.shared.namespaces, &shard.shared.schemas),
                crate::pusher::webhook::figures(&shard.shared),
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

/// The JSON body of a refusal.
fn refusal_body(refusal: &Refusal) -> String {
    serde_json::json!({
        "error": { "code": refusal.code.as_str(), "message": refusal.message }
    })
    .to_string()
}

/// The HTTP response for a refusal.
pub(crate) fn refusal_response(refusal: &Refusal) -> Response<Body> {
    let status =
        StatusCode::from_u16(refusal.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = respond(status, JSON, refusal_body(refusal));
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

/// A browser upgrade whose `Origin` is not in `server.allowed_origins`.
pub(crate) fn check_origin<B>(shard: &Shard, req: &Request<B>) -> Result<(), Refusal> {
    let Some(origin) = req.headers().get(hyper::header::ORIGIN) else {
        return Ok(()); // not a browser: nothing to check
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    if shard.shared.edge.origin_allowed(&origin) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::Forbidden,
        format!("origin {origin:?} is not in server.allowed_origins"),
    ))
}

fn upgrade(
    shard: &Rc<Shard>,
    client: IpAddr,
    mut req: Request<Incoming>,
    echo: bool,
) -> Result<Response<Body>, Refusal> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Err(bad_request("not a WebSocket upgrade request"));
    }
    let params = parse_query(req.uri().query())?;
    // Refusals in PROTOCOL.md's order: a bad upgrade (400), the origin and
    // credentials (401/403), then caps (429/503).
    let (mut response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req)
        .map_err(|e| bad_request(format!("invalid WebSocket upgrade: {e}")))?;
    check_origin(shard, &req)?;
    let deflate = if shard.shared.config.server.compression {
        let offers = req
            .headers()
            .get_all(hyper::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        crate::ws::deflate::negotiate(offers).and_then(|(deflate, answer)| {
            let value = HeaderValue::from_str(&answer).ok()?;
            response
                .headers_mut()
                .insert(hyper::header::SEC_WEBSOCKET_EXTENSIONS, value);
            Some(deflate)
        })
    } else {
        None
    };
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
    let permit = shard.shared.admit(shard.index, client, &user)?;
    let identity = Identity {
        addr: client,
        id,
        user,
        name: name.map(Arc::from),
        perms: grant.perms,
        rooms: grant.rooms,
        expires_at: grant.expires_at,
        echo,
        deflate,
        protocol: conn::Protocol::Native,
    };
    let shard = shard.clone();
    tokio::task::spawn_local(async move {
        if let Some((stream, prefix)) = upgraded(upgrade).await {
            // A task of its own: this one, which held the upgrade, ends
            // here and gives its memory back.
            tokio::task::spawn_local(conn::serve(shard, identity, stream, prefix, permit));
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}

/// Wait for an accepted upgrade to complete: the edge's stream, and the
/// bytes the client sent after its upgrade request (already read by
/// hyper), or `None` if the upgrade did not complete.
pub(crate) async fn upgraded(
    upgrade: fastwebsockets::upgrade::UpgradeFut,
) -> Option<(Stream, Bytes)> {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return None;
        }
    };
    let Ok(parts) = ws.into_inner().into_inner().downcast::<TokioIo<HttpIo>>() else {
        tracing::error!("upgraded connection is not the edge's stream");
        return None;
    };
    let (stream, unread) = parts.io.into_inner().into_parts();
    // hyper read its buffer from the front of the prefix; what it left of
    // the prefix comes after.
    let prefix = if unread.is_empty() {
        // An empty `unread` still holds the whole head buffer (4 KiB): let
        // it go now, not when the connection ends.
        drop(unread);
        parts.read_buf
    } else {
        [parts.read_buf, unread].concat().into()
    };
    Some((stream, prefix))
}
