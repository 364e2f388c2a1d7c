//! Telemetry: per-shard counters on the hot path, summed at scrape time
//! into Prometheus text (`GET /metrics`).
//!
//! **Invariant:** counting is a plain `Cell` add on the shard thread that
//! owns the counter: no lock, no shared atomic on the message path. A scrape
//! asks every shard for a snapshot through its delivery inbox.

use std::cell::Cell;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
pub const CLOSE_CODES: [u16; 10] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 4000, 4001];

/// Index of the "other" close code slot.
const CLOSE_OTHER: usize = CLOSE_CODES.len();
/// Index of the "none" close code slot.
const CLOSE_NONE: usize = CLOSE_CODES.len() + 1;

/// Upper bounds (seconds) of the publish-to-write latency buckets.
pub const LATENCY_BUCKETS_SECS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// [`LATENCY_BUCKETS_SECS`] in microseconds, for recording without floats.
const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Microseconds on the process's monotonic clock (comparable across
/// shards: every shard reads the same `Instant` epoch).
pub fn now_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// A fixed-bucket latency histogram in Cells (one shard's).
#[derive(Default)]
pub struct LatencyHistogram {
    /// Per-bucket counts; the last slot is +Inf.
    buckets: [Cell<u64>; LATENCY_BUCKETS_SECS.len() + 1],
    count: Cell<u64>,
    sum_us: Cell<u64>,
}

const _: () = assert!(LATENCY_BUCKETS_US.len() == LATENCY_BUCKETS_SECS.len());

impl LatencyHistogram {
    /// Record one latency.
    pub fn record(&self, us: u64) {
        let slot = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        bump(&self.buckets[slot], 1);
        bump(&self.count, 1);
        bump(&self.sum_us, us);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(Cell::get).collect(),
            count: self.count.get(),
            sum_secs: self.sum_us.get() as f64 / 1e6,
        }
    }
}

/// A histogram's figures at one moment (per-bucket counts, +Inf last).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistogramSnapshot {
    /// Per-bucket counts.
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of observations, seconds.
    pub sum_secs: f64,
}

/// Histograms by shard, for the exposition.
struct ShardHistograms(Vec<(usize, HistogramSnapshot)>);

impl prometheus_client::encoding::EncodeMetric for ShardHistograms {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        for (shard, h) in &self.0 {
            let labels = shard_label(*shard);
            let family = encoder.encode_family(&labels)?;
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_SECS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.buckets.iter().copied())
                .collect();
            let mut family = family;
            family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum_secs, h.count, &buckets, None,
            )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

