//! Faults sized for CI: slowloris handshakes, clients that vanish, a flood
//! from one client, SIGTERM under load, and accept() failing for want of
//! file descriptors. Each checks the broker's figures, not just survival.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;
use crate::process::ChildBroker;

/// Poll `check` every 20 ms for up to `RECV_TIMEOUT`; whether it held.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + RECV_TIMEOUT;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// Open connections by /api/stats.
async fn connections(addr: std::net::SocketAddr) -> u64 {
    let (_, stats) = http(addr, "GET", "/api/stats", &[], None).await;
    stats["connections"].as_u64().expect("connections")
}

/// Read from `s` until the server closes it (EOF or reset); panics if it
/// stays open past `RECV_TIMEOUT`.
async fn until_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept a stalled handshake open"),
        }
    }
}

/// Slowloris: sockets that send an upgrade request one byte at a time and
/// never finish it, and sockets that send nothing, are all closed by the
/// handshake timeout (which bounds the whole handshake, not each read);
/// the broker's descriptors return to their baseline and a real client is
/// served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshakes_are_cut_off_and_descriptors_come_back() {
    const DRIPPERS: usize = 24;
    const SILENT: usize = 16;
    let broker = ChildBroker::spawn(&[("SHARDCAST_LIMITS__HANDSHAKE_TIMEOUT_MS", "1000")]);
    // The baseline after one client came and went (the first connection and
    // API call set up what the process keeps open for good).
    drop(broker.user("warm-up").await);
    assert!(eventually(async || connections(broker.addr).await == 0).await);
    let baseline = broker.open_fds();
    let request = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let mut tasks = Vec::new();
    for _ in 0..DRIPPERS {
        let addr = broker.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            // One byte every 50 ms: each read is well inside the timeout,
            // the whole head never is. The request is repeated endlessly.
            for &b in request.iter().cycle() {
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut probe = [0u8; 64];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::ZERO, s.read(&mut probe)).await
                {
                    return;
                }
            }
        }));
    }
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(broker.addr).await.expect("connect"));
    }
    // The stalled sockets are held by the broker for now (once it has
    // accepted them)...
    let mut held = 0;
    assert!(
        eventually(async || {
            held = broker.open_fds();
            held >= baseline + SILENT
        })
        .await,
        "broker fds {held}, baseline {baseline}"
    );
    // ...while a real client gets through.
    let mut c = broker.user("real").await;
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
    drop(c);
    for s in &mut silent {
        until_closed(s).await;
    }
    for t in tasks {
        tokio::time::timeout(RECV_TIMEOUT, t)
            .await
            .expect("a dripping handshake was never cut off")
            .expect("dripper");
    }
    assert!(
        eventually(async || broker.open_fds() <= baseline).await,
        "broker fds {} after every stalled handshake closed, baseline {baseline}",
        broker.open_fds()
    );
    eprintln!(
        "slowloris: broker fds {baseline} at baseline, {held} while stalled, {} after",
        broker.open_fds()
    );
}

/// A member whose TCP connection stays open but goes silent (no pong) is
/// closed with 4001 and removed from its room: the others get `left` and
/// the room's details no longer list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_member_is_timed_out_and_leaves_its_rooms() {
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.heartbeat_interval_ms = 200;
            c.limits.heartbeat_timeout_ms = 1000;
        })
        .start();
    let (mut watcher, mut ghost) = watcher_and_ghost(&broker).await;
    ghost_left(&broker, &mut watcher).await;
    assert_eq!(raw_close_code(&mut ghost).await, Some(4001));
}

/// A member whose connection is reset (RST, SO_LINGER 0) is removed at
/// once: `left` to the others, the room's count and the connection gauge
/// back down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_member_is_removed_and_presence_sent() {
    let broker = TestBroker::new().start();
    let (mut watcher, ghost) = watcher_and_ghost(&broker).await;
    assert_eq!(broker.broker().connections(), 2);
    ghost.set_zero_linger().expect("SO_LINGER 0");
    drop(ghost);
    ghost_left(&broker, &mut watcher).await;
    assert!(eventually(async || broker.broker().connections() == 1).await);
}

