//! The Pusher endpoint at the protocol level, with an independent client
//! (tokio-tungstenite): refusals with the documented codes, bad input that
//! leaves others untouched, capacity, drain and slow consumers in Pusher's
//! close codes, and webhooks that neither block delivery nor grow memory.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;
use crate::pusher_browser::sign;
use crate::pusher_js::{APP_KEY, pusher_on};
use crate::tls::TestCa;

fn pusher_url(broker: &Running, path_and_query: &str) -> String {
    format!("ws://{}{}", broker.addr, path_and_query)
}

/// Connect a Pusher client and read `connection_established`: (client,
/// socket id).
async fn connect(broker: &Running) -> (Client, String) {
    let mut c = Client::connect(&pusher_url(
        broker,
        &format!("/app/{APP_KEY}?protocol=7&client=it"),
    ))
    .await;
    let hello = c.recv().await;
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    let data: Value =
        serde_json::from_str(hello["data"].as_str().expect("data string")).expect("json");
    assert_eq!(data["activity_timeout"], 120);
    (
        c,
        data["socket_id"].as_str().expect("socket id").to_string(),
    )
}

async fn send(c: &mut Client, event: Value) {
    c.send(event).await;
}

/// The next frame whose `event` is `name`.
async fn next_event(c: &mut Client, name: &str) -> Value {
    loop {
        let v = c.recv().await;
        if v["event"] == name {
            return v;
        }
    }
}

