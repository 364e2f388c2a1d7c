//! The HTTP API under `/api` (PROTOCOL.md section 4): rooms, publish,
//! notify, broadcast, kick, stats. Served by the same listeners as `/ws`.
//!
//! Every request is authorized first (an API key, or loopback when none is
//! configured), its body is bounded (`api.max_body_bytes`) and must be
//! JSON; every refusal has the `{"error":{"code","message"}}` shape. It is a
//! front door like the WebSocket protocol: room operations become
//! [`Op`]s on the one route ([`Shard::route`]), so they are ordered with
//! everything else that happens to the room, whichever back end runs it.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::config::OverflowPolicy;
use crate::delivery::Delivery;
use crate::error::{ErrorCode, Refusal};
use crate::limits::{MAX_ROOM_HISTORY, MAX_SHARDS};
use crate::op::{Audience, Op, Publish, Reply, UserFrame};
use crate::placement::shard_of;
use crate::protocol::decode::RoomOptions;
use crate::protocol::encode;
use crate::protocol::json::shallow;
use crate::protocol::names::is_valid_name;
use crate::server::{JSON, SYSTEM_USER, check_local_host, refusal_response, respond};
use crate::shard::Shard;

type Body = Full<Bytes>;

/// Most rooms `GET /api/rooms` lists.
pub(crate) const MAX_LISTED_ROOMS: usize = 10_000;

/// How long the API waits for shards to answer before giving up (`internal`).
const SHARD_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve one `/api/*` request.
pub(crate) async fn handle(
    shard: &Rc<Shard>,
    client: IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match route(shard, client, req).await {
        Ok(response) => response,
        Err(refusal) => {
            tracing::info!(%client, %method, %path, code = %refusal.code, reason = %refusal.message, "api request refused");
            refusal_response(&refusal)
        }
    }
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

async fn route(
    shard: &Rc<Shard>,
    client: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    authorize(shard, client, &req)?;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path
        .strip_prefix("/api/")
        .unwrap_or("")
        .split('/')
        .collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["rooms"]) => Ok(list_rooms(shard)),
        (&Method::POST, ["rooms"]) => {
            let body: CreateBody = read_json(shard, req).await?;
            create_room(shard, body).await
        }
        (&Method::GET, ["rooms", room]) => room_details(shard, room).await,
        (&Method::DELETE, ["rooms", room]) => delete_room(shard, room).await,
        (&Method::POST, ["publish"]) => {
            let body: PublishBody = read_json(shard, req).await?;
            publish(shard, body).await
        }
        (&Method::POST, ["notify"]) => {
            let body: NotifyBody = read_json(shard, req).await?;
            valid_name("user", &body.user)?;
            let user: Arc<str> = Arc::from(body.user.as_str());
            let delivered = notify(shard, Audience::User(user), &body.data).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "delivered": delivered }),
            ))
        }
        (&Method::POST, ["broadcast"]) => {
            let body: BroadcastBody = read_json(shard, req).await?;
            let delivered = notify(shard, Audience::All, &body.data).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "delivered": delivered }),
            ))
        }
        (&Method::DELETE, ["connections", conn]) => kick(shard, conn).await,
        (&Method::GET, ["connections", conn]) => connection_details(shard, conn).await,
        (&Method::GET, ["stats"]) => stats(shard).await,
        _ => Err(refusal(
            ErrorCode::NotFound,
            format!("no API endpoint {method} {path}"),
        )),
    }
}

/// API keys compared in constant time; without keys, loopback clients
/// asking for a loopback `Host` only. `client` is the resolved address
/// (PROXY protocol, trusted proxies), so a request relayed by a proxy on
/// this machine is not a loopback client.
fn authorize<B>(shard: &Shard, client: IpAddr, req: &Request<B>) -> Result<(), Refusal> {
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

/// Read a bounded JSON body into `T` (unknown fields refused).
async fn read_json<T: serde::de::DeserializeOwned>(
    shard: &Shard,
    req: Request<Incoming>,
) -> Result<T, Refusal> {
    let json_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(refusal(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON with `Content-Type: application/json`",
        ));
    }
    let body = read_body(shard, req).await?;
    serde_json::from_slice(&body)
        .map_err(|e| refusal(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

/// The request's body, at most `api.max_body_bytes` (`payload_too_large`
/// beyond).
pub(crate) async fn read_body(shard: &Shard, req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let max = shard.shared.config.api.max_body_bytes;
    let too_large = || {
        refusal(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than api.max_body_bytes ({max} bytes)"),
        )
    };
    // A declared length over the limit is refused before the body is
    // polled, so a client that sent `Expect: 100-continue` gets the 413
    // instead of `100 Continue` (hyper sends that at the first poll). The
    // body left unread is drained by the lingering close.
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                refusal(ErrorCode::BadRequest, format!("cannot read the body: {e}"))
            }
        })?;
    Ok(body.to_bytes())
}

