//! The Rust client against the real broker (in process, loopback, port 0),
//! through a TCP proxy that can cut and stall connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use shardcast::config::AuthMode;
use shardcast::{Broker, Config, Overrides};
use shardcast_client::{Client, Error, Event, Events, JoinOptions, Options, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest wait for anything a test expects.
const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "shardcast-rust-client-test-secret-0123456789";

fn start_broker(port: u16, f: impl FnOnce(&mut Config)) -> Broker {
    let overrides = Overrides {
        listen: Some(format!("127.0.0.1:{port}")),
        shards: Some(2),
        ..Overrides::default()
    };
    let mut config = Config::load_from(None, &[], &overrides).expect("config");
    f(&mut config);
    config.validate().expect("valid config");
    Broker::start(config).expect("broker starts")
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

fn options(addr: SocketAddr, user: &str) -> Options {
    Options::new(url(addr))
        .user(user)
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(500))
}

/// Read events until `pick` returns Some, within `WAIT`; everything read is
/// also appended to `log`.
async fn until<T>(
    events: &mut Events,
    log: &mut Vec<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {log:#?}"))
            .expect("events ended");
        let found = pick(&event);
        log.push(event);
        if let Some(found) = found {
            return found;
        }
    }
}

fn is_state(state: State) -> impl FnMut(&Event) -> Option<Event> {
    move |e| matches!(e, Event::State { state: s, .. } if *s == state).then(|| e.clone())
}

/// Read until the next `Resumed` and check it.
async fn expect_resumed(
    events: &mut Events,
    log: &mut Vec<Event>,
    room: &str,
    recovered: bool,
    epoch_changed: bool,
) {
    let resumed = until(events, log, |e| {
        matches!(e, Event::Resumed { .. }).then(|| e.clone())
    })
    .await;
    let expected = Event::Resumed {
        room: room.into(),
        recovered,
        epoch_changed,
    };
    assert_eq!(resumed, expected);
}

fn messages(log: &[Event], room: &str) -> Vec<u64> {
    log.iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.room == room => Some(m.seq),
            _ => None,
        })
        .collect()
}

