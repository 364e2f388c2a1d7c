//! `report`: read result files written by `--out` and write `DIR/report.md`
//! (a table per scenario, results side by side) with SVG charts next to it.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::charts::{self, Series};

/// Most result files one report takes.
const MAX_RESULTS: usize = 64;
/// Largest result file read, bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// File name of the latency percentile chart.
pub(crate) const LATENCY_SVG: &str = "latency.svg";
/// File name of the throughput-over-time chart.
pub(crate) const THROUGHPUT_SVG: &str = "throughput.svg";

/// `report` options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ReportArgs {
    /// Result files written by a scenario's `--out`.
    #[arg(required = true, num_args = 1..)]
    pub(crate) files: Vec<PathBuf>,
    /// Directory to write report.md and the charts to (created if missing).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// One result file.
struct Loaded {
    /// Column label: the file stem, made unique.
    label: String,
    path: PathBuf,
    json: Value,
}

/// Read every file, write the report; returns the report's path.
pub(crate) fn run(args: &ReportArgs) -> Result<PathBuf, String> {
    if args.files.len() > MAX_RESULTS {
        return Err(format!(
            "{} result files: at most {MAX_RESULTS}",
            args.files.len()
        ));
    }
    let results = load_all(&args.files)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let mut charts_written = Vec::new();
    let latency = latency_series(&results);
    if !latency.is_empty() {
        charts::latency_chart(&args.out.join(LATENCY_SVG), &latency)?;
        charts_written.push(("latency", LATENCY_SVG));
    }
    let throughput = throughput_series(&results);
    if !throughput.is_empty() {
        charts::throughput_chart(&args.out.join(THROUGHPUT_SVG), &throughput)?;
        charts_written.push(("throughput", THROUGHPUT_SVG));
    }
    let markdown = render(&results, &charts_written);
    let path = args.out.join("report.md");
    std::fs::write(&path, markdown).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn load_all(files: &[PathBuf]) -> Result<Vec<Loaded>, String> {
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let json = load(path)?;
        let stem = path
            .file_stem()
            .map_or_else(|| "result".to_string(), |s| s.to_string_lossy().to_string());
        let mut label = stem.clone();
        let mut n = 2;
        while !used.insert(label.clone()) {
            label = format!("{stem}-{n}");
            n += 1;
        }
        out.push(Loaded {
            label,
            path: path.clone(),
            json,
        });
    }
    Ok(out)
}

/// Read and check one result file.
fn load(path: &Path) -> Result<Value, String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{name}: {} bytes, at most {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{name}: invalid JSON: {e}"))?;
    if !json["scenario"].is_string() || !json["results"].is_object() {
        return Err(format!(
            "{name}: not a shardcast-loadtest result (no `scenario` and `results`)"
        ));
    }
    Ok(json)
}

/// A number at the first of `pointers` that has one.
fn num(json: &Value, pointers: &[&str]) -> Option<f64> {
    pointers
        .iter()
        .find_map(|p| json.pointer(p).and_then(Value::as_f64))
}

/// Where a result keeps its latency figures.
const LATENCY_PREFIXES: [&str; 3] = [
    "/results/latency_ms",
    "/results/fast/latency_ms",
    "/results/handshake_ms",
];

fn latency_object(json: &Value) -> Option<&Value> {
    LATENCY_PREFIXES
        .iter()
        .find_map(|p| json.pointer(p).filter(|v| v.is_object()))
}

fn latency_series(results: &[Loaded]) -> Vec<Series> {
    results
        .iter()
        .filter_map(|r| {
            let pcts = latency_object(&r.json)?.get("percentiles")?.as_array()?;
            let points: Vec<(f64, f64)> = pcts
                .iter()
                .filter_map(|pair| {
                    let q = pair.get(0)?.as_f64()?;
                    let ms = pair.get(1)?.as_f64()?;
                    Some((charts::percentile_x(q)?, ms))
                })
                .collect();
            (!points.is_empty()).then(|| Series {
                label: r.label.clone(),
                points,
            })
        })
        .collect()
}

fn throughput_series(results: &[Loaded]) -> Vec<Series> {
    results
        .iter()
        .filter_map(|r| {
            let timeline = r.json.pointer("/results/timeline")?.as_array()?;
            let points: Vec<(f64, f64)> = timeline
                .iter()
                .filter_map(|s| Some((s["t"].as_f64()?, s["deliveries_per_sec"].as_f64()?)))
                .collect();
            (!points.is_empty()).then(|| Series {
                label: r.label.clone(),
                points,
            })
        })
        .collect()
}