/// A member "watcher" of room "v", and a raw member "ghost" that joined it
/// and will never read or answer a ping.
async fn watcher_and_ghost(broker: &Running) -> (Client, TcpStream) {
    let mut watcher = broker.user("watcher").await;
    watcher.join("v").await;
    let mut ghost = raw_ws(broker.addr, "?user=ghost").await;
    let join = raw_frame(true, 0x1, br#"{"type":"join","room":"v"}"#, true);
    ghost.write_all(&join).await.expect("write");
    let joined = watcher.recv_type("joined").await;
    assert_eq!(
        (&joined["user"], &joined["members"]),
        (&json!("ghost"), &json!(2))
    );
    (watcher, ghost)
}

/// The watcher is told the ghost left, and the room lists only the watcher.
async fn ghost_left(broker: &Running, watcher: &mut Client) {
    let left = watcher.recv_type("left").await;
    assert_eq!(
        (&left["user"], &left["members"]),
        (&json!("ghost"), &json!(1)),
        "{left}"
    );
    let (_, details) = http(broker.addr, "GET", "/api/rooms/v", &[], None).await;
    assert_eq!(details["members"], 1, "{details}");
    assert_eq!(details["member_list"][0]["user"], "watcher", "{details}");
}

/// A client flooding publishes is rate-limited with `rate_limited` (and
/// stays connected), while another publisher in the same room is not
/// limited and a member receives every acknowledged message, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_flood_is_rate_limited_and_others_get_everything() {
    const FLOOD: u64 = 300;
    const QUIET: u64 = 8;
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.publish_rate_per_sec = 20;
            c.limits.publish_burst = 10;
        })
        .start();
    let mut member = broker.user("member").await;
    member.join("f").await;
    let mut flooder = broker.user("flooder").await;
    flooder.join("f").await;
    let mut quiet = broker.user("quiet").await;
    quiet.join("f").await;
    // The flood goes out without waiting for replies.
    for n in 0..FLOOD {
        flooder
            .send(json!({"type":"publish","room":"f","data":n,"id":1000 + n,"exclude_self":true}))
            .await;
    }
    let mut acked = BTreeSet::new();
    for n in 0..QUIET {
        let ack = quiet
            .ok(json!({"type":"publish","room":"f","data":n,"exclude_self":true}))
            .await;
        acked.insert(ack["seq"].as_u64().expect("seq"));
    }
    let (mut limited, mut flood_acked) = (0, 0);
    while limited + flood_acked < FLOOD {
        let v = flooder.recv().await;
        match (v["type"].as_str(), v["id"].as_u64()) {
            (Some("ack"), Some(id)) if id >= 1000 => {
                flood_acked += 1;
                acked.insert(v["seq"].as_u64().expect("seq"));
            }
            (Some("error"), Some(id)) if id >= 1000 => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
                limited += 1;
            }
            _ => {}
        }
    }
    assert!(limited > 0, "the flood was never limited");
    assert!(
        flood_acked >= 10,
        "not even the burst got through: {flood_acked}"
    );
    assert_eq!(
        flooder.request(json!({"type":"ping"})).await["type"],
        "pong"
    );
    eprintln!("flood: {flood_acked} of {FLOOD} acked, {limited} rate_limited");
    // Every acknowledged publish reaches the member, in seq order.
    let last = *acked.last().expect("acked");
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        let v = member.recv_type("message").await;
        got.push(v["seq"].as_u64().expect("seq"));
    }
    assert_eq!(got, acked.into_iter().collect::<Vec<_>>());
}

/// SIGTERM while publishers run: every client gets 1001, the process
/// exits 0 within the drain timeout, and every publish acknowledged with a
/// seq reached every member before its 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_acknowledged() {
    const MEMBERS: usize = 6;
    const PUBLISHERS: usize = 4;
    let mut broker = ChildBroker::spawn(&[
        ("SHARDCAST_SERVER__DRAIN_TIMEOUT_MS", "5000"),
        // Members read as fast as they can; no 4000 for a slow test machine.
        ("SHARDCAST_LIMITS__OUTBOUND_QUEUE_MESSAGES", "100000"),
        ("SHARDCAST_LIMITS__OUTBOUND_QUEUE_BYTES", "67108864"),
    ]);
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let mut m = broker.user(&format!("m{i}")).await;
        m.join("load").await;
        members.push(tokio::spawn(read_until_close(m.ws)));
    }
    let mut publishers = Vec::new();
    for i in 0..PUBLISHERS {
        let mut p = broker.user(&format!("p{i}")).await;
        p.join("load").await;
        publishers.push(tokio::spawn(publish_until_close(p.ws)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.signal("TERM");
    let mut acked = BTreeSet::new();
    for p in publishers {
        let (seqs, code) = p.await.expect("publisher");
        assert_eq!(code, Some(1001), "publisher close");
        acked.extend(seqs);
    }
    assert!(!acked.is_empty(), "nothing was published before SIGTERM");
    for m in members {
        let (seqs, code) = m.await.expect("member");
        assert_eq!(code, Some(1001), "member close");
        assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "gap or reorder");
        let got: BTreeSet<u64> = seqs.into_iter().collect();
        let lost: Vec<_> = acked.difference(&got).collect();
        assert!(lost.is_empty(), "acknowledged but not delivered: {lost:?}");
    }
    let exit = broker
        .wait_exit(Duration::from_secs(8))
        .expect("exited within the drain timeout");
    assert!(exit.success(), "{exit:?}");
    eprintln!(
        "sigterm: {} acknowledged, all delivered to {MEMBERS} members",
        acked.len()
    );
}

/// The next JSON frame, or the close code (None: closed without a close
/// frame) once the server closed.
async fn next_or_close(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        let next = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("waited too long for a frame or the close");
        match next {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).expect("json")),
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| f.code.into())),
            Some(Ok(_)) => {}
            _ => return Err(None),
        }
    }
}

