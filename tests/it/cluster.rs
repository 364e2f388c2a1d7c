//! Cluster mode: two or three real nodes and a real `redis-server` (each
//! test starts its own on a free port, so tests share nothing).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shardcast::{Broker, Config, Overrides};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;
use crate::redis::{Redis, node};

/// Frames of type `kind` until one matches `pred`.
async fn recv_until(c: &mut Client, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = c.recv_type(kind).await;
        if pred(&v) {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn one_total_order_across_two_nodes_and_history_from_redis() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = a.user(&format!("ma{i}")).await;
        m.join("lobby").await;
        members.push(m);
        let mut m = b.user(&format!("mb{i}")).await;
        m.join("lobby").await;
        members.push(m);
    }
    let mut pa = a.user("pa").await;
    pa.join("lobby").await;
    let mut pb = b.user("pb").await;
    pb.join("lobby").await;
    const EACH: u64 = 150;
    let publish_a = tokio::spawn(async move {
        for i in 0..EACH {
            pa.ok(json!({"type": "publish", "room": "lobby", "data": {"from": "a", "i": i}}))
                .await;
        }
        pa
    });
    let publish_b = tokio::spawn(async move {
        for i in 0..EACH {
            pb.ok(json!({"type": "publish", "room": "lobby", "data": {"from": "b", "i": i}}))
                .await;
        }
        pb
    });
    let _pa = publish_a.await.expect("publisher a");
    let _pb = publish_b.await.expect("publisher b");
    let mut orders = Vec::new();
    for m in &mut members {
        let mut order = Vec::new();
        for expected in 1..=2 * EACH {
            let msg = m.recv_type("message").await;
            assert_eq!(msg["seq"], expected, "gap-free, in seq order: {msg}");
            order.push((msg["data"]["from"].clone(), msg["data"]["i"].clone()));
        }
        orders.push(order);
    }
    for order in &orders[1..] {
        assert_eq!(
            order, &orders[0],
            "every member on every node sees one order"
        );
    }
    // A client that reconnects to the other node recovers from Redis.
    let mut late = b.user("late").await;
    let ack = late
        .ok(json!({"type": "join", "room": "lobby", "since": 2 * EACH - 5}))
        .await;
    assert_eq!(ack["seq"], 2 * EACH);
    assert_eq!(ack["recovered"], true, "{ack}");
    let seqs: Vec<u64> = ack["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (2 * EACH - 4..=2 * EACH).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn presence_members_and_leave_cross_nodes() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut alice = a.connect("user=alice&name=Alice").await;
    alice.recv_type("welcome").await;
    alice.join("team").await;
    let mut bob = b.connect("user=bob").await;
    bob.recv_type("welcome").await;
    let ack = bob.join("team").await;
    assert_eq!(ack["members"], 2, "{ack}");
    let joined = alice.recv_type("joined").await;
    assert_eq!(
        (joined["user"].clone(), joined["members"].clone()),
        (json!("bob"), json!(2))
    );
    let list = alice.ok(json!({"type": "members", "room": "team"})).await;
    assert_eq!(list["total"], 2, "{list}");
    let mut users: Vec<String> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user"].as_str().expect("user").to_string())
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"]);
    let conns: std::collections::HashSet<u64> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["conn"].as_u64().expect("conn"))
        .collect();
    assert_eq!(conns.len(), 2, "connection ids differ across nodes: {list}");
    let (status, details) = http(b.addr, "GET", "/api/rooms/team", &[], None).await;
    assert_eq!(
        (status, details["members"].clone()),
        (200, json!(2)),
        "{details}"
    );
    bob.ok(json!({"type": "leave", "room": "team"})).await;
    let left = alice.recv_type("left").await;
    assert_eq!(
        (left["user"].clone(), left["members"].clone()),
        (json!("bob"), json!(1))
    );
    // A closed connection leaves too.
    let mut carol = b.user("carol").await;
    carol.join("team").await;
    recv_until(&mut alice, "joined", |v| v["user"] == "carol").await;
    drop(carol);
    let left = recv_until(&mut alice, "left", |v| v["user"] == "carol").await;
    assert_eq!(left["members"], 1);
    // Publishing needs membership, on any node.
    bob.err(
        json!({"type": "publish", "room": "team", "data": 1}),
        "not_member",
    )
    .await;
    bob.err(
        json!({"type": "publish", "room": "nowhere", "data": 1}),
        "room_not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn max_members_holds_across_nodes() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let (status, _) = http(
        a.addr,
        "POST",
        "/api/rooms",
        &[("Content-Type", "application/json")],
        Some(r#"{"room":"tiny","max_members":3}"#),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = http(
        b.addr,
        "POST",
        "/api/rooms",
        &[("Content-Type", "application/json")],
        Some(r#"{"room":"tiny"}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("room_exists"))
    );
    let mut joins = Vec::new();
    for i in 0..10 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        joins.push(tokio::spawn(async move {
            let mut c = Client::connect(&format!("ws://{addr}/ws?user=u{i}")).await;
            c.recv_type("welcome").await;
            let reply = c.request(json!({"type": "join", "room": "tiny"})).await;
            (reply, c)
        }));
    }
    let mut admitted = 0;
    let mut clients = Vec::new();
    for j in joins {
        let (reply, c) = j.await.expect("join task");
        if reply["type"] == "ack" {
            admitted += 1;
        } else {
            assert_eq!(reply["code"], "room_full", "{reply}");
        }
        clients.push(c);
    }
    assert_eq!(admitted, 3, "max_members is one cap for the whole cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn send_broadcast_notify_and_api_reach_other_nodes() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut sender = a.user("sender").await;
    let mut dana = b.user("dana").await;
    let mut dana2 = a.user("dana").await;
    sender
        .ok(json!({"type": "send", "to": "dana", "data": {"hi": 1}}))
        .await;
    for d in [&mut dana, &mut dana2] {
        let direct = d.recv_type("direct").await;
        assert_eq!(
            (direct["from"].clone(), direct["data"].clone()),
            (json!("sender"), json!({"hi": 1}))
        );
    }
    sender.ok(json!({"type": "broadcast", "data": "all"})).await;
    for d in [&mut dana, &mut dana2] {
        assert_eq!(d.recv_type("broadcast").await["data"], "all");
    }
    let (status, body) = http(
        a.addr,
        "POST",
        "/api/notify",
        &[("Content-Type", "application/json")],
        Some(r#"{"user":"dana","data":"ping"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(dana.recv_type("notification").await["data"], "ping");
    assert_eq!(dana2.recv_type("notification").await["data"], "ping");
    let (status, body) = http(
        b.addr,
        "POST",
        "/api/broadcast",
        &[("Content-Type", "application/json")],
        Some(r#"{"data":"everyone"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for d in [&mut dana, &mut dana2, &mut sender] {
        assert_eq!(d.recv_type("notification").await["data"], "everyone");
    }
    // API publish on one node reaches members on the other.
    dana.join("news").await;
    let (status, body) = http(
        a.addr,
        "POST",
        "/api/publish",
        &[("Content-Type", "application/json")],
        Some(r#"{"room":"news","data":"extra"}"#),
    )
    .await;
    assert_eq!((status, body["seq"].clone()), (200, json!(1)), "{body}");
    let msg = dana.recv_type("message").await;
    assert_eq!(
        (msg["from"].clone(), msg["seq"].clone()),
        (json!("system"), json!(1))
    );
    // Deleting on one node closes it for members on the other.
    let (status, _) = http(a.addr, "DELETE", "/api/rooms/news", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(dana.recv_type("room_closed").await["room"], "news");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        shards: Some(1),
        redis_url: Some(format!("redis://127.0.0.1:{port}")),
    };
    let mut config = Config::load_from(None, &[], &overrides).expect("config");
    config.cluster.connect_timeout_ms = 500;
    let err = Broker::start(config).err().expect("no Redis, no broker");
    let text = err.to_string();
    assert!(text.contains("cannot reach Redis"), "{text}");
    // The binary says so and exits non-zero.
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--redis"])
        .arg(format!("redis://127.0.0.1:{port}"))
        .output()
        .expect("run shardcast");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
}

/// Publish until the cluster accepts it again (bounded).
async fn publish_until_accepted(c: &mut Client, room: &str) -> Value {
    until_accepted(c, json!({"type": "publish", "room": room, "data": "after"})).await
}

/// Send `frame` until it is acknowledged (Redis is back), not `unavailable`.
async fn until_accepted(c: &mut Client, frame: Value) -> Value {
    let started = Instant::now();
    loop {
        let reply = c.request(frame.clone()).await;
        if reply["type"] == "ack" {
            return reply;
        }
        assert_eq!(reply["code"], "unavailable", "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "Redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn redis_restart_keeps_connections_and_seq_and_loses_nothing_acknowledged() {
    let mut redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut pub_a = a.user("pub").await;
    pub_a.join("live").await;
    let mut sub_b = b.user("sub").await;
    sub_b.join("live").await;
    for i in 0..5 {
        pub_a
            .ok(json!({"type": "publish", "room": "live", "data": i}))
            .await;
    }
    for seq in 1..=5 {
        assert_eq!(sub_b.recv_type("message").await["seq"], seq);
    }
    redis.restart(Duration::from_millis(300));
    let ack = publish_until_accepted(&mut pub_a, "live").await;
    let resumed = ack["seq"].as_u64().expect("seq");
    let (_, metrics) = http_get(a.addr, "/metrics HTTP/1.1").await;
    assert!(
        metrics.contains("shardcast_cluster_refusals_total{code=\"unavailable\"}"),
        "publishes refused while Redis was down are counted:\n{metrics}"
    );
    assert!(
        resumed > 5,
        "seq never goes back after a Redis restart: {ack}"
    );
    for i in 0..5 {
        pub_a
            .ok(json!({"type": "publish", "room": "live", "data": i}))
            .await;
    }
    // The subscriber on the other node gets every acknowledged message
    // once, in order, with the lost Redis' restart in between.
    let mut last = 5;
    let mut got = Vec::new();
    while last < resumed + 5 {
        let v = sub_b.recv().await;
        match v["type"].as_str() {
            Some("message") => {
                let seq = v["seq"].as_u64().expect("seq");
                assert!(seq > last, "no duplicates, in order: {seq} after {last}");
                last = seq;
                got.push(seq);
            }
            Some("gap") => last = v["to"].as_u64().expect("to"),
            _ => {}
        }
    }
    assert!(
        got.ends_with(&(resumed..=resumed + 5).collect::<Vec<_>>()),
        "{got:?}"
    );
    // Presence was put back: the other node lists both members.
    let list = sub_b.ok(json!({"type": "members", "room": "live"})).await;
    assert_eq!(list["total"], 2, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_killed_node_leaves_presence_within_its_ttl() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let mut watcher = a.user("watcher").await;
    watcher.join("hall").await;
    // Node B is a child process, so it can die by SIGKILL.
    let (mut child, addr) = spawn_node(&redis, "node-b", 1_500);
    let mut doomed = Client::connect(&format!("ws://{addr}/ws?user=doomed")).await;
    doomed.recv_type("welcome").await;
    doomed.join("hall").await;
    recv_until(&mut watcher, "joined", |v| v["user"] == "doomed").await;
    let killed = Instant::now();
    child.kill();
    let left = recv_until(&mut watcher, "left", |v| v["user"] == "doomed").await;
    assert_eq!(left["members"], 1);
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "removed within a bounded time"
    );
    let list = watcher.ok(json!({"type": "members", "room": "hall"})).await;
    assert_eq!(list["total"], 1, "{list}");
}

/// A node as a child process, so it can be SIGKILLed; killed on drop.
struct ChildNode(Child);

impl ChildNode {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start a node as a child process: (the child, its address).
fn spawn_node(redis: &Redis, id: &str, ttl_ms: u64) -> (ChildNode, std::net::SocketAddr) {
    let ttl = ttl_ms.to_string();
    spawn_node_with(redis, id, &[("SHARDCAST_CLUSTER__NODE_TTL_MS", &ttl)])
}

/// Start a node as a child process with `env`: (the child, its address).
fn spawn_node_with(
    redis: &Redis,
    id: &str,
    env: &[(&str, &str)],
) -> (ChildNode, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .args(["--redis", &redis.url()])
        .env("SHARDCAST_SERVER__NODE_ID", id)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let addr = listening_addr(&mut child);
    (ChildNode(child), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_node_restarted_under_its_id_clears_its_old_members_at_once() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let mut watcher = a.user("watcher").await;
    watcher.join("hall").await;
    // A heartbeat far longer than the test: only the restart can clear it.
    let (mut child, addr) = spawn_node(&redis, "node-b", 60_000);
    let mut ghost = Client::connect(&format!("ws://{addr}/ws?user=ghost")).await;
    ghost.recv_type("welcome").await;
    ghost.join("hall").await;
    recv_until(&mut watcher, "joined", |v| v["user"] == "ghost").await;
    child.kill();
    let (_again, _) = spawn_node(&redis, "node-b", 60_000);
    let left = recv_until(&mut watcher, "left", |v| v["user"] == "ghost").await;
    assert_eq!(left["members"], 1);
    let list = watcher.ok(json!({"type": "members", "room": "hall"})).await;
    assert_eq!(list["total"], 1, "{list}");
}

/// Read a child broker's log until it says where it listens.
fn listening_addr(child: &mut Child) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("node exited before listening")
            .expect("read stderr");
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().expect("addr");
            break addr.parse().expect("socket address");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// One inline command to the test's Redis; its answer.
fn redis_command(redis: &Redis, command: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port)).expect("redis");
    s.write_all(format!("{command}\r\n").as_bytes())
        .expect("send command");
    let mut answer = [0u8; 256];
    let n = s.read(&mut answer).expect("answer");
    String::from_utf8_lossy(&answer[..n]).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn members_joining_during_publishes_get_every_later_seq_once() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut publisher = a.user("pub").await;
    publisher.join("busy").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let publishing = tokio::spawn(async move {
        let mut sent = 0u64;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) && sent < 5_000 {
            publisher
                .send(json!({"type": "publish", "room": "busy", "data": sent}))
                .await;
            sent += 1;
            if sent % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        publisher
    });
    for i in 0..12 {
        let server = if i % 2 == 0 { &b } else { &a };
        let mut joiner = server.user(&format!("j{i}")).await;
        let ack = joiner.join("busy").await;
        let at = ack["seq"].as_u64().expect("seq");
        for expected in at + 1..=at + 5 {
            let msg = joiner.recv_type("message").await;
            assert_eq!(msg["seq"], expected, "joined at {at}: {msg}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _publisher = publishing.await.expect("publisher");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_lost_subscription_is_repaired_from_the_stream_without_duplicates() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut publisher = a.user("pub").await;
    publisher.join("feed").await;
    let mut reader = b.user("reader").await;
    reader.join("feed").await;
    const TOTAL: u64 = 60;
    for i in 0..TOTAL {
        if i == 20 {
            // Cut every subscriber connection; commands keep working, so
            // messages go on being sequenced while the nodes resubscribe.
            let killed = redis_command(&redis, "CLIENT KILL TYPE pubsub");
            assert_eq!(killed, ":2", "one subscriber connection per node");
        }
        publisher
            .ok(json!({"type": "publish", "room": "feed", "data": i}))
            .await;
    }
    for expected in 1..=TOTAL {
        let msg = reader.recv_type("message").await;
        assert_eq!(msg["seq"], expected, "in order, once each: {msg}");
    }
    reader.silent(Duration::from_millis(300)).await;
    let (_, metrics) = http_get(b.addr, "/metrics HTTP/1.1").await;
    let repairs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shardcast_cluster_repairs_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("repairs counter");
    assert!(
        repairs >= 1,
        "the resubscribed node read the stream:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_subscriber_that_falls_behind_is_cut_off_instead_of_growing() {
    use shardcast::internals::subscriber::{self, Bounds, Endpoint, SubEvent};
    let redis = Redis::start();
    let answer = redis_command(
        &redis,
        "CONFIG SET client-output-buffer-limit \"pubsub 256kb 128kb 1\"",
    );
    assert_eq!(answer, "+OK");
    let client = redis::Client::open(redis.url()).expect("url");
    let endpoint = Endpoint::of(&client).expect("endpoint");
    let bounds = Bounds {
        queue: 4,
        queue_bytes: 256 * 1024,
        max_payload: 1 << 20,
        connect_timeout: Duration::from_secs(2),
    };
    let (mut sub, mut events) = subscriber::connect(&endpoint, bounds)
        .await
        .expect("subscriber");
    sub.subscribe(&["flood".to_string()])
        .await
        .expect("subscribe");
    assert!(matches!(events.recv().await, Some(SubEvent::Subscribed(c)) if c == "flood"));
    // 400 x 64 KiB = 25 MiB while nobody reads: more than the socket
    // buffers and Redis' 256 KiB allowance together.
    const SENT: usize = 400;
    let published = tokio::task::spawn_blocking(move || {
        let mut con = client.get_connection().expect("connection");
        let payload = vec![b'x'; 64 * 1024];
        for _ in 0..SENT {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("flood")
                .arg(&payload)
                .query(&mut con)
                .expect("publish");
        }
    });
    published.await.expect("publisher");
    let mut received = 0;
    let lost = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(SubEvent::Message { .. })) => received += 1,
            Ok(Some(SubEvent::Lost(reason))) => break reason,
            Ok(Some(_)) => {}
            Ok(None) => break "ended".to_string(),
            Err(_) => panic!("neither cut off nor done after {received} messages"),
        }
    };
    eprintln!("slow subscriber: {received} of {SENT} received, then: {lost}");
    assert!(
        received < SENT,
        "Redis cut the slow subscriber off ({lost}) after {received} of {SENT}: nothing piled up here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn sigterm_under_load_drains_a_node_with_every_message_it_acknowledged() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let (mut b, b_addr) = spawn_node(&redis, "node-b", 5_000);
    let mut members = Vec::new();
    for i in 0..4 {
        let mut m = Client::connect(&format!("ws://{b_addr}/ws?user=m{i}")).await;
        m.recv_type("welcome").await;
        m.join("live").await;
        members.push(m);
    }
    // Publishers on both nodes, acknowledged one at a time.
    let mut remote = a.user("remote").await;
    remote.join("live").await;
    let mut local = Client::connect(&format!("ws://{b_addr}/ws?user=local")).await;
    local.recv_type("welcome").await;
    local.join("live").await;
    let remote_task = tokio::spawn(async move {
        for i in 0..400 {
            let r = remote
                .request(json!({"type": "publish", "room": "live", "data": i}))
                .await;
            if r["type"] != "ack" {
                break;
            }
        }
    });
    let local_task = tokio::spawn(async move {
        // Publish in windows of 32 until the drain closes the connection;
        // keep the seqs acknowledged.
        let mut acked = Vec::new();
        let mut next_id = 1000u64;
        'publishing: for _ in 0..50 {
            let first = next_id;
            for _ in 0..32 {
                let publish =
                    json!({"type": "publish", "room": "live", "data": next_id, "id": next_id});
                next_id += 1;
                if local
                    .ws
                    .send(Message::text(publish.to_string()))
                    .await
                    .is_err()
                {
                    break 'publishing;
                }
            }
            let mut answered = 0;
            while answered < next_id - first {
                match tokio::time::timeout(RECV_TIMEOUT, local.ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: Value = serde_json::from_str(&t).expect("json");
                        if v["id"].as_u64().is_some_and(|id| id >= first) {
                            answered += 1;
                            if v["type"] == "ack" {
                                acked.push(v["seq"].as_u64().expect("seq"));
                            }
                        }
                    }
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                        break 'publishing;
                    }
                    Ok(Some(Ok(_))) => {}
                }
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = b.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut lasts = Vec::new();
    let mut seen_by_all: Option<std::collections::BTreeSet<u64>> = None;
    for m in &mut members {
        let mut seen = std::collections::BTreeSet::new();
        let mut last = 0;
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, m.ws.next()).await;
            let Ok(Some(Ok(msg))) = next else {
                panic!("member connection ended without a close frame");
            };
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("json");
                    if v["type"] == "message" {
                        let seq = v["seq"].as_u64().expect("seq");
                        assert!(last == 0 || seq == last + 1, "gap-free: {seq} after {last}");
                        last = seq;
                        seen.insert(seq);
                    }
                }
                Message::Close(frame) => {
                    let code = frame.map(|f| u16::from(f.code));
                    assert_eq!(code, Some(1001), "drain closes with 1001");
                    break;
                }
                _ => {}
            }
        }
        lasts.push(last);
        seen_by_all = Some(match seen_by_all {
            None => seen,
            Some(all) => all.intersection(&seen).copied().collect(),
        });
    }
    assert!(lasts.iter().all(|l| *l == lasts[0] && *l > 0), "{lasts:?}");
    let acked_here = local_task.await.expect("local publisher");
    let seen_by_all = seen_by_all.unwrap_or_default();
    for seq in &acked_here {
        assert!(
            seen_by_all.contains(seq),
            "seq {seq} was acknowledged by node b but not delivered"
        );
    }
    remote_task.abort();
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = b.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "node b did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "drained node exits 0: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn refusals_are_the_single_node_ones_across_nodes() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    // Node B's connections lack the `create` right.
    let b = node(&redis, "node-b")
        .with(|c| {
            c.auth
                .default_perms
                .retain(|p| *p != shardcast::perms::Perm::Create)
        })
        .start();
    let (status, _) = http(
        a.addr,
        "POST",
        "/api/rooms",
        &[("Content-Type", "application/json")],
        Some(r#"{"room":"secret","private":true}"#),
    )
    .await;
    assert_eq!(status, 201);
    let mut alice = a.user("alice").await;
    let refused = alice
        .err(json!({"type": "join", "room": "secret"}), "forbidden")
        .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("private")),
        "{refused}"
    );
    alice
        .err(json!({"type": "members", "room": "secret"}), "forbidden")
        .await;
    alice
        .err(json!({"type": "create", "room": "secret"}), "room_exists")
        .await;
    alice
        .err(
            json!({"type": "join", "room": "nowhere", "create": false}),
            "room_not_found",
        )
        .await;
    // A room made on node A is joined on node B without the create right;
    // a missing one is not made.
    alice.join("open").await;
    let mut bob = b.user("bob").await;
    bob.join("open").await;
    let refused = bob
        .err(json!({"type": "join", "room": "elsewhere"}), "forbidden")
        .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("create")),
        "{refused}"
    );
}

/// A cluster node's start line says so, names its Redis without the
/// password, and its node id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_cluster_node_start_line_names_its_redis_and_node_id() {
    let redis = Redis::start();
    // The default user of a Redis without `requirepass` takes any password.
    let url = format!("redis://default:hunter2@127.0.0.1:{}", redis.port);
    let lines = tokio::task::spawn_blocking(move || {
        crate::process::log_until_listening(
            &["--listen", "127.0.0.1:0", "--shards", "1", "--redis", &url],
            &[("SHARDCAST_SERVER__NODE_ID", "node-east-1")],
        )
    })
    .await
    .expect("start line");
    let line = lines.last().expect("start line");
    assert!(line.contains(" mode=cluster"), "{line}");
    assert!(line.contains(" node=node-east-1"), "{line}");
    let redacted = format!(" redis=redis://default:<redacted>@127.0.0.1:{}", redis.port);
    assert!(line.contains(&redacted), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn both_nodes_report_one_epoch_and_recovery_honours_it() {
    let redis = Redis::start();
    let on_join = |c: &mut Config| c.room.history_on_join = 2;
    let a = node(&redis, "node-a").with(on_join).start();
    let b = node(&redis, "node-b").with(on_join).start();
    let mut alice = a.user("alice").await;
    let epoch = epoch_of(&alice.join("ep").await);
    let mut bob = b.user("bob").await;
    assert_eq!(
        epoch_of(&bob.join("ep").await),
        epoch,
        "one epoch for both nodes"
    );
    for node in [&a, &b] {
        let (status, details) = http(node.addr, "GET", "/api/rooms/ep", &[], None).await;
        assert_eq!((status, details["epoch"].clone()), (200, json!(epoch)));
    }
    alice.publish_n("ep", 3).await;
    // A client that moved to the other node recovers with the epoch.
    let mut moved = b.user("moved").await;
    let ack = moved
        .ok(json!({"type": "join", "room": "ep", "since": 1, "epoch": epoch}))
        .await;
    assert_eq!(
        (ack["recovered"].clone(), history_seqs(&ack)),
        (json!(true), vec![2, 3])
    );
    // Deleted (through node a) and made again: the old epoch is never
    // recovered on node b.
    let mut late = b.user("late").await;
    remade_room_is_not_recovered(a.addr, &mut alice, &mut late, ("ep", &epoch, 3, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_room_redis_lost_comes_back_with_one_new_epoch() {
    let mut redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b").start();
    let mut pub_a = a.user("pub").await;
    let old = epoch_of(&pub_a.join("live").await);
    let mut sub_b = b.user("sub").await;
    sub_b.join("live").await;
    for i in 0..2 {
        pub_a
            .ok(json!({"type": "publish", "room": "live", "data": i}))
            .await;
    }
    redis.restart(Duration::from_millis(300));
    let seq = publish_until_accepted(&mut pub_a, "live").await["seq"]
        .as_u64()
        .expect("seq");
    // Redis lost the room's history: RESTORE put it back as a new
    // incarnation (seq does not go back), the same one on both nodes.
    let mut fresh_a = a.user("fresh-a").await;
    let new = epoch_of(&fresh_a.join("live").await);
    assert_ne!(new, old);
    let mut fresh_b = b.user("fresh-b").await;
    let frame = json!({"type": "join", "room": "live", "since": 2, "epoch": old});
    let ack = until_accepted(&mut fresh_b, frame).await;
    assert_eq!(ack["epoch"], json!(new));
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["seq"], seq);
}

/// The quotas of rooms made per user and per connection hold for the whole
/// cluster (counted in Redis), count only rooms that still exist (deleted,
/// or expired after `room.empty_ttl_ms` empty), and leave the API alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn room_quotas_are_cluster_wide_and_free_up_when_rooms_go() {
    let redis = Redis::start();
    let quotas = |c: &mut Config| {
        c.limits.max_rooms_created_per_user = 3;
        c.limits.max_rooms_created_per_connection = 2;
        c.room.empty_ttl_ms = 300;
    };
    let a = node(&redis, "node-a").with(quotas).start();
    let b = node(&redis, "node-b").with(quotas).start();
    let mut on_a = a.user("maker").await;
    on_a.join("q1").await;
    on_a.ok(json!({"type": "create", "room": "q2"})).await;
    let refused = on_a
        .err(
            json!({"type": "join", "room": "q3"}),
            "too_many_rooms_created",
        )
        .await;
    assert_says(&refused, "max_rooms_created_per_connection");
    // The same user on the other node: one more, then the user's cap.
    let mut on_b = b.user("maker").await;
    on_b.ok(json!({"type": "create", "room": "q3"})).await;
    let refused = on_b
        .err(
            json!({"type": "create", "room": "q4"}),
            "too_many_rooms_created",
        )
        .await;
    assert_says(&refused, "max_rooms_created_per_user");
    // Joining rooms others made is free, and so is the API.
    on_b.join("q1").await;
    for i in 0..5 {
        let (status, _) = http(
            a.addr,
            "POST",
            "/api/rooms",
            &[("Content-Type", "application/json")],
            Some(&format!(r#"{{"room":"api-{i}"}}"#)),
        )
        .await;
        assert_eq!(status, 201);
    }
    // A deleted room stops counting at once.
    let (status, _) = http(b.addr, "DELETE", "/api/rooms/q3", &[], None).await;
    assert_eq!(status, 200);
    on_b.ok(json!({"type": "create", "room": "q4"})).await;
    // An auto-made room stops counting once it expired empty.
    on_a.ok(json!({"type": "leave", "room": "q1"})).await;
    on_b.ok(json!({"type": "leave", "room": "q1"})).await;
    let started = Instant::now();
    loop {
        let reply = on_b.request(json!({"type": "create", "room": "q5"})).await;
        if reply["type"] == "ack" {
            break;
        }
        assert_eq!(reply["code"], "too_many_rooms_created", "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "q1 expired 300 ms after it emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node over its memory budget makes no room (the scripts refuse it with
/// `over_memory_budget`) and takes no connection, but its members keep
/// joining rooms that exist; the other node is not affected. Node B (a
/// child process) goes over its budget holding the catch-up messages of
/// rooms filled from node A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_node_over_its_memory_budget_makes_no_room() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let (b, b_addr) = spawn_node_with(
        &redis,
        "node-b",
        &[("SHARDCAST_LIMITS__MEMORY_BUDGET_BYTES", "67108864")],
    );
    let mut member = Client::connect(&format!("ws://{b_addr}/ws?user=member")).await;
    member.recv_type("welcome").await;
    let mut publisher = a.user("publisher").await;
    let payload = "x".repeat(60_000);
    let mut rooms = 0;
    loop {
        let room = format!("full-{rooms}");
        let joined = member.request(json!({"type": "join", "room": room})).await;
        if joined["code"] == "over_memory_budget" {
            break;
        }
        assert_eq!(joined["type"], "ack", "{joined}");
        publisher.join(&room).await;
        for _ in 0..20 {
            let publish =
                json!({"type": "publish", "room": room, "data": payload, "exclude_self": true});
            publisher.send(publish).await;
        }
        publisher.request(json!({"type": "ping"})).await;
        while member.recv_type("message").await["seq"] != 20 {}
        rooms += 1;
        assert!(rooms < 100, "node b never went over its 64 MiB budget");
        tokio::time::sleep(Duration::from_millis(300)).await; // a reading
    }
    member
        .err(
            json!({"type": "create", "room": "new"}),
            "over_memory_budget",
        )
        .await;
    member.join("full-0").await;
    let mut other = a.user("other").await;
    other.join("new").await;
    match tokio_tungstenite::connect_async(format!("ws://{b_addr}/ws?user=late")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!(
            "node b took a connection over its budget: {:?}",
            other.map(|_| ())
        ),
    }
    drop(b);
}

/// A node's catch-up messages (what it keeps of each room to catch up late
/// joiners) share `limits.max_history_bytes_total`: past it, the oldest of
/// the largest rooms go first, and a late joiner gets a `gap` for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_nodes_catch_up_messages_stay_within_the_history_budget() {
    let redis = Redis::start();
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b")
        .with(|c| c.limits.max_history_bytes_total = 1 << 20)
        .start();
    let mut member = b.user("member").await;
    let mut publisher = a.user("publisher").await;
    let payload = "y".repeat(50_000);
    for r in 0..4 {
        let room = format!("cu-{r}");
        member.join(&room).await;
        publisher.join(&room).await;
        for _ in 0..10 {
            let publish =
                json!({"type": "publish", "room": room, "data": payload, "exclude_self": true});
            publisher.send(publish).await;
        }
        publisher.request(json!({"type": "ping"})).await;
        while member.recv_type("message").await["seq"] != 10 {}
    }
    let (_, metrics) = http_get(b.addr, "/metrics HTTP/1.1").await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(value("shardcast_cluster_catchup_bytes") <= (1 << 20) as f64);
    assert!(value("shardcast_cluster_catchup_trimmed_messages_total") > 0.0);
}

/// A loopback proxy to `upstream` that holds every chunk a client sends
/// for `delay` before passing it on (replies pass at once): a slow link
/// from a node to Redis. Runs until the test's runtime ends.
async fn delaying_proxy(upstream: std::net::SocketAddr, delay: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
        }
    });
    addr
}

/// A client that got its `welcome` on one node gets what is sent to it
/// from another node right after: the welcome waits until its node hears
/// the user's channel. Node b's link to Redis is slow (its subscribe
/// arrives 150 ms late), so without the wait the message would be
/// published before b listens, and lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn a_direct_message_right_after_welcome_reaches_the_other_node() {
    let redis = Redis::start();
    let upstream = format!("127.0.0.1:{}", redis.port).parse().expect("addr");
    let slow = delaying_proxy(upstream, Duration::from_millis(150)).await;
    let a = node(&redis, "node-a").start();
    let b = node(&redis, "node-b")
        .with(move |c| {
            c.cluster.redis_url = format!("redis://{slow}");
            c.cluster.command_timeout_ms = 3_000;
        })
        .start();
    let mut sender = a.user("sender").await;
    for i in 0..5 {
        let name = format!("fresh-{i}");
        let mut fresh = b.user(&name).await;
        sender
            .ok(json!({"type": "send", "to": name, "data": i}))
            .await;
        let direct = fresh.recv_type("direct").await;
        assert_eq!(direct["data"], i, "{direct}");
    }
}
