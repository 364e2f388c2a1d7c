//! Connection caps: total, per shard and per IP, for open connections and
//! for TLS handshakes in flight.
//!
//! **Invariant:** each acquire is a compare-and-swap per counter and undoes
//! what it raised when a later cap refuses, so no cap is ever overshot and
//! a refused connection holds nothing.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use papaya::{Compute, HashMap, Operation};

use super::{lower_entry, new_map, raise_entry, try_raise};
use crate::error::{ErrorCode, Refusal};

/// Connection caps: global, per shard, per IP. (Per user: [`super::UserIndex`].)
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