/// A member's room seqs until the server's close frame, and its code.
async fn read_until_close(mut ws: Ws) -> (Vec<u64>, Option<u16>) {
    let mut seqs = Vec::new();
    loop {
        match next_or_close(&mut ws).await {
            Ok(v) if v["type"] == "message" => seqs.push(v["seq"].as_u64().expect("seq")),
            Ok(_) => {}
            Err(code) => return (seqs, code),
        }
    }
}

/// Publish in windows of 32 with ids until the server closes; the seqs
/// acknowledged, and the close code.
async fn publish_until_close(mut ws: Ws) -> (Vec<u64>, Option<u16>) {
    const WINDOW: u64 = 32;
    let mut acked = Vec::new();
    let mut id = 0;
    loop {
        for _ in 0..WINDOW {
            id += 1;
            let frame =
                json!({"type":"publish","room":"load","data":id,"id":id,"exclude_self":true});
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
        }
        let mut pending = WINDOW;
        while pending > 0 {
            match next_or_close(&mut ws).await {
                Ok(v) if v["type"] == "ack" => {
                    acked.push(v["seq"].as_u64().expect("seq"));
                    pending -= 1;
                }
                Ok(v) if v["type"] == "error" => pending -= 1,
                Ok(_) => {}
                Err(code) => return (acked, code),
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// accept() failing (the process out of descriptors, via a low
/// RLIMIT_NOFILE) is logged and backed off, not spun on, and the broker
/// serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failure_backs_off_and_recovers() {
    const SOCKETS: usize = 120;
    // 100 descriptors: about 20 in use at start, so the sockets below
    // exhaust them; the handshake timeout frees them again.
    let broker = ChildBroker::spawn_under(
        &["prlimit", "--nofile=100:100"],
        &[("SHARDCAST_LIMITS__HANDSHAKE_TIMEOUT_MS", "1500")],
    );
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..SOCKETS {
        // The kernel completes connections into the backlog whether or not
        // the broker can accept them.
        held.push(TcpStream::connect(broker.addr).await.expect("connect"));
    }
    assert!(
        eventually(async || broker.log_count("accept failed") > 0).await,
        "accept() never failed: the test proves nothing"
    );
    // Out of descriptors for a while longer: a loop without backoff would
    // log thousands of failures here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(held);
    // Serves again once the stalled handshakes are gone.
    let mut c = None;
    for _ in 0..50 {
        if let Ok(Ok((ws, _))) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(format!("ws://{}/ws?user=after", broker.addr)),
        )
        .await
        {
            c = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ws = c.expect("the broker never served again");
    let welcome = ws.next().await.expect("frame").expect("welcome");
    assert!(welcome.to_text().expect("text").contains("welcome"));
    // Backing off ACCEPT_BACKOFF_MS (50 ms) per failure, two shards log at
    // most 2 lines per 50 ms; a loop that spins logs thousands. The bound
    // is 5 times the backoff's over the whole test so far.
    let failures = broker.log_count("accept failed");
    eprintln!(
        "accept: {failures} failures logged in {:?}",
        started.elapsed()
    );
    let bound = 5 * 2 * (started.elapsed().as_millis() as usize / 50 + 1);
    assert!(
        failures <= bound,
        "{failures} accept failures logged in {:?}: not backing off",
        started.elapsed()
    );
}
