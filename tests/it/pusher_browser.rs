//! pusher-js in a real browser (headless Chromium): the page, its copy of
//! pusher-js (from `tests/js/pusher/node_modules`, installed by
//! `npm ci`) and its channel auth endpoint are served by this test's own
//! HTTP server; the page reports what it saw back to that server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::harness::*;
use crate::pusher::signed_post;
use crate::pusher_js::{APP_KEY, APP_SECRET, pusher_on};

/// The test page: two pusher-js clients (ann and bob) on a presence
/// channel; bob must see ann join, ann's client event (with her user id),
/// and an event published through the HTTP API.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>pusher-js</title>
<script src="/pusher.min.js"></script></head>
<body><script>
const report = (s) => fetch('/report', { method: 'POST', body: s });
const opts = (user) => ({
  cluster: 'mt1', wsHost: '127.0.0.1', wsPort: BROKER_PORT, forceTLS: false,
  enabledTransports: ['ws'], disableStats: true,
  channelAuthorization: { endpoint: '/auth', transport: 'ajax', params: { user } },
});
const seen = { added: null, hello: null, news: null };
const done = () => {
  if (seen.added && seen.hello && seen.news) {
    report(`ok added=${seen.added} hello=${seen.hello} news=${seen.news}`);
  }
};
setTimeout(() => report('timeout ' + JSON.stringify(seen)), 20000);
try {
  const bob = new Pusher('APP_KEY', opts('bob'));
  const b = bob.subscribe('presence-browser');
  b.bind('pusher:subscription_error', (e) => report('error bob ' + JSON.stringify(e)));
  b.bind('pusher:member_added', (m) => { seen.added = m.id; done(); });
  b.bind('client-hello', (data, meta) => { seen.hello = `${data.text}/${meta.user_id}`; done(); });
  b.bind('news', (data) => { seen.news = data.headline; done(); });
  b.bind('pusher:subscription_succeeded', () => {
    const ann = new Pusher('APP_KEY', opts('ann'));
    const a = ann.subscribe('presence-browser');
    a.bind('pusher:subscription_error', (e) => report('error ann ' + JSON.stringify(e)));
    a.bind('pusher:subscription_succeeded', (members) => {
      if (members.count !== 2) report('error count ' + members.count);
      a.trigger('client-hello', { text: 'hi' });
      fetch('/trigger', { method: 'POST' });
    });
  });
} catch (e) {
  report('error ' + e);
}
</script></body></html>
"#;

/// What the page reported.
type Reports = Arc<Mutex<Vec<String>>>;

/// The hex HMAC-SHA256 of `message` under the test app's secret.
pub(crate) fn sign(message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).expect("hmac");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// An app's channel auth endpoint: signs what pusher-js POSTs.
fn authorize(form: &[u8]) -> String {
    let mut socket = String::new();
    let mut channel = String::new();
    let mut user = String::new();
    for (k, v) in form_urlencoded::parse(form) {
        match &*k {
            "socket_id" => socket = v.into_owned(),
            "channel_name" => channel = v.into_owned(),
            "user" => user = v.into_owned(),
            _ => {}
        }
    }
    let data = serde_json::json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let signature = sign(&format!("{socket}:{channel}:{data}"));
    serde_json::json!({"auth": format!("{APP_KEY}:{signature}"), "channel_data": data}).to_string()
}

async fn serve(
    req: Request<Incoming>,
    broker: SocketAddr,
    reports: Reports,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (kind, content): (&str, Bytes) = match path.as_str() {
        "/" => (
            "text/html",
            Bytes::from(
                PAGE.replace("BROKER_PORT", &broker.port().to_string())
                    .replace("APP_KEY", APP_KEY),
            ),
        ),
        "/pusher.min.js" => {
            let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/js/pusher/node_modules/pusher-js/dist/web/pusher.min.js");
            (
                "text/javascript",
                Bytes::from(std::fs::read(file).unwrap_or_default()),
            )
        }
        "/auth" => ("application/json", Bytes::from(authorize(&body))),
        "/trigger" => {
            let event = r#"{"name":"news","channel":"presence-browser","data":"{\"headline\":\"from the API\"}"}"#;
            let (status, _) = signed_post(broker, "/apps/app1/events", event).await;
            ("text/plain", Bytes::from(status.to_string()))
        }
        "/report" => {
            if let Ok(mut r) = reports.lock() {
                r.push(String::from_utf8_lossy(&body).into_owned());
            }
            ("text/plain", Bytes::from_static(b"ok"))
        }
        _ => ("text/plain", Bytes::from_static(b"not found")),
    };
    let mut response = Response::new(Full::new(content));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    response
}

/// This test's web server: the page, pusher-js, the auth endpoint.
async fn web_server(broker: SocketAddr, reports: Reports) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let reports = reports.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let reports = reports.clone();
                    async move { Ok::<_, Infallible>(serve(req, broker, reports).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_chromium, has_node)),
    ignore = "chromium or node not found on PATH (the page loads pusher-js installed by npm)"
)]
async fn pusher_js_in_headless_chromium() {
    crate::pusher_js::ensure_packages();
    let browser = crate::browser::chromium();
    let broker = TestBroker::new().with(|c| pusher_on(c, None)).start();
    let reports: Reports = Arc::default();
    let web = web_server(broker.addr, reports.clone()).await;
    let profile =
        std::env::temp_dir().join(format!("shardcast-pusher-chromium-{}", std::process::id()));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{web}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let report = loop {
        if let Some(r) = reports.lock().ok().and_then(|r| r.first().cloned()) {
            break Some(r);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let report = report.expect("the page reported nothing within 60 s");
    assert_eq!(
        report, "ok added=ann hello=hi/ann news=from the API",
        "what pusher-js saw in Chromium"
    );
}
