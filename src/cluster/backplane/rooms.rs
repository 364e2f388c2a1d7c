//! Each room this node has members in: its order on this node (the pure
//! [`RoomOrder`] core, driven here), its members, and the fan-out to the
//! shards that hold them.
//!
//! **Invariants:** a room's [`ShardCounts`] hold exactly the shards of its
//! admitted members here, so a message reaches every admitted member's
//! shard once; the room has an entry in the broker's room index exactly
//! while it has admitted members here (for `/api/rooms` and `/metrics`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Backplane, Prepared, Then};
use crate::backend::RemoteCounters;
use crate::cluster::{RoomFacts, scripts};
use crate::delivery::{Admitted, Delivery, JoinAck, RoomFrame};
use crate::index::RoomMeta;
use crate::limits::HISTORY_TRIM_TO_EIGHTHS;
use crate::placement::{ShardCounts, shard_of};
use crate::protocol::encode;
use crate::room::history::trim_largest_first;
use crate::room::order::{CatchUp, OrderLimits, RoomOrder, Step};

/// Subscription state of a room channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    Off,
    Pending,
    On,
}

/// A join Redis answered, waiting in the order for its message.
#[derive(Debug)]
pub(super) struct Admission {
    pub(super) facts: RoomFacts,
    pub(super) ack: Option<JoinAck>,
}

/// What this node knows of a room with local interest.
pub(super) struct RoomState {
    /// This node's members as Redis has them: conn → presence value.
    pub(super) members: HashMap<u64, String>,
    /// Members admitted here (frames go to them), and their shards.
    admitted: HashSet<u64>,
    shards: ShardCounts,
    /// The room's entry in the index, while it has admitted members here.
    meta: Option<Arc<RoomMeta>>,
    /// Joins sent to Redis and not answered yet.
    pub(super) joining: u32,
    pub(super) sub: Sub,
    /// Since when its subscribe waits for Redis' confirmation
    /// (while [`Sub::Pending`]).
    pub(super) pending_since: Option<Instant>,
    /// Ops waiting for the subscription.
    pub(super) held: Vec<Prepared>,
    pub(super) order: RoomOrder<Admission>,
    /// The room's settings, once a join was answered.
    pub(super) facts: Option<RoomFacts>,
    /// A member here asked for the room's users (a Pusher presence
    /// member): changes of its users are told even with native presence
    /// events off.
    pub(super) user_presence: bool,
}

impl RoomState {
    pub(super) fn new(limits: OrderLimits) -> Self {
        RoomState {
            members: HashMap::new(),
            admitted: HashSet::new(),
            shards: ShardCounts::default(),
            meta: None,
            joining: 0,
            sub: Sub::Off,
            pending_since: None,
            held: Vec::new(),
            order: RoomOrder::new(limits),
            facts: None,
            user_presence: false,
        }
    }

    fn idle(&self) -> bool {
        self.members.is_empty()
            && self.joining == 0
            && self.held.is_empty()
            && self.order.nothing_pending()
    }
}

impl Backplane {
    /// The bounds of each room's order on this node.
    fn order_limits(&self) -> OrderLimits {
        OrderLimits {
            messages: self.cfg.catchup_messages,
            bytes: self.shared.config.room.history_max_bytes,
        }
    }

    /// The state of `room`, made if absent.
    pub(super) fn room_state(&mut self, room: &Arc<str>) -> &mut RoomState {
        let limits = self.order_limits();
        self.rooms
            .entry(room.clone())
            .or_insert_with(|| RoomState::new(limits))
    }