/// A table row: its label and how to get its cell from a result.
struct Row {
    label: &'static str,
    cell: fn(&Value) -> Option<String>,
}

const ROWS: &[Row] = &[
    Row {
        label: "parameters",
        cell: parameters_cell,
    },
    Row {
        label: "publishes/s",
        cell: |j| num(j, &["/results/publishes_per_sec"]).map(|v| format!("{v:.0}")),
    },
    Row {
        label: "actions/s",
        cell: |j| num(j, &["/results/actions_per_sec"]).map(|v| format!("{v:.0}")),
    },
    Row {
        label: "**deliveries/s**",
        cell: |j| {
            num(
                j,
                &[
                    "/results/deliveries_per_sec",
                    "/results/fast/deliveries_per_sec",
                ],
            )
            .map(|v| format!("**{v:.0}**"))
        },
    },
    Row {
        label: "deliveries per server CPU-second",
        cell: per_cpu_cell,
    },
    Row {
        label: "delivery ratio",
        cell: |j| {
            num(
                j,
                &["/results/delivery_ratio", "/results/fast/delivery_ratio"],
            )
            .map(|v| format!("{v:.6}"))
        },
    },
    Row {
        label: "latency p50 (ms)",
        cell: |j| latency_cell(j, "p50"),
    },
    Row {
        label: "latency p90 (ms)",
        cell: |j| latency_cell(j, "p90"),
    },
    Row {
        label: "latency p99 (ms)",
        cell: |j| latency_cell(j, "p99"),
    },
    Row {
        label: "latency p99.9 (ms)",
        cell: |j| latency_cell(j, "p999"),
    },
    Row {
        label: "latency max (ms)",
        cell: |j| latency_cell(j, "max"),
    },
    Row {
        label: "latency samples",
        cell: |j| {
            latency_object(j)?
                .get("samples")?
                .as_u64()
                .map(|n| n.to_string())
        },
    },
    Row {
        label: "connections opened / failed",
        cell: |j| {
            let open = num(j, &["/results/open", "/results/opened"])?;
            let failed = num(j, &["/results/failed"]).unwrap_or(0.0);
            Some(format!("{open:.0} / {failed:.0}"))
        },
    },
    Row {
        label: "connections/s (ramp)",
        cell: |j| num(j, &["/results/connections_per_sec"]).map(|v| format!("{v:.0}")),
    },
    Row {
        label: "checks",
        cell: checks_cell,
    },
    Row {
        label: "slow members",
        cell: slow_cell,
    },
    Row {
        label: "**server RSS per connection (KiB)**",
        cell: |j| {
            num(j, &["/results/server_rss_kib_per_connection"]).map(|v| format!("**{v:.2}**"))
        },
    },
    Row {
        label: "server RSS (MiB)",
        cell: rss_cell,
    },
    Row {
        label: "server CPU (cores)",
        cell: |j| {
            let cpu = num(j, &["/results/window/server_cpu_seconds"])?;
            let secs = num(j, &["/results/window/seconds"])?;
            Some(format!("{:.2}", cpu / secs.max(1e-9)))
        },
    },
    Row {
        label: "generator CPU",
        cell: |j| {
            let cpu = num(j, &["/results/window/generator_cpu_seconds"])?;
            let cores = num(j, &["/results/window/generator_cores_used"]).unwrap_or(0.0);
            Some(format!("{cpu:.2} s ({cores:.2} cores)"))
        },
    },
];

fn parameters_cell(json: &Value) -> Option<String> {
    let params = json.get("parameters")?.as_object()?;
    let parts: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_object())
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    Some(parts.join(" "))
}

fn per_cpu_cell(json: &Value) -> Option<String> {
    let stored = json
        .pointer("/results/deliveries_per_server_cpu_sec")
        .and_then(Value::as_f64);
    let computed = || {
        let delivered = num(
            json,
            &[
                "/results/delivered_window",
                "/results/fast/delivered_window",
            ],
        )?;
        let cpu = num(json, &["/results/window/server_cpu_seconds"]).filter(|c| *c > 0.0)?;
        Some(delivered / cpu)
    };
    stored.or_else(computed).map(|v| format!("{v:.0}"))
}

fn latency_cell(json: &Value, key: &str) -> Option<String> {
    let ms = latency_object(json)?.get(key)?.as_f64()?;
    Some(format!("{ms:.3}"))
}

