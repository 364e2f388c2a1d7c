//! Fuzz target `connection`: a sequence of client frames against one
//! connection of a real broker, running in this process on `127.0.0.1:0`
//! (2 shards, small limits), over loopback TCP.
//!
//! Input: byte 0 holds flags (bit 0: send the frames in the same write as
//! the upgrade request, so they reach the connection as the bytes hyper
//! read ahead; bits 1-2: which of four user ids to connect as; bit 3: speak
//! the Pusher protocol on `/app/{key}` instead of the native one). Then
//! records `[head][len][payload]`: `head & 0x0F` is the opcode, `0x80` FIN,
//! `0x20` multiplies `len` by 16 (to pass the 2 KiB message limit). With
//! `head & 0x70` = `0x70` the payload is written raw (no frame header: any
//! framing), with `0x10` as an unmasked frame (at most 125 bytes);
//! otherwise as a masked frame, with RSV1 if `0x40` is set. A close frame
//! (1000) ends the input.
//!
//! Per input: connect, upgrade, write, read until the server closes (after
//! 25 ms of silence the client half-closes; the server must then end the
//! connection within 10 s). Checks, besides "the server never panics":
//! - the upgrade succeeds, and the server sends only well-formed, unmasked,
//!   unfragmented frames: `welcome` first, every text frame a JSON object
//!   with a string `type`, a close frame last (with a valid code), nothing
//!   after it (Pusher: `pusher:connection_established` first, every text
//!   frame a JSON object with a string `event`);
//! - invariant 4: a second client (the witness, connected once and never
//!   misbehaving) still gets its `pong` after every input;
//! - the broker is restarted every 2000 inputs or past 256 rooms, so state
//!   left by inputs (rooms made by `create` live until deleted) stays small;
//!   that runs its drain, which must finish.

#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shardcast::{Broker, Config};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const USERS: [&str; 4] = ["alice", "bob", "carol", "anon-1"];
/// The app key of the Pusher connections.
const PUSHER_KEY: &str = "fuzz-key";
/// Flag bit of a Pusher connection.
const PUSHER: u8 = 0x08;
/// Silence after which the client half-closes its side (only inputs whose
/// raw bytes hide the final close frame should get there).
const QUIET: Duration = Duration::from_millis(25);
/// How long the server may take to answer once the client is done.
const DEADLINE: Duration = Duration::from_secs(10);
const RESTART_EVERY: u64 = 2000;
const MAX_ROOMS_BEFORE_RESTART: u64 = 256;

fn config() -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.shards = 2;
    c.server.node_id = "fuzz".into();
    c.server.drain_timeout_ms = 2_000;
    let l = &mut c.limits;
    l.max_message_bytes = 2048;
    l.max_rooms_per_connection = 8;
    l.max_rooms = 512;
    l.outbound_queue_messages = 32;
    l.outbound_queue_bytes = 16 * 1024;
    l.slow_close_grace_ms = 100;
    l.publish_rate_per_sec = 1000;
    l.publish_burst = 50;
    l.handshake_timeout_ms = 5_000;
    l.heartbeat_interval_ms = 3_600_000; // the witness never has to pong
    l.max_presence_list = 8;
    // No memory budget (what `Config::load_from` makes of 0 where the
    // machine's memory cannot be read): a fuzz run never comes near it.
    l.memory_budget_bytes = u64::MAX;
    let r = &mut c.room;
    r.default_max_members = 16;
    r.history = 16;
    r.history_max_bytes = 8 * 1024;
    r.history_on_join = 8;
    r.empty_ttl_ms = 100;
    let p = &mut c.pusher;
    p.enabled = true;
    p.client_event_rate_per_sec = 1000;
    p.apps = vec![shardcast::config::PusherApp {
        id: "fuzz".into(),
        key: PUSHER_KEY.into(),
        secret: "fuzz-secret".into(),
        client_events: true,
        ..Default::default()
    }];
    c.validate().expect("fuzz config");
    c
}

fn masked(head: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(head);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// The bytes a client sends for the records of `input`, then a close.
fn client_bytes(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 64);
    while let [head, len, rest @ ..] = input {
        let len = usize::from(*len) * if head & 0x20 != 0 { 16 } else { 1 };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        input = rest;
        match head & 0x70 {
            0x70 => out.extend_from_slice(payload),
            0x10 => {
                // Unmasked: the server must close with 1002.
                out.push(head & 0x8F);
                out.push(payload.len().min(125) as u8);
                out.extend_from_slice(&payload[..payload.len().min(125)]);
            }
            _ => masked(head & 0xCF, payload, &mut out),
        }
    }
    masked(0x88, &1000u16.to_be_bytes(), &mut out);
    out
}

fn upgrade_request(user: &str, pusher: bool) -> String {
    let path = if pusher {
        format!("/app/{PUSHER_KEY}?protocol=7&client=fuzz")
    } else {
        format!("/ws?user={user}&name=Fuzz")
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Read the HTTP response head; returns the bytes after it.
fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let started = Instant::now();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
            return buf.split_off(end + 4);
        }
        assert!(started.elapsed() < DEADLINE, "no upgrade response");
        match s.read(&mut chunk) {
            Ok(0) => panic!("connection closed before the upgrade response"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the upgrade response: {e}"),
        }
    }
}

/// One server frame: (opcode, payload), or `None` if `buf` holds no whole
/// frame yet. Server frames are unmasked and never fragmented.
fn server_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let [b0, b1, ..] = *buf else { return None };
    assert_eq!(b0 & 0xF0, 0x80, "server frame not FIN or with RSV bits");
    assert_eq!(b1 & 0x80, 0, "server frame is masked");
    let (len, header) = match b1 & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => {
            let len = u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?);
            (usize::try_from(len).expect("frame length"), 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = buf.get(header..header + len)?;
    Some((b0 & 0x0F, payload, header + len))
}

