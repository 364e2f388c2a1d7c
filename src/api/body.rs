//! Request bodies: bounded (`api.max_body_bytes`), JSON with no unknown
//! field, names valid and `data` no deeper than `limits.max_json_depth`.
//!
//! **Invariant:** nothing reads more of a body than its bound.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::OverflowPolicy;
use crate::error::{ErrorCode, Refusal};
use crate::protocol::json::shallow;
use crate::protocol::names::is_valid_name;
use crate::shard::Shard;

use super::refusal;

/// Read a bounded JSON body into `T` (unknown fields refused).
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
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

pub(super) fn valid_name(field: &str, value: &str) -> Result<(), Refusal> {
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
pub(super) fn shallow_enough(shard: &Shard, data: &RawValue) -> Result<(), Refusal> {
    shallow(
        "data",
        data.get().as_bytes(),
        shard.shared.config.limits.max_json_depth,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    pub(super) room: String,
    pub(super) max_members: Option<u32>,
    pub(super) private: Option<bool>,
    pub(super) history: Option<usize>,
    pub(super) overflow: Option<OverflowPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishBody {
    pub(super) room: String,
    pub(super) data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifyBody {
    pub(super) user: String,
    pub(super) data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastBody {
    pub(super) data: Box<RawValue>,
}
