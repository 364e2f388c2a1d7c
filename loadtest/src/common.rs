//! Options every scenario shares, and the plumbing they use: source
//! addresses, the measured window, server/generator CPU sampling, output.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::procstat::{self, ProcSample};
use crate::wsclient::{Credentials, Target};

/// Most connections one run may open (a bound on every loop).
pub(crate) const MAX_CONNECTIONS: usize = 200_000;
/// Longest run, seconds.
pub(crate) const MAX_DURATION_SECS: u64 = 3_600;
/// Longest wait for one connection's setup (upgrade, join, ack).
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for stragglers after the measured window.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Options of every scenario.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Common {
    /// WebSocket URL of the server (ws://IP:PORT/ws).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub(crate) url: String,
    /// Measured time, seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Time before measuring, seconds.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: u64,
    /// PID of the server, to sample its CPU time and RSS (Linux).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// More processes of the system under test (the other nodes of a
    /// cluster, its Redis), comma-separated: their CPU time and RSS are
    /// added to the server's in the figures.
    #[arg(long, value_delimiter = ',', requires = "server_pid")]
    pub(crate) also_pid: Vec<u32>,
    /// Loopback source addresses to spread client sockets over, as a range
    /// (127.0.0.1-127.0.0.8) or a comma list.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) source_ips: String,
    /// Prefix of user ids and room names, so parallel runs don't collide.
    #[arg(long, default_value = "lt")]
    pub(crate) user_prefix: String,
    /// Connections opened at once during setup.
    #[arg(long, default_value_t = 256)]
    pub(crate) connect_concurrency: usize,
    /// A JWT every connection presents (servers with auth.mode = "jwt").
    #[arg(long, conflicts_with = "token_secret")]
    pub(crate) token: Option<String>,
    /// HS256 secret to mint one token per simulated user (sub = its user
    /// id), so a run is many distinct users. Prefer the environment variable.
    #[arg(long, env = "SHARDCAST_LOADTEST_TOKEN_SECRET", hide_env_values = true)]
    pub(crate) token_secret: Option<String>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// CA certificates (PEM) to trust for a `wss://` URL.
    #[arg(long)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Offer permessage-deflate (no context takeover); compressed frames
    /// from the server are inflated, and bytes read per delivery reported.
    #[arg(long)]
    pub(crate) compression: bool,
}

impl Common {
    /// Check bounds and parse the URL and source addresses.
    pub(crate) fn resolve(&self) -> Result<(Target, Vec<IpAddr>), String> {
        if self.duration == 0 || self.duration > MAX_DURATION_SECS {
            return Err(format!(
                "--duration must be 1..={MAX_DURATION_SECS} seconds"
            ));
        }
        if self.warmup > MAX_DURATION_SECS {
            return Err(format!(
                "--warmup must be at most {MAX_DURATION_SECS} seconds"
            ));
        }
        if self.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        let mut target = Target::parse(&self.url)?;
        if Target::is_tls_url(&self.url) {
            let Some(ca) = &self.ca_file else {
                return Err(format!(
                    "{}: a wss:// URL needs --ca-file (the CA that signed the server's certificate)",
                    self.url
                ));
            };
            target = target.with_tls(ca)?;
        }
        target.deflate = self.compression;
        if !target.addr.ip().is_loopback() {
            return Err(format!(
                "{}: the load generator only targets loopback addresses (127.0.0.0/8, ::1)",
                self.url
            ));
        }
        let sources = parse_sources(&self.source_ips)?;

        target.credentials = match (&self.token, &self.token_secret) {
            (Some(t), _) if t.is_empty() => return Err("--token is empty".into()),
            (Some(t), _) => Credentials::Token(t.clone()),
            (None, Some(s)) if s.len() < 32 => {
                return Err(
                    "--token-secret must be at least 32 bytes (as the server requires)".into(),
                );
            }
            (None, Some(s)) => Credentials::Secret {
                secret: s.clone(),
                // Outlive the whole run, warm-up and drain included.
                ttl_secs: self.warmup + self.duration + 3_600,
            },
            (None, None) => Credentials::DevUser,
        };
        Ok((target, sources))
    }
}

/// Parse `127.0.0.1-127.0.0.8` or `127.0.0.1,127.0.0.2`; only loopback.
pub(crate) fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: std::net::Ipv4Addr = a.trim().parse().map_err(|_| format!("bad address {a}"))?;
            let b: std::net::Ipv4Addr = b.trim().parse().map_err(|_| format!("bad address {b}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 255 {
                return Err(format!(
                    "bad range {part}: at most 256 addresses, low to high"
                ));
            }
            out.extend((a..=b).map(|n| IpAddr::V4(n.into())));
        } else {
            out.push(part.parse().map_err(|_| format!("bad address {part}"))?);
        }
    }
    if out.is_empty() {
        return Err("--source-ips names no address".into());
    }
    if let Some(bad) = out.iter().find(|ip| !ip.is_loopback()) {
        return Err(format!("source address {bad} is not loopback"));
    }
    Ok(out)
}

/// CPU and memory of the server and of the generator over a window.
pub(crate) struct Window {
    started: Instant,
    server_pids: Vec<String>,
    server_start: Option<ProcSample>,
    self_start: Option<ProcSample>,
}

