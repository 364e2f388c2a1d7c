//! A progress line once per second while a scenario runs:
//! `[ 3s] deliveries/s N  publishes/s N`. Plain lines, so it reads the same
//! in a terminal, a pipe or a log file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
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
    /// One sample per progress line (at most [`MAX_LINES`]).
    samples: Mutex<Vec<Sample>>,
}

/// The per-second deltas of one progress line.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since the progress lines started.
    secs: u64,
    deliveries: u64,
    publishes: u64,
}

impl Counters {
    /// Add `n` deliveries.
    pub(crate) fn delivered(&self, n: u64) {
        if n > 0 {
            self.deliveries.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The progress lines so far as JSON:
    /// `[{"t": secs, "deliveries_per_sec": N, "publishes_per_sec": N}, ...]`.
    pub(crate) fn timeline_json(&self) -> Value {
        let samples = self
            .samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        samples
            .iter()
            .map(|s| {
                json!({
                    "t": s.secs,
                    "deliveries_per_sec": s.deliveries,
                    "publishes_per_sec": s.publishes,
                })
            })
            .collect()
    }

    fn record(&self, sample: Sample) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if (samples.len() as u64) < MAX_LINES {
            samples.push(sample);
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
/// [`MAX_LINES`] lines). Each line is also kept for
/// [`Counters::timeline_json`].
pub(crate) fn spawn(counters: Arc<Counters>, labels: [&'static str; 2]) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let (mut last_d, mut last_p) = (0u64, 0u64);
        for second in 1..=MAX_LINES {
            tokio::time::sleep_until(start + Duration::from_secs(second)).await;
            let d = counters.deliveries.load(Ordering::Relaxed);
            let p = counters.publishes.load(Ordering::Relaxed);
            let sample = Sample {
                secs: second,
                deliveries: d.saturating_sub(last_d),
                publishes: p.saturating_sub(last_p),
            };
            println!(
                "[{second:>2}s] {} {}  {} {}",
                labels[0], sample.deliveries, labels[1], sample.publishes
            );
            counters.record(sample);
            (last_d, last_p) = (d, p);
        }
    })
}
