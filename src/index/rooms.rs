//! The room index: every room's [`RoomMeta`] by name, with `max_rooms`,
//! the per-creator quotas and the memory budget checked on insert.
//!
//! **Invariants:** the count of rooms never passes `max_rooms` (one
//! compare-and-swap); a refused insert gives back the quota it took; a
//! room's entry is inserted and removed only by its home shard, and its
//! removal gives its creator's quota back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use papaya::HashMap;

use super::{lower_entry, new_map, raise_entry, try_raise};
use crate::config::OverflowPolicy;
use crate::error::{ErrorCode, Refusal};
use crate::memory::MemoryGuard;

/// Who made a room: it counts against the quotas of rooms made per user and
/// per connection until it goes (deleted, or expired). Rooms the API makes
/// have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creator {
    /// The user of the connection that made it.
    pub user: Arc<str>,
    /// That connection.
    pub conn: u64,
}

/// What every shard may know about a room without asking its home.
#[derive(Debug)]
pub struct RoomMeta {
    /// The shard that sequences and fans out the room.
    pub home: usize,
    /// Private: joining needs a matching `rooms` claim or `admin`.
    pub private: bool,
    /// Member cap.
    pub max_members: u32,
    /// What happens to members whose queue is full.
    pub overflow: OverflowPolicy,
    /// Made by `create` (lives until deleted) rather than by `join`.
    pub explicit: bool,
    /// Member connections (written by the home shard only).
    pub members: AtomicU32,
    /// Distinct users among the members (written by the home shard only).
    pub users: AtomicU32,
    /// Last assigned seq (written by the home shard only).
    pub seq: AtomicU64,
    /// Who made it (`None`: the API).
    pub creator: Option<Creator>,
}

/// Bounds on the rooms one user and one connection may have made and that
/// still exist (`limits.max_rooms_created_per_user`,
/// `limits.max_rooms_created_per_connection`); 0 turns one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreationCaps {
    /// Per user id.
    pub per_user: u32,
    /// Per connection.
    pub per_conn: u32,
}

/// Room name -> [`RoomMeta`], with a bound on the number of rooms, on the
/// rooms each user and connection made, and (with a memory guard) no new
/// room while the process is over its memory budget.
pub struct RoomIndex {
    map: HashMap<Arc<str>, Arc<RoomMeta>>,
    count: AtomicU64,
    max_rooms: u64,
    caps: CreationCaps,
    /// Rooms that exist, by the user and the connection that made them
    /// (entries vanish at 0, so they hold at most one per room).
    by_user: HashMap<Arc<str>, u32>,
    by_conn: HashMap<u64, u32>,
    memory: Option<Arc<MemoryGuard>>,
}

impl RoomIndex {
    /// An empty index holding at most `max_rooms` rooms, with no other
    /// bound.
    pub fn new(max_rooms: u64) -> Self {
        Self::with_caps(max_rooms, CreationCaps::default())
    }

    /// An empty index holding at most `max_rooms` rooms, and at most
    /// `caps` rooms made by one user or one connection.
    pub fn with_caps(max_rooms: u64, caps: CreationCaps) -> Self {
        RoomIndex {
            map: new_map(),
            count: AtomicU64::new(0),
            max_rooms,
            caps,
            by_user: new_map(),
            by_conn: new_map(),
            memory: None,
        }
    }

    /// Refuse new rooms while `memory` says the process is over budget.
    pub(crate) fn with_memory(mut self, memory: Arc<MemoryGuard>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// The room's metadata, if it exists.
    pub fn get(&self, room: &str) -> Option<Arc<RoomMeta>> {
        self.map.pin().get(room).cloned()
    }

    /// Whether the room exists.
    pub fn contains(&self, room: &str) -> bool {
        self.map.pin().contains_key(room)
    }

    /// Rooms in the index.
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether there are no rooms.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Insert a new room, or refuse it, checking in this order: the memory
    /// budget (`over_memory_budget`), its creator's quotas
    /// (`too_many_rooms_created`), `limits.max_rooms` (`too_many_rooms`).
    /// Each count is checked and raised in one CAS; a later refusal undoes
    /// the earlier raises. Called by the room's home shard only, which knows
    /// it is absent.
    pub fn insert(&self, room: Arc<str>, meta: Arc<RoomMeta>) -> Result<(), Refusal> {
        if let Some(memory) = self.memory.as_deref().filter(|m| m.over()) {
            memory.refused_room();
            return Err(Refusal::over_memory_budget());
        }
        if let Some(creator) = &meta.creator {
            self.take_quota(creator)?;
        }
        if !try_raise(&self.count, self.max_rooms) {
            if let Some(creator) = &meta.creator {
                self.release_quota(creator);
            }
            return Err(Refusal::new(
                ErrorCode::TooManyRooms,
                format!("the server holds its maximum of {} rooms", self.max_rooms),
            ));
        }
        self.map.pin().insert(room, meta);
        Ok(())
    }

    /// List a room another back end admitted (the cluster's), whatever the
    /// caps: counted, but not refused.
    pub(crate) fn list(&self, room: Arc<str>, meta: Arc<RoomMeta>) {
        if self.map.pin().insert(room, meta).is_none() {
            self.count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Remove a room (home shard only); its creator may make another.
    pub fn remove(&self, room: &str) {
        let map = self.map.pin();
        if let Some(meta) = map.remove(room) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            if let Some(creator) = &meta.creator {
                self.release_quota(creator);
            }
        }
    }

    /// Rooms that exist and that `user` made.
    pub fn created_by_user(&self, user: &str) -> u32 {
        self.by_user.pin().get(user).copied().unwrap_or(0)
    }

    /// Rooms that exist and that connection `conn` made.
    pub fn created_by_conn(&self, conn: u64) -> u32 {
        self.by_conn.pin().get(&conn).copied().unwrap_or(0)
    }

    fn take_quota(&self, creator: &Creator) -> Result<(), Refusal> {
        let CreationCaps { per_user, per_conn } = self.caps;
        if per_user > 0 && !raise_entry(&self.by_user, creator.user.clone(), per_user) {
            return Err(Refusal::too_many_rooms_created("user", per_user));
        }
        if per_conn > 0 && !raise_entry(&self.by_conn, creator.conn, per_conn) {
            if per_user > 0 {
                lower_entry(&self.by_user, creator.user.clone());
            }
            return Err(Refusal::too_many_rooms_created("connection", per_conn));
        }
        Ok(())
    }

    fn release_quota(&self, creator: &Creator) {
        if self.caps.per_user > 0 {
            lower_entry(&self.by_user, creator.user.clone());
        }
        if self.caps.per_conn > 0 {
            lower_entry(&self.by_conn, creator.conn);
        }
    }

    /// The counts of at most `limit` rooms with members whose names start
    /// with `prefix`.
    pub(crate) fn counts(&self, prefix: &str, limit: usize) -> Vec<crate::delivery::RoomCounts> {
        self.map
            .pin()
            .iter()
            .filter(|(k, v)| k.starts_with(prefix) && v.members.load(Ordering::Relaxed) > 0)
            .take(limit)
            .map(|(k, v)| crate::delivery::RoomCounts {
                room: k.clone(),
                members: u64::from(v.members.load(Ordering::Relaxed)),
                users: u64::from(v.users.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Names and metadata of at most `limit` rooms.
    pub fn snapshot(&self, limit: usize) -> Vec<(Arc<str>, Arc<RoomMeta>)> {
        self.map
            .pin()
            .iter()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
#[path = "rooms_tests.rs"]
mod tests;
