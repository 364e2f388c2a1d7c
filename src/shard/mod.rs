//! A shard: one OS thread running a current-thread tokio runtime that owns
//! its connections, their queues, its share of room membership, and the
//! rooms homed on it.
//!
//! * [`route`]: the one route of an op, and how deliveries reach shards.
//! * [`home`]: the request pump, driver of the rooms homed here (the
//!   single-node back end, [`crate::room::table`]).
//! * [`members`]: the delivery pump: deliveries applied to local members.
//! * [`drain`]: sealing and closing at shutdown.
//! * [`conn`]: the connections themselves; [`outbound`]: their queues.
//!
//! **Architecture Invariant:** nothing in a shard is touched by another
//! thread; state is `Rc`/`RefCell`, and no `RefCell` borrow is held across
//! an `.await`. Shards talk only through [`crate::inbox`] inboxes and the
//! lock-free indexes of [`crate::shared::Shared`].

pub(crate) mod conn;
mod cork;
mod drain;
mod home;
mod members;
pub(crate) mod outbound;
mod route;
pub(crate) use route::Waiting;
pub(crate) mod signal;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::LocalSet;
use tokio::time::Instant;

use crate::error::{ErrorCode, Refusal};
use crate::inbox::ShardLink;
use crate::metrics::CounterSnapshot;
pub(crate) use crate::metrics::ShardCounters;
use crate::room::table::RoomTable;
use crate::shared::Shared;
use conn::Conn;
use members::LocalRoom;
use signal::LocalSignal;

/// One shard's figures, as `/api/stats` reports them.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ShardStats {
    /// Shard index.
    pub(crate) shard: usize,
    /// Open connections.
    pub(crate) connections: usize,
    /// Of which speak the Pusher protocol.
    pub(crate) pusher_connections: usize,
    /// Rooms with members on this shard.
    pub(crate) rooms_with_members: usize,
    /// Rooms homed on this shard.
    pub(crate) rooms_homed: usize,
    /// Frames waiting in outbound queues.
    pub(crate) queued_frames: usize,
    /// Bytes waiting in outbound queues.
    pub(crate) queued_bytes: usize,
    /// Largest outbound queue, frames.
    pub(crate) max_queue_frames: usize,
    /// Room messages dropped for slow members (`drop` policy).
    pub(crate) dropped_total: u64,
    /// Connections closed with 4000.
    pub(crate) slow_consumer_closes_total: u64,
    /// Room messages sequenced here.
    pub(crate) published_total: u64,
    /// Bytes of history of the rooms homed here.
    pub(crate) history_bytes: usize,
    /// Messages dropped from that history for the history budget.
    pub(crate) history_trimmed_total: u64,
    /// Requests waiting in the inbox.
    pub(crate) request_inbox: usize,
    /// Deliveries waiting in the inbox.
    pub(crate) delivery_inbox: usize,
    /// Counters by kind (frames, errors, refusals, disconnects).
    pub(crate) counters: CounterSnapshot,
}

/// One shard's state.
pub(crate) struct Shard {
    /// This shard's index.
    pub(crate) index: usize,
    /// State shared with other shards.
    pub(crate) shared: Arc<Shared>,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    local_rooms: RefCell<HashMap<Arc<str>, LocalRoom>>,
    local_users: RefCell<HashMap<Arc<str>, Vec<Rc<Conn>>>>,
    /// The rooms homed here (single-node back end).
    homes: RefCell<RoomTable>,
    /// Joins accepted for connections that were gone: to be left again.
    orphans: RefCell<Vec<(u64, Arc<str>)>>,
    orphan_signal: LocalSignal,
    next_conn: Cell<u64>,
    conn_closed: LocalSignal,
    /// `Sealed` deliveries received (drain).
    seals: Cell<usize>,
    seals_signal: LocalSignal,
    /// Counters for `/api/stats` and `/metrics`.
    pub(crate) counters: Rc<ShardCounters>,
    /// Writers to flush at the end of a pump's batch.
    cork: Rc<cork::Cork<std::rc::Weak<Conn>>>,
    /// Shards whose request inbox a reader put ops in quietly
    /// ([`Shard::route_or_wait`]), to be woken by [`Shard::ring_requests`]
    /// before that reader yields.
    unrung_requests: Cell<crate::placement::ShardSet>,
}

impl Shard {
    fn new(index: usize, shared: Arc<Shared>) -> Rc<Shard> {
        Rc::new(Shard {
            index,
            homes: RefCell::new(RoomTable::new(index, &shared.config)),
            shared,
            conns: RefCell::default(),
            local_rooms: RefCell::default(),
            local_users: RefCell::default(),
            orphans: RefCell::default(),
            orphan_signal: LocalSignal::default(),
            next_conn: Cell::new(1),
            conn_closed: LocalSignal::default(),
            seals: Cell::new(0),
            seals_signal: LocalSignal::default(),
            counters: Rc::default(),
            cork: Rc::default(),
            unrung_requests: Cell::default(),
        })
    }

    /// Start a batch of deliveries: connections they wake are flushed at
    /// [`Shard::uncork`] (see [`cork`]). Never held across a waiting
    /// `.await`.
    pub(super) fn cork(&self) {
        self.cork.open();
    }

    /// End a batch of deliveries: write what it queued for each connection
    /// it woke, straight to the socket where the writer is asleep.
    pub(super) fn uncork(&self) {
        let Some(mut listed) = self.cork.close() else {
            return;
        };
        for conn in listed.drain(..) {
            // A connection gone since it was listed has nothing to write.
            if let Some(conn) = conn.upgrade() {
                conn.flush_now();
            }
        }
    }

