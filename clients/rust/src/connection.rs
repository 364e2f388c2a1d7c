//! The connection task: owns the WebSocket, the rooms and the pending
//! requests, and is the only place that does I/O.
//!
//! Invariants:
//! - One WebSocket at a time. After each `welcome`, every wanted room is
//!   rejoined (with `since` and, on v1.1 servers, `epoch`) before any
//!   queued request is sent.
//! - Every request settles: on its reply, its deadline (checked every
//!   tick), a disconnect (if it was sent: `disconnected`), or close.
//! - Bounded: at most `max_pending_requests` application requests; rooms
//!   hold at most `max_buffered_messages` live messages during a join.
//! - Liveness: no frame for `heartbeat_ms + heartbeat_margin` means the
//!   connection is dead; an idle connection sends a `ping` frame after half
//!   of `heartbeat_ms`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{Event, JoinOptions, JoinResult, State};
use crate::error::Error;
use crate::frames::{ClientFrame, JoinAck, ServerFrame, Welcome};
use crate::options::Options;
use crate::policy::{self, Closed, Decision, Refusal};
use crate::room::{JoinKind, RoomState};
use crate::token::token_expiry;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Longest tick of the timer that checks deadlines and liveness.
const MAX_TICK: Duration = Duration::from_millis(250);
/// Wait before retrying a failed token refresh.
const REFRESH_RETRY: Duration = Duration::from_secs(5);
/// Longest refusal body read.
const MAX_REFUSAL_BODY: usize = 4096;

/// What handles ask of the connection task.
pub(crate) enum Command {
    Request {
        frame: ClientFrame,
        reply: Reply<Map<String, Value>>,
    },
    Join {
        room: String,
        options: JoinOptions,
        reply: Reply<JoinResult>,
    },
    Leave {
        room: String,
        reply: Reply<()>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

enum Pending {
    App {
        frame: ClientFrame,
        sent: bool,
        reply: Reply<Map<String, Value>>,
        deadline: Instant,
    },
    Join {
        room: String,
        kind: JoinKind,
        deadline: Instant,
    },
    Leave {
        reply: Option<Reply<()>>,
        deadline: Instant,
    },
    Refresh {
        token: String,
        deadline: Instant,
    },
}

impl Pending {
    fn deadline(&self) -> Instant {
        match self {
            Pending::App { deadline, .. }
            | Pending::Join { deadline, .. }
            | Pending::Leave { deadline, .. }
            | Pending::Refresh { deadline, .. } => *deadline,
        }
    }
}

/// How serving a connection ended.
enum Ended {
    Closed(Closed),
    /// `close()`, or every handle dropped.
    Stop,
}

pub(crate) struct Connection {
    opts: Options,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    rooms: HashMap<String, RoomState>,
    /// Join waiters per room: their replies and the first one's deadline.
    waiters: HashMap<String, (Vec<Reply<JoinResult>>, Instant)>,
    pending: BTreeMap<u64, Pending>,
    app_pending: usize,
    next_id: u64,
    attempt: u32,
    welcome: Option<Welcome>,
    /// Frames to write, in order.
    outbox: Vec<String>,
    token: Option<String>,
    close_waiters: Vec<oneshot::Sender<()>>,
    /// The `exp` of the last successful refresh, for the serve loop.
    refreshed: Option<u64>,
    /// A refresh failed; the serve loop retries it.
    refresh_failed: bool,
    /// A join went unanswered: the serve loop drops the connection.
    abandon: Option<String>,
}

impl Connection {
    pub(crate) fn new(
        opts: Options,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Connection {
            opts,
            commands,
            events,
            rooms: HashMap::new(),
            waiters: HashMap::new(),
            pending: BTreeMap::new(),
            app_pending: 0,
            next_id: 1,
            attempt: 0,
            welcome: None,
            outbox: Vec::new(),
            token: None,
            close_waiters: Vec::new(),
            refreshed: None,
            refresh_failed: false,
            abandon: None,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.state(State::Connecting, None, None, None).await;
            let ended = match self.open().await {
                Ok(Some((ws, welcome))) => self.serve(ws, welcome).await,
                Ok(None) => Ended::Stop,
                Err(closed) => Ended::Closed(closed),
            };
            let closed = match ended {
                Ended::Stop => return self.stop("closed by the application".into(), None).await,
                Ended::Closed(closed) => closed,
            };
            self.connection_lost(&closed.reason);
            let decision = policy::after_close(
                &closed,
                &policy::Context {
                    attempt: self.attempt,
                    min: self.opts.min_reconnect_delay,
                    max: self.opts.max_reconnect_delay,
                    has_token_source: self.opts.token_source.is_some(),
                },
            );
            let code = closed.opened.then_some(closed.code);
            match decision {
                Decision::Stop { reason } => return self.stop(reason, code).await,
                Decision::Reconnect { delay, reason } => {
                    self.attempt = self.attempt.saturating_add(1);
                    self.state(State::Disconnected, Some(reason), code, Some(delay))
                        .await;
                    if !self.wait(delay).await {
                        return self.stop("closed by the application".into(), None).await;
                    }
                }
            }
        }
    }

    /// One attempt: token, upgrade, welcome. `Ok(None)`: closed meanwhile.
    async fn open(&mut self) -> Result<Option<(Ws, Welcome)>, Closed> {
        let token = match &self.opts.token_source {
            Some(source) => Some(
                source()
                    .await
                    .map_err(|e| Closed::failed(format!("token source failed: {e}")))?,
            ),
            None => None,
        };
        let url = connect_url(&self.opts, token.as_deref());
        self.token = token;
        let attempt = async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(refusal_of)?;
            loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Ok(ServerFrame::Welcome(w)) = serde_json::from_str(&text) {
                            return Ok((ws, w));
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        let (code, reason) = close_parts(frame);
                        return Err(Closed::dropped(code, reason));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(Closed::failed(e.to_string())),
                    None => return Err(Closed::failed("closed before the welcome")),
                }
            }
        };
        let deadline = tokio::time::sleep(self.opts.connect_timeout);
        tokio::pin!(attempt, deadline);
        loop {
            tokio::select! {
                result = &mut attempt => return result.map(Some),
                _ = &mut deadline => return Err(Closed::failed(format!("no welcome within {:?}", self.opts.connect_timeout))),
                command = self.commands.recv() => match command {
                    None => return Ok(None),
                    Some(Command::Close { done }) => { self.close_waiters.push(done); return Ok(None); }
                    Some(c) => self.command(c),
                },
            }
        }
    }

