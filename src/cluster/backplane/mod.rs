//! The backplane thread: one node's link to Redis.
//!
//! It owns a multiplexed command connection and a subscriber connection,
//! and runs one loop that takes [`Op`]s from the shards' route, sends them
//! to Redis in pipelined batches (one batch in flight at a time, so Redis
//! runs them in the order they were taken), reads the subscribed channels,
//! and turns both into [`Delivery`]s for the shards holding the members.
//!
//! * [`connect`]: start, (re)connect, heartbeat, restore after a reconnect.
//! * [`ops`]: the command each op becomes.
//! * [`outcomes`]: what its answer (or its failure) does.
//! * [`rooms`]: each room's order on this node (driving
//!   [`crate::room::order`]), membership and fan-out.
//! * [`channels`]: subscriptions and what arrives on them.
//! * [`drain`]: the backplane's part of a drain.
//!
//! **Invariants** (see also [`super`]):
//!
//! * Per room, the ops of this node reach Redis in the order they arrived.
//!   A room's ops wait (`held`) while the node subscribes to its channel, so
//!   a join runs in Redis only once the node hears the room.
//! * Everything the loop decides goes into one [`Outbox`] and is sent in
//!   order before the next event, so every shard sees a room's frames in
//!   `seq` order.
//! * Everything here is bounded: the op queue (`cluster.command_queue`),
//!   a batch ([`MAX_BATCH`]), each room's recent messages and repair buffer
//!   (`cluster.catchup_messages`), rooms and users by this node's members
//!   and connections.
//! * While Redis is unreachable, ops fail at once with `unavailable`; the
//!   loop reconnects with doubling backoff, puts back this node's presence
//!   and room counters (`RESTORE`), resubscribes, and repairs every room
//!   from its stream.

mod answers;
mod channels;
mod connect;
mod drain;
mod ops;
mod outcomes;
mod rooms;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::OptionFuture;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};
use tokio::sync::{mpsc, oneshot};

use super::subscriber::{Bounds, SubReceiver, Subscriber};
use super::target::Target;
use crate::backend::RemoteCounters;
use crate::config::ClusterConfig;
use crate::delivery::{Outbox, RoomCounts, RoomDetails};
use crate::error::Refusal;
use crate::op::{Op, Origin, Reply};
use crate::room::order::RepairIds;
use crate::shared::Shared;
use connect::Shas;
pub(crate) use connect::spawn;
use rooms::RoomState;

/// Most commands in one pipelined batch.
pub(crate) const MAX_BATCH: usize = 512;

/// First wait before reconnecting; it doubles up to
/// `cluster.reconnect_max_backoff_ms`.
const FIRST_BACKOFF_MS: u64 = 50;

/// How often the loop checks that nothing waits on it past its deadline
/// ([`Backplane::check_deadlines`]).
const DEADLINE_TICK_MS: u64 = 100;

/// The node's two Redis connections.
#[derive(Debug, Clone, Copy)]
enum Link {
    Commands,
    Subscriber,
}

