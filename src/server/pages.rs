//! What the broker serves over plain HTTP besides its protocols: the
//! status page, the JavaScript client (`/client.js`) and the Prometheus
//! metrics. The caller ([`super::route`]) checks the `Host` rule first
//! where it applies.

use std::rc::Rc;

use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use crate::shard::Shard;

use super::Body;
use super::responses::{refusal_response, respond};

/// The status page, built into the binary (no build step). It reads
/// `/api/stats`, so it shows figures only to whoever may read the API.
const STATUS_PAGE: &str = include_str!("../status/index.html");

pub(super) fn status_page() -> Response<Body> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE);
    response.headers_mut().insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'",
        ),
    );
    response
}

/// The JavaScript client SDK (`clients/js`), as the ES module its build
/// committed in `clients/js/dist/`, so serving it needs no Node at build
/// time. A test fails when that file is stale against the TypeScript
/// sources (clients/js/README.md, "How the broker serves it").
const CLIENT_JS: &str = include_str!("../../clients/js/dist/shardcast-client.js");

/// How long browsers may reuse `/client.js` without asking again. The
/// `ETag` (the sources' hash) makes the revalidation after that cheap.
const CLIENT_JS_CACHE_CONTROL: &str = "public, max-age=300";

/// `GET /client.js`: the browser module of the client SDK.
pub(super) fn client_js<B>(req: &Request<B>) -> Response<Body> {
    let etag = client_js_etag();
    let fresh = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        respond(
            StatusCode::NOT_MODIFIED,
            "text/javascript; charset=utf-8",
            "",
        )
    } else {
        respond(StatusCode::OK, "text/javascript; charset=utf-8", CLIENT_JS)
    };
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static(CLIENT_JS_CACHE_CONTROL),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(hyper::header::ETAG, value);
    }
    response
}

/// `"<source-hash>"`, read from the bundle's first line
/// (`// shardcast-client X (source-hash H). ...`).
fn client_js_etag() -> String {
    let hash = CLIENT_JS
        .split_once("(source-hash ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("unknown", |(hash, _)| hash);
    format!("\"{hash}\"")
}

/// `GET /metrics`: every shard's counters, summed by Prometheus labels.
pub(super) async fn metrics(shard: &Rc<Shard>) -> Response<Body> {
    let text = match crate::api::gather_stats(shard).await {
        Ok(stats) => crate::metrics::render(
            &stats,
            &crate::metrics::process_figures(
                shard.shared.rooms.len(),
                shard.shared.memory.figures(),
                shard.shared.backend.remote_counters(),
                crate::schema::invalid_data_counts(&shard.shared.namespaces, &shard.shared.schemas),
                crate::pusher::webhook::figures(&shard.shared),
            ),
        ),
        Err(refusal) => return refusal_response(&refusal),
    };
    respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        text,
    )
}
