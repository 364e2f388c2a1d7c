//! The seam between the front doors and whoever sequences rooms.
//!
//! A front door produces an [`Op`] and hands it to
//! [`crate::shard::Shard::route`], the one route. Behind the route is one of
//! two back ends:
//!
//! * [`Backend::Local`]: each room's home shard sequences it (the pure room
//!   table, [`crate::room::table`], driven by the shard's request pump).
//! * [`Backend::Remote`]: a sequencer outside the shards takes every room op
//!   through a bounded queue — the Redis backplane of cluster mode
//!   ([`crate::cluster`]), which orders rooms across nodes
//!   ([`crate::room::order`]).
//!
//! Either way the answers and room frames come back as
//! [`crate::delivery::Delivery`]s to the shards that hold the recipients.
//!
//! **Architecture Invariant:** this module and everything below it
//! (ops, deliveries, inboxes, room cores) know neither shards' internals
//! nor Redis; shards and the cluster code both depend on it, never on each
//! other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::ErrorCode;
use crate::op::Op;

/// Who sequences rooms.
pub(crate) enum Backend {
    /// Each room's home shard.
    Local,
    /// A sequencer outside the shards (cluster mode); boxed, it holds
    /// its counters.
    Remote(Box<Remote>),
}

impl Backend {
    /// How many sequencers besides the home shards deliver to every shard;
    /// a draining shard waits for each one's [`crate::delivery::Delivery::Sealed`].
    pub(crate) fn remote_sequencers(&self) -> usize {
        match self {
            Backend::Local => 0,
            Backend::Remote(_) => 1,
        }
    }

    /// The remote sequencer's counters, if there is one.
    pub(crate) fn remote_counters(&self) -> Option<&RemoteCounters> {
        match self {
            Backend::Local => None,
            Backend::Remote(remote) => Some(&remote.counters),
        }
    }
}

/// The handle of a remote sequencer: its bounded op queue and counters.
pub(crate) struct Remote {
    ops: mpsc::Sender<Op>,
    /// Longest wait for room in the queue of an op a client waits for
    /// ([`Remote::submit_within`]).
    wait: Duration,
    /// What the sequencer did, for `/metrics` (written by its thread only).
    pub(crate) counters: RemoteCounters,
}

impl Remote {
    /// A handle and the receiving end of its queue of `capacity` ops; an
    /// op a client waits for waits at most `wait` for room in it.
    pub(crate) fn channel(capacity: usize, wait: Duration) -> (Remote, mpsc::Receiver<Op>) {
        let (ops, rx) = mpsc::channel(capacity.max(1));
        let remote = Remote {
            ops,
            wait,
            counters: RemoteCounters::default(),
        };
        (remote, rx)
    }

    /// Hand `op` to the sequencer, waiting while its queue is full (the
    /// backpressure reaches the caller's read loop).
    pub(crate) async fn submit(&self, op: Op) {
        // The sequencer runs until the process exits.
        let _ = self.ops.send(op).await;
    }

    /// [`Remote::submit`], waiting at most the handle's bound for room in
    /// the queue; hands `op` back if there was none by then.
    pub(crate) async fn submit_within(&self, op: Op) -> Result<(), Op> {
        match tokio::time::timeout(self.wait, self.ops.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(op);
                Ok(())
            }
            // The sequencer ends only with the process.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(op),
        }
    }

    /// Hand `op` to the sequencer without waiting; hand it back if its
    /// queue is full.
    pub(crate) fn try_submit(&self, op: Op) -> Result<(), Op> {
        match self.ops.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(op)) => Err(op),
            // The sequencer ends only with the process.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }
}

/// Counters of a remote sequencer.
#[derive(Debug, Default)]
pub(crate) struct RemoteCounters {
    /// Room messages it sequenced for this node's publishers.
    pub(crate) published: AtomicU64,
    /// Operations it refused, by [`ErrorCode::index`].
    pub(crate) refusals: [AtomicU64; ErrorCode::ALL.len()],
    /// Ranges of messages lost between it and this node (`gap` sent).
    pub(crate) gaps: AtomicU64,
    /// Holes in a room's messages filled from its history.
    pub(crate) repairs: AtomicU64,
    /// Bytes of catch-up messages it keeps (a gauge).
    pub(crate) catchup_bytes: AtomicU64,
    /// Catch-up messages it forgot for `limits.max_history_bytes_total`.
    pub(crate) catchup_trimmed: AtomicU64,
    /// 1 while its command connection to Redis is up.
    pub(crate) commands_up: AtomicU64,
    /// 1 while its subscriber connection to Redis is up.
    pub(crate) subscriber_up: AtomicU64,
    /// Times the command connection came back after a loss.
    pub(crate) commands_reconnects: AtomicU64,
    /// Times the subscriber connection came back after a loss.
    pub(crate) subscriber_reconnects: AtomicU64,
}

impl RemoteCounters {
    /// Count a refusal.
    pub(crate) fn refused(&self, code: ErrorCode) {
        if let Some(c) = self.refusals.get(code.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count `counter` once.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
