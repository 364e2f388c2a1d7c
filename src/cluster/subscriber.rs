//! The node's subscriber connection to Redis, read with backpressure.
//!
//! A client library that reads pub/sub messages eagerly into an unbounded
//! queue lets a node that falls behind grow without bound. This reader
//! takes one message at a time off the socket and hands it to the
//! backplane through a queue bounded in messages (`cluster.subscriber_queue`)
//! and bytes (`cluster.subscriber_queue_bytes`); when the queue is full it
//! stops reading. The socket's buffers fill, Redis buffers the rest, and
//! Redis disconnects the subscriber once its `client-output-buffer-limit
//! pubsub` is reached. The backplane then reconnects, resubscribes and
//! repairs each room from its history stream (`gap` for what is gone).
//!
//! Subscribe and unsubscribe commands are written by the backplane; their
//! confirmations come back in the same stream as the messages, so a
//! `Subscribed` event means every later message of that channel follows.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// What the subscriber connection brings.
#[derive(Debug)]
pub enum SubEvent {
    /// A message on a subscribed channel.
    Message {
        /// The channel.
        channel: String,
        /// The payload.
        payload: Bytes,
    },
    /// A subscription is in place.
    Subscribed(String),
    /// A subscription ended.
    Unsubscribed(String),
    /// The answer to a `PING`.
    Pong,
    /// The connection ended; the reason.
    Lost(String),
}

/// Where the subscriber connects.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    /// `CLIENT SETNAME` of the connection, so `CLIENT LIST` tells which
    /// node it is.
    name: Option<String>,
    /// TLS with this configuration (`rediss`).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}
type BoxStream = Box<dyn Stream>;

impl Endpoint {
    /// The same endpoint, its connections named `name` (`[A-Za-z0-9_.:@-]`).
    pub fn named(mut self, name: &str) -> Endpoint {
        self.name = Some(name.to_string());
        self
    }

    /// The endpoint of `client`'s URL (plain TCP only).
    pub fn of(client: &redis::Client) -> Result<Endpoint, String> {
        let info = client.get_connection_info();
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            other => {
                return Err(format!(
                    "unsupported Redis address {other:?} (use redis://host:port)"
                ));
            }
        };
        let settings = info.redis_settings();
        Ok(Endpoint {
            host,
            port,
            username: settings.username().map(String::from),
            password: settings.password().map(String::from),
            name: None,
            tls: None,
        })
    }

    /// The endpoint of a resolved Redis address.
    pub(crate) fn at(addr: crate::cluster::target::Addr) -> Endpoint {
        Endpoint {
            host: addr.host,
            port: addr.port,
            username: addr.username,
            password: addr.password,
            name: None,
            tls: addr.tls,
        }
    }
}

/// Bounds of a subscriber connection.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Messages waiting for the backplane.
    pub queue: usize,
    /// Bytes of payload waiting for the backplane.
    pub queue_bytes: usize,
    /// Largest payload accepted (a larger one ends the connection).
    pub max_payload: usize,
    /// Connecting gives up after this long.
    pub connect_timeout: Duration,
}

/// The writing side, owned by the backplane; the reader task ends with it.
pub struct Subscriber {
    writer: WriteHalf<BoxStream>,
    reader: JoinHandle<()>,
}

