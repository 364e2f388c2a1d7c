//! Short runs of each scenario against a real broker on port 0, checking
//! exact delivery counts and the JSON schema of the results.

use std::process::Command;

use serde_json::Value;
use shardcast::{Broker, Config, Overrides};

fn broker(shards: usize) -> Broker {
    broker_with(shards, |_| {})
}

/// A broker on port 0 with `tune` applied to its config.
fn broker_with(shards: usize, tune: impl FnOnce(&mut Config)) -> Broker {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        ..Overrides::default()
    };
    let mut config = Config::load_from(None, &[], &overrides).expect("config");
    tune(&mut config);
    Broker::start(config).expect("broker")
}

/// Outbound queues small enough that a member that stops reading overflows
/// within a short run.
fn small_queues(config: &mut Config) {
    config.limits.outbound_queue_messages = 64;
    config.limits.outbound_queue_bytes = 65_536;
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

/// A CA and a server certificate it signed for 127.0.0.1, written to a
/// fresh directory: (CA file, certificate file, key file).
fn test_tls_files() -> (std::path::PathBuf, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let dir = std::env::temp_dir().join(format!("loadtest-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca_cert.pem()).expect("ca");
    std::fs::write(&cert_file, leaf.pem()).expect("cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("key");
    let path = |p: std::path::PathBuf| p.to_string_lossy().to_string();
    (ca_file, path(cert_file), path(key_file))
}

/// Over TLS with permessage-deflate: every member negotiates it, reads
/// compressed messages it inflates, and the run stays lossless with fewer
/// bytes read than the messages hold.
#[test]
fn fanout_over_tls_with_compression_is_lossless_and_reads_fewer_bytes() {
    let (ca_file, cert, key) = test_tls_files();
    let b = broker_with(2, |c| {
        c.server.tls_cert_file = Some(cert);
        c.server.tls_key_file = Some(key);
        c.server.compression = true;
    });
    let url = format!("wss://{}/ws", b.local_addr());
    let pid = std::process::id().to_string();
    let ca = ca_file.to_string_lossy().to_string();
    let (code, out, json) = run(&[
        "fanout",
        "--url",
        &url,
        "--ca-file",
        &ca,
        "--compression",
        "--rooms",
        "1",
        "--members",
        "20",
        "--payload",
        "2048",
        "--payload-text",
        "words",
        "--rate",
        "50",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
    ]);
    b.shutdown();
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["parameters"]["tls"], true);
    let r = &json["results"];
    assert_eq!(r["members_compressed"], 20, "{out}");
    assert_eq!(r["checks"]["lossless"], true, "{out}");
    let bytes = r["bytes_read_per_delivery"].as_f64().expect("bytes");
    assert!(
        bytes > 0.0 && bytes < 2048.0,
        "compressed reads: {bytes} bytes per delivery\n{out}"
    );
}

/// Without `--compression` the same messages cost more than their filler.
#[test]
fn fanout_without_compression_reads_the_whole_messages() {
    let b = broker_with(2, |c| c.server.compression = true);
    let url = format!("ws://{}/ws", b.local_addr());
    let pid = std::process::id().to_string();
    let (code, out, json) = run(&[
        "fanout",
        "--url",
        &url,
        "--rooms",
        "1",
        "--members",
        "5",
        "--payload",
        "2048",
        "--payload-text",
        "words",
        "--rate",
        "50",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
    ]);
    b.shutdown();
    assert_eq!(code, 0, "{out}");
    let r = &json["results"];
    assert_eq!(r["members_compressed"], 0, "{out}");
    let bytes = r["bytes_read_per_delivery"].as_f64().expect("bytes");
    assert!(bytes > 2048.0, "{bytes} bytes per delivery\n{out}");
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
    let percentiles = r["latency_ms"]["percentiles"]
        .as_array()
        .expect("percentiles");
    assert_eq!(percentiles.len(), 11);
    assert_eq!(percentiles[0][0], 0.5);
    assert_eq!(percentiles[10][0], 1.0);
    assert_eq!(percentiles[10][1], r["latency_ms"]["max"]);
    let timeline = r["timeline"].as_array().expect("timeline");
    // One sample per progress line (a 1 s run may end before the first).
    for (i, sample) in timeline.iter().enumerate() {
        assert_eq!(sample["t"].as_u64(), Some(i as u64 + 1));
        assert!(sample["deliveries_per_sec"].is_u64());
        assert!(sample["publishes_per_sec"].is_u64());
    }
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

#[test]
fn bad_arguments_of_new_scenarios_fail_clearly() {
    let cases: [(&[&str], &str); 15] = [
        (&["slow-consumer", "--fast", "0"], "--fast"),
        (&["slow-consumer", "--rate", "0"], "--rate"),
        (&["slow-consumer", "--overflow", "sometimes"], "--overflow"),
        (&["slow-consumer", "--payload", "9999999"], "--payload"),
        (&["connect", "--connections", "0"], "--connections"),
        (&["connect", "--rate=-5"], "--rate"),
        (&["connect", "--url", "ws://192.168.1.1:80/ws"], "loopback"),
        (&["chat", "--rooms", "0"], "--rooms"),
        (&["chat", "--rate", "0"], "--rate"),
        (
            &["fanout", "--member-url", "ws://10.0.0.1:80/ws"],
            "loopback",
        ),
        (&["fanout", "--members-only-on-others"], "--member-url"),
        (&["fanout", "--also-pid", "1"], "--server-pid"),
        (&["churn", "--rooms", "0"], "--rooms"),
        (&["churn", "--clients", "0"], "--clients"),
        (&["churn", "--rate", "0"], "--rate"),
    ];
    for (args, expected) in cases {
        let (code, out, json) = run(args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(expected), "{args:?}: {out}");
        assert!(json.is_null(), "{args:?} wrote results");
    }
    let (code, out, _) = run(&[
        "connect",
        "--url",
        "ws://127.0.0.1:1/ws",
        "--connections",
        "3",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("io: ConnectionRefused"), "{out}");
}

fn slow_consumer(overflow: &str) -> (String, Value) {
    let b = broker_with(2, small_queues);
    let url = format!("ws://{}/ws", b.local_addr());
    let pid = std::process::id().to_string();
    let (code, out, json) = run(&[
        "slow-consumer",
        "--url",
        &url,
        "--fast",
        "10",
        "--slow",
        "4",
        "--rate",
        "1000",
        "--payload",
        "256",
        "--overflow",
        overflow,
        "--duration",
        "2",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
    ]);
    b.shutdown();
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["scenario"], "slow-consumer");
    assert_eq!(json["parameters"]["overflow"], overflow);
    let r = &json["results"];
    let published = r["published_total"].as_u64().expect("published");
    assert!(published > 0, "{out}");
    assert_eq!(r["final_seq"].as_u64(), Some(published), "{out}");
    let fast = &r["fast"];
    assert_eq!(fast["expected_deliveries"].as_u64(), Some(published * 10));
    assert_eq!(fast["delivered_total"], fast["expected_deliveries"]);
    assert_eq!(fast["delivery_ratio"], 1.0);
    assert_eq!(fast["checks"]["lossless"], true);
    for key in ["p50", "p90", "p99", "p999", "max", "samples"] {
        assert!(fast["latency_ms"][key].is_number(), "{key}");
    }
    let slow = &r["slow"];
    assert_eq!(slow["members"], 4);
    assert_eq!(slow["protocol_violations"], 0, "{out}");
    assert_eq!(slow["missing"], 0, "{out}");
    assert_eq!(slow["out_of_order"], 0, "{out}");
    (out, r.clone())
}

#[test]
fn slow_consumer_disconnect_closes_slow_members_with_4000() {
    let (out, r) = slow_consumer("disconnect");
    let slow = &r["slow"];
    assert!(slow["closed_4000"].as_u64().is_some_and(|n| n > 0), "{out}");
    assert_eq!(slow["gaps"], 0, "{out}");
}

#[test]
fn slow_consumer_drop_sends_gaps_covering_every_seq() {
    let (out, r) = slow_consumer("drop");
    let slow = &r["slow"];
    let published = r["published_total"].as_u64().expect("published");
    assert_eq!(slow["closed_4000"], 0, "{out}");
    assert!(slow["gaps"].as_u64().is_some_and(|n| n > 0), "{out}");
    assert_eq!(slow["coverage_exact"], true, "{out}");
    assert_eq!(slow["covered_exactly"], 4, "{out}");
    let received = slow["received"].as_u64().expect("received");
    let gap_messages = slow["gap_messages"].as_u64().expect("gap messages");
    assert_eq!(received + gap_messages, 4 * published, "{out}");
}

#[test]
fn connect_opens_every_connection() {
    let b = broker(2);
    let url = format!("ws://{}/ws", b.local_addr());
    let (code, out, json) = run(&[
        "connect",
        "--url",
        &url,
        "--connections",
        "50",
        "--rate",
        "500",
        "--duration",
        "1",
    ]);
    b.shutdown();
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["scenario"], "connect");
    let r = &json["results"];
    assert_eq!(r["attempted"], 50);
    assert_eq!(r["opened"], 50, "{out}");
    assert_eq!(r["failed"], 0);
    assert_eq!(r["held"], 50, "{out}");
    assert_eq!(r["handshake_ms"]["samples"], 50);
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["handshake_ms"][key].is_number(), "{key}");
    }
    assert!(
        r["failures_by_status"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    );
}

#[test]
fn connect_counts_refusals_by_status() {
    let b = broker_with(2, |c| c.limits.max_connections = 10);
    let url = format!("ws://{}/ws", b.local_addr());
    let (code, out, json) = run(&[
        "connect",
        "--url",
        &url,
        "--connections",
        "50",
        "--rate",
        "1000",
        "--duration",
        "1",
    ]);
    b.shutdown();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("some connections failed"), "{out}");
    let r = &json["results"];
    assert_eq!(r["opened"], 10, "{out}");
    assert_eq!(r["failed"], 40, "{out}");
    assert_eq!(r["failures_by_status"]["503"], 40, "{out}");
    assert!(
        r["failures_by_kind"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    );
}

#[test]
fn chat_mix_is_lossless() {
    let b = broker(2);
    let url = format!("ws://{}/ws", b.local_addr());
    let pid = std::process::id().to_string();
    let (code, out, json) = run(&[
        "chat",
        "--url",
        &url,
        "--rooms",
        "10",
        "--room-size",
        "5",
        "--rate",
        "500",
        "--duration",
        "2",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
    ]);
    b.shutdown();
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["scenario"], "chat");
    assert_eq!(json["parameters"]["users"], 50);
    let r = &json["results"];
    let publish = r["actions"]["publish"].as_u64().expect("publishes");
    let send = r["actions"]["send"].as_u64().expect("sends");
    assert!(publish > 0 && send > 0, "{out}");
    for kind in ["members", "churn"] {
        assert!(r["actions"][kind].is_u64(), "{kind}");
    }
    assert_eq!(r["checks"]["lossless"], true, "{out}");
    assert_eq!(r["checks"]["missing"], 0);
    assert_eq!(r["checks"]["behind_final_seq"], 0);
    assert_eq!(r["direct"]["acked"].as_u64(), Some(send), "{out}");
    assert_eq!(r["direct"]["received"], r["direct"]["acked"]);
    assert_eq!(r["errors_total"], 0, "{out}");
    assert!(
        r["delivered_total"].as_u64().is_some_and(|d| d >= publish),
        "{out}"
    );
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_ms"][key].is_number(), "{key}");
    }
    let rate = r["actions_per_sec"].as_f64().expect("rate");
    assert!((400.0..=600.0).contains(&rate), "actions/s {rate}: {out}");
}