/// A TCP proxy: `cut()` resets every connection; while `blocked`, new
/// connections are closed at once; `stalled` stops forwarding.
struct Proxy {
    addr: SocketAddr,
    blocked: watch::Sender<bool>,
    stalled: watch::Sender<bool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (blocked, blocked_rx) = watch::channel(false);
        let (stalled, stalled_rx) = watch::channel(false);
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *blocked_rx.borrow() {
                    continue;
                }
                let stalled = stalled_rx.clone();
                let task = tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let up = pump(&mut cr, &mut uw, stalled.clone());
                    let down = pump(&mut ur, &mut cw, stalled);
                    tokio::select! { _ = up => {}, _ = down => {} }
                    let _ = cw.shutdown().await;
                });
                list.lock().expect("conns").push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            blocked,
            stalled,
            conns,
        }
    }

    fn cut(&self) -> usize {
        let tasks: Vec<_> = self.conns.lock().expect("conns").drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        tasks.len()
    }
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Hold what was read while stalled.
        while *stalled.borrow() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_publish_members_send_and_server_errors() {
    let broker = start_broker(0, |_| {});
    let addr = broker.local_addr();
    let (alice, mut a_events) = Client::connect(options(addr, "alice"));
    let (bob, mut b_events) = Client::connect(options(addr, "bob").name("Bob"));
    let mut a_log = Vec::new();
    let mut b_log = Vec::new();
    let joined = alice
        .room("lobby")
        .join(JoinOptions::default())
        .await
        .expect("join");
    assert_eq!((joined.seq, joined.members), (0, 1));
    assert!(joined.epoch.is_some(), "a v1.1 broker names the epoch");
    bob.room("lobby")
        .join(JoinOptions::default())
        .await
        .expect("join");
    let presence = until(&mut a_events, &mut a_log, |e| match e {
        Event::Joined(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (presence.user.as_str(), presence.name.as_deref()),
        ("bob", Some("Bob"))
    );
    assert_eq!(
        alice.room("lobby").publish(&json!({"text": "hi"})).await,
        Ok(1)
    );
    let m = until(&mut b_events, &mut b_log, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (m.seq, m.from.as_str(), m.data.clone()),
        (1, "alice", json!({"text": "hi"}))
    );
    let members = alice.room("lobby").members().await.expect("members");
    assert_eq!(members.total, 2);
    alice.send("bob", &"psst").await.expect("send");
    let direct = until(&mut b_events, &mut b_log, |e| match e {
        Event::Direct(d) => Some(d.clone()),
        _ => None,
    })
    .await;
    assert_eq!(direct.data, json!("psst"));

    let err = alice
        .room("nowhere")
        .publish(&1)
        .await
        .expect_err("not joined");
    assert_eq!(err.code(), "room_not_found");
    assert!(
        matches!(alice.broadcast(&1).await, Err(Error::Server { code, .. }) if code == "forbidden")
    );
    let err = bob
        .room("nope")
        .join(JoinOptions {
            create: false,
            ..JoinOptions::default()
        })
        .await;
    assert_eq!(err.expect_err("create: false").code(), "room_not_found");
    assert!(alice.ping().await.is_ok());
    bob.room("lobby").leave().await.expect("leave");
    until(&mut a_events, &mut a_log, |e| {
        matches!(e, Event::Left(_)).then_some(())
    })
    .await;
    alice.close().await;
    until(&mut a_events, &mut a_log, is_state(State::Closed)).await;
    assert_eq!(
        alice
            .room("lobby")
            .publish(&1)
            .await
            .expect_err("closed")
            .code(),
        "closed"
    );
    bob.close().await;
    broker.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_recovers_every_message_once_in_order() {
    let broker = start_broker(0, |c| c.room.history = 2000);
    let proxy = Proxy::start(broker.local_addr()).await;
    let (sub, mut events) = Client::connect(options(proxy.addr, "sub"));
    let (publisher, _pub_events) = Client::connect(options(broker.local_addr(), "pub"));
    sub.room("cut")
        .join(JoinOptions::default())
        .await
        .expect("sub joins");
    let room = publisher.room("cut");
    room.join(JoinOptions::default()).await.expect("pub joins");
    let (stop, stopped) = watch::channel(false);
    let publishing = tokio::spawn(async move {
        let mut last = 0;
        while !*stopped.borrow() {
            last = room
                .publish_with(&json!({"n": last + 1}), true)
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        last
    });
    let mut log = Vec::new();
    until(&mut events, &mut log, |e| {
        matches!(e, Event::Message(m) if m.seq == 20).then_some(())
    })
    .await;
    proxy.blocked.send_replace(true);
    assert_eq!(proxy.cut(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.blocked.send_replace(false);
    expect_resumed(&mut events, &mut log, "cut", true, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send_replace(true);
    let last = publishing.await.expect("publisher");
    until(&mut events, &mut log, |e| {
        matches!(e, Event::Message(m) if m.seq == last).then_some(())
    })
    .await;
    assert_eq!(
        messages(&log, "cut"),
        (1..=last).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    assert!(!log.iter().any(|e| matches!(e, Event::Gap { .. })));
    sub.close().await;
    publisher.close().await;
    broker.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_is_a_new_epoch_and_a_stalled_request_times_out() {
    let first = start_broker(0, |_| {});
    let addr = first.local_addr();
    let (client, mut events) =
        Client::connect(options(addr, "r").request_timeout(Duration::from_millis(500)));
    let room = client.room("restart");
    let before = room.join(JoinOptions::default()).await.expect("join");
    for i in 0..3 {
        room.publish(&i).await.expect("publish");
    }
    let mut log = Vec::new();
    until(&mut events, &mut log, |e| {
        matches!(e, Event::Message(m) if m.seq == 3).then_some(())
    })
    .await;
    first.shutdown();
    let drained = until(&mut events, &mut log, is_state(State::Disconnected)).await;
    let Event::State { code, delay, .. } = drained else {
        unreachable!()
    };
    assert_eq!(code, Some(1001));
    assert!(
        delay.is_some_and(|d| d <= Duration::from_millis(50)),
        "1001: at once, jittered: {delay:?}"
    );
    let second = start_broker(addr.port(), |_| {});
    expect_resumed(&mut events, &mut log, "restart", false, true).await;
    assert_eq!(
        room.publish(&"again").await,
        Ok(1),
        "the new incarnation starts at 1"
    );
    let after = room.join(JoinOptions::default()).await.expect("joined");
    assert_ne!(after.epoch, before.epoch);
    client.close().await;
    second.shutdown();

    // A request whose frame never reaches the server settles with a timeout.
    let broker = start_broker(0, |_| {});
    let proxy = Proxy::start(broker.local_addr()).await;
    let (client, _events) =
        Client::connect(options(proxy.addr, "t").request_timeout(Duration::from_millis(300)));
    client
        .room("t")
        .join(JoinOptions::default())
        .await
        .expect("join");
    proxy.stalled.send_replace(true);
    let started = Instant::now();
    let err = client.room("t").publish(&1).await.expect_err("stalled");
    assert_eq!(err, Error::Timeout(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    client.close().await;
    broker.shutdown();
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token(sub: &str, ttl: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": now() + ttl}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refresh_without_reconnecting_and_refusals_stop_or_wait() {
    let jwt = |c: &mut Config| {
        c.auth.mode = AuthMode::Jwt;
        c.auth.secret = SECRET.into();
        c.auth.leeway_secs = 0;
    };
    let broker = start_broker(0, jwt);
    let opts = Options::new(url(broker.local_addr()))
        .token_source(|| async { Ok(token("refresher", 3)) })
        .refresh_before_expiry(Duration::from_millis(1500));
    let (client, mut events) = Client::connect(opts);
    client
        .room("tok")
        .join(JoinOptions::default())
        .await
        .expect("join");
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(6500);
    while Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            log.push(e);
        }
    }
    let welcomes = log
        .iter()
        .filter(|e| matches!(e, Event::Welcome(_)))
        .count();
    let refreshes = log
        .iter()
        .filter(|e| matches!(e, Event::Refreshed { .. }))
        .count();
    assert_eq!(welcomes, 1, "one connection throughout: {log:#?}");
    assert!(refreshes >= 2, "refreshed {refreshes} times: {log:#?}");
    assert_eq!(client.room("tok").publish(&"still here").await, Ok(1));
    client.close().await;

    // An invalid token: 401, the client stops and says why.
    let bad = Options::new(url(broker.local_addr()))
        .token_source(|| async { Ok("not-a-jwt".to_string()) });
    let (_client, mut events) = Client::connect(bad);
    let closed = until(&mut events, &mut Vec::new(), is_state(State::Closed)).await;
    let Event::State { reason, .. } = closed else {
        unreachable!()
    };
    assert!(reason.is_some_and(|r| r.contains("refused: 401 unauthorized")));
    broker.shutdown();

    // 503 with Retry-After: no attempt before it passed.
    let full = start_broker(0, |c| c.limits.max_connections = 1);
    let (occupant, _occ_events) = Client::connect(options(full.local_addr(), "occupant"));
    occupant.ping().await.expect("occupant connected");
    let (waiter, mut events) = Client::connect(options(full.local_addr(), "waiter"));
    let mut log = Vec::new();
    let refused = until(&mut events, &mut log, is_state(State::Disconnected)).await;
    let refused_at = Instant::now();
    let Event::State { reason, delay, .. } = refused else {
        unreachable!()
    };
    assert!(reason.is_some_and(
        |r| r.contains("refused: 503 server_full") && r.contains("Retry-After 1000 ms")
    ));
    assert!(delay.is_some_and(|d| d >= Duration::from_secs(1)));
    occupant.close().await;
    until(&mut events, &mut log, is_state(State::Connected)).await;
    assert!(refused_at.elapsed() >= Duration::from_millis(900));
    waiter.close().await;

    // Kicked by the API (1008): closed, no reconnect.
    let (kicked, mut events) = Client::connect(options(full.local_addr(), "kicked"));
    let welcome = until(&mut events, &mut Vec::new(), |e| match e {
        Event::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .await;
    let mut api = TcpStream::connect(full.local_addr()).await.expect("api");
    let request = format!(
        "DELETE /api/connections/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        welcome.conn
    );
    api.write_all(request.as_bytes())
        .await
        .expect("api request");
    let mut answer = Vec::new();
    api.read_to_end(&mut answer).await.expect("api answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 2"), "the API kicks: {answer}");
    let closed = until(&mut events, &mut Vec::new(), is_state(State::Closed)).await;
    assert!(
        matches!(
            closed,
            Event::State {
                code: Some(1008),
                ..
            }
        ),
        "{closed:?}"
    );
    drop(kicked);
    full.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced() {
    let broker = start_broker(0, |c| c.limits.heartbeat_interval_ms = 300);
    let proxy = Proxy::start(broker.local_addr()).await;
    let opts = options(proxy.addr, "quiet").heartbeat_margin(Duration::from_millis(400));
    let (client, mut events) = Client::connect(opts);
    client
        .room("q")
        .join(JoinOptions::default())
        .await
        .expect("join");
    let mut log = Vec::new();
    let stalled_at = Instant::now();
    proxy.stalled.send_replace(true);
    let dead = until(&mut events, &mut log, is_state(State::Disconnected)).await;
    let noticed = stalled_at.elapsed();
    let Event::State { reason, .. } = dead else {
        unreachable!()
    };
    assert!(
        reason.is_some_and(|r| r.contains("no traffic from the server")),
        "{log:#?}"
    );
    assert!(
        noticed >= Duration::from_millis(600) && noticed < Duration::from_secs(3),
        "{noticed:?}"
    );
    proxy.stalled.send_replace(false);
    expect_resumed(&mut events, &mut log, "q", true, false).await;
    client.close().await;
    broker.shutdown();
}
