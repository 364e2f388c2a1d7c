//! Room epochs (protocol v1.1): an opaque name for one incarnation of a
//! room, so a `join` with `since` can tell "the messages I missed" from "the
//! messages of a room that was deleted and made again under the same name".
//!
//! **Invariant:** every incarnation of a room (created, auto-created by a
//! join, made again after a delete or an expiry, or put back by a cluster
//! node after Redis lost it) gets a fresh epoch, and a `since` that names
//! another epoch is never answered as recovered.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Length of the epochs this server makes: 16 hex digits (64 random bits).
pub(crate) const EPOCH_LEN: usize = 16;

/// A room's epoch: 16 lowercase hex digits of randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch([u8; EPOCH_LEN]);

impl Epoch {
    /// A fresh epoch from the OS random source (or, should that fail, from
    /// a randomly keyed hash of the clock and a counter: still different
    /// for every incarnation, only less unguessable).
    pub(crate) fn new() -> Epoch {
        let bits = getrandom::u64().unwrap_or_else(|_| fallback_bits());
        let mut digits = [0u8; EPOCH_LEN];
        for (i, d) in digits.iter_mut().enumerate() {
            let nibble = (bits >> (60 - 4 * i)) & 0xF;
            *d = b"0123456789abcdef"[nibble as usize];
        }
        Epoch(digits)
    }

    /// The epoch as the wire carries it.
    pub(crate) fn as_str(&self) -> &str {
        // Hex digits only, by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl Default for Epoch {
    fn default() -> Self {
        Epoch::new()
    }
}

fn fallback_bits() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// What a join's `since` asks of a room whose epoch is `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// No `since`: the last `room.history_on_join` messages, no `recovered`.
    Fresh,
    /// `since` with the room's epoch, or without one (v1): the messages
    /// after it, `recovered` by the v1 rule.
    After(u64),
    /// `since` with another epoch: answered like [`Resume::Fresh`], but
    /// with `recovered: false`.
    Stale,
}

/// Decide how to answer a join's `since` and `epoch` (PROTOCOL.md,
/// section 5 of the contract).
pub(crate) fn resume(since: Option<u64>, epoch: Option<&str>, current: &str) -> Resume {
    match (since, epoch) {
        (None, _) => Resume::Fresh,
        (Some(since), None) => Resume::After(since),
        (Some(since), Some(e)) if e == current => Resume::After(since),
        (Some(_), Some(_)) => Resume::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_hex_and_differ() {
        let a = Epoch::new();
        let b = Epoch::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), EPOCH_LEN);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(crate::protocol::names::is_valid_name(a.as_str()));
    }

    #[test]
    fn resume_decisions() {
        assert_eq!(resume(None, None, "e1"), Resume::Fresh);
        assert_eq!(resume(None, Some("e0"), "e1"), Resume::Fresh);
        assert_eq!(resume(Some(4), None, "e1"), Resume::After(4));
        assert_eq!(resume(Some(4), Some("e1"), "e1"), Resume::After(4));
        assert_eq!(resume(Some(4), Some("e0"), "e1"), Resume::Stale);
    }
}
