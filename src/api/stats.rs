//! `/api/stats`: every shard's figures (also behind `/metrics`), gathered
//! through the delivery inboxes, and the node's totals.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::delivery::Delivery;
use crate::error::Refusal;
use crate::limits::MAX_SHARDS;
use crate::shard::Shard;

use super::{Body, SHARD_REPLY_TIMEOUT, gone, json_response};

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

pub(super) async fn stats(shard: &Shard) -> Result<Response<Body>, Refusal> {
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
