//! The shared, lock-free indexes: rooms, users and connection caps.
//!
//! These are the only state shards share (besides their inboxes).
//! **Architecture Invariant:** every check-and-update here is one atomic
//! compare-and-swap (directly, or through papaya's `compute`), so concurrent
//! connects can never overshoot a cap; no `Mutex` or `RwLock` is taken.
//! A room's entry is inserted and removed only by its home shard.
//!
//! * [`rooms`]: [`RoomIndex`], rooms by name, with their caps and quotas.
//! * [`users`]: [`UserIndex`], connected users and their shards.
//! * [`conns`]: [`ConnCaps`], connection and handshake caps.

mod conns;
mod rooms;
mod users;

pub use conns::ConnCaps;
pub use rooms::{CreationCaps, Creator, RoomIndex, RoomMeta};
pub use users::UserIndex;

use std::sync::atomic::{AtomicU64, Ordering};

use papaya::{Compute, HashMap, Operation, ResizeMode};

/// A papaya map with blocking resizes. papaya 0.2.5's default (incremental)
/// resize is only helped along by `insert`/`remove`, never by `compute`; a
/// map changed only through `compute` (users, per-IP counts) kept a growing
/// chain of unfinished tables, so every connect got slower and memory grew
/// without bound (seen in `benches/hot_path.rs`, index/*). With blocking
/// resizes a writer that meets a resize finishes it first; reads stay
/// lock-free.
fn new_map<K: std::hash::Hash + Eq, V>() -> HashMap<K, V> {
    HashMap::builder().resize_mode(ResizeMode::Blocking).build()
}

/// Raise the count of `key` by one unless it is at `cap`.
fn raise_entry<K: std::hash::Hash + Eq>(map: &HashMap<K, u32>, key: K, cap: u32) -> bool {
    let map = map.pin();
    let result = map.compute(key, |entry| match entry {
        Some((_, n)) if *n >= cap => Operation::Abort(()),
        Some((_, n)) => Operation::Insert(n + 1),
        None => Operation::Insert(1),
    });
    !matches!(result, Compute::Aborted(()))
}

/// Lower the count of `key` by one; the entry goes at 0.
fn lower_entry<K: std::hash::Hash + Eq>(map: &HashMap<K, u32>, key: K) {
    map.pin().compute(key, |entry| match entry {
        Some((_, n)) if *n > 1 => Operation::Insert(n - 1),
        Some(_) => Operation::Remove,
        None => Operation::Abort(()),
    });
}

/// Raise `counter` by one unless it is at `cap`.
fn try_raise(counter: &AtomicU64, cap: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests;
