//! The user index: each connected user's connection count and shard set,
//! for direct messages and the per-user connection cap.
//!
//! **Invariant:** an entry exists exactly while its user has a connection,
//! and its count never passes the cap (one papaya `compute`).

use std::sync::Arc;

use papaya::{Compute, HashMap, Operation};

use super::new_map;

/// A user's connections: how many, and on which shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct UserSlot {
    conns: u32,
    shards: u64,
}

/// User id -> its connections (count and shard set), for direct messages and
/// the per-user cap. Entries vanish when a user's last connection closes, so
/// the map holds at most one entry per connection.
pub struct UserIndex {
    map: HashMap<Arc<str>, UserSlot>,
}

impl Default for UserIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl UserIndex {
    /// An empty index.
    pub fn new() -> Self {
        UserIndex { map: new_map() }
    }

    /// Count a new connection of `user`, unless it has `cap` already
    /// (`cap` 0 = no cap).
    pub fn try_connect(&self, user: &Arc<str>, cap: u32) -> bool {
        let map = self.map.pin();
        let result = map.compute(user.clone(), |entry| {
            let slot = entry.map(|(_, s)| *s).unwrap_or_default();
            if cap > 0 && slot.conns >= cap {
                Operation::Abort(())
            } else {
                Operation::Insert(UserSlot {
                    conns: slot.conns + 1,
                    ..slot
                })
            }
        });
        !matches!(result, Compute::Aborted(()))
    }

    /// Forget one connection of `user`.
    pub fn disconnect(&self, user: &Arc<str>) {
        self.update(user, |s| UserSlot {
            conns: s.conns.saturating_sub(1),
            ..s
        });
    }

    /// Mark that `shard` has connections of `user`.
    pub fn attach(&self, user: &Arc<str>, shard: usize) {
        self.update(user, |s| UserSlot {
            shards: s.shards | (1 << shard),
            ..s
        });
    }

    /// Mark that `shard` has no more connections of `user`.
    pub fn detach(&self, user: &Arc<str>, shard: usize) {
        self.update(user, |s| UserSlot {
            shards: s.shards & !(1 << shard),
            ..s
        });
    }

    fn update(&self, user: &Arc<str>, f: impl Fn(UserSlot) -> UserSlot) {
        let map = self.map.pin();
        map.compute(user.clone(), |entry| match entry {
            None => Operation::Abort(()),
            Some((_, slot)) => {
                let next = f(*slot);
                if next.conns == 0 && next.shards == 0 {
                    Operation::Remove
                } else {
                    Operation::Insert(next)
                }
            }
        });
    }

    /// The shards holding connections of `user` (a bit set).
    pub fn shards(&self, user: &str) -> u64 {
        self.map.pin().get(user).map(|s| s.shards).unwrap_or(0)
    }

    /// Connections of `user`.
    pub fn connections(&self, user: &str) -> u32 {
        self.map.pin().get(user).map(|s| s.conns).unwrap_or(0)
    }

    /// Users with at least one connection.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no user is connected.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