/// The reading side: events in the order Redis sent them.
pub struct SubReceiver {
    events: mpsc::Receiver<(SubEvent, u32)>,
    budget: Arc<Semaphore>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Subscriber {
    /// Ask for `channels`; each gets a [`SubEvent::Subscribed`].
    pub async fn subscribe(&mut self, channels: &[String]) -> std::io::Result<()> {
        self.command("SUBSCRIBE", channels).await
    }

    /// Drop `channels`; each gets a [`SubEvent::Unsubscribed`].
    pub async fn unsubscribe(&mut self, channels: &[String]) -> std::io::Result<()> {
        self.command("UNSUBSCRIBE", channels).await
    }

    /// Ask for a [`SubEvent::Pong`] (a liveness check).
    pub async fn ping(&mut self) -> std::io::Result<()> {
        self.command("PING", &[]).await
    }

    async fn command(&mut self, name: &str, args: &[String]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(32 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        push_command(&mut out, name, args.iter().map(String::as_bytes));
        self.writer.write_all(&out).await
    }
}

impl SubReceiver {
    /// The next event; `None` once the reader has ended and all is read.
    pub async fn recv(&mut self) -> Option<SubEvent> {
        let (event, weight) = self.events.recv().await?;
        self.budget.add_permits(weight as usize);
        Some(event)
    }
}

/// Connect (and authenticate) a subscriber connection.
pub async fn connect(
    endpoint: &Endpoint,
    bounds: Bounds,
) -> Result<(Subscriber, SubReceiver), String> {
    let connecting = TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let stream = match tokio::time::timeout(bounds.connect_timeout, connecting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "no answer within {} ms",
                bounds.connect_timeout.as_millis()
            ));
        }
    };
    let _ = stream.set_nodelay(true);
    let stream: BoxStream = match &endpoint.tls {
        None => Box::new(stream),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| format!("TLS server name {:?}: {e}", endpoint.host))?;
            let handshake = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream);
            match tokio::time::timeout(bounds.connect_timeout, handshake).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
                Err(_) => return Err("no TLS handshake in time".into()),
            }
        }
    };
    let (read, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read);
    // AUTH and CLIENT SETNAME, each answered +OK.
    let mut setup = Vec::new();
    if let Some(password) = &endpoint.password {
        let mut out = Vec::new();
        match &endpoint.username {
            Some(user) => push_command(
                &mut out,
                "AUTH",
                [user.as_bytes(), password.as_bytes()].into_iter(),
            ),
            None => push_command(&mut out, "AUTH", [password.as_bytes()].into_iter()),
        }
        setup.push(("AUTH", out));
    }
    if let Some(name) = &endpoint.name {
        let mut out = Vec::new();
        push_command(
            &mut out,
            "CLIENT",
            [&b"SETNAME"[..], name.as_bytes()].into_iter(),
        );
        setup.push(("CLIENT SETNAME", out));
    }
    for (what, out) in setup {
        let answer = async {
            writer.write_all(&out).await.map_err(|e| e.to_string())?;
            read_value(&mut reader, 1024).await
        };
        match tokio::time::timeout(bounds.connect_timeout, answer).await {
            Ok(Ok(Resp::Simple(ok))) if ok == "OK" => {}
            Ok(Ok(Resp::Error(e))) => return Err(format!("{what} refused: {e}")),
            Ok(Ok(other)) => return Err(format!("unexpected {what} answer {other:?}")),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("no answer to {what}")),
        }
    }
    let (tx, rx) = mpsc::channel(bounds.queue.max(1));
    let budget = Arc::new(Semaphore::new(bounds.queue_bytes.max(1)));
    let task = tokio::spawn(read_loop(reader, tx, budget.clone(), bounds));
    Ok((
        Subscriber {
            writer,
            reader: task,
        },
        SubReceiver { events: rx, budget },
    ))
}

/// Bytes the reader buffers from the socket at most (besides one payload).
const READ_BUFFER_BYTES: usize = 64 * 1024;

async fn read_loop(
    mut reader: BufReader<ReadHalf<BoxStream>>,
    events: mpsc::Sender<(SubEvent, u32)>,
    budget: Arc<Semaphore>,
    bounds: Bounds,
) {
    let limit = bounds.queue_bytes.max(1);
    loop {
        let event = match read_value(&mut reader, bounds.max_payload).await {
            Ok(value) => match event_of(value) {
                Some(event) => event,
                None => continue,
            },
            Err(reason) => SubEvent::Lost(reason),
        };
        let lost = matches!(event, SubEvent::Lost(_));
        let weight = match &event {
            SubEvent::Message { payload, .. } => payload.len().clamp(1, limit),
            _ => 1,
        };
        // Wait for room in the byte budget: this is the backpressure.
        let Ok(permit) = budget.acquire_many(weight as u32).await else {
            return;
        };
        permit.forget();
        if events.send((event, weight as u32)).await.is_err() || lost {
            return;
        }
    }
}

