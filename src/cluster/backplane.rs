//! The backplane thread: one node's link to Redis.
//!
//! It owns a multiplexed command connection and a subscriber connection,
//! and runs one loop that takes [`Op`]s from connections and the API, sends
//! them to Redis in pipelined batches (one batch in flight at a time, so
//! Redis runs them in the order they were taken), reads the subscribed
//! channels, and turns both into shard work.
//!
//! **Invariants** (see also [`super`]):
//!
//! * Per room, the ops of this node reach Redis in the order they arrived.
//!   A room's ops wait (`held`) while the node subscribes to its channel, so
//!   a join runs in Redis only once the node hears the room.
//! * Per room, the home shard gets messages in `seq` order, each once
//!   (`node_seq` is the last one forwarded). A hole is filled from the
//!   history stream; what the stream no longer has becomes a `gap`.
//! * A join answered with `seq` S is admitted right after message S: at
//!   once if the node has forwarded S already (with the messages after S
//!   from the `recent` ring, or a `gap` for those it lost), else when S
//!   arrives.
//! * Everything here is bounded: the op queue (`cluster.command_queue`),
//!   a batch ([`MAX_BATCH`]), `recent` and a repair's buffer
//!   (`cluster.catchup_messages`), rooms and users by this node's members
//!   and connections.
//! * While Redis is unreachable, ops fail at once with `unavailable`; the
//!   loop reconnects with doubling backoff, puts back this node's presence
//!   and room counters (`RESTORE`), resubscribes, and repairs every room
//!   from its stream.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::OptionFuture;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Cmd, Value};
use tokio::sync::mpsc;

use super::scripts::{self, Status};
use super::wire::{self, Event};
use super::{ClusterError, Op, RoomFacts, unavailable};
use crate::config::{ClusterConfig, OverflowPolicy};
use crate::error::{ErrorCode, Refusal};
use crate::protocol::encode::{self, MemberEntry, PresenceKind};
use crate::router::{ApiOp, ClusterEvent, Delivery, Origin, Request, home_of};
use crate::shared::Shared;
use crate::ws::encode::data_frame;

/// Most commands in one pipelined batch.
pub const MAX_BATCH: usize = 512;

/// First wait before reconnecting; it doubles up to
/// `cluster.reconnect_max_backoff_ms`.
const FIRST_BACKOFF_MS: u64 = 50;

/// Start the backplane thread for `shared` (whose `cluster` is set), once
/// both Redis connections work.
pub fn spawn(
    shared: Arc<Shared>,
    ops: mpsc::Receiver<Op>,
) -> Result<std::thread::JoinHandle<()>, ClusterError> {
    let cfg = shared.config.cluster.clone();
    let shown_url = crate::config::redact_url_password(&cfg.redis_url);
    let client = redis::Client::open(cfg.redis_url.as_str())
        .map_err(|e| ClusterError::Url(e.to_string()))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let commands = connect_commands(&client, &cfg).await;
                let pubsub = connect_pubsub(&client, &cfg).await;
                match (commands, pubsub) {
                    (Ok(cmd), Ok((sink, stream))) => {
                        let _ = ready_tx.send(Ok(()));
                        let mut backplane = Backplane::new(shared, client, cfg, cmd, sink, stream);
                        backplane.run(ops).await;
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(ClusterError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(reason)) => Err(ClusterError::Unreachable {
            url: shown_url,
            reason,
        }),
        Err(_) => Err(ClusterError::Unreachable {
            url: shown_url,
            reason: "the cluster thread ended".into(),
        }),
    }
}

async fn connect_commands(
    client: &redis::Client,
    cfg: &ClusterConfig,
) -> Result<MultiplexedConnection, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(Duration::from_millis(cfg.command_timeout_ms)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for script in scripts::ALL {
        pipe.cmd("SCRIPT").arg("LOAD").arg(script);
    }
    let _: Vec<String> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("loading scripts: {e}"))?;
    Ok(conn)
}

async fn connect_pubsub(
    client: &redis::Client,
    cfg: &ClusterConfig,
) -> Result<(PubSubSink, PubSubStream), String> {
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub.split()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", cfg.connect_timeout_ms)),
    }
}

/// The SHA1 of a script, as EVALSHA wants it.
fn sha(source: &str) -> String {
    redis::Script::new(source).get_hash().to_string()
}

/// Script hashes, computed once.
struct Shas {
    join: String,
    leave: String,
    publish: String,
    create: String,
    delete: String,
    details: String,
    heartbeat: String,
    restore: String,
}

impl Shas {
    fn new() -> Self {
        Shas {
            join: sha(scripts::JOIN),
            leave: sha(scripts::LEAVE),
            publish: sha(scripts::PUBLISH),
            create: sha(scripts::CREATE),
            delete: sha(scripts::DELETE),
            details: sha(scripts::DETAILS),
            heartbeat: sha(scripts::HEARTBEAT),
            restore: sha(scripts::RESTORE),
        }
    }
}

fn evalsha(sha: &str, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    cmd
}

/// What to do with a command's answer.
enum Then {
    Join {
        origin: Origin,
        room: Arc<str>,
        user: Arc<str>,
        name: Option<Arc<str>>,
        value: String,
    },
    Leave {
        origin: Origin,
        room: Arc<str>,
    },
    Publish {
        origin: Origin,
        room: Arc<str>,
    },
    Create {
        origin: Origin,
        room: Arc<str>,
    },
    Members {
        origin: Origin,
        room: Arc<str>,
    },
    Api {
        room: Arc<str>,
        call: ApiOp,
    },
    /// A hole of `room` filled from its stream (`epoch` names the repair).
    Repair {
        room: Arc<str>,
        epoch: u64,
    },
    Nothing,
}

struct Prepared {
    cmd: Cmd,
    then: Then,
}

/// Subscription state of a room channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Off,
    Pending,
    On,
}

/// A join answered, waiting for message `at` before it is admitted.
struct Admission {
    at: u64,
    conn: u64,
    user: Arc<str>,
    name: Option<Arc<str>>,
    facts: RoomFacts,
    reply: Option<Bytes>,
}

/// A hole being filled: messages that came after it wait here.
struct Repair {
    epoch: u64,
    waiting: Vec<(u64, Bytes, Option<u64>)>,
}

