//! Telemetry: per-shard counters on the hot path (this module), summed at
//! scrape time into Prometheus text ([`render`], `GET /metrics`).
//!
//! **Invariant:** counting is a plain `Cell` add on the shard thread that
//! owns the counter: no lock, no shared atomic on the message path. A scrape
//! asks every shard for a snapshot through its delivery inbox.

mod render;

pub(crate) use render::{WebhookFigures, process_figures, render};

use std::cell::Cell;

use serde::Serialize;

use crate::error::ErrorCode;

/// Client frame types counted in `shardcast_frames_in_total`.
pub const FRAME_KINDS: [&str; 11] = [
    "join",
    "leave",
    "create",
    "publish",
    "send",
    "broadcast",
    "members",
    "ping",
    "refresh",
    "invalid",
    "binary",
];

/// Close codes counted by name in `shardcast_disconnects_total`; others are
/// `other`, and a connection that vanished without a close is `none`.
pub(crate) const CLOSE_CODES: [u16; 10] =
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 4000, 4001];

/// `shardcast_frames_in_total` slot of frames that failed to decode.
pub(crate) const FRAME_INVALID: usize = 9;
/// `shardcast_frames_in_total` slot of binary frames.
pub(crate) const FRAME_BINARY: usize = 10;
const _: () = assert!(FRAME_BINARY < FRAME_KINDS.len() && FRAME_INVALID < FRAME_KINDS.len());

/// Index of the "other" close code slot.
const CLOSE_OTHER: usize = CLOSE_CODES.len();
/// Index of the "none" close code slot.
const CLOSE_NONE: usize = CLOSE_CODES.len() + 1;

/// Upper bounds (seconds) of the publish-to-write latency buckets.
pub(crate) const LATENCY_BUCKETS_SECS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// [`LATENCY_BUCKETS_SECS`] in microseconds, for recording without floats.
const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Microseconds on the process's monotonic clock (comparable across
/// shards: every shard reads the same `Instant` epoch).
pub(crate) fn now_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// A fixed-bucket latency histogram in Cells (one shard's).
#[derive(Default)]
pub(crate) struct LatencyHistogram {
    /// Per-bucket counts; the last slot is +Inf.
    buckets: [Cell<u64>; LATENCY_BUCKETS_SECS.len() + 1],
    count: Cell<u64>,
    sum_us: Cell<u64>,
}

const _: () = assert!(LATENCY_BUCKETS_US.len() == LATENCY_BUCKETS_SECS.len());

impl LatencyHistogram {
    /// Record one latency.
    pub(crate) fn record(&self, us: u64) {
        let slot = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        bump(&self.buckets[slot], 1);
        bump(&self.count, 1);
        bump(&self.sum_us, us);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(Cell::get).collect(),
            count: self.count.get(),
            sum_secs: self.sum_us.get() as f64 / 1e6,
        }
    }
}

/// A histogram's figures at one moment (per-bucket counts, +Inf last).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct HistogramSnapshot {
    /// Per-bucket counts.
    pub(crate) buckets: Vec<u64>,
    /// Observations.
    pub(crate) count: u64,
    /// Sum of observations, seconds.
    pub(crate) sum_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_slots_name_their_kinds() {
        assert_eq!(FRAME_KINDS[FRAME_INVALID], "invalid");
        assert_eq!(FRAME_KINDS[FRAME_BINARY], "binary");
    }

    #[test]
    fn latency_buckets_agree_and_record() {
        for (us, secs) in LATENCY_BUCKETS_US.iter().zip(LATENCY_BUCKETS_SECS) {
            assert!((*us as f64 / 1e6 - secs).abs() < 1e-12);
        }
        let h = LatencyHistogram::default();
        h.record(50);
        h.record(100);
        h.record(101);
        h.record(10_000_000);
        let s = h.snapshot();
        assert_eq!(
            (s.buckets[0], s.buckets[1], s.buckets[14], s.count),
            (2, 1, 1, 4)
        );
    }
}

