//! The bounded history ring: the last messages of a room, by seq.
//!
//! Used by a home shard for a room's history (recovery with `since`, history
//! on join) and by the cluster backplane for the recent messages a late
//! joiner catches up with.
//!
//! **Invariant:** at most `max_len` entries and at most `max_bytes` bytes of
//! frames, except that [`HistoryRing::push`] always keeps the newest entry
//! (a single message larger than the byte bound); [`HistoryRing::pop_oldest`]
//! (an owner over a budget of its own) may take every entry; seqs increase
//! from front to back.

use std::collections::VecDeque;

use bytes::Bytes;

/// One message kept: its seq, its encoded frame, and what the owner keeps
/// beside it.
#[derive(Debug, Clone)]
pub(crate) struct Entry<M> {
    /// The message's seq.
    pub(crate) seq: u64,
    /// The encoded `message` frame.
    pub(crate) frame: Bytes,
    /// The owner's extra (the cluster keeps the connection a message skips).
    pub(crate) meta: M,
}

/// The last messages of a room, bounded in count and bytes.
#[derive(Debug, Clone)]
pub(crate) struct HistoryRing<M = ()> {
    entries: VecDeque<Entry<M>>,
    bytes: usize,
    max_len: usize,
    max_bytes: usize,
}

impl<M> HistoryRing<M> {
    /// A ring of at most `max_len` messages and `max_bytes` bytes (0
    /// messages: it keeps nothing).
    pub(crate) fn new(max_len: usize, max_bytes: usize) -> Self {
        HistoryRing {
            entries: VecDeque::new(),
            bytes: 0,
            max_len,
            max_bytes,
        }
    }

    /// The most messages it keeps (the room's `history` option).
    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Keep message `seq` (greater than every kept seq), dropping the oldest
    /// beyond the bounds.
    pub(crate) fn push(&mut self, seq: u64, frame: Bytes, meta: M) {
        if self.max_len == 0 {
            return;
        }
        debug_assert!(self.newest().is_none_or(|n| n < seq), "seqs increase");
        self.bytes += frame.len();
        self.entries.push_back(Entry { seq, frame, meta });
        while self.entries.len() > self.max_len
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.frame.len();
            }
        }
    }

    /// The kept messages after `since`, oldest first.
    pub(crate) fn after(&self, since: u64) -> impl Iterator<Item = &Entry<M>> {
        // Seqs increase: skip the prefix at or below `since`.
        let start = self.entries.partition_point(|e| e.seq <= since);
        self.entries.range(start..)
    }

    /// The last `n` kept messages, oldest first.
    pub(crate) fn last(&self, n: usize) -> impl Iterator<Item = &Entry<M>> {
        let start = self.entries.len().saturating_sub(n);
        self.entries.range(start..)
    }

    /// The oldest kept seq.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// The newest kept seq.
    pub(crate) fn newest(&self) -> Option<u64> {
        self.entries.back().map(|e| e.seq)
    }

    /// Whether every message after `since` up to `last` is kept.
    pub(crate) fn covers(&self, since: u64, last: u64) -> bool {
        since <= last && (since == last || self.oldest().is_some_and(|o| o <= since + 1))
    }

    /// Messages kept.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of frames kept.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drop the oldest entry; the bytes it held, if there was one.
    pub(crate) fn pop_oldest(&mut self) -> Option<usize> {
        let old = self.entries.pop_front()?;
        self.bytes -= old.frame.len();
        Some(old.frame.len())
    }

    /// Forget everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// Free bytes from several rings sharing one budget: the oldest message of