/// What this node knows of a room with local interest.
struct RoomState {
    /// This node's members (as Redis has them): conn → presence value.
    members: HashMap<u64, String>,
    /// Joins sent to Redis and not answered yet.
    joining: u32,
    sub: Sub,
    /// Ops waiting for the subscription.
    held: Vec<Prepared>,
    /// Last seq forwarded to the home shard; `None` until the first
    /// message or join answer after subscribing.
    node_seq: Option<u64>,
    /// The last forwarded messages: (seq, frame).
    recent: VecDeque<(u64, Bytes)>,
    stash: Vec<Admission>,
    repair: Option<Repair>,
    facts: Option<RoomFacts>,
}

impl RoomState {
    fn new() -> Self {
        RoomState {
            members: HashMap::new(),
            joining: 0,
            sub: Sub::Off,
            held: Vec::new(),
            node_seq: None,
            recent: VecDeque::new(),
            stash: Vec::new(),
            repair: None,
            facts: None,
        }
    }

    fn idle(&self) -> bool {
        self.members.is_empty()
            && self.joining == 0
            && self.held.is_empty()
            && self.stash.is_empty()
    }
}

enum SubChange {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct Backplane {
    shared: Arc<Shared>,
    client: redis::Client,
    cfg: ClusterConfig,
    node: Arc<str>,
    shas: Shas,
    cmd: Option<MultiplexedConnection>,
    sink: Option<PubSubSink>,
    stream: Option<PubSubStream>,
    rooms: HashMap<Arc<str>, RoomState>,
    /// Users with connections here: shards holding them.
    users: HashMap<Arc<str>, u32>,
    ready: VecDeque<Prepared>,
    in_flight: Vec<Then>,
    sub_queue: VecDeque<SubChange>,
    /// A subscription change in flight and the channels it covers.
    sub_in_flight: Option<(bool, Vec<String>)>,
    next_epoch: u64,
    cmd_backoff: u64,
    pubsub_backoff: u64,
}

impl Backplane {
    fn new(
        shared: Arc<Shared>,
        client: redis::Client,
        cfg: ClusterConfig,
        cmd: MultiplexedConnection,
        sink: PubSubSink,
        stream: PubSubStream,
    ) -> Self {
        let node: Arc<str> = Arc::from(shared.config.server.node_id.as_str());
        let mut sub_queue = VecDeque::new();
        sub_queue.push_back(SubChange::Subscribe(vec![scripts::ALL_CHANNEL.to_string()]));
        Backplane {
            shared,
            client,
            cfg,
            node,
            shas: Shas::new(),
            cmd: Some(cmd),
            sink: Some(sink),
            stream: Some(stream),
            rooms: HashMap::new(),
            users: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: Vec::new(),
            sub_queue,
            sub_in_flight: None,
            next_epoch: 1,
            cmd_backoff: FIRST_BACKOFF_MS,
            pubsub_backoff: FIRST_BACKOFF_MS,
        }
    }

    async fn run(&mut self, mut ops: mpsc::Receiver<Op>) {
        let mut shutdown = self.shared.shutdown_signal();
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis((self.cfg.node_ttl_ms / 3).max(100)));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Option<BoxFuture<Result<Vec<Value>, String>>> = None;
        let mut sub_fut: Option<BoxFuture<(PubSubSink, Result<(), String>)>> = None;
        let mut cmd_reconnect: Option<BoxFuture<Result<MultiplexedConnection, String>>> = None;
        let mut pubsub_reconnect: Option<BoxFuture<Result<(PubSubSink, PubSubStream), String>>> =
            None;
        loop {
            if batch.is_none() && !self.ready.is_empty() {
                if let Some(conn) = self.cmd.clone() {
                    batch = Some(self.start_batch(conn));
                }
            }
            if sub_fut.is_none() {
                sub_fut = self.start_sub_change();
            }
            if self.cmd.is_none() && cmd_reconnect.is_none() {
                cmd_reconnect = Some(self.reconnect_commands());
            }
            if self.stream.is_none() && self.sink.is_none() && pubsub_reconnect.is_none() {
                pubsub_reconnect = Some(self.reconnect_pubsub());
            }
            tokio::select! {
                _ = shutdown.wait_for(|draining| *draining) => {
                    self.leave_cluster().await;
                    return;
                }
                Some(result) = OptionFuture::from(batch.as_mut()), if batch.is_some() => {
                    batch = None;
                    self.finish_batch(result).await;
                }
                Some((sink, result)) = OptionFuture::from(sub_fut.as_mut()), if sub_fut.is_some() => {
                    sub_fut = None;
                    self.finish_sub_change(sink, result).await;
                }
                message = next_message(&mut self.stream), if self.stream.is_some() => {
                    match message {
                        Some(msg) => self.on_message(&msg).await,
                        None => self.pubsub_lost("the subscriber connection closed").await,
                    }
                }
                Some(result) = OptionFuture::from(cmd_reconnect.as_mut()), if cmd_reconnect.is_some() => {
                    cmd_reconnect = None;
                    self.commands_back(result);
                }
                Some(result) = OptionFuture::from(pubsub_reconnect.as_mut()), if pubsub_reconnect.is_some() => {
                    pubsub_reconnect = None;
                    self.pubsub_back(result);
                }
                op = ops.recv() => match op {
                    Some(op) => self.on_op(op).await,
                    None => return,
                },
                _ = heartbeat.tick() => self.heartbeat(self.cfg.node_ttl_ms as i64),
            }
        }
    }

    // ---- commands -------------------------------------------------------