/// One shard's counters. Only that shard's thread touches them.
#[derive(Default)]
pub(crate) struct ShardCounters {
    /// Connections closed with 4000.
    pub(crate) slow_consumer_closes: Cell<u64>,
    /// Messages dropped by the `drop` policy on connections that closed.
    pub(crate) dropped_closed: Cell<u64>,
    /// Room frames handed to local members' queues.
    pub(crate) deliveries: Cell<u64>,
    /// Connections opened.
    pub(crate) connects: Cell<u64>,
    /// Connections closed at their PROXY protocol header.
    proxy_refused: Cell<u64>,
    /// From a room message's sequencing at its home to the end of the
    /// write that handed it to a member's socket.
    pub(crate) publish_to_write: LatencyHistogram,
    frames_in: [Cell<u64>; FRAME_KINDS.len()],
    errors_out: [Cell<u64>; ErrorCode::ALL.len()],
    refusals: [Cell<u64>; ErrorCode::ALL.len()],
    disconnects: [Cell<u64>; CLOSE_CODES.len() + 2],
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

impl ShardCounters {
    /// A frame of `kind` (an entry of [`FRAME_KINDS`]) came in.
    pub(crate) fn frame_in(&self, kind: usize) {
        if let Some(c) = self.frames_in.get(kind) {
            bump(c, 1);
        }
    }

    /// An `error` frame with `code` went out.
    pub(crate) fn error_out(&self, code: ErrorCode) {
        bump(&self.errors_out[code.index()], 1);
    }

    /// An upgrade was refused with `code`.
    pub(crate) fn refused(&self, code: ErrorCode) {
        bump(&self.refusals[code.index()], 1);
    }

    /// A connection ended with close `code` (`None`: no close frame).
    pub(crate) fn disconnected(&self, code: Option<u16>) {
        let slot = match code {
            None => CLOSE_NONE,
            Some(c) => CLOSE_CODES
                .iter()
                .position(|k| *k == c)
                .unwrap_or(CLOSE_OTHER),
        };
        bump(&self.disconnects[slot], 1);
    }

    /// A connection was closed at its PROXY protocol header.
    pub(crate) fn proxy_header_refused(&self) {
        bump(&self.proxy_refused, 1);
    }

    /// `n` room frames were queued for members.
    pub(crate) fn delivered(&self, n: u64) {
        bump(&self.deliveries, n);
    }

    /// A copy of the counters.
    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let named = |cells: &[Cell<u64>], names: &mut dyn Iterator<Item = String>| {
            cells
                .iter()
                .zip(names)
                .map(|(c, n)| (n, c.get()))
                .collect::<Vec<_>>()
        };
        let codes = || ErrorCode::ALL.iter().map(|c| c.as_str().to_string());
        let closes = CLOSE_CODES
            .iter()
            .map(|c| c.to_string())
            .chain(["other".to_string(), "none".to_string()]);
        CounterSnapshot {
            connects: self.connects.get(),
            proxy_refused: self.proxy_refused.get(),
            deliveries: self.deliveries.get(),
            publish_to_write: self.publish_to_write.snapshot(),
            frames_in: named(
                &self.frames_in,
                &mut FRAME_KINDS.iter().map(|k| k.to_string()),
            ),
            errors_out: named(&self.errors_out, &mut codes()),
            refusals: named(&self.refusals, &mut codes()),
            disconnects: named(&self.disconnects, &mut closes.into_iter()),
        }
    }
}

/// Counters of one shard at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CounterSnapshot {
    /// Connections opened.
    pub(crate) connects: u64,
    /// Connections closed at their PROXY protocol header.
    pub(crate) proxy_refused: u64,
    /// Room frames queued for members.
    pub(crate) deliveries: u64,
    /// Publish-to-write latency.
    pub(crate) publish_to_write: HistogramSnapshot,
    /// Frames in, by type.
    pub(crate) frames_in: Vec<(String, u64)>,
    /// Error frames out, by code.
    pub(crate) errors_out: Vec<(String, u64)>,
    /// Upgrade refusals, by code.
    pub(crate) refusals: Vec<(String, u64)>,
    /// Disconnects, by close code.
    pub(crate) disconnects: Vec<(String, u64)>,
}