/// What to do with a command's answer.
enum Then {
    Join {
        origin: Origin,
        room: Arc<str>,
        /// The member's presence value in Redis.
        value: String,
        /// The join asked for the room's users.
        list_users: bool,
    },
    Leave {
        origin: Origin,
        room: Arc<str>,
    },
    Publish {
        room: Arc<str>,
        reply: Reply<u64>,
    },
    Create {
        room: Arc<str>,
        reply: Reply<()>,
    },
    Delete {
        room: Arc<str>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Members {
        origin: Origin,
        room: Arc<str>,
    },
    Details {
        room: Arc<str>,
        reply: oneshot::Sender<Result<RoomDetails, Refusal>>,
    },
    Rooms {
        reply: oneshot::Sender<Result<Vec<RoomCounts>, Refusal>>,
    },
    /// A heartbeat: the sweep's changes are reported.
    Swept,
    /// A hole of `room` filled from its stream (`id` names the repair).
    Repair {
        room: Arc<str>,
        id: u64,
    },
    Nothing,
}

struct Prepared {
    cmd: Cmd,
    then: Then,
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
    /// Where it connects (the primary, with Sentinel).
    target: Arc<Target>,
    cfg: ClusterConfig,
    node: Arc<str>,
    shas: Shas,
    cmd: Option<MultiplexedConnection>,
    /// The subscriber connection's writing side and its events.
    sub: Option<Subscriber>,
    events: Option<SubReceiver>,
    /// The subscriber connection's `CLIENT SETNAME` and bounds.
    sub_name: String,
    bounds: Bounds,
    /// Subscribes written and not confirmed yet, by channel.
    pending_subs: HashMap<String, u32>,
    /// Subscription changes decided and not written yet, in order.
    sub_changes: Vec<(bool, Vec<String>)>,
    /// When the unanswered liveness `PING` was sent.
    ping_sent: Option<Instant>,
    /// A write to the subscriber connection failed (why); the loop
    /// handles it.
    sub_failed: Option<String>,
    /// Where a drain is, once it started.
    drain: Option<Drain>,
    rooms: HashMap<Arc<str>, RoomState>,
    /// Bytes of the rooms' catch-up messages (bounded by
    /// `limits.max_history_bytes_total`).
    recent_bytes: usize,
    /// Users with connections here: shards holding them.
    users: HashMap<Arc<str>, u32>,
    /// Connections waiting for their user's channel to be heard, by
    /// channel (at most one per connection being set up).
    heard_waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    ready: VecDeque<Prepared>,
    in_flight: Vec<Then>,
    /// The batch in flight ends with a `WAIT` (`cluster.wait_replicas`).
    batch_waits: bool,
    repair_ids: RepairIds,
    /// What the loop decided for the shards, sent before the next event.
    out: Outbox,
    cmd_backoff: u64,
    pubsub_backoff: u64,
    /// This node's namespace fingerprint ([`crate::schema::fingerprint`]).
    fingerprint: String,
}

impl Backplane {
    fn new(
        shared: Arc<Shared>,
        target: Arc<Target>,
        cfg: ClusterConfig,
        cmd: MultiplexedConnection,
        (sub, events): (Subscriber, SubReceiver),
        setup: connect::SubscriberSetup,
    ) -> Self {
        let node: Arc<str> = Arc::from(shared.config.server.node_id.as_str());
        let out = Outbox::new(shared.shards());
        let fingerprint = crate::schema::fingerprint(&shared.namespaces, &shared.schemas);
        Backplane {
            fingerprint,
            shared,
            target,
            cfg,
            node,
            shas: Shas::new(),
            cmd: Some(cmd),
            sub: Some(sub),
            events: Some(events),
            sub_name: setup.name,
            bounds: setup.bounds,
            pending_subs: HashMap::new(),
            sub_changes: Vec::new(),
            ping_sent: None,
            sub_failed: None,
            drain: None,
            rooms: HashMap::new(),
            recent_bytes: 0,
            users: HashMap::new(),
            heard_waiters: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: Vec::new(),
            batch_waits: false,
            repair_ids: RepairIds::default(),
            out,
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
        let mut deadlines = tokio::time::interval(Duration::from_millis(DEADLINE_TICK_MS));
        deadlines.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Some(counters) = self.counters() {
            // Both connections work at start (spawn checked): no reconnect.
            counters
                .commands_up
                .store(1, std::sync::atomic::Ordering::Relaxed);
            counters
                .subscriber_up
                .store(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.change_subscription(true, vec![super::scripts::ALL_CHANNEL.to_string()]);
        loop {
            self.flush().await;
            self.write_sub_changes().await;
            if let Some(reason) = self.sub_failed.take() {
                self.pubsub_lost(&reason);
                continue;
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
                self.flush().await;
                return;
            }
            tokio::select! {
                _ = shutdown.wait_for(|draining| *draining), if self.drain.is_none() => {
                    self.start_drain();
                    drain_deadline = Some(Box::pin(tokio::time::sleep(self.drain_budget())));
                }
                Some(()) = OptionFuture::from(drain_deadline.as_mut()), if drain_deadline.is_some() => {
                    tracing::warn!("drain: the backplane did not hear all of its rooms in time");
                    self.finish_drain().await;
                    self.flush().await;
                    return;
                }
                Some(result) = OptionFuture::from(batch.as_mut()), if batch.is_some() => {
                    batch = None;
                    self.finish_batch(result);
                }
                event = channels::next_event(&mut self.events), if self.events.is_some() => {
                    self.on_sub_event(event);
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
                    Some(op) => self.on_op(op),
                    None => return,
                },
                _ = deadlines.tick() => self.check_deadlines(),
                _ = heartbeat.tick() => {
                    self.heartbeat(self.cfg.node_ttl_ms as i64);
                    self.check_subscriber().await;
                    if self.shared.memory.over() {
                        crate::memory::give_back_freed_memory();
                    }
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
        // `cluster.wait_replicas`: a publish is acknowledged only once that
        // many replicas have it (and everything before it).
        self.batch_waits = self.cfg.wait_replicas > 0
            && self
                .in_flight
                .iter()
                .any(|then| matches!(then, Then::Publish { .. }));
        if self.batch_waits {
            pipe.cmd("WAIT")
                .arg(self.cfg.wait_replicas)
                .arg((self.cfg.command_timeout_ms / 2).max(1));
        }
        Box::pin(async move {
            match tokio::time::timeout(timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await {
                Ok(Ok(values)) => Ok(values),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        })
    }

    fn finish_batch(&mut self, result: Result<Vec<Value>, String>) {
        let thens = std::mem::take(&mut self.in_flight);
        let waited = std::mem::take(&mut self.batch_waits);
        let result = result.map(|mut values| {
            // The WAIT behind the batch: how many replicas have it.
            let replicas = if waited { values.pop() } else { None };
            let confirmed = !waited
                || matches!(replicas, Some(Value::Int(n)) if n >= i64::from(self.cfg.wait_replicas));
            (values, confirmed)
        });
        match result {
            Ok((values, confirmed)) if values.len() == thens.len() => {
                let (mut noscript, mut readonly) = (false, false);
                for (then, value) in thens.into_iter().zip(values) {
                    if let Value::ServerError(e) = &value {
                        noscript |= e.code() == "NOSCRIPT";
                        readonly |= e.code() == "READONLY";
                        tracing::warn!(error = ?e, "cluster command refused by Redis");
                        self.fail(then);
                    } else if !confirmed && matches!(then, Then::Publish { .. }) {
                        self.unconfirmed(then);
                    } else {
                        self.answer(then, value);
                    }
                }
                if noscript {
                    // Someone flushed the script cache: connect again, which
                    // loads the scripts.
                    self.commands_lost("Redis lost the scripts (SCRIPT FLUSH?)");
                }
                if readonly {
                    // A primary demoted by a failover: find the new one.
                    self.commands_lost("the Redis server is a replica now (failover?)");
                }
            }
            Ok((values, _)) => {
                tracing::error!(
                    sent = thens.len(),
                    answers = values.len(),
                    "cluster batch answer does not match"
                );
                for then in thens {
                    self.fail(then);
                }
                self.commands_lost("answers did not match the batch");
            }
            Err(reason) => {
                for then in thens {
                    self.fail(then);
                }
                self.commands_lost(&reason);
            }
        }
    }

    fn commands_lost(&mut self, reason: &str) {
        if self.cmd.take().is_some() {
            tracing::warn!(%reason, "cluster: Redis command connection lost; reconnecting");
            self.connection_changed(Link::Commands, false);
        }
        let ready: Vec<Prepared> = self.ready.drain(..).collect();
        for prepared in ready {
            self.fail(prepared.then);
        }
    }

    // ---- shard plumbing -------------------------------------------------

    /// Send what the loop decided to the shards, in order (waiting while a
    /// shard's inbox is full).
    async fn flush(&mut self) {
        if let Some(counters) = self.shared.backend.remote_counters() {
            let bytes = self.recent_bytes as u64;
            counters
                .catchup_bytes
                .store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        for observed in self.out.take_observed() {
            self.shared.observer.report(observed);
        }
        for (shard, delivery) in self.out.drain() {
            if let Some(link) = self.shared.links.get(shard) {
                // A gone shard means shutdown.
                let _ = link.deliveries.send(delivery).await;
            }
        }
    }

    /// Answer a connection's op with a refusal.
    fn refuse(&mut self, origin: Origin, refusal: Refusal) {
        self.count_refusal(&refusal);
        self.out.answer(origin, Err(refusal));
    }

    fn counters(&self) -> Option<&RemoteCounters> {
        self.shared.backend.remote_counters()
    }

    /// `link` went down or came back: the gauge of `/metrics` (and a
    /// reconnect counted when it comes back after a loss).
    fn connection_changed(&self, link: Link, up: bool) {
        let Some(counters) = self.counters() else {
            return;
        };
        let (gauge, reconnects) = match link {
            Link::Commands => (&counters.commands_up, &counters.commands_reconnects),
            Link::Subscriber => (&counters.subscriber_up, &counters.subscriber_reconnects),
        };
        let was = gauge.swap(u64::from(up), std::sync::atomic::Ordering::Relaxed);
        if up && was == 0 {
            RemoteCounters::bump(reconnects);
        }
    }

    fn count_refusal(&self, refusal: &Refusal) {
        if let Some(counters) = self.counters() {
            counters.refused(refusal.code);
        }
        if refusal.code == crate::error::ErrorCode::OverMemoryBudget {
            self.shared.memory.refused_room();
        }
    }
}
