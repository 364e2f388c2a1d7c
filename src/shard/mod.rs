//! A shard: one OS thread running a current-thread tokio runtime that owns
//! its connections, their queues, its share of room membership, and the rooms
//! homed on it.
//!
//! **Architecture Invariant:** nothing in a shard is touched by another
//! thread; state is `Rc`/`RefCell`, and no `RefCell` borrow is held across
//! an `.await`. Shards talk only through [`crate::router`] inboxes and the
//! lock-free indexes of [`crate::shared::Shared`].

pub mod conn;
pub mod home;
pub mod outbound;
pub mod signal;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::LocalSet;
use tokio::time::Instant;

use crate::config::OverflowPolicy;
use crate::error::close;
use crate::limits::{ROOM_SWEEP_INTERVAL_MS, SHARD_PUMP_BATCH};
use crate::metrics::CounterSnapshot;
pub use crate::metrics::ShardCounters;
use crate::router::{Delivery, Origin, Request, ShardLink};
use crate::shared::Shared;
use conn::Conn;
use home::HomeRoom;
use signal::LocalSignal;

/// Empty auto-created rooms by the time they may be removed (earliest first).
type ExpiryHeap = BinaryHeap<Reverse<(Instant, Arc<str>)>>;

/// Members of one room on this shard.
struct LocalRoom {
    overflow: OverflowPolicy,
    members: Vec<Rc<Conn>>,
}

/// One shard's figures, as `/api/stats` reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStats {
    /// Shard index.
    pub shard: usize,
    /// Open connections.
    pub connections: usize,
    /// Rooms with members on this shard.
    pub rooms_with_members: usize,
    /// Rooms homed on this shard.
    pub rooms_homed: usize,
    /// Frames waiting in outbound queues.
    pub queued_frames: usize,
    /// Bytes waiting in outbound queues.
    pub queued_bytes: usize,
    /// Largest outbound queue, frames.
    pub max_queue_frames: usize,
    /// Room messages dropped for slow members (`drop` policy).
    pub dropped_total: u64,
    /// Connections closed with 4000.
    pub slow_consumer_closes_total: u64,
    /// Room messages sequenced here.
    pub published_total: u64,
    /// Requests waiting in the inbox.
    pub request_inbox: usize,
    /// Deliveries waiting in the inbox.
    pub delivery_inbox: usize,
    /// Counters by kind (frames, errors, refusals, disconnects).
    pub counters: CounterSnapshot,
}

/// One shard's state.
pub struct Shard {
    /// This shard's index.
    pub index: usize,
    /// State shared with other shards.
    pub shared: Arc<Shared>,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    local_rooms: RefCell<HashMap<Arc<str>, LocalRoom>>,
    local_users: RefCell<HashMap<Arc<str>, Vec<Rc<Conn>>>>,
    homes: RefCell<HashMap<Arc<str>, HomeRoom>>,
    /// Auto-created rooms that became empty, by the time they may go; at
    /// most one entry per room.
    expiring: RefCell<ExpiryHeap>,
    /// Joins accepted for connections that were gone: to be left again.
    orphans: RefCell<Vec<(u64, Arc<str>)>>,
    orphan_signal: LocalSignal,
    next_conn: Cell<u64>,
    conn_closed: LocalSignal,
    /// Draining: this shard's rooms sequence nothing more.
    sealed: Cell<bool>,
    /// Shards whose `HomeSealed` arrived here.
    homes_sealed: Cell<usize>,
    homes_sealed_signal: LocalSignal,
    /// Counters for `/api/stats`.
    pub counters: Rc<ShardCounters>,
}

impl Shard {
    fn new(index: usize, shared: Arc<Shared>) -> Rc<Shard> {
        Rc::new(Shard {
            index,
            shared,
            conns: RefCell::default(),
            local_rooms: RefCell::default(),
            local_users: RefCell::default(),
            homes: RefCell::default(),
            expiring: RefCell::default(),
            orphans: RefCell::default(),
            orphan_signal: LocalSignal::default(),
            next_conn: Cell::new(1),
            conn_closed: LocalSignal::default(),
            sealed: Cell::new(false),
            homes_sealed: Cell::new(0),
            homes_sealed_signal: LocalSignal::default(),
            counters: Rc::default(),
        })
    }

    fn link(&self) -> &ShardLink {
        &self.shared.links[self.index]
    }

