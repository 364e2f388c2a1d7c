//! The `report` command on checked-in fanout results: markdown with both
//! results side by side, two SVG charts, and clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh empty directory under the system's temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-report-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn report(args: &[&Path], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .arg("report")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run report")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn renders_tables_and_charts_for_two_results() {
    let out = temp_dir("ok");
    let (a, b) = (fixture("fanout-a.json"), fixture("fanout-b.json"));
    let o = report(&[&a, &b], &out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("## fanout"), "{md}");
    assert!(md.contains("| | fanout-a | fanout-b |"), "{md}");
    for row in [
        "deliveries/s",
        "deliveries per server CPU-second",
        "delivery ratio",
        "latency p50 (ms)",
        "latency p99.9 (ms)",
        "latency max (ms)",
        "checks",
        "server RSS (MiB)",
        "generator CPU",
    ] {
        assert!(
            md.contains(&format!("| {row} |")) || md.contains(&format!("| **{row}** |")),
            "{row}: {md}"
        );
    }
    assert!(md.contains("rate=max") && md.contains("rate=200"), "{md}");
    assert!(md.contains("![latency](latency.svg)"), "{md}");
    assert!(md.contains("![throughput](throughput.svg)"), "{md}");
    for svg in ["latency.svg", "throughput.svg"] {
        let s = std::fs::read_to_string(out.join(svg)).expect(svg);
        let start = s.trim_start();
        assert!(
            start.starts_with("<svg") || start.starts_with("<?xml"),
            "{svg}"
        );
        assert!(s.contains("<path") || s.contains("<polyline"), "{svg}");
        assert!(s.trim_end().ends_with("</svg>"), "{svg}");
        assert!(
            s.contains("fanout-a") && s.contains("fanout-b"),
            "{svg} legend"
        );
    }
    let latency = std::fs::read_to_string(out.join("latency.svg")).expect("latency");
    for label in ["50%", "90%", "99%", "99.9%", "99.99%"] {
        assert!(latency.contains(&format!("\n{label}\n")), "{label}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn missing_file_is_named_with_exit_2() {
    let out = temp_dir("missing");
    let missing = out.join("no-such.json");
    let o = report(&[&fixture("fanout-a.json"), &missing], &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such.json") && err.contains("cannot read"),
        "{err}"
    );
    assert!(!out.join("report.md").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn invalid_json_is_named_with_exit_2() {
    let out = temp_dir("invalid");
    let bad = out.join("bad.json");
    std::fs::write(&bad, "{not json").expect("write");
    let o = report(&[&bad], &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.json") && err.contains("invalid JSON"),
        "{err}"
    );

    let other = out.join("other.json");
    std::fs::write(&other, r#"{"hello": 1}"#).expect("write");
    let o = report(&[&other], &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("other.json") && err.contains("not a shardcast-loadtest result"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn no_files_or_no_out_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(["report", "--out", "/tmp"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("FILES"),
        "{}",
        text(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_shardcast-loadtest"))
        .args(["report"])
        .arg(fixture("fanout-a.json"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--out"),
        "{}",
        text(&o)
    );
}
