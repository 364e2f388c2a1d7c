//! The backplane's part of a drain: answer what is in flight, stop
//! hearing rooms, hand the shards everything heard before that, then
//! tell them this sequencer sealed and leave the cluster.
//!
//! **Invariant:** `Sealed` reaches a shard after every delivery of a
//! message this node acknowledged, so a draining shard closes its members
//! only after queuing those messages.

use std::time::Duration;

use super::{Backplane, Drain, Prepared};
use crate::delivery::Delivery;

impl Backplane {
    /// Drain, step 1: refuse new ops, fail those not sent yet; the batch in
    /// flight still finishes, so every publish acknowledged from this node
    /// was sequenced before the unsubscribe of step 2.
    pub(super) fn start_drain(&mut self) {
        self.drain = Some(Drain::Flushing);
        let ready: Vec<Prepared> = self.ready.drain(..).collect();
        for prepared in ready {
            self.fail(prepared.then);
        }
    }

    /// Drain, next steps, once `idle` (no batch in flight): unsubscribe
    /// from every channel with a `PING` behind it; when its answer comes,
    /// every message published before the unsubscribe has been handed to
    /// the shards, which are then told this sequencer sealed
    /// ([`Delivery::Sealed`]).
    /// Returns true when the drain is over.
    pub(super) async fn drain_step(&mut self, idle: bool) -> bool {
        match self.drain {
            Some(Drain::Flushing) if idle => {
                let unsubscribed = match self.sub.as_mut() {
                    Some(sub) => sub.unsubscribe(&[]).await.is_ok() && sub.ping().await.is_ok(),
                    None => false,
                };
                if unsubscribed {
                    self.drain = Some(Drain::Unsubscribing);
                    false
                } else {
                    self.finish_drain().await;
                    true
                }
            }
            Some(Drain::Heard) => {
                self.finish_drain().await;
                true
            }
            _ => false,
        }
    }

    /// Drain, last step: tell every shard this sequencer sealed (behind
    /// all it was handed), and remove this node's members from Redis.
    pub(super) async fn finish_drain(&mut self) {
        for shard in 0..self.shared.shards() {
            self.out.push(shard, Delivery::Sealed);
        }
        self.flush().await;
        self.leave_cluster().await;
    }

    /// How long the backplane's part of a drain may take: what the shards
    /// give their homes to seal (half the drain budget), less a margin.
    pub(super) fn drain_budget(&self) -> Duration {
        Duration::from_millis(self.shared.config.server.drain_timeout_ms / 3)
    }

    /// Drain: remove this node's members from Redis now rather than when
    /// its heartbeat runs out.
    async fn leave_cluster(&mut self) {
        if let Err(e) = self.remove_this_node().await {
            tracing::warn!(
                error = %e,
                "cluster: could not remove this node's members at shutdown; its heartbeat will run out"
            );
        }
    }
}