async fn subscribe(c: &mut Client, channel: &str) {
    send(
        c,
        json!({"event":"pusher:subscribe","data":{"channel":channel}}),
    )
    .await;
    let ok = next_event(c, "pusher_internal:subscription_succeeded").await;
    assert_eq!(ok["channel"], channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_as_pusher_errors_then_the_same_close_code() {
    let broker = TestBroker::new().with(|c| pusher_on(c, None)).start();
    for (path, code) in [
        ("/app/nope?protocol=7", 4001),
        (&*format!("/app/{APP_KEY}"), 4008),
        (&*format!("/app/{APP_KEY}?protocol=six"), 4006),
        (&*format!("/app/{APP_KEY}?protocol=6"), 4007),
        ("/app/?protocol=7", 4005),
    ] {
        let mut c = Client::connect(&pusher_url(&broker, path)).await;
        let error = c.recv().await;
        assert_eq!(error["event"], "pusher:error", "{path}: {error}");
        assert_eq!(error["data"]["code"], code, "{path}: {error}");
        assert!(
            error["data"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(c.close_code().await, Some(code), "{path}");
    }
    // Not a WebSocket upgrade: plain HTTP 400 with the JSON refusal.
    let (status, _) = http_get(broker.addr, &format!("/app/{APP_KEY} HTTP/1.1")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_pusher_error_and_touches_nobody_else() {
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.limits.max_message_bytes = 16 * 1024;
        })
        .start();
    let (mut watcher, _) = connect(&broker).await;
    subscribe(&mut watcher, "calm").await;
    let (mut bad, _) = connect(&broker).await;
    for (frame, needle) in [
        ("not json", "not a Pusher event"),
        ("[1,2]", "not a Pusher event"),
        (r#"{"event":"pusher:hack","data":{}}"#, "unknown event"),
        (
            r#"{"event":"pusher:subscribe","data":{"channel":"bad name"}}"#,
            "invalid channel name",
        ),
        (
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-x","auth":"app-key:00"}}"#,
            "",
        ),
        (
            r#"{"event":"client-x","channel":"private-nope","data":{}}"#,
            "subscribe",
        ),
    ] {
        bad.send_raw(Message::text(frame)).await;
        let reply = bad.recv().await;
        let event = reply["event"].as_str().unwrap_or_default();
        assert!(
            event == "pusher:error" || event == "pusher:subscription_error",
            "{frame}: {reply}"
        );
        if event == "pusher:error" {
            assert_eq!(reply["data"]["code"], 4300, "{frame}: {reply}");
            let message = reply["data"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{frame}: {reply}");
        } else {
            assert!(
                reply["data"]["status"].as_u64().is_some_and(|s| s >= 400),
                "{reply}"
            );
        }
    }
    // Binary frames: pusher:error, the connection stays.
    bad.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let reply = bad.recv().await;
    assert_eq!(reply["event"], "pusher:error", "{reply}");
    send(&mut bad, json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(bad.recv().await["event"], "pusher:pong");
    // An oversize message closes that connection with 1009, nobody else's.
    bad.send_raw(Message::text("x".repeat(20 * 1024))).await;
    assert_eq!(bad.close_code().await, Some(1009));
    // The watcher still gets what is published to its channel.
    let body = r#"{"name":"still","channel":"calm","data":"{}"}"#;
    let (status, _) = signed_post(broker.addr, "/apps/app1/events", body).await;
    assert_eq!(status, 200);
    let got = next_event(&mut watcher, "still").await;
    assert_eq!(got["channel"], "calm");
}

/// `[[...1...]]`, `n` arrays deep.
fn nested(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

/// Subscribe to `channel` (private or, with `channel_data`, presence),
/// signed for socket `socket_id`: the server's answer.
async fn subscribe_signed(
    c: &mut Client,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> Value {
    let signed = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    let mut data = json!({"channel": channel, "auth": format!("{APP_KEY}:{}", sign(&signed))});
    if let Some(channel_data) = channel_data {
        data["channel_data"] = json!(channel_data);
    }
    send(c, json!({"event": "pusher:subscribe", "data": data})).await;
    loop {
        let v = c.recv().await;
        let event = v["event"].as_str().unwrap_or_default();
        if event.ends_with("subscription_succeeded") || event.ends_with("subscription_error") {
            return v;
        }
    }
}

/// Issue 15's JSON depth bound holds on the Pusher endpoint with the native
/// one's check and limit (`limits.max_json_depth`): a client event whose
/// `data` nests deeper gets `pusher:error` 4300 naming the limit, reaches
/// nobody, and the connection stays (as a native client gets `bad_request`
/// and stays). Presence `channel_data` nested deeper is a 400 subscription
/// error, and an HTTP API event's `data` a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_deeper_than_the_limit_is_refused_on_the_pusher_endpoint_too() {
    let broker = TestBroker::new().with(|c| pusher_on(c, None)).start();
    let (mut sender, sender_id) = connect(&broker).await;
    let (mut watcher, watcher_id) = connect(&broker).await;
    for (c, id) in [(&mut sender, &sender_id), (&mut watcher, &watcher_id)] {
        let ok = subscribe_signed(c, id, "private-deep", None).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }
    for depth in [33, 30_000] {
        let frame = format!(
            r#"{{"event":"client-deep","channel":"private-deep","data":{}}}"#,
            nested(depth)
        );
        sender.send_raw(Message::text(frame)).await;
        let refused = sender.recv().await;
        assert_eq!(refused["event"], "pusher:error", "{refused}");
        assert_eq!(refused["data"]["code"], 4300, "{refused}");
        let message = refused["data"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("limits.max_json_depth") && message.contains("32"),
            "{refused}"
        );
    }
    // The connection stays, and exactly at the limit is fine: the watcher
    // gets that event and none of the refused ones.
    let at_limit: Value = serde_json::from_str(&nested(32)).expect("32 deep");
    send(
        &mut sender,
        json!({"event": "client-ok", "channel": "private-deep", "data": at_limit}),
    )
    .await;
    let got = watcher.recv().await;
    assert_eq!(
        (got["event"].clone(), got["data"].clone()),
        (json!("client-ok"), at_limit),
        "{got}"
    );
    send(&mut sender, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(sender.recv().await["event"], "pusher:pong");
    // A presence member's info goes to every member: the same bound.
    let channel_data = format!(r#"{{"user_id":"u1","user_info":{}}}"#, nested(33));
    let refused = subscribe_signed(
        &mut sender,
        &sender_id,
        "presence-deep",
        Some(&channel_data),
    )
    .await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["data"]["status"], 400, "{refused}");
    assert!(
        refused["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("limits.max_json_depth")),
        "{refused}"
    );
    // The HTTP API's events: 400, saying why.
    let body = format!(
        r#"{{"name":"deep","channel":"private-deep","data":{}}}"#,
        nested(33)
    );
    let (status, text) = signed_text(broker.addr, "POST", "/apps/app1/events", &[], &body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("limits.max_json_depth"), "{text}");
}

/// A subscription that makes its channel's room is a room made by the
/// connection (issue 15's quotas hold through the same room operation as
/// a native `join`): past `limits.max_rooms_created_per_connection` it is
/// refused with the quota's status, and channels others made stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_that_make_rooms_count_against_the_room_quotas() {
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.limits.max_rooms_created_per_connection = 1;
        })
        .start();
    let (mut maker, _) = connect(&broker).await;
    subscribe(&mut maker, "made-1").await;
    send(
        &mut maker,
        json!({"event":"pusher:subscribe","data":{"channel":"made-2"}}),
    )
    .await;
    let refused = next_event(&mut maker, "pusher:subscription_error").await;
    assert_eq!(refused["channel"], "made-2", "{refused}");
    assert_eq!(refused["data"]["status"], 429, "{refused}");
    assert!(
        refused["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_rooms_created_per_connection")),
        "{refused}"
    );
    // Another connection makes its own, and joins the first one's.
    let (mut other, _) = connect(&broker).await;
    subscribe(&mut other, "made-2").await;
    subscribe(&mut other, "made-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_is_4100_and_a_drain_is_4200() {
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.limits.max_connections = 1;
        })
        .start();
    let (mut first, _) = connect(&broker).await;
    let mut second =
        Client::connect(&pusher_url(&broker, &format!("/app/{APP_KEY}?protocol=7"))).await;
    let error = second.recv().await;
    assert_eq!(error["data"]["code"], 4100, "{error}");
    assert_eq!(second.close_code().await, Some(4100));
    let closing = tokio::spawn(async move { first.close_code().await });
    drop(broker);
    let code = tokio::time::timeout(Duration::from_secs(15), closing)
        .await
        .expect("closed in time")
        .expect("task");
    assert_eq!(
        code,
        Some(4200),
        "a drain tells pusher-js to reconnect at once"
    );
}

/// A connection that has not signed in has no user to count: each one is
/// its own (`~pusher-<conn>`), so `limits.max_connections_per_user` cannot
/// bound them. `limits.max_connections_per_ip` (and the global and
/// per-shard caps) does: past it, 4100. A sign-in then counts against the
/// per-user cap like a native user's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_pusher_connections_are_bounded_per_ip_and_signed_in_ones_per_user() {
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.limits.max_connections_per_ip = 3;
            c.limits.max_connections_per_user = 1;
        })
        .start();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&broker).await);
    }
    let mut fourth =
        Client::connect(&pusher_url(&broker, &format!("/app/{APP_KEY}?protocol=7"))).await;
    let error = fourth.recv().await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], 4100, "{error}");
    let why = error["data"]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("127.0.0.1 holds its maximum of 3"),
        "the per-IP cap refused it: {error}"
    );
    assert_eq!(fourth.close_code().await, Some(4100));
    // One closes: its place is free again.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c =
            Client::connect(&pusher_url(&broker, &format!("/app/{APP_KEY}?protocol=7"))).await;
        let hello = c.recv().await;
        if hello["event"] == "pusher:connection_established" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{hello}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Signed in as one user, the second connection is over the per-user cap.
    let user_data = r#"{"id":"u1"}"#;
    for (i, (c, socket_id)) in open.iter_mut().enumerate() {
        let auth = format!(
            "{APP_KEY}:{}",
            sign(&format!("{socket_id}::user::{user_data}"))
        );
        send(
            c,
            json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}),
        )
        .await;
        let answer = c.recv().await;
        if i == 0 {
            assert_eq!(answer["event"], "pusher:signin_success", "{answer}");
        } else {
            assert_eq!(answer["event"], "pusher:error", "{answer}");
            let why = answer["data"]["message"].as_str().unwrap_or_default();
            assert!(why.contains("maximum of 1 connections"), "{answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_pusher_consumer_is_closed_with_4100() {
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.limits.outbound_queue_messages = 4;
            c.pusher.max_event_bytes = 60 * 1024;
        })
        .start();
    let (mut slow, _) = connect(&broker).await;
    subscribe(&mut slow, "firehose").await;
    // It stops reading; events pile up behind it, more than the socket
    // buffers hold. (The close comes after what the buffers held; the
    // default slow_close_grace_ms leaves the time to read it all.)
    let data = "x".repeat(56 * 1024);
    let body = json!({"name":"e","channel":"firehose","data":data}).to_string();
    for _ in 0..400 {
        let (status, _) = signed_post(broker.addr, "/apps/app1/events", &body).await;
        assert_eq!(status, 200);
    }
    assert_eq!(slow.close_code().await, Some(4100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_clients_cannot_reach_pusher_channels() {
    let broker = TestBroker::new().with(|c| pusher_on(c, None)).start();
    let mut native = broker.user("nat").await;
    native
        .err(json!({"type":"join","room":"#app1#news"}), "bad_request")
        .await;
}

/// The requests a webhook receiver read, each as text (head and body).
type Requests = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A webhook receiver that answers every request after `delay` with
/// `status`, and keeps the requests; over TLS with `tls`.
async fn receiver_on(
    status: u16,
    delay: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Requests::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (seen, tls) = (seen.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer(s, status, delay, &seen).await,
                    Some(tls) => {
                        if let Ok(s) = tls.accept(s).await {
                            answer(s, status, delay, &seen).await;
                        }
                    }
                }
            });
        }
    });
    (port, requests)
}