    /// Message `seq` of `room` arrived on its channel.
    pub(super) fn on_room_message(
        &mut self,
        room: &Arc<str>,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
    ) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let before = state.order.recent_bytes();
        let ids = self.cmd.is_some().then_some(&mut self.repair_ids);
        let mut steps = Vec::new();
        state.order.message(seq, frame, skip, ids, &mut steps);
        self.recent_bytes = self.recent_bytes - before + state.order.recent_bytes();
        self.carry_out(room, steps);
        self.within_history_budget();
    }

    /// Repair `id` of `room` could not read the stream: it is sent again
    /// when the command connection is back, or at the next deadline check.
    pub(super) fn repair_failed(&mut self, room: &Arc<str>, id: u64) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.order.repair_failed(id);
        }
    }

    /// The stream's answer to repair `id` of `room`.
    pub(super) fn repair_done(&mut self, room: &Arc<str>, id: u64, found: Vec<(u64, Bytes)>) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let before = state.order.recent_bytes();
        let mut steps = Vec::new();
        state.order.repaired(id, found, &mut steps);
        self.recent_bytes = self.recent_bytes - before + state.order.recent_bytes();
        self.carry_out(room, steps);
        self.within_history_budget();
    }

    /// Every op waiting on this backplane ends within a bounded time
    /// (checked every [`super::DEADLINE_TICK_MS`]): a subscribe Redis has not
    /// confirmed within `cluster.command_timeout_ms` drops the subscriber
    /// connection (its held ops get `unavailable`, a reconnect follows),
    /// a join answered ahead of messages that have not come within that
    /// time is settled by the room's order (a read of the stream, or a
    /// `gap`), and a repair that could not read the stream is sent again
    /// or, after that time, given up with a `gap`; see
    /// [`RoomOrder::overdue`].
    pub(super) fn check_deadlines(&mut self) {
        let now = Instant::now();
        let wait = Duration::from_millis(self.cfg.command_timeout_ms);
        let unconfirmed = self.rooms.iter().any(|(_, state)| {
            state.sub == Sub::Pending
                && state
                    .pending_since
                    .is_some_and(|since| now.saturating_duration_since(since) > wait)
        });
        if unconfirmed {
            self.pubsub_lost("Redis did not confirm a subscribe in time");
        }
        let overdue: Vec<Arc<str>> = self
            .rooms
            .iter()
            .filter(|(_, state)| state.order.waits_on_time())
            .map(|(room, _)| room.clone())
            .collect();
        for room in overdue {
            let Some(state) = self.rooms.get_mut(&room) else {
                continue;
            };
            let ids = self.cmd.is_some().then_some(&mut self.repair_ids);
            let mut steps = Vec::new();
            state.order.overdue(now, wait, ids, &mut steps);
            self.carry_out(&room, steps);
        }
    }

    /// Over `limits.max_history_bytes_total` (the catch-up messages of all
    /// rooms): forget the oldest ones of the largest rooms first, down to
    /// [`HISTORY_TRIM_TO_EIGHTHS`]/8 of the budget.
    fn within_history_budget(&mut self) {
        let budget = usize::try_from(self.shared.config.limits.max_history_bytes_total)
            .unwrap_or(usize::MAX);
        if self.recent_bytes <= budget {
            return;
        }
        let target = budget / 8 * HISTORY_TRIM_TO_EIGHTHS;
        let rooms = &mut self.rooms;
        let listed: Vec<(usize, Arc<str>)> = rooms
            .iter()
            .filter(|(_, state)| state.order.recent_bytes() > 0)
            .map(|(room, state)| (state.order.recent_bytes(), room.clone()))
            .collect();
        let (total, dropped) =
            trim_largest_first(listed.into_iter(), self.recent_bytes, target, |room| {
                let order = &mut rooms.get_mut(room)?.order;
                order
                    .forget_oldest_recent()
                    .map(|freed| (freed, order.recent_bytes()))
            });
        self.recent_bytes = total;
        if let Some(counters) = self.shared.backend.remote_counters() {
            counters
                .catchup_trimmed
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Do what the room's order decided, in order.
    pub(super) fn carry_out(&mut self, room: &Arc<str>, steps: Vec<Step<Admission>>) {
        for step in steps {
            match step {
                Step::Deliver { seq, frame, skip } => {
                    let Some(state) = self.rooms.get(room) else {
                        return;
                    };
                    if let Some(meta) = &state.meta {
                        meta.seq.store(seq, Ordering::Relaxed);
                    }
                    let stamp_us = crate::metrics::now_us();
                    let shards = state.shards.shards();
                    let frame = RoomFrame::new(frame);
                    self.out.fan_out(shards, room, seq, &frame, skip, stamp_us);
                }
                Step::Gap { from, to } => {
                    tracing::warn!(%room, from, to, "cluster: messages lost between Redis and this node");
                    if let Some(counters) = self.counters() {
                        RemoteCounters::bump(&counters.gaps);
                    }
                    let frame = RoomFrame::new(encode::gap(room, from, to));
                    self.presence(room, &frame, None);
                }
                Step::Admit {
                    conn,
                    admission,
                    catchup,
                } => self.admit(room, conn, admission, catchup),
                Step::Fetch { id, after, below } => self.fetch(room, id, after, below),
            }
        }
    }

    /// Read the messages of `room` after `after` (and before `below`) from
    /// its stream.
    fn fetch(&mut self, room: &Arc<str>, id: u64, after: u64, below: Option<u64>) {
        if let Some(counters) = self.counters() {
            RemoteCounters::bump(&counters.repairs);
        }
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(scripts::history_key(room))
            .arg(format!("{}-0", after + 1));
        match below {
            Some(b) => cmd.arg(format!("{}-0", b.saturating_sub(1))),
            None => cmd.arg("+"),
        };
        cmd.arg("COUNT").arg(self.cfg.catchup_messages.max(1));
        let then = Then::Repair {
            room: room.clone(),
            id,
        };
        self.ready.push_back(Prepared { cmd, then });
    }

    /// Admit `conn` to `room` on its shard: its ack, then what it missed
    /// since its join; frames of the room reach it from now on.
    fn admit(&mut self, room: &Arc<str>, conn: u64, admission: Admission, missed: Vec<CatchUp>) {
        let shards = self.shared.shards();
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let facts = admission.facts;
        if state.admitted.insert(conn) {
            state.shards.add(shard_of(conn, shards));
        }
        let meta = state.meta.get_or_insert_with(|| {
            let meta = Arc::new(RoomMeta {
                home: 0,
                private: facts.room.private,
                max_members: facts.room.max_members,
                overflow: facts.room.overflow,
                explicit: facts.explicit,
                members: AtomicU32::new(0),
                users: AtomicU32::new(0),
                seq: AtomicU64::new(0),
                // Counted against its creator's quotas in Redis.
                creator: None,
            });
            // The index lists the rooms with members here; its caps do not
            // apply to a room Redis admitted already.
            self.shared.rooms.list(room.clone(), meta.clone());
            meta
        });
        meta.members
            .store(state.admitted.len() as u32, Ordering::Relaxed);
        let catchup = missed
            .into_iter()
            .map(|item| match item {
                CatchUp::Message(frame) => frame,
                CatchUp::Gap { from, to } => encode::gap(room, from, to),
            })
            .collect();
        let admitted = Admitted {
            overflow: facts.room.overflow,
            ack: admission.ack,
            catchup,
        };
        let joined = Delivery::Joined {
            conn,
            room: room.clone(),
            admitted: Box::new(admitted),
        };
        self.out.for_conn(conn, joined);
    }

    /// An event frame (`joined`/`left`, `gap`) for the room's members here
    /// but `skip`.
    pub(super) fn presence(&mut self, room: &Arc<str>, frame: &RoomFrame, skip: Option<u64>) {
        if let Some(state) = self.rooms.get(room) {
            self.out
                .fan_out(state.shards.shards(), room, 0, frame, skip, 0);
        }
    }

    /// `conn` is no longer a member of `room` here: its shard stops
    /// delivering the room to it (and acks the leave if `id`).
    pub(super) fn member_gone(&mut self, room: &Arc<str>, conn: u64, id: Option<u64>) {
        let shards = self.shared.shards();
        if let Some(state) = self.rooms.get_mut(room) {
            state.members.remove(&conn);
            // A join still waiting for its message is admitted first, so the
            // connection's pending join settles, then removed.
            let mut steps = Vec::new();
            state.order.member_gone(conn, &mut steps);
            self.carry_out(room, steps);
        }
        if let Some(state) = self.rooms.get_mut(room) {
            if state.admitted.remove(&conn) {
                state.shards.remove(shard_of(conn, shards));
            }
            let count = state.admitted.len();
            if let Some(meta) = &state.meta {
                meta.members.store(count as u32, Ordering::Relaxed);
            }
            if count == 0 && state.meta.take().is_some() {
                self.shared.rooms.remove(room);
            }
        }
        let left = Delivery::Left {
            conn,
            room: room.clone(),
            id,
        };
        self.out.for_conn(conn, left);
        self.release_if_idle(room);
    }

    /// `room` was deleted: waiting joins are admitted, then every member
    /// here gets `room_closed`.
    pub(super) fn room_closed(&mut self, room: &Arc<str>) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let mut steps = Vec::new();
        self.recent_bytes -= state.order.recent_bytes();
        state.order.closed(&mut steps);
        self.carry_out(room, steps);
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let frame = encode::room_closed(room, "deleted");
        for shard in state.shards.shards().iter() {
            let closed = Delivery::RoomClosed {
                room: room.clone(),
                frame: frame.clone(),
            };
            self.out.push(shard, closed);
        }
        if state.meta.take().is_some() {
            self.shared.rooms.remove(room);
        }
        state.admitted.clear();
        state.shards = ShardCounts::default();
        state.members.clear();
        self.release_if_idle(room);
    }

    /// Forget a room this node no longer has any interest in, and stop
    /// hearing it.
    pub(super) fn release_if_idle(&mut self, room: &Arc<str>) {
        if !self.rooms.get(room).is_some_and(RoomState::idle) {
            return;
        }
        if let Some(state) = self.rooms.remove(room) {
            self.recent_bytes -= state.order.recent_bytes();
            if state.meta.is_some() {
                self.shared.rooms.remove(room);
            }
            if state.sub != Sub::Off {
                self.change_subscription(false, vec![scripts::room_channel(room)]);
            }
        }
    }
}