    fn link(&self) -> &ShardLink {
        &self.shared.links[self.index]
    }

    /// A new connection id; [`crate::placement::shard_of`] of it is this
    /// shard, so any thread can tell where a connection lives.
    pub(crate) fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        self.shared.conn_base + n * self.shared.shards() as u64 + self.index as u64
    }

    /// Connections open on this shard.
    pub(crate) fn connection_count(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Add a connection to the shard's tables; true if it is the first of
    /// its user on this shard.
    fn register(&self, conn: &Rc<Conn>) -> bool {
        self.conns.borrow_mut().insert(conn.id, conn.clone());
        self.attach_user(conn, conn.user())
    }

    /// List `conn` under `user` (its user id); true if it is the first
    /// connection of `user` on this shard.
    fn attach_user(&self, conn: &Rc<Conn>, user: Arc<str>) -> bool {
        let mut users = self.local_users.borrow_mut();
        let list = users.entry(user.clone()).or_default();
        let first = list.is_empty();
        if first {
            self.shared.users.attach(&user, self.index);
        }
        list.push(conn.clone());
        first
    }

    /// Take `conn` off the list of `user`; true if it was the last
    /// connection of `user` on this shard.
    fn detach_user(&self, conn: &Conn, user: &Arc<str>) -> bool {
        let mut users = self.local_users.borrow_mut();
        let mut last = false;
        if let Some(list) = users.get_mut(user) {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                users.remove(user);
                self.shared.users.detach(user, self.index);
                last = true;
            }
        }
        last
    }

    /// `conn` is now user `user` (a Pusher sign-in): frames for `user`
    /// reach it from now on, and no longer those for its old id.
    /// The new id counts against `limits.max_connections_per_user`.
    pub(crate) async fn rename_user(&self, conn: &Rc<Conn>, user: Arc<str>) -> Result<(), Refusal> {
        let old = conn.user();
        if old == user {
            return Ok(());
        }
        let cap = self.shared.config.limits.max_connections_per_user;
        if !self.shared.users.try_connect(&user, cap) {
            return Err(Refusal::new(
                ErrorCode::TooManyConnections,
                format!("this user holds its maximum of {cap} connections"),
            ));
        }
        if conn.renamed.replace(true) {
            // Renamed before: the last id it was counted under goes.
            self.shared.users.disconnect(&old);
        }
        let last = self.detach_user(conn, &old);
        conn.set_user(user.clone());
        let first = self.attach_user(conn, user.clone());
        if last {
            let watch = crate::op::Op::WatchUser {
                user: old,
                watch: false,
                heard: None,
            };
            self.route(watch).await;
        }
        if first {
            let watch = crate::op::Op::WatchUser {
                user,
                watch: true,
                heard: None,
            };
            self.route(watch).await;
        }
        Ok(())
    }

    /// Remove a closed connection from the shard's tables (its rooms were
    /// left already); true if it was the last of its user on this shard.
    fn unregister(&self, conn: &Conn) -> bool {
        self.conns.borrow_mut().remove(&conn.id);
        let last = self.detach_user(conn, &conn.user());
        self.conn_closed.notify();
        last
    }

    /// This shard's figures now.
    pub(crate) fn stats(&self) -> ShardStats {
        let conns = self.conns.borrow();
        let (mut frames, mut bytes, mut max, mut dropped) = (0, 0, 0, 0);
        for c in conns.values() {
            let (f, b, d) = c.queue_figures();
            frames += f;
            bytes += b;
            max = max.max(f);
            dropped += d;
        }
        let homes = self.homes.borrow();
        ShardStats {
            shard: self.index,
            connections: conns.len(),
            pusher_connections: conns.values().filter(|c| c.is_pusher()).count(),
            rooms_with_members: self.local_rooms.borrow().len(),
            rooms_homed: homes.len(),
            queued_frames: frames,
            queued_bytes: bytes,
            max_queue_frames: max,
            dropped_total: dropped + self.counters.dropped_closed.get(),
            slow_consumer_closes_total: self.counters.slow_consumer_closes.get(),
            published_total: homes.published(),
            history_bytes: homes.history_bytes(),
            history_trimmed_total: homes.history_trimmed(),
            request_inbox: self.link().requests.len(),
            delivery_inbox: self.link().deliveries.len(),
            counters: self.counters.snapshot(),
        }
    }
}

/// A running shard thread.
pub(crate) struct ShardHandle {
    /// The thread; it returns when the shard has drained.
    pub(crate) thread: std::thread::JoinHandle<()>,
}

/// Start shard `index` on its own thread, serving `listener` (a std
/// listener, non-blocking, bound with SO_REUSEPORT).
pub(crate) fn spawn(
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
    if index == 0 {
        tokio::task::spawn_local(crate::memory::watch(shared.memory.clone()));
    }
    tokio::task::spawn_local(crate::memory::give_back_while_over(shared.memory.clone()));
    let _ = shutdown.wait_for(|draining| *draining).await;
    // The listener stays open while draining: /readyz answers 503 to load
    // balancers and upgrades are refused with 503 `server_full`.
    let timeout = drain::budget(shared.config.server.drain_timeout_ms);
    // Half the budget at most for the sequencers to seal, the rest for
    // closing.
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
