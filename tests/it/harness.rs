//! Test harness: a real broker on port 0 and a real WebSocket client
//! (tokio-tungstenite, an implementation independent of the server's).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shardcast::{Broker, Config, Overrides};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a broker for one test.
pub(crate) struct TestBroker {
    config: Config,
}

impl TestBroker {
    pub(crate) fn new() -> Self {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            shards: Some(2),
            ..Overrides::default()
        };
        let config = Config::load_from(None, &[], &overrides).expect("default config");
        TestBroker { config }
    }

    /// A broker of `config` as it is (loaded from a file, say).
    pub(crate) fn from_config(config: Config) -> Self {
        TestBroker { config }
    }

    pub(crate) fn shards(mut self, n: usize) -> Self {
        self.config.server.shards = n;
        self
    }

    pub(crate) fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Start, expecting a refusal: its message.
    pub(crate) fn start_err(self) -> String {
        match Broker::start(self.config) {
            Ok(_) => panic!("the broker started"),
            Err(e) => e.to_string(),
        }
    }

    pub(crate) fn start(self) -> Running {
        self.try_start().expect("broker starts")
    }

    /// Start, or say why it did not.
    pub(crate) fn try_start(self) -> Result<Running, shardcast::StartError> {
        self.config.validate().expect("valid test config");
        let broker = Broker::start(self.config)?;
        Ok(Running {
            addr: broker.local_addr(),
            broker: Some(broker),
        })
    }
}

/// A running broker; drained when dropped.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    broker: Option<Broker>,
}

impl Running {
    pub(crate) fn url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("ws://{}/ws", self.addr)
        } else {
            format!("ws://{}/ws?{}", self.addr, query)
        }
    }

    pub(crate) fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("running")
    }

    /// Connect with `query` expecting a refusal before the upgrade:
    /// (HTTP status, JSON body).
    pub(crate) async fn refused(&self, query: &str) -> (u16, Value) {
        match tokio_tungstenite::connect_async(self.url(query)).await {
            Err(tungstenite::Error::Http(resp)) => {
                let body = serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}"))
                    .expect("refusal body is JSON");
                (resp.status().as_u16(), body)
            }
            other => panic!("{query}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    pub(crate) async fn connect(&self, query: &str) -> Client {
        Client::connect(&self.url(query)).await
    }

    /// Connect as `user` and read the welcome.
    pub(crate) async fn user(&self, user: &str) -> Client {
        let mut c = self.connect(&format!("user={user}")).await;
        let w = c.recv().await;
        assert_eq!(w["type"], "welcome", "{w}");
        c.conn = w["conn"].as_u64().expect("conn id");
        c.shard = w["shard"].as_u64().expect("shard");
        c
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown();
        }
    }
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking JSON frames.
pub(crate) struct Client {
    pub(crate) ws: Ws,
    pub(crate) conn: u64,
    pub(crate) shard: u64,
    next_id: u64,
    /// Frames read while looking for a reply, returned by later `recv`s.
    backlog: std::collections::VecDeque<Value>,
}

impl Client {
    pub(crate) async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Client {
            ws,
            conn: 0,
            shard: 0,
            next_id: 1,
            backlog: Default::default(),
        }
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub(crate) async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next JSON frame (pings are answered by tungstenite and skipped).
    pub(crate) async fn recv(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        self.recv_wire().await
    }

    async fn recv_wire(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("stream ended")
                .expect("websocket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("server sent JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The frames read while waiting for replies and not returned yet, in
    /// arrival order (presence events, messages, ...).
    pub(crate) fn take_backlog(&mut self) -> Vec<Value> {
        self.backlog.drain(..).collect()
    }

    /// The next frame of type `kind`, skipping others (presence events, ...).
    pub(crate) async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Send `frame` with a fresh id and return the reply (ack or error)
    /// carrying it, skipping other frames.
    pub(crate) async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = json!(id);
        self.send(frame).await;
        loop {
            let v = self.recv_wire().await;
            if (v["type"] == "ack" || v["type"] == "error" || v["type"] == "pong") && v["id"] == id
            {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    /// `request` that must succeed.
    pub(crate) async fn ok(&mut self, frame: Value) -> Value {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["type"], "ack", "{frame} -> {reply}");
        reply
    }

    /// `request` that must fail with `code`.
    pub(crate) async fn err(&mut self, frame: Value, code: &str) -> Value {
        let reply = self.request(frame.clone()).await;
        assert_eq!(reply["type"], "error", "{frame} -> {reply}");
        assert_eq!(reply["code"], code, "{frame} -> {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
        reply
    }

    pub(crate) async fn join(&mut self, room: &str) -> Value {
        self.ok(json!({"type":"join","room":room})).await
    }

    /// Publish `1..=n` into `room`, each acknowledged.
    pub(crate) async fn publish_n(&mut self, room: &str, n: u64) {
        for i in 1..=n {
            self.ok(json!({"type":"publish","room":room,"data":i}))
                .await;
        }
    }

    /// Read until the server closes; return the close code. Frames before
    /// the close are skipped.
    pub(crate) async fn close_code(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(frame))) => return frame.map(|f: CloseFrame| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => return None,
                Some(Err(e)) => panic!("error before close: {e}"),
            }
        }
    }

    /// Assert nothing arrives for `wait`.
    pub(crate) async fn silent(&mut self, wait: Duration) {
        if let Ok(Some(Ok(msg))) = tokio::time::timeout(wait, self.ws.next()).await {
            if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                panic!("expected silence, got {msg:?}");
            }
        }
    }
}