    fn start_batch(
        &mut self,
        mut conn: MultiplexedConnection,
    ) -> BoxFuture<Result<Vec<Value>, String>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let take = self.ready.len().min(MAX_BATCH);
        for prepared in self.ready.drain(..take) {
            pipe.add_command(prepared.cmd);
            self.in_flight.push(prepared.then);
        }
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        Box::pin(async move {
            match tokio::time::timeout(timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await {
                Ok(Ok(values)) => Ok(values),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        })
    }

    async fn finish_batch(&mut self, result: Result<Vec<Value>, String>) {
        let thens = std::mem::take(&mut self.in_flight);
        match result {
            Ok(values) if values.len() == thens.len() => {
                let mut noscript = false;
                for (then, value) in thens.into_iter().zip(values) {
                    if let Value::ServerError(e) = &value {
                        noscript |= e.code() == "NOSCRIPT";
                        tracing::warn!(error = ?e, "cluster command refused by Redis");
                        self.fail(then).await;
                    } else {
                        self.answer(then, value).await;
                    }
                }
                if noscript {
                    // Someone flushed the script cache: connect again, which
                    // loads the scripts.
                    self.commands_lost("Redis lost the scripts (SCRIPT FLUSH?)")
                        .await;
                }
            }
            Ok(values) => {
                tracing::error!(
                    sent = thens.len(),
                    answers = values.len(),
                    "cluster batch answer does not match"
                );
                for then in thens {
                    self.fail(then).await;
                }
                self.commands_lost("answers did not match the batch").await;
            }
            Err(reason) => {
                for then in thens {
                    self.fail(then).await;
                }
                self.commands_lost(&reason).await;
            }
        }
    }

    async fn commands_lost(&mut self, reason: &str) {
        if self.cmd.take().is_some() {
            tracing::warn!(%reason, "cluster: Redis command connection lost; reconnecting");
        }
        let ready: Vec<Prepared> = self.ready.drain(..).collect();
        for prepared in ready {
            self.fail(prepared.then).await;
        }
    }

    fn reconnect_commands(&mut self) -> BoxFuture<Result<MultiplexedConnection, String>> {
        let wait = Duration::from_millis(self.cmd_backoff);
        self.cmd_backoff = (self.cmd_backoff * 2).min(self.cfg.reconnect_max_backoff_ms);
        let (client, cfg) = (self.client.clone(), self.cfg.clone());
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            connect_commands(&client, &cfg).await
        })
    }

    fn commands_back(&mut self, result: Result<MultiplexedConnection, String>) {
        match result {
            Ok(conn) => {
                tracing::info!("cluster: Redis command connection back");
                self.cmd = Some(conn);
                self.cmd_backoff = FIRST_BACKOFF_MS;
                self.restore_all();
                self.heartbeat(self.cfg.node_ttl_ms as i64);
            }
            Err(reason) => tracing::debug!(%reason, "cluster: reconnect failed"),
        }
    }

    /// Put back this node's members and counters in every room it is in.
    fn restore_all(&mut self) {
        let node = self.node.clone();
        let mut restores = Vec::new();
        for (room, state) in &self.rooms {
            let Some(facts) = state.facts else {
                continue;
            };
            let (meta, pres) = (scripts::meta_key(room), scripts::presence_key(room));
            let noderooms = scripts::node_rooms_key(&node);
            let mut cmd = evalsha(&self.shas.restore, &[&meta, &pres, &noderooms]);
            cmd.arg(&**room)
                .arg(state.node_seq.unwrap_or(0))
                .arg(u8::from(facts.private))
                .arg(facts.max_members)
                .arg(facts.overflow.as_str())
                .arg(u8::from(facts.explicit))
                .arg(facts.history)
                .arg(&*node);
            for (conn, value) in &state.members {
                cmd.arg(scripts::member_field(&node, *conn)).arg(value);
            }
            restores.push(Prepared {
                cmd,
                then: Then::Nothing,
            });
        }
        // Before anything queued since: the room counters must not go back.
        for prepared in restores.into_iter().rev() {
            self.ready.push_front(prepared);
        }
    }

    fn heartbeat(&mut self, ttl_ms: i64) {
        if self.cmd.is_none() {
            return;
        }
        let nodes_rooms = scripts::node_rooms_key(&self.node);
        let mut cmd = evalsha(&self.shas.heartbeat, &[scripts::NODES_KEY, &nodes_rooms]);
        cmd.arg(&*self.node)
            .arg(ttl_ms)
            .arg(self.shared.config.room.empty_ttl_ms);
        self.ready.push_back(Prepared {
            cmd,
            then: Then::Nothing,
        });
    }

    /// Drain: remove this node's members from Redis now rather than when
    /// its heartbeat runs out.
    async fn leave_cluster(&mut self) {
        let Some(mut conn) = self.cmd.clone() else {
            return;
        };
        let nodes_rooms = scripts::node_rooms_key(&self.node);
        let mut cmd = evalsha(&self.shas.heartbeat, &[scripts::NODES_KEY, &nodes_rooms]);
        cmd.arg(&*self.node)
            .arg(-1)
            .arg(self.shared.config.room.empty_ttl_ms);
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        let answer = tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut conn)).await;
        if !matches!(answer, Ok(Ok(_))) {
            tracing::warn!(
                "cluster: could not remove this node's members at shutdown; its heartbeat will run out"
            );
        }
    }

    // ---- ops ------------------------------------------------------------

    async fn on_op(&mut self, op: Op) {
        let node = self.node.clone();
        match op {
            Op::Join {
                origin,
                room,
                user,
                name,
                since,
                create,
                may_create,
                may_join_private,
            } => {
                let cfg = &self.shared.config;
                let value = wire::member_value(&user, name.as_deref());
                let keys = room_keys(&room);
                let noderooms = scripts::node_rooms_key(&node);
                let mut cmd = evalsha(
                    &self.shas.join,
                    &[
                        &keys.meta,
                        &keys.presence,
                        &keys.history,
                        &keys.channel,
                        &noderooms,
                    ],
                );
                cmd.arg(scripts::member_field(&node, origin.conn))
                    .arg(&value)
                    .arg(u8::from(create))
                    .arg(u8::from(may_create))
                    .arg(u8::from(cfg.room.auto_create))
                    .arg(u8::from(may_join_private))
                    .arg(cfg.room.default_max_members)
                    .arg(cfg.limits.slow_consumer_policy.as_str())
                    .arg(cfg.room.history)
                    .arg(since.map_or(-1, |s| s.min(i64::MAX as u64) as i64))
                    .arg(cfg.room.history_on_join)
                    .arg(&*node)
                    .arg(origin.conn)
                    .arg(&*room);
                self.rooms
                    .entry(room.clone())
                    .or_insert_with(RoomState::new)
                    .joining += 1;
                let then = Then::Join {
                    origin,
                    room: room.clone(),
                    user,
                    name,
                    value,
                };
                self.enqueue_subscribed(&room, Prepared { cmd, then }).await;
            }
            Op::Leave { origin, room } => {
                let keys = room_keys(&room);
                let noderooms = scripts::node_rooms_key(&node);
                let keeps = self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.joining > 0 || r.members.keys().any(|c| *c != origin.conn));
                let mut cmd = evalsha(
                    &self.shas.leave,
                    &[
                        &keys.meta,
                        &keys.presence,
                        &keys.history,
                        &keys.channel,
                        &noderooms,
                    ],
                );
                cmd.arg(scripts::member_field(&node, origin.conn))
                    .arg(&*node)
                    .arg(origin.conn)
                    .arg(u8::from(keeps))
                    .arg(&*room)
                    .arg(self.shared.config.room.empty_ttl_ms);
                let then = Then::Leave {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::Publish {
                origin,
                room,
                from,
                data,
                exclude_self,
            } => {
                let field = scripts::member_field(&node, origin.conn);
                let skip = if exclude_self { origin.conn } else { 0 };
                let cmd = self.publish_cmd(&room, &field, &from, &data, skip);
                let then = Then::Publish {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::Create {
                origin,
                room,
                options,
            } => {
                let cfg = &self.shared.config;
                let facts =
                    RoomFacts::from_options(&options, &cfg.room, cfg.limits.slow_consumer_policy);
                let cmd = self.create_cmd(&room, &facts);
                let then = Then::Create {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::Members { origin, room } => {
                let field = scripts::member_field(&node, origin.conn);
                let cmd = self.details_cmd(&room, &field);
                let then = Then::Members {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::ToUser { user, json } => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(scripts::user_channel(&user))
                    .arg(wire::frame_payload(&node, &json));
                self.enqueue(Prepared {
                    cmd,
                    then: Then::Nothing,
                })
                .await;
            }
            Op::ToAll { json } => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(scripts::ALL_CHANNEL)
                    .arg(wire::frame_payload(&node, &json));
                self.enqueue(Prepared {
                    cmd,
                    then: Then::Nothing,
                })
                .await;
            }
            Op::WatchUser { user, watch } => {
                let channel = scripts::user_channel(&user);
                if watch {
                    let count = self.users.entry(user).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        self.sub_queue_push(true, channel);
                    }
                } else if let Some(count) = self.users.get_mut(&user) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.users.remove(&user);
                        self.sub_queue_push(false, channel);
                    }
                }
            }
            Op::Api { room, op } => {
                let cmd = match &op {
                    ApiOp::Create { options, .. } => {
                        let cfg = &self.shared.config;
                        let facts = RoomFacts::from_options(
                            options,
                            &cfg.room,
                            cfg.limits.slow_consumer_policy,
                        );
                        self.create_cmd(&room, &facts)
                    }
                    ApiOp::Delete { .. } => {
                        let keys = room_keys(&room);
                        evalsha(
                            &self.shas.delete,
                            &[&keys.meta, &keys.presence, &keys.history, &keys.channel],
                        )
                    }
                    ApiOp::Publish { data, .. } => {
                        self.publish_cmd(&room, "", crate::server::SYSTEM_USER, data, 0)
                    }
                    ApiOp::Details { .. } => self.details_cmd(&room, ""),
                };
                let then = Then::Api {
                    room: room.clone(),
                    call: op,
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
        }
    }

    fn publish_cmd(&self, room: &str, field: &str, from: &str, data: &[u8], skip: u64) -> Cmd {
        let keys = room_keys(room);
        let (before, after) = encode::message_parts(room, from, encode::now_ms(), data);
        let mut cmd = evalsha(
            &self.shas.publish,
            &[&keys.meta, &keys.presence, &keys.history, &keys.channel],
        );
        cmd.arg(field)
            .arg(&before[..])
            .arg(&after[..])
            .arg(&*self.node)
            .arg(skip);
        cmd
    }

    fn create_cmd(&self, room: &str, facts: &RoomFacts) -> Cmd {
        let mut cmd = evalsha(&self.shas.create, &[&scripts::meta_key(room)]);
        cmd.arg(u8::from(facts.private))
            .arg(facts.max_members)
            .arg(facts.overflow.as_str())
            .arg(facts.history);
        cmd
    }

    fn details_cmd(&self, room: &str, field: &str) -> Cmd {
        let keys = room_keys(room);
        let mut cmd = evalsha(
            &self.shas.details,
            &[&keys.meta, &keys.presence, &keys.history],
        );
        cmd.arg(field)
            .arg(self.shared.config.limits.max_presence_list);
        cmd
    }

    /// Queue a command that needs nothing but the command connection.
    async fn enqueue(&mut self, prepared: Prepared) {
        if self.cmd.is_none() {
            return self.fail(prepared.then).await;
        }
        self.ready.push_back(prepared);
    }

    /// Queue a room command behind the room's held ones, if any.
    async fn enqueue_in_order(&mut self, room: &Arc<str>, prepared: Prepared) {
        match self.rooms.get_mut(room) {
            Some(state) if !state.held.is_empty() => state.held.push(prepared),
            _ => self.enqueue(prepared).await,
        }
    }

    /// Queue a command that must run only once this node hears the room.
    async fn enqueue_subscribed(&mut self, room: &Arc<str>, prepared: Prepared) {
        if self.cmd.is_none() || self.stream.is_none() {
            return self.fail(prepared.then).await;
        }
        let Some(state) = self.rooms.get_mut(room) else {
            return self.fail(prepared.then).await;
        };
        match state.sub {
            Sub::On if state.held.is_empty() => self.ready.push_back(prepared),
            Sub::On | Sub::Pending => state.held.push(prepared),
            Sub::Off => {
                state.sub = Sub::Pending;
                state.held.push(prepared);
                self.sub_queue_push(true, scripts::room_channel(room));
            }
        }
    }

    /// Answer `then` with `unavailable` (Redis is unreachable).
    async fn fail(&mut self, then: Then) {
        let refusal = unavailable();
        match then {
            Then::Join { origin, room, .. } => {
                self.join_done(&room);
                self.counters_error(&refusal);
                let reply = encode::error(origin.id, refusal.code, &refusal.message);
                let shard = self.shard_of(origin.conn);
                self.deliver(
                    shard,
                    Delivery::JoinRefused {
                        conn: origin.conn,
                        room,
                        reply,
                    },
                )
                .await;
            }
            Then::Leave { origin, room } if origin.id.is_none() => {
                // A closing connection: it leaves here whatever Redis says;
                // RESTORE puts this node's true members back on reconnect.
                self.member_gone(&room, origin.conn, None).await;
            }
            Then::Leave { origin, .. }
            | Then::Publish { origin, .. }
            | Then::Create { origin, .. }
            | Then::Members { origin, .. } => self.reply_error(&origin, &refusal).await,
            Then::Api { call, .. } => call_failed(call, refusal),
            Then::Repair { room, epoch } => self.repair_done(&room, epoch, Vec::new()).await,
            Then::Nothing => {}
        }
    }

    async fn answer(&mut self, then: Then, value: Value) {
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        let status = Status::from_code(items.first().and_then(int).unwrap_or(i64::MIN));
        match then {
            Then::Join {
                origin,
                room,
                user,
                name,
                value,
            } => {
                self.join_answered(origin, room, user, name, value, status, &items)
                    .await
            }
            Then::Leave { origin, room } => match status {
                Status::Ok => {
                    let reply = origin.id.map(|id| encode::ack_room(id, &room));
                    self.member_gone(&room, origin.conn, reply).await;
                }
                _ if origin.id.is_none() => self.member_gone(&room, origin.conn, None).await,
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Publish { origin, room } => match status {
                Status::Ok => {
                    self.count_published();
                    if let Some(id) = origin.id {
                        let seq = items.get(1).and_then(int).unwrap_or(0) as u64;
                        let frame = encode::ack_publish(id, &room, seq);
                        self.to_conn(origin.conn, frame).await;
                    }
                }
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Create { origin, room } => match status {
                Status::Ok => {
                    if let Some(id) = origin.id {
                        self.to_conn(origin.conn, encode::ack_room(id, &room)).await;
                    }
                }
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Members { origin, room } => match status {
                Status::Ok => {
                    let Some(id) = origin.id else {
                        return;
                    };
                    let details = Details::read(&items);
                    let entries = details.members.iter().map(|m| MemberEntry {
                        conn: m.conn,
                        user: &m.user,
                        name: m.name.as_deref(),
                    });
                    let frame = encode::ack_members(id, &room, entries, details.total);
                    self.to_conn(origin.conn, frame).await;
                }
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Api { room, call } => api_answered(call, &room, status, &items),
            Then::Repair { room, epoch } => {
                let mut found = Vec::new();
                for entry in items {
                    if let Some((seq, json)) = stream_entry(entry) {
                        found.push((seq, json));
                    }
                }
                self.repair_done(&room, epoch, found).await;
            }
            Then::Nothing => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn join_answered(
        &mut self,
        origin: Origin,
        room: Arc<str>,
        user: Arc<str>,
        name: Option<Arc<str>>,
        value: String,
        status: Status,
        items: &[Value],
    ) {
        if status != Status::Ok {
            self.join_done(&room);
            let refusal = refusal_of(status, &room, items);
            self.counters_error(&refusal);
            let reply = encode::error(origin.id, refusal.code, &refusal.message);
            let shard = self.shard_of(origin.conn);
            self.deliver(
                shard,
                Delivery::JoinRefused {
                    conn: origin.conn,
                    room,
                    reply,
                },
            )
            .await;
            return;
        }
        let seq = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
        let count = items.get(2).and_then(int).unwrap_or(0).max(0) as u32;
        let facts = RoomFacts {
            private: items.get(3).and_then(int) == Some(1),
            max_members: items.get(4).and_then(int).unwrap_or(0).max(0) as u32,
            overflow: match items.get(5).and_then(text) {
                Some("drop") => OverflowPolicy::Drop,
                _ => OverflowPolicy::Disconnect,
            },
            explicit: items.get(6).and_then(int) == Some(1),
            history: self.shared.config.room.history,
        };
        let recovered = match items.get(7).and_then(int) {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        };
        let reply = origin.id.map(|id| {
            let history: Vec<&[u8]> = items.iter().skip(9).filter_map(bytes_of).collect();
            encode::ack_join(id, &room, seq, count, history.into_iter(), recovered)
        });
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.joining = state.joining.saturating_sub(1);
        state.members.insert(origin.conn, value);
        state.facts = Some(facts);
        let admission = Admission {
            at: seq,
            conn: origin.conn,
            user,
            name,
            facts,
            reply,
        };
        match state.node_seq {
            Some(last) if last < seq => state.stash.push(admission),
            Some(_) => self.admit(&room, admission).await,
            None => {
                let newest = state.recent.back().map_or(0, |(s, _)| *s);
                state.node_seq = Some(seq.max(newest));
                self.admit(&room, admission).await;
            }
        }
    }

    /// Admit a member whose join answered `at`: the home adds it and sends
    /// its ack, then what came after `at`.
    async fn admit(&mut self, room: &Arc<str>, admission: Admission) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let last = state.node_seq.unwrap_or(admission.at);
        let mut catchup = Vec::new();
        if last > admission.at {
            let first_kept = state
                .recent
                .iter()
                .find(|(s, _)| *s > admission.at)
                .map_or(last + 1, |(s, _)| *s);
            if first_kept > admission.at + 1 {
                catchup.push(encode::gap(room, admission.at + 1, first_kept - 1));
            }
            catchup.extend(
                state
                    .recent
                    .iter()
                    .filter(|(s, _)| *s > admission.at)
                    .map(|(_, f)| f.clone()),
            );
        }
        let event = ClusterEvent::Admit {
            room: room.clone(),
            conn: admission.conn,
            user: admission.user,
            name: admission.name,
            facts: admission.facts,
            reply: admission.reply,
            catchup,
        };
        self.to_home(room, event).await;
    }

    /// A join was answered or failed: the room may have lost its interest.
    fn join_done(&mut self, room: &Arc<str>) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.joining = state.joining.saturating_sub(1);
        }
        self.release_if_idle(room);
    }

    /// `conn` is no longer a member of `room` here.
    async fn member_gone(&mut self, room: &Arc<str>, conn: u64, reply: Option<Bytes>) {
        // A join still waiting for its message is admitted first, so the
        // connection's pending join settles, then removed.
        let stashed: Vec<Admission> = match self.rooms.get_mut(room) {
            Some(state) => {
                state.members.remove(&conn);
                let (mine, others): (Vec<Admission>, Vec<Admission>) =
                    state.stash.drain(..).partition(|a| a.conn == conn);
                state.stash = others;
                mine
            }
            None => Vec::new(),
        };
        for admission in stashed {
            self.admit(room, admission).await;
        }
        let event = ClusterEvent::Removed {
            room: room.clone(),
            conn,
            reply,
        };
        self.to_home(room, event).await;
        self.release_if_idle(room);
    }

    fn release_if_idle(&mut self, room: &Arc<str>) {
        let idle = self.rooms.get(room).is_some_and(RoomState::idle);
        if idle {
            if let Some(state) = self.rooms.remove(room) {
                if state.sub != Sub::Off {
                    self.sub_queue_push(false, scripts::room_channel(room));
                }
            }
        }
    }

    // ---- channels -------------------------------------------------------

    fn sub_queue_push(&mut self, subscribe: bool, channel: String) {
        match self.sub_queue.back_mut() {
            Some(SubChange::Subscribe(list)) if subscribe => list.push(channel),
            Some(SubChange::Unsubscribe(list)) if !subscribe => list.push(channel),
            _ => self.sub_queue.push_back(if subscribe {
                SubChange::Subscribe(vec![channel])
            } else {
                SubChange::Unsubscribe(vec![channel])
            }),
        }
    }

    fn start_sub_change(&mut self) -> Option<BoxFuture<(PubSubSink, Result<(), String>)>> {
        self.sink.as_ref()?;
        let change = self.sub_queue.pop_front()?;
        let mut sink = self.sink.take()?;
        let (subscribe, channels) = match change {
            SubChange::Subscribe(c) => (true, c),
            SubChange::Unsubscribe(c) => (false, c),
        };
        self.sub_in_flight = Some((subscribe, channels.clone()));
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        Some(Box::pin(async move {
            let work = async {
                if subscribe {
                    sink.subscribe(&channels).await
                } else {
                    sink.unsubscribe(&channels).await
                }
            };
            let result = match tokio::time::timeout(timeout, work).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            (sink, result)
        }))
    }

    async fn finish_sub_change(&mut self, sink: PubSubSink, result: Result<(), String>) {
        let Some((subscribe, channels)) = self.sub_in_flight.take() else {
            return;
        };
        if let Err(reason) = result {
            // The change is redone for every channel still wanted when the
            // subscriber connection is back.
            drop(sink);
            return self.pubsub_lost(&reason).await;
        }
        self.sink = Some(sink);
        if !subscribe {
            return;
        }
        for channel in channels {
            let Some(room) = wire::room_of_channel(&channel) else {
                continue;
            };
            let Some(state) = self.rooms.get_mut(room) else {
                continue;
            };
            state.sub = Sub::On;
            let held = std::mem::take(&mut state.held);
            let repair_from = state.node_seq;
            let room: Arc<str> = Arc::from(room);
            if let Some(last) = repair_from {
                // Resubscribed: fetch whatever was published meanwhile.
                self.start_repair(&room, last, None);
            }
            for prepared in held {
                self.enqueue(prepared).await;
            }
        }
    }

    async fn pubsub_lost(&mut self, reason: &str) {
        if self.stream.is_some() || self.sink.is_some() {
            tracing::warn!(%reason, "cluster: Redis subscriber connection lost; reconnecting");
        }
        self.stream = None;
        self.sink = None;
        self.sub_queue.clear();
        self.sub_in_flight = None;
        let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let held = match self.rooms.get_mut(&room) {
                Some(state) => {
                    state.sub = Sub::Off;
                    state.repair = None;
                    std::mem::take(&mut state.held)
                }
                None => continue,
            };
            for prepared in held {
                self.fail(prepared.then).await;
            }
        }
    }

    fn reconnect_pubsub(&mut self) -> BoxFuture<Result<(PubSubSink, PubSubStream), String>> {
        let wait = Duration::from_millis(self.pubsub_backoff);
        self.pubsub_backoff = (self.pubsub_backoff * 2).min(self.cfg.reconnect_max_backoff_ms);
        let (client, cfg) = (self.client.clone(), self.cfg.clone());
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            connect_pubsub(&client, &cfg).await
        })
    }

    fn pubsub_back(&mut self, result: Result<(PubSubSink, PubSubStream), String>) {
        let (sink, stream) = match result {
            Ok(pair) => pair,
            Err(reason) => return tracing::debug!(%reason, "cluster: resubscribe failed"),
        };
        tracing::info!("cluster: Redis subscriber connection back; resubscribing");
        self.sink = Some(sink);
        self.stream = Some(stream);
        self.pubsub_backoff = FIRST_BACKOFF_MS;
        let mut channels = vec![scripts::ALL_CHANNEL.to_string()];
        channels.extend(self.users.keys().map(|u| scripts::user_channel(u)));
        for (room, state) in &mut self.rooms {
            state.sub = Sub::Pending;
            channels.push(scripts::room_channel(room));
        }
        self.sub_queue.push_back(SubChange::Subscribe(channels));
    }

    async fn on_message(&mut self, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let payload = msg.get_payload_bytes();
        if let Some(room) = wire::room_of_channel(channel) {
            let Some(event) = wire::parse_room(payload) else {
                return tracing::warn!(channel, "cluster: unreadable room event ignored");
            };
            let room: Arc<str> = Arc::from(room);
            self.on_room_event(&room, event).await;
        } else if let Some(user) = wire::user_of_channel(channel) {
            if let Some(Event::Frame { node, json }) = wire::parse_frame(payload) {
                if node != &*self.node {
                    let frame = data_frame(true, json);
                    let user: Arc<str> = Arc::from(user);
                    let mut shards = self.shared.users.shards(&user);
                    while shards != 0 {
                        let shard = shards.trailing_zeros() as usize;
                        shards &= shards - 1;
                        let delivery = Delivery::ToUser {
                            user: user.clone(),
                            frame: frame.clone(),
                        };
                        self.deliver(shard, delivery).await;
                    }
                }
            }
        } else if channel == scripts::ALL_CHANNEL {
            if let Some(Event::Frame { node, json }) = wire::parse_frame(payload) {
                if node != &*self.node {
                    let frame = data_frame(true, json);
                    for shard in 0..self.shared.shards() {
                        let delivery = Delivery::All {
                            frame: frame.clone(),
                        };
                        self.deliver(shard, delivery).await;
                    }
                }
            }
        }
    }

    async fn on_room_event(&mut self, room: &Arc<str>, event: Event<'_>) {
        if !self.rooms.contains_key(room) {
            return; // no interest here (a late message after unsubscribing)
        }
        match event {
            Event::Message {
                seq,
                node,
                skip,
                json,
            } => {
                let skip = (node == &*self.node && skip != 0).then_some(skip);
                self.on_room_message(room, seq, data_frame(true, json), skip)
                    .await;
            }
            Event::Presence {
                joined,
                node,
                conn,
                count,
                user,
                name,
            } => {
                if !self.shared.config.room.presence_events || (!joined && count == 0) {
                    return;
                }
                let kind = if joined {
                    PresenceKind::Joined
                } else {
                    PresenceKind::Left
                };
                let frame = encode::presence(kind, room, user, name, count);
                let skip = (node == &*self.node).then_some(conn);
                let event = ClusterEvent::Presence {
                    room: room.clone(),
                    frame,
                    skip,
                };
                self.to_home(room, event).await;
            }
            Event::Closed => {
                let stashed = match self.rooms.get_mut(room) {
                    Some(state) => std::mem::take(&mut state.stash),
                    None => Vec::new(),
                };
                for admission in stashed {
                    self.admit(room, admission).await;
                }
                self.to_home(room, ClusterEvent::Closed { room: room.clone() })
                    .await;
                if let Some(state) = self.rooms.get_mut(room) {
                    state.members.clear();
                    state.node_seq = None;
                    state.recent.clear();
                }
                self.release_if_idle(room);
            }
            Event::Frame { .. } => {}
        }
    }

    async fn on_room_message(
        &mut self,
        room: &Arc<str>,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
    ) {
        let limit = self.cfg.catchup_messages;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(repair) = &mut state.repair {
            if repair.waiting.len() < limit {
                repair.waiting.push((seq, frame, skip));
                return;
            }
            // The repair takes too long: give up on it (a `gap` covers
            // what it would have brought).
            let waiting = std::mem::take(&mut repair.waiting);
            state.repair = None;
            for (s, f, k) in waiting {
                self.forward(room, s, f, k).await;
            }
            return self.forward(room, seq, frame, skip).await;
        }
        match state.node_seq {
            Some(last) if seq <= last => {} // delivered already
            Some(last) if seq > last + 1 => {
                self.start_repair(room, last, Some(seq));
                if let Some(repair) = self.rooms.get_mut(room).and_then(|s| s.repair.as_mut()) {
                    repair.waiting.push((seq, frame, skip));
                } else {
                    self.forward(room, seq, frame, skip).await;
                }
            }
            _ => self.forward(room, seq, frame, skip).await,
        }
    }

    /// Ask the room's stream for the messages after `last` (and before
    /// `below`, when known); live messages wait meanwhile.
    fn start_repair(&mut self, room: &Arc<str>, last: u64, below: Option<u64>) {
        if self.cmd.is_none() {
            return;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if state.repair.is_some() {
            return;
        }
        state.repair = Some(Repair {
            epoch,
            waiting: Vec::new(),
        });
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(scripts::history_key(room))
            .arg(format!("{}-0", last + 1));
        match below {
            Some(b) => cmd.arg(format!("{}-0", b.saturating_sub(1))),
            None => cmd.arg("+"),
        };
        cmd.arg("COUNT").arg(self.cfg.catchup_messages.max(1));
        self.ready.push_back(Prepared {
            cmd,
            then: Then::Repair {
                room: room.clone(),
                epoch,
            },
        });
    }

    async fn repair_done(&mut self, room: &Arc<str>, epoch: u64, found: Vec<(u64, Bytes)>) {
        let waiting = match self.rooms.get_mut(room) {
            Some(state) if state.repair.as_ref().is_some_and(|r| r.epoch == epoch) => {
                state.repair.take().map(|r| r.waiting).unwrap_or_default()
            }
            _ => return,
        };
        for (seq, json) in found {
            self.forward_if_new(room, seq, data_frame(true, &json), None)
                .await;
        }
        for (seq, frame, skip) in waiting {
            self.forward_if_new(room, seq, frame, skip).await;
        }
    }

    async fn forward_if_new(&mut self, room: &Arc<str>, seq: u64, frame: Bytes, skip: Option<u64>) {
        let last = self.rooms.get(room).and_then(|s| s.node_seq);
        if last.is_none_or(|l| seq > l) {
            self.forward(room, seq, frame, skip).await;
        }
    }

    /// Hand message `seq` to the home shard (with a `gap` first if messages
    /// before it are lost), then admit the joins that waited for it.
    async fn forward(&mut self, room: &Arc<str>, seq: u64, frame: Bytes, skip: Option<u64>) {
        let limit = self.cfg.catchup_messages;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let missing = match state.node_seq {
            Some(last) if seq > last + 1 => Some((last + 1, seq - 1)),
            _ => None,
        };
        state.node_seq = Some(seq);
        if limit > 0 {
            if state.recent.len() >= limit {
                state.recent.pop_front();
            }
            state.recent.push_back((seq, frame.clone()));
        }
        let (due, rest): (Vec<Admission>, Vec<Admission>) = std::mem::take(&mut state.stash)
            .into_iter()
            .partition(|a| a.at <= seq);
        state.stash = rest;
        if let Some((from, to)) = missing {
            tracing::warn!(%room, from, to, "cluster: messages lost between Redis and this node");
            if let Some(cluster) = &self.shared.cluster {
                cluster.counters.gaps.fetch_add(1, Ordering::Relaxed);
            }
            let gap = ClusterEvent::Gap {
                room: room.clone(),
                from,
                to,
            };
            self.to_home(room, gap).await;
        }
        let event = ClusterEvent::Message {
            room: room.clone(),
            seq,
            frame,
            skip,
            stamp_us: crate::metrics::now_us(),
        };
        self.to_home(room, event).await;
        for admission in due {
            self.admit(room, admission).await;
        }
    }

    // ---- shard plumbing -------------------------------------------------

    fn shard_of(&self, conn: u64) -> usize {
        (conn % self.shared.shards() as u64) as usize
    }

    async fn deliver(&self, shard: usize, delivery: Delivery) {
        if let Some(link) = self.shared.links.get(shard) {
            let _ = link.deliveries.send(delivery).await;
        }
    }

    async fn to_conn(&self, conn: u64, frame: Bytes) {
        self.deliver(self.shard_of(conn), Delivery::ToConn { conn, frame })
            .await;
    }

    async fn reply_error(&self, origin: &Origin, refusal: &Refusal) {
        self.counters_error(refusal);
        let frame = encode::error(origin.id, refusal.code, &refusal.message);
        self.to_conn(origin.conn, frame).await;
    }

    async fn to_home(&self, room: &Arc<str>, event: ClusterEvent) {
        let home = home_of(room, self.shared.shards());
        if let Some(link) = self.shared.links.get(home) {
            let _ = link.requests.send(Request::Cluster(event)).await;
        }
    }

    fn counters_error(&self, refusal: &Refusal) {
        if let Some(cluster) = &self.shared.cluster {
            cluster.counters.refused(refusal.code);
        }
    }

    fn count_published(&self) {
        if let Some(cluster) = &self.shared.cluster {
            cluster.counters.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn next_message(stream: &mut Option<PubSubStream>) -> Option<redis::Msg> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

struct RoomKeys {
    meta: String,
    presence: String,
    history: String,
    channel: String,
}

fn room_keys(room: &str) -> RoomKeys {
    RoomKeys {
        meta: scripts::meta_key(room),
        presence: scripts::presence_key(room),
        history: scripts::history_key(room),
        channel: scripts::room_channel(room),
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// `[id, [field, value]]` of an XRANGE answer, as (seq, message JSON).
fn stream_entry(entry: Value) -> Option<(u64, Bytes)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    let fields = parts.pop()?;
    let id = text(parts.first()?)?;
    let seq = id.split('-').next()?.parse().ok()?;
    let Value::Array(mut fields) = fields else {
        return None;
    };
    let Value::BulkString(json) = fields.pop()? else {
        return None;
    };
    Some((seq, Bytes::from(json)))
}

/// A member entry of a DETAILS answer.
struct ListedMember {
    conn: u64,
    node: String,
    user: String,
    name: Option<String>,
}

/// A DETAILS answer.
struct Details {
    total: usize,
    seq: u64,
    private: bool,
    max_members: u32,
    overflow: String,
    explicit: bool,
    history: u64,
    members: Vec<ListedMember>,
}

impl Details {
    fn read(items: &[Value]) -> Details {
        let mut members = Vec::new();
        let mut rest = items.iter().skip(8);
        while let (Some(field), Some(value)) = (rest.next(), rest.next()) {
            let (Some(field), Some(value)) = (text(field), text(value)) else {
                continue;
            };
            let Some((node, conn)) = field.rsplit_once('/') else {
                continue;
            };
            let (user, name) = match value.split_once('\t') {
                Some((u, n)) => (u.to_string(), Some(n.to_string())),
                None => (value.to_string(), None),
            };
            members.push(ListedMember {
                conn: conn.parse().unwrap_or(0),
                node: node.to_string(),
                user,
                name,
            });
        }
        Details {
            total: items.get(1).and_then(int).unwrap_or(0).max(0) as usize,
            seq: items.get(2).and_then(int).unwrap_or(0).max(0) as u64,
            private: items.get(3).and_then(int) == Some(1),
            max_members: items.get(4).and_then(int).unwrap_or(0).max(0) as u32,
            overflow: items
                .get(5)
                .and_then(text)
                .unwrap_or("disconnect")
                .to_string(),
            explicit: items.get(6).and_then(int) == Some(1),
            history: items.get(7).and_then(int).unwrap_or(0).max(0) as u64,
            members,
        }
    }
}

/// The refusal a script's status stands for.
fn refusal_of(status: Status, room: &str, items: &[Value]) -> Refusal {
    match status {
        Status::NotFound => Refusal::new(
            ErrorCode::RoomNotFound,
            format!("room {room} does not exist"),
        ),
        Status::NotMember => {
            Refusal::new(ErrorCode::NotMember, format!("not a member of room {room}"))
        }
        Status::MayNotCreate => Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} does not exist and this connection lacks the `create` right"),
        ),
        Status::Private => crate::shard::conn::private_room_refusal(room),
        Status::Full => {
            let max = items.get(1).and_then(int).unwrap_or(0);
            Refusal::new(
                ErrorCode::RoomFull,
                format!("room {room} is full ({max} members)"),
            )
        }
        Status::Exists => {
            Refusal::new(ErrorCode::RoomExists, format!("room {room} already exists"))
        }
        Status::PrivateMembers => Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} is private: only its members may list them"),
        ),
        Status::Ok | Status::Unknown(_) => Refusal::new(
            ErrorCode::Internal,
            format!("unexpected answer from the cluster backplane for room {room}"),
        ),
    }
}

fn call_failed(call: ApiOp, refusal: Refusal) {
    match call {
        ApiOp::Create { reply, .. } | ApiOp::Delete { reply } => {
            let _ = reply.send(Err(refusal));
        }
        ApiOp::Publish { reply, .. } => {
            let _ = reply.send(Err(refusal));
        }
        ApiOp::Details { reply } => {
            let _ = reply.send(Err(refusal));
        }
    }
}

fn api_answered(call: ApiOp, room: &str, status: Status, items: &[Value]) {
    if status != Status::Ok {
        return call_failed(call, refusal_of(status, room, items));
    }
    match call {
        ApiOp::Create { reply, .. } | ApiOp::Delete { reply } => {
            let _ = reply.send(Ok(()));
        }
        ApiOp::Publish { reply, .. } => {
            let seq = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
            let _ = reply.send(Ok(seq));
        }
        ApiOp::Details { reply } => {
            let d = Details::read(items);
            let members: Vec<serde_json::Value> = d
                .members
                .iter()
                .map(|m| serde_json::json!({"conn": m.conn, "node": m.node, "user": m.user, "name": m.name}))
                .collect();
            let _ = reply.send(Ok(serde_json::json!({
                "room": room,
                "members": d.total,
                "seq": d.seq,
                "private": d.private,
                "max_members": d.max_members,
                "overflow": d.overflow,
                "explicit": d.explicit,
                "history": d.history,
                "member_list": members,
            })));
        }
    }
}
