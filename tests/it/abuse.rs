//! Attacks of one well-behaved-looking client on everyone else (issue 15):
//! JSON nested deep enough to break readers of the history, a burst of
//! frames that each get a reply, rooms made by the hundred, and a process
//! pushed over its memory budget. Each test reproduces the attack and checks
//! the bound and that other clients keep working.

use serde_json::{Value, json};

use crate::harness::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// `[[...1...]]`, `n` arrays deep.
fn nested(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

/// JSON nested 30,000 deep was stored in history and broke every later
/// join ack for parsers that recurse. Now `data` deeper than
/// `limits.max_json_depth` (default 32) is refused with `bad_request`
/// naming the limit, on the WebSocket and the API; the history and the
/// connection stay usable.
#[tokio::test]
async fn json_deeper_than_the_limit_is_refused_everywhere() {
    let broker = TestBroker::new().start();
    let mut attacker = broker.user("deep").await;
    attacker.join("room").await;
    for depth in [33, 30_000] {
        let frame = format!(
            r#"{{"type":"publish","room":"room","id":9,"data":{}}}"#,
            nested(depth)
        );
        attacker
            .send_raw(tokio_tungstenite::tungstenite::Message::text(frame))
            .await;
        let refused = attacker.recv_type("error").await;
        assert_eq!(
            (refused["code"].clone(), refused["id"].clone()),
            (json!("bad_request"), json!(9)),
            "{refused}"
        );
        assert_says(&refused, "limits.max_json_depth");
        assert_says(&refused, "32");
    }
    for (kind, extra) in [("send", json!({"to": "deep"})), ("broadcast", json!({}))] {
        let mut frame = extra;
        frame["type"] = json!(kind);
        frame["data"] = serde_json::from_str(&nested(33)).expect("33 deep parses");
        attacker.err(frame, "bad_request").await;
    }
    // Exactly at the limit is fine.
    let at_limit: Value = serde_json::from_str(&nested(32)).expect("32 deep");
    attacker
        .ok(json!({"type": "publish", "room": "room", "data": at_limit}))
        .await;
    for (path, body) in [
        (
            "/api/publish",
            format!(r#"{{"room":"room","data":{}}}"#, nested(20_000)),
        ),
        (
            "/api/notify",
            format!(r#"{{"user":"deep","data":{}}}"#, nested(33)),
        ),
        ("/api/broadcast", format!(r#"{{"data":{}}}"#, nested(33))),
    ] {
        let (status, reply) = http(broker.addr, "POST", path, &[JSON], Some(&body)).await;
        assert_eq!(
            (status, reply["error"]["code"].clone()),
            (400, json!("bad_request")),
            "{path}: {reply}"
        );
        assert_says(&reply["error"], "limits.max_json_depth");
    }
    // The history holds only what was accepted: a later join ack parses
    // with serde_json's default recursion limit (128).
    let mut reader = broker.user("reader").await;
    let ack = reader.join("room").await;
    assert_eq!(history_seqs(&ack), vec![1], "{ack}");
}

/// The limit is a setting.
#[tokio::test]
async fn json_depth_limit_is_configurable() {
    let broker = TestBroker::new()
        .with(|c| c.limits.max_json_depth = 2)
        .start();
    let mut c = broker.user("u").await;
    c.join("r").await;
    c.ok(json!({"type": "publish", "room": "r", "data": [[1]]}))
        .await;
    let refused = c
        .err(
            json!({"type": "publish", "room": "r", "data": [[[1]]]}),
            "bad_request",
        )
        .await;
    assert_says(&refused, "more than 2 deep");
}

/// Server frames read from a raw connection: (opcode, payload).
async fn read_frames(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
    want: usize,
    limit: std::time::Duration,
) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + limit;
    let mut frames = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while frames.len() < want {
        while frames.len() < want {
            match take_server_frame(buf) {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        if frames.len() >= want || frames.last().is_some_and(|(op, _)| *op == 0x8) {
            break;
        }
        match tokio::time::timeout_at(deadline, read.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    frames
}

/// A client that sends a burst of frames that each get a reply, in one
/// write, while reading, was closed with 4000 "outbound queue full" (the
/// queue holds 4,096 frames). Now the reader stops reading the client while
/// replies fill its queue: every frame gets its reply, in order, and the
/// connection stays open. Covers the three shapes of the attack: `ping`
/// frames (4,500), WebSocket pings (5,000) and frames that each get an
/// `error` (4,500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_client_that_bursts_gets_every_reply_and_no_4000() {
    use tokio::io::AsyncWriteExt;
    let broker = TestBroker::new().start();
    let queue = 4096; // limits.outbound_queue_messages, the default
    for (name, count, opcode, make) in [
        (
            "ping frames",
            4_500usize,
            0x1u8,
            (|i: usize| format!(r#"{{"type":"ping","id":{i}}}"#).into_bytes())
                as fn(usize) -> Vec<u8>,
        ),
        ("WebSocket pings", 5_000, 0x9, |i: usize| {
            i.to_string().into_bytes()
        }),
        ("frames refused with error", 4_500, 0x1, |i: usize| {
            format!(r#"{{"type":"nope","id":{i}}}"#).into_bytes()
        }),
    ] {
        assert!(count > queue);
        let stream = raw_ws(broker.addr, "?user=burst").await;
        let (mut read, mut write) = stream.into_split();
        let mut buf = Vec::new();
        let welcome = read_frames(&mut read, &mut buf, 1, RECV_TIMEOUT).await;
        assert_eq!(welcome.len(), 1);
        let mut burst = Vec::new();
        for i in 1..=count {
            burst.extend_from_slice(&raw_frame(true, opcode, &make(i), true));
        }
        let writer = tokio::spawn(async move {
            write.write_all(&burst).await.expect("burst written");
            write
        });
        let replies = read_frames(&mut read, &mut buf, count, RECV_TIMEOUT * 3).await;
        let _write = writer.await.expect("writer");
        let closes: Vec<_> = replies.iter().filter(|(op, _)| *op == 0x8).collect();
        assert!(closes.is_empty(), "{name}: closed: {closes:?}");
        assert_eq!(replies.len(), count, "{name}: every frame answered");
        for (i, (op, payload)) in replies.iter().enumerate() {
            if opcode == 0x9 {
                assert_eq!(*op, 0xA, "{name}: a pong");
                assert_eq!(payload, &make(i + 1), "{name}: in order");
            } else {
                let v: Value = serde_json::from_slice(payload).expect("JSON reply");
                assert_eq!(v["id"], json!(i + 1), "{name}: in order: {v}");
                let kind = if name.starts_with("ping") {
                    "pong"
                } else {
                    "error"
                };
                assert_eq!(v["type"], kind, "{name}: {v}");
            }
        }
    }
    // Nothing was counted as a slow consumer.
    let (_, metrics) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    let slow: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shardcast_slow_consumer_closes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(slow, 0.0, "{metrics}");
}

/// A client that bursts and does not read holds no more than its queue:
/// the reader stops, the burst waits in the socket buffers (the client's
/// problem), and once the client reads it gets every reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_a_client_that_does_not_read_waits_in_the_socket() {
    use tokio::io::AsyncWriteExt;
    let broker = TestBroker::new()
        .shards(1)
        .with(|c| c.limits.outbound_queue_messages = 64)
        .start();
    const COUNT: usize = 20_000;
    let stream = raw_ws(broker.addr, "?user=lazy").await;
    let (mut read, mut write) = stream.into_split();
    let mut burst = Vec::new();
    for i in 1..=COUNT {
        let frame = format!(r#"{{"type":"ping","id":{i}}}"#);
        burst.extend_from_slice(&raw_frame(true, 0x1, frame.as_bytes(), true));
    }
    let writer = tokio::spawn(async move {
        write.write_all(&burst).await.expect("burst written");
        write
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, stats) = http(broker.addr, "GET", "/api/stats", &[], None).await;
    let queued = stats["shards"][0]["queued_frames"]
        .as_u64()
        .expect("queued");
    assert!(queued <= 64, "queue bound held while not reading: {stats}");
    assert_eq!(stats["connections"], 1, "not closed: {stats}");
    let mut buf = Vec::new();
    let frames = read_frames(&mut read, &mut buf, COUNT + 1, RECV_TIMEOUT * 3).await;
    let _write = writer.await.expect("writer");
    assert_eq!(frames.len(), COUNT + 1, "welcome and every pong");
    let last: Value = serde_json::from_slice(&frames[COUNT].1).expect("JSON");
    assert_eq!(
        (last["type"].clone(), last["id"].clone()),
        (json!("pong"), json!(COUNT))
    );
}

/// Sum of the samples of `metric` (any labels) in a `/metrics` text.
fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The 300-room attack of issue 15 (one connection, default rights, made
/// 300 rooms and published 17 messages of 64 KiB into each: RSS 22 -> 344
/// MB, kept after it left). Now a connection makes at most
/// `limits.max_rooms_created_per_connection` (default 100) rooms, so the
/// attack takes three connections; and all rooms' history together is
/// bounded by `limits.max_history_bytes_total` (here 32 MiB; default 256
/// MiB), the oldest messages of the largest rooms going first. Bound
/// asserted: the broker's RSS grows less than the history budget plus
/// 48 MiB, and the rooms' history (`shardcast_history_bytes`) stays within
/// the budget (measured: +52-54 MiB of RSS, 30.1 MiB of history, 4,224
/// messages trimmed; without the budget the rooms keep 300 MiB). Meanwhile
/// another client's room works as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_rooms_of_history_stay_within_the_history_budget() {
    use crate::process::ChildBroker;
    const BUDGET_MIB: u64 = 32;
    let budget = (BUDGET_MIB << 20).to_string();
    let broker = ChildBroker::spawn(&[("SHARDCAST_LIMITS__MAX_HISTORY_BYTES_TOTAL", &budget)]);
    // A bystander with a room of its own.
    let mut alice = broker.user("alice").await;
    alice.join("alice-room").await;
    let mut bob = broker.user("bob").await;
    bob.join("alice-room").await;
    let before = broker.rss_kib();
    let payload = "x".repeat(64 * 1024 - 256);
    let mut attackers = Vec::new();
    let mut made = 0;
    for c in 0..3 {
        let mut attacker = broker.user(&format!("mallory{c}")).await;
        for r in 0..101 {
            let room = format!("m{c}-{r}");
            let reply = attacker
                .request(json!({"type": "join", "room": room}))
                .await;
            if r == 100 {
                // The connection's 101st room.
                assert_eq!(reply["code"], "too_many_rooms_created", "{reply}");
                assert_says(&reply, "limits.max_rooms_created_per_connection");
                continue;
            }
            assert_eq!(reply["type"], "ack", "{reply}");
            made += 1;
            for _ in 0..17 {
                let publish = json!({"type": "publish", "room": room, "data": payload,
                    "exclude_self": true});
                attacker.send(publish).await;
            }
            // Stay in step with the broker.
            attacker.request(json!({"type": "ping"})).await;
        }
        attackers.push(attacker);
    }
    assert_eq!(made, 300);
    let (_, metrics) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    let history = metric_sum(&metrics, "shardcast_history_bytes");
    let trimmed = metric_sum(&metrics, "shardcast_history_trimmed_messages_total");
    assert!(history <= (BUDGET_MIB << 20) as f64, "history {history}");
    assert!(trimmed > 0.0, "{metrics}");
    let after = broker.rss_kib();
    let growth_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "300 rooms x 17 x 64 KiB (334 MB published): RSS {before} -> {after} KiB (+{growth_mib} MiB), \
         history {:.1} MiB, {trimmed} messages trimmed",
        history / 1048576.0
    );
    assert!(
        growth_mib < BUDGET_MIB + 48,
        "RSS grew {growth_mib} MiB with a {BUDGET_MIB} MiB history budget"
    );
    // The bystanders never noticed.
    alice
        .ok(json!({"type": "publish", "room": "alice-room", "data": "still here"}))
        .await;
    let msg = bob.recv_type("message").await;
    assert_eq!(msg["data"], "still here");
    let mut carol = broker.user("carol").await;
    carol.join("carol-room").await;
    // The attackers leave; their rooms expire later and free their quota.
    drop(attackers);
}

/// Over `limits.memory_budget_bytes` the broker degrades instead of growing
/// until the kernel kills it: new connections get 503 `server_full` with
/// `Retry-After`, new rooms `over_memory_budget` (WebSocket and API), while
/// existing rooms keep working; `/metrics` says so. Once memory is freed
/// (the rooms deleted), it takes connections again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_budget_new_connections_and_rooms_are_refused() {
    use crate::process::ChildBroker;
    const BUDGET_MIB: u64 = 64;
    let budget = (BUDGET_MIB << 20).to_string();
    let broker = ChildBroker::spawn(&[("SHARDCAST_LIMITS__MEMORY_BUDGET_BYTES", &budget)]);
    let mut alice = broker.user("alice").await;
    alice.join("alice-room").await;
    let mut bob = broker.user("bob").await;
    bob.join("alice-room").await;
    let before = broker.rss_kib();
    assert!(
        before < (BUDGET_MIB << 10),
        "starts under the budget: {before} KiB"
    );
    // Fill rooms with history until the process stays over its budget:
    // three refusals in a row, 600 ms apart (the readings come every 250 ms,
    // and the shards give freed pages back while over, so a reading only
    // stays over once the memory is really held).
    let mut mallory = broker.user("mallory").await;
    let payload = "x".repeat(64 * 1024 - 256);
    let (mut rooms, mut refused) = (0, 0);
    while refused < 3 {
        assert!(
            rooms < 100,
            "never over the budget: {} KiB",
            broker.rss_kib()
        );
        let room = format!("hoard-{rooms}");
        let made = mallory
            .request(json!({"type": "create", "room": room}))
            .await;
        if made["code"] == "over_memory_budget" {
            refused += 1;
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            continue;
        }
        assert_eq!(made["type"], "ack", "{made}");
        refused = 0;
        mallory.join(&room).await;
        for _ in 0..16 {
            let publish =
                json!({"type": "publish", "room": room, "data": payload, "exclude_self": true});
            mallory.send(publish).await;
        }
        mallory.request(json!({"type": "ping"})).await;
        rooms += 1;
    }
    let (status, text) = http_get(
        broker.addr,
        "/ws?user=late HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    let body = http_body(&text);
    assert_eq!(body["error"]["code"], "server_full", "{text}");
    assert_says(&body["error"], "memory budget");
    let refused = mallory
        .err(
            json!({"type": "join", "room": "one-more"}),
            "over_memory_budget",
        )
        .await;
    assert_says(&refused, "limits.memory_budget_bytes");
    mallory
        .err(
            json!({"type": "create", "room": "one-more"}),
            "over_memory_budget",
        )
        .await;
    let (status, reply) = http(
        broker.addr,
        "POST",
        "/api/rooms",
        &[JSON],
        Some(r#"{"room":"api-room"}"#),
    )
    .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (503, json!("over_memory_budget")),
        "{reply}"
    );
    // What exists keeps working.
    alice
        .ok(json!({"type": "publish", "room": "alice-room", "data": "still here"}))
        .await;
    assert_eq!(bob.recv_type("message").await["data"], "still here");
    let (_, metrics) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    assert_eq!(metric_sum(&metrics, "shardcast_memory_over_budget"), 1.0);
    assert_eq!(
        metric_sum(&metrics, "shardcast_memory_budget_bytes"),
        (BUDGET_MIB << 20) as f64
    );
    for (what, at_least) in [("connection", 1.0), ("room", 3.0)] {
        let line = format!("shardcast_memory_budget_refusals_total{{what=\"{what}\"}}");
        assert!(metric_sum(&metrics, &line) >= at_least, "{line}: {metrics}");
    }
    // Memory freed: connections are taken again.
    for r in 0..rooms {
        let (status, _) = http(
            broker.addr,
            "DELETE",
            &format!("/api/rooms/hoard-{r}"),
            &[],
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let deadline = std::time::Instant::now() + RECV_TIMEOUT;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (_, metrics) = http_get(broker.addr, "/metrics HTTP/1.1").await;
        if metric_sum(&metrics, "shardcast_memory_over_budget") == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still over the budget at {} KiB after deleting the rooms",
            broker.rss_kib()
        );
    }
    broker.user("late").await;
}
