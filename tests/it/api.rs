//! The HTTP API (PROTOCOL.md section 4) with a real HTTP client, and its
//! effects on real WebSocket clients.

use serde_json::{Value, json};

use crate::harness::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");

async fn post(broker: &Running, path: &str, body: Value) -> (u16, Value) {
    http(broker.addr, "POST", path, &[JSON], Some(&body.to_string())).await
}

#[tokio::test]
async fn rooms_crud_and_room_closed() {
    let broker = TestBroker::new().shards(3).start();
    let (status, body) = post(
        &broker,
        "/api/rooms",
        json!({"room":"news","max_members":5,"history":10}),
    )
    .await;
    assert_eq!(
        (status, body["room"].clone()),
        (201, json!("news")),
        "{body}"
    );
    let (status, body) = post(&broker, "/api/rooms", json!({"room":"news"})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("room_exists"))
    );
    let mut a = broker.connect("user=a&name=Ann").await;
    a.recv().await;
    a.join("news").await;
    let (status, list) = http(broker.addr, "GET", "/api/rooms", &[], None).await;
    assert_eq!(status, 200);
    let news = list
        .as_array()
        .and_then(|l| l.iter().find(|r| r["room"] == "news"))
        .expect("listed")
        .clone();
    assert_eq!(
        (news["members"].clone(), news["max_members"].clone()),
        (json!(1), json!(5))
    );
    let (status, details) = http(broker.addr, "GET", "/api/rooms/news", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(details["member_list"][0]["user"], "a");
    assert_eq!(details["member_list"][0]["name"], "Ann");
    let (status, body) = http(broker.addr, "GET", "/api/rooms/nothing", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("room_not_found"))
    );
    let (status, _) = http(broker.addr, "DELETE", "/api/rooms/news", &[], None).await;
    assert_eq!(status, 200);
    let closed = a.recv_type("room_closed").await;
    assert_eq!(closed["room"], "news");
    // Gone for the member too.
    a.err(
        json!({"type":"publish","room":"news","data":1}),
        "room_not_found",
    )
    .await;
    let (status, _) = http(broker.addr, "DELETE", "/api/rooms/news", &[], None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn publish_as_system_notify_and_broadcast() {
    let broker = TestBroker::new().shards(3).start();
    let mut members = Vec::new();
    for i in 0..4 {
        let mut c = broker.user(&format!("m{i}")).await;
        c.join("live").await;
        members.push(c);
    }
    let mut twin1 = broker.user("twin").await;
    let mut twin2 = broker.user("twin").await;
    let (status, body) = post(
        &broker,
        "/api/publish",
        json!({"room":"live","data":{"score":3}}),
    )
    .await;
    assert_eq!((status, body["seq"].clone()), (200, json!(1)), "{body}");
    for m in &mut members {
        let msg = m.recv_type("message").await;
        assert_eq!(
            (msg["from"].clone(), msg["data"].clone()),
            (json!("system"), json!({"score":3}))
        );
    }
    let (status, body) = post(&broker, "/api/publish", json!({"room":"dead","data":1})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("room_not_found"))
    );
    let (status, body) = post(&broker, "/api/notify", json!({"user":"twin","data":"ding"})).await;
    assert_eq!((status, body["delivered"].clone()), (200, json!(2)));
    for t in [&mut twin1, &mut twin2] {
        let n = t.recv_type("notification").await;
        assert_eq!(n["data"], "ding");
        assert!(n["ts"].as_u64().is_some());
    }
    let (_, body) = post(&broker, "/api/notify", json!({"user":"nobody","data":1})).await;
    assert_eq!(body["delivered"], 0);
    let (status, body) = post(&broker, "/api/broadcast", json!({"data":"all"})).await;
    assert_eq!((status, body["delivered"].clone()), (200, json!(6)));
    for m in &mut members {
        assert_eq!(m.recv_type("notification").await["data"], "all");
    }
}

