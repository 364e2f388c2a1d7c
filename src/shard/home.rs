//! The request pump: the driver of the rooms homed on this shard (the
//! single-node back end). It applies each op to the pure room table
//! ([`crate::room::table`]) and sends what the table decided.
//!
//! **Architecture Invariant:** only this pump touches the shard's room
//! table, one op at a time, and it sends an op's deliveries before taking
//! the next op, so every member shard sees a room's frames in `seq` order.
//! It wakes each shard it sent deliveries to once per batch of ops, and
//! before it waits for anything (so no shard sleeps on deliveries it was
//! not told of).

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shard;
use crate::delivery::{Delivery, Outbox};
use crate::limits::{ROOM_SWEEP_INTERVAL_MS, SHARD_PUMP_BATCH};
use crate::placement::ShardSet;
use crate::room::table::Now;

impl Shard {
    /// Drain the request inbox forever.
    pub(super) async fn request_pump(self: Rc<Self>) {
        let mut batch = Vec::with_capacity(SHARD_PUMP_BATCH);
        let mut out = Outbox::new(self.shared.shards());
        let mut shutdown = self.shared.shutdown_signal();
        loop {
            if self.shared.is_draining() && !self.homes.borrow().is_sealed() {
                self.seal(&mut out).await;
            }
            if self.link().requests.drain(&mut batch, SHARD_PUMP_BATCH) == 0 {
                let sealed = self.homes.borrow().is_sealed();
                tokio::select! {
                    _ = self.link().requests.arrived.notified() => {}
                    // Drain: wake up to seal.
                    _ = shutdown.wait_for(|draining| *draining), if !sealed => {}
                }
                continue;
            }
            // The batch's deliveries to this shard's connections are
            // written once, at its end (see `cork`), and each other shard
            // is woken once for its part.
            let mut rung = ShardSet::default();
            self.cork();
            for op in batch.drain(..) {
                let now = Now::read();
                self.homes
                    .borrow_mut()
                    .apply(&self.shared.rooms, op, now, &mut out);
                self.send_out(&mut out, &mut rung).await;
            }
            self.end_batch(&mut rung);
            tokio::task::yield_now().await;
        }
    }

    /// Send what a sequencer decided, in order, within a batch: corked, and
    /// other shards' inboxes filled without waking them (`rung` lists
    /// them, for [`Shard::end_batch`]). Waiting for room in an inbox ends
    /// the batch first, so no shard waits on one this pump has not woken
    /// and this shard's connections are not held up meanwhile.
    async fn send_out(&self, out: &mut Outbox, rung: &mut ShardSet) {
        for observed in out.take_observed() {
            self.shared.observer.report(observed);
        }
        for (shard, delivery) in out.drain() {
            if shard == self.index {
                self.apply_delivery(delivery);
                continue;
            }
            let Some(link) = self.shared.links.get(shard) else {
                continue;
            };
            match link.deliveries.try_send_quiet(delivery) {
                Ok(()) => rung.insert(shard),
                Err(delivery) => {
                    self.end_batch(rung);
                    // A gone shard means shutdown.
                    let _ = link.deliveries.send(delivery).await;
                    self.cork();
                }
            }
        }
    }

    /// End a batch: wake the other shards it put deliveries in, then write
    /// what it queued for this shard's connections.
    fn end_batch(&self, rung: &mut ShardSet) {
        for shard in std::mem::take(rung).iter() {
            if let Some(link) = self.shared.links.get(shard) {
                link.deliveries.ring();
            }
        }
        self.uncork();
    }

    /// Drain: stop sequencing the rooms homed here, and tell every shard so
    /// behind the deliveries of the messages sequenced so far. Runs in the
    /// request pump, between two ops, so no message is half fanned out.
    async fn seal(&self, out: &mut Outbox) {
        self.homes.borrow_mut().seal();
        for shard in 0..self.shared.shards() {
            out.push(shard, Delivery::Sealed);
        }
        let mut rung = ShardSet::default();
        self.cork();
        self.send_out(out, &mut rung).await;
        self.end_batch(&mut rung);
    }

    /// Remove auto-created rooms that stayed empty for `room.empty_ttl_ms`.
    pub(super) async fn room_sweeper(self: Rc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(ROOM_SWEEP_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.homes
                .borrow_mut()
                .expire(&self.shared.rooms, Instant::now());
        }
    }
}
