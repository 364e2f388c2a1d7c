//! HTTP responses: the one place they are built ([`respond`]), and the
//! one shape of a refusal, `{"error":{"code","message"}}` with the code's
//! HTTP status (PROTOCOL.md section 1), whether hyper sends it or the edge
//! writes it raw before hyper runs.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::error::{ErrorCode, Refusal};
use crate::limits::RETRY_AFTER_SECS;

use super::Body;

/// A refusal as a complete HTTP/1.1 response that closes the connection,
/// for answers the edge writes before hyper runs.
pub(super) fn raw_refusal(refusal: &Refusal) -> Vec<u8> {
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