/// An HTTP GET on loopback; returns (status, headers+body text).
/// `path_and_headers` is the request line's path and version, optionally
/// followed by header lines.
pub(crate) async fn http_get(addr: SocketAddr, path_and_headers: &str) -> (u16, String) {
    exchange(
        addr,
        &format!("GET {path_and_headers}\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Send one raw HTTP/1.1 request and read the response until the server
/// closes: (status, response text).
pub(crate) async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("http timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The JSON body of an HTTP response text.
pub(crate) fn http_body(text: &str) -> Value {
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A raw TCP connection after a hand-made WebSocket handshake, for frames a
/// well-behaved client library refuses to send.
pub(crate) async fn raw_ws(addr: SocketAddr, query: &str) -> TcpStream {
    raw_ws_path(addr, &format!("/ws{query}")).await
}

/// [`raw_ws`] on any path (with its query).
pub(crate) async fn raw_ws_path(addr: SocketAddr, path: &str) -> TcpStream {
    raw_upgrade(addr, path, "").await.0
}

/// A raw WebSocket upgrade on `path` (with its query), with `extra`
/// request header lines (each ending in `\r\n`): the stream right after
/// the response head (asserted 101), and that head.
pub(crate) async fn raw_upgrade(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    // Byte by byte: what follows the head stays in the socket.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut byte))
            .await
            .expect("handshake timeout")
            .expect("read");
        assert_eq!(n, 1, "connection closed during handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, head)
}

/// A client frame, masked unless `masked` is false.
pub(crate) fn raw_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        let mask = [1u8, 2, 3, 4];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Take one whole server frame (not masked) off the front of `buf`:
/// (opcode, payload), or None if `buf` does not hold a whole frame yet.
pub(crate) fn take_server_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    let (hdr, len) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(b) as usize)
        }
        126 | 127 => return None,
        n => (2, n as usize),
    };
    if buf.len() < hdr + len {
        return None;
    }
    let frame = (buf[0] & 0x0F, buf[hdr..hdr + len].to_vec());
    buf.drain(..hdr + len);
    Some(frame)
}

/// Read server frames from a raw connection until a close frame; return its
/// code (None if the socket closed first).
pub(crate) async fn raw_close_code(s: &mut TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((opcode, payload)) = take_server_frame(&mut buf) {
            if opcode == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        let n = tokio::time::timeout(RECV_TIMEOUT, s.read(&mut chunk))
            .await
            .expect("timed out waiting for close")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One HTTP/1.1 request on loopback: (status, JSON body or Null).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let (status, text) = exchange(addr, &req).await;
    (status, http_body(&text))
}

/// The seqs of a join ack's `history`.
pub(crate) fn history_seqs(ack: &Value) -> Vec<u64> {
    ack["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// A join ack's `epoch`, checked to be 16 hex digits.
pub(crate) fn epoch_of(ack: &Value) -> String {
    let epoch = ack["epoch"].as_str().unwrap_or_default().to_string();
    assert!(
        epoch.len() == 16 && epoch.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ack}"
    );
    epoch
}

/// Assert an `error` reply's message mentions `needle`.
pub(crate) fn assert_says(reply: &Value, needle: &str) {
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle)),
        "{reply} does not mention {needle:?}"
    );
}

/// v1.1: `room`, whose incarnation `old` has `n` messages, is deleted
/// through the API at `api` and made again by `owner` with `n` messages.
/// `late` joining with the old `since` and epoch gets the new epoch, the
/// last `on_join` messages and `recovered: false`; without the epoch, the
/// v1 rule cannot tell and answers as a recovery. Returns the new epoch.
pub(crate) async fn remade_room_is_not_recovered(
    api: SocketAddr,
    owner: &mut Client,
    late: &mut Client,
    (room, old, n, on_join): (&str, &str, u64, u64),
) -> String {
    let (status, _) = http(api, "DELETE", &format!("/api/rooms/{room}"), &[], None).await;
    assert_eq!(status, 200);
    owner.recv_type("room_closed").await;
    let new = epoch_of(&owner.join(room).await);
    assert_ne!(new, old);
    owner.publish_n(room, n).await;
    let ack = late
        .ok(json!({"type": "join", "room": room, "since": n, "epoch": old}))
        .await;
    assert_eq!(ack["epoch"], json!(new));
    assert_eq!(
        (ack["recovered"].clone(), history_seqs(&ack)),
        (json!(false), (n + 1 - on_join..=n).collect::<Vec<_>>()),
        "the last history_on_join messages"
    );
    let v1 = late
        .ok(json!({"type": "join", "room": room, "since": n}))
        .await;
    assert_eq!(
        (v1["recovered"].clone(), history_seqs(&v1)),
        (json!(true), vec![])
    );
    new
}

/// The HMAC secret of the brokers these tests run in mode `jwt`.
pub(crate) const JWT_SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A token with `claims`, signed HS256 with [`JWT_SECRET`].
pub(crate) fn hs256(claims: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Connect with `token` in the query and read the welcome.
pub(crate) async fn with_token(broker: &Running, token: &str) -> Client {
    let mut c = broker.connect(&format!("token={token}")).await;
    let w = c.recv().await;
    assert_eq!(w["type"], "welcome", "{w}");
    c.conn = w["conn"].as_u64().expect("conn id");
    c.shard = w["shard"].as_u64().expect("shard");
    c
}
