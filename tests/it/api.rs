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
    // The kicked connection goes once its close handshake ends.
    let mut stats = Value::Null;
    for _ in 0..100 {
        let (status, body) = http(broker.addr, "GET", "/api/stats", &[], None).await;
        assert_eq!(status, 200);
        stats = body;
        if stats["connections"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let shards = stats["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    let conns: u64 = shards
        .iter()
        .map(|s| s["connections"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(conns, 1, "{stats}");
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
