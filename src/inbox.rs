//! Bounded inboxes between threads: the one way shards (and the cluster
//! backplane) hand each other work.
//!
//! Each shard has two inboxes, drained by two tasks of its own:
//!
//! * **requests** ([`Op`]s for the rooms homed on the shard) are sent by
//!   connection tasks and the HTTP API; a full inbox makes the sender wait,
//!   so backpressure reaches the publisher's read loop.
//! * **deliveries** ([`Delivery`]s for the shard's connections) are sent by
//!   the sequencers: home shards, or the cluster backplane.
//!
//! **Architecture Invariant:** an inbox is bounded in items and in bytes. A
//! delivery pump never waits on anything but its own inbox, so waits form a
//! chain (connection → request pump or backplane → delivery pump) with no
//! cycle, and the shards cannot deadlock however full the inboxes get. Each
//! inbox is FIFO per sender, which gives every room one total order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tokio::sync::Notify;

use crate::delivery::Delivery;
use crate::limits::{SHARD_DELIVERY_INBOX, SHARD_INBOX_BYTES, SHARD_REQUEST_INBOX};
use crate::op::Op;

/// Something that travels through an inbox, with the bytes it keeps alive.
pub(crate) trait Weighed {
    /// Bytes of payload the item holds (frames, message data).
    fn weight(&self) -> usize;
}

impl Weighed for u64 {
    fn weight(&self) -> usize {
        8
    }
}

/// One inbox, bounded in items and in bytes, and its two signals.
pub(crate) struct Inbox<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    /// Bytes held by queued items.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// A sender may be waiting for space (set before it checks for space,
    /// so a drain that empties the inbox cannot miss it).
    sender_waiting: AtomicBool,
    /// Woken when an item arrives.
    pub(crate) arrived: Notify,
    /// Woken when a drain made room.
    pub(crate) space: Notify,
}

