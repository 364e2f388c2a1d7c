//! `--protocol pusher`: the `fanout` scenario against a server speaking
//! the Pusher Channels protocol 7 (shardcast's `/app/{key}`, or any Pusher
//! deployment on loopback), with the same checks as the native run.
//!
//! Members connect to `/app/{key}?protocol=7`, subscribe to the room's
//! channel (`private-` when publishing with client events, signed with the
//! app secret like an app's auth endpoint would) and count the `lt` events
//! they get. Each event carries its publisher (`k`) and that publisher's
//! counter (`n`), so a member checks every publisher's events arrive once
//! and in order (Pusher has no room `seq`). Publishers send either client
//! events over WebSocket (`--pusher-publish client`: no acks, so `--rate
//! max` is bounded by TCP backpressure) or signed HTTP API calls on one
//! keep-alive connection each (`--pusher-publish http`: `--window` calls
//! in flight).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::common::{DRAIN_WAIT, nanos_since};
use crate::fanout::{
    Arrival, MemberStats, Phase, PhaseWatch, PublisherStats, Rate, RoomReader, read_room,
};
use crate::progress::Counters;
use crate::wsclient::{ClientError, Frame, Target, WsConn, field, json_u64};

/// Which protocol the run speaks.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Protocol {
    /// shardcast's PROTOCOL v1 on `--url`.
    #[default]
    Native,
    /// Pusher Channels protocol 7 on `/app/{key}` of `--url`'s host.
    Pusher,
}

/// How Pusher publishers publish.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PublishVia {
    /// `client-lt` events on a private channel (the app must allow client
    /// events, at the rate the run needs: `pusher.client_event_rate_per_sec`).
    #[default]
    Client,
    /// `POST /apps/{id}/events`, signed.
    Http,
}

/// The Pusher options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct PusherArgs {
    /// The protocol to speak.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub(crate) protocol: Protocol,
    /// The app's key (`/app/{key}`).
    #[arg(long, default_value = "app-key")]
    pub(crate) pusher_key: String,
    /// The app's id (`/apps/{id}`, HTTP publishing).
    #[arg(long, default_value = "1")]
    pub(crate) pusher_app_id: String,
    /// The app's secret: signs private-channel auth and API calls. Prefer
    /// the environment variable.
    #[arg(long, env = "SHARDCAST_LOADTEST_PUSHER_SECRET", hide_env_values = true)]
    pub(crate) pusher_secret: Option<String>,
    /// How publishers publish.
    #[arg(long, value_enum, default_value_t = PublishVia::Client)]
    pub(crate) pusher_publish: PublishVia,
}

/// The Pusher side of a run.
#[derive(Clone)]
pub(crate) struct Pusher {
    key: String,
    app_id: String,
    secret: String,
    via: PublishVia,
}

impl Pusher {
    /// The Pusher side of `args`, if the run speaks Pusher.
    pub(crate) fn of(args: &PusherArgs) -> Result<Option<Pusher>, String> {
        if args.protocol == Protocol::Native {
            return Ok(None);
        }
        let secret = args.pusher_secret.clone().ok_or(
            "--protocol pusher needs the app secret (--pusher-secret or SHARDCAST_LOADTEST_PUSHER_SECRET)",
        )?;
        Ok(Some(Pusher {
            key: args.pusher_key.clone(),
            app_id: args.pusher_app_id.clone(),
            secret,
            via: args.pusher_publish,
        }))
    }

    /// How publishers publish.
    pub(crate) fn via(&self) -> PublishVia {
        self.via
    }

    /// The channel of room `room` (private when client events publish).
    pub(crate) fn channel(&self, room: &str) -> String {
        match self.via {
            PublishVia::Client => format!("private-{room}"),
            PublishVia::Http => room.to_string(),
        }
    }

