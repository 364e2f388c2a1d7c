//! The request pump: the driver of the rooms homed on this shard (the
//! single-node back end). It applies each op to the pure room table
//! ([`crate::room::table`]) and sends what the table decided.
//!
//! **Architecture Invariant:** only this pump touches the shard's room
//! table, one op at a time, and it sends an op's deliveries before taking
//! the next op, so every member shard sees a room's frames in `seq` order.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shard;
use crate::delivery::{Delivery, Outbox};
use crate::limits::{ROOM_SWEEP_INTERVAL_MS, SHARD_PUMP_BATCH};
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
            // written once, at its end (see `cork`).
            self.cork();
            for op in batch.drain(..) {
                let now = Now::read();
                self.homes
                    .borrow_mut()
                    .apply(&self.shared.rooms, op, now, &mut out);
                self.send_out(&mut out).await;
            }
            self.uncork();
            tokio::task::yield_now().await;
        }
    }

    /// Send what a sequencer decided, in order. Called corked: waiting for
    /// room in another shard's inbox uncorks first, so this shard's
    /// connections are not held up meanwhile.
    async fn send_out(&self, out: &mut Outbox) {
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
            if let Err(delivery) = link.deliveries.try_send(delivery) {
                self.uncork();
                // A gone shard means shutdown.
                let _ = link.deliveries.send(delivery).await;
                self.cork();
            }
        }
    }

    /// Drain: stop sequencing the rooms homed here, and tell every shard so
    /// behind the deliveries of the messages sequenced so far. Runs in the
    /// request pump, between two ops, so no message is half fanned out.
    async fn seal(&self, out: &mut Outbox) {
        self.homes.borrow_mut().seal();
        for shard in 0..self.shared.shards() {
            out.push(shard, Delivery::Sealed);
        }
        self.cork();
        self.send_out(out).await;
        self.uncork();
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
