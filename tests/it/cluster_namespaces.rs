//! Namespaces in cluster mode: two nodes with the same namespaces behave as
//! one, and a node whose namespaces differ from a live node's does not
//! start.

use std::time::Duration;

use serde_json::json;
use shardcast::StartError;
use shardcast::config::{NamespaceConfig, OverflowPolicy};

use crate::harness::*;
use crate::namespaces::{chat_schema, details, namespace, post, token};
use crate::redis::{Redis, node};

/// Like the README's example: `chat-` with the chat schema, `team-`
/// private, `news-` for the API only and without events, `game-` made by
/// `create` only, capped at 2 with `drop` and no history.
fn namespaces() -> Vec<NamespaceConfig> {
    vec![
        namespace("chat-", |n| n.schema_file = chat_schema()),
        namespace("team-", |n| n.private = Some(true)),
        namespace("news-", |n| {
            n.client_publish = Some(false);
            n.presence_events = Some(false);
        }),
        namespace("game-", |n| {
            n.auto_create = Some(false);
            n.max_members = Some(2);
            n.history = Some(0);
            n.overflow = Some(OverflowPolicy::Drop);
        }),
    ]
}

fn namespaced(redis: &Redis, name: &str, list: Vec<NamespaceConfig>) -> TestBroker {
    node(redis, name).with(move |c| {
        c.auth.mode = shardcast::config::AuthMode::Jwt;
        c.auth.secret = JWT_SECRET.into();
        c.room.namespaces = list;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn two_nodes_with_the_same_namespaces_behave_as_one() {
    let redis = Redis::start();
    let a = namespaced(&redis, "node-a", namespaces()).start();
    let b = namespaced(&redis, "node-b", namespaces()).start();
    let team = Some(&["team-*"][..]);

    // team-*: the squatter on A cannot make or enter the room; its owners
    // on both nodes can.
    let mut mallory = with_token(&a, &token("mallory", None, None)).await;
    mallory
        .err(json!({"type": "join", "room": "team-red"}), "forbidden")
        .await;
    let (status, _) = http(a.addr, "GET", "/api/rooms/team-red", &[], None).await;
    assert_eq!(status, 404, "the refused join made no room");
    let mut alice = with_token(&b, &token("alice", None, team)).await;
    let mut bob = with_token(&a, &token("bob", None, team)).await;
    alice.join("team-red").await;
    bob.join("team-red").await;
    mallory
        .err(json!({"type": "join", "room": "team-red"}), "forbidden")
        .await;
    mallory
        .err(json!({"type": "members", "room": "team-red"}), "forbidden")
        .await;
    alice
        .ok(json!({"type": "publish", "room": "team-red", "data": "plan"}))
        .await;
    assert_eq!(bob.recv_type("message").await["data"], "plan");
    mallory.silent(Duration::from_millis(300)).await;
    let red = details(a.addr, "team-red").await;
    assert_eq!(
        (red["namespace"].clone(), red["private"].clone()),
        (json!("team-"), json!(true))
    );
    let refused = bob
        .err(
            json!({"type": "create", "room": "team-blue", "private": false}),
            "forbidden",
        )
        .await;
    assert_says(&refused, "`private: false`");

    // chat-*: the schema holds on both nodes; refused data takes no seq.
    alice.join("chat-1").await;
    bob.join("chat-1").await;
    let refused = bob
        .err(
            json!({"type": "publish", "room": "chat-1", "data": {"text": 1}}),
            "invalid_data",
        )
        .await;
    assert_says(&refused, "/text: not of type \"string\"");
    let (status, _) = post(b.addr, "/api/publish", json!({"room": "chat-1", "data": 1})).await;
    assert_eq!(status, 422);
    let ack = alice
        .ok(json!({"type": "publish", "room": "chat-1", "data": {"text": "hi"}}))
        .await;
    assert_eq!(ack["seq"], 1);
    let m = bob.recv_type("message").await;
    assert_eq!(
        (m["room"].clone(), m["seq"].clone()),
        (json!("chat-1"), json!(1))
    );

    // news-*: clients may not publish; the API on either node may; no events.
    let mut reader = with_token(&a, &token("reader", None, None)).await;
    reader.join("news-1").await;
    let mut other = with_token(&b, &token("other", None, None)).await;
    other.join("news-1").await;
    other
        .err(
            json!({"type": "publish", "room": "news-1", "data": 1}),
            "forbidden",
        )
        .await;
    let (status, _) = post(
        b.addr,
        "/api/publish",
        json!({"room": "news-1", "data": "extra"}),
    )
    .await;
    assert_eq!(status, 200);
    let first = reader.recv().await;
    assert_eq!(
        (first["type"].clone(), first["data"].clone()),
        (json!("message"), json!("extra")),
        "no `joined` from the other node first"
    );

    // game-*: made by create only, with the namespace's options, capped
    // across nodes.
    other
        .err(json!({"type": "join", "room": "game-1"}), "room_not_found")
        .await;
    let (status, _) = post(
        a.addr,
        "/api/rooms",
        json!({"room": "game-1", "max_members": 3}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(a.addr, "/api/rooms", json!({"room": "game-1"})).await;
    assert_eq!(status, 201);
    reader.join("game-1").await;
    other.join("game-1").await;
    mallory
        .err(json!({"type": "join", "room": "game-1"}), "room_full")
        .await;
    let game = details(b.addr, "game-1").await;
    assert_eq!(game["namespace"], "game-");
    assert_eq!(
        (
            game["max_members"].clone(),
            game["options"]["overflow"].clone(),
            game["options"]["history"].clone()
        ),
        (json!(2), json!("drop"), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_node_with_other_namespaces_does_not_start() {
    let redis = Redis::start();
    let a = namespaced(&redis, "node-a", namespaces()).start();
    // `team-` public here: the node would let a squatter in.
    let mut other = namespaces();
    other[1].private = None;
    let err = namespaced(&redis, "node-b", other.clone())
        .try_start()
        .err()
        .expect("node-b does not start");
    assert!(matches!(err, StartError::Cluster(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("node node-a of this cluster runs with other room namespaces"),
        "{text}"
    );
    // No namespaces at all differs too.
    let bare = namespaced(&redis, "node-c", Vec::new()).try_start();
    assert!(bare.is_err(), "a node without namespaces joined");
    // The same namespaces join; with every such node gone (drained), the
    // other configuration may start.
    let c = namespaced(&redis, "node-c", namespaces()).start();
    drop(a);
    drop(c);
    let b = namespaced(&redis, "node-b", other).start();
    let mut squatter = with_token(&b, &token("mallory", None, None)).await;
    squatter.join("team-red").await;
}