    /// A new connection id; `id % shards == index`, so any shard can tell
    /// where a connection lives.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        self.shared.conn_base + n * self.shared.shards() as u64 + self.index as u64
    }

    /// The shard holding connection `conn`.
    pub fn shard_of(&self, conn: u64) -> usize {
        (conn % self.shared.shards() as u64) as usize
    }

    /// Connections open on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Add a connection to the shard's tables; true if it is the first of
    /// its user on this shard.
    fn register(&self, conn: &Rc<Conn>) -> bool {
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        let mut users = self.local_users.borrow_mut();
        let list = users.entry(conn.user.clone()).or_default();
        let first = list.is_empty();
        if first {
            self.shared.users.attach(&conn.user, self.index);
        }
        list.push(conn.clone());
        first
    }

    /// Remove a closed connection from the shard's tables (its rooms were
    /// left already); true if it was the last of its user on this shard.
    fn unregister(&self, conn: &Conn) -> bool {
        self.conns.borrow_mut().remove(&conn.id);
        let mut users = self.local_users.borrow_mut();
        let mut last = false;
        if let Some(list) = users.get_mut(&conn.user) {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                users.remove(&conn.user);
                self.shared.users.detach(&conn.user, self.index);
                last = true;
            }
        }
        self.conn_closed.notify();
        last
    }

    /// Cluster mode: tell the backplane this shard gained its first (or
    /// lost its last) connection of `user`, so the node hears (or stops
    /// hearing) the user's channel.
    async fn watch_user(&self, user: &Arc<str>, watch: bool) {
        if let Some(cluster) = &self.shared.cluster {
            let op = crate::cluster::Op::WatchUser {
                user: user.clone(),
                watch,
            };
            cluster.submit(op).await;
        }
    }

    /// Leave `room` for `origin` (a client's `leave`, or a closing
    /// connection): through the room's home, or the backplane in cluster
    /// mode.
    pub async fn leave(&self, room: Arc<str>, origin: Origin) {
        match &self.shared.cluster {
            Some(cluster) => {
                cluster
                    .submit(crate::cluster::Op::Leave { origin, room })
                    .await
            }
            None => {
                let home = crate::router::home_of(&room, self.shared.shards());
                self.request(home, Request::Leave { origin, room }).await;
            }
        }
    }

    /// Stop delivering `room` to `conn` on this shard.
    fn remove_local_member(&self, room: &str, conn: u64) {
        let mut rooms = self.local_rooms.borrow_mut();
        if let Some(local) = rooms.get_mut(room) {
            if let Some(i) = local.members.iter().position(|c| c.id == conn) {
                local.members.swap_remove(i);
            }
            if local.members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Send a request to `room`'s home shard (through its inbox, also when
    /// that is this shard: the request pump is the one sequencer of the rooms
    /// homed here).
    pub async fn request(&self, home: usize, request: Request) {
        // A gone shard means shutdown; the request no longer matters.
        let _ = self.shared.links[home].requests.send(request).await;
    }

    /// Deliver to `shard`: directly if it is this one, else through its inbox.
    pub async fn deliver(&self, shard: usize, delivery: Delivery) {
        if shard == self.index {
            self.apply_delivery(delivery);
        } else {
            let _ = self.shared.links[shard].deliveries.send(delivery).await;
        }
    }

    /// Hand a delivery to local connections. Never waits.
    pub fn apply_delivery(&self, delivery: Delivery) {
        match delivery {
            Delivery::Room {
                room,
                seq,
                frame,
                exclude,
                stamp_us,
            } => {
                let rooms = self.local_rooms.borrow();
                let Some(local) = rooms.get(&room) else {
                    return;
                };
                let mut delivered = 0;
                for member in &local.members {
                    if Some(member.id) == exclude {
                        continue;
                    }
                    if seq > 0 {
                        member.push_room(&room, seq, &frame, local.overflow, stamp_us);
                    } else {
                        member.send(frame.clone());
                    }
                    delivered += 1;
                }
                if seq > 0 {
                    self.counters.delivered(delivered);
                }
            }
            Delivery::ToConn { conn, frame } => {
                if let Some(c) = self.conns.borrow().get(&conn) {
                    c.send(frame);
                }
            }
            Delivery::Joined {
                conn,
                room,
                overflow,
                reply,
            } => self.apply_joined(conn, room, overflow, reply),
            Delivery::JoinRefused { conn, room, reply } => {
                if let Some(c) = self.conns.borrow().get(&conn) {
                    c.join_settled(&room);
                    c.send(reply);
                }
            }
            Delivery::Left { conn, room, reply } => {
                let Some(c) = self.conns.borrow().get(&conn).cloned() else {
                    return;
                };
                if c.rooms.borrow_mut().remove(&room) {
                    self.remove_local_member(&room, conn);
                    c.forget_room(&room);
                }
                if let Some(reply) = reply {
                    c.send(reply);
                }
            }
            Delivery::ToUser { user, frame } => {
                if let Some(list) = self.local_users.borrow().get(&user) {
                    for c in list {
                        c.send(frame.clone());
                    }
                }
            }
            Delivery::All { frame } => {
                for c in self.conns.borrow().values() {
                    c.send(frame.clone());
                }
            }
            Delivery::RoomClosed { room, frame } => {
                let Some(local) = self.local_rooms.borrow_mut().remove(&room) else {
                    return;
                };
                for c in local.members {
                    c.rooms.borrow_mut().remove(&room);
                    c.forget_room(&room);
                    c.send(frame.clone());
                }
            }
            Delivery::Notify { user, frame, done } => {
                let mut delivered = 0;
                match user {
                    Some(user) => {
                        if let Some(list) = self.local_users.borrow().get(&user) {
                            for c in list {
                                c.send(frame.clone());
                                delivered += 1;
                            }
                        }
                    }
                    None => {
                        for c in self.conns.borrow().values() {
                            c.send(frame.clone());
                            delivered += 1;
                        }
                    }
                }
                let _ = done.try_send(delivered);
            }
            Delivery::Kick { conn, done } => {
                let found = self.conns.borrow().get(&conn).cloned();
                if let Some(c) = &found {
                    c.close_with(close::POLICY, "disconnected by the server's API", false);
                }
                let _ = done.send(found.is_some());
            }
            Delivery::Stats { done } => {
                let _ = done.try_send(self.stats());
            }
            Delivery::HomeSealed => {
                self.homes_sealed.set(self.homes_sealed.get() + 1);
                self.homes_sealed_signal.notify();
            }
        }
    }

    /// This shard's figures now.
    pub fn stats(&self) -> ShardStats {
        let conns = self.conns.borrow();
        let (mut frames, mut bytes, mut max, mut dropped) = (0, 0, 0, 0);
        for c in conns.values() {
            let (f, b, d) = c.queue_figures();
            frames += f;
            bytes += b;
            max = max.max(f);
            dropped += d;
        }
        ShardStats {
            shard: self.index,
            connections: conns.len(),
            rooms_with_members: self.local_rooms.borrow().len(),
            rooms_homed: self.homes.borrow().len(),
            queued_frames: frames,
            queued_bytes: bytes,
            max_queue_frames: max,
            dropped_total: dropped + self.counters.dropped_closed.get(),
            slow_consumer_closes_total: self.counters.slow_consumer_closes.get(),
            published_total: self.counters.published.get(),
            request_inbox: self.link().requests.len(),
            delivery_inbox: self.link().deliveries.len(),
            counters: self.counters.snapshot(),
        }
    }

    fn apply_joined(
        &self,
        conn: u64,
        room: Arc<str>,
        overflow: OverflowPolicy,
        reply: Option<bytes::Bytes>,
    ) {
        let Some(c) = self.conns.borrow().get(&conn).cloned() else {
            self.orphans.borrow_mut().push((conn, room));
            self.orphan_signal.notify();
            return;
        };
        let room_for_settle = room.clone();
        let newly = c.rooms.borrow_mut().insert(room.clone());
        if newly && !c.is_dead() {
            self.local_rooms
                .borrow_mut()
                .entry(room)
                .or_insert_with(|| LocalRoom {
                    overflow,
                    members: Vec::new(),
                })
                .members
                .push(c.clone());
        }
        c.join_settled(&room_for_settle);
        if let Some(reply) = reply {
            c.send(reply);
        }
    }

    /// Drain the request inbox forever: the home logic of this shard's rooms.
    async fn request_pump(self: Rc<Self>) {
        let mut batch = Vec::with_capacity(SHARD_PUMP_BATCH);
        let mut out: Vec<(usize, Delivery)> = Vec::new();
        let mut shutdown = self.shared.shutdown_signal();
        loop {
            // In cluster mode the backplane says when (ClusterEvent::Sealed):
            // messages sequenced in Redis reach this shard through it.
            let clustered = self.shared.cluster.is_some();
            if !self.sealed.get() && self.shared.is_draining() && !clustered {
                self.seal().await;
            }
            if self.link().requests.drain(&mut batch, SHARD_PUMP_BATCH) == 0 {
                tokio::select! {
                    _ = self.link().requests.arrived.notified() => {}
                    // Drain: wake up to seal.
                    _ = shutdown.wait_for(|draining| *draining), if !self.sealed.get() && !clustered => {}
                }
                continue;
            }
            for request in batch.drain(..) {
                self.handle_request(request, &mut out);
                for (shard, delivery) in out.drain(..) {
                    self.deliver(shard, delivery).await;
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Drain the delivery inbox forever. Never waits on another shard.
    async fn delivery_pump(self: Rc<Self>) {
        let mut batch = Vec::with_capacity(SHARD_PUMP_BATCH);
        loop {
            if self.link().deliveries.drain(&mut batch, SHARD_PUMP_BATCH) == 0 {
                self.link().deliveries.arrived.notified().await;
                continue;
            }
            for delivery in batch.drain(..) {
                self.apply_delivery(delivery);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Leave rooms whose join was accepted after the connection had gone.
    async fn orphan_janitor(self: Rc<Self>) {
        loop {
            self.orphan_signal.wait().await;
            let orphans = std::mem::take(&mut *self.orphans.borrow_mut());
            for (conn, room) in orphans {
                self.leave(room, Origin { conn, id: None }).await;
            }
        }
    }

    /// Remove auto-created rooms that stayed empty for `room.empty_ttl_ms`.
    async fn room_sweeper(self: Rc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(ROOM_SWEEP_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire_rooms(Instant::now());
        }
    }

    /// Drain: stop sequencing room messages here, and tell every shard so
    /// behind the deliveries of the messages sequenced so far. Runs in the
    /// request pump, between two requests, so no message is half fanned out.
    async fn seal(&self) {
        self.sealed.set(true);
        for shard in 0..self.shared.shards() {
            self.deliver(shard, Delivery::HomeSealed).await;
        }
    }

    /// Whether this shard's rooms stopped sequencing (draining).
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.get()
    }

    /// Close every connection with 1001 and wait (bounded by the caller)
    /// until they are gone. Waits first, until `seal_deadline` at most, for
    /// every home to seal: then each message acknowledged anywhere has been
    /// queued to this shard's members before their close frame, so nothing
    /// acknowledged is lost to the drain.
    async fn drain_connections(&self, seal_deadline: Instant) {
        let all_sealed = async {
            while self.homes_sealed.get() < self.shared.shards() {
                self.homes_sealed_signal.wait().await;
            }
        };
        if tokio::time::timeout_at(seal_deadline, all_sealed)
            .await
            .is_err()
        {
            tracing::warn!(
                shard = self.index,
                "drain: not every shard sealed its rooms in time"
            );
        }
        let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        for c in conns {
            c.close_with(close::GOING_AWAY, "server shutting down", false);
        }
        while self.connection_count() > 0 {
            self.conn_closed.wait().await;
        }
    }
}

/// How long a shard drains: the drain timeout less a margin for tearing the
/// shard down, so the process exits within `server.drain_timeout_ms`.
fn drain_budget(drain_timeout_ms: u64) -> Duration {
    let margin = (drain_timeout_ms / 10).clamp(1, DRAIN_TEARDOWN_MARGIN_MS);
    Duration::from_millis(drain_timeout_ms - margin)
}

/// Most of the drain timeout kept back for tearing a shard down.
const DRAIN_TEARDOWN_MARGIN_MS: u64 = 250;

/// A running shard thread.
pub struct ShardHandle {
    /// The thread; it returns when the shard has drained.
    pub thread: std::thread::JoinHandle<()>,
}

/// Start shard `index` on its own thread, serving `listener` (a std
/// listener, non-blocking, bound with SO_REUSEPORT).
pub fn spawn(
    index: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
) -> std::io::Result<ShardHandle> {
    let thread = std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(shard = index, error = %e, "cannot start shard runtime");
                    return;
                }
            };
            let local = LocalSet::new();
            local.block_on(&runtime, run(index, shared, listener));
        })?;
    Ok(ShardHandle { thread })
}

async fn run(index: usize, shared: Arc<Shared>, listener: std::net::TcpListener) {
    let shard = Shard::new(index, shared.clone());
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(shard = index, error = %e, "cannot register listener");
            return;
        }
    };
    let mut shutdown = shared.shutdown_signal();
    let accept = tokio::task::spawn_local(crate::server::accept_loop(shard.clone(), listener));
    tokio::task::spawn_local(shard.clone().request_pump());
    tokio::task::spawn_local(shard.clone().delivery_pump());
    tokio::task::spawn_local(shard.clone().orphan_janitor());
    tokio::task::spawn_local(shard.clone().room_sweeper());
    let _ = shutdown.wait_for(|draining| *draining).await;
    // The listener stays open while draining: /readyz answers 503 to load
    // balancers and upgrades are refused with 503 `server_full`.
    let timeout = drain_budget(shared.config.server.drain_timeout_ms);
    // Half the budget at most for the homes to seal, the rest for closing.
    let seal_deadline = Instant::now() + timeout / 2;
    if tokio::time::timeout(timeout, shard.drain_connections(seal_deadline))
        .await
        .is_err()
    {
        tracing::warn!(
            shard = index,
            open = shard.connection_count(),
            "drain timeout: closing remaining connections"
        );
    }
    accept.abort();
}
