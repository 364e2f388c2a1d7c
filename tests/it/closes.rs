//! Close codes and framing errors: each ends only the offending connection.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::harness::*;

#[tokio::test]
async fn invalid_utf8_closes_1007_and_others_are_unaffected() {
    let broker = TestBroker::new().start();
    let mut good = broker.user("good").await;
    good.join("r").await;
    let mut bad = raw_ws(broker.addr, "?user=bad").await;
    bad.write_all(&raw_frame(true, 0x1, &[0x7B, 0xFF, 0x7D], true))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut bad).await, Some(1007));
    good.ok(json!({"type":"publish","room":"r","data":"still here"}))
        .await;
    assert_eq!(good.recv_type("message").await["data"], "still here");
}

#[tokio::test]
async fn unmasked_frame_closes_1002() {
    let broker = TestBroker::new().start();
    let mut s = raw_ws(broker.addr, "").await;
    s.write_all(&raw_frame(true, 0x1, br#"{"type":"ping"}"#, false))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut s).await, Some(1002));
}

#[tokio::test]
async fn oversize_message_closes_1009() {
    let broker = TestBroker::new()
        .with(|c| c.limits.max_message_bytes = 1024)
        .start();
    let mut c = broker.user("u").await;
    let big = format!(r#"{{"type":"ping","x":"{}"}}"#, "a".repeat(2000));
    c.send_raw(Message::text(big)).await;
    assert_eq!(c.close_code().await, Some(1009));
}

#[tokio::test]
async fn fragmented_messages_reassemble_and_are_capped() {
    let broker = TestBroker::new()
        .with(|c| c.limits.max_message_bytes = 1024)
        .start();
    let mut c = broker.user("u").await;
    let text = br#"{"type":"ping","id":42}"#;
    let (a, b) = text.split_at(10);
    c.send_raw(Message::Frame(Frame::message(
        a.to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    c.send_raw(Message::Frame(Frame::message(
        b.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    assert_eq!(c.recv().await, json!({"type":"pong","id":42}));
    // Many small fragments adding up past the limit.
    let mut s = raw_ws(broker.addr, "").await;
    let mut bytes = raw_frame(false, 0x1, &[b'a'; 100], true);
    for _ in 0..20 {
        bytes.extend(raw_frame(false, 0x0, &[b'a'; 100], true));
    }
    s.write_all(&bytes).await.expect("write");
    assert_eq!(raw_close_code(&mut s).await, Some(1009));
}

#[tokio::test]
async fn client_close_is_answered() {
    let broker = TestBroker::new().start();
    let mut c = broker.user("u").await;
    c.ws.close(None).await.expect("close");
    assert_eq!(c.close_code().await, Some(1000));
}

#[tokio::test]
async fn heartbeat_timeout_closes_4001() {
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.heartbeat_interval_ms = 100;
            c.limits.heartbeat_timeout_ms = 200;
        })
        .start();
    // A raw client that never answers pings.
    let mut s = raw_ws(broker.addr, "").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(raw_close_code(&mut s).await, Some(4001));
    // A client that answers pings (tungstenite does) stays.
    let mut c = broker.user("alive").await;
    for _ in 0..5 {
        assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn handshake_timeout_drops_silent_sockets() {
    let broker = TestBroker::new()
        .with(|c| c.limits.handshake_timeout_ms = 200)
        .start();
    let mut s = tokio::net::TcpStream::connect(broker.addr)
        .await
        .expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\n").await.expect("write");
    let mut buf = [0u8; 64];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut buf))
        .await
        .expect("server must close")
        .unwrap_or(0);
    let _ = n;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bad_upgrade_requests_get_400() {
    let broker = TestBroker::new().start();
    let (status, text) = http_get(
        broker.addr,
        "/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(http_body(&text)["error"]["code"], "bad_request");
    let (status, text) = http_get(
        broker.addr,
        "/ws?user=bad%20name HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        http_body(&text)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("user"))
    );
}

#[tokio::test]
async fn echo_endpoint_is_off_by_default_and_shares_the_connection_layer() {
    let broker = TestBroker::new().start();
    let (status, _) = http_get(broker.addr, "/echo HTTP/1.1").await;
    assert_eq!(status, 404);
    let broker = TestBroker::new()
        .with(|c| {
            c.server.echo_path = "/echo".into();
            c.limits.max_message_bytes = 1024;
        })
        .start();
    let url = format!("ws://{}/echo", broker.addr);
    let mut c = Client::connect(&url).await;
    c.send_raw(Message::text("not even json")).await;
    match c.ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "not even json"),
        other => panic!("{other:?}"),
    }
    c.send_raw(Message::binary(vec![0u8, 1, 2, 255])).await;
    match c.ws.next().await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &[0u8, 1, 2, 255]),
        other => panic!("{other:?}"),
    }
    // The same limits and checks as /ws.
    c.send_raw(Message::text("x".repeat(2000))).await;
    assert_eq!(c.close_code().await, Some(1009));
    let mut s = raw_ws_path(broker.addr, "/echo").await;
    s.write_all(&raw_frame(true, 0x1, &[0xFF], true))
        .await
        .expect("write");
    assert_eq!(raw_close_code(&mut s).await, Some(1007));
    // A config with a bad echo path is refused.
    let mut config =
        shardcast::Config::load_from(None, &[], &shardcast::Overrides::default()).expect("config");
    config.server.echo_path = "/ws".into();
    assert!(config.validate().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_arrive_with_the_peers_fin_are_still_handled() {
    use tokio::io::AsyncWriteExt;
    let broker = TestBroker::new().shards(1).start();
    let mut member = broker.user("member").await;
    member.join("r").await;
    // A client that sends its last frames and half-closes at once: the
    // server reads the frames and the FIN in one burst.
    for i in 0..20 {
        let mut s = raw_ws(broker.addr, &format!("?user=leaver{i}")).await;
        let mut bytes = raw_frame(true, 1, br#"{"type":"join","room":"r"}"#, true);
        let publish = format!(r#"{{"type":"publish","room":"r","data":{i}}}"#);
        bytes.extend(raw_frame(true, 1, publish.as_bytes(), true));
        s.write_all(&bytes).await.expect("write");
        s.shutdown().await.expect("half-close");
        let msg = member.recv_type("message").await;
        assert_eq!(msg["data"], i, "{msg}");
    }
}
