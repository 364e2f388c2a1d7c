//! Room changes a back end reports to whoever watches them (the Pusher
//! endpoint's webhooks): a room became occupied or vacated, a user came or
//! went.
//!
//! The back end that saw a change reports it, once: a home shard on a
//! single node, and in a cluster the node whose Redis script made the
//! change (so a change is reported once per cluster, not once per node).
//! The room cores put changes into their [`crate::delivery::Outbox`]; the
//! drivers hand them to the [`Observer`], which keeps those of the rooms
//! it watches.
//!
//! **Invariant:** reporting never waits: the queue is bounded
//! ([`crate::config::PusherConfig::webhook_queue`]) and a change that does
//! not fit is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// What happened to a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomChange {
    /// Its first member joined.
    Occupied,
    /// Its last member left (or it was deleted with members).
    Vacated,
    /// The first connection of this user joined.
    UserAdded(Arc<str>),
    /// The last connection of this user left.
    UserRemoved(Arc<str>),
}

/// A change of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The room.
    pub(crate) room: Arc<str>,
    /// What happened.
    pub(crate) change: RoomChange,
}

/// Where reported changes go: the rooms whose names start with one of
/// `prefixes`, into a bounded queue.
#[derive(Debug)]
pub(crate) struct Observer {
    prefixes: Vec<String>,
    tx: Option<Sender<Observed>>,
    dropped: AtomicU64,
}

impl Observer {
    /// An observer that watches nothing.
    pub(crate) fn none() -> Self {
        Observer {
            prefixes: Vec::new(),
            tx: None,
            dropped: AtomicU64::new(0),
        }
    }

    /// An observer of the rooms starting with any of `prefixes`, and the
    /// receiving end of its queue of `capacity` changes.
    pub(crate) fn new(prefixes: Vec<String>, capacity: usize) -> (Self, Receiver<Observed>) {
        let (tx, rx) = bounded(capacity.max(1));
        let observer = Observer {
            prefixes,
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        };
        (observer, rx)
    }

    /// Whether changes of `room` are watched.
    pub(crate) fn watches(&self, room: &str) -> bool {
        self.tx.is_some() && self.prefixes.iter().any(|p| room.starts_with(p.as_str()))
    }

    /// Report `observed` if its room is watched; never waits.
    pub(crate) fn report(&self, observed: Observed) {
        if !self.watches(&observed.room) {
            return;
        }
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                tx.try_send(observed)
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Changes dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_watched_rooms_and_counts_what_does_not_fit() {
        let (observer, rx) = Observer::new(vec!["#1#".into()], 1);
        let room = |r: &str| Arc::<str>::from(r);
        observer.report(Observed {
            room: room("lobby"),
            change: RoomChange::Occupied,
        });
        observer.report(Observed {
            room: room("#1#a"),
            change: RoomChange::Occupied,
        });
        observer.report(Observed {
            room: room("#1#b"),
            change: RoomChange::Vacated,
        });
        assert_eq!(rx.try_recv().map(|o| o.room), Ok(room("#1#a")));
        assert!(rx.try_recv().is_err());
        assert_eq!(observer.dropped(), 1);
        assert!(!Observer::none().watches("#1#a"));
    }
}