impl std::fmt::Debug for ShardHistograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShardHistograms")
            .field(&self.0.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
pub struct ShardCounters {
    /// Room messages sequenced by this shard as a home.
    pub published: Cell<u64>,
    /// Connections closed with 4000.
    pub slow_consumer_closes: Cell<u64>,
    /// Messages dropped by the `drop` policy on connections that closed.
    pub dropped_closed: Cell<u64>,
    /// Room frames handed to local members' queues.
    pub deliveries: Cell<u64>,
    /// Connections opened.
    pub connects: Cell<u64>,
    /// From a room message's sequencing at its home to the end of the
    /// write that handed it to a member's socket.
    pub publish_to_write: LatencyHistogram,
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
    pub fn frame_in(&self, kind: usize) {
        if let Some(c) = self.frames_in.get(kind) {
            bump(c, 1);
        }
    }

    /// An `error` frame with `code` went out.
    pub fn error_out(&self, code: ErrorCode) {
        bump(&self.errors_out[code.index()], 1);
    }

    /// An upgrade was refused with `code`.
    pub fn refused(&self, code: ErrorCode) {
        bump(&self.refusals[code.index()], 1);
    }

    /// A connection ended with close `code` (`None`: no close frame).
    pub fn disconnected(&self, code: Option<u16>) {
        let slot = match code {
            None => CLOSE_NONE,
            Some(c) => CLOSE_CODES
                .iter()
                .position(|k| *k == c)
                .unwrap_or(CLOSE_OTHER),
        };
        bump(&self.disconnects[slot], 1);
    }

    /// `n` room frames were queued for members.
    pub fn delivered(&self, n: u64) {
        bump(&self.deliveries, n);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> CounterSnapshot {
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
pub struct CounterSnapshot {
    /// Connections opened.
    pub connects: u64,
    /// Room frames queued for members.
    pub deliveries: u64,
    /// Publish-to-write latency.
    pub publish_to_write: HistogramSnapshot,
    /// Frames in, by type.
    pub frames_in: Vec<(String, u64)>,
    /// Error frames out, by code.
    pub errors_out: Vec<(String, u64)>,
    /// Upgrade refusals, by code.
    pub refusals: Vec<(String, u64)>,
    /// Disconnects, by close code.
    pub disconnects: Vec<(String, u64)>,
}

type Labels = Vec<(String, String)>;

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn shard_label(shard: usize) -> Labels {
    vec![("shard".into(), shard.to_string())]
}

fn with(shard: usize, key: &str, value: &str) -> Labels {
    vec![
        ("shard".into(), shard.to_string()),
        (key.into(), value.into()),
    ]
}

fn to_i64(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Process-wide figures for the exposition.
pub struct ProcessFigures {
    /// Rooms that exist.
    pub rooms: u64,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Cluster mode: the backplane's counters.
    pub cluster: Option<ClusterFigures>,
}

/// The backplane's counters for the exposition.
pub struct ClusterFigures {
    /// Room messages sequenced in Redis for this node.
    pub published: u64,
    /// Ranges of messages lost between Redis and this node.
    pub gaps: u64,
    /// Holes filled from a room's history stream.
    pub repairs: u64,
    /// Operations refused by the cluster, by code.
    pub refusals: Vec<(&'static str, u64)>,
}

impl ClusterFigures {
    /// A snapshot of `counters`.
    pub fn of(counters: &crate::cluster::ClusterCounters) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        ClusterFigures {
            published: counters.published.load(Relaxed),
            gaps: counters.gaps.load(Relaxed),
            repairs: counters.repairs.load(Relaxed),
            refusals: crate::error::ErrorCode::ALL
                .iter()
                .zip(&counters.refusals)
                .map(|(code, n)| (code.as_str(), n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// Render the Prometheus text exposition of all shards' figures.
pub fn render(shards: &[crate::shard::ShardStats], process: &ProcessFigures) -> String {
    let mut r = Registry::with_prefix("shardcast");
    let connections = gauge_family(&mut r, "connections", "Open WebSocket connections");
    let connects = counter_family(&mut r, "connects", "Connections opened");
    let disconnects = counter_family(&mut r, "disconnects", "Connections closed, by close code");
    let refusals = counter_family(
        &mut r,
        "handshake_refusals",
        "Upgrades refused before the handshake, by code",
    );
    let frames_in = counter_family(&mut r, "frames_in", "Client frames received, by type");
    let errors_out = counter_family(&mut r, "errors_out", "Error frames sent, by code");
    let published = counter_family(
        &mut r,
        "messages_published",
        "Room messages sequenced by their home shard",
    );
    let deliveries = counter_family(
        &mut r,
        "deliveries",
        "Room messages queued for members (not presence events)",
    );
    let dropped = counter_family(
        &mut r,
        "dropped_messages",
        "Room messages dropped for slow members (drop policy)",
    );
    let slow = counter_family(
        &mut r,
        "slow_consumer_closes",
        "Connections closed with 4000",
    );
    let queue_frames = gauge_family(
        &mut r,
        "outbound_queue_frames",
        "Frames waiting in outbound queues",
    );
    let queue_max = gauge_family(
        &mut r,
        "outbound_queue_frames_max",
        "Largest outbound queue, frames",
    );
    let queue_bytes = gauge_family(
        &mut r,
        "outbound_queue_bytes",
        "Bytes waiting in outbound queues",
    );
    let homed = gauge_family(&mut r, "rooms_homed", "Rooms homed on the shard");
    let inbox = gauge_family(&mut r, "inbox_items", "Items waiting in a shard inbox");
    for s in shards {
        let i = s.shard;
        connections
            .get_or_create(&shard_label(i))
            .set(to_i64(s.connections));
        connects
            .get_or_create(&shard_label(i))
            .inc_by(s.counters.connects);
        for (code, n) in &s.counters.disconnects {
            disconnects.get_or_create(&with(i, "code", code)).inc_by(*n);
        }
        for (code, n) in &s.counters.refusals {
            if *n > 0 {
                refusals.get_or_create(&with(i, "code", code)).inc_by(*n);
            }
        }
        for (kind, n) in &s.counters.frames_in {
            frames_in.get_or_create(&with(i, "type", kind)).inc_by(*n);
        }
        for (code, n) in &s.counters.errors_out {
            if *n > 0 {
                errors_out.get_or_create(&with(i, "code", code)).inc_by(*n);
            }
        }
        published
            .get_or_create(&shard_label(i))
            .inc_by(s.published_total);
        deliveries
            .get_or_create(&shard_label(i))
            .inc_by(s.counters.deliveries);
        dropped
            .get_or_create(&shard_label(i))
            .inc_by(s.dropped_total);
        slow.get_or_create(&shard_label(i))
            .inc_by(s.slow_consumer_closes_total);
        queue_frames
            .get_or_create(&shard_label(i))
            .set(to_i64(s.queued_frames));
        queue_max
            .get_or_create(&shard_label(i))
            .set(to_i64(s.max_queue_frames));
        queue_bytes
            .get_or_create(&shard_label(i))
            .set(to_i64(s.queued_bytes));
        homed
            .get_or_create(&shard_label(i))
            .set(to_i64(s.rooms_homed));
        inbox
            .get_or_create(&with(i, "inbox", "requests"))
            .set(to_i64(s.request_inbox));
        inbox
            .get_or_create(&with(i, "inbox", "deliveries"))
            .set(to_i64(s.delivery_inbox));
    }
    r.register(
        "publish_to_write_seconds",
        "Time from a room message's sequencing to the write that sent it to a member",
        ShardHistograms(
            shards
                .iter()
                .map(|s| (s.shard, s.counters.publish_to_write.clone()))
                .collect(),
        ),
    );
    let rooms = Gauge::<i64>::default();
    rooms.set(to_i64(process.rooms));
    r.register("rooms", "Rooms that exist", rooms);
    if let Some(rss) = process.rss_bytes {
        let g = Gauge::<i64>::default();
        g.set(to_i64(rss));
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            g,
        );
    }
    if let Some(cpu) = process.cpu_seconds {
        let c = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        c.inc_by(cpu);
        r.register(
            "process_cpu_seconds",
            "CPU time of the process (user + system)",
            c,
        );
    }
    if let Some(cluster) = &process.cluster {
        for (name, help, value) in [
            (
                "cluster_messages_published",
                "Room messages this node's publishers had sequenced in Redis",
                cluster.published,
            ),
            (
                "cluster_gaps",
                "Ranges of room messages lost between Redis and this node (members got `gap`)",
                cluster.gaps,
            ),
            (
                "cluster_repairs",
                "Holes in a room's messages filled from its history stream in Redis",
                cluster.repairs,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            r.register(name, help, counter);
        }
        let refusals = counter_family(
            &mut r,
            "cluster_refusals",
            "Cluster operations refused, by code (`unavailable`: Redis unreachable)",
        );
        for (code, n) in &cluster.refusals {
            refusals
                .get_or_create(&vec![("code".into(), (*code).into())])
                .inc_by(*n);
        }
    }
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// RSS (bytes) and CPU seconds of this process, from /proc (Linux).
pub fn process_figures(
    rooms: u64,
    cluster: Option<&crate::cluster::ClusterCounters>,
) -> ProcessFigures {
    let rss_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
    let cpu_seconds = std::fs::read_dir("/proc/self/task").ok().map(|tasks| {
        tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum::<u64>() as f64
            / 1e9
    });
    ProcessFigures {
        rooms,
        rss_bytes,
        cpu_seconds,
        cluster: cluster.map(ClusterFigures::of),
    }
}
