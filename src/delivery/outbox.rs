//! The [`Outbox`] a sequencer fills: deliveries, each with the shard it
//! goes to, and the room changes it observed.
//!
//! **Invariant:** deliveries leave in the order they were put in (the
//! order the sequencer made them), so each home-to-shard inbox stays FIFO;
//! a connection's op that succeeded silently (no frame id) gets nothing,
//! one that failed always gets its `error`.

use std::sync::Arc;

use crate::error::Refusal;
use crate::observe::{Observed, RoomChange};
use crate::op::{Op, Origin, Reply};
use crate::placement::{ShardSet, shard_of};

use super::{Ack, Delivery, RoomFrame};

/// Deliveries a sequencer produced, each with the shard it goes to, in the
/// order they must be sent.
#[derive(Debug)]
pub(crate) struct Outbox {
    shards: usize,
    items: Vec<(usize, Delivery)>,
    /// Room changes for [`crate::observe::Observer`], in order.
    observed: Vec<Observed>,
}

impl Outbox {
    /// An empty outbox for a broker of `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        Outbox {
            shards,
            items: Vec::new(),
            observed: Vec::new(),
        }
    }

    /// The shard count deliveries are placed over.
    pub(crate) fn shards(&self) -> usize {
        self.shards
    }

    /// `delivery` for shard `shard`.
    pub(crate) fn push(&mut self, shard: usize, delivery: Delivery) {
        self.items.push((shard, delivery));
    }

    /// `delivery` for the shard of connection `conn`.
    pub(crate) fn for_conn(&mut self, conn: u64, delivery: Delivery) {
        self.items.push((shard_of(conn, self.shards), delivery));
    }

    /// A room frame for every shard of `shards` (each applies it to its
    /// local members of `room`).
    pub(crate) fn fan_out(
        &mut self,
        shards: ShardSet,
        room: &Arc<str>,
        seq: u64,
        frame: &RoomFrame,
        exclude: Option<u64>,
        stamp_us: u64,
    ) {
        for shard in shards.iter() {
            let delivery = Delivery::Room {
                room: room.clone(),
                seq,
                frame: frame.clone(),
                exclude,
                stamp_us,
            };
            self.items.push((shard, delivery));
        }
    }

    /// Answer a connection: an `ack` if its frame had an id, an `error`
    /// whether or not.
    pub(crate) fn answer(&mut self, origin: Origin, answer: Result<Ack, Refusal>) {
        if answer.is_ok() && origin.id.is_none() {
            return;
        }
        let delivery = Delivery::Answer {
            conn: origin.conn,
            id: origin.id,
            answer,
        };
        self.for_conn(origin.conn, delivery);
    }

    /// Settle `reply` with `result`: a connection gets `ack(value)` or the
    /// refusal; an API request gets the result itself.
    pub(crate) fn settle<T>(
        &mut self,
        reply: Reply<T>,
        result: Result<T, Refusal>,
        ack: impl FnOnce(T) -> Ack,
    ) {
        match reply {
            Reply::Conn(origin) => self.answer(origin, result.map(ack)),
            Reply::Api(tx) => {
                // The API request may have timed out and gone.
                let _ = tx.send(result);
            }
        }
    }

    /// Settle `reply` with `refusal`.
    pub(crate) fn refuse<T>(&mut self, reply: Reply<T>, refusal: Refusal) {
        match reply {
            Reply::Conn(origin) => self.answer(origin, Err(refusal)),
            Reply::Api(tx) => {
                let _ = tx.send(Err(refusal));
            }
        }
    }

    /// Answer `op` with `refusal`, as the back end that did not run it
    /// would have: a join's connection settles it, others get their
    /// `error` or API answer. Frames for users and watches need none.
    pub(crate) fn refuse_op(&mut self, op: Op, refusal: Refusal) {
        match op {
            Op::Join(join) => {
                let refused = Delivery::JoinRefused {
                    conn: join.origin.conn,
                    room: join.room,
                    id: join.origin.id,
                    refusal,
                };
                self.for_conn(join.origin.conn, refused);
            }
            Op::Leave { origin, .. } | Op::Members { origin, .. } => {
                self.answer(origin, Err(refusal));
            }
            Op::Publish(publish) => self.refuse(publish.reply, refusal),
            Op::Create { reply, .. } => self.refuse(reply, refusal),
            Op::Delete { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Op::Details { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Op::Rooms { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Op::ToUsers { .. } | Op::WatchUser { .. } => {}
        }
    }

    /// Take the deliveries out, in order.
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, (usize, Delivery)> {
        self.items.drain(..)
    }

    /// `room` changed in a way an observer may watch (occupied, vacated,
    /// a user came or went).
    pub(crate) fn observe(&mut self, room: &Arc<str>, change: RoomChange) {
        self.observed.push(Observed {
            room: room.clone(),
            change,
        });
    }

    /// Take the observed changes out, in order.
    pub(crate) fn take_observed(&mut self) -> std::vec::Drain<'_, Observed> {
        self.observed.drain(..)
    }

    /// Whether nothing is waiting.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn silent_success_sends_nothing_and_failure_always_answers() {
        let mut out = Outbox::new(2);
        let origin = Origin { conn: 3, id: None };
        out.answer(origin, Ok(Ack::Room(Arc::from("r"))));
        assert!(out.is_empty());
        out.answer(origin, Err(Refusal::not_member("r")));
        let sent: Vec<_> = out.drain().collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 1, "conn 3 lives on shard 1 of 2");
    }

    #[test]
    fn fan_out_reaches_every_shard_of_the_set_once() {
        let mut out = Outbox::new(4);
        let mut set = ShardSet::default();
        set.insert(0);
        set.insert(3);
        let frame = RoomFrame::new(Bytes::from_static(b"x"));
        out.fan_out(set, &Arc::from("r"), 1, &frame, None, 0);
        let shards: Vec<usize> = out.drain().map(|(s, _)| s).collect();
        assert_eq!(shards, vec![0, 3]);
    }
}