    fn sign(&self, message: &str) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Connect to `/app/{key}` of `node`, subscribe to `channel`.
    pub(crate) async fn open_member(
        &self,
        node: &Target,
        source: IpAddr,
        seed: u32,
        channel: &str,
    ) -> Result<WsConn, ClientError> {
        let target = Target {
            path: format!("/app/{}?protocol=7&client=shardcast-loadtest", self.key),
            ..node.clone()
        };
        let mut conn = WsConn::connect(&target, Some(source), seed).await?;
        let mut socket_id: Option<Result<String, String>> = None;
        while socket_id.is_none() {
            conn.read_frames(|f| {
                let Frame::Text(t) = f else { return };
                if is_event(t, b"pusher:connection_established") {
                    // data is a JSON string: "{\"socket_id\":\"1.2\",...}"
                    socket_id = Some(
                        string_after(t, br#"socket_id\":\""#)
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .ok_or_else(|| "no socket_id".to_string()),
                    );
                } else if is_event(t, b"pusher:error") {
                    socket_id = Some(Err(String::from_utf8_lossy(t).into_owned()));
                }
            })
            .await?;
        }
        let socket_id = match socket_id {
            Some(Ok(id)) => id,
            Some(Err(e)) => return Err(ClientError::Refused { status: 0, body: e }),
            None => return Err(ClientError::Protocol("no connection_established")),
        };
        let subscribe = if channel.starts_with("private-") {
            let auth = self.sign(&format!("{socket_id}:{channel}"));
            format!(
                r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}","auth":"{}:{auth}"}}}}"#,
                self.key
            )
        } else {
            format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#)
        };
        conn.queue_text(subscribe.as_bytes());
        conn.flush().await?;
        let mut done: Option<Result<(), String>> = None;
        while done.is_none() {
            conn.read_frames(|f| {
                let Frame::Text(t) = f else { return };
                if is_event(t, b"pusher_internal:subscription_succeeded") {
                    done = Some(Ok(()));
                } else if is_event(t, b"pusher:subscription_error") || is_event(t, b"pusher:error")
                {
                    done = Some(Err(String::from_utf8_lossy(t).into_owned()));
                }
            })
            .await?;
        }
        match done {
            Some(Ok(())) => Ok(conn),
            Some(Err(e)) => Err(ClientError::Refused { status: 0, body: e }),
            None => Err(ClientError::Protocol("no subscription_succeeded")),
        }
    }

    /// A keep-alive HTTP connection to `node`'s API.
    pub(crate) async fn open_http(&self, node: &Target) -> Result<HttpPublisher, ClientError> {
        let stream = TcpStream::connect(node.addr).await?;
        stream.set_nodelay(true)?;
        Ok(HttpPublisher {
            stream,
            addr: node.addr,
            opened: Instant::now(),
            host: node.host.clone(),
            buf: Vec::with_capacity(16 * 1024),
            out: Vec::with_capacity(16 * 1024),
        })
    }

    /// The signed `POST /apps/{id}/events` request publishing `data` (a
    /// JSON string) as `lt` on `channel`.
    fn event_request(&self, host: &str, channel: &str, data: &str) -> String {
        let body = format!(r#"{{"name":"lt","channel":"{channel}","data":{data}}}"#);
        let path = format!("/apps/{}/events", self.app_id);
        let md5 = hex::encode(md5::Md5::digest(body.as_bytes()));
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let query = format!(
            "auth_key={}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}",
            self.key
        );
        let signature = self.sign(&format!("POST\n{path}\n{query}"));
        format!(
            "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: {host}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// How long a publisher keeps one HTTP connection: a server may close
/// connections after a while (shardcast: `limits.handshake_timeout_ms`,
/// 10 s by default, for any connection that is not upgraded), and requests
/// in flight then would be lost. After this long the publisher stops
/// sending, waits for its answers, and connects again.
const HTTP_CONNECTION_AGE: Duration = Duration::from_secs(4);

/// One publisher's keep-alive connection to the HTTP API.
pub(crate) struct HttpPublisher {
    stream: TcpStream,
    addr: std::net::SocketAddr,
    opened: Instant,
    host: String,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl HttpPublisher {
    /// Whether the connection is old enough to be replaced.
    fn aged(&self) -> bool {
        self.opened.elapsed() >= HTTP_CONNECTION_AGE
    }

    /// A fresh connection (nothing in flight on the old one).
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.stream = stream;
        self.opened = Instant::now();
        self.buf.clear();
        Ok(())
    }

    /// Read what the server answered: (answers, failed answers) of the
    /// requests in flight. Cancel-safe: it only awaits a read.
    async fn read_answers(&mut self) -> Result<(usize, usize), ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ClientError::Closed(None));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        let (mut answers, mut failed) = (0, 0);
        while let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = head_end + 4 + length;
            if self.buf.len() < total {
                break;
            }
            if !head.starts_with("http/1.1 200") {
                failed += 1;
            }
            answers += 1;
            self.buf.drain(..total);
        }
        Ok((answers, failed))
    }
}

/// What a Pusher event says: (publisher `k`, its counter `n`, send time
/// `t`). `data` may be a JSON object (client events) or a JSON string
/// holding one (HTTP API events).
fn lt_fields(text: &[u8]) -> Option<(u64, u64, Option<u64>)> {
    // One scan decides the encoding; the fields follow `data` in it.
    let data = field::DATA.value_at(text)?;
    let body = &text[data..];
    let (k, n, t) = if body.first() == Some(&b'"') {
        (
            &field::PUSHER_K_ESCAPED,
            &field::PUSHER_N_ESCAPED,
            &field::PUSHER_T_ESCAPED,
        )
    } else {
        (&field::PUSHER_K, &field::PUSHER_N, &field::T)
    };
    Some((json_u64(body, k)?, json_u64(body, n)?, json_u64(body, t)))
}

/// Whether a Pusher frame's `event` is `name` (the server writes `event`
/// first).
fn is_event(text: &[u8], name: &[u8]) -> bool {
    text.starts_with(b"{\"event\":\"")
        && text[10..].starts_with(name)
        && text.get(10 + name.len()) == Some(&b'"')
}

/// The bytes after `pattern` up to the next backslash or quote.
fn string_after<'a>(text: &'a [u8], pattern: &[u8]) -> Option<&'a [u8]> {
    let at = text.windows(pattern.len()).position(|w| w == pattern)? + pattern.len();
    let len = text[at..].iter().position(|&b| b == b'"' || b == b'\\')?;
    Some(&text[at..at + len])
}