#[tokio::test]
async fn kick_and_stats() {
    let broker = TestBroker::new().shards(2).start();
    let mut victim = broker.user("v").await;
    let mut other = broker.user("o").await;
    other.join("r").await;
    let path = format!("/api/connections/{}", victim.conn);
    let (status, _) = http(broker.addr, "DELETE", &path, &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(victim.close_code().await, Some(1008));
    let (status, body) = http(broker.addr, "DELETE", "/api/connections/999999", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    drop(victim);
    // The kicked connection goes once its close handshake ends: from its
    // shard's table first, then from the node's count. A response gathers
    // the shards' figures before it reads the node's, so it may show the
    // one gone and not the other; wait until both say so.
    let shard_connections = |stats: &Value| -> u64 {
        stats["shards"]
            .as_array()
            .map(|shards| {
                shards
                    .iter()
                    .map(|s| s["connections"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let mut stats = Value::Null;
    for _ in 0..100 {
        let (status, body) = http(broker.addr, "GET", "/api/stats", &[], None).await;
        assert_eq!(status, 200);
        stats = body;
        if stats["connections"] == 1 && shard_connections(&stats) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let shards = stats["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(shard_connections(&stats), 1, "{stats}");
    for key in [
        "rooms_homed",
        "queued_frames",
        "dropped_total",
        "slow_consumer_closes_total",
        "published_total",
    ] {
        assert!(shards[0][key].is_number(), "{key}");
    }
}

#[tokio::test]
async fn every_api_error() {
    let broker = TestBroker::new()
        .with(|c| {
            c.api.keys = vec!["key-0123456789abcdef".into()];
            c.api.max_body_bytes = 256;
        })
        .start();
    let auth = ("Authorization", "Bearer key-0123456789abcdef");
    let (status, body) = http(broker.addr, "GET", "/api/rooms", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    let (status, _) = http(
        broker.addr,
        "GET",
        "/api/rooms",
        &[("Authorization", "Bearer wrong-key-000000000")],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(broker.addr, "GET", "/api/rooms", &[auth], None).await;
    assert_eq!(status, 200);
    let (status, body) = http(broker.addr, "GET", "/api/nothing", &[auth], None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, body) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[auth],
        Some(r#"{"room":"a"}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (415, json!("unsupported_media_type"))
    );
    let (status, body) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[auth, JSON],
        Some("{nope"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (status, _) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[auth, JSON],
        Some(r#"{"room":"a","colour":1}"#),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[auth, JSON],
        Some(r#"{"room":"bad name"}"#),
    )
    .await;
    assert_eq!(status, 400);
    let big = json!({"room":"a","data":"x".repeat(300)}).to_string();
    let (status, body) = http(
        broker.addr,
        "POST",
        "/api/publish",
        &[auth, JSON],
        Some(&big),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (413, json!("payload_too_large"))
    );
    let (status, _) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[auth, JSON],
        Some(r#"{"room":"a"}"#),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[auth, JSON],
        Some(r#"{"room":"a"}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("room_exists"))
    );
    let (status, _) = http(broker.addr, "DELETE", "/api/connections/abc", &[auth], None).await;
    assert_eq!(status, 400);
}

/// Parse Prometheus/OpenMetrics text into (name{labels}, value); panics on
/// a malformed line.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF terminator");
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((series.to_string(), value));
    }
    samples
}

fn sum(samples: &[(String, f64)], prefix: &str, needle: &str) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| s.starts_with(prefix) && s.contains(needle))
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(broker: &Running) -> Vec<(String, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(broker.addr)
        .await
        .expect("connect");
    s.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            broker.addr
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Chunked or not, the body lines are the exposition (chunk sizes are
    // not valid sample lines, so strip them if present).
    let body: String = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        body.to_string()
    };
    parse_metrics(&body)
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let broker = TestBroker::new()
        .shards(2)
        .with(|c| c.limits.max_connections_per_user = 1)
        .start();
    let before = scrape(&broker).await;
    assert_eq!(
        sum(&before, "shardcast_frames_in_total", "type=\"publish\""),
        0.0
    );
    let mut a = broker.user("a").await;
    let mut b = broker.user("b").await;
    a.join("m").await;
    b.join("m").await;
    for i in 0..5 {
        a.ok(json!({"type":"publish","room":"m","data":i})).await;
    }
    a.err(
        json!({"type":"publish","room":"nope","data":1}),
        "room_not_found",
    )
    .await;
    // A refused upgrade (per-user cap).
    assert!(
        tokio_tungstenite::connect_async(broker.url("user=a"))
            .await
            .is_err()
    );
    for _ in 0..5 {
        b.recv_type("message").await;
    }
    let after = scrape(&broker).await;
    assert_eq!(
        sum(&after, "shardcast_frames_in_total", "type=\"publish\""),
        6.0
    );
    assert_eq!(
        sum(&after, "shardcast_frames_in_total", "type=\"join\""),
        2.0
    );
    assert_eq!(sum(&after, "shardcast_messages_published_total", ""), 5.0);
    assert_eq!(sum(&after, "shardcast_deliveries_total", ""), 10.0);
    // b read all five, so at least those writes were timed.
    let timed = sum(&after, "shardcast_publish_to_write_seconds_count", "");
    assert!((5.0..=10.0).contains(&timed), "{timed}");
    assert!(
        sum(
            &after,
            "shardcast_publish_to_write_seconds_bucket",
            "le=\"+Inf\""
        ) >= 5.0
    );
    assert_eq!(
        sum(
            &after,
            "shardcast_errors_out_total",
            "code=\"room_not_found\""
        ),
        1.0
    );
    assert_eq!(
        sum(
            &after,
            "shardcast_handshake_refusals_total",
            "code=\"too_many_connections\""
        ),
        1.0
    );
    assert_eq!(sum(&after, "shardcast_connections", "shard="), 2.0);
    assert_eq!(sum(&after, "shardcast_connects_total", ""), 2.0);
    assert!(sum(&after, "shardcast_process_resident_memory_bytes", "") > 0.0);
    let rooms: f64 = after
        .iter()
        .filter(|(s, _)| s == "shardcast_rooms")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(rooms, 1.0);
    drop(a);
    for _ in 0..100 {
        if sum(&scrape(&broker).await, "shardcast_disconnects_total", "") >= 1.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("a disconnect was never counted");
}