/// Every event in `bytes`, read as the subscriber connection reads Redis
/// (bulk strings up to `max_payload`), and why the reading ended (an error
/// reply, bad bytes, or the end of the bytes), as the connection would
/// have. For the `resp_reader` fuzz target.
#[doc(hidden)]
pub fn read_all(bytes: &[u8], max_payload: usize) -> (Vec<SubEvent>, String) {
    use futures_util::FutureExt;
    let mut reader = BufReader::new(bytes);
    let mut events = Vec::new();
    loop {
        // A slice never makes a read wait.
        let Some(value) = read_value(&mut reader, max_payload).now_or_never() else {
            return (events, "a read of a slice waited".into());
        };
        match value.map(event_of) {
            Ok(Some(SubEvent::Lost(reason))) => return (events, reason),
            Ok(event) => events.extend(event),
            Err(e) => return (events, e),
        }
    }
}

/// A RESP2 value, as much of it as a subscriber needs.
#[derive(Debug)]
enum Resp {
    Simple(String),
    Error(String),
    /// An integer (subscription counts; the value is not needed).
    Int,
    Bulk(Option<Bytes>),
    Array(Vec<Resp>),
}

fn event_of(value: Resp) -> Option<SubEvent> {
    let Resp::Array(mut parts) = value else {
        return match value {
            Resp::Error(e) => Some(SubEvent::Lost(format!("Redis error: {e}"))),
            // A `PING` outside subscribed mode (after unsubscribing from
            // everything) is answered as a plain status.
            Resp::Simple(s) if s == "PONG" => Some(SubEvent::Pong),
            _ => None,
        };
    };
    if parts.is_empty() {
        return None;
    }
    let kind = match parts.remove(0) {
        Resp::Bulk(Some(k)) => k,
        _ => return None,
    };
    let text = |r: Resp| match r {
        Resp::Bulk(Some(b)) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    };
    match &kind[..] {
        b"message" if parts.len() == 2 => {
            let payload = match parts.pop()? {
                Resp::Bulk(Some(b)) => b,
                _ => return None,
            };
            Some(SubEvent::Message {
                channel: text(parts.pop()?)?,
                payload,
            })
        }
        b"subscribe" => Some(SubEvent::Subscribed(text(parts.into_iter().next()?)?)),
        b"unsubscribe" => Some(SubEvent::Unsubscribed(text(parts.into_iter().next()?)?)),
        b"pong" => Some(SubEvent::Pong),
        _ => None,
    }
}

/// Read one RESP2 value; bulk strings longer than `max_payload` and
/// arrays longer than a few elements end the connection.
async fn read_value<R: AsyncBufReadExt + AsyncReadExt + Unpin>(
    reader: &mut R,
    max_payload: usize,
) -> Result<Resp, String> {
    let line = read_line(reader).await?;
    let Some((kind, rest)) = line.split_at_checked(1) else {
        return Err("malformed line from Redis".into());
    };
    match kind {
        "+" => Ok(Resp::Simple(rest.to_string())),
        "-" => Ok(Resp::Error(rest.to_string())),
        ":" => rest
            .parse::<i64>()
            .map(|_| Resp::Int)
            .map_err(|_| format!("bad integer {rest:?}")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad length {rest:?}"))?;
            if len < 0 {
                return Ok(Resp::Bulk(None));
            }
            let len = len as usize;
            if len > max_payload {
                return Err(format!(
                    "a message of {len} bytes is over the {max_payload}-byte bound"
                ));
            }
            let mut buf = vec![0u8; len + 2];
            reader
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(Resp::Bulk(Some(Bytes::from(buf))))
        }
        "*" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| format!("bad array length {rest:?}"))?;
            if n > MAX_ARRAY {
                return Err(format!(
                    "an array of {n} elements on the subscriber connection"
                ));
            }
            let mut parts = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                parts.push(Box::pin(read_scalar(reader, max_payload)).await?);
            }
            Ok(Resp::Array(parts))
        }
        other => Err(format!("unexpected RESP type {other:?}")),
    }
}

