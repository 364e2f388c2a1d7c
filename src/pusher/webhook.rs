//! Webhooks: what happened to an app's channels, POSTed to its
//! `webhook_url` as Pusher documents it — a JSON body `{"time_ms",
//! "events"}` signed with `X-Pusher-Key` and `X-Pusher-Signature`
//! (hex HMAC-SHA256 of the body under the app's secret).
//!
//! Events come from two places: the back end that saw a room change
//! (`channel_occupied`, `channel_vacated`, `member_added`,
//! `member_removed`, through [`crate::observe::Observer`], so once per
//! cluster), and the connection that sent a client event
//! (`client_event`). One thread of its own batches them per app (up to
//! `pusher.webhook_batch_events`, or what arrived within
//! [`BATCH_WAIT_MS`]) and sends each batch with up to
//! `pusher.webhook_attempts` attempts, waiting `pusher.webhook_backoff_ms`
//! doubled after each failure.
//!
//! An `https://` receiver's certificate must chain to the app's
//! `webhook_ca_file` (PEM), else to the system's roots, and name the URL's
//! host; the TLS handshake is part of the attempt, so within
//! `pusher.webhook_timeout_ms`, and one that fails is a failed attempt.
//!
//! **Invariant:** nothing on the message path waits for a webhook: the
//! queues are bounded (`pusher.webhook_queue`) and filled with `try_send`;
//! an event that does not fit, and a batch that fails every attempt, are
//! dropped and counted (`shardcast_pusher_webhook_events_dropped_total`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded, select};
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio_rustls::{TlsConnector, rustls};

use super::App;
use super::names::{Kind, channel_of};
use super::sign::hmac_hex;
use crate::config::PusherConfig;
use crate::observe::{Observed, RoomChange};

/// How long the sender waits for more events before sending a batch.
pub(crate) const BATCH_WAIT_MS: u64 = 50;

/// Where a webhook URL points: the receiver to connect to and what to ask
/// it for.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

/// A parsed webhook URL. An `https://` one becomes a [`Target`] only with
/// the roots its receiver's certificate must chain to, so no target is
/// `https://` without its TLS client.
#[derive(Debug)]
pub(crate) enum WebhookUrl {
    /// `http://host:port/path`: a target as it is.
    Http(Target),
    /// `https://host:port/path`: see [`HttpsUrl::secure`].
    Https(HttpsUrl),
}

/// An `https://` webhook URL waiting for its roots.
#[derive(Debug)]
pub(crate) struct HttpsUrl(Endpoint);

/// Where an app's webhooks go: `http://host:port/path`, or
/// `https://host:port/path` with the TLS client that checks its receiver.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    endpoint: Endpoint,
    /// `https://`: the TLS client.
    tls: Option<Tls>,
}

/// The TLS client of an `https://` target, and the name its receiver's
/// certificate must carry.
#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WebhookUrl {
    /// Parse a webhook URL (`http://` or `https://`).
    pub(crate) fn parse(url: &str) -> Result<WebhookUrl, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?} must start with http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_string());
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let endpoint = Endpoint {
            host,
            port,
            authority,
            path,
        };
        Ok(if https {
            WebhookUrl::Https(HttpsUrl(endpoint))
        } else {
            WebhookUrl::Http(Target {
                endpoint,
                tls: None,
            })
        })
    }
}

impl HttpsUrl {
    /// The target, whose receiver's certificate must chain to `roots` and
    /// name its host.
    pub(crate) fn secure(self, roots: RootCertStore) -> Result<Target, String> {
        let endpoint = self.0;
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("{:?} is not a TLS server name: {e}", endpoint.host))?;
        let config = crate::tls_client::builder(roots)?.with_no_client_auth();
        Ok(Target {
            endpoint,
            tls: Some(Tls {
                connector: TlsConnector::from(Arc::new(config)),
                name,
            }),
        })
    }
}

/// What the webhook sender did, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct HookCounters {
    /// Events delivered (a 2xx answer).
    pub(crate) sent: AtomicU64,
    /// Events dropped: their queue was full, or every attempt failed.
    pub(crate) dropped: AtomicU64,
    /// Failed attempts (each retried or dropped).
    pub(crate) failed_attempts: AtomicU64,
}