impl<T: Weighed> Inbox<T> {
    /// An inbox of at most `capacity` items and `max_bytes` bytes (one item
    /// larger than that fits when the inbox holds no bytes).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        let (tx, rx) = bounded(capacity);
        Inbox {
            tx,
            rx,
            bytes: AtomicUsize::new(0),
            max_bytes,
            sender_waiting: AtomicBool::new(false),
            arrived: Notify::new(),
            space: Notify::new(),
        }
    }

    /// Send `item`, waiting while the inbox is full (in items or bytes).
    /// Errors only when the receiving shard has gone (shutdown); the item is
    /// then dropped.
    pub(crate) async fn send(&self, item: T) -> Result<(), ShardGone> {
        // Fast path: no waiter registration (Notify's lock) unless full.
        let mut item = match self.try_put(item)? {
            None => return Ok(()),
            Some(back) => back,
        };
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            // Say a sender waits, then look once more: a drain that ran
            // before the flag was set made room we would otherwise miss.
            self.sender_waiting.store(true, Ordering::Release);
            item = match self.try_put(item)? {
                None => return Ok(()),
                Some(back) => back,
            };
            space.await;
        }
    }

    /// Put `item` in without waiting and without waking the receiver; hand
    /// it back if the inbox is full (a gone receiver, at shutdown, drops
    /// it). The sender rings
    /// ([`Inbox::ring`]) once it has put in its batch, and before it waits
    /// for anything, so one wake-up carries many items.
    pub(crate) fn try_send_quiet(&self, item: T) -> Result<(), T> {
        match self.try_put_quiet(item) {
            Ok(None) | Err(ShardGone) => Ok(()),
            Ok(Some(back)) => Err(back),
        }
    }

    /// Wake the receiver for what was put in quietly.
    pub(crate) fn ring(&self) {
        self.arrived.notify_one();
    }

    /// Put `item` in if it fits (waking the receiver); hand it back if not.
    fn try_put(&self, item: T) -> Result<Option<T>, ShardGone> {
        let put = self.try_put_quiet(item);
        if matches!(put, Ok(None)) {
            self.arrived.notify_one();
        }
        put
    }

    /// Put `item` in if it fits; hand it back if not.
    fn try_put_quiet(&self, item: T) -> Result<Option<T>, ShardGone> {
        let weight = item.weight();
        let before = self.bytes.fetch_add(weight, Ordering::AcqRel);
        if before > 0 && before + weight > self.max_bytes {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            return Ok(Some(item));
        }
        match self.tx.try_send(item) {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(back)) => {
                self.bytes.fetch_sub(weight, Ordering::AcqRel);
                Ok(Some(back))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.bytes.fetch_sub(weight, Ordering::AcqRel);
                Err(ShardGone)
            }
        }
    }

    /// Take up to `max` items into `out`, waking senders waiting for space.
    /// Returns how many were taken.
    pub(crate) fn drain(&self, out: &mut Vec<T>, max: usize) -> usize {
        let before = out.len();
        let mut freed = 0;
        while out.len() - before < max {
            match self.rx.try_recv() {
                Ok(item) => {
                    freed += item.weight();
                    out.push(item);
                }
                Err(_) => break,
            }
        }
        if freed > 0 {
            self.bytes.fetch_sub(freed, Ordering::AcqRel);
        }
        let taken = out.len() - before;
        if taken > 0 && self.sender_waiting.swap(false, Ordering::AcqRel) {
            self.space.notify_waiters();
        }
        taken
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    /// Bytes held by waiting items.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// The receiving shard has shut down.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the target shard has shut down")]
pub(crate) struct ShardGone;

/// The inboxes of one shard.
pub(crate) struct ShardLink {
    /// Operations on rooms homed on the shard.
    pub(crate) requests: Inbox<Op>,
    /// Deliveries to connections on the shard.
    pub(crate) deliveries: Inbox<Delivery>,
}

impl ShardLink {
    /// A link with the standard inbox bounds.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ShardLink {
            requests: Inbox::new(SHARD_REQUEST_INBOX, SHARD_INBOX_BYTES),
            deliveries: Inbox::new(SHARD_DELIVERY_INBOX, SHARD_INBOX_BYTES),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_backpressure_waits_for_space() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let inbox = Arc::new(Inbox::<u64>::new(2, 1 << 20));
            inbox.send(1).await.expect("send");
            inbox.send(2).await.expect("send");
            let sender = {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.send(3).await })
            };
            tokio::task::yield_now().await;
            assert!(!sender.is_finished());
            let mut out = Vec::new();
            assert_eq!(inbox.drain(&mut out, 10), 2);
            sender.await.expect("join").expect("sent");
            inbox.drain(&mut out, 10);
            assert_eq!(out, vec![1, 2, 3]);
        });
    }

    #[test]
    fn a_quiet_send_wakes_nobody_until_the_ring() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let inbox = Arc::new(Inbox::<u64>::new(2, 1 << 20));
            let arrived = inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            inbox.try_send_quiet(1).expect("room for it");
            inbox.try_send_quiet(2).expect("room for it");
            assert_eq!(inbox.try_send_quiet(3), Err(3), "full: handed back");
            let quiet = tokio::time::timeout(std::time::Duration::from_millis(20), &mut arrived);
            assert!(quiet.await.is_err(), "no wake-up yet");
            inbox.ring();
            arrived.await;
            let mut out = Vec::new();
            assert_eq!(inbox.drain(&mut out, 10), 2);
        });
    }

    #[test]
    fn inbox_is_bounded_in_bytes_too() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Room for 100 items but only 16 bytes: two u64s.
            let inbox = Arc::new(Inbox::<u64>::new(100, 16));
            inbox.send(1).await.expect("send");
            inbox.send(2).await.expect("send");
            assert_eq!(inbox.bytes(), 16);
            let sender = {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.send(3).await })
            };
            tokio::task::yield_now().await;
            assert!(!sender.is_finished());
            let mut out = Vec::new();
            inbox.drain(&mut out, 1);
            sender.await.expect("join").expect("sent");
            assert_eq!(inbox.bytes(), 16);
        });
    }
}
