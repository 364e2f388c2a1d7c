//! The native protocol's WebSocket upgrade: its query (`v`, dev-mode
//! identity), the token, the origin, and the hand-over of the upgraded
//! socket to [`crate::shard::conn`].
//!
//! **Invariant:** every check (version, origin, token, caps) happens before
//! the `101`, so a refused client gets plain HTTP with a JSON body.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

use crate::edge::stream::{HttpIo, Stream};
use crate::error::{ErrorCode, Refusal};
use crate::protocol::names::{is_valid_display_name, is_valid_name};
use crate::shard::Shard;
use crate::shard::conn::{self, Identity};

use super::{Body, SYSTEM_USER};

/// The wire protocol version this server speaks (`/ws?v=1`).
pub(crate) const PROTOCOL_VERSION: &str = "1";

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

pub(super) fn upgrade(
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
