//! The invariants of DESIGN.md section 3, each pinned by a test that would
//! fail if it broke.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use shardcast::config::OverflowPolicy;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// Invariant 2: with members on 4 shards and 4 concurrent publishers, every
/// member sees seq 1..=N, gap-free, in order, and each publisher's messages
/// in the order it sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_order_per_room_across_shards() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: u64 = 250;
    const MEMBERS: usize = 16;
    let broker = TestBroker::new().shards(4).start();
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let mut m = broker.user(&format!("m{i}")).await;
        m.ok(json!({"type":"join","room":"ordered"})).await;
        members.push(m);
    }
    let shards: BTreeSet<u64> = members.iter().map(|m| m.shard).collect();
    assert!(
        shards.len() >= 2,
        "members all landed on one shard: {shards:?}"
    );
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let mut c = broker.user(&format!("p{p}")).await;
        c.ok(json!({"type":"join","room":"ordered"})).await;
        publishers.push(c);
    }
    let total = PUBLISHERS as u64 * PER_PUBLISHER;
    let readers: Vec<_> = members
        .into_iter()
        .map(|mut m| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                let mut last_by_publisher: HashMap<String, u64> = HashMap::new();
                while (seqs.len() as u64) < total {
                    let v = m.recv().await;
                    if v["type"] != "message" {
                        continue;
                    }
                    let from = v["from"].as_str().expect("from").to_string();
                    let n = v["data"].as_u64().expect("n");
                    let last = last_by_publisher.insert(from.clone(), n);
                    assert!(
                        last.is_none_or(|l| l < n),
                        "{from} reordered: {last:?} then {n}"
                    );
                    seqs.push(v["seq"].as_u64().expect("seq"));
                }
                seqs
            })
        })
        .collect();
    let writers: Vec<_> = publishers
        .into_iter()
        .map(|mut p| {
            tokio::spawn(async move {
                for n in 0..PER_PUBLISHER {
                    p.send(json!({"type":"publish","room":"ordered","data":n}))
                        .await;
                }
                p
            })
        })
        .collect();
    let mut keep = Vec::new();
    for w in writers {
        keep.push(w.await.expect("publisher"));
    }
    for r in readers {
        let seqs = r.await.expect("reader");
        let expected: Vec<u64> = (1..=total).collect();
        assert_eq!(seqs, expected, "a member saw gaps or reordering");
    }
}

/// A reader puts a burst's publishes into their rooms' request inboxes
/// quietly and wakes each home once, when the burst is handled
/// (`Shard::route_or_wait`). A burst that arrives in one read, for rooms
/// homed on every shard, and ends with the client's close frame: every
/// message still reaches every member, in order. A home left unwoken
/// would hold them until its next wake-up, and the members would time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_in_one_read_reaches_rooms_homed_on_every_shard() {
    use tokio::io::AsyncWriteExt;
    const ROOMS: usize = 8;
    const PER_ROOM: u64 = 40;
    let broker = TestBroker::new().shards(4).start();
    let mut members = Vec::new();
    for r in 0..ROOMS {
        let mut m = broker.user(&format!("m{r}")).await;
        m.join(&format!("burst-{r}")).await;
        members.push(m);
    }
    let mut publisher = raw_ws(broker.addr, "?user=burster").await;
    // The joins, the publishes (a publish right behind its join publishes
    // once the join succeeds), then the close frame, in one write (so one
    // read on the server).
    let mut burst = Vec::new();
    for r in 0..ROOMS {
        let join = json!({"type":"join","room":format!("burst-{r}")});
        burst.extend(raw_frame(true, 0x1, join.to_string().as_bytes(), true));
    }
    for n in 0..PER_ROOM {
        for r in 0..ROOMS {
            let publish = json!({"type":"publish","room":format!("burst-{r}"),"data":n});
            burst.extend(raw_frame(true, 0x1, publish.to_string().as_bytes(), true));
        }
    }
    burst.extend(raw_frame(true, 0x8, &1000u16.to_be_bytes(), true));
    publisher.write_all(&burst).await.expect("write the burst");
    for (r, m) in members.iter_mut().enumerate() {
        for n in 0..PER_ROOM {
            let v = m.recv_type("message").await;
            assert_eq!(v["data"], n, "room burst-{r}: {v}");
            assert_eq!(v["seq"], n + 1, "room burst-{r}: {v}");
        }
    }
    assert_eq!(raw_close_code(&mut publisher).await, Some(1000));
}

/// Invariant 3: 200 concurrent joins to a room with max_members = 50 admit
/// exactly 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_members_holds_under_concurrent_joins() {
    let broker = TestBroker::new().shards(4).start();
    let mut owner = broker.user("owner").await;
    owner
        .ok(json!({"type":"create","room":"capped","max_members":50}))
        .await;
    let mut clients = Vec::new();
    for i in 0..200 {
        clients.push(broker.user(&format!("j{i}")).await);
    }
    let joins: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let reply = c.request(json!({"type":"join","room":"capped"})).await;
                (reply, c)
            })
        })
        .collect();
    let mut admitted = 0;
    let mut full = 0;
    let mut keep = Vec::new();
    for j in joins {
        let (reply, c) = j.await.expect("join task");
        match (reply["type"].as_str(), reply["code"].as_str()) {
            (Some("ack"), _) => admitted += 1,
            (Some("error"), Some("room_full")) => full += 1,
            other => panic!("unexpected reply {other:?}: {reply}"),
        }
        keep.push(c);
    }
    assert_eq!((admitted, full), (50, 150));
    let list = owner
        .request(json!({"type":"members","room":"capped"}))
        .await;
    assert_eq!(list["total"], 50, "{list}");
}

