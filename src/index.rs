//! The shared, lock-free indexes: rooms, users and connection caps.
//!
//! These are the only state shards share (besides their inboxes).
//! **Architecture Invariant:** every check-and-update here is one atomic
//! compare-and-swap (directly, or through papaya's `compute`), so concurrent
//! connects can never overshoot a cap; no `Mutex` or `RwLock` is taken.
//! A room's entry is inserted and removed only by its home shard.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use papaya::{Compute, HashMap, Operation, ResizeMode};

use crate::config::OverflowPolicy;
use crate::error::{ErrorCode, Refusal};
use crate::memory::MemoryGuard;

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

/// Connection caps: global, per shard, per IP. (Per user: [`UserIndex`].)
pub struct ConnCaps {
    total: AtomicU64,
    max_total: u64,
    per_shard: Box<[AtomicU64]>,
    max_per_shard: u64,
    per_ip: HashMap<IpAddr, u32>,
    max_per_ip: u32,
    /// TLS handshakes in flight (not yet upgraded connections).
    handshakes: AtomicU64,
    per_ip_handshakes: HashMap<IpAddr, u32>,
}

impl ConnCaps {
    /// Caps for `shards` shards. 0 turns the per-shard and per-IP caps off.
    pub fn new(shards: usize, max_total: u64, max_per_shard: u64, max_per_ip: u32) -> Self {
        ConnCaps {
            total: AtomicU64::new(0),
            max_total,
            per_shard: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            max_per_shard,
            per_ip: new_map(),
            max_per_ip,
            handshakes: AtomicU64::new(0),
            per_ip_handshakes: new_map(),
        }
    }

