//! `/api/rooms`: list, create, details, delete. Every change is an op on
//! the one route, so it is ordered with everything else done to the room.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::error::{ErrorCode, Refusal};
use crate::limits::MAX_ROOM_HISTORY;
use crate::op::{Op, Reply};
use crate::protocol::decode::RoomOptions;
use crate::shard::Shard;

use super::body::{CreateBody, valid_name};
use super::{Body, MAX_LISTED_ROOMS, ask, json_response, refusal};

pub(super) fn list_rooms(shard: &Shard) -> Response<Body> {
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

pub(super) async fn create_room(
    shard: &Shard,
    body: CreateBody,
) -> Result<Response<Body>, Refusal> {
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

pub(super) async fn room_details(shard: &Shard, room: &str) -> Result<Response<Body>, Refusal> {
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

pub(super) async fn delete_room(shard: &Shard, room: &str) -> Result<Response<Body>, Refusal> {
    valid_name("room", room)?;
    let name: Arc<str> = Arc::from(room);
    ask(shard, |reply| Op::Delete { room: name, reply }).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "room": room, "deleted": true }),
    ))
}
