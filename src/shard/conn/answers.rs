//! What the back end answered a connection, as the connection takes it:
//! acks and refusals written for its protocol, admissions to a room (its
//! ack and catch-up), refused joins, leaves and deleted rooms, and the
//! count of its joins in flight.
//!
//! **Invariant:** while the connection lives, a room is in its rooms
//! exactly when the back end admitted it and has not removed it since (or
//! deleted the room); every answered join settles one join in flight, and
//! the last one to settle drops the table of them (an idle connection
//! keeps none) and wakes the reader.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{Conn, pusher};
use crate::delivery::{Ack, JoinAck};
use crate::error::Refusal;
use crate::protocol::encode::{self, MemberEntry};

impl Conn {
    /// The back end answered this connection's op: encode the `ack` (if
    /// the frame had an id) or the `error`.
    pub(crate) fn answer(&self, id: Option<u64>, answer: Result<Ack, Refusal>) {
        let ack = match answer {
            Err(refusal) => return self.refuse(id, &refusal),
            Ok(ack) => ack,
        };
        if self.pusher().is_some() {
            return; // Pusher has no acks
        }
        let Some(id) = id else {
            return;
        };
        let frame = match ack {
            Ack::Room(room) => encode::ack_room(id, &room),
            Ack::Published { room, seq } => encode::ack_publish(id, &room, seq),
            Ack::Members(list) => {
                let entries = list.members.iter().map(|m| MemberEntry {
                    conn: m.conn,
                    user: &m.user,
                    name: m.name.as_deref(),
                });
                encode::ack_members(id, &list.room, entries, list.total)
            }
        };
        self.reply(frame);
    }

    /// The back end admitted this connection to `room`: it is a member from
    /// now on (unless it is closing); its ack and catch-up go out.
    pub(crate) fn joined(
        &self,
        room: &Arc<str>,
        ack: Option<JoinAck>,
        catchup: Vec<Bytes>,
    ) -> bool {
        let newly = self.rooms.borrow_mut().insert(room.clone());
        self.join_settled(room);
        if let Some(p) = self.pusher() {
            for frame in p.joined(room, ack, catchup) {
                self.reply(frame);
            }
            return newly && !self.is_dead();
        }
        if let Some(ack) = ack {
            let history = ack.history.iter().map(|b| &b[..]);
            let frame = encode::ack_join(
                ack.id,
                room,
                ack.seq,
                &ack.epoch,
                ack.members,
                history,
                ack.recovered,
            );
            self.reply(frame);
        }
        for frame in catchup {
            self.reply(frame);
        }
        newly && !self.is_dead()
    }

    /// The back end refused this connection's join of `room`.
    pub(crate) fn join_refused(&self, room: &str, id: Option<u64>, refusal: &Refusal) {
        self.join_settled(room);
        match self.pusher() {
            Some(p) => {
                self.counters.error_out(refusal.code);
                self.reply(p.subscription_refused(room, refusal));
            }
            None => self.refuse(id, refusal),
        }
    }

    /// The back end removed this connection from `room`; true if it was a
    /// member here.
    pub(crate) fn left(&self, room: &str, id: Option<u64>) -> bool {
        let was = self.rooms.borrow_mut().remove(room);
        if was {
            self.forget_room(room);
        }
        if let Some(p) = self.pusher() {
            p.left(room);
        } else if let Some(id) = id {
            self.reply(encode::ack_room(id, room));
        }
        was
    }

    /// `room` was deleted: the connection is no longer in it.
    pub(crate) fn room_closed(&self, room: &str, frame: Bytes) {
        self.rooms.borrow_mut().remove(room);
        self.forget_room(room);
        match self.pusher() {
            Some(p) => p.left(room),
            None => self.send(frame),
        }
    }

    /// A join of `room` was answered by the back end.
    fn join_settled(&self, room: &str) {
        let mut joining = self.joining.borrow_mut();
        if let Some(n) = joining.get_mut(room) {
            *n -= 1;
            if *n == 0 {
                joining.remove(room);
            }
        }
        if joining.is_empty() {
            // Joins are rare: an idle connection keeps no table for them.
            *joining = HashMap::new();
            self.reader_wake.notify();
        }
    }

    /// Forget pending gaps of a room the connection left.
    fn forget_room(&self, room: &str) {
        self.queue.borrow_mut().forget_room(room);
    }

    /// Send an `error` frame (counted by code): `pusher:error` on a
    /// Pusher connection.
    pub(super) fn refuse(&self, id: Option<u64>, refusal: &Refusal) {
        self.counters.error_out(refusal.code);
        match self.pusher() {
            Some(_) => self.reply(pusher::error_frame(refusal)),
            None => self.reply(encode::error(id, refusal.code, &refusal.message)),
        }
    }
}