    /// TLS handshakes in flight now.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Count a TLS handshake from `ip`, or refuse it: open connections plus
    /// handshakes in flight stay within the global cap, and within the
    /// per-IP cap for `ip`. Refused before rustls allocates anything for
    /// it. (The two counters are read apart, so concurrent accepts may
    /// pass the sum by at most one per shard; the connection caps
    /// themselves are enforced exactly by [`ConnCaps::try_acquire`].)
    pub fn try_handshake(&self, ip: IpAddr) -> Result<(), Refusal> {
        let open = self.total.load(Ordering::Acquire);
        let max = self.max_total;
        if self
            .handshakes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h.saturating_add(open) < max).then_some(h + 1)
            })
            .is_err()
        {
            return Err(Refusal::new(
                ErrorCode::ServerFull,
                format!("the server holds its maximum of {max} connections and TLS handshakes"),
            ));
        }
        if self.max_per_ip > 0 {
            let cap = self.max_per_ip;
            let open = self.per_ip.pin().get(&ip).copied().unwrap_or(0);
            let map = self.per_ip_handshakes.pin();
            let result = map.compute(ip, |entry| match entry {
                Some((_, n)) if n.saturating_add(open) >= cap => Operation::Abort(()),
                Some((_, n)) => Operation::Insert(n + 1),
                None if open >= cap => Operation::Abort(()),
                None => Operation::Insert(1),
            });
            if matches!(result, Compute::Aborted(())) {
                self.handshakes.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::new(
                    ErrorCode::TooManyConnections,
                    format!("{ip} holds its maximum of {cap} connections and TLS handshakes"),
                ));
            }
        }
        Ok(())
    }

    /// Undo one [`ConnCaps::try_handshake`].
    pub fn end_handshake(&self, ip: IpAddr) {
        self.handshakes.fetch_sub(1, Ordering::AcqRel);
        if self.max_per_ip > 0 {
            self.per_ip_handshakes
                .pin()
                .compute(ip, |entry| match entry {
                    Some((_, n)) if *n > 1 => Operation::Insert(n - 1),
                    Some(_) => Operation::Remove,
                    None => Operation::Abort(()),
                });
        }
    }

    /// Connections open now.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections open now on `shard`.
    pub fn on_shard(&self, shard: usize) -> u64 {
        self.per_shard
            .get(shard)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Count a connection from `ip` on `shard`, or refuse it. Each counter is
    /// checked and raised in one CAS; a later refusal undoes earlier raises.
    pub fn try_acquire(&self, shard: usize, ip: IpAddr) -> Result<(), Refusal> {
        if !try_raise(&self.total, self.max_total) {
            return Err(Refusal::new(
                ErrorCode::ServerFull,
                format!(
                    "the server holds its maximum of {} connections",
                    self.max_total
                ),
            ));
        }
        let shard_cap = if self.max_per_shard == 0 {
            u64::MAX
        } else {
            self.max_per_shard
        };
        if !try_raise(&self.per_shard[shard], shard_cap) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::new(
                ErrorCode::ServerFull,
                format!("shard {shard} holds its maximum of {shard_cap} connections"),
            ));
        }
        if self.max_per_ip > 0 {
            let cap = self.max_per_ip;
            if !raise_entry(&self.per_ip, ip, cap) {
                self.per_shard[shard].fetch_sub(1, Ordering::AcqRel);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::new(
                    ErrorCode::TooManyConnections,
                    format!("{ip} holds its maximum of {cap} connections"),
                ));
            }
        }
        Ok(())
    }

    /// Undo one [`ConnCaps::try_acquire`].
    pub fn release(&self, shard: usize, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.per_shard[shard].fetch_sub(1, Ordering::AcqRel);
        if self.max_per_ip > 0 {
            lower_entry(&self.per_ip, ip);
        }
    }
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
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn caps_never_overshoot_under_threads() {
        let caps = Arc::new(ConnCaps::new(2, 50, 0, 0));
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let caps = caps.clone();
                let admitted = &admitted;
                s.spawn(move || {
                    for _ in 0..100 {
                        if caps
                            .try_acquire(t % 2, IpAddr::V4(Ipv4Addr::LOCALHOST))
                            .is_ok()
                        {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 50);
        assert_eq!(caps.total(), 50);
    }

    #[test]
    fn per_ip_cap_and_release() {
        let caps = ConnCaps::new(1, 100, 0, 2);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert!(caps.try_acquire(0, a).is_ok());
        assert!(caps.try_acquire(0, a).is_ok());
        let err = caps.try_acquire(0, a).expect_err("cap");
        assert_eq!(err.code, ErrorCode::TooManyConnections);
        assert!(caps.try_acquire(0, b).is_ok());
        caps.release(0, a);
        assert!(caps.try_acquire(0, a).is_ok());
        assert_eq!(caps.total(), 3);
    }

    #[test]
    fn handshakes_count_with_open_connections() {
        let caps = ConnCaps::new(1, 3, 0, 2);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert!(caps.try_acquire(0, a).is_ok());
        assert!(caps.try_handshake(a).is_ok());
        // a: one open + one handshake = its cap of 2.
        assert_eq!(
            caps.try_handshake(a).expect_err("ip").code,
            ErrorCode::TooManyConnections
        );
        assert!(caps.try_handshake(b).is_ok());
        // 1 open + 2 handshakes = the global cap of 3.
        assert_eq!(
            caps.try_handshake(b).expect_err("global").code,
            ErrorCode::ServerFull
        );
        caps.end_handshake(a);
        caps.end_handshake(b);
        assert_eq!(caps.handshakes(), 0);
        assert!(caps.try_handshake(a).is_ok());
    }

    #[test]
    fn shard_cap() {
        let caps = ConnCaps::new(2, 100, 1, 0);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(caps.try_acquire(0, ip).is_ok());
        assert_eq!(
            caps.try_acquire(0, ip).expect_err("shard").code,
            ErrorCode::ServerFull
        );
        assert!(caps.try_acquire(1, ip).is_ok());
        assert_eq!(caps.total(), 2);
    }

    #[test]
    fn user_index_counts_and_forgets() {
        let users = UserIndex::new();
        let u: Arc<str> = Arc::from("u");
        assert!(users.try_connect(&u, 2));
        assert!(users.try_connect(&u, 2));
        assert!(!users.try_connect(&u, 2));
        users.attach(&u, 3);
        assert_eq!(users.shards("u"), 1 << 3);
        users.disconnect(&u);
        users.disconnect(&u);
        assert_eq!(users.len(), 1);
        users.detach(&u, 3);
        assert!(users.is_empty());
    }

    fn meta_of(creator: Option<Creator>) -> Arc<RoomMeta> {
        Arc::new(RoomMeta {
            home: 0,
            private: false,
            max_members: 1,
            overflow: OverflowPolicy::Drop,
            explicit: true,
            members: AtomicU32::new(0),
            users: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            creator,
        })
    }

    #[test]
    fn creation_caps_count_live_rooms_and_undo_on_refusal() {
        let rooms = RoomIndex::with_caps(
            4,
            CreationCaps {
                per_user: 3,
                per_conn: 2,
            },
        );
        let meta = |user: &str, conn: u64| {
            meta_of(Some(Creator {
                user: Arc::from(user),
                conn,
            }))
        };
        let code = |r: Result<(), Refusal>| r.map_err(|e| e.code);
        assert_eq!(code(rooms.insert(Arc::from("a"), meta("u", 1))), Ok(()));
        assert_eq!(code(rooms.insert(Arc::from("b"), meta("u", 1))), Ok(()));
        // The connection is at 2.
        let refused = rooms.insert(Arc::from("c"), meta("u", 1));
        assert_eq!(code(refused), Err(ErrorCode::TooManyRoomsCreated));
        assert_eq!(
            rooms.created_by_user("u"),
            2,
            "the refusal undid the user's raise"
        );
        // Another connection of the user: the user is at 3.
        assert_eq!(code(rooms.insert(Arc::from("c"), meta("u", 2))), Ok(()));
        let refused = rooms.insert(Arc::from("d"), meta("u", 3));
        assert_eq!(code(refused), Err(ErrorCode::TooManyRoomsCreated));
        // The room cap refuses after the quotas passed, and undoes them.
        assert_eq!(code(rooms.insert(Arc::from("d"), meta("v", 4))), Ok(()));
        let refused = rooms.insert(Arc::from("e"), meta("w", 5));
        assert_eq!(code(refused), Err(ErrorCode::TooManyRooms));
        assert_eq!(
            (rooms.created_by_user("w"), rooms.created_by_conn(5)),
            (0, 0)
        );
        // A room that goes gives its creator's quota back.
        rooms.remove("a");
        assert_eq!(
            (rooms.created_by_user("u"), rooms.created_by_conn(1)),
            (2, 1)
        );
        assert_eq!(code(rooms.insert(Arc::from("a2"), meta("u", 1))), Ok(()));
        for room in ["a2", "b", "c", "d"] {
            rooms.remove(room);
        }
        assert!(rooms.by_user.is_empty() && rooms.by_conn.is_empty());
        assert!(rooms.is_empty());
    }

    #[test]
    fn room_cap() {
        let rooms = RoomIndex::new(1);
        let meta = || meta_of(None);
        assert!(rooms.insert(Arc::from("a"), meta()).is_ok());
        let err = rooms.insert(Arc::from("b"), meta()).expect_err("full");
        assert_eq!(err.code, ErrorCode::TooManyRooms);
        rooms.remove("a");
        assert!(rooms.insert(Arc::from("b"), meta()).is_ok());
        assert_eq!(rooms.len(), 1);
    }
}
