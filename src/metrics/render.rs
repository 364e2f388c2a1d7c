//! The Prometheus text exposition of every shard's figures and the
//! process's own (`GET /metrics`): built at scrape time from snapshots, so
//! nothing here runs on the message path.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{HistogramSnapshot, LATENCY_BUCKETS_SECS};
use crate::backend::RemoteCounters;
use crate::memory::MemoryFigures;

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
pub(crate) struct ProcessFigures {
    /// Rooms that exist.
    pub(crate) rooms: u64,
    /// The memory budget and what it refused.
    pub(crate) memory: MemoryFigures,
    /// Resident memory, bytes.
    pub(crate) rss_bytes: Option<u64>,
    /// CPU time, seconds.
    pub(crate) cpu_seconds: Option<f64>,
    /// Cluster mode: the remote sequencer's counters.
    pub(crate) cluster: Option<RemoteFigures>,
    /// `invalid_data` refusals by namespace prefix, for every namespace
    /// with a schema.
    pub(crate) invalid_data: Vec<(std::sync::Arc<str>, u64)>,
    /// The Pusher endpoint's webhooks, when some app has one.
    pub(crate) webhooks: Option<WebhookFigures>,
}

/// The Pusher webhooks' counters for the exposition.
pub(crate) struct WebhookFigures {
    /// Events delivered (a 2xx answer).
    pub(crate) sent: u64,
    /// Events dropped: a full queue, or every attempt failed.
    pub(crate) dropped: u64,
    /// Failed attempts (retried or dropped).
    pub(crate) failed_attempts: u64,
}

