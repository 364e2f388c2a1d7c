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
//!
//! Here: where to connect, the connection and its read loop; the RESP it
//! speaks is `resp.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

mod resp;

pub use resp::read_all;
use resp::{Resp, event_of, push_command, read_value};

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
