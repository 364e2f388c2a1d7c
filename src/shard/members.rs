//! The delivery pump: deliveries from the sequencers applied to this
//! shard's connections — room frames to local members, answers to the
//! connections that asked, membership changes.
//!
//! **Architecture Invariant:** applying a delivery never waits, so a
//! sequencer blocked on this shard's inbox is always unblocked by this
//! pump; a room frame is pushed to each local member's queue as a refcount
//! of one shared buffer (no per-recipient allocation).

use std::rc::Rc;
use std::sync::Arc;

use super::Shard;
use super::conn::Conn;
use crate::config::OverflowPolicy;
use crate::delivery::{Admitted, Delivery};
use crate::error::close;
use crate::limits::SHARD_PUMP_BATCH;
use crate::op::{Audience, Op, Origin};

/// Members of one room on this shard.
pub(super) struct LocalRoom {
    overflow: OverflowPolicy,
    members: Vec<Rc<Conn>>,
}

impl Shard {
    /// Drain the delivery inbox forever. Never waits on another shard.
    pub(super) async fn delivery_pump(self: Rc<Self>) {
        let mut batch = Vec::with_capacity(SHARD_PUMP_BATCH);
        loop {
            if self.link().deliveries.drain(&mut batch, SHARD_PUMP_BATCH) == 0 {
                self.link().deliveries.arrived.notified().await;
                continue;
            }
            self.cork();
            for delivery in batch.drain(..) {
                self.apply_delivery(delivery);
            }
            self.uncork();
            tokio::task::yield_now().await;
        }
    }

    fn conn(&self, conn: u64) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&conn).cloned()
    }

    /// Hand a delivery to local connections. Never waits.
    pub(super) fn apply_delivery(&self, delivery: Delivery) {
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
                let min = self.shared.config.server.compression_min_bytes;
                for member in &local.members {
                    if Some(member.id) == exclude {
                        continue;
                    }
                    if seq > 0 {
                        if let Some(bytes) = member.room_bytes(&room, &frame, min) {
                            member.push_room(&room, seq, bytes, local.overflow, stamp_us);
                        }
                    } else {
                        member.send_event(&room, &frame);
                    }
                    delivered += 1;
                }
                if seq > 0 {
                    self.counters.delivered(delivered);
                }
            }
            Delivery::Answer { conn, id, answer } => {
                if let Some(c) = self.conn(conn) {
                    c.answer(id, answer);
                }
            }
            Delivery::Joined {
                conn,
                room,
                admitted,
            } => self.joined(conn, room, *admitted),
            Delivery::JoinRefused {
                conn,
                room,
                id,
                refusal,
            } => {
                if let Some(c) = self.conn(conn) {
                    c.join_refused(&room, id, &refusal);
                }
            }
            Delivery::Left { conn, room, id } => {
                if let Some(c) = self.conn(conn) {
                    if c.left(&room, id) {
                        self.remove_member(&room, conn);
                    }
                }
            }
            Delivery::ToUsers {
                audience,
                frame,
                counted,
            } => {
                let mut delivered = 0;
                let mut give = |c: &Conn| {
                    if c.to_user(&frame) {
                        delivered += 1;
                    }
                };
                match audience {
                    Audience::User(user) => {
                        // Closing a connection changes no table here.
                        if let Some(list) = self.local_users.borrow().get(&user) {
                            for c in list {
                                give(c);
                            }
                        }
                    }
                    Audience::All => {
                        for c in self.conns.borrow().values() {
                            give(c);
                        }
                    }
                }
                if let Some(counted) = counted {
                    let _ = counted.try_send(delivered);
                }
            }
            Delivery::RoomClosed { room, frame } => {
                let Some(local) = self.local_rooms.borrow_mut().remove(&room) else {
                    return;
                };
                for c in local.members {
                    c.room_closed(&room, frame.clone());
                }
            }
            Delivery::Kick { conn, done } => {
                let found = self.conn(conn);
                if let Some(c) = &found {
                    c.close_with(close::POLICY, "disconnected by the server's API", false);
                }
                let _ = done.send(found.map(|_| ()));
            }
            Delivery::ConnDetails { conn, done } => {
                let _ = done.send(self.conn(conn).map(|c| c.details()));
            }
            Delivery::Stats { done } => {
                let _ = done.try_send(self.stats());
            }
            Delivery::Sealed => {
                self.seals.set(self.seals.get() + 1);
                self.seals_signal.notify();
            }
        }
    }

    /// The back end admitted `conn` to `room`: deliver the room to it from
    /// now on. A connection gone meanwhile leaves the room again.
    fn joined(&self, conn: u64, room: Arc<str>, admitted: Admitted) {
        let Some(c) = self.conn(conn) else {
            self.orphans.borrow_mut().push((conn, room));
            self.orphan_signal.notify();
            return;
        };
        let Admitted {
            overflow,
            ack,
            catchup,
        } = admitted;
        if c.joined(&room, ack, catchup) {
            self.local_rooms
                .borrow_mut()
                .entry(room)
                .or_insert_with(|| LocalRoom {
                    overflow,
                    members: Vec::new(),
                })
                .members
                .push(c);
        }
    }

    /// Stop delivering `room` to `conn` on this shard.
    pub(super) fn remove_member(&self, room: &str, conn: u64) {
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

    /// Leave rooms whose join was accepted after the connection had gone.
    pub(super) async fn orphan_janitor(self: Rc<Self>) {
        loop {
            self.orphan_signal.wait().await;
            let orphans = std::mem::take(&mut *self.orphans.borrow_mut());
            for (conn, room) in orphans {
                let origin = Origin { conn, id: None };
                self.route(Op::Leave { origin, room }).await;
            }
        }
    }
}