/// Pub/sub frames are flat arrays of at most four elements.
const MAX_ARRAY: i64 = 8;

/// A value inside an array: never itself an array on this connection.
async fn read_scalar<R: AsyncBufReadExt + AsyncReadExt + Unpin>(
    reader: &mut R,
    max_payload: usize,
) -> Result<Resp, String> {
    match read_value(reader, max_payload).await? {
        Resp::Array(_) => Err("nested array on the subscriber connection".into()),
        scalar => Ok(scalar),
    }
}

/// Longest header line (type byte, number or short status, CRLF).
const MAX_LINE: usize = 1024;

async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Result<String, String> {
    let mut line = Vec::with_capacity(32);
    let mut limited = reader.take(MAX_LINE as u64);
    let n = limited
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("Redis closed the subscriber connection".into());
    }
    if !line.ends_with(b"\r\n") || line.len() < 3 {
        return Err("malformed line from Redis".into());
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| "non-UTF-8 header line from Redis".into())
}

/// A command as a RESP array of bulk strings.
fn push_command<'a>(out: &mut Vec<u8>, name: &str, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    out.extend_from_slice(
        format!("*{}\r\n${}\r\n{name}\r\n", args.len() + 1, name.len()).as_bytes(),
    );
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Resp, String> {
        let mut reader = BufReader::new(bytes);
        read_value(&mut reader, 16).await
    }

    #[tokio::test]
    async fn reads_pubsub_frames() {
        let msg = parse(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n").await;
        match event_of(msg.expect("frame")) {
            Some(SubEvent::Message { channel, payload }) => {
                assert_eq!((channel.as_str(), &payload[..]), ("ch", &b"hello"[..]));
            }
            other => panic!("{other:?}"),
        }
        let sub = parse(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n").await;
        assert!(
            matches!(event_of(sub.expect("frame")), Some(SubEvent::Subscribed(c)) if c == "ch")
        );
        let pong = parse(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
        assert!(matches!(
            event_of(pong.expect("frame")),
            Some(SubEvent::Pong)
        ));
    }

    #[test]
    fn short_arrays_and_odd_bytes_are_errors_not_panics() {
        // Seen reading the reader for the `resp_reader` fuzz target: a
        // `subscribe` with no channel, and a line starting with a
        // multi-byte character.
        for input in [
            &b"*1\r\n$9\r\nsubscribe\r\n"[..],
            b"*1\r\n$11\r\nunsubscribe\r\n",
            "\u{e9}x\r\n".as_bytes(),
        ] {
            let (events, end) = read_all(input, 64);
            assert!(events.is_empty(), "{events:?}");
            assert!(!end.is_empty());
        }
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_bound() {
        assert!(
            parse(b"$17\r\n01234567890123456\r\n").await.is_err(),
            "over max_payload"
        );
        assert!(parse(b"*100\r\n").await.is_err(), "long array");
        assert!(parse(b"*1\r\n*1\r\n:1\r\n").await.is_err(), "nested array");
        assert!(parse(b"?x\r\n").await.is_err(), "unknown type");
        assert!(parse(b"").await.is_err(), "closed");
        assert!(parse(b":12").await.is_err(), "no CRLF");
        let long_line = vec![b'+'; 4096];
        assert!(parse(&long_line).await.is_err(), "endless line");
    }

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        push_command(&mut out, "SUBSCRIBE", [&b"a"[..], b"bc"].into_iter());
        assert_eq!(out, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$2\r\nbc\r\n");
    }
}