/// [`receiver_on`] over plain HTTP.
async fn receiver(status: u16, delay: Duration) -> (u16, Requests) {
    receiver_on(status, delay, None).await
}

/// Read one request (its head, then `Content-Length` bytes of body), keep
/// it, and answer `status` after `delay`.
async fn answer<S>(mut s: S, status: u16, delay: Duration, seen: &Requests)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(RECV_TIMEOUT, read).await;
    seen.lock()
        .expect("requests")
        .push(String::from_utf8_lossy(&buf).to_string());
    tokio::time::sleep(delay).await;
    let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(reply.as_bytes()).await;
    let _ = s.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhooks_are_retried_then_dropped_and_counted() {
    let (port, requests) = receiver(500, Duration::ZERO).await;
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, Some(port));
            c.pusher.webhook_attempts = 3;
            c.pusher.webhook_backoff_ms = 20;
        })
        .start();
    let (mut c, _) = connect(&broker).await;
    subscribe(&mut c, "hooked").await;
    let metrics = || async {
        let (_, text) = http_get(broker.addr, "/metrics HTTP/1.1").await;
        text
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics().await;
        if text.contains(r#"shardcast_pusher_webhook_events_total{outcome="dropped"} 1"#) {
            assert!(
                text.contains("shardcast_pusher_webhook_failed_attempts_total 3"),
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not dropped in time:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        requests.lock().expect("requests").len(),
        3,
        "three attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_webhook_receiver_never_slows_delivery() {
    // The receiver holds every request for 30 s.
    let (port, _) = receiver(200, Duration::from_secs(30)).await;
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, Some(port));
            c.pusher.webhook_timeout_ms = 60_000;
            c.pusher.webhook_queue = 8;
        })
        .start();
    let (mut a, _) = connect(&broker).await;
    let (mut b, _) = connect(&broker).await;
    let started = std::time::Instant::now();
    // Many channels occupied and vacated: webhook events far beyond the queue.
    for i in 0..40 {
        let channel = format!("busy-{i}");
        subscribe(&mut a, &channel).await;
        subscribe(&mut b, &channel).await;
        let body = json!({"name":"e","channel":channel,"data":"{}"}).to_string();
        let (status, _) = signed_post(broker.addr, "/apps/app1/events", &body).await;
        assert_eq!(status, 200);
        next_event(&mut a, "e").await;
        next_event(&mut b, "e").await;
        send(
            &mut a,
            json!({"event":"pusher:unsubscribe","data":{"channel":channel}}),
        )
        .await;
        send(
            &mut b,
            json!({"event":"pusher:unsubscribe","data":{"channel":channel}}),
        )
        .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "delivery waited for the webhook receiver: {:?}",
        started.elapsed()
    );
    let (_, text) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    let dropped = metric(
        &text,
        r#"shardcast_pusher_webhook_events_total{outcome="dropped"}"#,
    );
    assert!(dropped > 0, "the bounded queue dropped nothing:\n{text}");
}

