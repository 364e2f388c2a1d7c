//! A progress line once per second while a scenario runs:
//! `[ 3s] deliveries/s N  publishes/s N`. Plain lines, so it reads the same
//! in a terminal, a pipe or a log file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::common::MAX_DURATION_SECS;

/// Most progress lines one run prints (warmup + measure + drains).
const MAX_LINES: u64 = 3 * MAX_DURATION_SECS;

/// Counters the scenario's tasks add to (in batches, not per message).
#[derive(Default)]
pub(crate) struct Counters {
    /// Messages received by the generator's clients.
    pub(crate) deliveries: AtomicU64,
    /// Publishes (or other actions) sent.
    pub(crate) publishes: AtomicU64,
}

impl Counters {
    /// Add `n` deliveries.
    pub(crate) fn delivered(&self, n: u64) {
        if n > 0 {
            self.deliveries.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add `n` publishes.
    pub(crate) fn published(&self, n: u64) {
        if n > 0 {
            self.publishes.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Labels of the two counters in the usual case.
pub(crate) const DELIVERIES: [&str; 2] = ["deliveries/s", "publishes/s"];

/// Print a line per second, `labels` naming the per-second deltas of
/// `deliveries` and `publishes`, until the returned task is aborted (or
/// [`MAX_LINES`] lines).
pub(crate) fn spawn(counters: Arc<Counters>, labels: [&'static str; 2]) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let (mut last_d, mut last_p) = (0u64, 0u64);
        for second in 1..=MAX_LINES {
            tokio::time::sleep_until(start + Duration::from_secs(second)).await;
            let d = counters.deliveries.load(Ordering::Relaxed);
            let p = counters.publishes.load(Ordering::Relaxed);
            println!(
                "[{second:>2}s] {} {}  {} {}",
                labels[0],
                d.saturating_sub(last_d),
                labels[1],
                p.saturating_sub(last_p)
            );
            (last_d, last_p) = (d, p);
        }
    })
}