fn valid_name(field: &str, value: &str) -> Result<(), Refusal> {
    if is_valid_name(value) {
        Ok(())
    } else {
        Err(refusal(
            ErrorCode::BadRequest,
            format!("`{field}` must be 1-128 bytes of [A-Za-z0-9_.:@-]"),
        ))
    }
}

/// `data` of a body nests no deeper than `limits.max_json_depth` (serde
/// keeps it as raw text without a recursion limit).
fn shallow_enough(shard: &Shard, data: &RawValue) -> Result<(), Refusal> {
    shallow(
        "data",
        data.get().as_bytes(),
        shard.shared.config.limits.max_json_depth,
    )
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(status, JSON, value.to_string())
}

fn gone() -> Refusal {
    refusal(
        ErrorCode::Internal,
        "a shard did not answer (shutting down?)",
    )
}

/// Route the op `make` builds around a reply channel, and wait for the
/// answer of whichever back end runs it.
async fn ask<T>(
    shard: &Shard,
    make: impl FnOnce(oneshot::Sender<Result<T, Refusal>>) -> Op,
) -> Result<T, Refusal> {
    let (tx, rx) = oneshot::channel();
    shard.route(make(tx)).await;
    match tokio::time::timeout(SHARD_REPLY_TIMEOUT, rx).await {
        Ok(Ok(result)) => result,
        _ => Err(gone()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    room: String,
    max_members: Option<u32>,
    private: Option<bool>,
    history: Option<usize>,
    overflow: Option<OverflowPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    room: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyBody {
    user: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody {
    data: Box<RawValue>,
}

fn list_rooms(shard: &Shard) -> Response<Body> {
    let total = shard.shared.rooms.len();
    let rooms: Vec<Value> = shard
        .shared
        .rooms
        .snapshot(MAX_LISTED_ROOMS)
        .into_iter()
        .map(|(name, meta)| {
            json!({
                "room": &*name,
                "members": meta.members.load(std::sync::atomic::Ordering::Relaxed),
                "seq": meta.seq.load(std::sync::atomic::Ordering::Relaxed),
                "private": meta.private,
                "max_members": meta.max_members,
            })
        })
        .collect();
    let mut response = json_response(StatusCode::OK, &Value::Array(rooms));
    // The body is an array (the contract); say how many rooms there are
    // when the list was cut.
    response
        .headers_mut()
        .insert("x-shardcast-rooms-total", HeaderValue::from(total));
    response
}

async fn create_room(shard: &Shard, body: CreateBody) -> Result<Response<Body>, Refusal> {
    valid_name("room", &body.room)?;
    if body.max_members == Some(0) {
        return Err(refusal(
            ErrorCode::BadRequest,
            "`max_members` must be at least 1",
        ));
    }
    if body.history.is_some_and(|h| h > MAX_ROOM_HISTORY) {
        return Err(refusal(
            ErrorCode::BadRequest,
            format!("`history` must be at most {MAX_ROOM_HISTORY}"),
        ));
    }
    let options = RoomOptions {
        max_members: body.max_members,
        private: body.private,
        history: body.history,
        overflow: body.overflow,
    };
    let room: Arc<str> = Arc::from(body.room.as_str());
    ask(shard, |tx| Op::Create {
        room,
        options,
        creator: None,
        reply: Reply::Api(tx),
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "room": body.room }),
    ))
}

async fn room_details(shard: &Shard, room: &str) -> Result<Response<Body>, Refusal> {
    valid_name("room", room)?;
    let room: Arc<str> = Arc::from(room);
    let details = ask(shard, |reply| Op::Details { room, reply }).await?;
    let body = serde_json::to_value(details).map_err(|e| {
        refusal(
            ErrorCode::Internal,
            format!("cannot encode the room's details: {e}"),
        )
    })?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn delete_room(shard: &Shard, room: &str) -> Result<Response<Body>, Refusal> {
    valid_name("room", room)?;
    let name: Arc<str> = Arc::from(room);
    ask(shard, |reply| Op::Delete { room: name, reply }).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "room": room, "deleted": true }),
    ))
}