/// "lossless" or "NOT lossless" followed by every non-zero count.
fn checks_cell(json: &Value) -> Option<String> {
    let checks = ["/results/checks", "/results/fast/checks"]
        .iter()
        .find_map(|p| json.pointer(p))?
        .as_object()?;
    let verdict = match checks.get("lossless").and_then(Value::as_bool) {
        Some(true) => "lossless",
        Some(false) => "**NOT lossless**",
        None => "",
    };
    let counts: Vec<String> = checks
        .iter()
        .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| format!("{k} {n}")))
        .collect();
    Some(if counts.is_empty() {
        verdict.to_string()
    } else {
        format!("{verdict} ({})", counts.join(", "))
    })
}

/// The slow-consumer scenario's stalled members: how they ended.
fn slow_cell(json: &Value) -> Option<String> {
    let slow = json.pointer("/results/slow")?.as_object()?;
    let get = |k: &str| slow.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(format!(
        "{} members: closed 4000 {}, gaps {} ({} msgs), protocol violations {}",
        get("members"),
        get("closed_4000"),
        get("gaps"),
        get("gap_messages"),
        get("protocol_violations")
    ))
}

fn rss_cell(json: &Value) -> Option<String> {
    let mib = |kib: f64| kib / 1024.0;
    if let (Some(a), Some(b)) = (
        num(json, &["/results/window/server_rss_kib_start"]),
        num(json, &["/results/window/server_rss_kib_end"]),
    ) {
        return Some(format!("{:.1} → {:.1}", mib(a), mib(b)));
    }
    let before = num(json, &["/results/server_rss_kib_before"])?;
    let after = num(
        json,
        &[
            "/results/server_rss_kib_held",
            "/results/server_rss_kib_after",
        ],
    )?;
    Some(format!("{:.1} → {:.1}", mib(before), mib(after)))
}

/// Escape a table cell.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The markdown of the report.
fn render(results: &[Loaded], charts_written: &[(&str, &str)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# shardcast load test report\n");
    let _ = writeln!(
        md,
        "| result | file | scenario | commit | cores | CPU |\n|---|---|---|---|---:|---|"
    );
    for r in results {
        let text = |k: &str| r.json[k].as_str().unwrap_or("?").to_string();
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} | {} | {} |",
            cell_text(&r.label),
            cell_text(&r.path.display().to_string()),
            cell_text(&text("scenario")),
            cell_text(&text("git_commit")),
            r.json["cores"]
                .as_u64()
                .map_or("?".into(), |c| c.to_string()),
            cell_text(&text("cpu_model")),
        );
    }
    let mut scenarios: Vec<&str> = Vec::new();
    for r in results {
        let s = r.json["scenario"].as_str().unwrap_or("?");
        if !scenarios.contains(&s) {
            scenarios.push(s);
        }
    }
    for scenario in scenarios {
        let group: Vec<&Loaded> = results
            .iter()
            .filter(|r| r.json["scenario"].as_str() == Some(scenario))
            .collect();
        let _ = writeln!(md, "\n## {scenario}\n");
        let _ = write!(md, "| |");
        for r in &group {
            let _ = write!(md, " {} |", cell_text(&r.label));
        }
        let _ = write!(md, "\n|---|");
        for _ in &group {
            let _ = write!(md, "---:|");
        }
        md.push('\n');
        for row in ROWS {
            let cells: Vec<Option<String>> = group.iter().map(|r| (row.cell)(&r.json)).collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(md, "| {} |", row.label);
            for c in cells {
                let _ = write!(md, " {} |", cell_text(c.as_deref().unwrap_or("—")));
            }
            md.push('\n');
        }
    }
    if !charts_written.is_empty() {
        let _ = writeln!(md, "\n## Charts\n");
    }
    for (name, file) in charts_written {
        let caption = match *name {
            "latency" => {
                "Latency by percentile (HDR style: the x axis is log(1/(1-q))), one line per result."
            }
            _ => "Deliveries per second, one sample per second, warm-up included.",
        };
        let _ = writeln!(md, "{caption}\n\n![{name}]({file})\n");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_cell_lists_nonzero_counts() {
        let j = json!({"results": {"checks": {"lossless": false, "missing": 3, "gaps": 0}}});
        assert_eq!(
            checks_cell(&j).as_deref(),
            Some("**NOT lossless** (missing 3)")
        );
        let j = json!({"results": {"fast": {"checks": {"lossless": true, "missing": 0}}}});
        assert_eq!(checks_cell(&j).as_deref(), Some("lossless"));
    }

    #[test]
    fn per_cpu_is_computed_when_absent() {
        let j =
            json!({"results": {"delivered_window": 1000, "window": {"server_cpu_seconds": 2.0}}});
        assert_eq!(per_cpu_cell(&j).as_deref(), Some("500"));
    }
}