/// Pusher members: `lt` events, in each publisher's order (`k`, `n`).
struct CounterReader {
    /// The next counter expected of each publisher of the room.
    next: Vec<u64>,
}

impl RoomReader for CounterReader {
    fn complete(&self, s: &MemberStats, last: u64) -> bool {
        s.delivered_total >= last
    }

    fn on_text(&mut self, s: &mut MemberStats, t: &[u8], measuring: bool, clock: &mut Arrival) {
        if is_event(t, b"lt") || is_event(t, b"client-lt") {
            let Some((k, n, sent)) = lt_fields(t) else {
                return;
            };
            let k = k as usize;
            if k >= self.next.len() {
                self.next.resize(k + 1, 1);
            }
            if n == self.next[k] {
                self.next[k] += 1;
            } else if n > self.next[k] {
                s.missing += n - self.next[k];
                self.next[k] = n + 1;
            } else {
                s.out_of_order += 1;
                return;
            }
            s.delivered(measuring, sent, clock);
        } else if is_event(t, b"pusher:gap") {
            s.gaps += 1;
        }
    }
}

/// Read one member's channel until it has every event published to its
/// room (`finals`: the room's event count, once known) or the run stops.
pub(crate) async fn member_loop(
    conn: &mut WsConn,
    room: usize,
    finals: Arc<Vec<AtomicU64>>,
    phase: watch::Receiver<Phase>,
    origin: Instant,
    counters: &Counters,
) -> MemberStats {
    let reader = CounterReader { next: Vec::new() };
    read_room(conn, (room, finals), phase, origin, counters, reader).await
}

