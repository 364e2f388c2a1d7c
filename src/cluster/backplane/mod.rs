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

mod answers;
mod channels;
mod ops;
mod ordering;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::OptionFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, Value};
use tokio::sync::mpsc;

use super::scripts;
use super::subscriber::{self, Bounds, Endpoint, SubEvent, SubReceiver, Subscriber};
use super::{ClusterError, Op, RoomFacts};
use crate::config::ClusterConfig;
use crate::error::Refusal;
use crate::protocol::encode;
use crate::router::{ApiOp, ClusterEvent, Delivery, Origin, Request, home_of};
use crate::shared::Shared;

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
                let setup = match subscriber_setup(&shared, &client) {
                    Ok(setup) => setup,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let commands = connect_commands(&client, &cfg).await;
                let pubsub = subscriber::connect(&setup.0, setup.1).await;
                match (commands, pubsub) {
                    (Ok(cmd), Ok(pubsub)) => {
                        let mut backplane = Backplane::new(shared, client, cfg, cmd, pubsub, setup);
                        // A node restarted under the same id before its
                        // heartbeat ran out: what Redis still lists for it
                        // is stale (it has no members yet).
                        if let Err(e) = backplane.remove_this_node().await {
                            let _ = ready_tx
                                .send(Err(format!("clearing this node's old entries: {e}")));
                            return;
                        }
                        let _ = ready_tx.send(Ok(()));
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

/// The subscriber connection's endpoint and bounds for `shared`'s config.
fn subscriber_setup(shared: &Shared, client: &redis::Client) -> Result<(Endpoint, Bounds), String> {
    let config = &shared.config;
    let endpoint = Endpoint::of(client)?;
    // A room message is its data plus an envelope; API publishes are
    // bounded by the API's body limit.
    let largest_data = config
        .limits
        .max_message_bytes
        .max(config.api.max_body_bytes);
    let bounds = Bounds {
        queue: config.cluster.subscriber_queue,
        queue_bytes: config.cluster.subscriber_queue_bytes,
        max_payload: largest_data + MESSAGE_ENVELOPE_BYTES,
        connect_timeout: Duration::from_millis(config.cluster.connect_timeout_ms),
    };
    Ok((endpoint, bounds))
}

/// Room and user names, ids and timestamps around a message's data.
const MESSAGE_ENVELOPE_BYTES: usize = 4 * 1024;

async fn next_event(events: &mut Option<SubReceiver>) -> Option<SubEvent> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
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
    waiting_bytes: usize,
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
    /// The last forwarded messages: (seq, frame, connection it skips), at most
    /// `cluster.catchup_messages` and `room.history_max_bytes`.
    recent: VecDeque<(u64, Bytes, Option<u64>)>,
    recent_bytes: usize,
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
            recent_bytes: 0,
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The steps of a drain (see [`Backplane::drain_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// New ops are refused; the batch in flight finishes (its acks go out).
    Flushing,
    /// Unsubscribed from everything; waiting for the `PING` behind it.
    Unsubscribing,
    /// Everything published before the unsubscribe was heard.
    Heard,
}

struct Backplane {
    shared: Arc<Shared>,
    client: redis::Client,
    cfg: ClusterConfig,
    node: Arc<str>,
    shas: Shas,
    cmd: Option<MultiplexedConnection>,
    /// The subscriber connection's writing side and its events.
    sub: Option<Subscriber>,
    events: Option<SubReceiver>,
    endpoint: Endpoint,
    bounds: Bounds,
    /// Subscribes written and not confirmed yet, by channel.
    pending_subs: HashMap<String, u32>,
    /// When the unanswered liveness `PING` was sent.
    ping_sent: Option<Instant>,
    /// A write to the subscriber connection failed (why); the loop
    /// handles it.
    sub_failed: Option<String>,
    /// Where a drain is, once it started.
    drain: Option<Drain>,
    rooms: HashMap<Arc<str>, RoomState>,
    /// Users with connections here: shards holding them.
    users: HashMap<Arc<str>, u32>,
    ready: VecDeque<Prepared>,
    in_flight: Vec<Then>,
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
        (sub, events): (Subscriber, SubReceiver),
        (endpoint, bounds): (Endpoint, Bounds),
    ) -> Self {
        let node: Arc<str> = Arc::from(shared.config.server.node_id.as_str());
        Backplane {
            shared,
            client,
            cfg,
            node,
            shas: Shas::new(),
            cmd: Some(cmd),
            sub: Some(sub),
            events: Some(events),
            endpoint,
            bounds,
            pending_subs: HashMap::new(),
            ping_sent: None,
            sub_failed: None,
            drain: None,
            rooms: HashMap::new(),
            users: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: Vec::new(),
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
        let mut cmd_reconnect: Option<BoxFuture<Result<MultiplexedConnection, String>>> = None;
        let mut pubsub_reconnect: Option<BoxFuture<Result<(Subscriber, SubReceiver), String>>> =
            None;
        let mut drain_deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
        self.change_subscription(true, vec![scripts::ALL_CHANNEL.to_string()])
            .await;
        loop {
            if let Some(reason) = self.sub_failed.take() {
                self.pubsub_lost(&reason).await;
            }
            if batch.is_none() && !self.ready.is_empty() {
                if let Some(conn) = self.cmd.clone() {
                    batch = Some(self.start_batch(conn));
                }
            }
            if self.cmd.is_none() && cmd_reconnect.is_none() {
                cmd_reconnect = Some(self.reconnect_commands());
            }
            if self.sub.is_none() && pubsub_reconnect.is_none() {
                pubsub_reconnect = Some(self.reconnect_pubsub());
            }
            if self.drain.is_some() && self.drain_step(batch.is_none()).await {
                return;
            }
            tokio::select! {
                _ = shutdown.wait_for(|draining| *draining), if self.drain.is_none() => {
                    self.start_drain().await;
                    drain_deadline = Some(Box::pin(tokio::time::sleep(self.drain_budget())));
                }
                Some(()) = OptionFuture::from(drain_deadline.as_mut()), if drain_deadline.is_some() => {
                    tracing::warn!("drain: the backplane did not hear all of its rooms in time");
                    self.finish_drain().await;
                    return;
                }
                Some(result) = OptionFuture::from(batch.as_mut()), if batch.is_some() => {
                    batch = None;
                    self.finish_batch(result).await;
                }
                event = next_event(&mut self.events), if self.events.is_some() => {
                    self.on_sub_event(event).await;
                }
                Some(result) = OptionFuture::from(cmd_reconnect.as_mut()), if cmd_reconnect.is_some() => {
                    cmd_reconnect = None;
                    self.commands_back(result);
                }
                Some(result) = OptionFuture::from(pubsub_reconnect.as_mut()), if pubsub_reconnect.is_some() => {
                    pubsub_reconnect = None;
                    self.pubsub_back(result).await;
                }
                op = ops.recv() => match op {
                    Some(op) => self.on_op(op).await,
                    None => return,
                },
                _ = heartbeat.tick() => {
                    self.heartbeat(self.cfg.node_ttl_ms as i64);
                    self.check_subscriber().await;
                }
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
                .arg(&*node)
                .arg(crate::epoch::Epoch::new().as_str());
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

    /// Drain, step 1: refuse new ops, fail those not sent yet; the batch in
    /// flight still finishes, so every publish acknowledged from this node
    /// was sequenced before the unsubscribe of step 2.
    async fn start_drain(&mut self) {
        self.drain = Some(Drain::Flushing);
        let ready: Vec<Prepared> = self.ready.drain(..).collect();
        for prepared in ready {
            self.fail(prepared.then).await;
        }
    }

    /// Drain, next steps, once `idle` (no batch in flight): unsubscribe
    /// from every channel with a `PING` behind it; when its answer comes,
    /// every message published before the unsubscribe has been handed to
    /// the home shards, which may then seal ([`ClusterEvent::Sealed`]).
    /// Returns true when the drain is over.
    async fn drain_step(&mut self, idle: bool) -> bool {
        match self.drain {
            Some(Drain::Flushing) if idle => {
                let unsubscribed = match self.sub.as_mut() {
                    Some(sub) => sub.unsubscribe(&[]).await.is_ok() && sub.ping().await.is_ok(),
                    None => false,
                };
                if unsubscribed {
                    self.drain = Some(Drain::Unsubscribing);
                    false
                } else {
                    self.finish_drain().await;
                    true
                }
            }
            Some(Drain::Heard) => {
                self.finish_drain().await;
                true
            }
            _ => false,
        }
    }

    /// Drain, last step: let every home shard seal (behind all it was
    /// handed), and remove this node's members from Redis.
    async fn finish_drain(&mut self) {
        for shard in 0..self.shared.shards() {
            if let Some(link) = self.shared.links.get(shard) {
                let _ = link
                    .requests
                    .send(Request::Cluster(ClusterEvent::Sealed))
                    .await;
            }
        }
        self.leave_cluster().await;
    }

    /// How long the backplane's part of a drain may take: what the shards
    /// give their homes to seal (half the drain budget), less a margin.
    fn drain_budget(&self) -> Duration {
        Duration::from_millis(self.shared.config.server.drain_timeout_ms / 3)
    }

    /// Drain: remove this node's members from Redis now rather than when
    /// its heartbeat runs out.
    async fn leave_cluster(&mut self) {
        if let Err(e) = self.remove_this_node().await {
            tracing::warn!(
                error = %e,
                "cluster: could not remove this node's members at shutdown; its heartbeat will run out"
            );
        }
    }

    /// Run the dead-node sweep with this node's heartbeat already expired:
    /// its presence entries go (with `left` events) and its heartbeat too.
    async fn remove_this_node(&mut self) -> Result<(), String> {
        let Some(mut conn) = self.cmd.clone() else {
            return Err("no command connection".into());
        };
        let nodes_rooms = scripts::node_rooms_key(&self.node);
        let mut cmd = evalsha(&self.shas.heartbeat, &[scripts::NODES_KEY, &nodes_rooms]);
        cmd.arg(&*self.node)
            .arg(-1)
            .arg(self.shared.config.room.empty_ttl_ms);
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        match tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    // ---- ops ------------------------------------------------------------

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