/// The webhook counters of `shared`, if webhooks run (for `/metrics`).
pub(crate) fn figures(shared: &crate::shared::Shared) -> Option<crate::metrics::WebhookFigures> {
    let hooks = shared.pusher.as_ref()?.webhooks.as_ref()?;
    let c = &hooks.counters;
    Some(crate::metrics::WebhookFigures {
        sent: c.sent.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed) + shared.observer.dropped(),
        failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
    })
}

/// A client event for an app's webhook.
struct ClientHook {
    app: Arc<App>,
    event: Value,
}

/// The webhook sender's handle.
pub(crate) struct Webhooks {
    client: Sender<ClientHook>,
    /// Its counters.
    pub(crate) counters: Arc<HookCounters>,
}

impl Webhooks {
    /// Start the sender thread for `apps` (those with a webhook), reading
    /// room changes from `changes`.
    pub(crate) fn start(
        config: &PusherConfig,
        apps: Vec<Arc<App>>,
        changes: Receiver<Observed>,
    ) -> std::io::Result<Webhooks> {
        let (client, client_rx) = bounded(config.webhook_queue.max(1));
        let counters = Arc::new(HookCounters::default());
        let sender = Sender_ {
            apps,
            config: config.clone(),
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("pusher-webhooks".into())
            .spawn(move || sender.run(&changes, &client_rx))?;
        Ok(Webhooks { client, counters })
    }

    /// A client event was sent on `channel` of `app` (never waits).
    pub(crate) fn client_event(
        &self,
        app: &Arc<App>,
        channel: &str,
        event: &str,
        data: &[u8],
        socket_id: &str,
        user: Option<&str>,
    ) {
        if app.webhook.is_none() {
            return;
        }
        // `data` as the client sent it, as a string (the documented shape).
        let data = match serde_json::from_slice::<Value>(data) {
            Ok(Value::String(s)) => s,
            _ => String::from_utf8_lossy(data).into_owned(),
        };
        let mut hook = json!({
            "name": "client_event",
            "channel": channel,
            "event": event,
            "data": data,
            "socket_id": socket_id,
        });
        if let Some(user) = user {
            hook["user_id"] = json!(user);
        }
        let item = ClientHook {
            app: app.clone(),
            event: hook,
        };
        if self.client.try_send(item).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The sender thread's state.
struct Sender_ {
    apps: Vec<Arc<App>>,
    config: PusherConfig,
    counters: Arc<HookCounters>,
}

impl Sender_ {
    fn run(self, changes: &Receiver<Observed>, clients: &Receiver<ClientHook>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "pusher webhooks: cannot start a runtime; webhooks are off");
                return;
            }
        };
        let max = self.config.webhook_batch_events;
        loop {
            // Wait for a first event, then gather what comes within the wait.
            let mut batch: Vec<(Arc<App>, Value)> = Vec::new();
            select! {
                recv(changes) -> c => match c {
                    Ok(c) => self.push_change(&mut batch, c),
                    Err(_) => return,
                },
                recv(clients) -> c => match c {
                    Ok(c) => batch.push((c.app, c.event)),
                    Err(_) => return,
                },
            }
            let until = Instant::now() + Duration::from_millis(BATCH_WAIT_MS);
            while batch.len() < max {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                select! {
                    recv(changes) -> c => if let Ok(c) = c { self.push_change(&mut batch, c) },
                    recv(clients) -> c => if let Ok(c) = c { batch.push((c.app, c.event)) },
                    default(left) => break,
                }
            }
            for app in &self.apps {
                let events: Vec<Value> = batch
                    .iter()
                    .filter(|(a, _)| Arc::ptr_eq(a, app))
                    .map(|(_, e)| e.clone())
                    .collect();
                if !events.is_empty() {
                    runtime.block_on(self.deliver(app, events));
                }
            }
        }
    }

