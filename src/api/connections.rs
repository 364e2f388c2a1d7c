//! `/api/connections/{conn}`: a connection of this node, asked of the
//! shard that holds it (details, kick).

use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::oneshot;

use crate::delivery::Delivery;
use crate::error::{ErrorCode, Refusal};
use crate::placement::shard_of;
use crate::shard::Shard;

use super::{Body, SHARD_REPLY_TIMEOUT, gone, json_response, refusal};

/// Ask the shard of connection `conn` (a decimal id) a question `make`
/// builds around a reply channel; `None` from it means no such connection.
pub(super) async fn ask_conn_shard<T>(
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
pub(super) async fn connection_details(
    shard: &Shard,
    conn: &str,
) -> Result<Response<Body>, Refusal> {
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

pub(super) async fn kick(shard: &Shard, conn: &str) -> Result<Response<Body>, Refusal> {
    let (id, ()) = ask_conn_shard(shard, conn, |conn, done| Delivery::Kick { conn, done }).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "conn": id, "disconnected": true }),
    ))
}
