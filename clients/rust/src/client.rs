//! The handles an application holds: [`Client`], [`Room`], [`Events`], and
//! the [`Event`]s it reads. Every handle talks to one connection task
//! (`connection.rs`) through a bounded channel.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::connection::{Command, Connection};
use crate::error::Error;
use crate::frames::{
    ClientFrame, Direct, Members, Message, Notification, Presence, ServerError, Welcome,
};
use crate::options::{DEFAULT_COMMAND_BUFFER, Options};

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Opening a connection.
    Connecting,
    /// Welcomed by the server; rooms are being rejoined.
    Connected,
    /// Lost; the next attempt comes after `delay`.
    Disconnected,
    /// Stopped for good (`close()`, kicked, refused); `reason` says why.
    Closed,
}

/// Something that happened, read from [`Events`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The connection's state changed.
    State {
        /// The new state.
        state: State,
        /// Why (disconnects and closes).
        reason: Option<String>,
        /// The WebSocket close code, when the server closed.
        code: Option<u16>,
        /// For `Disconnected`: the wait before the next attempt.
        delay: Option<Duration>,
    },
    /// A connection's `welcome`.
    Welcome(Welcome),
    /// A room message: within one epoch, every seq once, in order.
    Message(Message),
    /// Messages `from..=to` of `room` could not be recovered.
    Gap {
        /// The room.
        room: String,
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
    /// `room` was rejoined after a reconnect. `recovered: false`: reload
    /// the app's state; `epoch_changed`: the room is a new incarnation
    /// whose seqs start again.
    Resumed {
        /// The room.
        room: String,
        /// Every missed message is delivered (after this event).
        recovered: bool,
        /// The room is a new incarnation.
        epoch_changed: bool,
    },
    /// Another member joined a room.
    Joined(Presence),
    /// Another member left a room.
    Left(Presence),
    /// The room was deleted (`reason: "deleted"`), or a rejoin was refused
    /// (`code`); it is not rejoined.
    RoomClosed {
        /// The room.
        room: String,
        /// Why.
        reason: String,
        /// The server's error code, for a refused rejoin.
        code: Option<String>,
    },
    /// A `send` to this user.
    Direct(Direct),
    /// A `broadcast`.
    Broadcast(Direct),
    /// A notification from the server's HTTP API.
    Notification(Notification),
    /// An `error` frame that answers no request.
    Error(ServerError),
    /// The token was refreshed without reconnecting; `exp` is its expiry.
    Refreshed {
        /// Unix seconds.
        exp: u64,
    },
}

/// Options of [`Room::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// Deliver the join ack's recent history as messages first (default false).
    pub history: bool,
    /// Create the room if missing (default true).
    pub create: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            history: false,
            create: true,
        }
    }
}

/// What a join returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// The room.
    pub room: String,
    /// The room's last seq when the join took effect.
    pub seq: u64,
    /// Member count, this connection included.
    pub members: u64,
    /// The room's incarnation (v1.1 servers).
    pub epoch: Option<String>,
}

/// The events of a client, in the order they happened. Read them
/// continuously (e.g. in a task of their own): the channel is bounded, and
/// while it is full the connection stops reading from the server.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; None once the client is closed and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// A client: one logical connection that reconnects, rejoins its rooms and
/// recovers missed messages. Cheap to clone; the connection stops when
/// [`Client::close`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    /// Handles wait this much longer than the connection task's own timeout.
    reply_wait: Duration,
}

/// Margin of a handle's own wait beyond the request timeout: the
/// connection task times requests out itself; this only guards a stopped task.
const HANDLE_MARGIN: Duration = Duration::from_secs(2);

impl Client {
    /// Start connecting (on the current tokio runtime) and return the
    /// client with its events.
    pub fn connect(options: Options) -> (Client, Events) {
        let (commands, command_rx) = mpsc::channel(DEFAULT_COMMAND_BUFFER);
        let (event_tx, rx) = mpsc::channel(options.event_buffer);
        let reply_wait = options.request_timeout + HANDLE_MARGIN;
        tokio::spawn(Connection::new(options, command_rx, event_tx).run());
        (
            Client {
                commands,
                reply_wait,
            },
            Events { rx },
        )
    }

    /// The handle of room `name`.
    pub fn room(&self, name: impl Into<String>) -> Room {
        Room {
            client: self.clone(),
            name: name.into(),
        }
    }

    /// A direct message to every connection of `user`.
    pub async fn send(&self, user: &str, data: &impl Serialize) -> Result<(), Error> {
        let data = to_value(data)?;
        self.request(ClientFrame::Send {
            to: user.to_string(),
            data,
        })
        .await
        .map(drop)
    }

    /// A `broadcast` to every connection (needs the `broadcast` right).
    pub async fn broadcast(&self, data: &impl Serialize) -> Result<(), Error> {
        let data = to_value(data)?;
        self.request(ClientFrame::Broadcast { data })
            .await
            .map(drop)
    }

    /// An application-level ping; returns the round trip.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let started = std::time::Instant::now();
        self.request(ClientFrame::Ping {}).await?;
        Ok(started.elapsed())
    }

    /// Close for good: pending requests fail with `closed`, rooms are left.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            let _ = tokio::time::timeout(self.reply_wait, wait).await;
        }
    }

    pub(crate) async fn request(&self, frame: ClientFrame) -> Result<Map<String, Value>, Error> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Request { frame, reply }, rx).await
    }

    async fn call<T>(
        &self,
        command: Command,
        rx: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        if self.commands.send(command).await.is_err() {
            return Err(Error::Closed("the connection task has stopped".into()));
        }
        match tokio::time::timeout(self.reply_wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed("the connection task has stopped".into())),
            Err(_) => Err(Error::Timeout(self.reply_wait)),
        }
    }
}

/// A room handle (see [`Client::room`]).
#[derive(Debug, Clone)]
pub struct Room {
    client: Client,
    name: String,
}

impl Room {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Join, and rejoin after every reconnect until [`Room::leave`].
    pub async fn join(&self, options: JoinOptions) -> Result<JoinResult, Error> {
        let (reply, rx) = oneshot::channel();
        self.client
            .call(
                Command::Join {
                    room: self.name.clone(),
                    options,
                    reply,
                },
                rx,
            )
            .await
    }

    /// Publish `data`; returns its seq.
    pub async fn publish(&self, data: &impl Serialize) -> Result<u64, Error> {
        self.publish_with(data, false).await
    }

    /// Publish `data`, skipping this connection's own copy if `exclude_self`.
    pub async fn publish_with(
        &self,
        data: &impl Serialize,
        exclude_self: bool,
    ) -> Result<u64, Error> {
        let data = to_value(data)?;
        let ack = self
            .client
            .request(ClientFrame::Publish {
                room: self.name.clone(),
                data,
                exclude_self,
            })
            .await?;
        ack.get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::BadReply("a publish ack without seq".into()))
    }

    /// The presence list.
    pub async fn members(&self) -> Result<Members, Error> {
        let ack = self
            .client
            .request(ClientFrame::Members {
                room: self.name.clone(),
            })
            .await?;
        serde_json::from_value(Value::Object(ack)).map_err(|e| Error::BadReply(e.to_string()))
    }

    /// Leave; the room is not rejoined after reconnects.
    pub async fn leave(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.client
            .call(
                Command::Leave {
                    room: self.name.clone(),
                    reply,
                },
                rx,
            )
            .await
    }
}

fn to_value(data: &impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(data).map_err(|e| Error::InvalidData(e.to_string()))
}