/// Invariant 3: a storm of concurrent connects never overshoots the global
/// cap, not even for a moment (the gauge is sampled through /api/stats
/// while it lasts), and each refusal is a clean 503 `server_full` with
/// Retry-After and a message, counted in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_under_concurrent_connects() {
    const CAP: u64 = 30;
    const ATTEMPTS: usize = 150;
    let broker = TestBroker::new()
        .shards(2)
        .with(|c| c.limits.max_connections = CAP)
        .start();
    let url = broker.url("");
    let storm_over = std::sync::atomic::AtomicBool::new(false);
    // The gauge /api/stats reports as `connections`, read in a tight loop,
    // and every 64th sample the API itself (per shard too).
    let sampler = async {
        let (mut samples, mut highest) = (0u64, 0);
        while !storm_over.load(std::sync::atomic::Ordering::Acquire) {
            highest = highest.max(broker.broker().connections());
            if samples % 64 == 0 {
                let (_, stats) = http(broker.addr, "GET", "/api/stats", &[], None).await;
                let per_shard: u64 = stats["shards"]
                    .as_array()
                    .expect("shards")
                    .iter()
                    .map(|s| s["connections"].as_u64().expect("shard connections"))
                    .sum();
                let total = stats["connections"].as_u64().expect("connections");
                highest = highest.max(total).max(per_shard);
            }
            samples += 1;
            tokio::task::yield_now().await;
        }
        (samples, highest)
    };
    let storm = async {
        let attempts: Vec<_> = (0..ATTEMPTS)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
            })
            .collect();
        let mut open = Vec::new();
        let mut refused = 0;
        for a in attempts {
            match a.await.expect("task") {
                Ok((ws, _)) => open.push(ws),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status(), 503);
                    assert_eq!(resp.headers()["retry-after"], "1");
                    let body: Value =
                        serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}"))
                            .expect("json");
                    assert_eq!(body["error"]["code"], "server_full");
                    assert!(
                        body["error"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty())
                    );
                    refused += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        storm_over.store(true, std::sync::atomic::Ordering::Release);
        (open, refused)
    };
    let ((samples, highest), (open, refused)) = tokio::join!(sampler, storm);
    assert!(samples > 0);
    assert!(
        highest <= CAP,
        "{highest} connections seen with a cap of {CAP}"
    );
    eprintln!("storm: highest {highest} connections in {samples} samples of the gauge");
    assert_eq!(
        (open.len(), refused),
        (CAP as usize, ATTEMPTS - CAP as usize)
    );
    assert_eq!(broker.broker().connections(), CAP);
    let (_, metrics) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    let counted: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("shardcast_handshake_refusals_total") && l.contains("server_full")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, refused as u64, "{metrics}");
    // Closing frees slots.
    drop(open);
    for _ in 0..100 {
        if broker.broker().connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(broker.broker().connections(), 0);
    broker.user("later").await;
}

#[tokio::test]
async fn per_ip_and_per_user_caps_are_429() {
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.max_connections_per_ip = 3;
            c.limits.max_connections_per_user = 2;
        })
        .start();
    let _a = broker.user("dup").await;
    let _b = broker.user("dup").await;
    let (status, body) = broker.refused("user=dup").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (429, json!("too_many_connections"))
    );
    let _c = broker.user("other").await;
    let (status, _) = broker.refused("user=fourth").await;
    assert_eq!(status, 429);
}

/// Invariant 1 (disconnect policy): a member that never reads is closed with
/// 4000 while fast members receive every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_and_fast_members_get_everything() {
    const MESSAGES: u64 = 10_000;
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.outbound_queue_messages = 64;
            c.limits.outbound_queue_bytes = 256 * 1024;
            c.limits.slow_close_grace_ms = 60_000; // it reads only at the end
        })
        .start();
    let mut slow = broker.user("slow").await;
    slow.join("flood").await;
    let mut fast = broker.user("fast").await;
    fast.join("flood").await;
    let mut publisher = broker.user("pub").await;
    publisher.join("flood").await;
    let payload = "x".repeat(2000);
    // The fast member reads as fast as it can; the publisher never runs more
    // than a window ahead of it, so only the member that never reads falls
    // behind.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut next = 1;
            while next <= MESSAGES {
                let v = fast.recv().await;
                if v["type"] == "message" {
                    assert_eq!(v["seq"], next);
                    seen.store(next, std::sync::atomic::Ordering::Release);
                    next += 1;
                }
            }
            fast
        })
    };
    let pub_task = tokio::spawn(async move {
        for sent in 0..MESSAGES {
            while sent > seen.load(std::sync::atomic::Ordering::Acquire) + 32 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            publisher
                .send(json!({"type":"publish","room":"flood","data":payload,"exclude_self":true}))
                .await;
        }
        publisher
    });
    let _fast = reader.await.expect("fast member got everything");
    let _publisher = pub_task.await.expect("publisher");
    assert_eq!(slow.close_code().await, Some(4000));
}

