//! The one route of an operation, and how deliveries reach shards.
//!
//! **Architecture Invariant:** [`Shard::route`] is the only way a front
//! door's op reaches a back end: room ops go to the room's home shard
//! (single node) or to the remote sequencer (cluster), frames for users go
//! to this node's shards holding them (and to the other nodes through the
//! remote sequencer). Nothing else in `shard` knows which back end runs.

use crate::backend::Backend;
use crate::delivery::Delivery;
use crate::op::{Audience, Op};
use crate::placement::{ShardSet, home_of};

use super::Shard;

impl Shard {
    /// Hand `op` from a front door on this shard to whoever runs it,
    /// waiting while the way there is full (backpressure reaches the
    /// caller's read loop).
    pub(crate) async fn route(&self, op: Op) {
        if let Op::ToUsers {
            audience,
            frame,
            counted,
        } = op
        {
            // Every node delivers to its own connections.
            if let Backend::Remote(remote) = &self.shared.backend {
                let relay = Op::ToUsers {
                    audience: audience.clone(),
                    frame: frame.clone(),
                    counted: None,
                };
                remote.submit(relay).await;
            }
            let shards = match &audience {
                Audience::User(user) => ShardSet::from_bits(self.shared.users.shards(user)),
                Audience::All => ShardSet::all(self.shared.shards()),
            };
            for shard in shards.iter() {
                let delivery = Delivery::ToUsers {
                    audience: audience.clone(),
                    frame: frame.clone(),
                    counted: counted.clone(),
                };
                self.deliver(shard, delivery).await;
            }
            return;
        }
        if let Op::Rooms {
            prefix,
            limit,
            reply,
        } = op
        {
            match &self.shared.backend {
                // The index holds every room of a single node.
                Backend::Local => {
                    let _ = reply.send(Ok(self.shared.rooms.counts(&prefix, limit)));
                }
                Backend::Remote(remote) => {
                    let op = Op::Rooms {
                        prefix,
                        limit,
                        reply,
                    };
                    remote.submit(op).await;
                }
            }
            return;
        }
        match &self.shared.backend {
            Backend::Local => {
                // A single node relays no user between nodes (WatchUser).
                if let Some(room) = op.room() {
                    let home = home_of(room, self.shared.shards());
                    // A gone shard means shutdown; the op no longer matters.
                    let _ = self.shared.links[home].requests.send(op).await;
                }
            }
            Backend::Remote(remote) => remote.submit(op).await,
        }
    }

    /// Deliver to `shard`: directly if it is this one, else through its
    /// inbox.
    pub(crate) async fn deliver(&self, shard: usize, delivery: Delivery) {
        if shard == self.index {
            self.apply_delivery(delivery);
        } else if let Some(link) = self.shared.links.get(shard) {
            // A gone shard means shutdown.
            let _ = link.deliveries.send(delivery).await;
        }
    }
}
