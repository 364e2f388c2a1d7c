//! Where things live: the home shard of a room, the shard of a connection,
//! and sets of shards.
//!
//! **Architecture Invariant:** placement is arithmetic on names and ids,
//! the same in every thread and every process: a room's home never moves
//! and a connection id says its shard (`conn % shards`), so no table is
//! needed to find either.

use crate::limits::MAX_SHARDS;

/// The home shard of `room` among `shards`: a fixed hash, the same in every
/// process, so a room's home never moves.
pub(crate) fn home_of(room: &str, shards: usize) -> usize {
    // FNV-1a: short keys, no DoS concern (a room's home only picks a shard).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The shard that holds connection `conn` (ids are handed out so that
/// `conn % shards` is the shard that accepted it).
pub(crate) fn shard_of(conn: u64, shards: usize) -> usize {
    (conn % shards.max(1) as u64) as usize
}

/// A set of shards, as a bit mask (shard `i` is bit `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ShardSet(u64);

const _: () = assert!(MAX_SHARDS <= u64::BITS as usize, "a ShardSet is a u64");

impl ShardSet {
    /// The set whose bits are `mask`.
    pub(crate) fn from_bits(mask: u64) -> Self {
        ShardSet(mask)
    }

    /// Every shard of `shards`.
    pub(crate) fn all(shards: usize) -> Self {
        if shards >= MAX_SHARDS {
            ShardSet(u64::MAX)
        } else {
            ShardSet((1u64 << shards) - 1)
        }
    }

    /// Add `shard`.
    pub(crate) fn insert(&mut self, shard: usize) {
        if shard < MAX_SHARDS {
            self.0 |= 1 << shard;
        }
    }

    /// Remove `shard`.
    pub(crate) fn remove(&mut self, shard: usize) {
        if shard < MAX_SHARDS {
            self.0 &= !(1 << shard);
        }
    }

    /// The shards in the set, lowest first.
    pub(crate) fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let shard = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(shard)
        })
    }
}

/// How many members of one room each shard holds, and the set of shards
/// holding any: where a room's fan-out goes.
///
/// **Invariant:** `set` holds exactly the shards whose count is non-zero.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardCounts {
    counts: Vec<u32>,
    set: ShardSet,
}

impl ShardCounts {
    /// One member more on `shard`.
    pub(crate) fn add(&mut self, shard: usize) {
        if self.counts.len() <= shard {
            self.counts.resize(shard + 1, 0);
        }
        self.counts[shard] += 1;
        self.set.insert(shard);
    }

    /// One member less on `shard` (nothing if it had none).
    pub(crate) fn remove(&mut self, shard: usize) {
        if let Some(count) = self.counts.get_mut(shard) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.set.remove(shard);
            }
        }
    }

    /// The shards with members.
    pub(crate) fn shards(&self) -> ShardSet {
        self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_stable_and_in_range() {
        for n in 1..8 {
            for room in ["a", "lobby", "team-42"] {
                let h = home_of(room, n);
                assert!(h < n);
                assert_eq!(h, home_of(room, n));
            }
        }
    }

    #[test]
    fn shard_sets_iterate_their_members_in_order() {
        let mut set = ShardSet::default();
        for s in [5, 0, 63, 5] {
            set.insert(s);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 5, 63]);
        set.remove(5);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 63]);
        assert_eq!(ShardSet::all(3).iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(ShardSet::all(64).iter().count(), 64);
        assert_eq!(
            ShardSet::from_bits(0b1010).iter().collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert!(ShardSet::default().iter().next().is_none());
    }

    #[test]
    fn shard_counts_keep_the_set_of_non_empty_shards() {
        let mut counts = ShardCounts::default();
        counts.add(1);
        counts.add(1);
        counts.add(3);
        assert_eq!(counts.shards().iter().collect::<Vec<_>>(), vec![1, 3]);
        counts.remove(1);
        assert_eq!(counts.shards().iter().collect::<Vec<_>>(), vec![1, 3]);
        counts.remove(1);
        counts.remove(1); // already empty: stays empty
        counts.remove(7); // never had members
        assert_eq!(counts.shards().iter().collect::<Vec<_>>(), vec![3]);
    }
}