    /// The webhook event of a room change, if an app with a webhook owns
    /// the room and the change is one Pusher reports.
    fn push_change(&self, batch: &mut Vec<(Arc<App>, Value)>, observed: Observed) {
        let Some((app_id, channel)) = channel_of(&observed.room) else {
            return;
        };
        let Some(app) = self.apps.iter().find(|a| a.id == app_id) else {
            return;
        };
        let presence = Kind::of(channel) == Kind::Presence;
        let event = match observed.change {
            RoomChange::Occupied => json!({"name": "channel_occupied", "channel": channel}),
            RoomChange::Vacated => json!({"name": "channel_vacated", "channel": channel}),
            RoomChange::UserAdded(user) if presence => {
                json!({"name": "member_added", "channel": channel, "user_id": &*user})
            }
            RoomChange::UserRemoved(user) if presence => {
                json!({"name": "member_removed", "channel": channel, "user_id": &*user})
            }
            RoomChange::UserAdded(_) | RoomChange::UserRemoved(_) => return,
        };
        batch.push((app.clone(), event));
    }

    /// POST `events` to `app`'s webhook, retrying with backoff.
    async fn deliver(&self, app: &Arc<App>, events: Vec<Value>) {
        let Some(target) = &app.webhook else {
            return;
        };
        let count = events.len() as u64;
        let time_ms = crate::protocol::encode::now_ms();
        let body = json!({ "time_ms": time_ms, "events": events }).to_string();
        let signature = hmac_hex(&app.secret, body.as_bytes());
        let body = Bytes::from(body);
        let timeout = Duration::from_millis(self.config.webhook_timeout_ms);
        let mut backoff = Duration::from_millis(self.config.webhook_backoff_ms);
        for attempt in 1..=self.config.webhook_attempts {
            let post = post(target, &app.key, &signature, body.clone());
            match tokio::time::timeout(timeout, post).await {
                Ok(Ok(())) => {
                    self.counters.sent.fetch_add(count, Ordering::Relaxed);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(app = %app.id, attempt, error = %e, "pusher webhook failed");
                }
                Err(_) => {
                    tracing::debug!(app = %app.id, attempt, "pusher webhook timed out");
                }
            }
            self.counters
                .failed_attempts
                .fetch_add(1, Ordering::Relaxed);
            if attempt < self.config.webhook_attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        tracing::warn!(app = %app.id, events = count, "pusher webhook dropped after every attempt failed");
        self.counters.dropped.fetch_add(count, Ordering::Relaxed);
    }
}

/// One POST, over TLS for an `https://` target (the whole of it, the
/// handshake too, within the caller's `webhook_timeout_ms`); `Ok` on a 2xx
/// answer.
async fn post(target: &Target, key: &str, signature: &str, body: Bytes) -> Result<(), String> {
    let endpoint = &target.endpoint;
    let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match &target.tls {
        None => exchange(stream, endpoint, key, signature, body).await,
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.name.clone(), stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(stream, endpoint, key, signature, body).await
        }
    }
}

/// The request and its answer on a connected `stream`.
async fn exchange<S>(
    stream: S,
    endpoint: &Endpoint,
    key: &str,
    signature: &str,
    body: Bytes,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let connection = tokio::spawn(connection);
    let request = Request::post(endpoint.path.as_str())
        .header(hyper::header::HOST, endpoint.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", key)
        .header("X-Pusher-Signature", signature)
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    connection.abort();
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_or_https_urls() {
        let Ok(WebhookUrl::Http(t)) = WebhookUrl::parse("http://127.0.0.1:9000/hooks?x=1") else {
            panic!("an http:// target");
        };
        let e = &t.endpoint;
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str(), t.tls.is_none()),
            ("127.0.0.1", 9000, "/hooks?x=1", true)
        );
        let Ok(WebhookUrl::Http(t)) = WebhookUrl::parse("http://h") else {
            panic!("an http:// target");
        };
        assert_eq!(t.endpoint.port, 80);
        let Ok(WebhookUrl::Https(url)) = WebhookUrl::parse("https://h.example/") else {
            panic!("an https:// URL");
        };
        assert_eq!(url.0.port, 443);
        assert!(WebhookUrl::parse("ftp://h/").is_err());
        assert!(WebhookUrl::parse("not a url").is_err());
    }
}