/// The `data` of publisher `k`'s `n`th event, sent at `t`.
fn lt_data(out: &mut String, (k, n, t): (usize, u64, u64), filler: &str) {
    use std::fmt::Write;
    let _ = write!(out, r#"{{"t":{t},"k":{k},"n":{n},"p":"{filler}"}}"#);
}

/// When event number `sent` is due (open loop), or now.
fn send_time(rate: Rate, start: tokio::time::Instant, sent: u64, origin: Instant) -> u64 {
    match rate {
        Rate::Max(_) => nanos_since(origin),
        Rate::PerSec(r) => {
            let intended = start + Duration::from_secs_f64(sent as f64 / r);
            intended
                .into_std()
                .saturating_duration_since(origin)
                .as_nanos() as u64
        }
    }
}

/// How many events are due now.
fn due(rate: Rate, start: tokio::time::Instant, sent: u64, in_flight: usize) -> usize {
    match rate {
        Rate::Max(window) => window.saturating_sub(in_flight),
        Rate::PerSec(r) => {
            let due_total = (start.elapsed().as_secs_f64() * r) as u64 + 1;
            due_total.saturating_sub(sent) as usize
        }
    }
}

/// Publish client events as publisher `k` of `channel` until the drain.
/// With no acks, `--rate max` sends a window per turn and waits for the
/// socket (TCP backpressure).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn publish_client_events(
    conn: &mut WsConn,
    channel: &str,
    k: usize,
    filler: &str,
    rate: Rate,
    phase: watch::Receiver<Phase>,
    origin: Instant,
    counters: &Counters,
) -> PublisherStats {
    let mut phase = PhaseWatch::new(phase);
    let mut s = PublisherStats::default();
    let start = tokio::time::Instant::now();
    let (mut frame, mut data) = (String::new(), String::new());
    loop {
        let current = phase.get();
        if current >= Phase::Drain {
            break;
        }
        let n = due(rate, start, s.published_total, 0);
        for _ in 0..n {
            let t = send_time(rate, start, s.published_total, origin);
            data.clear();
            lt_data(&mut data, (k, s.published_total + 1, t), filler);
            frame.clear();
            frame.push_str(r#"{"event":"client-lt","channel":""#);
            frame.push_str(channel);
            frame.push_str(r#"","data":"#);
            frame.push_str(&data);
            frame.push('}');
            conn.queue_text(frame.as_bytes());
            s.published_total += 1;
            if current == Phase::Measure {
                s.published_window += 1;
            }
        }
        counters.published(n as u64);
        if let Err(e) = conn.flush().await {
            s.closed = Some(e.to_string());
            break;
        }
        let wake_at = match rate {
            Rate::PerSec(r) => start + Duration::from_secs_f64(s.published_total as f64 / r),
            Rate::Max(_) => tokio::time::Instant::now(),
        };
        let result = tokio::select! {
            r = conn.read_frames(|f| {
                if let Frame::Text(t) = f
                    && is_event(t, b"pusher:error")
                {
                    s.errors += 1;
                }
            }) => r,
            _ = tokio::time::sleep_until(wake_at) => Ok(()),
            () = phase.changed() => Ok(()),
        };
        if let Err(e) = result {
            s.closed = Some(e.to_string());
            break;
        }
    }
    s.last_seq = s.published_total;
    s
}

/// Publish through the HTTP API as publisher `k` of `channel` until the
/// drain, `--window` calls in flight, then wait for the answers.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn publish_http(
    http: &mut HttpPublisher,
    pusher: &Pusher,
    channel: &str,
    k: usize,
    filler: &str,
    rate: Rate,
    phase: watch::Receiver<Phase>,
    origin: Instant,
    counters: &Counters,
) -> PublisherStats {
    let mut phase = PhaseWatch::new(phase);
    let mut s = PublisherStats::default();
    let start = tokio::time::Instant::now();
    let mut in_flight = 0usize;
    let mut data = String::new();
    let mut drain_deadline = None;
    loop {
        let current = phase.get();
        if current >= Phase::Drain {
            let deadline =
                *drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + DRAIN_WAIT);
            if in_flight == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
        } else if http.aged() {
            // Replace the connection once its answers are in.
            if in_flight == 0
                && let Err(e) = http.reconnect().await
            {
                s.closed = Some(e.to_string());
                break;
            }
        } else {
            let n = due(rate, start, s.published_total, in_flight);
            for _ in 0..n {
                let t = send_time(rate, start, s.published_total, origin);
                data.clear();
                lt_data(&mut data, (k, s.published_total + 1, t), filler);
                // The API takes `data` as a string.
                let quoted = serde_json::Value::String(std::mem::take(&mut data)).to_string();
                let request = pusher.event_request(&http.host, channel, &quoted);
                http.out.extend_from_slice(request.as_bytes());
                in_flight += 1;
                s.published_total += 1;
                if current == Phase::Measure {
                    s.published_window += 1;
                }
            }
            counters.published(n as u64);
        }
        if !http.out.is_empty() {
            if let Err(e) = http.stream.write_all(&http.out).await {
                s.closed = Some(e.to_string());
                break;
            }
            http.out.clear();
        }
        let wake_at = match rate {
            _ if in_flight == 0 && http.aged() => tokio::time::Instant::now(),
            Rate::PerSec(r) if current < Phase::Drain => {
                start + Duration::from_secs_f64(s.published_total as f64 / r)
            }
            _ => tokio::time::Instant::now() + Duration::from_secs(1),
        };
        let result = tokio::select! {
            r = http.read_answers(), if in_flight > 0 => r,
            _ = tokio::time::sleep_until(wake_at) => Ok((0, 0)),
            () = phase.changed() => Ok((0, 0)),
        };
        match result {
            Ok((answers, failed)) => {
                in_flight = in_flight.saturating_sub(answers);
                s.errors += failed as u64;
            }
            Err(e) => {
                s.closed = Some(e.to_string());
                break;
            }
        }
    }
    s.last_seq = s.published_total;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lt_events_in_both_encodings() {
        let client =
            br#"{"event":"client-lt","channel":"private-r","data":{"t":5,"k":1,"n":9,"p":"x"}}"#;
        assert!(is_event(client, b"client-lt"));
        assert_eq!(lt_fields(client), Some((1, 9, Some(5))));
        let api = br#"{"event":"lt","channel":"r","data":"{\"t\":7,\"k\":0,\"n\":3,\"p\":\"x\"}"}"#;
        assert!(is_event(api, b"lt") && !is_event(api, b"l"));
        assert_eq!(lt_fields(api), Some((0, 3, Some(7))));
        let hello = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"12.34\",\"activity_timeout\":120}"}"#;
        assert_eq!(
            string_after(hello, br#"socket_id\":\""#),
            Some(&b"12.34"[..])
        );
    }
}
