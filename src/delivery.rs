//! What a back end hands to the shards that hold the recipients: room
//! frames, answers to ops, membership changes. This file holds the
//! [`Delivery`] itself; its parts live beside it: the shared room frame
//! (`frame.rs`), the typed answers (`answers.rs`) and the [`Outbox`] a
//! sequencer fills (`outbox.rs`).
//!
//! **Architecture Invariant:** a room message is a [`Delivery::Room`]
//! carrying one encoded frame shared by every recipient (a refcount, never a
//! copy); answers are typed ([`Ack`], [`JoinAck`], [`Refusal`]) and encoded
//! by the asking connection for its own protocol. Both back ends (home
//! shards, the cluster backplane) speak only these, so a shard cannot tell
//! which back end runs.

mod answers;
mod frame;
mod outbox;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::Refusal;
use crate::inbox::Weighed;
use crate::op::{Audience, UserFrame};

pub(crate) use answers::{
    Ack, Admitted, JoinAck, MemberInfo, MemberList, RoomCounts, RoomDetails, UserEntry,
};
pub(crate) use frame::PresenceChange;
pub use frame::RoomFrame;
pub(crate) use outbox::Outbox;

/// Work for the shard that holds the recipients.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A frame for every local member of `room`. `seq` > 0 marks a room
    /// message (overflow policy applies); 0 an event (`joined`/`left`,
    /// `gap`).
    Room {
        /// The room.
        room: Arc<str>,
        /// The message's seq, or 0 for an event.
        seq: u64,
        /// The encoded frame, shared by every recipient.
        frame: RoomFrame,
        /// A connection to skip (`exclude_self`, or the subject of an event).
        exclude: Option<u64>,
        /// When it was sequenced ([`crate::metrics::now_us`]; 0 for
        /// events), for the publish-to-write histogram.
        stamp_us: u64,
    },
    /// The answer to a connection's op (`ack` or `error`).
    Answer {
        /// The connection.
        conn: u64,
        /// The frame's id.
        id: Option<u64>,
        /// What happened.
        answer: Result<Ack, Refusal>,
    },
    /// The back end accepted a join: start delivering the room to `conn`.
    Joined {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// Its ack and catch-up.
        admitted: Box<Admitted>,
    },
    /// The back end refused a join.
    JoinRefused {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The frame's id.
        id: Option<u64>,
        /// Why.
        refusal: Refusal,
    },
    /// The back end removed `conn` from `room`: stop delivering it.
    Left {
        /// The connection.
        conn: u64,
        /// The room.
        room: Arc<str>,
        /// The frame's id, if the leave carried one (an `ack` goes out).
        id: Option<u64>,
    },
    /// A frame for local connections of a user, or for all (or their
    /// close).
    ToUsers {
        /// Who gets it.
        audience: Audience,
        /// The frame, or the close.
        frame: UserFrame,
        /// Where to report how many connections got it.
        counted: Option<mpsc::Sender<usize>>,
    },
    /// `room` was deleted: its local members leave it and get `frame`.
    RoomClosed {
        /// The room.
        room: Arc<str>,
        /// The `room_closed` frame.
        frame: Bytes,
    },
    /// Close connection `conn` with 1008 (`DELETE /api/connections/{conn}`).
    Kick {
        /// The connection.
        conn: u64,
        /// `Some(())` if it existed.
        done: oneshot::Sender<Option<()>>,
    },
    /// Details of connection `conn` (`GET /api/connections/{conn}`).
    ConnDetails {
        /// The connection.
        conn: u64,
        /// Its details, or `None` if there is no such connection here.
        done: oneshot::Sender<Option<crate::shard::conn::ConnDetails>>,
    },
    /// Report the shard's figures (`GET /api/stats`, `/metrics`).
    Stats {
        /// Where the figures go.
        done: mpsc::Sender<crate::shard::ShardStats>,
    },
    /// Drain: a sequencer (a home shard, or the cluster backplane) stopped.
    /// Every delivery of a message it sequenced (and its ack) came before
    /// this on the same inbox, and it sequences nothing more.
    Sealed,
}

impl Weighed for Delivery {
    fn weight(&self) -> usize {
        match self {
            Delivery::Room { frame, .. } => frame.len(),
            Delivery::ToUsers { frame, .. } => frame.len(),
            Delivery::RoomClosed { frame, .. } => frame.len(),
            Delivery::Joined { admitted, .. } => {
                let history = admitted
                    .ack
                    .as_ref()
                    .map_or(0, |a| a.history.iter().map(Bytes::len).sum::<usize>());
                history + admitted.catchup.iter().map(Bytes::len).sum::<usize>()
            }
            Delivery::Answer { .. }
            | Delivery::JoinRefused { .. }
            | Delivery::Left { .. }
            | Delivery::Kick { .. }
            | Delivery::ConnDetails { .. }
            | Delivery::Stats { .. }
            | Delivery::Sealed => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_stays_small_in_the_inboxes() {
        // Inboxes are arrays of slots sized by the largest variant.
        assert!(std::mem::size_of::<Delivery>() <= 96);
    }
}
