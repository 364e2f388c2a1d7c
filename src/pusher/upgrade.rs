//! The Pusher WebSocket endpoint's upgrade: `GET /app/{key}?protocol=7`.
//!
//! pusher-js cannot read an HTTP refusal, so every refusal (unknown key,
//! protocol version, capacity, drain) happens after the upgrade, as the
//! protocol documents: a `pusher:error` with the code, then a close frame
//! with the same code (4001, 4006-4008: do not reconnect; 4100: reconnect
//! with backoff; 4200: reconnect now). Only a request that is not a
//! WebSocket upgrade gets a plain HTTP 400.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Pusher;
use super::wire::{self, codes};
use crate::auth::RoomPatterns;
use crate::edge::stream::{HttpIo, Stream};
use crate::error::{ErrorCode, Refusal};
use crate::perms::Perms;
use crate::shard::Shard;
use crate::shard::conn::pusher::PusherConn;
use crate::shard::conn::{self, Identity, Protocol};

type Body = Full<Bytes>;

/// The lowest protocol version served.
pub(crate) const MIN_PROTOCOL: u32 = 7;

/// How long a refused connection waits for the client's close.
const REFUSAL_CLOSE_WAIT_MS: u64 = 2_000;

/// Why the endpoint refuses a connection: a Pusher close code and why.
struct Refused(u16, String);

/// Upgrade `req` (path `/app/{key}`) to a Pusher connection, or to a
/// refusal said over the WebSocket.
pub(crate) fn upgrade(
    shard: &Rc<Shard>,
    pusher: &Arc<Pusher>,
    client: IpAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "not a WebSocket upgrade request (Pusher clients connect to /app/{key}?protocol=7)",
        ));
    }
    let key = req
        .uri()
        .path()
        .strip_prefix("/app/")
        .unwrap_or("")
        .to_string();
    let version = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned())
    });
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req).map_err(|e| {
        Refusal::new(
            ErrorCode::BadRequest,
            format!("invalid WebSocket upgrade: {e}"),
        )
    })?;
    // A browser page from an origin the edge does not allow is refused
    // before the upgrade, like on the native endpoint.
    crate::server::check_origin(shard, &req)?;
    let admitted = admit(shard, pusher, client, &key, version.as_deref());
    let shard = shard.clone();
    tokio::task::spawn_local(async move {
        let ws = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "pusher upgrade did not complete");
                return;
            }
        };
        let Ok(parts) = ws.into_inner().into_inner().downcast::<TokioIo<HttpIo>>() else {
            return tracing::error!("upgraded connection is not the edge's stream");
        };
        let (stream, unread) = parts.io.into_inner().into_parts();
        // hyper read its buffer from the front of the prefix; what it left
        // of the prefix comes after.
        let prefix = if unread.is_empty() {
            parts.read_buf
        } else {
            [parts.read_buf, unread].concat().into()
        };
        match admitted {
            Ok((identity, permit)) => {
                conn::serve(shard, identity, stream, prefix, permit).await;
            }
            Err(Refused(code, why)) => {
                tracing::info!(%client, code, reason = %why, "pusher connection refused");
                refuse(stream, code, &why).await;
            }
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}

/// Decide whether a connection to app `key` speaking `version` is taken.
fn admit(
    shard: &Rc<Shard>,
    pusher: &Pusher,
    client: IpAddr,
    key: &str,
    version: Option<&str>,
) -> Result<(Identity, crate::shared::Permit), Refused> {
    if key.is_empty() || key.contains('/') {
        return Err(Refused(
            codes::PATH_NOT_FOUND,
            "path not found: Pusher clients connect to /app/{key}".into(),
        ));
    }
    let Some(app) = pusher.by_key(key) else {
        return Err(Refused(
            codes::APP_UNKNOWN,
            format!("App key {key} does not exist"),
        ));
    };
    let version = match version {
        None => {
            return Err(Refused(
                codes::NO_VERSION,
                "no protocol version supplied (connect with ?protocol=7)".into(),
            ));
        }
        Some(v) => v.parse::<u32>().map_err(|_| {
            Refused(
                codes::INVALID_VERSION,
                format!("invalid protocol version {v:?}"),
            )
        })?,
    };
    if version < MIN_PROTOCOL {
        return Err(Refused(
            codes::UNSUPPORTED_VERSION,
            format!("unsupported protocol version {version}; this server speaks 7"),
        ));
    }
    let id = shard.next_conn_id();
    let user: Arc<str> = Arc::from(format!("~pusher-{id}"));
    let permit = shard
        .shared
        .admit(shard.index, client, &user)
        .map_err(|r| {
            let code = if shard.shared.is_draining() {
                codes::RECONNECT
            } else {
                codes::OVER_CAPACITY
            };
            Refused(code, r.message)
        })?;
    let state = PusherConn::new(app.clone(), id, &pusher.config);
    let identity = Identity {
        addr: client,
        id,
        user,
        name: None,
        perms: Perms::default(),
        rooms: RoomPatterns::default(),
        expires_at: None,
        echo: false,
        // Not negotiated: Pusher connections are written uncompressed.
        deflate: None,
        protocol: Protocol::Pusher(Box::new(state)),
    };
    Ok((identity, permit))
}

/// Say why over the upgraded socket (`pusher:error`, then a close frame
/// with the same code), and wait a little for the client's close.
async fn refuse(mut stream: Stream, code: u16, why: &str) {
    let mut out = wire::error(Some(code), why).to_vec();
    out.extend_from_slice(&crate::ws::encode::close_frame(code, why));
    let wait = Duration::from_millis(REFUSAL_CLOSE_WAIT_MS);
    if tokio::time::timeout(wait, stream.write_all(&out))
        .await
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(wait, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