/// The value of the series `series` in the metrics text `text` (0 if
/// absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Wait until `broker`'s metrics pass `done`; its metrics text.
async fn metrics_until(broker: &Running, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, text) = http_get(broker.addr, "/metrics HTTP/1.1").await;
        if done(&text) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "not in time:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test app's webhooks to `https://localhost:{port}/pusher/webhooks`,
/// with roots from `ca_file` (else the system's).
fn https_hooks(c: &mut shardcast::Config, port: u16, ca_file: Option<&std::path::Path>) {
    pusher_on(c, None);
    c.pusher.webhook_backoff_ms = 20;
    c.pusher.apps[0].webhook_url = format!("https://localhost:{port}/pusher/webhooks");
    c.pusher.apps[0].webhook_ca_file = ca_file.map(|p| p.display().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_reach_a_receiver_of_a_private_ca_signed() {
    let ca = TestCa::new("hooks");
    let (port, requests) = receiver_on(200, Duration::ZERO, Some(ca.acceptor(1))).await;
    let ca_file = ca.write_ca();
    let broker = TestBroker::new()
        .with(|c| https_hooks(c, port, Some(&ca_file)))
        .start();
    let (mut c, _) = connect(&broker).await;
    subscribe(&mut c, "secure-hooks").await;
    let sent = r#"shardcast_pusher_webhook_events_total{outcome="sent"}"#;
    let text = metrics_until(&broker, |t| metric(t, sent) >= 1).await;
    assert_eq!(
        metric(&text, "shardcast_pusher_webhook_failed_attempts_total"),
        0,
        "{text}"
    );
    let request = requests.lock().expect("requests")[0].clone();
    let (head, body) = request.split_once("\r\n\r\n").expect("a whole request");
    assert!(
        head.starts_with("POST /pusher/webhooks HTTP/1.1\r\n"),
        "{head}"
    );
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    assert_eq!(
        header("host").as_deref(),
        Some(&*format!("localhost:{port}"))
    );
    assert_eq!(header("x-pusher-key").as_deref(), Some(APP_KEY));
    assert_eq!(
        header("x-pusher-signature"),
        Some(sign(body)),
        "signed with the app's secret"
    );
    let hook: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(hook["events"][0]["name"], "channel_occupied", "{hook}");
    assert_eq!(hook["events"][0]["channel"], "secure-hooks", "{hook}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_of_an_unknown_ca_is_sent_nothing_and_its_events_are_dropped() {
    let trusted = TestCa::new("hooks-trusted");
    let unknown = TestCa::new("hooks-unknown");
    let (port, requests) = receiver_on(200, Duration::ZERO, Some(unknown.acceptor(2))).await;
    let trusted_file = trusted.write_ca();
    // Another CA's file, then the system's roots: neither knows its CA.
    for ca_file in [Some(trusted_file.as_path()), None] {
        let broker = TestBroker::new()
            .with(|c| {
                https_hooks(c, port, ca_file);
                c.pusher.webhook_attempts = 2;
            })
            .start();
        let (mut c, _) = connect(&broker).await;
        subscribe(&mut c, "unchecked").await;
        let dropped = r#"shardcast_pusher_webhook_events_total{outcome="dropped"}"#;
        let text = metrics_until(&broker, |t| metric(t, dropped) >= 1).await;
        assert_eq!(
            metric(&text, "shardcast_pusher_webhook_failed_attempts_total"),
            2,
            "{ca_file:?}: {text}"
        );
        let sent = r#"shardcast_pusher_webhook_events_total{outcome="sent"}"#;
        assert_eq!(metric(&text, sent), 0, "{text}");
    }
    assert!(
        requests.lock().expect("requests").is_empty(),
        "a request went to a receiver whose certificate did not check"
    );
}

#[test]
fn a_bad_webhook_ca_file_stops_startup_naming_it() {
    let ca = TestCa::new("hooks-bad");
    let garbage = ca.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    for path in [garbage, ca.dir.join("missing.pem")] {
        let err = TestBroker::new()
            .with(|c| https_hooks(c, 1, Some(&path)))
            .start_err();
        assert!(err.contains("pusher.apps.webhook_ca_file"), "{err}");
        assert!(err.contains(&*path.display().to_string()), "{err}");
    }
}

/// POST `body` to the Pusher API at `path`, signed for the test app.
pub(crate) async fn signed_post(
    addr: std::net::SocketAddr,
    path: &str,
    body: &str,
) -> (u16, Value) {
    signed(addr, "POST", path, &[], body).await
}

/// A request to the Pusher API, signed for the test app: `params` are
/// extra query parameters (signed too); the answer's status and JSON body.
pub(crate) async fn signed(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, text) = signed_text(addr, method, path, params, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// [`signed`], with the body as text (refusals are plain text).
async fn signed_text(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use md5::Digest;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let md5 = hex::encode(md5::Md5::digest(body.as_bytes()));
    let mut all: Vec<(&str, &str)> = vec![
        ("auth_key", APP_KEY),
        ("auth_timestamp", &ts),
        ("auth_version", "1.0"),
    ];
    if !body.is_empty() {
        all.push(("body_md5", &md5));
    }
    all.extend_from_slice(params);
    all.sort();
    let query: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = query.join("&");
    let signature = sign(&format!("{method}\n{path}\n{query}"));
    let target = format!("{path}?{query}&auth_signature={signature}");
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let (status, text) = exchange(addr, &req).await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pusher_api_refuses_with_the_documented_status_and_says_why() {
    let broker = TestBroker::new().with(|c| pusher_on(c, None)).start();
    let addr = broker.addr;
    /// (method, path, extra query, body, status, what the refusal says)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/apps/nope/events",
            vec![],
            r#"{"name":"e","channel":"a","data":"{}"}"#.into(),
            404,
            "unknown app",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            "{".into(),
            400,
            "invalid JSON",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            r#"{"name":"e","channel":"a","channels":["b"],"data":"{}"}"#.into(),
            400,
            "either",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            r#"{"name":"e","channels":[],"data":"{}"}"#.into(),
            400,
            "1 to 100",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            r#"{"name":"e","channel":"a b","data":"{}"}"#.into(),
            400,
            "invalid channel",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            r#"{"name":"","channel":"a","data":"{}"}"#.into(),
            400,
            "event name",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            r#"{"name":"e","channel":"a","data":"{}","socket_id":"x"}"#.into(),
            400,
            "socket_id",
        ),
        (
            "POST",
            "/apps/app1/events",
            vec![],
            r#"{"name":"e","channel":"a","data":"{}","extra":1}"#.into(),
            400,
            "unknown field",
        ),
        (
            "POST",
            "/apps/app1/batch_events",
            vec![],
            format!(
                r#"{{"batch":[{}]}}"#,
                [r#"{"name":"e","channel":"a","data":"{}"}"#; 11].join(",")
            ),
            400,
            "at most 10",
        ),
        (
            "GET",
            "/apps/app1/channels",
            vec![("info", "user_count")],
            String::new(),
            400,
            "presence-",
        ),
        (
            "GET",
            "/apps/app1/channels/public/users",
            vec![],
            String::new(),
            400,
            "presence channels only",
        ),
        (
            "GET",
            "/apps/app1/channels/a%20b",
            vec![],
            String::new(),
            400,
            "invalid channel",
        ),
        (
            "POST",
            "/apps/app1/nowhere",
            vec![],
            "{}".into(),
            404,
            "no Pusher API endpoint",
        ),
    ];
    for (method, path, params, body, status, needle) in cases {
        let (got, text) = signed_text(addr, method, path, &params, &body).await;
        assert_eq!(got, status, "{method} {path} {body}: {text}");
        assert!(
            text.contains(needle),
            "{method} {path}: {text:?} lacks {needle:?}"
        );
    }
    // Unsigned, stale, or with the wrong key: 401, saying which.
    let (status, text) = signed_text(addr, "GET", "/apps/app1/channels", &[], "").await;
    assert_eq!((status, text.contains("channels")), (200, true), "{text}");
    for (query, needle) in [
        ("", "missing query parameter auth_key"),
        (
            "auth_key=app-key&auth_timestamp=1&auth_version=1.0&auth_signature=00",
            "auth_timestamp",
        ),
        (
            "auth_key=other&auth_timestamp=1&auth_version=1.0&auth_signature=00",
            "auth_key",
        ),
        (
            "auth_key=app-key&auth_timestamp=1&auth_version=2.0&auth_signature=00",
            "auth_version",
        ),
    ] {
        let (status, _) = http(
            addr,
            "GET",
            &format!("/apps/app1/channels?{query}"),
            &[],
            None,
        )
        .await;
        assert_eq!(status, 401, "{query}");
        let (_, raw) = http_get(addr, &format!("/apps/app1/channels?{query} HTTP/1.1")).await;
        assert!(raw.contains(needle), "{query}: {raw}");
    }
    // A well-signed terminate of a user nobody signed in as: {}.
    let (status, body) = signed(
        addr,
        "POST",
        "/apps/app1/users/nobody/terminate_connections",
        &[],
        "{}",
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
}

/// Issue 17's namespaces hold behind the Pusher endpoint too: a channel
/// takes the rules of the namespace its channel name starts with. A public
/// channel in a private namespace cannot be subscribed (its room would be
/// public, which the namespace forbids), a signed private channel there
/// can; a namespace's cap closes a full channel; and a client event's
/// `data` is checked against the namespace's schema before anyone gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_apply_to_pusher_channels_by_channel_name() {
    use crate::namespaces::namespace;
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat.schema.json");
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.room.namespaces = vec![
                namespace("team-", |n| n.private = Some(true)),
                namespace("private-team-", |n| n.private = Some(true)),
                namespace("game-", |n| n.max_members = Some(1)),
                namespace("private-chat-", |n| n.schema_file = schema.into()),
            ];
        })
        .start();
    let (mut a, a_id) = connect(&broker).await;
    let (mut b, b_id) = connect(&broker).await;

    send(
        &mut a,
        json!({"event":"pusher:subscribe","data":{"channel":"team-red"}}),
    )
    .await;
    let refused = next_event(&mut a, "pusher:subscription_error").await;
    assert_eq!(refused["channel"], "team-red", "{refused}");
    assert_eq!(refused["data"]["status"], 403, "{refused}");
    let ok = subscribe_signed(&mut a, &a_id, "private-team-red", None).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );

    subscribe(&mut a, "game-1").await;
    send(
        &mut b,
        json!({"event":"pusher:subscribe","data":{"channel":"game-1"}}),
    )
    .await;
    let full = next_event(&mut b, "pusher:subscription_error").await;
    assert_eq!(full["channel"], "game-1", "{full}");
    assert!(
        full["data"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{full}"
    );

    for (c, id) in [(&mut a, &a_id), (&mut b, &b_id)] {
        let ok = subscribe_signed(c, id, "private-chat-1", None).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }
    send(
        &mut a,
        json!({"event":"client-say","channel":"private-chat-1","data":{"text": 42}}),
    )
    .await;
    let refused = next_event(&mut a, "pusher:error").await;
    assert!(
        refused["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("schema") && m.contains("private-chat-")),
        "{refused}"
    );
    send(
        &mut a,
        json!({"event":"client-say","channel":"private-chat-1","data":{"text": "hi"}}),
    )
    .await;
    let got = next_event(&mut b, "client-say").await;
    assert_eq!(got["data"], json!({"text": "hi"}), "{got}");
}

/// The server's heartbeat on a Pusher connection is `pusher:ping` (a page
/// cannot see WebSocket pings): a client that answers `pusher:pong` stays
/// past the heartbeat timeout, one that stays silent is closed with 4201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_with_pusher_ping_and_closes_the_silent_with_4201() {
    let broker = TestBroker::new()
        .with(|c| {
            pusher_on(c, None);
            c.limits.heartbeat_interval_ms = 200;
            c.limits.heartbeat_timeout_ms = 600;
        })
        .start();
    let (mut answering, _) = connect(&broker).await;
    let (mut silent, _) = connect(&broker).await;
    let started = std::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let ping = next_event(&mut answering, "pusher:ping").await;
        assert_eq!(ping["data"], json!({}), "{ping}");
        pings += 1;
        send(&mut answering, json!({"event":"pusher:pong","data":{}})).await;
    }
    assert!(pings >= 3, "{pings} pings in 1.5 s at a 200 ms interval");
    assert_eq!(silent.close_code().await, Some(4201));
    // The answering one is still there.
    send(&mut answering, json!({"event":"pusher:ping","data":{}})).await;
    assert_eq!(
        next_event(&mut answering, "pusher:pong").await["event"],
        "pusher:pong"
    );
}