/// Invariant 1 (drop policy): the slow member keeps its connection, and the
/// messages it got plus the gaps it was told of cover every seq exactly once.
/// A burst larger than the queue, handled in one batch, to a member
/// that reads: the queue takes what fits, the rest is dropped, and the
/// batch's direct write empties the queue. The `gap` for the dropped
/// messages must still go out although no later message comes (before the
/// fix, the direct write left it for the room's next message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_after_the_last_dropped_message_goes_out_without_a_next_one() {
    use futures_util::SinkExt;
    const BURST: u64 = 100;
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.outbound_queue_messages = 16;
            c.limits.outbound_queue_bytes = 1 << 20;
        })
        .start();
    let mut owner = broker.user("owner").await;
    owner
        .ok(json!({"type":"create","room":"burst","overflow":"drop"}))
        .await;
    owner.join("burst").await;
    let mut member = broker.user("member").await;
    member.join("burst").await;
    // One write carries the whole burst, so the broker reads it at once
    // and its pumps handle it in one batch.
    for i in 0..BURST {
        let frame = json!({"type":"publish","room":"burst","data":i,"exclude_self":true});
        owner
            .ws
            .feed(Message::text(frame.to_string()))
            .await
            .expect("feed");
    }
    owner.ws.flush().await.expect("flush");
    let mut next = 1;
    while next <= BURST {
        let v = member.recv().await;
        match v["type"].as_str() {
            Some("message") => {
                assert_eq!(v["seq"], next, "{v}");
                next += 1;
            }
            Some("gap") => {
                assert_eq!(v["from"], next, "{v}");
                next = v["to"].as_u64().expect("to") + 1;
            }
            _ => {}
        }
    }
    assert_eq!(next, BURST + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_reports_every_missed_seq_as_a_gap() {
    const MESSAGES: u64 = 20_000;
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.outbound_queue_messages = 64;
            c.limits.outbound_queue_bytes = 64 * 1024;
        })
        .start();
    let mut owner = broker.user("owner").await;
    owner
        .ok(json!({"type":"create","room":"lossy","overflow":"drop"}))
        .await;
    owner.join("lossy").await;
    let mut slow = broker.user("slow").await;
    slow.join("lossy").await;
    let payload = "y".repeat(1000);
    for _ in 0..MESSAGES {
        owner
            .send(json!({"type":"publish","room":"lossy","data":payload,"exclude_self":true}))
            .await;
    }
    // The publisher's own pings make sure the home handled every publish.
    owner.request(json!({"type":"ping"})).await;
    let mut covered = vec![0u32; MESSAGES as usize + 1];
    let mut gaps = 0;
    let mut last_seen = 0;
    while covered[1..].contains(&0) {
        let v = slow.recv().await;
        match v["type"].as_str() {
            Some("message") => {
                let seq = v["seq"].as_u64().expect("seq");
                assert!(seq > last_seen, "out of order: {seq} after {last_seen}");
                last_seen = seq;
                covered[seq as usize] += 1;
            }
            Some("gap") => {
                gaps += 1;
                let (from, to) = (
                    v["from"].as_u64().expect("from"),
                    v["to"].as_u64().expect("to"),
                );
                assert!(from > last_seen && from <= to, "gap {v} after {last_seen}");
                last_seen = to;
                for s in from..=to {
                    covered[s as usize] += 1;
                }
            }
            _ => {}
        }
    }
    assert!(
        covered[1..].iter().all(|c| *c == 1),
        "a seq was covered twice"
    );
    assert!(
        gaps > 0,
        "the slow member never overflowed: the test proves nothing"
    );
    // Still connected.
    assert_eq!(slow.request(json!({"type":"ping"})).await["type"], "pong");
}

/// Invariant 4: garbage from one client never disturbs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_client_does_not_disturb_others() {
    let broker = TestBroker::new().start();
    let mut a = broker.user("a").await;
    let mut b = broker.user("b").await;
    a.join("r").await;
    b.join("r").await;
    let mut junk = broker.user("junk").await;
    for text in [
        "{",
        "[]",
        "null",
        "{\"type\":null}",
        "\"str\"",
        "{\"type\":\"join\",\"room\":{}}",
    ] {
        junk.send_raw(Message::text(text)).await;
    }
    for _ in 0..6 {
        assert_eq!(junk.recv().await["code"], "bad_request");
    }
    a.ok(json!({"type":"publish","room":"r","data":"fine"}))
        .await;
    assert_eq!(b.recv_type("message").await["data"], "fine");
    let _ = OverflowPolicy::Drop;
}
