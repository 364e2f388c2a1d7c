//! A shard's part of a drain: wait until every sequencer that delivers to
//! it has sealed, then close its connections with 1001.
//!
//! **Invariant:** a connection's close frame is queued only after every
//! sequencer's `Sealed` arrived (or the seal deadline passed), so each
//! message acknowledged anywhere was queued to this shard's members first:
//! nothing acknowledged is lost to the drain.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shard;
use super::conn::Conn;
use crate::error::close;

/// Most of the drain timeout kept back for tearing a shard down.
const DRAIN_TEARDOWN_MARGIN_MS: u64 = 250;

/// How long a shard drains: the drain timeout less a margin for tearing the
/// shard down, so the process exits within `server.drain_timeout_ms`.
pub(super) fn budget(drain_timeout_ms: u64) -> Duration {
    let margin = (drain_timeout_ms / 10).clamp(1, DRAIN_TEARDOWN_MARGIN_MS);
    Duration::from_millis(drain_timeout_ms - margin)
}

impl Shard {
    /// Every sequencer that delivers here: the home shards, and the remote
    /// one in cluster mode.
    fn sequencers(&self) -> usize {
        self.shared.shards() + self.shared.backend.remote_sequencers()
    }

    /// Close every connection with 1001 and wait (bounded by the caller)
    /// until they are gone. Waits first, until `seal_deadline` at most, for
    /// every sequencer to seal.
    pub(super) async fn drain_connections(&self, seal_deadline: Instant) {
        let all_sealed = async {
            while self.seals.get() < self.sequencers() {
                self.seals_signal.wait().await;
            }
        };
        if tokio::time::timeout_at(seal_deadline, all_sealed)
            .await
            .is_err()
        {
            tracing::warn!(
                shard = self.index,
                "drain: not every sequencer sealed its rooms in time"
            );
        }
        let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        for c in conns {
            c.close_with(close::GOING_AWAY, "server shutting down", false);
        }
        while self.connection_count() > 0 {
            self.conn_closed.wait().await;
        }
    }
}
