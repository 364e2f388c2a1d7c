//! Short runs of each scenario against a real broker on port 0, checking
//! exact delivery counts and the JSON schema of the results.

use std::process::Command;

use serde_json::Value;
use shardcast::{Broker, Config, Overrides};

fn broker(shards: usize) -> Broker {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
    };
    let config = Config::load_from(None, &[], &overrides).expect("config");
    Broker::start(config).expect("broker")
}

fn run(args: &[&str]) -> (i32, String, Value) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_file = std::env::temp_dir().join(format!("loadtest-{}-{n}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(args)
        .arg("--out")
        .arg(&out_file)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let json = std::fs::read_to_string(&out_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&out_file);
    (output.status.code().unwrap_or(-1), stdout, json)
}

#[test]
fn fanout_max_rate_is_lossless_with_exact_counts() {
    let b = broker(2);
    let url = format!("ws://{}/ws", b.local_addr());
    let pid = std::process::id().to_string();
    let (code, out, json) = run(&[
        "fanout",
        "--url",
        &url,
        "--rooms",
        "2",
        "--members",
        "25",
        "--publishers",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["scenario"], "fanout");
    assert_eq!(json["parameters"]["members"], 25);
    let r = &json["results"];
    let published = r["published_total"].as_u64().expect("published");
    assert!(published > 0, "{out}");
    assert_eq!(r["expected_deliveries"].as_u64(), Some(published * 25));
    assert_eq!(r["delivered_total"], r["expected_deliveries"]);
    assert_eq!(r["delivery_ratio"], 1.0);
    assert_eq!(r["checks"]["lossless"], true);
    assert_eq!(r["checks"]["missing"], 0);
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_ms"][key].is_number(), "{key}");
    }
    assert!(r["deliveries_per_sec"].as_f64().is_some_and(|d| d > 0.0));
    assert!(r["window"]["server_cpu_seconds"].is_number());
    assert!(json["cores"].as_u64().is_some_and(|c| c >= 1));
    b.shutdown();
}

#[test]
fn fanout_fixed_rate_publishes_at_that_rate() {
    let b = broker(2);
    let url = format!("ws://{}/ws", b.local_addr());
    let (code, out, json) = run(&[
        "fanout",
        "--url",
        &url,
        "--members",
        "10",
        "--rate",
        "50",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 0, "{out}");
    let r = &json["results"];
    let rate = r["publishes_per_sec"].as_f64().expect("rate");
    assert!((35.0..=65.0).contains(&rate), "publishes/s {rate}: {out}");
    assert_eq!(r["checks"]["lossless"], true);
    b.shutdown();
}

#[test]
fn idle_holds_connections_and_reports_rss() {
    let b = broker(2);
    let url = format!("ws://{}/ws", b.local_addr());
    let pid = std::process::id().to_string();
    let (code, out, json) = run(&[
        "idle",
        "--url",
        &url,
        "--connections",
        "50",
        "--room-size",
        "5",
        "--duration",
        "1",
        "--warmup",
        "1",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["results"]["open"], 50);
    assert!(json["results"]["server_rss_kib_per_connection"].is_number());
    b.shutdown();
}

#[test]
fn bad_arguments_fail_clearly() {
    let (code, out, _) = run(&["fanout", "--url", "ws://10.1.2.3:80/ws"]);
    assert_eq!(code, 2);
    assert!(out.contains("loopback"), "{out}");
    let (code, out, _) = run(&["fanout", "--rate", "fast"]);
    assert_eq!(code, 2);
    assert!(out.contains("--rate"), "{out}");
    let (code, out, _) = run(&["idle", "--connections", "0"]);
    assert_eq!(code, 2);
    assert!(out.contains("--connections"), "{out}");
    let (code, out, _) = run(&[
        "fanout",
        "--url",
        "ws://127.0.0.1:1/ws",
        "--members",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 2);
    assert!(out.contains("member 0"), "{out}");
}