async fn publish(shard: &Shard, body: PublishBody) -> Result<Response<Body>, Refusal> {
    valid_name("room", &body.room)?;
    shallow_enough(shard, &body.data)?;
    let publish = |tx| {
        Op::Publish(Publish {
            room: Arc::from(body.room.as_str()),
            from: Arc::from(SYSTEM_USER),
            data: Bytes::copy_from_slice(body.data.get().as_bytes()),
            event: None,
            exclude: None,
            privileged: true,
            reply: Reply::Api(tx),
        })
    };
    let seq = ask(shard, publish).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "room": body.room, "seq": seq }),
    ))
}

/// Send a `notification` to `audience` on every node; returns how many
/// connections of this node got it.
async fn notify(shard: &Shard, audience: Audience, data: &RawValue) -> Result<usize, Refusal> {
    shallow_enough(shard, data)?;
    let data = data.get();
    let frame = encode::notification(encode::now_ms(), data.as_bytes());
    let (counted, mut counts) = mpsc::channel(MAX_SHARDS);
    let op = Op::ToUsers {
        audience,
        frame: UserFrame::Frame(frame),
        counted: Some(counted),
    };
    shard.route(op).await;
    // Each shard that got the frame reports its count and lets go of its
    // sender: the channel ends when every one has answered.
    let all_counted = async {
        let mut delivered = 0;
        while let Some(n) = counts.recv().await {
            delivered += n;
        }
        delivered
    };
    tokio::time::timeout(SHARD_REPLY_TIMEOUT, all_counted)
        .await
        .map_err(|_| gone())
}

/// Ask the shard of connection `conn` (a decimal id) a question `make`
/// builds around a reply channel; `None` from it means no such connection.
async fn ask_conn_shard<T>(
    shard: &Shard,
    conn: &str,
    make: impl FnOnce(u64, oneshot::Sender<Option<T>>) -> Delivery,
) -> Result<(u64, T), Refusal> {
    let id = conn
        .parse::<u64>()
        .map_err(|_| refusal(ErrorCode::BadRequest, "the connection id must be a number"))?;
    let (tx, rx) = oneshot::channel();
    shard
        .deliver(shard_of(id, shard.shared.shards()), make(id, tx))
        .await;
    match tokio::time::timeout(SHARD_REPLY_TIMEOUT, rx).await {
        Ok(Ok(Some(answer))) => Ok((id, answer)),
        Ok(Ok(None)) => Err(refusal(ErrorCode::NotFound, format!("no connection {id}"))),
        _ => Err(gone()),
    }
}

/// `GET /api/connections/{conn}`: who a connection of this node is, and
/// from where.
async fn connection_details(shard: &Shard, conn: &str) -> Result<Response<Body>, Refusal> {
    let (_, details) = ask_conn_shard(shard, conn, |conn, done| Delivery::ConnDetails {
        conn,
        done,
    })
    .await?;
    let body = serde_json::to_value(details).map_err(|e| {
        refusal(
            ErrorCode::Internal,
            format!("cannot encode the connection: {e}"),
        )
    })?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn kick(shard: &Shard, conn: &str) -> Result<Response<Body>, Refusal> {
    let (id, ()) = ask_conn_shard(shard, conn, |conn, done| Delivery::Kick { conn, done }).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "conn": id, "disconnected": true }),
    ))
}

/// Every shard's figures, in shard order.
pub(crate) async fn gather_stats(shard: &Shard) -> Result<Vec<crate::shard::ShardStats>, Refusal> {
    let shards = shard.shared.shards();
    let (done, mut figures) = mpsc::channel(MAX_SHARDS);
    for target in 0..shards {
        shard
            .deliver(target, Delivery::Stats { done: done.clone() })
            .await;
    }
    drop(done);
    let mut per_shard = Vec::with_capacity(shards);
    for _ in 0..shards {
        match tokio::time::timeout(SHARD_REPLY_TIMEOUT, figures.recv()).await {
            Ok(Some(s)) => per_shard.push(s),
            _ => return Err(gone()),
        }
    }
    per_shard.sort_by_key(|s| s.shard);
    Ok(per_shard)
}

async fn stats(shard: &Shard) -> Result<Response<Body>, Refusal> {
    let per_shard = gather_stats(shard).await?;
    let shared = &shard.shared;
    let namespaces: Vec<Value> = shared
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, (prefix, rules))| {
            json!({
                "prefix": &**prefix,
                "options": rules,
                "invalid_data": shared.schemas.refused(Some(i)),
            })
        })
        .collect();
    let body = json!({
        "node": shard.shared.config.server.node_id,
        "connections": shard.shared.caps.total(),
        "rooms": shard.shared.rooms.len(),
        "users": shard.shared.users.len(),
        "draining": shard.shared.is_draining(),
        "namespaces": namespaces,
        "shards": per_shard,
    });
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
