//! `/api/publish`, `/api/notify`, `/api/broadcast`: messages from the
//! system user to a room, a user or everyone, as ops on the one route.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::error::Refusal;
use crate::limits::MAX_SHARDS;
use crate::op::{Audience, Op, Publish, Reply, UserFrame};
use crate::protocol::encode;
use crate::server::SYSTEM_USER;
use crate::shard::Shard;

use super::body::{PublishBody, shallow_enough, valid_name};
use super::{Body, SHARD_REPLY_TIMEOUT, ask, gone, json_response};

pub(super) async fn publish(shard: &Shard, body: PublishBody) -> Result<Response<Body>, Refusal> {
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
pub(super) async fn notify(
    shard: &Shard,
    audience: Audience,
    data: &RawValue,
) -> Result<usize, Refusal> {
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