/// What a [`Window`] measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowFigures {
    /// Wall time, seconds.
    pub(crate) secs: f64,
    /// Server CPU seconds used in the window.
    pub(crate) server_cpu_secs: Option<f64>,
    /// Server RSS at the start and end, KiB.
    pub(crate) server_rss_kib: Option<(u64, u64)>,
    /// Generator CPU seconds used in the window.
    pub(crate) generator_cpu_secs: f64,
}

impl Window {
    /// Start measuring now (the server is `--server-pid` and every
    /// `--also-pid`).
    pub(crate) fn start(common: &Common) -> Window {
        let server_pids: Vec<String> = common
            .server_pid
            .iter()
            .chain(&common.also_pid)
            .map(|p| p.to_string())
            .collect();
        Window {
            started: Instant::now(),
            server_start: sample_all(&server_pids),
            server_pids,
            self_start: procstat::sample("self"),
        }
    }

    /// Stop and report.
    pub(crate) fn finish(&self) -> WindowFigures {
        let secs = self.started.elapsed().as_secs_f64();
        let server_end = sample_all(&self.server_pids);
        let self_end = procstat::sample("self");
        let (server_cpu_secs, server_rss_kib) = match (self.server_start, server_end) {
            (Some(a), Some(b)) => (Some(b.cpu_secs - a.cpu_secs), Some((a.rss_kib, b.rss_kib))),
            _ => (None, None),
        };
        let generator_cpu_secs = match (self.self_start, self_end) {
            (Some(a), Some(b)) => b.cpu_secs - a.cpu_secs,
            _ => 0.0,
        };
        WindowFigures {
            secs,
            server_cpu_secs,
            server_rss_kib,
            generator_cpu_secs,
        }
    }
}

/// The sum of the samples of `pids`; `None` if there are none or one
/// cannot be read.
fn sample_all(pids: &[String]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = ProcSample::default();
    for pid in pids {
        let s = procstat::sample(pid)?;
        total.cpu_secs += s.cpu_secs;
        total.rss_kib += s.rss_kib;
    }
    Some(total)
}

impl WindowFigures {
    /// The figures as JSON.
    pub(crate) fn to_json(self) -> Value {
        json!({
            "seconds": self.secs,
            "server_cpu_seconds": self.server_cpu_secs,
            "server_rss_kib_start": self.server_rss_kib.map(|r| r.0),
            "server_rss_kib_end": self.server_rss_kib.map(|r| r.1),
            "generator_cpu_seconds": self.generator_cpu_secs,
            "generator_cores_used": self.generator_cpu_secs / self.secs.max(1e-9),
        })
    }

    /// Print the CPU lines of the summary, with a warning when the generator
    /// saturated its cores.
    pub(crate) fn print(self) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let used = self.generator_cpu_secs / self.secs.max(1e-9);
        println!(
            "  generator CPU      {:.2} s ({used:.2} cores)",
            self.generator_cpu_secs
        );
        if let Some(cpu) = self.server_cpu_secs {
            println!(
                "  server CPU         {cpu:.2} s ({:.2} cores)",
                cpu / self.secs.max(1e-9)
            );
        }
        if let Some((a, b)) = self.server_rss_kib {
            println!("  server RSS         {} KiB -> {} KiB", a, b);
        }
        if used > 0.9 * cores {
            println!(
                "  WARNING: the generator used {used:.2} of {cores} cores: it may be the limit, not the server"
            );
        }
    }
}

/// Machine and run description for JSON results.
pub(crate) fn environment(common: &Common, scenario: &str, parameters: Value) -> Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "scenario": scenario,
        "parameters": parameters,
        "url": common.url,
        "git_commit": commit,
        "cpu_model": cpu_model,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "generator_version": env!("CARGO_PKG_VERSION"),
    })
}

/// Write `result` to `--out` if given.
pub(crate) fn write_out(common: &Common, result: &Value) -> Result<(), String> {
    if let Some(path) = &common.out {
        let text = serde_json::to_string_pretty(result).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("  results written to {}", path.display());
    }
    Ok(())
}

/// Quantiles stored as `percentiles` in latency JSON, for HDR-style charts.
pub(crate) const STORED_QUANTILES: [f64; 11] = [
    0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

/// Percentiles of a microsecond histogram, in milliseconds, as JSON, with
/// `percentiles: [[q, ms], ...]` for every q of [`STORED_QUANTILES`].
pub(crate) fn latency_json(h: &Histogram<u64>) -> Value {
    let pct = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let percentiles: Vec<Value> = STORED_QUANTILES
        .iter()
        .map(|&q| json!([q, pct(q)]))
        .collect();
    json!({
        "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p999": pct(0.999),
        "max": h.max() as f64 / 1000.0, "samples": h.len(),
        "percentiles": percentiles,
    })
}

/// Print the percentiles of a microsecond histogram, in milliseconds.
pub(crate) fn print_latency(label: &str, h: &Histogram<u64>) {
    let pct = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  {label:<18} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} samples)",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        h.max() as f64 / 1000.0,
        h.len()
    );
}

/// Nanoseconds since `origin` (the run's one clock).
pub(crate) fn nanos_since(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            parse_sources("127.0.0.1-127.0.0.4").expect("range").len(),
            4
        );
        assert_eq!(parse_sources("127.0.0.1,127.0.0.9").expect("list").len(), 2);
        assert!(parse_sources("10.0.0.1").is_err());
        assert!(parse_sources("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_sources("").is_err());
    }
}