/// the largest ring first, until `total` (their bytes together) is at most
/// `target`. `rings` lists (bytes, key) of the rings that hold any;
/// `pop_oldest(key)` drops the oldest message of that ring and says (bytes
/// freed, bytes left), or `None` if it held none. Returns the new total and
/// how many messages were dropped. O(rings + dropped × log rings).
pub(crate) fn trim_largest_first<K: Ord>(
    rings: impl Iterator<Item = (usize, K)>,
    mut total: usize,
    target: usize,
    mut pop_oldest: impl FnMut(&K) -> Option<(usize, usize)>,
) -> (usize, u64) {
    let mut largest: std::collections::BinaryHeap<(usize, K)> = rings.collect();
    let mut dropped = 0;
    while total > target {
        let Some((_, key)) = largest.pop() else {
            break;
        };
        let Some((freed, left)) = pop_oldest(&key) else {
            continue;
        };
        total -= freed;
        dropped += 1;
        if left > 0 {
            largest.push((left, key));
        }
    }
    (total, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    fn seqs<'a, M: 'a>(it: impl Iterator<Item = &'a Entry<M>>) -> Vec<u64> {
        it.map(|e| e.seq).collect()
    }

    #[test]
    fn keeps_the_newest_within_both_bounds() {
        let mut ring = HistoryRing::new(3, 100);
        for seq in 1..=5 {
            ring.push(seq, frame(10), ());
        }
        assert_eq!(seqs(ring.last(10)), vec![3, 4, 5]);
        assert_eq!(ring.bytes(), 30);
        // 45 + 45 + 45 > 100: only two fit.
        for seq in 6..=8 {
            ring.push(seq, frame(45), ());
        }
        assert_eq!(seqs(ring.last(10)), vec![7, 8]);
        // One frame over the byte bound is still kept, alone.
        ring.push(9, frame(500), ());
        assert_eq!(seqs(ring.last(10)), vec![9]);
        assert_eq!(ring.bytes(), 500);
    }

    #[test]
    fn pop_oldest_gives_back_its_bytes_and_keeps_order() {
        let mut ring = HistoryRing::new(10, 1000);
        for seq in 1..=3 {
            ring.push(seq, frame(seq as usize * 10), ());
        }
        assert_eq!(ring.pop_oldest(), Some(10));
        assert_eq!((ring.bytes(), ring.oldest()), (50, Some(2)));
        assert!(!ring.covers(0, 3), "seq 1 is gone");
        assert_eq!(ring.pop_oldest(), Some(20));
        assert_eq!(ring.pop_oldest(), Some(30));
        assert_eq!(ring.pop_oldest(), None);
        assert!(ring.is_empty() && ring.bytes() == 0);
    }

    #[test]
    fn trimming_takes_from_the_largest_ring_first() {
        let mut rings: Vec<HistoryRing> = (0..3).map(|_| HistoryRing::new(100, 1 << 20)).collect();
        for (i, ring) in rings.iter_mut().enumerate() {
            for seq in 1..=5 {
                ring.push(seq, frame(10 * (i + 1)), ());
            }
        }
        // 50 + 100 + 150 bytes; down to 200: 150 -> 120 -> 90 (now below
        // the 100-byte ring), 100 -> 80, 90 -> 60.
        let listed: Vec<(usize, usize)> = rings
            .iter()
            .enumerate()
            .map(|(i, r)| (r.bytes(), i))
            .collect();
        let (total, dropped) = trim_largest_first(listed.into_iter(), 300, 200, |i| {
            let ring = &mut rings[*i];
            ring.pop_oldest().map(|freed| (freed, ring.bytes()))
        });
        assert_eq!((total, dropped), (190, 4));
        let left: Vec<usize> = rings.iter().map(HistoryRing::bytes).collect();
        assert_eq!(left, vec![50, 80, 60]);
    }

    #[test]
    fn a_zero_length_ring_keeps_nothing() {
        let mut ring = HistoryRing::new(0, 100);
        ring.push(1, frame(1), ());
        assert!(ring.is_empty() && ring.bytes() == 0);
    }

    #[test]
    fn after_and_last_select_by_seq() {
        let mut ring = HistoryRing::new(100, 1 << 20);
        for seq in 5..=10 {
            ring.push(seq, frame(1), seq * 2);
        }
        assert_eq!(seqs(ring.after(7)), vec![8, 9, 10]);
        assert_eq!(seqs(ring.after(0)), vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(seqs(ring.after(10)), Vec::<u64>::new());
        assert_eq!(seqs(ring.last(2)), vec![9, 10]);
        assert_eq!(
            ring.after(8).map(|e| e.meta).collect::<Vec<_>>(),
            vec![18, 20]
        );
    }

    #[test]
    fn covers_is_exact_recovery() {
        let mut ring = HistoryRing::new(100, 1 << 20);
        for seq in 5..=10 {
            ring.push(seq, frame(1), ());
        }
        assert!(ring.covers(4, 10)); // 5..=10 all kept
        assert!(!ring.covers(3, 10)); // 4 is gone
        assert!(ring.covers(10, 10)); // nothing missed
        assert!(!ring.covers(11, 10)); // a seq from the future
        let empty: HistoryRing = HistoryRing::new(100, 100);
        assert!(empty.covers(0, 0));
        assert!(!empty.covers(0, 3));
    }
}
