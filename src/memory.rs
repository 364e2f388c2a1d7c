//! The process memory budget (`limits.memory_budget_bytes`): a cheap
//! sampled reading of the resident set, and one shared flag that turns new
//! connections (503 `server_full`, `Retry-After`) and new rooms
//! (`over_memory_budget`) away while it is above the budget, so the broker
//! degrades before the kernel kills it.
//!
//! The reading is `VmRSS` of `/proc/self/status`, taken every
//! [`MEMORY_SAMPLE_INTERVAL_MS`] by one task ([`watch`], on shard 0): a few
//! microseconds, four times a second, and nothing on the message path, which
//! only reads the flag. The budget bounds what clients can add *next*;
//! what they hold already is bounded by the other limits (queues, history
//! budget, rooms), which keep working over budget.
//!
//! The allocator (mimalloc) keeps freed pages for a while before it gives
//! them back, and gives back a thread's pages only when that thread calls
//! into it again. Measured: after the rooms holding 30 MiB of history were
//! deleted, the resident set stayed at 68.6 MB, above a 64 MiB budget, so
//! the broker went on refusing connections. So while over the budget every
//! shard (and the cluster thread) asks the allocator to give back what it
//! freed ([`give_back_freed_memory`], the crate's one `unsafe` call), and
//! the reading falls once the memory is really free
//! (`abuse::over_the_memory_budget_new_connections_and_rooms_are_refused`).
//!
//! **Invariant:** the flag is set exactly while the last reading is above
//! the budget (no hysteresis: a sample decides).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::limits::MEMORY_SAMPLE_INTERVAL_MS;

/// Share of the memory limit (the cgroup's, or the machine's) taken as the
/// budget when `limits.memory_budget_bytes` is 0, in percent.
pub(crate) const DEFAULT_BUDGET_PERCENT: u64 = 80;

/// The budget, the last reading and what it refused.
#[derive(Debug)]
pub(crate) struct MemoryGuard {
    budget: u64,
    resident: AtomicU64,
    over: AtomicBool,
    refused_connections: AtomicU64,
    refused_rooms: AtomicU64,
}

impl MemoryGuard {
    /// A guard of `budget` bytes, not over it until a reading says so.
    pub(crate) fn new(budget: u64) -> Self {
        MemoryGuard {
            budget,
            resident: AtomicU64::new(0),
            over: AtomicBool::new(false),
            refused_connections: AtomicU64::new(0),
            refused_rooms: AtomicU64::new(0),
        }
    }

    /// Whether the last reading was above the budget.
    pub(crate) fn over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Take a reading of `resident` bytes.
    pub(crate) fn record(&self, resident: u64) {
        self.resident.store(resident, Ordering::Relaxed);
        let over = resident > self.budget;
        if self.over.swap(over, Ordering::Relaxed) != over {
            if over {
                tracing::warn!(
                    resident,
                    budget = self.budget,
                    "over the memory budget: refusing new connections and rooms"
                );
            } else {
                tracing::info!(
                    resident,
                    budget = self.budget,
                    "back under the memory budget"
                );
            }
        }
    }

    /// Count a connection refused for the budget.
    pub(crate) fn refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a room refused for the budget.
    pub(crate) fn refused_room(&self) {
        self.refused_rooms.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures for `/metrics`.
    pub(crate) fn figures(&self) -> MemoryFigures {
        MemoryFigures {
            budget: self.budget,
            over: self.over(),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            refused_rooms: self.refused_rooms.load(Ordering::Relaxed),
        }
    }
}

/// A [`MemoryGuard`]'s figures at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryFigures {
    /// The budget, bytes.
    pub(crate) budget: u64,
    /// Over it at the last reading.
    pub(crate) over: bool,
    /// Connections refused for it.
    pub(crate) refused_connections: u64,
    /// Rooms refused for it.
    pub(crate) refused_rooms: u64,
}

/// Read the resident set into `guard` every [`MEMORY_SAMPLE_INTERVAL_MS`],
/// for as long as the task lives.
pub(crate) async fn watch(guard: Arc<MemoryGuard>) {
    let mut tick = tokio::time::interval(Duration::from_millis(MEMORY_SAMPLE_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(resident) = resident_bytes() {
            guard.record(resident);
        }
    }
}

/// While `guard` is over the budget, give back what this thread's allocator
/// freed, every [`MEMORY_SAMPLE_INTERVAL_MS`] (one such task per shard).
pub(crate) async fn give_back_while_over(guard: Arc<MemoryGuard>) {
    let mut tick = tokio::time::interval(Duration::from_millis(MEMORY_SAMPLE_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if guard.over() {
            give_back_freed_memory();
        }
    }
}

/// Ask the allocator to return the pages the calling thread freed to the
/// OS now, instead of after its purge delay and next call.
#[allow(unsafe_code)] // measured reason: see the module documentation
pub(crate) fn give_back_freed_memory() {
    // SAFETY: `mi_collect` takes no pointer and may run on any thread at any
    // time; it only walks the calling thread's heap (and, forced, the pages
    // abandoned by threads that ended). When mimalloc is not the global
    // allocator (tests, benches) it has nothing to do.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Resident memory of this process, bytes (`VmRSS`; Linux).
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, "VmRSS:")
}

/// The default budget: [`DEFAULT_BUDGET_PERCENT`] of the smaller of the
/// cgroup's memory limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`)
/// and the machine's memory (`MemTotal`). `None` where neither is known.
pub(crate) fn default_budget() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let total = read("/proc/meminfo").and_then(|m| kib_field(&m, "MemTotal:"));
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|v| v.trim().parse::<u64>().ok()); // "max": no limit
    let limit = match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (Some(t), None) => t,
        (None, c) => c?,
    };
    Some(limit / 100 * DEFAULT_BUDGET_PERCENT)
}

/// The value of a `Name:   123 kB` line of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_above_the_budget_sets_the_flag_and_one_below_clears_it() {
        let guard = MemoryGuard::new(1000);
        assert!(!guard.over());
        guard.record(1001);
        assert!(guard.over());
        guard.record(1000);
        assert!(!guard.over(), "at the budget is not over it");
        guard.refused_connection();
        guard.refused_room();
        guard.refused_room();
        let f = guard.figures();
        assert_eq!((f.refused_connections, f.refused_rooms), (1, 2));
    }

    #[test]
    fn proc_readings_parse() {
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048 * 1024)
        );
        assert_eq!(kib_field("VmRSS: lots\n", "VmRSS:"), None);
        assert!(resident_bytes().is_some_and(|b| b > 0));
        let budget = default_budget().expect("Linux knows its memory");
        assert!(budget > 0);
    }
}
