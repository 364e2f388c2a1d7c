//! The one route of an operation, and how deliveries reach shards.
//!
//! **Architecture Invariant:** [`Shard::route`] (and [`Shard::route_boxed`],
//! which waits only when the way is full) is the only way a front door's op reaches a back
//! end: room ops go to the room's home shard (single node) or to the
//! remote sequencer (cluster), frames for users go to this node's shards
//! holding them (and to the other nodes through the remote sequencer).
//! Nothing else in `shard` knows which back end runs.
//!
//! **Invariant:** a publish passes its namespace's publish rules here, on
//! the publisher's shard and before any back end (`client_publish`, then
//! the message schema: [`crate::schema::admit_publish`]), whichever front
//! door made it and whichever entry it took. So every front door gets them,
//! a refused publish is never sequenced, and the schema's cost is spread
//! over the publishers' shards rather than paid by a room's one sequencer.
//! A front door routes on the shard of the connection that asked, so a
//! refusal is answered here.
//!
//! **Invariant:** an op a reader put in a home's inbox without waking it
//! ([`Shard::route_or_wait`]) is rung ([`Shard::ring_requests`]) before
//! that reader awaits anything, so no request pump sleeps on an op while
//! its sender waits.

use crate::backend::Backend;
use crate::delivery::{Delivery, Outbox};
use crate::error::Refusal;
use crate::op::{Audience, Op};
use crate::placement::{ShardSet, home_of};
use crate::schema::admit_publish;

use super::Shard;

/// Work a connection's reader must wait for before it reads on (an op
/// waiting for room on its way), boxed so that the reader's future, which
/// every idle connection keeps, does not carry its state.
pub(crate) type Waiting<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

impl Shard {
    /// Hand `op` from a front door on this shard to whoever runs it,
    /// waiting while the way there is full (backpressure reaches the
    /// caller's read loop).
    pub(crate) async fn route(&self, op: Op) {
        if let Some(op) = self.admit(op) {
            self.route_admitted(op).await;
        }
    }

    /// [`Shard::route`] of an op that passed [`Shard::admit`].
    async fn route_admitted(&self, op: Op) {
        if let Op::ToUsers {
            audience,
            frame,
            counted,
        } = op
        {
            // Every node delivers to its own connections. (A backplane that
            // takes no op in time does not hold up this node's delivery.)
            if let Backend::Remote(remote) = &self.shared.backend {
                let relay = Op::ToUsers {
                    audience: audience.clone(),
                    frame: frame.clone(),
                    counted: None,
                };
                let _ = remote.submit_within(relay).await;
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
        let op = match op {
            // The index holds every room of a single node; a cluster's
            // rooms are listed by the remote sequencer, like any op a
            // client waits for.
            Op::Rooms {
                prefix,
                limit,
                reply,
            } if matches!(self.shared.backend, Backend::Local) => {
                let _ = reply.send(Ok(self.shared.rooms.counts(&prefix, limit)));
                return;
            }
            op => op,
        };
        match &self.shared.backend {
            Backend::Local => {
                // A single node relays no user between nodes (WatchUser).
                if let Some(room) = op.room() {
                    let home = home_of(room, self.shared.shards());
                    // A gone shard means shutdown; the op no longer matters.
                    let _ = self.shared.links[home].requests.send(op).await;
                }
            }
            Backend::Remote(remote) if op.client_waits() => {
                if let Err(op) = remote.submit_within(op).await {
                    self.refuse_here(op, Refusal::unavailable());
                }
            }
            Backend::Remote(remote) => remote.submit(op).await,
        }
    }

    /// Answer `op`, from a front door of this shard, with `refusal` here, as
    /// its back end would have.
    fn refuse_here(&self, op: Op, refusal: Refusal) {
        let mut out = Outbox::new(self.shared.shards());
        out.refuse_op(op, refusal);
        for (shard, delivery) in out.drain() {
            // Its connection is on this shard (the front door's).
            debug_assert_eq!(shard, self.index);
            self.apply_delivery(delivery);
        }
    }

    /// [`Shard::route`] without waiting, of an op that passed
    /// [`Shard::admit`]: a room op goes into its home's inbox (or the remote
    /// sequencer's queue) if there is room. Hands the op back when the way
    /// is full, and for frames for users (which may go to several shards).
    /// Private, so that no front door skips [`Shard::admit`].
    ///
    /// A home's inbox is filled quietly: its pump is woken by
    /// [`Shard::ring_requests`], once for all the ops a reader's burst put
    /// there, so that the pump takes them as one batch (and its deliveries
    /// leave in one write per member) instead of waking for the first.
    fn try_route(&self, op: Op) -> Result<(), Op> {
        if matches!(op, Op::ToUsers { .. }) {
            return Err(op);
        }
        match &self.shared.backend {
            Backend::Local => match op.room() {
                Some(room) => {
                    let home = home_of(room, self.shared.shards());
                    self.shared.links[home].requests.try_send_quiet(op)?;
                    let mut unrung = self.unrung_requests.get();
                    unrung.insert(home);
                    self.unrung_requests.set(unrung);
                    Ok(())
                }
                None => Ok(()),
            },
            Backend::Remote(remote) => remote.try_submit(op),
        }
    }

    /// Wake the request pumps that [`Shard::route_or_wait`] put ops in
    /// quietly. A reader calls it before it yields (before it awaits
    /// anything), so no pump sleeps on ops it was not told of.
    pub(crate) fn ring_requests(&self) {
        let unrung = self.unrung_requests.take();
        for home in unrung.iter() {
            if let Some(link) = self.shared.links.get(home) {
                link.requests.ring();
            }
        }
    }

    /// [`Shard::route`], without waiting when the way has room, and else
    /// waiting in a box: for callers that keep a future per connection (a
    /// connection's reader and teardown), so the wait's state is not
    /// carried while idle.
    pub(crate) async fn route_boxed(&self, op: Op) {
        let wait = self.route_or_wait(op);
        self.ring_requests();
        if let Some(wait) = wait {
            wait.await;
        }
    }

    /// [`Shard::route`] without waiting when the way has room (`None`:
    /// the op is on its way); else the wait, boxed, for the caller to
    /// await. The caller's future then carries one pointer, not the wait's
    /// state. For a connection's reader only: the op may wait, unrung, for
    /// the reader's [`Shard::ring_requests`], which the reader calls before
    /// it awaits the wait handed back (or anything else).
    pub(crate) fn route_or_wait(&self, op: Op) -> Option<Waiting<'_>> {
        let op = self.admit(op)?;
        match self.try_route(op) {
            Ok(()) => None,
            Err(op) => Some(Box::pin(self.route_admitted(op))),
        }
    }

    /// The namespace's publish rules of a publish (other ops pass): the op
    /// if it may go on to a back end; `None` once a refused one is
    /// answered here.
    fn admit(&self, op: Op) -> Option<Op> {
        let Op::Publish(publish) = &op else {
            return Some(op);
        };
        let Err(refusal) = admit_publish(&self.shared.namespaces, &self.shared.schemas, publish)
        else {
            return Some(op);
        };
        // The asking connection lives on this shard (see the module docs).
        self.refuse_here(op, refusal);
        None
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
