//! The HTTP API under `/api` (PROTOCOL.md section 4): rooms, publish,
//! notify, broadcast, kick, stats. Served by the same listeners as `/ws`.
//!
//! Every request is authorized first (an API key, or loopback when none is
//! configured), its body is bounded (`api.max_body_bytes`) and must be
//! JSON; every refusal has the `{"error":{"code","message"}}` shape. It is a
//! front door like the WebSocket protocol: room operations become
//! [`Op`]s on the one route ([`Shard::route`]), so they are ordered with
//! everything else that happens to the room, whichever back end runs it.
//!
//! Here: the router and how an answer is awaited ([`ask`]). Who may ask is
//! [`access`]; bodies are [`body`]; the endpoints are [`rooms`],
//! [`messages`], [`connections`] and [`stats`](mod@stats).

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::error::{ErrorCode, Refusal};
use crate::op::{Audience, Op};
use crate::server::{JSON, refusal_response, respond};
use crate::shard::Shard;

mod access;
mod body;
mod connections;
mod messages;
mod rooms;
mod stats;

use access::authorize;
pub(crate) use access::constant_time_eq;
pub(crate) use body::read_body;
use body::{BroadcastBody, CreateBody, NotifyBody, PublishBody, read_json, valid_name};
use connections::{connection_details, kick};
use messages::{notify, publish};
use rooms::{create_room, delete_room, list_rooms, room_details};
pub(crate) use stats::gather_stats;
use stats::stats;

type Body = Full<Bytes>;

/// Most rooms `GET /api/rooms` lists.
pub(crate) const MAX_LISTED_ROOMS: usize = 10_000;

/// How long the API waits for shards to answer before giving up (`internal`).
pub(super) const SHARD_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

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

pub(super) fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
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

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(status, JSON, value.to_string())
}

pub(super) fn gone() -> Refusal {
    refusal(
        ErrorCode::Internal,
        "a shard did not answer (shutting down?)",
    )
}

/// Route the op `make` builds around a reply channel, and wait for the
/// answer of whichever back end runs it (also for the Pusher HTTP API).
pub(crate) async fn ask<T>(
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