/// Check everything the server sent on one connection. `cut`: the client
/// half-closed or was reset, so the stream may end anywhere.
fn check_stream(mut buf: &[u8], cut: bool, pusher: bool) {
    let (field, hello) = if pusher {
        ("event", "pusher:connection_established")
    } else {
        ("type", "welcome")
    };
    let mut first = true;
    let mut closed = false;
    while !buf.is_empty() {
        assert!(!closed, "bytes after the server's close frame");
        let Some((op, payload, used)) = server_frame(buf) else {
            // A write cut off by the teardown after our half-close.
            assert!(cut, "truncated server frame");
            return;
        };
        match op {
            0x1 => {
                let v: Value = serde_json::from_slice(payload).unwrap_or_else(|e| {
                    panic!(
                        "server text frame is not JSON ({e}): {:?}",
                        String::from_utf8_lossy(payload)
                    )
                });
                let kind = v
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("frame without {field}: {v}"));
                if first {
                    assert_eq!(kind, hello, "the first frame");
                }
            }
            0x8 => {
                if payload.len() >= 2 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    assert!(
                        shardcast::ws::decode::is_valid_close_code(code),
                        "server close code {code}"
                    );
                    assert!(std::str::from_utf8(&payload[2..]).is_ok());
                }
                closed = true;
            }
            0x9 | 0xA => assert!(payload.len() <= 125),
            op => panic!("server sent opcode {op}"),
        }
        first = false;
        buf = &buf[used..];
    }
    assert!(closed || cut, "the server ended without a close frame");
}

/// Run one client: returns once the server closed the connection.
fn run_client(addr: SocketAddr, input: &[u8]) {
    let flags = input.first().copied().unwrap_or(0);
    let user = USERS[usize::from(flags >> 1) & 3];
    let pusher = flags & PUSHER != 0;
    let frames = client_bytes(input.get(1..).unwrap_or_default());
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(QUIET)).expect("timeout");
    let request = upgrade_request(user, pusher);
    let mut got = if flags & 1 != 0 {
        let mut all = request.into_bytes();
        all.extend_from_slice(&frames);
        // The server may close early (a protocol error): ignore write errors.
        let _ = s.write_all(&all);
        read_head(&mut s)
    } else {
        s.write_all(request.as_bytes()).expect("write");
        let got = read_head(&mut s);
        let _ = s.write_all(&frames);
        got
    };
    let started = Instant::now();
    let mut half_closed = false;
    let mut chunk = [0u8; 16 * 1024];
    // Reads may also end with EINTR: libFuzzer's `-timeout` watchdog is a
    // SIGALRM every timeout/2 + 1 seconds (every 16 s in CI's 30-s runs).
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !half_closed {
                    let _ = s.shutdown(Shutdown::Write);
                    half_closed = true;
                }
                assert!(
                    started.elapsed() < DEADLINE,
                    "the server did not end the connection within {DEADLINE:?}"
                );
            }
            // The server dropped the socket with our bytes unread (raw
            // records can hide the close frame): what it sent may be lost.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                half_closed = true;
                break;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    check_stream(&got, half_closed, pusher);
}

/// A well-behaved client that stays connected across inputs.
struct Witness {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u64,
}

impl Witness {
    fn connect(addr: SocketAddr) -> Witness {
        let mut stream = TcpStream::connect(addr).expect("witness connect");
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(QUIET)).expect("timeout");
        // A user id no input can name.
        let request = upgrade_request("witness-7f3a9c", false);
        stream.write_all(request.as_bytes()).expect("witness write");
        let buf = read_head(&mut stream);
        Witness {
            stream,
            buf,
            next_id: 1,
        }
    }

    /// Ping with a fresh id and wait for its pong.
    fn check(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = Vec::new();
        masked(
            0x81,
            format!(r#"{{"type":"ping","id":{id}}}"#).as_bytes(),
            &mut frame,
        );
        self.stream
            .write_all(&frame)
            .expect("witness: write failed");
        let started = Instant::now();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some((op, payload, used)) = server_frame(&self.buf) {
                assert_ne!(op, 0x8, "witness: the server closed it");
                if op == 0x1 {
                    let v: Value = serde_json::from_slice(payload).expect("witness: JSON");
                    let pong = v.get("type").and_then(Value::as_str) == Some("pong")
                        && v.get("id").and_then(Value::as_u64) == Some(id);
                    self.buf.drain(..used);
                    if pong {
                        return;
                    }
                } else {
                    self.buf.drain(..used);
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "witness: no pong within {DEADLINE:?} (invariant 4)"
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("witness: connection closed (invariant 4)"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("witness: read failed: {e}"),
            }
        }
    }
}

struct Server {
    broker: Broker,
    witness: Witness,
    inputs: u64,
}

impl Server {
    fn start() -> Server {
        let broker = Broker::start(config()).expect("start broker");
        let witness = Witness::connect(broker.local_addr());
        Server {
            broker,
            witness,
            inputs: 0,
        }
    }
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let server = guard.get_or_insert_with(Server::start);
    run_client(server.broker.local_addr(), data);
    server.witness.check();
    server.inputs += 1;
    if (server.inputs >= RESTART_EVERY || server.broker.rooms() > MAX_ROOMS_BEFORE_RESTART)
        && let Some(old) = guard.take()
    {
        drop(old.witness);
        assert!(old.broker.shutdown(), "the broker's drain did not finish");
    }
});
