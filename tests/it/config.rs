//! Configuration as a user meets it: the shipped example file, the README's
//! table of defaults, `shardcast config` output fed back, `Broker::start`
//! refusing an invalid config, and what `serve` says when it starts.

use std::path::PathBuf;
use std::process::Command;

use shardcast::{Broker, Config, StartError};

use crate::harness::*;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// `Config::default()` as a TOML table (keys whose default is unset are
/// absent, as in the example file where they are commented out).
fn default_table() -> toml::Table {
    toml::Table::try_from(Config::default()).expect("defaults serialize")
}

#[test]
fn example_config_holds_every_key_with_its_default() {
    let path = repo_file("shardcast.example.toml");
    let text = std::fs::read_to_string(&path).expect("shardcast.example.toml");
    let example: toml::Table = text.parse().expect("the example is TOML");
    assert_eq!(
        example,
        default_table(),
        "shardcast.example.toml differs from Config::default()"
    );
    // Keys whose default is unset are there, commented out.
    for key in [
        "secret_file",
        "public_key_file",
        "issuer",
        "audience",
        "tls_cert_file",
        "tls_key_file",
    ] {
        assert!(
            text.contains(&format!("\n# {key} = ")),
            "the example lacks a commented `{key}`"
        );
    }
    // And it loads as it is, like `serve --config shardcast.example.toml`.
    let loaded =
        Config::load_from(Some(&path), &[], &Default::default()).expect("the example loads");
    assert_eq!(loaded.server.listen, "127.0.0.1:8080");
}

#[test]
fn readme_configuration_table_states_the_defaults() {
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("README.md");
    let defaults = default_table();
    let mut seen = 0;
    for line in readme.lines() {
        // | `section.key` | `default` or unset | meaning |
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((key, rest)) = rest.split_once("` | ") else {
            continue;
        };
        let Some((section, name)) = key.split_once('.') else {
            continue;
        };
        let Some(section_table) = defaults.get(section).and_then(|s| s.as_table()) else {
            continue;
        };
        let cell = rest.split(" | ").next().unwrap_or_default();
        let expected = section_table.get(name);
        if cell == "unset" {
            assert!(expected.is_none(), "README: `{key}` is set by default");
        } else {
            let literal = cell
                .strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or_else(|| panic!("README: `{key}` default {cell:?} is not `code`"));
            let stated: toml::Table = format!("v = {literal}")
                .parse()
                .unwrap_or_else(|e| panic!("README: `{key}` default {literal}: {e}"));
            assert_eq!(stated.get("v"), expected, "README: default of `{key}`");
        }
        seen += 1;
    }
    let all: usize = defaults
        .values()
        .filter_map(|s| s.as_table())
        .map(|t| t.len())
        .sum();
    // Every key that has a default value, plus the ten unset ones (nine
    // optional keys, the three cluster.tls_* files among them, and
    // `room.namespaces`).
    assert_eq!(seen, all + 10, "the README table misses keys");
}

/// `shardcast config` with `env`, its output saved to a file and given back
/// with `--config`: (status, stderr) of the second run.
fn print_and_feed_back(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let bin = env!("CARGO_BIN_EXE_shardcast");
    let mut first = Command::new(bin);
    first.arg("config");
    for (k, v) in env {
        first.env(k, v);
    }
    let out = first.output().expect("run shardcast config");
    assert!(out.status.success(), "{out:?}");
    let path = std::env::temp_dir().join(format!(
        "shardcast-printed-{}-{}.toml",
        std::process::id(),
        env.len()
    ));
    std::fs::write(&path, &out.stdout).expect("write");
    let again = Command::new(bin)
        .arg("config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run shardcast config --config");
    let _ = std::fs::remove_file(&path);
    (
        again.status.code(),
        String::from_utf8_lossy(&again.stderr).into_owned(),
    )
}

#[test]
fn printed_config_feeds_back_and_a_redacted_key_says_so() {
    let (status, stderr) = print_and_feed_back(&[]);
    assert_eq!(status, Some(0), "{stderr}");
    let (status, stderr) = print_and_feed_back(&[("SHARDCAST_API__KEYS", "key-aaaaaaaaaaaaaaaa")]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("`api.keys` holds \"<redacted>\", the placeholder"),
        "{stderr}"
    );
}

#[test]
fn broker_start_refuses_an_invalid_config() {
    // `Config::default()` has `shards = 0`, which only `Config::load` resolves.
    let err = Broker::start(Config::default())
        .err()
        .expect("no broker from an unresolved config");
    assert!(matches!(err, StartError::Config(_)), "{err}");
    assert!(err.to_string().contains("server.shards"), "{err}");
    let mut config = Config::default();
    config.server.shards = 1;
    config.server.node_id = "n1".into();
    config.server.listen = "localhost:0".into();
    let err = Broker::start(config).err().expect("no fallback address");
    assert!(err.to_string().contains("server.listen"), "{err}");
}

#[test]
fn start_line_names_the_mode_and_the_node() {
    let lines = crate::process::log_until_listening(
        &["--listen", "127.0.0.1:0", "--shards", "1"],
        &[("SHARDCAST_SERVER__NODE_ID", "42")],
    );
    let line = lines.last().expect("start line");
    assert!(line.contains(" node=42"), "{line}");
    assert!(line.contains(" mode=single-node"), "{line}");
    assert!(!line.contains("redis="), "{line}");
}

/// An IPv4 client of a dual-stack `[::]` listener shows up as
/// `::ffff:127.0.0.1`, which the keyless API counts as loopback.
#[tokio::test]
async fn keyless_api_counts_ipv4_mapped_loopback_as_loopback() {
    let broker = TestBroker::new()
        .with(|c| c.server.listen = "[::]:0".into())
        .start();
    let port = broker.addr.port();
    for addr in [
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ] {
        let (status, body) = http(addr, "GET", "/api/stats", &[], None).await;
        assert_eq!(status, 200, "{addr}: {body}");
    }
}