/// Poll `f` every 20 ms for up to 5 s; whether it became true.
fn eventually(f: impl Fn() -> bool) -> bool {
    for _ in 0..250 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

#[test]
fn churn_hops_rooms_and_reconnects_and_the_broker_ends_empty() {
    let b = broker_with(2, |c| c.room.empty_ttl_ms = 100);
    let url = format!("ws://{}/ws", b.local_addr());
    let (code, out, json) = run(&[
        "churn",
        "--url",
        &url,
        "--rooms",
        "20",
        "--clients",
        "6",
        "--rate",
        "60",
        "--reconnect-every",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["scenario"], "churn");
    let r = &json["results"];
    assert!(r["hops"].as_u64().is_some_and(|h| h >= 8), "{out}");
    assert!(r["reconnects"].as_u64().is_some_and(|n| n >= 1), "{out}");
    assert_eq!(r["errors_total"], 0, "{out}");
    assert_eq!(r["connections_lost"], 0, "{out}");
    assert_eq!(r["lossless"], true, "{out}");
    // Every connection the run closed is gone, and every room it made
    // expires once empty.
    assert!(
        eventually(|| b.connections() == 0),
        "{} left",
        b.connections()
    );
    assert!(eventually(|| b.rooms() == 0), "{} rooms left", b.rooms());
    b.shutdown();
}

#[test]
fn churn_reports_refused_joins_as_not_lossless() {
    let b = broker_with(1, |c| c.room.auto_create = false);
    let url = format!("ws://{}/ws", b.local_addr());
    let (code, out, json) = run(&[
        "churn",
        "--url",
        &url,
        "--rooms",
        "5",
        "--clients",
        "2",
        "--rate",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    b.shutdown();
    assert_eq!(code, 1, "{out}");
    assert!(
        json["results"]["errors"]["room_not_found"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{out}"
    );
    assert_eq!(json["results"]["lossless"], false);
}

#[test]
fn fanout_against_a_jwt_broker_mints_a_token_per_user() {
    let secret = "loadtest-secret-0123456789abcdef0123";
    let b = broker_with(2, |c| {
        c.auth.mode = shardcast::config::AuthMode::Jwt;
        c.auth.secret = secret.into();
        // One connection per user: distinct users or the run fails.
        c.limits.max_connections_per_user = 1;
    });
    let url = format!("ws://{}/ws", b.local_addr());
    let (code, out, json) = run(&[
        "fanout",
        "--url",
        &url,
        "--members",
        "10",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--token-secret",
        secret,
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["results"]["checks"]["lossless"], true);
    // Without credentials the broker refuses every connection with 401.
    let (code, out, _) = run(&["fanout", "--url", &url, "--members", "1", "--duration", "1"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("401"), "{out}");
    let (code, out, _) = run(&["fanout", "--url", &url, "--token-secret", "short"]);
    assert_eq!(code, 2);
    assert!(out.contains("--token-secret"), "{out}");
    b.shutdown();
}

#[test]
fn fanout_spreads_members_over_member_urls_and_sums_also_pids() {
    // One broker under two URLs stands in for two nodes of a cluster:
    // the publisher on the first, every member on the second.
    let b = broker(2);
    let url = format!("ws://{}/ws", b.local_addr());
    let alias = format!("ws://127.0.0.1:{}/ws", b.local_addr().port());
    let pid = std::process::id().to_string();
    let (code, out, json) = run(&[
        "fanout",
        "--url",
        &url,
        "--member-url",
        &alias,
        "--members-only-on-others",
        "--members",
        "8",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--server-pid",
        &pid,
        "--also-pid",
        &pid,
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["parameters"]["member_urls"][0], alias.as_str());
    assert_eq!(json["parameters"]["members_only_on_others"], true);
    assert_eq!(json["results"]["delivery_ratio"], 1.0, "{out}");
    let window = &json["results"]["window"];
    let rss = window["server_rss_kib_end"].as_u64().expect("rss");
    let own = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .expect("own rss");
    // The same process counted twice: about twice its RSS.
    assert!(
        rss > own * 3 / 2,
        "also-pid is summed: {rss} KiB vs {own} KiB"
    );
}

/// A broker with the Pusher endpoint: app `1`, key `app-key`, client
/// events allowed at load-test rates.
fn pusher_broker() -> Broker {
    broker_with(2, |c| {
        c.pusher.enabled = true;
        c.pusher.client_event_rate_per_sec = 1_000_000;
        c.pusher.apps = vec![shardcast::config::PusherApp {
            id: "1".into(),
            key: "app-key".into(),
            secret: "loadtest-secret".into(),
            client_events: true,
            ..Default::default()
        }];
    })
}

#[test]
fn fanout_over_the_pusher_endpoint_is_lossless_both_ways_of_publishing() {
    let b = pusher_broker();
    let url = format!("ws://{}/ws", b.local_addr());
    for via in ["client", "http"] {
        let (code, out, json) = run(&[
            "fanout",
            "--url",
            &url,
            "--protocol",
            "pusher",
            "--pusher-secret",
            "loadtest-secret",
            "--pusher-publish",
            via,
            "--rooms",
            "2",
            "--members",
            "20",
            "--publishers",
            "2",
            "--rate",
            "200",
            "--duration",
            "1",
            "--warmup",
            "0",
        ]);
        assert_eq!(code, 0, "{via}: {out}");
        assert_eq!(json["parameters"]["protocol"], "pusher");
        assert_eq!(json["parameters"]["pusher_publish"], via);
        let r = &json["results"];
        let published = r["published_total"].as_u64().expect("published");
        assert!(published > 100, "{via}: {out}");
        assert_eq!(
            r["expected_deliveries"].as_u64(),
            Some(published * 20),
            "{via}"
        );
        assert_eq!(
            r["delivered_total"], r["expected_deliveries"],
            "{via}: {out}"
        );
        assert_eq!(r["checks"]["lossless"], true, "{via}: {out}");
        assert_eq!(r["checks"]["publish_errors"], 0, "{via}: {out}");
    }
    // A wrong secret: the run fails at setup, saying why.
    let (code, out, _) = run(&[
        "fanout",
        "--url",
        &url,
        "--protocol",
        "pusher",
        "--pusher-secret",
        "wrong",
        "--members",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("subscription_error"), "{out}");
    b.shutdown();
}
