//! The one route of an operation, and how deliveries reach shards.
//!
//! **Architecture Invariant:** [`Shard::route`] is the only way a front
//! door's op reaches a back end: room ops go to the room's home shard
//! (single node) or to the remote sequencer (cluster), frames for users go
//! to this node's shards holding them (and to the other nodes through the
//! remote sequencer). Nothing else in `shard` knows which back end runs.
//!
//! **Invariant:** a publish passes its namespace's publish rules here, on
//! the publisher's shard and before any back end (`client_publish`, then
//! the message schema: [`crate::schema::admit_publish`]), whichever front
//! door made it. So every front door gets them, a refused publish is never
//! sequenced, and the schema's cost is spread over the publishers' shards
//! rather than paid by a room's one sequencer.

use crate::backend::Backend;
use crate::delivery::Delivery;
use crate::op::{Audience, Op, Reply};
use crate::placement::{ShardSet, home_of, shard_of};
use crate::schema::admit_publish;

use super::Shard;

impl Shard {
    /// Hand `op` from a front door on this shard to whoever runs it,
    /// waiting while the way there is full (backpressure reaches the
    /// caller's read loop).
    pub(crate) async fn route(&self, op: Op) {
        if let Op::Publish(publish) = &op {
            if let Err(refusal) =
                admit_publish(&self.shared.namespaces, &self.shared.schemas, publish)
            {
                if let Op::Publish(publish) = op {
                    self.refuse(publish.reply, refusal).await;
                }
                return;
            }
        }
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

    /// Answer `reply` with `refusal` here, without a back end.
    async fn refuse<T>(&self, reply: Reply<T>, refusal: crate::error::Refusal) {
        match reply {
            Reply::Conn(origin) => {
                let answer = Delivery::Answer {
                    conn: origin.conn,
                    id: origin.id,
                    answer: Err(refusal),
                };
                let shard = shard_of(origin.conn, self.shared.shards());
                self.deliver(shard, answer).await;
            }
            Reply::Api(tx) => {
                // The API request may have timed out and gone.
                let _ = tx.send(Err(refusal));
            }
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