    /// Serve one connection until it ends.
    async fn serve(&mut self, mut ws: Ws, welcome: Welcome) -> Ended {
        let heartbeat = Duration::from_millis(if welcome.heartbeat_ms > 0 {
            welcome.heartbeat_ms
        } else {
            25_000
        });
        let speaks_v1_1 = welcome.speaks_v1_1();
        self.welcome = Some(welcome.clone());
        self.attempt = 0;
        self.state(State::Connected, None, None, None).await;
        self.emit(Event::Welcome(welcome)).await;
        let names: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.desired)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let kind = self
                .rooms
                .get(&name)
                .map_or(JoinKind::First, RoomState::reconnect_kind);
            self.send_join(&name, kind);
        }
        let queued: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::App { sent: false, .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in queued {
            if let Some(Pending::App { frame, sent, .. }) = self.pending.get_mut(&id) {
                *sent = true;
                self.outbox.push(frame.encode(Some(id)));
            }
        }
        let dead_after = heartbeat + self.opts.heartbeat_margin;
        let ping_after = heartbeat / 2;
        let mut tick =
            tokio::time::interval((heartbeat / 4).clamp(Duration::from_millis(20), MAX_TICK));
        let mut last_rx = Instant::now();
        let mut last_ping = Instant::now();
        let mut refresh_at = self.refresh_time(self.token.as_deref().and_then(token_expiry));
        let (token_tx, mut token_rx) = mpsc::channel::<Result<String, String>>(1);
        loop {
            // A peer that stops reading must not stall this loop forever.
            match tokio::time::timeout(dead_after, self.flush(&mut ws)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Ended::Closed(Closed::dropped(1006, e.to_string())),
                Err(_) => {
                    return Ended::Closed(Closed::dropped(
                        1006,
                        "the server stopped reading (write timed out)",
                    ));
                }
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => { close_politely(&mut ws).await; return Ended::Stop; }
                    Some(Command::Close { done }) => {
                        self.close_waiters.push(done);
                        close_politely(&mut ws).await;
                        return Ended::Stop;
                    }
                    Some(c) => self.command(c),
                },
                incoming = ws.next() => {
                    last_rx = Instant::now();
                    match incoming {
                        Some(Ok(WsMessage::Text(text))) => self.frame(&text).await,
                        Some(Ok(WsMessage::Close(frame))) => {
                            let (code, reason) = close_parts(frame);
                            return Ended::Closed(Closed::dropped(code, reason));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Ended::Closed(Closed::dropped(1006, e.to_string())),
                        None => return Ended::Closed(Closed::dropped(1006, "the connection ended")),
                    }
                }
                token = token_rx.recv() => match token {
                    Some(Ok(token)) => {
                        let id = self.new_id();
                        self.outbox.push(ClientFrame::Refresh { token: token.clone() }.encode(Some(id)));
                        let deadline = Instant::now() + self.opts.request_timeout;
                        self.pending.insert(id, Pending::Refresh { token, deadline });
                    }
                    _ => refresh_at = Some(Instant::now() + REFRESH_RETRY),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.expire(now);
                    if let Some(reason) = self.abandon.take() {
                        return Ended::Closed(Closed::dropped(1006, reason));
                    }
                    let idle = now - last_rx;
                    if idle >= dead_after {
                        return Ended::Closed(Closed::dropped(1006, format!(
                            "no traffic from the server for {} ms (heartbeat {} ms)", idle.as_millis(), heartbeat.as_millis())));
                    }
                    if idle >= ping_after && now - last_ping >= ping_after {
                        last_ping = now;
                        self.outbox.push(ClientFrame::Ping {}.encode(None));
                    }
                    if let (Some(at), Some(source)) = (refresh_at, &self.opts.token_source) {
                        if now >= at {
                            refresh_at = None;
                            if !speaks_v1_1 {
                                // A v1 server has no `refresh`: reconnect with a new token.
                                close_politely(&mut ws).await;
                                self.attempt = 0;
                                return Ended::Closed(Closed::dropped(1000, "reconnecting to renew the token (the server has no refresh)"));
                            }
                            let source = source.clone();
                            let tx = token_tx.clone();
                            tokio::spawn(async move { let _ = tx.send(source().await).await; });
                        }
                    }
                    if let Some(exp) = self.take_refreshed() {
                        refresh_at = self.refresh_time(Some(exp));
                    }
                    if let Some(retry) = self.take_refresh_retry() {
                        refresh_at = Some(now + retry);
                    }
                }
            }
        }
    }

    /// Write the outbox.
    async fn flush(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        for text in self.outbox.drain(..) {
            ws.feed(WsMessage::text(text)).await?;
        }
        ws.flush().await
    }

    fn refresh_time(&self, exp: Option<u64>) -> Option<Instant> {
        let exp = exp?;
        self.opts.token_source.as_ref()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(exp).saturating_sub(now);
        let lead = self.opts.refresh_before_expiry.min(left / 2);
        Some(Instant::now() + left.saturating_sub(lead))
    }

    /// The outcome of a refresh ack, read by the serve loop's tick.
    fn take_refreshed(&mut self) -> Option<u64> {
        self.refreshed.take()
    }

    fn take_refresh_retry(&mut self) -> Option<Duration> {
        std::mem::take(&mut self.refresh_failed).then_some(REFRESH_RETRY)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn connected(&self) -> bool {
        self.welcome.is_some()
    }

    /// A command from a handle (everything but `Close`).
    fn command(&mut self, command: Command) {
        let deadline = Instant::now() + self.opts.request_timeout;
        match command {
            Command::Request { frame, reply } => {
                if self.app_pending >= self.opts.max_pending_requests {
                    let _ = reply.send(Err(Error::QueueFull(self.opts.max_pending_requests)));
                    return;
                }
                let id = self.new_id();
                let sent = self.connected();
                if sent {
                    self.outbox.push(frame.encode(Some(id)));
                }
                self.pending.insert(
                    id,
                    Pending::App {
                        frame,
                        sent,
                        reply,
                        deadline,
                    },
                );
                self.app_pending += 1;
            }
            Command::Join {
                room,
                options,
                reply,
            } => {
                let state = self
                    .rooms
                    .entry(room.clone())
                    .or_insert_with(|| RoomState::new(&room));
                if state.desired && state.joined {
                    if let Some(result) = state.last_result.clone() {
                        let _ = reply.send(Ok(result));
                        return;
                    }
                }
                state.desired = true;
                state.options = options;
                let idle = !state.joining;
                let kind = state.reconnect_kind();
                self.waiters
                    .entry(room.clone())
                    .or_insert_with(|| (Vec::new(), deadline))
                    .0
                    .push(reply);
                if self.connected() && idle {
                    self.send_join(&room, kind);
                }
            }
            Command::Leave { room, reply } => {
                let was_in = self.rooms.get_mut(&room).is_some_and(|state| {
                    let was_in = state.joined || state.joining;
                    state.reset();
                    was_in
                });
                if let Some((replies, _)) = self.waiters.remove(&room) {
                    for r in replies {
                        let _ = r.send(Err(Error::Closed(format!(
                            "left {room} before the join completed"
                        ))));
                    }
                }
                if was_in && self.connected() {
                    self.send_leave(&room, Some(reply));
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Close { done } => self.close_waiters.push(done),
        }
    }

    fn send_join(&mut self, room: &str, kind: JoinKind) {
        let speaks = self.welcome.as_ref().is_some_and(Welcome::speaks_v1_1);
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let frame = state.join_frame(speaks);
        let id = self.new_id();
        self.outbox.push(frame.encode(Some(id)));
        let deadline = Instant::now() + self.opts.request_timeout;
        self.pending.insert(
            id,
            Pending::Join {
                room: room.to_string(),
                kind,
                deadline,
            },
        );
    }

    fn send_leave(&mut self, room: &str, reply: Option<Reply<()>>) {
        let id = self.new_id();
        self.outbox.push(
            ClientFrame::Leave {
                room: room.to_string(),
            }
            .encode(Some(id)),
        );
        let deadline = Instant::now() + self.opts.request_timeout;
        self.pending.insert(id, Pending::Leave { reply, deadline });
    }

    /// One text frame from the server.
    async fn frame(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<ServerFrame>(text) else {
            return;
        };
        let mut out = Vec::new();
        match frame {
            ServerFrame::Ack { id, fields } => self.settle(id, Ok(fields), &mut out),
            ServerFrame::Pong { id: Some(id) } => self.settle(id, Ok(Map::new()), &mut out),
            ServerFrame::Error(e) => match e.id {
                Some(id) if self.pending.contains_key(&id) => self.settle(id, Err(e), &mut out),
                _ => out.push(Event::Error(e)),
            },
            ServerFrame::Message(m) => {
                let room = m.room.clone();
                let max = self.opts.max_buffered_messages;
                if self
                    .rooms
                    .get_mut(&room)
                    .is_some_and(|r| r.on_message(m, max, &mut out))
                {
                    self.send_join(&room, JoinKind::Resync);
                }
            }
            ServerFrame::Gap { room, to, .. } => {
                if self.rooms.get_mut(&room).is_some_and(|r| r.on_gap(to)) {
                    self.send_join(&room, JoinKind::Resync);
                }
            }
            ServerFrame::Joined(p) => {
                if self.rooms.get(&p.room).is_some_and(|r| r.desired) {
                    out.push(Event::Joined(p));
                }
            }
            ServerFrame::Left(p) => {
                if self.rooms.get(&p.room).is_some_and(|r| r.desired) {
                    out.push(Event::Left(p));
                }
            }
            ServerFrame::RoomClosed { room, reason } => {
                if self.rooms.get(&room).is_some_and(|r| r.desired) {
                    self.room_refused(
                        &room,
                        JoinKind::Rejoin,
                        Error::Server {
                            code: "room_closed".into(),
                            message: reason.clone(),
                        },
                        &mut out,
                    );
                    if let Some(Event::RoomClosed { code, .. }) = out.last_mut() {
                        *code = None;
                    }
                }
            }
            ServerFrame::Direct(d) => out.push(Event::Direct(d)),
            ServerFrame::Broadcast(d) => out.push(Event::Broadcast(d)),
            ServerFrame::Notification(n) => out.push(Event::Notification(n)),
            ServerFrame::Welcome(_) | ServerFrame::Pong { id: None } | ServerFrame::Unknown => {}
        }
        for event in out {
            self.emit(event).await;
        }
    }

    /// The reply to request `id`.
    fn settle(
        &mut self,
        id: u64,
        reply: Result<Map<String, Value>, crate::frames::ServerError>,
        out: &mut Vec<Event>,
    ) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let error = |e: &crate::frames::ServerError| Error::Server {
            code: e.code.clone(),
            message: e.message.clone(),
        };
        match pending {
            Pending::App { reply: tx, .. } => {
                self.app_pending -= 1;
                let _ = tx.send(reply.map_err(|e| error(&e)));
            }
            Pending::Join { room, kind, .. } => match reply {
                Ok(fields) => self.join_acked(&room, kind, fields, out),
                Err(e) => self.room_refused(&room, kind, error(&e), out),
            },
            Pending::Leave { reply: tx, .. } => {
                let result = match reply {
                    Err(e) if e.code != "not_member" && e.code != "room_not_found" => {
                        Err(error(&e))
                    }
                    _ => Ok(()),
                };
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Pending::Refresh { token, .. } => match reply {
                Ok(fields) => {
                    let exp = fields
                        .get("exp")
                        .and_then(Value::as_u64)
                        .or_else(|| token_expiry(&token));
                    self.token = Some(token);
                    if let Some(exp) = exp {
                        self.refreshed = Some(exp);
                        out.push(Event::Refreshed { exp });
                    }
                }
                Err(e) => {
                    self.refresh_failed = true;
                    out.push(Event::Error(e));
                }
            },
        }
    }

    fn join_acked(
        &mut self,
        room: &str,
        kind: JoinKind,
        fields: Map<String, Value>,
        out: &mut Vec<Event>,
    ) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if !state.desired {
            // Left (or gave up) while the join was in flight.
            state.joining = false;
            self.send_leave(room, None);
            return;
        }
        let ack: JoinAck = match serde_json::from_value(Value::Object(fields)) {
            Ok(ack) => ack,
            Err(e) => {
                return self.room_refused(
                    room,
                    kind,
                    Error::BadReply(format!("join ack: {e}")),
                    out,
                );
            }
        };
        let resync = state.on_ack(ack, kind, out);
        let result = state.last_result.clone();
        if let (Some((replies, _)), Some(result)) = (self.waiters.remove(room), result) {
            for r in replies {
                let _ = r.send(Ok(result.clone()));
            }
        }
        if resync {
            self.send_join(room, JoinKind::Resync);
        }
    }

    /// A join refused, or the room closed: forget the room and say so.
    fn room_refused(&mut self, room: &str, kind: JoinKind, error: Error, out: &mut Vec<Event>) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let was_desired = state.desired;
        state.reset();
        if let Some((replies, _)) = self.waiters.remove(room) {
            for r in replies {
                let _ = r.send(Err(error.clone()));
            }
        } else if was_desired && kind != JoinKind::First {
            let reason = match &error {
                Error::Server { message, .. } => message.clone(),
                other => other.to_string(),
            };
            out.push(Event::RoomClosed {
                room: room.to_string(),
                reason,
                code: Some(error.code().to_string()),
            });
        }
    }

    /// Settle everything whose deadline passed.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        let timeout = Error::Timeout(self.opts.request_timeout);
        for id in late {
            match self.pending.remove(&id) {
                Some(Pending::App { reply, .. }) => {
                    self.app_pending -= 1;
                    let _ = reply.send(Err(timeout.clone()));
                }
                Some(Pending::Join { room, .. }) => {
                    if self.rooms.get(&room).is_some_and(|r| r.desired) {
                        self.abandon = Some(format!("the join of {room} got no reply"));
                    }
                }
                Some(Pending::Leave {
                    reply: Some(reply), ..
                }) => {
                    let _ = reply.send(Err(timeout.clone()));
                }
                Some(Pending::Refresh { .. }) => self.refresh_failed = true,
                Some(Pending::Leave { reply: None, .. }) | None => {}
            }
        }
        let late: Vec<String> = self
            .waiters
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for room in late {
            if let Some((replies, _)) = self.waiters.remove(&room) {
                for r in replies {
                    let _ = r.send(Err(timeout.clone()));
                }
            }
            let was_in = self.rooms.get_mut(&room).is_some_and(|state| {
                let was_in = state.joined || state.joining;
                state.reset();
                was_in
            });
            if was_in && self.connected() {
                self.send_leave(&room, None);
            }
        }
    }

    /// The connection ended: fail what was in flight, forget the outbox.
    fn connection_lost(&mut self, reason: &str) {
        self.welcome = None;
        self.outbox.clear();
        self.abandon = None;
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            let in_flight = !matches!(
                self.pending.get(&id),
                Some(Pending::App { sent: false, .. })
            );
            if !in_flight {
                continue;
            }
            match self.pending.remove(&id) {
                Some(Pending::App { reply, .. }) => {
                    self.app_pending -= 1;
                    let _ = reply.send(Err(Error::Disconnected(reason.to_string())));
                }
                // A closed connection is in no room: the leave is done.
                Some(Pending::Leave {
                    reply: Some(reply), ..
                }) => {
                    let _ = reply.send(Ok(()));
                }
                _ => {}
            }
        }
        for room in self.rooms.values_mut() {
            room.disconnected();
        }
    }

    /// Wait `delay` before the next attempt, serving commands. False if
    /// the client was closed meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = tokio::time::sleep(delay);
        tokio::pin!(until);
        let mut tick = tokio::time::interval(MAX_TICK);
        loop {
            tokio::select! {
                _ = &mut until => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Close { done }) => { self.close_waiters.push(done); return false; }
                    Some(c) => self.command(c),
                },
                _ = tick.tick() => self.expire(Instant::now()),
            }
        }
    }

    async fn stop(mut self, reason: String, code: Option<u16>) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            match pending {
                Pending::App { reply, .. } => {
                    let _ = reply.send(Err(Error::Closed(reason.clone())));
                }
                Pending::Leave {
                    reply: Some(reply), ..
                } => {
                    let _ = reply.send(Ok(()));
                }
                _ => {}
            }
        }
        for (_, (replies, _)) in std::mem::take(&mut self.waiters) {
            for r in replies {
                let _ = r.send(Err(Error::Closed(reason.clone())));
            }
        }
        self.state(State::Closed, Some(reason), code, None).await;
        for done in self.close_waiters.drain(..) {
            let _ = done.send(());
        }
        // Requests arriving from here on find the channel closed.
    }

    async fn state(
        &mut self,
        state: State,
        reason: Option<String>,
        code: Option<u16>,
        delay: Option<Duration>,
    ) {
        self.emit(Event::State {
            state,
            reason,
            code,
            delay,
        })
        .await;
    }

    async fn emit(&mut self, event: Event) {
        // A dropped `Events` only means nobody listens.
        let _ = self.events.send(event).await;
    }
}