/// The remote sequencer's (the cluster backplane's) counters for the
/// exposition.
pub(crate) struct RemoteFigures {
    /// Room messages sequenced in Redis for this node.
    pub(crate) published: u64,
    /// Ranges of messages lost between Redis and this node.
    pub(crate) gaps: u64,
    /// Holes filled from a room's history stream.
    pub(crate) repairs: u64,
    /// Bytes of catch-up messages kept.
    pub(crate) catchup_bytes: u64,
    /// Catch-up messages forgotten for the history budget.
    pub(crate) catchup_trimmed: u64,
    /// The command and subscriber connections: up (0/1), and how many
    /// times each came back.
    pub(crate) links: [(&'static str, u64, u64); 2],
    /// Operations refused by the cluster, by code.
    pub(crate) refusals: Vec<(&'static str, u64)>,
}

impl RemoteFigures {
    /// A snapshot of `counters`.
    pub(crate) fn of(counters: &RemoteCounters) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        RemoteFigures {
            published: counters.published.load(Relaxed),
            gaps: counters.gaps.load(Relaxed),
            repairs: counters.repairs.load(Relaxed),
            catchup_bytes: counters.catchup_bytes.load(Relaxed),
            catchup_trimmed: counters.catchup_trimmed.load(Relaxed),
            links: [
                (
                    "commands",
                    counters.commands_up.load(Relaxed),
                    counters.commands_reconnects.load(Relaxed),
                ),
                (
                    "subscriber",
                    counters.subscriber_up.load(Relaxed),
                    counters.subscriber_reconnects.load(Relaxed),
                ),
            ],
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
pub(crate) fn render(shards: &[crate::shard::ShardStats], process: &ProcessFigures) -> String {
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
    let proxy_refused = counter_family(
        &mut r,
        "proxy_header_refusals",
        "Connections closed at a PROXY protocol header (untrusted, malformed, wrong version)",
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
    let by_protocol = gauge_family(
        &mut r,
        "protocol_connections",
        "Open WebSocket connections, by protocol (native, pusher)",
    );
    let homed = gauge_family(&mut r, "rooms_homed", "Rooms homed on the shard");
    let history = gauge_family(
        &mut r,
        "history_bytes",
        "Bytes of history kept by the rooms homed on the shard",
    );
    let trimmed = counter_family(
        &mut r,
        "history_trimmed_messages",
        "Messages dropped from history for limits.max_history_bytes_total (oldest of the largest rooms first)",
    );
    let inbox = gauge_family(&mut r, "inbox_items", "Items waiting in a shard inbox");
    for s in shards {
        let i = s.shard;
        connections
            .get_or_create(&shard_label(i))
            .set(to_i64(s.connections));
        connects
            .get_or_create(&shard_label(i))
            .inc_by(s.counters.connects);
        let native = s.connections.saturating_sub(s.pusher_connections);
        by_protocol
            .get_or_create(&with(i, "protocol", "native"))
            .set(to_i64(native));
        by_protocol
            .get_or_create(&with(i, "protocol", "pusher"))
            .set(to_i64(s.pusher_connections));
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
        proxy_refused
            .get_or_create(&shard_label(i))
            .inc_by(s.counters.proxy_refused);
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
        history
            .get_or_create(&shard_label(i))
            .set(to_i64(s.history_bytes));
        trimmed
            .get_or_create(&shard_label(i))
            .inc_by(s.history_trimmed_total);
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
    let memory = &process.memory;
    let budget = Gauge::<i64>::default();
    budget.set(to_i64(memory.budget));
    r.register(
        "memory_budget_bytes",
        "limits.memory_budget_bytes: above it new connections and rooms are refused",
        budget,
    );
    let over = Gauge::<i64>::default();
    over.set(i64::from(memory.over));
    r.register(
        "memory_over_budget",
        "1 while the last reading of resident memory was above the budget",
        over,
    );
    let refused = counter_family(
        &mut r,
        "memory_budget_refusals",
        "Connections (503 server_full) and rooms (over_memory_budget) refused over the memory budget",
    );
    for (what, n) in [
        ("connection", memory.refused_connections),
        ("room", memory.refused_rooms),
    ] {
        refused
            .get_or_create(&vec![("what".into(), what.into())])
            .inc_by(n);
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
            (
                "cluster_catchup_trimmed_messages",
                "Catch-up messages this node forgot for limits.max_history_bytes_total",
                cluster.catchup_trimmed,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            r.register(name, help, counter);
        }
        let catchup = Gauge::<i64>::default();
        catchup.set(to_i64(cluster.catchup_bytes));
        r.register(
            "cluster_catchup_bytes",
            "Bytes of recent room messages this node keeps to catch up late joiners",
            catchup,
        );
        let connected = gauge_family(
            &mut r,
            "cluster_connected",
            "1 while this node's Redis connection is up, by connection (commands, subscriber)",
        );
        let reconnects = counter_family(
            &mut r,
            "cluster_reconnects",
            "Times this node's Redis connection came back after a loss, by connection",
        );
        for (link, up, back) in cluster.links {
            let label = vec![("connection".to_string(), link.to_string())];
            connected.get_or_create(&label).set(to_i64(up));
            reconnects.get_or_create(&label).inc_by(back);
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
    if let Some(hooks) = &process.webhooks {
        let events = counter_family(
            &mut r,
            "pusher_webhook_events",
            "Pusher webhook events, by outcome (sent: a 2xx answer; dropped: a full queue or every attempt failed)",
        );
        for (outcome, n) in [("sent", hooks.sent), ("dropped", hooks.dropped)] {
            events
                .get_or_create(&vec![("outcome".into(), outcome.into())])
                .inc_by(n);
        }
        let failed = Counter::<u64>::default();
        failed.inc_by(hooks.failed_attempts);
        r.register(
            "pusher_webhook_failed_attempts",
            "Pusher webhook requests that failed (each retried with backoff, or its events dropped)",
            failed,
        );
    }
    if !process.invalid_data.is_empty() {
        let refused = counter_family(
            &mut r,
            "invalid_data",
            "Publishes refused with `invalid_data` (data not matching the schema), by namespace",
        );
        for (prefix, n) in &process.invalid_data {
            refused
                .get_or_create(&vec![("namespace".into(), prefix.to_string())])
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
pub(crate) fn process_figures(
    rooms: u64,
    memory: MemoryFigures,
    remote: Option<&RemoteCounters>,
    invalid_data: Vec<(std::sync::Arc<str>, u64)>,
    webhooks: Option<WebhookFigures>,
) -> ProcessFigures {
    let rss_bytes = crate::memory::resident_bytes();
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
        memory,
        rss_bytes,
        cpu_seconds,
        cluster: remote.map(RemoteFigures::of),
        invalid_data,
        webhooks,
    }
}