/// The URL of an attempt: `url` with `user`, `name` and `token` query parameters.
fn connect_url(opts: &Options, token: Option<&str>) -> String {
    let mut url = opts.url.clone();
    let params = [
        ("user", opts.user.as_deref()),
        ("name", opts.name.as_deref()),
        ("token", token),
    ];
    for (key, value) in params {
        if let Some(value) = value {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(key);
            url.push('=');
            url.push_str(&percent_encode(value));
        }
    }
    url
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A failed upgrade: an HTTP refusal (status, `Retry-After`, error code)
/// when the server answered, else a network failure.
fn refusal_of(error: tungstenite::Error) -> Closed {
    let tungstenite::Error::Http(response) = error else {
        return Closed::failed(error.to_string());
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: Option<Value> = response
        .body()
        .as_deref()
        .and_then(|b| serde_json::from_slice(&b[..b.len().min(MAX_REFUSAL_BODY)]).ok());
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.pointer(&format!("/error/{name}")))
            .and_then(Value::as_str)
            .map(String::from)
    };
    Closed {
        code: 1006,
        reason: format!("HTTP {status}"),
        opened: false,
        refusal: Some(Refusal {
            status,
            retry_after,
            code: field("code"),
            message: field("message"),
        }),
    }
}

/// Longest wait for our close frame to be written.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Send a close frame, without waiting long for a peer that does not read.
async fn close_politely(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, ws.close(None)).await;
}

fn close_parts(frame: Option<tungstenite::protocol::CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.to_string()),
        None => (1005, String::new()),
    }
}
